//! Resume: a run that appends to an earlier report does each job exactly once. This module
//! reads the earlier report (cuts a torn last record, checks its format, collects the done
//! indices with a tag of each URL) and checks the new input against it, job by job, on the
//! input thread (`Skip`): a done job is skipped, a job not done goes on, and an input that
//! is not the one the report was made from is refused (`NotTheSameInput`) before anything
//! is fetched.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::config::Format;
use crate::error::Error;
use crate::files::{ClaimError, Claimed};
use crate::job::Job;
use crate::report_reader::{shown, Header, ReadError, ReportReader};
use crate::sink::{csv_text, Columns, OtherColumns, Std};

/// The job indices already in a report, each with a one-byte tag of its URL, so that a
/// resume can tell that the input is not the one the report was made from. One byte per
/// input line: 10 million lines take 10 MB.
#[derive(Debug, Default, Clone)]
pub struct DoneSet {
    /// `tags[index]`: 0 when not done, else the URL's tag (1..=255).
    tags: Vec<u8>,
    /// Indices too large for `tags` (only a damaged report has them).
    sparse: std::collections::HashMap<u64, u8>,
    len: u64,
    max: u64,
}

/// Indices below this live in the dense table (at most 64 MB); larger ones in a map, so a
/// damaged index cell cannot make a resume allocate gigabytes.
const DENSE_LIMIT: u64 = 1 << 26;

/// FNV-1a folded into 1..=255: stable across runs and Rust versions, unlike std's hasher.
fn url_tag(url: &str) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for b in url.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h % 255) as u8 + 1
}

impl DoneSet {
    /// Marks `index` done with the URL cell found in the report. Returns false if it was
    /// already there (a report with an index twice).
    pub fn insert(&mut self, index: u64, url: &str) -> bool {
        let tag = url_tag(url);
        let fresh = if index < DENSE_LIMIT {
            let i = index as usize;
            if i >= self.tags.len() {
                let grown = (i + 1).max(self.tags.len() * 2).min(DENSE_LIMIT as usize);
                self.tags.resize(grown, 0);
            }
            std::mem::replace(&mut self.tags[i], tag) == 0
        } else {
            self.sparse.insert(index, tag).is_none()
        };
        self.len += u64::from(fresh);
        self.max = self.max.max(index);
        fresh
    }

    /// The highest index in the set (0 when empty).
    pub fn max_index(&self) -> u64 {
        self.max
    }

    /// Whether `index` is done.
    #[cfg(test)]
    pub fn contains(&self, index: u64) -> bool {
        self.tag(index).is_some()
    }

    fn tag(&self, index: u64) -> Option<u8> {
        if index < DENSE_LIMIT {
            self.tags.get(index as usize).copied().filter(|t| *t != 0)
        } else {
            self.sparse.get(&index).copied()
        }
    }

    /// For a done index, whether `url` (as the report writes it) matches the report's cell:
    /// `None` when the index is not done. A different URL is caught with probability 254/255
    /// per line.
    pub fn matches(&self, index: u64, report_url: &str) -> Option<bool> {
        self.tag(index).map(|t| t == url_tag(report_url))
    }

    /// How many indices are in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The `url` cell as the report holds it, in `format`.
pub fn report_url(format: Format, url: &str) -> Cow<'_, str> {
    match format {
        Format::Csv => csv_text(url),
        Format::Jsonl => Cow::Borrowed(url),
    }
}

/// The input of a `--resume` is not the one the report was made from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; --resume needs the input the report was made from")]
pub struct NotTheSameInput(pub String);

/// What the input thread does with one job of a resumed run.
#[derive(Debug)]
pub enum Verdict {
    /// In the report already, with the same URL: not done again.
    Done,
    /// Not in the report: to be done. Until `Skip::passed`, it may not leave yet (the run
    /// holds its scheduler shut).
    Keep(Job),
}

