//! The request log (`--log-requests FILE`): one JSON line per request sent — attempts,
//! redirect hops and robots.txt fetches alike, since each takes a token — so that a run's
//! limits can be proved afterwards (`ratefetch audit`). Appended to, streamed through a
//! thread of its own, flushed on a cadence and at the end, like the report.
//!
//! Format (version 1). Each run appends a header line, then its requests:
//!
//! ```text
//! {"ratefetch_log":1,"started":"…","max_disorder_ms":31000,"limits":{"rate":"10/s","burst":1,
//!  "quotas":["5000/1h"],"per_host_rate":null,"per_host_quotas":[]}}
//! {"t":"2026-12-02T14:05:12.123456Z","host":"api.example.com","index":3,"attempt":1,"status":200}
//! {"t":"…","host":"…","index":4,"attempt":2,"error":"timeout"}
//! {"t":"…","host":"…","robots":true,"status":404}
//! {"t":"…","host":"…","index":5,"attempt":1,"status":200,
//!  "ratelimit":{"remaining":4999,"reset_ms":3599000,"limit":5000,"bucket":"core"}}
//! ```
//!
//! With `--redis`, `granted` is the instant the shared limits granted the request, on Redis'
//! clock (the header names the `limit_key`); `ratefetch audit` checks at that time.
//!
//! `ratelimit` is what the response announced (`announce`), when it did and the run follows
//! announced limits.
//!
//! `t` is the wall-clock send time with microseconds. Lines are written when requests end,
//! so they are not in send order; a line comes at most `max_disorder_ms` after the lines of
//! requests sent before it (the attempt timeout, plus a margin), which lets a reader sort
//! them in a bounded window.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::announce::Announced;
use crate::config::Config;
use crate::units::Rate;

/// The format version written in each header line.
pub const VERSION: u64 = 1;

/// How often buffered lines reach the file.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// One request, as logged.
pub struct Entry {
    /// Wall-clock send time.
    pub sent: SystemTime,
    /// With `--redis`: the grant's instant on Redis' clock (`granted` in the line).
    pub granted: Option<SystemTime>,
    pub host: String,
    /// The job's index; `None` for robots.txt.
    pub index: Option<u64>,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    /// The limit the response announced (`ratelimit` in the line).
    pub ratelimit: Option<Announced>,
}

/// The sending end, shared by the workers (cheap to clone).
#[derive(Clone)]
pub struct RequestLog {
    tx: mpsc::Sender<Entry>,
}

/// The writer thread; `finish` waits for it and tells whether every line was written.
pub struct LogWriter {
    thread: JoinHandle<io::Result<()>>,
}

/// Opens `path` for appending and writes this run's header line; returns the sender for
/// the workers and the writer to finish at the end.
pub fn open(path: &Path, config: &Config) -> io::Result<(RequestLog, LogWriter)> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    // A run killed mid-line left a torn last line: this run's header starts on a line of
    // its own.
    let torn = ends_without_newline(&mut file)?;
    let mut out = BufWriter::new(file);
    if torn {
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut out, &header(config))?;
    out.write_all(b"\n")?;
    out.flush()?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("ratefetch-log".into())
        .spawn(move || write_lines(out, rx))?;
    Ok((RequestLog { tx }, LogWriter { thread }))
}

impl RequestLog {
    /// Logs one request (never blocks; a writer that failed drops the line, and `finish`
    /// reports its error).
    pub fn record(&self, entry: Entry) {
        let _ = self.tx.send(entry);
    }
}

impl LogWriter {
    /// Waits until every sender is dropped and every line is on disk.
    pub fn finish(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the log writer panicked")))
    }
}

fn write_lines(mut out: BufWriter<File>, rx: mpsc::Receiver<Entry>) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(entry) => {
                line.clear();
                encode(&mut line, &entry);
                out.write_all(&line)?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => out.flush()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    out.flush()?;
    out.get_ref().sync_data()
}

