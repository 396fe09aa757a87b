//! Slot claims: how `gameday run-due` runs a slot once, however often it is
//! triggered and from however many processes or machines at the same moment.
//!
//! Before running a due slot, a runner claims it; only the one whose claim
//! is created runs. Two stores, picked by the safety policy:
//!
//! - **Local** (no `locks` in the policy): an exclusive file create
//!   (`O_EXCL`, [`std::fs::OpenOptions::create_new`]) of
//!   `<runs>/.slots/<experiment>/<slot>.json` (a suite's:
//!   `<runs>/.slots/.suites/<suite>/<slot>.json`). The kernel lets exactly one
//!   of two simultaneous creators succeed, on one machine or on a shared
//!   file system that honours `O_EXCL` (local disks, NFSv3+, EFS).
//! - **Leased** (the policy's `locks.table`): first a conditional write of
//!   the lease `slot#<experiment>#<slot>` in the DynamoDB lease table
//!   ([`crate::lease::claim`]), which decides between machines that share no
//!   file system; then, by the winner only, the same claim file as the local
//!   store writes. The lease is never released: it is the table's record
//!   that the slot was taken, and it lasts until an hour after the next
//!   slot is due ([`lease_lifetime`]), so it cannot expire while its slot is
//!   still the one `run-due` would run. Once expired, `gameday cleanup`
//!   deletes it like any expired lease.
//!
//! The claim file stays as the record of the slot: who claimed it, when,
//! and once the run ended its run id and verdict, so `gameday due` and the
//! catalog read it back. A slot claimed in the table by another machine has
//! no file here; [`SlotStore::find`] reads the lease instead.
//!
//! With a runs store in S3 (`--runs-dir s3://bucket/prefix`), the claim
//! files live under the store's prefix too (`<prefix>/.slots/...`), and
//! without a lease table the claim is a conditional put of that object
//! (`If-None-Match: *`, [`S3Store::put_new`]): exactly one of any number of
//! machines sharing the bucket creates it. The scratch folder keeps a copy.
//!
//! The store is an enum rather than a trait object so that each backend's
//! calls can be `async` and every `match` stays exhaustive.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::aws::s3::{PutError, S3Store};
use crate::aws::{Aws, AwsError};
use crate::lease::{self, Holder, Lease, LeaseError};
use crate::schedule::Slot;

/// The folder of the runs folder that holds slot claims (a dot folder, so
/// that history and recovery, which read run folders, pass it by).
pub const SLOTS_DIR: &str = ".slots";

/// The folder of [`SLOTS_DIR`] that holds the claims of suites
/// (`.slots/.suites/<suite>/<slot>.json`).
pub const SUITES_DIR: &str = ".suites";

/// A claim on one slot of one experiment, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The experiment's name, or the suite's key (`suite:<name>`,
    /// [`crate::due::suite_key`]).
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
    /// Who to ask about the run (the experiment's owner), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The lease table that holds the claim too (the policy's
    /// `locks.table`); `None`: the claim file alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_table: Option<String>,
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
            owner: None,
            lease_table: None,
            run_id: None,
            verdict: None,
        }
    }

    /// Who holds the claim, for people.
    pub fn holder(&self) -> String {
        let table = match &self.lease_table {
            Some(t) => format!(" (lease table `{t}`)"),
            None => String::new(),
        };
        format!(
            "{} pid {} at {}{table}",
            if self.host.is_empty() { "?" } else { &self.host },
            self.pid,
            self.claimed_at.strftime("%Y-%m-%d %H:%M:%SZ")
        )
    }

    /// The lease's holder id: unique to the claiming process and the moment
    /// (the run id is not known before the claim is won), and read back by
    /// [`Claim::from_lease`].
    fn holder_id(&self) -> String {
        format!(
            "{HOLDER_PREFIX}{}-{}-{}",
            self.host,
            self.pid,
            self.claimed_at.as_millisecond()
        )
    }

    /// The claim a lease on `slot` of `experiment` in `table` stands for.
    fn from_lease(experiment: &str, slot: &Slot, table: &str, lease: &Lease) -> Claim {
        let id = &lease.holder.run_id;
        // `slot-<host>-<pid>-<ms>`; the host may hold dashes, the rest cannot.
        let mut tail = id.strip_prefix(HOLDER_PREFIX).unwrap_or(id).rsplitn(3, '-');
        let ms = tail.next().and_then(|m| m.parse::<i64>().ok());
        let pid = tail.next().and_then(|p| p.parse::<u32>().ok());
        let claimed_at = ms
            .and_then(|m| Timestamp::from_millisecond(m).ok())
            .unwrap_or(slot.due_at);
        Claim {
            experiment: experiment.to_string(),
            slot: slot.at,
            due_at: slot.due_at,
            claimed_at,
            host: lease.holder.host.clone(),
            pid: pid.unwrap_or(0),
            owner: Some(lease.holder.owner.clone()).filter(|o| o != "unknown"),
            lease_table: Some(table.to_string()),
            run_id: None,
            verdict: None,
        }
    }
}

