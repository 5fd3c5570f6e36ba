//! Quotas of a run (`--quota`, `--per-host-quota`): when the next request may leave under
//! several windows (the bucketed window of `window`), and why a run stopped at one. A leaf
//! module: the scheduler owns the windows and asks them when the next request may leave.
//!
//! Requests admitted and not sent yet (waiting for the global token) are `pending`: they
//! hold a place in every window, as if sent now or later, until `record` stamps them.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use crate::limits::window::Window;

/// Why a run stopped before its input was done: a quota window was spent under
/// `--on-quota stop`, or the `--budget` was. The report holds every row finished; `--resume`
/// does the rest (exit code 75).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStop {
    /// The limit, as the command line names it (`--quota 5000/1h`, `--budget 100`).
    pub limit: String,
    /// When the limit lets the next request leave (`None` for a budget: never, in this run).
    pub frees_at: Option<SystemTime>,
}

impl fmt::Display for QuotaStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped at {}", self.limit)?;
        if let Some(at) = self.frees_at {
            write!(f, " (next slot at {})", slot_time(at))?;
        }
        Ok(())
    }
}

/// A slot's time for messages: RFC 3339, rounded up to the second (a slot is never announced
/// before it is free).
pub fn slot_time(at: SystemTime) -> impl fmt::Display {
    let at = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs() + 1))
        .unwrap_or(at);
    humantime::format_rfc3339_seconds(at)
}

/// When a request may leave under all of `windows`, with `pending` requests admitted and not
/// sent: `Some(t)` (now or later, with the place among `windows` of the one that binds), or
/// `None` while pending requests fill a window.
pub fn free_at<'a>(
    windows: impl IntoIterator<Item = &'a mut Window>,
    now: Instant,
    pending: u64,
) -> Option<(Instant, Option<usize>)> {
    let mut at = (now, None);
    for (i, w) in windows.into_iter().enumerate() {
        let t = w.free_at(now, pending)?;
        if t > at.0 {
            at = (t, Some(i));
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::window::BUCKETS;
    use crate::units::Quota;

    fn quota(limit: u64, ms: u64) -> Quota {
        Quota {
            limit,
            window: Duration::from_millis(ms),
        }
    }

    /// Offers a request every `step` for `total`, sending each as soon as the window allows
    /// it; returns the send times (as offsets).
    fn simulate(q: Quota, step: Duration, total: Duration) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut w = Window::new(q);
        let mut sent = Vec::new();
        let mut t = Duration::ZERO;
        while t < total {
            let now = t0 + t;
            let at = w.free_at(now, 0).expect("nothing pending");
            if at <= now {
                w.record(now);
                sent.push(t);
            } else {
                t = at - t0;
                continue;
            }
            t += step;
        }
        sent
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        let mut start = 0;
        for (end, &t) in times.iter().enumerate() {
            while t - times[start] >= window {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }

    #[test]
    fn a_full_window_frees_when_its_oldest_send_leaves_it() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(3, 1000));
        for t in [0, 100, 200] {
            assert_eq!(w.free_at(t0 + ms(t), 0), Some(t0 + ms(t)));
            w.record(t0 + ms(t));
        }
        assert_eq!(w.free_at(t0 + ms(300), 0), Some(t0 + ms(1000)));
        assert_eq!(w.free_at(t0 + ms(1000), 0), Some(t0 + ms(1000)));
        w.record(t0 + ms(1000));
        assert_eq!(w.free_at(t0 + ms(1000), 0), Some(t0 + ms(1100)));
        assert_eq!(w.used(t0 + ms(1000)), 3);
        assert_eq!(w.clear_at(), Some(t0 + ms(2000)));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pending_requests_hold_their_places() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(3, 1000));
        w.record(t0);
        assert_eq!(w.free_at(t0, 1), Some(t0));
        // One sent, two pending: full, and the sent one leaving frees a place.
        assert_eq!(w.free_at(t0, 2), Some(t0 + ms(1000)));
        // Three pending: only their send times can tell.
        assert_eq!(w.free_at(t0, 3), None);
    }

    #[test]
    fn no_window_holds_more_than_the_quota_and_the_quota_is_used() {
        for (limit, window, step) in [(30, 3000, 1), (5, 100, 3), (1, 50, 7), (1000, 60_000, 5)] {
            let q = quota(limit, window);
            let total = ms(window * 5 + 17);
            let sent = simulate(q, ms(step), total);
            assert!(
                max_in_window(&sent, ms(window)) <= limit as usize,
                "{q}: a window held more"
            );
            // Used, not crept under: each full window spends the whole quota.
            let full_windows = total.as_millis() as u64 / window;
            assert!(
                sent.len() as u64 >= full_windows * limit.min(window / step),
                "{q}: only {} sent",
                sent.len()
            );
        }
    }

    #[test]
    fn buckets_keep_memory_bounded_and_err_on_the_safe_side() {
        let t0 = Instant::now();
        let q = Quota {
            limit: 100_000,
            window: Duration::from_secs(10),
        };
        let mut w = Window::new(q);
        // 100,000 sends, one every 100 µs: one window's worth.
        let mut sent = Vec::new();
        for i in 0..100_000u64 {
            let at = t0 + Duration::from_micros(i * 100);
            assert!(w.free_at(at, 0).unwrap() <= at, "refused at {i}");
            w.record(at);
            sent.push(at);
        }
        assert!(w.buckets() <= BUCKETS as usize + 1, "{}", w.buckets());
        // The next may leave no earlier than the first send + W (exact), and no later than
        // one bucket's width after it.
        let next = w.free_at(t0 + Duration::from_secs(10), 0).unwrap();
        assert!(next >= sent[0] + q.window);
        assert!(next <= sent[0] + q.window + q.window / BUCKETS);
    }

    #[test]
    fn free_at_over_several_windows_names_the_one_that_binds() {
        let t0 = Instant::now();
        let mut a = Window::new(quota(2, 1000));
        let mut b = Window::new(quota(3, 5000));
        for t in [0, 10, 1500] {
            a.record(t0 + ms(t));
            b.record(t0 + ms(t));
        }
        let (at, binds) = free_at([&mut a, &mut b], t0 + ms(1600), 0).unwrap();
        assert_eq!(at, t0 + ms(5000));
        assert_eq!(binds, Some(1), "the second window, 3/5s");
        // The first two sends left the 1 s window: it is free, and binds nothing.
        let (at, binds) = free_at([&mut a], t0 + ms(1600), 0).unwrap();
        assert_eq!((at, binds), (t0 + ms(1600), None));
        let (at, binds) = free_at([&mut a], t0 + ms(1600), 1).unwrap();
        assert_eq!((at, binds), (t0 + ms(2500), Some(0)));
        assert!(free_at([&mut a], t0 + ms(1600), 2).is_none());
    }
}
