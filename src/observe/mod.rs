//! Observation: reading CloudWatch metrics, alarms and Auto Scaling healthy
//! capacity, and judging every probe of an experiment against them.
//!
//! Reading and judging are split. [`Queries`] is built once per run and read
//! on every tick: one GetMetricData call carries every metric query (the
//! experiment's and the control's, batched by the API's 500), one
//! DescribeAlarms call every alarm (batched by 100), one
//! DescribeAutoScalingGroups call every group, all three concurrently, so a
//! check costs the same however many probes an experiment has and no probe
//! waits on another. [`Observer`] judges a [`Reading`] (no I/O) and keeps what
//! the run needs afterwards: each metric's series, baselines, deviations, and
//! when a detection alarm fired and cleared.

mod stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use jiff::Timestamp;

use crate::aws::{AlarmInfo, AlarmKind, Aws, AwsError, api, describe_alarms};
use crate::experiment::{
    CapacityBound, Compare, During, Expect, Experiment, InsufficientData, MetricQuery, MetricSpec, Missing,
    Probe, ProbeKind, Tolerance, TreatMissing,
};
use crate::halt::{self, Halt};
use crate::journal::{Event, GuardrailCheck, Phase, Point, ProbeInfo, ProbeResult, ProbeRole, SeriesOf};
use crate::model::Vars;
use crate::util::{ms_text, value_text};

/// GetMetricData accepts at most this many queries per call.
const QUERIES_PER_CALL: usize = 500;
/// DescribeAutoScalingGroups accepts at most this many names per call.
const GROUPS_PER_CALL: usize = 50;
/// Fewer datapoints than this per side are too few to compare with the control.
const MIN_COMPARE_SAMPLES: usize = 3;

// ---------------------------------------------------------------- alarms

/// The alarm names a composite alarm's rule refers to.
pub fn rule_alarms(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    for func in ["ALARM(", "OK(", "INSUFFICIENT_DATA("] {
        let mut rest = rule;
        while let Some(i) = rest.find(func) {
            rest = &rest[i + func.len()..];
            let Some(end) = rest.find(')') else { break };
            let name = rest[..end].trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !name.is_empty() && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

// ---------------------------------------------------------------- probes

/// A probe with its variables expanded, as the run checks it.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The probe's name.
    pub name: String,
    /// Steady state, detection or guardrail.
    pub role: ProbeRole,
    /// For steady state: whether it must hold while faults are active.
    pub during: During,
    /// What is read and how it is judged.
    pub check: Check,
}

/// What a watched probe reads.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few per run, built once: boxing would only add noise
pub enum Check {
    /// A metric: its query for the experiment and, in parallel mode, the control.
    Metric {
        /// The experiment's query (`${asg}` is the group faults go into).
        spec: MetricSpec,
        /// The control's query (`${asg}` is the source group).
        control: Option<MetricSpec>,
        /// The tolerance as written.
        expect: Expect,
        /// Consecutive datapoints out of tolerance that count.
        datapoints: u32,
        /// Judge against the control.
        compare: Option<Compare>,
        /// What silence means.
        missing: Missing,
        /// How long it may go without a new datapoint before `missing` applies.
        silence: Duration,
    },
    /// An alarm's state.
    Alarm {
        /// The alarm.
        alarm: String,
        /// INSUFFICIENT_DATA handling.
        insufficient: InsufficientData,
    },
    /// A group's healthy capacity.
    Capacity {
        /// The group.
        group: String,
        /// The bound.
        bound: CapacityBound,
    },
    /// A detection alarm that must fire and clear.
    Fires {
        /// The alarm.
        alarm: String,
        /// Allowed time from the first injection to ALARM.
        within: Duration,
        /// Allowed time from the end of rollback to OK.
        clears_within: Duration,
    },
}

/// Every probe of `exp`, steady state first, with variables expanded: metric
/// and capacity probes see `run` (the copy in parallel mode); alarms, which
/// exist before the run, see `source`; the control series of a metric of
/// `${asg}` is read in parallel mode from `source`.
pub fn watch_list(exp: &Experiment, run: &Vars, source: &Vars, parallel: bool) -> Vec<Watched> {
    let interval = exp.timing.interval;
    let steady = exp
        .steady_state
        .iter()
        .map(|p| watched(p, ProbeRole::SteadyState, run, source, parallel, interval));
    steady
        .chain(
            exp.guardrails
                .iter()
                .map(|p| watched(p, ProbeRole::Guardrail, run, source, parallel, interval)),
        )
        .collect()
}

/// One probe, watched in `role` (an `alarm_fires` probe is always detection),
/// read every `interval`.
pub fn watched(
    p: &Probe,
    role: ProbeRole,
    run: &Vars,
    source: &Vars,
    parallel: bool,
    interval: Duration,
) -> Watched {
    let (role, check) = match &p.kind {
        ProbeKind::Metric {
            query,
            tolerance,
            datapoints,
            compare,
            missing,
        } => {
            let control = (parallel && query.uses_experiment() && source.asg.is_some())
                .then(|| expand_spec(query, &control_vars(run, source)));
            (
                role,
                Check::Metric {
                    spec: expand_spec(query, run),
                    control,
                    expect: *tolerance,
                    datapoints: *datapoints,
                    compare: *compare,
                    missing: *missing,
                    silence: missing.limit(query.period(), interval),
                },
            )
        }
        ProbeKind::Alarm {
            alarm,
            insufficient_data,
        } => (
            role,
            Check::Alarm {
                alarm: source.expand(alarm),
                insufficient: *insufficient_data,
            },
        ),
        ProbeKind::AsgHealthy { group, bound } => (
            role,
            Check::Capacity {
                group: run.expand(group),
                bound: *bound,
            },
        ),
        ProbeKind::AlarmFires {
            alarm,
            within,
            clears_within,
        } => (
            ProbeRole::Detection,
            Check::Fires {
                alarm: source.expand(alarm),
                within: *within,
                clears_within: *clears_within,
            },
        ),
    };
    Watched {
        name: p.name.clone(),
        role,
        during: p.during,
        check,
    }
}

/// The names a control's series is read with. With a control copy
/// (`environment.traffic`), the control copy: same size, same share, same
/// moment, so `${asg}` becomes `${control_asg}` and
/// `${experiment_target_group}` becomes `${control_target_group}`. Without
/// one, the source group, which keeps serving real traffic.
pub fn control_vars(run: &Vars, source: &Vars) -> Vars {
    match &run.control_asg {
        Some(control) => Vars {
            asg: Some(control.clone()),
            experiment_target_group: run.control_target_group.clone(),
            instances: Vec::new(),
            ..run.clone()
        },
        None => source.clone(),
    }
}

fn expand_query(q: &MetricQuery, vars: &Vars) -> MetricQuery {
    MetricQuery {
        dimensions: q
            .dimensions
            .iter()
            .map(|(k, v)| (k.clone(), vars.expand(v)))
            .collect(),
        ..q.clone()
    }
}

fn expand_spec(spec: &MetricSpec, vars: &Vars) -> MetricSpec {
    match spec {
        MetricSpec::Stat(q) => MetricSpec::Stat(expand_query(q, vars)),
        MetricSpec::Math {
            expression,
            metrics,
            period,
        } => MetricSpec::Math {
            expression: expression.clone(),
            metrics: metrics
                .iter()
                .map(|(id, q)| (id.clone(), expand_query(q, vars)))
                .collect(),
            period: *period,
        },
    }
}

impl Watched {
    /// A metric probe's missing-data rule in words, e.g. `breach after 3s`.
    pub fn missing_rule(&self) -> Option<String> {
        match &self.check {
            Check::Metric { missing, silence, .. } => Some(rule_text(*missing, *silence)),
            _ => None,
        }
    }

    /// The probe as reports show it.
    pub fn info(&self, tolerance: Option<Tolerance>) -> ProbeInfo {
        let (kind, check, limits, control) = match &self.check {
            Check::Metric {
                spec,
                control,
                expect,
                datapoints,
                ..
            } => {
                let n = if *datapoints > 1 {
                    format!(" ({datapoints} datapoints)")
                } else {
                    String::new()
                };
                let shown = tolerance
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| expect.to_string());
                (
                    "metric",
                    format!("{} {shown}{n}", spec.describe()),
                    tolerance.map(Tolerance::limits).unwrap_or_default(),
                    control.is_some(),
                )
            }
            Check::Alarm { alarm, .. } => (
                "alarm",
                format!("alarm `{alarm}` not in ALARM"),
                Vec::new(),
                false,
            ),
            Check::Capacity { group, bound } => {
                let limits = match bound {
                    CapacityBound::AtLeast(n) => vec![*n as f64],
                    CapacityBound::Percent(_) => Vec::new(),
                };
                (
                    "asg_healthy",
                    format!("healthy capacity of `{group}` {bound}"),
                    limits,
                    false,
                )
            }
            Check::Fires {
                alarm,
                within,
                clears_within,
            } => (
                "alarm_fires",
                format!(
                    "alarm `{alarm}` fires within {} of injection and clears within {} of rollback",
                    fmt_dur(*within),
                    fmt_dur(*clears_within)
                ),
                Vec::new(),
                false,
            ),
        };
        ProbeInfo {
            name: self.name.clone(),
            role: self.role,
            kind: kind.to_string(),
            check,
            limits,
            control,
        }
    }
}

fn fmt_dur(d: Duration) -> String {
    crate::util::format_duration(d)
}

fn rule_text(missing: Missing, silence: Duration) -> String {
    match missing.treat {
        TreatMissing::Ignore => "ignore".to_string(),
        t => format!("{} after {}", t.as_str(), fmt_dur(silence)),
    }
}

// ---------------------------------------------------------------- reading

/// A group's capacity as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// InService and Healthy instances.
    pub healthy: usize,
    /// Desired capacity.
    pub desired: usize,
}

