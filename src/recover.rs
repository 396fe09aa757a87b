//! Finishing what a run left behind.
//!
//! `gameday recover RUN_ID` reads a run's write-ahead journal and undoes every
//! setup and inject call that has no successful rollback yet — after the
//! runner was killed (`kill -9`, machine loss) or gave up on a rollback. Every
//! undo is idempotent, so running it twice is safe; what it does is appended
//! to the same journal.
//!
//! `gameday cleanup` is the safety net for runs whose journal is lost with
//! their machine: it finds resources by their `gameday:*` tags (clones, their
//! instances, network-blackhole security groups, lock tags; the leases of the
//! policy's lock table) and removes those whose run is finished or expired.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::{Aws, AwsError, api};
use crate::engine::{self, Ctx, Reporter};
use crate::environment::{self, CLONE_OF_TAG, EXPIRES_TAG, RUN_ID_TAG, traffic};
use crate::faults::{BLACKHOLE_TAG, Undo};
use crate::journal::{self, Entry, Event, Journal, JournalError, Pending, Verdict};
use crate::lease;
use crate::lock::{self, LOCK_TAG};

/// Why recovery could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// No such run folder.
    #[error("no run `{run_id}` in {}: pass --runs-dir if the runs are elsewhere", dir.display())]
    NoSuchRun {
        /// The run asked for.
        run_id: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// The run id is refused: not a run id, or a symlink out of the runs folder.
    #[error(transparent)]
    RunName(#[from] journal::RunNameError),
    /// The run's runner may still be alive; recovering under it would race it.
    #[error(
        "run {run_id} may still be running ({why}): stop it with Ctrl-C (it rolls back by itself), or pass --force if you are sure it is gone"
    )]
    Alive {
        /// The run.
        run_id: String,
        /// Why we think so.
        why: String,
    },
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The state of one run folder, as far as recovery is concerned.
#[derive(Debug)]
pub struct RunState {
    /// The run.
    pub run_id: String,
    /// Its experiment.
    pub experiment: String,
    /// When it started.
    pub started_at: Timestamp,
    /// Its last verdict, if it wrote one.
    pub verdict: Option<Verdict>,
    /// Calls not yet undone, newest first.
    pub pending: Vec<Pending>,
    /// Why the runner might still be alive, if it might.
    pub alive: Option<String>,
}

/// Reads a run folder's state.
pub fn state(dir: &Path, now: Timestamp) -> Result<Option<RunState>, JournalError> {
    let events = journal::read_events(dir)?;
    Ok(state_of(&events, now))
}

fn state_of(events: &[Entry], now: Timestamp) -> Option<RunState> {
    let first = events.first()?;
    let Event::RunStarted {
        run_id,
        experiment,
        pid,
        host,
        expires_at,
        ..
    } = &first.event
    else {
        return None;
    };
    let verdict = events.iter().rev().find_map(|e| match &e.event {
        Event::Verdict { verdict, .. } => Some(*verdict),
        _ => None,
    });
    let alive = if verdict.is_some() {
        None
    } else {
        runner_alive(*pid, host, *expires_at, now)
    };
    Some(RunState {
        run_id: run_id.clone(),
        experiment: experiment.clone(),
        started_at: first.at,
        verdict,
        pending: journal::pending_undos(events),
        alive,
    })
}

/// Whether the process that wrote a journal may still be running it.
fn runner_alive(pid: u32, host: &str, expires_at: Option<Timestamp>, now: Timestamp) -> Option<String> {
    if host == crate::util::hostname() && !host.is_empty() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let is_gameday = String::from_utf8_lossy(&cmdline).contains("gameday");
        return is_gameday.then(|| format!("its runner, pid {pid}, is alive on this machine"));
    }
    // Another machine: only the expiry can tell.
    match expires_at {
        Some(t) if t > now => Some(format!(
            "it ran on `{host}`, which cannot be checked from here, and does not expire until {t}"
        )),
        _ => None,
    }
}

/// Every run in `runs_dir` that has something left to undo and no live runner, oldest first.
pub fn needing_recovery(runs_dir: &Path) -> Result<Vec<RunState>, JournalError> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Ok(out);
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(journal::EVENTS_FILE).exists())
        .collect();
    dirs.sort();
    for d in dirs {
        if let Some(s) = state(&d, now)?
            && !s.pending.is_empty()
            && s.alive.is_none()
        {
            out.push(s);
        }
    }
    Ok(out)
}

/// What `recover` did.
#[derive(Debug)]
pub struct Recovered {
    /// Undos completed now.
    pub undone: usize,
    /// Undos that still failed.
    pub unfinished: Vec<crate::faults::Undo>,
    /// Whether recovery wrote to the run's journal (a verdict, its undos), so
    /// that the run's records (journal.json, reports) must be written again.
    pub journaled: bool,
}

