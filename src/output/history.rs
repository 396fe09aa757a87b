//! History: past runs from the runs folder, per-experiment trends, regressions,
//! and a side-by-side comparison of two runs.
//!
//! Everything comes from the runs' journals (`journal.json`, or the events of a
//! run that never finished), so history needs no AWS call and works on a
//! copied runs folder (a CI artifact, a shared drive).
//!
//! **Regression.** The latest run of an experiment is flagged when, among the
//! runs that tested the hypothesis (verdict `passed`, `failed` or `aborted`;
//! `not-run`, `error` and `interrupted` say nothing about the system):
//! 1. its verdict is `failed` or `aborted` and the run before it `passed`; or
//! 2. its time-to-recover (or time-to-detect) is more than 1.5 times the
//!    median of the earlier runs' and at least 1 s longer than it (both
//!    bounds, so jitter of a few hundred milliseconds on a fast recovery is not
//!    a regression).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use super::report::{self, Run};
use super::summary::{self, JOURNAL_FILE, Summary};
use crate::journal::{self, Verdict};
use crate::util::ms_text;

/// How much slower than the median of earlier runs counts as a regression.
pub const SLOWER_FACTOR: f64 = 1.5;
/// ... and by at least this much (ms).
pub const SLOWER_MIN_MS: u64 = 1000;

/// One past run, as history lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// The run's id.
    pub run_id: String,
    /// The experiment.
    pub experiment: String,
    /// When it began.
    pub started_at: Timestamp,
    /// Its verdict (absent: the runner stopped before one).
    pub verdict: Option<Verdict>,
    /// Whether it stopped early (a guardrail, max_duration, a signal).
    pub aborted: bool,
    /// End of rollback to the steady state holding again (ms).
    pub time_to_recover_ms: Option<u64>,
    /// First injection to the slowest detection alarm firing (ms).
    pub time_to_detect_ms: Option<u64>,
    /// Breach seen to the first rollback call (ms).
    pub abort_latency_ms: Option<u64>,
    /// The run folder.
    pub dir: PathBuf,
}

impl RunRow {
    fn from_summary(s: &Summary, dir: &Path) -> RunRow {
        RunRow {
            run_id: s.run_id.clone(),
            experiment: s.experiment.clone(),
            started_at: s.started_at,
            verdict: s.verdict,
            aborted: s.abort.is_some(),
            time_to_recover_ms: s.time_to_recover_ms,
            time_to_detect_ms: s.time_to_detect_ms,
            abort_latency_ms: s.abort.as_ref().and_then(|a| a.latency_ms),
            dir: dir.to_path_buf(),
        }
    }

    /// Whether the run tested the hypothesis (passed, failed or aborted).
    pub fn ran(&self) -> bool {
        matches!(
            self.verdict,
            Some(Verdict::Passed | Verdict::Failed | Verdict::Aborted)
        )
    }
}

/// One experiment's trend, oldest run first.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// The experiment.
    pub experiment: String,
    /// Runs listed.
    pub runs: usize,
    /// Runs that tested the hypothesis (passed, failed, aborted).
    pub ran: usize,
    /// Of those, how many passed.
    pub passed: usize,
    /// passed / ran, from 0 to 1 (absent when none ran).
    pub pass_rate: Option<f64>,
    /// Verdicts over time, oldest first.
    pub verdicts: Vec<String>,
    /// Time-to-recover of each run that measured it, oldest first (ms).
    pub time_to_recover_ms: Vec<u64>,
    /// Time-to-detect of each run that measured it, oldest first (ms).
    pub time_to_detect_ms: Vec<u64>,
    /// Why the latest run is worse than the earlier ones, if it is.
    pub regression: Option<String>,
}

/// A run folder that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    /// The folder.
    pub dir: PathBuf,
    /// Why.
    pub error: String,
}

