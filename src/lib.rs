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
pub mod error;
pub mod extract;
pub mod merge;
pub mod units;

// The machinery: private, free to change. Its layering is in the README ("How it works").
mod allowance;
mod announce;
mod fetch;
mod input;
mod job;
mod ledger;
mod limits;
mod pacer;
mod plan;
mod pool;
mod progress;
mod quota;
mod reqlog;
mod rerun;
mod resume;
mod retry;
mod robots;
mod schedule;
mod shared;
mod shutdown;
mod sink;

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

pub use config::{Config, Mode};
pub use error::{Error, ErrorKind, Failure};
pub use plan::Plan;
pub use progress::{Stats, Summary};
pub use quota::QuotaStop;
pub use rerun::RetrySummary;
pub use shutdown::Shutdown;

use config::{InputSource, OutputTarget};
use error::UsageError;
use input::{CsvInputError, Source};
use resume::Skip;
use sink::{Columns, ColumnsError, Sink};

/// Validates `config` (`Config::validate`), opens the input and the output it names (both
/// before the first request, so a bad path fails at once), resumes the output if asked, and
/// runs the pool.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<Summary, Error> {
    config.validate()?;
    let (source, columns) = open_input(&config).await?;
    // Before the report is touched: a Redis that cannot be reached leaves it as it was.
    let shared = shared::connect(&config).await?;
    if let Some(dir) = &config.save_bodies {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output {
            path: dir.clone(),
            source,
        })?;
    }
    let format = config.format;
    let (sink, skip) = match &config.output {
        OutputTarget::Stdout => (
            Sink::new(Box::new(std::io::stdout()), format, columns),
            None,
        ),
        OutputTarget::Path(path) if config.resume => {
            let resumed = resume::open(path, format, &columns)?;
            let skip = Skip::new(resumed.done, resumed.format);
            let out: Box<dyn Write + Send> = Box::new(resumed.file);
            let sink = if resumed.fresh {
                Sink::new(out, format, columns)
            } else {
                Ok(Sink::without_header(out, format, columns))
            };
            (sink, Some(skip))
        }
        OutputTarget::Path(path) => {
            let file = File::create(path).map_err(|source| Error::Output {
                path: path.clone(),
                source,
            })?;
            (Sink::new(Box::new(file), format, columns), None)
        }
    };
    // The header (if any) is written now: an output that cannot take it fails before the
    // first request.
    let sink = sink
        .and_then(|mut sink| sink.flush().map(|()| sink))
        .map_err(|source| Error::Output {
            path: config.output.display_path(),
            source,
        })?;
    pool::run(Arc::new(config), source, sink, skip, shared, shutdown).await
}

/// `--plan`: validates `config`, reads its input (skipping, with `--resume`, the jobs already
/// in the report, which is read and left as it is), sends nothing, and simulates the run's
/// limits with the sends of `past` in the quota windows. Creates and changes no file.
pub async fn plan(config: Config) -> Result<Plan, Error> {
    config.validate()?;
    // What earlier runs sent still fills the windows (read only: a run may hold the file).
    let past = match &config.quota_state {
        Some(path) => ledger::read(path).map_err(|e| Error::QuotaState {
            path: e.path,
            reason: e.reason,
        })?,
        None => ledger::Past::default(),
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
        tokio::task::spawn_blocking(move || Source::csv(input, url_column.as_deref()))
            .await
            .expect("reading the CSV header does not panic")
            .map_err(|e| match e {
                CsvInputError::UnknownUrlColumn { .. } => {
                    Error::Usage(UsageError::new("--url-column", e.to_string()))
                }
                CsvInputError::Read(_) | CsvInputError::NoHeader => Error::Input {
                    path: config.input.display_path(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                },
            })?
    } else {
        (Source::text(input), Vec::new())
    };
    let columns =
        Columns::of_run(config, &passthrough, config.fields.as_deref()).map_err(|e| match e {
            ColumnsError::UnknownField { .. } => UsageError::new("--fields", e.to_string()),
        })?;
    Ok((source.with_shard(config.shard), columns))
}