/// Undoes everything run `run_id` left behind, journaling each step in its
/// events file. The caller writes the run's records again when the result
/// says it was journaled (`output::write_run_records`). With `remote` (the
/// shared runs store; the caller has fetched the run's events into `runs_dir`
/// first) every step is also written there before it is taken.
pub async fn recover(
    aws: &Aws,
    runs_dir: &Path,
    run_id: &str,
    force: bool,
    remote: Option<journal::Remote>,
    progress: Box<dyn Reporter>,
) -> Result<Recovered, RecoverError> {
    let dir = journal::run_dir(runs_dir, run_id)?;
    if !dir.join(journal::EVENTS_FILE).exists() {
        return Err(RecoverError::NoSuchRun {
            run_id: run_id.to_string(),
            dir: runs_dir.to_path_buf(),
        });
    }
    let (journal, events) = Journal::open_append_with(&dir, remote)?;
    let Some(st) = state_of(&events, Timestamp::now()) else {
        return Err(RecoverError::NoSuchRun {
            run_id: run_id.to_string(),
            dir: runs_dir.to_path_buf(),
        });
    };
    if let Some(why) = st.alive
        && !force
    {
        return Err(RecoverError::Alive {
            run_id: run_id.to_string(),
            why,
        });
    }
    let ctx = Ctx {
        aws: aws.clone(),
        journal,
        progress,
    };
    let had_verdict = st.verdict.is_some();
    if st.pending.is_empty() {
        if !had_verdict {
            ctx.emit_best_effort(Event::Verdict {
                verdict: Verdict::Error,
                reason: "the runner stopped before writing its verdict; nothing was left to undo".into(),
                unfinished: Vec::new(),
            });
        }
        return Ok(Recovered {
            undone: 0,
            unfinished: Vec::new(),
            journaled: !had_verdict,
        });
    }
    // The one write that must succeed when the run is in a shared store: of
    // two recovers of one run, the second is refused here (its chunk exists).
    match ctx.emit(Event::Recovery {
        pending: st.pending.len(),
    }) {
        Err(e @ JournalError::Store { taken: true, .. }) => return Err(e.into()),
        Err(e) => ctx.progress.line(&format!("warning: {e}")),
        Ok(()) => {}
    }
    let hurry = CancellationToken::new();
    let mut unfinished = Vec::new();
    // Newest first: faults before the environment they ran in, locks last.
    for p in &st.pending {
        if let Err(u) = engine::rollback_step(&ctx, &p.fault, p.action_id, &p.undo, &hurry).await {
            unfinished.push(u);
        }
    }
    let undone = st.pending.len() - unfinished.len();
    let reason = if unfinished.is_empty() {
        format!(
            "recovered by `gameday recover`: {undone} call(s) undone after the run {}",
            if had_verdict {
                "gave up"
            } else {
                "stopped without finishing (killed or crashed)"
            }
        )
    } else {
        let what: Vec<String> = unfinished.iter().map(Undo::describe).collect();
        format!(
            "`gameday recover` could not finish: still to do: {}",
            what.join("; ")
        )
    };
    ctx.emit_best_effort(Event::Verdict {
        verdict: Verdict::Error,
        reason,
        unfinished: unfinished.clone(),
    });
    ctx.progress.finish();
    Ok(Recovered {
        undone,
        unfinished,
        journaled: true,
    })
}

/// One thing `cleanup` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A copy's target group: its weight is given back to the source's
    /// target group in every listener rule, then it is deleted.
    TargetGroup {
        /// Its ARN.
        arn: String,
        /// Its name.
        name: String,
        /// The source's target group (its `gameday:traffic-source` tag).
        source: Option<String>,
        /// The copy attached to it.
        copy: Option<String>,
        /// Its run.
        run_id: String,
        /// Why it may go.
        why: String,
    },
    /// A clone group to delete (with its instances).
    Clone {
        /// The group.
        group: String,
        /// Its run.
        run_id: String,
        /// Why it may go.
        why: String,
    },
    /// An instance launched by a clone that is gone, to terminate.
    Instance {
        /// The instance.
        id: String,
        /// Its run.
        run_id: String,
        /// Why it may go.
        why: String,
    },
    /// A network-blackhole security group to delete.
    SecurityGroup {
        /// Its name.
        name: String,
        /// Its VPC.
        vpc_id: String,
        /// Its run.
        run_id: String,
        /// Why it may go.
        why: String,
    },
    /// A lease to release from the policy's lock table.
    Lease {
        /// The table.
        table: String,
        /// The lease's key.
        key: String,
        /// The run holding it.
        run_id: String,
        /// Why it may go.
        why: String,
    },
    /// A lock tag to remove.
    Lock {
        /// The locked group or instance.
        resource: String,
        /// Whether it is a group (else an instance).
        is_group: bool,
        /// The run that took it.
        run_id: String,
        /// Why it may go.
        why: String,
    },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::TargetGroup {
                name, run_id, why, ..
            } => write!(
                f,
                "target group {name} (a copy's, made by run {run_id}; {why}): listener rules given back to the source first"
            ),
            Leftover::Clone { group, run_id, why } => write!(
                f,
                "Auto Scaling group {group} (a clone made by run {run_id}; {why})"
            ),
            Leftover::Instance { id, run_id, why } => {
                write!(f, "instance {id} (launched by a clone of run {run_id}; {why})")
            }
            Leftover::Lock {
                resource,
                run_id,
                why,
                ..
            } => write!(f, "lock tag on {resource} (taken by run {run_id}; {why})"),
            Leftover::Lease {
                table,
                key,
                run_id,
                why,
            } => write!(f, "lease {key} in table {table} (held by run {run_id}; {why})"),
            Leftover::SecurityGroup {
                name,
                vpc_id,
                run_id,
                why,
            } => write!(
                f,
                "security group {name} in {vpc_id} (a network blackhole of run {run_id}; {why})"
            ),
        }
    }
}

