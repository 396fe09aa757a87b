//! The safety policy: what a team allows gameday to do in its account.
//!
//! The policy is a YAML file (`safety/policy.yaml`, `version: 1`) that a team
//! reviews like code. It is decoded here with the same located decoder as
//! experiments, so every problem has a file:line:column and a suggestion.
//! Rules are checked against a resolved plan by the gate (`gate.rs`). Without a policy
//! file the built-in default applies; it *is* the repository's commented
//! `safety/policy.yaml`, embedded at build time, so the documented default and
//! the enforced one cannot drift apart.

pub mod account;
mod schema;
pub(crate) use schema::document as schema;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use marked_yaml::Node;

use crate::faults;
use crate::model::Share;
use crate::util::sha256_hex;
use crate::yaml::{self, Decoder, FileErrors, Spanned};

/// The only policy format version this runner reads.
pub const POLICY_VERSION: u64 = 1;

/// The built-in default policy: the repository's `safety/policy.yaml`.
pub const DEFAULT_POLICY: &str = include_str!("../../safety/policy.yaml");

/// Where the default policy is looked for, relative to a folder.
const POLICY_PATH: &str = "safety/policy.yaml";

/// A decoded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Regions a run may act in.
    pub regions: Allowed,
    /// Accounts a run may act in.
    pub accounts: Allowed,
    /// Fault actions experiments may use.
    pub actions: Vec<String>,
    /// Tags (key, value) that make a resource untouchable.
    pub protected_tags: Vec<(String, String)>,
    /// The most a run may hit.
    pub blast_radius: BlastRadius,
    /// Rules for in-place runs.
    pub in_place: InPlace,
    /// Whether parallel runs need approval.
    pub parallel_requires_approval: bool,
    /// The largest `environment.traffic.share` each copy may get.
    pub max_traffic_share: Share,
    /// Whether runs that route real users to the copies need approval.
    pub traffic_requires_approval: bool,
    /// When runs may happen.
    pub windows: Windows,
    /// Whether every experiment needs an alarm guardrail.
    pub require_guardrails: bool,
    /// The longest `timing.max_duration` an experiment may declare.
    pub max_experiment_duration: Duration,
    /// Leases in a DynamoDB table; `None`: best-effort lock tags only.
    pub locks: Option<Locks>,
    /// `halt.parameter`: the SSM parameter of the kill switch (`gameday halt`).
    pub halt_parameter: String,
    /// Where runs tell people what they do (`notifications`); empty: nowhere.
    pub notifications: Notifications,
}

/// `notifications`: an SNS topic and an EventBridge bus that hear a run's
/// start, abort, end and an unfinished rollback (see `output::notify`).
/// The command line's `--notify-sns` / `--notify-event-bus` override each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The SNS topic's ARN.
    pub sns_topic: Option<String>,
    /// The EventBridge bus: its name or ARN.
    pub event_bus: Option<String>,
}

impl Notifications {
    /// Whether there is anywhere to send to.
    pub fn is_empty(&self) -> bool {
        self.sns_topic.is_none() && self.event_bus.is_none()
    }
}

/// `halt.parameter` when the policy does not say.
pub const DEFAULT_HALT_PARAMETER: &str = "/gameday/halt";

/// `locks`: where runs take their leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locks {
    /// The DynamoDB table (partition key `lease`, a string).
    pub table: String,
    /// How long a lease lasts unless the run's heartbeat extends it: how long
    /// a dead run keeps others out.
    pub ttl: Duration,
}

/// The default `locks.ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

/// `any`, or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// No restriction.
    Any,
    /// Only these.
    Only(Vec<String>),
}

impl Allowed {
    /// Whether `value` is allowed.
    pub fn allows(&self, value: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(list) => list.iter().any(|v| v == value),
        }
    }
}

/// Blast-radius limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlastRadius {
    /// Instances one fault may hit.
    pub max_instances_per_fault: u32,
    /// Percent of an Auto Scaling group the whole run may hit.
    pub max_percent_of_group: u32,
}

/// Rules for in-place runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    /// Whether in-place runs are allowed at all.
    pub allowed: bool,
    /// Whether a person must approve each in-place run.
    pub requires_approval: bool,
    /// Whether `ec2:terminate-instances` may run in place.
    pub allow_terminate: bool,
}

