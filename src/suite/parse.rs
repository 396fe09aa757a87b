//! Decoding and validating a suite file, with every problem reported at its
//! line and column, in the manner of the experiment decoder. The experiments
//! it lists are found on disk here (a path or pattern that matches nothing is
//! an error at its position); they are decoded as experiments by whoever runs
//! or validates the suite, so their own errors name their own files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use marked_yaml::Node;

use super::*;
use crate::yaml::{self, Decoder, FileErrors};

mod schema;
pub(crate) use self::schema::document;

/// Why a suite file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read suite {}: {source}", path.display())]
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

/// The keys of a suite file's top level.
pub const SUITE_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "owner",
    "experiments",
    "concurrency",
    "stop_on",
    "go_no_go",
    "schedule",
];
const ENTRY_KEYS: &[&str] = &["path", "role", "aws"];
const GO_KEYS: &[&str] = &["min_score"];
const ROLES: [&str; 2] = ["blocking", "advisory"];
const STOP_ON: [&str; 3] = ["abort", "failure", "never"];
/// More experiments at once than this is a typo, not a plan (and each run
/// holds its own connections and timers).
const MAX_CONCURRENCY: u64 = 16;

/// Reads and validates a suite file.
pub fn load(path: &Path) -> Result<Suite, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(load_str(path, &yaml::text(path, bytes)?)?)
}

/// Validates suite text as if read from `path` (its experiments are looked
/// up relative to `path`'s folder).
pub fn load_str(path: &Path, text: &str) -> Result<Suite, FileErrors> {
    let root = yaml::parse(path, text)?;
    let mut d = Decoder::new();
    let suite = decode(&mut d, &root, path, text);
    d.finish(path)?;
    // `decode` returns None only after recording a diagnostic.
    Ok(suite.expect("a suite that decoded without diagnostics"))
}

fn decode(d: &mut Decoder, root: &Node, path: &Path, text: &str) -> Option<Suite> {
    let top = d
        .map(root, "the suite", SUITE_KEYS)?
        .at(Loc { line: 1, column: 1 });
    d.format_version(&top, "the suite", FORMAT_VERSION);
    let name = d
        .required(&top, "name", "the suite")
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
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = d
        .required(&top, "experiments", "the suite")
        .and_then(|n| decode_entries(d, n, base, path));
    let concurrency = match top.get("concurrency") {
        Some(n) => d
            .integer(n, "concurrency", 1, MAX_CONCURRENCY)
            .map(|v| v.value as u32),
        None => Some(1),
    };
    let stop_on = match top.get("stop_on") {
        Some(n) => one_of(d, n, "stop_on", &STOP_ON).map(|v| match v {
            "failure" => StopOn::Failure,
            "never" => StopOn::Never,
            _ => StopOn::Abort,
        }),
        None => Some(StopOn::Abort),
    };
    let go_no_go = match top.get("go_no_go") {
        Some(n) => d.map(n, "go_no_go", GO_KEYS).map(|m| GoNoGo {
            min_score: m
                .get("min_score")
                .and_then(|n| d.integer(n, "go_no_go.min_score", 0, 100))
                .map(|v| v.value as u32),
        }),
        None => Some(GoNoGo::default()),
    };
    // The block means what it means in an experiment: one decoder for both.
    let schedule = match top.get("schedule") {
        Some(n) => crate::schedule::decode_schedule(d, n).map(Some),
        None => Some(None),
    };
    Some(Suite {
        file: path.to_path_buf(),
        source: text.to_string(),
        name: name?.value,
        description,
        owner,
        entries: entries?,
        concurrency: concurrency?,
        stop_on: stop_on?,
        go_no_go: go_no_go?,
        schedule: schedule?,
    })
}

