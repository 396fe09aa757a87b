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

use super::{ActionDef, BoxFuture, Fault, Scope, Step, StepContext, Undo, UndoReport};
use crate::aws::{Aws, AwsError, api};
use crate::yaml::{self, Decoder, Loc, Spanned};

pub(super) const DEF: ActionDef = ActionDef {
    name: "cloudwatch:force-alarm",
    build,
};

/// The states SetAlarmState accepts.
const STATES: &[&str] = &["ALARM", "OK", "INSUFFICIENT_DATA"];

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, at: Loc) -> Option<Arc<dyn Fault>> {
    let Some(p) = params else {
        d.error_help(
            at,
            format!("{what}: `cloudwatch:force-alarm` needs `params: {{ alarm: NAME }}`"),
            "name the alarm whose alerting path the game day tests",
        );
        return None;
    };
    let m = d.map(p, what, &["alarm", "state"])?;
    let alarm = d
        .required(&m, "alarm", what)
        .and_then(|n| d.string(n, &format!("{what}.alarm")));
    if let Some(a) = &alarm {
        crate::experiment::check_variables(d, a);
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
    Some(Arc::new(ForceAlarm { alarm: alarm?, state }))
}

/// Forces an alarm's state.
#[derive(Debug)]
pub struct ForceAlarm {
    /// The alarm, as written (variables unexpanded), with its position.
    pub alarm: Spanned<String>,
    /// The state to force.
    pub state: String,
}

impl Fault for ForceAlarm {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn scope(&self) -> Scope {
        Scope::Alarm
    }

    fn alarm(&self) -> Option<&Spanned<String>> {
        Some(&self.alarm)
    }

    fn plan_resources(&self, alarms: &[String]) -> Vec<Step> {
        alarms
            .iter()
            .map(|a| Step {
                operation: "cloudwatch:SetAlarmState".into(),
                resources: vec![a.clone()],
                // Recorded by `prepare` just before the call.
                undo: Undo::SetAlarmState {
                    alarm: a.clone(),
                    state: String::new(),
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
            let Undo::SetAlarmState { alarm, .. } = &step.undo else {
                return Ok(step);
            };
            let found = crate::observe::describe_alarms(aws, std::slice::from_ref(alarm)).await?;
            let Some(info) = found.get(alarm) else {
                return Err(AwsError::not_found(
                    "cloudwatch",
                    "DescribeAlarms",
                    format!("alarm `{alarm}` not found"),
                ));
            };
            Ok(Step {
                undo: Undo::SetAlarmState {
                    alarm: alarm.clone(),
                    state: info.state.clone(),
                },
                ..step
            })
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let Undo::SetAlarmState { alarm, .. } = &step.undo else {
                return Ok(());
            };
            set_state(
                aws,
                alarm,
                &self.state,
                &format!("forced by gameday run {} (cloudwatch:force-alarm)", cx.run_id),
            )
            .await
        })
    }
}

async fn set_state(aws: &Aws, alarm: &str, state: &str, reason: &str) -> Result<(), AwsError> {
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

/// Sets the alarm back to its recorded state. An alarm deleted meanwhile has
/// nothing to restore; an unrecorded state means the call was never made.
pub(crate) async fn set_back(aws: &Aws, alarm: &str, state: &str) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    if state.is_empty() {
        return Ok(report);
    }
    if !crate::observe::describe_alarms(aws, &[alarm.to_string()])
        .await?
        .contains_key(alarm)
    {
        report.gone.push(alarm.to_string());
        return Ok(report);
    }
    set_state(
        aws,
        alarm,
        state,
        "restored by gameday after cloudwatch:force-alarm",
    )
    .await?;
    report.restored.push(alarm.to_string());
    Ok(report)
}
