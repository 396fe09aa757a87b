//! What a run leaves for people and tools, all derived from its journal:
//! the live progress while it runs ([`progress`]), `journal.json`
//! ([`summary`]), the reports ([`report`]), the history of runs
//! ([`history`]), the metrics published to CloudWatch ([`publish`]), the
//! notifications to SNS and EventBridge ([`notify`]) and a suite run's
//! scorecard ([`scorecard`]).
//!
//! [`text`] is the one place where an event becomes words; nothing below
//! this layer knows how an event is worded.

pub mod catalog;
pub mod due;
pub mod history;
pub mod notify;
pub mod progress;
pub mod publish;
pub mod report;
pub mod scorecard;
pub mod summary;
pub mod text;

pub use summary::{JOURNAL_FILE, Summary, load, write_run_records};
