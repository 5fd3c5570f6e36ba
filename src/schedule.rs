//! Schedule: per-host queues between the input and the workers, so that a worker only ever
//! takes a job that may leave now. A job that must wait — for its host's pace
//! (`--per-host-rate`, a robots.txt Crawl-delay), its host's `--per-host-concurrency`, a
//! cool-down (`Retry-After`), a retry's backoff, a quota window (`--quota`,
//! `--per-host-quota`) — waits here, holding no worker.
//!
//! ```text
//!  feeder ──push──▶ host queues (in memory, capped per host; the rest spilled to disk)
//!                   ready ring (hosts that may send now, round robin)  ──next──▶ workers
//!                   free queue (hosts without limits)                  ──next──▶
//!                   timers (paces, cool-downs, backoffs; a thread of their own)
//! ```
//!
//! - **Who owns what.** One `State` behind a std mutex, held only for bookkeeping, never
//!   across an await. A `Ticket` is a worker's claim on one dispatch: the task, and its
//!   host's slot (one of its `--per-host-concurrency`, and the right to take the next token).
//!   Dropping a ticket gives back whatever it holds, so a cancelled or panicking worker
//!   leaks nothing.
//! - **The rate promise is unchanged.** A host gets no second dispatch until the first has
//!   taken its global token (`Ticket::go`), and the host's next turn is counted from there.
//!   The wait for the global token stays in the worker (see `limits`).
//! - **Quotas.** A dispatch is admitted by every window at once: the run's windows
//!   (`--quota`) hold a place for it while its worker waits for the global token (it is
//!   `pending`), its host's windows are not touched by anyone else meanwhile (no second
//!   dispatch per host). `Ticket::go` stamps it in all of them at the same instant, the
//!   instant it is sent; a ticket given back unsent frees its place. So no window is spent by
//!   a request that another limit refuses.
//! - **Timers.** A thread of their own with a fine timer slack and a short spin before each
//!   deadline, since tokio's 1 ms timer grid would lose a fraction of every period of a fast
//!   per-host pace. The thread only sleeps until a deadline and calls `Inner::fire`, which
//!   does what is due; each timer keeps its `Cause` (the limit it waits for).
//! - **One clock, real or virtual.** Every gate is judged at `Clock::now`: the machine's clock
//!   in a run, a `VirtualClock` in `--plan` (`Scheduler::simulated`). On a virtual clock no
//!   thread runs and nothing waits: the plan takes tickets with `try_next`, moves the clock
//!   to `next_deadline` and fires what is due with `fire_due`, so a plan runs these very gates
//!   and cannot drift from a run.
//! - **The pace is exact at the stamp.** A host's pace is the GCRA of `limits::gcra` (burst
//!   1), counted at the instant the request is stamped with (`Ticket::go`): no request to a
//!   host is closer than its period to the one before, and one that left late is not caught
//!   up on.
//! - **Lookahead.** The feeder reads up to `lookahead` jobs ahead of the workers. Beyond a
//!   host's `HOST_CAP` jobs (or the lookahead), jobs go to a temporary file and are read back
//!   when the host has room, as disk-backed crawl frontiers do, so a list sorted by host never
//!   stalls on its first host. Input is read further only while memory allows it and nothing
//!   spilled, or while a worker is idle (every host in view is blocked).
//! - **Forgetting.** A host's entry is dropped once nothing on it is in force (no queued or
//!   spilled job, nothing in flight, no cool-down, its pace in the past), so a crawl over
//!   millions of hosts does not grow the map. Without per-host limits, hosts get an entry only
//!   while they cool down.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, OnQuota};
use crate::error::Failure;
use crate::input::parse_target;
use crate::job::{Job, Task};
use crate::limits::gcra::{Gcra, Pace};
use crate::limits::ledger::{Ledger, Past};
use crate::limits::quota::{self, QuotaStop, Window};
use crate::units::{Quota, Rate};

/// Jobs of one host kept in memory; the rest of its jobs wait on disk.
pub const HOST_CAP: usize = 256;
/// Jobs read back from disk at a time, when a host's queue runs dry.
const READ_BACK: usize = 64;
/// The least lookahead (jobs read ahead of the workers) with per-host limits.
pub const MIN_LOOKAHEAD: usize = 4096;
/// Timer thread: the spin before a deadline adapts within these bounds.
const MIN_SPIN: Duration = Duration::from_micros(5);
const MAX_SPIN: Duration = Duration::from_micros(100);
/// A paced host is handed out this much before its turn, learnt within these bounds (see
/// `Inner::lead`); what is added to an observed delay to get it.
const MIN_LEAD: Duration = Duration::from_micros(20);
const MAX_LEAD: Duration = Duration::from_micros(300);
const LEAD_HEADROOM: Duration = Duration::from_micros(20);

/// The scheduler's clock: the machine's in a run; a virtual one in `--plan`, which stands
/// still until the plan moves it, so that the same gates and timers run on simulated time.
#[derive(Clone)]
enum Clock {
    Real,
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// The instant every gate of the scheduler is judged at.
    #[inline]
    fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Virtual(clock) => clock.now(),
        }
    }
}

/// A clock that moves only when told to (`--plan`): an origin, a real instant (so that
/// instants keep their type and past sends can lie before it), plus the time simulated since.
pub(crate) struct VirtualClock {
    origin: Instant,
    /// Nanoseconds since `origin` (584 years fit).
    elapsed: AtomicU64,
}

impl VirtualClock {
    /// A clock at its origin, which is now.
    pub(crate) fn new() -> VirtualClock {
        VirtualClock {
            origin: Instant::now(),
            elapsed: AtomicU64::new(0),
        }
    }

    /// The clock's reading.
    pub(crate) fn now(&self) -> Instant {
        self.origin + Duration::from_nanos(self.elapsed.load(Ordering::Relaxed))
    }

    /// Moves the clock on to `at` (never back).
    pub(crate) fn advance_to(&self, at: Instant) {
        let nanos =
            u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.elapsed.fetch_max(nanos, Ordering::Relaxed);
    }
}

/// Why a timer is set: what a host or the run waits for. `--plan` charges a wait to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A host's pace: `--per-host-rate`, or a Crawl-delay.
    Pace,
    /// One of a host's `--per-host-quota` windows (its place among them).
    HostQuota(usize),
    /// One of the run's `--quota` windows (its place among them).
    Quota(usize),
    /// Anything else: a cool-down, a pause, a backoff, a host's limits running out.
    Other,
}

/// The per-host queues and timers of one run. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    /// What `now` is: the machine's clock in a run, a virtual one in `--plan`.
    clock: Clock,
    state: Mutex<State>,
    /// Wakes workers waiting in `next`.
    work: Notify,
    /// Wakes the feeder waiting for room.
    room: Notify,
    /// Wakes the timer thread (an earlier deadline, or the end).
    timer: Condvar,
    /// `--per-host-rate` as a period.
    period: Option<Duration>,
    host_concurrency: Option<usize>,
    /// `--per-host-quota`s.
    host_quotas: Vec<Quota>,
    /// Whether the run has `--quota`s or a `--budget` (every dispatch then holds a place in
    /// them).
    quotas: bool,
    /// `--on-quota stop`: a spent `--quota` window ends the run instead of waiting.
    stop_at_quota: bool,
    /// `--budget`.
    budget: Option<u64>,
    /// Every host gets an entry (per-host limits, or robots.txt may slow any host).
    track: bool,
    lookahead: usize,
    /// Set once any host was told to cool down (until then a ticket without a host slot
    /// need not look).
    cooled: std::sync::atomic::AtomicBool,
    /// Full jitter on backoffs (tests turn it off to get deterministic waits).
    pub(crate) jitter: bool,
    /// Cancelled when the scheduler closes (a stop, or a limit that ends the run), so that
    /// a `slot` caller waiting on a timer gives up at once.
    closing: CancellationToken,
    /// `--quota-state`: every request takes a grant from it before it leaves.
    ledger: Option<Arc<Ledger>>,
    /// Sends of earlier runs per host (`--quota-state`), counted in a host's windows when its
    /// entry is made.
    past_hosts: HashMap<Box<str>, Vec<(Instant, u64)>>,
    /// How early (ns) a paced host is handed to a worker, which waits the rest itself: the
    /// hand-off's delay, learnt, so that a request leaves on its host's turn, not after it.
    lead: std::sync::atomic::AtomicU64,
    /// Set once any host got a Crawl-delay (until then, without `--per-host-rate`, no host
    /// has a pace to wait for).
    crawl_delays: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    hosts: HashMap<Box<str>, Host>,
    /// Hosts that may dispatch now, in turn.
    ready: VecDeque<Box<str>>,
    /// Tasks whose host has no entry (no per-host limit applies): they may go at once.
    free: VecDeque<Task>,
    /// Whether the next dispatch looks at `free` before `ready` (taking turns).
    free_first: bool,
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    /// Tasks held in memory (queues, free queue, timers).
    in_memory: usize,
    /// Tasks not finished: queued, spilled, waiting on a timer or in a worker's ticket.
    live: u64,
    /// Workers waiting in `next`.
    waiting: usize,
    feeder_waiting: bool,
    input_done: bool,
    /// No dispatch yet: a resumed input is still being checked against its report, and
    /// nothing may leave before the check has passed.
    gated: bool,
    closed: bool,
    /// When the timer thread will next wake.
    timer_at: Option<Instant>,
    spill: Option<Spill>,
    spilled: u64,
    /// A spilled job could not be read back: the run fails (its row is not written, so
    /// `--resume` does it).
    spill_error: Option<String>,
    /// Set when the scheduler is dropped: the timer thread ends.
    ended: bool,
    /// The run's `--quota` windows.
    quotas: Vec<Window>,
    /// Dispatches admitted by `quotas` and not sent (or given back) yet.
    pending: u64,
    /// The run's quotas refuse a dispatch now: nothing dispatches, and idle workers do not
    /// make the input read on.
    quota_blocked: bool,
    /// When the quota timer is armed for.
    quota_timer: Option<Instant>,
    /// Requests the `--budget` still allows (places held by pending dispatches taken off).
    budget_left: Option<u64>,
    /// Why the run stopped at a limit (`--on-quota stop`, `--budget`).
    stopped: Option<QuotaStop>,
    /// The `--quota-state` could not be written: the run stopped, sending nothing more.
    ledger_error: Option<String>,
    /// The shared limits (`--redis`) cannot be used any more: the run stopped.
    shared_error: Option<String>,
    /// No request could get an open file for long: the run stopped.
    files_error: Option<String>,
    /// Nothing of the run is dispatched before this (a `--quota` spent, as the shared limits
    /// in Redis say), and what it waits for.
    paused_until: Option<Instant>,
    paused_for: Option<String>,
    /// What the run waits for that the scheduler does not know of (Redis unreachable).
    notice: Option<String>,
    /// The latest reset a host announced and pauses for, and the host.
    reset_wait: Option<(Instant, Box<str>)>,
}

