//! The simulated service behind each Auto Scaling group: how many requests it
//! gets, how many fail and how slow they are, given how many instances can
//! serve. Pure (no I/O) so the shape of the curves is unit-tested.
//!
//! The model is a textbook one, chosen because its numbers are easy to
//! reason about, not because it predicts a real service:
//! - a fixed offered load (requests/s, with a little noise) is spread evenly
//!   over the serving instances, each of which serves up to a fixed rate;
//! - each instance is an M/M/1 queue: mean latency is the idle latency
//!   divided by (1 - utilisation), and the share of requests slower than the
//!   client timeout is exp(-timeout * (1 - utilisation) / idle latency), so
//!   errors and latency climb smoothly as capacity nears the load;
//! - the load balancer sheds what would push instances past 95% busy (an
//!   M/M/1 queue above that grows without bound), and those requests fail;
//! - a serving instance that stops or comes back does not change capacity at
//!   once: connections drain and new instances warm up, which the model
//!   renders as capacity following the real count with a time constant.

use std::time::Duration;

use rand::{Rng, RngExt};

/// The service's fixed characteristics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Offered load, requests per second.
    pub load: f64,
    /// What one instance serves at most, requests per second.
    pub instance_capacity: f64,
    /// Latency of a request to an idle instance, milliseconds.
    pub idle_latency_ms: f64,
    /// Clients give up after this long; slower requests count as errors.
    pub timeout_ms: f64,
    /// Errors that happen anyway (bugs, bad input), as a share of requests.
    pub background_error_rate: f64,
    /// How fast capacity follows the serving count.
    pub settle: Duration,
}

/// The share of capacity the load balancer lets instances use.
const MAX_UTILISATION: f64 = 0.95;

/// Per-second rates at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Requests per second.
    pub requests: f64,
    /// Failed requests per second (shed, timed out, background).
    pub errors: f64,
    /// Mean latency, milliseconds.
    pub latency_ms: f64,
}

impl Model {
    /// Expected rates with `capacity` requests/s of serving capacity under `load`.
    pub fn rates(&self, capacity: f64, load: f64) -> Rates {
        let load = load.max(0.0);
        if capacity <= 0.0 {
            // Nothing serves: the load balancer answers every request with a 5xx,
            // and clients that retry see the timeout.
            return Rates {
                requests: load,
                errors: load,
                latency_ms: self.timeout_ms,
            };
        }
        let admitted = load.min(MAX_UTILISATION * capacity);
        let shed = load - admitted;
        let busy = admitted / capacity;
        let latency_ms = (self.idle_latency_ms / (1.0 - busy)).min(self.timeout_ms);
        let slow_share = (-self.timeout_ms * (1.0 - busy) / self.idle_latency_ms).exp();
        let errors = shed + admitted * slow_share + load * self.background_error_rate;
        Rates {
            requests: load,
            errors: errors.min(load),
            latency_ms,
        }
    }
}

/// One group's simulated service over time; a new one starts settled at
/// whatever capacity it first sees.
#[derive(Debug, Clone, Default)]
pub struct Service {
    /// Capacity as the service feels it now, requests/s (follows the serving count).
    capacity: Option<f64>,
}

/// What one tick of one group produced, ready to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Requests in the tick.
    pub requests: f64,
    /// Failed requests in the tick.
    pub errors: f64,
    /// Mean latency in the tick, milliseconds.
    pub latency_ms: f64,
    /// The rates behind the counts, for people.
    pub rates: Rates,
}

impl Service {
    /// Advances by `elapsed` with `serving` instances able to serve the
    /// model's own load (a group behind no load balancer).
    pub fn tick(&mut self, model: &Model, serving: usize, elapsed: Duration, rng: &mut impl Rng) -> Sample {
        let load = model.load * (1.0 + 0.05 * noise(rng));
        self.tick_load(model, serving, load, elapsed, rng)
    }

