//! Faults: what gameday does to a target, and how it is undone.
//!
//! A fault is three things, all in the fault's own file:
//!
//! - **plan** ([`PlanInstances`], [`GroupFault`], [`PlanAlarm`]): pure; from
//!   the targets the runner selected (the runner selects, batches and
//!   iterates), the [`Step`]s, each a typed forward call beside its undo;
//! - **apply** ([`Forward`]): makes one call. Where the undo must record the
//!   state just before the call, the step is a [`ReadFirst`] that reads it and
//!   only then yields the call with its complete undo;
//! - **undo** ([`Revert`]): plain data, an [`Undo`] variant, written to the
//!   journal *before* the call is made, so `gameday recover` can undo it from
//!   the journal alone.
//!
//! Faults are idempotent: the same apply or undo twice leaves the same state.
//! A new fault is its file plus its lines in the registry below ([`ACTIONS`],
//! and its undo kinds in `undos!`).

mod autoscaling_capacity_drop;
mod autoscaling_set_unhealthy;
mod autoscaling_suspend_processes;
mod cloudwatch_force_alarm;
mod ec2_az_outage;
mod ec2_network_blackhole;
mod ec2_reboot_instances;
mod ec2_stop_instances;
mod ec2_terminate_instances;
mod setup;

pub use autoscaling_capacity_drop::RestoreCapacity;
pub use autoscaling_set_unhealthy::SetHealthy;
pub use autoscaling_suspend_processes::ResumeProcesses;
pub use cloudwatch_force_alarm::SetAlarmState;
pub use ec2_az_outage::RestoreSubnets;
pub(crate) use ec2_network_blackhole::{BLACKHOLE_TAG, delete_blackhole_group};
pub use ec2_network_blackhole::{DeleteSecurityGroup, RestoreSecurityGroups};
pub use ec2_reboot_instances::WaitRunning;
pub use ec2_stop_instances::StartInstances;
pub use ec2_terminate_instances::Nothing;
pub use setup::{
    DeleteAutoScalingGroup, DeleteLockTags, DeleteTargetGroup, ReleaseLeases, RestoreListenerRule, StopLoad,
};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::Timestamp;
use marked_yaml::Node;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError};
use crate::model::{Instance, UndoReport};
use crate::yaml::{Decoder, Loc, Spanned};

/// A boxed future, so forward calls can be made through `dyn Forward`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The registry: the one place a new fault is added (with its file).

/// Every implemented action.
pub const ACTIONS: &[ActionDef] = &[
    ec2_stop_instances::DEF,
    ec2_reboot_instances::DEF,
    ec2_terminate_instances::DEF,
    ec2_network_blackhole::DEF,
    ec2_az_outage::DEF,
    autoscaling_set_unhealthy::DEF,
    autoscaling_suspend_processes::DEF,
    autoscaling_capacity_drop::DEF,
    cloudwatch_force_alarm::DEF,
];

/// Builds the [`Undo`] enum from the undo kinds: one variant per kind, named
/// as its `kind` tag in the journal (in snake case), holding the kind's
/// struct, which lives beside the fault that makes it and implements
/// [`Revert`]. A closed enum rather than typetag-style registration: serde
/// reads it with no global registry or linker tricks (typetag's inventory),
/// an unknown kind in a journal is a plain decode error, and every `match`
/// stays exhaustive.
macro_rules! undos {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// How to undo one step: data, so that it survives in the journal
        /// as `{"kind": "<variant in snake case>", ...the kind's fields in order}`.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Undo {
            $($(#[$doc])* $variant($variant),)*
        }

        impl Undo {
            /// The API operation the undo makes, for the journal.
            pub fn operation(&self) -> &'static str {
                match self {
                    $(Undo::$variant(_) => <$variant as Revert>::OPERATION,)*
                }
            }

            /// The resources the undo acts on.
            pub fn resources(&self) -> Vec<String> {
                match self {
                    $(Undo::$variant(u) => u.resources(),)*
                }
            }

            /// Performs the undo. Idempotent. `hurry` cancelled means "skip
            /// waiting for the result where the restoring call has been
            /// made"; it never skips a call.
            pub async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
                match self {
                    $(Undo::$variant(u) => u.run(aws, hurry).await,)*
                }
            }
        }

        $(impl From<$variant> for Undo {
            fn from(u: $variant) -> Undo {
                Undo::$variant(u)
            }
        })*
    };
}

