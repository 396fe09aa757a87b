//! `ec2:network-blackhole`: cut the target instances off the network. The run
//! creates a security group in each target's VPC with no ingress rule and its
//! default egress rule revoked (so nothing in, nothing out), tags it with the
//! run, then gives each instance that group as its only one. Each instance's
//! original groups are recorded just before the change; the rollback gives
//! each exactly those back, then deletes the group.
//!
//! The group's creation is its own journaled step (undo: delete it, found by
//! name in its VPC), so a runner killed right after creating it still gets it
//! deleted by `gameday recover`, and `gameday cleanup` finds it by its tags.
//! ModifyInstanceAttribute changes the groups of an instance's primary
//! network interface: instances with several interfaces keep the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use marked_yaml::Node;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize};

use super::{
    ActionDef, BoxFuture, Forward, InstanceFault, On, PlanInstances, RUNNING, ReadFirst, Ready, Revert, Step,
    StepContext, UndoReport, no_params,
};
use crate::aws::{Aws, AwsError, Refusal, api};
use crate::environment::{EXPIRES_TAG, RUN_ID_TAG};
use crate::model::Instance;
use crate::yaml::Decoder;

/// Instances per ModifyInstanceAttribute step (the API takes one instance per
/// call; a step makes its calls with bounded concurrency).
const BATCH: usize = 50;
/// ModifyInstanceAttribute calls in flight at once.
const CONCURRENCY: usize = 8;
/// How long deleting the group waits for instances to leave it.
const DELETE_WAIT: Duration = Duration::from_secs(120);

/// Tag on the blackhole group naming the fault that created it.
pub const BLACKHOLE_TAG: &str = "gameday:blackhole";

pub(super) const DEF: ActionDef = ActionDef {
    name: "ec2:network-blackhole",
    build,
    params: super::no_params_schema,
};

fn build(d: &mut Decoder, params: Option<&Node>, what: &str, _at: crate::yaml::Loc) -> Option<On> {
    no_params(d, params, what)?;
    Some(InstanceFault::on(RUNNING, NetworkBlackhole))
}

/// Isolates instances behind a deny-all security group.
#[derive(Debug)]
pub struct NetworkBlackhole;

/// The blackhole group's name for a fault of a run (unique per VPC).
pub fn group_name(cx: &StepContext) -> String {
    format!("gd-{}-{}", cx.run_id, cx.fault)
}

impl PlanInstances for NetworkBlackhole {
    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        let vpcs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t.vpc_id.as_deref().unwrap_or_default())
            .collect();
        let mut steps = Vec::new();
        for vpc in vpcs {
            steps.push(Step::read_first(
                "ec2:CreateSecurityGroup",
                vec![vpc.to_string()],
                NameGroup {
                    vpc_id: vpc.to_string(),
                },
            ));
            let ids: Vec<String> = targets
                .iter()
                .filter(|t| t.vpc_id.as_deref().unwrap_or_default() == vpc)
                .map(|t| t.id.clone())
                .collect();
            for chunk in ids.chunks(BATCH) {
                steps.push(Step::read_first(
                    "ec2:ModifyInstanceAttribute (groups)",
                    chunk.to_vec(),
                    ReadGroups {
                        instance_ids: chunk.to_vec(),
                    },
                ));
            }
        }
        steps
    }
}

/// Names the blackhole group after the run and the fault (so the undo can
/// find it by name before its id exists): no AWS read.
#[derive(Debug)]
struct NameGroup {
    vpc_id: String,
}

impl ReadFirst for NameGroup {
    fn undo_operation(&self) -> &'static str {
        DeleteSecurityGroup::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", "delete_security_group".into()),
            ("vpc_id", self.vpc_id.clone()),
        ]
    }

    fn read<'a>(&'a self, _aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        let name = group_name(cx);
        let ready = Ready::new(
            CreateGroup {
                vpc_id: self.vpc_id.clone(),
                group_name: name.clone(),
            },
            DeleteSecurityGroup {
                vpc_id: self.vpc_id.clone(),
                group_name: name,
            },
        );
        Box::pin(async move { Ok(ready) })
    }
}

/// The forward call: create the deny-all group (tagged with the run).
#[derive(Debug)]
struct CreateGroup {
    vpc_id: String,
    group_name: String,
}

impl Forward for CreateGroup {
    fn apply<'a>(&'a self, aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(create_group(aws, cx, &self.vpc_id, &self.group_name))
    }
}

/// Reads each instance's security groups just before the call, for the undo.
#[derive(Debug)]
struct ReadGroups {
    instance_ids: Vec<String>,
}

