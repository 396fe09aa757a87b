//! Test harness: a real local AWS API (moto's server mode) and the real binary.
//!
//! One moto server per test binary, on 127.0.0.1 and a free port, started on
//! first use. It dies with the test process (PR_SET_PDEATHSIG from a thread
//! that lives as long as the process), so no server outlives a test run. Tests
//! never share resources: each creates its own group, tags and alarms with a
//! unique name, so they can run in parallel against the one server.

#![allow(dead_code)]

pub mod alb;
pub mod coordination;
pub mod proxy;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::config::Credentials;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// The moto server's endpoint, starting it on first use.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(start_moto)
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if local.exists() {
        return local;
    }
    panic!("moto_server not found: run `scripts/test`, which installs moto into .venv, or set MOTO_SERVER");
}

fn start_moto() -> String {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        l.local_addr().expect("a local address").port()
    };
    let binary = moto_binary();
    let log = std::env::temp_dir().join(format!("gameday-tests-moto-{port}.log"));
    let (tx, rx) = std::sync::mpsc::channel();
    // The thread that spawns moto must live as long as the process: the child
    // gets SIGKILL when this thread exits (PR_SET_PDEATHSIG is per thread).
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let log_file = std::fs::File::create(&log).expect("moto log file");
        let mut cmd = std::process::Command::new(&binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file);
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        tx.send(child.id()).expect("report moto's pid");
        // Reaps moto should it die early (no zombie), then keeps this thread alive.
        let _ = child.wait();
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("moto started");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on 127.0.0.1:{port} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}

/// SDK clients pointed at the test server.
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The runner's own clients, for tests that drive a layer directly.
    pub aws: gameday::aws::Aws,
}

/// The SDK configuration of the test clients: the test server, `region`,
/// and moto's dummy credentials.
pub async fn test_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// Clients for seeding and checking moto's state.
pub async fn clients() -> Clients {
    clients_in(REGION).await
}

/// Test clients for `region` (the fleets of most tests are in `REGION`).
pub async fn clients_in(region: &str) -> Clients {
    let config = test_config(region).await;
    Clients {
        ec2: aws_sdk_ec2::Client::new(&config),
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        aws: gameday::aws::Aws::from_config(&config, Some(endpoint().to_string())).expect("a region"),
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfff
    )
}

/// A test fleet: an Auto Scaling group with its instances and a guardrail alarm.
#[derive(Clone)]
pub struct Fleet {
    pub group: String,
    pub alarm: String,
    pub instances: Vec<String>,
    /// A tag (`fleet`) carried by every instance of this fleet only.
    pub tag: String,
}

/// Creates a group of `n` instances in a fresh VPC and an OK alarm.
pub async fn fleet(c: &Clients, n: i32) -> Fleet {
    fleet_in(c, n, &["a"]).await
}

/// Like [`fleet`], with one subnet in each of `zones` (suffixes of the region: `a`, `b`).
pub async fn fleet_in(c: &Clients, n: i32, zones: &[&str]) -> Fleet {
    let group = unique("grp");
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let mut subnets = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let subnet = c
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.0.{}.0/24", i + 1))
            .availability_zone(format!("{}{z}", c.aws.region))
            .send()
            .await
            .expect("CreateSubnet");
        subnets.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_string(),
        );
    }
    let subnet_id = subnets.join(",");
    let image = c.ec2.describe_images().send().await.expect("DescribeImages");
    let image_id = image
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("an image")
        .to_string();
    let lt = c
        .ec2
        .create_launch_template()
        .launch_template_name(&group)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(image_id)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let lt_id = lt
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("template id")
        .to_string();
    c.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Latest")
                .build(),
        )
        .min_size(n)
        .max_size(n)
        .desired_capacity(n)
        .vpc_zone_identifier(subnet_id)
        .tags(
            Tag::builder()
                .key("fleet")
                .value(&group)
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let g = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let mut instances: Vec<String> = g.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    instances.sort();
    assert_eq!(
        instances.len(),
        n as usize,
        "moto should launch the group's instances"
    );
    let alarm = format!("{group}-5xx");
    errors_alarm(c, &alarm).await;
    Fleet {
        tag: group.clone(),
        group,
        alarm,
        instances,
    }
}

/// Creates the guardrail alarm `name` (App/Errors Sum over 60 s > 50) in OK.
pub async fn errors_alarm(c: &Clients, name: &str) {
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("App")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(50.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    set_alarm(c, name, "OK").await;
}

/// Sets an alarm's state, as CloudWatch would on a breach (moto does not evaluate alarms).
pub async fn set_alarm(c: &Clients, alarm: &str, state: &str) {
    c.cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(state.into())
        .state_reason(format!("set by test to {state}"))
        .send()
        .await
        .expect("SetAlarmState");
}

/// The EC2 state of each instance, in the order given.
pub async fn states(c: &Clients, ids: &[String]) -> Vec<String> {
    let out = c
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .expect("DescribeInstances");
    let mut found: Vec<(String, String)> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    found.sort();
    ids.iter()
        .map(|id| {
            found
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| "missing".into())
        })
        .collect()
}

