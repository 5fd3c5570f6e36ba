//! Limits: every limit of ratefetch, one model of each, used by the run, `--plan`, `audit`
//! and the Redis grant script alike (property tests tie them together).
//!
//! - `set`: the set of limits of a run (`LimitSet`), with one naming.
//! - `gcra`: the one GCRA (the per-host pace, the plan, the audit); the global rate is
//!   governor's GCRA, tied to ours by a property test.
//! - `window`: the quota windows (an exact sliding count, a bucketed one that errs on the
//!   safe side, a fixed one for `audit --fixed-quota`); `quota`: a run's quota windows and
//!   stops; `ledger`: the `--quota-state` file.
//! - `announce`, `allowance`: what servers announce, and what that leaves per host.
//! - `pacer`: the global rate; this module: the global rate and the global semaphore
//!   (`--concurrency`) as one `acquire`. Per-host limits (pace, concurrency, cool-downs) are
//!   applied by `schedule`, which hands a worker only a job whose host may send now.
//!
//! The order is the rate promise: a worker takes its permit first and its token last, and
//! sends at once. The token is judged at the instant the request is stamped with (see
//! `pacer`), and every other limit (the host's pace, quota windows) counts it at that same
//! instant, so the request log's times are the times every limit judged.

pub(crate) mod allowance;
pub(crate) mod announce;
pub(crate) mod gcra;
pub(crate) mod ledger;
pub(crate) mod pacer;
pub(crate) mod quota;
pub(crate) mod set;
pub(crate) mod window;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::limits::gcra::Pace;
use crate::limits::pacer::Pacer;
use crate::limits::set::LimitSet;

/// The global limits of one run. Shared by the workers behind an `Arc`.
pub struct Limits {
    global: Option<Pacer>,
    in_flight: Arc<Semaphore>,
    concurrency: usize,
}

/// Proof that a request may leave now. Holds the concurrency permit until dropped.
#[must_use = "the permit is released when the pass is dropped"]
pub struct Pass {
    _global: OwnedSemaphorePermit,
    at: Option<std::time::Instant>,
}

impl Pass {
    /// The request's stamp: the instant the global rate judged it, or now without one
    /// (with `--redis`, call it once the grant is in hand).
    pub fn stamp(&self) -> std::time::Instant {
        self.at.unwrap_or_else(std::time::Instant::now)
    }
}

/// The wall-clock time of a stamp, for the request log: the monotonic clock, anchored to the
/// wall clock once per process, so that the logged times lie exactly as far apart as the
/// instants the limits judged (a wall clock stepped meanwhile moves nothing).
pub fn wall_time(at: std::time::Instant) -> std::time::SystemTime {
    static ANCHOR: std::sync::OnceLock<(std::time::Instant, std::time::SystemTime)> =
        std::sync::OnceLock::new();
    let (instant, wall) =
        *ANCHOR.get_or_init(|| (std::time::Instant::now(), std::time::SystemTime::now()));
    if at >= instant {
        wall + (at - instant)
    } else {
        wall - (instant - at)
    }
}

/// Builds the governor quota for a rate and burst. `Quota::per_second(n)` would also set the
/// burst to n, so the period form is used.
pub fn quota(period: Duration, burst: NonZeroU32) -> Quota {
    Quota::with_period(period)
        .expect("rate periods are validated to be above zero")
        .allow_burst(burst)
}

/// The governor quota of the global pace.
fn pacer_quota(pace: Pace) -> Quota {
    let burst = NonZeroU32::new(pace.burst).expect("a burst is at least 1");
    quota(pace.period, burst)
}

/// The run's global rate (`--rate`, `--burst`) as a pacer for `--plan`, judged at the instants
/// of a virtual clock that starts at `origin`; `None` without a rate. (With `--redis`, the
/// shared grant keeps the same rate.)
pub(crate) fn simulated_pacer(config: &Config, origin: std::time::Instant) -> Option<Pacer> {
    LimitSet::of(config)
        .global_pace()
        .map(|pace| Pacer::simulated(pacer_quota(pace), origin))
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            // With --redis the shared grant paces every request (this process's included): a
            // local token taken first would only be lost on each grant refused.
            global: LimitSet::of(config)
                .global_pace()
                .filter(|_| config.redis.is_none())
                .map(|pace| Pacer::new(pacer_quota(pace))),
            in_flight: Arc::new(Semaphore::new(config.concurrency)),
            concurrency: config.concurrency,
        }
    }

    /// The passes held now: requests in flight, or about to leave.
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.in_flight.available_permits()
    }

    /// Waits for a global permit, then for the global token, and returns when the request
    /// must be sent at once, stamped with `Pass::at`. Cancel-safe: dropping the future mid-wait takes nothing that is
    /// not given back.
    pub async fn acquire(&self) -> Pass {
        let global = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let at = match &self.global {
            Some(g) => Some(g.take().await),
            None => None,
        };
        Pass {
            _global: global,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use governor::RateLimiter;

    #[test]
    fn quota_keeps_burst_one_and_the_period() {
        let q = quota(Duration::from_millis(100), NonZeroU32::MIN);
        assert_eq!(q.burst_size().get(), 1);
        assert_eq!(q.replenish_interval(), Duration::from_millis(100));
    }

    /// The GCRA arithmetic of the global limiter on a fake clock: at rate R and burst B, no
    /// window of length T admits more than B + R·T.
    #[test]
    fn global_quota_admits_burst_then_one_per_period() {
        let clock = FakeRelativeClock::default();
        let burst = NonZeroU32::new(3).unwrap();
        let lim =
            RateLimiter::direct_with_clock(quota(Duration::from_millis(100), burst), clock.clone());
        let mut admitted = Vec::new();
        // Every millisecond for two seconds, offer requests until one is refused.
        for ms in 0..2000u64 {
            while lim.check().is_ok() {
                admitted.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(&admitted[..3], &[0, 0, 0], "the burst is admitted at once");
        for (i, start) in admitted.iter().enumerate() {
            for (j, end) in admitted.iter().enumerate().skip(i) {
                let count = (j - i + 1) as f64;
                let allowed = 3.0 + 10.0 * ((end - start) as f64 / 1000.0);
                assert!(count <= allowed, "{count} requests in [{start}, {end}] ms");
            }
        }
        // And the limiter is not stingier than the quota: 3 + 10/s over 2 s.
        assert!(admitted.len() >= 22, "admitted only {}", admitted.len());
    }
}
