//! Ledger: the `--quota-state` file, which keeps what was sent against the quotas across
//! runs, `--resume`s and crashes, so that a daily quota spent at 10:00 is still spent at 11:00.
//!
//! The file is text, one record per line, appended to and locked by one run at a time:
//!
//! ```text
//! ratefetch-quota-state 1          the header (format version)
//! B <t_us> <count> <host>          count sends, counted as sent at t (written when compacted)
//! L <t_us> <count> <host>          as B, against that host only (a crashed run's lost host grants)
//! R <t_us> <k>                     a block of k grants for the run, reserved (fsynced) before use
//! H <t_us> <k> <host>              a block of k grants for one host (with --per-host-quota)
//! S <t_us> <host>                  one request sent (a grant used)
//! E <t_us>                         the run ended: grants reserved and not used are void
//! ```
//!
//! Times are wall-clock microseconds since the Unix epoch, so the file means the same after a
//! restart. The host `-` stands for "some host" (a crashed run's grants whose host is not
//! known): it counts against the run, not against any one host.
//!
//! - **The safe side.** A request may be counted and not sent, never sent and not counted.
//!   Before a request leaves it takes a grant from a block that is already on disk
//!   (`sync_data` returned); `S` lines are only buffered, and reach the disk with the next
//!   block or at the end. After a crash (no `E` after the last blocks) every grant of those
//!   blocks not matched by an `S` line counts as sent at the restart: later than any real
//!   send, so no window frees early.
//! - **Clocks.** The ledger's time never goes backwards: a run whose wall clock is behind the
//!   file's last record counts from that record on (a clock set back frees nothing).
//! - **Scopes, not counters.** Sends are kept per host with their times, not as per-quota
//!   counts, so a rerun with other `--quota` or `--per-host-quota` values reads the past
//!   right. A crashed run's unused host-less grants count against the run only (its hosts
//!   are not known): per-host windows see them only when that run had per-host quotas.
//! - **Size.** Each run starts by compacting the file: sends within the last hour in buckets
//!   of one second, older ones in buckets of a minute (each counted at its latest send),
//!   dropped after `RETAIN` (or the run's longest window, if longer).
//! - **Damage.** A last line without its newline (a write cut by a crash) is dropped: it can
//!   only be a block not yet granted from or an `S` line its block already covers. Any other
//!   line that is not a record, or a file without the header, is an error: a clear one, never
//!   a silent reset.
//! - **One run at a time.** The file is locked (`flock`) while a run uses it; a second run on
//!   the same file is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::units::Quota;

const HEADER: &str = "ratefetch-quota-state 1";
/// How long sends are kept at least (a weekly quota and a day more).
const RETAIN: Duration = Duration::from_secs(8 * 24 * 3600);
/// Grants per block at most: a crash wastes at most this many per scope.
const BLOCK_MAX: u64 = 64;
/// Sends younger than this are compacted to the second, older ones to the minute.
const FINE_AGE: Duration = Duration::from_secs(3600);
/// Buffered `S` lines are written out beyond this many bytes.
const BUFFER_MAX: usize = 64 * 1024;

/// Sends recorded before this run: wall-clock times with counts, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Past {
    /// Every send, whatever its host.
    pub run: Vec<(SystemTime, u64)>,
    /// Sends per host (a crashed run's grants of unknown host are in `run` only).
    pub hosts: HashMap<String, Vec<(SystemTime, u64)>>,
}

/// Why the state file cannot be used (exit 1).
#[derive(Debug)]
pub struct LedgerError {
    /// The file.
    pub path: PathBuf,
    /// Why, in one line.
    pub reason: String,
}

/// The open state file of a run. `grant` before every request; `finish` at the end.
pub struct Ledger {
    path: PathBuf,
    inner: Mutex<Open>,
}