/// How a slot lease's holder id starts (lease holders of runs are run ids,
/// which never do).
const HOLDER_PREFIX: &str = "slot-";

/// How long a slot's lease outlives the due time of the slot after it: the
/// margin for clocks that disagree between machines.
pub const LEASE_MARGIN: Duration = Duration::from_secs(3600);

/// How long a slot's lease lasts when no slot follows (the schedule's
/// `until` is passed): the slot stays the latest for good, so the lease
/// must not expire in any useful time (about 100 years).
const NO_NEXT_SLOT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The key of `slot` of `experiment` in the lease table:
/// `slot#<experiment>#<slot time, UTC>` (e.g. `slot#web#20261202T100000Z`;
/// a suite's: `slot#suite:<name>#<slot>`).
pub fn lease_key(experiment: &str, slot: &Slot) -> String {
    format!("slot#{experiment}#{}", slot.key())
}

/// How long the lease on a slot claimed at `now` must last: until
/// [`LEASE_MARGIN`] after `next` (the slot after it) is due, so that it
/// cannot expire while its slot is the one `run-due` would run; at least
/// the margin itself.
pub fn lease_lifetime(next: Option<&Slot>, now: Timestamp) -> Duration {
    let Some(next) = next else {
        return NO_NEXT_SLOT;
    };
    let left = next
        .due_at
        .duration_since(now)
        .try_into()
        .unwrap_or(Duration::ZERO);
    left + LEASE_MARGIN
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
    /// The runs store in S3 failed the claim, the read or the record
    /// (another runner's object is not an error: that is [`Claimed::Taken`]).
    #[error("cannot claim, read or record the slot s3://{bucket}/{key}: {source}")]
    Store {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// What S3 said.
        source: Box<AwsError>,
    },
    /// The lease table refused or failed the claim or the read (another
    /// holder is not an error: that is [`Claimed::Taken`]).
    #[error("cannot claim or read the slot lease {key}: {source}")]
    Lease {
        /// The lease key (`slot#<experiment>#<slot>`).
        key: String,
        /// What the table said (boxed: a refusal carries the whole lease).
        source: Box<LeaseError>,
    },
}

/// Where claims are kept.
#[derive(Debug, Clone)]
pub enum SlotStore {
    /// Files in the runs folder, created exclusively (with an S3 runs
    /// store: objects under its prefix, put only if absent).
    Local(Records),
    /// A lease in the policy's lease table, and the file as the record.
    Leased(LeasedSlots),
}

impl SlotStore {
    /// The store for a runs folder `runs_dir` (one machine, or a shared file
    /// system) or, with `remote`, for a runs store in S3 whose scratch folder
    /// is `runs_dir`: claims are then objects under its prefix, put only if absent.
    pub fn shared(runs_dir: &Path, remote: Option<S3Store>) -> SlotStore {
        SlotStore::Local(Records::new(runs_dir, remote))
    }

    /// The store that claims in the lease table `table` (the policy's
    /// `locks.table`) and records in the runs folder.
    pub fn leased(runs_dir: &Path, remote: Option<S3Store>, aws: Aws, table: &str) -> SlotStore {
        SlotStore::Leased(LeasedSlots {
            local: Records::new(runs_dir, remote),
            aws,
            table: table.to_string(),
        })
    }

