//! A share of the workload's real traffic for the parallel copies, through
//! its own Application Load Balancer (the pattern of Netflix's ChAP).
//!
//! The source group's target group is found from the group itself; every
//! listener rule of its load balancers that forwards there (default actions
//! included) is rewritten into a weighted forward over the source's target
//! group and the two copies' (one each for the experiment and the control
//! copy), so each copy gets `share` of what the rule sent the source. The
//! rules' exact actions are journaled before they change
//! (the `restore_listener_rule` undo) and written back first on every
//! exit path; the copies' target groups are tagged like the copies, so
//! `gameday cleanup` finds them even when the journal is lost.
//!
//! The arithmetic ([`shifted`]) is pure and unit-tested: a rule forwarding
//! only to the source becomes `source 1000 − 2c, experiment c, control c`
//! with `c = 1000 × share` (exact to 0.1%); a rule already forwarding to
//! several target groups has every weight multiplied by `K = ⌊999 / largest
//! weight⌋` (the API's maximum weight is 999), and each copy takes
//! `c = round(K × w_source × share)` out of the source's scaled weight, so
//! the other target groups keep exactly their traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Tag as ElbTag, TargetDescription, TargetGroup,
    TargetGroupStickinessConfig, TargetGroupTuple,
};
use serde::{Deserialize, Serialize};

use super::{CLONE_OF_TAG, RunTags};
use crate::aws::{Aws, AwsError, Refusal, api, describe_group};
use crate::model::{Share, UndoReport};

/// Tag on a copy's target group: the source target group's ARN, so cleanup
/// can give the copy's weight back without the journal.
pub const TRAFFIC_SOURCE_TAG: &str = "gameday:traffic-source";
/// Tag on a copy's target group: the copy (Auto Scaling group) attached to it.
pub const COPY_TAG: &str = "gameday:copy";
/// The copies' target groups drain for this long on deregistration (the
/// API's default is 300 s, which would hold teardown for five minutes).
const DEREGISTRATION_DELAY_SECONDS: &str = "10";
/// The largest weight a target group may have in a forward action.
const MAX_WEIGHT: i64 = 999;
/// Target group names may be at most this long.
const MAX_TG_NAME: usize = 32;
/// DescribeTags takes at most this many ARNs per call.
const TAGS_PER_CALL: usize = 20;

/// Why the traffic of the copies could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The source group is attached to no target group.
    #[error(
        "Auto Scaling group `{0}` is attached to no target group, so there is no load balancer traffic to share (environment.traffic.share); use `traffic: {{ load: ... }}` or remove `traffic`"
    )]
    NoTargetGroup(String),
    /// The source group is attached to several target groups.
    #[error(
        "Auto Scaling group `{group}` is attached to {} target groups ({}); gameday shares the traffic of exactly one",
        arns.len(), arns.join(", ")
    )]
    SeveralTargetGroups {
        /// The group.
        group: String,
        /// Its target groups.
        arns: Vec<String>,
    },
    /// No listener rule forwards to the source's target group.
    #[error(
        "no listener rule of the load balancer(s) forwards to target group `{0}`, so the copies would get no traffic"
    )]
    NoRule(String),
    /// A rule forwarding to the source has an action gameday does not rewrite.
    #[error(
        "{rule} forwards to the source's target group but also has a `{kind}` action; gameday only rewrites rules whose actions are all `forward`"
    )]
    Unsupported {
        /// The rule, in words.
        rule: String,
        /// The action's type.
        kind: String,
    },
    /// The share gives a copy no weight on a rule.
    #[error("{rule}: a share of {share} of the source's weight rounds to 0; ask for a larger share")]
    ShareTooSmall {
        /// The rule, in words.
        rule: String,
        /// The share.
        share: Share,
    },
    /// A copy's targets did not become healthy in time.
    #[error(
        "target group `{name}` had {healthy} of {wanted} healthy targets after {waited}s (environment.ready_timeout)"
    )]
    NotHealthy {
        /// The target group.
        name: String,
        /// Healthy targets at the deadline.
        healthy: usize,
        /// The copy's capacity.
        wanted: usize,
        /// Seconds waited.
        waited: u64,
    },
}

// Actions as journaled.

/// A `forward` action exactly as the API described it, so it can be written
/// back byte for byte: whichever of `TargetGroupArn` and `ForwardConfig` it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardAction {
    /// The action's order among the rule's actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i32>,
    /// The single target group form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    /// The weighted form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardConfig>,
}

