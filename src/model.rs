//! Plain data that several layers share: the run's mode, instances and
//! resolved targets, the variables of experiment files, what an undo found,
//! a safety rule's result, and who owns a journaled action.
//!
//! No I/O and no behaviour beyond small conversions: a type lives here once a
//! second layer needs it (the journal's schema, the faults, the reports), so
//! that no layer has to reach up for it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::yaml::{self, Decoder, Spanned};

/// Whether faults go into a temporary copy or the real resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A temporary clone of the Auto Scaling group; the default.
    Parallel,
    /// The real resources (needs approval under the safety policy).
    InPlace,
}

impl Mode {
    /// The spelling used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Parallel => "parallel",
            Mode::InPlace => "in-place",
        }
    }
}

/// Who a journaled action belongs to: setup and teardown calls belong to the
/// environment (the parallel copy, the locks), inject and rollback calls to a
/// fault. The journal writes it in its `fault` field as a name, the
/// environment's being `environment`; a fault cannot take that name
/// (validation refuses it), so the two never mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The run's own setup: the parallel environment, the locks.
    Environment,
    /// The fault of this name.
    Fault(&'a str),
}

impl<'a> Owner<'a> {
    /// The name the journal gives the environment's actions.
    pub const ENVIRONMENT: &'static str = "environment";

    /// The owner the journal's `fault` field names.
    pub fn of(journaled: &'a str) -> Owner<'a> {
        if journaled == Self::ENVIRONMENT {
            Owner::Environment
        } else {
            Owner::Fault(journaled)
        }
    }

    /// The name the journal writes in its `fault` field.
    pub fn name(self) -> &'a str {
        match self {
            Owner::Environment => Self::ENVIRONMENT,
            Owner::Fault(name) => name,
        }
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An EC2 instance as the runner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-...`
    pub id: String,
    /// Availability Zone.
    pub az: String,
    /// EC2 state name when resolved (`running`, `stopped`, ...).
    pub state: String,
    /// The Auto Scaling group it belongs to, from its `aws:autoscaling:groupName` tag or the group's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling_group: Option<String>,
    /// Its `Name` tag, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its VPC (where `ec2:network-blackhole` creates its group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

/// The outcome of resolving one fault's target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resolved {
    /// How many instances matched the criteria and are eligible.
    pub matched: usize,
    /// Their ids, sorted: what an approval of the plan binds (the random
    /// choice among them is replayed with the seed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible: Vec<String>,
    /// Matching instances skipped because they carry a protected tag of the policy.
    pub protected: Vec<String>,
    /// Matching instances skipped because their state does not fit the fault.
    pub ineligible: Vec<String>,
    /// The instances chosen.
    pub selected: Vec<Instance>,
}

/// Variables that may appear as `${name}` in probes and targets.
pub const VARIABLES: &[&str] = &["asg", "instances", "run_id"];

/// Values for `${...}` in experiment files.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `${asg}`: the environment's group (the clone in parallel mode).
    pub asg: Option<String>,
    /// `${run_id}`.
    pub run_id: String,
    /// `${instances}`: the environment's instances (the clone's in parallel
    /// mode), comma-separated; empty until the environment is ready.
    pub instances: Vec<String>,
}

impl Vars {
    /// Replaces every known `${name}` (validation rejected unknown ones).
    pub fn expand(&self, text: &str) -> String {
        let mut out = text
            .replace("${run_id}", &self.run_id)
            .replace("${instances}", &self.instances.join(","));
        if let Some(asg) = &self.asg {
            out = out.replace("${asg}", asg);
        }
        out
    }
}

/// Reports `${name}` references that are not known [`VARIABLES`]; used by
/// the experiment's decoding and by faults that take a name with variables.
pub fn check_variables(d: &mut Decoder, text: &Spanned<String>) {
    let mut rest = text.value.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            d.error(
                text.loc,
                format!("`{}`: `${{` without a closing `}}`", text.value),
            );
            return;
        };
        let var = &after[..end];
        if !VARIABLES.contains(&var) {
            let help = yaml::did_you_mean(var, VARIABLES.iter().copied())
                .map(|s| format!("did you mean `${{{s}}}`? "))
                .unwrap_or_default();
            d.error_help(
                text.loc,
                format!("unknown variable `${{{var}}}`"),
                format!(
                    "{help}known variables: {}",
                    VARIABLES
                        .iter()
                        .map(|v| format!("${{{v}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        rest = &after[end + 1..];
    }
}

/// What a completed undo found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    /// Resources confirmed restored.
    pub restored: Vec<String>,
    /// Resources that no longer exist (e.g. terminated by their group), so there is nothing to restore.
    pub gone: Vec<String>,
    /// Resources whose restore was requested but not waited for (the operator asked to hurry).
    pub not_waited: Vec<String>,
}

/// One safety rule's verdict on a plan (the gate decides them; the journal
/// records them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    /// The rule's key in the policy file, e.g. `blast_radius.max_instances_per_fault`.
    pub rule: String,
    /// Whether the plan satisfies it.
    pub passed: bool,
    /// What was checked and found.
    pub detail: String,
    /// The resources involved (faults, instances, groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// How to change the experiment or the policy, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl RuleResult {
    /// A rule the plan satisfies.
    pub fn pass(rule: &str, detail: impl Into<String>) -> Self {
        RuleResult {
            rule: rule.to_string(),
            passed: true,
            detail: detail.into(),
            resources: Vec::new(),
            fix: None,
        }
    }

    /// A rule the plan breaks, with the resources involved and how to fix it.
    pub fn fail(
        rule: &str,
        detail: impl Into<String>,
        resources: Vec<String>,
        fix: impl Into<String>,
    ) -> Self {
        RuleResult {
            rule: rule.to_string(),
            passed: false,
            detail: detail.into(),
            resources,
            fix: Some(fix.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_owns_what_the_journal_names_environment() {
        assert_eq!(Owner::of("environment"), Owner::Environment);
        assert_eq!(Owner::Environment.name(), "environment");
        assert_eq!(Owner::of("stop-third"), Owner::Fault("stop-third"));
        assert_eq!(Owner::of("stop-third").to_string(), "stop-third");
    }
}
