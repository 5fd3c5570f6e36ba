//! Fetch: one job, start to finish. One shared `reqwest::Client` (connection pool, rustls,
//! gzip/brotli/zstd/deflate), a per-attempt timeout that covers the body, a streamed body
//! with a byte cap, redirects up to a limit, retries with exponential backoff, full jitter
//! and `Retry-After`. Errors are classified here, once, into `ErrorKind`s.
//!
//! Nothing a server sends can make this module panic: every failure becomes an `Outcome`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION,
    PROXY_AUTHORIZATION, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE,
};
use reqwest::{redirect, Client, Method, Response, StatusCode};
use tokio::time::Instant;
use url::Url;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Failure};
use crate::extract::{self, Extractor};
use crate::input::Job;
use crate::limits::Limits;
use crate::pool::Shutdown;
use crate::robots::{self, Robots, Rules};

/// The cap on the exponential backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The result of one job: one report row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// 1-based position of the job in the input.
    pub index: u64,
    /// The URL as given, trimmed.
    pub url: String,
    /// The URL after redirects; `None` when no response came.
    pub final_url: Option<String>,
    /// The final HTTP status; `None` when no response came.
    pub status: Option<u16>,
    /// Set when the job failed; `None` on a response.
    pub error_kind: Option<ErrorKind>,
    /// Human-readable detail, one line. Also set on some responses (a Retry-After that was
    /// too long to wait for).
    pub error: Option<String>,
    /// Attempts made (1 = no retry; 0 = the line was not a fetchable URL).
    pub attempts: u32,
    /// HTTP requests sent: attempts plus redirect hops (not a report column).
    pub requests: u32,
    /// From the first attempt to the last body byte, retries and waits included.
    pub elapsed: Duration,
    /// Body bytes received, after decompression (at most the cap).
    pub bytes: u64,
    /// The Content-Type header as sent.
    pub content_type: Option<String>,
    /// The HTML `<title>`, whitespace-collapsed.
    pub title: Option<String>,
    /// When the first attempt was sent.
    pub started_at: Option<SystemTime>,
    /// One value per `--extract` rule, in order (empty when nothing matched).
    pub extracted: Vec<String>,
    /// The other cells of a CSV input row, passed through.
    pub passthrough: Vec<String>,
    /// SHA-256 (hex) of the body saved with `--save-bodies`.
    pub body_sha256: Option<String>,
}

impl Outcome {
    /// The row of a job that failed before any request.
    pub fn failed(index: u64, url: String, failure: Failure) -> Outcome {
        Outcome {
            index,
            url,
            error_kind: Some(failure.kind),
            error: Some(failure.message),
            ..Outcome::default()
        }
    }
}

/// Request headers that are not sent to another host after a redirect (as browsers and
/// reqwest do): credentials for one host must not leak to the next.
const SENSITIVE: [HeaderName; 4] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE];

/// The most of a body read (and dropped) to keep a connection reusable when its response is
/// a redirect or a retryable status.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How much of an HTML body is kept for the title: titles live in `<head>`.
pub const TITLE_WINDOW: usize = 1 << 20;

/// Builds the one client of a run. Redirects are not followed by reqwest: every hop goes
/// through the limits like any request (see `Fetcher::fetch`).
pub fn build_client(config: &Config) -> Result<Client, Error> {
    let mut headers = config.headers.clone();
    for name in &SENSITIVE {
        headers.remove(name);
    }
    let mut builder = Client::builder()
        .use_rustls_tls()
        .default_headers(headers)
        .connect_timeout(config.connect_timeout)
        .redirect(redirect::Policy::none())
        .tcp_nodelay(true)
        .gzip(true)
        .brotli(true)
        .zstd(true)
        .deflate(true);
    // An explicit -H 'User-Agent: …' wins over -A and its default.
    if !config.headers.contains_key(USER_AGENT) {
        builder = builder.user_agent(config.user_agent.clone());
    }
    if config.no_proxy {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| Error::Client(error_text(&e)))
}

/// Fetches jobs. Cheap to share: the client and the limits are `Arc`s inside.
pub struct Fetcher {
    client: Client,
    config: Arc<Config>,
    limits: Arc<Limits>,
    /// The `-H` headers of `SENSITIVE`, sent only to the job's own host.
    sensitive: Vec<(HeaderName, HeaderValue)>,
    /// Whether whole bodies are kept (extraction rules or --save-bodies need them).
    keep_body: bool,
    /// Whether some rule reads response headers.
    header_rules: bool,
    /// robots.txt rules per origin, with `--respect-robots`.
    robots: Option<Robots>,
}

