//! Live progress: what an operator watching a run sees.
//!
//! On a terminal, a live status (indicatif) with events printed above it: the
//! current phase, a countdown for the baseline and recovery, each fault's time
//! left, each probe's latest value against its tolerance, and a loud red line
//! the moment a guardrail trips. Without a terminal (CI, cron, a pipe), plain
//! timestamped lines with no escape codes. Everything goes to stderr, so stdout
//! stays free for the final summary that scripts read; `--output json` puts
//! every event on stdout instead, one JSON object per line.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use jiff::Timestamp;

use crate::journal::{ActionKind, Entry, Event, Phase, ProbeRole};

/// How progress is shown.
#[derive(Debug)]
pub enum Progress {
    /// A live status on a terminal: phase, countdowns, each fault's time
    /// left, each probe's latest value against its tolerance.
    Terminal(Live),
    /// Timestamped lines.
    Plain,
    /// Nothing but errors.
    Quiet,
    /// Every journal event as one JSON object per line on stdout (for tools).
    Json,
}

/// The terminal display: a spinner whose status is redrawn from `state` on
/// every tick, so countdowns move between events.
#[derive(Debug)]
pub struct Live {
    bar: ProgressBar,
    state: Arc<Mutex<State>>,
}

/// What the live status shows, updated from the events.
#[derive(Debug, Default)]
struct State {
    phase: Option<Phase>,
    /// A countdown: what, and until when (the baseline, recovery).
    countdown: Option<(String, Timestamp)>,
    /// Active faults: name, when due to be rolled back, rolling back yet.
    faults: Vec<(String, Option<Timestamp>, bool)>,
    /// Probe name and what it checks (from the `probes` event).
    checks: Vec<(String, ProbeRole, String)>,
    /// Each probe's latest result: name, value or state, ok.
    latest: Vec<(String, String, bool)>,
    /// The runner's own status text (e.g. the dispatcher's).
    detail: String,
}

impl State {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Phase { phase } => {
                self.phase = Some(*phase);
                if !matches!(phase, Phase::Baseline | Phase::Recovery) {
                    self.countdown = None;
                }
                if matches!(phase, Phase::Teardown | Phase::Done) {
                    self.latest.clear(); // no longer watched: old values would mislead
                }
                self.detail.clear();
            }
            Event::FaultActive { fault, until } => self.faults.push((fault.clone(), *until, false)),
            Event::Intent {
                kind: ActionKind::Rollback,
                fault,
                ..
            } => {
                if let Some(f) = self.faults.iter_mut().find(|f| f.0 == *fault) {
                    f.2 = true;
                }
            }
            Event::FaultRolledBack { fault } => self.faults.retain(|f| f.0 != *fault),
            Event::Probes { probes } => {
                self.checks = probes
                    .iter()
                    .map(|p| (p.name.clone(), p.role, p.check.clone()))
                    .collect()
            }
            Event::Checked { results, .. } => {
                self.latest = results
                    .iter()
                    .map(|r| {
                        let shown = match (r.value, &r.state) {
                            (Some(v), _) => crate::report::num(v),
                            (None, Some(st)) => st.clone(),
                            (None, None) => "no data".to_string(),
                        };
                        (r.probe.clone(), shown, r.ok)
                    })
                    .collect()
            }
            _ => {}
        }
    }

    fn render(&self, now: Timestamp, w: &mut dyn std::fmt::Write) {
        let left = |until: Timestamp| {
            crate::yaml::format_duration(Duration::from_secs(
                until.duration_since(now).as_secs().max(0) as u64
            ))
        };
        let phase = match self.phase {
            None | Some(Phase::Preflight) => "preflight",
            Some(Phase::Baseline) => "baseline",
            Some(Phase::Inject) => "fault phase",
            Some(Phase::Rollback) => "rollback",
            Some(Phase::Recovery) => "recovery",
            Some(Phase::Teardown) => "teardown",
            Some(Phase::Done) => "done",
        };
        let _ = write!(w, "[{phase}]");
        if let Some((what, until)) = &self.countdown {
            let _ = write!(w, " {what}: {} left", left(*until));
        }
        for (name, until, rolling_back) in &self.faults {
            match (rolling_back, until) {
                (true, _) => {
                    let _ = write!(w, " | {name}: rolling back");
                }
                (false, Some(t)) => {
                    let _ = write!(w, " | {name}: {} left", left(*t));
                }
                (false, None) => {
                    let _ = write!(w, " | {name}: active");
                }
            }
        }
        if self.faults.is_empty() && !self.detail.is_empty() {
            let _ = write!(w, " | {}", self.detail);
        }
        for (name, shown, ok) in &self.latest {
            let check = self.checks.iter().find(|c| c.0 == *name);
            let role = if check.is_some_and(|c| c.1 == ProbeRole::Guardrail) {
                "guardrail "
            } else {
                ""
            };
            let tol = check.map(|c| format!(" [{}]", c.2)).unwrap_or_default();
            let _ = write!(
                w,
                "\n  {role}{name}: {shown}{tol} {}",
                if *ok { "ok" } else { "OUT OF TOLERANCE" }
            );
        }
    }
}

