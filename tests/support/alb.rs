//! A workload behind an Application Load Balancer, for the tests and the
//! benchmark of parallel copies that see traffic: two listeners, a rule
//! already weighted over two target groups, the group attached to its
//! target group; and readers of the state a run must leave as it was.

use aws_sdk_elasticloadbalancingv2 as elb;
use elb::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, RuleCondition, TargetGroupTuple,
};

use super::*;

/// A workload behind a load balancer.
pub struct Alb {
    pub elb: elb::Client,
    pub fleet: Fleet,
    pub lb: String,
    /// The workload's target group (the source group is attached to it).
    pub tg: String,
}

pub async fn elb_client() -> elb::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    elb::Client::new(&config)
}

fn forward_to(arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(arn)
        .build()
}

/// A fleet of 3 behind an ALB: listener :80 forwards to the workload's
/// target group; listener :8080 forwards to another target group by default
/// and, for `/api/*`, to both with weights 1 and 1.
pub async fn alb_fleet(c: &Clients) -> Alb {
    let elb = elb_client().await;
    let fleet = fleet_in(c, 3, &["a", "b"]).await;
    let g = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&fleet.group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let subnets: Vec<String> = g.auto_scaling_groups()[0]
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let vpc = c
        .ec2
        .describe_subnets()
        .subnet_ids(&subnets[0])
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()[0]
        .vpc_id()
        .unwrap_or_default()
        .to_string();
    let short = fleet.group.replace("grp-", "");
    let tg = |name: String| {
        let elb = elb.clone();
        let vpc = vpc.clone();
        async move {
            elb.create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .vpc_id(vpc)
                .health_check_path("/health")
                .send()
                .await
                .expect("CreateTargetGroup")
                .target_groups()[0]
                .target_group_arn()
                .unwrap_or_default()
                .to_string()
        }
    };
    let web = tg(format!("w-{short}")).await;
    let other = tg(format!("o-{short}")).await;
    let lb = elb
        .create_load_balancer()
        .name(format!("lb-{short}"))
        .set_subnets(Some(subnets))
        .send()
        .await
        .expect("CreateLoadBalancer")
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap_or_default()
        .to_string();
    elb.create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward_to(&web))
        .send()
        .await
        .expect("CreateListener :80");
    let second = elb
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .default_actions(forward_to(&other))
        .send()
        .await
        .expect("CreateListener :8080")
        .listeners()[0]
        .listener_arn()
        .unwrap_or_default()
        .to_string();
    let both = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&other)
                        .weight(1)
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&web)
                        .weight(1)
                        .build(),
                )
                .build(),
        )
        .build();
    elb.create_rule()
        .listener_arn(&second)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(both)
        .send()
        .await
        .expect("CreateRule");
    c.autoscaling
        .attach_load_balancer_target_groups()
        .auto_scaling_group_name(&fleet.group)
        .target_group_arns(&web)
        .send()
        .await
        .expect("AttachLoadBalancerTargetGroups");
    Alb {
        elb,
        fleet,
        lb,
        tg: web,
    }
}

/// Everything about the load balancer a run must leave exactly as it was:
/// each listener's default actions and rules (every field), the target
/// groups in use, and the workload's registrations.
pub async fn lb_state(a: &Alb) -> String {
    let mut out = String::new();
    let listeners = a
        .elb
        .describe_listeners()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeListeners");
    let mut ls: Vec<_> = listeners.listeners().to_vec();
    ls.sort_by_key(|l| l.port());
    for l in ls {
        out += &format!("listener {:?}: {:?}\n", l.port(), l.default_actions());
        let rules = a
            .elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .send()
            .await
            .expect("DescribeRules");
        for r in rules.rules() {
            out += &format!(
                "  rule {:?} {:?} {:?} {:?}\n",
                r.priority(),
                r.rule_arn(),
                r.conditions(),
                r.actions()
            );
        }
    }
    let tgs = a
        .elb
        .describe_target_groups()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeTargetGroups");
    let mut names: Vec<_> = tgs
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .collect();
    names.sort();
    out += &format!("target groups {names:?}\n");
    let health = a
        .elb
        .describe_target_health()
        .target_group_arn(&a.tg)
        .send()
        .await
        .expect("DescribeTargetHealth");
    let mut reg: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .map(|d| format!("{:?} {:?}", d.target(), d.target_health().and_then(|h| h.state())))
        .collect();
    reg.sort();
    out += &format!("registered {reg:?}\n");
    out
}

