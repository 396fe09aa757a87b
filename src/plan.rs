//! The plan: what a run would do, found with read-only calls only.
//!
//! `gameday plan` prints it (the dry run), and `gameday run` builds the same
//! plan as its preflight, so what a person reviewed is what the gate checks
//! and what is injected. Building a plan checks that every guardrail alarm can
//! fire and resolves every fault's targets: in in-place mode to real instance
//! ids (chosen with the run's seed); in parallel mode, where targets live in a
//! clone that does not exist yet, as "N of the clone's M instances".
//!
//! The plan's [`Plan::hash`] binds an approval to exactly this plan: the
//! experiment file's text, the policy's text, the region and the resolved
//! targets (the eligible instances of each fault and how many are chosen).
//! If any of them changes, the hash changes and an old approval no longer fits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::aws::{Aws, AwsError};
use crate::experiment::{During, Experiment, FaultSpec, Probe, ProbeKind, Selection, Traffic};
use crate::faults::{On, ResourceFault, Scope, Step};
use crate::journal::ProbeRole;
use crate::model::{Instance, Mode, Resolved, Vars};
use crate::observe::{self, Preflight};
use crate::policy::{LoadedPolicy, PolicySource};
use crate::targets::{self, TargetError};
use crate::util::format_duration;

/// How many hex digits of the SHA-256 make the plan hash a person copies.
const HASH_LEN: usize = 16;

/// What a run would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The experiment's name.
    pub experiment: String,
    /// Its file.
    pub file: PathBuf,
    /// SHA-256 of the file's text.
    pub file_sha256: String,
    /// The policy's file, or `built-in`.
    pub policy: String,
    /// SHA-256 of the policy's text.
    pub policy_sha256: String,
    /// The region the run acts in.
    pub region: String,
    /// parallel or in-place.
    pub mode: Mode,
    /// The seed of the random choices shown; `--seed` makes a run choose the same.
    pub seed: u64,
    /// Parallel mode: the temporary environment that would be created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<CloneEnvironment>,
    /// Parallel mode: what reaches the copies (`environment.traffic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficPlan>,
    /// Guardrails and whether each can protect the run now.
    pub guardrails: Vec<ProbeStatus>,
    /// The guardrail preflight, with worst-case times to abort.
    pub preflight: Preflight,
    /// Steady-state probes.
    pub steady_state: Vec<ProbeStatus>,
    /// Each fault with its targets and place in the timeline.
    pub faults: Vec<FaultPlan>,
    /// The run's timing.
    pub timing: TimingPlan,
    /// Size of every Auto Scaling group a target belongs to (for blast-radius percent).
    pub group_sizes: BTreeMap<String, usize>,
    /// Binds an approval to this plan; see the module docs.
    pub hash: String,
}

/// The temporary copy a parallel run creates.
#[derive(Debug, Clone, Serialize)]
pub struct CloneEnvironment {
    /// The group copied.
    pub source: String,
    /// The copy's name (the run id is chosen when the run starts).
    pub name: String,
    /// Instances in the copy.
    pub capacity: u32,
}

/// What reaches the parallel copies.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficPlan {
    /// `share`, `load` or `none`.
    pub form: &'static str,
    /// `share`: what each copy gets, e.g. `2%`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// The control copy's name (with either form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// `share`: the source's target group (name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_target_group: Option<String>,
    /// `share`: its load balancers (ARNs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<String>,
    /// `share`: every listener rule to change, with its weights before and during.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RulePlan>,
    /// `share`: the largest share of one rule's requests that reaches the experiment copy (0..1).
    pub experiment_reach: f64,
    /// `load`: the load generator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// What it means, in a sentence.
    pub note: String,
}

/// One listener rule the run would change.
#[derive(Debug, Clone, Serialize)]
pub struct RulePlan {
    /// The rule in words.
    pub rule: String,
    /// Its forward now: target groups and weights.
    pub before: String,
    /// Its forward during the run.
    pub during: String,
    /// The share of its requests the experiment copy gets (0..1).
    pub experiment_reach: f64,
}

impl TrafficPlan {
    /// `; up to X% of the requests of a listener rule reach the experiment copy`, or nothing.
    pub fn users_sentence(&self) -> String {
        if self.form == "share" {
            format!(
                "; up to {:.2}% of a listener rule's requests reach the experiment copy (the same again the control)",
                self.experiment_reach * 100.0
            )
        } else {
            String::new()
        }
    }
}