/// A host's queue and limits.
#[derive(Default)]
struct Host {
    queue: VecDeque<Task>,
    /// Jobs of this host on disk, as runs of consecutive records.
    spilled: VecDeque<Run>,
    spilled_jobs: u64,
    /// Dispatches not given back (each holds one of `--per-host-concurrency`).
    in_flight: usize,
    /// A dispatch has not taken its global token yet: no second one until it has.
    dispatching: bool,
    /// The pace (burst 1): the host's next request may not leave before its TAT.
    pace: Gcra<Instant>,
    cool_until: Option<Instant>,
    /// A robots.txt Crawl-delay: the least time between two requests.
    min_period: Duration,
    /// When its last request took its token.
    last_sent: Option<Instant>,
    /// `slot` callers waiting for this host (robots.txt): queued tasks yield to them.
    reserved: usize,
    in_ready: bool,
    /// The earliest timer armed for this host.
    timer: Option<Instant>,
    /// Its `--per-host-quota` windows, from its first request on.
    windows: Vec<Window>,
}

impl Host {
    fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.spilled_jobs > 0
    }

    /// When everything that limits this host in time is over (its pace, a cool-down, every
    /// send left its quota windows), and the one that lasts longest; `None` if nothing ever
    /// was.
    fn clear_at(&self) -> Option<(Instant, Cause)> {
        let windows = self.windows.iter().enumerate();
        [
            self.pace.tat().map(|t| (t, Cause::Pace)),
            self.cool_until.map(|t| (t, Cause::Other)),
        ]
        .into_iter()
        .flatten()
        .chain(windows.filter_map(|(q, w)| Some((w.clear_at()?, Cause::HostQuota(q)))))
        .max_by_key(|&(t, _)| t)
    }
}

struct Timer {
    at: Instant,
    seq: u64,
    what: Due,
    /// What the wait it ends was for.
    cause: Cause,
}

enum Due {
    /// Look at this host again.
    Host(Box<str>),
    /// A task whose backoff ends: back to the front of its host's queue.
    Task(Box<Task>),
    /// The run's quota windows may admit a dispatch again.
    Quota,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Timer) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Timer) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Timer) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Why a host may not dispatch now.
enum Gate {
    Open,
    /// Until this instant (its pace, a cool-down, a quota window), and which of them.
    Until(Instant, Cause),
    /// Until something it has in flight comes back (or takes its token).
    Busy,
}

impl Gate {
    /// When a caller that polls should look again.
    fn until(&self, now: Instant) -> Instant {
        match self {
            Gate::Open => now,
            Gate::Until(t, _) => *t,
            // Something is under way: look again shortly.
            Gate::Busy => now + Duration::from_millis(2),
        }
    }
}

impl Scheduler {
    /// A scheduler for `config`'s per-host limits, reading ahead `lookahead` jobs.
    #[cfg(test)]
    pub fn new(config: &Config) -> Scheduler {
        Scheduler::with_ledger(config, None, &Past::default())
    }

    /// `new`, with the run's `--quota-state`: `past` (what earlier runs sent) is counted in
    /// the windows, and every request takes a grant from `ledger` before it leaves.
    pub fn with_ledger(config: &Config, ledger: Option<Arc<Ledger>>, past: &Past) -> Scheduler {
        let scheduler = Scheduler::on_clock(config, ledger, past, Clock::Real);
        let timers = scheduler.inner.clone();
        std::thread::Builder::new()
            .name("ratefetch-timers".into())
            .spawn(move || timers.run_timers())
            .expect("spawning the timer thread");
        scheduler
    }

    /// A scheduler for `--plan`: the same queues, gates and timers on `clock`, with the
    /// sends of `past` in its windows. No thread: its timers fire when `fire_due` is called,
    /// and a host is due at its turn exactly (no lead). It keeps the jobs it is given in
    /// memory (the plan feeds it a job per host at a time), and waits at a spent quota
    /// whatever `--on-quota` says.
    pub(crate) fn simulated(config: &Config, past: &Past, clock: Arc<VirtualClock>) -> Scheduler {
        Scheduler::on_clock(config, None, past, Clock::Virtual(clock))
    }

    fn on_clock(
        config: &Config,
        ledger: Option<Arc<Ledger>>,
        past: &Past,
        clock: Clock,
    ) -> Scheduler {
        let now = clock.now();
        let simulated = matches!(clock, Clock::Virtual(_));
        let wall = std::time::SystemTime::now();
        // A wall-clock time as an instant (a time ahead of the clock is now: the ledger's
        // clock may be ahead of this machine's, and counts later, the safe side).
        let instant = |t: std::time::SystemTime| {
            let age = wall.duration_since(t).unwrap_or_default();
            now.checked_sub(age).unwrap_or(now)
        };
        let mut quotas: Vec<Window> = config.quotas.iter().copied().map(Window::new).collect();
        for &(t, count) in &past.run {
            for w in &mut quotas {
                w.record_many(instant(t), count);
            }
        }
        let past_hosts = if config.per_host_quotas.is_empty() {
            HashMap::new()
        } else {
            past.hosts
                .iter()
                .map(|(h, sends)| {
                    let sends = sends.iter().map(|&(t, n)| (instant(t), n)).collect();
                    (h.as_str().into(), sends)
                })
                .collect()
        };
        let period = match config.per_host_rate {
            Rate::Unlimited => None,
            Rate::Every(p) => Some(p),
        };
        let track = period.is_some()
            || config.per_host_concurrency.is_some()
            || !config.per_host_quotas.is_empty()
            || config.respect_robots;
        // With per-host limits, jobs of blocked hosts fill memory while others go: read far
        // ahead. Without, every job may leave at once: a few per worker keep them busy (and
        // a host told to cool down still makes the input read on while workers are idle).
        let lookahead = if simulated {
            usize::MAX
        } else if track {
            config.workers.saturating_mul(4).max(MIN_LOOKAHEAD)
        } else {
            config.workers.saturating_mul(4).clamp(64, MIN_LOOKAHEAD)
        };
        let inner = Arc::new(Inner {
            clock,
            state: Mutex::new(State {
                free_first: true,
                quotas,
                budget_left: config.budget,
                ..State::default()
            }),
            work: Notify::new(),
            room: Notify::new(),
            timer: Condvar::new(),
            period,
            host_concurrency: config.per_host_concurrency,
            host_quotas: config.per_host_quotas.clone(),
            quotas: !config.quotas.is_empty() || config.budget.is_some(),
            stop_at_quota: config.on_quota == OnQuota::Stop && !simulated,
            budget: config.budget,
            track,
            lookahead,
            cooled: std::sync::atomic::AtomicBool::new(false),
            jitter: config.backoff_jitter,
            closing: CancellationToken::new(),
            ledger,
            past_hosts,
            lead: AtomicU64::new(if simulated { 0 } else { 100_000 }),
            crawl_delays: std::sync::atomic::AtomicBool::new(false),
        });
        Scheduler { inner }
    }

    /// Whether backoffs draw full jitter.
    pub fn jitter(&self) -> bool {
        self.inner.jitter
    }

    /// Adds jobs read from the input.
    pub fn push(&self, jobs: Vec<Job>) {
        let inner = &*self.inner;
        let mut s = inner.lock();
        let mut woken = 0;
        for job in jobs {
            s.live += 1;
            let task = Task::new(job);
            woken += inner.enqueue(&mut s, task, false);
        }
        inner.wake_workers(&s, woken);
    }

    /// The input is read to its end.
    pub fn input_finished(&self) {
        let mut s = self.inner.lock();
        s.input_done = true;
        if s.live == 0 {
            self.inner.work.notify_waiters();
        }
        drop(s);
    }

