//! The enforcing test server ([`AnnouncingServer`]): a fixed-window request limit that it
//! announces in rate-limit headers on every response and enforces with 429 or 403.
//!
//! Like `server.rs`, it lives on its own OS thread with its own runtime, and tests synchronise
//! on its arrivals (a condvar), never on sleeps. What it announces is never earlier than what it
//! enforces: each window's end is computed once, when the window opens, the headers round the
//! time to it up to whole seconds, and the window ends exactly at that instant.

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

/// The headers a server announces its limit in.
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
}

/// A loopback server that allows `limit` requests per fixed window and says so; see
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
    state: Mutex<State>,
    /// Notified on every arrival, for [`AnnouncingServer::wait_arrivals`].
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    /// The current window; `None` before the first request.
    window: Option<Window>,
    accepted: u64,
    refused: u64,
    arrivals: Vec<(Instant, bool)>,
    panics: Vec<String>,
}

/// One fixed window, fixed when its first request arrives.
struct Window {
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
    /// Time from the arrival to the window's end.
    to_reset: Duration,
    end_wall: SystemTime,
    /// The wall-clock time of the arrival, for GitHub's `Date`.
    wall: SystemTime,
}

impl AnnouncingServer {
    /// A server on 127.0.0.<ip> enforcing `limit` requests per fixed window of `window`
    /// (windows start at the first request), announcing what is left in `style` headers on
    /// every response. A request over the limit is refused: 429 for Ietf and
    /// XRateLimitSeconds (with the same headers, remaining 0), 403 with
    /// `x-ratelimit-remaining: 0` for GitHub. GitHub style sends `x-ratelimit-reset` as epoch
    /// seconds and a `Date` header, and ends each window on a whole second (at least `window`
    /// after its start), so the epoch announced is exact; the other styles announce the
    /// seconds to the reset rounded up.
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
        self.shared.lock().arrivals.clone()
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
        state.arrivals.iter().take(n).copied().collect()
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

    /// Counts one arrival against the window (opening a new one if the last has ended) and
    /// records it. The clock is read under the lock, so arrival order is decision order.
    fn decide(&self) -> Verdict {
        let mut state = self.lock();
        // Instant first: `end_wall` then maps to an `end` no later than itself.
        let at = Instant::now();
        let wall = SystemTime::now();
        if state.window.as_ref().is_none_or(|w| at >= w.end) {
            state.window = Some(self.open_window(at, wall));
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
        if refused {
            state.refused += 1;
        } else {
            state.accepted += 1;
        }
        state.arrivals.push((at, refused));
        drop(state);
        self.arrived.notify_all();
        verdict
    }

    /// A window opening at `at` (`wall` on the wall clock): `window` long, or in GitHub style
    /// up to the first whole second at least `window` away.
    fn open_window(&self, at: Instant, wall: SystemTime) -> Window {
        let (end, end_wall) = match self.style {
            Style::GitHub => {
                let end_wall = ceil_to_second(wall + self.window);
                let to_end = end_wall.duration_since(wall).unwrap_or(self.window);
                (at + to_end, end_wall)
            }
            Style::Ietf | Style::XRateLimitSeconds => (at + self.window, wall + self.window),
        };
        Window {
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
        }
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
