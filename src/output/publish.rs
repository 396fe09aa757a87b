//! Publishing a run's outcome to CloudWatch (`gameday run --publish-metrics`),
//! so that dashboards and alarms can follow game days over time like any
//! other metric.
//!
//! One PutMetricData call after the run, from its journal: namespace
//! [`NAMESPACE`], dimensions `Experiment` and `Verdict`, metrics `RunPassed`
//! and `RunAborted` (1 or 0, Count), `TimeToRecover` and `AbortLatency`
//! (Milliseconds, when the run measured them).

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::summary::Summary;
use crate::aws::{Aws, AwsError, api};
use crate::journal::Verdict;

/// The CloudWatch namespace of run outcomes.
pub const NAMESPACE: &str = "GameDay";

/// The datapoints of one run: (metric name, value, unit).
pub fn datapoints(s: &Summary) -> Vec<(&'static str, f64, StandardUnit)> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut out = vec![
        (
            "RunPassed",
            flag(s.verdict == Some(Verdict::Passed)),
            StandardUnit::Count,
        ),
        (
            "RunAborted",
            flag(s.verdict == Some(Verdict::Aborted)),
            StandardUnit::Count,
        ),
    ];
    if let Some(ms) = s.time_to_recover_ms {
        out.push(("TimeToRecover", ms as f64, StandardUnit::Milliseconds));
    }
    if let Some(ms) = s.abort.as_ref().and_then(|a| a.latency_ms) {
        out.push(("AbortLatency", ms as f64, StandardUnit::Milliseconds));
    }
    out
}

/// Publishes the run's datapoints, timestamped with the run's end.
pub async fn publish(aws: &Aws, s: &Summary) -> Result<usize, AwsError> {
    let verdict = s.verdict.map(Verdict::as_str).unwrap_or("unfinished");
    let at = s.finished_at.unwrap_or(s.started_at);
    let when = aws_smithy_types::DateTime::from_millis(at.as_millisecond());
    let data: Vec<MetricDatum> = datapoints(s)
        .into_iter()
        .map(|(name, value, unit)| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("Experiment")
                        .value(&s.experiment)
                        .build(),
                )
                .dimensions(Dimension::builder().name("Verdict").value(verdict).build())
                .value(value)
                .unit(unit)
                .timestamp(when)
                .build()
        })
        .collect();
    let n = data.len();
    aws.cloudwatch
        .put_metric_data()
        .namespace(NAMESPACE)
        .set_metric_data(Some(data))
        .send()
        .await
        .map_err(api("cloudwatch", "PutMetricData"))?;
    Ok(n)
}
