//! The command line: arguments (clap), commands, and exit codes.
//!
//! Arguments are parsed in two steps, as ripgrep does: first what the user
//! typed, without I/O (clap), then the objects built from it (experiments,
//! AWS clients). Exit codes are chosen in one place, [`exit`].

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::aws::{Aws, ConnectOptions};
use crate::experiment::{self, LoadError};
use crate::journal::Verdict;
use crate::progress::Progress;
use crate::runner::{self, RunOptions, SignalHandling};

/// Exit codes. Each verdict has its own, so a CI pipeline or a scheduler can
/// tell "the hypothesis failed" from "a guardrail stopped the run" from "the
/// runner itself could not do its job".
pub mod exit {
    /// Success; for `run`, the verdict `passed`.
    pub const OK: i32 = 0;
    /// An experiment (or other input file) is invalid; nothing was touched.
    pub const INVALID_INPUT: i32 = 1;
    /// The command line is wrong (unknown flag, missing argument, missing path).
    pub const USAGE: i32 = 2;
    /// Verdict `failed`: the steady state deviated or did not recover.
    pub const FAILED: i32 = 3;
    /// Verdict `aborted`: a guardrail tripped or max_duration was reached; rolled back.
    pub const ABORTED: i32 = 4;
    /// Verdict `not-run`: a precondition did not hold; nothing was injected.
    pub const NOT_RUN: i32 = 5;
    /// Verdict `error`: the runner could not do its job (AWS or journal errors).
    /// If the reason says a rollback is incomplete, finish it with `gameday recover`.
    pub const ERROR: i32 = 6;
    /// Verdict `interrupted`: stopped by SIGINT/SIGTERM/SIGHUP; rolled back.
    pub const INTERRUPTED: i32 = 130;

    /// The exit code for a verdict.
    pub fn for_verdict(v: crate::journal::Verdict) -> i32 {
        use crate::journal::Verdict::*;
        match v {
            Passed => OK,
            Failed => FAILED,
            Aborted => ABORTED,
            NotRun => NOT_RUN,
            Error => ERROR,
            Interrupted => INTERRUPTED,
        }
    }
}

const AFTER_HELP: &str = "\
Exit codes:
  0    passed (run) / all files valid (validate)
  1    invalid experiment file; nothing was touched
  2    usage error
  3    failed: the hypothesis did not hold
  4    aborted: a guardrail tripped (everything rolled back)
  5    not-run: a precondition did not hold (nothing injected)
  6    error: the runner could not do its job (see the journal)
  130  interrupted by SIGINT/SIGTERM (everything rolled back)

AWS settings come from the standard chain (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL, ~/.aws/config); the flags below override them.";

/// Run game-day chaos experiments against AWS, safely.
///
/// An experiment (a YAML file, see experiments/) names a hypothesis, the faults
/// to inject, and the guardrails that stop everything. `gameday run` injects the
/// faults, watches the guardrails, aborts and rolls back the moment one trips,
/// and records every step in runs/<run-id>/.
#[derive(Debug, Parser)]
#[command(name = "gameday", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check experiment files (or folders of them) without touching AWS.
    ///
    /// Reports every problem in each file with its line and column. Exits 0
    /// when every file is valid, 1 when any is not.
    Validate {
        /// Experiment files, or folders searched for *.yaml and *.yml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Run a game day: inject the experiment's faults, watch, roll back, record.
    ///
    /// Ctrl-C (or SIGTERM) stops the run and rolls every fault back before
    /// exiting; a second Ctrl-C skips waiting for instances to be running again,
    /// never the rollback calls themselves.
    Run {
        /// The experiment file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Seed for random target selection; the seed of every run is printed
        /// and journaled, so passing it again replays the same choice.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Folder for run records (one subfolder per run).
        #[arg(long, value_name = "DIR", default_value = "runs", env = "GAMEDAY_RUNS_DIR")]
        runs_dir: PathBuf,
        /// Print only the verdict and errors.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Finish what a run left behind, from its journal.
    ///
    /// After the runner was killed (kill -9, a lost machine) or gave up on a
    /// rollback, undoes every fault still in effect and deletes what the run
    /// created (its parallel environment, its locks). Safe to run twice.
    /// Without RUN_ID, lists the runs that need it.
    Recover {
        /// The run's id (the folder name under runs/).
        run_id: Option<String>,
        /// Recover even if the run's runner may still be alive.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        runs: RunsArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Delete gameday resources whose run is finished or expired.
    ///
    /// The safety net for runs whose journal is lost with their machine:
    /// finds temporary groups and instances by their `gameday:run-id` tag and
    /// lock tags by `gameday:lock`, and removes those whose run finished (per
    /// runs/) or whose `gameday:expires-at` has passed. Never touches a live run.
    Cleanup {
        /// List what would be removed, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        runs: RunsArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
}

/// Flags of the commands that read run records.
#[derive(Debug, Args)]
struct RunsArgs {
    /// Folder of run records (one subfolder per run).
    #[arg(long, value_name = "DIR", default_value = "runs", env = "GAMEDAY_RUNS_DIR")]
    runs_dir: PathBuf,
}

/// Connection flags shared by every command that talks to AWS.
#[derive(Debug, Args)]
struct AwsArgs {
    /// AWS endpoint, e.g. http://127.0.0.1:5000 for a local emulator
    /// (default: AWS_ENDPOINT_URL, else the real AWS endpoints).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION or the profile's region).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Named profile from ~/.aws/config (default: AWS_PROFILE).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

impl AwsArgs {
    fn options(&self) -> ConnectOptions {
        ConnectOptions { endpoint_url: self.endpoint_url.clone(), region: self.region.clone(), profile: self.profile.clone() }
    }
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    init_logging();
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Run { file, seed, runs_dir, quiet, aws } => block_on(run(&file, seed, runs_dir, quiet, &aws)),
        Command::Recover { run_id, force, runs, aws } => block_on(recover(run_id, force, &runs.runs_dir, &aws)),
        Command::Cleanup { dry_run, runs, aws } => block_on(cleanup(dry_run, &runs.runs_dir, &aws)),
    }
}

fn block_on(fut: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::ERROR
        }
    }
}

async fn connect(args: &AwsArgs) -> Result<Aws, i32> {
    Aws::connect(&args.options()).await.map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })
}

