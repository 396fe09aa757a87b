//! Decoding and validating an experiment file. Every problem in a file is
//! reported with its line and column; nothing is injected from a file that has one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use marked_yaml::Node;

use super::*;
use crate::faults;
use crate::model::{Owner, check_variables};
use crate::yaml::{self, Decoder, FileErrors};

mod schema;
pub(crate) use self::schema::document;

/// Why an experiment file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read experiment {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and has problems, each with its position.
    #[error("{0}")]
    Invalid(#[from] FileErrors),
}

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "owner",
    "hypothesis",
    "environment",
    "steady_state",
    "guardrails",
    "faults",
    "timing",
    "schedule",
    "aws",
];
const ENV_KEYS: &[&str] = &[
    "mode",
    "autoscaling_group",
    "capacity",
    "ready_timeout",
    "traffic",
];
const TRAFFIC_KEYS: &[&str] = &["share", "load"];
const LOAD_KEYS: &[&str] = &["command", "port"];
/// The largest share a file may ask for: two copies of 49.9% leave the
/// source some traffic. The policy (`parallel.max_traffic_share`) bounds it far lower.
const MAX_SHARE: Share = Share(499);
const TIMING_KEYS: &[&str] = &[
    "baseline",
    "recovery",
    "interval",
    "max_duration",
    "max_abort_delay",
];
const FAULT_KEYS: &[&str] = &["name", "action", "target", "params", "duration", "start_after"];
const TARGET_KEYS: &[&str] = &[
    "tags",
    "filters",
    "ids",
    "az",
    "autoscaling_group",
    "select",
    "allow_empty",
];
const STEADY_KEYS: &[&str] = &[
    "name",
    "metric",
    "expect",
    "datapoints",
    "compare",
    "missing",
    "missing_after",
    "during",
    "alarm",
    "insufficient_data",
    "asg_healthy",
    "alarm_fires",
];
const GUARD_KEYS: &[&str] = &[
    "name",
    "metric",
    "threshold",
    "datapoints",
    "missing",
    "missing_after",
    "alarm",
    "insufficient_data",
    "asg_healthy",
];
const METRIC_KEYS: &[&str] = &["namespace", "name", "dimensions", "stat", "period"];
const MATH_KEYS: &[&str] = &["expression", "metrics", "period"];
const COMPARE_KEYS: &[&str] = &["max_increase", "max_decrease", "significance"];
const ALARM_FIRES_KEYS: &[&str] = &["alarm", "within", "clears_within"];
const ASG_HEALTHY_KEYS: &[&str] = &["at_least", "percent", "group"];
const SELECT_KEYS: &[&str] = &["count", "percent"];

/// Reads and validates an experiment file.
pub fn load(path: &Path) -> Result<Experiment, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(load_str(path, &yaml::text(path, bytes)?)?)
}

/// Validates experiment text as if read from `path`.
pub fn load_str(path: &Path, text: &str) -> Result<Experiment, FileErrors> {
    let root = yaml::parse(path, text)?;
    let mut d = Decoder::new();
    let exp = decode(&mut d, &root, path, text);
    d.finish(path)?;
    // `decode` returns None only after recording a diagnostic.
    Ok(exp.expect("an experiment that decoded without diagnostics"))
}

fn decode(d: &mut Decoder, root: &Node, path: &Path, text: &str) -> Option<Experiment> {
    let top = d
        .map(root, "the experiment", TOP_KEYS)?
        .at(Loc { line: 1, column: 1 });

    d.format_version(&top, "the experiment", FORMAT_VERSION);

    let name = d
        .required(&top, "name", "the experiment")
        .and_then(|n| d.string(n, "name"));
    if let Some(n) = &name {
        d.check_name(n, "name");
    }
    let description = top
        .get("description")
        .and_then(|n| d.string(n, "description"))
        .map(|s| s.value);
    let owner = top
        .get("owner")
        .and_then(|n| d.string(n, "owner"))
        .map(|s| s.value);
    let hypothesis = d
        .required(&top, "hypothesis", "the experiment")
        .and_then(|n| d.string(n, "hypothesis"));

    let environment = match top.get("environment") {
        Some(n) => decode_environment(d, n),
        None => Some(Environment {
            mode: Mode::Parallel,
            autoscaling_group: None,
            capacity: None,
            ready_timeout: Duration::from_secs(600),
            traffic: None,
        }),
    };
    let timing = match top.get("timing") {
        Some(n) => decode_timing(d, n),
        None => Some(Timing::default()),
    };

    let schedule = match top.get("schedule") {
        Some(n) => crate::schedule::decode_schedule(d, n).map(Some),
        None => Some(None),
    };

    let aws = match top.get("aws") {
        Some(n) => crate::model::AwsTarget::decode(d, n, "aws"),
        None => Some(crate::model::AwsTarget::default()),
    };

    let steady_state = match top.get("steady_state") {
        Some(n) => decode_probes(d, n, ProbeSection::SteadyState),
        None => Some(Vec::new()),
    };
    let guardrails = match top.get("guardrails") {
        Some(n) => decode_probes(d, n, ProbeSection::Guardrails),
        None => {
            d.error_help(
                top.loc(),
                "the experiment has no `guardrails`: nothing could stop it if it hurts the service",
                "add at least one, e.g. `guardrails: [{ alarm: my-5xx-alarm }]`",
            );
            None
        }
    };
    if let Some(g) = &guardrails
        && g.is_empty()
        && let Some(n) = top.get("guardrails")
    {
        d.error(
            yaml::loc(n),
            "`guardrails` is empty: an experiment needs at least one guardrail that can stop it",
        );
    }

    let faults = match d.required(&top, "faults", "the experiment") {
        Some(n) => decode_faults(d, n),
        None => None,
    };

    if let (Some(env), Some(faults)) = (&environment, &faults) {
        check_environment_use(
            d,
            env,
            faults,
            top.get("environment").map(yaml::loc).unwrap_or(top.loc()),
        );
    }
    if let (Some(faults), Some(guardrails)) = (&faults, &guardrails) {
        check_forced_alarms(
            d,
            faults,
            guardrails,
            environment.as_ref().and_then(|e| e.autoscaling_group.as_deref()),
        );
    }
    if let Some(env) = &environment {
        check_copy_variables(d, env, text);
    }
    if let (Some(env), Some(probes)) = (&environment, &steady_state) {
        check_asg_probes(d, env, probes);
        check_compare(d, env, probes);
    }
    if let (Some(env), Some(probes)) = (&environment, &guardrails) {
        check_asg_probes(d, env, probes);
        check_compare(d, env, probes);
    }

    Some(Experiment {
        file: path.to_path_buf(),
        source: text.to_string(),
        name: name?.value,
        description,
        owner,
        hypothesis: hypothesis?.value,
        environment: environment?,
        steady_state: steady_state?,
        guardrails: guardrails?,
        faults: faults?,
        timing: timing?,
        schedule: schedule?,
        aws: aws?,
    })
}

