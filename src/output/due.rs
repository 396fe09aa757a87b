//! A scheduled experiment's or suite's standing from the runs folder: its
//! latest run (history; a suite's from its runs' `suite.json`) and the claim
//! on its latest slot, judged by `due`. `gameday due`, `gameday run-due` and
//! the catalog all read it through here, so they agree.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use super::history::RunRow;
use super::scorecard::SuiteRun;
use crate::due::claim::{ClaimError, SlotStore};
use crate::due::{self, LastRun, SlotTaken, Status};
use crate::policy::Windows;
use crate::schedule::Schedule;

/// Every run of the runs folder, newest first (none when the folder does
/// not exist yet: nothing has run).
pub fn runs(runs_dir: &Path) -> Vec<RunRow> {
    super::history::load(runs_dir, None)
        .map(|(rows, _)| rows)
        .unwrap_or_default()
}

/// The latest run of experiment `name` among `rows` (newest first).
pub fn last_run(rows: &[RunRow], name: &str) -> Option<LastRun> {
    rows.iter().find(|r| r.experiment == name).map(|r| LastRun {
        run_id: r.run_id.clone(),
        started_at: r.started_at,
        verdict: r.verdict.map(|v| v.as_str().to_string()),
    })
}

/// The latest run of suite `name` among `runs` (newest first), its verdict
/// `GO` or `NO-GO`.
pub fn last_suite_run(runs: &[SuiteRun], name: &str) -> Option<LastRun> {
    runs.iter().find(|r| r.suite == name).map(|r| LastRun {
        run_id: r.suite_run_id.clone(),
        started_at: r.started_at,
        verdict: Some(r.decision().to_string()),
    })
}

/// Where experiment `name`'s schedule stands at `now`, from `rows` and the claims in `store`.
pub async fn status(
    name: &str,
    schedule: &Schedule,
    windows: &Windows,
    max_duration: Duration,
    rows: &[RunRow],
    store: &SlotStore,
    now: Timestamp,
) -> Result<Status, ClaimError> {
    judge(
        name,
        schedule,
        windows,
        max_duration,
        last_run(rows, name),
        store,
        now,
    )
    .await
}

/// Where the schedule of `key` (an experiment's name, or a suite's
/// [`due::suite_key`]) stands at `now`, given its latest run and the claims in `store`.
pub async fn judge(
    key: &str,
    schedule: &Schedule,
    windows: &Windows,
    max_duration: Duration,
    last: Option<LastRun>,
    store: &SlotStore,
    now: Timestamp,
) -> Result<Status, ClaimError> {
    let taken = match schedule.latest_due(key, now) {
        Some(slot) => store.find(key, &slot).await?.map(|c| SlotTaken {
            by: c.holder(),
            run_id: c.run_id,
        }),
        None => None,
    };
    Ok(due::evaluate(
        key,
        schedule,
        windows,
        max_duration,
        last,
        taken,
        now,
    ))
}
