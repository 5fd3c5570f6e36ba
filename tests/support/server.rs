//! The scripted hyper server of the integration tests ([`Server`]), which records every request
//! it receives.
//!
//! Modelled on reqwest's `tests/support/server.rs`: the server lives on its own OS thread with its
//! own tokio runtime, so tests may be plain `#[test]` functions, may run the binary under test as
//! a subprocess, or may run their own runtime, without the server competing for it. Tests
//! synchronise on the arrival channel, never on sleeps.
//!
//! The raw-TCP server for misbehaving peers lives in `raw.rs` and the rate arithmetic over
//! arrival times in `windows.rs`; both are re-exported here, their home before the split.

// Re-exports for tests (here and on other branches) that import them from `server`.
#[allow(unused_imports)]
pub use super::raw::{closed_port_url, RawServer};
#[allow(unused_imports)]
pub use super::windows::{check_rate, max_in_window, RateCheck};

use std::convert::Infallible;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, FutureExt as _, StreamExt as _};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::panic_message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Size of the frames `/stream/{n}` sends, so large bodies arrive as many chunks.
const STREAM_CHUNK: usize = 16 * 1024;
static STREAM_BYTES: [u8; STREAM_CHUNK] = [b'x'; STREAM_CHUNK];

/// How long `/cut-body` waits after its 10 bytes before failing, so they reach the client first.
const CUT_BODY_PAUSE: Duration = Duration::from_millis(50);

/// Pause between the bytes of `/drip/{n}`.
const DRIP_INTERVAL: Duration = Duration::from_millis(200);

/// One request as the server saw it, recorded before the route runs.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the request head was received (taken first thing in the service function).
    pub at: Instant,
    pub method: String,
    /// Path plus query, e.g. `/status/404?x=1`.
    pub path: String,
    /// The server's own address; tells apart the simulated hosts of [`Server::start_on`].
    pub local: SocketAddr,
    /// The client's address; one port per client connection.
    pub peer: SocketAddr,
    /// Request headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl Arrival {
    /// The first value of header `name` (give it lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted HTTP/1.1 server on a loopback address. Routes (any method):
///
/// | route | response |
/// | --- | --- |
/// | `/`, `/ok` | 200 `text/plain` `ok` |
/// | `/status/{code}` | that status, body `status {code}`; `?retry_after=V` adds `Retry-After: V` (`%XX`/`+` decoded) |
/// | `/delay/{ms}` | sleeps, then 200 `ok` (counted in flight throughout) |
/// | `/html/{title}` | 200 `text/html; charset=utf-8` page whose `<title>` is the `%XX`-decoded segment, unescaped |
/// | `/gzip-html/{title}` | the same page gzip-compressed, `Content-Encoding: gzip` |
/// | `/redirect/{n}` | 302 to `/redirect/{n-1}`; `n == 0` gives 200 `done` |
/// | `/loop` | 302 to itself |
/// | `/to-file` | 302 to `file:///etc/passwd` |
/// | `/to?u=URL` | 302 to `URL` (`%XX`-decoded), e.g. another simulated host |
/// | `/flaky/{id}` | 503 the first time for each id, 200 after |
/// | `/product/{n}` | an HTML product page: `h1.name`, two `span.price`, `a.buy[href]` |
/// | `/api/product/{n}` | JSON `{"id":n,"name":…,"price":{"amount":…,"currency":"EUR"},"tags":[…]}`, header `X-Request-Id: n` |
/// | `/bytes/{n}` | 200 `application/octet-stream`, `n` × `x`, with Content-Length |
/// | `/stream/{n}` | the same, chunked in 16 KiB frames, no Content-Length |
/// | `/gzip/{n}` | `n` × `a` gzip-compressed, `text/plain`, `Content-Encoding: gzip` |
/// | `/echo` | method line, `name: value` header lines, blank line, request body |
/// | `/cut-body` | 200 with `Content-Length: 1000`, 10 bytes, then the connection is aborted |
/// | `/drip/{n}` | `n` × `x`, chunked, one at once then one per 200 ms |
/// | anything else (or a bad number) | 404 `not found` |
///
/// Dropping it stops accepting, drops open connections and joins its thread; if a handler panicked,
/// the drop panics with that message (unless the test is already panicking).
pub struct Server {
    addr: SocketAddr,
    /// `http`, or `https` for [`Server::start_tls`].
    scheme: &'static str,
    arrivals: Mutex<mpsc::Receiver<Arrival>>,
    shared: Arc<Shared>,
    panics: mpsc::Receiver<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// State the connection tasks share with the [`Server`] handle.
struct Shared {
    local: SocketAddr,
    arrivals: mpsc::Sender<Arrival>,
    panics: mpsc::Sender<String>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Paths of `/flaky/{id}` already answered once.
    seen: Mutex<std::collections::HashSet<String>>,
}

/// Counts one request as in flight for as long as it lives; dropping it (service future completed
/// or cancelled) takes the request off the gauge.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Starts a server on `127.0.0.1` with an ephemeral port.
    pub fn start() -> Server {
        Server::start_on([127, 0, 0, 1])
    }

