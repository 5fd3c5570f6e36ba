//! `ratefetch merge REPORT... -o OUT`: one report from several reports of one input (the
//! `--shard` parts of a list, the reports of queue workers, a run and its reruns), with every
//! index once, in index order.
//!
//! Of the rows of one index, a success wins over a failure, then the later `started_at`,
//! then the later report on the command line. A row failed when `--retry-failed` would fetch
//! it again (`Ending::retry_due`: an error kind, no status, 429 or 5xx); a report without a
//! `status` column cannot tell, so its rows all count as failed and `started_at` decides. A
//! row without a `started_at` (a bad line, never sent) is older than any that has one.
//!
//! A torn last record, left by a killed run, is cut as `--resume` cuts it
//! (`resume::csv_complete_len`, `resume::last_line_end`); the report itself is not changed. A
//! report whose columns are not the first report's, or that has no `index` column, is
//! refused. A report's format is read from its first byte that is not white space (`{` is
//! JSONL, as ratefetch writes it; anything else CSV); all reports must have the same. An empty
//! file is a report with no rows.
//!
//! Streaming, in two passes, so that reports of millions of rows fit. Pass 1 reads each report
//! once, record by record, and keeps of each record an `Entry` of 32 bytes (its index, rank,
//! report, offset and length), never the row. The entries are then sorted by index and the
//! winner of each index kept. Pass 2 copies each winner's bytes from its report to the output,
//! as they are (a CSV record's terminator written as `\n`, as ratefetch writes it). Memory:
//! 32 bytes per record read (duplicates included), up to as much again of spare capacity
//! while the entries grow, and a read buffer of 256 KiB per report (each stays open, one file
//! descriptor, until the end). Reports are mostly in
//! index order, so pass 2 mostly reads them front to back, from the buffer; a record
//! elsewhere costs one small read.
//!
//! The output is written to a temporary file next to OUT and renamed over it at the end: a
//! merge that fails or is killed leaves OUT as it was.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::config::Format;
use crate::files::{same_path, sync_parent, try_lock, ClaimError, Claimed};
use crate::job::Ending;
use crate::report_reader::{shown, Header, ReadError, ReportReader};
use crate::rerun::sibling;

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    /// The format of the reports and of the output.
    pub format: Format,
    /// Reports read.
    pub reports: usize,
    /// Rows written: one per index.
    pub rows: u64,
    /// Rows left out because another row of their index won.
    pub duplicates: u64,
    /// Reports whose torn last record was cut.
    pub torn: u64,
    /// The bytes cut with them.
    pub torn_bytes: u64,
    /// Damaged rows left out (`--skip-damaged`).
    pub damaged: u64,
}

impl fmt::Display for MergeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {}, {} dropped, {} cut",
            plural(self.rows, "row"),
            plural(self.reports as u64, "report"),
            plural(self.duplicates, "duplicate"),
            plural(self.torn, "torn last record"),
        )?;
        if self.torn > 0 {
            write!(f, " ({} bytes)", self.torn_bytes)?;
        }
        if self.damaged > 0 {
            write!(f, ", {} left out", plural(self.damaged, "damaged row"))?;
        }
        Ok(())
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Why a merge did not write its output (exit 1). Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A report cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The report.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A report is not one this merge can take: other columns, no index column, another
    /// format, a damaged record, or the output itself.
    #[error("cannot merge {}: {reason}", path.display())]
    Refused {
        /// The report.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
}

/// Merges the reports at `inputs` into one at `out` (see the module docs). `out` is replaced
/// only when the whole merge is written; it may not be one of the inputs.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeSummary, MergeError> {
    merge_with(inputs, out, false)
}

