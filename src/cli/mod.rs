//! The command line: arguments (clap) and the dispatch to the commands, one
//! file each.
//!
//! Arguments are parsed in two steps, as ripgrep does: first what the user
//! typed, without I/O ([`Cli`], here), then the objects built from it
//! (experiments, the policy, AWS clients: [`shared`]). A command returns an
//! [`Outcome`] or an [`Error`]; exit codes are chosen in one place, [`exit`].

mod cleanup;
mod completions;
mod due;
pub mod exit;
mod halt;
mod history;
mod locks;
mod outcome;
mod plan;
mod policy;
mod recover;
mod report;
mod run;
mod schema;
mod shared;
mod suite;
mod validate;

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::aws::ConnectOptions;

pub use outcome::{Error, Outcome, PathError, PlanVerdict};

const AFTER_HELP: &str = "\
Exit codes:
  0    passed (run) / all files valid (validate) / the plan may run (plan) /
       reports written (report) / history listed (history) / GO (suite run)
  1    invalid experiment or policy file; nothing was touched (report: unreadable journal)
  2    usage error (report, history: no such run or runs folder)
  3    failed: the hypothesis did not hold (history --fail-on-regression: a regression)
  4    aborted: a guardrail tripped (everything rolled back)
  5    not-run: a precondition did not hold (nothing injected)
  6    error: the runner could not do its job (see the journal; `gameday recover`)
  7    refused by the safety policy, or approval missing or stale, or halted
       (`gameday halt`; nothing touched)
  8    suite run: NO-GO (a blocking experiment did not pass, or the readiness
       score is below the suite's min_score; see the scorecard)
  130  interrupted by SIGINT/SIGTERM (everything rolled back)
  run-due exits with its most severe outcome (see `gameday run-due --help`)

AWS settings come from the standard chain (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL, ~/.aws/config); each command's --endpoint-url,
--region and --profile override them.

A run goes into a temporary copy of the workload's Auto Scaling group unless
the experiment says `mode: in-place`. If a runner dies mid-run,
`gameday recover` finishes its rollback from the journal.

Experiments with a `schedule:` run from the scheduler you already have:
start `gameday run-due` every few minutes (recipes in deploy/); `gameday
due` says what is due and why; `gameday catalog` lists every experiment.

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
        /// Folder for run records (one subfolder per run), or a shared runs
        /// store in S3, s3://BUCKET/PREFIX: every intent is written there
        /// before its call, so `gameday recover` works from any machine.
        #[arg(
            long,
            alias = "runs",
            value_name = "DIR|S3_URL",
            default_value = "runs",
            env = "GAMEDAY_RUNS_DIR"
        )]
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
        #[command(flatten)]
        notify: NotifyArgs,
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
    /// lock tags by `gameday:lock`, and the leases of the policy's lock table,
    /// and removes those whose run finished (per runs/) or whose
    /// `gameday:expires-at` (a lease: its expiry) has passed. Never touches a live run.
    Cleanup {
        /// List what would be removed, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The safety policy whose `locks.table` holds leases to sweep (default:
        /// ./safety/policy.yaml, else the built-in default).
        #[arg(long, value_name = "FILE", env = "GAMEDAY_POLICY")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        runs: RunsArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Race-free locks: the DynamoDB lease table of the safety policy's `locks`.
    Locks {
        #[command(subcommand)]
        command: LocksCommand,
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
    /// Suites: several experiments as one readiness gate, with a scorecard.
    ///
    /// A suite file (suites/*.yaml) lists experiments (paths or globs,
    /// relative to it), each blocking or advisory. `suite plan` shows every
    /// plan and one hash approving the whole suite; `suite run` runs them and
    /// writes a scorecard (HTML, Markdown, JUnit) with GO or NO-GO.
    Suite {
        #[command(subcommand)]
        command: SuiteCommand,
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
    /// List the scheduled experiments and suites: what is due now and why.
    ///
    /// For every experiment or suite file with a `schedule:` block: its latest slot
    /// (the cron time in its time zone, plus its jitter), whether it is due
    /// (never run, or last run before the slot), deferred (the safety
    /// policy's windows or freezes refuse runs now: it runs on the first
    /// trigger they allow, until the next slot replaces it), done (claimed
    /// or covered by a run since the slot) or waiting (no slot yet); the last
    /// run and the next slot. Read-only; its one AWS call reads a slot's
    /// lease when the policy has a lease table (`locks`), so that a slot
    /// another machine claimed shows as done. Exits 0, or 1 when a file is
    /// invalid.
    #[command(
        after_help = "Examples:\n  gameday due\n  gameday due experiments/shop-web-lose-a-third.yaml --output json"
    )]
    Due {
        /// Experiment and suite files, or folders searched for *.yaml and
        /// *.yml files (default: experiments/, and suites/ when it exists).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        runs: RunsArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Run every experiment and suite whose scheduled slot is due, once per slot.
    ///
    /// Meant to be started often by the scheduler a team already runs
    /// (cron, a systemd timer, a Kubernetes CronJob, EventBridge Scheduler,
    /// CI; see deploy/). Each due slot is claimed before it runs, so a slot
    /// runs once even when run-due is triggered again or from two processes
    /// at the same moment: by a conditional write in the lease table when
    /// the policy has `locks` (any number of machines), else by an
    /// exclusive file create in the runs folder (one machine, or a shared
    /// file system). The claim (who, when, the run id and verdict) stays in
    /// <runs>/.slots/; a slot's lease stays in the table until an hour
    /// after the next slot is due. Due experiments and suites run one after
    /// another, without asking for approval (a run the policy wants approved
    /// is refused, exit 7); a due suite runs as `gameday suite run` runs it
    /// and writes its scorecard. A catalog in the runs folder is refreshed.
    ///
    /// Exits with the most severe outcome: 130 if a run was interrupted
    /// (the rest wait), 6 if a run ended in error or a slot could not be
    /// claimed, 1 if a file is invalid (the valid ones still run), else the
    /// exit code of the worst run (7 refused, 4 aborted, 3 failed or a
    /// suite NO-GO, 5 not-run), 0 when every run passed (every suite GO) or
    /// nothing was due.
    #[command(
        after_help = "Examples:\n  gameday run-due\n  gameday run-due experiments/ --runs-dir /var/lib/gameday/runs --quiet"
    )]
    RunDue {
        /// Experiment and suite files, or folders searched for *.yaml and
        /// *.yml files (default: experiments/, and suites/ when it exists).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Folder for run records (one subfolder per run) and slot claims, or
        /// a shared runs store in S3, s3://BUCKET/PREFIX: then a slot is
        /// claimed by a conditional put in the bucket (one run per slot across
        /// machines that share only the bucket), and the runs are recorded there.
        #[arg(
            long,
            alias = "runs",
            value_name = "DIR|S3_URL",
            default_value = "runs",
            env = "GAMEDAY_RUNS_DIR"
        )]
        runs_dir: PathBuf,
        /// Print only the verdicts, the summary and errors.
        #[arg(long, short)]
        quiet: bool,
        /// After each run, publish its outcome to CloudWatch (see `gameday run --help`).
        #[arg(long)]
        publish_metrics: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Write the catalog: every experiment and suite on one page.
    ///
    /// Writes catalog.html (one self-contained page), catalog.md and
    /// catalog.json into the runs folder: for each experiment its hypothesis,
    /// owner, faults, guardrails, schedule and next slot, last verdict with
    /// its date, the trend of its last 10 verdicts and links to its last 3
    /// reports; for each suite (a file whose top level has `experiments`,
    /// read with the suite decoder) its experiments, schedule and next slot,
    /// last GO/NO-GO, trend and links to its last 3 scorecards. An invalid
    /// file is listed with its problems. Once written, every `gameday run`,
    /// `gameday suite run` and `gameday run-due` into that runs folder (or S3
    /// store, where the catalog is put too) writes it again. No AWS call
    /// besides the S3 store's.
    #[command(
        after_help = "Examples:\n  gameday catalog\n  gameday catalog experiments/ suites/ --runs-dir /mnt/gameday/runs"
    )]
    Catalog {
        /// Experiment and suite files, or folders of them (default:
        /// experiments/, and suites/ when it exists).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// Print a shell completion script to stdout.
    ///
    /// Completes commands, flags and their values (shells, output formats).
    /// Install it once for your shell (see below), then open a new shell.
    #[command(after_help = completions::INSTALL)]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// The kill switch: abort every run in this account and region, and
    /// refuse new ones, until `gameday resume`.
    ///
    /// Puts the SSM parameter of the policy's `halt.parameter` (default
    /// /gameday/halt) with the reason, who and when. Every running gameday
    /// reads it with its probes at each `timing.interval` tick, and aborts
    /// and rolls back when it is there (verdict aborted, exit 4); a run that
    /// starts while it is there is refused before anything is touched (exit
    /// 7), and so are `run-due` and `suite run`. `--status` shows it (exit 0:
    /// not halted, 7: halted). Needs ssm:PutParameter (status: ssm:GetParameter).
    #[command(
        after_help = "Examples:\n  gameday halt --reason \"incident 4711: checkout errors\"\n  gameday halt --status\n  gameday resume\n\nThe switch is per account and region: pass --region (or --profile) for each one to halt."
    )]
    Halt {
        /// Why: shown by every run it aborts and journaled there.
        #[arg(
            long,
            value_name = "TEXT",
            required_unless_present = "status",
            conflicts_with = "status"
        )]
        reason: Option<String>,
        /// Show whether runs are halted, change nothing.
        #[arg(long)]
        status: bool,
        /// The safety policy whose `halt.parameter` names the switch (default:
        /// ./safety/policy.yaml, else the built-in default: /gameday/halt).
        #[arg(long, value_name = "FILE", env = "GAMEDAY_POLICY")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Lift `gameday halt`: runs may start again (deletes the parameter).
    ///
    /// Runs the halt aborted are not restarted. Needs ssm:DeleteParameter.
    Resume {
        /// The safety policy whose `halt.parameter` names the switch.
        #[arg(long, value_name = "FILE", env = "GAMEDAY_POLICY")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Print the JSON Schema of a file format, for editors.
    ///
    /// yaml-language-server (VS Code's YAML extension, Neovim, Helix, ...)
    /// completes keys, shows their documentation and flags mistakes as you
    /// type when a file starts with
    /// `# yaml-language-server: $schema=../schema/experiment.schema.json`.
    /// The schemas are built from the decoders' own key tables; `gameday
    /// validate` still checks what a schema cannot (fault names in
    /// start_after, time zones, cycles).
    #[command(after_help = schema::AFTER_HELP)]
    Schema {
        /// The format: experiment, policy or suite (all three with --write).
        #[arg(value_enum, value_name = "FORMAT", required_unless_present = "write")]
        format: Option<schema::Format>,
        /// Write FORMAT.schema.json into this folder instead of printing
        /// (every format's when FORMAT is left out).
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum LocksCommand {
    /// Create the DynamoDB table runs take their leases in.
    ///
    /// Without a lease table, runs lock their targets with tags, which is best
    /// effort: two runs started at the same moment can both get through. With
    /// one (safety policy: `locks: { table: NAME }`), a run takes a lease on
    /// every group and instance it acts on in one conditional transaction, so
    /// exactly one of two such runs goes ahead and the other ends `not-run`
    /// (exit 5) naming the holder. The table's key is the string partition key
    /// `lease`; billing is on demand. Safe to run again: an existing table
    /// with the right key is left as it is. Needs dynamodb:CreateTable and
    /// dynamodb:DescribeTable.
    #[command(
        after_help = "Examples:\n  gameday locks create-table gameday-locks\n  gameday locks create-table gameday-locks --region eu-west-1\n\nThen, in safety/policy.yaml:\n  locks:\n    table: gameday-locks\n\nFor CloudFormation, see the README (Safety: locks)."
    )]
    CreateTable {
        /// The table's name (3 to 255 letters, digits, `_`, `-`, `.`).
        #[arg(value_name = "TABLE")]
        table: String,
        #[command(flatten)]
        aws: AwsArgs,
    },
}