/// What reaches the copies, read-only: for `share`, each rule forwarding to
/// the source's target group and its weights before and during the run.
async fn traffic_plan(aws: &Aws, exp: &Experiment, source: &str) -> Result<TrafficPlan, PlanError> {
    use crate::environment::traffic;
    let control = Some(crate::environment::control_name("<run-id>", source));
    match &exp.environment.traffic {
        None => Ok(TrafficPlan {
            form: "none",
            share: None,
            control: None,
            source_target_group: None,
            load_balancers: Vec::new(),
            rules: Vec::new(),
            experiment_reach: 0.0,
            command: Vec::new(),
            note: "the copy receives no traffic (no `environment.traffic`): metric probes on it will see no data, and the source, not a control of the same size, is what it is compared with".into(),
        }),
        Some(Traffic::Load(l)) => Ok(TrafficPlan {
            form: "load",
            share: None,
            control,
            source_target_group: None,
            load_balancers: Vec::new(),
            rules: Vec::new(),
            experiment_reach: 0.0,
            command: l.command.clone(),
            note: "no real user reaches the copies: the load generator is started once both are healthy, told their addresses (GAMEDAY_EXPERIMENT_TARGETS, GAMEDAY_CONTROL_TARGETS), and stopped at teardown".into(),
        }),
        Some(Traffic::Share(share)) => {
            let found = traffic::discover(aws, source)
                .await
                .map_err(|e| PlanError::Traffic(e.to_string()))?;
            let (e, c) = ("gd-<run-id>-e", "gd-<run-id>-c");
            let (e_arn, c_arn) = (format!(":targetgroup/{e}/"), format!(":targetgroup/{c}/"));
            let mut rules = Vec::new();
            let mut reach_max: f64 = 0.0;
            for r in &found.rules {
                let (during, reach) =
                    traffic::shifted(&r.actions, found.arn(), &e_arn, &c_arn, share.value, &r.rule.label)
                        .map_err(|e| PlanError::Traffic(e.to_string()))?;
                reach_max = reach_max.max(reach);
                rules.push(RulePlan {
                    rule: r.rule.label.clone(),
                    before: traffic::describe_actions(&r.actions),
                    during: traffic::describe_actions(&during),
                    experiment_reach: reach,
                });
            }
            Ok(TrafficPlan {
                form: "share",
                share: Some(share.value.to_string()),
                control,
                source_target_group: Some(traffic::tg_name(found.arn()).to_string()),
                load_balancers: found.load_balancers.clone(),
                rules,
                experiment_reach: reach_max,
                command: Vec::new(),
                note: format!(
                    "real users: each copy gets {} of the requests each rule sends `{}`; faults go into the experiment copy only",
                    share.value,
                    traffic::tg_name(found.arn())
                ),
            })
        }
    }
}

/// A guardrail or steady-state probe as the plan sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    /// The probe's label.
    pub name: String,
    /// What it checks.
    pub check: String,
    /// Whether it is ready to protect the run (alarms: exists, not in ALARM, has data, watches this run).
    pub ready: bool,
    /// Worst-case time from a real breach to the abort (guardrails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_case_abort: Option<String>,
    /// A metric probe's missing-data rule in words, e.g. `breach after 3s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// Why it is not ready, or what was found.
    pub detail: String,
}

/// One fault of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct FaultPlan {
    /// The fault's name.
    pub name: String,
    /// Its action.
    pub action: String,
    /// When it starts, in words.
    pub starts: String,
    /// The faults it waits for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub start_after: Vec<String>,
    /// How long it is held (`None`: until every timed fault has ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// What it hits.
    pub targets: Targets,
    /// The mutating calls it will make, by operation (in place, and for
    /// group and alarm faults; a copy's instances are chosen later).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
}

/// The planned calls in words, one line per operation in order of first use:
/// `ec2:StopInstances: 5 call(s) on 500 resource(s); undo ec2:StartInstances`.
fn calls(steps: &[Step]) -> Vec<String> {
    let mut ops: Vec<(&str, usize, usize, &'static str)> = Vec::new();
    for st in steps {
        match ops.iter_mut().find(|o| o.0 == st.operation) {
            Some(o) => {
                o.1 += 1;
                o.2 += st.resources.len();
            }
            None => ops.push((&st.operation, 1, st.resources.len(), st.undo_operation())),
        }
    }
    ops.into_iter()
        .map(|(op, n, r, undo)| format!("{op}: {n} call(s) on {r} resource(s); undo {undo}"))
        .collect()
}

/// A fault's targets.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Targets {
    /// In place: the real instances, resolved and chosen.
    Instances(Resolved),
    /// Parallel: a share of the clone, chosen when the clone exists.
    Clone(CloneTargets),
    /// Group and alarm faults: the groups (the copy in parallel mode) or the
    /// alarm they act on, with the calls planned.
    Resources(ResourceTargets),
}

