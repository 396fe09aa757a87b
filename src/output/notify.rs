//! Notifications: telling people (and their tools) that a game day started,
//! aborted, ended, or left something behind, through the SNS topic and the
//! EventBridge bus of the policy's `notifications` (or `--notify-sns`,
//! `--notify-event-bus`).
//!
//! Built from the journal: the [`Notifying`] reporter hands every journal
//! entry to a [`Composer`] (pure: entries in, notifications out), and one
//! sending task per run delivers them from a queue, in the order composed.
//! The run never waits for a send: a slow or failing topic delays nothing,
//! least of all a rollback, and each failed send is a warning on the run's
//! progress output. After the run, [`Notifier::close`] queues the end
//! message (held until then, so that the reports it links to are written)
//! and waits, bounded, for the queue to drain.
//!
//! The message ([`Detail`], `version` [`NOTIFY_VERSION`]) is the same JSON on
//! both channels: an EventBridge event's `detail` (source [`SOURCE`],
//! detail-type from [`Kind::detail_type`]), and on SNS what machine
//! subscribers (SQS, Lambda, HTTP/S, Firehose, email-json) receive, while
//! email and SMS subscribers get the same facts as text (`MessageStructure:
//! json`). The README's "Notifications" section documents every field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sns::types::MessageAttributeValue;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::aws::{Aws, api};
use crate::engine::Reporter;
use crate::experiment::Experiment;
use crate::faults::Undo;
use crate::journal::{ActionKind, Entry, Event, Phase, Verdict};
use crate::model::Mode;
use crate::policy::Notifications;

/// The EventBridge `source` of every event gameday sends.
pub const SOURCE: &str = "gameday";
/// Version of the notification's JSON ([`Detail`]).
pub const NOTIFY_VERSION: u32 = 1;
/// The longest one send may take (the SDK's retries included) before it is
/// given up as a warning.
const SEND_LIMIT: Duration = Duration::from_secs(30);
/// The longest the command waits after a run for its notifications to go out.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The run began (what, where, whose).
    Started,
    /// The run aborted (a guardrail, a signal, max_duration), sent once its
    /// rollback is over: what tripped, what was rolled back, what was not.
    Aborted,
    /// The run is over: verdict and links to its records.
    Ended,
    /// An escalation: something is still injected or not deleted, with the
    /// `gameday recover` command that finishes it.
    RollbackIncomplete,
}

impl Kind {
    /// The EventBridge detail-type.
    pub fn detail_type(self) -> &'static str {
        match self {
            Kind::Started => "Game day started",
            Kind::Aborted => "Game day aborted",
            Kind::Ended => "Game day ended",
            Kind::RollbackIncomplete => "Game day rollback incomplete",
        }
    }
}

/// A fault's resolved targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The fault's name.
    pub fault: String,
    /// Its action.
    pub action: String,
    /// The instances chosen (empty for faults on groups or alarms).
    pub instances: Vec<String>,
}

/// Something a run could not undo: the call that would undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// The fault it belongs to, when known (absent for the run's own setup,
    /// e.g. a temporary copy not deleted).
    pub fault: Option<String>,
    /// The undo's operation, e.g. `ec2:StartInstances`.
    pub operation: String,
    /// The resources it acts on.
    pub resources: Vec<String>,
}

/// Where a run's records are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reports {
    /// The run folder.
    pub run_dir: PathBuf,
    /// `journal.json`.
    pub journal: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `junit.xml`.
    pub junit: PathBuf,
    /// The run in the shared runs store (`s3://BUCKET/PREFIX/RUN_ID/`), when there is one.
    pub store: Option<String>,
}

