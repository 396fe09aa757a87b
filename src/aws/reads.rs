//! The reads several layers share: an Auto Scaling group, alarms, instance
//! states. Each is one paginated call (or a few), with no judgement: the
//! faults, the environment, the plan and the observer decide what the
//! answers mean.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, StateValue};

use super::{Aws, AwsError, api};

/// DescribeAlarms accepts at most this many names per call.
const ALARM_NAMES_PER_CALL: usize = 100;
/// Instance ids per DescribeInstances filter.
const INSTANCE_IDS_PER_CALL: usize = 200;

/// Describes one Auto Scaling group, or `None` if it does not exist.
pub async fn describe_group(aws: &Aws, name: &str) -> Result<Option<AutoScalingGroup>, AwsError> {
    let out = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
    Ok(out.auto_scaling_groups().first().cloned())
}

/// Current EC2 state of each instance; ids EC2 no longer knows are absent.
pub async fn instance_states(aws: &Aws, ids: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(INSTANCE_IDS_PER_CALL) {
        // A filter (not InstanceIds) so that ids that vanished are simply absent
        // instead of failing the whole call with InvalidInstanceID.NotFound.
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("instance-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut pages = aws
            .ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("ec2", "DescribeInstances"))?;
            for r in page.reservations() {
                for i in r.instances() {
                    if let (Some(id), Some(state)) = (i.instance_id(), i.state().and_then(|s| s.name())) {
                        out.insert(id.to_string(), state.as_str().to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One alarm as DescribeAlarms reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmInfo {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// The alarm's own explanation of its state.
    pub reason: String,
    /// Metric or composite, with what decides how fast it can fire.
    pub kind: AlarmKind,
}

/// What an alarm watches.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmKind {
    /// A metric alarm (one metric, or metric math).
    Metric {
        /// The longest period among its metrics, in seconds.
        period: Option<u32>,
        /// How many periods it evaluates.
        evaluation_periods: Option<u32>,
        /// Every dimension of every metric it watches.
        dimensions: Vec<(String, String)>,
    },
    /// A composite alarm over other alarms.
    Composite {
        /// Its rule, e.g. `ALARM("a") OR ALARM("b")`.
        rule: String,
    },
}

/// Describes `names` (metric and composite alarms); missing alarms are absent.
pub async fn describe_alarms(aws: &Aws, names: &[String]) -> Result<HashMap<String, AlarmInfo>, AwsError> {
    let mut out = HashMap::new();
    let mut unique: Vec<String> = names.to_vec();
    unique.sort();
    unique.dedup();
    for chunk in unique.chunks(ALARM_NAMES_PER_CALL) {
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
                let Some(name) = a.alarm_name() else { continue };
                let mut dimensions: Vec<(String, String)> = a.dimensions().iter().map(dim_pair).collect();
                let mut period = a.period().and_then(|p| u32::try_from(p).ok());
                for q in a.metrics() {
                    if let Some(ms) = q.metric_stat() {
                        period = period.max(ms.period().and_then(|p| u32::try_from(p).ok()));
                        dimensions.extend(
                            ms.metric()
                                .map(|m| m.dimensions())
                                .unwrap_or_default()
                                .iter()
                                .map(dim_pair),
                        );
                    }
                }
                let kind = AlarmKind::Metric {
                    period,
                    evaluation_periods: a.evaluation_periods().and_then(|e| u32::try_from(e).ok()),
                    dimensions,
                };
                out.insert(
                    name.to_string(),
                    AlarmInfo {
                        state: state_text(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                        kind,
                    },
                );
            }
            for a in page.composite_alarms() {
                let Some(name) = a.alarm_name() else { continue };
                let kind = AlarmKind::Composite {
                    rule: a.alarm_rule().unwrap_or_default().to_string(),
                };
                out.insert(
                    name.to_string(),
                    AlarmInfo {
                        state: state_text(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                        kind,
                    },
                );
            }
        }
    }
    Ok(out)
}

fn dim_pair(d: &Dimension) -> (String, String) {
    (
        d.name().unwrap_or_default().to_string(),
        d.value().unwrap_or_default().to_string(),
    )
}

fn state_text(v: Option<&StateValue>) -> String {
    v.map(|v| v.as_str().to_string()).unwrap_or_default()
}
