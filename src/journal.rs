//! The run journal: a write-ahead log of everything a run does.
//!
//! `runs/<run-id>/events.jsonl` is append-only, one JSON event per line, each
//! flushed to disk (fsync) before the runner takes its next step. Before every
//! mutating AWS call an `intent` is written (what, on which resources, and how
//! to undo it), after it an `outcome`. A crash therefore never leaves an
//! unknown state: `gameday recover` can read the file and finish the job.
//! `journal.json` is derived from the events at the end of the run, by the
//! output layer (`output::summary`); this module is the schema and the log only,
//! and where a run's folder is: [`run_dir`] and [`run_path`] keep a run id or
//! path from the command line (or from a tag in AWS) inside the runs folder.
//!
//! With a shared runs store in S3 ([`Remote`]), every event is also sent
//! there, in chunks: an intent (and the first event, and a verdict) is sent
//! at once, with the events since the last chunk, as one object
//! `<run-id>/events/<seq>.jsonl` (`seq` of its last event, zero-padded), put
//! only if absent, before [`Journal::append`] returns; so the write-ahead
//! record of a call is durable in S3 before the call is made, and a second
//! writer of the same run (a clashing run id, two recovers at once) is refused.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::aws::AwsError;
use crate::aws::s3::{PutError, S3Store};
use crate::faults::Undo;
use crate::model::{Mode, Resolved, RuleResult, UndoReport};

/// Version of the events file and of `journal.json`. Version 2 added the
/// derived fields of `journal.json` (the experiment's text, environment,
/// probes, series, abort, time-to-recover and time-to-detect, scaling
/// activities); the events are unchanged, so version 1 journals are read by
/// re-deriving a version 2 summary from their events (`output::summary`).
pub const JOURNAL_VERSION: u32 = 2;
/// File name of the write-ahead events log inside a run folder.
pub const EVENTS_FILE: &str = "events.jsonl";

/// One line of the events file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the file, from 1.
    pub seq: u64,
    /// When the event was recorded.
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// The run's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking that guardrails can fire and resolving targets.
    Preflight,
    /// Proving the steady state before anything is injected.
    Baseline,
    /// Faults are being injected and held; guardrails are watched.
    Inject,
    /// Faults are being rolled back.
    Rollback,
    /// After rollback: waiting for the steady state to return.
    Recovery,
    /// Setup is being undone: the parallel environment deleted, locks released.
    Teardown,
    /// The run is over.
    Done,
}

/// Whether an action injects or rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Preparing the run: creating the parallel environment, locking targets.
    /// Undone after every fault, in reverse order.
    Setup,
    /// A fault's mutating call.
    Inject,
    /// The undo of an inject.
    Rollback,
}

/// How a run ended, each with its own exit code (see `cli::exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The hypothesis held and everything was rolled back.
    Passed,
    /// The steady state deviated or did not recover.
    Failed,
    /// A guardrail tripped (or max_duration was reached); everything was rolled back.
    Aborted,
    /// Nothing was injected: a precondition did not hold.
    NotRun,
    /// The runner could not do its job (an API error); see the reason for what is left.
    Error,
    /// An operator stopped the run (SIGINT/SIGTERM); everything was rolled back.
    Interrupted,
}

impl Verdict {
    /// The spelling used in output and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Aborted => "aborted",
            Verdict::NotRun => "not-run",
            Verdict::Error => "error",
            Verdict::Interrupted => "interrupted",
        }
    }
}

