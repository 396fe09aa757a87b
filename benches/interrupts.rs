//! Soak: runs interrupted at random moments leave nothing behind. Run with
//! `scripts/bench interrupts N [--seed S]`.
//!
//! Each trial, from its own seed: a fresh fleet (2 instances over two zones,
//! a guardrail alarm, a second alarm for `cloudwatch:force-alarm`), one random
//! fault of the catalog in a random mode (parallel or in place; terminate is
//! parallel only, as the policy forbids it in place), locks by the lease
//! table or by tags, and one interruption — SIGINT, SIGTERM or SIGKILL — at a
//! random moment of setup, baseline, injection, hold, rollback or teardown
//! (found by reading the run's journal as it is written). Then `gameday
//! recover RUN_ID` (always: after a clean exit it has nothing to do) and the
//! checks: no copy group and no instance of it left, no temporary security
//! group, no lock tag, no lease, no stopped instance, and the source group,
//! its instances, their security groups, its subnets and the alarms as
//! before (after a capacity drop, instances are compared by count: identities
//! cannot come back). Prints one line per trial, then the summary with every
//! failure's seed: `scripts/bench interrupts 1 --seed SEED` replays a trial's
//! choices (the moment within a phase depends on timing too).
//! `GAMEDAY_SOAK_NO_RECOVER=1` skips `gameday recover`, to see the checks
//! catch what a killed run leaves.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use support::*;

const FAULTS: &[&str] = &[
    "ec2:stop-instances",
    "ec2:reboot-instances",
    "ec2:terminate-instances",
    "ec2:network-blackhole",
    "ec2:az-outage",
    "autoscaling:set-unhealthy",
    "autoscaling:suspend-processes",
    "autoscaling:capacity-drop",
    "cloudwatch:force-alarm",
];
const PHASES: &[&str] = &["setup", "baseline", "injection", "hold", "rollback", "teardown"];
const SIGNALS: &[(&str, i32)] = &[
    ("SIGINT", libc::SIGINT),
    ("SIGTERM", libc::SIGTERM),
    ("SIGKILL", libc::SIGKILL),
];

/// One trial's random choices.
#[derive(Debug)]
struct Choice {
    seed: u64,
    fault: &'static str,
    mode: &'static str,
    phase: &'static str,
    signal: (&'static str, i32),
    /// Extra wait once the phase is seen (ms).
    delay: u64,
    leases: bool,
}

impl Choice {
    fn new(seed: u64) -> Choice {
        let mut rng = StdRng::seed_from_u64(seed);
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        let mode = if fault == "ec2:terminate-instances" || rng.random_bool(0.5) {
            "parallel"
        } else {
            "in-place"
        };
        let phase = PHASES[rng.random_range(0..PHASES.len())];
        let signal = SIGNALS[rng.random_range(0..SIGNALS.len())];
        let delay = match phase {
            "baseline" => rng.random_range(0..800),
            "hold" => rng.random_range(200..1800),
            "setup" | "teardown" => rng.random_range(0..300),
            _ => 0,
        };
        Choice {
            seed,
            fault,
            mode,
            phase,
            signal,
            delay,
            leases: rng.random_bool(0.5),
        }
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} {}, {} at {} (+{} ms), {}",
            self.seed,
            self.fault,
            self.mode,
            self.signal.0,
            self.phase,
            self.delay,
            if self.leases { "lease table" } else { "lock tags" }
        )
    }
}