    /// Starts a server on `ip` (any `127.0.0.0/8` address works on Linux, which lets one test
    /// simulate several hosts) with an ephemeral port.
    pub fn start_on(ip: [u8; 4]) -> Server {
        Server::start_with(ip, None)
    }

    /// Starts a server on `ip` that speaks HTTPS with `tls` (see `support::tls`); its
    /// [`Server::url`]s are `https://`.
    pub fn start_tls(ip: [u8; 4], tls: Arc<tokio_rustls::rustls::ServerConfig>) -> Server {
        Server::start_with(ip, Some(tokio_rustls::TlsAcceptor::from(tls)))
    }

    fn start_with(ip: [u8; 4], tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        // Bind here rather than on the server thread so the address is known (and a bind failure
        // reported) before `start_on` returns.
        let listener = StdTcpListener::bind(SocketAddr::from((ip, 0)))
            .unwrap_or_else(|e| panic!("binding test server on {ip:?}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("setting test listener non-blocking");
        let addr = listener.local_addr().expect("test listener address");

        let (arrivals_tx, arrivals_rx) = mpsc::channel();
        let (panics_tx, panics_rx) = mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared {
            local: addr,
            arrivals: arrivals_tx,
            panics: panics_tx,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seen: Mutex::new(std::collections::HashSet::new()),
        });

        let thread_shared = Arc::clone(&shared);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{addr}"))
            .spawn(move || {
                // Two workers so a slow handler (a big gzip body) does not delay the timestamps
                // of requests arriving meanwhile.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("test server runtime");
                rt.block_on(accept_loop(listener, thread_shared, tls, shutdown_rx));
                // Dropping the runtime cancels every connection task still running.
            })
            .expect("spawning test server thread");

        Server {
            addr,
            scheme,
            arrivals: Mutex::new(arrivals_rx),
            shared,
            panics: panics_rx,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}` (`https://` for [`Server::start_tls`]); `path` should start
    /// with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Everything that has arrived and not been taken yet, in arrival order; never blocks.
    pub fn arrivals(&self) -> Vec<Arrival> {
        let rx = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        rx.try_iter().collect()
    }

    /// Blocks until `n` requests have arrived or `timeout` has passed, and returns those taken (at
    /// most `n`; fewer means the timeout hit). Later arrivals stay queued for the next call, so
    /// follow with [`Server::arrivals`] to assert that nothing more came.
    pub fn wait_arrivals(&self, n: usize, timeout: Duration) -> Vec<Arrival> {
        let deadline = Instant::now() + timeout;
        let rx = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => got.push(a),
                Err(_) => break,
            }
        }
        got
    }

    /// The highest number of requests that were being handled at the same time so far.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            // The accept loop may be gone already (it panicked); that is reported below.
            let _ = tx.send(());
        }
        let mut failures: Vec<String> = Vec::new();
        if let Some(thread) = self.thread.take() {
            if let Err(payload) = thread.join() {
                failures.push(panic_message(payload.as_ref()));
            }
        }
        failures.extend(self.panics.try_iter());
        if !failures.is_empty() && !std::thread::panicking() {
            panic!(
                "test server {} panicked: {}",
                self.addr,
                failures.join("; ")
            );
        }
    }
}

async fn accept_loop(
    listener: StdTcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering test listener");
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Transient (e.g. the peer reset before accept); keep serving.
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // A failed handshake (a client that does not trust the certificate) is a
                // closed connection, as with any server.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve(stream, shared, peer).await;
                    }
                }
                None => serve(stream, shared, peer).await,
            }
        });
    }
}

/// Serves one connection (plain or TLS) with the routes.
async fn serve<S>(stream: S, shared: Arc<Shared>, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(req, &shared, peer).await) }
    });
    // Connection errors (client hung up, `/cut-body`) are expected in fault tests.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Records the arrival, keeps the in-flight gauge, and turns a panicking route into a 500 plus a
