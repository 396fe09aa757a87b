//! The fault phase's decisions, as a synchronous state machine.
//!
//! [`Dispatcher::handle`] takes one [`Input`] (a reading, a signal, a timer, a
//! task's progress or end, a panic) and the time it happened, and returns the
//! [`Command`]s to carry out (start an injection, cancel injections, start a
//! rollback, hurry, journal an event, finish with a verdict). It makes no
//! call, reads no clock and spawns nothing: the executor
//! ([`super::executor`]) does the I/O and feeds the results back as inputs, so
//! every decision of the fault phase is tested without AWS and without time
//! passing (see the tests below).
//!
//! The rules it keeps:
//! - a fault starts once its `start_after` faults are in effect, and is rolled
//!   back when its duration is over or when the run ends, dependents first;
//! - once an abort starts, no injection starts and the injections in progress
//!   are cancelled before their next call: only rollbacks are sent;
//! - the dispatcher learns each inject step when its intent is journaled
//!   (before its call), so it always knows what a fault may have changed,
//!   even when the task that made the call panics;
//! - a panicked inject task ends the run like a failed injection (its applied
//!   steps are rolled back); a panicked rollback task leaves its undos for
//!   `gameday recover`;
//! - the phase finishes only when no task is in flight and no fault is in effect.

use std::time::Duration;

use jiff::Timestamp;

use super::End;
use super::signals::{Escalation, Received};
use crate::faults::{Call, Undo};
use crate::halt::Halt;
use crate::journal::{Event, Phase, Verdict};
use crate::observe::Breach;

/// Consecutive failed guardrail checks after which the run stops: a guardrail
/// that cannot be read protects nothing.
pub(crate) const MAX_WATCH_FAILURES: u32 = 3;

/// The fault window a fault phase had: from the first fault in effect to the
/// last rollback's start.
pub(crate) type Window = Option<(Timestamp, Timestamp)>;

/// When an input happened: the wall clock for the journal, and the time since
/// the fault phase began for durations and the deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// For events (`seen_at`, `until`, the fault window).
    pub(crate) wall: Timestamp,
    /// Since the fault phase began: fault durations and `max_duration` count from it.
    pub(crate) elapsed: Duration,
}

/// One fault as the dispatcher schedules it.
#[derive(Debug, Clone)]
pub(crate) struct FaultSpec {
    /// The fault's name (for events and messages).
    pub(crate) name: String,
    /// Indexes of its `start_after` faults.
    pub(crate) deps: Vec<usize>,
    /// How long it stays in effect; `None`: until the fault phase ends.
    pub(crate) duration: Option<Duration>,
}

/// Which kind of task a panic came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// A fault's injection.
    Inject,
    /// A fault's rollback.
    Rollback,
}

/// Something that happened, for the dispatcher to decide on.
#[derive(Debug)]
pub(crate) enum Input {
    /// Every probe was read (and the reading journaled); `breach` is the first
    /// guardrail found breached, if any.
    Reading {
        /// The first breach in the reading.
        breach: Option<Breach>,
        /// The kill switch, when it is on: it wins over a breach.
        halt: Option<Halt>,
        /// When the answers arrived: when a breach became visible to us.
        seen_at: Timestamp,
    },
    /// The probes could not be read.
    WatchFailed {
        /// Why.
        error: String,
    },
    /// The guardrail watcher stopped (it only stops when told to, so it panicked).
    WatcherGone,
    /// An operator's signal (already journaled), with its number in the run.
    Signal(Received),
    /// Some active fault's duration may be over.
    FaultTimer,
    /// `timing.max_duration` is reached.
    Deadline,
    /// An inject step's intent is journaled and its call is about to be made:
    /// from now on the step may be in effect.
    Intent {
        /// The fault's index.
        fault: usize,
        /// The intent's action id (rollbacks refer to it).
        action_id: u64,
        /// The step, its undo filled in.
        step: Call,
    },
    /// A fault's inject task ended: every step made, or stopped by an error,
    /// or cancelled by an abort (no error).
    InjectDone {
        /// The fault's index.
        fault: usize,
        /// Why it stopped early, if it failed.
        error: Option<String>,
    },
    /// A fault's rollback task ended.
    RollbackDone {
        /// The fault's index.
        fault: usize,
        /// Undos that could not be completed.
        unfinished: Vec<Undo>,
    },
    /// A fault's task panicked.
    Panicked {
        /// The fault's index.
        fault: usize,
        /// Which task.
        kind: TaskKind,
        /// The panic, as the runtime reports it.
        message: String,
    },
}

