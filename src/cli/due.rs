//! `gameday due [PATH...]`, `gameday run-due [PATH...]` and `gameday catalog
//! [PATH...]`: the schedules of experiment and suite files, what is due now
//! and why, running each due slot once, and the catalog of everything.
//!
//! gameday has no scheduler of its own: a team's scheduler starts
//! `run-due` often (every 10 or 15 minutes); each due slot is claimed
//! before it runs (`due::claim`), so repeated or simultaneous triggers run it
//! once. A due suite runs as `gameday suite run` runs it, its slot claimed
//! under the key `suite:<name>` (`due::suite_key`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::aws::Aws;
use crate::aws::s3::S3Store;
use crate::due::claim::{Claim, Claimed, SlotStore};
use crate::due::{self, State, Status};
use crate::experiment;
use crate::journal::Verdict;
use crate::output;
use crate::policy;
use crate::schedule::Schedule;
use crate::store::Runs;
use crate::suite;

use super::run::{Shown, run_one};
use super::shared::{connect, load_policy, print_text};
use super::suite as suite_cmd;
use super::validate::experiment_files;
use super::{AwsArgs, Error, NotifyArgs, Outcome, Output, SafetyArgs};

/// What a scheduled file holds.
enum Kind {
    /// An experiment: `run-due` runs it as `gameday run` does.
    Experiment,
    /// A suite: `run-due` runs it as `gameday suite run` does.
    Suite,
}

/// A scheduled experiment or suite and where it stands.
struct Scheduled {
    file: PathBuf,
    kind: Kind,
    /// Its name.
    name: String,
    /// The key its slots go by: the experiment's name, or `suite:<name>`.
    key: String,
    /// Who owns it, for the claim.
    owner: Option<String>,
    schedule: Schedule,
    status: Status,
    /// Where its slots are claimed (its policy's lease table, or the runs folder).
    store: SlotStore,
}

impl Scheduled {
    /// `experiment` or `suite`.
    fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Experiment => "experiment",
            Kind::Suite => "suite",
        }
    }

    /// How `due` and `run-due` name it: an experiment by its name, a suite as `suite <name>`.
    fn label(&self) -> String {
        match self.kind {
            Kind::Experiment => self.name.clone(),
            Kind::Suite => format!("suite {}", self.name),
        }
    }
}

/// The slot store of each policy: the lease table when the policy has
/// `locks`, else the runs folder; the AWS clients are built once, when a
/// first policy needs them.
struct Stores<'a> {
    runs_dir: &'a Path,
    /// The runs store in S3, if any: claims are recorded (and decided) there too.
    remote: Option<S3Store>,
    aws_args: &'a AwsArgs,
    aws: Option<Aws>,
}

impl Stores<'_> {
    async fn for_policy(&mut self, locks: Option<&policy::Locks>) -> Result<SlotStore, Error> {
        let Some(locks) = locks else {
            return Ok(SlotStore::shared(self.runs_dir, self.remote.clone()));
        };
        let aws = match &self.aws {
            Some(a) => a.clone(),
            None => {
                let a = connect(self.aws_args).await?;
                self.aws = Some(a.clone());
                a
            }
        };
        Ok(SlotStore::leased(
            self.runs_dir,
            self.remote.clone(),
            aws,
            &locks.table,
        ))
    }
}

/// The paths to look in: those given, else `experiments/` (and `suites/`
/// when it exists), as the catalog does.
fn sources(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        output::catalog::default_sources()
    } else {
        paths.to_vec()
    }
}

