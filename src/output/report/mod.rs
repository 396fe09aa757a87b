//! Reports: what a run found, for people (HTML, Markdown) and for CI (JUnit).
//!
//! Every report is rendered from the journal alone (`journal.json`), with no
//! clock and no AWS call, so `gameday report` regenerates byte-for-byte the
//! files the runner wrote. This module derives what every format shows (the
//! verdict in words, the timeline, each probe's outcome, the fault windows);
//! `html`, `markdown` and `junit` lay it out, `svg` draws the metric charts
//! and `timeline` the chart of the whole run.

pub mod html;
pub mod junit;
pub mod markdown;
pub mod svg;
pub mod timeline;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::summary::{self, SeriesRecord, Summary};
use super::text::{self, Voice, phase_name};
use crate::journal::{ActionKind, Entry, Event, JournalError, ProbeInfo, ProbeRole, SeriesOf, Verdict};
use crate::model::Owner;
use crate::util::ms_text;

/// File name of the HTML report inside a run folder.
pub const HTML_FILE: &str = "report.html";
/// File name of the Markdown report inside a run folder.
pub const MARKDOWN_FILE: &str = "report.md";
/// File name of the JUnit report inside a run folder.
pub const JUNIT_FILE: &str = "junit.xml";

/// Why reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A report file could not be written.
    #[error("cannot write the report {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads the journal at `path` (a `journal.json` or its run folder) and writes
/// the three reports beside it. Returns their paths.
pub fn regenerate(path: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let summary = summary::load(path)?;
    write_all(&dir, &summary)
}

/// Writes `report.html`, `report.md` and `junit.xml` into `dir`.
pub fn write_all(dir: &Path, summary: &Summary) -> Result<Vec<PathBuf>, ReportError> {
    let run = Run::new(summary);
    let mut out = Vec::new();
    for (name, text) in [
        (HTML_FILE, html::render(&run)),
        (MARKDOWN_FILE, markdown::render(&run)),
        (JUNIT_FILE, junit::render(&run)),
    ] {
        let path = dir.join(name);
        crate::util::write_replacing(&path, text.as_bytes()).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// The verdict in plain words: what it means for the team.
pub fn verdict_words(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Passed) => "Passed: the hypothesis held, and every fault was rolled back.",
        Some(Verdict::Failed) => {
            "Failed: the hypothesis did not hold. The system did not behave as the experiment claims."
        }
        Some(Verdict::Aborted) => {
            "Aborted: a guardrail tripped (or the run reached its maximum duration), so the run stopped early and rolled everything back."
        }
        Some(Verdict::NotRun) => "Not run: a precondition did not hold, so nothing was injected.",
        Some(Verdict::Error) => {
            "Error: the runner could not do its job. Read the reason: if it lists anything left, run `gameday recover`."
        }
        Some(Verdict::Interrupted) => {
            "Interrupted: an operator stopped the run, and everything was rolled back."
        }
        None => {
            "Unfinished: the runner stopped before recording a verdict. Run `gameday recover` for this run."
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// When it happened.
    pub at: Timestamp,
    /// Since the run began (ms; negative for an activity that began earlier).
    pub offset_ms: i64,
    /// A short category: phase, inject, rollback, setup, teardown, outcome,
    /// guardrail, abort, deviation, alarm, scaling, probe, safety, signal, warning, verdict.
    pub kind: &'static str,
    /// In words.
    pub text: String,
    /// Whether a reader should look here first (a breach, an abort, a failure).
    pub alert: bool,
}

/// How a probe fared over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The probe as declared.
    pub info: ProbeInfo,
    /// Whether it counts against the run: a guardrail that tripped, a
    /// steady-state or detection probe that the verdict's reason names.
    pub failed: bool,
    /// Why it failed, or how it held, in words.
    pub detail: String,
    /// Ticks it was checked at.
    pub checks: usize,
    /// Ticks it was out of tolerance at.
    pub out_of_tolerance: usize,
    /// The latest value it was read at, if any.
    pub last_value: Option<f64>,
}

/// A fault's window: from its taking effect to the start of its rollback.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The fault.
    pub fault: String,
    /// When it took effect.
    pub from: Timestamp,
    /// When its rollback began (the end of the run if it never did).
    pub to: Timestamp,
}

