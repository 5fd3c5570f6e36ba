//! Progress on stderr while a run goes on: an indicatif bar when stderr is a terminal, a
//! plain line every few seconds when it is not (logs, CI), nothing with `-q`. Also the run's
//! counters and the summary line.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::job::{Ending, Outcome};
use crate::limits::quota::QuotaStop;

/// How often the plain progress line is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Counters the input shares with progress reporting.
#[derive(Debug, Default)]
pub struct InputProgress {
    /// Jobs read so far (skipped --resume jobs excluded).
    pub jobs: AtomicU64,
    /// Set once the whole input has been read: `jobs` is then the total.
    pub finished: AtomicBool,
    /// Set once a resumed input is known to be the report's (at once without a resume).
    pub checked: AtomicBool,
    /// What the run waits for, if a limit holds it all back ("waiting for --quota …").
    pub waiting: std::sync::Mutex<Option<String>>,
}

impl InputProgress {
    /// Sets what the run waits for (`None`: nothing).
    pub fn set_waiting(&self, what: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = what;
    }

    fn waiting(&self) -> Option<String> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Counters over the rows written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Rows written.
    pub rows: u64,
    /// Rows with a 1xx, 2xx or 3xx status and no error kind.
    pub ok: u64,
    /// Rows with a 4xx or 5xx status and no error kind.
    pub http_errors: u64,
    /// Rows with an error kind (no usable response).
    pub failed: u64,
    /// HTTP requests sent, retries and redirect hops included.
    pub requests: u64,
}

impl Stats {
    /// Counts one row.
    pub(crate) fn add(&mut self, o: &Outcome) {
        self.rows += 1;
        self.requests += u64::from(o.requests);
        match o.ending() {
            Ending::Ok => self.ok += 1,
            Ending::HttpError(_) => self.http_errors += 1,
            Ending::Failed => self.failed += 1,
        }
    }
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The rows and requests.
    pub stats: Stats,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The run was stopped (Ctrl-C, SIGTERM, `Shutdown::stop`) before the input was done.
    pub interrupted: bool,
    /// The run stopped at a limit (`--on-quota stop`, `--budget`) before the input was done.
    pub stopped_at: Option<QuotaStop>,
    /// Jobs read from the input that wrote no row (only when interrupted or stopped).
    pub not_done: u64,
    /// Whether the input was read to its end.
    pub input_finished: bool,
}

impl Summary {
    /// Requests per second over the run, retries included.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.requests as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} rows ({} 2xx/3xx, {} 4xx/5xx, {} failed) in {:.2}s, {} requests, {:.1} req/s",
            s.rows,
            s.ok,
            s.http_errors,
            s.failed,
            self.elapsed.as_secs_f64(),
            s.requests,
            self.rate()
        )?;
        let stopped = match &self.stopped_at {
            _ if self.interrupted => Some("interrupted".to_string()),
            Some(stop) => Some(stop.to_string()),
            None => None,
        };
        if let Some(why) = stopped {
            write!(f, "; {why}: {} jobs not done", self.not_done)?;
            if !self.input_finished {
                write!(f, " and the rest of the input not read")?;
            }
        }
        Ok(())
    }
}

