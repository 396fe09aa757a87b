//! `gameday suite plan FILE` and `gameday suite run FILE`: a suite of
//! experiments as a readiness gate.
//!
//! Both start the same way: decode the suite, decode every experiment it
//! lists (nothing is touched if any is invalid), and build every
//! experiment's read-only plan (`plan::build`, the function behind `gameday
//! plan`). The suite's plan hash covers the suite file and every member's
//! plan hash in order, so one approval binds the whole suite exactly as
//! `run --approve` binds one experiment; `run` then hands each experiment the
//! approval of its own plan, and the engine's gate checks it again when the
//! experiment starts (a plan that changed in between is refused as stale).

mod plan;
mod run;

use std::collections::BTreeSet;
use std::path::Path;

use crate::experiment::Experiment;
use crate::gate::{self, Admission, Approval};
use crate::model::RuleResult;
use crate::plan::{Plan, Targets};
use crate::policy::LoadedPolicy;
use crate::policy::account::{self, Account};
use crate::suite::{self, Member, Suite};

use super::shared::{
    Prepared, account_of, build_plan, connect, connect_to, load_experiment, load_policy, plan_session,
};
use super::{AwsArgs, Error, PlanVerdict, SafetyArgs};

pub(super) use plan::plan;
pub(super) use run::{Shown, run, run_recorded};

/// How many hex digits of the SHA-256 make the suite's plan hash.
const HASH_LEN: usize = 16;

/// The suite of `file`: unreadable is a usage error, invalid an input error.
pub(super) fn load_suite(file: &Path) -> Result<Suite, Error> {
    suite::load(file).map_err(|e| match e {
        suite::LoadError::Invalid(errors) => Error::InvalidSuite {
            file: file.to_path_buf(),
            errors,
        },
        e => Error::UnreadableSuite(e),
    })
}

/// One experiment of the suite, decoded, with the policy in force for it.
pub(super) struct Loaded {
    pub(super) member: Member,
    pub(super) exp: Experiment,
    pub(super) policy: LoadedPolicy,
}

/// Decodes every experiment of the suite and finds each one's policy (as
/// `run FILE` would: `--policy`, else the one beside its folder, ...). Every
/// invalid experiment is reported before giving up.
pub(super) fn load_members(suite: &Suite, safety: &SafetyArgs) -> Result<Vec<Loaded>, Error> {
    let members = suite.experiments();
    let mut out = Vec::new();
    let mut invalid = 0;
    for m in &members {
        match load_experiment(&m.file) {
            Ok(exp) => out.push((m.clone(), exp)),
            Err(e @ Error::InvalidExperiment { .. }) => {
                invalid += 1;
                eprintln!("{}", errors_only(&e));
            }
            Err(e) => return Err(e),
        }
    }
    if invalid > 0 {
        return Err(Error::InvalidFiles {
            invalid,
            of: members.len(),
        });
    }
    out.into_iter()
        .map(|(member, exp)| {
            let policy = load_policy(safety.policy.as_deref(), Some(&member.file))?;
            Ok(Loaded { member, exp, policy })
        })
        .collect()
}

/// An invalid experiment's diagnostics without the "run again" hint (the
/// suite prints one for all).
fn errors_only(e: &Error) -> String {
    match e {
        Error::InvalidExperiment { errors, .. } => errors.to_string(),
        e => e.to_string(),
    }
}

/// Every experiment's plan, checked against its policy as a dry run.
pub(super) struct Planned {
    pub(super) loaded: Loaded,
    /// Where it acts: the entry's `aws:` over the experiment's.
    pub(super) target: crate::model::AwsTarget,
    /// Its clients (the target's region and role, for the plan).
    pub(super) aws: crate::aws::Aws,
    pub(super) plan: Plan,
    pub(super) rules: Vec<RuleResult>,
    pub(super) verdict: PlanVerdict,
    /// The account the policy's rule checks for it (its assumed role's, when it has one).
    pub(super) account: Option<Account>,
}

/// The suite, its experiments and their plans.
pub(super) struct SuitePlan {
    pub(super) suite: Suite,
    pub(super) members: Vec<Planned>,
    /// The suite's approval hash (see the module docs).
    pub(super) hash: String,
    /// The command line's AWS settings: runs whose entry names a role assume it from them.
    pub(super) connect: crate::aws::ConnectOptions,
    pub(super) seed: u64,
}