struct Open {
    file: File,
    /// `S` lines not written yet.
    buffer: Vec<u8>,
    /// Grants left in the run's block and in each host's.
    run_left: u64,
    host_left: HashMap<Box<str>, u64>,
    run_block: u64,
    /// `None` without per-host quotas (no host blocks).
    host_block: Option<u64>,
    /// The ledger's clock: wall clock plus `offset`, never behind `last`.
    offset: Duration,
    last: u64,
    /// A write failed: nothing more may be granted.
    failed: Option<String>,
}

impl Ledger {
    /// Opens (or creates) the state at `path` for a run under `quotas` and `host_quotas`:
    /// locks it, reads the past, and rewrites the file compacted. Returns the ledger and
    /// what was sent before.
    pub fn open(
        path: &Path,
        quotas: &[Quota],
        host_quotas: &[Quota],
    ) -> Result<(Ledger, Past), LedgerError> {
        let fail = |reason: String| LedgerError {
            path: path.to_path_buf(),
            reason,
        };
        let io_fail = |what: &str, e: io::Error| fail(format!("{what}: {e}"));
        if cfg!(not(unix)) {
            // Without flock, two runs could share the file unseen.
            return Err(fail(
                "not supported on this platform (it needs flock)".into(),
            ));
        }
        let busy = || fail("in use by another ratefetch run (one run per state file)".into());
        let lock_error = |e: Locked| match e {
            Locked::Busy => busy(),
            Locked::Io(e) => io_fail("cannot open", e),
        };
        // The compacted file is written beside the old one and locked before it replaces
        // it, so no other run can take the new file between the two.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".ratefetch-tmp");
        let tmp = PathBuf::from(tmp);
        let (old, mut file) = loop {
            let old = lock_current(path).map_err(lock_error)?;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&tmp)
                .map_err(|e| io_fail("cannot write", e))?;
            try_lock(&file).map_err(|e| lock_error(Locked::of(e)))?;
            // Another run created the state meanwhile: take its lock, or be refused.
            if old.is_none() && path.exists() {
                continue;
            }
            break (old, file);
        };
        file.set_len(0).map_err(|e| io_fail("cannot write", e))?;
        let now = wall_us(SystemTime::now());
        let replayed = match &old {
            Some(f) => replay(BufReader::new(f), now).map_err(fail)?,
            None => Replayed::default(),
        };
        let longest = quotas
            .iter()
            .chain(host_quotas)
            .map(|q| q.window)
            .max()
            .unwrap_or_default();
        let retain = RETAIN.max(longest);
        let now = now.max(replayed.last);
        let sends = compact(replayed.sends, now, retain);
        let mut text = Vec::with_capacity(64 + sends.len() * 40);
        writeln!(text, "{HEADER}").expect("writing to a Vec");
        for (t, count, host) in &sends {
            match host.strip_prefix(HOST_ONLY) {
                Some(host) => writeln!(text, "L {t} {count} {host}"),
                None => writeln!(text, "B {t} {count} {host}"),
            }
            .expect("writing to a Vec");
        }
        writeln!(text, "E {now}").expect("writing to a Vec");
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| sync_dir(path))
            .map_err(|e| io_fail("cannot write", e))?;
        drop(old);
        let past = past_of(&sends);
        let block = |qs: &[Quota]| {
            qs.iter()
                .map(|q| q.limit / 16)
                .min()
                .unwrap_or(BLOCK_MAX)
                .clamp(1, BLOCK_MAX)
        };
        let wall = wall_us(SystemTime::now());
        let ledger = Ledger {
            path: path.to_path_buf(),
            inner: Mutex::new(Open {
                file,
                buffer: Vec::new(),
                run_left: 0,
                host_left: HashMap::new(),
                run_block: block(quotas),
                host_block: (!host_quotas.is_empty()).then(|| block(host_quotas)),
                offset: Duration::from_micros(now.saturating_sub(wall)),
                last: now,
                failed: None,
            }),
        };
        Ok((ledger, past))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes a grant for one request to `host`, about to be sent: from a block already on
    /// disk, reserving the next block (and waiting for the disk) when one is spent. An error
    /// means the request must not leave.
    pub fn grant(&self, host: &str) -> Result<(), String> {
        let mut o = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &o.failed {
            return Err(why.clone());
        }
        let t = o.clock();
        let host = if host.is_empty() { RUN_ONLY } else { host };
        let need_run = o.run_left == 0;
        let need_host = o.host_block.is_some() && o.host_left.get(host).copied().unwrap_or(0) == 0;
        if need_run || need_host {
            let mut lines = std::mem::take(&mut o.buffer);
            if need_run {
                writeln!(lines, "R {t} {}", o.run_block).expect("writing to a Vec");
            }
            if need_host {
                let k = o.host_block.expect("checked");
                writeln!(lines, "H {t} {k} {host}").expect("writing to a Vec");
            }
            if let Err(e) = o.file.write_all(&lines).and_then(|()| o.file.sync_data()) {
                let why = format!("cannot write: {e}");
                o.failed = Some(why.clone());
                return Err(why);
            }
            if need_run {
                o.run_left = o.run_block;
            }
            if need_host {
                let k = o.host_block.expect("checked");
                o.host_left.insert(host.into(), k);
            }
        }
        // Counted from after the disk took the block: never earlier than it leaves.
        let t = if need_run || need_host { o.clock() } else { t };
        o.run_left -= 1;
        if o.host_block.is_some() {
            let left = o.host_left.get_mut(host).expect("reserved above");
            *left -= 1;
            if *left == 0 {
                o.host_left.remove(host);
            }
        }
        // Straight into the buffer: no string per request.
        writeln!(o.buffer, "S {t} {host}").expect("writing to a Vec");
        if o.buffer.len() >= BUFFER_MAX {
            let lines = std::mem::take(&mut o.buffer);
            // Not synced: the blocks on disk already cover these sends.
            if let Err(e) = o.file.write_all(&lines) {
                o.failed = Some(format!("cannot write: {e}"));
            }
        }
        Ok(())
    }

    /// Ends the run's use of the file: the sends are written, and the grants left are void.
    pub fn finish(&self) -> Result<(), String> {
        let mut o = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &o.failed {
            return Err(why.clone());
        }
        // Nothing may be granted from the blocks the end voids.
        o.run_left = 0;
        o.host_left.clear();
        let t = o.clock();
        let mut lines = std::mem::take(&mut o.buffer);
        writeln!(lines, "E {t}").expect("writing to a Vec");
        o.file
            .write_all(&lines)
            .and_then(|()| o.file.sync_data())
            .map_err(|e| format!("cannot write: {e}"))
    }
}

