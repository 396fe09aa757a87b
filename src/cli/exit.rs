//! Exit codes, and the one mapping from a command's [`Outcome`] or [`Error`]
//! to its code.
//!
//! Each verdict has its own code, so a CI pipeline or a scheduler can tell
//! "the hypothesis failed" from "a guardrail stopped the run" from "the runner
//! itself could not do its job". The README's exit-code table and the
//! top-level `--help` document these constants; change them together.

use crate::journal::Verdict;
use crate::output::history::HistoryError;
use crate::output::report::ReportError;
use crate::plan::PlanError;
use crate::recover::RecoverError;
use crate::targets::TargetError;

use super::outcome::{Error, Outcome, PlanVerdict};

/// Success; for `run`, the verdict `passed`.
pub const OK: i32 = 0;
/// An experiment (or other input file) is invalid; nothing was touched.
pub const INVALID_INPUT: i32 = 1;
/// The command line is wrong (unknown flag, missing argument, missing path).
pub const USAGE: i32 = 2;
/// Verdict `failed`: the steady state deviated or did not recover.
pub const FAILED: i32 = 3;
/// Verdict `aborted`: a guardrail tripped or max_duration was reached; rolled back.
pub const ABORTED: i32 = 4;
/// Verdict `not-run`: a precondition did not hold; nothing was injected.
pub const NOT_RUN: i32 = 5;
/// Verdict `error`: the runner could not do its job (AWS or journal errors).
/// If the reason says a rollback is incomplete, finish it with `gameday recover`.
pub const ERROR: i32 = 6;
/// Refused by the safety policy (verdict `not-run`): a rule failed or the
/// approval is missing or stale; nothing was touched.
pub const REFUSED: i32 = 7;
/// `suite run`: NO-GO. A blocking experiment did not pass, or the readiness
/// score is below the suite's `min_score`; the scorecard says which.
pub const NO_GO: i32 = 8;
/// Verdict `interrupted`: stopped by SIGINT/SIGTERM/SIGHUP; rolled back.
pub const INTERRUPTED: i32 = 130;

/// The exit code of a command's result.
pub fn code(result: &Result<Outcome, Error>) -> i32 {
    match result {
        Ok(outcome) => for_outcome(*outcome),
        Err(e) => for_error(e),
    }
}

/// The exit code of a command line clap rejected, or of `--help`/`--version`
/// (which clap reports as errors printed to stdout).
pub fn for_parse_error(e: &clap::Error) -> i32 {
    if e.use_stderr() { USAGE } else { OK }
}

/// The exit code for a verdict.
pub fn for_verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Passed => OK,
        Verdict::Failed => FAILED,
        Verdict::Aborted => ABORTED,
        Verdict::NotRun => NOT_RUN,
        Verdict::Error => ERROR,
        Verdict::Interrupted => INTERRUPTED,
    }
}

fn for_outcome(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Done => OK,
        // A refusal is a `not-run` that the policy, not a precondition, decided.
        Outcome::Ran {
            verdict: Verdict::NotRun,
            refused: true,
        } => REFUSED,
        Outcome::Ran { verdict, .. } => for_verdict(verdict),
        Outcome::Planned(PlanVerdict::MayRun) => OK,
        Outcome::Planned(PlanVerdict::Refused) => REFUSED,
        Outcome::Planned(PlanVerdict::NotRun) => NOT_RUN,
        Outcome::Regression => FAILED,
        Outcome::Unfinished => ERROR,
        Outcome::RanDue {
            worst,
            invalid,
            errors,
        } => {
            let run = worst.map(|(verdict, refused)| for_outcome(Outcome::Ran { verdict, refused }));
            if run == Some(INTERRUPTED) {
                INTERRUPTED
            } else if errors || run == Some(ERROR) {
                ERROR
            } else if invalid {
                INVALID_INPUT
            } else {
                run.unwrap_or(OK)
            }
        }
        // `halt --status` while halted: new runs would be refused.
        Outcome::Halt { on: true } => REFUSED,
        Outcome::Halt { on: false } => OK,
        Outcome::Suite {
            interrupted: true, ..
        } => INTERRUPTED,
        Outcome::Suite { go: true, .. } => OK,
        Outcome::Suite { go: false, .. } => NO_GO,
    }
}

