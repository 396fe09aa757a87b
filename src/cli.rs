//! The command line: arguments (clap), commands, and exit codes.
//!
//! Arguments are parsed in two steps, as ripgrep does: first what the user
//! typed, without I/O (clap), then the objects built from it (experiments,
//! AWS clients). Exit codes are chosen in one place, [`exit`].

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::aws::{Aws, ConnectOptions};
use crate::engine::{self, RunOptions, SignalHandling};
use crate::experiment::{self, Experiment, LoadError};
use crate::gate::{self, Admission, Approval};
use crate::journal::Verdict;
use crate::model::RuleResult;
use crate::model::Vars;
use crate::output::progress::Progress;
use crate::output::report::{HTML_FILE, JUNIT_FILE, MARKDOWN_FILE};
use crate::output::{self, JOURNAL_FILE, history};
use crate::plan::{self, Plan, PlanError, Targets};
use crate::policy::account::{self, Account};
use crate::policy::{self, LoadedPolicy, PolicyError};
use crate::targets::TargetError;
use crate::util::ms_text;

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
    /// Refused by the safety policy (verdict `not-run`): a rule failed or the
    /// approval is missing or stale; nothing was touched.
    pub const REFUSED: i32 = 7;
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
  0    passed (run) / all files valid (validate) / the plan may run (plan) /
       reports written (report) / history listed (history)
  1    invalid experiment or policy file; nothing was touched (report: unreadable journal)
  2    usage error (report, history: no such run or runs folder)
  3    failed: the hypothesis did not hold (history --fail-on-regression: a regression)
  4    aborted: a guardrail tripped (everything rolled back)
  5    not-run: a precondition did not hold (nothing injected)
  6    error: the runner could not do its job (see the journal; `gameday recover`)
  7    refused by the safety policy, or approval missing or stale (nothing touched)
  130  interrupted by SIGINT/SIGTERM (everything rolled back)

AWS settings come from the standard chain (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL, ~/.aws/config); each command's --endpoint-url,
--region and --profile override them.

A run goes into a temporary copy of the workload's Auto Scaling group unless
the experiment says `mode: in-place`. If a runner dies mid-run,
`gameday recover` finishes its rollback from the journal.

