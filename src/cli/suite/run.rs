//! `gameday suite run FILE`: every experiment of the suite through the
//! engine's run path (the one `gameday run` takes: each gets its own run
//! folder, journal and reports), then the scorecard in the suite's own run
//! folder, `<runs-dir>/suite-<id>/`.
//!
//! Scheduling: experiments start in the suite's order, at most `concurrency`
//! at once; an experiment whose targets meet those of one still running
//! (same group, same instance: [`super::lock_keys`]) waits and a later one
//! that is free may start first. Locks would refuse it anyway; waiting turns
//! that refusal into an order. After an outcome that `stop_on` names, or an
//! operator's signal, no further experiment starts; those already running
//! finish with their own rollback (a signal reaches them too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Planned, SuitePlan, build, lock_keys};
use crate::cli::shared::random_seed;
use crate::cli::{AwsArgs, Error, NotifyArgs, Outcome, SafetyArgs};
use crate::engine::{self, Reporter, RunOptions, SignalHandling};
use crate::gate::{self, Admission, Approval};
use crate::journal::Verdict;
use crate::output::notify::{self, Notifier, Notifying};
use crate::output::progress::Progress;
use crate::output::scorecard::{self, FORMULA, Row, Scorecard};
use crate::store::Runs;
use crate::suite::StopOn;

/// What `suite run` shows, and where each run's notifications go.
pub(in crate::cli) struct Shown {
    pub(in crate::cli) quiet: bool,
    /// Whether a suite needing approval may ask on a terminal (`run-due` never asks).
    pub(in crate::cli) interactive: bool,
    /// Over each experiment's policy's `notifications`.
    pub(in crate::cli) notify: NotifyArgs,
}

/// A suite run that ended: its outcome for the exit code, and the id of its
/// folder (`None`: refused before it had one).
pub(in crate::cli) struct SuiteRan {
    pub(in crate::cli) outcome: Outcome,
    pub(in crate::cli) suite_run_id: Option<String>,
}

/// Runs the suite and writes its scorecard; the outcome is GO or NO-GO.
pub(in crate::cli) async fn run(
    file: &Path,
    seed: Option<u64>,
    runs_dir: PathBuf,
    shown: Shown,
    approve: Option<String>,
    safety: &SafetyArgs,
    aws: &AwsArgs,
) -> Result<Outcome, Error> {
    run_recorded(file, seed, runs_dir, shown, approve, safety, aws)
        .await
        .map(|r| r.outcome)
}

