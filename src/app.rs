//! The program around a run: `run_mode` matches a `Mode` once, `watch_signals` turns Ctrl-C
//! and SIGTERM into a `Shutdown`, `finish` tells the user how it went and picks the exit
//! code, and `install_panic_hook` keeps an internal error to one line. `main.rs` calls them
//! in that order; tests and other programs may call them too.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use crate::config::{Mode, OutputTarget};
use crate::error::{self, exit, Error};
use crate::plan::Plan;
use crate::progress::Summary;
use crate::rerun::{self, RetrySummary};
use crate::shutdown::Shutdown;

/// What a mode did, when it ended or was stopped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Report {
    /// A fetch run, and where its report went (an interrupted run tells how to finish it).
    Fetched {
        /// What the run did.
        summary: Summary,
        /// Where the report went.
        output: OutputTarget,
    },
    /// A `--retry-failed` run.
    Retried(RetrySummary),
    /// A `--plan`: nothing was sent; the plan went to stdout.
    Planned(Plan),
}

/// How a mode ended, as far as the exit code and the hints go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The mode did what it was asked (per-URL failures are rows, not failures).
    Finished,
    /// Ctrl-C or SIGTERM stopped it; the output is flushed and valid.
    Interrupted,
    /// It stopped at a quota or budget (`--on-quota stop`, `--budget`); the output is flushed
    /// and valid, `--resume` goes on.
    AtQuota,
}

impl Report {
    fn ending(&self) -> Ending {
        let summary = match self {
            Report::Fetched { summary, .. } => summary,
            Report::Retried(r) => &r.run,
            Report::Planned(_) => return Ending::Finished,
        };
        if summary.interrupted {
            Ending::Interrupted
        } else if summary.stopped_at.is_some() {
            Ending::AtQuota
        } else {
            Ending::Finished
        }
    }
}

/// Runs `mode` until it ends or `shutdown` stops it. The one place that matches a `Mode`.
pub async fn run_mode(mode: Mode, shutdown: Shutdown) -> Result<Report, Error> {
    match mode {
        Mode::Fetch(config) => {
            let output = config.output.clone();
            let summary = crate::run(config, shutdown).await?;
            Ok(Report::Fetched { summary, output })
        }
        Mode::RetryFailed { config, report } => rerun::retry_failed(config, &report, shutdown)
            .await
            .map(Report::Retried),
        Mode::Plan(config) => {
            let plan = crate::plan(config).await?;
            // The plan is this mode's output, as the report is a fetch's.
            let mut out = std::io::stdout().lock();
            writeln!(out, "{plan}")
                .and_then(|()| out.flush())
                .map_err(|source| Error::Output {
                    path: OutputTarget::Stdout.display_path(),
                    source,
                })?;
            Ok(Report::Planned(plan))
        }
    }
}

/// The exit code of a mode's result (DESIGN.md §2): 0 finished, 130 interrupted, 75 stopped
/// at a quota or budget; an error's
/// code is `error::exit_code`'s.
pub fn exit_code(result: &Result<Report, Error>) -> u8 {
    match result {
        Ok(report) => match report.ending() {
            Ending::Finished => exit::OK,
            Ending::Interrupted => exit::INTERRUPTED,
            Ending::AtQuota => exit::QUOTA,
        },
        Err(e) => error::exit_code(e),
    }
}

/// Prints on stderr what the user needs to know about `result`, each line prefixed
/// `ratefetch: ` (with `quiet`, an error only), and returns the exit code.
pub fn finish(result: &Result<Report, Error>, quiet: bool) -> u8 {
    for line in epilogue(result, quiet, || resume_command(std::env::args_os())) {
        eprintln!("ratefetch: {line}");
    }
    exit_code(result)
}

/// The lines `finish` prints: the summary, a note, and after an interruption how to go on;
/// or the error (none for a broken pipe, a normal way for a pipeline to end).
/// `resume_command` is called only when its hint is printed.
fn epilogue(
    result: &Result<Report, Error>,
    quiet: bool,
    resume_command: impl FnOnce() -> String,
) -> Vec<String> {
    let report = match result {
        Err(e) if error::exit_code(e) == exit::OK => return Vec::new(),
        Err(e) => return vec![e.to_string()],
        Ok(_) if quiet => return Vec::new(),
        Ok(report) => report,
    };
    let interrupted = report.ending() != Ending::Finished;
    let mut lines = Vec::new();
    match report {
        Report::Fetched { summary, output } => {
            lines.push(summary.to_string());
            if interrupted {
                lines.push(match output {
                    OutputTarget::Stdout => {
                        "to make a run resumable, write the report with -o FILE".to_string()
                    }
                    OutputTarget::Path(_) => format!("to finish, run: {}", resume_command()),
                });
            }
        }
        // Its text went to stdout; stderr has nothing to add.
        Report::Planned(_) => {}
        Report::Retried(r) => {
            lines.push(r.run.to_string());
            let mut note = format!("retried {} rows; {} now succeed", r.retried, r.now_ok);
            if r.cut > 0 {
                note.push_str(&format!(
                    "; cut a torn last row ({} bytes): run with --resume to fetch it again",
                    r.cut
                ));
            }
            lines.push(note);
            if interrupted {
                lines.push(
                    "the report holds what was retried; run the same command again for the rest"
                        .to_string(),
                );
            }
        }
    }
    lines
}