/// `merge`, and with `skip_damaged` a damaged row is left out (and counted) instead of
/// refusing its report: the way to save the good rows of a damaged report.
pub fn merge_with(
    inputs: &[PathBuf],
    out: &Path,
    skip_damaged: bool,
) -> Result<MergeSummary, MergeError> {
    if inputs.is_empty() {
        return Err(MergeError::Refused {
            path: out.to_path_buf(),
            reason: "no reports to merge".into(),
        });
    }
    if let Some(input) = inputs.iter().find(|input| same_path(input, out)) {
        return Err(MergeError::Refused {
            path: input.clone(),
            reason: "it is also the output (-o); write the merge to a new file".into(),
        });
    }
    // One merge (or run) at a time on OUT; a merge that is refused leaves no new file.
    let claim = Claimed::open(out).map_err(|e| match e {
        ClaimError::Busy => MergeError::Refused {
            path: out.to_path_buf(),
            reason: "in use by another ratefetch run (one run per file)".into(),
        },
        ClaimError::Io(source) => MergeError::Write {
            path: out.to_path_buf(),
            source,
        },
    })?;
    let mut layout: Option<Layout> = None;
    let mut parts = Vec::with_capacity(inputs.len());
    let mut entries = Vec::new();
    let (mut torn, mut torn_bytes, mut damaged) = (0, 0, 0);
    for (n, path) in inputs.iter().enumerate() {
        let report = u32::try_from(n).map_err(|_| MergeError::Refused {
            path: path.clone(),
            reason: "too many reports for one merge".into(),
        })?;
        let (part, cut, left_out) =
            read_report(report, path, &mut layout, &mut entries, skip_damaged)?;
        torn += u64::from(cut > 0);
        torn_bytes += cut;
        damaged += left_out;
        parts.push(part);
    }
    let read = entries.len() as u64;
    let winners = winners(entries);
    let format = layout.as_ref().map_or(Format::Csv, |l| l.format);
    write_output(out, claim, layout.as_ref(), &mut parts, &winners)?;
    Ok(MergeSummary {
        format,
        reports: inputs.len(),
        rows: winners.len() as u64,
        duplicates: read - winners.len() as u64,
        torn,
        torn_bytes,
        damaged,
    })
}

/// One record of a report, as pass 1 keeps it: 32 bytes, whatever the row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The job index.
    index: u64,
    /// Of two records of one index, the higher rank wins (`rank`).
    rank: u64,
    /// Where the record starts in its report (a CSV record's span may begin with the line
    /// break of the record before, see `csv_body`).
    offset: u64,
    /// Its length in bytes.
    len: u32,
    /// Its report, by position on the command line.
    report: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

/// A record's rank: a success above any failure, then the later `started_at` (milliseconds
/// since the Unix epoch; 0 when it has none).
fn rank(failed: bool, started_ms: u64) -> u64 {
    (u64::from(!failed) << 63) | started_ms.min(u64::MAX >> 1)
}

