//! The `ratefetch` binary: parse arguments, build the runtime, run the library, map the
//! result to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use ratefetch::cli::{usage_line, Cli};
use ratefetch::error::{exit, exit_code};
use ratefetch::Shutdown;

fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "ratefetch: {}",
                usage_line(&e).trim_start_matches("error: ")
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ratefetch: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let quiet = config.quiet;
    let retrying = config.retry_failed.is_some();
    let to_stdout = config.output == ratefetch::config::OutputTarget::Stdout && !retrying;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ratefetch: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let shutdown = Shutdown::new();
    runtime.spawn(watch_signals(shutdown.clone(), config.grace, quiet));
    let result = match config.retry_failed.clone() {
        Some(report) => runtime
            .block_on(ratefetch::rerun::retry_failed(config, &report, shutdown))
            .map(|r| {
                let mut note = format!("retried {} rows; {} now succeed", r.retried, r.now_ok);
                if r.cut > 0 {
                    note.push_str(&format!(
                        "; cut a torn last row ({} bytes): run with --resume to fetch it again",
                        r.cut
                    ));
                }
                (r.run, Some(note))
            }),
        None => runtime
            .block_on(ratefetch::run(config, shutdown))
            .map(|s| (s, None)),
    };
    // Do not wait for the input thread or idle connections.
    runtime.shutdown_background();
    match result {
        Ok((summary, note)) => {
            if !quiet {
                eprintln!("ratefetch: {summary}");
                if let Some(note) = note {
                    eprintln!("ratefetch: {note}");
                }
                if summary.interrupted {
                    if retrying {
                        eprintln!("ratefetch: the report holds what was retried; run the same command again for the rest");
                    } else if to_stdout {
                        eprintln!(
                            "ratefetch: to make a run resumable, write the report with -o FILE"
                        );
                    } else {
                        eprintln!("ratefetch: to finish, run: {}", resume_command());
                    }
                }
            }
            ExitCode::from(if summary.interrupted {
                exit::INTERRUPTED
            } else {
                exit::OK
            })
        }
        Err(e) => {
            let code = exit_code(&e);
            if code != exit::OK {
                eprintln!("ratefetch: {e}");
            }
            ExitCode::from(code)
        }
    }
}

/// This run's command line with `--resume` added (if it is not there), quoted for a POSIX
/// shell.
fn resume_command() -> String {
    // args_os: an argument that is not UTF-8 must not panic here, after a Ctrl-C.
    let mut args: Vec<String> = std::env::args_os()
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

/// A panic inside a job becomes that job's row (see `pool`); the user sees one line, not a
/// backtrace.
fn install_panic_hook() {
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

/// First Ctrl-C or SIGTERM: stop (in-flight requests get the grace period). Second: abort.
/// The signal streams are made once, before the first signal, so that no signal between
/// the two is missed.
async fn watch_signals(shutdown: Shutdown, grace: std::time::Duration, quiet: bool) {
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
