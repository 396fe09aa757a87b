//! JSON Schema pieces for the YAML file formats, for editors
//! (yaml-language-server) to complete and check experiment, suite and policy
//! files as they are typed.
//!
//! The decoders are hand-written (they keep a position for every node), so no
//! serde type could derive a schema. Instead each decoder module has a
//! `schema` child module that builds its part from the decoder's own key
//! tables with [`object`]: a key in a table is always a property of the
//! schema (one without a described type accepts any value), and a property
//! described for a key the table lacks fails the tests. `gameday schema`
//! prints the documents; `schema/*.schema.json` are their checked-in copies.
//!
//! The schema never rejects a file the decoder accepts (the tests check the
//! shipped examples and mutants of them); it cannot express every rule the
//! decoder checks (fault names in `start_after`, cycles, time zones), so a
//! file it accepts may still be refused by `gameday validate`, with a line
//! and column.

use serde_json::{Map, Value, json};

/// The JSON Schema dialect the documents are written in: draft-07, the one
/// yaml-language-server and most editors support fully.
pub const DIALECT: &str = "http://json-schema.org/draft-07/schema#";

/// A duration as `yaml::parse_duration` reads it: `500ms`, `30s`, `5m`,
/// `1h30m` (a unit after every number; a bare number is refused).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+(ms|s|m|h))+\s*$";

/// A whole document: the dialect, a title, and the top-level object.
pub fn document(title: &str, description: &str, top: Value) -> Value {
    let mut doc = Map::new();
    doc.insert("$schema".into(), DIALECT.into());
    doc.insert("title".into(), title.into());
    doc.insert("description".into(), description.into());
    let Value::Object(top) = top else {
        panic!("the top of a document is an object schema")
    };
    doc.extend(top);
    Value::Object(doc)
}

/// A text value, as `Decoder::string` reads it: non-empty, and a number or
/// `true`/`false` written bare is taken as its text.
pub fn text(doc: &str) -> Value {
    json!({ "type": ["string", "number", "boolean"], "minLength": 1, "description": doc })
}

/// A text value matching `pattern` (a rule the decoder checks on the text).
pub fn text_matching(pattern: &str, doc: &str) -> Value {
    json!({ "type": "string", "pattern": pattern, "description": doc })
}

/// A name that goes into file and resource names, as `Decoder::check_name`
/// checks it: at most 64 letters, digits, `-`, `_` or `.`.
pub fn name(doc: &str) -> Value {
    json!({
        "type": ["string", "number", "boolean"],
        "pattern": "^[A-Za-z0-9._-]{1,64}$",
        "description": doc,
    })
}

/// The format's `version`, which must be `expected`.
pub fn version(expected: u64) -> Value {
    json!({ "const": expected, "description": format!("the file format's version: {expected}") })
}

/// One of a closed set of words.
pub fn word(allowed: &[&str], doc: &str) -> Value {
    json!({ "enum": allowed, "description": doc })
}

/// A duration such as `30s`, `5m` or `1h30m`.
pub fn duration(doc: &str) -> Value {
    json!({ "type": "string", "pattern": DURATION_PATTERN, "description": doc })
}

/// A whole number in `min..=max`.
pub fn integer(min: u64, max: u64, doc: &str) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max, "description": doc })
}

/// `true` or `false`.
pub fn boolean(doc: &str) -> Value {
    json!({ "type": "boolean", "description": doc })
}

/// A list of `items`.
pub fn list(items: Value, doc: &str) -> Value {
    json!({ "type": "array", "items": items, "description": doc })
}

/// A list of text values.
pub fn text_list(doc: &str) -> Value {
    list(text("one item"), doc)
}

/// A mapping of names the user chooses to single values (tags, dimensions):
/// `Decoder::string_map` takes any scalar, an empty one included.
pub fn text_map(doc: &str) -> Value {
    json!({
        "type": "object",
        "additionalProperties": { "type": ["string", "number", "boolean", "null"] },
        "description": doc,
    })
}

