//! gameday-sandbox: a demo and test aid, not part of the runner.
//!
//! On a local AWS API (moto) nothing reacts to a fault: no workload sends
//! requests and no alarm is ever evaluated. This binary supplies both, and
//! nothing in the runner (`src/`) depends on it:
//! - `setup` creates (or reuses) a demo fleet: a VPC, subnets in two
//!   Availability Zones, a launch template, an Auto Scaling group behind an
//!   Application Load Balancer (a listener and a target group) and a
//!   guardrail alarm;
//! - `serve` simulates the service behind every sandbox group (and behind the
//!   temporary copies gameday runs make): it routes the users of each load
//!   balancer through its listener rules by weight, publishes request metrics
//!   per group and per target group, and evaluates the alarms on them as
//!   CloudWatch would;
//! - `wait-alarm` waits until the sandbox has put an alarm in a state.
//!
//! By default it refuses any endpoint but a loopback one.

mod alarms;
mod balancer;
mod evaluate;
mod fleet;
mod routing;
mod serve;
mod setup;
mod workload;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use gameday::aws::{Aws, ConnectOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::evaluate::State;

/// Demo workload for gameday on a local AWS API (moto). Not for production.
///
/// `setup` creates (or reuses) a demo fleet; `serve` simulates the service
/// behind it (request metrics that react to stopped or cut-off instances) and
/// evaluates the alarms on those metrics, which moto does not do;
/// `wait-alarm` waits for an alarm state set by `serve`.
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
    /// Create (or reuse) the demo fleet, its load balancer and its guardrail alarm.
    ///
    /// The group is attached to a target group of its name, which the
    /// default action of an HTTP listener of the load balancer `<group>-alb`
    /// forwards to.
    Setup {
        /// Name of the Auto Scaling group.
        #[arg(long, default_value = "shop-web")]
        group: String,
        /// Number of instances in the group.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=500))]
        instances: i32,
    },
    /// Simulate the service behind the groups and evaluate their alarms, until SIGTERM or Ctrl-C.
    ///
    /// Serves every group tagged gameday-sandbox=true and every copy tagged
    /// gameday:run-id, or only the groups given with --group. Every
    /// Application Load Balancer (or only those given with --load-balancer)
    /// gets --load requests/s, split among target groups by its listener
    /// rules' weights; a group behind no balancer gets --load of its own.
    /// Each tick it publishes, per group, RequestCount, Errors, Latency and
    /// ServingInstances (namespace App, dimension AutoScalingGroupName), and
    /// per target group and balancer the AWS/ApplicationELB metrics, then
    /// evaluates the metric alarms on the group metrics (and any --evaluate
    /// alarm) and sets their state when it changes.
    Serve {
        /// Serve only this group (repeatable).
        #[arg(long = "group", value_name = "NAME")]
        groups: Vec<String>,
        /// Route through only this load balancer (repeatable). Default: every
        /// one, unless --group is given.
        #[arg(long = "load-balancer", value_name = "NAME")]
        load_balancers: Vec<String>,
        /// Also evaluate this metric alarm, whatever metric it watches (repeatable).
        #[arg(long, value_name = "ALARM")]
        evaluate: Vec<String>,
        /// Offered load per load balancer, and per group behind none, requests per second.
        #[arg(long, default_value_t = 300.0, value_name = "RPS", value_parser = rate)]
        load: f64,
        /// Offered load per group behind no load balancer (default: --load).
        #[arg(long, value_name = "RPS", value_parser = rate)]
        group_load: Option<f64>,
        /// What one instance serves at most, requests per second.
        #[arg(long, default_value_t = 200.0, value_name = "RPS", value_parser = rate)]
        instance_capacity: f64,
        /// Time between ticks.
        #[arg(long, default_value = "1s", value_parser = duration)]
        interval: Duration,
        /// Time between per-group lines (a change in serving instances is printed at once).
        #[arg(long, default_value = "5s", value_parser = duration)]
        report_every: Duration,
        /// Seed for the noise; every start prints the one it uses.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Wait until `serve` has put ALARM in STATE; exit 1 on timeout.
    WaitAlarm {
        /// The alarm.
        alarm: String,
        /// OK, ALARM or INSUFFICIENT_DATA.
        #[arg(long, default_value = "OK", value_parser = state)]
        state: State,
        /// Give up after this long.
        #[arg(long, default_value = "60s", value_parser = duration)]
        timeout: Duration,
    },
}

/// A duration longer than zero (a zero tick interval would spin).
fn duration(text: &str) -> Result<Duration, String> {
    match gameday::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(()) => Err(format!(
            "malformed duration `{text}`: expected e.g. 500ms, 2s, 1m"
        )),
    }
}

