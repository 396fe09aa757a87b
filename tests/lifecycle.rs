//! The invariants of issue #4, end to end against moto: faults go into a
//! temporary copy (parallel mode) and never reach the source; on every exit
//! path every fault is rolled back and every temporary resource deleted; a run
//! killed with SIGKILL is finished by `gameday recover`; leftovers whose
//! journal is lost are found by `gameday cleanup`; two runs never share a target.

use std::time::Duration;

use crate::support::proxy::FailingProxy;
use crate::support::*;

/// Groups (clones) made from `source`, with their instances.
pub(crate) async fn clones_of(c: &Clients, source: &str) -> Vec<(String, Vec<String>)> {
    let f = aws_sdk_autoscaling::types::Filter::builder()
        .name("tag:gameday:clone-of")
        .values(source)
        .build();
    let out = c
        .autoscaling
        .describe_auto_scaling_groups()
        .filters(f)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    out.auto_scaling_groups()
        .iter()
        .map(|g| {
            (
                g.auto_scaling_group_name().unwrap_or_default().to_string(),
                g.instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

/// EC2 instances launched by clones of `source`, with their states.
pub(crate) async fn clone_instances(c: &Clients, source: &str) -> Vec<(String, String)> {
    let f = aws_sdk_ec2::types::Filter::builder()
        .name("tag:gameday:clone-of")
        .values(source)
        .build();
    let out = c
        .ec2
        .describe_instances()
        .filters(f)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

pub(crate) fn parallel_experiment(fleet: &Fleet, duration: &str) -> String {
    format!(
        "version: 1
name: parallel-stop
owner: team-test
hypothesis: the copy rides out stopped instances
environment: {{ mode: parallel, autoscaling_group: {group}, capacity: 2, ready_timeout: 1m }}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: all }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: 5m }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

/// An in-place run stopping 2 of `fleet`'s instances (the shared template, with its own max_duration).
pub(crate) fn in_place_experiment(fleet: &Fleet, duration: &str, max_duration: &str) -> String {
    stop_experiment(&fleet.group, &fleet.alarm, "{ count: 2 }", duration)
        .replace("max_duration: 5m", &format!("max_duration: {max_duration}"))
}

/// Waits until a clone of `source` exists with a stopped instance; returns the clone.
pub(crate) async fn wait_for_clone_fault(c: &Clients, source: &str) -> (String, Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some((name, ids)) = clones_of(c, source).await.into_iter().next()
            && !ids.is_empty()
            && states(c, &ids).await.iter().any(|s| s == "stopped")
        {
            return (name, ids);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clone of {source} with a stopped instance within 40s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After any parallel run: the source is exactly as before, no clone is left,
/// and every instance a clone launched is terminated.
pub(crate) async fn assert_parallel_cleaned(c: &Clients, fleet: &Fleet, before: &GroupState) {
    assert_eq!(
        &group_state(c, &fleet.group).await,
        before,
        "the source group and its instances are unchanged"
    );
    assert!(
        clones_of(c, &fleet.group).await.is_empty(),
        "no clone group is left"
    );
    let left: Vec<_> = clone_instances(c, &fleet.group)
        .await
        .into_iter()
        .filter(|(_, s)| s != "terminated")
        .collect();
    assert!(left.is_empty(), "every clone instance is terminated: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_faults_hit_only_the_clone_which_is_deleted_afterwards() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &parallel_experiment(&fleet, "2s"));
    let child = run_command(&s, &file).spawn().expect("spawn");

    let (clone, ids) = wait_for_clone_fault(&c, &fleet.group).await;
    assert!(
        clone.starts_with("gd-") && clone.ends_with(&fleet.group),
        "{clone}"
    );
    assert_eq!(ids.len(), 2, "the clone has environment.capacity instances");
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "the source's instances are never stopped"
    );
    let tags = group_state(&c, &clone).await.tags;
    for key in [
        "gameday:run-id",
        "gameday:experiment",
        "gameday:expires-at",
        "gameday:owner",
        "gameday:clone-of",
    ] {
        assert!(
            tags.iter().any(|(k, _, _)| k == key),
            "clone tagged {key}: {tags:?}"
        );
    }

    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_parallel_cleaned(&c, &fleet, &before).await;
    let j = s.journal();
    assert_eq!(j["verdict"], "passed");
    let env: Vec<_> = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "environment")
        .collect();
    assert_eq!(env[0]["group"], clone.as_str());
    for id in j["targets"][0]["selected"].as_array().expect("selected") {
        assert!(
            ids.iter().any(|i| i == id["id"].as_str().expect("id")),
            "targets come from the clone only"
        );
    }
}

/// Starts a parallel run with a long fault and waits until it is in effect.
async fn parallel_mid_fault() -> (Clients, Fleet, GroupState, Scratch, tokio::process::Child) {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &parallel_experiment(&fleet, "5m"));
    let child = run_command(&s, &file).spawn().expect("spawn");
    wait_for_clone_fault(&c, &fleet.group).await;
    (c, fleet, before, s, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guardrail_abort_tears_the_clone_down() {
    let (c, fleet, before, s, child) = parallel_mid_fault().await;
    set_alarm(&c, &fleet.alarm, "ALARM").await;
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    set_alarm(&c, &fleet.alarm, "OK").await;
    assert_parallel_cleaned(&c, &fleet, &before).await;
    assert_eq!(s.journal()["verdict"], "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sigint_and_sigterm_tear_the_clone_down() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (c, fleet, before, s, child) = parallel_mid_fault().await;
        signal(&child, sig);
        let out = finish(child, Duration::from_secs(60)).await;
        assert_eq!(out.code, 130, "{}{}", out.stdout, out.stderr);
        assert_parallel_cleaned(&c, &fleet, &before).await;
        assert_eq!(s.journal()["verdict"], "interrupted");
    }
}

pub(crate) fn run_id_of(s: &Scratch) -> String {
    let dir = std::fs::read_dir(s.runs())
        .expect("runs")
        .next()
        .expect("a run")
        .expect("entry");
    dir.file_name().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_fault_then_recover_finishes_the_job_in_parallel_mode() {
    let (c, fleet, before, s, child) = parallel_mid_fault().await;
    signal(&child, libc::SIGKILL);
    let killed = finish(child, Duration::from_secs(10)).await;
    assert_eq!(killed.code, -1, "killed by a signal");
    assert!(
        !clones_of(&c, &fleet.group).await.is_empty(),
        "the clone outlives the killed runner"
    );

    let run_id = run_id_of(&s);
    let listed = finish(
        gameday(&s)
            .arg("recover")
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        listed.stdout.contains(&run_id),
        "recover without RUN_ID lists the run: {}",
        listed.stdout
    );

    let out = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("recovered"), "{}", out.stdout);
    assert_parallel_cleaned(&c, &fleet, &before).await;
    assert_eq!(
        s.journal()["verdict"],
        "error",
        "the journal says the runner died and was recovered"
    );

    let again = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        again.code, 0,
        "recovering twice is safe: {}{}",
        again.stdout, again.stderr
    );
    assert!(again.stdout.contains("nothing to recover"), "{}", again.stdout);
    assert_parallel_cleaned(&c, &fleet, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_fault_then_recover_restarts_instances_in_place() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "5m", "10m"));
    let child = run_command(&s, &file).spawn().expect("spawn");
    wait_until_any_stopped(&c, &fleet.instances).await;
    // Let the second instance's stop land too, so the journal has the whole batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGKILL);
    finish(child, Duration::from_secs(10)).await;
    assert!(states(&c, &fleet.instances).await.iter().any(|s| s == "stopped"));

    let out = finish(
        recover_command(&s, &run_id_of(&s)).spawn().expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "instances running again, lock tag gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_aborts_and_rolls_back() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "5m", "2s"));
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("max_duration"), "{}", out.stdout);
    assert_eq!(group_state(&c, &fleet.group).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollback_is_reported_with_what_is_left_and_recover_finishes_it() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let proxy = FailingProxy::start(endpoint(), "StartInstances").await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "500ms", "5m"));
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("GAMEDAY_ROLLBACK_ATTEMPTS", "2")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("rollback incomplete, still to do: ec2:StartInstances i-"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("gameday recover"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ServiceUnavailable: injected by the test proxy"),
        "the API error reaches the user: {}",
        out.stderr
    );
    assert_eq!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .filter(|s| *s == "stopped")
            .count(),
        2,
        "the failed rollback left them stopped"
    );

    proxy.heal();
    let run_id = run_id_of(&s);
    let out = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "recover restarted them and released the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_injection_ends_the_run_with_nothing_left_behind() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let proxy = FailingProxy::start(endpoint(), "StopInstances").await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "5m", "10m"));
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("AWS_MAX_ATTEMPTS", "1")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("injection failed")
            && out
                .stdout
                .contains("ec2:StopInstances failed: ServiceUnavailable"),
        "{}",
        out.stdout
    );
    assert_eq!(group_state(&c, &fleet.group).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_locked_group_is_refused_naming_the_holder() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let until = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .expect("time");
    let tag = aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(&fleet.group)
        .resource_type("auto-scaling-group")
        .key("gameday:lock")
        .value(format!("20990101-000000-beef until {until}"))
        .propagate_at_launch(false)
        .build();
    c.autoscaling
        .create_or_update_tags()
        .tags(tag)
        .send()
        .await
        .expect("CreateOrUpdateTags");
    let before = group_state(&c, &fleet.group).await;
    let s = Scratch::new();
    for text in [
        in_place_experiment(&fleet, "1s", "1m"),
        parallel_experiment(&fleet, "1s"),
    ] {
        let file = s.write("exp.yaml", &text);
        let out = finish(
            run_command(&s, &file).spawn().expect("spawn"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("run 20990101-000000-beef, holds"),
            "{}",
            out.stdout
        );
        assert_eq!(
            group_state(&c, &fleet.group).await,
            before,
            "nothing touched, the other run's lock kept"
        );
        assert!(clones_of(&c, &fleet.group).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_run_on_an_instance_another_run_locked_is_refused() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let until = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .expect("time");
    let lock = aws_sdk_ec2::types::Tag::builder()
        .key("gameday:lock")
        .value(format!("20990101-000000-cafe until {until}"))
        .build();
    c.ec2
        .create_tags()
        .resources(&fleet.instances[1])
        .tags(lock)
        .send()
        .await
        .expect("CreateTags");
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "1s", "1m"));
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("run 20990101-000000-cafe, holds") && out.stdout.contains(&fleet.instances[1]),
        "{}",
        out.stdout
    );
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "nothing was stopped"
    );
    let j = s.journal();
    assert!(
        j["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .all(|a| a["kind"] != "inject")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_leftovers_of_expired_runs_and_spares_live_ones() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let past = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .expect("time");
    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .expect("time");
    let template = {
        let out = c
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&fleet.group)
            .send()
            .await
            .expect("describe");
        let lt = out.auto_scaling_groups()[0]
            .launch_template()
            .cloned()
            .expect("a launch template");
        // The API takes the id or the name, not both.
        aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
            .set_launch_template_id(lt.launch_template_id().map(str::to_string))
            .set_version(lt.version().map(str::to_string))
            .build()
    };
    let subnet = {
        let out = c
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&fleet.group)
            .send()
            .await
            .expect("describe");
        out.auto_scaling_groups()[0]
            .vpc_zone_identifier()
            .unwrap_or_default()
            .to_string()
    };
    // Two planted clones: one expired (a run whose journal was lost), one live.
    let plant = |name: String, run: &str, expires: jiff::Timestamp| {
        let c = &c;
        let template = template.clone();
        let subnet = subnet.clone();
        let source = fleet.group.clone();
        let run = run.to_string();
        async move {
            let tag = |k: &str, v: &str| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(true)
                    .build()
            };
            c.autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(&name)
                .launch_template(template)
                .min_size(1)
                .max_size(1)
                .desired_capacity(1)
                .vpc_zone_identifier(subnet)
                .tags(tag("gameday:run-id", &run))
                .tags(tag("gameday:expires-at", &expires.to_string()))
                .tags(tag("gameday:clone-of", &source))
                .send()
                .await
                .expect("CreateAutoScalingGroup");
            name
        }
    };
    let expired = plant(format!("gd-lost-{}", fleet.group), "19990101-000000-dead", past).await;
    let live = plant(format!("gd-live-{}", fleet.group), "20990101-000000-live", future).await;
    let lock = aws_sdk_ec2::types::Tag::builder()
        .key("gameday:lock")
        .value(format!("19990101-000000-dead until {past}"))
        .build();
    c.ec2
        .create_tags()
        .resources(&fleet.instances[0])
        .tags(lock)
        .send()
        .await
        .expect("CreateTags");

    let s = Scratch::new();
    let dry = finish(
        gameday(&s)
            .args(["cleanup", "--dry-run"])
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains(&format!("would remove Auto Scaling group {expired}")),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains(&format!("would remove lock tag on {}", fleet.instances[0])),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains(&live),
        "a live run is never listed: {}",
        dry.stdout
    );
    assert_eq!(
        clones_of(&c, &fleet.group).await.len(),
        2,
        "--dry-run changes nothing"
    );

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
    let left: Vec<String> = clones_of(&c, &fleet.group)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        left,
        vec![live.clone()],
        "the expired clone is gone, the live one stays"
    );
    let tags = c
        .ec2
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(&fleet.instances[0])
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    assert!(
        !tags.tags().iter().any(|t| t.key() == Some("gameday:lock")),
        "the expired lock tag is removed"
    );
    // Leave no planted clone behind for other tests' cleanup runs to find.
    c.autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&live)
        .force_delete(true)
        .send()
        .await
        .expect("delete live clone");
}
