//! The undos of the run's own setup, journaled under the environment: delete
//! the parallel copy, release the locks and the leases. Their work is done by
//! [`crate::environment`] and [`crate::lock`]; they live here because the
//! [`Undo`](super::Undo) enum is built from the faults' registry, and faults
//! may import the environment and the locks, never the reverse.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Revert, UndoReport};
use crate::aws::{Aws, AwsError};

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