/// What a group or alarm fault acts on.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceTargets {
    /// `autoscaling_group` or `alarm`.
    pub kind: String,
    /// The groups, or the one alarm.
    pub names: Vec<String>,
    /// Whether they exist now (a copy does not exist yet and counts as found).
    pub found: bool,
    /// What was found, in words.
    pub detail: String,
    /// Instances the fault takes out of service (capacity-drop), for the blast radius.
    pub instances: usize,
    /// The calls, as planned (their undos' recorded state is read just before each call).
    pub steps: Vec<Step>,
}

/// A fault's share of the clone.
#[derive(Debug, Clone, Serialize)]
pub struct CloneTargets {
    /// The selection rule.
    pub select: Selection,
    /// How many instances it will hit.
    pub count: usize,
    /// Of how many.
    pub of: u32,
}

impl CloneTargets {
    /// The selection as written in experiments: `all`, `count 2`, `33%`.
    pub fn rule(&self) -> String {
        match self.select {
            Selection::All => "all".to_string(),
            Selection::Count(n) => format!("count {n}"),
            Selection::Percent(p) => format!("{p}%"),
        }
    }
}

impl Targets {
    /// How many instances the fault hits.
    pub fn count(&self) -> usize {
        match self {
            Targets::Instances(r) => r.selected.len(),
            Targets::Clone(c) => c.count,
            Targets::Resources(r) => r.instances,
        }
    }

    /// Whether the fault has nothing to act on (the run is refused unless
    /// its target says `allow_empty: true`).
    pub fn is_empty(&self) -> bool {
        match self {
            Targets::Instances(r) => r.selected.is_empty(),
            Targets::Clone(c) => c.count == 0,
            Targets::Resources(r) => !r.found || r.names.is_empty(),
        }
    }
}

/// The groups or the alarm a group or alarm fault acts on: its target's
/// `autoscaling_group` (expanded with `group_vars`) or `default_group`; the
/// alarm of its params, expanded with `alarm_vars` (alarms exist before the
/// run, so `${asg}` there is the group as written, as for guardrails).
pub fn resource_names(
    f: &FaultSpec,
    group_vars: &Vars,
    alarm_vars: &Vars,
    default_group: Option<&str>,
) -> Vec<String> {
    match f.fault.scope() {
        Scope::Instances => Vec::new(),
        Scope::Groups => f
            .target
            .autoscaling_group
            .as_deref()
            .map(|g| group_vars.expand(g))
            .or_else(|| default_group.map(str::to_string))
            .into_iter()
            .collect(),
        Scope::Alarm => f
            .fault
            .alarm()
            .map(|a| alarm_vars.expand(&a.value))
            .into_iter()
            .collect(),
    }
}

/// Reads what a group or alarm fault would act on (read-only) and plans its
/// calls. `copy` names the parallel copy and its capacity, which do not exist yet.
async fn resource_targets(
    aws: &Aws,
    f: &FaultSpec,
    fault: &ResourceFault,
    names: Vec<String>,
    copy: Option<u32>,
    group_sizes: &mut BTreeMap<String, usize>,
) -> Result<ResourceTargets, PlanError> {
    let steps = fault.plan(&names);
    let fail = |source| PlanError::Targets {
        fault: f.name.value.clone(),
        source,
    };
    match fault {
        ResourceFault::Alarm(_) => {
            let found = crate::aws::describe_alarms(aws, &names)
                .await
                .map_err(|e| fail(TargetError::Aws(e)))?;
            let detail = match names.first().and_then(|n| found.get(n)) {
                Some(a) => format!("now {}; set back to it at rollback", a.state),
                None => format!("alarm `{}` not found", names.join(", ")),
            };
            Ok(ResourceTargets {
                kind: "alarm".into(),
                found: names.iter().all(|n| found.contains_key(n)),
                names,
                detail,
                instances: 0,
                steps,
            })
        }
        ResourceFault::Groups(_) => {
            let mut instances = 0;
            let mut details = Vec::new();
            for g in &names {
                let desired = match copy {
                    Some(capacity) => capacity as usize,
                    None => {
                        let group = targets::existing_group(aws, g).await.map_err(fail)?;
                        group_sizes.insert(g.clone(), group.instances().len());
                        targets::desired_capacity(&group) as usize
                    }
                };
                let removed = fault.instances_removed(desired);
                instances += removed;
                details.push(if removed > 0 {
                    format!("{g}: desired {desired}, {removed} instance(s) removed")
                } else {
                    format!("{g}: desired {desired}")
                });
            }
            Ok(ResourceTargets {
                kind: "autoscaling_group".into(),
                names,
                found: true,
                detail: details.join("; "),
                instances,
                steps,
            })
        }
    }
}

