//! `Config`: the validated settings of one run, in real types, and `Mode`: what one
//! invocation does with them. The command line (`cli.rs`) builds both; library users build
//! a `Config` directly, starting from `Config::default()`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::error::UsageError;
use crate::extract::Extractor;
use crate::template::Template;
use crate::units::{Quota, Rate};

/// What one invocation of ratefetch does. The command line builds one
/// (`Cli::into_mode`); `app::run_mode` matches it once. The planned subcommands (audit,
/// merge, enqueue, completions, man, a queue worker) become variants here, each with its
/// own settings, so that a run's `Config` never carries a flag that says which mode it is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Mode {
    /// Fetch the input and write the report: `ratefetch [OPTIONS] [INPUT]`.
    Fetch(Config),
    /// Fetch again the rows of `report` that failed, with this config's options, and
    /// rewrite it in place: `--retry-failed REPORT`.
    RetryFailed {
        /// The options of the new attempts.
        config: Config,
        /// The report, read and rewritten in place.
        report: PathBuf,
    },
    /// Read the input, send nothing, and print what the run would do and how long its
    /// limits make it take at least: `--plan`.
    Plan(Config),
}

impl Mode {
    /// No progress, summary or notes on stderr (`-q`).
    pub fn quiet(&self) -> bool {
        self.config().quiet
    }

    /// Time in-flight requests get after the first Ctrl-C (`--grace`).
    pub fn grace(&self) -> Duration {
        self.config().grace
    }

    /// The settings of the run.
    pub fn config(&self) -> &Config {
        match self {
            Mode::Fetch(config) | Mode::RetryFailed { config, .. } | Mode::Plan(config) => config,
        }
    }
}

/// Where the URL list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// The standard input.
    Stdin,
    /// A file.
    Path(PathBuf),
}

/// Where the report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// The standard output.
    Stdout,
    /// A file.
    Path(PathBuf),
}

impl InputSource {
    /// The name used in messages.
    pub fn display_path(&self) -> PathBuf {
        match self {
            InputSource::Stdin => PathBuf::from("<stdin>"),
            InputSource::Path(p) => p.clone(),
        }
    }
}

impl OutputTarget {
    /// The name used in messages.
    pub fn display_path(&self) -> PathBuf {
        match self {
            OutputTarget::Stdout => PathBuf::from("<stdout>"),
            OutputTarget::Path(p) => p.clone(),
        }
    }
}

/// How the input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One URL per line.
    Text,
    /// A CSV file with a header row; see --url-column.
    Csv,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line, with the CSV column names as keys.
    Jsonl,
}

impl Format {
    /// Its name in messages: `CSV`, `JSONL`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Jsonl => "JSONL",
        }
    }
}

/// What a run does when a quota window is spent (`--on-quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnQuota {
    /// Wait for the next free slot.
    Wait,
    /// Let requests in flight finish, send nothing more, and exit 75 (`--resume` goes on).
    Stop,
}

