//! The shared runs store in S3 (`--runs-dir s3://bucket/prefix`, issue #17
//! item 1), against moto: a run's records land in the bucket and are read
//! back from another folder; a run whose runner and local folder vanished is
//! finished by `gameday recover` from a fresh folder; two writers of one run
//! cannot both write it.

use std::path::Path;
use std::time::Duration;

use gameday::aws::s3::{PutError, S3Store, S3Url};

use crate::lifecycle::{assert_parallel_cleaned, clones_of, parallel_experiment, wait_for_clone_fault};
use crate::support::*;

/// A new bucket on the test server, and an S3 client for checking it.
async fn bucket() -> (aws_sdk_s3::Client, String) {
    let s3 = crate::support::coordination::s3_client().await;
    let name = unique("runs").to_lowercase();
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("CreateBucket");
    (s3, name)
}

/// Every key in the bucket under `prefix`.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let mut k: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    k.sort();
    k
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> serde_json::Value {
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject");
    let body = o.body.collect().await.expect("body").into_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

/// `gameday ARGS... --runs URL`, its scratch copy in `scratch` (as on another machine).
fn with_store(s: &Scratch, url: &str, scratch: &Path) -> tokio::process::Command {
    let mut cmd = gameday(s);
    cmd.env("GAMEDAY_RUNS_DIR", url)
        .env("GAMEDAY_SCRATCH_DIR", scratch);
    cmd
}

/// The one run id in the store (the only folder under `prefix/`).
fn run_id_in(keys: &[String], prefix: &str) -> String {
    let mut ids: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}/"))?.split('/').next())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run in the store: {keys:?}");
    ids[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_the_s3_store_writes_its_records_there_and_history_and_report_read_them() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let (s3, b) = bucket().await;
    let url = format!("s3://{b}/team-web/runs");
    let s = Scratch::new();
    let file = s.write(
        "exp.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s"),
    );
    let out = finish(
        with_store(&s, &url, &s.path().join("machine-a"))
            .arg("run")
            .arg(&file)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "the stopped instance was started again"
    );

    let all = keys(&s3, &b, "team-web/runs/").await;
    let id = run_id_in(&all, "team-web/runs");
    assert!(
        out.stdout.contains(&format!("store: {url}/{id}/")),
        "{}",
        out.stdout
    );
    for f in [
        "events.jsonl",
        "journal.json",
        "report.html",
        "report.md",
        "junit.xml",
    ] {
        let k = format!("team-web/runs/{id}/{f}");
        assert!(all.contains(&k), "{k} in {all:?}");
    }
    let chunks: Vec<&String> = all
        .iter()
        .filter(|k| k.starts_with(&format!("team-web/runs/{id}/events/")))
        .collect();
    // run_started, the stop's intent, its rollback's intent and the verdict at least.
    assert!(chunks.len() >= 4, "write-ahead chunks: {chunks:?}");
    let j = object(&s3, &b, &format!("team-web/runs/{id}/journal.json")).await;
    assert_eq!(j["verdict"], "passed");

    // Read back from another machine: nothing local but an empty folder.
    let other = s.path().join("machine-b");
    let hist = finish(
        with_store(&s, &url, &other)
            .args(["history", "--output", "json"])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(hist.code, 0, "{}{}", hist.stdout, hist.stderr);
    assert!(
        hist.stdout.contains(&id) && hist.stdout.contains("passed"),
        "{}",
        hist.stdout
    );

    let rep = finish(
        with_store(&s, &url, &other)
            .args(["report", &id])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rep.code, 0, "{}{}", rep.stdout, rep.stderr);
    let html = std::fs::read_to_string(other.join(&id).join("report.html")).expect("report.html");
    assert!(html.contains(&id), "the report is the run's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_from_a_fresh_folder_finishes_a_run_whose_machine_vanished() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let before = group_state(&c, &fleet.group).await;
    let (s3, b) = bucket().await;
    let url = format!("s3://{b}/gd");
    let s = Scratch::new();
    let machine_a = s.path().join("machine-a");
    let file = s.write("exp.yaml", &parallel_experiment(&fleet, "5m"));
    let child = with_store(&s, &url, &machine_a)
        .arg("run")
        .arg(&file)
        .spawn()
        .expect("spawn");
    wait_for_clone_fault(&c, &fleet.group).await;
    signal(&child, libc::SIGKILL);
    let killed = finish(child, Duration::from_secs(10)).await;
    assert_eq!(killed.code, -1, "killed by a signal");
    std::fs::remove_dir_all(&machine_a).expect("the runner's machine vanishes");
    assert!(
        !clones_of(&c, &fleet.group).await.is_empty(),
        "the clone outlives the killed runner"
    );

    let all = keys(&s3, &b, "gd/").await;
    let id = run_id_in(&all, "gd");
    assert!(
        !all.contains(&format!("gd/{id}/journal.json")),
        "the runner died before writing its records"
    );
    let last_seq = all
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&format!("gd/{id}/events/"))?
                .strip_suffix(".jsonl")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("write-ahead chunks in the store");

    // Another writer got to the run first: this recover is refused, touching nothing.
    let taken = format!("gd/{id}/events/{:010}.jsonl", last_seq + 1);
    s3.put_object()
        .bucket(&b)
        .key(&taken)
        .body(Vec::new().into())
        .send()
        .await
        .expect("PutObject");
    let refused = finish(
        with_store(&s, &url, &s.path().join("machine-b"))
            .args(["recover", &id])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("another runner"), "{}", refused.stderr);
    assert!(
        !clones_of(&c, &fleet.group).await.is_empty(),
        "a refused recover touches nothing"
    );
    s3.delete_object()
        .bucket(&b)
        .key(&taken)
        .send()
        .await
        .expect("DeleteObject");

    let listed = finish(
        with_store(&s, &url, &s.path().join("machine-c"))
            .arg("recover")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        listed.stdout.contains(&id),
        "recover lists the run: {}",
        listed.stdout
    );

    let out = finish(
        with_store(&s, &url, &s.path().join("machine-d"))
            .args(["recover", &id])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("recovered"), "{}", out.stdout);
    // The source unchanged (lock tags gone), the clone and its instances gone.
    assert_parallel_cleaned(&c, &fleet, &before).await;
    let j = object(&s3, &b, &format!("gd/{id}/journal.json")).await;
    assert_eq!(
        j["verdict"], "error",
        "the store's journal says the run was recovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_of_one_key_only_the_first_succeeds() {
    let (s3, b) = bucket().await;
    let url = S3Url::parse(&format!("s3://{b}/p"))
        .expect("s3 URL")
        .expect("bucket");
    let store = S3Store::with_client(s3, url);
    store
        .put_new("run-1/events/0000000001.jsonl", b"first".to_vec())
        .await
        .expect("the first writer wins");
    let second = store
        .put_new("run-1/events/0000000001.jsonl", b"second".to_vec())
        .await;
    assert!(matches!(second, Err(PutError::Exists { .. })), "{second:?}");
    let kept = store.get("run-1/events/0000000001.jsonl").await.expect("get");
    assert_eq!(kept.as_deref(), Some(&b"first"[..]), "the first write is kept");
}

/// The text of one object.
async fn text_of(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject {key}: {e}"));
    String::from_utf8(o.body.collect().await.expect("body").into_bytes().to_vec()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_suite_runs_once_from_two_machines_that_share_only_the_s3_store() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let (s3, bucket) = bucket().await;
    let url = format!("s3://{bucket}/team");
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("experiments")).expect("experiments folder");
    std::fs::create_dir_all(s.path().join("suites")).expect("suites folder");
    s.write(
        "experiments/member.yaml",
        &stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s")
            .replace("name: test-stop", "name: suite-member"),
    );
    s.write(
        "suites/ready.yaml",
        "version: 1\nname: ready\nexperiments: [../experiments/member.yaml]\nschedule: { cron: \"0 10 * * TUE\", timezone: Europe/Paris }\n",
    );
    let slot_day = "2026-11-24T09:30:00Z";
    let machine = |scratch: &Path, args: &[&str]| {
        let mut cmd = with_store(&s, &url, scratch);
        cmd.args(args).env("GAMEDAY_NOW", slot_day);
        cmd
    };
    let (a_dir, b_dir, c_dir) = (
        tempfile::tempdir().expect("scratch a"),
        tempfile::tempdir().expect("scratch b"),
        tempfile::tempdir().expect("scratch c"),
    );

    // A catalog in the store, so that run-due keeps it there.
    let cat = finish(
        machine(a_dir.path(), &["catalog"]).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(cat.code, 0, "{}{}", cat.stdout, cat.stderr);
    assert!(
        keys(&s3, &bucket, "team/")
            .await
            .contains(&"team/catalog.html".to_string())
    );

    // Two machines (two scratch folders, one bucket) fire at the same moment,
    // held until both judged the slot due: the store's conditional put decides.
    let barrier = format!("{}:2", s.path().join("barrier").display());
    // Both commands are built before either starts (building one writes the policy file).
    let racer = |scratch: &Path| {
        let mut cmd = machine(scratch, &["run-due"]);
        cmd.env("GAMEDAY_TEST_CLAIM_BARRIER", &barrier);
        cmd
    };
    let (mut a, mut b) = (racer(a_dir.path()), racer(b_dir.path()));
    let (a, b) = (a.spawn().expect("spawn"), b.spawn().expect("spawn"));
    let (a, b) = tokio::join!(
        finish(a, Duration::from_secs(180)),
        finish(b, Duration::from_secs(180))
    );
    let said = format!("{}{}\n{}{}", a.stdout, a.stderr, b.stdout, b.stderr);
    assert_eq!((a.code, b.code), (0, 0), "{said}");
    assert!(
        said.contains("1 ran,") && said.contains("0 ran, 1 skipped"),
        "{said}"
    );
    assert!(said.contains("1 suite(s): 1 GO, 0 NO-GO"), "{said}");

    // In the store: one suite run with its scorecard, its experiment's run, the claim, the catalog.
    let all = keys(&s3, &bucket, "team/").await;
    let suite_runs: Vec<&String> = all.iter().filter(|k| k.ends_with("/suite.json")).collect();
    assert_eq!(suite_runs.len(), 1, "one suite run: {all:?}");
    let suite_run_id = suite_runs[0]
        .trim_start_matches("team/")
        .trim_end_matches("/suite.json")
        .to_string();
    assert!(
        all.contains(&format!("team/{suite_run_id}/scorecard.html")),
        "{all:?}"
    );
    assert_eq!(
        all.iter().filter(|k| k.ends_with("/journal.json")).count(),
        1,
        "the suite's experiment ran once: {all:?}"
    );
    let claim = object(&s3, &bucket, "team/.slots/.suites/ready/20261124T090000Z.json").await;
    assert_eq!(claim["run_id"], suite_run_id.as_str());
    assert_eq!(claim["verdict"], "GO");
    let md = text_of(&s3, &bucket, "team/catalog.md").await;
    assert!(
        md.contains("| ready |")
            && md.contains("GO (")
            && md.contains(&format!("({suite_run_id}/scorecard.html)")),
        "run-due refreshed the catalog in the store: {md}"
    );
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "every instance runs again"
    );

    // A third machine reads the standing, claims included, from the store alone.
    let cat = finish(
        machine(c_dir.path(), &["catalog", "suites"])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(cat.code, 0, "{}{}", cat.stdout, cat.stderr);
    let md = text_of(&s3, &bucket, "team/catalog.md").await;
    assert!(
        md.contains("- now: **done**: slot Tue 2026-11-24 10:00 Europe/Paris claimed by"),
        "the claim is read from the bucket: {md}"
    );
    let due = finish(
        machine(c_dir.path(), &["due", "suites"]).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(
        due.stdout.contains("DONE      suite ready") && due.stdout.contains(&suite_run_id),
        "{}",
        due.stdout
    );
}
