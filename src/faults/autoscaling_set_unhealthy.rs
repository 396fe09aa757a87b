//! `autoscaling:set-unhealthy`: mark the target instances Unhealthy in their
//! Auto Scaling group, as a failed health check would; the group then replaces
//! them. Rollback marks them Healthy again if they are still in the group.

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, Revert, Step, StepContext, Targeting,
    UndoReport, no_params,
};
use crate::aws::{Aws, AwsError, api};
use crate::model::Instance;
use crate::yaml::Decoder;

pub(super) const DEF: ActionDef = ActionDef {
    name: "autoscaling:set-unhealthy",
    build,
    params: super::no_params_schema,
};

/// Running instances of an Auto Scaling group: health is the group's.
const TARGETING: Targeting = Targeting {
    eligible: &["running"],
    needs_group: true,
};

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    no_params(d, params, what)?;
    Some(InstanceFault::on(TARGETING, SetUnhealthy))
}

/// Marks instances Unhealthy.
#[derive(Debug)]
pub struct SetUnhealthy;

impl PlanInstances for SetUnhealthy {
    /// SetInstanceHealth takes one instance per call.
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        targets
            .iter()
            .map(|t| {
                let undo = SetHealthy {
                    instance_ids: vec![t.id.clone()],
                };
                Step::ready(
                    "autoscaling:SetInstanceHealth",
                    vec![t.id.clone()],
                    MarkUnhealthy {
                        instance_id: t.id.clone(),
                    },
                    undo,
                )
            })
            .collect()
    }
}

/// The forward call: SetInstanceHealth Unhealthy.
#[derive(Debug)]
struct MarkUnhealthy {
    instance_id: String,
}

impl Forward for MarkUnhealthy {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(set_health(aws, &self.instance_id, "Unhealthy"))
    }
}

/// The undo: mark the instances Healthy in their group, if still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHealthy {
    /// The instances.
    pub instance_ids: Vec<String>,
}

impl Revert for SetHealthy {
    const OPERATION: &'static str = "autoscaling:SetInstanceHealth";

    fn resources(&self) -> Vec<String> {
        self.instance_ids.clone()
    }

    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        set_healthy(aws, &self.instance_ids).await
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
async fn set_healthy(aws: &Aws, ids: &[String]) -> Result<UndoReport, AwsError> {
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