/// Checks a resumed run's input against the report, job by job. Until the report's highest
/// index has been checked (`passed`), nothing may leave, so that a resume with another input
/// is refused before anything is fetched, even from stdin: the jobs read meanwhile wait in
/// the run's scheduler, which is held shut (and spills to disk, so there is no limit on how
/// many jobs a host-sorted crawl left not done below its last index).
#[derive(Debug)]
pub struct Skip {
    done: DoneSet,
    /// The report's format (to compare URLs as it wrote them).
    format: Format,
    /// Done indices seen in the input with the report's URL.
    checked: u64,
    /// Every done index was seen and matched.
    passed: bool,
}

impl Skip {
    /// The check against a report holding `done`, written in `format`.
    pub fn new(done: DoneSet, format: Format) -> Skip {
        Skip {
            done,
            format,
            checked: 0,
            passed: false,
        }
    }

    /// Takes the input's next job. `unit` is what an index counts (`line`, `row`), for the
    /// message of a mismatch.
    pub fn check(&mut self, job: Job, unit: &str) -> Result<Verdict, NotTheSameInput> {
        match self
            .done
            .matches(job.index, &report_url(self.format, &job.url))
        {
            Some(true) => {
                self.checked += 1;
                return Ok(Verdict::Done);
            }
            Some(false) => {
                return Err(NotTheSameInput(format!(
                    "{unit} {} is not the URL the report holds for index {}",
                    job.index, job.index
                )))
            }
            None => {}
        }
        if job.index < self.done.max_index() {
            return Ok(Verdict::Keep(job));
        }
        // Past the report's last index: every done index must have been seen, and matched,
        // before anything is sent.
        if self.checked != self.done.len() {
            return Err(NotTheSameInput(format!(
                "{} rows of the report have no matching {unit} in this input",
                self.done.len() - self.checked
            )));
        }
        self.passed = true;
        Ok(Verdict::Keep(job))
    }

    /// Whether the input is known to be the report's: the jobs read may leave.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// At the end of the input: every row of the report must have been matched. Then the
    /// jobs read may leave.
    pub fn finish(&mut self) -> Result<(), NotTheSameInput> {
        if self.checked != self.done.len() {
            return Err(NotTheSameInput(format!(
                "the report holds {} rows for lines this input does not have",
                self.done.len() - self.checked
            )));
        }
        self.passed = true;
        Ok(())
    }
}

/// An earlier report claimed for `--resume`: locked, read and checked, not yet changed.
pub struct Resumed {
    /// The report, locked. Nothing is written to it before `Resumed::appender`.
    pub claim: Claimed,
    /// Job indices already in the report, with their URL tags.
    pub done: DoneSet,
    /// The format of the report (to compare URLs as the report writes them).
    pub format: Format,
    /// True when the report has no header yet (empty, or a header cut short): the header
    /// must be written.
    pub fresh: bool,
    /// Bytes up to the end of the last whole record: what is kept.
    pub whole: u64,
    /// Bytes of a torn last record, cut when the run writes its first row.
    #[cfg_attr(not(test), allow(dead_code))] // checked by the tests
    pub repaired: u64,
}

impl Resumed {
    /// The run goes on: the report to append to. Its torn tail is cut just before the first
    /// byte is written, so a run refused later (another input) changes nothing.
    pub fn appender(self) -> io::Result<Appender> {
        Appender::new(self.claim.keep(), self.whole)
    }
}

/// Claims `path` for `--resume` (locks it; a missing file is created, and removed again if
/// the run is refused) and reads it back through the report reader: checks its format and
/// columns, reads the done indices. Changes nothing.
pub fn open(path: &Path, format: Format, columns: &Columns) -> Result<Resumed, Error> {
    let keys = key_columns(path, columns)?;
    let claim = Claimed::open(path).map_err(|e| claim_error(path, e))?;
    let read = read(claim.file(), path, format, columns, keys)?;
    Ok(Resumed {
        claim,
        done: read.done,
        format,
        fresh: read.fresh,
        whole: read.whole,
        repaired: read.torn,
    })
}

