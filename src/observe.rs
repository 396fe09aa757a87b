//! Observation: reading alarms (and, as the engine grows, metrics and healthy
//! capacity) to decide whether guardrails hold.
//!
//! One DescribeAlarms call per tick carries every alarm of every guardrail
//! (batched by the API's limit of 100 names), so checks cost the same however
//! many guardrails an experiment has, and no probe waits on another.

use std::collections::HashMap;

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};

use crate::aws::{api, Aws, AwsError};
use crate::experiment::{Probe, ProbeKind};
use crate::targets::Vars;

/// DescribeAlarms accepts at most this many names per call.
const ALARM_NAMES_PER_CALL: usize = 100;

/// One alarm's state as the API reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmState {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// The alarm's own explanation of its state.
    pub reason: String,
}

/// The states of `names` (metric and composite alarms); missing alarms are absent.
pub async fn alarm_states(aws: &Aws, names: &[String]) -> Result<HashMap<String, AlarmState>, AwsError> {
    let mut out = HashMap::new();
    for chunk in names.chunks(ALARM_NAMES_PER_CALL) {
        let mut pages = aws
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("cloudwatch", "DescribeAlarms"))?;
            for a in page.metric_alarms() {
                if let Some(name) = a.alarm_name() {
                    out.insert(name.to_string(), state_of(a.state_value(), a.state_reason()));
                }
            }
            for a in page.composite_alarms() {
                if let Some(name) = a.alarm_name() {
                    out.insert(name.to_string(), state_of(a.state_value(), a.state_reason()));
                }
            }
        }
    }
    Ok(out)
}

fn state_of(value: Option<&StateValue>, reason: Option<&str>) -> AlarmState {
    AlarmState { state: value.map(|v| v.as_str().to_string()).unwrap_or_default(), reason: reason.unwrap_or_default().to_string() }
}

/// The alarm guardrails of an experiment, with variables expanded.
#[derive(Debug, Clone)]
pub struct AlarmGuard {
    /// The guardrail's label.
    pub name: String,
    /// The alarm's name.
    pub alarm: String,
    /// Whether INSUFFICIENT_DATA is a breach.
    pub insufficient_data_breaches: bool,
}

/// A guardrail found breached.
#[derive(Debug, Clone)]
pub struct Breach {
    /// The guardrail's label.
    pub guardrail: String,
    /// What was seen.
    pub detail: String,
}

/// Expands the alarm guardrails of `probes`.
pub fn alarm_guards(probes: &[Probe], vars: &Vars) -> Vec<AlarmGuard> {
    probes
        .iter()
        .filter_map(|p| match &p.kind {
            ProbeKind::Alarm { alarm, insufficient_data_breaches } => Some(AlarmGuard {
                name: p.name.clone(),
                alarm: vars.expand(alarm),
                insufficient_data_breaches: *insufficient_data_breaches,
            }),
            _ => None,
        })
        .collect()
}

/// Checks every alarm guardrail in one batched call and returns the breaches.
/// An alarm that no longer exists is a breach: a guardrail that cannot fire
/// protects nothing.
pub async fn check_alarm_guards(aws: &Aws, guards: &[AlarmGuard]) -> Result<Vec<Breach>, AwsError> {
    if guards.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = guards.iter().map(|g| g.alarm.clone()).collect();
    let states = alarm_states(aws, &names).await?;
    Ok(guards
        .iter()
        .filter_map(|g| match states.get(&g.alarm) {
            None => Some(Breach { guardrail: g.name.clone(), detail: format!("alarm `{}` does not exist", g.alarm) }),
            Some(s) if s.state == "ALARM" => Some(Breach { guardrail: g.name.clone(), detail: format!("alarm `{}` is in ALARM: {}", g.alarm, s.reason) }),
            Some(s) if s.state == "INSUFFICIENT_DATA" && g.insufficient_data_breaches => {
                Some(Breach { guardrail: g.name.clone(), detail: format!("alarm `{}` has INSUFFICIENT_DATA", g.alarm) })
            }
            _ => None,
        })
        .collect())
}
