//! Retry: what to do after one request, as pure decisions (no client, no clock), so that the
//! policy can be read and tested in one place. `fetch` sends; this module decides.
//!
//! - A response with a status of `--retry-status`, while retries are left: with
//!   `Retry-After`, its host cools down for that long (longer than `--max-retry-after`: not
//!   retried, the row says why); without, a full-jitter exponential backoff.
//! - A connect error or a timeout, while retries are left: a backoff.
//! - A redirect: the next hop, within `--max-redirects`, over http(s) only.

use std::time::Duration;

use reqwest::Method;
use url::Url;

use crate::config::Config;
use crate::error::{ErrorKind, Failure};
use crate::job::Hop;

/// The cap on the exponential backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one request produced.
pub enum Step {
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
    /// The request could not leave for want of open files (`EMFILE`, `ENFILE`): a local
    /// condition, which `fetch` waits out before deciding anything; the message says so.
    OutOfFiles(String),
}

impl Step {
    /// The status of the response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Step::Redirect(_, status) | Step::Retryable { status, .. } => Some(*status),
            Step::Done(head, _) => Some(head.status),
            Step::Failed(_) | Step::OutOfFiles(_) => None,
        }
    }
}

/// The parts of a response that go into a row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Head {
    pub status: u16,
    pub final_url: String,
    pub content_type: Option<String>,
    pub bytes: u64,
    pub title: Option<String>,
    pub extracted: Vec<String>,
}

/// What to do next with the job.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Follow a redirect.
    Redirect(Url, u16),
    /// The job is done with this response (a failure of its body, or a note, if any).
    Finish {
        head: Head,
        failure: Option<Failure>,
        note: Option<String>,
    },
    /// The job failed for good.
    Fail(Failure),
    /// A new attempt after a backoff; the failure stays in the row if none follows.
    Retry(Failure),
    /// A new attempt once the host has cooled down for this long.
    CoolDown(Duration),
    /// A new attempt after a backoff (a retryable status without Retry-After).
    Backoff,
}

/// Decides what follows `step`. `may_retry`: whether this attempt may be followed by another.
pub fn decide(config: &Config, step: Step, may_retry: bool) -> Decision {
    match step {
        Step::Redirect(url, status) => Decision::Redirect(url, status),
        Step::Done(head, failure) => Decision::Finish {
            head,
            failure,
            note: None,
        },
        Step::Failed(f) => {
            let retryable = matches!(f.kind, ErrorKind::Connect | ErrorKind::Timeout);
            if retryable && may_retry {
                Decision::Retry(f)
            } else {
                Decision::Fail(f)
            }
        }
        // Never a row's error where `fetch` runs it; anyone else gets what it would have been.
        Step::OutOfFiles(why) => Decision::Fail(Failure::new(ErrorKind::Connect, why)),
        Step::Retryable {
            status,
            retry_after,
            head,
        } => match retry_after {
            Some(ra) if ra > config.max_retry_after => Decision::Finish {
                head,
                failure: None,
                note: Some(format!(
                    "status {status} with Retry-After {}; longer than --max-retry-after {}, not retried",
                    humantime::format_duration(ra),
                    humantime::format_duration(config.max_retry_after)
                )),
            },
            Some(ra) => Decision::CoolDown(ra),
            None => Decision::Backoff,
        },
    }
}

/// The hop after a redirect from `hop` to `next` with `status`, or why it is not followed.
pub fn follow(hop: &Hop, next: Url, status: u16, max_redirects: usize) -> Result<Hop, Failure> {
    let scheme = next.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(Failure::new(
            ErrorKind::UnsupportedScheme,
            format!("redirect to unsupported scheme '{scheme}:'; only http and https are followed"),
        ));
    }
    if hop.redirects == max_redirects {
        return Err(Failure::new(
            ErrorKind::RedirectLimit,
            format!("more than {max_redirects} redirects (last to {next})"),
        ));
    }
    let mut method = hop.method.clone();
    let mut with_body = hop.with_body;
    // RFC 9110 §15.4.4: 303 means GET. 301 and 302 turn a POST into a GET, as browsers,
    // curl and reqwest do.
    if (status == 303 && method != Method::HEAD)
        || (matches!(status, 301 | 302) && method == Method::POST)
    {
        method = Method::GET;
        with_body = false;
    }
    Ok(Hop {
        url: next,
        method,
        with_body,
        redirects: hop.redirects + 1,
    })
}

