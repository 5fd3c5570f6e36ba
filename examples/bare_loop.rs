//! The ceiling of ratefetch's HTTP stack: one `reqwest::Client` built as `fetch::build_client`
//! builds it (rustls, the same features, pool, decompression), N tasks pulling URLs from a
//! channel, each GETs and reads the whole body; no CSV, no rate limiter, no retries. At the
//! end one line on stderr: requests, ok (2xx) count, seconds. A benchmark peer (`bench/run`).
//!
//!     bare_loop [-c 64] [--cacert ca.pem] [LIST]      (LIST: one URL a line; stdin without it)

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Requests in flight at once.
    #[arg(short, long, default_value_t = 64)]
    concurrency: usize,
    /// Trust only the PEM certificates of FILE (as ratefetch's --cacert).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// The URL list, one a line; stdin without it.
    list: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut text = String::new();
    match &args.list {
        Some(path) => text = std::fs::read_to_string(path).context("reading the list")?,
        None => _ = std::io::stdin().read_to_string(&mut text)?,
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .gzip(true)
        .brotli(true)
        .zstd(true)
        .deflate(true)
        .user_agent(concat!("ratefetch/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path).context("reading --cacert")?;
        builder = builder.tls_built_in_root_certs(false);
        for root in reqwest::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(root);
        }
    }
    let client = builder.build()?;

    let started = Instant::now();
    let (tx, rx) = async_channel::unbounded::<String>();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        tx.send(line.to_string()).await?;
    }
    drop(tx);
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (client, rx) = (client.clone(), rx.clone());
            tokio::spawn(async move {
                let (mut requests, mut ok) = (0u64, 0u64);
                while let Ok(url) = rx.recv().await {
                    requests += 1;
                    if let Ok(response) = client.get(&url).send().await {
                        let success = response.status().is_success();
                        if response.bytes().await.is_ok() && success {
                            ok += 1;
                        }
                    }
                }
                (requests, ok)
            })
        })
        .collect();
    let (mut requests, mut ok) = (0, 0);
    for task in tasks {
        let (r, o) = task.await?;
        requests += r;
        ok += o;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("requests {requests} ok {ok} seconds {seconds:.3}");
    Ok(())
}
