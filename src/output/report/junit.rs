//! `junit.xml`: the run as a CI test suite.
//!
//! One test suite per run (named for the experiment), one test case per
//! hypothesis probe (steady state, detection) and per guardrail, and a last
//! case `verdict` for the run as a whole. A probe the verdict's reason names
//! fails (`<failure>`), as does a guardrail that tripped; the `verdict` case
//! fails for `failed` and `aborted`, is an `<error>` for `error`,
//! `interrupted` and an unfinished run, and `<skipped>` for `not-run`.
//! Every value is XML-escaped.

use std::fmt::Write;

use super::{Run, role_name};
use crate::journal::{ProbeRole, Verdict};

/// Escapes text for markup: see [`super::escape_markup`].
pub use super::escape_markup as esc;

enum Case {
    Pass,
    Failure(String),
    Error(String),
    Skipped(String),
}

/// Renders the JUnit report.
pub fn render(run: &Run) -> String {
    let s = run.s;
    let reason = s
        .reason
        .clone()
        .unwrap_or_else(|| "the run has no verdict".to_string());
    let mut cases: Vec<(String, String, Case)> = Vec::new();
    let suite = esc(&s.experiment);
    for p in &run.probes {
        let class = match p.info.role {
            ProbeRole::Guardrail => "guardrail",
            _ => "hypothesis",
        };
        let name = format!("{} `{}`: {}", role_name(p.info.role), p.info.name, p.info.check);
        let case = if p.failed {
            Case::Failure(p.detail.clone())
        } else if s.verdict == Some(Verdict::NotRun) {
            Case::Skipped(format!("not run: {reason}"))
        } else {
            Case::Pass
        };
        cases.push((format!("{suite}.{class}"), name, case));
    }
    let verdict = match s.verdict {
        Some(Verdict::Passed) => Case::Pass,
        Some(Verdict::Failed | Verdict::Aborted) => Case::Failure(reason.clone()),
        Some(Verdict::NotRun) => Case::Skipped(reason.clone()),
        Some(Verdict::Error | Verdict::Interrupted) | None => Case::Error(reason.clone()),
    };
    cases.push((
        format!("{suite}.run"),
        format!("verdict: {}", run.verdict()),
        verdict,
    ));

    let count = |f: fn(&Case) -> bool| cases.iter().filter(|(_, _, c)| f(c)).count();
    let failures = count(|c| matches!(c, Case::Failure(_)));
    let errors = count(|c| matches!(c, Case::Error(_)));
    let skipped = count(|c| matches!(c, Case::Skipped(_)));
    let time = format!("{:.3}", run.duration_ms() as f64 / 1000.0);
    let mut o = String::new();
    let _ = writeln!(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        o,
        "<testsuites name=\"gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\">",
        cases.len()
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{}\">",
        cases.len(),
        s.started_at.strftime("%Y-%m-%dT%H:%M:%S")
    );
    let _ = writeln!(o, "    <properties>");
    for (k, v) in [
        ("run_id", s.run_id.clone()),
        ("verdict", run.verdict().to_string()),
        ("seed", s.seed.to_string()),
        ("file_sha256", s.file_sha256.clone()),
        ("policy_sha256", s.policy_sha256.clone()),
        ("gameday_version", s.gameday_version.clone()),
    ] {
        let _ = writeln!(o, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    let _ = writeln!(o, "    </properties>");
    for (class, name, case) in &cases {
        let head = format!(
            "    <testcase classname=\"{class}\" name=\"{}\" time=\"{time}\"",
            esc(name)
        );
        match case {
            Case::Pass => {
                let _ = writeln!(o, "{head}/>");
            }
            Case::Failure(m) | Case::Error(m) | Case::Skipped(m) => {
                let tag = match case {
                    Case::Failure(_) => "failure",
                    Case::Error(_) => "error",
                    _ => "skipped",
                };
                let _ = writeln!(o, "{head}>");
                let _ = writeln!(o, "      <{tag} message=\"{}\">{}</{tag}>", esc(m), esc(m));
                let _ = writeln!(o, "    </testcase>");
            }
        }
    }
    let _ = writeln!(
        o,
        "    <system-out>{}</system-out>",
        esc(&format!("verdict: {} ({reason})", run.verdict()))
    );
    let _ = writeln!(o, "  </testsuite>");
    let _ = writeln!(o, "</testsuites>");
    o
}
