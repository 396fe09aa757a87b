//! Coordination under load (issue #17 item 5): 20 `gameday run` processes
//! started at once against 5 targets on one moto, sharing a lease table and
//! an S3 runs store, each as on its own machine. Never two runs injected on
//! one target at a time; every run ends with nothing left behind; the store
//! holds every run's complete record; and a runner's calls per observation
//! tick do not grow with its number of probes. The scenario is in
//! tests/support/coordination.rs (`scripts/bench coordination` prints its
//! figures).

use crate::support::coordination::*;
use crate::support::*;

const TARGETS: usize = 5;
const PER_TARGET: usize = 4;
/// The most calls of one monitoring operation a run may make beyond one per
/// tick: the guardrail preflight's DescribeAlarms, and a read the watcher
/// had sent when its phase ended (its answer is not journaled as a tick).
const OUTSIDE_TICKS: u64 = 4;

/// The files a complete record has in the store, besides its write-ahead chunks.
const RECORD: [&str; 5] = [
    "events.jsonl",
    "journal.json",
    "report.html",
    "report.md",
    "junit.xml",
];

fn describe(r: &Runner) -> String {
    format!(
        "target {} run {:?}: exit {}\n{}{}",
        r.target, r.run_id, r.out.code, r.out.stdout, r.out.stderr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_runners_on_five_targets_never_overlap_leave_nothing_and_record_everything() {
    let c = clients().await;
    let s = coordinate(&c, TARGETS, PER_TARGET, "2s").await;
    assert_eq!(s.runners.len(), TARGETS * PER_TARGET);

    // Every runner either ran the game day (passed) or was refused because
    // another run held the target (not-run, exit 5), naming that run.
    for r in &s.runners {
        match r.out.code {
            0 => {
                assert!(r.injected(), "a passed run injected: {}", describe(r));
                assert_eq!(r.verdict(), Some("passed"), "{}", describe(r));
            }
            5 => {
                assert!(!r.injected(), "a refused run injected nothing: {}", describe(r));
                assert_eq!(r.verdict(), Some("not-run"), "{}", describe(r));
                let (_, granted) = r.lease_decision().expect("a lease claim journaled");
                assert!(!granted, "refused at the lease claim: {}", describe(r));
                // The holder it names is another run of the same target.
                let named: Vec<&Runner> = s
                    .runners
                    .iter()
                    .filter(|o| {
                        o.run_id.as_ref().is_some_and(|id| {
                            r.out
                                .stdout
                                .contains(&format!("another game day, run {id} (owner"))
                        })
                    })
                    .collect();
                assert_eq!(named.len(), 1, "the refusal names the holder: {}", describe(r));
                assert_eq!(named[0].target, r.target, "{}", describe(r));
                assert!(named[0].lease_decision().is_some_and(|(_, ok)| ok));
            }
            _ => panic!("neither passed nor refused: {}", describe(r)),
        }
    }

    // At no moment two runs injected on one target: by the journals' times,
    // each run's window (first injection to last rollback) ends before the
    // next one's begins.
    for t in 0..TARGETS {
        let mut windows: Vec<_> = s
            .runners
            .iter()
            .filter(|r| r.target == t)
            .filter_map(|r| r.injection_window().map(|w| (w, r.run_id.clone())))
            .collect();
        assert!(!windows.is_empty(), "target {t}: some run went ahead");
        windows.sort();
        for pair in windows.windows(2) {
            let ((_, end), a) = &pair[0];
            let ((start, _), b) = &pair[1];
            assert!(
                end < start,
                "target {t}: {a:?} and {b:?} were injected at once: {pair:?}"
            );
        }
    }

    // Nothing left behind: every target as before (sizes, processes, tags:
    // no lock tag; every instance running and healthy), no lease.
    for (t, (before, after)) in s.before.iter().zip(&s.after).enumerate() {
        assert_eq!(before, after, "target {t} ({})", s.fleets[t].group);
        assert!(
            after
                .instances
                .iter()
                .all(|(_, st, h)| st == "running" && h == "Healthy")
        );
    }
    assert!(s.leases_left.is_empty(), "leases left: {:?}", s.leases_left);

    // The store holds one complete record per runner, refused ones included:
    // the whole log ending with the verdict, the journal and the reports,
    // and the write-ahead chunks.
    let mut ids: Vec<String> = s.runners.iter().filter_map(|r| r.run_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, s.store_runs, "one folder per run in {}", s.url);
    for r in &s.runners {
        for f in RECORD {
            assert!(
                r.stored.iter().any(|k| k == f),
                "{f} in {:?}: {}",
                r.stored,
                describe(r)
            );
        }
        assert!(r.stored.iter().any(|k| k.starts_with("events/")));
        let events = r.journal.as_ref().expect("journal.json")["events"]
            .as_array()
            .expect("events")
            .clone();
        assert_eq!(
            events.last().map(|e| e["event"].clone()),
            Some("verdict".into()),
            "the record is final: {}",
            describe(r)
        );
    }

    // Calls per tick: one GetMetricData (every metric query of the run in
    // it) and one DescribeAlarms per tick, with 1 metric probe as with 8,
    // counted by each runner's own proxy.
    let ran: Vec<&Runner> = s.runners.iter().filter(|r| r.injected()).collect();
    for probes in [FEW_PROBES, MANY_PROBES] {
        assert!(
            ran.iter().any(|r| r.probes == probes),
            "some run with {probes} probe(s) went ahead"
        );
    }
    for r in &ran {
        let ticks = r.ticks();
        assert!(
            ticks >= 3,
            "baseline, faults and recovery were watched: {}",
            describe(r)
        );
        for op in ["GetMetricData", "DescribeAlarms"] {
            let n = r.calls_of(op);
            assert!(
                (ticks..=ticks + OUTSIDE_TICKS).contains(&n),
                "{} probe(s): {n} {op} for {ticks} ticks: {:?}",
                r.probes,
                r.calls
            );
        }
    }
}