    /// Claims `claim.slot` of `claim.experiment`: [`Claimed::Won`] for
    /// exactly one caller, however many try at once. `next` is the slot
    /// after it and `now` the moment the slot was judged due: a lease lasts
    /// until the next slot has replaced this one ([`lease_lifetime`]).
    pub async fn claim(
        &self,
        claim: &Claim,
        next: Option<&Slot>,
        now: Timestamp,
    ) -> Result<Claimed, ClaimError> {
        match self {
            SlotStore::Local(l) => l.create(claim).await,
            SlotStore::Leased(l) => l.claim(claim, lease_lifetime(next, now)).await,
        }
    }

    /// Records what came of a claim this process won (its run id and
    /// verdict), in the claim file (a lease is left as it was claimed).
    pub async fn record(&self, claim: &Claim) -> Result<(), ClaimError> {
        match self {
            SlotStore::Local(l) => l.record(claim).await,
            SlotStore::Leased(l) => {
                l.local
                    .record(&Claim {
                        lease_table: Some(l.table.clone()),
                        ..claim.clone()
                    })
                    .await
            }
        }
    }

    /// The claim on `slot` of `experiment`, if any: the claim file, else
    /// (leased) an unexpired lease another machine took.
    pub async fn find(&self, experiment: &str, slot: &Slot) -> Result<Option<Claim>, ClaimError> {
        match self {
            SlotStore::Local(l) => l.find(experiment, slot).await,
            SlotStore::Leased(l) => l.find(experiment, slot).await,
        }
    }
}

/// Claims as leases in a DynamoDB lease table, recorded as files.
#[derive(Debug, Clone)]
pub struct LeasedSlots {
    /// The record of the claims won.
    local: Records,
    /// The clients (DynamoDB).
    aws: Aws,
    /// The lease table.
    table: String,
}

impl LeasedSlots {
    async fn claim(&self, claim: &Claim, lifetime: Duration) -> Result<Claimed, ClaimError> {
        let slot = Slot {
            at: claim.slot,
            due_at: claim.due_at,
        };
        let key = lease_key(&claim.experiment, &slot);
        let holder = Holder {
            run_id: claim.holder_id(),
            owner: claim.owner.clone().unwrap_or_else(|| "unknown".into()),
            host: claim.host.clone(),
        };
        let lease_error = |source| ClaimError::Lease {
            key: key.clone(),
            source: Box::new(source),
        };
        match lease::claim(
            &self.aws,
            &self.table,
            std::slice::from_ref(&key),
            &holder,
            lifetime,
        )
        .await
        {
            Ok(_) => {}
            Err(LeaseError::Held(l)) => {
                return Ok(Claimed::Taken(Box::new(Claim::from_lease(
                    &claim.experiment,
                    &slot,
                    &self.table,
                    &l,
                ))));
            }
            Err(e) => return Err(lease_error(e)),
        }
        // Won in the table: the file is the record history and `due` read.
        let mut record = claim.clone();
        record.lease_table = Some(self.table.clone());
        match self.local.create(&record).await {
            Ok(c) => Ok(c),
            Err(e) => {
                // No record, no run: give the slot back so that another runner can take it.
                let _ = lease::release(&self.aws, &self.table, &[key], &holder.run_id).await;
                Err(e)
            }
        }
    }

    async fn find(&self, experiment: &str, slot: &Slot) -> Result<Option<Claim>, ClaimError> {
        if let Some(c) = self.local.find(experiment, slot).await? {
            return Ok(Some(c));
        }
        let key = lease_key(experiment, slot);
        let held = lease::holders(&self.aws, &self.table, std::slice::from_ref(&key))
            .await
            .map_err(|source| ClaimError::Lease {
                key,
                source: Box::new(source),
            })?;
        // An expired lease no longer holds the slot (a claim would take it over).
        let now = Timestamp::now();
        Ok(held
            .iter()
            .find(|l| l.expires_at >= now)
            .map(|l| Claim::from_lease(experiment, slot, &self.table, l)))
    }
}

