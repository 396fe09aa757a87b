//! Runs as an assumed role: an experiment's (or a suite entry's) `aws:`
//! block names a role and a region; the run's clients use that role's
//! credentials, under a session named after the run, so that CloudTrail
//! ties every call to it.

use aws_config::Region;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_sts::config::SharedCredentialsProvider;

use super::{Aws, AwsError, ConnectError, ConnectOptions, api};
use crate::model::AwsTarget;

/// Who a run acts as, once its role is assumed (what the journal's
/// `connected` event records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumed {
    /// The account of the assumed identity (sts:GetCallerIdentity).
    pub account: String,
    /// The assumed identity's ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
    pub arn: String,
    /// The role assumed.
    pub role_arn: String,
    /// The external id given, if any.
    pub external_id: Option<String>,
    /// The role session name.
    pub session: String,
    /// The region the clients act in.
    pub region: String,
}

/// Why the role could not be assumed.
#[derive(Debug, thiserror::Error)]
pub enum AssumeError {
    /// No region anywhere.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// AssumeRole or GetCallerIdentity failed (no permission, a trust policy
    /// that does not allow the caller, a wrong external id).
    #[error("cannot assume role {role_arn}: {source}")]
    Assume {
        /// The role.
        role_arn: String,
        /// The error, from GetCallerIdentity on the assumed credentials
        /// (which is where AssumeRole's own error surfaces).
        source: AwsError,
    },
}

impl Aws {
    /// The clients for `target`: the standard chain with the command line's
    /// overrides, then `target.region` over the region, then, when
    /// `target.role_arn` is set, that role's credentials under `session`
    /// (refreshed by the SDK before they expire, so a run may outlast
    /// the role's session length). With a role, one sts:GetCallerIdentity
    /// on the assumed credentials says which account the run acts in.
    pub async fn connect_to(
        opts: &ConnectOptions,
        target: &AwsTarget,
        session: &str,
    ) -> Result<(Aws, Option<Assumed>), AssumeError> {
        let mut opts = opts.clone();
        if let Some(region) = &target.region {
            opts.region = Some(region.clone());
        }
        let (base, endpoint) = Aws::load(&opts).await;
        let Some(role_arn) = &target.role_arn else {
            return Ok((Aws::from_config(&base, endpoint)?, None));
        };
        let region = base.region().cloned().ok_or(ConnectError::NoRegion)?;
        let mut provider = AssumeRoleProvider::builder(role_arn.clone())
            .session_name(session)
            .region(region.clone())
            .configure(&base);
        if let Some(id) = &target.external_id {
            provider = provider.external_id(id.clone());
        }
        let provider = provider.build().await;
        let config = base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let who = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AssumeError::Assume {
                role_arn: role_arn.clone(),
                source: api("sts", "GetCallerIdentity")(e),
            })?;
        let aws = Aws::from_config(&config, endpoint)?;
        let assumed = Assumed {
            account: who.account().unwrap_or_default().to_string(),
            arn: who.arn().unwrap_or_default().to_string(),
            role_arn: role_arn.clone(),
            external_id: target.external_id.clone(),
            session: session.to_string(),
            region: Region::to_string(&region),
        };
        Ok((aws, Some(assumed)))
    }
}