undos! {
    /// Start the instances again and wait until they are running.
    StartInstances,
    /// Delete a temporary Auto Scaling group created by the run (with its
    /// instances) and wait until its instances are terminated.
    DeleteAutoScalingGroup,
    /// Nothing to undo, with why (e.g. terminated instances).
    Nothing,
    /// Wait until the instances run again (after a reboot); start none.
    WaitRunning,
    /// Mark the instances Healthy in their group, if still there.
    SetHealthy,
    /// Delete the temporary security group of a network blackhole.
    DeleteSecurityGroup,
    /// Give each instance exactly its original security groups again.
    RestoreSecurityGroups,
    /// Put a group's recorded subnet list (`VPCZoneIdentifier`) back exactly.
    RestoreSubnets,
    /// Resume the processes this run suspended (and only those).
    ResumeProcesses,
    /// Put a group's recorded min, max and desired capacity back exactly.
    RestoreCapacity,
    /// Set an alarm back to its recorded state.
    SetAlarmState,
    /// Remove the run's lock tag from the resources it locked.
    DeleteLockTags,
    /// Put a listener rule's recorded actions back exactly.
    RestoreListenerRule,
    /// Detach, deregister and delete a copy's target group.
    DeleteTargetGroup,
    /// Stop the run's load generator (its process groups).
    StopLoad,
    /// Release the run's leases in the lock table (only while still its own).
    ReleaseLeases,
}

impl Undo {
    /// The undo in words, as people are told what is left to do: the
    /// operation and its resources, e.g. `ec2:StartInstances i-1 i-2`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.operation(), self.resources().join(" "))
    }
}

/// A registered action: its name and how to build it from `params`.
pub struct ActionDef {
    /// The action name used in experiment files.
    pub name: &'static str,
    /// Decodes `params` (absent when `None`), recording problems in the
    /// decoder; the location is the fault's, for a missing required param.
    pub build: fn(&mut Decoder, Option<&Node>, &str, Loc) -> Option<On>,
    /// The JSON Schema of `params`, built from the key table `build` passes
    /// to `Decoder::map` (see `crate::schema`). When it requires a key, the
    /// fault requires `params`.
    pub params: fn() -> serde_json::Value,
}

impl ActionDef {
    /// Decodes a fault of this action from its `params`.
    pub fn decode(&self, d: &mut Decoder, params: Option<&Node>, what: &str, at: Loc) -> Option<Fault> {
        (self.build)(d, params, what, at).map(|on| Fault {
            action: self.name,
            on,
        })
    }
}

/// The definition of an implemented action.
pub fn find(name: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Names of every implemented action.
pub fn names() -> Vec<&'static str> {
    ACTIONS.iter().map(|a| a.name).collect()
}

// A fault as written in an experiment.

/// One fault kind with its parameters, as written in an experiment.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The action name, e.g. `ec2:stop-instances`.
    pub action: &'static str,
    /// What it acts on, and how it plans from that.
    pub on: On,
}

/// What a fault acts on, with its planner for that kind of target: the type
/// decides what a fault is handed, so it can never get the wrong kind.
#[derive(Debug, Clone)]
pub enum On {
    /// EC2 instances, resolved and selected by the fault's `target`.
    Instances(InstanceFault),
    /// Auto Scaling groups or an alarm, named rather than selected.
    Resources(ResourceFault),
}