/// A rate in requests per second: finite and above zero.
fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "`{text}` is not a rate: expected a number of requests per second above zero, e.g. 300"
        )),
    }
}

fn state(text: &str) -> Result<State, String> {
    State::from_api(text)
        .ok_or_else(|| format!("unknown state `{text}`: expected OK, ALARM or INSUFFICIENT_DATA"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = cli
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_default();
    if !cli.i_know_this_is_real_aws && !is_loopback(&endpoint) {
        eprintln!(
            "error: gameday-sandbox only talks to a local AWS API (a loopback endpoint such as http://127.0.0.1:5000); \
             the endpoint is {}. Pass --i-know-this-is-real-aws to create real resources.",
            if endpoint.is_empty() {
                "the real AWS (no AWS_ENDPOINT_URL set)"
            } else {
                &endpoint
            }
        );
        return ExitCode::from(2);
    }
    let aws = match Aws::connect(&ConnectOptions {
        endpoint_url: cli.endpoint_url.clone(),
        region: cli.region.clone(),
        profile: None,
    })
    .await
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let elb = aws.elbv2.clone();
    let result: Result<(), String> = match cli.command {
        Command::Setup { group, instances } => setup::setup(&aws, &elb, &group, instances)
            .await
            .map_err(|e| e.to_string()),
        Command::Serve {
            groups,
            load_balancers,
            evaluate,
            load,
            group_load,
            instance_capacity,
            interval,
            report_every,
            seed,
        } => {
            let seed = seed.unwrap_or_else(|| rand::make_rng::<StdRng>().next_u64());
            let model = workload::Model {
                load,
                instance_capacity,
                idle_latency_ms: 20.0,
                timeout_ms: 1000.0,
                background_error_rate: 0.001,
                settle: Duration::from_secs(2),
            };
            let scope = if groups.is_empty() {
                "every sandbox group and run copy".to_string()
            } else {
                groups.join(", ")
            };
            serve::line(&format!(
                "serving {scope}: {load} req/s per load balancer, {} per group behind none, {instance_capacity} req/s per instance, a tick every {}, seed {seed} (--seed {seed} replays the noise)",
                group_load.unwrap_or(load),
                gameday::format_duration(interval)
            ));
            let opts = serve::Options {
                groups,
                load_balancers,
                evaluate,
                interval,
                report_every,
                model,
                group_load: group_load.unwrap_or(load),
            };
            serve::serve(&aws, &elb, opts, StdRng::seed_from_u64(seed))
                .await
                .map_err(|e| format!("cannot listen for signals: {e}"))
        }
        Command::WaitAlarm {
            alarm,
            state,
            timeout,
        } => wait_alarm(&aws, &alarm, state, timeout).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Polls until the sandbox has set `alarm` to `want`. The alarm's state alone
/// is not enough: moto creates alarms in OK before anything was evaluated.
async fn wait_alarm(aws: &Aws, alarm: &str, want: State, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match alarms::state_of(aws, alarm).await {
            Ok(Some((state, true))) if state == want => return Ok(()),
            Ok(None) => return Err(format!("alarm {alarm} does not exist")),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "alarm {alarm} was not put in {want} by gameday-sandbox serve within {}",
                gameday::format_duration(timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn zero_durations_and_rates_are_refused() {
        assert!(super::duration("0s").is_err());
        assert_eq!(
            super::duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(super::rate("0").is_err() && super::rate("NaN").is_err() && super::rate("-5").is_err());
        assert_eq!(super::rate("300"), Ok(300.0));
    }

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