impl Open {
    /// Now on the ledger's clock (microseconds since the epoch), never behind a record.
    fn clock(&mut self) -> u64 {
        let t = wall_us(SystemTime::now() + self.offset).max(self.last);
        self.last = t;
        t
    }
}

/// Reads the state at `path` without locking or changing it (for `--plan`): what was sent,
/// with a crashed run's grants counted as sent now. A missing file has no past.
pub fn read(path: &Path) -> Result<Past, LedgerError> {
    let fail = |reason: String| LedgerError {
        path: path.to_path_buf(),
        reason,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Past::default()),
        Err(e) => return Err(fail(format!("cannot open: {e}"))),
    };
    let now = wall_us(SystemTime::now());
    let replayed = replay(BufReader::new(file), now).map_err(fail)?;
    let now = now.max(replayed.last);
    Ok(past_of(&compact(replayed.sends, now, Duration::MAX)))
}

/// What a file says.
#[derive(Debug, Default)]
struct Replayed {
    /// (time, count, host), in file order.
    sends: Vec<(u64, u64, String)>,
    /// The latest time recorded.
    last: u64,
}

/// Reads the records of a state file; `now` is when grants of a crashed run count as sent.
fn replay(reader: impl BufRead, now: u64) -> Result<Replayed, String> {
    let mut out = Replayed::default();
    // Blocks since the last end, and the sends they cover.
    let mut run_reserved = 0u64;
    let mut run_used = 0u64;
    let mut host_reserved: HashMap<String, u64> = HashMap::new();
    let mut host_used: HashMap<String, u64> = HashMap::new();
    let mut reader = reader;
    let mut line = Vec::new();
    let mut seen_header = false;
    let mut n = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read: {e}"))?;
        if read == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            // A last line without its newline: a write cut by a crash, dropped.
            if !seen_header {
                return Err("not a ratefetch quota-state file (no header)".into());
            }
            break;
        }
        n += 1;
        let bad = || {
            format!(
                "line {n} is not a quota-state record (a damaged file: move it away to start \
                 afresh, which forgets what was sent)"
            )
        };
        let text = std::str::from_utf8(&line).map_err(|_| bad())?;
        if !seen_header {
            if text != HEADER {
                return Err(if text.starts_with("ratefetch-quota-state ") {
                    format!("written by another version of ratefetch ({text})")
                } else {
                    "not a ratefetch quota-state file (no header)".to_string()
                });
            }
            seen_header = true;
            continue;
        }
        let mut f = text.split(' ');
        let kind = f.next().ok_or_else(bad)?;
        let t: u64 = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        out.last = out.last.max(t);
        match kind {
            "B" | "L" => {
                let count: u64 = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let host = f.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
                let host = if kind == "L" {
                    format!("{HOST_ONLY}{host}")
                } else {
                    host.to_string()
                };
                out.sends.push((t, count, host));
            }
            "R" => {
                let k: u64 = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                run_reserved += k;
            }
            "H" => {
                let k: u64 = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let host = f.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
                *host_reserved.entry(host.to_string()).or_default() += k;
            }
            "S" => {
                let host = f.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
                run_used += 1;
                if host_reserved.contains_key(host) {
                    *host_used.entry(host.to_string()).or_default() += 1;
                }
                out.sends.push((t, 1, host.to_string()));
            }
            "E" => {
                run_reserved = 0;
                run_used = 0;
                host_reserved.clear();
                host_used.clear();
            }
            _ => return Err(bad()),
        }
        if f.next().is_some() {
            return Err(bad());
        }
    }
    if !seen_header {
        // An empty file (created, then the run died before its first write) has no past.
        return Ok(out);
    }
    // A crashed run: its unused grants count as sent now (later than any real send).
    // The run's lost grants count against the run; each host's against that host only (a
    // request lost on a host also took one of the run's).
    let now = now.max(out.last);
    let mut hosts: Vec<_> = host_reserved.into_iter().collect();
    hosts.sort();
    for (host, reserved) in hosts {
        let lost = reserved.saturating_sub(host_used.get(&host).copied().unwrap_or(0));
        if lost > 0 {
            out.sends.push((now, lost, format!("{HOST_ONLY}{host}")));
        }
    }
    let lost = run_reserved.saturating_sub(run_used);
    if lost > 0 {
        out.sends.push((now, lost, RUN_ONLY.to_string()));
    }
    Ok(out)
}

