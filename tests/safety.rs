//! The safety policy, the gate, `plan` and approvals, end to end against moto:
//! each rule refuses what it should (exit 7, every failed rule named, nothing
//! touched in moto), and `plan` changes nothing at all.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;

use crate::support::*;

/// [`PERMISSIVE_POLICY`] with some of its lines replaced.
fn policy(s: &Scratch, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = PERMISSIVE_POLICY.to_string();
    for (old, new) in replace {
        assert!(text.contains(old), "the permissive policy has no `{old}`");
        text = text.replace(old, new);
    }
    s.write("policy.yaml", &text)
}

/// An in-place experiment on `fleet` whose fault targets the fleet's tag.
fn experiment(fleet: &Fleet, select: &str) -> String {
    format!(
        "version: 1
name: safety-test
hypothesis: the fleet rides it out
environment: {{ mode: in-place, autoscaling_group: {group} }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ tags: {{ fleet: {tag} }}, select: {select} }}
    duration: 1s
timing: {{ interval: 500ms, max_duration: 5m }}
",
        group = fleet.group,
        alarm = fleet.alarm,
        tag = fleet.tag
    )
}

/// A fleet of `n` instances, a scratch folder, an experiment on the fleet
/// selecting `select`, and [`policy`] with `replace`: (file, policy) as text.
async fn setup(n: i32, select: &str, replace: &[(&str, &str)]) -> (Clients, Fleet, Scratch, String, String) {
    let c = clients().await;
    let fleet = fleet(&c, n).await;
    let s = Scratch::new();
    let p = policy(&s, replace).to_string_lossy().into_owned();
    let file = s
        .write("exp.yaml", &experiment(&fleet, select))
        .to_string_lossy()
        .into_owned();
    (c, fleet, s, file, p)
}

async fn tag(c: &Clients, id: &str, key: &str, value: &str) {
    c.ec2
        .create_tags()
        .resources(id)
        .tags(aws_sdk_ec2::types::Tag::builder().key(key).value(value).build())
        .send()
        .await
        .expect("CreateTags");
}

/// Runs `gameday` with `args` to completion.
async fn gameday_run(s: &Scratch, args: &[&str]) -> Finished {
    let child = gameday(s)
        .args(args)
        .arg("--runs-dir")
        .arg(s.runs())
        .spawn()
        .expect("spawn gameday");
    finish(child, Duration::from_secs(60)).await
}

async fn gameday_plan(s: &Scratch, args: &[&str]) -> Finished {
    finish(
        gameday(s).arg("plan").args(args).spawn().expect("spawn gameday"),
        Duration::from_secs(60),
    )
    .await
}

fn plan_json(out: &Finished) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("plan --output json is JSON ({e}):\n{}{}", out.stdout, out.stderr))
}

