//! Fetch: one job, start to finish. One shared `reqwest::Client` (connection pool, rustls,
//! gzip/brotli/zstd/deflate), a per-attempt timeout that covers the body, a streamed body
//! with a byte cap, redirects up to a limit, retries with exponential backoff, full jitter
//! and `Retry-After`. Errors are classified here, once, into `ErrorKind`s.
//!
//! Nothing a server sends can make this module panic: every failure becomes an `Outcome`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, RETRY_AFTER, USER_AGENT};
use reqwest::{redirect, Client, Response, StatusCode};
use tokio::time::Instant;
use url::Url;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Failure};
use crate::extract;
use crate::input::Job;
use crate::limits::Limits;
use crate::pool::Shutdown;

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

/// Why the redirect policy stopped following.
#[derive(Debug)]
enum RedirectStop {
    TooMany(usize),
    Scheme(String),
}

impl fmt::Display for RedirectStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectStop::TooMany(n) => write!(f, "more than {n} redirects"),
            RedirectStop::Scheme(s) => {
                write!(
                    f,
                    "redirect to unsupported scheme '{s}:'; only http and https are followed"
                )
            }
        }
    }
}

impl StdError for RedirectStop {}

/// Builds the one client of a run.
pub fn build_client(config: &Config) -> Result<Client, Error> {
    let max = config.max_redirects;
    // --max-redirects 0 reports the 3xx itself, as curl does without -L.
    let policy = if max == 0 {
        redirect::Policy::none()
    } else {
        redirect::Policy::custom(move |attempt| {
            let scheme = attempt.url().scheme();
            if scheme != "http" && scheme != "https" {
                let scheme = scheme.to_string();
                attempt.error(RedirectStop::Scheme(scheme))
            } else if attempt.previous().len() > max {
                attempt.error(RedirectStop::TooMany(max))
            } else {
                attempt.follow()
            }
        })
    };
    let mut builder = Client::builder()
        .use_rustls_tls()
        .default_headers(config.headers.clone())
        .connect_timeout(config.connect_timeout)
        .redirect(policy)
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
}

/// What one attempt produced.
enum Attempt {
    /// A response whose status asks for a retry; the body was not read.
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
}

impl Fetcher {
    pub fn new(config: Arc<Config>, limits: Arc<Limits>) -> Result<Fetcher, Error> {
        let client = build_client(&config)?;
        Ok(Fetcher {
            client,
            config,
            limits,
        })
    }

