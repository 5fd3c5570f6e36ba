//! The request log (`--log-requests FILE`): one JSON line per request sent — attempts,
//! redirect hops and robots.txt fetches alike, since each takes a token — so that a run's
//! limits can be proved afterwards (`ratefetch audit`). Appended to, never truncated, and
//! locked while a run writes it: a run first claims it (`claim`: opened and locked, nothing
//! changed, so a run refused later leaves it as it was), then starts it (`LogClaim::start`).
//! Lines are streamed through a thread of its own, written as they come (in batches while
//! they come fast) and synced at the end. A write that fails stops the run at once
//! (`LogWriter::failed`): requests sent without a line would be unproved, and `finish`
//! counts them.
//!
//! Format (version 2; version 1 differs only in what `t` stamps, a rate's text and the
//! missing `heard`, and is still read). Each run appends a header line (`Header`, its
//! `limits` a `LimitSet`), then its requests:
//!
//! ```text
//! {"ratefetch_log":2,"started":"…","max_disorder_ms":31000,"limits":{"rate":"10/s","burst":1,
//!  "quotas":["5000/1h"],"per_host_rate":null,"per_host_quotas":[]}}
//! {"t":"2026-12-02T14:05:12.123456Z","host":"api.example.com","index":3,"attempt":1,"status":200}
//! {"t":"…","host":"…","index":4,"attempt":2,"error":"timeout"}
//! {"t":"…","host":"…","robots":true,"status":404}
//! {"t":"…","host":"…","index":5,"attempt":1,"status":200,
//!  "ratelimit":{"remaining":4999,"reset_ms":3599000,"heard":"…","limit":5000,"bucket":"core",
//!  "resolution_ms":2000}}
//! ```
//!
//! With `--redis`, `granted` is the instant the shared limits granted the request, on Redis'
//! clock (the header names the `limit_key`); `ratefetch audit` checks at that time.
//!
//! `ratelimit` is what the response announced (`announce`), when it did and the run follows
//! announced limits; `heard` (from version 2) is when the response was received, so the
//! reset falls at `heard + reset_ms` at the latest, and no earlier than `resolution_ms` before
//! that (servers round resets up to whole seconds; absent: 0). `window_ms` is the window the
//! server stated, when it did.
//!
//! `t` is the wall-clock send time with microseconds. Lines are written when requests end,
//! so they are not in send order; a line comes at most `max_disorder_ms` after the lines of
//! requests sent before it (the attempt timeout, plus a margin), which lets a reader sort
//! them in a bounded window.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::files::{ClaimError, Claimed};
use crate::limits::announce::Announced;
use crate::limits::set::LimitSet;

/// The format version written in each header line.
pub const VERSION: u64 = 2;

/// How often buffered lines reach the file while lines keep coming (an idle writer writes
/// what it has at once).
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Bytes of lines buffered at most before they are written.
const BUFFER: usize = 64 * 1024;

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
    /// Requests recorded, whether or not their line was written.
    recorded: Arc<AtomicU64>,
}

/// The writer thread; `finish` waits for it and tells whether every line was written.
pub struct LogWriter {
    thread: JoinHandle<Written>,
    recorded: Arc<AtomicU64>,
    failed: CancellationToken,
}

/// The request log claimed for a run (`claim`): opened and locked, not changed yet.
#[derive(Debug)]
pub struct LogClaim {
    claim: Claimed,
}

/// A request log that could not be written to the end: why, and how many of the requests
/// sent have no line in it.
#[derive(Debug, thiserror::Error)]
#[error("{source}; {}", self.lost())]
pub struct LogFailed {
    /// The first error.
    pub source: io::Error,
    /// Requests sent (recorded for the log) in this run.
    pub recorded: u64,
    /// Their lines the file took whole (a line cut short by the error is not one).
    pub written: u64,
    /// The error was the final sync: the lines were written, but may not be on disk.
    pub unsynced: bool,
}

impl LogFailed {
    /// The requests sent that have no log line: every one recorded (those recorded after
    /// the failure included, as the run stopped) less the lines the file took whole.
    pub fn unlogged(&self) -> u64 {
        self.recorded.saturating_sub(self.written)
    }

    fn lost(&self) -> String {
        if self.unsynced {
            format!(
                "the log could not be synced to disk: the lines of the {} requests sent may be lost",
                self.recorded
            )
        } else {
            format!(
                "the run was stopped: {} of the {} requests sent have no log line",
                self.unlogged(),
                self.recorded
            )
        }
    }
}

/// Claims `path` for this run's log: opens it (creating it if missing) without changing it,
/// and locks it, so that a second run on the same log is refused (`ClaimError::Busy`)
/// before any file changes. Dropped without `start`, a log the claim created is removed.
pub fn claim(path: &Path) -> Result<LogClaim, ClaimError> {
    Ok(LogClaim {
        claim: Claimed::open(path)?,
    })
}