/// Everything the reports show, derived once from the journal.
#[derive(Debug)]
pub struct Run<'a> {
    /// The journal.
    pub s: &'a Summary,
    /// Every event a reader wants to see, in time order.
    pub timeline: Vec<Item>,
    /// Every probe's outcome, in the experiment's order.
    pub probes: Vec<ProbeOutcome>,
    /// Each fault's window.
    pub windows: Vec<Window>,
    /// When the run ended (its verdict, else its last event).
    pub ended_at: Timestamp,
}

impl<'a> Run<'a> {
    /// Derives the reports' content from a journal.
    pub fn new(s: &'a Summary) -> Run<'a> {
        let ended_at = s
            .finished_at
            .or_else(|| s.events.last().map(|e| e.at))
            .unwrap_or(s.started_at);
        Run {
            s,
            timeline: timeline(s),
            probes: probes(s),
            windows: windows(s, ended_at),
            ended_at,
        }
    }

    /// The run's length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.ended_at.duration_since(self.s.started_at).as_millis().max(0) as u64
    }

    /// A series of a probe.
    pub fn series(&self, probe: &str, of: SeriesOf) -> Option<&SeriesRecord> {
        self.s.series.iter().find(|r| r.probe == probe && r.of == of)
    }

    /// The verdict's spelling, `unfinished` without one.
    pub fn verdict(&self) -> &'static str {
        self.s.verdict.map(Verdict::as_str).unwrap_or("unfinished")
    }
}

/// `+12.3s`, `-0.5s`.
pub fn offset_text(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "+" };
    format!("{sign}{:.1}s", ms.unsigned_abs() as f64 / 1000.0)
}

/// A short latency for people: `240 ms` under a second, else as [`ms_text`].
pub fn latency_text(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        other => ms_or_dash(other),
    }
}

/// Milliseconds for people, or `-`.
pub fn ms_or_dash(ms: Option<u64>) -> String {
    ms.map(ms_text).unwrap_or_else(|| "-".to_string())
}

fn timeline(s: &Summary) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    let mut operations = HashMap::new();
    for e in &s.events {
        if let Some((kind, text, alert)) = describe(e, &mut operations) {
            items.push(Item {
                at: e.at,
                offset_ms: 0,
                kind,
                text,
                alert,
            });
        }
    }
    for a in &s.scaling_activities {
        let Some(at) = a.started_at else { continue };
        let cause = if a.cause.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.cause)
        };
        items.push(Item {
            at,
            offset_ms: 0,
            kind: "scaling",
            text: format!(
                "Auto Scaling `{}`: {} [{}]{cause}",
                a.group, a.description, a.status
            ),
            alert: false,
        });
    }
    // Stable: events keep their journal order among equal times.
    items.sort_by_key(|i| i.at);
    for i in &mut items {
        i.offset_ms = i.at.duration_since(s.started_at).as_millis() as i64;
    }
    items
}

/// One event as a timeline line (category, words, alert); `None` for the
/// bulk ones (checks, series). `operations` remembers each intent's
/// operation, which its outcome's line names.
fn describe(e: &Entry, operations: &mut HashMap<u64, String>) -> Option<(&'static str, String, bool)> {
    let mut operation = "";
    match &e.event {
        Event::Intent {
            action_id,
            operation: op,
            ..
        } => {
            operations.insert(*action_id, op.clone());
        }
        Event::Outcome { action_id, .. } => {
            operation = operations.get(action_id).map(String::as_str).unwrap_or_default();
        }
        _ => {}
    }
    let text = text::describe(&e.event, Voice::Timeline { operation })?;
    let (kind, alert) = category(&e.event);
    Some((kind, text, alert))
}