/// One notification: the EventBridge event's `detail`, and the JSON SNS
/// delivers to machine subscribers. Every field is always present (`null`
/// or empty when it does not apply), so consumers need no guessing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    /// [`NOTIFY_VERSION`].
    pub version: u32,
    /// Which notification.
    pub kind: Kind,
    /// Its place among this run's notifications, from 1: consumers order by it.
    pub seq: u32,
    /// The run.
    pub run_id: String,
    /// When the journal recorded what the notification is about.
    pub at: Timestamp,
    /// The experiment's name.
    pub experiment: String,
    /// The experiment's `owner`.
    pub owner: Option<String>,
    /// The hypothesis under test.
    pub hypothesis: String,
    /// The AWS account, when known (the policy's `accounts` rule source).
    pub account: Option<String>,
    /// The AWS region.
    pub region: String,
    /// `parallel` or `in-place`.
    pub mode: Mode,
    /// The experiment's Auto Scaling group (the source of the copies in parallel mode).
    pub autoscaling_group: Option<String>,
    /// The machine the runner runs on.
    pub host: String,
    /// The faults, as `name (action)`.
    pub faults: Vec<String>,
    /// Each fault's resolved targets, once resolved (empty at start).
    pub targets: Vec<Target>,
    /// The verdict (`ended` only).
    pub verdict: Option<Verdict>,
    /// Why: the abort's reason, or the verdict's.
    pub reason: Option<String>,
    /// The guardrail that tripped, when one did.
    pub guardrail: Option<String>,
    /// Faults fully rolled back.
    pub rolled_back: Vec<String>,
    /// What is still in effect or not deleted.
    pub still_injected: Vec<Leftover>,
    /// The command that finishes the rollback, when something is left.
    pub recover_command: Option<String>,
    /// The run's records (`ended` only).
    pub reports: Option<Reports>,
}

/// What the notifications say that the journal does not.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The experiment's owner.
    pub owner: Option<String>,
    /// The account, when known.
    pub account: Option<String>,
    /// The experiment's Auto Scaling group.
    pub autoscaling_group: Option<String>,
    /// The faults, as `name (action)`.
    pub faults: Vec<String>,
    /// The local folder the run folder goes into.
    pub runs_dir: PathBuf,
    /// `--runs-dir` as the operator must pass it to `gameday recover`, when
    /// not the default (`runs`).
    pub runs_arg: Option<String>,
    /// The shared runs store (`s3://BUCKET/PREFIX`), when there is one.
    pub store: Option<String>,
}

impl Context {
    /// The context of a run of `exp`, recorded in `runs_dir` (`runs_arg`:
    /// the runs folder or store as given on the command line).
    pub fn of(exp: &Experiment, account: Option<String>, runs_dir: PathBuf, runs_arg: &str) -> Context {
        let store = runs_arg
            .starts_with("s3://")
            .then(|| runs_arg.trim_end_matches('/').to_string());
        Context {
            owner: exp.owner.clone(),
            account,
            autoscaling_group: exp.environment.autoscaling_group.clone(),
            faults: exp
                .faults
                .iter()
                .map(|f| format!("{} ({})", f.name.value, f.action.value))
                .collect(),
            runs_dir,
            runs_arg: (runs_arg != "runs").then(|| runs_arg.to_string()),
            store,
        }
    }
}

/// Turns journal entries into notifications. Pure: no clock, no I/O.
#[derive(Debug)]
pub struct Composer {
    context: Context,
    /// From `run_started`: run id, hypothesis, region, mode, host, experiment.
    run: Option<Detail>,
    seq: u32,
    guardrail: Option<String>,
    /// An abort whose rollback is not over yet: its reason and time.
    abort: Option<(String, Timestamp)>,
    aborted_sent: bool,
    rolled_back: Vec<String>,
    /// Injects not yet undone, by action id: fault and undo.
    injected: BTreeMap<u64, (String, Undo)>,
    /// Rollback action id -> the inject it undoes.
    rollbacks: BTreeMap<u64, u64>,
    /// The end message, held until the run's records are written.
    end: Option<Detail>,
}

impl Composer {
    /// A composer for one run.
    pub fn new(context: Context) -> Composer {
        Composer {
            context,
            run: None,
            seq: 0,
            guardrail: None,
            abort: None,
            aborted_sent: false,
            rolled_back: Vec::new(),
            injected: BTreeMap::new(),
            rollbacks: BTreeMap::new(),
            end: None,
        }
    }

