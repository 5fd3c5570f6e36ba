//! The one reader of reports: how `--resume`, `--retry-failed` and `merge` read back a
//! report ratefetch wrote (CSV or JSONL), with one set of rules. It changes nothing: a user
//! that cuts a torn tail does so itself, after every check passed.
//!
//! The rules:
//! - **Format.** From the file's first byte that is not white space: `{` is JSONL (each line
//!   one object, as the sink writes it), anything else CSV (a header, then one record per
//!   row; a quoted cell may hold line breaks). An empty file is a report with no rows.
//! - **Columns.** A CSV report's header, or the keys of a JSONL report's first row, must
//!   name an `index` column; every JSONL row has the first row's keys, and every CSV record
//!   the header's number of cells. Whether they are the columns a user wants is the user's
//!   check (`Report::header`).
//! - **Index.** Each row's index is a whole number from 1 up, and no index appears twice in
//!   one report. An index that is 0, negative, not a number, or repeated is damage.
//! - **Torn tail.** A run killed mid-write leaves at most its last record torn: the file
//!   ends inside it. So the reader cuts (leaves out, and reports in `torn`) the bytes after
//!   the last whole record, and only when they are one record cut short: when, after their
//!   first line, they hold no whole row of the report's shape. A quote that opens a cell and
//!   runs to the end of the file over whole rows (a stray `"` put in by hand) is damage, not a
//!   tear, whatever the quotes say.
//! - **Damage** is reported with the line it starts on (`ReadError::Damaged`). With
//!   `skip_damaged` (for `merge --skip-damaged`) a damaged row is left out instead, and the
//!   reader goes on at the next line: the good rows of a damaged report can be saved.
//!
//! Memory: the reader holds one record at a time, a read buffer, and one bit per index seen
//! (indices above 2^26 in a hash set), never the rows.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::config::Format;

/// Bytes read at once.
const BUFFER: usize = 256 * 1024;

/// Why a report cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// It is not a report of this shape at all (no header, no index column).
    #[error("{0}")]
    Foreign(String),
    /// A row is damaged: it starts on `line`.
    #[error("line {line}: {reason}")]
    Damaged {
        /// The line the damaged row starts on (1-based).
        line: u64,
        /// What is wrong, in a few words.
        reason: String,
    },
}

impl ReadError {
    /// The message a user of the reader prints for `ReadError`, with how to go on from
    /// damage: fix the row, or save the good rows with `merge --skip-damaged`.
    pub fn explain(&self, path: &std::path::Path) -> String {
        match self {
            ReadError::Damaged { .. } => format!(
                "{self}; fix that row, or save the good rows to a new file with \
                 `ratefetch merge --skip-damaged {} -o NEW`",
                path.display()
            ),
            _ => self.to_string(),
        }
    }
}

/// A report's columns as it states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// An empty report (or a CSV report with nothing but part of a header: see `torn`).
    Empty,
    /// A CSV header: its cells, and its length in bytes with its line break.
    Csv {
        /// The header's cells.
        cells: csv::ByteRecord,
        /// Bytes from the start of the file to the end of the header's line break.
        len: u64,
    },
    /// The keys of a JSONL report's first row.
    Jsonl(Vec<String>),
}

impl Header {
    /// Whether two reports have the same columns (a CSV header's bytes may differ: quotes
    /// put in by a tool that re-saved it, a blank line before it).
    pub fn same_columns(&self, other: &Header) -> bool {
        match (self, other) {
            (Header::Csv { cells: a, .. }, Header::Csv { cells: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }

    /// The column names, as text (lossy for a CSV header that is not UTF-8).
    pub fn names(&self) -> Vec<String> {
        match self {
            Header::Empty => Vec::new(),
            Header::Csv { cells, .. } => cells
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect(),
            Header::Jsonl(keys) => keys.clone(),
        }
    }
}

/// One row as read.
#[derive(Debug)]
pub struct Row<'r> {
    /// Its index (checked: from 1 up, not seen before in this report).
    pub index: u64,
    /// Where its bytes start in the file (a CSV record's span may begin with the line break
    /// of the record before; see `merge::csv_body`).
    pub offset: u64,
    /// How many bytes it spans.
    pub len: u64,
    wanted: &'r [String],
    record: Option<&'r csv::ByteRecord>,
}

impl Row<'_> {
    /// The text of the `i`-th column the reader was asked for (`ReportReader::open`'s
    /// `want`); empty when the report has no such column or the cell is null.
    pub fn cell(&self, i: usize) -> &str {
        // The reader's own list starts with `index`.
        self.wanted.get(i + 1).map_or("", String::as_str)
    }

    /// A CSV row's record, every cell (`None` for JSONL).
    pub fn record(&self) -> Option<&csv::ByteRecord> {
        self.record
    }
}

/// Reads a report row by row (see the module docs).
pub struct ReportReader<'f> {
    file: &'f File,
    format: Format,
    len: u64,
    header: Header,
    /// Where the columns asked for are in a CSV record.
    want_at: Vec<Option<usize>>,
    want: Vec<String>,
    index_at: usize,
    skip_damaged: bool,
    /// Rows longer than this are damage (`MAX_ROW`; less in tests).
    max_row: u64,
    seen: IndexSet,
    /// Bytes of a torn last record, left out.
    torn: u64,
    /// Rows left out as damaged (with `skip_damaged`), and the first few of them.
    skipped: u64,
    first_skipped: Vec<(u64, String)>,
    part: Part<'f>,
    record: csv::ByteRecord,
    cells: Vec<String>,
}

