//! Offline demo: starts a local HTTP server on 127.0.0.1, fetches 100 URLs from it with
//! ratefetch at `--rate 20/s --burst 1` (with 16 workers eager to go faster), and shows what
//! the *server* saw: requests per 100 ms and the busiest 1-second window, against the
//! promise that no window of length T holds more than B + R·T requests.
//!
//!     cargo run --release --example offline_demo

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use ratefetch::config::{InputSource, OutputTarget};
use ratefetch::units::parse_rate;
use ratefetch::{Config, Shutdown};

const RATE: f64 = 20.0;
const URLS: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server: records the arrival time of every request, answers a small HTML page.
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    log.lock().expect("log").push(Instant::now());
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"<html><title>demo</title></html>",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let dir = tempfile::tempdir()?;
    let list = dir.path().join("urls.txt");
    let lines: Vec<String> = (0..URLS)
        .map(|i| format!("http://{addr}/page/{i}"))
        .collect();
    std::fs::write(&list, lines.join("\n"))?;
    let report = dir.path().join("report.csv");

    let config = Config {
        input: InputSource::Path(list),
        output: OutputTarget::Path(report.clone()),
        rate: parse_rate(&format!("{RATE}/s"))?,
        concurrency: 16,
        workers: 16,
        quiet: true,
        no_proxy: true,
        ..Config::default()
    };
    println!("fetching {URLS} URLs from {addr} at {RATE}/s, burst 1, 16 workers…");
    let summary = ratefetch::run(config, Shutdown::new()).await?;
    println!("ratefetch: {summary}");
    let rows = std::fs::read_to_string(&report)?.lines().count() - 1;
    println!("report: {rows} rows (one per URL)");

    let times = arrivals.lock().expect("log").clone();
    let t0 = times[0];
    let mut buckets = vec![0usize; 1 + (times[times.len() - 1] - t0).as_millis() as usize / 100];
    for t in &times {
        buckets[(*t - t0).as_millis() as usize / 100] += 1;
    }
    println!("\nrequests per 100 ms at the server (each # is one request):");
    for (i, n) in buckets.iter().enumerate() {
        println!("{:>6} ms {}", i * 100, "#".repeat(*n));
    }
    let window = Duration::from_secs(1);
    let worst = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < window)
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = (times[times.len() - 1] - t0).as_secs_f64();
    println!(
        "\nbusiest 1 s window: {worst} requests (promise: at most B + R·T = 1 + {RATE} = {})",
        1.0 + RATE
    );
    println!(
        "mean rate: {:.2}/s over {:.2} s",
        (times.len() - 1) as f64 / span,
        span
    );
    Ok(())
}
