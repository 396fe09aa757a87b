//! Reads the load balancers the sandbox routes through from the API:
//! Application Load Balancers, their listeners and rules (default rules
//! included), and every target group a rule forwards to with its registered
//! targets. What to do with them is [`crate::routing`]'s job.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerTypeEnum, TargetHealthStateEnum,
};
use gameday::aws::{AwsError, api};

use crate::routing::{Balancer, Forward, RuleAction};

/// A target group some modelled balancer forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// The `TargetGroup` dimension of its CloudWatch metrics: `targetgroup/NAME/ID`.
    pub dimension: String,
    /// Registered targets (instance ids), draining ones left out.
    pub targets: Vec<String>,
}

/// The balancers and the target groups they forward to.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// The modelled balancers.
    pub balancers: Vec<Balancer>,
    /// Every target group one of them forwards to, by ARN.
    pub target_groups: BTreeMap<String, TargetGroup>,
}

/// The CloudWatch dimension value of an ARN: what follows `loadbalancer/`
/// (`app/NAME/ID`) or the resource part of a target group's (`targetgroup/NAME/ID`).
pub fn dimension_of(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    resource
        .strip_prefix("loadbalancer/")
        .unwrap_or(resource)
        .to_string()
}

/// Reads the Application Load Balancers named in `only`, or every one when
/// `only` is empty.
pub async fn read(elb: &Client, only: &[String]) -> Result<Topology, AwsError> {
    let mut topology = Topology::default();
    let mut pages = elb.describe_load_balancers().into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("elasticloadbalancing", "DescribeLoadBalancers"))?;
        for lb in page.load_balancers() {
            let (Some(arn), Some(name)) = (lb.load_balancer_arn(), lb.load_balancer_name()) else {
                continue;
            };
            let application = lb
                .r#type()
                .is_none_or(|t| *t == LoadBalancerTypeEnum::Application);
            if application && (only.is_empty() || only.iter().any(|o| o == name)) {
                found.push((arn.to_string(), name.to_string()));
            }
        }
    }
    for (arn, name) in found {
        let mut listeners = Vec::new();
        let out = elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .send()
            .await
            .map_err(api("elasticloadbalancing", "DescribeListeners"))?;
        for l in out.listeners() {
            let Some(listener) = l.listener_arn() else {
                continue;
            };
            let rules = elb
                .describe_rules()
                .listener_arn(listener)
                .send()
                .await
                .map_err(api("elasticloadbalancing", "DescribeRules"))?;
            listeners.push(
                rules
                    .rules()
                    .iter()
                    .map(|r| rule_action(r.actions()))
                    .collect::<Vec<_>>(),
            );
        }
        topology.balancers.push(Balancer {
            name,
            dimension: dimension_of(&arn),
            listeners,
        });
    }
    let arns: Vec<String> = topology
        .balancers
        .iter()
        .flat_map(|b| b.listeners.iter().flatten())
        .flat_map(|r| match r {
            RuleAction::Forward(f) => f.iter().map(|f| f.target_group.clone()).collect(),
            RuleAction::Answer => Vec::new(),
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for arn in arns {
        let targets = match elb.describe_target_health().target_group_arn(&arn).send().await {
            Ok(out) => out
                .target_health_descriptions()
                .iter()
                .filter(|d| {
                    d.target_health()
                        .and_then(|h| h.state())
                        .is_none_or(|s| *s != TargetHealthStateEnum::Draining)
                })
                .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
                .collect(),
            // A group deleted between the two reads (a run's teardown) has no target.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_target_group_not_found_exception()) =>
            {
                continue;
            }
            Err(e) => return Err(api("elasticloadbalancing", "DescribeTargetHealth")(e)),
        };
        let dimension = dimension_of(&arn);
        let name = dimension.split('/').nth(1).unwrap_or(&dimension).to_string();
        topology.target_groups.insert(
            arn,
            TargetGroup {
                name,
                dimension,
                targets,
            },
        );
    }
    Ok(topology)
}

/// What a rule does: its forward action (the last action of a rule decides;
/// authentication actions come first), or an answer of the balancer's own.
fn rule_action(actions: &[Action]) -> RuleAction {
    let Some(last) = actions.iter().max_by_key(|a| a.order().unwrap_or(0)) else {
        return RuleAction::Answer;
    };
    if last.r#type() != Some(&ActionTypeEnum::Forward) {
        return RuleAction::Answer;
    }
    let weighted: Vec<Forward> = last
        .forward_config()
        .map(|c| c.target_groups())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some(Forward {
                target_group: t.target_group_arn()?.to_string(),
                weight: t.weight().unwrap_or(1).max(0) as u32,
            })
        })
        .collect();
    if !weighted.is_empty() {
        return RuleAction::Forward(weighted);
    }
    RuleAction::Forward(
        last.target_group_arn()
            .map(|arn| Forward {
                target_group: arn.to_string(),
                weight: 1,
            })
            .into_iter()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::{ForwardActionConfig, TargetGroupTuple};

    #[test]
    fn dimensions_are_the_resource_part_of_the_arn() {
        assert_eq!(
            dimension_of(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shop/50dc6c495c0c9188"
            ),
            "app/shop/50dc6c495c0c9188"
        );
        assert_eq!(
            dimension_of(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-web/73e2d6bc24d8a067"
            ),
            "targetgroup/shop-web/73e2d6bc24d8a067"
        );
    }

    #[test]
    fn a_rule_forwards_by_its_weights_or_to_its_one_group() {
        let tuple = |arn: &str, w: i32| {
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                .weight(w)
                .build()
        };
        let weighted = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(tuple("web", 96))
                    .target_groups(tuple("exp", 2))
                    .build(),
            )
            .build();
        let RuleAction::Forward(f) = rule_action(&[weighted]) else {
            panic!("a forward")
        };
        assert_eq!(f.iter().map(|f| f.weight).collect::<Vec<_>>(), vec![96, 2]);
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("web")
            .build();
        assert_eq!(
            rule_action(&[plain]),
            RuleAction::Forward(vec![Forward {
                target_group: "web".into(),
                weight: 1
            }])
        );
        let fixed = Action::builder().r#type(ActionTypeEnum::FixedResponse).build();
        assert_eq!(rule_action(&[fixed]), RuleAction::Answer);
    }
}