/// A weighted forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardConfig {
    /// Target groups and their weights.
    pub target_groups: Vec<Weighted>,
    /// Target group stickiness, as described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Stickiness>,
}

/// A target group of a weighted forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weighted {
    /// The target group's ARN.
    pub arn: String,
    /// Its weight, if described (the API's default is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Target group stickiness of a weighted forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stickiness {
    /// Whether it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// For how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i32>,
}

impl ForwardAction {
    /// The action as journaled; `Err(type)` for anything but a forward.
    pub fn from_sdk(a: &Action) -> Result<ForwardAction, String> {
        if a.r#type() != Some(&ActionTypeEnum::Forward) {
            return Err(a.r#type().map(|t| t.as_str().to_string()).unwrap_or_default());
        }
        Ok(ForwardAction {
            order: a.order(),
            target_group_arn: a.target_group_arn().map(str::to_string),
            forward: a.forward_config().map(|f| ForwardConfig {
                target_groups: f
                    .target_groups()
                    .iter()
                    .map(|t| Weighted {
                        arn: t.target_group_arn().unwrap_or_default().to_string(),
                        weight: t.weight(),
                    })
                    .collect(),
                stickiness: f.target_group_stickiness_config().map(|s| Stickiness {
                    enabled: s.enabled(),
                    duration_seconds: s.duration_seconds(),
                }),
            }),
        })
    }

    /// The action to send.
    pub fn to_sdk(&self) -> Action {
        let forward = self.forward.as_ref().map(|f| {
            ForwardActionConfig::builder()
                .set_target_groups(Some(
                    f.target_groups
                        .iter()
                        .map(|t| {
                            TargetGroupTuple::builder()
                                .target_group_arn(&t.arn)
                                .set_weight(t.weight)
                                .build()
                        })
                        .collect(),
                ))
                .set_target_group_stickiness_config(f.stickiness.as_ref().map(|s| {
                    TargetGroupStickinessConfig::builder()
                        .set_enabled(s.enabled)
                        .set_duration_seconds(s.duration_seconds)
                        .build()
                }))
                .build()
        });
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .set_order(self.order)
            .set_target_group_arn(self.target_group_arn.clone())
            .set_forward_config(forward)
            .build()
    }

    /// The target groups it forwards to, with their weights (1 when not given).
    pub fn weights(&self) -> Vec<(String, i64)> {
        match (&self.forward, &self.target_group_arn) {
            (Some(f), _) if !f.target_groups.is_empty() => f
                .target_groups
                .iter()
                .map(|t| (t.arn.clone(), i64::from(t.weight.unwrap_or(1))))
                .collect(),
            (_, Some(arn)) => vec![(arn.clone(), 1)],
            _ => Vec::new(),
        }
    }

    /// Whether it forwards to `arn` with a weight above zero.
    pub fn sends_to(&self, arn: &str) -> bool {
        self.weights().iter().any(|(a, w)| a == arn && *w > 0)
    }
}