/// What the files of `paths` hold: the scheduled experiments and suites
/// with their standing at `now`, the unscheduled ones' names, and how many
/// files are invalid.
async fn survey(
    paths: &[PathBuf],
    safety: &SafetyArgs,
    runs: &Runs,
    aws_args: &AwsArgs,
    now: Timestamp,
) -> Result<(Vec<Scheduled>, Vec<String>, usize), Error> {
    let files = experiment_files(&sources(paths))?;
    // Every run's record, from the store when it is in S3.
    runs.pull_all().await?;
    let runs_dir = runs.local.as_path();
    let mut stores = Stores {
        runs_dir,
        remote: runs.remote.clone(),
        aws_args,
        aws: None,
    };
    let rows = output::due::runs(runs_dir);
    let suite_runs = output::scorecard::runs(runs_dir);
    let mut scheduled = Vec::new();
    let mut unscheduled = Vec::new();
    let mut invalid = 0;
    for file in files {
        if suite::is_suite_file(&file) {
            match survey_suite(&file, safety, &suite_runs, &mut stores, now).await? {
                Surveyed::Scheduled(s) => scheduled.push(*s),
                Surveyed::ByHand(name) => unscheduled.push(format!("{name} (suite)")),
                Surveyed::Invalid => invalid += 1,
            }
            continue;
        }
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
            name: exp.name.clone(),
            key: exp.name.clone(),
            owner: exp.owner.clone(),
            kind: Kind::Experiment,
            schedule,
            status,
            store,
        });
    }
    Ok((scheduled, unscheduled, invalid))
}

/// What a suite file came to.
enum Surveyed {
    Scheduled(Box<Scheduled>),
    ByHand(String),
    Invalid,
}

