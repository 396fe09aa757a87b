//! `serve`: the workload loop. Every tick it reads each served group's real
//! state and the load balancers in front of them, routes each balancer's
//! users through its listener rules ([`crate::routing`]), turns what each
//! target group and each group behind no balancer gets into request metrics
//! with the [`crate::workload`] model, publishes them with PutMetricData
//! (namespace `App` per group, `AWS/ApplicationELB` per target group and per
//! balancer), and evaluates the alarms on them.
//!
//! A failed AWS call in a tick is reported and the next tick tries again: a
//! demo aid that dies on one hiccup would leave the alarms frozen mid-run.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_smithy_types::DateTime;
use gameday::aws::{Aws, AwsError, api};
use rand::rngs::StdRng;
use tokio::signal::unix::{SignalKind, signal};

use crate::alarms::{self, GROUP_DIMENSION, NAMESPACE};
use crate::balancer::{self, Topology};
use crate::evaluate::number;
use crate::fleet::{self, GroupView};
use crate::routing::Split;
use crate::workload::{Model, Rates, Sample, Service, noise};

/// PutMetricData takes at most this many datums per call (the older limit, which moto also accepts).
const DATUMS_PER_CALL: usize = 20;
/// The namespace of the load balancer metrics, as CloudWatch publishes them.
const ELB_NAMESPACE: &str = "AWS/ApplicationELB";

/// What `serve` was asked to do.
pub struct Options {
    /// Serve only these groups (all sandbox groups and run copies when empty).
    pub groups: Vec<String>,
    /// Route through only these load balancers (every one when empty and no
    /// group is named; none when groups are named and no balancer is).
    pub load_balancers: Vec<String>,
    /// Alarms to evaluate besides those on the published metrics.
    pub evaluate: Vec<String>,
    /// Time between ticks.
    pub interval: Duration,
    /// Time between per-group lines (changes are printed at once).
    pub report_every: Duration,
    /// The service model (its load is each balancer's).
    pub model: Model,
    /// The load of a group behind no balancer, requests/s.
    pub group_load: f64,
}

impl Options {
    /// Whether load balancers are modelled at all.
    fn balancers(&self) -> bool {
        !self.load_balancers.is_empty() || self.groups.is_empty()
    }
}

/// What one line is about: a group or a target group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Shown {
    Group(String),
    TargetGroup(String),
}

