//! The one GCRA (generic cell rate algorithm) of ratefetch: a theoretical arrival time (TAT)
//! and a tolerance. Used by the per-host pace (`schedule`), `--plan` and `audit`; the run's
//! global limit is governor's GCRA, which is the same algorithm (a property test below ties
//! the two together on the same sequences).
//!
//! At period T and burst B, a request at instant t conforms when `t ≥ TAT − (B − 1)·T`, and a
//! conforming request moves `TAT` to `max(TAT, t) + T`. So at burst 1 no request is closer
//! than T to the one before it, and a request that left late is not caught up on: the next
//! one is counted from when it actually left. At burst B, up to B requests may leave at once,
//! and lateness is caught up only within the burst.
//!
//! The arithmetic is exact (whole nanoseconds, no floating point) and generic over the
//! clock: `std` and tokio instants for a run and for `--plan` (which runs the scheduler on a
//! virtual clock of such instants), a `Duration` since some origin for a log's timestamps
//! (`audit`).

use std::time::Duration;

/// A measurement of some monotonic clock.
pub trait Time: Copy + Ord {
    /// `self + d`.
    fn plus(self, d: Duration) -> Self;
    /// `self − earlier`, or zero when `earlier` is later.
    fn since(self, earlier: Self) -> Duration;
}

impl Time for std::time::Instant {
    fn plus(self, d: Duration) -> Self {
        self + d
    }
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Time for tokio::time::Instant {
    fn plus(self, d: Duration) -> Self {
        self + d
    }
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Time for Duration {
    fn plus(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
    fn since(self, earlier: Self) -> Duration {
        self.saturating_sub(earlier)
    }
}

/// The parameters of a GCRA: a period (1 / rate) and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The emission interval: one request per period, on average.
    pub period: Duration,
    /// Requests that may leave at once (at least 1).
    pub burst: u32,
}

impl Pace {
    /// A pace of one request per `period`, one at a time.
    pub fn every(period: Duration) -> Pace {
        Pace { period, burst: 1 }
    }

    /// How far ahead of its theoretical arrival time a request may be: `(B − 1)·T`.
    pub fn tolerance(&self) -> Duration {
        self.period.saturating_mul(self.burst.max(1) - 1)
    }
}

/// The state of one GCRA: its theoretical arrival time, or none when nothing is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra<T> {
    tat: Option<T>,
}

impl<T> Default for Gcra<T> {
    fn default() -> Gcra<T> {
        Gcra { tat: None }
    }
}

impl<T: Time> Gcra<T> {
    /// A GCRA with nothing in force.
    #[cfg(test)]
    pub fn new() -> Gcra<T> {
        Gcra { tat: None }
    }

    /// The theoretical arrival time: once it is past, the whole burst is available again.
    pub fn tat(&self) -> Option<T> {
        self.tat
    }

    /// How much earlier than allowed a request at `at` would be (zero when it conforms).
    pub fn early_by(&self, pace: Pace, at: T) -> Duration {
        match self.tat {
            None => Duration::ZERO,
            Some(tat) => tat.since(at).saturating_sub(pace.tolerance()),
        }
    }

    /// The first instant, not before `now`, at which a request conforms.
    #[cfg(test)]
    pub fn earliest(&self, pace: Pace, now: T) -> T {
        now.plus(self.early_by(pace, now))
    }

    /// Counts a request at `at`, whether it conformed or not: `TAT = max(TAT, at) + T`.
    pub fn record(&mut self, pace: Pace, at: T) {
        let base = match self.tat {
            Some(tat) if tat > at => tat,
            _ => at,
        };
        self.tat = Some(base.plus(pace.period));
    }

    /// Admits a request at `at` if it conforms (and counts it); else says when it would.
    pub fn admit(&mut self, pace: Pace, at: T) -> Result<(), T> {
        let early = self.early_by(pace, at);
        if early.is_zero() {
            self.record(pace, at);
            Ok(())
        } else {
            Err(at.plus(early))
        }
    }

