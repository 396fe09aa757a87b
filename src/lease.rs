//! Leases in a DynamoDB table: claims that cannot race.
//!
//! A lease is one item of a table whose partition key is `lease` (a string:
//! what is held, e.g. `asg#web-prod`), holding the holder's run id, owner and
//! host and when the lease expires (`expires_at`, Unix milliseconds). Every
//! write is conditional, so two claimants never both win:
//!
//! - [`claim`] takes every key in one `TransactWriteItems` (all or none): each
//!   key must be absent, expired (`expires_at` < now, by the claimant's clock)
//!   or already the claimant's. A takeover of an expired lease is safe: the
//!   condition is checked against the item as it is at the write, so of two
//!   runs taking over the same dead lease, the second finds the first's fresh
//!   expiry and is refused.
//! - [`heartbeat`] pushes the expiry forward, only while every key is still
//!   the holder's.
//! - [`release`] deletes each key only if it is still the holder's.
//!
//! Nothing here knows what the keys mean: runs lock their targets with it
//! (`asg#<group>`, `instance#<id>`), and any other exclusive claim (a schedule
//! slot) can use the same table and calls with keys of its own.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TransactWriteItem, Update,
};
use jiff::Timestamp;

use crate::aws::{Aws, AwsError, api};
use crate::model::UndoReport;

/// The table's partition key (a string).
pub const KEY_ATTR: &str = "lease";
/// Items of one `TransactWriteItems` call: DynamoDB's limit.
const MAX_PER_TRANSACTION: usize = 100;
/// Attempts of a claim whose transaction collided with another one in flight
/// (`TransactionConflict`): the other settles within milliseconds, and the
/// next attempt then sees its outcome.
const CONFLICT_ATTEMPTS: u32 = 5;

const RUN: &str = "run_id";
const OWNER: &str = "owner";
const HOST: &str = "host";
const EXPIRES_MS: &str = "expires_at";
const EXPIRES_TEXT: &str = "expires";

/// Who holds (or claims) a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The run id (or any unique id of the claimant): releases and heartbeats
    /// are conditional on it.
    pub run_id: String,
    /// Who to ask (an experiment's owner), for people reading a refusal.
    pub owner: String,
    /// The machine the claimant runs on.
    pub host: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} (owner {}, host {})",
            self.run_id, self.owner, self.host
        )
    }
}

/// One lease as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is held.
    pub key: String,
    /// By whom.
    pub holder: Holder,
    /// Until when, unless extended.
    pub expires_at: Timestamp,
}

