//! No two runs on one target: a run tags the group and instances it acts on
//! with `gameday:lock = <run-id> until <time>`, and refuses to start while
//! another run's unexpired lock is on any of them. A lock expires on its own
//! (at the run's `expires-at`), so a run that died cannot block others forever,
//! and `gameday cleanup` removes expired lock tags.

use jiff::Timestamp;

use crate::aws::{Aws, AwsError, api};
use crate::model::UndoReport;

/// The lock tag's key.
pub const LOCK_TAG: &str = "gameday:lock";

/// A lock held on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The locked group or instance.
    pub resource: String,
    /// The run holding it.
    pub run_id: String,
    /// When it expires.
    pub until: Timestamp,
}

/// The tag value for a lock.
pub fn value(run_id: &str, until: Timestamp) -> String {
    format!("{run_id} until {until}")
}

/// Reads a lock tag's value; `None` if it is not one of ours.
pub fn parse(value: &str) -> Option<(String, Timestamp)> {
    let (run, until) = value.split_once(" until ")?;
    Some((run.to_string(), until.parse().ok()?))
}

/// Locks currently on `groups` and `instances`, expired or not.
pub async fn held(aws: &Aws, groups: &[String], instances: &[String]) -> Result<Vec<Held>, AwsError> {
    let mut out = Vec::new();
    for chunk in groups.chunks(50) {
        let filter = aws_sdk_autoscaling::types::Filter::builder()
            .name("auto-scaling-group")
            .set_values(Some(chunk.to_vec()))
            .build();
        let key = aws_sdk_autoscaling::types::Filter::builder()
            .name("key")
            .values(LOCK_TAG)
            .build();
        let mut pages = aws
            .autoscaling
            .describe_tags()
            .filters(filter)
            .filters(key)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for t in page.map_err(api("autoscaling", "DescribeTags"))?.tags() {
                if t.key() == Some(LOCK_TAG)
                    && let (Some(res), Some((run_id, until))) = (t.resource_id(), t.value().and_then(parse))
                {
                    out.push(Held {
                        resource: res.to_string(),
                        run_id,
                        until,
                    });
                }
            }
        }
    }
    // Lock tags are few (one per instance of a live or dead in-place run), so
    // one paginated read of every instance lock tag costs a call or two however
    // many instances the run targets, where filtering by resource id costs a
    // call per 200 instances, each of them a scan of the account's tags.
    if !instances.is_empty() {
        let wanted: std::collections::BTreeSet<&str> = instances.iter().map(String::as_str).collect();
        let kind = aws_sdk_ec2::types::Filter::builder()
            .name("resource-type")
            .values("instance")
            .build();
        let key = aws_sdk_ec2::types::Filter::builder()
            .name("key")
            .values(LOCK_TAG)
            .build();
        let mut pages = aws
            .ec2
            .describe_tags()
            .filters(kind)
            .filters(key)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for t in page.map_err(api("ec2", "DescribeTags"))?.tags() {
                if let (Some(res), Some((run_id, until))) = (t.resource_id(), t.value().and_then(parse))
                    && wanted.contains(res)
                {
                    out.push(Held {
                        resource: res.to_string(),
                        run_id,
                        until,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Tags `groups` and `instances` as locked by `run_id` until `until`.
pub async fn acquire(
    aws: &Aws,
    groups: &[String],
    instances: &[String],
    run_id: &str,
    until: Timestamp,
) -> Result<(), AwsError> {
    let v = value(run_id, until);
    for g in groups {
        let tag = aws_sdk_autoscaling::types::Tag::builder()
            .resource_id(g)
            .resource_type("auto-scaling-group")
            .key(LOCK_TAG)
            .value(&v)
            .propagate_at_launch(false)
            .build();
        aws.autoscaling
            .create_or_update_tags()
            .tags(tag)
            .send()
            .await
            .map_err(api("autoscaling", "CreateOrUpdateTags"))?;
    }
    for chunk in instances.chunks(200) {
        let tag = aws_sdk_ec2::types::Tag::builder().key(LOCK_TAG).value(&v).build();
        aws.ec2
            .create_tags()
            .set_resources(Some(chunk.to_vec()))
            .tags(tag)
            .send()
            .await
            .map_err(api("ec2", "CreateTags"))?;
    }
    Ok(())
}

/// Removes `run_id`'s lock tags (another run's lock is left alone). Idempotent.
pub async fn release(
    aws: &Aws,
    groups: &[String],
    instances: &[String],
    run_id: &str,
) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    let ours: Vec<Held> = held(aws, groups, instances)
        .await?
        .into_iter()
        .filter(|h| h.run_id == run_id)
        .collect();
    let mut ec2_ids = Vec::new();
    for h in &ours {
        if groups.contains(&h.resource) {
            let tag = aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(&h.resource)
                .resource_type("auto-scaling-group")
                .key(LOCK_TAG)
                .build();
            aws.autoscaling
                .delete_tags()
                .tags(tag)
                .send()
                .await
                .map_err(api("autoscaling", "DeleteTags"))?;
        } else {
            ec2_ids.push(h.resource.clone());
        }
        report.restored.push(h.resource.clone());
    }
    // Batched like CreateTags: one call per 200 instances, not one per instance.
    for chunk in ec2_ids.chunks(200) {
        let tag = aws_sdk_ec2::types::Tag::builder().key(LOCK_TAG).build();
        aws.ec2
            .delete_tags()
            .set_resources(Some(chunk.to_vec()))
            .tags(tag)
            .send()
            .await
            .map_err(api("ec2", "DeleteTags"))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_round_trip() {
        let until: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let v = value("20261125-090000-ab12", until);
        assert_eq!(parse(&v), Some(("20261125-090000-ab12".to_string(), until)));
        assert_eq!(parse("someone else's tag"), None);
    }
}
