//! The kill switch (issue #17, item 3), end to end against moto: `gameday
//! halt` from another process aborts a running experiment and rolls it back;
//! while halted, new runs are refused before anything is touched; `gameday
//! resume` lets them run again. Each test has its own parameter (the policy's
//! `halt.parameter`), so that halting here never stops another test's run.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

/// The permissive policy with its own kill switch; returns the policy file and the parameter.
fn halt_policy(s: &Scratch) -> (PathBuf, String) {
    let parameter = format!("/gameday-test/{}/halt", unique("halt"));
    let text = format!("{PERMISSIVE_POLICY}halt: {{ parameter: {parameter} }}\n");
    (s.write("halt-policy.yaml", &text), parameter)
}

/// `gameday ARGS --policy POLICY`, run to its end.
async fn gameday_with(s: &Scratch, policy: &PathBuf, args: &[&str]) -> Finished {
    let child = gameday(s)
        .args(args)
        .arg("--policy")
        .arg(policy)
        .spawn()
        .expect("spawn gameday");
    finish(child, Duration::from_secs(60)).await
}

/// The only run's folder (the runs folder also holds the catalog).
fn run_dir(s: &Scratch) -> PathBuf {
    std::fs::read_dir(s.runs())
        .expect("runs folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.join("events.jsonl").exists())
        .expect("a run folder")
}

/// The only run's journal.json.
fn journal_json(s: &Scratch) -> serde_json::Value {
    s.journal_of(&run_dir(s))
}

/// The only run's events, from its write-ahead log.
fn events(s: &Scratch) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir(s).join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect()
}

fn named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_from_another_process_aborts_a_running_experiment_and_rolls_it_back() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let (policy, parameter) = halt_policy(&s);
    // Long enough that only the halt ends it.
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 2 }", "10m"),
    );
    let child = run_command(&s, &file)
        .arg("--policy")
        .arg(&policy)
        .spawn()
        .expect("spawn run");
    let stopped = wait_until_any_stopped(&c, &fleet.instances).await;
    assert!(!stopped.is_empty(), "the fault took effect");

    let halted = gameday_with(&s, &policy, &["halt", "--reason", "incident 4711"]).await;
    assert_eq!(halted.code, 0, "halt: {}{}", halted.stdout, halted.stderr);
    let run = finish(child, Duration::from_secs(120)).await;
    let resumed = gameday_with(&s, &policy, &["resume"]).await;
    assert_eq!(resumed.code, 0, "resume: {}", resumed.stderr);

    assert_eq!(
        run.code, 4,
        "aborted; stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "every stopped instance runs again"
    );
    let journal = journal_json(&s);
    assert_eq!(journal["verdict"], "aborted");
    let reason = journal["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("incident 4711") && reason.contains(&parameter),
        "the verdict names the halt: {reason}"
    );
    let events = events(&s);
    let halts = named(&events, "halted");
    assert_eq!(halts.len(), 1, "one halted event");
    assert_eq!(halts[0]["reason"], "incident 4711");
    assert_eq!(halts[0]["parameter"], parameter.as_str());
    assert!(
        halts[0]["by"].as_str().is_some_and(|b| b.contains('@')),
        "who halted: {}",
        halts[0]["by"]
    );
    assert_eq!(named(&events, "rollback_started").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_halted_a_run_is_refused_untouched_and_after_resume_it_runs() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let (policy, parameter) = halt_policy(&s);
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s"),
    );
    let before = group_state(&c, &fleet.group).await;

    let halted = gameday_with(&s, &policy, &["halt", "--reason", "freeze for the launch"]).await;
    assert_eq!(halted.code, 0, "halt: {}", halted.stderr);
    let status = gameday_with(&s, &policy, &["halt", "--status"]).await;
    assert_eq!(status.code, 7, "status while halted exits 7: {}", status.stdout);
    assert!(
        status.stdout.contains("freeze for the launch"),
        "{}",
        status.stdout
    );

    let refused = finish(
        run_command(&s, &file)
            .arg("--policy")
            .arg(&policy)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(refused.code, 7, "refused; stderr: {}", refused.stderr);
    let journal = journal_json(&s);
    assert_eq!(journal["verdict"], "not-run");
    assert!(
        journal["reason"]
            .as_str()
            .is_some_and(|r| r.contains("freeze for the launch") && r.contains("nothing was injected")),
        "{}",
        journal["reason"]
    );
    let events = events(&s);
    assert_eq!(named(&events, "halted").len(), 1, "the refusal is journaled");
    assert_eq!(named(&events, "halted")[0]["parameter"], parameter.as_str());
    assert!(named(&events, "intent").is_empty(), "no call was made");
    assert_eq!(group_state(&c, &fleet.group).await, before, "nothing was touched");

    let resumed = gameday_with(&s, &policy, &["resume"]).await;
    assert_eq!(resumed.code, 0, "resume: {}", resumed.stderr);
    let status = gameday_with(&s, &policy, &["halt", "--status"]).await;
    assert_eq!(status.code, 0, "status after resume exits 0: {}", status.stdout);

    let s2 = Scratch::new();
    let ran = finish(
        run_command(&s2, &file)
            .arg("--policy")
            .arg(&policy)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(ran.code, 0, "the run proceeds; stderr: {}", ran.stderr);
    assert_eq!(journal_json(&s2)["verdict"], "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_while_halted_refuses_without_claiming_the_slot() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let (policy, _) = halt_policy(&s);
    // Due on Tuesdays at 10:00 Paris time; GAMEDAY_NOW is half an hour after a slot.
    let exp = format!(
        "{}schedule:\n  cron: \"0 10 * * TUE\"\n  timezone: Europe/Paris\n",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s")
    );
    let file = s.write("exp.yaml", &exp);
    let halted = gameday_with(&s, &policy, &["halt", "--reason", "maintenance"]).await;
    assert_eq!(halted.code, 0, "halt: {}", halted.stderr);
    let due = finish(
        gameday(&s)
            .arg("run-due")
            .arg(&file)
            .arg("--policy")
            .arg(&policy)
            .arg("--runs-dir")
            .arg(s.runs())
            .env("GAMEDAY_NOW", "2026-11-24T09:30:00Z")
            .spawn()
            .expect("spawn run-due"),
        Duration::from_secs(60),
    )
    .await;
    let resumed = gameday_with(&s, &policy, &["resume"]).await;
    assert_eq!(resumed.code, 0, "resume: {}", resumed.stderr);
    assert_eq!(
        due.code, 7,
        "refused; stdout: {}\nstderr: {}",
        due.stdout, due.stderr
    );
    assert!(due.stderr.contains("maintenance"), "{}", due.stderr);
    let started = std::fs::read_dir(s.runs()).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.path().join("events.jsonl").exists()))
            .count()
    });
    assert_eq!(started, 0, "no run started");
    assert!(
        !s.runs().join(".slots").exists(),
        "the slot is not claimed: it is still due after `gameday resume`"
    );
}
