//! `autoscaling:capacity-drop`: lower the target group's desired capacity
//! (`to: N`, or `by_percent: P` of the current desired), and its minimum too
//! when the new desired is below it, as a bad deploy or a runaway scale-in
//! would. Min, max and desired are recorded just before the call; the
//! rollback puts exactly those back.

use std::sync::Arc;

use marked_yaml::Node;

use super::{ActionDef, BoxFuture, Fault, Scope, Step, StepContext, Undo, UndoReport};
use crate::aws::{Aws, AwsError, api};
use crate::yaml::Decoder;

pub(super) const DEF: ActionDef = ActionDef {
    name: "autoscaling:capacity-drop",
    build,
};

/// How far the capacity drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// To this desired capacity.
    To(u32),
    /// By this percent of the current desired capacity (rounded so that at
    /// least one instance goes when P > 0 and the group has any).
    ByPercent(u32),
}

impl Drop {
    /// The new desired capacity for a group at `desired`; never above it.
    pub fn new_desired(self, desired: u32) -> u32 {
        match self {
            Drop::To(n) => n.min(desired),
            Drop::ByPercent(p) => desired - (desired * p).div_ceil(100).min(desired),
        }
    }
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, at: crate::yaml::Loc) -> Option<Arc<dyn Fault>> {
    let Some(p) = params else {
        d.error(
            at,
            format!("{what}: `autoscaling:capacity-drop` needs params `to: N` or `by_percent: P`"),
        );
        return None;
    };
    let m = d.map(p, what, &["to", "by_percent"])?;
    let drop = match (m.get("to"), m.get("by_percent")) {
        (Some(n), None) => Drop::To(d.integer(n, &format!("{what}.to"), 0, 100_000)?.value as u32),
        (None, Some(n)) => Drop::ByPercent(d.integer(n, &format!("{what}.by_percent"), 1, 100)?.value as u32),
        _ => {
            d.error_help(
                m.loc(),
                format!("{what}: expected exactly one of `to: N` or `by_percent: P`"),
                "`to: 1` sets the desired capacity to 1; `by_percent: 50` halves it",
            );
            return None;
        }
    };
    Some(Arc::new(CapacityDrop { drop }))
}

/// Lowers a group's capacity.
#[derive(Debug)]
pub struct CapacityDrop {
    /// How far.
    pub drop: Drop,
}

impl Fault for CapacityDrop {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn scope(&self) -> Scope {
        Scope::Groups
    }

    fn instances_removed(&self, desired: usize) -> usize {
        let d = u32::try_from(desired).unwrap_or(u32::MAX);
        (d - self.drop.new_desired(d)) as usize
    }

    fn plan_resources(&self, groups: &[String]) -> Vec<Step> {
        groups
            .iter()
            .map(|g| Step {
                operation: "autoscaling:UpdateAutoScalingGroup".into(),
                resources: vec![g.clone()],
                // Recorded by `prepare` just before the call.
                undo: Undo::RestoreCapacity {
                    group: g.clone(),
                    min: -1,
                    max: -1,
                    desired: -1,
                },
            })
            .collect()
    }

    fn prepare<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: Step,
    ) -> BoxFuture<'a, Result<Step, AwsError>> {
        Box::pin(async move {
            let Undo::RestoreCapacity { group, .. } = &step.undo else {
                return Ok(step);
            };
            let Some(g) = crate::environment::describe_group(aws, group).await? else {
                return Err(not_found(group));
            };
            let undo = Undo::RestoreCapacity {
                group: group.clone(),
                min: g.min_size().unwrap_or(0),
                max: g.max_size().unwrap_or(0),
                desired: g.desired_capacity().unwrap_or(0),
            };
            Ok(Step { undo, ..step })
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let Undo::RestoreCapacity {
                group, min, desired, ..
            } = &step.undo
            else {
                return Ok(());
            };
            let new = self.drop.new_desired(u32::try_from(*desired).unwrap_or(0)) as i32;
            let mut call = aws
                .autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(group)
                .desired_capacity(new);
            if new < *min {
                call = call.min_size(new);
            }
            call.send()
                .await
                .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
            Ok(())
        })
    }
}

fn not_found(group: &str) -> AwsError {
    AwsError::not_found(
        "autoscaling",
        "DescribeAutoScalingGroups",
        format!("Auto Scaling group `{group}` not found"),
    )
}

/// Puts min, max and desired back as recorded. A group that is gone has
/// nothing to restore; an unrecorded capacity (negative) means the call was
/// never made. Idempotent.
pub(crate) async fn restore(
    aws: &Aws,
    group: &str,
    min: i32,
    max: i32,
    desired: i32,
) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    if min < 0 || max < 0 || desired < 0 {
        return Ok(report);
    }
    if crate::environment::describe_group(aws, group).await?.is_none() {
        report.gone.push(group.to_string());
        return Ok(report);
    }
    aws.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .send()
        .await
        .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
    report.restored.push(group.to_string());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_desired_never_rises_and_percent_removes_at_least_one() {
        assert_eq!(Drop::To(1).new_desired(4), 1);
        assert_eq!(Drop::To(9).new_desired(4), 4);
        assert_eq!(Drop::ByPercent(50).new_desired(4), 2);
        assert_eq!(Drop::ByPercent(10).new_desired(4), 3);
        assert_eq!(Drop::ByPercent(100).new_desired(4), 0);
        assert_eq!(Drop::ByPercent(50).new_desired(0), 0);
    }
}
