//! `gameday plan FILE`: what a run would do, with read-only AWS calls only.

use std::path::Path;

use crate::experiment::Experiment;
use crate::gate::{self, Admission, Approval};
use crate::model::RuleResult;
use crate::plan::{Plan, Targets};

use super::shared::{build_plan, prepare, random_seed};
use super::{AwsArgs, Error, Outcome, Output, PlanVerdict, SafetyArgs};

/// `gameday plan --output json`: the plan, every rule, and the overall answer.
#[derive(serde::Serialize)]
struct PlanOutput<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    rules: &'a [RuleResult],
    /// Whether the policy admits the plan (approval aside).
    admitted: bool,
}

/// Builds the plan, checks it against the policy (as a dry run: approval
/// aside) and prints both.
pub(super) async fn plan(
    file: &Path,
    seed: Option<u64>,
    output: Output,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Result<Outcome, Error> {
    let p = prepare(file, safety_args, aws_args, &super::shared::plan_session()).await?;
    let seed = seed.unwrap_or_else(random_seed);
    let plan = build_plan(&p, seed).await?;
    let adm = Admission {
        policy: p.policy.clone(),
        account: p.account.clone(),
        now: safety_args.now,
        approval: Approval::DryRun,
    };
    let rules = gate::check(&adm, &p.exp, &plan);
    let admitted = gate::admitted(&rules);
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&PlanOutput {
                plan: &plan,
                rules: &rules,
                admitted,
            })
            .map_err(Error::PlanJson)?;
            println!("{text}");
        }
        Output::Text => print!("{}", render_plan(&plan, &rules)),
    }
    Ok(Outcome::Planned(verdict(&p.exp, &plan, admitted)))
}

/// What a run of `plan` would meet before injecting anything: the policy's
/// refusal first (as the engine checks it first), then the preconditions
/// a plan can see (a guardrail that cannot fire, a fault with no target).
pub(super) fn verdict(exp: &Experiment, plan: &Plan, admitted: bool) -> PlanVerdict {
    let empty = exp
        .faults
        .iter()
        .zip(&plan.faults)
        .any(|(f, fp)| fp.targets.is_empty() && !f.target.allow_empty);
    if !admitted {
        PlanVerdict::Refused
    } else if empty || plan.preflight.refusal().is_some() {
        PlanVerdict::NotRun
    } else {
        PlanVerdict::MayRun
    }
}

