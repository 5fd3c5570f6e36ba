//! Input: turns a byte stream of URL lines into `Job`s, lazily, on its own thread, through a
//! bounded channel (memory does not grow with the length of the list).
//!
//! Every non-blank, non-comment line becomes a job, bad lines included: they become error
//! rows and never stop the run. `index` is the 1-based line number, so skipped lines still
//! count.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Failure};
pub use crate::job::Job;
pub use crate::progress::InputProgress;
use crate::resume::{NotTheSameInput, Skip, Verdict};
use crate::template::{Bound, Template};
use crate::units::Shard;

mod records;
use records::{Damage, Records, Step, MAX_RECORD};

/// Lines longer than this are not URLs; they become `invalid_url` rows and only this many
/// bytes of them are ever held in memory.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of an over-long line is shown in the `url` cell.
const SHOWN_OF_LONG_LINE: usize = 200;

/// Parses one trimmed, non-empty line into the URL to fetch.
///
/// `https://example.com/a` is a target; `example.com` is an `invalid_url` ("missing scheme;
/// did you mean https://example.com?"); `ftp://x.org/f` an `unsupported_scheme`.
pub fn parse_target(line: &str) -> Result<Url, Failure> {
    match Url::parse(line) {
        Ok(url) => match url.scheme() {
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    Err(Failure::new(ErrorKind::InvalidUrl, "URL has no host"))
                } else {
                    Ok(url)
                }
            }
            // `example.com:8080/x` and `localhost:3000` parse with a "scheme" of
            // `example.com` / `localhost`: they are hosts that lack a scheme.
            scheme if scheme.contains('.') || after_colon_is_port(line) => {
                Err(missing_scheme(line))
            }
            scheme => Err(Failure::new(
                ErrorKind::UnsupportedScheme,
                format!("unsupported scheme '{scheme}:'; only http and https are fetched"),
            )),
        },
        Err(url::ParseError::RelativeUrlWithoutBase) => Err(missing_scheme(line)),
        Err(e) => Err(Failure::new(ErrorKind::InvalidUrl, e.to_string())),
    }
}

fn after_colon_is_port(line: &str) -> bool {
    line.split_once(':').is_some_and(|(_, rest)| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'/'))
    })
}

fn missing_scheme(line: &str) -> Failure {
    let host = line.split(['/', '?', '#']).next().unwrap_or("");
    // The hint echoes the line: it must be one line (a CSV cell may hold line breaks).
    let looks_like_host = !host.is_empty()
        && !line.contains(char::is_control)
        && !host.contains(char::is_whitespace)
        && (host.contains('.') || host.starts_with("localhost"));
    if looks_like_host {
        Failure::new(
            ErrorKind::InvalidUrl,
            format!("missing scheme; did you mean https://{line}?"),
        )
    } else {
        Failure::new(
            ErrorKind::InvalidUrl,
            "not an absolute URL (expected http:// or https://)",
        )
    }
}

/// Reads lines into jobs. Holds at most `MAX_LINE` bytes of any line.
pub struct LineReader<R> {
    inner: R,
    line_no: u64,
    /// The current line (at most `MAX_LINE` bytes of it).
    line: Vec<u8>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// `--url-template`: each line fills its `{}` and passes through.
    template: Option<Template>,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            line_no: 0,
            line: Vec::with_capacity(256),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            template: None,
        }
    }

    /// Each line fills `template`'s `{}` (its job's URL) and passes through as the job's
    /// one passthrough cell.
    pub fn with_template(mut self, template: Option<Template>) -> LineReader<R> {
        self.template = template;
        self
    }

    /// The next job, skipping blank and comment lines; `None` at the end of the input.
    pub fn next_job(&mut self) -> io::Result<Option<Job>> {
        loop {
            let Some(len) = self.read_line()? else {
                return Ok(None);
            };
            self.line_no += 1;
            let mut bytes = &self.line[..];
            if self.line_no == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            if len > MAX_LINE {
                let shown = String::from_utf8_lossy(&bytes[..SHOWN_OF_LONG_LINE.min(bytes.len())]);
                let shown = format!("{}…", shown.trim());
                // Under a template the line's column is there all the same.
                let passthrough = match &self.template {
                    Some(_) => vec![shown.clone()],
                    None => Vec::new(),
                };
                return Ok(Some(Job {
                    index: self.line_no,
                    url: shown,
                    target: Err(Failure::new(
                        ErrorKind::InvalidUrl,
                        format!(
                            "line is {len} bytes long; longer than {MAX_LINE} bytes, not a URL"
                        ),
                    )),
                    passthrough,
                }));
            }
            let (text, target_override) = match std::str::from_utf8(bytes) {
                Ok(s) => (s.trim().to_string(), None),
                Err(_) => (
                    String::from_utf8_lossy(bytes).trim().to_string(),
                    Some(Failure::new(
                        ErrorKind::InvalidUrl,
                        "line is not valid UTF-8",
                    )),
                ),
            };
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let (url, passthrough) = match &self.template {
                Some(template) => (template.fill_line(&text), vec![text]),
                None => (text, Vec::new()),
            };
            let target = match target_override {
                Some(f) => Err(f),
                None => parse_target(&url),
            };
            return Ok(Some(Job {
                index: self.line_no,
                url,
                target,
                passthrough,
            }));
        }
    }

    /// Reads one line (through `\n`) into `self.line`, keeping at most `MAX_LINE` bytes of
    /// it; returns the line's full length, or `None` at the end of the input.
    fn read_line(&mut self) -> io::Result<Option<usize>> {
        self.line.clear();
        let mut total = 0usize;
        loop {
            if self.start == self.end {
                if self.eof {
                    return Ok((total > 0).then_some(total));
                }
                let n = loop {
                    match self.inner.read(&mut self.buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                if n == 0 {
                    self.eof = true;
                    continue;
                }
                (self.start, self.end) = (0, n);
            }
            let available = &self.buf[self.start..self.end];
            let (used, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&available[..used.min(room)]);
            total += used;
            self.start += used;
            if done {
                return Ok(Some(total));
            }
        }
    }
}

/// Why the input thread stopped before the end of the input.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input could not be read.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A resumed run's input is not the one its report was made from.
    #[error(transparent)]
    NotTheSameInput(#[from] NotTheSameInput),
}

impl ReadError {
    /// The run-level error: the input cannot be read, or the report cannot be resumed
    /// from it.
    pub fn into_error(self, config: &Config) -> Error {
        match self {
            ReadError::NotTheSameInput(mismatch) => Error::Resume {
                path: config.output.display_path(),
                reason: mismatch.to_string(),
            },
            ReadError::Io(source) => Error::Input {
                path: config.input.display_path(),
                source,
            },
        }
    }
}

/// Jobs read and not yet handed to the pool, and the channel they go to.
struct Pending {
    batch: Vec<Job>,
    tx: Option<mpsc::Sender<Vec<Job>>>,
    closed: bool,
}

impl Pending {
    fn hand_on(&mut self) {
        if self.batch.is_empty() || self.closed {
            return;
        }
        if let Some(tx) = &self.tx {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.closed = tx.blocking_send(full).is_err();
        }
    }
}

/// The raw input, handing on the pending jobs before each read: a read may block (a slow
/// pipe, a terminal), and the jobs read so far must not wait for it.
pub struct Hooked {
    inner: Box<dyn Read + Send>,
    pending: Arc<Mutex<Pending>>,
}

impl Read for Hooked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.pending.lock().expect("input lock").hand_on();
        self.inner.read(buf)
    }
}

