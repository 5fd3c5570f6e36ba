//! Allowance: what each host's server says is left (`announce`), turned into when the next
//! request to it may leave. Used by `fetch` around every request; a host that announced
//! nothing goes at the user's pace.
//!
//! - **Requests in flight count.** Every request to a host that announced a limit is
//!   recorded as it leaves (hosts that announce nothing cost one atomic add and no lock).
//!   When a host first announces, every request then in flight may be one of its. What may
//!   still leave in a window is the least any answer said is left, less every request under
//!   way (the server may count them after that answer; answers overtake one another). Before
//!   the run's first answer, one request goes at a time (for at most `FIRST_ALONE`).
//! - **The reset is estimated, not taken at its latest bound.** A reset in whole seconds
//!   bounds the true instant to an interval (`announce::Announced::resolution`): from the
//!   request's send plus the value less its resolution, to the response plus the value. The
//!   intervals of every response in a window are intersected. A window opens at the server's
//!   first request after the previous reset (express-rate-limit and the Python `limits`
//!   library count so): between that request's send and its answer. It lasts the window the
//!   server states (`RateLimit-Policy`'s `w`), or at most what earlier windows showed (the
//!   least of their reset's upper end less their opening's lower end). The host pauses until
//!   the upper end of all that, plus `AFTER_RESET`.
//! - **Windows.** A response whose interval lies after the current window's, or that says
//!   more is left than an answer heard before its request left (within a fixed window what is
//!   left only shrinks), starts a new window; one whose interval lies before it is from a
//!   window already over and changes nothing. After a fixed window's reset, its whole limit
//!   may leave again, no more, until the next window's first answer. Once the reset has passed, nothing is known of the allowance until the next
//!   response says more, and the host goes at the user's pace.
//! - **Fixed or moving.** After the first reset, while the kind of window is not known, one
//!   request goes alone (a probe) and its answer tells: a fixed window gives its whole
//!   allowance back, a moving window (Flask-Limiter's `moving-window`) frees only the slots
//!   whose requests left a window ago. For a moving window the host mirrors the server's
//!   count: a request may leave while fewer than the limit of its own requests were answered
//!   within the window (a slot frees a window after its request's answer), so that at most
//!   what the window frees leaves at once. Each answer's remaining count also bounds the
//!   window (requests the server no longer counts left at least a window before it).
//! - **Buckets.** A server may name buckets (GitHub's `core` and `search`): each is kept,
//!   and each bounds every request to the host (which bucket a request falls in is known only
//!   from its response), the safe side.
//! - **Used whole, then pause.** What remains in a fixed window leaves at the user's pace;
//!   when nothing remains, the whole host pauses until the latest its reset may be. (What
//!   remains is not spread over the time to the reset, as prawcore does: a reset known only
//!   to a second or two would leave the end of every window unused.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::announce::{Announced, MAX_RESET};

/// A pause ends this long after the upper end of the announced reset, plus up to `JITTER`
/// more, so that clients paused together do not all come back at the same instant.
pub const AFTER_RESET: Duration = Duration::from_millis(15);
const JITTER: Duration = Duration::from_millis(10);
/// How often a request waiting for a probe's answer (or for a slot of a moving window held by
/// a request in flight) looks again.
const POLL: Duration = Duration::from_millis(5);
/// How long the run's first request goes alone, at most, waiting for its answer.
const FIRST_ALONE: Duration = Duration::from_millis(250);
/// How late a server may announce a reset beyond its resolution: slowapi adds a second.
const LATE: Duration = Duration::from_secs(1);
/// Requests remembered per host, answered ones beyond the longest window forgotten first.
const LOG_CAP: usize = 4096;
/// What a host is remembered for, per window, while its window's length is not known.
const UNKNOWN_WINDOW: Duration = Duration::from_secs(30);

/// What the answer to a request said, for [`Allowances::done`].
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The limit it announced, if any.
    pub announced: Option<&'a Announced>,
    /// The server turned the request away (a 429, or a 403 that the limit explains).
    pub refused: bool,
}

/// Why a request may not leave yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing remains before the reset: the host pauses until `until`.
    Spent { until: Instant, reset: Instant },
    /// A moving window frees its next slot, a probe or the requests under way are being
    /// answered: the next may leave at `until`.
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
    /// No request left before this: the earliest a host's first window may have opened.
    started: Instant,
    /// Whether any request was answered yet: until then one goes at a time (for up to
    /// `FIRST_ALONE`), so that a server's first announcement comes before a burst it would
    /// refuse.
    answered: AtomicBool,
    /// When the run's first request left.
    first_at: std::sync::OnceLock<Instant>,
}

impl Default for Allowances {
    fn default() -> Allowances {
        Allowances::new(Duration::from_secs(30))
    }
}