/// A mapping of names the user chooses to values of `schema`.
pub fn open_map(schema: Value, doc: &str) -> Value {
    json!({ "type": "object", "additionalProperties": schema, "description": doc })
}

/// Any of the `schemas` (e.g. `all` or a mapping).
pub fn any_of(schemas: Vec<Value>, doc: &str) -> Value {
    json!({ "anyOf": schemas, "description": doc })
}

/// The schema of a mapping checked by `Decoder::map(node, what, keys)`,
/// built from that same `keys` table.
pub fn object(what: &str, keys: &[&str]) -> Object {
    Object {
        what: what.to_string(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        props: Map::new(),
        required: Vec::new(),
        extra: Map::new(),
    }
}

/// A mapping's schema under construction; see [`object`].
#[derive(Debug)]
pub struct Object {
    what: String,
    keys: Vec<String>,
    props: Map<String, Value>,
    required: Vec<String>,
    extra: Map<String, Value>,
}

impl Object {
    /// Describes `key`. Panics when the decoder's table has no such key: the
    /// schema would allow what the decoder refuses (the tests build every
    /// schema, so this fails there, never for a user).
    pub fn key(mut self, key: &str, schema: Value) -> Self {
        assert!(
            self.keys.iter().any(|k| k == key),
            "the schema describes `{key}` in {}, but the decoder's key table has no such key",
            self.what
        );
        self.props.insert(key.to_string(), schema);
        self
    }

    /// Describes `key` when the decoder's table lists it, and does nothing
    /// otherwise: for tables that differ by section (a steady-state probe
    /// takes `expect`, a guardrail `threshold`) and for a block two formats
    /// may share.
    pub fn key_if_listed(self, key: &str, schema: Value) -> Self {
        if self.keys.iter().any(|k| k == key) {
            self.key(key, schema)
        } else {
            self
        }
    }

    /// Keys the decoder requires.
    pub fn required(mut self, keys: &[&str]) -> Self {
        for k in keys {
            assert!(
                self.keys.iter().any(|t| t == k),
                "`{k}` is required in {}, but the decoder's key table has no such key",
                self.what
            );
            self.required.push(k.to_string());
        }
        self
    }

    /// Another schema keyword (`oneOf`, `allOf`, `if`, ...) on the mapping.
    pub fn with(mut self, keyword: &str, value: Value) -> Self {
        self.extra.insert(keyword.to_string(), value);
        self
    }

    /// The finished schema: every key of the table is a property, and no
    /// other key is allowed.
    pub fn build(self, doc: &str) -> Value {
        let mut props = Map::new();
        for k in &self.keys {
            let schema = self.props.get(k).cloned().unwrap_or_else(|| json!({}));
            props.insert(k.clone(), schema);
        }
        let mut m = Map::new();
        m.insert("type".into(), "object".into());
        m.insert("description".into(), doc.into());
        m.insert("properties".into(), Value::Object(props));
        m.insert("additionalProperties".into(), false.into());
        if !self.required.is_empty() {
            m.insert("required".into(), self.required.into());
        }
        m.extend(self.extra);
        Value::Object(m)
    }
}

/// Requires exactly one of `keys` (the decoder's "expected exactly one of").
pub fn exactly_one_of(keys: &[&str]) -> Value {
    Value::Array(keys.iter().map(|k| json!({ "required": [k] })).collect())
}

/// Asserts that the schema object at `pointer` in `doc` has exactly the keys
/// of `table` as its properties and allows no other (the decoders' tests).
#[cfg(test)]
pub(crate) fn assert_properties(doc: &Value, pointer: &str, table: &[&str]) {
    let object = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at `{pointer}`"));
    assert_eq!(object["additionalProperties"], false, "`{pointer}`");
    let mut props: Vec<&str> = object["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties at `{pointer}`"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = table.to_vec();
    props.sort_unstable();
    keys.sort_unstable();
    assert_eq!(
        props, keys,
        "the properties at `{pointer}` against the decoder's key table"
    );
}