    /// Advances by `elapsed` with `serving` instances able to serve, offered
    /// `load` requests/s (what a load balancer routed to them).
    pub fn tick_load(
        &mut self,
        model: &Model,
        serving: usize,
        load: f64,
        elapsed: Duration,
        rng: &mut impl Rng,
    ) -> Sample {
        let target = serving as f64 * model.instance_capacity;
        let follow = 1.0 - (-elapsed.as_secs_f64() / model.settle.as_secs_f64().max(1e-3)).exp();
        let capacity = match self.capacity {
            None => target,
            Some(c) => c + (target - c) * follow,
        };
        self.capacity = Some(capacity);
        let rates = model.rates(capacity, load);
        let secs = elapsed.as_secs_f64();
        let requests = (rates.requests * secs).round();
        let errors =
            stochastic_round(rates.errors * secs * (1.0 + 0.1 * noise(rng)).max(0.0), rng).min(requests);
        let latency_ms = (rates.latency_ms * (1.0 + 0.05 * noise(rng))).max(0.0);
        Sample {
            requests,
            errors,
            latency_ms,
            rates,
        }
    }
}

/// Roughly normal noise with mean 0 and standard deviation 1 (the sum of
/// three uniforms; `rand` alone has no normal distribution and this is plenty
/// for a demo).
pub fn noise(rng: &mut impl Rng) -> f64 {
    let sum: f64 = (0..3).map(|_| rng.random::<f64>()).sum();
    (sum - 1.5) * 2.0
}

/// Rounds to a whole count, up with probability equal to the fraction, so
/// that 0.3 errors a second add up to about 3 in ten seconds instead of 0.
fn stochastic_round(x: f64, rng: &mut impl Rng) -> f64 {
    let floor = x.floor();
    if rng.random::<f64>() < x - floor {
        floor + 1.0
    } else {
        floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn demo() -> Model {
        Model {
            load: 300.0,
            instance_capacity: 200.0,
            idle_latency_ms: 20.0,
            timeout_ms: 1000.0,
            background_error_rate: 0.001,
            settle: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_healthy_fleet_is_fast_and_almost_error_free() {
        let r = demo().rates(600.0, 300.0);
        assert!((r.latency_ms - 40.0).abs() < 1e-9, "{r:?}");
        assert!(r.errors < 0.5, "{r:?}");
    }

    #[test]
    fn latency_and_errors_rise_smoothly_as_capacity_falls() {
        let m = demo();
        let mut last = m.rates(1000.0, 300.0);
        for c in (0..=100).rev().map(|i| i as f64 * 10.0) {
            let r = m.rates(c, 300.0);
            assert!(
                r.latency_ms >= last.latency_ms && r.errors >= last.errors - 1e-9,
                "monotonic at {c}: {r:?} after {last:?}"
            );
            last = r;
        }
        // Losing a third of 3 instances: slower, still no real errors.
        let third = m.rates(400.0, 300.0);
        assert!(third.latency_ms > 70.0 && third.errors < 1.0, "{third:?}");
        // Losing two thirds: a third of the requests fail.
        let two_thirds = m.rates(200.0, 300.0);
        assert!(
            two_thirds.errors > 100.0 && two_thirds.latency_ms > 399.0,
            "{two_thirds:?}"
        );
        let none = m.rates(0.0, 300.0);
        assert_eq!(none.errors, 300.0);
    }

    #[test]
    fn capacity_follows_the_serving_count_and_recovers() {
        let m = demo();
        let mut s = Service::default();
        let mut rng = StdRng::seed_from_u64(7);
        let second = Duration::from_secs(1);
        let steady = s.tick(&m, 3, second, &mut rng);
        let right_after = s.tick(&m, 0, second, &mut rng);
        assert!(right_after.rates.errors < 300.0, "not a step: {right_after:?}");
        for _ in 0..15 {
            s.tick(&m, 0, second, &mut rng);
        }
        let down = s.tick(&m, 0, second, &mut rng);
        assert!(down.errors > 250.0, "{down:?}");
        for _ in 0..15 {
            s.tick(&m, 3, second, &mut rng);
        }
        let back = s.tick(&m, 3, second, &mut rng);
        assert!(
            back.errors < 5.0 && back.latency_ms < 2.0 * steady.latency_ms,
            "{back:?} vs {steady:?}"
        );
    }

    #[test]
    fn counts_scale_with_the_tick_and_the_seed_replays() {
        let m = demo();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Service::default();
            (0..5)
                .map(|_| s.tick(&m, 3, Duration::from_millis(500), &mut rng))
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert!(
            a.iter().all(|x| (120.0..=180.0).contains(&x.requests)),
            "about 150 requests per half second: {a:?}"
        );
    }
}