/// Why history could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The runs folder is missing or unreadable.
    #[error("cannot read the runs folder {}: {source}", dir.display())]
    RunsDir {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A run named on the command line does not exist.
    #[error(
        "no run `{0}`: expected a run id (a folder of the runs folder), or a path inside the runs folder \
         to a run folder or its journal.json"
    )]
    NoSuchRun(String),
    /// The path names something in the runs folder that is not a run.
    #[error("`{given}` is {why}: expected a run id, a run folder or its journal.json")]
    NotARun {
        /// What was given.
        given: String,
        /// What it is instead.
        why: String,
    },
    /// The run id or path is refused: it is no run id or leads outside the runs folder.
    #[error(transparent)]
    RunName(#[from] journal::RunNameError),
    /// Its journal could not be read.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

/// Reads every run of `runs_dir`, newest first, optionally of one experiment.
pub fn load(
    runs_dir: &Path,
    experiment: Option<&str>,
) -> Result<(Vec<RunRow>, Vec<Unreadable>), HistoryError> {
    let entries = std::fs::read_dir(runs_dir).map_err(|source| HistoryError::RunsDir {
        dir: runs_dir.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for dir in entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
    {
        let summary = if dir.join(JOURNAL_FILE).exists() {
            summary::load(&dir)
        } else if dir.join(journal::EVENTS_FILE).exists() {
            // A run whose runner died: its events are all there is.
            journal::read_events(&dir)
                .map(|e| summary::summarize(&e))
                .and_then(|s| {
                    s.ok_or_else(|| journal::JournalError::Invalid {
                        path: dir.join(journal::EVENTS_FILE),
                        message: "no run_started event".into(),
                    })
                })
        } else {
            continue;
        };
        match summary {
            Ok(s) if experiment.is_none_or(|e| e == s.experiment) => {
                rows.push(RunRow::from_summary(&s, &dir))
            }
            Ok(_) => {}
            Err(e) => bad.push(Unreadable {
                dir,
                error: e.to_string(),
            }),
        }
    }
    rows.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    bad.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok((rows, bad))
}

/// Each experiment's trend, in order of name.
pub fn trends(rows: &[RunRow]) -> Vec<Trend> {
    let mut names: Vec<&str> = rows.iter().map(|r| r.experiment.as_str()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            // Oldest first.
            let runs: Vec<&RunRow> = rows.iter().rev().filter(|r| r.experiment == name).collect();
            let ran: Vec<&RunRow> = runs.iter().copied().filter(|r| r.ran()).collect();
            let passed = ran.iter().filter(|r| r.verdict == Some(Verdict::Passed)).count();
            Trend {
                experiment: name.to_string(),
                runs: runs.len(),
                ran: ran.len(),
                passed,
                pass_rate: (!ran.is_empty()).then(|| passed as f64 / ran.len() as f64),
                verdicts: runs
                    .iter()
                    .map(|r| r.verdict.map(Verdict::as_str).unwrap_or("unfinished").to_string())
                    .collect(),
                time_to_recover_ms: ran.iter().filter_map(|r| r.time_to_recover_ms).collect(),
                time_to_detect_ms: ran.iter().filter_map(|r| r.time_to_detect_ms).collect(),
                regression: regression(&ran),
            }
        })
        .collect()
}

/// Why the latest of `ran` (oldest first, runs that tested the hypothesis)
/// is worse than the earlier ones; see the module's documentation.
pub fn regression(ran: &[&RunRow]) -> Option<String> {
    let (latest, earlier) = ran.split_last()?;
    let previous = earlier.last()?;
    let mut why = Vec::new();
    if matches!(latest.verdict, Some(Verdict::Failed | Verdict::Aborted))
        && previous.verdict == Some(Verdict::Passed)
    {
        why.push(format!(
            "the latest run {} is {} after {} passed",
            latest.run_id,
            latest.verdict.map(Verdict::as_str).unwrap_or_default(),
            previous.run_id
        ));
    }
    for (what, get) in [
        (
            "time to recover",
            (|r: &RunRow| r.time_to_recover_ms) as fn(&RunRow) -> Option<u64>,
        ),
        ("time to detect", |r: &RunRow| r.time_to_detect_ms),
    ] {
        let Some(now) = get(latest) else { continue };
        let before: Vec<u64> = earlier.iter().filter_map(|r| get(r)).collect();
        let Some(median) = median(&before) else { continue };
        if now as f64 > median as f64 * SLOWER_FACTOR && now >= median + SLOWER_MIN_MS {
            why.push(format!(
                "{what} {} in the latest run, against a median of {} over {} earlier run(s)",
                ms_text(now),
                ms_text(median),
                before.len()
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn median(v: &[u64]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    })
}

/// Finds a run by id (a folder of `runs_dir`) or by a path inside `runs_dir`
/// to a run folder or its `journal.json`; nothing outside the runs folder is
/// read (or written by `report`), whatever `..`, absolute paths or symlinks say.
pub fn find(runs_dir: &Path, what: &str) -> Result<PathBuf, HistoryError> {
    if journal::is_run_id(what) {
        let dir = journal::run_dir(runs_dir, what)?;
        return if dir.join(JOURNAL_FILE).is_file() {
            Ok(dir)
        } else {
            Err(HistoryError::NoSuchRun(what.to_string()))
        };
    }
    let given = Path::new(what);
    // As today: relative to the runs folder, then to the current folder.
    let candidates = given
        .is_relative()
        .then(|| runs_dir.join(given))
        .into_iter()
        .chain(std::iter::once(given.to_path_buf()));
    for p in candidates {
        if std::fs::symlink_metadata(&p).is_err() {
            continue;
        }
        let real = journal::run_path(runs_dir, &p, what)?;
        let not_a_run = |why: &str| HistoryError::NotARun {
            given: what.to_string(),
            why: why.to_string(),
        };
        return if real.is_dir() {
            if real.join(JOURNAL_FILE).is_file() {
                Ok(real)
            } else {
                Err(not_a_run("a folder without a journal.json"))
            }
        } else if real.file_name().is_some_and(|n| n == JOURNAL_FILE) && real.is_file() {
            Ok(real)
        } else {
            Err(not_a_run("neither a run folder nor a journal.json"))
        };
    }
    Err(HistoryError::NoSuchRun(what.to_string()))
}

/// Two runs side by side: (what, run A, run B).
pub fn diff(a: &Summary, b: &Summary) -> Vec<(String, String, String)> {
    let ms = report::ms_or_dash;
    let lat = report::latency_text;
    let short = |h: &str| h[..12.min(h.len())].to_string();
    let targets = |s: &Summary| {
        s.targets
            .iter()
            .map(|t| {
                format!(
                    "{}: {}",
                    t.fault,
                    t.resolved
                        .selected
                        .iter()
                        .map(|i| i.id.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let duration = |s: &Summary| {
        s.finished_at
            .map(|f| ms_text(f.duration_since(s.started_at).as_millis().max(0) as u64))
            .unwrap_or_else(|| "-".into())
    };
    let mut rows = vec![
        ("run".to_string(), a.run_id.clone(), b.run_id.clone()),
        (
            "started".into(),
            a.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            b.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        ),
        (
            "verdict".into(),
            a.verdict.map(Verdict::as_str).unwrap_or("unfinished").into(),
            b.verdict.map(Verdict::as_str).unwrap_or("unfinished").into(),
        ),
        (
            "reason".into(),
            a.reason.clone().unwrap_or_default(),
            b.reason.clone().unwrap_or_default(),
        ),
        (
            "experiment file sha256".into(),
            short(&a.file_sha256),
            short(&b.file_sha256),
        ),
        (
            "policy sha256".into(),
            short(&a.policy_sha256),
            short(&b.policy_sha256),
        ),
        ("seed".into(), a.seed.to_string(), b.seed.to_string()),
        ("region".into(), a.region.clone(), b.region.clone()),
        (
            "mode".into(),
            a.mode.map(|m| m.as_str()).unwrap_or("-").into(),
            b.mode.map(|m| m.as_str()).unwrap_or("-").into(),
        ),
        ("targets".into(), targets(a), targets(b)),
        ("duration".into(), duration(a), duration(b)),
        (
            "time to recover".into(),
            ms(a.time_to_recover_ms),
            ms(b.time_to_recover_ms),
        ),
        (
            "time to detect".into(),
            ms(a.time_to_detect_ms),
            ms(b.time_to_detect_ms),
        ),
        (
            "aborted".into(),
            a.abort
                .as_ref()
                .map(|x| x.reason.clone())
                .unwrap_or_else(|| "no".into()),
            b.abort
                .as_ref()
                .map(|x| x.reason.clone())
                .unwrap_or_else(|| "no".into()),
        ),
        (
            "abort latency".into(),
            lat(a.abort.as_ref().and_then(|x| x.latency_ms)),
            lat(b.abort.as_ref().and_then(|x| x.latency_ms)),
        ),
        (
            "gameday".into(),
            a.gameday_version.clone(),
            b.gameday_version.clone(),
        ),
    ];
    let (ra, rb) = (Run::new(a), Run::new(b));
    let mut names: Vec<String> = ra
        .probes
        .iter()
        .chain(&rb.probes)
        .map(|p| p.info.name.clone())
        .collect();
    names.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n.clone()) {
            continue;
        }
        let show = |r: &Run| {
            r.probes
                .iter()
                .find(|p| p.info.name == n)
                .map(|p| format!("{}: {}", if p.failed { "FAILED" } else { "ok" }, p.detail))
                .unwrap_or_else(|| "-".into())
        };
        rows.push((format!("probe `{n}`"), show(&ra), show(&rb)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Verdict, ttr: Option<u64>) -> RunRow {
        RunRow {
            run_id: "r".into(),
            experiment: "e".into(),
            started_at: Timestamp::UNIX_EPOCH,
            verdict: Some(v),
            aborted: false,
            time_to_recover_ms: ttr,
            time_to_detect_ms: None,
            abort_latency_ms: None,
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn a_regression_is_a_new_failure_or_a_much_slower_recovery() {
        let (p1, p2) = (row(Verdict::Passed, Some(1000)), row(Verdict::Passed, Some(1200)));
        assert!(regression(&[&p1, &p2]).is_none(), "slightly slower is jitter");
        let slow = row(Verdict::Passed, Some(3000));
        assert!(regression(&[&p1, &p2, &slow]).is_some_and(|w| w.contains("time to recover 3s")));
        let fast_jitter = row(Verdict::Passed, Some(900));
        assert!(
            regression(&[&row(Verdict::Passed, Some(100)), &fast_jitter]).is_none(),
            "over 1.5x but under 1 s longer"
        );
        let failed = row(Verdict::Failed, None);
        assert!(regression(&[&p1, &failed]).is_some_and(|w| w.contains("is failed after")));
        assert!(
            regression(&[&failed, &row(Verdict::Failed, None)]).is_none(),
            "still failing is not a new regression"
        );
        assert!(
            regression(&[&p1]).is_none(),
            "one run has nothing to compare with"
        );
    }
}
