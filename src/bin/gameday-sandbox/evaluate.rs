//! The alarm rules CloudWatch applies, as one pure function: given an alarm's
//! threshold, comparison, M of N and missing-data treatment, and the values of
//! its last N periods, which state should it be in, and why.
//!
//! moto stores alarms but never evaluates them, so without this nothing on a
//! local AWS API ever moves an alarm on its own. Keeping the rules free of I/O
//! lets the unit tests below pin every rule (M of N, each operator, missing
//! data) without a server.
//!
//! Where this differs from CloudWatch (also in the README):
//! - **Evaluation range.** CloudWatch fetches more periods than N when some
//!   are missing and evaluates the most recent real datapoints it finds; here
//!   exactly the last N complete periods are looked at, and a missing one
//!   counts as the alarm's `TreatMissingData` says (`missing` and `ignore`
//!   leave it out of the count).
//! - **Few datapoints.** With `missing`, CloudWatch can alarm on fewer than M
//!   real datapoints when all of them breach; here ALARM always needs M
//!   breaching periods (a missing period treated as `breaching` counts).

use std::fmt;

/// How a datapoint is compared with the threshold (CloudWatch's
/// `ComparisonOperator`, without the anomaly-detection band operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `GreaterThanOrEqualToThreshold`
    GreaterOrEqual,
    /// `GreaterThanThreshold`
    Greater,
    /// `LessThanThreshold`
    Less,
    /// `LessThanOrEqualToThreshold`
    LessOrEqual,
}

impl Comparison {
    /// The operator for CloudWatch's name of it; `None` for the band
    /// operators of anomaly detection, which need a model this sandbox lacks.
    pub fn from_api(name: &str) -> Option<Comparison> {
        Some(match name {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterOrEqual,
            "GreaterThanThreshold" => Comparison::Greater,
            "LessThanThreshold" => Comparison::Less,
            "LessThanOrEqualToThreshold" => Comparison::LessOrEqual,
            _ => return None,
        })
    }

    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Greater => value > threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::GreaterOrEqual => ">=",
            Comparison::Greater => ">",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
        }
    }
}

/// CloudWatch's `TreatMissingData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingData {
    /// `missing` (the default): gaps are not counted; all gaps is INSUFFICIENT_DATA.
    #[default]
    Missing,
    /// `ignore`: gaps are not counted; all gaps keeps the current state.
    Ignore,
    /// `breaching`: a gap counts as a breaching datapoint.
    Breaching,
    /// `notBreaching`: a gap counts as a good datapoint.
    NotBreaching,
}

impl MissingData {
    /// The treatment for CloudWatch's name of it; unknown or absent is `missing`, as in CloudWatch.
    pub fn from_api(name: Option<&str>) -> MissingData {
        match name {
            Some("ignore") => MissingData::Ignore,
            Some("breaching") => MissingData::Breaching,
            Some("notBreaching") => MissingData::NotBreaching,
            _ => MissingData::Missing,
        }
    }
}

/// An alarm state, as SetAlarmState and DescribeAlarms name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `OK`
    Ok,
    /// `ALARM`
    Alarm,
    /// `INSUFFICIENT_DATA`
    InsufficientData,
}

impl State {
    /// The state for its API name, `None` for anything else.
    pub fn from_api(name: &str) -> Option<State> {
        Some(match name {
            "OK" => State::Ok,
            "ALARM" => State::Alarm,
            "INSUFFICIENT_DATA" => State::InsufficientData,
            _ => return None,
        })
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alarm alarms on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// The threshold datapoints are compared with.
    pub threshold: f64,
    /// How they are compared.
    pub comparison: Comparison,
    /// N: how many of the most recent periods are looked at.
    pub evaluation_periods: usize,
    /// M: how many of those must breach for ALARM (at most N).
    pub datapoints_to_alarm: usize,
    /// What a period without a datapoint counts as.
    pub missing: MissingData,
}

/// One period's datapoint: its start (seconds since the epoch) and its value
/// (the alarm's statistic over the period), `None` when nothing was published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    /// Start of the period, seconds since the Unix epoch.
    pub start: i64,
    /// The statistic's value, if the period has data.
    pub value: Option<f64>,
}

