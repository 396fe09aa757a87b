//! `catalog.md`: the catalog for a wiki or a repository, every value from a
//! file escaped as in the reports.

use std::fmt::Write;

use jiff::Timestamp;

use super::{Entry, REPORT_LINKS};
use crate::output::report::markdown::esc;

fn cell(text: &str) -> String {
    esc(text).replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Renders the catalog in Markdown.
pub fn render(entries: &[Entry], now: Timestamp) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Game day catalog\n");
    let _ = writeln!(
        o,
        "{} experiment(s) and suite(s), as of {}. Written by `gameday catalog`; `gameday run` and `gameday run-due` keep it up to date.\n",
        entries.len(),
        date(now)
    );
    let _ = writeln!(
        o,
        "| name | owner | schedule | next slot | last verdict | trend |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    for e in entries {
        let past = e.past();
        let last = past
            .first()
            .map(|r| format!("{} ({})", r.word, date(r.started_at)))
            .unwrap_or_else(|| "never run".into());
        let trend: Vec<&str> = past.iter().rev().map(|r| r.word).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&e.name),
            cell(e.owner.as_deref().unwrap_or("-")),
            e.schedule
                .as_deref()
                .map(|s| format!("`{}`", cell(s)))
                .unwrap_or_else(|| "by hand".into()),
            cell(e.next_slot.as_deref().unwrap_or("-")),
            cell(&last),
            if trend.is_empty() {
                "-".to_string()
            } else {
                trend.join(" → ")
            }
        );
    }
    for e in entries {
        let _ = writeln!(o, "\n## {} `{}`\n", e.kind, esc(&e.name));
        if let Some(d) = &e.description {
            let _ = writeln!(o, "{}\n", esc(d));
        }
        if let Some(h) = &e.hypothesis {
            let _ = writeln!(o, "> {}\n", esc(h).replace('\n', "\n> "));
        }
        if let Some(p) = &e.problem {
            let _ = writeln!(o, "**Problem:** {}\n", esc(p).replace('\n', "  \n"));
        }
        let _ = writeln!(o, "- file: `{}`", esc(&e.file.display().to_string()));
        let _ = writeln!(o, "- owner: {}", esc(e.owner.as_deref().unwrap_or("-")));
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_string()
            } else {
                items.iter().map(|i| esc(i)).collect::<Vec<_>>().join("; ")
            }
        };
        if e.kind == "suite" {
            let _ = writeln!(o, "- experiments: {}", list(&e.guardrails));
        } else {
            let _ = writeln!(o, "- faults: {}", list(&e.faults));
            let _ = writeln!(o, "- guardrails: {}", list(&e.guardrails));
        }
        let _ = writeln!(
            o,
            "- schedule: {}",
            e.schedule
                .as_deref()
                .map(|s| format!("`{}`", esc(s)))
                .unwrap_or_else(|| "none: run by hand".into())
        );
        if let Some(st) = &e.due {
            let _ = writeln!(o, "- now: **{}**: {}", st.state.as_str(), esc(&st.why));
        }
        let _ = writeln!(o, "- next slot: {}", esc(e.next_slot.as_deref().unwrap_or("-")));
        let past = e.past();
        match past.first() {
            Some(r) => {
                let _ = writeln!(
                    o,
                    "- last verdict: **{}** on {} (run `{}`)",
                    r.word,
                    date(r.started_at),
                    esc(r.id)
                );
                let trend: Vec<&str> = past.iter().rev().map(|r| r.word).collect();
                let _ = writeln!(o, "- trend (oldest first): {}", trend.join(" → "));
                let links: Vec<String> = past
                    .iter()
                    .take(REPORT_LINKS)
                    .map(|r| format!("[{} ({})]({})", date(r.started_at), r.word, esc(&r.link)))
                    .collect();
                let _ = writeln!(o, "- {}: {}", e.links_word(), links.join(", "));
            }
            None => {
                let _ = writeln!(o, "- last verdict: never run");
            }
        }
    }
    o
}