/// The part of the file being read.
enum Part<'f> {
    /// CSV records from `base` up to `end` (the end of the last whole record from there).
    Csv {
        rdr: Box<csv::Reader<Span<'f>>>,
        base: u64,
        base_line: u64,
        /// The bytes after `end`: one torn record, or a quote that swallowed rows (its line).
        tail: Tail,
        end: u64,
        /// Where the first record longer than `MAX_ROW` starts: not read, but damage.
        long: Option<u64>,
    },
    Jsonl {
        lines: BufReader<Span<'f>>,
        offset: u64,
        line: u64,
        buf: Vec<u8>,
        /// The first row, read to learn the keys, not yet handed out.
        pending: Option<JsonPending>,
        keys: Keys,
    },
    Done,
}

/// A JSONL row read: its cells are in the reader's `cells`.
struct JsonPending {
    index: u64,
    offset: u64,
    len: u64,
}

/// What follows the last whole record of a CSV part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing, or one record cut short (its bytes).
    Torn(u64),
    /// A quote on this line opened a cell that swallowed whole rows.
    Swallowed { line: u64, next: u64 },
}

impl<'f> ReportReader<'f> {
    /// Opens the report in `file` (read from its start) and reads its header. `want` names
    /// the columns whose cells each row gives (`Row::cell`). A report without an `index`
    /// column, or whose header is damaged, is refused.
    pub fn open(
        file: &'f File,
        want: &[&str],
        skip_damaged: bool,
    ) -> Result<ReportReader<'f>, ReadError> {
        ReportReader::open_capped(file, want, skip_damaged, MAX_ROW)
    }

    /// `open`, with rows longer than `max_row` damage.
    fn open_capped(
        file: &'f File,
        want: &[&str],
        skip_damaged: bool,
        max_row: u64,
    ) -> Result<ReportReader<'f>, ReadError> {
        let len = file.metadata()?.len();
        let format = sniff(file)?;
        let mut reader = ReportReader {
            file,
            format: format.unwrap_or(Format::Csv),
            len,
            header: Header::Empty,
            want_at: Vec::new(),
            want: std::iter::once("index")
                .chain(want.iter().copied())
                .map(String::from)
                .collect(),
            index_at: 0,
            skip_damaged,
            max_row,
            seen: IndexSet::default(),
            torn: 0,
            skipped: 0,
            first_skipped: Vec::new(),
            part: Part::Done,
            record: csv::ByteRecord::new(),
            cells: vec![String::new(); want.len() + 1],
        };
        match format {
            None => {
                // Empty, or white space only: no rows; any bytes are a torn nothing.
                reader.torn = len;
            }
            Some(Format::Csv) => reader.open_csv()?,
            Some(Format::Jsonl) => reader.open_jsonl()?,
        }
        Ok(reader)
    }

    /// The report's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The report's columns.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of a torn last record, left out (known once the last row was read; for CSV, at
    /// once).
    pub fn torn(&self) -> u64 {
        self.torn
    }

    /// Where the whole records end: what a user that cuts the torn tail keeps.
    pub fn whole(&self) -> u64 {
        self.len - self.torn
    }

    /// Rows left out as damaged (`skip_damaged`), and the first few with their lines.
    pub fn skipped(&self) -> (u64, &[(u64, String)]) {
        (self.skipped, &self.first_skipped)
    }

    fn open_csv(&mut self) -> Result<(), ReadError> {
        let (end, long) = complete_len(self.file, 0, self.max_row)?;
        if end == 0 {
            // Not one whole record: a header cut short (a run killed as it began), or a file
            // that is not a report. The user tells which (`Header::Empty`, `torn`).
            self.torn = self.len;
            return Ok(());
        }
        let mut rdr = csv_part(self.file, 0, end)?;
        if !rdr.read_byte_record(&mut self.record).map_err(csv_error)? {
            return Err(ReadError::Foreign("it has no header row".into()));
        }
        let header = std::mem::take(&mut self.record);
        let header_len = rdr.position().byte();
        let at = |name: &str| header.iter().position(|c| c == name.as_bytes());
        let Some(index_at) = at("index") else {
            return Err(ReadError::Foreign(format!(
                "it has no index column (found {})",
                shown(
                    &header
                        .iter()
                        .map(String::from_utf8_lossy)
                        .collect::<Vec<_>>()
                )
            )));
        };
        self.index_at = index_at;
        self.want_at = self.want.iter().map(|w| at(w)).collect();
        let fields = header.len();
        self.header = Header::Csv {
            cells: header,
            len: header_len,
        };
        let tail = self.tail(0, 1, end, fields)?;
        if let Tail::Torn(n) = tail {
            self.torn = n;
        }
        self.part = Part::Csv {
            rdr: Box::new(rdr),
            base: 0,
            base_line: 1,
            tail,
            end,
            long,
        };
        Ok(())
    }

    /// What follows the whole records ending at `end`, in the part that starts at `base` on
    /// line `base_line`.
    fn tail(&self, base: u64, base_line: u64, end: u64, fields: usize) -> io::Result<Tail> {
        if end >= self.len {
            return Ok(Tail::Torn(0));
        }
        Ok(
            match swallowed_rows(self.file, end, self.len, fields, self.index_at)? {
                Some(next) => Tail::Swallowed {
                    line: first_cell(
                        self.file,
                        end,
                        line_at(self.file, base, base_line, end)?,
                        self.len,
                    )?
                    .1,
                    next,
                },
                None => Tail::Torn(self.len - end),
            },
        )
    }

    fn open_jsonl(&mut self) -> Result<(), ReadError> {
        let end = last_line_end(self.file, self.len)?;
        self.torn = self.len - end;
        self.part = Part::Jsonl {
            lines: BufReader::with_capacity(BUFFER, Span::new(self.file, 0, end)),
            offset: 0,
            line: 0,
            buf: Vec::new(),
            pending: None,
            keys: Keys::default(),
        };
        // The first row names the columns.
        loop {
            match self.next_json()? {
                JsonStep::Row(first) => {
                    if let Part::Jsonl { pending, .. } = &mut self.part {
                        *pending = Some(first);
                    }
                    return Ok(());
                }
                JsonStep::End => return Ok(()),
                JsonStep::Damaged(line, reason) => self.damaged(line, reason)?,
            }
        }
    }

    /// The next row, or `None` at the end of the whole records.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, ReadError> {
        match self.format {
            Format::Csv => self.next_csv(),
            Format::Jsonl => {
                let pending = match &mut self.part {
                    Part::Jsonl { pending, .. } => pending.take(),
                    _ => None,
                };
                let row = match pending {
                    Some(row) => row,
                    None => loop {
                        match self.next_json()? {
                            JsonStep::Row(row) => break row,
                            JsonStep::End => return Ok(None),
                            JsonStep::Damaged(line, reason) => self.damaged(line, reason)?,
                        }
                    },
                };
                Ok(Some(Row {
                    index: row.index,
                    offset: row.offset,
                    len: row.len,
                    wanted: &self.cells,
                    record: None,
                }))
            }
        }
    }

    /// A damaged row: an error, or (skipping) noted.
    fn damaged(&mut self, line: u64, reason: String) -> Result<(), ReadError> {
        if !self.skip_damaged {
            return Err(ReadError::Damaged { line, reason });
        }
        self.skipped += 1;
        if self.first_skipped.len() < 5 {
            self.first_skipped.push((line, reason));
        }
        Ok(())
    }

    fn next_csv(&mut self) -> Result<Option<Row<'_>>, ReadError> {
        loop {
            let Part::Csv {
                rdr,
                base,
                base_line,
                tail,
                end,
                long,
            } = &mut self.part
            else {
                return Ok(None);
            };
            let (base, base_line, end, tail) = (*base, *base_line, *end, *tail);
            // A record too long to read is damage, found before it is read (its span starts
            // here, or after the LF of a CR LF that ended the record before).
            let next = base + rdr.position().byte();
            if long.is_some_and(|l| l == next || l == next + 1) {
                *long = None;
                let line = base_line + rdr.position().line() - 1;
                let reason = format!("it is longer than {} bytes (a stray quote?)", self.max_row);
                self.damaged_at(next, line, reason, true)?;
                continue;
            }
            let got = match rdr.read_byte_record(&mut self.record) {
                Ok(got) => got,
                Err(e) if e.is_io_error() => return Err(csv_error(e)),
                Err(e) => {
                    let (at, line) = e.position().map_or((base, base_line), |p| {
                        (base + p.byte(), base_line + p.line() - 1)
                    });
                    let reason = csv_error(e).to_string();
                    self.damaged_at(at, line, reason, true)?;
                    continue;
                }
            };
            if !got {
                // The end of the whole records of this part: then the tail.
                match tail {
                    Tail::Torn(_) => {
                        self.part = Part::Done;
                        return Ok(None);
                    }
                    Tail::Swallowed { line, next } => {
                        self.damaged(
                            line,
                            "a quote opens a cell that runs over the rows after it to the \
                             end of the file (a stray quote?)"
                                .into(),
                        )?;
                        self.open_part(next, line + 1)?;
                        continue;
                    }
                }
            }
            let position = self
                .record
                .position()
                .expect("a record read has a position");
            // The line its span starts on (a line break left from the row before, or blank
            // lines, may come first: `damaged_at` counts them).
            let line = base_line + position.line() - 1;
            let offset = base + position.byte();
            let len = base + rdr.position().byte() - offset;
            let fields = match &self.header {
                Header::Csv { cells, .. } => cells.len(),
                _ => unreachable!("a CSV part has a CSV header"),
            };
            debug_assert!(offset + len <= end);
            if self.record.len() != fields {
                let reason = format!(
                    "it has {} cells where the header has {fields}",
                    self.record.len()
                );
                // Not the report's shape: read on from the line after its first.
                self.damaged_at(offset, line, reason, true)?;
                continue;
            }
            let index_cell = self.record.get(self.index_at).unwrap_or_default();
            let index = match parse_index(index_cell) {
                Ok(index) => index,
                Err(reason) => {
                    // A whole record of the report's shape: the next record is the next row.
                    self.damaged_at(offset, line, reason, false)?;
                    continue;
                }
            };
            if !self.seen.insert(index) {
                let reason = format!("index {index} appears twice");
                self.damaged_at(offset, line, reason, false)?;
                continue;
            }
            for (cell, at) in self.cells.iter_mut().zip(&self.want_at) {
                cell.clear();
                if let Some(text) = at.and_then(|i| self.record.get(i)) {
                    match std::str::from_utf8(text) {
                        Ok(text) => cell.push_str(text),
                        Err(_) => cell.push_str(&String::from_utf8_lossy(text)),
                    }
                }
            }
            return Ok(Some(Row {
                index,
                offset,
                len,
                wanted: &self.cells,
                record: Some(&self.record),
            }));
        }
    }

    /// A damaged CSV record whose span starts at byte `at`, on line `line`: an error naming
    /// the line of its first cell, or (skipping) noted; with `resync`, the reader goes on
    /// at the line after that one (the record was not of the report's shape, so where it
    /// ends cannot be trusted), else at the next record.
    fn damaged_at(
        &mut self,
        at: u64,
        line: u64,
        reason: String,
        resync: bool,
    ) -> Result<(), ReadError> {
        let (start, line) = first_cell(self.file, at, line, self.len)?;
        self.damaged(line, reason)?;
        if resync {
            match line_start(self.file, start, line, line + 1, self.len)? {
                Some(next) => self.open_part(next, line + 1)?,
                None => self.part = Part::Done,
            }
        }
        Ok(())
    }

    /// Reads CSV records (no header) from byte `at`, which starts line `line`.
    fn open_part(&mut self, at: u64, line: u64) -> Result<(), ReadError> {
        if at >= self.len {
            self.part = Part::Done;
            self.torn = 0;
            return Ok(());
        }
        let (len, long) = complete_len(self.file, at, self.max_row)?;
        let (end, long) = (at + len, long.map(|l| at + l));
        let fields = match &self.header {
            Header::Csv { cells, .. } => cells.len(),
            _ => unreachable!("a CSV part has a CSV header"),
        };
        let tail = self.tail(at, line, end, fields)?;
        self.torn = match tail {
            Tail::Torn(n) => n,
            Tail::Swallowed { .. } => 0,
        };
        self.part = Part::Csv {
            rdr: Box::new(csv_part(self.file, at, end)?),
            base: at,
            base_line: line,
            tail,
            end,
            long,
        };
        Ok(())
    }

    /// The next JSONL row with its cells read, a damaged one, or the end. The first row
    /// read sets the header (and must have an `index` key).
    fn next_json(&mut self) -> Result<JsonStep, ReadError> {
        let ReportReader {
            part,
            header,
            want,
            seen,
            cells,
            ..
        } = self;
        let Part::Jsonl {
            lines,
            offset,
            line,
            buf,
            keys,
            ..
        } = part
        else {
            return Ok(JsonStep::End);
        };
        loop {
            buf.clear();
            let n = lines.read_until(b'\n', buf)?;
            if n == 0 {
                *part = Part::Done;
                return Ok(JsonStep::End);
            }
            let start = *offset;
            *offset += n as u64;
            *line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let number = *line;
            if let Err(e) = json_row(buf, keys, want, cells) {
                let reason = format!("it is not a ratefetch JSONL row ({e})");
                return Ok(JsonStep::Damaged(number, reason));
            }
            match header {
                Header::Jsonl(first) if keys.get() != first.as_slice() => {
                    let reason = format!(
                        "its keys are not the first row's (found {})",
                        shown(keys.get())
                    );
                    return Ok(JsonStep::Damaged(number, reason));
                }
                Header::Jsonl(_) => {}
                _ => {
                    if !keys.get().iter().any(|k| k == "index") {
                        return Err(ReadError::Foreign(format!(
                            "it has no index column (found {})",
                            shown(keys.get())
                        )));
                    }
                    *header = Header::Jsonl(keys.get().to_vec());
                }
            }
            let index = match parse_index(cells[0].as_bytes()) {
                Ok(index) => index,
                Err(reason) => return Ok(JsonStep::Damaged(number, reason)),
            };
            if !seen.insert(index) {
                return Ok(JsonStep::Damaged(
                    number,
                    format!("index {index} appears twice"),
                ));
            }
            return Ok(JsonStep::Row(JsonPending {
                index,
                offset: start,
                len: n as u64,
            }));
        }
    }
}