impl LogClaim {
    /// The run goes on: appends this run's header line (after a newline if a run killed
    /// mid-line left a torn last line) and starts the writer thread. Returns the sender for
    /// the workers and the writer to finish at the end. The log is appended to, never
    /// truncated; it stays locked until the writer ends.
    pub fn start(self, config: &Config) -> io::Result<(RequestLog, LogWriter)> {
        // Written while still claimed: a log this run created and could not even start is
        // removed again.
        let mut file = self.claim.file();
        let torn = ends_without_newline(file)?;
        file.seek(SeekFrom::End(0))?;
        let mut head = Vec::with_capacity(256);
        if torn {
            head.push(b'\n');
        }
        serde_json::to_writer(&mut head, &header(config))?;
        head.push(b'\n');
        file.write_all(&head)?;
        let file = self.claim.keep();
        let (tx, rx) = mpsc::channel();
        let failed = CancellationToken::new();
        let thread = std::thread::Builder::new()
            .name("ratefetch-log".into())
            .spawn({
                let failed = failed.clone();
                move || write_lines(file, rx, failed)
            })?;
        let recorded = Arc::new(AtomicU64::new(0));
        Ok((
            RequestLog {
                tx,
                recorded: recorded.clone(),
            },
            LogWriter {
                thread,
                recorded,
                failed,
            },
        ))
    }
}

impl RequestLog {
    /// Logs one request (never blocks; a writer that failed drops the line, and `finish`
    /// reports its error and counts the line as missing).
    pub fn record(&self, entry: Entry) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(entry);
    }
}

impl LogWriter {
    /// Cancelled as soon as a write to the log fails: the run must stop sending, since
    /// what it sends from then on is not logged.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// Waits until every sender is dropped and every line is on disk.
    pub fn finish(self) -> Result<(), LogFailed> {
        let written = self.thread.join().unwrap_or_else(|_| Written {
            lines: 0,
            error: Some((io::Error::other("the log writer panicked"), false)),
        });
        match written.error {
            None => Ok(()),
            Some((source, unsynced)) => Err(LogFailed {
                source,
                recorded: self.recorded.load(Ordering::Relaxed),
                written: written.lines,
                unsynced,
            }),
        }
    }
}

/// What the writer thread did: the lines the file took whole, and the first error (with
/// whether it was the final sync).
struct Written {
    lines: u64,
    error: Option<(io::Error, bool)>,
}

/// The log file and the lines not written to it yet. Written by hand rather than through a
/// `BufWriter`, so that after an error it is known how many lines the file took.
struct Lines {
    file: File,
    buf: Vec<u8>,
    /// Lines the file took whole.
    written: u64,
}

impl Lines {
    fn write_out(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.file.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.written +=
                        memchr::memchr_iter(b'\n', &self.buf[done..done + n]).count() as u64;
                    done += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..done);
        result
    }
}

fn write_lines(file: File, rx: mpsc::Receiver<Entry>, failed: CancellationToken) -> Written {
    let mut out = Lines {
        file,
        buf: Vec::with_capacity(BUFFER),
        written: 0,
    };
    let result = pump(&mut out, &rx);
    let error = match result {
        Ok(()) => out.file.sync_data().err().map(|e| (e, true)),
        Err(e) => Some((e, false)),
    };
    if error.is_some() {
        failed.cancel();
    }
    Written {
        lines: out.written,
        error,
    }
}

/// Writes the lines as they come: at once when no more are waiting, at least every
/// `FLUSH_EVERY` while they keep coming, and whenever `BUFFER` bytes are waiting. Returns
/// at the first error, or when every sender is gone and every line is written.
fn pump(out: &mut Lines, rx: &mpsc::Receiver<Entry>) -> io::Result<()> {
    let mut since = std::time::Instant::now();
    loop {
        let entry = if out.buf.is_empty() {
            match rx.recv() {
                Ok(entry) => Some(entry),
                Err(mpsc::RecvError) => return Ok(()),
            }
        } else {
            match rx.try_recv() {
                Ok(entry) => Some(entry),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => return out.write_out(),
            }
        };
        match entry {
            Some(entry) => {
                if out.buf.is_empty() {
                    since = std::time::Instant::now();
                }
                encode(&mut out.buf, &entry);
                if out.buf.len() >= BUFFER || since.elapsed() >= FLUSH_EVERY {
                    out.write_out()?;
                }
            }
            None => out.write_out()?,
        }
    }
}

fn ends_without_newline(mut file: &File) -> io::Result<bool> {
    use std::io::Read;
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// A run's header line: the format version, and the limits the run kept (written and read
/// by derive; `audit` and `--plot` read it back). Version 1 headers read with it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    /// The format version (`VERSION`).
    pub ratefetch_log: u64,
    /// When the run started, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// A line comes at most this late after the lines of requests sent before it.
    #[serde(default)]
    pub max_disorder_ms: Option<i64>,
    /// With `--redis`: the `--limit-key` (lines then carry `granted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<String>,
    /// The limits the run kept.
    #[serde(default)]
    pub limits: Option<LimitSet>,
}