    /// The notifications `entry` causes, in order. The end message is
    /// not among them: it is kept for [`Composer::take_end`].
    pub fn entry(&mut self, entry: &Entry) -> Vec<Detail> {
        let mut out = Vec::new();
        match &entry.event {
            Event::RunStarted {
                run_id,
                experiment,
                hypothesis,
                mode,
                region,
                host,
                ..
            } => {
                let c = &self.context;
                self.run = Some(Detail {
                    version: NOTIFY_VERSION,
                    kind: Kind::Started,
                    seq: 0,
                    run_id: run_id.clone(),
                    at: entry.at,
                    experiment: experiment.clone(),
                    owner: c.owner.clone(),
                    hypothesis: hypothesis.clone(),
                    account: c.account.clone(),
                    region: region.clone(),
                    mode: *mode,
                    autoscaling_group: c.autoscaling_group.clone(),
                    host: host.clone(),
                    faults: c.faults.clone(),
                    targets: Vec::new(),
                    verdict: None,
                    reason: None,
                    guardrail: None,
                    rolled_back: Vec::new(),
                    still_injected: Vec::new(),
                    recover_command: None,
                    reports: None,
                });
                out.extend(self.compose(Kind::Started, entry.at));
            }
            Event::TargetsResolved {
                fault,
                action,
                resolved,
            } => {
                if let Some(run) = &mut self.run {
                    run.targets.push(Target {
                        fault: fault.clone(),
                        action: action.clone(),
                        instances: resolved.selected.iter().map(|i| i.id.clone()).collect(),
                    });
                }
            }
            Event::Intent {
                action_id,
                fault,
                kind,
                undo,
                rollback_of,
                ..
            } => match (kind, undo, rollback_of) {
                (ActionKind::Inject, Some(u), _) => {
                    self.injected.insert(*action_id, (fault.clone(), u.clone()));
                }
                (ActionKind::Rollback, _, Some(of)) => {
                    self.rollbacks.insert(*action_id, *of);
                }
                _ => {}
            },
            Event::Outcome {
                action_id, ok: true, ..
            } => {
                if let Some(of) = self.rollbacks.remove(action_id) {
                    self.injected.remove(&of);
                }
            }
            Event::FaultRolledBack { fault } => {
                if !self.rolled_back.contains(fault) {
                    self.rolled_back.push(fault.clone());
                }
                self.injected.retain(|_, (f, _)| f != fault);
            }
            Event::GuardrailBreached { guardrail, .. } => {
                self.guardrail.get_or_insert_with(|| guardrail.clone());
            }
            Event::Abort { reason, .. } if self.abort.is_none() && !self.aborted_sent => {
                self.abort = Some((reason.clone(), entry.at));
            }
            Event::Phase {
                phase: Phase::Recovery | Phase::Teardown | Phase::Done,
            } => out.extend(self.aborted()),
            Event::Verdict {
                verdict,
                reason,
                unfinished,
            } => {
                out.extend(self.aborted());
                let left: Vec<Leftover> = unfinished
                    .iter()
                    .map(|u| Leftover {
                        fault: None,
                        operation: u.operation().to_string(),
                        resources: u.resources(),
                    })
                    .collect();
                let recover = (!left.is_empty()).then(|| self.recover_command()).flatten();
                if !left.is_empty()
                    && let Some(mut d) = self.compose(Kind::RollbackIncomplete, entry.at)
                {
                    d.reason = Some(reason.clone());
                    d.still_injected = left.clone();
                    d.recover_command = recover.clone();
                    out.push(d);
                }
                // Its seq is taken now, so the end comes after everything composed before it.
                if let Some(mut d) = self.compose(Kind::Ended, entry.at) {
                    d.verdict = Some(*verdict);
                    d.reason = Some(reason.clone());
                    d.still_injected = left;
                    d.recover_command = recover;
                    d.reports = Some(self.reports(&d.run_id));
                    self.end = Some(d);
                }
            }
            _ => {}
        }
        out
    }

    /// The end message, once the run has its verdict (only once).
    pub fn take_end(&mut self) -> Option<Detail> {
        self.end.take()
    }

    /// The next notification of `kind`, with what is known now.
    fn compose(&mut self, kind: Kind, at: Timestamp) -> Option<Detail> {
        let run = self.run.as_ref()?;
        self.seq += 1;
        Some(Detail {
            kind,
            seq: self.seq,
            at,
            guardrail: self.guardrail.clone(),
            rolled_back: self.rolled_back.clone(),
            ..run.clone()
        })
    }

    /// The abort message, when an abort's rollback is over.
    fn aborted(&mut self) -> Option<Detail> {
        let (reason, at) = self.abort.take()?;
        self.aborted_sent = true;
        let still: Vec<Leftover> = self
            .injected
            .values()
            .map(|(fault, u)| Leftover {
                fault: Some(fault.clone()),
                operation: u.operation().to_string(),
                resources: u.resources(),
            })
            .collect();
        let mut d = self.compose(Kind::Aborted, at)?;
        d.reason = Some(reason);
        d.recover_command = (!still.is_empty()).then(|| self.recover_command()).flatten();
        d.still_injected = still;
        Some(d)
    }