/// What one request produced.
enum Step {
    /// A redirect to follow, with its status.
    Redirect(Url, u16),
    /// A response whose status asks for a retry; the body was not kept.
    Retryable {
        status: u16,
        retry_after: Option<Duration>,
        head: Head,
    },
    /// A final response, body read (perhaps with a body error).
    Done(Head, Option<Failure>),
    Failed(Failure),
}

/// The parts of a response that go into a row.
struct Head {
    status: u16,
    final_url: String,
    content_type: Option<String>,
    bytes: u64,
    title: Option<String>,
    extracted: Vec<String>,
}

impl Fetcher {
    pub fn new(config: Arc<Config>, limits: Arc<Limits>) -> Result<Fetcher, Error> {
        let client = build_client(&config)?;
        let sensitive = config
            .headers
            .iter()
            .filter(|(name, _)| SENSITIVE.contains(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let keep_body =
            config.save_bodies.is_some() || config.extract.iter().any(Extractor::needs_body);
        let header_rules = config.extract.iter().any(|x| !x.needs_body());
        let robots = config.respect_robots.then(Robots::default);
        Ok(Fetcher {
            client,
            config,
            limits,
            sensitive,
            keep_body,
            header_rules,
            robots,
        })
    }

    /// Does one job. Returns `None` when the run stopped before the job finished (it then
    /// writes no row, so `--resume` does it again). `buf` is the worker's reusable body
    /// buffer. The returned outcome's `url` is empty; the caller moves the job's URL in.
    ///
    /// Every request — first attempt, retry or redirect hop — takes its permits and tokens
    /// from `Limits` for the host it goes to, so the rate promise counts them all.
    pub async fn fetch(
        &self,
        job: &Job,
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
    ) -> Option<Outcome> {
        let start = match &job.target {
            Ok(url) => url,
            Err(f) => return Some(Outcome::failed(job.index, String::new(), f.clone())),
        };
        // A URL that robots.txt disallows is not requested at all.
        if let Err(f) = self.robots_allow(start, shutdown).await? {
            return Some(Outcome::failed(job.index, String::new(), f));
        }
        let mut outcome = Outcome {
            index: job.index,
            ..Outcome::default()
        };
        let mut first_sent: Option<Instant> = None;
        let max_hops = self.config.max_redirects;
        loop {
            outcome.attempts += 1;
            let may_retry = outcome.attempts <= self.config.retries;
            let mut url = Cow::Borrowed(start);
            let mut method = self.config.method.clone();
            let mut with_body = true;
            let mut hops = 0;
            let step = loop {
                let host = url.host_str().unwrap_or("");
                let pass = tokio::select! {
                    biased;
                    _ = shutdown.stop.cancelled() => return None,
                    pass = self.limits.acquire(host) => pass,
                };
                let sent = Instant::now();
                if first_sent.is_none() {
                    first_sent = Some(sent);
                    outcome.started_at = Some(SystemTime::now());
                }
                outcome.requests += 1;
                let own_host = host == start.host_str().unwrap_or("");
                let request = self.request(&url, &method, with_body, own_host, buf, may_retry);
                let deadline = sent
                    .checked_add(self.config.timeout)
                    .unwrap_or_else(far_future);
                let step = tokio::select! {
                    biased;
                    _ = shutdown.abort.cancelled() => return None,
                    step = tokio::time::timeout_at(deadline, request) => step,
                };
                drop(pass);
                let step = step.unwrap_or_else(|_| {
                    Step::Failed(Failure::new(
                        ErrorKind::Timeout,
                        format!(
                            "no complete response within {}",
                            humantime::format_duration(self.config.timeout)
                        ),
                    ))
                });
                let Step::Redirect(next, status) = step else {
                    break step;
                };
                let scheme = next.scheme();
                if scheme != "http" && scheme != "https" {
                    break Step::Failed(Failure::new(
                        ErrorKind::UnsupportedScheme,
                        format!("redirect to unsupported scheme '{scheme}:'; only http and https are followed"),
                    ));
                }
                if hops == max_hops {
                    break Step::Failed(Failure::new(
                        ErrorKind::RedirectLimit,
                        format!("more than {max_hops} redirects (last to {next})"),
                    ));
                }
                if let Err(f) = self.robots_allow(&next, shutdown).await? {
                    break Step::Failed(f);
                }
                hops += 1;
                // RFC 9110 §15.4.4: 303 means GET. 301 and 302 turn a POST into a GET, as
                // browsers, curl and reqwest do.
                if (status == 303 && method != Method::HEAD)
                    || (matches!(status, 301 | 302) && method == Method::POST)
                {
                    method = Method::GET;
                    with_body = false;
                }
                url = Cow::Owned(next);
            };
            let wait = match step {
                Step::Redirect(..) => unreachable!("redirects are followed above"),
                Step::Done(head, body_error) => {
                    outcome.set_head(head);
                    if let Some(f) = body_error {
                        outcome.error_kind = Some(f.kind);
                        outcome.error = Some(f.message);
                    }
                    if let Some(dir) = &self.config.save_bodies {
                        let ext = body_extension(outcome.content_type.as_deref());
                        let path = dir.join(format!("{}.{ext}", job.index));
                        // Hashing and writing on a blocking thread, as for extraction.
                        let body = std::mem::take(buf);
                        let (sha, written, body) = tokio::task::spawn_blocking(move || {
                            let sha = sha256_hex(&body);
                            let written = std::fs::write(&path, &body).map_err(|e| {
                                format!("cannot save the body to {}: {e}", path.display())
                            });
                            (sha, written, body)
                        })
                        .await
                        .expect("saving a body does not panic");
                        *buf = body;
                        outcome.body_sha256 = Some(sha);
                        if let Err(why) = written {
                            if outcome.error_kind.is_none() {
                                outcome.error_kind = Some(ErrorKind::Other);
                                outcome.error = Some(why);
                            }
                        }
                    }
                    break;
                }
                Step::Failed(f) => {
                    let retryable = matches!(f.kind, ErrorKind::Connect | ErrorKind::Timeout);
                    outcome.error_kind = Some(f.kind);
                    outcome.error = Some(f.message);
                    if !(retryable && may_retry) {
                        break;
                    }
                    self.backoff(outcome.attempts)
                }
                Step::Retryable {
                    status,
                    retry_after,
                    head,
                } => match retry_after {
                    Some(ra) if ra > self.config.max_retry_after => {
                        outcome.set_head(head);
                        outcome.error = Some(format!(
                            "status {status} with Retry-After {}; longer than --max-retry-after {}, not retried",
                            humantime::format_duration(ra),
                            humantime::format_duration(self.config.max_retry_after)
                        ));
                        break;
                    }
                    Some(ra) => {
                        // The whole host cools down, not only this job.
                        let host = url.host_str().unwrap_or("");
                        self.limits.cool_down(host, ra);
                        ra
                    }
                    None => self.backoff(outcome.attempts),
                },
            };
            tokio::select! {
                biased;
                _ = shutdown.stop.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
            // A later attempt's result replaces this one's.
            outcome.error_kind = None;
            outcome.error = None;
        }
        outcome.elapsed = first_sent.map(|t| t.elapsed()).unwrap_or_default();
        Some(outcome)
    }

    /// With `--respect-robots`, whether robots.txt lets `url` be fetched (fetching it once
    /// per origin). `None` when the run stopped meanwhile.
    async fn robots_allow(&self, url: &Url, shutdown: &Shutdown) -> Option<Result<(), Failure>> {
        let Some(robots) = &self.robots else {
            return Some(Ok(()));
        };
        let cell = robots.cell(url);
        let rules = tokio::select! {
            biased;
            _ = shutdown.stop.cancelled() => return None,
            rules = cell.get_or_init(|| self.fetch_robots(url)) => rules.clone(),
        };
        Some(
            rules
                .check(url)
                .map_err(|why| Failure::new(ErrorKind::RobotsDisallowed, why)),
        )
    }

    /// Fetches the robots.txt of `page`'s origin through the limits, following up to five
    /// redirects (RFC 9309 §2.3.1.2), and applies its Crawl-delay to the host.
    async fn fetch_robots(&self, page: &Url) -> Arc<Rules> {
        let mut target = page
            .join("/robots.txt")
            .expect("an http(s) URL joins a path");
        let mut answer: Result<(u16, Vec<u8>), String> = Ok((404, Vec::new()));
        for _ in 0..=5 {
            let host = target.host_str().unwrap_or("").to_string();
            let pass = self.limits.acquire(&host).await;
            let deadline = Instant::now()
                .checked_add(self.config.timeout)
                .unwrap_or_else(far_future);
            let got = tokio::time::timeout_at(deadline, self.get_robots(&target)).await;
            drop(pass);
            match got {
                Err(_) => answer = Err("timed out".to_string()),
                Ok(Err(why)) => answer = Err(why),
                Ok(Ok(Ok(reply))) => answer = Ok(reply),
                Ok(Ok(Err(next))) if matches!(next.scheme(), "http" | "https") => {
                    target = next;
                    continue;
                }
                // A redirect elsewhere: robots.txt is unavailable, which allows everything
                // (RFC 9309 §2.3.1.3).
                Ok(Ok(Err(_))) => answer = Ok((404, Vec::new())),
            }
            break;
        }
        // The User-Agent actually sent: an explicit -H 'User-Agent: …' wins over -A.
        let sent = self
            .config
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(&self.config.user_agent);
        let agent = robots::agent_token(sent);
        let reply = answer.as_ref().map(|(s, b)| (*s, b.as_slice()));
        let rules = Rules::from_response(agent, reply.map_err(Clone::clone));
        if let Some(delay) = rules.delay() {
            self.limits.slow_host(page.host_str().unwrap_or(""), delay);
        }
        Arc::new(rules)
    }

    /// One robots.txt request: its status and (capped) body, or where it redirects.
    async fn get_robots(&self, url: &Url) -> Result<Result<(u16, Vec<u8>), Url>, String> {
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| classify(e).message)?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            // Without a usable Location, robots.txt is unavailable (allows everything).
            let unavailable = Ok(Ok((404, Vec::new())));
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok());
            return match next {
                Some(next) => Ok(Err(next)),
                None => unavailable,
            };
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(e).message)? {
            body.extend_from_slice(&chunk);
            if body.len() >= robots::MAX_ROBOTS {
                // Cut at the last whole line: half a rule could mean another rule.
                let end = memchr::memrchr(b'\n', &body[..robots::MAX_ROBOTS]).map_or(0, |i| i + 1);
                body.truncate(end);
                break;
            }
        }
        Ok(Ok((status, body)))
    }

