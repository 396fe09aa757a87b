//! The experiment model: what a team wrote in a YAML file under `experiments/`,
//! decoded and checked. Parsing and validation live in [`parse`]; this file
//! holds the types the rest of the runner works with.
//!
//! The keys follow the draft schema in DESIGN.md; they are the public interface
//! and are documented in the README ("Experiment format").

mod parse;
pub mod tolerance;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use parse::document as schema;
pub use parse::{LoadError, load, load_str};
pub use tolerance::{Expect, Tolerance};

use crate::faults::Fault;
use crate::model::{Mode, Share};
use crate::yaml::{Loc, Spanned};

/// The only format version this runner reads.
pub const FORMAT_VERSION: u64 = 1;

/// A decoded, validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file it came from, as the user named it.
    pub file: PathBuf,
    /// The file's exact text, kept so the journal records the experiment as run.
    pub source: String,
    /// Short, tag-safe name; it appears in resource tags and the journal.
    pub name: String,
    /// What the experiment does, in a sentence.
    pub description: Option<String>,
    /// Who owns the response to this experiment (a team).
    pub owner: Option<String>,
    /// The claim the run tests.
    pub hypothesis: String,
    /// Where the faults go.
    pub environment: Environment,
    /// Conditions that must hold before, during and after the faults.
    pub steady_state: Vec<Probe>,
    /// Conditions whose breach aborts the run at once.
    pub guardrails: Vec<Probe>,
    /// The faults, in file order.
    pub faults: Vec<FaultSpec>,
    /// Phase lengths and the watch interval.
    pub timing: Timing,
    /// When `gameday run-due` runs it (`schedule:`); `None`: only by hand.
    pub schedule: Option<crate::schedule::Schedule>,
    /// `aws:`: the role to assume and the region to act in; empty: the
    /// standard chain and the command line.
    pub aws: crate::model::AwsTarget,
}

/// The `environment` section.
#[derive(Debug, Clone)]
pub struct Environment {
    /// parallel (default) or in-place.
    pub mode: Mode,
    /// The workload's Auto Scaling group: the source of the clone in parallel
    /// mode, the default target set in both modes.
    pub autoscaling_group: Option<String>,
    /// Capacity of the clone; default: the source's desired capacity.
    pub capacity: Option<u32>,
    /// How long the clone may take to become healthy.
    pub ready_timeout: Duration,
    /// How the parallel copies see requests; `None`: they see none.
    pub traffic: Option<Traffic>,
}

/// `environment.traffic`: what reaches the parallel copies. Either form
/// makes two copies of equal capacity, the *experiment* copy (faults go
/// there) and the *control* copy (never injected), so that the experiment is
/// judged against a control of the same size, seeing the same load.
#[derive(Debug, Clone)]
pub enum Traffic {
    /// `share: 2%`: each copy gets this share of the requests that every
    /// listener rule forwarding to the source's target group sends there.
    Share(Spanned<Share>),
    /// `load: { command: [...] }`: the team's load generator drives the copies.
    Load(Load),
}

impl Traffic {
    /// The share of real traffic each copy gets, for the `share` form.
    pub fn share(&self) -> Option<&Spanned<Share>> {
        match self {
            Traffic::Share(s) => Some(s),
            Traffic::Load(_) => None,
        }
    }
}

/// `traffic.load`: a load generator started once the copies are healthy and
/// stopped at teardown.
#[derive(Debug, Clone)]
pub struct Load {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// The port the copies serve on; default: the source target group's, else 80.
    pub port: Option<u16>,
    /// Where `load` is written.
    pub loc: Loc,
}

/// The `timing` section.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long the steady state must hold before anything is injected.
    pub baseline: Duration,
    /// How long the steady state may take to return after rollback.
    pub recovery: Duration,
    /// How often guardrails and the steady state are checked.
    pub interval: Duration,
    /// The whole run may not take longer; reaching it aborts and rolls back.
    pub max_duration: Duration,
    /// The run is refused when a guardrail's worst-case time from a real
    /// breach to the abort is longer than this.
    pub max_abort_delay: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            baseline: Duration::from_secs(60),
            recovery: Duration::from_secs(300),
            interval: Duration::from_secs(5),
            max_duration: Duration::from_secs(30 * 60),
            max_abort_delay: None,
        }
    }
}

/// A steady-state condition or a guardrail.
#[derive(Debug, Clone)]
pub struct Probe {
    /// A label for output; defaults to a description of the check.
    pub name: String,
    /// What is checked.
    pub kind: ProbeKind,
    /// Steady state only: whether it must hold while faults are active too.
    pub during: During,
    /// Where the entry starts, for messages.
    pub loc: Loc,
}

/// What a steady-state probe promises while faults are active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum During {
    /// It holds throughout: a deviation while faults are active fails the run.
    #[default]
    Hold,
    /// It may deviate while faults are active; it must hold again within
    /// `timing.recovery` after rollback.
    Recover,
}