/// Everything one tick read.
#[derive(Debug, Clone)]
pub struct Reading {
    /// When the answers arrived.
    pub at: Timestamp,
    metrics: HashMap<String, Vec<(i64, f64)>>,
    alarms: HashMap<String, AlarmInfo>,
    groups: HashMap<String, Capacity>,
    /// The kill switch, when it is on (`gameday halt`).
    pub halt: Option<Halt>,
}

/// The calls every tick makes, built once per run.
#[derive(Debug, Clone)]
pub struct Queries {
    metric: Vec<MetricDataQuery>,
    /// Per watched probe: the ids of its experiment and control results.
    ids: Vec<(Option<String>, Option<String>)>,
    alarms: Vec<String>,
    groups: Vec<String>,
    lookback: Duration,
    align: i64,
    /// The kill switch's SSM parameter, read once per tick; `None`: not read.
    halt: Option<String>,
}

impl Queries {
    /// The queries for `watched`.
    pub fn new(watched: &[Watched]) -> Arc<Queries> {
        let mut q = Queries {
            metric: Vec::new(),
            ids: Vec::new(),
            alarms: Vec::new(),
            groups: Vec::new(),
            lookback: Duration::from_secs(60),
            align: 1,
            halt: None,
        };
        for (i, w) in watched.iter().enumerate() {
            let mut ids = (None, None);
            match &w.check {
                Check::Metric {
                    spec,
                    control,
                    datapoints,
                    ..
                } => {
                    let e = format!("p{i}e");
                    q.metric.extend(data_queries(spec, &e));
                    ids.0 = Some(e);
                    if let Some(c) = control {
                        let cid = format!("p{i}c");
                        q.metric.extend(data_queries(c, &cid));
                        ids.1 = Some(cid);
                    }
                    let period = spec.period() as u64;
                    q.lookback = q
                        .lookback
                        .max(Duration::from_secs(period * (*datapoints as u64 + 3)));
                    q.align = lcm(q.align, period as i64).min(86_400);
                }
                Check::Alarm { alarm, .. } | Check::Fires { alarm, .. } => q.alarms.push(alarm.clone()),
                Check::Capacity { group, .. } => q.groups.push(group.clone()),
            }
            q.ids.push(ids);
        }
        q.alarms.sort();
        q.alarms.dedup();
        q.groups.sort();
        q.groups.dedup();
        Arc::new(q)
    }

    /// Reads every metric, alarm and group, and the kill switch, once,
    /// concurrently. A kill switch that cannot be read fails the reading,
    /// as a probe that cannot be read does.
    pub async fn read(&self, aws: &Aws) -> Result<Reading, AwsError> {
        let (metrics, alarms, groups, halt) = tokio::try_join!(
            self.read_metrics(aws),
            describe_alarms(aws, &self.alarms),
            group_capacity(aws, &self.groups),
            async {
                match &self.halt {
                    Some(p) => halt::read(aws, p).await,
                    None => Ok(None),
                }
            }
        )?;
        Ok(Reading {
            at: Timestamp::now(),
            metrics,
            alarms,
            groups,
            halt,
        })
    }

    async fn read_metrics(&self, aws: &Aws) -> Result<HashMap<String, Vec<(i64, f64)>>, AwsError> {
        let mut out: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        if self.metric.is_empty() {
            return Ok(out);
        }
        // Periods start at multiples of the period, so every read of a period
        // yields the same timestamp and the series can be merged.
        let now = Timestamp::now().as_second();
        let start = (now - self.lookback.as_secs() as i64).div_euclid(self.align) * self.align;
        let end = now + 1;
        for chunk in self.metric.chunks(QUERIES_PER_CALL) {
            let mut pages = aws
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(chunk.to_vec()))
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(api("cloudwatch", "GetMetricData"))?;
                for r in page.metric_data_results() {
                    let Some(id) = r.id() else { continue };
                    let points = out.entry(id.to_string()).or_default();
                    points.extend(
                        r.timestamps()
                            .iter()
                            .map(|t| t.secs())
                            .zip(r.values().iter().copied()),
                    );
                }
            }
        }
        Ok(out)
    }
}

fn data_queries(spec: &MetricSpec, id: &str) -> Vec<MetricDataQuery> {
    match spec {
        MetricSpec::Stat(q) => vec![stat_query(q, id, true)],
        MetricSpec::Math {
            expression,
            metrics,
            period,
        } => {
            let mut out: Vec<MetricDataQuery> = metrics
                .iter()
                .map(|(m, q)| stat_query(q, &format!("{id}_{m}"), false))
                .collect();
            let ids: Vec<&str> = metrics.iter().map(|(m, _)| m.as_str()).collect();
            out.push(
                MetricDataQuery::builder()
                    .id(id)
                    .expression(rename_ids(expression, &ids, id))
                    .period(*period as i32)
                    .return_data(true)
                    .build(),
            );
            out
        }
    }
}

fn stat_query(q: &MetricQuery, id: &str, return_data: bool) -> MetricDataQuery {
    let dims: Vec<Dimension> = q
        .dimensions
        .iter()
        .map(|(k, v)| Dimension::builder().name(k).value(v).build())
        .collect();
    let metric = Metric::builder()
        .namespace(&q.namespace)
        .metric_name(&q.name)
        .set_dimensions(Some(dims))
        .build();
    let stat = MetricStat::builder()
        .metric(metric)
        .period(q.period as i32)
        .stat(&q.stat)
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(stat)
        .return_data(return_data)
        .build()
}