/// message for [`Server`]'s drop (a panic inside a hyper task would otherwise just close the
/// connection and go unnoticed).
async fn handle(req: Request<Incoming>, shared: &Shared, peer: SocketAddr) -> Response<Body> {
    let at = Instant::now();
    let _in_flight = InFlight::enter(shared);
    let arrival = Arrival {
        at,
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        local: shared.local,
        peer,
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
    };
    // The receiver lives as long as the Server handle, which outlives this task.
    let _ = shared.arrivals.send(arrival);

    // `/flaky/{id}`: 503 the first time, 200 after; the one route with memory.
    if let Some(id) = req.uri().path().strip_prefix("/flaky/") {
        let first = shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        return if first {
            text(StatusCode::SERVICE_UNAVAILABLE, "try again")
        } else {
            text(StatusCode::OK, "ok now")
        };
    }
    match AssertUnwindSafe(route(req)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let _ = shared.panics.send(panic_message(payload.as_ref()));
            text(StatusCode::INTERNAL_SERVER_ERROR, "handler panicked")
        }
    }
}

async fn route(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let rest = path.strip_prefix('/').unwrap_or(&path);
    let (head, arg) = match rest.split_once('/') {
        Some((head, arg)) => (head, Some(arg)),
        None => (rest, None),
    };
    let number = || arg.and_then(|a| a.parse::<u64>().ok());

    match (head, arg) {
        ("" | "ok", None) => text(StatusCode::OK, "ok"),
        ("status", Some(code)) => {
            let Some(status) = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            else {
                return not_found();
            };
            let mut resp = text(status, format!("status {code}"));
            if let Some(value) = query_param(&query, "retry_after") {
                match HeaderValue::from_bytes(&value) {
                    Ok(v) => {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    Err(_) => return text(StatusCode::BAD_REQUEST, "bad retry_after value"),
                }
            }
            resp
        }
        ("delay", Some(_)) => match number() {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, "ok")
            }
            None => not_found(),
        },
        ("html", Some(title)) => with_type(
            full(StatusCode::OK, html_page(title)),
            "text/html; charset=utf-8",
        ),
        ("gzip-html", Some(title)) => gzipped(&html_page(title), "text/html; charset=utf-8"),
        ("product", Some(_)) => match number() {
            Some(n) => with_type(
                full(
                    StatusCode::OK,
                    format!(
                        "<html><head><title>Product {n}</title></head><body>\
                         <h1 class=\"name\"> Product {n} </h1>\
                         <span class=\"price\">${n}.99</span><span class=\"price\">${n}.49</span>\
                         <a class=\"buy\" href=\"/buy/{n}\">buy</a></body></html>"
                    ),
                ),
                "text/html; charset=utf-8",
            ),
            None => not_found(),
        },
        ("api", Some(rest)) => match rest
            .strip_prefix("product/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => {
                let mut resp = with_type(
                    full(
                        StatusCode::OK,
                        format!(
                            "{{\"id\":{n},\"name\":\"Product {n}\",\"price\":{{\"amount\":{n}.99,\"currency\":\"EUR\"}},\"tags\":[\"a\",\"b\"]}}"
                        ),
                    ),
                    "application/json",
                );
                resp.headers_mut()
                    .insert("x-request-id", HeaderValue::from(n));
                resp
            }
            None => not_found(),
        },
        ("redirect", Some(_)) => match number() {
            Some(0) => text(StatusCode::OK, "done"),
            Some(n) => redirect(&format!("/redirect/{}", n - 1)),
            None => not_found(),
        },
        // A login: sets a session cookie and redirects to the page that needs it.
        ("login", None) => {
            let mut resp = redirect("/private");
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("session=s3cret; Path=/; HttpOnly"),
            );
            resp
        }
        ("private", None) => {
            let has_session = req
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split("; ").any(|c| c == "session=s3cret"));
            if has_session {
                text(StatusCode::OK, "welcome")
            } else {
                text(StatusCode::FORBIDDEN, "log in first")
            }
        }
        ("loop", None) => redirect("/loop"),
        ("to-file", None) => redirect("file:///etc/passwd"),
        ("to", None) => match query_param(&query, "u").map(String::from_utf8) {
            Some(Ok(target)) => redirect(&target),
            _ => not_found(),
        },
        ("bytes", Some(_)) => match number() {
            // `Full` has an exact size, so hyper writes Content-Length.
            Some(n) => with_type(
                full(StatusCode::OK, vec![b'x'; n as usize]),
                "application/octet-stream",
            ),
            None => not_found(),
        },
        ("stream", Some(_)) => match number() {
            Some(n) => with_type(streamed_x(n as usize), "application/octet-stream"),
            None => not_found(),
        },
        ("gzip", Some(_)) => match number() {
            Some(n) => gzipped(&vec![b'a'; n as usize], "text/plain"),
            None => not_found(),
        },
        // A body of any bytes (`body`, percent-encoded) under any Content-Type (`type`; none
        // when absent): pages in the encodings they were written in.
        ("raw", None) => {
            let mut resp = full(
                StatusCode::OK,
                query_param(&query, "body").unwrap_or_default(),
            );
            if let Some(kind) = query_param(&query, "type") {
                match HeaderValue::from_bytes(&kind) {
                    Ok(v) => {
                        resp.headers_mut().insert(header::CONTENT_TYPE, v);
                    }
                    Err(_) => return text(StatusCode::BAD_REQUEST, "bad type value"),
                }
            }
            resp
        }
        ("echo", None) => echo(req).await,
        ("cut-body", None) => cut_body(),
        ("drip", Some(_)) => match number() {
            Some(n) => drip(n),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// `/echo`: method, then `name: value` header lines, a blank line, then the request body.
async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut out = Vec::new();
    let _ = writeln!(out, "{}", parts.method);
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    match body.collect().await {
        Ok(collected) => out.extend_from_slice(&collected.to_bytes()),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
    }
    with_type(full(StatusCode::OK, out), "text/plain")
}

