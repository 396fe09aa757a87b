//! Storms in the AWS API (issue 15, item 4), against moto through the test
//! proxy: throttling and 5xx during injection, rollback and teardown are
//! retried (by the SDK's standard mode per call, by gameday per rollback or
//! teardown step) and the run ends as it would have without them; a
//! permanent error is not retried by either, the run says what is left, and
//! `gameday recover` finishes the job once the storm is over.

use std::time::Duration;

use crate::lifecycle::{
    assert_parallel_cleaned, in_place_experiment, parallel_experiment, run_id_of, wait_for_clone_fault,
};
use crate::support::proxy::{Answer, FailingProxy, Storm};
use crate::support::*;

/// The journal's intents of `kind` (`inject`, `rollback`) for `operation`.
fn intents(j: &serde_json::Value, kind: &str, operation: &str) -> usize {
    j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "intent" && e["kind"] == kind && e["operation"] == operation)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_during_injection_and_rollback_changes_nothing_for_the_user() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let proxy = FailingProxy::counting(endpoint()).await;
    // Every other EC2 call of the fault and its rollback throttled: the run
    // injects and rolls back its 3 s fault within seconds; the window is a
    // bound, generous so that a loaded machine still rolls back inside it.
    proxy.storm(Storm::every_other(
        &["StopInstances", "StartInstances", "DescribeInstances"],
        Answer::request_limit_exceeded(),
        Duration::from_secs(40),
    ));
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "3s", "5m"));
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    assert_eq!(j["verdict"], "passed", "the verdict it would have had");
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "every instance running again, lock tag gone"
    );
    for op in ["StopInstances", "StartInstances"] {
        assert!(
            proxy.answered(op, "RequestLimitExceeded") >= 1 && proxy.answered(op, "ok") >= 1,
            "{op} throttled, then retried through: {:?}",
            proxy.answers()
        );
    }
    // The SDK retried each throttled call: more requests than gameday made calls.
    let calls = intents(&j, "rollback", "ec2:StartInstances");
    assert_eq!(calls, 1, "no whole-step retry was needed");
    assert!(proxy.counts()["StartInstances"] > calls as u64);
    let calls = intents(&j, "inject", "ec2:StopInstances");
    assert!(proxy.counts()["StopInstances"] > calls as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_storm_during_rollback_and_teardown_still_rolls_back_and_deletes_the_copy() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let proxy = FailingProxy::counting(endpoint()).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &parallel_experiment(&fleet, "3s"));
    let child = run_command(&s, &file)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .spawn()
        .expect("spawn");
    // Once the fault is in effect: every other call of the rollback and the
    // teardown answered 503, for a window generous enough to cover both.
    wait_for_clone_fault(&c, &fleet.group).await;
    proxy.storm(Storm::every_other(
        &[
            "StartInstances",
            "DescribeAutoScalingGroups",
            "DeleteAutoScalingGroup",
        ],
        Answer::unavailable(),
        Duration::from_secs(60),
    ));
    let out = finish(child, Duration::from_secs(120)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(s.journal()["verdict"], "passed");
    assert_parallel_cleaned(&c, &fleet, &before).await;
    for op in ["StartInstances", "DeleteAutoScalingGroup"] {
        assert!(
            proxy.answered(op, "ServiceUnavailable") >= 1 && proxy.answered(op, "ok") >= 1,
            "{op} failed with 503, then retried through: {:?}",
            proxy.answers()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_on_rollback_is_not_retried_and_recover_finishes_after_the_storm() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let proxy = FailingProxy::counting(endpoint()).await;
    // Every StartInstances refused until healed (the window only bounds it).
    proxy.storm(Storm::every(
        &["StartInstances"],
        Answer::permanent(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        Duration::from_secs(120),
    ));
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "1s", "5m"));
    let out = finish(
        run_command(&s, &file)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert_eq!(s.journal()["verdict"], "error");
    assert!(
        out.stdout
            .contains("rollback incomplete, still to do: ec2:StartInstances i-"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("gameday recover"), "{}", out.stderr);
    assert!(
        out.stderr.contains("UnauthorizedOperation"),
        "the API error reaches the user: {}",
        out.stderr
    );
    assert_eq!(
        intents(&s.journal(), "rollback", "ec2:StartInstances"),
        1,
        "gameday does not retry a permanent error"
    );
    assert_eq!(
        proxy.answered("StartInstances", "UnauthorizedOperation"),
        1,
        "nor does the SDK: {:?}",
        proxy.answers()
    );
    assert_eq!(proxy.counts()["StartInstances"], 1);
    assert_eq!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .filter(|s| *s == "stopped")
            .count(),
        2,
        "the refused rollback left them stopped"
    );

    proxy.heal();
    let run_id = run_id_of(&s);
    let out = finish(
        recover_command(&s, &run_id)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        group_state(&c, &fleet.group).await,
        before,
        "recover restarted them and released the lock"
    );
    assert_eq!(proxy.answered("StartInstances", "ok"), 1);
}