/// Everything a run records. The variants are the run's event stream: the
/// journal stores them and the progress display shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first event of every run.
    RunStarted {
        /// The run's id.
        run_id: String,
        /// The runner's version.
        gameday_version: String,
        /// The journal format version.
        journal_version: u32,
        /// The experiment's name.
        experiment: String,
        /// The experiment file as given.
        file: PathBuf,
        /// SHA-256 of the file's text.
        file_sha256: String,
        /// The file's exact text: the experiment as run.
        source: String,
        /// The hypothesis under test.
        hypothesis: String,
        /// parallel or in-place.
        mode: Mode,
        /// The seed of every random choice; `--seed` replays it.
        seed: u64,
        /// AWS region.
        region: String,
        /// Endpoint override, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// The safety policy file in force; absent: the built-in default.
        /// (Journals written before the policy existed have neither field.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_file: Option<PathBuf>,
        /// SHA-256 of the policy's text.
        #[serde(default)]
        policy_sha256: String,
        /// The runner's process id, so `gameday recover` can tell a live run
        /// from a dead one.
        #[serde(default)]
        pid: u32,
        /// The machine the runner ran on (the pid only means something there).
        #[serde(default)]
        host: String,
        /// When the run's resources may be cleaned up by `gameday cleanup`
        /// even if its journal is lost (start + max_duration + margin).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<Timestamp>,
    },
    /// The parallel environment is ready (or the run uses the real resources).
    Environment {
        /// parallel or in-place.
        mode: Mode,
        /// The group faults act on: the clone in parallel mode.
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The source group of the clone (parallel mode).
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// The clone's instances once ready.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        instances: Vec<String>,
        /// The control copy, when the run has one (`environment.traffic`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        control: Option<String>,
        /// The control copy's instances once ready.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        control_instances: Vec<String>,
    },
    /// `gameday recover` took over a run whose runner stopped without finishing.
    Recovery {
        /// The undos it found still to do.
        pending: usize,
    },
    /// A new phase began.
    Phase {
        /// Which.
        phase: Phase,
    },
    /// A fault's targets were resolved.
    TargetsResolved {
        /// The fault's name.
        fault: String,
        /// Its action.
        action: String,
        /// What resolution found and chose.
        #[serde(flatten)]
        resolved: Resolved,
    },
    /// About to make a mutating call (written before the call).
    Intent {
        /// Unique within the run; outcomes refer to it.
        action_id: u64,
        /// The fault this call belongs to.
        fault: String,
        /// Inject or rollback.
        kind: ActionKind,
        /// `service:Operation`, e.g. `ec2:StopInstances`.
        operation: String,
        /// The resources the call acts on.
        resources: Vec<String>,
        /// For an inject: how to undo it (what `gameday recover` will do).
        #[serde(skip_serializing_if = "Option::is_none")]
        undo: Option<Undo>,
        /// For a rollback: the inject it undoes.
        #[serde(skip_serializing_if = "Option::is_none")]
        rollback_of: Option<u64>,
    },
    /// A mutating call finished (written after the call).
    Outcome {
        /// The intent this answers.
        action_id: u64,
        /// Whether it succeeded.
        ok: bool,
        /// The API error, when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<AwsError>,
        /// For rollbacks: what was found restored or gone.
        #[serde(skip_serializing_if = "Option::is_none")]
        report: Option<UndoReport>,
    },
    /// A fault is in effect.
    FaultActive {
        /// The fault.
        fault: String,
        /// When it is due to be rolled back, if it has a duration.
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// A fault was fully rolled back.
    FaultRolledBack {
        /// The fault.
        fault: String,
    },
    /// A guardrail check found a breach.
    GuardrailBreached {
        /// The guardrail's name.
        guardrail: String,
        /// What was seen, e.g. the alarm's state reason.
        detail: String,
        /// When the breach was first seen in the API's answer.
        seen_at: Timestamp,
    },
    /// The kill switch is on (`gameday halt`): the run aborts, or, before
    /// injection, refuses.
    Halted {
        /// The operator's `--reason`.
        reason: String,
        /// Who halted (`user@host`).
        by: String,
        /// When the halt was put (`at` is the entry's own time).
        halted_at: Timestamp,
        /// The SSM parameter it was read from.
        parameter: String,
        /// When the run saw it.
        seen_at: Timestamp,
    },
    /// The run's AWS identity, when the experiment (or its suite entry)
    /// names a role to assume: `recover` assumes the same role again.
    Connected {
        /// The account of the assumed identity (sts:GetCallerIdentity).
        account: String,
        /// The region the run acts in.
        region: String,
        /// The role assumed.
        role_arn: String,
        /// The external id given to AssumeRole, if any (AWS does not treat
        /// it as a secret; `recover` needs it to assume the role again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
        /// The role session name, `gameday-<run id>`: CloudTrail's
        /// `userIdentity` of every call the run makes.
        session: String,
        /// The assumed identity's ARN.
        arn: String,
    },
    /// The run stopped injecting and began rolling back early.
    Abort {
        /// Why, in words.
        reason: String,
        /// When the cause was seen (a breach's `seen_at`, a signal's arrival).
        seen_at: Timestamp,
    },
    /// Written just before the run's first rollback call; the entry's `at` is
    /// when rollback began (compare with an abort's `seen_at` for abort latency).
    RollbackStarted {
        /// What started it: a fault's duration ending, or an abort.
        trigger: String,
    },
    /// Guardrail preflight: every guardrail checked for whether it can fire,
    /// with the worst-case time from a real breach to the abort.
    GuardrailPreflight {
        /// One entry per guardrail.
        guardrails: Vec<GuardrailCheck>,
        /// The slowest guardrail's worst case (ms), when every one is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worst_case_abort_ms: Option<u64>,
        /// `timing.max_abort_delay` (ms), when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_abort_delay_ms: Option<u64>,
    },
    /// The probes of the experiment as they will be checked (variables
    /// expanded): what reports draw and label.
    Probes {
        /// Every steady-state, detection and guardrail probe.
        probes: Vec<ProbeInfo>,
    },
    /// One observation tick: every probe's result, read together.
    Checked {
        /// The phase the check belongs to.
        phase: Phase,
        /// One result per probe.
        results: Vec<ProbeResult>,
    },
    /// A probe went out of tolerance (written on the change, not every tick).
    Deviation {
        /// The probe.
        probe: String,
        /// steady_state or guardrail.
        role: ProbeRole,
        /// When it happened.
        phase: Phase,
        /// What was seen.
        detail: String,
    },
    /// A metric probe had no new datapoint for longer than its missing-data
    /// rule's limit (written once, when the silence crosses the limit; what
    /// it means, a breach, a deviation or nothing, is in the `checked` results).
    ProbeSilent {
        /// The probe.
        probe: String,
        /// steady_state or guardrail.
        role: ProbeRole,
        /// The start of the newest datapoint's period; absent when the probe
        /// never had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_datapoint: Option<Timestamp>,
        /// How long (ms) there has been no new datapoint: since the end of the
        /// newest datapoint's period, or since observation began.
        silent_for_ms: u64,
        /// The rule in words, e.g. `breach after 3s`.
        rule: String,
    },
    /// Datapoints of a silent probe came back (written once, after a `probe_silent`).
    ProbeDataBack {
        /// The probe.
        probe: String,
        /// How long (ms) it had no new datapoint when data came back.
        gap_ms: u64,
    },
    /// A steady-state probe left out of recovery: what it measures was taken
    /// away (the copies' share of the load balancer's traffic, withdrawn at
    /// an abort), so its silence would prove nothing. Recovery does not wait
    /// for it, and it counts neither as recovered nor as not recovered.
    ProbeNotJudged {
        /// The probe.
        probe: String,
        /// Why, in words.
        reason: String,
    },
    /// A relative tolerance was fixed from the baseline measured in this run.
    BaselineMeasured {
        /// The probe.
        probe: String,
        /// The baseline value (mean of the baseline datapoints).
        value: f64,
        /// The tolerance as written, e.g. `< baseline * 1.2`.
        written: String,
        /// The tolerance it became, e.g. `< 240`.
        resolved: String,
    },
    /// An observed alarm changed state between two ticks.
    AlarmChanged {
        /// The alarm.
        alarm: String,
        /// The previous state (absent on the first sighting).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The new state.
        to: String,
        /// The alarm's reason.
        #[serde(default)]
        reason: String,
    },
    /// Control versus experiment over the fault window, for one metric probe.
    Comparison {
        /// The probe.
        probe: String,
        /// Datapoints of the experiment (the copy) in the fault window.
        n_experiment: usize,
        /// Datapoints of the control (the source group) in the fault window.
        n_control: usize,
        /// Mean of the experiment's datapoints.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment_mean: Option<f64>,
        /// Mean of the control's datapoints.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        control_mean: Option<f64>,
        /// (experiment - control) / control, in percent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change_percent: Option<f64>,
        /// Two-sided Mann-Whitney U test p-value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p_value: Option<f64>,
        /// Whether the experiment stayed within `compare` (true when not judged).
        ok: bool,
        /// Whether `compare` was set, so this comparison decides the verdict.
        judged: bool,
        /// In words.
        detail: String,
    },
    /// A detection probe's outcome (`alarm_fires`).
    Detection {
        /// The probe.
        probe: String,
        /// The alarm that had to fire.
        alarm: String,
        /// First injection to the alarm seen in ALARM (ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_to_detect_ms: Option<u64>,
        /// End of rollback to the alarm seen OK again (ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_to_clear_ms: Option<u64>,
        /// Whether it fired and cleared within its windows.
        ok: bool,
        /// In words.
        detail: String,
    },
    /// The recovery phase's outcome.
    RecoveryResult {
        /// Whether the steady state returned within `timing.recovery`.
        recovered: bool,
        /// End of rollback to the steady state holding again (ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_to_recover_ms: Option<u64>,
        /// In words.
        detail: String,
    },
    /// A metric probe's datapoints over the run, as CloudWatch returned them.
    Series {
        /// The probe.
        probe: String,
        /// `experiment` (the group faults went into) or `control` (the source group).
        of: SeriesOf,
        /// The metric's dimensions as queried.
        #[serde(default)]
        dimensions: Vec<(String, String)>,
        /// Datapoints, oldest first.
        points: Vec<Point>,
    },
    /// Auto Scaling activities of a group involved in the run, during the run.
    ScalingActivity {
        /// The group.
        group: String,
        /// The activity's id.
        activity_id: String,
        /// What it did.
        description: String,
        /// Why.
        #[serde(default)]
        cause: String,
        /// Its status code.
        status: String,
        /// When it started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<Timestamp>,
        /// When it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_at: Option<Timestamp>,
    },
    /// A signal arrived.
    Signal {
        /// `SIGINT` or `SIGTERM`.
        signal: String,
        /// 1 for the first, 2 for the second...
        count: u32,
    },
    /// The safety gate checked every rule of the policy against the plan.
    SafetyGate {
        /// The plan's hash (what `--approve` must name).
        plan_hash: String,
        /// Whether every rule passed; if not, nothing was touched.
        admitted: bool,
        /// Every rule with its result.
        rules: Vec<RuleResult>,
    },
    /// Something the operator should know that does not change the verdict.
    Warning {
        /// The message.
        message: String,
    },
    /// The last event of every run.
    Verdict {
        /// The verdict.
        verdict: Verdict,
        /// Why, in words.
        reason: String,
        /// Anything still not rolled back, with how to finish it.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        unfinished: Vec<Undo>,
    },
}

