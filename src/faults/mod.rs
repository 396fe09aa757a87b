//! Faults: what gameday does to a target, and how it is undone.
//!
//! Each fault kind lives in its own file with its inject and its rollback, and
//! is registered here by action name. A fault acts on the targets the runner
//! hands it (the runner selects, batches and iterates) and is idempotent: the
//! same inject or rollback twice leaves the same state. Every planned call
//! carries its [`Undo`], which is plain data written to the journal *before*
//! the call is made, so `gameday recover` can undo it from the journal alone.

mod autoscaling_set_unhealthy;
mod ec2_reboot_instances;
mod ec2_stop_instances;
mod ec2_terminate_instances;

pub(crate) use ec2_stop_instances::instance_states;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError};
use crate::targets::Instance;
use crate::yaml::Decoder;

/// A boxed future, so faults can be registered and called through `dyn Fault`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One fault kind with its parameters, as written in an experiment.
pub trait Fault: Send + Sync + fmt::Debug {
    /// The action name, e.g. `ec2:stop-instances`.
    fn action(&self) -> &'static str;

    /// Whether the fault acts on EC2 instances (and so needs a target set).
    fn needs_instances(&self) -> bool {
        true
    }

    /// Whether an instance in this EC2 state may be targeted.
    fn eligible_state(&self, state: &str) -> bool;

    /// Whether targets must belong to an Auto Scaling group.
    fn needs_group(&self) -> bool {
        false
    }


    /// The mutating calls this fault makes on `targets`, batched to the API's
    /// limits, each with its undo. Makes no AWS call.
    fn plan(&self, targets: &[Instance]) -> Vec<Step>;

    /// Makes one planned call.
    fn apply<'a>(&'a self, aws: &'a Aws, step: &'a Step) -> BoxFuture<'a, Result<(), AwsError>>;
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

/// What a completed undo found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    /// Resources confirmed restored.
    pub restored: Vec<String>,
    /// Resources that no longer exist (e.g. terminated by their group), so there is nothing to restore.
    pub gone: Vec<String>,
    /// Resources whose restore was requested but not waited for (the operator asked to hurry).
    pub not_waited: Vec<String>,
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
        }
    }

    /// The resources the undo acts on.
    pub fn resources(&self) -> Vec<String> {
        match self {
            Undo::StartInstances { instance_ids } | Undo::WaitRunning { instance_ids } | Undo::SetHealthy { instance_ids } => instance_ids.clone(),
            Undo::Nothing { .. } => Vec::new(),
            Undo::DeleteAutoScalingGroup { group } => vec![group.clone()],
            Undo::DeleteLockTags { autoscaling_groups, instance_ids, .. } => autoscaling_groups.iter().chain(instance_ids).cloned().collect(),
        }
    }

    /// Performs the undo. Idempotent. `hurry` cancelled means "skip waiting for
    /// the result where the restoring call has been made"; it never skips a call.
    pub async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        match self {
            Undo::StartInstances { instance_ids } => ec2_stop_instances::start_and_wait(aws, instance_ids, hurry).await,
            Undo::Nothing { .. } => Ok(UndoReport::default()),
            Undo::WaitRunning { instance_ids } => ec2_stop_instances::wait_running(aws, instance_ids, hurry).await,
            Undo::SetHealthy { instance_ids } => autoscaling_set_unhealthy::set_healthy(aws, instance_ids, hurry).await,
            Undo::DeleteAutoScalingGroup { group } => crate::environment::delete_clone(aws, group, hurry).await,
            Undo::DeleteLockTags { autoscaling_groups, instance_ids, run_id } => {
                crate::lock::release(aws, autoscaling_groups, instance_ids, run_id).await
            }
        }
    }
}

/// A registered action: its name and how to build it from `params`.
pub struct ActionDef {
    /// The action name used in experiment files.
    pub name: &'static str,
    /// Decodes `params` (absent when `None`), recording problems in the decoder.
    pub build: fn(&mut Decoder, Option<&Node>, &str) -> Option<std::sync::Arc<dyn Fault>>,
}

/// Every implemented action.
pub const ACTIONS: &[ActionDef] =
    &[ec2_stop_instances::DEF, ec2_reboot_instances::DEF, ec2_terminate_instances::DEF, autoscaling_set_unhealthy::DEF];

/// Actions from the design's fault table that this version does not implement
/// yet; files using them get a clear "not implemented" error instead of "unknown".
pub const PLANNED: &[&str] = &[
    "ec2:network-blackhole",
    "ec2:az-outage",
    "autoscaling:suspend-processes",
    "autoscaling:capacity-drop",
    "cloudwatch:force-alarm",
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
pub(crate) fn batched_steps(targets: &[Instance], size: usize, operation: &str, undo: impl Fn(Vec<String>) -> Undo) -> Vec<Step> {
    let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    batches(&ids, size).map(|ids| Step { operation: operation.to_string(), resources: ids.clone(), undo: undo(ids) }).collect()
}

/// Splits `items` into batches of at most `size`, for APIs with per-call limits.
pub fn batches<T: Clone>(items: &[T], size: usize) -> impl Iterator<Item = Vec<T>> + '_ {
    items.chunks(size).map(|c| c.to_vec())
}
