//! The `schedule:` block's JSON Schema, from the decoder's key table (shared,
//! like the block, by experiment and suite files).

use serde_json::{Value, json};

use super::SCHEDULE_KEYS;
use crate::schema::{self, object};

/// The JSON Schema of a `schedule:` block.
pub fn block() -> Value {
    let zone = || schema::text("an IANA time zone the cron is read in, e.g. Europe/Paris; default UTC");
    let instant = |doc: &str| {
        schema::text(&format!(
            "{doc}: an RFC 3339 time (2026-12-01T09:00:00Z), a date and time in the schedule's zone \
             (2026-12-01T09:00) or a date (2026-12-01)"
        ))
    };
    object("schedule", SCHEDULE_KEYS)
        .key(
            "cron",
            schema::text("five fields: minute hour day-of-month month day-of-week, e.g. `0 10 * * TUE`"),
        )
        .key("timezone", zone())
        .key("time_zone", zone())
        .key(
            "jitter",
            schema::duration("each slot starts up to this much later than its cron time"),
        )
        .key("not_before", instant("no slot before this"))
        .key("until", instant("no slot after this"))
        .required(&["cron"])
        .with("not", json!({ "required": ["timezone", "time_zone"] }))
        .build("when `gameday due` and `gameday run-due` consider it due")
}
