//! The coordination scenario (issue #17 item 5), shared by
//! `tests/coordination.rs`, which asserts on it, and `scripts/bench
//! coordination`, which prints its figures.
//!
//! N targets (Auto Scaling groups of two instances, each with its guardrail
//! alarm) in one moto, one lease table, one S3 bucket as the shared runs
//! store, and M `gameday run` processes per target started at once, each as
//! if on its own machine: its own scratch folder, and its own counting proxy
//! in front of moto, so every AWS request it makes is counted per operation
//! and per runner. Every run of a target stops one of its instances for a
//! moment, in place; half the targets' experiments watch one metric probe,
//! the other half `MANY_PROBES`, so the calls per tick can be compared.
//! Everything a test or the benchmark needs afterwards is gathered from the
//! store (each run's `journal.json`), the table, the groups, the processes'
//! exit codes and output, and the proxies' counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use jiff::Timestamp;

use super::proxy::FailingProxy;
use super::*;

/// Metric probes of the experiments of even targets.
pub const FEW_PROBES: usize = 1;
/// Metric probes of the experiments of odd targets.
pub const MANY_PROBES: usize = 8;
/// The namespace of the probes' metrics (published once per target).
const NAMESPACE: &str = "GamedayLoad";
/// How long a run waits for its runner, at most: generous, for a loaded
/// machine; every experiment's own `max_duration` is shorter.
const RUNNER_LIMIT: Duration = Duration::from_secs(300);

/// One `gameday run` process and what it left.
pub struct Runner {
    /// The index of its target.
    pub target: usize,
    /// Its experiment's metric probes.
    pub probes: usize,
    /// When its process was spawned.
    pub spawned_at: Timestamp,
    /// Its exit code and output.
    pub out: Finished,
    /// Its run id, as printed (`run: ID`).
    pub run_id: Option<String>,
    /// Its requests per operation, counted by its own proxy.
    pub calls: BTreeMap<String, u64>,
    /// Its `journal.json`, read from the store.
    pub journal: Option<serde_json::Value>,
    /// The files of its folder in the store (relative to the folder).
    pub stored: Vec<String>,
}

/// What the whole scenario left.
pub struct Coordination {
    /// The targets.
    pub fleets: Vec<Fleet>,
    /// Each target as it was before the runners started, and after they all ended.
    pub before: Vec<GroupState>,
    pub after: Vec<GroupState>,
    /// The lease table's items after all ended: (key, run id).
    pub leases_left: Vec<(String, String)>,
    /// The runs store's folders (run ids) after all ended.
    pub store_runs: Vec<String>,
    /// The store's URL (`s3://bucket/prefix`).
    pub url: String,
    pub runners: Vec<Runner>,
    /// From the first spawn to the last exit.
    pub wall: Duration,
}

fn time(e: &serde_json::Value) -> Timestamp {
    e["at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("every event has a time")
}

impl Runner {
    fn events(&self) -> &[serde_json::Value] {
        self.journal
            .as_ref()
            .and_then(|j| j["events"].as_array())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The intents of `kind` (`inject`, `rollback`, `setup`) and their action ids.
    fn intents(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "intent" && e["kind"] == kind)
            .collect()
    }

    /// The outcome of action `id`.
    fn outcome(&self, id: &serde_json::Value) -> Option<&serde_json::Value> {
        self.events()
            .iter()
            .find(|e| e["event"] == "outcome" && e["action_id"] == *id)
    }

    /// Whether the run made any injecting call.
    pub fn injected(&self) -> bool {
        !self.intents("inject").is_empty()
    }

    /// From the journal: its first inject intent to its last rollback's
    /// outcome (when the last fault was undone), if it injected.
    pub fn injection_window(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self.intents("inject").first().map(|e| time(e))?;
        let last = self
            .intents("rollback")
            .iter()
            .filter_map(|i| self.outcome(&i["action_id"]))
            .map(time)
            .max()?;
        Some((first, last))
    }

    /// When the lease table answered its claim, and whether it was granted.
    pub fn lease_decision(&self) -> Option<(Timestamp, bool)> {
        let claim = self
            .intents("setup")
            .into_iter()
            .find(|e| e["operation"] == "dynamodb:TransactWriteItems")?;
        let outcome = self.outcome(&claim["action_id"])?;
        Some((time(outcome), outcome["ok"] == true))
    }

    /// Observation ticks: `checked` events (every probe read together once).
    pub fn ticks(&self) -> u64 {
        self.events().iter().filter(|e| e["event"] == "checked").count() as u64
    }

    /// The run's verdict, from its journal.
    pub fn verdict(&self) -> Option<&str> {
        self.journal.as_ref().and_then(|j| j["verdict"].as_str())
    }

    /// Requests of `operation` it made.
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }
}

