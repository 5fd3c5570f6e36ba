//! Checks of recorded arrival times against a rate promise: every window of the arrivals
//! against a token bucket ([`check_rate`]), and the busiest fixed-length window
//! ([`max_in_window`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Outcome of [`check_rate`].
#[derive(Debug, Clone, Copy)]
pub struct RateCheck {
    /// Whether every window satisfied the promise.
    pub held: bool,
    /// Requests in the window with the largest excess over what was allowed.
    pub worst_count: usize,
    /// Time from the first to the last request of that window.
    pub worst_span: Duration,
    /// What the promise allowed in that window.
    pub allowed: f64,
}

/// Checks a token-bucket promise against arrival times: for every pair `i ≤ j` of the sorted
/// times, the `j − i + 1` requests in `[t_i, t_j]` must not exceed
/// `burst + rate·(t_j − t_i + tolerance)`. Reports the pair with the largest excess (count minus
/// allowed) and whether the promise held everywhere. O(n²), fine for a few thousand arrivals.
pub fn check_rate(
    times: &[Instant],
    rate_per_sec: f64,
    burst: u32,
    tolerance: Duration,
) -> RateCheck {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let allowed_for =
        |span: Duration| burst as f64 + rate_per_sec * (span + tolerance).as_secs_f64();

    let mut worst = RateCheck {
        held: true,
        worst_count: 0,
        worst_span: Duration::ZERO,
        allowed: allowed_for(Duration::ZERO),
    };
    let mut worst_excess = f64::NEG_INFINITY;
    for (i, &first) in sorted.iter().enumerate() {
        for (j, &last) in sorted.iter().enumerate().skip(i) {
            let count = j - i + 1;
            let span = last - first;
            let allowed = allowed_for(span);
            let excess = count as f64 - allowed;
            if excess > 1e-9 {
                worst.held = false;
            }
            if excess > worst_excess {
                worst_excess = excess;
                worst.worst_count = count;
                worst.worst_span = span;
                worst.allowed = allowed;
            }
        }
    }
    worst
}

/// The largest number of arrivals inside any half-open window `[t, t + window)`.
pub fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for (end, &t) in sorted.iter().enumerate() {
        // `start <= end` keeps a zero-length window (which holds nothing) in bounds.
        while start <= end && t - sorted[start] >= window {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

/// How late this machine runs a thread that is due: a thread wakes every millisecond and
/// keeps the worst lateness it saw. An idle machine shows well under a millisecond; a machine
/// whose cores are all busy shows the stalls that also shift a test server's arrival times.
pub struct StallMeter {
    stop: Arc<AtomicBool>,
    worst_ns: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl StallMeter {
    const TICK: Duration = Duration::from_millis(1);

    pub fn start() -> StallMeter {
        let stop = Arc::new(AtomicBool::new(false));
        let worst_ns = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, worst_ns) = (stop.clone(), worst_ns.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    std::thread::sleep(Self::TICK);
                    let late = asked.elapsed().saturating_sub(Self::TICK);
                    let late = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
                    worst_ns.fetch_max(late, Ordering::Relaxed);
                }
            }
        });
        StallMeter {
            stop,
            worst_ns,
            thread: Some(thread),
        }
    }

    /// The worst lateness seen so far.
    pub fn worst(&self) -> Duration {
        Duration::from_nanos(self.worst_ns.load(Ordering::Relaxed))
    }
}

impl Drop for StallMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
