//! Tolerances: the comparisons written in `expect` and `threshold`
//! (`< 300`, `<= 0.01`, `> 50`, `== 0`, `between 10 and 20`), the ones
//! relative to the baseline measured in the same run (`< baseline * 1.2`,
//! `within 10% of baseline`), which become fixed once the baseline is known,
//! and the ones relative to the control (`> control + 20`, `<= control *
//! 1.2`, `within 20% of control`), resolved anew for every datapoint against
//! the control's datapoint of the same period.

use std::fmt;

/// A comparison against fixed numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// value < x
    Lt(f64),
    /// value <= x
    Le(f64),
    /// value > x
    Gt(f64),
    /// value >= x
    Ge(f64),
    /// value == x
    Eq(f64),
    /// lo <= value <= hi
    Between(f64, f64),
}

/// What a tolerance looks like, for error messages.
pub const SYNTAX: &str = "expected a comparison: `< N`, `<= N`, `> N`, `>= N`, `== N`, `between A and B`, \
or relative to this run's baseline: `< baseline * 1.2`, `> baseline - 5`, `within 10% of baseline`, \
or to the control: `> control + 20`, `<= control * 1.2`, `within 20% of control`";

/// What a relative tolerance is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// The mean of this run's baseline, measured once.
    Baseline,
    /// The control's datapoint of the same period, every datapoint.
    Control,
}

impl Reference {
    /// The word in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Reference::Baseline => "baseline",
            Reference::Control => "control",
        }
    }
}

/// A tolerance as written: fixed, or relative to the baseline or the control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// Fixed numbers.
    Fixed(Tolerance),
    /// `OP REF [* k | + k | - k]`.
    Relative {
        /// The baseline or the control.
        of: Reference,
        /// The operator: `<`, `<=`, `>`, `>=` or `==`.
        op_text: &'static str,
        /// Multiplies the reference.
        factor: f64,
        /// Added after multiplying.
        offset: f64,
    },
    /// `within P% of REF`: between ref*(1-P/100) and ref*(1+P/100).
    Within(f64, Reference),
}

impl Expect {
    /// Parses the text of `expect` or `threshold`.
    pub fn parse(text: &str) -> Result<Expect, String> {
        let t = text.trim();
        let of = match (t.contains("baseline"), t.contains("control")) {
            (false, false) => return Tolerance::parse(t).map(Expect::Fixed),
            (true, true) => {
                return Err("relative to the baseline or to the control, not both".to_string());
            }
            (true, false) => Reference::Baseline,
            (false, true) => Reference::Control,
        };
        let word = of.as_str();
        if let Some(rest) = t.strip_prefix("within") {
            let rest = rest.trim();
            let pct = rest
                .strip_suffix(&format!("of {word}"))
                .map(str::trim)
                .and_then(|p| p.strip_suffix('%'))
                .ok_or_else(|| format!("expected `within P% of {word}`, e.g. `within 10% of {word}`"))?;
            let p = number(pct)?;
            if !(0.0..=1000.0).contains(&p) {
                return Err(format!("`{p}%` is not a percentage between 0 and 1000"));
            }
            return Ok(Expect::Within(p, of));
        }
        for (op_text, _) in OPERATORS {
            let Some(rest) = t.strip_prefix(op_text) else {
                continue;
            };
            let rest = rest.trim();
            let Some(arith) = rest.strip_prefix(word) else {
                return Err(format!(
                    "expected `{op_text} {word}`, optionally followed by `* K`, `+ K` or `- K`"
                ));
            };
            let arith = arith.trim();
            let (factor, offset) = if arith.is_empty() {
                (1.0, 0.0)
            } else if let Some(k) = arith.strip_prefix('*') {
                (number(k)?, 0.0)
            } else if let Some(k) = arith.strip_prefix('+') {
                (1.0, number(k)?)
            } else if let Some(k) = arith.strip_prefix('-') {
                (1.0, -number(k)?)
            } else {
                return Err(format!(
                    "after `{word}`: expected `* K`, `+ K` or `- K`, found `{arith}`"
                ));
            };
            return Ok(Expect::Relative {
                of,
                op_text,
                factor,
                offset,
            });
        }
        Err(SYNTAX.to_string())
    }

