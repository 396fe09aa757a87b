//! `ec2:az-outage`: an Availability Zone goes away for an Auto Scaling
//! group. The zone is `params.az`, or one chosen with the run's seed among
//! the zones of the eligible targets. Every target in that zone is stopped,
//! and the zone's subnets are removed from the group's `VPCZoneIdentifier`
//! so that it cannot launch replacements there. The subnet list is recorded
//! just before the change; the rollback puts it back exactly and starts the
//! instances. Only instances of an Auto Scaling group are targets.
//!
//! On real AWS, removing a zone can make the group rebalance (AZRebalance)
//! and terminate its instances in that zone; suspend `AZRebalance` with
//! `autoscaling:suspend-processes` first to keep them stopped instead.

use std::collections::BTreeSet;

use marked_yaml::Node;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, ReadFirst, Ready, Revert, Step,
    StepContext, Targeting, UndoReport, batched_steps,
};
use crate::aws::{Aws, AwsError, Refusal, api};
use crate::model::Instance;
use crate::schema;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:az-outage",
    build,
    params,
};

/// Running instances of an Auto Scaling group: the zone leaves the group.
const TARGETING: Targeting = Targeting {
    eligible: &["running"],
    needs_group: true,
};

/// The keys of `params`.
const PARAMS: &[&str] = &["az"];

fn params() -> serde_json::Value {
    schema::object("ec2:az-outage params", PARAMS)
        .key(
            "az",
            schema::text(
                "the Availability Zone to take out; default: one of the group's, chosen with the run's seed",
            ),
        )
        .build("optional: `az`")
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    let mut az = None;
    if let Some(p) = params {
        let m = d.map(p, what, PARAMS)?;
        if let Some(n) = m.get("az") {
            az = Some(d.string(n, &format!("{what}.az"))?.value);
        }
    }
    Some(InstanceFault::on(TARGETING, AzOutage { az }))
}

/// Takes one Availability Zone out.
#[derive(Debug)]
pub struct AzOutage {
    /// The zone; `None`: chosen among the targets' zones with the run's seed.
    pub az: Option<String>,
}

impl PlanInstances for AzOutage {
    fn narrow(&self, candidates: Vec<Instance>, rng: &mut StdRng) -> Vec<Instance> {
        let zone = match &self.az {
            Some(z) => Some(z.clone()),
            None => {
                let zones: Vec<&String> = candidates
                    .iter()
                    .map(|i| &i.az)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                zones.choose(rng).map(|z| z.to_string())
            }
        };
        candidates
            .into_iter()
            .filter(|i| Some(&i.az) == zone.as_ref())
            .collect()
    }

    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        let groups: BTreeSet<(&str, &str)> = targets
            .iter()
            .filter_map(|t| t.autoscaling_group.as_deref().map(|g| (g, t.az.as_str())))
            .collect();
        let mut steps: Vec<Step> = groups
            .into_iter()
            .map(|(g, az)| {
                Step::read_first(
                    "autoscaling:UpdateAutoScalingGroup",
                    vec![g.to_string()],
                    ReadSubnets {
                        group: g.to_string(),
                        az: az.to_string(),
                    },
                )
            })
            .collect();
        // The zone leaves the group before its instances stop, so that the
        // group does not replace them there.
        steps.extend(batched_steps(targets, BATCH, |ids| {
            super::ec2_stop_instances::stop_step(ids, None)
        }));
        steps
    }
}

/// Reads the group's subnet list just before the call: the undo puts it back.
#[derive(Debug)]
struct ReadSubnets {
    group: String,
    az: String,
}

impl ReadFirst for ReadSubnets {
    fn undo_operation(&self) -> &'static str {
        RestoreSubnets::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", "restore_subnets".into()),
            ("group", self.group.clone()),
            ("az", self.az.clone()),
        ]
    }

    fn read<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        Box::pin(async move {
            let Some(g) = crate::aws::describe_group(aws, &self.group).await? else {
                return Err(AwsError::not_found(
                    "autoscaling",
                    "DescribeAutoScalingGroups",
                    format!("Auto Scaling group `{}` not found", self.group),
                ));
            };
            let subnets = g.vpc_zone_identifier().unwrap_or_default().to_string();
            Ok(Ready::new(
                RemoveZone {
                    group: self.group.clone(),
                    subnets: subnets.clone(),
                    az: self.az.clone(),
                },
                RestoreSubnets {
                    group: self.group.clone(),
                    vpc_zone_identifier: subnets,
                    az: self.az.clone(),
                },
            ))
        })
    }
}

/// The forward call: the group's subnets without the zone's.
#[derive(Debug)]
struct RemoveZone {
    group: String,
    /// The subnet list read before the call.
    subnets: String,
    az: String,
}

impl Forward for RemoveZone {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(remove_zone(aws, &self.group, &self.subnets, &self.az))
    }
}

