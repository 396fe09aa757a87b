//! Parallel copies that see traffic (issue #14), end to end against moto: an
//! Application Load Balancer with two listeners, a rule already weighted over
//! two target groups, and the workload's group attached to its target group.
//! On every exit path the listener rules, the target groups and their
//! registrations are exactly as before; the weights during the run give each
//! copy the share asked for; a share above the policy's limit is refused
//! before anything is created; the load generator is stopped on every path.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2 as elb;

use crate::support::alb::*;
use crate::support::proxy::FailingProxy;
use crate::support::*;

/// After a run: the load balancer as before, no copy target group, no copy.
async fn assert_restored(c: &Clients, a: &Alb, before: &str, run_id: &str) {
    assert_eq!(
        lb_state(a).await,
        before,
        "listener rules, target groups and registrations as before"
    );
    assert!(
        copy_target_groups(a, run_id).await.is_empty(),
        "no copy target group is left"
    );
    assert!(
        crate::lifecycle::clones_of(c, &a.fleet.group).await.is_empty(),
        "no copy is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_copy_gets_its_share_of_every_rule_and_the_listeners_are_restored_at_the_end() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    let (web, other) = (
        format!("w-{}", a.fleet.group.replace("grp-", "")),
        format!("o-{}", a.fleet.group.replace("grp-", "")),
    );
    // 1%, 2% and the default policy's limit (5%).
    for (share, plain, weighted) in [
        ("1%", (980, 10), (979, 10)),
        ("2%", (960, 20), (959, 20)),
        ("5%", (900, 50), (899, 50)),
    ] {
        let s = Scratch::new();
        let file = s.write(
            "exp.yaml",
            &traffic_experiment(&a, &format!("{{ share: {share} }}"), "2s", "5m"),
        );
        let child = run_command(&s, &file).spawn().expect("spawn");
        let run_id = wait_mid_fault(&c, &s, &a).await;
        let (e, ctl) = (format!("gd-{run_id}-e"), format!("gd-{run_id}-c"));
        assert_eq!(
            weights(&a).await,
            vec![
                vec![
                    (web.clone(), plain.0),
                    (e.clone(), plain.1),
                    (ctl.clone(), plain.1)
                ],
                vec![(other.clone(), 1)],
                vec![
                    (other.clone(), 999),
                    (web.clone(), weighted.0),
                    (e.clone(), weighted.1),
                    (ctl.clone(), weighted.1)
                ],
            ],
            "{share}: the default of :80 and the weighted /api/* rule of :8080 are shifted; :8080's default (another target group) is not"
        );
        let out = finish(child, Duration::from_secs(120)).await;
        assert_eq!(out.code, 0, "{share}: {}{}", out.stdout, out.stderr);
        assert_restored(&c, &a, &before, &run_id).await;
        let j = s.journal();
        let events = j["events"].as_array().expect("events");
        let env = events
            .iter()
            .find(|e| e["event"] == "environment")
            .expect("environment");
        assert_eq!(env["control"], format!("gd-{run_id}-control-{}", a.fleet.group));
        // Every rule's exact actions were journaled before it changed.
        let restores: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "intent" && e["undo"]["kind"] == "restore_listener_rule")
            .collect();
        assert_eq!(
            restores.len(),
            2,
            "two rules shifted, each journaled with its undo first: {}",
            serde_json::to_string(&restores).unwrap_or_default()
        );
    }
}