/// Time windows and freezes, in one time zone.
#[derive(Debug, Clone)]
pub struct Windows {
    /// The IANA name, as written.
    pub time_zone_name: String,
    /// The zone the days and hours are in.
    pub time_zone: TimeZone,
    /// When runs may happen; empty: any time.
    pub allowed: Vec<Window>,
    /// Days when no run may happen.
    pub freeze: Vec<Freeze>,
}

/// Days of the week and an hour range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The days a window opens on.
    pub days: Vec<Weekday>,
    /// When it opens.
    pub start: Time,
    /// When it closes; `None` means midnight at the end of the day (`24:00`).
    pub end: Option<Time>,
    /// As written, for messages.
    pub text: String,
}

/// A range of days (inclusive) when runs are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    /// First frozen day.
    pub from: Date,
    /// Last frozen day.
    pub to: Date,
    /// Why, for messages.
    pub reason: Option<String>,
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A file, as found or given.
    File(PathBuf),
    /// No file: the built-in default.
    BuiltIn,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::BuiltIn => f.write_str("the built-in default policy"),
        }
    }
}

/// A policy with its provenance, as a run records it.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The rules.
    pub policy: Policy,
    /// Its file, or the built-in default.
    pub source: PolicySource,
    /// SHA-256 of its text: binds approvals and journals to this exact policy.
    pub sha256: String,
    /// Its exact text, for `gameday policy show`.
    pub text: String,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the safety policy {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has problems, each with its position.
    #[error("{0}")]
    Invalid(#[from] FileErrors),
}

/// The policy in force: `explicit` if given, else `safety/policy.yaml`
/// beside the experiment's folder (for X/experiments/a.yaml:
/// X/safety/policy.yaml), else the current directory's, else the built-in default.
pub fn find_and_load(
    explicit: Option<&Path>,
    experiment_file: Option<&Path>,
) -> Result<LoadedPolicy, PolicyError> {
    if let Some(p) = explicit {
        return load(p);
    }
    let beside = experiment_file.and_then(|file| {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Keep the path as the user wrote it when it names the folder
        // (`experiments/a.yaml` -> `safety/policy.yaml`); resolve `.` and `..`.
        let up = match dir.components().next_back() {
            Some(Component::Normal(_)) => dir.parent().map(Path::to_path_buf),
            _ => dir
                .canonicalize()
                .ok()
                .and_then(|d| d.parent().map(Path::to_path_buf)),
        };
        up.map(|up| up.join(POLICY_PATH))
    });
    for candidate in beside
        .into_iter()
        .chain(std::iter::once(PathBuf::from(POLICY_PATH)))
    {
        if candidate.is_file() {
            return load(&candidate);
        }
    }
    Ok(built_in())
}

/// Reads and decodes a policy file.
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = yaml::text(path, bytes)?;
    let policy = load_str(path, &text)?;
    Ok(LoadedPolicy {
        policy,
        source: PolicySource::File(path.to_path_buf()),
        sha256: sha256_hex(text.as_bytes()),
        text,
    })
}

/// The built-in default policy.
pub fn built_in() -> LoadedPolicy {
    let policy = load_str(Path::new("<built-in policy>"), DEFAULT_POLICY)
        .unwrap_or_else(|e| panic!("the built-in policy (safety/policy.yaml) is invalid: {e}"));
    LoadedPolicy {
        policy,
        source: PolicySource::BuiltIn,
        sha256: sha256_hex(DEFAULT_POLICY.as_bytes()),
        text: DEFAULT_POLICY.to_string(),
    }
}

