//! Faults: what gameday does to a target, and how it is undone.
//!
//! Each fault kind lives in its own file with its inject and its rollback, and
//! is registered here by action name. A fault acts on the targets the runner
//! hands it (the runner selects, batches and iterates) and is idempotent: the
//! same inject or rollback twice leaves the same state. Every planned call
//! carries its [`Undo`], which is plain data written to the journal *before*
//! the call is made, so `gameday recover` can undo it from the journal alone.

mod autoscaling_capacity_drop;
mod autoscaling_set_unhealthy;
mod autoscaling_suspend_processes;
mod cloudwatch_force_alarm;
mod ec2_az_outage;
mod ec2_network_blackhole;
mod ec2_reboot_instances;
mod ec2_stop_instances;
mod ec2_terminate_instances;

pub(crate) use ec2_network_blackhole::{BLACKHOLE_TAG, delete_blackhole_group};

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use marked_yaml::Node;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError};
use crate::model::{Instance, UndoReport};
use crate::yaml::Decoder;

/// A boxed future, so faults can be registered and called through `dyn Fault`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a fault acts on; the runner resolves that kind of target for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// EC2 instances, resolved and selected by the fault's `target`.
    Instances,
    /// Auto Scaling groups: the environment's group (the copy in parallel
    /// mode) or `target.autoscaling_group`; no instance is selected.
    Groups,
    /// One CloudWatch alarm named in the fault's params.
    Alarm,
}

/// What a fault may need to know about the run when it makes a call: names
/// and tags of resources it creates.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The run's id (tagged `gameday:run-id` on what a fault creates).
    pub run_id: String,
    /// The run's expiry (tagged `gameday:expires-at`, for `gameday cleanup`).
    pub expires_at: Timestamp,
    /// The fault making the call.
    pub fault: String,
}

/// One fault kind with its parameters, as written in an experiment.
///
/// Instance faults plan from the selected instances ([`Fault::plan`]); group
/// and alarm faults from the resolved names ([`Fault::plan_resources`]).
/// Faults whose undo must record the state *just before* the call (original
/// security groups, capacity, suspended processes, an alarm's state) fill it
/// in [`Fault::prepare`], which the runner calls right before journaling the
/// intent, so a fault held back by `start_after` records what it really changes.
pub trait Fault: Send + Sync + fmt::Debug {
    /// The action name, e.g. `ec2:stop-instances`.
    fn action(&self) -> &'static str;

    /// What the fault acts on.
    fn scope(&self) -> Scope {
        Scope::Instances
    }

    /// Whether the fault acts on EC2 instances (and so needs a target set).
    fn needs_instances(&self) -> bool {
        self.scope() == Scope::Instances
    }

    /// Whether an instance in this EC2 state may be targeted.
    fn eligible_state(&self, state: &str) -> bool {
        state == "running"
    }

    /// Whether targets must belong to an Auto Scaling group.
    fn needs_group(&self) -> bool {
        false
    }

    /// Narrows the eligible instances before the selection (`ec2:az-outage`
    /// keeps one AZ's). `rng` is the run's seeded generator.
    fn narrow(&self, candidates: Vec<Instance>, _rng: &mut StdRng) -> Vec<Instance> {
        candidates
    }

    /// Instance faults: the mutating calls this fault makes on `targets`,
    /// batched to the API's limits, each with its undo. Makes no AWS call.
    fn plan(&self, _targets: &[Instance]) -> Vec<Step> {
        Vec::new()
    }

    /// Group and alarm faults: the calls on the resolved group names (or the
    /// one alarm name). Makes no AWS call.
    fn plan_resources(&self, _names: &[String]) -> Vec<Step> {
        Vec::new()
    }

    /// Alarm faults: the alarm's name as written (variables unexpanded).
    fn alarm(&self) -> Option<&crate::yaml::Spanned<String>> {
        None
    }

    /// Group faults: how many instances a group of `desired` loses (for the
    /// blast radius); most group faults stop none.
    fn instances_removed(&self, _desired: usize) -> usize {
        0
    }

