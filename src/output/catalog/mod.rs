//! The catalog: every experiment (and suite) a team has, on one static page
//! and in one Markdown file, kept in step with what runs.
//!
//! `gameday catalog [PATH...]` writes `catalog.html`, `catalog.md` and
//! `catalog.json` into the runs folder, so that its links to the last
//! reports (`<run-id>/report.html`) work wherever the folder is copied. Each
//! entry shows the hypothesis, owner, faults, guardrails, schedule and next
//! due slot, the last verdict with its date and the trend of the last
//! verdicts. `catalog.json` records the paths the catalog was made from
//! (absolute), so that `gameday run` and `gameday run-due` can write it
//! again after every run ([`refresh`]) when, and only when, it exists.
//!
//! A file whose top level has `experiments` is a suite
//! ([`crate::suite::is_suite_file`]), read with the suite decoder: an invalid
//! suite is listed with its problems, as an invalid experiment is. A suite's
//! history is its runs' `suite.json` (GO or NO-GO), its links go to their
//! scorecards, and its schedule is judged under the key `suite:<name>`, as
//! `gameday due` judges it.

pub mod html;
pub mod markdown;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::due as status;
use super::history::RunRow;
use super::scorecard::{self, SuiteRun};
use crate::due::claim::SlotStore;
use crate::due::{LastRun, Status};
use crate::experiment::{self, Experiment};
use crate::policy::{self, Windows};
use crate::schedule::Schedule;
use crate::suite::{self, Suite};
use crate::util::format_duration;

/// The page, inside the runs folder.
pub const HTML_FILE: &str = "catalog.html";
/// The Markdown file, inside the runs folder.
pub const MARKDOWN_FILE: &str = "catalog.md";
/// What the catalog was made from and what it lists, for tools and for [`refresh`].
pub const JSON_FILE: &str = "catalog.json";
/// How many verdicts the trend shows.
pub const TREND: usize = 10;
/// How many reports each entry links to.
pub const REPORT_LINKS: usize = 3;

/// Why the catalog could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file of the catalog could not be written.
    #[error("cannot write the catalog {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A path given holds no experiment or suite.
    #[error("{}: no such file or folder", .0.display())]
    Missing(PathBuf),
}

/// One experiment or suite as the catalog lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// `experiment` or `suite`.
    pub kind: &'static str,
    /// Its name (the file's stem when it has none).
    pub name: String,
    /// The file, as found.
    pub file: PathBuf,
    /// What it does.
    pub description: Option<String>,
    /// Who owns the response.
    pub owner: Option<String>,
    /// The claim under test.
    pub hypothesis: Option<String>,
    /// Each fault: `name: action, for duration`.
    pub faults: Vec<String>,
    /// Each guardrail's name (suites: each experiment it runs).
    pub guardrails: Vec<String>,
    /// The schedule in words, if any.
    pub schedule: Option<String>,
    /// Where the schedule stands now (due, deferred, done, waiting) and its next slot.
    pub due: Option<Status>,
    /// The next slot in the schedule's zone, for people.
    pub next_slot: Option<String>,
    /// The runs of it, newest first (at most [`TREND`]); none for a suite.
    pub runs: Vec<RunRow>,
    /// A suite's runs, newest first (at most [`TREND`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suite_runs: Vec<SuiteRun>,
    /// Why the file could not be read fully (the entry then lists what could be).
    pub problem: Option<String>,
}

/// What `catalog.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Sources {
    /// Format version of catalog.json.
    catalog_version: u32,
    /// The paths the catalog was made from, absolute.
    sources: Vec<PathBuf>,
    /// The policy given with `--policy`, if any.
    #[serde(default)]
    policy: Option<PathBuf>,
}

