//! The records of a CSV input, read in bounded memory: a record holds at most `MAX_RECORD`
//! bytes, and a damaged record (longer than that, or one that a quote opened and the input
//! ended inside) is reported on the line it starts on and read again from the line after
//! that, each line a record of its own from there (issue 19: a stray quote swallowed the
//! rest of the input, silently, and held all of it in memory).
//!
//! The parser is csv-core with the csv crate's defaults (quotes doubled, CR, LF and CR LF each
//! end a record, blank lines skipped). The csv crate cannot be used here: at the end of its
//! input it takes a record cut inside a quoted cell as whole, and a record grows without bound.

use std::io::{self, Read};

use csv_core::ReadRecordResult;

/// The most bytes one record of a CSV input may hold, its line end not counted. A longer
/// record is damage (an `invalid_url` row). The reader's buffers hold at most about three
/// times this, plus 8 bytes for each cell of the record (whose cells are at most this many).
pub const MAX_RECORD: usize = 16 << 20;

/// Bytes asked of the input per read.
const CHUNK: usize = 64 << 10;

/// What the next record of the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A whole record: its cells are `Records::get`.
    Record,
    /// A damaged record, which starts on `Records::line`; reading goes on at the line after.
    Damaged(Damage),
}

/// How a record is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The input ends inside a quoted cell: a quote opened it and none closes it.
    OpenQuote,
    /// The record is longer than the cap (`MAX_RECORD`).
    TooLong,
}

/// Reads the records of a CSV input one at a time.
pub struct Records<R> {
    inner: R,
    delimiter: u8,
    parser: csv_core::Reader,
    /// Bytes read and not yet parsed: `buf[at..]`. After a damaged record it holds the bytes
    /// of that record after its first line, to be read again.
    buf: Vec<u8>,
    at: usize,
    eof: bool,
    /// Whether a BOM at the start of the input has been looked for.
    started: bool,
    /// The bytes of the current record as read (at most `cap + 1`); after a damaged record,
    /// its first line (or as much of it as was held).
    raw: Vec<u8>,
    /// The cells of the current record, back to back; `ends[..fields]` are where each ends.
    cells: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    /// The line of the next byte of `buf[at..]`, counting `\n`s from 1.
    next_line: u64,
    /// The line the current record starts on.
    line: u64,
    cap: usize,
}

impl<R: Read> Records<R> {
    /// Records separated by `delimiter`, each at most `cap` bytes (`MAX_RECORD`).
    pub fn new(inner: R, delimiter: u8, cap: usize) -> Records<R> {
        Records {
            inner,
            delimiter,
            parser: parser(delimiter),
            buf: Vec::new(),
            at: 0,
            eof: false,
            started: false,
            raw: Vec::new(),
            cells: vec![0; 4096],
            ends: vec![0; 64],
            fields: 0,
            next_line: 1,
            line: 1,
            cap,
        }
    }

    /// The cap on a record's bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The line the last record read starts on (1-based, counting `\n`s).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The number of cells of the last whole record.
    pub fn len(&self) -> usize {
        self.fields
    }

