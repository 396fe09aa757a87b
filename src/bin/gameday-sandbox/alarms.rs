//! Alarm evaluation against the API: finds the metric alarms to evaluate,
//! reads their datapoints with GetMetricData, applies [`crate::evaluate`],
//! and moves an alarm with SetAlarmState when its state changes.
//!
//! Periods are aligned to multiples of the alarm's period since the Unix
//! epoch (a 10 s alarm's periods end at :00, :10, ...), and only complete
//! periods count, so an alarm never judges a period that is still filling.
//! The evaluation runs on every tick of `serve`, where CloudWatch evaluates
//! about once a period and sees late datapoints later.

use std::collections::HashSet;

use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, ScanBy,
};
use aws_smithy_types::DateTime;
use gameday::aws::{Aws, AwsError, api};

use crate::evaluate::{self, Comparison, Datapoint, MissingData, Rule, State};

/// The namespace of the metrics `serve` publishes.
pub const NAMESPACE: &str = "App";
/// The dimension that names the group.
pub const GROUP_DIMENSION: &str = "AutoScalingGroupName";
/// The metrics `serve` publishes for each group.
pub const METRICS: [&str; 4] = ["RequestCount", "Errors", "Latency", "ServingInstances"];
/// Marks SetAlarmState calls made by the sandbox (in StateReasonData), so a
/// reader (and `wait-alarm`) can tell them from the alarm's initial state.
pub const EVALUATOR: &str = "gameday-sandbox";

/// An alarm the sandbox can evaluate.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The alarm's name.
    pub name: String,
    /// Its state in the API now.
    pub state: State,
    /// Its rule.
    pub rule: Rule,
    /// Period in seconds.
    pub period: i64,
    /// The statistic (`Sum`, `Average`, ...).
    pub statistic: String,
    namespace: String,
    metric: String,
    dimensions: Vec<Dimension>,
}

/// An alarm that was asked for but cannot be evaluated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The alarm's name.
    pub name: String,
    /// Why it is left alone.
    pub why: String,
}

/// The metric alarms on the metrics published for `groups`, plus the alarms named in `extra`.
pub async fn watched(
    aws: &Aws,
    groups: &[String],
    extra: &[String],
) -> Result<(Vec<Watched>, Vec<Skipped>), AwsError> {
    let groups: HashSet<&str> = groups.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut seen_extra = HashSet::new();
    let mut pages = aws
        .cloudwatch
        .describe_alarms()
        .alarm_types(AlarmType::MetricAlarm)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("cloudwatch", "DescribeAlarms"))?;
        for a in page.metric_alarms() {
            let Some(name) = a.alarm_name() else { continue };
            let named = extra.iter().any(|e| e == name);
            if named {
                seen_extra.insert(name.to_string());
            }
            if !named && !on_published_metric(a, &groups) {
                continue;
            }
            match from_api(a) {
                Ok(w) => found.push(w),
                Err(why) => skipped.push(Skipped {
                    name: name.to_string(),
                    why,
                }),
            }
        }
    }
    for e in extra.iter().filter(|e| !seen_extra.contains(*e)) {
        skipped.push(Skipped {
            name: e.clone(),
            why: "no metric alarm with this name exists".into(),
        });
    }
    Ok((found, skipped))
}

/// Whether the alarm watches one of the metrics published for a served group.
fn on_published_metric(a: &MetricAlarm, groups: &HashSet<&str>) -> bool {
    let dims = a.dimensions();
    a.namespace() == Some(NAMESPACE)
        && a.metric_name().is_some_and(|m| METRICS.contains(&m))
        && dims.len() == 1
        && dims[0].name() == Some(GROUP_DIMENSION)
        && dims[0].value().is_some_and(|v| groups.contains(v))
}

fn from_api(a: &MetricAlarm) -> Result<Watched, String> {
    if !a.metrics().is_empty() {
        return Err("it uses metric math, which the sandbox does not evaluate".into());
    }
    if a.extended_statistic().is_some() {
        return Err("it uses a percentile statistic, which neither moto nor the sandbox computes".into());
    }
    let statistic = a
        .statistic()
        .map(|s| s.as_str().to_string())
        .ok_or("it has no statistic")?;
    let op = a.comparison_operator().map(|o| o.as_str()).unwrap_or_default();
    let comparison = Comparison::from_api(op)
        .ok_or_else(|| format!("its operator {op} needs an anomaly-detection model"))?;
    let threshold = a.threshold().ok_or("it has no threshold")?;
    let period = a.period().filter(|p| *p > 0).ok_or("it has no period")?;
    let n = a
        .evaluation_periods()
        .filter(|n| *n > 0)
        .ok_or("it has no evaluation periods")?;
    let m = a.datapoints_to_alarm().filter(|m| *m > 0).unwrap_or(n);
    Ok(Watched {
        name: a.alarm_name().unwrap_or_default().to_string(),
        // moto creates alarms in OK; an unknown state is treated as never evaluated.
        state: a
            .state_value()
            .and_then(|s| State::from_api(s.as_str()))
            .unwrap_or(State::InsufficientData),
        rule: Rule {
            threshold,
            comparison,
            evaluation_periods: n as usize,
            datapoints_to_alarm: m as usize,
            missing: MissingData::from_api(a.treat_missing_data()),
        },
        period: i64::from(period),
        statistic,
        namespace: a.namespace().unwrap_or_default().to_string(),
        metric: a.metric_name().unwrap_or_default().to_string(),
        dimensions: a.dimensions().to_vec(),
    })
}

