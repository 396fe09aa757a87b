//! The schemas against the decoders, with a real validator (the `jsonschema`
//! crate): the checked-in copies are the generated ones, every shipped file
//! (and every complete file in the README) validates, what the decoder
//! refuses for a wrong key or type the schema refuses too, and no mutant of a
//! shipped file that the decoder accepts is flagged by the schema.

use std::path::{Path, PathBuf};

use marked_yaml::Node;
use serde_json::Value;

use super::{Format, REGENERATE};
use crate::yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The document as an editor's YAML language server sees it (YAML 1.2 core
/// schema): plain `true`, `null`, `3` and `2.5` are typed, quoted scalars are text.
fn to_json(node: &Node) -> Value {
    match node {
        Node::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
        Node::Sequence(s) => Value::Array(s.iter().map(to_json).collect()),
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                return Value::String(text.to_string());
            }
            match text {
                "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
                "true" | "True" | "TRUE" => return Value::Bool(true),
                "false" | "False" | "FALSE" => return Value::Bool(false),
                _ => {}
            }
            let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                if let Ok(i) = text.parse::<i64>() {
                    return Value::from(i);
                }
                if let Ok(u) = text.parse::<u64>() {
                    return Value::from(u);
                }
            }
            let float = digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
                && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                && digits.chars().any(|c| c.is_ascii_digit());
            if float
                && let Ok(f) = text.parse::<f64>()
                && let Some(n) = serde_json::Number::from_f64(f)
            {
                return Value::Number(n);
            }
            Value::String(text.to_string())
        }
    }
}

struct Checker {
    format: Format,
    validator: jsonschema::Validator,
}