/// The run's timing, as written.
#[derive(Debug, Clone, Serialize)]
pub struct TimingPlan {
    /// How often guardrails are checked.
    pub interval: String,
    /// The whole run's limit.
    pub max_duration: String,
}

/// Why a plan could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Guardrail alarms could not be read.
    #[error("cannot read the guardrail alarms: {0}")]
    Guardrails(AwsError),
    /// A fault's targets could not be resolved.
    #[error("fault `{fault}`: cannot resolve targets: {source}")]
    Targets {
        /// The fault.
        fault: String,
        /// Why.
        source: TargetError,
    },
    /// The parallel environment's source group could not be read.
    #[error("environment: {0}")]
    Environment(TargetError),
    /// The load balancer's traffic cannot be shared with the copies.
    #[error("environment.traffic: {0}")]
    Traffic(String),
}

/// Builds the plan for `exp`. Read-only: Describe calls only.
pub async fn build(
    aws: &Aws,
    exp: &Experiment,
    policy: &LoadedPolicy,
    vars: &Vars,
    seed: u64,
) -> Result<Plan, PlanError> {
    let preflight = observe::preflight(aws, exp, vars)
        .await
        .map_err(PlanError::Guardrails)?;
    let guardrails = preflight
        .checks
        .iter()
        .zip(exp.guardrails.iter())
        .map(|(c, p)| ProbeStatus {
            name: c.guardrail.clone(),
            check: describe(p, vars),
            ready: c.ok,
            worst_case_abort: c.worst_case_abort_ms.map(crate::util::ms_text),
            missing: c.missing.clone(),
            detail: c.detail.clone(),
        })
        .collect();
    let steady_state = exp
        .steady_state
        .iter()
        .map(|p| ProbeStatus {
            name: p.name.clone(),
            check: describe(p, vars),
            ready: true,
            worst_case_abort: None,
            missing: observe::watched(p, ProbeRole::SteadyState, vars, vars, false, exp.timing.interval)
                .missing_rule()
                .map(|r| format!("{r} while faults are active")),
            detail: match (&p.kind, p.during) {
                (ProbeKind::AlarmFires { .. }, _) => "must fire while faults are active and clear after rollback".to_string(),
                (_, During::Hold) => "must hold during the baseline, while faults are active, and after recovery".to_string(),
                (_, During::Recover) => "must hold during the baseline and again within timing.recovery; may deviate while faults are active".to_string(),
            },
        })
        .collect();

    let mut environment = None;
    let mut traffic = None;
    let mut faults = Vec::new();
    let mut group_sizes = BTreeMap::new();
    match (exp.environment.mode, exp.environment.autoscaling_group.as_deref()) {
        (Mode::Parallel, Some(source)) => {
            let capacity = match exp.environment.capacity {
                Some(c) => c,
                None => {
                    let group = targets::existing_group(aws, source)
                        .await
                        .map_err(PlanError::Environment)?;
                    targets::desired_capacity(&group)
                }
            };
            let name = format!("gd-<run-id>-{source}");
            group_sizes.insert(name.clone(), capacity as usize);
            environment = Some(CloneEnvironment {
                source: source.to_string(),
                name: name.clone(),
                capacity,
            });
            traffic = Some(traffic_plan(aws, exp, source).await?);
            for f in &exp.faults {
                if let On::Resources(fault) = &f.fault.on {
                    let names = resource_names(
                        f,
                        &Vars {
                            asg: Some(name.clone()),
                            ..vars.clone()
                        },
                        vars,
                        Some(&name),
                    );
                    let r = resource_targets(aws, f, fault, names, Some(capacity), &mut group_sizes).await?;
                    faults.push(fault_plan(f, Targets::Resources(r)));
                    continue;
                }
                let count = f.target.select.how_many(capacity as usize);
                faults.push(fault_plan(
                    f,
                    Targets::Clone(CloneTargets {
                        select: f.target.select,
                        count,
                        of: capacity,
                    }),
                ));
            }
        }
        _ => {
            let mut rng = StdRng::seed_from_u64(seed);
            let default_group = exp.environment.autoscaling_group.as_deref();
            for f in &exp.faults {
                let fault = match &f.fault.on {
                    On::Resources(fault) => {
                        let names = resource_names(f, vars, vars, default_group);
                        let r = resource_targets(aws, f, fault, names, None, &mut group_sizes).await?;
                        faults.push(fault_plan(f, Targets::Resources(r)));
                        continue;
                    }
                    On::Instances(fault) => fault,
                };
                let resolved = targets::resolve(
                    aws,
                    &f.target,
                    fault,
                    default_group,
                    None,
                    vars,
                    &policy.policy.protected_tags,
                    &mut rng,
                )
                .await
                .map_err(|source| PlanError::Targets {
                    fault: f.name.value.clone(),
                    source,
                })?;
                let planned = calls(&fault.plan(&resolved.selected));
                let mut fp = fault_plan(f, Targets::Instances(resolved));
                fp.calls = planned;
                faults.push(fp);
            }
            let groups: BTreeSet<String> = selected(&faults)
                .filter_map(|i| i.autoscaling_group.clone())
                .collect();
            for g in groups {
                // A group deleted since resolution has no size; the blast-radius rule then says so.
                if let Ok(ids) = targets::group_instances(aws, &g).await {
                    group_sizes.insert(g, ids.len());
                }
            }
        }
    }

    let mut plan = Plan {
        experiment: exp.name.clone(),
        file: exp.file.clone(),
        file_sha256: crate::util::sha256_hex(exp.source.as_bytes()),
        policy: match &policy.source {
            PolicySource::File(p) => p.display().to_string(),
            PolicySource::BuiltIn => "built-in".to_string(),
        },
        policy_sha256: policy.sha256.clone(),
        region: aws.region.clone(),
        mode: exp.environment.mode,
        seed,
        environment,
        traffic,
        guardrails,
        preflight,
        steady_state,
        faults,
        timing: TimingPlan {
            interval: format_duration(exp.timing.interval),
            max_duration: format_duration(exp.timing.max_duration),
        },
        group_sizes,
        hash: String::new(),
    };
    plan.hash = plan.approval_hash();
    Ok(plan)
}

