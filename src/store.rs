//! The runs store: a local folder (the default), or a shared one in S3
//! (`--runs-dir s3://bucket/prefix`).
//!
//! Every command keeps working on a local folder. With S3, that folder is a
//! scratch copy (`GAMEDAY_SCRATCH_DIR`, else `<temp>/gameday-scratch/<bucket>/<prefix>`):
//! the journal sends its write-ahead chunks to S3 as it goes ([`journal::Remote`]),
//! [`Runs::push`] uploads a run's files once they are written, and
//! [`Runs::pull`] / [`Runs::pull_all`] fetch runs into the scratch folder for
//! the commands that read them (`report`, `history`, `recover`, `due`), and
//! [`Runs::pull_top`] / [`Runs::push_top`] the catalog's files at the top.
//!
//! Layout under the prefix, one folder per run, as in a local runs folder:
//!
//! ```text
//! <run-id>/events/<seq>.jsonl   write-ahead chunks (seq: last event's, 10 digits), put only if absent
//! <run-id>/events.jsonl         the whole log, uploaded when the run (or a recover) ends
//! <run-id>/journal.json, report.html, report.md, junit.xml
//! suite-<id>/suite.json, scorecard.html, scorecard.md, junit.xml   a suite run
//! .slots/<experiment>/<slot>.json, .slots/.suites/<suite>/<slot>.json   slot claims (run-due)
//! catalog.html, catalog.md, catalog.json
//! ```
//!
//! A run's events are the union of `events.jsonl` and the chunks, by `seq`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::aws::ConnectOptions;
use crate::aws::s3::{S3Store, S3Url};
use crate::journal::{self, EVENTS_FILE, Entry, Remote};

/// Where runs are kept.
#[derive(Debug, Clone)]
pub struct Runs {
    /// The local runs folder (the scratch copy, with S3).
    pub local: PathBuf,
    /// The shared store, if `--runs-dir` is an `s3://` URL.
    pub remote: Option<S3Store>,
}

/// Why the runs store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `--runs-dir s3://` without a bucket, or no region.
    #[error("--runs-dir: {0}")]
    Url(String),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An S3 call failed.
    #[error("runs store {url}: {source}")]
    S3 {
        /// The store.
        url: String,
        /// The call's error.
        source: Box<crate::aws::AwsError>,
    },
    /// A run id that is not one (a path, `..`).
    #[error(transparent)]
    RunName(#[from] journal::RunNameError),
}

impl Runs {
    /// `arg` as given to `--runs-dir`: a folder, or `s3://bucket/prefix`
    /// (then a client from the standard chain and `opts`; no call is made).
    pub async fn open(arg: &Path, opts: &ConnectOptions) -> Result<Runs, StoreError> {
        let Some(url) = arg.to_str().and_then(S3Url::parse) else {
            return Ok(Runs {
                local: arg.to_path_buf(),
                remote: None,
            });
        };
        let url = url.map_err(StoreError::Url)?;
        let local = match std::env::var_os("GAMEDAY_SCRATCH_DIR").filter(|s| !s.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => std::env::temp_dir()
                .join("gameday-scratch")
                .join(&url.bucket)
                .join(&url.prefix),
        };
        std::fs::create_dir_all(&local).map_err(|source| StoreError::Io {
            path: local.clone(),
            source,
        })?;
        let remote = S3Store::connect(url, opts)
            .await
            .map_err(|e| StoreError::Url(e.to_string()))?;
        Ok(Runs {
            local,
            remote: Some(remote),
        })
    }

    /// Whether `arg` names an S3 store.
    pub fn is_remote(arg: &Path) -> bool {
        arg.to_str().is_some_and(|s| s.starts_with("s3://"))
    }

    /// What the journal of run `run_id` sends to the store, if there is one.
    pub fn remote_for(&self, run_id: &str) -> Option<Remote> {
        self.remote.as_ref().map(|store| Remote {
            store: store.clone(),
            run_id: run_id.to_string(),
        })
    }