/// Sets the group's subnets to those of `subnets` outside `az`.
async fn remove_zone(aws: &Aws, group: &str, subnets: &str, az: &str) -> Result<(), AwsError> {
    let ids: Vec<String> = subnets
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(AwsError::refused(
            "autoscaling",
            "UpdateAutoScalingGroup",
            Refusal::NoSubnets,
            format!(
                "group `{group}` names no subnets (VPCZoneIdentifier); ec2:az-outage needs a group in a VPC"
            ),
        ));
    }
    let mut in_zone = BTreeSet::new();
    for chunk in ids.chunks(200) {
        let out = aws
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(api("ec2", "DescribeSubnets"))?;
        for s in out.subnets() {
            if s.availability_zone() == Some(az)
                && let Some(id) = s.subnet_id()
            {
                in_zone.insert(id.to_string());
            }
        }
    }
    let keep: Vec<String> = ids.iter().filter(|s| !in_zone.contains(*s)).cloned().collect();
    if keep.is_empty() {
        return Err(AwsError::refused(
            "autoscaling",
            "UpdateAutoScalingGroup",
            Refusal::OnlyZone,
            format!(
                "every subnet of group `{group}` is in {az}: a group must keep one subnet, so ec2:az-outage needs a group spanning two zones or more"
            ),
        ));
    }
    if keep.len() == ids.len() {
        return Ok(()); // no subnet in that zone (already removed): idempotent
    }
    aws.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .vpc_zone_identifier(keep.join(","))
        .send()
        .await
        .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
    Ok(())
}

/// The undo: put a group's recorded subnet list (`VPCZoneIdentifier`) back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSubnets {
    /// The group.
    pub group: String,
    /// The subnets as they were, comma-separated, in their order.
    pub vpc_zone_identifier: String,
    /// The Availability Zone the fault removes.
    pub az: String,
}

impl Revert for RestoreSubnets {
    const OPERATION: &'static str = "autoscaling:UpdateAutoScalingGroup (subnets)";

    fn resources(&self) -> Vec<String> {
        vec![self.group.clone()]
    }

    /// Puts the recorded subnet list back exactly. A group that is gone has
    /// nothing to restore. Idempotent.
    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        let (group, subnets) = (&self.group, &self.vpc_zone_identifier);
        let mut report = UndoReport::default();
        match crate::aws::describe_group(aws, group).await? {
            None => report.gone.push(group.clone()),
            Some(g) if g.vpc_zone_identifier() == Some(subnets.as_str()) => {
                report.restored.push(group.clone())
            }
            Some(_) => {
                aws.autoscaling
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(group)
                    .vpc_zone_identifier(subnets)
                    .send()
                    .await
                    .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
                report.restored.push(group.clone());
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fleet() -> Vec<Instance> {
        (0..12)
            .map(|i| Instance {
                id: format!("i-{i:02}"),
                az: format!("us-east-1{}", ["a", "b", "c"][i % 3]),
                state: "running".into(),
                autoscaling_group: Some("web".into()),
                name: None,
                vpc_id: None,
            })
            .collect()
    }

    #[test]
    fn the_zone_is_the_one_given_or_one_chosen_with_the_seed() {
        let given = AzOutage {
            az: Some("us-east-1b".into()),
        }
        .narrow(fleet(), &mut StdRng::seed_from_u64(1));
        assert_eq!(given.len(), 4);
        assert!(given.iter().all(|i| i.az == "us-east-1b"));

        let random = AzOutage { az: None };
        let zone = |seed| {
            random.narrow(fleet(), &mut StdRng::seed_from_u64(seed))[0]
                .az
                .clone()
        };
        assert_eq!(zone(7), zone(7), "the same seed picks the same zone");
        let zones: BTreeSet<String> = (0..20).map(zone).collect();
        assert!(zones.len() > 1, "seeds pick different zones: {zones:?}");
        assert!(
            random
                .narrow(fleet(), &mut StdRng::seed_from_u64(3))
                .iter()
                .all(|i| i.az == zone(3)),
            "one zone only"
        );
    }

    #[test]
    fn the_zone_leaves_the_group_before_its_instances_stop() {
        let targets = AzOutage {
            az: Some("us-east-1a".into()),
        }
        .narrow(fleet(), &mut StdRng::seed_from_u64(1));
        let steps = AzOutage { az: None }.plan(&targets);
        let ops: Vec<&str> = steps.iter().map(|s| s.operation.as_str()).collect();
        assert_eq!(ops, ["autoscaling:UpdateAutoScalingGroup", "ec2:StopInstances"]);
        assert!(
            matches!(&steps[0].planned, super::super::Planned::ReadFirst(r)
                if r.undo_known() == [("kind", "restore_subnets".to_string()), ("group", "web".into()), ("az", "us-east-1a".into())]),
            "{:?}",
            steps[0]
        );
        assert!(
            matches!(&steps[1].planned, super::super::Planned::Ready(r)
                if r.undo == super::super::StartInstances { instance_ids: targets.iter().map(|t| t.id.clone()).collect() }.into()),
            "{:?}",
            steps[1]
        );
    }
}