impl Plan {
    /// The hash over what an approval covers (see the module docs). The random
    /// choice itself is not part of it: an approval covers choosing `count`
    /// among exactly these eligible instances, and `--seed` replays the choice shown.
    fn approval_hash(&self) -> String {
        let targets: Vec<serde_json::Value> = self
            .faults
            .iter()
            .map(|f| match &f.targets {
                Targets::Instances(r) => {
                    serde_json::json!({ "fault": f.name, "eligible": r.eligible, "count": r.selected.len() })
                }
                Targets::Clone(c) => {
                    serde_json::json!({ "fault": f.name, "clone_count": c.count, "of": c.of })
                }
                Targets::Resources(r) => {
                    serde_json::json!({ "fault": f.name, "resources": r.names, "instances": r.instances })
                }
            })
            .collect();
        let doc = serde_json::json!({
            "plan_hash_version": 1,
            "experiment_sha256": self.file_sha256,
            "policy_sha256": self.policy_sha256,
            "region": self.region,
            "environment": self.environment.as_ref().map(|e| serde_json::json!({ "source": e.source, "capacity": e.capacity })),
            "targets": targets,
        });
        // The listener rules a run would change are part of what is approved.
        let doc = match self.traffic.as_ref().filter(|t| !t.rules.is_empty()) {
            Some(t) => {
                let rules: Vec<_> = t.rules.iter().map(|r| (&r.rule, &r.before, &r.during)).collect();
                serde_json::json!({ "plan": doc, "traffic_rules": rules })
            }
            None => doc,
        };
        let mut hash = crate::util::sha256_hex(doc.to_string().as_bytes());
        hash.truncate(HASH_LEN);
        hash
    }