async fn recover(run_id: Option<String>, force: bool, runs_dir: &Path, aws_args: &AwsArgs) -> i32 {
    let Some(run_id) = run_id else {
        return match crate::recover::needing_recovery(runs_dir) {
            Ok(runs) if runs.is_empty() => {
                println!("no run in {} needs recovery", runs_dir.display());
                exit::OK
            }
            Ok(runs) => {
                println!("runs with faults or temporary resources left behind (recover each with `gameday recover RUN_ID`):");
                for r in runs {
                    let state = if r.verdict.is_some() { "rollback incomplete" } else { "runner stopped without finishing" };
                    println!("  {}  {}  started {}  {}: {} call(s) to undo", r.run_id, r.experiment, r.started_at.strftime("%Y-%m-%d %H:%M:%SZ"), state, r.pending.len());
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::ERROR
            }
        };
    };
    let aws = match connect(aws_args).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    match crate::recover::recover(&aws, runs_dir, &run_id, force, Progress::auto(false)).await {
        Ok(r) if r.unfinished.is_empty() && r.undone == 0 => {
            println!("run {run_id}: nothing to recover: every fault was rolled back and everything the run created is gone");
            exit::OK
        }
        Ok(r) if r.unfinished.is_empty() => {
            println!("run {run_id}: recovered: {} call(s) undone; journal: {}", r.undone, runs_dir.join(&run_id).join(crate::journal::JOURNAL_FILE).display());
            exit::OK
        }
        Ok(r) => {
            println!("run {run_id}: recovery incomplete, still to do:");
            for u in &r.unfinished {
                println!("  {} {}", u.operation(), u.resources().join(" "));
            }
            println!("fix the cause (see the errors above) and run `gameday recover {run_id}` again");
            exit::ERROR
        }
        Err(e @ crate::recover::RecoverError::NoSuchRun { .. }) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

async fn cleanup(dry_run: bool, runs_dir: &Path, aws_args: &AwsArgs) -> i32 {
    let aws = match connect(aws_args).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    let leftovers = match crate::recover::find_leftovers(&aws, runs_dir).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    if leftovers.is_empty() {
        println!("nothing to clean up: no gameday resource of a finished or expired run");
        return exit::OK;
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
        println!("{} leftover(s); run without --dry-run to remove them", leftovers.len());
    }
    if failed > 0 { exit::ERROR } else { exit::OK }
}

fn init_logging() {
    // SDK and runner diagnostics, off unless asked for: GAMEDAY_LOG=debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAMEDAY_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Every experiment file named by `paths` (folders are searched recursively).
fn experiment_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            collect_yaml(p, &mut out).map_err(|e| format!("cannot read folder {}: {e}", p.display()))?;
            if out.len() == before {
                return Err(format!("no experiment files (*.yaml, *.yml) in {}", p.display()));
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

fn validate(paths: &[PathBuf]) -> i32 {
    let files = match experiment_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut invalid = 0;
    for f in &files {
        match experiment::load(f) {
            Ok(exp) => println!("ok: {} (experiment `{}`, {} fault(s), {} guardrail(s))", f.display(), exp.name, exp.faults.len(), exp.guardrails.len()),
            Err(e) => {
                invalid += 1;
                eprintln!("{e}");
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} of {} file(s) invalid", files.len());
        exit::INVALID_INPUT
    } else {
        exit::OK
    }
}

async fn run(file: &Path, seed: Option<u64>, runs_dir: PathBuf, quiet: bool, aws_args: &AwsArgs) -> i32 {
    let exp = match experiment::load(file) {
        Ok(e) => e,
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("nothing was touched: fix the experiment and run again (`gameday validate {}`)", file.display());
            return exit::INVALID_INPUT;
        }
    };
    let unsupported = runner::unsupported(&exp);
    if !unsupported.is_empty() {
        eprintln!("error: {}: this version of gameday cannot run this experiment yet:", file.display());
        for u in unsupported {
            eprintln!("  - {u}");
        }
        eprintln!("nothing was touched");
        return exit::INVALID_INPUT;
    }
    let aws = match connect(aws_args).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    let opts = RunOptions { runs_dir, seed, signals: SignalHandling::Standard, progress: Progress::auto(quiet) };
    match runner::run(&exp, &aws, opts).await {
        Ok(outcome) => {
            println!("verdict: {} ({})", outcome.verdict.as_str(), outcome.reason);
            println!("run: {}", outcome.run_id);
            println!("journal: {}", outcome.dir.join(crate::journal::JOURNAL_FILE).display());
            if outcome.verdict == Verdict::Error && !outcome.unfinished.is_empty() {
                eprintln!("some faults are still in effect: run `gameday recover {}` once the cause is fixed", outcome.run_id);
            }
            exit::for_verdict(outcome.verdict)
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}
