//! `journal.json`: a run summarised from its events, for people and tools,
//! and the run's records (the summary and the three reports) written at the
//! end of a run and of `gameday recover`.
//!
//! The summary is derived, never written by hand: from `events.jsonl` when a
//! run ends, and again from the events it holds when an older journal is
//! loaded, so every reader sees the current version's fields.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::report::{self, ReportError};
use crate::aws::AwsError;
use crate::journal::{
    self, ActionKind, Entry, Event, JOURNAL_VERSION, JournalError, Point, ProbeInfo, SeriesOf, Verdict,
};
use crate::model::{Mode, Resolved};

/// The oldest `journal.json` version [`load`] reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// File name of the derived journal inside a run folder.
pub const JOURNAL_FILE: &str = "journal.json";

/// Derives `journal.json` from the run's `events.jsonl` and renders the three
/// reports from it, exactly as `gameday report` regenerates them; called by
/// the command line at the end of a run and of `gameday recover`. The run
/// itself is over, so a problem here is a warning, not a change of verdict.
pub fn write_run_records(dir: &Path) {
    match journal::read_events(dir).map(|events| summarize(&events)) {
        Ok(Some(summary)) => {
            if let Err(e) = write_summary(dir, &summary)
                .map_err(ReportError::from)
                .and_then(|_| report::regenerate(dir))
            {
                eprintln!("warning: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
}

/// One mutating call with its outcome, as `journal.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The intent's id.
    pub action_id: u64,
    /// The fault.
    pub fault: String,
    /// Inject or rollback.
    pub kind: ActionKind,
    /// `service:Operation`.
    pub operation: String,
    /// The resources.
    pub resources: Vec<String>,
    /// For a rollback, the inject it undoes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// When the intent was written.
    pub started_at: Timestamp,
    /// When the outcome was written; absent if the runner died in between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// None: unknown (no outcome recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// The error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AwsError>,
}

/// `journal.json`: the run summarised from its events, for people and tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Format version.
    pub journal_version: u32,
    /// The run.
    pub run_id: String,
    /// The runner's version.
    pub gameday_version: String,
    /// Experiment name.
    pub experiment: String,
    /// Experiment file and its hash.
    pub file: PathBuf,
    /// SHA-256 of the experiment file.
    pub file_sha256: String,
    /// The safety policy file; absent: the built-in default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
    /// SHA-256 of the safety policy's text.
    #[serde(default)]
    pub policy_sha256: String,
    /// The hypothesis.
    pub hypothesis: String,
    /// The seed.
    pub seed: u64,
    /// Region.
    pub region: String,
    /// When the run began.
    pub started_at: Timestamp,
    /// When the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The verdict (absent if the run never finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// parallel or in-place (version 2).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The endpoint override in use, if any (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The experiment file's exact text: the experiment as run (version 2).
    #[serde(default)]
    pub source: String,
    /// Where the faults went: the parallel copy and its source, or the real
    /// group in place (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentRecord>,
    /// Each fault's resolved targets.
    pub targets: Vec<FaultTargets>,
    /// Every mutating call.
    pub actions: Vec<ActionRecord>,
    /// Every probe as checked, with the limits a chart draws (version 2).
    #[serde(default)]
    pub probes: Vec<ProbeInfo>,
    /// Every metric probe's series, the experiment's and the control's (version 2).
    #[serde(default)]
    pub series: Vec<SeriesRecord>,
    /// Auto Scaling activities of the groups involved, during the run (version 2).
    #[serde(default)]
    pub scaling_activities: Vec<ScalingActivityRecord>,
    /// Alarm state changes seen while observing (first sightings excluded) (version 2).
    #[serde(default)]
    pub alarm_changes: Vec<AlarmChangeRecord>,
    /// The abort, if the run stopped early (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortRecord>,
    /// Whether the steady state returned within `timing.recovery`; absent
    /// when there was no recovery phase (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// End of rollback to the steady state holding again (ms) (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_ms: Option<u64>,
    /// First injection to the slowest detection alarm firing (ms), when
    /// every detection probe fired (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_ms: Option<u64>,
    /// Every detection probe's outcome (version 2).
    #[serde(default)]
    pub detections: Vec<DetectionRecord>,
    /// Every event, in order.
    pub events: Vec<Entry>,
}

/// The environment a run's faults went into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// parallel or in-place.
    pub mode: Mode,
    /// The group faults acted on (the copy in parallel mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The copy's source group (parallel mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The copy's instances once ready (parallel mode).
    #[serde(default)]
    pub instances: Vec<String>,
}

/// A metric probe's datapoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    /// The probe.
    pub probe: String,
    /// The experiment's or the control's.
    pub of: SeriesOf,
    /// The metric's dimensions as queried.
    #[serde(default)]
    pub dimensions: Vec<(String, String)>,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// One Auto Scaling activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingActivityRecord {
    /// The group.
    pub group: String,
    /// What it did.
    pub description: String,
    /// Why.
    #[serde(default)]
    pub cause: String,
    /// Its status code.
    pub status: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// One alarm state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmChangeRecord {
    /// When the runner saw it.
    pub at: Timestamp,
    /// The alarm.
    pub alarm: String,
    /// The previous state.
    pub from: String,
    /// The new state.
    pub to: String,
}

