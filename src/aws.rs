//! AWS client construction and error reporting.
//!
//! One `SdkConfig` comes from the standard configuration chain, so
//! `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, SSO and roles work as they
//! do for the AWS CLI. The SDK's standard retry mode (exponential backoff with
//! jitter on throttling and 5xx) is the one shared retry policy for every call.
//! API errors are turned into [`AwsError`], which names the service, the
//! operation, the AWS error code and message, never a debug dump.

use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

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
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(5));
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
        let endpoint = opts.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()));
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
        write!(f, "{}:{} failed: {}: {}", self.service, self.operation, self.code, self.message)
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
                (e.code().unwrap_or("Unknown").to_string(), e.message().map(str::to_string).unwrap_or_else(|| e.to_string()))
            }
            SdkError::TimeoutError(_) => ("Timeout".to_string(), "the request timed out".to_string()),
            SdkError::DispatchFailure(_) => ("DispatchFailure".to_string(), format!("could not reach the AWS endpoint: {}", source_chain(&err))),
            SdkError::ResponseError(_) => ("ResponseError".to_string(), format!("the response could not be read: {}", source_chain(&err))),
            _ => ("RequestError".to_string(), source_chain(&err)),
        };
        AwsError { service: service.to_string(), operation: operation.to_string(), code, message: one_line(&message) }
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