    /// Completes `step`'s undo with the state just before the call (read-only
    /// calls). The default keeps the planned step.
    fn prepare<'a>(
        &'a self,
        _aws: &'a Aws,
        _cx: &'a StepContext,
        step: Step,
    ) -> BoxFuture<'a, Result<Step, AwsError>> {
        Box::pin(async move { Ok(step) })
    }

    /// Makes one prepared call.
    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
}

/// One mutating API call and how to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `service:Operation`, e.g. `ec2:StopInstances`.
    pub operation: String,
    /// The resources the call acts on.
    pub resources: Vec<String>,
    /// How to put things back.
    pub undo: Undo,
}

/// How to undo one step: data, so that it survives in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// Start the instances again and wait until they are running.
    StartInstances {
        /// The instances to start.
        instance_ids: Vec<String>,
    },
    /// Delete a temporary Auto Scaling group created by the run (with its
    /// instances) and wait until its instances are terminated.
    DeleteAutoScalingGroup {
        /// The clone's name.
        group: String,
    },
    /// Nothing to undo, with why (e.g. terminated instances).
    Nothing {
        /// Why there is nothing to undo.
        reason: String,
    },
    /// Wait until the instances run again (after a reboot); start none.
    WaitRunning {
        /// The instances.
        instance_ids: Vec<String>,
    },
    /// Mark the instances Healthy in their group, if still there.
    SetHealthy {
        /// The instances.
        instance_ids: Vec<String>,
    },
    /// Delete the temporary security group of a network blackhole, once no
    /// instance uses it any more (found by name in its VPC, so the undo is
    /// known before the group's id exists).
    DeleteSecurityGroup {
        /// The VPC it was created in.
        vpc_id: String,
        /// Its name (`gd-<run-id>-<fault>`).
        group_name: String,
    },
    /// Give each instance exactly its original security groups again.
    RestoreSecurityGroups {
        /// Each instance with the groups it had before the blackhole.
        instances: Vec<InstanceGroups>,
    },
    /// Put a group's recorded subnet list (`VPCZoneIdentifier`) back exactly.
    RestoreSubnets {
        /// The group.
        group: String,
        /// The subnets as they were, comma-separated, in their order.
        vpc_zone_identifier: String,
        /// The Availability Zone the fault removes.
        az: String,
    },
    /// Resume the processes this run suspended (and only those).
    ResumeProcesses {
        /// The group.
        group: String,
        /// What this run suspended; processes suspended before it stay so.
        processes: Vec<String>,
    },
    /// Put a group's recorded min, max and desired capacity back exactly.
    RestoreCapacity {
        /// The group.
        group: String,
        /// MinSize before.
        min: i32,
        /// MaxSize before.
        max: i32,
        /// DesiredCapacity before.
        desired: i32,
    },
    /// Set an alarm back to its recorded state.
    SetAlarmState {
        /// The alarm.
        alarm: String,
        /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
        state: String,
    },
    /// Remove the run's lock tag from the resources it locked.
    DeleteLockTags {
        /// Locked Auto Scaling groups.
        #[serde(default)]
        autoscaling_groups: Vec<String>,
        /// Locked instances.
        #[serde(default)]
        instance_ids: Vec<String>,
        /// The run that holds the lock: only its own tag is removed.
        run_id: String,
    },
}

/// An instance's security groups, as recorded before a blackhole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceGroups {
    /// The instance.
    pub instance_id: String,
    /// Its VPC (where the blackhole group lives).
    pub vpc_id: String,
    /// Its security group ids before the change, in order.
    pub group_ids: Vec<String>,
}

