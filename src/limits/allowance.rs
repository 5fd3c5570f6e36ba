//! Allowance: what each host's server says is left (`announce`), turned into when the next
//! request to it may leave. Used by `fetch` around every request; a host that announced
//! nothing goes at the user's pace.
//!
//! - **Requests in flight count.** Every request to a host that announced a limit takes a
//!   sequence number before it leaves (hosts that announce nothing cost one atomic add and
//!   no lock). When a host first announces, every request then in flight may be one of its. A response to request k saying "r remaining" lets the server take requests up to
//!   k + r, less the requests sent before k still in flight (the server may count them after
//!   k). Responses come back out of order: the smallest such bound seen for a window is kept.
//! - **Windows.** A bound holds until its reset. A response whose reset is later by more than
//!   the servers' rounding (`SAME_WINDOW`) starts a new window; one whose reset is earlier is
//!   from a window already over and changes nothing. Once the reset has passed, nothing is
//!   known again and the host goes at the user's pace until the next response says more.
//! - **Buckets.** A server may name buckets (GitHub's `core` and `search`): each is kept,
//!   and each bounds every request to the host (which bucket a request falls in is known only
//!   from its response), the safe side.
//! - **Spread, then pause.** While more requests for the host are queued than remain, what
//!   remains is spread over the time to the reset (remaining ÷ seconds to reset, as prawcore
//!   does); when nothing remains, the whole host pauses until the reset plus a little jitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::announce::Announced;

/// Resets closer than this are the same window (servers round them to seconds).
const SAME_WINDOW: Duration = Duration::from_millis(1500);
/// A pause ends this long after the announced reset, plus up to `JITTER` more, so that
/// clients paused together do not all come back at the same instant, and none comes early.
pub const AFTER_RESET: Duration = Duration::from_millis(50);
const JITTER: Duration = Duration::from_millis(200);

/// Why a request may not leave yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing remains before the reset: the host pauses until `until`.
    Spent { until: Instant, reset: Instant },
    /// What remains is spread over the time to the reset: the next may leave at `until`.
    Spread { until: Instant },
}

/// The hosts' announced allowances of one run.
pub struct Allowances {
    /// The attempt timeout: a request still in flight is over by then.
    timeout: Duration,
    /// Hosts that announced a limit (and still have one in force, or requests in flight).
    hosts: Mutex<HashMap<Box<str>, Host>>,
    /// Whether any host has announced anything yet: until then a request takes no lock.
    any: AtomicBool,
    /// Requests in flight, to any host: the most that may be in flight, untracked, to a host
    /// when it first announces a limit.
    in_flight: AtomicU64,
}

impl Default for Allowances {
    fn default() -> Allowances {
        Allowances::new(Duration::from_secs(30))
    }
}

#[derive(Default)]
struct Host {
    /// Sequence numbers taken so far (the last one given). Requests sent before the host had
    /// an entry are untracked (number 0): before every numbered one.
    sent: u64,
    /// Untracked requests that may still be in flight (at most), until `untracked_until`
    /// (the timeout has ended them by then).
    untracked: u64,
    untracked_until: Option<Instant>,
    /// Sequence numbers of the requests in flight.
    in_flight: Vec<u64>,
    /// What is known per bucket (`None`: the host's own). Each bounds every request to the
    /// host, since which bucket a request falls in is known only from its response.
    known: Vec<(Option<String>, Known)>,
}

struct Known {
    /// The server takes requests up to this sequence number before `reset`.
    last_allowed: u64,
    reset: Instant,
    /// When spreading: the next request leaves no earlier than this.
    next: Option<Instant>,
}