const TOP_KEYS: &[&str] = &[
    "version",
    "regions",
    "accounts",
    "actions",
    "protected_tags",
    "blast_radius",
    "in_place",
    "parallel",
    "windows",
    "require_guardrails",
    "max_experiment_duration",
    "locks",
    "halt",
    "notifications",
];
const HALT_KEYS: &[&str] = &["parameter"];
const NOTIFICATIONS_KEYS: &[&str] = &["sns_topic", "event_bus"];
const LOCKS_KEYS: &[&str] = &["table", "ttl"];
const BLAST_KEYS: &[&str] = &["max_instances_per_fault", "max_percent_of_group"];
const IN_PLACE_KEYS: &[&str] = &["allowed", "requires_approval", "allow_terminate"];
const PARALLEL_KEYS: &[&str] = &[
    "requires_approval",
    "max_traffic_share",
    "requires_approval_for_traffic",
];
/// `parallel.max_traffic_share` when the policy does not say.
pub const DEFAULT_MAX_TRAFFIC_SHARE: Share = Share(50);
const WINDOWS_KEYS: &[&str] = &["time_zone", "allowed", "freeze"];
const WINDOW_KEYS: &[&str] = &["days", "hours"];
const FREEZE_KEYS: &[&str] = &["from", "to", "reason"];
const DAYS: &[(&str, Weekday)] = &[
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// Decodes policy text as if read from `path`.
pub fn load_str(path: &Path, text: &str) -> Result<Policy, FileErrors> {
    let root = yaml::parse(path, text)?;
    let mut d = Decoder::new();
    let policy = decode(&mut d, &root);
    d.finish(path)?;
    // `decode` returns None only after recording a diagnostic.
    Ok(policy.expect("a policy that decoded without diagnostics"))
}

fn decode(d: &mut Decoder, root: &Node) -> Option<Policy> {
    let top = d
        .map(root, "the policy", TOP_KEYS)?
        .at(yaml::Loc { line: 1, column: 1 });
    d.format_version(&top, "the policy", POLICY_VERSION);
    let regions = d
        .required(&top, "regions", "the policy")
        .and_then(|n| decode_allowed(d, n, "regions", |_| None));
    let accounts = match top.get("accounts") {
        Some(n) => decode_allowed(d, n, "accounts", |a| {
            (a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()))
                .then(|| "an AWS account id is 12 digits".to_string())
        }),
        None => Some(Allowed::Any),
    };
    let actions = d
        .required(&top, "actions", "the policy")
        .and_then(|n| decode_actions(d, n));
    let protected_tags = d
        .required(&top, "protected_tags", "the policy")
        .and_then(|n| d.string_map(n, "protected_tags"));
    let blast_radius = d
        .required(&top, "blast_radius", "the policy")
        .and_then(|n| decode_blast_radius(d, n));
    let in_place = d
        .required(&top, "in_place", "the policy")
        .and_then(|n| decode_in_place(d, n));
    let parallel = top.get("parallel").map(|n| d.map(n, "parallel", PARALLEL_KEYS));
    let (parallel_requires_approval, max_traffic_share, traffic_requires_approval) = match parallel {
        Some(Some(m)) => (
            d.required(&m, "requires_approval", "parallel")
                .and_then(|n| d.boolean(n, "parallel.requires_approval")),
            match m.get("max_traffic_share") {
                Some(n) => {
                    Share::decode(d, n, "parallel.max_traffic_share", Share(1), Share(499)).map(|s| s.value)
                }
                None => Some(DEFAULT_MAX_TRAFFIC_SHARE),
            },
            match m.get("requires_approval_for_traffic") {
                Some(n) => d.boolean(n, "parallel.requires_approval_for_traffic"),
                None => Some(false),
            },
        ),
        Some(None) => (None, None, None),
        None => (Some(false), Some(DEFAULT_MAX_TRAFFIC_SHARE), Some(false)),
    };
    let windows = match top.get("windows") {
        Some(n) => decode_windows(d, n),
        None => Some(Windows {
            time_zone_name: "UTC".into(),
            time_zone: TimeZone::UTC,
            allowed: Vec::new(),
            freeze: Vec::new(),
        }),
    };
    let require_guardrails = d
        .required(&top, "require_guardrails", "the policy")
        .and_then(|n| d.boolean(n, "require_guardrails"));
    let max_experiment_duration = d
        .required(&top, "max_experiment_duration", "the policy")
        .and_then(|n| d.duration(n, "max_experiment_duration"))
        .map(|s| s.value);
    let locks = match top.get("locks") {
        Some(n) => decode_locks(d, n).map(Some),
        None => Some(None),
    };
    let halt_parameter = match top.get("halt") {
        Some(n) => decode_halt(d, n),
        None => Some(DEFAULT_HALT_PARAMETER.to_string()),
    };
    let notifications = match top.get("notifications") {
        Some(n) => decode_notifications(d, n),
        None => Some(Notifications::default()),
    };
    Some(Policy {
        regions: regions?,
        accounts: accounts?,
        actions: actions?,
        protected_tags: protected_tags?,
        blast_radius: blast_radius?,
        in_place: in_place?,
        parallel_requires_approval: parallel_requires_approval?,
        max_traffic_share: max_traffic_share?,
        traffic_requires_approval: traffic_requires_approval?,
        windows: windows?,
        require_guardrails: require_guardrails?,
        max_experiment_duration: max_experiment_duration?,
        locks: locks?,
        halt_parameter: halt_parameter?,
        notifications: notifications?,
    })
}