#[derive(Debug, Subcommand)]
enum SuiteCommand {
    /// Show every experiment's plan, the safety gate's verdict on each, and
    /// the one hash that approves the whole suite (read-only AWS calls only).
    ///
    /// Exits 0 when every experiment may run, 7 when the policy would refuse
    /// any, 5 when a precondition of any does not hold, 1 when the suite or
    /// an experiment is invalid.
    Plan {
        /// The suite file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Seed for the random choices shown (the same for every experiment).
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
    /// Run every experiment of the suite, then write its scorecard.
    ///
    /// Each experiment runs as `gameday run` would (its own run folder,
    /// journal and reports), one after another unless the suite sets
    /// `concurrency` (experiments sharing a target never overlap). After an
    /// outcome the suite's `stop_on` names, no further experiment starts.
    /// The scorecard (scorecard.html, scorecard.md, junit.xml, suite.json)
    /// goes to <runs-dir>/suite-<id>/. Exits 0 for GO, 8 for NO-GO, 7 when
    /// the suite needs approval and has none (or a stale one), 130 when
    /// interrupted.
    Run {
        /// The suite file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Seed for random target selection (the same for every experiment).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Folder for run records (one subfolder per run, one per suite run),
        /// or a shared runs store in S3, s3://BUCKET/PREFIX (each run and the
        /// scorecard are written there, as `run` writes a run).
        #[arg(
            long,
            alias = "runs",
            value_name = "DIR|S3_URL",
            default_value = "runs",
            env = "GAMEDAY_RUNS_DIR"
        )]
        runs_dir: PathBuf,
        /// Print only the scorecard's lines and errors (no progress on stderr).
        #[arg(long, short)]
        quiet: bool,
        /// Approve the suite's plan with this hash (printed by `gameday suite
        /// plan`): needed when any experiment's policy asks for approval and
        /// there is no terminal. A changed plan no longer fits and is refused.
        #[arg(long, value_name = "HASH")]
        approve: Option<String>,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        notify: NotifyArgs,
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
    /// Folder of run records (one subfolder per run), or a shared runs
    /// store in S3, s3://BUCKET/PREFIX (fetched into a scratch folder:
    /// GAMEDAY_SCRATCH_DIR, else one under the temporary folder).
    #[arg(
        long,
        alias = "runs",
        value_name = "DIR|S3_URL",
        default_value = "runs",
        env = "GAMEDAY_RUNS_DIR"
    )]
    runs_dir: PathBuf,
}