/// The command line `args` (the program first) with `--resume` added (if it is not there),
/// quoted for a POSIX shell.
fn resume_command(args: impl IntoIterator<Item = OsString>) -> String {
    // Lossy: an argument that is not UTF-8 must not panic here, after a Ctrl-C.
    let mut args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Whether `args` (the program first) ask for a subcommand: its name as the first argument
/// wins over a file of that name (`./audit` reads the file).
pub fn subcommand(args: &[OsString]) -> Option<&'static str> {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("audit") => Some("audit"),
        Some("merge") => Some("merge"),
        Some("enqueue") => Some("enqueue"),
        Some("completions") => Some("completions"),
        Some("man") => Some("man"),
        _ => None,
    }
}

/// Parses a subcommand's arguments (`args` is the whole command line, `ratefetch NAME …`)
/// as a program of its own, `ratefetch NAME`. `Err` is the exit code when there is nothing
/// to run: --help or --version printed (0), or a usage error printed in one line (2).
fn parse_subcommand<C: clap::Parser>(name: &str, args: Vec<OsString>) -> Result<C, u8> {
    let program = format!("ratefetch {name}");
    let argv = std::iter::once(OsString::from(&program)).chain(args.into_iter().skip(2));
    match C::try_parse_from(argv) {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(exit::OK)
        }
        Err(e) => {
            let line = crate::cli::usage_line(&e);
            eprintln!("{program}: {}", line.trim_start_matches("error: "));
            Err(exit::USAGE)
        }
    }
}

