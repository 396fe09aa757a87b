//! `ec2:reboot-instances`: reboot the target instances. Nothing to undo; the
//! rollback waits until they are running again.

use std::sync::Arc;

use marked_yaml::Node;

use super::{ActionDef, BoxFuture, Fault, Step, StepContext, Undo, batched_steps, no_params};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:reboot-instances",
    build,
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    no_params(d, params, what)?;
    Some(Arc::new(RebootInstances))
}

/// Reboots instances.
#[derive(Debug)]
pub struct RebootInstances;

impl Fault for RebootInstances {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn eligible_state(&self, state: &str) -> bool {
        state == "running"
    }

    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        batched_steps(targets, BATCH, "ec2:RebootInstances", |ids| Undo::WaitRunning {
            instance_ids: ids,
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
                .reboot_instances()
                .set_instance_ids(Some(step.resources.clone()))
                .send()
                .await
                .map_err(api("ec2", "RebootInstances"))?;
            Ok(())
        })
    }
}