/// What a fault acts on, in words the experiment's checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// EC2 instances, resolved and selected by the fault's `target`.
    Instances,
    /// Auto Scaling groups: the environment's group (the copy in parallel
    /// mode) or `target.autoscaling_group`; no instance is selected.
    Groups,
    /// One CloudWatch alarm named in the fault's params.
    Alarm,
}

impl Fault {
    /// The action name, e.g. `ec2:stop-instances`.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// What the fault acts on.
    pub fn scope(&self) -> Scope {
        match &self.on {
            On::Instances(_) => Scope::Instances,
            On::Resources(ResourceFault::Groups(_)) => Scope::Groups,
            On::Resources(ResourceFault::Alarm(_)) => Scope::Alarm,
        }
    }

    /// Whether the fault acts on EC2 instances (and so needs a target set).
    pub fn needs_instances(&self) -> bool {
        matches!(self.on, On::Instances(_))
    }

    /// Alarm faults: the alarm's name as written (variables unexpanded).
    pub fn alarm(&self) -> Option<&Spanned<String>> {
        match &self.on {
            On::Resources(ResourceFault::Alarm(a)) => Some(&a.alarm),
            _ => None,
        }
    }
}

/// Which instances an instance fault may target: data of its action.
#[derive(Debug, Clone, Copy)]
pub struct Targeting {
    /// EC2 states a target may be in.
    pub eligible: &'static [&'static str],
    /// Whether a target must belong to an Auto Scaling group.
    pub needs_group: bool,
}

/// Running instances, in a group or not: what most instance faults take.
pub const RUNNING: Targeting = Targeting {
    eligible: &["running"],
    needs_group: false,
};

/// A fault on EC2 instances.
#[derive(Debug, Clone)]
pub struct InstanceFault {
    /// Which instances qualify.
    pub targeting: Targeting,
    /// Plans from the selected ones.
    pub planner: Arc<dyn PlanInstances>,
}

impl InstanceFault {
    /// An instance fault of `targeting`, planned by `planner`.
    pub fn on(targeting: Targeting, planner: impl PlanInstances + 'static) -> On {
        On::Instances(InstanceFault {
            targeting,
            planner: Arc::new(planner),
        })
    }

    /// Whether an instance in this EC2 state may be targeted.
    pub fn eligible_state(&self, state: &str) -> bool {
        self.targeting.eligible.contains(&state)
    }

    /// Whether targets must belong to an Auto Scaling group.
    pub fn needs_group(&self) -> bool {
        self.targeting.needs_group
    }

    /// Narrows the eligible instances before the selection.
    pub fn narrow(&self, candidates: Vec<Instance>, rng: &mut StdRng) -> Vec<Instance> {
        self.planner.narrow(candidates, rng)
    }

    /// The calls on the selected `targets`. Makes no AWS call.
    pub fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        self.planner.plan(targets)
    }
}

/// Plans an instance fault's calls.
pub trait PlanInstances: Send + Sync + fmt::Debug {
    /// The mutating calls on `targets`, batched to the API's limits, each
    /// with its undo. Makes no AWS call.
    fn plan(&self, targets: &[Instance]) -> Vec<Step>;

    /// Narrows the eligible instances before the selection (`ec2:az-outage`
    /// keeps one AZ's). `rng` is the run's seeded generator. Most keep all.
    fn narrow(&self, candidates: Vec<Instance>, _rng: &mut StdRng) -> Vec<Instance> {
        candidates
    }
}

/// A fault on named resources: Auto Scaling groups or one alarm.
#[derive(Debug, Clone)]
pub enum ResourceFault {
    /// On Auto Scaling groups.
    Groups(Arc<dyn GroupFault>),
    /// On one CloudWatch alarm.
    Alarm(AlarmFault),
}

impl ResourceFault {
    /// The calls on the resolved group names (or the one alarm's name). Makes no AWS call.
    pub fn plan(&self, names: &[String]) -> Vec<Step> {
        match self {
            ResourceFault::Groups(g) => g.plan(names),
            ResourceFault::Alarm(a) => names.iter().flat_map(|n| a.planner.plan(n)).collect(),
        }
    }