/// Why a CSV input cannot be read as one (`Source::csv`).
#[derive(Debug, thiserror::Error)]
pub enum CsvInputError {
    /// The header row could not be read (I/O, or damaged: a quote that never closes, a
    /// record longer than `MAX_RECORD`).
    #[error("cannot read the CSV header: {0}")]
    Read(#[source] io::Error),
    /// The input is empty, or its header has no names.
    #[error("the CSV input has no header row")]
    NoHeader,
    /// `--url-column` names no column of the header.
    #[error(
        "no column \"{}\" in the CSV header (columns: {})",
        shown_name(name),
        shown_columns(columns)
    )]
    UnknownUrlColumn {
        name: String,
        /// The header's names, in order.
        columns: Vec<String>,
    },
    /// `--url-template` names a column the header does not have (`""`: it holds `{}`,
    /// which is a text input's line).
    #[error("{}", template_column_message(name, columns))]
    UnknownTemplateColumn {
        name: String,
        /// The header's names, in order.
        columns: Vec<String>,
    },
    /// No column is named `url` and the first holds no URL: which one does?
    #[error(
        "no column named url in the CSV header, and its first column holds no http(s) URL \
         (columns: {}); name the URL column with --url-column",
        shown_columns(columns)
    )]
    NoUrlColumn {
        /// The header's names, in order.
        columns: Vec<String>,
    },
}

fn template_column_message(name: &str, columns: &[String]) -> String {
    let columns = shown_columns(columns);
    if name.is_empty() {
        format!("{{}} takes a text input's line; a CSV input's columns go by name, e.g. {{url}} (columns: {columns})")
    } else {
        let name = shown_name(name);
        format!("no column \"{name}\" in the CSV header for {{{name}}} (columns: {columns})")
    }
}

/// How many characters of a name from the input a message shows.
const SHOWN_NAME_CHARS: usize = 64;
/// How many of a header's names a message lists.
const SHOWN_COLUMNS: usize = 20;

