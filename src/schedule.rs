//! Schedules: when an experiment (or a suite) is due, as a `schedule:` block
//! of its file, decoded with positions like every other input.
//!
//! gameday has no scheduler of its own: a team's existing scheduler (cron, a
//! systemd timer, a Kubernetes CronJob, EventBridge Scheduler, CI) starts
//! `gameday run-due` often, and the schedule decides whether anything is due.
//! A schedule is a cron expression in a time zone, with an optional jitter
//! and an optional `not_before`/`until` range. This module is the model, its
//! decoder ([`decode_schedule`], which a suite file's decoder calls on its own
//! `schedule:` node too) and the slot arithmetic; whether a slot may run now
//! (the policy's windows and freezes, the slots already claimed) is `due`'s.
//!
//! Cron expressions are parsed by `croner` (five fields: minute, hour,
//! day of month, month, day of week; names such as `TUE` and `JAN`, ranges,
//! steps, `L`, `W`, `#`): the same five fields crontab, systemd's neighbours
//! and Kubernetes read, so a schedule copied between them means the same.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use marked_yaml::Node;

use crate::util::sha256_hex;
use crate::yaml::{self, Decoder, Loc, Spanned};

mod schema;
pub(crate) use schema::block as schema;

/// The keys of a `schedule:` block.
pub const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "time_zone", "jitter", "not_before", "until"];

/// A decoded `schedule:` block.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The cron expression as written (five fields).
    pub cron: Spanned<String>,
    /// The parsed expression.
    pattern: Cron,
    /// The IANA time zone name the expression is read in, as written (default `UTC`).
    pub timezone_name: String,
    /// The zone.
    pub timezone: TimeZone,
    /// Each slot starts up to this much later than its cron time, by an
    /// amount fixed per experiment and slot (so two runners agree on it).
    pub jitter: Option<Duration>,
    /// No slot before this instant.
    pub not_before: Option<Timestamp>,
    /// No slot after this instant.
    pub until: Option<Timestamp>,
    /// Where the block starts.
    pub loc: Loc,
}

/// One occurrence of a schedule: its cron time and the moment it becomes due
/// (the cron time plus the jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Slot {
    /// The cron time: the slot's identity (claims and history name it).
    pub at: Timestamp,
    /// When it becomes due: `at` plus the slot's jitter.
    pub due_at: Timestamp,
}

impl Slot {
    /// The slot's identity in file names and keys: `20261222T090000Z`.
    pub fn key(&self) -> String {
        self.at.strftime("%Y%m%dT%H%M%SZ").to_string()
    }
}

/// Decodes a `schedule:` node: an experiment's and a suite's decoder both
/// call this on their `schedule` value, so the block means the same in both.
/// Problems are recorded on `d` with their positions; `None` after any.
pub fn decode_schedule(d: &mut Decoder, node: &Node) -> Option<Schedule> {
    let m = d.map(node, "schedule", SCHEDULE_KEYS)?;
    let cron = d
        .required(&m, "cron", "schedule")
        .and_then(|n| d.string(n, "schedule.cron"));
    let pattern = cron.as_ref().and_then(|c| match parse_cron(&c.value) {
        Ok(p) => Some(p),
        Err(problem) => {
            d.error_help(
                c.loc,
                format!("schedule.cron: invalid cron expression `{}`: {problem}", c.value),
                "expected five fields: minute hour day-of-month month day-of-week, in the schedule's \
                 time zone, e.g. `0 10 * * TUE` (Tuesdays at 10:00) or `30 9 1-7 * MON` (the first Monday \
                 of each month at 09:30)",
            );
            None
        }
    });
    let (tz_key, tz_node) = match (m.get("timezone"), m.get("time_zone")) {
        (Some(a), Some(b)) => {
            d.error(
                yaml::loc(b),
                "schedule: `timezone` and `time_zone` are the same key; write one",
            );
            ("timezone", Some(a))
        }
        (Some(a), None) => ("timezone", Some(a)),
        (None, Some(b)) => ("time_zone", Some(b)),
        (None, None) => ("timezone", None),
    };
    let zone = match tz_node {
        Some(n) => decode_zone(d, n, &format!("schedule.{tz_key}")),
        None => Some(("UTC".to_string(), TimeZone::UTC)),
    };
    let jitter = match m.get("jitter") {
        Some(n) => d.duration(n, "schedule.jitter").map(|s| Some(s.value)),
        None => Some(None),
    };
    // Dates are checked even when the zone is wrong, so every problem shows at once.
    let timezone = zone.as_ref().map_or(TimeZone::UTC, |z| z.1.clone());
    let not_before = match m.get("not_before") {
        Some(n) => decode_instant(d, n, "schedule.not_before", &timezone, false).map(Some),
        None => Some(None),
    };
    let until = match m.get("until") {
        Some(n) => decode_instant(d, n, "schedule.until", &timezone, true).map(Some),
        None => Some(None),
    };
    let (not_before, until) = (not_before?, until?);
    let (timezone_name, timezone) = zone?;
    if let (Some(a), Some(b)) = (&not_before, &until)
        && b.value <= a.value
        && let Some(n) = m.get("until")
    {
        d.error(
            yaml::loc(n),
            format!(
                "schedule.until: {} is not after `not_before` ({})",
                b.value, a.value
            ),
        );
        return None;
    }
    let (cron, pattern) = (cron?, pattern?);
    let schedule = Schedule {
        cron,
        pattern,
        timezone_name,
        timezone,
        jitter: jitter?,
        not_before: not_before.map(|s| s.value),
        until: until.map(|s| s.value),
        loc: m.loc(),
    };
    // A pattern such as `0 0 30 2 *` (30 February) parses but never fires.
    let from = schedule.not_before.unwrap_or(Timestamp::UNIX_EPOCH);
    if schedule.next_after(from).is_none() {
        d.error_help(
            schedule.cron.loc,
            format!(
                "schedule.cron: `{}` never fires{}",
                schedule.cron.value,
                if schedule.until.is_some() {
                    " between `not_before` and `until`"
                } else {
                    ""
                }
            ),
            "check the day of month against the month (there is no 30 February)",
        );
        return None;
    }
    Some(schedule)
}

