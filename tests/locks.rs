//! Locks that cannot race (issue #15): with the safety policy's lease table,
//! two runs started together on one target never both inject; leases are
//! renewed, released only by their holder, released by `recover` after a
//! `kill -9`, and taken over once expired. Against moto's DynamoDB.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use gameday::lease::{self, Holder, LeaseError};

use crate::support::*;

/// Creates a lease table with `gameday locks create-table` (twice: the second
/// finds it and changes nothing) and returns its name.
async fn lease_table(s: &Scratch) -> String {
    let table = unique("locks");
    for expected in ["created the lease table", "already exists"] {
        let mut cmd = gameday(s);
        cmd.args(["locks", "create-table", &table]);
        let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(60)).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(expected), "{}", out.stdout);
    }
    table
}

/// The permissive test policy with `locks: { table }`, as a file.
fn lease_policy(s: &Scratch, table: &str) -> std::path::PathBuf {
    s.write(
        "lease-policy.yaml",
        &format!("{PERMISSIVE_POLICY}locks: {{ table: {table} }}\n"),
    )
}

/// `gameday run FILE` under the lease policy.
fn leased_run(s: &Scratch, file: &std::path::Path, policy: &std::path::Path) -> tokio::process::Command {
    let mut cmd = run_command(s, file);
    cmd.arg("--policy").arg(policy);
    cmd
}

/// The lease items of `table`, as (key, run id).
async fn items(c: &Clients, table: &str) -> Vec<(String, String)> {
    let out = c
        .dynamodb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("Scan");
    let mut v: Vec<(String, String)> = out
        .items()
        .iter()
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (s("lease"), s("run_id"))
        })
        .collect();
    v.sort();
    v
}

fn holder(run_id: &str) -> Holder {
    Holder {
        run_id: run_id.to_string(),
        owner: "team-test".into(),
        host: "test-host".into(),
    }
}