/// A name from the input (a header cell), fit for a one-line message on a terminal: control
/// and invisible characters escaped (`\u{1b}`, `\n`), at most `SHOWN_NAME_CHARS` of it.
pub fn shown_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(4 * SHOWN_NAME_CHARS));
    for (n, c) in name.chars().enumerate() {
        if n == SHOWN_NAME_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || invisible(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Format characters that change how a line shows without showing themselves (zero-width
/// ones, bidirectional overrides, line separators, the byte order mark).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// A header's names for a message, comma-separated: each `shown_name`, the first
/// `SHOWN_COLUMNS` of them and how many there are in all.
pub fn shown_columns(columns: &[String]) -> String {
    let mut shown: Vec<String> = columns
        .iter()
        .take(SHOWN_COLUMNS)
        .map(|c| shown_name(c))
        .collect();
    if columns.len() > SHOWN_COLUMNS {
        shown.push(format!("… {} in all", columns.len()));
    }
    shown.join(",")
}

/// How much of a CSV input is looked at for its header line when its separator is found.
const SNIFF_BYTES: usize = 64 << 10;

/// The separators a CSV input's header line is searched for, the first winning a tie: what
/// spreadsheets write (Excel writes `;` in locales whose decimal mark is a comma), as
/// duckdb's and Python's sniffers look for.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The start of an input, read until it holds its header line (a line break outside quotes),
/// `SNIFF_BYTES`, or the whole input.
fn read_head(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; SNIFF_BYTES];
    let mut len = 0;
    let mut quoted = false;
    let mut line_ended = |bytes: &[u8]| {
        bytes.iter().any(|&b| {
            if b == b'"' {
                quoted = !quoted;
            }
            b == b'\n' && !quoted
        })
    };
    while len < head.len() {
        let n = match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        if line_ended(&head[len - n..len]) {
            break;
        }
    }
    head.truncate(len);
    Ok(head)
}

/// The separator of a CSV input whose header line is the first line of `head`: the one of
/// `DELIMITERS` found most often outside quotes (a comma when none is).
pub fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    // The first of the most frequent: max_by_key would take the last.
    let most = counts.iter().copied().max().unwrap_or(0);
    if most == 0 {
        return b',';
    }
    DELIMITERS[counts.iter().position(|&c| c == most).unwrap_or(0)]
}

/// Whether a cell reads as an http(s) URL.
fn looks_like_url(cell: &[u8]) -> bool {
    let cell = cell.trim_ascii();
    let scheme = |s: &[u8]| cell.len() > s.len() && cell[..s.len()].eq_ignore_ascii_case(s);
    scheme(b"http://") || scheme(b"https://")
}

/// Where jobs come from: lines of text, or the rows of a CSV file with a header.
pub struct Source {
    kind: SourceKind,
    pending: Arc<Mutex<Pending>>,
    /// `--shard`: the other lines are passed over (they get no row).
    shard: Option<Shard>,
}

enum SourceKind {
    /// Lines of text, each a URL, or with `--url-template` the value of its `{}`.
    Lines(LineReader<Hooked>),
    // Boxed: the CSV parser's tables make it far the largest.
    Csv(Box<CsvRows>),
    Jobs(std::vec::IntoIter<Job>),
    /// Jobs from a task (a `--queue` worker's reader), until it drops its sender.
    Channel(mpsc::Receiver<Job>),
}

/// Where a CSV row's URL comes from.
enum UrlFrom {
    /// A column (passed through no further); `name` as messages show it (`shown_name`).
    Column { at: usize, name: String },
    /// `--url-template`, from the columns it names (every column passes through).
    Template(Bound),
}

/// The passthrough column of a text input read through `--url-template`: the line.
pub const TEMPLATE_LINE: &str = "line";

/// The rows of a CSV input.
struct CsvRows {
    records: Records<io::BufReader<Hooked>>,
    url: UrlFrom,
    /// The header's number of cells.
    columns: usize,
    row: u64,
    /// The first row, read with the header and not yet a job.
    peeked: Option<Step>,
}

impl Source {
    fn hooked(reader: Box<dyn Read + Send>) -> (Hooked, Arc<Mutex<Pending>>) {
        let pending = Arc::new(Mutex::new(Pending {
            batch: Vec::with_capacity(BATCH),
            tx: None,
            closed: false,
        }));
        let hooked = Hooked {
            inner: reader,
            pending: pending.clone(),
        };
        (hooked, pending)
    }

    /// One URL per line; with a `template`, one value per line, which fills its `{}` and
    /// passes through to the report (its one passthrough column, `TEMPLATE_LINE`).
    pub fn text(reader: Box<dyn Read + Send>, template: Option<Template>) -> Source {
        let (hooked, pending) = Source::hooked(reader);
        Source {
            kind: SourceKind::Lines(LineReader::new(hooked).with_template(template)),
            pending,
            shard: None,
        }
    }

    /// A CSV file whose first row is a header, its cells separated by `delimiter` (if
    /// `None`, found from the header line: `sniff_delimiter`). The URL column is
    /// `url_column` (by name, case-insensitive), else a column named `url`, else the first
    /// if its first cell is an http(s) URL (else `NoUrlColumn`: the report would be one
    /// `invalid_url` row per line). Returns the source and the names of the other columns
    /// (passed through to the report), in input order.
    ///
    /// With a `template`, the URL is filled from the columns it names (`UnknownTemplateColumn`
    /// if one is not in the header) and every column passes through.
    ///
    /// A record of more than `MAX_RECORD` bytes, or one inside whose quoted cell the input
    /// ends (a stray quote), is damage: an `invalid_url` row naming its line, and the lines
    /// after its first are read again as records of their own (a damaged header is
    /// `CsvInputError::Read`).
    pub fn csv(
        reader: Box<dyn Read + Send>,
        url_column: Option<&str>,
        delimiter: Option<u8>,
        template: Option<&Template>,
    ) -> Result<(Source, Vec<String>), CsvInputError> {
        Source::csv_capped(reader, url_column, delimiter, template, MAX_RECORD)
    }

    /// `csv` with records of at most `cap` bytes.
    fn csv_capped(
        reader: Box<dyn Read + Send>,
        url_column: Option<&str>,
        delimiter: Option<u8>,
        template: Option<&Template>,
        cap: usize,
    ) -> Result<(Source, Vec<String>), CsvInputError> {
        let (reader, delimiter) = match delimiter {
            Some(d) => (reader, d),
            None => {
                // The header line (or its first `SNIFF_BYTES`), however many reads it takes:
                // a pipe may hand it over a few bytes at a time.
                let mut reader = reader;
                let head = read_head(&mut reader).map_err(CsvInputError::Read)?;
                let d = sniff_delimiter(&head);
                let reader: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(reader));
                (reader, d)
            }
        };
        let (hooked, pending) = Source::hooked(reader);
        let head = io::BufReader::with_capacity(SNIFF_BYTES, hooked);
        let mut records = Records::new(head, delimiter, cap);
        let header: Vec<String> = match records.next_record().map_err(CsvInputError::Read)? {
            None => Vec::new(),
            Some(Step::Damaged(damage)) => {
                let why = damage_message(damage, records.line(), records.cap());
                return Err(CsvInputError::Read(io::Error::new(
                    io::ErrorKind::InvalidData,
                    why,
                )));
            }
            Some(Step::Record) => (0..records.len())
                .map(|i| {
                    let h = records.get(i).expect("a cell of the record");
                    String::from_utf8_lossy(h).trim().to_string()
                })
                .collect(),
        };
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(CsvInputError::NoHeader);
        }
        if let Some(template) = template {
            let bound =
                template
                    .bind(&header)
                    .map_err(|name| CsvInputError::UnknownTemplateColumn {
                        name,
                        columns: header.clone(),
                    })?;
            let rows = CsvRows {
                records,
                url: UrlFrom::Template(bound),
                columns: header.len(),
                row: 0,
                peeked: None,
            };
            let source = Source {
                kind: SourceKind::Csv(Box::new(rows)),
                pending,
                shard: None,
            };
            return Ok((source, header));
        }
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let url_at = match url_column {
            Some(name) => find(name).ok_or_else(|| CsvInputError::UnknownUrlColumn {
                name: name.to_string(),
                columns: header.clone(),
            })?,
            None => find("url").unwrap_or(0),
        };
        // Without a url column, the first must hold URLs: its first cell is looked at (and
        // kept for the first job). A damaged first record tells nothing: it is kept too.
        let mut peeked = None;
        if url_column.is_none() && find("url").is_none() {
            peeked = records.next_record().map_err(CsvInputError::Read)?;
            if peeked == Some(Step::Record) && !records.get(0).is_some_and(looks_like_url) {
                return Err(CsvInputError::NoUrlColumn { columns: header });
            }
        }
        let passthrough = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != url_at)
            .map(|(_, h)| h.clone())
            .collect();
        let rows = CsvRows {
            records,
            url: UrlFrom::Column {
                at: url_at,
                name: shown_name(&header[url_at]),
            },
            columns: header.len(),
            row: 0,
            peeked,
        };
        Ok((
            Source {
                kind: SourceKind::Csv(Box::new(rows)),
                pending,
                shard: None,
            },
            passthrough,
        ))
    }

    /// Jobs already made (`--retry-failed` makes them from a report's rows).
    pub fn jobs(jobs: Vec<Job>) -> Source {
        let (_, pending) = Source::hooked(Box::new(std::io::empty()));
        Source {
            kind: SourceKind::Jobs(jobs.into_iter()),
            pending,
            shard: None,
        }
    }

    /// Jobs sent on a channel (a `--queue` worker's reader), until its sender is dropped.
    pub fn channel(jobs: mpsc::Receiver<Job>) -> Source {
        let (_, pending) = Source::hooked(Box::new(std::io::empty()));
        Source {
            kind: SourceKind::Channel(jobs),
            pending,
            shard: None,
        }
    }

    /// What an index counts: lines of text, or data rows of a CSV.
    pub fn unit(&self) -> &'static str {
        match self.kind {
            SourceKind::Lines(_) => "line",
            SourceKind::Csv(_) | SourceKind::Jobs(_) | SourceKind::Channel(_) => "row",
        }
    }

    /// The next job; `None` at the end of the input.
    pub fn next_job(&mut self) -> io::Result<Option<Job>> {
        loop {
            let job = match &mut self.kind {
                SourceKind::Lines(lines) => lines.next_job()?,
                SourceKind::Csv(rows) => rows.next_job()?,
                SourceKind::Jobs(jobs) => jobs.next(),
                SourceKind::Channel(jobs) => match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // The jobs so far must not wait for the next.
                        self.pending.lock().expect("input lock").hand_on();
                        jobs.blocking_recv()
                    }
                },
            };
            match (job, self.shard) {
                (Some(job), Some(shard)) if !shard.takes(job.index) => continue,
                (job, _) => return Ok(job),
            }
        }
    }

    /// The bytes a CSV source's reader holds in its buffers, for tests of the memory bound.
    #[cfg(test)]
    fn held(&self) -> usize {
        match &self.kind {
            SourceKind::Csv(rows) => rows.records.held(),
            _ => 0,
        }
    }

    /// Only `shard`'s lines from now on (`--shard`).
    pub fn with_shard(mut self, shard: Option<Shard>) -> Source {
        self.shard = shard;
        self
    }
}

