//! Error types: the per-URL `ErrorKind` written in the `error_kind` column, run-level `Error`s, usage
//! errors, and the one mapping from errors to exit codes.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong with one job. The strings are the `error_kind` column values and are a
/// contract: scripts filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input line is not an absolute URL.
    InvalidUrl,
    /// The URL (or a redirect) uses a scheme other than http or https.
    UnsupportedScheme,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The attempt did not finish within `--timeout`.
    Timeout,
    /// More redirects than `--max-redirects`.
    RedirectLimit,
    /// The body is larger than `--max-body`; the row keeps what was read up to the cap.
    BodyTooLarge,
    /// The body could not be read or decoded (connection closed mid-body, bad gzip, …).
    Body,
    /// robots.txt disallows the URL.
    RobotsDisallowed,
    /// Anything else (a malformed response, an internal error).
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidUrl,
        ErrorKind::UnsupportedScheme,
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::RedirectLimit,
        ErrorKind::BodyTooLarge,
        ErrorKind::Body,
        ErrorKind::RobotsDisallowed,
        ErrorKind::Other,
    ];

    /// The kind an `error_kind` value names.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The value written in the `error_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid_url",
            ErrorKind::UnsupportedScheme => "unsupported_scheme",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RedirectLimit => "redirect_limit",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Body => "body",
            ErrorKind::RobotsDisallowed => "robots_disallowed",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-URL failure: its kind and a one-line human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The `error_kind` column.
    pub kind: ErrorKind,
    /// The `error` column: one line.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`, described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// A bad command-line value or combination: exit code 2, one line that names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {flag}: {message}")]
pub struct UsageError {
    /// The flag as the user types it, e.g. `--rate`.
    pub flag: &'static str,
    /// What is wrong, and the forms accepted.
    pub message: String,
}

impl UsageError {
    /// A bad value or combination for `flag`.
    pub fn new(flag: &'static str, message: impl Into<String>) -> UsageError {
        UsageError {
            flag,
            message: message.into(),
        }
    }
}

/// A run-level failure: the run cannot go on (or cannot start).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument (exit 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The input cannot be read (exit 1).
    #[error("cannot read input {}: {source}", path.display())]
    Input {
        /// The input's name (`<stdin>` for the standard input).
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output cannot be written (exit 1).
    #[error("cannot write output {}: {source}", path.display())]
    Output {
        /// The output's name (`<stdout>` for the standard output).
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A report the run would write is in use by another ratefetch run (exit 1). Refused
    /// before anything is changed.
    #[error("cannot write {}: in use by another ratefetch run (one run per file)", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The `--log-requests` file cannot be used: in use by another run, not writable, or a
    /// write failed mid-run (the reason then says how many requests sent have no log line;
    /// exit 1).
    #[error("cannot write --log-requests {}: {reason}", path.display())]
    RequestLog {
        /// The log.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// `--resume` refused the report (another input, other columns; exit 1).
    #[error("cannot resume {}: {reason}", path.display())]
    Resume {
        /// The report.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// `--retry-failed` refused the report (other columns, damage; exit 1).
    #[error("cannot retry the failed rows of {}: {reason}", path.display())]
    RetryFailed {
        /// The report.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// The `--quota-state` file cannot be used: damaged, in use by another run, or not
    /// writable (exit 1).
    #[error("cannot use --quota-state {}: {reason}", path.display())]
    QuotaState {
        /// The file.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// The `--redis` server cannot be reached at start, or the shared limits cannot be
    /// used (exit 1).
    #[error("cannot use --redis {url}: {reason}")]
    Redis {
        /// The server's URL (its password hidden).
        url: String,
        /// Why, in one line.
        reason: String,
    },
    /// Requests could not get an open file for long, with none in flight to free one
    /// (exit 1).
    #[error("out of open files: {0}")]
    OpenFiles(String),
    /// The `--cacert` file cannot be read or holds no certificate (exit 1).
    #[error("cannot use --cacert {}: {reason}", path.display())]
    Cacert {
        /// The file.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// The HTTP client could not be built (a bad header value, exit 1).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Error {
    /// True when the output is a pipe whose reader went away (`ratefetch … | head -1`): a
    /// normal way for a pipeline to end, so the binary exits quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Exit codes (DESIGN.md §2): 0 the run finished, 1 run-level failure, 2 usage error,
/// 130 interrupted.
pub mod exit {
    /// The run finished (rows may hold HTTP errors and failures).
    pub const OK: u8 = 0;
    /// A run-level failure.
    pub const FAILURE: u8 = 1;
    /// A usage error.
    pub const USAGE: u8 = 2;
    /// Interrupted (Ctrl-C, SIGTERM); the report is flushed and valid.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped at a quota or budget (`--on-quota stop`, `--budget`); EX_TEMPFAIL: "try
    /// again later" with `--resume`.
    pub const QUOTA: u8 = 75;
}

/// The exit code for a run-level error.
pub fn exit_code(err: &Error) -> u8 {
    match err {
        Error::Usage(_) => exit::USAGE,
        _ if err.is_broken_pipe() => exit::OK,
        _ => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_strings_are_the_csv_contract() {
        let strings: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            strings,
            [
                "invalid_url",
                "unsupported_scheme",
                "dns",
                "connect",
                "tls",
                "timeout",
                "redirect_limit",
                "body_too_large",
                "body",
                "robots_disallowed",
                "other",
            ]
        );
    }

    #[test]
    fn usage_error_names_the_flag() {
        let e = UsageError::new("--rate", "expected a rate like 10/s");
        assert_eq!(
            e.to_string(),
            "invalid value for --rate: expected a rate like 10/s"
        );
        assert_eq!(exit_code(&Error::Usage(e)), exit::USAGE);
    }

    #[test]
    fn broken_pipe_on_output_exits_quietly_other_io_fails() {
        let pipe = Error::Output {
            path: "-".into(),
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(exit_code(&pipe), exit::OK);
        let full = Error::Output {
            path: "/dev/full".into(),
            source: io::Error::other("No space left on device"),
        };
        assert_eq!(exit_code(&full), exit::FAILURE);
    }
}