/// An event's category on the timeline, and whether a reader should look
/// there first.
fn category(event: &Event) -> (&'static str, bool) {
    match event {
        Event::RunStarted { .. } | Event::Phase { .. } | Event::Recovery { .. } => ("phase", false),
        Event::SafetyGate { admitted, .. } => ("safety", !admitted),
        Event::GuardrailPreflight { guardrails, .. } => ("guardrail", guardrails.iter().any(|g| !g.ok)),
        Event::TargetsResolved { .. } => ("targets", false),
        Event::Environment { .. } | Event::Connected { .. } => ("setup", false),
        Event::Intent { fault, kind, .. } => match (kind, Owner::of(fault)) {
            (ActionKind::Setup, _) => ("setup", false),
            (ActionKind::Inject, _) => ("inject", false),
            (ActionKind::Rollback, Owner::Environment) => ("teardown", false),
            (ActionKind::Rollback, Owner::Fault(_)) => ("rollback", false),
        },
        Event::Outcome { ok, .. } => ("outcome", !ok),
        Event::FaultActive { .. } => ("inject", false),
        Event::FaultRolledBack { .. } | Event::RollbackStarted { .. } => ("rollback", false),
        Event::GuardrailBreached { .. } => ("guardrail", true),
        Event::Abort { .. } | Event::Halted { .. } => ("abort", true),
        Event::Deviation { .. } => ("deviation", true),
        Event::BaselineMeasured { .. } | Event::ProbeDataBack { .. } | Event::ProbeNotJudged { .. } => {
            ("probe", false)
        }
        Event::ProbeSilent { .. } => ("probe", true),
        Event::AlarmChanged { to, .. } => ("alarm", to == "ALARM"),
        Event::Comparison { ok, .. } | Event::Detection { ok, .. } => ("probe", !ok),
        Event::RecoveryResult { recovered, .. } => ("probe", !recovered),
        Event::Signal { .. } => ("signal", true),
        Event::Warning { .. } => ("warning", false),
        Event::Verdict { verdict, .. } => ("verdict", *verdict != Verdict::Passed),
        _ => ("event", false),
    }
}

/// The probes of the run: from its `probes` event, else (a run that ended
/// before observing) the guardrails its preflight checked.
fn probes(s: &Summary) -> Vec<ProbeOutcome> {
    let mut infos = s.probes.clone();
    if infos.is_empty() {
        for e in &s.events {
            if let Event::GuardrailPreflight { guardrails, .. } = &e.event {
                infos = guardrails
                    .iter()
                    .map(|g| ProbeInfo {
                        name: g.guardrail.clone(),
                        role: ProbeRole::Guardrail,
                        kind: "alarm".into(),
                        check: g.detail.clone(),
                        limits: Vec::new(),
                        control: false,
                    })
                    .collect();
            }
        }
    }
    let reason = s.reason.clone().unwrap_or_default();
    let judged = matches!(s.verdict, Some(Verdict::Failed | Verdict::Aborted));
    infos
        .into_iter()
        .map(|info| {
            let mut checks = 0;
            let mut out = 0;
            let mut last_value = None;
            let mut last_bad = None;
            for e in &s.events {
                if let Event::Checked { results, .. } = &e.event {
                    for r in results.iter().filter(|r| r.probe == info.name) {
                        checks += 1;
                        if !r.ok {
                            out += 1;
                            last_bad = Some(r.detail.clone());
                        }
                        last_value = r.value.or(last_value);
                    }
                }
            }
            let breach = s.events.iter().find_map(|e| match &e.event {
                Event::GuardrailBreached {
                    guardrail, detail, ..
                } if *guardrail == info.name => Some(detail.clone()),
                _ => None,
            });
            let named = judged && reason.contains(&format!("`{}`", info.name));
            let (failed, detail) = match (info.role, breach) {
                (ProbeRole::Guardrail, Some(d)) => (true, format!("tripped: {d}")),
                (ProbeRole::Guardrail, None) if named => (true, "tripped".to_string()),
                (ProbeRole::Guardrail, None) => (false, "never tripped".to_string()),
                (_, _) if named => (
                    true,
                    probe_failure(s, &info.name)
                        .or(last_bad)
                        .unwrap_or_else(|| "named in the verdict's reason".to_string()),
                ),
                (_, _) if out > 0 => (
                    false,
                    format!("held where it had to (out of tolerance at {out} of {checks} checks, allowed)"),
                ),
                (_, _) if checks == 0 => (false, "not checked".to_string()),
                (_, _) => (false, format!("held at every one of {checks} checks")),
            };
            let detail = match silences(s, &info.name) {
                Some(gaps) => format!("{detail}; {gaps}"),
                None => detail,
            };
            ProbeOutcome {
                info,
                failed,
                detail,
                checks,
                out_of_tolerance: out,
                last_value,
            }
        })
        .collect()
}

