//! Live progress: what an operator watching a run sees.
//!
//! On a terminal, a spinner line with the current status and events printed
//! above it (indicatif). Without a terminal (CI, cron, a pipe), plain
//! timestamped lines with no escape codes. Everything goes to stderr, so stdout
//! stays free for the final summary that scripts read.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::journal::{ActionKind, Entry, Event, Phase};

/// How progress is shown.
#[derive(Debug)]
pub enum Progress {
    /// A spinner on a terminal.
    Terminal(ProgressBar),
    /// Timestamped lines.
    Plain,
    /// Nothing but errors.
    Quiet,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub fn auto(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            pb.enable_steady_tick(Duration::from_millis(120));
            Progress::Terminal(pb)
        } else {
            Progress::Plain
        }
    }

    /// Prints one line above the status.
    pub fn line(&self, text: &str) {
        match self {
            Progress::Terminal(pb) => pb.println(text),
            Progress::Plain => eprintln!("{} {text}", jiff::Timestamp::now().strftime("%H:%M:%SZ")),
            Progress::Quiet => {}
        }
    }

    /// Replaces the status line (terminal only; plain output shows events only).
    pub fn status(&self, text: &str) {
        if let Progress::Terminal(pb) = self {
            pb.set_message(text.to_string());
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Progress::Terminal(pb) = self {
            pb.finish_and_clear();
        }
    }

    /// Shows a journal event, if it is one an operator wants to see.
    pub fn event(&self, entry: &Entry) {
        if let Some(text) = render(&entry.event) {
            self.line(&text);
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
    if ms.is_multiple_of(1000) { crate::yaml::format_duration(std::time::Duration::from_millis(ms)) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

fn render(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { run_id, experiment, mode, seed, region, endpoint, .. } => {
            let at = endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
            format!("run {run_id}: experiment `{experiment}` ({}, region {region}{at}, seed {seed})", mode.as_str())
        }
        Event::Phase { phase } => match phase {
            Phase::Preflight => "preflight: checking guardrails and resolving targets (read-only)".into(),
            Phase::Baseline => "baseline: the steady state must hold before anything is injected".into(),
            Phase::Inject => "injecting faults; guardrails are watched until every fault is rolled back".into(),
            Phase::Rollback => "rolling back every active fault".into(),
            Phase::Recovery => "recovery: waiting for the steady state to return".into(),
            Phase::Teardown => "tearing down: deleting what the run created, releasing locks".into(),
            Phase::Done => return None,
        },
        Event::TargetsResolved { fault, action, resolved } => {
            let chosen: Vec<&str> = resolved.selected.iter().map(|i| i.id.as_str()).collect();
            let mut s = format!("fault `{fault}` ({action}): {} of {} eligible instances: {}", chosen.len(), resolved.matched, chosen.join(", "));
            if !resolved.protected.is_empty() {
                s += &format!(" ({} protected instance(s) never touched)", resolved.protected.len());
            }
            s
        }
        Event::Intent { kind: ActionKind::Inject, fault, operation, resources, .. } => format!("inject `{fault}`: {operation} {}", short_list(resources)),
        Event::Intent { kind: ActionKind::Rollback, fault, operation, resources, .. } if fault == crate::runner::ENVIRONMENT => {
            format!("teardown: {operation} {}", short_list(resources))
        }
        Event::Intent { kind: ActionKind::Rollback, fault, operation, resources, .. } => format!("rollback `{fault}`: {operation} {}", short_list(resources)),
        Event::Outcome { ok: false, error: Some(e), .. } => format!("  FAILED: {e}"),
        Event::Outcome { report: Some(r), .. } if !r.gone.is_empty() => format!("  {} no longer exist (nothing to restore): {}", r.gone.len(), r.gone.join(", ")),
        Event::FaultActive { fault, until: Some(t) } => format!("fault `{fault}` in effect until {}", t.strftime("%H:%M:%SZ")),
        Event::FaultActive { fault, until: None } => format!("fault `{fault}` in effect until the fault phase ends"),
        Event::FaultRolledBack { fault } => format!("fault `{fault}` rolled back"),
        Event::GuardrailBreached { guardrail, detail, .. } => format!("GUARDRAIL TRIPPED: {guardrail}: {detail}"),
        Event::Abort { reason, .. } => format!("ABORT: {reason}; rolling back now"),
        Event::Signal { signal, count: 1 } => format!("received {signal}: rolling back (send it again to skip waiting for instances; rollback calls always run)"),
        Event::Signal { signal, .. } => format!("received {signal} again: skipping waits; rollback calls still run"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::GuardrailPreflight { guardrails, worst_case_abort_ms, max_abort_delay_ms } => {
            let bad: Vec<String> = guardrails.iter().filter(|g| !g.ok).map(|g| format!("{}: {}", g.guardrail, g.detail)).collect();
            let worst = worst_case_abort_ms.map(|ms| format!("worst-case time to abort {}", ms_text(ms))).unwrap_or_else(|| "worst-case time to abort unknown".into());
            let limit = max_abort_delay_ms.map(|ms| format!(" (limit {})", ms_text(ms))).unwrap_or_default();
            if bad.is_empty() {
                format!("guardrails: {} can fire; {worst}{limit}", guardrails.len())
            } else {
                format!("guardrails: {} cannot protect this run: {}; {worst}{limit}", bad.len(), bad.join("; "))
            }
        }
        Event::Deviation { probe, detail, .. } => format!("DEVIATION: {probe}: {detail}"),
        Event::BaselineMeasured { probe, value, written, resolved } => format!("baseline of {probe}: {value:.4}; `{written}` is now `{resolved}`"),
        Event::AlarmChanged { alarm, from: Some(from), to, .. } => format!("alarm `{alarm}`: {from} -> {to}"),
        Event::Comparison { probe, detail, ok, .. } => format!("{}{probe} versus control: {detail}", if *ok { "" } else { "DEVIATION: " }),
        Event::Detection { probe, detail, .. } => format!("detection {probe}: {detail}"),
        Event::RecoveryResult { detail, .. } => format!("recovery: {detail}"),
        Event::Environment { group: Some(g), source: Some(src), instances, .. } => {
            format!("parallel environment ready: `{g}`, a copy of `{src}` with {} healthy instances; faults go here only", instances.len())
        }
        Event::Intent { kind: ActionKind::Setup, operation, resources, .. } => format!("setup: {operation} {}", short_list(resources)),
        Event::SafetyGate { plan_hash, admitted: true, rules } => format!("safety policy: {} rule(s) passed (plan {plan_hash})", rules.len()),
        Event::SafetyGate { plan_hash, admitted: false, rules } => {
            format!("safety policy: REFUSED, {} of {} rule(s) failed (plan {plan_hash})", rules.iter().filter(|r| !r.passed).count(), rules.len())
        }
        _ => return None,
    })
}
