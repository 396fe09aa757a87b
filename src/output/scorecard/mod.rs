//! The scorecard of a suite run: per experiment its verdict, time to detect,
//! time to recover, abort reason and a link to its report; a readiness score
//! with its formula; GO or NO-GO. Written into the suite's run folder as
//! `suite.json` (for tools; the scorecard's data), `scorecard.html` (one
//! self-contained page styled like `report.html`), `scorecard.md` and
//! `junit.xml` (one test suite, one test case per experiment).
//!
//! Everything here is derived from the experiments' journals and the suite
//! file; the decision rule lives in [`decide`], the score in [`score`].

pub mod html;
pub mod junit;
pub mod markdown;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::report::ReportError;
use super::summary::Summary;
use crate::journal::Verdict;
use crate::suite::{Role, StopOn};

/// The scorecard's data, for tools.
pub const JSON_FILE: &str = "suite.json";
/// The scorecard for people.
pub const HTML_FILE: &str = "scorecard.html";
/// The scorecard for a pull request or a wiki.
pub const MARKDOWN_FILE: &str = "scorecard.md";
/// The scorecard for CI.
pub const JUNIT_FILE: &str = "junit.xml";
/// The version of `suite.json`'s format.
pub const SCORECARD_VERSION: u32 = 1;

/// How the readiness score is computed, in words (every format states it).
pub const FORMULA: &str = "readiness = 100 × (2 × blocking experiments passed + advisory experiments passed) ÷ (2 × blocking experiments + advisory experiments), rounded down; an experiment that did not run counts as not passed";

/// A suite run's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// [`SCORECARD_VERSION`].
    pub scorecard_version: u32,
    /// The suite's name.
    pub suite: String,
    /// The suite file.
    pub file: PathBuf,
    /// SHA-256 of the suite file's text.
    pub suite_sha256: String,
    /// The suite run's id (its folder's name).
    pub suite_run_id: String,
    /// The approval hash of the suite's plan (`gameday suite plan`).
    pub plan_hash: String,
    /// When the suite started.
    pub started_at: Timestamp,
    /// When the last experiment ended.
    pub finished_at: Timestamp,
    /// How many experiments could run at once.
    pub concurrency: u32,
    /// The suite's stop rule.
    pub stop_on: StopOn,
    /// The minimum readiness score for GO, if the suite sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<u32>,
    /// One row per experiment, in the suite's order.
    pub rows: Vec<Row>,
    /// The readiness score, 0 to 100 (see [`FORMULA`]).
    pub score: u32,
    /// [`FORMULA`].
    pub formula: String,
    /// GO (true) or NO-GO.
    pub go: bool,
    /// Why it is GO or NO-GO, one sentence each.
    pub because: Vec<String>,
    /// Why some experiments were not started (stop_on, an operator's signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// One experiment of the suite run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The experiment's name (its file's, when it never started).
    pub experiment: String,
    /// Its file.
    pub file: PathBuf,
    /// Blocking or advisory.
    pub role: Role,
    /// Its run's verdict; `None`: it was not started (see `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The verdict's reason, or why it was not started.
    pub reason: String,
    /// Its run's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Its `report.html`, relative to the suite's run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// How long its run took (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The slowest time from injection to a detection alarm firing (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_ms: Option<u64>,
    /// From the end of rollback to the steady state holding again (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_ms: Option<u64>,
    /// Why the run stopped early, when it aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// The account its run acted in, when it assumed a role (`aws.role_arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The region its run acted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Row {
    /// The row of a finished run, read from its journal; `report` is the
    /// link to its report from the suite's folder.
    pub fn from_summary(s: &Summary, file: &Path, role: Role, report: String) -> Row {
        let duration_ms = s
            .finished_at
            .map(|f| f.duration_since(s.started_at).as_millis().max(0) as u64);
        Row {
            experiment: s.experiment.clone(),
            file: file.to_path_buf(),
            role,
            verdict: s.verdict,
            reason: s
                .reason
                .clone()
                .unwrap_or_else(|| "the run has no verdict".into()),
            run_id: Some(s.run_id.clone()),
            report: Some(report),
            duration_ms,
            time_to_detect_ms: s.time_to_detect_ms,
            time_to_recover_ms: s.time_to_recover_ms,
            abort_reason: s.abort.as_ref().map(|a| a.reason.clone()),
            account: s.events.iter().find_map(|e| match &e.event {
                crate::journal::Event::Connected { account, .. } => Some(account.clone()),
                _ => None,
            }),
            region: Some(s.region.clone()),
        }
    }

    /// An experiment that was not started, and why.
    pub fn not_started(experiment: &str, file: &Path, role: Role, why: &str) -> Row {
        Row {
            experiment: experiment.to_string(),
            file: file.to_path_buf(),
            role,
            verdict: None,
            reason: why.to_string(),
            run_id: None,
            report: None,
            duration_ms: None,
            time_to_detect_ms: None,
            time_to_recover_ms: None,
            abort_reason: None,
            account: None,
            region: None,
        }
    }

    /// Where its run acted: `account / region`, what is known of it, or `-`.
    pub fn place(&self) -> String {
        match (&self.account, &self.region) {
            (Some(a), Some(r)) => format!("{a} / {r}"),
            (None, Some(r)) => r.clone(),
            (Some(a), None) => a.clone(),
            (None, None) => "-".to_string(),
        }
    }

    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.verdict == Some(Verdict::Passed)
    }

    /// Its outcome's spelling: the verdict, or `not started`.
    pub fn outcome(&self) -> &'static str {
        self.verdict.map(Verdict::as_str).unwrap_or("not started")
    }
}

