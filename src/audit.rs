//! `ratefetch audit LOG...`: did one run, or several runs together (processes, machines),
//! keep their limits? Reads `--log-requests` files, streaming: each log is sorted in a window
//! of its `max_disorder_ms`, the logs are merged by send time, and each limit is checked on
//! the merged stream with the limits' own models (`limits/`): the rate and the per-host rate
//! as GCRA conformance (`gcra::Gcra`), each quota as an exact sliding count
//! (`window::Exact`), or as a fixed window when asked (`window::Fixed`), and what servers
//! announced: no request to a host after it said nothing remains, before the earliest its
//! reset may be (an announced reset is a bound rounded to whole seconds: the line's
//! `reset_ms` less its `resolution_ms`; a request within that second may be on time, and
//! the server's answer to it says whether it was).
//!
//! The instants judged are the send times as logged (stamped by the worker just before the
//! request is handed to the HTTP client). A line with a `granted` time (a run with
//! `--redis`) is judged at that time, Redis' clock, so logs of several machines do not depend
//! on theirs. Arrivals at the server lag either by the network path.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::limits::gcra::{Gcra, Pace};
use crate::limits::set::{Limit, LimitSet};
use crate::limits::window::{Exact, Fixed};
use crate::reqlog::{Header, READS};
use crate::units::{Quota, Rate};

/// The limits asked for on the command line. Each kind given replaces that kind in the logs'
/// header (`--rate` and `--burst` the rate; `--quota` and `--fixed-quota` the quotas;
/// `--per-host-rate`; `--per-host-quota`); a kind not given is taken from the header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Asked {
    /// `--rate` (`unlimited` checks none).
    pub rate: Option<Rate>,
    /// `--burst`.
    pub burst: Option<NonZeroU32>,
    /// `--quota`s, judged as sliding windows.
    pub quotas: Vec<Quota>,
    /// `--fixed-quota`s, judged as fixed windows.
    pub fixed_quotas: Vec<Quota>,
    /// `--per-host-rate` (burst 1).
    pub per_host_rate: Option<Rate>,
    /// `--per-host-quota`s.
    pub per_host_quotas: Vec<Quota>,
}

impl Asked {
    /// The limits to check: these over the ones the logs' header names.
    pub(crate) fn over(&self, mut header: LimitSet) -> LimitSet {
        if let Some(rate) = self.rate {
            header.rate = rate;
        }
        if let Some(burst) = self.burst {
            header.burst = burst;
        }
        if !self.quotas.is_empty() || !self.fixed_quotas.is_empty() {
            header.quotas = self.quotas.clone();
        }
        if let Some(rate) = self.per_host_rate {
            header.per_host_rate = rate;
        }
        if !self.per_host_quotas.is_empty() {
            header.per_host_quotas = self.per_host_quotas.clone();
        }
        header
    }
}

/// Why an audit could not be done (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A log that cannot be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The log.
        path: PathBuf,
        /// What went wrong, one line.
        why: String,
    },
    /// A plot that cannot be written (`--plot`).
    #[error("cannot write the plot {path}: {why}")]
    Write {
        /// The plot's file.
        path: PathBuf,
        /// What went wrong, one line.
        why: String,
    },
}

/// What an audit found.
#[derive(Debug, Clone)]
pub struct Audit {
    /// One line per fact or limit, for stdout.
    pub lines: Vec<String>,
    /// Whether every limit held.
    pub held: bool,
}

/// A request read from a log: the instant it is judged at (its grant's with `--redis`, else
/// its send time), in microseconds since the epoch, host, status, and what its response
/// announced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Sent {
    pub(crate) t: i64,
    log: usize,
    pub(crate) host: String,
    pub(crate) status: Option<u16>,
    /// `t` is Redis' `granted` instant, not the local send time.
    granted: bool,
    /// The local send time (`t` in the line), µs since the epoch.
    sent: i64,
    /// The response said nothing remains: when it was heard and when it resets (µs since
    /// the epoch); `None` for the instant heard when the line does not say (version 1).
    spent: Option<Option<(i64, i64)>>,
}

/// The longest line a log may have. An honest line is a few hundred bytes; a longer one is
/// damage, and is never held in memory whole.
const MAX_LINE: usize = 64 * 1024;

/// One log, read in send order (sorted within its announced disorder). Memory is the lines
/// of one disorder window, each at most `MAX_LINE`: nothing in proportion to a time or a
/// count written in the log.
struct Reader<R = BufReader<File>> {
    path: PathBuf,
    input: R,
    /// The line being read (reused).
    line: Vec<u8>,
    log: usize,
    buffer: BinaryHeap<Reverse<Sent>>,
    /// The latest send time read so far.
    latest: i64,
    disorder_us: i64,
    /// Limits named by the log's first header.
    limits: Option<LimitSet>,
    done: bool,
    line_no: u64,
    /// Why the last line read did not parse: an error unless it was the last line.
    torn: Option<String>,
}