    /// Holds every dispatch until `open` (a resume checks its input first). Jobs keep coming
    /// in meanwhile, to disk beyond the lookahead.
    pub fn hold(&self) {
        self.inner.lock().gated = true;
    }

    /// Lets held dispatches go.
    pub fn open(&self) {
        let mut s = self.inner.lock();
        if !s.gated {
            return;
        }
        s.gated = false;
        drop(s);
        self.inner.work.notify_waiters();
    }

    /// Whether dispatches are held.
    pub fn is_held(&self) -> bool {
        self.inner.lock().gated
    }

    /// Stops dispatching: waiting workers return `None`, queued tasks are dropped.
    pub fn close(&self) {
        let mut s = self.inner.lock();
        self.inner.end(&mut s);
    }

    /// What the run waits for, when its `--quota`s hold every dispatch back: "waiting for
    /// --quota 5000/1h: next slot at …" (for the progress line); or a notice (`notify`).
    pub fn waiting(&self) -> Option<String> {
        let inner = &*self.inner;
        let mut s = inner.lock();
        if s.closed {
            return None;
        }
        if let Some(notice) = &s.notice {
            return Some(notice.clone());
        }
        let now = inner.clock.now();
        if let (Some(until), Some(what)) = (s.paused_until, &s.paused_for) {
            if until > now {
                return Some(format!(
                    "waiting for {what}: next slot at {}",
                    quota::slot_time(wall_clock(until))
                ));
            }
        }
        if let Some((until, host)) = &s.reset_wait {
            // Said only while no other host can send meanwhile.
            if *until > now && s.ready.is_empty() && s.free.is_empty() {
                return Some(format!(
                    "waiting for the limit {host} announced: resets at {}",
                    quota::slot_time(wall_clock(*until))
                ));
            }
        }
        if !s.quota_blocked {
            return None;
        }
        let pending = s.pending;
        match quota::free_at(&mut s.quotas, now, pending) {
            Some((at, Some(q))) if at > now => Some(format!(
                "waiting for --quota {}: next slot at {}",
                s.quotas[q].quota(),
                quota::slot_time(wall_clock(at))
            )),
            _ => None,
        }
    }

    /// Sets (or with `None` clears) what the progress line says the run waits for, when it
    /// is something the scheduler does not see (Redis unreachable).
    pub fn notify(&self, notice: Option<String>) {
        let mut s = self.inner.lock();
        if s.notice != notice {
            s.notice = notice;
        }
    }

    /// Dispatches nothing for `wait` from now (a `--quota` spent, as the shared limits say;
    /// `what` names it for the progress line). Only ever extends a pause.
    pub fn pause(&self, wait: Duration, what: String) {
        let inner = &*self.inner;
        let mut s = inner.lock();
        let until = inner.clock.now() + wait;
        if s.paused_until.is_some_and(|p| p >= until) {
            return;
        }
        s.paused_until = Some(until);
        s.paused_for = Some(what);
        inner.arm(&mut s, until, Due::Quota, Cause::Other);
    }

    /// The least time between two requests to `host`: its `--per-host-rate` period or its
    /// Crawl-delay, whichever is longer (zero for none).
    pub fn host_period(&self, host: &str) -> Duration {
        let inner = &*self.inner;
        let period = inner.period.unwrap_or_default();
        let s = inner.lock();
        s.hosts
            .get(host)
            .map_or(period, |h| period.max(h.min_period))
    }

    /// Stops the run because the shared limits cannot be used any more (`why`, one line):
    /// nothing more is sent, and the run fails.
    pub fn fail_shared(&self, why: String) {
        let inner = &*self.inner;
        let mut s = inner.lock();
        s.shared_error.get_or_insert(why);
        if !s.closed {
            inner.end(&mut s);
        }
    }

    /// Why the run must fail, if the shared limits could not be used.
    pub fn shared_error(&self) -> Option<String> {
        self.inner.lock().shared_error.clone()
    }

    /// Stops the run because requests have found no open file for long, with nothing in
    /// flight that would free one (`why`, one line): nothing more is sent, and the run fails.
    pub fn fail_files(&self, why: String) {
        let inner = &*self.inner;
        let mut s = inner.lock();
        s.files_error.get_or_insert(why);
        if !s.closed {
            inner.end(&mut s);
        }
    }

    /// Why the run must fail, if it ran out of open files for good.
    pub fn files_error(&self) -> Option<String> {
        self.inner.lock().files_error.clone()
    }

    /// Stops the run at a limit (a server's announced limit under `--on-quota stop`):
    /// requests in flight finish, nothing more is sent; exit 75.
    pub fn stop_at_limit(&self, limit: String, frees_at: Option<std::time::SystemTime>) {
        let mut s = self.inner.lock();
        self.inner.stop_now(&mut s, limit, frees_at);
    }

    /// Why the run stopped at a limit, if it did (`--on-quota stop`, `--budget`).
    pub fn stopped_at(&self) -> Option<QuotaStop> {
        self.inner.lock().stopped.clone()
    }

    /// Why the run must fail, if the `--quota-state` could not be written.
    pub fn ledger_error(&self) -> Option<String> {
        self.inner.lock().ledger_error.clone()
    }

    /// Why the run must fail, if a job spilled to disk could not be read back.
    pub fn spill_error(&self) -> Option<String> {
        self.inner.lock().spill_error.clone()
    }

    /// Hosts with an entry.
    #[cfg(test)]
    pub fn tracked_hosts(&self) -> usize {
        self.inner.lock().hosts.len()
    }

    /// Jobs waiting on disk.
    #[cfg(test)]
    pub fn spilled(&self) -> u64 {
        self.inner.lock().spilled
    }

    /// Waits until the feeder may read more input: memory allows it and nothing is spilled,
    /// or a worker is idle. Returns false once the run is closed.
    pub async fn room(&self) -> bool {
        loop {
            let notified = self.inner.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.inner.lock();
                if s.closed {
                    return false;
                }
                if self.inner.may_read(&s) {
                    s.feeder_waiting = false;
                    return true;
                }
                s.feeder_waiting = true;
            }
            notified.await;
        }
    }

    /// The next task that may leave now, with its host's slot. `None` when the run is
    /// stopped, or the input is done and every task finished.
    pub async fn next(&self, stop: &CancellationToken) -> Option<Ticket> {
        let inner = &*self.inner;
        // The common case first: a task is ready, no need to register for a wake-up.
        {
            let mut s = inner.lock();
            if s.closed || stop.is_cancelled() {
                return None;
            }
            if let Some((host, task)) = inner.dispatch(&mut s) {
                return Some(Ticket::dispatched(&self.inner, host, Some(task)));
            }
        }
        loop {
            let notified = inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = inner.lock();
                if s.closed || stop.is_cancelled() {
                    return None;
                }
                if let Some((host, task)) = inner.dispatch(&mut s) {
                    return Some(Ticket::dispatched(&self.inner, host, Some(task)));
                }
                if s.input_done && s.live == 0 {
                    return None;
                }
                s.waiting += 1;
                inner.wake_feeder(&mut s);
            }
            // Counted as waiting until this wait ends, however it ends (a dropped future too).
            let _waiting = Waiting(inner);
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = &mut notified => {}
            }
        }
    }

    /// A slot on `host` for a request that belongs to no task (robots.txt), waiting in the
    /// caller until the host may send. `None` if `stop` came first.
    ///
    /// While it waits, the host's queued tasks yield to it (they would otherwise take every
    /// turn the timer thread gives the host).
    pub async fn slot(&self, host: &str, stop: &CancellationToken) -> Option<Ticket> {
        let inner = &*self.inner;
        let mut reservation = Reservation {
            inner: self.inner.clone(),
            host: host.into(),
            held: false,
        };
        loop {
            let wait = {
                let mut s = inner.lock();
                if s.closed {
                    return None;
                }
                let now = inner.clock.now();
                let quotas = match s.budget_left {
                    // Spent: by places still pending (which may come back), or for good.
                    Some(0) if s.pending > 0 => Gate::Busy,
                    Some(0) => {
                        let budget = inner.budget.expect("a budget is set");
                        inner.stop_now(&mut s, format!("--budget {budget}"), None);
                        return None;
                    }
                    _ => match s.paused_until {
                        Some(until) if until > now => Gate::Until(until, Cause::Other),
                        _ => inner.quota_gate(&mut s, now),
                    },
                };
                if !inner.track && !s.hosts.contains_key(host) {
                    match quotas {
                        Gate::Open => {
                            inner.reserve(&mut s);
                            return Some(Ticket::dispatched(&self.inner, None, None));
                        }
                        gate => gate.until(now),
                    }
                } else {
                    let h = inner.host_entry(&mut s.hosts, host);
                    match (inner.gate_for(h, now, true), quotas) {
                        (Gate::Open, Gate::Open) => {
                            h.dispatching = true;
                            h.in_flight += 1;
                            if reservation.held {
                                h.reserved -= 1;
                                reservation.held = false;
                            }
                            inner.reserve(&mut s);
                            return Some(Ticket::dispatched(&self.inner, Some(host.into()), None));
                        }
                        (gate, quotas) => {
                            if !reservation.held {
                                h.reserved += 1;
                                reservation.held = true;
                            }
                            gate.until(now).max(quotas.until(now))
                        }
                    }
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = inner.closing.cancelled() => return None,
                _ = tokio::time::sleep_until(wait) => {}
            }
        }
    }

    /// No request to `host` leaves for `wait` from now (a server's Retry-After). Only ever
    /// extends a cool-down.
    pub fn cool_down(&self, host: &str, wait: Duration) {
        let inner = &*self.inner;
        inner
            .cooled
            .store(true, std::sync::atomic::Ordering::Release);
        let mut s = inner.lock();
        let until = inner.clock.now() + wait;
        let h = inner.host_entry(&mut s.hosts, host);
        h.cool_until = Some(h.cool_until.map_or(until, |c| c.max(until)));
        if inner.refresh(&mut s, host) {
            inner.wake_workers(&s, 1);
        }
    }

    /// `host` cools down for `wait`, until the reset it announced: the progress line names it.
    pub fn note_reset(&self, host: &str, wait: Duration) {
        let until = self.inner.clock.now() + wait;
        let mut s = self.inner.lock();
        if s.reset_wait.as_ref().is_none_or(|(t, _)| *t <= until) {
            s.reset_wait = Some((until, host.into()));
        }
    }

    /// Requests to `host` leave at least `period` apart from now on (a robots.txt
    /// Crawl-delay); only ever lengthens the host's period.
    pub fn slow_host(&self, host: &str, period: Duration) {
        let inner = &*self.inner;
        let mut s = inner.lock();
        let h = inner.host_entry(&mut s.hosts, host);
        if period > h.min_period {
            h.min_period = period;
            inner
                .crawl_delays
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // Counted from the host's last request (robots.txt itself, at first); from now
            // if the host was forgotten meanwhile (its last request is not known).
            let last = h.last_sent.unwrap_or_else(|| inner.clock.now());
            h.pace.hold_until(last + period);
        }
    }

    /// Puts a task back at the front of its host's queue (a redirect, a cool-down that
    /// began, robots.txt fetched first); its ticket is given back.
    pub fn requeue(&self, mut ticket: Ticket) {
        let task = ticket.task.take().expect("a ticket with a task");
        let inner = &*self.inner;
        let mut s = inner.lock();
        ticket.release(inner, &mut s);
        let woken = inner.enqueue(&mut s, task, true);
        inner.wake_workers(&s, woken);
    }

    /// Puts a task aside until `at` (a retry's backoff), then at the front of its host's
    /// queue; its ticket is given back.
    pub fn delay(&self, mut ticket: Ticket, at: Instant) {
        let task = ticket.task.take().expect("a ticket with a task");
        let inner = &*self.inner;
        let mut s = inner.lock();
        ticket.release(inner, &mut s);
        s.in_memory += 1;
        inner.arm(&mut s, at, Due::Task(Box::new(task)), Cause::Other);
    }
}

