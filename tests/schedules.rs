//! Schedules against moto: `run-due` runs a due slot once however it is
//! triggered, a freeze day defers a slot, `due` says why, the catalog shows
//! what ran and renders in a browser, and the decoder points at mistakes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{chromium, headless};
use crate::support::*;

/// Tuesdays at 10:00 in Paris: 09:00Z in winter.
const TUESDAYS: &str = "schedule:\n  cron: \"0 10 * * TUE\"\n  timezone: Europe/Paris\n";
/// A Tuesday, half an hour after the slot of 2026-11-24 (09:00Z).
const SLOT_DAY: &str = "2026-11-24T09:30:00Z";

/// The tests' in-place stop experiment with a schedule.
fn scheduled(fleet: &Fleet) -> String {
    format!(
        "{}{TUESDAYS}",
        stop_experiment(&fleet.group, &fleet.alarm, "{ count: 1 }", "1s")
    )
}

/// `gameday ARGS` in the scratch folder, on its runs folder, at `now` (GAMEDAY_NOW).
fn at(s: &Scratch, now: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = gameday(s);
    cmd.args(args)
        .arg("--runs-dir")
        .arg(s.runs())
        .env("GAMEDAY_NOW", now);
    cmd
}

async fn output(cmd: &mut tokio::process::Command) -> Finished {
    finish(cmd.spawn().expect("spawn gameday"), Duration::from_secs(120)).await
}

