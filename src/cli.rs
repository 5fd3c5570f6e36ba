//! The command line (clap derive) and its one conversion into a validated `Config`.
//!
//! Every value is parsed by a plain function (`units.rs` and below), so a bad value is a clap
//! error that names the flag; `Cli::into_mode` only checks combinations.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;

use crate::config::{
    Config, Format, InputFormat, InputSource, Mode, OnQuota, OutputTarget, DEFAULT_USER_AGENT,
};
use crate::error::UsageError;
use crate::extract::Extractor;
use crate::template::Template;
use crate::units::{
    parse_duration, parse_quota, parse_rate, parse_shard, parse_size, Quota, Rate, Shard,
};

/// The version `--version` prints, with the optional cargo features compiled in (Redis, for
/// `--redis`, is always in).
pub const VERSION: &str = if cfg!(feature = "plot") {
    concat!(env!("CARGO_PKG_VERSION"), " (features: plot)")
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (features: none; audit --plot needs the plot feature)"
    )
};

/// Fetch a list of URLs as fast as a quota allows and never faster; write one CSV row per
/// input line.
#[derive(Debug, Parser)]
#[command(
    name = "ratefetch",
    version = VERSION,
    about,
    max_term_width = 100,
    after_help = "Subcommands:\n  ratefetch audit LOG... [limits]    did the runs that wrote these request logs \
                  keep their limits?\n  ratefetch merge REPORT... -o OUT   one report from the \
                  reports of one input: every index once\n  ratefetch enqueue INPUT --redis URL \
                  --queue NAME\n                                     fill a job queue for \
                  --queue workers\n  ratefetch completions SHELL        a completion script \
                  (bash, zsh, fish, powershell, elvish)\n  ratefetch man                      \
                  the man page (roff)\n\nA subcommand's name as the first argument wins over a \
                  file of that name: ./audit reads the file."
)]
pub struct Cli {
    /// URL list: a path, or - (or nothing) for stdin. One URL per line; blank lines and
    /// lines starting with # are skipped.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// Write the report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Global rate: 10, 10/s, 600/m, 5000/h, 0.5/s or unlimited.
    #[arg(short, long, value_name = "RATE", default_value = "10/s", value_parser = parse_rate)]
    pub rate: Rate,

    /// Requests allowed at once above the rate (N × period at most 292 years; with --redis,
    /// 100).
    #[arg(long, value_name = "N", default_value = "1")]
    pub burst: NonZeroU32,

    /// Max requests in flight.
    #[arg(short, long, value_name = "N", default_value = "16", value_parser = parse_positive)]
    pub concurrency: usize,

    /// Pool size [default: the concurrency].
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub workers: Option<usize>,

    /// Rate per host (same forms as --rate), burst 1.
    #[arg(long, value_name = "RATE", default_value = "unlimited", value_parser = parse_rate)]
    pub per_host_rate: Rate,

    /// Max requests in flight per host.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub per_host_concurrency: Option<usize>,

    /// At most N requests in any window W (5000/h, 30/3s, 50000/d); repeatable. Unlike
    /// --rate, a window may be spent in a burst.
    #[arg(long = "quota", value_name = "N/WINDOW", value_parser = parse_quota)]
    pub quotas: Vec<Quota>,

    /// At most N requests to each host in any window W; repeatable.
    #[arg(long = "per-host-quota", value_name = "N/WINDOW", value_parser = parse_quota)]
    pub per_host_quotas: Vec<Quota>,

    /// When a --quota window is spent: wait for the next slot, or stop (exit 75, --resume
    /// later).
    #[arg(long, value_name = "WHAT", value_enum, default_value = "wait")]
    pub on_quota: OnQuota,

    /// At most N requests in this run, retries included; then stop with exit 75.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget: Option<u64>,

    /// Keep what was sent against the quotas in FILE, so that reruns, --resume and runs
    /// after a crash go on counting (one run at a time per file).
    #[arg(long, value_name = "FILE")]
    pub quota_state: Option<PathBuf>,

    /// Do not follow the limits servers announce (RateLimit, X-RateLimit-* headers): no
    /// pause when they say nothing is left.
    #[arg(long)]
    pub ignore_ratelimit_headers: bool,

