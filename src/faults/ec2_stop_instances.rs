//! `ec2:stop-instances`: stop the target instances (optionally forced);
//! rollback starts them again and waits until they are running.

use std::time::Duration;

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, RUNNING, Revert, Step, StepContext,
    UndoReport, batched_steps, batches,
};
use crate::aws::{Aws, AwsError, api, instance_states};
use crate::model::Instance;
use crate::schema;
use crate::yaml::Decoder;

/// StopInstances and StartInstances accept many ids; we keep calls small so a
/// failure names a small set and throttling costs little.
const BATCH: usize = 100;

/// How long a rollback waits for stopped instances to run again.
const START_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:stop-instances",
    build,
    params,
};

/// The keys of `params`.
const PARAMS: &[&str] = &["force"];

fn params() -> serde_json::Value {
    schema::object("ec2:stop-instances params", PARAMS)
        .key(
            "force",
            schema::boolean(
                "a forced stop (no clean OS shutdown), as after a hardware failure; default false",
            ),
        )
        .build("optional: `force`")
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    let mut force = false;
    if let Some(p) = params {
        let m = d.map(p, what, PARAMS)?;
        if let Some(n) = m.get("force") {
            force = d.boolean(n, &format!("{what}.force"))?;
        }
    }
    Some(InstanceFault::on(RUNNING, StopInstances { force }))
}

/// Stops instances.
#[derive(Debug)]
pub struct StopInstances {
    /// Force the stop (no clean OS shutdown), as after a hardware failure.
    pub force: bool,
}

impl PlanInstances for StopInstances {
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        batched_steps(targets, BATCH, |ids| stop_step(ids, Some(self.force)))
    }
}

/// One StopInstances call on `ids`, undone by starting them again.
pub(super) fn stop_step(ids: Vec<String>, force: Option<bool>) -> Step {
    let undo = StartInstances {
        instance_ids: ids.clone(),
    };
    Step::ready(
        "ec2:StopInstances",
        ids.clone(),
        Stop {
            instance_ids: ids,
            force,
        },
        undo,
    )
}

/// The forward call: StopInstances.
#[derive(Debug)]
pub(super) struct Stop {
    instance_ids: Vec<String>,
    /// `Force`, or left out of the request.
    force: Option<bool>,
}

impl Forward for Stop {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.ec2
                .stop_instances()
                .set_instance_ids(Some(self.instance_ids.clone()))
                .set_force(self.force)
                .send()
                .await
                .map_err(api("ec2", "StopInstances"))?;
            Ok(())
        })
    }
}

/// The undo: start the instances again and wait until they are running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInstances {
    /// The instances to start.
    pub instance_ids: Vec<String>,
}

impl Revert for StartInstances {
    const OPERATION: &'static str = "ec2:StartInstances";

    fn resources(&self) -> Vec<String> {
        self.instance_ids.clone()
    }

    async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        converge_running(aws, &self.instance_ids, hurry, true).await
    }
}

/// Waits until every instance of `ids` runs: with `start`, starts every
/// stopped one (instances still stopping are waited for and then started);
/// without, starts none (after a reboot, an instance someone else stopped is
/// not ours to start). Terminated ones are reported as gone. When `hurry` is
/// cancelled, returns once every start was requested.
pub(super) async fn converge_running(
    aws: &Aws,
    ids: &[String],
    hurry: &CancellationToken,
    start: bool,
) -> Result<UndoReport, AwsError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(250);
    loop {
        let states = instance_states(aws, ids).await?;
        let mut to_start = Vec::new();
        let mut waiting = Vec::new();
        let mut report = UndoReport::default();
        for id in ids {
            match states.get(id).map(String::as_str) {
                Some("running") => report.restored.push(id.clone()),
                Some("stopped") if start => to_start.push(id.clone()),
                Some("stopped") => report.gone.push(id.clone()),
                Some("pending") => waiting.push(id.clone()),
                Some("stopping") => waiting.push(id.clone()),
                Some("terminated" | "shutting-down") | None => report.gone.push(id.clone()),
                Some(_) => waiting.push(id.clone()),
            }
        }
        for chunk in batches(&to_start, BATCH) {
            aws.ec2
                .start_instances()
                .set_instance_ids(Some(chunk))
                .send()
                .await
                .map_err(api("ec2", "StartInstances"))?;
        }
        if to_start.is_empty() && waiting.is_empty() {
            return Ok(report);
        }
        // Once every start has been requested, an operator in a hurry may stop
        // waiting for "running"; instances still stopping must be waited for,
        // or they would never be started.
        let stopping = waiting
            .iter()
            .any(|id| states.get(id).is_some_and(|s| s == "stopping"));
        if hurry.is_cancelled() && !stopping {
            report.not_waited = to_start.into_iter().chain(waiting).collect();
            return Ok(report);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AwsError::timeout(
                "ec2",
                "StartInstances",
                format!(
                    "instances not running after {}s: {}",
                    START_TIMEOUT.as_secs(),
                    to_start.into_iter().chain(waiting).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = hurry.cancelled(), if !stopping => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
