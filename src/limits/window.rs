//! The one model of a quota window: "at most N requests in any window of length W"
//! (`--quota`, `--per-host-quota`), in two forms that agree on the side that matters.
//!
//! - [`Exact`]: a sliding log of send times. Exact: a send at `t` is in the window that
//!   ends at `now` when `now − t < W`, and the next request may leave at max(now, the N-th
//!   last send + W). The audit judges with it; its memory is the sends of one window.
//! - [`Bucketed`]: the same count in bounded memory, for N = 100,000 and per-host quotas
//!   over many hosts (the run, `--plan`). Sends close in time share one bucket: at most
//!   `BUCKETS` + 1 buckets cover a window, and a bucket counts as sent at its latest send,
//!   so it expires no earlier than any of its sends. **It errs on the safe side only:** it
//!   never admits a request the exact count refuses (a property test below checks it), and
//!   it may hold one back by at most W / `BUCKETS` (a window of one hour loses at most
//!   3.5 s of it).
//! - [`Fixed`]: a fixed window, as express-rate-limit and the Python `limits` library
//!   count: a window opens at the first request after the previous one closed, and holds at
//!   most N. Sliding is the stricter reading: what keeps every sliding window keeps every
//!   fixed one. `audit --fixed-quota` judges with it.
//!
//! All three are generic over the clock (`gcra::Time`): tokio instants for a run and for
//! `--plan` (the run's scheduler on a virtual clock), a `Duration` since an origin for the
//! audit.
//!
//! Why not a GCRA: a GCRA with burst N and period W/N admits up to 2N − 1 requests in one
//! window W (governor issue 219).

use std::collections::VecDeque;
use std::time::Duration;

use crate::limits::gcra::Time;
use crate::units::Quota;

/// Buckets per window: the granularity of the bucketed count is W / BUCKETS.
pub const BUCKETS: u32 = 1024;

/// The run's quota window: bucketed, on tokio's clock.
pub type Window = Bucketed<tokio::time::Instant>;

/// An exact sliding count of one quota: every send of the last window, oldest first.
#[derive(Debug, Clone)]
pub struct Exact<T> {
    quota: Quota,
    sends: VecDeque<T>,
    busiest: usize,
}

impl<T: Time> Exact<T> {
    pub fn new(quota: Quota) -> Exact<T> {
        Exact {
            quota,
            sends: VecDeque::new(),
            busiest: 0,
        }
    }

    /// The quota this window keeps.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Forgets the sends that left the window ending at `now`.
    fn expire(&mut self, now: T) {
        while self
            .sends
            .front()
            .is_some_and(|&f| now.since(f) >= self.quota.window)
        {
            self.sends.pop_front();
        }
    }

    /// Whether one more request at `now` keeps the quota.
    #[cfg(test)]
    pub fn admits(&mut self, now: T) -> bool {
        self.expire(now);
        (self.sends.len() as u64) < self.quota.limit
    }

    /// When one more request may leave: now, or when enough sends have left the window.
    /// Every send after `t − W` counts against a request at `t`, reservations after it
    /// (`reserve`) included: the one to leave the window is the N-th last in time.
    #[cfg(test)]
    pub fn free_at(&mut self, now: T) -> T {
        self.expire(now);
        let used = self.sends.len() as u64;
        if used < self.quota.limit {
            return now;
        }
        let oldest_to_leave = (used - self.quota.limit) as usize;
        self.sends[oldest_to_leave].plus(self.quota.window).max(now)
    }

    /// Counts a reservation at `at`: a send granted for an instant that may lie after `now`
    /// and before reservations already counted (shared limits grant several hosts' requests
    /// ahead, each at its own instant). Unlike `record`, it keeps its own time; `free_at`
    /// counts it in the windows of every request, later or earlier, as the Redis script
    /// does, which only ever holds a request back.
    #[cfg(test)]
    pub fn reserve(&mut self, at: T) {
        let i = self.sends.partition_point(|&s| s <= at);
        self.sends.insert(i, at);
    }

    /// Counts a send at `at` (sends come in time order; an earlier one counts as the latest)
    /// and returns the sends in the window that ends with it.
    pub fn record(&mut self, at: T) -> usize {
        let at = self.sends.back().map_or(at, |&b| at.max(b));
        self.expire(at);
        self.sends.push_back(at);
        self.busiest = self.busiest.max(self.sends.len());
        self.sends.len()
    }