/// An in-place run on `fleet` that stops one instance for `hold`, watching
/// `probes` metric probes (steady state) and the fleet's guardrail alarm.
pub fn experiment(fleet: &Fleet, name: &str, probes: usize, hold: &str) -> String {
    let steady: String = (0..probes)
        .map(|i| {
            format!(
                "  - name: latency {i}
    metric: {{ namespace: {NAMESPACE}, name: Latency{i}, dimensions: {{ AutoScalingGroupName: \"${{asg}}\" }}, stat: Average, period: 60 }}
    expect: \"< 1000\"
    missing: ignore
"
            )
        })
        .collect();
    format!(
        "version: 1
name: {name}
hypothesis: the fleet rides out a stopped instance
environment: {{ mode: in-place, autoscaling_group: {group} }}
steady_state:
{steady}guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {{ count: 1 }} }}
    duration: {hold}
timing: {{ interval: 500ms, baseline: 1s, recovery: 30s, max_duration: 2m }}
",
        group = fleet.group,
        alarm = fleet.alarm
    )
}

/// One datapoint of every probe's metric for `group` (the probes judge the
/// latest datapoint, `missing: ignore`).
async fn publish(cloudwatch: &aws_sdk_cloudwatch::Client, group: &str) -> bool {
    let data: Vec<MetricDatum> = (0..MANY_PROBES.max(FEW_PROBES))
        .map(|i| {
            MetricDatum::builder()
                .metric_name(format!("Latency{i}"))
                .dimensions(
                    Dimension::builder()
                        .name("AutoScalingGroupName")
                        .value(group)
                        .build(),
                )
                .value(100.0)
                .unit(StandardUnit::Milliseconds)
                .timestamp(std::time::SystemTime::now().into())
                .build()
        })
        .collect();
    cloudwatch
        .put_metric_data()
        .namespace(NAMESPACE)
        .set_metric_data(Some(data))
        .send()
        .await
        .is_ok()
}

/// An S3 client on the test server (path-style, as the runner's).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let config = test_config(REGION).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
}

/// Every key under `prefix/` in `bucket`.
pub async fn keys_under(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("ListObjectsV2");
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
    }
    keys.sort();
    keys
}