Every run leaves runs/<run-id>/ with journal.json and three reports:
report.html (charts, open it in a browser), report.md (for a PR or wiki) and
junit.xml (for CI). `gameday report RUN_ID` writes them again;
`gameday history` shows the trend of every experiment.";

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
    /// The safety policy is checked against the run's plan before anything is
    /// touched (exit 7 on refusal). Runs the policy marks as needing approval
    /// ask for the experiment's name on a terminal, or need --approve.
    ///
    /// The phases: preflight (guardrails can fire, targets resolve) -> safety
    /// gate -> locks and the temporary copy -> baseline (the steady state must
    /// hold for timing.baseline, else not-run, exit 5) -> inject, watching every
    /// probe each timing.interval (a guardrail breach aborts at once, exit 4) ->
    /// rollback -> recovery (the steady state must return within
    /// timing.recovery, else failed, exit 3) -> teardown -> verdict.
    ///
    /// Ctrl-C (or SIGTERM) stops the run and rolls every fault back before
    /// exiting; a second Ctrl-C skips waiting for instances to be running again,
    /// never the rollback calls themselves.
    ///
    /// Whatever the verdict, the run folder runs/<run-id>/ then holds
    /// journal.json (everything that happened), report.html (open it in a
    /// browser: verdict, charts, timeline), report.md and junit.xml (for CI).
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
        /// Print only the verdict and errors (no progress on stderr).
        #[arg(long, short)]
        quiet: bool,
        /// `text`: progress for people on stderr, the verdict on stdout.
        /// `json`: every journal event as one JSON object per line on stdout
        /// (the same objects as events.jsonl), then one last object with
        /// the run id, verdict, reason and the paths of the journal and
        /// reports; nothing but errors on stderr.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// After the run, publish its outcome to CloudWatch: namespace
        /// GameDay, dimensions Experiment and Verdict, metrics RunPassed and
        /// RunAborted (1 or 0), TimeToRecover and AbortLatency (ms, when
        /// measured). Needs cloudwatch:PutMetricData; a failure is a warning.
        #[arg(long)]
        publish_metrics: bool,
        /// Approve the plan with this hash (printed by `gameday plan`); needed
        /// for runs the policy marks as needing approval when there is no
        /// terminal to confirm on. A changed plan no longer fits and is refused.
        #[arg(long, value_name = "HASH")]
        approve: Option<String>,
        #[command(flatten)]
        safety: SafetyArgs,
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
    /// Show what a run would do, without doing it (read-only AWS calls only).
    ///
    /// Resolves every fault's targets, checks the guardrails and every rule of
    /// the safety policy, and prints the plan's hash for `run --approve`.
    /// Exits 0 when the run may go ahead, 7 when the policy would refuse it,
    /// 5 when a precondition does not hold (guardrail, no target).
    Plan {
        /// The experiment file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Seed for the random choice shown; pass the same to `run` to hit exactly these instances.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// The safety policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a run's reports again from its journal.
    ///
    /// Renders report.html (self-contained: charts inline, no script or
    /// network), report.md and junit.xml from runs/<RUN>/journal.json alone,
    /// byte-for-byte what the run wrote (the runner writes them the same way
    /// after every run). Reads journals of every version since 1. Exits 0 when
    /// written, 2 when the run does not exist, 1 when its journal cannot be
    /// read, 6 when a report cannot be written.
    #[command(
        after_help = "Examples:\n  gameday report 20261125-112701-5c57\n  gameday report runs/20261125-112701-5c57/journal.json\n  gameday report 20261125-112701-5c57 --runs-dir /mnt/ci-artifacts/runs"
    )]
    Report {
        /// A run id (a folder of --runs-dir), a run folder, or a journal.json.
        #[arg(value_name = "RUN_ID|PATH")]
        run: String,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// List past runs with per-experiment trends, or compare two runs.
    ///
    /// Lists every run of the runs folder, newest first: date, experiment,
    /// verdict, whether it aborted, time to recover and time to detect. Then,
    /// per experiment, the trend (pass rate, time to recover and to detect over
    /// time, oldest first) and REGRESSION when the latest run is worse than
    /// the earlier ones: it failed or aborted right after a pass, or its time
    /// to recover (or to detect) is over 1.5 times the earlier runs' median and
    /// at least 1 s longer. Runs that did not test the hypothesis (not-run,
    /// error, interrupted) are listed but not counted in the trend.
    ///
    /// Exits 0, or 3 with --fail-on-regression when a regression is flagged;
    /// 2 when the runs folder or a run of --diff does not exist, or the two
    /// runs of --diff are of different experiments; 1 when a journal of
    /// --diff cannot be read (unreadable runs in the listing are warnings).
    #[command(
        after_help = "Examples:\n  gameday history\n  gameday history --experiment shop-web-lose-a-third --output json\n  gameday history --diff 20261125-112701-5c57 20261126-090000-a1b2"
    )]
    History {
        /// Only the runs of this experiment (its `name`).
        #[arg(long, value_name = "NAME")]
        experiment: Option<String>,
        /// Compare two runs side by side (ids, run folders or journal.json paths).
        #[arg(long, num_args = 2, value_names = ["RUN_A", "RUN_B"])]
        diff: Option<Vec<String>>,
        /// Exit 3 when the latest run of an experiment is a regression (for CI).
        #[arg(long)]
        fail_on_regression: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[command(flatten)]
        runs: RunsArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the policy in force (from --policy, ./safety/policy.yaml, or the
    /// built-in default), after checking it.
    Show {
        /// A policy file to check and print.
        #[arg(long, value_name = "FILE", env = "GAMEDAY_POLICY")]
        policy: Option<PathBuf>,
    },
}

/// Output formats for `plan`, `run` and `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// For tools: JSON (`run`: one object per line).
    Json,
}

