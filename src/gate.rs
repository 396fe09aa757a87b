//! The safety gate: every rule of the policy checked against a resolved plan,
//! before anything is created or injected.
//!
//! The gate never stops at the first failure: a refusal lists every rule that
//! failed, the resources involved, and how to change the experiment or the
//! policy, so one round of edits fixes everything. `gameday plan` shows the
//! same results with the passing rules too.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::{SignedDuration, Timestamp};

use crate::experiment::{Experiment, ProbeKind};
use crate::model::Mode;
use crate::model::RuleResult;
use crate::plan::{Plan, Targets};
use crate::policy::account::Account;
use crate::policy::{Allowed, LoadedPolicy, Policy, Windows, describe_day};
use crate::util::format_duration;

/// The action that cannot be rolled back, which in-place runs need explicit leave for.
const TERMINATE: &str = "ec2:terminate-instances";

/// How the operator approved (or did not approve) this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// No approval was given (and no terminal to ask on).
    Missing,
    /// `--approve <hash>`, or a confirmation typed on the terminal for the plan with this hash.
    Hash(String),
    /// The operator was asked on the terminal and did not confirm.
    Declined,
    /// `gameday plan`: nothing will run; the rule says whether approval will be needed.
    DryRun,
}

/// Everything the gate needs besides the plan.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The policy in force.
    pub policy: LoadedPolicy,
    /// The account, when known without an AWS call.
    pub account: Option<Account>,
    /// The clock for time windows; `None`: the real time. Injected by tests.
    pub now: Option<Timestamp>,
    /// The operator's approval.
    pub approval: Approval,
}