/// Writes the catalog of `sources` (files or folders of experiments and
/// suites) into `runs_dir`, reading slot claims from `claims` (the runs
/// folder's, or an S3 store's); returns the files written.
pub async fn write(
    sources: &[PathBuf],
    runs_dir: &Path,
    claims: &SlotStore,
    policy: Option<&Path>,
    now: Timestamp,
) -> Result<Vec<PathBuf>, CatalogError> {
    let entries = entries(sources, runs_dir, claims, policy, now).await?;
    std::fs::create_dir_all(runs_dir).map_err(|source| CatalogError::Write {
        path: runs_dir.to_path_buf(),
        source,
    })?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let record = serde_json::json!({
        "catalog_version": 1,
        "sources": sources.iter().map(|p| absolute(p)).collect::<Vec<_>>(),
        "policy": policy.map(absolute),
        "generated_at": now,
        "entries": entries,
    });
    let mut out = Vec::new();
    for (name, text) in [
        (HTML_FILE, html::render(&entries, now)),
        (MARKDOWN_FILE, markdown::render(&entries, now)),
        (JSON_FILE, format!("{record:#}\n")),
    ] {
        let path = runs_dir.join(name);
        crate::util::write_replacing(&path, text.as_bytes()).map_err(|source| CatalogError::Write {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// Writes the catalog of `runs_dir` again, from the sources it was made
/// from, when it exists; nothing when it does not. `policy` (the run's
/// `--policy`) wins over the one recorded.
pub async fn refresh(
    runs_dir: &Path,
    claims: &SlotStore,
    policy: Option<&Path>,
) -> Result<bool, CatalogError> {
    let Ok(text) = std::fs::read_to_string(runs_dir.join(JSON_FILE)) else {
        return Ok(false);
    };
    let Ok(sources) = serde_json::from_str::<Sources>(&text) else {
        return Ok(false);
    };
    let kept: Vec<PathBuf> = sources.sources.into_iter().filter(|p| p.exists()).collect();
    // A runs folder copied to another machine (a CI artifact) keeps its
    // catalog rather than getting an empty one.
    if kept.is_empty() {
        return Ok(false);
    }
    let policy = policy.map(Path::to_path_buf).or(sources.policy);
    write(&kept, runs_dir, claims, policy.as_deref(), Timestamp::now()).await?;
    Ok(true)
}

/// The default sources: `experiments/`, and `suites/` when it exists.
pub fn default_sources() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("experiments")];
    if Path::new("suites").is_dir() {
        out.push(PathBuf::from("suites"));
    }
    out
}

/// Every entry of `sources`, in file order.
pub async fn entries(
    sources: &[PathBuf],
    runs_dir: &Path,
    store: &SlotStore,
    policy: Option<&Path>,
    now: Timestamp,
) -> Result<Vec<Entry>, CatalogError> {
    let rows = status::runs(runs_dir);
    let suite_runs = scorecard::runs(runs_dir);
    let mut out = Vec::new();
    for source in sources {
        let mut files = Vec::new();
        if source.is_dir() {
            collect_yaml(source, &mut files);
        } else if source.exists() {
            files.push(source.clone());
        } else {
            return Err(CatalogError::Missing(source.clone()));
        }
        for file in files {
            let windows = policy::find_and_load(policy, Some(&file))
                .map(|p| p.policy.windows)
                .ok();
            let entry = if suite::is_suite_file(&file) {
                suite_entry(&file)
            } else {
                experiment_entry(&file)
            };
            out.push(with_history(entry, windows.as_ref(), &rows, &suite_runs, store, now).await);
        }
    }
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| !crate::util::is_hidden(p)) {
        if p.is_dir() {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// An entry with what the catalog needs to judge its schedule kept aside.
struct Pending {
    entry: Entry,
    schedule: Option<Schedule>,
    max_duration: std::time::Duration,
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn blank(kind: &'static str, file: &Path) -> Entry {
    Entry {
        kind,
        name: stem(file),
        file: file.to_path_buf(),
        description: None,
        owner: None,
        hypothesis: None,
        faults: Vec::new(),
        guardrails: Vec::new(),
        schedule: None,
        due: None,
        next_slot: None,
        runs: Vec::new(),
        suite_runs: Vec::new(),
        problem: None,
    }
}

fn experiment_entry(file: &Path) -> Pending {
    match experiment::load(file) {
        Ok(exp) => from_experiment(&exp),
        Err(e) => Pending {
            entry: Entry {
                problem: Some(format!("invalid experiment: {e}")),
                ..blank("experiment", file)
            },
            schedule: None,
            max_duration: std::time::Duration::ZERO,
        },
    }
}

fn from_experiment(exp: &Experiment) -> Pending {
    let faults = exp
        .faults
        .iter()
        .map(|f| {
            let held = match f.duration {
                Some(d) => format!(", for {}", format_duration(d)),
                None => String::new(),
            };
            format!("{}: {}{held}", f.name.value, f.action.value)
        })
        .collect();
    let guardrails = exp.guardrails.iter().map(|g| g.name.clone()).collect();
    Pending {
        entry: Entry {
            name: exp.name.clone(),
            description: exp.description.clone(),
            owner: exp.owner.clone(),
            hypothesis: Some(exp.hypothesis.trim().to_string()),
            faults,
            guardrails,
            schedule: exp.schedule.as_ref().map(Schedule::describe),
            ..blank("experiment", &exp.file)
        },
        schedule: exp.schedule.clone(),
        max_duration: exp.timing.max_duration,
    }
}

/// A suite, through the suite decoder (its experiments' lengths from theirs).
fn suite_entry(file: &Path) -> Pending {
    match suite::load(file) {
        Ok(s) => from_suite(&s),
        Err(e) => Pending {
            entry: Entry {
                problem: Some(format!("invalid suite: {e}")),
                ..blank("suite", file)
            },
            schedule: None,
            max_duration: std::time::Duration::ZERO,
        },
    }
}

fn from_suite(s: &Suite) -> Pending {
    let members = s.experiments();
    // A run must fit a window: the suite's length is its experiments' one
    // after another, as `gameday due` takes it (an invalid one adds nothing).
    let max_duration = members
        .iter()
        .filter_map(|m| experiment::load(&m.file).ok())
        .map(|e| e.timing.max_duration)
        .sum();
    Pending {
        entry: Entry {
            name: s.name.clone(),
            description: s.description.clone(),
            owner: s.owner.clone(),
            guardrails: members
                .iter()
                .map(|m| format!("{} ({})", m.file.display(), m.role.as_str()))
                .collect(),
            schedule: s.schedule.as_ref().map(Schedule::describe),
            ..blank("suite", &s.file)
        },
        schedule: s.schedule.clone(),
        max_duration,
    }
}

async fn with_history(
    p: Pending,
    windows: Option<&Windows>,
    rows: &[RunRow],
    suite_runs: &[SuiteRun],
    store: &SlotStore,
    now: Timestamp,
) -> Entry {
    let mut entry = p.entry;
    let (key, last): (String, Option<LastRun>) = if entry.kind == "suite" {
        entry.suite_runs = suite_runs
            .iter()
            .filter(|r| r.suite == entry.name)
            .take(TREND)
            .cloned()
            .collect();
        (
            crate::due::suite_key(&entry.name),
            status::last_suite_run(suite_runs, &entry.name),
        )
    } else {
        entry.runs = rows
            .iter()
            .filter(|r| r.experiment == entry.name)
            .take(TREND)
            .cloned()
            .collect();
        (entry.name.clone(), status::last_run(rows, &entry.name))
    };
    if let (Some(s), Some(w)) = (&p.schedule, windows)
        && let Ok(st) = status::judge(&key, s, w, p.max_duration, last, store, now).await
    {
        entry.next_slot = st.next.map(|n| s.local_text(n.due_at));
        entry.due = Some(st);
    }
    entry
}

/// A verdict's class and word for the catalog's trend.
pub(crate) fn verdict_word(r: &RunRow) -> &'static str {
    r.verdict.map(|v| v.as_str()).unwrap_or("unfinished")
}

/// One past run of an entry as the page and the Markdown show it: an
/// experiment's run with its verdict and report, or a suite's with GO or
/// NO-GO and its scorecard.
pub(crate) struct Past<'a> {
    /// The run's (or suite run's) id.
    pub(crate) id: &'a str,
    /// When it started.
    pub(crate) started_at: Timestamp,
    /// Its verdict, or `GO` / `NO-GO`.
    pub(crate) word: &'static str,
    /// Its style class: the verdict, or `go` / `no-go`.
    pub(crate) class: &'static str,
    /// Its report or scorecard, relative to the runs folder.
    pub(crate) link: String,
}

impl Entry {
    /// Its past runs, newest first.
    pub(crate) fn past(&self) -> Vec<Past<'_>> {
        if self.kind == "suite" {
            return self
                .suite_runs
                .iter()
                .map(|r| Past {
                    id: &r.suite_run_id,
                    started_at: r.started_at,
                    word: r.decision(),
                    class: if r.go { "go" } else { "no-go" },
                    link: format!("{}/{}", r.suite_run_id, scorecard::HTML_FILE),
                })
                .collect();
        }
        self.runs
            .iter()
            .map(|r| Past {
                id: &r.run_id,
                started_at: r.started_at,
                word: verdict_word(r),
                class: verdict_word(r),
                link: format!("{}/{}", r.run_id, super::report::HTML_FILE),
            })
            .collect()
    }

    /// What its links lead to: `reports`, or a suite's `scorecards`.
    pub(crate) fn links_word(&self) -> &'static str {
        if self.kind == "suite" {
            "scorecards"
        } else {
            "reports"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_files_is_escaped_on_the_page_and_in_markdown() {
        let e = Entry {
            name: "x".into(),
            hypothesis: Some("<script>alert(1)</script> & more".into()),
            owner: Some("team <b>".into()),
            faults: vec!["f: ec2:stop-instances".into()],
            ..blank("experiment", Path::new("experiments/x.yaml"))
        };
        let now: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        let page = html::render(std::slice::from_ref(&e), now);
        assert!(!page.contains("<script") && !page.contains("<b>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
            "{page}"
        );
        let md = markdown::render(&[e], now);
        assert!(!md.contains("<script") && md.contains("&lt;script&gt;"), "{md}");
        assert!(
            md.contains("| x | team &lt;b&gt; | by hand | - | never run | - |"),
            "{md}"
        );
    }
}
