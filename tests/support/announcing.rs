//! The enforcing test server ([`AnnouncingServer`]): a request limit per window that it
//! announces in rate-limit headers on every response and enforces with 429 or 403, in the
//! header style of a real server or middleware ([`Style`]).
//!
//! Like `server.rs`, it lives on its own OS thread with its own runtime, and tests synchronise
//! on its arrivals (a condvar), never on sleeps. Every arrival is recorded ([`Arrival`]): when
//! the server decided on it, whether it was refused, and the fixed window it counted in, so
//! that tests can count per window ([`AnnouncingServer::window_counts`]).
//!
//! Windows. A **fixed** window opens at the first request after the previous one ended and
//! lasts `window` (express-rate-limit's `MemoryStore`, Python `limits`' `MemoryStorage`, which
//! Flask-Limiter and slowapi use; GitHub style ends it on a whole second). The **moving**
//! window (Python `limits`' moving window, [`Style::FlaskMoving`]) accepts a request when
//! fewer than `limit` accepted requests arrived in `[now − window, now]`, and announces the
//! reset `T` = the oldest accepted arrival still in `(now − window, now]`, plus `window`: a
//! reset frees one slot.
//!
//! The middlewares' headers, with `T` the window's end as a wall-clock epoch (a float), `now`
//! the wall clock at the decision, `w` the window in seconds, `L` the limit, `rem` what remains
//! after this request:
//! - express-rate-limit 7/8 (`source/headers.ts`): `getResetSeconds` = max(0, ceil(T − now)).
//!   Every response has a `Date` (Node sends it; legacy headers set it), whole seconds floored.
//!   A refusal is a 429 with the same headers (rem 0) and `Retry-After: ceil(T − now)`.
//! - Flask-Limiter 4 (`reset_at = int(T + 1)`): `X-RateLimit-Reset: int(T + 1)` and
//!   `Retry-After: int(reset_at − now)` on **every** response, 200s included; `Date` floored
//!   (werkzeug).
//! - slowapi 0.1.10: `X-RateLimit-Reset: str(1 + T)` (a float epoch a second late) and
//!   `Retry-After: int(1 + T − now)` on every response. Its `Date` is uvicorn's, which
//!   refreshes it once a second on its own tick: floored, and up to a second stale.
//!
//! Checked against the real middlewares (Flask-Limiter 4.1.1 with limits 5.8.0, fixed and
//! moving window, werkzeug's server; slowapi 0.1.10 on uvicorn 0.55, `key_style="endpoint"`;
//! `curl -si`, 3 per 2 s): the header names and value forms are these, for example
//! `X-RateLimit-Reset: 1796686422` with `Retry-After: 2` on a 200 and `Retry-After: 1` on the
//! 429 (Flask, both strategies), `x-ratelimit-reset: 1796686441.1984293` with `retry-after: 2`
//! on a 200 and a `date` a second behind the clock (slowapi). express-rate-limit is emulated
//! from its source (npm is not reachable from here). Differences left: Flask's 429 reads
//! `429 TOO MANY REQUESTS`; the real servers read the clock a few times per request (the
//! decision, then the headers), here once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::panic_message;

/// The headers a server announces its limit in, and how it counts (fixed windows unless said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `RateLimit-Policy: "default";q=<limit>;w=<window secs>` and
    /// `RateLimit: "default";r=<remaining>;t=<secs to reset>`; refusals are 429.
    Ietf,
    /// `x-ratelimit-limit`, `-remaining`, `-used`, `-resource: core` and `-reset` as epoch
    /// seconds, with a `Date`; refusals are 403 with `x-ratelimit-remaining: 0`.
    GitHub,
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` as seconds to go; refusals are 429.
    XRateLimitSeconds,
    /// express-rate-limit `standardHeaders: 'draft-6'`: `RateLimit-Policy: L;w=W`,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset: ceil(T − now)` (left out
    /// when it is 0).
    Draft6,
    /// express-rate-limit `'draft-7'`: `RateLimit-Policy: L;w=W` and
    /// `RateLimit: limit=L, remaining=rem, reset=ceil(T − now)`.
    Draft7,
    /// express-rate-limit `'draft-8'`: `RateLimit-Policy: "L-in-Wsec"; q=L; w=W; pk=:…:` and
    /// `RateLimit: "L-in-Wsec"; r=rem; t=ceil(T − now)`.
    Draft8,
    /// express-rate-limit `legacyHeaders`: `X-RateLimit-Limit`, `-Remaining`,
    /// `-Reset: ceil(T)` (epoch seconds) and `Date`.
    Legacy,
    /// Flask-Limiter, fixed window: `X-RateLimit-Limit`, `-Remaining`, `-Reset: int(T + 1)`,
    /// `Retry-After: int(int(T + 1) − now)` on every response, `Date`.
    FlaskFixed,
    /// Flask-Limiter, moving window: the headers of [`Style::FlaskFixed`].
    FlaskMoving,
    /// slowapi, fixed window: `X-RateLimit-Limit`, `-Remaining`, `-Reset: str(1 + T)`,
    /// `Retry-After: int(1 + T − now)` on every response, uvicorn's `Date`.
    Slowapi,
}