/// Waits until at least one of `ids` is stopped (the fault is in effect).
pub async fn wait_until_any_stopped(c: &Clients, ids: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = states(c, ids).await;
        let stopped: Vec<String> = ids
            .iter()
            .zip(&s)
            .filter(|(_, st)| *st == "stopped")
            .map(|(i, _)| i.clone())
            .collect();
        if !stopped.is_empty() {
            return stopped;
        }
        assert!(
            Instant::now() < deadline,
            "no instance was stopped within 30s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An in-place experiment on `group` guarded by `alarm`, stopping `select`
/// of the group's instances for `duration`, checked every 500ms.
pub fn stop_experiment(group: &str, alarm: &str, select: &str, duration: &str) -> String {
    format!(
        "version: 1
name: test-stop
hypothesis: the fleet rides out stopped instances
environment: {{ mode: in-place, autoscaling_group: {group} }}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {select} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: 5m }}
"
    )
}

/// A scratch folder for one test: experiment files and run records.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an experiment file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write experiment");
        p
    }

    pub fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    /// The only run's id (its folder's name), once the run has started.
    pub fn run_id(&self) -> Option<String> {
        let dir = std::fs::read_dir(self.runs()).ok()?.next()?.ok()?;
        Some(dir.file_name().to_string_lossy().into_owned())
    }

    /// A run folder's journal, parsed.
    pub fn journal_of(&self, run: &Path) -> serde_json::Value {
        let text = std::fs::read_to_string(run.join("journal.json")).expect("journal.json");
        serde_json::from_str(&text).expect("journal.json is JSON")
    }

    /// The only run folder's journal, parsed.
    pub fn journal(&self) -> serde_json::Value {
        let run = std::fs::read_dir(self.runs())
            .expect("runs folder")
            .next()
            .expect("one run")
            .expect("run entry")
            .path();
        let text = std::fs::read_to_string(run.join("journal.json")).expect("journal.json");
        serde_json::from_str(&text).expect("journal.json is JSON")
    }
}

/// A safety policy that lets the tests' in-place runs go ahead without a
/// terminal: any region, no approval, no time window, generous limits. The
/// repository's default (and built-in) policy requires approval in place.
pub const PERMISSIVE_POLICY: &str = "\
version: 1
regions: any
actions: [ec2:stop-instances, ec2:reboot-instances, ec2:terminate-instances, autoscaling:set-unhealthy, ec2:network-blackhole, ec2:az-outage, autoscaling:suspend-processes, autoscaling:capacity-drop, cloudwatch:force-alarm]
protected_tags: { gameday:protected: \"true\" }
blast_radius: { max_instances_per_fault: 100, max_percent_of_group: 100 }
in_place: { allowed: true, requires_approval: false, allow_terminate: false }
require_guardrails: true
max_experiment_duration: 1h
";

/// The `gameday` binary with the test server's endpoint, no user config, and
/// [`PERMISSIVE_POLICY`] (through GAMEDAY_POLICY; `--policy` overrides it).
pub fn gameday(scratch: &Scratch) -> tokio::process::Command {
    command(scratch, env!("CARGO_BIN_EXE_gameday"))
}

/// The `gameday-sandbox` binary (the demo workload), set up like [`gameday`].
pub fn sandbox(scratch: &Scratch) -> tokio::process::Command {
    command(scratch, env!("CARGO_BIN_EXE_gameday-sandbox"))
}

/// `gameday ARGS` on a pseudo-terminal (util-linux `script`), so that it sees
/// a terminal on stdin and stderr; what it prints arrives on stdout, and what
/// is written to stdin is typed on the terminal. Paths in `args` must not need quoting.
pub fn gameday_on_terminal(scratch: &Scratch, args: &str) -> tokio::process::Command {
    let mut cmd = command(scratch, "script");
    cmd.args([
        "--quiet",
        "--return",
        "--command",
        &format!("{} {args}", env!("CARGO_BIN_EXE_gameday")),
        "/dev/null",
    ])
    .stdin(Stdio::piped());
    cmd
}

fn command(scratch: &Scratch, program: &str) -> tokio::process::Command {
    let policy = scratch.write("permissive-policy.yaml", PERMISSIVE_POLICY);
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(scratch.path())
        .env_clear()
        .env("GAMEDAY_POLICY", policy)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", scratch.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.path().join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished `gameday` process printed.
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for a child, failing the test if it takes longer than `limit`.
pub async fn finish(child: tokio::process::Child, limit: Duration) -> Finished {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("gameday finished in time")
        .expect("gameday output");
    Finished {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("child still running") as i32;
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Everything about a group a run must leave exactly as it was.
#[derive(Debug, PartialEq)]
pub struct GroupState {
    pub sizes: (i32, i32, i32),
    pub suspended: Vec<String>,
    pub tags: Vec<(String, String, bool)>,
    /// (id, EC2 state, group health status)
    pub instances: Vec<(String, String, String)>,
}

pub async fn group_state(c: &Clients, name: &str) -> GroupState {
    let out = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let g = &out.auto_scaling_groups()[0];
    let mut suspended: Vec<String> = g
        .suspended_processes()
        .iter()
        .filter_map(|p| p.process_name().map(str::to_string))
        .collect();
    suspended.sort();
    let mut tags: Vec<(String, String, bool)> = g
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
                t.propagate_at_launch().unwrap_or(false),
            )
        })
        .collect();
    tags.sort();
    let mut members: Vec<(String, String)> = g
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.health_status().unwrap_or_default().to_string(),
            )
        })
        .collect();
    members.sort();
    let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
    let st = states(c, &ids).await;
    GroupState {
        sizes: (
            g.min_size().unwrap_or(-1),
            g.max_size().unwrap_or(-1),
            g.desired_capacity().unwrap_or(-1),
        ),
        suspended,
        tags,
        instances: members
            .into_iter()
            .zip(st)
            .map(|((id, health), state)| (id, state, health))
            .collect(),
    }
}