/// The claim files: in the runs folder, and with an S3 runs store the same
/// objects under its prefix, which then decide who claimed first.
#[derive(Debug, Clone)]
pub struct Records {
    local: LocalSlots,
    remote: Option<S3Store>,
}

impl Records {
    fn new(runs_dir: &Path, remote: Option<S3Store>) -> Records {
        Records {
            local: LocalSlots {
                dir: runs_dir.join(SLOTS_DIR),
            },
            remote,
        }
    }

    fn store_error(store: &S3Store, rel: &str, source: AwsError) -> ClaimError {
        ClaimError::Store {
            bucket: store.url.bucket.clone(),
            key: store.url.key(rel),
            source: Box::new(source),
        }
    }

    /// Creates the claim's record only if there is none: [`Claimed::Won`]
    /// for exactly one creator.
    async fn create(&self, claim: &Claim) -> Result<Claimed, ClaimError> {
        let Some(store) = &self.remote else {
            return self.local.claim(claim);
        };
        let rel = self.local.rel(&claim.experiment, &LocalSlots::key(claim.slot));
        let mut text = serde_json::to_string_pretty(claim).unwrap_or_default();
        text.push('\n');
        match store.put_new(&rel, text.into_bytes()).await {
            Ok(()) => {
                // The scratch folder's copy, for this machine's readers.
                self.local.record(claim)?;
                Ok(Claimed::Won)
            }
            Err(PutError::Exists { .. }) => {
                let found = self.remote_read(store, &rel).await.ok().flatten();
                let found = found.unwrap_or_else(|| Claim {
                    host: "another runner (claim not readable)".into(),
                    pid: 0,
                    ..claim.clone()
                });
                Ok(Claimed::Taken(Box::new(found)))
            }
            Err(PutError::Api(e)) => Err(Self::store_error(store, &rel, e)),
        }
    }

    async fn record(&self, claim: &Claim) -> Result<(), ClaimError> {
        self.local.record(claim)?;
        if let Some(store) = &self.remote {
            let rel = self.local.rel(&claim.experiment, &LocalSlots::key(claim.slot));
            let mut text = serde_json::to_string_pretty(claim).unwrap_or_default();
            text.push('\n');
            store
                .put(&rel, text.into_bytes())
                .await
                .map_err(|e| Self::store_error(store, &rel, e))?;
        }
        Ok(())
    }

    async fn find(&self, experiment: &str, slot: &Slot) -> Result<Option<Claim>, ClaimError> {
        match &self.remote {
            // The store is the truth: another machine's claims are there only.
            Some(store) => {
                let rel = self.local.rel(experiment, &slot.key());
                self.remote_read(store, &rel).await
            }
            None => self.local.find(experiment, slot),
        }
    }

