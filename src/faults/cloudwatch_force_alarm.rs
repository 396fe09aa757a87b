//! `cloudwatch:force-alarm`: set a CloudWatch alarm's state (ALARM by
//! default) with SetAlarmState, to test the alerting and response path
//! without breaking anything. The alarm's state is recorded just before the
//! call; the rollback sets it back.
//!
//! CloudWatch re-evaluates a metric alarm at its next period and may move it
//! by itself, before or after the rollback: the forced state lasts until then.
//! An alarm is not copied in parallel mode, so this fault always acts on the
//! real alarm; the default policy does not allow it (see safety/README.md).

use std::sync::Arc;

use marked_yaml::Node;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    ActionDef, AlarmFault, BoxFuture, Forward, On, PlanAlarm, ReadFirst, Ready, ResourceFault, Revert, Step,
    StepContext, UndoReport,
};
use crate::aws::{Aws, AwsError, api};
use crate::schema;
use crate::yaml::{self, Decoder, Loc};

pub(super) const DEF: ActionDef = ActionDef {
    name: "cloudwatch:force-alarm",
    build,
    params,
};

/// The states SetAlarmState accepts.
const STATES: &[&str] = &["ALARM", "OK", "INSUFFICIENT_DATA"];

/// The keys of `params`.
const PARAMS: &[&str] = &["alarm", "state"];

fn params() -> serde_json::Value {
    schema::object("cloudwatch:force-alarm params", PARAMS)
        .key(
            "alarm",
            schema::text("the alarm whose alerting path the game day tests"),
        )
        .key("state", schema::word(STATES, "the state to set; default ALARM"))
        .required(&["alarm"])
        .build("`alarm: NAME`, optionally `state`")
}

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, at: Loc) -> Option<On> {
    let Some(p) = params else {
        d.error_help(
            at,
            format!("{what}: `cloudwatch:force-alarm` needs `params: {{ alarm: NAME }}`"),
            "name the alarm whose alerting path the game day tests",
        );
        return None;
    };
    let m = d.map(p, what, PARAMS)?;
    let alarm = d
        .required(&m, "alarm", what)
        .and_then(|n| d.string(n, &format!("{what}.alarm")));
    if let Some(a) = &alarm {
        crate::model::check_variables(d, a);
    }
    let state = match m.get("state") {
        Some(n) => {
            let s = d.string(n, &format!("{what}.state"))?;
            if !STATES.contains(&s.value.as_str()) {
                let help = match yaml::did_you_mean(&s.value, STATES.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => format!("expected one of: {}", STATES.join(", ")),
                };
                d.error_help(
                    s.loc,
                    format!("{what}.state: `{}` is not an alarm state", s.value),
                    help,
                );
                return None;
            }
            s.value
        }
        None => "ALARM".to_string(),
    };
    Some(On::Resources(ResourceFault::Alarm(AlarmFault {
        alarm: alarm?,
        planner: Arc::new(ForceAlarm { state }),
    })))
}

/// Forces an alarm's state.
#[derive(Debug)]
pub struct ForceAlarm {
    /// The state to force.
    pub state: String,
}

impl PlanAlarm for ForceAlarm {
    fn plan(&self, alarm: &str) -> Vec<Step> {
        vec![Step::read_first(
            "cloudwatch:SetAlarmState",
            vec![alarm.to_string()],
            ReadAlarmState {
                alarm: alarm.to_string(),
                state: self.state.clone(),
            },
        )]
    }
}

/// Reads the alarm's state just before the call, for the undo.
#[derive(Debug)]
struct ReadAlarmState {
    alarm: String,
    /// The state to force.
    state: String,
}

impl ReadFirst for ReadAlarmState {
    fn undo_operation(&self) -> &'static str {
        SetAlarmState::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![("kind", "set_alarm_state".into()), ("alarm", self.alarm.clone())]
    }

    fn read<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        Box::pin(async move {
            let found = crate::aws::describe_alarms(aws, std::slice::from_ref(&self.alarm)).await?;
            let Some(info) = found.get(&self.alarm) else {
                return Err(AwsError::not_found(
                    "cloudwatch",
                    "DescribeAlarms",
                    format!("alarm `{}` not found", self.alarm),
                ));
            };
            Ok(Ready::new(
                Force {
                    alarm: self.alarm.clone(),
                    state: self.state.clone(),
                },
                SetAlarmState {
                    alarm: self.alarm.clone(),
                    state: info.state.clone(),
                },
            ))
        })
    }
}

/// The forward call: SetAlarmState to the forced state.
#[derive(Debug)]
struct Force {
    alarm: String,
    state: String,
}

impl Forward for Force {
    fn apply<'a>(&'a self, aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(set_state(
            aws,
            &self.alarm,
            &self.state,
            format!("forced by gameday run {} (cloudwatch:force-alarm)", cx.run_id),
        ))
    }
}

async fn set_state(aws: &Aws, alarm: &str, state: &str, reason: String) -> Result<(), AwsError> {
    aws.cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(state.into())
        .state_reason(reason)
        .send()
        .await
        .map_err(api("cloudwatch", "SetAlarmState"))?;
    Ok(())
}

/// The undo: set an alarm back to its recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAlarmState {
    /// The alarm.
    pub alarm: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
}

impl Revert for SetAlarmState {
    const OPERATION: &'static str = "cloudwatch:SetAlarmState";

    fn resources(&self) -> Vec<String> {
        vec![self.alarm.clone()]
    }

    /// Sets the alarm back to its recorded state. An alarm deleted meanwhile
    /// has nothing to restore.
    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        let mut report = UndoReport::default();
        if !crate::aws::describe_alarms(aws, std::slice::from_ref(&self.alarm))
            .await?
            .contains_key(&self.alarm)
        {
            report.gone.push(self.alarm.clone());
            return Ok(report);
        }
        set_state(
            aws,
            &self.alarm,
            &self.state,
            "restored by gameday after cloudwatch:force-alarm".to_string(),
        )
        .await?;
        report.restored.push(self.alarm.clone());
        Ok(report)
    }
}
