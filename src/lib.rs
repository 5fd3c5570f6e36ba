//! ratefetch: fetch a list of URLs as fast as a quota allows and never faster, and write one
//! report row per input line.
//!
//! The binary is a thin shell over this library. A run from Rust:
//!
//! ```no_run
//! use ratefetch::{Config, config::{InputSource, OutputTarget}, units::parse_rate, Shutdown};
//! # async fn demo() -> Result<(), ratefetch::Error> {
//! let config = Config {
//!     input: InputSource::Path("urls.txt".into()),
//!     output: OutputTarget::Path("report.csv".into()),
//!     rate: parse_rate("600/m").unwrap(),
//!     ..Config::default()
//! };
//! let summary = ratefetch::run(config, Shutdown::new()).await?;
//! println!("{summary}");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

// The public surface: what the binary and other programs use.
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod encoding;
pub mod error;
pub mod extract;
pub mod merge;
#[cfg(feature = "plot")]
pub mod plot;
pub mod template;
pub mod units;

// The machinery: private, free to change. Its layering is in the README ("How it works").
mod cookies;
mod fdlimit;
mod fetch;
mod files;
mod input;
mod job;
mod limits;
mod plan;
mod pool;
mod progress;
mod queue;
mod report_reader;
mod reqlog;
mod rerun;
mod resume;
mod retry;
mod robots;
mod run_files;
mod save;
mod schedule;
mod shared;
mod shutdown;
mod sink;

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

pub use config::{Config, Mode};
pub use error::{Error, ErrorKind, Failure};
pub use limits::quota::QuotaStop;
pub use plan::Plan;
pub use progress::{Stats, Summary};
pub use queue::Enqueued;
pub use rerun::RetrySummary;
pub use shutdown::Shutdown;

use config::{InputSource, OutputTarget};
use error::UsageError;
use files::Claimed;
use input::{CsvInputError, Source};
use resume::Skip;
use sink::{Columns, ColumnsError, Sink};

/// Validates `config` (`Config::validate`), opens the input and the output it names (both
/// before the first request, so a bad path fails at once), resumes the output if asked, and
/// runs the pool.
pub async fn run(mut config: Config, shutdown: Shutdown) -> Result<Summary, Error> {
    config.validate()?;
    fit_open_files(&mut config);
    check_tls(&config)?;
    if config.queue.is_some() {
        return work_queue(config, shutdown).await;
    }
    let (source, columns) = open_input(&config).await?;
    // Before any file is touched: a Redis that cannot be reached leaves them as they were.
    let shared = shared::connect(&config).await?;
    // Every check that can refuse the run comes before the first byte of any file changes:
    // the report is claimed (locked; a missing one created, and removed again if the run
    // is refused) and, to resume, read and checked; so are the state file and the log.
    let format = config.format;
    let report = match &config.output {
        OutputTarget::Stdout => Report::Stdout,
        OutputTarget::Path(path) if config.resume => {
            Report::Resumed(resume::open(path, format, &columns)?)
        }
        OutputTarget::Path(path) => {
            Report::New(Claimed::open(path).map_err(|e| resume::claim_error(path, e))?)
        }
    };
    let claims = run_files::claim(&config)?;
    // From here on the run changes its files (a directory that cannot be made is an I/O
    // failure, before the others change).
    if let Some(dir) = &config.save_bodies {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output {
            path: dir.clone(),
            source,
        })?;
    }
    let files = claims.open(&config)?;
    let output_error = |source| Error::Output {
        path: config.output.display_path(),
        source,
    };
    let (sink, skip) = match report {
        Report::Stdout => (
            Sink::new(Box::new(std::io::stdout()), format, columns),
            None,
        ),
        Report::Resumed(mut resumed) => {
            let skip = Skip::new(std::mem::take(&mut resumed.done), resumed.format);
            let fresh = resumed.fresh;
            let out: Box<dyn Write + Send> = Box::new(resumed.appender().map_err(output_error)?);
            let sink = if fresh {
                Sink::new(out, format, columns)
            } else {
                Ok(Sink::without_header(out, format, columns))
            };
            (sink, Some(skip))
        }
        Report::New(claim) => {
            let regular = claim.regular().map_err(output_error)?;
            let file = claim.keep();
            if regular {
                file.set_len(0).map_err(output_error)?;
            }
            (Sink::new(Box::new(file), format, columns), None)
        }
    };
    // The header (if any) is written now: an output that cannot take it fails before the
    // first request.
    let sink = sink
        .and_then(|mut sink| sink.flush().map(|()| sink))
        .map_err(output_error)?;
    pool::run(
        Arc::new(config),
        source,
        sink,
        skip,
        shared,
        files,
        shutdown,
    )
    .await
}

