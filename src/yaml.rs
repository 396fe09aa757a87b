//! Located YAML decoding, shared by experiment files and the safety policy.
//!
//! serde deserializers stop at the first error and lose the position of a node
//! once it has become a value, so semantic checks ("unknown fault name in
//! `start_after`") could not point at the line that is wrong. Instead we parse
//! into `marked_yaml` nodes, which keep a line and column for every scalar,
//! mapping and sequence, and decode them by hand with a [`Decoder`] that
//! *collects* diagnostics: a user fixing a file sees every problem at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node};

/// A position in a source file, 1-based, as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Loc {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value together with where it was written, for checks that need to point
/// back at it after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The decoded value.
    pub value: T,
    /// Where the value starts in the file.
    pub loc: Loc,
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub loc: Loc,
    /// What is wrong and what was expected.
    pub message: String,
    /// A hint such as "did you mean `duration`?", when there is one.
    pub help: Option<String>,
}

/// Every problem found in one file; displayed one per line as
/// `file:line:column: error: message`, the format editors and CI annotators read.
#[derive(Debug, Clone)]
pub struct FileErrors {
    /// The file the problems are in, as the user named it.
    pub file: PathBuf,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: error: {}", self.file.display(), d.loc, d.message)?;
            if let Some(help) = &d.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// The file's bytes as text, or where the first byte that is not UTF-8 is.
///
/// `std::fs::read_to_string` says only "stream did not contain valid UTF-8";
/// a user with a stray Latin-1 byte in a 200-line file needs the line and
/// column, as for any other mistake. The column counts characters, as editors do.
pub fn text(file: &Path, bytes: Vec<u8>) -> Result<String, FileErrors> {
    let e = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let bytes = e.as_bytes();
    let at = e.utf8_error().valid_up_to();
    // Everything before `at` is valid, so the prefix decodes.
    let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let loc = Loc {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    };
    let what = match e.utf8_error().error_len() {
        Some(_) => format!("invalid byte 0x{:02x}", bytes[at]),
        None => "an incomplete character at the end of the file".to_string(),
    };
    Err(FileErrors {
        file: file.to_path_buf(),
        diagnostics: vec![Diagnostic {
            loc,
            message: format!(
                "the file is not UTF-8 text: {what} at line {}, column {}",
                loc.line, loc.column
            ),
            help: Some("save the file as UTF-8 (YAML files must be UTF-8)".into()),
        }],
    })
}

/// Parses YAML text into a located node tree. The top level must be a mapping.
pub fn parse(file: &Path, text: &str) -> Result<Node, FileErrors> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
        use marked_yaml::LoadError as E;
        let (marker, message) = match &e {
            E::TopLevelMustBeMapping(m) => (
                *m,
                "expected a mapping of keys (`version: 1`, `name: ...`) at the top of the file".to_string(),
            ),
            E::TopLevelMustBeSequence(m) => (*m, "expected a sequence at the top of the file".to_string()),
            E::UnexpectedAnchor(m) => (
                *m,
                "YAML anchors (&name) are not supported; write the value out".to_string(),
            ),
            E::MappingKeyMustBeScalar(m) => (*m, "mapping keys must be plain strings".to_string()),
            E::UnexpectedTag(m) => (*m, "YAML tags (!tag) are not supported".to_string()),
            E::ScanError(m, err) => (*m, format!("invalid YAML: {}", scan_error_text(err))),
            E::DuplicateKey(inner) => {
                let first = inner.prev_key.span().start().map(|m| m.line()).unwrap_or(0);
                let m = inner
                    .key
                    .span()
                    .start()
                    .copied()
                    .unwrap_or(marked_yaml::Marker::new(0, 0, 1, 1));
                (
                    m,
                    format!(
                        "duplicate key `{}` (first written on line {first})",
                        inner.key.as_str()
                    ),
                )
            }
        };
        FileErrors {
            file: file.to_path_buf(),
            diagnostics: vec![Diagnostic {
                loc: Loc {
                    line: marker.line(),
                    column: marker.column(),
                },
                message,
                help: None,
            }],
        }
    })
}