impl Undo {
    /// The API operation the undo makes, for the journal.
    pub fn operation(&self) -> &'static str {
        match self {
            Undo::StartInstances { .. } => "ec2:StartInstances",
            Undo::Nothing { .. } => "none",
            Undo::WaitRunning { .. } => "ec2:DescribeInstances (wait running)",
            Undo::SetHealthy { .. } => "autoscaling:SetInstanceHealth",
            Undo::DeleteAutoScalingGroup { .. } => "autoscaling:DeleteAutoScalingGroup",
            Undo::DeleteLockTags { .. } => "tags:DeleteLockTags",
            Undo::DeleteSecurityGroup { .. } => "ec2:DeleteSecurityGroup",
            Undo::RestoreSecurityGroups { .. } => "ec2:ModifyInstanceAttribute (original groups)",
            Undo::RestoreSubnets { .. } => "autoscaling:UpdateAutoScalingGroup (subnets)",
            Undo::ResumeProcesses { .. } => "autoscaling:ResumeProcesses",
            Undo::RestoreCapacity { .. } => "autoscaling:UpdateAutoScalingGroup (capacity)",
            Undo::SetAlarmState { .. } => "cloudwatch:SetAlarmState",
        }
    }

    /// The resources the undo acts on.
    pub fn resources(&self) -> Vec<String> {
        match self {
            Undo::StartInstances { instance_ids }
            | Undo::WaitRunning { instance_ids }
            | Undo::SetHealthy { instance_ids } => instance_ids.clone(),
            Undo::Nothing { .. } => Vec::new(),
            Undo::DeleteAutoScalingGroup { group } => vec![group.clone()],
            Undo::DeleteLockTags {
                autoscaling_groups,
                instance_ids,
                ..
            } => autoscaling_groups.iter().chain(instance_ids).cloned().collect(),
            Undo::DeleteSecurityGroup { group_name, .. } => vec![group_name.clone()],
            Undo::RestoreSecurityGroups { instances } => {
                instances.iter().map(|i| i.instance_id.clone()).collect()
            }
            Undo::RestoreSubnets { group, .. }
            | Undo::ResumeProcesses { group, .. }
            | Undo::RestoreCapacity { group, .. } => vec![group.clone()],
            Undo::SetAlarmState { alarm, .. } => vec![alarm.clone()],
        }
    }

    /// Performs the undo. Idempotent. `hurry` cancelled means "skip waiting for
    /// the result where the restoring call has been made"; it never skips a call.
    pub async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        match self {
            Undo::StartInstances { instance_ids } => {
                ec2_stop_instances::start_and_wait(aws, instance_ids, hurry).await
            }
            Undo::Nothing { .. } => Ok(UndoReport::default()),
            Undo::WaitRunning { instance_ids } => {
                ec2_stop_instances::wait_running(aws, instance_ids, hurry).await
            }
            Undo::SetHealthy { instance_ids } => {
                autoscaling_set_unhealthy::set_healthy(aws, instance_ids, hurry).await
            }
            Undo::DeleteAutoScalingGroup { group } => {
                crate::environment::delete_clone(aws, group, hurry).await
            }
            Undo::DeleteLockTags {
                autoscaling_groups,
                instance_ids,
                run_id,
            } => crate::lock::release(aws, autoscaling_groups, instance_ids, run_id).await,
            Undo::DeleteSecurityGroup { vpc_id, group_name } => {
                ec2_network_blackhole::delete_blackhole_group(aws, vpc_id, group_name, hurry).await
            }
            Undo::RestoreSecurityGroups { instances } => {
                ec2_network_blackhole::restore_groups(aws, instances).await
            }
            Undo::RestoreSubnets {
                group,
                vpc_zone_identifier,
                ..
            } => ec2_az_outage::restore_subnets(aws, group, vpc_zone_identifier).await,
            Undo::ResumeProcesses { group, processes } => {
                autoscaling_suspend_processes::resume(aws, group, processes).await
            }
            Undo::RestoreCapacity {
                group,
                min,
                max,
                desired,
            } => autoscaling_capacity_drop::restore(aws, group, *min, *max, *desired).await,
            Undo::SetAlarmState { alarm, state } => cloudwatch_force_alarm::set_back(aws, alarm, state).await,
        }
    }
}