    /// Keep the limits (--rate, --quota, per-host pace and quotas, cool-downs, Crawl-delays)
    /// in this Redis, shared by every process that names it and the same --limit-key:
    /// redis://HOST:PORT[/DB], rediss://…, redis+unix:///PATH.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// The name the shared limits are kept under in --redis; runs with other limits must
    /// name another key.
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_LIMIT_KEY)]
    pub limit_key: String,

    /// Be a worker of this job queue in --redis (filled by `ratefetch enqueue`), instead of
    /// reading an INPUT; needs --output FILE (appended to).
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,

    /// With --queue: take over jobs another worker left pending this long.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub claim_after: Duration,

    /// With --queue: a job delivered more often than this becomes an error row.
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries: u32,

    /// Take only part K of N of the input: the lines (or CSV rows) whose index i has
    /// (i - 1) mod N = K - 1. N processes with 1/N … N/N cover a list exactly once; rows keep
    /// the original index.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,

    /// Whole-attempt timeout, body included (250ms, 30s, 2m; 0 = no limit).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Connect timeout (0 = no limit).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Retries after the first attempt (connect errors, timeouts, --retry-status).
    #[arg(long, value_name = "N", default_value = "2")]
    pub retries: u32,

    /// Statuses that are retried, comma-separated.
    #[arg(long, value_name = "LIST", default_value = "429,502,503,504", value_parser = parse_status_list)]
    pub retry_status: StatusList,

    /// Base of the exponential backoff with full jitter (capped at 30s).
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_duration)]
    pub backoff: Duration,

    /// Longest Retry-After that is waited for; longer ones end the job with that status.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub max_retry_after: Duration,

    /// Time in-flight requests get to finish after Ctrl-C.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,

    /// HTTP method [default: GET, or POST with --data].
    #[arg(short = 'X', long, value_name = "M", value_parser = parse_method)]
    pub method: Option<Method>,

    /// Extra request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'K: V'", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// Request body; @FILE reads it from a file.
    #[arg(short = 'd', long, value_name = "BODY")]
    pub data: Option<String>,

    /// User-Agent header.
    #[arg(short = 'A', long, value_name = "UA", default_value = DEFAULT_USER_AGENT)]
    pub user_agent: String,

    /// Redirects followed before a redirect_limit error.
    #[arg(long, value_name = "N", default_value = "10")]
    pub max_redirects: usize,

    /// Trust the CA certificates in FILE (PEM) instead of the built-in roots, as curl's
    /// --cacert.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Accept any TLS certificate (self-signed, expired, another host's), with a warning.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Send every request through this proxy: http://, https://, socks5:// or socks5h://
    /// (names resolved by the proxy), as curl's -x. Without it, HTTP_PROXY, HTTPS_PROXY,
    /// ALL_PROXY and NO_PROXY are honoured; NO_PROXY applies to --proxy too.
    #[arg(short = 'x', long, value_name = "URL", value_parser = parse_proxy)]
    pub proxy: Option<url::Url>,

    /// Keep a cookie store for the run: cookies servers set are sent back to them, per
    /// host, as a browser does.
    #[arg(long)]
    pub cookies: bool,

    /// Start the cookie store with these cookies, 'name=value; name2=value2' (repeatable):
    /// sent to every input URL's own host, never to another host after a redirect. Implies
    /// --cookies.
    #[arg(short = 'b', long = "cookie", value_name = "'N=V; …'", value_parser = parse_cookies)]
    pub cookie: Vec<Vec<String>>,

    /// Body cap in decompressed bytes (10MiB, 512KB, bytes; 0 = no cap).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub max_body: u64,

    /// Report format.
    #[arg(long, value_name = "FORMAT", default_value = "csv", value_enum)]
    pub format: Format,

    /// No progress and no summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,

    /// Append to --output, skipping inputs already in it.
    #[arg(long)]
    pub resume: bool,

    /// Input format [default: csv for a .csv or .tsv path or with --delimiter, else text].
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        help_heading = "Scraping and reports"
    )]
    pub input_format: Option<InputFormat>,

    /// URL column of a CSV input [default: a column named url, else the first].
    #[arg(long, value_name = "NAME", help_heading = "Scraping and reports")]
    pub url_column: Option<String>,

    /// Make each URL from its row: {name} takes that CSV column, {} a text input's line,
    /// percent-encoded; every input column passes through (a text line as "line").
    #[arg(long, value_name = "TEMPLATE", value_parser = Template::parse, help_heading = "Scraping and reports")]
    pub url_template: Option<Template>,

    /// The cell separator of a CSV input: one character, or tab [default: found from the
    /// header line among , ; tab |; tab for a .tsv path]. Implies a CSV input.
    #[arg(long, value_name = "C", value_parser = parse_delimiter, help_heading = "Scraping and reports")]
    pub delimiter: Option<u8>,

    /// Extract a column: NAME=css:SELECTOR[@ATTR], NAME=regex:RE, NAME=json:/POINTER or
    /// NAME=header:NAME (repeatable).
    #[arg(long, value_name = "NAME=KIND:EXPR", value_parser = Extractor::parse, help_heading = "Scraping and reports")]
    pub extract: Vec<Extractor>,

    /// Join every match with ' | ' instead of taking the first.
    #[arg(long, help_heading = "Scraping and reports")]
    pub extract_all: bool,

    /// The report's columns, chosen and ordered (comma-separated names).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        help_heading = "Scraping and reports"
    )]
    pub fields: Option<Vec<String>>,

    /// Store each body as DIR/<index>.<ext> and add a body_sha256 column.
    #[arg(long, value_name = "DIR", help_heading = "Scraping and reports")]
    pub save_bodies: Option<PathBuf>,

    /// Fetch again the rows of REPORT that failed (error_kind set, 429 or 5xx), with these
    /// options, and rewrite REPORT in place.
    #[arg(long, value_name = "REPORT", help_heading = "Scraping and reports")]
    pub retry_failed: Option<PathBuf>,

    /// Obey robots.txt (fetched once per host, through the same limits); a Crawl-delay
    /// slows that host down.
    #[arg(long, help_heading = "Scraping and reports")]
    pub respect_robots: bool,

    /// Append one JSON line per request sent (send time, host, index, attempt, status) to
    /// FILE, for `ratefetch audit`.
    #[arg(long, value_name = "FILE")]
    pub log_requests: Option<PathBuf>,

    /// Print what the run would do and how long its limits make it take, send nothing,
    /// exit 0.
    #[arg(long)]
    pub plan: bool,
}