/// Target groups a run made (named `gd-...`) that still exist, of `run_id` or any run when empty.
pub async fn copy_target_groups(a: &Alb, run_id: &str) -> Vec<String> {
    let all = a
        .elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    all.target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .filter(|n| n.starts_with(&format!("gd-{run_id}")))
        .map(str::to_string)
        .collect()
}

/// The weights of every forward to the workload's listeners, by target group
/// name: `:80 default` and `:8080 /api/*`.
pub async fn weights(a: &Alb) -> Vec<Vec<(String, i32)>> {
    let mut out = Vec::new();
    let listeners = a
        .elb
        .describe_listeners()
        .load_balancer_arn(&a.lb)
        .send()
        .await
        .expect("DescribeListeners");
    let mut ls: Vec<_> = listeners.listeners().to_vec();
    ls.sort_by_key(|l| l.port());
    let name = |arn: &str| {
        arn.rsplit(":targetgroup/")
            .next()
            .unwrap_or(arn)
            .split('/')
            .next()
            .unwrap_or(arn)
            .to_string()
    };
    let of = |actions: &[Action]| -> Vec<(String, i32)> {
        actions
            .iter()
            .flat_map(|x| match x.forward_config() {
                Some(f) if !f.target_groups().is_empty() => f
                    .target_groups()
                    .iter()
                    .map(|t| {
                        (
                            name(t.target_group_arn().unwrap_or_default()),
                            t.weight().unwrap_or(1),
                        )
                    })
                    .collect::<Vec<_>>(),
                _ => vec![(name(x.target_group_arn().unwrap_or_default()), 1)],
            })
            .collect()
    };
    for l in ls {
        out.push(of(l.default_actions()));
        let rules = a
            .elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .send()
            .await
            .expect("DescribeRules");
        for r in rules.rules() {
            if r.is_default() != Some(true) {
                out.push(of(r.actions()));
            }
        }
    }
    out
}

pub fn traffic_experiment(a: &Alb, traffic: &str, duration: &str, max_duration: &str) -> String {
    format!(
        "version: 1
name: traffic-stop
owner: team-test
hypothesis: the experiment copy rides out a stopped instance
environment:
  mode: parallel
  autoscaling_group: {group}
  capacity: 2
  ready_timeout: 1m
  traffic: {traffic}
guardrails:
  - alarm: {alarm}
faults:
  - name: stop
    action: ec2:stop-instances
    target: {{ select: {{ count: 1 }} }}
    duration: {duration}
timing: {{ interval: 500ms, max_duration: {max_duration} }}
",
        group = a.fleet.group,
        alarm = a.fleet.alarm,
    )
}

/// Waits until the run's experiment copy has a stopped instance (the fault
/// is in effect, so the listener is shifted); returns the run id.
pub async fn wait_mid_fault(c: &Clients, s: &Scratch, a: &Alb) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(run_id) = s.run_id() {
            let name = format!("gd-{run_id}-{}", a.fleet.group);
            let g = c
                .autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(&name)
                .send()
                .await
                .expect("DescribeAutoScalingGroups");
            let ids: Vec<String> = g
                .auto_scaling_groups()
                .iter()
                .flat_map(|g| g.instances())
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if !ids.is_empty() && states(c, &ids).await.iter().any(|s| s == "stopped") {
                return run_id;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no experiment copy with a stopped instance within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