/// The exponential backoff's ceiling before retry `n` (1-based): `min(cap, base·2^(n−1))`.
pub fn backoff_ceiling(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
        .min(MAX_BACKOFF)
}

/// The wait before retry `n`: uniform in `[0, ceiling]` with full jitter (`draw` in
/// `[0, 1)`), else the ceiling.
pub fn backoff(base: Duration, n: u32, jitter: bool, draw: f64) -> Duration {
    let ceiling = backoff_ceiling(base, n);
    if jitter {
        ceiling.mul_f64(draw)
    } else {
        ceiling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16) -> Head {
        Head {
            status,
            ..Head::default()
        }
    }

    fn hop(method: Method, redirects: usize) -> Hop {
        Hop {
            url: Url::parse("http://a.test/").unwrap(),
            method,
            with_body: true,
            redirects,
        }
    }

    #[test]
    fn connect_errors_and_timeouts_are_retried_while_attempts_are_left() {
        let config = Config::default();
        let connect = || Failure::new(ErrorKind::Connect, "refused");
        assert_eq!(
            decide(&config, Step::Failed(connect()), true),
            Decision::Retry(connect())
        );
        assert_eq!(
            decide(&config, Step::Failed(connect()), false),
            Decision::Fail(connect())
        );
        let dns = Failure::new(ErrorKind::Dns, "no such host");
        assert_eq!(
            decide(&config, Step::Failed(dns.clone()), true),
            Decision::Fail(dns)
        );
    }

    #[test]
    fn retry_after_cools_the_host_unless_too_long() {
        let config = Config {
            max_retry_after: Duration::from_secs(10),
            ..Config::default()
        };
        let retryable = |ra| Step::Retryable {
            status: 429,
            retry_after: ra,
            head: head(429),
        };
        assert_eq!(
            decide(&config, retryable(Some(Duration::from_secs(3))), true),
            Decision::CoolDown(Duration::from_secs(3))
        );
        assert_eq!(decide(&config, retryable(None), true), Decision::Backoff);
        let Decision::Finish {
            head,
            failure,
            note,
        } = decide(&config, retryable(Some(Duration::from_secs(60))), true)
        else {
            panic!("a Retry-After above the cap is not waited for");
        };
        assert_eq!(head.status, 429);
        assert!(failure.is_none());
        assert!(note.unwrap().contains("--max-retry-after"));
    }

    #[test]
    fn redirects_change_method_and_stop_at_the_limit() {
        let next = Url::parse("http://b.test/x").unwrap();
        let h = follow(&hop(Method::POST, 0), next.clone(), 303, 10).unwrap();
        assert_eq!(
            (h.method, h.with_body, h.redirects),
            (Method::GET, false, 1)
        );
        let h = follow(&hop(Method::PUT, 0), next.clone(), 307, 10).unwrap();
        assert_eq!((h.method, h.with_body), (Method::PUT, true));
        let h = follow(&hop(Method::POST, 0), next.clone(), 302, 10).unwrap();
        assert_eq!(h.method, Method::GET);
        let e = follow(&hop(Method::GET, 3), next, 302, 3).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RedirectLimit);
        let ftp = Url::parse("ftp://b.test/x").unwrap();
        let e = follow(&hop(Method::GET, 0), ftp, 302, 3).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedScheme);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let base = Duration::from_millis(100);
        for n in 1..=12u32 {
            let cap = Duration::from_millis(100 * (1u64 << (n - 1))).min(MAX_BACKOFF);
            assert_eq!(backoff_ceiling(base, n), cap);
            assert_eq!(backoff(base, n, true, 0.25), cap.mul_f64(0.25));
            assert_eq!(backoff(base, n, false, 0.25), cap, "no jitter: the ceiling");
        }
    }
}