/// The verdict on one alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The state the alarm should be in.
    pub state: State,
    /// Starts of the periods counted as breaching, oldest first.
    pub breaching: Vec<i64>,
    /// A sentence for the alarm's StateReason.
    pub reason: String,
}

/// Evaluates `rule` over `periods` (the last N complete periods, oldest
/// first) for an alarm now in `current`.
///
/// - M or more breaching periods (gaps counted per the treatment): ALARM.
/// - Every period missing, and gaps are `missing`: INSUFFICIENT_DATA;
///   `ignore`: the current state stays.
/// - Otherwise: OK.
pub fn evaluate(rule: &Rule, periods: &[Datapoint], current: State) -> Evaluation {
    let m = rule.datapoints_to_alarm.clamp(1, rule.evaluation_periods.max(1));
    let mut breaching = Vec::new();
    let mut counted = 0;
    for p in periods {
        let breach = match (p.value, rule.missing) {
            (Some(v), _) => Some(rule.comparison.breaches(v, rule.threshold)),
            (None, MissingData::Breaching) => Some(true),
            (None, MissingData::NotBreaching) => Some(false),
            (None, MissingData::Missing | MissingData::Ignore) => None,
        };
        if let Some(b) = breach {
            counted += 1;
            if b {
                breaching.push(p.start);
            }
        }
    }
    let n = periods.len();
    let list = describe(periods);
    let test = format!("{} {}", rule.comparison.symbol(), number(rule.threshold));
    let (state, reason) = if breaching.len() >= m {
        (
            State::Alarm,
            format!(
                "{} of the last {n} datapoints breached ({test}; {m} needed): {list}",
                breaching.len()
            ),
        )
    } else if counted == 0 && rule.missing == MissingData::Ignore {
        (
            current,
            format!(
                "no datapoint in the last {n} periods; missing data is ignored, so the state stays {current}"
            ),
        )
    } else if counted == 0 {
        (
            State::InsufficientData,
            format!("no datapoint in the last {n} periods"),
        )
    } else {
        (
            State::Ok,
            format!(
                "{} of the last {n} datapoints breached ({test}; {m} needed for ALARM): {list}",
                breaching.len()
            ),
        )
    };
    Evaluation {
        state,
        breaching,
        reason,
    }
}