/// Runs until SIGTERM (or SIGINT, which keeps its default action).
///
/// SIGINT is deliberately not caught: started in the background by a script
/// (scripts/demo), the sandbox inherits an ignored SIGINT, so a Ctrl-C meant
/// for the game day in the foreground does not kill the workload mid-run; the
/// script stops it with SIGTERM. In a terminal, Ctrl-C still ends it.
pub async fn serve(aws: &Aws, elb: &ElbClient, opts: Options, mut rng: StdRng) -> Result<(), std::io::Error> {
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut services = Services::default();
    let mut last_tick: Option<Instant> = None;
    // What each line last said that matters (serving count, share in permille), and when.
    let mut shown: HashMap<Shown, (Instant, (usize, u64))> = HashMap::new();
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
        match one_tick(aws, elb, &opts, elapsed, &mut services, &mut rng).await {
            Ok(t) => {
                if failing {
                    line("API reachable again");
                    failing = false;
                }
                let mut due = |key: Shown, state: (usize, u64)| {
                    let due = shown
                        .get(&key)
                        .is_none_or(|(at, last)| *last != state || now - *at >= opts.report_every);
                    if due {
                        shown.insert(key, (now, state));
                    }
                    due
                };
                for (v, s) in t.groups.iter().zip(&t.samples) {
                    if due(Shown::Group(v.name.clone()), (v.serving, 0)) {
                        line(&group_line(v, s));
                    }
                }
                for tg in &t.target_groups {
                    let permille = (tg.share * 1000.0).round() as u64;
                    if due(Shown::TargetGroup(tg.name.clone()), (tg.serving, permille)) {
                        line(&target_group_line(tg));
                    }
                }
                for t in t.skipped {
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

/// The simulated services: one per group behind no load balancer, one per target group.
#[derive(Default)]
struct Services {
    groups: HashMap<String, Service>,
    target_groups: HashMap<String, Service>,
}

/// One target group's tick, for the lines and the metrics.
struct TargetGroupTick {
    /// Its name.
    name: String,
    /// Its `TargetGroup` dimension.
    dimension: String,
    /// Per balancer routing to it: its `LoadBalancer` dimension and the part of
    /// the group's requests that came through it (0 to 1).
    balancers: Vec<(String, f64)>,
    /// Names of the balancers, for people.
    balancer_names: Vec<String>,
    /// The share of its balancers' requests it received (0 to 1).
    share: f64,
    /// Registered targets.
    targets: usize,
    /// Targets that can serve.
    serving: usize,
    /// What it served.
    sample: Sample,
}

struct Tick {
    groups: Vec<GroupView>,
    samples: Vec<Sample>,
    target_groups: Vec<TargetGroupTick>,
    skipped: Vec<alarms::Skipped>,
}

async fn one_tick(
    aws: &Aws,
    elb: &ElbClient,
    opts: &Options,
    elapsed: Duration,
    services: &mut Services,
    rng: &mut StdRng,
) -> Result<Tick, AwsError> {
    let topology = if opts.balancers() {
        balancer::read(elb, &opts.load_balancers).await?
    } else {
        Topology::default()
    };
    let targets: Vec<String> = topology
        .target_groups
        .values()
        .flat_map(|t| t.targets.iter().cloned())
        .collect();
    let fleet = fleet::view(aws, &opts.groups, &targets).await?;
    let at = DateTime::from(std::time::SystemTime::now());
    let secs = elapsed.as_secs_f64();

    // The balancers' users: each balancer's load, split by its rules' weights.
    // Per target group: requests/s offered, and per balancer the requests/s it sent.
    let mut offered: HashMap<&str, f64> = HashMap::new();
    let mut sent: HashMap<&str, Vec<(usize, f64)>> = HashMap::new();
    let mut balancer_load = Vec::new();
    for (i, b) in topology.balancers.iter().enumerate() {
        let load = opts.model.load * (1.0 + 0.05 * noise(rng));
        let split = b.split();
        for (arn, share) in &split.target_groups {
            if let Some((arn, _)) = topology.target_groups.get_key_value(arn) {
                *offered.entry(arn.as_str()).or_default() += load * share;
                sent.entry(arn.as_str()).or_default().push((i, load * share));
            }
        }
        balancer_load.push((load, split));
    }
    let mut target_groups = Vec::new();
    for (arn, tg) in &topology.target_groups {
        let serving = tg.targets.iter().filter(|t| fleet.serving.contains(*t)).count();
        let load = offered.get(arn.as_str()).copied().unwrap_or(0.0);
        let sample = services.target_groups.entry(arn.clone()).or_default().tick_load(
            &opts.model,
            serving,
            load,
            elapsed,
            rng,
        );
        let from: &[(usize, f64)] = sent.get(arn.as_str()).map_or(&[], |v| v);
        let total: f64 = from.iter().map(|(_, r)| r).sum();
        let lb_total: f64 = from.iter().map(|(i, _)| balancer_load[*i].0).sum();
        target_groups.push(TargetGroupTick {
            name: tg.name.clone(),
            dimension: tg.dimension.clone(),
            balancers: from
                .iter()
                .map(|(i, r)| {
                    let part = if total > 0.0 {
                        r / total
                    } else {
                        1.0 / from.len() as f64
                    };
                    (topology.balancers[*i].dimension.clone(), part)
                })
                .collect(),
            balancer_names: from
                .iter()
                .map(|(i, _)| topology.balancers[*i].name.clone())
                .collect(),
            share: if lb_total > 0.0 { total / lb_total } else { 0.0 },
            targets: tg.targets.len(),
            serving,
            sample,
        });
    }

    // The groups: behind a balancer, what their instances served in its target
    // groups; behind none, the model's own load.
    let mut samples = Vec::new();
    for v in &fleet.groups {
        let members: HashSet<&String> = v.members.iter().collect();
        let behind: Vec<(&TargetGroupTick, f64)> = topology
            .target_groups
            .values()
            .zip(&target_groups)
            .filter_map(|(tg, t)| {
                let mine =
                    |ids: &mut dyn Iterator<Item = &String>| ids.filter(|id| members.contains(id)).count();
                let in_group = mine(&mut tg.targets.iter());
                if in_group == 0 {
                    return None;
                }
                let serving_here = mine(&mut tg.targets.iter().filter(|id| fleet.serving.contains(*id)));
                let portion = if t.serving > 0 {
                    serving_here as f64 / t.serving as f64
                } else {
                    in_group as f64 / t.targets as f64
                };
                Some((t, portion))
            })
            .collect();
        let s = if behind.is_empty() {
            services.groups.entry(v.name.clone()).or_default().tick(
                &Model {
                    load: opts.group_load,
                    ..opts.model
                },
                v.serving,
                elapsed,
                rng,
            )
        } else {
            combine(&behind)
        };
        samples.push(s);
    }

    let mut app = Vec::new();
    for (v, s) in fleet.groups.iter().zip(&samples) {
        let dim = Dimension::builder().name(GROUP_DIMENSION).value(&v.name).build();
        for (name, value, unit) in [
            ("RequestCount", s.requests, StandardUnit::Count),
            ("Errors", s.errors, StandardUnit::Count),
            ("Latency", s.latency_ms, StandardUnit::Milliseconds),
            ("ServingInstances", v.serving as f64, StandardUnit::Count),
        ] {
            app.push(datum(name, vec![dim.clone()], value, unit, at));
        }
    }
    let elb_datums = balancer_datums(&topology, &balancer_load, &target_groups, secs, at);
    for (namespace, datums) in [(NAMESPACE, app), (ELB_NAMESPACE, elb_datums)] {
        for chunk in datums.chunks(DATUMS_PER_CALL) {
            aws.cloudwatch
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(api("cloudwatch", "PutMetricData"))?;
        }
    }
    let names: Vec<String> = fleet.groups.iter().map(|v| v.name.clone()).collect();
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
    Ok(Tick {
        groups: fleet.groups,
        samples,
        target_groups,
        skipped,
    })
}

/// What a group's instances served in the target groups they belong to: each
/// target group's requests and errors in proportion to the group's part of
/// its serving targets, latency weighted by requests.
fn combine(parts: &[(&TargetGroupTick, f64)]) -> Sample {
    let mut out = Sample {
        requests: 0.0,
        errors: 0.0,
        latency_ms: 0.0,
        rates: Rates {
            requests: 0.0,
            errors: 0.0,
            latency_ms: 0.0,
        },
    };
    let mut weight = 0.0;
    for (t, portion) in parts {
        let s = &t.sample;
        out.requests += s.requests * portion;
        out.errors += s.errors * portion;
        out.rates.requests += s.rates.requests * portion;
        out.rates.errors += s.rates.errors * portion;
        let w = s.requests * portion;
        out.latency_ms += s.latency_ms * w;
        out.rates.latency_ms += s.rates.latency_ms * w;
        weight += w;
    }
    if weight > 0.0 {
        out.latency_ms /= weight;
        out.rates.latency_ms /= weight;
    } else if let Some((t, _)) = parts.first() {
        (out.latency_ms, out.rates.latency_ms) = (t.sample.latency_ms, t.sample.rates.latency_ms);
    }
    out.requests = out.requests.round();
    out.errors = out.errors.round().min(out.requests);
    out
}

/// The `AWS/ApplicationELB` metrics: per target group (dimensions
/// `TargetGroup` and `LoadBalancer`) and per balancer (`LoadBalancer`).
///
/// Errors of a group with serving targets are the targets' 5xx; requests to
/// a group with none, or forwarded to no group, are the balancer's own 5xx
/// (CloudWatch publishes those per balancer only). TargetResponseTime is in
/// seconds and, as in CloudWatch, absent when nothing was served.
fn balancer_datums(
    topology: &Topology,
    balancer_load: &[(f64, Split)],
    target_groups: &[TargetGroupTick],
    secs: f64,
    at: DateTime,
) -> Vec<MetricDatum> {
    let mut out = Vec::new();
    // Per balancer dimension: requests, target 5xx, balancer 5xx, response time x requests served.
    let mut per_lb: HashMap<&str, (f64, f64, f64, f64, f64)> = HashMap::new();
    for (b, (load, split)) in topology.balancers.iter().zip(balancer_load) {
        let e = per_lb.entry(b.dimension.as_str()).or_default();
        e.0 += ((split.answered + split.unrouted) * load * secs).round();
        e.2 += (split.unrouted * load * secs).round();
    }
    for t in target_groups {
        let s = &t.sample;
        let (target_5xx, elb_5xx) = if t.serving > 0 {
            (s.errors, 0.0)
        } else {
            (0.0, s.requests)
        };
        for (lb, part) in &t.balancers {
            let dims = vec![
                Dimension::builder()
                    .name("TargetGroup")
                    .value(&t.dimension)
                    .build(),
                Dimension::builder().name("LoadBalancer").value(lb).build(),
            ];
            let requests = (s.requests * part).round();
            out.push(datum(
                "RequestCount",
                dims.clone(),
                requests,
                StandardUnit::Count,
                at,
            ));
            out.push(datum(
                "HTTPCode_Target_5XX_Count",
                dims.clone(),
                (target_5xx * part).round(),
                StandardUnit::Count,
                at,
            ));
            out.push(datum(
                "HealthyHostCount",
                dims.clone(),
                t.serving as f64,
                StandardUnit::Count,
                at,
            ));
            out.push(datum(
                "UnHealthyHostCount",
                dims.clone(),
                t.targets.saturating_sub(t.serving) as f64,
                StandardUnit::Count,
                at,
            ));
            if t.serving > 0 && requests > 0.0 {
                out.push(datum(
                    "TargetResponseTime",
                    dims,
                    s.latency_ms / 1000.0,
                    StandardUnit::Seconds,
                    at,
                ));
            }
            if let Some(e) = per_lb.get_mut(lb.as_str()) {
                e.0 += requests;
                e.1 += (target_5xx * part).round();
                e.2 += (elb_5xx * part).round();
                if t.serving > 0 {
                    e.3 += s.latency_ms / 1000.0 * requests;
                    e.4 += requests;
                }
            }
        }
    }
    for (lb, (requests, target_5xx, elb_5xx, time, served)) in per_lb {
        let dims = vec![Dimension::builder().name("LoadBalancer").value(lb).build()];
        out.push(datum(
            "RequestCount",
            dims.clone(),
            requests,
            StandardUnit::Count,
            at,
        ));
        out.push(datum(
            "HTTPCode_Target_5XX_Count",
            dims.clone(),
            target_5xx,
            StandardUnit::Count,
            at,
        ));
        out.push(datum(
            "HTTPCode_ELB_5XX_Count",
            dims.clone(),
            elb_5xx,
            StandardUnit::Count,
            at,
        ));
        if served > 0.0 {
            out.push(datum(
                "TargetResponseTime",
                dims,
                time / served,
                StandardUnit::Seconds,
                at,
            ));
        }
    }
    out
}

/// One high-resolution datum (storage resolution 1, so alarms with 10 s
/// periods are valid on real CloudWatch too).
fn datum(name: &str, dims: Vec<Dimension>, value: f64, unit: StandardUnit, at: DateTime) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(dims))
        .value(value)
        .unit(unit)
        .timestamp(at)
        .storage_resolution(1)
        .build()
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

/// e.g. `target group shop-web (shop-web-alb): 90.0% of the requests, 36/36 targets serving | ...`.
fn target_group_line(t: &TargetGroupTick) -> String {
    let via = if t.balancer_names.is_empty() {
        "no balancer".to_string()
    } else {
        t.balancer_names.join(", ")
    };
    format!(
        "target group {} ({via}): {:.1}% of the requests, {}/{} targets serving | {} req/s, {:.1} errors/s, latency {} ms",
        t.name,
        t.share * 100.0,
        t.serving,
        t.targets,
        number(t.sample.rates.requests.round()),
        t.sample.rates.errors,
        number(t.sample.latency_ms.round())
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