/// Parses a five-field cron expression the way schedules read it: no seconds
/// field, no year field (crontab's and Kubernetes' format).
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| {
            let text = e.to_string();
            // croner's messages start with their own category; keep what explains.
            text.strip_prefix("Invalid pattern: ")
                .or_else(|| text.strip_prefix("Component error: "))
                .unwrap_or(&text)
                .trim_end_matches('.')
                .to_string()
        })
}

fn decode_zone(d: &mut Decoder, node: &Node, what: &str) -> Option<(String, TimeZone)> {
    let name = d.string(node, what)?;
    match TimeZone::get(&name.value) {
        Ok(tz) => Some((name.value, tz)),
        Err(_) => {
            let zones: Vec<String> = jiff::tz::db().available().map(|z| z.to_string()).collect();
            let help = match yaml::did_you_mean(&name.value, zones.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "expected an IANA time zone name such as `UTC` or `Europe/Paris`".to_string(),
            };
            d.error_help(
                name.loc,
                format!("{what}: unknown time zone `{}`", name.value),
                help,
            );
            None
        }
    }
}

/// An instant: an RFC 3339 time (`2026-12-01T09:00:00Z`), a date and time in
/// the schedule's zone (`2026-12-01T09:00`), or a date (`2026-12-01`: its
/// start, or for `until` (`end_of_day`) its end).
fn decode_instant(
    d: &mut Decoder,
    node: &Node,
    what: &str,
    tz: &TimeZone,
    end_of_day: bool,
) -> Option<Spanned<Timestamp>> {
    let s = d.string(node, what)?;
    let text = s.value.trim();
    let parsed = text
        .parse::<Timestamp>()
        .ok()
        .or_else(|| {
            // A plain date (jiff would also read it as a date and time at midnight).
            (!text.contains('T')).then_some(())?;
            text.parse::<Date>().ok().and_then(|date| {
                let day = if end_of_day { date.tomorrow().ok()? } else { date };
                tz.to_ambiguous_zoned(day.to_datetime(jiff::civil::Time::midnight()))
                    .compatible()
                    .ok()
                    .map(|z| z.timestamp())
            })
        })
        .or_else(|| {
            text.parse::<DateTime>()
                .ok()
                .and_then(|dt| tz.to_ambiguous_zoned(dt).compatible().ok())
                .map(|z| z.timestamp())
        });
    match parsed {
        Some(t) => Some(Spanned { value: t, loc: s.loc }),
        None => {
            d.error_help(
                s.loc,
                format!("{what}: malformed date or time `{}`", s.value),
                "expected a date (`2026-12-01`), a date and time in the schedule's time zone \
                 (`2026-12-01T09:00`), or an RFC 3339 time (`2026-12-01T08:00:00Z`)",
            );
            None
        }
    }
}

impl Schedule {
    /// The expression and its zone, as people read it: `0 10 * * TUE (Europe/Paris)`.
    pub fn describe(&self) -> String {
        let mut out = format!("{} ({})", self.cron.value, self.timezone_name);
        if let Some(j) = self.jitter {
            out.push_str(&format!(", jitter {}", crate::util::format_duration(j)));
        }
        out
    }

