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
pub const VARIABLES: &[&str] = &[
    "asg",
    "instances",
    "run_id",
    "control_asg",
    "experiment_target_group",
    "control_target_group",
    "source_target_group",
    "load_balancer",
];

/// Variables that only have a value when the run has a control copy
/// (`environment.traffic`, either form).
pub const CONTROL_VARIABLES: &[&str] = &["control_asg"];

/// Variables that only have a value when the copies get a share of the
/// load balancer's traffic (`environment.traffic.share`).
pub const TRAFFIC_VARIABLES: &[&str] = &[
    "experiment_target_group",
    "control_target_group",
    "source_target_group",
    "load_balancer",
];

/// Values for `${...}` in experiment files.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `${asg}`: the environment's group (in parallel mode the experiment
    /// copy, the one faults go into).
    pub asg: Option<String>,
    /// `${run_id}`.
    pub run_id: String,
    /// `${instances}`: the environment's instances (the experiment copy's in
    /// parallel mode), comma-separated; empty until the environment is ready.
    pub instances: Vec<String>,
    /// `${control_asg}`: the control copy, same size and share as the
    /// experiment copy, never injected. `Some` exactly when the run has a
    /// control (`environment.traffic`): what observe compares against.
    pub control_asg: Option<String>,
    /// `${experiment_target_group}`: the experiment copy's target group in
    /// CloudWatch's `AWS/ApplicationELB` `TargetGroup` form (`targetgroup/NAME/ID`).
    pub experiment_target_group: Option<String>,
    /// `${control_target_group}`: the control copy's, same form.
    pub control_target_group: Option<String>,
    /// `${source_target_group}`: the workload's own target group, same form.
    pub source_target_group: Option<String>,
    /// `${load_balancer}`: the workload's load balancer in the `LoadBalancer`
    /// dimension form (`app/NAME/ID`).
    pub load_balancer: Option<String>,
}

impl Vars {
    /// Replaces every known `${name}` (validation rejected unknown ones);
    /// a variable without a value is left as written.
    pub fn expand(&self, text: &str) -> String {
        let mut out = text
            .replace("${run_id}", &self.run_id)
            .replace("${instances}", &self.instances.join(","));
        let optional = [
            ("${asg}", &self.asg),
            ("${control_asg}", &self.control_asg),
            ("${experiment_target_group}", &self.experiment_target_group),
            ("${control_target_group}", &self.control_target_group),
            ("${source_target_group}", &self.source_target_group),
            ("${load_balancer}", &self.load_balancer),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                out = out.replace(name, v);
            }
        }
        out
    }
}

/// A share of traffic, in tenths of a percent (`2.5%` is 25): the
/// resolution a listener rule's weights can give exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Share(pub u32);

impl Share {
    /// Parses `2%`, `2.5%` or `0.1%` (at most one decimal; the `%` is required).
    pub fn parse(text: &str) -> Option<Share> {
        let num = text.trim().strip_suffix('%')?.trim();
        let (whole, tenth) = match num.split_once('.') {
            Some((w, t)) if t.len() == 1 => (w, t),
            Some(_) => return None,
            None => (num, "0"),
        };
        if whole.is_empty()
            || !whole.chars().all(|c| c.is_ascii_digit())
            || !tenth.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let w: u32 = whole.parse().ok()?;
        let t: u32 = tenth.parse().ok()?;
        w.checked_mul(10)?.checked_add(t).map(Share)
    }

    /// As a fraction of 1 (`2%` is 0.02).
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// Decodes a share in `min..=max`, reporting problems at the node.
    pub fn decode(
        d: &mut Decoder,
        node: &marked_yaml::Node,
        what: &str,
        min: Share,
        max: Share,
    ) -> Option<Spanned<Share>> {
        let text = d.string(node, what)?;
        match Share::parse(&text.value) {
            Some(s) if (min..=max).contains(&s) => Some(Spanned {
                value: s,
                loc: text.loc,
            }),
            Some(s) => {
                d.error(
                    text.loc,
                    format!("{what}: {s} is out of range: expected from {min} to {max}"),
                );
                None
            }
            None => {
                d.error_help(
                    text.loc,
                    format!("{what}: `{}` is not a percentage", text.value),
                    "expected a percentage with at most one decimal, such as `2%` or `0.5%`",
                );
                None
            }
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(10) {
            write!(f, "{}%", self.0 / 10)
        } else {
            write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
        }
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
    fn shares_are_percentages_with_at_most_one_decimal() {
        assert_eq!(Share::parse("2%"), Some(Share(20)));
        assert_eq!(Share::parse("2.5%"), Some(Share(25)));
        assert_eq!(Share::parse(" 0.1 %"), Some(Share(1)));
        for bad in ["2", "2.55%", "-1%", "%", "a%", ".5%"] {
            assert_eq!(Share::parse(bad), None, "{bad}");
        }
        assert_eq!(Share(25).to_string(), "2.5%");
        assert_eq!(Share(50).to_string(), "5%");
        assert!((Share(20).fraction() - 0.02).abs() < 1e-12);
    }

    #[test]
    fn variables_without_a_value_stay_as_written() {
        let v = Vars {
            asg: Some("gd-r-web".into()),
            control_asg: Some("gd-r-ctl-web".into()),
            experiment_target_group: Some("targetgroup/gd-r-e/abc".into()),
            ..Default::default()
        };
        assert_eq!(
            v.expand("${asg} ${control_asg} ${experiment_target_group} ${load_balancer}"),
            "gd-r-web gd-r-ctl-web targetgroup/gd-r-e/abc ${load_balancer}"
        );
    }

    #[test]
    fn the_environment_owns_what_the_journal_names_environment() {
        assert_eq!(Owner::of("environment"), Owner::Environment);
        assert_eq!(Owner::Environment.name(), "environment");
        assert_eq!(Owner::of("stop-third"), Owner::Fault("stop-third"));
        assert_eq!(Owner::of("stop-third").to_string(), "stop-third");
    }
}