    /// Moves the theoretical arrival time to at least `at`: nothing beyond the tolerance
    /// leaves before it (a server's Crawl-delay, a slowed host).
    pub fn hold_until(&mut self, at: T) {
        if self.tat.is_none_or(|tat| tat < at) {
            self.tat = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;
    use governor::{Quota, RateLimiter};
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn at_burst_one_a_late_request_is_not_caught_up_on() {
        let pace = Pace::every(ms(100));
        let mut g = Gcra::new();
        assert_eq!(g.admit(pace, ms(0)), Ok(()));
        // Left 60 ms late: the next is counted from there, not from 100 ms.
        assert_eq!(g.admit(pace, ms(160)), Ok(()));
        assert_eq!(g.admit(pace, ms(200)), Err(ms(260)));
        assert_eq!(g.earliest(pace, ms(200)), ms(260));
        assert_eq!(g.admit(pace, ms(260)), Ok(()));
    }

    #[test]
    fn a_burst_leaves_at_once_and_then_one_per_period() {
        let pace = Pace {
            period: ms(10),
            burst: 3,
        };
        let mut g = Gcra::new();
        for _ in 0..3 {
            assert_eq!(g.admit(pace, ms(0)), Ok(()));
        }
        assert_eq!(g.admit(pace, ms(0)), Err(ms(10)));
        // Lateness within the burst is caught up on: three more fit by 35 ms.
        assert_eq!(g.admit(pace, ms(35)), Ok(()));
        assert_eq!(g.admit(pace, ms(35)), Ok(()));
        assert_eq!(g.admit(pace, ms(35)), Ok(()));
        assert_eq!(g.admit(pace, ms(35)), Err(ms(45)));
    }

    #[test]
    fn a_hold_moves_the_next_turn() {
        let pace = Pace::every(ms(10));
        let mut g = Gcra::new();
        g.admit(pace, ms(0)).unwrap();
        g.hold_until(ms(500));
        assert_eq!(g.earliest(pace, ms(20)), ms(500));
        // A hold never moves the turn earlier.
        g.hold_until(ms(100));
        assert_eq!(g.tat(), Some(ms(500)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// This GCRA and governor's admit exactly the same requests, on the same offers.
        #[test]
        fn agrees_with_governor(
            period_us in 1u64..50_000,
            burst in 1u32..8,
            gaps in proptest::collection::vec(0u64..100_000, 1..200),
        ) {
            let pace = Pace { period: Duration::from_micros(period_us), burst };
            let clock = FakeRelativeClock::default();
            let quota = Quota::with_period(pace.period)
                .unwrap()
                .allow_burst(NonZeroU32::new(burst).unwrap());
            let governor = RateLimiter::direct_with_clock(quota, clock.clone());
            let mut ours = Gcra::new();
            let mut now = Duration::ZERO;
            for gap in gaps {
                now += Duration::from_micros(gap);
                clock.advance(Duration::from_micros(gap));
                let theirs = governor.check().is_ok();
                prop_assert_eq!(ours.admit(pace, now).is_ok(), theirs, "at {:?}", now);
            }
        }

        /// What the GCRA admits never puts more than B + ⌊t/T⌋ requests in a window of
        /// length t, and at burst 1 no two closer than T.
        #[test]
        fn what_it_admits_keeps_every_window(
            period_us in 1u64..10_000,
            burst in 1u32..6,
            gaps in proptest::collection::vec(0u64..20_000, 1..150),
        ) {
            let pace = Pace { period: Duration::from_micros(period_us), burst };
            let mut g = Gcra::new();
            let mut now = Duration::ZERO;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += Duration::from_micros(gap);
                if g.admit(pace, now).is_ok() {
                    admitted.push(now);
                }
            }
            for (i, a) in admitted.iter().enumerate() {
                for (j, b) in admitted.iter().enumerate().skip(i + 1) {
                    let span = b.as_nanos() - a.as_nanos();
                    let allowed = u128::from(burst) + span / pace.period.as_nanos();
                    prop_assert!((j - i + 1) as u128 <= allowed);
                }
            }
        }
    }
}
