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
//! operation, the AWS error code and message, never a debug dump, and says
//! whether trying again can help: transient (what the SDK's standard retry
//! mode retries, and the state races a rollback must wait out), permanent,
//! or refused by gameday itself.
//!
//! [`reads`] holds the describe calls that more than one layer needs (a
//! group, alarms, instance states), so that none of them reaches into another.

mod assume;
mod reads;
pub mod s3;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

pub use assume::{AssumeError, Assumed};
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

/// The service clients a run needs, built from one configuration.
#[derive(Clone, Debug)]
pub struct Aws {
    /// EC2: instances, security groups.
    pub ec2: aws_sdk_ec2::Client,
    /// EC2 Auto Scaling: groups, processes, capacity.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// CloudWatch: metrics and alarms.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// Elastic Load Balancing v2: the workload's load balancer, listener
    /// rules and target groups (parallel copies that see traffic).
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// DynamoDB: the lease table of the safety policy's `locks`.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SSM Parameter Store: the kill switch (`gameday halt`, the policy's `halt.parameter`).
    pub ssm: aws_sdk_ssm::Client,
    /// SNS: the policy's notification topic.
    pub sns: aws_sdk_sns::Client,
    /// EventBridge: the policy's notification bus.
    pub eventbridge: aws_sdk_eventbridge::Client,
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
        let (config, endpoint) = Aws::load(opts).await;
        Aws::from_config(&config, endpoint)
    }

    /// The configuration chain with the command line's overrides, and the
    /// endpoint override in use (for the journal). Makes no API call.
    async fn load(opts: &ConnectOptions) -> (aws_config::SdkConfig, Option<String>) {
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
        let endpoint = opts
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()));
        (config, endpoint)
    }

    /// Every client from one loaded configuration (its region is required);
    /// `endpoint` is only recorded, for the journal and messages.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        endpoint: Option<String>,
    ) -> Result<Aws, ConnectError> {
        let region = config.region().ok_or(ConnectError::NoRegion)?.to_string();
        Ok(Aws {
            ec2: aws_sdk_ec2::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
            region,
            endpoint,
        })
    }
}

/// Whether a failed call is worth making again: what [`AwsError::kind`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling, a 5xx, a transport failure or timeout, or a state race that
    /// ends by itself (an instance still stopping, a scaling activity in
    /// progress, a security group still attached): the same call may succeed later.
    Transient,
    /// The call cannot succeed as it is (validation, authorization, not
    /// found): making it again gives the same answer.
    Permanent,
    /// gameday refused the call itself: one of its own rules forbids it
    /// (deleting a group it did not create, removing a group's only zone).
    Refused,
}

/// Why gameday refused to make a call (see [`AwsError::Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Teardown would delete an Auto Scaling group without gameday's run tag.
    NotAGamedayClone,
    /// `ec2:az-outage` would remove every subnet of a group.
    OnlyZone,
    /// `ec2:az-outage` on a group that names no subnets (not in a VPC).
    NoSubnets,
    /// `ec2:network-blackhole` found no blackhole group to move instances into.
    NoBlackholeGroup,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::NotAGamedayClone,
        Refusal::OnlyZone,
        Refusal::NoSubnets,
        Refusal::NoBlackholeGroup,
    ];

    /// The code it is journaled with.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotAGamedayClone => "NotAGamedayClone",
            Refusal::OnlyZone => "OnlyZone",
            Refusal::NoSubnets => "NoSubnets",
            Refusal::NoBlackholeGroup => "NoBlackholeGroup",
        }
    }
}

/// A failed AWS call, in the terms a user can act on, and whether trying
/// again can help ([`AwsError::kind`]).
///
/// Every variant reads "`service:Operation` failed: code: message", and is
/// journaled as the record `{service, operation, code, message}`
/// ([`ErrorRecord`]), so journals keep their bytes. Read back from a journal,
/// an error is classified again from its code alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(into = "ErrorRecord", from = "ErrorRecord")]
pub enum AwsError {
    /// The AWS API answered with an error, or the call got no answer.
    #[error("{service}:{operation} failed: {code}: {message}")]
    Api {
        /// e.g. `ec2`.
        service: String,
        /// e.g. `StopInstances`.
        operation: String,
        /// The AWS error code (`UnauthorizedOperation`, `Throttling`), or the
        /// kind of failure when the call got no answer (`DispatchFailure`, `Timeout`).
        code: String,
        /// The service's message, or the transport's.
        message: String,
        /// Transient or permanent, from the code and the HTTP status.
        kind: ErrorKind,
    },
    /// gameday refused to make the call: never worth retrying.
    #[error("{service}:{operation} failed: {}: {message}", refusal.code())]
    Refused {
        /// The service the call was for.
        service: String,
        /// The call refused.
        operation: String,
        /// Which of gameday's rules.
        refusal: Refusal,
        /// What was refused and why, for the user.
        message: String,
    },
    /// A resource gameday had to read first does not exist (code `NotFound`).
    #[error("{service}:{operation} failed: NotFound: {message}")]
    NotFound {
        /// e.g. `autoscaling`.
        service: String,
        /// The read that found nothing, e.g. `DescribeAutoScalingGroups`.
        operation: String,
        /// What is missing.
        message: String,
    },
    /// A wait for AWS to reach a state ran out of time (code `WaitTimeout`);
    /// the state may still come, so it is transient.
    #[error("{service}:{operation} failed: WaitTimeout: {message}")]
    Timeout {
        /// e.g. `ec2`.
        service: String,
        /// The call whose effect was waited for.
        operation: String,
        /// What was not reached, after how long.
        message: String,
    },
}