/// Where a run's notifications go (start, abort, end, an unfinished
/// rollback; see the README's "Notifications"): each flag overrides the
/// policy's `notifications` key of the same channel.
#[derive(Debug, Clone, Default, Args)]
struct NotifyArgs {
    /// Notify this SNS topic (ARN) instead of the policy's
    /// `notifications.sns_topic`. Needs sns:Publish; a failed send is a
    /// warning, never a reason to skip a rollback.
    #[arg(long, value_name = "ARN", env = "GAMEDAY_NOTIFY_SNS", value_parser = parse_sns_topic)]
    notify_sns: Option<String>,
    /// Put the run's events on this EventBridge bus (name or ARN) instead of
    /// the policy's `notifications.event_bus`; source `gameday`. Needs
    /// events:PutEvents; a failed send is a warning.
    #[arg(long, value_name = "NAME|ARN", env = "GAMEDAY_NOTIFY_EVENT_BUS", value_parser = parse_event_bus)]
    notify_event_bus: Option<String>,
}

impl NotifyArgs {
    /// The destinations in force: these flags over the policy's.
    fn over(&self, policy: &crate::policy::Notifications) -> crate::policy::Notifications {
        crate::policy::Notifications {
            sns_topic: self.notify_sns.clone().or_else(|| policy.sns_topic.clone()),
            event_bus: self.notify_event_bus.clone().or_else(|| policy.event_bus.clone()),
        }
    }
}

