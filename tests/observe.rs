//! The observation engine against moto: steady state at baseline, during the
//! fault and in recovery; relative tolerances; the control comparison;
//! detection probes; guardrail preflight. Metrics are published by the test
//! with PutMetricData and alarms set with SetAlarmState (moto evaluates neither).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::support::*;

/// Publishes `App/Latency` for a group (and, in parallel mode, for its
/// copies `gd-*-<group>`) every 200 ms until dropped; the values can be changed
/// while it runs.
struct Publisher {
    source: Arc<AtomicU64>,
    copy: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(c: &Clients, group: &str, value: f64) -> Publisher {
        let (source, copy) = (
            Arc::new(AtomicU64::new(value.to_bits())),
            Arc::new(AtomicU64::new(value.to_bits())),
        );
        let (cw, asg, group) = (c.cloudwatch.clone(), c.autoscaling.clone(), group.to_string());
        let (s, k) = (source.clone(), copy.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                n += 1;
                // A little deterministic jitter, as real latencies have.
                let jitter = (n % 7) as f64 * 0.5;
                let mut groups = vec![(group.clone(), f64::from_bits(s.load(Ordering::SeqCst)) + jitter)];
                // Every page: the other tests' groups outnumber one page
                // (50), and the copy, made last, is on the last.
                let mut pages = asg.describe_auto_scaling_groups().into_paginator().send();
                while let Some(Ok(page)) = pages.next().await {
                    for g in page.auto_scaling_groups() {
                        let name = g.auto_scaling_group_name().unwrap_or_default();
                        if name.starts_with("gd-") && name.ends_with(&format!("-{group}")) {
                            groups.push((
                                name.to_string(),
                                f64::from_bits(k.load(Ordering::SeqCst)) + jitter,
                            ));
                        }
                    }
                }
                let data: Vec<MetricDatum> = groups
                    .iter()
                    .map(|(g, v)| {
                        MetricDatum::builder()
                            .metric_name("Latency")
                            .dimensions(Dimension::builder().name("AutoScalingGroupName").value(g).build())
                            .value(*v)
                            .unit(StandardUnit::Milliseconds)
                            .timestamp(std::time::SystemTime::now().into())
                            .build()
                    })
                    .collect();
                let _ = cw
                    .put_metric_data()
                    .namespace("App")
                    .set_metric_data(Some(data))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Publisher { source, copy, task }
    }

    /// Sets the source group's value (in place: the group under test).
    fn set(&self, v: f64) {
        self.source.store(v.to_bits(), Ordering::SeqCst);
    }

    /// Sets the parallel copy's value.
    fn set_copy(&self, v: f64) {
        self.copy.store(v.to_bits(), Ordering::SeqCst);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An in-place stop experiment with `steady` as its steady state.
fn experiment(fleet: &Fleet, mode: &str, steady: &str, duration: &str, timing: &str) -> String {
    format!(
        "version: 1
name: observe-test
hypothesis: latency stays low while instances are stopped
environment: {{ mode: {mode}, autoscaling_group: {group}, capacity: 2 }}
steady_state:
{steady}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {{ count: 1 }} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: 5m, {timing} }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

const LATENCY: &str = "metric: { namespace: App, name: Latency, dimensions: { AutoScalingGroupName: \"${asg}\" }, stat: Average, period: 1 }";

fn events<'a>(j: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
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

async fn all_running(c: &Clients, ids: &[String]) -> bool {
    states(c, ids).await.iter().all(|s| s == "running")
}

/// Waits until every instance of `fleet` runs again (the rollback is done).
async fn wait_all_running(c: &Clients, ids: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !all_running(c, ids).await {
        assert!(std::time::Instant::now() < deadline, "instances never ran again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_that_does_not_hold_at_baseline_means_nothing_is_injected() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let _p = Publisher::start(&c, &fleet.group, 500.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let steady = format!("  - name: latency\n    {LATENCY}\n    expect: \"< 300\"");
    let out = finish(
        run(&s, &experiment(&fleet, "in-place", &steady, "3s", "baseline: 2s")).await,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 5, "not-run\n{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("did not hold during the baseline") && out.stdout.contains("latency"),
        "{}",
        out.stdout
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "not-run");
    let actions = j["actions"].as_array().expect("actions");
    assert!(
        actions.iter().all(|a| a["kind"] != "inject"),
        "nothing was injected: {actions:?}"
    );
    assert!(all_running(&c, &fleet.instances).await);
    let checked = events(&j, "checked");
    assert!(
        !checked.is_empty() && checked.iter().all(|e| e["phase"] == "baseline"),
        "the baseline check is journaled"
    );
    assert!(
        checked[0]["results"][0]["value"]
            .as_f64()
            .is_some_and(|v| v >= 500.0),
        "{:?}",
        checked[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_pushed_out_of_tolerance_during_the_fault_fails_the_run() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = Publisher::start(&c, &fleet.group, 100.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let steady = format!("  - name: latency\n    {LATENCY}\n    expect: \"< 300\"\n    datapoints: 2");
    let child = run(
        &s,
        &experiment(&fleet, "in-place", &steady, "5s", "baseline: 2s, recovery: 20s"),
    )
    .await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    p.set(450.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.set(100.0);
    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 3, "failed\n{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("while faults were active") && out.stdout.contains("outside < 300"),
        "{}",
        out.stdout
    );
    assert!(
        all_running(&c, &fleet.instances).await,
        "rolled back all the same"
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "failed");
    let dev = events(&j, "deviation");
    let during = dev
        .iter()
        .find(|d| d["phase"] == "inject" || d["phase"] == "rollback")
        .expect("a deviation while faults were active");
    assert_eq!(during["probe"], "latency");
    assert!(during["at"].is_string(), "with its timestamp");
    let rec = events(&j, "recovery_result");
    assert_eq!(rec.len(), 1, "the recovery phase ran");
    assert_eq!(rec[0]["recovered"], true, "{:?}", rec[0]);
    let dir = crate::report::run_dirs(&s).remove(0);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml after a failed run");
    let case = junit
        .split("<testcase ")
        .find(|c| c.contains("name=\"steady state `latency`"))
        .expect("a test case for the latency probe");
    assert!(
        case.contains("<failure message=") && case.contains("outside &lt; 300"),
        "the probe that failed the run fails in JUnit: {junit}"
    );
    crate::report::assert_reports_regenerate(&s, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_that_returns_within_the_recovery_window_passes_with_time_to_recover() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = Publisher::start(&c, &fleet.group, 100.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let steady = format!("  - name: latency\n    {LATENCY}\n    expect: \"< 300\"\n    during: recover");
    let child = run(
        &s,
        &experiment(&fleet, "in-place", &steady, "3s", "baseline: 2s, recovery: 30s"),
    )
    .await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    p.set(450.0);
    wait_all_running(&c, &fleet.instances).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.set(100.0);
    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 0, "passed\n{}{}", out.stdout, out.stderr);
    let j = s.journal();
    assert_eq!(j["verdict"], "passed");
    assert!(
        events(&j, "deviation").iter().any(|d| d["probe"] == "latency"),
        "the deviation is recorded even though it was allowed"
    );
    let rec = events(&j, "recovery_result");
    assert_eq!(rec[0]["recovered"], true, "{:?}", rec[0]);
    let ttr = rec[0]["time_to_recover_ms"].as_u64().expect("time to recover");
    assert!(
        ttr >= 1000,
        "it took at least the 2 s the metric stayed high: {ttr} ms"
    );
    let series = events(&j, "series");
    let points = series[0]["points"].as_array().expect("points");
    assert!(
        points.iter().any(|p| p["v"].as_f64() > Some(400.0))
            && points.iter().any(|p| p["v"].as_f64() < Some(200.0)),
        "the series shows both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_tolerance_is_fixed_from_the_baseline() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = Publisher::start(&c, &fleet.group, 100.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    // 180 is fine for a fixed `< 300`, but not for 1.5 times a baseline of about 100.
    let steady =
        format!("  - name: latency\n    {LATENCY}\n    expect: \"< baseline * 1.5\"\n    datapoints: 2");
    let child = run(
        &s,
        &experiment(&fleet, "in-place", &steady, "5s", "baseline: 2s, recovery: 20s"),
    )
    .await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    p.set(180.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.set(100.0);
    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 3, "failed\n{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let b = events(&j, "baseline_measured");
    assert_eq!(b.len(), 1);
    let base = b[0]["value"].as_f64().expect("baseline value");
    assert!(
        (100.0..=104.0).contains(&base),
        "the mean of the baseline: {base}"
    );
    assert!(
        b[0]["resolved"].as_str().is_some_and(|r| r.starts_with("< 15")),
        "{:?}",
        b[0]
    );
    assert_eq!(b[0]["written"], "< baseline * 1.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_is_judged_against_the_source_as_a_control() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = Publisher::start(&c, &fleet.group, 100.0);
    // The copy is slow from the moment it exists: the comparison covers only
    // the fault window, so every datapoint in it shows the harm. (Raising the
    // copy's value once the fault is seen active raced the window's start: a
    // datapoint or two from before the harm made p = 0.0526 on a loaded
    // machine.) Ten seconds of fault give the test enough datapoints for
    // p < 0.05 even when a slow moto drops some of them.
    p.set_copy(200.0);
    let s = Scratch::new();
    // Both stay far below the fixed tolerance; only the control shows the harm.
    let steady = format!(
        "  - name: latency\n    {LATENCY}\n    expect: \"< 1000\"\n    compare: {{ max_increase: 20% }}"
    );
    let child = run(
        &s,
        &experiment(&fleet, "parallel", &steady, "10s", "baseline: 2s, recovery: 20s"),
    )
    .await;
    let out = finish(child, Duration::from_secs(120)).await;
    assert_eq!(
        out.code, 3,
        "failed against the control\n{}{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("against the control"), "{}", out.stdout);
    let j = s.journal();
    let cmp = events(&j, "comparison");
    assert_eq!(cmp.len(), 1);
    assert_eq!(cmp[0]["ok"], false);
    assert!(
        cmp[0]["p_value"].as_f64().is_some_and(|p| p < 0.05),
        "{:?}",
        cmp[0]
    );
    assert!(
        cmp[0]["change_percent"].as_f64().is_some_and(|c| c > 50.0),
        "{:?}",
        cmp[0]
    );
    let series = events(&j, "series");
    let of: Vec<&str> = series
        .iter()
        .map(|s| s["of"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(of, ["experiment", "control"], "both series are journaled");
    assert!(
        series[1]["dimensions"][0][1] == fleet.group.as_str(),
        "the control is the source group: {:?}",
        series[1]["dimensions"]
    );
    assert!(
        series[0]["dimensions"][0][1]
            .as_str()
            .is_some_and(|g| g.starts_with("gd-")),
        "the experiment is the copy"
    );
    assert_eq!(
        group_state(&c, &fleet.group).await.instances.len(),
        2,
        "the source is untouched"
    );
}

fn detection(fleet: &Fleet, alarm: &str, within: &str) -> String {
    experiment(
        fleet,
        "in-place",
        &format!(
            "  - name: paging\n    alarm_fires: {{ alarm: {alarm}, within: {within}, clears_within: 30s }}"
        ),
        "3s",
        "baseline: 1s, recovery: 30s",
    )
}

async fn detection_alarm(c: &Clients, fleet: &Fleet) -> String {
    let alarm = format!("{}-page", fleet.group);
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("App")
        .metric_name("Latency")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(10)
        .evaluation_periods(1)
        .threshold(300.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    set_alarm(c, &alarm, "OK").await;
    alarm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_probe_passes_when_its_alarm_fires_and_clears() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let alarm = detection_alarm(&c, &fleet).await;
    let s = Scratch::new();
    let child = run(&s, &detection(&fleet, &alarm, "30s")).await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    set_alarm(&c, &alarm, "ALARM").await;
    wait_all_running(&c, &fleet.instances).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_alarm(&c, &alarm, "OK").await;
    let out = finish(child, Duration::from_secs(90)).await;
    assert_eq!(out.code, 0, "passed\n{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let d = events(&j, "detection");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["ok"], true, "{:?}", d[0]);
    assert!(
        d[0]["time_to_detect_ms"].as_u64().is_some_and(|t| t >= 500),
        "{:?}",
        d[0]
    );
    assert!(
        d[0]["time_to_clear_ms"].as_u64().is_some_and(|t| t >= 500),
        "{:?}",
        d[0]
    );
    let changes: Vec<&str> = events(&j, "alarm_changed")
        .iter()
        .filter(|e| e["alarm"] == alarm.as_str())
        .map(|e| e["to"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        changes,
        ["OK", "ALARM", "OK"],
        "alarm state changes are in the timeline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_probe_fails_when_its_alarm_never_fires() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let alarm = detection_alarm(&c, &fleet).await;
    let s = Scratch::new();
    let out = finish(
        run(&s, &detection(&fleet, &alarm, "2s")).await,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 3, "failed\n{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("never fired within 2s"), "{}", out.stdout);
    assert!(all_running(&c, &fleet.instances).await);
    let j = s.journal();
    let d = events(&j, "detection");
    assert_eq!(d[0]["ok"], false);
    assert!(d[0]["time_to_detect_ms"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_a_guardrail_too_slow_or_without_data() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    // The fleet's alarm evaluates one 60 s period: 60.5 s worst case at a 500ms interval.
    let s = Scratch::new();
    let text = stop_experiment(&fleet.group, &fleet.alarm, "all", "2s")
        .replace("max_duration: 5m", "max_duration: 5m, max_abort_delay: 30s");
    let file = s.write("slow.yaml", &text);
    let plan = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(plan.code, 5, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("worst-case time from a breach to the abort: 60.5s, timing.max_abort_delay 30s"),
        "{}",
        plan.stdout
    );
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("exceeds timing.max_abort_delay 30s"),
        "{}",
        out.stdout
    );
    let j = s.journal();
    assert!(j["actions"].as_array().expect("actions").is_empty());
    let pre = events(&j, "guardrail_preflight");
    assert_eq!(pre[0]["worst_case_abort_ms"], 60_500);

    set_alarm(&c, &fleet.alarm, "INSUFFICIENT_DATA").await;
    let s = Scratch::new();
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "all", "2s"),
    );
    let out = finish(
        run_command(&s, &file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("has no data (INSUFFICIENT_DATA)"),
        "{}",
        out.stdout
    );
    assert!(all_running(&c, &fleet.instances).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_guardrail_over_its_threshold_aborts_and_rolls_back() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = Publisher::start(&c, &fleet.group, 100.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let text = experiment(&fleet, "in-place", "  - asg_healthy: { at_least: 1 }", "2m", "baseline: 1s, recovery: 10s")
        .replace("guardrails:\n", &format!("guardrails:\n  - name: latency guard\n    {LATENCY}\n    threshold: \"> 300\"\n    datapoints: 2\n"));
    let child = run(&s, &text).await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    p.set(900.0);
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, 4, "aborted\n{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("latency guard"),
        "the verdict names the guardrail: {}",
        out.stdout
    );
    assert!(
        all_running(&c, &fleet.instances).await,
        "the stopped instance runs again"
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "aborted");
    let breach = events(&j, "guardrail_breached");
    assert_eq!(breach.len(), 1, "{breach:?}");
    assert_rollback_began_on_the_breach_tick(&j);
}

/// Publishes `App/Errors` (0 errors) for a group every 200 ms until stopped
/// or dropped: a service that stops emitting when it dies.
struct ErrorsPublisher {
    task: tokio::task::JoinHandle<()>,
}

impl ErrorsPublisher {
    fn start(c: &Clients, group: &str) -> ErrorsPublisher {
        let (cw, group) = (c.cloudwatch.clone(), group.to_string());
        let task = tokio::spawn(async move {
            loop {
                let datum = MetricDatum::builder()
                    .metric_name("Errors")
                    .dimensions(
                        Dimension::builder()
                            .name("AutoScalingGroupName")
                            .value(&group)
                            .build(),
                    )
                    .value(0.0)
                    .unit(StandardUnit::Count)
                    .timestamp(std::time::SystemTime::now().into())
                    .build();
                let _ = cw
                    .put_metric_data()
                    .namespace("App")
                    .metric_data(datum)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ErrorsPublisher { task }
    }

    /// The service dies: no more datapoints.
    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ErrorsPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An in-place stop held `duration` with a metric guardrail on `App/Errors`
/// (period 1 s, interval 500 ms: silent after the default 3 s) and `extra`
/// lines in the guardrail (e.g. `missing: ignore`).
fn errors_guarded(fleet: &Fleet, duration: &str, extra: &str) -> String {
    let guard = format!(
        "guardrails:\n  - name: errors guard\n    metric: {{ namespace: App, name: Errors, dimensions: {{ AutoScalingGroupName: \"${{asg}}\" }}, stat: Sum, period: 1 }}\n    threshold: \"> 100\"\n{extra}"
    );
    experiment(
        fleet,
        "in-place",
        "  - asg_healthy: { at_least: 1 }",
        duration,
        "baseline: 2s, recovery: 30s",
    )
    .replace("guardrails:\n", &guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_guardrail_that_goes_silent_mid_fault_aborts_and_rolls_back() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = ErrorsPublisher::start(&c, &fleet.group);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let text = errors_guarded(&fleet, "2m", "");

    // The plan states the rule and counts it in the worst case: a period,
    // the 3 s of silence, and the 500 ms interval.
    let file = s.write("plan.yaml", &text);
    let plan = finish(
        gameday(&s).arg("plan").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        plan.stdout.contains("missing: breach after 3s")
            && plan.stdout.contains("worst-case time to abort 4.5s"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    let json = finish(
        gameday(&s)
            .args(["plan", "--output", "json"])
            .arg(&file)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    let j: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let guard = j["guardrails"]
        .as_array()
        .expect("guardrails")
        .iter()
        .find(|g| g["name"] == "errors guard")
        .expect("the metric guardrail");
    assert_eq!(guard["missing"], "breach after 3s", "{guard}");

    let child = run(&s, &text).await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.stop();
    let out = finish(child, Duration::from_secs(120)).await;
    assert_eq!(out.code, 4, "aborted\n{}{}", out.stdout, out.stderr);
    assert!(
        all_running(&c, &fleet.instances).await,
        "the stopped instance runs again"
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "aborted");
    let reason = j["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("errors guard")
            && reason.contains("no datapoint for")
            && reason.contains("missing: breach after 3s"),
        "the abort names the silence: {reason}"
    );
    let silent = events(&j, "probe_silent");
    assert!(
        silent.iter().any(|e| e["probe"] == "errors guard"
            && e["role"] == "guardrail"
            && e["last_datapoint"].is_string()),
        "the silence is journaled: {silent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_metric_guardrail_with_missing_ignore_does_not_abort() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let p = ErrorsPublisher::start(&c, &fleet.group);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = Scratch::new();
    let child = run(&s, &errors_guarded(&fleet, "10s", "    missing: ignore\n")).await;
    wait_until_any_stopped(&c, &fleet.instances).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.stop();
    let out = finish(child, Duration::from_secs(120)).await;
    assert_eq!(out.code, 0, "passed\n{}{}", out.stdout, out.stderr);
    assert!(all_running(&c, &fleet.instances).await);
    let j = s.journal();
    assert_eq!(j["verdict"], "passed");
    assert!(
        events(&j, "probe_silent")
            .iter()
            .any(|e| e["probe"] == "errors guard"),
        "the silence is still journaled"
    );
}
