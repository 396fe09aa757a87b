//! `autoscaling:capacity-drop`: lower the target group's desired capacity
//! (`to: N`, or `by_percent: P` of the current desired), and its minimum too
//! when the new desired is below it, as a bad deploy or a runaway scale-in
//! would. Min, max and desired are recorded just before the call; the
//! rollback puts exactly those back.

use std::sync::Arc;

use aws_sdk_autoscaling::types::AutoScalingGroup;
use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, GroupFault, On, ReadFirst, Ready, ResourceFault, Revert, Step,
    StepContext, UndoReport,
};
use crate::aws::{Aws, AwsError, api};
use crate::schema;
use crate::yaml::Decoder;

pub(super) const DEF: ActionDef = ActionDef {
    name: "autoscaling:capacity-drop",
    build,
    params,
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

/// The keys of `params`.
const PARAMS: &[&str] = &["to", "by_percent"];

fn params() -> serde_json::Value {
    schema::object("autoscaling:capacity-drop params", PARAMS)
        .key("to", schema::integer(0, 100_000, "the new desired capacity"))
        .key(
            "by_percent",
            schema::integer(1, 100, "lower the desired capacity by this percent"),
        )
        .with("oneOf", schema::exactly_one_of(PARAMS))
        .build("exactly one of `to: N` or `by_percent: P`")
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, at: crate::yaml::Loc) -> Option<On> {
    let Some(p) = params else {
        d.error(
            at,
            format!("{what}: `autoscaling:capacity-drop` needs params `to: N` or `by_percent: P`"),
        );
        return None;
    };
    let m = d.map(p, what, PARAMS)?;
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
    Some(On::Resources(ResourceFault::Groups(Arc::new(CapacityDrop {
        drop,
    }))))
}

/// Lowers a group's capacity.
#[derive(Debug)]
pub struct CapacityDrop {
    /// How far.
    pub drop: Drop,
}

impl GroupFault for CapacityDrop {
    fn instances_removed(&self, desired: usize) -> usize {
        let d = u32::try_from(desired).unwrap_or(u32::MAX);
        (d - self.drop.new_desired(d)) as usize
    }

    fn plan(&self, groups: &[String]) -> Vec<Step> {
        groups
            .iter()
            .map(|g| {
                Step::read_first(
                    "autoscaling:UpdateAutoScalingGroup",
                    vec![g.clone()],
                    ReadCapacity {
                        group: g.clone(),
                        drop: self.drop,
                    },
                )
            })
            .collect()
    }
}

/// Reads the group's min, max and desired just before the call: the undo
/// records them, and the new capacity is computed from them.
#[derive(Debug)]
struct ReadCapacity {
    group: String,
    drop: Drop,
}

impl ReadCapacity {
    /// The call on a group now at `g`'s capacity, and its undo.
    fn ready(&self, g: &AutoScalingGroup) -> Ready {
        let (min, max, desired) = (
            g.min_size().unwrap_or(0),
            g.max_size().unwrap_or(0),
            g.desired_capacity().unwrap_or(0),
        );
        let new = self.drop.new_desired(u32::try_from(desired).unwrap_or(0)) as i32;
        Ready::new(
            SetCapacity {
                group: self.group.clone(),
                desired: new,
                // The minimum drops with the desired capacity, only when below it.
                min: (new < min).then_some(new),
            },
            RestoreCapacity {
                group: self.group.clone(),
                min,
                max,
                desired,
            },
        )
    }
}

impl ReadFirst for ReadCapacity {
    fn undo_operation(&self) -> &'static str {
        RestoreCapacity::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![("kind", "restore_capacity".into()), ("group", self.group.clone())]
    }

    fn read<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        Box::pin(async move {
            let Some(g) = crate::aws::describe_group(aws, &self.group).await? else {
                return Err(not_found(&self.group));
            };
            Ok(self.ready(&g))
        })
    }
}

/// The forward call: UpdateAutoScalingGroup with the lower desired capacity
/// (and minimum, when needed).
#[derive(Debug, PartialEq, Eq)]
struct SetCapacity {
    group: String,
    desired: i32,
    min: Option<i32>,
}

impl Forward for SetCapacity {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(&self.group)
                .desired_capacity(self.desired)
                .set_min_size(self.min)
                .send()
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

/// The undo: put a group's recorded min, max and desired capacity back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCapacity {
    /// The group.
    pub group: String,
    /// MinSize before.
    pub min: i32,
    /// MaxSize before.
    pub max: i32,
    /// DesiredCapacity before.
    pub desired: i32,
}

impl Revert for RestoreCapacity {
    const OPERATION: &'static str = "autoscaling:UpdateAutoScalingGroup (capacity)";

    fn resources(&self) -> Vec<String> {
        vec![self.group.clone()]
    }

    /// Puts min, max and desired back as recorded. A group that is gone has
    /// nothing to restore. Idempotent.
    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        let mut report = UndoReport::default();
        if crate::aws::describe_group(aws, &self.group).await?.is_none() {
            report.gone.push(self.group.clone());
            return Ok(report);
        }
        aws.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&self.group)
            .min_size(self.min)
            .max_size(self.max)
            .desired_capacity(self.desired)
            .send()
            .await
            .map_err(api("autoscaling", "UpdateAutoScalingGroup"))?;
        report.restored.push(self.group.clone());
        Ok(report)
    }
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

    /// The call is computed from the capacity read just before it, which the
    /// undo records; the minimum drops only when the new desired is below it.
    #[test]
    fn the_call_and_its_undo_come_from_the_capacity_read_before_it() {
        let read = ReadCapacity {
            group: "web".into(),
            drop: Drop::To(1),
        };
        let g = AutoScalingGroup::builder()
            .min_size(2)
            .max_size(5)
            .desired_capacity(4)
            .build();
        let ready = read.ready(&g);
        assert_eq!(
            ready.undo,
            RestoreCapacity {
                group: "web".into(),
                min: 2,
                max: 5,
                desired: 4
            }
            .into()
        );
        assert_eq!(
            format!("{:?}", ready.forward),
            format!(
                "{:?}",
                SetCapacity {
                    group: "web".into(),
                    desired: 1,
                    min: Some(1)
                }
            )
        );
        let g = AutoScalingGroup::builder()
            .min_size(0)
            .max_size(5)
            .desired_capacity(4)
            .build();
        assert_eq!(
            format!("{:?}", read.ready(&g).forward),
            format!(
                "{:?}",
                SetCapacity {
                    group: "web".into(),
                    desired: 1,
                    min: None
                }
            )
        );
    }
}
