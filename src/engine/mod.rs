//! The run lifecycle: preflight, baseline, inject, watch, roll back, recovery,
//! verdict.
//!
//! The fault phase is a pure state machine ([`dispatcher`]) whose commands an
//! [`executor`] runs as tasks: it hears signals, observations (a watcher task
//! reading every probe every `timing.interval`), fault timers, the
//! `max_duration` deadline and the inject/rollback tasks, so an abort never
//! waits for a sleep to finish. Every path out of injection goes through the
//! same rollback: normal end, guardrail breach, max_duration,
//! SIGINT/SIGTERM/SIGHUP, API errors and panicked tasks. Every phase hears
//! signals through [`signals`], by one rule: the first stops gracefully, later
//! ones only skip waits (for instances to reach `running`); rollback and
//! teardown calls always run.

pub mod activities;
mod dispatcher;
mod executor;
mod reporter;
mod signals;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::s3::S3Store;
use crate::aws::{Assumed, Aws, AwsError, describe_group};
use crate::environment::{self, EnvError, traffic};
use crate::experiment::{Experiment, Traffic};
use crate::faults::{
    DeleteAutoScalingGroup, DeleteLockTags, DeleteTargetGroup, On, ReleaseLeases, RestoreListenerRule, Step,
    StepContext, StopLoad, Undo,
};
use crate::gate::{self, Admission};
use crate::halt::{self, Halt};
use crate::journal::{self, ActionKind, Event, Journal, JournalError, Phase, Remote, Verdict};
use crate::lease;
use crate::lock;
use crate::model::{Mode, Owner, Vars};
use crate::observe::{self, Observer, Queries, Reading};
use crate::plan::{self, PlanError, Targets};
use crate::policy::PolicySource;
use crate::targets::{self, TargetError};
use crate::util::{format_duration, hostname, ms_text, sha256_hex};

pub use reporter::Reporter;

/// Attempts per rollback step (each attempt also has the SDK's own retries).
const ROLLBACK_ATTEMPTS: u32 = 5;
/// Added to a run's longest possible length for its `gameday:expires-at`:
/// `gameday cleanup` must never take a live run's resources.
const EXPIRY_MARGIN: Duration = Duration::from_secs(15 * 60);

use dispatcher::{MAX_WATCH_FAILURES, Window};
pub use signals::SignalHandling;
use signals::Signals;

