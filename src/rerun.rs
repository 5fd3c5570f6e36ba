//! `--retry-failed REPORT`: fetches again the rows of an earlier CSV report that failed (an
//! `error_kind`, or status 429 or 5xx), with this run's options, and rewrites the report
//! atomically (a temporary file, then a rename): the other rows unchanged, the refetched
//! rows replaced, every index still exactly once. The report is read as CSV records (a cell
//! may hold line breaks); a torn last record, left by a killed run, is cut as `--resume`
//! cuts it.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, Format};
use crate::error::Error;
use crate::files::{try_lock, ClaimError, Claimed};
use crate::input::{parse_target, Source};
use crate::job::{Ending, Job};
use crate::pool;
use crate::progress::Summary;
use crate::report_reader::{Header, ReadError, ReportReader};
use crate::resume::claim_error;
use crate::shutdown::Shutdown;
use crate::sink::{Columns, Sink, Std};

/// What a `--retry-failed` run did.
#[derive(Debug, Clone)]
pub struct RetrySummary {
    /// The run over the failed rows.
    pub run: Summary,
    /// Rows that were due for a retry.
    pub retried: u64,
    /// Of those, rows that now have a usable response (no error kind, not 429, not 5xx).
    pub now_ok: u64,
    /// Bytes of a torn last row (from a killed run) left out of the rewritten report;
    /// `--resume` with the input fetches that row again.
    pub cut: u64,
}

/// Retries the failed rows of the CSV report at `report` and rewrites it in place.
pub async fn retry_failed(
    config: Config,
    report: &Path,
    shutdown: Shutdown,
) -> Result<RetrySummary, Error> {
    let refuse = |reason: String| Error::RetryFailed {
        path: report.to_path_buf(),
        reason,
    };
    let io_err = |source| Error::Input {
        path: report.to_path_buf(),
        source,
    };
    if config.format != Format::Csv {
        return Err(refuse(
            "--retry-failed reads and rewrites CSV reports".into(),
        ));
    }
    // The report is read and rewritten by this run alone. (It must exist: a claim would
    // create it.)
    std::fs::metadata(report).map_err(io_err)?;
    let claim = Claimed::open(report).map_err(|e| claim_error(report, e))?;
    let fail = |e: ReadError| match e {
        ReadError::Io(e) => io_err(e),
        ReadError::Foreign(reason) => refuse(format!(
            "{reason}: its columns are not a ratefetch report's"
        )),
        e => refuse(e.explain(report)),
    };
    let mut reader =
        ReportReader::open(claim.file(), &["url", "status", "error_kind"], false).map_err(fail)?;
    // The report's columns must be this run's: the standard ones, the same --extract
    // names, body_sha256 with --save-bodies; the rest are passthrough columns.
    let header = match (reader.format(), reader.header()) {
        (Format::Csv, Header::Csv { cells, .. }) => cells
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<String>>(),
        (Format::Jsonl, _) => {
            return Err(refuse(
                "it is a JSONL report; --retry-failed reads and rewrites CSV reports".into(),
            ))
        }
        _ => return Err(refuse("it has no header row".into())),
    };
    let fixed = Columns::of_run(&config, &[], None)
        .expect("columns without --fields are valid")
        .names()
        .len();
    let passthrough = header
        .get(fixed..)
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let columns =
        Columns::of_run(&config, &passthrough, None).expect("columns without --fields are valid");
    columns
        .check_header(header.iter().map(String::as_str))
        .map_err(|e| {
            refuse(format!(
                "{e}; give the same --extract and --save-bodies options"
            ))
        })?;
    let at = |std: Std| {
        columns
            .position(std)
            .expect("a report without --fields has every column")
    };

    // Pass 1: the rows to fetch again (the whole report is read, so damage anywhere
    // refuses the run before anything is sent).
    let mut jobs = Vec::new();
    while let Some(row) = reader.next_row().map_err(fail)? {
        if !Ending::of_cells(row.cell(2), row.cell(1)).retry_due() {
            continue;
        }
        let record = row.record().expect("a CSV row has its record");
        let cell =
            |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned();
        let url = row.cell(0).to_string();
        jobs.push(Job {
            index: row.index,
            target: parse_target(&url),
            url,
            passthrough: (fixed..header.len()).map(cell).collect(),
        });
    }
    let cut = reader.torn();
    drop(reader);
    let retried = jobs.len() as u64;

    let shared = crate::shared::connect(&config).await?;
    let files = crate::run_files::claim(&config)?.open(&config)?;
    // The run writes its rows to a side file, read back below.
    let side = sibling(report, "retry");
    let sink = Sink::new(
        Box::new(File::create(&side).map_err(|source| Error::Output {
            path: side.clone(),
            source,
        })?),
        Format::Csv,
        columns.clone(),
    )
    .and_then(|mut s| s.flush().map(|()| s))
    .map_err(|source| Error::Output {
        path: side.clone(),
        source,
    })?;
    let run = pool::run(
        Arc::new(config),
        Source::jobs(jobs),
        sink,
        None,
        shared,
        files,
        shutdown,
    )
    .await;
    let fresh = read_rows(&side);
    let _ = std::fs::remove_file(&side);
    let fresh = fresh.map_err(|source| Error::Output {
        path: side.clone(),
        source,
    })?;
    // A symlinked report is rewritten where it really is.
    let real = std::fs::canonicalize(report).unwrap_or_else(|_| report.to_path_buf());
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            // The rows fetched before the run failed were paid for: they go in all the same.
            if !fresh.is_empty() {
                let _ = rewrite(&real, claim, &header, fresh);
            }
            return Err(e);
        }
    };
    let now_ok = fresh
        .values()
        .filter(|r| {
            let cell = |std| r.get(at(std)).unwrap_or("");
            !Ending::of_cells(cell(Std::ErrorKind), cell(Std::Status)).retry_due()
        })
        .count() as u64;

    // Pass 2: the report again, with the refetched rows in place of the old ones.
    rewrite(&real, claim, &header, fresh).map_err(|source| Error::Output {
        path: report.to_path_buf(),
        source,
    })?;
    Ok(RetrySummary {
        run,
        retried,
        now_ok,
        cut,
    })
}

