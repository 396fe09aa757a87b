//! The one place where an event becomes words.
//!
//! Both the live progress and the reports' timeline show a run's events; they
//! speak in two voices, so the same event may read differently: live, as it
//! happens, to the operator watching ("rolling back now"); in the timeline, as
//! a record of what happened ("cause seen 12:00:03.120Z"). Where the two say
//! the same thing they share one sentence here.

use crate::journal::{ActionKind, Event, Phase};
use crate::model::Owner;
use crate::util::{ms_text, value_text};

/// Who reads the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice<'a> {
    /// The operator watching a run, as each event happens (progress).
    Live,
    /// A reader of the finished run's timeline (reports); `operation` names
    /// the call that an `outcome` event answers (from its intent).
    Timeline {
        /// The operation of the intent an outcome answers; empty otherwise.
        operation: &'a str,
    },
}

/// A phase's short name, as the live status and the reports show it.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Preflight => "preflight",
        Phase::Baseline => "baseline",
        Phase::Inject => "fault phase",
        Phase::Rollback => "rollback",
        Phase::Recovery => "recovery",
        Phase::Teardown => "teardown",
        Phase::Done => "done",
    }
}

/// A list of resources, shortened for one line.
pub fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        s += &format!(" and {} more", items.len() - SHOWN);
    }
    s
}

