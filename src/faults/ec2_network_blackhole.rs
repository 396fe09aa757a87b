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

use super::{ActionDef, BoxFuture, Fault, InstanceGroups, Step, StepContext, Undo, UndoReport, no_params};
use crate::aws::{Aws, AwsError, Refusal, api};
use crate::environment::{EXPIRES_TAG, RUN_ID_TAG};
use crate::targets::Instance;
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
};

fn build(
    d: &mut Decoder,
    params: Option<&Node>,
    what: &str,
    _at: crate::yaml::Loc,
) -> Option<Arc<dyn Fault>> {
    no_params(d, params, what)?;
    Some(Arc::new(NetworkBlackhole))
}

/// Isolates instances behind a deny-all security group.
#[derive(Debug)]
pub struct NetworkBlackhole;

/// The blackhole group's name for a fault of a run (unique per VPC).
pub fn group_name(cx: &StepContext) -> String {
    format!("gd-{}-{}", cx.run_id, cx.fault)
}

impl Fault for NetworkBlackhole {
    fn action(&self) -> &'static str {
        DEF.name
    }

    fn plan(&self, targets: &[Instance]) -> Vec<Step> {
        let vpcs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t.vpc_id.as_deref().unwrap_or_default())
            .collect();
        let mut steps = Vec::new();
        for vpc in vpcs {
            steps.push(Step {
                operation: "ec2:CreateSecurityGroup".into(),
                resources: vec![vpc.to_string()],
                // The name is set by `prepare` (it holds the run id).
                undo: Undo::DeleteSecurityGroup {
                    vpc_id: vpc.to_string(),
                    group_name: String::new(),
                },
            });
            let ids: Vec<String> = targets
                .iter()
                .filter(|t| t.vpc_id.as_deref().unwrap_or_default() == vpc)
                .map(|t| t.id.clone())
                .collect();
            for chunk in ids.chunks(BATCH) {
                steps.push(Step {
                    operation: "ec2:ModifyInstanceAttribute (groups)".into(),
                    resources: chunk.to_vec(),
                    // The original groups are recorded by `prepare`.
                    undo: Undo::RestoreSecurityGroups {
                        instances: Vec::new(),
                    },
                });
            }
        }
        steps
    }

    fn prepare<'a>(
        &'a self,
        aws: &'a Aws,
        cx: &'a StepContext,
        step: Step,
    ) -> BoxFuture<'a, Result<Step, AwsError>> {
        Box::pin(async move {
            match &step.undo {
                Undo::DeleteSecurityGroup { vpc_id, .. } => {
                    let undo = Undo::DeleteSecurityGroup {
                        vpc_id: vpc_id.clone(),
                        group_name: group_name(cx),
                    };
                    Ok(Step { undo, ..step })
                }
                Undo::RestoreSecurityGroups { .. } => {
                    let instances = current_groups(aws, &step.resources).await?;
                    Ok(Step {
                        undo: Undo::RestoreSecurityGroups { instances },
                        ..step
                    })
                }
                _ => Ok(step),
            }
        })
    }

    fn apply<'a>(
        &'a self,
        aws: &'a Aws,
        cx: &'a StepContext,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            match &step.undo {
                Undo::DeleteSecurityGroup { vpc_id, group_name } => {
                    create_group(aws, cx, vpc_id, group_name).await
                }
                Undo::RestoreSecurityGroups { instances } => {
                    let name = group_name(cx);
                    let mut by_vpc = std::collections::BTreeMap::new();
                    for i in instances {
                        if !by_vpc.contains_key(&i.vpc_id) {
                            let Some(id) = find_group(aws, &i.vpc_id, &name).await? else {
                                return Err(AwsError::refused(
                                    "ec2",
                                    "ModifyInstanceAttribute",
                                    Refusal::NoBlackholeGroup,
                                    format!("the blackhole group `{name}` is missing in {}", i.vpc_id),
                                ));
                            };
                            by_vpc.insert(i.vpc_id.clone(), id);
                        }
                    }
                    let calls = instances
                        .iter()
                        .map(|i| (i.instance_id.clone(), vec![by_vpc[&i.vpc_id].clone()]))
                        .collect();
                    set_groups(aws, calls).await.map(drop)
                }
                _ => Ok(()),
            }
        })
    }
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

/// Gives each instance exactly its recorded groups back. Terminated or
/// vanished instances are reported as gone. Idempotent.
pub(crate) async fn restore_groups(aws: &Aws, instances: &[InstanceGroups]) -> Result<UndoReport, AwsError> {
    let ids: Vec<String> = instances.iter().map(|i| i.instance_id.clone()).collect();
    let states = super::instance_states(aws, &ids).await?;
    let mut report = UndoReport::default();
    let mut calls = Vec::new();
    for i in instances {
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
    if name.is_empty() {
        return Ok(report); // never prepared, so never created
    }
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