fn experiment(ch: &Choice, fleet: &Fleet, pager: &str) -> String {
    let (target, params) = match ch.fault {
        "ec2:az-outage" => ("{ select: all }".to_string(), "{ az: us-east-1a }".to_string()),
        "autoscaling:suspend-processes" => (String::new(), "{ processes: [Launch, HealthCheck] }".into()),
        "autoscaling:capacity-drop" => (String::new(), "{ to: 1 }".into()),
        "cloudwatch:force-alarm" => (String::new(), format!("{{ alarm: {pager} }}")),
        _ => ("{ select: { count: 1 } }".to_string(), String::new()),
    };
    let mut fault = format!("  - name: f\n    action: {}\n    duration: 2s\n", ch.fault);
    if !target.is_empty() {
        fault.push_str(&format!("    target: {target}\n"));
    }
    if !params.is_empty() {
        fault.push_str(&format!("    params: {params}\n"));
    }
    format!(
        "version: 1
name: soak
hypothesis: whatever stops the runner, everything is rolled back
environment: {{ mode: {mode}, autoscaling_group: {group}, capacity: 2 }}
steady_state:
  - name: some capacity
    asg_healthy: {{ at_least: 1 }}
guardrails: [{{ alarm: {alarm} }}]
faults:
{fault}timing: {{ baseline: 1s, recovery: 3s, interval: 500ms, max_duration: 5m }}
",
        mode = ch.mode,
        group = fleet.group,
        alarm = fleet.alarm
    )
}

/// Whether the journal (events so far) shows the moment to interrupt.
fn reached(events: &[serde_json::Value], phase: &str) -> bool {
    events.iter().any(|e| {
        let ev = e["event"].as_str().unwrap_or_default();
        let kind = e["kind"].as_str().unwrap_or_default();
        let ph = e["phase"].as_str().unwrap_or_default();
        match phase {
            "setup" => ev == "intent" && kind == "setup",
            "baseline" => ev == "phase" && ph == "baseline",
            "injection" => ev == "intent" && kind == "inject",
            "hold" => ev == "outcome" && inject_ids(events).contains(&e["action_id"].as_u64().unwrap_or(0)),
            "rollback" => ev == "rollback_started" || (ev == "intent" && kind == "rollback"),
            "teardown" => ev == "phase" && ph == "teardown",
            _ => false,
        }
    })
}

fn inject_ids(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event"] == "intent" && e["kind"] == "inject")
        .filter_map(|e| e["action_id"].as_u64())
        .collect()
}

fn events(runs: &Path) -> (Option<String>, Vec<serde_json::Value>) {
    let Some(dir) = std::fs::read_dir(runs)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
    else {
        return (None, Vec::new());
    };
    let id = dir.file_name().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
    // The last line may be half written: skip what does not parse.
    let evs = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (Some(id), evs)
}

/// Everything of the source a run must leave as it was.
#[derive(Debug, PartialEq)]
struct Source {
    sizes: (i32, i32, i32),
    suspended: Vec<String>,
    tags: Vec<(String, String, bool)>,
    instances: Vec<(String, String, String)>,
    security_groups: Vec<Vec<String>>,
    subnets: String,
    alarms: (String, String),
}

async fn source(c: &Clients, fleet: &Fleet, pager: &str) -> Source {
    let g = group_state(c, &fleet.group).await;
    let ids: Vec<String> = g.instances.iter().map(|(id, _, _)| id.clone()).collect();
    Source {
        sizes: g.sizes,
        suspended: g.suspended,
        tags: g.tags,
        security_groups: security_groups(c, &ids).await,
        instances: g.instances,
        subnets: group_subnets(c, &fleet.group).await,
        alarms: (alarm_state(c, &fleet.alarm).await, alarm_state(c, pager).await),
    }
}

