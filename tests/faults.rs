//! Each fault against moto: inject it, see its effect in moto's state, roll it
//! back, and find the state as it was before.

use std::time::Duration;

use crate::support::*;

fn experiment(fleet: &Fleet, mode: &str, action: &str, select: &str, duration: &str) -> String {
    format!(
        "version: 1
name: fault-test
hypothesis: the fleet rides it out
environment: {{ mode: {mode}, autoscaling_group: {group}, capacity: 2 }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - name: f
    action: {action}
    target: {{ select: {select} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: 5m }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

async fn run(s: &Scratch, text: &str) -> tokio::process::Child {
    let file = s.write("exp.yaml", text);
    gameday(s).arg("run").arg(&file).arg("--runs-dir").arg(s.runs()).spawn().expect("spawn")
}

fn operations(j: &serde_json::Value) -> Vec<(String, bool)> {
    j["actions"].as_array().expect("actions").iter().map(|a| (a["operation"].as_str().unwrap_or_default().to_string(), a["ok"] == true)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_instances_reboots_and_waits_until_running() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let out = finish(run(&s, &experiment(&fleet, "in-place", "ec2:reboot-instances", "all", "500ms")).await, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let ops = operations(&s.journal());
    assert!(ops.contains(&("ec2:RebootInstances".to_string(), true)), "{ops:?}");
    assert!(ops.contains(&("ec2:DescribeInstances (wait running)".to_string(), true)), "{ops:?}");
    assert_eq!(group_state(&c, &fleet.group).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_unhealthy_marks_instances_unhealthy_then_healthy_again() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let child = run(&s, &experiment(&fleet, "in-place", "autoscaling:set-unhealthy", "{ count: 2 }", "3s")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let unhealthy = group_state(&c, &fleet.group).await.instances.iter().filter(|(_, _, h)| h == "Unhealthy").count();
        if unhealthy == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "two instances should turn Unhealthy during the fault");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(group_state(&c, &fleet.group).await, before, "healthy again, nothing else changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_instances_hits_the_copy_and_is_refused_in_place() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let out = finish(run(&s, &experiment(&fleet, "in-place", "ec2:terminate-instances", "{ count: 1 }", "1s")).await, Duration::from_secs(30)).await;
    assert_eq!(out.code, 7, "refused by the policy before touching anything: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("cannot be rolled back and the policy forbids it in place"), "{}{}", out.stdout, out.stderr);
    assert_eq!(group_state(&c, &fleet.group).await, before);

    let s = Scratch::new();
    let out = finish(run(&s, &experiment(&fleet, "parallel", "ec2:terminate-instances", "{ count: 1 }", "1s")).await, Duration::from_secs(90)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let terminated = j["targets"][0]["selected"][0]["id"].as_str().expect("a target").to_string();
    assert_eq!(states(&c, std::slice::from_ref(&terminated)).await, vec!["terminated"], "the copy's instance was terminated");
    assert!(!fleet.instances.contains(&terminated), "never an instance of the source");
    assert_eq!(group_state(&c, &fleet.group).await, before, "the source is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_params_are_checked_against_the_action() {
    let text = "version: 1\nname: p\nhypothesis: h\nenvironment: { autoscaling_group: g }\nguardrails: [{ alarm: a }]\nfaults:\n  - { name: r, action: ec2:reboot-instances, params: { force: true } }\n";
    let err = gameday::experiment::load_str(std::path::Path::new("p.yaml"), text).expect_err("reboot takes no params").to_string();
    assert!(err.contains("p.yaml:7:56: error: unknown key `force` in faults[1].params"), "{err}");
    assert!(err.contains("this takes no keys"), "{err}");
}
