//! Benchmark: time from SIGINT to "all rolled back" for a run with 10 stopped
//! instances, on moto. Run with `scripts/bench rollback`.
//!
//! Each trip: a fleet of 10 instances, an in-place run stopping all of them
//! for 5 minutes; once all 10 are stopped, SIGINT. Measured from the signal:
//! until every instance is `running` again (as moto reports it), and until the
//! runner exits. Prints the median and maximum over the trips.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

const TRIPS: usize = 7;
const INSTANCES: i32 = 10;

fn experiment(fleet: &Fleet) -> String {
    format!(
        "version: 1
name: bench-sigint
hypothesis: rollback is fast
environment: {{ mode: in-place, autoscaling_group: {group} }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - {{ name: stop-all, action: ec2:stop-instances, target: {{ select: all }}, duration: 5m }}
timing: {{ interval: 1s, max_duration: 10m }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let median = v[v.len() / 2];
    let max = v[v.len() - 1];
    println!(
        "{name}: median {:.0} ms, max {:.0} ms over {} trips",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let c = clients().await;
    let mut to_running = Vec::new();
    let mut to_exit = Vec::new();
    for trip in 0..TRIPS {
        let fleet = fleet(&c, INSTANCES).await;
        let s = Scratch::new();
        let file = s.write("exp.yaml", &experiment(&fleet));
        let child = gameday(&s)
            .arg("run")
            .arg(&file)
            .arg("--runs-dir")
            .arg(s.runs())
            .spawn()
            .expect("spawn gameday");
        let deadline = Instant::now() + Duration::from_secs(60);
        while states(&c, &fleet.instances)
            .await
            .iter()
            .any(|st| st != "stopped")
        {
            assert!(Instant::now() < deadline, "the fault never took effect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = Instant::now();
        signal(&child, libc::SIGINT);
        let child_wait = tokio::spawn(async move {
            let out = finish(child, Duration::from_secs(120)).await;
            (out, sent.elapsed())
        });
        loop {
            if states(&c, &fleet.instances)
                .await
                .iter()
                .all(|st| st == "running")
            {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(120),
                "not rolled back within 120s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let running = sent.elapsed();
        let (out, exited) = child_wait.await.expect("wait task");
        assert_eq!(out.code, 130, "{}{}", out.stdout, out.stderr);
        println!(
            "trip {}: all {INSTANCES} running after {:.0} ms, runner exited after {:.0} ms",
            trip + 1,
            running.as_secs_f64() * 1000.0,
            exited.as_secs_f64() * 1000.0
        );
        to_running.push(running);
        to_exit.push(exited);
    }
    summary("SIGINT -> all 10 instances running", to_running);
    summary("SIGINT -> runner exited (rolled back, journal written)", to_exit);
}