/// What the executor is to do, in order.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start injecting fault `fault` (its planned steps, one after the other).
    StartInject {
        /// The fault's index.
        fault: usize,
    },
    /// Stop every injection in progress before its next call.
    CancelInjects,
    /// Undo `applied` (inject intents written for `fault`), newest first.
    StartRollback {
        /// The fault's index.
        fault: usize,
        /// Each step whose intent was written, with that intent's id.
        applied: Vec<(u64, Call)>,
    },
    /// Skip waits (for instances to reach `running`); rollback calls still run.
    Hurry,
    /// Record this event (boxed: events are large, commands many).
    Journal(Box<Event>),
    /// The fault phase is over.
    Finish {
        /// How it ended.
        end: End,
        /// The fault window, if any fault was in effect.
        window: Window,
    },
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

#[derive(Debug)]
struct FaultRun {
    spec: FaultSpec,
    /// Inject intents written so far (also failed ones: their effect is unknown).
    applied: Vec<(u64, Call)>,
    status: Status,
    /// When its duration is over (since the phase began).
    ends_at: Option<Duration>,
    unfinished: Vec<Undo>,
}

/// Why the fault phase ended.
#[derive(Debug)]
enum EndReason {
    Completed,
    Breach(Breach),
    Halted(Halt),
    Signal(&'static str),
    MaxDuration,
    InjectError(String),
    WatchError(String),
}

/// The fault phase's state.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    faults: Vec<FaultRun>,
    max_duration: Duration,
    ending: Option<EndReason>,
    rollback_started: bool,
    /// When the first fault took effect.
    first_active: Option<Timestamp>,
    /// When the latest rollback began (the end of the fault window).
    last_rollback_start: Option<Timestamp>,
    watch_failures: u32,
    finished: bool,
}

impl Dispatcher {
    /// A fault phase for `faults`, ending by `max_duration` at the latest.
    pub(crate) fn new(faults: Vec<FaultSpec>, max_duration: Duration) -> Self {
        Dispatcher {
            faults: faults
                .into_iter()
                .map(|spec| FaultRun {
                    spec,
                    applied: Vec::new(),
                    status: Status::Waiting,
                    ends_at: None,
                    unfinished: Vec::new(),
                })
                .collect(),
            max_duration,
            ending: None,
            rollback_started: false,
            first_active: None,
            last_rollback_start: None,
            watch_failures: 0,
            finished: false,
        }
    }

