//! `gameday cleanup [--dry-run]`: deletes gameday resources of finished or
//! expired runs, found by their tags.

use std::path::Path;

use super::shared::{connect, load_policy};
use super::{AwsArgs, Error, Outcome};

/// Removes (or with `dry_run` lists) every leftover; unfinished when one
/// could not be removed (each failure is reported as it happens).
pub(super) async fn cleanup(
    dry_run: bool,
    policy: Option<&Path>,
    runs_dir: &Path,
    aws_args: &AwsArgs,
) -> Result<Outcome, Error> {
    let policy = load_policy(policy, None)?;
    let aws = connect(aws_args).await?;
    // With a shared store, whether a run is finished is read from its records there.
    let runs = crate::store::Runs::open(runs_dir, &aws_args.options()).await?;
    runs.pull_all().await?;
    let table = policy.policy.locks.as_ref().map(|l| l.table.as_str());
    let leftovers = crate::recover::find_leftovers(&aws, &runs.local, table)
        .await
        .map_err(Error::Leftovers)?;
    if leftovers.is_empty() {
        println!("nothing to clean up: no gameday resource of a finished or expired run");
        return Ok(Outcome::Done);
    }
    let mut failed = 0;
    for l in &leftovers {
        if dry_run {
            println!("would remove {l}");
            continue;
        }
        match crate::recover::remove(&aws, l).await {
            Ok(()) => println!("removed {l}"),
            Err(e) => {
                failed += 1;
                eprintln!("error: could not remove {l}: {e}");
            }
        }
    }
    if dry_run {
        println!(
            "{} leftover(s); run without --dry-run to remove them",
            leftovers.len()
        );
    }
    Ok(if failed > 0 {
        Outcome::Unfinished
    } else {
        Outcome::Done
    })
}