    /// The most sends any window held so far.
    pub fn busiest(&self) -> usize {
        self.busiest
    }
}

/// A fixed window of one quota: it opens at the first send after the previous one closed.
#[derive(Debug, Clone)]
pub struct Fixed<T> {
    quota: Quota,
    opened: Option<T>,
    count: u64,
    busiest: u64,
}

impl<T: Time> Fixed<T> {
    pub fn new(quota: Quota) -> Fixed<T> {
        Fixed {
            quota,
            opened: None,
            count: 0,
            busiest: 0,
        }
    }

    /// The quota this window keeps.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Counts a send at `at` (in time order) and returns the sends in its window so far.
    pub fn record(&mut self, at: T) -> u64 {
        match self.opened {
            Some(open) if at.since(open) < self.quota.window => self.count += 1,
            _ => {
                self.opened = Some(at);
                self.count = 1;
            }
        }
        self.busiest = self.busiest.max(self.count);
        self.count
    }

    /// The most sends any window held so far.
    pub fn busiest(&self) -> u64 {
        self.busiest
    }
}

/// One quota's sliding count in bounded memory (see the module's doc for the side it errs
/// on).
#[derive(Debug)]
pub struct Bucketed<T> {
    quota: Quota,
    /// Sends closer than this share a bucket.
    grain: Duration,
    /// Oldest first.
    buckets: VecDeque<Bucket<T>>,
    /// Sends in `buckets` (some may have expired; `expire` drops them).
    counted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket<T> {
    /// The first send in the bucket (its width is counted from here).
    first: T,
    /// The latest send in the bucket: the bucket expires at `latest + W`.
    latest: T,
    count: u64,
}

impl<T: Time> Bucketed<T> {
    pub fn new(quota: Quota) -> Bucketed<T> {
        Bucketed {
            quota,
            grain: quota.window / BUCKETS,
            buckets: VecDeque::new(),
            counted: 0,
        }
    }

    /// The quota this window keeps.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// When one more request may leave, with `pending` requests admitted and not yet sent:
    /// `Some(t)` (now or later), or `None` while the window is full of pending requests (their
    /// send times, not known yet, decide). Forgets the sends that left the window.
    pub fn free_at(&mut self, now: T, pending: u64) -> Option<T> {
        self.expire(now);
        let used = self.counted + pending;
        if used < self.quota.limit {
            return Some(now);
        }
        // This many sends must leave the window first.
        let mut need = used + 1 - self.quota.limit;
        for b in &self.buckets {
            if b.count >= need {
                return Some(b.latest.plus(self.quota.window));
            }
            need -= b.count;
        }
        None
    }

    /// Counts a request sent at `at`. A time earlier than the latest send recorded (clocks
    /// read on two threads) counts as that send's time: later, the safe side.
    pub fn record(&mut self, at: T) {
        self.record_many(at, 1);
    }

    /// Counts `count` requests sent at `at` (sends of an earlier run, read from the
    /// `--quota-state`).
    pub fn record_many(&mut self, at: T, count: u64) {
        let at = self.buckets.back().map_or(at, |b| at.max(b.latest));
        self.expire(at);
        self.counted += count;
        if let Some(last) = self.buckets.back_mut() {
            if at.since(last.first) < self.grain {
                last.latest = last.latest.max(at);
                last.count += count;
                return;
            }
        }
        self.buckets.push_back(Bucket {
            first: at,
            latest: at,
            count,
        });
    }

    /// When every send counted so far has left the window (`None`: nothing counted).
    pub fn clear_at(&self) -> Option<T> {
        self.buckets
            .back()
            .map(|b| b.latest.plus(self.quota.window))
    }

    /// Sends in the window ending at `now`.
    #[cfg(test)]
    pub fn used(&self, now: T) -> u64 {
        self.buckets
            .iter()
            .filter(|b| !self.expired(b, now))
            .map(|b| b.count)
            .sum()
    }

    /// Buckets held.
    #[cfg(test)]
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    fn expired(&self, b: &Bucket<T>, now: T) -> bool {
        b.latest.plus(self.quota.window) <= now
    }