/// How bad a run's outcome is for `run-due`'s summary, worst first:
/// interrupted, error, refused, aborted, failed, not-run, passed.
fn severity(verdict: Verdict, refused: bool) -> u8 {
    match (verdict, refused) {
        (Verdict::Interrupted, _) => 6,
        (Verdict::Error, _) => 5,
        (Verdict::NotRun, true) => 4,
        (Verdict::Aborted, _) => 3,
        (Verdict::Failed, _) => 2,
        (Verdict::NotRun, false) => 1,
        (Verdict::Passed, _) => 0,
    }
}

/// The most severe of the runs `run-due` started, for its exit code. A
/// suite counts as the run of its outcome: GO as `passed`, NO-GO as
/// `failed` (exit 3: the readiness gate did not hold, as a failed
/// hypothesis), an interrupted suite as `interrupted`.
pub fn worst_run(outcomes: &[Outcome]) -> Option<(Verdict, bool)> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ran { verdict, refused } => Some((*verdict, *refused)),
            Outcome::Suite {
                interrupted: true, ..
            } => Some((Verdict::Interrupted, false)),
            Outcome::Suite { go: true, .. } => Some((Verdict::Passed, false)),
            Outcome::Suite { go: false, .. } => Some((Verdict::Failed, false)),
            _ => None,
        })
        .max_by_key(|(v, r)| severity(*v, *r))
}

