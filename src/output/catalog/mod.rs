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
//! Suite files (`suites/*.yaml`) are read loosely here: their `name`,
//! `description`, `owner`, `experiments` and `schedule`, without the full
//! validation that `gameday suite` applies.

pub mod html;
pub mod markdown;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use marked_yaml::Node;
use serde::{Deserialize, Serialize};

use super::due as status;
use super::history::RunRow;
use crate::due::Status;
use crate::due::claim::SlotStore;
use crate::experiment::{self, Experiment};
use crate::policy::{self, Windows};
use crate::schedule::{self, Schedule};
use crate::util::format_duration;
use crate::yaml::{self, Decoder};

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
    /// The runs of it, newest first (at most [`TREND`]).
    pub runs: Vec<RunRow>,
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
/// suites) into `runs_dir`; returns the files written.
pub async fn write(
    sources: &[PathBuf],
    runs_dir: &Path,
    policy: Option<&Path>,
    now: Timestamp,
) -> Result<Vec<PathBuf>, CatalogError> {
    let entries = entries(sources, runs_dir, policy, now).await?;
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
pub async fn refresh(runs_dir: &Path, policy: Option<&Path>) -> Result<bool, CatalogError> {
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
    write(&kept, runs_dir, policy.as_deref(), Timestamp::now()).await?;
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
    policy: Option<&Path>,
    now: Timestamp,
) -> Result<Vec<Entry>, CatalogError> {
    let rows = status::runs(runs_dir);
    let store = SlotStore::local(runs_dir);
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
            let entry = if is_suite(&file) {
                suite_entry(&file)
            } else {
                experiment_entry(&file)
            };
            out.push(with_history(entry, windows.as_ref(), &rows, &store, now).await);
        }
    }
    Ok(out)
}

/// A file under a folder named `suites`, or one with a top-level `experiments` list.
fn is_suite(file: &Path) -> bool {
    file.components().any(|c| c.as_os_str() == "suites")
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

/// A suite, read loosely: its name, description, owner, experiments and schedule.
fn suite_entry(file: &Path) -> Pending {
    let mut entry = blank("suite", file);
    let mut schedule = None;
    let read = std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| yaml::text(file, b).map_err(|e| e.to_string()))
        .and_then(|t| yaml::parse(file, &t).map_err(|e| e.to_string()));
    match read {
        Err(e) => entry.problem = Some(format!("unreadable suite: {e}")),
        Ok(root) => {
            let text = |key: &str| match &root {
                Node::Mapping(m) => m.get_scalar(key).map(|s| s.as_str().to_string()),
                _ => None,
            };
            if let Some(n) = text("name") {
                entry.name = n;
            }
            entry.description = text("description");
            entry.owner = text("owner");
            entry.hypothesis = text("hypothesis");
            if let Node::Mapping(m) = &root {
                if let Some(Node::Sequence(list)) = m.get_node("experiments") {
                    entry.guardrails = list
                        .iter()
                        .filter_map(|item| match item {
                            Node::Scalar(s) => Some(s.as_str().to_string()),
                            Node::Mapping(i) => i
                                .get_scalar("path")
                                .or_else(|| i.get_scalar("experiment"))
                                .or_else(|| i.get_scalar("file"))
                                .map(|s| s.as_str().to_string()),
                            _ => None,
                        })
                        .collect();
                }
                if let Some(node) = m.get_node("schedule") {
                    let mut d = Decoder::new();
                    schedule = schedule::decode_schedule(&mut d, node);
                    if let Err(e) = d.finish(file) {
                        entry.problem = Some(e.to_string());
                    }
                }
            }
            entry.schedule = schedule.as_ref().map(Schedule::describe);
        }
    }
    Pending {
        entry,
        schedule,
        max_duration: std::time::Duration::from_secs(30 * 60),
    }
}

async fn with_history(
    p: Pending,
    windows: Option<&Windows>,
    rows: &[RunRow],
    store: &SlotStore,
    now: Timestamp,
) -> Entry {
    let mut entry = p.entry;
    entry.runs = rows
        .iter()
        .filter(|r| r.experiment == entry.name)
        .take(TREND)
        .cloned()
        .collect();
    if let (Some(s), Some(w)) = (&p.schedule, windows)
        && let Ok(st) = status::status(&entry.name, s, w, p.max_duration, rows, store, now).await
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