/// `12 at 10:27:30Z, - at 10:27:40Z`: each period's value and start.
fn describe(periods: &[Datapoint]) -> String {
    periods
        .iter()
        .map(|p| {
            let at = jiff::Timestamp::from_second(p.start)
                .map(|t| t.strftime("%H:%M:%SZ").to_string())
                .unwrap_or_else(|_| p.start.to_string());
            format!(
                "{} at {at}",
                p.value.map(number).unwrap_or_else(|| "missing".into())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as people write it: no trailing `.0`, at most two decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(comparison: Comparison, m: usize, n: usize, missing: MissingData) -> Rule {
        Rule {
            threshold: 50.0,
            comparison,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            missing,
        }
    }

    fn points(values: &[Option<f64>]) -> Vec<Datapoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Datapoint {
                start: 1_700_000_000 + 10 * i as i64,
                value: *v,
            })
            .collect()
    }

    fn state(r: &Rule, values: &[Option<f64>], current: State) -> State {
        evaluate(r, &points(values), current).state
    }

    #[test]
    fn m_of_n_needs_m_breaching_datapoints_anywhere_in_the_last_n() {
        let r = rule(Comparison::Greater, 2, 3, MissingData::Missing);
        assert_eq!(
            state(&r, &[Some(60.0), Some(10.0), Some(70.0)], State::Ok),
            State::Alarm,
            "2 of 3, not consecutive"
        );
        assert_eq!(
            state(&r, &[Some(60.0), Some(10.0), Some(10.0)], State::Alarm),
            State::Ok,
            "1 of 3 is not enough"
        );
        assert_eq!(
            state(&r, &[Some(60.0), Some(61.0), Some(62.0)], State::Ok),
            State::Alarm
        );
        let one_of_one = rule(Comparison::Greater, 1, 1, MissingData::Missing);
        assert_eq!(state(&one_of_one, &[Some(51.0)], State::Ok), State::Alarm);
    }

    #[test]
    fn the_reason_names_the_breaching_datapoints() {
        let r = rule(Comparison::Greater, 2, 3, MissingData::Missing);
        let e = evaluate(&r, &points(&[Some(60.0), Some(10.0), Some(70.5)]), State::Ok);
        assert_eq!(e.breaching, vec![1_700_000_000, 1_700_000_020]);
        assert!(
            e.reason
                .starts_with("2 of the last 3 datapoints breached (> 50; 2 needed)"),
            "{}",
            e.reason
        );
        assert!(
            e.reason.contains("60 at ") && e.reason.contains("70.50 at ") && e.reason.contains("10 at "),
            "{}",
            e.reason
        );
    }

    #[test]
    fn each_operator_compares_as_its_name_says() {
        let at = |c, v| Comparison::breaches(c, v, 50.0);
        assert!(at(Comparison::Greater, 50.1) && !at(Comparison::Greater, 50.0));
        assert!(at(Comparison::GreaterOrEqual, 50.0) && !at(Comparison::GreaterOrEqual, 49.9));
        assert!(at(Comparison::Less, 49.9) && !at(Comparison::Less, 50.0));
        assert!(at(Comparison::LessOrEqual, 50.0) && !at(Comparison::LessOrEqual, 50.1));
        for (name, op) in [
            ("GreaterThanThreshold", Comparison::Greater),
            ("GreaterThanOrEqualToThreshold", Comparison::GreaterOrEqual),
            ("LessThanThreshold", Comparison::Less),
            ("LessThanOrEqualToThreshold", Comparison::LessOrEqual),
        ] {
            assert_eq!(Comparison::from_api(name), Some(op));
        }
        assert_eq!(
            Comparison::from_api("LessThanLowerOrGreaterThanUpperThreshold"),
            None,
            "band operators are not evaluated"
        );
        // A low-traffic alarm: fewer than 50 requests is the breach.
        let r = rule(Comparison::Less, 1, 1, MissingData::Missing);
        assert_eq!(state(&r, &[Some(3.0)], State::Ok), State::Alarm);
        assert_eq!(state(&r, &[Some(300.0)], State::Alarm), State::Ok);
    }

    #[test]
    fn missing_data_counts_as_the_alarm_says() {
        let gaps = [None, Some(60.0), None];
        let with = |missing| rule(Comparison::Greater, 2, 3, missing);
        assert_eq!(
            state(&with(MissingData::Breaching), &gaps, State::Ok),
            State::Alarm,
            "a gap counts as a breach"
        );
        assert_eq!(
            state(&with(MissingData::NotBreaching), &gaps, State::Ok),
            State::Ok
        );
        assert_eq!(
            state(&with(MissingData::Missing), &gaps, State::Ok),
            State::Ok,
            "gaps are not counted: 1 breach < 2"
        );
        assert_eq!(
            state(&with(MissingData::Ignore), &gaps, State::Alarm),
            State::Ok,
            "one real datapoint is enough to judge"
        );
    }

    #[test]
    fn all_periods_missing() {
        let none = [None, None, None];
        let with = |missing| rule(Comparison::Greater, 2, 3, missing);
        assert_eq!(
            state(&with(MissingData::Missing), &none, State::Ok),
            State::InsufficientData
        );
        assert_eq!(
            state(&with(MissingData::Ignore), &none, State::Alarm),
            State::Alarm,
            "ignore keeps the state"
        );
        assert_eq!(state(&with(MissingData::Ignore), &none, State::Ok), State::Ok);
        assert_eq!(
            state(&with(MissingData::Breaching), &none, State::Ok),
            State::Alarm
        );
        assert_eq!(
            state(&with(MissingData::NotBreaching), &none, State::Alarm),
            State::Ok
        );
        assert_eq!(
            evaluate(&with(MissingData::Missing), &points(&none), State::Ok).reason,
            "no datapoint in the last 3 periods"
        );
    }

    #[test]
    fn api_names_round_trip() {
        for s in [State::Ok, State::Alarm, State::InsufficientData] {
            assert_eq!(State::from_api(s.as_str()), Some(s));
        }
        assert_eq!(MissingData::from_api(None), MissingData::Missing);
        assert_eq!(
            MissingData::from_api(Some("notBreaching")),
            MissingData::NotBreaching
        );
    }
}
