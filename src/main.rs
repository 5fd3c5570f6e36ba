//! The `ratefetch` binary: parse arguments, build the runtime, run the library, map the
//! result to an exit code. Everything else lives in the library (`ratefetch::app`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ratefetch::app;
use ratefetch::cli::{usage_line, Cli};
use ratefetch::error::exit;
use ratefetch::units::Rate;
use ratefetch::Shutdown;

fn main() -> ExitCode {
    app::install_panic_hook();
    let args: Vec<_> = std::env::args_os().collect();
    match app::subcommand(&args) {
        Some("audit") => return ExitCode::from(app::audit_main(args)),
        Some("merge") => return ExitCode::from(app::merge_main(args)),
        Some("enqueue") => return ExitCode::from(app::enqueue_main(args)),
        Some("completions") => return ExitCode::from(app::completions_main(args)),
        Some("man") => return ExitCode::from(app::man_main(args)),
        _ => {}
    }
    let mode = match Cli::try_parse() {
        Ok(cli) => match cli.into_mode() {
            Ok(mode) => mode,
            Err(e) => {
                eprintln!("ratefetch: {e}");
                return ExitCode::from(exit::USAGE);
            }
        },
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
    let runtime = match runtime_for(mode.config().rate).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ratefetch: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let quiet = mode.quiet();
    let shutdown = Shutdown::new();
    runtime.spawn(app::watch_signals(shutdown.clone(), mode.grace(), quiet));
    let result = runtime.block_on(app::run_mode(mode, shutdown));
    // Do not wait for the input thread or idle connections.
    runtime.shutdown_background();
    ExitCode::from(app::finish(&result, quiet))
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
fn runtime_for(rate: Rate) -> tokio::runtime::Builder {
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
    use tokio::runtime::RuntimeFlavor;

    fn flavor(rate: Rate) -> RuntimeFlavor {
        let runtime = runtime_for(rate).enable_all().build().unwrap();
        runtime.handle().runtime_flavor()
    }

    #[test]
    fn a_run_at_a_rate_one_thread_keeps_up_with_gets_one_thread() {
        let every = |us| Rate::Every(Duration::from_micros(us));
        assert_eq!(flavor(every(500)), RuntimeFlavor::CurrentThread); // 2,000/s
        assert_eq!(flavor(every(200)), RuntimeFlavor::CurrentThread); // 5,000/s
        assert_eq!(flavor(every(100)), RuntimeFlavor::MultiThread); // 10,000/s
        assert_eq!(flavor(Rate::Unlimited), RuntimeFlavor::MultiThread);
    }
}
