//! `ec2:reboot-instances`: reboot the target instances. Nothing to undo; the
//! rollback waits until they are running again.

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, RUNNING, Revert, Step, StepContext,
    UndoReport, batched_steps, no_params,
};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:reboot-instances",
    build,
    params: super::no_params_schema,
};

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    no_params(d, params, what)?;
    Some(InstanceFault::on(RUNNING, RebootInstances))
}

/// Reboots instances.
#[derive(Debug)]
pub struct RebootInstances;

impl PlanInstances for RebootInstances {
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        batched_steps(targets, BATCH, |ids| {
            let undo = WaitRunning {
                instance_ids: ids.clone(),
            };
            Step::ready(
                "ec2:RebootInstances",
                ids.clone(),
                Reboot { instance_ids: ids },
                undo,
            )
        })
    }
}

/// The forward call: RebootInstances.
#[derive(Debug)]
struct Reboot {
    instance_ids: Vec<String>,
}

impl Forward for Reboot {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.ec2
                .reboot_instances()
                .set_instance_ids(Some(self.instance_ids.clone()))
                .send()
                .await
                .map_err(api("ec2", "RebootInstances"))?;
            Ok(())
        })
    }
}

/// The undo: wait until the instances run again; start none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRunning {
    /// The instances.
    pub instance_ids: Vec<String>,
}

impl Revert for WaitRunning {
    const OPERATION: &'static str = "ec2:DescribeInstances (wait running)";

    fn resources(&self) -> Vec<String> {
        self.instance_ids.clone()
    }

    async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        super::ec2_stop_instances::converge_running(aws, &self.instance_ids, hurry, false).await
    }
}