/// Loads the suite and its experiments, connects, and plans every
/// experiment with `seed` (read-only calls only).
pub(super) async fn build(
    file: &Path,
    seed: u64,
    safety: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Result<SuitePlan, Error> {
    let suite = load_suite(file)?;
    let loaded = load_members(&suite, safety)?;
    let aws = connect(aws_args).await?;
    let account = account::detect(safety.account.as_deref(), aws_args.profile.as_deref());
    let mut members = Vec::new();
    for l in loaded {
        // Each experiment where its entry (or its file) says: a role and a region.
        let target = l.member.aws.over(&l.exp.aws);
        let (member_aws, assumed) = if target.is_empty() {
            (aws.clone(), None)
        } else {
            connect_to(aws_args, &target, &plan_session())
                .await
                .map_err(|e| Error::SuiteMember {
                    file: l.member.file.clone(),
                    source: Box::new(e),
                })?
        };
        let account = if assumed.is_some() {
            account_of(assumed.as_ref(), safety, aws_args)
        } else {
            account.clone()
        };
        let p = Prepared {
            exp: l.exp,
            policy: l.policy,
            account: account.clone(),
            aws: member_aws.clone(),
            assumed,
        };
        let plan = build_plan(&p, seed).await.map_err(|e| Error::SuiteMember {
            file: l.member.file.clone(),
            source: Box::new(e.into()),
        })?;
        let adm = Admission {
            policy: p.policy.clone(),
            account: account.clone(),
            now: safety.now,
            approval: Approval::DryRun,
        };
        let rules = gate::check(&adm, &p.exp, &plan);
        let verdict = super::plan::verdict(&p.exp, &plan, gate::admitted(&rules));
        members.push(Planned {
            loaded: Loaded {
                member: l.member,
                exp: p.exp,
                policy: p.policy,
            },
            target,
            aws: member_aws,
            account: account.clone(),
            plan,
            rules,
            verdict,
        });
    }
    let hash = suite_hash(&suite, &members);
    Ok(SuitePlan {
        suite,
        members,
        hash,
        seed,
        connect: aws_args.options(),
    })
}

/// The hash over what approving a suite covers: the suite file's text, and
/// each experiment's role and plan hash, in order (a plan hash covers its
/// experiment's text, its policy, the region and the eligible targets).
fn suite_hash(suite: &Suite, members: &[Planned]) -> String {
    let doc = serde_json::json!({
        "suite_hash_version": 1,
        "suite_sha256": crate::util::sha256_hex(suite.source.as_bytes()),
        "experiments": members
            .iter()
            .map(|m| serde_json::json!({ "role": m.loaded.member.role.as_str(), "plan": m.plan.hash }))
            .collect::<Vec<_>>(),
    });
    let mut hash = crate::util::sha256_hex(doc.to_string().as_bytes());
    hash.truncate(HASH_LEN);
    hash
}

/// What an experiment's run locks, from its plan: its environment's group
/// (both modes lock it), every group and instance its faults may hit, and
/// the resources its group and alarm faults act on. Two experiments whose
/// sets meet never run at once: the second would find the first's locks and
/// be refused `not-run`, so the suite waits instead.
pub(super) fn lock_keys(exp: &Experiment, plan: &Plan) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Some(g) = &exp.environment.autoscaling_group {
        keys.insert(format!("group:{g}"));
    }
    if let Some(env) = &plan.environment {
        keys.insert(format!("group:{}", env.source));
    }
    for f in &plan.faults {
        match &f.targets {
            Targets::Instances(r) => {
                for id in &r.eligible {
                    keys.insert(format!("instance:{id}"));
                }
                for i in &r.selected {
                    if let Some(g) = &i.autoscaling_group {
                        keys.insert(format!("group:{g}"));
                    }
                }
            }
            Targets::Clone(_) => {}
            Targets::Resources(r) => {
                for n in &r.names {
                    keys.insert(format!("{}:{n}", r.kind.replace("autoscaling_group", "group")));
                }
            }
        }
    }
    keys
}

/// Pairs of experiments (by index) that share a target, with one shared key.
pub(super) fn conflicts(keys: &[BTreeSet<String>]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            if let Some(k) = keys[i].intersection(&keys[j]).next() {
                out.push((i, j, k.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_that_share_a_key_conflict() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let keys = vec![
            set(&["group:web", "instance:i-1"]),
            set(&["group:api"]),
            set(&["group:db", "instance:i-1"]),
        ];
        assert_eq!(conflicts(&keys), vec![(0, 2, "instance:i-1".to_string())]);
    }
}