    /// What the tolerance is relative to, if anything.
    pub fn reference(&self) -> Option<Reference> {
        match self {
            Expect::Fixed(_) => None,
            Expect::Relative { of, .. } | Expect::Within(_, of) => Some(*of),
        }
    }

    /// Whether the baseline must be measured before this can be judged.
    pub fn needs_baseline(&self) -> bool {
        self.reference() == Some(Reference::Baseline)
    }

    /// Whether every datapoint is judged against the control's of the same period.
    pub fn against_control(&self) -> bool {
        self.reference() == Some(Reference::Control)
    }

    /// The fixed tolerance, given the reference's value (this run's baseline,
    /// or the control's datapoint).
    pub fn resolve(&self, reference: f64) -> Tolerance {
        match *self {
            Expect::Fixed(t) => t,
            Expect::Relative {
                op_text,
                factor,
                offset,
                ..
            } => {
                let op = OPERATORS
                    .iter()
                    .find(|(t, _)| *t == op_text)
                    .map(|(_, op)| *op)
                    .unwrap_or(Tolerance::Eq);
                op(reference * factor + offset)
            }
            Expect::Within(p, _) => {
                let d = reference * p / 100.0;
                let (a, b) = (reference - d, reference + d);
                Tolerance::Between(a.min(b), a.max(b))
            }
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Fixed(t) => t.fmt(f),
            Expect::Relative {
                of,
                op_text,
                factor,
                offset,
            } => {
                write!(f, "{op_text} {}", of.as_str())?;
                if *factor != 1.0 {
                    write!(f, " * {factor}")?;
                }
                if *offset > 0.0 {
                    write!(f, " + {offset}")?;
                } else if *offset < 0.0 {
                    write!(f, " - {}", -offset)?;
                }
                Ok(())
            }
            Expect::Within(p, of) => write!(f, "within {p}% of {}", of.as_str()),
        }
    }
}

/// Builds a tolerance from the number after its operator.
type MakeTolerance = fn(f64) -> Tolerance;

const OPERATORS: &[(&str, MakeTolerance)] = &[
    ("<=", Tolerance::Le),
    (">=", Tolerance::Ge),
    ("==", Tolerance::Eq),
    ("<", Tolerance::Lt),
    (">", Tolerance::Gt),
];