/// The versions of the format this ratefetch reads.
pub const READS: [u64; 2] = [1, VERSION];

pub(crate) fn header(config: &Config) -> Header {
    let disorder = config.timeout.saturating_add(Duration::from_secs(1));
    Header {
        ratefetch_log: VERSION,
        started: Some(humantime::format_rfc3339_micros(SystemTime::now()).to_string()),
        max_disorder_ms: Some(i64::try_from(disorder.as_millis()).unwrap_or(i64::MAX)),
        limit_key: config.redis.as_ref().map(|_| config.limit_key.clone()),
        limits: Some(LimitSet::of(config)),
    }
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
            "heard": humantime::format_rfc3339_micros(a.heard).to_string(),
        });
        let said_map = said.as_object_mut().expect("an object");
        if let Some(limit) = a.limit {
            said_map.insert("limit".into(), limit.into());
        }
        if let Some(bucket) = &a.bucket {
            said_map.insert("bucket".into(), bucket.as_str().into());
        }
        if !a.resolution.is_zero() {
            let ms = u64::try_from(a.resolution.as_millis()).unwrap_or(u64::MAX);
            said_map.insert("resolution_ms".into(), ms.into());
        }
        if let Some(window) = a.window {
            let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            said_map.insert("window_ms".into(), ms.into());
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
                    resolution: Duration::from_secs(1),
                    window: Some(Duration::from_secs(3600)),
                    heard: sent + Duration::from_millis(20),
                }),
            },
        );
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line["ratelimit"],
            json!({"remaining": 4999, "reset_ms": 3_599_500, "limit": 5000, "bucket": "core",
                   "heard": "2026-12-02T14:05:12.143456Z", "resolution_ms": 1000,
                   "window_ms": 3_600_000})
        );
    }

    #[test]
    fn the_header_states_the_version_and_the_limits() {
        let config = Config {
            rate: crate::units::Rate::Every(Duration::from_millis(100)),
            quotas: vec![crate::units::parse_quota("5000/h").unwrap()],
            ..Config::default()
        };
        let h = serde_json::to_value(header(&config)).unwrap();
        assert_eq!(h["ratefetch_log"], 2);
        assert_eq!(h["limits"]["rate"], "10/s");
        assert_eq!(h["limits"]["burst"], 1);
        assert_eq!(h["limits"]["quotas"][0], "5000/1h");
        assert!(h["limits"]["per_host_rate"].is_null());
        assert_eq!(h["max_disorder_ms"], 31_000);
        assert!(h.get("limit_key").is_none());
        let back: Header = serde_json::from_value(h).unwrap();
        assert_eq!(back.limits, Some(LimitSet::of(&config)));
    }

    #[test]
    fn a_claim_changes_nothing_and_a_second_claim_is_refused_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.jsonl");
        drop(claim(&new).unwrap());
        assert!(!new.exists(), "a refused run leaves no new log behind");

        let path = dir.path().join("requests.jsonl");
        std::fs::write(&path, b"{\"ratefetch_log\":1}\n{\"t\":\"torn").unwrap();
        let first = claim(&path).unwrap();
        assert!(matches!(claim(&path), Err(ClaimError::Busy)));
        drop(first);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"ratefetch_log\":1}\n{\"t\":\"torn",
            "a claim dropped before start changes nothing"
        );

        let (log, writer) = claim(&path).unwrap().start(&Config::default()).unwrap();
        assert!(
            matches!(claim(&path), Err(ClaimError::Busy)),
            "locked while written"
        );
        log.record(Entry {
            sent: SystemTime::UNIX_EPOCH,
            granted: None,
            host: "h".into(),
            index: Some(1),
            attempt: 1,
            status: Some(200),
            error: None,
            ratelimit: None,
        });
        drop(log);
        writer.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[..2],
            ["{\"ratefetch_log\":1}", "{\"t\":\"torn"],
            "appended to"
        );
        assert!(lines[2].starts_with("{\"ratefetch_log\":2"), "{text}");
        assert!(lines[3].contains("\"index\":1"), "{text}");
        drop(claim(&path).unwrap());
    }

    #[test]
    fn a_failed_log_counts_the_requests_without_a_line() {
        let failed = LogFailed {
            source: io::Error::other("No space left on device"),
            recorded: 40,
            written: 12,
            unsynced: false,
        };
        assert_eq!(failed.unlogged(), 28);
        assert_eq!(
            failed.to_string(),
            "No space left on device; the run was stopped: 28 of the 40 requests sent have no log line"
        );
    }
}