    /// The first commands: the faults with nothing to wait for start.
    pub(crate) fn start(&mut self, now: Now) -> Vec<Command> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        out
    }

    /// Decides on one input; returns what to do, in order.
    pub(crate) fn handle(&mut self, input: Input, now: Now) -> Vec<Command> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Reading {
                breach,
                halt,
                seen_at,
            } => {
                self.watch_failures = 0;
                if let (true, Some(h)) = (self.watching(), halt) {
                    out.push(Command::Journal(Box::new(Event::Halted {
                        reason: h.reason.clone(),
                        by: h.by.clone(),
                        halted_at: h.at,
                        parameter: h.parameter.clone(),
                        seen_at,
                    })));
                    self.end(EndReason::Halted(h), seen_at, &mut out);
                } else if let (true, Some(b)) = (self.watching(), breach) {
                    out.push(Command::Journal(Box::new(Event::GuardrailBreached {
                        guardrail: b.guardrail.clone(),
                        detail: b.detail.clone(),
                        seen_at,
                    })));
                    self.end(EndReason::Breach(b), seen_at, &mut out);
                }
            }
            Input::WatchFailed { error } => {
                // During rollback the readings only fill the record.
                if self.watching() {
                    self.watch_failures += 1;
                    out.push(Command::Journal(Box::new(Event::Warning {
                        message: format!(
                            "guardrail check failed ({}/{MAX_WATCH_FAILURES}): {error}",
                            self.watch_failures
                        ),
                    })));
                    if self.watch_failures >= MAX_WATCH_FAILURES {
                        self.end(EndReason::WatchError(error), now.wall, &mut out);
                    }
                }
            }
            Input::WatcherGone => {
                if self.watching() {
                    self.end(
                        EndReason::WatchError("the guardrail watcher stopped".into()),
                        now.wall,
                        &mut out,
                    );
                }
            }
            Input::Signal(sig) => {
                if self.watching() {
                    self.end(EndReason::Signal(sig.name), now.wall, &mut out);
                } else if sig.escalation() == Escalation::Hurry {
                    out.push(Command::Hurry);
                }
            }
            Input::FaultTimer => {
                if self.watching() {
                    for i in 0..self.faults.len() {
                        let f = &self.faults[i];
                        if f.status == Status::Active && f.ends_at.is_some_and(|t| t <= now.elapsed) {
                            self.rollback(i, now, &mut out);
                        }
                    }
                }
            }
            Input::Deadline => {
                if self.watching() {
                    self.end(EndReason::MaxDuration, now.wall, &mut out);
                }
            }
            Input::Intent {
                fault,
                action_id,
                step,
            } => self.faults[fault].applied.push((action_id, step)),
            Input::InjectDone { fault, error } => self.injected(fault, error, now, &mut out),
            Input::RollbackDone { fault, unfinished } => {
                let f = &mut self.faults[fault];
                f.status = Status::Done;
                if unfinished.is_empty() {
                    out.push(Command::Journal(Box::new(Event::FaultRolledBack {
                        fault: f.spec.name.clone(),
                    })));
                }
                f.unfinished = unfinished;
            }
            Input::Panicked { fault, kind, message } => {
                out.push(Command::Journal(Box::new(Event::Warning {
                    message: format!("internal task failed: {message}"),
                })));
                match kind {
                    // Its steps are known from their intents: roll them back.
                    TaskKind::Inject => {
                        self.injected(fault, Some("the inject task panicked".to_string()), now, &mut out)
                    }
                    // Which undos it completed is unknown: all are left for
                    // `gameday recover` (undos are idempotent).
                    TaskKind::Rollback => {
                        let f = &mut self.faults[fault];
                        f.status = Status::Done;
                        f.unfinished = f.applied.iter().rev().map(|(_, s)| s.undo.clone()).collect();
                    }
                }
            }
        }
        self.advance(now, &mut out);
        out
    }

    /// Whether the fault phase is still watching (no abort, not ending).
    pub(crate) fn watching(&self) -> bool {
        self.ending.is_none()
    }

    /// When the first fault took effect.
    pub(crate) fn first_active(&self) -> Option<Timestamp> {
        self.first_active
    }

    /// When (since the phase began) the next active fault's duration is over,
    /// while watching.
    pub(crate) fn next_fault_end(&self) -> Option<Duration> {
        if !self.watching() {
            return None;
        }
        self.faults
            .iter()
            .filter(|f| f.status == Status::Active)
            .filter_map(|f| f.ends_at)
            .min()
    }

    /// When (since the phase began) `max_duration` is reached, while watching.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.watching().then_some(self.max_duration)
    }

    /// The status line shown while the phase runs.
    pub(crate) fn status_line(&self, elapsed: Duration, interval: Duration) -> String {
        let mut parts = Vec::new();
        for f in &self.faults {
            let name = &f.spec.name;
            match (f.status, f.ends_at) {
                (Status::Active, Some(t)) => parts.push(format!(
                    "{name}: {} left",
                    crate::util::format_duration(Duration::from_secs(t.saturating_sub(elapsed).as_secs()))
                )),
                (Status::Active, None) => parts.push(format!("{name}: active")),
                (Status::Injecting, _) => parts.push(format!("{name}: injecting")),
                (Status::RollingBack, _) => parts.push(format!("{name}: rolling back")),
                _ => {}
            }
        }
        let phase = if self.watching() {
            "fault phase"
        } else {
            "rollback"
        };
        format!(
            "{phase} ({}) | {} | guardrails watched every {}",
            crate::util::format_duration(Duration::from_secs(elapsed.as_secs())),
            parts.join(", "),
            crate::util::format_duration(interval)
        )
    }

    /// A fault's injection ended (`error`: it failed or its task panicked).
    fn injected(&mut self, idx: usize, error: Option<String>, now: Now, out: &mut Vec<Command>) {
        let f = &mut self.faults[idx];
        f.status = if f.applied.is_empty() {
            Status::Done
        } else {
            Status::Active
        };
        f.ends_at = f.spec.duration.map(|d| now.elapsed + d);
        if f.status == Status::Active {
            self.first_active = self.first_active.or(Some(now.wall));
            let until = f.spec.duration.and_then(|d| now.wall.checked_add(d).ok());
            out.push(Command::Journal(Box::new(Event::FaultActive {
                fault: f.spec.name.clone(),
                until,
            })));
        }
        if let Some(e) = error
            && self.watching()
        {
            let name = self.faults[idx].spec.name.clone();
            self.end(
                EndReason::InjectError(format!("fault `{name}`: {e}")),
                now.wall,
                out,
            );
        }
    }

    /// Starts faults whose turn has come, notices the end of the fault phase,
    /// once the run is ending rolls back in reverse dependency order, and
    /// finishes when nothing is left in effect or in flight.
    fn advance(&mut self, now: Now, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        if self.watching() {
            for i in 0..self.faults.len() {
                let ready = self.faults[i].status == Status::Waiting
                    && self.faults[i].spec.deps.iter().all(|&d| {
                        matches!(
                            self.faults[d].status,
                            Status::Active | Status::RollingBack | Status::Done
                        )
                    });
                if ready {
                    self.faults[i].status = Status::Injecting;
                    out.push(Command::StartInject { fault: i });
                }
            }
            let timed_left = self
                .faults
                .iter()
                .any(|f| f.spec.duration.is_some() && f.status != Status::Done);
            let starting = self
                .faults
                .iter()
                .any(|f| matches!(f.status, Status::Waiting | Status::Injecting));
            if !timed_left && !starting {
                self.ending = Some(EndReason::Completed);
                if self.faults.iter().any(|f| f.status == Status::Active) {
                    out.push(Command::Journal(Box::new(Event::Phase {
                        phase: Phase::Rollback,
                    })));
                }
            }
        }
        if !self.watching() {
            for f in &mut self.faults {
                if f.status == Status::Waiting {
                    f.status = Status::Done;
                }
            }
            for i in 0..self.faults.len() {
                let dependents_busy = self.faults.iter().any(|f| {
                    f.spec.deps.contains(&i)
                        && matches!(f.status, Status::Injecting | Status::Active | Status::RollingBack)
                });
                if self.faults[i].status == Status::Active && !dependents_busy {
                    self.rollback(i, now, out);
                }
            }
            let busy = self
                .faults
                .iter()
                .any(|f| matches!(f.status, Status::Injecting | Status::Active | Status::RollingBack));
            if !busy {
                self.finished = true;
                let window = self
                    .first_active
                    .map(|from| (from, self.last_rollback_start.unwrap_or(now.wall)));
                out.push(Command::Finish {
                    end: self.verdict(),
                    window,
                });
            }
        }
    }

    /// The run stops: journals why, and cancels the injections in progress
    /// (no new mutating call but rollbacks from here on).
    fn end(&mut self, reason: EndReason, seen_at: Timestamp, out: &mut Vec<Command>) {
        let text = match &reason {
            EndReason::Completed => return,
            EndReason::Breach(b) => format!("guardrail `{}` tripped: {}", b.guardrail, b.detail),
            EndReason::Halted(h) => h.describe(),
            EndReason::Signal(s) => format!("{s} received"),
            EndReason::MaxDuration => format!(
                "timing.max_duration ({}) reached",
                crate::util::format_duration(self.max_duration)
            ),
            EndReason::InjectError(e) => format!("injection failed: {e}"),
            EndReason::WatchError(e) => format!("guardrails cannot be checked: {e}"),
        };
        out.push(Command::Journal(Box::new(Event::Abort {
            reason: text,
            seen_at,
        })));
        out.push(Command::Journal(Box::new(Event::Phase {
            phase: Phase::Rollback,
        })));
        if self.faults.iter().any(|f| f.status == Status::Injecting) {
            out.push(Command::CancelInjects);
        }
        self.ending = Some(reason);
    }

    fn rollback(&mut self, idx: usize, now: Now, out: &mut Vec<Command>) {
        if !self.rollback_started {
            self.rollback_started = true;
            let trigger = match &self.ending {
                None => format!(
                    "fault `{}` reached the end of its duration",
                    self.faults[idx].spec.name
                ),
                Some(EndReason::Completed) => "the fault phase ended".to_string(),
                Some(_) => "abort".to_string(),
            };
            out.push(Command::Journal(Box::new(Event::RollbackStarted { trigger })));
        }
        self.last_rollback_start = Some(now.wall);
        let f = &mut self.faults[idx];
        f.status = Status::RollingBack;
        out.push(Command::StartRollback {
            fault: idx,
            applied: f.applied.clone(),
        });
    }

    fn verdict(&self) -> End {
        let unfinished: Vec<Undo> = self
            .faults
            .iter()
            .flat_map(|f| f.unfinished.iter().cloned())
            .collect();
        if !unfinished.is_empty() {
            let what: Vec<String> = unfinished.iter().map(Undo::describe).collect();
            return End {
                verdict: Verdict::Error,
                reason: format!(
                    "rollback incomplete, still to do: {}; finish it with `gameday recover` and this run's id",
                    what.join("; ")
                ),
                unfinished,
                refused: false,
            };
        }
        let (verdict, reason) = match &self.ending {
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
            Some(EndReason::Halted(h)) => (
                Verdict::Aborted,
                format!("{}; every fault was rolled back", h.describe()),
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
        End {
            verdict,
            reason,
            unfinished: Vec::new(),
            refused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The dispatcher driven by a fake executor: each test feeds the inputs a
    //! run would produce and checks the commands and the end. Time is an
    //! input, so nothing here waits or depends on the machine's speed.

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// A fake executor: feeds inputs at chosen times and keeps every command.
    struct Fake {
        d: Dispatcher,
        log: Vec<String>,
        end: Option<(End, Window)>,
    }

    impl Fake {
        fn new(faults: Vec<FaultSpec>, max_duration: Duration) -> (Fake, Vec<String>) {
            let mut f = Fake {
                d: Dispatcher::new(faults, max_duration),
                log: Vec::new(),
                end: None,
            };
            let cmds = f.d.start(at(0));
            let first = f.keep(cmds);
            (f, first)
        }

        /// Feeds `input` at `secs` seconds into the phase; returns the commands, as text.
        fn feed(&mut self, secs: u64, input: Input) -> Vec<String> {
            let cmds = self.d.handle(input, at(secs));
            self.keep(cmds)
        }

        fn keep(&mut self, cmds: Vec<Command>) -> Vec<String> {
            let mut out = Vec::new();
            for c in cmds {
                out.push(text(&c));
                if let Command::Finish { end, window } = c {
                    assert!(self.end.is_none(), "finished twice");
                    self.end = Some((end, window));
                }
            }
            self.log.extend(out.iter().cloned());
            out
        }

        fn end(&self) -> &End {
            &self.end.as_ref().expect("the phase finished").0
        }
    }

    fn at(secs: u64) -> Now {
        Now {
            wall: Timestamp::from_second(1_800_000_000 + secs as i64).expect("a timestamp"),
            elapsed: Duration::from_secs(secs),
        }
    }

    fn spec(name: &str, deps: &[usize], duration: Option<Duration>) -> FaultSpec {
        FaultSpec {
            name: name.into(),
            deps: deps.to_vec(),
            duration,
        }
    }

    /// A call the dispatcher only schedules: it is never made here.
    #[derive(Debug)]
    struct NeverCalled;

    impl crate::faults::Forward for NeverCalled {
        fn apply<'a>(
            &'a self,
            _: &'a crate::aws::Aws,
            _: &'a crate::faults::StepContext,
        ) -> crate::faults::BoxFuture<'a, Result<(), crate::aws::AwsError>> {
            unreachable!("the dispatcher makes no call")
        }
    }

    fn stop(id: &str) -> Call {
        Call {
            operation: "ec2:StopInstances".into(),
            resources: vec![id.into()],
            forward: std::sync::Arc::new(NeverCalled),
            undo: crate::faults::StartInstances {
                instance_ids: vec![id.into()],
            }
            .into(),
        }
    }

    fn intent(fault: usize, action_id: u64, id: &str) -> Input {
        Input::Intent {
            fault,
            action_id,
            step: stop(id),
        }
    }

    fn signal(name: &'static str, count: u32) -> Input {
        Input::Signal(Received { name, count })
    }

    fn done(fault: usize) -> Input {
        Input::InjectDone { fault, error: None }
    }

    fn rolled_back(fault: usize) -> Input {
        Input::RollbackDone {
            fault,
            unfinished: Vec::new(),
        }
    }

    /// A command as text: `inject 0`, `rollback 0 [3, 1]` (intent ids),
    /// `journal abort`, `finish interrupted`...
    fn text(c: &Command) -> String {
        match c {
            Command::StartInject { fault } => format!("inject {fault}"),
            Command::CancelInjects => "cancel injects".into(),
            Command::StartRollback { fault, applied } => {
                let ids: Vec<u64> = applied.iter().map(|(id, _)| *id).collect();
                format!("rollback {fault} {ids:?}")
            }
            Command::Hurry => "hurry".into(),
            Command::Journal(e) => {
                let v = serde_json::to_value(e).expect("an event serialises");
                format!("journal {}", v["event"].as_str().unwrap_or_default())
            }
            Command::Finish { end, .. } => format!("finish {}", end.verdict.as_str()),
        }
    }

    fn injects(log: &[String]) -> Vec<&String> {
        log.iter().filter(|c| c.starts_with("inject")).collect()
    }

    #[test]
    fn a_fault_is_injected_held_and_rolled_back_then_the_run_passes() {
        let (mut f, first) = Fake::new(vec![spec("stop", &[], Some(5 * MIN))], 30 * MIN);
        assert_eq!(first, ["inject 0"]);
        assert!(f.feed(1, intent(0, 1, "i-1")).is_empty());
        assert_eq!(f.feed(2, done(0)), ["journal fault_active"]);
        assert_eq!(f.d.next_fault_end(), Some(Duration::from_secs(2) + 5 * MIN));
        assert_eq!(
            f.feed(302, Input::FaultTimer),
            ["journal rollback_started", "rollback 0 [1]"]
        );
        assert_eq!(
            f.feed(303, rolled_back(0)),
            ["journal fault_rolled_back", "finish passed"]
        );
        let (_, window) = f.end.as_ref().expect("finished");
        assert_eq!(*window, Some((at(2).wall, at(302).wall)));
    }

    #[test]
    fn an_abort_during_a_batched_injection_sends_no_further_batch_and_rolls_back_what_was_applied() {
        // `stop` has three batches; `after` waits for it.
        let (mut f, _) = Fake::new(
            vec![spec("stop", &[], Some(5 * MIN)), spec("after", &[0], None)],
            30 * MIN,
        );
        f.feed(1, intent(0, 1, "i-1"));
        // The operator presses Ctrl-C while the first batch's call is in flight.
        assert_eq!(
            f.feed(2, signal("SIGINT", 1)),
            ["journal abort", "journal phase", "cancel injects"],
            "the injection is cancelled before its next batch, and nothing is rolled back \
             while its call is in flight"
        );
        // The cancelled task stops before its second batch.
        assert_eq!(
            f.feed(3, done(0)),
            [
                "journal fault_active",
                "journal rollback_started",
                "rollback 0 [1]"
            ],
            "exactly the applied batch is rolled back"
        );
        assert_eq!(
            f.feed(4, rolled_back(0)),
            ["journal fault_rolled_back", "finish interrupted"]
        );
        assert_eq!(
            injects(&f.log),
            ["inject 0"],
            "no injection starts after the abort"
        );
        assert_eq!(f.end().reason, "stopped by SIGINT; every fault was rolled back");
    }

    #[test]
    fn a_guardrail_breach_aborts_and_a_dependent_fault_never_starts() {
        let (mut f, _) = Fake::new(
            vec![spec("stop", &[], Some(5 * MIN)), spec("after", &[0], None)],
            30 * MIN,
        );
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(2, intent(0, 2, "i-2"));
        let breach = Breach {
            guardrail: "alarm `errors`".into(),
            detail: "ALARM".into(),
        };
        assert_eq!(
            f.feed(
                3,
                Input::Reading {
                    breach: Some(breach),
                    halt: None,
                    seen_at: at(3).wall
                }
            ),
            [
                "journal guardrail_breached",
                "journal abort",
                "journal phase",
                "cancel injects"
            ]
        );
        assert_eq!(
            f.feed(4, done(0)),
            [
                "journal fault_active",
                "journal rollback_started",
                "rollback 0 [1, 2]"
            ]
        );
        f.feed(5, rolled_back(0));
        assert_eq!(injects(&f.log), ["inject 0"]);
        assert_eq!(f.end().verdict, Verdict::Aborted);
    }

    #[test]
    fn a_halt_aborts_like_a_breach_wins_over_one_and_is_named_in_the_verdict() {
        let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(5 * MIN))], 30 * MIN);
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(2, done(0));
        let halt = Halt {
            reason: "incident 42".into(),
            by: "ops@desk".into(),
            at: at(2).wall,
            parameter: "/gameday/halt".into(),
        };
        let breach = Breach {
            guardrail: "alarm `errors`".into(),
            detail: "ALARM".into(),
        };
        assert_eq!(
            f.feed(
                3,
                Input::Reading {
                    breach: Some(breach),
                    halt: Some(halt),
                    seen_at: at(3).wall
                }
            ),
            [
                "journal halted",
                "journal abort",
                "journal phase",
                "journal rollback_started",
                "rollback 0 [1]"
            ]
        );
        f.feed(4, rolled_back(0));
        let end = f.end();
        assert_eq!(end.verdict, Verdict::Aborted);
        assert_eq!(
            end.reason,
            "halted by ops@desk (/gameday/halt): incident 42; every fault was rolled back"
        );
    }

    #[test]
    fn a_panicking_inject_task_has_its_applied_steps_rolled_back_and_the_run_ends_in_error() {
        let (mut f, _) = Fake::new(
            vec![spec("stop", &[], Some(5 * MIN)), spec("other", &[], None)],
            30 * MIN,
        );
        assert_eq!(injects(&f.log), ["inject 0", "inject 1"]);
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(1, intent(1, 2, "i-2"));
        f.feed(2, intent(0, 3, "i-3"));
        let cmds = f.feed(
            3,
            Input::Panicked {
                fault: 0,
                kind: TaskKind::Inject,
                message: "task 7 panicked with message \"boom\"".into(),
            },
        );
        assert_eq!(
            cmds,
            [
                "journal warning",
                "journal fault_active",
                "journal abort",
                "journal phase",
                "cancel injects",
                "journal rollback_started",
                "rollback 0 [1, 3]",
            ],
            "the panicked fault is rolled back from its journaled intents"
        );
        // `other` is rolled back once its cancelled task stops.
        assert_eq!(f.feed(4, done(1)), ["journal fault_active", "rollback 1 [2]"]);
        f.feed(5, rolled_back(0));
        assert!(f.end.is_none(), "a rollback is still running");
        f.feed(6, rolled_back(1));
        let end = f.end();
        assert_eq!(end.verdict, Verdict::Error);
        assert_eq!(
            end.reason,
            "injection failed: fault `stop`: the inject task panicked; every fault injected so far was rolled back"
        );
        assert!(end.unfinished.is_empty());
    }

    #[test]
    fn a_panicking_rollback_task_ends_the_run_in_error_naming_its_undos_for_recover() {
        let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(MIN))], 30 * MIN);
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(1, intent(0, 2, "i-2"));
        f.feed(2, done(0));
        assert_eq!(
            f.feed(62, Input::FaultTimer),
            ["journal rollback_started", "rollback 0 [1, 2]"]
        );
        let cmds = f.feed(
            63,
            Input::Panicked {
                fault: 0,
                kind: TaskKind::Rollback,
                message: "task 9 panicked".into(),
            },
        );
        assert_eq!(cmds, ["journal warning", "finish error"]);
        let end = f.end();
        assert_eq!(
            end.reason,
            "rollback incomplete, still to do: ec2:StartInstances i-2; ec2:StartInstances i-1; \
             finish it with `gameday recover` and this run's id"
        );
        assert_eq!(end.unfinished.len(), 2);
    }

    #[test]
    fn a_rollback_left_unfinished_ends_in_error_and_one_finished_later_passes() {
        // Retries happen inside the rollback step (see the engine's
        // `a_rollback_that_fails_then_succeeds_*` test); here, what the
        // dispatcher makes of each outcome.
        for (unfinished, verdict) in [
            (
                vec![Undo::from(crate::faults::StartInstances {
                    instance_ids: vec!["i-1".into()],
                })],
                Verdict::Error,
            ),
            (Vec::new(), Verdict::Passed),
        ] {
            let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(MIN))], 30 * MIN);
            f.feed(1, intent(0, 1, "i-1"));
            f.feed(2, done(0));
            f.feed(62, Input::FaultTimer);
            let left = !unfinished.is_empty();
            let cmds = f.feed(63, Input::RollbackDone { fault: 0, unfinished });
            assert_eq!(cmds.contains(&"journal fault_rolled_back".to_string()), !left);
            assert_eq!(f.end().verdict, verdict);
            assert_eq!(f.end().reason.contains("gameday recover"), left);
        }
    }

    #[test]
    fn ctrl_c_twice_hurries_but_every_rollback_still_runs_to_its_end() {
        let (mut f, _) = Fake::new(
            vec![spec("a", &[], Some(5 * MIN)), spec("b", &[0], Some(5 * MIN))],
            30 * MIN,
        );
        f.feed(1, intent(0, 1, "i-1"));
        assert_eq!(f.feed(2, done(0)), ["journal fault_active", "inject 1"]);
        f.feed(3, intent(1, 2, "i-2"));
        f.feed(4, done(1));
        assert_eq!(
            f.feed(10, signal("SIGINT", 1)),
            [
                "journal abort",
                "journal phase",
                "journal rollback_started",
                "rollback 1 [2]"
            ],
            "the dependent fault is rolled back first"
        );
        assert_eq!(f.feed(11, signal("SIGINT", 2)), ["hurry"]);
        assert_eq!(
            f.feed(12, rolled_back(1)),
            ["journal fault_rolled_back", "rollback 0 [1]"]
        );
        assert!(f.end.is_none(), "hurrying never skips a rollback");
        assert_eq!(f.feed(13, signal("SIGINT", 3)), ["hurry"]);
        f.feed(14, rolled_back(0));
        assert_eq!(f.end().verdict, Verdict::Interrupted);
        assert!(
            !f.log
                .iter()
                .any(|c| c.starts_with("inject") && c != "inject 0" && c != "inject 1")
        );
    }

    #[test]
    fn max_duration_aborts_and_rolls_back() {
        let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(60 * MIN))], 30 * MIN);
        assert_eq!(f.d.deadline(), Some(30 * MIN));
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(2, done(0));
        assert_eq!(
            f.feed(1800, Input::Deadline),
            [
                "journal abort",
                "journal phase",
                "journal rollback_started",
                "rollback 0 [1]"
            ]
        );
        assert_eq!(f.d.deadline(), None, "no deadline once rolling back");
        f.feed(1801, rolled_back(0));
        assert_eq!(f.end().verdict, Verdict::Aborted);
    }

    #[test]
    fn three_failed_guardrail_checks_in_a_row_stop_the_run() {
        let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(5 * MIN))], 30 * MIN);
        f.feed(1, intent(0, 1, "i-1"));
        f.feed(2, done(0));
        let failed = || Input::WatchFailed {
            error: "Throttling".into(),
        };
        assert_eq!(f.feed(3, failed()), ["journal warning"]);
        f.feed(
            4,
            Input::Reading {
                breach: None,
                halt: None,
                seen_at: at(4).wall,
            },
        );
        f.feed(5, failed());
        f.feed(6, failed());
        assert!(f.d.watching(), "a good reading reset the count");
        let cmds = f.feed(7, failed());
        assert_eq!(cmds[..2], ["journal warning", "journal abort"]);
        f.feed(8, rolled_back(0));
        assert_eq!(f.end().verdict, Verdict::Error);
    }

    #[test]
    fn a_failed_injection_ends_the_run_with_its_applied_steps_rolled_back() {
        let (mut f, _) = Fake::new(vec![spec("stop", &[], Some(5 * MIN))], 30 * MIN);
        f.feed(1, intent(0, 1, "i-1"));
        let cmds = f.feed(
            2,
            Input::InjectDone {
                fault: 0,
                error: Some("ec2 StopInstances: ServiceUnavailable".into()),
            },
        );
        assert_eq!(
            cmds,
            [
                "journal fault_active",
                "journal abort",
                "journal phase",
                "journal rollback_started",
                "rollback 0 [1]"
            ]
        );
        f.feed(3, rolled_back(0));
        assert_eq!(f.end().verdict, Verdict::Error);
    }
}