/// The error of a claim on the report.
pub fn claim_error(path: &Path, e: ClaimError) -> Error {
    match e {
        ClaimError::Busy => Error::InUse {
            path: path.to_path_buf(),
        },
        ClaimError::Io(source) => Error::Output {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The done indices of the report at `path`, as `open` reads them, without locking or
/// changing the file (for `--plan`: a run may hold it). A missing file has none done.
pub fn peek(path: &Path, format: Format, columns: &Columns) -> Result<DoneSet, Error> {
    let keys = key_columns(path, columns)?;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DoneSet::default()),
        Err(e) => return Err(read_error(path, e)),
    };
    Ok(read(&file, path, format, columns, keys)?.done)
}

fn read_error(path: &Path, e: io::Error) -> Error {
    Error::Resume {
        path: path.to_path_buf(),
        reason: format!("cannot read it: {e}"),
    }
}

/// The positions of the index and url columns, which a resume needs.
fn key_columns(path: &Path, columns: &Columns) -> Result<(usize, usize), Error> {
    match (columns.position(Std::Index), columns.position(Std::Url)) {
        (Some(index_at), Some(url_at)) => Ok((index_at, url_at)),
        _ => Err(Error::Resume {
            path: path.to_path_buf(),
            reason: "--resume needs the index and url columns (add them to --fields)".to_string(),
        }),
    }
}

/// What a report holds, for a resume.
struct ReadBack {
    done: DoneSet,
    fresh: bool,
    whole: u64,
    torn: u64,
}

/// Reads the report in `file` with the report reader: its format and columns must be this
/// run's; collects the done indices with their URL tags.
fn read(
    file: &File,
    path: &Path,
    format: Format,
    columns: &Columns,
    (_, url_at): (usize, usize),
) -> Result<ReadBack, Error> {
    let refuse = |reason: String| Error::Resume {
        path: path.to_path_buf(),
        reason,
    };
    // The names as found, escaped: a header may hold anything.
    let other_columns = |names: &[String]| {
        refuse(format!(
            "{}; write to a new file",
            OtherColumns(shown(names))
        ))
    };
    let fail = |e: ReadError| match e {
        ReadError::Io(e) => read_error(path, e),
        ReadError::Foreign(reason) => refuse(format!(
            "{reason}: its columns are not this run's; write to a new file"
        )),
        e => refuse(e.explain(path)),
    };
    let url = &columns.names()[url_at];
    let mut reader = ReportReader::open(file, &[url.as_str()], false).map_err(fail)?;
    match reader.header() {
        Header::Empty => {
            // Nothing but, perhaps, a header cut short by a run killed as it began: that
            // much of this run's header, or it is not this run's report.
            let torn = reader.torn();
            if torn > 0
                && !torn_header_is(file, torn, format, columns).map_err(|e| read_error(path, e))?
            {
                return Err(refuse(
                    "its first line is not a ratefetch report's header, and it has no whole \
                     row; write to a new file"
                        .into(),
                ));
            }
            return Ok(ReadBack {
                done: DoneSet::default(),
                fresh: true,
                whole: 0,
                torn,
            });
        }
        _ if reader.format() != format => {
            return Err(refuse(format!(
                "it is a {} report and this run writes {} (--format); write to a new file",
                reader.format().name(),
                format.name()
            )))
        }
        Header::Csv { cells, .. } => {
            let names: Vec<String> = cells
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            if columns
                .check_header(names.iter().map(String::as_str))
                .is_err()
            {
                return Err(other_columns(&names));
            }
        }
        Header::Jsonl(keys) => {
            if keys.as_slice() != columns.names() {
                return Err(other_columns(keys));
            }
        }
    }
    let mut done = DoneSet::default();
    while let Some(row) = reader.next_row().map_err(fail)? {
        done.insert(row.index, row.cell(0));
    }
    Ok(ReadBack {
        done,
        fresh: false,
        whole: reader.whole(),
        torn: reader.torn(),
    })
}

/// Whether the `torn` bytes a report holds, none of them a whole record, are the start of
/// what this run writes first: its header (CSV), or a row cut short (JSONL: `{"` and the
/// first column's name). Anything else is not this run's report.
fn torn_header_is(file: &File, torn: u64, format: Format, columns: &Columns) -> io::Result<bool> {
    let header = match format {
        Format::Csv => columns.csv_header(),
        Format::Jsonl => {
            let first = columns.names().first().map_or("", String::as_str);
            let key = serde_json::to_string(first).expect("a string is JSON");
            let start = format!("{{{key}:").into_bytes();
            if torn > start.len() as u64 {
                // Longer than the start of a row: it must begin as one.
                return Ok(read_head(file, start.len())? == start);
            }
            start
        }
    };
    if torn > header.len() as u64 {
        return Ok(false);
    }
    Ok(header.starts_with(&read_head(file, torn as usize)?))
}

/// The first `n` bytes of `file` (it has them).
fn read_head(file: &File, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut head)?;
    Ok(head)
}