    /// Does one job. Returns `None` when the run stopped before the job finished (it then
    /// writes no row, so `--resume` does it again). `buf` is the worker's reusable body
    /// buffer. The returned outcome's `url` is empty; the caller moves the job's URL in.
    pub async fn fetch(
        &self,
        job: &Job,
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
    ) -> Option<Outcome> {
        let url = match &job.target {
            Ok(url) => url,
            Err(f) => return Some(Outcome::failed(job.index, String::new(), f.clone())),
        };
        let host = self.limits.host(url.host_str().unwrap_or(""));
        let mut outcome = Outcome {
            index: job.index,
            ..Outcome::default()
        };
        let mut first_sent: Option<Instant> = None;
        loop {
            let pass = tokio::select! {
                biased;
                _ = shutdown.stop.cancelled() => return None,
                pass = self.limits.acquire(&host) => pass,
            };
            let sent = Instant::now();
            if first_sent.is_none() {
                first_sent = Some(sent);
                outcome.started_at = Some(SystemTime::now());
            }
            outcome.attempts += 1;
            let may_retry = outcome.attempts <= self.config.retries;
            let attempt = tokio::select! {
                biased;
                _ = shutdown.abort.cancelled() => return None,
                a = tokio::time::timeout_at(sent + self.config.timeout, self.attempt(url, buf, may_retry)) => a,
            };
            drop(pass);
            let attempt = attempt.unwrap_or_else(|_| {
                Attempt::Failed(Failure::new(
                    ErrorKind::Timeout,
                    format!(
                        "no complete response within {}",
                        humantime::format_duration(self.config.timeout)
                    ),
                ))
            });
            let wait = match attempt {
                Attempt::Done(head, body_error) => {
                    outcome.set_head(head);
                    if let Some(f) = body_error {
                        outcome.error_kind = Some(f.kind);
                        outcome.error = Some(f.message);
                    }
                    break;
                }
                Attempt::Failed(f) => {
                    let retryable = matches!(f.kind, ErrorKind::Connect | ErrorKind::Timeout);
                    outcome.error_kind = Some(f.kind);
                    outcome.error = Some(f.message);
                    if !(retryable && may_retry) {
                        break;
                    }
                    self.backoff(outcome.attempts)
                }
                Attempt::Retryable {
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
                        self.limits.cool_down(&host, Instant::now() + ra);
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

    async fn attempt(&self, url: &Url, buf: &mut Vec<u8>, may_retry: bool) -> Attempt {
        let mut request = self.client.request(self.config.method.clone(), url.clone());
        if let Some(body) = &self.config.body {
            request = request.body(body.clone());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(classify(e)),
        };
        let status = response.status();
        if let Some(f) = self.unfollowed_redirect(&response) {
            return Attempt::Failed(f);
        }
        let mut head = Head {
            status: status.as_u16(),
            final_url: response.url().as_str().to_string(),
            content_type: header_text(response.headers(), CONTENT_TYPE),
            bytes: 0,
            title: None,
        };
        if may_retry && self.config.retry_status.contains(&head.status) {
            let retry_after = retry_after(status, response.headers(), SystemTime::now());
            return Attempt::Retryable {
                status: head.status,
                retry_after,
                head,
            };
        }
        let keep = head.content_type.as_deref().is_some_and(extract::is_html);
        let body_error = self.read_body(response, buf, keep, &mut head.bytes).await;
        if keep {
            head.title = extract::title(buf);
        }
        Attempt::Done(head, body_error)
    }

    /// reqwest hands back, unfollowed, a redirect whose target is not an HTTP URI (such as
    /// `file:///etc/passwd`); the policy never sees it. It is the same failure as a redirect
    /// the policy refuses for its scheme.
    fn unfollowed_redirect(&self, response: &Response) -> Option<Failure> {
        if self.config.max_redirects == 0 || !response.status().is_redirection() {
            return None;
        }
        let location = response.headers().get(LOCATION)?.to_str().ok()?;
        let target = response.url().join(location).ok()?;
        let scheme = target.scheme();
        (scheme != "http" && scheme != "https").then(|| {
            Failure::new(
                ErrorKind::UnsupportedScheme,
                RedirectStop::Scheme(scheme.to_string()).to_string(),
            )
        })
    }

    /// Streams the body, counting decompressed bytes and stopping at the cap. Keeps the body
    /// in `buf` when `keep` (HTML, for the title).
    async fn read_body(
        &self,
        mut response: Response,
        buf: &mut Vec<u8>,
        keep: bool,
        bytes: &mut u64,
    ) -> Option<Failure> {
        buf.clear();
        let cap = self.config.max_body.unwrap_or(u64::MAX);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let len = chunk.len() as u64;
                    if *bytes + len > cap {
                        let room = (cap - *bytes) as usize;
                        if keep {
                            buf.extend_from_slice(&chunk[..room]);
                        }
                        *bytes = cap;
                        return Some(Failure::new(
                            ErrorKind::BodyTooLarge,
                            format!("body larger than --max-body {cap} bytes; read up to the cap"),
                        ));
                    }
                    *bytes += len;
                    if keep {
                        buf.extend_from_slice(&chunk);
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(classify(e)),
            }
        }
    }
}

impl Outcome {
    fn set_head(&mut self, head: Head) {
        self.status = Some(head.status);
        self.final_url = Some(head.final_url);
        self.content_type = head.content_type;
        self.bytes = head.bytes;
        self.title = head.title;
    }
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
    if err.is_redirect() {
        return match source_of::<RedirectStop>(err) {
            Some(RedirectStop::Scheme(_)) => ErrorKind::UnsupportedScheme,
            _ => ErrorKind::RedirectLimit,
        };
    }
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

fn source_of<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
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
