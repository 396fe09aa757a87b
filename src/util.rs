//! Text formats and hashing that several layers share: durations as users
//! write them, numbers as people read them, hashes, the machine's name.
//!
//! The bottom layer: it names no other module of the crate, so anything may
//! use it. A helper lives here once a second layer needs it.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Formats a duration the way users write it (`1h30m`, `45s`, `250ms`); the
/// inverse of the experiment decoder's `yaml::parse_duration`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return if ms < 1000 {
            format!("{ms}ms")
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

/// Milliseconds as a short duration, e.g. `1.5s`.
pub fn ms_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format_duration(Duration::from_millis(ms))
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// A datapoint as people read it: at most 3 decimals, no trailing zeros
/// (`263.79`, not `263.7896609792007`); the journal keeps the exact value.
pub fn value_text(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// Lowercase hex SHA-256: of experiment and policy files, and of plans.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// This machine's name, for telling whether a journaled pid is ours to check.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes `bytes` to `path` through a new temp file beside it and a rename,
/// so that a reader never sees half a file and a symlink planted at `path`
/// (a runs folder copied from elsewhere) is replaced, never written through.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    // A leftover (or planted) temp file goes; `create_new` then refuses to
    // follow anything put there in between.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Whether a folder search skips `path`: a name starting with `.` (version
/// control, editors' files, and a Kubernetes ConfigMap volume's `..data` link
/// and `..<timestamp>` folder, which hold the very files the volume's top level
/// links to: read them, and every experiment is found three times).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

/// `text` with AWS credentials replaced by `** redacted **`: the values in
/// `known` (those of the environment, 8 characters or more so that a
/// placeholder such as `test` is left alone), anything shaped like an access
/// key id (`AKIA`/`ASIA` and 16 more), and what follows the SDK's
/// `access_key_id: "`, `session_token: "`, `secret_access_key: "`, SigV4's
/// `Credential=` and the `x-amz-security-token` header. The SDK's own
/// `Debug` output redacts the secret key but not the key id, and its trace
/// logs print both whatever the credentials' source; logs go through this.
pub fn redact_credentials(text: &str, known: &[String]) -> String {
    const MARK: &str = "** redacted **";
    let mut out = text.to_string();
    for k in known.iter().filter(|k| k.len() >= 8) {
        out = out.replace(k.as_str(), MARK);
    }
    // Values after a field name, up to the closing quote or separator.
    for (field, end) in [
        ("access_key_id: \"", '"'),
        ("session_token: \"", '"'),
        ("secret_access_key: \"", '"'),
        ("Credential=", '/'),
        ("x-amz-security-token\", \"", '"'),
        ("x-amz-security-token: ", '\n'),
    ] {
        let mut from = 0;
        while let Some(i) = out[from..].find(field) {
            let start = from + i + field.len();
            let len = out[start..].find([end, '\n']).unwrap_or(out.len() - start);
            if !out[start..start + len].starts_with(MARK) {
                out.replace_range(start..start + len, MARK);
            }
            from = start + MARK.len().min(out.len() - start);
        }
    }
    // Access key ids, wherever they are.
    let bytes = out.as_bytes();
    let mut ids = Vec::new();
    let mut i = 0;
    while i + 20 <= bytes.len() {
        let shaped = matches!(&bytes[i..i + 4], b"AKIA" | b"ASIA")
            && bytes[i + 4..i + 20]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && !bytes.get(i + 20).is_some_and(u8::is_ascii_alphanumeric)
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if shaped {
            ids.push(i);
            i += 20;
        } else {
            i += 1;
        }
    }
    for i in ids.into_iter().rev() {
        out.replace_range(i..i + 20, MARK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_log_lines() {
        let known = vec!["my-session-token-1234".to_string(), "test".to_string()];
        let line = "identity=Credentials { access_key_id: \"local-key\", secret_access_key: \"** redacted **\" } \
                    Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1 \
                    (\"x-amz-security-token\", \"abc\") key ASIAABCDEFGHIJKLMNOP. token my-session-token-1234 test";
        let r = redact_credentials(line, &known);
        for secret in [
            "local-key",
            "AKIDEXAMPLE",
            "\"abc\"",
            "ASIAABCDEFGHIJKLMNOP",
            "my-session-token-1234",
        ] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert!(r.ends_with(" test"), "short placeholders stay: {r}");
        assert!(r.contains("/20150830/us-east-1"), "only the key id goes: {r}");
        assert_eq!(redact_credentials("nothing here", &known), "nothing here");
    }
    use crate::yaml::parse_duration;

    #[test]
    fn durations_format_back_to_what_users_write() {
        for text in ["30s", "5m", "1h30m", "250ms", "2h", "1m5s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
