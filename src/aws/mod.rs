//! AWS client construction, error reporting, and the reads every layer shares.
//!
//! One `SdkConfig` comes from the standard configuration chain, so
//! `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, SSO and roles work as they
//! do for the AWS CLI.
//!
//! One retry policy serves every call: the SDK's standard retry mode,
//! configured here once on the shared `SdkConfig` ([`SDK_MAX_ATTEMPTS`]
//! attempts, exponential backoff with jitter on throttling, 5xx and transport
//! errors), so no call site retries an API call by itself. On top of it, and
//! only where giving up is worse than waiting (a rollback or teardown step,
//! whose undo re-reads the state each time), the runner repeats the whole
//! step, pausing [`step_backoff`] between attempts: the same exponential
//! backoff with jitter, from this module.
//! API errors are turned into [`AwsError`], which names the service, the
//! operation, the AWS error code and message, never a debug dump.
//!
//! [`reads`] holds the describe calls that more than one layer needs (a
//! group, alarms, instance states), so that none of them reaches into another.

mod reads;

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

pub use reads::{AlarmInfo, AlarmKind, describe_alarms, describe_group, instance_states};

/// Attempts per API call in the SDK's standard retry mode (the first and 4 retries).
pub const SDK_MAX_ATTEMPTS: u32 = 5;

/// The pause before attempt `attempt + 1` of a whole rollback step (attempts
/// count from 1): 1 s doubling per attempt, capped at 20 s (the SDK's own
/// cap), with jitter: a random point in the upper half, so that many
/// rollbacks failing together (throttling) do not retry in lockstep.
pub fn step_backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(Duration::from_secs(20));
    let half = base.as_millis() as u64 / 2;
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    Duration::from_millis(half + rand::Rng::next_u64(&mut rng) % (half + 1))
}

/// Where to connect, as given on the command line; anything unset comes from
/// the standard chain (environment variables, profiles).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--endpoint-url`: overrides `AWS_ENDPOINT_URL` (e.g. a local moto server).
    pub endpoint_url: Option<String>,
    /// `--region`: overrides `AWS_REGION` and the profile's region.
    pub region: Option<String>,
    /// `--profile`: overrides `AWS_PROFILE`.
    pub profile: Option<String>,
}

/// The three service clients a run needs, built from one configuration.
#[derive(Clone, Debug)]
pub struct Aws {
    /// EC2: instances, security groups.
    pub ec2: aws_sdk_ec2::Client,
    /// EC2 Auto Scaling: groups, processes, capacity.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// CloudWatch: metrics and alarms.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The region in use, for the journal and messages.
    pub region: String,
    /// The endpoint override in use, if any (recorded in the journal).
    pub endpoint: Option<String>,
}

/// Why clients could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No region anywhere in the chain.
    #[error("no AWS region is configured: set AWS_REGION, a region in your profile, or pass --region")]
    NoRegion,
}

impl Aws {
    /// Loads the configuration chain and builds the clients. Makes no API call.
    pub async fn connect(opts: &ConnectOptions) -> Result<Aws, ConnectError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        // Standard mode: backoff with jitter on throttling and 5xx, shared by
        // all calls; AWS_MAX_ATTEMPTS / AWS_RETRY_MODE still win when set.
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() && std::env::var_os("AWS_RETRY_MODE").is_none() {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS));
        }
        if let Some(url) = &opts.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &opts.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let region = config.region().ok_or(ConnectError::NoRegion)?.to_string();
        let endpoint = opts
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()));
        Ok(Aws {
            ec2: aws_sdk_ec2::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            region,
            endpoint,
        })
    }
}

/// A failed AWS API call, in the terms a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsError {
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `StopInstances`.
    pub operation: String,
    /// The AWS error code (`UnauthorizedOperation`, `Throttling`), or the kind
    /// of failure when the call never got an answer (`DispatchFailure`, `Timeout`).
    pub code: String,
    /// The service's message, or the transport's.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} failed: {}: {}",
            self.service, self.operation, self.code, self.message
        )
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// Converts an SDK error for `service:operation`.
    pub fn from_sdk<E, R>(service: &str, operation: &str, err: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let (code, message) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                (
                    e.code().unwrap_or("Unknown").to_string(),
                    e.message().map(str::to_string).unwrap_or_else(|| e.to_string()),
                )
            }
            SdkError::TimeoutError(_) => ("Timeout".to_string(), "the request timed out".to_string()),
            SdkError::DispatchFailure(_) => (
                "DispatchFailure".to_string(),
                format!("could not reach the AWS endpoint: {}", source_chain(&err)),
            ),
            SdkError::ResponseError(_) => (
                "ResponseError".to_string(),
                format!("the response could not be read: {}", source_chain(&err)),
            ),
            _ => ("RequestError".to_string(), source_chain(&err)),
        };
        AwsError {
            service: service.to_string(),
            operation: operation.to_string(),
            code,
            message: one_line(&message),
        }
    }
}

/// The messages of an error and its sources, joined with ": ", skipping a
/// source whose message its parent already contains. Display only: the SDK's
/// own context formatter appends a Debug dump, which is noise to a user.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    parts.join(": ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Shorthand used by every call site: `.map_err(api("ec2", "StopInstances"))`.
pub fn api<E, R>(service: &'static str, operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    move |e| AwsError::from_sdk(service, operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() {
        for (attempt, base) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 16000),
            (6, 20000),
            (12, 20000),
        ] {
            for _ in 0..20 {
                let d = step_backoff(attempt).as_millis() as u64;
                assert!((base / 2..=base).contains(&d), "attempt {attempt}: {d} ms");
            }
        }
    }
}