    /// Full-jitter exponential backoff before retry `n` (1-based): uniform in
    /// `[0, min(cap, base·2^(n−1))]`.
    fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .config
            .backoff
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(MAX_BACKOFF);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Sends one request and reads its response.
    async fn request(
        &self,
        url: &Url,
        method: &Method,
        with_body: bool,
        own_host: bool,
        buf: &mut Vec<u8>,
        may_retry: bool,
    ) -> Step {
        let mut request = self.client.request(method.clone(), url.clone());
        if with_body {
            if let Some(body) = &self.config.body {
                request = request.body(body.clone());
            }
        }
        if own_host {
            for (name, value) in &self.sensitive {
                request = request.header(name, value);
            }
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Step::Failed(classify(e)),
        };
        let status = response.status();
        // --max-redirects 0 reports the 3xx itself, as curl does without -L; so does a
        // redirect without a usable Location.
        if self.config.max_redirects > 0 && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok());
            if let Some(next) = next {
                drain(response).await;
                return Step::Redirect(next, status.as_u16());
            }
        }
        let mut head = Head {
            status: status.as_u16(),
            final_url: response.url().as_str().to_string(),
            content_type: header_text(response.headers(), CONTENT_TYPE),
            bytes: 0,
            title: None,
            extracted: Vec::new(),
        };
        if may_retry && self.config.retry_status.contains(&head.status) {
            let retry_after = retry_after(status, response.headers(), SystemTime::now());
            drain(response).await;
            return Step::Retryable {
                status: head.status,
                retry_after,
                head,
            };
        }
        let html = head.content_type.as_deref().is_some_and(extract::is_html);
        // The whole body (within the cap) when rules or --save-bodies need it; else the
        // head of an HTML page, for its title; else nothing.
        let window = if self.keep_body {
            usize::try_from(self.config.max_body.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)
        } else if html {
            TITLE_WINDOW
        } else {
            0
        };
        let headers = self.header_rules.then(|| response.headers().clone());
        let body_error = self.read_body(response, buf, window, &mut head.bytes).await;
        if html {
            head.title = extract::title(&buf[..buf.len().min(TITLE_WINDOW)]);
        }
        if !self.config.extract.is_empty() {
            // Parsing a large page takes CPU time: off the runtime's threads, so that no
            // worker that holds a fresh token waits behind it.
            let config = self.config.clone();
            let body = std::mem::take(buf);
            let (extracted, body) = tokio::task::spawn_blocking(move || {
                let headers = headers.unwrap_or_default();
                let values = extract::apply(&config.extract, config.extract_all, &headers, &body);
                (values, body)
            })
            .await
            .expect("extraction does not panic");
            head.extracted = extracted;
            *buf = body;
        }
        Step::Done(head, body_error)
    }

    /// Streams the body, counting decompressed bytes and stopping at the cap. Keeps its
    /// first `window` bytes in `buf`.
    async fn read_body(
        &self,
        mut response: Response,
        buf: &mut Vec<u8>,
        window: usize,
        bytes: &mut u64,
    ) -> Option<Failure> {
        buf.clear();
        let cap = self.config.max_body.unwrap_or(u64::MAX);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() < window {
                        let room = window - buf.len();
                        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    let len = chunk.len() as u64;
                    if *bytes + len > cap {
                        *bytes = cap;
                        return Some(Failure::new(
                            ErrorKind::BodyTooLarge,
                            format!("body larger than --max-body {cap} bytes; read up to the cap"),
                        ));
                    }
                    *bytes += len;
                }
                Ok(None) => return None,
                Err(e) => return Some(classify(e)),
            }
        }
    }
}

