//! The `ratefetch` binary: parse arguments, build the runtime, run the library, map the
//! result to an exit code. Everything else lives in the library (`ratefetch::app`).

use std::process::ExitCode;

use clap::Parser;
use ratefetch::app;
use ratefetch::cli::{usage_line, Cli};
use ratefetch::error::exit;
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
    let runtime = match app::runtime_for(mode.config().rate).enable_all().build() {
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
