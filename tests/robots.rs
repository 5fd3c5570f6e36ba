//! `--respect-robots` (RFC 9309) against servers started here: disallowed URLs are rows,
//! not requests; robots.txt is fetched once per host; 4xx allows, 5xx or no answer
//! disallows; a Crawl-delay slows the host down, checked at the server.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::binary::ratefetch_bin;
use support::raw::RawServer;
use support::report::{parse_csv, Row};
use support::windows::check_rate;

/// A server whose /robots.txt answers `status` with `body`, and every other path 200. It
/// records each request's path and arrival time.
/// Each request's path and arrival time.
type Log = Arc<Mutex<Vec<(String, Instant)>>>;

fn site(status: u16, body: &'static str) -> (RawServer, Log) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let server = RawServer::start(move |mut stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let at = Instant::now();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push((path.clone(), at));
        let (code, text) = if path == "/robots.txt" {
            (status, body)
        } else {
            (200, "page")
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    });
    (server, log)
}

fn run(urls: &[String]) -> Vec<Row> {
    run_with(urls, &[])
}

fn run_with(urls: &[String], args: &[&str]) -> Vec<Row> {
    let out = ratefetch_bin()
        .args(["-q", "-r", "unlimited", "--respect-robots"])
        .args(args)
        .write_stdin(urls.join("\n"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, mut rows) = parse_csv(&out.stdout);
    rows.sort_by_key(Row::index);
    rows
}

fn paths(log: &Mutex<Vec<(String, Instant)>>) -> Vec<String> {
    log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
}

#[test]
fn disallowed_urls_are_rows_not_requests_and_robots_txt_is_fetched_once() {
    let (server, log) = site(200, "User-agent: *\nDisallow: /private\n");
    let urls: Vec<String> = (0..6)
        .map(|i| {
            server.url(&if i % 2 == 0 {
                format!("/public/{i}")
            } else {
                format!("/private/{i}")
            })
        })
        .collect();
    let rows = run(&urls);
    for (i, row) in rows.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(row.get("status"), "200");
        } else {
            assert_eq!(row.get("error_kind"), "robots_disallowed");
            assert_eq!(row.get("attempts"), "0");
        }
    }
    let seen = paths(&log);
    assert_eq!(
        seen.iter().filter(|p| *p == "/robots.txt").count(),
        1,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|p| p.starts_with("/private")), "{seen:?}");
}

#[test]
fn robots_txt_answering_4xx_allows_everything() {
    let (server, log) = site(404, "");
    let rows = run(&[server.url("/private/1"), server.url("/a")]);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get("status") == "200"));
    assert_eq!(paths(&log).len(), 3);
}

#[test]
fn robots_txt_answering_5xx_disallows_the_host_and_says_so() {
    let (server, log) = site(503, "");
    let rows = run(&[server.url("/a"), server.url("/b")]);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.get("error_kind"), "robots_disallowed");
        assert!(row.get("error").contains("503"), "{}", row.get("error"));
    }
    assert_eq!(paths(&log), ["/robots.txt"]);
}

#[test]
fn unreachable_robots_txt_disallows_the_host() {
    let rows = run(&[format!("{}a", support::raw::closed_port_url())]);
    assert_eq!(rows[0].get("error_kind"), "robots_disallowed");
    assert!(
        rows[0].get("error").contains("unreachable"),
        "{}",
        rows[0].get("error")
    );
}

#[test]
fn crawl_delay_slows_the_host_down() {
    let (server, log) = site(200, "User-agent: *\nCrawl-delay: 0.2\n");
    let urls: Vec<String> = (0..8).map(|i| server.url(&format!("/p/{i}"))).collect();
    let rows = run(&urls);
    assert!(rows.iter().all(|r| r.get("status") == "200"));
    let times: Vec<Instant> = log.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 9, "robots.txt and the eight pages");
    // One request per 200 ms (5/s, burst 1) at the server, with 10 ms of tolerance,
    // robots.txt included: the first page waits the Crawl-delay after it too.
    let check = check_rate(&times, 5.0, 1, Duration::from_millis(10));
    assert!(
        check.held,
        "{} requests within {:?}",
        check.worst_count, check.worst_span
    );
}

#[test]
fn the_group_for_the_user_agent_sent_applies() {
    let txt = "User-agent: *\nDisallow: /\n\nUser-agent: ratefetch\nAllow: /\n";
    let (server, _) = site(200, txt);
    let rows = run(&[server.url("/page")]);
    assert_eq!(
        rows[0].get("status"),
        "200",
        "ratefetch's own group allows it"
    );
    let (server, log) = site(200, txt);
    let rows = run_with(&[server.url("/page")], &["-H", "User-Agent: otherbot/2"]);
    assert_eq!(
        rows[0].get("error_kind"),
        "robots_disallowed",
        "otherbot falls under *"
    );
    assert_eq!(paths(&log), ["/robots.txt"]);
}