impl ReadFirst for ReadGroups {
    fn undo_operation(&self) -> &'static str {
        RestoreSecurityGroups::OPERATION
    }

    fn undo_known(&self) -> Vec<(&'static str, String)> {
        vec![("kind", "restore_security_groups".into())]
    }

    fn read<'a>(&'a self, aws: &'a Aws, cx: &'a StepContext) -> BoxFuture<'a, Result<Ready, AwsError>> {
        Box::pin(async move {
            let instances = current_groups(aws, &self.instance_ids).await?;
            Ok(Ready::new(
                Isolate {
                    group_name: group_name(cx),
                    instances: instances
                        .iter()
                        .map(|i| (i.instance_id.clone(), i.vpc_id.clone()))
                        .collect(),
                },
                RestoreSecurityGroups { instances },
            ))
        })
    }
}

/// The forward call: each instance (those EC2 still knew at the read) gets
/// the blackhole group of its VPC as its only group.
#[derive(Debug)]
struct Isolate {
    group_name: String,
    /// Each instance with its VPC.
    instances: Vec<(String, String)>,
}

impl Forward for Isolate {
    fn apply<'a>(&'a self, aws: &'a Aws, _cx: &'a StepContext) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let name = &self.group_name;
            let mut by_vpc = std::collections::BTreeMap::new();
            for (_, vpc) in &self.instances {
                if !by_vpc.contains_key(vpc) {
                    let Some(id) = find_group(aws, vpc, name).await? else {
                        return Err(AwsError::refused(
                            "ec2",
                            "ModifyInstanceAttribute",
                            Refusal::NoBlackholeGroup,
                            format!("the blackhole group `{name}` is missing in {vpc}"),
                        ));
                    };
                    by_vpc.insert(vpc.clone(), id);
                }
            }
            let calls = self
                .instances
                .iter()
                .map(|(id, vpc)| (id.clone(), vec![by_vpc[vpc].clone()]))
                .collect();
            set_groups(aws, calls).await.map(drop)
        })
    }
}

/// An instance's security groups, as recorded before a blackhole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceGroups {
    /// The instance.
    pub instance_id: String,
    /// Its VPC (where the blackhole group lives).
    pub vpc_id: String,
    /// Its security group ids before the change, in order.
    pub group_ids: Vec<String>,
}

/// Each instance's VPC and security groups now; instances EC2 no longer knows are left out.
async fn current_groups(aws: &Aws, ids: &[String]) -> Result<Vec<InstanceGroups>, AwsError> {
    let filter = Filter::builder()
        .name("instance-id")
        .set_values(Some(ids.to_vec()))
        .build();
    let mut pages = aws
        .ec2
        .describe_instances()
        .filters(filter)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2", "DescribeInstances"))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = i.instance_id() else { continue };
            out.push(InstanceGroups {
                instance_id: id.to_string(),
                vpc_id: i.vpc_id().unwrap_or_default().to_string(),
                group_ids: i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(out)
}

/// The id of the group named `name` in `vpc`, if it exists.
async fn find_group(aws: &Aws, vpc: &str, name: &str) -> Result<Option<String>, AwsError> {
    let out = aws
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .map_err(api("ec2", "DescribeSecurityGroups"))?;
    Ok(out
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(name))
        .and_then(|g| g.group_id())
        .map(str::to_string))
}

/// Creates the deny-all group (or finds it, when a retry already created it)
/// and revokes every egress rule it has.
async fn create_group(aws: &Aws, cx: &StepContext, vpc: &str, name: &str) -> Result<(), AwsError> {
    let id = match find_group(aws, vpc, name).await? {
        Some(id) => id,
        None => {
            let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
            let tags = TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(tag(RUN_ID_TAG, &cx.run_id))
                .tags(tag(EXPIRES_TAG, &cx.expires_at.to_string()))
                .tags(tag(BLACKHOLE_TAG, &cx.fault))
                .build();
            let out = aws
                .ec2
                .create_security_group()
                .group_name(name)
                .description(format!(
                    "gameday network blackhole of run {}: no ingress, no egress",
                    cx.run_id
                ))
                .vpc_id(vpc)
                .tag_specifications(tags)
                .send()
                .await
                .map_err(api("ec2", "CreateSecurityGroup"))?;
            out.group_id().unwrap_or_default().to_string()
        }
    };
    let out = aws
        .ec2
        .describe_security_groups()
        .group_ids(&id)
        .send()
        .await
        .map_err(api("ec2", "DescribeSecurityGroups"))?;
    let egress: Vec<_> = out
        .security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions_egress().iter().cloned())
        .collect();
    if !egress.is_empty() {
        aws.ec2
            .revoke_security_group_egress()
            .group_id(&id)
            .set_ip_permissions(Some(egress))
            .send()
            .await
            .map_err(api("ec2", "RevokeSecurityGroupEgress"))?;
    }
    Ok(())
}