/// Everything one run needs. Defaults match the documented flag defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The URL list (`INPUT`).
    pub input: InputSource,
    /// The report (`--output`).
    pub output: OutputTarget,
    /// Global rate (`--rate`).
    pub rate: Rate,
    /// Requests allowed at once above the rate (`--burst`).
    pub burst: NonZeroU32,
    /// Max requests in flight (`--concurrency`).
    pub concurrency: usize,
    /// Number of workers in the pool (`--workers`, default = concurrency).
    pub workers: usize,
    /// Rate per host (`--per-host-rate`), burst 1.
    pub per_host_rate: Rate,
    /// Max requests in flight per host (`--per-host-concurrency`).
    pub per_host_concurrency: Option<usize>,
    /// Windowed quotas over the whole run (`--quota`, repeatable): at most N requests in any
    /// window W, each.
    pub quotas: Vec<Quota>,
    /// Windowed quotas for each host (`--per-host-quota`, repeatable).
    pub per_host_quotas: Vec<Quota>,
    /// What a run does when a `--quota` window is spent (`--on-quota`).
    pub on_quota: OnQuota,
    /// At most this many requests in the run, retries included (`--budget`), then stop.
    pub budget: Option<u64>,
    /// `--quota-state`: what was sent against the quotas, kept across runs in this file.
    pub quota_state: Option<PathBuf>,
    /// `--ignore-ratelimit-headers`: do not follow the limits servers announce.
    pub ignore_ratelimit_headers: bool,
    /// `--redis URL`: the rate-type limits are kept in this Redis, shared with every process
    /// that names the same key.
    pub redis: Option<String>,
    /// `--limit-key NAME`: the name the shared limits are kept under.
    pub limit_key: String,
    /// `--queue NAME`: a worker taking its jobs from this queue in `redis` (no input).
    pub queue: Option<String>,
    /// `--claim-after`: a job another worker left pending this long is taken over.
    pub claim_after: Duration,
    /// `--max-deliveries`: a job delivered more often becomes an error row.
    pub max_deliveries: u32,
    /// `--shard K/N`: only this part of the input (its other lines get no row).
    pub shard: Option<crate::units::Shard>,
    /// Whole-attempt timeout, body included (`--timeout`); `NO_TIMEOUT` for none
    /// (`--timeout 0`).
    pub timeout: Duration,
    /// TCP (and TLS) connect timeout (`--connect-timeout`); zero for none.
    pub connect_timeout: Duration,
    /// Retries after the first attempt (`--retries`).
    pub retries: u32,
    /// Statuses that are retried (`--retry-status`).
    pub retry_status: Vec<u16>,
    /// Base of the exponential backoff (`--backoff`).
    pub backoff: Duration,
    /// Longest Retry-After that is waited for (`--max-retry-after`).
    pub max_retry_after: Duration,
    /// The request method (`-X`).
    pub method: Method,
    /// Extra request headers (`-H`).
    pub headers: HeaderMap,
    /// Request body (`-d`).
    pub body: Option<Bytes>,
    /// The User-Agent (`-A`); an explicit `-H 'User-Agent: …'` wins.
    pub user_agent: String,
    /// Redirects followed per attempt (`--max-redirects`); 0 reports the 3xx itself.
    pub max_redirects: usize,
    /// `--cacert`: trusted roots (PEM), replacing the built-in ones.
    pub cacert: Option<PathBuf>,
    /// `-k, --insecure`: accept any TLS certificate.
    pub insecure: bool,
    /// `-x, --proxy`: every request goes through this proxy (http, https, socks5, socks5h);
    /// `None`: the proxy environment variables decide, as reqwest reads them.
    pub proxy: Option<url::Url>,
    /// `--cookies` (or `-b`): a cookie store for the run.
    pub cookies: bool,
    /// `-b, --cookie`: cookies the store starts with for every input URL's own host, each
    /// `name=value`.
    pub seed_cookies: Vec<String>,
    /// Body cap in decompressed bytes; `None` = no cap (`--max-body 0`).
    pub max_body: Option<u64>,
    /// The report's format (`--format`).
    pub format: Format,
    /// No progress and no summary (`-q`).
    pub quiet: bool,
    /// Append to the output, skipping inputs already in it (`--resume`).
    pub resume: bool,
    /// Time in-flight requests get after a stop request (`--grace`).
    pub grace: Duration,
    /// Ignore proxy environment variables (tests use it; the CLI honours them).
    pub no_proxy: bool,
    /// `--input-format`; `None` picks CSV for a path ending in `.csv`, else text.
    pub input_format: Option<InputFormat>,
    /// `--url-column` of a CSV input.
    pub url_column: Option<String>,
    /// `--url-template`: each job's URL filled from its row (or line) instead of read.
    pub url_template: Option<Template>,
    /// `--delimiter` of a CSV input; `None` finds it from the header line (tab for .tsv).
    pub delimiter: Option<u8>,
    /// `--extract` rules, compiled, in the order given.
    pub extract: Vec<Extractor>,
    /// `--extract-all`: every match, joined with ` | `, instead of the first.
    pub extract_all: bool,
    /// `--fields`: the report's columns, chosen and ordered.
    pub fields: Option<Vec<String>>,
    /// `--save-bodies`: store each body as DIR/<index>.<ext>.
    pub save_bodies: Option<PathBuf>,
    /// `--respect-robots`: obey robots.txt (RFC 9309), Crawl-delay included.
    pub respect_robots: bool,
    /// `--log-requests`: one JSON line per request sent, appended to this file.
    pub log_requests: Option<PathBuf>,
    /// How long an idle connection stays in the pool: 90 s, or 5 s where the open-file
    /// limit is tight (`fit_open_files`); not a command-line flag.
    pub idle_timeout: Duration,
    /// Full jitter on retry backoffs (default). Off, a retry waits the whole backoff
    /// ceiling: deterministic, for tests and experiments; not a command-line flag.
    pub backoff_jitter: bool,
}

