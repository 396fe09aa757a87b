//! The environment faults go into. In parallel mode (the default) that is a
//! temporary clone of the workload's Auto Scaling group, created for the run
//! and deleted after it on every path; in-place mode uses the real group.
//!
//! The clone copies what makes the workload itself — launch template (or
//! launch configuration, or mixed-instances policy) and version, subnets and
//! AZs, health-check settings, tags — but not the load balancers or target
//! groups: no user reaches a copy unless the experiment asks for it with
//! `environment.traffic`. Then there are two copies of equal capacity, the
//! experiment copy (faults go there) and the control copy, and they get
//! either a share of the load balancer's requests ([`traffic`]) or the
//! team's own load generator ([`load`]). Clones carry `gameday:*` tags
//! (propagated to their instances) so `gameday cleanup` can find them even
//! when the run's journal is lost.

pub mod load;
pub mod traffic;

use std::time::Duration;

use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError, Refusal, api, describe_group, instance_states};
use crate::model::UndoReport;

/// Tag with the id of the run that created a resource.
pub const RUN_ID_TAG: &str = "gameday:run-id";
/// Tag with the experiment's name.
pub const EXPERIMENT_TAG: &str = "gameday:experiment";
/// Tag with the time after which `gameday cleanup` may delete the resource.
pub const EXPIRES_TAG: &str = "gameday:expires-at";
/// Tag with the experiment's owner.
pub const OWNER_TAG: &str = "gameday:owner";
/// Tag naming the group a clone was made from.
pub const CLONE_OF_TAG: &str = "gameday:clone-of";
/// Tag saying which copy a clone is when the run has two: `experiment` or `control`.
pub const ROLE_TAG: &str = "gameday:role";

/// Auto Scaling group names may be at most this long.
const MAX_GROUP_NAME: usize = 255;
/// How long teardown waits for a deleted clone's instances to terminate.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why the parallel environment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The source group does not exist.
    #[error("Auto Scaling group `{0}` not found")]
    NoSuchGroup(String),
    /// The source group has nothing to launch instances from.
    #[error(
        "Auto Scaling group `{0}` has no launch template, launch configuration or mixed-instances policy to copy"
    )]
    Unclonable(String),
    /// The clone did not become healthy in time.
    #[error(
        "the clone `{group}` had {healthy} of {wanted} healthy instances after {waited}s (environment.ready_timeout)"
    )]
    NotReady {
        /// The clone.
        group: String,
        /// InService, Healthy, running instances at the deadline.
        healthy: usize,
        /// The capacity asked for.
        wanted: usize,
        /// Seconds waited.
        waited: u64,
    },
}

/// The name of a run's clone of `source` (the experiment copy).
pub fn clone_name(run_id: &str, source: &str) -> String {
    let mut name = format!("gd-{run_id}-{source}");
    name.truncate(MAX_GROUP_NAME);
    name
}

/// The name of a run's control copy of `source`.
pub fn control_name(run_id: &str, source: &str) -> String {
    let mut name = format!("gd-{run_id}-control-{source}");
    name.truncate(MAX_GROUP_NAME);
    name
}

/// What identifies a run on the resources it creates.
#[derive(Debug, Clone)]
pub struct RunTags {
    /// The run.
    pub run_id: String,
    /// The experiment's name.
    pub experiment: String,
    /// The experiment's owner, if given.
    pub owner: Option<String>,
    /// When cleanup may remove the resources.
    pub expires_at: Timestamp,
    /// Which copy, when the run has two (`experiment` or `control`).
    pub role: Option<&'static str>,
}

impl RunTags {
    pub(crate) fn pairs(&self, source: &str) -> Vec<(String, String)> {
        let mut out = vec![
            (RUN_ID_TAG.to_string(), self.run_id.clone()),
            (EXPERIMENT_TAG.to_string(), self.experiment.clone()),
            (EXPIRES_TAG.to_string(), self.expires_at.to_string()),
            (CLONE_OF_TAG.to_string(), source.to_string()),
        ];
        if let Some(o) = &self.owner {
            out.push((OWNER_TAG.to_string(), o.clone()));
        }
        if let Some(r) = self.role {
            out.push((ROLE_TAG.to_string(), r.to_string()));
        }
        out
    }
}

