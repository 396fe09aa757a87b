//! The safety policy's JSON Schema, built from the decoder's key tables (this
//! module is a child of the decoder so it reads them as they are).

use serde_json::{Value, json};

use super::*;
use crate::schema::{self, object};

/// The JSON Schema of a policy file.
pub(crate) fn document() -> Value {
    let allowed = |item: Value, doc: &str| {
        let mut items = schema::list(item, "what is allowed");
        items["minItems"] = 1.into();
        schema::any_of(vec![json!({ "const": "any" }), items], doc)
    };
    let account = json!({
        "anyOf": [
            { "type": "string", "pattern": "^[0-9]{12}$" },
            { "type": "integer", "minimum": 0, "maximum": 999_999_999_999u64 },
        ],
        "description": "a 12-digit AWS account id",
    });
    let actions = faults::names();
    let top = object("the policy", TOP_KEYS)
        .key("version", schema::version(POLICY_VERSION))
        .key(
            "regions",
            allowed(
                schema::text("a region"),
                "the regions runs may act in: `any` or a list",
            ),
        )
        .key(
            "accounts",
            allowed(
                account,
                "the accounts runs may act in: `any` (default) or a list of ids",
            ),
        )
        .key(
            "actions",
            schema::list(
                schema::word(&actions, "a fault action"),
                "the fault actions runs may use",
            ),
        )
        .key(
            "protected_tags",
            schema::text_map("resources with any of these tags are never targets"),
        )
        .key("blast_radius", blast_radius())
        .key("in_place", in_place())
        .key("parallel", parallel())
        .key("windows", windows())
        .key(
            "require_guardrails",
            schema::boolean("refuse experiments without guardrails"),
        )
        .key(
            "max_experiment_duration",
            schema::duration("the longest an experiment's faults may last"),
        )
        .key("locks", locks())
        .key("notifications", notifications())
        .key(
            "halt",
            object("halt", HALT_KEYS)
                .key(
                    "parameter",
                    schema::text_matching(
                        "^[A-Za-z0-9_./-]{1,1011}$",
                        "the SSM parameter of the kill switch; default /gameday/halt; not beginning with aws or ssm",
                    ),
                )
                .required(HALT_KEYS)
                .build("the kill switch (`gameday halt`, `gameday resume`)"),
        )
        .required(&[
            "version",
            "regions",
            "actions",
            "protected_tags",
            "blast_radius",
            "in_place",
            "require_guardrails",
            "max_experiment_duration",
        ])
        .build("a gameday safety policy");
    schema::document(
        "gameday safety policy",
        "The safety policy of gameday (see safety/README.md).",
        top,
    )
}

fn blast_radius() -> Value {
    object("blast_radius", BLAST_KEYS)
        .key(
            "max_instances_per_fault",
            schema::integer(1, 100_000, "the most instances one fault may act on"),
        )
        .key(
            "max_percent_of_group",
            schema::integer(1, 100, "the largest share of a group one fault may act on"),
        )
        .required(BLAST_KEYS)
        .build("how much one fault may hit")
}

fn in_place() -> Value {
    object("in_place", IN_PLACE_KEYS)
        .key(
            "allowed",
            schema::boolean("whether in-place runs are allowed at all"),
        )
        .key(
            "requires_approval",
            schema::boolean("in-place runs need `--approve HASH` of their plan"),
        )
        .key(
            "allow_terminate",
            schema::boolean("whether ec2:terminate-instances may run in place"),
        )
        .required(IN_PLACE_KEYS)
        .build("runs against the real resources")
}

fn parallel() -> Value {
    let share = schema::text_matching(
        r"^\s*[0-9]+(\.[0-9])?\s*%\s*$",
        "the largest `environment.traffic.share` an experiment may ask for; default 5%",
    );
    object("parallel", PARALLEL_KEYS)
        .key(
            "requires_approval",
            schema::boolean("parallel runs need `--approve HASH` of their plan"),
        )
        .key("max_traffic_share", share)
        .key(
            "requires_approval_for_traffic",
            schema::boolean("runs whose copies get real traffic need an approval"),
        )
        .required(&["requires_approval"])
        .build("runs against temporary copies")
}