/// The actions in words: `tg-a 1` or `tg-a 979, gd-…-e 10, gd-…-c 10`.
pub fn describe_actions(actions: &[ForwardAction]) -> String {
    actions
        .iter()
        .map(|a| {
            a.weights()
                .iter()
                .map(|(arn, w)| format!("{} {w}", tg_name(arn)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A target group's name, from its ARN (`...:targetgroup/NAME/ID`).
pub fn tg_name(arn: &str) -> &str {
    arn.rsplit(":targetgroup/")
        .next()
        .and_then(|t| t.split('/').next())
        .unwrap_or(arn)
}

/// The `TargetGroup` dimension of `AWS/ApplicationELB` for a target group:
/// the tail of its ARN, `targetgroup/NAME/ID`.
pub fn tg_dimension(arn: &str) -> String {
    arn.split_once(':')
        .and_then(|_| arn.rsplit_once(":targetgroup/"))
        .map(|(_, tail)| format!("targetgroup/{tail}"))
        .unwrap_or_else(|| arn.to_string())
}

/// The `LoadBalancer` dimension of `AWS/ApplicationELB` for a load balancer:
/// the tail of its ARN after `loadbalancer/`, e.g. `app/NAME/ID`.
pub fn lb_dimension(arn: &str) -> String {
    arn.rsplit_once(":loadbalancer/")
        .map(|(_, tail)| tail.to_string())
        .unwrap_or_else(|| arn.to_string())
}

// The arithmetic.

/// The actions with the copies' share taken out of the source's weight (see
/// the module docs); actions that do not forward to the source are unchanged.
/// Also returns, per action, the share of the rule's requests each copy gets.
pub fn shifted(
    actions: &[ForwardAction],
    source: &str,
    experiment: &str,
    control: &str,
    share: Share,
    rule: &str,
) -> Result<(Vec<ForwardAction>, f64), TrafficError> {
    let mut out = Vec::new();
    let mut reach = 0.0;
    for a in actions {
        let weights = a.weights();
        let Some(ws) = weights.iter().find(|(arn, _)| arn == source).map(|(_, w)| *w) else {
            out.push(a.clone());
            continue;
        };
        if ws <= 0 {
            out.push(a.clone());
            continue;
        }
        let (k, source_total) = if weights.len() == 1 {
            (1, 1000)
        } else {
            let max = weights.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
            let k = (MAX_WEIGHT / max).max(1);
            (k, ws * k)
        };
        let c = (source_total * i64::from(share.0) + 500) / 1000;
        if c == 0 {
            return Err(TrafficError::ShareTooSmall {
                rule: rule.to_string(),
                share,
            });
        }
        let mut groups: Vec<Weighted> = weights
            .iter()
            .map(|(arn, w)| Weighted {
                arn: arn.clone(),
                weight: Some(if arn == source {
                    source_total - 2 * c
                } else {
                    w * k
                } as i32),
            })
            .collect();
        groups.push(Weighted {
            arn: experiment.to_string(),
            weight: Some(c as i32),
        });
        groups.push(Weighted {
            arn: control.to_string(),
            weight: Some(c as i32),
        });
        let total: i64 = groups.iter().map(|g| i64::from(g.weight.unwrap_or(0))).sum();
        reach = c as f64 / total as f64;
        out.push(ForwardAction {
            order: a.order,
            target_group_arn: None,
            forward: Some(ForwardConfig {
                target_groups: groups,
                stickiness: a.forward.as_ref().and_then(|f| f.stickiness.clone()),
            }),
        });
    }
    Ok((out, reach))
}

/// The actions with `copy` taken out and its weight given back to `source`,
/// for cleanup without the journal: weights are divided by their greatest
/// common divisor, and a forward left with one target group takes the
/// plain `TargetGroupArn` form (unless stickiness is on).
pub fn unshifted(actions: &[ForwardAction], copy: &str, source: &str) -> Vec<ForwardAction> {
    actions
        .iter()
        .map(|a| {
            let weights = a.weights();
            let Some(wc) = weights.iter().find(|(arn, _)| arn == copy).map(|(_, w)| *w) else {
                return a.clone();
            };
            let mut left: Vec<(String, i64)> = weights.into_iter().filter(|(arn, _)| arn != copy).collect();
            match left.iter_mut().find(|(arn, _)| arn == source) {
                Some((_, w)) => *w += wc,
                None => left.push((source.to_string(), wc)),
            }
            let g = left.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
            let sticky = a
                .forward
                .as_ref()
                .and_then(|f| f.stickiness.clone())
                .filter(|s| s.enabled == Some(true));
            if left.len() == 1 && sticky.is_none() {
                return ForwardAction {
                    order: a.order,
                    target_group_arn: Some(left[0].0.clone()),
                    forward: None,
                };
            }
            ForwardAction {
                order: a.order,
                target_group_arn: None,
                forward: Some(ForwardConfig {
                    target_groups: left
                        .into_iter()
                        .map(|(arn, w)| Weighted {
                            arn,
                            weight: Some((w / g) as i32),
                        })
                        .collect(),
                    stickiness: a.forward.as_ref().and_then(|f| f.stickiness.clone()),
                }),
            }
        })
        .collect()
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

// Discovery (read-only).

/// One listener rule, or a listener's default actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// The listener.
    pub listener_arn: String,
    /// The rule; `None`: the listener's default actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_arn: Option<String>,
    /// In words: `HTTP:80 default` or `HTTP:80 rule 10`.
    pub label: String,
}

/// A rule that forwards to the source, with its actions as described.
#[derive(Debug, Clone)]
pub struct SourceRule {
    /// Which rule.
    pub rule: RuleRef,
    /// Its actions, exactly.
    pub actions: Vec<ForwardAction>,
}

/// What sharing the source's traffic involves, read before anything changes.
#[derive(Debug, Clone)]
pub struct SourceTraffic {
    /// The source's target group.
    pub target_group: TargetGroup,
    /// Its load balancers' ARNs.
    pub load_balancers: Vec<String>,
    /// The rules that forward to it.
    pub rules: Vec<SourceRule>,
}

impl SourceTraffic {
    /// The source target group's ARN.
    pub fn arn(&self) -> &str {
        self.target_group.target_group_arn().unwrap_or_default()
    }
}

/// The one target group `group` is attached to, if any (read-only).
pub async fn source_target_group(aws: &Aws, group: &str) -> Result<Option<TargetGroup>, TrafficError> {
    let Some(g) = describe_group(aws, group).await? else {
        return Ok(None);
    };
    let arns = g.target_group_arns();
    let arn = match arns {
        [] => return Ok(None),
        [one] => one.clone(),
        _ => {
            return Err(TrafficError::SeveralTargetGroups {
                group: group.to_string(),
                arns: arns.to_vec(),
            });
        }
    };
    let out = aws
        .elbv2
        .describe_target_groups()
        .target_group_arns(&arn)
        .send()
        .await
        .map_err(api("elasticloadbalancing", "DescribeTargetGroups"))?;
    Ok(out.target_groups().first().cloned())
}

/// Finds the source group's target group and every rule forwarding to it.
pub async fn discover(aws: &Aws, group: &str) -> Result<SourceTraffic, TrafficError> {
    let tg = source_target_group(aws, group)
        .await?
        .ok_or_else(|| TrafficError::NoTargetGroup(group.to_string()))?;
    let arn = tg.target_group_arn().unwrap_or_default().to_string();
    let mut load_balancers = tg.load_balancer_arns().to_vec();
    // moto lists a load balancer once per rule that uses the target group.
    load_balancers.sort();
    load_balancers.dedup();
    let mut rules = Vec::new();
    for lb in &load_balancers {
        let listeners = aws
            .elbv2
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .map_err(api("elasticloadbalancing", "DescribeListeners"))?;
        for l in listeners.listeners() {
            let listener_arn = l.listener_arn().unwrap_or_default().to_string();
            let name = format!(
                "{}:{}",
                l.protocol().map(|p| p.as_str()).unwrap_or("?"),
                l.port().unwrap_or_default()
            );
            let label = format!("listener {name} default actions");
            let actions = forward_actions(l.default_actions(), &label)?;
            if actions.iter().any(|a| a.sends_to(&arn)) {
                rules.push(SourceRule {
                    rule: RuleRef {
                        listener_arn: listener_arn.clone(),
                        rule_arn: None,
                        label,
                    },
                    actions,
                });
            }
            let described = aws
                .elbv2
                .describe_rules()
                .listener_arn(&listener_arn)
                .send()
                .await
                .map_err(api("elasticloadbalancing", "DescribeRules"))?;
            for r in described.rules() {
                if r.is_default() == Some(true) {
                    continue; // the listener's default actions, handled above
                }
                let label = format!("listener {name} rule {}", r.priority().unwrap_or("?"));
                let actions = forward_actions(r.actions(), &label)?;
                if actions.iter().any(|a| a.sends_to(&arn)) {
                    rules.push(SourceRule {
                        rule: RuleRef {
                            listener_arn: listener_arn.clone(),
                            rule_arn: r.rule_arn().map(str::to_string),
                            label,
                        },
                        actions,
                    });
                }
            }
        }
    }
    if rules.is_empty() {
        return Err(TrafficError::NoRule(tg_name(&arn).to_string()));
    }
    Ok(SourceTraffic {
        target_group: tg,
        load_balancers,
        rules,
    })
}

/// A rule's actions, all forwards, or why gameday will not rewrite it
/// (only when it forwards to something at all).
fn forward_actions(actions: &[Action], rule: &str) -> Result<Vec<ForwardAction>, TrafficError> {
    let mut out = Vec::new();
    let mut other = None;
    for a in actions {
        match ForwardAction::from_sdk(a) {
            Ok(f) => out.push(f),
            Err(kind) => other = Some(kind),
        }
    }
    match other {
        Some(kind) if !out.is_empty() => Err(TrafficError::Unsupported {
            rule: rule.to_string(),
            kind,
        }),
        // Redirects and fixed responses forward nowhere: not the source's rule.
        Some(_) => Ok(Vec::new()),
        None => Ok(out),
    }
}

// Setup calls (each journaled by the engine with its undo).

/// The name of a copy's target group: `gd-<run id>-e` or `-c` (the API
/// allows 32 characters, so the run id alone names it).
pub fn target_group_name(run_id: &str, role: &str) -> String {
    let mut name = format!("gd-{run_id}-{role}");
    if name.len() > MAX_TG_NAME {
        name = format!(
            "gd-{}-{role}",
            &run_id[run_id.len().saturating_sub(MAX_TG_NAME - 5)..]
        );
    }
    name
}

/// Creates the target group `name` with the settings of `like` (protocol,
/// port, VPC, health check; a short deregistration delay), tagged for the
/// run, and attaches the copy `group` to it. Idempotent.
pub async fn create_target_group(
    aws: &Aws,
    like: &TargetGroup,
    name: &str,
    group: &str,
    source_group: &str,
    tags: &RunTags,
) -> Result<(), AwsError> {
    let arn = match find_target_group(aws, name).await? {
        Some(tg) => tg.target_group_arn().unwrap_or_default().to_string(),
        None => {
            let mut req = aws
                .elbv2
                .create_target_group()
                .name(name)
                .set_protocol(like.protocol().cloned())
                .set_protocol_version(like.protocol_version().map(str::to_string))
                .set_port(like.port())
                .set_vpc_id(like.vpc_id().map(str::to_string))
                .set_target_type(like.target_type().cloned())
                .set_health_check_protocol(like.health_check_protocol().cloned())
                .set_health_check_port(like.health_check_port().map(str::to_string))
                .set_health_check_enabled(like.health_check_enabled())
                .set_health_check_path(like.health_check_path().map(str::to_string))
                .set_health_check_interval_seconds(like.health_check_interval_seconds())
                .set_health_check_timeout_seconds(like.health_check_timeout_seconds())
                .set_healthy_threshold_count(like.healthy_threshold_count())
                .set_unhealthy_threshold_count(like.unhealthy_threshold_count())
                .set_matcher(like.matcher().cloned());
            let mut pairs = tags.pairs(source_group);
            pairs.retain(|(k, _)| k != CLONE_OF_TAG);
            pairs.push((CLONE_OF_TAG.to_string(), source_group.to_string()));
            pairs.push((
                TRAFFIC_SOURCE_TAG.to_string(),
                like.target_group_arn().unwrap_or_default().to_string(),
            ));
            pairs.push((COPY_TAG.to_string(), group.to_string()));
            for (k, v) in pairs {
                req = req.tags(ElbTag::builder().key(k).value(v).build());
            }
            let out = req
                .send()
                .await
                .map_err(api("elasticloadbalancing", "CreateTargetGroup"))?;
            out.target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .unwrap_or_default()
                .to_string()
        }
    };
    aws.elbv2
        .modify_target_group_attributes()
        .target_group_arn(&arn)
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(DEREGISTRATION_DELAY_SECONDS)
                .build(),
        )
        .send()
        .await
        .map_err(api("elasticloadbalancing", "ModifyTargetGroupAttributes"))?;
    aws.autoscaling
        .attach_load_balancer_target_groups()
        .auto_scaling_group_name(group)
        .target_group_arns(&arn)
        .send()
        .await
        .map_err(api("autoscaling", "AttachLoadBalancerTargetGroups"))?;
    Ok(())
}

/// The target group named `name`, if it exists.
pub async fn find_target_group(aws: &Aws, name: &str) -> Result<Option<TargetGroup>, AwsError> {
    match aws.elbv2.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) => {
            let e = AwsError::from_sdk("elasticloadbalancing", "DescribeTargetGroups", e);
            if e.code() == "TargetGroupNotFound" {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Healthy targets of the target group `arn`.
pub async fn healthy_targets(aws: &Aws, arn: &str) -> Result<Vec<String>, AwsError> {
    let out = aws
        .elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(api("elasticloadbalancing", "DescribeTargetHealth"))?;
    let mut ids: Vec<String> = out
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .is_some_and(|s| s.as_str() == "healthy")
        })
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Waits until the target group `name` has `wanted` healthy targets;
/// `progress` hears each count. To stop early, drop the future.
pub async fn wait_healthy(
    aws: &Aws,
    name: &str,
    wanted: usize,
    timeout: Duration,
    progress: impl Fn(usize),
) -> Result<String, TrafficError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut last = usize::MAX;
    loop {
        let tg = find_target_group(aws, name).await?;
        let arn = tg.and_then(|t| t.target_group_arn().map(str::to_string));
        let healthy = match &arn {
            Some(a) => healthy_targets(aws, a).await?.len(),
            None => 0,
        };
        if healthy != last {
            progress(healthy);
            last = healthy;
        }
        if let Some(a) = arn
            && healthy >= wanted
        {
            return Ok(a);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(TrafficError::NotHealthy {
                name: name.to_string(),
                healthy,
                wanted,
                waited: waited.as_secs(),
            });
        }
        tokio::time::sleep(pause.min(timeout - waited)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Writes `actions` into a rule (or a listener's default actions).
pub async fn write_actions(aws: &Aws, rule: &RuleRef, actions: &[ForwardAction]) -> Result<(), AwsError> {
    let sdk: Vec<Action> = actions.iter().map(ForwardAction::to_sdk).collect();
    match &rule.rule_arn {
        Some(arn) => {
            aws.elbv2
                .modify_rule()
                .rule_arn(arn)
                .set_actions(Some(sdk))
                .send()
                .await
                .map_err(api("elasticloadbalancing", "ModifyRule"))?;
        }
        None => {
            aws.elbv2
                .modify_listener()
                .listener_arn(&rule.listener_arn)
                .set_default_actions(Some(sdk))
                .send()
                .await
                .map_err(api("elasticloadbalancing", "ModifyListener"))?;
        }
    }
    Ok(())
}

/// Puts a rule's recorded actions back. A rule or listener that no longer
/// exists is reported gone. Idempotent.
pub async fn restore_actions(
    aws: &Aws,
    rule: &RuleRef,
    actions: &[ForwardAction],
) -> Result<UndoReport, AwsError> {
    match write_actions(aws, rule, actions).await {
        Ok(()) => Ok(UndoReport {
            restored: vec![rule.label.clone()],
            ..Default::default()
        }),
        Err(e) if matches!(e.code(), "RuleNotFound" | "ListenerNotFound") => Ok(UndoReport {
            gone: vec![rule.label.clone()],
            ..Default::default()
        }),
        Err(e) => Err(e),
    }
}

/// The tags of target groups, by ARN.
pub async fn target_group_tags(
    aws: &Aws,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AwsError> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(TAGS_PER_CALL) {
        let described = aws
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(api("elasticloadbalancing", "DescribeTags"))?;
        for d in described.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                .collect();
            out.insert(d.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    Ok(out)
}

/// Detaches a copy's target group from its group, deregisters what is left
/// in it, and deletes it. Refuses a target group without the run tag: it
/// must never delete the workload's own. Idempotent.
pub async fn delete_target_group(aws: &Aws, name: &str, group: Option<&str>) -> Result<UndoReport, AwsError> {
    let Some(tg) = find_target_group(aws, name).await? else {
        return Ok(UndoReport {
            gone: vec![name.to_string()],
            ..Default::default()
        });
    };
    let arn = tg.target_group_arn().unwrap_or_default().to_string();
    let tags = target_group_tags(aws, std::slice::from_ref(&arn)).await?;
    if !tags.get(&arn).is_some_and(|t| t.contains_key(super::RUN_ID_TAG)) {
        return Err(AwsError::refused(
            "elasticloadbalancing",
            "DeleteTargetGroup",
            Refusal::NotAGamedayClone,
            format!(
                "refusing to delete target group `{name}`: it has no `{}` tag, so gameday did not create it",
                super::RUN_ID_TAG
            ),
        ));
    }
    if let Some(g) = group
        && describe_group(aws, g).await?.is_some()
    {
        aws.autoscaling
            .detach_load_balancer_target_groups()
            .auto_scaling_group_name(g)
            .target_group_arns(&arn)
            .send()
            .await
            .map_err(api("autoscaling", "DetachLoadBalancerTargetGroups"))?;
    }
    let registered = aws
        .elbv2
        .describe_target_health()
        .target_group_arn(&arn)
        .send()
        .await
        .map_err(api("elasticloadbalancing", "DescribeTargetHealth"))?;
    let targets: Vec<TargetDescription> = registered
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .is_none_or(|s| !matches!(s.as_str(), "unused" | "draining"))
        })
        .filter_map(|d| d.target().cloned())
        .collect();
    if !targets.is_empty() {
        aws.elbv2
            .deregister_targets()
            .target_group_arn(&arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(api("elasticloadbalancing", "DeregisterTargets"))?;
    }
    aws.elbv2
        .delete_target_group()
        .target_group_arn(&arn)
        .send()
        .await
        .map_err(api("elasticloadbalancing", "DeleteTargetGroup"))?;
    Ok(UndoReport {
        restored: vec![name.to_string()],
        ..Default::default()
    })
}

/// For cleanup without the journal: takes the copy's target group `arn` out
/// of every rule of its load balancers, giving its weight back to `source`.
/// Returns the rules changed.
pub async fn release_rules(aws: &Aws, arn: &str, source: &str) -> Result<Vec<String>, AwsError> {
    // The source's load balancers too: a copy's own list may lag (moto
    // updates it only when a rule is created, not modified). Either target
    // group may be gone by now.
    let mut lbs: Vec<String> = Vec::new();
    for tg in [arn, source] {
        match aws
            .elbv2
            .describe_target_groups()
            .target_group_arns(tg)
            .send()
            .await
        {
            Ok(out) => lbs.extend(
                out.target_groups()
                    .iter()
                    .flat_map(|t| t.load_balancer_arns().to_vec()),
            ),
            Err(e) => {
                let e = AwsError::from_sdk("elasticloadbalancing", "DescribeTargetGroups", e);
                if e.code() != "TargetGroupNotFound" {
                    return Err(e);
                }
            }
        }
    }
    lbs.sort();
    lbs.dedup();
    let mut changed = Vec::new();
    for lb in lbs {
        let listeners = aws
            .elbv2
            .describe_listeners()
            .load_balancer_arn(&lb)
            .send()
            .await
            .map_err(api("elasticloadbalancing", "DescribeListeners"))?;
        for l in listeners.listeners() {
            let listener_arn = l.listener_arn().unwrap_or_default().to_string();
            let mut found: Vec<(RuleRef, Vec<ForwardAction>)> = Vec::new();
            let defaults: Vec<ForwardAction> = l
                .default_actions()
                .iter()
                .filter_map(|a| ForwardAction::from_sdk(a).ok())
                .collect();
            if defaults.len() == l.default_actions().len() {
                found.push((
                    RuleRef {
                        listener_arn: listener_arn.clone(),
                        rule_arn: None,
                        label: format!("listener {listener_arn} default actions"),
                    },
                    defaults,
                ));
            }
            let rules = aws
                .elbv2
                .describe_rules()
                .listener_arn(&listener_arn)
                .send()
                .await
                .map_err(api("elasticloadbalancing", "DescribeRules"))?;
            for r in rules.rules() {
                if r.is_default() == Some(true) {
                    continue;
                }
                let actions: Vec<ForwardAction> = r
                    .actions()
                    .iter()
                    .filter_map(|a| ForwardAction::from_sdk(a).ok())
                    .collect();
                if actions.len() == r.actions().len() {
                    found.push((
                        RuleRef {
                            listener_arn: listener_arn.clone(),
                            rule_arn: r.rule_arn().map(str::to_string),
                            label: format!("rule {}", r.rule_arn().unwrap_or_default()),
                        },
                        actions,
                    ));
                }
            }
            for (rule, actions) in found {
                if actions.iter().any(|a| a.weights().iter().any(|(t, _)| t == arn)) {
                    write_actions(aws, &rule, &unshifted(&actions, arn, source)).await?;
                    changed.push(rule.label);
                }
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/aaa";
    const E: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/gd-r-e/bbb";
    const C: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/gd-r-c/ccc";
    const O: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/other/ddd";

    fn plain(arn: &str) -> ForwardAction {
        ForwardAction {
            order: None,
            target_group_arn: Some(arn.into()),
            forward: None,
        }
    }

    fn weighted(groups: &[(&str, i32)]) -> ForwardAction {
        ForwardAction {
            order: Some(1),
            target_group_arn: None,
            forward: Some(ForwardConfig {
                target_groups: groups
                    .iter()
                    .map(|(a, w)| Weighted {
                        arn: a.to_string(),
                        weight: Some(*w),
                    })
                    .collect(),
                stickiness: Some(Stickiness {
                    enabled: Some(false),
                    duration_seconds: None,
                }),
            }),
        }
    }

    fn weights_of(a: &ForwardAction) -> Vec<(String, i64)> {
        a.weights()
            .into_iter()
            .map(|(arn, w)| (tg_name(&arn).to_string(), w))
            .collect()
    }

    fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    #[test]
    fn a_rule_forwarding_only_to_the_source_gives_each_copy_exactly_the_share() {
        for (share, source, copy) in [(10, 980, 10), (50, 900, 50), (1, 998, 1), (499, 2, 499)] {
            let (out, reach) = shifted(&[plain(S)], S, E, C, Share(share), "r").expect("shifts");
            assert_eq!(
                weights_of(&out[0]),
                pairs(&[("web", source), ("gd-r-e", copy), ("gd-r-c", copy)]),
                "{share}"
            );
            assert!(
                (reach - f64::from(share) / 1000.0).abs() < 1e-9,
                "{share}: {reach}"
            );
        }
    }

    #[test]
    fn a_rule_already_weighted_takes_the_share_from_the_source_only() {
        // other 1, web 1: K = 999; web's 999 gives 5% (50) to each copy.
        let (out, reach) = shifted(&[weighted(&[(O, 1), (S, 1)])], S, E, C, Share(50), "r").expect("shifts");
        assert_eq!(
            weights_of(&out[0]),
            pairs(&[("other", 999), ("web", 899), ("gd-r-e", 50), ("gd-r-c", 50)])
        );
        // The other group keeps half of the rule's traffic; each copy 5% of the source's half.
        assert!((reach - 50.0 / 1998.0).abs() < 1e-9);
        assert_eq!(
            out[0].forward.as_ref().and_then(|f| f.stickiness.clone()),
            Some(Stickiness {
                enabled: Some(false),
                duration_seconds: None
            }),
            "stickiness is kept"
        );
        // other 3, web 1: K = 333; web's 333 gives round(3.33) = 3 at 1%.
        let (out, _) = shifted(&[weighted(&[(O, 3), (S, 1)])], S, E, C, Share(10), "r").expect("shifts");
        assert_eq!(
            weights_of(&out[0]),
            pairs(&[("other", 999), ("web", 327), ("gd-r-e", 3), ("gd-r-c", 3)])
        );
    }

    #[test]
    fn rules_not_forwarding_to_the_source_and_too_small_shares() {
        let (out, _) = shifted(&[plain(O)], S, E, C, Share(20), "r").expect("unchanged");
        assert_eq!(out, vec![plain(O)]);
        let (out, _) = shifted(&[weighted(&[(O, 1), (S, 0)])], S, E, C, Share(20), "r").expect("unchanged");
        assert_eq!(out, vec![weighted(&[(O, 1), (S, 0)])]);
        // other 999, web 1: K = 1; 0.1% of 1 rounds to 0.
        assert!(matches!(
            shifted(&[weighted(&[(O, 999), (S, 1)])], S, E, C, Share(1), "r"),
            Err(TrafficError::ShareTooSmall { .. })
        ));
    }

    #[test]
    fn cleanup_gives_the_copies_weight_back_to_the_source() {
        let (out, _) = shifted(&[plain(S)], S, E, C, Share(20), "r").expect("shifts");
        let back = unshifted(&unshifted(&out, E, S), C, S);
        assert_eq!(back, vec![plain(S)]);
        let before = weighted(&[(O, 1), (S, 1)]);
        let (out, _) = shifted(std::slice::from_ref(&before), S, E, C, Share(50), "r").expect("shifts");
        let back = unshifted(&unshifted(&out, C, S), E, S);
        assert_eq!(back, vec![before]);
    }

    #[test]
    fn dimensions_are_the_tails_of_the_arns() {
        assert_eq!(tg_dimension(S), "targetgroup/web/aaa");
        assert_eq!(
            lb_dimension("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/shop/123"),
            "app/shop/123"
        );
        assert_eq!(tg_name(E), "gd-r-e");
        assert_eq!(
            target_group_name("20261202-070007-ab12", "e"),
            "gd-20261202-070007-ab12-e"
        );
        assert!(target_group_name(&"x".repeat(40), "c").len() <= MAX_TG_NAME);
    }

    #[test]
    fn actions_survive_the_journal() {
        let a = weighted(&[(O, 1), (S, 1)]);
        let text = serde_json::to_string(&a).expect("serializes");
        assert_eq!(serde_json::from_str::<ForwardAction>(&text).expect("reads"), a);
        assert_eq!(ForwardAction::from_sdk(&a.to_sdk()), Ok(a));
        assert_eq!(ForwardAction::from_sdk(&plain(S).to_sdk()), Ok(plain(S)));
    }
}
