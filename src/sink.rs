//! Sink: the only writer of the report. Writes the header, one row per outcome (CSV or
//! JSONL): during a run, a task encodes rows in batches and a thread of its own writes them
//! (`spawn`). Also the report's columns (`Std`, `Columns`). Reading an earlier report back
//! for `--resume` is `resume`'s.
//!
//! Cells keep their content, line breaks included (only `title` and `error` are one line
//! by design). In CSV a line break sits inside a quoted cell (RFC 4180), so a row may span
//! several lines: a row is whole when its terminating newline, outside quotes, has been
//! written, and a torn last row is found by parsing, not by looking for the last newline.
//! In JSONL, serde_json escapes line breaks, so every line is one row.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::config::{Config, Format};
use crate::job::Outcome;
use crate::progress::{InputProgress, Progress, Stats};
use crate::shutdown::Shutdown;

/// The twelve standard columns, in report order. A contract: scripts rely on the names and
/// the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Std {
    Index,
    Url,
    FinalUrl,
    Status,
    ErrorKind,
    Error,
    Attempts,
    ElapsedMs,
    Bytes,
    ContentType,
    Title,
    StartedAt,
}

impl Std {
    /// Every standard column, in report order.
    pub const ALL: [Std; 12] = [
        Std::Index,
        Std::Url,
        Std::FinalUrl,
        Std::Status,
        Std::ErrorKind,
        Std::Error,
        Std::Attempts,
        Std::ElapsedMs,
        Std::Bytes,
        Std::ContentType,
        Std::Title,
        Std::StartedAt,
    ];

    /// The column's name in the header (and its key in JSONL).
    pub const fn name(self) -> &'static str {
        match self {
            Std::Index => "index",
            Std::Url => "url",
            Std::FinalUrl => "final_url",
            Std::Status => "status",
            Std::ErrorKind => "error_kind",
            Std::Error => "error",
            Std::Attempts => "attempts",
            Std::ElapsedMs => "elapsed_ms",
            Std::Bytes => "bytes",
            Std::ContentType => "content_type",
            Std::Title => "title",
            Std::StartedAt => "started_at",
        }
    }
}

/// The names of the standard columns, in order (`Std::ALL`'s names).
pub const COLUMNS: [&str; 12] = {
    let mut names = [""; 12];
    let mut i = 0;
    while i < names.len() {
        names[i] = Std::ALL[i].name();
        i += 1;
    }
    names
};

/// The column `--save-bodies` adds.
pub const BODY_SHA256: &str = "body_sha256";