impl Reader {
    fn open(path: &Path, log: usize) -> Result<Reader, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::Read {
            path: path.into(),
            why: e.to_string(),
        })?;
        Ok(Reader::new(path, BufReader::new(file), log))
    }
}

impl<R: BufRead> Reader<R> {
    fn new(path: &Path, input: R, log: usize) -> Reader<R> {
        Reader {
            path: path.into(),
            input,
            line: Vec::new(),
            log,
            buffer: BinaryHeap::new(),
            latest: i64::MIN,
            disorder_us: 0,
            limits: None,
            done: false,
            line_no: 0,
            torn: None,
        }
    }

    fn bad(&self, why: impl Into<String>) -> AuditError {
        AuditError::Read {
            path: self.path.clone(),
            why: format!("line {}: {}", self.line_no, why.into()),
        }
    }

    /// The next request in send order.
    fn next(&mut self) -> Result<Option<Sent>, AuditError> {
        loop {
            if let Some(Reverse(first)) = self.buffer.peek() {
                if self.done || first.t < self.latest.saturating_sub(self.disorder_us) {
                    return Ok(self.buffer.pop().map(|Reverse(s)| s));
                }
            } else if self.done {
                return Ok(None);
            }
            self.read_one()?;
        }
    }

    /// Reads one line into the buffer (or notes the end).
    fn read_one(&mut self) -> Result<(), AuditError> {
        let mut line = std::mem::take(&mut self.line);
        let result = self.read_line(&mut line);
        line.clear();
        self.line = line;
        result
    }

    fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), AuditError> {
        line.clear();
        let read = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', line);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.line_no += 1;
                return Err(self.bad(e.to_string()));
            }
        };
        if n == 0 {
            // A torn last line (a killed run) is not a request that was logged.
            self.done = true;
            return Ok(());
        }
        let torn = self.torn.take();
        self.line_no += 1;
        if line.len() > MAX_LINE {
            return Err(self.bad(format!(
                "longer than {} KiB: not a request log line",
                MAX_LINE / 1024
            )));
        }
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string());
        let parsed = text.and_then(|t| {
            serde_json::from_str::<Value>(t).map_err(|e| format!("not a JSON line: {e}"))
        });
        if let Some(why) = torn {
            // The line that did not parse was not the last one: fine only if a new run's
            // header follows it (the run that tore it was killed).
            let header = parsed
                .as_ref()
                .is_ok_and(|v| v.get("ratefetch_log").is_some());
            if !header {
                self.line_no -= 1;
                return Err(self.bad(why));
            }
        }
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let v = match parsed {
            Ok(v) => v,
            Err(_) if self.line_no == 1 => {
                return Err(self.bad("not a ratefetch request log (no header line)"));
            }
            Err(why) => {
                self.torn = Some(why);
                return Ok(());
            }
        };
        if let Some(version) = v.get("ratefetch_log") {
            if !version.as_u64().is_some_and(|n| READS.contains(&n)) {
                return Err(self.bad(format!("log format {version} is not known")));
            }
            let header: Header = serde_json::from_value(v)
                .map_err(|e| self.bad(format!("a header that does not read: {e}")))?;
            let disorder = header.max_disorder_ms.unwrap_or(60_000);
            self.disorder_us = self.disorder_us.max(disorder.saturating_mul(1000));
            if self.limits.is_none() {
                self.limits = Some(header.limits.unwrap_or_default());
            }
            return Ok(());
        }
        if self.line_no == 1 {
            return Err(self.bad("not a ratefetch request log (no header line)"));
        }
        // A grant's instant on Redis' clock (`--redis`) is one clock for every machine.
        let time = |field: &str| {
            v[field]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .map(micros)
        };
        let sent = time("t");
        let granted = time("granted");
        let t = granted.or(sent).ok_or_else(|| self.bad("no send time"))?;
        self.latest = self.latest.max(t);
        let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        let said = &v["ratelimit"];
        let spent = (said["remaining"].as_u64() == Some(0)).then(|| {
            // The earliest the reset may be: a send after it may be on time.
            let reset = said["reset_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(said["resolution_ms"].as_u64().unwrap_or(0));
            let heard = said["heard"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .map(micros);
            heard.map(|h| {
                let reset_us = i64::try_from(reset.saturating_mul(1000)).unwrap_or(i64::MAX);
                (h, h.saturating_add(reset_us))
            })
        });
        self.buffer.push(Reverse(Sent {
            t,
            log: self.log,
            host: v["host"].as_str().unwrap_or("").to_string(),
            status,
            granted: granted.is_some(),
            sent: sent.unwrap_or(t),
            spent,
        }));
        Ok(())
    }
}

/// The requests of several logs, merged in send order.
pub(crate) struct Merged {
    readers: Vec<Reader>,
    heads: BinaryHeap<Reverse<Sent>>,
}

