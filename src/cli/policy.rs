//! `gameday policy show`: the safety policy in force, checked.

use std::path::Path;

use super::shared::load_policy;
use super::{Error, Outcome};

/// Prints the policy in force (or `explicit`), with its source and hash.
pub(super) fn show(explicit: Option<&Path>) -> Result<Outcome, Error> {
    let loaded = load_policy(explicit, None)?;
    println!("# policy: {}", loaded.source);
    println!("# sha256: {}", loaded.sha256);
    print!("{}", loaded.text);
    Ok(Outcome::Done)
}