    fn recover_command(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        Some(match &self.context.runs_arg {
            Some(dir) => format!("gameday recover {} --runs-dir {}", run.run_id, shell_word(dir)),
            None => format!("gameday recover {}", run.run_id),
        })
    }

    fn reports(&self, run_id: &str) -> Reports {
        let dir = self.context.runs_dir.join(run_id);
        Reports {
            journal: dir.join(super::JOURNAL_FILE),
            html: dir.join(super::report::HTML_FILE),
            markdown: dir.join(super::report::MARKDOWN_FILE),
            junit: dir.join(super::report::JUNIT_FILE),
            run_dir: dir,
            store: self.context.store.as_ref().map(|s| format!("{s}/{run_id}/")),
        }
    }
}

/// `text` quoted for a POSIX shell when it needs it.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | ':' | '+' | '@' | '='));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The notification's subject line (SNS: at most 100 printable ASCII characters).
pub fn subject(d: &Detail) -> String {
    let what = match d.kind {
        Kind::Started => "started".to_string(),
        Kind::Aborted => "ABORTED".to_string(),
        Kind::Ended => format!("ended {}", d.verdict.map(Verdict::as_str).unwrap_or("unfinished")),
        Kind::RollbackIncomplete => "ROLLBACK INCOMPLETE, action needed".to_string(),
    };
    let s = format!("gameday: {} {what} (run {})", d.experiment, d.run_id);
    let mut s: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    s.truncate(100);
    s
}

/// The notification in words, for people (SNS email and SMS subscribers).
pub fn text(d: &Detail) -> String {
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(format!("{}: {}", d.kind.detail_type(), d.experiment));
    line(format!("Run: {} (on {}, at {})", d.run_id, d.host, d.at));
    line(format!("Owner: {}", d.owner.as_deref().unwrap_or("(not named)")));
    line(format!(
        "Where: account {}, region {}, {} mode{}",
        d.account.as_deref().unwrap_or("(unknown)"),
        d.region,
        d.mode.as_str(),
        d.autoscaling_group
            .as_ref()
            .map(|g| format!(", group {g}"))
            .unwrap_or_default()
    ));
    match d.kind {
        Kind::Started => {
            line(format!("Hypothesis: {}", d.hypothesis.trim()));
            line(format!("Faults: {}", d.faults.join(", ")));
        }
        Kind::Aborted => {
            if let Some(g) = &d.guardrail {
                line(format!("Guardrail tripped: {g}"));
            }
            line(format!("Why: {}", d.reason.as_deref().unwrap_or("")));
            line(format!("Rolled back: {}", list_or_none(&d.rolled_back)));
        }
        Kind::Ended => {
            line(format!(
                "Verdict: {} ({})",
                d.verdict.map(Verdict::as_str).unwrap_or("unfinished"),
                d.reason.as_deref().unwrap_or("")
            ));
            if let Some(r) = &d.reports {
                line(format!("Report: {}", r.html.display()));
                line(format!("Journal: {}", r.journal.display()));
                if let Some(s) = &r.store {
                    line(format!("Store: {s}"));
                }
            }
        }
        Kind::RollbackIncomplete => {
            line(format!("Why: {}", d.reason.as_deref().unwrap_or("")));
        }
    }
    for target in &d.targets {
        line(format!(
            "Targets of {} ({}): {}",
            target.fault,
            target.action,
            list_or_none(&target.instances)
        ));
    }
    if !d.still_injected.is_empty() {
        line("Still in effect (not undone):".to_string());
        for l in &d.still_injected {
            line(format!("  {} {}", l.operation, l.resources.join(" ")));
        }
    }
    if let Some(cmd) = &d.recover_command {
        line(format!(
            "To finish the rollback once the cause is fixed, run where the run's records are:\n  {cmd}"
        ));
    }
    t
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// Counts of a run's notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries accepted (one per notification and destination).
    pub sent: u32,
    /// Deliveries that failed (each was a warning).
    pub failed: u32,
}

/// One run's notifications: the composer, and the queue to the sending task.
#[derive(Debug)]
pub struct Notifier {
    composer: Mutex<Composer>,
    queue: Mutex<Option<mpsc::UnboundedSender<Detail>>>,
    task: Mutex<Option<tokio::task::JoinHandle<Tally>>>,
    out: Arc<dyn Reporter>,
}

