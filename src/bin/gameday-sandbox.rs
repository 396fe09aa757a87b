//! gameday-sandbox: a demo and test aid, not part of the runner.
//!
//! Creates a small demo workload on an AWS-compatible endpoint (by default it
//! refuses anything but a loopback endpoint such as a local moto server): a
//! VPC, subnets in two Availability Zones, a launch template, an Auto Scaling
//! group with a few instances, and a guardrail alarm. It reuses what already
//! exists, so running it twice is harmless. The runner never depends on it.

use std::process::ExitCode;

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData, ResourceType, TagSpecification};
use clap::{Parser, Subcommand};
use gameday::aws::{api, Aws, AwsError, ConnectOptions};

/// Demo workload for gameday on a local AWS API (moto). Not for production.
///
/// `setup` creates (or reuses) a demo fleet: a VPC with subnets in two
/// Availability Zones, a launch template, an Auto Scaling group and a
/// guardrail alarm on the group's error count.
#[derive(Debug, Parser)]
#[command(name = "gameday-sandbox", version)]
struct Cli {
    /// AWS endpoint (default: AWS_ENDPOINT_URL). Must be a loopback address
    /// unless --i-know-this-is-real-aws is given.
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Allow a non-loopback endpoint (real AWS). It creates real, billed resources.
    #[arg(long, global = true)]
    i_know_this_is_real_aws: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create (or reuse) the demo fleet and its guardrail alarm.
    Setup {
        /// Name of the Auto Scaling group.
        #[arg(long, default_value = "shop-web")]
        group: String,
        /// Number of instances in the group.
        #[arg(long, default_value_t = 3)]
        instances: i32,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = cli.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).unwrap_or_default();
    if !cli.i_know_this_is_real_aws && !is_loopback(&endpoint) {
        eprintln!(
            "error: gameday-sandbox only talks to a local AWS API (a loopback endpoint such as http://127.0.0.1:5000); \
             the endpoint is {}. Pass --i-know-this-is-real-aws to create real resources.",
            if endpoint.is_empty() { "the real AWS (no AWS_ENDPOINT_URL set)" } else { &endpoint }
        );
        return ExitCode::from(2);
    }
    let aws = match Aws::connect(&ConnectOptions { endpoint_url: cli.endpoint_url.clone(), region: cli.region.clone(), profile: None }).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Setup { group, instances } => setup(&aws, &group, instances).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host.strip_prefix('[') { h.split(']').next().unwrap_or("") } else { host.rsplit_once(':').map_or(host, |(h, _)| h) };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

const SANDBOX_TAG: &str = "gameday-sandbox";

async fn setup(aws: &Aws, group: &str, instances: i32) -> Result<(), AwsError> {
    let existing = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(api("autoscaling", "DescribeAutoScalingGroups"))?;
    if let Some(g) = existing.auto_scaling_groups().first() {
        println!("reusing Auto Scaling group {group} ({} instances)", g.instances().len());
    } else {
        let subnets = subnets(aws).await?;
        let template = launch_template(aws).await?;
        aws.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(LaunchTemplateSpecification::builder().launch_template_id(&template).version("$Latest").build())
            .min_size(instances)
            .max_size(instances * 2)
            .desired_capacity(instances)
            .vpc_zone_identifier(subnets.join(","))
            .tags(Tag::builder().key("app").value("shop").propagate_at_launch(true).build())
            .tags(Tag::builder().key("tier").value("web").propagate_at_launch(true).build())
            .tags(Tag::builder().key(SANDBOX_TAG).value("true").propagate_at_launch(true).build())
            .send()
            .await
            .map_err(api("autoscaling", "CreateAutoScalingGroup"))?;
        println!("created Auto Scaling group {group} with {instances} instances");
    }
    let alarm = format!("{group}-5xx-high");
    aws.cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .alarm_description("gameday sandbox: the shop's web tier returns too many errors")
        .namespace("App")
        .metric_name("Errors")
        .dimensions(Dimension::builder().name("AutoScalingGroupName").value(group).build())
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(2)
        .datapoints_to_alarm(2)
        .threshold(50.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .map_err(api("cloudwatch", "PutMetricAlarm"))?;
    println!("guardrail alarm {alarm} is ready");
    Ok(())
}

/// The sandbox VPC's subnets, one per AZ, created on first use.
async fn subnets(aws: &Aws) -> Result<Vec<String>, AwsError> {
    let tagged = Filter::builder().name(format!("tag:{SANDBOX_TAG}")).values("true").build();
    let found = aws.ec2.describe_subnets().filters(tagged).send().await.map_err(api("ec2", "DescribeSubnets"))?;
    let ids: Vec<String> = found.subnets().iter().filter_map(|s| s.subnet_id().map(str::to_string)).collect();
    if !ids.is_empty() {
        return Ok(ids);
    }
    let tags = |rt: ResourceType| TagSpecification::builder().resource_type(rt).tags(aws_sdk_ec2::types::Tag::builder().key(SANDBOX_TAG).value("true").build()).build();
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
        out.push(s.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
    }
    println!("created VPC {vpc_id} with subnets {}", out.join(", "));
    Ok(out)
}

/// The sandbox launch template, created on first use.
async fn launch_template(aws: &Aws) -> Result<String, AwsError> {
    const NAME: &str = "gameday-sandbox-web";
    let found = aws.ec2.describe_launch_templates().launch_template_names(NAME).send().await;
    if let Ok(out) = found
        && let Some(id) = out.launch_templates().first().and_then(|t| t.launch_template_id())
    {
        return Ok(id.to_string());
    }
    let images = aws.ec2.describe_images().send().await.map_err(api("ec2", "DescribeImages"))?;
    let image = images.images().first().and_then(|i| i.image_id()).unwrap_or("ami-12c6146b").to_string();
    let out = aws
        .ec2
        .create_launch_template()
        .launch_template_name(NAME)
        .launch_template_data(RequestLaunchTemplateData::builder().image_id(image).instance_type(aws_sdk_ec2::types::InstanceType::T3Micro).build())
        .send()
        .await
        .map_err(api("ec2", "CreateLaunchTemplate"))?;
    Ok(out.launch_template().and_then(|t| t.launch_template_id()).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_endpoints_are_local() {
        assert!(is_loopback("http://127.0.0.1:5000"));
        assert!(is_loopback("http://localhost:5000/"));
        assert!(is_loopback("http://[::1]:5000"));
        assert!(!is_loopback("https://ec2.us-east-1.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.5:5000"));
        assert!(!is_loopback(""));
    }
}
