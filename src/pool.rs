//! Pool: runs the fixed set of workers, wires the channels, and handles stopping.
//!
//! ```text
//!  input thread ──batches──▶ feeder ──▶ schedule ──ready tasks──▶ N workers ──outcomes──▶ sink
//! ```
//!
//! Who owns what at shutdown:
//! - `Shutdown::stop` (first Ctrl-C / SIGTERM): the scheduler is closed, so the feeder and
//!   the input thread stop reading; workers take no new task, and tasks waiting in the
//!   scheduler (a backoff, a host's pace) or for a permit or token are dropped (they write no
//!   row, so `--resume` does them exactly once); requests already sent go on.
//! - `grace` after `stop`, or `Shutdown::abort` (second Ctrl-C): requests in flight are
//!   dropped, without rows.
//! - The sink (`sink::spawn`: an encoding task and a writer thread that owns the output)
//!   ends when every worker has dropped its outcome sender, after flushing, so every row
//!   that was finished is on disk before `run` returns.
//! - A panic while handling one job is caught around that job: it becomes the job's row
//!   (`other`, "internal error: …") and the worker goes on, so the pool keeps its size.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Failure};
use crate::fetch::Fetcher;
use crate::input::{self, InputProgress, Source};
use crate::job::{Job, Next, Outcome};
use crate::limits::ledger::Past;
use crate::limits::Limits;
use crate::progress::{Progress, Summary};
use crate::resume::Skip;
use crate::run_files::Opened;
use crate::schedule::{Scheduler, Ticket};
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::sink::{self, Sink};

/// Fetches every job of `input` under `config`'s limits and writes one row per job to
/// `sink`. Jobs whose index is in `skip` are not done (they are in a resumed report).
/// `files` are the run's `--quota-state` and `--log-requests` files, opened by the caller
/// (`run_files`) before the report was changed.
/// Returns when the input is done or the run was stopped; the sink is flushed by then.
pub async fn run(
    config: Arc<Config>,
    input: Source,
    sink: Sink,
    skip: Option<Skip>,
    shared: Option<Arc<Shared>>,
    files: Opened,
    shutdown: Shutdown,
) -> Result<Summary, Error> {
    let limits = Arc::new(Limits::new(&config));
    let (ledger, past) = match files.state {
        Some((ledger, past)) => (Some(Arc::new(ledger)), past),
        None => (None, Past::default()),
    };
    let scheduler = Scheduler::with_ledger(&config, ledger.clone(), &past);
    drop(past);
    // Ends the timer thread even if the fetcher cannot be built.
    let _timers = scheduler.guard();
    let log_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |reason: String| Error::RequestLog { path, reason }
    };
    let (log, log_writer) = match files.log {
        Some((path, log, writer)) => (Some(log), Some((path, writer))),
        None => (None, None),
    };
    let fetcher = Arc::new(Fetcher::new(
        config.clone(),
        limits,
        scheduler.clone(),
        log,
        shared,
    )?);
    // A write to the log that fails stops intake at once, as a Ctrl-C does: what would be
    // sent from then on could not be proved.
    let stop_on_log_failure = log_writer.as_ref().map(|(_, writer)| {
        let failed = writer.failed();
        let stop = shutdown.stop.clone();
        tokio::spawn(async move {
            failed.cancelled().await;
            stop.cancel();
        })
    });
    let summary = run_with(
        config.clone(),
        fetcher,
        scheduler,
        input,
        sink,
        skip,
        shutdown,
    )
    .await;
    if let Some(watch) = stop_on_log_failure {
        watch.abort();
    }
    // Every worker and the fetcher are gone: no more grants, no more log lines. The state's
    // last sends and the log's last lines are written now, whatever else failed; the first
    // error is the one reported.
    let ledger_end = match &ledger {
        Some(ledger) => ledger.finish().map_err(|reason| Error::QuotaState {
            path: ledger.path().to_path_buf(),
            reason,
        }),
        None => Ok(()),
    };
    let log_end = match log_writer {
        Some((path, writer)) => writer.finish().map_err(|e| log_error(&path)(e.to_string())),
        None => Ok(()),
    };
    let summary = summary?;
    ledger_end?;
    log_end?;
    Ok(summary)
}

/// What a worker does with a task: one step of `Fetcher` in a real run; tests wrap or
/// replace it.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        ticket: &mut Ticket,
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
    ) -> impl std::future::Future<Output = Next> + Send;
}

