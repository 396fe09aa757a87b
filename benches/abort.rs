//! Benchmark: abort latency. A guardrail alarm is flipped to ALARM (with
//! SetAlarmState, as CloudWatch would) at a random moment while a fault is in
//! effect, at `interval: 1s`. Measured from the SetAlarmState call returning:
//! until the journal's `rollback_started` (the first rollback call), and until
//! every stopped instance is `running` again in moto. Run with
//! `scripts/bench abort`; prints the median and maximum over the trips.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use support::*;

const TRIPS: usize = 12;

fn experiment(fleet: &Fleet) -> String {
    stop_experiment(&fleet.group, &fleet.alarm, "all", "5m").replace("interval: 500ms", "interval: 1s")
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: median {:.0} ms, max {:.0} ms over {} trips",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let c = clients().await;
    let seed: u64 = rand::make_rng::<rand::rngs::StdRng>().next_u64();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    println!("abort benchmark: {TRIPS} trips at interval 1s, breach moments from seed {seed}");
    let (mut to_rollback, mut to_running) = (Vec::new(), Vec::new());
    for trip in 1..=TRIPS {
        let fleet = fleet(&c, 3).await;
        let s = Scratch::new();
        let file = s.write("exp.yaml", &experiment(&fleet));
        let child = gameday(&s)
            .arg("run")
            .arg(&file)
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn gameday");
        wait_until_any_stopped(&c, &fleet.instances).await;
        // A random moment within the watch interval, so breaches land anywhere in the tick.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        set_alarm(&c, &fleet.alarm, "ALARM").await;
        let breach_wall = jiff::Timestamp::now();
        let breach = Instant::now();
        while states(&c, &fleet.instances)
            .await
            .iter()
            .any(|st| st != "running")
        {
            assert!(
                breach.elapsed() < Duration::from_secs(60),
                "not rolled back within 60s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let running = breach.elapsed();
        let out = finish(child, Duration::from_secs(60)).await;
        assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
        let j = s.journal();
        let started: jiff::Timestamp = j["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["event"] == "rollback_started")
            .and_then(|e| e["at"].as_str())
            .expect("a rollback_started event")
            .parse()
            .expect("a timestamp");
        let rollback = Duration::try_from(started.duration_since(breach_wall)).unwrap_or_default();
        println!(
            "trip {trip}: rollback began {:.0} ms after the breach, all running after {:.0} ms",
            rollback.as_secs_f64() * 1000.0,
            running.as_secs_f64() * 1000.0
        );
        to_rollback.push(rollback);
        to_running.push(running);
    }
    summary("breach -> first rollback call", to_rollback);
    summary("breach -> instances running", to_running);
}
