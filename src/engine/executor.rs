//! Carries out the dispatcher's commands: the fault phase's I/O.
//!
//! Each inject and rollback runs as a tokio task holding a
//! [`CancellationToken`], a child of the phase's token. The executor turns
//! what happens (signals, the watcher's readings, timers, task results, and
//! panics, which surface as `JoinError`s) into [`Input`]s for the
//! [`Dispatcher`], and runs the [`Command`]s it answers. An inject task
//! checks its token before each mutating call, so once an abort cancels it no
//! further batch is sent; it reports each step's intent *before* the call, so
//! the dispatcher knows what to roll back even if the task panics next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatcher::{Command, Dispatcher, FaultSpec, Input, Now, TaskKind, Window};
use super::signals::Signals;
use super::{Ctx, End, record, rollback_step};
use crate::aws::{Aws, AwsError};
use crate::experiment::Experiment;
use crate::faults::{Call, Step, StepContext};
use crate::journal::{ActionKind, Event, Phase};
use crate::observe::{Observer, Queries, Reading};

/// How many rollback calls may be in flight at once.
const ROLLBACK_CONCURRENCY: usize = 8;
/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Runs the fault phase: injects `plans` (one per fault of `exp`), watches,
/// and rolls back, until the dispatcher finishes it. `aborted` is cancelled
/// the moment the run aborts (breach, signal, max_duration, error), so that
/// what must stop at once (real users' traffic to the copies) need not wait
/// for the faults' rollback.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fault_phase(
    ctx: &Arc<Ctx>,
    exp: &Experiment,
    plans: Vec<Vec<Step>>,
    cx: StepContext,
    hurry: &CancellationToken,
    aborted: &CancellationToken,
    sigs: &mut Signals,
    obs: &mut Observer,
) -> (End, Window) {
    let index: HashMap<&str, usize> = exp
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.value.as_str(), i))
        .collect();
    let specs = exp
        .faults
        .iter()
        .map(|f| FaultSpec {
            name: f.name.value.clone(),
            deps: f.start_after.iter().map(|d| index[d.value.as_str()]).collect(),
            duration: f.duration,
        })
        .collect();
    let mut dispatcher = Dispatcher::new(specs, exp.timing.max_duration);
    let started = Instant::now();
    let now = || Now {
        wall: Timestamp::now(),
        elapsed: started.elapsed(),
    };
    // No task outlives the phase: everything it spawns holds a child of this token.
    let phase = CancellationToken::new();
    let _stop = phase.clone().drop_guard();
    let mut watch_rx = spawn_watcher(
        ctx.aws.clone(),
        obs.queries(),
        exp.timing.interval,
        phase.child_token(),
    );
    let mut ex = Executor {
        ctx: ctx.clone(),
        exp,
        plans,
        cx,
        hurry: hurry.clone(),
        aborted: aborted.clone(),
        phase: phase.clone(),
        tasks: JoinSet::new(),
        task_of: HashMap::new(),
        injects: Vec::new(),
        rollback_limit: Arc::new(Semaphore::new(ROLLBACK_CONCURRENCY)),
    };
    let (intent_tx, mut intent_rx) = mpsc::unbounded_channel();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut watcher_alive = true;
    let mut commands = dispatcher.start(now());
    loop {
        for command in commands {
            if let Some(finished) = ex.execute(command, &intent_tx) {
                if finished.1.is_some() {
                    obs.rolled_back_at = Some(Timestamp::now());
                }
                return finished;
            }
        }
        obs.injected_at = obs.injected_at.or(dispatcher.first_active());
        let watching = dispatcher.watching();
        let fault_end = dispatcher.next_fault_end().map(|t| started + t);
        let deadline = dispatcher.deadline().map(|t| started + t);
        let inputs: Vec<Input> = tokio::select! {
            biased;
            sig = sigs.next(ctx) => vec![Input::Signal(sig)],
            // Read during rollback too: the faults are in effect until undone.
            result = watch_rx.recv(), if watcher_alive => match result {
                Some(Ok(reading)) => {
                    let seen_at = reading.at;
                    let phase = if watching { Phase::Inject } else { Phase::Rollback };
                    let judged = record(ctx, obs, &reading, phase);
                    if watching && reading.halt.is_some() {
                        obs.halted_at = obs.halted_at.or(Some(seen_at));
                    }
                    vec![Input::Reading { breach: judged.breaches.into_iter().next(), halt: reading.halt, seen_at }]
                }
                Some(Err(e)) => vec![Input::WatchFailed { error: e.to_string() }],
                None => {
                    watcher_alive = false;
                    vec![Input::WatcherGone]
                }
            },
            Some(intent) = intent_rx.recv() => vec![intent],
            Some(joined) = ex.tasks.join_next_with_id() => {
                // A task's intents were sent before it ended: they come first.
                let mut inputs: Vec<Input> = std::iter::from_fn(|| intent_rx.try_recv().ok()).collect();
                inputs.push(ex.joined(joined));
                inputs
            }
            _ = sleep_until_opt(fault_end), if fault_end.is_some() => vec![Input::FaultTimer],
            _ = sleep_until_opt(deadline), if deadline.is_some() => vec![Input::Deadline],
            _ = status_tick.tick() => {
                ctx.progress.status(&dispatcher.status_line(started.elapsed(), exp.timing.interval));
                Vec::new()
            }
        };
        commands = Vec::new();
        for input in inputs {
            commands.extend(dispatcher.handle(input, now()));
        }
    }
}