    async fn remote_read(&self, store: &S3Store, rel: &str) -> Result<Option<Claim>, ClaimError> {
        let Some(body) = store
            .get(rel)
            .await
            .map_err(|e| Self::store_error(store, rel, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClaimError::Invalid {
                path: PathBuf::from(store.url.key(rel)),
                message: e.to_string(),
            })
    }
}

/// Claims as files: `<runs>/.slots/<experiment>/<slot>.json`.
#[derive(Debug, Clone)]
pub struct LocalSlots {
    dir: PathBuf,
}

impl LocalSlots {
    /// The claim's path relative to the runs folder (and to an S3 store's prefix).
    fn rel(&self, experiment: &str, slot_key: &str) -> String {
        let path = self.path(experiment, slot_key);
        let top = self.dir.parent().unwrap_or(Path::new(""));
        path.strip_prefix(top)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    fn path(&self, experiment: &str, slot_key: &str) -> PathBuf {
        // A suite's claims (`suite:<name>`) have their own folder: a dot
        // folder, which no experiment's can be (leading dots are cut below).
        let (dir, name) = match experiment.strip_prefix(crate::due::SUITE_KEY_PREFIX) {
            Some(suite) => (self.dir.join(SUITES_DIR), suite),
            None => (self.dir.clone(), experiment),
        };
        // Names are tag-safe already; this keeps a damaged one inside the folder.
        let safe: String = name
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
        dir.join(safe).join(format!("{slot_key}.json"))
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ClaimError::Io {
                what: "create the folder of",
                path: path.clone(),
                source,
            })?;
        }
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
        let store = SlotStore::shared(dir.path(), None);
        let now: Timestamp = "2026-11-24T09:01:00Z".parse().unwrap();
        // Threads racing on the same file: the kernel's O_EXCL decides.
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    s.spawn(move || {
                        let SlotStore::Local(l) = &store else {
                            unreachable!("a local store")
                        };
                        l.local.claim(&Claim::new("exp", &slot(), now)).unwrap() == Claimed::Won
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
        match store
            .claim(&Claim::new("exp", &slot(), now), None, now)
            .await
            .unwrap()
        {
            Claimed::Taken(t) => assert_eq!(t.run_id.as_deref(), Some("20261124-090100-abcd")),
            Claimed::Won => panic!("a recorded slot was claimed again"),
        }
    }

    #[tokio::test]
    async fn a_suite_and_an_experiment_of_one_name_claim_their_slots_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlotStore::shared(dir.path(), None);
        let now: Timestamp = "2026-11-24T09:01:00Z".parse().unwrap();
        let key = crate::due::suite_key("ready");
        for name in ["ready", key.as_str()] {
            let won = store.claim(&Claim::new(name, &slot(), now), None, now).await;
            assert_eq!(won.unwrap(), Claimed::Won, "{name}");
        }
        assert!(dir.path().join(".slots/ready/20261124T090000Z.json").is_file());
        assert!(
            dir.path()
                .join(".slots/.suites/ready/20261124T090000Z.json")
                .is_file()
        );
        let found = store
            .find(&key, &slot())
            .await
            .unwrap()
            .expect("the suite's claim");
        assert_eq!(found.experiment, "suite:ready");
        assert_eq!(lease_key(&key, &slot()), "slot#suite:ready#20261124T090000Z");
    }

    #[test]
    fn a_slot_lease_lasts_until_an_hour_after_the_next_slot_is_due() {
        let now: Timestamp = "2026-11-24T09:30:00Z".parse().unwrap();
        let next = Slot {
            at: "2026-12-01T09:00:00Z".parse().unwrap(),
            due_at: "2026-12-01T09:05:00Z".parse().unwrap(),
        };
        let life = lease_lifetime(Some(&next), now);
        assert_eq!(
            now.checked_add(life).unwrap(),
            "2026-12-01T10:05:00Z".parse().unwrap()
        );
        // Judged on a clock past the next slot: the margin still holds it.
        let late: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        assert_eq!(lease_lifetime(Some(&next), late), LEASE_MARGIN);
        // No slot follows: the slot stays the latest, and so does its lease.
        assert!(lease_lifetime(None, now) > Duration::from_secs(50 * 365 * 24 * 3600));
    }

    #[test]
    fn a_lease_names_the_claiming_host_and_process() {
        let now: Timestamp = "2026-11-24T09:31:02.345Z".parse().unwrap();
        let mut c = Claim::new("web", &slot(), now);
        c.host = "ci-runner-7".into();
        c.pid = 4242;
        assert_eq!(lease_key("web", &slot()), "slot#web#20261124T090000Z");
        let lease = Lease {
            key: lease_key("web", &slot()),
            holder: Holder {
                run_id: c.holder_id(),
                owner: "team-web".into(),
                host: c.host.clone(),
            },
            expires_at: now,
        };
        assert_eq!(lease.holder.run_id, "slot-ci-runner-7-4242-1795512662345");
        let back = Claim::from_lease("web", &slot(), "gd-locks", &lease);
        assert_eq!(back.host, "ci-runner-7");
        assert_eq!(back.pid, 4242);
        assert_eq!(back.claimed_at, now);
        assert_eq!(back.owner.as_deref(), Some("team-web"));
        assert_eq!(
            back.holder(),
            "ci-runner-7 pid 4242 at 2026-11-24 09:31:02Z (lease table `gd-locks`)"
        );
    }
}