/// `${control_asg}` needs a control copy and the target-group variables a
/// share of the load balancer's traffic: used without them, they would stay
/// unexpanded and a probe would read a metric that cannot exist.
fn check_copy_variables(d: &mut Decoder, env: &Environment, text: &str) {
    let (control, traffic) = match &env.traffic {
        Some(Traffic::Share(_)) => return,
        Some(Traffic::Load(_)) => (true, false),
        None => (false, false),
    };
    for (i, line) in text.lines().enumerate() {
        let code = line.split(" #").next().unwrap_or_default();
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut from = 0;
        while let Some(at) = code[from..].find("${") {
            let start = from + at;
            let rest = &code[start + 2..];
            let Some(end) = rest.find('}') else { break };
            let var = &rest[..end];
            let needs = if crate::model::TRAFFIC_VARIABLES.contains(&var) && !traffic {
                Some("`environment.traffic.share` (the copies' target groups exist only then)")
            } else if crate::model::CONTROL_VARIABLES.contains(&var) && !control {
                Some("`environment.traffic` (`share` or `load`: only then is there a control copy)")
            } else {
                None
            };
            if let Some(needs) = needs {
                d.error_help(
                    Loc {
                        line: i + 1,
                        column: start + 1,
                    },
                    format!("`${{{var}}}` has no value in this experiment"),
                    format!("it needs {needs}"),
                );
            }
            from = start + 2 + end + 1;
        }
    }
}