struct Executor<'e> {
    ctx: Arc<Ctx>,
    exp: &'e Experiment,
    plans: Vec<Vec<Step>>,
    /// The run's id and expiry, for the faults' calls.
    cx: StepContext,
    /// Cancelled by a second signal: skip waits, never rollback calls.
    hurry: CancellationToken,
    /// Cancelled when the run aborts.
    aborted: CancellationToken,
    /// The phase's token: every task's token is a child of it.
    phase: CancellationToken,
    tasks: JoinSet<Input>,
    /// Which fault and kind each task is, to turn its panic into an input.
    task_of: HashMap<Id, (usize, TaskKind)>,
    /// The tokens of the injections started so far.
    injects: Vec<CancellationToken>,
    rollback_limit: Arc<Semaphore>,
}

impl Executor<'_> {
    /// Runs one command; returns the phase's end when told to finish.
    fn execute(&mut self, command: Command, intents: &mpsc::UnboundedSender<Input>) -> Option<(End, Window)> {
        match command {
            Command::StartInject { fault } => self.start_inject(fault, intents.clone()),
            Command::CancelInjects => self.injects.iter().for_each(|t| t.cancel()),
            Command::StartRollback { fault, applied } => self.start_rollback(fault, applied),
            Command::Hurry => self.hurry.cancel(),
            Command::Journal(event) => {
                let abort = matches!(*event, Event::Abort { .. });
                self.ctx.emit_best_effort(*event);
                if abort {
                    self.aborted.cancel();
                }
            }
            Command::Finish { end, window } => return Some((end, window)),
        }
        None
    }

    /// A task's end as an input; a panic names the task's fault.
    fn joined(&mut self, joined: Result<(Id, Input), tokio::task::JoinError>) -> Input {
        match joined {
            Ok((id, input)) => {
                self.task_of.remove(&id);
                input
            }
            Err(e) => {
                let (fault, kind) = self
                    .task_of
                    .remove(&e.id())
                    .expect("every task of the phase is registered when spawned");
                Input::Panicked {
                    fault,
                    kind,
                    message: e.to_string(),
                }
            }
        }
    }

    fn start_inject(&mut self, idx: usize, intents: mpsc::UnboundedSender<Input>) {
        let steps = self.plans[idx].clone();
        let ctx = self.ctx.clone();
        let cx = StepContext {
            fault: self.exp.faults[idx].name.value.clone(),
            ..self.cx.clone()
        };
        let token = self.phase.child_token();
        self.injects.push(token.clone());
        let handle = self.tasks.spawn(inject(ctx, cx, idx, steps, token, intents));
        self.task_of.insert(handle.id(), (idx, TaskKind::Inject));
    }

    fn start_rollback(&mut self, idx: usize, applied: Vec<(u64, Call)>) {
        let name = self.exp.faults[idx].name.value.clone();
        let ctx = self.ctx.clone();
        let hurry = self.hurry.clone();
        let limit = self.rollback_limit.clone();
        // Rollbacks are never cancelled by an abort; only the phase's end stops them.
        let token = self.phase.child_token();
        let handle = self.tasks.spawn(async move {
            // Undo in reverse order of injection, each batch concurrently (bounded).
            let mut set = JoinSet::new();
            let mut undo_of = HashMap::new();
            for (inject_id, step) in applied.into_iter().rev() {
                let (ctx, hurry, limit, name, token) = (
                    ctx.clone(),
                    hurry.clone(),
                    limit.clone(),
                    name.clone(),
                    token.clone(),
                );
                let undo = step.undo;
                let h = set.spawn({
                    let undo = undo.clone();
                    async move {
                        let _permit = limit.acquire_owned().await;
                        token
                            .run_until_cancelled(rollback_step(&ctx, &name, inject_id, &undo, &hurry))
                            .await
                            .unwrap_or(Err(undo))
                            .err()
                    }
                });
                undo_of.insert(h.id(), undo);
            }
            let mut unfinished = Vec::new();
            while let Some(r) = set.join_next_with_id().await {
                match r {
                    Ok((_, None)) => {}
                    Ok((_, Some(undo))) => unfinished.push(undo),
                    // A panicked undo is an unfinished one: `gameday recover` redoes it.
                    Err(e) => {
                        ctx.emit_best_effort(Event::Warning {
                            message: format!("internal task failed: {e}"),
                        });
                        if let Some(undo) = undo_of.remove(&e.id()) {
                            unfinished.push(undo);
                        }
                    }
                }
            }
            Input::RollbackDone {
                fault: idx,
                unfinished,
            }
        });
        self.task_of.insert(handle.id(), (idx, TaskKind::Rollback));
    }
}

