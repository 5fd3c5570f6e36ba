//! Limits: every limit on when a request may leave. One global `governor` GCRA limiter
//! (`--rate`, `--burst`), a GCRA pace per host (`--per-host-rate`), a global semaphore
//! (`--concurrency`), per-host semaphores (`--per-host-concurrency`) and per-host cool-downs
//! (`Retry-After`).
//!
//! The order is the rate promise: a worker takes its permits first and its tokens last, and
//! sends at once, so a request leaves at the moment its token was granted. When both a host
//! pace and the global limiter apply, the two tokens must be taken at the same instant: a
//! token taken and then held while waiting for the other would let two requests leave closer
//! together than either quota allows. governor cannot look at a limiter without consuming
//! from it, so the host pace is a small GCRA of our own that can say *when* it would allow a
//! request; a per-host async mutex serialises the token step for that host, the worker sleeps
//! until the host is ready, then waits for the global token, and only then takes the host
//! slot — at the same instant.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::units::Rate;

/// All the limits of one run. Shared by the workers behind an `Arc`.
pub struct Limits {
    global: Option<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    host_period: Option<Duration>,
    host_concurrency: Option<usize>,
    /// Host name → its state. A std mutex: held only for a lookup, never across an await.
    hosts: Mutex<HashMap<Box<str>, Arc<Host>>>,
    /// The zero of the cool-down clocks.
    epoch: Instant,
}

/// The limits of one host.
pub struct Host {
    /// Serialises the token step for this host and holds its GCRA state: the theoretical
    /// arrival time of the next request.
    pace: tokio::sync::Mutex<Option<Instant>>,
    permits: Option<Arc<Semaphore>>,
    /// No request to this host leaves before this many nanoseconds after `Limits::epoch`.
    cool_until: AtomicU64,
}

/// Proof that a request may leave now. Holds the concurrency permits until dropped.
#[must_use = "the permits are released when the pass is dropped"]
pub struct Pass {
    _global: OwnedSemaphorePermit,
    _host: Option<OwnedSemaphorePermit>,
}

/// Builds the governor quota for a rate and burst. `Quota::per_second(n)` would also set the
/// burst to n, so the period form is used.
pub fn quota(period: Duration, burst: NonZeroU32) -> Quota {
    Quota::with_period(period)
        .expect("rate periods are validated to be above zero")
        .allow_burst(burst)
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            global: config
                .rate
                .period()
                .map(|p| RateLimiter::direct(quota(p, config.burst))),
            in_flight: Arc::new(Semaphore::new(config.concurrency)),
            host_period: match config.per_host_rate {
                Rate::Unlimited => None,
                Rate::Every(p) => Some(p),
            },
            host_concurrency: config.per_host_concurrency,
            hosts: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// The state of `host`, created on first use.
    pub fn host(&self, host: &str) -> Arc<Host> {
        let mut hosts = self
            .hosts
            .lock()
            .expect("no panic while holding the host map");
        if let Some(h) = hosts.get(host) {
            return h.clone();
        }
        let h = Arc::new(Host {
            pace: tokio::sync::Mutex::new(None),
            permits: self.host_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            cool_until: AtomicU64::new(0),
        });
        hosts.insert(host.into(), h.clone());
        h
    }

    /// Waits until a request to `host` may leave: permits first, tokens last. Returns when
    /// the request must be sent at once. Cancel-safe: dropping the future mid-wait takes
    /// nothing.
    pub async fn acquire(&self, host: &Host) -> Pass {
        // The host permit first: a worker stuck behind a busy host must not sit on one of
        // the global permits that other hosts could use.
        let host_permit = match &host.permits {
            Some(s) => Some(
                s.clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let global = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match self.host_period {
            None => self.take_tokens(host).await,
            Some(period) => {
                let mut tat = host.pace.lock().await;
                loop {
                    if let Some(t) = *tat {
                        // Burst 1: the next request may leave at its theoretical arrival time.
                        tokio::time::sleep_until(t).await;
                    }
                    self.take_tokens(host).await;
                    let now = Instant::now();
                    if tat.is_none_or(|t| t <= now) {
                        *tat = Some(now + period);
                        break;
                    }
                }
            }
        }
        Pass {
            _global: global,
            _host: host_permit,
        }
    }

    /// Waits out the host's cool-down, then takes the global token. If a cool-down began
    /// while waiting for the token, the token is dropped unused (a lost token can only slow
    /// the run, never break the promise) and the wait starts again.
    async fn take_tokens(&self, host: &Host) {
        loop {
            if let Some(until) = self.cooling(host) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            if let Some(g) = &self.global {
                g.until_ready().await;
            }
            if self.cooling(host).is_none() {
                return;
            }
        }
    }

    fn cooling(&self, host: &Host) -> Option<Instant> {
        let until = host.cool_until.load(Ordering::Acquire);
        let until = self.epoch + Duration::from_nanos(until);
        (until > Instant::now()).then_some(until)
    }

    /// No request to `host` leaves before `until` (a server's Retry-After). Only ever
    /// extends an existing cool-down.
    pub fn cool_down(&self, host: &Host, until: Instant) {
        let nanos = until.saturating_duration_since(self.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        host.cool_until.fetch_max(nanos, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

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

    #[tokio::test]
    async fn cool_down_only_extends() {
        let limits = Limits::new(&Config::default());
        let h = limits.host("a.test");
        let later = Instant::now() + Duration::from_secs(60);
        limits.cool_down(&h, later);
        limits.cool_down(&h, Instant::now() + Duration::from_secs(1));
        let until = limits.cooling(&h).expect("cooling");
        assert!(until >= later - Duration::from_millis(1));
        assert!(
            limits.cooling(&limits.host("b.test")).is_none(),
            "other hosts go on"
        );
    }
}
