//! What a command ends with: an [`Outcome`] when it did its job (whatever the
//! verdict), an [`Error`] when it could not. Commands never pick exit codes;
//! [`super::exit`] maps both, in one place.

use std::path::PathBuf;

use crate::aws::{AwsError, ConnectError};
use crate::engine::RunError;
use crate::journal::{JournalError, Verdict};
use crate::output::history::HistoryError;
use crate::output::report::ReportError;
use crate::plan::PlanError;
use crate::policy::PolicyError;
use crate::recover::RecoverError;
use crate::yaml::FileErrors;

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked: every file valid, reports written, history
    /// listed, nothing left to recover or clean up, a script printed.
    Done,
    /// `run`: the run ended. The engine's verdict is the truth; `refused`
    /// says that a `not-run` came from the safety gate.
    Ran {
        /// The run's verdict, as journaled.
        verdict: Verdict,
        /// The safety gate refused the run (the verdict is then `not-run`).
        refused: bool,
    },
    /// `plan`: what a run of this plan would meet before touching anything.
    Planned(PlanVerdict),
    /// `history --fail-on-regression`: the latest run of an experiment is a regression.
    Regression,
    /// `recover`, `cleanup`: something is still left behind (listed on the way).
    Unfinished,
    /// `run-due`: what the runs it started came to.
    RanDue {
        /// The most severe run (see `exit::worst_run`); `None`: nothing ran.
        worst: Option<(Verdict, bool)>,
        /// Some experiment files were invalid (they were skipped).
        invalid: bool,
        /// A slot could not be claimed, or a run could not start.
        errors: bool,
    },
    /// `halt`, `resume`: whether the kill switch is on now.
    Halt {
        /// Runs are halted.
        on: bool,
    },
    /// `suite run`: the scorecard is written; GO or NO-GO.
    Suite {
        /// Every blocking experiment passed (and the score is high enough).
        go: bool,
        /// An operator stopped the suite with a signal.
        interrupted: bool,
    },
}

/// What a run of a plan would meet, in the order the engine checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanVerdict {
    /// The run may go ahead (approval aside).
    MayRun,
    /// The safety policy would refuse it.
    Refused,
    /// A precondition does not hold (a guardrail cannot fire, a fault has no target).
    NotRun,
}