impl Checker {
    fn new(format: Format) -> Checker {
        let schema: Value = serde_json::from_str(&format.text()).expect("the schema is JSON");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{}: not a valid JSON Schema: {e}", format.file_name());
        }
        let validator = jsonschema::validator_for(&schema).expect("a schema the validator compiles");
        Checker { format, validator }
    }

    /// The schema's complaints about `text` (YAML), one per line.
    fn problems(&self, text: &str) -> Vec<String> {
        let node = yaml::parse(Path::new("t.yaml"), text).expect("YAML");
        let doc = to_json(&node);
        self.validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// Whether gameday's own decoder accepts `text` as if read from `path`.
    fn decoder_accepts(&self, path: &Path, text: &str) -> Result<(), String> {
        let result = match self.format {
            Format::Experiment => crate::experiment::load_str(path, text).map(drop),
            Format::Policy => crate::policy::load_str(path, text).map(drop),
            Format::Suite => crate::suite::load_str(path, text).map(drop),
        };
        result.map_err(|e| e.to_string())
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("a shipped folder")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// Every shipped file with its format.
fn shipped() -> Vec<(Format, PathBuf)> {
    let mut out: Vec<_> = yaml_files("experiments")
        .into_iter()
        .map(|p| (Format::Experiment, p))
        .collect();
    out.extend(yaml_files("suites").into_iter().map(|p| (Format::Suite, p)));
    out.push((Format::Policy, root().join("safety/policy.yaml")));
    out
}

#[test]
fn the_checked_in_schemas_are_the_generated_ones() {
    for f in Format::ALL {
        let path = root().join("schema").join(f.file_name());
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == f.text(),
            "schema/{} differs from what the decoders generate: regenerate it with `{REGENERATE}` and commit it",
            f.file_name()
        );
    }
}

#[test]
fn every_shipped_file_names_its_schema_and_validates_against_it() {
    let files = shipped();
    assert!(files.len() >= 7, "{files:?}");
    for (format, path) in files {
        let checker = Checker::new(format);
        let text = std::fs::read_to_string(&path).expect("a shipped file");
        let first = text.lines().next().unwrap_or_default();
        let expected = format!("# yaml-language-server: $schema=../schema/{}", format.file_name());
        assert_eq!(
            first,
            expected,
            "{}: the first line names the schema",
            path.display()
        );
        checker
            .decoder_accepts(&path, &text)
            .unwrap_or_else(|e| panic!("{}: the decoder refuses it: {e}", path.display()));
        let problems = checker.problems(&text);
        assert!(
            problems.is_empty(),
            "{} is valid for gameday but not for schema/{}:\n{}",
            path.display(),
            format.file_name(),
            problems.join("\n")
        );
    }
}

/// The README's YAML blocks that are whole files (they start with
/// `version:` after comments): every one the decoder accepts validates.
#[test]
fn the_readme_files_that_gameday_accepts_validate_too() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    let mut checked = 0;
    for block in blocks {
        let first_key = block
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap_or_default();
        if !first_key.starts_with("version:") {
            continue;
        }
        let format = if block.contains("\nfaults:") {
            Format::Experiment
        } else if block.contains("\nexperiments:") {
            Format::Suite
        } else if block.contains("\nregions:") {
            Format::Policy
        } else {
            continue;
        };
        let checker = Checker::new(format);
        // Suites name experiments relative to their folder: read from suites/.
        let path = root().join("suites/readme.yaml");
        if checker.decoder_accepts(&path, &block).is_err() {
            continue;
        }
        let problems = checker.problems(&block);
        assert!(
            problems.is_empty(),
            "a README example gameday accepts fails schema/{}:\n{block}\n{}",
            format.file_name(),
            problems.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} README examples were checked");
}

/// What the decoder refuses for an unknown key or a wrong type, the schema
/// refuses too, so an editor flags it before `gameday validate` does.
#[test]
fn wrong_keys_and_types_the_decoder_refuses_are_refused_by_the_schema() {
    let experiment = std::fs::read_to_string(root().join("experiments/shop-web-lose-a-third.yaml"))
        .expect("a shipped experiment");
    let policy = std::fs::read_to_string(root().join("safety/policy.yaml")).expect("the policy");
    let suite = std::fs::read_to_string(root().join("suites/shop-web-readiness.yaml")).expect("a suite");
    let cases: Vec<(Format, &str, String)> = vec![
        (
            Format::Experiment,
            "an unknown top-level key",
            format!("{experiment}hypotesis: typo\n"),
        ),
        (
            Format::Experiment,
            "a wrong version",
            experiment.replace("version: 1", "version: 2"),
        ),
        (
            Format::Experiment,
            "an unknown action",
            experiment.replace("action: ec2:stop-instances", "action: ec2:stop-instance"),
        ),
        (
            Format::Experiment,
            "params of another action",
            experiment.replace(
                "action: ec2:stop-instances",
                "action: ec2:stop-instances\n    params: { to: 1 }",
            ),
        ),
        (
            Format::Experiment,
            "a duration without a unit",
            experiment.replace("duration: 20s", "duration: 20"),
        ),
        (
            Format::Experiment,
            "a text where a list belongs",
            experiment.replace(
                "guardrails:\n  - alarm: shop-web-5xx-high",
                "guardrails: shop-web-5xx-high",
            ),
        ),
        (
            Format::Experiment,
            "a force-alarm without params",
            experiment.replace("action: ec2:stop-instances", "action: cloudwatch:force-alarm"),
        ),
        (
            Format::Policy,
            "an unknown key",
            format!("{policy}max_faults: 3\n"),
        ),
        (
            Format::Policy,
            "a flag that is not a boolean",
            policy.replace("require_guardrails: true", "require_guardrails: maybe"),
        ),
        (Format::Suite, "an unknown key", format!("{suite}retries: 2\n")),
        (
            Format::Suite,
            "an unknown stop_on",
            suite.replace("stop_on: abort", "stop_on: sometimes"),
        ),
        (
            Format::Suite,
            "a concurrency out of range",
            suite.replace("concurrency: 1", "concurrency: 0"),
        ),
    ];
    for (format, what, text) in cases {
        let checker = Checker::new(format);
        let path = match format {
            Format::Suite => root().join("suites/case.yaml"),
            _ => root().join("case.yaml"),
        };
        assert!(
            checker.decoder_accepts(&path, &text).is_err(),
            "{what}: the case must be one the decoder refuses:\n{text}"
        );
        assert!(
            !checker.problems(&text).is_empty(),
            "{what}: the decoder refuses it but schema/{} accepts it:\n{text}",
            format.file_name()
        );
    }
}

/// The seeded mutants of every shipped file (see `yaml::mutate`): none that
/// the decoder accepts is flagged by the schema, so an editor never marks a
/// file gameday would run.
#[test]
fn no_mutant_the_decoder_accepts_is_flagged_by_the_schema() {
    let mut accepted = 0;
    for (seed, (format, path)) in shipped().into_iter().enumerate() {
        let checker = Checker::new(format);
        let text = std::fs::read_to_string(&path).expect("a shipped file");
        for (what, bytes) in yaml::mutate::mutants(&text, 1000 + seed as u64, 100) {
            let Ok(mutant) = String::from_utf8(bytes) else {
                continue;
            };
            if checker.decoder_accepts(&path, &mutant).is_err() {
                continue;
            }
            accepted += 1;
            let problems = checker.problems(&mutant);
            assert!(
                problems.is_empty(),
                "{}, {what}: gameday accepts the mutant, schema/{} flags it:\n{}",
                path.display(),
                format.file_name(),
                problems.join("\n")
            );
        }
    }
    // Some mutants (a comment line deleted, lines swapped) stay valid; the
    // test means little if none did.
    assert!(accepted > 20, "only {accepted} mutants were accepted");
}
