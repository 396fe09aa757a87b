//! `gameday suite plan FILE`: every experiment's plan, the safety gate's
//! verdict on each, how they would be scheduled, the go/no-go rule, and the
//! one hash that approves the whole suite. Read-only AWS calls only.

use std::fmt::Write;
use std::path::Path;

use super::{SuitePlan, build, conflicts, lock_keys};
use crate::cli::plan::render_plan;
use crate::cli::shared::random_seed;
use crate::cli::{AwsArgs, Error, Outcome, Output, PlanVerdict, SafetyArgs};
use crate::output::scorecard::FORMULA;

/// Plans the suite and prints it; the outcome is the worst member's: refused
/// when the policy would refuse any experiment, not-run when any would meet
/// a failed precondition, else may-run.
pub(in crate::cli) async fn plan(
    file: &Path,
    seed: Option<u64>,
    output: Output,
    safety: &SafetyArgs,
    aws: &AwsArgs,
) -> Result<Outcome, Error> {
    let sp = build(file, seed.unwrap_or_else(random_seed), safety, aws).await?;
    match output {
        Output::Json => println!("{}", to_json(&sp)),
        Output::Text => print!("{}", render(&sp)),
    }
    Ok(Outcome::Planned(overall(&sp)))
}

/// The suite's verdict: the policy's refusal first, then a precondition.
pub(super) fn overall(sp: &SuitePlan) -> PlanVerdict {
    let verdicts: Vec<PlanVerdict> = sp.members.iter().map(|m| m.verdict).collect();
    if verdicts.contains(&PlanVerdict::Refused) {
        PlanVerdict::Refused
    } else if verdicts.contains(&PlanVerdict::NotRun) {
        PlanVerdict::NotRun
    } else {
        PlanVerdict::MayRun
    }
}

fn verdict_words(v: PlanVerdict) -> &'static str {
    match v {
        PlanVerdict::MayRun => "may run",
        PlanVerdict::Refused => "REFUSED by the safety policy",
        PlanVerdict::NotRun => "would NOT RUN: a precondition does not hold",
    }
}

/// The suite's plan for people.
pub(super) fn render(sp: &SuitePlan) -> String {
    let s = &sp.suite;
    let n = sp.members.len();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "suite plan for `{}` ({}): {n} experiment(s)",
        s.name,
        s.file.display()
    );
    for (i, m) in sp.members.iter().enumerate() {
        let _ = writeln!(
            o,
            "\n=== {} of {n}: `{}` ({}) — {} ===",
            i + 1,
            m.loaded.exp.name,
            m.loaded.member.role.as_str(),
            m.loaded.member.file.display()
        );
        for line in render_plan(&m.plan, &m.rules).lines() {
            // The suite's hash approves it; a member's own run command would mislead.
            if !line.starts_with("run exactly this plan") {
                let _ = writeln!(o, "{line}");
            }
        }
        let _ = writeln!(o, "safety gate: {}", verdict_words(m.verdict));
    }
    let _ = writeln!(o, "\n=== the suite ===");
    for (i, m) in sp.members.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {}. {:<8} {:<40} {}",
            i + 1,
            m.loaded.member.role.as_str(),
            m.loaded.exp.name,
            verdict_words(m.verdict)
        );
    }
    let keys: Vec<_> = sp
        .members
        .iter()
        .map(|m| lock_keys(&m.loaded.exp, &m.plan))
        .collect();
    if s.concurrency <= 1 {
        let _ = writeln!(o, "order: one after another, in this order");
    } else {
        let _ = writeln!(
            o,
            "order: up to {} at once, in this order; experiments that share a target never run at once (the later one waits):",
            s.concurrency
        );
        let c = conflicts(&keys);
        if c.is_empty() {
            let _ = writeln!(o, "  no two experiments share a target");
        }
        for (a, b, key) in c {
            let _ = writeln!(
                o,
                "  `{}` and `{}` share {key}",
                sp.members[a].loaded.exp.name, sp.members[b].loaded.exp.name
            );
        }
    }
    let _ = writeln!(
        o,
        "stop_on: {} ({})",
        s.stop_on.as_str(),
        match s.stop_on {
            crate::suite::StopOn::Abort => "no experiment starts after one aborted or ended in error",
            crate::suite::StopOn::Failure => "no experiment starts after one did not pass",
            crate::suite::StopOn::Never => "every experiment runs",
        }
    );
    let min = s
        .go_no_go
        .min_score
        .map(|m| format!(" and a readiness of at least {m}"))
        .unwrap_or_default();
    let _ = writeln!(o, "GO when: every blocking experiment passes{min}");
    let _ = writeln!(o, "  {FORMULA}");
    let overall = overall(sp);
    let _ = writeln!(
        o,
        "safety gate for the suite: {}",
        match overall {
            PlanVerdict::MayRun => "every experiment may run".to_string(),
            v => format!("not every experiment may run: {}", verdict_words(v)),
        }
    );
    let _ = writeln!(o, "\nsuite plan hash: {}", sp.hash);
    let _ = writeln!(
        o,
        "run exactly this suite: gameday suite run {} --seed {} --approve {}",
        s.file.display(),
        sp.seed,
        sp.hash
    );
    o
}

fn to_json(sp: &SuitePlan) -> String {
    let members: Vec<serde_json::Value> = sp
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "file": m.loaded.member.file,
                "role": m.loaded.member.role,
                "experiment": m.loaded.exp.name,
                "plan": m.plan,
                "rules": m.rules,
                "admitted": crate::gate::admitted(&m.rules),
                "verdict": match m.verdict {
                    PlanVerdict::MayRun => "may-run",
                    PlanVerdict::Refused => "refused",
                    PlanVerdict::NotRun => "not-run",
                },
            })
        })
        .collect();
    let doc = serde_json::json!({
        "suite": sp.suite.name,
        "file": sp.suite.file,
        "hash": sp.hash,
        "seed": sp.seed,
        "concurrency": sp.suite.concurrency,
        "stop_on": sp.suite.stop_on,
        "min_score": sp.suite.go_no_go.min_score,
        "formula": FORMULA,
        "experiments": members,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