impl Notifier {
    /// Starts the sending task (on the current tokio runtime); `None` when
    /// `to` names no destination. Warnings go to `out`.
    pub fn start(
        aws: &Aws,
        to: Notifications,
        context: Context,
        out: Arc<dyn Reporter>,
    ) -> Option<Arc<Notifier>> {
        if to.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(deliver(aws.clone(), to, rx, out.clone()));
        Some(Arc::new(Notifier {
            composer: Mutex::new(Composer::new(context)),
            queue: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            out,
        }))
    }

    /// Queues what `entry` causes. Never blocks on a send.
    pub fn event(&self, entry: &Entry) {
        // Held while queueing, so notifications queue in the order composed.
        let mut composer = self.composer.lock().unwrap_or_else(|p| p.into_inner());
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for d in composer.entry(entry) {
            if let Some(q) = queue.as_ref() {
                let _ = q.send(d);
            }
        }
    }

    /// Queues the end message (the run's records are written by now) and
    /// waits up to `limit` for every notification to be sent.
    pub async fn close(&self, limit: Duration) -> Tally {
        let end = self.composer.lock().unwrap_or_else(|p| p.into_inner()).take_end();
        // Dropping the sender (taken here) ends the task once the queue is empty.
        if let Some(q) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take()
            && let Some(d) = end
        {
            let _ = q.send(d);
        }
        let Some(mut task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Tally::default();
        };
        match tokio::time::timeout(limit, &mut task).await {
            Ok(Ok(tally)) => tally,
            Ok(Err(e)) => {
                self.out.line(&format!("warning: notifications stopped: {e}"));
                Tally::default()
            }
            Err(_) => {
                task.abort();
                self.out.line(&format!(
                    "warning: notifications not all sent within {}s; the rest were dropped",
                    limit.as_secs()
                ));
                Tally::default()
            }
        }
    }
}

/// The sending task: every notification to every destination, in order.
async fn deliver(
    aws: Aws,
    to: Notifications,
    mut rx: mpsc::UnboundedReceiver<Detail>,
    out: Arc<dyn Reporter>,
) -> Tally {
    let mut tally = Tally::default();
    while let Some(d) = rx.recv().await {
        let json = match serde_json::to_string(&d) {
            Ok(j) => j,
            Err(e) => {
                out.line(&format!(
                    "warning: notification `{}` not sent: {e}",
                    d.kind.detail_type()
                ));
                continue;
            }
        };
        if let Some(topic) = &to.sns_topic {
            let sent = tokio::time::timeout(SEND_LIMIT, publish(&aws, topic, &d, &json)).await;
            count(&mut tally, &*out, &d, &format!("SNS topic {topic}"), sent);
        }
        if let Some(bus) = &to.event_bus {
            let sent = tokio::time::timeout(SEND_LIMIT, put_event(&aws, bus, &d, &json)).await;
            count(&mut tally, &*out, &d, &format!("EventBridge bus {bus}"), sent);
        }
    }
    tally
}

fn count(
    tally: &mut Tally,
    out: &dyn Reporter,
    d: &Detail,
    dest: &str,
    sent: Result<Result<(), String>, tokio::time::error::Elapsed>,
) {
    let why = match sent {
        Ok(Ok(())) => {
            tally.sent += 1;
            return;
        }
        Ok(Err(e)) => e,
        Err(_) => format!("no answer within {}s", SEND_LIMIT.as_secs()),
    };
    tally.failed += 1;
    out.line(&format!(
        "warning: notification `{}` was not sent to {dest}: {why}",
        d.kind.detail_type()
    ));
}

/// SNS: the JSON for machine subscribers, the text for people.
async fn publish(aws: &Aws, topic: &str, d: &Detail, json: &str) -> Result<(), String> {
    let body = serde_json::json!({
        "default": text(d),
        "email": text(d),
        "sms": subject(d),
        "email-json": json,
        "sqs": json,
        "lambda": json,
        "http": json,
        "https": json,
        "firehose": json,
    });
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .map_err(|e| e.to_string())
    };
    let mut req = aws
        .sns
        .publish()
        .topic_arn(topic)
        .subject(subject(d))
        .message_structure("json")
        .message(body.to_string())
        .message_attributes("detail_type", attr(d.kind.detail_type())?)
        .message_attributes("experiment", attr(&d.experiment)?)
        .message_attributes("run_id", attr(&d.run_id)?);
    if let Some(v) = d.verdict {
        req = req.message_attributes("verdict", attr(v.as_str())?);
    }
    req.send()
        .await
        .map_err(api("sns", "Publish"))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// EventBridge: one event, `source` gameday.
