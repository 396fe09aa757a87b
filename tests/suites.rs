//! Suites end to end against moto: a passing and an aborting experiment give
//! NO-GO with its exit code and a scorecard in every format (the JUnit parsed
//! as XML, the HTML rendered by a browser); one hash approves a whole suite
//! and a stale one is refused before anything is touched; a suite's
//! mistakes are reported at their line and column.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// An in-place experiment named `name` on `fleet`, stopping one instance for `duration`.
fn experiment(fleet: &Fleet, name: &str, duration: &str) -> String {
    stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", duration)
        .replace("name: test-stop", &format!("name: {name}"))
}

fn suite_command(s: &Scratch, verb: &str, file: &Path) -> tokio::process::Command {
    let mut cmd = gameday(s);
    cmd.args(["suite", verb]).arg(file);
    if verb == "run" {
        cmd.arg("--runs-dir").arg(s.runs());
    }
    cmd
}

/// The suite run folders of `s`.
fn suite_dirs(s: &Scratch) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(s.runs()) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("suite-"))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Waits (up to two minutes: the suite runs another experiment first) until
/// one of `ids` is stopped.
async fn wait_stopped(c: &Clients, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !states(c, ids).await.iter().any(|s| s == "stopped") {
        assert!(
            Instant::now() < deadline,
            "no instance of {ids:?} was stopped within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An XML element: its name, attributes and children, from `xmlparser`'s tokens.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("<{}> has no attribute {name}", self.name))
    }

    fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }
}