/// Fault `idx`'s injection: each step prepared, its intent journaled and
/// reported, then its call made; stops at the first error, and before the
/// next call once `token` is cancelled (an abort).
async fn inject(
    ctx: Arc<Ctx>,
    cx: StepContext,
    idx: usize,
    steps: Vec<Step>,
    token: CancellationToken,
    intents: mpsc::UnboundedSender<Input>,
) -> Input {
    let done = |error: Option<String>| Input::InjectDone { fault: idx, error };
    for step in steps {
        // Once the run aborts, no further batch is sent.
        if token.is_cancelled() {
            break;
        }
        // The undo records the state just before the call.
        let step = match step.prepare(&ctx.aws, &cx).await {
            Ok(s) => s,
            Err(e) => return done(Some(e.to_string())),
        };
        if token.is_cancelled() {
            break;
        }
        let action_id = ctx.journal.next_action_id();
        let intent = Event::Intent {
            action_id,
            fault: cx.fault.clone(),
            kind: ActionKind::Inject,
            operation: step.operation.clone(),
            resources: step.resources.clone(),
            undo: Some(step.undo.clone()),
            rollback_of: None,
        };
        // No intent on disk, no call: the journal must always know more than AWS.
        if let Err(e) = ctx.emit(intent) {
            return done(Some(e.to_string()));
        }
        // The dispatcher learns the step before the call, whatever happens next.
        let _ = intents.send(Input::Intent {
            fault: idx,
            action_id,
            step: step.clone(),
        });
        let error = step.apply(&ctx.aws, &cx).await.err();
        ctx.emit_best_effort(Event::Outcome {
            action_id,
            ok: error.is_none(),
            error: error.clone(),
            report: None,
        });
        if let Some(e) = error {
            return done(Some(e.to_string()));
        }
    }
    done(None)
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

#[cfg(test)]
mod tests {
    //! The executor's own duties, with a fake fault (no AWS call): cancellation
    //! before each mutating call, and a panicking task turned into an input.

    use std::sync::Mutex;

    use super::super::testing::*;
    use super::*;
    use crate::faults::BoxFuture;

    /// Records each call; `on_call(n)` runs at the n-th call (1-based).
    struct Recording {
        calls: Mutex<Vec<String>>,
        on_call: Box<dyn Fn(usize) + Send + Sync>,
    }

    impl std::fmt::Debug for Recording {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Recording")
        }
    }

    /// One batch's call: records it, then runs `on_call` with its number.
    #[derive(Debug)]
    struct Batch {
        id: String,
        calls: Arc<Recording>,
    }

    impl crate::faults::Forward for Batch {
        fn apply<'a>(&'a self, _: &'a Aws, _: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
            let n = {
                let mut calls = self.calls.calls.lock().expect("calls");
                calls.push(self.id.clone());
                calls.len()
            };
            (self.calls.on_call)(n);
            Box::pin(async { Ok(()) })
        }
    }

    fn batches(calls: &Arc<Recording>, n: usize) -> Vec<Step> {
        (1..=n)
            .map(|i| {
                let id = format!("i-{i}");
                Step::ready(
                    "ec2:StopInstances",
                    vec![id.clone()],
                    Batch {
                        id,
                        calls: calls.clone(),
                    },
                    crate::faults::Nothing {
                        reason: "test".into(),
                    },
                )
            })
            .collect()
    }

    fn cx() -> StepContext {
        StepContext {
            run_id: "test".into(),
            expires_at: Timestamp::MAX,
            fault: "stop".into(),
        }
    }

    #[tokio::test]
    async fn a_cancelled_injection_sends_no_further_batch() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let ctx = Arc::new(ctx(dir.path(), &endpoint).await);
        let token = CancellationToken::new();
        // The abort arrives while the first batch's call is in flight.
        let abort = token.clone();
        let fault = Arc::new(Recording {
            calls: Mutex::new(Vec::new()),
            on_call: Box::new(move |_| abort.cancel()),
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out = inject(ctx, cx(), 0, batches(&fault, 3), token, tx).await;
        assert!(
            matches!(
                out,
                Input::InjectDone {
                    fault: 0,
                    error: None
                }
            ),
            "{out:?}"
        );
        assert_eq!(
            *fault.calls.lock().expect("calls"),
            ["i-1"],
            "one batch sent, not three"
        );
        let intent = rx.try_recv().expect("the first batch's intent was reported");
        assert!(
            matches!(
                intent,
                Input::Intent {
                    fault: 0,
                    action_id: 1,
                    ..
                }
            ),
            "{intent:?}"
        );
        assert!(rx.try_recv().is_err(), "no other intent");
        let events = events(dir.path());
        assert_eq!(names(&events), ["intent", "outcome"]);
    }

    #[tokio::test]
    async fn a_panicking_inject_task_is_rolled_back_from_its_intents_and_the_phase_ends() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let ctx = Arc::new(ctx(dir.path(), &endpoint).await);
        let text = "version: 1
name: test-stop
hypothesis: h
environment: { mode: in-place, autoscaling_group: web }
guardrails: [{ alarm: errors }]
faults:
  - name: stop
    action: ec2:stop-instances
    target: { select: all }
    duration: 1h
timing: { interval: 500ms, max_duration: 2h }
";
        let exp = crate::experiment::load_str(std::path::Path::new("exp.yaml"), text).expect("an experiment");
        let fault = Arc::new(Recording {
            calls: Mutex::new(Vec::new()),
            on_call: Box::new(|n| assert!(n < 2, "the fault panics at its second batch")),
        });
        // Nothing to read: the watcher makes no call (the guardrail is not checked here).
        let mut obs = Observer::new(Vec::new());
        let (_tx, rx) = mpsc::unbounded_channel();
        let mut sigs = Signals::install(super::super::SignalHandling::Test(rx)).expect("signals");
        let hurry = CancellationToken::new();
        let (end, window) = fault_phase(
            &ctx,
            &exp,
            vec![batches(&fault, 3)],
            cx(),
            &hurry,
            &CancellationToken::new(),
            &mut sigs,
            &mut obs,
        )
        .await;
        assert_eq!(end.verdict, crate::journal::Verdict::Error);
        assert_eq!(
            end.reason,
            "injection failed: fault `stop`: the inject task panicked; every fault injected so far was rolled back"
        );
        assert!(window.is_some(), "the fault was in effect");
        let events = events(dir.path());
        let rollbacks: Vec<u64> = events
            .iter()
            .filter(|e| e["event"] == "intent" && e["kind"] == "rollback")
            .map(|e| e["rollback_of"].as_u64().expect("rollback_of"))
            .collect();
        assert_eq!(
            rollbacks,
            [2, 1],
            "both batches whose intent was written are rolled back, newest first"
        );
        assert!(names(&events).contains(&"fault_rolled_back".to_string()));
    }
}