/// Each instance's security group ids, in the order given.
pub async fn security_groups(c: &Clients, ids: &[String]) -> Vec<Vec<String>> {
    let out = c
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .expect("DescribeInstances");
    let found: Vec<(String, Vec<String>)> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
            )
        })
        .collect();
    ids.iter()
        .map(|id| {
            found
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, g)| g.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// Network-blackhole security groups of run `run_id`: (id, name).
pub async fn blackhole_groups(c: &Clients, run_id: &str) -> Vec<(String, String)> {
    let f = aws_sdk_ec2::types::Filter::builder()
        .name("tag:gameday:run-id")
        .values(run_id)
        .build();
    let out = c
        .ec2
        .describe_security_groups()
        .filters(f)
        .send()
        .await
        .expect("DescribeSecurityGroups");
    out.security_groups()
        .iter()
        .map(|g| {
            (
                g.group_id().unwrap_or_default().to_string(),
                g.group_name().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A group's VPCZoneIdentifier.
pub async fn group_subnets(c: &Clients, name: &str) -> String {
    let out = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    out.auto_scaling_groups()[0]
        .vpc_zone_identifier()
        .unwrap_or_default()
        .to_string()
}

/// An alarm's state.
pub async fn alarm_state(c: &Clients, name: &str) -> String {
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .expect("DescribeAlarms");
    out.metric_alarms()
        .first()
        .and_then(|a| a.state_value())
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "missing".into())
}

/// Asserts that a run's rollback began on the very tick its guardrail breach
/// was seen: in the journal, between `guardrail_breached` and
/// `rollback_started` there is only the abort and the phase change, no other
/// probe check, call or wait. This is what "an abort never waits for a sleep"
/// means, and unlike a latency bound in milliseconds it holds on a loaded
/// machine too (the latency itself is measured by `scripts/bench abort`).
pub fn assert_rollback_began_on_the_breach_tick(journal: &serde_json::Value) {
    let events = journal["events"].as_array().expect("events");
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap_or_default().to_string();
    let breach = events
        .iter()
        .position(|e| kind(e) == "guardrail_breached")
        .expect("a guardrail_breached event");
    let began = events
        .iter()
        .position(|e| kind(e) == "rollback_started")
        .expect("a rollback_started event");
    assert!(began > breach, "the rollback began after the breach was seen");
    let between: Vec<String> = events[breach + 1..began].iter().map(kind).collect();
    assert!(
        between.iter().all(|k| k == "abort" || k == "phase"),
        "only the abort and the phase change come between the breach and the rollback: {between:?}"
    );
    let time = |e: &serde_json::Value, field: &str| -> jiff::Timestamp {
        e[field].as_str().expect("a time").parse().expect("a timestamp")
    };
    assert!(
        time(&events[began], "at") >= time(&events[breach], "seen_at"),
        "the rollback began after the breach was seen"
    );
}

/// `gameday run FILE` recording into the scratch folder's runs, ready for
/// more arguments and to spawn.
pub fn run_command(scratch: &Scratch, file: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut cmd = gameday(scratch);
    cmd.arg("run").arg(file).arg("--runs-dir").arg(scratch.runs());
    cmd
}

/// `gameday recover RUN_ID` on the scratch folder's runs, ready to spawn.
pub fn recover_command(scratch: &Scratch, run_id: &str) -> tokio::process::Command {
    let mut cmd = gameday(scratch);
    cmd.args(["recover", run_id])
        .arg("--runs-dir")
        .arg(scratch.runs());
    cmd
}