/// Whether `name` belongs to ratefetch (a standard column or `body_sha256`), so that an
/// `--extract` rule may not take it. The one list of reserved names.
pub fn is_reserved(name: &str) -> bool {
    COLUMNS.contains(&name) || name == BODY_SHA256
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

enum Encoding {
    // Boxed: the csv writer carries its state inline and would make every Sink large.
    Csv(Box<csv::Writer<Vec<u8>>>),
    Jsonl(Vec<u8>),
}

/// Encodes report rows (CSV or JSONL) into a buffer in memory; the buffer is taken whole
/// (`take_bytes`) and written elsewhere, so encoding never waits on I/O.
struct Encoder {
    enc: Encoding,
    columns: Columns,
    rows: u64,
    int: itoa::Buffer,
}

impl Encoder {
    fn new(format: Format, columns: Columns) -> Encoder {
        let enc = match format {
            Format::Csv => Encoding::Csv(Box::new(csv_writer())),
            Format::Jsonl => Encoding::Jsonl(Vec::with_capacity(64 * 1024)),
        };
        Encoder {
            enc,
            columns,
            rows: 0,
            int: itoa::Buffer::new(),
        }
    }

    /// Encodes the header row (CSV only: a JSONL row names its own keys).
    fn header(&mut self) -> io::Result<()> {
        if let Encoding::Csv(w) = &mut self.enc {
            // Passthrough names come from the input: they are cells like any other.
            let names: Vec<Cow<'_, str>> =
                self.columns.names().iter().map(|n| csv_text(n)).collect();
            w.write_record(names.iter().map(|n| n.as_bytes()))
                .map_err(csv_io)?;
        }
        Ok(())
    }

    /// Encodes one row.
    fn write(&mut self, o: &Outcome) -> io::Result<()> {
        match &mut self.enc {
            Encoding::Csv(w) => write_csv(w, &mut self.int, &self.columns, o).map_err(csv_io)?,
            Encoding::Jsonl(w) => write_jsonl(w, &mut self.int, &self.columns, o),
        }
        self.rows += 1;
        Ok(())
    }

    /// Bytes encoded and not yet taken.
    fn buffered(&mut self) -> usize {
        match &mut self.enc {
            Encoding::Csv(w) => {
                // Moves the csv writer's own small buffer into the Vec; cannot fail.
                let _ = w.flush();
                w.get_ref().len()
            }
            Encoding::Jsonl(v) => v.len(),
        }
    }

    /// Takes the encoded bytes, leaving an empty buffer.
    fn take_bytes(&mut self) -> Vec<u8> {
        match &mut self.enc {
            Encoding::Csv(w) => std::mem::replace(&mut **w, csv_writer())
                .into_inner()
                .expect("flushing into memory cannot fail"),
            Encoding::Jsonl(v) => std::mem::replace(v, Vec::with_capacity(64 * 1024)),
        }
    }
}

/// A report being written: its encoder and its output. A run hands it to `spawn`, which
/// gives the encoder to a task and the output to a writer thread of its own.
pub struct Sink {
    encoder: Encoder,
    out: Box<dyn Write + Send>,
    durable: Option<Durable>,
}

/// Tells which rows are on disk (a `--queue` worker acknowledges a job only then): after each
/// chunk is written, `file` (the report) is synced and the chunk's indices are sent on `done`.
/// It also counts the rows encoded so far on `finished` (a worker reads new jobs as its
/// earlier ones finish).
pub struct Durable {
    pub file: std::fs::File,
    pub done: mpsc::UnboundedSender<Vec<u64>>,
    pub finished: tokio::sync::watch::Sender<u64>,
}

impl Sink {
    /// A sink writing a fresh report (header included) to `out`. The header is written on
    /// the first `flush`.
    pub fn new(out: Box<dyn Write + Send>, format: Format, columns: Columns) -> io::Result<Sink> {
        let mut sink = Sink::without_header(out, format, columns);
        sink.encoder.header()?;
        Ok(sink)
    }

    /// A sink appending to a report that already has its header.
    pub fn without_header(out: Box<dyn Write + Send>, format: Format, columns: Columns) -> Sink {
        Sink {
            encoder: Encoder::new(format, columns),
            out,
            durable: None,
        }
    }

    /// The sink, telling `durable` which rows are on disk.
    pub fn with_durable(mut self, durable: Durable) -> Sink {
        self.durable = Some(durable);
        self
    }

    /// Encodes one row (the pipeline of `spawn` encodes without a `Sink`; tests use this).
    #[cfg(test)]
    pub fn write(&mut self, o: &Outcome) -> io::Result<()> {
        self.encoder.write(o)
    }

    /// Writes what is encoded to the output and flushes it.
    pub fn flush(&mut self) -> io::Result<()> {
        let bytes = self.encoder.take_bytes();
        self.out.write_all(&bytes)?;
        self.out.flush()
    }
}

/// Outcomes that may wait for the sink.
const QUEUE: usize = 4096;

/// Bytes of encoded rows handed to the writer thread at a time.
const CHUNK: usize = 64 * 1024;

/// The sink of a run at work (see `spawn`).
pub struct Running {
    encoder: tokio::task::JoinHandle<Stats>,
    writer: std::thread::JoinHandle<io::Result<()>>,
    shutdown: Shutdown,
}

/// Starts the sink of a run. Rows sent on the returned channel are encoded by a task, which
/// counts them and updates `progress`, and written by a thread of its own: a slow disk or a
/// full pipe blocks that thread, never the runtime. (Encoding in batches and writing 64 KiB
/// at a time is what keeps the sink ahead of the workers.) If the output fails, the run is
/// stopped and aborted: finishing more requests would only lose them.
pub fn spawn(
    sink: Sink,
    progress: Progress,
    input: Arc<InputProgress>,
    shutdown: Shutdown,
) -> (mpsc::Sender<Outcome>, Running) {
    let Sink {
        encoder,
        out,
        durable,
    } = sink;
    let (rows_tx, rows_rx) = mpsc::channel::<Outcome>(QUEUE);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(8);
    let finished = durable.as_ref().map(|d| d.finished.clone());
    let writer = spawn_writer(out, chunk_rx, durable, shutdown.clone());
    let encoder = tokio::spawn(encode_rows(
        encoder,
        finished,
        rows_rx,
        chunk_tx,
        progress,
        input,
        shutdown.clone(),
    ));
    let running = Running {
        encoder,
        writer,
        shutdown,
    };
    (rows_tx, running)
}

impl Running {
    /// Waits until every row sent is encoded and written, which is once every sender of the
    /// rows channel has been dropped. Returns the counters over the rows, and whether the
    /// output took them all. After an abort, a writer stuck on a stalled output (a paused
    /// pipe reader) is not waited for long.
    pub async fn finish(self) -> (Stats, io::Result<()>) {
        let stats = self.encoder.await.expect("the sink task does not panic");
        let writer = self.writer;
        let joined = tokio::task::spawn_blocking(move || {
            writer.join().expect("the writer thread does not panic")
        });
        let written = if self.shutdown.abort.is_cancelled() {
            match tokio::time::timeout(std::time::Duration::from_secs(2), joined).await {
                Ok(joined) => joined.expect("joining the writer thread"),
                Err(_) => Ok(()),
            }
        } else {
            joined.await.expect("joining the writer thread")
        };
        (stats, written)
    }
}

/// Encodes rows as they come, counts them, updates the progress display, and hands the
/// encoded bytes to the writer thread whenever 64 KiB are ready and at least once a second.
/// If the writer is gone (an output error), the run is stopped: finishing more requests
/// would only lose them.
async fn encode_rows(
    mut encoder: Encoder,
    finished: Option<tokio::sync::watch::Sender<u64>>,
    mut rows: mpsc::Receiver<Outcome>,
    chunks: mpsc::Sender<Chunk>,
    mut progress: Progress,
    input: Arc<InputProgress>,
    shutdown: Shutdown,
) -> Stats {
    let mut stats = Stats::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(256);
    let mut writer_alive = true;
    // The indices of the rows in the bytes not handed over yet (with a `Durable`).
    let mut written: Vec<u64> = Vec::new();
    let take = |encoder: &mut Encoder, written: &mut Vec<u64>| Chunk {
        bytes: encoder.take_bytes(),
        indices: std::mem::take(written),
    };
    loop {
        tokio::select! {
            n = rows.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                for row in batch.drain(..) {
                    encoder.write(&row).expect("encoding into memory cannot fail");
                    stats.add(&row);
                    if finished.is_some() {
                        written.push(row.index);
                    }
                }
                if let Some(f) = &finished {
                    f.send_modify(|rows| *rows += n as u64);
                }
                progress.update(&stats, &input);
                if encoder.buffered() >= CHUNK {
                    let chunk = take(&mut encoder, &mut written);
                    writer_alive = hand_over(&chunks, chunk, &shutdown).await;
                }
            }
            _ = tick.tick() => {
                if encoder.buffered() > 0 {
                    let chunk = take(&mut encoder, &mut written);
                    writer_alive = hand_over(&chunks, chunk, &shutdown).await;
                }
                progress.update(&stats, &input);
            }
        }
        if !writer_alive {
            shutdown.stop.cancel();
            shutdown.abort.cancel();
            break;
        }
    }
    if writer_alive && encoder.buffered() > 0 {
        let chunk = take(&mut encoder, &mut written);
        hand_over(&chunks, chunk, &shutdown).await;
    }
    progress.finish();
    stats
}