/// Whether run `run_id`'s resources may be removed: its local journal says it
/// finished, or its expiry has passed; never while its runner may be alive.
fn may_clean(runs_dir: &Path, run_id: &str, expires_at: Option<Timestamp>, now: Timestamp) -> Option<String> {
    // The id comes from a tag anyone with access can write: a journal is
    // consulted only in a folder of the runs folder; otherwise the expiry decides.
    let dir = journal::run_dir(runs_dir, run_id).ok();
    if let Some(Ok(Some(st))) = dir.map(|dir| state(&dir, now)) {
        if st.alive.is_some() {
            return None;
        }
        if st.verdict.is_some() {
            return Some("its run has finished".into());
        }
        return Some("its runner is gone".into());
    }
    match expires_at {
        Some(t) if t <= now => Some(format!("expired at {t}")),
        _ => None,
    }
}

/// Finds every gameday resource whose run is finished or expired, and the
/// leases of `lease_table` (the policy's `locks.table`) whose run is.
pub async fn find_leftovers(
    aws: &Aws,
    runs_dir: &Path,
    lease_table: Option<&str>,
) -> Result<Vec<Leftover>, AwsError> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    if let Some(table) = lease_table {
        for l in lease::all(aws, table).await.map_err(|e| e.to_aws())? {
            if let Some(why) = may_clean(runs_dir, &l.holder.run_id, Some(l.expires_at), now) {
                out.push(Leftover::Lease {
                    table: table.to_string(),
                    key: l.key,
                    run_id: l.holder.run_id,
                    why,
                });
            }
        }
    }
    let mut live_groups = std::collections::BTreeSet::new();

    // Target groups first: their listener rules go back before anything else goes.
    let mut arns = Vec::new();
    let mut pages = aws.elbv2.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("elasticloadbalancing", "DescribeTargetGroups"))?;
        for tg in page.target_groups() {
            if let (Some(arn), Some(name)) = (tg.target_group_arn(), tg.target_group_name())
                && name.starts_with("gd-")
            {
                arns.push((arn.to_string(), name.to_string()));
            }
        }
    }
    let all: Vec<String> = arns.iter().map(|(a, _)| a.clone()).collect();
    let tags = traffic::target_group_tags(aws, &all).await?;
    for (arn, name) in arns {
        let Some(t) = tags.get(&arn) else { continue };
        let Some(run_id) = t.get(RUN_ID_TAG).cloned() else {
            continue;
        };
        if let Some(why) = may_clean(
            runs_dir,
            &run_id,
            t.get(EXPIRES_TAG).and_then(|t| t.parse().ok()),
            now,
        ) {
            out.push(Leftover::TargetGroup {
                arn,
                name,
                source: t.get(traffic::TRAFFIC_SOURCE_TAG).cloned(),
                copy: t.get(traffic::COPY_TAG).cloned(),
                run_id,
                why,
            });
        }
    }

    let tagged = aws_sdk_autoscaling::types::Filter::builder()
        .name("tag-key")
        .values(RUN_ID_TAG)
        .build();
    let mut pages = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .filters(tagged)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
        for g in page.auto_scaling_groups() {
            let tag = |k: &str| {
                g.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            let (Some(name), Some(run_id)) = (g.auto_scaling_group_name(), tag(RUN_ID_TAG)) else {
                continue;
            };
            live_groups.insert(name.to_string());
            if let Some(why) = may_clean(
                runs_dir,
                &run_id,
                tag(EXPIRES_TAG).and_then(|t| t.parse().ok()),
                now,
            ) {
                out.push(Leftover::Clone {
                    group: name.to_string(),
                    run_id,
                    why,
                });
            }
        }
    }

    let cloned = aws_sdk_ec2::types::Filter::builder()
        .name("tag-key")
        .values(CLONE_OF_TAG)
        .build();
    let states = aws_sdk_ec2::types::Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build();
    let mut pages = aws
        .ec2
        .describe_instances()
        .filters(cloned)
        .filters(states)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2", "DescribeInstances"))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            let (Some(id), Some(run_id)) = (i.instance_id(), tag(RUN_ID_TAG)) else {
                continue;
            };
            let in_live_group = tag("aws:autoscaling:groupName").is_some_and(|g| live_groups.contains(&g));
            if in_live_group {
                continue; // deleted together with its group
            }
            if let Some(why) = may_clean(
                runs_dir,
                &run_id,
                tag(EXPIRES_TAG).and_then(|t| t.parse().ok()),
                now,
            ) {
                out.push(Leftover::Instance {
                    id: id.to_string(),
                    run_id,
                    why,
                });
            }
        }
    }

    let blackholes = aws_sdk_ec2::types::Filter::builder()
        .name("tag-key")
        .values(BLACKHOLE_TAG)
        .build();
    let mut pages = aws
        .ec2
        .describe_security_groups()
        .filters(blackholes)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2", "DescribeSecurityGroups"))?;
        for g in page.security_groups() {
            let tag = |k: &str| {
                g.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            let (Some(name), Some(vpc_id), Some(run_id)) = (g.group_name(), g.vpc_id(), tag(RUN_ID_TAG))
            else {
                continue;
            };
            if let Some(why) = may_clean(
                runs_dir,
                &run_id,
                tag(EXPIRES_TAG).and_then(|t| t.parse().ok()),
                now,
            ) {
                out.push(Leftover::SecurityGroup {
                    name: name.to_string(),
                    vpc_id: vpc_id.to_string(),
                    run_id,
                    why,
                });
            }
        }
    }

    let key = aws_sdk_autoscaling::types::Filter::builder()
        .name("key")
        .values(LOCK_TAG)
        .build();
    let mut pages = aws
        .autoscaling
        .describe_tags()
        .filters(key)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for t in page.map_err(api("autoscaling", "DescribeTags"))?.tags() {
            if let (Some(res), Some((run_id, until))) = (t.resource_id(), t.value().and_then(lock::parse))
                && let Some(why) = may_clean(runs_dir, &run_id, Some(until), now)
            {
                out.push(Leftover::Lock {
                    resource: res.to_string(),
                    is_group: true,
                    run_id,
                    why,
                });
            }
        }
    }
    let key = aws_sdk_ec2::types::Filter::builder()
        .name("key")
        .values(LOCK_TAG)
        .build();
    let mut pages = aws.ec2.describe_tags().filters(key).into_paginator().send();
    while let Some(page) = pages.next().await {
        for t in page.map_err(api("ec2", "DescribeTags"))?.tags() {
            if let (Some(res), Some((run_id, until))) = (t.resource_id(), t.value().and_then(lock::parse))
                && let Some(why) = may_clean(runs_dir, &run_id, Some(until), now)
            {
                out.push(Leftover::Lock {
                    resource: res.to_string(),
                    is_group: false,
                    run_id,
                    why,
                });
            }
        }
    }
    Ok(out)
}