fn windows() -> Value {
    let day_pattern = DAYS
        .iter()
        .map(|(name, _)| {
            name.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|");
    let mut days = schema::list(
        schema::text_matching(
            &format!("^({day_pattern})$"),
            "mon, tue, wed, thu, fri, sat or sun",
        ),
        "the days of the window",
    );
    days["minItems"] = 1.into();
    let window = object("a window", WINDOW_KEYS)
        .key("days", days)
        .key(
            "hours",
            schema::text_matching(
                r"^\s*[0-9]{1,2}:[0-9]{2}\s*-\s*[0-9]{1,2}:[0-9]{2}\s*$",
                "HH:MM-HH:MM, start before end, e.g. 09:00-17:00 or 00:00-24:00",
            ),
        )
        .required(WINDOW_KEYS)
        .build("days and hours when runs may start");
    let date = |doc: &str| schema::text_matching(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", doc);
    let freeze = object("a freeze", FREEZE_KEYS)
        .key("from", date("the first frozen day, YYYY-MM-DD"))
        .key("to", date("the last frozen day, YYYY-MM-DD"))
        .key("reason", schema::text("why, shown when a run is refused"))
        .required(&["from", "to"])
        .build("frozen days");
    object("windows", WINDOWS_KEYS)
        .key(
            "time_zone",
            schema::text("an IANA time zone the windows are read in; default UTC"),
        )
        .key(
            "allowed",
            schema::list(window, "when runs may start; none listed: any time"),
        )
        .key(
            "freeze",
            schema::list(
                schema::any_of(vec![date("a frozen day, YYYY-MM-DD"), freeze], "a day or a range"),
                "days when no run may start",
            ),
        )
        .build("when runs may start")
}

fn locks() -> Value {
    object("locks", LOCKS_KEYS)
        .key(
            "table",
            json!({ "type": ["string", "number"], "pattern": "^[A-Za-z0-9_.-]{3,255}$",
                    "description": "the DynamoDB lease table (gameday locks create-table TABLE)" }),
        )
        .key(
            "ttl",
            schema::duration("how long a dead run keeps other runs out, 10s to 1h; default 2m"),
        )
        .required(&["table"])
        .build("leases in a DynamoDB table, so runs on two machines never overlap")
}

fn notifications() -> Value {
    object("notifications", NOTIFICATIONS_KEYS)
        .key(
            "sns_topic",
            schema::text_matching(
                "^arn:[^:]+:sns:[^:]+:[^:]+:[^:]+$",
                "the SNS topic told of every start, abort, end and escalation",
            ),
        )
        .key(
            "event_bus",
            schema::text_matching(
                "^(arn:[^:]+:events:[^:]*:[^:]*:event-bus/.+|[A-Za-z0-9._/-]+)$",
                "the EventBridge bus (a name such as `default`, or its ARN) given the same events",
            ),
        )
        .with("minProperties", 1.into())
        .build("where runs tell people what they do (see the README's Notifications)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every key table of the decoder, the schema object at `pointer`
    /// has exactly those keys as properties.
    #[test]
    fn every_key_of_the_decoder_tables_is_a_property_of_the_schema() {
        let doc = document();
        let tables: &[(&str, &[&str])] = &[
            ("", TOP_KEYS),
            ("/properties/locks", LOCKS_KEYS),
            ("/properties/notifications", NOTIFICATIONS_KEYS),
            ("/properties/halt", HALT_KEYS),
            ("/properties/blast_radius", BLAST_KEYS),
            ("/properties/in_place", IN_PLACE_KEYS),
            ("/properties/parallel", PARALLEL_KEYS),
            ("/properties/windows", WINDOWS_KEYS),
            ("/properties/windows/properties/allowed/items", WINDOW_KEYS),
            ("/properties/windows/properties/freeze/items/anyOf/1", FREEZE_KEYS),
        ];
        for (pointer, table) in tables {
            crate::schema::assert_properties(&doc, pointer, table);
        }
    }
}