/// A hidden file next to `path`, for a temporary (also `merge`'s).
pub(crate) fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// The rows of the side report this run wrote, by index, read through the report reader.
fn read_rows(path: &Path) -> std::io::Result<HashMap<u64, csv::StringRecord>> {
    let file = File::open(path)?;
    let mut reader = ReportReader::open(&file, &[], false).map_err(std::io::Error::other)?;
    let mut rows = HashMap::new();
    while let Some(row) = reader.next_row().map_err(std::io::Error::other)? {
        let record = row.record().expect("a CSV row has its record").clone();
        rows.insert(row.index, csv::StringRecord::from_byte_record_lossy(record));
    }
    Ok(rows)
}

/// Writes the report anew (its whole rows, read again through the report reader) through a
/// temporary file, locked, and renames it over the old one, so that a crash leaves either the
/// old report or the new one, never half of each, and no other run gets in between.
fn rewrite(
    report: &Path,
    claim: Claimed,
    header: &[String],
    mut fresh: HashMap<u64, csv::StringRecord>,
) -> std::io::Result<()> {
    let tmp = sibling(report, "tmp");
    let result = (|| {
        let file = File::create(&tmp)?;
        try_lock(&file).map_err(|e| match e {
            ClaimError::Io(e) => e,
            ClaimError::Busy => std::io::Error::other("its temporary file is in use"),
        })?;
        let mut reader =
            ReportReader::open(claim.file(), &[], false).map_err(std::io::Error::other)?;
        let mut w = csv::Writer::from_writer(BufWriter::new(file));
        w.write_record(header)?;
        while let Some(row) = reader.next_row().map_err(std::io::Error::other)? {
            match fresh.remove(&row.index) {
                Some(new) => w.write_record(&new)?,
                None => w.write_record(row.record().expect("a CSV row has its record"))?,
            }
        }
        let file = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok::<_, std::io::Error>(file)
    })();
    let renamed = result.and_then(|file| {
        // The new file keeps the report's permissions.
        std::fs::set_permissions(&tmp, std::fs::metadata(report)?.permissions())?;
        std::fs::rename(&tmp, report)?;
        drop(claim.keep());
        Ok(file)
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed?;
    let _ = crate::files::sync_parent(report);
    Ok(())
}