impl Progress {
    /// A live status when stderr is a terminal, plain lines otherwise.
    pub fn auto(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() && !ProgressDrawTarget::stderr().is_hidden() {
            // (indicatif draws nothing on a terminal it cannot drive, e.g. TERM=dumb:
            // then plain lines, or the events would vanish with the status.)
            let state = Arc::new(Mutex::new(State::default()));
            let shared = state.clone();
            let live = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .render(Timestamp::now(), w);
            };
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {live}")
                    .expect("a valid template")
                    .with_key("live", live),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress::Terminal(Live { bar, state })
        } else {
            Progress::Plain
        }
    }

    /// Prints one line above the status.
    pub fn line(&self, text: &str) {
        match self {
            Progress::Terminal(live) => live.bar.println(text),
            Progress::Plain => eprintln!("{} {text}", jiff::Timestamp::now().strftime("%H:%M:%SZ")),
            // Machines read the events; a warning still reaches a person.
            Progress::Json if text.starts_with("warning") => eprintln!("{text}"),
            Progress::Quiet | Progress::Json => {}
        }
    }

    /// Replaces the runner's part of the status (terminal only; plain output shows events only).
    pub fn status(&self, text: &str) {
        if let Progress::Terminal(live) = self {
            live.state.lock().unwrap_or_else(|p| p.into_inner()).detail = text.to_string();
        }
    }

    /// Shows a countdown in the status until the next phase (terminal only).
    pub fn countdown(&self, what: &str, until: Timestamp) {
        if let Progress::Terminal(live) = self {
            live.state.lock().unwrap_or_else(|p| p.into_inner()).countdown = Some((what.to_string(), until));
        }
    }

    /// Removes the status.
    pub fn finish(&self) {
        if let Progress::Terminal(live) = self {
            live.bar.finish_and_clear();
        }
    }

    /// Shows a journal event, if it is one an operator wants to see.
    pub fn event(&self, entry: &Entry) {
        match self {
            Progress::Json => {
                if let Ok(line) = serde_json::to_string(entry) {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Progress::Terminal(live) => {
                live.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .apply(&entry.event);
                if let Some(text) = render(&entry.event) {
                    // The moment a guardrail trips must not scroll by unnoticed.
                    let loud = matches!(entry.event, Event::GuardrailBreached { .. } | Event::Abort { .. });
                    live.bar.println(if loud {
                        format!("\x1b[1;31m{text}\x1b[0m")
                    } else {
                        text
                    });
                }
            }
            Progress::Plain | Progress::Quiet => {
                if let Some(text) = render(&entry.event) {
                    self.line(&text);
                }
            }
        }
    }
}

/// A list of resources, shortened for one line.
pub fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        s += &format!(" and {} more", items.len() - SHOWN);
    }
    s
}