/// Gives encoded bytes to the writer thread; false if it is gone, or if the run was
/// aborted while the writer was not taking them.
async fn hand_over(chunks: &mpsc::Sender<Chunk>, chunk: Chunk, shutdown: &Shutdown) -> bool {
    tokio::select! {
        biased;
        sent = chunks.send(chunk) => sent.is_ok(),
        _ = shutdown.abort.cancelled() => false,
    }
}

/// Encoded rows on their way to the writer, with their indices (for a `Durable`).
struct Chunk {
    bytes: Vec<u8>,
    indices: Vec<u64>,
}

/// The writer thread owns the output. Each chunk is written and flushed (and with a
/// `Durable`, synced and its indices told); the first error ends the thread and stops and
/// aborts the run at once (the encoder, finding the chunk channel closed, would notice only
/// at its next hand-over).
fn spawn_writer(
    mut out: Box<dyn Write + Send>,
    mut chunks: mpsc::Receiver<Chunk>,
    durable: Option<Durable>,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<io::Result<()>> {
    std::thread::Builder::new()
        .name("ratefetch-writer".into())
        .spawn(move || {
            let mut write = || -> io::Result<()> {
                while let Some(chunk) = chunks.blocking_recv() {
                    out.write_all(&chunk.bytes)?;
                    out.flush()?;
                    if let Some(d) = &durable {
                        d.file.sync_data()?;
                        // A receiver that is gone acknowledges nothing: the jobs come again.
                        let _ = d.done.send(chunk.indices);
                    }
                }
                out.flush()
            };
            let written = write();
            if written.is_err() {
                shutdown.stop.cancel();
                shutdown.abort.cancel();
            }
            written
        })
        .expect("spawning the writer thread")
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
        Col::Std(std) => match std {
            Std::Index => Cell::Int(o.index),
            Std::Url => Cell::Text(Cow::Borrowed(&o.url)),
            Std::FinalUrl => text(&o.final_url),
            Std::Status => o.status.map_or(Cell::Null, |s| Cell::Int(u64::from(s))),
            Std::ErrorKind => o
                .error_kind
                .map_or(Cell::Null, |k| Cell::Text(Cow::Borrowed(k.as_str()))),
            Std::Error => line(&o.error),
            Std::Attempts => Cell::Int(u64::from(o.attempts)),
            Std::ElapsedMs => Cell::Int(u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX)),
            Std::Bytes => Cell::Int(o.bytes),
            Std::ContentType => text(&o.content_type),
            Std::Title => line(&o.title),
            Std::StartedAt => o
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
    /// One of the twelve standard columns.
    Std(Std),
    /// The value of the i-th `--extract` rule.
    Extract(usize),
    /// The SHA-256 of the saved body (`--save-bodies`).
    BodySha256,
    /// The i-th passthrough column of a CSV input.
    Pass(usize),
}

/// The columns of one report, in order: the twelve standard ones, the extracted ones (in
/// the order given), `body_sha256` with `--save-bodies`, then the passthrough columns of a
/// CSV input (a name that collides with another column is prefixed `input_`, and numbered
/// `input_NAME_2`, `input_NAME_3`, … when that is taken too). `--fields` picks and orders any
/// of them.
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
        let mut all: Vec<(String, Col)> = Std::ALL
            .iter()
            .map(|s| (s.name().to_string(), Col::Std(*s)))
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
        // Linear in the columns: a CSV input may have 100,000 of them.
        let mut taken: HashSet<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let mut numbered = HashMap::new();
        for (i, name) in passthrough.iter().enumerate() {
            let name = free_name(name, &mut taken, &mut numbered);
            all.push((name, Col::Pass(i)));
        }
        let chosen = match fields {
            None => all,
            Some(fields) => {
                let at: HashMap<&str, usize> = all
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.as_str(), i))
                    .collect();
                fields
                    .iter()
                    .map(|f| {
                        at.get(f.trim()).map(|&i| all[i].clone()).ok_or_else(|| {
                            ColumnsError::UnknownField {
                                name: f.trim().to_string(),
                                valid: all.iter().map(|(n, _)| n.clone()).collect(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let (names, cols) = chosen.into_iter().unzip();
        Ok(Columns { names, cols })
    }

    /// The columns of a run's report: the standard ones, `config`'s `--extract` names,
    /// `body_sha256` with `--save-bodies`, then `passthrough`; picked and ordered by
    /// `fields` when given.
    pub fn of_run(
        config: &Config,
        passthrough: &[String],
        fields: Option<&[String]>,
    ) -> Result<Columns, ColumnsError> {
        let extracted: Vec<String> = config.extract.iter().map(|x| x.name.clone()).collect();
        Columns::new(
            &extracted,
            config.save_bodies.is_some(),
            passthrough,
            fields,
        )
    }

    /// The header row.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Where a standard column's cell is, if the report has that column (`--fields` may
    /// leave it out).
    pub fn position(&self, std: Std) -> Option<usize> {
        self.cols.iter().position(|c| *c == Col::Std(std))
    }

    /// The header row as a fresh CSV report starts with it.
    pub fn csv_header(&self) -> Vec<u8> {
        let mut encoder = Encoder::new(Format::Csv, self.clone());
        encoder.header().expect("encoding into memory cannot fail");
        encoder.take_bytes()
    }

    /// Whether a report's header row, as read back, is this one (names as the CSV writer
    /// wrote them); if not, the error names what was found.
    pub fn check_header<'a>(
        &self,
        found: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), OtherColumns> {
        let found: Vec<&str> = found.into_iter().collect();
        let same = found.len() == self.names.len()
            && found
                .iter()
                .zip(&self.names)
                .all(|(f, n)| *f == csv_text(n));
        if same {
            Ok(())
        } else {
            Err(OtherColumns(found.join(",")))
        }
    }
}

/// The report's name for a passthrough column called `name`, `taken` holding the names given
/// so far: `name`; else `input_NAME`; else `input_NAME_2`, `input_NAME_3`, … (`numbered`
/// keeps the next number of each name, so that a header of n equal names costs O(n) and its
/// names do not grow with n).
fn free_name(
    name: &str,
    taken: &mut HashSet<String>,
    numbered: &mut HashMap<String, u64>,
) -> String {
    if taken.insert(name.to_string()) {
        return name.to_string();
    }
    let prefixed = format!("input_{name}");
    if taken.insert(prefixed.clone()) {
        return prefixed;
    }
    let next = numbered.entry(name.to_string()).or_insert(2);
    loop {
        let candidate = format!("input_{name}_{next}");
        *next += 1;
        if taken.insert(candidate.clone()) {
            return candidate;
        }
    }
}

/// A report whose header is not this run's columns (the header found, comma-separated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its columns are not this run's (found {0})")]
pub struct OtherColumns(pub String);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    pub(crate) fn sample() -> Outcome {
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

    pub(crate) fn render(format: Format, rows: &[Outcome]) -> String {
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
    pub(crate) fn multi_line(index: u64) -> (Columns, Outcome) {
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

    pub(crate) fn render_with(format: Format, columns: &Columns, rows: &[Outcome]) -> String {
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

    /// Issue 19: each passthrough name was looked up among all the names before it, and a
    /// name taken again grew by `input_` each time: n equal names (a header of empty cells)
    /// made names of O(n) bytes, O(n²) in all.
    #[test]
    fn many_passthrough_columns_are_named_in_linear_work() {
        let n = 100_000;
        let empty = vec![String::new(); n];
        let c = Columns::new(&[], false, &empty, None).unwrap();
        let names = &c.names()[COLUMNS.len()..];
        assert_eq!(&names[..3], ["", "input_", "input__2"]);
        assert_eq!(names[n - 1], format!("input__{}", n - 1));
        let bytes: usize = names.iter().map(String::len).sum();
        assert!(bytes < 20 * n, "{bytes} bytes of names for {n} columns");
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), n);
        // Distinct names (a quadratic lookup of 100,000 of them takes minutes in a debug
        // build), and --fields picking among them.
        let distinct: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let fields: Vec<String> = (0..n).rev().step_by(7).map(|i| format!("c{i}")).collect();
        let c = Columns::new(&[], false, &distinct, Some(&fields)).unwrap();
        assert_eq!(c.names(), fields);
        assert_eq!(c.cols[0], Col::Pass(n - 1));
    }

    #[test]
    fn a_name_taken_twice_is_numbered() {
        let pass = ["title", "title", "input_title_2", "title", "a", "a"].map(String::from);
        let c = Columns::new(&[], false, &pass, None).unwrap();
        assert_eq!(
            &c.names()[COLUMNS.len()..],
            [
                "input_title",
                "input_title_2",
                "input_input_title_2",
                "input_title_3",
                "a",
                "input_a"
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
    fn standard_columns_are_named_in_report_order() {
        let names: Vec<&str> = Std::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, COLUMNS);
        let c = Columns::default();
        for (i, s) in Std::ALL.iter().enumerate() {
            assert_eq!(c.position(*s), Some(i), "{s:?}");
        }
        let fields: Vec<String> = vec!["status".into(), "url".into()];
        let c = Columns::new(&[], false, &[], Some(&fields)).unwrap();
        assert_eq!(c.position(Std::Url), Some(1));
        assert_eq!(c.position(Std::Index), None);
    }

    #[test]
    fn a_header_is_checked_as_the_csv_writer_wrote_it() {
        let c = Columns::new(&[], false, &["=sum".to_string()], None).unwrap();
        let mut header: Vec<&str> = COLUMNS.to_vec();
        header.push("'=sum");
        assert_eq!(c.check_header(header.iter().copied()), Ok(()));
        let err = c.check_header(["index", "url"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "its columns are not this run's (found index,url)"
        );
    }
}