/// Runs the suite, writes its scorecard, and refreshes the catalog of the
/// runs folder when there is one; `run-due` runs a due suite through here.
pub(in crate::cli) async fn run_recorded(
    file: &Path,
    seed: Option<u64>,
    runs_dir: PathBuf,
    shown: Shown,
    approve: Option<String>,
    safety: &SafetyArgs,
    aws: &AwsArgs,
) -> Result<SuiteRan, Error> {
    let seed = seed.unwrap_or_else(random_seed);
    let sp = build(file, seed, safety, aws).await?;
    // A folder, or an S3 store through its scratch folder (each run pushed as it ends).
    let runs = Runs::open(&runs_dir, &aws.options()).await?;
    let runs_dir = runs.local.clone();
    let approved = match approval(&sp, approve, shown.interactive) {
        Ok(a) => a,
        Err(why) => {
            eprintln!("error: the suite is refused, nothing was touched: {why}");
            return Ok(SuiteRan {
                outcome: Outcome::Ran {
                    verdict: Verdict::NotRun,
                    refused: true,
                },
                suite_run_id: None,
            });
        }
    };
    // Halted (`gameday halt`) where any experiment acts: none starts.
    for m in &sp.members {
        let parameter = &m.loaded.policy.policy.halt_parameter;
        if let Some(h) = crate::cli::halt::in_force(&m.aws, parameter).await? {
            eprintln!(
                "error: the suite is refused, nothing was touched: {}; `gameday resume` lifts it",
                h.describe()
            );
            return Ok(SuiteRan {
                outcome: Outcome::Ran {
                    verdict: Verdict::NotRun,
                    refused: true,
                },
                suite_run_id: None,
            });
        }
    }
    let id = format!("suite-{}", engine::new_run_id());
    let dir = runs_dir.join(&id);
    std::fs::create_dir_all(&dir).map_err(|source| Error::SuiteRecords {
        path: dir.clone(),
        source,
    })?;
    let started_at = Timestamp::now();
    if !shown.quiet {
        eprintln!(
            "suite {}: `{}`, {} experiment(s), plan {}, records in {}",
            id,
            sp.suite.name,
            sp.members.len(),
            sp.hash,
            dir.display()
        );
    }
    let (rows, stopped, interrupted) = schedule(&sp, approved, &runs, &shown, safety).await;
    let score = scorecard::score(&rows);
    let (go, because) = scorecard::decide(&rows, score, sp.suite.go_no_go.min_score);
    let card = Scorecard {
        scorecard_version: scorecard::SCORECARD_VERSION,
        suite: sp.suite.name.clone(),
        file: sp.suite.file.clone(),
        suite_sha256: crate::util::sha256_hex(sp.suite.source.as_bytes()),
        suite_run_id: id.clone(),
        plan_hash: sp.hash.clone(),
        started_at,
        finished_at: Timestamp::now(),
        concurrency: sp.suite.concurrency,
        stop_on: sp.suite.stop_on,
        min_score: sp.suite.go_no_go.min_score,
        rows,
        score,
        formula: FORMULA.to_string(),
        go,
        because,
        stopped,
    };
    scorecard::write_all(&dir, &card).map_err(Error::Report)?;
    if let Err(e) = runs.push(&id).await {
        eprintln!(
            "warning: the scorecard was not uploaded to {} ({e}); it is in {}",
            runs.describe(),
            dir.display()
        );
    }
    println!(
        "suite: {} (readiness {}/100{})",
        card.decision(),
        card.score,
        card.min_score
            .map(|m| format!(", GO needs {m}"))
            .unwrap_or_default()
    );
    for r in &card.rows {
        println!(
            "  {:<8} {:<12} {:<32} {}",
            r.role.as_str(),
            r.outcome(),
            r.experiment,
            r.run_id
                .as_ref()
                .map(|rid| runs_dir
                    .join(rid)
                    .join(crate::output::report::HTML_FILE)
                    .display()
                    .to_string())
                .unwrap_or_else(|| r.reason.clone())
        );
    }
    for b in &card.because {
        println!("  {b}");
    }
    println!("suite run: {id}");
    println!("scorecard: {}", dir.join(scorecard::HTML_FILE).display());
    println!("junit: {}", dir.join(scorecard::JUNIT_FILE).display());
    for r in &card.rows {
        if r.verdict == Some(Verdict::Error)
            && let Some(rid) = &r.run_id
        {
            eprintln!(
                "if `{}` left anything in effect: gameday recover {rid}",
                r.experiment
            );
        }
    }
    crate::cli::shared::refresh_catalog(&runs, safety.policy.as_deref()).await;
    Ok(SuiteRan {
        outcome: Outcome::Suite { go, interrupted },
        suite_run_id: Some(id),
    })
}