/// An [`AwsError`] as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorRecord {
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `StopInstances`.
    pub operation: String,
    /// The AWS error code, or gameday's (`NotAGamedayClone`, `WaitTimeout`, ...).
    pub code: String,
    /// The message.
    pub message: String,
}

impl From<AwsError> for ErrorRecord {
    fn from(e: AwsError) -> ErrorRecord {
        let code = e.code().to_string();
        let (service, operation, message) = match e {
            AwsError::Api {
                service,
                operation,
                message,
                ..
            }
            | AwsError::Refused {
                service,
                operation,
                message,
                ..
            }
            | AwsError::NotFound {
                service,
                operation,
                message,
            }
            | AwsError::Timeout {
                service,
                operation,
                message,
            } => (service, operation, message),
        };
        ErrorRecord {
            service,
            operation,
            code,
            message,
        }
    }
}

impl From<ErrorRecord> for AwsError {
    fn from(r: ErrorRecord) -> AwsError {
        let ErrorRecord {
            service,
            operation,
            code,
            message,
        } = r;
        if let Some(refusal) = Refusal::ALL.into_iter().find(|x| x.code() == code) {
            return AwsError::Refused {
                service,
                operation,
                refusal,
                message,
            };
        }
        match code.as_str() {
            "NotFound" => AwsError::NotFound {
                service,
                operation,
                message,
            },
            "WaitTimeout" => AwsError::Timeout {
                service,
                operation,
                message,
            },
            _ => AwsError::Api {
                kind: classify(&code, None),
                service,
                operation,
                code,
                message,
            },
        }
    }
}

/// Error codes of throttling, as the SDK's standard retry mode knows them:
/// `aws_runtime::retries::classifiers::THROTTLING_ERRORS` (aws-runtime 1.7).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The SDK's transient error codes (`aws_runtime::retries::classifiers::TRANSIENT_ERRORS`),
/// the server-side failures EC2, Auto Scaling and CloudWatch answer with (their
/// 5xx codes, also when a proxy's status is lost), and gameday's names for a
/// call that got no answer ([`AwsError::from_sdk`]).
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "Timeout",
    "DispatchFailure",
    "ResponseError",
];

/// State races a rollback must wait out: the resource is busy with a change
/// that ends by itself (an instance still stopping, a scaling activity, a
/// security group still attached to a leaving instance), or capacity is
/// short for a while. The SDK does not retry these; a rollback step does.
const STATE_RACE_CODES: &[&str] = &[
    "IncorrectInstanceState",
    "IncorrectState",
    "ScalingActivityInProgress",
    "ResourceInUse",
    "ResourceContention",
    "DependencyViolation",
    "InvalidGroup.InUse",
    "InsufficientInstanceCapacity",
];

/// HTTP statuses the SDK retries as transient
/// (`aws_smithy_runtime::client::retries::classifiers::TRANSIENT_ERROR_STATUS_CODES`).
const TRANSIENT_STATUS: &[u16] = &[500, 502, 503, 504];

