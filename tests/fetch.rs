//! What one job produces: the cells of its row for each kind of response and each error
//! kind, through the library (`ratefetch::run`) against servers started here.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use ratefetch::Config;
use support::raw::RawServer;
use support::report::{run_lib, test_config, Row};
use support::server::Server;

fn one(config: Config, url: String) -> Row {
    let (summary, rows) = run_lib(config, &[url]);
    assert_eq!(summary.stats.rows, 1);
    assert_eq!(rows.len(), 1);
    rows.into_iter().next().unwrap()
}

fn no_retries() -> Config {
    Config {
        retries: 0,
        ..test_config()
    }
}

#[test]
fn success_row_has_status_final_url_size_type_title_and_start_time() {
    let server = Server::start();
    let row = one(test_config(), server.url("/html/Hello%20%26amp%3B%20World"));
    assert_eq!(row.get("status"), "200");
    assert_eq!(
        row.get("final_url"),
        server.url("/html/Hello%20%26amp%3B%20World")
    );
    assert_eq!(row.get("error_kind"), "");
    assert_eq!(row.get("attempts"), "1");
    assert_eq!(row.get("content_type"), "text/html; charset=utf-8");
    assert_eq!(row.get("title"), "Hello & World");
    let bytes: u64 = row.get("bytes").parse().unwrap();
    assert!(bytes > 50, "{bytes}");
    let started = row.get("started_at");
    assert!(started.ends_with('Z') && started.contains('T'), "{started}");
    humantime::parse_rfc3339(started).expect("RFC 3339");
}