/// Why and how fast a run stopped early.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbortRecord {
    /// Why, in words.
    pub reason: String,
    /// When the cause was seen (a breach in the API's answer, a signal's arrival).
    pub seen_at: Timestamp,
    /// The guardrail that tripped, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<String>,
    /// When the rollback began (the first rollback call's intent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_started_at: Option<Timestamp>,
    /// `seen_at` to `rollback_started_at` (ms): the abort latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// A detection probe's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    /// The probe.
    pub probe: String,
    /// The alarm that had to fire.
    pub alarm: String,
    /// First injection to the alarm seen in ALARM (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_ms: Option<u64>,
    /// End of rollback to the alarm seen OK again (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_clear_ms: Option<u64>,
    /// Whether it fired and cleared in time.
    pub ok: bool,
    /// In words.
    pub detail: String,
}

/// One fault's resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultTargets {
    /// The fault.
    pub fault: String,
    /// Its action.
    pub action: String,
    /// What was resolved.
    #[serde(flatten)]
    pub resolved: Resolved,
}

/// Derives the summary from a run's events; `None` without a `run_started`.
pub fn summarize(events: &[Entry]) -> Option<Summary> {
    let first = events.first()?;
    let Event::RunStarted {
        run_id,
        gameday_version,
        experiment,
        file,
        file_sha256,
        source,
        hypothesis,
        mode,
        seed,
        region,
        endpoint,
        policy_file,
        policy_sha256,
        ..
    } = &first.event
    else {
        return None;
    };
    let mut s = Summary {
        journal_version: JOURNAL_VERSION,
        run_id: run_id.clone(),
        gameday_version: gameday_version.clone(),
        experiment: experiment.clone(),
        file: file.clone(),
        file_sha256: file_sha256.clone(),
        policy_file: policy_file.clone(),
        policy_sha256: policy_sha256.clone(),
        hypothesis: hypothesis.clone(),
        seed: *seed,
        region: region.clone(),
        started_at: first.at,
        finished_at: None,
        verdict: None,
        reason: None,
        mode: Some(*mode),
        endpoint: endpoint.clone(),
        source: source.clone(),
        environment: None,
        targets: Vec::new(),
        actions: Vec::new(),
        probes: Vec::new(),
        series: Vec::new(),
        scaling_activities: Vec::new(),
        alarm_changes: Vec::new(),
        abort: None,
        recovered: None,
        time_to_recover_ms: None,
        time_to_detect_ms: None,
        detections: Vec::new(),
        events: events.to_vec(),
    };
    let mut breach: Option<String> = None;
    for e in events {
        match &e.event {
            Event::TargetsResolved {
                fault,
                action,
                resolved,
            } => s.targets.push(FaultTargets {
                fault: fault.clone(),
                action: action.clone(),
                resolved: resolved.clone(),
            }),
            Event::Intent {
                action_id,
                fault,
                kind,
                operation,
                resources,
                rollback_of,
                ..
            } => s.actions.push(ActionRecord {
                action_id: *action_id,
                fault: fault.clone(),
                kind: *kind,
                operation: operation.clone(),
                resources: resources.clone(),
                rollback_of: *rollback_of,
                started_at: e.at,
                finished_at: None,
                ok: None,
                error: None,
            }),
            Event::Outcome {
                action_id, ok, error, ..
            } => {
                if let Some(a) = s.actions.iter_mut().find(|a| a.action_id == *action_id) {
                    a.finished_at = Some(e.at);
                    a.ok = Some(*ok);
                    a.error = error.clone();
                }
            }
            Event::Verdict { verdict, reason, .. } => {
                s.verdict = Some(*verdict);
                s.reason = Some(reason.clone());
                s.finished_at = Some(e.at);
            }
            Event::Environment {
                mode,
                group,
                source,
                instances,
                ..
            } => {
                s.environment = Some(EnvironmentRecord {
                    mode: *mode,
                    group: group.clone(),
                    source: source.clone(),
                    instances: instances.clone(),
                })
            }
            // The last list wins: it carries the tolerances the baseline fixed.
            Event::Probes { probes } => s.probes = probes.clone(),
            Event::Series {
                probe,
                of,
                dimensions,
                points,
            } => s.series.push(SeriesRecord {
                probe: probe.clone(),
                of: *of,
                dimensions: dimensions.clone(),
                points: points.clone(),
            }),
            Event::ScalingActivity {
                group,
                description,
                cause,
                status,
                started_at,
                ended_at,
                ..
            } => s.scaling_activities.push(ScalingActivityRecord {
                group: group.clone(),
                description: description.clone(),
                cause: cause.clone(),
                status: status.clone(),
                started_at: *started_at,
                ended_at: *ended_at,
            }),
            Event::AlarmChanged {
                alarm,
                from: Some(from),
                to,
                ..
            } => s.alarm_changes.push(AlarmChangeRecord {
                at: e.at,
                alarm: alarm.clone(),
                from: from.clone(),
                to: to.clone(),
            }),
            Event::GuardrailBreached { guardrail, .. } => breach = breach.or(Some(guardrail.clone())),
            Event::Abort { reason, seen_at } if s.abort.is_none() => {
                s.abort = Some(AbortRecord {
                    reason: reason.clone(),
                    seen_at: *seen_at,
                    guardrail: breach.clone(),
                    rollback_started_at: None,
                    latency_ms: None,
                })
            }
            Event::RollbackStarted { .. } => {
                if let Some(a) = s.abort.as_mut().filter(|a| a.rollback_started_at.is_none()) {
                    a.rollback_started_at = Some(e.at);
                    a.latency_ms = Some(e.at.duration_since(a.seen_at).as_millis().max(0) as u64);
                }
            }
            Event::RecoveryResult {
                recovered,
                time_to_recover_ms,
                ..
            } => {
                s.recovered = Some(*recovered);
                s.time_to_recover_ms = *time_to_recover_ms;
            }
            Event::Detection {
                probe,
                alarm,
                time_to_detect_ms,
                time_to_clear_ms,
                ok,
                detail,
            } => s.detections.push(DetectionRecord {
                probe: probe.clone(),
                alarm: alarm.clone(),
                time_to_detect_ms: *time_to_detect_ms,
                time_to_clear_ms: *time_to_clear_ms,
                ok: *ok,
                detail: detail.clone(),
            }),
            _ => {}
        }
    }
    if !s.detections.is_empty() && s.detections.iter().all(|d| d.time_to_detect_ms.is_some()) {
        s.time_to_detect_ms = s.detections.iter().filter_map(|d| d.time_to_detect_ms).max();
    }
    Some(s)
}

