//! Parallel copies that see traffic (issue #14), end to end against moto: an
//! Application Load Balancer with two listeners, a rule already weighted over
//! two target groups, and the workload's group attached to its target group.
//! On every exit path the listener rules, the target groups and their
//! registrations are exactly as before; the weights during the run give each
//! copy the share asked for; a share above the policy's limit is refused
//! before anything is created; the load generator is stopped on every path.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2 as elb;
use elb::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, RuleCondition, TargetGroupTuple,
};

use crate::support::proxy::FailingProxy;
use crate::support::*;

/// A workload behind a load balancer.
struct Alb {
    elb: elb::Client,
    fleet: Fleet,
    lb: String,
    /// The workload's target group (the source group is attached to it).
    tg: String,
}

async fn elb_client() -> elb::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    elb::Client::new(&config)
}

fn forward_to(arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(arn)
        .build()
}

/// A fleet of 3 behind an ALB: listener :80 forwards to the workload's
/// target group; listener :8080 forwards to another target group by default
/// and, for `/api/*`, to both with weights 1 and 1.
async fn alb_fleet(c: &Clients) -> Alb {
    let elb = elb_client().await;
    let fleet = fleet_in(c, 3, &["a", "b"]).await;
    let g = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&fleet.group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let subnets: Vec<String> = g.auto_scaling_groups()[0]
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let vpc = c
        .ec2
        .describe_subnets()
        .subnet_ids(&subnets[0])
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()[0]
        .vpc_id()
        .unwrap_or_default()
        .to_string();
    let short = fleet.group.replace("grp-", "");
    let tg = |name: String| {
        let elb = elb.clone();
        let vpc = vpc.clone();
        async move {
            elb.create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .vpc_id(vpc)
                .health_check_path("/health")
                .send()
                .await
                .expect("CreateTargetGroup")
                .target_groups()[0]
                .target_group_arn()
                .unwrap_or_default()
                .to_string()
        }
    };
    let web = tg(format!("w-{short}")).await;
    let other = tg(format!("o-{short}")).await;
    let lb = elb
        .create_load_balancer()
        .name(format!("lb-{short}"))
        .set_subnets(Some(subnets))
        .send()
        .await
        .expect("CreateLoadBalancer")
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap_or_default()
        .to_string();
    elb.create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward_to(&web))
        .send()
        .await
        .expect("CreateListener :80");
    let second = elb
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .default_actions(forward_to(&other))
        .send()
        .await
        .expect("CreateListener :8080")
        .listeners()[0]
        .listener_arn()
        .unwrap_or_default()
        .to_string();
    let both = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&other)
                        .weight(1)
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&web)
                        .weight(1)
                        .build(),
                )
                .build(),
        )
        .build();
    elb.create_rule()
        .listener_arn(&second)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(both)
        .send()
        .await
        .expect("CreateRule");
    c.autoscaling
        .attach_load_balancer_target_groups()
        .auto_scaling_group_name(&fleet.group)
        .target_group_arns(&web)
        .send()
        .await
        .expect("AttachLoadBalancerTargetGroups");
    Alb {
        elb,
        fleet,
        lb,
        tg: web,
    }
}

/// Everything about the load balancer a run must leave exactly as it was:
/// each listener's default actions and rules (every field), the target
/// groups in use, and the workload's registrations.
async fn lb_state(a: &Alb) -> String {
    let mut out = String::new();
    let listeners = a
        .elb
        .describe_listeners()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeListeners");
    let mut ls: Vec<_> = listeners.listeners().to_vec();
    ls.sort_by_key(|l| l.port());
    for l in ls {
        out += &format!("listener {:?}: {:?}\n", l.port(), l.default_actions());
        let rules = a
            .elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .send()
            .await
            .expect("DescribeRules");
        for r in rules.rules() {
            out += &format!(
                "  rule {:?} {:?} {:?} {:?}\n",
                r.priority(),
                r.rule_arn(),
                r.conditions(),
                r.actions()
            );
        }
    }
    let tgs = a
        .elb
        .describe_target_groups()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeTargetGroups");
    let mut names: Vec<_> = tgs
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .collect();
    names.sort();
    out += &format!("target groups {names:?}\n");
    let health = a
        .elb
        .describe_target_health()
        .target_group_arn(&a.tg)
        .send()
        .await
        .expect("DescribeTargetHealth");
    let mut reg: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .map(|d| format!("{:?} {:?}", d.target(), d.target_health().and_then(|h| h.state())))
        .collect();
    reg.sort();
    out += &format!("registered {reg:?}\n");
    out
}