/// Driving a scheduler on a virtual clock (`--plan`), from one thread, without waiting.
impl Scheduler {
    /// The next task that may leave now, with its host's slot, as `next` gives it; `None`
    /// when none may (or the run stopped).
    pub(crate) fn try_next(&self) -> Option<Ticket> {
        let inner = &*self.inner;
        let mut s = inner.lock();
        if s.closed {
            return None;
        }
        let (host, task) = inner.dispatch(&mut s)?;
        Some(Ticket::dispatched(&self.inner, host, Some(task)))
    }

    /// Fires every timer due at the clock's reading (see `Inner::fire`). Returns the cause
    /// of the last one that let a task leave (or might have: the run's quotas may still hold
    /// it back).
    pub(crate) fn fire_due(&self) -> Option<Cause> {
        let inner = &*self.inner;
        let mut s = inner.lock();
        let now = inner.clock.now();
        inner.fire(&mut s, now).1
    }

    /// When the next timer is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.inner.lock().timers.peek().map(|t| t.0.at)
    }

    /// Whether the run as a whole holds every task back (its quotas, its budget, a pause, a
    /// stop): then no other host would send sooner.
    pub(crate) fn held_back(&self) -> bool {
        let s = self.inner.lock();
        s.closed || s.gated || s.quota_blocked || s.paused_until.is_some()
    }
}

/// Ends the timer thread when the last scheduler handle of a run is dropped.
pub struct TimerGuard(Scheduler);

impl Scheduler {
    /// A guard that ends the timer thread when dropped (the pool holds it for the run).
    pub fn guard(&self) -> TimerGuard {
        TimerGuard(self.clone())
    }
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        let mut s = self.0.inner.lock();
        s.ended = true;
        drop(s);
        self.0.inner.timer.notify_all();
    }
}

