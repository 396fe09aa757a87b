//! The team's own load generator (`environment.traffic.load`), for a
//! workload with no users yet: started once the copies are healthy, stopped
//! at teardown on every exit path.
//!
//! It runs in a process group of its own, with `GAMEDAY_RUN_ID` in its
//! environment; stopping it finds every process carrying that variable (so
//! `gameday recover` stops the generator of a runner killed with `kill -9`,
//! and children it spawned too) and signals their process groups: SIGTERM,
//! then SIGKILL for whatever is left after [`GRACE`]. Linux only (`/proc`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::model::UndoReport;

/// The generator's output (stdout and stderr) in the run folder.
pub const LOAD_LOG: &str = "load.log";
/// How long a generator has to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The copies' addresses, as the generator's environment tells them.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `ip:port` of each experiment-copy instance.
    pub experiment: Vec<String>,
    /// `ip:port` of each control-copy instance.
    pub control: Vec<String>,
}

impl Endpoints {
    /// The variables the generator gets (besides the runner's own environment).
    pub fn vars(&self, run_id: &str, run_dir: &Path) -> Vec<(String, String)> {
        let all: Vec<String> = self.experiment.iter().chain(&self.control).cloned().collect();
        vec![
            ("GAMEDAY_RUN_ID".into(), run_id.to_string()),
            ("GAMEDAY_RUN_DIR".into(), run_dir.display().to_string()),
            ("GAMEDAY_TARGETS".into(), all.join(",")),
            ("GAMEDAY_EXPERIMENT_TARGETS".into(), self.experiment.join(",")),
            ("GAMEDAY_CONTROL_TARGETS".into(), self.control.join(",")),
        ]
    }
}

/// Starts `command` in its own process group, output to the run folder's
/// [`LOAD_LOG`]. Returns its pid.
pub fn start(command: &[String], vars: &[(String, String)], run_dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("environment.traffic.load.command is empty"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join(LOAD_LOG))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let child = cmd.spawn()?;
    let pid = child.id();
    // Reaped in the background so it never lingers as a zombie of the runner.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// Processes whose environment says they belong to run `run_id`.
pub fn processes_of(run_id: &str) -> Vec<u32> {
    let needle = format!("GAMEDAY_RUN_ID={run_id}");
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// The process group of `pid`, from `/proc/PID/stat`.
fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after `)`.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn signal_groups(groups: &BTreeSet<u32>, sig: &str) {
    for g in groups {
        // `kill -SIG -- -PGID`: the whole group; a group already gone is no error here.
        let _ = std::process::Command::new("kill")
            .args([sig, "--", &format!("-{g}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Stops every process of run `run_id`'s load generator (their process
/// groups): SIGTERM, then SIGKILL after [`GRACE`]. Idempotent.
pub async fn stop(run_id: &str) -> UndoReport {
    let pids = processes_of(run_id);
    if pids.is_empty() {
        return UndoReport {
            gone: vec![format!("load generator of run {run_id}")],
            ..Default::default()
        };
    }
    let groups: BTreeSet<u32> = pids.iter().filter_map(|p| group_of(*p)).collect();
    signal_groups(&groups, "-TERM");
    let deadline = tokio::time::Instant::now() + GRACE;
    while !processes_of(run_id).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = processes_of(run_id);
    if !left.is_empty() {
        let groups: BTreeSet<u32> = left.iter().filter_map(|p| group_of(*p)).collect();
        signal_groups(&groups, "-KILL");
        // Anything that left its group (setsid) is killed by pid.
        for p in &left {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    UndoReport {
        restored: pids.iter().map(|p| format!("pid {p}")).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_started_generator_and_its_children_are_stopped_by_the_run_id() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let run_id = format!("test-load-{}", std::process::id());
        let endpoints = Endpoints {
            experiment: vec!["10.0.0.1:80".into()],
            control: vec!["10.0.0.2:80".into()],
        };
        let vars = endpoints.vars(&run_id, dir.path());
        let cmd: Vec<String> = [
            "sh",
            "-c",
            "echo $GAMEDAY_EXPERIMENT_TARGETS; sleep 300 & sleep 300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pid = start(&cmd, &vars, dir.path()).expect("starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while processes_of(&run_id).len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the generator and its children run"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(processes_of(&run_id).contains(&pid));
        let report = stop(&run_id).await;
        assert!(!report.restored.is_empty());
        assert!(processes_of(&run_id).is_empty(), "no process of the run is left");
        let again = stop(&run_id).await;
        assert!(again.restored.is_empty() && !again.gone.is_empty(), "idempotent");
        let log = std::fs::read_to_string(dir.path().join(LOAD_LOG)).expect("the log");
        assert_eq!(log.trim(), "10.0.0.1:80");
    }
}