/// What `next_json` found.
enum JsonStep {
    Row(JsonPending),
    Damaged(u64, String),
    End,
}

/// An index cell: a whole number from 1 up, written as ratefetch writes it (digits only, no
/// sign, no leading zero).
fn parse_index(cell: &[u8]) -> Result<u64, String> {
    let canonical = !cell.is_empty()
        && cell.iter().all(u8::is_ascii_digit)
        && (cell[0] != b'0' || cell.len() == 1);
    let number = std::str::from_utf8(cell)
        .ok()
        .filter(|_| canonical)
        .and_then(|c| c.parse::<u64>().ok());
    match number {
        Some(0) => Err("its index is 0 (indices start at 1)".into()),
        Some(index) => Ok(index),
        None => Err(format!(
            "its index is not a whole number from 1 up (found {})",
            shown_cell(cell)
        )),
    }
}

/// A cell for a message: escaped, and at most 40 characters.
fn shown_cell(cell: &[u8]) -> String {
    let text = String::from_utf8_lossy(cell);
    let mut out: String = text
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .collect();
    if text.chars().nth(40).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// Column names for a message: escaped, at most 20 of them.
pub(crate) fn shown(names: &[impl AsRef<str>]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(20)
        .map(|n| {
            n.as_ref()
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
                .to_string()
        })
        .collect();
    if names.len() > 20 {
        out.push(format!("… {} more", names.len() - 20));
    }
    out.join(",")
}

fn csv_error(e: csv::Error) -> ReadError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ReadError::Io(e),
        csv::ErrorKind::Utf8 { err, .. } => ReadError::Foreign(err.to_string()),
        other => ReadError::Foreign(format!("{other:?}")),
    }
}