impl Inner {
    /// How early a paced host is handed out.
    fn lead(&self) -> Duration {
        Duration::from_nanos(self.lead.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Learns the lead from a ticket taken `delay` after its host was handed out (up at
    /// once after a delay longer than the lead, down slowly).
    fn learn_lead(&self, delay: Duration) {
        let lead = self.lead();
        let want = delay + LEAD_HEADROOM;
        let lead = if want > lead {
            want
        } else {
            (lead * 15 + want) / 16
        };
        let most = self.period.map_or(MAX_LEAD, |p| MAX_LEAD.min(p / 4));
        let nanos =
            u64::try_from(lead.clamp(MIN_LEAD.min(most), most).as_nanos()).unwrap_or(u64::MAX);
        self.lead.store(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no panic while holding the schedule")
    }

    fn may_read(&self, s: &State) -> bool {
        !s.input_done
            && (s.gated
                || (s.waiting > 0 && !s.quota_blocked && s.paused_until.is_none())
                || (s.in_memory < self.lookahead && s.spilled == 0))
    }

    /// Whether the run's quotas admit one more dispatch at `now`.
    fn quota_gate(&self, s: &mut State, now: Instant) -> Gate {
        if !self.quotas {
            return Gate::Open;
        }
        match quota::free_at(&mut s.quotas, now, s.pending) {
            Some((t, _)) if t <= now => Gate::Open,
            Some((t, q)) => Gate::Until(t, q.map_or(Cause::Other, Cause::Quota)),
            // Pending dispatches fill a window: their sends (`go`) tell when it frees.
            None => Gate::Busy,
        }
    }

    /// `quota_gate` and the budget, remembering a refusal: then nothing dispatches and a
    /// timer (or the next send) looks again; or, under `--on-quota stop` or a spent
    /// `--budget`, the run stops if a task is ready to go.
    fn quotas_open(&self, s: &mut State, now: Instant) -> bool {
        if s.budget_left == Some(0) {
            s.quota_blocked = true;
            // Places still pending may be given back (a request not sent): only a budget
            // spent on sends ends the run.
            if s.pending == 0 {
                let budget = self.budget.expect("a budget is set");
                self.stop_at(s, format!("--budget {budget}"), None);
            }
            return false;
        }
        let gate = self.quota_gate(s, now);
        s.quota_blocked = !matches!(gate, Gate::Open);
        if let Gate::Until(t, cause) = gate {
            if self.stop_at_quota {
                let limit = match cause {
                    Cause::Quota(q) => format!("--quota {}", s.quotas[q].quota()),
                    _ => "--quota".to_string(),
                };
                self.stop_at(s, limit, Some(wall_clock(t)));
            }
            if s.quota_timer.is_none_or(|armed| armed > t || armed <= now) {
                s.quota_timer = Some(t);
                self.arm(s, t, Due::Quota, cause);
            }
        }
        !s.quota_blocked
    }

    /// Stops the run at a limit, if a task is ready to go now (else the run may still end
    /// within its limits, or a task that becomes ready asks again).
    fn stop_at(&self, s: &mut State, limit: String, frees_at: Option<std::time::SystemTime>) {
        if s.free.is_empty() && s.ready.is_empty() {
            return;
        }
        self.stop_now(s, limit, frees_at);
    }

    /// Stops the run at a limit: nothing more is dispatched, waiting workers and slots end.
    fn stop_now(&self, s: &mut State, limit: String, frees_at: Option<std::time::SystemTime>) {
        if s.closed {
            return;
        }
        s.stopped = Some(QuotaStop { limit, frees_at });
        self.end(s);
    }

    /// Ends the run: nothing more is dispatched, waiting workers and slots end.
    fn end(&self, s: &mut State) {
        s.closed = true;
        s.feeder_waiting = false;
        self.closing.cancel();
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    /// Takes a place in the run's quotas and budget for a dispatch (given back by its
    /// ticket if it is not sent).
    fn reserve(&self, s: &mut State) {
        if self.quotas {
            s.pending += 1;
            if let Some(left) = &mut s.budget_left {
                *left -= 1;
            }
        }
    }

    /// After a dispatch was sent or given back: if the quotas refused before, they may
    /// admit now (or tell when).
    fn quotas_changed(&self, s: &mut State) {
        if s.quota_blocked && self.quotas_open(s, self.clock.now()) {
            self.wake_workers(s, s.waiting);
        }
    }

    fn wake_feeder(&self, s: &mut State) {
        if s.feeder_waiting && self.may_read(s) {
            s.feeder_waiting = false;
            self.room.notify_one();
        }
    }

    fn wake_workers(&self, s: &State, ready: usize) {
        for _ in 0..ready.min(s.waiting.max(1)) {
            self.work.notify_one();
        }
    }

    /// Queues a task (at the front for one already under way). Returns how many dispatches
    /// became possible (0 or 1).
    fn enqueue(&self, s: &mut State, task: Task, front: bool) -> usize {
        let Some(host) = task.host() else {
            s.in_memory += 1;
            push(&mut s.free, task, front);
            return 1;
        };
        let over = s.in_memory >= self.lookahead;
        // A held resume reads on past the lookahead: then even a host without limits queues
        // where it can spill. (Otherwise a job without limits may leave at once; the input
        // is read past the lookahead only for idle workers.)
        let spillable = self.track || (over && s.gated) || s.hosts.contains_key(host);
        if !spillable {
            s.in_memory += 1;
            push(&mut s.free, task, front);
            return 1;
        }
        let key: Box<str> = host.into();
        let h = self.host_entry(&mut s.hosts, &key);
        let spill =
            !front && task.is_fresh() && (h.queue.len() >= HOST_CAP || h.spilled_jobs > 0 || over);
        let mut kept = Some(task);
        if spill {
            let task = kept.take().expect("the task");
            match write_spill(&mut s.spill, h, &task.job) {
                Ok(()) => s.spilled += 1,
                // The disk refused: keep it in memory.
                Err(_) => kept = Some(task),
            }
        }
        if let Some(task) = kept {
            let h = s.hosts.get_mut(&key).expect("just inserted");
            push(&mut h.queue, task, front);
            s.in_memory += 1;
        }
        usize::from(self.refresh(s, &key))
    }

    /// The entry of `host`, made if there is none; its quota windows count what earlier
    /// runs sent to it.
    fn host_entry<'a>(&self, hosts: &'a mut HashMap<Box<str>, Host>, host: &str) -> &'a mut Host {
        let h = hosts.entry(host.into()).or_default();
        if h.windows.is_empty() && !self.host_quotas.is_empty() {
            h.windows = self.host_quotas.iter().copied().map(Window::new).collect();
            for &(at, count) in self.past_hosts.get(host).into_iter().flatten() {
                for w in &mut h.windows {
                    w.record_many(at, count);
                }
            }
        }
        h
    }

    /// Whether `h` may dispatch at `now`, and if not, until when.
    fn gate(&self, h: &mut Host, now: Instant) -> Gate {
        self.gate_for(h, now, false)
    }

    /// `gate`, for a `slot` (which does not yield to itself) or a queued task (which yields
    /// to a waiting slot).
    fn gate_for(&self, h: &mut Host, now: Instant, slot: bool) -> Gate {
        if h.dispatching
            || (!slot && h.reserved > 0)
            || self.host_concurrency.is_some_and(|c| h.in_flight >= c)
        {
            return Gate::Busy;
        }
        // Nothing of the host is pending (it is not dispatching). Its pace opens a lead
        // early (at most a quarter of its period): the worker waits out the rest
        // (`Ticket::wait_due`).
        let lead = self
            .lead()
            .min(self.period.unwrap_or_default().max(h.min_period) / 4);
        let mut until = h
            .pace
            .tat()
            .map(|t| (t.checked_sub(lead).unwrap_or(t), Cause::Pace));
        let later = |until: Option<(Instant, Cause)>, t: Instant| until.is_none_or(|(u, _)| t > u);
        if let Some(t) = h.cool_until.filter(|&t| later(until, t)) {
            until = Some((t, Cause::Other));
        }
        if let Some((t, Some(q))) = quota::free_at(&mut h.windows, now, 0) {
            if later(until, t) {
                until = Some((t, Cause::HostQuota(q)));
            }
        }
        match until {
            Some((t, cause)) if t > now => Gate::Until(t, cause),
            _ => Gate::Open,
        }
    }

    /// Looks at `host` again after a change: into the ready ring if it may dispatch now, a
    /// timer if it must wait, forgotten if nothing on it is in force. Returns whether it
    /// joined the ring.
    fn refresh(&self, s: &mut State, host: &str) -> bool {
        self.refresh_at(s, host, self.clock.now())
    }

    /// `refresh` as of `now` (a caller that just judged the host's gate passes the instant it
    /// judged at, so that both decisions agree).
    fn refresh_at(&self, s: &mut State, host: &str, now: Instant) -> bool {
        let Some(h) = s.hosts.get_mut(host) else {
            return false;
        };
        if h.in_ready {
            return false;
        }
        if !h.has_work() {
            let unused = h.in_flight == 0 && !h.dispatching && h.reserved == 0;
            let clear_at = h.clear_at();
            if unused && clear_at.is_none_or(|(t, _)| t <= now) {
                s.hosts.remove(host);
            } else if unused {
                // Kept only for its limits: without its queue's buffer (a few tasks' worth),
                // so that many hosts waiting out their paces take little memory.
                h.queue = VecDeque::new();
                // Forget it once its pace, cool-down and quota windows are over (a task
                // queued meanwhile may go then: the timer names what it waited for).
                let (until, cause) = clear_at.expect("not idle: a time is set");
                if h.timer.is_none_or(|armed| armed > until) {
                    h.timer = Some(until);
                    self.arm(s, until, Due::Host(host.into()), cause);
                }
            }
            return false;
        }
        match self.gate(h, now) {
            Gate::Busy => false,
            Gate::Until(t, cause) => {
                if h.timer.is_none_or(|armed| armed > t) {
                    h.timer = Some(t);
                    self.arm(s, t, Due::Host(host.into()), cause);
                }
                false
            }
            Gate::Open => {
                h.in_ready = true;
                s.ready.push_back(host.into());
                true
            }
        }
    }

    fn arm(&self, s: &mut State, at: Instant, what: Due, cause: Cause) {
        s.seq += 1;
        let seq = s.seq;
        s.timers.push(Reverse(Timer {
            at,
            seq,
            what,
            cause,
        }));
        if s.timer_at.is_none_or(|t| t > at) {
            s.timer_at = Some(at);
            self.timer.notify_one();
        }
    }

    /// Takes the next task that may leave now, marking its host's slot taken.
    /// With `--quota`, the dispatch holds a place in the run's windows (`reserve`).
    fn dispatch(&self, s: &mut State) -> Option<(Option<Box<str>>, Task)> {
        if s.gated || (self.quotas && !self.quotas_open(s, self.clock.now())) {
            return None;
        }
        if let Some(until) = s.paused_until {
            if until > self.clock.now() {
                return None;
            }
            s.paused_until = None;
        }
        for _ in 0..2 {
            s.free_first = !s.free_first;
            let found = if !s.free_first {
                self.dispatch_free(s)
            } else {
                self.dispatch_ready(s)
            };
            if found.is_some() {
                self.reserve(s);
                return found;
            }
        }
        None
    }

    fn dispatch_free(&self, s: &mut State) -> Option<(Option<Box<str>>, Task)> {
        while let Some(task) = s.free.pop_front() {
            // A host that began to cool down has an entry now: its tasks wait in its queue.
            if let Some(host) = task.host() {
                if !s.hosts.is_empty() && s.hosts.contains_key(host) {
                    let host: Box<str> = host.into();
                    let h = s.hosts.get_mut(&host).expect("checked");
                    h.queue.push_back(task);
                    if self.refresh(s, &host) {
                        self.wake_workers(s, 1);
                    }
                    continue;
                }
            }
            s.in_memory -= 1;
            self.wake_feeder(s);
            return Some((None, task));
        }
        None
    }

    fn dispatch_ready(&self, s: &mut State) -> Option<(Option<Box<str>>, Task)> {
        let now = self.clock.now();
        while let Some(key) = s.ready.pop_front() {
            let Some(h) = s.hosts.get_mut(&key) else {
                continue;
            };
            h.in_ready = false;
            if !matches!(self.gate(h, now), Gate::Open) {
                // Judged at the same instant, so it is not put back in the ring.
                self.refresh_at(s, &key, now);
                continue;
            }
            if h.queue.is_empty() && h.spilled_jobs > 0 {
                let (read, spilled) = read_back(&mut s.spill, h);
                s.spilled -= spilled;
                s.in_memory += read;
                let lost = spilled - read as u64;
                if lost > 0 {
                    s.spill_error.get_or_insert_with(|| {
                        "jobs saved to a temporary file could not be read back".into()
                    });
                    for _ in 0..lost {
                        self.task_done(s);
                    }
                }
            }
            let h = s.hosts.get_mut(&key).expect("present");
            let Some(task) = h.queue.pop_front() else {
                self.refresh(s, &key);
                continue;
            };
            h.dispatching = true;
            h.in_flight += 1;
            s.in_memory -= 1;
            self.wake_feeder(s);
            return Some((Some(key), task));
        }
        None
    }

    /// Fires every timer due at `now`: a host whose wait is over joins the ring, a task
    /// whose backoff ended goes back to its queue, the run's quotas look again. Returns how
    /// many dispatches became possible, and the cause of the last timer that made one
    /// possible. The timer thread calls it in a run, `Scheduler::fire_due` in `--plan`.
    fn fire(&self, s: &mut State, now: Instant) -> (usize, Option<Cause>) {
        let mut woken = 0;
        let mut cause = None;
        while s.timers.peek().is_some_and(|t| t.0.at <= now) {
            let Reverse(timer) = s.timers.pop().expect("peeked");
            let before = woken;
            match timer.what {
                Due::Host(host) => {
                    if let Some(h) = s.hosts.get_mut(&host) {
                        if h.timer == Some(timer.at) {
                            h.timer = None;
                        }
                        woken += usize::from(self.refresh(s, &host));
                    }
                }
                Due::Task(task) => {
                    s.in_memory -= 1;
                    if !s.closed {
                        woken += self.enqueue(s, *task, true);
                    }
                }
                Due::Quota => {
                    if s.quota_timer == Some(timer.at) {
                        s.quota_timer = None;
                    }
                    if s.quota_blocked && self.quotas_open(s, now) {
                        woken += s.waiting.max(1);
                    }
                    if s.paused_until.is_some_and(|p| p <= now) {
                        s.paused_until = None;
                        woken += s.waiting.max(1);
                        self.wake_feeder(s);
                    }
                }
            }
            if woken > before {
                cause = Some(timer.cause);
            }
        }
        (woken, cause)
    }

    /// The timer thread: wakes at each deadline (slack of a microsecond, a short spin
    /// before it) and moves what is due on.
    fn run_timers(&self) {
        crate::limits::pacer::fine_timer_slack();
        let mut spin = Duration::from_micros(50);
        let mut s = self.lock();
        loop {
            if s.ended {
                return;
            }
            let (woken, _) = self.fire(&mut s, self.clock.now());
            if woken > 0 {
                self.wake_workers(&s, woken);
            }
            let next = s.timers.peek().map(|t| t.0.at);
            s.timer_at = next;
            match next {
                None => s = self.timer.wait(s).expect("schedule lock"),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    if wait > spin {
                        let deadline = std::time::Instant::now() + (wait - spin);
                        let (guard, timeout) = self
                            .timer
                            .wait_timeout(s, wait - spin)
                            .expect("schedule lock");
                        s = guard;
                        if timeout.timed_out() {
                            let late =
                                std::time::Instant::now().saturating_duration_since(deadline);
                            spin = ((spin * 7 + late + Duration::from_micros(10)) / 8)
                                .clamp(MIN_SPIN, MAX_SPIN);
                        }
                    } else {
                        drop(s);
                        while Instant::now() < at {
                            std::hint::spin_loop();
                        }
                        s = self.lock();
                    }
                }
            }
        }
    }
}

/// The wall-clock time of an instant (for messages; quotas are kept in instants).
fn wall_clock(at: Instant) -> std::time::SystemTime {
    crate::limits::wall_time(at.into_std())
}

fn push(queue: &mut VecDeque<Task>, task: Task, front: bool) {
    if front {
        queue.push_front(task);
    } else {
        queue.push_back(task);
    }
}

/// A worker counted in `State::waiting`.
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.waiting -= 1;
        }
    }
}

