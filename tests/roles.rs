//! Runs as an assumed role, in another region (issue #17, item 2), end to
//! end against moto: the session is named after the run and journaled with
//! the account; the policy's account rule checks the assumed identity; an
//! `aws.region` wins over the command line's; `recover` assumes the same role
//! again; a suite's scorecard says where each run acted.
//!
//! moto's AssumeRole accepts any role ARN and checks neither trust policy nor
//! external id, and calls made with the credentials act in the role ARN's
//! account: the roles here are in moto's default account, where the fleets are.

use std::time::Duration;

use crate::support::*;

/// moto's default account: the one the test fleets live in.
const ACCOUNT: &str = "123456789012";

fn role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{}", unique("gameday-runner"))
}

/// The run's events, from its write-ahead log.
fn events_of(s: &Scratch, run_id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(s.runs().join(run_id).join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect()
}

fn connected(events: &[serde_json::Value]) -> Option<&serde_json::Value> {
    events.iter().find(|e| e["event"] == "connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_role_journals_its_session_named_after_the_run_and_the_account() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let role = role();
    let exp = format!(
        "{}aws: {{ role_arn: \"{role}\", external_id: shop-gameday-7f3a }}\n",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s")
    );
    let file = s.write("exp.yaml", &exp);
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "passed\n{}{}", out.stdout, out.stderr);
    let run_id = s.run_id().expect("a run");
    let events = events_of(&s, &run_id);
    let c_ev = connected(&events).expect("a connected event");
    assert_eq!(c_ev["session"], format!("gameday-{run_id}"));
    assert_eq!(c_ev["account"], ACCOUNT);
    assert_eq!(c_ev["role_arn"], role.as_str());
    assert_eq!(c_ev["external_id"], "shop-gameday-7f3a");
    assert_eq!(c_ev["region"], REGION);
    let role_name = role.rsplit('/').next().expect("a role name");
    assert_eq!(
        c_ev["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/gameday-{run_id}"),
        "CloudTrail's identity of every call names the run"
    );
    assert_eq!(
        events[1]["event"], "connected",
        "journaled right after run_started"
    );
    let gate = events
        .iter()
        .find(|e| e["event"] == "safety_gate")
        .expect("the safety gate");
    let accounts = gate["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"] == "accounts")
        .expect("the accounts rule");
    assert_eq!(accounts["passed"], true);
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_rule_not_matching_the_assumed_identity_refuses_before_injection() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let before = group_state(&c, &fleet.group).await;
    let policy = s.write(
        "policy.yaml",
        &format!("{PERMISSIVE_POLICY}accounts: [\"111111111111\"]\n"),
    );
    let exp = format!(
        "{}aws: {{ role_arn: \"{}\" }}\n",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s"),
        role()
    );
    let file = s.write("exp.yaml", &exp);
    // --account names an allowed account: the assumed identity wins over it.
    let out = finish(
        run_command(&s, &file)
            .args(["--account", "111111111111", "--policy"])
            .arg(&policy)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 7, "refused\n{}{}", out.stdout, out.stderr);
    let run_id = s.run_id().expect("a run");
    let events = events_of(&s, &run_id);
    assert_eq!(connected(&events).expect("connected")["account"], ACCOUNT);
    let journal = s.journal();
    assert_eq!(journal["verdict"], "not-run");
    let reason = journal["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("account {ACCOUNT} (assumed role")),
        "the refusal names the assumed account: {reason}"
    );
    assert!(!events.iter().any(|e| e["event"] == "intent"), "no call was made");
    assert_eq!(group_state(&c, &fleet.group).await, before, "nothing was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiments_region_wins_over_the_command_lines() {
    let west = clients_in("us-west-2").await;
    let fleet = fleet(&west, 2).await;
    let s = Scratch::new();
    let exp = format!(
        "{}aws: {{ region: us-west-2 }}\n",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s")
    );
    let file = s.write("exp.yaml", &exp);
    // The environment says us-east-1 and so does --region: the group is only in us-west-2.
    let out = finish(
        run_command(&s, &file)
            .args(["--region", REGION])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "passed in us-west-2\n{}{}", out.stdout, out.stderr);
    let journal = s.journal();
    assert_eq!(journal["region"], "us-west-2");
    let hit: Vec<String> = journal["targets"][0]["selected"]
        .as_array()
        .expect("selected targets")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(hit.len(), 1, "{}", journal["targets"]);
    assert!(fleet.instances.contains(&hit[0]), "the us-west-2 fleet was hit");
    assert!(
        states(&west, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "rolled back in us-west-2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_of_a_killed_role_run_assumes_the_role_again_and_finishes_it() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let exp = format!(
        "{}aws: {{ role_arn: \"{}\", external_id: x-1 }}\n",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 2 }", "10m"),
        role()
    );
    let file = s.write("exp.yaml", &exp);
    let child = run_command(&s, &file).spawn().expect("spawn");
    wait_until_any_stopped(&c, &fleet.instances).await;
    signal(&child, libc::SIGKILL);
    let killed = finish(child, Duration::from_secs(10)).await;
    assert_eq!(killed.code, -1, "killed by a signal");
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .any(|st| st != "running"),
        "the fault outlives the killed runner"
    );
    let run_id = s.run_id().expect("a run");
    let out = finish(
        recover_command(&s, &run_id)
            // The command line's region is not the run's: the journal's wins.
            .args(["--region", "eu-west-1"])
            .spawn()
            .expect("spawn recover"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("recovered"), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!("as session gameday-{run_id}")),
        "recover assumed the run's role again: {}",
        out.stderr
    );
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "every instance runs again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_across_roles_and_regions_says_where_each_experiment_ran() {
    let (east, west) = (clients().await, clients_in("us-west-2").await);
    let (here, there) = (fleet(&east, 2).await, fleet(&west, 2).await);
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("experiments")).expect("mkdir");
    std::fs::create_dir_all(s.path().join("suites")).expect("mkdir");
    let exp = |f: &Fleet, name: &str| {
        stop_experiment(&f.group, &f.alarm, "{ count: 1 }", "1s")
            .replace("name: test-stop", &format!("name: {name}"))
    };
    s.write("experiments/here.yaml", &exp(&here, "here"));
    s.write("experiments/there.yaml", &exp(&there, "there"));
    let file = s.write(
        "suites/places.yaml",
        &format!(
            "version: 1
name: places
experiments:
  - path: ../experiments/here.yaml
    aws: {{ role_arn: \"{}\" }}
  - path: ../experiments/there.yaml
    aws: {{ region: us-west-2 }}
",
            role()
        ),
    );
    let out = finish(
        gameday(&s)
            .args(["suite", "run"])
            .arg(&file)
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(out.code, 0, "GO\n{}{}", out.stdout, out.stderr);
    let dir = std::fs::read_dir(s.runs())
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("suite-"))
        })
        .expect("the suite's folder");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("suite.json")).expect("suite.json"))
            .expect("JSON");
    let rows = card["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["experiment"], "here");
    assert_eq!(rows[0]["account"], ACCOUNT);
    assert_eq!(rows[0]["region"], REGION);
    assert_eq!(rows[1]["experiment"], "there");
    assert_eq!(rows[1]["region"], "us-west-2");
    let md = std::fs::read_to_string(dir.join("scorecard.md")).expect("scorecard.md");
    assert!(md.contains("| where |"), "{md}");
    assert!(md.contains(&format!("{ACCOUNT} / {REGION}")), "{md}");
    assert!(md.contains("| us-west-2 |"), "{md}");
}

#[test]
fn a_wrong_aws_block_is_named_at_its_line_and_column() {
    let base = stop_experiment("web", "web-5xx", "{ count: 1 }", "1s");
    let errors = |aws: &str| {
        gameday::experiment::load_str(std::path::Path::new("exp.yaml"), &format!("{base}{aws}"))
            .map(|_| ())
            .expect_err("an invalid aws block")
            .to_string()
    };
    let line = base.lines().count() + 1;
    let e = errors("aws: { role_arn: \"arn:aws:iam::12:role/x\" }\n");
    assert!(
        e.contains(&format!(
            "exp.yaml:{line}:18: error: aws.role_arn: `arn:aws:iam::12:role/x` is not valid"
        )) && e.contains("expected an IAM role ARN"),
        "{e}"
    );
    let e = errors("aws: { external_id: abc }\n");
    assert!(e.contains("aws.external_id is set without aws.role_arn"), "{e}");
    let e = errors("aws: { regoin: eu-west-1 }\n");
    assert!(e.contains("did you mean `region`?"), "{e}");
}