/// A report appended to: the bytes after `whole` (a torn record) are cut before the first
/// write, not before, so a run that writes nothing changes nothing.
pub struct Appender {
    file: File,
    cut: Option<u64>,
    /// Not yet positioned at the end (the reader left it anywhere).
    first: bool,
}

impl Appender {
    fn new(file: File, whole: u64) -> io::Result<Appender> {
        let len = file.metadata()?.len();
        Ok(Appender {
            file,
            cut: Some(whole).filter(|w| *w < len),
            first: true,
        })
    }

    /// The file, for syncing (a queue worker's durable rows).
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.first {
            if let Some(at) = self.cut {
                self.file.set_len(at)?;
                self.cut = None;
            }
            self.file.seek(SeekFrom::End(0))?;
            self.first = false;
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_reader::complete_len_of;
    use crate::sink::tests::{multi_line, render, render_with, sample};

    #[test]
    fn whole_records_end_at_a_terminator_outside_quotes() {
        for (text, whole) in [
            ("", ""),
            ("a,b", ""),
            ("a,b\n1,2\n", "a,b\n1,2\n"),
            ("a,b\n1,2", "a,b\n"),
            ("a,b\n1,\"x\ny\"\n", "a,b\n1,\"x\ny\"\n"),
            ("a,b\n1,\"x\n", "a,b\n"),
            ("a,b\n1,\"x\ny\"", "a,b\n"),
            ("a,b\n1,\"x\"\"\n", "a,b\n"),
            ("a,b\n1,\"x\"\"\"\n", "a,b\n1,\"x\"\"\"\n"),
            ("a,b\r\n1,\"x\r\ny\"\r\n", "a,b\r\n1,\"x\r\ny\"\r\n"),
            ("a,b\r\n1,\"x\r", "a,b\r\n"),
            ("a,b\n1,2\n\n", "a,b\n1,2\n"),
        ] {
            let len = complete_len_of(text.as_bytes()).unwrap();
            assert_eq!(&text[..len as usize], whole, "{text:?}");
            // The same when every read returns one byte (a record split across reads).
            let bytewise = complete_len_of(OneByte(text.as_bytes())).unwrap();
            assert_eq!(bytewise, len, "{text:?} read byte by byte");
        }
    }

    #[test]
    fn resume_cuts_a_report_torn_inside_a_multi_line_cell_back_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (columns, one) = multi_line(1);
        let two = multi_line(2).1;
        let whole = render_with(Format::Csv, &columns, &[one, two]);
        let three = multi_line(3).1;
        let full = render_with(Format::Csv, &columns, &[three]);
        let header_len = full.find('\n').unwrap() + 1;
        let row3 = &full[header_len..];
        // Torn at every byte of row 3, inside its quoted multi-line cells or not.
        for cut in 1..row3.len() {
            let torn = format!("{whole}{}", &row3[..cut]);
            std::fs::write(&path, &torn).unwrap();
            let r = open(&path, Format::Csv, &columns).unwrap();
            assert!(r.done.contains(1) && r.done.contains(2), "cut at {cut}");
            assert!(!r.done.contains(3), "cut at {cut}: {:?}", &row3[..cut]);
            assert_eq!(r.repaired, cut as u64);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), torn, "not yet cut");
            r.appender().unwrap().write_all(b"next\n").unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{whole}next\n"),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn resume_keeps_a_whole_multi_line_last_record_and_matches_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let (columns, mut o) = multi_line(4);
        // A URL cell with a line break inside (a CSV input's cell is trimmed only at its
        // ends): an invalid_url row, which a resume must still recognise.
        o.url = "http://a.test/x\ny".into();
        for (format, name) in [(Format::Csv, "r.csv"), (Format::Jsonl, "r.jsonl")] {
            let path = dir.path().join(name);
            let text = render_with(format, &columns, std::slice::from_ref(&o));
            std::fs::write(&path, &text).unwrap();
            let r = open(&path, format, &columns).unwrap();
            assert_eq!((r.repaired, r.done.len()), (0, 1), "{format:?}");
            assert_eq!(
                r.done.matches(4, &report_url(format, &o.url)),
                Some(true),
                "{format:?}"
            );
            drop(r);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{format:?}");
        }
    }

    #[test]
    fn done_set_inserts_and_counts() {
        let mut d = DoneSet::default();
        assert!(d.insert(1, "http://a.test/"));
        assert!(d.insert(10_000_000, "http://b.test/"));
        assert!(
            d.insert(u64::MAX, "http://damaged.test/"),
            "a huge index costs no memory"
        );
        assert!(d.contains(u64::MAX));
        assert!(!d.insert(1, "http://a.test/"));
        assert!(d.contains(1) && d.contains(10_000_000) && !d.contains(2));
        assert_eq!((d.len(), d.max_index()), (3, u64::MAX));
        assert_eq!(d.matches(1, "http://a.test/"), Some(true));
        assert_eq!(d.matches(1, "http://other.test/"), Some(false));
        assert_eq!(d.matches(2, "http://a.test/"), None);
    }

    #[test]
    fn resume_cuts_a_torn_line_and_reads_done_indices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut text = render(Format::Csv, &[sample()]);
        text.push_str("9,http://a.test/torn,http://a.t");
        std::fs::write(&path, &text).unwrap();
        let r = open(&path, Format::Csv, &Columns::default()).unwrap();
        assert!(r.done.contains(7) && !r.done.contains(9));
        assert_eq!(r.done.matches(7, "http://a.test/x"), Some(true));
        assert_eq!(r.done.len(), 1);
        assert!(r.repaired > 0 && !r.fresh);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "nothing cut yet"
        );
        let mut appender = r.appender().unwrap();
        appender.write_all(b"").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "nothing written"
        );
        appender.write_all(b"8,x\n").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.ends_with("\n8,x\n") && !after.contains("torn"),
            "{after}"
        );
    }

    #[test]
    fn peek_reads_done_indices_and_leaves_a_torn_report_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        for (format, name, torn) in [
            (Format::Csv, "r.csv", "9,http://a.test/torn,http://a.t"),
            (Format::Jsonl, "r.jsonl", "{\"index\":9,\"url\":"),
        ] {
            let path = dir.path().join(name);
            let text = format!("{}{torn}", render(format, &[sample()]));
            std::fs::write(&path, &text).unwrap();
            let done = peek(&path, format, &Columns::default()).unwrap();
            assert!(done.contains(7) && !done.contains(9), "{format:?}");
            assert_eq!(done.len(), 1, "{format:?}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{format:?}");
        }
        let missing = dir.path().join("missing.csv");
        assert!(peek(&missing, Format::Csv, &Columns::default())
            .unwrap()
            .is_empty());
        assert!(!missing.exists(), "peek creates nothing");
    }

    #[test]
    fn resume_refuses_other_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = open(&path, Format::Csv, &Columns::default()).err().unwrap();
        assert!(
            err.to_string().contains("columns are not this run's"),
            "{err}"
        );
    }

    #[test]
    fn a_jsonl_report_that_is_not_utf8_is_damage_on_its_line_not_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut bytes = render(Format::Jsonl, &[sample()]).into_bytes();
        bytes.extend_from_slice(b"{\"index\":8,\"url\":\"http://a.test/\xff\"}\n");
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&path, Format::Jsonl, &Columns::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("cannot resume"), "{err}");
        assert!(err.contains("line 2:"), "{err}");
        assert!(!err.contains("cannot write"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    }

    #[test]
    fn resume_refuses_a_report_with_an_index_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, render(Format::Csv, &[sample(), sample()])).unwrap();
        let err = open(&path, Format::Csv, &Columns::default()).err().unwrap();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn resume_of_a_missing_or_empty_file_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(
            &dir.path().join("new.csv"),
            Format::Csv,
            &Columns::default(),
        )
        .unwrap();
        assert!(r.fresh && r.done.is_empty());
    }

    #[test]
    fn resume_reads_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut text = render(Format::Jsonl, &[sample()]);
        text.push_str("{\"index\":8,\"url\":");
        std::fs::write(&path, &text).unwrap();
        let r = open(&path, Format::Jsonl, &Columns::default()).unwrap();
        assert!(r.done.contains(7) && !r.done.contains(8));
        assert_eq!(r.done.matches(7, "http://a.test/x"), Some(true));
    }

    /// A reader that returns one byte per read.
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if let Some(b) = buf.first_mut() {
                *b = *first;
                self.0 = rest;
                return Ok(1);
            }
            Ok(0)
        }
    }

    fn job(index: u64, url: &str) -> Job {
        Job {
            index,
            url: url.to_string(),
            target: Ok(url.parse().expect("a test URL")),
            passthrough: Vec::new(),
        }
    }

    #[test]
    fn skip_passes_once_the_report_is_checked() {
        let mut done = DoneSet::default();
        done.insert(2, "http://a.test/2");
        let mut skip = Skip::new(done, Format::Csv);
        assert!(matches!(
            skip.check(job(1, "http://a.test/1"), "line"),
            Ok(Verdict::Keep(j)) if j.index == 1
        ));
        assert!(!skip.passed(), "index 2 is not checked yet");
        assert!(matches!(
            skip.check(job(2, "http://a.test/2"), "line"),
            Ok(Verdict::Done)
        ));
        assert!(matches!(
            skip.check(job(3, "http://a.test/3"), "line"),
            Ok(Verdict::Keep(j)) if j.index == 3
        ));
        assert!(skip.passed());
        skip.finish().unwrap();
    }

    #[test]
    fn skip_refuses_another_url_a_missing_row_and_a_short_input() {
        let mut done = DoneSet::default();
        done.insert(2, "http://a.test/2");
        let err = Skip::new(done.clone(), Format::Csv)
            .check(job(2, "http://b.test/2"), "row")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "row 2 is not the URL the report holds for index 2; \
             --resume needs the input the report was made from"
        );
        let err = Skip::new(done.clone(), Format::Csv)
            .check(job(3, "http://a.test/3"), "line")
            .unwrap_err();
        assert!(err.0.contains("1 rows of the report"), "{err}");
        let mut skip = Skip::new(done, Format::Csv);
        skip.check(job(1, "http://a.test/1"), "line").unwrap();
        assert!(skip.finish().unwrap_err().0.contains("1 rows"));
    }
}