/// The safety policy and what its rules are checked against.
#[derive(Debug, Args)]
struct SafetyArgs {
    /// The safety policy (default: safety/policy.yaml beside the experiment's
    /// folder, else ./safety/policy.yaml, else the built-in default; see `gameday policy show`).
    #[arg(long, value_name = "FILE", env = "GAMEDAY_POLICY")]
    policy: Option<PathBuf>,
    /// The AWS account id, for the policy's `accounts` rule (default:
    /// AWS_ACCOUNT_ID, else the profile's sso_account_id or role_arn; never an AWS call).
    #[arg(long, value_name = "ID", env = "GAMEDAY_ACCOUNT")]
    account: Option<String>,
    /// For tests: the time the policy's windows are checked at (RFC 3339).
    #[arg(long, value_name = "RFC3339", env = "GAMEDAY_NOW", hide = true, value_parser = parse_now)]
    now: Option<Timestamp>,
}

fn parse_now(text: &str) -> Result<Timestamp, String> {
    text.parse()
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-25T10:00:00Z: {e}"))
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
        ConnectOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
        }
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
        Command::Run {
            file,
            seed,
            runs_dir,
            quiet,
            output,
            publish_metrics,
            approve,
            safety,
            aws,
        } => {
            let shown = Shown {
                quiet,
                output,
                publish_metrics,
            };
            with_runtime(run(&file, seed, runs_dir, shown, approve, &safety, &aws))
        }
        Command::Report { run, runs } => report_command(&run, &runs.runs_dir),
        Command::History {
            experiment,
            diff,
            fail_on_regression,
            output,
            runs,
        } => match diff {
            Some(pair) => history_diff(&pair[0], &pair[1], output, &runs.runs_dir),
            None => history_command(experiment.as_deref(), fail_on_regression, output, &runs.runs_dir),
        },
        Command::Plan {
            file,
            seed,
            output,
            safety,
            aws,
        } => with_runtime(plan_command(&file, seed, output, &safety, &aws)),
        Command::Policy {
            command: PolicyCommand::Show { policy },
        } => policy_show(policy.as_deref()),
        Command::Recover {
            run_id,
            force,
            runs,
            aws,
        } => with_runtime(recover(run_id, force, &runs.runs_dir, &aws)),
        Command::Cleanup { dry_run, runs, aws } => with_runtime(cleanup(dry_run, &runs.runs_dir, &aws)),
    }
}

fn with_runtime(work: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(work),
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
    let recovered =
        crate::recover::recover(&aws, runs_dir, &run_id, force, Box::new(Progress::auto(false))).await;
    if let Ok(r) = &recovered
        && r.journaled
    {
        output::write_run_records(&runs_dir.join(&run_id));
    }
    match recovered {
        Ok(r) if r.unfinished.is_empty() && r.undone == 0 => {
            println!(
                "run {run_id}: nothing to recover: every fault was rolled back and everything the run created is gone"
            );
            exit::OK
        }
        Ok(r) if r.unfinished.is_empty() => {
            println!(
                "run {run_id}: recovered: {} call(s) undone; journal: {}",
                r.undone,
                runs_dir.join(&run_id).join(JOURNAL_FILE).display()
            );
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
        println!(
            "{} leftover(s); run without --dry-run to remove them",
            leftovers.len()
        );
    }
    if failed > 0 { exit::ERROR } else { exit::OK }
}

fn init_logging() {
    // SDK and runner diagnostics, off unless asked for: GAMEDAY_LOG=debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAMEDAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    // No colour codes unless stderr is a terminal: logs in CI stay plain text.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
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
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
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
            Ok(exp) => println!(
                "ok: {} (experiment `{}`, {} fault(s), {} guardrail(s))",
                f.display(),
                exp.name,
                exp.faults.len(),
                exp.guardrails.len()
            ),
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

/// What `run` and `plan` both need before any AWS call: the experiment, the
/// policy in force, the account and the clients. On failure, the exit code.
struct Prepared {
    exp: Experiment,
    policy: LoadedPolicy,
    account: Option<Account>,
    aws: Aws,
}

async fn prepare(file: &Path, safety_args: &SafetyArgs, aws_args: &AwsArgs) -> Result<Prepared, i32> {
    let exp = match experiment::load(file) {
        Ok(e) => e,
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            return Err(exit::USAGE);
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "nothing was touched: fix the experiment and run again (`gameday validate {}`)",
                file.display()
            );
            return Err(exit::INVALID_INPUT);
        }
    };
    let policy = load_policy(safety_args.policy.as_deref(), Some(file))?;
    let aws = connect(aws_args).await?;
    let account = account::detect(safety_args.account.as_deref(), aws_args.profile.as_deref());
    Ok(Prepared {
        exp,
        policy,
        account,
        aws,
    })
}