/// Whether the run recorded in `journal` stopped any instance.
fn injected(journal: &serde_json::Value) -> bool {
    journal.to_string().contains("ec2:StopInstances")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_started_together_never_both_inject() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let table = lease_table(&s).await;
    let exp = stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s");
    let key = format!("asg#{}", fleet.group);

    // Most trials drive the lease layer directly: two claims at once, as two
    // runs make them, on the keys a run of this fleet takes.
    let mut keys = vec![key.clone()];
    keys.extend(fleet.instances.iter().map(|i| format!("instance#{i}")));
    for trial in 0..40 {
        let (a, b) = (format!("pair-{trial}-a"), format!("pair-{trial}-b"));
        let (ha, hb) = (holder(&a), holder(&b));
        let (ra, rb) = tokio::join!(
            lease::claim(&c.aws, &table, &keys, &ha, Duration::from_secs(60)),
            lease::claim(&c.aws, &table, &keys, &hb, Duration::from_secs(60)),
        );
        let (winner, refusal) = match (ra, rb) {
            (Ok(_), Err(e)) => (a, e),
            (Err(e), Ok(_)) => (b, e),
            (ra, rb) => panic!("trial {trial}: exactly one claim must win: {ra:?} {rb:?}"),
        };
        match &refusal {
            LeaseError::Held(l) => assert_eq!(l.holder.run_id, winner, "the refusal names the holder"),
            e => panic!("trial {trial}: refused for another reason: {e}"),
        }
        let held = items(&c, &table).await;
        assert_eq!(held.len(), keys.len(), "all or none: {held:?}");
        assert!(held.iter().all(|(_, r)| *r == winner), "{held:?}");
        lease::release(&c.aws, &table, &keys, &winner)
            .await
            .expect("release");
        assert!(items(&c, &table).await.is_empty());
    }

    // And real runs: two `gameday run` processes started together.
    for trial in 0..20 {
        let sa = Scratch::new();
        let sb = Scratch::new();
        let (fa, fb) = (sa.write("exp.yaml", &exp), sb.write("exp.yaml", &exp));
        let (pa, pb) = (lease_policy(&sa, &table), lease_policy(&sb, &table));
        let a = leased_run(&sa, &fa, &pa).spawn().expect("spawn");
        let b = leased_run(&sb, &fb, &pb).spawn().expect("spawn");
        let (oa, ob) = tokio::join!(
            finish(a, Duration::from_secs(120)),
            finish(b, Duration::from_secs(120))
        );
        let (ja, jb) = (sa.journal(), sb.journal());
        let runs = [(&oa, &ja, &sa), (&ob, &jb, &sb)];
        let winners: Vec<_> = runs.iter().filter(|(o, _, _)| o.code == 0).collect();
        let losers: Vec<_> = runs.iter().filter(|(o, _, _)| o.code == 5).collect();
        assert!(
            winners.len() == 1 && losers.len() == 1,
            "trial {trial}: one passes, one is not-run: {} {}\n{}{}\n{}{}",
            oa.code,
            ob.code,
            oa.stdout,
            oa.stderr,
            ob.stdout,
            ob.stderr
        );
        let (_, wj, ws) = winners[0];
        let (lo, lj, _) = losers[0];
        assert!(injected(wj), "trial {trial}: the winner injected");
        assert!(!injected(lj), "trial {trial}: the loser injected nothing");
        let winner_id = ws.run_id().expect("winner's run id");
        assert!(
            lo.stdout.contains(&format!("run {winner_id} (owner")) && lo.stdout.contains("holds"),
            "trial {trial}: the refusal names the holder: {}",
            lo.stdout
        );
        assert!(
            items(&c, &table).await.is_empty(),
            "trial {trial}: leases released"
        );
        assert!(
            states(&c, &fleet.instances)
                .await
                .iter()
                .all(|st| st == "running")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_extends_only_the_holders_lease_and_release_is_the_holders_alone() {
    let c = clients().await;
    let s = Scratch::new();
    let table = lease_table(&s).await;
    let keys = vec![unique("asg#hb"), unique("slot#hb")];
    let first = lease::claim(&c.aws, &table, &keys, &holder("run-a"), Duration::from_secs(10))
        .await
        .expect("claim");
    let expiry = |l: &[lease::Lease]| l.iter().map(|l| l.expires_at).collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = lease::heartbeat(&c.aws, &table, &keys, "run-a", Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert!(later > first);
    let now = lease::holders(&c.aws, &table, &keys).await.expect("read");
    assert_eq!(expiry(&now), vec![later, later], "both leases extended");

    // Another run's heartbeat changes nothing: it is told the lease is not its own.
    let other = lease::heartbeat(&c.aws, &table, &keys, "run-b", Duration::from_secs(3600)).await;
    assert!(matches!(other, Err(LeaseError::Lost { .. })), "{other:?}");
    assert_eq!(
        expiry(&lease::holders(&c.aws, &table, &keys).await.expect("read")),
        vec![later, later]
    );

    // Another run's release leaves the leases; the holder's removes them.
    lease::release(&c.aws, &table, &keys, "run-b")
        .await
        .expect("release");
    assert_eq!(
        items(&c, &table).await.len(),
        2,
        "run-b cannot release run-a's leases"
    );
    lease::release(&c.aws, &table, &keys, "run-a")
        .await
        .expect("release");
    assert!(items(&c, &table).await.is_empty());
    // A heartbeat after release does not bring a lease back.
    let gone = lease::heartbeat(&c.aws, &table, &keys, "run-a", Duration::from_secs(60)).await;
    assert!(matches!(gone, Err(LeaseError::Lost { .. })), "{gone:?}");
    assert!(items(&c, &table).await.is_empty());
}

/// Puts a lease of a dead run that expired a minute ago.
async fn expired_lease(c: &Clients, table: &str, key: &str, run_id: &str) {
    let past = jiff::Timestamp::now().as_millisecond() - 60_000;
    c.dynamodb
        .put_item()
        .table_name(table)
        .item("lease", AttributeValue::S(key.into()))
        .item("run_id", AttributeValue::S(run_id.into()))
        .item("owner", AttributeValue::S("team-gone".into()))
        .item("host", AttributeValue::S("lost-host".into()))
        .item("expires_at", AttributeValue::N(past.to_string()))
        .send()
        .await
        .expect("PutItem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_of_a_dead_run_is_taken_over_by_one_run_only() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let table = lease_table(&s).await;

    // Two claimants of one expired lease: the first to write wins, the second
    // finds the fresh expiry and is refused.
    let key = unique("slot#expired");
    expired_lease(&c, &table, &key, "20200101-000000-dead").await;
    let keys = vec![key.clone()];
    let (ha, hb) = (holder("taker-a"), holder("taker-b"));
    let (ra, rb) = tokio::join!(
        lease::claim(&c.aws, &table, &keys, &ha, Duration::from_secs(60)),
        lease::claim(&c.aws, &table, &keys, &hb, Duration::from_secs(60)),
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one takes it over: {ra:?} {rb:?}"
    );

    // A run on a group whose lease expired with its dead run goes ahead.
    let group_key = format!("asg#{}", fleet.group);
    expired_lease(&c, &table, &group_key, "20200101-000000-dead").await;
    let policy = lease_policy(&s, &table);
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s"),
    );
    let out = finish(
        leased_run(&s, &file, &policy).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(injected(&s.journal()));
    let left: Vec<_> = items(&c, &table)
        .await
        .into_iter()
        .filter(|(k, _)| *k == group_key)
        .collect();
    assert!(
        left.is_empty(),
        "the run released the lease it took over: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_releases_the_leases_of_a_killed_run() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let table = lease_table(&s).await;
    let policy = lease_policy(&s, &table);
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "5m"),
    );
    let child = leased_run(&s, &file, &policy).spawn().expect("spawn");
    wait_until_any_stopped(&c, &fleet.instances).await;
    let held = items(&c, &table).await;
    let run_id = s.run_id().expect("run id");
    assert!(
        held.iter()
            .any(|(k, r)| *k == format!("asg#{}", fleet.group) && *r == run_id),
        "the run holds its group's lease: {held:?}"
    );
    signal(&child, libc::SIGKILL);
    let _ = finish(child, Duration::from_secs(30)).await;
    assert!(!items(&c, &table).await.is_empty(), "a killed run's leases stay");

    // A second run is refused while the dead run's lease is unexpired.
    let s2 = Scratch::new();
    let (f2, p2) = (
        s2.write("exp.yaml", &std::fs::read_to_string(&file).unwrap()),
        lease_policy(&s2, &table),
    );
    let out = finish(
        leased_run(&s2, &f2, &p2).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("run {run_id} (owner")),
        "{}",
        out.stdout
    );
    assert!(!injected(&s2.journal()));

    let out = finish(
        recover_command(&s, &run_id).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(items(&c, &table).await.is_empty(), "recover released the leases");
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_releases_an_expired_lease_and_keeps_a_live_one() {
    let c = clients().await;
    let s = Scratch::new();
    let table = lease_table(&s).await;
    let policy = lease_policy(&s, &table);
    let dead = unique("asg#dead");
    expired_lease(&c, &table, &dead, "20200101-000000-dead").await;
    let live = vec![unique("asg#live")];
    lease::claim(
        &c.aws,
        &table,
        &live,
        &holder("20990101-000000-live"),
        Duration::from_secs(600),
    )
    .await
    .expect("claim");
    let mut cmd = gameday(&s);
    cmd.arg("cleanup")
        .arg("--policy")
        .arg(&policy)
        .arg("--runs-dir")
        .arg(s.runs());
    let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(60)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("lease {dead}")), "{}", out.stdout);
    assert_eq!(
        items(&c, &table).await,
        vec![(live[0].clone(), "20990101-000000-live".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lease_table_stops_the_run_before_anything_is_touched() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let table = unique("no-such-table");
    let policy = lease_policy(&s, &table);
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s"),
    );
    let out = finish(
        leased_run(&s, &file, &policy).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("the lease table `{table}`"))
            && out
                .stdout
                .contains(&format!("gameday locks create-table {table}")),
        "{}",
        out.stdout
    );
    assert!(!injected(&s.journal()));
    assert!(
        states(&c, &fleet.instances)
            .await
            .iter()
            .all(|st| st == "running")
    );
    let tags = c
        .autoscaling
        .describe_tags()
        .filters(
            aws_sdk_autoscaling::types::Filter::builder()
                .name("auto-scaling-group")
                .values(&fleet.group)
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    assert!(
        tags.tags().iter().all(|t| t.key() != Some("gameday:lock")),
        "no lock tag written"
    );
}