/// `--delimiter`: one ASCII character (not a quote or a line end), or `tab` / `\t`.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && !matches!(s, "\"" | "\n" | "\r") => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(format!(
            "expected one character, e.g. ';' or '|', or tab; got {s:?}"
        )),
    }
}

/// A parsed `--retry-status` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList(pub Vec<u16>);

/// The most workers or requests in flight: far above what one machine's sockets allow,
/// low enough that the pool's channels and semaphores cannot fail to allocate.
pub const MAX_PARALLEL: usize = 100_000;

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PARALLEL).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_PARALLEL}")),
    }
}

fn parse_status_list(s: &str) -> Result<StatusList, String> {
    const FORMS: &str = "expected HTTP status codes like 429,502,503,504 (or 'none')";
    if s.trim().eq_ignore_ascii_case("none") || s.trim().is_empty() {
        return Ok(StatusList(Vec::new()));
    }
    s.split(',')
        .map(|code| match code.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(FORMS.to_string()),
        })
        .collect::<Result<_, _>>()
        .map(StatusList)
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| "expected an HTTP method like GET, HEAD or POST".to_string())
}

fn parse_proxy(s: &str) -> Result<url::Url, String> {
    const SCHEMES: &str = "http://, https://, socks5:// or socks5h://";
    let url =
        url::Url::parse(s).map_err(|e| format!("{e}; expected a URL such as http://proxy:3128"))?;
    if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") || url.host().is_none() {
        return Err(format!("expected a proxy URL starting {SCHEMES}"));
    }
    reqwest::Proxy::all(url.as_str()).map_err(|e| e.to_string())?;
    Ok(url)
}

/// `name=value; name2=value2` as `name=value` strings. A cookie file (curl's `-b FILE`) is
/// not read.
fn parse_cookies(s: &str) -> Result<Vec<String>, String> {
    let cookies: Vec<String> = s
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| match c.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() && HeaderValue::from_str(c).is_ok() => {
                Ok(format!("{}={}", name.trim(), value.trim()))
            }
            _ => Err(format!(
                "expected 'name=value; name2=value2', not {c:?} (cookie files are not read)"
            )),
        })
        .collect::<Result<_, _>>()?;
    if cookies.is_empty() {
        return Err("expected 'name=value; name2=value2'".to_string());
    }
    Ok(cookies)
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    const FORMS: &str = "expected 'Name: value'";
    let (name, value) = s.split_once(':').ok_or_else(|| FORMS.to_string())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{FORMS} (bad header name {:?})", name.trim()))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|_| format!("{FORMS} (bad header value)"))?;
    Ok((name, value))
}

impl Cli {
    /// Checks combinations and builds what this invocation does.
    pub fn into_mode(self) -> Result<Mode, UsageError> {
        let report = self.retry_failed.clone();
        let plan = self.plan;
        if plan && report.is_some() {
            return Err(UsageError::new(
                "--plan",
                "plans a fetch of INPUT; it takes no --retry-failed",
            ));
        }
        if plan && self.queue.is_some() {
            return Err(UsageError::new(
                "--plan",
                "plans a fetch of INPUT; it takes no --queue",
            ));
        }
        let config = self.into_config()?;
        Ok(match report {
            Some(report) => Mode::RetryFailed { config, report },
            None if plan => Mode::Plan(config),
            None => Mode::Fetch(config),
        })
    }