impl Style {
    /// Whether the server counts in a moving window rather than fixed ones.
    pub fn moving(self) -> bool {
        matches!(self, Style::FlaskMoving)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When the server decided on it.
    pub at: Instant,
    pub refused: bool,
    /// The fixed window it counted in (0 for the first the server opened); `None` for the
    /// moving window.
    pub window: Option<u64>,
}

/// A loopback server that allows `limit` requests per window and says so; see
/// [`AnnouncingServer::start`]. Any path gets the same treatment. Dropping it stops the server
/// and joins its thread; if the server panicked, the drop panics with that message (unless the
/// test is already panicking).
pub struct AnnouncingServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the connection tasks share with the handle.
struct Shared {
    limit: u64,
    window: Duration,
    style: Style,
    /// When the server started, on the wall clock: the phase of uvicorn's once-a-second
    /// `Date` (slowapi style).
    started: SystemTime,
    state: Mutex<State>,
    /// Notified on every arrival, for [`AnnouncingServer::wait_arrivals`].
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    /// The current fixed window; `None` before the first request.
    window: Option<Window>,
    /// Fixed windows opened so far.
    opened: u64,
    /// Moving window: the accepted arrivals that may still count, oldest first (instant and
    /// wall clock).
    moving: VecDeque<(Instant, SystemTime)>,
    accepted: u64,
    refused: u64,
    arrivals: Vec<Arrival>,
    panics: Vec<String>,
}

/// One fixed window, fixed when its first request arrives.
struct Window {
    /// Its number: 0 for the first the server opened.
    index: u64,
    /// Requests are accepted again from this instant on.
    end: Instant,
    /// The same instant on the wall clock: a whole second in GitHub style.
    end_wall: SystemTime,
    used: u64,
}

/// What one request got, and what to announce with it.
struct Verdict {
    refused: bool,
    remaining: u64,
    /// Time from the arrival to the window's end (the moving window: to the reset it
    /// announces).
    to_reset: Duration,
    /// `T`: the window's end (the moving window's reset) on the wall clock.
    end_wall: SystemTime,
    /// `now`: the wall-clock time of the arrival.
    wall: SystemTime,
}

impl AnnouncingServer {
    /// A server on 127.0.0.<ip> enforcing `limit` requests per `window` (fixed windows start
    /// at the first request after the last one ended; [`Style::FlaskMoving`] counts in a
    /// moving window), announcing what is left in `style` headers on every response. A request
    /// over the limit is refused: 403 with `x-ratelimit-remaining: 0` for GitHub, 429 (with the
    /// same headers, remaining 0) for the others. GitHub style sends `x-ratelimit-reset` as
    /// epoch seconds and a `Date` header, and ends each window on a whole second (at least
    /// `window` after its start), so the epoch announced is exact; Ietf and
    /// XRateLimitSeconds announce the seconds to the reset rounded up; the middleware styles
    /// announce what their middleware does (see the module's doc).
    pub fn start(ip: [u8; 4], limit: u64, window: Duration, style: Style) -> AnnouncingServer {
        let listener = StdTcpListener::bind(SocketAddr::from((ip, 0)))
            .unwrap_or_else(|e| panic!("binding announcing server on {ip:?}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("setting test listener non-blocking");
        let addr = listener.local_addr().expect("test listener address");
        let shared = Arc::new(Shared {
            limit,
            window,
            style,
            started: SystemTime::now(),
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        });
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("announcing-server-{addr}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("announcing server runtime");
                rt.block_on(accept_loop(listener, thread_shared, shutdown_rx));
            })
            .expect("spawning announcing server thread");
        AnnouncingServer {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://{addr}{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// (accepted, refused) counts so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.accepted, state.refused)
    }

    /// Every arrival's time (taken when the server decided on it) and whether it was refused,
    /// in arrival order. Does not take them: a later call returns them again.
    pub fn arrivals(&self) -> Vec<(Instant, bool)> {
        self.log().iter().map(|a| (a.at, a.refused)).collect()
    }

    /// Every arrival, in arrival order (which is decision order). Does not take them.
    pub fn log(&self) -> Vec<Arrival> {
        self.shared.lock().arrivals.clone()
    }

    /// Accepted requests per window, in order. For fixed windows, the windows the server
    /// opened (a window that only refused counts 0). For the moving window, the windows a
    /// fixed one would have opened on the same accepted arrivals: each opens at the first
    /// accepted arrival more than `window` after the one that opened the last, and holds the
    /// accepted arrivals up to `window` after its opening. The moving window never lets one
    /// of these hold more than `limit`; a client that sends what each allows as soon as it is
    /// allowed fills every one but the last.
    pub fn window_counts(&self) -> Vec<u64> {
        let log = self.log();
        let mut counts: Vec<u64> = Vec::new();
        if self.shared.style.moving() {
            let mut opened: Option<Instant> = None;
            for a in log.iter().filter(|a| !a.refused) {
                match opened {
                    Some(start) if a.at.duration_since(start) <= self.shared.window => {
                        *counts.last_mut().expect("a window is open") += 1;
                    }
                    _ => {
                        opened = Some(a.at);
                        counts.push(1);
                    }
                }
            }
        } else {
            for a in &log {
                let index = a.window.expect("fixed windows number every arrival");
                let index = usize::try_from(index).expect("a window index fits");
                if counts.len() <= index {
                    counts.resize(index + 1, 0);
                }
                counts[index] += u64::from(!a.refused);
            }
        }
        counts
    }

    /// Blocks until `n` requests have arrived or `timeout` has passed, and returns the first
    /// `n` arrivals (fewer means the timeout hit).
    pub fn wait_arrivals(&self, n: usize, timeout: Duration) -> Vec<(Instant, bool)> {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .arrived
            .wait_timeout_while(state, timeout, |s| s.arrivals.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        state
            .arrivals
            .iter()
            .take(n)
            .map(|a| (a.at, a.refused))
            .collect()
    }
}

impl Drop for AnnouncingServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let mut failures = std::mem::take(&mut self.shared.lock().panics);
        if let Some(thread) = self.thread.take() {
            if let Err(payload) = thread.join() {
                failures.push(panic_message(payload.as_ref()));
            }
        }
        if !failures.is_empty() && !std::thread::panicking() {
            panic!(
                "announcing server {} panicked: {}",
                self.addr,
                failures.join("; ")
            );
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one arrival against the window (opening a new fixed one if the last has ended)
    /// and records it. The clock is read under the lock, so arrival order is decision order.
    fn decide(&self) -> Verdict {
        let mut state = self.lock();
        // Instant first: `end_wall` then maps to an `end` no later than itself.
        let at = Instant::now();
        let wall = SystemTime::now();
        let (verdict, window) = if self.style.moving() {
            (self.decide_moving(&mut state, at, wall), None)
        } else {
            let (verdict, index) = self.decide_fixed(&mut state, at, wall);
            (verdict, Some(index))
        };
        if verdict.refused {
            state.refused += 1;
        } else {
            state.accepted += 1;
        }
        state.arrivals.push(Arrival {
            at,
            refused: verdict.refused,
            window,
        });
        drop(state);
        self.arrived.notify_all();
        verdict
    }

    /// A fixed window: the verdict and the number of the window the arrival counted in.
    fn decide_fixed(&self, state: &mut State, at: Instant, wall: SystemTime) -> (Verdict, u64) {
        if state.window.as_ref().is_none_or(|w| at >= w.end) {
            let index = state.opened;
            state.opened += 1;
            state.window = Some(self.open_window(index, at, wall));
        }
        let window = state.window.as_mut().expect("a window was just ensured");
        let refused = window.used >= self.limit;
        if !refused {
            window.used += 1;
        }
        let verdict = Verdict {
            refused,
            remaining: self.limit - window.used,
            to_reset: window.end - at,
            end_wall: window.end_wall,
            wall,
        };
        (verdict, window.index)
    }

    /// Python `limits`' moving window (`MemoryStorage.acquire_entry` and
    /// `get_moving_window`): refused when `limit` accepted arrivals lie in
    /// `[at − window, at]`; the reset is the oldest accepted arrival in `(at − window, at]`
    /// plus `window` (or now when there is none), and what remains is `limit` less those.
    fn decide_moving(&self, state: &mut State, at: Instant, wall: SystemTime) -> Verdict {
        let w = self.window;
        while state
            .moving
            .front()
            .is_some_and(|&(a, _)| at.duration_since(a) > w)
        {
            state.moving.pop_front();
        }
        let refused = state.moving.len() as u64 >= self.limit;
        if !refused {
            state.moving.push_back((at, wall));
        }
        let mut inside = state
            .moving
            .iter()
            .filter(|&&(a, _)| at.duration_since(a) < w);
        let oldest = inside.next().copied();
        let counted = oldest.map_or(0, |_| 1 + inside.count() as u64);
        let (end, end_wall) = oldest.map_or((at, wall), |(a, a_wall)| (a + w, a_wall + w));
        Verdict {
            refused,
            remaining: self.limit.saturating_sub(counted),
            to_reset: end.saturating_duration_since(at),
            end_wall,
            wall,
        }
    }

    /// Window `index`, opening at `at` (`wall` on the wall clock): `window` long, or in GitHub
    /// style up to the first whole second at least `window` away.
    fn open_window(&self, index: u64, at: Instant, wall: SystemTime) -> Window {
        let (end, end_wall) = match self.style {
            Style::GitHub => {
                let end_wall = ceil_to_second(wall + self.window);
                let to_end = end_wall.duration_since(wall).unwrap_or(self.window);
                (at + to_end, end_wall)
            }
            _ => (at + self.window, wall + self.window),
        };
        Window {
            index,
            end,
            end_wall,
            used: 0,
        }
    }

    /// The response to one request: its verdict's status and headers.
    fn answer(&self) -> Response<Full<Bytes>> {
        let verdict = self.decide();
        let (status, body) = match (verdict.refused, self.style) {
            (false, _) => (StatusCode::OK, "ok"),
            (true, Style::GitHub) => (StatusCode::FORBIDDEN, "API rate limit exceeded"),
            (true, _) => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
        };
        let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        for (name, value) in self.announce(&verdict) {
            resp.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("announced values are ASCII"),
            );
        }
        resp
    }

    /// The rate-limit headers of `verdict` in this server's style; names lower-case.
    fn announce(&self, verdict: &Verdict) -> Vec<(&'static str, String)> {
        let limit = self.limit;
        let remaining = verdict.remaining;
        let reset = ceil_secs(verdict.to_reset);
        match self.style {
            Style::Ietf => vec![
                (
                    "ratelimit-policy",
                    format!("\"default\";q={limit};w={}", ceil_secs(self.window)),
                ),
                ("ratelimit", format!("\"default\";r={remaining};t={reset}")),
            ],
            Style::GitHub => {
                let epoch = verdict
                    .end_wall
                    .duration_since(UNIX_EPOCH)
                    .expect("the test clock is after 1970")
                    .as_secs();
                vec![
                    ("x-ratelimit-limit", limit.to_string()),
                    ("x-ratelimit-remaining", remaining.to_string()),
                    ("x-ratelimit-used", (limit - remaining).to_string()),
                    ("x-ratelimit-reset", epoch.to_string()),
                    ("x-ratelimit-resource", "core".to_owned()),
                    ("date", httpdate::fmt_http_date(verdict.wall)),
                ]
            }
            Style::XRateLimitSeconds => vec![
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                ("x-ratelimit-reset", reset.to_string()),
            ],
            Style::Draft6 | Style::Draft7 | Style::Draft8 | Style::Legacy => self.express(verdict),
            Style::FlaskFixed | Style::FlaskMoving | Style::Slowapi => self.python(verdict),
        }
    }

    /// express-rate-limit's headers (`source/headers.ts`), `Retry-After` on a refusal.
    fn express(&self, verdict: &Verdict) -> Vec<(&'static str, String)> {
        let limit = self.limit;
        let remaining = verdict.remaining;
        // getResetSeconds: max(0, ceil(T − now)).
        let reset = ceil_secs(
            verdict
                .end_wall
                .duration_since(verdict.wall)
                .unwrap_or(Duration::ZERO),
        );
        let w = ceil_secs(self.window);
        // Node sends a `Date` on every response; legacy headers set their own, the same.
        let mut headers = vec![("date", httpdate::fmt_http_date(verdict.wall))];
        match self.style {
            Style::Draft6 => {
                headers.push(("ratelimit-policy", format!("{limit};w={w}")));
                headers.push(("ratelimit-limit", limit.to_string()));
                headers.push(("ratelimit-remaining", remaining.to_string()));
                // `if (resetSeconds)`: a reset of 0 is left out.
                if reset > 0 {
                    headers.push(("ratelimit-reset", reset.to_string()));
                }
            }
            Style::Draft7 => {
                headers.push(("ratelimit-policy", format!("{limit};w={w}")));
                headers.push((
                    "ratelimit",
                    format!("limit={limit}, remaining={remaining}, reset={reset}"),
                ));
            }
            Style::Draft8 => {
                // The default identifier (`${limit}-in-${seconds}sec` under a minute) and the
                // partition key express derives for the key "127.0.0.1": base64 of the first
                // 12 hex digits of its SHA-256.
                let name = format!("{limit}-in-{}sec", self.window.as_secs_f64());
                headers.push((
                    "ratelimit-policy",
                    format!("\"{name}\"; q={limit}; w={w}; pk=:MTJjYTE3YjQ5YWYy:"),
                ));
                headers.push(("ratelimit", format!("\"{name}\"; r={remaining}; t={reset}")));
            }
            Style::Legacy => {
                let epoch = ceil_secs(since_epoch(verdict.end_wall));
                headers.push(("x-ratelimit-limit", limit.to_string()));
                headers.push(("x-ratelimit-remaining", remaining.to_string()));
                headers.push(("x-ratelimit-reset", epoch.to_string()));
            }
            _ => unreachable!("not an express-rate-limit style: {:?}", self.style),
        }
        if verdict.refused {
            headers.push(("retry-after", reset.to_string()));
        }
        headers
    }

    /// Flask-Limiter's and slowapi's headers (both on Python `limits`), `Retry-After` on every
    /// response.
    fn python(&self, verdict: &Verdict) -> Vec<(&'static str, String)> {
        let t = since_epoch(verdict.end_wall).as_secs_f64();
        let now = since_epoch(verdict.wall).as_secs_f64();
        let (reset, retry_after, date) = match self.style {
            Style::Slowapi => {
                // reset_in = 1 + T; str(reset_in); int(reset_in − time.time()) (`as` truncates
                // toward zero, as `int` does).
                let reset_in = 1.0 + t;
                (
                    python_float(reset_in),
                    (reset_in - now) as i64,
                    self.uvicorn_date(verdict.wall),
                )
            }
            _ => {
                // reset_at = int(T + 1); int(reset_at − time.time()).
                let reset_at = (t + 1.0).trunc();
                (
                    format!("{reset_at:.0}"),
                    (reset_at - now) as i64,
                    httpdate::fmt_http_date(verdict.wall),
                )
            }
        };
        vec![
            ("date", date),
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", verdict.remaining.to_string()),
            ("x-ratelimit-reset", reset),
            ("retry-after", retry_after.to_string()),
        ]
    }

    /// uvicorn's `Date`: the time of its last once-a-second tick (its main loop refreshes the
    /// header every tenth 0.1 s sleep), floored to the second: up to a second stale.
    fn uvicorn_date(&self, wall: SystemTime) -> String {
        let up = wall.duration_since(self.started).unwrap_or(Duration::ZERO);
        let tick = self.started + Duration::from_secs(up.as_secs());
        httpdate::fmt_http_date(tick)
    }
}

/// Time since the epoch of a test clock reading.
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH)
        .expect("the test clock is after 1970")
}

/// A float as Python's `str` writes it: the shortest text that reads back the same, with
/// `.0` on a whole number (`1765142412.0`, `1765142412.8765433`).
fn python_float(x: f64) -> String {
    let text = x.to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The first whole wall-clock second at or after `t`.
fn ceil_to_second(t: SystemTime) -> SystemTime {
    let since = t
        .duration_since(UNIX_EPOCH)
        .expect("the test clock is after 1970");
    UNIX_EPOCH + Duration::from_secs(ceil_secs(since))
}

async fn accept_loop(
    listener: StdTcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering test listener");
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(answer_or_500(&shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// [`Shared::answer`], with a panic turned into a 500 and a message for the drop (a panic in a
/// connection task would otherwise only close the connection).
fn answer_or_500(shared: &Shared) -> Response<Full<Bytes>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| shared.answer())) {
        Ok(resp) => resp,
        Err(payload) => {
            shared.lock().panics.push(panic_message(payload.as_ref()));
            let mut resp = Response::new(Full::new(Bytes::from_static(b"handler panicked")));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
    }
}
