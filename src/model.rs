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

/// `aws:` of an experiment or a suite entry: the role a run assumes and the
/// region it acts in. Unset keys come from the command line and the
/// standard chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AwsTarget {
    /// `aws.role_arn`: the IAM role to assume (sts:AssumeRole).
    pub role_arn: Option<String>,
    /// `aws.external_id`: the external id the role's trust policy requires.
    pub external_id: Option<String>,
    /// `aws.region`: the region the run acts in (wins over `--region`).
    pub region: Option<String>,
}

/// The keys of an `aws:` block.
pub const AWS_TARGET_KEYS: &[&str] = &["role_arn", "external_id", "region"];

impl AwsTarget {
    /// Nothing set: the standard chain as it is.
    pub fn is_empty(&self) -> bool {
        self.role_arn.is_none() && self.region.is_none()
    }

    /// `self` (a suite entry's) over `base` (the experiment's): a role
    /// named here comes with its own external id; the region key by key.
    pub fn over(&self, base: &AwsTarget) -> AwsTarget {
        let (role_arn, external_id) = match &self.role_arn {
            Some(r) => (Some(r.clone()), self.external_id.clone()),
            None => (base.role_arn.clone(), base.external_id.clone()),
        };
        AwsTarget {
            role_arn,
            external_id,
            region: self.region.clone().or_else(|| base.region.clone()),
        }
    }

    /// The account of `role_arn` (its fifth field), for messages.
    pub fn role_account(&self) -> Option<&str> {
        self.role_arn.as_deref().and_then(|r| r.split(':').nth(4))
    }

    /// The JSON Schema of an `aws:` block, from the same key table.
    pub(crate) fn schema() -> serde_json::Value {
        crate::schema::object("aws", AWS_TARGET_KEYS)
            .key(
                "role_arn",
                crate::schema::text_matching(
                    "^arn:aws[^:]*:iam::[0-9]{12}:role/.+$",
                    "the IAM role the run assumes (session gameday-RUN_ID)",
                ),
            )
            .key(
                "external_id",
                crate::schema::text_matching(
                    "^[A-Za-z0-9+=,.@:/-]{2,1224}$",
                    "the external id the role's trust policy requires (needs role_arn)",
                ),
            )
            .key(
                "region",
                crate::schema::text_matching(
                    "^[a-z]+(-[a-z]+)+-[0-9]+$",
                    "the region the run acts in; wins over --region",
                ),
            )
            .with(
                "dependentRequired",
                serde_json::json!({ "external_id": ["role_arn"] }),
            )
            .build("where the run acts: a role to assume and a region")
    }

    /// Decodes an `aws:` block (`what` is its path, e.g. `aws` or
    /// `experiments[1].aws`), reporting every problem at its node.
    pub fn decode(d: &mut Decoder, node: &marked_yaml::Node, what: &str) -> Option<AwsTarget> {
        let m = d.map(node, what, AWS_TARGET_KEYS)?;
        let mut ok = true;
        let mut field = |d: &mut Decoder, key: &str, valid: fn(&str) -> bool, help: &str| {
            let n = m.get(key)?;
            let s = d.string(n, &format!("{what}.{key}"))?;
            if valid(&s.value) {
                Some(s)
            } else {
                d.error_help(s.loc, format!("{what}.{key}: `{}` is not valid", s.value), help);
                ok = false;
                None
            }
        };
        let role_arn = field(
            d,
            "role_arn",
            valid_role_arn,
            "expected an IAM role ARN such as arn:aws:iam::123456789012:role/gameday",
        );
        let external_id = field(
            d,
            "external_id",
            valid_external_id,
            "2 to 1224 characters: letters, digits and + = , . @ : / -",
        );
        let region = field(
            d,
            "region",
            valid_region,
            "expected a region name such as eu-west-1",
        );
        if let (Some(e), None) = (&external_id, &role_arn)
            && ok
        {
            d.error_help(
                e.loc,
                format!("{what}.external_id is set without {what}.role_arn"),
                "the external id is given when assuming a role: add role_arn, or remove external_id",
            );
            return None;
        }
        ok.then(|| AwsTarget {
            role_arn: role_arn.map(|s| s.value),
            external_id: external_id.map(|s| s.value),
            region: region.map(|s| s.value),
        })
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty())
    )
}

fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c))
}

/// `eu-west-1`, `us-gov-east-1`, `ap-southeast-3`: lowercase words and a number.
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The role session name of run `run_id`: `gameday-<run id>`, in the
/// characters STS allows (letters, digits, `+=,.@_-`), at most 64 of them.
pub fn session_name(run_id: &str) -> String {
    let mut name: String = format!("gameday-{run_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(64);
    name
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

    #[test]
    fn a_session_name_is_gameday_and_the_run_id_within_stss_limits() {
        assert_eq!(
            session_name("20261202-103213-5c57"),
            "gameday-20261202-103213-5c57"
        );
        assert_eq!(session_name("a b/c"), "gameday-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn an_entrys_role_comes_with_its_own_external_id_and_the_region_is_key_by_key() {
        let exp = AwsTarget {
            role_arn: Some("arn:aws:iam::111111111111:role/a".into()),
            external_id: Some("x1".into()),
            region: Some("eu-west-1".into()),
        };
        let entry = AwsTarget {
            role_arn: Some("arn:aws:iam::222222222222:role/b".into()),
            ..AwsTarget::default()
        };
        let both = entry.over(&exp);
        assert_eq!(both.external_id, None);
        assert_eq!(both.region.as_deref(), Some("eu-west-1"));
        assert_eq!(both.role_account(), Some("222222222222"));
        assert_eq!(AwsTarget::default().over(&exp), exp);
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/path/gameday"));
        assert!(!valid_role_arn("arn:aws:iam::12345:role/x"));
        assert!(valid_region("us-gov-east-1") && !valid_region("EU-west-1") && !valid_region("eu-west"));
    }
}