/// Target groups a run made (named `gd-...`) that still exist, of `run_id` or any run when empty.
async fn copy_target_groups(a: &Alb, run_id: &str) -> Vec<String> {
    let all = a
        .elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    all.target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .filter(|n| n.starts_with(&format!("gd-{run_id}")))
        .map(str::to_string)
        .collect()
}

/// The weights of every forward to the workload's listeners, by target group
/// name: `:80 default` and `:8080 /api/*`.
async fn weights(a: &Alb) -> Vec<Vec<(String, i32)>> {
    let mut out = Vec::new();
    let listeners = a
        .elb
        .describe_listeners()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeListeners");
    let mut ls: Vec<_> = listeners.listeners().to_vec();
    ls.sort_by_key(|l| l.port());
    let name = |arn: &str| {
        arn.rsplit(":targetgroup/")
            .next()
            .unwrap_or(arn)
            .split('/')
            .next()
            .unwrap_or(arn)
            .to_string()
    };
    let of = |actions: &[Action]| -> Vec<(String, i32)> {
        actions
            .iter()
            .flat_map(|x| match x.forward_config() {
                Some(f) if !f.target_groups().is_empty() => f
                    .target_groups()
                    .iter()
                    .map(|t| {
                        (
                            name(t.target_group_arn().unwrap_or_default()),
                            t.weight().unwrap_or(1),
                        )
                    })
                    .collect::<Vec<_>>(),
                _ => vec![(name(x.target_group_arn().unwrap_or_default()), 1)],
            })
            .collect()
    };
    for l in ls {
        out.push(of(l.default_actions()));
        let rules = a
            .elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .send()
            .await
            .expect("DescribeRules");
        for r in rules.rules() {
            if r.is_default() != Some(true) {
                out.push(of(r.actions()));
            }
        }
    }
    out
}

fn traffic_experiment(a: &Alb, traffic: &str, duration: &str, max_duration: &str) -> String {
    format!(
        "version: 1
name: traffic-stop
owner: team-test
hypothesis: the experiment copy rides out a stopped instance
environment:
  mode: parallel
  autoscaling_group: {group}
  capacity: 2
  ready_timeout: 1m
  traffic: {traffic}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {{ count: 1 }} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: {max_duration} }}
",
        group = a.fleet.group,
        alarm = a.fleet.alarm,
    )
}

/// Waits until the run's experiment copy has a stopped instance (the fault
/// is in effect, so the listener is shifted); returns the run id.
async fn wait_mid_fault(c: &Clients, s: &Scratch, a: &Alb) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(run_id) = s.run_id() {
            let name = format!("gd-{run_id}-{}", a.fleet.group);
            let g = c
                .autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(&name)
                .send()
                .await
                .expect("DescribeAutoScalingGroups");
            let ids: Vec<String> = g
                .auto_scaling_groups()
                .iter()
                .flat_map(|g| g.instances())
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if !ids.is_empty() && states(c, &ids).await.iter().any(|s| s == "stopped") {
                return run_id;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no experiment copy with a stopped instance within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
        assert_eq!(
            s.journal()["verdict"],
            if how == "guardrail" {
                "aborted"
            } else {
                "interrupted"
            }
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
    for how in ["end", "guardrail", "SIGTERM", "kill -9"] {
        let s = Scratch::new();
        let pid_file = s.path().join("load.pid");
        let load = format!(
            "{{ load: {{ command: [sh, -c, 'echo $$ > {}; echo experiment=$GAMEDAY_EXPERIMENT_TARGETS control=$GAMEDAY_CONTROL_TARGETS; exec sleep 600'] }} }}",
            pid_file.display()
        );
        let duration = if how == "end" { "2s" } else { "5m" };
        let file = s.write("exp.yaml", &traffic_experiment(&a, &load, duration, "5m"));
        let child = run_command(&s, &file).spawn().expect("spawn");
        let run_id = wait_mid_fault(&c, &s, &a).await;
        let (pid, dead) = gone(&pid_file);
        assert!(!dead, "{how}: the load generator runs during the fault");
        match how {
            "guardrail" => set_alarm(&c, &a.fleet.alarm, "ALARM").await,
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