/// What is left behind, in words; empty when nothing is.
async fn leftovers(
    c: &Clients,
    ch: &Choice,
    fleet: &Fleet,
    pager: &str,
    before: &Source,
    run_id: Option<&str>,
    table: &str,
) -> Vec<String> {
    let mut bad = Vec::new();
    let after = source(c, fleet, pager).await;
    if ch.fault == "autoscaling:capacity-drop" && ch.mode == "in-place" {
        // Instances a capacity drop terminated cannot return: compare counts.
        let count = |s: &Source| s.instances.len();
        let all_ok = |s: &Source| {
            s.instances
                .iter()
                .all(|(_, st, h)| st == "running" && h == "Healthy")
        };
        if count(&after) != count(before) || !all_ok(&after) {
            bad.push(format!(
                "source instances {:?}, before {:?}",
                after.instances, before.instances
            ));
        }
        let strip = |s: &Source| {
            (
                s.sizes,
                s.suspended.clone(),
                s.tags.clone(),
                s.subnets.clone(),
                s.alarms.clone(),
            )
        };
        if strip(&after) != strip(before) {
            bad.push(format!("source group changed: {after:?}, before {before:?}"));
        }
    } else if after != *before {
        bad.push(format!("source changed: {after:?}, before {before:?}"));
    }
    let f = aws_sdk_autoscaling::types::Filter::builder()
        .name("tag:gameday:clone-of")
        .values(&fleet.group)
        .build();
    let copies = c
        .autoscaling
        .describe_auto_scaling_groups()
        .filters(f)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    for g in copies.auto_scaling_groups() {
        bad.push(format!(
            "copy group {} left",
            g.auto_scaling_group_name().unwrap_or_default()
        ));
    }
    if let Some(run_id) = run_id {
        let f = aws_sdk_ec2::types::Filter::builder()
            .name("tag:gameday:run-id")
            .values(run_id)
            .build();
        let out = c
            .ec2
            .describe_instances()
            .filters(f)
            .send()
            .await
            .expect("DescribeInstances");
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let st = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            if st != "terminated" && st != "shutting-down" {
                bad.push(format!(
                    "copy instance {} left ({st})",
                    i.instance_id().unwrap_or_default()
                ));
            }
        }
        for (id, name) in blackhole_groups(c, run_id).await {
            bad.push(format!("temporary security group {name} ({id}) left"));
        }
    }
    let key = aws_sdk_autoscaling::types::Filter::builder()
        .name("key")
        .values("gameday:lock")
        .build();
    let g = aws_sdk_autoscaling::types::Filter::builder()
        .name("auto-scaling-group")
        .values(&fleet.group)
        .build();
    let tags = c
        .autoscaling
        .describe_tags()
        .filters(key)
        .filters(g)
        .send()
        .await
        .expect("DescribeTags");
    for t in tags.tags() {
        bad.push(format!("lock tag left on the group: {:?}", t.value()));
    }
    let mut ids: Vec<String> = fleet.instances.clone();
    ids.extend(after.instances.iter().map(|(id, _, _)| id.clone()));
    ids.sort();
    ids.dedup();
    let key = aws_sdk_ec2::types::Filter::builder()
        .name("key")
        .values("gameday:lock")
        .build();
    let res = aws_sdk_ec2::types::Filter::builder()
        .name("resource-id")
        .set_values(Some(ids.clone()))
        .build();
    let tags = c
        .ec2
        .describe_tags()
        .filters(key)
        .filters(res)
        .send()
        .await
        .expect("DescribeTags");
    for t in tags.tags() {
        bad.push(format!(
            "lock tag left on {}",
            t.resource_id().unwrap_or_default()
        ));
    }
    let items = c.dynamodb.scan().table_name(table).send().await.expect("Scan");
    for i in items.items() {
        bad.push(format!("lease left: {:?}", i.get("lease")));
    }
    let st = states(c, &ids).await;
    for (id, s) in ids.iter().zip(&st) {
        if s == "stopped" || s == "stopping" {
            bad.push(format!("instance {id} left {s}"));
        }
    }
    bad
}

struct Trial {
    reached: bool,
    line: String,
    failures: Vec<String>,
}

