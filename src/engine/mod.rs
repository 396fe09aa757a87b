//! The run lifecycle: preflight, baseline, inject, watch, roll back, recovery,
//! verdict.
//!
//! One dispatcher loop (`tokio::select!`) owns the fault phase. It listens to
//! signals, observations (a watcher task reading every probe every `timing.interval`),
//! fault timers, the `max_duration` deadline and the inject/rollback tasks, so
//! an abort never waits for a sleep to finish. Every path out of injection goes
//! through the same rollback: normal end, guardrail breach, max_duration,
//! SIGINT/SIGTERM/SIGHUP, and API errors. A second signal only skips waits
//! (for instances to reach `running`); the rollback calls always run.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError};
use crate::environment::{self, EnvError};
use crate::experiment::{Experiment, Mode};
use crate::faults::{Call, DeleteAutoScalingGroup, DeleteLockTags, On, Step, StepContext, Undo};
use crate::journal::{self, ActionKind, Event, Journal, JournalError, Phase, Verdict};
use crate::lock;
use crate::observe::{self, Breach, Observer, Queries, Reading};
use crate::plan::{self, PlanError, Targets};
use crate::progress::Progress;
use crate::safety::PolicySource;
use crate::safety::gate::{self, Admission};
use crate::targets::{self, TargetError, Vars};

/// How many rollback calls may be in flight at once.
const ROLLBACK_CONCURRENCY: usize = 8;
/// Attempts per rollback step (each attempt also has the SDK's own retries).
const ROLLBACK_ATTEMPTS: u32 = 5;
/// Consecutive failed guardrail checks after which the run stops: a guardrail
/// that cannot be read protects nothing.
const MAX_WATCH_FAILURES: u32 = 3;
/// Added to a run's longest possible length for its `gameday:expires-at`:
/// `gameday cleanup` must never take a live run's resources.
const EXPIRY_MARGIN: Duration = Duration::from_secs(15 * 60);

/// Whether the runner installs its own signal handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalHandling {
    /// SIGINT, SIGTERM and SIGHUP stop the run (with rollback).
    Standard,
    /// No handlers (for embedding the runner where the host handles signals).
    Off,
}

/// Settings for one run.
#[derive(Debug)]
pub struct RunOptions {
    /// Where run folders are created.
    pub runs_dir: PathBuf,
    /// Replay a previous run's random choices.
    pub seed: Option<u64>,
    /// Signal handling.
    pub signals: SignalHandling,
    /// Progress display.
    pub progress: Progress,
    /// The safety policy, the clock and the operator's approval, for the gate.
    pub safety: Admission,
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

/// Shared by the dispatcher and its tasks.
pub(crate) struct Ctx {
    pub(crate) aws: Aws,
    pub(crate) journal: Journal,
    pub(crate) progress: Progress,
    /// Set when the safety gate refuses the run.
    pub(crate) refused: std::sync::atomic::AtomicBool,
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
    let run_id = new_run_id();
    let dir = opts.runs_dir.join(&run_id);
    let seed = opts.seed.unwrap_or_else(|| rand::make_rng::<StdRng>().next_u64());
    let ctx = Arc::new(Ctx {
        aws: aws.clone(),
        journal: Journal::create(&dir)?,
        progress: opts.progress,
        refused: Default::default(),
    });

    // Handlers go in before the first mutating call can happen.
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let sig_task = (opts.signals == SignalHandling::Standard).then(|| tokio::spawn(forward_signals(sig_tx)));

    let margin = if exp.environment.mode == Mode::Parallel {
        exp.environment.ready_timeout
    } else {
        Duration::ZERO
    } + EXPIRY_MARGIN;
    let expires_at = Timestamp::now()
        .checked_add(exp.timing.max_duration + margin)
        .unwrap_or(Timestamp::MAX);
    ctx.emit(Event::RunStarted {
        run_id: run_id.clone(),
        gameday_version: env!("CARGO_PKG_VERSION").to_string(),
        journal_version: journal::JOURNAL_VERSION,
        experiment: exp.name.clone(),
        file: exp.file.clone(),
        file_sha256: hex(&Sha256::digest(exp.source.as_bytes())),
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
    })?;

