//! Job, Task and Outcome: the unit of work as it travels through a run. A leaf module.
//!
//! ```text
//!  input ──Job──▶ schedule (Task: a job and how far it got) ──▶ fetch ──Outcome──▶ sink
//! ```
//!
//! A `Job` is one input line. A `Task` is a job on its way: the attempts made, the redirect
//! hop it is at, when it was first sent. It goes back to the scheduler whenever it must wait
//! (a backoff, a host's pace or cool-down, a redirect to another host) and is finished into
//! the job's `Outcome`, its report row.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use tokio::time::Instant;
use url::Url;

use crate::error::{ErrorKind, Failure};

/// One unit of work: one input line.
#[derive(Debug, Clone)]
pub struct Job {
    /// 1-based position in the input (the line number for text input).
    pub index: u64,
    /// The line as given, trimmed.
    pub url: String,
    /// The URL to fetch, or why the line is not one.
    pub target: Result<Url, Failure>,
    /// The other cells of a CSV input row (empty for text input).
    pub passthrough: Vec<String>,
}

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

    /// How the row ended.
    pub fn ending(&self) -> Ending {
        Ending::of(self.error_kind.is_some(), self.status)
    }
}

/// How a row ended. The one definition of "failed", shared by the run's counters and
/// `--retry-failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A response with a 1xx, 2xx or 3xx status.
    Ok,
    /// A response with a 4xx or 5xx status (the status).
    HttpError(u16),
    /// No usable response: an error kind, or no status at all.
    Failed,
}

impl Ending {
    /// From a row's error kind (whether it has one) and status.
    pub fn of(has_error_kind: bool, status: Option<u16>) -> Ending {
        match (has_error_kind, status) {
            (true, _) | (false, None) => Ending::Failed,
            (false, Some(s)) if s >= 400 => Ending::HttpError(s),
            (false, Some(_)) => Ending::Ok,
        }
    }

    /// From a report's `error_kind` and `status` cells.
    pub fn of_cells(error_kind: &str, status: &str) -> Ending {
        Ending::of(!error_kind.is_empty(), status.parse().ok())
    }

    /// Whether `--retry-failed` fetches the row again: it failed, or the server answered
    /// 429 or 5xx.
    pub fn retry_due(self) -> bool {
        matches!(self, Ending::Failed | Ending::HttpError(429 | 500..=599))
    }
}

/// A job on its way: what was done so far, and where its next request goes.
#[derive(Debug)]
pub struct Task {
    /// The job, kept whole for its row.
    pub job: Job,
    /// The row as far as it is known. Its `url` and `passthrough` are moved in from the job
    /// by `finish`.
    pub outcome: Outcome,
    /// When the first request left.
    pub first_sent: Option<Instant>,
    /// The request the current attempt is at; `None` before an attempt (the next request
    /// starts one, at the job's URL).
    pub hop: Option<Hop>,
    /// Refusals explained by the server's announced limit, retried without spending an
    /// attempt (up to a bound).
    pub refused: u8,
}

/// Where an attempt is in its chain of redirects.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The URL this request goes to.
    pub url: Url,
    pub method: Method,
    /// Whether the request body (`-d`) is still sent (a 303 drops it).
    pub with_body: bool,
    /// Redirects followed so far in this attempt.
    pub redirects: usize,
}

impl Task {
    /// A job not started yet.
    pub fn new(job: Job) -> Task {
        let outcome = Outcome {
            index: job.index,
            ..Outcome::default()
        };
        Task {
            job,
            outcome,
            first_sent: None,
            hop: None,
            refused: 0,
        }
    }

    /// The URL the next request goes to, or why the job has none.
    pub fn next_url(&self) -> Result<&Url, &Failure> {
        match &self.hop {
            Some(hop) => Ok(&hop.url),
            None => self.job.target.as_ref(),
        }
    }

    /// The host the next request goes to; `None` for a line that is not a URL.
    pub fn host(&self) -> Option<&str> {
        self.next_url().ok().and_then(Url::host_str)
    }

    /// Whether nothing was done for this job yet.
    pub fn is_fresh(&self) -> bool {
        self.outcome.requests == 0 && self.hop.is_none() && self.outcome.attempts == 0
    }

    /// Ends the job with a failure that replaces any earlier result.
    pub fn fail(&mut self, failure: Failure) {
        self.outcome.error_kind = Some(failure.kind);
        self.outcome.error = Some(failure.message);
    }

    /// The job's row.
    pub fn finish(self) -> Outcome {
        let mut outcome = self.outcome;
        outcome.elapsed = self.first_sent.map(|t| t.elapsed()).unwrap_or_default();
        outcome.url = self.job.url;
        outcome.passthrough = self.job.passthrough;
        outcome
    }
}

/// What a worker does with a task after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The task is finished: its row is written.
    Done,
    /// Back to the front of its host's queue (a redirect, a cool-down, robots.txt first).
    Requeue,
    /// Back to its host's queue at this instant (a retry's backoff).
    RetryAt(Instant),
    /// The run stopped before the task finished: no row.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_due_for_a_retry() {
        let due = |kind, status| Ending::of_cells(kind, status).retry_due();
        assert!(due("timeout", ""));
        assert!(due("body_too_large", "200"));
        assert!(due("", "429"));
        assert!(due("", "503"));
        assert!(!due("", "200"));
        assert!(!due("", "404"));
        assert!(!due("", "301"));
    }

    #[test]
    fn an_outcome_and_its_cells_end_the_same_way() {
        for (kind, status, ending) in [
            (None, Some(200), Ending::Ok),
            (None, Some(301), Ending::Ok),
            (None, Some(404), Ending::HttpError(404)),
            (None, Some(503), Ending::HttpError(503)),
            (Some(ErrorKind::Dns), None, Ending::Failed),
            (Some(ErrorKind::BodyTooLarge), Some(200), Ending::Failed),
            (None, None, Ending::Failed),
        ] {
            let o = Outcome {
                status,
                error_kind: kind,
                ..Outcome::default()
            };
            assert_eq!(o.ending(), ending, "{kind:?} {status:?}");
            let cells = (
                kind.map_or("", |k| k.as_str()),
                status.map(|s| s.to_string()).unwrap_or_default(),
            );
            assert_eq!(Ending::of_cells(cells.0, &cells.1), ending, "{cells:?}");
        }
    }
}