/// What a probe is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRole {
    /// Part of the hypothesis: must hold; a deviation fails the run.
    SteadyState,
    /// A detection probe: an alarm that must fire and clear.
    Detection,
    /// A breach aborts the run.
    Guardrail,
}

/// Whose series a `series` event holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesOf {
    /// The group the faults went into (the copy in parallel mode).
    Experiment,
    /// The untouched source group (parallel mode only).
    Control,
}

/// One datapoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The datapoint's timestamp (start of its period).
    pub t: Timestamp,
    /// Its value.
    pub v: f64,
}

/// A probe as declared, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// Its name.
    pub name: String,
    /// steady_state, detection or guardrail.
    pub role: ProbeRole,
    /// `metric`, `alarm`, `asg_healthy` or `alarm_fires`.
    pub kind: String,
    /// What is checked, in words, e.g. `App/Latency p99 (60s) < 300`.
    pub check: String,
    /// The numbers a chart should draw as lines (tolerance bounds, thresholds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<f64>,
    /// Whether a control series is fetched too.
    #[serde(default)]
    pub control: bool,
}

/// One probe's result at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe.
    pub probe: String,
    /// steady_state, detection or guardrail.
    pub role: ProbeRole,
    /// Within tolerance (for a guardrail: not breached). A probe without data yet is ok with no value.
    pub ok: bool,
    /// The latest value (metric datapoint, healthy count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The control's latest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<f64>,
    /// An alarm's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// In words.
    pub detail: String,
}

