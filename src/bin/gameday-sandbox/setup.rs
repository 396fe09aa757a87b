//! `setup`: creates (or reuses) the demo fleet: a VPC with subnets in two
//! Availability Zones, a launch template, an Auto Scaling group tagged as a
//! sandbox group, an Application Load Balancer whose HTTP listener forwards
//! to a target group the group is attached to, and the guardrail alarm on
//! the group's error count.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData, ResourceType, TagSpecification};
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag as ElbTag,
    TargetTypeEnum,
};
use gameday::aws::{Aws, AwsError, api};

use crate::alarms::{GROUP_DIMENSION, NAMESPACE};
use crate::fleet::SANDBOX_TAG;

/// The demo alarm's period. 10 s is the shortest a high-resolution alarm
/// may use on CloudWatch, so the demo reacts in seconds and the same alarm
/// would be valid on real AWS (it needs high-resolution metrics, which
/// `serve` publishes).
const ALARM_PERIOD: i32 = 10;
/// More than 50 errors in a 10 s period (5/s) for a fleet of up to 4 is a
/// breach: the healthy service makes about 3 per period, losing a third of
/// the fleet a few more, losing two thirds hundreds. A larger fleet, given
/// a proportionally larger load, makes proportionally more background
/// errors, so the threshold grows with it: 12.5 per instance.
fn alarm_threshold(instances: i32) -> f64 {
    12.5 * instances.max(4) as f64
}

/// Target group health checks every 5 s, 2 failures to be unhealthy: the
/// shortest ALB allows, so a copy attached to its own target group is
/// healthy within seconds (gameday waits for it).
const HEALTH_CHECK_INTERVAL: i32 = 5;

pub async fn setup(aws: &Aws, elb: &ElbClient, group: &str, instances: i32) -> Result<(), AwsError> {
    let existing = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
    let mut size = instances;
    if let Some(g) = existing.auto_scaling_groups().first() {
        size = g.instances().len() as i32;
        println!("reusing Auto Scaling group {group} ({size} instances)");
    } else {
        let subnets = subnets(aws).await?;
        let template = launch_template(aws).await?;
        aws.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(instances)
            .max_size(instances * 2)
            .desired_capacity(instances)
            .vpc_zone_identifier(subnets.join(","))
            .tags(
                Tag::builder()
                    .key("app")
                    .value("shop")
                    .propagate_at_launch(true)
                    .build(),
            )
            .tags(
                Tag::builder()
                    .key("tier")
                    .value("web")
                    .propagate_at_launch(true)
                    .build(),
            )
            .tags(
                Tag::builder()
                    .key(SANDBOX_TAG)
                    .value("true")
                    .propagate_at_launch(true)
                    .build(),
            )
            .send()
            .await
            .map_err(api("autoscaling", "CreateAutoScalingGroup"))?;
        println!("created Auto Scaling group {group} with {instances} instances");
    }
    load_balancer(aws, elb, group).await?;
    let alarm = format!("{group}-5xx-high");
    aws.cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .alarm_description("gameday sandbox: the shop's web tier returns too many errors (evaluated by `gameday-sandbox serve`)")
        .namespace(NAMESPACE)
        .metric_name("Errors")
        .dimensions(Dimension::builder().name(GROUP_DIMENSION).value(group).build())
        .statistic(Statistic::Sum)
        .period(ALARM_PERIOD)
        // 2 of the last 3 periods: one noisy period does not fire it, a real loss does within 20-30 s.
        .evaluation_periods(3)
        .datapoints_to_alarm(2)
        .threshold(alarm_threshold(size))
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .map_err(api("cloudwatch", "PutMetricAlarm"))?;
    println!(
        "guardrail alarm {alarm} is ready (Errors Sum > {} in 2 of 3 periods of {ALARM_PERIOD}s)",
        alarm_threshold(size)
    );
    Ok(())
}

