//! Slot claims: how `gameday run-due` runs a slot once, however often it is
//! triggered and from however many processes at the same moment.
//!
//! Before running a due slot, a runner claims it; only the one whose claim
//! is created runs. The local store makes the claim an exclusive file
//! create (`O_EXCL`, [`std::fs::OpenOptions::create_new`]) of
//! `<runs>/.slots/<experiment>/<slot>.json`: the kernel lets exactly one of
//! two simultaneous creators succeed, on one machine or on a shared file
//! system that honours `O_EXCL` (local disks, NFSv3+, EFS). The claim file
//! stays as the record of the slot: who claimed it, when, and once the run
//! ended its run id and verdict, so `gameday due` and the catalog read it
//! back.
//!
//! [`SlotStore`] is the seam for the DynamoDB lease table (the policy's
//! `locks.table`): runners on machines that share no file system claim the
//! slot with a conditional write there instead. The store is an enum rather
//! than a trait object so that each backend's calls can be `async` and every
//! `match` stays exhaustive.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::schedule::Slot;

/// The folder of the runs folder that holds slot claims (a dot folder, so
/// that history and recovery, which read run folders, pass it by).
pub const SLOTS_DIR: &str = ".slots";

/// A claim on one slot of one experiment, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The experiment's (or suite's) name.
    pub experiment: String,
    /// The slot's cron time.
    pub slot: Timestamp,
    /// When the slot became due (cron time plus jitter).
    pub due_at: Timestamp,
    /// When it was claimed.
    pub claimed_at: Timestamp,
    /// The claiming machine.
    pub host: String,
    /// The claiming process.
    pub pid: u32,
    /// The run started for the slot, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run's verdict, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

impl Claim {
    /// A new claim on `slot` of `experiment` by this process.
    pub fn new(experiment: &str, slot: &Slot, now: Timestamp) -> Claim {
        Claim {
            experiment: experiment.to_string(),
            slot: slot.at,
            due_at: slot.due_at,
            claimed_at: now,
            host: crate::util::hostname(),
            pid: std::process::id(),
            run_id: None,
            verdict: None,
        }
    }

    /// Who holds the claim, for people.
    pub fn holder(&self) -> String {
        format!(
            "{} pid {} at {}",
            if self.host.is_empty() { "?" } else { &self.host },
            self.pid,
            self.claimed_at.strftime("%Y-%m-%d %H:%M:%SZ")
        )
    }
}

/// What claiming a slot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This process holds the slot: run it.
    Won,
    /// Another claim was first; it is returned as found.
    Taken(Box<Claim>),
}

/// Why a claim could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The claim file could not be created, read or written.
    #[error("cannot {what} the slot claim {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A claim file is not a claim (damaged, or not written by gameday).
    #[error("the slot claim {} is not readable: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where claims are kept.
#[derive(Debug, Clone)]
pub enum SlotStore {
    /// Files in the runs folder, created exclusively.
    Local(LocalSlots),
}

impl SlotStore {
    /// The store for a runs folder (the local one; see the module's note on
    /// the lease table).
    pub fn local(runs_dir: &Path) -> SlotStore {
        SlotStore::Local(LocalSlots {
            dir: runs_dir.join(SLOTS_DIR),
        })
    }

    /// Claims `claim.slot` of `claim.experiment`: [`Claimed::Won`] for
    /// exactly one caller, however many try at once.
    pub async fn claim(&self, claim: &Claim) -> Result<Claimed, ClaimError> {
        match self {
            SlotStore::Local(l) => l.claim(claim),
        }
    }

    /// Records what came of a claim this process won (its run id and verdict).
    pub async fn record(&self, claim: &Claim) -> Result<(), ClaimError> {
        match self {
            SlotStore::Local(l) => l.record(claim),
        }
    }

    /// The claim on `slot` of `experiment`, if any.
    pub async fn find(&self, experiment: &str, slot: &Slot) -> Result<Option<Claim>, ClaimError> {
        match self {
            SlotStore::Local(l) => l.find(experiment, slot),
        }
    }
}

/// Claims as files: `<runs>/.slots/<experiment>/<slot>.json`.
#[derive(Debug, Clone)]
pub struct LocalSlots {
    dir: PathBuf,
}

impl LocalSlots {
    fn path(&self, experiment: &str, slot_key: &str) -> PathBuf {
        // Experiment names are tag-safe already; a suite's name may not be.
        let safe: String = experiment
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe.trim_start_matches('.');
        self.dir.join(safe).join(format!("{slot_key}.json"))
    }

    fn key(at: Timestamp) -> String {
        at.strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    fn claim(&self, claim: &Claim) -> Result<Claimed, ClaimError> {
        let path = self.path(&claim.experiment, &Self::key(claim.slot));
        let io = |what, source| ClaimError::Io {
            what,
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create the folder of", e))?;
        }
        let text = serde_json::to_string_pretty(claim).unwrap_or_default();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(|e| io("write", e))?;
                Ok(Claimed::Won)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // The winner may not have written its claim yet: a short wait, then what is there.
                let found = (0..50).find_map(|_| match self.read(&path) {
                    Ok(Some(c)) => Some(c),
                    _ => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        None
                    }
                });
                let found = found.unwrap_or_else(|| Claim {
                    host: "another runner (claim still being written)".into(),
                    pid: 0,
                    ..claim.clone()
                });
                Ok(Claimed::Taken(Box::new(found)))
            }
            Err(e) => Err(io("create", e)),
        }
    }

    fn record(&self, claim: &Claim) -> Result<(), ClaimError> {
        let path = self.path(&claim.experiment, &Self::key(claim.slot));
        let mut text = serde_json::to_string_pretty(claim).unwrap_or_default();
        text.push('\n');
        crate::util::write_replacing(&path, text.as_bytes()).map_err(|source| ClaimError::Io {
            what: "update",
            path,
            source,
        })
    }

    fn find(&self, experiment: &str, slot: &Slot) -> Result<Option<Claim>, ClaimError> {
        self.read(&self.path(experiment, &slot.key()))
    }

    fn read(&self, path: &Path) -> Result<Option<Claim>, ClaimError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ClaimError::Io {
                    what: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ClaimError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        let at: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        Slot { at, due_at: at }
    }

    #[tokio::test]
    async fn of_many_claims_on_one_slot_exactly_one_wins_and_the_record_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlotStore::local(dir.path());
        let now: Timestamp = "2026-11-24T09:01:00Z".parse().unwrap();
        // Threads racing on the same file: the kernel's O_EXCL decides.
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    s.spawn(move || {
                        let SlotStore::Local(l) = &store;
                        l.claim(&Claim::new("exp", &slot(), now)).unwrap() == Claimed::Won
                    })
                })
                .collect();
            handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(winners, 1);
        let mut c = store.find("exp", &slot()).await.unwrap().expect("the claim");
        assert_eq!(c.experiment, "exp");
        c.run_id = Some("20261124-090100-abcd".into());
        c.verdict = Some("passed".into());
        store.record(&c).await.unwrap();
        assert_eq!(store.find("exp", &slot()).await.unwrap(), Some(c.clone()));
        // A later claim on the recorded slot still loses, and sees the run.
        match store.claim(&Claim::new("exp", &slot(), now)).await.unwrap() {
            Claimed::Taken(t) => assert_eq!(t.run_id.as_deref(), Some("20261124-090100-abcd")),
            Claimed::Won => panic!("a recorded slot was claimed again"),
        }
    }
}