fn decode_entries(d: &mut Decoder, node: &Node, base: &Path, suite_file: &Path) -> Option<Vec<Entry>> {
    let items = d.list(node, "experiments")?;
    if items.is_empty() {
        d.error_help(
            yaml::loc(node),
            "`experiments` is empty: a suite runs at least one experiment",
            "add one, e.g. `- { path: ../experiments/my-experiment.yaml, role: blocking }`",
        );
        return None;
    }
    let me = glob::normalize(suite_file);
    let mut seen: HashMap<(PathBuf, AwsTarget), usize> = HashMap::new();
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let what = format!("experiments[{}]", i + 1);
        let (path, role, aws) = match item {
            Node::Scalar(_) => (
                d.string(item, &format!("{what}.path")),
                Some(Role::Blocking),
                Some(AwsTarget::default()),
            ),
            _ => match d.map(item, &what, ENTRY_KEYS) {
                Some(m) => {
                    let path = d
                        .required(&m, "path", &what)
                        .and_then(|n| d.string(n, &format!("{what}.path")));
                    let role = match m.get("role") {
                        Some(n) => one_of(d, n, &format!("{what}.role"), &ROLES).map(|r| match r {
                            "advisory" => Role::Advisory,
                            _ => Role::Blocking,
                        }),
                        None => Some(Role::Blocking),
                    };
                    let aws = match m.get("aws") {
                        Some(n) => AwsTarget::decode(d, n, &format!("{what}.aws")),
                        None => Some(AwsTarget::default()),
                    };
                    (path, role, aws)
                }
                None => (None, None, None),
            },
        };
        // The path is looked up even when the role is wrong: every problem at once.
        let Some(path) = path else {
            ok = false;
            continue;
        };
        let files: Vec<PathBuf> = glob::expand(base, &path.value)
            .into_iter()
            .filter(|f| *f != me)
            .collect();
        if files.is_empty() {
            let kind = if glob::is_pattern(&path.value) {
                "the pattern matches no file"
            } else {
                "no such file"
            };
            d.error_help(
                path.loc,
                format!("{what}.path `{}`: {kind}", path.value),
                format!(
                    "paths and patterns (`*`, `?`) are relative to the suite file's folder, `{}`",
                    base.display()
                ),
            );
            ok = false;
            continue;
        }
        // The same file may run again elsewhere (another `aws:` role or region).
        let here = aws.clone().unwrap_or_default();
        for f in &files {
            if let Some(line) = seen.get(&(f.clone(), here.clone())) {
                d.error_help(
                    path.loc,
                    format!(
                        "{what}.path `{}`: `{}` is already in the suite",
                        path.value,
                        f.display()
                    ),
                    format!("it was listed on line {line}; an experiment runs once per suite and place (give each its own `aws:` role or region to run it in several)"),
                );
                ok = false;
            } else {
                seen.insert((f.clone(), here.clone()), path.loc.line);
            }
        }
        let (Some(role), Some(aws)) = (role, aws) else {
            ok = false;
            continue;
        };
        out.push(Entry {
            loc: yaml::loc(item),
            path,
            role,
            files,
            aws,
        });
    }
    ok.then_some(out)
}