/// Settings for one run.
#[derive(Debug)]
pub struct RunOptions {
    /// Where run folders are created.
    pub runs_dir: PathBuf,
    /// The shared runs store, if any: every intent is durable there before its call.
    pub store: Option<S3Store>,
    /// Replay a previous run's random choices.
    pub seed: Option<u64>,
    /// Signal handling.
    pub signals: SignalHandling,
    /// Where the run's events and status go (the command line's progress display).
    pub progress: Box<dyn Reporter>,
    /// The safety policy, the clock and the operator's approval, for the gate.
    pub safety: Admission,
    /// The run's id, when the caller chose it (to name an assumed role's
    /// session after it); `None`: a new one.
    pub run_id: Option<String>,
    /// The role the clients assumed (`aws.role_arn`), journaled as `connected`.
    pub assumed: Option<Assumed>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct Outcome {
    /// The run's id.
    pub run_id: String,
    /// The run folder.
    pub dir: PathBuf,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
    /// Undos that could not be completed.
    pub unfinished: Vec<Undo>,
    /// The safety gate refused the run (the verdict is `not-run`).
    pub refused: bool,
}

/// Why a run could not even start recording.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run folder or its journal could not be created.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A new run id: UTC time (sorts by start) and a random suffix (unique).
pub fn new_run_id() -> String {
    let mut rng: StdRng = rand::make_rng();
    format!(
        "{}-{:04x}",
        Timestamp::now().strftime("%Y%m%d-%H%M%S"),
        rng.next_u32() & 0xffff
    )
}

/// Draws for a run id whose folder is taken, at most: ids have one second's
/// resolution and a 16-bit suffix, so of runners started in the same second
/// against one runs store (20 at once: about 1 in 350), two may draw the same.
const RUN_ID_DRAWS: u32 = 5;

/// Creates the run's folder and journal and writes `run_started`, under a
/// fresh run id from `next_id`. An id whose folder exists (locally, or in the shared store:
/// its first chunk is put only if absent, so another runner's run is never
/// written into) is drawn again.
fn open_journal(
    runs_dir: &std::path::Path,
    store: Option<&S3Store>,
    mut next_id: impl FnMut() -> String,
    started: impl Fn(&str) -> Event,
) -> Result<(String, PathBuf, Journal, journal::Entry), RunError> {
    let mut draw = 1;
    loop {
        let run_id = next_id();
        let dir = runs_dir.join(&run_id);
        let remote = store.map(|store| Remote {
            store: store.clone(),
            run_id: run_id.clone(),
        });
        match Journal::create_with(&dir, remote) {
            Ok(journal) => match journal.append(started(&run_id)) {
                Ok(first) => return Ok((run_id, dir, journal, first)),
                Err(JournalError::Store { taken: true, .. }) if draw < RUN_ID_DRAWS => {
                    // Our own folder, just made: only its events file is in it.
                    drop(journal);
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(e) => return Err(e.into()),
            },
            Err(JournalError::Write { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists && draw < RUN_ID_DRAWS => {}
            Err(e) => return Err(e.into()),
        }
        draw += 1;
    }
}

/// Shared by the dispatcher and its tasks.
pub(crate) struct Ctx {
    pub(crate) aws: Aws,
    pub(crate) journal: Journal,
    pub(crate) progress: Box<dyn Reporter>,
}

impl Ctx {
    /// Records an event (flushed to disk) and shows it.
    pub(crate) fn emit(&self, event: Event) -> Result<(), JournalError> {
        let entry = self.journal.append(event)?;
        self.progress.event(&entry);
        Ok(())
    }

    /// Records an event when failing to record it must not stop the caller
    /// (rollback goes on even if the disk is full); the failure is shown.
    pub(crate) fn emit_best_effort(&self, event: Event) {
        if let Err(e) = self.emit(event) {
            self.progress.line(&format!("warning: {e}"));
        }
    }
}

/// Runs `exp` to its verdict. Errors only when nothing could be recorded.
pub async fn run(exp: &Experiment, aws: &Aws, opts: RunOptions) -> Result<Outcome, RunError> {
    let seed = opts.seed.unwrap_or_else(|| rand::make_rng::<StdRng>().next_u64());

    // Handlers go in before the first mutating call can happen; without them
    // the run refuses (below), as an operator's Ctrl-C could not roll back.
    let sigs = Signals::install(opts.signals);

    let margin = if exp.environment.mode == Mode::Parallel {
        exp.environment.ready_timeout
    } else {
        Duration::ZERO
    } + EXPIRY_MARGIN;
    let expires_at = Timestamp::now()
        .checked_add(exp.timing.max_duration + margin)
        .unwrap_or(Timestamp::MAX);
    // An id chosen by the caller (the role session is named after it) is
    // tried first; only if its folder is taken is another drawn, and the
    // `connected` event then still names the session it was given.
    let mut preset = opts.run_id.clone();
    let next_id = move || preset.take().unwrap_or_else(new_run_id);
    let started = |run_id: &str| Event::RunStarted {
        run_id: run_id.to_string(),
        gameday_version: env!("CARGO_PKG_VERSION").to_string(),
        journal_version: journal::JOURNAL_VERSION,
        experiment: exp.name.clone(),
        file: exp.file.clone(),
        file_sha256: sha256_hex(exp.source.as_bytes()),
        source: exp.source.clone(),
        hypothesis: exp.hypothesis.clone(),
        mode: exp.environment.mode,
        seed,
        region: aws.region.clone(),
        endpoint: aws.endpoint.clone(),
        pid: std::process::id(),
        host: hostname(),
        expires_at: Some(expires_at),
        policy_file: match &opts.safety.policy.source {
            PolicySource::File(p) => Some(p.clone()),
            PolicySource::BuiltIn => None,
        },
        policy_sha256: opts.safety.policy.sha256.clone(),
    };
    let (run_id, dir, journal, first) = open_journal(&opts.runs_dir, opts.store.as_ref(), next_id, started)?;
    let ctx = Arc::new(Ctx {
        aws: aws.clone(),
        journal,
        progress: opts.progress,
    });
    ctx.progress.event(&first);
    if let Some(a) = &opts.assumed {
        ctx.emit(Event::Connected {
            account: a.account.clone(),
            region: a.region.clone(),
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
            session: a.session.clone(),
            arn: a.arn.clone(),
        })?;
    }

    let end = match sigs {
        Ok(sigs) => lifecycle(&ctx, exp, &run_id, seed, expires_at, &opts.safety, sigs).await,
        Err(e) => End::error(format!(
            "{e}: an operator could not stop the run with rollback, so it refuses; nothing was touched"
        )),
    };
    let End {
        verdict,
        reason,
        unfinished,
        refused,
    } = end;
    ctx.emit_best_effort(Event::Phase { phase: Phase::Done });
    ctx.emit_best_effort(Event::Verdict {
        verdict,
        reason: reason.clone(),
        unfinished: unfinished.clone(),
    });
    ctx.progress.finish();
    Ok(Outcome {
        run_id,
        dir,
        verdict,
        reason,
        unfinished,
        refused,
    })
}

/// How a run (or a phase of it) ended.
#[derive(Debug)]
pub(crate) struct End {
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// Why, in words.
    pub(crate) reason: String,
    /// Undos that could not be completed (for `gameday recover`).
    pub(crate) unfinished: Vec<Undo>,
    /// The safety gate refused the run (the verdict is `not-run`; the
    /// command line tells a refusal from another not-run by its exit code).
    pub(crate) refused: bool,
}

impl End {
    fn new(verdict: Verdict, reason: String) -> End {
        End {
            verdict,
            reason,
            unfinished: Vec::new(),
            refused: false,
        }
    }

    fn error(reason: String) -> End {
        End::new(Verdict::Error, reason)
    }
}

/// A setup call to undo at teardown: its intent's id and its undo.
type SetupStep = (u64, Undo);

async fn lifecycle(
    ctx: &Arc<Ctx>,
    exp: &Experiment,
    run_id: &str,
    seed: u64,
    expires_at: Timestamp,
    safety: &Admission,
    mut sigs: Signals,
) -> End {
    let hurry = CancellationToken::new();
    let mut setup: Vec<SetupStep> = Vec::new();
    if let Err(e) = ctx.emit(Event::Phase {
        phase: Phase::Preflight,
    }) {
        return End::error(format!("nothing was injected: {e}"));
    }
    // Lives as long as the run: the leases' heartbeat stops when it is cancelled.
    let alive = CancellationToken::new();
    let _stop_heartbeat = alive.clone().drop_guard();
    let end = match prepare(
        ctx, exp, run_id, seed, expires_at, safety, &mut setup, &mut sigs, &alive,
    )
    .await
    {
        Ok(ready) => {
            // Real users' traffic leaves the copies the moment the run
            // aborts, while the faults are still being rolled back; what
            // is not restored then is restored first at teardown.
            let rules: Vec<SetupStep> = setup
                .iter()
                .filter(|(_, u)| matches!(u, Undo::RestoreListenerRule(_)))
                .cloned()
                .collect();
            setup.retain(|(_, u)| !matches!(u, Undo::RestoreListenerRule(_)));
            let aborted = CancellationToken::new();
            // Cancelled once every rule is restored: the copies serve no users
            // from then on, so recovery stops judging probes of their traffic.
            let withdrawn = CancellationToken::new();
            let pending = std::sync::Mutex::new(rules);
            let restore = async {
                aborted.cancelled().await;
                let steps = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
                let any = !steps.is_empty();
                let mut left = Vec::new();
                for (id, undo) in steps.into_iter().rev() {
                    if rollback_step(ctx, Owner::Environment.name(), id, &undo, &hurry)
                        .await
                        .is_err()
                    {
                        left.push((id, undo));
                    }
                }
                if any && left.is_empty() {
                    withdrawn.cancel();
                }
                left.reverse();
                left
            };
            let run = observe_and_inject(ctx, exp, ready, &hurry, &aborted, &withdrawn, &mut sigs);
            tokio::pin!(restore);
            tokio::pin!(run);
            let (end, left) = tokio::select! {
                end = &mut run => {
                    let left = if aborted.is_cancelled() { (&mut restore).await } else { Vec::new() };
                    (end, left)
                }
                left = &mut restore => (run.await, left),
            };
            // Not restored yet (no abort) or failed: teardown restores them first.
            let mut rest = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
            rest.extend(left);
            setup.extend(rest);
            end
        }
        Err(end) => end,
    };
    alive.cancel();
    teardown(ctx, setup, &hurry, &mut sigs, end).await
}

/// What preparation leaves for the rest of the run.
struct Ready {
    /// Each fault's planned calls.
    plans: Vec<Vec<Step>>,
    /// Variables as the faults' environment sees them (the copy in parallel mode).
    run_vars: Vars,
    /// Variables of the real workload (the source in parallel mode).
    source_vars: Vars,
    /// What faults' calls may need to know about the run.
    cx: StepContext,
    /// When preparation began: Auto Scaling activities from then on are journaled.
    started: Timestamp,
    /// The kill switch's SSM parameter, read with every tick's probes.
    halt_parameter: String,
}

/// Baseline, fault phase, recovery and the hypothesis's verdict; every
/// metric's series is journaled whatever the end.
async fn observe_and_inject(
    ctx: &Arc<Ctx>,
    exp: &Experiment,
    ready: Ready,
    hurry: &CancellationToken,
    aborted: &CancellationToken,
    withdrawn: &CancellationToken,
    sigs: &mut Signals,
) -> End {
    let parallel = exp.environment.mode == Mode::Parallel;
    let mut obs = Observer::new(observe::watch_list(
        exp,
        &ready.run_vars,
        &ready.source_vars,
        parallel,
    ))
    .with_halt(&ready.halt_parameter);
    ctx.emit_best_effort(Event::Probes { probes: obs.infos() });
    // The kill switch once more right before injecting: setting up the
    // copies may have taken minutes since preflight.
    let ready_to_inject = match baseline(ctx, exp, &mut obs, sigs).await {
        Ok(()) => check_halt(ctx, &ready.halt_parameter).await,
        Err(end) => Err(end),
    };
    let end = match ready_to_inject {
        Err(end) => end,
        Ok(()) => {
            // The tolerances fixed by the baseline are what reports draw.
            ctx.emit_best_effort(Event::Probes { probes: obs.infos() });
            match ctx.emit(Event::Phase { phase: Phase::Inject }) {
                Ok(()) => {
                    let (end, window) = executor::fault_phase(
                        ctx,
                        exp,
                        ready.plans,
                        ready.cx,
                        hurry,
                        aborted,
                        sigs,
                        &mut obs,
                    )
                    .await;
                    let withdrawal = Withdrawal {
                        done: withdrawn,
                        copies: &ready.run_vars,
                    };
                    conclude(ctx, exp, &mut obs, end, window, &withdrawal, sigs).await
                }
                Err(e) => End::error(format!("nothing was injected: {e}")),
            }
        }
    };
    for e in obs.series() {
        ctx.emit_best_effort(e);
    }
    journal_scaling_activities(ctx, &ready.run_vars, &ready.source_vars, ready.started).await;
    end
}

/// Journals what Auto Scaling did to the groups involved since `since`
/// (before teardown deletes the copy and its history with it). A failed read
/// is a warning: it must not change the verdict.
async fn journal_scaling_activities(ctx: &Ctx, run: &Vars, source: &Vars, since: Timestamp) {
    let mut groups: Vec<&String> = run.asg.iter().chain(source.asg.iter()).collect();
    groups.dedup();
    for g in groups {
        match activities::since(&ctx.aws, g, since).await {
            Ok(events) => events.into_iter().for_each(|e| ctx.emit_best_effort(e)),
            Err(e) => ctx.emit_best_effort(Event::Warning {
                message: format!("Auto Scaling activities of `{g}` not journaled: {e}"),
            }),
        }
    }
}

/// Reads every probe once, journals the results, and returns them. Read
/// errors are warnings until [`MAX_WATCH_FAILURES`] in a row.
async fn check_once(
    ctx: &Ctx,
    queries: &Queries,
    obs: &mut Observer,
    phase: Phase,
    failures: &mut u32,
) -> Result<Option<observe::Judged>, String> {
    match queries.read(&ctx.aws).await {
        Ok(r) => {
            *failures = 0;
            Ok(Some(record(ctx, obs, &r, phase)))
        }
        Err(e) => {
            *failures += 1;
            ctx.emit_best_effort(Event::Warning {
                message: format!("probe check failed ({failures}/{MAX_WATCH_FAILURES}): {e}"),
            });
            if *failures >= MAX_WATCH_FAILURES {
                Err(e.to_string())
            } else {
                Ok(None)
            }
        }
    }
}

/// Judges a reading and journals what it found.
fn record(ctx: &Ctx, obs: &mut Observer, r: &Reading, phase: Phase) -> observe::Judged {
    let judged = obs.judge(r, phase);
    for e in &judged.events {
        ctx.emit_best_effort(e.clone());
    }
    ctx.emit_best_effort(Event::Checked {
        phase,
        results: judged.results.clone(),
    });
    judged
}

/// The baseline: for `timing.baseline`, every probe is read each interval and
/// must hold; nothing is injected otherwise. Skipped when there is nothing
/// to prove (no steady state and no metric guardrail).
async fn baseline(ctx: &Ctx, exp: &Experiment, obs: &mut Observer, sigs: &mut Signals) -> Result<(), End> {
    if !obs.needs_baseline() {
        return Ok(());
    }
    ctx.emit(Event::Phase {
        phase: Phase::Baseline,
    })
    .map_err(error_before_injection)?;
    let since = Timestamp::now();
    let started = Instant::now();
    ctx.progress.countdown(
        "baseline",
        since.checked_add(exp.timing.baseline).unwrap_or(since),
    );
    let queries = obs.queries();
    let mut tick = tokio::time::interval(exp.timing.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        or_signal(ctx, sigs, tick.tick()).await?;
        let checked = or_signal(
            ctx,
            sigs,
            check_once(ctx, &queries, obs, Phase::Baseline, &mut failures),
        )
        .await?;
        let judged =
            checked.map_err(|e| error_before_injection(format!("the probes cannot be read: {e}")))?;
        if let Some(h) = judged.as_ref().and_then(|j| j.halt.as_ref()) {
            return Err(halted_before_injection(ctx, h));
        }
        let bad: Vec<String> = judged
            .iter()
            .flat_map(|j| &j.results)
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {}", r.probe, r.detail))
            .collect();
        match baseline_next(bad, started.elapsed(), exp.timing.baseline) {
            BaselineNext::Again => {}
            BaselineNext::Done => break,
            BaselineNext::NotRun(end) => return Err(end),
        }
    }
    let events = obs
        .finish_baseline(since)
        .map_err(|why| not_run(format!("{why}; nothing was injected")))?;
    for e in events {
        ctx.emit_best_effort(e);
    }
    Ok(())
}

/// What the baseline does after a reading.
#[derive(Debug)]
enum BaselineNext {
    /// Read again at the next interval.
    Again,
    /// The baseline's time is over and the steady state held.
    Done,
    /// The steady state did not hold: nothing is injected.
    NotRun(End),
}

/// The baseline's decision after a reading, `elapsed` into a baseline of
/// `length`: `bad` lists the probes that did not hold (none when the reading
/// failed; failures end the run only after [`MAX_WATCH_FAILURES`] in a row).
/// A failed probe wins over the end of the baseline's time.
fn baseline_next(bad: Vec<String>, elapsed: Duration, length: Duration) -> BaselineNext {
    if !bad.is_empty() {
        BaselineNext::NotRun(not_run(format!(
            "the steady state did not hold during the baseline, so nothing was injected: {}",
            bad.join("; ")
        )))
    } else if elapsed >= length {
        BaselineNext::Done
    } else {
        BaselineNext::Again
    }
}

/// After the fault phase: the recovery phase (the steady state must return
/// within `timing.recovery`), detection probes, the comparison with the
/// control, and the hypothesis's verdict. Guardrails decide `aborted`; the
/// hypothesis decides `passed` or `failed`.
async fn conclude(
    ctx: &Ctx,
    exp: &Experiment,
    obs: &mut Observer,
    end: End,
    window: Window,
    withdrawal: &Withdrawal<'_>,
    sigs: &mut Signals,
) -> End {
    if !matches!(end.verdict, Verdict::Passed | Verdict::Aborted)
        || !end.unfinished.is_empty()
        || !obs.has_hypothesis()
    {
        return end;
    }
    let End {
        verdict,
        reason,
        unfinished,
        ..
    } = end;
    let mut failures = Vec::new();
    if let Some(rolled_back) = obs.rolled_back_at {
        let halted_before = obs.halted_at.is_some();
        match recovery(ctx, exp, obs, rolled_back, withdrawal, sigs).await {
            Ok(Some(why)) => failures.push(why),
            Ok(None) => {}
            // A run the kill switch aborted keeps that verdict's reason.
            Err(stop) if stop.verdict == Verdict::Aborted && halted_before => {
                return End {
                    verdict,
                    reason,
                    unfinished,
                    refused: false,
                };
            }
            Err(stop) => return stop,
        }
    }
    for (e, _) in obs.detections(Timestamp::now()) {
        if let Event::Detection {
            probe,
            ok: false,
            detail,
            ..
        } = &e
        {
            failures.push(format!("detection `{probe}`: {detail}"));
        }
        ctx.emit_best_effort(e);
    }
    if let Some((from, to)) = window {
        for e in obs.comparisons(from, to) {
            if let Event::Comparison {
                probe,
                ok: false,
                judged: true,
                detail,
                ..
            } = &e
            {
                failures.push(format!("`{probe}` against the control: {detail}"));
            }
            ctx.emit_best_effort(e);
        }
    }
    failures.splice(
        0..0,
        obs.deviations_during_faults()
            .into_iter()
            .map(|d| format!("while faults were active, {d}")),
    );
    let (verdict, reason) = match verdict {
        Verdict::Aborted if failures.is_empty() => (verdict, reason),
        Verdict::Aborted => (
            verdict,
            format!("{reason}; the hypothesis also failed: {}", failures.join("; ")),
        ),
        _ if failures.is_empty() => (Verdict::Passed, format!("{reason}; the hypothesis held")),
        _ => (
            Verdict::Failed,
            format!(
                "the hypothesis did not hold: {}; every fault was rolled back",
                failures.join("; ")
            ),
        ),
    };
    End {
        verdict,
        reason,
        unfinished,
        refused: false,
    }
}

/// Whether the copies' share of the load balancer's traffic was withdrawn
/// (every listener rule restored at an abort), and the copies it was withdrawn from.
struct Withdrawal<'a> {
    /// Cancelled once the rules are restored.
    done: &'a CancellationToken,
    /// The run's variables: the copies and their target groups.
    copies: &'a Vars,
}

impl Withdrawal<'_> {
    /// Once the traffic is gone, leaves the probes that measured it out of
    /// recovery (journaled, once each).
    fn apply(&self, ctx: &Ctx, obs: &mut Observer) {
        if self.done.is_cancelled() {
            for e in obs.traffic_withdrawn(self.copies) {
                ctx.emit_best_effort(e);
            }
        }
    }
}

/// Waits for the steady state to return after rollback (and for detection
/// alarms to clear). Returns why recovery failed, if it did; a signal ends it.
/// Probes of the copies' traffic are not waited for once it was withdrawn.
async fn recovery(
    ctx: &Ctx,
    exp: &Experiment,
    obs: &mut Observer,
    rolled_back: Timestamp,
    withdrawal: &Withdrawal<'_>,
    sigs: &mut Signals,
) -> Result<Option<String>, End> {
    ctx.emit_best_effort(Event::Phase {
        phase: Phase::Recovery,
    });
    let started = Instant::now();
    let recover_by = started + exp.timing.recovery;
    ctx.progress.countdown(
        "recovery window",
        Timestamp::now()
            .checked_add(exp.timing.recovery)
            .unwrap_or_else(|_| Timestamp::now()),
    );
    let clears_by = started
        + obs
            .watched()
            .iter()
            .filter_map(|w| {
                if let observe::Check::Fires { clears_within, .. } = &w.check {
                    Some(*clears_within)
                } else {
                    None
                }
            })
            .max()
            .unwrap_or_default();
    let queries = obs.queries();
    let mut tick = tokio::time::interval(exp.timing.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    let mut recovered_at: Option<Timestamp> = None;
    let mut left = Vec::new();
    loop {
        let checked = tokio::select! {
            // The first signal stops recovery: every fault is rolled back already.
            sig = sigs.next(ctx) => return Err(End::new(
                Verdict::Interrupted,
                format!("stopped by {} during recovery; every fault was rolled back", sig.name),
            )),
            r = async { tick.tick().await; check_once(ctx, &queries, obs, Phase::Recovery, &mut failures).await } => r,
        };
        let judged = match checked {
            Ok(j) => j,
            Err(e) => {
                left = vec![format!("the probes cannot be read: {e}")];
                break;
            }
        };
        // The kill switch ends recovery too: every fault is rolled back
        // already, and teardown follows at once.
        if let Some(h) = judged.and_then(|j| j.halt) {
            if obs.halted_at.is_none() {
                ctx.emit_best_effort(Event::Halted {
                    reason: h.reason.clone(),
                    by: h.by.clone(),
                    halted_at: h.at,
                    parameter: h.parameter.clone(),
                    seen_at: Timestamp::now(),
                });
            }
            return Err(End::new(
                Verdict::Aborted,
                format!("{} (during recovery); every fault was rolled back", h.describe()),
            ));
        }
        withdrawal.apply(ctx, obs);
        let now = Instant::now();
        if recovered_at.is_none() {
            left = obs.not_recovered(rolled_back);
            if left.is_empty() {
                recovered_at = Some(Timestamp::now());
            }
        }
        let steady_done = recovered_at.is_some() || now >= recover_by;
        let detection_done = obs.detections_settled(Timestamp::now()) || now >= clears_by;
        if steady_done && detection_done {
            break;
        }
    }
    let ms = recovered_at.map(|t| t.duration_since(rolled_back).as_millis().max(0) as u64);
    // Nothing left to judge (every steady-state probe measured the copies'
    // withdrawn traffic): the `probe_not_judged` events say so, and the
    // abort decides the verdict.
    if !obs.judges_recovery() {
        return Ok(None);
    }
    let (recovered, detail) = match ms {
        Some(ms) => (
            true,
            format!("the steady state held again {} after rollback", ms_text(ms)),
        ),
        None => (
            false,
            format!(
                "the steady state did not return within timing.recovery ({}): {}",
                format_duration(exp.timing.recovery),
                left.join("; ")
            ),
        ),
    };
    ctx.emit_best_effort(Event::RecoveryResult {
        recovered,
        time_to_recover_ms: ms,
        detail: detail.clone(),
    });
    Ok((!recovered).then_some(detail))
}

/// Runs `fut` unless a signal arrives first, in which case the run ends as
/// interrupted (teardown still undoes whatever setup already did).
async fn or_signal<T>(
    ctx: &Ctx,
    sigs: &mut Signals,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, End> {
    tokio::select! {
        r = fut => Ok(r),
        sig = sigs.next(ctx) => {
            let sig = sig.name;
            ctx.emit_best_effort(Event::Abort { reason: format!("{sig} received"), seen_at: Timestamp::now() });
            Err(End::new(Verdict::Interrupted, format!("stopped by {sig} before any fault was injected")))
        }
    }
}

/// Everything before injection: the plan and the safety gate (read-only),
/// locks, the parallel environment, and each fault's targets. On refusal,
/// returns the verdict.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    ctx: &Arc<Ctx>,
    exp: &Experiment,
    run_id: &str,
    seed: u64,
    expires_at: Timestamp,
    safety: &Admission,
    setup: &mut Vec<SetupStep>,
    sigs: &mut Signals,
    alive: &CancellationToken,
) -> Result<Ready, End> {
    let started = Timestamp::now();
    let env = &exp.environment;
    // Alarms exist before the run, so `${asg}` in an alarm name is the group as written.
    let source_vars = Vars {
        asg: env.autoscaling_group.clone(),
        run_id: run_id.to_string(),
        ..Vars::default()
    };
    let mut vars = source_vars.clone();
    let (plan, in_place_steps) = or_signal(ctx, sigs, admit(ctx, exp, &vars, seed, safety)).await??;
    // The kill switch, before anything is created or locked (the plan's
    // calls are read-only).
    or_signal(ctx, sigs, check_halt(ctx, &safety.policy.policy.halt_parameter)).await??;
    let protected = &safety.policy.policy.protected_tags;
    let mut rng = StdRng::seed_from_u64(seed);
    let plans = match env.mode {
        Mode::InPlace => {
            let mut groups: Vec<String> = env
                .autoscaling_group
                .iter()
                .cloned()
                .chain(plan.target_groups())
                .collect();
            groups.sort();
            groups.dedup();
            or_signal(
                ctx,
                sigs,
                take_locks(
                    ctx,
                    LockRequest {
                        groups,
                        instances: plan.target_ids(),
                        run_id,
                        until: expires_at,
                        locks: safety.policy.policy.locks.as_ref(),
                        owner: exp.owner.as_deref(),
                        alive,
                    },
                    setup,
                ),
            )
            .await??;
            vars.instances = plan.target_ids();
            in_place_steps
        }
        Mode::Parallel => {
            let source = env.autoscaling_group.clone().unwrap_or_default();
            let Some(group) = or_signal(ctx, sigs, describe_group(&ctx.aws, &source))
                .await?
                .map_err(error_before_injection)?
            else {
                return Err(not_run(format!(
                    "Auto Scaling group `{source}` (environment.autoscaling_group) not found; nothing was created"
                )));
            };
            if let Err(e) = environment::check_clonable(&group) {
                return Err(not_run(format!("{e}; nothing was created")));
            }
            or_signal(
                ctx,
                sigs,
                take_locks(
                    ctx,
                    LockRequest {
                        groups: vec![source.clone()],
                        instances: Vec::new(),
                        run_id,
                        until: expires_at,
                        locks: safety.policy.policy.locks.as_ref(),
                        owner: exp.owner.as_deref(),
                        alive,
                    },
                    setup,
                ),
            )
            .await??;
            let clone = environment::clone_name(run_id, &source);
            let capacity = env
                .capacity
                .map(|c| c as i32)
                .unwrap_or_else(|| group.desired_capacity().unwrap_or(1))
                .max(1);
            let two = env.traffic.is_some();
            let tags = |role: &'static str| environment::RunTags {
                run_id: run_id.to_string(),
                experiment: exp.name.clone(),
                owner: exp.owner.clone(),
                expires_at,
                role: two.then_some(role),
            };
            // The source's target group is read before anything is created:
            // a workload with no load balancer traffic to share is refused now.
            let source_traffic = match env.traffic.as_ref().and_then(|t| t.share()) {
                Some(_) => Some(
                    or_signal(ctx, sigs, traffic::discover(&ctx.aws, &source))
                        .await?
                        .map_err(|e| not_run(format!("environment.traffic: {e}; nothing was created")))?,
                ),
                None => None,
            };
            let mut copies = vec![(clone.clone(), "experiment")];
            if two {
                copies.push((environment::control_name(run_id, &source), "control"));
            }
            for (name, role) in &copies {
                let copy_tags = tags(role);
                let create = environment::create_clone(&ctx.aws, &group, name, capacity, &copy_tags);
                let undo = Undo::from(DeleteAutoScalingGroup { group: name.clone() });
                or_signal(
                    ctx,
                    sigs,
                    setup_call(
                        ctx,
                        setup,
                        "autoscaling:CreateAutoScalingGroup",
                        vec![name.clone()],
                        undo,
                        create,
                    ),
                )
                .await??;
            }
            let mut ready_sets = Vec::new();
            for (name, _) in &copies {
                let ready = or_signal(
                    ctx,
                    sigs,
                    environment::wait_ready(&ctx.aws, name, capacity as usize, env.ready_timeout),
                )
                .await?;
                match ready {
                    Ok(ids) => ready_sets.push(ids),
                    Err(e @ EnvError::NotReady { .. }) => {
                        return Err(not_run(format!(
                            "{e}; nothing was injected and the copies are deleted"
                        )));
                    }
                    Err(e) => return Err(error_before_injection(e)),
                }
            }
            let instances = ready_sets.remove(0);
            let control = two.then(|| copies[1].0.clone());
            let control_instances = ready_sets.pop().unwrap_or_default();
            ctx.emit_best_effort(Event::Environment {
                mode: Mode::Parallel,
                group: Some(clone.clone()),
                source: Some(source.clone()),
                instances: instances.clone(),
                control: control.clone(),
                control_instances: control_instances.clone(),
            });
            vars.asg = Some(clone.clone());
            vars.instances = instances.clone();
            vars.control_asg = control.clone();
            match (&env.traffic, control) {
                (None, _) | (_, None) => ctx.emit_best_effort(Event::Warning {
                    message: format!(
                        "the copy `{clone}` receives no traffic (the experiment has no `environment.traffic`): metric probes on it will see no data"
                    ),
                }),
                (Some(Traffic::Share(share)), Some(control)) => {
                    let Some(found) = source_traffic else {
                        return Err(End::error("the source's traffic was not read; nothing was injected".into()));
                    };
                    let copies = [(clone.clone(), "e", "experiment"), (control, "c", "control")];
                    or_signal(
                        ctx,
                        sigs,
                        share_traffic(ctx, exp, run_id, &source, &found, &copies, capacity as usize, share.value, &tags, setup, &mut vars),
                    )
                    .await??;
                }
                (Some(Traffic::Load(load)), Some(_)) => {
                    or_signal(
                        ctx,
                        sigs,
                        start_load(ctx, run_id, &source, load, &instances, &control_instances, setup),
                    )
                    .await??;
                }
            }
            let scope: BTreeSet<String> = instances.into_iter().collect();
            or_signal(
                ctx,
                sigs,
                resolve_all(ctx, exp, &scope, &vars, &source_vars, protected, &mut rng),
            )
            .await??
        }
    };
    let cx = StepContext {
        run_id: run_id.to_string(),
        expires_at,
        fault: String::new(),
    };
    Ok(Ready {
        plans,
        run_vars: vars,
        source_vars,
        cx,
        started,
        halt_parameter: safety.policy.policy.halt_parameter.clone(),
    })
}

fn not_run(reason: String) -> End {
    End::new(Verdict::NotRun, reason)
}

/// The kill switch is on before any fault was injected: journaled, and the
/// run is refused (exit code as a policy refusal).
fn halted_before_injection(ctx: &Ctx, h: &Halt) -> End {
    ctx.emit_best_effort(Event::Halted {
        reason: h.reason.clone(),
        by: h.by.clone(),
        halted_at: h.at,
        parameter: h.parameter.clone(),
        seen_at: Timestamp::now(),
    });
    End {
        refused: true,
        ..not_run(format!(
            "{}; nothing was injected (`gameday resume` lifts the halt)",
            h.describe()
        ))
    }
}

/// Preflight: refuses the run while the kill switch is on, or when it
/// cannot be read (a run that could not be halted must not start).
async fn check_halt(ctx: &Ctx, parameter: &str) -> Result<(), End> {
    match halt::read(&ctx.aws, parameter).await {
        Ok(None) => Ok(()),
        Ok(Some(h)) => Err(halted_before_injection(ctx, &h)),
        // Denied (or any answer that will not change): refused, as a run
        // that could not be halted must not start.
        Err(e) if e.kind() == crate::aws::ErrorKind::Permanent => Err(End {
            refused: true,
            ..not_run(format!(
                "the kill switch {parameter} cannot be read ({e}), so this run could not be halted; nothing was touched (allow ssm:GetParameter on it)"
            ))
        }),
        // Throttled, unreachable: the runner could not do its job.
        Err(e) => Err(End::error(format!(
            "the kill switch {parameter} cannot be read ({e}); nothing was touched"
        ))),
    }
}

fn error_before_injection(e: impl std::fmt::Display) -> End {
    End::error(format!("{e}; nothing was injected"))
}

/// Builds the plan (read-only: guardrail alarms checked, targets resolved in
/// place), journals it, and lets the safety gate check it. Returns the plan
/// and, in place, each fault's planned calls. On refusal, returns the verdict.
async fn admit(
    ctx: &Ctx,
    exp: &Experiment,
    vars: &Vars,
    seed: u64,
    safety: &Admission,
) -> Result<(plan::Plan, Vec<Vec<Step>>), End> {
    let plan = match plan::build(&ctx.aws, exp, &safety.policy, vars, seed).await {
        Ok(p) => p,
        Err(PlanError::Targets {
            fault,
            source: TargetError::NoSuchGroup(g),
        }) => {
            return Err(not_run(format!(
                "fault `{fault}`: Auto Scaling group `{g}` not found; nothing was injected"
            )));
        }
        Err(PlanError::Environment(TargetError::NoSuchGroup(g))) => {
            return Err(not_run(format!(
                "Auto Scaling group `{g}` (environment.autoscaling_group) not found; nothing was created"
            )));
        }
        Err(e @ PlanError::Traffic(_)) => return Err(not_run(format!("{e}; nothing was created"))),
        Err(e) => return Err(error_before_injection(e)),
    };
    let mut steps = Vec::new();
    for (f, fp) in exp.faults.iter().zip(&plan.faults) {
        // In parallel mode targets are resolved later, inside the copy.
        if let (Targets::Resources(r), Mode::InPlace) = (&fp.targets, exp.environment.mode) {
            steps.push(r.steps.clone());
        }
        let Targets::Instances(resolved) = &fp.targets else {
            continue;
        };
        let On::Instances(fault) = &f.fault.on else {
            return Err(error_before_injection(format!(
                "fault `{}`: instances were resolved for a fault that acts on none",
                fp.name
            )));
        };
        steps.push(fault.plan(&resolved.selected));
        if let Err(e) = ctx.emit(Event::TargetsResolved {
            fault: fp.name.clone(),
            action: fp.action.clone(),
            resolved: resolved.clone(),
        }) {
            return Err(error_before_injection(e));
        }
    }
    let rules = gate::check(safety, exp, &plan);
    let admitted = gate::admitted(&rules);
    if let Err(e) = ctx.emit(Event::SafetyGate {
        plan_hash: plan.hash.clone(),
        admitted,
        rules: rules.clone(),
    }) {
        return Err(error_before_injection(e));
    }
    if !admitted {
        return Err(End {
            refused: true,
            ..not_run(gate::refusal(&safety.policy, &rules))
        });
    }
    if let Err(e) = ctx.emit(plan.preflight.event()) {
        return Err(error_before_injection(e));
    }
    if let Some(why) = plan.preflight.refusal() {
        return Err(not_run(format!(
            "a guardrail cannot protect this run, so nothing was injected: {why}"
        )));
    }
    for (f, fp) in exp.faults.iter().zip(&plan.faults) {
        if let Targets::Resources(r) = &fp.targets
            && !r.found
        {
            return Err(not_run(format!(
                "fault `{}`: {}; nothing was injected",
                f.name.value, r.detail
            )));
        }
        if matches!(fp.targets, Targets::Instances(_)) && fp.targets.is_empty() && !f.target.allow_empty {
            return Err(not_run(empty_target(&f.name.value)));
        }
    }
    Ok((plan, steps))
}

fn empty_target(fault: &str) -> String {
    format!(
        "fault `{fault}` matched no eligible instance, so nothing was injected (set `allow_empty: true` on its target if that is expected)"
    )
}

/// Resolves every fault's targets inside the parallel copy (read-only) and
/// plans its calls.
async fn resolve_all(
    ctx: &Ctx,
    exp: &Experiment,
    scope: &BTreeSet<String>,
    vars: &Vars,
    source_vars: &Vars,
    protected: &[(String, String)],
    rng: &mut StdRng,
) -> Result<Vec<Vec<Step>>, End> {
    let mut plans = Vec::new();
    for f in &exp.faults {
        let fault = match &f.fault.on {
            On::Resources(fault) => {
                // Validation keeps group faults on `${asg}`: the copy, never the source.
                plans.push(fault.plan(&plan::resource_names(f, vars, source_vars, vars.asg.as_deref())));
                continue;
            }
            On::Instances(fault) => fault,
        };
        let resolved = match targets::resolve(
            &ctx.aws,
            &f.target,
            fault,
            vars.asg.as_deref(),
            Some(scope),
            vars,
            protected,
            rng,
        )
        .await
        {
            Ok(r) => r,
            Err(targets::TargetError::NoSuchGroup(g)) => {
                return Err(not_run(format!(
                    "fault `{}`: Auto Scaling group `{g}` not found; nothing was injected",
                    f.name.value
                )));
            }
            Err(e) => {
                return Err(End::error(format!(
                    "fault `{}`: cannot resolve targets, nothing was injected: {e}",
                    f.name.value
                )));
            }
        };
        let empty = resolved.selected.is_empty();
        let steps = fault.plan(&resolved.selected);
        if let Err(e) = ctx.emit(Event::TargetsResolved {
            fault: f.name.value.clone(),
            action: f.action.value.clone(),
            resolved,
        }) {
            return Err(error_before_injection(e));
        }
        if empty && !f.target.allow_empty {
            return Err(not_run(empty_target(&f.name.value)));
        }
        plans.push(steps);
    }
    Ok(plans)
}

/// What a run locks, and how.
struct LockRequest<'a> {
    groups: Vec<String>,
    instances: Vec<String>,
    run_id: &'a str,
    /// The run's `expires-at`, written in the lock tags.
    until: Timestamp,
    /// The lease table, if the policy names one.
    locks: Option<&'a crate::policy::Locks>,
    /// The experiment's owner, for a refused run's message.
    owner: Option<&'a str>,
    /// Cancelled when the run ends: stops the leases' heartbeat.
    alive: &'a CancellationToken,
}

/// The lease key of an Auto Scaling group.
fn group_key(group: &str) -> String {
    format!("asg#{group}")
}

/// The lease key of an instance.
fn instance_key(id: &str) -> String {
    format!("instance#{id}")
}

/// Pause between writing the lock tags and reading them back (tag-only mode).
const TAG_VERIFY_PAUSE: Duration = Duration::from_millis(1500);

/// Locks the run's groups and instances, or refuses the run naming the
/// holder. With the policy's lease table: one conditional transaction takes
/// every lease (undone at teardown, renewed by a heartbeat while the run
/// lives), then the lock tags are written as markers. Without: the lock tags
/// are read, written, and read back after a pause (best effort: tags have no
/// conditional write).
async fn take_locks(ctx: &Arc<Ctx>, req: LockRequest<'_>, setup: &mut Vec<SetupStep>) -> Result<(), End> {
    let LockRequest {
        groups,
        instances,
        run_id,
        until,
        locks,
        owner,
        alive,
    } = req;
    if groups.is_empty() && instances.is_empty() {
        return Ok(());
    }
    if let Some(locks) = locks {
        take_leases(ctx, locks, &groups, &instances, run_id, owner, alive, setup).await?;
    } else {
        refuse_if_tag_locked(ctx, &groups, &instances, run_id).await?;
    }
    let undo = Undo::from(DeleteLockTags {
        autoscaling_groups: groups.clone(),
        instance_ids: instances.clone(),
        run_id: run_id.to_string(),
    });
    let resources: Vec<String> = groups.iter().chain(&instances).cloned().collect();
    setup_call(
        ctx,
        setup,
        "tags:CreateLockTags",
        resources,
        undo,
        lock::acquire(&ctx.aws, &groups, &instances, run_id, until),
    )
    .await?;
    if locks.is_none() {
        // Tags are last-writer-wins: a run that wrote at the same moment
        // may have overwritten ours. Whoever's tags stand after a pause wins;
        // the other refuses (its teardown removes only its own tags).
        tokio::time::sleep(TAG_VERIFY_PAUSE).await;
        refuse_if_tag_locked(ctx, &groups, &instances, run_id).await?;
    }
    Ok(())
}

/// Refuses the run if another live run's lock tag is on `groups` or `instances`.
async fn refuse_if_tag_locked(
    ctx: &Ctx,
    groups: &[String],
    instances: &[String],
    run_id: &str,
) -> Result<(), End> {
    let now = Timestamp::now();
    let held = lock::held(&ctx.aws, groups, instances)
        .await
        .map_err(error_before_injection)?;
    let live: Vec<lock::Held> = held
        .into_iter()
        .filter(|h| h.run_id != run_id && h.until > now)
        .collect();
    if let Some(first) = live.first() {
        let what: Vec<String> = live.iter().map(|h| h.resource.clone()).collect();
        return Err(not_run(format!(
            "another game day, run {}, holds {} until {}; nothing was injected. Wait for it to finish; if its runner died, `gameday recover {}` (or `gameday cleanup` after that time) releases it",
            first.run_id,
            what.join(", "),
            first.until,
            first.run_id
        )));
    }
    Ok(())
}

/// Takes the run's leases in one conditional transaction (journaled, with
/// its undo, before the call), then keeps them alive until `alive` is
/// cancelled. A lease held by another run refuses the run, naming it.
#[allow(clippy::too_many_arguments)]
async fn take_leases(
    ctx: &Arc<Ctx>,
    locks: &crate::policy::Locks,
    groups: &[String],
    instances: &[String],
    run_id: &str,
    owner: Option<&str>,
    alive: &CancellationToken,
    setup: &mut Vec<SetupStep>,
) -> Result<(), End> {
    let keys: Vec<String> = groups
        .iter()
        .map(|g| group_key(g))
        .chain(instances.iter().map(|i| instance_key(i)))
        .collect();
    let holder = lease::Holder {
        run_id: run_id.to_string(),
        owner: owner.unwrap_or("unknown").to_string(),
        host: hostname(),
    };
    let undo = Undo::from(ReleaseLeases {
        table: locks.table.clone(),
        keys: keys.clone(),
        run_id: run_id.to_string(),
    });
    let table = locks.table.clone();
    let claim = async {
        lease::claim(&ctx.aws, &table, &keys, &holder, locks.ttl)
            .await
            .map(drop)
            .map_err(|e| {
                let end = match &e {
                    lease::LeaseError::Held(l) => not_run(format!(
                        "another game day, {}, holds {} until {} (lease table `{table}`); nothing was injected. Wait for it to finish; if its runner died, `gameday recover {}` releases it now, or the lease expires by itself at that time",
                        l.holder, l.key, l.expires_at, l.holder.run_id
                    )),
                    lease::LeaseError::NoTable { .. } => not_run(format!("{e}; nothing was injected")),
                    _ => error_before_injection(&e),
                };
                (e.to_aws(), end)
            })
    };
    setup_call_then(
        ctx,
        setup,
        "dynamodb:TransactWriteItems",
        keys.clone(),
        undo,
        claim,
    )
    .await?;
    let ctx = ctx.clone();
    let alive = alive.clone();
    let run_id = run_id.to_string();
    let ttl = locks.ttl;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = alive.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = lease::heartbeat(&ctx.aws, &table, &keys, &run_id, ttl).await {
                if alive.is_cancelled() {
                    return;
                }
                ctx.emit_best_effort(Event::Warning {
                    message: format!("lease heartbeat failed: {e}"),
                });
                if matches!(e, lease::LeaseError::Lost { .. }) {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// Gives each copy `share` of the traffic of every listener rule that
/// forwards to the source's target group: a target group per copy (settings
/// of the source's), attached and healthy, then each rule rewritten, its
/// exact actions journaled first. Sets the target-group variables.
#[allow(clippy::too_many_arguments)]
async fn share_traffic(
    ctx: &Ctx,
    exp: &Experiment,
    run_id: &str,
    source: &str,
    found: &traffic::SourceTraffic,
    copies: &[(String, &'static str, &'static str)],
    capacity: usize,
    share: crate::model::Share,
    tags: &(dyn Fn(&'static str) -> environment::RunTags + Sync),
    setup: &mut Vec<SetupStep>,
    vars: &mut Vars,
) -> Result<(), End> {
    let mut arns = Vec::new();
    for (group, suffix, role) in copies {
        let name = traffic::target_group_name(run_id, suffix);
        let undo = Undo::from(DeleteTargetGroup {
            name: name.clone(),
            autoscaling_group: Some(group.clone()),
        });
        let tg_tags = tags(role);
        let create =
            traffic::create_target_group(&ctx.aws, &found.target_group, &name, group, source, &tg_tags);
        setup_call(
            ctx,
            setup,
            "elasticloadbalancing:CreateTargetGroup",
            vec![name.clone(), group.clone()],
            undo,
            create,
        )
        .await?;
        arns.push(name);
    }
    let mut ready = Vec::new();
    for name in &arns {
        let status = |n: usize| {
            ctx.progress.status(&format!(
                "waiting for target group `{name}`: {n} of {capacity} targets healthy"
            ))
        };
        match traffic::wait_healthy(&ctx.aws, name, capacity, exp.environment.ready_timeout, status).await {
            Ok(arn) => ready.push(arn),
            Err(e @ traffic::TrafficError::NotHealthy { .. }) => {
                return Err(not_run(format!(
                    "{e}; no traffic was shifted, nothing was injected and the copies are deleted"
                )));
            }
            Err(e) => return Err(error_before_injection(e)),
        }
    }
    let (e_arn, c_arn) = (&ready[0], &ready[1]);
    vars.experiment_target_group = Some(traffic::tg_dimension(e_arn));
    vars.control_target_group = Some(traffic::tg_dimension(c_arn));
    vars.source_target_group = Some(traffic::tg_dimension(found.arn()));
    vars.load_balancer = found.load_balancers.first().map(|lb| traffic::lb_dimension(lb));
    // Read the rules again right before they change: what is journaled is
    // exactly what is there now.
    let now = traffic::discover(&ctx.aws, source)
        .await
        .map_err(|e| error_before_injection(format!("environment.traffic: {e}")))?;
    for r in &now.rules {
        let (during, _) = traffic::shifted(&r.actions, now.arn(), e_arn, c_arn, share, &r.rule.label)
            .map_err(|e| not_run(format!("environment.traffic: {e}; nothing was injected")))?;
        let undo = Undo::from(RestoreListenerRule {
            rule: r.rule.clone(),
            actions: r.actions.clone(),
        });
        let operation = if r.rule.rule_arn.is_some() {
            "elasticloadbalancing:ModifyRule"
        } else {
            "elasticloadbalancing:ModifyListener"
        };
        let target = r
            .rule
            .rule_arn
            .clone()
            .unwrap_or_else(|| r.rule.listener_arn.clone());
        setup_call(
            ctx,
            setup,
            operation,
            vec![target],
            undo,
            traffic::write_actions(&ctx.aws, &r.rule, &during),
        )
        .await?;
    }
    Ok(())
}

/// Starts the team's load generator against the copies' instances (their
/// private addresses and the serving port), journaled with its stop.
async fn start_load(
    ctx: &Ctx,
    run_id: &str,
    source: &str,
    load: &crate::experiment::Load,
    experiment: &[String],
    control: &[String],
    setup: &mut Vec<SetupStep>,
) -> Result<(), End> {
    let port = match load.port {
        Some(p) => p,
        None => traffic::source_target_group(&ctx.aws, source)
            .await
            .ok()
            .flatten()
            .and_then(|t| t.port())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80),
    };
    let endpoints = environment::load::Endpoints {
        experiment: environment::addresses(&ctx.aws, experiment, port)
            .await
            .map_err(error_before_injection)?,
        control: environment::addresses(&ctx.aws, control, port)
            .await
            .map_err(error_before_injection)?,
    };
    let dir = ctx.journal.dir().to_path_buf();
    let vars = endpoints.vars(run_id, &dir);
    let undo = Undo::from(StopLoad {
        run_id: run_id.to_string(),
        command: load.command.clone(),
    });
    let command = load.command.clone();
    let start = async move {
        environment::load::start(&command, &vars, &dir)
            .map(drop)
            .map_err(|e| AwsError::Api {
                service: "process".into(),
                operation: "StartLoadGenerator".into(),
                code: "SpawnFailed".into(),
                message: format!("cannot start `{}`: {e}", command.join(" ")),
                kind: crate::aws::ErrorKind::Permanent,
            })
    };
    setup_call(
        ctx,
        setup,
        "process:StartLoadGenerator",
        vec![load.command.join(" ")],
        undo,
        start,
    )
    .await
}

/// Makes one journaled setup call. Its undo is remembered *before* the call:
/// if the call's fate is unknown, teardown's idempotent undo settles it.
async fn setup_call(
    ctx: &Ctx,
    setup: &mut Vec<SetupStep>,
    operation: &str,
    resources: Vec<String>,
    undo: Undo,
    call: impl std::future::Future<Output = Result<(), AwsError>>,
) -> Result<(), End> {
    let call = async { call.await.map_err(|e| (e.clone(), error_before_injection(e))) };
    setup_call_then(ctx, setup, operation, resources, undo, call).await
}

/// [`setup_call`] for a call that says itself how the run ends when it fails.
async fn setup_call_then(
    ctx: &Ctx,
    setup: &mut Vec<SetupStep>,
    operation: &str,
    resources: Vec<String>,
    undo: Undo,
    call: impl std::future::Future<Output = Result<(), (AwsError, End)>>,
) -> Result<(), End> {
    let action_id = ctx.journal.next_action_id();
    let intent = Event::Intent {
        action_id,
        fault: Owner::Environment.name().to_string(),
        kind: ActionKind::Setup,
        operation: operation.to_string(),
        resources,
        undo: Some(undo.clone()),
        rollback_of: None,
    };
    ctx.emit(intent).map_err(error_before_injection)?;
    setup.push((action_id, undo));
    match call.await {
        Ok(()) => {
            ctx.emit_best_effort(Event::Outcome {
                action_id,
                ok: true,
                error: None,
                report: None,
            });
            Ok(())
        }
        Err((e, end)) => {
            ctx.emit_best_effort(Event::Outcome {
                action_id,
                ok: false,
                error: Some(e),
                report: None,
            });
            Err(end)
        }
    }
}

/// Undoes every setup call, newest first (delete the clone, then release the
/// locks), whatever the run's end. Signals only hurry it along.
async fn teardown(
    ctx: &Ctx,
    setup: Vec<SetupStep>,
    hurry: &CancellationToken,
    sigs: &mut Signals,
    end: End,
) -> End {
    if setup.is_empty() {
        return end;
    }
    ctx.emit_best_effort(Event::Phase {
        phase: Phase::Teardown,
    });
    let work = async {
        let mut unfinished = Vec::new();
        for (id, undo) in setup.iter().rev() {
            if let Err(u) = rollback_step(ctx, Owner::Environment.name(), *id, undo, hurry).await {
                unfinished.push(u);
            }
        }
        unfinished
    };
    let unfinished = signals::finish_despite_signals(ctx, sigs, hurry, work).await;
    if unfinished.is_empty() {
        return end;
    }
    let End {
        reason,
        unfinished: mut left,
        ..
    } = end;
    let what: Vec<String> = unfinished.iter().map(Undo::describe).collect();
    left.extend(unfinished);
    End {
        verdict: Verdict::Error,
        reason: format!(
            "{reason}; but teardown is incomplete, still to do: {}; finish it with `gameday recover`",
            what.join("; ")
        ),
        unfinished: left,
        refused: false,
    }
}

/// Attempts per rollback step: `GAMEDAY_ROLLBACK_ATTEMPTS`, else
/// [`ROLLBACK_ATTEMPTS`]. Lowering it makes a failing rollback give up (and
/// report what is left for `gameday recover`) sooner.
fn rollback_attempts() -> u32 {
    std::env::var("GAMEDAY_ROLLBACK_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(ROLLBACK_ATTEMPTS)
}

/// Undoes one setup or inject step, journaled, retried with the shared
/// backoff ([`crate::aws::step_backoff`]) on top of the SDK's retries. Returns
/// the undo when it could not be completed.
pub(crate) async fn rollback_step(
    ctx: &Ctx,
    fault: &str,
    inject_id: u64,
    undo: &Undo,
    hurry: &CancellationToken,
) -> Result<(), Undo> {
    let call = || undo.run(&ctx.aws, hurry);
    rollback_with(
        ctx,
        fault,
        inject_id,
        undo,
        rollback_attempts(),
        crate::aws::step_backoff,
        call,
    )
    .await
}

/// [`rollback_step`]'s journaled retries around `call` (the undo's call), with
/// `backoff(attempt)` between attempts.
async fn rollback_with<Fut>(
    ctx: &Ctx,
    fault: &str,
    inject_id: u64,
    undo: &Undo,
    attempts: u32,
    backoff: fn(u32) -> Duration,
    mut call: impl FnMut() -> Fut,
) -> Result<(), Undo>
where
    Fut: std::future::Future<Output = Result<crate::model::UndoReport, AwsError>>,
{
    for attempt in 1..=attempts {
        let action_id = ctx.journal.next_action_id();
        ctx.emit_best_effort(Event::Intent {
            action_id,
            fault: fault.to_string(),
            kind: ActionKind::Rollback,
            operation: undo.operation().to_string(),
            resources: undo.resources(),
            undo: None,
            rollback_of: Some(inject_id),
        });
        match call().await {
            Ok(report) => {
                ctx.emit_best_effort(Event::Outcome {
                    action_id,
                    ok: true,
                    error: None,
                    report: Some(report),
                });
                return Ok(());
            }
            Err(e) => {
                // A permanent error or a refusal gives the same answer every
                // time: only transient ones are worth another attempt.
                let again = e.is_retryable();
                ctx.emit_best_effort(Event::Outcome {
                    action_id,
                    ok: false,
                    error: Some(e),
                    report: None,
                });
                if !again {
                    break;
                }
                if attempt < attempts {
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
    Err(undo.clone())
}

/// What the engine's unit tests share: a run context on a temporary journal,
/// and clients pointed at a loopback port that counts connections (so a test
/// can prove no AWS call was made).
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A reporter that shows nothing: the tests read the journal.
    #[derive(Debug)]
    pub(crate) struct Quiet;

    impl Reporter for Quiet {
        fn event(&self, _: &journal::Entry) {}
        fn countdown(&self, _: &str, _: Timestamp) {}
        fn status(&self, _: &str) {}
        fn line(&self, _: &str) {}
        fn finish(&self) {}
    }

    /// A loopback endpoint that accepts connections, counts them and answers nothing.
    pub(crate) struct Endpoint {
        pub(crate) url: String,
        connections: Arc<AtomicUsize>,
    }

    impl Endpoint {
        pub(crate) async fn start() -> Endpoint {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("its address"));
            let connections = Arc::new(AtomicUsize::new(0));
            let seen = connections.clone();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    drop(conn);
                }
            });
            Endpoint { url, connections }
        }

        /// Connections made so far.
        pub(crate) fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    /// Clients for `endpoint` (no call is made building them).
    pub(crate) async fn aws(endpoint: &Endpoint) -> Aws {
        Aws::connect(&crate::aws::ConnectOptions {
            endpoint_url: Some(endpoint.url.clone()),
            region: Some("us-east-1".into()),
            profile: None,
        })
        .await
        .expect("clients")
    }

    /// A run context journaling into `dir`.
    pub(crate) async fn ctx(dir: &std::path::Path, endpoint: &Endpoint) -> Ctx {
        Ctx {
            aws: aws(endpoint).await,
            journal: Journal::create_with(dir, None).expect("a journal"),
            progress: Box::new(testing::Quiet),
        }
    }

    /// The events journaled in `dir`, by their `event` name.
    pub(crate) fn events(dir: &std::path::Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(journal::EVENTS_FILE)).expect("the events file");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a journal line"))
            .collect()
    }

    /// The events' names, in order.
    pub(crate) fn names(events: &[serde_json::Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_baseline_ends_when_its_time_is_over_and_a_failed_probe_wins_over_the_deadline() {
        let length = 60 * SECOND;
        assert!(matches!(
            baseline_next(Vec::new(), 30 * SECOND, length),
            BaselineNext::Again
        ));
        assert!(matches!(
            baseline_next(Vec::new(), length, length),
            BaselineNext::Done
        ));
        // A reading that failed (no results) at the deadline still ends the
        // baseline; the series then decide (`finish_baseline`).
        assert!(matches!(
            baseline_next(Vec::new(), 61 * SECOND, length),
            BaselineNext::Done
        ));
        let bad = vec!["p99 latency: 420 ms > 300".to_string()];
        match baseline_next(bad.clone(), length, length) {
            BaselineNext::NotRun(end) => {
                assert_eq!(end.verdict, Verdict::NotRun);
                assert_eq!(
                    end.reason,
                    "the steady state did not hold during the baseline, so nothing was injected: p99 latency: 420 ms > 300"
                );
            }
            other => panic!("expected not-run, got {other:?}"),
        }
        assert!(matches!(
            baseline_next(bad, SECOND, length),
            BaselineNext::NotRun(_)
        ));
    }

    #[test]
    fn a_run_id_whose_folder_is_taken_is_drawn_again() {
        let runs = tempfile::tempdir().expect("a temp dir");
        let other = runs.path().join("20261202-100000-0001");
        std::fs::create_dir_all(&other).expect("another run's folder");
        std::fs::write(other.join(journal::EVENTS_FILE), "theirs\n").expect("its events");
        let mut ids = ["20261202-100000-0001", "20261202-100000-0002"].into_iter();
        let warning = |id: &str| Event::Warning {
            message: format!("started {id}"),
        };
        let (id, dir, _journal, first) = open_journal(
            runs.path(),
            None,
            || ids.next().expect("a third draw was not needed").to_string(),
            warning,
        )
        .expect("a free id");
        assert_eq!(id, "20261202-100000-0002");
        assert_eq!(dir, runs.path().join(&id));
        assert!(matches!(first.event, Event::Warning { ref message } if message.ends_with(&id)));
        let theirs = std::fs::read_to_string(other.join(journal::EVENTS_FILE)).expect("theirs");
        assert_eq!(theirs, "theirs\n", "the other run's journal is untouched");

        // Always the same id: the draws end, with the error.
        let same = || "20261202-100000-0001".to_string();
        assert!(open_journal(runs.path(), None, same, warning).is_err());
    }

    #[tokio::test]
    async fn a_rollback_that_fails_then_succeeds_is_journaled_attempt_by_attempt_and_completes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let ctx = ctx(dir.path(), &endpoint).await;
        let undo: Undo = crate::faults::StartInstances {
            instance_ids: vec!["i-1".into()],
        }
        .into();
        let mut calls = 0;
        let result = rollback_with(
            &ctx,
            "stop",
            7,
            &undo,
            5,
            |_| Duration::ZERO,
            || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(AwsError::Api {
                            service: "ec2".into(),
                            operation: "StartInstances".into(),
                            code: "ServiceUnavailable".into(),
                            message: "try again".into(),
                            kind: crate::aws::ErrorKind::Transient,
                        })
                    } else {
                        Ok(crate::model::UndoReport::default())
                    }
                }
            },
        )
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(calls, 2, "retried once, then done");
        let events = events(dir.path());
        assert_eq!(names(&events), ["intent", "outcome", "intent", "outcome"]);
        assert_eq!(events[0]["rollback_of"], 7);
        assert_eq!(events[1]["ok"], false);
        assert_eq!(events[3]["ok"], true);
    }

    #[tokio::test]
    async fn a_refused_or_permanent_rollback_error_is_not_retried() {
        for error in [
            AwsError::refused(
                "autoscaling",
                "DeleteAutoScalingGroup",
                crate::aws::Refusal::NotAGamedayClone,
                "not ours".into(),
            ),
            AwsError::not_found("ec2", "DescribeInstances", "no such instance".into()),
        ] {
            let dir = tempfile::tempdir().expect("a temp dir");
            let endpoint = Endpoint::start().await;
            let ctx = ctx(dir.path(), &endpoint).await;
            let undo: Undo = crate::faults::StartInstances {
                instance_ids: vec!["i-1".into()],
            }
            .into();
            let mut calls = 0;
            let result = rollback_with(
                &ctx,
                "stop",
                7,
                &undo,
                5,
                |_| Duration::ZERO,
                || {
                    calls += 1;
                    let error = error.clone();
                    async move { Err(error) }
                },
            )
            .await;
            assert_eq!(result, Err(undo), "{error}");
            assert_eq!(calls, 1, "one attempt, not five: {error}");
            assert_eq!(names(&events(dir.path())), ["intent", "outcome"]);
        }
    }

    #[tokio::test]
    async fn a_rollback_that_keeps_failing_returns_its_undo_for_recover() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let ctx = ctx(dir.path(), &endpoint).await;
        let undo: Undo = crate::faults::StartInstances {
            instance_ids: vec!["i-1".into()],
        }
        .into();
        let result = rollback_with(
            &ctx,
            "stop",
            7,
            &undo,
            3,
            |_| Duration::ZERO,
            || async {
                Err(AwsError::Api {
                    service: "ec2".into(),
                    operation: "StartInstances".into(),
                    code: "ServiceUnavailable".into(),
                    message: "no".into(),
                    kind: crate::aws::ErrorKind::Transient,
                })
            },
        )
        .await;
        assert_eq!(result, Err(undo));
        assert_eq!(
            names(&events(dir.path())).len(),
            6,
            "three attempts, each journaled"
        );
    }

    #[tokio::test]
    async fn a_run_whose_signal_handlers_cannot_be_installed_refuses_before_touching_anything() {
        let runs = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let text = "version: 1
name: test-stop
hypothesis: the fleet rides out stopped instances
environment: { mode: in-place, autoscaling_group: web }
guardrails:
  - alarm: errors
faults:
  - name: stop
    action: ec2:stop-instances
    target: { select: all }
    duration: 1m
timing: { interval: 500ms, max_duration: 5m }
";
        let exp =
            crate::experiment::load_str(std::path::Path::new("exp.yaml"), text).expect("a valid experiment");
        let opts = RunOptions {
            runs_dir: runs.path().to_path_buf(),
            store: None,
            seed: Some(1),
            signals: SignalHandling::FailToInstall,
            progress: Box::new(testing::Quiet),
            safety: Admission {
                policy: crate::policy::built_in(),
                account: None,
                now: None,
                approval: gate::Approval::Missing,
            },
            run_id: None,
            assumed: None,
        };
        let outcome = run(&exp, &aws(&endpoint).await, opts)
            .await
            .expect("a recorded run");
        assert_eq!(outcome.verdict, Verdict::Error, "exit code 6");
        assert!(
            outcome.reason.contains("cannot install a handler for SIGINT")
                && outcome.reason.ends_with("nothing was touched"),
            "{}",
            outcome.reason
        );
        assert_eq!(endpoint.connections(), 0, "no AWS call at all");
        let events = events(&outcome.dir);
        assert_eq!(names(&events), ["run_started", "phase", "verdict"]);
    }
}