    fn zoned(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.timezone.clone())
    }

    /// The first cron time strictly after `t` (ignoring `until`), if any.
    fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.pattern
            .find_next_occurrence(&self.zoned(t), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last cron time at or before `t`, if any.
    fn previous_at_or_before(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        self.pattern
            .find_previous_occurrence(&self.zoned(t), inclusive)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The jitter of the slot at `at` for `key` (the experiment's name): a
    /// fixed fraction of `jitter` from a hash of both, so every runner, on
    /// every machine, computes the same due time for the same slot.
    pub fn jitter_of(&self, key: &str, at: Timestamp) -> Duration {
        let Some(j) = self.jitter else {
            return Duration::ZERO;
        };
        let hash = sha256_hex(format!("{key}\n{}", at.as_second()).as_bytes());
        let n = u64::from_str_radix(&hash[..16], 16).unwrap_or(0);
        let ms = u64::try_from(j.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(n % ms)
    }

    fn slot(&self, key: &str, at: Timestamp) -> Slot {
        let due_at = SignedDuration::try_from(self.jitter_of(key, at))
            .ok()
            .and_then(|j| at.checked_add(j).ok())
            .unwrap_or(at);
        Slot { at, due_at }
    }

    fn in_range(&self, at: Timestamp) -> bool {
        self.not_before.is_none_or(|b| at >= b) && self.until.is_none_or(|u| at <= u)
    }

    /// The latest slot that is due at `now` (its due time is not after
    /// `now`) and lies between `not_before` and `until`; `None` before the
    /// first one.
    pub fn latest_due(&self, key: &str, now: Timestamp) -> Option<Slot> {
        let mut from = match self.until {
            Some(u) if u < now => u,
            _ => now,
        };
        // With a jitter, the newest cron times may not be due yet; walk back
        // until one is. Any cron time at least `jitter` before `now` is due,
        // so the walk is short: at most jitter / period steps (capped for a
        // jitter far longer than the period, which makes little sense).
        let mut inclusive = true;
        for _ in 0..10_000 {
            let at = self.previous_at_or_before(from, inclusive)?;
            if self.not_before.is_some_and(|b| at < b) {
                return None;
            }
            let slot = self.slot(key, at);
            if slot.due_at <= now && self.in_range(at) {
                return Some(slot);
            }
            from = at;
            inclusive = false;
        }
        None
    }

    /// The first slot whose cron time is after `t`, within the range; `None`
    /// when the schedule has ended.
    pub fn next_after_time(&self, key: &str, t: Timestamp) -> Option<Slot> {
        let start = match self.not_before {
            // The first slot may be `not_before` itself.
            Some(b) if b > t => b.checked_sub(SignedDuration::from_secs(1)).unwrap_or(b),
            _ => t,
        };
        let at = self.next_after(start)?;
        self.until.is_none_or(|u| at <= u).then(|| self.slot(key, at))
    }

    /// When a slot's cron time is, in the schedule's zone, for people:
    /// `Tue 2026-12-22 10:00 Europe/Paris`.
    pub fn local_text(&self, t: Timestamp) -> String {
        format!(
            "{} {}",
            self.zoned(t).strftime("%a %Y-%m-%d %H:%M"),
            self.timezone_name
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn decode(text: &str) -> Result<Schedule, String> {
        let path = Path::new("e.yaml");
        let root = yaml::parse(path, text).map_err(|e| e.to_string())?;
        let mut d = Decoder::new();
        let m = d.open_map(&root, "test").expect("a mapping");
        let s = decode_schedule(&mut d, m.get("schedule").expect("a schedule"));
        d.finish(path).map_err(|e| e.to_string())?;
        Ok(s.expect("decoded"))
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn tuesdays_at_ten_in_paris_are_nine_utc_in_winter_and_eight_in_summer() {
        let s = decode("schedule:\n  cron: \"0 10 * * TUE\"\n  timezone: Europe/Paris\n").unwrap();
        // Wednesday 2026-12-23: the latest slot is Tuesday 22 at 10:00 Paris (09:00Z).
        let slot = s.latest_due("x", at("2026-12-23T12:00:00Z")).unwrap();
        assert_eq!(slot.at, at("2026-12-22T09:00:00Z"));
        assert_eq!(slot.due_at, slot.at);
        let next = s.next_after_time("x", slot.at).unwrap();
        assert_eq!(next.at, at("2026-12-29T09:00:00Z"));
        // In July, Paris is UTC+2.
        let july = s.latest_due("x", at("2026-07-08T00:00:00Z")).unwrap();
        assert_eq!(july.at, at("2026-07-07T08:00:00Z"));
        assert_eq!(s.local_text(july.at), "Tue 2026-07-07 10:00 Europe/Paris");
    }

    #[test]
    fn jitter_is_the_same_for_a_slot_everywhere_and_within_its_bound() {
        let s = decode("schedule: { cron: \"0 * * * *\", jitter: 10m }\n").unwrap();
        let t = at("2026-12-22T09:00:00Z");
        let j = s.jitter_of("exp", t);
        assert_eq!(j, s.jitter_of("exp", t));
        assert!(j < Duration::from_secs(600));
        // Before its jittered due time, the slot is not due; the one before is.
        let due = t.checked_add(SignedDuration::try_from(j).unwrap()).unwrap();
        let just_before = due.checked_sub(SignedDuration::from_millis(1)).unwrap();
        if j > Duration::ZERO {
            assert_eq!(
                s.latest_due("exp", just_before).unwrap().at,
                at("2026-12-22T08:00:00Z")
            );
        }
        assert_eq!(s.latest_due("exp", due).unwrap().at, t);
    }

    #[test]
    fn a_jitter_longer_than_the_period_still_finds_the_latest_due_slot() {
        let s = decode("schedule: { cron: \"* * * * *\", jitter: 30m }\n").unwrap();
        let now = at("2026-12-22T09:00:00Z");
        let slot = s.latest_due("exp", now).expect("a due slot");
        assert!(slot.due_at <= now && slot.at <= now);
        assert!(slot.at >= at("2026-12-22T08:29:00Z"), "{slot:?}");
    }

    #[test]
    fn a_slot_in_the_spring_forward_gap_still_happens_once() {
        // 02:30 does not exist in Paris on 2027-03-28 (02:00 -> 03:00).
        let s = decode("schedule: { cron: \"30 2 * * *\", timezone: Europe/Paris }\n").unwrap();
        let before = at("2027-03-27T12:00:00Z");
        let next = s.next_after_time("x", before).expect("a slot");
        let after = s.next_after_time("x", next.at).expect("the slot after");
        assert!(
            next.at > before && next.at < at("2027-03-28T12:00:00Z"),
            "{next:?}"
        );
        assert!(
            after.at > at("2027-03-28T12:00:00Z"),
            "one slot on the day of the gap: {after:?}"
        );
    }

    #[test]
    fn not_before_and_until_bound_the_slots() {
        let s = decode("schedule: { cron: \"0 10 * * *\", not_before: 2026-12-10, until: \"2026-12-12\" }\n")
            .unwrap();
        assert_eq!(s.latest_due("x", at("2026-12-09T12:00:00Z")), None);
        assert_eq!(
            s.next_after_time("x", at("2026-12-01T00:00:00Z")).unwrap().at,
            at("2026-12-10T10:00:00Z")
        );
        // `until` a date: the whole day is included; after it, the last slot stays the latest.
        assert_eq!(
            s.latest_due("x", at("2027-01-05T00:00:00Z")).unwrap().at,
            at("2026-12-12T10:00:00Z")
        );
        assert_eq!(s.next_after_time("x", at("2026-12-12T10:00:00Z")), None);
    }

    #[test]
    fn an_invalid_cron_expression_points_at_its_value() {
        let e = decode("name: x\nschedule:\n  cron: \"0 25 * * TUE\"\n").unwrap_err();
        assert!(
            e.starts_with("e.yaml:3:9: error: schedule.cron: invalid cron expression `0 25 * * TUE`"),
            "{e}"
        );
        assert!(e.contains("help: expected five fields"), "{e}");
        let e = decode("schedule:\n  cron: \"* * * *\"\n").unwrap_err();
        assert!(
            e.contains("e.yaml:2:9: error: schedule.cron: invalid cron expression"),
            "{e}"
        );
        let e = decode("schedule:\n  cron: \"0 0 30 2 *\"\n").unwrap_err();
        assert!(
            e.contains("e.yaml:2:9: error: schedule.cron: `0 0 30 2 *` never fires"),
            "{e}"
        );
    }

    #[test]
    fn zones_durations_dates_and_keys_are_checked_with_positions() {
        let e = decode(
            "schedule:\n  cron: \"0 10 * * TUE\"\n  timezone: Europe/Pariss\n  jitter: 10 minutes\n  not_before: 2026-13-01\n  every: week\n",
        )
        .unwrap_err();
        for expected in [
            "e.yaml:3:13: error: schedule.timezone: unknown time zone `Europe/Pariss`\n  help: did you mean `Europe/Paris`?",
            "e.yaml:4:11: error: schedule.jitter: malformed duration",
            "e.yaml:5:15: error: schedule.not_before: malformed date or time `2026-13-01`",
            "e.yaml:6:3: error: unknown key `every` in schedule",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        let e = decode("schedule: { not_before: 2026-12-10 }\n").unwrap_err();
        assert!(
            e.contains("e.yaml:1:11: error: schedule: missing required key `cron`"),
            "{e}"
        );
        let e = decode("schedule: { cron: \"@daily\", not_before: 2026-12-10, until: 2026-12-01 }\n")
            .unwrap_err();
        assert!(e.contains("schedule.until: "), "{e}");
    }
}