/// The scanner's own message without its trailing " at line X column Y", which
/// we already print in front.
fn scan_error_text(err: &impl fmt::Display) -> String {
    let text = err.to_string();
    match text.find(" at byte ").or_else(|| text.find(" at line ")) {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Where a node starts.
pub fn loc(node: &Node) -> Loc {
    span_loc(node.span())
}

fn span_loc(span: &marked_yaml::Span) -> Loc {
    span.start()
        .map(|m| Loc {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Scalar(s) if s.is_empty() && s.may_coerce() => "nothing (an empty value)",
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping (key: value pairs)",
        Node::Sequence(_) => "a list",
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Walks a node tree and collects every problem instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Decoder {
    diagnostics: Vec<Diagnostic>,
}

/// A mapping whose keys were checked against the allowed set.
pub struct Map<'a> {
    node: &'a MarkedMappingNode,
    loc: Loc,
}

impl<'a> Map<'a> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.node.get_node(key)
    }

    /// Where the mapping starts (for "missing key" errors).
    pub fn loc(&self) -> Loc {
        self.loc
    }

    /// The same mapping, reporting missing keys at `loc` instead (the top of a
    /// file reads better as 1:1 than as the position of its first value).
    pub fn at(self, loc: Loc) -> Self {
        Map { loc, ..self }
    }

    /// Key/value pairs in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a MarkedScalarNode, &'a Node)> {
        self.node.iter()
    }
}

impl Decoder {
    /// A decoder with no problems recorded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `loc`.
    pub fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            loc,
            message: message.into(),
            help: None,
        });
    }

    /// Records a problem with a hint.
    pub fn error_help(&mut self, loc: Loc, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            loc,
            message: message.into(),
            help: Some(help.into()),
        });
    }

    /// The problems, sorted by position, as one error for `file`.
    pub fn finish(mut self, file: &Path) -> Result<(), FileErrors> {
        if self.diagnostics.is_empty() {
            return Ok(());
        }
        self.diagnostics.sort_by_key(|d| (d.loc.line, d.loc.column));
        Err(FileErrors {
            file: file.to_path_buf(),
            diagnostics: self.diagnostics,
        })
    }

    /// Expects a mapping whose keys are all in `allowed`; reports unknown keys
    /// with the closest allowed one as a suggestion.
    pub fn map<'a>(&mut self, node: &'a Node, what: &str, allowed: &[&str]) -> Option<Map<'a>> {
        let Node::Mapping(m) = node else {
            self.error(
                loc(node),
                format!(
                    "{what}: expected a mapping (key: value pairs), found {}",
                    kind(node)
                ),
            );
            return None;
        };
        for key in m.keys() {
            if !allowed.contains(&key.as_str()) {
                let at = span_loc(key.span());
                let message = format!("unknown key `{}` in {what}", key.as_str());
                if allowed.is_empty() {
                    self.error_help(at, message, "this takes no keys");
                    continue;
                }
                match did_you_mean(key.as_str(), allowed.iter().copied()) {
                    Some(s) => self.error_help(
                        at,
                        message,
                        format!("did you mean `{s}`? expected one of: {}", allowed.join(", ")),
                    ),
                    None => self.error_help(at, message, format!("expected one of: {}", allowed.join(", "))),
                }
            }
        }
        Some(Map {
            node: m,
            loc: span_loc(m.span()),
        })
    }

    /// A mapping whose keys the user chooses (ids, names): no key is unknown.
    pub fn open_map<'a>(&mut self, node: &'a Node, what: &str) -> Option<Map<'a>> {
        let Node::Mapping(m) = node else {
            self.error(
                loc(node),
                format!(
                    "{what}: expected a mapping (key: value pairs), found {}",
                    kind(node)
                ),
            );
            return None;
        };
        Some(Map {
            node: m,
            loc: span_loc(m.span()),
        })
    }

    /// Reports a missing required key and returns `None` so callers can chain.
    pub fn required<'a>(&mut self, map: &Map<'a>, key: &str, what: &str) -> Option<&'a Node> {
        let node = map.get(key);
        if node.is_none() {
            self.error(map.loc(), format!("{what}: missing required key `{key}`"));
        }
        node
    }

    /// A non-empty string. Numbers and booleans are accepted as their text.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match node {
            Node::Scalar(s) if !s.as_str().is_empty() => Some(Spanned {
                value: s.as_str().to_string(),
                loc: loc(node),
            }),
            _ => {
                self.error(
                    loc(node),
                    format!("{what}: expected a text value, found {}", kind(node)),
                );
                None
            }
        }
    }

    /// The required top-level `version` of `the_file` ("the experiment",
    /// "the policy", "the suite"), an error at its position unless it is
    /// `expected`.
    pub fn format_version(&mut self, top: &Map<'_>, the_file: &str, expected: u64) {
        let version = self
            .required(top, "version", the_file)
            .and_then(|n| self.integer(n, "version", 0, u64::MAX));
        if let Some(v) = &version
            && v.value != expected
        {
            let kind = the_file.strip_prefix("the ").unwrap_or(the_file);
            self.error_help(
                v.loc,
                format!("unsupported {kind} format version {}", v.value),
                format!("this gameday reads `version: {expected}`"),
            );
        }
    }

    /// A name that goes into file and resource names: at most 64 letters,
    /// digits, `-`, `_` or `.`; an error at its position otherwise.
    pub fn check_name(&mut self, n: &Spanned<String>, what: &str) {
        let ok = n.value.len() <= 64
            && n.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.error(
                n.loc,
                format!(
                    "{what} `{}`: expected at most 64 letters, digits, `-`, `_` or `.`",
                    n.value
                ),
            );
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<Spanned<u64>> {
        let parsed = match node {
            Node::Scalar(s) => s.as_u64().or_else(|| s.as_str().parse::<u64>().ok()),
            _ => None,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(Spanned {
                value: v,
                loc: loc(node),
            }),
            Some(v) => {
                self.error(
                    loc(node),
                    format!("{what}: {v} is out of range: expected a whole number from {min} to {max}"),
                );
                None
            }
            None => {
                self.error(
                    loc(node),
                    format!(
                        "{what}: expected a whole number from {min} to {max}, found {}",
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    /// A number (integer or decimal).
    pub fn number(&mut self, node: &Node, what: &str) -> Option<Spanned<f64>> {
        let parsed = match node {
            Node::Scalar(s) => s.as_str().trim().parse::<f64>().ok().filter(|v| v.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                loc(node),
                format!("{what}: expected a number, found {}", describe(node)),
            );
        }
        parsed.map(|value| Spanned {
            value,
            loc: loc(node),
        })
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let parsed = match node {
            Node::Scalar(s) => s.as_bool(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                loc(node),
                format!("{what}: expected `true` or `false`, found {}", describe(node)),
            );
        }
        parsed
    }

    /// A duration such as `30s`, `5m`, `1h30m` or `500ms`.
    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Spanned<Duration>> {
        let text = match node {
            Node::Scalar(s) => s.as_str(),
            _ => "",
        };
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(loc(node), format!("{what}: a duration must be longer than zero"));
                None
            }
            Ok(d) => Some(Spanned {
                value: d,
                loc: loc(node),
            }),
            Err(()) => {
                self.error_help(
                    loc(node),
                    format!("{what}: malformed duration {}", describe(node)),
                    "expected a number followed by a unit (ms, s, m, h), e.g. `30s`, `5m`, `1h30m`",
                );
                None
            }
        }
    }

    /// A list; a single value is not silently promoted, so that a missing `-` is caught.
    pub fn list<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a [Node]> {
        match node {
            Node::Sequence(s) => Some(s.as_slice()),
            _ => {
                self.error(
                    loc(node),
                    format!(
                        "{what}: expected a list (lines starting with `- `), found {}",
                        kind(node)
                    ),
                );
                None
            }
        }
    }

    /// A list of strings.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        let items = self.list(node, what)?;
        let out: Vec<_> = items.iter().filter_map(|n| self.string(n, what)).collect();
        (out.len() == items.len()).then_some(out)
    }

    /// A mapping of string keys to string values (tags, dimensions).
    pub fn string_map(&mut self, node: &Node, what: &str) -> Option<Vec<(String, String)>> {
        let Node::Mapping(m) = node else {
            self.error(
                loc(node),
                format!(
                    "{what}: expected a mapping (key: value pairs), found {}",
                    kind(node)
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in m.iter() {
            match v {
                Node::Scalar(s) => out.push((k.as_str().to_string(), s.as_str().to_string())),
                _ => self.error(
                    loc(v),
                    format!(
                        "{what}: value of `{}` must be a single text value, found {}",
                        k.as_str(),
                        kind(v)
                    ),
                ),
            }
        }
        Some(out)
    }
}

/// How a node reads in an error message: the value itself for scalars.
fn describe(node: &Node) -> String {
    match node {
        Node::Scalar(s) if !s.as_str().is_empty() => format!("`{}`", s.as_str()),
        other => kind(other).to_string(),
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h`, and sums like `1h30m`. A bare number is
/// rejected: "5" could mean seconds or minutes, and guessing wrong on a fault
/// duration is not a mistake a game day should make quietly.
#[allow(clippy::result_unit_err)] // "malformed" is the only error; each caller words it with the text
pub fn parse_duration(text: &str) -> Result<Duration, ()> {
    let text = text.trim();
    if text.is_empty() {
        return Err(());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or(())?;
        if digits == 0 {
            return Err(());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| ())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or(())?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or(())?),
            _ => return Err(()),
        };
        total = total.checked_add(part).ok_or(())?;
    }
    Ok(total)
}

/// Seeded mutations of a file, for the mutation tests of the experiment and
/// policy decoders: what an editor, a bad merge or a wrong encoding does to a file.
#[cfg(test)]
pub(crate) mod mutate {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `count` mutants of `text`, each with what was done to it; the same for a seed.
    pub(crate) fn mutants(text: &str, seed: u64, count: usize) -> Vec<(String, Vec<u8>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count).map(|_| mutant(&mut rng, text.as_bytes())).collect()
    }

    /// Decodes every mutant of `text` with `decode` (bytes to a result);
    /// fails naming the mutant when one panics or is rejected without a
    /// line and column. Returns how many were rejected.
    pub(crate) fn check<T>(
        name: &str,
        text: &str,
        seed: u64,
        count: usize,
        decode: impl Fn(&std::path::Path, Vec<u8>) -> Result<T, super::FileErrors>,
    ) -> usize {
        let path = std::path::Path::new(name);
        let mut rejected = 0;
        for (what, bytes) in mutants(text, seed, count) {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(path, bytes)));
            match result {
                Err(_) => panic!("{name}, {what}: the decoder panicked"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    rejected += 1;
                    assert!(
                        !e.diagnostics.is_empty(),
                        "{name}, {what}: rejected without a reason"
                    );
                    for d in &e.diagnostics {
                        assert!(
                            d.loc.line >= 1 && d.loc.column >= 1,
                            "{name}, {what}: no position in {}",
                            e
                        );
                    }
                }
            }
        }
        rejected
    }

    fn below(rng: &mut StdRng, n: usize) -> usize {
        (rng.next_u64() % n.max(1) as u64) as usize
    }

    fn mutant(rng: &mut StdRng, bytes: &[u8]) -> (String, Vec<u8>) {
        let mut lines: Vec<Vec<u8>> = bytes
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        let n = lines.len();
        let (l, m) = (below(rng, n), below(rng, n));
        let what = match below(rng, 8) {
            0 => {
                lines.remove(l);
                format!("deleted line {}", l + 1)
            }
            1 => {
                let dup = lines[l].clone();
                lines.insert(m, dup);
                format!("copied line {} before line {}", l + 1, m + 1)
            }
            2 => {
                lines.swap(l, m);
                format!("swapped lines {} and {}", l + 1, m + 1)
            }
            3 => {
                let depth = below(rng, 5);
                let line = &mut lines[l];
                let indent = line.iter().take_while(|b| **b == b' ').count();
                line.splice(..indent, std::iter::repeat_n(b' ', depth));
                format!("indented line {} by {depth}", l + 1)
            }
            4 => {
                let mut all = lines.concat();
                let at = below(rng, all.len());
                all.truncate(at);
                return (format!("truncated at byte {at}"), all);
            }
            5 => {
                let mut all = lines.concat();
                let at = below(rng, all.len());
                let bit = 1u8 << below(rng, 8);
                all[at] ^= bit;
                return (format!("flipped bit {bit:#x} of byte {at}"), all);
            }
            6 => {
                let mut all = lines.concat();
                let at = below(rng, all.len() + 1);
                let bad: &[u8] = [&[0xff][..], &[0xc3, 0x28], &[0xe2, 0x82], &[0x80]][below(rng, 4)];
                all.splice(at..at, bad.iter().copied());
                return (format!("inserted invalid UTF-8 {bad:02x?} at byte {at}"), all);
            }
            _ => {
                let mut all = lines.concat();
                let at = below(rng, all.len() + 1);
                let junk: &[u8] = [
                    &b": "[..],
                    b"- ",
                    b"{",
                    b"[",
                    b"\"",
                    b"'",
                    b"&a ",
                    b"*a",
                    b"!t ",
                    b"\t",
                    b"#",
                ][below(rng, 11)];
                all.splice(at..at, junk.iter().copied());
                return (
                    format!("inserted {:?} at byte {at}", String::from_utf8_lossy(junk)),
                    all,
                );
            }
        };
        (what, lines.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_sum() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "m", "5 m", "5min", "1.5m", "-5s", "5m3"] {
            assert_eq!(parse_duration(bad), Err(()), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("duraton", ["duration", "target"]), Some("duration"));
        assert_eq!(did_you_mean("zzz", ["duration", "target"]), None);
    }

    #[test]
    fn decoder_collects_every_error_with_positions() {
        let text = "a: 1\nb: [x]\nc: nope\n";
        let node = parse(Path::new("t.yaml"), text).unwrap();
        let mut d = Decoder::new();
        let map = d.map(&node, "test", &["a", "b"]).unwrap();
        d.duration(map.get("a").unwrap(), "a");
        d.string(map.get("b").unwrap(), "b");
        let err = d.finish(Path::new("t.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("t.yaml:1:4: error: a: malformed duration `1`"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:2:4: error: b: expected a text value, found a list"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:3:1: error: unknown key `c` in test"),
            "{text}"
        );
    }
}