/// One guardrail's preflight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailCheck {
    /// The guardrail.
    pub guardrail: String,
    /// Whether it can protect the run (exists, not breached, has data, refers to this run).
    pub ok: bool,
    /// Worst-case time (ms) from a real breach to the abort: the alarm's period x
    /// evaluation periods (or, for a metric, the longer of the probe's period x
    /// datapoints and its silence limit plus a period) plus the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_case_abort_ms: Option<u64>,
    /// A metric guardrail's missing-data rule in words, e.g. `breach after 3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// What was found.
    pub detail: String,
}

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Writing failed; the runner must not make further mutating calls it cannot record.
    #[error("cannot write the journal {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading failed.
    #[error("cannot read the journal {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `journal.json` is not a journal this version can read.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The shared runs store refused or failed a write-ahead chunk: the
    /// runner must not make the call it was about to record.
    #[error("cannot write the journal to the runs store at {key}: {message}")]
    Store {
        /// The object's key (`s3://bucket/key`).
        key: String,
        /// What went wrong.
        message: String,
        /// Another writer holds this run (the chunk's key exists).
        taken: bool,
    },
    /// A line is not a journal event (a torn last line after a crash is skipped, not reported).
    #[error("{}:{line}: not a journal event: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// The parse error.
        message: String,
    },
}

