//! Inline SVG charts of a metric probe over the run: the experiment's series,
//! the control's beside it, the fault windows shaded, and the tolerance or
//! guardrail threshold drawn as lines. Plain SVG with presentation attributes
//! (no script, no external style), so a chart renders wherever the report is
//! opened, even out of the page.

use std::fmt::Write;

use jiff::Timestamp;

use super::html::esc;
use super::{Window, offset_text};
use crate::output::summary::SeriesRecord;
use crate::util::value_text;

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// Colours: the experiment's series, the control's, a fault window, a limit.
const EXPERIMENT: &str = "#1f5fbf";
const CONTROL: &str = "#7a7a7a";
const WINDOW: &str = "#f4c7c3";
const LIMIT: &str = "#c0392b";

/// What one chart shows.
pub struct Chart<'a> {
    /// Shown above the plot, e.g. the probe's check.
    pub title: &'a str,
    /// The series of the group the faults went into.
    pub experiment: Option<&'a SeriesRecord>,
    /// The untouched source's series (parallel mode).
    pub control: Option<&'a SeriesRecord>,
    /// The fault windows.
    pub windows: &'a [Window],
    /// Lines to draw: value and label (`tolerance < 300`, `guardrail > 50`).
    pub limits: Vec<(f64, String)>,
    /// The x axis: the run's start and end.
    pub from: Timestamp,
    /// The run's end.
    pub to: Timestamp,
}

/// The chart as an `<svg>` element.
pub fn render(c: &Chart) -> String {
    // A little lead before the run shows the level it started from; a
    // control's long history before the run would squeeze the run itself.
    let lead = c.to.duration_since(c.from).as_millis().max(0) as i64 / 10;
    let earliest = c
        .from
        .checked_sub(jiff::SignedDuration::from_millis(lead))
        .unwrap_or(c.from);
    let start = c.from.min(first_point(c).unwrap_or(c.from)).max(earliest);
    let span = (c.to.duration_since(start).as_millis() as f64).max(1000.0);
    let shown = |t: Timestamp| t >= start;
    let x = |t: Timestamp| {
        LEFT + (t.duration_since(start).as_millis() as f64 / span).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    };
    let mut values: Vec<f64> = c.limits.iter().map(|(v, _)| *v).collect();
    for r in [c.experiment, c.control].into_iter().flatten() {
        values.extend(
            r.points
                .iter()
                .filter(|p| shown(p.t))
                .map(|p| p.v)
                .filter(|v| v.is_finite()),
        );
    }
    let (mut lo, mut hi) = (
        values.iter().copied().fold(f64::INFINITY, f64::min),
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if lo >= 0.0 && lo < (hi - lo) {
        lo = 0.0; // start at zero when the data is near it: differences read true
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        hi.abs().max(1.0) * 0.5
    };
    let (lo, hi) = (if lo == 0.0 { 0.0 } else { lo - pad }, hi + pad);
    let y = |v: f64| TOP + (1.0 - (v - lo) / (hi - lo)) * (H - TOP - BOTTOM);

    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(c.title)
    );
    let _ = write!(o, "<title>{}</title>", esc(c.title));
    let _ = write!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#ffffff\"/>"
    );
    for w in c.windows {
        let (x0, x1) = (x(w.from), x(w.to));
        let _ = write!(
            o,
            "<rect class=\"fault-window\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{WINDOW}\" fill-opacity=\"0.6\"><title>fault {} in effect</title></rect>",
            (x1 - x0).max(1.0),
            H - TOP - BOTTOM,
            esc(&w.fault)
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#a04030\">{}</text>",
            x0 + 3.0,
            H - BOTTOM - 5.0,
            esc(&w.fault)
        );
    }
    // Axes and ticks.
    let _ = write!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#333\"/>",
        H - BOTTOM
    );
    let _ = write!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e5e5\"/>",
            W - RIGHT
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT - 6.0,
            yy + 4.0,
            esc(&value_text(round_tick(v)))
        );
    }
    for i in 0..=4 {
        let ms = span * i as f64 / 4.0;
        let xx = LEFT + (W - LEFT - RIGHT) * i as f64 / 4.0;
        let label = offset_text(ms as i64 + start.duration_since(c.from).as_millis() as i64);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            o,
            "<text x=\"{xx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#333\">{label}</text>",
            H - BOTTOM + 16.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">time since the run started</text>",
        (W + LEFT) / 2.0,
        H - 4.0
    );
    for (v, label) in &c.limits {
        let yy = y(*v);
        let _ = write!(
            o,
            "<line class=\"limit\" x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{LIMIT}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>",
            W - RIGHT
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"{LIMIT}\">{}</text>",
            W - RIGHT - 4.0,
            yy - 4.0,
            esc(label)
        );
    }
    for (r, colour, dash, class) in [
        (c.control, CONTROL, " stroke-dasharray=\"4 3\"", "control"),
        (c.experiment, EXPERIMENT, "", "experiment"),
    ] {
        let Some(r) = r else { continue };
        let pts: Vec<String> = r
            .points
            .iter()
            .filter(|p| p.v.is_finite() && shown(p.t))
            .map(|p| format!("{:.1},{:.1}", x(p.t), y(p.v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let _ = write!(
            o,
            "<polyline class=\"series {class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            pts.join(" ")
        );
        if pts.len() <= 60 {
            for p in &pts {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(o, "<circle cx=\"{px}\" cy=\"{py}\" r=\"2.5\" fill=\"{colour}\"/>");
            }
        }
    }
    // Legend.
    let mut lx = LEFT;
    let mut legend = |o: &mut String, colour: &str, dash: &str, label: &str| {
        let _ = write!(
            o,
            "<line x1=\"{lx:.1}\" y1=\"12\" x2=\"{:.1}\" y2=\"12\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
            lx + 18.0
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"16\" font-size=\"11\" fill=\"#333\">{}</text>",
            lx + 22.0,
            esc(label)
        );
        lx += 30.0 + label.len() as f64 * 6.2;
    };
    if c.experiment.is_some() {
        legend(&mut o, EXPERIMENT, "", "experiment");
    }
    if c.control.is_some() {
        legend(
            &mut o,
            CONTROL,
            " stroke-dasharray=\"4 3\"",
            "control (untouched source)",
        );
    }
    if !c.limits.is_empty() {
        legend(&mut o, LIMIT, " stroke-dasharray=\"6 4\"", "threshold");
    }
    if !c.windows.is_empty() {
        let _ = write!(
            o,
            "<rect x=\"{lx:.1}\" y=\"6\" width=\"18\" height=\"10\" fill=\"{WINDOW}\"/>"
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"16\" font-size=\"11\" fill=\"#333\">fault in effect</text>",
            lx + 22.0
        );
    }
    if c.experiment.is_none_or(|r| r.points.is_empty()) {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#555\">no datapoints</text>",
            (W + LEFT) / 2.0,
            H / 2.0
        );
    }
    o.push_str("</svg>");
    o
}

fn first_point(c: &Chart) -> Option<Timestamp> {
    [c.experiment, c.control]
        .into_iter()
        .flatten()
        .filter_map(|r| r.points.first().map(|p| p.t))
        .min()
}

/// Rounds a tick label to three significant digits.
fn round_tick(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let mag = 10f64.powf(v.abs().log10().floor() - 2.0);
    (v / mag).round() * mag
}