    /// Cell `i` of the last whole record.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.fields {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.cells[start..self.ends[i]])
    }

    /// The first line of the last damaged record, its line end not included (as much of it as
    /// was held: at most the cap).
    pub fn first_line(&self) -> &[u8] {
        self.raw.strip_suffix(b"\n").unwrap_or(&self.raw)
    }

    /// The bytes held in buffers, for tests of the memory bound.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.capacity() + self.raw.capacity() + self.cells.capacity() + 8 * self.ends.capacity()
    }

    /// The next record; `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Step>> {
        if !self.started {
            self.started = true;
            while self.buf.len() - self.at < 3 && self.more()? {}
            if self.buf[self.at..].starts_with(b"\xEF\xBB\xBF") {
                self.at += 3;
            }
        }
        // Line ends before a record are blank lines: skipped, as csv-core skips them.
        loop {
            if self.at == self.buf.len() && !self.more()? {
                return Ok(None);
            }
            match self.buf[self.at] {
                b'\n' => self.next_line += 1,
                b'\r' => {}
                _ => break,
            }
            self.at += 1;
        }
        self.line = self.next_line;
        self.raw.clear();
        self.fields = 0;
        let mut out = 0;
        loop {
            // At the end of the input a line end closes the record, unless a quoted cell is
            // open: then it is a cell's content, and the quote never closes.
            let at_end = self.at == self.buf.len() && !self.more()?;
            let input: &[u8] = if at_end {
                b"\n"
            } else {
                let room = self.cap + 1 - self.raw.len();
                &self.buf[self.at..self.buf.len().min(self.at + room)]
            };
            // A record of at most `cap + 1` bytes has at most that many bytes of cells, and
            // one more cell.
            if out == self.cells.len() {
                grow(&mut self.cells, self.cap + 1);
            }
            if self.fields == self.ends.len() {
                grow(&mut self.ends, self.cap + 2);
            }
            let (result, used, written, ended) = self.parser.read_record(
                input,
                &mut self.cells[out..],
                &mut self.ends[self.fields..],
            );
            out += written;
            self.fields += ended;
            if !at_end {
                let read = &input[..used];
                self.next_line += memchr::memchr_iter(b'\n', read).count() as u64;
                if self.raw.capacity() - self.raw.len() < read.len() {
                    let want =
                        (2 * self.raw.capacity()).clamp(self.raw.len() + read.len(), self.cap + 1);
                    self.raw.reserve_exact(want - self.raw.len());
                }
                self.raw.extend_from_slice(read);
                self.at += used;
            }
            match result {
                ReadRecordResult::Record => return Ok(Some(Step::Record)),
                ReadRecordResult::InputEmpty if at_end => {
                    return self.damaged(Damage::OpenQuote).map(Some)
                }
                ReadRecordResult::End => return Ok(None),
                ReadRecordResult::InputEmpty
                | ReadRecordResult::OutputFull
                | ReadRecordResult::OutputEndsFull => {}
            }
            if self.raw.len() > self.cap {
                return self.damaged(Damage::TooLong).map(Some);
            }
        }
    }

    /// After a damaged record: the bytes after its first line are read again, with a new
    /// parser (no quote open); `raw` keeps the first line.
    fn damaged(&mut self, damage: Damage) -> io::Result<Step> {
        self.parser = parser(self.delimiter);
        self.fields = 0;
        match memchr::memchr(b'\n', &self.raw) {
            Some(end) => {
                let (tail, rest) = (&self.raw[end + 1..], &self.buf[self.at..]);
                let mut again = Vec::with_capacity(tail.len() + rest.len());
                again.extend_from_slice(tail);
                again.extend_from_slice(rest);
                self.buf = again;
                self.raw.truncate(end + 1);
                self.at = 0;
                self.next_line = self.line + 1;
            }
            None => {
                // The first line is longer than what was held: on at its end.
                loop {
                    if let Some(i) = memchr::memchr(b'\n', &self.buf[self.at..]) {
                        self.at += i + 1;
                        self.next_line += 1;
                        break;
                    }
                    self.at = self.buf.len();
                    if !self.more()? {
                        break;
                    }
                }
            }
        }
        Ok(Step::Damaged(damage))
    }

    /// Reads more of the input onto the end of `buf`; `false` at its end.
    fn more(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.at == self.buf.len() {
            // What a damaged record left to read again is done with: its room goes back.
            if self.buf.capacity() > 2 * CHUNK {
                self.buf = Vec::new();
            }
            self.buf.clear();
        } else {
            self.buf.drain(..self.at);
        }
        self.at = 0;
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(n > 0)
    }
}

/// Doubles `v`'s length, to at most `limit`.
fn grow<T: Copy + Default>(v: &mut Vec<T>, limit: usize) {
    let len = (2 * v.len()).min(limit).max(v.len() + 1);
    v.resize(len, T::default());
}

/// A csv-core parser with the csv crate's defaults and `delimiter`, which takes a UTF-8 BOM as
/// bytes of a cell: only the input's first bytes may be a BOM, and `Records` strips that.
fn parser(delimiter: u8) -> csv_core::Reader {
    let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    // csv-core strips a BOM from the first bytes it is given; a blank line, which it skips,
    // makes those bytes not the first.
    let (result, ..) = parser.read_record(b"\n", &mut [0], &mut [0]);
    debug_assert_eq!(result, ReadRecordResult::InputEmpty);
    parser
}
