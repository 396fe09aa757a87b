//! `report.html`: one self-contained page (no script, no external font,
//! style sheet or image) with the hypothesis, the verdict in plain words,
//! the run's facts, a timeline chart (phases, fault windows, guardrail and
//! alarm states, healthy capacity), every probe's outcome, a chart per
//! metric probe and the timeline. Every value from the experiment or from AWS is HTML-escaped.

use std::fmt::Write;

use super::svg::{self, Chart};
use super::{Run, ms_or_dash, role_name, verdict_words};
use crate::journal::{ProbeRole, SeriesOf, Verdict};
use crate::util::{ms_text, value_text};

/// Escapes text for markup: see [`super::escape_markup`].
pub use super::escape_markup as esc;

/// The style sheet of every gameday page (the scorecard uses it too).
pub const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #1d1d1f; background: #f6f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 8px; }
h2 { font-size: 1.2em; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1em; margin: 18px 0 4px; }
code { font-family: ui-monospace, 'SFMono-Regular', Menlo, monospace; font-size: 0.92em; }
.verdict { display: flex; gap: 14px; align-items: center; padding: 14px 16px; border-radius: 8px; margin: 12px 0; }
.verdict .badge { font-weight: 700; font-size: 1.1em; padding: 6px 12px; border-radius: 6px; color: #fff; text-transform: uppercase; letter-spacing: 0.04em; }
.verdict p { margin: 0; }
.passed { background: #e7f6ec; } .passed .badge { background: #1e8e3e; }
.failed, .aborted { background: #fdecea; } .failed .badge, .aborted .badge { background: #c5221f; }
.not-run, .interrupted, .unfinished { background: #fef7e0; } .not-run .badge, .interrupted .badge, .unfinished .badge { background: #b06000; }
.error { background: #fdecea; } .error .badge { background: #7b1fa2; }
.reason { color: #444; margin: 4px 0 0; }
blockquote { margin: 8px 0; padding: 8px 14px; border-left: 4px solid #1f5fbf; background: #f1f5fc; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #fafafa; }
table.facts th { width: 170px; }
tr.alert td { background: #fff3f2; font-weight: 600; }
.ok { color: #1e8e3e; font-weight: 600; } .bad { color: #c5221f; font-weight: 600; }
figure { margin: 8px 0 18px; } figcaption { color: #555; font-size: 0.9em; margin-bottom: 4px; }
svg.chart { max-width: 100%; height: auto; border: 1px solid #eee; }
p.legend { color: #555; font-size: 0.85em; margin: 4px 0 0; }
footer { color: #777; font-size: 0.85em; margin-top: 32px; }
";

/// The start of a self-contained page, up to its open `<main>`: the head
/// with `title` (already escaped) and the `styles` inlined. Shared by the
/// report, the suite scorecard and the catalog.
pub fn page_start(title: &str, styles: &[&str]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "<!DOCTYPE html>");
    let _ = writeln!(o, "<html lang=\"en\">");
    let _ = writeln!(o, "<head>");
    let _ = writeln!(o, "<meta charset=\"utf-8\">");
    let _ = writeln!(
        o,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    let _ = writeln!(o, "<title>{title}</title>");
    let _ = writeln!(o, "<style>{}</style>", styles.concat());
    let _ = writeln!(o, "</head>");
    let _ = writeln!(o, "<body>");
    let _ = writeln!(o, "<main>");
    o
}

/// Renders the HTML report.
pub fn render(run: &Run) -> String {
    let s = run.s;
    let verdict = run.verdict();
    let mut o = page_start(&format!("Game day {}: {verdict}", esc(&s.experiment)), &[STYLE]);
    let _ = writeln!(o, "<h1>Game day <code>{}</code></h1>", esc(&s.experiment));
    let _ = writeln!(o, "<section id=\"verdict\" class=\"verdict {verdict}\">");
    let _ = writeln!(o, "<span class=\"badge\">{verdict}</span>");
    let _ = writeln!(
        o,
        "<div><p><strong>{}</strong></p>",
        esc(verdict_words(s.verdict))
    );
    if let Some(r) = &s.reason {
        let _ = writeln!(o, "<p class=\"reason\">{}</p>", esc(r));
    }
    let _ = writeln!(o, "</div>");
    let _ = writeln!(o, "</section>");

    let _ = writeln!(o, "<h2>Hypothesis</h2>");
    let _ = writeln!(
        o,
        "<blockquote id=\"hypothesis\">{}</blockquote>",
        esc(s.hypothesis.trim())
    );

    let _ = writeln!(o, "<h2>Run</h2>");
    let _ = writeln!(o, "<table class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = writeln!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    fact("run", format!("<code>{}</code>", esc(&s.run_id)));
    fact(
        "started",
        esc(&s.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string()),
    );
    fact("duration", ms_text(run.duration_ms()));
    fact(
        "experiment file",
        format!(
            "<code>{}</code> (sha256 <code>{}</code>)",
            esc(&s.file.display().to_string()),
            esc(&s.file_sha256)
        ),
    );
    let policy = s
        .policy_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in default".into());
    fact(
        "safety policy",
        format!("{} (sha256 <code>{}</code>)", esc(&policy), esc(&s.policy_sha256)),
    );
    fact(
        "seed",
        format!(
            "<code>{}</code> (replay with <code>--seed {}</code>)",
            s.seed, s.seed
        ),
    );
    fact("region", esc(&s.region));
    if let Some(env) = &s.environment {
        let what = match (&env.group, &env.source) {
            (Some(g), Some(src)) => format!(
                "{}: <code>{}</code>, a copy of <code>{}</code> ({} instance(s))",
                env.mode.as_str(),
                esc(g),
                esc(src),
                env.instances.len()
            ),
            (Some(g), None) => format!("{}: <code>{}</code>", env.mode.as_str(), esc(g)),
            _ => env.mode.as_str().to_string(),
        };
        fact("environment", what);
    } else if let Some(m) = s.mode {
        fact("environment", m.as_str().to_string());
    }
    fact("time to recover", ms_or_dash(s.time_to_recover_ms));
    fact("time to detect", ms_or_dash(s.time_to_detect_ms));
    if let Some(a) = &s.abort {
        fact(
            "abort",
            format!(
                "{} — latency {} from the cause seen to the first rollback call",
                esc(&a.reason),
                super::latency_text(a.latency_ms)
            ),
        );
    }
    fact("gameday", esc(&s.gameday_version));
    let _ = writeln!(o, "</table>");

    let _ = writeln!(o, "<h2>At a glance</h2>");
    let _ = writeln!(o, "<figure id=\"timeline-chart\">");
    let _ = writeln!(
        o,
        "<figcaption>The run over time: its phases, each fault's window, every guardrail's and alarm's state, and healthy capacity.</figcaption>"
    );
    let _ = writeln!(o, "{}", super::timeline::render(run));
    let _ = writeln!(o, "{}", super::timeline::legend());
    let _ = writeln!(o, "</figure>");

    let _ = writeln!(o, "<h2>Probes</h2>");
    if run.probes.is_empty() {
        let _ = writeln!(o, "<p>No probe was checked.</p>");
    } else {
        let _ = writeln!(
            o,
            "<table id=\"probes\"><tr><th>probe</th><th>role</th><th>check</th><th>result</th></tr>"
        );
        for p in &run.probes {
            let (class, word) = if p.failed { ("bad", "FAILED") } else { ("ok", "ok") };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"{class}\">{word}</span>: {}</td></tr>",
                esc(&p.info.name),
                role_name(p.info.role),
                esc(&p.info.check),
                esc(&p.detail)
            );
        }
        let _ = writeln!(o, "</table>");
    }

    let metric: Vec<_> = run.probes.iter().filter(|p| p.info.kind == "metric").collect();
    if !metric.is_empty() {
        let _ = writeln!(o, "<h2>Metrics</h2>");
        for p in metric {
            let role = match p.info.role {
                ProbeRole::Guardrail => "guardrail",
                _ => "tolerance",
            };
            let chart = Chart {
                title: &p.info.check,
                experiment: run.series(&p.info.name, SeriesOf::Experiment),
                control: run.series(&p.info.name, SeriesOf::Control),
                windows: &run.windows,
                limits: p
                    .info
                    .limits
                    .iter()
                    .map(|v| (*v, format!("{role} {}", value_text(*v))))
                    .collect(),
                from: s.started_at,
                to: run.ended_at,
            };
            let _ = writeln!(o, "<figure>");
            let _ = writeln!(
                o,
                "<h3>{} <small>({})</small></h3>",
                esc(&p.info.name),
                role_name(p.info.role)
            );
            let _ = writeln!(o, "<figcaption>{}</figcaption>", esc(&p.info.check));
            let _ = writeln!(o, "{}", svg::render(&chart));
            let _ = writeln!(o, "</figure>");
        }
    }

    if !s.targets.is_empty() {
        let _ = writeln!(o, "<h2>Targets</h2>");
        let _ = writeln!(
            o,
            "<table><tr><th>fault</th><th>action</th><th>chosen</th><th>of eligible</th><th>protected, never touched</th></tr>"
        );
        for t in &s.targets {
            let ids: Vec<String> = t
                .resolved
                .selected
                .iter()
                .map(|i| format!("<code>{}</code>", esc(&i.id)))
                .collect();
            let prot: Vec<String> = t
                .resolved
                .protected
                .iter()
                .map(|i| format!("<code>{}</code>", esc(i)))
                .collect();
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.fault),
                esc(&t.action),
                ids.join(", "),
                t.resolved.matched,
                prot.join(", ")
            );
        }
        let _ = writeln!(o, "</table>");
    }

    let _ = writeln!(o, "<h2>Timeline</h2>");
    let _ = writeln!(
        o,
        "<table id=\"timeline\"><tr><th>time</th><th>since start</th><th>what</th></tr>"
    );
    for i in &run.timeline {
        let class = if i.alert { " class=\"alert\"" } else { "" };
        let _ = writeln!(
            o,
            "<tr{class}><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            i.at.strftime("%H:%M:%S%.3fZ"),
            super::offset_text(i.offset_ms),
            esc(&i.text)
        );
    }
    let _ = writeln!(o, "</table>");
    let rendered = if s.verdict == Some(Verdict::Passed) {
        ""
    } else {
        " Check the reason above and the timeline's highlighted rows first."
    };
    let _ = writeln!(
        o,
        "<footer>Rendered by gameday from <code>journal.json</code> (journal version {}); every event with its raw data is there.{rendered}</footer>",
        crate::journal::JOURNAL_VERSION
    );
    let _ = writeln!(o, "</main>");
    let _ = writeln!(o, "</body>");
    let _ = writeln!(o, "</html>");
    o
}
