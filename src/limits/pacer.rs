//! Pacer: the run's global rate (`--rate`, `--burst`), a governor GCRA limiter judged at the
//! instant each request is stamped.
//!
//! **Exact at the stamp.** A worker asks governor itself, with the clock reading it stamps
//! the request with (governor reads a clock of ours that returns that reading), and sends at
//! once. So the instants the request log records obey the GCRA exactly: at burst 1 no
//! request is closer than the period to the one before it, and a request that left late is
//! not caught up on (the next one is counted from when it left); at burst B lateness is
//! caught up only within the burst. Nothing is granted ahead of a send, so no token waits in
//! a hand-off while the clock runs.
//!
//! **Waiting.** Waiters queue FIFO behind an async mutex: only the head waits for the next
//! instant governor allows, so a wait costs one wake-up, not one per waiter.
//! - With a tolerance of 2 ms or more (`(B − 1) / R`), the head sleeps on tokio's timer. It
//!   may wake a millisecond late; the GCRA catches that up within the burst.
//! - With a smaller tolerance (burst 1 at any rate above 1/2 ms, small bursts at high rates),
//!   a late wake-up is lost for good, and tokio's 1 ms timer grid would cost ~10% of the rate
//!   at 200/s. There, a thread of its own with a fine timer slack wakes the head a little
//!   before the instant (a lead that follows how late this machine's wake-ups are), and the
//!   head spins the rest of the way on its worker, then asks governor.
//!
//! **`--plan`.** The same limiter, judged at the instants of a virtual clock (`simulated`,
//! `check_at`): no alarm, no waiting; a refusal names the instant the plan moves its clock to.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

/// Below this tolerance the head waits on the precise alarm; from it up, on tokio's timer.
const PRECISE_BELOW: Duration = Duration::from_millis(2);
/// How early the alarm wakes the head, learnt from how late wake-ups are, within bounds.
const MIN_LEAD: Duration = Duration::from_micros(20);
const MAX_LEAD: Duration = Duration::from_micros(300);
/// What is added to an observed lateness to get the lead.
const LEAD_HEADROOM: Duration = Duration::from_micros(20);

