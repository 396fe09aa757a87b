//! Notifications (issue 16, item 4), against moto: an SNS topic with an SQS
//! queue subscribed (raw delivery), and an EventBridge bus whose rule sends
//! `source: gameday` to another SQS queue. What people would receive arrives
//! in order, with the documented fields; a notification that cannot be sent
//! is a warning and changes nothing else.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::lifecycle::{in_place_experiment, run_id_of};
use crate::support::proxy::{Answer, FailingProxy, Storm};
use crate::support::*;

/// Where a test's notifications land: the topic and the bus, each read
/// through its own queue.
struct Inbox {
    sqs: aws_sdk_sqs::Client,
    topic: String,
    bus: String,
    sns_queue: String,
    bus_queue: String,
}

async fn config() -> aws_config::SdkConfig {
    test_config(REGION).await
}

/// A queue; returns its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    (url, arn)
}

async fn inbox() -> Inbox {
    let config = config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let name = unique("notify");
    let (sns_queue, sns_queue_arn) = queue(&sqs, &format!("{name}-sns")).await;
    let (bus_queue, bus_queue_arn) = queue(&sqs, &format!("{name}-bus")).await;
    let topic = sns
        .create_topic()
        .name(&name)
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic arn")
        .to_string();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&sns_queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe the queue");
    events
        .create_event_bus()
        .name(&name)
        .send()
        .await
        .expect("create bus");
    events
        .put_rule()
        .name(&name)
        .event_bus_name(&name)
        .event_pattern(r#"{"source": ["gameday"]}"#)
        .send()
        .await
        .expect("put rule");
    events
        .put_targets()
        .rule(&name)
        .event_bus_name(&name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&bus_queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put targets");
    Inbox {
        sqs,
        topic,
        bus: name,
        sns_queue,
        bus_queue,
    }
}

/// The JSON bodies in `queue`, in the order received, waiting (generously)
/// until there are `n`; then a short while more, to catch any extra.
async fn received(sqs: &aws_sdk_sqs::Client, queue: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut extra_polls = 2;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let body = m.body().expect("a body");
            got.push(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")));
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
        if got.len() >= n {
            extra_polls -= 1;
            if extra_polls == 0 {
                return got;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} notifications within 60s: {got:#?}",
            got.len()
        );
    }
}

/// What SNS and EventBridge delivered: the details, checked to be the same
/// on both channels and, on EventBridge, with source `gameday` and the
/// detail-type of their kind.
async fn delivered(i: &Inbox, n: usize) -> Vec<Value> {
    let from_sns = received(&i.sqs, &i.sns_queue, n).await;
    let from_bus = received(&i.sqs, &i.bus_queue, n).await;
    for e in &from_bus {
        assert_eq!(e["source"], "gameday", "{e}");
        let kind = e["detail"]["kind"].as_str().expect("kind");
        let detail_type = match kind {
            "started" => "Game day started",
            "aborted" => "Game day aborted",
            "ended" => "Game day ended",
            "rollback_incomplete" => "Game day rollback incomplete",
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(e["detail-type"], detail_type);
    }
    let details: Vec<Value> = from_bus.iter().map(|e| e["detail"].clone()).collect();
    assert_eq!(
        from_sns, details,
        "the same JSON on both channels, in the same order"
    );
    details
}

fn kinds(details: &[Value]) -> Vec<&str> {
    details
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect()
}

/// Every notification of one run, numbered 1.. in the order received, with
/// the documented fields all present.
fn assert_in_order(details: &[Value], run_id: &str) {
    for (n, d) in details.iter().enumerate() {
        assert_eq!(d["seq"], n as u64 + 1, "received in order: {details:#?}");
        assert_eq!(d["version"], 1);
        assert_eq!(d["run_id"], run_id);
        assert_eq!(d["experiment"], "test-stop");
        assert_eq!(d["region"], REGION);
        assert_eq!(d["mode"], "in-place");
        for field in [
            "at",
            "owner",
            "hypothesis",
            "account",
            "autoscaling_group",
            "host",
            "faults",
            "targets",
            "verdict",
            "reason",
            "guardrail",
            "rolled_back",
            "still_injected",
            "recover_command",
            "reports",
        ] {
            assert!(d.get(field).is_some(), "`{field}` is always present: {d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_run_notifies_its_start_then_its_end_on_sns_and_eventbridge() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let i = inbox().await;
    let s = Scratch::new();
    let exp = in_place_experiment(&fleet, "1s", "5m")
        .replace("name: test-stop\n", "name: test-stop\nowner: team-web\n");
    let file = s.write("exp.yaml", &exp);
    let out = finish(
        run_command(&s, &file)
            .args([
                "--notify-sns",
                &i.topic,
                "--notify-event-bus",
                &i.bus,
                "--account",
                "123456789012",
            ])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("warning: notification"), "{}", out.stderr);
    let run_id = run_id_of(&s);
    let d = delivered(&i, 2).await;
    assert_eq!(kinds(&d), ["started", "ended"]);
    assert_in_order(&d, &run_id);
    let (start, end) = (&d[0], &d[1]);
    assert_eq!(start["owner"], "team-web");
    assert_eq!(start["account"], "123456789012");
    assert_eq!(start["autoscaling_group"], fleet.group.as_str());
    assert_eq!(start["faults"], serde_json::json!(["stop (ec2:stop-instances)"]));
    assert_eq!(end["verdict"], "passed");
    let targets = end["targets"][0]["instances"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{end}");
    assert!(end["recover_command"].is_null() && end["still_injected"] == serde_json::json!([]));
    let html = end["reports"]["html"].as_str().expect("a link to the report");
    assert!(
        std::path::Path::new(html).is_file(),
        "the report it links to exists: {html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_abort_notifies_start_abort_and_end_from_the_policys_destinations() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let i = inbox().await;
    let s = Scratch::new();
    let policy = s.write(
        "policy.yaml",
        &format!(
            "{PERMISSIVE_POLICY}notifications:\n  sns_topic: {}\n  event_bus: {}\n",
            i.topic, i.bus
        ),
    );
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "5m", "5m"));
    let child = run_command(&s, &file)
        .arg("--policy")
        .arg(&policy)
        .spawn()
        .expect("spawn");
    wait_until_any_stopped(&c, &fleet.instances).await;
    set_alarm(&c, &fleet.alarm, "ALARM").await;
    let out = finish(child, Duration::from_secs(90)).await;
    set_alarm(&c, &fleet.alarm, "OK").await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "rolled back"
    );
    let d = delivered(&i, 3).await;
    assert_eq!(kinds(&d), ["started", "aborted", "ended"]);
    assert_in_order(&d, &run_id_of(&s));
    let abort = &d[1];
    assert!(
        abort["guardrail"]
            .as_str()
            .is_some_and(|g| g.contains(&fleet.alarm)),
        "names the guardrail: {abort}"
    );
    assert_eq!(abort["rolled_back"], serde_json::json!(["stop"]));
    assert_eq!(abort["still_injected"], serde_json::json!([]));
    assert_eq!(d[2]["verdict"], "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_cannot_finish_escalates_with_the_recover_command_that_finishes_it() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let i = inbox().await;
    let proxy = FailingProxy::counting(endpoint()).await;
    proxy.storm(Storm::every(
        &["StartInstances"],
        Answer::permanent(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        Duration::from_secs(120),
    ));
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "1s", "5m"));
    let out = finish(
        run_command(&s, &file)
            .args(["--notify-sns", &i.topic, "--notify-event-bus", &i.bus])
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let run_id = run_id_of(&s);
    let d = delivered(&i, 3).await;
    assert_eq!(kinds(&d), ["started", "rollback_incomplete", "ended"]);
    assert_in_order(&d, &run_id);
    let esc = &d[1];
    let left = esc["still_injected"].as_array().expect("still injected");
    let stop = left
        .iter()
        .find(|l| l["operation"] == "ec2:StartInstances")
        .unwrap_or_else(|| panic!("the stopped instances: {esc}"));
    assert_eq!(stop["resources"].as_array().map(Vec::len), Some(2));
    let cmd = format!("gameday recover {run_id} --runs-dir {}", s.runs().display());
    assert_eq!(esc["recover_command"], cmd.as_str());
    assert_eq!(d[2]["verdict"], "error");
    assert_eq!(d[2]["recover_command"], cmd.as_str());

    // The command, exactly as sent, finishes the job once the cause is gone.
    proxy.heal();
    let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let out = finish(
        gameday(&s).args(&words).spawn().expect("spawn"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "recovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_cannot_be_sent_is_a_warning_and_the_run_still_rolls_back() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let s = Scratch::new();
    let file = s.write("exp.yaml", &in_place_experiment(&fleet, "1s", "5m"));
    let missing = unique("missing");
    let out = finish(
        run_command(&s, &file)
            .args([
                "--notify-sns",
                &format!("arn:aws:sns:{REGION}:123456789012:{missing}"),
                "--notify-event-bus",
                &missing,
            ])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        out.code, 0,
        "the verdict is the run's: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        states(&c, &fleet.instances).await.iter().all(|s| s == "running"),
        "rolled back"
    );
    for dest in ["SNS topic", "EventBridge bus"] {
        for kind in ["Game day started", "Game day ended"] {
            assert!(
                out.stderr
                    .contains(&format!("warning: notification `{kind}` was not sent to {dest}")),
                "{kind} to {dest}: {}",
                out.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_not_one_is_a_usage_error_before_anything_runs() {
    let s = Scratch::new();
    let out = finish(
        run_command(&s, "exp.yaml")
            .args(["--notify-sns", "gameday-topic"])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not an SNS topic ARN"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_run_notifies_each_experiments_start_and_end() {
    let c = clients().await;
    let fleet = fleet(&c, 3).await;
    let i = inbox().await;
    let s = Scratch::new();
    for name in ["first", "second"] {
        s.write(
            &format!("{name}.yaml"),
            &in_place_experiment(&fleet, "1s", "5m").replace("name: test-stop", &format!("name: {name}")),
        );
    }
    let suite = s.write(
        "suite.yaml",
        "version: 1\nname: ready\nexperiments: [first.yaml, second.yaml]\n",
    );
    let out = finish(
        gameday(&s)
            .args(["suite", "run"])
            .arg(&suite)
            .arg("--runs-dir")
            .arg(s.runs())
            .args(["--notify-sns", &i.topic, "--notify-event-bus", &i.bus])
            .spawn()
            .expect("spawn"),
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(out.code, 0, "GO\n{}{}", out.stdout, out.stderr);
    let d = delivered(&i, 4).await;
    for name in ["first", "second"] {
        let of: Vec<&Value> = d.iter().filter(|d| d["experiment"] == name).collect();
        let seen: Vec<(&str, u64)> = of
            .iter()
            .map(|d| (d["kind"].as_str().expect("kind"), d["seq"].as_u64().expect("seq")))
            .collect();
        assert_eq!(seen, [("started", 1), ("ended", 2)], "{name}: {d:#?}");
        assert_eq!(of[0]["run_id"], of[1]["run_id"]);
        assert_eq!(of[1]["verdict"], "passed");
    }
}