/// Names end up in tags and file names: keep them to a safe alphabet.
fn decode_environment(d: &mut Decoder, node: &Node) -> Option<Environment> {
    let m = d.map(node, "environment", ENV_KEYS)?;
    let mode = match m.get("mode") {
        None => Some(Mode::Parallel),
        Some(n) => match d.string(n, "environment.mode")?.value.as_str() {
            "parallel" => Some(Mode::Parallel),
            "in-place" => Some(Mode::InPlace),
            other => {
                let help = match yaml::did_you_mean(other, ["parallel", "in-place"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "expected `parallel` (a temporary copy, the default) or `in-place` (the real resources)".into(),
                };
                d.error_help(
                    yaml::loc(n),
                    format!("environment.mode: unknown mode `{other}`"),
                    help,
                );
                None
            }
        },
    };
    let autoscaling_group = m
        .get("autoscaling_group")
        .and_then(|n| d.string(n, "environment.autoscaling_group"));
    let capacity = m
        .get("capacity")
        .and_then(|n| d.integer(n, "environment.capacity", 1, 10_000))
        .map(|c| c.value as u32);
    let ready_timeout = match m.get("ready_timeout") {
        Some(n) => d.duration(n, "environment.ready_timeout").map(|s| s.value),
        None => Some(Duration::from_secs(600)),
    };
    let traffic = match m.get("traffic") {
        Some(n) => decode_traffic(d, n).map(Some),
        None => Some(None),
    };
    if let (Some(Mode::InPlace), Some(Some(_)), Some(n)) = (mode, &traffic, m.get("traffic")) {
        d.error_help(
            yaml::loc(n),
            "environment.traffic: only parallel mode has copies to send traffic to",
            "remove `traffic`, or use `mode: parallel`",
        );
    }
    Some(Environment {
        mode: mode?,
        autoscaling_group: autoscaling_group.map(|s| s.value),
        capacity,
        ready_timeout: ready_timeout?,
        traffic: traffic?,
    })
}

/// `traffic: { share: 2% }` or `traffic: { load: { command: [k6, run, x.js] } }`.
fn decode_traffic(d: &mut Decoder, node: &Node) -> Option<Traffic> {
    let m = d.map(node, "environment.traffic", TRAFFIC_KEYS)?;
    match (m.get("share"), m.get("load")) {
        (Some(n), None) => {
            Share::decode(d, n, "environment.traffic.share", Share(1), MAX_SHARE).map(Traffic::Share)
        }
        (None, Some(n)) => {
            let lm = d.map(n, "environment.traffic.load", LOAD_KEYS)?;
            let command = d
                .required(&lm, "command", "environment.traffic.load")
                .and_then(|c| d.string_list(c, "environment.traffic.load.command"));
            if let (Some(c), Some(n)) = (&command, lm.get("command"))
                && c.is_empty()
            {
                d.error(yaml::loc(n), "environment.traffic.load.command: expected the program and its arguments, found an empty list");
            }
            let port = match lm.get("port") {
                Some(p) => d
                    .integer(p, "environment.traffic.load.port", 1, 65_535)
                    .map(|p| Some(p.value as u16)),
                None => Some(None),
            };
            Some(Traffic::Load(Load {
                command: command?.into_iter().map(|s| s.value).collect(),
                port: port?,
                loc: yaml::loc(n),
            }))
        }
        _ => {
            d.error_help(
                m.loc(),
                "environment.traffic: expected exactly one of `share` or `load`",
                "`share: 2%` sends each copy 2% of the load balancer's requests; `load: { command: [...] }` runs your load generator against the copies",
            );
            None
        }
    }
}

fn decode_timing(d: &mut Decoder, node: &Node) -> Option<Timing> {
    let m = d.map(node, "timing", TIMING_KEYS)?;
    let def = Timing::default();
    let get = |d: &mut Decoder, key: &str, default: Duration| -> Option<Spanned<Duration>> {
        match m.get(key) {
            Some(n) => d.duration(n, &format!("timing.{key}")),
            None => Some(Spanned {
                value: default,
                loc: m.loc(),
            }),
        }
    };
    let baseline = get(d, "baseline", def.baseline);
    let recovery = get(d, "recovery", def.recovery);
    let interval = get(d, "interval", def.interval);
    let max_duration = get(d, "max_duration", def.max_duration);
    let max_abort_delay = match m.get("max_abort_delay") {
        Some(n) => d.duration(n, "timing.max_abort_delay").map(|s| Some(s.value)),
        None => Some(None),
    };
    if let Some(i) = &interval
        && i.value < Duration::from_millis(200)
    {
        d.error(
            i.loc,
            "timing.interval: must be at least 200ms (each check makes AWS API calls)",
        );
    }
    Some(Timing {
        baseline: baseline?.value,
        recovery: recovery?.value,
        interval: interval?.value,
        max_duration: max_duration?.value,
        max_abort_delay: max_abort_delay?,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum ProbeSection {
    SteadyState,
    Guardrails,
}

fn decode_probes(d: &mut Decoder, node: &Node, section: ProbeSection) -> Option<Vec<Probe>> {
    let (what, keys) = match section {
        ProbeSection::SteadyState => ("steady_state", STEADY_KEYS),
        ProbeSection::Guardrails => ("guardrails", GUARD_KEYS),
    };
    let items = d.list(node, what)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match decode_probe(d, item, section, &format!("{what}[{}]", i + 1), keys) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_probe(
    d: &mut Decoder,
    node: &Node,
    section: ProbeSection,
    what: &str,
    keys: &[&str],
) -> Option<Probe> {
    // A misplaced `expect`/`threshold` is common enough to deserve its own message.
    if let Node::Mapping(m) = node {
        let (wrong, right, why) = match section {
            ProbeSection::SteadyState => (
                "threshold",
                "expect",
                "in steady_state, `expect` is what must hold",
            ),
            ProbeSection::Guardrails => (
                "expect",
                "threshold",
                "in guardrails, `threshold` is the breach condition",
            ),
        };
        if let Some(k) = m.keys().find(|k| k.as_str() == wrong) {
            let at = k
                .span()
                .start()
                .map(|s| yaml::Loc {
                    line: s.line(),
                    column: s.column(),
                })
                .unwrap_or_default();
            d.error_help(at, format!("{what}: use `{right}`, not `{wrong}`"), why);
            return None;
        }
    }
    let m = d.map(node, what, keys)?;
    let kinds: Vec<&str> = ["metric", "alarm", "asg_healthy", "alarm_fires"]
        .into_iter()
        .filter(|k| m.get(k).is_some())
        .collect();
    if kinds.len() != 1 {
        let message = if kinds.is_empty() && section == ProbeSection::SteadyState {
            format!("{what}: expected one of `metric`, `alarm`, `asg_healthy` or `alarm_fires`")
        } else if kinds.is_empty() {
            format!("{what}: expected one of `metric`, `alarm` or `asg_healthy`")
        } else {
            format!(
                "{what}: `{}` cannot be combined in one entry; write one entry for each",
                kinds.join("` and `")
            )
        };
        d.error(m.loc(), message);
        return None;
    }
    let label = m
        .get("name")
        .and_then(|n| d.string(n, &format!("{what}.name")))
        .map(|s| s.value);
    let during = match m.get("during") {
        None => Some(During::Hold),
        Some(n) => match d.string(n, &format!("{what}.during"))?.value.as_str() {
            "hold" => Some(During::Hold),
            "recover" => Some(During::Recover),
            other => {
                d.error_help(
                    yaml::loc(n),
                    format!("{what}.during: `{other}`: expected `hold` or `recover`"),
                    "`hold` (the default): it must hold while faults are active; `recover`: it may deviate then, and must hold again within timing.recovery",
                );
                None
            }
        },
    };
    if kinds[0] == "alarm_fires"
        && let Some(n) = m.get("during")
    {
        d.error(yaml::loc(n), format!("{what}: `during` does not apply to `alarm_fires` (it is expected to fire while faults are active)"));
    }
    if kinds[0] != "metric" {
        for k in ["missing", "missing_after"] {
            if let Some(n) = m.get(k) {
                d.error(
                    yaml::loc(n),
                    format!("{what}: `{k}` applies only to a metric probe (the missing-data rule)"),
                );
            }
        }
    }
    let (kind, default_name) = match kinds[0] {
        "metric" => {
            let query = decode_metric_spec(d, m.get("metric")?, &format!("{what}.metric"));
            let tol_key = if section == ProbeSection::SteadyState {
                "expect"
            } else {
                "threshold"
            };
            let tolerance = match d.required(&m, tol_key, what) {
                Some(n) => {
                    let text = d.string(n, &format!("{what}.{tol_key}"));
                    text.and_then(|t| match Expect::parse(&t.value) {
                        Ok(tol) => Some(tol),
                        Err(e) => {
                            let message = format!("{what}.{tol_key}: `{}`: {e}", t.value);
                            if t.value.trim_start().starts_with(['<', '>', '=', 'b']) {
                                d.error(t.loc, message);
                            } else {
                                // `threshold: > 50` unquoted is a folded block whose text is "50".
                                d.error_help(
                                    t.loc,
                                    message,
                                    "quote it, e.g. \"> 50\": a bare `>` starts a folded YAML block",
                                );
                            }
                            None
                        }
                    })
                }
                None => None,
            };
            let datapoints = match m.get("datapoints") {
                Some(n) => d
                    .integer(n, &format!("{what}.datapoints"), 1, 100)
                    .map(|v| v.value as u32),
                None => Some(1),
            };
            let compare = match m.get("compare") {
                Some(n) => decode_compare(d, n, &format!("{what}.compare")).map(Some),
                None => Some(None),
            };
            let missing = decode_missing(d, &m, what);
            let query = query?;
            let missing = missing?;
            if let Some(after) = missing.after
                && after < Duration::from_secs(2 * query.period() as u64)
                && let Some(n) = m.get("missing_after")
            {
                d.error_help(
                    yaml::loc(n),
                    format!(
                        "{what}.missing_after: {} is shorter than two periods of the metric ({}s each)",
                        crate::util::format_duration(after),
                        query.period()
                    ),
                    "a healthy metric's newest datapoint is up to a period old plus CloudWatch's delay; leave it out for the default (three periods or three intervals, whichever is longer)",
                );
            }
            let name = match &query {
                MetricSpec::Stat(q) => format!("{} {}", q.name, q.stat),
                MetricSpec::Math { expression, .. } => expression.clone(),
            };
            (
                ProbeKind::Metric {
                    query,
                    tolerance: tolerance?,
                    datapoints: datapoints?,
                    compare: compare?,
                    missing,
                },
                name,
            )
        }
        "alarm_fires" => {
            for k in ["expect", "datapoints", "compare"] {
                if m.get(k).is_some() {
                    d.error(m.loc(), format!("{what}: `{k}` does not apply to `alarm_fires`"));
                }
            }
            let am = d.map(
                m.get("alarm_fires")?,
                &format!("{what}.alarm_fires"),
                ALARM_FIRES_KEYS,
            )?;
            let alarm = d
                .required(&am, "alarm", &format!("{what}.alarm_fires"))
                .and_then(|n| d.string(n, &format!("{what}.alarm_fires.alarm")));
            if let Some(a) = &alarm {
                check_variables(d, a);
            }
            let within = d
                .required(&am, "within", &format!("{what}.alarm_fires"))
                .and_then(|n| d.duration(n, &format!("{what}.alarm_fires.within")));
            let clears = d
                .required(&am, "clears_within", &format!("{what}.alarm_fires"))
                .and_then(|n| d.duration(n, &format!("{what}.alarm_fires.clears_within")));
            let alarm = alarm?;
            let name = format!("alarm {} fires", alarm.value);
            (
                ProbeKind::AlarmFires {
                    alarm: alarm.value,
                    within: within?.value,
                    clears_within: clears?.value,
                },
                name,
            )
        }
        "alarm" => {
            for k in ["expect", "threshold", "datapoints", "compare"] {
                if m.get(k).is_some() {
                    d.error(
                        m.loc(),
                        format!("{what}: `{k}` does not apply to an alarm (its own threshold decides)"),
                    );
                }
            }
            let alarm = d.string(m.get("alarm")?, &format!("{what}.alarm"))?;
            check_variables(d, &alarm);
            let insufficient = match m.get("insufficient_data") {
                None => Some(InsufficientData::Ok),
                Some(n) => match d.string(n, &format!("{what}.insufficient_data"))?.value.as_str() {
                    "breach" => Some(InsufficientData::Breach),
                    "ok" => Some(InsufficientData::Ok),
                    "allow" => Some(InsufficientData::Allow),
                    other => {
                        d.error_help(
                            yaml::loc(n),
                            format!("{what}.insufficient_data: `{other}`: expected `ok`, `allow` or `breach`"),
                            "`ok` (default): refused before injection, ignored during the run; `allow`: accepted before injection too; `breach`: aborts the run",
                        );
                        None
                    }
                },
            };
            let name = format!("alarm {}", alarm.value);
            (
                ProbeKind::Alarm {
                    alarm: alarm.value,
                    insufficient_data: insufficient?,
                },
                name,
            )
        }
        _ => {
            let node = m.get("asg_healthy")?;
            let hm = d.map(node, &format!("{what}.asg_healthy"), ASG_HEALTHY_KEYS)?;
            let bound = match (hm.get("at_least"), hm.get("percent")) {
                (Some(n), None) => d
                    .integer(n, &format!("{what}.asg_healthy.at_least"), 0, 100_000)
                    .map(|v| CapacityBound::AtLeast(v.value as u32)),
                (None, Some(n)) => d
                    .integer(n, &format!("{what}.asg_healthy.percent"), 1, 100)
                    .map(|v| CapacityBound::Percent(v.value as u32)),
                _ => {
                    d.error(
                        hm.loc(),
                        format!("{what}.asg_healthy: expected exactly one of `at_least: N` or `percent: P`"),
                    );
                    None
                }
            };
            let group = match hm.get("group") {
                Some(n) => {
                    let g = d.string(n, &format!("{what}.asg_healthy.group"))?;
                    check_variables(d, &g);
                    g.value
                }
                None => "${asg}".to_string(),
            };
            let name = match bound? {
                CapacityBound::AtLeast(n) => format!("healthy capacity >= {n}"),
                CapacityBound::Percent(p) => format!("healthy capacity >= {p}%"),
            };
            (ProbeKind::AsgHealthy { group, bound: bound? }, name)
        }
    };
    Some(Probe {
        name: label.unwrap_or(default_name),
        kind,
        during: during?,
        loc: m.loc(),
    })
}

/// `missing` and `missing_after` of a metric probe: what silence means, and after how long.
fn decode_missing(d: &mut Decoder, m: &yaml::Map, what: &str) -> Option<Missing> {
    let treat = match m.get("missing") {
        None => Some(TreatMissing::Breach),
        Some(n) => match d.string(n, &format!("{what}.missing"))?.value.as_str() {
            "breach" => Some(TreatMissing::Breach),
            "ignore" => Some(TreatMissing::Ignore),
            "ok" => Some(TreatMissing::Ok),
            other => {
                d.error_help(
                    yaml::loc(n),
                    format!("{what}.missing: `{other}`: expected `breach`, `ignore` or `ok`"),
                    "`breach` (default): no new datapoint for `missing_after` is a breach (guardrail) or a deviation while faults are active (steady state); `ignore`: the last datapoint is judged; `ok`: silence counts as fine",
                );
                None
            }
        },
    };
    let after = match m.get("missing_after") {
        None => Some(None),
        Some(n) => d
            .duration(n, &format!("{what}.missing_after"))
            .map(|s| Some(s.value)),
    };
    let treat = treat?;
    let after = after?;
    if treat == TreatMissing::Ignore
        && let Some(n) = m.get("missing_after")
    {
        d.error(
            yaml::loc(n),
            format!("{what}.missing_after: does not apply to `missing: ignore` (silence changes nothing)"),
        );
        return None;
    }
    Some(Missing { treat, after })
}

/// `metric:` is one metric (`namespace`, `name`, ...) or metric math
/// (`expression` over `metrics`, each an id mapped to a metric).
fn decode_metric_spec(d: &mut Decoder, node: &Node, what: &str) -> Option<MetricSpec> {
    let is_math = matches!(node, Node::Mapping(m) if m.keys().any(|k| k.as_str() == "expression"));
    if !is_math {
        return decode_metric(d, node, what).map(MetricSpec::Stat);
    }
    let m = d.map(node, what, MATH_KEYS)?;
    let expression = d
        .required(&m, "expression", what)
        .and_then(|n| d.string(n, &format!("{what}.expression")));
    let period = match m.get("period") {
        Some(n) => decode_period(d, n, &format!("{what}.period")),
        None => Some(60),
    };
    let metrics_node = d.required(&m, "metrics", what)?;
    let mm = d.open_map(metrics_node, &format!("{what}.metrics"))?;
    let mut metrics = Vec::new();
    let mut ok = true;
    for (k, v) in mm.entries() {
        let id = k.as_str();
        let at = k
            .span()
            .start()
            .map(|s| Loc {
                line: s.line(),
                column: s.column(),
            })
            .unwrap_or_default();
        if !id.starts_with(|c: char| c.is_ascii_lowercase())
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            d.error(at, format!("{what}.metrics: `{id}` is not a metric id: expected a lowercase letter, then letters, digits or `_` (e.g. `m1`)"));
            ok = false;
            continue;
        }
        match decode_metric(d, v, &format!("{what}.metrics.{id}")) {
            Some(q) => metrics.push((id.to_string(), q)),
            None => ok = false,
        }
    }
    let expression = expression?;
    if ok && metrics.is_empty() {
        d.error(yaml::loc(metrics_node), format!("{what}.metrics: expected at least one metric, e.g. `m1: {{ namespace: App, name: Errors, stat: Sum }}`"));
        return None;
    }
    for (id, _) in &metrics {
        if !expression.value.contains(id.as_str()) {
            d.error(
                expression.loc,
                format!(
                    "{what}.expression: `{}` does not use metric `{id}`",
                    expression.value
                ),
            );
            ok = false;
        }
    }
    ok.then_some(MetricSpec::Math {
        expression: expression.value,
        metrics,
        period: period?,
    })
}

/// `compare: { max_increase: 20%, max_decrease: 10%, significance: 0.05 }`.
fn decode_compare(d: &mut Decoder, node: &Node, what: &str) -> Option<Compare> {
    let m = d.map(node, what, COMPARE_KEYS)?;
    let pct = |d: &mut Decoder, key: &str| -> Option<Option<f64>> {
        let Some(n) = m.get(key) else { return Some(None) };
        let text = d.string(n, &format!("{what}.{key}"))?;
        match text.value.trim().trim_end_matches('%').trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Some(Some(v)),
            _ => {
                d.error(
                    text.loc,
                    format!(
                        "{what}.{key}: `{}`: expected a percentage such as `20%`",
                        text.value
                    ),
                );
                None
            }
        }
    };
    let max_increase = pct(d, "max_increase");
    let max_decrease = pct(d, "max_decrease");
    let significance = match m.get("significance") {
        None => Some(0.05),
        Some(n) => d.number(n, &format!("{what}.significance")).and_then(|v| {
            if v.value > 0.0 && v.value < 1.0 {
                Some(v.value)
            } else {
                d.error(
                    v.loc,
                    format!(
                        "{what}.significance: `{}`: expected a p-value threshold between 0 and 1, e.g. 0.05",
                        v.value
                    ),
                );
                None
            }
        }),
    };
    let (max_increase, max_decrease) = (max_increase?, max_decrease?);
    if max_increase.is_none() && max_decrease.is_none() {
        d.error(
            m.loc(),
            format!("{what}: expected `max_increase` and/or `max_decrease`, e.g. `{{ max_increase: 20% }}`"),
        );
        return None;
    }
    Some(Compare {
        max_increase,
        max_decrease,
        significance: significance?,
    })
}

fn decode_metric(d: &mut Decoder, node: &Node, what: &str) -> Option<MetricQuery> {
    let m = d.map(node, what, METRIC_KEYS)?;
    let namespace = d
        .required(&m, "namespace", what)
        .and_then(|n| d.string(n, &format!("{what}.namespace")));
    let name = d
        .required(&m, "name", what)
        .and_then(|n| d.string(n, &format!("{what}.name")));
    let dimensions = match m.get("dimensions") {
        Some(n) => d.string_map(n, &format!("{what}.dimensions")),
        None => Some(Vec::new()),
    };
    if let (Some(dims), Some(n)) = (&dimensions, m.get("dimensions")) {
        for (_, v) in dims {
            check_variables(
                d,
                &Spanned {
                    value: v.clone(),
                    loc: yaml::loc(n),
                },
            );
        }
    }
    let stat = match m.get("stat") {
        Some(n) => d.string(n, &format!("{what}.stat")).and_then(|s| {
            if valid_stat(&s.value) {
                Some(s.value)
            } else {
                let help = yaml::did_you_mean(&s.value, STATS.iter().copied())
                    .map(|x| format!("did you mean `{x}`? "))
                    .unwrap_or_default();
                d.error_help(
                    s.loc,
                    format!("{what}.stat: unknown statistic `{}`", s.value),
                    format!(
                        "{help}expected one of {} or a percentile such as `p99` or `p99.9`",
                        STATS.join(", ")
                    ),
                );
                None
            }
        }),
        None => Some("Average".to_string()),
    };
    let period = match m.get("period") {
        Some(n) => decode_period(d, n, &format!("{what}.period")),
        None => Some(60),
    };
    Some(MetricQuery {
        namespace: namespace?.value,
        name: name?.value,
        dimensions: dimensions?,
        stat: stat?,
        period: period?,
    })
}

const STATS: &[&str] = &["Average", "Sum", "Minimum", "Maximum", "SampleCount"];

fn valid_stat(s: &str) -> bool {
    STATS.contains(&s)
        || s.strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .is_some_and(|p| (0.0..=100.0).contains(&p))
}

/// A CloudWatch period: seconds as a number (`60`) or a duration (`1m`). The API
/// accepts 1, 5, 10, 20, 30 or a multiple of 60 seconds.
fn decode_period(d: &mut Decoder, node: &Node, what: &str) -> Option<u32> {
    let secs = match node {
        Node::Scalar(s) if s.as_str().chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => {
            s.as_str().parse::<u64>().ok()
        }
        _ => d.duration(node, what).map(|s| s.value.as_secs()),
    }?;
    if matches!(secs, 1 | 5 | 10 | 20 | 30) || (secs >= 60 && secs % 60 == 0) {
        Some(secs as u32)
    } else {
        d.error(yaml::loc(node), format!("{what}: {secs} seconds is not a CloudWatch period: expected 1, 5, 10, 20, 30 or a multiple of 60"));
        None
    }
}

fn decode_faults(d: &mut Decoder, node: &Node) -> Option<Vec<FaultSpec>> {
    let items = d.list(node, "faults")?;
    if items.is_empty() {
        d.error(
            yaml::loc(node),
            "`faults` is empty: an experiment needs at least one fault",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match decode_fault(d, item, &format!("faults[{}]", i + 1)) {
            Some(f) => out.push(f),
            None => ok = false,
        }
    }
    // Names must be unique before references can be checked.
    let mut seen: HashMap<&str, Loc> = HashMap::new();
    for f in &out {
        // The journal names the environment's setup and teardown calls this
        // way: a fault of that name would be shown (and recovered) as teardown.
        if Owner::of(&f.name.value) == Owner::Environment {
            d.error_help(
                f.name.loc,
                format!("fault name `{}` is reserved", f.name.value),
                "the run's own setup and teardown are journaled under it; choose another name",
            );
            ok = false;
        }
        if let Some(first) = seen.insert(&f.name.value, f.name.loc) {
            d.error(
                f.name.loc,
                format!(
                    "duplicate fault name `{}` (first used on line {})",
                    f.name.value, first.line
                ),
            );
            ok = false;
        }
    }
    for f in &out {
        for dep in &f.start_after {
            if dep.value == f.name.value {
                d.error(
                    dep.loc,
                    format!("fault `{}` cannot start after itself", f.name.value),
                );
                ok = false;
            } else if !seen.contains_key(dep.value.as_str()) {
                let names = out.iter().map(|f| f.name.value.as_str());
                let help = match yaml::did_you_mean(&dep.value, names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "faults in this file: {}",
                        out.iter()
                            .map(|f| format!("`{}`", f.name.value))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                d.error_help(
                    dep.loc,
                    format!("start_after: no fault named `{}`", dep.value),
                    help,
                );
                ok = false;
            }
        }
    }
    if ok && let Some(cycle) = find_cycle(&out) {
        let first = &out[cycle[0]];
        let path: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&cycle[0]))
            .map(|&i| out[i].name.value.as_str())
            .collect();
        d.error_help(
            first.start_after.first().map(|s| s.loc).unwrap_or(first.loc),
            format!("start_after forms a cycle: {}", path.join(" -> ")),
            "a fault can only start after faults that do not (directly or indirectly) wait for it",
        );
        ok = false;
    }
    ok.then_some(out)
}

/// A cycle in the start_after graph, as fault indexes, if there is one.
fn find_cycle(faults: &[FaultSpec]) -> Option<Vec<usize>> {
    let index: HashMap<&str, usize> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.value.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; faults.len()];
    let mut path = Vec::new();
    fn visit(
        i: usize,
        faults: &[FaultSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for dep in &faults[i].start_after {
            let j = index[dep.value.as_str()];
            if state[j] == 1 {
                let from = path.iter().position(|&p| p == j).unwrap_or(0);
                return Some(path[from..].to_vec());
            }
            if state[j] == 0
                && let Some(c) = visit(j, faults, index, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    (0..faults.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, faults, &index, &mut state, &mut path)
        } else {
            None
        }
    })
}

fn decode_fault(d: &mut Decoder, node: &Node, what: &str) -> Option<FaultSpec> {
    let m = d.map(node, what, FAULT_KEYS)?;
    let name = d
        .required(&m, "name", what)
        .and_then(|n| d.string(n, &format!("{what}.name")));
    if let Some(n) = &name {
        d.check_name(n, &format!("{what}.name"));
    }
    let action = d
        .required(&m, "action", what)
        .and_then(|n| d.string(n, &format!("{what}.action")));
    let fault = action.as_ref().and_then(|a| {
        let Some(def) = faults::find(&a.value) else {
            let message = format!("{what}.action: unknown action `{}`", a.value);
            match yaml::did_you_mean(&a.value, faults::names()) {
                Some(s) => d.error_help(a.loc, message, format!("did you mean `{s}`?")),
                None => d.error_help(
                    a.loc,
                    message,
                    format!("expected one of: {}", faults::names().join(", ")),
                ),
            }
            return None;
        };
        def.decode(d, m.get("params"), &format!("{what}.params"), m.loc())
    });
    let target = match m.get("target") {
        Some(n) => {
            if let Some(f) = &fault {
                check_target_keys(d, f, n, &format!("{what}.target"));
            }
            decode_target(d, n, &format!("{what}.target"))
        }
        None => Some(TargetSpec::default()),
    };
    let duration = match m.get("duration") {
        Some(n) => d.duration(n, &format!("{what}.duration")).map(|s| Some(s.value)),
        None => Some(None),
    };
    let start_after = match m.get("start_after") {
        Some(n) => d.string_list(n, &format!("{what}.start_after")),
        None => Some(Vec::new()),
    };
    Some(FaultSpec {
        name: name?,
        action: action?,
        fault: fault?,
        target: target?,
        duration: duration?,
        start_after: start_after?,
        loc: m.loc(),
    })
}

/// Group faults take only `autoscaling_group` from a target, alarm faults no
/// target at all: criteria that select instances would silently do nothing.
fn check_target_keys(d: &mut Decoder, fault: &faults::Fault, node: &Node, what: &str) {
    let Node::Mapping(m) = node else { return };
    for (k, _) in m.iter() {
        let key = k.as_str();
        let at = k
            .span()
            .start()
            .map(|s| Loc {
                line: s.line(),
                column: s.column(),
            })
            .unwrap_or_default();
        match fault.scope() {
            faults::Scope::Instances => {}
            faults::Scope::Groups if key == "autoscaling_group" => {}
            faults::Scope::Groups => d.error_help(
                at,
                format!("{what}.{key}: `{}` acts on Auto Scaling groups, not instances", fault.action()),
                "only `target: { autoscaling_group: NAME }` applies (default: the environment's group, the copy in parallel mode)",
            ),
            faults::Scope::Alarm => d.error_help(
                at,
                format!("{what}.{key}: `{}` acts on the alarm named in its params and takes no target", fault.action()),
                "remove `target`; name the alarm with `params: { alarm: NAME }`",
            ),
        }
    }
}

fn decode_target(d: &mut Decoder, node: &Node, what: &str) -> Option<TargetSpec> {
    let m = d.map(node, what, TARGET_KEYS)?;
    let mut t = TargetSpec::default();
    let mut ok = true;
    if let Some(n) = m.get("tags") {
        match d.string_map(n, &format!("{what}.tags")) {
            Some(tags) => t.tags = tags,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("filters") {
        // Filter names are EC2's own and free-form, so there is no list of allowed keys.
        if !matches!(n, Node::Mapping(_)) {
            d.error(yaml::loc(n), format!("{what}.filters: expected a mapping of EC2 filter names to values, e.g. `instance-type: [t3.micro]`"));
            ok = false;
        }
        if let Node::Mapping(fm) = n {
            for (k, v) in fm.iter() {
                let values = match v {
                    Node::Scalar(s) => Some(vec![s.as_str().to_string()]),
                    _ => d
                        .string_list(v, &format!("{what}.filters.{}", k.as_str()))
                        .map(|l| l.into_iter().map(|s| s.value).collect()),
                };
                match values {
                    Some(values) => t.filters.push((k.as_str().to_string(), values)),
                    None => ok = false,
                }
            }
        }
    }
    if let Some(n) = m.get("ids") {
        match d.string_list(n, &format!("{what}.ids")) {
            Some(ids) => {
                for id in &ids {
                    if !id.value.starts_with("i-") {
                        d.error(
                            id.loc,
                            format!(
                                "{what}.ids: `{}` is not an EC2 instance id (expected `i-...`)",
                                id.value
                            ),
                        );
                        ok = false;
                    }
                }
                t.ids = ids.into_iter().map(|s| s.value).collect();
            }
            None => ok = false,
        }
    }
    if let Some(n) = m.get("az") {
        match d.string(n, &format!("{what}.az")) {
            Some(az) => t.az = Some(az.value),
            None => ok = false,
        }
    }
    if let Some(n) = m.get("autoscaling_group") {
        match d.string(n, &format!("{what}.autoscaling_group")) {
            Some(g) => {
                check_variables(d, &g);
                t.autoscaling_group = Some(g.value);
            }
            None => ok = false,
        }
    }
    if let Some(n) = m.get("select") {
        match decode_selection(d, n, &format!("{what}.select")) {
            Some(s) => t.select = s,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("allow_empty") {
        match d.boolean(n, &format!("{what}.allow_empty")) {
            Some(b) => t.allow_empty = b,
            None => ok = false,
        }
    }
    ok.then_some(t)
}

fn decode_selection(d: &mut Decoder, node: &Node, what: &str) -> Option<Selection> {
    if let Node::Scalar(s) = node
        && s.as_str() == "all"
    {
        return Some(Selection::All);
    }
    if !matches!(node, Node::Mapping(_)) {
        d.error(
            yaml::loc(node),
            format!("{what}: expected `all`, `{{ count: N }}` or `{{ percent: P }}`"),
        );
        return None;
    }
    let m = d.map(node, what, SELECT_KEYS)?;
    match (m.get("count"), m.get("percent")) {
        (Some(n), None) => d
            .integer(n, &format!("{what}.count"), 1, 100_000)
            .map(|v| Selection::Count(v.value as u32)),
        (None, Some(n)) => d
            .integer(n, &format!("{what}.percent"), 1, 100)
            .map(|v| Selection::Percent(v.value as u32)),
        _ => {
            d.error(
                m.loc(),
                format!("{what}: expected exactly one of `count: N` or `percent: P`"),
            );
            None
        }
    }
}

/// Faults that take their targets from the environment, and parallel mode,
/// both need the environment's Auto Scaling group.
fn check_environment_use(d: &mut Decoder, env: &Environment, faults: &[FaultSpec], env_loc: Loc) {
    if env.mode == Mode::Parallel {
        // In parallel mode a group fault must hit the run's copy, never the source.
        for f in faults {
            if f.fault.scope() == faults::Scope::Groups
                && let Some(g) = &f.target.autoscaling_group
                && g != "${asg}"
            {
                d.error_help(
                    f.loc,
                    format!("fault `{}`: in parallel mode a group fault acts on the run's copy, but its target names `{g}`", f.name.value),
                    "leave `autoscaling_group` out (or write `${asg}`, the copy), or set `mode: in-place` to act on a real group",
                );
            }
        }
    }
    if env.autoscaling_group.is_some() {
        return;
    }
    if env.mode == Mode::Parallel {
        d.error_help(
            env_loc,
            "environment: parallel mode (the default) needs `autoscaling_group`, the group to copy",
            "name the workload's group, or set `mode: in-place` and give each fault its own target",
        );
        return;
    }
    let mut reported = HashSet::new();
    for f in faults {
        if f.fault.scope() == faults::Scope::Groups
            && f.target.autoscaling_group.is_none()
            && reported.insert(f.name.value.clone())
        {
            d.error_help(
                f.loc,
                format!("fault `{}` acts on an Auto Scaling group, and neither its target nor the environment names one", f.name.value),
                "add `target: { autoscaling_group: NAME }`, or set environment.autoscaling_group",
            );
        }
        if f.fault.needs_instances() && f.target.uses_environment() && reported.insert(f.name.value.clone()) {
            d.error_help(
                f.loc,
                format!("fault `{}` has no target and the environment names no `autoscaling_group`", f.name.value),
                "add `target: { tags: {...} }` (or ids, filters, autoscaling_group), or set environment.autoscaling_group",
            );
        }
    }
}

/// A forced alarm that is also a guardrail of the same run would abort the
/// run the moment the fault is injected: almost certainly not what was meant.
/// Names are compared as written and with `${asg}` as the environment's group
/// (what both mean for alarms).
fn check_forced_alarms(d: &mut Decoder, faults: &[FaultSpec], guardrails: &[Probe], group: Option<&str>) {
    let expand = |name: &str| match group {
        Some(g) => name.replace("${asg}", g),
        None => name.to_string(),
    };
    for f in faults {
        let Some(alarm) = f.fault.alarm() else { continue };
        for g in guardrails {
            if let ProbeKind::Alarm { alarm: watched, .. } = &g.kind
                && (*watched == alarm.value || expand(watched) == expand(&alarm.value))
            {
                d.error_help(
                    alarm.loc,
                    format!("fault `{}` forces alarm `{}`, which is also a guardrail of this experiment (line {}): the run would abort itself", f.name.value, alarm.value, g.loc.line),
                    "force an alarm that is not a guardrail (the alerting path under test), or watch it with a steady-state `alarm_fires` probe instead",
                );
            }
        }
    }
}

/// `compare`, and a tolerance relative to the control (`> control + 20`),
/// need a control: parallel mode and a metric of the experiment (`${asg}`
/// or `${experiment_target_group}`), whose control is the same query with
/// the control's names.
fn check_compare(d: &mut Decoder, env: &Environment, probes: &[Probe]) {
    for p in probes {
        let ProbeKind::Metric {
            query,
            compare,
            tolerance,
            ..
        } = &p.kind
        else {
            continue;
        };
        let what = match (compare, tolerance.against_control()) {
            (Some(_), _) => "`compare`".to_string(),
            (None, true) => format!("`{tolerance}`"),
            (None, false) => continue,
        };
        if env.mode != Mode::Parallel {
            d.error_help(
                p.loc,
                format!("`{}`: {what} needs a control, and only parallel mode has one", p.name),
                "run in `mode: parallel`, where the control is the source group (or, with `traffic`, the control copy)",
            );
        } else if !query.uses_experiment() {
            d.error_help(
                p.loc,
                format!(
                    "`{}`: {what} needs a metric of the experiment: a dimension with `${{asg}}` or `${{experiment_target_group}}`",
                    p.name
                ),
                "e.g. `dimensions: { AutoScalingGroupName: \"${asg}\" }`: the control's series is the same query with the control's names",
            );
        }
    }
}

fn check_asg_probes(d: &mut Decoder, env: &Environment, probes: &[Probe]) {
    if env.autoscaling_group.is_some() {
        return;
    }
    for p in probes {
        let uses_asg = match &p.kind {
            ProbeKind::AsgHealthy { group, .. } => group.contains("${asg}"),
            ProbeKind::Alarm { alarm, .. } | ProbeKind::AlarmFires { alarm, .. } => alarm.contains("${asg}"),
            ProbeKind::Metric { query, .. } => query.uses_asg(),
        };
        if uses_asg {
            d.error(
                p.loc,
                format!(
                    "`{}` uses `${{asg}}`, but the environment names no `autoscaling_group`",
                    p.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_environment(env: &str, alarm: &str) -> Result<Experiment, String> {
        let text = format!(
            "version: 1
name: t
hypothesis: h
environment:
  autoscaling_group: web
{env}guardrails:
  - alarm: \"{alarm}\"
faults:
  - name: stop
    action: ec2:stop-instances
    duration: 1m
"
        );
        load_str(Path::new("exp.yaml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_traffic_forms_decode_with_positions_for_their_mistakes() {
        let e = with_environment("  traffic: { share: 2.5% }\n", "pager").expect("valid");
        assert!(matches!(
            e.environment.traffic,
            Some(Traffic::Share(Spanned { value: Share(25), .. }))
        ));
        let e = with_environment(
            "  traffic: { load: { command: [k6, run, x.js], port: 8080 } }\n",
            "pager",
        )
        .expect("valid");
        match e.environment.traffic {
            Some(Traffic::Load(l)) => {
                assert_eq!(l.command, ["k6", "run", "x.js"]);
                assert_eq!(l.port, Some(8080));
            }
            other => panic!("a load form: {other:?}"),
        }
        for (env, expected) in [
            (
                "  traffic: { share: 2%, load: { command: [k6] } }\n",
                "exp.yaml:6:12: error: environment.traffic: expected exactly one of `share` or `load`",
            ),
            (
                "  traffic: { share: 60% }\n",
                "exp.yaml:6:21: error: environment.traffic.share: 60% is out of range",
            ),
            (
                "  traffic: { share: 2 }\n",
                "environment.traffic.share: `2` is not a percentage",
            ),
            ("  traffic: { load: { command: [] } }\n", "found an empty list"),
            (
                "  mode: in-place\n  traffic: { share: 2% }\n",
                "only parallel mode has copies to send traffic to",
            ),
        ] {
            let err = with_environment(env, "pager").expect_err(env);
            assert!(err.contains(expected), "{env}: {err}");
        }
    }

    #[test]
    fn copy_variables_need_the_traffic_form_that_gives_them_a_value() {
        let err = with_environment("", "${control_asg}-5xx").expect_err("no control");
        assert!(
            err.contains("exp.yaml:7:13: error: `${control_asg}` has no value in this experiment"),
            "{err}"
        );
        let err = with_environment(
            "  traffic: { load: { command: [k6] } }\n",
            "${experiment_target_group}",
        )
        .expect_err("no target groups with load");
        assert!(err.contains("it needs `environment.traffic.share`"), "{err}");
        with_environment("  traffic: { load: { command: [k6] } }\n", "${control_asg}-5xx")
            .expect("a control");
        with_environment("  traffic: { share: 1% }\n", "${load_balancer}").expect("all with share");
    }

    /// A bounded mutation test: 100 seeded mutants of each shipped
    /// experiment (lines deleted, copied, swapped, re-indented; bytes
    /// flipped; truncated; invalid UTF-8 and YAML punctuation inserted).
    /// None may panic, and every rejection points at a line and column.
    #[test]
    fn mutated_experiments_are_rejected_with_a_position_and_never_panic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("experiments/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        let mut rejected = 0;
        for (seed, file) in files.iter().enumerate() {
            let text = std::fs::read_to_string(file).expect("a shipped experiment");
            let name = file.file_name().expect("name").to_string_lossy();
            rejected += yaml::mutate::check(&name, &text, seed as u64, 100, |path, bytes| {
                load_str(path, &yaml::text(path, bytes)?)
            });
        }
        // Most mutants break the file; the test means little if none did.
        assert!(
            rejected > files.len() * 30,
            "only {rejected} mutants were rejected"
        );
    }
}