/// Sets each instance's groups, with bounded concurrency. Returns the ids
/// done and those EC2 no longer knows.
async fn set_groups(
    aws: &Aws,
    calls: Vec<(String, Vec<String>)>,
) -> Result<(Vec<String>, Vec<String>), AwsError> {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    for (id, groups) in calls {
        let (aws, limit) = (aws.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = aws
                .ec2
                .modify_instance_attribute()
                .instance_id(&id)
                .set_groups(Some(groups))
                .send()
                .await
                .map_err(api("ec2", "ModifyInstanceAttribute"));
            (id, r)
        });
    }
    let (mut done, mut gone, mut first_error) = (Vec::new(), Vec::new(), None);
    while let Some(joined) = set.join_next().await {
        let Ok((id, r)) = joined else { continue };
        match r {
            Ok(_) => done.push(id),
            Err(e) if e.code().starts_with("InvalidInstanceID") => gone.push(id),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((done, gone)),
    }
}

/// The undo of the isolation: give each instance exactly its original
/// security groups again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSecurityGroups {
    /// Each instance with the groups it had before the blackhole.
    pub instances: Vec<InstanceGroups>,
}

impl Revert for RestoreSecurityGroups {
    const OPERATION: &'static str = "ec2:ModifyInstanceAttribute (original groups)";

    fn resources(&self) -> Vec<String> {
        self.instances.iter().map(|i| i.instance_id.clone()).collect()
    }

    /// Gives each instance exactly its recorded groups back. Terminated or
    /// vanished instances are reported as gone. Idempotent.
    async fn run(&self, aws: &Aws, _hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        let ids: Vec<String> = self.instances.iter().map(|i| i.instance_id.clone()).collect();
        let states = crate::aws::instance_states(aws, &ids).await?;
        let mut report = UndoReport::default();
        let mut calls = Vec::new();
        for i in &self.instances {
            match states.get(&i.instance_id).map(String::as_str) {
                None | Some("terminated" | "shutting-down") => report.gone.push(i.instance_id.clone()),
                Some(_) => calls.push((i.instance_id.clone(), i.group_ids.clone())),
            }
        }
        let (done, gone) = set_groups(aws, calls).await?;
        report.restored.extend(done);
        report.gone.extend(gone);
        report.restored.sort();
        Ok(report)
    }
}

/// The undo of the group's creation: delete the temporary security group
/// of a network blackhole, once no instance uses it any more (found by name
/// in its VPC, so the undo is known before the group's id exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSecurityGroup {
    /// The VPC it was created in.
    pub vpc_id: String,
    /// Its name (`gd-<run-id>-<fault>`).
    pub group_name: String,
}

impl Revert for DeleteSecurityGroup {
    const OPERATION: &'static str = "ec2:DeleteSecurityGroup";

    fn resources(&self) -> Vec<String> {
        vec![self.group_name.clone()]
    }

    async fn run(&self, aws: &Aws, hurry: &CancellationToken) -> Result<UndoReport, AwsError> {
        delete_blackhole_group(aws, &self.vpc_id, &self.group_name, hurry).await
    }
}

/// Deletes the blackhole group `name` in `vpc` once no live instance uses it
/// (its restore may be running at the same time). A group already gone is
/// reported as such. With `hurry` cancelled, tries once without waiting.
pub(crate) async fn delete_blackhole_group(
    aws: &Aws,
    vpc: &str,
    name: &str,
    hurry: &CancellationToken,
) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    let Some(id) = find_group(aws, vpc, name).await? else {
        report.gone.push(name.to_string());
        return Ok(report);
    };
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    let mut pause = Duration::from_millis(250);
    loop {
        let users = instances_using(aws, &id).await?;
        if users.is_empty() || hurry.is_cancelled() || tokio::time::Instant::now() >= deadline {
            match aws
                .ec2
                .delete_security_group()
                .group_id(&id)
                .send()
                .await
                .map_err(api("ec2", "DeleteSecurityGroup"))
            {
                Ok(_) => {
                    report.restored.push(name.to_string());
                    return Ok(report);
                }
                Err(e) if e.code() == "InvalidGroup.NotFound" => {
                    report.gone.push(name.to_string());
                    return Ok(report);
                }
                Err(e)
                    if users.is_empty()
                        && e.code() == "DependencyViolation"
                        && !hurry.is_cancelled()
                        && tokio::time::Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Live instances whose groups include `group_id`.
async fn instances_using(aws: &Aws, group_id: &str) -> Result<Vec<String>, AwsError> {
    let filters = vec![
        Filter::builder()
            .name("instance.group-id")
            .values(group_id)
            .build(),
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    ];
    let mut pages = aws
        .ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2", "DescribeInstances"))?;
        out.extend(
            page.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| i.instance_id().map(str::to_string)),
        );
    }
    Ok(out)
}