/// A probe's gaps in its data, in words (`went silent twice, the longest
/// gap 6s`), from its `probe_silent` and `probe_data_back` events; `None`
/// when it never went silent.
fn silences(s: &Summary, probe: &str) -> Option<String> {
    let (mut count, mut longest, mut open) = (0, 0, None);
    for e in &s.events {
        match &e.event {
            Event::ProbeSilent { probe: p, .. } if p == probe => {
                count += 1;
                open = Some(e.at);
            }
            Event::ProbeDataBack { probe: p, gap_ms } if p == probe => {
                longest = longest.max(*gap_ms);
                open = None;
            }
            _ => {}
        }
    }
    if count == 0 {
        return None;
    }
    let times = match count {
        1 => "once".to_string(),
        2 => "twice".to_string(),
        n => format!("{n} times"),
    };
    let mut out = format!("went silent {times}");
    if longest > 0 {
        out += &format!(", the longest gap {}", ms_text(longest / 100 * 100));
    }
    if let Some(at) = open {
        out += &format!("; no data since it went silent at {}", at.strftime("%H:%M:%SZ"));
    }
    Some(out)
}

/// What the journal says against a probe: its detection or comparison
/// result, else its first deviation.
fn probe_failure(s: &Summary, probe: &str) -> Option<String> {
    let mut deviation = None;
    for e in &s.events {
        match &e.event {
            Event::Detection {
                probe: p,
                ok: false,
                detail,
                ..
            } if p == probe => return Some(detail.clone()),
            Event::Comparison {
                probe: p,
                ok: false,
                judged: true,
                detail,
                ..
            } if p == probe => return Some(format!("against the control: {detail}")),
            Event::Deviation {
                probe: p,
                detail,
                phase,
                ..
            } if p == probe && deviation.is_none() => {
                deviation = Some(format!("{detail} ({})", phase_name(*phase)))
            }
            _ => {}
        }
    }
    deviation
}

fn windows(s: &Summary, ended_at: Timestamp) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for e in &s.events {
        match &e.event {
            Event::FaultActive { fault, .. } => out.push(Window {
                fault: fault.clone(),
                from: e.at,
                to: ended_at,
            }),
            Event::Intent {
                fault,
                kind: ActionKind::Rollback,
                ..
            } => {
                if let Some(w) = out
                    .iter_mut()
                    .rev()
                    .find(|w| w.fault == *fault && w.to == ended_at)
                {
                    w.to = e.at;
                }
            }
            _ => {}
        }
    }
    out
}

/// The role of a probe, for people.
pub fn role_name(r: ProbeRole) -> &'static str {
    match r {
        ProbeRole::SteadyState => "steady state",
        ProbeRole::Detection => "detection",
        ProbeRole::Guardrail => "guardrail",
    }
}

/// Escapes text for HTML and XML alike (content and quoted attributes):
/// `&`, `<`, `>`, both quotes, and the control characters XML 1.0 forbids
/// (replaced by a space). Every value from an experiment file or from AWS
/// goes through it.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::value_text;

    #[test]
    fn numbers_and_offsets_read_well() {
        assert_eq!(value_text(3.0), "3");
        assert_eq!(value_text(2.5), "2.5");
        assert_eq!(value_text(1.23456), "1.235");
        assert_eq!(offset_text(1234), "+1.2s");
        assert_eq!(offset_text(-500), "-0.5s");
    }

    #[test]
    fn markup_escaping_is_safe_in_html_and_xml() {
        assert_eq!(
            escape_markup("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(
            escape_markup("a\u{1}b\tc\nd"),
            "a b\tc\nd",
            "XML 1.0 forbids most control characters"
        );
    }
}