/// An open events file. Appends are serialised by a mutex, so concurrent
/// rollback tasks can record their intents and outcomes safely.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    remote: Option<Remote>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    seq: u64,
    next_action: u64,
    /// Lines written locally and not yet sent to the runs store.
    unsent: Vec<u8>,
}

/// Where a journal's chunks go besides the local file: the run's folder in
/// the shared runs store. Sending blocks the calling task's thread (tokio's
/// `block_in_place`), so a journal with a remote needs the multi-threaded runtime.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The store.
    pub store: S3Store,
    /// The run's id: its folder in the store.
    pub run_id: String,
}

/// The key of the chunk whose last event is `seq`, under a run's folder.
pub fn chunk_key(run_id: &str, seq: u64) -> String {
    format!("{run_id}/events/{seq:010}.jsonl")
}

/// Whether `event` must be durable in the runs store before `append` returns.
fn send_now(event: &Event) -> bool {
    matches!(
        event,
        Event::RunStarted { .. } | Event::Intent { .. } | Event::Recovery { .. } | Event::Verdict { .. }
    )
}

impl Remote {
    /// Puts one chunk, only if absent, waiting for S3's answer.
    fn send(&self, seq: u64, body: Vec<u8>) -> Result<(), JournalError> {
        let rel = chunk_key(&self.run_id, seq);
        let key = format!("s3://{}/{}", self.store.url.bucket, self.store.url.key(&rel));
        let handle = tokio::runtime::Handle::current();
        let r = tokio::task::block_in_place(|| handle.block_on(self.store.put_new(&rel, body)));
        r.map_err(|e| JournalError::Store {
            key,
            taken: matches!(e, PutError::Exists { .. }),
            message: e.to_string(),
        })
    }
}

