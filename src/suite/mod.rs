//! The suite model: a list of experiments run together as a readiness gate
//! (`suites/*.yaml`), decoded and checked like an experiment file. Decoding
//! lives in [`parse`], path patterns in [`glob`]; this file holds the types
//! the command line runs and the scorecard reports.
//!
//! A suite says which experiments run (paths or glob patterns relative to the
//! suite file), whether each one gates the launch (`blocking`) or only informs
//! (`advisory`), how many may run at once (`concurrency`), when to stop
//! starting new ones (`stop_on`), what GO means (`go_no_go`) and when
//! `gameday run-due` runs it (`schedule`, the same block as an experiment's).
//! The keys are the public interface, documented in the README ("Suites").

pub mod glob;
mod parse;

use std::path::{Path, PathBuf};

pub(crate) use parse::document as schema;
pub use parse::{LoadError, SUITE_KEYS, load, load_str};

pub use crate::model::AwsTarget;
use crate::schedule::Schedule;
use crate::yaml::{Loc, Spanned};

/// The only suite format version this runner reads.
pub const FORMAT_VERSION: u64 = 1;

/// Whether `file` is a suite rather than an experiment: a YAML mapping with
/// an `experiments` key (an experiment may not have that key). Anything else
/// (unreadable, not YAML) is taken for an experiment, whose decoder reports
/// the problem with its position.
pub fn is_suite_file(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    match crate::yaml::parse(file, &text) {
        Ok(marked_yaml::Node::Mapping(m)) => m.get_node("experiments").is_some(),
        _ => false,
    }
}

/// A decoded, validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The file it came from, as the user named it.
    pub file: PathBuf,
    /// The file's exact text (its SHA-256 goes into the suite's approval hash).
    pub source: String,
    /// Short, tag-safe name.
    pub name: String,
    /// What the suite is for, in a sentence.
    pub description: Option<String>,
    /// Who owns the launch this suite gates.
    pub owner: Option<String>,
    /// The `experiments` list as written, each entry with the files it matched.
    pub entries: Vec<Entry>,
    /// How many experiments may run at once (default 1: one after another).
    /// Experiments that share a target never run at once, whatever this says.
    pub concurrency: u32,
    /// When to stop starting further experiments.
    pub stop_on: StopOn,
    /// What GO means besides every blocking experiment passing.
    pub go_no_go: GoNoGo,
    /// When `gameday run-due` runs the suite (`None`: by hand only).
    pub schedule: Option<Schedule>,
}

impl Suite {
    /// Every experiment file of the suite with its role, in the order the
    /// entries list them (a pattern's matches sorted by path). A file appears
    /// once: the decoder rejects a file matched twice.
    pub fn experiments(&self) -> Vec<Member> {
        self.entries
            .iter()
            .flat_map(|e| {
                e.files.iter().map(|f| Member {
                    file: f.clone(),
                    role: e.role,
                    aws: e.aws.clone(),
                })
            })
            .collect()
    }
}

/// One experiment of a suite, resolved to its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The experiment file (relative to the current folder when the suite's was).
    pub file: PathBuf,
    /// Whether it gates the launch.
    pub role: Role,
    /// The entry's `aws:` (role and region), over the experiment's own.
    pub aws: AwsTarget,
}

/// One item of the `experiments` list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path or glob pattern as written (relative to the suite file).
    pub path: Spanned<String>,
    /// Blocking or advisory.
    pub role: Role,
    /// The files it matched, sorted; never empty.
    pub files: Vec<PathBuf>,
    /// Where the entry starts.
    pub loc: Loc,
    /// `aws:`: the role to assume and the region, for each of its files.
    pub aws: AwsTarget,
}

/// Whether an experiment gates the launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It must pass for GO (the default).
    #[default]
    Blocking,
    /// It is run and reported, counts in the readiness score, but never
    /// decides GO by itself.
    Advisory,
}

impl Role {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Blocking => "blocking",
            Role::Advisory => "advisory",
        }
    }
}

/// `stop_on`: after which outcome no further experiment is started.
/// Experiments already running finish normally (with their own rollback).
/// An operator's Ctrl-C always stops the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOn {
    /// An experiment aborted (a guardrail tripped: users may be hurting), or
    /// ended in `error` (the runner could not do its job). The default.
    #[default]
    Abort,
    /// Any experiment did not pass (failed, aborted, not-run, error).
    Failure,
    /// Every experiment runs whatever the others did.
    Never,
}

impl StopOn {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            StopOn::Abort => "abort",
            StopOn::Failure => "failure",
            StopOn::Never => "never",
        }
    }
}

/// `go_no_go`: the rule for GO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoNoGo {
    /// GO also needs a readiness score of at least this (0 to 100).
    pub min_score: Option<u32>,
}