/// The load balancer `<group>-alb` in the sandbox subnets, its HTTP listener
/// on port 80 whose default action forwards to the target group `<group>`,
/// and the group attached to that target group; each reused when present.
async fn load_balancer(aws: &Aws, elb: &ElbClient, group: &str) -> Result<(), AwsError> {
    let subnets = subnets(aws).await?;
    let vpc = aws
        .ec2
        .describe_subnets()
        .subnet_ids(&subnets[0])
        .send()
        .await
        .map_err(api("ec2", "DescribeSubnets"))?
        .subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .unwrap_or_default()
        .to_string();
    let found = elb.describe_target_groups().names(group).send().await;
    let tg = match found.ok().and_then(|o| {
        o.target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)
    }) {
        Some(arn) => arn,
        None => elb
            .create_target_group()
            .name(group)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path("/health")
            .health_check_interval_seconds(HEALTH_CHECK_INTERVAL)
            .health_check_timeout_seconds(2)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .send()
            .await
            .map_err(api("elasticloadbalancing", "CreateTargetGroup"))?
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .unwrap_or_default()
            .to_string(),
    };
    let name = format!("{group}-alb");
    let found = elb.describe_load_balancers().names(&name).send().await;
    let lb = match found.ok().and_then(|o| {
        o.load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .map(str::to_string)
    }) {
        Some(arn) => arn,
        None => elb
            .create_load_balancer()
            .name(&name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .set_subnets(Some(subnets.clone()))
            .tags(ElbTag::builder().key(SANDBOX_TAG).value("true").build())
            .send()
            .await
            .map_err(api("elasticloadbalancing", "CreateLoadBalancer"))?
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .unwrap_or_default()
            .to_string(),
    };
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .map_err(api("elasticloadbalancing", "DescribeListeners"))?;
    if listeners.listeners().is_empty() {
        elb.create_listener()
            .load_balancer_arn(&lb)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(&tg)
                    .build(),
            )
            .send()
            .await
            .map_err(api("elasticloadbalancing", "CreateListener"))?;
    }
    aws.autoscaling
        .attach_load_balancer_target_groups()
        .auto_scaling_group_name(group)
        .target_group_arns(&tg)
        .send()
        .await
        .map_err(api("autoscaling", "AttachLoadBalancerTargetGroups"))?;
    println!(
        "load balancer {name} ({}): its HTTP listener forwards to target group {group} ({}), which {group} is attached to",
        crate::balancer::dimension_of(&lb),
        crate::balancer::dimension_of(&tg)
    );
    Ok(())
}
/// The sandbox VPC's subnets, one per AZ, created on first use.
async fn subnets(aws: &Aws) -> Result<Vec<String>, AwsError> {
    let tagged = Filter::builder()
        .name(format!("tag:{SANDBOX_TAG}"))
        .values("true")
        .build();
    let found = aws
        .ec2
        .describe_subnets()
        .filters(tagged)
        .send()
        .await
        .map_err(api("ec2", "DescribeSubnets"))?;
    let ids: Vec<String> = found
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    if !ids.is_empty() {
        return Ok(ids);
    }
    let tags = |rt: ResourceType| {
        TagSpecification::builder()
            .resource_type(rt)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(SANDBOX_TAG)
                    .value("true")
                    .build(),
            )
            .build()
    };
    let vpc = aws
        .ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc))
        .send()
        .await
        .map_err(api("ec2", "CreateVpc"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    let region = aws.region.clone();
    let mut out = Vec::new();
    for (i, az) in ["a", "b"].iter().enumerate() {
        let s = aws
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.42.{}.0/24", i + 1))
            .availability_zone(format!("{region}{az}"))
            .tag_specifications(tags(ResourceType::Subnet))
            .send()
            .await
            .map_err(api("ec2", "CreateSubnet"))?;
        out.push(
            s.subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string(),
        );
    }
    println!("created VPC {vpc_id} with subnets {}", out.join(", "));
    Ok(out)
}

/// The id of the launch template `name`, if it exists.
async fn existing_launch_template(aws: &Aws, name: &str) -> Option<String> {
    let out = aws
        .ec2
        .describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
        .ok()?;
    out.launch_templates()
        .first()
        .and_then(|t| t.launch_template_id())
        .map(str::to_string)
}

/// The sandbox launch template, created on first use.
async fn launch_template(aws: &Aws) -> Result<String, AwsError> {
    const NAME: &str = "gameday-sandbox-web";
    if let Some(id) = existing_launch_template(aws, NAME).await {
        return Ok(id);
    }
    let images = aws
        .ec2
        .describe_images()
        .send()
        .await
        .map_err(api("ec2", "DescribeImages"))?;
    let image = images
        .images()
        .first()
        .and_then(|i| i.image_id())
        .unwrap_or("ami-12c6146b")
        .to_string();
    let out = aws
        .ec2
        .create_launch_template()
        .launch_template_name(NAME)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        // Two setups on one local API at the same moment: the other one made it.
        Err(e) => match existing_launch_template(aws, NAME).await {
            Some(id) => return Ok(id),
            None => return Err(api("ec2", "CreateLaunchTemplate")(e)),
        },
    };
    Ok(out
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap_or_default()
        .to_string())
}