fn load_policy(explicit: Option<&Path>, experiment_file: Option<&Path>) -> Result<LoadedPolicy, i32> {
    match policy::find_and_load(explicit, experiment_file) {
        Ok(p) => Ok(p),
        Err(e @ PolicyError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(exit::USAGE)
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "nothing was touched: fix the safety policy and run again (`gameday policy show --policy FILE` checks it)"
            );
            Err(exit::INVALID_INPUT)
        }
    }
}

async fn build_plan(p: &Prepared, seed: u64) -> Result<Plan, PlanError> {
    // The run id is chosen when a run starts; a plan names it as a placeholder.
    let vars = Vars {
        asg: p.exp.environment.autoscaling_group.clone(),
        run_id: "<run-id>".to_string(),
        instances: Vec::new(),
    };
    plan::build(&p.aws, &p.exp, &p.policy, &vars, seed).await
}

fn random_seed() -> u64 {
    use rand::Rng;
    rand::make_rng::<rand::rngs::StdRng>().next_u64()
}

/// What `run` shows, and where its outcome goes besides the run folder.
struct Shown {
    quiet: bool,
    output: Output,
    publish_metrics: bool,
}

async fn run(
    file: &Path,
    seed: Option<u64>,
    runs_dir: PathBuf,
    shown: Shown,
    approve: Option<String>,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> i32 {
    let Shown {
        quiet,
        output,
        publish_metrics,
    } = shown;
    let p = match prepare(file, safety_args, aws_args).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Chosen here so that the plan confirmed on a terminal is the run's plan.
    let seed = seed.unwrap_or_else(random_seed);
    let approval = match approve {
        // Hashes are lowercase hex; a pasted one may carry spaces or capitals.
        Some(hash) => Approval::Hash(hash.trim().to_ascii_lowercase()),
        None if gate::approval_needed(&p.policy.policy, &p.exp).is_some() && on_terminal() => {
            confirm_on_terminal(&p, seed, safety_args.now).await
        }
        None => Approval::Missing,
    };
    let Prepared {
        exp,
        policy,
        account,
        aws,
    } = p;
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
    let opts = RunOptions {
        runs_dir,
        seed: Some(seed),
        signals: SignalHandling::Standard,
        progress: Box::new(progress),
        safety,
    };
    let result = engine::run(&exp, &aws, opts).await;
    if let Ok(outcome) = &result {
        output::write_run_records(&outcome.dir);
    }
    if let (Ok(outcome), true) = (&result, publish_metrics) {
        let published = match output::load(&outcome.dir) {
            Ok(summary) => output::publish::publish(&aws, &summary)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(n) if output == Output::Text && !quiet => eprintln!(
                "published {n} metric(s) of the run to CloudWatch namespace {}",
                output::publish::NAMESPACE
            ),
            Ok(_) => {}
            Err(e) => eprintln!("warning: the run's metrics were not published: {e}"),
        }
    }
    match result {
        Ok(outcome) if output == Output::Json => {
            let dir = &outcome.dir;
            let last = serde_json::json!({
                "event": "finished",
                "run_id": outcome.run_id,
                "verdict": outcome.verdict,
                "reason": outcome.reason,
                "refused": outcome.refused,
                "journal": dir.join(JOURNAL_FILE),
                "reports": [dir.join(HTML_FILE), dir.join(MARKDOWN_FILE), dir.join(JUNIT_FILE)],
            });
            println!("{last}");
            if outcome.refused {
                exit::REFUSED
            } else {
                exit::for_verdict(outcome.verdict)
            }
        }
        Ok(outcome) => {
            println!("verdict: {} ({})", outcome.verdict.as_str(), outcome.reason);
            println!("run: {}", outcome.run_id);
            println!("journal: {}", outcome.dir.join(JOURNAL_FILE).display());
            println!("report: {}", outcome.dir.join(HTML_FILE).display());
            if outcome.verdict == Verdict::Error && !outcome.unfinished.is_empty() {
                eprintln!(
                    "some faults are still in effect: run `gameday recover {}` once the cause is fixed",
                    outcome.run_id
                );
            }
            if outcome.refused {
                exit::REFUSED
            } else {
                exit::for_verdict(outcome.verdict)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
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

/// `gameday plan --output json`: the plan, every rule, and the overall answer.
#[derive(serde::Serialize)]
struct PlanOutput<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    rules: &'a [RuleResult],
    /// Whether the policy admits the plan (approval aside).
    admitted: bool,
}

async fn plan_command(
    file: &Path,
    seed: Option<u64>,
    output: Output,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> i32 {
    let p = match prepare(file, safety_args, aws_args).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let seed = seed.unwrap_or_else(random_seed);
    let plan = match build_plan(&p, seed).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return match e {
                PlanError::Targets {
                    source: TargetError::NoSuchGroup(_),
                    ..
                }
                | PlanError::Environment(TargetError::NoSuchGroup(_)) => exit::NOT_RUN,
                _ => exit::ERROR,
            };
        }
    };
    let adm = Admission {
        policy: p.policy.clone(),
        account: p.account.clone(),
        now: safety_args.now,
        approval: Approval::DryRun,
    };
    let rules = gate::check(&adm, &p.exp, &plan);
    let admitted = gate::admitted(&rules);
    match output {
        Output::Json => match serde_json::to_string_pretty(&PlanOutput {
            plan: &plan,
            rules: &rules,
            admitted,
        }) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the plan as JSON: {e}");
                return exit::ERROR;
            }
        },
        Output::Text => print!("{}", render_plan(&plan, &rules)),
    }
    let empty = p
        .exp
        .faults
        .iter()
        .zip(&plan.faults)
        .any(|(f, fp)| fp.targets.is_empty() && !f.target.allow_empty);
    if !admitted {
        exit::REFUSED
    } else if empty || plan.preflight.refusal().is_some() {
        exit::NOT_RUN
    } else {
        exit::OK
    }
}

/// The plan for people.
fn render_plan(plan: &Plan, rules: &[RuleResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for experiment `{}` ({})",
        plan.experiment,
        plan.file.display()
    );
    let _ = writeln!(
        s,
        "  mode {}, region {}, seed {}, policy {}",
        plan.mode.as_str(),
        plan.region,
        plan.seed,
        plan.policy
    );
    let _ = writeln!(s, "\nenvironment:");
    match &plan.environment {
        Some(env) => {
            let _ = writeln!(
                s,
                "  to create: `{}`, a clone of `{}` with {} instance(s), deleted when the run ends",
                env.name, env.source, env.capacity
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  none created: in place, the faults hit the real resources below"
            );
        }
    }
    let _ = writeln!(s, "\nguardrails (any breach aborts the run):");
    for g in &plan.guardrails {
        let worst = g
            .worst_case_abort
            .as_ref()
            .map(|w| format!(" (worst-case time to abort {w})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  [{}] {}: {}: {}{worst}",
            if g.ready { "ready" } else { "NOT READY" },
            g.name,
            g.check,
            g.detail
        );
    }
    let limit = plan
        .preflight
        .max_abort_delay_ms
        .map(|m| format!(", timing.max_abort_delay {}", ms_text(m)))
        .unwrap_or_default();
    match plan.preflight.worst_case_abort_ms {
        Some(w) => {
            let _ = writeln!(
                s,
                "  worst-case time from a breach to the abort: {}{limit}",
                ms_text(w)
            );
        }
        None => {
            let _ = writeln!(s, "  worst-case time from a breach to the abort: unknown{limit}");
        }
    }
    if let Some(why) = plan.preflight.refusal() {
        let _ = writeln!(s, "  REFUSED: {why}");
    }
    if !plan.steady_state.is_empty() {
        let _ = writeln!(s, "\nsteady state:");
        for p in &plan.steady_state {
            let _ = writeln!(s, "  {}: {} ({})", p.name, p.check, p.detail);
        }
    }
    let _ = writeln!(s, "\nfaults (timeline):");
    for f in &plan.faults {
        let held = match &f.duration {
            Some(d) => format!("held {d}, then rolled back"),
            None => "held until every timed fault has ended, then rolled back".to_string(),
        };
        let _ = writeln!(s, "  `{}` ({}): starts {}; {}", f.name, f.action, f.starts, held);
        match &f.targets {
            Targets::Instances(r) => {
                let _ = writeln!(
                    s,
                    "    targets: {} of {} eligible instance(s)",
                    r.selected.len(),
                    r.matched
                );
                for i in &r.selected {
                    let _ = writeln!(
                        s,
                        "      {}  {}  {}  {}",
                        i.id,
                        i.name.as_deref().unwrap_or("-"),
                        if i.az.is_empty() { "-" } else { &i.az },
                        i.autoscaling_group.as_deref().unwrap_or("-")
                    );
                }
                if !r.protected.is_empty() {
                    let _ = writeln!(s, "    protected, never touched: {}", r.protected.join(", "));
                }
                if !r.ineligible.is_empty() {
                    let _ = writeln!(
                        s,
                        "    not eligible in their current state: {}",
                        r.ineligible.join(", ")
                    );
                }
            }
            Targets::Clone(c) => {
                let _ = writeln!(
                    s,
                    "    targets: select {} of the clone's {} instances: {} instance(s), chosen once the clone is ready",
                    c.rule(),
                    c.of,
                    c.count
                );
            }
            Targets::Resources(r) => {
                let _ = writeln!(
                    s,
                    "    acts on {} {} ({})",
                    r.kind.replace('_', " "),
                    r.names.join(", "),
                    r.detail
                );
            }
        }
        for call in &f.calls {
            let _ = writeln!(s, "    calls {call}");
        }
    }
    let _ = writeln!(
        s,
        "  guardrails are checked every {}; the whole run lasts at most {}",
        plan.timing.interval, plan.timing.max_duration
    );
    let _ = writeln!(
        s,
        "\nsafety policy ({}, sha256 {}):",
        plan.policy,
        &plan.policy_sha256[..12.min(plan.policy_sha256.len())]
    );
    for r in rules {
        let _ = writeln!(
            s,
            "  {} {}: {}",
            if r.passed { "pass" } else { "FAIL" },
            r.rule,
            r.detail
        );
        if !r.passed {
            if !r.resources.is_empty() {
                let _ = writeln!(s, "       resources: {}", r.resources.join(", "));
            }
            if let Some(fix) = &r.fix {
                let _ = writeln!(s, "       fix: {fix}");
            }
        }
    }
    let _ = writeln!(s, "\nplan hash: {}", plan.hash);
    let _ = writeln!(
        s,
        "run exactly this plan: gameday run {} --seed {} --approve {}",
        plan.file.display(),
        plan.seed,
        plan.hash
    );
    s
}

fn policy_show(explicit: Option<&Path>) -> i32 {
    let loaded = match load_policy(explicit, None) {
        Ok(p) => p,
        Err(code) => return code,
    };
    println!("# policy: {}", loaded.source);
    println!("# sha256: {}", loaded.sha256);
    print!("{}", loaded.text);
    exit::OK
}

fn report_command(run: &str, runs_dir: &Path) -> i32 {
    let path = match history::find(runs_dir, run) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    match output::report::regenerate(&path) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            exit::OK
        }
        Err(e @ output::report::ReportError::Journal(_)) => {
            eprintln!("error: {e}");
            exit::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

fn history_command(
    experiment: Option<&str>,
    fail_on_regression: bool,
    output: Output,
    runs_dir: &Path,
) -> i32 {
    let (rows, unreadable) = match history::load(runs_dir, experiment) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let trends = history::trends(&rows);
    for u in &unreadable {
        eprintln!("warning: skipped {}: {}", u.dir.display(), u.error);
    }
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "runs": rows, "experiments": trends, "unreadable": unreadable })
        ),
        Output::Text => print_text(&render_history(&rows, &trends)),
    }
    if fail_on_regression && trends.iter().any(|t| t.regression.is_some()) {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// The history for people: runs newest first, then each experiment's trend.
fn render_history(rows: &[history::RunRow], trends: &[history::Trend]) -> String {
    use std::fmt::Write;
    let ms = output::report::ms_or_dash;
    let mut s = String::new();
    if rows.is_empty() {
        let _ = writeln!(s, "no runs yet");
        return s;
    }
    let width = rows
        .iter()
        .map(|r| r.experiment.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        s,
        "{:<20}  {:<20}  {:<width$}  {:<11}  {:<7}  {:>8}  {:>8}",
        "started", "run", "experiment", "verdict", "aborted", "recover", "detect"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<20}  {:<20}  {:<width$}  {:<11}  {:<7}  {:>8}  {:>8}",
            r.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            r.run_id,
            r.experiment,
            r.verdict.map(Verdict::as_str).unwrap_or("unfinished"),
            if r.aborted { "yes" } else { "no" },
            ms(r.time_to_recover_ms),
            ms(r.time_to_detect_ms)
        );
    }
    let _ = writeln!(s, "\ntrends (oldest run first):");
    let list = |v: &[u64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter().map(|m| ms_text(*m)).collect::<Vec<_>>().join(" -> ")
        }
    };
    for t in trends {
        let rate = t
            .pass_rate
            .map(|r| format!("{:.0}% ({} of {} that ran)", r * 100.0, t.passed, t.ran))
            .unwrap_or_else(|| "- (none tested the hypothesis)".into());
        let _ = writeln!(s, "  {}: {} run(s), pass rate {rate}", t.experiment, t.runs);
        let _ = writeln!(s, "    verdicts:        {}", t.verdicts.join(" -> "));
        let _ = writeln!(s, "    time to recover: {}", list(&t.time_to_recover_ms));
        let _ = writeln!(s, "    time to detect:  {}", list(&t.time_to_detect_ms));
        if let Some(why) = &t.regression {
            let _ = writeln!(s, "    REGRESSION: {why}");
        }
    }
    s
}

