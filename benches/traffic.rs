//! Benchmark: from the abort to the listener restored. A run gives each copy
//! 2% of an Application Load Balancer's traffic (two rules shifted) and stops
//! an instance of the experiment copy; its guardrail alarm is flipped to
//! ALARM (SetAlarmState, as CloudWatch would) while the fault is in effect,
//! at `interval: 1s`. Measured from the journal: the `abort` event to the
//! last listener rule restored (its rollback's `outcome`); and from the
//! SetAlarmState call returning to the load balancer read back as it was.
//! Run with `scripts/bench traffic`; prints the median and maximum.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::alb::*;
use support::*;

const TRIPS: usize = 5;

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

/// From the run's events: the abort's time and the last restored rule's.
fn journal_abort_to_restored(s: &Scratch, run_id: &str) -> Duration {
    let text = std::fs::read_to_string(s.runs().join(run_id).join("events.jsonl")).expect("events");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at =
        |e: &serde_json::Value| -> jiff::Timestamp { e["at"].as_str().expect("at").parse().expect("time") };
    let abort = events
        .iter()
        .find(|e| e["event"] == "abort")
        .map(at)
        .expect("an abort");
    let restores: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "intent" && e["operation"] == "elasticloadbalancing:ModifyRule (restore)")
        .filter_map(|e| e["action_id"].as_u64())
        .collect();
    let last = events
        .iter()
        .filter(|e| e["event"] == "outcome" && e["ok"] == true)
        .filter(|e| e["action_id"].as_u64().is_some_and(|id| restores.contains(&id)))
        .map(at)
        .max()
        .expect("the rules restored");
    let d = last.duration_since(abort);
    Duration::from_nanos(d.as_nanos().max(0) as u64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let c = clients().await;
    println!("traffic benchmark: {TRIPS} guardrail aborts of a 2% run at interval 1s");
    let (mut journaled, mut observed) = (Vec::new(), Vec::new());
    for trip in 1..=TRIPS {
        let a = alb_fleet(&c).await;
        let before = lb_state(&a).await;
        let s = Scratch::new();
        let file = s.write(
            "exp.yaml",
            &traffic_experiment(&a, "{ share: 2% }", "5m", "5m").replace("interval: 500ms", "interval: 1s"),
        );
        let child = run_command(&s, &file).spawn().expect("spawn");
        let run_id = wait_mid_fault(&c, &s, &a).await;
        set_alarm(&c, &a.fleet.alarm, "ALARM").await;
        let tripped = Instant::now();
        while lb_state(&a).await != before {
            assert!(tripped.elapsed() < Duration::from_secs(60), "restored within 60s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        observed.push(tripped.elapsed());
        let out = finish(child, Duration::from_secs(120)).await;
        assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
        journaled.push(journal_abort_to_restored(&s, &run_id));
        println!(
            "trip {trip}: abort -> rules restored {:?} (journal); alarm set -> listener read back as before {:?}",
            journaled[journaled.len() - 1],
            observed[observed.len() - 1]
        );
    }
    summary("abort -> listener rules restored (journal)", journaled);
    summary("SetAlarmState -> load balancer as before (observed)", observed);
}