impl Handler for Fetcher {
    fn handle(
        &self,
        ticket: &mut Ticket,
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
    ) -> impl std::future::Future<Output = Next> + Send {
        self.step(ticket, buf, shutdown)
    }
}

/// `run` with a given task handler and scheduler.
pub async fn run_with<H: Handler>(
    config: Arc<Config>,
    handler: Arc<H>,
    scheduler: Scheduler,
    input: Source,
    sink: Sink,
    skip: Option<Skip>,
    shutdown: Shutdown,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let input_progress = Arc::new(InputProgress::default());
    let _timers = scheduler.guard();

    let (batch_tx, batch_rx) = mpsc::channel::<Vec<Job>>(4);
    // A resumed input is checked against its report before anything leaves.
    if skip.is_some() {
        scheduler.hold();
    }

    let reader = input::spawn_reader(
        input,
        batch_tx,
        skip,
        shutdown.stop.clone(),
        input_progress.clone(),
    );
    let feeder = tokio::spawn(feed(batch_rx, scheduler.clone(), input_progress.clone()));
    // The progress line says when a quota holds the whole run back, and until when.
    let waits =
        (!config.quiet && (!config.quotas.is_empty() || config.redis.is_some())).then(|| {
            let scheduler = scheduler.clone();
            let input_progress = input_progress.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    input_progress.set_waiting(scheduler.waiting());
                }
            })
        });
    let (out_tx, sink) = sink::spawn(
        sink,
        Progress::new(config.quiet),
        input_progress.clone(),
        shutdown.clone(),
    );

    // On stop: close intake and the scheduler at once (jobs waiting in it write no row),
    // then give requests in flight the grace period.
    let stopper = tokio::spawn({
        let shutdown = shutdown.clone();
        let scheduler = scheduler.clone();
        let grace = config.grace;
        async move {
            // An abort is also a stop.
            tokio::select! {
                _ = shutdown.stop.cancelled() => {}
                _ = shutdown.abort.cancelled() => shutdown.stop.cancel(),
            }
            scheduler.close();
            tokio::select! {
                _ = tokio::time::sleep(grace) => shutdown.abort.cancel(),
                _ = shutdown.abort.cancelled() => {}
            }
        }
    });

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers {
        workers.spawn(worker(
            handler.clone(),
            scheduler.clone(),
            out_tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(out_tx);
    while let Some(res) = workers.join_next().await {
        // A worker catches every panic of its tasks, so a failed join is a bug worth showing.
        res.expect("a worker panicked outside of a job");
    }
    stopper.abort();
    if let Some(waits) = waits {
        waits.abort();
    }
    scheduler.close();
    feeder.abort();

    let (stats, written) = sink.finish().await;
    written.map_err(|source| Error::Output {
        path: config.output.display_path(),
        source,
    })?;
    if let Some(why) = scheduler.shared_error() {
        let url = crate::shared::display_url(config.redis.as_deref().unwrap_or_default());
        return Err(Error::Redis { url, reason: why });
    }
    if let Some(why) = scheduler.files_error() {
        return Err(Error::OpenFiles(why));
    }
    if let Some(why) = scheduler.ledger_error() {
        let path = config.quota_state.clone().unwrap_or_default();
        return Err(Error::QuotaState { path, reason: why });
    }
    if let Some(why) = scheduler.spill_error() {
        return Err(Error::Input {
            path: config.input.display_path(),
            source: std::io::Error::other(why),
        });
    }

    let interrupted = shutdown.stop.is_cancelled();
    let stopped_at = scheduler.stopped_at();
    let input_finished = input_progress.finished.load(Ordering::Acquire);
    // Unless the run was stopped, the workers ended because the input was done, so the
    // input thread is ending; if stopped, it may sit in a read of a terminal or pipe and
    // ends with the process.
    if !(interrupted || stopped_at.is_some()) || input_finished {
        if let Ok(Err(e)) = reader.join() {
            return Err(e.into_error(&config));
        }
    }
    let read = input_progress.jobs.load(Ordering::Relaxed);
    Ok(Summary {
        stats,
        elapsed: started.elapsed(),
        interrupted,
        stopped_at,
        not_done: read.saturating_sub(stats.rows),
        input_finished,
    })
}

async fn worker<H: Handler>(
    handler: Arc<H>,
    scheduler: Scheduler,
    out: mpsc::Sender<Outcome>,
    shutdown: Shutdown,
) {
    // The worker's own body buffer, reused from task to task.
    let mut buf = Vec::new();
    while let Some(mut ticket) = scheduler.next(&shutdown.stop).await {
        // The call is inside the guarded future, so a handler that panics before it returns
        // its future is caught too.
        let result =
            AssertUnwindSafe(async { handler.handle(&mut ticket, &mut buf, &shutdown).await })
                .catch_unwind()
                .await;
        let outcome = match result {
            Ok(Next::Done) => ticket.finish().finish(),
            Ok(Next::Requeue) => {
                scheduler.requeue(ticket);
                continue;
            }
            Ok(Next::RetryAt(at)) => {
                scheduler.delay(ticket, at);
                continue;
            }
            Ok(Next::Stopped) => return,
            Err(panic) => {
                buf = Vec::new();
                let job = ticket.finish().job;
                let mut o = Outcome::failed(
                    job.index,
                    job.url,
                    Failure::new(
                        ErrorKind::Other,
                        format!("internal error: {}", panic_message(&*panic)),
                    ),
                );
                o.passthrough = job.passthrough;
                o
            }
        };
        if buf.capacity() > 4 << 20 {
            buf = Vec::new();
        }
        // An abort wins over a stalled output (a paused pipe reader).
        tokio::select! {
            biased;
            _ = shutdown.abort.cancelled() => return,
            sent = out.send(outcome) => if sent.is_err() {
                return; // The sink is gone (an output error); the run is ending.
            },
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a worker panicked".to_string()
    }
}

/// Moves the input thread's batches into the scheduler while it has room for them.
/// Once a resumed input is known to be the report's, the scheduler is opened; an input that
/// ends without being so (the input thread refused it) fetches nothing.
async fn feed(
    mut batches: mpsc::Receiver<Vec<Job>>,
    scheduler: Scheduler,
    input: Arc<InputProgress>,
) {
    let mut held = scheduler.is_held();
    loop {
        if !scheduler.room().await {
            return; // The run is stopping.
        }
        let batch = batches.recv().await;
        if held && input.checked.load(Ordering::Acquire) {
            scheduler.open();
            held = false;
        }
        match batch {
            Some(batch) => scheduler.push(batch),
            None => {
                if held {
                    scheduler.close();
                }
                scheduler.input_finished();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::sink::Columns;

    /// Panics on URLs containing "panic"; any other job meets another at a barrier of two
    /// (so two workers must be alive to get past it), then ends as a 200.
    struct PanicOn(tokio::sync::Barrier);

    impl Handler for PanicOn {
        async fn handle(&self, ticket: &mut Ticket, _: &mut Vec<u8>, _: &Shutdown) -> Next {
            let job = &ticket.task().job;
            if job.url.contains("panic") {
                panic!("boom on line {}", job.index);
            }
            self.0.wait().await;
            ticket.task_mut().outcome.status = Some(200);
            Next::Done
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_one_job_is_its_row_and_the_pool_keeps_its_size() {
        let mut lines: Vec<String> = (0..4).map(|i| format!("http://a.test/panic/{i}")).collect();
        lines.extend((0..12).map(|i| format!("http://b.test/{i}")));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        let config = Arc::new(Config {
            concurrency: 2,
            workers: 2,
            quiet: true,
            ..Config::default()
        });
        let out = Box::new(std::fs::File::create(&path).unwrap());
        let sink = Sink::new(out, Format::Csv, Columns::default()).unwrap();
        let input = Source::text(Box::new(std::io::Cursor::new(lines.join("\n"))), None);
        let run = run_with(
            config.clone(),
            Arc::new(PanicOn(tokio::sync::Barrier::new(2))),
            Scheduler::new(&config),
            input,
            sink,
            None,
            Shutdown::new(),
        );
        // With a worker lost to a panic, the barrier would never let a job through.
        let summary = tokio::time::timeout(std::time::Duration::from_secs(30), run)
            .await
            .expect("both workers are still there")
            .unwrap();
        assert_eq!(summary.stats.rows, 16);
        let mut rows: Vec<csv::StringRecord> = csv::Reader::from_path(&path)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect();
        rows.sort_by_key(|r| r[0].parse::<u64>().unwrap());
        let indices: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(indices, (1..=16).collect::<Vec<_>>());
        for row in &rows[..4] {
            assert_eq!(&row[4], "other");
            assert_eq!(row[5], format!("internal error: boom on line {}", &row[0]));
        }
        assert!(rows[4..].iter().all(|r| &r[3] == "200"));
    }
}
