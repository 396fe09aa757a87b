//! End-to-end runs of the real binary against moto: the outcome a user cares
//! about (instances running again, the right verdict and exit code, a journal
//! that says what happened) on every path out of injection.

use std::time::Duration;

use crate::support::*;

/// An in-place experiment on `fleet`'s group, stopping `select` of it for `duration`.
fn experiment(fleet: &Fleet, select: &str, duration: &str) -> String {
    stop_experiment(&fleet.group, &fleet.alarm, select, duration)
}

fn all_running(states: &[String]) -> bool {
    states.iter().all(|s| s == "running")
}

fn events<'a>(journal: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    journal["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_run_stops_instances_then_starts_them_again() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &experiment(&fleet, "{ count: 2 }", "3s"));
    let child = run_command(&s, &file).spawn().expect("spawn");

    let stopped = wait_until_any_stopped(&c, &fleet.instances).await;
    assert!(
        stopped.len() <= 2,
        "only the selected instances are stopped: {stopped:?}"
    );
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "exit code for passed\n{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("verdict: passed"), "{}", out.stdout);
    assert!(
        all_running(&states(&c, &fleet.instances).await),
        "every instance runs again after the run"
    );

    let j = s.journal();
    assert_eq!(j["verdict"], "passed");
    assert_eq!(j["experiment"], "test-stop");
    let selected = j["targets"][0]["selected"].as_array().expect("selected targets");
    assert_eq!(selected.len(), 2);
    let actions = j["actions"].as_array().expect("actions");
    let stop = actions
        .iter()
        .find(|a| a["operation"] == "ec2:StopInstances")
        .expect("a stop action");
    let start = actions
        .iter()
        .find(|a| a["operation"] == "ec2:StartInstances")
        .expect("a start action");
    assert_eq!(stop["ok"], true);
    assert_eq!(start["ok"], true);
    assert_eq!(start["rollback_of"], stop["action_id"]);
    assert_eq!(stop["resources"], start["resources"]);
    assert!(
        stop["started_at"].is_string() && stop["finished_at"].is_string(),
        "actions carry timestamps"
    );
}