/// Whether `g` has something to launch a clone's instances from.
pub fn check_clonable(g: &AutoScalingGroup) -> Result<(), EnvError> {
    if g.launch_template().is_some()
        || g.mixed_instances_policy().is_some()
        || g.launch_configuration_name().is_some()
    {
        Ok(())
    } else {
        Err(EnvError::Unclonable(
            g.auto_scaling_group_name().unwrap_or_default().to_string(),
        ))
    }
}

/// Creates the clone `name` of the group `g` with `capacity` instances.
/// Idempotent: a clone that already exists (a retried call) is left as it is.
pub async fn create_clone(
    aws: &Aws,
    g: &AutoScalingGroup,
    name: &str,
    capacity: i32,
    tags: &RunTags,
) -> Result<(), AwsError> {
    if describe_group(aws, name).await?.is_some() {
        return Ok(());
    }
    let source = g.auto_scaling_group_name().unwrap_or_default();
    let mut req = aws
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name);
    if let Some(lt) = g.launch_template() {
        // The API takes the template's id or its name, never both.
        let spec = match lt.launch_template_id() {
            Some(id) => LaunchTemplateSpecification::builder().launch_template_id(id),
            None => LaunchTemplateSpecification::builder()
                .set_launch_template_name(lt.launch_template_name().map(str::to_string)),
        };
        req = req.launch_template(spec.set_version(lt.version().map(str::to_string)).build());
    } else if let Some(mip) = g.mixed_instances_policy() {
        req = req.mixed_instances_policy(mip.clone());
    } else if let Some(lc) = g.launch_configuration_name() {
        req = req.launch_configuration_name(lc);
    }
    match g.vpc_zone_identifier().filter(|s| !s.is_empty()) {
        Some(subnets) => req = req.vpc_zone_identifier(subnets),
        None => req = req.set_availability_zones(Some(g.availability_zones().to_vec())),
    }
    if let Some(t) = g.health_check_type() {
        req = req.health_check_type(t);
    }
    if let Some(grace) = g.health_check_grace_period() {
        req = req.health_check_grace_period(grace);
    }
    let min = g.min_size().unwrap_or(0).min(capacity);
    let max = g.max_size().unwrap_or(capacity).max(capacity);
    req = req.min_size(min).max_size(max).desired_capacity(capacity);
    for t in g.tags() {
        let key = t.key().unwrap_or_default();
        // aws:* tags are reserved; gameday:* tags of the source (a lock) are not the clone's.
        if key.is_empty() || key.starts_with("aws:") || key.starts_with("gameday:") {
            continue;
        }
        req = req.tags(
            Tag::builder()
                .key(key)
                .value(t.value().unwrap_or_default())
                .propagate_at_launch(t.propagate_at_launch().unwrap_or(false))
                .build(),
        );
    }
    for (k, v) in tags.pairs(source) {
        req = req.tags(Tag::builder().key(k).value(v).propagate_at_launch(true).build());
    }
    req.send()
        .await
        .map_err(api("autoscaling", "CreateAutoScalingGroup"))?;
    Ok(())
}

/// `ip:port` of each instance (its private address), in the order given;
/// instances without an address are left out.
pub async fn addresses(aws: &Aws, ids: &[String], port: u16) -> Result<Vec<String>, AwsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = aws
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(api("ec2", "DescribeInstances"))?;
    let found: std::collections::BTreeMap<String, String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| Some((i.instance_id()?.to_string(), i.private_ip_address()?.to_string())))
        .collect();
    Ok(ids
        .iter()
        .filter_map(|id| found.get(id).map(|ip| format!("{ip}:{port}")))
        .collect())
}

