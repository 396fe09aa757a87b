//! The timeline chart every `report.html` carries, whatever its probes: the
//! run's phases, each fault's window, every guardrail's and every alarm's
//! state as a band over time, and healthy capacity as a line. Plain SVG with
//! presentation attributes, like the metric charts ([`super::svg`]).
//!
//! Bands come from the journal's `checked` events (one result per probe per
//! tick: a state holds from its tick to the next) and, for alarms no probe
//! watches, from `alarm_changed`; capacity from the values of `asg_healthy`
//! probes. A run that ended before observing shows its phases only.

use std::fmt::Write;

use jiff::Timestamp;

use super::html::esc;
use super::{Run, offset_text};
use crate::journal::{Event, Phase, ProbeRole};
use crate::output::text::phase_name;

const W: f64 = 760.0;
/// Room for the lanes' labels.
const LEFT: f64 = 170.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 10.0;
const LANE: f64 = 20.0;
const GAP: f64 = 4.0;
const CAPACITY_H: f64 = 110.0;
const AXIS: f64 = 34.0;

/// One lane of bands: a label and its segments (from, to, state).
struct Lane {
    label: String,
    class: &'static str,
    segments: Vec<(Timestamp, Timestamp, String)>,
}

/// A capacity line: the probe and its (time, healthy instances) points.
struct Capacity {
    probe: String,
    points: Vec<(Timestamp, f64)>,
}

fn phase_colour(p: &str) -> &'static str {
    match p {
        "preflight" => "#d9d9d9",
        "baseline" => "#cfe3f7",
        "fault phase" => "#f4c7c3",
        "rollback" => "#fbe3b5",
        "recovery" => "#d4edda",
        "teardown" => "#e6e0f0",
        _ => "#eeeeee",
    }
}

/// Colour of a band's state: ok, breach, and an alarm's three states.
fn state_colour(state: &str) -> &'static str {
    match state {
        "ok" | "OK" => "#8fd19e",
        "breach" | "ALARM" => "#e06666",
        "INSUFFICIENT_DATA" => "#bdbdbd",
        _ => "#eeeeee",
    }
}

fn phase_lane(run: &Run) -> Lane {
    let mut starts: Vec<(Timestamp, Phase)> = Vec::new();
    for e in &run.s.events {
        if let Event::Phase { phase } = &e.event {
            starts.push((e.at, *phase));
        }
    }
    let mut segments = Vec::new();
    for (k, (at, phase)) in starts.iter().enumerate() {
        if *phase == Phase::Done {
            continue;
        }
        let to = starts.get(k + 1).map(|(t, _)| *t).unwrap_or(run.ended_at);
        segments.push((*at, to, phase_name(*phase).to_string()));
    }
    Lane {
        label: "phase".into(),
        class: "phase",
        segments,
    }
}

/// Bands from per-tick results: each state holds until the next tick.
fn bands(ticks: &[(Timestamp, String)], end: Timestamp) -> Vec<(Timestamp, Timestamp, String)> {
    let mut out: Vec<(Timestamp, Timestamp, String)> = Vec::new();
    for (k, (at, state)) in ticks.iter().enumerate() {
        let to = ticks.get(k + 1).map(|(t, _)| *t).unwrap_or(end);
        match out.last_mut() {
            Some(last) if last.2 == *state => last.1 = to,
            _ => out.push((*at, to, state.clone())),
        }
    }
    out
}

fn probe_lanes(run: &Run) -> (Vec<Lane>, Vec<Capacity>) {
    let mut lanes = Vec::new();
    let mut capacity = Vec::new();
    let mut alarms_seen: Vec<String> = Vec::new();
    for p in &run.probes {
        let info = &p.info;
        let alarm = matches!(info.kind.as_str(), "alarm" | "alarm_fires");
        let guardrail = info.role == ProbeRole::Guardrail;
        let mut ticks: Vec<(Timestamp, String)> = Vec::new();
        let mut values: Vec<(Timestamp, f64)> = Vec::new();
        for e in &run.s.events {
            let Event::Checked { results, .. } = &e.event else {
                continue;
            };
            for r in results.iter().filter(|r| r.probe == info.name) {
                if alarm {
                    if let Some(st) = &r.state {
                        ticks.push((e.at, st.clone()));
                    }
                } else if guardrail {
                    ticks.push((e.at, if r.ok { "ok" } else { "breach" }.to_string()));
                }
                if info.kind == "asg_healthy"
                    && let Some(v) = r.value
                {
                    values.push((e.at, v));
                }
            }
        }
        if info.kind == "asg_healthy" {
            capacity.push(Capacity {
                probe: info.name.clone(),
                points: values,
            });
        }
        if alarm || guardrail {
            if alarm {
                alarms_seen.push(info.check.clone());
            }
            lanes.push(Lane {
                label: format!("{} {}", if guardrail { "guardrail" } else { "alarm" }, info.name),
                class: if alarm { "band alarm" } else { "band guardrail" },
                segments: bands(&ticks, run.ended_at),
            });
        }
    }
    // Alarms that changed state but no probe of this run watched by name.
    let mut names: Vec<&str> = run.s.alarm_changes.iter().map(|c| c.alarm.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        if alarms_seen.iter().any(|c| c.contains(&format!("`{name}`")))
            || run.probes.iter().any(|p| p.info.name.contains(name))
        {
            continue;
        }
        let changes: Vec<_> = run.s.alarm_changes.iter().filter(|c| c.alarm == name).collect();
        let mut ticks = vec![(run.s.started_at, changes[0].from.clone())];
        ticks.extend(changes.iter().map(|c| (c.at, c.to.clone())));
        lanes.push(Lane {
            label: format!("alarm {name}"),
            class: "band alarm",
            segments: bands(&ticks, run.ended_at),
        });
    }
    (lanes, capacity)
}