/// `ratefetch audit LOG...`: prints the audit on stdout and returns the exit code: 0 every
/// limit held, 1 one was broken, 2 a usage error or a log that cannot be read.
pub fn audit_main(args: Vec<OsString>) -> u8 {
    let cli: crate::cli::AuditCli = match parse_subcommand("audit", args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    #[cfg(not(feature = "plot"))]
    if let Some(path) = &cli.plot {
        if let Err(code) = plot(&cli, &crate::audit::Asked::default(), path) {
            return code;
        }
    }
    let asked = cli.asked();
    match crate::audit::audit(&cli.logs, &asked, cli.tolerance) {
        Ok(audit) => {
            for line in &audit.lines {
                println!("{line}");
            }
            if let Some(path) = &cli.plot {
                if let Err(code) = plot(&cli, &asked, path) {
                    return code;
                }
            }
            if audit.held {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ratefetch audit: {e}");
            exit::USAGE
        }
    }
}

/// `audit --plot`: draws the picture and says so on stdout.
#[cfg(feature = "plot")]
fn plot(
    cli: &crate::cli::AuditCli,
    asked: &crate::audit::Asked,
    path: &std::path::Path,
) -> Result<(), u8> {
    match crate::plot::plot(&cli.logs, asked, path, cli.plot_hosts) {
        Ok(p) => {
            let hosts = if p.hosts.is_empty() {
                String::new()
            } else {
                format!(", hosts {}", p.hosts.join(", "))
            };
            println!(
                "plot: {} ({} requests, {} s per point{hosts})",
                path.display(),
                p.requests,
                p.bin_seconds
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("ratefetch audit: {e}");
            Err(exit::USAGE)
        }
    }
}

#[cfg(not(feature = "plot"))]
fn plot(_: &crate::cli::AuditCli, _: &crate::audit::Asked, _: &std::path::Path) -> Result<(), u8> {
    eprintln!(
        "ratefetch audit: --plot: this ratefetch was built without the plot feature \
         (cargo install --path . builds it; --no-default-features leaves it out)"
    );
    Err(exit::USAGE)
}

/// `ratefetch completions SHELL`: prints the completion script; returns the exit code (1 if
/// stdout cannot take it, 2 a usage error).
pub fn completions_main(args: Vec<OsString>) -> u8 {
    let cli: crate::cli::CompletionsCli = match parse_subcommand("completions", args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let mut script = Vec::new();
    clap_complete::generate(
        cli.shell,
        &mut crate::cli::command_tree(),
        "ratefetch",
        &mut script,
    );
    print_out("completions", &script)
}

/// `ratefetch man [SUBCOMMAND]`: prints the man page (roff) of ratefetch or of one
/// subcommand (ratefetch-audit(1), …); returns the exit code.
pub fn man_main(args: Vec<OsString>) -> u8 {
    let cli: crate::cli::ManCli = match parse_subcommand("man", args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let tree = crate::cli::command_tree();
    // Named as the pages the main one refers to: ratefetch-audit(1), …
    let page = match cli.subcommand.as_deref() {
        Some("audit") => Some(("audit", "ratefetch-audit")),
        Some("merge") => Some(("merge", "ratefetch-merge")),
        Some("enqueue") => Some(("enqueue", "ratefetch-enqueue")),
        Some("completions") => Some(("completions", "ratefetch-completions")),
        Some("man") => Some(("man", "ratefetch-man")),
        _ => None,
    };
    let command = match page.and_then(|(sub, page)| Some((tree.find_subcommand(sub)?, page))) {
        Some((sub, page)) => sub.clone().name(page),
        None => tree,
    };
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command).render(&mut page);
    if let Err(e) = rendered {
        eprintln!("ratefetch man: {e}");
        return exit::FAILURE;
    }
    print_out("man", &page)
}

/// Writes a subcommand's output to stdout: 0, or 1 with one line if it cannot be written
/// (a closed pipe ends quietly, with 0).
fn print_out(name: &str, bytes: &[u8]) -> u8 {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("ratefetch {name}: cannot write to stdout: {e}");
            exit::FAILURE
        }
    }
}

/// `ratefetch merge REPORT... -o OUT`: writes the merged report and a one-line summary on
/// stderr; returns the exit code: 0 merged, 1 a report refused or an I/O error (one line
/// naming the file; OUT is left as it was), 2 a usage error.
pub fn merge_main(args: Vec<OsString>) -> u8 {
    let cli: crate::cli::MergeCli = match parse_subcommand("merge", args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match crate::merge::merge_with(&cli.reports, &cli.output, cli.skip_damaged) {
        Ok(summary) => {
            if !cli.quiet {
                eprintln!("ratefetch merge: {}: {summary}", cli.output.display());
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("ratefetch merge: {e}");
            exit::FAILURE
        }
    }
}

/// `ratefetch enqueue INPUT --redis URL --queue NAME`: fills the queue and prints a one-line
/// summary on stderr; returns the exit code: 0 done, 1 Redis or the input failed (or the queue
/// holds another list), 2 a usage error.
pub fn enqueue_main(args: Vec<OsString>) -> u8 {
    let cli: crate::cli::EnqueueCli = match parse_subcommand("enqueue", args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let max_unread = cli.max_unread;
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ratefetch enqueue: {e}");
            return exit::USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ratefetch enqueue: cannot start the runtime: {e}");
            return exit::FAILURE;
        }
    };
    let quiet = config.quiet;
    let queue = config.queue.clone().unwrap_or_default();
    let result = runtime.block_on(crate::enqueue(config, max_unread));
    runtime.shutdown_background();
    match result {
        Ok(done) => {
            if !quiet {
                eprintln!(
                    "ratefetch enqueue: {queue}: {} jobs added, {} already in the queue; the \
                     list is complete",
                    done.added, done.already
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("ratefetch enqueue: {e}");
            error::exit_code(&e)
        }
    }
}

/// A panic inside a job becomes that job's row (see `pool`); the user sees one line, not a
/// backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("ratefetch: internal error{location}: {message}");
    }));
}

/// First Ctrl-C or SIGTERM: stop (in-flight requests get the `grace` period). Second: abort.
/// The signal streams are made once, before the first signal, so that no signal between
/// the two is missed.
pub async fn watch_signals(shutdown: Shutdown, grace: Duration, quiet: bool) {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ratefetch: cannot watch for Ctrl-C: {e}");
            return;
        }
    };
    signals.recv().await;
    shutdown.stop.cancel();
    if !quiet {
        eprintln!(
            "ratefetch: stopping; requests in flight have {} to finish (Ctrl-C again to quit now)",
            humantime::format_duration(grace)
        );
    }
    signals.recv().await;
    shutdown.abort.cancel();
}

#[cfg(unix)]
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct StopSignals(tokio::signal::windows::CtrlC);

