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

use super::text::{self, Voice, phase_name};
use crate::engine::Reporter;
use crate::journal::{ActionKind, Entry, Event, Phase, ProbeRole};
use crate::util::{format_duration, value_text};

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
                            (Some(v), _) => value_text(v),
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
            format_duration(Duration::from_secs(
                until.duration_since(now).as_secs().max(0) as u64
            ))
        };
        let phase = phase_name(self.phase.unwrap_or(Phase::Preflight));
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
}

impl Reporter for Progress {
    /// Prints one line above the status.
    fn line(&self, text: &str) {
        match self {
            Progress::Terminal(live) => live.bar.println(text),
            Progress::Plain => eprintln!("{} {text}", jiff::Timestamp::now().strftime("%H:%M:%SZ")),
            // Machines read the events; a warning still reaches a person.
            Progress::Json if text.starts_with("warning") => eprintln!("{text}"),
            Progress::Quiet | Progress::Json => {}
        }
    }

    /// Replaces the runner's part of the status (terminal only; plain output shows events only).
    fn status(&self, text: &str) {
        if let Progress::Terminal(live) = self {
            live.state.lock().unwrap_or_else(|p| p.into_inner()).detail = text.to_string();
        }
    }

    /// Shows a countdown in the status until the next phase (terminal only).
    fn countdown(&self, what: &str, until: Timestamp) {
        if let Progress::Terminal(live) = self {
            live.state.lock().unwrap_or_else(|p| p.into_inner()).countdown = Some((what.to_string(), until));
        }
    }

    /// Removes the status.
    fn finish(&self) {
        if let Progress::Terminal(live) = self {
            live.bar.finish_and_clear();
        }
    }

    /// Shows a journal event, if it is one an operator wants to see.
    fn event(&self, entry: &Entry) {
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
                if let Some(text) = text::describe(&entry.event, Voice::Live) {
                    // The moment a guardrail trips must not scroll by unnoticed.
                    let loud = matches!(
                        entry.event,
                        Event::GuardrailBreached { .. } | Event::Abort { .. } | Event::Halted { .. }
                    );
                    live.bar.println(if loud {
                        format!("\x1b[1;31m{text}\x1b[0m")
                    } else {
                        text
                    });
                }
            }
            Progress::Plain | Progress::Quiet => {
                if let Some(text) = text::describe(&entry.event, Voice::Live) {
                    self.line(&text);
                }
            }
        }
    }
}