/// The run folders of the scratch folder (not the slot claims, not the catalog).
fn runs(s: &Scratch) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(s.runs()) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Every claim file of `experiment`, parsed.
fn claims(s: &Scratch, experiment: &str) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(s.runs().join(".slots").join(experiment)) else {
        return Vec::new();
    };
    entries
        .map(|e| {
            let text = std::fs::read_to_string(e.expect("entry").path()).expect("claim");
            serde_json::from_str(&text).expect("a claim is JSON")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_started_twice_at_the_same_moment_runs_a_due_experiment_once() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &scheduled(&fleet));
    let file = file.to_string_lossy().into_owned();

    // Two schedulers fire at the same moment. The barrier holds both until
    // each has judged the slot due, so they race on the claim itself.
    let barrier = format!("{}:2", s.path().join("barrier").display());
    // Both commands are built before either starts (building one writes the policy file).
    let racer = || {
        let mut cmd = at(&s, SLOT_DAY, &["run-due", &file]);
        cmd.env("GAMEDAY_TEST_CLAIM_BARRIER", &barrier);
        cmd
    };
    let (mut a, mut b) = (racer(), racer());
    let (a, b) = (a.spawn().expect("spawn"), b.spawn().expect("spawn"));
    let (a, b) = tokio::join!(
        finish(a, Duration::from_secs(120)),
        finish(b, Duration::from_secs(120))
    );
    for out in [&a, &b] {
        assert_eq!(
            out.code, 0,
            "both exit 0: one ran and passed, the other had nothing to do\n{}{}",
            out.stdout, out.stderr
        );
    }
    let ran = runs(&s);
    assert_eq!(
        ran.len(),
        1,
        "one run for the slot: {ran:?}\n{}{}\n{}{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    let said = format!("{}{}{}{}", a.stdout, a.stderr, b.stdout, b.stderr);
    assert_eq!(said.matches("verdict: passed").count(), 1, "{said}");
    assert!(
        said.contains("1 ran,") && said.contains("0 ran, 1 skipped") && said.contains("already claimed by"),
        "one ran, the other skipped the claimed slot: {said}"
    );

    // The claim records the slot, the run and its verdict.
    let recorded = claims(&s, "test-stop");
    assert_eq!(recorded.len(), 1, "one claim: {recorded:?}");
    let run_id = ran[0]
        .file_name()
        .expect("a run folder")
        .to_string_lossy()
        .into_owned();
    assert_eq!(recorded[0]["slot"], "2026-11-24T09:00:00Z");
    assert_eq!(recorded[0]["run_id"], run_id.as_str());
    assert_eq!(recorded[0]["verdict"], "passed");
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "every instance runs again"
    );

    // Triggered again later for the same slot: nothing runs, and `due` says why.
    let again = output(&mut at(&s, "2026-11-24T11:00:00Z", &["run-due", &file])).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("0 ran,"), "{}", again.stdout);
    assert_eq!(runs(&s).len(), 1);
    let due = output(&mut at(&s, "2026-11-24T11:00:00Z", &["due", &file])).await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(due.stdout.contains("DONE      test-stop"), "{}", due.stdout);
    assert!(
        due.stdout.contains("claimed by") && due.stdout.contains(&run_id),
        "{}",
        due.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_on_two_machines_at_the_same_moment_runs_a_due_experiment_once_through_the_lease_table() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    // Two machines: each its own copy of the experiment and its own runs
    // folder; all they share is the policy's lease table.
    let (m1, m2) = (Scratch::new(), Scratch::new());
    let table = crate::locks::lease_table(&m1).await;
    let machine = |s: &Scratch| {
        let file = s.write("exp.yaml", &scheduled(&fleet));
        let policy = crate::locks::lease_policy(s, &table);
        (
            file.to_string_lossy().into_owned(),
            policy.to_string_lossy().into_owned(),
        )
    };
    let (f1, p1) = machine(&m1);
    let (f2, p2) = machine(&m2);

    let barrier = format!("{}:2", m1.path().join("barrier").display());
    let racer = |s: &Scratch, file: &str, policy: &str| {
        let mut cmd = at(s, SLOT_DAY, &["run-due", file, "--policy", policy]);
        cmd.env("GAMEDAY_TEST_CLAIM_BARRIER", &barrier);
        cmd.spawn().expect("spawn")
    };
    let (a, b) = (racer(&m1, &f1, &p1), racer(&m2, &f2, &p2));
    let (a, b) = tokio::join!(
        finish(a, Duration::from_secs(120)),
        finish(b, Duration::from_secs(120))
    );
    let said = format!("{}{}{}{}", a.stdout, a.stderr, b.stdout, b.stderr);
    for out in [&a, &b] {
        assert_eq!(
            out.code, 0,
            "both exit 0: one ran and passed, the other had nothing to do\n{said}"
        );
    }
    let (r1, r2) = (runs(&m1), runs(&m2));
    assert_eq!(
        r1.len() + r2.len(),
        1,
        "one run in both runs folders: {r1:?} {r2:?}\n{said}"
    );
    assert_eq!(said.matches("verdict: passed").count(), 1, "{said}");
    assert!(
        said.contains("1 ran,")
            && said.contains("0 ran, 1 skipped")
            && said.contains("already claimed by")
            && said.contains(&format!("(lease table `{table}`)")),
        "one ran, the other skipped the slot claimed in the table: {said}"
    );
    let (winner, loser) = if r1.len() == 1 { (&m1, &m2) } else { (&m2, &m1) };
    let (loser_file, loser_policy) = if r1.len() == 1 { (&f2, &p2) } else { (&f1, &p1) };

    // The table holds the slot's lease, kept as the record that it was taken.
    let items = c
        .dynamodb
        .scan()
        .table_name(&table)
        .consistent_read(true)
        .send()
        .await
        .expect("Scan");
    let keys: Vec<String> = items
        .items()
        .iter()
        .filter_map(|i| i.get("lease").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(
        keys,
        vec!["slot#test-stop#20261124T090000Z".to_string()],
        "the slot's lease stays; the run's target leases are released"
    );

    // The winner recorded the slot and its run; the loser wrote no claim.
    let run_id = runs(winner)[0]
        .file_name()
        .expect("a run folder")
        .to_string_lossy()
        .into_owned();
    let recorded = claims(winner, "test-stop");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["run_id"], run_id.as_str());
    assert_eq!(recorded[0]["verdict"], "passed");
    assert_eq!(recorded[0]["lease_table"], table.as_str());
    assert!(claims(loser, "test-stop").is_empty());
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "every instance runs again"
    );

    // On the machine that did not run it, `due` reads the lease: done, and by whom.
    let due = output(&mut at(
        loser,
        "2026-11-24T11:00:00Z",
        &["due", loser_file, "--policy", loser_policy],
    ))
    .await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(due.stdout.contains("DONE      test-stop"), "{}", due.stdout);
    assert!(
        due.stdout.contains("claimed by") && due.stdout.contains(&format!("(lease table `{table}`)")),
        "{}",
        due.stdout
    );
    // And a later trigger there runs nothing.
    let again = output(&mut at(
        loser,
        "2026-11-24T11:00:00Z",
        &["run-due", loser_file, "--policy", loser_policy],
    ))
    .await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("0 ran,"), "{}", again.stdout);
    assert!(runs(loser).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_day_defers_a_due_slot_until_the_freeze_ends_and_the_catalog_follows() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &scheduled(&fleet));
    let file = file.to_string_lossy().into_owned();
    let policy = s.write(
        "frozen-policy.yaml",
        &format!("{PERMISSIVE_POLICY}windows:\n  freeze: [{{ from: 2026-11-24, to: 2026-11-24, reason: launch day }}]\n"),
    );
    let policy = policy.to_string_lossy().into_owned();

    // Never run: due, but the slot falls on a freeze day.
    let due = output(&mut at(&s, SLOT_DAY, &["due", &file, "--policy", &policy])).await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(due.stdout.contains("DEFERRED  test-stop"), "{}", due.stdout);
    assert!(due.stdout.contains("never run"), "{}", due.stdout);
    assert!(
        due.stdout.contains("windows.freeze") && due.stdout.contains("launch day"),
        "{}",
        due.stdout
    );
    assert!(
        due.stdout
            .contains("next slot: Tue 2026-12-01 10:00 Europe/Paris"),
        "{}",
        due.stdout
    );

    let cat = output(&mut at(&s, SLOT_DAY, &["catalog", &file, "--policy", &policy])).await;
    assert_eq!(cat.code, 0, "{}{}", cat.stdout, cat.stderr);
    let md = std::fs::read_to_string(s.runs().join("catalog.md")).expect("catalog.md");
    assert!(md.contains("| test-stop |") && md.contains("never run"), "{md}");
    assert!(md.contains("- now: **deferred**"), "{md}");

    let frozen = output(&mut at(&s, SLOT_DAY, &["run-due", &file, "--policy", &policy])).await;
    assert_eq!(
        frozen.code, 0,
        "nothing ran, nothing failed\n{}{}",
        frozen.stdout, frozen.stderr
    );
    assert!(
        frozen.stdout.contains("0 ran,") && frozen.stdout.contains("1 deferred"),
        "{}",
        frozen.stdout
    );
    assert!(runs(&s).is_empty(), "nothing runs on a freeze day");
    assert!(
        claims(&s, "test-stop").is_empty(),
        "a deferred slot is not claimed"
    );

    // The day after: the same slot is due and runs; the catalog is refreshed.
    let after = "2026-11-25T10:00:00Z";
    let due = output(&mut at(&s, after, &["due", &file, "--policy", &policy])).await;
    assert!(due.stdout.contains("DUE       test-stop"), "{}", due.stdout);
    assert!(
        due.stdout
            .contains("slot Tue 2026-11-24 10:00 Europe/Paris: never run"),
        "{}",
        due.stdout
    );
    let ran = output(&mut at(&s, after, &["run-due", &file, "--policy", &policy])).await;
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(runs(&s).len(), 1);
    let run_id = runs(&s)[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let md = std::fs::read_to_string(s.runs().join("catalog.md")).expect("catalog.md");
    assert!(
        md.contains("- last verdict: **passed**") && md.contains(&format!("({run_id}/report.html)")),
        "run-due refreshed the catalog: {md}"
    );

    // A slot after that run: due again, and `due` names the last run.
    let later = "2099-01-06T10:00:00Z";
    let due = output(&mut at(&s, later, &["due", &file, "--policy", &policy])).await;
    assert!(due.stdout.contains("DUE       test-stop"), "{}", due.stdout);
    assert!(
        due.stdout.contains(&format!("last run {run_id} at"))
            && due.stdout.contains("(passed), before this slot"),
        "{}",
        due.stdout
    );

    // The catalog page renders in a browser with the verdict, the trend and the report link.
    let Some(browser) = chromium() else {
        let why = std::env::var("GAMEDAY_SKIP_BROWSER_TEST").unwrap_or_else(|_| {
            panic!("chromium not found: run the tests with scripts/test, which installs it, or set GAMEDAY_CHROMIUM (or GAMEDAY_SKIP_BROWSER_TEST=reason)")
        });
        eprintln!("\n!!!!!!!! SKIPPED the browser test of catalog.html: {why} !!!!!!!!\n");
        return;
    };
    let page = s.runs().join("catalog.html");
    let profile = tempfile::tempdir().expect("a fresh browser profile");
    let dom = headless(
        &browser,
        profile.path(),
        &["--dump-dom".to_string(), format!("file://{}", page.display())],
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<h1>Game day catalog</h1>"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(
        dom.contains("id=\"experiment-test-stop\""),
        "the experiment's entry"
    );
    assert!(
        dom.contains("the fleet rides out stopped instances"),
        "its hypothesis"
    );
    assert!(dom.contains("stop: ec2:stop-instances, for 1s"), "its fault");
    assert!(dom.contains("0 10 * * TUE (Europe/Paris)"), "its schedule");
    assert!(dom.contains("class=\"v passed\""), "its last verdict");
    assert!(
        dom.contains(&format!("href=\"{run_id}/report.html\"")),
        "a link to its report"
    );
    assert!(
        s.runs().join(&run_id).join("report.html").exists(),
        "the link leads to the report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_mistakes_are_reported_with_file_line_and_column() {
    let s = Scratch::new();
    let base = stop_experiment("g", "a", "{ count: 1 }", "1s");
    let file = s.write(
        "bad.yaml",
        &format!("{base}schedule:\n  cron: \"0 10 * * TUES\"\n  timezone: Europe/Pari\n  jitter: soon\n"),
    );
    let out = output(gameday(&s).arg("validate").arg(&file)).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = base.lines().count() + 2;
    let name = file.display().to_string();
    for expected in [
        format!("{name}:{line}:9: error: schedule.cron: invalid cron expression `0 10 * * TUES`"),
        format!(
            "{name}:{}:13: error: schedule.timezone: unknown time zone `Europe/Pari`",
            line + 1
        ),
        format!(
            "{name}:{}:11: error: schedule.jitter: malformed duration `soon`",
            line + 2
        ),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
    // `due` and `run-due` refuse it the same way, and touch nothing.
    let due = output(&mut at(&s, SLOT_DAY, &["run-due", &name])).await;
    assert_eq!(due.code, 1, "{}{}", due.stdout, due.stderr);
    assert!(
        due.stderr.contains("schedule.cron: invalid cron expression"),
        "{}",
        due.stderr
    );
    assert!(runs(&s).is_empty());
}

/// A scratch folder laid out as a team's repository: `experiments/member.yaml`
/// (the tests' stop experiment on `group`, named `suite-member`, unscheduled)
/// and `suites/ready.yaml` listing it, with `schedule` (a whole `schedule:`
/// block, or nothing). Returns the suite file.
fn scheduled_suite(s: &Scratch, group: &str, alarm: &str, schedule: &str) -> PathBuf {
    std::fs::create_dir_all(s.path().join("experiments")).expect("experiments folder");
    std::fs::create_dir_all(s.path().join("suites")).expect("suites folder");
    s.write(
        "experiments/member.yaml",
        &stop_experiment(group, alarm, "{ count: 1 }", "1s").replace("name: test-stop", "name: suite-member"),
    );
    s.write(
        "suites/ready.yaml",
        &format!(
            "version: 1\nname: ready\nowner: team-launch\nexperiments:\n  - ../experiments/member.yaml\n{schedule}"
        ),
    )
}

/// The suite run folders of the scratch folder.
fn suite_runs(s: &Scratch) -> Vec<PathBuf> {
    runs(s)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("suite-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_started_twice_at_the_same_moment_runs_a_due_suite_once_with_one_scorecard() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    let s = Scratch::new();
    scheduled_suite(&s, &fleet.group, &fleet.alarm, TUESDAYS);

    // With no path, `due` looks in experiments/ and suites/.
    let due = output(&mut at(&s, SLOT_DAY, &["due"])).await;
    assert_eq!(due.code, 0, "{}{}", due.stdout, due.stderr);
    assert!(
        due.stdout.contains("DUE       suite ready  (suites/ready.yaml)"),
        "{}",
        due.stdout
    );
    assert!(due.stdout.contains("never run"), "{}", due.stdout);
    assert!(
        due.stdout.contains("not scheduled (run by hand): suite-member"),
        "{}",
        due.stdout
    );

    // Two schedulers fire at the same moment, held until both judged the slot due.
    // Both commands are built before either starts: building one writes the
    // permissive policy file, which the other must not be reading then.
    let barrier = format!("{}:2", s.path().join("barrier").display());
    let racer = || {
        let mut cmd = at(&s, SLOT_DAY, &["run-due"]);
        cmd.env("GAMEDAY_TEST_CLAIM_BARRIER", &barrier);
        cmd
    };
    let (mut a, mut b) = (racer(), racer());
    let (a, b) = (a.spawn().expect("spawn"), b.spawn().expect("spawn"));
    let (a, b) = tokio::join!(
        finish(a, Duration::from_secs(180)),
        finish(b, Duration::from_secs(180))
    );
    let said = format!("{}{}\n{}{}", a.stdout, a.stderr, b.stdout, b.stderr);
    for out in [&a, &b] {
        assert_eq!(out.code, 0, "a GO suite and a skipped slot both exit 0\n{said}");
    }
    let cards = suite_runs(&s);
    assert_eq!(cards.len(), 1, "one suite run for the slot: {cards:?}\n{said}");
    let suite_run_id = cards[0].file_name().expect("name").to_string_lossy().into_owned();
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cards[0].join("suite.json")).expect("suite.json"))
            .expect("suite.json is JSON");
    assert_eq!(card["suite"], "ready");
    assert_eq!(card["go"], true, "{card:#}");
    assert!(cards[0].join("scorecard.html").is_file(), "one scorecard");
    assert_eq!(
        runs(&s).len(),
        2,
        "the suite's one experiment ran once: one run folder beside the suite's"
    );
    assert!(
        said.contains("1 ran,") && said.contains("1 suite(s): 1 GO, 0 NO-GO"),
        "{said}"
    );
    assert!(
        said.contains("0 ran, 1 skipped")
            && said.contains("skipped: suite ready: slot 20261124T090000Z already claimed by"),
        "the other skipped the claimed slot: {said}"
    );
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "every instance runs again"
    );

    // The suite's claim is apart from any experiment's, and records its run.
    let claim: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.runs().join(".slots/.suites/ready/20261124T090000Z.json"))
            .expect("the claim"),
    )
    .expect("a claim is JSON");
    assert_eq!(claim["experiment"], "suite:ready");
    assert_eq!(claim["run_id"], suite_run_id.as_str());
    assert_eq!(claim["verdict"], "GO");
    assert_eq!(claim["owner"], "team-launch");

    // Later, for the same slot: done, and `due` names the claim's run.
    let due = output(&mut at(&s, "2026-11-24T11:00:00Z", &["due", "suites"])).await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(due.stdout.contains("DONE      suite ready"), "{}", due.stdout);
    assert!(due.stdout.contains(&suite_run_id), "{}", due.stdout);
    // A slot after that run: due again, and the last run (GO) is named.
    let due = output(&mut at(
        &s,
        "2099-01-06T10:00:00Z",
        &["due", "suites", "--output", "json"],
    ))
    .await;
    let doc: serde_json::Value = serde_json::from_str(&due.stdout).expect("JSON");
    let item = &doc["scheduled"][0];
    assert_eq!(item["kind"], "suite", "{doc:#}");
    assert_eq!(item["suite"], "ready", "{doc:#}");
    assert_eq!(item["state"], "due", "{doc:#}");
    assert_eq!(item["last_run"]["run_id"], suite_run_id.as_str(), "{doc:#}");
    assert_eq!(item["last_run"]["verdict"], "GO", "{doc:#}");

    // The catalog reads the suite through its decoder: schedule, last GO, the scorecard.
    let cat = output(&mut at(&s, "2026-11-24T11:00:00Z", &["catalog"])).await;
    assert_eq!(cat.code, 0, "{}{}", cat.stdout, cat.stderr);
    let md = std::fs::read_to_string(s.runs().join("catalog.md")).expect("catalog.md");
    assert!(
        md.contains(
            "| ready | team-launch | `0 10 * * TUE (Europe/Paris)` | Tue 2026-12-01 10:00 Europe/Paris | GO ("
        ),
        "{md}"
    );
    assert!(md.contains("## suite `ready`"), "{md}");
    assert!(
        md.contains("- experiments: experiments/member.yaml (blocking)"),
        "{md}"
    );
    assert!(md.contains("- now: **done**"), "{md}");
    assert!(
        md.contains("- last verdict: **GO** on") && md.contains(&format!("({suite_run_id}/scorecard.html)")),
        "{md}"
    );
    let page = std::fs::read_to_string(s.runs().join("catalog.html")).expect("catalog.html");
    assert!(page.contains("id=\"suite-ready\""), "the suite's entry");
    assert!(
        page.contains("<span class=\"v go\">GO</span>"),
        "its last verdict"
    );
    assert!(
        page.contains(&format!("href=\"{suite_run_id}/scorecard.html\"")),
        "a link to its scorecard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_suite_that_ends_no_go_makes_run_due_exit_as_a_failure() {
    let c = clients().await;
    let fleet = fleet(&c, 2).await;
    // The member's guardrail is in ALARM: it ends not-run, nothing injected,
    // and the suite (one blocking experiment) is NO-GO.
    set_alarm(&c, &fleet.alarm, "ALARM").await;
    let s = Scratch::new();
    scheduled_suite(&s, &fleet.group, &fleet.alarm, TUESDAYS);
    let out = output(&mut at(&s, SLOT_DAY, &["run-due"])).await;
    assert_eq!(
        out.code, 3,
        "a NO-GO suite counts as failed in run-due's exit code\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("suite: NO-GO")
            && out.stdout.contains("1 ran,")
            && out.stdout.contains("1 suite(s): 0 GO, 1 NO-GO"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let cards = suite_runs(&s);
    assert_eq!(cards.len(), 1, "the NO-GO suite has its scorecard");
    let claim: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.runs().join(".slots/.suites/ready/20261124T090000Z.json"))
            .expect("the claim"),
    )
    .expect("a claim is JSON");
    assert_eq!(claim["verdict"], "NO-GO");
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "nothing was stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_day_defers_a_due_suite() {
    let s = Scratch::new();
    let file = scheduled_suite(&s, "g", "a", TUESDAYS);
    let file = file.to_string_lossy().into_owned();
    let policy = s.write(
        "frozen-policy.yaml",
        &format!("{PERMISSIVE_POLICY}windows:\n  freeze: [{{ from: 2026-11-24, to: 2026-11-24, reason: launch day }}]\n"),
    );
    let policy = policy.to_string_lossy().into_owned();
    let due = output(&mut at(&s, SLOT_DAY, &["due", &file, "--policy", &policy])).await;
    assert_eq!(due.code, 0, "{}", due.stderr);
    assert!(due.stdout.contains("DEFERRED  suite ready"), "{}", due.stdout);
    assert!(
        due.stdout.contains("windows.freeze") && due.stdout.contains("launch day"),
        "{}",
        due.stdout
    );
    let frozen = output(&mut at(&s, SLOT_DAY, &["run-due", &file, "--policy", &policy])).await;
    assert_eq!(frozen.code, 0, "{}{}", frozen.stdout, frozen.stderr);
    assert!(
        frozen.stdout.contains("0 ran,") && frozen.stdout.contains("1 deferred"),
        "{}",
        frozen.stdout
    );
    assert!(
        frozen.stderr.contains("deferred: suite ready:"),
        "{}",
        frozen.stderr
    );
    assert!(
        suite_runs(&s).is_empty() && runs(&s).is_empty(),
        "nothing runs on a freeze day"
    );
    assert!(
        !s.runs().join(".slots/.suites/ready").exists(),
        "a deferred slot is not claimed"
    );
    // The day after, the same slot is due.
    let due = output(&mut at(
        &s,
        "2026-11-25T10:00:00Z",
        &["due", &file, "--policy", &policy],
    ))
    .await;
    assert!(due.stdout.contains("DUE       suite ready"), "{}", due.stdout);
    assert!(
        due.stdout
            .contains("slot Tue 2026-11-24 10:00 Europe/Paris: never run"),
        "{}",
        due.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suites_schedule_mistakes_are_reported_with_file_line_and_column() {
    let s = Scratch::new();
    let file = scheduled_suite(
        &s,
        "g",
        "a",
        "schedule:\n  cron: \"0 10 * * TUES\"\n  timezone: Europe/Pari\n  jitter: soon\n",
    );
    let name = file.display().to_string();
    let expected = [
        format!("{name}:7:9: error: schedule.cron: invalid cron expression `0 10 * * TUES`"),
        format!("{name}:8:13: error: schedule.timezone: unknown time zone `Europe/Pari`"),
        format!("{name}:9:11: error: schedule.jitter: malformed duration `soon`"),
    ];
    let out = output(gameday(&s).arg("validate").arg(&file)).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for e in &expected {
        assert!(
            out.stderr.contains(e.as_str()),
            "missing {e:?} in:\n{}",
            out.stderr
        );
    }
    // `due` and `run-due` refuse it the same way, and run nothing.
    for verb in ["due", "run-due"] {
        let out = output(&mut at(&s, SLOT_DAY, &[verb, &name])).await;
        assert_eq!(out.code, 1, "{verb}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(expected[0].as_str()),
            "{verb}: {}",
            out.stderr
        );
    }
    assert!(runs(&s).is_empty());
    // The catalog lists the suite with its problems, as it lists an invalid experiment.
    let cat = output(&mut at(&s, SLOT_DAY, &["catalog", "suites"])).await;
    assert_eq!(cat.code, 0, "{}{}", cat.stdout, cat.stderr);
    let md = std::fs::read_to_string(s.runs().join("catalog.md")).expect("catalog.md");
    assert!(
        md.contains("## suite `ready`") && md.contains("**Problem:** invalid suite:"),
        "{md}"
    );
    assert!(md.contains("schedule.cron: invalid cron expression"), "{md}");
}

/// The recipes in deploy/: each parses, its schedule is a valid cron
/// expression (read by the same parser as `schedule.cron`), and the command
/// it runs is a valid `gameday` command line. (The Kubernetes CronJob and the
/// CloudFormation template are checked in tests/deploy.rs.)
#[test]
fn every_scheduler_recipe_parses_and_runs_a_valid_gameday_command() {
    use clap::Parser;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read =
        |p: &str| std::fs::read_to_string(deploy.join(p)).unwrap_or_else(|e| panic!("deploy/{p}: {e}"));
    let valid = |what: &str, args: &[String]| {
        assert_eq!(
            args.first().map(String::as_str),
            Some("gameday"),
            "{what}: runs gameday: {args:?}"
        );
        if let Err(e) = gameday::cli::Cli::try_parse_from(args) {
            panic!(
                "{what}: `{}` is not a valid gameday command line: {e}",
                args.join(" ")
            );
        }
        assert!(
            args.iter().any(|a| a == "run-due"),
            "{what}: runs `gameday run-due`"
        );
    };
    let words = |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
    let yaml = |p: &str| {
        let text = read(p);
        marked_yaml::parse_yaml(0, &text).unwrap_or_else(|e| panic!("deploy/{p} is not YAML: {e}"))
    };
    let find = |node: &marked_yaml::Node, path: &[&str]| -> marked_yaml::Node {
        let mut n = node.clone();
        for key in path {
            n = match &n {
                marked_yaml::Node::Mapping(m) => m.get_node(key).cloned(),
                marked_yaml::Node::Sequence(s) => key.parse::<usize>().ok().and_then(|i| s.get(i).cloned()),
                _ => None,
            }
            .unwrap_or_else(|| panic!("no `{key}` in {path:?}"));
        }
        n
    };
    let text_of = |n: &marked_yaml::Node| n.as_scalar().expect("a value").as_str().to_string();

    // crontab: five cron fields, then the command.
    let crontab = read("crontab");
    let line = crontab
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.contains('='))
        .expect("a crontab entry");
    let fields = words(line);
    let cron = fields[..5].join(" ");
    gameday::schedule::parse_cron(&cron).unwrap_or_else(|e| panic!("crontab schedule `{cron}`: {e}"));
    // The command, up to its redirections; the program by its base name.
    let mut command: Vec<String> = fields[5..]
        .iter()
        .take_while(|w| !w.starts_with('>') && !w.starts_with("2>"))
        .cloned()
        .collect();
    command[0] = command[0].rsplit('/').next().unwrap_or_default().to_string();
    valid("crontab", &command);

    // systemd: a timer with OnCalendar, a service whose ExecStart is the command.
    let timer = read("systemd/gameday-run-due.timer");
    assert!(
        timer.contains("[Timer]") && timer.lines().any(|l| l.starts_with("OnCalendar=")),
        "{timer}"
    );
    assert!(
        timer.contains("Unit=gameday-run-due.service") || !timer.contains("Unit="),
        "{timer}"
    );
    let service = read("systemd/gameday-run-due.service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut args = words(exec);
    args[0] = args[0].rsplit('/').next().unwrap_or_default().to_string();
    valid("systemd service", &args);

    // GitHub Actions.
    let ci = yaml("github/gameday-schedule.yml");
    let cron = text_of(&find(&ci, &["on", "schedule", "0", "cron"]));
    gameday::schedule::parse_cron(&cron).unwrap_or_else(|e| panic!("CI schedule `{cron}`: {e}"));
    let steps = find(&ci, &["jobs", "run-due", "steps"]);
    let run = steps
        .as_sequence()
        .expect("steps")
        .iter()
        .filter_map(|s| {
            s.as_mapping()
                .and_then(|m| m.get_scalar("run"))
                .map(|r| r.as_str().to_string())
        })
        .find(|r| r.contains("gameday run-due"))
        .expect("a step running gameday run-due");
    let line = run
        .lines()
        .find(|l| l.contains("gameday run-due"))
        .expect("the line");
    valid("GitHub Actions", &words(line.trim()));
}
