//! `ratefetch audit LOG...`: did one run, or several runs together (processes, machines),
//! keep their limits? Reads `--log-requests` files, streaming: each log is sorted in a window
//! of its `max_disorder_ms`, the logs are merged by send time, and each limit is checked on
//! the merged stream — the rate as a GCRA conformance test (no window T holds more than
//! B + R·T), each quota as an exact sliding count. A line with a `granted` time (a run with
//! `--redis`) is checked at that time, Redis' clock, so logs of several machines do not depend
//! on theirs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::units::{parse_quota, parse_rate, Quota, Rate};

/// The limits an audit checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `--rate` (and `--burst`).
    pub rate: Option<(Rate, NonZeroU32)>,
    /// `--quota`s.
    pub quotas: Vec<Quota>,
    /// `--per-host-rate` (burst 1).
    pub per_host_rate: Option<Rate>,
    /// `--per-host-quota`s.
    pub per_host_quotas: Vec<Quota>,
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

/// A request read from a log: send time in microseconds since the epoch, host, status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Sent {
    pub(crate) t: i64,
    log: usize,
    pub(crate) host: String,
    pub(crate) status: Option<u16>,
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
    limits: Option<Limits>,
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
            if version.as_u64() != Some(crate::reqlog::VERSION) {
                return Err(self.bad(format!("log format {version} is not known")));
            }
            let disorder = v["max_disorder_ms"].as_i64().unwrap_or(60_000);
            self.disorder_us = self.disorder_us.max(disorder.saturating_mul(1000));
            if self.limits.is_none() {
                self.limits = Some(limits_of(&v["limits"]).map_err(|e| self.bad(e))?);
            }
            return Ok(());
        }
        if self.line_no == 1 {
            return Err(self.bad("not a ratefetch request log (no header line)"));
        }
        // A grant's instant on Redis' clock (`--redis`) is one clock for every machine.
        let t = v["granted"]
            .as_str()
            .or_else(|| v["t"].as_str())
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .ok_or_else(|| self.bad("no send time"))?;
        let t = micros(t);
        self.latest = self.latest.max(t);
        let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        self.buffer.push(Reverse(Sent {
            t,
            log: self.log,
            host: v["host"].as_str().unwrap_or("").to_string(),
            status,
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
    pub(crate) fn limits(&self) -> Limits {
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

/// The limits a log's header names.
fn limits_of(v: &Value) -> Result<Limits, String> {
    let rate = |v: &Value| -> Result<Option<Rate>, String> {
        match v.as_str() {
            None => Ok(None),
            Some(r) => parse_rate(r).map(Some),
        }
    };
    let quotas = |v: &Value| -> Result<Vec<Quota>, String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(parse_quota)
                    .collect()
            })
            .unwrap_or(Ok(Vec::new()))
    };
    let burst = v["burst"]
        .as_u64()
        .and_then(|b| u32::try_from(b).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN);
    Ok(Limits {
        rate: rate(&v["rate"])?.map(|r| (r, burst)),
        quotas: quotas(&v["quotas"])?,
        per_host_rate: rate(&v["per_host_rate"])?,
        per_host_quotas: quotas(&v["per_host_quotas"])?,
    })
}

/// A GCRA conformance check: the least burst the sends needed at a rate (the peak of
/// `1 + excess`), and the first send that needed more than allowed.
#[derive(Debug, Default, Clone)]
struct Pace {
    prev: Option<i64>,
    level: f64,
    peak: f64,
}

impl Pace {
    /// Counts a send at `t` µs at `per_us` requests per µs; returns the level reached: the
    /// most of (count − R·span) over the windows that end with this send. A window holds
    /// more than B + R·(T + tolerance) exactly when the level exceeds B + R·tolerance.
    fn send(&mut self, t: i64, per_us: f64) -> f64 {
        let drained = self
            .prev
            .map_or(f64::INFINITY, |p| (t - p).max(0) as f64 * per_us);
        self.level = (self.level - drained).max(0.0) + 1.0;
        self.prev = Some(t);
        self.peak = self.peak.max(self.level);
        self.level
    }
}

/// A sliding count for one quota (shortened by the tolerance).
#[derive(Debug, Default)]
struct Count {
    times: VecDeque<i64>,
    busiest: usize,
}

impl Count {
    fn send(&mut self, t: i64, window_us: i64) -> usize {
        while self.times.front().is_some_and(|&f| t - f >= window_us) {
            self.times.pop_front();
        }
        self.times.push_back(t);
        self.busiest = self.busiest.max(self.times.len());
        self.times.len()
    }
}

/// The first broken limit: when, and what.
type Broken = Option<(i64, String)>;

fn note(broken: &mut Broken, t: i64, what: impl FnOnce() -> String) {
    if broken.is_none() {
        *broken = Some((t, what()));
    }
}

/// Audits `logs` against `limits` (or, if `None`, the limits the first log names), with
/// `tolerance` of clock noise allowed on each window.
pub fn audit(
    logs: &[PathBuf],
    limits: Option<Limits>,
    tolerance: Duration,
) -> Result<Audit, AuditError> {
    let mut sends = Merged::open(logs)?;
    let limits = limits.unwrap_or_else(|| sends.limits());
    let tol = i64::try_from(tolerance.as_micros()).unwrap_or(i64::MAX);
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let per_us = |r: Rate| r.per_second().map_or(0.0, |r| r / 1e6);

    let mut requests = 0u64;
    let (mut s429, mut s403) = (0u64, 0u64);
    let (mut first, mut last) = (None, 0i64);
    let mut pace = Pace::default();
    let mut counts: Vec<Count> = limits.quotas.iter().map(|_| Count::default()).collect();
    let mut host_pace: HashMap<String, Pace> = HashMap::new();
    let mut host_counts: HashMap<String, Vec<Count>> = HashMap::new();
    let mut broken_rate: Broken = None;
    let mut broken_quota: Vec<Broken> = vec![None; limits.quotas.len()];
    let mut broken_host_rate: Broken = None;
    let mut broken_host_quota: Vec<Broken> = vec![None; limits.per_host_quotas.len()];
    let mut busiest_host_quota: Vec<(usize, String)> =
        vec![(0, String::new()); limits.per_host_quotas.len()];

    while let Some(s) = sends.next()? {
        requests += 1;
        first.get_or_insert(s.t);
        last = s.t;
        match s.status {
            Some(429) => s429 += 1,
            Some(403) => s403 += 1,
            _ => {}
        }
        if let Some((rate, burst)) = limits.rate {
            if rate != Rate::Unlimited {
                let level = pace.send(s.t, per_us(rate));
                if level > f64::from(burst.get()) + per_us(rate) * tol as f64 + 1e-9 {
                    note(&mut broken_rate, s.t, || {
                        format!("{level:.2} requests at once where the burst allows {burst}")
                    });
                }
            }
        }
        for (i, q) in limits.quotas.iter().enumerate() {
            let n = counts[i].send(s.t, us(q.window) - tol);
            if n as u64 > q.limit {
                note(&mut broken_quota[i], s.t, || {
                    format!("{n} requests in {}", humantime::format_duration(q.window))
                });
            }
        }
        if let Some(rate) = limits.per_host_rate.filter(|r| *r != Rate::Unlimited) {
            let p = host_pace.entry(s.host.clone()).or_default();
            let level = p.send(s.t, per_us(rate));
            if level > 1.0 + per_us(rate) * tol as f64 + 1e-9 {
                note(&mut broken_host_rate, s.t, || {
                    format!("host {}: {level:.2} requests at once", s.host)
                });
            }
        }
        if !limits.per_host_quotas.is_empty() {
            let cs = host_counts.entry(s.host.clone()).or_insert_with(|| {
                limits
                    .per_host_quotas
                    .iter()
                    .map(|_| Count::default())
                    .collect()
            });
            for (i, q) in limits.per_host_quotas.iter().enumerate() {
                let n = cs[i].send(s.t, us(q.window) - tol);
                if n > busiest_host_quota[i].0 {
                    busiest_host_quota[i] = (n, s.host.clone());
                }
                if n as u64 > q.limit {
                    note(&mut broken_host_quota[i], s.t, || {
                        format!(
                            "host {}: {n} requests in {}",
                            s.host,
                            humantime::format_duration(q.window)
                        )
                    });
                }
            }
        }
    }

    let hosts = host_pace.len().max(host_counts.len());
    let mut lines = Vec::new();
    let mut head = format!("{requests} requests in {} log(s)", logs.len());
    if hosts > 0 {
        let _ = write!(head, ", {hosts} hosts");
    }
    let _ = write!(head, ", {s429} answered 429, {s403} answered 403");
    if let Some(f) = first {
        let _ = write!(head, ", from {} to {}", time_text(f), time_text(last));
    }
    lines.push(head);
    let mut held = true;
    let mut verdict = |name: String, measured: String, broken: &Broken| {
        lines.push(match broken {
            None => format!("{name}: held ({measured})"),
            Some((t, what)) => {
                held = false;
                format!("{name}: BROKEN at {}: {what} ({measured})", time_text(*t))
            }
        });
    };
    if let Some((rate, burst)) = limits.rate.filter(|(r, _)| *r != Rate::Unlimited) {
        verdict(
            format!("--rate {rate} --burst {burst}"),
            format!("the sends needed a burst of {:.2}", pace.peak),
            &broken_rate,
        );
    }
    for (i, q) in limits.quotas.iter().enumerate() {
        verdict(
            format!("--quota {q}"),
            format!("busiest window: {} of {}", counts[i].busiest, q.limit),
            &broken_quota[i],
        );
    }
    if let Some(rate) = limits.per_host_rate.filter(|r| *r != Rate::Unlimited) {
        let (worst, peak) = host_pace
            .iter()
            .map(|(h, p)| (h.as_str(), p.peak))
            .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
        verdict(
            format!("--per-host-rate {rate}"),
            format!("worst host {worst}: a burst of {peak:.2}"),
            &broken_host_rate,
        );
    }
    for (i, q) in limits.per_host_quotas.iter().enumerate() {
        let (n, host) = &busiest_host_quota[i];
        verdict(
            format!("--per-host-quota {q}"),
            format!("busiest window: {n} of {} (host {host})", q.limit),
            &broken_host_quota[i],
        );
    }
    if limits == Limits::default() {
        lines.push("no limits to check (none given, none in the logs)".to_string());
    }
    Ok(Audit { lines, held })
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
            match audit(std::slice::from_ref(&path), None, Duration::from_millis(1)) {
                Ok(a) => prop_assert!(!a.lines.is_empty()),
                Err(e) => {
                    let n = line_of(&e.to_string());
                    prop_assert!((1..=lines).contains(&n), "{e}");
                }
            }
        }
    }
}