#[test]
fn http_errors_are_rows_with_their_status() {
    let server = Server::start();
    let row = one(no_retries(), server.url("/status/404"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("404", ""));
    let row = one(no_retries(), server.url("/status/500"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("500", ""));
}

#[test]
fn redirects_are_followed_and_the_final_url_recorded() {
    let server = Server::start();
    let row = one(test_config(), server.url("/redirect/3"));
    assert_eq!(row.get("status"), "200");
    assert_eq!(row.get("final_url"), server.url("/redirect/0"));
    assert_eq!(server.wait_arrivals(4, Duration::from_secs(5)).len(), 4);
}

#[test]
fn redirect_loop_is_a_redirect_limit_row() {
    let server = Server::start();
    let config = Config {
        max_redirects: 3,
        ..no_retries()
    };
    let row = one(config, server.url("/loop"));
    assert_eq!(row.get("error_kind"), "redirect_limit");
    assert!(
        row.get("error").contains("more than 3 redirects"),
        "{}",
        row.get("error")
    );
    // The first request and three redirects followed; the fourth is refused.
    assert_eq!(server.arrivals().len(), 4);
}

#[test]
fn max_redirects_zero_reports_the_redirect_itself() {
    let server = Server::start();
    let config = Config {
        max_redirects: 0,
        ..no_retries()
    };
    let row = one(config, server.url("/redirect/2"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("302", ""));
}

#[test]
fn redirect_to_another_scheme_is_unsupported_scheme() {
    let server = Server::start();
    let row = one(no_retries(), server.url("/to-file"));
    assert_eq!(row.get("error_kind"), "unsupported_scheme");
    assert!(row.get("error").contains("file"), "{}", row.get("error"));
}

#[test]
fn bad_lines_are_invalid_url_and_unsupported_scheme_rows() {
    let server = Server::start();
    let lines = vec![
        "example.com/page".to_string(),
        "ftp://example.com/file".to_string(),
        "http://".to_string(),
        server.url("/ok"),
    ];
    let (_, rows) = run_lib(test_config(), &lines);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].get("error_kind"), "invalid_url");
    assert_eq!(
        rows[0].get("error"),
        "missing scheme; did you mean https://example.com/page?"
    );
    assert_eq!(rows[0].get("attempts"), "0");
    assert_eq!(rows[1].get("error_kind"), "unsupported_scheme");
    assert_eq!(rows[2].get("error_kind"), "invalid_url");
    assert_eq!(rows[3].get("status"), "200");
    assert_eq!(server.arrivals().len(), 1, "bad lines send nothing");
}

#[test]
fn unknown_host_is_a_dns_row() {
    let row = one(no_retries(), "http://no-such-host.invalid/".to_string());
    assert_eq!(row.get("error_kind"), "dns");
    assert_eq!(row.get("status"), "");
    assert_eq!(row.get("final_url"), "");
}

#[test]
fn closed_port_is_a_connect_row() {
    let row = one(no_retries(), support::raw::closed_port_url());
    assert_eq!(row.get("error_kind"), "connect");
    assert!(
        row.get("error").to_lowercase().contains("refused"),
        "{}",
        row.get("error")
    );
}

#[test]
fn slow_response_is_a_timeout_row() {
    let server = Server::start();
    let config = Config {
        timeout: Duration::from_millis(300),
        ..no_retries()
    };
    let row = one(config, server.url("/delay/5000"));
    assert_eq!(row.get("error_kind"), "timeout");
}

#[test]
fn timeout_covers_the_body_not_only_the_headers() {
    let server = Server::start();
    let config = Config {
        timeout: Duration::from_millis(500),
        ..no_retries()
    };
    // Headers come at once, then one byte per 200 ms for 20 bytes.
    let row = one(config, server.url("/drip/20"));
    assert_eq!(row.get("error_kind"), "timeout");
}

#[test]
fn body_over_the_cap_is_a_body_too_large_row_with_the_cap_read() {
    let server = Server::start();
    let config = Config {
        max_body: Some(1000),
        ..no_retries()
    };
    let row = one(config.clone(), server.url("/bytes/100000"));
    assert_eq!(row.get("status"), "200");
    assert_eq!(row.get("error_kind"), "body_too_large");
    assert_eq!(row.get("bytes"), "1000");
    let row = one(config, server.url("/stream/100000"));
    assert_eq!(row.get("error_kind"), "body_too_large");
}

#[test]
fn cap_applies_to_decompressed_bytes() {
    let server = Server::start();
    // 5 MB of 'a' compresses to a few KB.
    let config = Config {
        max_body: Some(100_000),
        ..no_retries()
    };
    let row = one(config, server.url("/gzip/5000000"));
    assert_eq!(row.get("error_kind"), "body_too_large");
    assert_eq!(row.get("bytes"), "100000");
}

#[test]
fn compressed_bodies_are_decoded() {
    let server = Server::start();
    let row = one(test_config(), server.url("/gzip/12345"));
    assert_eq!((row.get("status"), row.get("bytes")), ("200", "12345"));
    let row = one(test_config(), server.url("/gzip-html/Zipped"));
    assert_eq!(row.get("title"), "Zipped");
    let sent = server.arrivals();
    let accept = sent[0].header("accept-encoding").unwrap_or("");
    for coding in ["gzip", "br", "zstd"] {
        assert!(
            accept.contains(coding),
            "accept-encoding {accept:?} lacks {coding}"
        );
    }
}

#[test]
fn max_body_zero_means_no_cap() {
    let server = Server::start();
    let config = Config {
        max_body: None,
        ..no_retries()
    };
    let row = one(config, server.url("/bytes/3000000"));
    assert_eq!((row.get("error_kind"), row.get("bytes")), ("", "3000000"));
}

#[test]
fn body_cut_short_is_a_body_row() {
    let server = Server::start();
    let row = one(no_retries(), server.url("/cut-body"));
    assert_eq!(row.get("status"), "200");
    assert_eq!(row.get("error_kind"), "body");
}

#[test]
fn garbage_instead_of_http_is_an_other_row() {
    let raw = RawServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n");
    });
    let row = one(no_retries(), raw.url("/"));
    assert_eq!(row.get("error_kind"), "other");
    assert_eq!(row.get("status"), "");
}

#[test]
fn tls_to_a_plain_http_port_is_a_tls_row() {
    let server = Server::start();
    let url = server.url("/ok").replace("http://", "https://");
    let row = one(no_retries(), url);
    assert_eq!(row.get("error_kind"), "tls", "{}", row.get("error"));
}