/// Removes one leftover. Idempotent.
pub async fn remove(aws: &Aws, leftover: &Leftover) -> Result<(), AwsError> {
    let hurry = CancellationToken::new();
    match leftover {
        Leftover::TargetGroup {
            arn,
            name,
            source,
            copy,
            ..
        } => {
            if let Some(source) = source {
                traffic::release_rules(aws, arn, source).await?;
            }
            traffic::delete_target_group(aws, name, copy.as_deref())
                .await
                .map(drop)
        }
        Leftover::Clone { group, .. } => environment::delete_clone(aws, group, &hurry).await.map(drop),
        Leftover::Instance { id, .. } => {
            aws.ec2
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(api("ec2", "TerminateInstances"))?;
            Ok(())
        }
        // Only the journal knows the instances' original groups; an instance
        // still in the group makes the delete fail (use `gameday recover`).
        Leftover::SecurityGroup { name, vpc_id, .. } => {
            let now = CancellationToken::new();
            now.cancel();
            crate::faults::delete_blackhole_group(aws, vpc_id, name, &now)
                .await
                .map(drop)
        }
        Leftover::Lease {
            table, key, run_id, ..
        } => lease::release(aws, table, std::slice::from_ref(key), run_id)
            .await
            .map(drop),
        Leftover::Lock {
            resource,
            is_group,
            run_id,
            ..
        } => {
            let (groups, instances) = if *is_group {
                (vec![resource.clone()], vec![])
            } else {
                (vec![], vec![resource.clone()])
            };
            lock::release(aws, &groups, &instances, run_id).await.map(drop)
        }
    }
}