impl Journal {
    /// The run folder the journal is in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates `dir` and its events file; fails if the file already exists.
    /// With `remote`, every event is also sent to the runs store.
    pub fn create_with(dir: &Path, remote: Option<Remote>) -> Result<Journal, JournalError> {
        let path = dir.join(EVENTS_FILE);
        let werr = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(werr)?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(werr)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                seq: 0,
                next_action: 1,
                unsent: Vec::new(),
            }),
            remote,
        })
    }

    /// Opens an existing run's events file to append to it (for `gameday
    /// recover`), continuing its numbering; with `remote`, every new event is
    /// also sent to the runs store.
    pub fn open_append_with(
        dir: &Path,
        remote: Option<Remote>,
    ) -> Result<(Journal, Vec<Entry>), JournalError> {
        let events = read_events(dir)?;
        let path = dir.join(EVENTS_FILE);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Write {
                path: path.clone(),
                source,
            })?;
        let seq = events.last().map_or(0, |e| e.seq);
        let next_action = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Intent { action_id, .. } => Some(*action_id),
                _ => None,
            })
            .max()
            .unwrap_or(0)
            + 1;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                inner: Mutex::new(Inner {
                    file,
                    seq,
                    next_action,
                    unsent: Vec::new(),
                }),
                remote,
            },
            events,
        ))
    }

    /// A new action id for an intent.
    pub fn next_action_id(&self) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = inner.next_action;
        inner.next_action += 1;
        id
    }

    /// Appends one event and flushes it to disk before returning; with a
    /// remote, an intent (see `send_now`) is durable in the runs store too.
    pub fn append(&self, event: Event) -> Result<Entry, JournalError> {
        let (entry, chunk) = self.append_local(event)?;
        if let (Some(remote), Some(body)) = (&self.remote, chunk) {
            // Outside the lock: concurrent tasks keep appending meanwhile; each
            // chunk is named by its last event, so the order is kept.
            remote.send(entry.seq, body)?;
        }
        Ok(entry)
    }

    fn append_local(&self, event: Event) -> Result<(Entry, Option<Vec<u8>>), JournalError> {
        let now = send_now(&event);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seq += 1;
        let entry = Entry {
            seq: inner.seq,
            at: Timestamp::now(),
            event,
        };
        let mut line = serde_json::to_vec(&entry).expect("journal events always serialise");
        line.push(b'\n');
        let path = self.dir.join(EVENTS_FILE);
        let werr = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        inner.file.write_all(&line).map_err(werr)?;
        inner.file.sync_data().map_err(werr)?;
        if self.remote.is_none() {
            return Ok((entry, None));
        }
        inner.unsent.extend_from_slice(&line);
        let chunk = now.then(|| std::mem::take(&mut inner.unsent));
        Ok((entry, chunk))
    }
}

/// Reads a run's events. A torn last line (the runner died mid-write) is ignored.
pub fn read_events(dir: &Path) -> Result<Vec<Entry>, JournalError> {
    let path = dir.join(EVENTS_FILE);
    let file = File::open(&path).map_err(|source| JournalError::Read {
        path: path.clone(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Read {
            path: path.clone(),
            source,
        })?;
    let mut out = Vec::new();
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == last => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// A mutating call whose effect has not been undone yet, per the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The intent's id.
    pub action_id: u64,
    /// The fault (or `environment`) it belongs to.
    pub fault: String,
    /// Setup or inject.
    pub kind: ActionKind,
    /// How to undo it.
    pub undo: Undo,
}

/// Every setup or inject call of a run that has no successful rollback yet,
/// newest first: the order in which to undo them. A call whose outcome is
/// missing (the runner died during it) counts: its effect is unknown, and
/// every undo is idempotent.
pub fn pending_undos(events: &[Entry]) -> Vec<Pending> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut rollback_of: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for e in events {
        match &e.event {
            Event::Intent {
                action_id,
                fault,
                kind,
                undo: Some(undo),
                rollback_of: None,
                ..
            } => pending.push(Pending {
                action_id: *action_id,
                fault: fault.clone(),
                kind: *kind,
                undo: undo.clone(),
            }),
            Event::Intent {
                action_id,
                rollback_of: Some(of),
                ..
            } => {
                rollback_of.insert(*action_id, *of);
            }
            Event::Outcome {
                action_id, ok: true, ..
            } => {
                if let Some(of) = rollback_of.get(action_id) {
                    pending.retain(|p| p.action_id != *of);
                }
            }
            _ => {}
        }
    }
    pending.reverse();
    pending
}

/// Why a run named on the command line (or in a tag) was refused before
/// anything was read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunNameError {
    /// Not the shape of a run id (a path, `..`, odd characters).
    #[error(
        "`{given}` is not a run id: a run id names a folder of the runs folder, like 20261125-112701-5c57 \
         (letters, digits, `-`, `_` and `.`, not starting with `.`, no `/`)"
    )]
    NotAnId {
        /// What was given.
        given: String,
    },
    /// It resolves to somewhere outside the runs folder.
    #[error(
        "`{given}` leads outside the runs folder {} (through `..`, an absolute path or a symlink): \
         name a run by its run id or by a path inside the runs folder; for runs kept elsewhere, pass --runs-dir",
        runs_dir.display()
    )]
    Outside {
        /// What was given.
        given: String,
        /// The runs folder.
        runs_dir: PathBuf,
    },
}