impl Allowances {
    /// Allowances for a run whose requests end within `timeout`.
    pub fn new(timeout: Duration) -> Allowances {
        Allowances {
            timeout,
            hosts: Mutex::default(),
            any: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Takes a sequence number for one request to `host`, about to leave at `now`, with
    /// `queued` more requests for it waiting; or says how long to wait.
    /// `queued` (asked only if needed) says how many more requests for it wait. Returns
    /// the request's number (0: the host announced nothing; untracked).
    pub fn take(
        &self,
        host: &str,
        now: Instant,
        queued: impl FnOnce() -> u64,
    ) -> Result<u64, Wait> {
        if !self.any.load(Ordering::Acquire) {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok(0);
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = hosts.get_mut(host) else {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok(0);
        };
        h.known.retain(|(_, k)| k.reset > now);
        let sent = h.sent;
        let spent = h
            .known
            .iter()
            .filter(|(_, k)| k.last_allowed <= sent)
            .map(|(_, k)| k.reset)
            .max();
        if let Some(reset) = spent {
            let jitter = JITTER.mul_f64(fastrand::f64());
            return Err(Wait::Spent {
                until: reset + AFTER_RESET + jitter,
                reset,
            });
        }
        // Queued beyond this one: more than what remains after it, in some bucket.
        let fewest = h.known.iter().map(|(_, k)| k.last_allowed - sent).min();
        let queued = match fewest {
            Some(_) => queued(),
            None => 0,
        };
        let spread = |k: &Known| queued >= k.last_allowed - sent;
        let held = h
            .known
            .iter()
            .filter(|(_, k)| spread(k))
            .filter_map(|(_, k)| k.next.filter(|&t| t > now))
            .max();
        if let Some(until) = held {
            return Err(Wait::Spread { until });
        }
        for (_, k) in h.known.iter_mut().filter(|(_, k)| spread(k)) {
            let left = u32::try_from(k.last_allowed - sent).unwrap_or(u32::MAX);
            k.next = Some(now + (k.reset - now) / left);
        }
        h.sent += 1;
        h.in_flight.push(h.sent);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(h.sent)
    }

    /// Request `seq` to `host` is over (answered at `now`, saying `announced`), or was not
    /// sent after all (`announced` is `None`). True when the answer began a new window for a
    /// bucket (the host is then worth tracking until that reset).
    pub fn done(&self, host: &str, seq: u64, announced: Option<&Announced>, now: Instant) -> bool {
        // Others in flight now, this one left out.
        let others = self
            .in_flight
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        if seq == 0 && announced.is_none() && !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let h = match (hosts.get_mut(host), announced) {
            (Some(h), _) => h,
            (None, None) => return false,
            (None, Some(_)) => {
                // The host's first announcement: any request in flight may be to it.
                self.any.store(true, Ordering::Release);
                let h = hosts.entry(host.into()).or_default();
                h.untracked = others + 1;
                h.untracked_until = now.checked_add(self.timeout);
                h
            }
        };
        if h.untracked_until.is_none_or(|t| t <= now) {
            h.untracked = 0;
            h.untracked_until = None;
        }
        if seq == 0 {
            h.untracked = h.untracked.saturating_sub(1);
        }
        h.in_flight.retain(|&s| s != seq);
        // A bound whose reset passed is over: a late answer starts afresh, not from it.
        h.known.retain(|(_, k)| k.reset > now);
        let mut new_window = false;
        if let Some(a) = announced {
            // Sent before it and still in flight: the server may count them after it.
            let earlier = h.in_flight.iter().filter(|&&s| s < seq).count() as u64 + h.untracked;
            let last_allowed = seq.saturating_add(a.remaining).saturating_sub(earlier);
            let reset = now + a.reset.min(crate::limits::announce::MAX_RESET);
            let bucket = h.known.iter_mut().find(|(b, _)| *b == a.bucket);
            match bucket {
                Some((_, k)) if reset + SAME_WINDOW < k.reset => {}
                Some((_, k)) if reset <= k.reset + SAME_WINDOW => {
                    k.last_allowed = k.last_allowed.min(last_allowed);
                    k.reset = k.reset.max(reset);
                }
                Some((_, k)) => {
                    *k = Known {
                        last_allowed,
                        reset,
                        next: None,
                    };
                    new_window = true;
                }
                None => {
                    new_window = true;
                    h.known.push((
                        a.bucket.clone(),
                        Known {
                            last_allowed,
                            reset,
                            next: None,
                        },
                    ))
                }
            }
        }
        // Nothing in flight and nothing known: the host is forgotten.
        if h.in_flight.is_empty() && h.known.is_empty() && h.untracked == 0 {
            hosts.remove(host);
        }
        new_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(remaining: u64, reset_ms: u64) -> Announced {
        Announced {
            bucket: None,
            limit: None,
            remaining,
            reset: Duration::from_millis(reset_ms),
            heard: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    /// Allowances where "h" has announced `remaining` for `reset_ms`, nothing in flight.
    fn announced(remaining: u64, reset_ms: u64, t0: Instant) -> Allowances {
        let a = Allowances::default();
        assert_eq!(
            a.take("h", t0, || 0),
            Ok(0),
            "untracked before it announces"
        );
        a.done("h", 0, Some(&said(remaining, reset_ms)), t0);
        a
    }

    #[test]
    fn hosts_that_announce_nothing_are_not_tracked() {
        let a = Allowances::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.take("h", t0, || panic!("not asked")), Ok(0));
        }
        for _ in 0..3 {
            assert!(!a.done("h", 0, None, t0));
        }
        assert!(a.hosts.lock().unwrap().is_empty());
    }

    #[test]
    fn a_host_pauses_when_nothing_remains_until_the_reset() {
        let t0 = Instant::now();
        let a = announced(2, 10_000, t0);
        assert_eq!(a.take("h", t0, || 0), Ok(1));
        assert_eq!(a.take("h", t0, || 0), Ok(2));
        match a.take("h", t0, || 0) {
            Err(Wait::Spent { until, reset }) => {
                assert_eq!(reset, t0 + Duration::from_secs(10));
                assert!(until >= reset + AFTER_RESET && until <= reset + AFTER_RESET + JITTER);
            }
            other => panic!("{other:?}"),
        }
        // After the reset nothing is known: the user's pace again.
        assert!(a.take("h", t0 + Duration::from_secs(10), || 0).is_ok());
    }

    #[test]
    fn requests_in_flight_when_a_host_first_announces_count_against_it() {
        let a = Allowances::default();
        let t0 = Instant::now();
        // Four requests in flight, untracked; the first answer says 3 remain. The three
        // others may be the host's, counted after it: nothing more may leave.
        for _ in 0..4 {
            assert_eq!(a.take("h", t0, || 0), Ok(0));
        }
        a.done("h", 0, Some(&said(3, 10_000)), t0);
        assert!(matches!(a.take("h", t0, || 0), Err(Wait::Spent { .. })));
    }

    #[test]
    fn requests_in_flight_count_against_what_remains() {
        let t0 = Instant::now();
        let a = announced(100, 10_000, t0);
        // Four requests in flight; the second answers "3 remaining" first.
        let seqs: Vec<u64> = (0..4).map(|_| a.take("h", t0, || 0).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        a.done("h", 2, Some(&said(3, 10_000)), t0);
        // The server may still count request 1 (sent before, in flight): up to 2 + 3 − 1 = 4.
        // Numbers 3 and 4 are taken already: nothing more may leave.
        assert!(matches!(a.take("h", t0, || 0), Err(Wait::Spent { .. })));
        // A later answer with more left does not raise the bound within the window.
        a.done("h", 4, Some(&said(9, 10_000)), t0);
        assert!(matches!(a.take("h", t0, || 0), Err(Wait::Spent { .. })));
    }

    #[test]
    fn a_later_window_replaces_the_bound_and_an_earlier_one_is_ignored() {
        let t0 = Instant::now();
        let a = announced(100, 60_000, t0);
        let s1 = a.take("h", t0, || 0).unwrap();
        let s2 = a.take("h", t0, || 0).unwrap();
        a.done("h", s2, Some(&said(0, 60_000)), t0);
        assert!(a.take("h", t0, || 0).is_err());
        // A response from a window already over (its reset sooner) changes nothing.
        a.done("h", s1, Some(&said(50, 1_000)), t0);
        assert!(a.take("h", t0, || 0).is_err());
        // One from a later window does.
        let later = t0 + Duration::from_secs(60);
        let s3 = a.take("h", later, || 0).unwrap();
        a.done("h", s3, Some(&said(10, 60_000)), later);
        assert!(a.take("h", later, || 0).is_ok());
    }

    #[test]
    fn a_spent_bucket_holds_the_host_though_another_has_plenty() {
        let a = Allowances::default();
        let t0 = Instant::now();
        let bucket = |name: &str, remaining, reset_ms| Announced {
            bucket: Some(name.to_string()),
            ..said(remaining, reset_ms)
        };
        assert_eq!(a.take("h", t0, || 0), Ok(0));
        a.done("h", 0, Some(&bucket("core", 4000, 3_600_000)), t0);
        let s1 = a.take("h", t0, || 0).unwrap();
        a.done("h", s1, Some(&bucket("search", 0, 60_000)), t0);
        match a.take("h", t0, || 0) {
            Err(Wait::Spent { reset, .. }) => assert_eq!(reset, t0 + Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        assert!(a.take("h", t0 + Duration::from_secs(60), || 0).is_ok());
    }

    #[test]
    fn what_remains_is_spread_over_the_time_to_reset_when_more_is_queued() {
        let t0 = Instant::now();
        let a = announced(4, 8_000, t0);
        // 100 queued, 4 remain over 8 s: one every 2 s.
        assert!(a.take("h", t0, || 100).is_ok());
        match a.take("h", t0 + Duration::from_millis(10), || 100) {
            Err(Wait::Spread { until }) => assert_eq!(until, t0 + Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        // With fewer queued than remain, the user's pace.
        assert!(a.take("h", t0 + Duration::from_millis(10), || 1).is_ok());
    }
}