/// `notifications: { sns_topic: ARN, event_bus: NAME }`, either or both.
fn decode_notifications(d: &mut Decoder, node: &Node) -> Option<Notifications> {
    let m = d.map(node, "notifications", NOTIFICATIONS_KEYS)?;
    let mut ok = true;
    let sns_topic = m
        .get("sns_topic")
        .and_then(|n| d.string(n, "notifications.sns_topic"));
    if let Some(t) = &sns_topic
        && let Err(why) = check_sns_topic(&t.value)
    {
        d.error_help(
            t.loc,
            format!("notifications.sns_topic: {why}"),
            "e.g. `arn:aws:sns:us-east-1:123456789012:gameday`",
        );
        ok = false;
    }
    let event_bus = m
        .get("event_bus")
        .and_then(|n| d.string(n, "notifications.event_bus"));
    if let Some(b) = &event_bus
        && let Err(why) = check_event_bus(&b.value)
    {
        d.error_help(
            b.loc,
            format!("notifications.event_bus: {why}"),
            "a bus name such as `default` or `ops-events`, or its ARN",
        );
        ok = false;
    }
    if sns_topic.is_none() && event_bus.is_none() && ok {
        d.error_help(
            m.loc(),
            "notifications: names no destination",
            "give `sns_topic: ARN`, `event_bus: NAME`, or both; or remove the block",
        );
        return None;
    }
    ok.then(|| Notifications {
        sns_topic: sns_topic.map(|s| s.value),
        event_bus: event_bus.map(|s| s.value),
    })
}

/// Why `arn` is not an SNS topic's ARN (`arn:PARTITION:sns:REGION:ACCOUNT:NAME`).
pub fn check_sns_topic(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && parts.iter().all(|p| !p.is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"
        ))
    }
}