fn number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{}` is not a number", s.trim()))
}

impl Tolerance {
    /// Parses the text of `expect` or `threshold`.
    pub fn parse(text: &str) -> Result<Tolerance, String> {
        let t = text.trim();
        let num = number;
        if let Some(rest) = t.strip_prefix("between") {
            let (lo, hi) = rest
                .split_once(" and ")
                .ok_or_else(|| "`between` needs `A and B`".to_string())?;
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!(
                    "`between {lo} and {hi}`: the lower bound is above the upper bound"
                ));
            }
            return Ok(Tolerance::Between(lo, hi));
        }
        for (op, make) in OPERATORS {
            if let Some(rest) = t.strip_prefix(op) {
                return Ok(make(num(rest)?));
            }
        }
        Err(SYNTAX.to_string())
    }

    /// The numbers a chart draws as lines for this tolerance.
    pub fn limits(self) -> Vec<f64> {
        match self {
            Tolerance::Lt(x) | Tolerance::Le(x) | Tolerance::Gt(x) | Tolerance::Ge(x) | Tolerance::Eq(x) => {
                vec![x]
            }
            Tolerance::Between(lo, hi) => vec![lo, hi],
        }
    }

    /// Whether `value` satisfies the comparison.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Tolerance::Lt(x) => value < x,
            Tolerance::Le(x) => value <= x,
            Tolerance::Gt(x) => value > x,
            Tolerance::Ge(x) => value >= x,
            Tolerance::Eq(x) => value == x,
            Tolerance::Between(lo, hi) => (lo..=hi).contains(&value),
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Lt(x) => write!(f, "< {x}"),
            Tolerance::Le(x) => write!(f, "<= {x}"),
            Tolerance::Gt(x) => write!(f, "> {x}"),
            Tolerance::Ge(x) => write!(f, ">= {x}"),
            Tolerance::Eq(x) => write!(f, "== {x}"),
            Tolerance::Between(lo, hi) => write!(f, "between {lo} and {hi}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_operator() {
        assert_eq!(Tolerance::parse("< 300"), Ok(Tolerance::Lt(300.0)));
        assert_eq!(Tolerance::parse("<=0.01"), Ok(Tolerance::Le(0.01)));
        assert_eq!(Tolerance::parse("> 50"), Ok(Tolerance::Gt(50.0)));
        assert_eq!(Tolerance::parse(">= 3"), Ok(Tolerance::Ge(3.0)));
        assert_eq!(Tolerance::parse("== 0"), Ok(Tolerance::Eq(0.0)));
        assert_eq!(
            Tolerance::parse("between 10 and 20"),
            Ok(Tolerance::Between(10.0, 20.0))
        );
    }

    #[test]
    fn rejects_what_is_not_a_comparison() {
        assert!(Tolerance::parse("300").is_err());
        assert!(
            Tolerance::parse("< fast")
                .unwrap_err()
                .contains("`fast` is not a number")
        );
        assert!(Tolerance::parse("between 20 and 10").is_err());
        assert!(Tolerance::parse("between 10").is_err());
    }

    #[test]
    fn relative_tolerances_resolve_against_the_baseline() {
        let e = Expect::parse("< baseline * 1.2").unwrap();
        assert!(e.needs_baseline());
        assert_eq!(e.resolve(200.0), Tolerance::Lt(240.0));
        assert_eq!(e.to_string(), "< baseline * 1.2");
        assert_eq!(
            Expect::parse(">= baseline - 5").unwrap().resolve(10.0),
            Tolerance::Ge(5.0)
        );
        assert_eq!(
            Expect::parse("<= baseline").unwrap().resolve(3.0),
            Tolerance::Le(3.0)
        );
        assert_eq!(
            Expect::parse("within 10% of baseline").unwrap().resolve(100.0),
            Tolerance::Between(90.0, 110.0)
        );
        assert_eq!(
            Expect::parse("within 50% of baseline").unwrap().resolve(-10.0),
            Tolerance::Between(-15.0, -5.0)
        );
        assert_eq!(
            Expect::parse("< 300").unwrap(),
            Expect::Fixed(Tolerance::Lt(300.0))
        );
        assert!(!Expect::parse("< 300").unwrap().needs_baseline());
    }

    #[test]
    fn rejects_malformed_relative_tolerances() {
        assert!(
            Expect::parse("< baseline ** 2")
                .unwrap_err()
                .contains("is not a number")
        );
        assert!(
            Expect::parse("< baseline / 2")
                .unwrap_err()
                .contains("after `baseline`")
        );
        assert!(Expect::parse("within 10 of baseline").is_err());
        assert!(
            Expect::parse("< 2 * baseline")
                .unwrap_err()
                .contains("expected `< baseline`")
        );
        assert!(Expect::parse("baseline").is_err());
    }

    #[test]
    fn tolerances_relative_to_the_control_resolve_against_each_datapoint() {
        let e = Expect::parse("> control + 20").unwrap();
        assert!(e.against_control() && !e.needs_baseline());
        assert_eq!(e.resolve(3.0), Tolerance::Gt(23.0));
        assert_eq!(e.to_string(), "> control + 20");
        let e = Expect::parse("<= control * 1.2").unwrap();
        assert_eq!(e.resolve(0.05), Tolerance::Le(0.05 * 1.2));
        assert_eq!(
            Expect::parse("within 20% of control").unwrap().resolve(50.0),
            Tolerance::Between(40.0, 60.0)
        );
        assert_eq!(
            Expect::parse("within 20% of control").unwrap().to_string(),
            "within 20% of control"
        );
        assert!(
            Expect::parse("> control * 2 + baseline")
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            Expect::parse("> 2 * control")
                .unwrap_err()
                .contains("expected `> control`")
        );
        assert!(
            Expect::parse("within 20% of baseline control")
                .unwrap_err()
                .contains("not both")
        );
        assert!(Expect::parse("within 20 of control").is_err());
    }

    #[test]
    fn holds_matches_the_operator() {
        assert!(Tolerance::Lt(3.0).holds(2.9) && !Tolerance::Lt(3.0).holds(3.0));
        assert!(Tolerance::Le(3.0).holds(3.0));
        assert!(Tolerance::Between(1.0, 2.0).holds(1.0) && !Tolerance::Between(1.0, 2.0).holds(2.1));
    }
}
