//! The undos of the run's own setup, journaled under the environment: delete
//! the parallel copies, restore the listener rules and delete the copies'
//! target groups, stop the load generator, release the locks and the leases. Their work is done by
//! [`crate::environment`] and [`crate::lock`]; they live here because the
//! [`Undo`](super::Undo) enum is built from the faults' registry, and faults
//! may import the environment and the locks, never the reverse.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Revert, UndoReport};
use crate::aws::{Aws, AwsError};
use crate::environment::traffic::{ForwardAction, RuleRef};

/// Delete a temporary Auto Scaling group created by the run (with its
/// instances) and wait until its instances are terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAutoScalingGroup {
    /// The clone's name.
    pub group: String,
}

impl Revert for DeleteAutoScalingGroup {
    const OPERATION: &'static str = "autoscaling:DeleteAutoScalingGroup";

    fn resources(&self) -> Vec<String> {
        vec![self.group.clone()]
    }

    async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        crate::environment::delete_clone(aws, &self.group, hurry).await
    }
}

/// Remove the run's lock tag from the resources it locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteLockTags {
    /// Locked Auto Scaling groups.
    #[serde(default)]
    pub autoscaling_groups: Vec<String>,
    /// Locked instances.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// The run that holds the lock: only its own tag is removed.
    pub run_id: String,
}

impl Revert for DeleteLockTags {
    const OPERATION: &'static str = "tags:DeleteLockTags";

    fn resources(&self) -> Vec<String> {
        self.autoscaling_groups
            .iter()
            .chain(&self.instance_ids)
            .cloned()
            .collect()
    }

    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        crate::lock::release(aws, &self.autoscaling_groups, &self.instance_ids, &self.run_id).await
    }
}

/// Put a listener rule's (or a listener's default) actions back exactly as
/// they were recorded before the run shifted traffic to its copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreListenerRule {
    /// Which rule.
    #[serde(flatten)]
    pub rule: RuleRef,
    /// Its actions before the run, exactly as described.
    pub actions: Vec<ForwardAction>,
}

impl Revert for RestoreListenerRule {
    const OPERATION: &'static str = "elasticloadbalancing:ModifyRule (restore)";

    fn resources(&self) -> Vec<String> {
        vec![
            self.rule
                .rule_arn
                .clone()
                .unwrap_or_else(|| self.rule.listener_arn.clone()),
        ]
    }

    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        crate::environment::traffic::restore_actions(aws, &self.rule, &self.actions).await
    }
}

/// Detach a copy's target group from the copy, deregister its targets and
/// delete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTargetGroup {
    /// The target group's name (`gd-<run id>-e` or `-c`).
    pub name: String,
    /// The copy attached to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_group: Option<String>,
}

impl Revert for DeleteTargetGroup {
    const OPERATION: &'static str = "elasticloadbalancing:DeleteTargetGroup";

    fn resources(&self) -> Vec<String> {
        vec![self.name.clone()]
    }

    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        crate::environment::traffic::delete_target_group(aws, &self.name, self.autoscaling_group.as_deref())
            .await
    }
}

/// Stop the run's load generator: every process carrying its run id, by
/// process group (SIGTERM, then SIGKILL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopLoad {
    /// The run whose generator to stop.
    pub run_id: String,
    /// The command, for people.
    pub command: Vec<String>,
}

impl Revert for StopLoad {
    const OPERATION: &'static str = "process:StopLoadGenerator";

    fn resources(&self) -> Vec<String> {
        vec![self.command.join(" ")]
    }

    async fn run(&self, _aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        Ok(crate::environment::load::stop(&self.run_id).await)
    }
}

/// Release the run's leases in the policy's lock table (each only while it is
/// still the run's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseLeases {
    /// The DynamoDB table.
    pub table: String,
    /// The leases' keys (`asg#<group>`, `instance#<id>`).
    pub keys: Vec<String>,
    /// The run that holds them: another run's lease is left alone.
    pub run_id: String,
}

impl Revert for ReleaseLeases {
    const OPERATION: &'static str = "dynamodb:ReleaseLeases";

    fn resources(&self) -> Vec<String> {
        self.keys.clone()
    }

    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        crate::lease::release(aws, &self.table, &self.keys, &self.run_id).await
    }
}