/// Decodes a fault's `params` (absent when `None`) for the fault described by
/// the text, recording problems in the decoder; the location is the fault's.
pub type Build = fn(&mut Decoder, Option<&Node>, &str, crate::yaml::Loc) -> Option<std::sync::Arc<dyn Fault>>;

/// A registered action: its name and how to build it from `params`.
pub struct ActionDef {
    /// The action name used in experiment files.
    pub name: &'static str,
    /// Decodes `params` (absent when `None`), recording problems in the
    /// decoder; the location is the fault's, for a missing required param.
    pub build: Build,
}

/// Every implemented action.
pub const ACTIONS: &[ActionDef] = &[
    ec2_stop_instances::DEF,
    ec2_reboot_instances::DEF,
    ec2_terminate_instances::DEF,
    ec2_network_blackhole::DEF,
    ec2_az_outage::DEF,
    autoscaling_set_unhealthy::DEF,
    autoscaling_suspend_processes::DEF,
    autoscaling_capacity_drop::DEF,
    cloudwatch_force_alarm::DEF,
];

/// The definition of an implemented action.
pub fn find(name: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Names of every implemented action.
pub fn names() -> Vec<&'static str> {
    ACTIONS.iter().map(|a| a.name).collect()
}

/// For actions without parameters: rejects a `params` mapping with any key.
pub(crate) fn no_params(d: &mut Decoder, params: Option<&Node>, what: &str) -> Option<()> {
    if let Some(p) = params {
        d.map(p, what, &[])?;
    }
    Some(())
}

/// One step per batch of target ids, each undone by `undo` of its batch: the
/// plan of every fault that makes one batched call per group of instances.
pub(crate) fn batched_steps(
    targets: &[Instance],
    size: usize,
    operation: &str,
    undo: impl Fn(Vec<String>) -> Undo,
) -> Vec<Step> {
    let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    batches(&ids, size)
        .map(|ids| Step {
            operation: operation.to_string(),
            resources: ids.clone(),
            undo: undo(ids),
        })
        .collect()
}

/// Splits `items` into batches of at most `size`, for APIs with per-call limits.
pub fn batches<T: Clone>(items: &[T], size: usize) -> impl Iterator<Item = Vec<T>> + '_ {
    items.chunks(size).map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gameday recover` reads undos back from the journal: each must survive
    /// a JSON round trip with the state it recorded.
    #[test]
    fn undos_are_plain_data_that_round_trip_through_json() {
        let undos = vec![
            Undo::DeleteSecurityGroup {
                vpc_id: "vpc-1".into(),
                group_name: "gd-run-f".into(),
            },
            Undo::RestoreSecurityGroups {
                instances: vec![InstanceGroups {
                    instance_id: "i-1".into(),
                    vpc_id: "vpc-1".into(),
                    group_ids: vec!["sg-a".into(), "sg-b".into()],
                }],
            },
            Undo::RestoreSubnets {
                group: "web".into(),
                vpc_zone_identifier: "subnet-b,subnet-a".into(),
                az: "us-east-1b".into(),
            },
            Undo::ResumeProcesses {
                group: "web".into(),
                processes: vec!["Launch".into()],
            },
            Undo::RestoreCapacity {
                group: "web".into(),
                min: 2,
                max: 5,
                desired: 3,
            },
            Undo::SetAlarmState {
                alarm: "pager".into(),
                state: "INSUFFICIENT_DATA".into(),
            },
        ];
        for u in undos {
            let text = serde_json::to_string(&u).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Undo>(&text).expect("deserializes"),
                u,
                "{text}"
            );
        }
        let text = serde_json::to_string(&Undo::RestoreCapacity {
            group: "web".into(),
            min: 2,
            max: 5,
            desired: 3,
        })
        .expect("serializes");
        assert_eq!(
            text,
            r#"{"kind":"restore_capacity","group":"web","min":2,"max":5,"desired":3}"#
        );
    }
}
