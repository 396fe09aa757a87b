//! `ec2:terminate-instances`: terminate the target instances. There is no
//! rollback — only their Auto Scaling group can heal — so the safety policy
//! refuses it in place unless `in_place.allow_terminate` is set; in parallel
//! mode it hits the run's copy only.

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, Revert, Step, StepContext, Targeting,
    UndoReport, batched_steps, no_params,
};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:terminate-instances",
    build,
    params: super::no_params_schema,
};

/// A stopped or starting instance can be terminated too.
const TARGETING: Targeting = Targeting {
    eligible: &["running", "stopped", "pending"],
    needs_group: false,
};

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    no_params(d, params, what)?;
    Some(InstanceFault::on(TARGETING, TerminateInstances))
}

/// Terminates instances.
#[derive(Debug)]
pub struct TerminateInstances;

impl PlanInstances for TerminateInstances {
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        batched_steps(targets, BATCH, |ids| {
            let undo = Nothing {
                reason: "terminated instances cannot come back; their Auto Scaling group replaces them"
                    .into(),
            };
            Step::ready(
                "ec2:TerminateInstances",
                ids.clone(),
                Terminate { instance_ids: ids },
                undo,
            )
        })
    }
}

/// The forward call: TerminateInstances.
#[derive(Debug)]
struct Terminate {
    instance_ids: Vec<String>,
}

impl Forward for Terminate {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.ec2
                .terminate_instances()
                .set_instance_ids(Some(self.instance_ids.clone()))
                .send()
                .await
                .map_err(api("ec2", "TerminateInstances"))?;
            Ok(())
        })
    }
}

/// The undo of what cannot be undone: nothing, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nothing {
    /// Why there is nothing to undo.
    pub reason: String,
}

impl Revert for Nothing {
    const OPERATION: &'static str = "none";

    fn resources(&self) -> Vec<String> {
        Vec::new()
    }

    async fn run(&self, _aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        Ok(UndoReport::default())
    }
}
