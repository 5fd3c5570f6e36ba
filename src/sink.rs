//! Sink: the only writer of the report. Writes the header, one row per outcome (CSV or
//! JSONL), and can resume an earlier report: it cuts a torn last row and reads which job
//! indices are already done.
//!
//! Cells keep their content, line breaks included (only `title` and `error` are one line
//! by design). In CSV a line break sits inside a quoted cell (RFC 4180), so a row may span
//! several lines: a row is whole when its terminating newline, outside quotes, has been
//! written, and a torn last row is found by parsing, not by looking for the last newline.
//! In JSONL, serde_json escapes line breaks, so every line is one row.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::SystemTime;

use crate::config::Format;
use crate::error::Error;
use crate::job::Outcome;

/// The standard columns, in order. A contract: scripts rely on the names and the order.
pub const COLUMNS: [&str; 12] = [
    "index",
    "url",
    "final_url",
    "status",
    "error_kind",
    "error",
    "attempts",
    "elapsed_ms",
    "bytes",
    "content_type",
    "title",
    "started_at",
];

/// The column `--save-bodies` adds.
pub const BODY_SHA256: &str = "body_sha256";

/// Whether `name` belongs to ratefetch (a standard column or `body_sha256`), so that an
/// `--extract` rule may not take it. The one list of reserved names.
pub fn is_reserved(name: &str) -> bool {
    COLUMNS.contains(&name) || name == BODY_SHA256
}

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

/// A text cell as written to CSV: its content as given (line breaks included; the CSV
/// writer quotes them), except that a cell that a spreadsheet would run as a formula
/// (leading `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, the OWASP recommendation, so
/// it shows as text.
pub fn csv_text(s: &str) -> Cow<'_, str> {
    let formula = matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    if formula {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Line breaks as spaces: for the cells that are one line by design (`title`, `error`).
fn one_line(s: &str) -> Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T08:54:07.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

enum Encoder {
    // Boxed: the csv writer carries its state inline and would make every Sink large.
    Csv(Box<csv::Writer<Vec<u8>>>),
    Jsonl(Vec<u8>),
}

/// Encodes report rows into a buffer, and writes the buffer to its output on `flush`. In a
/// run, the pool takes the output to a writer thread of its own and hands it whole buffers
/// (`take_bytes`), so encoding never waits on I/O and I/O never waits on a worker.
pub struct Sink {
    enc: Encoder,
    columns: Columns,
    out: Option<Box<dyn Write + Send>>,
    rows: u64,
    int: itoa::Buffer,
}

impl Sink {
    /// A sink writing a fresh report (header included) to `out`. The header is written on
    /// the first `flush`.
    pub fn new(out: Box<dyn Write + Send>, format: Format, columns: Columns) -> io::Result<Sink> {
        let mut sink = Sink::without_header(out, format, columns);
        if let Encoder::Csv(w) = &mut sink.enc {
            // Passthrough names come from the input: they are cells like any other.
            let names: Vec<Cow<'_, str>> =
                sink.columns.names().iter().map(|n| csv_text(n)).collect();
            w.write_record(names.iter().map(|n| n.as_bytes()))
                .map_err(csv_io)?;
        }
        Ok(sink)
    }

    /// A sink appending to a report that already has its header.
    pub fn without_header(out: Box<dyn Write + Send>, format: Format, columns: Columns) -> Sink {
        let enc = match format {
            Format::Csv => Encoder::Csv(Box::new(csv_writer())),
            Format::Jsonl => Encoder::Jsonl(Vec::with_capacity(64 * 1024)),
        };
        Sink {
            enc,
            columns,
            out: Some(out),
            rows: 0,
            int: itoa::Buffer::new(),
        }
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encodes one row.
    pub fn write(&mut self, o: &Outcome) -> io::Result<()> {
        match &mut self.enc {
            Encoder::Csv(w) => write_csv(w, &mut self.int, &self.columns, o).map_err(csv_io)?,
            Encoder::Jsonl(w) => write_jsonl(w, &mut self.int, &self.columns, o),
        }
        self.rows += 1;
        Ok(())
    }

    /// Bytes encoded and not yet taken or flushed.
    pub fn buffered(&mut self) -> usize {
        match &mut self.enc {
            Encoder::Csv(w) => {
                // Moves the csv writer's own small buffer into the Vec; cannot fail.
                let _ = w.flush();
                w.get_ref().len()
            }
            Encoder::Jsonl(v) => v.len(),
        }
    }

    /// Takes the encoded bytes, leaving an empty buffer.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        match &mut self.enc {
            Encoder::Csv(w) => std::mem::replace(&mut **w, csv_writer())
                .into_inner()
                .expect("flushing into memory cannot fail"),
            Encoder::Jsonl(v) => std::mem::replace(v, Vec::with_capacity(64 * 1024)),
        }
    }

    /// Takes the output (the pool's writer thread owns it during a run).
    pub fn take_output(&mut self) -> Option<Box<dyn Write + Send>> {
        self.out.take()
    }

    /// Writes what is encoded to the output and flushes it.
    pub fn flush(&mut self) -> io::Result<()> {
        let bytes = self.take_bytes();
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("the sink's output was taken"))?;
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// A CSV encoder into memory. Its state between records is nothing but its buffer, so a
/// fresh one continues a report seamlessly.
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .buffer_capacity(4 * 1024)
        .from_writer(Vec::with_capacity(64 * 1024))
}