/// Transient or permanent, for an API error's code and, when known, its HTTP status.
pub fn classify(code: &str, status: Option<u16>) -> ErrorKind {
    let transient = [THROTTLING_CODES, TRANSIENT_CODES, STATE_RACE_CODES]
        .iter()
        .any(|list| list.contains(&code))
        || status.is_some_and(|s| TRANSIENT_STATUS.contains(&s));
    if transient {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

impl AwsError {
    /// Converts an SDK error for `service:operation`, classified as the SDK's
    /// standard retry mode would (throttling and transient codes, 5xx,
    /// timeouts and I/O failures), plus the state races of [`STATE_RACE_CODES`].
    pub fn from_sdk<E>(service: &str, operation: &str, err: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (code, message, kind) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().unwrap_or("Unknown").to_string();
                let kind = classify(&code, Some(se.raw().status().as_u16()));
                (
                    code,
                    e.message().map(str::to_string).unwrap_or_else(|| e.to_string()),
                    kind,
                )
            }
            SdkError::TimeoutError(_) => (
                "Timeout".to_string(),
                "the request timed out".to_string(),
                ErrorKind::Transient,
            ),
            SdkError::DispatchFailure(d) => (
                "DispatchFailure".to_string(),
                format!("could not reach the AWS endpoint: {}", source_chain(&err)),
                // A connector "user" error is a bad request or endpoint: it stays bad.
                if d.is_user() {
                    ErrorKind::Permanent
                } else {
                    ErrorKind::Transient
                },
            ),
            SdkError::ResponseError(_) => (
                "ResponseError".to_string(),
                format!("the response could not be read: {}", source_chain(&err)),
                ErrorKind::Transient,
            ),
            _ => (
                "RequestError".to_string(),
                source_chain(&err),
                ErrorKind::Permanent,
            ),
        };
        AwsError::Api {
            service: service.to_string(),
            operation: operation.to_string(),
            code,
            message: one_line(&message),
            kind,
        }
    }

    /// gameday refuses a call `service:operation` for `refusal`.
    pub fn refused(service: &str, operation: &str, refusal: Refusal, message: String) -> AwsError {
        AwsError::Refused {
            service: service.to_string(),
            operation: operation.to_string(),
            refusal,
            message,
        }
    }

    /// The read `service:operation` found no `what`.
    pub fn not_found(service: &str, operation: &str, message: String) -> AwsError {
        AwsError::NotFound {
            service: service.to_string(),
            operation: operation.to_string(),
            message,
        }
    }

    /// Waiting for the effect of `service:operation` ran out of time.
    pub fn timeout(service: &str, operation: &str, message: String) -> AwsError {
        AwsError::Timeout {
            service: service.to_string(),
            operation: operation.to_string(),
            message,
        }
    }

    /// Transient, permanent or refused.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AwsError::Api { kind, .. } => *kind,
            AwsError::Refused { .. } => ErrorKind::Refused,
            AwsError::NotFound { .. } => ErrorKind::Permanent,
            AwsError::Timeout { .. } => ErrorKind::Transient,
        }
    }

    /// Whether making the same call (or undo) again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// The AWS error code, or gameday's own (`NotAGamedayClone`, `NotFound`, `WaitTimeout`).
    pub fn code(&self) -> &str {
        match self {
            AwsError::Api { code, .. } => code,
            AwsError::Refused { refusal, .. } => refusal.code(),
            AwsError::NotFound { .. } => "NotFound",
            AwsError::Timeout { .. } => "WaitTimeout",
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
pub fn api<E>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| AwsError::from_sdk(service, operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_as_the_sdk_retries_them_plus_state_races() {
        for code in [
            "Throttling",
            "RequestLimitExceeded",
            "RequestTimeout",
            "InternalError",
        ] {
            assert_eq!(classify(code, Some(400)), ErrorKind::Transient, "{code}");
        }
        for code in [
            "IncorrectInstanceState",
            "ScalingActivityInProgress",
            "ResourceInUse",
            "DependencyViolation",
            "InvalidGroup.InUse",
        ] {
            assert_eq!(classify(code, Some(400)), ErrorKind::Transient, "{code}");
        }
        assert_eq!(classify("Whatever", Some(503)), ErrorKind::Transient, "5xx");
        assert_eq!(
            classify("Whatever", Some(501)),
            ErrorKind::Permanent,
            "501 is not retried"
        );
        for code in [
            "UnauthorizedOperation",
            "ValidationError",
            "InvalidInstanceID.NotFound",
            "AccessDenied",
        ] {
            assert_eq!(classify(code, Some(400)), ErrorKind::Permanent, "{code}");
        }
    }

    /// The journal records every error as `{service, operation, code,
    /// message}`, as before errors had kinds; read back, it is classified again.
    #[test]
    fn errors_are_journaled_as_the_same_record_and_read_back_with_their_kind() {
        let errors = [
            (
                AwsError::refused(
                    "autoscaling",
                    "DeleteAutoScalingGroup",
                    Refusal::NotAGamedayClone,
                    "refusing".into(),
                ),
                r#"{"service":"autoscaling","operation":"DeleteAutoScalingGroup","code":"NotAGamedayClone","message":"refusing"}"#,
                ErrorKind::Refused,
            ),
            (
                AwsError::timeout("ec2", "StartInstances", "not running".into()),
                r#"{"service":"ec2","operation":"StartInstances","code":"WaitTimeout","message":"not running"}"#,
                ErrorKind::Transient,
            ),
            (
                AwsError::not_found("cloudwatch", "DescribeAlarms", "alarm `a` not found".into()),
                r#"{"service":"cloudwatch","operation":"DescribeAlarms","code":"NotFound","message":"alarm `a` not found"}"#,
                ErrorKind::Permanent,
            ),
            (
                AwsError::Api {
                    service: "ec2".into(),
                    operation: "StopInstances".into(),
                    code: "Throttling".into(),
                    message: "slow down".into(),
                    kind: ErrorKind::Transient,
                },
                r#"{"service":"ec2","operation":"StopInstances","code":"Throttling","message":"slow down"}"#,
                ErrorKind::Transient,
            ),
        ];
        for (e, json, kind) in errors {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.is_retryable(), kind == ErrorKind::Transient);
            let text = serde_json::to_string(&e).expect("serializes");
            assert_eq!(text, json);
            assert_eq!(serde_json::from_str::<AwsError>(&text).expect("deserializes"), e);
        }
        let e = AwsError::refused(
            "autoscaling",
            "UpdateAutoScalingGroup",
            Refusal::OnlyZone,
            "m".into(),
        );
        assert_eq!(
            e.to_string(),
            "autoscaling:UpdateAutoScalingGroup failed: OnlyZone: m"
        );
    }

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
