//! The suite file's JSON Schema, built from the decoder's key tables (this
//! module is a child of the decoder so it reads them as they are).

use serde_json::Value;

use super::*;
use crate::schema::{self, object};

/// The JSON Schema of a suite file.
pub(crate) fn document() -> Value {
    let path =
        || schema::text("an experiment file or a pattern (`*`, `?`), relative to the suite file's folder");
    let entry = object("an entry of experiments", ENTRY_KEYS)
        .key("path", path())
        .key(
            "role",
            schema::word(
                &ROLES,
                "blocking (default): must pass for GO; advisory: reported and scored only",
            ),
        )
        .key("aws", crate::model::AwsTarget::schema())
        .required(&["path"])
        .build("an experiment, its role, and where it acts");
    let mut experiments = schema::list(
        schema::any_of(vec![path(), entry], "a path, or `{ path, role, aws }`"),
        "the experiments, in order",
    );
    experiments["minItems"] = 1.into();
    let top = object("the suite", SUITE_KEYS)
        .key("version", schema::version(FORMAT_VERSION))
        .key(
            "name",
            schema::name("the suite's name: at most 64 letters, digits, `-`, `_` or `.`"),
        )
        .key("description", schema::text("one line on what the suite decides"))
        .key("owner", schema::text("who owns the suite"))
        .key("experiments", experiments)
        .key(
            "concurrency",
            schema::integer(
                1,
                MAX_CONCURRENCY,
                "experiments run at once (never two on a shared target); default 1",
            ),
        )
        .key(
            "stop_on",
            schema::word(
                &STOP_ON,
                "after which verdict no further experiment starts: abort (default), failure, never",
            ),
        )
        .key(
            "go_no_go",
            object("go_no_go", GO_KEYS)
                .key(
                    "min_score",
                    schema::integer(
                        0,
                        100,
                        "the lowest score that is GO (and every blocking experiment passed)",
                    ),
                )
                .build("when the scorecard says GO"),
        )
        .key_if_listed("schedule", crate::schedule::schema())
        .required(&["version", "name", "experiments"])
        .build("a gameday suite");
    schema::document(
        "gameday suite",
        "A suite file of gameday: experiments run as a readiness gate (see the README's \"Suites\").",
        top,
    )
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
            ("", SUITE_KEYS),
            ("/properties/experiments/items/anyOf/1", ENTRY_KEYS),
            (
                "/properties/experiments/items/anyOf/1/properties/aws",
                crate::model::AWS_TARGET_KEYS,
            ),
            ("/properties/go_no_go", GO_KEYS),
        ];
        for (pointer, table) in tables {
            crate::schema::assert_properties(&doc, pointer, table);
        }
    }
}