    /// Checks combinations and builds the run's `Config` (`Config::validate` included); the
    /// mode (`--retry-failed`, `--plan`) is left out: see `into_mode`.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let input_given = self.input.is_some();
        let input = match self.input {
            None => InputSource::Stdin,
            Some(p) if p.as_os_str() == "-" => InputSource::Stdin,
            Some(p) => InputSource::Path(p),
        };
        let output = match self.output {
            None => OutputTarget::Stdout,
            Some(p) if p.as_os_str() == "-" => OutputTarget::Stdout,
            Some(p) => OutputTarget::Path(p),
        };
        if self.retry_failed.is_some() {
            let clash = [
                (input_given, "INPUT"),
                (output != OutputTarget::Stdout, "--output"),
                (self.resume, "--resume"),
                (self.fields.is_some(), "--fields"),
                (self.shard.is_some(), "--shard"),
            ];
            if let Some((_, what)) = clash.iter().find(|(given, _)| *given) {
                return Err(UsageError::new(
                    "--retry-failed",
                    format!("takes no {what}: the report is both the input and the output"),
                ));
            }
        }
        if self.queue.is_some() {
            let clash = [
                (input_given, "INPUT: its jobs come from the queue"),
                (
                    self.shard.is_some(),
                    "--shard: the queue shares the jobs out",
                ),
                (self.retry_failed.is_some(), "--retry-failed"),
            ];
            if let Some((_, what)) = clash.iter().find(|(given, _)| *given) {
                return Err(UsageError::new("--queue", format!("takes no {what}")));
            }
        }
        if self.resume && output == OutputTarget::Stdout {
            return Err(UsageError::new(
                "--resume",
                "needs --output FILE (it appends to that file)",
            ));
        }
        let body =
            match self.data {
                None => None,
                Some(d) => Some(match d.strip_prefix('@') {
                    Some(path) => Bytes::from(std::fs::read(path).map_err(|e| {
                        UsageError::new("--data", format!("cannot read {path}: {e}"))
                    })?),
                    None => Bytes::from(d),
                }),
            };
        let method = self.method.unwrap_or(if body.is_some() {
            Method::POST
        } else {
            Method::GET
        });
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        let seed_cookies: Vec<String> = self.cookie.into_iter().flatten().collect();
        let cookies = self.cookies || !seed_cookies.is_empty();
        if cookies && headers.contains_key(reqwest::header::COOKIE) {
            return Err(UsageError::new(
                "--header",
                "a Cookie header would switch the cookie store off; give the cookies with -b",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for x in &self.extract {
            if crate::sink::is_reserved(&x.name) {
                return Err(UsageError::new(
                    "--extract",
                    format!("{:?} is a standard column; choose another name", x.name),
                ));
            }
            if !names.insert(x.name.as_str()) {
                return Err(UsageError::new(
                    "--extract",
                    format!("the name {:?} is used twice", x.name),
                ));
            }
        }
        let config = Config {
            input,
            output,
            rate: self.rate,
            burst: self.burst,
            concurrency: self.concurrency,
            workers: self.workers.unwrap_or(self.concurrency),
            per_host_rate: self.per_host_rate,
            per_host_concurrency: self.per_host_concurrency,
            quotas: self.quotas,
            per_host_quotas: self.per_host_quotas,
            on_quota: self.on_quota,
            budget: self.budget,
            quota_state: self.quota_state,
            ignore_ratelimit_headers: self.ignore_ratelimit_headers,
            redis: self.redis,
            limit_key: self.limit_key,
            queue: self.queue,
            claim_after: self.claim_after,
            max_deliveries: self.max_deliveries,
            shard: self.shard,
            timeout: match self.timeout {
                Duration::ZERO => crate::config::NO_TIMEOUT,
                t => t,
            },
            connect_timeout: self.connect_timeout,
            retries: self.retries,
            retry_status: self.retry_status.0,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
            method,
            headers,
            body,
            user_agent: self.user_agent,
            max_redirects: self.max_redirects,
            cacert: self.cacert,
            insecure: self.insecure,
            proxy: self.proxy,
            cookies,
            seed_cookies,
            max_body: (self.max_body > 0).then_some(self.max_body),
            format: self.format,
            quiet: self.quiet,
            resume: self.resume,
            grace: self.grace,
            no_proxy: false,
            input_format: self.input_format,
            url_column: self.url_column,
            delimiter: self.delimiter,
            url_template: self.url_template,
            extract: self.extract,
            extract_all: self.extract_all,
            fields: self.fields,
            save_bodies: self.save_bodies,
            respect_robots: self.respect_robots,
            log_requests: self.log_requests,
            idle_timeout: crate::config::IDLE_TIMEOUT,
            backoff_jitter: true,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Did the runs that wrote these request logs (--log-requests) keep their limits? The limits
/// the first log names are checked, each kind of limit given as a flag instead; and what
/// servers announced: no request to a host that said nothing remains, before its reset.
#[derive(Debug, Parser)]
#[command(name = "ratefetch audit", version = VERSION, max_term_width = 100)]
pub struct AuditCli {
    /// Request logs written by --log-requests (one or several runs, processes, machines).
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,

    /// The global rate to check, instead of the logs' (unlimited: none). The sends must obey
    /// the GCRA with period 1/RATE and burst --burst.
    #[arg(short, long, value_name = "RATE", value_parser = parse_rate)]
    pub rate: Option<Rate>,

    /// The burst allowed at --rate, instead of the logs' (the logs' rate, if no --rate).
    #[arg(long, value_name = "N")]
    pub burst: Option<NonZeroU32>,

    /// A quota to check as a sliding window: at most N in any window (repeatable). With
    /// --quota or --fixed-quota, the logs' quotas are not checked.
    #[arg(long = "quota", value_name = "N/WINDOW", value_parser = parse_quota)]
    pub quotas: Vec<Quota>,

    /// A quota to check as a fixed window, as express-rate-limit and the Python limits
    /// library count: a window opens at the first request after the previous one closed, and
    /// holds at most N (repeatable).
    #[arg(long = "fixed-quota", value_name = "N/WINDOW", value_parser = parse_quota)]
    pub fixed_quotas: Vec<Quota>,

    /// The rate per host to check (burst 1), instead of the logs'.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub per_host_rate: Option<Rate>,

    /// A sliding quota per host to check (repeatable), instead of the logs'.
    #[arg(long = "per-host-quota", value_name = "N/WINDOW", value_parser = parse_quota)]
    pub per_host_quotas: Vec<Quota>,

    /// Clock noise allowed on every window and GCRA check (send times are read on several
    /// threads).
    #[arg(long, value_name = "DUR", default_value = "1ms", value_parser = parse_duration)]
    pub tolerance: Duration,

    /// Also draw FILE (SVG): requests per second over time, overall and for the busiest
    /// hosts, each limit as a dashed line, 429 answers marked.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Hosts drawn as series of their own in --plot, the busiest first.
    #[arg(long, value_name = "N", default_value = "5")]
    pub plot_hosts: usize,
}

impl AuditCli {
    /// The limits asked for on the command line; each kind given replaces the logs'.
    pub fn asked(&self) -> crate::audit::Asked {
        crate::audit::Asked {
            rate: self.rate,
            burst: self.burst,
            quotas: self.quotas.clone(),
            fixed_quotas: self.fixed_quotas.clone(),
            per_host_rate: self.per_host_rate,
            per_host_quotas: self.per_host_quotas.clone(),
        }
    }
}

/// Fill a job queue in Redis for workers (`ratefetch --redis URL --queue NAME -o part.csv`):
/// the list is streamed into it, never more than --max-unread jobs waiting; a second enqueue
/// of the same list adds nothing again, and the end of the list is marked so that workers
/// know when the queue is complete.
#[derive(Debug, Parser)]
#[command(name = "ratefetch enqueue", version = VERSION, max_term_width = 100)]
pub struct EnqueueCli {
    /// URL list, as for ratefetch (text, or CSV whose other columns pass through to the
    /// workers' reports); - or nothing for stdin.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// The Redis the queue lives in: redis://HOST:PORT[/DB], rediss://…, redis+unix:///PATH.
    #[arg(long, value_name = "URL", required = true)]
    pub redis: String,

    /// The queue's name (the workers' --queue).
    #[arg(long, value_name = "NAME", required = true)]
    pub queue: String,

    /// How INPUT is read: text (one URL per line) or csv (a header row, then one job per
    /// row); csv for a .csv or .tsv path or with --delimiter, else text.
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub input_format: Option<InputFormat>,

    /// The column holding the URL in a CSV input (default: a column named url, else the
    /// first).
    #[arg(long, value_name = "NAME")]
    pub url_column: Option<String>,

    /// The cell separator of a CSV input, as for ratefetch.
    #[arg(long, value_name = "C", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,

    /// Wait while the queue holds more than N jobs not done yet.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unread: u64,

    /// How long to try to reach Redis at the start.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// No summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

impl EnqueueCli {
    /// The settings `enqueue` reads the list with.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let input = match self.input {
            None => InputSource::Stdin,
            Some(p) if p.as_os_str() == "-" => InputSource::Stdin,
            Some(p) => InputSource::Path(p),
        };
        let config = Config {
            input,
            redis: Some(self.redis),
            queue: Some(self.queue),
            input_format: self.input_format,
            url_column: self.url_column,
            delimiter: self.delimiter,
            connect_timeout: self.connect_timeout,
            quiet: self.quiet,
            ..Config::default()
        };
        config.validate_enqueue()?;
        Ok(config)
    }
}

/// Print a completion script for ratefetch and its subcommands.
#[derive(Debug, Parser)]
#[command(name = "ratefetch completions", version = VERSION, max_term_width = 100)]
pub struct CompletionsCli {
    /// The shell the script is for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print the man page of ratefetch, or of one of its subcommands (roff), made from the
/// definitions `--help` shows.
#[derive(Debug, Parser)]
#[command(name = "ratefetch man", version = VERSION, max_term_width = 100)]
pub struct ManCli {
    /// A subcommand's page (ratefetch-audit(1) and so on) instead of ratefetch(1).
    #[arg(value_name = "SUBCOMMAND", value_parser = ["audit", "merge", "enqueue", "completions", "man"])]
    pub subcommand: Option<String>,
}

/// The whole command line as one tree, the subcommands under `ratefetch`: what the
/// completion scripts and the man page are made from. (The binary dispatches subcommands
/// itself, before clap sees them: `app::subcommand`.)
pub fn command_tree() -> clap::Command {
    use clap::CommandFactory;
    let sub = |command: clap::Command, name: &'static str| {
        command.name(name).bin_name(format!("ratefetch {name}"))
    };
    Cli::command()
        .subcommand(sub(AuditCli::command(), "audit"))
        .subcommand(sub(MergeCli::command(), "merge"))
        .subcommand(sub(EnqueueCli::command(), "enqueue"))
        .subcommand(sub(CompletionsCli::command(), "completions"))
        .subcommand(sub(ManCli::command(), "man"))
        .disable_help_subcommand(true)
}

/// Merge reports of one input (the --shard parts of a list, reruns) into one: every index
/// once, in index order. Of the rows of one index, a success wins over a failure (what
/// --retry-failed would retry), then the later started_at. A torn last record is cut.
#[derive(Debug, Parser)]
#[command(name = "ratefetch merge", version = VERSION, max_term_width = 100)]
pub struct MergeCli {
    /// Reports (CSV or JSONL, as ratefetch -o wrote them) with the same columns.
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,

    /// The merged report (written to a temporary file next to it, then renamed).
    #[arg(short, long, value_name = "OUT", required = true, value_parser = parse_merge_output)]
    pub output: PathBuf,

    /// Leave out damaged rows (a bad index, an index twice, a stray quote) instead of
    /// refusing their report, each named on stderr: saves the good rows of a damaged report.
    #[arg(long)]
    pub skip_damaged: bool,

    /// No summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `merge -o`: a file, not stdout (the merge is renamed into place).
fn parse_merge_output(s: &str) -> Result<PathBuf, String> {
    if s == "-" {
        return Err("expected a file: a merge is written to a temporary file and renamed".into());
    }
    Ok(PathBuf::from(s))
}

/// The one line printed for a clap error: its first line, which names the flag and the
/// expected form (clap's hint lines are dropped so that scripts see one line). A first line
/// that ends in a colon gets the indented lines under it (the arguments not provided).
pub fn usage_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
    let Some(first) = lines.next() else {
        return "error: invalid arguments".to_string();
    };
    let mut line = first.to_string();
    if first.ends_with(':') {
        for item in lines.take_while(|l| l.starts_with(' ') && !l.trim().is_empty()) {
            line.push(' ');
            line.push_str(item.trim());
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind as ClapKind;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["ratefetch"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| usage_line(&e))?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&[]).unwrap();
        let d = Config::default();
        assert_eq!(c.input, InputSource::Stdin);
        assert_eq!(c.output, OutputTarget::Stdout);
        assert_eq!(c.rate, Rate::Every(Duration::from_millis(100)));
        assert_eq!(c.burst.get(), 1);
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.workers, 16);
        assert_eq!(c.per_host_rate, Rate::Unlimited);
        assert_eq!(c.per_host_concurrency, None);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.retries, 2);
        assert_eq!(c.retry_status, vec![429, 502, 503, 504]);
        assert_eq!(c.backoff, Duration::from_millis(500));
        assert_eq!(c.max_retry_after, Duration::from_secs(60));
        assert_eq!(c.grace, Duration::from_secs(5));
        assert_eq!(c.method, Method::GET);
        assert_eq!(
            c.user_agent,
            format!("ratefetch/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(c.max_redirects, 10);
        assert_eq!(c.max_body, Some(10 * 1024 * 1024));
        assert_eq!(c.format, Format::Csv);
        assert!(!c.quiet && !c.resume);
        // The library default and the CLI default agree.
        assert_eq!(
            (c.rate, c.burst, c.concurrency, c.timeout, c.max_body),
            (d.rate, d.burst, d.concurrency, d.timeout, d.max_body)
        );
    }

    #[test]
    fn every_flag_parses() {
        let c = parse(&[
            "list.txt",
            "-o",
            "out.csv",
            "-r",
            "600/m",
            "--burst",
            "5",
            "-c",
            "8",
            "--workers",
            "4",
            "--per-host-rate",
            "2/s",
            "--per-host-concurrency",
            "2",
            "--timeout",
            "5s",
            "--connect-timeout",
            "250ms",
            "--retries",
            "0",
            "--retry-status",
            "500,503",
            "--backoff",
            "1s",
            "--max-retry-after",
            "2m",
            "--grace",
            "1s",
            "-X",
            "put",
            "-H",
            "X-A: 1",
            "-H",
            "X-B:two",
            "-d",
            "hello",
            "-A",
            "bot/1",
            "--max-redirects",
            "3",
            "--max-body",
            "512KB",
            "--format",
            "jsonl",
            "-q",
            "--resume",
        ])
        .unwrap();
        assert_eq!(c.input, InputSource::Path("list.txt".into()));
        assert_eq!(c.output, OutputTarget::Path("out.csv".into()));
        assert_eq!(c.rate, Rate::Every(Duration::from_millis(100)));
        assert_eq!((c.burst.get(), c.concurrency, c.workers), (5, 8, 4));
        assert_eq!(c.per_host_rate, Rate::Every(Duration::from_millis(500)));
        assert_eq!(c.per_host_concurrency, Some(2));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!((c.retries, c.retry_status.clone()), (0, vec![500, 503]));
        assert_eq!(c.backoff, Duration::from_secs(1));
        assert_eq!(c.max_retry_after, Duration::from_secs(120));
        assert_eq!(c.grace, Duration::from_secs(1));
        assert_eq!(c.method, Method::PUT);
        assert_eq!(c.headers["x-a"], "1");
        assert_eq!(c.headers["x-b"], "two");
        assert_eq!(c.body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.user_agent, "bot/1");
        assert_eq!((c.max_redirects, c.max_body), (3, Some(512_000)));
        assert_eq!(c.format, Format::Jsonl);
        assert!(c.quiet && c.resume);
    }

    #[test]
    fn quotas_are_repeatable_and_keep_their_order() {
        let c = parse(&[
            "--quota",
            "5000/h",
            "--quota",
            "50000/d",
            "--per-host-quota",
            "30/3s",
        ])
        .unwrap();
        let hour = Quota {
            limit: 5000,
            window: Duration::from_secs(3600),
        };
        let day = Quota {
            limit: 50_000,
            window: Duration::from_secs(86_400),
        };
        assert_eq!(c.quotas, [hour, day]);
        assert_eq!(
            c.per_host_quotas,
            [Quota {
                limit: 30,
                window: Duration::from_secs(3)
            }]
        );
        let d = parse(&[]).unwrap();
        assert!(d.quotas.is_empty() && d.per_host_quotas.is_empty());
    }

    #[test]
    fn data_implies_post_and_dash_means_stdin() {
        let c = parse(&["-", "-d", "x=1"]).unwrap();
        assert_eq!(c.method, Method::POST);
        assert_eq!(c.input, InputSource::Stdin);
        assert_eq!(parse(&["--max-body", "0"]).unwrap().max_body, None);
        assert_eq!(parse(&["-r", "unlimited"]).unwrap().rate, Rate::Unlimited);
    }

    #[test]
    fn bad_values_are_one_line_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--rate", "fast"], "--rate"),
            (&["-r", "0"], "--rate"),
            (&["--burst", "0"], "--burst"),
            (&["-c", "0"], "--concurrency"),
            (&["--workers", "100000000"], "--workers"),
            (&["--timeout", "1000y"], "--timeout"),
            (&["--timeout", "30"], "--timeout"),
            (&["--max-body", "ten"], "--max-body"),
            (&["-H", "no-colon"], "--header"),
            (&["--retry-status", "429,abc"], "--retry-status"),
            (&["--format", "xml"], "--format"),
            (&["--per-host-rate", "1/d"], "--per-host-rate"),
            (&["--quota", "5000"], "--quota"),
            (&["--quota", "0/h"], "--quota"),
            (&["--per-host-quota", "10/soon"], "--per-host-quota"),
            (&["--resume"], "--resume"),
        ];
        for (args, flag) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(
                !err.contains('\n'),
                "{args:?}: {err:?} is more than one line"
            );
            assert!(err.contains(flag), "{args:?}: {err:?} does not name {flag}");
        }
        let err = parse(&["--rate", "fast"]).unwrap_err();
        assert!(err.contains("600/m") && err.contains("unlimited"), "{err}");
        let err = parse(&["--max-body", "ten"]).unwrap_err();
        assert!(err.contains("10MiB"), "{err}");
    }

    #[test]
    fn scraping_flags_parse() {
        let c = parse(&[
            "in.csv",
            "--url-column",
            "link",
            "--extract",
            "price=css:.price",
            "--extract",
            "id=json:/id",
            "--extract-all",
            "--fields",
            "url,status,price",
            "--save-bodies",
            "bodies",
        ])
        .unwrap();
        assert!(c.csv_input());
        assert_eq!(c.url_column.as_deref(), Some("link"));
        let names: Vec<&str> = c.extract.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["price", "id"]);
        assert!(c.extract_all);
        assert_eq!(c.fields.unwrap(), ["url", "status", "price"]);
        assert_eq!(c.save_bodies, Some(PathBuf::from("bodies")));
        assert!(!parse(&["list.txt"]).unwrap().csv_input());
        assert!(parse(&["-", "--input-format", "csv"]).unwrap().csv_input());
    }

