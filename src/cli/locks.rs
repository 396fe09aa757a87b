//! `gameday locks create-table NAME`: the DynamoDB table that makes locks
//! race-free (the safety policy's `locks.table`).

use super::shared::connect;
use super::{AwsArgs, Error, Outcome};
use crate::lease::{self, Created};

/// Creates the lease table (or checks an existing one) and says how to use it.
pub(super) async fn create_table(table: &str, aws_args: &AwsArgs) -> Result<Outcome, Error> {
    let aws = connect(aws_args).await?;
    let created = lease::create_table(&aws, table)
        .await
        .map_err(Error::LeaseTable)?;
    match created {
        Created::New => println!(
            "created the lease table `{table}` in {} (partition key `{}`, a string; on-demand billing)",
            aws.region,
            lease::KEY_ATTR
        ),
        Created::Existing => println!(
            "the lease table `{table}` already exists in {} with the right key; nothing changed",
            aws.region
        ),
    }
    println!("runs use it once the safety policy says:\n  locks:\n    table: {table}");
    Ok(Outcome::Done)
}