/// Prefixes the metric ids an expression names, so several probes' ids never
/// collide in one GetMetricData call: `m1 / m2` becomes `p0e_m1 / p0e_m2`.
fn rename_ids(expression: &str, ids: &[&str], prefix: &str) -> String {
    let mut out = String::with_capacity(expression.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if ids.contains(&word.as_str()) {
            out.push_str(prefix);
            out.push('_');
        }
        out.push_str(word);
        word.clear();
    };
    for c in expression.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn lcm(a: i64, b: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    if a == 0 || b == 0 {
        a.max(b)
    } else {
        a / gcd(a, b) * b
    }
}

/// Healthy capacity of `groups`; missing groups are absent.
pub async fn group_capacity(aws: &Aws, groups: &[String]) -> Result<HashMap<String, Capacity>, AwsError> {
    let mut out = HashMap::new();
    for chunk in groups.chunks(GROUPS_PER_CALL) {
        let mut pages = aws
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
            for g in page.auto_scaling_groups() {
                let healthy = g
                    .instances()
                    .iter()
                    .filter(|i| {
                        i.lifecycle_state().is_some_and(|s| s.as_str() == "InService")
                            && i.health_status() == Some("Healthy")
                    })
                    .count();
                let desired = g
                    .desired_capacity()
                    .and_then(|d| usize::try_from(d).ok())
                    .unwrap_or(0);
                out.insert(
                    g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    Capacity { healthy, desired },
                );
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- judging

/// A guardrail found breached.
#[derive(Debug, Clone)]
pub struct Breach {
    /// The guardrail's label.
    pub guardrail: String,
    /// What was seen.
    pub detail: String,
}

/// What one tick found.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// Every probe's result.
    pub results: Vec<ProbeResult>,
    /// Guardrails breached.
    pub breaches: Vec<Breach>,
    /// Deviations (on the change) and alarm state changes, for the journal.
    pub events: Vec<Event>,
    /// The kill switch, when it is on.
    pub halt: Option<Halt>,
}

#[derive(Debug, Default)]
struct State {
    experiment: BTreeMap<i64, f64>,
    control: BTreeMap<i64, f64>,
    /// Known once fixed or measured at baseline.
    tolerance: Option<Tolerance>,
    deviating: bool,
    /// The first deviation while faults were active (steady state that must hold).
    failed_during: Option<String>,
    last_ok: bool,
    last_detail: String,
    detected_at: Option<Timestamp>,
    cleared_at: Option<Timestamp>,
    /// A metric without a new datapoint for longer than its silence limit
    /// (`probe_silent` was journaled; `probe_data_back` ends it).
    silent: bool,
    /// Left out of recovery: the traffic it measures was taken away
    /// (`probe_not_judged` was journaled).
    not_judged: bool,
}

/// Judges readings and remembers what the run needs afterwards.
#[derive(Debug)]
pub struct Observer {
    watched: Vec<Watched>,
    queries: Arc<Queries>,
    states: Vec<State>,
    alarm_last: HashMap<String, String>,
    /// When the first reading arrived: a metric that never had a datapoint
    /// has been silent since then.
    watching_since: Option<Timestamp>,
    /// When the first fault took effect (detection windows start here).
    pub injected_at: Option<Timestamp>,
    /// When the last fault was rolled back (recovery and clear windows start here).
    pub rolled_back_at: Option<Timestamp>,
    /// When the fault phase saw the kill switch on (its `halted` event is journaled).
    pub halted_at: Option<Timestamp>,
}

impl Observer {
    /// An observer of `watched`.
    pub fn new(watched: Vec<Watched>) -> Observer {
        let queries = Queries::new(&watched);
        let states = watched
            .iter()
            .map(|w| State {
                tolerance: match &w.check {
                    Check::Metric {
                        expect: Expect::Fixed(t),
                        ..
                    } => Some(*t),
                    _ => None,
                },
                last_ok: true,
                ..State::default()
            })
            .collect();
        Observer {
            watched,
            queries,
            states,
            alarm_last: HashMap::new(),
            watching_since: None,
            injected_at: None,
            rolled_back_at: None,
            halted_at: None,
        }
    }

    /// Reads the kill switch `parameter` (the policy's `halt.parameter`)
    /// with every tick's probes.
    pub fn with_halt(mut self, parameter: &str) -> Observer {
        let mut q = (*self.queries).clone();
        q.halt = Some(parameter.to_string());
        self.queries = Arc::new(q);
        self
    }

    /// The calls a tick makes (shared with the watcher task).
    pub fn queries(&self) -> Arc<Queries> {
        self.queries.clone()
    }

    /// The probes.
    pub fn watched(&self) -> &[Watched] {
        &self.watched
    }

    /// Whether any probe is part of the hypothesis (steady state or detection).
    pub fn has_hypothesis(&self) -> bool {
        self.watched.iter().any(|w| w.role != ProbeRole::Guardrail)
    }

    /// Whether a baseline is needed: a hypothesis to prove, or a metric
    /// guardrail whose data must be seen before it is trusted.
    pub fn needs_baseline(&self) -> bool {
        self.has_hypothesis()
            || self
                .watched
                .iter()
                .any(|w| matches!(w.check, Check::Metric { .. }))
    }

    /// The probes as reports show them.
    pub fn infos(&self) -> Vec<ProbeInfo> {
        self.watched
            .iter()
            .zip(&self.states)
            .map(|(w, s)| w.info(s.tolerance))
            .collect()
    }

    /// Judges one reading taken during `phase`.
    pub fn judge(&mut self, r: &Reading, phase: Phase) -> Judged {
        let mut out = Judged {
            halt: r.halt.clone(),
            ..Judged::default()
        };
        let mut names: Vec<&String> = r.alarms.keys().collect();
        names.sort();
        for name in names {
            let info = &r.alarms[name];
            let prev = self.alarm_last.insert(name.clone(), info.state.clone());
            if prev.as_deref() != Some(info.state.as_str()) {
                out.events.push(Event::AlarmChanged {
                    alarm: name.clone(),
                    from: prev,
                    to: info.state.clone(),
                    reason: info.reason.clone(),
                });
            }
        }
        let faults_active = matches!(phase, Phase::Inject | Phase::Rollback);
        let watching_since = *self.watching_since.get_or_insert(r.at);
        for i in 0..self.watched.len() {
            let w = &self.watched[i];
            let (ids, st) = (&self.queries.ids[i], &mut self.states[i]);
            let mut result = ProbeResult {
                probe: w.name.clone(),
                role: w.role,
                ok: true,
                value: None,
                control: None,
                state: None,
                detail: String::new(),
            };
            match &w.check {
                Check::Metric {
                    spec,
                    expect,
                    datapoints,
                    missing,
                    silence,
                    ..
                } => {
                    let now = r.at.as_second();
                    let period = spec.period() as i64;
                    let keep = |t: i64| !spec.cumulative() || t + period <= now;
                    // Judged against the control, the control's silence is as blinding as the experiment's.
                    let paired = expect.against_control();
                    let silence_of = |st: &State| {
                        let e = silent_ms(st.experiment.keys().next_back(), period, watching_since, r.at);
                        let c = silent_ms(st.control.keys().next_back(), period, watching_since, r.at);
                        if paired { e.max(c) } else { e }
                    };
                    let silent_before = silence_of(st);
                    if let Some(points) = ids.0.as_ref().and_then(|id| r.metrics.get(id)) {
                        st.experiment
                            .extend(points.iter().copied().filter(|(t, _)| keep(*t)));
                    }
                    if let Some(points) = ids.1.as_ref().and_then(|id| r.metrics.get(id)) {
                        st.control
                            .extend(points.iter().copied().filter(|(t, _)| keep(*t)));
                    }
                    result.value = st.experiment.values().next_back().copied();
                    result.control = st.control.values().next_back().copied();
                    let recent: Vec<f64> = st
                        .experiment
                        .values()
                        .rev()
                        .take(*datapoints as usize)
                        .copied()
                        .collect();
                    let last = if paired {
                        // The older of the two newest datapoints: the one whose silence counts.
                        st.experiment
                            .keys()
                            .next_back()
                            .copied()
                            .min(st.control.keys().next_back().copied())
                    } else {
                        st.experiment.keys().next_back().copied()
                    };
                    let silent_for = silence_of(st);
                    let limit = silence.as_millis() as u64;
                    let last_datapoint = last.and_then(|t| Timestamp::from_second(t).ok());
                    if silent_for > limit && !st.silent {
                        st.silent = true;
                        out.events.push(Event::ProbeSilent {
                            probe: w.name.clone(),
                            role: w.role,
                            last_datapoint,
                            silent_for_ms: silent_for,
                            rule: rule_text(*missing, *silence),
                        });
                    } else if silent_for <= limit && st.silent {
                        st.silent = false;
                        out.events.push(Event::ProbeDataBack {
                            probe: w.name.clone(),
                            gap_ms: silent_before,
                        });
                    }
                    // A steady state's silence counts only while faults are
                    // active: the baseline demands data of its own
                    // (`finish_baseline`), and recovery a fresh datapoint.
                    let applies = w.role == ProbeRole::Guardrail || faults_active;
                    let (ok, detail) = judge_silence(*missing, *silence, silent_for, last_datapoint, applies)
                        .unwrap_or_else(|| {
                            if paired {
                                judge_against_control(
                                    w.role,
                                    expect,
                                    &st.experiment,
                                    &st.control,
                                    *datapoints,
                                )
                            } else {
                                judge_metric(w.role, st.tolerance, &recent, *datapoints)
                            }
                        });
                    result.ok = ok;
                    result.detail = detail;
                }
                Check::Alarm { alarm, insufficient } => {
                    let (ok, state, detail) = match r.alarms.get(alarm) {
                        None => (false, None, format!("alarm `{alarm}` does not exist")),
                        Some(a) if a.state == "ALARM" => (
                            false,
                            Some(a.state.clone()),
                            format!("alarm `{alarm}` is in ALARM: {}", a.reason),
                        ),
                        Some(a)
                            if a.state == "INSUFFICIENT_DATA"
                                && *insufficient == InsufficientData::Breach =>
                        {
                            (
                                false,
                                Some(a.state.clone()),
                                format!("alarm `{alarm}` has INSUFFICIENT_DATA"),
                            )
                        }
                        Some(a) => (
                            true,
                            Some(a.state.clone()),
                            format!("alarm `{alarm}` is {}", a.state),
                        ),
                    };
                    (result.ok, result.state, result.detail) = (ok, state, detail);
                }
                Check::Capacity { group, bound } => match r.groups.get(group) {
                    None => (result.ok, result.detail) = (false, format!("group `{group}` not found")),
                    Some(c) => {
                        result.value = Some(c.healthy as f64);
                        result.ok = bound.holds(c.healthy, c.desired);
                        result.detail = format!(
                            "{} healthy of {} desired (expected {bound})",
                            c.healthy, c.desired
                        );
                    }
                },
                Check::Fires { alarm, .. } => {
                    let state = r.alarms.get(alarm).map(|a| a.state.clone());
                    if state.as_deref() == Some("ALARM")
                        && self.injected_at.is_some()
                        && st.detected_at.is_none()
                    {
                        st.detected_at = Some(r.at);
                    }
                    if state.as_deref() == Some("OK")
                        && self.rolled_back_at.is_some()
                        && st.detected_at.is_some()
                        && st.cleared_at.is_none()
                    {
                        st.cleared_at = Some(r.at);
                    }
                    (result.ok, result.detail) = match state.as_deref() {
                        None => (false, format!("alarm `{alarm}` does not exist")),
                        // Before injection it must be quiet, or its firing would prove nothing.
                        Some("ALARM") if phase == Phase::Baseline => (
                            false,
                            format!("alarm `{alarm}` is already in ALARM before any fault"),
                        ),
                        Some(s) => (true, format!("alarm `{alarm}` is {s}")),
                    };
                    result.state = state;
                }
            }
            if !result.ok && !st.deviating {
                out.events.push(Event::Deviation {
                    probe: w.name.clone(),
                    role: w.role,
                    phase,
                    detail: result.detail.clone(),
                });
            }
            st.deviating = !result.ok;
            (st.last_ok, st.last_detail) = (result.ok, result.detail.clone());
            if !result.ok
                && faults_active
                && w.role == ProbeRole::SteadyState
                && w.during == During::Hold
                && st.failed_during.is_none()
            {
                st.failed_during = Some(result.detail.clone());
            }
            if !result.ok && w.role == ProbeRole::Guardrail {
                out.breaches.push(Breach {
                    guardrail: w.name.clone(),
                    detail: result.detail.clone(),
                });
            }
            out.results.push(result);
        }
        out
    }

    /// Ends the baseline begun at `since`: every metric probe must have data
    /// (a guardrail without data could never fire), and relative tolerances
    /// are fixed from the mean of the baseline's datapoints.
    pub fn finish_baseline(&mut self, since: Timestamp) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        let mut problems = Vec::new();
        for (w, st) in self.watched.iter().zip(&mut self.states) {
            let Check::Metric { spec, expect, .. } = &w.check else {
                continue;
            };
            let from = since.as_second() - spec.period() as i64;
            let window: Vec<f64> = st.experiment.range(from..).map(|(_, v)| *v).collect();
            if expect.against_control() && st.control.range(from..).next().is_none() {
                problems.push(format!(
                    "{} `{}` is judged against the control, which has no datapoints for {}",
                    match w.role {
                        ProbeRole::Guardrail => "guardrail",
                        _ => "steady state",
                    },
                    w.name,
                    spec.describe()
                ));
                continue;
            }
            let Some(mean) = stats::mean(&window) else {
                problems.push(match w.role {
                    ProbeRole::Guardrail => format!(
                        "guardrail `{}` has no datapoints for {}: it could never fire",
                        w.name,
                        spec.describe()
                    ),
                    _ => format!(
                        "steady state `{}` has no datapoints for {} during the baseline",
                        w.name,
                        spec.describe()
                    ),
                });
                continue;
            };
            if expect.needs_baseline() {
                let resolved = expect.resolve(mean);
                st.tolerance = Some(resolved);
                events.push(Event::BaselineMeasured {
                    probe: w.name.clone(),
                    value: mean,
                    written: expect.to_string(),
                    resolved: resolved.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(events)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Steady-state probes that went out of tolerance while faults were
    /// active although they must hold, with what was seen.
    pub fn deviations_during_faults(&self) -> Vec<String> {
        self.watched
            .iter()
            .zip(&self.states)
            .filter_map(|(w, s)| s.failed_during.as_ref().map(|d| format!("`{}`: {d}", w.name)))
            .collect()
    }

    /// After the listener rules were restored at an abort, the copies
    /// named by `run` (both groups and both target groups) serve no users:
    /// a steady-state metric probe that reads one of them has nothing left
    /// to show, so it is left out of recovery instead of being waited for
    /// in silence. Returns one `probe_not_judged` per probe newly left out;
    /// capacity and alarm probes are still judged.
    pub fn traffic_withdrawn(&mut self, run: &Vars) -> Vec<Event> {
        let copies: Vec<&String> = [
            &run.asg,
            &run.control_asg,
            &run.experiment_target_group,
            &run.control_target_group,
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut out = Vec::new();
        for (w, st) in self.watched.iter().zip(&mut self.states) {
            let Check::Metric { spec, control, .. } = &w.check else {
                continue;
            };
            let reads_copies = std::iter::once(spec).chain(control).any(|s| {
                s.metrics()
                    .iter()
                    .any(|q| q.dimensions.iter().any(|(_, v)| copies.contains(&v)))
            });
            if w.role != ProbeRole::SteadyState || !reads_copies || st.not_judged {
                continue;
            }
            st.not_judged = true;
            out.push(Event::ProbeNotJudged {
                probe: w.name.clone(),
                reason: "the copies' traffic was withdrawn at the abort".to_string(),
            });
        }
        out
    }

    /// Steady-state probes that do not hold yet with evidence from after
    /// `since` (the end of rollback); empty when the steady state has returned.
    /// Probes left out by [`Observer::traffic_withdrawn`] are not waited for.
    pub fn not_recovered(&self, since: Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        for (w, st) in self.watched.iter().zip(&self.states) {
            if w.role != ProbeRole::SteadyState || st.not_judged {
                continue;
            }
            if let Check::Metric { spec, expect, .. } = &w.check
                && expect.against_control()
            {
                let fresh = st
                    .experiment
                    .iter()
                    .rev()
                    .filter(|(t, _)| **t + spec.period() as i64 > since.as_second())
                    .find_map(|(t, v)| st.control.get(t).map(|c| (*v, *c)));
                match fresh {
                    None => out.push(format!(
                        "`{}`: no datapoint of the experiment and the control since rollback yet",
                        w.name
                    )),
                    Some((v, c)) if !expect.resolve(c).holds(v) => out.push(format!(
                        "`{}`: {v} against the control's {c} (expected {expect})",
                        w.name
                    )),
                    Some(_) => {}
                }
            } else if let Check::Metric { spec, .. } = &w.check {
                // Only a datapoint whose period ends after the rollback shows the state after it.
                let fresh = st
                    .experiment
                    .iter()
                    .next_back()
                    .filter(|(t, _)| **t + spec.period() as i64 > since.as_second());
                match (fresh, st.tolerance) {
                    (None, _) => out.push(format!("`{}`: no datapoint since rollback yet", w.name)),
                    (Some((_, v)), Some(t)) if !t.holds(*v) => {
                        out.push(format!("`{}`: {v} (expected {t})", w.name))
                    }
                    _ => {}
                }
            } else if !st.last_ok {
                out.push(format!("`{}`: {}", w.name, st.last_detail));
            }
        }
        out
    }

    /// Whether any steady-state probe is still judged for recovery.
    pub fn judges_recovery(&self) -> bool {
        self.watched
            .iter()
            .zip(&self.states)
            .any(|(w, st)| w.role == ProbeRole::SteadyState && !st.not_judged)
    }

    /// Whether every detection probe has its answer (fired and cleared, or
    /// missed a window) at `now`.
    pub fn detections_settled(&self, now: Timestamp) -> bool {
        self.detections(now).iter().all(|(_, settled)| *settled)
    }

    /// Each detection probe's outcome at `now`, and whether it is final.
    pub fn detections(&self, now: Timestamp) -> Vec<(Event, bool)> {
        let ms = |a: Timestamp, b: Timestamp| b.duration_since(a).as_millis().max(0) as u64;
        let mut out = Vec::new();
        for (w, st) in self.watched.iter().zip(&self.states) {
            let Check::Fires {
                alarm,
                within,
                clears_within,
            } = &w.check
            else {
                continue;
            };
            let detect = self.injected_at.zip(st.detected_at).map(|(i, d)| ms(i, d));
            let clear = self.rolled_back_at.zip(st.cleared_at).map(|(r, c)| ms(r, c));
            let within_ms = within.as_millis() as u64;
            let clears_ms = clears_within.as_millis() as u64;
            let since_inject = self.injected_at.map(|i| ms(i, now));
            let since_rollback = self.rolled_back_at.map(|r| ms(r, now));
            let (ok, settled, detail) = match (detect, clear) {
                (Some(d), _) if d > within_ms => (
                    false,
                    true,
                    format!(
                        "fired {} after injection, later than {}",
                        ms_text(d),
                        fmt_dur(*within)
                    ),
                ),
                (Some(d), Some(c)) if c <= clears_ms => (
                    true,
                    true,
                    format!(
                        "fired {} after injection and cleared {} after rollback",
                        ms_text(d),
                        ms_text(c)
                    ),
                ),
                (Some(_), Some(c)) => (
                    false,
                    true,
                    format!(
                        "cleared {} after rollback, later than {}",
                        ms_text(c),
                        fmt_dur(*clears_within)
                    ),
                ),
                (Some(d), None) if since_rollback.is_some_and(|s| s > clears_ms) => (
                    false,
                    true,
                    format!(
                        "fired {} after injection but did not clear within {} of rollback",
                        ms_text(d),
                        fmt_dur(*clears_within)
                    ),
                ),
                (Some(d), None) => (
                    false,
                    false,
                    format!("fired {} after injection; waiting for it to clear", ms_text(d)),
                ),
                (None, _) if self.injected_at.is_none() => (
                    false,
                    true,
                    "no fault took effect, so nothing could be detected".to_string(),
                ),
                (None, _) if since_inject.is_some_and(|s| s > within_ms) => (
                    false,
                    true,
                    format!("never fired within {} of injection", fmt_dur(*within)),
                ),
                (None, _) => (false, false, "has not fired yet".to_string()),
            };
            let event = Event::Detection {
                probe: w.name.clone(),
                alarm: alarm.clone(),
                time_to_detect_ms: detect,
                time_to_clear_ms: clear,
                ok,
                detail,
            };
            out.push((event, settled));
        }
        out
    }

    /// Control versus experiment over the fault window `[from, to]`, for every
    /// metric probe with a control.
    pub fn comparisons(&self, from: Timestamp, to: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        for (w, st) in self.watched.iter().zip(&self.states) {
            let Check::Metric {
                spec,
                control: Some(_),
                compare,
                ..
            } = &w.check
            else {
                continue;
            };
            let lo = from.as_second() - spec.period() as i64 + 1;
            let window = |m: &BTreeMap<i64, f64>| -> Vec<f64> {
                m.range(lo..=to.as_second()).map(|(_, v)| *v).collect()
            };
            let (e, c) = (window(&st.experiment), window(&st.control));
            out.push(compare_samples(&w.name, &e, &c, compare.as_ref()));
        }
        out
    }

    /// Every metric probe's series (and control series), for the journal.
    pub fn series(&self) -> Vec<Event> {
        let mut out = Vec::new();
        for (w, st) in self.watched.iter().zip(&self.states) {
            let Check::Metric { spec, control, .. } = &w.check else {
                continue;
            };
            let points = |m: &BTreeMap<i64, f64>| -> Vec<Point> {
                m.iter()
                    .filter_map(|(t, v)| {
                        Some(Point {
                            t: Timestamp::from_second(*t).ok()?,
                            v: *v,
                        })
                    })
                    .collect()
            };
            let dims = |s: &MetricSpec| -> Vec<(String, String)> {
                s.metrics().iter().flat_map(|q| q.dimensions.clone()).collect()
            };
            out.push(Event::Series {
                probe: w.name.clone(),
                of: SeriesOf::Experiment,
                dimensions: dims(spec),
                points: points(&st.experiment),
            });
            if let Some(c) = control {
                out.push(Event::Series {
                    probe: w.name.clone(),
                    of: SeriesOf::Control,
                    dimensions: dims(c),
                    points: points(&st.control),
                });
            }
        }
        out
    }
}

/// How long (ms) a metric has had no new datapoint at `now`: since the end of
/// its newest datapoint's period (`last` is its start), or, without any,
/// since observation began.
fn silent_ms(last: Option<&i64>, period: i64, watching_since: Timestamp, now: Timestamp) -> u64 {
    let from = match last {
        Some(t) => (t + period) * 1000,
        None => watching_since.as_millisecond(),
    };
    u64::try_from(now.as_millisecond() - from).unwrap_or(0)
}

/// What a metric's missing-data rule makes of `silent_for` ms without a new
/// datapoint: `None` when the datapoints decide (silence within the limit,
/// `missing: ignore`, or a rule that does not apply now).
fn judge_silence(
    missing: Missing,
    limit: Duration,
    silent_for: u64,
    last: Option<Timestamp>,
    applies: bool,
) -> Option<(bool, String)> {
    if !applies || missing.treat == TreatMissing::Ignore || silent_for <= limit.as_millis() as u64 {
        return None;
    }
    let since = match last {
        Some(t) => format!("since the one for {t}"),
        None => "since observation began".to_string(),
    };
    let detail = format!(
        "no datapoint for {} {since} (missing: {})",
        ms_text(silent_for / 100 * 100),
        rule_text(missing, limit)
    );
    Some((missing.treat == TreatMissing::Ok, detail))
}

/// Judges a metric's most recent datapoints (newest first): a steady state
/// deviates, and a guardrail is breached, when all of the last `n` are on the
/// wrong side of the tolerance.
fn judge_metric(role: ProbeRole, tolerance: Option<Tolerance>, recent: &[f64], n: u32) -> (bool, String) {
    let Some(&latest) = recent.first() else {
        return (true, "no datapoints yet".to_string());
    };
    let latest = value_text(latest);
    let Some(t) = tolerance else {
        return (true, format!("{latest} (its tolerance is set from the baseline)"));
    };
    let bad = |v: f64| {
        if role == ProbeRole::Guardrail {
            t.holds(v)
        } else {
            !t.holds(v)
        }
    };
    let all_bad = recent.len() >= n as usize && recent.iter().all(|v| bad(*v));
    let need = if n > 1 {
        format!("; {n} datapoints in a row count")
    } else {
        String::new()
    };
    match (role, all_bad) {
        (ProbeRole::Guardrail, true) => (false, format!("{latest} breaches the threshold {t}{need}")),
        (ProbeRole::Guardrail, false) => (true, format!("{latest} (threshold {t})")),
        (_, true) => (false, format!("{latest} is outside {t}{need}")),
        (_, false) => (true, format!("{latest} (expected {t})")),
    }
}

/// Judges a metric against its control, period by period: each of the
/// experiment's last `n` datapoints that has a control datapoint of the same
/// period is checked against the tolerance resolved with that control value
/// (`> control + 20` at a control of 3 is `> 23`). A steady state deviates,
/// and a guardrail is breached, when all `n` are on the wrong side.
fn judge_against_control(
    role: ProbeRole,
    expect: &Expect,
    experiment: &BTreeMap<i64, f64>,
    control: &BTreeMap<i64, f64>,
    n: u32,
) -> (bool, String) {
    let pairs: Vec<(f64, f64)> = experiment
        .iter()
        .rev()
        .filter_map(|(t, v)| control.get(t).map(|c| (*v, *c)))
        .take(n as usize)
        .collect();
    let Some(&(latest, latest_control)) = pairs.first() else {
        return (
            true,
            "no datapoints of the experiment and the control for the same period yet".to_string(),
        );
    };
    let bad = |(v, c): (f64, f64)| {
        let t = expect.resolve(c);
        if role == ProbeRole::Guardrail {
            t.holds(v)
        } else {
            !t.holds(v)
        }
    };
    let all_bad = pairs.len() >= n as usize && pairs.iter().all(|p| bad(*p));
    let need = if n > 1 {
        format!("; {n} datapoints in a row count")
    } else {
        String::new()
    };
    let seen = format!(
        "{} against the control's {}",
        value_text(latest),
        value_text(latest_control)
    );
    let resolved = expect.resolve(latest_control);
    match (role, all_bad) {
        (ProbeRole::Guardrail, true) => (
            false,
            format!("{seen} breaches the threshold {expect} ({resolved}){need}"),
        ),
        (ProbeRole::Guardrail, false) => (true, format!("{seen} (threshold {expect})")),
        (_, true) => (false, format!("{seen} is outside {expect} ({resolved}){need}")),
        (_, false) => (true, format!("{seen} (expected {expect})")),
    }
}

/// Compares the experiment's samples with the control's: the relative change
/// of the means, and the Mann-Whitney U test's p-value; judged by `compare`.
pub fn compare_samples(probe: &str, e: &[f64], c: &[f64], compare: Option<&Compare>) -> Event {
    let (em, cm) = (stats::mean(e), stats::mean(c));
    let change = em
        .zip(cm)
        .and_then(|(e, c)| (c != 0.0).then(|| (e - c) / c.abs() * 100.0));
    let test = stats::mann_whitney(e, c);
    let p = test.map(|t| t.p_value);
    let mut detail = match (em, cm) {
        (Some(em), Some(cm)) => format!("mean {em:.4} against the control's {cm:.4}"),
        _ => "no datapoints to compare".to_string(),
    };
    if let Some(ch) = change {
        detail += &format!(" ({ch:+.1}%)");
    }
    if let Some(p) = p {
        detail += &format!(", Mann-Whitney p = {p:.4}");
    }
    detail += &format!(" over {} and {} datapoints", e.len(), c.len());
    let ok = match compare {
        None => true,
        Some(_) if e.len() < MIN_COMPARE_SAMPLES || c.len() < MIN_COMPARE_SAMPLES => {
            detail += &format!(
                "; too few datapoints (at least {MIN_COMPARE_SAMPLES} each) to judge: hold the fault longer or use a shorter period"
            );
            false
        }
        Some(cmp) => {
            let significant = p.is_some_and(|p| p < cmp.significance);
            let up = cmp.max_increase.is_some_and(|m| change.is_some_and(|ch| ch > m));
            let down = cmp.max_decrease.is_some_and(|m| change.is_some_and(|ch| -ch > m));
            let limit = match (cmp.max_increase, cmp.max_decrease) {
                (Some(i), Some(d)) => format!("+{i}% / -{d}%"),
                (Some(i), None) => format!("+{i}%"),
                (None, Some(d)) => format!("-{d}%"),
                (None, None) => String::new(),
            };
            let drift = up || down;
            if drift && significant {
                detail += &format!("; beyond {limit} and significant (p < {})", cmp.significance);
            } else if drift {
                detail += &format!(
                    "; beyond {limit} but not significant (p >= {}), so within",
                    cmp.significance
                );
            } else {
                detail += &format!("; within {limit}");
            }
            !(drift && significant)
        }
    };
    Event::Comparison {
        probe: probe.to_string(),
        n_experiment: e.len(),
        n_control: c.len(),
        experiment_mean: em,
        control_mean: cm,
        change_percent: change,
        p_value: p,
        ok,
        judged: compare.is_some(),
        detail,
    }
}

// ---------------------------------------------------------------- preflight

/// Whether each guardrail can protect the run, and how fast.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preflight {
    /// One per guardrail.
    pub checks: Vec<GuardrailCheck>,
    /// The slowest guardrail's worst case, when all are known.
    pub worst_case_abort_ms: Option<u64>,
    /// `timing.max_abort_delay`.
    pub max_abort_delay_ms: Option<u64>,
}

impl Preflight {
    /// Why the run must not start, if it must not.
    pub fn refusal(&self) -> Option<String> {
        let mut why: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.guardrail, c.detail))
            .collect();
        if let Some(max) = self.max_abort_delay_ms {
            for c in &self.checks {
                match c.worst_case_abort_ms {
                    Some(w) if w > max => why.push(format!(
                        "{}: worst-case time to abort {} exceeds timing.max_abort_delay {}",
                        c.guardrail,
                        ms_text(w),
                        ms_text(max)
                    )),
                    None if c.ok => why.push(format!("{}: its worst-case time to abort is unknown, so timing.max_abort_delay cannot be guaranteed", c.guardrail)),
                    _ => {}
                }
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The journal event.
    pub fn event(&self) -> Event {
        Event::GuardrailPreflight {
            guardrails: self.checks.clone(),
            worst_case_abort_ms: self.worst_case_abort_ms,
            max_abort_delay_ms: self.max_abort_delay_ms,
        }
    }
}

/// Checks every guardrail before anything is injected: an alarm exists, is not
/// in ALARM, has data (unless `insufficient_data: allow`), and watches this
/// run's group (its `AutoScalingGroupName` dimension, if any, is `group`); and
/// computes each one's worst-case time from a real breach to the abort.
/// Metric guardrails get their data checked at the end of the baseline.
pub async fn preflight(aws: &Aws, exp: &Experiment, vars: &Vars) -> Result<Preflight, AwsError> {
    let watched: Vec<Watched> = watch_list(exp, vars, vars, false)
        .into_iter()
        .filter(|w| w.role == ProbeRole::Guardrail)
        .collect();
    let interval_ms = exp.timing.interval.as_millis() as u64;
    let mut names: Vec<String> = watched
        .iter()
        .filter_map(|w| {
            if let Check::Alarm { alarm, .. } = &w.check {
                Some(alarm.clone())
            } else {
                None
            }
        })
        .collect();
    let mut alarms = describe_alarms(aws, &names).await?;
    // Composite alarms: their children decide how fast they can fire (three levels deep).
    for _ in 0..3 {
        let children: Vec<String> = alarms
            .values()
            .filter_map(|a| {
                if let AlarmKind::Composite { rule } = &a.kind {
                    Some(rule_alarms(rule))
                } else {
                    None
                }
            })
            .flatten()
            .filter(|n| !alarms.contains_key(n))
            .collect();
        if children.is_empty() {
            break;
        }
        names.extend(children.iter().cloned());
        alarms.extend(describe_alarms(aws, &children).await?);
    }
    let group = vars.asg.as_deref();
    let mut checks = Vec::new();
    for w in &watched {
        let check = match &w.check {
            Check::Alarm { alarm, insufficient } => match alarms.get(alarm) {
                None => GuardrailCheck {
                    guardrail: w.name.clone(),
                    ok: false,
                    worst_case_abort_ms: None,
                    missing: None,
                    detail: format!("alarm `{alarm}` does not exist"),
                },
                Some(a) => {
                    let worst = alarm_delay_ms(alarm, &alarms, 0).map(|d| d + interval_ms);
                    let wrong_group = match &a.kind {
                        AlarmKind::Metric { dimensions, .. } => dimensions
                            .iter()
                            .find(|(k, v)| k == "AutoScalingGroupName" && group.is_some_and(|g| g != v))
                            .map(|(_, v)| v.clone()),
                        AlarmKind::Composite { .. } => None,
                    };
                    let (ok, detail) = if a.state == "ALARM" {
                        (
                            false,
                            format!("alarm `{alarm}` is already in ALARM: {}", a.reason),
                        )
                    } else if a.state == "INSUFFICIENT_DATA" && *insufficient != InsufficientData::Allow {
                        (
                            false,
                            format!(
                                "alarm `{alarm}` has no data (INSUFFICIENT_DATA), so it cannot fire; set `insufficient_data: allow` if that is expected"
                            ),
                        )
                    } else if let Some(other) = wrong_group {
                        (
                            false,
                            format!(
                                "alarm `{alarm}` watches group `{other}`, not this run's `{}`: it cannot see this run",
                                group.unwrap_or_default()
                            ),
                        )
                    } else {
                        (true, format!("alarm `{alarm}` exists and is {}", a.state))
                    };
                    GuardrailCheck {
                        guardrail: w.name.clone(),
                        ok,
                        worst_case_abort_ms: worst,
                        missing: None,
                        detail,
                    }
                }
            },
            Check::Metric {
                spec,
                datapoints,
                missing,
                silence,
                ..
            } => {
                let rule = rule_text(*missing, *silence);
                let silent = match missing.treat {
                    TreatMissing::Breach => "; a silent metric aborts the run",
                    TreatMissing::Ignore | TreatMissing::Ok => {
                        "; a silent metric never aborts the run (for sparse metrics)"
                    }
                };
                GuardrailCheck {
                    guardrail: w.name.clone(),
                    ok: true,
                    worst_case_abort_ms: Some(
                        metric_delay_ms(spec.period(), *datapoints, *missing, *silence) + interval_ms,
                    ),
                    missing: Some(rule.clone()),
                    detail: format!(
                        "metric {}: its data is checked during the baseline; missing: {rule}{silent}",
                        spec.describe()
                    ),
                }
            }
            Check::Capacity { group, .. } => GuardrailCheck {
                guardrail: w.name.clone(),
                ok: true,
                worst_case_abort_ms: Some(interval_ms),
                missing: None,
                detail: format!("healthy capacity of `{group}`, read every interval"),
            },
            Check::Fires { .. } => continue,
        };
        checks.push(check);
    }
    let worst = checks
        .iter()
        .map(|c| c.worst_case_abort_ms)
        .collect::<Option<Vec<u64>>>()
        .and_then(|v| v.into_iter().max());
    Ok(Preflight {
        checks,
        worst_case_abort_ms: worst,
        max_abort_delay_ms: exp.timing.max_abort_delay.map(|d| d.as_millis() as u64),
    })
}

/// How long a metric guardrail can take to see a breach, before the next
/// read: `datapoints` periods out of its threshold, or, with `missing:
/// breach`, a service that stops emitting: its last datapoint's period may
/// end up to a period after it died, and then the silence limit must pass.
fn metric_delay_ms(period: u32, datapoints: u32, missing: Missing, silence: Duration) -> u64 {
    let period_ms = period as u64 * 1000;
    let threshold = period_ms * datapoints as u64;
    match missing.treat {
        TreatMissing::Breach => threshold.max(period_ms + silence.as_millis() as u64),
        TreatMissing::Ignore | TreatMissing::Ok => threshold,
    }
}

/// How long `alarm` can take to go to ALARM after its metric breaches: period
/// x evaluation periods; for a composite, its slowest child.
fn alarm_delay_ms(alarm: &str, alarms: &HashMap<String, AlarmInfo>, depth: u32) -> Option<u64> {
    match &alarms.get(alarm)?.kind {
        AlarmKind::Metric {
            period,
            evaluation_periods,
            ..
        } => Some(
            period
                .zip(*evaluation_periods)
                .map(|(p, e)| p as u64 * e as u64 * 1000)?,
        ),
        AlarmKind::Composite { rule } if depth < 3 => {
            let children = rule_alarms(rule);
            if children.is_empty() {
                return None;
            }
            children
                .iter()
                .map(|c| alarm_delay_ms(c, alarms, depth + 1))
                .collect::<Option<Vec<u64>>>()?
                .into_iter()
                .max()
        }
        AlarmKind::Composite { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_ids_in_expressions_are_prefixed_per_probe() {
        assert_eq!(
            rename_ids("100 * m1 / (m1 + m2)", &["m1", "m2"], "p3e"),
            "100 * p3e_m1 / (p3e_m1 + p3e_m2)"
        );
        assert_eq!(
            rename_ids("FILL(m1, 0) + m10", &["m1"], "p0e"),
            "FILL(p0e_m1, 0) + m10"
        );
    }

    #[test]
    fn composite_rules_name_their_alarms() {
        assert_eq!(
            rule_alarms(r#"ALARM("web-5xx") OR (ALARM(latency) AND NOT OK('db'))"#),
            vec!["web-5xx", "latency", "db"]
        );
    }

    #[test]
    fn a_metric_deviates_only_after_n_datapoints_out_of_tolerance() {
        let t = Some(Tolerance::Lt(300.0));
        assert!(
            judge_metric(ProbeRole::SteadyState, t, &[400.0, 200.0], 2).0,
            "one bad datapoint of two needed"
        );
        assert!(!judge_metric(ProbeRole::SteadyState, t, &[400.0, 350.0], 2).0);
        let g = Some(Tolerance::Gt(50.0));
        assert!(
            !judge_metric(ProbeRole::Guardrail, g, &[60.0], 1).0,
            "a guardrail's threshold is the breach"
        );
        assert_eq!(value_text(263.7896609792007), "263.79");
        assert_eq!(value_text(300.0), "300");
        assert_eq!(value_text(0.0004), "0");
        assert_eq!(value_text(-0.0001), "0");
        assert_eq!(value_text(0.25), "0.25");
        assert!(judge_metric(ProbeRole::Guardrail, g, &[40.0], 1).0);
        assert!(
            judge_metric(ProbeRole::SteadyState, None, &[1e9], 1).0,
            "relative tolerance before the baseline"
        );
        assert!(judge_metric(ProbeRole::SteadyState, t, &[], 1).0, "no data yet");
    }

    /// A guardrail `App/Errors Average > 50` of period 1 s with `missing`.
    fn silent_watch(role: ProbeRole, treat: TreatMissing) -> Observer {
        let spec = MetricSpec::Stat(MetricQuery {
            namespace: "App".into(),
            name: "Errors".into(),
            dimensions: Vec::new(),
            stat: "Average".into(),
            period: 1,
        });
        Observer::new(vec![Watched {
            name: "errors".into(),
            role,
            during: During::Hold,
            check: Check::Metric {
                spec,
                control: None,
                expect: Expect::Fixed(match role {
                    ProbeRole::Guardrail => Tolerance::Gt(50.0),
                    _ => Tolerance::Lt(50.0),
                }),
                datapoints: 1,
                compare: None,
                missing: Missing { treat, after: None },
                silence: Duration::from_secs(3),
            },
        }])
    }

    /// A reading at `ms` (since the epoch) with `points` of the probe.
    fn reading_at(ms: i64, points: &[(i64, f64)]) -> Reading {
        Reading {
            at: Timestamp::from_millisecond(ms).expect("time"),
            metrics: HashMap::from([("p0e".to_string(), points.to_vec())]),
            alarms: HashMap::new(),
            groups: HashMap::new(),
            halt: None,
        }
    }

    /// A steady-state probe of the 5xx count with `dims` (and the control's target group), fixed `< 50`.
    fn errors_probe(name: &str, dims: &[(&str, &str)], control: Option<&str>) -> Watched {
        let query = |dims: Vec<(String, String)>| {
            MetricSpec::Stat(MetricQuery {
                namespace: "AWS/ApplicationELB".into(),
                name: "HTTPCode_Target_5XX_Count".into(),
                dimensions: dims,
                stat: "Sum".into(),
                period: 5,
            })
        };
        let dims: Vec<(String, String)> = dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let control = control.map(|tg| {
            query(
                dims.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            if k == "TargetGroup" {
                                tg.to_string()
                            } else {
                                v.clone()
                            },
                        )
                    })
                    .collect(),
            )
        });
        Watched {
            name: name.into(),
            role: ProbeRole::SteadyState,
            during: During::Recover,
            check: Check::Metric {
                spec: query(dims),
                control,
                expect: Expect::Fixed(Tolerance::Lt(50.0)),
                datapoints: 1,
                compare: None,
                missing: Missing {
                    treat: TreatMissing::Ignore,
                    after: None,
                },
                silence: Duration::from_secs(10),
            },
        }
    }

    #[test]
    fn withdrawn_traffic_leaves_the_copies_probes_out_of_recovery_but_not_capacity() {
        let run = Vars {
            asg: Some("gd-r-web".into()),
            control_asg: Some("gd-r-control-web".into()),
            experiment_target_group: Some("targetgroup/gd-r-e/1".into()),
            control_target_group: Some("targetgroup/gd-r-c/2".into()),
            load_balancer: Some("app/lb/3".into()),
            ..Vars::default()
        };
        let copies = errors_probe(
            "5xx against the control",
            &[
                ("TargetGroup", "targetgroup/gd-r-e/1"),
                ("LoadBalancer", "app/lb/3"),
            ],
            Some("targetgroup/gd-r-c/2"),
        );
        let real = errors_probe(
            "the real shop's 5xx",
            &[("TargetGroup", "targetgroup/web/4"), ("LoadBalancer", "app/lb/3")],
            None,
        );
        let capacity = Watched {
            name: "copy capacity".into(),
            role: ProbeRole::SteadyState,
            during: During::Recover,
            check: Check::Capacity {
                group: "gd-r-web".into(),
                bound: CapacityBound::AtLeast(2),
            },
        };
        let mut guard = errors_probe("guard", &[("TargetGroup", "targetgroup/gd-r-e/1")], None);
        guard.role = ProbeRole::Guardrail;
        let mut obs = Observer::new(vec![copies, real, capacity, guard]);
        let rolled_back = Timestamp::from_second(1_000).expect("time");
        obs.judge(
            &Reading {
                at: Timestamp::from_second(1_001).expect("time"),
                metrics: HashMap::new(),
                alarms: HashMap::new(),
                groups: HashMap::from([(
                    "gd-r-web".to_string(),
                    Capacity {
                        healthy: 1,
                        desired: 2,
                    },
                )]),
                halt: None,
            },
            Phase::Recovery,
        );
        assert_eq!(
            obs.not_recovered(rolled_back).len(),
            3,
            "all three wait before the withdrawal"
        );
        let events = obs.traffic_withdrawn(&run);
        assert!(
            matches!(
                &events[..],
                [Event::ProbeNotJudged { probe, reason }]
                    if probe == "5xx against the control"
                        && reason == "the copies' traffic was withdrawn at the abort"
            ),
            "only the steady-state probe of the copies is left out: {events:?}"
        );
        assert!(obs.traffic_withdrawn(&run).is_empty(), "journaled once");
        let left = obs.not_recovered(rolled_back);
        assert!(
            left.iter().any(|l| l.contains("copy capacity"))
                && left.iter().any(|l| l.contains("the real shop's 5xx"))
                && !left.iter().any(|l| l.contains("5xx against the control")),
            "capacity and the real target group are still judged: {left:?}"
        );
        assert!(obs.judges_recovery());

        let mut only_copies = Observer::new(vec![errors_probe(
            "latency",
            &[("TargetGroup", "targetgroup/gd-r-e/1")],
            None,
        )]);
        assert!(only_copies.judges_recovery());
        assert_eq!(only_copies.traffic_withdrawn(&run).len(), 1);
        assert!(
            !only_copies.judges_recovery() && only_copies.not_recovered(rolled_back).is_empty(),
            "nothing is left to wait for"
        );
    }

    fn silent_events(j: &Judged) -> Vec<&Event> {
        j.events
            .iter()
            .filter(|e| matches!(e, Event::ProbeSilent { .. } | Event::ProbeDataBack { .. }))
            .collect()
    }

    #[test]
    fn a_silent_guardrail_breaches_after_its_limit_and_clears_when_data_comes_back() {
        let mut obs = silent_watch(ProbeRole::Guardrail, TreatMissing::Breach);
        // The datapoint of second 1000 ends at 1001 s.
        let j = obs.judge(&reading_at(1_000_500, &[(1000, 1.0)]), Phase::Inject);
        assert!(j.results[0].ok && j.breaches.is_empty());
        let j = obs.judge(&reading_at(1_003_900, &[(1000, 1.0)]), Phase::Inject);
        assert!(
            j.results[0].ok,
            "2.9 s of silence is within 3 s: {}",
            j.results[0].detail
        );
        assert!(silent_events(&j).is_empty());
        let j = obs.judge(&reading_at(1_007_000, &[]), Phase::Inject);
        assert_eq!(j.breaches.len(), 1, "6 s of silence breaches");
        assert_eq!(
            j.breaches[0].detail,
            "no datapoint for 6s since the one for 1970-01-01T00:16:40Z (missing: breach after 3s)"
        );
        assert!(matches!(
            silent_events(&j)[..],
            [Event::ProbeSilent {
                silent_for_ms: 6000,
                last_datapoint: Some(_),
                ..
            }]
        ));
        let j = obs.judge(&reading_at(1_008_000, &[]), Phase::Inject);
        assert!(!j.results[0].ok && silent_events(&j).is_empty(), "journaled once");
        let j = obs.judge(&reading_at(1_009_200, &[(1008, 2.0)]), Phase::Inject);
        assert!(j.results[0].ok && j.breaches.is_empty(), "data back clears it");
        assert!(matches!(
            silent_events(&j)[..],
            [Event::ProbeDataBack { gap_ms: 8200, .. }]
        ));
    }

    #[test]
    fn a_guardrail_that_never_had_data_is_silent_since_observation_began() {
        let mut obs = silent_watch(ProbeRole::Guardrail, TreatMissing::Breach);
        assert!(obs.judge(&reading_at(1_000_000, &[]), Phase::Baseline).results[0].ok);
        let j = obs.judge(&reading_at(1_004_000, &[]), Phase::Baseline);
        assert_eq!(
            j.results[0].detail,
            "no datapoint for 4s since observation began (missing: breach after 3s)"
        );
        assert!(!j.results[0].ok);
    }

    #[test]
    fn ignore_and_ok_never_trip_on_silence() {
        for treat in [TreatMissing::Ignore, TreatMissing::Ok] {
            let mut obs = silent_watch(ProbeRole::Guardrail, treat);
            obs.judge(&reading_at(1_000_500, &[(1000, 1.0)]), Phase::Inject);
            let j = obs.judge(&reading_at(1_060_000, &[]), Phase::Inject);
            assert!(j.breaches.is_empty(), "{treat:?}: {}", j.results[0].detail);
            assert_eq!(
                silent_events(&j).len(),
                1,
                "the silence is journaled all the same"
            );
        }
        // A last datapoint over the threshold: `ignore` judges it for ever, `ok` lets silence win.
        let mut ignore = silent_watch(ProbeRole::Guardrail, TreatMissing::Ignore);
        ignore.judge(&reading_at(1_000_500, &[(1000, 1.0)]), Phase::Inject);
        assert!(
            !ignore
                .judge(&reading_at(1_001_500, &[(1001, 90.0)]), Phase::Inject)
                .results[0]
                .ok
        );
        assert!(!ignore.judge(&reading_at(1_060_000, &[]), Phase::Inject).results[0].ok);
        let mut ok = silent_watch(ProbeRole::Guardrail, TreatMissing::Ok);
        ok.judge(&reading_at(1_001_500, &[(1001, 90.0)]), Phase::Inject);
        let j = ok.judge(&reading_at(1_060_000, &[]), Phase::Inject);
        assert!(j.results[0].ok && j.results[0].detail.contains("missing: ok after 3s"));
    }

    #[test]
    fn a_silent_steady_state_deviates_only_while_faults_are_active() {
        let mut obs = silent_watch(ProbeRole::SteadyState, TreatMissing::Breach);
        obs.judge(&reading_at(1_000_500, &[(1000, 1.0)]), Phase::Baseline);
        assert!(
            obs.judge(&reading_at(1_010_000, &[]), Phase::Baseline).results[0].ok,
            "at baseline, today's rule: the baseline demands data of its own"
        );
        let j = obs.judge(&reading_at(1_011_000, &[]), Phase::Inject);
        assert!(!j.results[0].ok && j.breaches.is_empty());
        assert_eq!(obs.deviations_during_faults().len(), 1);
    }

    /// A guardrail on the experiment's 5xx against the control's, period 1 s.
    fn against_control(threshold: &str, datapoints: u32) -> Observer {
        let spec = MetricSpec::Stat(MetricQuery {
            namespace: "AWS/ApplicationELB".into(),
            name: "HTTPCode_Target_5XX_Count".into(),
            dimensions: vec![("TargetGroup".into(), "targetgroup/exp/1".into())],
            stat: "Sum".into(),
            period: 1,
        });
        let control = MetricSpec::Stat(MetricQuery {
            dimensions: vec![("TargetGroup".into(), "targetgroup/ctl/2".into())],
            ..spec.metrics()[0].clone()
        });
        Observer::new(vec![Watched {
            name: "5xx against the control".into(),
            role: ProbeRole::Guardrail,
            during: During::Hold,
            check: Check::Metric {
                spec,
                control: Some(control),
                expect: Expect::parse(threshold).expect("a tolerance"),
                datapoints,
                compare: None,
                missing: Missing::default(),
                silence: Duration::from_secs(3),
            },
        }])
    }

    /// A reading at `ms` with the experiment's and the control's points.
    fn paired_reading(ms: i64, e: &[(i64, f64)], c: &[(i64, f64)]) -> Reading {
        Reading {
            at: Timestamp::from_millisecond(ms).expect("time"),
            metrics: HashMap::from([("p0e".to_string(), e.to_vec()), ("p0c".to_string(), c.to_vec())]),
            alarms: HashMap::new(),
            groups: HashMap::new(),
            halt: None,
        }
    }

    #[test]
    fn a_guardrail_against_the_control_breaches_when_n_periods_in_a_row_exceed_it() {
        let mut obs = against_control("> control + 20", 2);
        // Sums are judged once their period is over: a reading at 1003.5 s sees 1000..1002.
        let j = obs.judge(
            &paired_reading(
                1_003_500,
                &[(1000, 5.0), (1001, 30.0), (1002, 10.0)],
                &[(1000, 3.0), (1001, 4.0), (1002, 5.0)],
            ),
            Phase::Inject,
        );
        assert!(
            j.breaches.is_empty(),
            "one period over is not two: {}",
            j.results[0].detail
        );
        assert_eq!(
            j.results[0].detail,
            "10 against the control's 5 (threshold > control + 20)"
        );
        // The control errs too: 40 against 30 is within its margin.
        let j = obs.judge(
            &paired_reading(1_004_500, &[(1003, 40.0)], &[(1003, 30.0)]),
            Phase::Inject,
        );
        assert!(j.breaches.is_empty(), "{}", j.results[0].detail);
        let j = obs.judge(
            &paired_reading(1_005_500, &[(1004, 60.0)], &[(1004, 30.0)]),
            Phase::Inject,
        );
        assert!(j.breaches.is_empty(), "{}", j.results[0].detail);
        let j = obs.judge(
            &paired_reading(1_006_500, &[(1005, 61.0)], &[(1005, 4.0)]),
            Phase::Inject,
        );
        assert_eq!(j.breaches.len(), 1);
        assert_eq!(
            j.breaches[0].detail,
            "61 against the control's 4 breaches the threshold > control + 20 (> 24); 2 datapoints in a row count"
        );
    }

    #[test]
    fn only_periods_both_series_have_are_compared() {
        let mut obs = against_control("> control * 2", 1);
        let j = obs.judge(
            &paired_reading(1_002_500, &[(1001, 90.0)], &[(1000, 3.0)]),
            Phase::Inject,
        );
        assert!(j.breaches.is_empty());
        assert_eq!(
            j.results[0].detail,
            "no datapoints of the experiment and the control for the same period yet"
        );
        let j = obs.judge(&paired_reading(1_003_000, &[], &[(1001, 50.0)]), Phase::Inject);
        assert!(
            j.breaches.is_empty(),
            "90 is not above twice 50: {}",
            j.results[0].detail
        );
    }

    #[test]
    fn a_silent_control_is_a_silent_probe() {
        let mut obs = against_control("> control + 20", 1);
        obs.judge(
            &paired_reading(1_000_500, &[(999, 1.0)], &[(999, 1.0)]),
            Phase::Inject,
        );
        // The experiment keeps publishing; the control stops.
        let mut points = Vec::new();
        let mut last = None;
        for t in 1000..1006 {
            points.push((t, 1.0));
            last = Some(obs.judge(&paired_reading((t + 1) * 1000 + 500, &points, &[]), Phase::Inject));
        }
        let j = last.expect("judged");
        assert_eq!(j.breaches.len(), 1, "{}", j.results[0].detail);
        assert!(
            j.results[0]
                .detail
                .starts_with("no datapoint for 6.5s since the one for 1970-01-01T00:16:39Z"),
            "{}",
            j.results[0].detail
        );
        assert!(
            obs.judge(
                &paired_reading(1_007_500, &[(1006, 1.0)], &[(1006, 1.0)]),
                Phase::Inject
            )
            .breaches
            .is_empty()
        );
    }

    #[test]
    fn a_steady_state_against_the_control_recovers_on_a_fresh_pair() {
        let mut obs = against_control("> control + 20", 1);
        obs.watched[0].role = ProbeRole::SteadyState;
        obs.states[0].tolerance = None;
        // As a steady state, `expect` is what must hold: here "exceed the control by 20".
        obs.judge(
            &paired_reading(1_001_500, &[(1000, 1.0)], &[(1000, 1.0)]),
            Phase::Recovery,
        );
        let since = Timestamp::from_second(1000).expect("time");
        assert_eq!(
            obs.not_recovered(since),
            vec!["`5xx against the control`: 1 against the control's 1 (expected > control + 20)"]
        );
        obs.judge(&paired_reading(1_002_500, &[(1001, 30.0)], &[]), Phase::Recovery);
        assert_eq!(
            obs.not_recovered(since).len(),
            1,
            "no control datapoint for 1001 yet"
        );
        obs.judge(&paired_reading(1_003_500, &[], &[(1001, 2.0)]), Phase::Recovery);
        assert!(obs.not_recovered(since).is_empty());
    }

    #[test]
    fn the_control_copy_is_the_control_when_there_is_one() {
        let spec = MetricSpec::Stat(MetricQuery {
            namespace: "AWS/ApplicationELB".into(),
            name: "TargetResponseTime".into(),
            dimensions: vec![
                ("TargetGroup".into(), "${experiment_target_group}".into()),
                ("LoadBalancer".into(), "${load_balancer}".into()),
            ],
            stat: "Average".into(),
            period: 5,
        });
        let probe = Probe {
            name: "latency".into(),
            kind: ProbeKind::Metric {
                query: spec,
                tolerance: Expect::parse("<= control * 1.5").expect("tolerance"),
                datapoints: 1,
                compare: None,
                missing: Missing::default(),
            },
            during: During::Hold,
            loc: crate::yaml::Loc { line: 1, column: 1 },
        };
        let source = Vars {
            asg: Some("web".into()),
            run_id: "r".into(),
            ..Vars::default()
        };
        let run = Vars {
            asg: Some("gd-r-web".into()),
            control_asg: Some("gd-r-web-control".into()),
            experiment_target_group: Some("targetgroup/gd-r-e/1".into()),
            control_target_group: Some("targetgroup/gd-r-c/2".into()),
            source_target_group: Some("targetgroup/web/3".into()),
            load_balancer: Some("app/shop/4".into()),
            ..source.clone()
        };
        let w = watched(
            &probe,
            ProbeRole::Guardrail,
            &run,
            &source,
            true,
            Duration::from_secs(1),
        );
        let Check::Metric {
            spec,
            control: Some(control),
            ..
        } = &w.check
        else {
            panic!("a metric with a control")
        };
        let dims = |s: &MetricSpec| s.metrics()[0].dimensions.clone();
        assert_eq!(
            dims(spec),
            vec![
                ("TargetGroup".to_string(), "targetgroup/gd-r-e/1".to_string()),
                ("LoadBalancer".to_string(), "app/shop/4".to_string())
            ]
        );
        assert_eq!(
            dims(control),
            vec![
                ("TargetGroup".to_string(), "targetgroup/gd-r-c/2".to_string()),
                ("LoadBalancer".to_string(), "app/shop/4".to_string())
            ],
            "the same load balancer, the control copy's target group"
        );
        // Without a control copy, `${asg}` of the control is the source group.
        assert_eq!(control_vars(&source, &source).asg.as_deref(), Some("web"));
        assert_eq!(
            control_vars(&run, &source).asg.as_deref(),
            Some("gd-r-web-control")
        );
    }

    #[test]
    fn the_worst_case_time_to_abort_counts_the_silence() {
        let breach = Missing::default();
        let s3 = Duration::from_secs(3);
        assert_eq!(
            metric_delay_ms(1, 1, breach, s3),
            4_000,
            "a period, then the limit"
        );
        assert_eq!(metric_delay_ms(60, 5, breach, Duration::from_secs(180)), 300_000);
        let ok = Missing {
            treat: TreatMissing::Ok,
            after: None,
        };
        assert_eq!(metric_delay_ms(1, 2, ok, s3), 2_000);
        assert_eq!(
            crate::experiment::default_silence(1, Duration::from_millis(500)),
            s3,
            "three periods"
        );
        assert_eq!(
            crate::experiment::default_silence(1, Duration::from_secs(5)),
            Duration::from_secs(15),
            "or three intervals, whichever is longer"
        );
    }

    #[test]
    fn the_control_comparison_needs_a_significant_drift_beyond_the_limit() {
        let cmp = Compare {
            max_increase: Some(20.0),
            max_decrease: None,
            significance: 0.05,
        };
        let control = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2];
        let hurt = [150.0, 160.0, 155.0, 158.0, 149.0, 152.0];
        let Event::Comparison {
            ok,
            p_value,
            change_percent,
            ..
        } = compare_samples("p", &hurt, &control, Some(&cmp))
        else {
            unreachable!()
        };
        assert!(!ok && p_value.unwrap() < 0.05 && change_percent.unwrap() > 40.0);
        let fine = [101.0, 100.0, 102.0, 99.0, 100.0, 101.5];
        let Event::Comparison { ok, .. } = compare_samples("p", &fine, &control, Some(&cmp)) else {
            unreachable!()
        };
        assert!(ok);
        let Event::Comparison { ok, .. } = compare_samples("p", &hurt[..2], &control, Some(&cmp)) else {
            unreachable!()
        };
        assert!(!ok, "too few datapoints cannot confirm the hypothesis");
        let Event::Comparison { ok, judged, .. } = compare_samples("p", &hurt, &control, None) else {
            unreachable!()
        };
        assert!(ok && !judged, "recorded, not judged, without `compare`");
    }
}