impl Config {
    /// Whether the input is read as CSV.
    pub fn csv_input(&self) -> bool {
        match self.input_format {
            Some(f) => f == InputFormat::Csv,
            None => self.delimiter.is_some() || self.input_extension(&["csv", "tsv"]),
        }
    }

    /// The cell separator of a CSV input, if known before it is read: `--delimiter`, or a
    /// tab for a .tsv path; else it is found from the header line.
    pub fn csv_delimiter(&self) -> Option<u8> {
        self.delimiter
            .or_else(|| self.input_extension(&["tsv"]).then_some(b'\t'))
    }

    /// Whether the input is a path ending in one of `extensions` (case-insensitive).
    fn input_extension(&self, extensions: &[&str]) -> bool {
        matches!(&self.input, InputSource::Path(p)
            if p.extension().is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x))))
    }

    /// Checks the settings of `ratefetch enqueue`: a Redis URL, a queue name, and the input's.
    pub fn validate_enqueue(&self) -> Result<(), UsageError> {
        self.check_url_column()?;
        check_redis_url(self.redis.as_deref().unwrap_or_default())?;
        check_limit_key(self.queue.as_deref().unwrap_or_default())
            .map_err(|e| UsageError::new("--queue", e))
    }

    /// `--url-column` needs a CSV input; `--url-template` takes columns by name from a CSV
    /// input, the line (`{}`) from a text one, and leaves no URL column to name.
    fn check_url_column(&self) -> Result<(), UsageError> {
        if self.url_column.is_some() && !self.csv_input() {
            return Err(UsageError::new(
                "--url-column",
                "needs a CSV input (a .csv path or --input-format csv)",
            ));
        }
        if let Some(template) = &self.url_template {
            if self.url_column.is_some() {
                return Err(UsageError::new(
                    "--url-template",
                    "makes the URL itself: there is no --url-column to name with it",
                ));
            }
            if let (false, Some(name)) = (self.csv_input(), template.names().next()) {
                return Err(UsageError::new(
                    "--url-template",
                    format!(
                        "{{{name}}} takes a CSV column, and the input is text: use {{}} for each line, or a CSV input"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the combinations of settings that no single value can get wrong. The command
    /// line (`Cli::into_config`) and `ratefetch::run` both call it, so a `Config` built by
    /// hand gets the same usage errors as the command line.
    pub fn validate(&self) -> Result<(), UsageError> {
        self.check_url_column()?;
        check_burst_span(self.rate, self.burst, self.redis.is_some())?;
        if let Some(name) = &self.queue {
            if self.redis.is_none() {
                return Err(UsageError::new(
                    "--queue",
                    "needs --redis URL (the queue lives there)",
                ));
            }
            check_limit_key(name).map_err(|e| UsageError::new("--queue", e))?;
            if self.claim_after < Duration::from_millis(100) {
                return Err(UsageError::new(
                    "--claim-after",
                    "expected at least 100ms: a shorter one takes jobs from workers that are alive",
                ));
            }
            if self
                .fields
                .as_ref()
                .is_some_and(|f| !f.iter().any(|c| c == "index"))
            {
                return Err(UsageError::new(
                    "--fields",
                    "a --queue worker's report needs the index column (ratefetch merge reads it)",
                ));
            }
            if !matches!(self.output, OutputTarget::Path(_)) {
                return Err(UsageError::new(
                    "--queue",
                    "needs --output FILE: a job is acknowledged once its row is on disk there",
                ));
            }
        }
        if let Some(url) = &self.redis {
            if self.quota_state.is_some() {
                return Err(UsageError::new(
                    "--quota-state",
                    "cannot be used with --redis: Redis keeps the shared state",
                ));
            }
            for (flag, rate) in [
                ("--rate", self.rate),
                ("--per-host-rate", self.per_host_rate),
            ] {
                if rate.period().is_some_and(|p| p < Duration::from_micros(1)) {
                    return Err(UsageError::new(
                        flag,
                        "with --redis, at most 1000000/s (grants are kept in microseconds)",
                    ));
                }
            }
            check_redis_url(url)?;
            check_limit_key(&self.limit_key).map_err(|e| UsageError::new("--limit-key", e))?;
        }
        Ok(())
    }
}

/// The longest `--burst × period` (the time `--rate` takes to refill the whole burst): the
/// limiter counts nanoseconds in a `u64` (governor's `Nanos`), which holds 584 years; half
/// of that for the burst leaves as much again for the run's own clock.
pub const MAX_BURST_SPAN: Duration = Duration::from_nanos(i64::MAX as u64);

/// `MAX_BURST_SPAN` with `--redis`: the grant script counts microseconds since 1970 in Lua's
/// doubles, exact up to 2^53 µs (the year 2255); a burst span of a century keeps every instant
/// it computes exact until 2155.
pub const MAX_REDIS_BURST_SPAN: Duration = Duration::from_secs(100 * SECS_PER_YEAR);

/// A Julian year (365.25 days), for the burst span's message.
const SECS_PER_YEAR: u64 = 31_557_600;

/// `--burst × period` must fit the limiter (`MAX_BURST_SPAN`, with `--redis`
/// `MAX_REDIS_BURST_SPAN`): `--rate 0.0000001/s --burst 4294967295` would overflow it.
fn check_burst_span(rate: Rate, burst: NonZeroU32, redis: bool) -> Result<(), UsageError> {
    let Some(period) = rate.period() else {
        return Ok(());
    };
    let (max, with) = match redis {
        true => (MAX_REDIS_BURST_SPAN, "with --redis, "),
        false => (MAX_BURST_SPAN, ""),
    };
    let span = period.as_nanos() * u128::from(burst.get());
    if span <= max.as_nanos() {
        return Ok(());
    }
    let years = |nanos: u128| nanos / (u128::from(SECS_PER_YEAR) * 1_000_000_000);
    Err(UsageError::new(
        "--burst",
        format!(
            "{with}burst × period (1/--rate) must be at most {} years; {burst} at {rate} is {} \
             years: lower --burst or raise --rate",
            years(max.as_nanos()),
            years(span),
        ),
    ))
}

/// Parses a `--redis` URL (it is connected to at the start of the run).
fn check_redis_url(url: &str) -> Result<(), UsageError> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| UsageError::new("--redis", e.to_string()))
}

/// Checks a `--limit-key` name: it becomes a hash tag, so no braces; no spaces.
fn check_limit_key(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("expected a name of 1 to 100 characters".into());
    }
    if name
        .chars()
        .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{name:?} may not hold braces or spaces"));
    }
    Ok(())
}

/// `Config::timeout` without a limit (`--timeout 0`): the longest duration accepted, so that
/// the deadlines, the request log's disorder bound and the announced allowances, which all
/// count on requests ending within the timeout, stay finite and true.
pub const NO_TIMEOUT: Duration = crate::units::MAX_DURATION;

/// The default `--limit-key`.
pub const DEFAULT_LIMIT_KEY: &str = "ratefetch";

/// The default User-Agent: `ratefetch/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("ratefetch/", env!("CARGO_PKG_VERSION"));

impl Default for Config {
    fn default() -> Config {
        Config {
            input: InputSource::Stdin,
            output: OutputTarget::Stdout,
            rate: Rate::Every(Duration::from_millis(100)),
            burst: NonZeroU32::MIN,
            concurrency: 16,
            workers: 16,
            per_host_rate: Rate::Unlimited,
            per_host_concurrency: None,
            quotas: Vec::new(),
            per_host_quotas: Vec::new(),
            on_quota: OnQuota::Wait,
            budget: None,
            quota_state: None,
            redis: None,
            limit_key: DEFAULT_LIMIT_KEY.to_string(),
            queue: None,
            claim_after: Duration::from_secs(60),
            max_deliveries: 5,
            ignore_ratelimit_headers: false,
            shard: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 2,
            retry_status: vec![429, 502, 503, 504],
            backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(60),
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            max_redirects: 10,
            cacert: None,
            insecure: false,
            proxy: None,
            cookies: false,
            seed_cookies: Vec::new(),
            max_body: Some(10 << 20),
            format: Format::Csv,
            quiet: false,
            resume: false,
            grace: Duration::from_secs(5),
            no_proxy: false,
            input_format: None,
            url_column: None,
            delimiter: None,
            url_template: None,
            extract: Vec::new(),
            extract_all: false,
            fields: None,
            save_bodies: None,
            respect_robots: false,
            log_requests: None,
            idle_timeout: IDLE_TIMEOUT,
            backoff_jitter: true,
        }
    }
}

/// How long an idle connection stays in the pool by default (reqwest's and hyper's 90 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The same where open files are short: connections to hosts a crawl is done with go soon.
pub const TIGHT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url_column(input: InputSource, format: Option<InputFormat>) -> Config {
        Config {
            input,
            input_format: format,
            url_column: Some("link".into()),
            ..Config::default()
        }
    }

    #[test]
    fn a_burst_span_must_fit_the_limiter() {
        let at = |secs: u64, burst: u32, redis: bool| {
            check_burst_span(
                Rate::Every(Duration::from_secs(secs)),
                NonZeroU32::new(burst).unwrap(),
                redis,
            )
        };
        // 292 years and a little: 2^63 ns is 9,223,372,036.85 s.
        assert_eq!(at(9_223_372_036, 1, false), Ok(()));
        assert_eq!(at(4_611_686_018, 2, false), Ok(()));
        let err = at(9_223_372_037, 1, false).unwrap_err();
        assert_eq!(err.flag, "--burst");
        assert!(err.message.starts_with("burst × period"), "{err}");
        assert!(at(u64::from(u32::MAX), u32::MAX, false).is_err());
        // With --redis, a century.
        assert_eq!(at(100 * SECS_PER_YEAR, 1, true), Ok(()));
        let err = at(100 * SECS_PER_YEAR + 1, 1, true).unwrap_err();
        assert!(err.message.starts_with("with --redis, "), "{err}");
        assert!(err.message.contains("at most 100 years"), "{err}");
        // Unlimited has no period.
        assert_eq!(
            check_burst_span(Rate::Unlimited, NonZeroU32::MAX, true),
            Ok(())
        );
    }

    #[test]
    fn validate_accepts_the_defaults() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn validate_accepts_url_column_with_a_csv_input() {
        let csv_path = InputSource::Path("list.CSV".into());
        assert_eq!(with_url_column(csv_path, None).validate(), Ok(()));
        let stdin_as_csv = with_url_column(InputSource::Stdin, Some(InputFormat::Csv));
        assert_eq!(stdin_as_csv.validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_url_column_without_a_csv_input() {
        let want = UsageError::new(
            "--url-column",
            "needs a CSV input (a .csv path or --input-format csv)",
        );
        for config in [
            with_url_column(InputSource::Stdin, None),
            with_url_column(InputSource::Path("list.txt".into()), None),
            with_url_column(
                InputSource::Path("list.csv".into()),
                Some(InputFormat::Text),
            ),
        ] {
            assert_eq!(config.validate(), Err(want.clone()), "{:?}", config.input);
        }
    }

    #[test]
    fn mode_reads_quiet_and_grace_from_its_config() {
        let config = Config {
            quiet: true,
            grace: Duration::from_secs(9),
            ..Config::default()
        };
        let modes = [
            Mode::Fetch(config.clone()),
            Mode::RetryFailed {
                config: config.clone(),
                report: "report.csv".into(),
            },
            Mode::Plan(config),
        ];
        for mode in modes {
            assert!(mode.quiet());
            assert_eq!(mode.grace(), Duration::from_secs(9));
        }
    }

    #[test]
    fn a_limit_key_is_a_hash_tag_so_no_braces() {
        assert!(check_limit_key("team-api").is_ok());
        assert!(check_limit_key("a{b").is_err());
        assert!(check_limit_key("a b").is_err());
        assert!(check_limit_key("").is_err());
    }
}