/// An event in words for `voice`; `None` for the events that voice does not
/// show (the bulk ones: checks, series; live, the verdict the command prints).
pub fn describe(event: &Event, voice: Voice) -> Option<String> {
    let live = voice == Voice::Live;
    Some(match event {
        Event::RunStarted {
            run_id,
            experiment,
            mode,
            seed,
            region,
            endpoint,
            ..
        } => {
            if live {
                let at = endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
                format!(
                    "run {run_id}: experiment `{experiment}` ({}, region {region}{at}, seed {seed})",
                    mode.as_str()
                )
            } else {
                format!(
                    "run started: experiment `{experiment}` ({}, region {region}, seed {seed})",
                    mode.as_str()
                )
            }
        }
        Event::Phase { phase } => match (*phase, live) {
            (Phase::Preflight, true) => "preflight: checking guardrails and resolving targets (read-only)",
            (Phase::Preflight, false) => "preflight: guardrails checked, targets resolved (read-only)",
            (Phase::Baseline, true) => "baseline: the steady state must hold before anything is injected",
            (Phase::Baseline, false) => "baseline: proving the steady state before any fault",
            (Phase::Inject, true) => {
                "injecting faults; guardrails are watched until every fault is rolled back"
            }
            (Phase::Inject, false) => "fault phase: injecting faults, guardrails watched",
            (Phase::Rollback, true) => "rolling back every active fault",
            (Phase::Rollback, false) => "rollback: undoing every active fault",
            (Phase::Recovery, _) => "recovery: waiting for the steady state to return",
            (Phase::Teardown, _) => "teardown: deleting what the run created, releasing locks",
            (Phase::Done, _) => return None,
        }
        .to_string(),
        Event::SafetyGate {
            plan_hash,
            admitted: true,
            rules,
        } => format!("safety policy: {} rule(s) passed (plan {plan_hash})", rules.len()),
        Event::SafetyGate {
            plan_hash,
            admitted: false,
            rules,
        } => {
            if live {
                format!(
                    "safety policy: REFUSED, {} of {} rule(s) failed (plan {plan_hash})",
                    rules.iter().filter(|r| !r.passed).count(),
                    rules.len()
                )
            } else {
                let failed: Vec<&str> = rules
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| r.rule.as_str())
                    .collect();
                format!(
                    "safety policy REFUSED the run: {} (plan {plan_hash})",
                    failed.join(", ")
                )
            }
        }
        Event::GuardrailPreflight {
            guardrails,
            worst_case_abort_ms,
            max_abort_delay_ms,
        } => {
            let bad: Vec<String> = guardrails
                .iter()
                .filter(|g| !g.ok)
                .map(|g| format!("{}: {}", g.guardrail, g.detail))
                .collect();
            if live {
                let worst = worst_case_abort_ms
                    .map(|ms| format!("worst-case time to abort {}", ms_text(ms)))
                    .unwrap_or_else(|| "worst-case time to abort unknown".into());
                let limit = max_abort_delay_ms
                    .map(|ms| format!(" (limit {})", ms_text(ms)))
                    .unwrap_or_default();
                if bad.is_empty() {
                    format!("guardrails: {} can fire; {worst}{limit}", guardrails.len())
                } else {
                    format!(
                        "guardrails: {} cannot protect this run: {}; {worst}{limit}",
                        bad.len(),
                        bad.join("; ")
                    )
                }
            } else if bad.is_empty() {
                let worst = worst_case_abort_ms
                    .map(|m| format!("; worst-case time to abort {}", ms_text(m)))
                    .unwrap_or_default();
                format!("guardrails: {} can fire{worst}", guardrails.len())
            } else {
                format!("guardrails that cannot protect the run: {}", bad.join("; "))
            }
        }
        Event::TargetsResolved {
            fault,
            action,
            resolved,
        } => {
            let chosen: Vec<String> = resolved.selected.iter().map(|i| i.id.clone()).collect();
            if live {
                let mut s = format!(
                    "fault `{fault}` ({action}): {} of {} eligible instances: {}",
                    chosen.len(),
                    resolved.matched,
                    chosen.join(", ")
                );
                if !resolved.protected.is_empty() {
                    s += &format!(
                        " ({} protected instance(s) never touched)",
                        resolved.protected.len()
                    );
                }
                s
            } else {
                format!(
                    "fault `{fault}` ({action}): {} of {} eligible instance(s): {}",
                    chosen.len(),
                    resolved.matched,
                    short_list(&chosen)
                )
            }
        }
        Event::Environment {
            group: Some(g),
            source: Some(src),
            instances,
            control: Some(c),
            control_instances,
            ..
        } => format!(
            "parallel environment ready: `{g}`, a copy of `{src}` with {} instance(s) (faults go here only), and its control `{c}` with {} instance(s)",
            instances.len(),
            control_instances.len()
        ),
        Event::Environment {
            group: Some(g),
            source: Some(src),
            instances,
            ..
        } => {
            if live {
                format!(
                    "parallel environment ready: `{g}`, a copy of `{src}` with {} healthy instances; faults go here only",
                    instances.len()
                )
            } else {
                format!(
                    "parallel environment ready: `{g}`, a copy of `{src}` with {} instance(s)",
                    instances.len()
                )
            }
        }
        Event::Intent {
            fault,
            kind,
            operation,
            resources,
            ..
        } => {
            let what = match (kind, Owner::of(fault)) {
                (ActionKind::Setup, _) => "setup".to_string(),
                (ActionKind::Inject, _) => format!("inject `{fault}`"),
                (ActionKind::Rollback, Owner::Environment) => "teardown".to_string(),
                (ActionKind::Rollback, Owner::Fault(_)) => format!("rollback `{fault}`"),
            };
            format!("{what}: {operation} {}", short_list(resources))
        }
        Event::Outcome {
            ok, error, report, ..
        } => match voice {
            Voice::Live => match (*ok, error, report) {
                (false, Some(e), _) => format!("  FAILED: {e}"),
                (_, _, Some(r)) if !r.gone.is_empty() => format!(
                    "  {} no longer exist (nothing to restore): {}",
                    r.gone.len(),
                    r.gone.join(", ")
                ),
                _ => return None,
            },
            Voice::Timeline { operation } => match (*ok, error) {
                (true, _) => {
                    let gone = report
                        .as_ref()
                        .filter(|r| !r.gone.is_empty())
                        .map(|r| format!("; gone, nothing to restore: {}", short_list(&r.gone)))
                        .unwrap_or_default();
                    format!("{operation} ok{gone}")
                }
                (false, Some(e)) => format!("{operation} FAILED: {e}"),
                (false, None) => format!("{operation} FAILED"),
            },
        },
        Event::FaultActive {
            fault,
            until: Some(t),
        } => format!("fault `{fault}` in effect until {}", t.strftime("%H:%M:%SZ")),
        Event::FaultActive { fault, until: None } => {
            format!("fault `{fault}` in effect until the fault phase ends")
        }
        Event::FaultRolledBack { fault } => format!("fault `{fault}` rolled back"),
        Event::GuardrailBreached {
            guardrail,
            detail,
            seen_at,
        } => {
            if live {
                format!("GUARDRAIL TRIPPED: {guardrail}: {detail}")
            } else {
                format!(
                    "GUARDRAIL TRIPPED: `{guardrail}` (seen {}): {detail}",
                    seen_at.strftime("%H:%M:%S%.3fZ")
                )
            }
        }
        Event::Abort { reason, seen_at } => {
            if live {
                format!("ABORT: {reason}; rolling back now")
            } else {
                format!(
                    "ABORT: {reason} (cause seen {})",
                    seen_at.strftime("%H:%M:%S%.3fZ")
                )
            }
        }
        Event::RollbackStarted { trigger } if !live => format!("rollback started: {trigger}"),
        Event::Deviation {
            probe, phase, detail, ..
        } => {
            if live {
                format!("DEVIATION: {probe}: {detail}")
            } else {
                format!("`{probe}` out of tolerance ({}): {detail}", phase_name(*phase))
            }
        }
        Event::ProbeSilent {
            probe,
            last_datapoint,
            silent_for_ms,
            rule,
            ..
        } => {
            let last = match last_datapoint {
                Some(t) if live => format!("the last for {}", t.strftime("%H:%M:%SZ")),
                Some(t) => format!("the last for {t}"),
                None => "none since observation began".to_string(),
            };
            let silent = ms_text(silent_for_ms / 100 * 100);
            if live {
                format!("SILENT: {probe}: no datapoint for {silent}, {last} (missing: {rule})")
            } else {
                format!("`{probe}` went silent: no datapoint for {silent}, {last} (missing: {rule})")
            }
        }
        Event::ProbeDataBack { probe, gap_ms } => {
            let gap = ms_text(gap_ms / 100 * 100);
            if live {
                format!("data back: {probe} after {gap} without a datapoint")
            } else {
                format!("`{probe}` has data again after a gap of {gap}")
            }
        }
        Event::ProbeNotJudged { probe, reason } => {
            if live {
                format!("recovery: {probe} not judged: {reason}")
            } else {
                format!("`{probe}` was not judged for recovery: {reason}")
            }
        }
        Event::BaselineMeasured {
            probe,
            value,
            written,
            resolved,
        } => {
            if live {
                format!("baseline of {probe}: {value:.4}; `{written}` is now `{resolved}`")
            } else {
                format!(
                    "baseline of `{probe}`: {}; `{written}` became `{resolved}`",
                    value_text(*value)
                )
            }
        }
        Event::AlarmChanged {
            alarm,
            from: Some(from),
            to,
            reason,
        } => {
            let why = if live || reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            format!("alarm `{alarm}`: {from} -> {to}{why}")
        }
        Event::Comparison {
            probe, detail, ok, ..
        } => {
            if live {
                format!(
                    "{}{probe} versus control: {detail}",
                    if *ok { "" } else { "DEVIATION: " }
                )
            } else {
                format!("`{probe}` against the control: {detail}")
            }
        }
        Event::Detection { probe, detail, .. } => {
            if live {
                format!("detection {probe}: {detail}")
            } else {
                format!("detection `{probe}`: {detail}")
            }
        }
        Event::RecoveryResult { detail, .. } => format!("recovery: {detail}"),
        Event::Signal { signal, count } => match (live, *count) {
            (true, 1) => format!(
                "received {signal}: rolling back (send it again to skip waiting for instances; rollback calls always run)"
            ),
            (true, _) => format!("received {signal} again: skipping waits; rollback calls still run"),
            (false, _) => format!("{signal} received (#{count})"),
        },
        Event::Halted {
            reason,
            by,
            halted_at,
            parameter,
            ..
        } => format!(
            "HALTED by {by} at {} ({parameter}): {reason}",
            halted_at.strftime("%H:%M:%SZ")
        ),
        Event::Connected {
            account,
            region,
            role_arn,
            session,
            ..
        } => format!("assumed {role_arn} as session {session}: account {account}, region {region}"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::Recovery { pending } if !live => {
            format!("`gameday recover` took over: {pending} call(s) to undo")
        }
        Event::Verdict { verdict, reason, .. } if !live => {
            format!("verdict: {} ({reason})", verdict.as_str())
        }
        _ => return None,
    })
}
