//! Benchmark: halt latency. While a fault is in effect (`interval: 1s`),
//! `gameday halt` is run from another process at a random moment in the
//! tick. Measured from the moment `gameday halt` returns (its PutParameter is
//! done) until the run's journal says `rollback_started` (the first rollback
//! call). Run with `scripts/bench halt [TRIALS]` (default 5); prints the
//! median and maximum. Each trial halts its own parameter.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use rand::{Rng, RngExt, SeedableRng};
use support::*;

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: median {:.0} ms, max {:.0} ms over {} trials",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let c = clients().await;
    let seed: u64 = rand::make_rng::<rand::rngs::StdRng>().next_u64();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    println!("halt benchmark: {trials} trials at interval 1s, halt moments from seed {seed}");
    let mut to_rollback = Vec::new();
    for trial in 1..=trials {
        let fleet = fleet(&c, 2).await;
        let s = Scratch::new();
        let parameter = format!("/gameday-bench/{}/halt", unique("halt"));
        let policy = s.write(
            "policy.yaml",
            &format!("{PERMISSIVE_POLICY}halt: {{ parameter: {parameter} }}\n"),
        );
        let exp = stop_experiment(&fleet.group, &fleet.alarm, "all", "5m")
            .replace("interval: 500ms", "interval: 1s");
        let file = s.write("exp.yaml", &exp);
        let child = run_command(&s, &file)
            .arg("--policy")
            .arg(&policy)
            .spawn()
            .expect("spawn gameday run");
        wait_until_any_stopped(&c, &fleet.instances).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        let halt = gameday(&s)
            .args(["halt", "--reason", "benchmark"])
            .arg("--policy")
            .arg(&policy)
            .spawn()
            .expect("spawn gameday halt");
        let halted = finish(halt, Duration::from_secs(60)).await;
        let halted_at = jiff::Timestamp::now();
        assert_eq!(halted.code, 0, "{}", halted.stderr);
        let out = finish(child, Duration::from_secs(120)).await;
        let resume = gameday(&s)
            .arg("resume")
            .arg("--policy")
            .arg(&policy)
            .spawn()
            .expect("spawn gameday resume");
        finish(resume, Duration::from_secs(60)).await;
        assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
        let started: jiff::Timestamp = s.journal()["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["event"] == "rollback_started")
            .and_then(|e| e["at"].as_str())
            .expect("a rollback_started event")
            .parse()
            .expect("a timestamp");
        let rollback = Duration::try_from(started.duration_since(halted_at)).unwrap_or_default();
        println!(
            "trial {trial}: rollback began {:.0} ms after `gameday halt` returned",
            rollback.as_secs_f64() * 1000.0
        );
        to_rollback.push(rollback);
    }
    summary("halt -> first rollback call", to_rollback);
}
