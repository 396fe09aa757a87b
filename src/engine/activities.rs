//! Auto Scaling activities of the groups a run involved, for the journal.
//!
//! What Auto Scaling did while faults were in effect (launching replacements,
//! terminating unhealthy instances) is part of what the team learns from a
//! game day, so at the end of the fault phase, before the copy is deleted,
//! the runner asks DescribeScalingActivities for each group involved and
//! journals the activities that started during the run. Reports merge them
//! into the timeline by their start time.

use jiff::Timestamp;

use crate::aws::{Aws, AwsError, api};
use crate::journal::Event;

/// DescribeScalingActivities returns at most this many per page.
const PAGE: i32 = 100;
/// Pages read per group: activities come newest first, so a run's are in the first pages.
const MAX_PAGES: usize = 5;

/// The activities of `group` that started at or after `since`, oldest first,
/// as `scaling_activity` events.
pub async fn since(aws: &Aws, group: &str, since: Timestamp) -> Result<Vec<Event>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = aws
            .autoscaling
            .describe_scaling_activities()
            .auto_scaling_group_name(group)
            .max_records(PAGE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(api("autoscaling", "DescribeScalingActivities"))?;
        let mut older = false;
        for a in page.activities() {
            let started_at = a.start_time().and_then(to_timestamp);
            if started_at.is_some_and(|t| t < since) {
                older = true;
                continue;
            }
            out.push(Event::ScalingActivity {
                group: group.to_string(),
                activity_id: a.activity_id().unwrap_or_default().to_string(),
                description: a.description().unwrap_or_default().to_string(),
                cause: a.cause().unwrap_or_default().to_string(),
                status: a
                    .status_code()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                started_at,
                ended_at: a.end_time().and_then(to_timestamp),
            });
        }
        token = page.next_token().map(str::to_string);
        if older || token.is_none() {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

fn to_timestamp(t: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}
