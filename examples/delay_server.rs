//! A tiny HTTP/1.1 server that answers every request after a fixed delay: the "latency-bound"
//! peer of the benchmarks (`bench/run`), where the achieved rate of a client with N requests
//! in flight is capped by Little's law at N / delay.
//!
//!     cargo run --release --example delay_server -- 127.0.0.1:18200 100ms

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18200".into());
    let delay = args
        .next()
        .map(|d| ratefetch::units::parse_duration(&d))
        .transpose()?
        .unwrap_or(Duration::from_millis(100));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("delay_server: {addr}, {delay:?} per request; GET /__count for the answered count");
    // Requests answered so far, so that a benchmark counts what the server saw.
    let answered = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let answered = answered.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answered = answered.clone();
                async move {
                    if req.uri().path() == "/__count" {
                        let n = answered.load(Ordering::Relaxed).to_string();
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(n))));
                    }
                    tokio::time::sleep(delay).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
