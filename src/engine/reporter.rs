//! How the engine tells the world what a run is doing, without knowing how
//! it is shown: the command line passes a [`Reporter`] (the live progress of
//! `output::progress`), so the engine never words an event itself.

use jiff::Timestamp;

use crate::journal::Entry;

/// Receives a run's events as they are journaled, and the engine's transient
/// status. Implementations must not block: they are called on the run's path.
pub trait Reporter: Send + Sync + std::fmt::Debug {
    /// A journal entry, just recorded.
    fn event(&self, entry: &Entry);
    /// A countdown to show until the next phase (the baseline, recovery).
    fn countdown(&self, what: &str, until: Timestamp);
    /// The engine's own status, replacing the previous one (e.g. the fault phase's).
    fn status(&self, text: &str);
    /// One line for the operator (warnings).
    fn line(&self, text: &str);
    /// The run is over: remove any live display.
    fn finish(&self);
}