/// Parses an XML document into its root element; panics on malformed XML.
fn parse_xml(text: &str) -> Element {
    use xmlparser::{ElementEnd, Token};
    let mut stack: Vec<Element> = vec![Element::default()];
    for token in xmlparser::Tokenizer::from(text) {
        match token.expect("well-formed XML") {
            Token::ElementStart { local, .. } => stack.push(Element {
                name: local.to_string(),
                ..Element::default()
            }),
            Token::Attribute { local, value, .. } => stack
                .last_mut()
                .expect("an open element")
                .attributes
                .push((local.to_string(), unescape(value.as_str()))),
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Close(..) | ElementEnd::Empty => {
                    let done = stack.pop().expect("an open element");
                    stack.last_mut().expect("a parent").children.push(done);
                }
            },
            Token::Text { text } => stack.last_mut().expect("an element").text += &unescape(text.as_str()),
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "every element is closed");
    stack
        .pop()
        .expect("the document")
        .children
        .pop()
        .expect("a root element")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_and_an_aborting_experiment_give_no_go_with_a_scorecard_in_every_format() {
    let c = clients().await;
    let (calm, tripping) = (fleet(&c, 2).await, fleet(&c, 2).await);
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("experiments")).expect("experiments folder");
    s.write("experiments/calm.yaml", &experiment(&calm, "calm-stop", "2s"));
    s.write(
        "experiments/tripping.yaml",
        &experiment(&tripping, "tripping-stop", "5m"),
    );
    std::fs::create_dir_all(s.path().join("suites")).expect("suites folder");
    let file = s.write(
        "suites/ready.yaml",
        "version: 1
name: ready-<check>
experiments:
  - path: ../experiments/calm.yaml
  - { path: ../experiments/trip*.yaml, role: blocking }
stop_on: never
",
    );
    // The name must be tag-safe: the decoder says where it is not.
    let out = finish(
        suite_command(&s, "run", &file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 1, "an invalid suite\n{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("suites/ready.yaml:2:7: error: name `ready-<check>`"),
        "{}",
        out.stderr
    );
    assert!(suite_dirs(&s).is_empty() && !s.runs().exists(), "nothing ran");
    let text = std::fs::read_to_string(&file)
        .expect("suite")
        .replace("ready-<check>", "ready");
    std::fs::write(&file, text).expect("fix the suite");

    let child = suite_command(&s, "run", &file).spawn().expect("spawn");
    wait_stopped(&c, &tripping.instances).await;
    set_alarm(&c, &tripping.alarm, "ALARM").await;
    let out = finish(child, Duration::from_secs(240)).await;
    assert_eq!(out.code, 8, "NO-GO\n{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("suite: NO-GO"), "{}", out.stdout);
    for f in [&calm, &tripping] {
        assert!(
            states(&c, &f.instances).await.iter().all(|s| s == "running"),
            "every instance runs again"
        );
    }

    let dirs = suite_dirs(&s);
    assert_eq!(dirs.len(), 1, "one suite run folder");
    let dir = &dirs[0];
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("suite.json")).expect("suite.json"))
            .expect("JSON");
    assert_eq!(card["go"], false);
    assert_eq!(card["score"], 50, "one of two blocking experiments passed");
    let rows = card["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["experiment"].as_str(), rows[0]["verdict"].as_str()),
        (Some("calm-stop"), Some("passed"))
    );
    assert_eq!(
        (rows[1]["experiment"].as_str(), rows[1]["verdict"].as_str()),
        (Some("tripping-stop"), Some("aborted"))
    );
    assert!(
        rows[1]["abort_reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&tripping.alarm),
        "the abort reason names the guardrail: {}",
        rows[1]
    );
    for r in rows {
        let report = dir.join(r["report"].as_str().expect("a report link"));
        assert!(
            report.is_file(),
            "the link leads to the run's report: {}",
            report.display()
        );
    }

    let junit = parse_xml(&std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml"));
    assert_eq!(junit.name, "testsuites");
    let suites = junit.all("testsuite");
    assert_eq!(suites.len(), 1, "one test suite");
    assert_eq!(suites[0].attr("name"), "ready");
    let cases = suites[0].all("testcase");
    assert_eq!(cases.len(), 2, "one test case per experiment");
    assert_eq!(
        (cases[0].attr("name"), cases[0].attr("classname")),
        ("calm-stop", "ready.blocking")
    );
    assert!(
        cases[0].children.is_empty(),
        "the passing experiment is a passing case"
    );
    assert_eq!(cases[1].attr("name"), "tripping-stop");
    let failure = cases[1].all("failure");
    assert_eq!(failure.len(), 1, "the aborted blocking experiment is a failure");
    assert!(
        failure[0].attr("message").contains("aborted"),
        "{}",
        failure[0].attr("message")
    );
    assert_eq!((suites[0].attr("tests"), suites[0].attr("failures")), ("2", "1"));
    let props = suites[0].all("properties");
    let decision = props[0]
        .all("property")
        .into_iter()
        .find(|p| p.attr("name") == "decision")
        .map(|p| p.attr("value").to_string());
    assert_eq!(decision.as_deref(), Some("NO-GO"));

    let md = std::fs::read_to_string(dir.join("scorecard.md")).expect("scorecard.md");
    assert!(md.starts_with("# Readiness scorecard `ready`: NO-GO"), "{md}");
    assert!(
        md.contains("**Readiness: 50 / 100**") && md.contains("readiness = 100 ×"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.join("scorecard.html")).expect("scorecard.html");
    assert!(
        !html.contains("<script") && !html.contains("http"),
        "self-contained"
    );

    let Some(browser) = crate::report::chromium() else {
        let why = std::env::var("GAMEDAY_SKIP_BROWSER_TEST").unwrap_or_else(|_| {
            panic!("chromium not found: run the tests with scripts/test, which installs it, or set GAMEDAY_CHROMIUM (or GAMEDAY_SKIP_BROWSER_TEST=reason)")
        });
        eprintln!("\n!!!!!!!! SKIPPED the browser test of scorecard.html: {why} !!!!!!!!\n");
        return;
    };
    let profile = tempfile::tempdir().expect("a fresh browser profile");
    let url = format!("file://{}", dir.join("scorecard.html").display());
    let dom = crate::report::headless(&browser, profile.path(), &["--dump-dom".to_string(), url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<span class=\"badge\">NO-GO</span>") && dom.contains("id=\"experiments\""),
        "the rendered page states the decision and lists the experiments: {}",
        &dom[..dom.len().min(2000)]
    );
    assert!(
        dom.contains("tripping-stop") && dom.contains("50 / 100"),
        "rows and score"
    );
}

/// A policy that wants approval for in-place runs (as the repository's does).
const APPROVING_POLICY: &str = "\
version: 1
regions: any
actions: [ec2:stop-instances]
protected_tags: { gameday:protected: \"true\" }
blast_radius: { max_instances_per_fault: 100, max_percent_of_group: 100 }
in_place: { allowed: true, requires_approval: true, allow_terminate: false }
require_guardrails: true
max_experiment_duration: 1h
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hash_approves_the_whole_suite_and_a_stale_one_touches_nothing() {
    let c = clients().await;
    let (a, b) = (fleet(&c, 2).await, fleet(&c, 2).await);
    let s = Scratch::new();
    let policy = s.write("approving-policy.yaml", APPROVING_POLICY);
    s.write("a.yaml", &experiment(&a, "first", "1s"));
    s.write("b.yaml", &experiment(&b, "second", "1s"));
    // On the first one's group: with room for two at once, it must still wait.
    s.write("c.yaml", &experiment(&a, "third", "1s"));
    let file = s.write(
        "ready.yaml",
        "version: 1\nname: ready\nexperiments: [a.yaml, { path: b.yaml, role: advisory }, c.yaml]\nconcurrency: 2\n",
    );
    let with_policy = |mut cmd: tokio::process::Command| {
        cmd.arg("--policy").arg(&policy);
        cmd
    };

    let out = finish(
        with_policy(suite_command(&s, "plan", &file))
            .spawn()
            .expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        out.code, 0,
        "both may run (approval aside)\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("=== 1 of 3: `first` (blocking)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("=== 2 of 3: `second` (advisory)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("`first` and `third` share group:{}", a.group)),
        "{}",
        out.stdout
    );
    let mut json = with_policy(suite_command(&s, "plan", &file));
    json.args(["--output", "json"]);
    let out = finish(json.spawn().expect("spawn"), Duration::from_secs(60)).await;
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON plan");
    let hash = plan["hash"].as_str().expect("a suite hash").to_string();
    assert!(out.stdout.contains("\"admitted\": true"), "{}", out.stdout);
    assert_eq!(plan["experiments"].as_array().map(Vec::len), Some(3));

    // No approval, then a stale one: refused, nothing touched.
    let before = (group_state(&c, &a.group).await, group_state(&c, &b.group).await);
    for extra in [vec![], vec!["--approve", "0123456789abcdef"]] {
        let mut cmd = with_policy(suite_command(&s, "run", &file));
        cmd.args(&extra);
        let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(60)).await;
        assert_eq!(out.code, 7, "refused\n{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("the suite is refused, nothing was touched"),
            "{}",
            out.stderr
        );
        assert!(!s.runs().exists(), "no run started");
    }
    assert!(
        !std::fs::read_to_string(s.path().join("ready.yaml"))
            .unwrap_or_default()
            .is_empty()
            && before == (group_state(&c, &a.group).await, group_state(&c, &b.group).await),
        "the groups are as they were"
    );

    let mut cmd = with_policy(suite_command(&s, "run", &file));
    cmd.args(["--approve", &hash]);
    let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(180)).await;
    assert_eq!(out.code, 0, "GO\n{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("suite: GO (readiness 100/100)"),
        "{}",
        out.stdout
    );
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(suite_dirs(&s)[0].join("suite.json")).expect("suite.json"),
    )
    .expect("JSON");
    assert_eq!(card["plan_hash"], hash);
    let rows = card["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    let span = |r: &serde_json::Value| {
        let j = s.journal_of(&s.runs().join(r["run_id"].as_str().expect("run id")));
        let t = |k: &str| -> jiff::Timestamp { j[k].as_str().expect(k).parse().expect("a time") };
        (t("started_at"), t("finished_at"))
    };
    let (first, third) = (span(&rows[0]), span(&rows[2]));
    assert!(
        third.0 >= first.1 || first.0 >= third.1,
        "two experiments on one group never overlap: {first:?} and {third:?}"
    );
    for r in rows {
        assert_eq!(r["verdict"], "passed", "{r}");
        let journal = s.journal_of(&s.runs().join(r["run_id"].as_str().expect("run id")));
        let gate = journal["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["event"] == "safety_gate")
            .cloned()
            .expect("a safety gate");
        assert!(
            gate.to_string().contains("approved for plan"),
            "each run was approved for its own plan: {gate}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suites_mistakes_are_reported_at_their_line_and_column() {
    let s = Scratch::new();
    s.write("good.yaml", &stop_experiment("g", "a", "all", "1s"));
    s.write("bad.yaml", "version: 1\nname: bad\nhypothesis: x\nfaults: []\n");
    let file = s.write(
        "suite.yaml",
        "version: 1\nname: s\nexperiments:\n  - good.yaml\n  - { path: missing-*.yaml, role: advisry }\nstop_on: failures\n",
    );
    let out = finish(
        gameday(&s).arg("validate").arg(&file).spawn().expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for want in [
        "suite.yaml:5:13: error: experiments[2].path `missing-*.yaml`: the pattern matches no file",
        "suite.yaml:5:35: error: experiments[2].role: unknown value `advisry`\n  help: did you mean `advisory`?",
        "suite.yaml:6:10: error: stop_on: unknown value `failures`\n  help: did you mean `failure`?",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    // A valid suite whose experiment is not: the experiment's own file and position.
    let file = s.write(
        "suite.yaml",
        "version: 1\nname: s\nexperiments: [good.yaml, bad.yaml]\n",
    );
    let out = finish(
        gameday(&s)
            .args(["suite", "plan"])
            .arg(&file)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("bad.yaml:1:1: error: the experiment has no `guardrails`"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outcome_stop_on_names_no_further_experiment_starts() {
    let c = clients().await;
    let f = fleet(&c, 2).await;
    // A guardrail already in ALARM: the first experiment is refused at
    // preflight (not-run, nothing injected), which `stop_on: failure` names.
    set_alarm(&c, &f.alarm, "ALARM").await;
    let s = Scratch::new();
    s.write("a.yaml", &experiment(&f, "first", "1s"));
    s.write("b.yaml", &experiment(&f, "second", "1s"));
    let file = s.write(
        "ready.yaml",
        "version: 1\nname: ready\nexperiments: [a.yaml, { path: b.yaml, role: advisory }]\nstop_on: failure\n",
    );
    let before = group_state(&c, &f.group).await;
    let out = finish(
        suite_command(&s, "run", &file).spawn().expect("spawn"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, 8, "NO-GO\n{}{}", out.stdout, out.stderr);
    assert_eq!(before, group_state(&c, &f.group).await, "nothing was touched");
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(suite_dirs(&s)[0].join("suite.json")).expect("suite.json"),
    )
    .expect("JSON");
    let rows = card["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["verdict"], "not-run", "{}", rows[0]);
    assert!(
        rows[1]["verdict"].is_null(),
        "the second never started: {}",
        rows[1]
    );
    assert!(
        rows[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("stop_on: failure: `first` ended not-run"),
        "{}",
        rows[1]
    );
    assert_eq!(
        std::fs::read_dir(s.runs()).expect("runs").count(),
        2,
        "one experiment's run folder and the suite's"
    );
    let junit = parse_xml(&std::fs::read_to_string(suite_dirs(&s)[0].join("junit.xml")).expect("junit.xml"));
    let cases = junit.all("testsuite")[0].all("testcase");
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].all("failure").len(), 1, "a blocking not-run fails");
    let skipped = cases[1].all("skipped");
    assert_eq!(
        skipped.len(),
        1,
        "an advisory experiment that never started is skipped"
    );
    assert!(
        skipped[0].attr("message").contains("not started"),
        "{}",
        skipped[0].attr("message")
    );
}
