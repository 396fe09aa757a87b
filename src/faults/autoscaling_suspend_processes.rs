//! `autoscaling:suspend-processes`: suspend Auto Scaling processes of the
//! target group(s), as a broken control plane or a forgotten manual
//! suspension would. The processes already suspended before the run are
//! recorded just before the call and left out of it, so the rollback resumes
//! exactly what this run suspended and nothing an operator had suspended.

use std::sync::Arc;

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, BoxFuture, Forward, GroupFault, On, ReadFirst, Ready, ResourceFault, Revert, Step,
    StepContext, UndoReport,
};
use crate::aws::{Aws, AwsError, api};
use crate::schema;
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
    params,
};

/// The keys of `params`.
const PARAMS: &[&str] = &["processes"];

fn params() -> serde_json::Value {
    let process = schema::word(PROCESSES, "an Auto Scaling process");
    let mut processes = schema::list(process, "the processes to suspend; default: all of them");
    processes["minItems"] = 1.into();
    schema::object("autoscaling:suspend-processes params", PARAMS)
        .key("processes", processes)
        .build("optional: `processes`")
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    // Without `processes`, all of them: what SuspendProcesses itself does
    // without ScalingProcesses, and the plan lists them.
    let mut processes: Vec<String> = PROCESSES.iter().map(|p| p.to_string()).collect();
    if let Some(p) = params {
        let m = d.map(p, what, PARAMS)?;
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
    Some(On::Resources(ResourceFault::Groups(Arc::new(SuspendProcesses {
        processes,
    }))))
}

/// Suspends processes of a group.
#[derive(Debug)]
pub struct SuspendProcesses {
    /// The processes to suspend, in the file's order.
    pub processes: Vec<String>,
}

impl GroupFault for SuspendProcesses {
    fn instances_removed(&self, _desired: usize) -> usize {
        0
    }

    fn plan(&self, groups: &[String]) -> Vec<Step> {
        groups
            .iter()
            .map(|g| {
                Step::read_first(
                    "autoscaling:SuspendProcesses",
                    vec![g.clone()],
                    ReadSuspended {
                        group: g.clone(),
                        processes: self.processes.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Reads which processes the group has suspended already, just before the
/// call: the call and its undo take only the others.
#[derive(Debug)]
struct ReadSuspended {
    group: String,
    /// What the fault suspends.
    processes: Vec<String>,
}

impl ReadSuspended {
    /// The call and its undo when `already` are suspended.
    fn ready(&self, already: &[String]) -> Ready {
        let ours: Vec<String> = self
            .processes
            .iter()
            .filter(|p| !already.contains(p))
            .cloned()
            .collect();
        Ready::new(
            Suspend {
                group: self.group.clone(),
                processes: ours.clone(),
            },
            ResumeProcesses {
                group: self.group.clone(),
                processes: ours,
            },
        )
    }
}

impl ReadFirst for ReadSuspended {
    fn undo_operation(&self) -> &'static str {
        ResumeProcesses::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![("kind", "resume_processes".into()), ("group", self.group.clone())]
    }

    fn read<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        Box::pin(async move { Ok(self.ready(&suspended(aws, &self.group).await?)) })
    }
}

/// The forward call: SuspendProcesses of what is not suspended yet.
#[derive(Debug)]
struct Suspend {
    group: String,
    processes: Vec<String>,
}

impl Forward for Suspend {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            if self.processes.is_empty() {
                return Ok(()); // every one was suspended already: nothing of ours to do
            }
            aws.autoscaling
                .suspend_processes()
                .auto_scaling_group_name(&self.group)
                .set_scaling_processes(Some(self.processes.clone()))
                .send()
                .await
                .map_err(api("autoscaling", "SuspendProcesses"))?;
            Ok(())
        })
    }
}

/// The processes currently suspended in `group`.
async fn suspended(aws: &Aws, group: &str) -> Result<Vec<String>, AwsError> {
    let Some(g) = crate::aws::describe_group(aws, group).await? else {
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

/// The undo: resume the processes this run suspended (and only those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeProcesses {
    /// The group.
    pub group: String,
    /// What this run suspended; processes suspended before it stay so.
    pub processes: Vec<String>,
}

impl Revert for ResumeProcesses {
    const OPERATION: &'static str = "autoscaling:ResumeProcesses";

    fn resources(&self) -> Vec<String> {
        vec![self.group.clone()]
    }

    /// Resumes what the run suspended (none: every one was suspended before
    /// it). A group that is gone has nothing to resume. Idempotent.
    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        let mut report = UndoReport::default();
        if self.processes.is_empty() {
            return Ok(report);
        }
        if crate::aws::describe_group(aws, &self.group).await?.is_none() {
            report.gone.push(self.group.clone());
            return Ok(report);
        }
        aws.autoscaling
            .resume_processes()
            .auto_scaling_group_name(&self.group)
            .set_scaling_processes(Some(self.processes.clone()))
            .send()
            .await
            .map_err(api("autoscaling", "ResumeProcesses"))?;
        report.restored.push(self.group.clone());
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_and_its_undo_leave_out_what_was_suspended_before() {
        let read = ReadSuspended {
            group: "web".into(),
            processes: vec!["Launch".into(), "AZRebalance".into()],
        };
        let ready = read.ready(&["AZRebalance".into(), "HealthCheck".into()]);
        assert_eq!(
            ready.undo,
            ResumeProcesses {
                group: "web".into(),
                processes: vec!["Launch".into()]
            }
            .into()
        );
        assert!(format!("{:?}", ready.forward).contains(r#"processes: ["Launch"]"#));
    }
}
