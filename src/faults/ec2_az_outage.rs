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
use std::sync::Arc;

use marked_yaml::Node;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{ActionDef, BoxFuture, Fault, Step, StepContext, Undo, UndoReport, batched_steps};
use crate::aws::{Aws, AwsError, Refusal, api};
use crate::targets::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:az-outage",
    build,
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    let mut az = None;
    if let Some(p) = params {
        let m = d.map(p, what, &["az"])?;
        if let Some(n) = m.get("az") {
            az = Some(d.string(n, &format!("{what}.az"))?.value);
        }
    }
    Some(Arc::new(AzOutage { az }))
}

/// Takes one Availability Zone out.
#[derive(Debug)]
pub struct AzOutage {
    /// The zone; `None`: chosen among the targets' zones with the run's seed.
    pub az: Option<String>,
}

impl Fault for AzOutage {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn needs_group(&self) -> bool {
        true
    }

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
            .map(|(g, az)| Step {
                operation: "autoscaling:UpdateAutoScalingGroup".into(),
                resources: vec![g.to_string()],
                // The subnet list is recorded by `prepare` just before the call.
                undo: Undo::RestoreSubnets {
                    group: g.to_string(),
                    vpc_zone_identifier: String::new(),
                    az: az.to_string(),
                },
            })
            .collect();
        // The zone leaves the group before its instances stop, so that the
        // group does not replace them there.
        steps.extend(batched_steps(targets, BATCH, "ec2:StopInstances", |ids| {
            Undo::StartInstances { instance_ids: ids }
        }));
        steps
    }

    fn prepare<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: Step,
    ) -> BoxFuture<'a, Result<Step, AwsError>> {
        Box::pin(async move {
            let Undo::RestoreSubnets { group, az, .. } = &step.undo else {
                return Ok(step);
            };
            let Some(g) = crate::environment::describe_group(aws, group).await? else {
                return Err(AwsError::not_found(
                    "autoscaling",
                    "DescribeAutoScalingGroups",
                    format!("Auto Scaling group `{group}` not found"),
                ));
            };
            let subnets = g.vpc_zone_identifier().unwrap_or_default().to_string();
            Ok(Step {
                undo: Undo::RestoreSubnets {
                    group: group.clone(),
                    vpc_zone_identifier: subnets,
                    az: az.clone(),
                },
                ..step
            })
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            match &step.undo {
                Undo::RestoreSubnets {
                    group,
                    vpc_zone_identifier,
                    az,
                } => remove_zone(aws, group, vpc_zone_identifier, az).await,
                _ => {
                    aws.ec2
                        .stop_instances()
                        .set_instance_ids(Some(step.resources.clone()))
                        .send()
                        .await
                        .map_err(api("ec2", "StopInstances"))?;
                    Ok(())
                }
            }
        })
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

/// Puts the recorded subnet list back exactly. A group that is gone has
/// nothing to restore; an empty record means the call was never made.
pub(crate) async fn restore_subnets(aws: &Aws, group: &str, subnets: &str) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    if subnets.is_empty() {
        return Ok(report);
    }
    match crate::environment::describe_group(aws, group).await? {
        None => report.gone.push(group.to_string()),
        Some(g) if g.vpc_zone_identifier() == Some(subnets) => report.restored.push(group.to_string()),
        Some(_) => {
            aws.autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(group)
                .vpc_zone_identifier(subnets)
                .send()
                .await
                .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
            report.restored.push(group.to_string());
        }
    }
    Ok(report)
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
            matches!(&steps[0].undo, Undo::RestoreSubnets { group, az, .. } if group == "web" && az == "us-east-1a")
        );
    }
}
