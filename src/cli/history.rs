//! `gameday history`: past runs with per-experiment trends, or two runs side by side.

use std::path::Path;

use crate::journal::Verdict;
use crate::output::history::{self, RunRow, Trend};

use super::shared::print_text;
use super::{Error, Outcome, Output};

/// Lists the runs and each experiment's trend; a regression is an outcome
/// of its own only with `fail_on_regression`.
pub(super) fn list(
    experiment: Option<&str>,
    fail_on_regression: bool,
    output: Output,
    runs_dir: &Path,
) -> Result<Outcome, Error> {
    let (rows, unreadable) = history::load(runs_dir, experiment)?;
    let trends = history::trends(&rows);
    for u in &unreadable {
        eprintln!("warning: skipped {}: {}", u.dir.display(), u.error);
    }
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "runs": rows, "experiments": trends, "unreadable": unreadable })
        ),
        Output::Text => print_text(&render_history(&rows, &trends)),
    }
    if fail_on_regression && trends.iter().any(|t| t.regression.is_some()) {
        Ok(Outcome::Regression)
    } else {
        Ok(Outcome::Done)
    }
}

/// Two runs of one experiment, side by side.
pub(super) fn diff(a: &str, b: &str, output: Output, runs_dir: &Path) -> Result<Outcome, Error> {
    let load =
        |what: &str| history::find(runs_dir, what).and_then(|p| crate::output::load(&p).map_err(Into::into));
    let sa = load(a)?;
    let sb = load(b)?;
    if sa.experiment != sb.experiment {
        return Err(Error::DiffOfTwoExperiments {
            a: sa.run_id,
            experiment_a: sa.experiment,
            b: sb.run_id,
            experiment_b: sb.experiment,
        });
    }
    let rows = history::diff(&sa, &sb);
    match output {
        Output::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(k, x, y)| serde_json::json!({ "field": k, "a": x, "b": y, "same": x == y }))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "experiment": sa.experiment, "a": sa.run_id, "b": sb.run_id, "rows": v })
            );
        }
        Output::Text => {
            // Long values (reasons, probe details) are cut for the side-by-side; --output json has them whole.
            let cut = |v: &str| {
                if v.chars().count() > 60 {
                    format!("{}...", v.chars().take(57).collect::<String>())
                } else {
                    v.to_string()
                }
            };
            let rows: Vec<(char, String, String, String)> = rows
                .iter()
                .map(|(k, x, y)| (if x == y { ' ' } else { '*' }, k.clone(), cut(x), cut(y)))
                .collect();
            let kw = rows.iter().map(|(_, k, _, _)| k.len()).max().unwrap_or(8);
            let aw = rows
                .iter()
                .map(|(_, _, x, _)| x.chars().count())
                .max()
                .unwrap_or(8);
            let mut text = format!(
                "experiment `{}`: {} (A) against {} (B); * marks a difference\n",
                sa.experiment, sa.run_id, sb.run_id
            );
            for (mark, k, x, y) in &rows {
                text += &format!("{mark} {k:<kw$}  {x:<aw$}  {y}\n");
            }
            print_text(&text);
        }
    }
    Ok(Outcome::Done)
}

/// The history for people: runs newest first, then each experiment's trend.
fn render_history(rows: &[RunRow], trends: &[Trend]) -> String {
    use std::fmt::Write;
    let ms = crate::output::report::ms_or_dash;
    let mut s = String::new();
    if rows.is_empty() {
        let _ = writeln!(s, "no runs yet");
        return s;
    }
    let width = rows
        .iter()
        .map(|r| r.experiment.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        s,
        "{:<20}  {:<20}  {:<width$}  {:<11}  {:<7}  {:>8}  {:>8}",
        "started", "run", "experiment", "verdict", "aborted", "recover", "detect"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<20}  {:<20}  {:<width$}  {:<11}  {:<7}  {:>8}  {:>8}",
            r.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            r.run_id,
            r.experiment,
            r.verdict.map(Verdict::as_str).unwrap_or("unfinished"),
            if r.aborted { "yes" } else { "no" },
            ms(r.time_to_recover_ms),
            ms(r.time_to_detect_ms)
        );
    }
    let _ = writeln!(s, "\ntrends (oldest run first):");
    let list = |v: &[u64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|m| crate::util::ms_text(*m))
                .collect::<Vec<_>>()
                .join(" -> ")
        }
    };
    for t in trends {
        let rate = t
            .pass_rate
            .map(|r| format!("{:.0}% ({} of {} that ran)", r * 100.0, t.passed, t.ran))
            .unwrap_or_else(|| "- (none tested the hypothesis)".into());
        let _ = writeln!(s, "  {}: {} run(s), pass rate {rate}", t.experiment, t.runs);
        let _ = writeln!(s, "    verdicts:        {}", t.verdicts.join(" -> "));
        let _ = writeln!(s, "    time to recover: {}", list(&t.time_to_recover_ms));
        let _ = writeln!(s, "    time to detect:  {}", list(&t.time_to_detect_ms));
        if let Some(why) = &t.regression {
            let _ = writeln!(s, "    REGRESSION: {why}");
        }
    }
    s
}