/// Reads a run's `journal.json` (`path` is the file or its run folder), of
/// any version from [`OLDEST_READABLE_VERSION`] to [`JOURNAL_VERSION`]. The
/// summary is derived again from the events it holds, so an older journal
/// comes back with every field of the current version.
pub fn load(path: &Path) -> Result<Summary, JournalError> {
    let file = if path.is_dir() {
        path.join(JOURNAL_FILE)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| JournalError::Read {
        path: file.clone(),
        source,
    })?;
    let corrupt = |message: String| JournalError::Invalid {
        path: file.clone(),
        message,
    };
    #[derive(Deserialize)]
    struct Head {
        journal_version: u32,
    }
    let head: Head =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("not a gameday journal: {e}")))?;
    if !(OLDEST_READABLE_VERSION..=JOURNAL_VERSION).contains(&head.journal_version) {
        return Err(corrupt(format!(
            "journal_version {} is not one this gameday ({}) reads ({OLDEST_READABLE_VERSION} to {JOURNAL_VERSION}); use a newer gameday",
            head.journal_version,
            env!("CARGO_PKG_VERSION")
        )));
    }
    #[derive(Deserialize)]
    struct Stored {
        events: Vec<Entry>,
    }
    let stored: Stored = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    summarize(&stored.events).ok_or_else(|| corrupt("the journal has no run_started event".to_string()))
}

/// Writes `journal.json` beside the events, atomically (temp file + rename).
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<PathBuf, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let mut text = serde_json::to_vec_pretty(summary).expect("journal summaries always serialise");
    text.push(b'\n');
    crate::util::write_replacing(&path, &text).map_err(|source| JournalError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