fn parse_sns_topic(text: &str) -> Result<String, String> {
    crate::policy::check_sns_topic(text).map(|()| text.to_string())
}

fn parse_event_bus(text: &str) -> Result<String, String> {
    crate::policy::check_event_bus(text).map(|()| text.to_string())
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
            return exit::for_parse_error(&e);
        }
    };
    init_logging();
    let result = cli.command.dispatch();
    if let Err(e) = &result {
        e.eprint();
    }
    exit::code(&result)
}

impl Command {
    /// Runs the command (step two: builds what it needs from the arguments).
    fn dispatch(self) -> Result<Outcome, Error> {
        match self {
            Command::Validate { paths } => validate::validate(&paths),
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
                notify,
            } => {
                let shown = run::Shown {
                    quiet,
                    output,
                    publish_metrics,
                    interactive: true,
                    notify,
                };
                with_runtime(run::run(&file, seed, runs_dir, shown, approve, &safety, &aws))
            }
            Command::Report { run, runs } => report::report(&run, &local_runs(&runs.runs_dir, Some(&run))?),
            Command::History {
                experiment,
                diff,
                fail_on_regression,
                output,
                runs,
            } => match diff {
                Some(pair) => history::diff(&pair[0], &pair[1], output, &local_runs(&runs.runs_dir, None)?),
                None => history::list(
                    experiment.as_deref(),
                    fail_on_regression,
                    output,
                    &local_runs(&runs.runs_dir, None)?,
                ),
            },
            Command::Plan {
                file,
                seed,
                output,
                safety,
                aws,
            } => with_runtime(plan::plan(&file, seed, output, &safety, &aws)),
            Command::Suite {
                command:
                    SuiteCommand::Plan {
                        file,
                        seed,
                        output,
                        safety,
                        aws,
                    },
            } => with_runtime(suite::plan(&file, seed, output, &safety, &aws)),
            Command::Suite {
                command:
                    SuiteCommand::Run {
                        file,
                        seed,
                        runs_dir,
                        quiet,
                        approve,
                        safety,
                        aws,
                        notify,
                    },
            } => with_runtime(suite::run(
                &file,
                seed,
                runs_dir,
                suite::Shown {
                    quiet,
                    interactive: true,
                    notify,
                },
                approve,
                &safety,
                &aws,
            )),
            Command::Policy {
                command: PolicyCommand::Show { policy },
            } => policy::show(policy.as_deref()),
            Command::Recover {
                run_id,
                force,
                runs,
                aws,
            } => with_runtime(recover::recover(run_id, force, &runs.runs_dir, &aws)),
            Command::Cleanup {
                dry_run,
                policy,
                runs,
                aws,
            } => with_runtime(cleanup::cleanup(dry_run, policy.as_deref(), &runs.runs_dir, &aws)),
            Command::Locks {
                command: LocksCommand::CreateTable { table, aws },
            } => with_runtime(locks::create_table(&table, &aws)),
            Command::Due {
                paths,
                output,
                safety,
                runs,
                aws,
            } => with_runtime(due::due(&paths, output, &safety, &runs.runs_dir, &aws)),
            Command::RunDue {
                paths,
                runs_dir,
                quiet,
                publish_metrics,
                safety,
                aws,
                notify,
            } => with_runtime(due::run_due(
                &paths,
                runs_dir,
                quiet,
                publish_metrics,
                &safety,
                &aws,
                &notify,
            )),
            Command::Catalog { paths, safety, runs } => {
                with_runtime(due::catalog(&paths, &runs.runs_dir, &safety))
            }
            Command::Completions { shell } => completions::print(shell),
            Command::Halt {
                reason,
                status: _,
                policy,
                aws,
            } => with_runtime(halt::halt(reason.as_deref(), policy.as_deref(), &aws)),
            Command::Resume { policy, aws } => with_runtime(halt::resume(policy.as_deref(), &aws)),
            Command::Schema { format, write } => schema::schema(format, write.as_deref()),
        }
    }
}