impl Merged {
    pub(crate) fn open(logs: &[PathBuf]) -> Result<Merged, AuditError> {
        let mut readers: Vec<Reader> = logs
            .iter()
            .enumerate()
            .map(|(i, p)| Reader::open(p, i))
            .collect::<Result<_, _>>()?;
        let mut heads = BinaryHeap::new();
        for r in &mut readers {
            if let Some(s) = r.next()? {
                heads.push(Reverse(s));
            }
        }
        Ok(Merged { readers, heads })
    }

    /// The limits the first log that names any names (known once its header is read).
    pub(crate) fn limits(&self) -> LimitSet {
        self.readers
            .iter()
            .find_map(|r| r.limits.clone())
            .unwrap_or_default()
    }

    /// The next request of all the logs, in send order.
    pub(crate) fn next(&mut self) -> Result<Option<Sent>, AuditError> {
        let Some(Reverse(s)) = self.heads.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.readers[s.log].next()? {
            self.heads.push(Reverse(next));
        }
        Ok(Some(s))
    }
}

fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn time_text(us: i64) -> String {
    let t = if us >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    humantime::format_rfc3339_micros(t).to_string()
}

/// An instant of the audit: µs since the epoch, as a `Duration` since the earliest one a log
/// can name, so that the limits' models (generic over `gcra::Time`) judge it to the
/// nanosecond.
fn instant(us: i64) -> Duration {
    Duration::from_micros((i128::from(us) - i128::from(i64::MIN)) as u64)
}

/// The µs since the epoch of an audit instant.
fn epoch_us(at: Duration) -> i64 {
    (at.as_micros() as i128 + i128::from(i64::MIN))
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The first broken limit: when, and what.
type Broken = Option<(Duration, String)>;

fn note(broken: &mut Broken, at: Duration, what: impl FnOnce() -> String) {
    if broken.is_none() {
        *broken = Some((at, what()));
    }
}

/// A request as the judge sees it.
pub(crate) struct Request<'a> {
    /// The instant judged (send time, or Redis' grant).
    pub at: Duration,
    pub host: &'a str,
    pub status: Option<u16>,
    /// Judged at Redis' grant.
    pub granted: bool,
    /// The local send time (for announced limits, heard on the local clock).
    pub sent: Duration,
    /// The response said nothing remains: heard when, reset when (`None`: not said when).
    pub spent: Option<Option<(Duration, Duration)>>,
}

/// A GCRA check: the state, the most a send was early, the first send too early.
#[derive(Default)]
struct Paced {
    gcra: Gcra<Duration>,
    earliest: Duration,
}

impl Paced {
    /// Counts a send at `at`; returns how much earlier than the GCRA allows it was.
    fn send(&mut self, pace: Pace, at: Duration) -> Duration {
        let early = self.gcra.early_by(pace, at);
        self.earliest = self.earliest.max(early);
        self.gcra.record(pace, at);
        early
    }
}

/// What one host did.
struct Host {
    paced: Paced,
    quotas: Vec<Exact<Duration>>,
    /// Announcements that nothing remains: heard, reset (pruned once past).
    holds: Vec<(Duration, Duration)>,
}

/// Judges requests, in the order of their instants, against a set of limits.
pub(crate) struct Judge {
    limits: LimitSet,
    fixed_quotas: Vec<Quota>,
    tolerance: Duration,
    requests: u64,
    granted: u64,
    s429: u64,
    s403: u64,
    span: Option<(Duration, Duration)>,
    rate: Paced,
    broken_rate: Broken,
    quotas: Vec<(Exact<Duration>, Broken)>,
    fixed: Vec<(Fixed<Duration>, Broken)>,
    hosts: HashMap<String, Host>,
    broken_host_rate: Broken,
    broken_host_quota: Vec<Broken>,
    busiest_host_quota: Vec<(usize, String)>,
    spent: u64,
    spent_unheard: u64,
    broken_announced: Broken,
}

/// A window shortened by the tolerance: clock noise on either end of it.
fn shortened(q: Quota, tolerance: Duration) -> Quota {
    Quota {
        limit: q.limit,
        window: q.window.saturating_sub(tolerance),
    }
}

fn text(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    }
}

impl Judge {
    pub(crate) fn new(limits: LimitSet, fixed_quotas: Vec<Quota>, tolerance: Duration) -> Judge {
        let window = |q: &Quota| shortened(*q, tolerance);
        Judge {
            quotas: limits
                .quotas
                .iter()
                .map(|q| (Exact::new(window(q)), None))
                .collect(),
            fixed: fixed_quotas
                .iter()
                .map(|q| (Fixed::new(window(q)), None))
                .collect(),
            broken_host_quota: vec![None; limits.per_host_quotas.len()],
            busiest_host_quota: vec![(0, String::new()); limits.per_host_quotas.len()],
            limits,
            fixed_quotas,
            tolerance,
            requests: 0,
            granted: 0,
            s429: 0,
            s403: 0,
            span: None,
            rate: Paced::default(),
            broken_rate: None,
            hosts: HashMap::new(),
            broken_host_rate: None,
            spent: 0,
            spent_unheard: 0,
            broken_announced: None,
        }
    }

