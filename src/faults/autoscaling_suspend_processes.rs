//! `autoscaling:suspend-processes`: suspend Auto Scaling processes of the
//! target group(s), as a broken control plane or a forgotten manual
//! suspension would. The processes already suspended before the run are
//! recorded just before the call and left out of it, so the rollback resumes
//! exactly what this run suspended and nothing an operator had suspended.

use std::sync::Arc;

use marked_yaml::Node;

use super::{ActionDef, BoxFuture, Fault, Scope, Step, StepContext, Undo, UndoReport};
use crate::aws::{Aws, AwsError, api};
use crate::yaml::{self, Decoder};

/// Every process EC2 Auto Scaling can suspend.
pub const PROCESSES: &[&str] = &[
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
];

pub(super) const DEF: ActionDef = ActionDef {
    name: "autoscaling:suspend-processes",
    build,
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    // Without `processes`, all of them: what SuspendProcesses itself does
    // without ScalingProcesses, and the plan lists them.
    let mut processes: Vec<String> = PROCESSES.iter().map(|p| p.to_string()).collect();
    if let Some(p) = params {
        let m = d.map(p, what, &["processes"])?;
        if let Some(n) = m.get("processes") {
            let list = d.string_list(n, &format!("{what}.processes"))?;
            if list.is_empty() {
                d.error_help(
                    yaml::loc(n),
                    format!("{what}.processes: the list is empty"),
                    "name at least one process, or leave `processes` out to suspend them all",
                );
                return None;
            }
            let mut ok = true;
            processes.clear();
            for s in list {
                if !PROCESSES.contains(&s.value.as_str()) {
                    let help = match yaml::did_you_mean(&s.value, PROCESSES.iter().copied()) {
                        Some(m) => format!("did you mean `{m}`? processes: {}", PROCESSES.join(", ")),
                        None => format!("expected one of: {}", PROCESSES.join(", ")),
                    };
                    d.error_help(
                        s.loc,
                        format!("{what}.processes: unknown Auto Scaling process `{}`", s.value),
                        help,
                    );
                    ok = false;
                } else if !processes.contains(&s.value) {
                    processes.push(s.value);
                }
            }
            if !ok {
                return None;
            }
        }
    }
    Some(Arc::new(SuspendProcesses { processes }))
}

/// Suspends processes of a group.
#[derive(Debug)]
pub struct SuspendProcesses {
    /// The processes to suspend, in the file's order.
    pub processes: Vec<String>,
}

impl Fault for SuspendProcesses {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn scope(&self) -> Scope {
        Scope::Groups
    }

    fn plan_resources(&self, groups: &[String]) -> Vec<Step> {
        groups
            .iter()
            .map(|g| Step {
                operation: "autoscaling:SuspendProcesses".into(),
                resources: vec![g.clone()],
                // Narrowed by `prepare` to what is not suspended yet.
                undo: Undo::ResumeProcesses {
                    group: g.clone(),
                    processes: self.processes.clone(),
                },
            })
            .collect()
    }

    fn prepare<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: Step,
    ) -> BoxFuture<'a, Result<Step, AwsError>> {
        Box::pin(async move {
            let Undo::ResumeProcesses { group, .. } = &step.undo else {
                return Ok(step);
            };
            let already = suspended(aws, group).await?;
            let processes = self
                .processes
                .iter()
                .filter(|p| !already.contains(p))
                .cloned()
                .collect();
            Ok(Step {
                undo: Undo::ResumeProcesses {
                    group: group.clone(),
                    processes,
                },
                ..step
            })
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        _cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let Undo::ResumeProcesses { group, processes } = &step.undo else {
                return Ok(());
            };
            if processes.is_empty() {
                return Ok(()); // every one was suspended already: nothing of ours to do
            }
            aws.autoscaling
                .suspend_processes()
                .auto_scaling_group_name(group)
                .set_scaling_processes(Some(processes.clone()))
                .send()
                .await
                .map_err(api("autoscaling", "SuspendProcesses"))?;
            Ok(())
        })
    }
}

/// The processes currently suspended in `group`.
async fn suspended(aws: &Aws, group: &str) -> Result<Vec<String>, AwsError> {
    let Some(g) = crate::environment::describe_group(aws, group).await? else {
        return Err(AwsError::not_found(
            "autoscaling",
            "DescribeAutoScalingGroups",
            format!("Auto Scaling group `{group}` not found"),
        ));
    };
    Ok(g.suspended_processes()
        .iter()
        .filter_map(|p| p.process_name().map(str::to_string))
        .collect())
}

/// Resumes `processes` in `group` (what the run suspended). A group that is
/// gone has nothing to resume. Idempotent.
pub(crate) async fn resume(aws: &Aws, group: &str, processes: &[String]) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    if processes.is_empty() {
        return Ok(report);
    }
    if crate::environment::describe_group(aws, group).await?.is_none() {
        report.gone.push(group.to_string());
        return Ok(report);
    }
    aws.autoscaling
        .resume_processes()
        .auto_scaling_group_name(group)
        .set_scaling_processes(Some(processes.to_vec()))
        .send()
        .await
        .map_err(api("autoscaling", "ResumeProcesses"))?;
    report.restored.push(group.to_string());
    Ok(report)
}
