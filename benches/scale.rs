//! Benchmark: the runner on a fleet of 5,000 instances, on moto. Run with
//! `scripts/bench scale`.
//!
//! moto holds 5,000 instances (launched by RunInstances in calls of 1,000),
//! of which 1,000 carry the target tag. One in-place run of
//! `ec2:stop-instances` takes 50% of the tagged ones (500), holds them 2 s and
//! rolls back. The runner talks to moto through a loopback proxy that counts
//! every HTTP request it makes, per operation (retries count as requests; the
//! benchmark's own checks go to moto directly and are not counted). Printed:
//! resolution (the preflight: guardrail alarms read, targets resolved, from
//! the journal's `preflight` phase to its `targets_resolved`), injection
//! (first inject intent to last inject outcome), rollback (`rollback_started`
//! to `fault_rolled_back`, StartInstances until every instance runs again),
//! the runner's wall time, its requests, and its peak resident memory
//! (getrusage RUSAGE_CHILDREN's ru_maxrss after it was waited for: moto is
//! still running, so the only waited-for child is the runner), and its CPU
//! time from the same call: the rest of the wall time is spent waiting for
//! moto, whose DescribeInstances filters scan its whole fleet in Python.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::proxy::FailingProxy;
use support::*;

const FLEET: i32 = 5_000;
const TARGETED: i32 = 1_000;
const PER_CALL: i32 = 1_000;

const POLICY: &str = "\
version: 1
regions: any
actions: [ec2:stop-instances]
protected_tags: { gameday:protected: \"true\" }
blast_radius: { max_instances_per_fault: 1000, max_percent_of_group: 100 }
in_place: { allowed: true, requires_approval: false, allow_terminate: false }
require_guardrails: true
max_experiment_duration: 1h
";

async fn launch(c: &Clients, image: &str, count: i32, tag: &str) {
    let tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(aws_sdk_ec2::types::Tag::builder().key("bench").value(tag).build())
        .build();
    c.ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(count)
        .max_count(count)
        .tag_specifications(tags)
        .send()
        .await
        .expect("RunInstances");
}

fn at(j: &serde_json::Value, pred: impl Fn(&serde_json::Value) -> bool, last: bool) -> jiff::Timestamp {
    let events = j["events"].as_array().expect("events");
    let mut found = events.iter().filter(|e| pred(e));
    let e = if last { found.last() } else { found.next() }.expect("the event is in the journal");
    e["at"].as_str().expect("at").parse().expect("a timestamp")
}

fn ms(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let c = clients().await;
    let target = unique("target");
    let image = c
        .ec2
        .describe_images()
        .send()
        .await
        .expect("DescribeImages")
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("an image")
        .to_string();
    let started = Instant::now();
    for _ in 0..(FLEET - TARGETED) / PER_CALL {
        launch(&c, &image, PER_CALL, "other").await;
    }
    launch(&c, &image, TARGETED, &target).await;
    println!(
        "fleet: {FLEET} instances ({TARGETED} tagged bench={target}) launched in moto in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let alarm = format!("{target}-guard");
    errors_alarm(&c, &alarm).await;

    let s = Scratch::new();
    let policy = s.write("policy.yaml", POLICY);
    let file = s.write(
        "exp.yaml",
        &format!(
            "version: 1
name: bench-scale
hypothesis: the runner copes with a large fleet
environment: {{ mode: in-place }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - {{ name: stop-half, action: ec2:stop-instances, target: {{ tags: {{ bench: {target} }}, select: {{ percent: 50 }} }}, duration: 2s }}
timing: {{ interval: 1s, max_duration: 30m }}
"
        ),
    );
    let proxy = FailingProxy::counting(endpoint()).await;
    let wall = Instant::now();
    let child = gameday(&s)
        .arg("run")
        .arg(&file)
        .arg("--policy")
        .arg(&policy)
        .arg("--runs-dir")
        .arg(s.runs())
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .spawn()
        .expect("spawn gameday");
    let out = finish(child, Duration::from_secs(1800)).await;
    let wall = wall.elapsed();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (peak_kib, cpu) = {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (usage.ru_maxrss, secs(usage.ru_utime) + secs(usage.ru_stime))
    };

    let j = s.journal();
    let selected = j["targets"][0]["selected"].as_array().expect("selected").len();
    assert_eq!(selected, (TARGETED / 2) as usize);
    let tagged = aws_sdk_ec2::types::Filter::builder()
        .name("tag:bench")
        .values(&target)
        .build();
    let mut pages = c.ec2.describe_instances().filters(tagged).into_paginator().send();
    let mut not_running = 0;
    while let Some(page) = pages.next().await {
        not_running += page
            .expect("DescribeInstances")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("running"))
            .count();
    }
    assert_eq!(not_running, 0, "every targeted instance runs again");

    let kind = |k: &'static str| move |e: &serde_json::Value| e["event"] == k;
    let resolution = ms(
        at(&j, |e| e["event"] == "phase" && e["phase"] == "preflight", false),
        at(&j, kind("targets_resolved"), false),
    );
    let first_inject = at(&j, |e| e["event"] == "intent" && e["kind"] == "inject", false);
    let inject_ids: Vec<u64> = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "intent" && e["kind"] == "inject")
        .filter_map(|e| e["action_id"].as_u64())
        .collect();
    let last_inject = at(
        &j,
        |e| e["event"] == "outcome" && e["action_id"].as_u64().is_some_and(|id| inject_ids.contains(&id)),
        true,
    );
    let rollback = ms(
        at(&j, kind("rollback_started"), false),
        at(&j, kind("fault_rolled_back"), false),
    );
    let counts = proxy.counts();
    let total: u64 = counts.values().sum();
    println!("run: stop 50% of {TARGETED} tagged among {FLEET}: {selected} instances");
    println!("resolution (preflight: alarms + targets): {resolution:.0} ms");
    println!(
        "inject ({} StopInstances steps): {:.0} ms",
        inject_ids.len(),
        ms(first_inject, last_inject)
    );
    println!("rollback (StartInstances until all running): {rollback:.0} ms");
    println!(
        "runner wall time: {:.1} s (including the 2 s hold); runner CPU time (user + system): {cpu:.1} s",
        wall.as_secs_f64()
    );
    println!(
        "runner API requests: {total} ({})",
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let times = proxy.times();
    println!(
        "time moto took to answer them: {}",
        times
            .iter()
            .map(|(k, v)| format!("{k} {:.1} s", v / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "runner peak memory (max RSS): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
}