/// Whether `id` has the shape of a run id: what `engine::new_run_id` makes
/// (`YYYYMMDD-HHMMSS-xxxx`) and any other plain folder name: ASCII letters,
/// digits, `-`, `_` and `.`, not starting with `.` (so never `.` or `..`),
/// at most 128 characters. No separator, so it cannot name a path.
pub fn is_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The folder of run `id` in `runs_dir`. Refused when `id` is not a run id,
/// or when the folder is a symlink that resolves outside the runs folder (a
/// symlink to another run folder inside it is fine). A folder that does not
/// exist is returned as is: the caller says "no such run".
pub fn run_dir(runs_dir: &Path, id: &str) -> Result<PathBuf, RunNameError> {
    if !is_run_id(id) {
        return Err(RunNameError::NotAnId {
            given: id.to_string(),
        });
    }
    let dir = runs_dir.join(id);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(dir);
    }
    inside(runs_dir, &dir, id)?;
    Ok(dir)
}

/// `path` (a run folder or a file in one, as the user typed it), refused
/// unless it exists and resolves, symlinks and `..` followed, to something
/// strictly inside the runs folder. Returns the resolved path, so that what
/// was checked is what is used.
/// `given` is what the user typed, for the message.
pub fn run_path(runs_dir: &Path, path: &Path, given: &str) -> Result<PathBuf, RunNameError> {
    inside(runs_dir, path, given)
}

fn inside(runs_dir: &Path, path: &Path, given: &str) -> Result<PathBuf, RunNameError> {
    let outside = || RunNameError::Outside {
        given: given.to_string(),
        runs_dir: runs_dir.to_path_buf(),
    };
    let runs = runs_dir.canonicalize().map_err(|_| outside())?;
    // A dangling symlink does not resolve: it leads nowhere we can check.
    let real = path.canonicalize().map_err(|_| outside())?;
    if real != runs && real.starts_with(&runs) {
        Ok(real)
    } else {
        Err(outside())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_a_plain_folder_name() {
        for ok in ["20261125-112701-5c57", "no-such-run", "a_b.c"] {
            assert!(is_run_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "/etc",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!is_run_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_run_folder_cannot_lead_outside_the_runs_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        std::fs::create_dir_all(runs.join("20261125-112701-5c57")).expect("run");
        std::fs::create_dir_all(tmp.path().join("elsewhere")).expect("elsewhere");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), runs.join("escape")).expect("symlink");
        std::os::unix::fs::symlink(runs.join("20261125-112701-5c57"), runs.join("alias")).expect("symlink");

        assert!(run_dir(&runs, "20261125-112701-5c57").is_ok());
        assert!(run_dir(&runs, "alias").is_ok(), "a symlink inside is fine");
        assert!(run_dir(&runs, "missing").is_ok(), "the caller says no such run");
        assert!(matches!(
            run_dir(&runs, "../elsewhere"),
            Err(RunNameError::NotAnId { .. })
        ));
        assert!(matches!(
            run_dir(&runs, "escape"),
            Err(RunNameError::Outside { .. })
        ));
        assert!(run_path(&runs, &runs.join("20261125-112701-5c57"), "x").is_ok());
        for bad in [
            runs.join("../elsewhere"),
            tmp.path().join("elsewhere"),
            runs.join("escape"),
            runs.clone(),
            runs.join("missing"),
        ] {
            assert!(
                matches!(run_path(&runs, &bad, "x"), Err(RunNameError::Outside { .. })),
                "{}",
                bad.display()
            );
        }
    }
}