/// A `slot` caller's place on a host, given back if it stops waiting.
struct Reservation {
    inner: Arc<Inner>,
    host: Box<str>,
    held: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let inner = self.inner.clone();
        let Ok(mut s) = inner.state.lock() else {
            return;
        };
        if let Some(h) = s.hosts.get_mut(&self.host) {
            h.reserved -= 1;
        }
        if inner.refresh(&mut s, &self.host) {
            inner.wake_workers(&s, 1);
        }
    }
}

/// A worker's claim on one dispatch: the task, and its host's slot until given back.
#[must_use = "a ticket holds its host's slot until it is given back"]
pub struct Ticket {
    inner: Arc<Inner>,
    /// The host whose slot this holds; `None` for a host without limits.
    host: Option<Box<str>>,
    task: Option<Task>,
    stage: Stage,
    /// Holds a place in the run's quotas (until sent or given back).
    quota: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Holds the host's turn (no other dispatch until `go`) and a concurrency slot.
    Dispatched,
    /// Sent: holds a concurrency slot.
    Sent,
    Released,
}

impl Ticket {
    /// A fresh dispatch: holds the host's slot (if `host`) and, with quotas, a place in them
    /// (the caller took both).
    fn dispatched(inner: &Arc<Inner>, host: Option<Box<str>>, task: Option<Task>) -> Ticket {
        Ticket {
            inner: inner.clone(),
            host,
            task,
            stage: Stage::Dispatched,
            quota: inner.quotas,
        }
    }

    /// The task this ticket carries.
    pub fn task(&self) -> &Task {
        self.task.as_ref().expect("a ticket with a task")
    }

    pub fn task_mut(&mut self) -> &mut Task {
        self.task.as_mut().expect("a ticket with a task")
    }

    /// Takes the task out: it is finished (its row is written next) and leaves the
    /// scheduler. The host's slot is given back.
    pub fn finish(mut self) -> Task {
        let task = self.task.take().expect("a ticket with a task");
        let inner = self.inner.clone();
        let mut s = inner.lock();
        self.release(&inner, &mut s);
        inner.task_done(&mut s);
        task
    }