async fn put_event(aws: &Aws, bus: &str, d: &Detail, json: &str) -> Result<(), String> {
    let entry = PutEventsRequestEntry::builder()
        .source(SOURCE)
        .detail_type(d.kind.detail_type())
        .detail(json)
        .event_bus_name(bus)
        .time(aws_smithy_types::DateTime::from_millis(d.at.as_millisecond()))
        .build();
    let answer = aws
        .eventbridge
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(api("events", "PutEvents"))
        .map_err(|e| e.to_string())?;
    // PutEvents answers 200 with the failures per entry.
    if answer.failed_entry_count() > 0 {
        let e = answer.entries().first();
        return Err(format!(
            "events:PutEvents failed: {}: {}",
            e.and_then(|e| e.error_code()).unwrap_or("unknown"),
            e.and_then(|e| e.error_message()).unwrap_or("")
        ));
    }
    Ok(())
}

/// A reporter that shows the run (`inner`) and notifies from its journal.
#[derive(Debug)]
pub struct Notifying {
    inner: Arc<dyn Reporter>,
    notifier: Option<Arc<Notifier>>,
}

impl Notifying {
    /// `inner`, plus the notifications of `notifier` when there is one.
    pub fn new(inner: Arc<dyn Reporter>, notifier: Option<Arc<Notifier>>) -> Notifying {
        Notifying { inner, notifier }
    }
}

impl Reporter for Notifying {
    fn event(&self, entry: &Entry) {
        self.inner.event(entry);
        if let Some(n) = &self.notifier {
            n.event(entry);
        }
    }

    fn countdown(&self, what: &str, until: Timestamp) {
        self.inner.countdown(what, until);
    }

    fn status(&self, text: &str) {
        self.inner.status(text);
    }

    fn line(&self, text: &str) {
        self.inner.line(text);
    }