/// Why a claim or a heartbeat did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    /// Another holder has an unexpired lease on a key: nothing was claimed.
    #[error("{} is held by {} until {}", .0.key, .0.holder, .0.expires_at)]
    Held(Lease),
    /// A heartbeat found a key no longer the holder's (released, or taken
    /// over after it expired).
    #[error("the lease on {key} is no longer held by run {run_id}")]
    Lost {
        /// The key.
        key: String,
        /// The run that held it.
        run_id: String,
    },
    /// The table does not exist (or is not active yet).
    #[error(
        "the lease table `{table}` (locks.table of the safety policy) does not exist in this region: create it with `gameday locks create-table {table}` (or the CloudFormation snippet in the README), or remove `locks` from the policy to use best-effort tag locks"
    )]
    NoTable {
        /// The table.
        table: String,
    },
    /// Any other failed call.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl LeaseError {
    /// The error as the journal records a failed call.
    pub fn to_aws(&self) -> AwsError {
        match self {
            LeaseError::Aws(e) => e.clone(),
            LeaseError::NoTable { .. } => {
                AwsError::not_found("dynamodb", "TransactWriteItems", self.to_string())
            }
            LeaseError::Held(_) | LeaseError::Lost { .. } => AwsError::Api {
                service: "dynamodb".into(),
                operation: "TransactWriteItems".into(),
                code: "TransactionCanceledException".into(),
                message: self.to_string(),
                kind: crate::aws::ErrorKind::Permanent,
            },
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn ms(t: Timestamp) -> AttributeValue {
    AttributeValue::N(t.as_millisecond().to_string())
}

fn names() -> HashMap<String, String> {
    [
        ("#k", KEY_ATTR),
        ("#run", RUN),
        ("#exp", EXPIRES_MS),
        ("#text", EXPIRES_TEXT),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Reads a lease item; `None` when it is not one.
fn parse(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let expires_ms: i64 = item.get(EXPIRES_MS)?.as_n().ok()?.parse().ok()?;
    Some(Lease {
        key: text(KEY_ATTR)?,
        holder: Holder {
            run_id: text(RUN)?,
            owner: text(OWNER).unwrap_or_else(|| "unknown".into()),
            host: text(HOST).unwrap_or_else(|| "unknown".into()),
        },
        expires_at: Timestamp::from_millisecond(expires_ms).ok()?,
    })
}

/// now + `ttl`, to the millisecond (what the table stores).
fn until(now: Timestamp, ttl: Duration) -> Timestamp {
    let t = now.checked_add(ttl).unwrap_or(Timestamp::MAX);
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// Claims every key of `keys` for `holder` until now + `ttl`, all or none:
/// each key must be absent, expired, or already `holder`'s (so a claim whose
/// answer was lost can be made again). Returns the expiry. Refused with
/// [`LeaseError::Held`] naming a holder when any key is someone else's.
///
/// Up to 100 keys (DynamoDB's limit per transaction) are claimed atomically;
/// more are claimed 100 at a time, and a refused batch releases the batches
/// already claimed, so the result is still all or none.
pub async fn claim(
    aws: &Aws,
    table: &str,
    keys: &[String],
    holder: &Holder,
    ttl: Duration,
) -> Result<Timestamp, LeaseError> {
    let now = Timestamp::now();
    let expires_at = until(now, ttl);
    let mut done: Vec<String> = Vec::new();
    for chunk in keys.chunks(MAX_PER_TRANSACTION) {
        if let Err(e) = claim_batch(aws, table, chunk, holder, now, expires_at).await {
            if !done.is_empty() {
                // Best effort: a failed release leaves leases that expire on their own.
                let _ = release(aws, table, &done, &holder.run_id).await;
            }
            return Err(e);
        }
        done.extend(chunk.iter().cloned());
    }
    Ok(expires_at)
}

async fn claim_batch(
    aws: &Aws,
    table: &str,
    keys: &[String],
    holder: &Holder,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), LeaseError> {
    let mut values = HashMap::new();
    values.insert(":now".to_string(), ms(now));
    values.insert(":run".to_string(), s(&holder.run_id));
    let mut items = Vec::new();
    for key in keys {
        let item: HashMap<String, AttributeValue> = [
            (KEY_ATTR, s(key)),
            (RUN, s(&holder.run_id)),
            (OWNER, s(&holder.owner)),
            (HOST, s(&holder.host)),
            (EXPIRES_MS, ms(expires_at)),
            (EXPIRES_TEXT, s(&expires_at.to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut names = names();
        names.remove("#text");
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k) OR #exp < :now OR #run = :run")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        items.push(TransactWriteItem::builder().put(put).build());
    }
    let mut attempt = 1;
    loop {
        let sent = aws
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        let err = match sent {
            Ok(_) => match confirm(aws, table, keys, holder).await? {
                Confirmed::All => return Ok(()),
                Confirmed::Held(lease) => {
                    let _ = release(aws, table, keys, &holder.run_id).await;
                    return Err(LeaseError::Held(lease));
                }
                Confirmed::Missing if attempt < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Confirmed::Missing => {
                    let _ = release(aws, table, keys, &holder.run_id).await;
                    return Err(AwsError::Api {
                        service: "dynamodb".into(),
                        operation: "TransactWriteItems".into(),
                        code: "LeaseNotKept".into(),
                        message: format!(
                            "the leases written in table `{table}` were not there when read back, {CONFLICT_ATTEMPTS} times: is the table shared with another tool?"
                        ),
                        kind: crate::aws::ErrorKind::Transient,
                    }
                    .into());
                }
            },
            Err(e) => e,
        };
        match refusal(&err) {
            Refused::Table => return Err(LeaseError::NoTable { table: table.into() }),
            Refused::Held(Some(lease)) => return Err(LeaseError::Held(lease)),
            // The old item is not in the answer: read who holds it.
            Refused::Held(None) => {
                let now = Timestamp::now();
                let held = holders(aws, table, keys).await?;
                if let Some(l) = held
                    .into_iter()
                    .find(|l| l.holder.run_id != holder.run_id && l.expires_at >= now)
                {
                    return Err(LeaseError::Held(l));
                }
            }
            Refused::Conflict => {}
            Refused::Other => return Err(AwsError::from_sdk("dynamodb", "TransactWriteItems", err).into()),
        }
        if attempt >= CONFLICT_ATTEMPTS {
            return Err(AwsError::from_sdk("dynamodb", "TransactWriteItems", err).into());
        }
        tokio::time::sleep(crate::aws::step_backoff(1) / 10).await;
        attempt += 1;
    }
}

/// What reading a claim back found.
enum Confirmed {
    /// Every key is the claimant's.
    All,
    /// A key is someone else's.
    Held(Lease),
    /// A key is gone.
    Missing,
}

/// Reads the claimed keys back (consistent reads). On DynamoDB a transaction
/// that succeeded is what the table holds, so this always finds `All`; it is
/// a second line for stores whose transactions are not isolated from each
/// other (moto's server: a cancelled transaction restores a copy of the table
/// taken before it, which can erase a concurrent one's writes). The cost is
/// one read per key, once per run.
async fn confirm(aws: &Aws, table: &str, keys: &[String], holder: &Holder) -> Result<Confirmed, LeaseError> {
    let held = holders(aws, table, keys).await?;
    if let Some(other) = held.iter().find(|l| l.holder.run_id != holder.run_id) {
        return Ok(Confirmed::Held(other.clone()));
    }
    Ok(if held.len() == keys.len() {
        Confirmed::All
    } else {
        Confirmed::Missing
    })
}

enum Refused {
    Table,
    /// A condition failed; the item as it was, when DynamoDB returned it.
    Held(Option<Lease>),
    /// Another transaction on the same item was in flight.
    Conflict,
    Other,
}

fn refusal<R>(err: &SdkError<TransactWriteItemsError, R>) -> Refused {
    let Some(service) = err.as_service_error() else {
        return Refused::Other;
    };
    match service {
        TransactWriteItemsError::ResourceNotFoundException(_) => Refused::Table,
        TransactWriteItemsError::TransactionCanceledException(tc) => {
            let reasons = tc.cancellation_reasons();
            if let Some(r) = reasons
                .iter()
                .find(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Refused::Held(r.item().and_then(parse));
            }
            if reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                return Refused::Conflict;
            }
            // moto names a missing table inside the cancellation reasons.
            if reasons.iter().any(|r| {
                r.code().is_some_and(|c| c.contains("ResourceNotFound"))
                    || r.message()
                        .is_some_and(|m| m.contains("Requested resource not found"))
            }) {
                return Refused::Table;
            }
            Refused::Other
        }
        TransactWriteItemsError::TransactionInProgressException(_) => Refused::Conflict,
        other if other.code() == Some("ResourceNotFoundException") => Refused::Table,
        _ => Refused::Other,
    }
}

fn build_error(operation: &str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Api {
        service: "dynamodb".into(),
        operation: operation.into(),
        code: "InvalidRequest".into(),
        message: e.to_string(),
        kind: crate::aws::ErrorKind::Permanent,
    }
}

/// Extends `run_id`'s leases on `keys` to now + `ttl`, all or none, only
/// while every one is still `run_id`'s; [`LeaseError::Lost`] otherwise.
/// Returns the new expiry.
pub async fn heartbeat(
    aws: &Aws,
    table: &str,
    keys: &[String],
    run_id: &str,
    ttl: Duration,
) -> Result<Timestamp, LeaseError> {
    let expires_at = until(Timestamp::now(), ttl);
    let mut values = HashMap::new();
    values.insert(":run".to_string(), s(run_id));
    values.insert(":exp".to_string(), ms(expires_at));
    values.insert(":text".to_string(), s(&expires_at.to_string()));
    for chunk in keys.chunks(MAX_PER_TRANSACTION) {
        let mut items = Vec::new();
        for key in chunk {
            let mut names = names();
            names.remove("#k");
            let update = Update::builder()
                .table_name(table)
                .key(KEY_ATTR, s(key))
                .update_expression("SET #exp = :exp, #text = :text")
                .condition_expression("#run = :run")
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(|e| build_error("TransactWriteItems", e))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let sent = aws
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        if let Err(err) = sent {
            return Err(match refusal(&err) {
                Refused::Table => LeaseError::NoTable { table: table.into() },
                Refused::Held(lease) => LeaseError::Lost {
                    key: lease.map(|l| l.key).unwrap_or_else(|| chunk.join(", ")),
                    run_id: run_id.into(),
                },
                Refused::Conflict | Refused::Other => {
                    AwsError::from_sdk("dynamodb", "TransactWriteItems", err).into()
                }
            });
        }
    }
    Ok(expires_at)
}

/// Deletes `run_id`'s leases on `keys`; a key that is gone or someone else's
/// is left alone. Idempotent. A missing table holds nothing, so there is
/// nothing to release.
pub async fn release(aws: &Aws, table: &str, keys: &[String], run_id: &str) -> Result<UndoReport, AwsError> {
    let mut report = UndoReport::default();
    for key in keys {
        let sent = aws
            .dynamodb
            .delete_item()
            .table_name(table)
            .key(KEY_ATTR, s(key))
            .condition_expression("#run = :run")
            .expression_attribute_names("#run", RUN)
            .expression_attribute_values(":run", s(run_id))
            .send()
            .await;
        match sent {
            Ok(_) => report.restored.push(key.clone()),
            Err(e) => {
                let gone = e.as_service_error().is_some_and(|se| {
                    se.is_conditional_check_failed_exception() || se.is_resource_not_found_exception()
                });
                if !gone {
                    return Err(AwsError::from_sdk("dynamodb", "DeleteItem", e));
                }
            }
        }
    }
    Ok(report)
}

/// The leases on `keys` (expired or not), read consistently.
pub async fn holders(aws: &Aws, table: &str, keys: &[String]) -> Result<Vec<Lease>, LeaseError> {
    let mut out = Vec::new();
    for key in keys {
        let got = aws
            .dynamodb
            .get_item()
            .table_name(table)
            .key(KEY_ATTR, s(key))
            .consistent_read(true)
            .send()
            .await;
        match got {
            Ok(r) => out.extend(r.item().and_then(parse)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                return Err(LeaseError::NoTable { table: table.into() });
            }
            Err(e) => return Err(api("dynamodb", "GetItem")(e).into()),
        }
    }
    Ok(out)
}

/// Every lease in the table (for `gameday cleanup`).
pub async fn all(aws: &Aws, table: &str) -> Result<Vec<Lease>, LeaseError> {
    let mut out = Vec::new();
    let mut pages = aws
        .dynamodb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(p.items().iter().filter_map(parse)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                return Err(LeaseError::NoTable { table: table.into() });
            }
            Err(e) => return Err(api("dynamodb", "Scan")(e).into()),
        }
    }
    Ok(out)
}

/// What [`create_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The table was created and is active.
    New,
    /// A table of that name with the right key already existed.
    Existing,
}

/// Creates the lease table (partition key `lease`, a string; on-demand
/// billing) and waits until it is active. A table that exists with the same
/// key is left as it is; one with another key is an error.
pub async fn create_table(aws: &Aws, table: &str) -> Result<Created, AwsError> {
    let key = KeySchemaElement::builder()
        .attribute_name(KEY_ATTR)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| build_error("CreateTable", e))?;
    let attr = AttributeDefinition::builder()
        .attribute_name(KEY_ATTR)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error("CreateTable", e))?;
    let created = aws
        .dynamodb
        .create_table()
        .table_name(table)
        .key_schema(key)
        .attribute_definitions(attr)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    let outcome = match created {
        Ok(_) => Created::New,
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            Created::Existing
        }
        Err(e) => return Err(api("dynamodb", "CreateTable")(e)),
    };
    for _ in 0..120 {
        let d = aws
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(api("dynamodb", "DescribeTable"))?;
        let t = d.table();
        let schema = t.map(|t| t.key_schema()).unwrap_or_default();
        let right = schema.len() == 1
            && schema[0].attribute_name() == KEY_ATTR
            && schema[0].key_type() == &KeyType::Hash;
        if !right {
            return Err(AwsError::Api {
                service: "dynamodb".into(),
                operation: "DescribeTable".into(),
                code: "WrongKeySchema".into(),
                message: format!(
                    "table `{table}` exists with another key; a lease table has exactly one key, the string partition key `{KEY_ATTR}`: pick another name"
                ),
                kind: crate::aws::ErrorKind::Permanent,
            });
        }
        if t.and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(outcome);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(AwsError::Timeout {
        service: "dynamodb".into(),
        operation: "CreateTable".into(),
        message: format!("table `{table}` was not active after 2 minutes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_item_reads_back() {
        let item: HashMap<String, AttributeValue> = [
            (KEY_ATTR, s("asg#web")),
            (RUN, s("r1")),
            (OWNER, s("team-web")),
            (HOST, s("ci-1")),
            (EXPIRES_MS, AttributeValue::N("1764000000000".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let l = parse(&item).unwrap();
        assert_eq!(l.key, "asg#web");
        assert_eq!(l.holder.run_id, "r1");
        assert_eq!(l.expires_at.as_millisecond(), 1_764_000_000_000);
        let mut bad = item.clone();
        bad.remove(RUN);
        assert_eq!(parse(&bad), None);
    }
}
