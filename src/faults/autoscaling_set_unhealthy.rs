//! `autoscaling:set-unhealthy`: mark the target instances Unhealthy in their
//! Auto Scaling group, as a failed health check would; the group then replaces
//! them. Rollback marks them Healthy again if they are still in the group.

use std::sync::Arc;

use marked_yaml::Node;
use tokio_util::sync::CancellationToken;

use super::{ActionDef, BoxFuture, Fault, Step, StepContext, Undo, UndoReport, no_params};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

pub(super) const DEF: ActionDef = ActionDef {
    name: "autoscaling:set-unhealthy",
    build,
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    no_params(d, params, what)?;
    Some(Arc::new(SetUnhealthy))
}

/// Marks instances Unhealthy.
#[derive(Debug)]
pub struct SetUnhealthy;

impl Fault for SetUnhealthy {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn eligible_state(&self, state: &str) -> bool {
        state == "running"
    }

    fn needs_group(&self) -> bool {
        true
    }

    /// SetInstanceHealth takes one instance per call.
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        targets
            .iter()
            .map(|t| Step {
                operation: "autoscaling:SetInstanceHealth".into(),
                resources: vec![t.id.clone()],
                undo: Undo::SetHealthy {
                    instance_ids: vec![t.id.clone()],
                },
            })
            .collect()
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            for id in &step.resources {
                set_health(aws, id, "Unhealthy").await?;
            }
            Ok(())
        })
    }
}

async fn set_health(aws: &Aws, id: &str, status: &str) -> Result<(), AwsError> {
    aws.autoscaling
        .set_instance_health()
        .instance_id(id)
        .health_status(status)
        .should_respect_grace_period(false)
        .send()
        .await
        .map_err(api("autoscaling", "SetInstanceHealth"))?;
    Ok(())
}

/// Marks each instance still in an Auto Scaling group Healthy; instances the
/// group already replaced are reported as gone. Idempotent.
pub(crate) async fn set_healthy(
    aws: &Aws,
    ids: &[String],
    _hurry: &CancellationToken,
) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    let mut present = std::collections::BTreeSet::new();
    // DescribeAutoScalingInstances takes at most 50 ids per call.
    for chunk in super::batches(ids, 50) {
        let mut pages = aws
            .autoscaling
            .describe_auto_scaling_instances()
            .set_instance_ids(Some(chunk))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("autoscaling", "DescribeAutoScalingInstances"))?;
            present.extend(
                page.auto_scaling_instances()
                    .iter()
                    .filter(|i| !matches!(i.lifecycle_state(), Some(s) if s.starts_with("Terminat")))
                    .filter_map(|i| i.instance_id().map(str::to_string)),
            );
        }
    }
    for id in ids {
        if present.contains(id) {
            set_health(aws, id, "Healthy").await?;
            report.restored.push(id.clone());
        } else {
            report.gone.push(id.clone());
        }
    }
    Ok(report)
}