    fn expire(&mut self, now: T) {
        while let Some(b) = self.buckets.front() {
            if !self.expired(b, now) {
                break;
            }
            self.counted -= b.count;
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn quota(limit: u64, window_ms: u64) -> Quota {
        Quota {
            limit,
            window: ms(window_ms),
        }
    }

    #[test]
    fn the_exact_count_frees_when_the_oldest_send_leaves_the_window() {
        let mut w: Exact<Duration> = Exact::new(quota(2, 1000));
        assert_eq!(w.record(ms(0)), 1);
        assert_eq!(w.record(ms(400)), 2);
        assert!(!w.admits(ms(999)));
        assert_eq!(w.free_at(ms(500)), ms(1000));
        assert!(w.admits(ms(1000)));
        assert_eq!(w.record(ms(1000)), 2);
        assert_eq!(w.free_at(ms(1000)), ms(1400));
        assert_eq!(w.busiest(), 2);
    }

    #[test]
    fn reservations_count_in_time_order_and_hold_back_requests_before_them() {
        let mut w: Exact<Duration> = Exact::new(quota(2, 10));
        // Granted out of order (two hosts), both ahead of now.
        w.reserve(ms(5));
        w.reserve(ms(1));
        w.reserve(ms(30));
        // Three reserved: the one to leave is the second to last in time, at 5 ms.
        assert_eq!(w.free_at(ms(0)), ms(15));
        assert!(!w.admits(ms(14)));
        assert!(w.admits(ms(15)));
        // A reservation after now counts against a request before it too: the safe side.
        let mut one: Exact<Duration> = Exact::new(quota(1, 10));
        one.reserve(ms(20));
        assert_eq!(one.free_at(ms(0)), ms(30));
        // Once the window passed a reservation, it no longer counts.
        assert_eq!(one.free_at(ms(30)), ms(30));
    }

    #[test]
    fn a_fixed_window_opens_at_the_first_send_after_the_last_one_closed() {
        let mut w: Fixed<Duration> = Fixed::new(quota(2, 1000));
        // Two at the end of one window and two at the start of the next: a sliding count
        // sees four in one second, a fixed window two in each.
        assert_eq!(w.record(ms(0)), 1);
        assert_eq!(w.record(ms(900)), 2);
        assert_eq!(w.record(ms(1000)), 1, "a new window opens at 1000");
        assert_eq!(w.record(ms(1100)), 2);
        assert_eq!(w.record(ms(1999)), 3, "still the window opened at 1000");
        assert_eq!(w.record(ms(5000)), 1);
        assert_eq!(w.busiest(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The bucketed window never admits what the exact count refuses: offered requests
        /// at random times under a random quota, each one the bucketed window lets leave is
        /// one the exact count lets leave too.
        #[test]
        fn the_bucketed_window_never_admits_what_the_exact_count_refuses(
            limit in 1u64..40,
            window_us in 1u64..2_000_000,
            gaps in proptest::collection::vec(0u64..200_000, 1..300),
            backlog in proptest::collection::vec((0u64..2_000_000, 1u64..5), 0..4),
        ) {
            let q = Quota { limit, window: Duration::from_micros(window_us) };
            let mut bucketed: Bucketed<Duration> = Bucketed::new(q);
            let mut exact: Exact<Duration> = Exact::new(q);
            // Sends of an earlier run, many at one instant, as the quota state seeds them.
            let mut seeded: Vec<_> = backlog.clone();
            seeded.sort_unstable();
            let mut now = Duration::ZERO;
            for (at, n) in seeded {
                now = Duration::from_micros(at);
                bucketed.record_many(now, n);
                for _ in 0..n {
                    exact.record(now);
                }
            }
            for gap in gaps {
                now += Duration::from_micros(gap);
                let free = bucketed.free_at(now, 0).expect("nothing pending");
                if free <= now {
                    prop_assert!(exact.admits(now), "bucketed admitted at {:?}", now);
                    bucketed.record(now);
                    exact.record(now);
                } else {
                    // Its answer is never earlier than the exact one either.
                    prop_assert!(free >= exact.free_at(now));
                }
            }
        }
    }
}