/// Reads and drops up to `DRAIN_LIMIT` bytes of a body that will not be used, so that a
/// small one leaves its connection reusable; a larger one is dropped (and its connection
/// closed) instead.
async fn drain(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

/// A deadline that never comes, for timeouts too large for `Instant`.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

impl Outcome {
    fn set_head(&mut self, head: Head) {
        self.status = Some(head.status);
        self.final_url = Some(head.final_url);
        self.content_type = head.content_type;
        self.bytes = head.bytes;
        self.title = head.title;
        self.extracted = head.extracted;
    }
}

/// The file extension for a saved body, from its content type.
pub fn body_extension(content_type: Option<&str>) -> &'static str {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => "html",
        "application/json" | "text/json" => "json",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "text/css" => "css",
        "text/javascript" | "application/javascript" => "js",
        "application/xml" | "text/xml" => "xml",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        m if m.ends_with("+json") => "json",
        m if m.ends_with("+xml") => "xml",
        _ => "bin",
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The delay a `Retry-After` header asks for (RFC 9110 §10.2.3): delay-seconds or an
/// HTTP-date. Only read on 429 and 503 (RFC 6585 §4, RFC 9110 §15.6.4) and on 3xx, where the
/// RFC gives it a meaning; a date in the past means no delay.
pub fn retry_after(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if !(status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE
        || status.is_redirection())
    {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classifies a reqwest error into a row's kind and one-line message.
pub fn classify(err: reqwest::Error) -> Failure {
    let kind = kind_of(&err);
    let err = err.without_url();
    Failure::new(kind, error_text(&err))
}

fn kind_of(err: &reqwest::Error) -> ErrorKind {
    let text = error_text(err).to_ascii_lowercase();
    if err.is_connect() {
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return ErrorKind::Dns;
        }
        if [
            "tls",
            "certificate",
            "handshake",
            "corrupt message",
            "alert",
        ]
        .iter()
        .any(|w| text.contains(w))
        {
            return ErrorKind::Tls;
        }
        return ErrorKind::Connect;
    }
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    if err.is_body() || err.is_decode() {
        return ErrorKind::Body;
    }
    ErrorKind::Other
}

/// The error and its sources on one line, without repeating a source that the outer
/// message already quotes.
pub fn error_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = e.source();
    }
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry).unwrap());
        h
    }

    #[test]
    fn retry_after_delay_seconds() {
        let now = SystemTime::now();
        let got = retry_after(StatusCode::TOO_MANY_REQUESTS, &headers("120"), now);
        assert_eq!(got, Some(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let got = retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers("Sun, 06 Nov 1994 08:50:07 GMT"),
            now,
        );
        assert_eq!(got, Some(Duration::from_secs(30)));
        let past = retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers("Sun, 06 Nov 1994 08:00:00 GMT"),
            now,
        );
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_ignored_where_it_has_no_meaning_or_is_garbage() {
        let now = SystemTime::now();
        assert_eq!(retry_after(StatusCode::OK, &headers("5"), now), None);
        assert_eq!(
            retry_after(StatusCode::BAD_GATEWAY, &headers("5"), now),
            None
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers("soon"), now),
            None
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), now),
            None
        );
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let config = Config {
            backoff: Duration::from_millis(100),
            ..Config::default()
        };
        let limits = Arc::new(Limits::new(&config));
        let f = Fetcher::new(Arc::new(config), limits).unwrap();
        for n in 1..=12u32 {
            let cap = Duration::from_millis(100 * (1u64 << (n - 1))).min(MAX_BACKOFF);
            let draws: Vec<Duration> = (0..200).map(|_| f.backoff(n)).collect();
            assert!(draws.iter().all(|d| *d <= cap), "retry {n} above {cap:?}");
            // Full jitter: spread over the range, not clustered at the cap.
            assert!(
                draws.iter().any(|d| *d < cap / 2),
                "retry {n} never below half the cap"
            );
        }
    }

    #[test]
    fn error_text_is_one_line_without_repeats() {
        let inner = std::io::Error::other("line one\nline two");
        let text = error_text(&inner);
        assert_eq!(text, "line one line two");
    }
}
