//! The shared runs store in S3 (`--runs-dir s3://bucket/prefix`, issue #17
//! item 1), against moto: a run's records land in the bucket and are read
//! back from another folder; a run whose runner and local folder vanished is
//! finished by `gameday recover` from a fresh folder; two writers of one run
//! cannot both write it.

use std::path::Path;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::Credentials;
use gameday::aws::s3::{PutError, S3Store, S3Url};

use crate::lifecycle::{assert_parallel_cleaned, clones_of, parallel_experiment, wait_for_clone_fault};
use crate::support::*;

/// A new bucket on the test server, and an S3 client for checking it.
async fn bucket() -> (aws_sdk_s3::Client, String) {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
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