fn write_csv(
    w: &mut csv::Writer<Vec<u8>>,
    int: &mut itoa::Buffer,
    columns: &Columns,
    o: &Outcome,
) -> csv::Result<()> {
    for col in &columns.cols {
        match cell(o, *col) {
            Cell::Int(n) => w.write_field(int.format(n))?,
            Cell::Text(t) => w.write_field(csv_text(&t).as_bytes())?,
            Cell::Null => w.write_field("")?,
        }
    }
    w.write_record(None::<&[u8]>)
}

/// The I/O error inside a csv error, so that its kind (a broken pipe, a full disk) survives.
fn csv_io(err: csv::Error) -> io::Error {
    match err.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// One JSON object per line, keys in column order: numbers as numbers, empty as null.
fn write_jsonl(w: &mut Vec<u8>, int: &mut itoa::Buffer, columns: &Columns, o: &Outcome) {
    w.push(b'{');
    for (i, (col, name)) in columns.cols.iter().zip(&columns.names).enumerate() {
        if i > 0 {
            w.push(b',');
        }
        serde_json::to_writer(&mut *w, name.as_str()).expect("writing JSON into memory");
        w.push(b':');
        match cell(o, *col) {
            Cell::Int(n) => w.extend_from_slice(int.format(n).as_bytes()),
            Cell::Text(t) if !t.is_empty() => {
                serde_json::to_writer(&mut *w, &t).expect("writing JSON into memory")
            }
            Cell::Text(_) | Cell::Null => w.extend_from_slice(b"null"),
        }
    }
    w.extend_from_slice(b"}\n");
}

/// A report cell before encoding.
enum Cell<'a> {
    Int(u64),
    Text(Cow<'a, str>),
    Null,
}

fn text(s: &Option<String>) -> Cell<'_> {
    s.as_deref()
        .map_or(Cell::Null, |s| Cell::Text(Cow::Borrowed(s)))
}

/// A cell that is one line by design, whatever its source put in it.
fn line(s: &Option<String>) -> Cell<'_> {
    s.as_deref().map_or(Cell::Null, |s| Cell::Text(one_line(s)))
}

fn cell(o: &Outcome, col: Col) -> Cell<'_> {
    match col {
        Col::Std(i) => match i {
            0 => Cell::Int(o.index),
            1 => Cell::Text(Cow::Borrowed(&o.url)),
            2 => text(&o.final_url),
            3 => o.status.map_or(Cell::Null, |s| Cell::Int(u64::from(s))),
            4 => o
                .error_kind
                .map_or(Cell::Null, |k| Cell::Text(Cow::Borrowed(k.as_str()))),
            5 => line(&o.error),
            6 => Cell::Int(u64::from(o.attempts)),
            7 => Cell::Int(u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX)),
            8 => Cell::Int(o.bytes),
            9 => text(&o.content_type),
            10 => line(&o.title),
            _ => o
                .started_at
                .map_or(Cell::Null, |t| Cell::Text(Cow::Owned(rfc3339(t)))),
        },
        Col::Extract(i) => o
            .extracted
            .get(i)
            .map_or(Cell::Null, |v| Cell::Text(Cow::Borrowed(v))),
        Col::BodySha256 => text(&o.body_sha256),
        Col::Pass(i) => o
            .passthrough
            .get(i)
            .map_or(Cell::Null, |v| Cell::Text(Cow::Borrowed(v))),
    }
}

