//! What is due: a schedule's latest slot against the policy's windows and
//! freezes and against what already ran, and the claims that make a slot
//! run once ([`claim`]).
//!
//! The rule, in words: the latest slot whose due time (cron time plus
//! jitter) has passed is **due** unless it was claimed, or a run of the
//! experiment started at or after its cron time (a run by hand counts). A
//! due slot that the policy would refuse now (a freeze day, outside the
//! allowed windows, checked exactly as the safety gate checks a run) is
//! **deferred**: it stays the one to run until it runs or the next slot
//! replaces it, so a slot that falls on a freeze day runs on the first
//! trigger after the freeze. Missed slots do not pile up: only the latest
//! one is ever run, as Kubernetes CronJobs and anacron do.
//!
//! A suite's schedule follows the same rule under the key `suite:<name>`
//! ([`suite_key`]): its jitter, its claims and its leases go by that key, so
//! a suite and an experiment that share a name never share a slot.
//!
//! Everything here is pure: the caller reads the history and the claims and
//! passes the clock.

pub mod claim;

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::gate;
use crate::policy::Windows;
use crate::schedule::{Schedule, Slot};

/// How the key of a suite's slots starts (experiment and suite names hold
/// no `:`, so no experiment's key does).
pub const SUITE_KEY_PREFIX: &str = "suite:";

/// The key a suite's schedule goes by (its jitter, its claims, its slot
/// leases): `suite:<name>`. An experiment's key is its name.
pub fn suite_key(name: &str) -> String {
    format!("{SUITE_KEY_PREFIX}{name}")
}

/// The latest run of an experiment (or a suite), from the runs folder's history.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// The run's id.
    pub run_id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// Its verdict (`None`: the runner stopped before one).
    pub verdict: Option<String>,
}

/// Where a scheduled experiment stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Its latest slot has not run: `run-due` runs it now.
    Due,
    /// Its latest slot has not run, but the policy refuses runs now (a
    /// freeze, outside the windows); it runs on a trigger after that.
    Deferred,
    /// Its latest slot ran (or was claimed by a runner).
    Done,
    /// No slot is due yet (before the first slot or `not_before`).
    Waiting,
}

impl State {
    /// The word `gameday due` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Due => "due",
            State::Deferred => "deferred",
            State::Done => "done",
            State::Waiting => "waiting",
        }
    }
}

/// What [`evaluate`] found, with the reasons in words.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Due, deferred, done or waiting.
    pub state: State,
    /// The latest slot whose due time has passed, if any.
    pub slot: Option<Slot>,
    /// Why, in a sentence: "never run", "last run ... before this slot",
    /// "claimed by ...", "a freeze: ...".
    pub why: String,
    /// The next slot after the latest one (or after now when none is due yet).
    pub next: Option<Slot>,
    /// The latest run of the experiment, if any.
    pub last_run: Option<LastRun>,
}

/// A claim on the latest slot, as [`evaluate`] needs to know it.
#[derive(Debug, Clone)]
pub struct SlotTaken {
    /// Who holds it, for people ("host pid 42 at ...").
    pub by: String,
    /// The run started for it, if recorded.
    pub run_id: Option<String>,
}