/// Each experiment's approval, or why the suite is refused. Approval is
/// asked for the whole suite when any experiment's policy wants it: the
/// suite's hash on the command line, or the suite's name typed on a
/// terminal; a hash given for another plan is refused as stale, as `run`
/// refuses a stale one.
fn approval(sp: &SuitePlan, given: Option<String>, interactive: bool) -> Result<Vec<Approval>, String> {
    let needed: Vec<String> = sp
        .members
        .iter()
        .filter_map(|m| {
            gate::approval_needed(&m.loaded.policy.policy, &m.loaded.exp)
                .map(|why| format!("`{}`: {why}", m.loaded.exp.name))
        })
        .collect();
    let for_plans = || {
        sp.members
            .iter()
            .map(|m| Approval::Hash(m.plan.hash.clone()))
            .collect()
    };
    let hint = format!(
        "review `gameday suite plan {}` and pass the hash it prints: --approve <hash>",
        sp.suite.file.display()
    );
    match given.map(|h| h.trim().to_ascii_lowercase()) {
        Some(h) if h == sp.hash => Ok(for_plans()),
        Some(h) => Err(format!(
            "the approval {h} is for another plan (this suite's plan is {}): the suite, an experiment, a policy, the region or the targets changed since it was approved; {hint}",
            sp.hash
        )),
        None if needed.is_empty() => Ok(sp.members.iter().map(|_| Approval::Missing).collect()),
        None if interactive && on_terminal() => {
            eprint!("{}", super::plan::render(sp));
            eprintln!("\nThis suite needs approval: {}", needed.join("; "));
            eprint!(
                "Type the suite's name (`{}`) to approve, anything else to cancel: ",
                sp.suite.name
            );
            let mut answer = String::new();
            if std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == sp.suite.name {
                Ok(for_plans())
            } else {
                Err("it was not confirmed on the terminal".to_string())
            }
        }
        None => Err(format!(
            "approval is needed ({}), and there is no terminal to ask on; {hint}",
            needed.join("; ")
        )),
    }
}

fn on_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Why no further experiment starts, after `row`, under `rule`.
fn stops(rule: StopOn, row: &Row) -> Option<String> {
    let v = row.verdict?;
    let stop = match v {
        Verdict::Interrupted => true,
        Verdict::Aborted | Verdict::Error => rule != StopOn::Never,
        Verdict::Passed => false,
        Verdict::Failed | Verdict::NotRun => rule == StopOn::Failure,
    };
    stop.then(|| {
        if v == Verdict::Interrupted {
            format!("`{}` was interrupted by an operator", row.experiment)
        } else {
            format!(
                "stop_on: {}: `{}` ended {}",
                rule.as_str(),
                row.experiment,
                v.as_str()
            )
        }
    })
}

