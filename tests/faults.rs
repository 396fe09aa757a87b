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
    gameday(s)
        .arg("run")
        .arg(&file)
        .arg("--runs-dir")
        .arg(s.runs())
        .spawn()
        .expect("spawn")
}

fn operations(j: &serde_json::Value) -> Vec<(String, bool)> {
    j["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["operation"].as_str().unwrap_or_default().to_string(),
                a["ok"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_instances_reboots_and_waits_until_running() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let out = finish(
        run(
            &s,
            &experiment(&fleet, "in-place", "ec2:reboot-instances", "all", "500ms"),
        )
        .await,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let ops = operations(&s.journal());
    assert!(
        ops.contains(&("ec2:RebootInstances".to_string(), true)),
        "{ops:?}"
    );
    assert!(
        ops.contains(&("ec2:DescribeInstances (wait running)".to_string(), true)),
        "{ops:?}"
    );
    assert_eq!(group_state(&c, &fleet.group).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_unhealthy_marks_instances_unhealthy_then_healthy_again() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let child = run(
        &s,
        &experiment(
            &fleet,
            "in-place",
            "autoscaling:set-unhealthy",
            "{ count: 2 }",
            "3s",
        ),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let unhealthy = group_state(&c, &fleet.group)
            .await
            .instances
            .iter()
            .filter(|(_, _, h)| h == "Unhealthy")
            .count();
        if unhealthy == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two instances should turn Unhealthy during the fault"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "healthy again, nothing else changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_instances_hits_the_copy_and_is_refused_in_place() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let out = finish(
        run(
            &s,
            &experiment(
                &fleet,
                "in-place",
                "ec2:terminate-instances",
                "{ count: 1 }",
                "1s",
            ),
        )
        .await,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        out.code, 7,
        "refused by the policy before touching anything: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout
            .contains("cannot be rolled back and the policy forbids it in place"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(group_state(&c, &fleet.group).await, before);

    let s = Scratch::new();
    let out = finish(
        run(
            &s,
            &experiment(
                &fleet,
                "parallel",
                "ec2:terminate-instances",
                "{ count: 1 }",
                "1s",
            ),
        )
        .await,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let terminated = j["targets"][0]["selected"][0]["id"]
        .as_str()
        .expect("a target")
        .to_string();
    assert_eq!(
        states(&c, std::slice::from_ref(&terminated)).await,
        vec!["terminated"],
        "the copy's instance was terminated"
    );
    assert!(
        !fleet.instances.contains(&terminated),
        "never an instance of the source"
    );
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "the source is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_params_are_checked_against_the_action() {
    let text = "version: 1\nname: p\nhypothesis: h\nenvironment: { autoscaling_group: g }\nguardrails: [{ alarm: a }]\nfaults:\n  - { name: r, action: ec2:reboot-instances, params: { force: true } }\n";
    let err = gameday::experiment::load_str(std::path::Path::new("p.yaml"), text)
        .expect_err("reboot takes no params")
        .to_string();
    assert!(
        err.contains("p.yaml:7:56: error: unknown key `force` in faults[1].params"),
        "{err}"
    );
    assert!(err.contains("this takes no keys"), "{err}");
}

/// An experiment with one fault of `action`, its `target` and `params` lines
/// (YAML flow mappings, or empty to leave them out).
fn with_params(
    fleet: &Fleet,
    mode: &str,
    action: &str,
    target: &str,
    params: &str,
    duration: &str,
) -> String {
    let mut fault = format!("  - name: f\n    action: {action}\n    duration: {duration}\n");
    if !target.is_empty() {
        fault.push_str(&format!("    target: {target}\n"));
    }
    if !params.is_empty() {
        fault.push_str(&format!("    params: {params}\n"));
    }
    format!(
        "version: 1
name: fault-test
hypothesis: the fleet rides it out
environment: {{ mode: {mode}, autoscaling_group: {group}, capacity: 2 }}
guardrails: [{{ alarm: {alarm} }}]
faults:
{fault}timing: {{ interval: 500ms, max_duration: 5m }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

/// Polls `check` every 100 ms until it holds, failing after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn undos(j: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "intent" && e["undo"]["kind"] == kind)
        .map(|e| e["undo"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_blackhole_isolates_instances_then_restores_exactly_their_groups() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = security_groups(&c, &fleet.instances).await;
    let state_before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "ec2:network-blackhole",
            "{ select: { count: 2 } }",
            "",
            "3s",
        ),
    )
    .await;
    eventually(
        "two instances behind the blackhole group",
        Duration::from_secs(30),
        || {
            let (c, ids, before) = (&c, &fleet.instances, &before);
            async move {
                security_groups(c, ids)
                    .await
                    .iter()
                    .zip(before)
                    .filter(|(now, was)| now != was)
                    .count()
                    == 2
            }
        },
    )
    .await;
    let isolated = security_groups(&c, &fleet.instances).await;
    let run_id = s.run_id().expect("a run");
    let holes = blackhole_groups(&c, &run_id).await;
    assert_eq!(holes.len(), 1, "one blackhole group for the run's VPC: {holes:?}");
    let (hole, name) = &holes[0];
    assert_eq!(name, &format!("gd-{run_id}-f"));
    assert_eq!(
        isolated.iter().filter(|g| g.as_slice() == [hole.clone()]).count(),
        2,
        "two instances have only the blackhole group: {isolated:?}"
    );
    let sg = c
        .ec2
        .describe_security_groups()
        .group_ids(hole)
        .send()
        .await
        .expect("DescribeSecurityGroups");
    let sg = &sg.security_groups()[0];
    assert!(sg.ip_permissions().is_empty(), "no ingress");
    assert!(
        sg.ip_permissions_egress().is_empty(),
        "no egress: the default rule is revoked"
    );

    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        security_groups(&c, &fleet.instances).await,
        before,
        "every instance has exactly its original groups"
    );
    assert!(
        blackhole_groups(&c, &run_id).await.is_empty(),
        "the blackhole group is deleted"
    );
    assert_eq!(group_state(&c, &fleet.group).await, state_before);
    let recorded = undos(&s.journal(), "restore_security_groups");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["instances"].as_array().expect("instances").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_blackhole_then_recover_restores_groups_and_deletes_the_group() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let before = security_groups(&c, &fleet.instances).await;
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "ec2:network-blackhole",
            "{ select: all }",
            "",
            "5m",
        ),
    )
    .await;
    eventually(
        "both instances behind the blackhole group",
        Duration::from_secs(30),
        || {
            let (c, ids, before) = (&c, &fleet.instances, &before);
            async move {
                security_groups(c, ids)
                    .await
                    .iter()
                    .zip(before)
                    .all(|(now, was)| now != was)
            }
        },
    )
    .await;
    signal(&child, libc::SIGKILL);
    finish(child, Duration::from_secs(10)).await;
    let run_id = s.run_id().expect("a run");
    assert_eq!(
        blackhole_groups(&c, &run_id).await.len(),
        1,
        "the group outlives the killed runner"
    );

    let out = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        security_groups(&c, &fleet.instances).await,
        before,
        "original groups restored from the journal alone"
    );
    assert!(
        blackhole_groups(&c, &run_id).await.is_empty(),
        "the temporary group is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_outage_stops_one_zone_and_removes_its_subnets_then_restores_both() {
    let c = clients().await;
    let mut fleet = fleet_in(&c, 2, &["a", "b"]).await;
    // moto launches every instance of a group in its first subnet: put zone
    // b's subnet first and grow the group, so that it spans both zones.
    let listed = group_subnets(&c, &fleet.group).await;
    let (sub_a, sub_b) = listed.split_once(',').expect("two subnets");
    let subnets = format!("{sub_b},{sub_a}");
    c.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&fleet.group)
        .vpc_zone_identifier(&subnets)
        .min_size(4)
        .max_size(4)
        .desired_capacity(4)
        .send()
        .await
        .expect("UpdateAutoScalingGroup");
    fleet.instances = group_state(&c, &fleet.group)
        .await
        .instances
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let before = group_state(&c, &fleet.group).await;
    let zone_b: Vec<String> = {
        let out = c
            .ec2
            .describe_instances()
            .set_instance_ids(Some(fleet.instances.clone()))
            .send()
            .await
            .expect("DescribeInstances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.placement().and_then(|p| p.availability_zone()) == Some("us-east-1b"))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    };
    assert_eq!(
        zone_b.len(),
        2,
        "the group spans both zones: {zone_b:?} of {:?}",
        fleet.instances
    );
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "ec2:az-outage",
            "{ select: all }",
            "{ az: us-east-1b }",
            "3s",
        ),
    )
    .await;
    eventually("zone b's instances stopped", Duration::from_secs(30), || {
        let (c, ids) = (&c, &zone_b);
        async move { states(c, ids).await.iter().all(|s| s == "stopped") }
    })
    .await;
    let during = group_subnets(&c, &fleet.group).await;
    assert_eq!(
        during.split(',').count(),
        1,
        "only zone a's subnet is left: {during}"
    );
    assert!(subnets.contains(&during), "{during} of {subnets}");
    let others: Vec<String> = fleet
        .instances
        .iter()
        .filter(|i| !zone_b.contains(i))
        .cloned()
        .collect();
    assert!(
        states(&c, &others).await.iter().all(|s| s == "running"),
        "zone a is untouched"
    );

    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_subnets(&c, &fleet.group).await,
        subnets,
        "the subnet list is restored exactly"
    );
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "every instance running again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_processes_resumes_only_what_the_run_suspended() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    c.autoscaling
        .suspend_processes()
        .auto_scaling_group_name(&fleet.group)
        .scaling_processes("AZRebalance")
        .send()
        .await
        .expect("SuspendProcesses");
    let before = group_state(&c, &fleet.group).await;
    assert_eq!(before.suspended, vec!["AZRebalance"]);
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "autoscaling:suspend-processes",
            "",
            "{ processes: [Launch, AZRebalance, HealthCheck] }",
            "3s",
        ),
    )
    .await;
    eventually("three processes suspended", Duration::from_secs(30), || {
        let (c, g) = (&c, &fleet.group);
        async move { group_state(c, g).await.suspended == vec!["AZRebalance", "HealthCheck", "Launch"] }
    })
    .await;
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "AZRebalance, suspended before the run, stays suspended"
    );
    let recorded = undos(&s.journal(), "resume_processes");
    assert_eq!(
        recorded[0]["processes"],
        serde_json::json!(["Launch", "HealthCheck"]),
        "the undo names only what this run suspended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_processes_in_parallel_mode_acts_on_the_copy_only() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let out = finish(
        run(
            &s,
            &with_params(
                &fleet,
                "parallel",
                "autoscaling:suspend-processes",
                "",
                "{ processes: [Launch] }",
                "1s",
            ),
        )
        .await,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let hit: Vec<String> = j["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["operation"] == "autoscaling:SuspendProcesses")
        .map(|a| a["resources"][0].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        hit,
        vec![format!(
            "gd-{}-{}",
            j["run_id"].as_str().expect("run id"),
            fleet.group
        )],
        "the copy, never the source"
    );
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "the source is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_drop_lowers_desired_and_min_then_restores_min_max_desired() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    c.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&fleet.group)
        .min_size(2)
        .max_size(5)
        .send()
        .await
        .expect("UpdateAutoScalingGroup");
    let sizes = group_state(&c, &fleet.group).await.sizes;
    assert_eq!(sizes, (2, 5, 3));
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "autoscaling:capacity-drop",
            "",
            "{ to: 1 }",
            "3s",
        ),
    )
    .await;
    eventually("desired 1 and min 1", Duration::from_secs(30), || {
        let (c, g) = (&c, &fleet.group);
        async move { group_state(c, g).await.sizes == (1, 5, 1) }
    })
    .await;
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let after = group_state(&c, &fleet.group).await;
    assert_eq!(after.sizes, sizes, "min, max and desired exactly as recorded");
    assert_eq!(after.instances.len(), 3, "the group is back to three instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_alarm_sets_the_state_then_sets_it_back() {
    let c = clients().await;
    let fleet = fleet(&c, 1).await;
    let paged = format!("{}-pager", fleet.group);
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name(&paged)
        .namespace("App")
        .metric_name("Latency")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    set_alarm(&c, &paged, "INSUFFICIENT_DATA").await;
    let s = Scratch::new();
    let child = run(
        &s,
        &with_params(
            &fleet,
            "in-place",
            "cloudwatch:force-alarm",
            "",
            &format!("{{ alarm: {paged} }}"),
            "3s",
        ),
    )
    .await;
    eventually("the alarm forced to ALARM", Duration::from_secs(30), || {
        let (c, a) = (&c, &paged);
        async move { alarm_state(c, a).await == "ALARM" }
    })
    .await;
    assert_eq!(
        alarm_state(&c, &fleet.alarm).await,
        "OK",
        "the guardrail is another alarm"
    );
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        alarm_state(&c, &paged).await,
        "INSUFFICIENT_DATA",
        "set back to the recorded state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_each_faults_calls_with_their_undos() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let text = with_params(
        &fleet,
        "in-place",
        "autoscaling:capacity-drop",
        "",
        "{ by_percent: 50 }",
        "1m",
    );
    let file = s.write("exp.yaml", &text);
    let out = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "acts on autoscaling group {} ({}: desired 2, 1 instance(s) removed)",
            fleet.group, fleet.group
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("calls autoscaling:UpdateAutoScalingGroup: 1 call(s) on 1 resource(s); undo autoscaling:UpdateAutoScalingGroup (capacity)"), "{}", out.stdout);

    let text = with_params(
        &fleet,
        "in-place",
        "ec2:network-blackhole",
        "{ select: all }",
        "",
        "1m",
    );
    let file = s.write("exp.yaml", &text);
    let out = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "calls ec2:CreateSecurityGroup: 1 call(s) on 1 resource(s); undo ec2:DeleteSecurityGroup"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("calls ec2:ModifyInstanceAttribute (groups): 1 call(s) on 2 resource(s); undo ec2:ModifyInstanceAttribute (original groups)"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_with_a_seed_picks_the_same_instances_and_another_seed_others() {
    let c = clients().await;
    let fleet = fleet(&c, 8).await;
    let s = Scratch::new();
    let file = s.write(
        "exp.yaml",
        &experiment(&fleet, "in-place", "ec2:stop-instances", "{ count: 3 }", "1m"),
    );
    let pick = |seed: &'static str| {
        let mut cmd = gameday(&s);
        cmd.args(["plan", "--output", "json", "--seed", seed]).arg(&file);
        async move {
            let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(30)).await;
            let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
            j["faults"][0]["targets"]["selected"]
                .as_array()
                .expect("selected")
                .iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let (a, b, other) = (pick("11").await, pick("11").await, pick("12").await);
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "the same seed picks the same instances");
    assert_ne!(a, other, "another seed picks others (8 choose 3 = 56 ways)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_empty_lets_a_fault_with_no_target_pass_without_any_call() {
    let c = clients().await;
    let fleet = fleet(&c, 1).await;
    let s = Scratch::new();
    let text = with_params(
        &fleet,
        "in-place",
        "ec2:stop-instances",
        "{ tags: { fleet: nobody-has-this }, allow_empty: true }",
        "",
        "1s",
    );
    let out = finish(run(&s, &text).await, Duration::from_secs(30)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        operations(&s.journal())
            .iter()
            .all(|(op, _)| op.starts_with("tags:")),
        "only the lock tags: {:?}",
        operations(&s.journal())
    );
}

#[test]
fn new_fault_params_are_checked_with_positions() {
    let exp = |fault: &str| {
        format!(
            "version: 1\nname: p\nhypothesis: h\nenvironment: {{ mode: in-place, autoscaling_group: g }}\nguardrails: [{{ alarm: guard }}]\nfaults:\n  - {fault}\n"
        )
    };
    let err = |fault: &str| {
        gameday::experiment::load_str(std::path::Path::new("p.yaml"), &exp(fault))
            .expect_err("invalid")
            .to_string()
    };

    let e = err(
        "{ name: s, action: autoscaling:suspend-processes, params: { processes: [Launch, HealthChek] } }",
    );
    assert!(
        e.contains(
            "p.yaml:7:85: error: faults[1].params.processes: unknown Auto Scaling process `HealthChek`"
        ),
        "{e}"
    );
    assert!(e.contains("did you mean `HealthCheck`?"), "{e}");

    let e = err("{ name: c, action: autoscaling:capacity-drop, params: { to: 1, by_percent: 50 } }");
    assert!(
        e.contains(
            "p.yaml:7:59: error: faults[1].params: expected exactly one of `to: N` or `by_percent: P`"
        ),
        "{e}"
    );
    let e = err("{ name: c, action: autoscaling:capacity-drop }");
    assert!(
        e.contains("p.yaml:7:5: error: faults[1].params: `autoscaling:capacity-drop` needs params"),
        "{e}"
    );

    let e = err("{ name: a, action: cloudwatch:force-alarm, params: { alarm: x, state: ALRM } }");
    assert!(
        e.contains("p.yaml:7:75: error: faults[1].params.state: `ALRM` is not an alarm state"),
        "{e}"
    );
    assert!(e.contains("did you mean `ALARM`?"), "{e}");
    let e = err("{ name: a, action: cloudwatch:force-alarm, params: { alarm: guard } }");
    assert!(e.contains("p.yaml:7:65: error: fault `a` forces alarm `guard`, which is also a guardrail of this experiment (line 5): the run would abort itself"), "{e}");

    let e = err("{ name: s, action: autoscaling:suspend-processes, target: { select: all } }");
    assert!(e.contains("p.yaml:7:65: error: faults[1].target.select: `autoscaling:suspend-processes` acts on Auto Scaling groups, not instances"), "{e}");
    let e = err("{ name: b, action: ec2:network-blackhole, params: { ports: [80] } }");
    assert!(e.contains("unknown key `ports` in faults[1].params"), "{e}");
}

#[test]
fn a_group_fault_in_parallel_mode_cannot_name_the_source() {
    let text = "version: 1\nname: p\nhypothesis: h\nenvironment: { autoscaling_group: web }\nguardrails: [{ alarm: guard }]\nfaults:\n  - { name: s, action: autoscaling:suspend-processes, target: { autoscaling_group: web } }\n";
    let e = gameday::experiment::load_str(std::path::Path::new("p.yaml"), text)
        .expect_err("invalid")
        .to_string();
    assert!(e.contains("p.yaml:7:5: error: fault `s`: in parallel mode a group fault acts on the run's copy, but its target names `web`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_blackhole_groups_of_expired_runs_and_spares_live_ones() {
    let c = clients().await;
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let past = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .expect("time");
    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .expect("time");
    let plant = |run: String, expires: jiff::Timestamp| {
        let (c, vpc) = (&c, vpc.clone());
        async move {
            let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
            let spec = aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(tag("gameday:run-id", &run))
                .tags(tag("gameday:expires-at", &expires.to_string()))
                .tags(tag("gameday:blackhole", "f"))
                .build();
            let name = format!("gd-{run}-f");
            c.ec2
                .create_security_group()
                .group_name(&name)
                .description("planted")
                .vpc_id(&vpc)
                .tag_specifications(spec)
                .send()
                .await
                .expect("CreateSecurityGroup");
            name
        }
    };
    let lost_run = unique("19990101-000000-lost");
    let live_run = unique("20990101-000000-live");
    let lost = plant(lost_run.clone(), past).await;
    plant(live_run.clone(), future).await;

    let s = Scratch::new();
    let out = finish(
        gameday(&s)
            .arg("cleanup")
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("security group {lost} in {vpc}")),
        "{}",
        out.stdout
    );
    assert!(
        blackhole_groups(&c, &lost_run).await.is_empty(),
        "the expired run's group is deleted"
    );
    let live = blackhole_groups(&c, &live_run).await;
    assert_eq!(live.len(), 1, "a live run's group stays");
    c.ec2
        .delete_security_group()
        .group_id(&live[0].0)
        .send()
        .await
        .expect("delete the live group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blast_radius_counts_the_instances_a_capacity_drop_removes() {
    let c = clients().await;
    let fleet = fleet(&c, 4).await;
    let s = Scratch::new();
    let policy = s.write(
        "half.yaml",
        &PERMISSIVE_POLICY.replace("max_percent_of_group: 100", "max_percent_of_group: 50"),
    );
    let plan = |params: &str| {
        let file = s.write(
            "exp.yaml",
            &with_params(&fleet, "in-place", "autoscaling:capacity-drop", "", params, "1m"),
        );
        let mut cmd = gameday(&s);
        cmd.arg("plan").arg(&file).arg("--policy").arg(&policy);
        async move { finish(cmd.spawn().expect("spawn"), Duration::from_secs(30)).await }
    };
    let out = plan("{ by_percent: 50 }").await;
    assert_eq!(out.code, 0, "2 of 4 is within 50%: {}{}", out.stdout, out.stderr);
    let out = plan("{ to: 1 }").await;
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{}: 3 of 4 instances (75%)", fleet.group)),
        "{}",
        out.stdout
    );
}

#[test]
fn forcing_a_guardrail_is_refused_also_when_spelled_with_asg() {
    let text = "version: 1\nname: p\nhypothesis: h\nenvironment: { mode: in-place, autoscaling_group: web }\nguardrails: [{ alarm: web-5xx }]\nfaults:\n  - { name: a, action: cloudwatch:force-alarm, params: { alarm: \"${asg}-5xx\" } }\n";
    let e = gameday::experiment::load_str(std::path::Path::new("p.yaml"), text)
        .expect_err("invalid")
        .to_string();
    assert!(
        e.contains(
            "fault `a` forces alarm `${asg}-5xx`, which is also a guardrail of this experiment (line 5)"
        ),
        "{e}"
    );
}