    fn finish(&self) {
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lines: &[&str]) -> Vec<Entry> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("a test event");
                v["seq"] = (i as u64 + 1).into();
                v["at"] = format!("2026-12-02T10:00:{:02}Z", i).into();
                serde_json::from_value(v).expect("an entry")
            })
            .collect()
    }

    const STARTED: &str = r#"{"event":"run_started","run_id":"20261202-100000-abcd","gameday_version":"0","journal_version":2,"experiment":"web","file":"web.yaml","file_sha256":"","source":"","hypothesis":"it holds","mode":"in-place","seed":1,"region":"eu-west-1","host":"ci"}"#;
    const RESOLVED: &str = r#"{"event":"targets_resolved","fault":"stop","action":"ec2:stop-instances","matched":2,"protected":[],"ineligible":[],"selected":[{"id":"i-1","az":"a","state":"running"},{"id":"i-2","az":"a","state":"running"}]}"#;
    const INJECT: &str = r#"{"event":"intent","action_id":3,"fault":"stop","kind":"inject","operation":"ec2:StopInstances","resources":["i-1","i-2"],"undo":{"kind":"start_instances","instance_ids":["i-1","i-2"]}}"#;

    fn context() -> Context {
        Context {
            owner: Some("team-web".into()),
            account: Some("123456789012".into()),
            autoscaling_group: Some("web".into()),
            faults: vec!["stop (ec2:stop-instances)".into()],
            runs_dir: PathBuf::from("/var/runs"),
            runs_arg: Some("/var/runs".into()),
            store: None,
        }
    }

    fn compose(lines: &[&str]) -> (Vec<Detail>, Option<Detail>) {
        let mut c = Composer::new(context());
        let sent: Vec<Detail> = entries(lines).iter().flat_map(|e| c.entry(e)).collect();
        (sent, c.take_end())
    }

    #[test]
    fn a_passing_run_says_it_started_then_ended_with_its_links() {
        let (sent, end) = compose(&[
            STARTED,
            RESOLVED,
            INJECT,
            r#"{"event":"phase","phase":"done"}"#,
            r#"{"event":"verdict","verdict":"passed","reason":"held"}"#,
        ]);
        assert_eq!(sent.len(), 1);
        let s = &sent[0];
        assert_eq!((s.kind, s.seq), (Kind::Started, 1));
        assert_eq!(s.owner.as_deref(), Some("team-web"));
        assert_eq!(s.account.as_deref(), Some("123456789012"));
        let end = end.expect("the end, held for close");
        assert_eq!(
            (end.kind, end.seq, end.verdict),
            (Kind::Ended, 2, Some(Verdict::Passed))
        );
        assert_eq!(end.targets[0].instances, ["i-1", "i-2"]);
        let r = end.reports.as_ref().expect("links");
        assert_eq!(
            r.html,
            PathBuf::from("/var/runs/20261202-100000-abcd/report.html")
        );
        assert!(end.recover_command.is_none() && end.still_injected.is_empty());
        let json = serde_json::to_value(&end).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["kind"], "ended");
        assert_eq!(
            json["guardrail"],
            serde_json::Value::Null,
            "every field is present"
        );
    }

    #[test]
    fn an_abort_is_told_once_its_rollback_is_over_with_the_guardrail_and_what_was_rolled_back() {
        let (sent, end) = compose(&[
            STARTED,
            RESOLVED,
            INJECT,
            r#"{"event":"guardrail_breached","guardrail":"5xx","detail":"ALARM","seen_at":"2026-12-02T10:00:03Z"}"#,
            r#"{"event":"abort","reason":"guardrail `5xx` breached","seen_at":"2026-12-02T10:00:03Z"}"#,
            r#"{"event":"intent","action_id":4,"fault":"stop","kind":"rollback","operation":"ec2:StartInstances","resources":["i-1","i-2"],"rollback_of":3}"#,
            r#"{"event":"outcome","action_id":4,"ok":true}"#,
            r#"{"event":"fault_rolled_back","fault":"stop"}"#,
            r#"{"event":"phase","phase":"teardown"}"#,
            r#"{"event":"phase","phase":"done"}"#,
            r#"{"event":"verdict","verdict":"aborted","reason":"guardrail"}"#,
        ]);
        let kinds: Vec<Kind> = sent.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [Kind::Started, Kind::Aborted]);
        let a = &sent[1];
        assert_eq!(a.guardrail.as_deref(), Some("5xx"));
        assert_eq!(a.rolled_back, ["stop"]);
        assert!(a.still_injected.is_empty() && a.recover_command.is_none());
        assert_eq!(end.unwrap().seq, 3);
    }

    #[test]
    fn a_rollback_that_could_not_finish_escalates_with_the_exact_recover_command() {
        let (sent, end) = compose(&[
            STARTED,
            INJECT,
            r#"{"event":"abort","reason":"SIGINT","seen_at":"2026-12-02T10:00:03Z"}"#,
            r#"{"event":"intent","action_id":4,"fault":"stop","kind":"rollback","operation":"ec2:StartInstances","resources":["i-1","i-2"],"rollback_of":3}"#,
            r#"{"event":"outcome","action_id":4,"ok":false}"#,
            r#"{"event":"phase","phase":"teardown"}"#,
            r#"{"event":"verdict","verdict":"error","reason":"rollback incomplete","unfinished":[{"kind":"start_instances","instance_ids":["i-1","i-2"]}]}"#,
        ]);
        let kinds: Vec<Kind> = sent.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [Kind::Started, Kind::Aborted, Kind::RollbackIncomplete]);
        assert_eq!(sent[1].still_injected[0].fault.as_deref(), Some("stop"));
        let esc = &sent[2];
        assert_eq!(esc.still_injected[0].operation, "ec2:StartInstances");
        assert_eq!(esc.still_injected[0].resources, ["i-1", "i-2"]);
        let cmd = "gameday recover 20261202-100000-abcd --runs-dir /var/runs";
        assert_eq!(esc.recover_command.as_deref(), Some(cmd));
        assert!(text(esc).contains(cmd), "{}", text(esc));
        let end = end.unwrap();
        assert_eq!((end.seq, end.recover_command.as_deref()), (4, Some(cmd)));
    }

    #[test]
    fn the_subject_fits_sns() {
        let (sent, _) = compose(&[STARTED]);
        let mut d = sent[0].clone();
        d.experiment = "é".repeat(200);
        let s = subject(&d);
        assert!(
            s.len() <= 100 && s.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{s}"
        );
        assert_eq!(shell_word("/tmp/a b"), "'/tmp/a b'");
    }
}