/// A suite file's standing. Its slot is judged as an experiment's, under
/// the key `suite:<name>`, with the suite's history (its runs' `suite.json`):
/// the policy in force for the suite file gives the lease table and the
/// windows, and the slot is deferred too when the policy of any of its
/// experiments refuses runs now (that experiment would be refused, and the
/// suite NO-GO). A run must fit a window: the suite's length is taken as
/// the sum of its experiments' `timing.max_duration` (one after another).
async fn survey_suite(
    file: &Path,
    safety: &SafetyArgs,
    suite_runs: &[output::scorecard::SuiteRun],
    stores: &mut Stores<'_>,
    now: Timestamp,
) -> Result<Surveyed, Error> {
    let s = match suite::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Surveyed::Invalid);
        }
    };
    let Some(schedule) = s.schedule.clone() else {
        return Ok(Surveyed::ByHand(s.name));
    };
    let mut length = Duration::ZERO;
    let mut windows = Vec::new();
    let mut bad = false;
    for m in s.experiments() {
        match experiment::load(&m.file) {
            Ok(e) => {
                length += e.timing.max_duration;
                windows.push(
                    policy::find_and_load(safety.policy.as_deref(), Some(&m.file))?
                        .policy
                        .windows,
                );
            }
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad {
        eprintln!("suite {}: an experiment of it is invalid", file.display());
        return Ok(Surveyed::Invalid);
    }
    let policy = policy::find_and_load(safety.policy.as_deref(), Some(file))?;
    let store = stores.for_policy(policy.policy.locks.as_ref()).await?;
    let key = due::suite_key(&s.name);
    let last = output::due::last_suite_run(suite_runs, &s.name);
    let mut status = output::due::judge(&key, &schedule, &policy.policy.windows, length, last, &store, now)
        .await
        .map_err(Error::Claim)?;
    if status.state == State::Due
        && let Some(st) = windows
            .iter()
            .map(|w| due::evaluate(&key, &schedule, w, length, status.last_run.clone(), None, now))
            .find(|st| st.state == State::Deferred)
    {
        status = st;
    }
    Ok(Surveyed::Scheduled(Box::new(Scheduled {
        file: file.to_path_buf(),
        name: s.name.clone(),
        key,
        owner: s.owner.clone(),
        kind: Kind::Suite,
        schedule,
        status,
        store,
    })))
}

fn now_of(safety: &SafetyArgs) -> Timestamp {
    safety.now.unwrap_or_else(Timestamp::now)
}

/// `gameday due`: lists every scheduled experiment and suite, what is due and why.
pub(super) async fn due(
    paths: &[PathBuf],
    output: Output,
    safety: &SafetyArgs,
    runs_dir: &Path,
    aws: &AwsArgs,
) -> Result<Outcome, Error> {
    let now = now_of(safety);
    let runs = Runs::open(runs_dir, &aws.options()).await?;
    let (scheduled, unscheduled, invalid) = survey(paths, safety, &runs, aws, now).await?;
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = scheduled
                .iter()
                .map(|s| {
                    let mut item = serde_json::json!({
                        "kind": s.kind(),
                        "file": s.file,
                        "schedule": s.schedule.describe(),
                        "state": s.status.state,
                        "slot": s.status.slot,
                        "why": s.status.why,
                        "next": s.status.next,
                        "last_run": s.status.last_run,
                    });
                    // `experiment` (as before suites could be scheduled) or `suite`: the name.
                    item[s.kind()] = serde_json::json!(s.name);
                    item
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
        let _ = writeln!(o, "no experiment or suite has a schedule");
    }
    for s in scheduled {
        let _ = writeln!(
            o,
            "{:<9} {}  ({})",
            s.status.state.as_str().to_uppercase(),
            s.label(),
            s.file.display()
        );
        let _ = writeln!(o, "          schedule:  {}", s.schedule.describe());
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
        let next = match &s.status.next {
            Some(n) => s.schedule.local_text(n.due_at),
            None => "none: the schedule has ended".to_string(),
        };
        let _ = writeln!(o, "          next slot: {next}");
    }
    if !unscheduled.is_empty() {
        let _ = writeln!(o, "not scheduled (run by hand): {}", unscheduled.join(", "));
    }
    o
}

/// The kill switch in force for the experiment or suite of `file` (its
/// policy's `halt.parameter`); the clients are built once, when first needed.
async fn halt_of(
    file: &Path,
    safety: &SafetyArgs,
    aws_args: &AwsArgs,
    aws: &mut Option<Aws>,
) -> Result<Option<crate::halt::Halt>, Error> {
    let parameter = load_policy(safety.policy.as_deref(), Some(file))?
        .policy
        .halt_parameter;
    let aws = match aws {
        Some(a) => a,
        None => aws.insert(connect(aws_args).await?),
    };
    super::halt::in_force(aws, &parameter).await
}

/// `gameday run-due`: runs every due slot once, in file order, one at a
/// time; the outcome summarises the runs (see `exit::worst_run`: a suite
/// counts as the run of its outcome, NO-GO as `failed`).
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
    let runs = Runs::open(&runs_dir, &aws.options()).await?;
    let (scheduled, _, invalid) = survey(paths, safety, &runs, aws, now).await?;
    test_barrier();
    let mut ran: Vec<Outcome> = Vec::new();
    let mut errors = 0;
    let (mut deferred, mut done, mut taken) = (0, 0, 0);
    let mut halt_aws: Option<Aws> = None;
    let (mut go, mut no_go) = (0, 0);
    for s in &scheduled {
        let Some(slot) = s.status.slot else {
            continue;
        };
        match s.status.state {
            State::Due => {}
            State::Deferred => {
                deferred += 1;
                eprintln!("deferred: {}: {}", s.label(), s.status.why);
                continue;
            }
            State::Done | State::Waiting => {
                done += 1;
                continue;
            }
        }
        // Halted (`gameday halt`): the slot is not claimed, so it is still
        // due after `gameday resume`.
        match halt_of(&s.file, safety, aws, &mut halt_aws).await {
            Ok(None) => {}
            Ok(Some(h)) => {
                eprintln!("refused: {}: {}; the slot stays due", s.label(), h.describe());
                ran.push(Outcome::Ran {
                    verdict: Verdict::NotRun,
                    refused: true,
                });
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {}: {e}", s.label());
                continue;
            }
        }
        let mut claim = Claim::new(&s.key, &slot, Timestamp::now());
        claim.owner = s.owner.clone();
        match s.store.claim(&claim, s.status.next.as_ref(), now).await {
            Ok(Claimed::Won) => {}
            Ok(Claimed::Taken(other)) => {
                taken += 1;
                eprintln!(
                    "skipped: {}: slot {} already claimed by {}",
                    s.label(),
                    slot.key(),
                    other.holder()
                );
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {}: {e}", s.label());
                continue;
            }
        }
        if !quiet {
            eprintln!("running: {}: {}", s.label(), s.status.why);
        }
        let result = match &s.kind {
            Kind::Experiment => {
                let shown = Shown {
                    quiet,
                    output: Output::Text,
                    publish_metrics,
                    interactive: false,
                    notify: notify.clone(),
                };
                run_one(&s.file, None, runs_dir.clone(), shown, None, safety, aws)
                    .await
                    .map(|r| (r.outcome, Some(r.run_id)))
            }
            Kind::Suite => {
                let shown = suite_cmd::Shown {
                    quiet,
                    interactive: false,
                    notify: notify.clone(),
                };
                suite_cmd::run_recorded(&s.file, None, runs_dir.clone(), shown, None, safety, aws)
                    .await
                    .map(|r| (r.outcome, r.suite_run_id))
            }
        };
        match result {
            Ok((outcome, run_id)) => {
                claim.run_id = run_id;
                claim.verdict = Some(verdict_word(outcome).to_string());
                if let Outcome::Suite { go: g, .. } = outcome {
                    if g {
                        go += 1;
                    } else {
                        no_go += 1;
                    }
                }
                ran.push(outcome);
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
            Some(
                Outcome::Ran {
                    verdict: Verdict::Interrupted,
                    ..
                } | Outcome::Suite {
                    interrupted: true,
                    ..
                }
            )
        ) {
            eprintln!(
                "run-due: interrupted; the remaining due experiments and suites wait for the next trigger"
            );
            break;
        }
    }
    let mut summary = format!(
        "run-due: {} ran, {} skipped (claimed by another runner), {} deferred, {} not due, {} invalid file(s), {} error(s)",
        ran.len(),
        taken,
        deferred,
        done,
        invalid,
        errors
    );
    if go + no_go > 0 {
        summary.push_str(&format!(
            "; of those run, {} suite(s): {go} GO, {no_go} NO-GO",
            go + no_go
        ));
    }
    println!("{summary}");
    super::shared::refresh_catalog(&runs, safety.policy.as_deref()).await;
    Ok(Outcome::RanDue {
        worst: super::exit::worst_run(&ran),
        invalid: invalid > 0,
        errors: errors > 0,
    })
}

/// What a slot's claim records of its run's outcome: an experiment's
/// verdict (`not-run` when refused), a suite's `GO` or `NO-GO`.
fn verdict_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ran { verdict, .. } => verdict.as_str(),
        Outcome::Suite {
            interrupted: true, ..
        } => "interrupted",
        Outcome::Suite { go: true, .. } => "GO",
        Outcome::Suite { go: false, .. } => "NO-GO",
        _ => "unknown",
    }
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
    // With an S3 store: every run's record first, and the catalog put back after.
    let runs = Runs::open(runs_dir, &crate::aws::ConnectOptions::default()).await?;
    runs.pull_all().await?;
    let runs_dir = runs.local.as_path();
    let sources = if paths.is_empty() {
        output::catalog::default_sources()
    } else {
        paths.to_vec()
    };
    let claims = SlotStore::shared(runs_dir, runs.remote.clone());
    let written = output::catalog::write(
        &sources,
        runs_dir,
        &claims,
        safety.policy.as_deref(),
        now_of(safety),
    )
    .await
    .map_err(Error::Catalog)?;
    let names = [
        output::catalog::HTML_FILE,
        output::catalog::MARKDOWN_FILE,
        output::catalog::JSON_FILE,
    ];
    runs.push_top(&names).await?;
    for p in written {
        match &runs.remote {
            Some(_) => println!("wrote {} (uploaded to {})", p.display(), runs.describe()),
            None => println!("wrote {}", p.display()),
        }
    }
    Ok(Outcome::Done)
}