/// Starts a 2% run with a long fault and waits until the listener is shifted.
async fn shifted_mid_fault(
    c: &Clients,
    a: &Alb,
    max_duration: &str,
) -> (Scratch, tokio::process::Child, String) {
    let s = Scratch::new();
    let file = s.write(
        "exp.yaml",
        &traffic_experiment(a, "{ share: 2% }", "5m", max_duration),
    );
    let child = run_command(&s, &file).spawn().expect("spawn");
    let run_id = wait_mid_fault(c, &s, a).await;
    (s, child, run_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_abort_ctrl_c_and_sigterm_restore_the_listeners() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    for (how, code) in [("guardrail", 4), ("SIGINT", 130), ("SIGTERM", 130)] {
        let (s, child, run_id) = shifted_mid_fault(&c, &a, "5m").await;
        assert_ne!(
            lb_state(&a).await,
            before,
            "{how}: shifted while the fault is active"
        );
        match how {
            "guardrail" => set_alarm(&c, &a.fleet.alarm, "ALARM").await,
            "SIGINT" => signal(&child, libc::SIGINT),
            _ => signal(&child, libc::SIGTERM),
        }
        let out = finish(child, Duration::from_secs(90)).await;
        assert_eq!(out.code, code, "{how}: {}{}", out.stdout, out.stderr);
        set_alarm(&c, &a.fleet.alarm, "OK").await;
        assert_restored(&c, &a, &before, &run_id).await;
        let j = s.journal();
        assert_eq!(
            j["verdict"],
            if how == "guardrail" {
                "aborted"
            } else {
                "interrupted"
            }
        );
        // Users leave the copies at the abort, not after the faults' rollback and teardown.
        let events = j["events"].as_array().expect("events");
        let pos = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().position(f);
        let abort = pos(&|e| e["event"] == "abort").expect("an abort");
        let restored = pos(&|e| {
            e["event"] == "intent"
                && e["kind"] == "rollback"
                && e["operation"] == "elasticloadbalancing:ModifyRule (restore)"
        })
        .expect("the rules restored");
        let teardown = pos(&|e| e["event"] == "phase" && e["phase"] == "teardown").expect("a teardown");
        assert!(
            abort < restored && restored < teardown,
            "{how}: rules restored between the abort and teardown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_restores_the_listeners() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    let (s, child, run_id) = shifted_mid_fault(&c, &a, "20s").await;
    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("max_duration"), "{}", out.stdout);
    assert_restored(&c, &a, &before, &run_id).await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_the_listener_shifted_and_recover_restores_it_exactly() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    let (s, child, run_id) = shifted_mid_fault(&c, &a, "5m").await;
    signal(&child, libc::SIGKILL);
    finish(child, Duration::from_secs(10)).await;
    assert_ne!(
        lb_state(&a).await,
        before,
        "the listener stays shifted after kill -9"
    );
    assert_eq!(copy_target_groups(&a, &run_id).await.len(), 2);

    let out = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_restored(&c, &a, &before, &run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_of_an_expired_run_whose_journal_is_lost_restores_the_listeners() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    let (s, child, run_id) = shifted_mid_fault(&c, &a, "5m").await;
    signal(&child, libc::SIGKILL);
    finish(child, Duration::from_secs(10)).await;
    // The journal is lost and the run's expiry has passed.
    std::fs::remove_dir_all(s.runs()).expect("remove the runs folder");
    let past = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .expect("time")
        .to_string();
    let tgs = a
        .elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    for t in tgs.target_groups() {
        if t.target_group_name()
            .is_some_and(|n| n.starts_with(&format!("gd-{run_id}")))
        {
            a.elb
                .add_tags()
                .resource_arns(t.target_group_arn().unwrap_or_default())
                .tags(
                    elb::types::Tag::builder()
                        .key("gameday:expires-at")
                        .value(&past)
                        .build(),
                )
                .send()
                .await
                .expect("AddTags");
        }
    }
    for (g, _) in crate::lifecycle::clones_of(&c, &a.fleet.group).await {
        c.autoscaling
            .create_or_update_tags()
            .tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(g)
                    .resource_type("auto-scaling-group")
                    .key("gameday:expires-at")
                    .value(&past)
                    .propagate_at_launch(true)
                    .build(),
            )
            .send()
            .await
            .expect("CreateOrUpdateTags");
    }
    let out = finish(
        gameday(&s)
            .arg("cleanup")
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("target group"), "{}", out.stdout);
    assert_restored(&c, &a, &before, &run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_while_shifting_restores_what_was_shifted() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    // The :80 default (ModifyListener) goes through; the /api/* rule (ModifyRule) fails.
    let proxy = FailingProxy::start(endpoint(), "ModifyRule").await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &traffic_experiment(&a, "{ share: 2% }", "2s", "5m"));
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("GAMEDAY_ROLLBACK_ATTEMPTS", "1")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let run_id = s.run_id().expect("a run");
    assert_restored(&c, &a, &before, &run_id).await;
    assert_eq!(s.journal()["verdict"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_above_the_policy_limit_is_refused_by_plan_and_run_with_nothing_created() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &traffic_experiment(&a, "{ share: 10% }", "2s", "5m"));
    let plan = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(plan.code, 7, "{}{}", plan.stdout, plan.stderr);
    let all = format!("{}{}", plan.stdout, plan.stderr);
    assert!(all.contains("parallel.max_traffic_share"), "{all}");
    assert!(
        all.contains("exp.yaml:10:"),
        "names the experiment's value: {all}"
    );
    let run = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.code, 7, "{}{}", run.stdout, run.stderr);
    assert!(format!("{}{}", run.stdout, run.stderr).contains("parallel.max_traffic_share"));
    assert_eq!(lb_state(&a).await, before);
    assert!(
        copy_target_groups(&a, "")
            .await
            .iter()
            .all(|n| !n.contains(&s.run_id().unwrap_or_default()))
    );
    assert!(
        crate::lifecycle::clones_of(&c, &a.fleet.group).await.is_empty(),
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_each_rule_with_its_weights_before_and_during() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &traffic_experiment(&a, "{ share: 2% }", "2s", "5m"));
    let plan = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let web = format!("w-{}", a.fleet.group.replace("grp-", ""));
    for line in [
        "listener HTTP:80 default actions".to_string(),
        format!("before: {web} 1"),
        format!(
            "during: {web} 960, gd-<run-id>-e 20, gd-<run-id>-c 20  (2.00% of its requests reach the experiment copy)"
        ),
        "listener HTTP:8080 rule 10".to_string(),
    ] {
        assert!(plan.stdout.contains(&line), "{line}\n{}", plan.stdout);
    }
    let none = s.write(
        "none.yaml",
        &traffic_experiment(&a, "{ share: 2% }", "2s", "5m").replace("  traffic: { share: 2% }\n", ""),
    );
    let plan = finish(
        gameday(&s).arg("plan").arg(&none).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        plan.stdout.contains("the copy receives no traffic"),
        "{}",
        plan.stdout
    );
    let run = finish(
        run_command(&s, &none).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("receives no traffic"),
        "the run says so too: {}{}",
        run.stdout,
        run.stderr
    );
}

/// The pid a load command wrote, and whether that process is gone (or a zombie).
fn gone(pid_file: &std::path::Path) -> (u32, bool) {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .expect("the load command wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let dead = stat.is_empty()
        || stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
    (pid, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_command_is_told_the_copies_and_stopped_on_every_exit_path() {
    let c = clients().await;
    let a = alb_fleet(&c).await;
    let before = lb_state(&a).await;
    for how in ["end", "guardrail", "SIGINT", "SIGTERM", "max_duration", "kill -9"] {
        let s = Scratch::new();
        let pid_file = s.path().join("load.pid");
        let load = format!(
            "{{ load: {{ command: [sh, -c, 'echo $$ > {}; echo experiment=$GAMEDAY_EXPERIMENT_TARGETS control=$GAMEDAY_CONTROL_TARGETS; exec sleep 600'] }} }}",
            pid_file.display()
        );
        let duration = if how == "end" { "2s" } else { "5m" };
        let max = if how == "max_duration" { "20s" } else { "5m" };
        let file = s.write("exp.yaml", &traffic_experiment(&a, &load, duration, max));
        let child = run_command(&s, &file).spawn().expect("spawn");
        let run_id = wait_mid_fault(&c, &s, &a).await;
        let (pid, dead) = gone(&pid_file);
        assert!(!dead, "{how}: the load generator runs during the fault");
        match how {
            "guardrail" => set_alarm(&c, &a.fleet.alarm, "ALARM").await,
            "SIGINT" => signal(&child, libc::SIGINT),
            "SIGTERM" => signal(&child, libc::SIGTERM),
            "kill -9" => signal(&child, libc::SIGKILL),
            _ => {}
        }
        let out = finish(child, Duration::from_secs(120)).await;
        set_alarm(&c, &a.fleet.alarm, "OK").await;
        if how == "kill -9" {
            assert!(!gone(&pid_file).1, "the generator outlives a killed runner");
            let rec = finish(
                recover_command(&s, &run_id).spawn().expect("spawn"),
                Duration::from_secs(120),
            )
            .await;
            assert_eq!(rec.code, 0, "{}{}", rec.stdout, rec.stderr);
        } else {
            assert!(
                out.code == 0 || out.code == 4 || out.code == 130,
                "{how}: {}{}",
                out.stdout,
                out.stderr
            );
        }
        assert!(
            gone(&pid_file).1,
            "{how}: the load generator (pid {pid}) is stopped"
        );
        let log = std::fs::read_to_string(s.runs().join(&run_id).join("load.log"))
            .expect("load.log in the run folder");
        assert!(
            log.contains("experiment=10.") && log.contains("control=10.") && log.contains(":80"),
            "{how}: told both copies' addresses: {log}"
        );
        assert_eq!(
            lb_state(&a).await,
            before,
            "{how}: the load form leaves the load balancer alone"
        );
        assert!(
            crate::lifecycle::clones_of(&c, &a.fleet.group).await.is_empty(),
            "{how}: copies deleted"
        );
    }
}
