//! `ec2:reboot-instances`: reboot the target instances. Nothing to undo; the
//! rollback waits until they are running again.

use std::sync::Arc;

use marked_yaml::Node;

use super::{batches, no_params, ActionDef, BoxFuture, Fault, Step, Undo};
use crate::aws::{api, Aws, AwsError};
use crate::targets::Instance;
use crate::yaml::Decoder;

const BATCH: usize = 100;

pub(super) const DEF: ActionDef = ActionDef { name: "ec2:reboot-instances", build };

fn build(d: &mut Decoder, params: Option<&Node>, what: &str) -> Option<Arc<dyn Fault>> {
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
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        batches(&ids, BATCH)
            .map(|ids| Step { operation: "ec2:RebootInstances".into(), resources: ids.clone(), undo: Undo::WaitRunning { instance_ids: ids } })
            .collect()
    }

    fn apply<'a>(&'a self, aws: &'a Aws, step: &'a Step) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.ec2.reboot_instances().set_instance_ids(Some(step.resources.clone())).send().await.map_err(api("ec2", "RebootInstances"))?;
            Ok(())
        })
    }
}