/// A CSV reader of the bytes from `at` to `end` (no header: the caller reads it).
fn csv_part(file: &File, at: u64, end: u64) -> io::Result<csv::Reader<Span<'_>>> {
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_reader(Span::new(file, at, end)))
}

/// The bytes of `file` from `at` to `end`, read at their own position whatever else moves
/// the file's offset meanwhile (the reader looks ahead at the tail while a part is read).
pub struct Span<'f> {
    file: &'f File,
    at: u64,
    end: u64,
}

impl<'f> Span<'f> {
    fn new(file: &'f File, at: u64, end: u64) -> Span<'f> {
        Span { file, at, end }
    }
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.at).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let mut f = self.file;
        f.seek(SeekFrom::Start(self.at))?;
        let n = f.read(&mut buf[..want])?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A report's format from its first byte that is not white space (`None`: empty).
fn sniff(file: &File) -> io::Result<Option<Format>> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 4096];
    loop {
        let n = match f.read(&mut head) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(b) = head[..n].iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(Some(if *b == b'{' {
                Format::Jsonl
            } else {
                Format::Csv
            }));
        }
    }
}

/// The length of the CSV text from byte `at` up to the end of its last whole record (0 if
/// none). A whole record's terminator, outside quotes, has been read: the csv reader alone
/// cannot tell, since at the end of its input it takes an unterminated record as complete,
/// even one cut inside a quoted cell. So this runs the same parser (csv-core, with the csv
/// crate's defaults) and counts only the records that ended with a terminator. A CR LF
/// counts as one terminator; blank lines after the last record are cut too.
fn complete_len(file: &File, at: u64, cap: u64) -> io::Result<(u64, Option<u64>)> {
    scan(Span::new(file, at, u64::MAX), cap)
}