#[test]
fn method_headers_body_and_user_agent_are_sent() {
    let server = Server::start();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-token", "abc".parse().unwrap());
    let config = Config {
        method: reqwest::Method::PUT,
        headers,
        body: Some(bytes::Bytes::from_static(b"payload")),
        ..test_config()
    };
    one(config, server.url("/echo"));
    let a = &server.arrivals()[0];
    assert_eq!(a.method, "PUT");
    assert_eq!(a.header("x-token"), Some("abc"));
    assert_eq!(a.header("content-length"), Some("7"));
    let ua = a.header("user-agent").unwrap();
    assert_eq!(ua, format!("ratefetch/{}", env!("CARGO_PKG_VERSION")));

    let config = Config {
        user_agent: "polite-bot/2".into(),
        ..test_config()
    };
    one(config, server.url("/echo"));
    assert_eq!(
        server.arrivals()[0].header("user-agent"),
        Some("polite-bot/2")
    );
}

#[test]
fn connections_are_reused_across_jobs() {
    let server = Server::start();
    let lines: Vec<String> = (0..50).map(|_| server.url("/ok")).collect();
    let config = Config {
        concurrency: 1,
        workers: 1,
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_eq!(rows.len(), 50);
    let a = server.arrivals();
    assert_eq!(a.len(), 50);
    // One worker, one pooled connection: every request came from the same client port.
    let ports: std::collections::HashSet<u16> = a.iter().map(|a| a.peer.port()).collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
}

#[test]
fn credentials_are_not_sent_to_another_host_after_a_redirect() {
    let a = Server::start_on([127, 0, 0, 12]);
    let b = Server::start_on([127, 0, 0, 13]);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", "Bearer secret".parse().unwrap());
    headers.insert("x-trace", "t1".parse().unwrap());
    let config = Config {
        headers,
        ..test_config()
    };
    let target = b.url("/ok").replace(':', "%3A");
    let row = one(config, a.url(&format!("/to?u={target}")));
    assert_eq!(row.get("final_url"), b.url("/ok"));
    let at_a = &a.arrivals()[0];
    let at_b = &b.arrivals()[0];
    assert_eq!(at_a.header("authorization"), Some("Bearer secret"));
    assert_eq!(
        at_b.header("authorization"),
        None,
        "the token leaked to another host"
    );
    assert_eq!(
        at_b.header("x-trace"),
        Some("t1"),
        "other headers follow the redirect"
    );
}

#[test]
fn see_other_turns_a_post_into_a_get_without_body() {
    let server = Server::start();
    let config = Config {
        method: reqwest::Method::POST,
        body: Some(bytes::Bytes::from_static(b"form")),
        ..test_config()
    };
    one(config, server.url("/redirect/1"));
    let a = server.arrivals();
    assert_eq!(
        (a[0].method.as_str(), a[1].method.as_str()),
        ("POST", "GET")
    );
    assert_eq!(a[1].header("content-length"), None);
}

#[test]
fn retry_after_longer_than_the_maximum_is_not_waited_for() {
    let server = Server::start();
    let config = Config {
        retries: 3,
        max_retry_after: Duration::from_secs(60),
        ..test_config()
    };
    let row = one(config, server.url("/status/429?retry_after=120"));
    assert_eq!((row.get("status"), row.get("attempts")), ("429", "1"));
    assert_eq!(row.get("error_kind"), "", "a response, not a failure");
    assert!(
        row.get("error").contains("--max-retry-after"),
        "{}",
        row.get("error")
    );
}

#[test]
fn elapsed_includes_the_waits_between_attempts() {
    let server = Server::start();
    let config = Config {
        retries: 1,
        ..test_config()
    };
    let row = one(config, server.url("/status/503?retry_after=1"));
    assert_eq!((row.get("status"), row.get("attempts")), ("503", "2"));
    let ms: u64 = row.get("elapsed_ms").parse().unwrap();
    assert!(
        ms >= 1000,
        "elapsed {ms} ms does not include the 1 s Retry-After wait"
    );
}
