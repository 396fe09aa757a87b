//! `gameday due [PATH...]`, `gameday run-due [PATH...]` and `gameday catalog
//! [PATH...]`: the schedules of experiment files, what is due now and why,
//! running each due slot once, and the catalog of everything.
//!
//! gameday has no scheduler of its own: a team's scheduler starts
//! `run-due` often (every 10 or 15 minutes); each due slot is claimed
//! before it runs (`due::claim`), so repeated or simultaneous triggers run it
//! once.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::aws::Aws;
use crate::due::claim::{Claim, Claimed, SlotStore};
use crate::due::{State, Status};
use crate::experiment::{self, Experiment};
use crate::journal::Verdict;
use crate::output;
use crate::policy;

use super::run::{Shown, run_one};
use super::shared::{connect, print_text};
use super::validate::experiment_files;
use super::{AwsArgs, Error, NotifyArgs, Outcome, Output, SafetyArgs};

/// A scheduled experiment and where it stands.
struct Scheduled {
    file: PathBuf,
    exp: Experiment,
    status: Status,
    /// Where its slots are claimed (its policy's lease table, or the runs folder).
    store: SlotStore,
}

/// The slot store of each policy: the lease table when the policy has
/// `locks`, else the runs folder; the AWS clients are built once, when a
/// first policy needs them.
struct Stores<'a> {
    runs_dir: &'a Path,
    aws_args: &'a AwsArgs,
    aws: Option<Aws>,
}

impl Stores<'_> {
    async fn for_policy(&mut self, locks: Option<&policy::Locks>) -> Result<SlotStore, Error> {
        let Some(locks) = locks else {
            return Ok(SlotStore::local(self.runs_dir));
        };
        let aws = match &self.aws {
            Some(a) => a.clone(),
            None => {
                let a = connect(self.aws_args).await?;
                self.aws = Some(a.clone());
                a
            }
        };
        Ok(SlotStore::leased(self.runs_dir, aws, &locks.table))
    }
}

/// What the files of `paths` hold: the scheduled experiments with their
/// standing at `now`, the unscheduled ones' names, and how many files are invalid.
async fn survey(
    paths: &[PathBuf],
    safety: &SafetyArgs,
    runs_dir: &Path,
    aws_args: &AwsArgs,
    now: Timestamp,
) -> Result<(Vec<Scheduled>, Vec<String>, usize), Error> {
    let files = experiment_files(paths)?;
    let mut stores = Stores {
        runs_dir,
        aws_args,
        aws: None,
    };
    let rows = output::due::runs(runs_dir);
    let mut scheduled = Vec::new();
    let mut unscheduled = Vec::new();
    let mut invalid = 0;
    for file in files {
        let exp = match experiment::load(&file) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                invalid += 1;
                continue;
            }
        };
        let Some(schedule) = exp.schedule.clone() else {
            unscheduled.push(exp.name.clone());
            continue;
        };
        let policy = policy::find_and_load(safety.policy.as_deref(), Some(&file))?;
        let store = stores.for_policy(policy.policy.locks.as_ref()).await?;
        let status = output::due::status(
            &exp.name,
            &schedule,
            &policy.policy.windows,
            exp.timing.max_duration,
            &rows,
            &store,
            now,
        )
        .await
        .map_err(Error::Claim)?;
        scheduled.push(Scheduled {
            file,
            exp,
            status,
            store,
        });
    }
    Ok((scheduled, unscheduled, invalid))
}

fn now_of(safety: &SafetyArgs) -> Timestamp {
    safety.now.unwrap_or_else(Timestamp::now)
}

/// `gameday due`: lists every scheduled experiment, what is due and why.
pub(super) async fn due(
    paths: &[PathBuf],
    output: Output,
    safety: &SafetyArgs,
    runs_dir: &Path,
    aws: &AwsArgs,
) -> Result<Outcome, Error> {
    let now = now_of(safety);
    let (scheduled, unscheduled, invalid) = survey(paths, safety, runs_dir, aws, now).await?;
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = scheduled
                .iter()
                .map(|s| {
                    let sch = s.exp.schedule.as_ref();
                    serde_json::json!({
                        "experiment": s.exp.name,
                        "file": s.file,
                        "schedule": sch.map(|x| x.describe()),
                        "state": s.status.state,
                        "slot": s.status.slot,
                        "why": s.status.why,
                        "next": s.status.next,
                        "last_run": s.status.last_run,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "now": now,
                "scheduled": items,
                "unscheduled": unscheduled,
                "invalid": invalid,
            });
            print_text(&format!("{doc:#}\n"));
        }
        Output::Text => print_text(&render(&scheduled, &unscheduled, now)),
    }
    if invalid > 0 {
        return Err(Error::InvalidFiles {
            invalid,
            of: invalid + scheduled.len() + unscheduled.len(),
        });
    }
    Ok(Outcome::Done)
}