async fn trial(c: &Clients, ch: &Choice, table: &str) -> Trial {
    let mut fleet = fleet_in(c, 2, &["a", "b"]).await;
    let pager = format!("{}-pager", fleet.group);
    errors_alarm(c, &pager).await;
    fleet.instances = group_state(c, &fleet.group)
        .await
        .instances
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let before = source(c, &fleet, &pager).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &experiment(ch, &fleet, &pager));
    let mut policy = PERMISSIVE_POLICY.to_string();
    if ch.leases {
        policy.push_str(&format!("locks: {{ table: {table} }}\n"));
    }
    let policy = s.write("policy.yaml", &policy);
    let mut child = run_command(&s, &file)
        .arg("--policy")
        .arg(&policy)
        .arg("--seed")
        .arg(ch.seed.to_string())
        .arg("--quiet")
        .spawn()
        .expect("spawn gameday");
    let started = Instant::now();
    let mut reached_at = None;
    let exit = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if reached_at.is_none() && reached(&events(&s.runs()).1, ch.phase) {
            reached_at = Some(Instant::now());
        }
        if let Some(t) = reached_at
            && t.elapsed() >= Duration::from_millis(ch.delay)
            && child.id().is_some()
        {
            signal(&child, ch.signal.1);
            // Count it only once: after the signal, wait for the end.
            break match tokio::time::timeout(Duration::from_secs(180), child.wait()).await {
                Ok(Ok(st)) => st,
                _ => {
                    let _ = child.start_kill();
                    child.wait().await.expect("wait")
                }
            };
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.start_kill();
            break child.wait().await.expect("wait");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let code = exit
        .code()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "killed".into());
    let (run_id, _) = events(&s.runs());
    let mut failures = Vec::new();
    let mut recovered = "-".to_string();
    // GAMEDAY_SOAK_NO_RECOVER=1 leaves recovery out, to see the checks find what a killed run left.
    let skip_recover = std::env::var_os("GAMEDAY_SOAK_NO_RECOVER").is_some();
    if let Some(id) = run_id.as_ref().filter(|_| !skip_recover) {
        let out = finish(
            recover_command(&s, id).spawn().expect("spawn"),
            Duration::from_secs(240),
        )
        .await;
        recovered = out.code.to_string();
        if out.code != 0 {
            failures.push(format!(
                "recover exited {}: {}{}",
                out.code, out.stdout, out.stderr
            ));
        }
    }
    failures.extend(leftovers(c, ch, &fleet, &pager, &before, run_id.as_deref(), table).await);
    let reached = reached_at.is_some();
    let line = format!(
        "{ch}: {}; run exit {code}, recover {recovered}: {}",
        if reached {
            "interrupted"
        } else {
            "phase not reached"
        },
        if failures.is_empty() {
            "ok"
        } else {
            "LEFT SOMETHING"
        }
    );
    Trial {
        reached,
        line,
        failures,
    }
}

fn args() -> (usize, u64) {
    let mut n = 20;
    let mut seed = None;
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        if a == "--seed" {
            seed = it.next().and_then(|s| s.parse().ok());
        } else if let Ok(v) = a.parse() {
            n = v;
        } else {
            eprintln!("usage: scripts/bench interrupts [N] [--seed S]");
            std::process::exit(2);
        }
    }
    let seed = seed.unwrap_or_else(|| rand::make_rng::<StdRng>().next_u64() >> 16);
    (n, seed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (n, seed) = args();
    println!("interrupts: {n} trial(s), seed {seed}");
    let c = clients().await;
    let table = unique("soak-locks");
    gameday::lease::create_table(&c.aws, &table)
        .await
        .expect("lease table");
    let started = Instant::now();
    let mut passes = 0;
    let mut reached = 0;
    let mut failed = Vec::new();
    for i in 0..n {
        let ch = Choice::new(seed + i as u64);
        let t = trial(&c, &ch, &table).await;
        println!("{:>3}/{n} {}", i + 1, t.line);
        if t.reached {
            reached += 1;
        }
        if t.failures.is_empty() {
            passes += 1;
        } else {
            for f in &t.failures {
                println!("      {f}");
            }
            failed.push((ch, t.failures));
        }
    }
    let mins = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "\n{passes} of {n} trials left nothing behind; {reached} were interrupted in their chosen phase, {} ended before it; {mins:.1} min; seed {seed}",
        n - reached
    );
    if !failed.is_empty() {
        println!("failures (replay one with `scripts/bench interrupts 1 --seed SEED`):");
        for (ch, f) in &failed {
            println!("  {ch}\n    {}", f.join("\n    "));
        }
        std::process::exit(1);
    }
}
