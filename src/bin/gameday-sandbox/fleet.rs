//! Which Auto Scaling groups the sandbox serves, and how many of each group's
//! instances can take requests right now, read from the real state in the API.
//!
//! An instance serves when the group counts it (InService, Healthy), EC2 says
//! it is `running`, and the network lets requests reach it. moto keeps a
//! stopped instance InService and Healthy (real Auto Scaling would soon mark
//! it unhealthy), so the EC2 state is what makes a stop visible.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::types::Filter;
use gameday::aws::{Aws, AwsError, api};

/// Groups created by `gameday-sandbox setup` carry this tag (value `true`).
pub const SANDBOX_TAG: &str = "gameday-sandbox";
/// Temporary copies made by gameday runs carry this tag (parallel mode).
pub const RUN_ID_TAG: &str = "gameday:run-id";

/// IDs per DescribeInstances / DescribeSecurityGroups filter value list.
const IDS_PER_CALL: usize = 100;

/// One group's capacity as seen now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group's name.
    pub name: String,
    /// Instances the group lists (any lifecycle state).
    pub instances: usize,
    /// Instances that can serve requests.
    pub serving: usize,
    /// Listed instances the group does not count as InService and Healthy.
    pub out_of_service: usize,
    /// In-service instances not `running` in EC2.
    pub not_running: usize,
    /// Running instances only behind empty security groups.
    pub unreachable: usize,
    /// Every instance the group lists.
    pub members: Vec<String>,
}

/// The served groups, and which instances can serve requests right now.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The served groups.
    pub groups: Vec<GroupView>,
    /// Instances that can serve: those of the groups that count (see
    /// [`GroupView::serving`]), and of the `extra` instances asked about,
    /// those running and reachable.
    pub serving: HashSet<String>,
}

/// Whether a group is one the sandbox serves when no `--group` is given.
fn is_served(tags: &[(String, String)]) -> bool {
    tags.iter()
        .any(|(k, v)| (k == SANDBOX_TAG && v == "true") || k == RUN_ID_TAG)
}

/// The groups to serve: exactly `only` when given (missing ones are skipped),
/// otherwise every sandbox group and every copy made by a gameday run; and
/// which of their instances, and of `extra` (a load balancer's targets), can serve.
pub async fn view(aws: &Aws, only: &[String], extra: &[String]) -> Result<Fleet, AwsError> {
    let mut request = aws.autoscaling.describe_auto_scaling_groups();
    if !only.is_empty() {
        request = request.set_auto_scaling_group_names(Some(only.to_vec()));
    }
    let mut pages = request.into_paginator().send();
    // (group, instance ids the group counts as in service and healthy, all listed)
    let mut groups: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
        for g in page.auto_scaling_groups() {
            let Some(name) = g.auto_scaling_group_name() else {
                continue;
            };
            let tags: Vec<(String, String)> = g
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if only.is_empty() && !is_served(&tags) {
                continue;
            }
            let in_service: Vec<String> = g
                .instances()
                .iter()
                .filter(|i| {
                    i.lifecycle_state().is_some_and(|s| s.as_str() == "InService")
                        && i.health_status()
                            .is_some_and(|h| h.eq_ignore_ascii_case("healthy"))
                })
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            let members = g
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            groups.push((name.to_string(), in_service, members));
        }
    }
    let members: HashSet<&String> = groups.iter().flat_map(|(_, _, m)| m).collect();
    let extra: Vec<String> = extra
        .iter()
        .filter(|id| !members.contains(id))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<String> = groups
        .iter()
        .flat_map(|(_, ids, _)| ids.iter().cloned())
        .chain(extra.iter().cloned())
        .collect();
    let instances = describe_instances(aws, &ids).await?;
    let sg_ids: HashSet<String> = instances
        .values()
        .flat_map(|i| i.groups.iter().cloned())
        .collect();
    let empty_groups = empty_security_groups(aws, &sg_ids.into_iter().collect::<Vec<_>>()).await?;
    let can_serve = |id: &String| {
        instances
            .get(id)
            .is_some_and(|i| i.running && reachable(&i.groups, &empty_groups))
    };
    let mut serving: HashSet<String> = extra.iter().filter(|id| can_serve(id)).cloned().collect();
    let groups = groups
        .into_iter()
        .map(|(name, ids, members)| {
            let mut v = GroupView {
                name,
                instances: members.len(),
                serving: 0,
                out_of_service: members.len().saturating_sub(ids.len()),
                not_running: 0,
                unreachable: 0,
                members,
            };
            for id in &ids {
                match instances.get(id) {
                    Some(_) if can_serve(id) => {
                        v.serving += 1;
                        serving.insert(id.clone());
                    }
                    Some(i) if i.running => v.unreachable += 1,
                    _ => v.not_running += 1,
                }
            }
            v
        })
        .collect();
    Ok(Fleet { groups, serving })
}

/// Requests reach an instance unless every security group it has is empty (no
/// ingress and no egress rule), which is what a network blackhole swaps in.
/// Why not "no ingress rule": moto's default VPC group has none (real AWS's
/// default group allows traffic from itself), so every demo instance would
/// look cut off. An instance with no group listed is assumed reachable.
fn reachable(groups: &[String], empty: &HashSet<String>) -> bool {
    groups.is_empty() || groups.iter().any(|g| !empty.contains(g))
}

struct InstanceView {
    running: bool,
    groups: Vec<String>,
}

async fn describe_instances(aws: &Aws, ids: &[String]) -> Result<HashMap<String, InstanceView>, AwsError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(IDS_PER_CALL) {
        // A filter, not InstanceIds: an id that vanished must not fail the whole call.
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut pages = aws
            .ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("ec2", "DescribeInstances"))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                // The instance's own list when present; moto leaves it empty for
                // instances an Auto Scaling group launched and lists the groups on
                // the network interfaces instead.
                let mut groups: Vec<String> = i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect();
                if groups.is_empty() {
                    groups = i
                        .network_interfaces()
                        .iter()
                        .flat_map(|n| n.groups())
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect();
                }
                let running = i
                    .state()
                    .and_then(|s| s.name())
                    .is_some_and(|n| n.as_str() == "running");
                out.insert(id.to_string(), InstanceView { running, groups });
            }
        }
    }
    Ok(out)
}

async fn empty_security_groups(aws: &Aws, ids: &[String]) -> Result<HashSet<String>, AwsError> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(IDS_PER_CALL) {
        let filter = Filter::builder()
            .name("group-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut pages = aws
            .ec2
            .describe_security_groups()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("ec2", "DescribeSecurityGroups"))?;
            for g in page.security_groups() {
                if g.ip_permissions().is_empty()
                    && g.ip_permissions_egress().is_empty()
                    && let Some(id) = g.group_id()
                {
                    out.insert(id.to_string());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_groups_and_run_copies_are_served() {
        let t = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(is_served(&t(SANDBOX_TAG, "true")));
        assert!(is_served(&t(RUN_ID_TAG, "20261125-102719-4708")));
        assert!(!is_served(&t(SANDBOX_TAG, "false")));
        assert!(!is_served(&t("app", "shop")));
    }

    #[test]
    fn only_an_all_empty_set_of_groups_cuts_an_instance_off() {
        let empty: HashSet<String> = ["sg-empty".to_string()].into();
        assert!(!reachable(&["sg-empty".into()], &empty));
        assert!(reachable(&["sg-empty".into(), "sg-web".into()], &empty));
        assert!(reachable(&[], &empty));
    }
}