/// The report of a run, claimed and checked, not yet changed.
enum Report {
    Stdout,
    /// `--resume`: read back, to append to.
    Resumed(resume::Resumed),
    /// A report written anew (truncated when the run goes on).
    New(Claimed),
}

/// Raises the open-file limit, and caps the concurrency (and the workers) to what it allows,
/// with one warning, rather than let connections fail for want of descriptors; idle
/// connections then leave the pool sooner.
fn fit_open_files(config: &mut Config) {
    let Some(limit) = fdlimit::raise() else {
        return;
    };
    if let Some(fits) = fdlimit::fit(config.concurrency, limit) {
        if !config.quiet {
            eprintln!(
                "ratefetch: warning: at most {limit} open files here, too few for -c {}: \
                 running with -c {fits} (raise the hard limit, ulimit -Hn, for more)",
                config.concurrency
            );
        }
        config.concurrency = fits.get();
        config.workers = config.workers.min(fits.get());
        config.idle_timeout = config::TIGHT_IDLE_TIMEOUT;
    }
}

/// Reads the `--cacert` roots before anything is touched (a bad file fails at once), and
/// warns that `--insecure` checks no certificate.
fn check_tls(config: &Config) -> Result<(), Error> {
    if let Some(path) = &config.cacert {
        fetch::trusted_roots(path)?;
    }
    if config.insecure && !config.quiet {
        eprintln!(
            "ratefetch: warning: --insecure: TLS certificates are not checked, \
             so anyone on the path can read and change what is fetched"
        );
    }
    Ok(())
}