/// Asserts a refused run: exit 7, `not-run` in the journal with the rules
/// named, no mutating call, every instance still running.
async fn assert_refused(
    c: &Clients,
    fleet: &Fleet,
    s: &Scratch,
    out: &Finished,
    rules: &[&str],
) -> serde_json::Value {
    assert_eq!(
        out.code, 7,
        "exit code for a refusal\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout
            .contains("verdict: not-run (refused by the safety policy"),
        "{}",
        out.stdout
    );
    for r in rules {
        assert!(
            out.stdout.contains(&format!("- {r}: ")),
            "rule {r} is named in the refusal:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("fix: "),
        "a refusal says how to fix it:\n{}",
        out.stdout
    );
    let j = s.journal();
    assert_eq!(j["verdict"], "not-run");
    assert!(
        j["actions"].as_array().expect("actions").is_empty(),
        "no mutating call was made"
    );
    let gate = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event"] == "safety_gate")
        .expect("a safety_gate event")
        .clone();
    assert_eq!(gate["admitted"], false);
    let failed: Vec<&str> = gate["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["passed"] == false)
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert_eq!(failed, rules, "exactly these rules failed");
    assert!(
        states(c, &fleet.instances).await.iter().all(|st| st == "running"),
        "nothing was stopped"
    );
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_instance_is_never_selected_even_when_its_tags_match() {
    // The policy's own tag, not the built-in one: protection comes from the policy.
    let (c, fleet, s, file, p) = setup(
        3,
        "all",
        &[(
            "protected_tags: { gameday:protected: \"true\" }",
            "protected_tags: { owner: payments }",
        )],
    )
    .await;
    let guarded = fleet.instances[1].clone();
    tag(&c, &guarded, "owner", "payments").await;

    let plan = gameday_plan(&s, &[&file, "--policy", &p, "--output", "json"]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let plan = plan_json(&plan);
    assert_eq!(
        plan["faults"][0]["targets"]["protected"],
        serde_json::json!([guarded])
    );

    let out = gameday_run(&s, &["run", &file, "--policy", &p]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = s.journal();
    let stopped: Vec<&str> = j["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["operation"] == "ec2:StopInstances")
        .flat_map(|a| {
            a["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(|r| r.as_str())
        })
        .collect();
    assert_eq!(
        stopped.len(),
        2,
        "the two unprotected instances were stopped: {stopped:?}"
    );
    assert!(
        !stopped.contains(&guarded.as_str()),
        "the protected instance was never stopped"
    );
    assert_eq!(j["targets"][0]["protected"], serde_json::json!([guarded]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_the_blast_radius_is_refused() {
    let (c, fleet, s, file, p) = setup(
        4,
        "{ count: 3 }",
        &[(
            "max_instances_per_fault: 100, max_percent_of_group: 100",
            "max_instances_per_fault: 2, max_percent_of_group: 50",
        )],
    )
    .await;
    let (file, p) = (file.as_str(), p.as_str());

    let plan = gameday_plan(&s, &[file, "--policy", p]).await;
    assert_eq!(
        plan.code, 7,
        "plan says the run would be refused\n{}{}",
        plan.stdout, plan.stderr
    );
    assert!(
        plan.stdout.contains("FAIL blast_radius.max_percent_of_group"),
        "{}",
        plan.stdout
    );

    let out = gameday_run(&s, &["run", file, "--policy", p]).await;
    assert_refused(
        &c,
        &fleet,
        &s,
        &out,
        &[
            "blast_radius.max_instances_per_fault",
            "blast_radius.max_percent_of_group",
        ],
    )
    .await;
    assert!(
        out.stdout
            .contains(&format!("{}: 3 of 4 instances (75%)", fleet.group)),
        "the group and the share are named:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("stop (3 instances)"),
        "the fault is named:\n{}",
        out.stdout
    );
    let started = &s.journal()["events"][0];
    assert_eq!(started["policy_file"], p, "the journal names the policy file");
    assert_eq!(started["policy_sha256"].as_str().map(str::len), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_outside_the_window_is_refused_and_inside_it_goes_ahead() {
    let window = "windows:\n  time_zone: Europe/Paris\n  allowed:\n    - { days: [mon, tue, wed, thu, fri], hours: \"09:00-17:00\" }\nrequire_guardrails: true";
    let (c, fleet, s, file, p) = setup(2, "{ count: 1 }", &[("require_guardrails: true", window)]).await;
    let (file, p) = (file.as_str(), p.as_str());

    // Saturday 2026-11-28, 11:00 in Paris.
    let out = gameday_run(&s, &["run", file, "--policy", p, "--now", "2026-11-28T10:00:00Z"]).await;
    assert_refused(&c, &fleet, &s, &out, &["windows.allowed"]).await;
    assert!(
        out.stdout.contains("sat 2026-11-28 11:00 (Europe/Paris)"),
        "{}",
        out.stdout
    );

    // Wednesday 2026-11-25, 10:00 in Paris, through the environment variable.
    let s2 = Scratch::new();
    let child = gameday(&s2)
        .args(["run", file, "--policy", p, "--runs-dir"])
        .arg(s2.runs())
        .env("GAMEDAY_NOW", "2026-11-25T09:00:00Z")
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(
        out.code, 0,
        "inside the window the run goes ahead\n{}{}",
        out.stdout, out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_run_without_approval_is_refused_without_a_terminal() {
    let (c, fleet, s, file, _) = setup(2, "{ count: 1 }", &[]).await;
    let file = file.as_str();

    // No policy file anywhere: the built-in default, which requires approval in place.
    let child = gameday(&s)
        .args(["run", file, "--runs-dir"])
        .arg(s.runs())
        .env_remove("GAMEDAY_POLICY")
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(60)).await;
    let j = assert_refused(&c, &fleet, &s, &out, &["approval"]).await;
    assert!(
        out.stdout.contains("there is no terminal to ask on"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("--approve <hash>"),
        "says how to approve: {}",
        out.stdout
    );
    let started = &j["events"][0];
    assert!(
        started.get("policy_file").is_none(),
        "the built-in policy has no file: {started}"
    );
    assert_eq!(
        started["policy_sha256"].as_str().map(str::len),
        Some(64),
        "the policy's hash is journaled"
    );

    // The hash `plan` prints approves exactly that plan.
    let plan = finish(
        gameday(&s)
            .args(["plan", file, "--output", "json"])
            .env_remove("GAMEDAY_POLICY")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let hash = plan_json(&plan)["hash"].as_str().expect("a hash").to_string();
    let s2 = Scratch::new();
    let child = gameday(&s2)
        .args(["run", file, "--approve", &hash, "--runs-dir"])
        .arg(s2.runs())
        .env_remove("GAMEDAY_POLICY")
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(60)).await;
    assert_eq!(
        out.code, 0,
        "an approved run goes ahead\n{}{}",
        out.stdout, out.stderr
    );
    assert_eq!(s2.journal()["verdict"], "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_for_a_stale_plan_is_refused() {
    let (c, fleet, s, file, p) = setup(
        3,
        "{ count: 1 }",
        &[("requires_approval: false", "requires_approval: true")],
    )
    .await;
    let (file, p) = (file.as_str(), p.as_str());
    let plan = gameday_plan(&s, &[file, "--policy", p, "--output", "json"]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let hash = plan_json(&plan)["hash"].as_str().expect("a hash").to_string();

    // The targets change after the review: one instance is now protected.
    tag(&c, &fleet.instances[0], "gameday:protected", "true").await;
    let out = gameday_run(&s, &["run", file, "--policy", p, "--approve", &hash]).await;
    assert_refused(&c, &fleet, &s, &out, &["approval"]).await;
    assert!(
        out.stdout
            .contains(&format!("the approval {hash} is for another plan")),
        "{}",
        out.stdout
    );
}

/// Everything `plan` could change about a fleet, as text to compare.
async fn fleet_state(c: &Clients, fleet: &Fleet) -> String {
    let mut out = Vec::new();
    let filter = Filter::builder().name("tag:fleet").values(&fleet.tag).build();
    let ec2 = c
        .ec2
        .describe_instances()
        .filters(filter)
        .send()
        .await
        .expect("DescribeInstances");
    let mut instances: Vec<String> = ec2
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let mut tags: Vec<String> = i
                .tags()
                .iter()
                .map(|t| {
                    format!(
                        "{}={}",
                        t.key().unwrap_or_default(),
                        t.value().unwrap_or_default()
                    )
                })
                .collect();
            tags.sort();
            format!(
                "{} {:?} {:?} {tags:?}",
                i.instance_id().unwrap_or_default(),
                i.state().and_then(|s| s.name()),
                i.security_groups()
            )
        })
        .collect();
    instances.sort();
    out.extend(instances);
    let asg = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&fleet.group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    for g in asg.auto_scaling_groups() {
        let mut members: Vec<String> = g
            .instances()
            .iter()
            .map(|i| {
                format!(
                    "{} {:?} {}",
                    i.instance_id().unwrap_or_default(),
                    i.lifecycle_state(),
                    i.health_status().unwrap_or_default()
                )
            })
            .collect();
        members.sort();
        out.push(format!(
            "group {:?} min {:?} max {:?} desired {:?} suspended {:?} members {members:?} subnets {:?}",
            g.auto_scaling_group_name(),
            g.min_size(),
            g.max_size(),
            g.desired_capacity(),
            g.suspended_processes()
                .iter()
                .map(|p| p.process_name().unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
            g.vpc_zone_identifier()
        ));
    }
    let alarms = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(&fleet.alarm)
        .send()
        .await
        .expect("DescribeAlarms");
    for a in alarms.metric_alarms() {
        out.push(format!(
            "alarm {:?} {:?} {:?} {:?}",
            a.alarm_name(),
            a.state_value(),
            a.state_reason(),
            a.state_updated_timestamp()
        ));
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_leaves_moto_state_unchanged() {
    let (c, fleet, s, file, _) = setup(3, "all", &[]).await;
    let file = file.as_str();
    let before = fleet_state(&c, &fleet).await;
    assert!(
        before.contains("Some(Running)") && before.contains("alarm"),
        "the snapshot sees the fleet: {before}"
    );

    let text = gameday_plan(&s, &[file]).await;
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    for id in &fleet.instances {
        assert!(
            text.stdout.contains(id.as_str()),
            "the plan lists target {id}:\n{}",
            text.stdout
        );
    }
    assert!(
        text.stdout.contains("us-east-1a"),
        "with its AZ:\n{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("held 1s, then rolled back"),
        "the timeline is shown:\n{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "alarm `{}` not in ALARM: alarm `{}` exists and is OK",
            fleet.alarm, fleet.alarm
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("pass blast_radius.max_instances_per_fault"),
        "each rule is shown:\n{}",
        text.stdout
    );
    let json = plan_json(&gameday_plan(&s, &[file, "--output", "json"]).await);
    assert_eq!(json["admitted"], true);
    assert_eq!(
        json["faults"][0]["targets"]["selected"].as_array().map(Vec::len),
        Some(3)
    );

    assert_eq!(
        fleet_state(&c, &fleet).await,
        before,
        "plan made no change to instances, tags, the group or the alarm"
    );
    assert!(!s.runs().exists(), "plan records no run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_plan_describes_the_clone_and_checks_the_blast_radius_against_its_size() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let p = policy(&s, &[("max_percent_of_group: 100", "max_percent_of_group: 50")]);
    let text = format!(
        "version: 1
name: parallel
hypothesis: the copy rides it out
environment: {{ mode: parallel, autoscaling_group: {group}, capacity: 4 }}
guardrails: [{{ alarm: {alarm} }}]
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {{ percent: 75 }} }}
",
        group = fleet.group,
        alarm = fleet.alarm
    );
    let file = s.write("exp.yaml", &text);
    let out = gameday_plan(
        &s,
        &[
            file.to_str().expect("utf-8"),
            "--policy",
            p.to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    )
    .await;
    let json = plan_json(&out);
    assert_eq!(json["environment"]["source"], fleet.group.as_str());
    assert_eq!(json["environment"]["capacity"], 4);
    assert_eq!(
        json["environment"]["name"],
        format!("gd-<run-id>-{}", fleet.group)
    );
    assert_eq!(json["faults"][0]["targets"]["kind"], "clone");
    assert_eq!(
        json["faults"][0]["targets"]["count"], 3,
        "75% of the clone's 4 instances"
    );
    assert!(
        json["faults"][0]["targets"].get("selected").is_none(),
        "no ids for instances that do not exist yet"
    );
    let failed: Vec<&str> = json["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["passed"] == false)
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert_eq!(failed, ["blast_radius.max_percent_of_group"]);
    assert_eq!(
        out.code, 7,
        "the policy would refuse it: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        json["unsupported"].as_array().is_none_or(|u| u.is_empty()),
        "parallel mode runs: {json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_show_prints_the_built_in_default_and_rejects_bad_files_with_positions() {
    let s = Scratch::new();
    let out = finish(
        gameday(&s)
            .args(["policy", "show"])
            .env_remove("GAMEDAY_POLICY")
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("# policy: the built-in default policy\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("requires_approval: true"), "{}", out.stdout);

    let bad = s.write(
        "bad.yaml",
        &PERMISSIVE_POLICY.replace("regions: any", "region: any"),
    );
    let out = finish(
        gameday(&s)
            .args(["policy", "show", "--policy"])
            .arg(&bad)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "bad.yaml:2:1: error: unknown key `region` in the policy\n  help: did you mean `regions`?"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("bad.yaml:1:1: error: the policy: missing required key `regions`"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_lists_every_failed_rule_and_the_account_comes_from_settings() {
    let (_c, _fleet, s, file, p) = setup(
        2,
        "{ count: 1 }",
        &[
            (
                "regions: any",
                "regions: [eu-west-1]\naccounts: [\"111122223333\"]",
            ),
            ("in_place: { allowed: true", "in_place: { allowed: false"),
            ("max_experiment_duration: 1h", "max_experiment_duration: 1m"),
        ],
    )
    .await;
    let failed_rules = |out: &Finished| -> Vec<String> {
        plan_json(out)["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| r["passed"] == false)
            .filter_map(|r| r["rule"].as_str().map(str::to_string))
            .collect()
    };
    let out = gameday_plan(&s, &[&file, "--policy", &p, "--output", "json"]).await;
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        failed_rules(&out),
        [
            "regions",
            "accounts",
            "in_place.allowed",
            "max_experiment_duration"
        ]
    );

    // The account is known from settings, never from an AWS call.
    let out = gameday_plan(
        &s,
        &[
            &file,
            "--policy",
            &p,
            "--output",
            "json",
            "--account",
            "111122223333",
        ],
    )
    .await;
    assert_eq!(
        failed_rules(&out),
        ["regions", "in_place.allowed", "max_experiment_duration"]
    );
    let child = gameday(&s)
        .args(["plan", &file, "--policy", &p, "--output", "json"])
        .env("AWS_ACCOUNT_ID", "999999999999")
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(60)).await;
    let accounts = plan_json(&out)["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"] == "accounts")
        .cloned()
        .expect("the accounts rule");
    assert_eq!(
        accounts["resources"],
        serde_json::json!(["999999999999"]),
        "{accounts}"
    );
}

/// Runs `run FILE` on a terminal under the built-in policy and types `answer`.
async fn confirm_on_terminal(s: &Scratch, file: &str, answer: &str) -> Finished {
    use tokio::io::AsyncWriteExt;
    let args = format!("run {file} --runs-dir {}", s.runs().display());
    let mut child = gameday_on_terminal(s, &args)
        .env_remove("GAMEDAY_POLICY")
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .expect("type the answer");
    // Keep the terminal open until gameday has read the answer and finished.
    let out = finish(child, Duration::from_secs(60)).await;
    drop(stdin);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_an_in_place_run_asks_for_the_experiment_name() {
    let (c, fleet, s, file, _) = setup(2, "{ count: 1 }", &[]).await;
    let out = confirm_on_terminal(&s, &file, "not-the-name").await;
    assert_refused(&c, &fleet, &s, &out, &["approval"]).await;
    assert!(
        out.stdout
            .contains("Type the experiment's name (`safety-test`) to approve"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("it was not confirmed on the terminal"),
        "{}",
        out.stdout
    );

    let s2 = Scratch::new();
    let out = confirm_on_terminal(&s2, &file, "safety-test").await;
    assert_eq!(out.code, 0, "confirmed, the run goes ahead\n{}", out.stdout);
    let target = s2.journal()["targets"][0]["selected"][0]["id"]
        .as_str()
        .expect("a target")
        .to_string();
    assert!(
        out.stdout.contains(&format!("It will act on: {target}")),
        "the prompt shows the targets:\n{}",
        out.stdout
    );
}
