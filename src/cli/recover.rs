//! `gameday recover [RUN_ID]`: finishes what a run left behind, from its journal.

use std::path::{Path, PathBuf};

use crate::output::progress::Progress;
use crate::store::Runs;

use super::shared::connect;
use super::{AwsArgs, Error, Outcome};
use crate::aws::Aws;
use crate::journal::Event;
use crate::model::AwsTarget;

/// Without `run_id`, lists the runs that need recovery; with it, recovers
/// that run. Unfinished when something is still to undo.
pub(super) async fn recover(
    run_id: Option<String>,
    force: bool,
    runs_dir: &Path,
    aws_args: &AwsArgs,
) -> Result<Outcome, Error> {
    let runs = Runs::open(runs_dir, &aws_args.options()).await?;
    let Some(run_id) = run_id else {
        runs.pull_all().await?;
        return list(&runs);
    };
    // Refused before anything else: a run id that is a path, or a symlink out of the runs folder.
    let dir = crate::journal::run_dir(&runs.local, &run_id).map_err(crate::recover::RecoverError::from)?;
    if !runs.pull(&run_id).await? {
        return Err(crate::recover::RecoverError::NoSuchRun {
            run_id,
            dir: PathBuf::from(runs.describe()),
        }
        .into());
    }
    let aws = connect_as_run(&dir, aws_args).await?;
    let r = crate::recover::recover(
        &aws,
        &runs.local,
        &run_id,
        force,
        runs.remote_for(&run_id),
        Box::new(Progress::auto(false)),
    )
    .await?;
    if r.journaled {
        crate::output::write_run_records(&dir);
        runs.push(&run_id).await?;
    }
    if r.unfinished.is_empty() && r.undone == 0 {
        println!(
            "run {run_id}: nothing to recover: every fault was rolled back and everything the run created is gone"
        );
        Ok(Outcome::Done)
    } else if r.unfinished.is_empty() {
        println!(
            "run {run_id}: recovered: {} call(s) undone; journal: {}",
            r.undone,
            dir.join(crate::output::JOURNAL_FILE).display()
        );
        Ok(Outcome::Done)
    } else {
        println!("run {run_id}: recovery incomplete, still to do:");
        for u in &r.unfinished {
            println!("  {}", u.describe());
        }
        println!("fix the cause (see the errors above) and run `gameday recover {run_id}` again");
        Ok(Outcome::Unfinished)
    }
}

/// The clients the run used: when it assumed a role (its journal's
/// `connected`), the same role in the same region, under the same session
/// name; else the command line's.
async fn connect_as_run(dir: &Path, aws_args: &AwsArgs) -> Result<Aws, Error> {
    let connected = crate::journal::read_events(dir)
        .ok()
        .into_iter()
        .flatten()
        .find_map(|e| match e.event {
            Event::Connected {
                region,
                role_arn,
                external_id,
                session,
                ..
            } => Some((
                AwsTarget {
                    role_arn: Some(role_arn),
                    external_id,
                    region: Some(region),
                },
                session,
            )),
            _ => None,
        });
    match connected {
        Some((target, session)) => {
            let (aws, assumed) = Aws::connect_to(&aws_args.options(), &target, &session)
                .await
                .map_err(|e| Error::Assume(Box::new(e)))?;
            if let Some(a) = assumed {
                eprintln!(
                    "recover: assumed {} again as session {} (account {}, region {})",
                    a.role_arn, a.session, a.account, a.region
                );
            }
            Ok(aws)
        }
        None => connect(aws_args).await,
    }
}

/// The runs with faults or temporary resources left behind.
fn list(store: &Runs) -> Result<Outcome, Error> {
    let runs = crate::recover::needing_recovery(&store.local).map_err(Error::RecoveryList)?;
    if runs.is_empty() {
        println!("no run in {} needs recovery", store.describe());
        return Ok(Outcome::Done);
    }
    println!(
        "runs with faults or temporary resources left behind (recover each with `gameday recover RUN_ID`):"
    );
    for r in runs {
        let state = if r.verdict.is_some() {
            "rollback incomplete"
        } else {
            "runner stopped without finishing"
        };
        println!(
            "  {}  {}  started {}  {}: {} call(s) to undo",
            r.run_id,
            r.experiment,
            r.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            state,
            r.pending.len()
        );
    }
    Ok(Outcome::Done)
}