    let end = lifecycle(
        &ctx,
        exp,
        &run_id,
        seed,
        expires_at,
        &opts.safety,
        Signals { rx: sig_rx, count: 0 },
    )
    .await;
    if let Some(t) = sig_task {
        t.abort();
    }
    let (verdict, reason, unfinished) = end;
    ctx.emit_best_effort(Event::Phase { phase: Phase::Done });
    ctx.emit_best_effort(Event::Verdict {
        verdict,
        reason: reason.clone(),
        unfinished: unfinished.clone(),
    });
    ctx.progress.finish();
    crate::report::write_run_records(&dir);
    let refused = ctx.refused.load(std::sync::atomic::Ordering::SeqCst);
    Ok(Outcome {
        run_id,
        dir,
        verdict,
        reason,
        unfinished,
        refused,
    })
}

/// This machine's name, for telling whether a journaled pid is ours to check.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signal's name, forwarded to the dispatcher.
type SignalName = &'static str;

async fn forward_signals(tx: mpsc::UnboundedSender<SignalName>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("warning: cannot install signal handlers; Ctrl-C will not roll back");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        if tx.send(name).is_err() {
            return;
        }
    }
}

type End = (Verdict, String, Vec<Undo>);

/// Signals received so far, and where new ones arrive.
struct Signals {
    rx: mpsc::UnboundedReceiver<SignalName>,
    count: u32,
}

impl Signals {
    /// Records a signal; returns its number (1 for the first).
    fn received(&mut self, ctx: &Ctx, sig: SignalName) -> u32 {
        self.count += 1;
        ctx.emit_best_effort(Event::Signal {
            signal: sig.to_string(),
            count: self.count,
        });
        self.count
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
        return (Verdict::Error, format!("nothing was injected: {e}"), Vec::new());
    }
    let end = match prepare(ctx, exp, run_id, seed, expires_at, safety, &mut setup, &mut sigs).await {
        Ok(ready) => observe_and_inject(ctx, exp, ready, &hurry, &mut sigs).await,
        Err(end) => end,
    };
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
}

