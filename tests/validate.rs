//! Validation: every error class is reported with file, line and column, all
//! errors in a file at once, and the CLI's exit codes mean what the README says.

use std::path::Path;
use std::process::Command;

use gameday::experiment;

fn errors(text: &str) -> String {
    match experiment::load_str(Path::new("exp.yaml"), text) {
        Ok(_) => panic!("expected the experiment to be rejected"),
        Err(e) => e.to_string(),
    }
}

const VALID: &str = "\
version: 1
name: ok
hypothesis: it holds
environment: { mode: in-place, autoscaling_group: web }
guardrails:
  - alarm: web-5xx
faults:
  - name: stop
    action: ec2:stop-instances
    duration: 30s
";

#[test]
fn a_valid_file_loads() {
    let exp = experiment::load_str(Path::new("exp.yaml"), VALID).expect("valid");
    assert_eq!(exp.faults[0].duration, Some(std::time::Duration::from_secs(30)));
}

#[test]
fn every_error_in_a_file_is_reported_with_its_position() {
    let text = "\
version: 1
name: many-problems
hypothesis: [not, text]
enviroment: { mode: in-place }
timing:
  interval: 5 seconds
faults:
  - name: stop
    action: ec2:stop-instance
    target: { select: { percent: 150 } }
    duraton: 5m
  - name: suspend
    action: ec2:stop-instances
    start_after: [stp]
";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn start_after_cycles_are_named() {
    let text = "\
version: 1
name: cycle
hypothesis: h
environment: { mode: in-place, autoscaling_group: web }
guardrails: [{ alarm: a }]
faults:
  - { name: a, action: ec2:stop-instances, start_after: [c] }
  - { name: b, action: ec2:stop-instances, start_after: [a] }
  - { name: c, action: ec2:stop-instances, start_after: [b] }
";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn a_fault_cannot_take_the_environments_name() {
    let text = VALID.replace("name: stop", "name: environment");
    assert_eq!(
        errors(&text),
        "exp.yaml:8:11: error: fault name `environment` is reserved\n  \
         help: the run's own setup and teardown are journaled under it; choose another name"
    );
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let text = "version: 1\nname: x\nfaults:\n  - name: [unclosed\n";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn wrong_values_say_what_was_expected() {
    let text = "\
version: 2
name: has space
hypothesis: h
environment: { mode: inplace, autoscaling_group: web, ready_timeout: 10 }
guardrails:
  - metric: { namespace: App, name: Errors, stat: p999x, period: 45 }
    threshold: 50
  - alarm: web-${asgg}
  - metric: { namespace: App, name: Latency }
    expect: < 3
steady_state:
  - asg_healthy: { at_least: 3, percent: 50 }
faults:
  - name: stop
    action: ec2:stop-instances
    params: { forse: true }
    target: { ids: [web-1], select: { count: 0 } }
  - name: stop
    action: autoscaling:suspend-processes
    params: { processes: [Lanch, Terminate] }
";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn an_experiment_needs_guardrails_and_faults() {
    let text = "version: 1\nname: bare\nhypothesis: h\nenvironment: { mode: in-place, autoscaling_group: web }\nfaults: []\n";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn parallel_mode_needs_a_group_and_untargeted_faults_need_one_in_place() {
    let parallel = "version: 1\nname: p\nhypothesis: h\nguardrails: [{ alarm: a }]\nfaults: [{ name: s, action: ec2:stop-instances }]\n";
    assert!(errors(parallel).contains("parallel mode (the default) needs `autoscaling_group`"));
    let in_place = "version: 1\nname: p\nhypothesis: h\nenvironment: { mode: in-place }\nguardrails: [{ alarm: a }]\nfaults: [{ name: s, action: ec2:stop-instances }]\n";
    assert!(
        errors(in_place).contains("exp.yaml:6:10: error: fault `s` has no target"),
        "{}",
        errors(in_place)
    );
}

#[test]
fn every_shipped_experiment_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("experiments/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2, "experiments/ should hold examples, found {n}");
}

fn validate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gameday"))
        .arg("validate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run gameday");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_exit_codes() {
    let (code, stdout, _) = validate(&["experiments/"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("ok: experiments/shop-web-lose-a-third.yaml"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, VALID.replace("duration: 30s", "duration: 30 sec")).expect("write");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, VALID).expect("write");
    let (code, stdout, stderr) = validate(&[dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("bad.yaml:10:15: error: faults[1].duration: malformed duration `30 sec`"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 2 file(s) invalid"), "{stderr}");
    assert!(
        stdout.contains("good.yml"),
        "the valid file is still checked and reported: {stdout}"
    );

    let (code, _, stderr) = validate(&["no/such/file.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no/such/file.yaml: no such file or folder"),
        "{stderr}"
    );

    let (code, _, _) = validate(&[]);
    assert_eq!(code, 2, "a missing argument is a usage error");
}

#[test]
fn every_probe_kind_loads() {
    let text = "\
version: 1
name: probes
hypothesis: it holds
environment: { autoscaling_group: web }
steady_state:
  - name: latency
    metric: { namespace: App, name: Latency, dimensions: { AutoScalingGroupName: \"${asg}\" }, stat: p99, period: 60 }
    expect: \"< baseline * 1.2\"
    compare: { max_increase: 20%, significance: 0.01 }
  - name: error rate
    metric:
      expression: 100 * errors / requests
      metrics:
        errors: { namespace: App, name: Errors, stat: Sum, period: 60 }
        requests: { namespace: App, name: RequestCount, stat: Sum, period: 60 }
      period: 60
    expect: within 10% of baseline
  - asg_healthy: { at_least: 2 }
    during: recover
  - alarm_fires: { alarm: web-page, within: 3m, clears_within: 10m }
guardrails:
  - alarm: web-5xx
    insufficient_data: allow
  - metric: { namespace: App, name: Errors, stat: Sum, period: 10 }
    threshold: \"> 50\"
    datapoints: 2
    missing: breach
    missing_after: 1m
  - metric: { namespace: App, name: Throttles, stat: Sum, period: 60 }
    threshold: \"> 0\"
    missing: ok
  - metric: { namespace: App, name: Retries, stat: Sum, period: 60 }
    threshold: \"> 5\"
    missing: ignore
faults:
  - name: stop
    action: ec2:stop-instances
    duration: 30s
timing: { baseline: 1m, recovery: 5m, interval: 5s, max_abort_delay: 2m }
";
    let exp = experiment::load_str(Path::new("exp.yaml"), text).expect("valid");
    assert_eq!(exp.steady_state.len(), 4);
    assert_eq!(
        exp.timing.max_abort_delay,
        Some(std::time::Duration::from_secs(120))
    );
}

#[test]
fn observation_keys_say_what_was_expected() {
    let text = "\
version: 1
name: bad-probes
hypothesis: h
environment: { mode: in-place, autoscaling_group: web }
steady_state:
  - metric: { namespace: App, name: Latency, dimensions: { AutoScalingGroupName: \"${asg}\" } }
    expect: \"< baseline / 2\"
    compare: { max_increase: lots }
    during: sometimes
  - metric: { namespace: App, name: Latency, dimensions: { AutoScalingGroupName: \"${asg}\" } }
    expect: \"< 3\"
    compare: { max_increase: 20% }
  - metric:
      expression: m1 / m2
      metrics: { m1: { namespace: App, name: Errors }, M2: { namespace: App, name: Requests } }
    expect: \"< 1\"
  - alarm_fires: { alarm: page, within: soon }
    during: recover
guardrails:
  - alarm: web-5xx
    insufficient_data: maybe
  - alarm_fires: { alarm: page, within: 1m, clears_within: 1m }
faults:
  - name: stop
    action: ec2:stop-instances
timing: { max_abort_delay: fast }
";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn a_file_that_is_not_utf8_is_rejected_at_the_first_invalid_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Line 3 is `hypothesis: it h\xffolds`: the byte after 16 characters.
    let mut bytes = VALID.as_bytes().to_vec();
    let at = VALID.find("it holds").expect("hypothesis") + 4;
    bytes.insert(at, 0xff);
    let bad = dir.path().join("latin.yaml");
    std::fs::write(&bad, &bytes).expect("write");
    let (code, _, stderr) = validate(&[bad.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "an invalid file, not an unreadable one: {stderr}");
    assert!(
        stderr.contains(
            "latin.yaml:3:17: error: the file is not UTF-8 text: invalid byte 0xff at line 3, column 17"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("stream did not contain"), "{stderr}");

    // A character cut at the end of the file: where it starts.
    let cut = dir.path().join("cut.yaml");
    std::fs::write(
        &cut,
        [VALID.as_bytes(), "# é".as_bytes().split_last().expect("é").1].concat(),
    )
    .expect("write");
    let (code, _, stderr) = validate(&[cut.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "cut.yaml:11:3: error: the file is not UTF-8 text: an incomplete character at the end of the file"
        ),
        "{stderr}"
    );

    // The policy is read the same way.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, b"version: 1\nregions: [eu-\xc3\x28west-1]\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_gameday"))
        .args(["policy", "show", "--policy"])
        .arg(&policy)
        .env_remove("GAMEDAY_POLICY")
        .output()
        .expect("run gameday");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "policy.yaml:2:14: error: the file is not UTF-8 text: invalid byte 0xc3 at line 2, column 14"
        ),
        "{stderr}"
    );
}

#[test]
fn the_missing_data_rule_says_what_was_expected() {
    let text = "\
version: 1
name: bad-missing
hypothesis: h
environment: { mode: in-place, autoscaling_group: web }
steady_state:
  - metric: { namespace: App, name: Latency, period: 60 }
    expect: \"< 3\"
    missing: deviate
guardrails:
  - metric: { namespace: App, name: Errors, stat: Sum, period: 10 }
    threshold: \"> 5\"
    missing_after: 15s
  - metric: { namespace: App, name: Errors, stat: Sum, period: 10 }
    threshold: \"> 5\"
    missing: ignore
    missing_after: 1m
  - alarm: web-5xx
    missing: ok
faults:
  - name: stop
    action: ec2:stop-instances
";
    insta::assert_snapshot!(errors(text));
}

#[test]
fn a_tolerance_relative_to_the_control_needs_a_control() {
    let text = "\
version: 1
name: bad-control
hypothesis: h
environment: { mode: in-place, autoscaling_group: web }
steady_state:
  - name: latency
    metric: { namespace: App, name: Latency, dimensions: { AutoScalingGroupName: \"${asg}\" }, period: 5 }
    expect: \"<= control * 1.2\"
guardrails:
  - name: errors
    metric: { namespace: App, name: Errors, stat: Sum, period: 5 }
    threshold: \"> control + 20\"
faults:
  - name: stop
    action: ec2:stop-instances
";
    let e = errors(text);
    assert!(
        e.contains("exp.yaml:6:9: error: `latency`: `<= control * 1.2` needs a control, and only parallel mode has one"),
        "{e}"
    );
    assert!(
        e.contains(
            "exp.yaml:10:9: error: `errors`: `> control + 20` needs a control, and only parallel mode has one"
        ),
        "{e}"
    );

    // In parallel mode, the metric must name the experiment, so that its control exists.
    let parallel = text.replace("mode: in-place", "mode: parallel");
    let e = errors(&parallel);
    assert!(!e.contains("`latency`"), "`${{asg}}` has a control: {e}");
    assert!(
        e.contains("exp.yaml:10:9: error: `errors`: `> control + 20` needs a metric of the experiment: a dimension with `${asg}` or `${experiment_target_group}`"),
        "{e}"
    );
    let fixed = parallel.replace(
        "name: Errors, stat: Sum",
        "name: Errors, dimensions: { AutoScalingGroupName: \"${asg}\" }, stat: Sum",
    );
    let exp = experiment::load_str(Path::new("exp.yaml"), &fixed).expect("valid");
    let experiment::ProbeKind::Metric { tolerance, .. } = &exp.guardrails[0].kind else {
        panic!("a metric guardrail")
    };
    assert!(tolerance.against_control());

    // Malformed, with the position of the tolerance.
    let bad = fixed.replace("\"> control + 20\"", "\"> 2 * control\"");
    assert!(
        errors(&bad).contains("exp.yaml:12:16: error: guardrails[1].threshold: `> 2 * control`: expected `> control`, optionally followed by `* K`, `+ K` or `- K`"),
        "{}",
        errors(&bad)
    );
    let both = fixed.replace("\"> control + 20\"", "\"> control + baseline\"");
    assert!(
        errors(&both).contains("exp.yaml:12:16: error: guardrails[1].threshold: `> control + baseline`: relative to the baseline or to the control, not both"),
        "{}",
        errors(&both)
    );
}

/// A folder mounted from a Kubernetes ConfigMap (deploy/kubernetes): each
/// file at the top is a link into `..data`, a link to a `..<timestamp>`
/// folder holding the files. Every experiment is read once, not three times.
#[test]
fn an_experiments_folder_mounted_from_a_configmap_is_read_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("experiments");
    let stamped = dir.join("..2026_12_02_10_00_00.000000001");
    std::fs::create_dir_all(&stamped).expect("folder");
    std::fs::write(stamped.join("web.yaml"), VALID).expect("write");
    std::os::unix::fs::symlink("..2026_12_02_10_00_00.000000001", dir.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/web.yaml", dir.join("web.yaml")).expect("link");

    let (code, stdout, stderr) = validate(&[dir.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let ok: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok: ")).collect();
    assert_eq!(ok.len(), 1, "read once: {stdout}");
    assert!(
        ok[0].starts_with(&format!("ok: {}/web.yaml ", dir.display())),
        "{stdout}"
    );
}

/// `gameday schema`: what an editor is pointed at. The printed schema and
/// the files `--write` makes are the checked-in ones (schema/); without a
/// format or `--write` it is a usage error.
#[test]
fn the_schema_command_prints_and_writes_the_checked_in_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gameday"))
            .arg("schema")
            .args(args)
            .current_dir(root)
            .output()
            .expect("run gameday")
    };
    let out = schema(&["experiment"]);
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(root.join("schema/experiment.schema.json")).expect("checked in");
    assert_eq!(String::from_utf8_lossy(&out.stdout), checked_in);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(printed["properties"]["faults"].is_object(), "{printed}");

    let dir = tempfile::tempdir().expect("a temp dir");
    let out = schema(&["--write", dir.path().to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["experiment", "policy", "suite"] {
        let file = format!("{name}.schema.json");
        let written = std::fs::read_to_string(dir.path().join(&file)).expect("written");
        let checked_in = std::fs::read_to_string(root.join("schema").join(&file)).expect("checked in");
        assert!(
            written == checked_in,
            "{file}: regenerate with `cargo run -- schema --write schema/`"
        );
    }

    assert_eq!(schema(&[]).status.code(), Some(2));
}