/// `/cut-body`: promises 1000 bytes, sends 10, then fails the body so hyper aborts the connection
/// and the client sees the body end early.
fn cut_body() -> Response<Body> {
    let head = stream::iter([Ok(Frame::data(Bytes::from_static(b"0123456789")))]);
    // Hyper flushes only when the body is pending; failing straight after the first frame would
    // drop the buffered head and bytes unsent, and the client would see no response at all.
    let fail = stream::once(async {
        tokio::time::sleep(CUT_BODY_PAUSE).await;
        Err(BoxError::from("test server cut the body short"))
    });
    let frames = head.chain(fail);
    let mut resp = Response::new(BoxBody::new(StreamBody::new(frames)));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000"));
    with_type(resp, "text/plain")
}

/// `/stream/{n}`: `n` bytes of `x` in 16 KiB frames; the body has no known size, so hyper sends it
/// chunked, without Content-Length.
fn streamed_x(n: usize) -> Response<Body> {
    let sizes = (0..n)
        .step_by(STREAM_CHUNK)
        .map(move |start| (n - start).min(STREAM_CHUNK));
    let frames = stream::iter(sizes)
        .map(|len| Ok::<_, BoxError>(Frame::data(Bytes::from_static(&STREAM_BYTES[..len]))));
    Response::new(BoxBody::new(StreamBody::new(frames)))
}

/// `/drip/{n}`: one `x` at once, then one every [`DRIP_INTERVAL`], `n` in all, chunked.
fn drip(n: u64) -> Response<Body> {
    let frames = stream::unfold(0u64, move |sent| async move {
        if sent == n {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(DRIP_INTERVAL).await;
        }
        let frame = Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x")));
        Some((frame, sent + 1))
    });
    with_type(
        Response::new(BoxBody::new(StreamBody::new(frames))),
        "text/plain",
    )
}

fn html_page(raw_title: &str) -> Vec<u8> {
    // The decoded title goes in unescaped on purpose, so tests can feed entities and markup.
    let mut page = b"<!doctype html><html><head><title>".to_vec();
    page.extend_from_slice(&percent_decode(raw_title));
    page.extend_from_slice(b"</title></head><body>hi</body></html>");
    page
}

fn gzipped(data: &[u8], content_type: &'static str) -> Response<Body> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    let compressed = encoder.finish().expect("gzip into memory");
    let mut resp = with_type(full(StatusCode::OK, compressed), content_type);
    resp.headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    resp
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = text(StatusCode::FOUND, "redirect");
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).expect("redirect target is a valid header value"),
    );
    resp
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found")
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(full(status, body), "text/plain")
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp
}

fn with_type(mut resp: Response<Body>, content_type: &'static str) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The value of `key` in a query string, `+` and `%XX` decoded; first occurrence wins.
fn query_param(query: &str, key: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept as is. Returns bytes, since
/// the result need not be UTF-8.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