/// The timeline chart as an `<svg>` element.
pub fn render(run: &Run) -> String {
    let from = run.s.started_at;
    let to = run.ended_at.max(from);
    let span = (to.duration_since(from).as_millis() as f64).max(1000.0);
    let x = |t: Timestamp| {
        LEFT + (t.duration_since(from).as_millis() as f64 / span).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    };
    let mut lanes = vec![phase_lane(run)];
    lanes.extend(run.windows.iter().map(|w| Lane {
        label: format!("fault {}", w.fault),
        class: "fault-window",
        segments: vec![(w.from, w.to, "in effect".to_string())],
    }));
    let (probe_lanes, capacity) = probe_lanes(run);
    lanes.extend(probe_lanes);
    let lanes_h = lanes.len() as f64 * (LANE + GAP);
    let cap_top = TOP + lanes_h + 8.0;
    let h = cap_top + CAPACITY_H + AXIS;

    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart timeline\" viewBox=\"0 0 {W} {h:.0}\" width=\"{W}\" height=\"{h:.0}\" role=\"img\" aria-label=\"timeline of the run\">"
    );
    let _ = write!(o, "<title>timeline of the run</title>");
    let _ = write!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{h:.0}\" fill=\"#ffffff\"/>"
    );
    for (k, lane) in lanes.iter().enumerate() {
        let y = TOP + k as f64 * (LANE + GAP);
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT - 6.0,
            y + LANE - 6.0,
            esc(&shorten(&lane.label, 26))
        );
        let _ = write!(
            o,
            "<rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{LANE}\" fill=\"#f7f7f7\"/>",
            W - LEFT - RIGHT
        );
        for (a, b, state) in &lane.segments {
            let (x0, x1) = (x(*a), x(*b));
            let (class, fill) = match lane.class {
                "phase" => (
                    format!("phase phase-{}", state.replace(' ', "-")),
                    phase_colour(state),
                ),
                "fault-window" => ("fault-window".to_string(), "#f4c7c3"),
                c => (
                    format!("{c} state-{}", state.to_ascii_lowercase()),
                    state_colour(state),
                ),
            };
            let _ = write!(
                o,
                "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{LANE}\" fill=\"{fill}\"><title>{}: {} from {} to {}</title></rect>",
                (x1 - x0).max(1.0),
                esc(&lane.label),
                esc(state),
                offset_text(a.duration_since(from).as_millis() as i64),
                offset_text(b.duration_since(from).as_millis() as i64)
            );
            if x1 - x0 > state.len() as f64 * 6.0 + 6.0 {
                let _ = write!(
                    o,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#222\">{}</text>",
                    x0 + 3.0,
                    y + LANE - 6.0,
                    esc(state)
                );
            }
        }
    }

    // Healthy capacity: one line per asg_healthy probe, from zero up.
    let max = capacity
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        .ceil();
    let y = |v: f64| cap_top + (1.0 - v / max) * CAPACITY_H;
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">healthy capacity</text>",
        LEFT - 34.0,
        cap_top + CAPACITY_H / 2.0 + 4.0
    );
    let _ = write!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{cap_top:.1}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#333\"/>",
        cap_top + CAPACITY_H
    );
    for v in [0.0, max / 2.0, max] {
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            y(v),
            W - RIGHT,
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            crate::util::value_text(v)
        );
    }
    let colours = ["#1f5fbf", "#2e7d32", "#8e24aa", "#ef6c00"];
    let mut drawn = 0;
    for (k, c) in capacity.iter().enumerate() {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        drawn += 1;
        let colour = colours[k % colours.len()];
        let _ = write!(
            o,
            "<polyline class=\"series capacity\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>healthy instances ({})</title></polyline>",
            pts.join(" "),
            esc(&c.probe)
        );
    }
    if drawn == 0 {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#777\">no healthy-capacity reading: the experiment has no asg_healthy probe</text>",
            (W + LEFT) / 2.0,
            cap_top + CAPACITY_H / 2.0
        );
    }
    // The time axis.
    let axis_y = cap_top + CAPACITY_H;
    let _ = write!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\" stroke=\"#333\"/>",
        W - RIGHT
    );
    for i in 0..=4 {
        let xx = LEFT + (W - LEFT - RIGHT) * i as f64 / 4.0;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            o,
            "<text x=\"{xx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#333\">{}</text>",
            axis_y + 16.0,
            offset_text((span * i as f64 / 4.0) as i64)
        );
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">time since the run started</text>",
        (W + LEFT) / 2.0,
        h - 4.0
    );
    o.push_str("</svg>");
    o
}

/// `text`, cut to `n` characters with an ellipsis.
fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut s: String = text.chars().take(n - 1).collect();
    s.push('…');
    s
}

/// The legend under the chart, as HTML.
pub fn legend() -> String {
    let mut o = String::from("<p class=\"legend\">");
    for (label, colour) in [
        ("baseline", phase_colour("baseline")),
        ("fault phase / fault in effect", phase_colour("fault phase")),
        ("rollback", phase_colour("rollback")),
        ("recovery", phase_colour("recovery")),
        ("ok / alarm OK", state_colour("ok")),
        ("breached / ALARM", state_colour("breach")),
        ("INSUFFICIENT_DATA", state_colour("INSUFFICIENT_DATA")),
    ] {
        let _ = write!(
            o,
            "<span style=\"display:inline-block;width:12px;height:10px;background:{colour};margin:0 4px 0 10px\"></span>{label}"
        );
    }
    o.push_str("</p>");
    o
}
