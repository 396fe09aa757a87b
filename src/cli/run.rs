//! `gameday run FILE`: a game day, start to finish, then its verdict.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use crate::engine::{self, Reporter, RunOptions, SignalHandling};
use crate::gate::{self, Admission, Approval};
use crate::journal::Verdict;
use crate::output::notify::{self, Notifier, Notifying};
use crate::output::progress::Progress;

use super::plan::render_plan;
use super::shared::{Prepared, build_plan, prepare, random_seed};
use super::{AwsArgs, Error, NotifyArgs, Outcome, Output, SafetyArgs};

/// What `run` shows, and where its outcome goes besides the run folder.
pub(super) struct Shown {
    pub(super) quiet: bool,
    pub(super) output: Output,
    pub(super) publish_metrics: bool,
    /// Whether a run needing approval may ask on a terminal (`run-due` never asks).
    pub(super) interactive: bool,
    /// Where notifications go, over the policy's.
    pub(super) notify: NotifyArgs,
}

/// A run that ended: its outcome for the exit code, and its id.
pub(super) struct Ran {
    pub(super) outcome: Outcome,
    pub(super) run_id: String,
}

/// Runs the experiment of `file` and prints its verdict; the outcome is the
/// engine's verdict.
pub(super) async fn run(
    file: &Path,
    seed: Option<u64>,
    runs_dir: PathBuf,
    shown: Shown,
    approve: Option<String>,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Result<Outcome, Error> {
    run_one(file, seed, runs_dir, shown, approve, safety_args, aws_args)
        .await
        .map(|r| r.outcome)
}

/// Runs the experiment of `file`, prints its verdict, and refreshes the
/// catalog of the runs folder when there is one.
pub(super) async fn run_one(
    file: &Path,
    seed: Option<u64>,
    runs_dir: PathBuf,
    shown: Shown,
    approve: Option<String>,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Result<Ran, Error> {
    let Shown {
        quiet,
        output,
        publish_metrics,
        interactive,
        notify,
    } = shown;
    // Chosen before connecting: an assumed role's session is named after it.
    let run_id = engine::new_run_id();
    let p = prepare(file, safety_args, aws_args, &crate::model::session_name(&run_id)).await?;
    let runs = crate::store::Runs::open(&runs_dir, &aws_args.options()).await?;
    // Chosen here so that the plan confirmed on a terminal is the run's plan.
    let seed = seed.unwrap_or_else(random_seed);
    let approval = match approve {
        // Hashes are lowercase hex; a pasted one may carry spaces or capitals.
        Some(hash) => Approval::Hash(hash.trim().to_ascii_lowercase()),
        None if interactive && gate::approval_needed(&p.policy.policy, &p.exp).is_some() && on_terminal() => {
            confirm_on_terminal(&p, seed, safety_args.now).await
        }
        None => Approval::Missing,
    };
    let Prepared {
        exp,
        policy,
        account,
        aws,
        assumed,
    } = p;
    let destinations = notify.over(&policy.policy.notifications);
    let context = notify::Context::of(
        &exp,
        account.as_ref().map(|a| a.id.clone()),
        runs.local.clone(),
        &runs_dir.to_string_lossy(),
    );
    let safety = Admission {
        policy,
        account,
        now: safety_args.now,
        approval,
    };
    let progress = if output == Output::Json {
        Progress::Json
    } else {
        Progress::auto(quiet)
    };
    let progress: Arc<dyn Reporter> = Arc::new(progress);
    // Notifications go out with the runner's own credentials (the topic and
    // bus are the platform team's), not the role the run assumes.
    let own = match &assumed {
        Some(_) if !destinations.is_empty() => super::shared::connect(aws_args).await?,
        _ => aws.clone(),
    };
    let notifier = Notifier::start(&own, destinations, context, progress.clone());
    let opts = RunOptions {
        runs_dir: runs.local.clone(),
        store: runs.remote.clone(),
        seed: Some(seed),
        signals: SignalHandling::Standard,
        progress: Box::new(Notifying::new(progress, notifier.clone())),
        safety,
        run_id: Some(run_id),
        assumed,
    };
    let outcome = engine::run(&exp, &aws, opts).await?;
    crate::output::write_run_records(&outcome.dir);
    // The write-ahead chunks are there already; this adds the whole log and the records.
    let pushed = runs.push(&outcome.run_id).await;
    if let Err(e) = &pushed {
        eprintln!(
            "warning: the run's records were not uploaded to {} ({e}); they are in {}",
            runs.describe(),
            outcome.dir.display()
        );
    }
    super::shared::refresh_catalog(&runs, safety_args.policy.as_deref()).await;
    if publish_metrics {
        let published = match crate::output::load(&outcome.dir) {
            Ok(summary) => crate::output::publish::publish(&aws, &summary)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(n) if output == Output::Text && !quiet => eprintln!(
                "published {n} metric(s) of the run to CloudWatch namespace {}",
                crate::output::publish::NAMESPACE
            ),
            Ok(_) => {}
            Err(e) => eprintln!("warning: the run's metrics were not published: {e}"),
        }
    }
    // Last, so that the end message's links lead to records that exist.
    if let Some(n) = &notifier {
        n.close(notify::DRAIN_LIMIT).await;
    }
    let dir = &outcome.dir;
    match output {
        Output::Json => {
            let last = serde_json::json!({
                "event": "finished",
                "run_id": outcome.run_id,
                "verdict": outcome.verdict,
                "reason": outcome.reason,
                "refused": outcome.refused,
                "journal": dir.join(crate::output::JOURNAL_FILE),
                "reports": [dir.join(crate::output::report::HTML_FILE), dir.join(crate::output::report::MARKDOWN_FILE), dir.join(crate::output::report::JUNIT_FILE)],
            });
            println!("{last}");
        }
        Output::Text => {
            println!("verdict: {} ({})", outcome.verdict.as_str(), outcome.reason);
            println!("run: {}", outcome.run_id);
            println!("journal: {}", dir.join(crate::output::JOURNAL_FILE).display());
            println!("report: {}", dir.join(crate::output::report::HTML_FILE).display());
            if runs.remote.is_some() && pushed.is_ok() {
                println!("store: {}/{}/", runs.describe(), outcome.run_id);
            }
            if outcome.verdict == Verdict::Error && !outcome.unfinished.is_empty() {
                eprintln!(
                    "some faults are still in effect: run `gameday recover {}` once the cause is fixed",
                    outcome.run_id
                );
            }
        }
    }
    Ok(Ran {
        outcome: Outcome::Ran {
            verdict: outcome.verdict,
            refused: outcome.refused,
        },
        run_id: outcome.run_id,
    })
}

fn on_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Shows the plan and asks for the experiment's name to be typed. A plan that
/// the policy refuses anyway is not offered for confirmation: the run then
/// reports every failed rule.
async fn confirm_on_terminal(p: &Prepared, seed: u64, now: Option<Timestamp>) -> Approval {
    let Ok(plan) = build_plan(p, seed).await else {
        return Approval::Missing;
    };
    let adm = Admission {
        policy: p.policy.clone(),
        account: p.account.clone(),
        now,
        approval: Approval::Hash(plan.hash.clone()),
    };
    let rules = gate::check(&adm, &p.exp, &plan);
    if !gate::admitted(&rules) {
        return Approval::Missing;
    }
    eprint!("{}", render_plan(&plan, &rules));
    eprintln!();
    eprintln!(
        "This run needs approval. It will act on: {}",
        if plan.target_ids().is_empty() {
            "(no instance)".to_string()
        } else {
            plan.target_ids().join(", ")
        }
    );
    eprint!(
        "Type the experiment's name (`{}`) to approve, anything else to cancel: ",
        p.exp.name
    );
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() || answer.trim() != p.exp.name {
        return Approval::Declined;
    }
    Approval::Hash(plan.hash)
}