/// Why `bus` is neither an EventBridge bus name nor a bus ARN.
pub fn check_event_bus(bus: &str) -> Result<(), String> {
    if bus.starts_with("arn:") {
        return if bus.contains(":events:") && bus.contains(":event-bus/") {
            Ok(())
        } else {
            Err(format!(
                "`{bus}` is not an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"
            ))
        };
    }
    let ok = (1..=256).contains(&bus.len())
        && bus
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{bus}` is not an event bus name (1 to 256 letters, digits, `.`, `-`, `_`, `/`)"
        ))
    }
}

/// `halt: { parameter: /gameday/halt }`: the kill switch's SSM parameter name.
fn decode_halt(d: &mut Decoder, node: &Node) -> Option<String> {
    let m = d.map(node, "halt", HALT_KEYS)?;
    let name = d
        .required(&m, "parameter", "halt")
        .and_then(|n| d.string(n, "halt.parameter"))?;
    let ok = (1..=1011).contains(&name.value.len())
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !name
            .value
            .to_ascii_lowercase()
            .trim_start_matches('/')
            .starts_with("aws")
        && !name
            .value
            .to_ascii_lowercase()
            .trim_start_matches('/')
            .starts_with("ssm");
    if !ok {
        d.error_help(
            name.loc,
            format!("halt.parameter: `{}` is not an SSM parameter name", name.value),
            "letters, digits, `_`, `-`, `.` and `/` (e.g. /gameday/halt); it may not begin with aws or ssm",
        );
        return None;
    }
    Some(name.value)
}

/// `locks: { table: NAME, ttl: 2m }`.
fn decode_locks(d: &mut Decoder, node: &Node) -> Option<Locks> {
    let m = d.map(node, "locks", LOCKS_KEYS)?;
    let table = d
        .required(&m, "table", "locks")
        .and_then(|n| d.string(n, "locks.table"));
    if let Some(t) = &table {
        let ok = (3..=255).contains(&t.value.len())
            && t.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            d.error_help(
                t.loc,
                format!("locks.table: `{}` is not a DynamoDB table name", t.value),
                "3 to 255 characters: letters, digits, `_`, `-` and `.`",
            );
            return None;
        }
    }
    let ttl = match m.get("ttl") {
        Some(n) => {
            let ttl = d.duration(n, "locks.ttl")?;
            if ttl.value < Duration::from_secs(10) || ttl.value > Duration::from_secs(3600) {
                d.error_help(
                    ttl.loc,
                    "locks.ttl: out of range",
                    "between 10s and 1h: how long a dead run keeps other runs out (the heartbeat renews it every third of it)",
                );
                return None;
            }
            Some(ttl.value)
        }
        None => Some(DEFAULT_LEASE_TTL),
    };
    Some(Locks {
        table: table?.value,
        ttl: ttl?,
    })
}

/// `any` or a non-empty list; `check` returns a problem with one item.
fn decode_allowed(
    d: &mut Decoder,
    node: &Node,
    what: &str,
    check: impl Fn(&str) -> Option<String>,
) -> Option<Allowed> {
    if let Node::Scalar(s) = node
        && s.as_str() == "any"
    {
        return Some(Allowed::Any);
    }
    if !matches!(node, Node::Sequence(_)) {
        d.error_help(
            yaml::loc(node),
            format!("{what}: expected `any` or a list"),
            format!("e.g. `{what}: any` or `{what}: [first, second]`"),
        );
        return None;
    }
    let items = d.string_list(node, what)?;
    if items.is_empty() {
        d.error_help(
            yaml::loc(node),
            format!("{what}: an empty list allows nothing"),
            format!("list what is allowed, or write `{what}: any`"),
        );
        return None;
    }
    let mut ok = true;
    for item in &items {
        if let Some(problem) = check(&item.value) {
            d.error(item.loc, format!("{what}: `{}`: {problem}", item.value));
            ok = false;
        }
    }
    ok.then(|| Allowed::Only(items.into_iter().map(|s| s.value).collect()))
}

fn decode_actions(d: &mut Decoder, node: &Node) -> Option<Vec<String>> {
    let items = d.string_list(node, "actions")?;
    let known: Vec<&str> = faults::names();
    let mut ok = true;
    for a in &items {
        if !known.contains(&a.value.as_str()) {
            let help = match yaml::did_you_mean(&a.value, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("known actions: {}", known.join(", ")),
            };
            d.error_help(a.loc, format!("actions: unknown action `{}`", a.value), help);
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|s| s.value).collect())
}

fn decode_blast_radius(d: &mut Decoder, node: &Node) -> Option<BlastRadius> {
    let m = d.map(node, "blast_radius", BLAST_KEYS)?;
    let per_fault = d
        .required(&m, "max_instances_per_fault", "blast_radius")
        .and_then(|n| d.integer(n, "blast_radius.max_instances_per_fault", 1, 100_000));
    let percent = d
        .required(&m, "max_percent_of_group", "blast_radius")
        .and_then(|n| d.integer(n, "blast_radius.max_percent_of_group", 1, 100));
    Some(BlastRadius {
        max_instances_per_fault: per_fault?.value as u32,
        max_percent_of_group: percent?.value as u32,
    })
}

fn decode_in_place(d: &mut Decoder, node: &Node) -> Option<InPlace> {
    let m = d.map(node, "in_place", IN_PLACE_KEYS)?;
    let mut flag = |key: &str| {
        d.required(&m, key, "in_place")
            .and_then(|n| d.boolean(n, &format!("in_place.{key}")))
    };
    let allowed = flag("allowed");
    let requires_approval = flag("requires_approval");
    let allow_terminate = flag("allow_terminate");
    Some(InPlace {
        allowed: allowed?,
        requires_approval: requires_approval?,
        allow_terminate: allow_terminate?,
    })
}

fn decode_windows(d: &mut Decoder, node: &Node) -> Option<Windows> {
    let m = d.map(node, "windows", WINDOWS_KEYS)?;
    let (time_zone_name, time_zone) = match m.get("time_zone") {
        Some(n) => {
            let name = d.string(n, "windows.time_zone")?;
            match TimeZone::get(&name.value) {
                Ok(tz) => (name.value, tz),
                Err(_) => {
                    let zones: Vec<String> = jiff::tz::db().available().map(|z| z.to_string()).collect();
                    let help = match yaml::did_you_mean(&name.value, zones.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "expected an IANA time zone name such as `UTC` or `Europe/Paris`".to_string(),
                    };
                    d.error_help(
                        name.loc,
                        format!("windows.time_zone: unknown time zone `{}`", name.value),
                        help,
                    );
                    return None;
                }
            }
        }
        None => ("UTC".to_string(), TimeZone::UTC),
    };
    let allowed = match m.get("allowed") {
        Some(n) => {
            let items = d.list(n, "windows.allowed")?;
            let out: Vec<Window> = items
                .iter()
                .enumerate()
                .filter_map(|(i, w)| decode_window(d, w, &format!("windows.allowed[{}]", i + 1)))
                .collect();
            (out.len() == items.len()).then_some(out)
        }
        None => Some(Vec::new()),
    };
    let freeze = match m.get("freeze") {
        Some(n) => {
            let items = d.list(n, "windows.freeze")?;
            let out: Vec<Freeze> = items
                .iter()
                .enumerate()
                .filter_map(|(i, f)| decode_freeze(d, f, &format!("windows.freeze[{}]", i + 1)))
                .collect();
            (out.len() == items.len()).then_some(out)
        }
        None => Some(Vec::new()),
    };
    Some(Windows {
        time_zone_name,
        time_zone,
        allowed: allowed?,
        freeze: freeze?,
    })
}

fn decode_window(d: &mut Decoder, node: &Node, what: &str) -> Option<Window> {
    let m = d.map(node, what, WINDOW_KEYS)?;
    let days = d
        .required(&m, "days", what)
        .and_then(|n| d.string_list(n, &format!("{what}.days")))
        .and_then(|days| {
            let mut out = Vec::new();
            for day in &days {
                match DAYS.iter().find(|(name, _)| day.value.eq_ignore_ascii_case(name)) {
                    Some((_, w)) => out.push(*w),
                    None => {
                        let names = DAYS.iter().map(|(n, _)| *n);
                        let help = match yaml::did_you_mean(&day.value.to_ascii_lowercase(), names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "expected one of: mon, tue, wed, thu, fri, sat, sun".to_string(),
                        };
                        d.error_help(day.loc, format!("{what}.days: unknown day `{}`", day.value), help);
                    }
                }
            }
            (out.len() == days.len() && !out.is_empty()).then_some(out)
        });
    let hours = d.required(&m, "hours", what).and_then(|n| d.string(n, &format!("{what}.hours"))).and_then(|h| {
        let parsed = parse_hours(&h.value);
        if parsed.is_none() {
            d.error_help(h.loc, format!("{what}.hours: malformed hours `{}`", h.value), "expected `HH:MM-HH:MM` with the start before the end, e.g. `09:00-17:00` or `00:00-24:00`");
        }
        parsed.map(|(start, end)| (start, end, h.value))
    });
    let (start, end, text) = hours?;
    Some(Window {
        days: days?,
        start,
        end,
        text,
    })
}

/// `HH:MM-HH:MM`, start before end; `24:00` is the end of the day.
fn parse_hours(text: &str) -> Option<(Time, Option<Time>)> {
    let (a, b) = text.split_once('-')?;
    let clock = |s: &str| -> Option<(i8, i8)> {
        let (h, m) = s.trim().split_once(':')?;
        Some((h.parse().ok()?, m.parse().ok()?))
    };
    let (sh, sm) = clock(a)?;
    let start = Time::new(sh, sm, 0, 0).ok()?;
    let end = match clock(b)? {
        (24, 0) => None,
        (eh, em) => Some(Time::new(eh, em, 0, 0).ok()?),
    };
    match end {
        Some(e) if e <= start => None,
        _ => Some((start, end)),
    }
}

fn decode_date(d: &mut Decoder, node: &Node, what: &str) -> Option<Spanned<Date>> {
    let s = d.string(node, what)?;
    match s.value.parse::<Date>() {
        Ok(date) => Some(Spanned {
            value: date,
            loc: s.loc,
        }),
        Err(_) => {
            d.error_help(
                s.loc,
                format!("{what}: malformed date `{}`", s.value),
                "expected a date as YYYY-MM-DD, e.g. `2026-12-24`",
            );
            None
        }
    }
}

fn decode_freeze(d: &mut Decoder, node: &Node, what: &str) -> Option<Freeze> {
    if let Node::Scalar(_) = node {
        let day = decode_date(d, node, what)?;
        return Some(Freeze {
            from: day.value,
            to: day.value,
            reason: None,
        });
    }
    let m = d.map(node, what, FREEZE_KEYS)?;
    let from = d
        .required(&m, "from", what)
        .and_then(|n| decode_date(d, n, &format!("{what}.from")));
    let to = d
        .required(&m, "to", what)
        .and_then(|n| decode_date(d, n, &format!("{what}.to")));
    let reason = m
        .get("reason")
        .and_then(|n| d.string(n, &format!("{what}.reason")))
        .map(|s| s.value);
    let (from, to) = (from?, to?);
    if to.value < from.value {
        d.error(
            to.loc,
            format!("{what}.to: {} is before `from` ({})", to.value, from.value),
        );
        return None;
    }
    Some(Freeze {
        from: from.value,
        to: to.value,
        reason,
    })
}

/// How the policy reads in `gameday policy show` and in messages about it.
pub fn describe_day(w: Weekday) -> &'static str {
    DAYS.iter().find(|(_, d)| *d == w).map(|(n, _)| *n).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy's side of the bounded mutation test (see experiment's):
    /// 200 seeded mutants of the default policy, no panic, a position on
    /// every rejection.
    #[test]
    fn a_mutated_policy_is_rejected_with_a_position_and_never_panics() {
        let rejected = yaml::mutate::check("policy.yaml", DEFAULT_POLICY, 7, 200, |path, bytes| {
            load_str(path, &yaml::text(path, bytes)?)
        });
        assert!(rejected > 50, "only {rejected} mutants were rejected");
    }

    fn errors(text: &str) -> String {
        match load_str(Path::new("policy.yaml"), text) {
            Ok(_) => panic!("expected the policy to be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_traffic_share_is_bounded_by_default_and_can_be_set() {
        let p = built_in().policy;
        assert_eq!(p.max_traffic_share, Share(50), "5% in safety/policy.yaml");
        assert!(!p.traffic_requires_approval);
        let text = DEFAULT_POLICY
            .replace("max_traffic_share: 5%", "max_traffic_share: 1.5%")
            .replace(
                "requires_approval_for_traffic: false",
                "requires_approval_for_traffic: true",
            );
        let p = load_str(Path::new("policy.yaml"), &text).expect("valid");
        assert_eq!(p.max_traffic_share, Share(15));
        assert!(p.traffic_requires_approval);
        let e = errors(&DEFAULT_POLICY.replace("max_traffic_share: 5%", "max_traffic_share: lots"));
        assert!(
            e.contains("parallel.max_traffic_share: `lots` is not a percentage"),
            "{e}"
        );
    }

    #[test]
    fn locks_name_a_lease_table_with_positions_on_every_mistake() {
        let base = DEFAULT_POLICY.to_string();
        assert_eq!(built_in().policy.locks, None, "the default is tag locks");
        let p = load_str(
            Path::new("policy.yaml"),
            &format!("{base}locks: {{ table: gameday-locks }}\n"),
        )
        .unwrap();
        assert_eq!(
            p.locks,
            Some(Locks {
                table: "gameday-locks".into(),
                ttl: DEFAULT_LEASE_TTL
            })
        );
        let p = load_str(
            Path::new("policy.yaml"),
            &format!("{base}locks:\n  table: t-1\n  ttl: 30s\n"),
        )
        .unwrap();
        assert_eq!(p.locks.unwrap().ttl, Duration::from_secs(30));
        let line = base.lines().count() + 1;
        for (bad, col, what) in [
            ("locks: { tabel: x }", 10, "unknown key `tabel`"),
            ("locks: { table: a b }", 17, "not a DynamoDB table name"),
            ("locks: { table: abc, ttl: 2s }", 27, "locks.ttl: out of range"),
            ("locks: { ttl: 1m }", 8, "`table`"),
        ] {
            let e = errors(&format!("{base}{bad}\n"));
            assert!(e.contains(&format!("policy.yaml:{line}:{col}")), "{bad}: {e}");
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn notifications_name_a_topic_or_a_bus_with_positions_on_every_mistake() {
        let base = DEFAULT_POLICY.to_string();
        assert!(
            built_in().policy.notifications.is_empty(),
            "the default sends nothing"
        );
        let p = load_str(
            Path::new("policy.yaml"),
            &format!("{base}notifications:\n  sns_topic: arn:aws:sns:eu-west-1:123456789012:gameday\n  event_bus: ops\n"),
        )
        .unwrap();
        assert_eq!(
            p.notifications,
            Notifications {
                sns_topic: Some("arn:aws:sns:eu-west-1:123456789012:gameday".into()),
                event_bus: Some("ops".into()),
            }
        );
        let line = base.lines().count() + 1;
        for (bad, col, what) in [
            ("notifications: { sns: x }", 18, "unknown key `sns`"),
            (
                "notifications: { sns_topic: gameday }",
                29,
                "not an SNS topic ARN",
            ),
            ("notifications: { event_bus: a b }", 29, "not an event bus name"),
            ("notifications: {}", 16, "names no destination"),
        ] {
            let e = errors(&format!("{base}{bad}\n"));
            assert!(e.contains(&format!("policy.yaml:{line}:{col}")), "{bad}: {e}");
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn the_built_in_default_is_the_commented_repository_file() {
        let p = built_in().policy;
        assert_eq!(p.regions, Allowed::Any);
        assert_eq!(
            p.protected_tags,
            vec![("gameday:protected".to_string(), "true".to_string())]
        );
        assert!(p.in_place.allowed && p.in_place.requires_approval && !p.in_place.allow_terminate);
        assert!(p.require_guardrails);
        assert!(!p.actions.iter().any(|a| a == "ec2:terminate-instances"));
    }

    #[test]
    fn unknown_keys_and_bad_values_have_positions_and_suggestions() {
        let text = "\
version: 1
regions: [eu-west-1]
acounts: any
actions: [ec2:stop-instance]
protected_tags: { gameday:protected: \"true\" }
blast_radius: { max_instances_per_fault: 0, max_percent_of_group: 150 }
in_place: { allowed: yes please, requires_approval: true, allow_terminate: false }
windows:
  time_zone: Europe/Pariss
  allowed:
    - { days: [mon, fry], hours: \"17:00-09:00\" }
  freeze: [2026-13-01]
require_guardrails: true
max_experiment_duration: 1 hour
";
        let e = errors(text);
        for expected in [
            "policy.yaml:3:1: error: unknown key `acounts` in the policy\n  help: did you mean `accounts`?",
            "policy.yaml:4:11: error: actions: unknown action `ec2:stop-instance`\n  help: did you mean `ec2:stop-instances`?",
            "policy.yaml:6:42: error: blast_radius.max_instances_per_fault: 0 is out of range",
            "blast_radius.max_percent_of_group: 150 is out of range",
            "policy.yaml:7:22: error: in_place.allowed: expected `true` or `false`",
            "policy.yaml:9:14: error: windows.time_zone: unknown time zone `Europe/Pariss`\n  help: did you mean `Europe/Paris`?",
            "policy.yaml:14:26: error: max_experiment_duration: malformed duration",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
    }

    #[test]
    fn window_days_hours_and_freeze_dates_are_checked() {
        let text = "\
version: 1
regions: any
actions: [ec2:stop-instances]
protected_tags: {}
blast_radius: { max_instances_per_fault: 1, max_percent_of_group: 10 }
in_place: { allowed: true, requires_approval: true, allow_terminate: false }
windows:
  allowed:
    - { days: [mon, fry], hours: \"17:00-09:00\" }
  freeze: [2026-13-01, { from: 2026-12-20, to: 2026-12-01 }]
require_guardrails: true
max_experiment_duration: 1h
";
        let e = errors(text);
        for expected in [
            "policy.yaml:9:21: error: windows.allowed[1].days: unknown day `fry`\n  help: did you mean `fri`?",
            "policy.yaml:9:34: error: windows.allowed[1].hours: malformed hours `17:00-09:00`",
            "policy.yaml:10:12: error: windows.freeze[1]: malformed date `2026-13-01`",
            "policy.yaml:10:48: error: windows.freeze[2].to: 2026-12-01 is before `from`",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
    }

    #[test]
    fn hours_accept_the_end_of_the_day() {
        assert_eq!(parse_hours("00:00-24:00"), Some((Time::midnight(), None)));
        assert!(parse_hours("9-17").is_none());
        assert!(parse_hours("10:00-10:00").is_none());
    }
}
