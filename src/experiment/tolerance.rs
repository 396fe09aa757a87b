//! Tolerances: the comparisons written in `expect` and `threshold`
//! (`< 300`, `<= 0.01`, `> 50`, `== 0`, `between 10 and 20`).

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
pub const SYNTAX: &str = "expected a comparison: `< N`, `<= N`, `> N`, `>= N`, `== N` or `between A and B`";

impl Tolerance {
    /// Parses the text of `expect` or `threshold`.
    pub fn parse(text: &str) -> Result<Tolerance, String> {
        let t = text.trim();
        let num = |s: &str| -> Result<f64, String> {
            s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("`{}` is not a number", s.trim()))
        };
        if let Some(rest) = t.strip_prefix("between") {
            let (lo, hi) = rest.split_once(" and ").ok_or_else(|| "`between` needs `A and B`".to_string())?;
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!("`between {lo} and {hi}`: the lower bound is above the upper bound"));
            }
            return Ok(Tolerance::Between(lo, hi));
        }
        for (op, make) in [
            ("<=", Tolerance::Le as fn(f64) -> Tolerance),
            (">=", Tolerance::Ge),
            ("==", Tolerance::Eq),
            ("<", Tolerance::Lt),
            (">", Tolerance::Gt),
        ] {
            if let Some(rest) = t.strip_prefix(op) {
                return Ok(make(num(rest)?));
            }
        }
        Err(SYNTAX.to_string())
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
        assert_eq!(Tolerance::parse("between 10 and 20"), Ok(Tolerance::Between(10.0, 20.0)));
    }

    #[test]
    fn rejects_what_is_not_a_comparison() {
        assert!(Tolerance::parse("300").is_err());
        assert!(Tolerance::parse("< fast").unwrap_err().contains("`fast` is not a number"));
        assert!(Tolerance::parse("between 20 and 10").is_err());
        assert!(Tolerance::parse("between 10").is_err());
    }

    #[test]
    fn holds_matches_the_operator() {
        assert!(Tolerance::Lt(3.0).holds(2.9) && !Tolerance::Lt(3.0).holds(3.0));
        assert!(Tolerance::Le(3.0).holds(3.0));
        assert!(Tolerance::Between(1.0, 2.0).holds(1.0) && !Tolerance::Between(1.0, 2.0).holds(2.1));
    }
}
