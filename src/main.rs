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
    let result = runtime.block_on(ratefetch::run(config, shutdown));
    // Do not wait for the input thread or idle connections.
    runtime.shutdown_background();
    match result {
        Ok(summary) => {
            if !quiet {
                eprintln!("ratefetch: {summary}");
                if summary.interrupted {
                    eprintln!("ratefetch: to finish, run: {}", resume_command());
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
    let mut args: Vec<String> = std::env::args().collect();
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
async fn watch_signals(shutdown: Shutdown, grace: std::time::Duration, quiet: bool) {
    stop_signal().await;
    shutdown.stop.cancel();
    if !quiet {
        eprintln!(
            "ratefetch: stopping; requests in flight have {} to finish (Ctrl-C again to quit now)",
            humantime::format_duration(grace)
        );
    }
    stop_signal().await;
    shutdown.abort.cancel();
}

#[cfg(unix)]
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