/// The longest row the reader takes: a longer one is damage (a quote that opens a cell and
/// closes it gigabytes later), so that no record can take more memory than this.
const MAX_ROW: u64 = 256 << 20;

/// `complete_len` of what `report` yields.
#[cfg(test)]
pub(crate) fn complete_len_of(report: impl Read) -> io::Result<u64> {
    Ok(scan(report, MAX_ROW)?.0)
}

/// The length of the whole records of what `report` yields (`complete_len`), and where the
/// first of them longer than `cap` starts (its span, leading line breaks included).
fn scan(mut report: impl Read, cap: u64) -> io::Result<(u64, Option<u64>)> {
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
    let mut long = None;
    loop {
        let n = match report.read(&mut chunk) {
            Ok(0) => return Ok((keep, long)),
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
                    let end = offset + at as u64;
                    if end - keep > cap && long.is_none() {
                        long = Some(keep);
                    }
                    keep = end;
                    after_cr = at > 0 && chunk[at - 1] == b'\r';
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => break,
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
        offset += n as u64;
    }
}

/// The number of the line that starts at or contains byte `to`, counting line `line` from
/// byte `from`.
fn line_at(file: &File, from: u64, line: u64, to: u64) -> io::Result<u64> {
    let mut f = file;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(64 * 1024, f.take(to - from));
    let mut line = line;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(line);
        }
        line += memchr::memchr_iter(b'\n', buf).count() as u64;
        let n = buf.len();
        r.consume(n);
    }
}

/// Whether the bytes from `from` to `to`, which the parser reads as one record cut short,
/// hold after their first line a whole record of `fields` cells with a valid index at
/// `index_at`: then a quote on their first line swallowed rows. Returns where that first
/// line ends (the byte the reader goes on from), or `None` for a tear.
fn swallowed_rows(
    file: &File,
    from: u64,
    to: u64,
    fields: usize,
    index_at: usize,
) -> io::Result<Option<u64>> {
    let ends_with_break = matches!(byte_at(file, to - 1)?, b'\n' | b'\r');
    // The record's first line is the first that is not blank.
    let (from, _) = first_cell(file, from, 1, to)?;
    let mut tail = BufReader::with_capacity(64 * 1024, Span::new(file, from, to));
    let mut first = Vec::new();
    // The first line, bounded: only its length matters.
    let mut first_len = 0u64;
    loop {
        first.clear();
        let n = (&mut tail).take(64 * 1024).read_until(b'\n', &mut first)?;
        first_len += n as u64;
        if n == 0 || first.last() == Some(&b'\n') {
            break;
        }
    }
    if from + first_len >= to {
        return Ok(None);
    }
    // The records after it, read with the parser alone, in bounded memory: only the count
    // of cells and the first bytes of the index cell are kept.
    use csv_core::ReadFieldResult;
    let mut parser = csv_core::Reader::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = [0u8; 64];
    let (mut cells, mut index) = (0usize, Vec::with_capacity(24));
    loop {
        let n = loop {
            match tail.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        let input = &chunk[..n];
        let mut at = 0;
        loop {
            let (result, used, written) = parser.read_field(&input[at..], &mut out);
            at += used;
            if cells == index_at && index.len() < 24 {
                let room = 24 - index.len();
                index.extend_from_slice(&out[..written.min(room)]);
            }
            match result {
                ReadFieldResult::InputEmpty => break,
                ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    cells += 1;
                    if record_end {
                        // A record that reaches the end of the file is whole only if the
                        // file ends with a line break.
                        let terminated = n > 0 || ends_with_break;
                        if terminated && cells == fields && parse_index(&index).is_ok() {
                            return Ok(Some(from + first_len));
                        }
                        cells = 0;
                        index.clear();
                    }
                }
                ReadFieldResult::End => return Ok(None),
            }
        }
    }
}

/// The byte at `at` in `file` (leaves the file's position anywhere).
fn byte_at(file: &File, at: u64) -> io::Result<u8> {
    let mut f = file;
    f.seek(SeekFrom::Start(at))?;
    let mut b = [0u8];
    f.read_exact(&mut b)?;
    Ok(b[0])
}

/// The byte where line `want` starts, counting line `line` from byte `at`; `None` if the
/// file ends first.
fn line_start(file: &File, at: u64, line: u64, want: u64, len: u64) -> io::Result<Option<u64>> {
    let mut f = file;
    f.seek(SeekFrom::Start(at))?;
    let mut r = BufReader::with_capacity(64 * 1024, f.take(len - at));
    let (mut pos, mut line) = (at, line);
    while line < want {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                r.consume(i + 1);
                pos += i as u64 + 1;
                line += 1;
            }
            None => {
                let n = buf.len();
                r.consume(n);
                pos += n as u64;
            }
        }
    }
    Ok(Some(pos))
}

