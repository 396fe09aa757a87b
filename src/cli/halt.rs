//! `gameday halt` and `gameday resume`: the kill switch of an account and
//! region (the policy's `halt.parameter`, an SSM parameter).

use std::path::Path;

use crate::aws::Aws;
use crate::halt::{self, Halt};

use super::shared::{connect, load_policy};
use super::{AwsArgs, Error, Outcome};

/// The kill switch's parameter: the policy's `halt.parameter`.
fn parameter(policy: Option<&Path>) -> Result<String, Error> {
    Ok(load_policy(policy, None)?.policy.halt_parameter)
}

/// `gameday halt --reason TEXT`: turns the switch on; `--status`: shows it.
pub(super) async fn halt(
    reason: Option<&str>,
    policy: Option<&Path>,
    aws_args: &AwsArgs,
) -> Result<Outcome, Error> {
    let parameter = parameter(policy)?;
    let aws = connect(aws_args).await?;
    let Some(reason) = reason else {
        return status(&aws, &parameter).await;
    };
    let h = Halt::now(reason);
    halt::put(&aws, &parameter, &h).await.map_err(Error::Halt)?;
    println!(
        "halted: every gameday run in {} aborts and rolls back at its next check (within one `timing.interval`), and new runs are refused",
        aws.region
    );
    println!("  parameter: {parameter}\n  reason: {}\n  by: {}", h.reason, h.by);
    println!("lift it with `gameday resume`");
    Ok(Outcome::Done)
}

/// `gameday halt --status`: exits 0 when runs may start, 7 while halted.
async fn status(aws: &Aws, parameter: &str) -> Result<Outcome, Error> {
    match halt::read(aws, parameter).await.map_err(Error::Halt)? {
        Some(h) => {
            println!(
                "halted in {} since {} by {} ({parameter}): {}",
                aws.region,
                h.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                h.by,
                h.reason
            );
            Ok(Outcome::Halt { on: true })
        }
        None => {
            println!(
                "not halted in {} ({parameter} does not exist): runs may start",
                aws.region
            );
            Ok(Outcome::Halt { on: false })
        }
    }
}

/// `gameday resume`: turns the switch off.
pub(super) async fn resume(policy: Option<&Path>, aws_args: &AwsArgs) -> Result<Outcome, Error> {
    let parameter = parameter(policy)?;
    let aws = connect(aws_args).await?;
    if halt::delete(&aws, &parameter).await.map_err(Error::Halt)? {
        println!(
            "resumed: runs in {} may start again ({parameter} deleted)",
            aws.region
        );
    } else {
        println!(
            "not halted in {} ({parameter} does not exist): nothing to do",
            aws.region
        );
    }
    Ok(Outcome::Done)
}

/// For `run-due` and `suite run`: the halt in force for `policy`, if any,
/// checked before a slot is claimed or a suite starts.
pub(in crate::cli) async fn in_force(aws: &Aws, parameter: &str) -> Result<Option<Halt>, Error> {
    halt::read(aws, parameter).await.map_err(Error::Halt)
}
