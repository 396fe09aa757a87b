//! The experiment file's JSON Schema, built from the decoder's key tables
//! (this module is a child of the decoder so it reads them as they are) and
//! the fault registry: each `action` gets its own `params`.

use serde_json::{Value, json};

use super::*;
use crate::schema::{self, exactly_one_of, object};

/// The JSON Schema of an experiment file.
pub(crate) fn document() -> Value {
    let top = object("the experiment", TOP_KEYS)
        .key("version", schema::version(FORMAT_VERSION))
        .key(
            "name",
            schema::name("the experiment's name: at most 64 letters, digits, `-`, `_` or `.`"),
        )
        .key(
            "description",
            schema::text("one line on what the experiment does"),
        )
        .key("owner", schema::text("who owns the response to this experiment"))
        .key(
            "hypothesis",
            schema::text("what should hold while the faults are active"),
        )
        .key("environment", environment())
        .key("aws", crate::model::AwsTarget::schema())
        .key(
            "steady_state",
            schema::list(
                probe(STEADY_KEYS, "expect"),
                "checked at baseline, while the faults are active, and at recovery",
            ),
        )
        .key("guardrails", {
            let mut g = schema::list(probe(GUARD_KEYS, "threshold"), "any breach aborts the run");
            g["minItems"] = 1.into();
            g
        })
        .key("faults", {
            let mut f = schema::list(fault(), "the faults to inject, with start_after and duration");
            f["minItems"] = 1.into();
            f
        })
        .key("timing", timing())
        .key("schedule", crate::schedule::schema())
        .required(&["version", "name", "hypothesis", "guardrails", "faults"])
        .build("a gameday experiment");
    schema::document(
        "gameday experiment",
        "An experiment file of gameday (see the README's \"Experiment format\").",
        top,
    )
}

fn environment() -> Value {
    let share = schema::text_matching(
        r"^\s*[0-9]+(\.[0-9])?\s*%\s*$",
        "the share of the load balancer's requests each copy gets, e.g. `2%` (at most one decimal)",
    );
    let mut command = schema::text_list("the program and its arguments, e.g. [k6, run, load.js]");
    command["minItems"] = 1.into();
    let load = object("environment.traffic.load", LOAD_KEYS)
        .key("command", command)
        .key(
            "port",
            schema::integer(1, 65_535, "the local port the copies' traffic is forwarded to"),
        )
        .required(&["command"])
        .build("your load generator, run against both copies");
    let traffic = object("environment.traffic", TRAFFIC_KEYS)
        .key("share", share)
        .key("load", load)
        .with("oneOf", exactly_one_of(TRAFFIC_KEYS))
        .build("exactly one of `share` or `load`: a control copy and an experiment copy that see traffic");
    object("environment", ENV_KEYS)
        .key(
            "mode",
            schema::word(
                &["parallel", "in-place"],
                "parallel (default): a temporary copy; in-place: the real resources",
            ),
        )
        .key(
            "autoscaling_group",
            schema::text("the source group; parallel mode copies it"),
        )
        .key("capacity", schema::integer(1, 10_000, "the copy's capacity"))
        .key(
            "ready_timeout",
            schema::duration("how long the copy may take to be ready; default 10m"),
        )
        .key("traffic", traffic)
        .build("where the faults act: a parallel copy (default) or the real resources")
}

fn timing() -> Value {
    object("timing", TIMING_KEYS)
        .key(
            "baseline",
            schema::duration("steady state checked before injection; default 1m"),
        )
        .key(
            "recovery",
            schema::duration("how long the steady state may take to return"),
        )
        .key(
            "interval",
            schema::duration("time between checks (at least 200ms)"),
        )
        .key("max_duration", schema::duration("the whole run's limit"))
        .key(
            "max_abort_delay",
            schema::duration("the longest a breach may take to abort the run"),
        )
        .build("the phases' lengths")
}