    /// Every instance id the plan would hit, for confirmation prompts.
    pub fn target_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = selected(&self.faults).map(|i| i.id.clone()).collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Plan {
    /// Every Auto Scaling group a group fault acts on (locked like targets in place).
    pub fn target_groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .faults
            .iter()
            .filter_map(|f| match &f.targets {
                Targets::Resources(r) if r.kind == "autoscaling_group" => Some(r.names.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Every instance chosen by `faults` (in-place plans only; a clone has no ids yet).
fn selected(faults: &[FaultPlan]) -> impl Iterator<Item = &Instance> {
    faults.iter().flat_map(|f| match &f.targets {
        Targets::Instances(r) => r.selected.as_slice(),
        Targets::Clone(_) | Targets::Resources(_) => &[],
    })
}

fn fault_plan(f: &crate::experiment::FaultSpec, targets: Targets) -> FaultPlan {
    let start_after: Vec<String> = f.start_after.iter().map(|s| s.value.clone()).collect();
    let starts = match start_after.as_slice() {
        [] => "at the start of the fault phase".to_string(),
        [one] => format!("once `{one}` is injected"),
        many => format!(
            "once {} are injected",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let calls = match &targets {
        Targets::Resources(r) => calls(&r.steps),
        // In place, the caller plans the selected instances' calls; a
        // copy's instances are chosen later.
        Targets::Instances(_) | Targets::Clone(_) => Vec::new(),
    };
    FaultPlan {
        name: f.name.value.clone(),
        action: f.action.value.clone(),
        starts,
        start_after,
        duration: f.duration.map(format_duration),
        targets,
        calls,
    }
}

/// A probe in words, variables expanded as the plan knows them.
fn describe(p: &Probe, vars: &Vars) -> String {
    observe::watched(
        p,
        ProbeRole::SteadyState,
        vars,
        vars,
        false,
        std::time::Duration::ZERO,
    )
    .info(None)
    .check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Instance;

    fn plan(eligible: &[&str], selected: &[&str], seed: u64, policy_sha256: &str) -> Plan {
        let inst = |id: &&str| Instance {
            id: id.to_string(),
            az: "us-east-1a".into(),
            state: "running".into(),
            autoscaling_group: None,
            name: None,
            vpc_id: None,
        };
        let resolved = Resolved {
            matched: eligible.len(),
            eligible: eligible.iter().map(|s| s.to_string()).collect(),
            protected: Vec::new(),
            ineligible: Vec::new(),
            selected: selected.iter().map(inst).collect(),
        };
        let mut p = Plan {
            experiment: "e".into(),
            file: "e.yaml".into(),
            file_sha256: "f".into(),
            policy: "built-in".into(),
            policy_sha256: policy_sha256.into(),
            region: "us-east-1".into(),
            mode: Mode::InPlace,
            seed,
            environment: None,
            traffic: None,
            guardrails: Vec::new(),
            preflight: Preflight {
                checks: Vec::new(),
                worst_case_abort_ms: None,
                max_abort_delay_ms: None,
            },
            steady_state: Vec::new(),
            faults: vec![FaultPlan {
                name: "stop".into(),
                action: "ec2:stop-instances".into(),
                starts: String::new(),
                start_after: Vec::new(),
                duration: None,
                targets: Targets::Instances(resolved),
                calls: Vec::new(),
            }],
            timing: TimingPlan {
                interval: "5s".into(),
                max_duration: "30m".into(),
            },
            group_sizes: BTreeMap::new(),
            hash: String::new(),
        };
        p.hash = p.approval_hash();
        p
    }

    #[test]
    fn the_hash_binds_the_eligible_targets_and_the_policy_not_the_random_choice() {
        let base = plan(&["i-1", "i-2", "i-3"], &["i-1"], 1, "p");
        assert_eq!(base.hash.len(), HASH_LEN);
        assert_eq!(
            base.hash,
            plan(&["i-1", "i-2", "i-3"], &["i-2"], 2, "p").hash,
            "another seed's choice among the same targets"
        );
        assert_ne!(
            base.hash,
            plan(&["i-1", "i-2", "i-4"], &["i-1"], 1, "p").hash,
            "an instance was replaced"
        );
        assert_ne!(
            base.hash,
            plan(&["i-1", "i-2", "i-3"], &["i-1", "i-2"], 1, "p").hash,
            "more instances are chosen"
        );
        assert_ne!(
            base.hash,
            plan(&["i-1", "i-2", "i-3"], &["i-1"], 1, "q").hash,
            "the policy changed"
        );
    }
}
