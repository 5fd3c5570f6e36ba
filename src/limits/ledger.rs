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
//! known): it counts against the run, not against any one host. Lines end in `\n`; a file
//! saved with `\r\n` (by an editor elsewhere) is read the same.
//!
//! - **The safe side.** A request may be counted and not sent, never sent and not counted.
//!   Before a request leaves it takes a grant from a block that is already on disk
//!   (`sync_data` returned); `S` lines are only buffered, and reach the disk with the next
//!   block or at the end. After a crash (no `E` after the last blocks) every grant of those
//!   blocks not matched by an `S` line counts as sent at the restart: later than any real
//!   send, so no window frees early.
//! - **Clocks.** The ledger's time never goes backwards: a run whose wall clock is behind the
//!   file's last record counts from that record on (a clock set back frees nothing). A record
//!   may lie ahead of this machine's clock by up to the longest window (`RETAIN`, or the
//!   run's longest quota window if longer) and is counted as it is; sends are forgotten only
//!   when they are older than that by the wall clock, so one record ahead never pushes the
//!   real sends out.
//! - **Scopes, not counters.** Sends are kept per host with their times, not as per-quota
//!   counts, so a rerun with other `--quota` or `--per-host-quota` values reads the past
//!   right. A crashed run's unused host-less grants count against the run only (its hosts
//!   are not known): per-host windows see them only when that run had per-host quotas.
//! - **Size.** Each run starts by compacting the file: sends within the last hour in buckets
//!   of one second, older ones in buckets of a minute (each counted at its latest send),
//!   dropped after `RETAIN` (or the run's longest window, if longer).
//! - **Damage.** A last line without its newline (a write cut by a crash) is dropped: it can
//!   only be a block not yet granted from or an `S` line its block already covers. Any other
//!   line that is not a record, a record dated further ahead than the longest window, a time
//!   past the year 9999, counts that add up past `COUNT_MAX`, or a file without the header,
//!   is an error naming the line: a clear one, never a silent reset, and the file is left
//!   byte for byte as it was. All arithmetic on what the file says is checked or saturating.
//! - **One run at a time.** The file is locked (`flock`, through `File::try_lock`) while a
//!   run uses it; a second run on the same file is refused.
//! - **Refuse first, then change.** [`claim`] locks the file and reads and checks all of it,
//!   changing nothing (the lock on the file the compacted state is written to is a
//!   [`Claimed`], removed if the run stops there). [`Claim::open`] then rewrites it
//!   compacted: beside the old file, locked before it replaces it by a rename, so the lock is
//!   never let go and no second run slips in between.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::files::{same_file, sync_parent, try_lock, ClaimError, Claimed};
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
/// What the counts of one file (sends and blocks) may add up to: far more than any run
/// sends, and far enough below `u64::MAX` that no sum of them, here or in the quota
/// windows, can overflow.
const COUNT_MAX: u64 = 1 << 48;
/// The latest time a record may carry, 9999-12-31T23:59:59.999999Z, whatever the windows: a
/// time every platform's `SystemTime` holds.
const TIME_MAX: u64 = 253_402_300_799_999_999;
/// The end of a damage message: how to go on.
const RECOVER: &str = "to go on, delete the file and accept that the sends it records are \
                       forgotten (the quotas may be overfilled for one window), or wait out \
                       the longest window and then delete it";

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

/// The state file of a run, claimed: locked, read and checked, not changed yet. Dropped
/// without [`Claim::open`], it leaves the state file byte for byte as it was and no new file
/// behind.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    /// The file now at `path`, locked (`None`: there is none yet).
    current: Option<File>,
    /// The file the compacted state is written to, locked: it replaces `current`.
    next: Claimed,
    replayed: Replayed,
    /// How long sends are kept (and how far ahead a record may be).
    retain: Duration,
    run_block: u64,
    /// `None` without per-host quotas (no host blocks).
    host_block: Option<u64>,
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

const BUSY: &str = "in use by another ratefetch run (one run per state file)";