    /// Judges one request; requests come in the order of their instants.
    pub(crate) fn send(&mut self, r: &Request<'_>) {
        let (at, tol) = (r.at, self.tolerance);
        self.requests += 1;
        self.granted += u64::from(r.granted);
        let first = self.span.map_or(at, |(f, _)| f);
        self.span = Some((first, at));
        match r.status {
            Some(429) => self.s429 += 1,
            Some(403) => self.s403 += 1,
            _ => {}
        }
        if let Some(pace) = self.limits.global_pace() {
            let early = self.rate.send(pace, at);
            if early > tol {
                note(&mut self.broken_rate, at, || {
                    format!("{} earlier than the GCRA allows", text(early))
                });
            }
        }
        for (w, broken) in &mut self.quotas {
            let n = w.record(at);
            if n as u64 > w.quota().limit {
                note(broken, at, || {
                    format!("{n} requests in {}", duration(w.quota().window + tol))
                });
            }
        }
        for (w, broken) in &mut self.fixed {
            let n = w.record(at);
            if n > w.quota().limit {
                note(broken, at, || {
                    format!(
                        "{n} requests in a fixed window of {}",
                        duration(w.quota().window + tol)
                    )
                });
            }
        }
        let per_host_quotas = &self.limits.per_host_quotas;
        let host = match self.hosts.get_mut(r.host) {
            Some(h) => h,
            None => self
                .hosts
                .entry(r.host.to_string())
                .or_insert_with(|| Host {
                    paced: Paced::default(),
                    quotas: per_host_quotas
                        .iter()
                        .map(|q| Exact::new(shortened(*q, tol)))
                        .collect(),
                    holds: Vec::new(),
                }),
        };
        if let Some(pace) = self.limits.host_pace() {
            let early = host.paced.send(pace, at);
            if early > tol {
                note(&mut self.broken_host_rate, at, || {
                    format!(
                        "host {}: {} earlier than its GCRA allows",
                        r.host,
                        text(early)
                    )
                });
            }
        }
        for (i, w) in host.quotas.iter_mut().enumerate() {
            let n = w.record(at);
            if n > self.busiest_host_quota[i].0 {
                self.busiest_host_quota[i] = (n, r.host.to_string());
            }
            if n as u64 > w.quota().limit {
                note(&mut self.broken_host_quota[i], at, || {
                    format!(
                        "host {}: {n} requests in {}",
                        r.host,
                        duration(w.quota().window + tol)
                    )
                });
            }
        }
        // Announced limits, on the local clock the announcement was heard on.
        host.holds.retain(|&(_, reset)| reset > r.sent);
        if let Some(&(heard, reset)) = host
            .holds
            .iter()
            .find(|(heard, reset)| r.sent >= *heard + tol && r.sent + tol < *reset)
        {
            note(&mut self.broken_announced, at, || {
                format!(
                    "host {}: sent {} after it said nothing remains, {} before the reset",
                    r.host,
                    text(r.sent - heard),
                    text(reset - r.sent)
                )
            });
        }
        match r.spent {
            None => {}
            Some(None) => self.spent_unheard += 1,
            Some(Some(hold)) => {
                self.spent += 1;
                host.holds.push(hold);
            }
        }
    }

