//! `serve`: the workload loop. Every tick it reads each served group's real
//! state, turns it into request metrics with the [`crate::workload`] model,
//! publishes them with PutMetricData, and evaluates the alarms on them.
//!
//! A failed AWS call in a tick is reported and the next tick tries again: a
//! demo aid that dies on one hiccup would leave the alarms frozen mid-run.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;
use gameday::aws::{Aws, AwsError, api};
use rand::rngs::StdRng;
use tokio::signal::unix::{SignalKind, signal};

use crate::alarms::{self, GROUP_DIMENSION, NAMESPACE};
use crate::evaluate::number;
use crate::fleet::{self, GroupView};
use crate::workload::{Model, Sample, Service};

/// PutMetricData takes at most this many datums per call (the older limit, which moto also accepts).
const DATUMS_PER_CALL: usize = 20;

/// What `serve` was asked to do.
pub struct Options {
    /// Serve only these groups (all sandbox groups and run copies when empty).
    pub groups: Vec<String>,
    /// Alarms to evaluate besides those on the published metrics.
    pub evaluate: Vec<String>,
    /// Time between ticks.
    pub interval: Duration,
    /// Time between per-group lines (changes are printed at once).
    pub report_every: Duration,
    /// The service model.
    pub model: Model,
}

/// Runs until SIGTERM (or SIGINT, which keeps its default action).
///
/// SIGINT is deliberately not caught: started in the background by a script
/// (scripts/demo), the sandbox inherits an ignored SIGINT, so a Ctrl-C meant
/// for the game day in the foreground does not kill the workload mid-run; the
/// script stops it with SIGTERM. In a terminal, Ctrl-C still ends it.
pub async fn serve(aws: &Aws, opts: Options, mut rng: StdRng) -> Result<(), std::io::Error> {
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut services: HashMap<String, Service> = HashMap::new();
    let mut last_tick: Option<Instant> = None;
    let mut shown: HashMap<String, (Instant, usize)> = HashMap::new();
    let mut skipped_shown: Vec<String> = Vec::new();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
        }
        let now = Instant::now();
        let elapsed = last_tick.map_or(opts.interval, |t| now - t);
        last_tick = Some(now);
        match one_tick(aws, &opts, elapsed, &mut services, &mut rng).await {
            Ok((views, samples, skipped)) => {
                if failing {
                    line("API reachable again");
                    failing = false;
                }
                for (v, s) in views.iter().zip(&samples) {
                    let due = shown
                        .get(&v.name)
                        .is_none_or(|(at, serving)| *serving != v.serving || now - *at >= opts.report_every);
                    if due {
                        line(&group_line(v, s));
                        shown.insert(v.name.clone(), (now, v.serving));
                    }
                }
                for t in skipped {
                    if !skipped_shown.contains(&t.name) {
                        line(&format!("alarm {} is not evaluated: {}", t.name, t.why));
                        skipped_shown.push(t.name);
                    }
                }
            }
            Err(e) => {
                if !failing {
                    line(&format!("warning: {e}; retrying every tick"));
                }
                failing = true;
            }
        }
    }
    line("stopped");
    Ok(())
}

type Tick = (Vec<GroupView>, Vec<Sample>, Vec<alarms::Skipped>);

async fn one_tick(
    aws: &Aws,
    opts: &Options,
    elapsed: Duration,
    services: &mut HashMap<String, Service>,
    rng: &mut StdRng,
) -> Result<Tick, AwsError> {
    let views = fleet::view(aws, &opts.groups).await?;
    let at = DateTime::from(std::time::SystemTime::now());
    let mut samples = Vec::new();
    let mut datums = Vec::new();
    for v in &views {
        let s = services
            .entry(v.name.clone())
            .or_default()
            .tick(&opts.model, v.serving, elapsed, rng);
        let dim = Dimension::builder().name(GROUP_DIMENSION).value(&v.name).build();
        for (name, value, unit) in [
            ("RequestCount", s.requests, StandardUnit::Count),
            ("Errors", s.errors, StandardUnit::Count),
            ("Latency", s.latency_ms, StandardUnit::Milliseconds),
            ("ServingInstances", v.serving as f64, StandardUnit::Count),
        ] {
            // Storage resolution 1: high-resolution metrics, so alarms with 10 s periods are valid on real CloudWatch too.
            datums.push(
                MetricDatum::builder()
                    .metric_name(name)
                    .dimensions(dim.clone())
                    .value(value)
                    .unit(unit)
                    .timestamp(at)
                    .storage_resolution(1)
                    .build(),
            );
        }
        samples.push(s);
    }
    for chunk in datums.chunks(DATUMS_PER_CALL) {
        aws.cloudwatch
            .put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(api("cloudwatch", "PutMetricData"))?;
    }
    let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
    let (watched, skipped) = alarms::watched(aws, &names, &opts.evaluate).await?;
    let now = at.secs();
    for w in &watched {
        if let Some(t) = alarms::evaluate_one(aws, w, now).await? {
            line(&format!(
                "alarm {}: {} -> {} ({})",
                t.alarm, t.from, t.to, t.reason
            ));
        }
    }
    Ok((views, samples, skipped))
}

fn group_line(v: &GroupView, s: &Sample) -> String {
    let mut why = Vec::new();
    if v.out_of_service > 0 {
        why.push(format!("{} out of service", v.out_of_service));
    }
    if v.not_running > 0 {
        why.push(format!("{} not running", v.not_running));
    }
    if v.unreachable > 0 {
        why.push(format!("{} unreachable", v.unreachable));
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join(", "))
    };
    format!(
        "{}: {}/{} instances serving{why} | {} req/s, {:.1} errors/s, latency {} ms",
        v.name,
        v.serving,
        v.instances,
        number(s.rates.requests.round()),
        s.rates.errors,
        number(s.latency_ms.round())
    )
}

/// Prints one timestamped line to stderr. On a terminal it first clears the
/// current line: `gameday run` may be drawing its status line there, and a
/// line written over it would be garbled (the status redraws itself below).
pub fn line(text: &str) {
    let clear = if std::io::stderr().is_terminal() {
        "\r\x1b[2K"
    } else {
        ""
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{clear}{} sandbox {text}",
        jiff::Timestamp::now().strftime("%H:%M:%SZ")
    );
}