thread_local! {
    /// The reading `StampClock` returns on this thread, while a check is being made.
    static STAMP: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// governor's clock: the instant a worker stamps its request with.
#[derive(Clone, Copy, Debug, Default)]
struct StampClock;

impl Clock for StampClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        STAMP.with(Cell::get).unwrap_or_else(Instant::now)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, StampClock, NoOpMiddleware<Instant>>;

/// The global rate limit. Dropping it stops its alarm thread, if any.
pub struct Pacer {
    limiter: Limiter,
    /// The waiters, first come first served; the holder is the head.
    line: tokio::sync::Mutex<()>,
    alarm: Option<Arc<Alarm>>,
    /// The alarm's lead, in nanoseconds.
    lead: AtomicU64,
    /// The most the lead may be: a quarter of the period (and `MAX_LEAD`), so that the next
    /// head, which joins the line just after a stamp, always waits on the alarm (yielding
    /// the runtime thread to the request just stamped) before it spins.
    max_lead: Duration,
}

impl Pacer {
    pub fn new(quota: Quota) -> Pacer {
        let tolerance = quota
            .replenish_interval()
            .saturating_mul(quota.burst_size().get() - 1);
        let alarm = (tolerance < PRECISE_BELOW).then(Alarm::start);
        let max_lead = MAX_LEAD.min(quota.replenish_interval() / 4);
        Pacer {
            limiter: RateLimiter::new(quota, InMemoryState::default(), StampClock),
            line: tokio::sync::Mutex::new(()),
            alarm,
            lead: AtomicU64::new(nanos(Duration::from_micros(60).min(max_lead))),
            max_lead,
        }
    }

    /// A pacer judged only through `check_at`, at instants of a virtual clock that starts at
    /// `origin` (`--plan`): no alarm thread, and governor counts from `origin`, so that no
    /// instant of the plan lies before its start.
    pub(crate) fn simulated(quota: Quota, origin: Instant) -> Pacer {
        STAMP.with(|s| s.set(Some(origin)));
        let limiter = RateLimiter::new(quota, InMemoryState::default(), StampClock);
        STAMP.with(|s| s.set(None));
        Pacer {
            limiter,
            line: tokio::sync::Mutex::new(()),
            alarm: None,
            lead: AtomicU64::new(0),
            max_lead: Duration::ZERO,
        }
    }

    /// Whether a request stamped `at` conforms; if it does, it is counted. If not, the
    /// earliest instant it would.
    pub(crate) fn check_at(&self, at: Instant) -> Result<(), Instant> {
        STAMP.with(|s| s.set(Some(at)));
        let checked = self.limiter.check();
        STAMP.with(|s| s.set(None));
        checked.map_err(|not_until| not_until.earliest_possible())
    }

    /// Waits until a request may leave, counts it, and returns its stamp: the instant it
    /// was judged at, to be sent at once. Cancel-safe: a waiter that gives up has taken
    /// nothing.
    pub async fn take(&self) -> Instant {
        let _head = self.line.lock().await;
        loop {
            let now = Instant::now();
            match self.check_at(now) {
                Ok(()) => return now,
                Err(at) => self.wait_until(at).await,
            }
        }
    }

    async fn wait_until(&self, at: Instant) {
        let Some(alarm) = &self.alarm else {
            tokio::time::sleep_until(at.into()).await;
            return;
        };
        let lead = Duration::from_nanos(self.lead.load(Ordering::Relaxed));
        let wake = at.checked_sub(lead).unwrap_or(at);
        if Instant::now() < wake {
            alarm.wake_at(wake).await;
            let now = Instant::now();
            if now + self.max_lead < at {
                // Woken early by an alarm a cancelled waiter left behind: wait again.
                return;
            }
            // Up at once after a wake-up later than the lead, down slowly: a wake-up past
            // `at` is lost for good, a few microseconds of spin are cheap.
            let late = now.saturating_duration_since(wake) + LEAD_HEADROOM;
            let lead = if late > lead {
                late
            } else {
                (lead * 15 + late) / 16
            };
            self.lead.store(
                nanos(lead.clamp(MIN_LEAD.min(self.max_lead), self.max_lead)),
                Ordering::Relaxed,
            );
        } else {
            // Already within the lead: let what is queued on this thread run first (the
            // request stamped just before, on a one-thread runtime), then spin.
            tokio::task::yield_now().await;
        }
        while Instant::now() < at {
            std::hint::spin_loop();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A thread that wakes the pacer's head at an instant, within microseconds.
struct Alarm {
    at: Mutex<Option<Instant>>,
    changed: Condvar,
    ring: Notify,
    closed: AtomicBool,
}

impl Alarm {
    fn start() -> Arc<Alarm> {
        let alarm = Arc::new(Alarm {
            at: Mutex::new(None),
            changed: Condvar::new(),
            ring: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let a = alarm.clone();
        std::thread::Builder::new()
            .name("ratefetch-pacer".into())
            .spawn(move || a.serve())
            .expect("spawning the pacer thread");
        alarm
    }

    /// Returns at `at` or a little later (or earlier, if a waiter that gave up left a ring
    /// behind: the caller checks the time).
    async fn wake_at(&self, at: Instant) {
        let ring = self.ring.notified();
        *self.at.lock().expect("alarm lock") = Some(at);
        self.changed.notify_one();
        ring.await;
    }

    fn serve(&self) {
        fine_timer_slack();
        let mut at = self.at.lock().expect("alarm lock");
        loop {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            match *at {
                None => at = self.changed.wait(at).expect("alarm lock"),
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        *at = None;
                        self.ring.notify_one();
                    } else {
                        at = self
                            .changed
                            .wait_timeout(at, t - now)
                            .expect("alarm lock")
                            .0;
                    }
                }
            }
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        if let Some(alarm) = &self.alarm {
            alarm.closed.store(true, Ordering::Release);
            let _guard = alarm.at.lock();
            alarm.changed.notify_all();
        }
    }
}

/// Asks the kernel for timer wake-ups within a microsecond instead of the default 50 µs.
pub(crate) fn fine_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::gcra::{Gcra, Pace};
    use std::num::NonZeroU32;

    fn pacer(per_second: u32, burst: u32) -> Pacer {
        Pacer::new(
            Quota::with_period(Duration::from_secs(1) / per_second)
                .unwrap()
                .allow_burst(NonZeroU32::new(burst).unwrap()),
        )
    }

    /// The stamps a pacer hands out obey the GCRA exactly, whether the head waits on the
    /// alarm (burst 1) or on tokio's timer (a larger tolerance).
    async fn stamps_obey_the_gcra(per_second: u32, burst: u32) {
        let p = Arc::new(pacer(per_second, burst));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let mut stamps = Vec::new();
                for _ in 0..10 {
                    stamps.push(p.take().await);
                }
                stamps
            }));
        }
        let mut stamps = Vec::new();
        for t in tasks {
            stamps.extend(t.await.unwrap());
        }
        stamps.sort();
        let pace = Pace {
            period: Duration::from_secs(1) / per_second,
            burst,
        };
        let mut g = Gcra::new();
        for s in stamps {
            assert_eq!(g.admit(pace, s), Ok(()), "a stamp that broke the GCRA");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stamps_obey_the_gcra_at_burst_one() {
        stamps_obey_the_gcra(500, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stamps_obey_the_gcra_within_a_burst() {
        stamps_obey_the_gcra(2000, 10).await;
    }

    #[tokio::test]
    async fn a_cancelled_wait_takes_nothing() {
        let p = pacer(10, 1);
        let first = p.take().await; // the burst
                                    // Start waiting, then give up before the next turn (100 ms away).
        let waited = tokio::time::timeout(Duration::from_millis(10), p.take()).await;
        assert!(waited.is_err());
        // The cancelled wait counted nothing: a request one period after the first conforms.
        assert_eq!(p.check_at(first + Duration::from_millis(100)), Ok(()));
    }
}
