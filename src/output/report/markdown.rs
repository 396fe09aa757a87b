//! `report.md`: the run for a pull request or a wiki page.
//!
//! Markdown renderers pass inline HTML through, so every value from the
//! experiment or from AWS is escaped (`&`, `<`, `>`), and `|` in table cells.

use std::fmt::Write;

use super::{Run, ms_or_dash, role_name, verdict_words};
use crate::util::{ms_text, value_text};

/// Escapes text for Markdown prose (no inline HTML gets through).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for a table cell: also `|` and line breaks.
fn cell(text: &str) -> String {
    esc(text).replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders the Markdown report.
pub fn render(run: &Run) -> String {
    let s = run.s;
    let mut o = String::new();
    let _ = writeln!(o, "# Game day `{}`: {}", esc(&s.experiment), run.verdict());
    let _ = writeln!(o);
    let _ = writeln!(o, "**{}**", esc(verdict_words(s.verdict)));
    let _ = writeln!(o);
    if let Some(reason) = &s.reason {
        let _ = writeln!(o, "> {}", esc(reason).replace('\n', " "));
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Hypothesis");
    let _ = writeln!(o);
    let _ = writeln!(o, "{}", esc(s.hypothesis.trim()));
    let _ = writeln!(o);

    let _ = writeln!(o, "## Run");
    let _ = writeln!(o);
    let _ = writeln!(o, "| | |");
    let _ = writeln!(o, "| --- | --- |");
    let row = |o: &mut String, k: &str, v: String| {
        let _ = writeln!(o, "| {k} | {v} |");
    };
    row(&mut o, "run", format!("`{}`", cell(&s.run_id)));
    row(
        &mut o,
        "started",
        s.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
    );
    row(&mut o, "duration", ms_text(run.duration_ms()));
    row(
        &mut o,
        "experiment file",
        format!(
            "`{}` (sha256 `{}`)",
            cell(&s.file.display().to_string()),
            short_hash(&s.file_sha256)
        ),
    );
    let policy = s
        .policy_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in default".into());
    row(
        &mut o,
        "safety policy",
        format!("{} (sha256 `{}`)", cell(&policy), short_hash(&s.policy_sha256)),
    );
    row(&mut o, "seed", format!("`{}`", s.seed));
    row(&mut o, "region", cell(&s.region));
    if let Some(env) = &s.environment {
        let what = match (&env.group, &env.source) {
            (Some(g), Some(src)) => format!(
                "{}: `{}`, a copy of `{}` ({} instance(s))",
                env.mode.as_str(),
                cell(g),
                cell(src),
                env.instances.len()
            ),
            (Some(g), None) => format!("{}: `{}`", env.mode.as_str(), cell(g)),
            _ => env.mode.as_str().to_string(),
        };
        row(&mut o, "environment", what);
    } else if let Some(mode) = s.mode {
        row(&mut o, "environment", mode.as_str().to_string());
    }
    row(&mut o, "time to recover", ms_or_dash(s.time_to_recover_ms));
    row(&mut o, "time to detect", ms_or_dash(s.time_to_detect_ms));
    if let Some(a) = &s.abort {
        row(
            &mut o,
            "abort latency",
            format!(
                "{} (cause seen to first rollback call)",
                super::latency_text(a.latency_ms)
            ),
        );
    }
    row(&mut o, "gameday", cell(&s.gameday_version));
    let _ = writeln!(o);

    let _ = writeln!(o, "## Probes");
    let _ = writeln!(o);
    if run.probes.is_empty() {
        let _ = writeln!(o, "No probe was checked.");
    } else {
        let _ = writeln!(o, "| probe | role | check | result |");
        let _ = writeln!(o, "| --- | --- | --- | --- |");
        for p in &run.probes {
            let result = if p.failed {
                format!("**FAILED**: {}", cell(&p.detail))
            } else {
                format!("ok: {}", cell(&p.detail))
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {result} |",
                cell(&p.info.name),
                role_name(p.info.role),
                cell(&p.info.check)
            );
        }
    }
    let _ = writeln!(o);

    if !s.targets.is_empty() {
        let _ = writeln!(o, "## Targets");
        let _ = writeln!(o);
        let _ = writeln!(o, "| fault | action | chosen | of eligible |");
        let _ = writeln!(o, "| --- | --- | --- | --- |");
        for t in &s.targets {
            let ids: Vec<String> = t
                .resolved
                .selected
                .iter()
                .map(|i| format!("`{}`", cell(&i.id)))
                .collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&t.fault),
                cell(&t.action),
                ids.join(", "),
                t.resolved.matched
            );
        }
        let _ = writeln!(o);
    }

    if !s.series.is_empty() {
        let _ = writeln!(o, "## Metrics");
        let _ = writeln!(o);
        let _ = writeln!(o, "| probe | series | datapoints | min | max | last |");
        let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
        for r in &s.series {
            let vals: Vec<f64> = r.points.iter().map(|p| p.v).collect();
            let (min, max) = (
                vals.iter().copied().fold(f64::NAN, f64::min),
                vals.iter().copied().fold(f64::NAN, f64::max),
            );
            let show = |v: f64| {
                if v.is_nan() {
                    "-".to_string()
                } else {
                    value_text(v)
                }
            };
            let of = match r.of {
                crate::journal::SeriesOf::Experiment => "experiment",
                crate::journal::SeriesOf::Control => "control",
            };
            let last = vals.last().map(|v| value_text(*v)).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "| {} | {of} | {} | {} | {} | {last} |",
                cell(&r.probe),
                vals.len(),
                show(min),
                show(max)
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Charts of every series, with the fault windows and thresholds, are in `report.html`."
        );
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "## Timeline");
    let _ = writeln!(o);
    let _ = writeln!(o, "| time | since start | what |");
    let _ = writeln!(o, "| --- | --- | --- |");
    for i in &run.timeline {
        let text = if i.alert {
            format!("**{}**", cell(&i.text))
        } else {
            cell(&i.text)
        };
        let _ = writeln!(
            o,
            "| {} | {} | {text} |",
            i.at.strftime("%H:%M:%S%.3fZ"),
            super::offset_text(i.offset_ms)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Every event, with its raw data, is in `journal.json`.");
    o
}

fn short_hash(h: &str) -> &str {
    &h[..12.min(h.len())]
}