    /// Waits until this dispatch's host is due: a paced host is handed out a little before
    /// its turn (the hand-off's usual delay), and its worker spins the rest. Call before
    /// taking the global token, so that the request is stamped on its host's turn or later.
    /// On a virtual clock (`--plan`) a host is handed out on its turn: nothing to wait for.
    pub async fn wait_due(&self) {
        let (Some(host), Stage::Dispatched) = (&self.host, self.stage) else {
            return;
        };
        let inner = &*self.inner;
        if let Clock::Virtual(_) = inner.clock {
            return;
        }
        if inner.period.is_none()
            && !inner
                .crawl_delays
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let (due, period) = {
            let s = inner.lock();
            let Some(h) = s.hosts.get(host) else {
                return;
            };
            let period = inner.period.unwrap_or_default().max(h.min_period);
            match h.pace.tat() {
                Some(tat) if !period.is_zero() => (tat, period),
                _ => return,
            }
        };
        let now = Instant::now();
        let lead = inner.lead().min(period / 4);
        if due > now + lead * 2 {
            // Moved meanwhile (a Crawl-delay): `go` refuses, and the task queues again.
            return;
        }
        // Handed out at `due - lead`: learn how long that took to reach a worker (only from
        // tickets taken near their turn, not from hosts ready for other reasons).
        let opened = due.checked_sub(lead).unwrap_or(due);
        if now >= opened && now < due + lead {
            inner.learn_lead(now - opened);
        }
        if now < due {
            // Let what is queued on this thread run first (a request just stamped, on a
            // one-thread runtime), then spin the rest.
            tokio::task::yield_now().await;
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
    }

    /// Called with the global token in hand, right before sending: counts the request,
    /// stamped `at` (the instant the global rate judged it, or now), in its host's pace and
    /// in the quota windows. False when the host began to cool down meanwhile (the request
    /// must not leave; requeue the task), or when the `--quota-state` cannot be written (the
    /// run stops).
    pub fn go(&mut self, at: std::time::Instant) -> bool {
        let at = Instant::from_std(at);
        if let Some(ledger) = &self.inner.ledger {
            // Counted on disk before it leaves. A request refused below after this was
            // counted and not sent: the safe side.
            let host = self
                .host
                .as_deref()
                .or_else(|| self.task.as_ref().and_then(Task::host));
            if let Err(why) = ledger.grant(host.unwrap_or("")) {
                let inner = self.inner.clone();
                let mut s = inner.lock();
                s.ledger_error.get_or_insert(why);
                if !s.closed {
                    inner.end(&mut s);
                }
                return false;
            }
        }
        let Some(host) = &self.host else {
            if self.free_host_cooling() {
                return false;
            }
            if self.quota {
                let inner = self.inner.clone();
                let mut s = inner.lock();
                self.stamp(&inner, &mut s, at);
            }
            return true;
        };
        if self.stage != Stage::Dispatched {
            return true;
        }
        let inner = self.inner.clone();
        let mut s = inner.lock();
        if !s.hosts.contains_key(host) {
            self.stamp(&inner, &mut s, at);
            return true;
        }
        let h = s.hosts.get_mut(host).expect("checked");
        // A cool-down that began, or a Crawl-delay that moved the host's turn, while this
        // ticket waited: the request must not leave now.
        let period = inner.period.unwrap_or_default().max(h.min_period);
        let pace = Pace::every(period);
        if h.cool_until.is_some_and(|c| c > at)
            || (!period.is_zero() && h.pace.admit(pace, at).is_err())
        {
            return false;
        }
        h.dispatching = false;
        h.last_sent = Some(at);
        // Counted in the host's windows and the run's at the same instant (the entry was made
        // with its windows).
        for w in &mut h.windows {
            w.record(at);
        }
        self.stage = Stage::Sent;
        let host = host.clone();
        self.stamp(&inner, &mut s, at);
        let woken = inner.refresh(&mut s, &host);
        inner.wake_workers(&s, usize::from(woken));
        true
    }

    /// Counts the request, sent at `now`, in the run's quotas (its place there was held).
    fn stamp(&mut self, inner: &Inner, s: &mut State, now: Instant) {
        if !std::mem::take(&mut self.quota) {
            return;
        }
        s.pending -= 1;
        for w in &mut s.quotas {
            w.record(now);
        }
        inner.quotas_changed(s);
    }

    /// For a ticket without a host slot: whether the task's host began to cool down.
    fn free_host_cooling(&self) -> bool {
        if !self.inner.cooled.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Some(host) = self.task.as_ref().and_then(Task::host) else {
            return false;
        };
        let s = self.inner.lock();
        let now = self.inner.clock.now();
        s.hosts
            .get(host)
            .is_some_and(|h| h.cool_until.is_some_and(|c| c > now))
    }

    /// Gives the host's slot back early (the task stays in the ticket).
    pub fn release_host(&mut self) {
        let inner = self.inner.clone();
        let mut s = inner.lock();
        self.release(&inner, &mut s);
    }

    fn release(&mut self, inner: &Inner, s: &mut State) {
        if std::mem::take(&mut self.quota) {
            // Given back unsent: its place in the quotas and the budget is free again.
            s.pending -= 1;
            if let Some(left) = &mut s.budget_left {
                *left += 1;
            }
            inner.quotas_changed(s);
        }
        if self.stage == Stage::Released {
            return;
        }
        let stage = std::mem::replace(&mut self.stage, Stage::Released);
        let Some(host) = &self.host else {
            return;
        };
        if let Some(h) = s.hosts.get_mut(host) {
            h.in_flight -= 1;
            if stage == Stage::Dispatched {
                h.dispatching = false;
            }
            let host = host.clone();
            let woken = inner.refresh(s, &host);
            inner.wake_workers(s, usize::from(woken));
        }
    }
}

impl Inner {
    fn task_done(&self, s: &mut State) {
        s.live -= 1;
        if s.input_done && s.live == 0 {
            self.work.notify_waiters();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let had_task = self.task.take().is_some();
        if self.stage == Stage::Released && !had_task {
            return;
        }
        let inner = self.inner.clone();
        let Ok(mut s) = inner.state.lock() else {
            return;
        };
        self.release(&inner, &mut s);
        if had_task {
            // Dropped unfinished (the run stopped): it leaves the scheduler without a row.
            inner.task_done(&mut s);
        }
    }
}

/// Jobs on disk: one anonymous temporary file, appended to; recent records are still in
/// `pending` (not yet written) and are read back from there.
struct Spill {
    file: File,
    /// Bytes in the file.
    written: u64,
    pending: Vec<u8>,
    /// A write failed (a full disk): jobs stay in memory from then on.
    broken: bool,
}

/// Consecutive records of one host in the spill file.
struct Run {
    start: u64,
    end: u64,
    count: u64,
}

const SPILL_FLUSH: usize = 1 << 20;

fn write_spill(spill: &mut Option<Spill>, h: &mut Host, job: &Job) -> io::Result<()> {
    if spill.is_none() {
        *spill = Some(Spill {
            file: tempfile::tempfile()?,
            written: 0,
            pending: Vec::with_capacity(SPILL_FLUSH),
            broken: false,
        });
    }
    let sp = spill.as_mut().expect("just made");
    if sp.broken {
        return Err(io::Error::other("the spill file failed before"));
    }
    let kept = sp.pending.len();
    let start = sp.written + kept as u64;
    encode_job(&mut sp.pending, job);
    let end = sp.written + sp.pending.len() as u64;
    if sp.pending.len() >= SPILL_FLUSH {
        // Written at its offset: a short write cannot shift the records after it.
        if let Err(e) = write_all_at(&sp.file, &sp.pending, sp.written) {
            // This job stays in memory (the caller keeps it); the records before it are
            // still in `pending`, where they are read from. No more spilling.
            sp.pending.truncate(kept);
            sp.broken = true;
            return Err(e);
        }
        sp.written += sp.pending.len() as u64;
        sp.pending.clear();
    }
    match h.spilled.back_mut() {
        Some(run) if run.end == start => {
            run.end = end;
            run.count += 1;
        }
        _ => h.spilled.push_back(Run {
            start,
            end,
            count: 1,
        }),
    }
    h.spilled_jobs += 1;
    Ok(())
}

/// Reads up to `READ_BACK` of `h`'s spilled jobs into its queue. Returns (jobs read, jobs
/// taken off the spill); they differ only if the file failed.
fn read_back(spill: &mut Option<Spill>, h: &mut Host) -> (usize, u64) {
    let Some(sp) = spill.as_mut() else {
        return (0, 0);
    };
    let mut read = 0;
    let mut taken = 0;
    while read < READ_BACK {
        let Some(run) = h.spilled.front_mut() else {
            break;
        };
        let job = read_record(sp, run.start).map(|(job, len)| {
            run.start += len;
            job
        });
        run.count -= 1;
        taken += 1;
        h.spilled_jobs -= 1;
        if run.count == 0 {
            h.spilled.pop_front();
        }
        match job {
            Ok(job) => {
                h.queue.push_back(Task::new(job));
                read += 1;
            }
            Err(_) => {
                // Nothing after a bad record can be trusted: drop this host's spill.
                taken += h.spilled_jobs;
                h.spilled_jobs = 0;
                h.spilled.clear();
                break;
            }
        }
    }
    (read, taken)
}

fn encode_job(out: &mut Vec<u8>, job: &Job) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&job.index.to_le_bytes());
    put_str(out, &job.url);
    out.extend_from_slice(&(job.passthrough.len() as u32).to_le_bytes());
    for cell in &job.passthrough {
        put_str(out, cell);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The job at `offset`, and the record's length.
fn read_record(sp: &Spill, offset: u64) -> io::Result<(Job, u64)> {
    let head = read_at(sp, offset, 4)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if offset + 4 + len as u64 > sp.written + sp.pending.len() as u64 {
        return Err(io::Error::other("a record past the end of the spill"));
    }
    let body = read_at(sp, offset + 4, len)?;
    let job = decode_job(&body).ok_or_else(|| io::Error::other("a corrupt record"))?;
    Ok((job, 4 + len as u64))
}

fn read_at(sp: &Spill, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; len];
    let mut done = 0;
    if offset < sp.written {
        let from_file = len.min((sp.written - offset) as usize);
        read_exact_at(&sp.file, &mut out[..from_file], offset)?;
        done = from_file;
    }
    if done < len {
        let at = (offset + done as u64 - sp.written) as usize;
        let rest = sp
            .pending
            .get(at..at + (len - done))
            .ok_or_else(|| io::Error::other("a record past the end of the spill"))?;
        out[done..].copy_from_slice(rest);
    }
    Ok(out)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

fn decode_job(mut b: &[u8]) -> Option<Job> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    fn u32_of(b: &mut &[u8]) -> Option<usize> {
        take(b, 4).map(|x| u32::from_le_bytes(x.try_into().expect("4 bytes")) as usize)
    }
    fn string(b: &mut &[u8]) -> Option<String> {
        let n = u32_of(b)?;
        take(b, n).and_then(|s| String::from_utf8(s.to_vec()).ok())
    }
    let index = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let url = string(&mut b)?;
    let cells = u32_of(&mut b)?;
    let mut passthrough = Vec::with_capacity(cells.min(1024));
    for _ in 0..cells {
        passthrough.push(string(&mut b)?);
    }
    // Only jobs with a URL are spilled (a bad line has no host and never waits).
    let target: Result<url::Url, Failure> = parse_target(&url);
    Some(Job {
        index,
        url,
        target,
        passthrough,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(index: u64, url: &str) -> Job {
        Job {
            index,
            url: url.to_string(),
            target: parse_target(url),
            passthrough: vec![format!("cell {index}"), "line\nbreak".into()],
        }
    }

    fn config(per_host_rate: Rate, per_host_concurrency: Option<usize>) -> Config {
        Config {
            per_host_rate,
            per_host_concurrency,
            ..Config::default()
        }
    }

    /// Takes the next ticket, failing the test if none comes within a few seconds.
    async fn next(s: &Scheduler) -> Option<Ticket> {
        tokio::time::timeout(Duration::from_secs(5), s.next(&CancellationToken::new()))
            .await
            .expect("a ticket or the end in time")
    }

    #[tokio::test]
    async fn a_spent_quota_says_what_the_run_waits_for_and_until_when() {
        let quota = crate::units::parse_quota("2/1h").unwrap();
        let s = Scheduler::new(&Config {
            quotas: vec![quota],
            ..Config::default()
        });
        s.push(
            (1..=3)
                .map(|i| job(i, &format!("http://a.test/{i}")))
                .collect(),
        );
        s.input_finished();
        assert_eq!(s.waiting(), None);
        for _ in 0..2 {
            let mut t = next(&s).await.unwrap();
            assert!(t.go(std::time::Instant::now()));
            t.finish();
        }
        // The third is held back by the window: an attempt to take it says why.
        let third =
            tokio::time::timeout(Duration::from_millis(50), s.next(&CancellationToken::new()))
                .await;
        assert!(third.is_err(), "the window is spent");
        let text = s.waiting().expect("waiting for the quota");
        assert!(
            text.starts_with("waiting for --quota 2/1h: next slot at "),
            "{text}"
        );
        // The slot is an hour from now (to the second, rounded up).
        let at = text.rsplit(' ').next().unwrap();
        let at = humantime::parse_rfc3339(at).unwrap();
        let hour = std::time::SystemTime::now() + Duration::from_secs(3600);
        let off = at.duration_since(hour).unwrap_or_else(|e| e.duration());
        assert!(off <= Duration::from_secs(2), "{text}");
        s.close();
        assert_eq!(s.waiting(), None);
    }

    #[tokio::test]
    async fn a_pause_holds_every_dispatch_until_it_ends_and_says_why() {
        let s = Scheduler::new(&Config::default());
        s.push(vec![job(1, "http://a.test/1")]);
        s.input_finished();
        let paused = Instant::now();
        s.pause(
            Duration::from_millis(200),
            "--quota 2/1s (shared in Redis)".into(),
        );
        let text = s.waiting().expect("waiting for the pause");
        assert!(
            text.starts_with("waiting for --quota 2/1s (shared in Redis): next slot at "),
            "{text}"
        );
        // A notice (Redis unreachable) is what the progress line says while it lasts.
        s.notify(Some("waiting for Redis".into()));
        assert_eq!(s.waiting().as_deref(), Some("waiting for Redis"));
        s.notify(None);
        let mut t = next(&s).await.expect("the task, once the pause is over");
        assert!(
            paused.elapsed() >= Duration::from_millis(199),
            "dispatched {:?} into a pause of 200ms",
            paused.elapsed()
        );
        assert!(t.go(std::time::Instant::now()));
        t.finish();
        assert_eq!(s.waiting(), None);
    }

    #[tokio::test]
    async fn a_host_that_must_wait_is_passed_over() {
        let s = Scheduler::new(&config(Rate::Every(Duration::from_secs(3600)), None));
        s.push(vec![
            job(1, "http://a.test/1"),
            job(2, "http://a.test/2"),
            job(3, "http://b.test/1"),
        ]);
        s.input_finished();
        let mut t = next(&s).await.unwrap();
        assert_eq!(t.task().job.index, 1);
        assert!(t.go(std::time::Instant::now()));
        t.finish();
        let mut t = next(&s).await.unwrap();
        assert_eq!(t.task().job.index, 3, "b goes while a waits for its pace");
        assert!(t.go(std::time::Instant::now()));
        t.finish();
        // a's second job waits an hour: nothing is ready.
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), s.next(&CancellationToken::new()))
                .await;
        assert!(waiting.is_err());
        s.close();
        assert!(next(&s).await.is_none());
    }

    #[tokio::test]
    async fn a_dispatch_holds_its_host_until_it_takes_its_token() {
        let s = Scheduler::new(&config(Rate::Unlimited, Some(4)));
        s.push(vec![job(1, "http://a.test/1"), job(2, "http://a.test/2")]);
        let mut first = next(&s).await.unwrap();
        let early =
            tokio::time::timeout(Duration::from_millis(50), s.next(&CancellationToken::new()))
                .await;
        assert!(
            early.is_err(),
            "a second dispatch before the first took its token"
        );
        assert!(first.go(std::time::Instant::now()));
        let second = next(&s).await.unwrap();
        assert_eq!(second.task().job.index, 2);
    }

    #[tokio::test]
    async fn cooling_host_waits_and_the_ticket_that_waited_is_refused() {
        let s = Scheduler::new(&config(Rate::Unlimited, None));
        s.push(vec![job(1, "http://a.test/1"), job(2, "http://b.test/1")]);
        let mut t = next(&s).await.unwrap();
        assert_eq!(t.task().job.index, 1);
        // The host began to cool down while this ticket waited for its token.
        s.cool_down("a.test", Duration::from_secs(3600));
        assert!(
            !t.go(std::time::Instant::now()),
            "a request must not leave during a cool-down"
        );
        s.requeue(t);
        let t = next(&s).await.unwrap();
        assert_eq!(t.task().job.index, 2, "the other host goes on");
    }

    #[tokio::test]
    async fn spilled_jobs_come_back_in_order_and_whole() {
        let s = Scheduler::new(&config(Rate::Unlimited, Some(1)));
        let n = 3 * HOST_CAP as u64;
        let mut jobs: Vec<Job> = (1..=n)
            .map(|i| job(i, &format!("http://a.test/{i}")))
            .collect();
        jobs.push(job(n + 1, "http://b.test/1"));
        s.push(jobs);
        s.input_finished();
        assert_eq!(s.spilled(), n - HOST_CAP as u64);
        let mut seen_a = Vec::new();
        let mut b_at = None;
        while let Some(mut t) = next(&s).await {
            assert!(t.go(std::time::Instant::now()));
            let task = t.finish();
            assert_eq!(task.job.passthrough[1], "line\nbreak");
            match task.host() {
                Some("a.test") => {
                    assert_eq!(task.job.url, format!("http://a.test/{}", task.job.index));
                    seen_a.push(task.job.index);
                }
                _ => b_at = Some(seen_a.len()),
            }
        }
        assert_eq!(seen_a, (1..=n).collect::<Vec<_>>());
        assert!(b_at.is_some_and(|at| at < 4), "b waited behind a: {b_at:?}");
        assert_eq!(s.spilled(), 0);
        assert_eq!(
            s.tracked_hosts(),
            0,
            "hosts with nothing in force are forgotten"
        );
    }

    #[tokio::test]
    async fn hosts_are_forgotten_once_their_pace_is_over() {
        let s = Scheduler::new(&config(Rate::Every(Duration::from_millis(20)), None));
        s.push(
            (1..=50)
                .map(|i| job(i, &format!("http://h{i}.test/")))
                .collect(),
        );
        s.input_finished();
        while let Some(mut t) = next(&s).await {
            assert!(t.go(std::time::Instant::now()));
            t.finish();
        }
        // Their paces end 20 ms after their requests; the timer thread then drops them.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while s.tracked_hosts() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} hosts kept",
                s.tracked_hosts()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn without_per_host_limits_hosts_are_not_tracked() {
        let s = Scheduler::new(&config(Rate::Unlimited, None));
        s.push(
            (1..=100)
                .map(|i| job(i, &format!("http://h{i}.test/")))
                .collect(),
        );
        s.push(vec![job(101, "not a url")]);
        s.input_finished();
        let mut n = 0;
        while let Some(mut t) = next(&s).await {
            assert!(t.go(std::time::Instant::now()));
            t.finish();
            n += 1;
        }
        assert_eq!(n, 101);
        assert_eq!(s.tracked_hosts(), 0);
    }

    /// Runs `s` on `clock` as `--plan` does, each task sent as soon as it is handed out:
    /// the send times (from the clock's start), and the cause each timer that let a task go
    /// gave.
    fn drive(s: &Scheduler, clock: &VirtualClock, n: usize) -> (Vec<Duration>, Vec<Cause>) {
        let t0 = clock.now();
        let (mut sent, mut causes) = (Vec::new(), Vec::new());
        while sent.len() < n {
            if let Some(mut t) = s.try_next() {
                let at = clock.now();
                assert!(t.go(at.into_std()));
                sent.push(at - t0);
                t.finish();
                continue;
            }
            let next = s.next_deadline().expect("a timer while tasks wait");
            assert!(next > clock.now(), "a timer due in the past");
            clock.advance_to(next);
            causes.extend(s.fire_due());
        }
        (sent, causes)
    }

    #[test]
    fn on_a_virtual_clock_a_paced_host_leaves_on_its_turns_without_a_thread() {
        let clock = Arc::new(VirtualClock::new());
        let s = Scheduler::simulated(
            &config(Rate::Every(Duration::from_secs(1)), None),
            &Past::default(),
            clock.clone(),
        );
        s.push(
            (1..=3)
                .map(|i| job(i, &format!("http://a.test/{i}")))
                .collect(),
        );
        s.push(vec![job(4, "http://b.test/")]);
        let (sent, causes) = drive(&s, &clock, 4);
        // Exactly on its turns (no lead), b at once.
        let secs = Duration::from_secs;
        assert_eq!(sent, [secs(0), secs(0), secs(1), secs(2)]);
        assert_eq!(causes, [Cause::Pace, Cause::Pace]);
        assert!(s.try_next().is_none());
    }

    #[test]
    fn on_a_virtual_clock_a_spent_window_names_itself() {
        let quota = |s: &str| crate::units::parse_quota(s).unwrap();
        let clock = Arc::new(VirtualClock::new());
        let s = Scheduler::simulated(
            &Config {
                quotas: vec![quota("5/1h"), quota("2/10s")],
                per_host_quotas: vec![quota("3/1m")],
                ..Config::default()
            },
            &Past::default(),
            clock.clone(),
        );
        s.push(
            (1..=4)
                .map(|i| job(i, &format!("http://a.test/{i}")))
                .collect(),
        );
        let (sent, causes) = drive(&s, &clock, 4);
        let secs = Duration::from_secs;
        // Two, then two more once they leave the 10 s window; the host's third of a minute
        // is the fourth's.
        assert_eq!(sent, [secs(0), secs(0), secs(10), secs(60)]);
        assert_eq!(causes, [Cause::Quota(1), Cause::HostQuota(0)]);
    }

    #[test]
    fn a_job_survives_the_spill_format() {
        let original = job(7, "https://a.test/x?y=1");
        let mut bytes = Vec::new();
        encode_job(&mut bytes, &original);
        let back = decode_job(&bytes[4..]).unwrap();
        assert_eq!(
            (back.index, back.url, back.passthrough),
            (original.index, original.url, original.passthrough)
        );
        assert!(
            decode_job(&bytes[4..bytes.len() - 1]).is_none(),
            "a cut record"
        );
    }
}