impl CsvRows {
    fn next_job(&mut self) -> io::Result<Option<Job>> {
        let step = match self.peeked.take() {
            Some(step) => step,
            None => match self.records.next_record()? {
                Some(step) => step,
                None => return Ok(None),
            },
        };
        self.row += 1;
        let url_at = match &self.url {
            UrlFrom::Column { at, .. } => Some(*at),
            UrlFrom::Template(_) => None,
        };
        // Rows shorter than the header pass through empty cells.
        let passed = self.columns.saturating_sub(usize::from(url_at.is_some()));
        if let Step::Damaged(damage) = step {
            // The damaged record's first line stands for it; the lines after it are rows of
            // their own.
            let line = String::from_utf8_lossy(self.records.first_line());
            let line = line.trim();
            let url = match line.char_indices().nth(SHOWN_OF_LONG_LINE) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line.to_string(),
            };
            let why = damage_message(damage, self.records.line(), self.records.cap());
            return Ok(Some(Job {
                index: self.row,
                url,
                target: Err(Failure::new(ErrorKind::InvalidUrl, why)),
                passthrough: vec![String::new(); passed],
            }));
        }
        let records = &self.records;
        let cell = |i: usize| {
            records
                .get(i)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default()
        };
        let (url, empty) = match &self.url {
            UrlFrom::Column { at, name } => (
                cell(*at).trim().to_string(),
                format!("no URL in column \"{name}\""),
            ),
            UrlFrom::Template(bound) => match bound.fill(|i| records.get(i)) {
                Ok(url) => (url, String::new()),
                Err(why) => (String::new(), why),
            },
        };
        let width = records.len().max(url_at.map_or(0, |at| at + 1));
        let mut passthrough: Vec<String> = (0..width)
            .filter(|i| Some(*i) != url_at)
            .map(cell)
            .collect();
        passthrough.resize(passed.max(passthrough.len()), String::new());
        let target = if url.is_empty() {
            Err(Failure::new(ErrorKind::InvalidUrl, empty))
        } else if url.len() > MAX_LINE {
            Err(Failure::new(
                ErrorKind::InvalidUrl,
                "URL cell longer than 64 KiB",
            ))
        } else {
            parse_target(&url)
        };
        Ok(Some(Job {
            index: self.row,
            url,
            target,
            passthrough,
        }))
    }
}

/// The `error` cell of a damaged record of a CSV input that starts on `line`.
fn damage_message(damage: Damage, line: u64, cap: usize) -> String {
    match damage {
        Damage::OpenQuote => {
            format!("line {line}: a quoted cell opened here never closes (a stray quote?)")
        }
        Damage::TooLong => format!("line {line}: a record longer than {cap} bytes"),
    }
}

/// Streams `source` to the pool in batches on a dedicated thread until the input ends,
/// `stop` is cancelled or the pool stops listening. (One wake-up of the pool per batch, not
/// per job; a batch goes out early whenever the next read may block, so a slow pipe still
/// has its lines fetched at once.)
///
/// With `skip` (a resumed report), each job is checked against the report first: jobs
/// already in it are not sent, and `progress.checked` is set once the input is known to be
/// the report's; nothing may leave before (see `Skip`; the pool holds its scheduler shut).
pub fn spawn_reader(
    mut source: Source,
    batches: mpsc::Sender<Vec<Job>>,
    mut skip: Option<Skip>,
    stop: CancellationToken,
    progress: Arc<InputProgress>,
) -> std::thread::JoinHandle<Result<(), ReadError>> {
    std::thread::Builder::new()
        .name("ratefetch-input".into())
        .spawn(move || {
            let pending = source.pending.clone();
            pending.lock().expect("input lock").tx = Some(batches);
            loop {
                let next = source.next_job()?;
                if pending.lock().expect("input lock").closed || stop.is_cancelled() {
                    // The pool is stopping.
                    return Ok(());
                }
                let Some(job) = next else { break };
                let job = match &mut skip {
                    None => job,
                    Some(skip) => match skip.check(job, source.unit())? {
                        Verdict::Done => continue,
                        Verdict::Keep(job) => {
                            if skip.passed() {
                                progress.checked.store(true, Ordering::Release);
                            }
                            job
                        }
                    },
                };
                progress.jobs.fetch_add(1, Ordering::Relaxed);
                let mut p = pending.lock().expect("input lock");
                p.batch.push(job);
                if p.batch.len() >= BATCH {
                    p.hand_on();
                }
            }
            if let Some(skip) = &mut skip {
                skip.finish()?;
            }
            progress.checked.store(true, Ordering::Release);
            let mut p = pending.lock().expect("input lock");
            p.hand_on();
            if !p.closed {
                progress.finished.store(true, Ordering::Release);
            }
            Ok(())
        })
        .expect("spawning the input thread")
}