/// A value from a closed set, with a suggestion for a near miss.
fn one_of<'a>(d: &mut Decoder, node: &Node, what: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let v = d.string(node, what)?;
    if let Some(hit) = allowed.iter().find(|a| **a == v.value) {
        return Some(hit);
    }
    let help = match yaml::did_you_mean(&v.value, allowed.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? expected one of: {}", allowed.join(", ")),
        None => format!("expected one of: {}", allowed.join(", ")),
    };
    d.error_help(v.loc, format!("{what}: unknown value `{}`", v.value), help);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("suites")).unwrap();
        std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
        for f in ["a.yaml", "b.yaml", "c.yaml"] {
            std::fs::write(dir.path().join("experiments").join(f), "x").unwrap();
        }
        dir
    }

    #[test]
    fn a_suite_decodes_with_its_defaults_and_patterns() {
        let dir = folder();
        let file = dir.path().join("suites/s.yaml");
        let s = load_str(
            &file,
            "version: 1\nname: ready\nexperiments:\n  - ../experiments/a.yaml\n  - { path: \"../experiments/[bc]*.yaml\", role: advisory }\n",
        );
        // `[` is not a wildcard here: the second entry matches no file.
        let e = s.unwrap_err().to_string();
        assert!(e.contains("s.yaml:5:13: error: experiments[2].path"), "{e}");
        assert!(e.contains("the pattern matches no file"), "{e}");
        let s = load_str(
            &file,
            "version: 1\nname: ready\nexperiments:\n  - ../experiments/a.yaml\n  - { path: ../experiments/?.yaml, role: advisory }\n",
        );
        let e = s.unwrap_err().to_string();
        assert!(
            e.contains("s.yaml:5:13: error: experiments[2].path `../experiments/?.yaml`: ")
                && e.contains("a.yaml` is already in the suite"),
            "{e}"
        );
        let s = load_str(
            &file,
            "version: 1\nname: ready\nexperiments:\n  - ../experiments/a.yaml\n  - { path: \"../experiments/[!a]*\", role: advisory }\n  - { path: ../experiments/b*.yaml, role: advisory }\n  - path: ../experiments/c.yaml\n",
        );
        assert!(s.is_err());
        let s = load_str(
            &file,
            "version: 1\nname: ready\nexperiments:\n  - ../experiments/a.yaml\n  - { path: ../experiments/b*.yaml, role: advisory }\n  - path: ../experiments/c.yaml\n",
        )
        .expect("valid");
        assert_eq!(s.concurrency, 1);
        assert_eq!(s.stop_on, StopOn::Abort);
        assert_eq!(s.go_no_go.min_score, None);
        let m = s.experiments();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].file, dir.path().join("experiments/a.yaml"));
        assert_eq!(m[1].role, Role::Advisory);
        assert_eq!(m[2].role, Role::Blocking);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let dir = folder();
        let file = dir.path().join("suites/s.yaml");
        let e = load_str(
            &file,
            "version: 2\nname: bad name\nexperimnts: []\nexperiments:\n  - { path: ../experiments/a.yaml, role: blockng }\n  - { pth: x }\n  - ../experiments/none-*.yaml\nconcurrency: 0\nstop_on: abrt\ngo_no_go: { min_score: 101, max: 1 }\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "s.yaml:1:10: error: unsupported suite format version 2",
            "s.yaml:2:7: error: name `bad name`",
            "s.yaml:3:1: error: unknown key `experimnts` in the suite\n  help: did you mean `experiments`?",
            "s.yaml:5:42: error: experiments[1].role: unknown value `blockng`\n  help: did you mean `blocking`?",
            "s.yaml:6:7: error: unknown key `pth` in experiments[2]",
            "error: experiments[2]: missing required key `path`",
            "s.yaml:7:5: error: experiments[3].path `../experiments/none-*.yaml`: the pattern matches no file",
            "s.yaml:8:14: error: concurrency: 0 is out of range",
            "s.yaml:9:10: error: stop_on: unknown value `abrt`\n  help: did you mean `abort`?",
            "s.yaml:10:24: error: go_no_go.min_score: 101 is out of range",
            "unknown key `max` in go_no_go",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn a_schedule_decodes_as_in_an_experiment_and_its_mistakes_have_positions() {
        let dir = folder();
        let file = dir.path().join("suites/s.yaml");
        let s = load_str(
            &file,
            "version: 1\nname: ready\nexperiments: [../experiments/a.yaml]\nschedule: { cron: \"0 10 * * TUE\", timezone: Europe/Paris }\n",
        )
        .expect("valid");
        let sch = s.schedule.expect("a schedule");
        assert_eq!(sch.describe(), "0 10 * * TUE (Europe/Paris)");
        assert_eq!(sch.loc.line, 4);
        let e = load_str(
            &file,
            "version: 1\nname: ready\nexperiments: [../experiments/a.yaml]\nschedule:\n  cron: \"0 10 * * TUES\"\n  timezone: Europe/Pari\n  every: 1d\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "s.yaml:5:9: error: schedule.cron: invalid cron expression `0 10 * * TUES`",
            "s.yaml:6:13: error: schedule.timezone: unknown time zone `Europe/Pari`",
            "s.yaml:7:3: error: unknown key `every` in schedule",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn a_suite_does_not_list_itself() {
        let dir = folder();
        let file = dir.path().join("experiments/all.yaml");
        let s = load_str(&file, "version: 1\nname: all\nexperiments: [\"*.yaml\"]\n").expect("valid");
        assert_eq!(s.experiments().len(), 3, "a.yaml, b.yaml, c.yaml, not all.yaml");
    }

    #[test]
    fn every_shipped_suite_and_its_experiments_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("suites/") {
            let path = e.expect("entry").path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let suite = load(&path).unwrap_or_else(|e| panic!("{e}"));
            for m in suite.experiments() {
                crate::experiment::load(&m.file).unwrap_or_else(|e| panic!("{e}"));
            }
            n += 1;
        }
        assert!(n > 0, "suites/ has an example");
    }

    #[test]
    fn mutated_suites_are_rejected_with_a_position_never_a_panic() {
        let text = include_str!("../../suites/shop-web-readiness.yaml");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/shop-web-readiness.yaml");
        let rejected = crate::yaml::mutate::check("shop-web-readiness.yaml", text, 16, 300, |_, bytes| {
            load_str(&path, &crate::yaml::text(&path, bytes)?)
        });
        assert!(rejected > 0, "some mutants are invalid");
    }
}