    #[test]
    fn bad_scraping_flags_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (&["--extract", "p=css:a["][..], "--extract"),
            (&["--extract", "p=regex:("][..], "--extract"),
            (&["--extract", "p=json:x"][..], "--extract"),
            (
                &["--extract", "p=css:a", "--extract", "p=css:b"][..],
                "--extract",
            ),
            (
                &["--input-format", "text", "--url-column", "u"][..],
                "--url-column",
            ),
            (&["list.txt", "--url-column", "u"][..], "--url-column"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?}"));
            assert!(err.contains(flag) && !err.contains('\n'), "{args:?}: {err}");
        }
    }

    fn mode(args: &[&str]) -> Result<Mode, String> {
        let mut argv = vec!["ratefetch"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| usage_line(&e))?;
        cli.into_mode().map_err(|e| e.to_string())
    }

    #[test]
    fn a_plain_invocation_is_a_fetch() {
        match mode(&["list.txt", "-o", "out.csv"]).unwrap() {
            Mode::Fetch(c) => assert_eq!(c.input, InputSource::Path("list.txt".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_failed_is_its_own_mode_carrying_the_report() {
        match mode(&["--retry-failed", "report.csv", "-q"]).unwrap() {
            Mode::RetryFailed { config, report } => {
                assert_eq!(report, PathBuf::from("report.csv"));
                assert!(config.quiet);
                assert_eq!(config.output, OutputTarget::Stdout);
            }
            other => panic!("{other:?}"),
        }
        let err = mode(&["--retry-failed", "report.csv", "-o", "x.csv"]).unwrap_err();
        assert!(
            err.contains("--retry-failed") && err.contains("--output"),
            "{err}"
        );
    }

    /// Issue 19: "takes no an INPUT".
    #[test]
    fn retry_failed_with_an_input_says_it_takes_no_input() {
        let err = mode(&["list.txt", "--retry-failed", "report.csv"]).unwrap_err();
        assert_eq!(
            err,
            "invalid value for --retry-failed: takes no INPUT: the report is both the input and the output"
        );
    }

    #[test]
    fn plan_is_its_own_mode_and_takes_no_retry_failed() {
        match mode(&[
            "list.txt", "--plan", "-r", "5/s", "-o", "out.csv", "--resume",
        ])
        .unwrap()
        {
            Mode::Plan(c) => {
                assert_eq!(c.input, InputSource::Path("list.txt".into()));
                assert_eq!(c.rate, Rate::Every(Duration::from_millis(200)));
                assert!(c.resume);
            }
            other => panic!("{other:?}"),
        }
        let err = mode(&["--plan", "--retry-failed", "report.csv"]).unwrap_err();
        assert!(
            err.contains("--plan") && err.contains("--retry-failed"),
            "{err}"
        );
    }

    #[test]
    fn merge_takes_reports_and_a_file_to_write() {
        let cli = MergeCli::try_parse_from(["ratefetch merge", "a.csv", "b.csv", "-o", "all.csv"])
            .unwrap();
        assert_eq!(
            cli.reports,
            [PathBuf::from("a.csv"), PathBuf::from("b.csv")]
        );
        assert_eq!(cli.output, PathBuf::from("all.csv"));
        assert!(!cli.quiet);
        let usage = |args: &[&str]| {
            let mut argv = vec!["ratefetch merge"];
            argv.extend_from_slice(args);
            usage_line(&MergeCli::try_parse_from(argv).unwrap_err())
        };
        assert_eq!(
            usage(&["a.csv"]),
            "error: the following required arguments were not provided: --output <OUT>"
        );
        assert!(usage(&["-o", "all.csv"]).contains("<REPORT>"));
        assert!(usage(&["a.csv", "-o", "-"]).contains("expected a file"));
    }

    #[test]
    fn help_and_version_are_not_usage_errors() {
        let e = Cli::try_parse_from(["ratefetch", "--help"]).unwrap_err();
        assert_eq!(e.kind(), ClapKind::DisplayHelp);
        let e = Cli::try_parse_from(["ratefetch", "--version"]).unwrap_err();
        assert_eq!(e.kind(), ClapKind::DisplayVersion);
    }
}