    /// The report: the facts, the promise, the instants judged, and a verdict per limit.
    pub(crate) fn report(self, logs: usize) -> Audit {
        let mut lines = Vec::new();
        let mut head = format!("{} requests in {logs} log(s)", self.requests);
        if self.limits.host_pace().is_some() || !self.limits.per_host_quotas.is_empty() {
            let _ = write!(head, ", {} hosts", self.hosts.len());
        }
        let _ = write!(
            head,
            ", {} answered 429, {} answered 403",
            self.s429, self.s403
        );
        if let Some((f, l)) = self.span {
            let _ = write!(
                head,
                ", from {} to {}",
                time_text(epoch_us(f)),
                time_text(epoch_us(l))
            );
        }
        lines.push(head);
        let sent = self.requests - self.granted;
        let mut judged = Vec::new();
        if self.granted > 0 {
            judged.push(format!(
                "{} at Redis' granted instants (the shared limits' one clock)",
                self.granted
            ));
        }
        if sent > 0 {
            judged.push(format!(
                "{sent} at the send times as logged (stamped by the worker just before the \
                 request is handed to the HTTP client)"
            ));
        }
        if !judged.is_empty() {
            lines.push(format!(
                "judged: {}; arrivals at the server lag these by the network path; tolerance {}",
                judged.join(", "),
                duration(self.tolerance)
            ));
        }
        if let Some(Limit::Rate { rate, burst }) = self.limits.limits().first().copied() {
            lines.push(promise(rate, burst));
        }
        let mut held = true;
        let mut verdict = |name: String, measured: String, broken: &Broken| {
            lines.push(match broken {
                None => format!("{name}: held ({measured})"),
                Some((at, what)) => {
                    held = false;
                    format!(
                        "{name}: BROKEN at {}: {what} ({measured})",
                        time_text(epoch_us(*at))
                    )
                }
            });
        };
        let early = |d: Duration| {
            if d.is_zero() {
                "no send earlier than the GCRA allows".to_string()
            } else {
                format!("the earliest send {} before the GCRA allowed it", text(d))
            }
        };
        let mut quotas = self.quotas.iter();
        let mut host_quotas = self.busiest_host_quota.iter().zip(&self.broken_host_quota);
        for limit in self.limits.limits() {
            match limit {
                Limit::Rate { .. } => verdict(
                    limit.to_string(),
                    early(self.rate.earliest),
                    &self.broken_rate,
                ),
                Limit::Quota(q) => {
                    let (w, broken) = quotas.next().expect("a count per quota");
                    verdict(
                        limit.to_string(),
                        format!("busiest window: {} of {}", w.busiest(), q.limit),
                        broken,
                    );
                }
                Limit::PerHostRate(_) => {
                    let (worst, host) = self
                        .hosts
                        .iter()
                        .map(|(h, s)| (s.paced.earliest, h.as_str()))
                        .max()
                        .unwrap_or_default();
                    verdict(
                        limit.to_string(),
                        format!("worst host {host}: {}", early(worst)),
                        &self.broken_host_rate,
                    );
                }
                Limit::PerHostQuota(q) => {
                    let ((n, host), broken) = host_quotas.next().expect("a count per quota");
                    verdict(
                        limit.to_string(),
                        format!("busiest window: {n} of {} (host {host})", q.limit),
                        broken,
                    );
                }
                Limit::FixedQuota(_) => {}
            }
        }
        for (q, (w, broken)) in self.fixed_quotas.iter().zip(&self.fixed) {
            verdict(
                Limit::FixedQuota(*q).to_string(),
                format!("busiest fixed window: {} of {}", w.busiest(), q.limit),
                broken,
            );
        }
        let mut said = format!(
            "{} times a host said nothing remains, and no request went to it before the reset",
            self.spent
        );
        if self.broken_announced.is_some() {
            said = format!("{} times a host said nothing remains", self.spent);
        }
        if self.spent_unheard > 0 {
            let _ = write!(
                said,
                "; {} more not judged: their lines do not say when they were heard (log \
                 format 1)",
                self.spent_unheard
            );
        }
        verdict("announced limits".to_string(), said, &self.broken_announced);
        Audit { lines, held }
    }
}