/// Sends in buckets per host (each counted at its latest send), sorted by time, without
/// those older than `retain`.
fn compact(
    mut sends: Vec<(u64, u64, String)>,
    now: u64,
    retain: Duration,
) -> Vec<(u64, u64, String)> {
    let retain = u64::try_from(retain.as_micros()).unwrap_or(u64::MAX);
    let fine = FINE_AGE.as_micros() as u64;
    let grain = |t: u64| {
        if now.saturating_sub(t) < fine {
            1_000_000
        } else {
            60_000_000
        }
    };
    sends.retain(|(t, _, _)| now.saturating_sub(*t) < retain);
    sends.sort_by(|a, b| (&a.2, a.0).cmp(&(&b.2, b.0)));
    let mut out: Vec<(u64, u64, String)> = Vec::with_capacity(sends.len());
    for (t, count, host) in sends {
        if let Some(last) = out.last_mut() {
            let g = grain(t);
            if last.2 == host && last.0 / g == t / g {
                last.0 = last.0.max(t);
                last.1 += count;
                continue;
            }
        }
        out.push((t, count, host));
    }
    out.sort_by_key(|s| s.0);
    out
}

fn past_of(sends: &[(u64, u64, String)]) -> Past {
    let mut past = Past::default();
    for (t, count, host) in sends {
        let at = UNIX_EPOCH + Duration::from_micros(*t);
        if let Some(host) = host.strip_prefix(HOST_ONLY) {
            past.hosts
                .entry(host.into())
                .or_default()
                .push((at, *count));
            continue;
        }
        match past.run.last_mut() {
            Some(last) if last.0 == at => last.1 += count,
            _ => past.run.push((at, *count)),
        }
        if host != RUN_ONLY {
            past.hosts
                .entry(host.clone())
                .or_default()
                .push((at, *count));
        }
    }
    past
}