/// Milliseconds as a short duration, e.g. `1.5s`.
pub fn ms_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        crate::yaml::format_duration(std::time::Duration::from_millis(ms))
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn render(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            run_id,
            experiment,
            mode,
            seed,
            region,
            endpoint,
            ..
        } => {
            let at = endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
            format!(
                "run {run_id}: experiment `{experiment}` ({}, region {region}{at}, seed {seed})",
                mode.as_str()
            )
        }
        Event::Phase { phase } => match phase {
            Phase::Preflight => "preflight: checking guardrails and resolving targets (read-only)".into(),
            Phase::Baseline => "baseline: the steady state must hold before anything is injected".into(),
            Phase::Inject => {
                "injecting faults; guardrails are watched until every fault is rolled back".into()
            }
            Phase::Rollback => "rolling back every active fault".into(),
            Phase::Recovery => "recovery: waiting for the steady state to return".into(),
            Phase::Teardown => "tearing down: deleting what the run created, releasing locks".into(),
            Phase::Done => return None,
        },
        Event::TargetsResolved {
            fault,
            action,
            resolved,
        } => {
            let chosen: Vec<&str> = resolved.selected.iter().map(|i| i.id.as_str()).collect();
            let mut s = format!(
                "fault `{fault}` ({action}): {} of {} eligible instances: {}",
                chosen.len(),
                resolved.matched,
                chosen.join(", ")
            );
            if !resolved.protected.is_empty() {
                s += &format!(
                    " ({} protected instance(s) never touched)",
                    resolved.protected.len()
                );
            }
            s
        }
        Event::Intent {
            kind: ActionKind::Inject,
            fault,
            operation,
            resources,
            ..
        } => format!("inject `{fault}`: {operation} {}", short_list(resources)),
        Event::Intent {
            kind: ActionKind::Rollback,
            fault,
            operation,
            resources,
            ..
        } if fault == crate::engine::ENVIRONMENT => {
            format!("teardown: {operation} {}", short_list(resources))
        }
        Event::Intent {
            kind: ActionKind::Rollback,
            fault,
            operation,
            resources,
            ..
        } => format!("rollback `{fault}`: {operation} {}", short_list(resources)),
        Event::Outcome {
            ok: false,
            error: Some(e),
            ..
        } => format!("  FAILED: {e}"),
        Event::Outcome { report: Some(r), .. } if !r.gone.is_empty() => format!(
            "  {} no longer exist (nothing to restore): {}",
            r.gone.len(),
            r.gone.join(", ")
        ),
        Event::FaultActive {
            fault,
            until: Some(t),
        } => format!("fault `{fault}` in effect until {}", t.strftime("%H:%M:%SZ")),
        Event::FaultActive { fault, until: None } => {
            format!("fault `{fault}` in effect until the fault phase ends")
        }
        Event::FaultRolledBack { fault } => format!("fault `{fault}` rolled back"),
        Event::GuardrailBreached {
            guardrail, detail, ..
        } => format!("GUARDRAIL TRIPPED: {guardrail}: {detail}"),
        Event::Abort { reason, .. } => format!("ABORT: {reason}; rolling back now"),
        Event::Signal { signal, count: 1 } => format!(
            "received {signal}: rolling back (send it again to skip waiting for instances; rollback calls always run)"
        ),
        Event::Signal { signal, .. } => {
            format!("received {signal} again: skipping waits; rollback calls still run")
        }
        Event::Warning { message } => format!("warning: {message}"),
        Event::GuardrailPreflight {
            guardrails,
            worst_case_abort_ms,
            max_abort_delay_ms,
        } => {
            let bad: Vec<String> = guardrails
                .iter()
                .filter(|g| !g.ok)
                .map(|g| format!("{}: {}", g.guardrail, g.detail))
                .collect();
            let worst = worst_case_abort_ms
                .map(|ms| format!("worst-case time to abort {}", ms_text(ms)))
                .unwrap_or_else(|| "worst-case time to abort unknown".into());
            let limit = max_abort_delay_ms
                .map(|ms| format!(" (limit {})", ms_text(ms)))
                .unwrap_or_default();
            if bad.is_empty() {
                format!("guardrails: {} can fire; {worst}{limit}", guardrails.len())
            } else {
                format!(
                    "guardrails: {} cannot protect this run: {}; {worst}{limit}",
                    bad.len(),
                    bad.join("; ")
                )
            }
        }
        Event::Deviation { probe, detail, .. } => format!("DEVIATION: {probe}: {detail}"),
        Event::BaselineMeasured {
            probe,
            value,
            written,
            resolved,
        } => format!("baseline of {probe}: {value:.4}; `{written}` is now `{resolved}`"),
        Event::AlarmChanged {
            alarm,
            from: Some(from),
            to,
            ..
        } => format!("alarm `{alarm}`: {from} -> {to}"),
        Event::Comparison {
            probe, detail, ok, ..
        } => format!(
            "{}{probe} versus control: {detail}",
            if *ok { "" } else { "DEVIATION: " }
        ),
        Event::Detection { probe, detail, .. } => format!("detection {probe}: {detail}"),
        Event::RecoveryResult { detail, .. } => format!("recovery: {detail}"),
        Event::Environment {
            group: Some(g),
            source: Some(src),
            instances,
            ..
        } => {
            format!(
                "parallel environment ready: `{g}`, a copy of `{src}` with {} healthy instances; faults go here only",
                instances.len()
            )
        }
        Event::Intent {
            kind: ActionKind::Setup,
            operation,
            resources,
            ..
        } => format!("setup: {operation} {}", short_list(resources)),
        Event::SafetyGate {
            plan_hash,
            admitted: true,
            rules,
        } => format!("safety policy: {} rule(s) passed (plan {plan_hash})", rules.len()),
        Event::SafetyGate {
            plan_hash,
            admitted: false,
            rules,
        } => {
            format!(
                "safety policy: REFUSED, {} of {} rule(s) failed (plan {plan_hash})",
                rules.iter().filter(|r| !r.passed).count(),
                rules.len()
            )
        }
        _ => return None,
    })
}
