//! Benchmark: what the shared runs store adds to every intent. Run with
//! `scripts/bench store`.
//!
//! An intent is durable before its call: locally one append and fsync of
//! events.jsonl; with `--runs-dir s3://...` also one PutObject with
//! `If-None-Match: *` of the chunk (the intent and the events buffered since
//! the last one). This times both for chunks of the size a run writes (one
//! intent line, and an intent after a few observation ticks), against moto on
//! loopback. Real S3 adds its own round trip (tens of ms in region).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::Credentials;
use gameday::aws::s3::{S3Store, S3Url};
use support::*;

const PUTS: usize = 200;

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "{name}: median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {} writes",
        at(0.5),
        at(0.95),
        at(1.0),
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("bench").to_lowercase();
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let url = S3Url::parse(&format!("s3://{bucket}/runs"))
        .expect("url")
        .expect("bucket");
    let store = S3Store::with_client(client, url);

    // An intent as the engine writes it, and one after ~10 ticks of `checked` events.
    let intent = br#"{"seq":12,"at":"2026-12-02T08:00:00Z","event":"intent","action_id":3,"fault":"stop-third","kind":"inject","operation":"ec2:StopInstances","resources":["i-0123456789abcdef0"],"undo":{"kind":"start_instances","instance_ids":["i-0123456789abcdef0"]}}
"#
    .to_vec();
    let checked = br#"{"seq":11,"at":"2026-12-02T08:00:00Z","event":"checked","phase":"inject","results":[{"probe":"healthy capacity","role":"steady_state","ok":true,"value":3.0,"detail":"3 healthy"}]}
"#;
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.extend_from_slice(checked);
    }
    batch.extend_from_slice(&intent);

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(tmp.path().join("events.jsonl"))
        .expect("events file");
    let mut local = Vec::new();
    for _ in 0..PUTS {
        let t = Instant::now();
        file.write_all(&intent).expect("write");
        file.sync_data().expect("fsync");
        local.push(t.elapsed());
    }
    summary("local append + fsync (today's cost of an intent)", local);

    for (name, body) in [("one intent", intent), ("intent + 10 ticks", batch)] {
        let mut times = Vec::new();
        for i in 0..PUTS {
            let key = format!("{name}/events/{i:010}.jsonl").replace(' ', "-");
            let t = Instant::now();
            store.put_new(&key, body.clone()).await.expect("PutObject");
            times.push(t.elapsed());
        }
        summary(
            &format!("S3 PutObject If-None-Match, {name} ({} bytes)", body.len()),
            times,
        );
    }
}