/// Jobs per batch from the input thread to the pool.
pub const BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::resume::DoneSet;

    fn jobs(input: &[u8]) -> Vec<Job> {
        let mut r = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(j) = r.next_job().unwrap() {
            out.push(j);
        }
        out
    }

    fn kind(j: &Job) -> Option<ErrorKind> {
        j.target.as_ref().err().map(|f| f.kind)
    }

    #[test]
    fn parse_target_accepts_http_and_names_what_is_wrong() {
        assert!(parse_target("https://example.com/a").is_ok());
        let e = parse_target("example.com").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidUrl);
        assert_eq!(
            e.message,
            "missing scheme; did you mean https://example.com?"
        );
        assert_eq!(
            parse_target("ftp://x.org/f").unwrap_err().kind,
            ErrorKind::UnsupportedScheme
        );
        // A CSV cell may hold a line break: the message stays one line.
        assert_eq!(
            parse_target(".,http://0/\n!").unwrap_err().message,
            "not an absolute URL (expected http:// or https://)"
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped_but_counted() {
        let js = jobs(b"http://a.test/1\n\n# note\n   \nhttp://a.test/5\n");
        let idx: Vec<u64> = js.iter().map(|j| j.index).collect();
        assert_eq!(idx, [1, 5]);
    }

    #[test]
    fn crlf_bom_and_missing_final_newline_are_tolerated() {
        let js = jobs(b"\xEF\xBB\xBFhttp://a.test/1\r\n  http://a.test/2  \r\nhttp://a.test/3");
        let urls: Vec<&str> = js.iter().map(|j| j.url.as_str()).collect();
        assert_eq!(
            urls,
            ["http://a.test/1", "http://a.test/2", "http://a.test/3"]
        );
        assert!(js.iter().all(|j| j.target.is_ok()));
    }

    #[test]
    fn bad_lines_become_jobs_with_the_right_kind() {
        let js = jobs(b"example.com\nftp://x.test/f\nfile:///etc/passwd\nnot a url\nhttp://\nlocalhost:8080/x\nhttp://ok.test/\n");
        let kinds: Vec<Option<ErrorKind>> = js.iter().map(kind).collect();
        use ErrorKind::*;
        assert_eq!(
            kinds,
            [
                Some(InvalidUrl),
                Some(UnsupportedScheme),
                Some(UnsupportedScheme),
                Some(InvalidUrl),
                Some(InvalidUrl),
                Some(InvalidUrl),
                None
            ]
        );
        assert_eq!(
            js[0].target.as_ref().unwrap_err().message,
            "missing scheme; did you mean https://example.com?"
        );
        assert_eq!(
            js[5].target.as_ref().unwrap_err().message,
            "missing scheme; did you mean https://localhost:8080/x?"
        );
    }

    #[test]
    fn non_utf8_line_is_an_invalid_url_row() {
        let js = jobs(b"http://a.test/\xff\xfe\nhttp://b.test/\n");
        assert_eq!(js.len(), 2);
        assert_eq!(kind(&js[0]), Some(ErrorKind::InvalidUrl));
        assert!(js[0].target.as_ref().unwrap_err().message.contains("UTF-8"));
        assert_eq!(kind(&js[1]), None);
    }

    #[test]
    fn megabyte_line_is_an_invalid_url_row_with_bounded_memory() {
        let mut input = b"http://a.test/".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 << 20));
        input.extend_from_slice(b"\nhttp://b.test/\n");
        let mut r = LineReader::new(&input[..]);
        let long = r.next_job().unwrap().unwrap();
        assert_eq!(kind(&long), Some(ErrorKind::InvalidUrl));
        assert!(long.url.len() < 1024, "the url cell is cut");
        assert!(
            r.line.capacity() <= 2 * MAX_LINE,
            "held {} bytes",
            r.line.capacity()
        );
        let next = r.next_job().unwrap().unwrap();
        assert_eq!((next.index, next.url.as_str()), (2, "http://b.test/"));
    }

    /// Runs the reader over `input` resuming a report that holds `set`: its result, the
    /// indices it sent, and whether it declared the input checked.
    fn read_all(input: &'static [u8], set: DoneSet) -> (Result<(), ReadError>, Vec<u64>, bool) {
        let (tx, mut rx) = mpsc::channel(64);
        let skip = Skip::new(set, Format::Csv);
        let progress = Arc::new(InputProgress::default());
        let t = spawn_reader(
            Source::text(Box::new(input), None),
            tx,
            Some(skip),
            CancellationToken::new(),
            progress.clone(),
        );
        let result = t.join().unwrap();
        let sent = std::iter::from_fn(|| rx.try_recv().ok())
            .flatten()
            .map(|j| j.index)
            .collect();
        (result, sent, progress.checked.load(Ordering::Acquire))
    }

    /// The jobs read before the check may reach the (held) scheduler; what must not happen is
    /// the input being declared checked when it is not the report's.
    #[test]
    fn resume_declares_the_input_checked_only_when_it_is_the_reports() {
        let mut set = DoneSet::default();
        set.insert(3, "http://a.test/3");
        // Line 3 differs.
        let (result, _, checked) = read_all(
            b"http://a.test/1\nhttp://a.test/2\nhttp://b.test/3\n",
            set.clone(),
        );
        let err = result.unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(!checked);
        // A shorter input than the report is refused too.
        let (result, _, checked) = read_all(b"http://a.test/1\n", set.clone());
        assert!(result.unwrap_err().to_string().contains("1 rows"));
        assert!(!checked);
        // The report's line 2 is now a comment: refused.
        let mut set2 = DoneSet::default();
        set2.insert(2, "http://a.test/2");
        let (result, _, checked) = read_all(b"http://a.test/1\n# gone\nhttp://a.test/3\n", set2);
        assert!(result.is_err());
        assert!(!checked);
        // The same input: checked; the jobs not done go out, the done one does not.
        let (result, sent, checked) = read_all(
            b"http://a.test/1\nhttp://a.test/2\nhttp://a.test/3\nhttp://a.test/4\n",
            set,
        );
        result.unwrap();
        assert!(checked);
        assert_eq!(sent, [1, 2, 4]);
    }

    fn csv_jobs(input: &'static [u8], url_column: Option<&str>) -> (Vec<String>, Vec<Job>) {
        let (mut source, pass) = Source::csv(Box::new(input), url_column, None, None).unwrap();
        let jobs = std::iter::from_fn(|| source.next_job().unwrap()).collect();
        (pass, jobs)
    }

    #[test]
    fn csv_input_finds_the_url_column_and_passes_the_rest_through() {
        let input = b"\xEF\xBB\xBFsku,URL,note\nA1,http://a.test/1,\"multi\nline, quoted\"\nB2,,empty url\nC3,http://a.test/3\n";
        let (pass, jobs) = csv_jobs(input, None);
        assert_eq!(pass, ["sku", "note"]);
        let idx: Vec<u64> = jobs.iter().map(|j| j.index).collect();
        assert_eq!(idx, [1, 2, 3], "index is the data row number");
        assert_eq!(jobs[0].url, "http://a.test/1");
        assert_eq!(jobs[0].passthrough, ["A1", "multi\nline, quoted"]);
        assert_eq!(kind(&jobs[1]), Some(ErrorKind::InvalidUrl));
        assert!(jobs[1].target.as_ref().unwrap_err().message.contains("URL"));
        assert_eq!(
            jobs[2].passthrough,
            ["C3", ""],
            "a short row passes empty cells"
        );
    }

    #[test]
    fn the_separator_is_the_most_frequent_outside_quotes_in_the_header_line() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1;2;3;4;5\n"), b',');
        assert_eq!(sniff_delimiter(b"\xef\xbb\xbfsku;name;url\r\n"), b';');
        assert_eq!(sniff_delimiter(b"sku\tname\turl"), b'\t');
        assert_eq!(sniff_delimiter(b"\"a,b,c\"|d|e\n"), b'|');
        assert_eq!(sniff_delimiter(b"url\n"), b',');
        assert_eq!(sniff_delimiter(b"a;b,c\n"), b',', "a tie goes to the comma");
    }

    #[test]
    fn csv_url_column_by_name_else_first() {
        let (pass, jobs) = csv_jobs(b"link,title\nhttp://a.test/,T\n", None);
        assert_eq!(
            (pass, jobs[0].url.as_str()),
            (vec!["title".to_string()], "http://a.test/")
        );
        let (pass, jobs) = csv_jobs(b"id,Page\n7,http://b.test/\n", Some("page"));
        assert_eq!(
            (pass, jobs[0].url.as_str()),
            (vec!["id".to_string()], "http://b.test/")
        );
        let err = Source::csv(Box::new(&b"id,page\n"[..]), Some("href"), None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"href\"") && err.contains("id,page"), "{err}");
    }

    /// Issue 19: a binary header was echoed raw (escape bytes) in the `--url-column` error.
    #[test]
    fn a_binary_header_is_escaped_and_cut_in_the_url_column_message() {
        let input: &'static [u8] =
            b"a\x1b[31mred\x07,b\x00c,\xff,zero\xe2\x80\x8bwidth\nhttp://x.test/,1,2,3\n";
        let err = Source::csv(Box::new(input), Some("href"), None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(!err.chars().any(|c| c.is_control()), "{err:?}");
        assert!(
            err.ends_with(r"(columns: a\u{1b}[31mred\u{7},b\u{0}c,�,zero\u{200b}width)"),
            "{err}"
        );
        // The same for the header of the other messages.
        let err = Source::csv(Box::new(&b"\x1b[2J\x07\nnot a url\n"[..]), None, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(r"(columns: \u{1b}[2J\u{7})"), "{err}");
    }

    #[test]
    fn a_header_of_many_long_names_is_cut_in_messages() {
        let mut header = vec!["x".repeat(100_000)];
        header.extend((0..100_000).map(|i| format!("c{i}")));
        let mut input = header.join(",").into_bytes();
        input.extend_from_slice(b"\n1,2\n");
        let err = Source::csv(Box::new(io::Cursor::new(input)), Some("href"), None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.len() < 1000, "{} bytes: {err}", err.len());
        assert!(err.contains(&format!("{}…,c0,", "x".repeat(64))), "{err}");
        assert!(err.ends_with(",c18,… 100001 in all)"), "{err}");
    }

    fn error(j: &Job) -> &str {
        &j.target.as_ref().unwrap_err().message
    }

    /// Issue 19: a quote that never closed took the rest of the input into one cell, silently.
    #[test]
    fn a_stray_quote_is_one_error_row_and_the_lines_after_it_are_rows_of_their_own() {
        let input = b"url,note\nhttp://h/1,ok\nhttp://h/2,\"oops\nhttp://h/3,x\r\n\nhttp://h/4,y";
        let (pass, jobs) = csv_jobs(input, None);
        assert_eq!(pass, ["note"]);
        let rows: Vec<(u64, &str, &[String])> = jobs
            .iter()
            .map(|j| (j.index, j.url.as_str(), &j.passthrough[..]))
            .collect();
        let [ok, empty, x, y] = [["ok"], [""], ["x"], ["y"]].map(|c| c.map(String::from));
        assert_eq!(
            rows,
            [
                (1, "http://h/1", &ok[..]),
                (2, "http://h/2,\"oops", &empty[..]),
                (3, "http://h/3", &x[..]),
                (4, "http://h/4", &y[..]),
            ]
        );
        assert_eq!(kind(&jobs[1]), Some(ErrorKind::InvalidUrl));
        assert_eq!(
            error(&jobs[1]),
            "line 3: a quoted cell opened here never closes (a stray quote?)"
        );
        assert!([&jobs[0], &jobs[2], &jobs[3]]
            .iter()
            .all(|j| j.target.is_ok()));
        // A quote that opens on the last line, or in the URL cell, is the same.
        let (_, jobs) = csv_jobs(b"url\nhttp://h/1\n\"http://h/2\n", None);
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            error(&jobs[1]),
            "line 3: a quoted cell opened here never closes (a stray quote?)"
        );
        // Quotes that close, line breaks in them included, are data as before.
        let (_, jobs) = csv_jobs(
            b"url,note\nhttp://h/1,\"a\nb\"\nhttp://h/2,\"\"\"c\"\"\"",
            None,
        );
        assert_eq!(jobs[0].passthrough, ["a\nb"]);
        assert_eq!(jobs[1].passthrough, ["\"c\""]);
        assert!(jobs.iter().all(|j| j.target.is_ok()));
    }

    #[test]
    fn a_header_whose_quote_never_closes_is_refused_naming_its_line() {
        let err = Source::csv(
            Box::new(&b"\n\nurl,\"note\nhttp://h/1,x\n"[..]),
            None,
            None,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            err,
            "cannot read the CSV header: line 3: a quoted cell opened here never closes (a stray quote?)"
        );
    }

    /// Issue 19: one record held the whole rest of the input.
    #[test]
    fn a_record_over_the_cap_is_one_error_row_and_memory_stays_bounded() {
        // One line of three times the cap, then a row.
        let mut input = b"url,note\nhttp://h/1,".to_vec();
        input.resize(input.len() + 3 * MAX_RECORD, b'n');
        input.extend_from_slice(b"\nhttp://h/2,ok\n");
        let (mut source, _) =
            Source::csv(Box::new(io::Cursor::new(input)), None, None, None).unwrap();
        let long = source.next_job().unwrap().unwrap();
        assert_eq!((long.index, kind(&long)), (1, Some(ErrorKind::InvalidUrl)));
        assert_eq!(error(&long), "line 2: a record longer than 16777216 bytes");
        assert!(long.url.len() < 1024, "the url cell is cut");
        let bound = 3 * MAX_RECORD + (1 << 20);
        assert!(source.held() <= bound, "held {} bytes", source.held());
        let next = source.next_job().unwrap().unwrap();
        assert_eq!((next.index, next.url.as_str()), (2, "http://h/2"));
        assert!(source.next_job().unwrap().is_none());

        // A stray quote, then twice the cap of rows: each row after its line is still a row.
        let mut input = b"url,note\nhttp://h/0,\"oops\n".to_vec();
        let note = "n".repeat(60_000);
        let rows = 2 * MAX_RECORD / note.len();
        for i in 1..=rows {
            input.extend_from_slice(format!("http://h/{i},{note}\n").as_bytes());
        }
        let (mut source, _) =
            Source::csv(Box::new(io::Cursor::new(input)), None, None, None).unwrap();
        let damaged = source.next_job().unwrap().unwrap();
        assert_eq!(
            error(&damaged),
            "line 2: a record longer than 16777216 bytes"
        );
        let mut most = source.held();
        for i in 1..=rows {
            let job = source.next_job().unwrap().unwrap();
            assert_eq!(job.url, format!("http://h/{i}"));
            assert_eq!(job.index, i as u64 + 1);
            most = most.max(source.held());
        }
        assert!(source.next_job().unwrap().is_none());
        assert!(most <= bound, "held {most} bytes");
    }

    #[test]
    fn reader_thread_refuses_a_line_that_differs_from_the_report() {
        let (tx, _rx) = mpsc::channel(4);
        let mut set = DoneSet::default();
        set.insert(1, "http://a.test/1");
        let input: &'static [u8] = b"http://other.test/\n";
        let t = spawn_reader(
            Source::text(Box::new(input), None),
            tx,
            Some(Skip::new(set, Format::Csv)),
            CancellationToken::new(),
            Arc::new(InputProgress::default()),
        );
        assert!(t.join().unwrap().is_err());
    }

    #[test]
    fn reader_thread_skips_done_indices_and_reports_the_total() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut done = DoneSet::default();
        done.insert(2, "http://a.test/2");
        let progress = Arc::new(InputProgress::default());
        let input: &'static [u8] = b"http://a.test/1\nhttp://a.test/2\nhttp://a.test/3\n";
        let t = spawn_reader(
            Source::text(Box::new(input), None),
            tx,
            Some(Skip::new(done, Format::Csv)),
            CancellationToken::new(),
            progress.clone(),
        );
        let got: Vec<u64> = std::iter::from_fn(|| rx.blocking_recv())
            .flatten()
            .map(|j| j.index)
            .collect();
        t.join().unwrap().unwrap();
        assert_eq!(got, [1, 3]);
        assert_eq!(progress.jobs.load(Ordering::Relaxed), 2);
        assert!(progress.finished.load(Ordering::Acquire));
    }
}