/// A `started_at` cell in milliseconds since the Unix epoch; 0 when empty or unreadable.
fn started_ms(cell: &str) -> u64 {
    if cell.is_empty() {
        return 0;
    }
    humantime::parse_rfc3339_weak(cell)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The winner of each index, in index order: the entries sorted by (index, rank, report,
/// offset), the last of each index kept. Sorts in place; the order is total, so the result
/// does not depend on the sort.
fn winners(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_unstable_by_key(|e| (e.index, e.rank, e.report, e.offset));
    let mut kept = 0;
    for i in 0..entries.len() {
        let last_of_index = entries
            .get(i + 1)
            .is_none_or(|n| n.index != entries[i].index);
        if last_of_index {
            entries[kept] = entries[i];
            kept += 1;
        }
    }
    entries.truncate(kept);
    entries
}

/// What the first report with columns set, and every other report must match.
struct Layout {
    format: Format,
    /// The report that set it (named when another is refused).
    first: PathBuf,
    /// Its columns; a CSV header's bytes are copied to the output from that report, the
    /// first one read.
    columns: Header,
}

/// A report opened for pass 2.
struct Part {
    path: PathBuf,
    ranges: Ranges,
}

/// A file read back by byte ranges, through a buffer.
struct Ranges {
    file: File,
    /// Bytes of the file from `start` on.
    buf: Vec<u8>,
    start: u64,
}

/// Bytes read at once when a report is read front to back.
const READ_AHEAD: usize = 256 * 1024;
/// Bytes read at once for a record out of order.
const READ_AROUND: usize = 16 * 1024;

impl Part {
    fn new(path: &Path, file: File) -> Part {
        Part {
            path: path.to_path_buf(),
            ranges: Ranges {
                file,
                buf: Vec::new(),
                start: 0,
            },
        }
    }
}

impl Ranges {
    /// The `len` bytes at `offset`. A range in the buffer costs no read; one that starts in
    /// it or right after it (the report read front to back) reads far ahead; any other, a
    /// little.
    fn range(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let buf_end = self.start + self.buf.len() as u64;
        let inside = offset >= self.start && offset + len as u64 <= buf_end;
        if !inside {
            let ahead = if offset >= self.start && offset <= buf_end {
                READ_AHEAD
            } else {
                READ_AROUND
            };
            let want = len.max(ahead);
            self.buf.resize(want, 0);
            self.file.seek(SeekFrom::Start(offset))?;
            let mut got = 0;
            while got < want {
                match self.file.read(&mut self.buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(got);
            self.start = offset;
            if got < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the report became shorter during the merge",
                ));
            }
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }
}

/// Pass 1 over one report, through the report reader: checks its format and columns
/// against `layout` (or sets it), pushes an entry per whole row. Returns the report opened
/// for pass 2, the bytes of a torn last record left out, and the damaged rows left out
/// (with `skip_damaged`; without it damage refuses the report).
fn read_report(
    report: u32,
    path: &Path,
    layout: &mut Option<Layout>,
    entries: &mut Vec<Entry>,
    skip_damaged: bool,
) -> Result<(Part, u64, u64), MergeError> {
    let read_err = |source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |reason: String| MergeError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let fail = |e: ReadError| match e {
        ReadError::Io(source) => read_err(source),
        ReadError::Damaged { .. } => refuse(format!(
            "{e}; fix that row, or leave the damaged rows out with --skip-damaged"
        )),
        ReadError::Foreign(reason) => {
            refuse(format!("{reason}; merge needs the index of each row"))
        }
    };
    let file = File::open(path).map_err(read_err)?;
    if file.metadata().map_err(read_err)?.is_dir() {
        return Err(read_err(io::Error::other("is a directory")));
    }
    let mut reader =
        ReportReader::open(&file, &["status", "error_kind", "started_at"], skip_damaged)
            .map_err(fail)?;
    let format = reader.format();
    let header = reader.header().clone();
    if matches!(header, Header::Empty) {
        // No rows (a header cut short, at most, by a run killed as it began).
        let torn = reader.torn();
        drop(reader);
        return Ok((Part::new(path, file), torn, 0));
    }
    match layout.as_ref() {
        Some(l) if l.format != format => {
            return Err(refuse(format!(
                "it is a {} report, and {} is {}",
                format.name(),
                l.first.display(),
                l.format.name()
            )))
        }
        Some(l) if !l.columns.same_columns(&header) => {
            return Err(refuse(format!(
                "its columns are not those of {} (found {})",
                l.first.display(),
                shown(&header.names())
            )))
        }
        Some(_) => {}
        None => {
            *layout = Some(Layout {
                format,
                first: path.to_path_buf(),
                columns: header,
            })
        }
    }
    while let Some(row) = reader.next_row().map_err(fail)? {
        // Failed as --retry-failed decides it; an absent column reads as an empty cell.
        let failed = Ending::of_cells(row.cell(1), row.cell(0)).retry_due();
        let len = u32::try_from(row.len).map_err(|_| {
            refuse(format!(
                "the row at byte {} is larger than 4 GiB",
                row.offset
            ))
        })?;
        entries.push(Entry {
            index: row.index,
            rank: rank(failed, started_ms(row.cell(2))),
            offset: row.offset,
            len,
            report,
        });
    }
    let (torn, skipped) = (reader.torn(), reader.skipped().0);
    for (line, reason) in reader.skipped().1 {
        eprintln!(
            "ratefetch merge: {}: left out line {line}: {reason}",
            path.display()
        );
    }
    drop(reader);
    Ok((Part::new(path, file), torn, skipped))
}

/// A CSV record's bytes as the output takes them. Its span runs from the end of the record
/// before, so it may begin with line breaks (the LF of a CR LF, blank lines), and it ends
/// with one terminator (CR or LF, outside quotes); both are dropped.
fn csv_body(span: &[u8]) -> &[u8] {
    let start = span
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(span.len());
    let span = &span[start..];
    match span.split_last() {
        Some((b'\r' | b'\n', body)) => body,
        _ => span,
    }
}

/// Pass 2: writes the header (CSV) and each winner's record, in index order, to a temporary
/// file next to `out`, then renames it over `out`.
fn write_output(
    out: &Path,
    claim: Claimed,
    layout: Option<&Layout>,
    parts: &mut [Part],
    winners: &[Entry],
) -> Result<(), MergeError> {
    let write_err = |source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    };
    // A symlinked output is written where it really is.
    let target = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let tmp = sibling(&target, "merge");
    let written = (|| {
        let file = File::create(&tmp).map_err(write_err)?;
        // Locked before it replaces OUT, so the lock on OUT holds on.
        try_lock(&file).map_err(|e| match e {
            ClaimError::Io(e) => write_err(e),
            ClaimError::Busy => write_err(io::Error::other("its temporary file is in use")),
        })?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let format = layout.map_or(Format::Csv, |l| l.format);
        if let Some(Layout {
            columns: Header::Csv { len, .. },
            first,
            ..
        }) = layout
        {
            let report = parts
                .iter()
                .position(|p| p.path == *first)
                .expect("the first report is a part") as u32;
            let len = u32::try_from(*len).map_err(|_| MergeError::Refused {
                path: first.clone(),
                reason: "its header is larger than 4 GiB".into(),
            })?;
            let span = Entry {
                index: 0,
                rank: 0,
                offset: 0,
                len,
                report,
            };
            copy_record(&mut w, format, parts, &span, out)?;
        }
        for e in winners {
            copy_record(&mut w, format, parts, e, out)?;
        }
        let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        Ok(file)
    })();
    let renamed = written.and_then(|file| {
        std::fs::rename(&tmp, &target).map_err(write_err)?;
        // OUT is the new file now, locked until the end: the claim must not remove it.
        drop(claim.keep());
        Ok(file)
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed?;
    let _ = sync_parent(&target);
    Ok(())
}

/// Copies the record `e` names from its report to `w` (the output at `out`).
fn copy_record(
    w: &mut impl Write,
    format: Format,
    parts: &mut [Part],
    e: &Entry,
    out: &Path,
) -> Result<(), MergeError> {
    let part = &mut parts[e.report as usize];
    let bytes = part
        .ranges
        .range(e.offset, e.len as usize)
        .map_err(|source| MergeError::Read {
            path: part.path.clone(),
            source,
        })?;
    match format {
        Format::Csv => w
            .write_all(csv_body(bytes))
            .and_then(|()| w.write_all(b"\n")),
        Format::Jsonl => w.write_all(bytes),
    }
    .map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Failure};
    use crate::job::Outcome;
    use crate::sink::tests::{multi_line, render, render_with, sample};
    use crate::sink::Columns;
    use std::time::{Duration, SystemTime};

    fn at_ms(ms: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_millis(ms))
    }

    fn ok(index: u64, started: u64) -> Outcome {
        Outcome {
            index,
            url: format!("http://a.test/{index}"),
            started_at: at_ms(started),
            ..sample()
        }
    }

    fn with_status(index: u64, started: u64, status: u16) -> Outcome {
        Outcome {
            status: Some(status),
            ..ok(index, started)
        }
    }

    fn failed_row(index: u64, started: u64) -> Outcome {
        Outcome {
            started_at: at_ms(started),
            ..Outcome::failed(
                index,
                format!("http://a.test/{index}"),
                Failure::new(ErrorKind::Connect, "refused"),
            )
        }
    }

    /// Writes each text as a report in a temp dir; returns the dir and the paths.
    fn reports(texts: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = texts
            .iter()
            .map(|(name, text)| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    /// Merges `paths` into `out.csv` in `dir`; returns the summary and the output.
    fn merged(dir: &Path, paths: &[PathBuf]) -> (MergeSummary, String) {
        let out = dir.join("out");
        let summary = merge(paths, &out).unwrap();
        (summary, std::fs::read_to_string(&out).unwrap())
    }

    fn refusal(paths: &[PathBuf], out: &Path) -> String {
        match merge(paths, out) {
            Err(e @ MergeError::Refused { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_takes_32_bytes_whatever_its_row_holds() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn a_success_outranks_a_failure_and_then_the_later_start_wins() {
        assert!(rank(false, 0) > rank(true, u64::MAX));
        assert!(rank(false, 2) > rank(false, 1));
        assert!(rank(true, 2) > rank(true, 1));
        let e = |index, rank, report, offset| Entry {
            index,
            rank,
            offset,
            len: 1,
            report,
        };
        let won = winners(vec![
            e(2, rank(false, 5), 0, 10),
            e(1, rank(true, 9), 1, 0),
            e(2, rank(true, 9), 1, 20),
            e(1, rank(false, 3), 0, 0),
            e(3, rank(false, 3), 0, 30),
            e(3, rank(false, 3), 1, 40),
        ]);
        assert_eq!(
            won,
            [
                e(1, rank(false, 3), 0, 0),
                e(2, rank(false, 5), 0, 10),
                e(3, rank(false, 3), 1, 40),
            ],
            "by index; a success over a failure; on a tie, the later report"
        );
    }

    #[test]
    fn started_at_is_read_as_the_sink_writes_it() {
        assert_eq!(started_ms("1970-01-01T00:00:01.500Z"), 1500);
        assert_eq!(
            started_ms(&crate::sink::rfc3339(
                UNIX_EPOCH + Duration::from_millis(1_234_567)
            )),
            1_234_567
        );
        assert_eq!(started_ms(""), 0);
        assert_eq!(started_ms("yesterday"), 0, "unreadable counts as oldest");
    }

    #[test]
    fn a_single_report_in_index_order_is_copied_byte_for_byte() {
        let (columns, _) = multi_line(1);
        let rows: Vec<Outcome> = (1..=3).map(|i| multi_line(i).1).collect();
        for (format, name) in [(Format::Csv, "r.csv"), (Format::Jsonl, "r.jsonl")] {
            let text = render_with(format, &columns, &rows);
            let (dir, paths) = reports(&[(name, &text)]);
            let (summary, out) = merged(dir.path(), &paths);
            assert_eq!(out, text, "{format:?}");
            assert_eq!(
                (
                    summary.format,
                    summary.rows,
                    summary.duplicates,
                    summary.torn
                ),
                (format, 3, 0, 0)
            );
        }
    }

    #[test]
    fn rows_come_out_in_index_order_each_index_once_by_the_rules() {
        let a = render(
            Format::Csv,
            &[
                ok(3, 100),
                failed_row(1, 900),
                with_status(2, 100, 200),
                ok(5, 100),
            ],
        );
        let b = render(
            Format::Csv,
            &[
                with_status(2, 500, 404),
                ok(1, 100),
                ok(4, 100),
                with_status(5, 900, 503),
            ],
        );
        let (dir, paths) = reports(&[("a.csv", &a), ("b.csv", &b)]);
        let (summary, out) = merged(dir.path(), &paths);
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let got: Vec<(String, String, String)> = rdr
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[3].to_string(), r[11].to_string())
            })
            .collect();
        let t = |ms| crate::sink::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(
            got,
            [
                ("1".into(), "200".into(), t(100)),
                ("2".into(), "404".into(), t(500)),
                ("3".into(), "200".into(), t(100)),
                ("4".into(), "200".into(), t(100)),
                ("5".into(), "200".into(), t(100)),
            ],
            "1: a success over a later failure; 2: a 404 is no failure, the later wins; \
             5: a 503 is a failure"
        );
        assert_eq!((summary.rows, summary.duplicates), (5, 3));
    }

    #[test]
    fn a_report_without_status_or_error_columns_is_decided_by_started_at() {
        let fields: Vec<String> = ["index", "url", "started_at"].map(String::from).to_vec();
        let columns = Columns::new(&[], false, &[], Some(&fields)).unwrap();
        let a = render_with(Format::Csv, &columns, &[ok(1, 200), failed_row(2, 100)]);
        let b = render_with(Format::Csv, &columns, &[failed_row(1, 100), ok(2, 200)]);
        let (dir, paths) = reports(&[("a.csv", &a), ("b.csv", &b)]);
        let (_, out) = merged(dir.path(), &paths);
        let t = crate::sink::rfc3339(UNIX_EPOCH + Duration::from_millis(200));
        assert_eq!(
            out,
            format!("index,url,started_at\n1,http://a.test/1,{t}\n2,http://a.test/2,{t}\n")
        );
    }

    #[test]
    fn a_csv_report_torn_anywhere_in_its_last_multi_line_record_loses_only_that_record() {
        let (columns, one) = multi_line(1);
        let two = multi_line(2).1;
        let whole = render_with(Format::Csv, &columns, &[one, two]);
        // Row 3 wins over the other report's row 3 if it is read at all: a later success.
        let three = Outcome {
            started_at: at_ms(9_000_000),
            ..multi_line(3).1
        };
        let full = render_with(Format::Csv, &columns, &[three]);
        let row3 = &full[full.find('\n').unwrap() + 1..];
        let other = render_with(Format::Csv, &columns, &[failed(3)]);
        let other_row3 = &other[other.find('\n').unwrap() + 1..];
        fn failed(index: u64) -> Outcome {
            Outcome {
                passthrough: vec![String::new(), String::new()],
                extracted: vec![String::new()],
                ..failed_row(index, 1)
            }
        }
        for cut in 1..row3.len() {
            let torn = format!("{whole}{}", &row3[..cut]);
            let (dir, paths) = reports(&[("torn.csv", &torn), ("other.csv", &other)]);
            let (summary, out) = merged(dir.path(), &paths);
            assert_eq!(out, format!("{whole}{other_row3}"), "cut at {cut}");
            assert_eq!((summary.torn, summary.torn_bytes), (1, cut as u64));
            assert_eq!(
                std::fs::read_to_string(&paths[0]).unwrap(),
                torn,
                "the report itself is left as it is"
            );
        }
    }

    #[test]
    fn a_jsonl_report_torn_in_its_last_line_loses_only_that_line() {
        let (columns, _) = multi_line(1);
        let whole = render_with(Format::Jsonl, &columns, &[multi_line(1).1]);
        let line2 = render_with(Format::Jsonl, &columns, &[multi_line(2).1]);
        for cut in 1..line2.len() {
            let torn = format!("{whole}{}", &line2[..cut]);
            let (dir, paths) = reports(&[("torn.jsonl", &torn)]);
            let (summary, out) = merged(dir.path(), &paths);
            assert_eq!(out, whole, "cut at {cut}");
            assert_eq!((summary.rows, summary.torn), (1, 1));
        }
    }

    #[test]
    fn crlf_records_and_blank_lines_come_out_as_ratefetch_writes_them() {
        let text = "index,url\r\n2,\"b\r\nc\"\r\n\r\n1,a\r\n";
        let (dir, paths) = reports(&[("r.csv", text)]);
        let (summary, out) = merged(dir.path(), &paths);
        assert_eq!(out, "index,url\n1,a\n2,\"b\r\nc\"\n");
        assert_eq!((summary.rows, summary.torn), (2, 0));
    }

    #[test]
    fn empty_files_are_reports_without_rows() {
        let a = render(Format::Jsonl, &[ok(1, 1)]);
        let (dir, paths) = reports(&[("empty.jsonl", ""), ("a.jsonl", &a)]);
        let (summary, out) = merged(dir.path(), &paths);
        assert_eq!((out, summary.reports, summary.rows), (a, 2, 1));
        let (dir, paths) = reports(&[("empty", "")]);
        assert_eq!(merged(dir.path(), &paths).1, "");
    }

    #[test]
    fn reports_with_other_columns_no_index_or_another_format_are_refused_naming_the_file() {
        let std = render(Format::Csv, &[ok(1, 1)]);
        let fields: Vec<String> = ["url", "status"].map(String::from).to_vec();
        let no_index = Columns::new(&[], false, &[], Some(&fields)).unwrap();
        let no_index = render_with(Format::Csv, &no_index, &[ok(1, 1)]);
        let (extra, _) = multi_line(1);
        let extra = render_with(Format::Csv, &extra, &[multi_line(1).1]);
        let jsonl = render(Format::Jsonl, &[ok(2, 1)]);
        let jsonl_no_index = "{\"url\":\"http://a.test/\",\"status\":200}\n";
        let jsonl_other = "{\"index\":3,\"url\":\"http://a.test/\"}\n";
        let (dir, p) = reports(&[
            ("std.csv", &std),
            ("no-index.csv", &no_index),
            ("extra.csv", &extra),
            ("std.jsonl", &jsonl),
            ("no-index.jsonl", jsonl_no_index),
            ("other.jsonl", jsonl_other),
            ("bad-index.csv", &std.replace("\n1,", "\n0,")),
            ("bad-line.jsonl", &format!("{jsonl}not json\n")),
        ]);
        let out = dir.path().join("out.csv");
        let cases = [
            (
                vec![&p[0], &p[1]],
                "no-index.csv: it has no index column (found url,status)",
            ),
            (vec![&p[1]], "no-index.csv: it has no index column"),
            (
                vec![&p[0], &p[2]],
                "extra.csv: its columns are not those of",
            ),
            (vec![&p[0], &p[3]], "std.jsonl: it is a JSONL report, and"),
            (
                vec![&p[4]],
                "no-index.jsonl: it has no index column (found url,status)",
            ),
            (
                vec![&p[3], &p[5]],
                "other.jsonl: its columns are not those of",
            ),
            (vec![&p[3], &p[4]], "no-index.jsonl: it has no index column"),
            (vec![&p[6]], "bad-index.csv: line 2: its index is 0"),
            (
                vec![&p[7]],
                "bad-line.jsonl: line 2: it is not a ratefetch JSONL row",
            ),
        ];
        for (inputs, want) in cases {
            let inputs: Vec<PathBuf> = inputs.into_iter().cloned().collect();
            let err = refusal(&inputs, &out);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert_eq!(err.lines().count(), 1, "{err:?}");
            assert!(!out.exists(), "nothing written for {want:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary left: {leftovers:?}");
    }

    #[test]
    fn the_output_may_not_be_an_input_even_through_another_name() {
        let text = render(Format::Csv, &[ok(1, 1)]);
        let (dir, paths) = reports(&[("a.csv", &text)]);
        let link = dir.path().join("link.csv");
        std::fs::hard_link(&paths[0], &link).unwrap();
        for out in [&paths[0], &link] {
            let err = refusal(&paths, out);
            assert!(err.contains("a.csv: it is also the output"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), text);
    }

    #[test]
    fn a_refused_merge_leaves_an_existing_output_as_it_was() {
        let good = render(Format::Csv, &[ok(1, 1)]);
        let (dir, paths) = reports(&[("a.csv", &good), ("b.csv", "url\nx\n")]);
        let out = dir.path().join("out.csv");
        std::fs::write(&out, "before\n").unwrap();
        refusal(&paths, &out);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "before\n");
        merge(&paths[..1], &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), good);
    }

    #[test]
    fn a_merge_failing_midway_leaves_the_output_as_it_was() {
        let text = render(Format::Jsonl, &[ok(1, 1), ok(2, 1)]);
        let (dir, paths) = reports(&[("a.jsonl", &text)]);
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "before\n").unwrap();
        let mut parts = vec![Part::new(&paths[0], File::open(&paths[0]).unwrap())];
        let line = text.find('\n').unwrap() as u32 + 1;
        let entry = |index, offset| Entry {
            index,
            rank: 0,
            offset,
            len: line,
            report: 0,
        };
        // The second record lies past the end (the report shrank during the merge): the
        // first is written, then the read fails.
        let layout = Layout {
            format: Format::Jsonl,
            first: paths[0].clone(),
            columns: Header::Jsonl(Vec::new()),
        };
        let winners = [entry(1, 0), entry(2, text.len() as u64)];
        let claim = Claimed::open(&out).unwrap();
        let err = write_output(&out, claim, Some(&layout), &mut parts, &winners).unwrap_err();
        assert!(matches!(err, MergeError::Read { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "before\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
    }

    #[test]
    fn ranges_are_read_right_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bytes");
        let bytes: Vec<u8> = (0..READ_AHEAD * 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut part = Part::new(&path, File::open(&path).unwrap());
        let len = bytes.len();
        let ranges = [
            (0, 10),
            (10, 100),
            (5, 3),
            (len - 7, 7),
            (READ_AHEAD - 4, 20),
            (1000, READ_AHEAD + 5),
            (len - READ_AROUND - 1, READ_AROUND + 1),
            (0, len),
        ];
        for (offset, n) in ranges {
            let got = part.ranges.range(offset as u64, n).unwrap();
            assert_eq!(got, &bytes[offset..offset + n], "{offset}+{n}");
        }
        assert!(part.ranges.range(len as u64 - 1, 2).is_err());
    }
}