async fn get_json(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<serde_json::Value> {
    let o = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let body = o.body.collect().await.ok()?.into_bytes();
    serde_json::from_slice(&body).ok()
}

/// Every lease in `table`: (key, run id).
pub async fn leases(c: &Clients, table: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = gameday::lease::all(&c.aws, table)
        .await
        .expect("Scan the lease table")
        .into_iter()
        .map(|l| (l.key, l.holder.run_id))
        .collect();
    v.sort();
    v
}

/// Runs the scenario: `targets` targets, `per_target` runners on each,
/// every fault held for `hold`. The runners' children are killed if this
/// panics (they are dropped, and `gameday` children are `kill_on_drop`).
pub async fn coordinate(c: &Clients, targets: usize, per_target: usize, hold: &str) -> Coordination {
    let mut fleets = Vec::new();
    for _ in 0..targets {
        fleets.push(fleet(c, 2).await);
    }
    let mut before = Vec::new();
    for f in &fleets {
        before.push(group_state(c, &f.group).await);
    }
    let table = unique("coord-locks");
    gameday::lease::create_table(&c.aws, &table)
        .await
        .expect("create the lease table");
    let s3 = s3_client().await;
    let bucket = unique("coord").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let prefix = "game-days";
    let url = format!("s3://{bucket}/{prefix}");

    // Everything is written before the first spawn, so the runners start together.
    struct Prepared {
        target: usize,
        probes: usize,
        scratch: Scratch,
        file: std::path::PathBuf,
        policy: std::path::PathBuf,
        proxy: FailingProxy,
    }
    let mut prepared = Vec::new();
    for (t, f) in fleets.iter().enumerate() {
        let probes = if t % 2 == 0 { FEW_PROBES } else { MANY_PROBES };
        for k in 0..per_target {
            let scratch = Scratch::new();
            let file = scratch.write(
                "exp.yaml",
                &experiment(f, &format!("load-t{t}-r{k}"), probes, hold),
            );
            let policy = scratch.write(
                "lease-policy.yaml",
                &format!("{PERMISSIVE_POLICY}locks: {{ table: {table} }}\n"),
            );
            let proxy = FailingProxy::counting(endpoint()).await;
            prepared.push(Prepared {
                target: t,
                probes,
                scratch,
                file,
                policy,
                proxy,
            });
        }
    }

    // The probes' metrics, published every second until the runners are
    // done: a datapoint published once, before a setup that a loaded
    // machine makes slow, can be older than a baseline's window by the
    // time a runner reads it (the run is then rightly not run).
    let publisher = {
        let cloudwatch = c.cloudwatch.clone();
        let groups: Vec<String> = fleets.iter().map(|f| f.group.clone()).collect();
        for g in &groups {
            assert!(publish(&cloudwatch, g).await, "PutMetricData");
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // A datapoint lost to a busy moto is made up a second later.
                for g in &groups {
                    let _ = publish(&cloudwatch, g).await;
                }
            }
        })
    };

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut spawned_at = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let mut cmd = gameday(&p.scratch);
        cmd.env("AWS_ENDPOINT_URL", &p.proxy.endpoint)
            .env("GAMEDAY_SCRATCH_DIR", p.scratch.path().join("machine"))
            .arg("run")
            .arg(&p.file)
            .arg("--runs")
            .arg(&url)
            .arg("--policy")
            .arg(&p.policy)
            .arg("--quiet");
        let child = cmd.spawn().expect("spawn gameday run");
        spawned_at.push(Timestamp::now());
        set.spawn(async move { (i, finish(child, RUNNER_LIMIT).await) });
    }
    let mut outs: Vec<Option<Finished>> = prepared.iter().map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        // A runner past its limit fails here; dropping the set kills the others.
        let (i, out) = done.expect("a runner finished within its limit");
        outs[i] = Some(out);
    }
    let wall = started.elapsed();
    publisher.abort();

    let mut runners = Vec::new();
    for ((p, out), spawned_at) in prepared.into_iter().zip(outs).zip(spawned_at) {
        let out = out.expect("every runner reported");
        let run_id = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("run: "))
            .map(|s| s.trim().to_string());
        let (journal, stored) = match &run_id {
            Some(id) => {
                let folder = format!("{prefix}/{id}");
                let stored = keys_under(&s3, &bucket, &folder)
                    .await
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&format!("{folder}/")).map(str::to_string))
                    .collect();
                (
                    get_json(&s3, &bucket, &format!("{folder}/journal.json")).await,
                    stored,
                )
            }
            None => (None, Vec::new()),
        };
        runners.push(Runner {
            target: p.target,
            probes: p.probes,
            spawned_at,
            out,
            run_id,
            calls: p.proxy.counts(),
            journal,
            stored,
        });
    }
    let mut after = Vec::new();
    for f in &fleets {
        after.push(group_state(c, &f.group).await);
    }
    let mut store_runs: Vec<String> = keys_under(&s3, &bucket, prefix)
        .await
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}/"))?.split('/').next())
        .map(str::to_string)
        .collect();
    store_runs.dedup();
    Coordination {
        fleets,
        before,
        after,
        leases_left: leases(c, &table).await,
        store_runs,
        url,
        runners,
        wall,
    }
}
