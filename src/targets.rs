//! Target resolution and selection: from a fault's `target` to the exact
//! instances it will hit. Resolution makes read-only calls only and happens once,
//! before anything is injected; selection is random with the run's seed, so
//! `--seed` replays a run's choice exactly.

use std::collections::BTreeSet;

use aws_sdk_autoscaling::types::AutoScalingGroup;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::aws::{Aws, AwsError, api};
use crate::experiment::{Selection, TargetSpec};
use crate::faults::InstanceFault;
use crate::model::{Instance, Resolved, Vars};

/// Why targets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The named Auto Scaling group does not exist.
    #[error("Auto Scaling group `{0}` not found")]
    NoSuchGroup(String),
}

/// Resolves `spec` for `fault`; `default_group` is the environment's group,
/// used when the spec names no criterion of its own. With `scope` (parallel
/// mode: the clone's instances), nothing outside it can be chosen.
/// used when the spec names no criterion of its own. Instances carrying any of
/// the `protected` tags (key, value; the value compared case-insensitively) are
/// never selected, whatever else matches.
#[allow(clippy::too_many_arguments)] // each is its own input of resolution; the plan and the engine pass them
pub async fn resolve(
    aws: &Aws,
    spec: &TargetSpec,
    fault: &InstanceFault,
    default_group: Option<&str>,
    scope: Option<&BTreeSet<String>>,
    vars: &Vars,
    protected: &[(String, String)],
    rng: &mut StdRng,
) -> Result<Resolved, TargetError> {
    let group = match (&spec.autoscaling_group, spec.uses_environment()) {
        (Some(g), _) => Some(vars.expand(g)),
        (None, true) => default_group.map(str::to_string),
        (None, false) => None,
    };
    let mut ids: Option<BTreeSet<String>> = None;
    if let Some(g) = &group {
        ids = Some(group_instances(aws, g).await?);
    }
    if !spec.ids.is_empty() {
        let given: BTreeSet<String> = spec.ids.iter().cloned().collect();
        ids = Some(match ids {
            Some(from_group) => from_group.intersection(&given).cloned().collect(),
            None => given,
        });
    }

    if let Some(scope) = scope {
        ids = Some(match ids {
            Some(found) => found.intersection(scope).cloned().collect(),
            None => scope.clone(),
        });
    }

    let mut filters = Vec::new();
    for (k, v) in &spec.tags {
        filters.push(filter(&format!("tag:{k}"), vec![v.clone()]));
    }
    if let Some(az) = &spec.az {
        filters.push(filter("availability-zone", vec![az.clone()]));
    }
    for (name, values) in &spec.filters {
        filters.push(filter(name, values.clone()));
    }

    let mut found = Vec::new();
    match &ids {
        Some(ids) if ids.is_empty() => {}
        Some(ids) => {
            let ids: Vec<String> = ids.iter().cloned().collect();
            for chunk in ids.chunks(200) {
                let mut f = filters.clone();
                f.push(filter("instance-id", chunk.to_vec()));
                describe(aws, f, group.as_deref(), protected, &mut found).await?;
            }
        }
        None => describe(aws, filters, group.as_deref(), protected, &mut found).await?,
    }

    found.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    found.dedup_by(|a, b| a.0.id == b.0.id);
    let mut out = Resolved::default();
    let mut eligible = Vec::new();
    for (inst, protected) in found {
        if matches!(inst.state.as_str(), "terminated" | "shutting-down") {
            continue;
        }
        if protected {
            out.protected.push(inst.id);
        } else if !fault.eligible_state(&inst.state)
            || (fault.needs_group() && inst.autoscaling_group.is_none())
        {
            out.ineligible.push(inst.id);
        } else {
            eligible.push(inst);
        }
    }
    out.matched = eligible.len();
    out.eligible = eligible.iter().map(|i| i.id.clone()).collect();
    // After `eligible` is recorded: the approval binds the eligible set, and
    // a fault's seeded narrowing (one AZ) is replayed with the seed like the choice.
    let eligible = fault.narrow(eligible, rng);
    out.selected = select(eligible, spec.select, rng);
    Ok(out)
}

/// Chooses `selection` of `candidates` (sorted by id) with `rng`. The same seed
/// and candidates give the same choice; the result is sorted by id.
pub fn select(mut candidates: Vec<Instance>, selection: Selection, rng: &mut StdRng) -> Vec<Instance> {
    let n = selection.how_many(candidates.len());
    if n < candidates.len() {
        candidates.shuffle(rng);
        candidates.truncate(n);
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
    }
    candidates
}

fn filter(name: &str, values: Vec<String>) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Reads one Auto Scaling group that must exist.
pub async fn existing_group(aws: &Aws, group: &str) -> Result<AutoScalingGroup, TargetError> {
    crate::aws::describe_group(aws, group)
        .await?
        .ok_or_else(|| TargetError::NoSuchGroup(group.to_string()))
}

/// Instance ids currently in an Auto Scaling group.
pub async fn group_instances(aws: &Aws, group: &str) -> Result<BTreeSet<String>, TargetError> {
    Ok(existing_group(aws, group)
        .await?
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect())
}

/// A group's desired capacity (the default size of a parallel clone).
pub fn desired_capacity(g: &AutoScalingGroup) -> u32 {
    g.desired_capacity()
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(0)
}

async fn describe(
    aws: &Aws,
    filters: Vec<aws_sdk_ec2::types::Filter>,
    group: Option<&str>,
    protected_tags: &[(String, String)],
    out: &mut Vec<(Instance, bool)>,
) -> Result<(), AwsError> {
    let mut pages = aws
        .ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2", "DescribeInstances"))?;
        for r in page.reservations() {
            for i in r.instances() {
                let Some(id) = i.instance_id() else { continue };
                let tag = |k: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(k))
                        .and_then(|t| t.value())
                        .map(str::to_string)
                };
                let protected = protected_tags
                    .iter()
                    .any(|(k, v)| tag(k).is_some_and(|t| t.eq_ignore_ascii_case(v)));
                out.push((
                    Instance {
                        id: id.to_string(),
                        az: i
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .unwrap_or_default()
                            .to_string(),
                        state: i
                            .state()
                            .and_then(|s| s.name())
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        autoscaling_group: tag("aws:autoscaling:groupName")
                            .or_else(|| group.map(str::to_string)),
                        name: tag("Name"),
                        vpc_id: i.vpc_id().map(str::to_string),
                    },
                    protected,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fleet(n: usize) -> Vec<Instance> {
        (0..n)
            .map(|i| Instance {
                id: format!("i-{i:04}"),
                az: "us-east-1a".into(),
                state: "running".into(),
                autoscaling_group: None,
                name: None,
                vpc_id: None,
            })
            .collect()
    }

    #[test]
    fn same_seed_same_choice_other_seed_other_choice() {
        let pick = |seed| {
            select(
                fleet(50),
                Selection::Percent(20),
                &mut StdRng::seed_from_u64(seed),
            )
        };
        assert_eq!(pick(7), pick(7));
        assert_eq!(pick(7).len(), 10);
        assert_ne!(pick(7), pick(8));
    }

    #[test]
    fn percent_rounds_up_and_count_caps() {
        assert_eq!(Selection::Percent(33).how_many(3), 1);
        assert_eq!(Selection::Percent(34).how_many(3), 2);
        assert_eq!(Selection::Count(10).how_many(3), 3);
        assert_eq!(Selection::All.how_many(4), 4);
    }
}