/// How INSUFFICIENT_DATA of a guardrail alarm is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InsufficientData {
    /// Refused at preflight (an alarm without data cannot fire); not a breach during the run.
    #[default]
    Ok,
    /// Accepted at preflight; not a breach during the run.
    Allow,
    /// Refused at preflight, and a breach during the run.
    Breach,
}

/// What a metric probe makes of silence, in the spirit of CloudWatch's
/// `TreatMissingData`: a dying service often stops emitting metrics before
/// anything else, so a guardrail judged on its last datapoint for ever would
/// be blind exactly when it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missing {
    /// What silence longer than the limit counts as.
    pub treat: TreatMissing,
    /// `missing_after`: the limit as written; `None`: [`default_silence`].
    pub after: Option<Duration>,
}

impl Missing {
    /// How long a probe of `period` seconds, read every `interval`, may go
    /// without a new datapoint before its rule applies.
    pub fn limit(&self, period: u32, interval: Duration) -> Duration {
        self.after.unwrap_or_else(|| default_silence(period, interval))
    }
}

/// The default silence limit: three periods or three intervals, whichever is
/// longer. A healthy metric's newest complete datapoint is at most one period
/// old plus CloudWatch's publication delay (seconds for high-resolution
/// metrics, about a minute for standard ones), so three periods leave room
/// for a late datapoint, and three intervals for a slow or failed read.
pub fn default_silence(period: u32, interval: Duration) -> Duration {
    Duration::from_secs(3 * period as u64).max(3 * interval)
}

/// `missing:` the values of a metric probe's missing-data rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TreatMissing {
    /// Silence past the limit is a breach (guardrail) or a deviation (steady
    /// state, while faults are active). The default.
    #[default]
    Breach,
    /// Silence changes nothing: the last datapoint is judged (for sparse metrics).
    Ignore,
    /// Silence past the limit counts as fine (for sparse metrics, such as
    /// errors published only when they happen).
    Ok,
}

impl TreatMissing {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            TreatMissing::Breach => "breach",
            TreatMissing::Ignore => "ignore",
            TreatMissing::Ok => "ok",
        }
    }
}

/// `compare`: how far the experiment may drift from the control (parallel mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compare {
    /// The experiment's mean may exceed the control's by at most this percent.
    pub max_increase: Option<f64>,
    /// The experiment's mean may fall below the control's by at most this percent.
    pub max_decrease: Option<f64>,
    /// A drift counts only when the Mann-Whitney U test's p-value is below this.
    pub significance: f64,
}

/// The kinds of check a probe can make.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// A CloudWatch metric compared with a tolerance. In `steady_state` the
    /// tolerance is what must hold (`expect`); in `guardrails` it is the breach
    /// condition (`threshold`).
    Metric {
        /// Which metric and statistic, or a metric math expression.
        query: MetricSpec,
        /// The comparison (possibly relative to the baseline).
        tolerance: Expect,
        /// How many consecutive datapoints must be out of tolerance to count.
        datapoints: u32,
        /// Steady state in parallel mode: judge against the control too.
        compare: Option<Compare>,
        /// What silence (no new datapoint for a while) means.
        missing: Missing,
    },
    /// A CloudWatch alarm (metric or composite): a breach while it is in ALARM.
    Alarm {
        /// The alarm's name (may contain variables such as `${asg}`).
        alarm: String,
        /// How INSUFFICIENT_DATA is treated.
        insufficient_data: InsufficientData,
    },
    /// Detection: the alarm must go to ALARM within `within` of the first
    /// injection and back to OK within `clears_within` of the end of rollback.
    AlarmFires {
        /// The alarm's name.
        alarm: String,
        /// Time allowed from the first injection to ALARM.
        within: Duration,
        /// Time allowed from the end of rollback to OK.
        clears_within: Duration,
    },
    /// Auto Scaling healthy capacity: InService and Healthy instances.
    AsgHealthy {
        /// The group; defaults to `${asg}`.
        group: String,
        /// The bound.
        bound: CapacityBound,
    },
}

/// A bound on healthy capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CapacityBound {
    /// At least this many healthy instances.
    AtLeast(u32),
    /// At least this percent of the desired capacity.
    Percent(u32),
}

impl CapacityBound {
    /// Whether `healthy` instances out of `desired` satisfy the bound.
    pub fn holds(self, healthy: usize, desired: usize) -> bool {
        match self {
            CapacityBound::AtLeast(n) => healthy >= n as usize,
            CapacityBound::Percent(p) => healthy * 100 >= desired * p as usize,
        }
    }
}

impl std::fmt::Display for CapacityBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapacityBound::AtLeast(n) => write!(f, ">= {n}"),
            CapacityBound::Percent(p) => write!(f, ">= {p}% of desired"),
        }
    }
}