/// The readiness score of `rows` (see [`FORMULA`]): 0 to 100.
pub fn score(rows: &[Row]) -> u32 {
    let weight = |r: &Row| match r.role {
        Role::Blocking => 2,
        Role::Advisory => 1,
    };
    let total: u32 = rows.iter().map(weight).sum();
    let passed: u32 = rows.iter().filter(|r| r.passed()).map(weight).sum();
    (100 * passed).checked_div(total).unwrap_or(0)
}

/// GO or NO-GO: every blocking experiment passed and, when the suite sets
/// `min_score`, the score is at least that. Returns the decision and each
/// reason for it.
pub fn decide(rows: &[Row], score: u32, min_score: Option<u32>) -> (bool, Vec<String>) {
    let mut because = Vec::new();
    let blocking: Vec<&Row> = rows.iter().filter(|r| r.role == Role::Blocking).collect();
    let failed: Vec<&&Row> = blocking.iter().filter(|r| !r.passed()).collect();
    for r in &failed {
        because.push(format!(
            "blocking experiment `{}` {}: {}",
            r.experiment,
            match r.verdict {
                Some(v) => format!("ended {}", v.as_str()),
                None => "was not started".to_string(),
            },
            r.reason
        ));
    }
    if failed.is_empty() {
        because.push(format!(
            "every blocking experiment passed ({} of {})",
            blocking.len(),
            blocking.len()
        ));
    }
    let score_ok = min_score.is_none_or(|m| score >= m);
    match min_score {
        Some(m) if score_ok => because.push(format!("readiness {score} is at least the minimum {m}")),
        Some(m) => because.push(format!("readiness {score} is below the minimum {m}")),
        None => {}
    }
    (failed.is_empty() && score_ok, because)
}

impl Scorecard {
    /// GO or NO-GO, in capitals.
    pub fn decision(&self) -> &'static str {
        if self.go { "GO" } else { "NO-GO" }
    }

    /// How long the suite took (ms).
    pub fn duration_ms(&self) -> u64 {
        self.finished_at
            .duration_since(self.started_at)
            .as_millis()
            .max(0) as u64
    }
}

