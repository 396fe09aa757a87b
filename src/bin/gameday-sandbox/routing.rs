//! How a load balancer splits its users' requests among target groups, and a
//! target group among its targets. Pure (no I/O), so the split is unit-tested.
//!
//! What an Application Load Balancer does, as far as a simulation needs it:
//! - requests arrive on its listeners; the sandbox cannot know which ports and
//!   paths users ask for, so it gives every listener an equal part of the
//!   balancer's load, and every rule of a listener (its default rule
//!   included) an equal part of the listener's;
//! - a rule that forwards sends its part to its target groups in proportion
//!   to their weights (a plain `TargetGroupArn` forward is one group of
//!   weight 1); a forward whose weights are all 0 reaches no group, and the
//!   balancer answers those requests with a 503; a rule that redirects or
//!   answers itself (fixed response) takes its part off the target groups;
//! - a target group spreads its requests evenly over the targets that can
//!   serve (round robin: in the model, the group's capacity is its serving
//!   targets' together); health checks are taken as instant.

use std::collections::BTreeMap;

/// One target group in a forward action, with its weight (0 to 999 in ELBv2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The target group's ARN.
    pub target_group: String,
    /// Its weight within the rule.
    pub weight: u32,
}

/// What a rule does with the requests it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Forward to these target groups by weight.
    Forward(Vec<Forward>),
    /// Answered by the balancer itself (redirect, fixed response, ...).
    Answer,
}

/// A load balancer as the sandbox routes through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    /// Its name.
    pub name: String,
    /// The `LoadBalancer` dimension of its CloudWatch metrics: `app/NAME/ID`.
    pub dimension: String,
    /// Each listener's rules (the default rule included).
    pub listeners: Vec<Vec<RuleAction>>,
}

/// Where a balancer's requests go, each as a share of all its requests (0 to 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// Per target group ARN: the share forwarded to it.
    pub target_groups: BTreeMap<String, f64>,
    /// Answered by the balancer itself (redirects, fixed responses): not errors.
    pub answered: f64,
    /// Forwarded to no target group (every weight 0, or no listener): 503s from the balancer.
    pub unrouted: f64,
}

impl Balancer {
    /// The share of this balancer's requests each target group receives.
    pub fn split(&self) -> Split {
        let mut out = Split::default();
        let listeners: Vec<&Vec<RuleAction>> = self.listeners.iter().filter(|l| !l.is_empty()).collect();
        if listeners.is_empty() {
            out.unrouted = 1.0;
            return out;
        }
        let per_listener = 1.0 / listeners.len() as f64;
        for rules in listeners {
            let per_rule = per_listener / rules.len() as f64;
            for rule in rules {
                match rule {
                    RuleAction::Answer => out.answered += per_rule,
                    RuleAction::Forward(forwards) => {
                        let total: u32 = forwards.iter().map(|f| f.weight).sum();
                        if total == 0 {
                            out.unrouted += per_rule;
                            continue;
                        }
                        for f in forwards {
                            *out.target_groups.entry(f.target_group.clone()).or_default() +=
                                per_rule * f.weight as f64 / total as f64;
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(pairs: &[(&str, u32)]) -> RuleAction {
        RuleAction::Forward(
            pairs
                .iter()
                .map(|(tg, w)| Forward {
                    target_group: tg.to_string(),
                    weight: *w,
                })
                .collect(),
        )
    }

    fn lb(listeners: Vec<Vec<RuleAction>>) -> Balancer {
        Balancer {
            name: "shop".into(),
            dimension: "app/shop/1".into(),
            listeners,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn a_weighted_forward_gives_each_group_its_weight_over_the_total() {
        // What gameday's `share: 5%` writes: the source 90, each copy 5.
        let s = lb(vec![vec![fwd(&[("web", 90), ("control", 5), ("experiment", 5)])]]).split();
        assert!(close(s.target_groups["web"], 0.90));
        assert!(close(s.target_groups["control"], 0.05));
        assert!(close(s.target_groups["experiment"], 0.05));
        assert_eq!((s.answered, s.unrouted), (0.0, 0.0));
        let one = lb(vec![vec![fwd(&[("web", 1)])]]).split();
        assert!(close(one.target_groups["web"], 1.0));
    }

    #[test]
    fn listeners_and_rules_share_the_load_equally() {
        // Two listeners; the first has a path rule to `api` and a default to `web`,
        // the second redirects everything (HTTP to HTTPS).
        let s = lb(vec![
            vec![
                fwd(&[("api", 1)]),
                fwd(&[("web", 98), ("control", 1), ("experiment", 1)]),
            ],
            vec![RuleAction::Answer],
        ])
        .split();
        assert!(close(s.target_groups["api"], 0.25));
        assert!(close(s.target_groups["web"], 0.25 * 0.98));
        assert!(close(s.target_groups["experiment"], 0.25 * 0.01));
        assert!(close(s.answered, 0.5));
        let total: f64 = s.target_groups.values().sum::<f64>() + s.answered + s.unrouted;
        assert!(close(total, 1.0), "every request goes somewhere: {total}");
    }

    #[test]
    fn a_group_in_several_rules_adds_up() {
        let s = lb(vec![vec![
            fwd(&[("web", 1)]),
            fwd(&[("web", 3), ("experiment", 1)]),
        ]])
        .split();
        assert!(close(s.target_groups["web"], 0.5 + 0.5 * 0.75));
        assert!(close(s.target_groups["experiment"], 0.125));
    }

    #[test]
    fn zero_weights_and_no_listener_reach_no_group() {
        let s = lb(vec![vec![fwd(&[("web", 0), ("experiment", 0)])]]).split();
        assert!(s.target_groups.is_empty() && close(s.unrouted, 1.0));
        let s = lb(vec![vec![fwd(&[("web", 1), ("experiment", 0)])]]).split();
        assert!(close(s.target_groups["web"], 1.0) && close(s.target_groups["experiment"], 0.0));
        assert!(close(lb(Vec::new()).split().unrouted, 1.0));
    }
}
