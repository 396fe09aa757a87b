//! End-to-end runs against the sandbox's simulated service: `gameday-sandbox
//! serve` publishes metrics that follow the fleet's real state in moto and
//! evaluates the guardrail alarm from them, and `gameday run` reacts. No code
//! here sets an alarm state: every state change comes from the evaluator.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
};
use aws_smithy_types::DateTime;

use crate::support::*;

/// Starts `serve` for `group` only (tests run in parallel against one moto),
/// with short ticks; its lines go to `sandbox.log` in the scratch folder.
fn serve(scratch: &Scratch, group: &str) -> tokio::process::Child {
    let log = std::fs::File::create(scratch.path().join("sandbox.log")).expect("sandbox log");
    sandbox(scratch)
        .args([
            "serve",
            "--group",
            group,
            "--interval",
            "500ms",
            "--report-every",
            "2s",
            "--seed",
            "9",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gameday-sandbox serve")
}

/// What the sandbox printed, for failure messages.
fn sandbox_log(scratch: &Scratch) -> String {
    std::fs::read_to_string(scratch.path().join("sandbox.log")).unwrap_or_default()
}

/// A guardrail on the group's errors with 2 s periods, 2 of 3 (CloudWatch
/// allows 10 s at least; the evaluator takes any period, and tests want speed).
/// Healthy, the service makes under 1 error per period; with two thirds of
/// the fleet stopped, about 250.
async fn error_alarm(c: &Clients, group: &str) -> String {
    let alarm = format!("{group}-errors");
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("App")
        .metric_name("Errors")
        .dimensions(
            Dimension::builder()
                .name("AutoScalingGroupName")
                .value(group)
                .build(),
        )
        .statistic(Statistic::Sum)
        .period(2)
        .evaluation_periods(3)
        .datapoints_to_alarm(2)
        .threshold(20.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    alarm
}

/// Waits (with the sandbox's own command) until the sandbox has put `alarm` in `state`.
async fn wait_for(scratch: &Scratch, alarm: &str, state: &str) {
    let out = sandbox(scratch)
        .args(["wait-alarm", alarm, "--state", state, "--timeout", "45s"])
        .output()
        .await
        .expect("run gameday-sandbox wait-alarm");
    assert!(
        out.status.success(),
        "{}\nsandbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sandbox_log(scratch)
    );
}

/// The minimum and maximum of a metric the sandbox published for `group` in
/// the last ten minutes (one period covering the whole window).
async fn range(c: &Clients, group: &str, metric: &str) -> (f64, f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let query = |id: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("App")
                            .metric_name(metric)
                            .dimensions(
                                Dimension::builder()
                                    .name("AutoScalingGroupName")
                                    .value(group)
                                    .build(),
                            )
                            .build(),
                    )
                    .period(660)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let out = c
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query("lo", "Minimum"))
        .metric_data_queries(query("hi", "Maximum"))
        .start_time(DateTime::from_secs(now - 600))
        .end_time(DateTime::from_secs(now + 60))
        .send()
        .await
        .expect("GetMetricData");
    let value = |id: &str| {
        out.metric_data_results()
            .iter()
            .find(|r| r.id() == Some(id))
            .and_then(|r| r.values().first().copied())
            .unwrap_or_else(|| panic!("no {metric} datapoints for {group}"))
    };
    (value("lo"), value("hi"))
}

async fn alarm_state(c: &Clients, alarm: &str) -> (String, String) {
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        .send()
        .await
        .expect("DescribeAlarms");
    let a = &out.metric_alarms()[0];
    (
        a.state_value()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        a.state_reason().unwrap_or_default().to_string(),
    )
}

/// A fleet of 3, its error alarm, and the sandbox serving it, once the
/// evaluator has put the alarm in OK (a steady service).
async fn steady_service() -> (Clients, Fleet, String, Scratch, tokio::process::Child) {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let alarm = error_alarm(&c, &fleet.group).await;
    let s = Scratch::new();
    let workload = serve(&s, &fleet.group);
    wait_for(&s, &alarm, "OK").await;
    (c, fleet, alarm, s, workload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fault_degrades_the_service_without_tripping_the_evaluated_alarm() {
    let (c, fleet, alarm, s, mut workload) = steady_service().await;

    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &alarm, "{ count: 1 }", "8s"),
    );
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        out.code,
        0,
        "exit code for passed\n{}{}\nsandbox log:\n{}",
        out.stdout,
        out.stderr,
        sandbox_log(&s)
    );
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "every instance runs again"
    );

    // The sandbox saw the stopped instance and the service slowed down, but the alarm held.
    let (serving_min, serving_max) = range(&c, &fleet.group, "ServingInstances").await;
    assert_eq!(
        (serving_min, serving_max),
        (2.0, 3.0),
        "sandbox log:\n{}",
        sandbox_log(&s)
    );
    let (fastest, slowest) = range(&c, &fleet.group, "Latency").await;
    assert!(
        fastest < 50.0 && slowest > 55.0,
        "latency rose under the fault: {fastest}..{slowest} ms\n{}",
        sandbox_log(&s)
    );
    let (state, reason) = alarm_state(&c, &alarm).await;
    assert_eq!(state, "OK", "{reason}");
    assert!(reason.contains("0 of the last 3 datapoints breached"), "{reason}");
    workload.kill().await.expect("stop the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_too_large_fires_the_evaluated_alarm_and_the_run_aborts_and_rolls_back() {
    let (c, fleet, alarm, s, mut workload) = steady_service().await;

    // Two thirds of the fleet for 5 minutes: only the guardrail ends this run in time.
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &alarm, "{ count: 2 }", "5m"),
    );
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        out.code,
        4,
        "exit code for aborted\n{}{}\nsandbox log:\n{}",
        out.stdout,
        out.stderr,
        sandbox_log(&s)
    );
    assert!(out.stderr.contains("GUARDRAIL TRIPPED"), "{}", out.stderr);
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running"),
        "every instance runs again after the abort"
    );

    let j = s.journal();
    assert_eq!(j["verdict"], "aborted");
    let breach = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event"] == "guardrail_breached")
        .expect("a guardrail_breached event");
    let detail = breach["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("is in ALARM") && detail.contains("datapoints breached (> 20; 2 needed)"),
        "the breach quotes the evaluator: {detail}"
    );

    // Once the instances are back, the evaluator returns the alarm to OK by itself.
    wait_for(&s, &alarm, "OK").await;
    let (serving_min, serving_max) = range(&c, &fleet.group, "ServingInstances").await;
    assert_eq!((serving_min, serving_max), (1.0, 3.0));
    workload.kill().await.expect("stop the sandbox");
}