fn render(scheduled: &[Scheduled], unscheduled: &[String], now: Timestamp) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "as of {}:", now.strftime("%Y-%m-%d %H:%M:%SZ"));
    if scheduled.is_empty() {
        let _ = writeln!(o, "no experiment has a schedule");
    }
    for s in scheduled {
        let sch = s.exp.schedule.as_ref();
        let _ = writeln!(
            o,
            "{:<9} {}  ({})",
            s.status.state.as_str().to_uppercase(),
            s.exp.name,
            s.file.display()
        );
        let _ = writeln!(
            o,
            "          schedule:  {}",
            sch.map(|x| x.describe()).unwrap_or_default()
        );
        let _ = writeln!(o, "          why:       {}", s.status.why);
        let last = match &s.status.last_run {
            Some(r) => format!(
                "{} at {} ({})",
                r.run_id,
                r.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                r.verdict.as_deref().unwrap_or("unfinished")
            ),
            None => "never run".to_string(),
        };
        let _ = writeln!(o, "          last run:  {last}");
        let next = match (&s.status.next, sch) {
            (Some(n), Some(x)) => x.local_text(n.due_at),
            _ => "none: the schedule has ended".to_string(),
        };
        let _ = writeln!(o, "          next slot: {next}");
    }
    if !unscheduled.is_empty() {
        let _ = writeln!(o, "not scheduled (run by hand): {}", unscheduled.join(", "));
    }
    o
}

/// `gameday run-due`: runs every due slot once, in file order, one at a
/// time; the outcome summarises the runs (see `exit::worst_of`).
pub(super) async fn run_due(
    paths: &[PathBuf],
    runs_dir: PathBuf,
    quiet: bool,
    publish_metrics: bool,
    safety: &SafetyArgs,
    aws: &AwsArgs,
    notify: &NotifyArgs,
) -> Result<Outcome, Error> {
    let now = now_of(safety);
    let (scheduled, _, invalid) = survey(paths, safety, &runs_dir, aws, now).await?;
    test_barrier();
    let mut ran: Vec<Outcome> = Vec::new();
    let mut errors = 0;
    let (mut deferred, mut done, mut taken) = (0, 0, 0);
    for s in &scheduled {
        let Some(slot) = s.status.slot else {
            continue;
        };
        match s.status.state {
            State::Due => {}
            State::Deferred => {
                deferred += 1;
                eprintln!("deferred: {}: {}", s.exp.name, s.status.why);
                continue;
            }
            State::Done | State::Waiting => {
                done += 1;
                continue;
            }
        }
        let mut claim = Claim::new(&s.exp.name, &slot, Timestamp::now());
        claim.owner = s.exp.owner.clone();
        match s.store.claim(&claim, s.status.next.as_ref(), now).await {
            Ok(Claimed::Won) => {}
            Ok(Claimed::Taken(other)) => {
                taken += 1;
                eprintln!(
                    "skipped: {}: slot {} already claimed by {}",
                    s.exp.name,
                    slot.key(),
                    other.holder()
                );
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {}: {e}", s.exp.name);
                continue;
            }
        }
        if !quiet {
            eprintln!("running: {}: {}", s.exp.name, s.status.why);
        }
        let shown = Shown {
            quiet,
            output: Output::Text,
            publish_metrics,
            interactive: false,
            notify: notify.clone(),
        };
        match run_one(&s.file, None, runs_dir.clone(), shown, None, safety, aws).await {
            Ok(r) => {
                claim.run_id = Some(r.run_id);
                if let Outcome::Ran { verdict, .. } = r.outcome {
                    claim.verdict = Some(verdict.as_str().to_string());
                }
                ran.push(r.outcome);
            }
            Err(e) => {
                errors += 1;
                claim.verdict = Some(format!("not started: {e}"));
                e.eprint();
            }
        }
        if let Err(e) = s.store.record(&claim).await {
            eprintln!("warning: {e}");
        }
        if matches!(
            ran.last(),
            Some(Outcome::Ran {
                verdict: Verdict::Interrupted,
                ..
            })
        ) {
            eprintln!("run-due: interrupted; the remaining due experiments wait for the next trigger");
            break;
        }
    }
    let summary = format!(
        "run-due: {} ran, {} skipped (claimed by another runner), {} deferred, {} not due, {} invalid file(s), {} error(s)",
        ran.len(),
        taken,
        deferred,
        done,
        invalid,
        errors
    );
    println!("{summary}");
    if let Err(e) = output::catalog::refresh(&runs_dir, safety.policy.as_deref()).await {
        eprintln!("warning: the catalog was not refreshed: {e}");
    }
    Ok(Outcome::RanDue {
        worst: super::exit::worst_run(&ran),
        invalid: invalid > 0,
        errors: errors > 0,
    })
}

/// For tests only: `GAMEDAY_TEST_CLAIM_BARRIER=DIR:N` holds every `run-due`
/// after it has judged what is due and before it claims anything, until N
/// of them have arrived (at most 60 s), so that a test can make two
/// processes race on the claim itself rather than on reading the last one.
fn test_barrier() {
    let Ok(spec) = std::env::var("GAMEDAY_TEST_CLAIM_BARRIER") else {
        return;
    };
    let Some((dir, n)) = spec.rsplit_once(':') else {
        return;
    };
    let n: usize = n.parse().unwrap_or(1);
    let dir = Path::new(dir);
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
    for _ in 0..600 {
        if std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0) >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `gameday catalog`: writes catalog.html, catalog.md and catalog.json into the runs folder.
pub(super) async fn catalog(
    paths: &[PathBuf],
    runs_dir: &Path,
    safety: &SafetyArgs,
) -> Result<Outcome, Error> {
    let sources = if paths.is_empty() {
        output::catalog::default_sources()
    } else {
        paths.to_vec()
    };
    let written = output::catalog::write(&sources, runs_dir, safety.policy.as_deref(), now_of(safety))
        .await
        .map_err(Error::Catalog)?;
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(Outcome::Done)
}