#[cfg(not(unix))]
impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        tokio::signal::windows::ctrl_c().map(StopSignals)
    }

    async fn recv(&mut self) {
        self.0.recv().await;
    }
}

/// Up to this global rate (one request per this period or slower) a run gets one runtime
/// thread. One thread serves some 40,000 small requests a second on loopback, so 5,000/s
/// leaves it room for TLS, bodies and titles; faster or unlimited runs get a thread per core.
const ONE_THREAD_PERIOD: Duration = Duration::from_micros(200);

/// The runtime of a run. At a fixed rate a run mostly waits, and a multi-thread runtime
/// wakes an idle thread to look for work on nearly every wake-up (a token, a response): at
/// 2,000/s that is some three context switches a request more than one thread makes, and
/// with a pacer on tokio's timer about twice the CPU. A run limited to a rate one thread
/// keeps up with gets one thread; others get one per core.
pub fn runtime_for(rate: crate::units::Rate) -> tokio::runtime::Builder {
    match rate.period() {
        Some(period) if period >= ONE_THREAD_PERIOD => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, InputFormat, InputSource};
    use crate::error::UsageError;
    use crate::progress::Stats;
    use crate::sink::COLUMNS;
    use tokio::runtime::RuntimeFlavor;

    fn summary(interrupted: bool) -> Summary {
        Summary {
            stats: Stats {
                rows: 3,
                ..Stats::default()
            },
            elapsed: Duration::from_secs(1),
            interrupted,
            stopped_at: None,
            not_done: u64::from(interrupted),
            input_finished: !interrupted,
        }
    }

    fn fetched(interrupted: bool, output: OutputTarget) -> Result<Report, Error> {
        Ok(Report::Fetched {
            summary: summary(interrupted),
            output,
        })
    }

    fn retried(interrupted: bool, cut: u64) -> Result<Report, Error> {
        Ok(Report::Retried(RetrySummary {
            run: summary(interrupted),
            retried: 3,
            now_ok: 2,
            cut,
        }))
    }

    fn planned() -> Result<Report, Error> {
        let hosts = std::collections::HashMap::from([("a.test".to_string(), 3)]);
        Ok(Report::Planned(crate::plan::simulate(
            &Config::default(),
            &hosts,
            &crate::plan::Past::default(),
        )))
    }

    #[test]
    fn a_plan_adds_nothing_on_stderr() {
        assert!(lines(&planned(), false).is_empty());
    }

    fn to_file() -> OutputTarget {
        OutputTarget::Path("out.csv".into())
    }

    fn lines(result: &Result<Report, Error>, quiet: bool) -> Vec<String> {
        epilogue(result, quiet, || {
            "ratefetch list.txt -o out.csv --resume".into()
        })
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let usage = Error::Usage(UsageError::new("--rate", "bad"));
        let input = Error::Input {
            path: "list.txt".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let pipe = Error::Output {
            path: "<stdout>".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        };
        let cases = [
            (fetched(false, to_file()), exit::OK),
            (fetched(true, to_file()), exit::INTERRUPTED),
            (fetched(true, OutputTarget::Stdout), exit::INTERRUPTED),
            (retried(false, 0), exit::OK),
            (retried(true, 0), exit::INTERRUPTED),
            (planned(), exit::OK),
            (Err(usage), exit::USAGE),
            (Err(input), exit::FAILURE),
            (Err(pipe), exit::OK),
        ];
        for (result, code) in cases {
            assert_eq!(exit_code(&result), code, "{result:?}");
        }
        assert_eq!(
            (exit::OK, exit::FAILURE, exit::USAGE, exit::INTERRUPTED),
            (0, 1, 2, 130)
        );
    }

    #[test]
    fn a_finished_run_prints_its_summary_only() {
        let result = fetched(false, to_file());
        assert_eq!(lines(&result, false), [summary(false).to_string()]);
        assert!(lines(&result, true).is_empty());
    }

    #[test]
    fn an_interrupted_run_to_a_file_tells_how_to_resume_it() {
        let l = lines(&fetched(true, to_file()), false);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0], summary(true).to_string());
        assert_eq!(
            l[1],
            "to finish, run: ratefetch list.txt -o out.csv --resume"
        );
        assert!(lines(&fetched(true, to_file()), true).is_empty());
    }

    #[test]
    fn an_interrupted_run_to_stdout_asks_for_an_output_file() {
        let l = lines(&fetched(true, OutputTarget::Stdout), false);
        assert_eq!(
            l[1],
            "to make a run resumable, write the report with -o FILE"
        );
        let asked = std::cell::Cell::new(false);
        epilogue(&fetched(true, OutputTarget::Stdout), false, || {
            asked.set(true);
            String::new()
        });
        assert!(
            !asked.get(),
            "the resume command is built only for its hint"
        );
    }

    #[test]
    fn a_retry_run_notes_what_it_retried_and_what_it_cut() {
        let l = lines(&retried(false, 0), false);
        assert_eq!(l[1], "retried 3 rows; 2 now succeed");
        assert_eq!(l.len(), 2);
        let l = lines(&retried(true, 17), false);
        assert_eq!(
            l[1..],
            [
                "retried 3 rows; 2 now succeed; cut a torn last row (17 bytes): run with --resume to fetch it again",
                "the report holds what was retried; run the same command again for the rest",
            ]
        );
    }

    #[test]
    fn errors_print_one_line_even_when_quiet_but_a_broken_pipe_prints_none() {
        let usage = Err(Error::Usage(UsageError::new("--fields", "unknown column")));
        let want = ["invalid value for --fields: unknown column"];
        assert_eq!(lines(&usage, false), want);
        assert_eq!(lines(&usage, true), want);
        let pipe = Err(Error::Output {
            path: "<stdout>".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        });
        assert!(lines(&pipe, false).is_empty());
    }

    #[test]
    fn resume_command_adds_resume_once_and_quotes_for_a_shell() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            resume_command(args(&["ratefetch", "list.txt", "-o", "out.csv"])),
            "ratefetch list.txt -o out.csv --resume"
        );
        assert_eq!(
            resume_command(args(&["ratefetch", "--resume", "-o", "my report.csv"])),
            "ratefetch --resume -o 'my report.csv'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("-H"), "-H");
        assert_eq!(shell_quote("X-A: 1"), "'X-A: 1'");
    }

    fn quiet_config(dir: &std::path::Path) -> Config {
        Config {
            quiet: true,
            no_proxy: true,
            output: OutputTarget::Path(dir.join("out.csv")),
            ..Config::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_mode_dispatches_a_fetch_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# nothing to fetch\n").unwrap();
        let config = Config {
            input: InputSource::Path(list),
            ..quiet_config(dir.path())
        };
        let result = run_mode(Mode::Fetch(config), Shutdown::new()).await;
        match &result {
            Ok(Report::Fetched { summary, output }) => {
                assert_eq!((summary.stats.rows, summary.interrupted), (0, false));
                assert_eq!(*output, OutputTarget::Path(dir.path().join("out.csv")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exit_code(&result), exit::OK);
        let header = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        assert_eq!(header.trim_end(), COLUMNS.join(","));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_mode_dispatches_retry_failed_to_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.csv");
        std::fs::write(&report, format!("{}\n", COLUMNS.join(","))).unwrap();
        let mode = Mode::RetryFailed {
            config: Config {
                output: OutputTarget::Stdout,
                ..quiet_config(dir.path())
            },
            report: report.clone(),
        };
        let result = run_mode(mode, Shutdown::new()).await;
        match &result {
            Ok(Report::Retried(r)) => assert_eq!((r.retried, r.now_ok, r.cut), (0, 0, 0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(exit_code(&result), exit::OK);
        assert!(!dir.path().join("out.csv").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_mode_validates_the_config_before_opening_anything() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            input: InputSource::Path(dir.path().join("missing.txt")),
            input_format: Some(InputFormat::Text),
            url_column: Some("link".into()),
            ..quiet_config(dir.path())
        };
        let result = run_mode(Mode::Fetch(config), Shutdown::new()).await;
        assert!(
            matches!(&result, Err(Error::Usage(e)) if e.flag == "--url-column"),
            "{result:?}"
        );
        assert_eq!(exit_code(&result), exit::USAGE);
        assert!(!dir.path().join("out.csv").exists());
    }

    fn flavor(rate: crate::units::Rate) -> RuntimeFlavor {
        let runtime = runtime_for(rate).enable_all().build().unwrap();
        runtime.handle().runtime_flavor()
    }

    #[test]
    fn a_run_at_a_rate_one_thread_keeps_up_with_gets_one_thread() {
        use crate::units::Rate;
        let every = |us| Rate::Every(Duration::from_micros(us));
        assert_eq!(flavor(every(500)), RuntimeFlavor::CurrentThread); // 2,000/s
        assert_eq!(flavor(every(200)), RuntimeFlavor::CurrentThread); // 5,000/s
        assert_eq!(flavor(every(100)), RuntimeFlavor::MultiThread); // 10,000/s
        assert_eq!(flavor(Rate::Unlimited), RuntimeFlavor::MultiThread);
    }
}
