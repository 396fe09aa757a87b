//! Benchmark: coordination under load. `scripts/bench coordination [RUNNERS
//! [TARGETS]]` (default 20 runners on 5 targets) starts every runner at
//! once, as on separate machines sharing one lease table and one S3 runs
//! store, against one moto on loopback (the scenario of
//! tests/coordination.rs: in-place stop of one instance held 2 s; even
//! targets' experiments watch 1 metric probe, odd ones 8). Prints: how many
//! runs injected and how many were refused; the wall time from the first
//! spawn to the last exit; the time from a runner's spawn to its lease
//! decision (the journal's outcome of its claim); every runner's AWS
//! requests per observation tick by operation (counted by a proxy per
//! runner; a tick is a `checked` event), by number of probes; and the S3
//! requests per run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use support::coordination::*;
use support::*;

fn ms(d: jiff::SignedDuration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn spread(name: &str, mut v: Vec<f64>) {
    if v.is_empty() {
        println!("{name}: none");
        return;
    }
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: p50 {:.0} ms, max {:.0} ms over {}",
        v[v.len() / 2],
        v[v.len() - 1],
        v.len()
    );
}

/// Mean requests per tick of each operation over `runners`.
fn per_tick(runners: &[&Runner]) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    for r in runners {
        let ticks = r.ticks().max(1) as f64;
        for (op, n) in &r.calls {
            *sum.entry(op.clone()).or_default() += *n as f64 / ticks;
        }
    }
    sum.values_mut().for_each(|v| *v /= runners.len().max(1) as f64);
    sum
}

/// Mean requests per run of each operation over `runners`.
fn per_run(runners: &[&Runner]) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    for r in runners {
        for (op, n) in &r.calls {
            *sum.entry(op.clone()).or_default() += *n as f64;
        }
    }
    sum.values_mut().for_each(|v| *v /= runners.len().max(1) as f64);
    sum
}

fn show(map: &BTreeMap<String, f64>) -> String {
    map.iter()
        .map(|(op, v)| format!("{op} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const S3_OPS: [&str; 4] = ["PutObject", "GetObject", "ListObjectsV2", "HeadObject"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let runners: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let targets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let per_target = runners.div_ceil(targets.max(1));
    let c = clients().await;
    println!(
        "coordination benchmark: {} runners ({per_target} per target) on {targets} targets, one lease table, one S3 store, one moto",
        per_target * targets
    );
    let s = coordinate(&c, targets, per_target, "2s").await;

    let ran: Vec<&Runner> = s.runners.iter().filter(|r| r.injected()).collect();
    let refused: Vec<&Runner> = s.runners.iter().filter(|r| r.out.code == 5).collect();
    let other: Vec<String> = s
        .runners
        .iter()
        .filter(|r| !r.injected() && r.out.code != 5)
        .map(|r| format!("target {} exit {}: {}", r.target, r.out.code, r.out.stderr.trim()))
        .collect();
    println!(
        "runners {}, targets {targets}: {} injected, {} refused (lease held), {} other",
        s.runners.len(),
        ran.len(),
        refused.len(),
        other.len()
    );
    for o in &other {
        println!("  {o}");
    }
    println!(
        "wall time, first spawn to last exit: {:.1} s",
        s.wall.as_secs_f64()
    );
    spread(
        "spawn to lease decision, all",
        s.runners
            .iter()
            .filter_map(|r| {
                r.lease_decision()
                    .map(|(at, _)| ms(at.duration_since(r.spawned_at)))
            })
            .collect(),
    );
    spread(
        "spawn to lease granted",
        s.runners
            .iter()
            .filter_map(|r| {
                r.lease_decision()
                    .filter(|(_, ok)| *ok)
                    .map(|(at, _)| ms(at.duration_since(r.spawned_at)))
            })
            .collect(),
    );
    for probes in [FEW_PROBES, MANY_PROBES] {
        let of: Vec<&Runner> = ran.iter().copied().filter(|r| r.probes == probes).collect();
        let ticks: Vec<u64> = of.iter().map(|r| r.ticks()).collect();
        println!(
            "requests per tick of a run that injected, {probes} metric probe(s), {} run(s), ticks {ticks:?}: {}",
            of.len(),
            show(&per_tick(&of))
        );
    }
    let store = |rs: &[&Runner]| {
        let all = per_run(rs);
        show(
            &all.into_iter()
                .filter(|(op, _)| S3_OPS.contains(&op.as_str()))
                .collect(),
        )
    };
    println!("S3 requests per run, injected: {}", store(&ran));
    println!("S3 requests per run, refused: {}", store(&refused));
    println!("requests per refused run: {}", show(&per_run(&refused)));
    let left_behind = s.before != s.after || !s.leases_left.is_empty();
    println!(
        "left behind: {} (targets as before: {}, leases left: {}); store folders: {} of {} runs",
        if left_behind { "SOMETHING" } else { "nothing" },
        s.before == s.after,
        s.leases_left.len(),
        s.store_runs.len(),
        s.runners.len()
    );
}
