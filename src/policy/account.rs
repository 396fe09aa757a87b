//! Which AWS account a run acts in, found without any AWS call.
//!
//! The policy's `accounts` rule must hold before anything is called, and an
//! STS GetCallerIdentity call would itself need credentials the team may not
//! want used yet, so the account comes from what is already configured: an
//! explicit setting (`--account`, `GAMEDAY_ACCOUNT`), then `AWS_ACCOUNT_ID`
//! (which the AWS SDKs also read), then the selected profile's
//! `sso_account_id` or the account in its `role_arn`.

use std::path::PathBuf;

/// Where the account id was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The 12-digit id.
    pub id: String,
    /// Where it came from (`--account`, `AWS_ACCOUNT_ID`, `profile default: sso_account_id`).
    pub source: String,
}

/// The account, if any source names it. `explicit` is `--account` /
/// `GAMEDAY_ACCOUNT`; `profile` is `--profile`, else `AWS_PROFILE`, else `default`.
pub fn detect(explicit: Option<&str>, profile: Option<&str>) -> Option<Account> {
    if let Some(id) = explicit.filter(|s| !s.is_empty()) {
        return Some(Account {
            id: id.to_string(),
            source: "--account".into(),
        });
    }
    if let Some(id) = std::env::var("AWS_ACCOUNT_ID").ok().filter(|s| !s.is_empty()) {
        return Some(Account {
            id,
            source: "AWS_ACCOUNT_ID".into(),
        });
    }
    let profile = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let text = std::fs::read_to_string(config_file()?).ok()?;
    from_config(&text, &profile)
}

fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AWS_CONFIG_FILE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/config"))
}

/// The account named by `profile` in an `~/.aws/config` text.
fn from_config(text: &str, profile: &str) -> Option<Account> {
    let wanted = |header: &str| {
        let name = header.trim();
        let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
        name == profile
    };
    let mut inside = false;
    let (mut sso, mut role) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = wanted(header);
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "sso_account_id" => sso = Some(v.trim().to_string()),
                // arn:aws:iam::123456789012:role/name
                "role_arn" => {
                    role = v
                        .trim()
                        .split(':')
                        .nth(4)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                }
                _ => {}
            }
        }
    }
    sso.map(|id| Account {
        id,
        source: format!("profile {profile}: sso_account_id"),
    })
    .or_else(|| {
        role.map(|id| Account {
            id,
            source: format!("profile {profile}: role_arn"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_names_the_account_by_sso_or_role() {
        let text = "[default]\nregion = eu-west-1\n\n[profile prod]\nrole_arn = arn:aws:iam::111122223333:role/gameday\n\n[profile sso]\nsso_account_id = 444455556666\n";
        assert_eq!(
            from_config(text, "prod").map(|a| a.id),
            Some("111122223333".into())
        );
        assert_eq!(
            from_config(text, "sso").map(|a| a.id),
            Some("444455556666".into())
        );
        assert_eq!(from_config(text, "default"), None);
    }
}