/// The progress display of a run.
pub enum Progress {
    Off,
    Bar {
        bar: ProgressBar,
        sized: bool,
        /// The error count and wait last shown, so the message is formatted only when they
        /// change.
        errors: u64,
        waiting: Option<String>,
    },
    Plain {
        out: Box<dyn Write + Send>,
        every: Duration,
        next: Instant,
        started: Instant,
    },
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            return Progress::Off;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {pos} rows {per_sec} {msg}",
                )
                .expect("static template"),
            );
            Progress::Bar {
                bar,
                sized: false,
                errors: 0,
                waiting: None,
            }
        } else {
            Progress::plain(Box::new(std::io::stderr()), PLAIN_EVERY)
        }
    }

    /// Plain lines to `out`, at most one per `every`.
    pub fn plain(out: Box<dyn Write + Send>, every: Duration) -> Progress {
        let now = Instant::now();
        Progress::Plain {
            out,
            every,
            next: now + every,
            started: now,
        }
    }

    /// Updates the display after a row (or on a timer tick).
    pub fn update(&mut self, stats: &Stats, input: &InputProgress) {
        match self {
            Progress::Off => {}
            Progress::Bar {
                bar,
                sized,
                errors,
                waiting,
            } => {
                if !*sized && input.finished.load(Ordering::Acquire) {
                    bar.set_length(input.jobs.load(Ordering::Relaxed));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} eta {eta} {msg}",
                        )
                        .expect("static template")
                        .progress_chars("=> "),
                    );
                    *sized = true;
                }
                bar.set_position(stats.rows);
                let failed = stats.failed + stats.http_errors;
                let wait = input.waiting();
                if failed != *errors || wait != *waiting {
                    *errors = failed;
                    let mut msg = format!("{failed} errors");
                    if let Some(w) = &wait {
                        msg.push_str(", ");
                        msg.push_str(w);
                    }
                    *waiting = wait;
                    bar.set_message(msg);
                }
            }
            Progress::Plain {
                out,
                every,
                next,
                started,
            } => {
                let now = Instant::now();
                if now < *next {
                    return;
                }
                *next = now + *every;
                let secs = now.duration_since(*started).as_secs_f64();
                let rate = stats.rows as f64 / secs.max(1e-9);
                let mut line = format!("ratefetch: {} rows", stats.rows);
                if input.finished.load(Ordering::Acquire) {
                    let total = input.jobs.load(Ordering::Relaxed);
                    line = format!("ratefetch: {}/{} rows", stats.rows, total);
                    if rate > 0.0 {
                        let left = total.saturating_sub(stats.rows) as f64 / rate;
                        line.push_str(&format!(
                            ", eta {}",
                            humantime::format_duration(Duration::from_secs(left.ceil() as u64))
                        ));
                    }
                }
                // Progress is best effort: a closed stderr must not end the run.
                let wait = input
                    .waiting()
                    .map(|w| format!(", {w}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{line}, {rate:.1} rows/s, {} errors{wait}",
                    stats.failed + stats.http_errors
                );
            }
        }
    }

    /// Removes the bar (the summary line follows it).
    pub fn finish(&mut self) {
        if let Progress::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn stats_sort_rows_into_ok_http_errors_and_failures() {
        let mut s = Stats::default();
        for (status, kind, attempts) in [
            (Some(200), None, 1),
            (Some(301), None, 1),
            (Some(404), None, 1),
            (Some(503), None, 3),
            (None, Some(ErrorKind::Dns), 1),
            (Some(200), Some(ErrorKind::BodyTooLarge), 1),
            (None, Some(ErrorKind::InvalidUrl), 0),
        ] {
            s.add(&Outcome {
                status,
                error_kind: kind,
                requests: attempts,
                ..Outcome::default()
            });
        }
        assert_eq!(
            s,
            Stats {
                rows: 7,
                ok: 2,
                http_errors: 2,
                failed: 3,
                requests: 8
            }
        );
    }

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_progress_prints_done_total_rate_eta_and_errors() {
        let out = Shared::default();
        let mut p = Progress::plain(Box::new(out.clone()), Duration::ZERO);
        let input = InputProgress::default();
        input.jobs.store(10, Ordering::Relaxed);
        let stats = Stats {
            rows: 3,
            ok: 2,
            failed: 1,
            requests: 3,
            ..Stats::default()
        };
        p.update(&stats, &input);
        input.finished.store(true, Ordering::Release);
        p.update(&stats, &input);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Before the input is read to its end, the total is unknown.
        assert!(lines[0].starts_with("ratefetch: 3 rows, "), "{}", lines[0]);
        assert!(
            lines[1].starts_with("ratefetch: 3/10 rows, eta "),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("rows/s") && lines[1].ends_with("1 errors"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn plain_progress_says_what_the_run_waits_for() {
        let out = Shared::default();
        let mut p = Progress::plain(Box::new(out.clone()), Duration::ZERO);
        let input = InputProgress::default();
        input.set_waiting(Some("waiting for --quota 5000/1h: next slot at X".into()));
        p.update(&Stats::default(), &input);
        input.set_waiting(None);
        p.update(&Stats::default(), &input);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("0 errors, waiting for --quota 5000/1h: next slot at X"),
            "{text}"
        );
        assert!(lines[1].ends_with("0 errors"), "{text}");
    }

    #[test]
    fn plain_progress_waits_for_its_interval() {
        let out = Shared::default();
        let mut p = Progress::plain(Box::new(out.clone()), Duration::from_secs(3600));
        p.update(&Stats::default(), &InputProgress::default());
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn quiet_means_no_progress() {
        assert!(matches!(Progress::new(true), Progress::Off));
    }

    #[test]
    fn summary_line_names_the_counts_and_the_rate() {
        let sum = Summary {
            stats: Stats {
                rows: 10,
                ok: 7,
                http_errors: 2,
                failed: 1,
                requests: 20,
            },
            elapsed: Duration::from_secs(2),
            interrupted: true,
            stopped_at: None,
            not_done: 3,
            input_finished: false,
        };
        assert_eq!(
            sum.to_string(),
            "10 rows (7 2xx/3xx, 2 4xx/5xx, 1 failed) in 2.00s, 20 requests, 10.0 req/s; \
             interrupted: 3 jobs not done and the rest of the input not read"
        );
    }
}