/// Why a command could not do its job. Printed after `error: `, except the
/// located diagnostics of input files (see [`Error::is_located`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tokio runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The runs store (`--runs-dir s3://...`) could not be used.
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    /// The AWS settings are incomplete (no region).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A path given to `validate` names nothing to check.
    #[error(transparent)]
    Paths(#[from] PathError),
    /// `validate`: some files are invalid (each was reported as it was checked).
    #[error("{invalid} of {of} file(s) invalid")]
    InvalidFiles {
        /// How many files are invalid.
        invalid: usize,
        /// How many files were checked.
        of: usize,
    },
    /// The experiment file cannot be read (missing, a folder, no permission).
    #[error(transparent)]
    UnreadableExperiment(crate::experiment::LoadError),
    /// The experiment file has problems, each with its position.
    #[error("{errors}\nnothing was touched: fix the experiment and run again (`gameday validate {}`)", file.display())]
    InvalidExperiment {
        /// The file, for the `validate` hint.
        file: PathBuf,
        /// Every problem found.
        errors: FileErrors,
    },
    /// The policy file cannot be read.
    #[error(transparent)]
    UnreadablePolicy(PolicyError),
    /// The policy file has problems, each with its position.
    #[error(
        "{0}\nnothing was touched: fix the safety policy and run again (`gameday policy show --policy FILE` checks it)"
    )]
    InvalidPolicy(FileErrors),
    /// The suite file cannot be read (missing, a folder, no permission).
    #[error(transparent)]
    UnreadableSuite(crate::suite::LoadError),
    /// The suite file has problems, each with its position.
    #[error("{errors}\nnothing was touched: fix the suite and run again (`gameday validate {}`)", file.display())]
    InvalidSuite {
        /// The file, for the `validate` hint.
        file: PathBuf,
        /// Every problem found.
        errors: FileErrors,
    },
    /// `suite plan`, `suite run`: an experiment of the suite could not be planned.
    #[error("experiment {}: {source}", file.display())]
    SuiteMember {
        /// The experiment's file.
        file: PathBuf,
        /// What went wrong.
        source: Box<Error>,
    },
    /// `suite run`: the suite's run folder or scorecard cannot be written.
    #[error("cannot write the suite's records {}: {source}", path.display())]
    SuiteRecords {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `plan`: the plan could not be built (AWS reads, a missing group).
    /// Boxed: a plan error carries AWS errors, and every command's result
    /// should stay small.
    #[error(transparent)]
    Plan(Box<PlanError>),
    /// `plan --output json`: the plan could not be serialised.
    #[error("cannot write the plan as JSON: {0}")]
    PlanJson(#[source] serde_json::Error),
    /// `run`: the run could not even start recording.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `recover RUN_ID`: the run cannot be recovered now.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// `recover`: the runs folder could not be read to list the runs needing it.
    #[error(transparent)]
    RecoveryList(JournalError),
    /// `cleanup`: the leftovers could not be looked up.
    #[error(transparent)]
    Leftovers(AwsError),
    /// `halt`, `resume`, and `run-due` or `suite run` checking it: the kill
    /// switch could not be read or changed.
    #[error("the kill switch: {0}")]
    Halt(AwsError),
    /// The role of an experiment's (or a suite entry's) `aws.role_arn`
    /// could not be assumed; nothing was touched.
    #[error("{0}; nothing was touched")]
    Assume(Box<crate::aws::AssumeError>),
    /// `locks create-table`: the lease table could not be created.
    #[error(transparent)]
    LeaseTable(AwsError),
    /// `report`, `history`: a run or the runs folder is missing, or a journal unreadable.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// `report`: the journal cannot be read, or a report cannot be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// `due`, `run-due`: a slot claim could not be read or made.
    #[error(transparent)]
    Claim(crate::due::claim::ClaimError),
    /// `catalog`: the catalog could not be written.
    #[error(transparent)]
    Catalog(crate::output::catalog::CatalogError),
    /// `history --diff`: the two runs are of different experiments.
    #[error(
        "run {a} is of experiment `{experiment_a}` and run {b} of `{experiment_b}`: --diff compares two runs of one experiment"
    )]
    DiffOfTwoExperiments {
        /// The first run's id.
        a: String,
        /// Its experiment.
        experiment_a: String,
        /// The second run's id.
        b: String,
        /// Its experiment.
        experiment_b: String,
    },
    /// `schema --write`: a schema file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    SchemaWrite {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the message is a list of located diagnostics (`file:line:col:
    /// error: ...`) or a count of them, printed as it is rather than after `error: `.
    pub fn is_located(&self) -> bool {
        matches!(
            self,
            Error::InvalidFiles { .. }
                | Error::InvalidExperiment { .. }
                | Error::InvalidPolicy(_)
                | Error::InvalidSuite { .. }
        )
    }

    /// Writes the error to stderr.
    pub fn eprint(&self) {
        if self.is_located() {
            eprintln!("{self}");
        } else {
            eprintln!("error: {self}");
        }
    }
}

impl From<PolicyError> for Error {
    /// Unreadable is a usage error (a wrong path); invalid is an input error.
    fn from(e: PolicyError) -> Error {
        match e {
            PolicyError::Invalid(errors) => Error::InvalidPolicy(errors),
            e => Error::UnreadablePolicy(e),
        }
    }
}

/// Why a path given to `validate` names nothing to check.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// A folder could not be listed.
    #[error("cannot read folder {}: {source}", dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A folder holds no experiment file.
    #[error("no experiment files (*.yaml, *.yml) in {}", .0.display())]
    NoExperiments(PathBuf),
    /// Nothing exists at the path.
    #[error("{}: no such file or folder", .0.display())]
    Missing(PathBuf),
}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Error {
        Error::Plan(Box::new(e))
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Error {
        Error::Store(Box::new(e))
    }
}