/// Where `name`'s schedule stands at `now`: `windows` and `max_duration`
/// are the policy's windows and the experiment's `timing.max_duration` (a
/// run must fit a window, as the safety gate checks); `last_run` the latest
/// run in the history; `taken` the claim on the latest slot, if any.
pub fn evaluate(
    name: &str,
    schedule: &Schedule,
    windows: &Windows,
    max_duration: Duration,
    last_run: Option<LastRun>,
    taken: Option<SlotTaken>,
    now: Timestamp,
) -> Status {
    let Some(slot) = schedule.latest_due(name, now) else {
        let next = schedule.next_after_time(name, now);
        return Status {
            state: State::Waiting,
            slot: None,
            why: match next {
                Some(n) => format!("no slot yet; the first is {}", schedule.local_text(n.due_at)),
                None => "no slot between `not_before` and `until`".to_string(),
            },
            next,
            last_run,
        };
    };
    let next = schedule.next_after_time(name, slot.at);
    let when = schedule.local_text(slot.at);
    let (state, why) = if let Some(t) = taken {
        let run = t.run_id.map(|r| format!(", run {r}")).unwrap_or_default();
        (State::Done, format!("slot {when} claimed by {}{run}", t.by))
    } else if let Some(last) = last_run.as_ref().filter(|r| r.started_at >= slot.at) {
        (
            State::Done,
            format!(
                "slot {when} covered by run {} (started {})",
                last.run_id,
                last.started_at.strftime("%Y-%m-%d %H:%M:%SZ")
            ),
        )
    } else {
        let history = match &last_run {
            None => "never run".to_string(),
            Some(r) => format!(
                "last run {} at {} ({}), before this slot",
                r.run_id,
                r.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                r.verdict.as_deref().unwrap_or("unfinished")
            ),
        };
        let refused: Vec<String> = gate::windows(windows, now, max_duration)
            .into_iter()
            .filter(|r| !r.passed)
            .map(|r| {
                let mut text = format!("{}: {}", r.rule, r.detail);
                if !r.resources.is_empty() {
                    text.push_str(&format!(" [{}]", r.resources.join(", ")));
                }
                text
            })
            .collect();
        if refused.is_empty() {
            (State::Due, format!("slot {when}: {history}"))
        } else {
            (
                State::Deferred,
                format!(
                    "slot {when}: {history}; deferred, the policy refuses runs now ({}); it runs on the \
                     first trigger the policy allows, until the next slot replaces it",
                    refused.join("; ")
                ),
            )
        }
    };
    Status {
        state,
        slot: Some(slot),
        why,
        next,
        last_run,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::yaml::{self, Decoder};

    fn schedule(text: &str) -> Schedule {
        let root = yaml::parse(Path::new("e.yaml"), text).unwrap();
        let mut d = Decoder::new();
        let m = d.open_map(&root, "t").unwrap();
        crate::schedule::decode_schedule(&mut d, m.get("schedule").unwrap()).unwrap()
    }

    fn windows(text: &str) -> Windows {
        let policy = format!(
            "version: 1\nregions: any\nactions: [ec2:stop-instances]\nprotected_tags: {{}}\n\
             blast_radius: {{ max_instances_per_fault: 1, max_percent_of_group: 10 }}\n\
             in_place: {{ allowed: true, requires_approval: false, allow_terminate: false }}\n\
             require_guardrails: true\nmax_experiment_duration: 1h\n{text}"
        );
        crate::policy::load_str(Path::new("p.yaml"), &policy)
            .unwrap()
            .windows
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const TUESDAYS: &str = "schedule: { cron: \"0 10 * * TUE\", timezone: Europe/Paris }\n";
    const HALF_HOUR: Duration = Duration::from_secs(1800);

    #[test]
    fn never_run_is_due_and_a_later_run_covers_the_slot() {
        let s = schedule(TUESDAYS);
        let w = windows("");
        let now = at("2026-11-24T09:30:00Z");
        let st = evaluate("x", &s, &w, HALF_HOUR, None, None, now);
        assert_eq!(st.state, State::Due);
        assert!(st.why.contains("never run"), "{}", st.why);
        assert_eq!(st.slot.unwrap().at, at("2026-11-24T09:00:00Z"));
        assert_eq!(st.next.unwrap().at, at("2026-12-01T09:00:00Z"));

        let before = LastRun {
            run_id: "r1".into(),
            started_at: at("2026-11-17T09:00:00Z"),
            verdict: Some("passed".into()),
        };
        let st = evaluate("x", &s, &w, HALF_HOUR, Some(before), None, now);
        assert_eq!(st.state, State::Due);
        assert!(
            st.why
                .contains("last run r1 at 2026-11-17 09:00:00Z (passed), before this slot")
        );

        let after = LastRun {
            run_id: "r2".into(),
            started_at: at("2026-11-24T09:05:00Z"),
            verdict: Some("failed".into()),
        };
        let st = evaluate("x", &s, &w, HALF_HOUR, Some(after), None, now);
        assert_eq!(st.state, State::Done);
    }

    #[test]
    fn a_slot_on_a_freeze_day_is_deferred_until_the_freeze_ends() {
        let s = schedule(TUESDAYS);
        let w = windows("windows:\n  freeze: [{ from: 2026-11-24, to: 2026-11-25, reason: launch }]\n");
        let st = evaluate("x", &s, &w, HALF_HOUR, None, None, at("2026-11-24T09:30:00Z"));
        assert_eq!(st.state, State::Deferred);
        assert!(st.why.contains("windows.freeze"), "{}", st.why);
        assert!(st.why.contains("launch"), "{}", st.why);
        // The day after the freeze, the same slot is due.
        let st = evaluate("x", &s, &w, HALF_HOUR, None, None, at("2026-11-26T08:00:00Z"));
        assert_eq!(st.state, State::Due);
        assert_eq!(st.slot.unwrap().at, at("2026-11-24T09:00:00Z"));
    }

    #[test]
    fn a_claimed_slot_is_done_and_a_future_first_slot_waits() {
        let s = schedule("schedule: { cron: \"0 10 * * TUE\", not_before: 2026-12-01 }\n");
        let w = windows("");
        let st = evaluate("x", &s, &w, HALF_HOUR, None, None, at("2026-11-26T08:00:00Z"));
        assert_eq!(st.state, State::Waiting);
        assert_eq!(st.next.unwrap().at, at("2026-12-01T10:00:00Z"));
        let taken = SlotTaken {
            by: "host-a pid 7".into(),
            run_id: Some("r9".into()),
        };
        let st = evaluate(
            "x",
            &s,
            &w,
            HALF_HOUR,
            None,
            Some(taken),
            at("2026-12-01T11:00:00Z"),
        );
        assert_eq!(st.state, State::Done);
        assert!(st.why.contains("claimed by host-a pid 7, run r9"), "{}", st.why);
    }
}