fn ends_without_newline(file: &mut File) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn header(config: &Config) -> Value {
    let rate = |r: Rate| r.per_second().map(|_| r.to_string());
    let quotas = |qs: &[crate::units::Quota]| qs.iter().map(|q| q.to_string()).collect::<Vec<_>>();
    let disorder = config.timeout.saturating_add(Duration::from_secs(1));
    let mut header = json!({
        "ratefetch_log": VERSION,
        "started": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        "max_disorder_ms": u64::try_from(disorder.as_millis()).unwrap_or(u64::MAX),
        "limits": {
            "rate": rate(config.rate),
            "burst": config.burst.get(),
            "quotas": quotas(&config.quotas),
            "per_host_rate": rate(config.per_host_rate),
            "per_host_quotas": quotas(&config.per_host_quotas),
        },
    });
    if config.redis.is_some() {
        header["limit_key"] = config.limit_key.as_str().into();
    }
    header
}

/// One entry as a JSON line.
fn encode(out: &mut Vec<u8>, e: &Entry) {
    let mut v = json!({
        "t": humantime::format_rfc3339_micros(e.sent).to_string(),
        "host": e.host,
    });
    let map = v.as_object_mut().expect("an object");
    if let Some(g) = e.granted {
        map.insert(
            "granted".into(),
            humantime::format_rfc3339_micros(g).to_string().into(),
        );
    }
    match e.index {
        Some(i) => {
            map.insert("index".into(), i.into());
            map.insert("attempt".into(), e.attempt.into());
        }
        None => {
            map.insert("robots".into(), true.into());
        }
    }
    if let Some(s) = e.status {
        map.insert("status".into(), s.into());
    }
    if let Some(k) = e.error {
        map.insert("error".into(), k.into());
    }
    if let Some(a) = &e.ratelimit {
        let mut said = json!({
            "remaining": a.remaining,
            "reset_ms": u64::try_from(a.reset.as_millis()).unwrap_or(u64::MAX),
        });
        let said_map = said.as_object_mut().expect("an object");
        if let Some(limit) = a.limit {
            said_map.insert("limit".into(), limit.into());
        }
        if let Some(bucket) = &a.bucket {
            said_map.insert("bucket".into(), bucket.as_str().into());
        }
        map.insert("ratelimit".into(), said);
    }
    serde_json::to_writer(&mut *out, &v).expect("writing JSON to a Vec");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_one_json_line_each() {
        let sent = humantime::parse_rfc3339("2026-12-02T14:05:12.123456Z").unwrap();
        let mut out = Vec::new();
        encode(
            &mut out,
            &Entry {
                sent,
                granted: None,
                host: "a.example".into(),
                index: Some(3),
                attempt: 2,
                status: None,
                error: Some("timeout"),
                ratelimit: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"attempt\":2,\"error\":\"timeout\",\"host\":\"a.example\",\"index\":3,\
             \"t\":\"2026-12-02T14:05:12.123456Z\"}\n"
        );
        let mut out = Vec::new();
        encode(
            &mut out,
            &Entry {
                sent,
                granted: None,
                host: "a.example".into(),
                index: Some(4),
                attempt: 1,
                status: Some(200),
                error: None,
                ratelimit: Some(Announced {
                    bucket: Some("core".into()),
                    limit: Some(5000),
                    remaining: 4999,
                    reset: Duration::from_millis(3_599_500),
                }),
            },
        );
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line["ratelimit"],
            json!({"remaining": 4999, "reset_ms": 3_599_500, "limit": 5000, "bucket": "core"})
        );
    }

    #[test]
    fn the_header_states_the_version_and_the_limits() {
        let config = Config {
            rate: Rate::Every(Duration::from_millis(100)),
            quotas: vec![crate::units::parse_quota("5000/h").unwrap()],
            ..Config::default()
        };
        let h = header(&config);
        assert_eq!(h["ratefetch_log"], 1);
        assert_eq!(h["limits"]["rate"], "10/s");
        assert_eq!(h["limits"]["burst"], 1);
        assert_eq!(h["limits"]["quotas"][0], "5000/1h");
        assert!(h["limits"]["per_host_rate"].is_null());
        assert_eq!(h["max_disorder_ms"], 31_000);
    }
}