/// Fuzzing of the input readers inside `cargo test` (issue 19): arbitrary bytes, non-UTF-8,
/// NULs, CR, very long lines, unbalanced quotes, many columns, read in arbitrary chunks.
/// Nothing panics; every line (text) or record (CSV) that is not blank or a comment becomes
/// exactly one job, a damaged one an error row with its line number as its index; a long line
/// holds at most `MAX_LINE` bytes.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Hands out `data` in the chunk sizes given (cycled), with an `Interrupted` error before
    /// every third read, as a pipe or a signal may.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        reads: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.reads.is_multiple_of(3) {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let size = self.sizes[self.reads % self.sizes.len()];
            let n = size.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Found by this fuzz: the separator was sniffed from the first read alone, which a pipe
    /// may make one byte long.
    #[test]
    fn the_separator_is_sniffed_from_the_whole_header_line_however_it_is_read() {
        let mut data = b"id;".to_vec();
        data.resize(70_000, b'z');
        data.extend_from_slice(b";url\n1;x;http://a.test/1\n");
        let reader = Chunked {
            data,
            at: 0,
            sizes: vec![1],
            reads: 0,
        };
        let (mut source, pass) = Source::csv(Box::new(reader), None, None, None).unwrap();
        assert_eq!(pass.len(), 2, "three columns: id, zzz…, url");
        let job = source.next_job().unwrap().unwrap();
        assert_eq!(job.url, "http://a.test/1");
    }

    /// One line of a text input, its end not included.
    fn line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[ \t]{0,2}https?://[a-z0-9.]{1,12}(:[0-9]{1,5})?/[ -~]{0,20}[ \t\r]{0,2}"
                .prop_map(String::into_bytes),
            2 => prop::collection::vec(any::<u8>(), 0..40),
            1 => Just(Vec::new()),
            1 => "[ \t\r]{0,3}#[ -~]{0,10}".prop_map(String::into_bytes),
            1 => prop::collection::vec(prop_oneof![Just(0u8), Just(b'\r'), 0x80u8..], 1..8),
            1 => (MAX_LINE - 2..MAX_LINE + 2, prop_oneof![Just(b'x'), Just(0xff), Just(b' ')])
                .prop_map(|(n, b)| {
                    let mut l = b"http://a.test/".to_vec();
                    l.resize(n, b);
                    l
                }),
            1 => (200_000..300_000usize).prop_map(|n| vec![b'y'; n]),
        ]
    }

    /// A text input: lines ended by LF or CRLF, maybe a BOM, maybe no final line end.
    fn text_input() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop::collection::vec((line(), any::<bool>()), 0..12),
            any::<bool>(),
        )
            .prop_map(|(bom, lines, last_end)| {
                let mut out = Vec::new();
                if bom {
                    out.extend_from_slice(b"\xEF\xBB\xBF");
                }
                let n = lines.len();
                for (i, (line, crlf)) in lines.into_iter().enumerate() {
                    out.extend_from_slice(&line);
                    if i + 1 < n || last_end {
                        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                    }
                }
                out
            })
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Url(String),
        NotUtf8,
        TooLong,
    }

    /// The contract, restated: the 1-based number of each line that is not blank or a
    /// comment, and what it becomes. (A line's length counts its `\n`.)
    fn expected_lines(input: &[u8]) -> Vec<(u64, Expect)> {
        let mut out = Vec::new();
        let mut rest = input;
        let mut no = 0;
        while !rest.is_empty() {
            let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let mut line = &rest[..len];
            rest = &rest[len..];
            no += 1;
            if no == 1 {
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            if len > MAX_LINE {
                out.push((no, Expect::TooLong));
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            match std::str::from_utf8(line) {
                Ok(_) => out.push((no, Expect::Url(text.to_string()))),
                Err(_) => out.push((no, Expect::NotUtf8)),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn every_text_line_is_one_job_or_skipped_and_memory_stays_bounded(
            input in text_input(),
            sizes in prop::collection::vec(1usize..100_000, 1..5),
            templated in any::<bool>(),
        ) {
            let want = expected_lines(&input);
            let template = templated.then(|| Template::parse("http://t.test/?q={}").unwrap());
            let reader = Chunked { data: input, at: 0, sizes, reads: 0 };
            let mut r = LineReader::new(reader).with_template(template.clone());
            let mut got = Vec::new();
            while let Some(job) = r.next_job().expect("an in-memory input reads") {
                prop_assert!(r.line.capacity() <= 2 * MAX_LINE, "held {}", r.line.capacity());
                // A template percent-encodes the line: a byte may become 9 (`%EF%BF%BD`, the
                // replacement of a byte that is not UTF-8).
                prop_assert!(job.url.len() <= 9 * MAX_LINE + 64, "url of {}", job.url.len());
                let expect = match &job.target {
                    Err(f) if f.message.contains("not a URL") => Expect::TooLong,
                    Err(f) if f.message.contains("UTF-8") => Expect::NotUtf8,
                    _ => match &template {
                        Some(_) => Expect::Url(job.passthrough[0].clone()),
                        None => Expect::Url(job.url.clone()),
                    },
                };
                if expect != Expect::NotUtf8 && expect != Expect::TooLong {
                    if let (Some(t), Expect::Url(text)) = (&template, &expect) {
                        prop_assert_eq!(&job.url, &t.fill_line(text));
                    }
                } else {
                    prop_assert_eq!(job.target.as_ref().unwrap_err().kind, ErrorKind::InvalidUrl);
                }
                prop_assert_eq!(job.passthrough.len(), usize::from(template.is_some()));
                got.push((job.index, expect));
            }
            prop_assert_eq!(got, want);
        }
    }

    /// One cell of a CSV input as written (quotes included, balanced or not).
    fn cell() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "https?://[a-z0-9.]{1,10}/[a-z0-9/?=&]{0,12}".prop_map(String::into_bytes),
            3 => "[ -~]{0,12}".prop_map(String::into_bytes),
            2 => prop::collection::vec(any::<u8>(), 0..16),
            1 => "\"[ -~\r\n,;|\t]{0,12}\"".prop_map(String::into_bytes),
            1 => "\"[ -~]{0,8}".prop_map(String::into_bytes),
            1 => Just(b"a\"b\"\"c".to_vec()),
            1 => (MAX_LINE - 2..MAX_LINE + 2).prop_map(|n| {
                let mut c = b"http://a.test/".to_vec();
                c.resize(n, b'z');
                c
            }),
        ]
    }

    /// A header: a few cells, or many columns (one of them maybe `url`).
    fn header() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop_oneof![
            4 => prop::collection::vec(cell(), 1..8),
            1 => (500..20_000usize, any::<bool>()).prop_map(|(n, url)| {
                let mut names: Vec<Vec<u8>> =
                    (0..n).map(|i| format!("c{i}").into_bytes()).collect();
                if url {
                    names[n / 2] = b"URL".to_vec();
                }
                names
            }),
        ]
    }

    /// A CSV input and how it is read: the bytes, `--delimiter`, `--url-column`,
    /// `--url-template`.
    fn csv_case() -> impl Strategy<Value = (Vec<u8>, Option<u8>, Option<String>, Option<String>)> {
        (
            header(),
            prop::collection::vec(prop::collection::vec(cell(), 0..10), 0..8),
            prop::sample::select(DELIMITERS.to_vec()),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop_oneof![
                Just("url".to_string()),
                Just("c7".to_string()),
                "[ -~]{0,4}",
            ]),
            prop::option::of(prop_oneof![
                Just("http://t.test/{url}".to_string()),
                Just("http://t.test/{c1}?{c3}".to_string()),
            ]),
        )
            .prop_map(|(header, rows, d, given, crlf, column, template)| {
                let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut out = Vec::new();
                for row in std::iter::once(header).chain(rows) {
                    out.extend(row.join(&d));
                    out.extend_from_slice(end);
                }
                // A template makes the URL itself: no --url-column with it.
                let column = column.filter(|_| template.is_none());
                (out, given.then_some(d), column, template)
            })
    }

    /// What a record of a CSV input becomes.
    #[derive(Debug, PartialEq)]
    enum Rec {
        Whole,
        /// A damaged record, which starts on this line.
        OpenQuote(u64),
        TooLong(u64),
    }

    /// The contract, restated with the csv crate over slices of the input: the header and
    /// the records after it, each starting past the line ends before it (blank lines). A
    /// record that the input ends inside a quoted cell of, or whose bytes (its line end not
    /// counted) are more than `cap`, is damage, and reading starts again, a new reader on the
    /// rest of the input, at the line after the record's first.
    fn expected_records(input: &[u8], delimiter: u8, cap: usize) -> Vec<Rec> {
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let mut out = Vec::new();
        // Where the current reader starts, and its line.
        let (mut from, mut line) = (0, 1);
        'parts: while from < input.len() {
            let part = &input[from..];
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(part);
            let mut record = csv::ByteRecord::new();
            loop {
                let mut start = rdr.position().byte() as usize;
                while part.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                    start += 1;
                }
                if !rdr.read_byte_record(&mut record).expect("in memory") {
                    break 'parts;
                }
                let end = rdr.position().byte() as usize;
                let bytes = &part[start..end];
                let open = end == part.len() && quote_open(bytes, delimiter);
                let terminated = !open && matches!(bytes.last(), Some(b'\r' | b'\n'));
                let on = line + memchr::memchr_iter(b'\n', &part[..start]).count() as u64;
                let damage = if bytes.len() - usize::from(terminated) > cap {
                    Rec::TooLong(on)
                } else if open {
                    Rec::OpenQuote(on)
                } else {
                    out.push(Rec::Whole);
                    continue;
                };
                out.push(damage);
                match memchr::memchr(b'\n', &part[start..]) {
                    Some(i) => (from, line) = (from + start + i + 1, on + 1),
                    None => break 'parts,
                }
                continue 'parts;
            }
        }
        out
    }

    /// Whether `record`, the last of an input, ends inside a quoted cell: then a line end and
    /// a line after it are more of its cell, and the csv crate reads one record where it
    /// would read two.
    fn quote_open(record: &[u8], delimiter: u8) -> bool {
        let mut probe = record.to_vec();
        probe.extend_from_slice(b"\nx\n");
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .delimiter(delimiter)
            .from_reader(&probe[..]);
        rdr.byte_records().count() == 1
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn every_csv_record_is_one_job_and_a_refusal_is_one_short_line(
            (input, delimiter, column, template) in csv_case(),
            cap in prop_oneof![2 => Just(MAX_RECORD), 1 => 8usize..400, 1 => 1000usize..100_000],
            sizes in prop::collection::vec(1usize..100_000, 1..5),
        ) {
            let sniffed = delimiter.unwrap_or_else(|| {
                sniff_delimiter(&input[..input.len().min(SNIFF_BYTES)])
            });
            let mut want = expected_records(&input, sniffed, cap);
            let header_damaged = !want.is_empty() && want.remove(0) != Rec::Whole;
            let template = template.map(|t| Template::parse(&t).unwrap());
            let opened = Source::csv_capped(
                Box::new(Chunked { data: input, at: 0, sizes, reads: 0 }),
                column.as_deref(),
                delimiter,
                template.as_ref(),
                cap,
            );
            let (mut source, pass) = match opened {
                Ok(opened) => opened,
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(!message.chars().any(char::is_control), "{message:?}");
                    prop_assert!(message.len() < 4000, "{} bytes", message.len());
                    return Ok(());
                }
            };
            prop_assert!(!header_damaged, "a damaged header is refused");
            let mut got = Vec::new();
            while let Some(job) = source.next_job().expect("an in-memory input reads") {
                prop_assert_eq!(job.index, got.len() as u64 + 1, "jobs are numbered from 1");
                prop_assert!(job.passthrough.len() >= pass.len());
                prop_assert!(source.held() <= 3 * cap + 8 * (cap + 2) + (1 << 20));
                if job.url.len() > MAX_LINE {
                    prop_assert_eq!(job.target.as_ref().unwrap_err().kind, ErrorKind::InvalidUrl);
                }
                let rec = match &job.target {
                    Err(f) => {
                        prop_assert!(!f.message.contains('\n'), "{:?}", f.message);
                        let line = f.message.strip_prefix("line ").and_then(|m| {
                            m.split(':').next().and_then(|n| n.parse().ok())
                        });
                        match line {
                            Some(line) if f.message.ends_with("never closes (a stray quote?)") => {
                                Rec::OpenQuote(line)
                            }
                            Some(line)
                                if f.message.ends_with(&format!("a record longer than {cap} bytes")) =>
                            {
                                Rec::TooLong(line)
                            }
                            _ => Rec::Whole,
                        }
                    }
                    Ok(_) => Rec::Whole,
                };
                got.push(rec);
            }
            prop_assert_eq!(got, want, "one job per record, damage resynced");
        }

        #[test]
        fn the_separator_sniffed_from_any_bytes_is_one_of_the_four(
            head in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            prop_assert!(DELIMITERS.contains(&sniff_delimiter(&head)));
        }
    }
}