/// A state change made by [`evaluate_one`].
#[derive(Debug, Clone)]
pub struct Transition {
    /// The alarm.
    pub alarm: String,
    /// Its state before.
    pub from: State,
    /// Its state now.
    pub to: State,
    /// Why.
    pub reason: String,
}

/// Evaluates one alarm at `now` (seconds since the epoch) and sets its state if it changed.
pub async fn evaluate_one(aws: &Aws, w: &Watched, now: i64) -> Result<Option<Transition>, AwsError> {
    let periods = datapoints(aws, w, now).await?;
    let e = evaluate::evaluate(&w.rule, &periods, w.state);
    if e.state == w.state {
        return Ok(None);
    }
    let reason = format!("{} {}: {}", w.metric, w.statistic, e.reason);
    let data = serde_json::json!({
        "version": "1.0",
        "evaluator": EVALUATOR,
        "period": w.period,
        "statistic": w.statistic,
        "threshold": w.rule.threshold,
        "evaluatedDatapoints": periods.iter().map(|p| serde_json::json!({ "start": p.start, "value": p.value })).collect::<Vec<_>>(),
        "breachingPeriodStarts": e.breaching,
    });
    aws.cloudwatch
        .set_alarm_state()
        .alarm_name(&w.name)
        .state_value(e.state.as_str().into())
        // StateReason is limited to 1023 characters.
        .state_reason(reason.chars().take(1023).collect::<String>())
        .state_reason_data(data.to_string())
        .send()
        .await
        .map_err(api("cloudwatch", "SetAlarmState"))?;
    Ok(Some(Transition {
        alarm: w.name.clone(),
        from: w.state,
        to: e.state,
        reason,
    }))
}

/// The alarm's last N complete periods before `now`, oldest first.
async fn datapoints(aws: &Aws, w: &Watched, now: i64) -> Result<Vec<Datapoint>, AwsError> {
    let n = w.rule.evaluation_periods as i64;
    let (start, end) = window(now, w.period, n);
    let query = MetricDataQuery::builder()
        .id("m")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(&w.namespace)
                        .metric_name(&w.metric)
                        .set_dimensions(Some(w.dimensions.clone()))
                        .build(),
                )
                .period(w.period as i32)
                .stat(&w.statistic)
                .build(),
        )
        .build();
    let out = aws
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .scan_by(ScanBy::TimestampAscending)
        .send()
        .await
        .map_err(api("cloudwatch", "GetMetricData"))?;
    let mut periods: Vec<Datapoint> = (0..n)
        .map(|i| Datapoint {
            start: start + i * w.period,
            value: None,
        })
        .collect();
    for r in out.metric_data_results() {
        for (t, v) in r.timestamps().iter().zip(r.values()) {
            if let Some(p) = periods.iter_mut().find(|p| p.start == t.secs()) {
                p.value = Some(*v);
            }
        }
    }
    Ok(periods)
}

/// Start and end (seconds) of the last `n` complete periods of `period` seconds before `now`.
fn window(now: i64, period: i64, n: i64) -> (i64, i64) {
    let end = now.div_euclid(period) * period;
    (end - n * period, end)
}

/// The alarm's state and whether the sandbox set it.
pub async fn state_of(aws: &Aws, alarm: &str) -> Result<Option<(State, bool)>, AwsError> {
    let out = aws
        .cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        .alarm_types(AlarmType::MetricAlarm)
        .send()
        .await
        .map_err(api("cloudwatch", "DescribeAlarms"))?;
    Ok(out.metric_alarms().first().map(|a| {
        let state = a
            .state_value()
            .and_then(|s| State::from_api(s.as_str()))
            .unwrap_or(State::InsufficientData);
        let by_sandbox = a
            .state_reason_data()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .is_some_and(|d| d["evaluator"] == EVALUATOR);
        (state, by_sandbox)
    }))
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn only_complete_periods_aligned_to_the_epoch_are_evaluated() {
        assert_eq!(window(1_700_000_007, 10, 3), (1_699_999_970, 1_700_000_000));
        assert_eq!(
            window(1_700_000_010, 10, 1),
            (1_700_000_000, 1_700_000_010),
            "a period that just ended counts"
        );
        assert_eq!(window(1_700_000_001, 2, 2), (1_699_999_996, 1_700_000_000));
    }
}