/// In memory, the host of sends that count against the run only (a crashed run's grants
/// whose host is not known)…
const RUN_ONLY: &str = "-";
/// …and the prefix of a host whose sends count against that host only (a crashed run's lost
/// host grants; written as `L` records). `/` is never part of a host name.
const HOST_ONLY: char = '/';

fn wall_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

enum Locked {
    Busy,
    Io(io::Error),
}

impl Locked {
    fn of(e: io::Error) -> Locked {
        if e.kind() == io::ErrorKind::WouldBlock {
            Locked::Busy
        } else {
            Locked::Io(e)
        }
    }
}

/// Opens and locks the file now at `path` (`None` if there is none): the lock taken is on
/// the file the path names once it is held (a run that replaced it meanwhile is seen).
fn lock_current(path: &Path) -> Result<Option<File>, Locked> {
    loop {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Locked::Io(e)),
        };
        try_lock(&file).map_err(Locked::of)?;
        if same_file(&file, path) {
            return Ok(Some(file));
        }
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn replay_text(text: &str, now: u64) -> Result<Replayed, String> {
        replay(text.as_bytes(), now)
    }

    #[test]
    fn a_finished_run_counts_its_sends_only() {
        let text = format!("{HEADER}\nR 10 64\nS 11 a\nS 12 b\nE 13\n");
        let r = replay_text(&text, 100).unwrap();
        assert_eq!(
            r.sends,
            [(11, 1, "a".to_string()), (12, 1, "b".to_string())]
        );
        assert_eq!(r.last, 13);
    }

    #[test]
    fn a_crashed_run_counts_its_unused_grants_as_sent_at_the_restart() {
        let text = format!("{HEADER}\nR 10 4\nH 10 3 a\nS 11 a\nS 12 b\n");
        let r = replay_text(&text, 100).unwrap();
        // Host a: 3 reserved, 1 used: 2 lost, on a only. The run: 4 reserved, 2 used: 2
        // lost, on the run only (not one per host lost, added up).
        assert_eq!(
            r.sends,
            [
                (11, 1, "a".to_string()),
                (12, 1, "b".to_string()),
                (100, 2, "/a".to_string()),
                (100, 2, "-".to_string())
            ]
        );
        let past = past_of(&r.sends);
        assert_eq!(past.run.iter().map(|s| s.1).sum::<u64>(), 4);
        assert_eq!(past.hosts["a"].iter().map(|s| s.1).sum::<u64>(), 3);
        let text = format!("{HEADER}\nR 10 64\nS 11 a\n");
        let r = replay_text(&text, 100).unwrap();
        assert_eq!(r.sends[1], (100, 63, "-".to_string()));
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_other_damage_is_an_error() {
        let text = format!("{HEADER}\nR 10 2\nS 11 a\nS 1");
        let r = replay_text(&text, 100).unwrap();
        // The torn send is one of the block's grants, counted as lost.
        assert_eq!(r.sends[1], (100, 1, "-".to_string()));
        let err = replay_text(&format!("{HEADER}\nR 10 2\nX 11 a\nE 12\n"), 100).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = replay_text(&format!("{HEADER}\nS 11\n"), 100).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = replay_text("hello\nworld\n", 100).unwrap_err();
        assert!(err.contains("no header"), "{err}");
        let err = replay_text("ratefetch-quota-state 9\n", 100).unwrap_err();
        assert!(err.contains("another version"), "{err}");
    }

    #[test]
    fn a_clock_behind_the_file_frees_nothing() {
        // The restart's clock (50) is behind the last record (13): lost grants count at 13.
        let text = format!("{HEADER}\nR 10 2\nS 13 a\n");
        let r = replay_text(&text, 5).unwrap();
        assert_eq!(r.sends[1], (13, 1, "-".to_string()));
    }

    #[test]
    fn compaction_buckets_by_age_and_forgets_the_oldest() {
        let now = 10_000 * S;
        let sends = vec![
            (now - 10 * S, 1, "a".to_string()),
            (now - 10 * S + 500_000, 1, "a".to_string()),
            (now - 9 * S, 1, "a".to_string()),
            (now - 5000 * S, 1, "a".to_string()),
            (now - 5000 * S + 30 * S, 1, "a".to_string()),
            (now - 9999 * S, 1, "b".to_string()),
        ];
        let got = compact(sends, now, Duration::from_secs(9000));
        let minute = now - 5000 * S + 30 * S;
        let same = (now - 10 * S) / S == (now - 10 * S + 500_000) / S;
        let mut want = vec![(minute, 2, "a".to_string())];
        if same {
            want.push((now - 10 * S + 500_000, 2, "a".to_string()));
        } else {
            want.push((now - 10 * S, 1, "a".to_string()));
            want.push((now - 10 * S + 500_000, 1, "a".to_string()));
        }
        want.push((now - 9 * S, 1, "a".to_string()));
        // Minute buckets are aligned to the epoch: the two sends 30 s apart may straddle one.
        if (now - 5000 * S) / (60 * S) != minute / (60 * S) {
            want[0] = (now - 5000 * S, 1, "a".to_string());
            want.insert(1, (minute, 1, "a".to_string()));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_ledger_survives_a_reopen_and_refuses_a_second_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let q = [Quota {
            limit: 32,
            window: Duration::from_secs(3600),
        }];
        let (ledger, past) = Ledger::open(&path, &q, &[]).unwrap();
        assert_eq!(past, Past::default());
        let second = Ledger::open(&path, &q, &[]).map(|_| ()).unwrap_err();
        assert!(second.reason.contains("in use"), "{}", second.reason);
        for _ in 0..5 {
            ledger.grant("a").unwrap();
        }
        ledger.finish().unwrap();
        drop(ledger);
        let (ledger, past) = Ledger::open(&path, &q, &[]).unwrap();
        assert_eq!(past.run.iter().map(|s| s.1).sum::<u64>(), 5);
        assert_eq!(past.hosts["a"].iter().map(|s| s.1).sum::<u64>(), 5);
        // A crash: three grants, no end. Blocks of 32 / 16 = 2: two blocks reserved.
        for _ in 0..3 {
            ledger.grant("b").unwrap();
        }
        drop(ledger);
        let past = read(&path).unwrap();
        assert_eq!(past.run.iter().map(|s| s.1).sum::<u64>(), 5 + 4);
        // Two sends were written out with the second block; the third was not, and counts
        // against the run only.
        assert_eq!(past.hosts["b"].iter().map(|s| s.1).sum::<u64>(), 2);
    }
}