    /// How many instances a group of `desired` loses (for the blast radius).
    pub fn instances_removed(&self, desired: usize) -> usize {
        match self {
            ResourceFault::Groups(g) => g.instances_removed(desired),
            ResourceFault::Alarm(_) => 0,
        }
    }
}

/// A fault on Auto Scaling groups.
pub trait GroupFault: Send + Sync + fmt::Debug {
    /// The calls on `groups`. Makes no AWS call.
    fn plan(&self, groups: &[String]) -> Vec<Step>;

    /// How many instances a group of `desired` loses, for the blast radius.
    fn instances_removed(&self, desired: usize) -> usize;
}

/// A fault on one CloudWatch alarm.
#[derive(Debug, Clone)]
pub struct AlarmFault {
    /// The alarm, as written (variables unexpanded), with its position.
    pub alarm: Spanned<String>,
    /// Plans from its expanded name.
    pub planner: Arc<dyn PlanAlarm>,
}

/// Plans an alarm fault's calls.
pub trait PlanAlarm: Send + Sync + fmt::Debug {
    /// The calls on `alarm`. Makes no AWS call.
    fn plan(&self, alarm: &str) -> Vec<Step>;
}

// Steps: a typed forward call beside its undo.

/// What a fault may need to know about the run when it makes a call: names
/// and tags of resources it creates.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The run's id (tagged `gameday:run-id` on what a fault creates).
    pub run_id: String,
    /// The run's expiry (tagged `gameday:expires-at`, for `gameday cleanup`).
    pub expires_at: Timestamp,
    /// The fault making the call.
    pub fault: String,
}

/// One mutating call, forward.
pub trait Forward: Send + Sync + fmt::Debug {
    /// Makes the call.
    fn apply<'a>(&'a self, aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>>;
}

/// A step whose undo records the state just before its call (original
/// security groups, capacity, suspended processes, an alarm's state) or a
/// name of the run: it reads that right before the intent is journaled, and
/// only then yields the call with its complete undo, so a fault held back by
/// `start_after` records what it really changes.
pub trait ReadFirst: Send + Sync + fmt::Debug {
    /// The operation its undo will make (for the plan).
    fn undo_operation(&self) -> &'static str;

    /// Its undo's fields known before the read, `kind` first (for the plan's JSON).
    fn undo_known(&self) -> Vec<(&'static str, String)>;

    /// Reads the state (read-only calls) and returns the call with its undo.
    fn read<'a>(&'a self, aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>>;
}

/// A forward call with its complete undo.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The call.
    pub forward: Arc<dyn Forward>,
    /// How to put things back.
    pub undo: Undo,
}

impl Ready {
    /// `forward`, undone by `undo`.
    pub fn new(forward: impl Forward + 'static, undo: impl Into<Undo>) -> Ready {
        Ready {
            forward: Arc::new(forward),
            undo: undo.into(),
        }
    }
}

/// What a planned step does.
#[derive(Debug, Clone)]
pub enum Planned {
    /// Its call and undo are known from the plan.
    Ready(Ready),
    /// Its undo needs a read just before the call.
    ReadFirst(Arc<dyn ReadFirst>),
}

/// One mutating API call as planned, and how to undo it.
#[derive(Debug, Clone)]
pub struct Step {
    /// `service:Operation`, e.g. `ec2:StopInstances`.
    pub operation: String,
    /// The resources the call acts on.
    pub resources: Vec<String>,
    /// The call and its undo, or the read that yields them.
    pub planned: Planned,
}

impl Step {
    /// A step whose call and undo are known now.
    pub fn ready(
        operation: &str,
        resources: Vec<String>,
        forward: impl Forward + 'static,
        undo: impl Into<Undo>,
    ) -> Step {
        Step {
            operation: operation.to_string(),
            resources,
            planned: Planned::Ready(Ready::new(forward, undo)),
        }
    }