/// A metric probe's data: one metric, or a metric math expression over several.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSpec {
    /// One metric with a statistic.
    Stat(MetricQuery),
    /// `expression` over `metrics` (each named by its id, e.g. `m1`).
    Math {
        /// CloudWatch metric math, e.g. `100 * errors / requests`.
        expression: String,
        /// The metrics the expression names.
        metrics: Vec<(String, MetricQuery)>,
        /// The result's period in seconds.
        period: u32,
    },
}

impl MetricSpec {
    /// The period of the datapoints the probe judges.
    pub fn period(&self) -> u32 {
        match self {
            MetricSpec::Stat(q) => q.period,
            MetricSpec::Math { period, .. } => *period,
        }
    }

    /// Every metric queried.
    pub fn metrics(&self) -> Vec<&MetricQuery> {
        match self {
            MetricSpec::Stat(q) => vec![q],
            MetricSpec::Math { metrics, .. } => metrics.iter().map(|(_, q)| q).collect(),
        }
    }

    /// Whether a dimension uses `${asg}` (so a control exists in parallel mode).
    pub fn uses_asg(&self) -> bool {
        self.metrics()
            .iter()
            .any(|q| q.dimensions.iter().any(|(_, v)| v.contains("${asg}")))
    }

    /// Whether a dimension names the experiment (`${asg}`, or the
    /// experiment copy's target group), so a control exists in parallel mode:
    /// the same query with the control's names.
    pub fn uses_experiment(&self) -> bool {
        self.metrics().iter().any(|q| {
            q.dimensions
                .iter()
                .any(|(_, v)| v.contains("${asg}") || v.contains("${experiment_target_group}"))
        })
    }

    /// In words, e.g. `App/Latency p99 (60s)`.
    pub fn describe(&self) -> String {
        match self {
            MetricSpec::Stat(q) => format!("{}/{} {} ({}s)", q.namespace, q.name, q.stat, q.period),
            MetricSpec::Math {
                expression, period, ..
            } => format!("{expression} ({period}s)"),
        }
    }

    /// Whether the statistic accumulates over its period (Sum, SampleCount),
    /// so the period still in progress would understate it.
    pub fn cumulative(&self) -> bool {
        self.metrics()
            .iter()
            .any(|q| matches!(q.stat.as_str(), "Sum" | "SampleCount"))
    }
}

/// One CloudWatch metric with a statistic over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// e.g. `AWS/EC2` or `App`.
    pub namespace: String,
    /// e.g. `Latency`.
    pub name: String,
    /// Dimension name/value pairs; values may use variables.
    pub dimensions: Vec<(String, String)>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` or a percentile `p99`, `p99.9`.
    pub stat: String,
    /// The aggregation period in seconds.
    pub period: u32,
}

/// One fault in the `faults` list.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    /// Unique within the experiment; used by `start_after`.
    pub name: Spanned<String>,
    /// The action name, e.g. `ec2:stop-instances`.
    pub action: Spanned<String>,
    /// The action with its parameters, ready to plan and inject.
    pub fault: Fault,
    /// Which resources it hits.
    pub target: TargetSpec,
    /// How long it is held before its rollback; `None`: until the fault phase ends.
    pub duration: Option<Duration>,
    /// Faults that must be injected before this one starts.
    pub start_after: Vec<Spanned<String>>,
    /// Where the entry starts.
    pub loc: Loc,
}

/// How a fault chooses its targets. Criteria combine: an instance must match all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSpec {
    /// Tag key/value pairs the instance must carry.
    pub tags: Vec<(String, String)>,
    /// EC2 DescribeInstances filters: name -> accepted values.
    pub filters: Vec<(String, Vec<String>)>,
    /// Explicit instance ids.
    pub ids: Vec<String>,
    /// Only instances in this Availability Zone.
    pub az: Option<String>,
    /// Only instances of this Auto Scaling group (variables allowed).
    pub autoscaling_group: Option<String>,
    /// How many of the matching instances to hit.
    pub select: Selection,
    /// Whether an empty target set is acceptable (else the run is refused).
    pub allow_empty: bool,
}

impl TargetSpec {
    /// True when no criterion narrows the set, so the environment's group is used.
    pub fn uses_environment(&self) -> bool {
        self.tags.is_empty()
            && self.filters.is_empty()
            && self.ids.is_empty()
            && self.autoscaling_group.is_none()
    }
}

/// How many of the matching targets a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every matching target.
    #[default]
    All,
    /// Exactly this many (or all, if fewer match), chosen at random with the run's seed.
    Count(u32),
    /// This percent of the matching targets, rounded up, chosen at random.
    Percent(u32),
}

impl Selection {
    /// How many of `n` matching targets are selected.
    pub fn how_many(self, n: usize) -> usize {
        match self {
            Selection::All => n,
            Selection::Count(c) => (c as usize).min(n),
            Selection::Percent(p) => (n * p as usize).div_ceil(100).min(n),
        }
    }
}