    /// Where runs are, for messages: the URL or the folder.
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(s) => s.url.to_string(),
            None => self.local.display().to_string(),
        }
    }

    /// Fetches run `run_id` into the scratch folder: its files and its
    /// events (the union of `events.jsonl` and the chunks). Nothing to do
    /// for a local folder. Returns whether the store has the run.
    pub async fn pull(&self, run_id: &str) -> Result<bool, StoreError> {
        let Some(store) = &self.remote else {
            return Ok(true);
        };
        let dir = journal::run_dir(&self.local, run_id)?;
        let s3 = |source| StoreError::S3 {
            url: store.url.to_string(),
            source: Box::new(source),
        };
        let keys = store.list(&format!("{run_id}/")).await.map_err(s3)?;
        if keys.is_empty() {
            return Ok(false);
        }
        mkdir(&dir)?;
        let mut events: BTreeMap<u64, Entry> = BTreeMap::new();
        for k in &keys {
            let Some(body) = store.get(&format!("{run_id}/{k}")).await.map_err(s3)? else {
                continue;
            };
            if k == EVENTS_FILE || (k.starts_with("events/") && k.ends_with(".jsonl")) {
                for e in parse_lines(&body) {
                    events.insert(e.seq, e);
                }
            } else if !k.contains('/') && journal::is_run_id(k) {
                write(&dir.join(k), &body)?;
            }
        }
        if !events.is_empty() {
            let mut text = Vec::new();
            for e in events.values() {
                text.extend(serde_json::to_vec(e).expect("journal events always serialise"));
                text.push(b'\n');
            }
            write(&dir.join(EVENTS_FILE), &text)?;
        }
        Ok(true)
    }

    /// Fetches every run's `journal.json` into the scratch folder (for
    /// `history`), or its events when it has none (a run whose runner died).
    pub async fn pull_all(&self) -> Result<(), StoreError> {
        let Some(store) = &self.remote else {
            return Ok(());
        };
        let s3 = |source| StoreError::S3 {
            url: store.url.to_string(),
            source: Box::new(source),
        };
        for id in store.folders("").await.map_err(s3)? {
            if !journal::is_run_id(&id) {
                continue;
            }
            match store.get(&format!("{id}/journal.json")).await.map_err(s3)? {
                Some(body) => {
                    let dir = journal::run_dir(&self.local, &id)?;
                    mkdir(&dir)?;
                    write(&dir.join("journal.json"), &body)?;
                }
                None => {
                    self.pull(&id).await?;
                }
            }
        }
        Ok(())
    }

    /// Fetches the file `name` at the top of the store (the catalog's) into
    /// the scratch folder; whether there is one. A local folder has what it has.
    pub async fn pull_top(&self, name: &str) -> Result<bool, StoreError> {
        let Some(store) = &self.remote else {
            return Ok(self.local.join(name).is_file());
        };
        let got = store.get(name).await.map_err(|source| StoreError::S3 {
            url: store.url.to_string(),
            source: Box::new(source),
        })?;
        match got {
            Some(body) => {
                write(&self.local.join(name), &body)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Uploads the files `names` at the top of the scratch folder (the
    /// catalog's), replacing older copies. Nothing to do for a local folder.
    pub async fn push_top(&self, names: &[&str]) -> Result<(), StoreError> {
        let Some(store) = &self.remote else {
            return Ok(());
        };
        for name in names {
            let path = self.local.join(name);
            let body = std::fs::read(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            store.put(name, body).await.map_err(|source| StoreError::S3 {
                url: store.url.to_string(),
                source: Box::new(source),
            })?;
        }
        Ok(())
    }

    /// Uploads the files of run `run_id`'s local folder (its whole events
    /// log, journal.json, reports), replacing older copies. Nothing to do for
    /// a local folder.
    pub async fn push(&self, run_id: &str) -> Result<(), StoreError> {
        let Some(store) = &self.remote else {
            return Ok(());
        };
        let dir = journal::run_dir(&self.local, run_id)?;
        let entries = std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let Some(name) = f.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let body = std::fs::read(&f).map_err(|source| StoreError::Io {
                path: f.clone(),
                source,
            })?;
            store
                .put(&format!("{run_id}/{name}"), body)
                .await
                .map_err(|source| StoreError::S3 {
                    url: store.url.to_string(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }
}

/// The events of a chunk or log; a line that is not an event is skipped
/// (a chunk is written whole, so only a foreign object could have one).
fn parse_lines(body: &[u8]) -> Vec<Entry> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn mkdir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    std::fs::write(path, body).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}