/// The rate promise, in the words of DESIGN.md §3.
fn promise(rate: Rate, burst: NonZeroU32) -> String {
    let name = Limit::Rate { rate, burst };
    format!(
        "the promise: at {name} the sends obey the GCRA with period 1/R and burst B: at most B \
         at once; at burst 1 no request closer than 1/R to the one before it"
    )
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Audits `logs` against the limits `asked` puts over the ones the first log names, with
/// `tolerance` of clock noise allowed on each window and each GCRA check.
pub fn audit(logs: &[PathBuf], asked: &Asked, tolerance: Duration) -> Result<Audit, AuditError> {
    let mut sends = Merged::open(logs)?;
    let limits = asked.over(sends.limits());
    let mut judge = Judge::new(limits, asked.fixed_quotas.clone(), tolerance);
    while let Some(s) = sends.next()? {
        judge.send(&Request {
            at: instant(s.t),
            host: &s.host,
            status: s.status,
            granted: s.granted,
            sent: instant(s.sent),
            spent: s
                .spent
                .map(|h| h.map(|(heard, reset)| (instant(heard), instant(reset)))),
        });
    }
    Ok(judge.report(logs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = r#"{"ratefetch_log":1,"started":"2026-12-02T10:00:00Z","max_disorder_ms":1000,"limits":{"rate":"10/s","burst":1,"quotas":["5/1s"],"per_host_rate":"5/s","per_host_quotas":["3/1s"]}}"#;

    /// Reads `bytes` as a log to its end: the requests in send order, or the damage.
    fn read_all(bytes: &[u8]) -> Result<Vec<Sent>, String> {
        let mut r = Reader::new(Path::new("log.jsonl"), std::io::Cursor::new(bytes), 0);
        let mut sent = Vec::new();
        loop {
            let next = r.next();
            // Memory: one line at most, whatever the input holds.
            assert!(
                r.line.capacity() <= 2 * (MAX_LINE + 1),
                "{}",
                r.line.capacity()
            );
            match next {
                Ok(Some(s)) => sent.push(s),
                Ok(None) => return Ok(sent),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The line number a damage message names.
    fn line_of(message: &str) -> u64 {
        let at = message.find(": line ").expect("the message names a line") + 7;
        let digits: String = message[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a line number")
    }

    fn line(ms: u64, host: &str, status: u16) -> String {
        let t =
            humantime::parse_rfc3339("2026-12-02T10:00:00Z").unwrap() + Duration::from_millis(ms);
        format!(
            "{{\"t\":\"{}\",\"host\":\"{host}\",\"index\":1,\"attempt\":1,\"status\":{status}}}",
            humantime::format_rfc3339_micros(t)
        )
    }

    #[test]
    fn a_damaged_line_is_named_by_its_number() {
        let log = format!(
            "{HEADER}\n{}\nnot json\n{}\n",
            line(0, "h", 200),
            line(100, "h", 200)
        );
        let e = read_all(log.as_bytes()).unwrap_err();
        assert_eq!(line_of(&e), 3, "{e}");
        let log = format!("{HEADER}\n{}\n{{\"host\":\"h\"}}\n", line(0, "h", 200));
        let e = read_all(log.as_bytes()).unwrap_err();
        assert_eq!(line_of(&e), 3, "{e}");
        assert!(e.contains("no send time"), "{e}");
        let mut bytes = format!("{HEADER}\n{}\n", line(0, "h", 200)).into_bytes();
        bytes.extend_from_slice(b"{\"t\":\"\xff\xfe\"}\n");
        bytes.extend_from_slice(line(5, "h", 200).as_bytes());
        let e = read_all(&bytes).unwrap_err();
        assert_eq!(line_of(&e), 3, "{e}");
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_not_damage_even_inside_a_character() {
        let mut bytes = format!("{HEADER}\n{}\n", line(0, "h", 200)).into_bytes();
        bytes.extend_from_slice(b"{\"t\":\"2026-12-02T10:00:01Z\",\"host\":\"\xc3");
        assert_eq!(read_all(&bytes).unwrap().len(), 1);
    }

    #[test]
    fn a_line_longer_than_any_log_line_is_damage_and_is_not_held_whole() {
        let mut bytes = format!("{HEADER}\n{}\n", line(0, "h", 200)).into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', 10 << 20));
        let e = read_all(&bytes).unwrap_err();
        assert_eq!(line_of(&e), 3, "{e}");
        assert!(e.contains("longer than 64 KiB"), "{e}");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What a response said: nothing remains, heard at ms, reset after ms.
    type Spent = Option<(u64, u64)>;

    /// Judges requests at these ms (host, and what the response said: nothing remains,
    /// heard at ms, reset after ms).
    fn judged(
        limits: LimitSet,
        fixed: &[Quota],
        tolerance: Duration,
        sends: &[(u64, &str, Spent)],
    ) -> Audit {
        let mut judge = Judge::new(limits, fixed.to_vec(), tolerance);
        for (at, host, spent) in sends {
            judge.send(&Request {
                at: ms(*at),
                host,
                status: Some(200),
                granted: false,
                sent: ms(*at),
                spent: spent.map(|(heard, reset)| Some((ms(heard), ms(heard + reset)))),
            });
        }
        judge.report(1)
    }

    fn verdict<'a>(audit: &'a Audit, name: &str) -> &'a str {
        audit
            .lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {:?}", audit.lines))
    }

    fn quota(text: &str) -> Quota {
        crate::units::parse_quota(text).unwrap()
    }

    #[test]
    fn a_host_that_said_nothing_remains_gets_nothing_before_its_reset() {
        let none = LimitSet::default();
        // h says at 0 (heard at 30 ms) that nothing remains for 1 s. A request sent at 20 ms
        // was in flight before it was heard; other hosts go on; at 1030 ms the reset is past.
        let honest = [
            (0, "h", Some((30, 1000))),
            (20, "h", None),
            (500, "other", None),
            (1030, "h", None),
        ];
        let a = judged(none.clone(), &[], ms(1), &honest);
        assert!(a.held, "{:?}", a.lines);
        assert!(
            verdict(&a, "announced limits").contains("held (1 times"),
            "{:?}",
            a.lines
        );
        let mut early = honest.to_vec();
        early.push((600, "h", None));
        early.sort_by_key(|s| s.0);
        let a = judged(none, &[], ms(1), &early);
        assert!(!a.held);
        let v = verdict(&a, "announced limits");
        assert!(
            v.contains("BROKEN at ") && v.contains("host h: sent 570.000 ms after"),
            "{v}"
        );
    }

    #[test]
    fn a_fixed_quota_holds_where_the_sliding_one_breaks() {
        let sends: Vec<(u64, &str, Spent)> = [0, 900, 1000, 1100]
            .iter()
            .map(|t| (*t, "h", None))
            .collect();
        let limits = LimitSet {
            quotas: vec![quota("2/1s")],
            ..LimitSet::default()
        };
        let sliding = judged(limits, &[], ms(1), &sends);
        assert!(!sliding.held);
        assert!(
            verdict(&sliding, "--quota 2/1s").contains("BROKEN"),
            "{:?}",
            sliding.lines
        );
        let fixed = judged(LimitSet::default(), &[quota("2/1s")], ms(1), &sends);
        assert!(fixed.held, "{:?}", fixed.lines);
        assert!(verdict(&fixed, "--fixed-quota 2/1s").contains("busiest fixed window: 2 of 2"));
        // A third in the window that opened at 1000 ms breaks it.
        let mut more = sends.clone();
        more.push((1998, "h", None));
        let fixed = judged(LimitSet::default(), &[quota("2/1s")], ms(1), &more);
        assert!(
            verdict(&fixed, "--fixed-quota 2/1s").contains("BROKEN"),
            "{:?}",
            fixed.lines
        );
    }

    #[test]
    fn flags_replace_their_kind_of_limit_and_the_header_gives_the_rest() {
        let header = LimitSet {
            rate: crate::units::parse_rate("10/s").unwrap(),
            quotas: vec![quota("5/1s")],
            ..LimitSet::default()
        };
        assert_eq!(Asked::default().over(header.clone()), header);
        let asked = Asked {
            burst: NonZeroU32::new(4),
            fixed_quotas: vec![quota("9/1m")],
            ..Asked::default()
        };
        assert_eq!(
            asked.over(header.clone()).to_string(),
            "--rate 10/s --burst 4",
            "the fixed quota replaces the header's quotas"
        );
        let asked = Asked {
            rate: Some(Rate::Unlimited),
            per_host_quotas: vec![quota("1/1s")],
            ..Asked::default()
        };
        assert_eq!(
            asked.over(header).to_string(),
            "--quota 5/1s --per-host-quota 1/1s"
        );
    }

    #[test]
    fn the_report_states_the_promise_and_the_instants_it_judged() {
        let limits = LimitSet {
            rate: crate::units::parse_rate("10/s").unwrap(),
            ..LimitSet::default()
        };
        let a = judged(limits, &[], ms(1), &[(0, "h", None), (100, "h", None)]);
        assert!(
            a.lines.iter().any(|l| l
                == "the promise: at --rate 10/s --burst 1 the sends obey the GCRA with period \
                1/R and burst B: at most B at once; at burst 1 no request closer than 1/R to \
                the one before it"),
            "{:?}",
            a.lines
        );
        assert!(
            a.lines.iter().any(|l| l.starts_with(
                "judged: 2 at the send times as logged (stamped by the worker just before the \
             request is handed to the HTTP client); arrivals at the server lag these by the \
             network path"
            )),
            "{:?}",
            a.lines
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        /// Sends that obey the GCRA exactly, each at the earliest instant it allows or later,
        /// hold with no tolerance at all; one sent a microsecond earlier than allowed does not.
        #[test]
        fn sends_that_obey_the_gcra_exactly_hold_with_no_tolerance(
            period_us in 1u64..50_000,
            burst in 1u32..8,
            offers in proptest::collection::vec(0u64..100_000, 2..200),
        ) {
            let pace = Pace { period: Duration::from_micros(period_us), burst };
            let limits = LimitSet {
                rate: Rate::Every(pace.period),
                burst: NonZeroU32::new(burst).unwrap(),
                ..LimitSet::default()
            };
            let mut gcra = Gcra::new();
            let mut sends = Vec::new();
            let mut now = Duration::ZERO;
            for gap in offers {
                now = gcra.earliest(pace, now + Duration::from_micros(gap));
                gcra.record(pace, now);
                sends.push(now);
            }
            let judge = |sends: &[Duration]| {
                let mut judge = Judge::new(limits.clone(), Vec::new(), Duration::ZERO);
                for (i, at) in sends.iter().enumerate() {
                    // A host each, so that only the global rate is tested at its edge.
                    let host = format!("h{i}");
                    judge.send(&Request { at: *at, host: &host, status: None, granted: false, sent: *at, spent: None });
                }
                judge.report(1)
            };
            let audit = judge(&sends);
            prop_assert!(audit.held, "{:?}", audit.lines);
            // The next send a microsecond before the GCRA allows it is caught.
            let next = gcra.earliest(pace, now);
            let before = next.saturating_sub(Duration::from_micros(1));
            if before >= now && next > now {
                sends.push(before);
                let audit = judge(&sends);
                prop_assert!(!audit.held, "{:?}", audit.lines);
            }
        }
    }

    /// One way to damage a valid log.
    #[derive(Debug, Clone)]
    enum Damage {
        /// Replace the bytes of a line from `at` with `with`.
        Splice {
            line: usize,
            at: usize,
            with: Vec<u8>,
        },
        /// Replace a line's `t` with this text.
        Time { line: usize, t: String },
        /// Replace a header field's value with this JSON.
        Header { field: &'static str, value: String },
        /// Drop a field of a line.
        Drop { line: usize, field: &'static str },
        /// Cut the log at this byte (a torn last line).
        Tear { at: usize },
    }

    fn damage() -> impl Strategy<Value = Damage> {
        let times = prop_oneof![
            Just("1970-01-01T00:00:00Z".to_string()),
            Just("2100-01-01T00:00:00Z".to_string()),
            Just("9999-12-31T23:59:59.999999Z".to_string()),
            Just("0000-01-01T00:00:00Z".to_string()),
            Just("-2026-12-02T10:00:00Z".to_string()),
            Just("2026-13-40T25:61:61Z".to_string()),
            Just(String::new()),
            "[0-9:TZ.-]{0,40}",
        ];
        let header_values = prop_oneof![
            Just("\"NaN/s\"".to_string()),
            Just("\"inf/s\"".to_string()),
            Just("\"-1/s\"".to_string()),
            Just("\"1e999/s\"".to_string()),
            Just("\"0.0000000001/s\"".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("1e999".to_string()),
            Just("null".to_string()),
            Just("[\"99999999999999999999/1s\"]".to_string()),
            Just("[\"5/0s\"]".to_string()),
            Just("{}".to_string()),
        ];
        let fields = prop_oneof![
            Just("t"),
            Just("host"),
            Just("status"),
            Just("index"),
            Just("granted")
        ];
        let header_fields = prop_oneof![
            Just("max_disorder_ms"),
            Just("ratefetch_log"),
            Just("limits"),
            Just("rate"),
            Just("burst"),
            Just("quotas"),
            Just("per_host_rate"),
            Just("per_host_quotas"),
        ];
        prop_oneof![
            (
                0..12usize,
                0..200usize,
                proptest::collection::vec(any::<u8>(), 0..12)
            )
                .prop_map(|(line, at, with)| Damage::Splice { line, at, with }),
            (1..12usize, times).prop_map(|(line, t)| Damage::Time { line, t }),
            (header_fields, header_values)
                .prop_map(|(field, value)| Damage::Header { field, value }),
            (1..12usize, fields).prop_map(|(line, field)| Damage::Drop { line, field }),
            (0..3000usize).prop_map(|at| Damage::Tear { at }),
        ]
    }

    /// A valid log of `sends` (ms from the start, host, status), with `damage` done to it.
    fn damaged_log(sends: &[(u64, u8, u16)], damage: &[Damage]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = vec![HEADER.as_bytes().to_vec()];
        for (ms, host, status) in sends {
            lines.push(line(*ms, &format!("h{host}"), *status).into_bytes());
        }
        let mut tear = None;
        for d in damage {
            match d {
                Damage::Splice { line, at, with } => {
                    let n = lines.len();
                    let l = &mut lines[line % n];
                    let at = (*at).min(l.len());
                    l.truncate(at);
                    l.extend_from_slice(with);
                }
                Damage::Time { line, t } => {
                    let n = lines.len();
                    let l = &mut lines[line % n];
                    if let Ok(mut v) = serde_json::from_slice::<Value>(l) {
                        if v.get("t").is_some() {
                            v["t"] = t.as_str().into();
                            *l = serde_json::to_vec(&v).unwrap();
                        }
                    }
                }
                Damage::Header { field, value } => {
                    let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
                    let mut v: Value = serde_json::from_slice(&lines[0]).unwrap_or(Value::Null);
                    if v.is_object() {
                        if v.get(*field).is_some() {
                            v[*field] = value;
                        } else if v["limits"].is_object() {
                            v["limits"][*field] = value;
                        }
                        lines[0] = serde_json::to_vec(&v).unwrap();
                    }
                }
                Damage::Drop { line, field } => {
                    let n = lines.len();
                    let l = &mut lines[line % n];
                    if let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(l) {
                        m.remove(*field);
                        *l = serde_json::to_vec(&m).unwrap();
                    }
                }
                Damage::Tear { at } => tear = Some(*at),
            }
        }
        let mut bytes = lines.join(&b'\n');
        bytes.push(b'\n');
        if let Some(at) = tear {
            bytes.truncate(at.min(bytes.len()));
        }
        bytes
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// issue 19: any bytes are read without a panic, in bounded memory, and damage
        /// names a line of the file.
        #[test]
        fn any_bytes_are_read_or_refused_with_a_line_number(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            if let Err(e) = read_all(&bytes) {
                let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                let n = line_of(&e);
                prop_assert!((1..=lines).contains(&n), "{e}");
            }
        }

        /// issue 19: a valid log with huge, negative or malformed times, NaN and infinite
        /// rates, missing fields, non-UTF-8 bytes or a torn last line is audited (and the
        /// plot's reader too) without a panic; damage names a line of the file.
        #[test]
        fn a_damaged_log_is_audited_or_refused_with_a_line_number(
            sends in proptest::collection::vec((0..5000u64, 0..3u8, prop_oneof![Just(200u16), Just(429)]), 0..10),
            damage in proptest::collection::vec(damage(), 0..4),
        ) {
            let bytes = damaged_log(&sends, &damage);
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            match read_all(&bytes) {
                Ok(sent) => prop_assert!(sent.len() <= sends.len()),
                Err(e) => {
                    let n = line_of(&e);
                    prop_assert!((1..=lines).contains(&n), "{e}");
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log.jsonl");
            std::fs::write(&path, &bytes).unwrap();
            match audit(std::slice::from_ref(&path), &Asked::default(), Duration::from_millis(1)) {
                Ok(a) => prop_assert!(!a.lines.is_empty()),
                Err(e) => {
                    let n = line_of(&e.to_string());
                    prop_assert!((1..=lines).contains(&n), "{e}");
                }
            }
        }
    }
}