/// Instances of `g` that serve: InService and Healthy in the group.
pub fn in_service(g: &AutoScalingGroup) -> Vec<String> {
    let mut ids: Vec<String> = g
        .instances()
        .iter()
        .filter(|i| {
            i.lifecycle_state().is_some_and(|s| s.as_str() == "InService")
                && i.health_status()
                    .is_some_and(|h| h.eq_ignore_ascii_case("Healthy"))
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Waits until the clone has `wanted` InService, Healthy, running instances;
/// returns their ids (sorted). To stop waiting early, drop the future.
pub async fn wait_ready(
    aws: &Aws,
    name: &str,
    wanted: usize,
    timeout: Duration,
) -> Result<Vec<String>, EnvError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let g = describe_group(aws, name)
            .await?
            .ok_or_else(|| EnvError::NoSuchGroup(name.to_string()))?;
        let serving = in_service(&g);
        let states = instance_states(aws, &serving).await?;
        let ready: Vec<String> = serving
            .into_iter()
            .filter(|id| states.get(id).is_some_and(|s| s == "running"))
            .collect();
        if ready.len() >= wanted {
            return Ok(ready);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(EnvError::NotReady {
                group: name.to_string(),
                healthy: ready.len(),
                wanted,
                waited: waited.as_secs(),
            });
        }
        tokio::time::sleep(pause.min(timeout - waited)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Deletes a clone and its instances, then waits until they are terminated
/// (unless `hurry`). Refuses a group that is not a gameday clone: teardown
/// must never delete the workload itself. Idempotent.
pub async fn delete_clone(aws: &Aws, name: &str, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
    let Some(g) = describe_group(aws, name).await? else {
        return Ok(UndoReport {
            gone: vec![name.to_string()],
            ..Default::default()
        });
    };
    if !g.tags().iter().any(|t| t.key() == Some(RUN_ID_TAG)) {
        return Err(AwsError::refused(
            "autoscaling",
            "DeleteAutoScalingGroup",
            Refusal::NotAGamedayClone,
            format!(
                "refusing to delete `{name}`: it has no `{RUN_ID_TAG}` tag, so gameday did not create it"
            ),
        ));
    }
    let instances: Vec<String> = g
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    aws.autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(name)
        .force_delete(true)
        .send()
        .await
        .map_err(api("autoscaling", "DeleteAutoScalingGroup"))?;
    let mut report = UndoReport {
        restored: vec![name.to_string()],
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + TEARDOWN_TIMEOUT;
    loop {
        let states = instance_states(aws, &instances).await?;
        let alive: Vec<String> = instances
            .iter()
            .filter(|id| states.get(*id).is_some_and(|s| s != "terminated"))
            .cloned()
            .collect();
        if alive.is_empty() {
            return Ok(report);
        }
        if hurry.is_cancelled() {
            report.not_waited = alive;
            return Ok(report);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AwsError::timeout(
                "ec2",
                "TerminateInstances",
                format!(
                    "instances of deleted clone `{name}` not terminated after {}s: {}",
                    TEARDOWN_TIMEOUT.as_secs(),
                    alive.join(", ")
                ),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = hurry.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{Instance, LifecycleState};

    fn inst(id: &str, state: LifecycleState, health: &str) -> Instance {
        Instance::builder()
            .instance_id(id)
            .lifecycle_state(state)
            .health_status(health)
            .build()
    }

    #[test]
    fn only_in_service_healthy_instances_serve() {
        let g = AutoScalingGroup::builder()
            .instances(inst("i-3", LifecycleState::InService, "Healthy"))
            .instances(inst("i-1", LifecycleState::Pending, "Healthy"))
            .instances(inst("i-2", LifecycleState::InService, "Unhealthy"))
            .instances(inst("i-0", LifecycleState::InService, "HEALTHY"))
            .build();
        assert_eq!(in_service(&g), vec!["i-0", "i-3"]);
    }

    #[test]
    fn clone_names_fit_the_api_limit() {
        assert_eq!(
            clone_name("20261125-101010-ab12", "web"),
            "gd-20261125-101010-ab12-web"
        );
        assert_eq!(clone_name("r", &"x".repeat(300)).len(), MAX_GROUP_NAME);
    }
}