/// Claims the state at `path` for a run under `quotas` and `host_quotas`: locks it (and the
/// file its compacted state will be written to) and reads and checks all of it, damage
/// included. Changes nothing, and leaves no file behind when dropped: [`Claim::open`] does
/// the writing.
pub fn claim(path: &Path, quotas: &[Quota], host_quotas: &[Quota]) -> Result<Claim, LedgerError> {
    let fail = |reason: String| LedgerError {
        path: path.to_path_buf(),
        reason,
    };
    let claim_error = |what: &str, e: ClaimError| match e {
        ClaimError::Busy => fail(BUSY.into()),
        ClaimError::Io(e) => fail(format!("{what}: {e}")),
    };
    // The compacted file is written beside the old one and locked before it replaces it,
    // so no other run can take the new file between the two.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".ratefetch-tmp");
    let tmp = PathBuf::from(tmp);
    let (current, next) = loop {
        let current = lock_current(path).map_err(|e| claim_error("cannot open", e))?;
        let next = Claimed::open(&tmp).map_err(|e| claim_error("cannot write", e))?;
        // Another run created the state meanwhile: take its lock, or be refused (`next` is
        // let go, removed if this claim made it).
        if current.is_none() && path.exists() {
            continue;
        }
        break (current, next);
    };
    let retain = retention(quotas, host_quotas);
    let replayed = match &current {
        Some(f) => replay(BufReader::new(f), wall_us(SystemTime::now()), retain).map_err(fail)?,
        None => Replayed::default(),
    };
    let block = |qs: &[Quota]| {
        qs.iter()
            .map(|q| q.limit / 16)
            .min()
            .unwrap_or(BLOCK_MAX)
            .clamp(1, BLOCK_MAX)
    };
    Ok(Claim {
        path: path.to_path_buf(),
        current,
        next,
        replayed,
        retain,
        run_block: block(quotas),
        host_block: (!host_quotas.is_empty()).then(|| block(host_quotas)),
    })
}

impl Claim {
    /// Rewrites the claimed state compacted (creating it if there was none) and opens it for
    /// the run: the ledger, and what was sent before. Only a failing disk refuses here.
    pub fn open(self) -> Result<(Ledger, Past), LedgerError> {
        let Claim {
            path,
            current,
            next,
            replayed,
            retain,
            run_block,
            host_block,
        } = self;
        let fail = |e: io::Error| LedgerError {
            path: path.clone(),
            reason: format!("cannot write: {e}"),
        };
        let wall = wall_us(SystemTime::now());
        let now = wall.max(replayed.last);
        let sends = compact(replayed.sends, wall, retain);
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
        let mut out = next.file();
        out.set_len(0)
            .and_then(|()| out.write_all(&text))
            .and_then(|()| out.sync_all())
            .and_then(|()| std::fs::rename(next.path(), &path))
            .map_err(fail)?;
        // Renamed: the claimed file is the state now, kept (and still locked) as such.
        let file = next.keep();
        sync_parent(&path).map_err(fail)?;
        drop(current);
        let past = past_of(&sends);
        let wall = wall_us(SystemTime::now());
        let ledger = Ledger {
            path,
            inner: Mutex::new(Open {
                file,
                buffer: Vec::new(),
                run_left: 0,
                host_left: HashMap::new(),
                run_block,
                host_block,
                offset: Duration::from_micros(now.saturating_sub(wall)),
                last: now,
                failed: None,
            }),
        };
        Ok((ledger, past))
    }
}