impl Admission {
    /// The time the windows are checked at.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}

/// Why the policy wants a person to approve this run, if it does.
pub fn approval_needed(policy: &Policy, exp: &Experiment) -> Option<String> {
    match exp.environment.mode {
        Mode::InPlace if policy.in_place.requires_approval => {
            Some("the policy requires approval for in-place runs (in_place.requires_approval)".into())
        }
        Mode::Parallel if policy.parallel_requires_approval => {
            Some("the policy requires approval for parallel runs (parallel.requires_approval)".into())
        }
        Mode::Parallel
            if policy.traffic_requires_approval
                && exp.environment.traffic.as_ref().is_some_and(|t| t.share().is_some()) =>
        {
            Some("the run routes real users to its copies and the policy requires approval for that (parallel.requires_approval_for_traffic)".into())
        }
        _ => None,
    }
}

/// Checks every rule, approval included, and returns them all, passing or not.
pub fn check(adm: &Admission, exp: &Experiment, plan: &Plan) -> Vec<RuleResult> {
    let policy = &adm.policy.policy;
    let mut out = vec![
        regions(policy, plan),
        accounts(policy, adm.account.as_ref()),
        actions(policy, exp),
        in_place(policy, exp),
        terminate(policy, exp),
        protected(policy, plan),
        per_fault(policy, plan),
        percent_of_group(policy, plan),
        traffic_share(policy, exp, plan),
    ];
    out.extend(windows(&policy.windows, adm.now(), exp.timing.max_duration));
    out.push(guardrails(policy, exp));
    out.push(duration(policy, exp));
    out.push(approval(policy, exp, plan, &adm.approval));
    out
}

/// Whether every rule passed.
pub fn admitted(rules: &[RuleResult]) -> bool {
    rules.iter().all(|r| r.passed)
}

/// The failed rules, one per line, with resources and fixes: what a refusal prints.
pub fn refusal(policy: &LoadedPolicy, rules: &[RuleResult]) -> String {
    let failed: Vec<&RuleResult> = rules.iter().filter(|r| !r.passed).collect();
    let mut s = format!(
        "refused by the safety policy ({}): {} rule(s) failed, nothing was touched",
        policy.source,
        failed.len()
    );
    for r in failed {
        s += &format!("\n  - {}: {}", r.rule, r.detail);
        if !r.resources.is_empty() {
            s += &format!("\n    resources: {}", r.resources.join(", "));
        }
        if let Some(fix) = &r.fix {
            s += &format!("\n    fix: {fix}");
        }
    }
    s
}

fn regions(policy: &Policy, plan: &Plan) -> RuleResult {
    if policy.regions.allows(&plan.region) {
        RuleResult::pass("regions", format!("region {} is allowed", plan.region))
    } else {
        RuleResult::fail(
            "regions",
            format!("region {} is not in the policy's regions", plan.region),
            vec![plan.region.clone()],
            "run in an allowed region (--region), or add it to `regions` in the policy",
        )
    }
}

fn accounts(policy: &Policy, account: Option<&Account>) -> RuleResult {
    match (&policy.accounts, account) {
        (Allowed::Any, _) => RuleResult::pass("accounts", "any account is allowed"),
        (allowed, Some(a)) if allowed.allows(&a.id) => {
            RuleResult::pass("accounts", format!("account {} ({}) is allowed", a.id, a.source))
        }
        (_, Some(a)) => RuleResult::fail(
            "accounts",
            format!("account {} ({}) is not in the policy's accounts", a.id, a.source),
            vec![a.id.clone()],
            "use credentials for an allowed account, or add it to `accounts` in the policy",
        ),
        (_, None) => RuleResult::fail(
            "accounts",
            "the policy restricts accounts, and the account is not known without an AWS call",
            Vec::new(),
            "pass --account ID (or set GAMEDAY_ACCOUNT / AWS_ACCOUNT_ID), or use a profile with sso_account_id or role_arn",
        ),
    }
}

fn actions(policy: &Policy, exp: &Experiment) -> RuleResult {
    let bad: Vec<String> = exp
        .faults
        .iter()
        .filter(|f| !policy.actions.contains(&f.action.value))
        .map(|f| format!("{} ({})", f.name.value, f.action.value))
        .collect();
    if bad.is_empty() {
        RuleResult::pass("actions", "every fault's action is allowed")
    } else {
        RuleResult::fail(
            "actions",
            "the policy does not allow these faults' actions",
            bad,
            format!(
                "use an allowed action ({}), or add the action to `actions` in the policy",
                policy.actions.join(", ")
            ),
        )
    }
}

fn in_place(policy: &Policy, exp: &Experiment) -> RuleResult {
    match exp.environment.mode {
        Mode::Parallel => RuleResult::pass("in_place.allowed", "parallel mode: faults hit a temporary copy"),
        Mode::InPlace if policy.in_place.allowed => {
            RuleResult::pass("in_place.allowed", "in-place runs are allowed")
        }
        Mode::InPlace => RuleResult::fail(
            "in_place.allowed",
            "the experiment runs in place and the policy forbids in-place runs",
            Vec::new(),
            "use `environment.mode: parallel`, or set `in_place.allowed: true` in the policy",
        ),
    }
}

/// `parallel.max_traffic_share`: the share of real users each copy gets.
fn traffic_share(policy: &Policy, exp: &Experiment, plan: &Plan) -> RuleResult {
    const RULE: &str = "parallel.max_traffic_share";
    let max = policy.max_traffic_share;
    let Some(share) = exp.environment.traffic.as_ref().and_then(|t| t.share()) else {
        return RuleResult::pass(RULE, "no real traffic is routed to the copies");
    };
    let reach = plan
        .traffic
        .as_ref()
        .map(|t| t.users_sentence())
        .unwrap_or_default();
    if share.value <= max {
        RuleResult::pass(
            RULE,
            format!("each copy gets {} (at most {max}){reach}", share.value),
        )
    } else {
        RuleResult::fail(
            RULE,
            format!(
                "{}:{}: environment.traffic.share is {}, above the policy's {max}",
                exp.file.display(),
                share.loc,
                share.value
            ),
            Vec::new(),
            format!(
                "lower `environment.traffic.share` to {max} or less, or raise `parallel.max_traffic_share` in the policy"
            ),
        )
    }
}

fn terminate(policy: &Policy, exp: &Experiment) -> RuleResult {
    let uses: Vec<String> = exp
        .faults
        .iter()
        .filter(|f| f.action.value == TERMINATE)
        .map(|f| f.name.value.clone())
        .collect();
    if exp.environment.mode == Mode::Parallel || uses.is_empty() || policy.in_place.allow_terminate {
        RuleResult::pass(
            "in_place.allow_terminate",
            if uses.is_empty() {
                "no fault terminates instances".to_string()
            } else {
                "terminating instances is allowed here".to_string()
            },
        )
    } else {
        RuleResult::fail(
            "in_place.allow_terminate",
            format!("{TERMINATE} cannot be rolled back and the policy forbids it in place"),
            uses,
            "run it in parallel mode, or set `in_place.allow_terminate: true` in the policy",
        )
    }
}

fn protected(policy: &Policy, plan: &Plan) -> RuleResult {
    let tags: Vec<String> = policy
        .protected_tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut skipped = Vec::new();
    for f in &plan.faults {
        if let Targets::Instances(r) = &f.targets {
            skipped.extend(r.protected.iter().cloned());
        }
    }
    skipped.sort();
    skipped.dedup();
    let mut r = RuleResult::pass(
        "protected_tags",
        format!(
            "instances tagged {} are never targets; {} matching instance(s) left alone",
            if tags.is_empty() {
                "(none)".to_string()
            } else {
                tags.join(" or ")
            },
            skipped.len()
        ),
    );
    r.resources = skipped;
    r
}

fn per_fault(policy: &Policy, plan: &Plan) -> RuleResult {
    let max = policy.blast_radius.max_instances_per_fault as usize;
    let over: Vec<String> = plan
        .faults
        .iter()
        .filter(|f| f.targets.count() > max)
        .map(|f| format!("{} ({} instances)", f.name, f.targets.count()))
        .collect();
    if over.is_empty() {
        RuleResult::pass(
            "blast_radius.max_instances_per_fault",
            format!("every fault hits at most {max} instance(s)"),
        )
    } else {
        RuleResult::fail(
            "blast_radius.max_instances_per_fault",
            format!("faults would hit more than {max} instance(s)"),
            over,
            "narrow the fault's target (select: { count: N } or a smaller percent), or raise blast_radius.max_instances_per_fault in the policy",
        )
    }
}

fn percent_of_group(policy: &Policy, plan: &Plan) -> RuleResult {
    let max = policy.blast_radius.max_percent_of_group as usize;
    // Distinct instances hit per group, over every fault together: faults may
    // overlap in time, and two faults on one instance still hit one instance.
    let mut hit: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut outside_groups = Vec::new();
    for f in &plan.faults {
        match &f.targets {
            Targets::Instances(r) => {
                for i in &r.selected {
                    match &i.autoscaling_group {
                        Some(g) => {
                            if seen.insert((g.clone(), i.id.clone())) {
                                *hit.entry(g.clone()).or_default() += 1;
                            }
                        }
                        None => outside_groups.push(i.id.clone()),
                    }
                }
            }
            Targets::Clone(c) => {
                if let Some(env) = &plan.environment {
                    let e = hit.entry(env.name.clone()).or_default();
                    *e = (*e + c.count).min(c.of as usize);
                }
            }
            // A capacity drop takes instances out of its group without naming
            // them: counted on top, capped at the group's size.
            Targets::Resources(r) if r.instances > 0 => {
                for g in &r.names {
                    let size = plan.group_sizes.get(g).copied().unwrap_or(usize::MAX);
                    let e = hit.entry(g.clone()).or_default();
                    *e = (*e + r.instances / r.names.len().max(1)).min(size);
                }
            }
            Targets::Resources(_) => {}
        }
    }
    let mut over = Vec::new();
    let mut worst = 0;
    for (group, n) in &hit {
        let Some(&size) = plan.group_sizes.get(group) else {
            over.push(format!("{group} (size unknown)"));
            continue;
        };
        let percent = if size == 0 { 100 } else { (n * 100).div_ceil(size) };
        worst = worst.max(percent);
        if percent > max {
            over.push(format!("{group}: {n} of {size} instances ({percent}%)"));
        }
    }
    if over.is_empty() {
        let extra = if outside_groups.is_empty() {
            String::new()
        } else {
            format!("; {} target(s) belong to no group", outside_groups.len())
        };
        RuleResult::pass(
            "blast_radius.max_percent_of_group",
            format!("at most {worst}% of any group is hit (limit {max}%){extra}"),
        )
    } else {
        RuleResult::fail(
            "blast_radius.max_percent_of_group",
            format!("the run would hit more than {max}% of a group"),
            over,
            "select fewer instances (select: { count: N } or a smaller percent), or raise blast_radius.max_percent_of_group in the policy",
        )
    }
}

/// The window and freeze rules for a run starting at `now` that may last `max`.
pub(crate) fn windows(w: &Windows, now: Timestamp, max: Duration) -> Vec<RuleResult> {
    let zoned = now.to_zoned(w.time_zone.clone());
    let start = zoned.datetime();
    let end = SignedDuration::try_from(max)
        .ok()
        .and_then(|d| zoned.checked_add(d).ok())
        .map(|z| z.datetime())
        .unwrap_or(DateTime::MAX);
    let when = format!(
        "the run would start {} {} ({}) and may last until {} (timing.max_duration {})",
        describe_day(start.weekday()),
        start.strftime("%Y-%m-%d %H:%M"),
        w.time_zone_name,
        end.strftime("%Y-%m-%d %H:%M"),
        format_duration(max)
    );
    let allowed = if w.allowed.is_empty() {
        RuleResult::pass(
            "windows.allowed",
            "no time window is set: runs may happen at any time",
        )
    } else {
        let fits = w.allowed.iter().any(|win| {
            let day = start.date();
            let open = day.to_datetime(win.start);
            let close = match win.end {
                Some(e) => day.to_datetime(e),
                None => day
                    .tomorrow()
                    .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
                    .unwrap_or(DateTime::MAX),
            };
            win.days.contains(&start.weekday()) && open <= start && end <= close
        });
        let list: Vec<String> = w
            .allowed
            .iter()
            .map(|win| {
                format!(
                    "{} {}",
                    win.days
                        .iter()
                        .map(|d| describe_day(*d))
                        .collect::<Vec<_>>()
                        .join(","),
                    win.text
                )
            })
            .collect();
        if fits {
            RuleResult::pass("windows.allowed", format!("{when}, inside an allowed window"))
        } else {
            RuleResult::fail(
                "windows.allowed",
                format!("{when}, not inside one allowed window ({})", list.join("; ")),
                Vec::new(),
                "run inside a window (with time left for timing.max_duration), or change windows.allowed in the policy",
            )
        }
    };
    let frozen: Vec<String> = w
        .freeze
        .iter()
        .filter(|f| start.date() <= f.to && end.date() >= f.from)
        .map(|f| {
            let days = if f.from == f.to {
                f.from.to_string()
            } else {
                format!("{} to {}", f.from, f.to)
            };
            match &f.reason {
                Some(r) => format!("{days} ({r})"),
                None => days,
            }
        })
        .collect();
    let freeze = if frozen.is_empty() {
        RuleResult::pass("windows.freeze", "no freeze day falls within the run")
    } else {
        RuleResult::fail(
            "windows.freeze",
            format!("{when}, during a freeze"),
            frozen,
            "run after the freeze, or change windows.freeze in the policy",
        )
    };
    vec![allowed, freeze]
}

fn guardrails(policy: &Policy, exp: &Experiment) -> RuleResult {
    let alarms = exp
        .guardrails
        .iter()
        .filter(|g| matches!(g.kind, ProbeKind::Alarm { .. }))
        .count();
    if !policy.require_guardrails {
        RuleResult::pass(
            "require_guardrails",
            "the policy does not require an alarm guardrail",
        )
    } else if alarms > 0 {
        RuleResult::pass("require_guardrails", format!("{alarms} alarm guardrail(s)"))
    } else {
        RuleResult::fail(
            "require_guardrails",
            "the experiment has no alarm guardrail that could stop it",
            vec![exp.name.clone()],
            "add `guardrails: [{ alarm: <an alarm that watches user impact> }]` to the experiment",
        )
    }
}

fn duration(policy: &Policy, exp: &Experiment) -> RuleResult {
    let (max, asked) = (policy.max_experiment_duration, exp.timing.max_duration);
    if asked <= max {
        RuleResult::pass(
            "max_experiment_duration",
            format!(
                "timing.max_duration {} is within {}",
                format_duration(asked),
                format_duration(max)
            ),
        )
    } else {
        RuleResult::fail(
            "max_experiment_duration",
            format!(
                "timing.max_duration {} is longer than the policy's {}",
                format_duration(asked),
                format_duration(max)
            ),
            vec![exp.name.clone()],
            "shorten timing.max_duration in the experiment, or raise max_experiment_duration in the policy",
        )
    }
}

fn approval(policy: &Policy, exp: &Experiment, plan: &Plan, given: &Approval) -> RuleResult {
    const RULE: &str = "approval";
    let Some(why) = approval_needed(policy, exp) else {
        return RuleResult::pass(
            RULE,
            format!(
                "{} runs need no approval under this policy",
                exp.environment.mode.as_str()
            ),
        );
    };
    let review = format!(
        "review `gameday plan {}` and pass the hash it prints: --approve <hash>",
        exp.file.display()
    );
    match given {
        Approval::Hash(h) if *h == plan.hash => RuleResult::pass(RULE, format!("approved for plan {h}")),
        Approval::DryRun => RuleResult::pass(
            RULE,
            format!(
                "needed: {why}; approve this plan with `--approve {}` or confirm on a terminal",
                plan.hash
            ),
        ),
        Approval::Hash(h) => RuleResult::fail(
            RULE,
            format!(
                "the approval {h} is for another plan (this plan is {}): the experiment, the policy, the region or the targets changed since it was approved",
                plan.hash
            ),
            plan.target_ids(),
            review,
        ),
        Approval::Missing => RuleResult::fail(
            RULE,
            format!("{why}, and there is no terminal to ask on"),
            plan.target_ids(),
            review,
        ),
        Approval::Declined => RuleResult::fail(
            RULE,
            format!("{why}, and it was not confirmed on the terminal"),
            plan.target_ids(),
            "run again and type the experiment's name to confirm",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn windows_of(text: &str) -> Windows {
        let policy = format!(
            "version: 1\nregions: any\nactions: [ec2:stop-instances]\nprotected_tags: {{}}\nblast_radius: {{ max_instances_per_fault: 1, max_percent_of_group: 10 }}\nin_place: {{ allowed: true, requires_approval: false, allow_terminate: false }}\n{text}require_guardrails: true\nmax_experiment_duration: 1h\n"
        );
        crate::policy::load_str(Path::new("p.yaml"), &policy)
            .expect("valid policy")
            .windows
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn a_run_must_start_and_end_inside_a_window_in_the_policy_time_zone() {
        let w = windows_of(
            "windows:\n  time_zone: Europe/Paris\n  allowed:\n    - { days: [mon, tue, wed, thu, fri], hours: \"09:00-17:00\" }\n",
        );
        let thirty = Duration::from_secs(30 * 60);
        // Wednesday 2026-11-25 10:00 in Paris is 09:00Z.
        assert!(windows(&w, at("2026-11-25T09:00:00Z"), thirty)[0].passed);
        // 07:30Z is 08:30 in Paris: before the window opens.
        assert!(!windows(&w, at("2026-11-25T07:30:00Z"), thirty)[0].passed);
        // 15:45Z is 16:45 in Paris: the run could last past 17:00.
        assert!(!windows(&w, at("2026-11-25T15:45:00Z"), thirty)[0].passed);
        // Saturday.
        let sat = &windows(&w, at("2026-11-28T10:00:00Z"), thirty)[0];
        assert!(
            !sat.passed && sat.detail.contains("sat 2026-11-28 11:00 (Europe/Paris)"),
            "{}",
            sat.detail
        );
    }

    #[test]
    fn a_run_touching_a_freeze_day_is_refused() {
        let w = windows_of(
            "windows:\n  freeze:\n    - 2026-12-24\n    - { from: 2026-12-31, to: 2027-01-02, reason: new year }\n",
        );
        let hour = Duration::from_secs(3600);
        assert!(!windows(&w, at("2026-12-24T12:00:00Z"), hour)[1].passed);
        // Starts the day before, may run past midnight into the freeze.
        assert!(!windows(&w, at("2026-12-23T23:30:00Z"), hour)[1].passed);
        let ny = &windows(&w, at("2027-01-01T12:00:00Z"), hour)[1];
        assert!(
            !ny.passed && ny.resources == vec!["2026-12-31 to 2027-01-02 (new year)".to_string()],
            "{ny:?}"
        );
        assert!(windows(&w, at("2026-12-28T12:00:00Z"), hour)[1].passed);
    }
}