/// Waits for the fault, then lets `act` do something to the run; returns the
/// finished run. The fault lasts 5 minutes, so only an abort ends it in time.
async fn interrupt_mid_fault<F, Fut>(act: F) -> (Clients, Fleet, Scratch, Finished)
where
    F: FnOnce(&tokio::process::Child, Clients, Fleet) -> Fut,
    Fut: std::future::Future<Output = (Clients, Fleet)>,
{
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &experiment(&fleet, "all", "5m"));
    let child = run_command(&s, &file).spawn().expect("spawn");
    let stopped = wait_until_any_stopped(&c, &fleet.instances).await;
    assert!(!stopped.is_empty());
    let (c, fleet) = act(&child, c, fleet).await;
    let out = finish(child, Duration::from_secs(45)).await;
    (c, fleet, s, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_alarm_aborts_the_run_and_rolls_back() {
    let (c, fleet, s, out) = interrupt_mid_fault(|_, c, fleet| async move {
        set_alarm(&c, &fleet.alarm, "ALARM").await;
        (c, fleet)
    })
    .await;
    assert_eq!(out.code, 4, "exit code for aborted\n{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("GUARDRAIL TRIPPED"), "{}", out.stderr);
    assert!(
        all_running(&states(&c, &fleet.instances).await),
        "every instance runs again after the abort"
    );

    let j = s.journal();
    assert_eq!(j["verdict"], "aborted");
    let breach = events(&j, "guardrail_breached");
    assert_eq!(breach.len(), 1);
    assert!(breach[0]["detail"].as_str().unwrap_or_default().contains("ALARM"));
    assert_rollback_began_on_the_breach_tick(&j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_fault_rolls_back_before_exiting() {
    let (c, fleet, s, out) = interrupt_mid_fault(|child, c, fleet| {
        signal(child, libc::SIGINT);
        async move { (c, fleet) }
    })
    .await;
    assert_eq!(
        out.code, 130,
        "exit code for interrupted\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        all_running(&states(&c, &fleet.instances).await),
        "every instance runs again after Ctrl-C"
    );
    assert_eq!(s.journal()["verdict"], "interrupted");
    crate::report::assert_reports_regenerate(&s, &crate::report::run_dirs(&s)[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_fault_rolls_back_before_exiting() {
    let (c, fleet, s, out) = interrupt_mid_fault(|child, c, fleet| {
        signal(child, libc::SIGTERM);
        async move { (c, fleet) }
    })
    .await;
    assert_eq!(out.code, 130, "{}{}", out.stdout, out.stderr);
    assert!(
        all_running(&states(&c, &fleet.instances).await),
        "every instance runs again after SIGTERM"
    );
    assert_eq!(s.journal()["verdict"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_does_not_skip_the_rollback() {
    let (c, fleet, _s, out) = interrupt_mid_fault(|child, c, fleet| {
        signal(child, libc::SIGINT);
        std::thread::sleep(Duration::from_millis(20));
        signal(child, libc::SIGINT);
        async move { (c, fleet) }
    })
    .await;
    assert_eq!(out.code, 130, "{}{}", out.stdout, out.stderr);
    // "Skip waits" may return before moto reports `running`, but every start
    // call was made: the instances are pending or running, never left stopped.
    let after = states(&c, &fleet.instances).await;
    assert!(
        after.iter().all(|s| s == "running" || s == "pending"),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_that_cannot_protect_the_run_means_nothing_is_injected() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    for (alarm, why) in [
        (format!("{}-missing", fleet.alarm), "does not exist"),
        (fleet.alarm.clone(), "in ALARM"),
    ] {
        if why == "in ALARM" {
            set_alarm(&c, &fleet.alarm, "ALARM").await;
        }
        let s = Scratch::new();
        let f = Fleet {
            alarm,
            ..fleet.clone()
        };
        let file = s.write("exp.yaml", &experiment(&f, "all", "3s"));
        let out = finish(
            run_command(&s, &file).spawn().expect("spawn"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(out.code, 5, "exit code for not-run\n{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(why), "{}", out.stdout);
        let j = s.journal();
        assert_eq!(j["verdict"], "not-run");
        assert!(
            j["actions"].as_array().expect("actions").is_empty(),
            "no mutating call was made"
        );
        assert!(all_running(&states(&c, &fleet.instances).await));
        crate::report::assert_reports_regenerate(&s, &crate::report::run_dirs(&s)[0]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_instances_are_never_targets_and_tags_select_targets() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let protected = fleet.instances[0].clone();
    c.ec2
        .create_tags()
        .resources(&protected)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("gameday:protected")
                .value("true")
                .build(),
        )
        .send()
        .await
        .expect("CreateTags");
    let s = Scratch::new();
    let text = format!(
        "version: 1
name: by-tags
hypothesis: h
environment: {{ mode: in-place }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ tags: {{ fleet: {tag} }}, select: all }}
    duration: 1s
timing: {{ interval: 500ms }}
",
        alarm = fleet.alarm,
        tag = fleet.tag
    );
    let file = s.write("exp.yaml", &text);
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let selected: Vec<&str> = j["targets"][0]["selected"]
        .as_array()
        .expect("selected")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        selected,
        fleet.instances[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "every tagged instance but the protected one"
    );
    assert_eq!(j["targets"][0]["protected"][0], protected.as_str());
    for a in j["actions"].as_array().expect("actions") {
        assert!(
            !a["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .any(|r| r == protected.as_str()),
            "the protected instance was never touched"
        );
    }
    assert!(all_running(&states(&c, &fleet.instances).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_selects_the_same_targets() {
    let c = clients().await;
    let fleet = fleet(&c, 6).await;
    let mut picks = Vec::new();
    for _ in 0..2 {
        let s = Scratch::new();
        let file = s.write("exp.yaml", &experiment(&fleet, "{ count: 2 }", "200ms"));
        let out = finish(
            gameday(&s)
                .args(["run", "--seed", "42"])
                .arg(&file)
                .arg("--runs-dir")
                .arg(s.runs())
                .spawn()
                .expect("spawn"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let j = s.journal();
        assert_eq!(j["seed"], 42);
        picks.push(j["targets"][0]["selected"].clone());
    }
    assert_eq!(picks[0], picks[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_eligible_target_means_not_run() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let text = experiment(&fleet, "all", "1s")
        .replace("select: all", "tags: { fleet: nobody-has-this }, select: all");
    let file = s.write("exp.yaml", &text);
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("matched no eligible instance"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_an_error_that_names_the_call() {
    let s = Scratch::new();
    let file = s.write(
        "exp.yaml",
        &experiment(
            &Fleet {
                group: "g".into(),
                alarm: "a".into(),
                instances: vec![],
                tag: "t".into(),
            },
            "all",
            "1s",
        ),
    );
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("cloudwatch:DescribeAlarms failed: DispatchFailure"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("DispatchFailure(") && !out.stdout.contains("{ "),
        "no debug dump: {}",
        out.stdout
    );
    crate::report::assert_reports_regenerate(&s, &crate::report::run_dirs(&s)[0]).await;
}
