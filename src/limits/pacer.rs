//! Pacer: hands out the global limiter's tokens at the instants governor allows them.
//!
//! Why a thread: with burst 1, a token taken late is lost for good (the GCRA's next slot is
//! counted from when it was taken), so the achieved rate is 1 / (period + mean lateness). Tokio's
//! timer wakes tasks on a 1 ms grid, which at 200/s (a 5 ms period) costs ~10% of the rate and
//! caps the rate near 1,000/s. One dedicated thread, with a fine timer slack and a short spin
//! before each deadline, asks the shared governor limiter at the right instant and hands the
//! token to the longest-waiting worker through a semaphore. Workers still take their permits
//! first and the token last, and send at once.
//!
//! Accounting: `demand` counts workers waiting for a token that has not been granted yet; the
//! semaphore holds tokens granted and not yet taken. A token is only ever taken from governor
//! for a waiting worker, so tokens never pile up while nobody asks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

/// The spin before each deadline adapts to how late this machine's timed waits wake, within
/// these bounds: long enough to be on time, short enough to cost little CPU.
const MIN_SPIN: Duration = Duration::from_micros(5);
const MAX_SPIN: Duration = Duration::from_micros(100);
/// What is added to the observed lateness to get the spin.
const SPIN_HEADROOM: Duration = Duration::from_micros(10);

struct State {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    demand: Mutex<usize>,
    wake: Condvar,
    closed: AtomicBool,
}

/// The global rate limit, served from its own thread. Dropping it stops the thread.
pub struct Pacer {
    state: Arc<State>,
    tokens: Arc<Semaphore>,
}

impl Pacer {
    pub fn new(quota: Quota) -> Pacer {
        let clock = DefaultClock::default();
        let state = Arc::new(State {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            demand: Mutex::new(0),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let tokens = Arc::new(Semaphore::new(0));
        let (s, t) = (state.clone(), tokens.clone());
        std::thread::Builder::new()
            .name("ratefetch-pacer".into())
            .spawn(move || serve(&s, &t))
            .expect("spawning the pacer thread");
        Pacer { state, tokens }
    }

    /// Waits for a token. Cancel-safe: a worker that stops waiting gives its claim back.
    pub async fn take(&self) {
        {
            let mut demand = self.state.demand.lock().expect("pacer lock");
            *demand += 1;
        }
        self.state.wake.notify_one();
        let mut claim = Claim {
            pacer: self,
            done: false,
        };
        self.tokens
            .acquire()
            .await
            .expect("the token semaphore is never closed")
            .forget();
        claim.done = true;
    }
}

/// A worker's place in line; on cancellation it is given back.
struct Claim<'a> {
    pacer: &'a Pacer,
    done: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut demand = self.pacer.state.demand.lock().expect("pacer lock");
        if *demand > 0 {
            // Our token was not granted yet: one fewer to grant.
            *demand -= 1;
        } else if let Ok(permit) = self.pacer.tokens.try_acquire() {
            // It was granted and nobody took it: withdraw it, so that it cannot be used
            // later than it was granted.
            permit.forget();
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        let _guard = self.state.demand.lock();
        self.state.wake.notify_all();
    }
}

fn serve(state: &State, tokens: &Semaphore) {
    fine_timer_slack();
    // Sleep until `spin` before a deadline, then spin: thread wake-ups are not exact. The
    // spin follows a moving average of how late the timed waits wake.
    let mut spin = Duration::from_micros(50);
    loop {
        // Wait until someone wants a token.
        {
            let mut demand = state.demand.lock().expect("pacer lock");
            while *demand == 0 {
                if state.closed.load(Ordering::Acquire) {
                    return;
                }
                demand = state.wake.wait(demand).expect("pacer lock");
            }
        }
        // Wait until governor allows one, then take it.
        loop {
            if state.closed.load(Ordering::Acquire) {
                return;
            }
            match state.limiter.check() {
                Ok(()) => break,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(state.clock.now());
                    if wait > spin {
                        // A timed wait on the condvar, so that closing wakes it at once.
                        let demand = state.demand.lock().expect("pacer lock");
                        let deadline = Instant::now() + (wait - spin);
                        let (guard, waited) = state
                            .wake
                            .wait_timeout_while(demand, wait - spin, |_| {
                                !state.closed.load(Ordering::Acquire) && Instant::now() < deadline
                            })
                            .expect("pacer lock");
                        drop(guard);
                        if waited.timed_out() {
                            let late = Instant::now().saturating_duration_since(deadline);
                            spin =
                                ((spin * 7 + late + SPIN_HEADROOM) / 8).clamp(MIN_SPIN, MAX_SPIN);
                        }
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        let mut demand = state.demand.lock().expect("pacer lock");
        if *demand == 0 {
            // The worker stopped waiting meanwhile: the token goes unused (safe).
            continue;
        }
        *demand -= 1;
        tokens.add_permits(1);
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
    use std::num::NonZeroU32;

    fn pacer(per_second: u32, burst: u32) -> Pacer {
        Pacer::new(
            Quota::with_period(Duration::from_secs(1) / per_second)
                .unwrap()
                .allow_burst(NonZeroU32::new(burst).unwrap()),
        )
    }

    #[tokio::test]
    async fn grants_the_burst_then_paces() {
        let p = pacer(100, 3);
        let t0 = Instant::now();
        for _ in 0..5 {
            p.take().await;
        }
        // 3 at once, then 2 more at 10 ms intervals: at least 20 ms.
        assert!(
            t0.elapsed() >= Duration::from_millis(19),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn a_token_granted_to_a_waiter_that_left_is_withdrawn() {
        use std::future::Future;
        use std::task::Context;
        let p = pacer(1000, 1);
        let mut take = Box::pin(p.take());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // The first token is granted at once; wait (without polling again) until it is.
        assert!(take.as_mut().poll(&mut cx).is_pending() || p.tokens.available_permits() == 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.tokens.available_permits() == 0 && *p.state.demand.lock().unwrap() > 0 {
            assert!(
                Instant::now() < deadline,
                "the pacer never granted the token"
            );
            std::thread::yield_now();
        }
        // The waiter leaves with its token granted but not taken: it must not stay behind
        // for a later request to use.
        drop(take);
        assert_eq!(p.tokens.available_permits(), 0);
        assert_eq!(*p.state.demand.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_token_behind() {
        let p = pacer(10, 1);
        p.take().await; // the burst
                        // Start waiting, then give up before the next token (100 ms away).
        let waited = tokio::time::timeout(Duration::from_millis(10), p.take()).await;
        assert!(waited.is_err());
        // Whether the claim was withdrawn before or after its grant, no token is left over
        // and none is owed (the pacer grants only against demand).
        assert_eq!(p.tokens.available_permits(), 0);
        assert_eq!(*p.state.demand.lock().unwrap(), 0);
    }
}
