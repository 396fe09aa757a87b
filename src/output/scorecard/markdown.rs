//! `scorecard.md`: the suite run for a pull request, a wiki page or a CI
//! job summary. Every value is escaped as in `report.md`.

use std::fmt::Write;

use super::Scorecard;
use crate::output::report::markdown::esc;
use crate::output::report::ms_or_dash;
use crate::util::ms_text;

fn cell(text: &str) -> String {
    esc(text).replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders the Markdown scorecard.
pub fn render(c: &Scorecard) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Readiness scorecard `{}`: {}", esc(&c.suite), c.decision());
    let _ = writeln!(o);
    for b in &c.because {
        let _ = writeln!(o, "- {}", esc(b).replace('\n', " "));
    }
    if let Some(s) = &c.stopped {
        let _ = writeln!(o, "- {}", esc(s));
    }
    let _ = writeln!(o);
    let min = c
        .min_score
        .map(|m| format!(" (GO needs at least {m})"))
        .unwrap_or_default();
    let _ = writeln!(o, "**Readiness: {} / 100**{min}", c.score);
    let _ = writeln!(o);
    let _ = writeln!(o, "_{}_", esc(&c.formula));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| experiment | role | where | verdict | time to detect | time to recover | abort reason | report |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &c.rows {
        let report = match (&r.report, &r.run_id) {
            (Some(link), Some(id)) => format!("[{}]({})", cell(id), link.replace(' ', "%20")),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} | {} | {report} |",
            cell(&r.experiment),
            r.role.as_str(),
            cell(&r.place()),
            if r.passed() {
                r.outcome().to_string()
            } else {
                format!("**{}**", r.outcome())
            },
            ms_or_dash(r.time_to_detect_ms),
            ms_or_dash(r.time_to_recover_ms),
            cell(r.abort_reason.as_deref().unwrap_or("-")),
        );
    }
    let _ = writeln!(o);
    for r in &c.rows {
        let _ = writeln!(
            o,
            "- `{}` ({}): {}",
            cell(&r.experiment),
            r.outcome(),
            cell(&r.reason)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Suite run `{}` of `{}` (sha256 `{}`, plan `{}`), started {}, took {}; concurrency {}, stop on {}.",
        cell(&c.suite_run_id),
        cell(&c.file.display().to_string()),
        &c.suite_sha256[..12.min(c.suite_sha256.len())],
        cell(&c.plan_hash),
        c.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        ms_text(c.duration_ms()),
        c.concurrency,
        c.stop_on.as_str()
    );
    o
}