    /// A step that reads the state its undo records just before the call.
    pub fn read_first(operation: &str, resources: Vec<String>, read: impl ReadFirst + 'static) -> Step {
        Step {
            operation: operation.to_string(),
            resources,
            planned: Planned::ReadFirst(Arc::new(read)),
        }
    }

    /// The operation of its undo.
    pub fn undo_operation(&self) -> &'static str {
        match &self.planned {
            Planned::Ready(r) => r.undo.operation(),
            Planned::ReadFirst(r) => r.undo_operation(),
        }
    }

    /// The call ready to make, with its complete undo: reads first (read-only
    /// calls) where the undo records the state just before the call.
    pub async fn prepare(&self, aws: &Aws, cx: &StepContext) -> Result<Call, AwsError> {
        let ready = match &self.planned {
            Planned::Ready(r) => r.clone(),
            Planned::ReadFirst(r) => r.read(aws, cx).await?,
        };
        Ok(Call {
            operation: self.operation.clone(),
            resources: self.resources.clone(),
            forward: ready.forward,
            undo: ready.undo,
        })
    }
}

/// The plan's JSON shows a step as `{operation, resources, undo}`; the undo
/// of a [`ReadFirst`] step with only what is known before its read.
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Known(Vec<(&'static str, String)>);
        impl Serialize for Known {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in &self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("operation", &self.operation)?;
        m.serialize_entry("resources", &self.resources)?;
        match &self.planned {
            Planned::Ready(r) => m.serialize_entry("undo", &r.undo)?,
            Planned::ReadFirst(r) => m.serialize_entry("undo", &Known(r.undo_known()))?,
        }
        m.end()
    }
}

/// One mutating call ready to make, with its complete undo (what the journal
/// records in the intent, before the call).
#[derive(Debug, Clone)]
pub struct Call {
    /// `service:Operation`, e.g. `ec2:StopInstances`.
    pub operation: String,
    /// The resources the call acts on.
    pub resources: Vec<String>,
    /// The call.
    pub forward: Arc<dyn Forward>,
    /// How to put things back.
    pub undo: Undo,
}

impl Call {
    /// Makes the call.
    pub async fn apply(&self, aws: &Aws, cx: &StepContext) -> Result<(), AwsError> {
        self.forward.apply(aws, cx).await
    }
}

/// One kind of undo: plain data (an [`Undo`] variant) and how to carry it out.
pub trait Revert {
    /// The API operation the undo makes, for the journal.
    const OPERATION: &'static str;

    /// The resources it acts on.
    fn resources(&self) -> Vec<String>;

    /// Performs it. Idempotent: a resource already restored or gone is
    /// reported, not an error. `hurry` cancelled: skip waits, never calls.
    fn run(
        &self,
        aws: &Aws,
        hurry: &CancellationToken,
    ) -> impl Future<Output = Result<UndoReport, AwsError>> + Send;
}

/// For actions without parameters: rejects a `params` mapping with any key.
pub(crate) fn no_params(d: &mut Decoder, params: Option<&Node>, what: &str) -> Option<()> {
    if let Some(p) = params {
        d.map(p, what, NO_PARAMS)?;
    }
    Some(())
}

/// The keys of `params` of an action without parameters.
const NO_PARAMS: &[&str] = &[];

/// The `params` schema of an action without parameters (an empty mapping at most).
pub(crate) fn no_params_schema() -> serde_json::Value {
    crate::schema::object("params", NO_PARAMS).build("this action takes no params")
}

/// One step per batch of target ids, each made by `step` of its batch: the
/// plan of every fault that makes one batched call per group of instances.
pub(crate) fn batched_steps(
    targets: &[Instance],
    size: usize,
    step: impl Fn(Vec<String>) -> Step,
) -> Vec<Step> {
    let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    batches(&ids, size).map(step).collect()
}

/// Splits `items` into batches of at most `size`, for APIs with per-call limits.
pub fn batches<T: Clone>(items: &[T], size: usize) -> impl Iterator<Item = Vec<T>> + '_ {
    items.chunks(size).map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::ec2_network_blackhole::InstanceGroups;
    use super::*;

    /// Every kind keeps the exact JSON of the closed enum it was before the
    /// registry built it (tag first, then its fields in order), so journals
    /// of earlier versions are read by `gameday recover` and the same events
    /// write the same bytes.
    #[test]
    fn every_undo_kind_keeps_its_journal_json() {
        let ids = || vec!["i-1".to_string(), "i-2".to_string()];
        let cases: Vec<(Undo, &str)> = vec![
            (
                StartInstances { instance_ids: ids() }.into(),
                r#"{"kind":"start_instances","instance_ids":["i-1","i-2"]}"#,
            ),
            (
                DeleteAutoScalingGroup {
                    group: "gd-r-web".into(),
                }
                .into(),
                r#"{"kind":"delete_auto_scaling_group","group":"gd-r-web"}"#,
            ),
            (
                Nothing { reason: "why".into() }.into(),
                r#"{"kind":"nothing","reason":"why"}"#,
            ),
            (
                WaitRunning { instance_ids: ids() }.into(),
                r#"{"kind":"wait_running","instance_ids":["i-1","i-2"]}"#,
            ),
            (
                SetHealthy { instance_ids: ids() }.into(),
                r#"{"kind":"set_healthy","instance_ids":["i-1","i-2"]}"#,
            ),
            (
                DeleteSecurityGroup {
                    vpc_id: "vpc-1".into(),
                    group_name: "gd-r-f".into(),
                }
                .into(),
                r#"{"kind":"delete_security_group","vpc_id":"vpc-1","group_name":"gd-r-f"}"#,
            ),
            (
                RestoreSecurityGroups {
                    instances: vec![InstanceGroups {
                        instance_id: "i-1".into(),
                        vpc_id: "vpc-1".into(),
                        group_ids: vec!["sg-a".into()],
                    }],
                }
                .into(),
                r#"{"kind":"restore_security_groups","instances":[{"instance_id":"i-1","vpc_id":"vpc-1","group_ids":["sg-a"]}]}"#,
            ),
            (
                RestoreSubnets {
                    group: "web".into(),
                    vpc_zone_identifier: "subnet-b,subnet-a".into(),
                    az: "us-east-1b".into(),
                }
                .into(),
                r#"{"kind":"restore_subnets","group":"web","vpc_zone_identifier":"subnet-b,subnet-a","az":"us-east-1b"}"#,
            ),
            (
                ResumeProcesses {
                    group: "web".into(),
                    processes: vec!["Launch".into()],
                }
                .into(),
                r#"{"kind":"resume_processes","group":"web","processes":["Launch"]}"#,
            ),
            (
                SetAlarmState {
                    alarm: "pager".into(),
                    state: "OK".into(),
                }
                .into(),
                r#"{"kind":"set_alarm_state","alarm":"pager","state":"OK"}"#,
            ),
            (
                DeleteLockTags {
                    autoscaling_groups: vec!["web".into()],
                    instance_ids: ids(),
                    run_id: "r".into(),
                }
                .into(),
                r#"{"kind":"delete_lock_tags","autoscaling_groups":["web"],"instance_ids":["i-1","i-2"],"run_id":"r"}"#,
            ),
            (
                DeleteTargetGroup {
                    name: "gd-r-e".into(),
                    autoscaling_group: Some("gd-r-web".into()),
                }
                .into(),
                r#"{"kind":"delete_target_group","name":"gd-r-e","autoscaling_group":"gd-r-web"}"#,
            ),
            (
                StopLoad {
                    run_id: "r".into(),
                    command: vec!["k6".into(), "run".into()],
                }
                .into(),
                r#"{"kind":"stop_load","run_id":"r","command":["k6","run"]}"#,
            ),
            (
                RestoreListenerRule {
                    rule: crate::environment::traffic::RuleRef {
                        listener_arn: "l".into(),
                        rule_arn: None,
                        label: "listener HTTP:80 default actions".into(),
                    },
                    actions: vec![crate::environment::traffic::ForwardAction {
                        order: None,
                        target_group_arn: Some("tg".into()),
                        forward: None,
                    }],
                }
                .into(),
                r#"{"kind":"restore_listener_rule","listener_arn":"l","label":"listener HTTP:80 default actions","actions":[{"target_group_arn":"tg"}]}"#,
            ),
        ];
        for (undo, json) in cases {
            assert_eq!(serde_json::to_string(&undo).expect("serializes"), json);
            assert_eq!(serde_json::from_str::<Undo>(json).expect("deserializes"), undo);
        }
        // Lock tags written before instance locks existed still read.
        assert_eq!(
            serde_json::from_str::<Undo>(r#"{"kind":"delete_lock_tags","run_id":"r"}"#)
                .expect("deserializes"),
            DeleteLockTags {
                autoscaling_groups: Vec::new(),
                instance_ids: Vec::new(),
                run_id: "r".into()
            }
            .into()
        );
    }

    /// A step whose undo is read just before its call shows in the plan's
    /// JSON with what is known before the read, never a made-up value.
    #[test]
    fn a_planned_step_shows_its_undo_as_far_as_it_is_known() {
        let groups = ["web".to_string()];
        let drop = find("autoscaling:capacity-drop").expect("registered");
        let mut d = Decoder::new();
        let node = marked_yaml::parse_yaml(0, "to: 1").expect("yaml");
        let fault = drop
            .decode(&mut d, Some(&node), "params", crate::yaml::loc(&node))
            .expect("decodes");
        let On::Resources(r) = &fault.on else {
            panic!("a group fault")
        };
        let steps = r.plan(&groups);
        assert_eq!(
            serde_json::to_string(&steps).expect("serializes"),
            r#"[{"operation":"autoscaling:UpdateAutoScalingGroup","resources":["web"],"undo":{"kind":"restore_capacity","group":"web"}}]"#
        );
        assert_eq!(
            steps[0].undo_operation(),
            "autoscaling:UpdateAutoScalingGroup (capacity)"
        );
    }

    /// `gameday recover` reads undos back from the journal: each must survive
    /// a JSON round trip with the state it recorded.
    #[test]
    fn undos_are_plain_data_that_round_trip_through_json() {
        let undos = vec![
            Undo::from(DeleteSecurityGroup {
                vpc_id: "vpc-1".into(),
                group_name: "gd-run-f".into(),
            }),
            Undo::from(RestoreSecurityGroups {
                instances: vec![InstanceGroups {
                    instance_id: "i-1".into(),
                    vpc_id: "vpc-1".into(),
                    group_ids: vec!["sg-a".into(), "sg-b".into()],
                }],
            }),
            Undo::from(RestoreSubnets {
                group: "web".into(),
                vpc_zone_identifier: "subnet-b,subnet-a".into(),
                az: "us-east-1b".into(),
            }),
            Undo::from(ResumeProcesses {
                group: "web".into(),
                processes: vec!["Launch".into()],
            }),
            Undo::from(RestoreCapacity {
                group: "web".into(),
                min: 2,
                max: 5,
                desired: 3,
            }),
            Undo::from(SetAlarmState {
                alarm: "pager".into(),
                state: "INSUFFICIENT_DATA".into(),
            }),
        ];
        for u in undos {
            let text = serde_json::to_string(&u).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Undo>(&text).expect("deserializes"),
                u,
                "{text}"
            );
        }
        let text = serde_json::to_string(&Undo::from(RestoreCapacity {
            group: "web".into(),
            min: 2,
            max: 5,
            desired: 3,
        }))
        .expect("serializes");
        assert_eq!(
            text,
            r#"{"kind":"restore_capacity","group":"web","min":2,"max":5,"desired":3}"#
        );
    }
}