/// Where a report column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// One of the twelve standard columns, by position in `COLUMNS`.
    Std(usize),
    /// The value of the i-th `--extract` rule.
    Extract(usize),
    /// The SHA-256 of the saved body (`--save-bodies`).
    BodySha256,
    /// The i-th passthrough column of a CSV input.
    Pass(usize),
}

/// Why `Columns::new` refused the columns asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnsError {
    /// A `--fields` name that is no column of this report.
    #[error("unknown column {name:?}; valid columns: {}", .valid.join(","))]
    UnknownField {
        name: String,
        /// Every column the report could have, in order.
        valid: Vec<String>,
    },
}

/// The columns of one report, in order: the twelve standard ones, the extracted ones (in
/// the order given), `body_sha256` with `--save-bodies`, then the passthrough columns of a
/// CSV input (a name that collides with another column is prefixed `input_`). `--fields`
/// picks and orders any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    names: Vec<String>,
    cols: Vec<Col>,
}

impl Default for Columns {
    fn default() -> Columns {
        Columns::new(&[], false, &[], None).expect("the standard columns are valid")
    }
}

impl Columns {
    /// Builds the columns; an unknown `--fields` name is an error that lists the valid ones.
    pub fn new(
        extracted: &[String],
        body_sha256: bool,
        passthrough: &[String],
        fields: Option<&[String]>,
    ) -> Result<Columns, ColumnsError> {
        let mut all: Vec<(String, Col)> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), Col::Std(i)))
            .collect();
        all.extend(
            extracted
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), Col::Extract(i))),
        );
        if body_sha256 {
            all.push((BODY_SHA256.to_string(), Col::BodySha256));
        }
        for (i, name) in passthrough.iter().enumerate() {
            let mut name = name.clone();
            while all.iter().any(|(n, _)| *n == name) {
                name = format!("input_{name}");
            }
            all.push((name, Col::Pass(i)));
        }
        let chosen = match fields {
            None => all,
            Some(fields) => fields
                .iter()
                .map(|f| {
                    all.iter()
                        .find(|(n, _)| n == f.trim())
                        .cloned()
                        .ok_or_else(|| ColumnsError::UnknownField {
                            name: f.trim().to_string(),
                            valid: all.iter().map(|(n, _)| n.clone()).collect(),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let (names, cols) = chosen.into_iter().unzip();
        Ok(Columns { names, cols })
    }

    /// The header row.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Where the `url` cell is, if the report has one (resume needs it).
    pub fn url_position(&self) -> Option<usize> {
        self.cols.iter().position(|c| *c == Col::Std(1))
    }

    /// Where the `index` cell is, if the report has one (resume needs it).
    pub fn index_position(&self) -> Option<usize> {
        self.cols.iter().position(|c| *c == Col::Std(0))
    }
}

/// An earlier report opened for `--resume`: positioned at its end, torn last row removed.
pub struct Resumed {
    pub file: File,
    /// Job indices already in the report, with their URL tags.
    pub done: DoneSet,
    /// The format of the report (to compare URLs as the report writes them).
    pub format: Format,
    /// True when the file was empty (the header must be written).
    pub fresh: bool,
    /// Bytes of a torn last row that were cut.
    pub repaired: u64,
}

/// Opens `path` for `--resume`: cuts a torn last row, checks the header (CSV), reads the
/// done indices. A missing file is a fresh report.
pub fn resume(path: &Path, format: Format, columns: &Columns) -> Result<Resumed, Error> {
    let io_err = |source| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |reason: String| Error::Resume {
        path: path.to_path_buf(),
        reason,
    };
    let (Some(index_at), Some(url_at)) = (columns.index_position(), columns.url_position()) else {
        return Err(refuse(
            "--resume needs the index and url columns (add them to --fields)".to_string(),
        ));
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    // Keep everything up to the end of the last whole row.
    let keep = match format {
        Format::Csv => csv_complete_len(BufReader::new(&mut file)),
        Format::Jsonl => last_line_end(&mut file, len),
    }
    .map_err(io_err)?;
    if keep < len {
        file.set_len(keep).map_err(io_err)?;
    }
    let mut done = DoneSet::default();
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let reader = BufReader::with_capacity(256 * 1024, &mut file);
    let mut fresh = keep == 0;
    match format {
        Format::Csv if keep > 0 => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(reader);
            let header = rdr.headers().map_err(|e| refuse(e.to_string()))?;
            let expected: Vec<Cow<'_, str>> = columns.names().iter().map(|n| csv_text(n)).collect();
            let expected: Vec<&str> = expected.iter().map(|n| n.as_ref()).collect();
            let found: Vec<&str> = header.iter().collect();
            if found != expected {
                return Err(refuse(format!(
                    "its columns are not this run's (found {}); write to a new file",
                    found.join(",")
                )));
            }
            for (n, record) in rdr.records().enumerate() {
                let record = record.map_err(|e| refuse(format!("row {}: {e}", n + 2)))?;
                let index = record
                    .get(index_at)
                    .and_then(|i| i.parse::<u64>().ok())
                    .filter(|i| *i > 0)
                    .ok_or_else(|| refuse(format!("row {} has no valid index", n + 2)))?;
                if !done.insert(index, record.get(url_at).unwrap_or("")) {
                    return Err(refuse(format!("index {index} appears twice")));
                }
            }
        }
        Format::Jsonl => {
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io_err)?;
                if line.trim().is_empty() {
                    continue;
                }
                let row = serde_json::from_str::<serde_json::Value>(&line).ok();
                let index = row
                    .as_ref()
                    .and_then(|v| v.get("index").and_then(|i| i.as_u64()))
                    .ok_or_else(|| {
                        refuse(format!("line {} is not a ratefetch JSONL row", n + 1))
                    })?;
                let url = row
                    .as_ref()
                    .and_then(|v| v.get("url").and_then(|u| u.as_str()))
                    .unwrap_or("");
                if !done.insert(index, url) {
                    return Err(refuse(format!("index {index} appears twice")));
                }
            }
            fresh = false;
        }
        Format::Csv => {}
    }
    file.seek(SeekFrom::End(0)).map_err(io_err)?;
    Ok(Resumed {
        file,
        done,
        format,
        fresh,
        repaired: len - keep,
    })
}

/// The length of a CSV report up to the end of its last whole record (0 if none): the
/// record's terminator, outside quotes, has been read. The csv reader alone cannot tell:
/// at the end of its input it accepts an unterminated record as complete, even one cut
/// inside a quoted cell. So this runs the same parser (csv-core, with the csv crate's
/// defaults) and counts only the records that ended with a terminator. A CR LF counts as
/// one terminator; blank lines after the last record are cut too.
pub fn csv_complete_len(mut report: impl Read) -> io::Result<u64> {
    use csv_core::ReadRecordResult;
    let mut parser = csv_core::Reader::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // The parser copies the cells out; they are not needed, so the buffers are reused.
    let mut cells = vec![0u8; 64 * 1024];
    let mut ends = [0usize; 256];
    // Bytes before `chunk`, and the end of the last whole record.
    let (mut offset, mut keep) = (0u64, 0u64);
    // The last whole record ended with a CR at `keep`: an LF right after it is part of it.
    let mut after_cr = false;
    loop {
        let n = match report.read(&mut chunk) {
            Ok(0) => return Ok(keep),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at < n {
            if after_cr {
                after_cr = false;
                if chunk[at] == b'\n' {
                    keep += 1;
                }
            }
            let (result, used, _, _) = parser.read_record(&chunk[at..n], &mut cells, &mut ends);
            at += used;
            match result {
                ReadRecordResult::Record => {
                    keep = offset + at as u64;
                    after_cr = at > 0 && chunk[at - 1] == b'\r';
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => break,
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
        offset += n as u64;
    }
}

/// The length of the file up to and including its last `\n` (0 if none). For JSONL, where
/// each line is one row.
fn last_line_end(file: &mut File, len: u64) -> io::Result<u64> {
    use std::io::Read;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sample() -> Outcome {
        Outcome {
            index: 7,
            url: "http://a.test/x".into(),
            final_url: Some("http://a.test/y".into()),
            status: Some(200),
            attempts: 1,
            elapsed: Duration::from_millis(12),
            bytes: 42,
            content_type: Some("text/html".into()),
            title: Some("=1+1, \"quoted\"".into()),
            started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)),
            ..Outcome::default()
        }
    }

    fn render(format: Format, rows: &[Outcome]) -> String {
        let out = Shared::default();
        let mut sink = Sink::new(Box::new(out.clone()), format, Columns::default()).unwrap();
        for r in rows {
            sink.write(r).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn csv_header_snapshot() {
        let text = render(Format::Csv, &[]);
        assert_eq!(
            text,
            "index,url,final_url,status,error_kind,error,attempts,elapsed_ms,bytes,content_type,title,started_at\n"
        );
    }

    #[test]
    fn csv_row_round_trips_with_escaping_and_neutralised_formula() {
        let text = render(Format::Csv, &[sample()]);
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let row = rdr.records().next().unwrap().unwrap();
        let cells: Vec<&str> = row.iter().collect();
        assert_eq!(
            cells,
            [
                "7",
                "http://a.test/x",
                "http://a.test/y",
                "200",
                "",
                "",
                "1",
                "12",
                "42",
                "text/html",
                "'=1+1, \"quoted\"",
                "1970-01-01T00:00:01.500Z"
            ]
        );
    }

    #[test]
    fn formula_cells_are_neutralised_and_breaks_kept() {
        for (input, want) in [
            ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\r\nx", "'\r\nx"),
            ("a\r\nb", "a\r\nb"),
            ("a\nb", "a\nb"),
            ("plain", "plain"),
        ] {
            assert_eq!(csv_text(input), want, "{input:?}");
        }
    }

    /// Columns and a row whose passthrough and extracted cells hold line breaks (LF and
    /// CR LF), as a CSV input of addresses and notes brings them.
    fn multi_line(index: u64) -> (Columns, Outcome) {
        let columns = Columns::new(
            &["desc".to_string()],
            false,
            &["address".to_string(), "note".to_string()],
            None,
        )
        .unwrap();
        let o = Outcome {
            index,
            url: format!("http://a.test/{index}"),
            extracted: vec![format!("line one\nline \"two\", {index}")],
            passthrough: vec![
                format!("{index} Main St\r\nSpringfield\r\n"),
                "=1+1\nsecond".to_string(),
            ],
            title: Some("a\ntitle".into()),
            error: Some("an\r\nerror".into()),
            ..sample()
        };
        (columns, o)
    }

    fn render_with(format: Format, columns: &Columns, rows: &[Outcome]) -> String {
        let out = Shared::default();
        let mut sink = Sink::new(Box::new(out.clone()), format, columns.clone()).unwrap();
        for r in rows {
            sink.write(r).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn passthrough_and_extracted_cells_keep_line_breaks_in_csv_and_jsonl() {
        let (columns, o) = multi_line(3);
        let text = render_with(Format::Csv, &columns, std::slice::from_ref(&o));
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let row = rdr.records().next().unwrap().unwrap();
        let cell = |name: &str| {
            let at = columns.names().iter().position(|n| n == name).unwrap();
            row.get(at).unwrap().to_string()
        };
        assert_eq!(cell("desc"), "line one\nline \"two\", 3");
        assert_eq!(cell("address"), "3 Main St\r\nSpringfield\r\n");
        assert_eq!(cell("note"), "'=1+1\nsecond", "the formula prefix stays");
        assert_eq!(cell("title"), "a title", "title is one line by design");
        assert_eq!(cell("error"), "an  error", "error is one line by design");

        let text = render_with(Format::Jsonl, &columns, &[o]);
        assert_eq!(text.lines().count(), 1, "one row per line: {text:?}");
        let row: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(row["desc"], "line one\nline \"two\", 3");
        assert_eq!(row["address"], "3 Main St\r\nSpringfield\r\n");
        assert_eq!(row["note"], "=1+1\nsecond", "JSONL text is unmodified");
        assert_eq!(
            (&row["title"], &row["error"]),
            (&"a title".into(), &"an  error".into())
        );
    }

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
            let len = csv_complete_len(text.as_bytes()).unwrap();
            assert_eq!(&text[..len as usize], whole, "{text:?}");
            // The same when every read returns one byte (a record split across reads).
            let bytewise = csv_complete_len(OneByte(text.as_bytes())).unwrap();
            assert_eq!(bytewise, len, "{text:?} read byte by byte");
        }
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
            let r = resume(&path, Format::Csv, &columns).unwrap();
            assert!(r.done.contains(1) && r.done.contains(2), "cut at {cut}");
            assert!(!r.done.contains(3), "cut at {cut}: {:?}", &row3[..cut]);
            assert_eq!(r.repaired, cut as u64);
            drop(r);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                whole,
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
            let r = resume(&path, format, &columns).unwrap();
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
    fn failure_row_has_empty_response_cells() {
        let o = Outcome::failed(
            3,
            "nope".into(),
            crate::error::Failure::new(ErrorKind::InvalidUrl, "bad\nline"),
        );
        let text = render(Format::Csv, &[o]);
        let line = text.lines().nth(1).unwrap();
        assert_eq!(line, "3,nope,,,invalid_url,bad line,0,0,0,,,");
    }

    #[test]
    fn jsonl_uses_the_column_names_numbers_and_nulls() {
        let failed = Outcome::failed(
            2,
            "x".into(),
            crate::error::Failure::new(ErrorKind::Dns, "no such host"),
        );
        let text = render(Format::Jsonl, &[sample(), failed]);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let keys: Vec<&str> = lines[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = COLUMNS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["elapsed_ms"], 12);
        assert_eq!(lines[0]["title"], "=1+1, \"quoted\"");
        assert_eq!(lines[1]["status"], serde_json::Value::Null);
        assert_eq!(lines[1]["final_url"], serde_json::Value::Null);
        assert_eq!(lines[1]["error_kind"], "dns");
    }

    #[test]
    fn columns_order_extracted_sha_then_passthrough_with_prefix_on_collision() {
        let extracted = ["price".to_string(), "name".to_string()];
        let pass = ["sku".to_string(), "title".to_string(), "price".to_string()];
        let c = Columns::new(&extracted, true, &pass, None).unwrap();
        let names: Vec<&str> = c.names().iter().map(String::as_str).collect();
        assert_eq!(&names[..12], &COLUMNS[..]);
        assert_eq!(
            &names[12..],
            [
                "price",
                "name",
                "body_sha256",
                "sku",
                "input_title",
                "input_price"
            ]
        );
    }

    #[test]
    fn fields_choose_and_order_and_unknown_names_list_the_valid_ones() {
        let extracted = ["price".to_string()];
        let fields: Vec<String> = ["url", "status", "price"].map(String::from).to_vec();
        let c = Columns::new(&extracted, false, &[], Some(&fields)).unwrap();
        assert_eq!(c.names(), ["url", "status", "price"]);
        let o = Outcome {
            extracted: vec!["$3".into()],
            ..sample()
        };
        let out = Shared::default();
        let mut sink = Sink::new(Box::new(out.clone()), Format::Csv, c).unwrap();
        sink.write(&o).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "url,status,price\nhttp://a.test/x,200,$3\n");
        let bad: Vec<String> = vec!["url".into(), "cost".into()];
        let err = Columns::new(&extracted, false, &[], Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"cost\"") && err.contains("index,url,final_url"),
            "{err}"
        );
        assert!(err.contains("price"), "{err}");
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
        let r = resume(&path, Format::Csv, &Columns::default()).unwrap();
        assert!(r.done.contains(7) && !r.done.contains(9));
        assert_eq!(r.done.matches(7, "http://a.test/x"), Some(true));
        assert_eq!(r.done.len(), 1);
        assert!(r.repaired > 0 && !r.fresh);
        drop(r);
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.ends_with('\n') && !after.contains("torn"));
    }

    #[test]
    fn resume_refuses_other_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = resume(&path, Format::Csv, &Columns::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("columns"), "{err}");
    }

    #[test]
    fn resume_refuses_a_report_with_an_index_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, render(Format::Csv, &[sample(), sample()])).unwrap();
        let err = resume(&path, Format::Csv, &Columns::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn resume_of_a_missing_or_empty_file_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let r = resume(
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
        let r = resume(&path, Format::Jsonl, &Columns::default()).unwrap();
        assert!(r.done.contains(7) && !r.done.contains(8));
        assert_eq!(r.done.matches(7, "http://a.test/x"), Some(true));
    }
}