/// An interval known to hold a true instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: Instant,
    hi: Instant,
}

impl Span {
    fn new(lo: Instant, hi: Instant) -> Span {
        Span { lo: lo.min(hi), hi }
    }

    /// The intersection; when the two do not meet (a server that broke the rounding this
    /// model assumes), the later of the two, the safe side.
    fn meet(self, other: Span) -> Span {
        let (lo, hi) = (self.lo.max(other.lo), self.hi.min(other.hi));
        if lo <= hi {
            Span { lo, hi }
        } else if self.hi >= other.hi {
            self
        } else {
            other
        }
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
    /// The numbered requests not forgotten yet, in number order.
    log: VecDeque<Request>,
    /// Those of `log` not answered yet.
    unanswered: u64,
    /// What is known per bucket (`None`: the host's own). Each bounds every request to the
    /// host, since which bucket a request falls in is known only from its response.
    buckets: Vec<(Option<String>, Bucket)>,
    /// When the last answer came.
    last_heard: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    seq: u64,
    /// When it was let go (it left no earlier).
    sent: Instant,
    /// When its answer came, or `None` while in flight.
    heard: Option<Instant>,
    /// The server refused it (it counts in no moving window).
    refused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not seen across a reset yet.
    Unknown,
    /// A reset gives the whole allowance back.
    Fixed,
    /// A reset frees the slots of the requests a window ago.
    Moving,
}

struct Bucket {
    limit: Option<u64>,
    /// The window's length: as the server states it, or the most that earlier windows allow.
    window: Option<Duration>,
    stated: bool,
    /// Whether windows open at the first request after a reset, as this model takes them
    /// (until a request it let go is refused: then the window's length bounds nothing).
    trusted: bool,
    kind: Kind,
    /// The current window of a fixed (or not yet known) kind.
    current: Option<Window>,
    /// The request that goes alone after a reset while the kind is unknown, until answered.
    probe: Option<u64>,
    /// The last window that ended (its reset passed), until the next one begins: what it
    /// showed is learnt then. Its presence also means the next request probes.
    closed: Option<Window>,
}

struct Window {
    /// The least any answer in it said is left, and when that answer came: what may still
    /// leave is that, less every request in flight (the server may count them after it).
    floor: (Instant, u64),
    reset: Span,
    /// When the server opened it (its first request), when known.
    opened: Option<Span>,
    /// When it began (for a provisional window: requests let go before may be the window
    /// before's).
    first_sent: Instant,
    /// Opened by this side after a fixed window's reset, before any answer from the next
    /// window: its first answer replaces it.
    provisional: bool,
}

impl Window {
    /// What may still leave in it, with `in_flight` requests under way.
    fn left(&self, in_flight: u64) -> u64 {
        self.floor.1.saturating_sub(in_flight)
    }
}

impl Bucket {
    fn new(a: &Announced) -> Bucket {
        Bucket {
            limit: a.limit,
            window: a.window,
            stated: a.window.is_some(),
            trusted: true,
            kind: Kind::Unknown,
            current: None,
            probe: None,
            closed: None,
        }
    }

    /// Bounds `w`'s reset by its opening plus the window's length (stated: both ends;
    /// learnt: the upper end only).
    fn bound_by_window(&self, w: &mut Window) {
        if !self.trusted {
            return;
        }
        if let (Some(len), Some(opened)) = (self.window, w.opened) {
            let by_window = Span::new(
                if self.stated {
                    opened.lo + len
                } else {
                    w.reset.lo
                },
                opened.hi + len,
            );
            w.reset = w.reset.meet(by_window);
        }
    }

    /// A fixed window that ended: what it shows of the window's length.
    fn learn_from(&mut self, old: &Window) {
        if self.stated || !self.trusted {
            return;
        }
        if let Some(opened) = old.opened {
            let most = old.reset.hi.saturating_duration_since(opened.lo);
            self.window = Some(self.window.map_or(most, |w| w.min(most)));
        }
    }

    /// Requests answered within the window before `now`, or in flight, that a moving window
    /// may still count; and when the earliest of the answered ones frees its slot.
    fn moving_count(&self, log: &VecDeque<Request>, now: Instant) -> (u64, Vec<Instant>) {
        let Some(len) = self.window else {
            return (0, Vec::new());
        };
        let mut frees = Vec::new();
        let mut held = 0;
        for r in log.iter().filter(|r| !r.refused) {
            match r.heard {
                None => held += 1,
                Some(heard) => {
                    let free = heard + len + AFTER_RESET;
                    if free > now {
                        held += 1;
                        frees.push(free);
                    }
                }
            }
        }
        frees.sort_unstable();
        (held, frees)
    }
}

impl Allowances {
    /// Allowances for a run whose requests end within `timeout`.
    pub fn new(timeout: Duration) -> Allowances {
        Allowances {
            timeout,
            hosts: Mutex::default(),
            any: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            started: Instant::now(),
            answered: AtomicBool::new(false),
            first_at: std::sync::OnceLock::new(),
        }
    }