/// A steady-state probe (`tolerance` = `expect`) or a guardrail (`threshold`).
fn probe(keys: &[&str], tolerance: &str) -> Value {
    let tolerance_doc = if tolerance == "expect" {
        "what must hold, e.g. \"< 300\", \"between 1 and 5\", \"<= baseline * 1.2\", \"within 10% of control\" (quote it)"
    } else {
        "the breach condition, e.g. \"> 50\" (quote it: a bare `>` starts a folded YAML block)"
    };
    let kinds: Vec<&str> = ["metric", "alarm", "asg_healthy", "alarm_fires"]
        .into_iter()
        .filter(|k| keys.contains(k))
        .collect();
    let asg_healthy = object("asg_healthy", ASG_HEALTHY_KEYS)
        .key(
            "at_least",
            schema::integer(0, 100_000, "at least this many healthy instances"),
        )
        .key(
            "percent",
            schema::integer(1, 100, "at least this percent of the desired capacity healthy"),
        )
        .key("group", schema::text("the group; default ${asg}"))
        .with("oneOf", exactly_one_of(&["at_least", "percent"]))
        .build("healthy in-service capacity of the group: exactly one of `at_least` or `percent`");
    let alarm_fires = object("alarm_fires", ALARM_FIRES_KEYS)
        .key("alarm", schema::text("the alarm that must fire"))
        .key(
            "within",
            schema::duration("after the first injection, at most this long"),
        )
        .key(
            "clears_within",
            schema::duration("after the rollback, at most this long"),
        )
        .required(ALARM_FIRES_KEYS)
        .build("detection: the alarm goes to ALARM within `within` and back to OK within `clears_within`");
    let compare = object("compare", COMPARE_KEYS)
        .key(
            "max_increase",
            percentage("the largest increase over the control, e.g. `20%`"),
        )
        .key(
            "max_decrease",
            percentage("the largest decrease below the control, e.g. `10%`"),
        )
        .key(
            "significance",
            json!({ "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                    "description": "the p-value threshold; default 0.05" }),
        )
        .with(
            "anyOf",
            json!([{ "required": ["max_increase"] }, { "required": ["max_decrease"] }]),
        )
        .build("the experiment copy judged against the control copy");
    object("a probe", keys)
        .key("name", schema::text("how the probe is named in reports"))
        .key("metric", metric_spec())
        .key_if_listed(
            tolerance,
            schema::text_matching(r"^\s*(<=|>=|==|<|>|between\s|within\s)", tolerance_doc),
        )
        .key(
            "datapoints",
            schema::integer(1, 100, "consecutive datapoints; default 1"),
        )
        .key_if_listed("compare", compare)
        .key(
            "missing",
            schema::word(
                &["breach", "ignore", "ok"],
                "what no new datapoint means: breach (default), ignore, ok",
            ),
        )
        .key(
            "missing_after",
            schema::duration("how long without a datapoint counts as missing"),
        )
        .key_if_listed(
            "during",
            schema::word(
                &["hold", "recover"],
                "hold (default): it must hold while faults are active; recover: it may deviate then",
            ),
        )
        .key("alarm", schema::text("a CloudWatch alarm; ALARM is a breach"))
        .key(
            "insufficient_data",
            schema::word(
                &["ok", "allow", "breach"],
                "what INSUFFICIENT_DATA means; default ok",
            ),
        )
        .key("asg_healthy", asg_healthy)
        .key_if_listed("alarm_fires", alarm_fires)
        .with("oneOf", exactly_one_of(&kinds))
        .with("if", json!({ "required": ["metric"] }))
        .with("then", json!({ "required": [tolerance] }))
        .build(&format!("exactly one of `{}`", kinds.join("`, `")))
}

/// A percentage as `compare` reads it: a number, with or without `%`.
fn percentage(doc: &str) -> Value {
    json!({
        "anyOf": [
            { "type": "number", "minimum": 0 },
            { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*%?\s*$" },
        ],
        "description": doc,
    })
}

/// One metric (`namespace`, `name`, ...) or metric math (`expression` over `metrics`).
fn metric_spec() -> Value {
    let stat = json!({
        "anyOf": [
            { "enum": STATS },
            { "type": "string", "pattern": r"^p(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$" },
        ],
        "description": "a statistic, or a percentile such as p99 or p99.9; default Average",
    });
    let stat_metric = |what: &str| {
        object(what, METRIC_KEYS)
            .key(
                "namespace",
                schema::text("the metric's namespace, e.g. AWS/ApplicationELB"),
            )
            .key("name", schema::text("the metric's name"))
            .key(
                "dimensions",
                schema::text_map("dimension names and values; ${asg} and other variables expand"),
            )
            .key("stat", stat.clone())
            .key("period", period())
            .required(&["namespace", "name"])
            .build("one CloudWatch metric")
    };
    let mut metrics = schema::open_map(
        stat_metric("a metric of metric math"),
        "each id (e.g. m1) mapped to a metric",
    );
    metrics["minProperties"] = 1.into();
    metrics["propertyNames"] = json!({ "pattern": "^[a-z][A-Za-z0-9_]*$" });
    let math = object("metric math", MATH_KEYS)
        .key(
            "expression",
            schema::text("a CloudWatch metric math expression over the ids, e.g. m1 / m2"),
        )
        .key("metrics", metrics)
        .key("period", period())
        .required(&["expression", "metrics"])
        .build("metric math over metrics");
    json!({
        "type": "object",
        "description": "one CloudWatch metric, or metric math (`expression` over `metrics`)",
        "if": { "required": ["expression"] },
        "then": math,
        "else": stat_metric("metric"),
    })
}

/// A CloudWatch period: seconds (1, 5, 10, 20, 30 or a multiple of 60) or a duration.
fn period() -> Value {
    json!({
        "anyOf": [
            { "enum": [1, 5, 10, 20, 30] },
            { "type": "integer", "minimum": 60, "multipleOf": 60 },
            { "type": "string", "pattern": schema::DURATION_PATTERN },
        ],
        "description": "seconds (1, 5, 10, 20, 30 or a multiple of 60) or a duration such as 1m; default 60",
    })
}

fn fault() -> Value {
    let actions = faults::names();
    let per_action: Vec<Value> = faults::ACTIONS
        .iter()
        .map(|def| {
            let params = (def.params)();
            // An action whose params require a key cannot be written without params.
            let needs_params = params.get("required").is_some() || params.get("oneOf").is_some();
            let mut then = json!({ "properties": { "params": params } });
            if needs_params {
                then["required"] = json!(["params"]);
            }
            json!({
                "if": { "properties": { "action": { "const": def.name } }, "required": ["action"] },
                "then": then,
            })
        })
        .collect();
    let select = object("select", SELECT_KEYS)
        .key("count", schema::integer(1, 100_000, "this many instances"))
        .key(
            "percent",
            schema::integer(1, 100, "this percent of the eligible instances"),
        )
        .with("oneOf", exactly_one_of(SELECT_KEYS))
        .build("exactly one of `count` or `percent`");
    let ids = schema::list(schema::text_matching("^i-", "an EC2 instance id"), "instance ids");
    let target = object("target", TARGET_KEYS)
        .key("tags", schema::text_map("instances with all these tags"))
        .key(
            "filters",
            schema::open_map(
                json!({ "anyOf": [
                    { "type": ["string", "number", "boolean", "null"] },
                    schema::text_list("values"),
                ] }),
                "EC2 filters, each a value or a list of values, e.g. instance-type: [t3.micro]",
            ),
        )
        .key("ids", ids)
        .key("az", schema::text("only instances in this Availability Zone"))
        .key(
            "autoscaling_group",
            schema::text("instances of this group (group faults: the group)"),
        )
        .key(
            "select",
            schema::any_of(
                vec![json!({ "const": "all" }), select],
                "which of the eligible instances: `all` (default), `{ count: N }` or `{ percent: P }`",
            ),
        )
        .key(
            "allow_empty",
            schema::boolean("no instance to target is not an error; default false"),
        )
        .build("what the fault acts on; default: the environment's instances");
    object("a fault", FAULT_KEYS)
        .key("name", schema::name("the fault's name, unique in the file"))
        .key("action", schema::word(&actions, "what the fault does"))
        .key("target", target)
        .key(
            "params",
            json!({ "description": "the action's parameters (see the README's fault table)" }),
        )
        .key(
            "duration",
            schema::duration("how long the fault stays before it is rolled back"),
        )
        .key(
            "start_after",
            schema::text_list("names of faults this one starts after"),
        )
        .required(&["name", "action"])
        .with("allOf", Value::Array(per_action))
        .build("one fault: an action, its target and params")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every key table of the decoder, the schema object at `pointer`
    /// has exactly those keys as properties.
    #[test]
    fn every_key_of_the_decoder_tables_is_a_property_of_the_schema() {
        let doc = document();
        let probe = "/properties/steady_state/items/properties";
        let tables: &[(&str, &[&str])] = &[
            ("", TOP_KEYS),
            ("/properties/aws", crate::model::AWS_TARGET_KEYS),
            ("/properties/environment", ENV_KEYS),
            ("/properties/environment/properties/traffic", TRAFFIC_KEYS),
            (
                "/properties/environment/properties/traffic/properties/load",
                LOAD_KEYS,
            ),
            ("/properties/timing", TIMING_KEYS),
            ("/properties/steady_state/items", STEADY_KEYS),
            ("/properties/guardrails/items", GUARD_KEYS),
            (&format!("{probe}/metric/else"), METRIC_KEYS),
            (&format!("{probe}/metric/then"), MATH_KEYS),
            (&format!("{probe}/compare"), COMPARE_KEYS),
            (&format!("{probe}/alarm_fires"), ALARM_FIRES_KEYS),
            (&format!("{probe}/asg_healthy"), ASG_HEALTHY_KEYS),
            ("/properties/faults/items", FAULT_KEYS),
            ("/properties/faults/items/properties/target", TARGET_KEYS),
            (
                "/properties/faults/items/properties/target/properties/select/anyOf/1",
                SELECT_KEYS,
            ),
            ("/properties/schedule", crate::schedule::SCHEDULE_KEYS),
        ];
        for (pointer, table) in tables {
            crate::schema::assert_properties(&doc, pointer, table);
        }
        // Each action's own params, from its entry in the registry.
        let per_action = doc["properties"]["faults"]["items"]["allOf"]
            .as_array()
            .expect("allOf");
        assert_eq!(per_action.len(), faults::ACTIONS.len());
        for (rule, def) in per_action.iter().zip(faults::ACTIONS) {
            assert_eq!(rule["if"]["properties"]["action"]["const"], def.name);
            assert_eq!(rule["then"]["properties"]["params"], (def.params)());
        }
    }
}