/// The plan for people.
pub(super) fn render_plan(plan: &Plan, rules: &[RuleResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for experiment `{}` ({})",
        plan.experiment,
        plan.file.display()
    );
    let _ = writeln!(
        s,
        "  mode {}, region {}, seed {}, policy {}",
        plan.mode.as_str(),
        plan.region,
        plan.seed,
        plan.policy
    );
    let _ = writeln!(s, "\nenvironment:");
    match &plan.environment {
        Some(env) => {
            let _ = writeln!(
                s,
                "  to create: `{}`, a clone of `{}` with {} instance(s), deleted when the run ends",
                env.name, env.source, env.capacity
            );
            if let Some(t) = &plan.traffic {
                if let Some(c) = &t.control {
                    let _ = writeln!(
                        s,
                        "  and its control: `{c}`, the same size, never injected; the experiment copy is judged against it"
                    );
                }
                let _ = writeln!(s, "  traffic: {}", t.note);
                for r in &t.rules {
                    let _ = writeln!(s, "    {}", r.rule);
                    let _ = writeln!(s, "      before: {}", r.before);
                    let _ = writeln!(
                        s,
                        "      during: {}  ({:.2}% of its requests reach the experiment copy)",
                        r.during,
                        r.experiment_reach * 100.0
                    );
                }
                if !t.command.is_empty() {
                    let _ = writeln!(s, "    load generator: {}", t.command.join(" "));
                }
            }
        }
        None => {
            let _ = writeln!(
                s,
                "  none created: in place, the faults hit the real resources below"
            );
        }
    }
    let _ = writeln!(s, "\nguardrails (any breach aborts the run):");
    for g in &plan.guardrails {
        let worst = g
            .worst_case_abort
            .as_ref()
            .map(|w| format!(" (worst-case time to abort {w})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  [{}] {}: {}: {}{worst}",
            if g.ready { "ready" } else { "NOT READY" },
            g.name,
            g.check,
            g.detail
        );
    }
    let limit = plan
        .preflight
        .max_abort_delay_ms
        .map(|m| format!(", timing.max_abort_delay {}", crate::util::ms_text(m)))
        .unwrap_or_default();
    match plan.preflight.worst_case_abort_ms {
        Some(w) => {
            let _ = writeln!(
                s,
                "  worst-case time from a breach to the abort: {}{limit}",
                crate::util::ms_text(w)
            );
        }
        None => {
            let _ = writeln!(s, "  worst-case time from a breach to the abort: unknown{limit}");
        }
    }
    if let Some(why) = plan.preflight.refusal() {
        let _ = writeln!(s, "  REFUSED: {why}");
    }
    if !plan.steady_state.is_empty() {
        let _ = writeln!(s, "\nsteady state:");
        for p in &plan.steady_state {
            let missing = p
                .missing
                .as_ref()
                .map(|m| format!("; missing: {m}"))
                .unwrap_or_default();
            let _ = writeln!(s, "  {}: {} ({}{missing})", p.name, p.check, p.detail);
        }
    }
    let _ = writeln!(s, "\nfaults (timeline):");
    for f in &plan.faults {
        let held = match &f.duration {
            Some(d) => format!("held {d}, then rolled back"),
            None => "held until every timed fault has ended, then rolled back".to_string(),
        };
        let _ = writeln!(s, "  `{}` ({}): starts {}; {}", f.name, f.action, f.starts, held);
        match &f.targets {
            Targets::Instances(r) => {
                let _ = writeln!(
                    s,
                    "    targets: {} of {} eligible instance(s)",
                    r.selected.len(),
                    r.matched
                );
                for i in &r.selected {
                    let _ = writeln!(
                        s,
                        "      {}  {}  {}  {}",
                        i.id,
                        i.name.as_deref().unwrap_or("-"),
                        if i.az.is_empty() { "-" } else { &i.az },
                        i.autoscaling_group.as_deref().unwrap_or("-")
                    );
                }
                if !r.protected.is_empty() {
                    let _ = writeln!(s, "    protected, never touched: {}", r.protected.join(", "));
                }
                if !r.ineligible.is_empty() {
                    let _ = writeln!(
                        s,
                        "    not eligible in their current state: {}",
                        r.ineligible.join(", ")
                    );
                }
            }
            Targets::Clone(c) => {
                let _ = writeln!(
                    s,
                    "    targets: select {} of the clone's {} instances: {} instance(s), chosen once the clone is ready",
                    c.rule(),
                    c.of,
                    c.count
                );
            }
            Targets::Resources(r) => {
                let _ = writeln!(
                    s,
                    "    acts on {} {} ({})",
                    r.kind.replace('_', " "),
                    r.names.join(", "),
                    r.detail
                );
            }
        }
        for call in &f.calls {
            let _ = writeln!(s, "    calls {call}");
        }
    }
    let _ = writeln!(
        s,
        "  guardrails are checked every {}; the whole run lasts at most {}",
        plan.timing.interval, plan.timing.max_duration
    );
    let _ = writeln!(
        s,
        "\nsafety policy ({}, sha256 {}):",
        plan.policy,
        &plan.policy_sha256[..12.min(plan.policy_sha256.len())]
    );
    for r in rules {
        let _ = writeln!(
            s,
            "  {} {}: {}",
            if r.passed { "pass" } else { "FAIL" },
            r.rule,
            r.detail
        );
        if !r.passed {
            if !r.resources.is_empty() {
                let _ = writeln!(s, "       resources: {}", r.resources.join(", "));
            }
            if let Some(fix) = &r.fix {
                let _ = writeln!(s, "       fix: {fix}");
            }
        }
    }
    let _ = writeln!(s, "\nplan hash: {}", plan.hash);
    let _ = writeln!(
        s,
        "run exactly this plan: gameday run {} --seed {} --approve {}",
        plan.file.display(),
        plan.seed,
        plan.hash
    );
    s
}