    /// Whether a request to `host` may leave at `now`, as `take` would judge it, taking
    /// nothing: a worker asks before it waits for the global rate, so that a host with
    /// nothing left does not take a token.
    pub fn check(&self, host: &str, now: Instant) -> Result<(), Wait> {
        if !self.any.load(Ordering::Acquire) {
            return self.first(now);
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        match hosts.get_mut(host) {
            Some(h) => h.judge(now).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Takes a sequence number for one request to `host`, leaving at `now` (judged at the
    /// instant it is sent, after the global rate let it go); or says how long to wait.
    /// Returns the request's number (0: the host announced nothing; untracked).
    pub fn take(&self, host: &str, now: Instant) -> Result<u64, Wait> {
        if !self.any.load(Ordering::Acquire) {
            self.first(now)?;
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok(0);
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = hosts.get_mut(host) else {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok(0);
        };
        let probe = h.judge(now)?;
        h.sent += 1;
        let seq = h.sent;
        if probe {
            for (_, b) in &mut h.buckets {
                if b.kind == Kind::Unknown && b.current.is_none() && b.closed.is_some() {
                    b.probe = Some(seq);
                }
            }
        }
        h.unanswered += 1;
        h.log.push_back(Request {
            seq,
            sent: now,
            heard: None,
            refused: false,
        });
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(seq)
    }

    /// Before the run's first answer, and for at most `FIRST_ALONE` after its first request
    /// left, a request waits while another is in flight (a slow server costs the run no more).
    fn first(&self, now: Instant) -> Result<(), Wait> {
        if self.answered.load(Ordering::Acquire) {
            return Ok(());
        }
        let first = *self.first_at.get_or_init(|| now);
        if self.in_flight.load(Ordering::Acquire) == 0 || now >= first + FIRST_ALONE {
            Ok(())
        } else {
            Err(Wait::Spread {
                until: (now + POLL).min(first + FIRST_ALONE),
            })
        }
    }

    /// Request `seq` to `host` is over at `now`: answered (or timed out: it may have
    /// counted), with what the answer said, or `None` when it was not sent after all. True
    /// when the answer began a new window for a bucket.
    pub fn done(&self, host: &str, seq: u64, answer: Option<Answer<'_>>, now: Instant) -> bool {
        let announced = answer.and_then(|a| a.announced);
        let refused = answer.is_some_and(|a| a.refused);
        if answer.is_some() {
            self.answered.store(true, Ordering::Release);
        }
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
        let sent = match h.log.iter_mut().find(|r| r.seq == seq) {
            Some(r) if answer.is_none() => {
                // Not sent: it holds no slot.
                let sent = r.sent;
                h.unanswered -= u64::from(r.heard.is_none());
                h.log.retain(|r| r.seq != seq);
                sent
            }
            Some(r) => {
                h.unanswered -= u64::from(r.heard.is_none());
                r.heard = Some(now);
                r.refused = refused;
                r.sent
            }
            // Untracked: let go at some time since the run began.
            None => self.started,
        };
        for (_, b) in &mut h.buckets {
            if b.probe == Some(seq) {
                b.probe = None;
            }
        }
        if answer.is_some() {
            h.last_heard = Some(now);
        }
        let new_window = match announced {
            Some(a) => h.heard(seq, sent, a, refused, now, self.started),
            None => false,
        };
        h.forget(now);
        if h.idle(now) {
            hosts.remove(host);
        }
        new_window
    }

    /// When `host`'s announced allowance gives requests again, if it is spent now.
    pub fn spent_until(&self, host: &str, now: Instant) -> Option<Instant> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let h = hosts.get(host)?;
        let in_flight = h.in_flight();
        h.buckets
            .iter()
            .filter_map(|(_, b)| b.current.as_ref())
            .filter(|w| w.left(in_flight) == 0 && w.reset.hi > now)
            .map(|w| w.reset.hi + AFTER_RESET)
            .max()
    }
}

impl Host {
    /// Requests under way: numbered ones not answered, and untracked ones.
    fn in_flight(&self) -> u64 {
        self.unanswered + self.untracked
    }

    /// Whether a request may leave at `now` under every bucket (`Ok(true)`: it goes alone,
    /// as a probe); closes windows whose reset has passed (opening a fixed window's next one,
    /// provisionally, at its full limit).
    fn judge(&mut self, now: Instant) -> Result<bool, Wait> {
        let untracked = self.untracked;
        let in_flight = self.in_flight();
        let mut spent: Option<Instant> = None;
        let mut held: Option<Instant> = None;
        let mut probe = false;
        for (_, b) in &mut self.buckets {
            if b.kind == Kind::Moving {
                let (Some(limit), Some(_)) = (b.limit, b.window) else {
                    continue;
                };
                let (count, frees) = b.moving_count(&self.log, now);
                let count = count + untracked;
                if count >= limit {
                    // The slot that frees the earliest that leaves fewer than the limit.
                    let until = usize::try_from(count - limit)
                        .ok()
                        .and_then(|i| frees.get(i).copied())
                        .unwrap_or(now + POLL);
                    held = held.max(Some(until));
                }
                continue;
            }
            if b.current
                .as_ref()
                .is_some_and(|w| w.reset.hi + AFTER_RESET <= now)
            {
                b.closed = b
                    .current
                    .take()
                    .filter(|w| !w.provisional)
                    .or(b.closed.take());
                // A fixed window of a known length gives its whole limit back: no more than
                // that leaves before the next one's first answer.
                if let (Kind::Fixed, Some(limit), Some(len)) = (b.kind, b.limit, b.window) {
                    b.current = Some(Window {
                        floor: (now, limit),
                        reset: Span::new(now, now + len),
                        opened: None,
                        first_sent: now,
                        provisional: true,
                    });
                }
            }
            let Some(w) = &b.current else {
                if b.kind == Kind::Unknown && b.closed.is_some() && b.limit.is_some() {
                    match b.probe {
                        Some(_) => held = held.max(Some(now + POLL)),
                        None => probe = true,
                    }
                }
                continue;
            };
            if w.floor.1 == 0 {
                spent = spent.max(Some(w.reset.hi));
            } else if w.left(in_flight) == 0 {
                // What is left may go to the requests under way: look again when they are
                // answered.
                held = held.max(Some(now + POLL));
            }
        }
        if let Some(reset) = spent {
            let jitter = JITTER.mul_f64(fastrand::f64());
            return Err(Wait::Spent {
                until: reset + AFTER_RESET + jitter,
                reset,
            });
        }
        if let Some(until) = held {
            return Err(Wait::Spread { until });
        }
        Ok(probe)
    }

    /// What request `seq` (let go at `sent`, answered at `now`) was told: `a`. True when it
    /// began a new window.
    fn heard(
        &mut self,
        seq: u64,
        sent: Instant,
        a: &Announced,
        refused: bool,
        now: Instant,
        started: Instant,
    ) -> bool {
        let reset_in = a.reset.min(MAX_RESET);
        // The latest the reset may be is what it says; the earliest, a resolution and a
        // second before (servers that announce a second late, as slowapi does).
        let slack = a.resolution + LATE;
        let said = Span::new(sent + reset_in.saturating_sub(slack), now + reset_in);
        let index = match self.buckets.iter().position(|(b, _)| *b == a.bucket) {
            Some(i) => i,
            None => {
                self.buckets.push((a.bucket.clone(), Bucket::new(a)));
                self.buckets.len() - 1
            }
        };
        let untracked = self.untracked;
        let log = &self.log;
        let (_, b) = &mut self.buckets[index];
        if b.limit.is_none() {
            b.limit = a.limit;
        }
        if let Some(w) = a.window {
            b.window = Some(w);
            b.stated = true;
        }
        if refused && seq > 0 {
            if b.kind == Kind::Moving {
                // A slot freed later than the window learnt says: it is longer.
                if !b.stated {
                    b.window = b.window.map(|w| (w * 2).min(MAX_RESET));
                }
            } else {
                // A request this model let go was refused: the server's windows do not open
                // at the first request after a reset (they may be aligned to the clock), or
                // others share them. Their length bounds nothing from now on.
                b.trusted = false;
                if !b.stated {
                    b.window = None;
                }
            }
        }
        if b.kind == Kind::Moving {
            if !refused && untracked == 0 {
                learn_moving(b, log, seq, sent, a.remaining, now);
            }
            return false;
        }
        let new_window = match &mut b.current {
            // Naming a reset before the window's earliest: an earlier window's answer.
            Some(w) if said.hi < w.reset.lo => return false,
            // Let go before the window this side opened after a reset: from the window
            // before, or one the next window counted, the safe side.
            Some(w) if w.provisional && sent < w.first_sent => {
                w.floor.1 = w.floor.1.saturating_sub(1);
                return false;
            }
            Some(w) if w.provisional => true,
            // The server gave allowance back (within a fixed window what is left only shrinks:
            // a request let go after an answer leaves less than it, unless refused), or names
            // a reset later than this window's: a new window, which began while what was left
            // was being sent.
            Some(w)
                if (!refused && w.floor.0 <= sent && a.remaining >= w.floor.1)
                    || said.lo > w.reset.hi =>
            {
                true
            }
            Some(w) => {
                if a.remaining < w.floor.1 {
                    w.floor = (now, a.remaining);
                }
                w.reset = w.reset.meet(said);
                if let Some(opened) = &mut w.opened {
                    opened.hi = opened.hi.min(now);
                }
                false
            }
            None => true,
        };
        if new_window {
            let old = match b.current.take() {
                // The server counted this request in a new window: the old one had reset by
                // the time the request arrived.
                Some(mut w) if !w.provisional => {
                    w.reset = Span::new(w.reset.lo.min(now), w.reset.hi.min(now));
                    Some(w)
                }
                _ => b.closed.take(),
            };
            // The server's first request of the new window is one answered after the old
            // window's earliest reset (or, for the first window, any one remembered).
            // Requests untracked (sent before the host announced) leave only the run's start
            // as the earliest it may have opened.
            let after = old.as_ref().map(|w| w.reset.lo);
            let first = if untracked > 0 || seq == 0 {
                Some(started)
            } else {
                log.iter()
                    .filter(|r| match (r.heard, after) {
                        (Some(heard), Some(after)) => heard > after,
                        _ => true,
                    })
                    .map(|r| r.sent)
                    .min()
            };
            let opened = first.map(|first| Span::new(first.max(after.unwrap_or(first)), now));
            if let Some(old) = &old {
                b.learn_from(old);
                // The first answer after a reset tells the kind: a fixed window gives back
                // all but what was sent into it.
                if b.kind == Kind::Unknown && !refused {
                    if let Some(limit) = b.limit {
                        // Sent after the old window's latest reset, or still in flight.
                        let in_new = log
                            .iter()
                            .filter(|r| r.heard.is_none() || r.sent >= old.reset.hi || r.seq == seq)
                            .count() as u64;
                        b.kind = if a.remaining + in_new < limit {
                            Kind::Moving
                        } else {
                            Kind::Fixed
                        };
                    }
                }
                if b.kind == Kind::Moving {
                    return true;
                }
            }
            b.current = Some(Window {
                floor: (now, a.remaining),
                reset: said,
                opened,
                first_sent: sent,
                provisional: false,
            });
        }
        if let Some(mut w) = b.current.take() {
            b.bound_by_window(&mut w);
            b.current = Some(w);
        }
        new_window
    }

    /// Forgets answered requests that no window can count any more, nor tell a window's
    /// length by (two windows back, within `LOG_CAP`).
    fn forget(&mut self, now: Instant) {
        let keep = self
            .buckets
            .iter()
            .map(|(_, b)| {
                let ahead = b.current.as_ref().map_or(Duration::ZERO, |w| {
                    w.reset.hi.saturating_duration_since(now)
                });
                b.window.unwrap_or(Duration::ZERO).max(ahead)
            })
            .max()
            .unwrap_or(Duration::ZERO)
            * 2
            + AFTER_RESET;
        while let Some(first) = self.log.front() {
            match first.heard {
                Some(heard) if heard + keep <= now || self.log.len() > LOG_CAP => {
                    self.log.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Whether nothing is under way nor worth keeping: a host with nothing in flight, no
    /// window in force, and no answer for two of its windows (a minute when not known) is
    /// forgotten; what it showed of its windows is learnt again.
    fn idle(&self, now: Instant) -> bool {
        let keep = self
            .buckets
            .iter()
            .map(|(_, b)| b.window.unwrap_or(UNKNOWN_WINDOW))
            .max()
            .unwrap_or(Duration::ZERO)
            * 2;
        self.log.is_empty()
            && self.untracked == 0
            && self.last_heard.is_none_or(|t| t + keep <= now)
            && self.buckets.iter().all(|(_, b)| {
                b.probe.is_none() && b.current.as_ref().is_none_or(|w| w.reset.hi <= now)
            })
    }
}

/// What an answer from a moving window shows of its length: the server no longer counts
/// some requests answered before this one left, so they arrived at least a window before
/// this answer. `remaining` is what it said after counting request `seq`.
fn learn_moving(
    b: &mut Bucket,
    log: &VecDeque<Request>,
    seq: u64,
    sent: Instant,
    remaining: u64,
    now: Instant,
) {
    if b.stated {
        return;
    }
    let Some(limit) = b.limit else {
        return;
    };
    // Counted by the server when it answered: `limit − remaining`, this one included.
    let counted = limit.saturating_sub(remaining);
    let mut before: Vec<Instant> = log
        .iter()
        .filter(|r| r.seq != seq && !r.refused && r.heard.is_some_and(|h| h <= sent))
        .map(|r| r.sent)
        .collect();
    let expired = (before.len() as u64 + 1).saturating_sub(counted);
    if expired == 0 {
        return;
    }
    before.sort_unstable();
    // The `expired`-th earliest arrival had left the window: it arrived no earlier than the
    // `expired`-th earliest send.
    let Some(&oldest) = usize::try_from(expired - 1)
        .ok()
        .and_then(|i| before.get(i))
    else {
        return;
    };
    let most = now.saturating_duration_since(oldest);
    b.window = Some(b.window.map_or(most, |w| w.min(most)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer that was not refused, saying `announced`.
    fn heard(announced: Option<&Announced>) -> Option<Answer<'_>> {
        Some(Answer {
            announced,
            refused: false,
        })
    }

    fn said(remaining: u64, reset_ms: u64) -> Announced {
        Announced {
            bucket: None,
            limit: None,
            remaining,
            reset: Duration::from_millis(reset_ms),
            resolution: Duration::ZERO,
            window: None,
            heard: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    /// Allowances where "h" has announced `remaining` for `reset_ms`, nothing in flight.
    fn announced(remaining: u64, reset_ms: u64, t0: Instant) -> Allowances {
        let a = started_at(t0);
        assert_eq!(a.take("h", t0), Ok(0), "untracked before it announces");
        a.done("h", 0, heard(Some(&said(remaining, reset_ms))), t0);
        a
    }

    #[test]
    fn hosts_that_announce_nothing_are_not_tracked() {
        let a = Allowances::default();
        let t0 = Instant::now();
        assert_eq!(a.take("h", t0), Ok(0));
        assert!(!a.done("h", 0, heard(None), t0));
        for _ in 0..3 {
            assert_eq!(a.take("h", t0), Ok(0));
        }
        for _ in 0..3 {
            assert!(!a.done("h", 0, heard(None), t0));
        }
        assert!(a.hosts.lock().unwrap().is_empty());
    }

    #[test]
    fn a_host_pauses_when_nothing_remains_until_the_reset() {
        let t0 = Instant::now();
        let a = announced(2, 10_000, t0);
        assert_eq!(a.take("h", t0), Ok(1));
        assert_eq!(a.take("h", t0), Ok(2));
        // Both under way: they may take what is left; look again when they are answered.
        assert_eq!(a.take("h", t0), Err(Wait::Spread { until: t0 + POLL }));
        a.done("h", 1, heard(Some(&said(1, 10_000))), t0);
        a.done("h", 2, heard(Some(&said(0, 10_000))), t0);
        match a.take("h", t0) {
            Err(Wait::Spent { until, reset }) => {
                assert_eq!(reset, t0 + Duration::from_secs(10));
                assert!(until >= reset + AFTER_RESET && until <= reset + AFTER_RESET + JITTER);
            }
            other => panic!("{other:?}"),
        }
        // Until the reset and its margin, nothing more; after it nothing is known: the user's
        // pace again.
        let reset = t0 + Duration::from_secs(10);
        assert!(a.take("h", reset).is_err());
        assert!(a.take("h", reset + AFTER_RESET).is_ok());
    }

    #[test]
    fn before_the_first_answer_one_request_goes_at_a_time() {
        let a = Allowances::default();
        let t0 = Instant::now();
        assert_eq!(a.take("h", t0), Ok(0));
        assert_eq!(a.check("h", t0), Err(Wait::Spread { until: t0 + POLL }));
        assert_eq!(a.take("g", t0), Err(Wait::Spread { until: t0 + POLL }));
        a.done("h", 0, heard(None), t0);
        assert_eq!(a.take("h", t0), Ok(0));
        assert_eq!(a.take("g", t0), Ok(0));
    }

    #[test]
    fn a_first_answer_that_is_slow_holds_the_others_no_longer_than_a_moment() {
        let a = Allowances::default();
        let t0 = Instant::now();
        assert_eq!(a.take("h", t0), Ok(0));
        assert!(a.take("h", t0 + FIRST_ALONE - ms(1)).is_err());
        assert_eq!(a.take("h", t0 + FIRST_ALONE), Ok(0));
    }

    #[test]
    fn requests_in_flight_when_a_host_first_announces_count_against_it() {
        let a = Allowances::default();
        let t0 = Instant::now();
        // Another host answered already: requests go together.
        a.answered.store(true, Ordering::Release);
        // Four requests in flight, untracked; the first answer says 3 remain. The three
        // others may be the host's, counted after it: nothing more may leave until they are
        // answered.
        for _ in 0..4 {
            assert_eq!(a.take("h", t0), Ok(0));
        }
        a.done("h", 0, heard(Some(&said(3, 10_000))), t0);
        assert_eq!(a.take("h", t0), Err(Wait::Spread { until: t0 + POLL }));
        // Two are answered without an announcement (not the host's after all): two may leave.
        a.done("h", 0, heard(None), t0);
        a.done("h", 0, heard(None), t0);
        assert!(a.take("h", t0).is_ok());
        assert!(a.take("h", t0).is_ok());
        assert!(matches!(a.take("h", t0), Err(Wait::Spread { .. })));
    }

    #[test]
    fn requests_in_flight_count_against_what_remains() {
        let t0 = Instant::now();
        let a = announced(100, 10_000, t0);
        // Four requests in flight; the second answers "3 remaining" first. The three others
        // under way may take those 3: nothing more may leave meanwhile.
        let seqs: Vec<u64> = (0..4).map(|_| a.take("h", t0).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        a.done("h", 2, heard(Some(&said(3, 10_000))), t0);
        assert!(matches!(a.take("h", t0), Err(Wait::Spread { .. })));
        // Request 1 was counted before it (4 left); 3 and 4 after it (2, 1 left): 1 remains.
        a.done("h", 1, heard(Some(&said(4, 10_000))), t0);
        a.done("h", 3, heard(Some(&said(2, 10_000))), t0);
        a.done("h", 4, heard(Some(&said(1, 10_000))), t0);
        let s5 = a.take("h", t0 + ms(1)).unwrap();
        a.done("h", s5, heard(Some(&said(0, 10_000))), t0 + ms(2));
        assert!(matches!(a.take("h", t0 + ms(2)), Err(Wait::Spent { .. })));
        // Within a fixed window what is left only shrinks: an answer with more left, to a
        // request let go after the last answer, is from a new window the server began.
        let s6 = a
            .take("h", t0 + Duration::from_secs(10) + AFTER_RESET)
            .unwrap();
        assert!(a.done("h", s6, heard(Some(&said(9, 10_000))), t0 + ms(3)));
        assert!(a.take("h", t0 + ms(3)).is_ok());
    }

    #[test]
    fn a_later_window_replaces_the_bound_and_an_earlier_one_is_ignored() {
        let t0 = Instant::now();
        let a = announced(100, 60_000, t0);
        let s1 = a.take("h", t0).unwrap();
        let s2 = a.take("h", t0).unwrap();
        a.done("h", s2, heard(Some(&said(0, 60_000))), t0);
        assert!(a.take("h", t0).is_err());
        // A response from a window already over (its reset sooner) changes nothing.
        a.done("h", s1, heard(Some(&said(50, 1_000))), t0);
        assert!(a.take("h", t0).is_err());
        // One from a later window does.
        let later = t0 + Duration::from_secs(60) + AFTER_RESET;
        let s3 = a.take("h", later).unwrap();
        a.done("h", s3, heard(Some(&said(10, 60_000))), later);
        assert!(a.take("h", later).is_ok());
    }

    #[test]
    fn a_spent_bucket_holds_the_host_though_another_has_plenty() {
        let a = Allowances::default();
        let t0 = Instant::now();
        let bucket = |name: &str, remaining, reset_ms| Announced {
            bucket: Some(name.to_string()),
            ..said(remaining, reset_ms)
        };
        assert_eq!(a.take("h", t0), Ok(0));
        a.done("h", 0, heard(Some(&bucket("core", 4000, 3_600_000))), t0);
        let s1 = a.take("h", t0).unwrap();
        a.done("h", s1, heard(Some(&bucket("search", 0, 60_000))), t0);
        match a.take("h", t0) {
            Err(Wait::Spent { reset, .. }) => assert_eq!(reset, t0 + Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        let reset = t0 + Duration::from_secs(60);
        assert!(a.take("h", reset + AFTER_RESET).is_ok());
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What servers send: a limit of 5, whole seconds (`resolution` 1 s, or 2 s for an epoch
    /// read against a `Date`), a window stated or not.
    fn whole(remaining: u64, reset_s: u64, resolution_s: u64, window: Option<u64>) -> Announced {
        Announced {
            bucket: None,
            limit: Some(5),
            remaining,
            reset: Duration::from_secs(reset_s),
            resolution: Duration::from_secs(resolution_s),
            window: window.map(Duration::from_secs),
            heard: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    /// Allowances of a run that started at `t0`.
    fn started_at(t0: Instant) -> Allowances {
        Allowances {
            started: t0,
            ..Allowances::default()
        }
    }

    fn spent_reset(a: &Allowances, now: Instant) -> Instant {
        match a.take("h", now) {
            Err(Wait::Spent { reset, .. }) => reset,
            other => panic!("{other:?}"),
        }
    }

    /// Four requests taken at `sent`, answered at `heard` with 3, 2, 1, 0 remaining and
    /// `reset_s`.
    fn spend(a: &Allowances, sent: Instant, at: Instant, reset_s: u64, res: u64, w: Option<u64>) {
        let seqs: Vec<u64> = (0..4).map(|_| a.take("h", sent).unwrap()).collect();
        for (i, seq) in seqs.into_iter().enumerate() {
            let said = whole(3 - i as u64, reset_s, res, w);
            a.done("h", seq, heard(Some(&said)), at);
        }
    }

    #[test]
    fn the_reset_is_where_every_answer_allows_it() {
        let t0 = Instant::now();
        let a = started_at(t0);
        assert_eq!(a.take("h", t0), Ok(0));
        // At 1 ms: "4 left, reset in 4 s" allows the reset from 3.001 s to 4.001 s.
        a.done("h", 0, heard(Some(&whole(4, 4, 1, None))), t0 + ms(1));
        // At 1.6 s: "reset in 2 s" allows 2.6 s to 3.601 s. Together: 3.001 s to 3.601 s.
        spend(&a, t0 + ms(1600), t0 + ms(1601), 2, 1, None);
        assert_eq!(spent_reset(&a, t0 + ms(1602)), t0 + ms(3601));
    }

    #[test]
    fn a_stated_window_ends_a_window_after_its_first_request() {
        let t0 = Instant::now();
        let a = started_at(t0);
        assert_eq!(a.take("h", t0), Ok(0));
        // A reset up to 2 s loose (an epoch read against a Date), in a window stated as 3 s
        // that opened between 0 and 2 ms: the window ends by 3.002 s.
        a.done("h", 0, heard(Some(&whole(4, 4, 2, Some(3)))), t0 + ms(2));
        spend(&a, t0 + ms(3), t0 + ms(4), 4, 2, Some(3));
        assert_eq!(spent_reset(&a, t0 + ms(5)), t0 + ms(3002));
    }

    #[test]
    fn a_window_not_stated_is_learnt_from_the_windows_before() {
        let t0 = Instant::now();
        let a = started_at(t0);
        assert_eq!(a.take("h", t0), Ok(0));
        // Window 1 opens by 1 ms and says its reset exactly: 3.001 s at the latest.
        a.done("h", 0, heard(Some(&whole(4, 3, 2, None))), t0 + ms(1));
        spend(&a, t0 + ms(2), t0 + ms(3), 3, 2, None);
        assert_eq!(spent_reset(&a, t0 + ms(4)), t0 + ms(3001));
        // After it, while the kind of window is not known, one request goes alone.
        let back = t0 + ms(3001) + AFTER_RESET;
        let probe = a.take("h", back).unwrap();
        assert!(matches!(a.take("h", back), Err(Wait::Spread { .. })));
        // Window 2 opens with the probe (4 left: a fixed window) and says its reset loosely
        // (an epoch read against a Date: up to 2 s late). It lasts no more than window 1
        // did: 3.001 s from its opening, by 1 ms after `back`.
        a.done("h", probe, heard(Some(&whole(4, 4, 2, None))), back + ms(1));
        spend(&a, back + ms(2), back + ms(3), 4, 2, None);
        assert_eq!(spent_reset(&a, back + ms(4)), back + ms(1) + ms(3001));
    }

    #[test]
    fn a_moving_window_lets_go_only_what_it_frees() {
        let t0 = Instant::now();
        let a = started_at(t0);
        let said = |remaining, reset_s| Announced {
            limit: Some(3),
            ..whole(remaining, reset_s, 1, Some(1))
        };
        assert_eq!(a.take("h", t0), Ok(0));
        a.done("h", 0, heard(Some(&said(2, 1))), t0 + ms(1));
        let (s1, s2) = (
            a.take("h", t0 + ms(10)).unwrap(),
            a.take("h", t0 + ms(10)).unwrap(),
        );
        a.done("h", s1, heard(Some(&said(1, 1))), t0 + ms(11));
        a.done("h", s2, heard(Some(&said(0, 1))), t0 + ms(11));
        assert_eq!(spent_reset(&a, t0 + ms(12)), t0 + ms(1001));
        // The probe after the reset: the window freed one slot only, the one it took.
        let back = t0 + ms(1020);
        let probe = a.take("h", back).unwrap();
        a.done("h", probe, heard(Some(&said(0, 1))), back + ms(1));
        // The next slot frees a window after s1 and s2 were answered.
        let free = t0 + ms(11) + Duration::from_secs(1) + AFTER_RESET;
        assert_eq!(a.take("h", back + ms(2)), Err(Wait::Spread { until: free }));
        assert!(a.take("h", free).is_ok());
        assert!(a.take("h", free).is_ok());
        assert!(matches!(a.take("h", free), Err(Wait::Spread { .. })));
    }

    #[test]
    fn what_remains_goes_at_once() {
        let t0 = Instant::now();
        let a = announced(4, 8_000, t0);
        // The 4 left leave together, not spread over the 8 s to the reset.
        for _ in 0..4 {
            assert!(a.take("h", t0).is_ok());
        }
        assert!(a.take("h", t0).is_err());
    }
}