/// Runs the experiments (see the module docs); returns a row per
/// experiment in the suite's order, why later ones were not started, and
/// whether an operator stopped the suite.
async fn schedule(
    sp: &SuitePlan,
    approvals: Vec<Approval>,
    runs: &Runs,
    shown: &Shown,
    safety: &SafetyArgs,
) -> (Vec<Row>, Option<String>, bool) {
    let n = sp.members.len();
    let keys: Vec<BTreeSet<String>> = sp
        .members
        .iter()
        .map(|m| lock_keys(&m.loaded.exp, &m.plan))
        .collect();
    let stop = CancellationToken::new();
    let signalled = listen_for_signals(stop.clone());
    let mut rows: Vec<Option<Row>> = vec![None; n];
    let mut pending: Vec<usize> = (0..n).collect();
    let mut running: BTreeSet<usize> = BTreeSet::new();
    let mut tasks: JoinSet<(usize, Result<engine::Outcome, String>)> = JoinSet::new();
    let mut ids: std::collections::HashMap<tokio::task::Id, usize> = std::collections::HashMap::new();
    let mut stopped: Option<String> = None;
    let concurrency = sp.suite.concurrency.max(1) as usize;
    loop {
        if stopped.is_none() && stop.is_cancelled() {
            stopped = Some("an operator stopped the suite (SIGINT/SIGTERM/SIGHUP)".to_string());
        }
        if stopped.is_none() {
            let mut k = 0;
            while k < pending.len() && running.len() < concurrency {
                let i = pending[k];
                if running.iter().any(|r| !keys[*r].is_disjoint(&keys[i])) {
                    k += 1;
                    continue;
                }
                pending.remove(k);
                running.insert(i);
                let m = &sp.members[i];
                if !shown.quiet {
                    eprintln!(
                        "suite: starting {} of {n}: `{}` ({})",
                        i + 1,
                        m.loaded.exp.name,
                        m.loaded.member.role.as_str()
                    );
                }
                let handle = tasks.spawn(start(
                    sp,
                    m,
                    approvals[i].clone(),
                    runs,
                    shown,
                    concurrency,
                    safety,
                    i,
                ));
                ids.insert(handle.id(), i);
            }
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = tasks.join_next_with_id() => j,
            _ = stop.cancelled(), if stopped.is_none() => continue,
        };
        let Some(joined) = joined else { break };
        let (i, result) = match joined {
            Ok((_, r)) => r,
            // A run task that panicked: the engine rolls back its own faults;
            // the suite records an error for the experiment.
            Err(e) => {
                let Some(&i) = ids.get(&e.id()) else { break };
                (
                    i,
                    Ok(engine::Outcome {
                        run_id: String::new(),
                        dir: PathBuf::new(),
                        verdict: Verdict::Error,
                        reason: format!("the run's task failed: {e}"),
                        unfinished: Vec::new(),
                        refused: false,
                    }),
                )
            }
        };
        running.remove(&i);
        let m = &sp.members[i];
        let row = finished(m, result);
        if !shown.quiet {
            eprintln!(
                "suite: `{}` ended {} ({})",
                row.experiment,
                row.outcome(),
                row.reason
            );
        }
        if stopped.is_none() {
            stopped = stops(sp.suite.stop_on, &row);
        }
        rows[i] = Some(row);
    }
    let why = stopped
        .clone()
        .map(|s| format!("not started: {s}"))
        .unwrap_or_else(|| "not started".to_string());
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let m = &sp.members[i];
                Row::not_started(
                    &m.loaded.exp.name,
                    &m.loaded.member.file,
                    m.loaded.member.role,
                    &why,
                )
            })
        })
        .collect();
    let interrupted = signalled.is_cancelled();
    let rows: Vec<Row> = rows;
    // Only worth a line on the scorecard when it kept an experiment from starting.
    let stopped = stopped
        .filter(|_| rows.iter().any(|r| r.verdict.is_none()))
        .map(|s| format!("Some experiments were not started: {s}."));
    (rows, stopped, interrupted)
}

/// Starts one experiment's run: what `gameday run FILE --approve` does.
#[allow(clippy::too_many_arguments)]
fn start(
    sp: &SuitePlan,
    m: &Planned,
    approval: Approval,
    runs: &Runs,
    shown: &Shown,
    concurrency: usize,
    safety: &SafetyArgs,
    index: usize,
) -> impl std::future::Future<Output = (usize, Result<engine::Outcome, String>)> + use<> {
    let exp = m.loaded.exp.clone();
    let base = m.aws.clone();
    let target = m.target.clone();
    let connect = sp.connect.clone();
    // Chosen here: an assumed role's session is named after the run.
    let run_id = engine::new_run_id();
    // A live status per run would overwrite another's: concurrent runs print lines.
    let progress = if shown.quiet {
        Progress::Quiet
    } else if concurrency > 1 {
        Progress::Plain
    } else {
        Progress::auto(false)
    };
    let progress: std::sync::Arc<dyn Reporter> = std::sync::Arc::new(progress);
    // Notifications go out with the runner's own credentials (the topic and
    // bus are the platform team's), whatever role the run itself assumes.
    let notifier = Notifier::start(
        &base,
        shown.notify.over(&m.loaded.policy.policy.notifications),
        notify::Context::of(
            &exp,
            m.account.as_ref().map(|a| a.id.clone()),
            runs.local.clone(),
            &runs.describe(),
        ),
        progress.clone(),
    );
    let mut opts = RunOptions {
        runs_dir: runs.local.clone(),
        store: runs.remote.clone(),
        seed: Some(sp.seed),
        signals: SignalHandling::Standard,
        progress: Box::new(Notifying::new(progress, notifier.clone())),
        safety: Admission {
            policy: m.loaded.policy.clone(),
            account: m.account.clone(),
            now: safety.now,
            approval,
        },
        run_id: Some(run_id.clone()),
        assumed: None,
    };
    let runs = runs.clone();
    async move {
        let aws = if target.role_arn.is_some() {
            match crate::aws::Aws::connect_to(&connect, &target, &crate::model::session_name(&run_id)).await {
                Ok((aws, assumed)) => {
                    if let Some(a) = &assumed {
                        opts.safety.account = Some(crate::policy::account::Account {
                            id: a.account.clone(),
                            source: format!("assumed role {}, sts:GetCallerIdentity", a.role_arn),
                        });
                    }
                    opts.assumed = assumed;
                    aws
                }
                Err(e) => return (index, Err(format!("the run could not start: {e}"))),
            }
        } else {
            base
        };
        let result = engine::run(&exp, &aws, opts)
            .await
            .map_err(|e| format!("the run could not start recording: {e}"));
        if let Ok(o) = &result {
            crate::output::write_run_records(&o.dir);
            // The write-ahead chunks are there already; this adds the whole log and the records.
            if let Err(e) = runs.push(&o.run_id).await {
                eprintln!(
                    "warning: the records of {} were not uploaded to {} ({e}); they are in {}",
                    o.run_id,
                    runs.describe(),
                    o.dir.display()
                );
            }
        }
        if let Some(n) = &notifier {
            n.close(notify::DRAIN_LIMIT).await;
        }
        (index, result)
    }
}

