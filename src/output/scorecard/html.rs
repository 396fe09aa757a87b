//! `scorecard.html`: the suite run on one self-contained page (no script, no
//! external font, style sheet or image), styled like `report.html`: GO or
//! NO-GO with its reasons, the readiness score with its formula, and a row
//! per experiment linking to its report. Every value is HTML-escaped.

use std::fmt::Write;

use super::Scorecard;
use crate::output::report::html::{STYLE, esc, page_start};
use crate::output::report::ms_or_dash;
use crate::util::ms_text;

const EXTRA: &str = "
.go { background: #e7f6ec; } .go .badge { background: #1e8e3e; }
.no-go { background: #fdecea; } .no-go .badge { background: #c5221f; }
.score { font-size: 2.2em; font-weight: 700; margin: 0; }
.formula { color: #555; font-size: 0.9em; }
td.passed { color: #1e8e3e; font-weight: 600; }
td.failed, td.aborted, td.error { color: #c5221f; font-weight: 600; }
td.not-run, td.interrupted, td.not-started { color: #b06000; font-weight: 600; }
";

/// Renders the HTML scorecard.
pub fn render(c: &Scorecard) -> String {
    let decision = c.decision();
    let class = if c.go { "go" } else { "no-go" };
    let mut o = page_start(&format!("Suite {}: {decision}", esc(&c.suite)), &[STYLE, EXTRA]);
    let _ = writeln!(o, "<h1>Readiness scorecard <code>{}</code></h1>", esc(&c.suite));
    let _ = writeln!(o, "<section id=\"decision\" class=\"verdict {class}\">");
    let _ = writeln!(o, "<span class=\"badge\">{decision}</span>");
    let _ = writeln!(o, "<div>");
    for b in &c.because {
        let _ = writeln!(o, "<p>{}</p>", esc(b));
    }
    if let Some(s) = &c.stopped {
        let _ = writeln!(o, "<p class=\"reason\">{}</p>", esc(s));
    }
    let _ = writeln!(o, "</div>");
    let _ = writeln!(o, "</section>");

    let _ = writeln!(o, "<h2>Readiness</h2>");
    let min = c
        .min_score
        .map(|m| format!(" (GO needs at least {m})"))
        .unwrap_or_default();
    let _ = writeln!(o, "<p id=\"score\" class=\"score\">{} / 100{min}</p>", c.score);
    let _ = writeln!(o, "<p class=\"formula\">{}</p>", esc(&c.formula));

    let _ = writeln!(o, "<h2>Experiments</h2>");
    let _ = writeln!(
        o,
        "<table id=\"experiments\"><tr><th>experiment</th><th>role</th><th>where</th><th>verdict</th><th>time to detect</th><th>time to recover</th><th>abort reason</th><th>report</th></tr>"
    );
    for r in &c.rows {
        let outcome = r.outcome();
        let report = match (&r.report, &r.run_id) {
            (Some(link), Some(id)) => format!("<a href=\"{}\">{}</a>", esc(link), esc(id)),
            _ => "-".to_string(),
        };
        let alert = if !r.passed() && r.role == crate::suite::Role::Blocking {
            " class=\"alert\""
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "<tr{alert}><td><code>{}</code><br><small>{}</small></td><td>{}</td><td>{}</td><td class=\"{}\" title=\"{}\">{outcome}</td><td>{}</td><td>{}</td><td>{}</td><td>{report}</td></tr>",
            esc(&r.experiment),
            esc(&r.file.display().to_string()),
            r.role.as_str(),
            esc(&r.place()),
            outcome.replace(' ', "-"),
            esc(&r.reason),
            ms_or_dash(r.time_to_detect_ms),
            ms_or_dash(r.time_to_recover_ms),
            esc(r.abort_reason.as_deref().unwrap_or("-")),
        );
    }
    let _ = writeln!(o, "</table>");
    let _ = writeln!(o, "<h3>Why each ended as it did</h3>");
    let _ = writeln!(o, "<ul id=\"reasons\">");
    for r in &c.rows {
        let _ = writeln!(
            o,
            "<li><code>{}</code> ({}): {}</li>",
            esc(&r.experiment),
            r.outcome(),
            esc(&r.reason)
        );
    }
    let _ = writeln!(o, "</ul>");

    let _ = writeln!(o, "<h2>Suite run</h2>");
    let _ = writeln!(o, "<table class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = writeln!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    fact("suite run", format!("<code>{}</code>", esc(&c.suite_run_id)));
    fact(
        "suite file",
        format!(
            "<code>{}</code> (sha256 <code>{}</code>)",
            esc(&c.file.display().to_string()),
            esc(&c.suite_sha256)
        ),
    );
    fact("plan hash", format!("<code>{}</code>", esc(&c.plan_hash)));
    fact(
        "started",
        esc(&c.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string()),
    );
    fact("duration", ms_text(c.duration_ms()));
    fact("concurrency", c.concurrency.to_string());
    fact("stop on", c.stop_on.as_str().to_string());
    let _ = writeln!(o, "</table>");
    let _ = writeln!(
        o,
        "<footer>Rendered by gameday from <code>suite.json</code> (scorecard version {}) and each experiment's <code>journal.json</code>.</footer>",
        super::SCORECARD_VERSION
    );
    let _ = writeln!(o, "</main>");
    let _ = writeln!(o, "</body>");
    let _ = writeln!(o, "</html>");
    o
}
