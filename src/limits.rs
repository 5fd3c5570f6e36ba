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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::Quota;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::pacer::Pacer;
use crate::units::Rate;

/// All the limits of one run. Shared by the workers behind an `Arc`.
pub struct Limits {
    global: Option<Pacer>,
    in_flight: Arc<Semaphore>,
    host_period: Option<Duration>,
    host_concurrency: Option<usize>,
    /// Hosts get state of their own even without per-host limits (robots.txt may set a
    /// Crawl-delay on any of them).
    track_hosts: bool,
    /// Host name → its state. Entries exist for every host seen when per-host limits are
    /// set, and otherwise only for hosts that were told to cool down, so that a plain run
    /// over millions of hosts does not grow this map. A std mutex: held only for a lookup,
    /// never across an await.
    hosts: Mutex<HashMap<Box<str>, Arc<Host>>>,
    /// The state of every host without an entry: no permits, no pace, never cooling.
    unlimited: Arc<Host>,
    /// Set once any host has cooled down; until then no cool-down lookup is needed.
    any_cool_down: AtomicBool,
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
    /// The least time between two requests to this host, in nanoseconds (a Crawl-delay).
    min_period: AtomicU64,
}

impl Host {
    fn new(permits: Option<usize>) -> Host {
        Host {
            pace: tokio::sync::Mutex::new(None),
            permits: permits.map(|n| Arc::new(Semaphore::new(n))),
            cool_until: AtomicU64::new(0),
            min_period: AtomicU64::new(0),
        }
    }
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
                .map(|p| Pacer::new(quota(p, config.burst))),
            in_flight: Arc::new(Semaphore::new(config.concurrency)),
            host_period: match config.per_host_rate {
                Rate::Unlimited => None,
                Rate::Every(p) => Some(p),
            },
            host_concurrency: config.per_host_concurrency,
            track_hosts: config.respect_robots,
            hosts: Mutex::new(HashMap::new()),
            unlimited: Arc::new(Host::new(None)),
            any_cool_down: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn per_host_limits(&self) -> bool {
        self.host_period.is_some() || self.host_concurrency.is_some() || self.track_hosts
    }

    /// The state of `host`: its entry, created on first use when per-host limits are set.
    fn host(&self, host: &str, create: bool) -> Arc<Host> {
        let mut hosts = self
            .hosts
            .lock()
            .expect("no panic while holding the host map");
        if let Some(h) = hosts.get(host) {
            return h.clone();
        }
        if !create {
            return self.unlimited.clone();
        }
        let h = Arc::new(Host::new(self.host_concurrency));
        hosts.insert(host.into(), h.clone());
        h
    }

    /// Waits until a request to `host` may leave, and returns when it must be sent at once.
    ///
    /// The order: the host's permit; then, holding nothing global, the host's turn (its lock,
    /// the end of its cool-down, its pace); then a global permit; then the global token,
    /// last. A worker stuck behind a slow or cooling host therefore never sits on a global
    /// permit that other hosts could use. Cancel-safe: dropping the future mid-wait takes
    /// nothing that is not given back.
    pub async fn acquire(&self, host: &str) -> Pass {
        let state = self.host(host, self.per_host_limits());
        let host_permit = match &state.permits {
            Some(s) => Some(
                s.clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        // The host's period: --per-host-rate, or a longer robots.txt Crawl-delay.
        let min = Duration::from_nanos(state.min_period.load(Ordering::Acquire));
        let period = match self.host_period {
            Some(p) => Some(p.max(min)),
            None => (!min.is_zero()).then_some(min),
        };
        let mut pace = match period {
            Some(_) => Some(state.pace.lock().await),
            None => None,
        };
        loop {
            if let Some(until) = self.cooling(host) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            if let Some(tat) = pace.as_deref().copied().flatten() {
                // Burst 1: the next request may leave at its theoretical arrival time.
                if tat > Instant::now() {
                    tokio::time::sleep_until(tat).await;
                    continue;
                }
            }
            let global = self
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            if let Some(g) = &self.global {
                g.take().await;
            }
            // A cool-down that began while we waited for the token wins: the token is
            // dropped unused (a lost token can only slow the run, never break the promise).
            if self.cooling(host).is_some() {
                continue;
            }
            if let (Some(tat), Some(period)) = (pace.as_deref_mut(), period) {
                *tat = Some(Instant::now() + period);
            }
            return Pass {
                _global: global,
                _host: host_permit,
            };
        }
    }

    /// When `host` is cooling down, until when.
    fn cooling(&self, host: &str) -> Option<Instant> {
        if !self.any_cool_down.load(Ordering::Acquire) {
            return None;
        }
        let state = self.host(host, false);
        let until = state.cool_until.load(Ordering::Acquire);
        let until = self.epoch + Duration::from_nanos(until);
        (until > Instant::now()).then_some(until)
    }

    /// No request to `host` leaves for `wait` from now (a server's Retry-After). Only ever
    /// extends an existing cool-down.
    pub fn cool_down(&self, host: &str, wait: Duration) {
        let until = Instant::now().saturating_duration_since(self.epoch) + wait;
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        let state = self.host(host, true);
        state.cool_until.fetch_max(nanos, Ordering::AcqRel);
        self.any_cool_down.store(true, Ordering::Release);
    }

    /// Requests to `host` leave at least `period` apart from now on (robots.txt
    /// Crawl-delay); only ever lengthens the host's period.
    pub fn slow_host(&self, host: &str, period: Duration) {
        let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        self.host(host, true)
            .min_period
            .fetch_max(nanos, Ordering::AcqRel);
    }

    /// Hosts with state of their own (per-host limits or a cool-down).
    pub fn tracked_hosts(&self) -> usize {
        self.hosts
            .lock()
            .expect("no panic while holding the host map")
            .len()
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

    #[tokio::test]
    async fn cool_down_only_extends_and_only_that_host() {
        let limits = Limits::new(&Config::default());
        limits.cool_down("a.test", Duration::from_secs(60));
        limits.cool_down("a.test", Duration::from_secs(1));
        let until = limits.cooling("a.test").expect("cooling");
        assert!(until >= Instant::now() + Duration::from_secs(59));
        assert!(limits.cooling("b.test").is_none(), "other hosts go on");
    }

    #[tokio::test]
    async fn without_per_host_limits_hosts_are_not_tracked() {
        let limits = Limits::new(&Config {
            rate: Rate::Unlimited,
            ..Config::default()
        });
        for i in 0..100 {
            drop(limits.acquire(&format!("h{i}.test")).await);
        }
        assert_eq!(limits.tracked_hosts(), 0);
        limits.cool_down("h1.test", Duration::from_secs(1));
        assert_eq!(limits.tracked_hosts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn per_host_pace_spaces_one_hosts_requests() {
        let limits = Limits::new(&Config {
            rate: Rate::Unlimited,
            per_host_rate: Rate::Every(Duration::from_millis(50)),
            ..Config::default()
        });
        let t0 = Instant::now();
        drop(limits.acquire("a.test").await);
        drop(limits.acquire("b.test").await);
        assert_eq!(t0.elapsed(), Duration::ZERO, "another host does not wait");
        drop(limits.acquire("a.test").await);
        assert_eq!(
            t0.elapsed(),
            Duration::from_millis(50),
            "the same host waits its period"
        );
    }
}