fn for_error(e: &Error) -> i32 {
    // No wildcard: a new error must be given its code here.
    match e {
        Error::Runtime(_) => ERROR,
        Error::Store(e) => match **e {
            crate::store::StoreError::Url(_) | crate::store::StoreError::RunName(_) => USAGE,
            _ => ERROR,
        },
        // No region: the command line (or the environment) must say more.
        Error::Connect(_) => USAGE,
        Error::Paths(_) => USAGE,
        Error::InvalidFiles { .. } => INVALID_INPUT,
        Error::UnreadableExperiment(_) => USAGE,
        Error::InvalidExperiment { .. } => INVALID_INPUT,
        Error::UnreadablePolicy(_) => USAGE,
        Error::InvalidPolicy(_) => INVALID_INPUT,
        // The group the experiment names does not exist: nothing to run against.
        Error::Plan(e) => match **e {
            PlanError::Targets {
                source: TargetError::NoSuchGroup(_),
                ..
            }
            | PlanError::Environment(TargetError::NoSuchGroup(_))
            | PlanError::Traffic(_) => NOT_RUN,
            _ => ERROR,
        },
        Error::PlanJson(_) => ERROR,
        Error::UnreadableSuite(_) => USAGE,
        Error::InvalidSuite { .. } => INVALID_INPUT,
        Error::SuiteMember { source, .. } => for_error(source),
        Error::SuiteRecords { .. } => ERROR,
        Error::Run(_) => ERROR,
        Error::Recover(RecoverError::NoSuchRun { .. } | RecoverError::RunName(_)) => USAGE,
        Error::Recover(RecoverError::Alive { .. } | RecoverError::Journal(_)) => ERROR,
        Error::RecoveryList(_) => ERROR,
        Error::Leftovers(_) => ERROR,
        Error::LeaseTable(_) => ERROR,
        Error::Halt(_) => ERROR,
        // No region at all is the command line's to fix; a role that cannot
        // be assumed (trust policy, external id, permission) is an error.
        Error::Assume(e) => match **e {
            crate::aws::AssumeError::Connect(_) => USAGE,
            crate::aws::AssumeError::Assume { .. } => ERROR,
        },
        Error::History(
            HistoryError::RunsDir { .. }
            | HistoryError::NoSuchRun(_)
            | HistoryError::NotARun { .. }
            | HistoryError::RunName(_),
        ) => USAGE,
        Error::History(HistoryError::Journal(_)) => INVALID_INPUT,
        Error::Report(ReportError::Journal(_)) => INVALID_INPUT,
        Error::Report(ReportError::Write { .. }) => ERROR,
        Error::DiffOfTwoExperiments { .. } => USAGE,
        Error::Claim(_) => ERROR,
        Error::Catalog(crate::output::catalog::CatalogError::Missing(_)) => USAGE,
        Error::Catalog(crate::output::catalog::CatalogError::Write { .. }) => ERROR,
        Error::SchemaWrite { .. } => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_told_apart_from_other_not_runs() {
        let ran = |verdict, refused| code(&Ok(Outcome::Ran { verdict, refused }));
        assert_eq!(ran(Verdict::NotRun, true), REFUSED);
        assert_eq!(ran(Verdict::NotRun, false), NOT_RUN);
        assert_eq!(ran(Verdict::Passed, false), OK);
        assert_eq!(ran(Verdict::Failed, false), FAILED);
        assert_eq!(ran(Verdict::Aborted, false), ABORTED);
        assert_eq!(ran(Verdict::Error, false), ERROR);
        assert_eq!(ran(Verdict::Interrupted, false), INTERRUPTED);
    }

    #[test]
    fn run_due_exits_with_its_most_severe_run() {
        let ran = |verdict, refused| Outcome::Ran { verdict, refused };
        let due = |runs: &[Outcome], invalid, errors| {
            code(&Ok(Outcome::RanDue {
                worst: worst_run(runs),
                invalid,
                errors,
            }))
        };
        assert_eq!(due(&[], false, false), OK);
        assert_eq!(due(&[ran(Verdict::Passed, false)], false, false), OK);
        assert_eq!(
            due(
                &[ran(Verdict::Failed, false), ran(Verdict::Aborted, false)],
                false,
                false
            ),
            ABORTED
        );
        assert_eq!(
            due(
                &[ran(Verdict::NotRun, true), ran(Verdict::Aborted, false)],
                false,
                false
            ),
            REFUSED
        );
        assert_eq!(due(&[ran(Verdict::Failed, false)], true, false), INVALID_INPUT);
        assert_eq!(due(&[ran(Verdict::Passed, false)], true, true), ERROR);
        assert_eq!(due(&[ran(Verdict::Interrupted, false)], true, true), INTERRUPTED);
        // A due suite: GO as passed, NO-GO as failed, whatever else ran.
        let suite = |go, interrupted| Outcome::Suite { go, interrupted };
        assert_eq!(
            due(&[suite(true, false), ran(Verdict::Passed, false)], false, false),
            OK
        );
        assert_eq!(
            due(&[suite(false, false), ran(Verdict::Passed, false)], false, false),
            FAILED
        );
        assert_eq!(
            due(&[suite(false, false), ran(Verdict::Aborted, false)], false, false),
            ABORTED
        );
        assert_eq!(due(&[suite(false, true)], false, false), INTERRUPTED);
    }

    #[test]
    fn a_suite_exits_0_for_go_and_its_own_code_for_no_go() {
        let suite = |go, interrupted| code(&Ok(Outcome::Suite { go, interrupted }));
        assert_eq!(suite(true, false), OK);
        assert_eq!(suite(false, false), NO_GO);
        assert_eq!(suite(false, true), INTERRUPTED);
        let codes = [
            OK,
            INVALID_INPUT,
            USAGE,
            FAILED,
            ABORTED,
            NOT_RUN,
            ERROR,
            REFUSED,
            INTERRUPTED,
        ];
        assert!(!codes.contains(&NO_GO), "NO-GO has a code of its own");
    }

    #[test]
    fn a_plan_exits_as_its_run_would_be_stopped() {
        let planned = |v| code(&Ok(Outcome::Planned(v)));
        assert_eq!(planned(PlanVerdict::MayRun), OK);
        assert_eq!(planned(PlanVerdict::Refused), REFUSED);
        assert_eq!(planned(PlanVerdict::NotRun), NOT_RUN);
    }

    #[test]
    fn a_missing_run_is_a_usage_error_and_an_unreadable_journal_an_input_error() {
        let missing = Error::History(HistoryError::NoSuchRun("x".into()));
        assert_eq!(code(&Err(missing)), USAGE);
        let unreadable = Error::History(HistoryError::Journal(crate::journal::JournalError::Invalid {
            path: "runs/x/journal.json".into(),
            message: "not JSON".into(),
        }));
        assert_eq!(code(&Err(unreadable)), INVALID_INPUT);
    }
}
