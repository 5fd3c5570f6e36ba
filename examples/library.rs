//! ratefetch as a library: fetch the URLs given as arguments at 2 requests per second, at
//! most 2 at once per host, and print the report (CSV) to stdout.
//!
//!     cargo run --example library -- https://example.com/ https://www.rust-lang.org/
//!
//! The same `Config` the command line builds; every field has the documented default.

use std::io::Write;
use std::num::NonZeroU32;
use std::time::Duration;

use ratefetch::config::{InputSource, OutputTarget};
use ratefetch::units::parse_rate;
use ratefetch::{Config, Shutdown};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        eprintln!("usage: cargo run --example library -- URL [URL…]");
        std::process::exit(2);
    }
    // The library reads a list from a file (or stdin); write the arguments to one.
    let dir = tempfile::tempdir()?;
    let list = dir.path().join("urls.txt");
    std::fs::File::create(&list)?.write_all(urls.join("\n").as_bytes())?;

    let config = Config {
        input: InputSource::Path(list),
        output: OutputTarget::Stdout,
        rate: parse_rate("2/s")?,
        burst: NonZeroU32::MIN,
        per_host_concurrency: Some(2),
        timeout: Duration::from_secs(15),
        ..Config::default()
    };
    // Stop on Ctrl-C: requests in flight finish, their rows are written.
    let shutdown = Shutdown::new();
    let stop = shutdown.stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let summary = ratefetch::run(config, shutdown).await?;
    eprintln!("{summary}");
    Ok(())
}