/// The scorecard row of a finished run, from its journal.
fn finished(m: &Planned, result: Result<engine::Outcome, String>) -> Row {
    let (file, role) = (&m.loaded.member.file, m.loaded.member.role);
    let name = &m.loaded.exp.name;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let mut r = Row::not_started(name, file, role, &e);
            r.verdict = Some(Verdict::Error);
            return r;
        }
    };
    let link = format!("../{}/{}", outcome.run_id, crate::output::report::HTML_FILE);
    match crate::output::load(&outcome.dir) {
        Ok(s) => Row::from_summary(&s, file, role, link),
        Err(e) => {
            let mut r = Row::not_started(
                name,
                file,
                role,
                &format!("{} (its journal.json cannot be read: {e})", outcome.reason),
            );
            r.verdict = Some(outcome.verdict);
            if !outcome.run_id.is_empty() {
                r.run_id = Some(outcome.run_id);
                r.report = Some(link);
            }
            r
        }
    }
}

/// Cancels `stop` on the first SIGINT, SIGTERM or SIGHUP. Installed before
/// any experiment starts: once a handler exists the default action (exit)
/// is gone for the process, so between two runs the suite must hear them.
fn listen_for_signals(stop: CancellationToken) -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let heard = CancellationToken::new();
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ];
    for kind in kinds {
        let Ok(mut s) = signal(kind) else { continue };
        let (stop, heard) = (stop.clone(), heard.clone());
        tokio::spawn(async move {
            if s.recv().await.is_some() {
                heard.cancel();
                stop.cancel();
            }
        });
    }
    heard
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::scorecard::tests::row;
    use crate::suite::Role;

    #[test]
    fn stop_on_names_the_outcomes_after_which_nothing_starts() {
        let aborted = row("a", Role::Advisory, Some(Verdict::Aborted));
        let failed = row("f", Role::Blocking, Some(Verdict::Failed));
        let passed = row("p", Role::Blocking, Some(Verdict::Passed));
        let interrupted = row("i", Role::Blocking, Some(Verdict::Interrupted));
        assert!(stops(StopOn::Abort, &aborted).is_some());
        assert!(stops(StopOn::Abort, &failed).is_none());
        assert!(stops(StopOn::Failure, &failed).is_some());
        assert!(stops(StopOn::Never, &aborted).is_none());
        assert!(
            stops(StopOn::Never, &interrupted).is_some(),
            "an operator always stops the suite"
        );
        assert!(stops(StopOn::Failure, &passed).is_none());
    }
}
