//! The kill switch: one SSM parameter per account and region that, while it
//! exists, aborts every run there and refuses new ones.
//!
//! `gameday halt --reason TEXT` puts the parameter (a JSON value: reason, by,
//! at), `gameday resume` deletes it. The engine reads it once per observation
//! tick, alongside the probes (one `ssm:GetParameter` per tick whatever the
//! number of probes), and once at preflight, before anything is created.
//! A parameter that does not exist means "not halted"; any other error is an
//! error, which the caller treats as it treats a probe that cannot be read.

use jiff::Timestamp;

use crate::aws::{Aws, AwsError, api};

/// What `gameday halt` stored: why, who, when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Halt {
    /// The operator's `--reason`.
    pub reason: String,
    /// Who halted: `user@host` of the machine `gameday halt` ran on.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// The parameter it was read from (not part of the value).
    #[serde(skip)]
    pub parameter: String,
}

impl Halt {
    /// A halt by the current user on this host, now.
    pub fn now(reason: &str) -> Halt {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Halt {
            reason: reason.to_string(),
            by: format!("{user}@{}", crate::util::hostname()),
            at: Timestamp::now(),
            parameter: String::new(),
        }
    }

    /// Decodes a parameter's value; a value not written by gameday (someone
    /// put the parameter by hand) still halts, its text as the reason.
    fn decode(value: &str, parameter: &str) -> Halt {
        let mut h = serde_json::from_str(value).unwrap_or_else(|_| Halt {
            reason: value.to_string(),
            by: "unknown".into(),
            at: Timestamp::UNIX_EPOCH,
            parameter: String::new(),
        });
        h.parameter = parameter.to_string();
        h
    }

    /// In words, for a verdict's reason.
    pub fn describe(&self) -> String {
        format!("halted by {} ({}): {}", self.by, self.parameter, self.reason)
    }
}

/// Reads the kill switch: `None` when the parameter does not exist.
pub async fn read(aws: &Aws, parameter: &str) -> Result<Option<Halt>, AwsError> {
    match aws.ssm.get_parameter().name(parameter).send().await {
        Ok(out) => Ok(Some(Halt::decode(
            out.parameter().and_then(|p| p.value()).unwrap_or_default(),
            parameter,
        ))),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
        Err(e) => Err(api("ssm", "GetParameter")(e)),
    }
}

/// Turns the kill switch on (overwriting an earlier halt).
pub async fn put(aws: &Aws, parameter: &str, halt: &Halt) -> Result<(), AwsError> {
    let value = serde_json::to_string(halt).unwrap_or_default();
    aws.ssm
        .put_parameter()
        .name(parameter)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .description("gameday kill switch: while this parameter exists, every gameday run aborts")
        .send()
        .await
        .map_err(api("ssm", "PutParameter"))?;
    Ok(())
}

/// Turns the kill switch off; `false` when it was not on.
pub async fn delete(aws: &Aws, parameter: &str) -> Result<bool, AwsError> {
    match aws.ssm.delete_parameter().name(parameter).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(false),
        Err(e) => Err(api("ssm", "DeleteParameter")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_put_by_hand_still_halts_with_its_text_as_the_reason() {
        let h = Halt::decode("stop everything", "/gameday/halt");
        assert_eq!(
            (h.reason.as_str(), h.parameter.as_str()),
            ("stop everything", "/gameday/halt")
        );
        let json = serde_json::to_string(&Halt::now("incident 42")).unwrap();
        assert_eq!(Halt::decode(&json, "/p").reason, "incident 42");
    }
}
