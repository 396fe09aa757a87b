//! `catalog.html`: one self-contained page (no script, no external file),
//! an entry per experiment and suite. Every value from a file is escaped.

use std::fmt::Write;

use jiff::Timestamp;

use super::{Entry, REPORT_LINKS};
use crate::output::report::escape_markup as esc;
use crate::output::report::html::page_start;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #1d1d1f; background: #f6f7f9; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 0 0 6px; }
.generated { color: #666; margin: 0 0 18px; }
table.index { border-collapse: collapse; width: 100%; font-size: 0.92em; margin-bottom: 24px; }
table.index th, table.index td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
table.index th { background: #fafafa; }
article { border: 1px solid #e3e3e3; border-radius: 8px; padding: 14px 16px; margin: 14px 0; }
article .kind { font-size: 0.75em; text-transform: uppercase; letter-spacing: 0.05em; color: #666; }
blockquote { margin: 8px 0; padding: 8px 14px; border-left: 4px solid #1f5fbf; background: #f1f5fc; }
dl { display: grid; grid-template-columns: 150px 1fr; gap: 4px 12px; margin: 8px 0; }
dt { font-weight: 600; color: #444; } dd { margin: 0; }
code { font-family: ui-monospace, 'SFMono-Regular', Menlo, monospace; font-size: 0.92em; }
.v { display: inline-block; padding: 1px 7px; border-radius: 4px; color: #fff; font-size: 0.85em; font-weight: 600; }
.v.passed { background: #1e8e3e; } .v.failed, .v.aborted { background: #c5221f; }
.v.not-run, .v.interrupted, .v.unfinished { background: #b06000; } .v.error { background: #7b1fa2; }
.v.go { background: #1e8e3e; } .v.no-go { background: #c5221f; }
.trend { display: inline-flex; gap: 3px; vertical-align: middle; }
.trend span { width: 14px; height: 14px; border-radius: 3px; display: inline-block; }
.trend .passed { background: #1e8e3e; } .trend .failed, .trend .aborted { background: #c5221f; }
.trend .not-run, .trend .interrupted, .trend .unfinished { background: #b06000; } .trend .error { background: #7b1fa2; }
.trend .go { background: #1e8e3e; } .trend .no-go { background: #c5221f; }
.due { font-weight: 600; } .due.due-due { color: #c5221f; } .due.due-deferred { color: #b06000; } .due.due-done { color: #1e8e3e; }
.problem { color: #c5221f; white-space: pre-wrap; }
";

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn anchor(e: &Entry) -> String {
    format!("{}-{}", e.kind, e.name)
}

/// Renders the catalog page.
pub fn render(entries: &[Entry], now: Timestamp) -> String {
    let mut o = page_start("Game day catalog", &[STYLE]);
    let _ = writeln!(o, "<h1>Game day catalog</h1>");
    let _ = writeln!(
        o,
        "<p class=\"generated\">{} experiment(s) and suite(s), as of {}. Written by <code>gameday catalog</code>; <code>gameday run</code> and <code>gameday run-due</code> keep it up to date.</p>",
        entries.len(),
        date(now)
    );
    let _ = writeln!(
        o,
        "<table class=\"index\" id=\"index\">\n<tr><th>name</th><th>owner</th><th>schedule</th><th>next slot</th><th>last verdict</th><th>trend</th></tr>"
    );
    for e in entries {
        let last = match e.past().first() {
            Some(r) => format!(
                "<span class=\"v {}\">{}</span> {}",
                r.class,
                r.word,
                esc(&date(r.started_at))
            ),
            None => "never run".to_string(),
        };
        let _ = writeln!(
            o,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{last}</td><td>{}</td></tr>",
            esc(&anchor(e)),
            esc(&e.name),
            esc(e.owner.as_deref().unwrap_or("-")),
            e.schedule
                .as_deref()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .unwrap_or_else(|| "by hand".into()),
            esc(e.next_slot.as_deref().unwrap_or("-")),
            trend(e)
        );
    }
    let _ = writeln!(o, "</table>");
    for e in entries {
        entry(&mut o, e);
    }
    let _ = writeln!(o, "</main>\n</body>\n</html>");
    o
}

fn trend(e: &Entry) -> String {
    let cells: String = e
        .past()
        .iter()
        .rev()
        .map(|r| {
            format!(
                "<span class=\"{}\" title=\"{} {}\"></span>",
                r.class,
                esc(&date(r.started_at)),
                r.word
            )
        })
        .collect();
    format!("<span class=\"trend\">{cells}</span>")
}

fn entry(o: &mut String, e: &Entry) {
    let _ = writeln!(o, "<article id=\"{}\" class=\"entry\">", esc(&anchor(e)));
    let _ = writeln!(
        o,
        "<div class=\"kind\">{}</div>\n<h2><code>{}</code></h2>",
        e.kind,
        esc(&e.name)
    );
    if let Some(d) = &e.description {
        let _ = writeln!(o, "<p>{}</p>", esc(d));
    }
    if let Some(h) = &e.hypothesis {
        let _ = writeln!(o, "<blockquote class=\"hypothesis\">{}</blockquote>", esc(h));
    }
    if let Some(p) = &e.problem {
        let _ = writeln!(o, "<p class=\"problem\">{}</p>", esc(p));
    }
    let _ = writeln!(o, "<dl>");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row(
        "file",
        format!("<code>{}</code>", esc(&e.file.display().to_string())),
    );
    row("owner", esc(e.owner.as_deref().unwrap_or("-")));
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.iter().map(|i| esc(i)).collect::<Vec<_>>().join("<br>")
        }
    };
    if e.kind == "suite" {
        row("experiments", list(&e.guardrails));
    } else {
        row("faults", list(&e.faults));
        row("guardrails", list(&e.guardrails));
    }
    row(
        "schedule",
        e.schedule
            .as_deref()
            .map(|s| format!("<code>{}</code>", esc(s)))
            .unwrap_or_else(|| "none: run by hand".into()),
    );
    if let Some(st) = &e.due {
        row(
            "now",
            format!(
                "<span class=\"due due-{s}\">{s}</span>: {}",
                esc(&st.why),
                s = st.state.as_str()
            ),
        );
    }
    row("next slot", esc(e.next_slot.as_deref().unwrap_or("-")));
    let past = e.past();
    row(
        "last verdict",
        match past.first() {
            Some(r) => format!(
                "<span class=\"v {}\">{}</span> on {} (run <code>{}</code>)",
                r.class,
                r.word,
                esc(&date(r.started_at)),
                esc(r.id)
            ),
            None => "never run".into(),
        },
    );
    if !past.is_empty() {
        let words: Vec<&str> = past.iter().rev().map(|r| r.word).collect();
        row("trend", format!("{} {}", trend(e), esc(&words.join(" → "))));
        let links: Vec<String> = past
            .iter()
            .take(REPORT_LINKS)
            .map(|r| {
                format!(
                    "<a href=\"{}\">{}</a> ({})",
                    esc(&r.link),
                    esc(&date(r.started_at)),
                    r.word
                )
            })
            .collect();
        row(e.links_word(), links.join("<br>"));
    }
    let _ = writeln!(o, "</dl>\n</article>");
}