/// Writes `suite.json` and the three scorecards into `dir`; returns their paths.
pub fn write_all(dir: &Path, card: &Scorecard) -> Result<Vec<PathBuf>, ReportError> {
    let json = serde_json::to_string_pretty(card).unwrap_or_default() + "\n";
    let mut out = Vec::new();
    for (name, text) in [
        (JSON_FILE, json),
        (HTML_FILE, html::render(card)),
        (MARKDOWN_FILE, markdown::render(card)),
        (JUNIT_FILE, junit::render(card)),
    ] {
        let path = dir.join(name);
        crate::util::write_replacing(&path, text.as_bytes()).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// A past suite run, as `gameday due` and the catalog list it: what its
/// `suite.json` says, without the rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteRun {
    /// The suite run's id (its folder's name, `suite-<id>`).
    pub suite_run_id: String,
    /// The suite's name.
    pub suite: String,
    /// When it started.
    pub started_at: Timestamp,
    /// GO (true) or NO-GO.
    pub go: bool,
    /// Its readiness score.
    pub score: u32,
    /// The folder it was read from.
    pub dir: PathBuf,
}

impl SuiteRun {
    /// GO or NO-GO, in capitals.
    pub fn decision(&self) -> &'static str {
        if self.go { "GO" } else { "NO-GO" }
    }
}

/// The prefix of a suite run's folder name (`suite-<run id>`).
pub const RUN_PREFIX: &str = "suite-";

/// Every suite run of `runs_dir` that wrote its `suite.json`, newest first.
/// A suite run still going (or whose runner died) has no `suite.json` yet
/// and is not listed; neither is a folder whose `suite.json` is unreadable.
pub fn runs(runs_dir: &Path) -> Vec<SuiteRun> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut out: Vec<SuiteRun> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(RUN_PREFIX))
        })
        .filter_map(|dir| {
            let text = std::fs::read_to_string(dir.join(JSON_FILE)).ok()?;
            let card: Scorecard = serde_json::from_str(&text).ok()?;
            Some(SuiteRun {
                suite_run_id: card.suite_run_id,
                suite: card.suite,
                started_at: card.started_at,
                go: card.go,
                score: card.score,
                dir,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.suite_run_id.cmp(&a.suite_run_id))
    });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(name: &str, role: Role, verdict: Option<Verdict>) -> Row {
        let mut r = Row::not_started(name, Path::new("e.yaml"), role, "why");
        r.verdict = verdict;
        r
    }

    #[test]
    fn the_score_weighs_blocking_experiments_double() {
        let rows = vec![
            row("a", Role::Blocking, Some(Verdict::Passed)),
            row("b", Role::Blocking, Some(Verdict::Passed)),
            row("c", Role::Advisory, Some(Verdict::Aborted)),
        ];
        assert_eq!(score(&rows), 80);
        assert_eq!(score(&[]), 0);
        let (go, why) = decide(&rows, 80, Some(70));
        assert!(go, "{why:?}");
        let (go, why) = decide(&rows, 80, Some(90));
        assert!(!go);
        assert!(why.iter().any(|w| w.contains("below the minimum 90")), "{why:?}");
    }

    #[test]
    fn a_blocking_experiment_that_did_not_pass_is_no_go_whatever_the_score() {
        let rows = vec![
            row("a", Role::Blocking, Some(Verdict::Passed)),
            row("b", Role::Blocking, None),
            row("c", Role::Advisory, Some(Verdict::Passed)),
        ];
        let (go, why) = decide(&rows, score(&rows), None);
        assert!(!go);
        assert!(why[0].contains("`b` was not started"), "{why:?}");
        let rows = vec![row("a", Role::Blocking, Some(Verdict::Aborted))];
        let (go, why) = decide(&rows, 0, None);
        assert!(!go && why[0].contains("ended aborted"), "{why:?}");
    }
}
