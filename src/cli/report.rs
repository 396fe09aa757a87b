//! `gameday report RUN_ID|PATH`: a run's reports, written again from its journal.

use std::path::Path;

use super::{Error, Outcome};

/// Finds the run and writes its reports, naming each file written.
pub(super) fn report(run: &str, runs_dir: &Path) -> Result<Outcome, Error> {
    let path = crate::output::history::find(runs_dir, run)?;
    for f in crate::output::report::regenerate(&path)? {
        println!("wrote {}", f.display());
    }
    Ok(Outcome::Done)
}