/// Where the first cell of a CSV record whose span starts at `at` (on line `line`) is: the
/// span may begin with line breaks (the LF of a CR LF, blank lines); returns the byte and the
/// line it is on.
fn first_cell(file: &File, at: u64, line: u64, len: u64) -> io::Result<(u64, u64)> {
    let mut r = BufReader::with_capacity(4096, Span::new(file, at, len));
    let (mut pos, mut line) = (at, line);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((pos, line));
        }
        let breaks = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        line += buf[..breaks].iter().filter(|b| **b == b'\n').count() as u64;
        pos += breaks as u64;
        if breaks < buf.len() {
            return Ok((pos, line));
        }
        r.consume(breaks);
    }
}

/// The length of the file up to and including its last `\n` (0 if none): a JSONL report's
/// whole rows.
fn last_line_end(file: &File, len: u64) -> io::Result<u64> {
    let mut f = file;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The indices seen: one bit each below 2^26, a hash set above (only a damaged or odd report
/// has those), so no index cell can make the reader allocate much.
#[derive(Debug, Default)]
struct IndexSet {
    bits: Vec<u64>,
    sparse: HashSet<u64>,
}

const DENSE_BITS: u64 = 1 << 26;

impl IndexSet {
    /// False if `index` was there already.
    fn insert(&mut self, index: u64) -> bool {
        if index >= DENSE_BITS {
            return self.sparse.insert(index);
        }
        let (word, bit) = ((index / 64) as usize, index % 64);
        if word >= self.bits.len() {
            let grown = (word + 1)
                .max(self.bits.len() * 2)
                .min((DENSE_BITS / 64) as usize);
            self.bits.resize(grown, 0);
        }
        let had = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        !had
    }
}

/// The keys of the last JSONL row read, in order; their strings are reused from row to row.
#[derive(Debug, Default)]
struct Keys {
    names: Vec<String>,
    len: usize,
}

impl Keys {
    fn get(&self) -> &[String] {
        &self.names[..self.len]
    }

    fn push(&mut self, key: &str) {
        if self.len == self.names.len() {
            self.names.push(String::new());
        }
        let name = &mut self.names[self.len];
        name.clear();
        name.push_str(key);
        self.len += 1;
    }
}

/// Reads one JSONL row: its keys into `keys`, the cells named in `want` into `cells` (as
/// text: a string as it is, a number or a boolean as written, null as empty); other values
/// are skipped, not built.
fn json_row(
    line: &[u8],
    keys: &mut Keys,
    want: &[String],
    cells: &mut [String],
) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_slice(line);
    JsonRow { keys, want, cells }.deserialize(&mut de)?;
    de.end()
}

struct JsonRow<'a> {
    keys: &'a mut Keys,
    want: &'a [String],
    cells: &'a mut [String],
}

impl<'de> DeserializeSeed<'de> for JsonRow<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRow<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.keys.len = 0;
        for cell in self.cells.iter_mut() {
            cell.clear();
        }
        while map.next_key_seed(Key(&mut *self.keys))?.is_some() {
            let key = self.keys.get().last().map(String::as_str).unwrap_or("");
            match self.want.iter().position(|w| w == key) {
                Some(i) => map.next_value_seed(TextCell(&mut self.cells[i]))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key, pushed onto `Keys` as it is read.
struct Key<'a>(&'a mut Keys);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.0.push(key);
        Ok(())
    }
}