/// The local runs folder for the commands that only read runs: `runs_dir`
/// itself, or for an S3 store the scratch folder, with run `run` (or every
/// run's record) fetched into it first.
fn local_runs(runs_dir: &Path, run: Option<&str>) -> Result<PathBuf, Error> {
    if !crate::store::Runs::is_remote(runs_dir) {
        return Ok(runs_dir.to_path_buf());
    }
    runtime()?.block_on(async {
        let runs = crate::store::Runs::open(runs_dir, &ConnectOptions::default()).await?;
        match run {
            Some(id) if crate::journal::is_run_id(id) => {
                runs.pull(id).await?;
            }
            _ => runs.pull_all().await?,
        }
        Ok(runs.local)
    })
}

/// Runs an async command on [`runtime`].
fn with_runtime(work: impl Future<Output = Result<Outcome, Error>>) -> Result<Outcome, Error> {
    runtime()?.block_on(work)
}

/// A runtime of two workers (the machines this runs on, CI included, have
/// two cores).
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // A run's future is deep (the lifecycle, the fault phase, the traffic
        // restore beside it); `suite run` polls several on worker threads,
        // whose default 2 MiB stack a debug build overflows. 8 MiB, as the
        // main thread has.
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

fn init_logging() {
    // SDK and runner diagnostics, off unless asked for: GAMEDAY_LOG=debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAMEDAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    // No colour codes unless stderr is a terminal: logs in CI stay plain text.
    use std::io::IsTerminal;
    // Credentials never reach the logs, at any level (the SDK's trace logs
    // print the access key id of every request's identity).
    let known: Vec<String> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .collect();
    let known = std::sync::Arc::new(known);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(move || Redacting(known.clone()))
        .try_init();
}

/// Standard error, with [`crate::util::redact_credentials`] applied to each
/// write (the formatter writes one whole event at a time).
struct Redacting(std::sync::Arc<Vec<String>>);

impl std::io::Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(crate::util::redact_credentials(&text, &self.0).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
