//! `ec2:terminate-instances`: terminate the target instances. There is no
//! rollback — only their Auto Scaling group can heal — so the safety policy
//! refuses it in place unless `in_place.allow_terminate` is set; in parallel
//! mode it hits the run's copy only.

use std::sync::Arc;

use marked_yaml::Node;

use super::{ActionDef, BoxFuture, Fault, Step, StepContext, Undo, batched_steps, no_params};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:terminate-instances",
    build,
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    no_params(d, params, what)?;
    Some(Arc::new(TerminateInstances))
}

/// Terminates instances.
#[derive(Debug)]
pub struct TerminateInstances;

impl Fault for TerminateInstances {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn eligible_state(&self, state: &str) -> bool {
        matches!(state, "running" | "stopped" | "pending")
    }

    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        batched_steps(targets, BATCH, "ec2:TerminateInstances", |_| Undo::Nothing {
            reason: "terminated instances cannot come back; their Auto Scaling group replaces them".into(),
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.ec2
                .terminate_instances()
                .set_instance_ids(Some(step.resources.clone()))
                .send()
                .await
                .map_err(api("ec2", "TerminateInstances"))?;
            Ok(())
        })
    }
}