/// A cell read as text into its string.
struct TextCell<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for TextCell<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextCell<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number, a boolean or null")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.push_str(s);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // `5.0` stays `5.0` (not an index, unlike `5`).
        self.0.push_str(&format!("{v:?}"));
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Outcome;
    use crate::sink::tests::{multi_line, render, render_with, sample};
    use proptest::prelude::*;

    /// What a whole read found: the rows (index, first wanted cell), the torn bytes, and
    /// the lines of the damaged rows skipped.
    #[derive(Debug, PartialEq, Eq)]
    struct Read {
        rows: Vec<(u64, String)>,
        torn: u64,
        skipped: Vec<u64>,
    }

    fn read_bytes(bytes: &[u8], skip: bool) -> Result<Read, ReadError> {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, bytes).unwrap();
        let mut reader = ReportReader::open(&file, &["url"], skip)?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push((row.index, row.cell(0).to_string()));
        }
        Ok(Read {
            rows,
            torn: reader.torn(),
            skipped: reader.skipped().1.iter().map(|(l, _)| *l).collect(),
        })
    }

    fn rows(n: u64) -> Vec<Outcome> {
        (1..=n)
            .map(|index| Outcome {
                index,
                url: format!("http://a.test/{index}"),
                ..sample()
            })
            .collect()
    }

    fn damaged_line(r: Result<Read, ReadError>) -> u64 {
        match r {
            Err(ReadError::Damaged { line, .. }) => line,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_stray_quote_mid_report_is_damage_on_its_line_not_a_torn_tail() {
        let text = render(Format::Csv, &rows(1000));
        // Row 10 is on line 11 (the header is line 1).
        let at = text.match_indices("\n10,").next().unwrap().0 + 1;
        let damaged = format!("{}\"{}", &text[..at], &text[at..]);
        assert_eq!(damaged_line(read_bytes(damaged.as_bytes(), false)), 11);
        // Skipping, every other row is kept.
        let read = read_bytes(damaged.as_bytes(), true).unwrap();
        assert_eq!(read.skipped, vec![11]);
        let indices: Vec<u64> = read.rows.iter().map(|r| r.0).collect();
        let want: Vec<u64> = (1..=1000).filter(|i| *i != 10).collect();
        assert_eq!(indices, want);
        assert_eq!(read.torn, 0);
    }

    #[test]
    fn a_row_longer_than_the_cap_is_damage_and_is_not_read() {
        // Two stray quotes fifty rows apart: one record of thousands of bytes.
        let plain: Vec<Outcome> = rows(100)
            .into_iter()
            .map(|o| Outcome { title: None, ..o })
            .collect();
        let text = render(Format::Csv, &plain);
        let damaged = text
            .replacen("\n10,", "\n\"10,", 1)
            .replacen("\n60,", "\n\"60,", 1);
        let read = |bytes: &str, skip: bool| {
            let mut file = tempfile::tempfile().unwrap();
            io::Write::write_all(&mut file, bytes.as_bytes()).unwrap();
            let mut reader = ReportReader::open_capped(&file, &[], skip, 1000)?;
            let mut indices = Vec::new();
            while let Some(row) = reader.next_row()? {
                indices.push(row.index);
                assert!(
                    reader.record.as_slice().len() < 1000,
                    "no long record is read"
                );
            }
            Ok::<_, ReadError>((indices, reader.skipped().0))
        };
        match read(&damaged, false) {
            Err(e @ ReadError::Damaged { line: 11, .. }) => {
                assert!(e.to_string().contains("longer than 1000 bytes"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        // Skipping: the long record's first line, and the second quote's line (from there
        // it opens a cell that runs to the end), are left out; every other row is read.
        let (indices, skipped) = read(&damaged, true).unwrap();
        assert_eq!(skipped, 2);
        let want: Vec<u64> = (1..=100).filter(|i| *i != 10 && *i != 60).collect();
        assert_eq!(indices, want);
        assert_eq!(
            read(&text, false).unwrap().0.len(),
            100,
            "rows under the cap"
        );
    }

    #[test]
    fn a_blank_line_before_a_stray_quote_does_not_make_it_a_tear() {
        let text = render(Format::Csv, &rows(100));
        let damaged = text.replacen("\n10,", "\n\n\"10,", 1);
        assert_eq!(damaged_line(read_bytes(damaged.as_bytes(), false)), 12);
    }

    #[test]
    fn lines_are_counted_right_after_cr_lf_and_blank_lines_and_a_row_is_skipped_once() {
        let text = render(Format::Csv, &rows(5)).replacen("\n3,", "\n0,", 1);
        let crlf = text.replace('\n', "\r\n");
        let blank = text.replacen("\n0,", "\n\n\n0,", 1);
        for (bytes, line) in [(&text, 4), (&crlf, 4), (&blank, 6)] {
            assert_eq!(
                damaged_line(read_bytes(bytes.as_bytes(), false)),
                line,
                "{bytes:?}"
            );
            let read = read_bytes(bytes.as_bytes(), true).unwrap();
            assert_eq!(read.skipped, vec![line], "{bytes:?}");
            let indices: Vec<u64> = read.rows.iter().map(|r| r.0).collect();
            assert_eq!(indices, [1, 2, 4, 5], "{bytes:?}");
        }
    }

    #[test]
    fn an_index_written_otherwise_than_ratefetch_writes_it_is_damage() {
        let text = render(Format::Csv, &rows(3));
        for bad in ["+2", "02", " 2", "2.0"] {
            let damaged = text.replacen("\n2,", &format!("\n{bad},"), 1);
            assert_eq!(
                damaged_line(read_bytes(damaged.as_bytes(), false)),
                3,
                "{bad}"
            );
        }
        let jsonl = render(Format::Jsonl, &rows(3)).replacen("\"index\":2,", "\"index\":2.0,", 1);
        assert_eq!(damaged_line(read_bytes(jsonl.as_bytes(), false)), 2);
    }

    #[test]
    fn headers_with_the_same_cells_are_the_same_columns() {
        let text = render(Format::Csv, &rows(1));
        let requoted = text.replacen("index,url", "\"index\",url", 1);
        let header = |t: &str| {
            let mut file = tempfile::tempfile().unwrap();
            io::Write::write_all(&mut file, t.as_bytes()).unwrap();
            ReportReader::open(&file, &[], false)
                .unwrap()
                .header()
                .clone()
        };
        assert!(header(&text).same_columns(&header(&requoted)));
        assert_ne!(header(&text), header(&requoted), "the bytes differ");
        let other = text.replacen("index,url", "index,link", 1);
        assert!(!header(&text).same_columns(&header(&other)));
    }

    #[test]
    fn a_stray_quote_that_closes_later_is_damage_too() {
        let text = render(Format::Csv, &rows(50));
        let at = text.match_indices("\n20,").next().unwrap().0 + 1;
        // The sample's title cell holds quotes: the stray one pairs with them.
        let damaged = format!("{}\"{}", &text[..at], &text[at..]);
        assert_eq!(damaged_line(read_bytes(damaged.as_bytes(), false)), 21);
        let read = read_bytes(damaged.as_bytes(), true).unwrap();
        assert_eq!(read.rows.len(), 49, "{:?}", read.skipped);
    }

    #[test]
    fn bad_indices_are_damage_naming_their_line() {
        let text = render(Format::Csv, &rows(3));
        for (from, to, says) in [
            ("\n2,", "\n0,", "its index is 0"),
            ("\n2,", "\n-2,", "not a whole number"),
            ("\n2,", "\nx,", "not a whole number"),
            ("\n2,", "\n1,", "index 1 appears twice"),
            ("\n2,", "\n2,extra,", "cells where the header has 12"),
        ] {
            let bad = text.replacen(from, to, 1);
            match read_bytes(bad.as_bytes(), false) {
                Err(e @ ReadError::Damaged { line: 3, .. }) => {
                    assert!(e.to_string().contains(says), "{e}")
                }
                other => panic!("{to:?}: {other:?}"),
            }
        }
        let jsonl = render(Format::Jsonl, &rows(3));
        for (from, to, says) in [
            ("\"index\":2,", "\"index\":0,", "its index is 0"),
            ("\"index\":2,", "\"index\":-2,", "not a whole number"),
            ("\"index\":2,", "\"index\":1,", "index 1 appears twice"),
            (
                "\"index\":2,",
                "\"index\":2,\"more\":1,",
                "keys are not the first row's",
            ),
            ("\"index\":2,", "\"index\":2,,", "not a ratefetch JSONL row"),
        ] {
            let bad = jsonl.replacen(from, to, 1);
            match read_bytes(bad.as_bytes(), false) {
                Err(e @ ReadError::Damaged { line: 2, .. }) => {
                    assert!(e.to_string().contains(says), "{e}")
                }
                other => panic!("{to:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn no_index_column_is_foreign() {
        assert!(matches!(
            read_bytes(b"a,b\n1,2\n", false),
            Err(ReadError::Foreign(_))
        ));
        assert!(matches!(
            read_bytes(b"{\"a\":1}\n", false),
            Err(ReadError::Foreign(_))
        ));
        let empty = read_bytes(b"", false).unwrap();
        assert!(empty.rows.is_empty() && empty.torn == 0);
    }

    #[test]
    fn a_torn_jsonl_line_is_cut_and_only_that() {
        let text = render(Format::Jsonl, &rows(3));
        let torn = format!("{text}{{\"index\":4,\"url\":\"http");
        let read = read_bytes(torn.as_bytes(), false).unwrap();
        assert_eq!(read.rows.len(), 3);
        assert_eq!(read.torn, torn.len() as u64 - text.len() as u64);
        assert_eq!(read.rows[2], (3, "http://a.test/3".to_string()));
    }

    /// A report whose rows hold quoted cells with line breaks (CR LF and LF).
    fn multi_line_report(format: Format, n: u64) -> String {
        let columns = multi_line(1).0;
        let rows: Vec<Outcome> = (1..=n).map(|i| multi_line(i).1).collect();
        render_with(format, &columns, &rows)
    }

    /// Where each record of `text` ends (as the sink wrote them, one per row).
    fn record_ends(text: &str, format: Format) -> Vec<usize> {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let mut reader = ReportReader::open(&file, &[], false).unwrap();
        let mut ends = Vec::new();
        while let Some(row) = reader.next_row().unwrap() {
            ends.push((row.offset + row.len) as usize);
        }
        assert!(format == reader.format());
        ends
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A report cut anywhere (a run killed mid-write) is never damage: the rows read are
        /// exactly those whole before the cut, and the rest is the torn tail.
        #[test]
        fn any_prefix_of_a_report_is_its_whole_rows_and_a_tear(
            jsonl in any::<bool>(),
            cut in 0.0f64..1.0,
        ) {
            let format = if jsonl { Format::Jsonl } else { Format::Csv };
            let text = multi_line_report(format, 6);
            let ends = record_ends(&text, format);
            let cut = (text.len() as f64 * cut) as usize;
            let read = read_bytes(&text.as_bytes()[..cut], false).unwrap();
            let whole = ends.iter().filter(|e| **e <= cut).count();
            prop_assert_eq!(read.rows.len(), whole);
            // Before the first row: a CSV header cut short (all of it torn), or the header
            // whole and nothing after it torn.
            let header_end = text.find('\n').unwrap() + 1;
            let kept = match (whole, format) {
                (0, Format::Csv) if cut < header_end => 0,
                (0, Format::Csv) => header_end,
                (0, Format::Jsonl) => 0,
                (n, _) => ends[n - 1],
            };
            prop_assert_eq!(read.torn as usize, cut - kept);
        }

        /// Whatever the bytes, the reader does not panic, and damage names a line the file
        /// has.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                                       skip in any::<bool>()) {
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            match read_bytes(&bytes, skip) {
                Ok(read) => {
                    for line in read.skipped {
                        prop_assert!(line >= 1 && line <= lines);
                    }
                }
                Err(ReadError::Damaged { line, .. }) => prop_assert!(line >= 1 && line <= lines),
                Err(_) => {}
            }
        }

        /// A report with bytes changed, put in or taken out: no panic; damage names a line
        /// of the file; and each row read is one the report had, once.
        #[test]
        fn a_mutated_report_reads_as_rows_it_had_or_damage(
            jsonl in any::<bool>(),
            edits in proptest::collection::vec((0.0f64..1.0, any::<u8>(), 0u8..3), 1..4),
            skip in any::<bool>(),
        ) {
            let format = if jsonl { Format::Jsonl } else { Format::Csv };
            let original: Vec<(u64, String)> =
                rows(20).into_iter().map(|o| (o.index, o.url)).collect();
            let mut bytes = render(format, &rows(20)).into_bytes();
            let n_edits = edits.len();
            // A CSV header edited names other columns: the rows are edited after it.
            let after = if jsonl { 0 } else { bytes.iter().position(|b| *b == b'\n').unwrap() + 1 };
            for (at, byte, op) in edits {
                let at = after + ((bytes.len() - after) as f64 * at) as usize;
                match op {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ => if at < bytes.len() { bytes[at] = byte },
                }
            }
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            match read_bytes(&bytes, skip) {
                Ok(read) => {
                    let mut seen = std::collections::HashSet::new();
                    for (index, _) in &read.rows {
                        prop_assert!(seen.insert(*index), "index {} twice", index);
                    }
                    // A row is read from one record: an edit changes at most the record it
                    // falls in, or splits it in two. The other rows are read as they were.
                    let changed = read.rows.iter().filter(|r| !original.contains(r)).count();
                    prop_assert!(changed <= 2 * n_edits, "{} rows changed by {} edits", changed, n_edits);
                    for line in &read.skipped {
                        prop_assert!(*line >= 1 && *line <= lines);
                    }
                }
                Err(ReadError::Damaged { line, .. }) => prop_assert!(line >= 1 && line <= lines),
                Err(_) => {}
            }
        }
    }
}