/// A `--queue` worker: takes jobs from the queue until it is complete (or a stop), appends
/// their rows to the report (a report from an earlier run of this worker is continued, its
/// torn last record cut), and acknowledges each job once its row is synced there; hands back
/// at the end the jobs it read and did not finish.
async fn work_queue(config: Config, shutdown: Shutdown) -> Result<Summary, Error> {
    let shared = shared::connect(&config).await?;
    let queue = Arc::new(queue::Queue::open(&config).await?);
    let columns = Columns::of_run(&config, &queue.passthrough, config.fields.as_deref()).map_err(
        |e| match e {
            ColumnsError::UnknownField { .. } => UsageError::new("--fields", e.to_string()),
        },
    )?;
    let OutputTarget::Path(path) = &config.output else {
        unreachable!("validated: --queue needs --output FILE");
    };
    let format = config.format;
    let resumed = resume::open(path, format, &columns)?;
    let files = run_files::claim(&config)?.open(&config)?;
    let output_error = |source| Error::Output {
        path: path.clone(),
        source,
    };
    let fresh = resumed.fresh;
    let appender = resumed.appender().map_err(output_error)?;
    let file = appender.file().try_clone().map_err(output_error)?;
    let out: Box<dyn Write + Send> = Box::new(appender);
    let sink = if fresh {
        Sink::new(out, format, columns)
    } else {
        Ok(Sink::without_header(out, format, columns))
    };
    let (done, acks) = tokio::sync::mpsc::unbounded_channel();
    let (finished, rows) = tokio::sync::watch::channel(0);
    let sink = sink
        .and_then(|mut sink| sink.flush().map(|()| sink))
        .map_err(output_error)?
        .with_durable(sink::Durable {
            file,
            done,
            finished,
        });
    let acker = queue.acknowledge(acks, shutdown.stop.clone());
    let reading = shutdown.stop.child_token();
    // It holds at most what its workers can start, and a few more.
    let most = config.workers.saturating_add(queue::READ_CHUNK);
    let (source, reader) = queue.feed(reading.clone(), rows, most);
    let result = pool::run(
        Arc::new(config),
        source,
        sink,
        None,
        shared,
        files,
        shutdown,
    )
    .await;
    // The sink's writer is gone: every row on disk is told; acknowledge them, stop reading,
    // then hand back the rest.
    let _ = acker.await;
    reading.cancel();
    let _ = reader.await;
    queue.hand_back().await;
    let summary = result?;
    match queue.failure() {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// `ratefetch enqueue`: streams `config.input` into the queue `config.queue` at
/// `config.redis`, never more than `max_unread` jobs waiting (see `queue::enqueue`).
pub async fn enqueue(config: Config, max_unread: u64) -> Result<Enqueued, Error> {
    config.validate_enqueue()?;
    let (source, passthrough) = open_source(&config).await?;
    let url = config.redis.as_deref().expect("validated");
    let name = config.queue.as_deref().expect("validated");
    queue::enqueue(
        url,
        name,
        source,
        &passthrough,
        max_unread,
        config.connect_timeout,
    )
    .await
}

/// `--plan`: validates `config`, reads its input (skipping, with `--resume`, the jobs already
/// in the report, which is read and left as it is), sends nothing, and simulates the run's
/// limits with the sends of `past` in the quota windows. Creates and changes no file.
pub async fn plan(config: Config) -> Result<Plan, Error> {
    config.validate()?;
    // What earlier runs sent still fills the windows (read only: a run may hold the file).
    let past =
        match &config.quota_state {
            Some(path) => limits::ledger::read(path, &config.quotas, &config.per_host_quotas)
                .map_err(|e| Error::QuotaState {
                    path: e.path,
                    reason: e.reason,
                })?,
            None => limits::ledger::Past::default(),
        };
    let (mut source, columns) = open_input(&config).await?;
    let skip = match &config.output {
        OutputTarget::Path(path) if config.resume => {
            let (path, format) = (path.clone(), config.format);
            let done = tokio::task::spawn_blocking(move || resume::peek(&path, format, &columns))
                .await
                .expect("reading a report does not panic")?;
            Some(Skip::new(done, format))
        }
        _ => None,
    };
    // Reading a long list takes a while, and stdin may block: not on the runtime's threads.
    let hosts = tokio::task::spawn_blocking(move || plan::count_requests(&mut source, skip))
        .await
        .expect("counting the input does not panic")
        .map_err(|e| e.into_error(&config))?;
    Ok(plan::simulate(&config, &hosts, &past))
}

/// Opens the input `config` names (a CSV input's header read) and the report's columns.
async fn open_input(config: &Config) -> Result<(Source, Columns), Error> {
    let (source, passthrough) = open_source(config).await?;
    let columns =
        Columns::of_run(config, &passthrough, config.fields.as_deref()).map_err(|e| match e {
            ColumnsError::UnknownField { .. } => UsageError::new("--fields", e.to_string()),
        })?;
    Ok((source.with_shard(config.shard), columns))
}

/// Opens the input `config` names, a CSV input's header read: the source and the names of
/// its passthrough columns.
async fn open_source(config: &Config) -> Result<(Source, Vec<String>), Error> {
    let input: Box<dyn Read + Send> = match &config.input {
        InputSource::Stdin => Box::new(std::io::stdin()),
        InputSource::Path(path) => {
            let file = File::open(path).map_err(|source| Error::Input {
                path: path.clone(),
                source,
            })?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(Error::Input {
                    path: path.clone(),
                    source: std::io::Error::other("is a directory"),
                });
            }
            Box::new(file)
        }
    };
    // A CSV input's header names the passthrough columns; it is read before anything else
    // (on a blocking thread: stdin may take its time).
    let (source, passthrough) = if config.csv_input() {
        let url_column = config.url_column.clone();
        let delimiter = config.csv_delimiter();
        let template = config.url_template.clone();
        tokio::task::spawn_blocking(move || {
            Source::csv(input, url_column.as_deref(), delimiter, template.as_ref())
        })
        .await
        .expect("reading the CSV header does not panic")
        .map_err(|e| match e {
            CsvInputError::UnknownUrlColumn { .. } | CsvInputError::NoUrlColumn { .. } => {
                Error::Usage(UsageError::new("--url-column", e.to_string()))
            }
            CsvInputError::UnknownTemplateColumn { .. } => {
                Error::Usage(UsageError::new("--url-template", e.to_string()))
            }
            CsvInputError::Read(_) | CsvInputError::NoHeader => Error::Input {
                path: config.input.display_path(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            },
        })?
    } else {
        let passthrough = match &config.url_template {
            Some(_) => vec![input::TEMPLATE_LINE.to_string()],
            None => Vec::new(),
        };
        (
            Source::text(input, config.url_template.clone()),
            passthrough,
        )
    };
    Ok((source, passthrough))
}