fn history_diff(a: &str, b: &str, output: Output, runs_dir: &Path) -> i32 {
    let load = |what: &str| history::find(runs_dir, what).and_then(|p| output::load(&p).map_err(Into::into));
    let (sa, sb) = match (load(a), load(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return match e {
                history::HistoryError::NoSuchRun(_) => exit::USAGE,
                _ => exit::INVALID_INPUT,
            };
        }
    };
    if sa.experiment != sb.experiment {
        eprintln!(
            "error: run {} is of experiment `{}` and run {} of `{}`: --diff compares two runs of one experiment",
            sa.run_id, sa.experiment, sb.run_id, sb.experiment
        );
        return exit::USAGE;
    }
    let rows = history::diff(&sa, &sb);
    match output {
        Output::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(k, x, y)| serde_json::json!({ "field": k, "a": x, "b": y, "same": x == y }))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "experiment": sa.experiment, "a": sa.run_id, "b": sb.run_id, "rows": v })
            );
        }
        Output::Text => {
            // Long values (reasons, probe details) are cut for the side-by-side; --output json has them whole.
            let cut = |v: &str| {
                if v.chars().count() > 60 {
                    format!("{}...", v.chars().take(57).collect::<String>())
                } else {
                    v.to_string()
                }
            };
            let rows: Vec<(char, String, String, String)> = rows
                .iter()
                .map(|(k, x, y)| (if x == y { ' ' } else { '*' }, k.clone(), cut(x), cut(y)))
                .collect();
            let kw = rows.iter().map(|(_, k, _, _)| k.len()).max().unwrap_or(8);
            let aw = rows
                .iter()
                .map(|(_, _, x, _)| x.chars().count())
                .max()
                .unwrap_or(8);
            let mut text = format!(
                "experiment `{}`: {} (A) against {} (B); * marks a difference\n",
                sa.experiment, sa.run_id, sb.run_id
            );
            for (mark, k, x, y) in &rows {
                text += &format!("{mark} {k:<kw$}  {x:<aw$}  {y}\n");
            }
            print_text(&text);
        }
    }
    exit::OK
}

/// Prints to stdout; a closed pipe (`gameday history | head`) is not an error.
fn print_text(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