/// Baseline, fault phase, recovery and the hypothesis's verdict; every
/// metric's series is journaled whatever the end.
async fn observe_and_inject(
    ctx: &Arc<Ctx>,
    exp: &Experiment,
    ready: Ready,
    hurry: &CancellationToken,
    sigs: &mut Signals,
) -> End {
    let parallel = exp.environment.mode == Mode::Parallel;
    let mut obs = Observer::new(observe::watch_list(
        exp,
        &ready.run_vars,
        &ready.source_vars,
        parallel,
    ));
    ctx.emit_best_effort(Event::Probes { probes: obs.infos() });
    let end = match baseline(ctx, exp, &mut obs, sigs).await {
        Err(end) => end,
        Ok(()) => {
            // The tolerances fixed by the baseline are what reports draw.
            ctx.emit_best_effort(Event::Probes { probes: obs.infos() });
            match ctx.emit(Event::Phase { phase: Phase::Inject }) {
                Ok(()) => {
                    let (end, window) =
                        Dispatcher::new(ctx.clone(), exp, ready.plans, ready.cx, hurry.clone())
                            .run(sigs, &mut obs)
                            .await;
                    conclude(ctx, exp, &mut obs, end, window, sigs).await
                }
                Err(e) => (Verdict::Error, format!("nothing was injected: {e}"), Vec::new()),
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
        match crate::activities::since(&ctx.aws, g, since).await {
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
    let until = Instant::now() + exp.timing.baseline;
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
        if let Some(j) = judged {
            let bad: Vec<String> = j
                .results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{}: {}", r.probe, r.detail))
                .collect();
            if !bad.is_empty() {
                return Err(not_run(format!(
                    "the steady state did not hold during the baseline, so nothing was injected: {}",
                    bad.join("; ")
                )));
            }
        }
        if Instant::now() >= until {
            break;
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

/// The fault window a fault phase had: from the first fault in effect to the
/// last rollback's start.
type Window = Option<(Timestamp, Timestamp)>;

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
    sigs: &mut Signals,
) -> End {
    let (verdict, reason, unfinished) = end;
    if !matches!(verdict, Verdict::Passed | Verdict::Aborted)
        || !unfinished.is_empty()
        || !obs.has_hypothesis()
    {
        return (verdict, reason, unfinished);
    }
    let mut failures = Vec::new();
    if let Some(rolled_back) = obs.rolled_back_at {
        match recovery(ctx, exp, obs, rolled_back, sigs).await {
            Ok(Some(why)) => failures.push(why),
            Ok(None) => {}
            Err(sig) => {
                return (
                    Verdict::Interrupted,
                    format!("stopped by {sig} during recovery; every fault was rolled back"),
                    Vec::new(),
                );
            }
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
    match verdict {
        Verdict::Aborted if failures.is_empty() => (verdict, reason, unfinished),
        Verdict::Aborted => (
            verdict,
            format!("{reason}; the hypothesis also failed: {}", failures.join("; ")),
            unfinished,
        ),
        _ if failures.is_empty() => (
            Verdict::Passed,
            format!("{reason}; the hypothesis held"),
            unfinished,
        ),
        _ => (
            Verdict::Failed,
            format!(
                "the hypothesis did not hold: {}; every fault was rolled back",
                failures.join("; ")
            ),
            unfinished,
        ),
    }
}

/// Waits for the steady state to return after rollback (and for detection
/// alarms to clear). Returns why recovery failed, if it did; a signal ends it.
async fn recovery(
    ctx: &Ctx,
    exp: &Experiment,
    obs: &mut Observer,
    rolled_back: Timestamp,
    sigs: &mut Signals,
) -> Result<Option<String>, SignalName> {
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
            Some(sig) = sigs.rx.recv() => {
                sigs.received(ctx, sig);
                return Err(sig);
            }
            r = async { tick.tick().await; check_once(ctx, &queries, obs, Phase::Recovery, &mut failures).await } => r,
        };
        if let Err(e) = checked {
            left = vec![format!("the probes cannot be read: {e}")];
            break;
        }
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
    let steady = obs
        .watched()
        .iter()
        .any(|w| w.role == crate::journal::ProbeRole::SteadyState);
    if !steady {
        return Ok(None);
    }
    let (recovered, detail) = match ms {
        Some(ms) => (
            true,
            format!(
                "the steady state held again {} after rollback",
                crate::progress::ms_text(ms)
            ),
        ),
        None => (
            false,
            format!(
                "the steady state did not return within timing.recovery ({}): {}",
                crate::yaml::format_duration(exp.timing.recovery),
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
        Some(sig) = sigs.rx.recv() => {
            sigs.received(ctx, sig);
            ctx.emit_best_effort(Event::Abort { reason: format!("{sig} received"), seen_at: Timestamp::now() });
            Err((Verdict::Interrupted, format!("stopped by {sig} before any fault was injected"), Vec::new()))
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
) -> Result<Ready, End> {
    let started = Timestamp::now();
    let env = &exp.environment;
    // Alarms exist before the run, so `${asg}` in an alarm name is the group as written.
    let source_vars = Vars {
        asg: env.autoscaling_group.clone(),
        run_id: run_id.to_string(),
        instances: Vec::new(),
    };
    let mut vars = source_vars.clone();
    let (plan, in_place_steps) = or_signal(ctx, sigs, admit(ctx, exp, &vars, seed, safety)).await??;
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
                take_locks(ctx, groups, plan.target_ids(), run_id, expires_at, setup),
            )
            .await??;
            vars.instances = plan.target_ids();
            in_place_steps
        }
        Mode::Parallel => {
            let source = env.autoscaling_group.clone().unwrap_or_default();
            let Some(group) = or_signal(ctx, sigs, environment::describe_group(&ctx.aws, &source))
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
                take_locks(ctx, vec![source.clone()], Vec::new(), run_id, expires_at, setup),
            )
            .await??;
            let clone = environment::clone_name(run_id, &source);
            let capacity = env
                .capacity
                .map(|c| c as i32)
                .unwrap_or_else(|| group.desired_capacity().unwrap_or(1))
                .max(1);
            let tags = environment::RunTags {
                run_id: run_id.to_string(),
                experiment: exp.name.clone(),
                owner: exp.owner.clone(),
                expires_at,
            };
            let create = environment::create_clone(&ctx.aws, &group, &clone, capacity, &tags);
            let undo = Undo::from(DeleteAutoScalingGroup { group: clone.clone() });
            or_signal(
                ctx,
                sigs,
                setup_call(
                    ctx,
                    setup,
                    "autoscaling:CreateAutoScalingGroup",
                    vec![clone.clone()],
                    undo,
                    create,
                ),
            )
            .await??;
            let ready = or_signal(
                ctx,
                sigs,
                environment::wait_ready(&ctx.aws, &clone, capacity as usize, env.ready_timeout),
            )
            .await?;
            let instances = match ready {
                Ok(ids) => ids,
                Err(e @ EnvError::NotReady { .. }) => {
                    return Err(not_run(format!(
                        "{e}; nothing was injected and the clone is deleted"
                    )));
                }
                Err(e) => return Err(error_before_injection(e)),
            };
            ctx.emit_best_effort(Event::Environment {
                mode: Mode::Parallel,
                group: Some(clone.clone()),
                source: Some(source),
                instances: instances.clone(),
            });
            vars.asg = Some(clone.clone());
            vars.instances = instances.clone();
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
    })
}

fn not_run(reason: String) -> End {
    (Verdict::NotRun, reason, Vec::new())
}

fn error_before_injection(e: impl std::fmt::Display) -> End {
    (Verdict::Error, format!("{e}; nothing was injected"), Vec::new())
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
        ctx.refused.store(true, std::sync::atomic::Ordering::SeqCst);
        return Err(not_run(gate::refusal(&safety.policy, &rules)));
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
                return Err((
                    Verdict::Error,
                    format!(
                        "fault `{}`: cannot resolve targets, nothing was injected: {e}",
                        f.name.value
                    ),
                    Vec::new(),
                ));
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

/// Refuses the run if another live run holds a lock on `groups` or
/// `instances`; otherwise locks them for this run (undone at teardown).
async fn take_locks(
    ctx: &Ctx,
    groups: Vec<String>,
    instances: Vec<String>,
    run_id: &str,
    until: Timestamp,
    setup: &mut Vec<SetupStep>,
) -> Result<(), End> {
    if groups.is_empty() && instances.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    let held = lock::held(&ctx.aws, &groups, &instances)
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
    let action_id = ctx.journal.next_action_id();
    let intent = Event::Intent {
        action_id,
        fault: ENVIRONMENT.to_string(),
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
        Err(e) => {
            ctx.emit_best_effort(Event::Outcome {
                action_id,
                ok: false,
                error: Some(e.clone()),
                report: None,
            });
            Err(error_before_injection(e))
        }
    }
}

/// The name setup and teardown actions are journaled under.
pub const ENVIRONMENT: &str = "environment";

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
            if let Err(u) = rollback_step(ctx, ENVIRONMENT, *id, undo, hurry).await {
                unfinished.push(u);
            }
        }
        unfinished
    };
    tokio::pin!(work);
    let unfinished = loop {
        tokio::select! {
            u = &mut work => break u,
            Some(sig) = sigs.rx.recv() => {
                if sigs.received(ctx, sig) >= 2 {
                    hurry.cancel();
                }
            }
        }
    };
    if unfinished.is_empty() {
        return end;
    }
    let (_, reason, mut left) = end;
    let what: Vec<String> = unfinished
        .iter()
        .map(|u| format!("{} {}", u.operation(), u.resources().join(" ")))
        .collect();
    left.extend(unfinished);
    (
        Verdict::Error,
        format!(
            "{reason}; but teardown is incomplete, still to do: {}; finish it with `gameday recover`",
            what.join("; ")
        ),
        left,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not started; waiting for its `start_after` faults.
    Waiting,
    Injecting,
    Active,
    RollingBack,
    /// Rolled back, or never injected.
    Done,
}

struct FaultRun {
    name: String,
    deps: Vec<usize>,
    duration: Option<Duration>,
    steps: Vec<Step>,
    /// Inject intents written so far (also failed ones: their effect is unknown).
    applied: Vec<(u64, Call)>,
    status: Status,
    ends_at: Option<Instant>,
    unfinished: Vec<Undo>,
}

/// Why the fault phase ended.
enum EndReason {
    Completed,
    Breach(Breach),
    Signal(SignalName),
    MaxDuration,
    InjectError(String),
    WatchError(String),
}

enum TaskDone {
    Injected {
        idx: usize,
        applied: Vec<(u64, Call)>,
        error: Option<String>,
    },
    RolledBack {
        idx: usize,
        unfinished: Vec<Undo>,
    },
}

struct Dispatcher<'e> {
    ctx: Arc<Ctx>,
    exp: &'e Experiment,
    /// When the first fault took effect.
    first_active: Option<Timestamp>,
    /// When the latest rollback began (the end of the fault window).
    last_rollback_start: Option<Timestamp>,
    faults: Vec<FaultRun>,
    tasks: JoinSet<TaskDone>,
    /// Cancelled by a second signal: skip waits, never rollback calls.
    hurry: CancellationToken,
    rollback_limit: Arc<Semaphore>,
    ending: Option<EndReason>,
    rollback_started: bool,
    /// The run's id and expiry, for the faults' calls.
    cx: StepContext,
}

impl<'e> Dispatcher<'e> {
    fn new(
        ctx: Arc<Ctx>,
        exp: &'e Experiment,
        plans: Vec<Vec<Step>>,
        cx: StepContext,
        hurry: CancellationToken,
    ) -> Self {
        let index: HashMap<&str, usize> = exp
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.value.as_str(), i))
            .collect();
        let faults = exp
            .faults
            .iter()
            .zip(plans)
            .map(|(f, steps)| FaultRun {
                name: f.name.value.clone(),
                deps: f.start_after.iter().map(|d| index[d.value.as_str()]).collect(),
                duration: f.duration,
                steps,
                applied: Vec::new(),
                status: Status::Waiting,
                ends_at: None,
                unfinished: Vec::new(),
            })
            .collect();
        Dispatcher {
            ctx,
            exp,
            first_active: None,
            last_rollback_start: None,
            faults,
            tasks: JoinSet::new(),
            hurry,
            rollback_limit: Arc::new(Semaphore::new(ROLLBACK_CONCURRENCY)),
            ending: None,
            rollback_started: false,
            cx,
        }
    }

    async fn run(mut self, sigs: &mut Signals, obs: &mut Observer) -> (End, Window) {
        let started = Instant::now();
        let deadline = started + self.exp.timing.max_duration;
        let stop_watch = CancellationToken::new();
        let mut watch_rx = spawn_watcher(
            self.ctx.aws.clone(),
            obs.queries(),
            self.exp.timing.interval,
            stop_watch.clone(),
        );
        let mut watch_failures = 0u32;
        let mut status_tick = tokio::time::interval(Duration::from_millis(500));

        loop {
            self.advance();
            if self.ending.is_some()
                && self.tasks.is_empty()
                && !self
                    .faults
                    .iter()
                    .any(|f| matches!(f.status, Status::Active | Status::RollingBack))
            {
                break;
            }
            obs.injected_at = obs.injected_at.or(self.first_active);
            let next_end = self
                .faults
                .iter()
                .filter(|f| f.status == Status::Active)
                .filter_map(|f| f.ends_at)
                .min();
            let watching = self.ending.is_none();
            tokio::select! {
                biased;
                Some(sig) = sigs.rx.recv() => {
                    let count = sigs.received(&self.ctx, sig);
                    if self.ending.is_none() {
                        self.end(EndReason::Signal(sig), Timestamp::now());
                    } else if count >= 2 {
                        self.hurry.cancel();
                    }
                }
                // Read during rollback too: the faults are in effect until undone.
                Some(result) = watch_rx.recv() => {
                    match result {
                        Ok(reading) => {
                            watch_failures = 0;
                            let seen_at = reading.at;
                            let phase = if watching { Phase::Inject } else { Phase::Rollback };
                            let judged = record(&self.ctx, obs, &reading, phase);
                            if let (true, Some(b)) = (watching, judged.breaches.into_iter().next()) {
                                self.ctx.emit_best_effort(Event::GuardrailBreached { guardrail: b.guardrail.clone(), detail: b.detail.clone(), seen_at });
                                self.end(EndReason::Breach(b), seen_at);
                            }
                        }
                        Err(e) if watching => {
                            watch_failures += 1;
                            self.ctx.emit_best_effort(Event::Warning { message: format!("guardrail check failed ({watch_failures}/{MAX_WATCH_FAILURES}): {e}") });
                            if watch_failures >= MAX_WATCH_FAILURES {
                                self.end(EndReason::WatchError(e.to_string()), Timestamp::now());
                            }
                        }
                        Err(_) => {}
                    }
                }
                Some(joined) = self.tasks.join_next() => {
                    match joined {
                        Ok(done) => self.task_done(done),
                        // A panicked task is a bug; treat its fault as needing rollback.
                        Err(e) => self.ctx.emit_best_effort(Event::Warning { message: format!("internal task failed: {e}") }),
                    }
                }
                _ = sleep_until_opt(next_end), if watching && next_end.is_some() => {
                    let now = Instant::now();
                    for i in 0..self.faults.len() {
                        if self.faults[i].status == Status::Active && self.faults[i].ends_at.is_some_and(|t| t <= now) {
                            self.spawn_rollback(i);
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline), if watching => {
                    self.end(EndReason::MaxDuration, Timestamp::now());
                }
                _ = status_tick.tick() => self.show_status(started),
            }
        }
        stop_watch.cancel();
        let window = self
            .first_active
            .map(|from| (from, self.last_rollback_start.unwrap_or_else(Timestamp::now)));
        if self.first_active.is_some() {
            obs.rolled_back_at = Some(Timestamp::now());
        }
        (self.verdict(), window)
    }

    /// Starts faults whose turn has come, notices the end of the fault phase,
    /// and once the run is ending, rolls back in reverse dependency order.
    fn advance(&mut self) {
        if self.ending.is_none() {
            for i in 0..self.faults.len() {
                let ready = self.faults[i].status == Status::Waiting
                    && self.faults[i].deps.iter().all(|&d| {
                        matches!(
                            self.faults[d].status,
                            Status::Active | Status::RollingBack | Status::Done
                        )
                    });
                if ready {
                    self.spawn_inject(i);
                }
            }
            let timed_left = self
                .faults
                .iter()
                .any(|f| f.duration.is_some() && f.status != Status::Done);
            let starting = self
                .faults
                .iter()
                .any(|f| matches!(f.status, Status::Waiting | Status::Injecting));
            if !timed_left && !starting {
                self.ending = Some(EndReason::Completed);
                if self.faults.iter().any(|f| f.status == Status::Active) {
                    self.ctx.emit_best_effort(Event::Phase {
                        phase: Phase::Rollback,
                    });
                }
            }
        }
        if self.ending.is_some() {
            for i in 0..self.faults.len() {
                if self.faults[i].status == Status::Waiting {
                    self.faults[i].status = Status::Done;
                }
            }
            for i in 0..self.faults.len() {
                let dependents_busy = self.faults.iter().any(|f| {
                    f.deps.contains(&i)
                        && matches!(f.status, Status::Injecting | Status::Active | Status::RollingBack)
                });
                if self.faults[i].status == Status::Active && !dependents_busy {
                    self.spawn_rollback(i);
                }
            }
        }
    }

    fn end(&mut self, reason: EndReason, seen_at: Timestamp) {
        let text = match &reason {
            EndReason::Completed => return,
            EndReason::Breach(b) => format!("guardrail `{}` tripped: {}", b.guardrail, b.detail),
            EndReason::Signal(s) => format!("{s} received"),
            EndReason::MaxDuration => format!(
                "timing.max_duration ({}) reached",
                crate::yaml::format_duration(self.exp.timing.max_duration)
            ),
            EndReason::InjectError(e) => format!("injection failed: {e}"),
            EndReason::WatchError(e) => format!("guardrails cannot be checked: {e}"),
        };
        self.ctx.emit_best_effort(Event::Abort {
            reason: text,
            seen_at,
        });
        self.ctx.emit_best_effort(Event::Phase {
            phase: Phase::Rollback,
        });
        self.ending = Some(reason);
    }

    fn spawn_inject(&mut self, idx: usize) {
        let f = &mut self.faults[idx];
        f.status = Status::Injecting;
        let steps = f.steps.clone();
        let name = f.name.clone();
        let ctx = self.ctx.clone();
        let cx = StepContext {
            fault: name.clone(),
            ..self.cx.clone()
        };
        self.tasks.spawn(async move {
            let mut applied = Vec::new();
            for step in steps {
                // The undo records the state just before the call.
                let step = match step.prepare(&ctx.aws, &cx).await {
                    Ok(s) => s,
                    Err(e) => {
                        return TaskDone::Injected {
                            idx,
                            applied,
                            error: Some(e.to_string()),
                        };
                    }
                };
                let action_id = ctx.journal.next_action_id();
                let intent = Event::Intent {
                    action_id,
                    fault: name.clone(),
                    kind: ActionKind::Inject,
                    operation: step.operation.clone(),
                    resources: step.resources.clone(),
                    undo: Some(step.undo.clone()),
                    rollback_of: None,
                };
                // No intent on disk, no call: the journal must always know more than AWS.
                if let Err(e) = ctx.emit(intent) {
                    return TaskDone::Injected {
                        idx,
                        applied,
                        error: Some(e.to_string()),
                    };
                }
                applied.push((action_id, step.clone()));
                let result = step.apply(&ctx.aws, &cx).await;
                let error = result.err();
                ctx.emit_best_effort(Event::Outcome {
                    action_id,
                    ok: error.is_none(),
                    error: error.clone(),
                    report: None,
                });
                if let Some(e) = error {
                    return TaskDone::Injected {
                        idx,
                        applied,
                        error: Some(e.to_string()),
                    };
                }
            }
            TaskDone::Injected {
                idx,
                applied,
                error: None,
            }
        });
    }

    fn spawn_rollback(&mut self, idx: usize) {
        if !self.rollback_started {
            self.rollback_started = true;
            let trigger = match &self.ending {
                None => format!(
                    "fault `{}` reached the end of its duration",
                    self.faults[idx].name
                ),
                Some(EndReason::Completed) => "the fault phase ended".to_string(),
                Some(_) => "abort".to_string(),
            };
            self.ctx.emit_best_effort(Event::RollbackStarted { trigger });
        }
        self.last_rollback_start = Some(Timestamp::now());
        let f = &mut self.faults[idx];
        f.status = Status::RollingBack;
        let applied = f.applied.clone();
        let name = f.name.clone();
        let ctx = self.ctx.clone();
        let hurry = self.hurry.clone();
        let limit = self.rollback_limit.clone();
        self.tasks.spawn(async move {
            // Undo in reverse order of injection, each batch concurrently (bounded).
            let mut set = JoinSet::new();
            for (inject_id, step) in applied.into_iter().rev() {
                let (ctx, hurry, limit, name) = (ctx.clone(), hurry.clone(), limit.clone(), name.clone());
                set.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    rollback_step(&ctx, &name, inject_id, &step.undo, &hurry)
                        .await
                        .err()
                });
            }
            let mut unfinished = Vec::new();
            while let Some(r) = set.join_next().await {
                if let Ok(Some(undo)) = r {
                    unfinished.push(undo);
                }
            }
            TaskDone::RolledBack { idx, unfinished }
        });
    }

    fn task_done(&mut self, done: TaskDone) {
        match done {
            TaskDone::Injected { idx, applied, error } => {
                let f = &mut self.faults[idx];
                f.applied = applied;
                f.status = if f.applied.is_empty() {
                    Status::Done
                } else {
                    Status::Active
                };
                f.ends_at = f.duration.map(|d| Instant::now() + d);
                if f.status == Status::Active {
                    self.first_active = self.first_active.or(Some(Timestamp::now()));
                    let until = f.duration.and_then(|d| Timestamp::now().checked_add(d).ok());
                    self.ctx.emit_best_effort(Event::FaultActive {
                        fault: f.name.clone(),
                        until,
                    });
                }
                if let Some(e) = error
                    && self.ending.is_none()
                {
                    self.end(
                        EndReason::InjectError(format!("fault `{}`: {e}", self.faults[idx].name)),
                        Timestamp::now(),
                    );
                }
            }
            TaskDone::RolledBack { idx, unfinished } => {
                let f = &mut self.faults[idx];
                f.status = Status::Done;
                if unfinished.is_empty() {
                    self.ctx.emit_best_effort(Event::FaultRolledBack {
                        fault: f.name.clone(),
                    });
                }
                f.unfinished = unfinished;
            }
        }
    }

    fn show_status(&self, started: Instant) {
        let now = Instant::now();
        let mut parts = Vec::new();
        for f in &self.faults {
            match (f.status, f.ends_at) {
                (Status::Active, Some(t)) => parts.push(format!(
                    "{}: {} left",
                    f.name,
                    crate::yaml::format_duration(Duration::from_secs(
                        t.saturating_duration_since(now).as_secs()
                    ))
                )),
                (Status::Active, None) => parts.push(format!("{}: active", f.name)),
                (Status::Injecting, _) => parts.push(format!("{}: injecting", f.name)),
                (Status::RollingBack, _) => parts.push(format!("{}: rolling back", f.name)),
                _ => {}
            }
        }
        let phase = if self.ending.is_some() {
            "rollback"
        } else {
            "fault phase"
        };
        let elapsed =
            crate::yaml::format_duration(Duration::from_secs(now.duration_since(started).as_secs()));
        self.ctx.progress.status(&format!(
            "{phase} ({elapsed}) | {} | guardrails watched every {}",
            parts.join(", "),
            crate::yaml::format_duration(self.exp.timing.interval)
        ));
    }

    fn verdict(self) -> End {
        let unfinished: Vec<Undo> = self
            .faults
            .iter()
            .flat_map(|f| f.unfinished.iter().cloned())
            .collect();
        if !unfinished.is_empty() {
            let what: Vec<String> = unfinished
                .iter()
                .map(|u| format!("{} {}", u.operation(), u.resources().join(" ")))
                .collect();
            return (
                Verdict::Error,
                format!(
                    "rollback incomplete, still to do: {}; finish it with `gameday recover` and this run's id",
                    what.join("; ")
                ),
                unfinished,
            );
        }
        let (verdict, reason) = match self.ending {
            Some(EndReason::Completed) | None => (
                Verdict::Passed,
                "every fault was injected, held and rolled back; no guardrail tripped".to_string(),
            ),
            Some(EndReason::Breach(b)) => (
                Verdict::Aborted,
                format!(
                    "guardrail `{}` tripped ({}); every fault was rolled back",
                    b.guardrail, b.detail
                ),
            ),
            Some(EndReason::Signal(s)) => (
                Verdict::Interrupted,
                format!("stopped by {s}; every fault was rolled back"),
            ),
            Some(EndReason::MaxDuration) => (
                Verdict::Aborted,
                "timing.max_duration reached; every fault was rolled back".to_string(),
            ),
            Some(EndReason::InjectError(e)) => (
                Verdict::Error,
                format!("injection failed: {e}; every fault injected so far was rolled back"),
            ),
            Some(EndReason::WatchError(e)) => (
                Verdict::Error,
                format!("guardrails could not be checked ({e}); every fault was rolled back"),
            ),
        };
        (verdict, reason, Vec::new())
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads every probe every `interval` until cancelled, sending each reading
/// (stamped with when the answers arrived: when a breach became visible to us).
fn spawn_watcher(
    aws: Aws,
    queries: Arc<Queries>,
    interval: Duration,
    stop: CancellationToken,
) -> mpsc::Receiver<Result<Reading, AwsError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = queries.read(&aws) => r,
            };
            if tx.send(result).await.is_err() {
                return;
            }
        }
    });
    rx
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
    let attempts = rollback_attempts();
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
        match undo.run(&ctx.aws, hurry).await {
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
                ctx.emit_best_effort(Event::Outcome {
                    action_id,
                    ok: false,
                    error: Some(e),
                    report: None,
                });
                if attempt < attempts {
                    tokio::time::sleep(crate::aws::step_backoff(attempt)).await;
                }
            }
        }
    }
    Err(undo.clone())
}