impl Ledger {
    /// Opens (or creates) the state at `path` for a run under `quotas` and `host_quotas`:
    /// locks it, reads the past, and rewrites the file compacted. Returns the ledger and
    /// what was sent before. [`claim`], then [`Claim::open`].
    #[cfg(test)]
    pub fn open(
        path: &Path,
        quotas: &[Quota],
        host_quotas: &[Quota],
    ) -> Result<(Ledger, Past), LedgerError> {
        claim(path, quotas, host_quotas)?.open()
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
/// with a crashed run's grants counted as sent now. A missing file has no past; a damaged
/// one is refused as a run refuses it (a record may lie `RETAIN` ahead, as for a run whose
/// windows are all shorter).
pub fn read(path: &Path, quotas: &[Quota], host_quotas: &[Quota]) -> Result<Past, LedgerError> {
    let fail = |reason: String| LedgerError {
        path: path.to_path_buf(),
        reason,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Past::default()),
        Err(e) => return Err(fail(format!("cannot open: {e}"))),
    };
    let wall = wall_us(SystemTime::now());
    let replayed =
        replay(BufReader::new(file), wall, retention(quotas, host_quotas)).map_err(fail)?;
    Ok(past_of(&compact(replayed.sends, wall, Duration::MAX)))
}

/// How long sends are kept, and how far ahead of the clock a record may lie: `RETAIN`, or
/// the longest window if longer.
fn retention(quotas: &[Quota], host_quotas: &[Quota]) -> Duration {
    let longest = quotas
        .iter()
        .chain(host_quotas)
        .map(|q| q.window)
        .max()
        .unwrap_or_default();
    RETAIN.max(longest)
}

/// What a file says.
#[derive(Debug, Default)]
struct Replayed {
    /// (time, count, host), in file order.
    sends: Vec<(u64, u64, String)>,
    /// The latest time recorded (a crashed run's lost grants included).
    last: u64,
}

/// Reads the records of a state file. `now` is this machine's clock: grants of a crashed
/// run count as sent then (or at the last record, if later), and no record may lie more than
/// `ahead` past it.
fn replay(reader: impl BufRead, now: u64, ahead: Duration) -> Result<Replayed, String> {
    let latest = now
        .saturating_add(u64::try_from(ahead.as_micros()).unwrap_or(u64::MAX))
        .min(TIME_MAX);
    let mut out = Replayed::default();
    // Blocks since the last end, and the sends they cover.
    let mut run_reserved = 0u64;
    let mut run_used = 0u64;
    let mut host_reserved: HashMap<String, u64> = HashMap::new();
    let mut host_used: HashMap<String, u64> = HashMap::new();
    // Every count and block so far, added up: bounded by `COUNT_MAX`.
    let mut total = 0u64;
    let mut reader = reader;
    let mut line = Vec::new();
    let mut seen_header = false;
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read line {}: {e}", n + 1))?;
        if read == 0 {
            break;
        }
        n += 1;
        let no_header =
            || format!("line {n} is not the header of a ratefetch quota-state file (no header)");
        if line.pop() != Some(b'\n') {
            // A last line without its newline: a write cut by a crash, dropped.
            if !seen_header {
                return Err(no_header());
            }
            break;
        }
        // A file saved with CRLF line ends reads the same.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let bad = || format!("line {n} is not a quota-state record: a damaged file; {RECOVER}");
        if !seen_header {
            let text = std::str::from_utf8(&line).map_err(|_| no_header())?;
            if text != HEADER {
                return Err(if text.starts_with("ratefetch-quota-state ") {
                    format!(
                        "line {n} says it was written by another version of ratefetch ({})",
                        text.escape_debug()
                    )
                } else {
                    no_header()
                });
            }
            seen_header = true;
            continue;
        }
        let text = std::str::from_utf8(&line).map_err(|_| bad())?;
        let mut f = text.split(' ');
        let number = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
        let mut counted = |k: u64| match total.checked_add(k).filter(|t| *t <= COUNT_MAX) {
            Some(t) => {
                total = t;
                Ok(())
            }
            None => Err(format!(
                "line {n} counts more sends than a state file can hold (its counts add up \
                 past {COUNT_MAX}): a damaged file; {RECOVER}"
            )),
        };
        let kind = f.next().ok_or_else(bad)?;
        let t = number(f.next())?;
        if t > TIME_MAX {
            return Err(format!(
                "line {n} has a time out of range ({t} µs since 1970, past the year 9999): a \
                 damaged file; {RECOVER}"
            ));
        }
        if t > latest {
            let by = |us: u64| humantime::format_duration(Duration::from_secs(us / 1_000_000));
            return Err(format!(
                "line {n} is dated {} ahead of this machine's clock, more than the longest \
                 window ({}) allows: a damaged file, or one written under a clock far ahead; \
                 {RECOVER}",
                by(t - now),
                humantime::format_duration(ahead)
            ));
        }
        out.last = out.last.max(t);
        match kind {
            "B" | "L" => {
                let count = number(f.next())?;
                let host = host_of(f.next()).ok_or_else(bad)?;
                counted(count)?;
                let host = if kind == "L" {
                    format!("{HOST_ONLY}{host}")
                } else {
                    host.to_string()
                };
                out.sends.push((t, count, host));
            }
            "R" => {
                let k = number(f.next())?;
                counted(k)?;
                run_reserved = run_reserved.saturating_add(k);
            }
            "H" => {
                let k = number(f.next())?;
                let host = host_of(f.next()).ok_or_else(bad)?;
                counted(k)?;
                let reserved = host_reserved.entry(host.to_string()).or_default();
                *reserved = reserved.saturating_add(k);
            }
            "S" => {
                let host = host_of(f.next()).ok_or_else(bad)?;
                counted(1)?;
                run_used = run_used.saturating_add(1);
                if host_reserved.contains_key(host) {
                    let used = host_used.entry(host.to_string()).or_default();
                    *used = used.saturating_add(1);
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
            out.last = now;
        }
    }
    let lost = run_reserved.saturating_sub(run_used);
    if lost > 0 {
        out.sends.push((now, lost, RUN_ONLY.to_string()));
        out.last = now;
    }
    Ok(out)
}

/// Sends in buckets per host (each counted at its latest send), sorted by time, without
/// those older than `retain` on this machine's clock `wall` (not the ledger's, which may be
/// ahead of it: a record ahead pushes no real send out of the windows).
fn compact(
    mut sends: Vec<(u64, u64, String)>,
    wall: u64,
    retain: Duration,
) -> Vec<(u64, u64, String)> {
    let retain = u64::try_from(retain.as_micros()).unwrap_or(u64::MAX);
    let fine = u64::try_from(FINE_AGE.as_micros()).unwrap_or(u64::MAX);
    let grain = |t: u64| {
        if wall.saturating_sub(t) < fine {
            1_000_000
        } else {
            60_000_000
        }
    };
    sends.retain(|(t, _, _)| wall.saturating_sub(*t) < retain);
    sends.sort_by(|a, b| (&a.2, a.0).cmp(&(&b.2, b.0)));
    let mut out: Vec<(u64, u64, String)> = Vec::with_capacity(sends.len());
    for (t, count, host) in sends {
        if let Some(last) = out.last_mut() {
            let g = grain(t);
            if last.2 == host && last.0 / g == t / g {
                last.0 = last.0.max(t);
                // Bounded by `COUNT_MAX` when read: saturating only to be sure.
                last.1 = last.1.saturating_add(count);
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
        // Within `TIME_MAX` when read: a time every platform holds.
        let at = UNIX_EPOCH + Duration::from_micros((*t).min(TIME_MAX));
        if let Some(host) = host.strip_prefix(HOST_ONLY) {
            past.hosts
                .entry(host.into())
                .or_default()
                .push((at, *count));
            continue;
        }
        match past.run.last_mut() {
            Some(last) if last.0 == at => last.1 = last.1.saturating_add(*count),
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

/// A host as `grant` writes it: never empty, no control characters.
fn host_of(field: Option<&str>) -> Option<&str> {
    field.filter(|h| !h.is_empty() && !h.chars().any(char::is_control))
}

fn wall_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Opens and locks the file now at `path` (`None` if there is none): the lock taken is on
/// the file the path names once it is held (a run that replaced it meanwhile is seen).
fn lock_current(path: &Path) -> Result<Option<File>, ClaimError> {
    loop {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        try_lock(&file)?;
        if same_file(&file, path) {
            return Ok(Some(file));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn replay_text(text: &str, now: u64) -> Result<Replayed, String> {
        replay(text.as_bytes(), now, RETAIN)
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
        let past = read(&path, &[], &[]).unwrap();
        assert_eq!(past.run.iter().map(|s| s.1).sum::<u64>(), 5 + 4);
        // Two sends were written out with the second block; the third was not, and counts
        // against the run only.
        assert_eq!(past.hosts["b"].iter().map(|s| s.1).sum::<u64>(), 2);
    }

    const DAY: u64 = 24 * 3600 * S;

    fn quota(limit: u64, secs: u64) -> Quota {
        Quota {
            limit,
            window: Duration::from_secs(secs),
        }
    }

    fn now() -> u64 {
        wall_us(SystemTime::now())
    }

    fn sum(sends: &[(SystemTime, u64)]) -> u64 {
        sends.iter().map(|s| s.1).sum()
    }

    /// The state file `text` in a directory of its own.
    fn state(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Claims `text` under `quotas`: refused with a reason naming `line`, and the directory
    /// holds the state file byte for byte as it was, and nothing else.
    fn assert_refused(text: &str, quotas: &[Quota], line: u64, why: &str) {
        let (dir, path) = state(text.as_bytes());
        let err = claim(&path, quotas, &[]).map(|_| ()).unwrap_err();
        assert!(
            err.reason.contains(&format!("line {line} ")) && err.reason.contains(why),
            "{}",
            err.reason
        );
        assert_eq!(std::fs::read(&path).unwrap(), text.as_bytes());
        assert_eq!(names(dir.path()), ["state"], "no file left behind");
        // `--plan` refuses it the same way.
        let err = read(&path, &[], &[]).unwrap_err();
        assert!(
            err.reason.contains(&format!("line {line} ")),
            "{}",
            err.reason
        );
    }

    /// 60 real sends to `a`, ten minutes ago, as a finished run writes them.
    fn sixty_sends(now: u64) -> String {
        let t = now - 600 * S;
        let mut text = format!("{HEADER}\nR {t} 64\n");
        for i in 0..60 {
            text.push_str(&format!("S {} a\n", t + i));
        }
        text.push_str(&format!("E {}\n", t + 60));
        text
    }

    /// Issue 19: one `S` line 30 days ahead made compaction drop every real send.
    #[test]
    fn a_record_further_ahead_than_the_longest_window_is_damage_left_as_it_was() {
        let now = now();
        let text = sixty_sends(now) + &format!("S {} a\nE {}\n", now + 30 * DAY, now + 30 * DAY);
        // Line 1 the header, 2 the block, 3..=62 the sends, 63 the end: 64 is ahead.
        assert_refused(
            &text,
            &[quota(100, 3600)],
            64,
            "ahead of this machine's clock",
        );
    }

    /// Issue 19: a record ahead by less than the longest window is counted, and so are the
    /// real sends before it, in this run and the next (compaction keeps them all).
    #[test]
    fn records_ahead_within_the_longest_window_are_counted_with_the_real_sends() {
        let now = now();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let weekly = [quota(1000, 7 * 24 * 3600)];
        // Two days ago, then a send dated 7 days ahead (a clock that was ahead, set back).
        let mut text = sixty_sends(now - 2 * DAY + 600 * S);
        text.push_str(&format!("S {} a\nE {}\n", now + 7 * DAY, now + 7 * DAY));
        std::fs::write(&path, &text).unwrap();
        for _ in 0..2 {
            let (ledger, past) = Ledger::open(&path, &weekly, &[]).unwrap();
            assert_eq!(sum(&past.run), 61);
            assert_eq!(sum(&past.hosts["a"]), 61);
            ledger.finish().unwrap();
        }
        assert_eq!(sum(&read(&path, &[], &[]).unwrap().run), 61);
        // A 30-day window lets a record lie up to 30 days ahead.
        let text = sixty_sends(now) + &format!("S {} a\n", now + 20 * DAY);
        std::fs::write(&path, &text).unwrap();
        let (_, past) = claim(&path, &[quota(10, 30 * 24 * 3600)], &[])
            .unwrap()
            .open()
            .unwrap();
        assert_eq!(sum(&past.run), 61);
    }

    /// Issue 19: a `B` count of u64::MAX wrapped in compaction, and a time of u64::MAX moved
    /// the file's clock to the year 586,524.
    #[test]
    fn counts_and_times_out_of_range_are_damage_naming_their_line() {
        let now = now();
        let h = HEADER;
        let max = u64::MAX;
        let limit = COUNT_MAX;
        for (text, line, why) in [
            (
                format!("{h}\nB {now} {max} a\nB {now} 1 a\nE {now}\n"),
                2,
                "counts",
            ),
            (
                format!("{h}\nB {now} {limit} a\nB {now} 1 b\n"),
                3,
                "counts",
            ),
            (format!("{h}\nR {now} {max}\nR {now} {max}\n"), 2, "counts"),
            (format!("{h}\nH {now} 64 a\nH {now} {max} a\n"), 3, "counts"),
            (
                format!("{h}\nS 10 a\nS {max} a\nE {now}\n"),
                3,
                "out of range",
            ),
            (format!("{h}\nE {}\n", TIME_MAX + 1), 2, "out of range"),
            (
                format!("{h}\nB {now} 1{max} a\n"),
                2,
                "not a quota-state record",
            ),
            (
                format!("{h}\nS {now} a\0b\n"),
                2,
                "not a quota-state record",
            ),
        ] {
            assert_refused(&text, &[quota(10, 60)], line, why);
        }
        // Just inside: the largest count a file may hold, and a record exactly `RETAIN` ahead.
        let text = format!("{h}\nB {now} {limit} a\n");
        assert_eq!(
            sum(&read(state(text.as_bytes()).1.as_path(), &[], &[])
                .unwrap()
                .run),
            limit
        );
        let ahead = now + RETAIN.as_micros() as u64;
        let (_dir, path) = state(format!("{h}\nS {ahead} a\n").as_bytes());
        assert_eq!(sum(&read(&path, &[], &[]).unwrap().run), 1);
    }

    /// Issue 19: CRLF line ends were "written by another version".
    #[test]
    fn crlf_line_ends_are_read_as_lf() {
        let lf = format!("{HEADER}\nR 10 4\nH 10 3 a\nS 11 a\nS 12 b\nE 13\nS 14 a\n");
        let crlf = lf.replace('\n', "\r\n");
        let want = replay_text(&lf, 100).unwrap();
        let got = replay_text(&crlf, 100).unwrap();
        assert_eq!(got.sends, want.sends);
        assert_eq!(got.last, want.last);
        // A torn last line is dropped, CR or not.
        let torn = format!("{crlf}S 15 a\r");
        assert_eq!(replay_text(&torn, 100).unwrap().sends, want.sends);
        // The rewrite is LF again.
        let now = now();
        let (_dir, path) = state(sixty_sends(now).replace('\n', "\r\n").as_bytes());
        let (ledger, past) = Ledger::open(&path, &[], &[]).unwrap();
        assert_eq!(sum(&past.run), 60);
        drop(ledger);
        assert!(!std::fs::read(&path).unwrap().contains(&b'\r'));
        assert_eq!(sum(&read(&path, &[], &[]).unwrap().run), 60);
    }

    #[test]
    fn every_refusal_of_the_reader_names_its_line() {
        for (text, line) in [
            (&b""[..], 0),
            (b"hello\n", 1),
            (b"ratefetch-quota-state 1", 1),
            ("\u{feff}ratefetch-quota-state 1\n".as_bytes(), 1),
            (b"ratefetch-quota-state 2\r\n", 1),
            (b"ratefetch-quota-state 1\nS 1 a b\n", 2),
            (b"ratefetch-quota-state 1\n\n", 2),
            (b"ratefetch-quota-state 1\nE 1\n\xff\n", 3),
        ] {
            let read = replay(text, 100, RETAIN);
            let text = String::from_utf8_lossy(text);
            match read {
                Ok(_) => assert_eq!(line, 0, "{text:?} was read"),
                Err(e) => assert!(e.contains(&format!("line {line} ")), "{text:?}: {e}"),
            }
        }
    }

    /// A claim that is not opened changes nothing: no file is created, an existing one (and
    /// a compaction's leftover) is left byte for byte; a second claim is refused meanwhile.
    #[test]
    fn a_claim_dropped_unopened_changes_nothing_and_holds_the_lock_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let first = claim(&path, &[], &[]).unwrap();
        let second = claim(&path, &[], &[]).map(|_| ()).unwrap_err();
        assert!(second.reason.contains("in use"), "{}", second.reason);
        drop(first);
        assert!(names(dir.path()).is_empty(), "no file left behind");

        let text = sixty_sends(now());
        std::fs::write(&path, &text).unwrap();
        let leftover = dir.path().join("state.ratefetch-tmp");
        std::fs::write(&leftover, b"a compaction cut short").unwrap();
        let first = claim(&path, &[], &[]).unwrap();
        assert!(claim(&path, &[], &[]).is_err(), "the claim holds the lock");
        drop(first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read(&leftover).unwrap(), b"a compaction cut short");

        // Opened, it replaces the file, and the ledger holds the lock from the claim on.
        let first = claim(&path, &[], &[]).unwrap();
        let (ledger, past) = first.open().unwrap();
        assert_eq!(sum(&past.run), 60);
        assert!(claim(&path, &[], &[]).is_err(), "the ledger holds the lock");
        assert_eq!(names(dir.path()), ["state"]);
        drop(ledger);
        drop(claim(&path, &[], &[]).unwrap());
    }
}

/// The reader fuzzed (issue 19): arbitrary bytes, and records mutated (tags, numbers near
/// the bounds and `u64::MAX`, times around the window ahead, CR, NUL, cut lines). Nothing
/// panics; what is read is bounded by the file's lines, not by a number in it; a refusal
/// names a line of the file and changes nothing; what is taken is rewritten without
/// forgetting a send.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 24 * 3600 * 1_000_000;

    fn now() -> u64 {
        wall_us(SystemTime::now())
    }

    fn number(now: u64) -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..100).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..3).prop_map(|d| (u64::MAX - d).to_string()),
            (0u64..3).prop_map(|d| (COUNT_MAX - 1 + d).to_string()),
            (0u64..3).prop_map(|d| (TIME_MAX - 1 + d).to_string()),
            // Around now, and around the edge of the window ahead (8 days).
            (-10 * DAY..10 * DAY).prop_map(move |d| now.saturating_add_signed(d).to_string()),
            (-2i64..2).prop_map(move |d| {
                (now + RETAIN.as_micros() as u64)
                    .saturating_add_signed(d)
                    .to_string()
            }),
            prop::sample::select(vec!["", "-1", "+3", "1e3", "99999999999999999999", "0x10"])
                .prop_map(str::to_string),
        ]
    }

    /// A line of any shape: tags, fields and ends mixed at random.
    fn any_line(now: u64) -> impl Strategy<Value = String> {
        let tag = prop::sample::select(vec!["B", "L", "R", "H", "S", "E", "X", "", "s", "B\0"]);
        let host = prop::sample::select(vec!["a", "b", "-", "/a", "127.0.0.1", "a\0b", "", "é"]);
        let end = prop::sample::select(vec!["\n", "\n", "\n", "\n", "\r\n", "\r", ""]);
        (
            tag,
            number(now),
            prop::option::weighted(0.6, number(now)),
            prop::option::weighted(0.7, host),
            end,
        )
            .prop_map(|(tag, t, count, host, end)| {
                let mut line = format!("{tag} {t}");
                for field in [count.as_deref(), host].into_iter().flatten() {
                    line.push(' ');
                    line.push_str(field);
                }
                line + end
            })
    }

    /// A record as a run writes it, dated within a week of now; one in thirty of any shape.
    fn line(now: u64) -> impl Strategy<Value = String> {
        let record = (
            0..6usize,
            prop_oneof![
                20 => (-7 * DAY..7 * DAY).prop_map(move |d| now.saturating_add_signed(d)),
                1 => (7 * DAY..10 * DAY).prop_map(move |d| now.saturating_add_signed(d)),
                1 => (0u64..3).prop_map(|d| u64::MAX - d),
            ],
            prop_oneof![
                20 => 0u64..70,
                2 => 0u64..1_000_000,
                1 => (0u64..3).prop_map(|d| u64::MAX - d),
                1 => (0u64..3).prop_map(|d| COUNT_MAX - 1 + d),
            ],
            prop::sample::select(vec!["a", "b", "-", "127.0.0.1"]),
            prop::sample::select(vec!["\n", "\n", "\n", "\r\n"]),
        )
            .prop_map(|(tag, t, k, host, end)| {
                let record = match tag {
                    0 => format!("B {t} {k} {host}"),
                    1 => format!("L {t} {k} {host}"),
                    2 => format!("R {t} {k}"),
                    3 => format!("H {t} {k} {host}"),
                    4 => format!("S {t} {host}"),
                    _ => format!("E {t}"),
                };
                record + end
            });
        prop_oneof![29 => record, 1 => any_line(now)]
    }

    fn file() -> impl Strategy<Value = Vec<u8>> {
        let now = now();
        let header = prop::sample::select(vec![
            "ratefetch-quota-state 1\n",
            "ratefetch-quota-state 1\n",
            "ratefetch-quota-state 1\n",
            "ratefetch-quota-state 1\n",
            "ratefetch-quota-state 1\r\n",
            "ratefetch-quota-state 1\r\n",
            "ratefetch-quota-state 2\n",
            "",
        ]);
        prop_oneof![
            1 => (header.clone(), prop::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(header, bytes)| [header.as_bytes(), &bytes].concat()),
            3 => (header.clone(), prop::collection::vec(line(now), 0..40))
                .prop_map(|(header, lines)| (header.to_string() + &lines.concat()).into_bytes()),
            // Cut anywhere: a write cut by a crash, or a file cut short.
            1 => (header, prop::collection::vec(line(now), 1..40), any::<prop::sample::Index>())
                .prop_map(|(header, lines, cut)| {
                    let text = (header.to_string() + &lines.concat()).into_bytes();
                    text[..cut.index(text.len() + 1)].to_vec()
                }),
        ]
    }

    /// The line a refusal names, which must be one of the file's.
    fn assert_names_a_line(reason: &str, text: &[u8]) {
        let lines = text.split(|b| *b == b'\n').count() as u64;
        let n: Option<u64> = reason
            .strip_prefix("line ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok());
        assert!(
            n.is_some_and(|n| (1..=lines).contains(&n)),
            "{reason:?} names no line of {:?}",
            String::from_utf8_lossy(text)
        );
    }

    fn total(sends: &[(SystemTime, u64)]) -> u128 {
        sends.iter().map(|s| u128::from(s.1)).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_state_reader_never_panics_and_names_the_line_it_refuses(text in file()) {
            let now = now();
            match replay(&text[..], now, RETAIN) {
                Err(reason) => assert_names_a_line(&reason, &text),
                Ok(r) => {
                    // One entry per line at most, and one per host for a crashed run's
                    // grants: never one per count.
                    let lines = text.iter().filter(|b| **b == b'\n').count();
                    prop_assert!(r.sends.len() <= 2 * lines + 1);
                    // Nothing further ahead than the window, nor past the counts' bound.
                    let latest = now + RETAIN.as_micros() as u64;
                    prop_assert!(r.sends.iter().all(|s| s.0 <= latest) && r.last <= latest);
                    let past = past_of(&compact(r.sends, now, RETAIN));
                    prop_assert!(total(&past.run) <= 2 * u128::from(COUNT_MAX));
                }
            }
        }

        #[test]
        fn a_claim_changes_nothing_and_an_open_forgets_nothing(text in file()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state");
            std::fs::write(&path, &text).unwrap();
            let quotas = [Quota { limit: 10, window: Duration::from_secs(3600) }];
            let claimed = claim(&path, &quotas, &[]);
            let unchanged = |path: &Path| {
                std::fs::read(path).unwrap() == text
                    && std::fs::read_dir(dir.path()).unwrap().count() == 1
            };
            match claimed {
                Err(e) => {
                    assert_names_a_line(&e.reason, &text);
                    prop_assert!(unchanged(&path), "a refusal changed the file");
                }
                Ok(claimed) => {
                    drop(claimed);
                    prop_assert!(unchanged(&path), "a claim changed the file");
                    let before = read(&path, &[], &[]).unwrap();
                    let (ledger, past) = claim(&path, &quotas, &[]).unwrap().open().unwrap();
                    drop(ledger);
                    let after = read(&path, &[], &[]).unwrap();
                    // The rewrite keeps every send it counted: 8 days by the wall clock, and
                    // the records here are at most 10 days old, so the run's totals agree.
                    prop_assert_eq!(total(&past.run), total(&after.run));
                    prop_assert!(total(&before.run) >= total(&after.run));
                }
            }
        }
    }
}
