//! The suite's `junit.xml`: one test suite named for the suite, one test
//! case per experiment (class `<suite>.blocking` or `<suite>.advisory`).
//!
//! A blocking experiment that did not pass (failed, aborted, not-run, error,
//! interrupted, or never started) is a `<failure>`: it holds the launch, and
//! CI tools mark the job red on failures. An advisory one that did not pass
//! is `<skipped>` with a message: CI tools show skipped cases with their
//! message but keep the job green, which is what advisory means (run,
//! reported, never deciding GO by itself); a `<failure>` would turn the
//! pipeline red over an experiment that does not gate anything, and a
//! property would hide it where nobody reads. GO or NO-GO, the score and its
//! formula are properties and the suite's `system-out`.

use std::fmt::Write;

use super::Scorecard;
use crate::output::report::escape_markup as esc;
use crate::suite::Role;

/// Renders the suite's JUnit report.
pub fn render(c: &Scorecard) -> String {
    let suite = esc(&c.suite);
    let mut failures = 0;
    let mut skipped = 0;
    let mut cases = String::new();
    for r in &c.rows {
        let time = format!("{:.3}", r.duration_ms.unwrap_or(0) as f64 / 1000.0);
        let head = format!(
            "    <testcase classname=\"{suite}.{}\" name=\"{}\" file=\"{}\" time=\"{time}\"",
            r.role.as_str(),
            esc(&r.experiment),
            esc(&r.file.display().to_string())
        );
        let what = format!("{}: {}", r.outcome(), r.reason);
        if r.passed() {
            let _ = writeln!(cases, "{head}/>");
            continue;
        }
        let (tag, message) = match r.role {
            Role::Blocking => {
                failures += 1;
                ("failure", format!("blocking experiment {what}"))
            }
            Role::Advisory => {
                skipped += 1;
                (
                    "skipped",
                    format!("advisory experiment (does not decide GO) {what}"),
                )
            }
        };
        let _ = writeln!(cases, "{head}>");
        let _ = writeln!(
            cases,
            "      <{tag} message=\"{}\">{}</{tag}>",
            esc(&message),
            esc(&message)
        );
        if let Some(report) = &r.report {
            let _ = writeln!(cases, "      <system-out>report: {}</system-out>", esc(report));
        }
        let _ = writeln!(cases, "    </testcase>");
    }
    let tests = c.rows.len();
    let time = format!("{:.3}", c.duration_ms() as f64 / 1000.0);
    let mut o = String::new();
    let _ = writeln!(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        o,
        "<testsuites name=\"gameday suite\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\">"
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{}\">",
        c.started_at.strftime("%Y-%m-%dT%H:%M:%S")
    );
    let _ = writeln!(o, "    <properties>");
    for (k, v) in [
        ("decision", c.decision().to_string()),
        ("score", c.score.to_string()),
        (
            "min_score",
            c.min_score.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
        ),
        ("formula", c.formula.clone()),
        ("suite_run_id", c.suite_run_id.clone()),
        ("suite_sha256", c.suite_sha256.clone()),
        ("plan_hash", c.plan_hash.clone()),
    ] {
        let _ = writeln!(o, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    let _ = writeln!(o, "    </properties>");
    o.push_str(&cases);
    let _ = writeln!(
        o,
        "    <system-out>{}</system-out>",
        esc(&format!(
            "{}: readiness {}/100; {}",
            c.decision(),
            c.score,
            c.because.join("; ")
        ))
    );
    let _ = writeln!(o, "  </testsuite>");
    let _ = writeln!(o, "</testsuites>");
    o
}
