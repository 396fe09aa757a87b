//! End-to-end runs against the sandbox's simulated service: `gameday-sandbox
//! serve` publishes metrics that follow the fleet's real state in moto and
//! evaluates the guardrail alarm from them, and `gameday run` reacts. No code
//! here sets an alarm state: every state change comes from the evaluator.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use aws_smithy_types::DateTime;

use crate::support::*;

/// The sandbox binary with the test server's endpoint and no user config.
fn sandbox(scratch: &Scratch) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gameday-sandbox"));
    cmd.current_dir(scratch.path())
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", scratch.path().join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", scratch.path().join("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Starts `serve` for `group` only (tests run in parallel against one moto),
/// with short ticks; its lines go to `sandbox.log` in the scratch folder.
fn serve(scratch: &Scratch, group: &str) -> tokio::process::Child {
    let log = std::fs::File::create(scratch.path().join("sandbox.log")).expect("sandbox log");
    sandbox(scratch)
        .args(["serve", "--group", group, "--interval", "500ms", "--report-every", "2s", "--seed", "9"])
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
        .dimensions(Dimension::builder().name("AutoScalingGroupName").value(group).build())
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
    assert!(out.status.success(), "{}\nsandbox log:\n{}", String::from_utf8_lossy(&out.stderr), sandbox_log(scratch));
}

fn experiment(group: &str, alarm: &str, select: &str, duration: &str) -> String {
    format!(
        "version: 1
name: sandbox-stop
hypothesis: the service rides out the stopped instances
environment: {{ mode: in-place, autoscaling_group: {group} }}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {select} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: 2m }}
"
    )
}

/// The minimum and maximum of a metric the sandbox published for `group` in
/// the last ten minutes (one period covering the whole window).
async fn range(c: &Clients, group: &str, metric: &str) -> (f64, f64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let query = |id: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("App")
                            .metric_name(metric)
                            .dimensions(Dimension::builder().name("AutoScalingGroupName").value(group).build())
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
        out.metric_data_results().iter().find(|r| r.id() == Some(id)).and_then(|r| r.values().first().copied()).unwrap_or_else(|| panic!("no {metric} datapoints for {group}"))
    };
    (value("lo"), value("hi"))
}

async fn alarm_state(c: &Clients, alarm: &str) -> (String, String) {
    let out = c.cloudwatch.describe_alarms().alarm_names(alarm).send().await.expect("DescribeAlarms");
    let a = &out.metric_alarms()[0];
    (a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default(), a.state_reason().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fault_degrades_the_service_without_tripping_the_evaluated_alarm() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let alarm = error_alarm(&c, &fleet.group).await;
    let s = Scratch::new();
    let mut workload = serve(&s, &fleet.group);
    wait_for(&s, &alarm, "OK").await;

    let file = s.write("exp.yaml", &experiment(&fleet.group, &alarm, "{ count: 1 }", "5s"));
    let out = finish(gameday(&s).arg("run").arg(&file).arg("--runs-dir").arg(s.runs()).spawn().expect("spawn"), Duration::from_secs(90)).await;
    assert_eq!(out.code, 0, "exit code for passed\n{}{}\nsandbox log:\n{}", out.stdout, out.stderr, sandbox_log(&s));
    assert!(states(&c, &fleet.instances).await.iter().all(|st| st == "running"), "every instance runs again");

    // The sandbox saw the stopped instance and the service slowed down, but the alarm held.
    let (serving_min, serving_max) = range(&c, &fleet.group, "ServingInstances").await;
    assert_eq!((serving_min, serving_max), (2.0, 3.0), "sandbox log:\n{}", sandbox_log(&s));
    let (fastest, slowest) = range(&c, &fleet.group, "Latency").await;
    assert!(fastest < 50.0 && slowest > 55.0, "latency rose under the fault: {fastest}..{slowest} ms\n{}", sandbox_log(&s));
    let (state, reason) = alarm_state(&c, &alarm).await;
    assert_eq!(state, "OK", "{reason}");
    assert!(reason.contains("0 of the last 3 datapoints breached"), "{reason}");
    workload.kill().await.expect("stop the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_too_large_fires_the_evaluated_alarm_and_the_run_aborts_and_rolls_back() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let alarm = error_alarm(&c, &fleet.group).await;
    let s = Scratch::new();
    let mut workload = serve(&s, &fleet.group);
    wait_for(&s, &alarm, "OK").await;

    // Two thirds of the fleet for 5 minutes: only the guardrail ends this run in time.
    let file = s.write("exp.yaml", &experiment(&fleet.group, &alarm, "{ count: 2 }", "5m"));
    let out = finish(gameday(&s).arg("run").arg(&file).arg("--runs-dir").arg(s.runs()).spawn().expect("spawn"), Duration::from_secs(90)).await;
    assert_eq!(out.code, 4, "exit code for aborted\n{}{}\nsandbox log:\n{}", out.stdout, out.stderr, sandbox_log(&s));
    assert!(out.stderr.contains("GUARDRAIL TRIPPED"), "{}", out.stderr);
    assert!(states(&c, &fleet.instances).await.iter().all(|st| st == "running"), "every instance runs again after the abort");

    let j = s.journal();
    assert_eq!(j["verdict"], "aborted");
    let breach = j["events"].as_array().expect("events").iter().find(|e| e["event"] == "guardrail_breached").expect("a guardrail_breached event");
    let detail = breach["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("is in ALARM") && detail.contains("datapoints breached (> 20; 2 needed)"), "the breach quotes the evaluator: {detail}");

    // Once the instances are back, the evaluator returns the alarm to OK by itself.
    wait_for(&s, &alarm, "OK").await;
    let (serving_min, serving_max) = range(&c, &fleet.group, "ServingInstances").await;
    assert_eq!((serving_min, serving_max), (1.0, 3.0));
    workload.kill().await.expect("stop the sandbox");
}