/// Polls until the sandbox has published `want` as the lowest ServingInstances for `group`.
async fn wait_for_serving_low(c: &Clients, s: &Scratch, group: &str, want: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if range(c, group, "ServingInstances").await.0 == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ServingInstances never went down to {want}\n{}",
            sandbox_log(s)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_behind_only_an_empty_security_group_does_not_serve() {
    let (c, fleet, _alarm, s, mut workload) = steady_service().await;
    // What a network blackhole does: swap the instance's groups for one with no rule at all.
    let target = &fleet.instances[0];
    let described = c
        .ec2
        .describe_instances()
        .instance_ids(target)
        .send()
        .await
        .expect("DescribeInstances");
    let vpc = described.reservations()[0].instances()[0]
        .vpc_id()
        .expect("a VPC")
        .to_string();
    let empty = c
        .ec2
        .create_security_group()
        .group_name(unique("blackhole"))
        .description("no rules")
        .vpc_id(vpc)
        .send()
        .await
        .expect("CreateSecurityGroup");
    let empty = empty.group_id().expect("group id").to_string();
    let sg = c
        .ec2
        .describe_security_groups()
        .group_ids(&empty)
        .send()
        .await
        .expect("DescribeSecurityGroups");
    c.ec2
        .revoke_security_group_egress()
        .group_id(&empty)
        .set_ip_permissions(Some(sg.security_groups()[0].ip_permissions_egress().to_vec()))
        .send()
        .await
        .expect("RevokeSecurityGroupEgress");
    c.ec2
        .modify_instance_attribute()
        .instance_id(target)
        .groups(&empty)
        .send()
        .await
        .expect("ModifyInstanceAttribute");

    wait_for_serving_low(&c, &s, &fleet.group, 2.0).await;
    assert_eq!(
        states(&c, &fleet.instances).await,
        vec!["running"; 3],
        "the instance runs; only the network cuts it off"
    );
    // The sandbox prints its report every 2 s, which may come after the metric.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !sandbox_log(&s).contains("2/3 instances serving (1 unreachable)") {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox never said why the instance does not serve\n{}",
            sandbox_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    workload.kill().await.expect("stop the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_named_with_evaluate_is_evaluated_on_any_metric() {
    let c = clients().await;
    let s = Scratch::new();
    let metric = unique("QueueDepth");
    let alarm = format!("{metric}-high");
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("Test")
        .metric_name(&metric)
        .statistic(Statistic::Maximum)
        .period(2)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    let log = std::fs::File::create(s.path().join("sandbox.log")).expect("sandbox log");
    // No group is served (the name matches none); only the named alarm is evaluated.
    let mut evaluator = sandbox(&s)
        .args([
            "serve",
            "--group",
            "no-such-group",
            "--evaluate",
            &alarm,
            "--interval",
            "500ms",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gameday-sandbox serve");
    // Nothing published yet: with missing data treated as missing, INSUFFICIENT_DATA.
    wait_for(&s, &alarm, "INSUFFICIENT_DATA").await;
    let publish = async {
        loop {
            c.cloudwatch
                .put_metric_data()
                .namespace("Test")
                .metric_data(
                    aws_sdk_cloudwatch::types::MetricDatum::builder()
                        .metric_name(&metric)
                        .value(12.0)
                        .build(),
                )
                .send()
                .await
                .expect("PutMetricData");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::select! {
        _ = publish => {}
        _ = wait_for(&s, &alarm, "ALARM") => {}
    }
    let (state, reason) = alarm_state(&c, &alarm).await;
    assert_eq!(state, "ALARM");
    assert!(
        reason.contains("1 of the last 1 datapoints breached (>= 10; 1 needed)"),
        "{reason}"
    );
    evaluator.kill().await.expect("stop the sandbox");
}

/// Sum of `metric` in `AWS/ApplicationELB` with `dims` over the last ten
/// minutes, and its minimum (one period covering the whole window); `None`
/// before any datapoint.
async fn elb_metric(c: &Clients, metric: &str, dims: &[(&str, &str)], stat: &str) -> Option<f64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let metric = Metric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name(metric)
        .set_dimensions(Some(
            dims.iter()
                .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                .collect(),
        ))
        .build();
    let out = c
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("m")
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(660)
                        .stat(stat)
                        .build(),
                )
                .build(),
        )
        .start_time(DateTime::from_secs(now - 600))
        .end_time(DateTime::from_secs(now + 60))
        .send()
        .await
        .expect("GetMetricData");
    out.metric_data_results()
        .first()
        .and_then(|r| r.values().first().copied())
}

/// The resource part of an ARN, as CloudWatch's ELB dimensions write it.
fn dimension(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).expect("an ARN").to_string();
    resource
        .strip_prefix("loadbalancer/")
        .unwrap_or(&resource)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancer_splits_users_by_the_listener_weights_among_serving_targets() {
    let c = clients().await;
    let s = Scratch::new();
    let group = unique("w");
    let out = sandbox(&s)
        .args(["setup", "--group", &group, "--instances", "4"])
        .output()
        .await
        .expect("run gameday-sandbox setup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let source = elb
        .describe_target_groups()
        .names(&group)
        .send()
        .await
        .expect("DescribeTargetGroups: setup made the group's target group");
    let source = &source.target_groups()[0];
    let lb = elb
        .describe_load_balancers()
        .names(format!("{group}-alb"))
        .send()
        .await
        .expect("DescribeLoadBalancers: setup made the load balancer");
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .expect("arn")
        .to_string();
    let listener = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .expect("DescribeListeners");
    let listener = listener.listeners()[0].listener_arn().expect("arn").to_string();

    // A second target group with two of the group's instances, given 20% of the users.
    let described = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let ids: Vec<String> = described.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 4);
    let other = elb
        .create_target_group()
        .name(unique("e"))
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(source.vpc_id().expect("vpc"))
        .send()
        .await
        .expect("CreateTargetGroup");
    let other_arn = other.target_groups()[0]
        .target_group_arn()
        .expect("arn")
        .to_string();
    let mut register = elb.register_targets().target_group_arn(&other_arn);
    for id in &ids[..2] {
        register = register.targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(id)
                .build(),
        );
    }
    register.send().await.expect("RegisterTargets");
    let tuple = |arn: &str, w: i32| {
        aws_sdk_elasticloadbalancingv2::types::TargetGroupTuple::builder()
            .target_group_arn(arn)
            .weight(w)
            .build()
    };
    elb.modify_listener()
        .listener_arn(&listener)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                .forward_config(
                    aws_sdk_elasticloadbalancingv2::types::ForwardActionConfig::builder()
                        .target_groups(tuple(source.target_group_arn().expect("arn"), 80))
                        .target_groups(tuple(&other_arn, 20))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("ModifyListener");

    let log = std::fs::File::create(s.path().join("sandbox.log")).expect("sandbox log");
    let mut workload = sandbox(&s)
        .args([
            "serve",
            "--group",
            &group,
            "--load-balancer",
            &format!("{group}-alb"),
            "--load",
            "1000",
            "--interval",
            "500ms",
            "--report-every",
            "2s",
            "--seed",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gameday-sandbox serve");
    let lb_dim = dimension(&lb_arn);
    let (source_dim, other_dim) = (
        dimension(source.target_group_arn().expect("arn")),
        dimension(&other_arn),
    );
    let pair = |tg: &str| vec![("TargetGroup", tg.to_string()), ("LoadBalancer", lb_dim.clone())];
    let read = |metric: &'static str, dims: Vec<(&'static str, String)>, stat: &'static str| {
        let c = &c;
        async move {
            let dims: Vec<(&str, &str)> = dims.iter().map(|(k, v)| (*k, v.as_str())).collect();
            elb_metric(c, metric, &dims, stat).await
        }
    };

    // Wait for a few ticks of both groups.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (a, b) = loop {
        let a = read("RequestCount", pair(&source_dim), "Sum").await;
        let b = read("RequestCount", pair(&other_dim), "Sum").await;
        if let (Some(a), Some(b)) = (a, b)
            && a + b > 2000.0
        {
            break (a, b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ELB metrics for both target groups\n{}",
            sandbox_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Each tick splits the balancer's requests 80/20 (rounded per datapoint).
    let share = b / (a + b);
    assert!(
        (0.19..=0.21).contains(&share),
        "the second group got {share} of {a} + {b} requests\n{}",
        sandbox_log(&s)
    );
    assert_eq!(
        read("HealthyHostCount", pair(&other_dim), "Minimum").await,
        Some(2.0)
    );
    assert_eq!(
        read("HealthyHostCount", pair(&source_dim), "Minimum").await,
        Some(4.0)
    );
    let total = read("RequestCount", vec![("LoadBalancer", lb_dim.clone())], "Sum")
        .await
        .expect("balancer RequestCount");
    assert!(
        total >= a + b,
        "the balancer counts every request: {total} < {a} + {b}"
    );

    // One of the second group's two targets stopped: it serves on one, at 95%, with errors.
    c.ec2
        .stop_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .expect("StopInstances");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = read("HealthyHostCount", pair(&other_dim), "Minimum").await;
        let errors = read("HTTPCode_Target_5XX_Count", pair(&other_dim), "Maximum").await;
        if healthy == Some(1.0) && errors.is_some_and(|e| e > 10.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped target still counted as healthy ({healthy:?}) or no errors ({errors:?})\n{}",
            sandbox_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        sandbox_log(&s).contains("20.0% of the requests, 1/2 targets serving"),
        "{}",
        sandbox_log(&s)
    );
    workload.kill().await.expect("stop the sandbox");
}

/// The listener rules of `balancer` as data (actions by rule), to compare before and after.
async fn rules_of(elb: &aws_sdk_elasticloadbalancingv2::Client, balancer: &str) -> Vec<String> {
    let lb = elb
        .describe_load_balancers()
        .names(balancer)
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let lb = lb.load_balancers()[0]
        .load_balancer_arn()
        .expect("arn")
        .to_string();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .expect("DescribeListeners");
    let mut out = Vec::new();
    for l in listeners.listeners() {
        let rules = elb
            .describe_rules()
            .listener_arn(l.listener_arn().expect("arn"))
            .send()
            .await
            .expect("DescribeRules");
        for r in rules.rules() {
            out.push(format!("{:?} {:?}", r.priority(), r.actions()));
        }
    }
    out
}

/// experiments/shop-web-chap.yaml end to end on a fleet of its own: 5% of the
/// users to each copy, one experiment instance stopped, the experiment judged
/// against the control copy: its guardrail relative to the control aborts the
/// run, which restores the listener at once; the departure is significant
/// (the hypothesis fails too); recovery does not wait for the probes of the
/// copies' traffic, which is gone (they are not judged); and the listener is
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chap_example_judges_the_experiment_copy_against_the_control_copy() {
    let s = Scratch::new();
    let group = unique("chap");
    let out = sandbox(&s)
        .args(["setup", "--group", &group, "--instances", "36"])
        .output()
        .await
        .expect("run gameday-sandbox setup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let balancer = format!("{group}-alb");
    let before = rules_of(&elb, &balancer).await;

    // The example's own sizing (its demo-serve line), for this fleet only.
    let log = std::fs::File::create(s.path().join("sandbox.log")).expect("sandbox log");
    let mut workload = sandbox(&s)
        .args([
            "serve",
            "--group",
            &group,
            "--load-balancer",
            &balancer,
            "--load",
            "4800",
            "--group-load",
            "300",
            "--interval",
            "500ms",
            "--report-every",
            "2s",
            "--seed",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gameday-sandbox serve");
    let alarm = format!("{group}-5xx-high");
    wait_for(&s, &alarm, "OK").await;

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/shop-web-chap.yaml"
    ))
    .expect("the example");
    let text = text
        .replace(
            "autoscaling_group: shop-web",
            &format!("autoscaling_group: {group}"),
        )
        .replace("alarm: shop-web-5xx-high", &format!("alarm: {alarm}"));
    let file = s.write("chap.yaml", &text);
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(
        out.code,
        4,
        "aborted: the experiment's 5xx exceed the control's by the guardrail's margin\n{}{}\nsandbox log:\n{}",
        out.stdout,
        out.stderr,
        sandbox_log(&s)
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "aborted", "{}", j["reason"]);
    assert_eq!(
        j["abort"]["guardrail"], "experiment 5xx over the control's",
        "{}",
        j["reason"]
    );
    let events = j["events"].as_array().expect("events");
    // The listener was restored at the abort, so the copies had no users
    // during recovery: their probes are not judged, and recovery did not wait
    // out `timing.recovery` for them (no "not recovered").
    let mut not_judged: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "probe_not_judged")
        .map(|e| {
            assert_eq!(e["reason"], "the copies' traffic was withdrawn at the abort");
            e["probe"].as_str().unwrap_or_default()
        })
        .collect();
    not_judged.sort();
    assert_eq!(
        not_judged,
        ["5xx against the control", "latency against the control"],
        "each probe of the copies is left out of recovery, once"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "recovery_result"),
        "nothing else was judged for recovery, so no recovery result: {}",
        j["reason"]
    );
    assert!(
        !j["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("timing.recovery"),
        "{}",
        j["reason"]
    );
    // Over the fault window the abort cut short, latency (up from the first
    // period) departs significantly; the 5xx count, which rises a period
    // later, is higher but may have too few datapoints to be significant.
    let cmp = |probe: &str| {
        events
            .iter()
            .find(|e| e["event"] == "comparison" && e["probe"] == probe)
            .unwrap_or_else(|| panic!("a comparison of `{probe}`"))
    };
    let latency = cmp("latency against the control");
    assert!(
        latency["p_value"].as_f64().expect("a p-value") < 0.05
            && latency["judged"] == true
            && latency["ok"] == false,
        "the experiment departs from the control: {latency}"
    );
    let errors = cmp("5xx against the control");
    assert!(
        errors["experiment_mean"].as_f64() > errors["control_mean"].as_f64() && errors["judged"] == true,
        "{errors}"
    );
    // The control's series is the control copy's target group, not the source's.
    let control = events
        .iter()
        .find(|e| e["event"] == "series" && e["of"] == "control")
        .expect("a control series");
    let tg = control["dimensions"].to_string();
    assert!(tg.contains("targetgroup/gd-") && tg.contains("-c/"), "{tg}");

    assert_eq!(
        rules_of(&elb, &balancer).await,
        before,
        "the listener is as it was"
    );
    let left = elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    let run_id = j["run_id"].as_str().expect("run id");
    assert!(
        left.target_groups().iter().all(|t| !t
            .target_group_name()
            .unwrap_or_default()
            .contains(&run_id[run_id.len() - 4..])),
        "the run's target groups are deleted"
    );
    workload.kill().await.expect("stop the sandbox");
}
