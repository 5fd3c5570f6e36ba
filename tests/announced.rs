//! Limits the server announces (RateLimit, RateLimit-Policy, X-RateLimit-*): followed, a
//! server that enforces its announced quota refuses nothing; a refusal the headers explain is
//! retried after the reset without spending an attempt. Against the in-repo
//! `AnnouncingServer`, which enforces its limit and counts what it refused.

mod support;

use std::time::Duration;

use ratefetch::Config;
use support::announcing::{AnnouncingServer, Style};
use support::report::{assert_each_index_once, run_lib, test_config};

fn urls(server: &AnnouncingServer, n: usize) -> Vec<String> {
    (0..n).map(|i| server.url(&format!("/item/{i}"))).collect()
}

fn config(concurrency: usize) -> Config {
    Config {
        concurrency,
        workers: concurrency,
        ..test_config()
    }
}

/// Followed in each header style, the announced quota is used and never broken: the server
/// refuses not one request, though the list needs three of its windows.
#[test]
fn a_server_announcing_its_quota_refuses_nothing() {
    for (ip, style) in [
        (74, Style::Ietf),
        (75, Style::GitHub),
        (76, Style::XRateLimitSeconds),
    ] {
        let server = AnnouncingServer::start([127, 0, 0, ip], 5, Duration::from_secs(1), style);
        let (summary, rows) = run_lib(config(4), &urls(&server, 12));
        assert_each_index_once(&rows, 1..=12);
        let (accepted, refused) = server.counts();
        assert_eq!(refused, 0, "{style:?}: the server refused {refused}");
        assert_eq!(accepted, 12, "{style:?}");
        assert!(rows.iter().all(|r| r.get("status") == "200"), "{style:?}");
        assert!(
            summary.elapsed >= Duration::from_secs(2),
            "{style:?}: three windows"
        );
    }
}

/// The same server and list with `--ignore-ratelimit-headers`: it does refuse, so the test
/// above would catch a client that did not follow the headers.
#[test]
fn ignoring_the_headers_gets_refusals() {
    let server = AnnouncingServer::start([127, 0, 0, 77], 5, Duration::from_secs(1), Style::Ietf);
    let mut config = config(4);
    config.ignore_ratelimit_headers = true;
    config.retries = 0;
    let (_, rows) = run_lib(config, &urls(&server, 12));
    assert_each_index_once(&rows, 1..=12);
    let (_, refused) = server.counts();
    assert!(refused > 0, "nothing refused");
}

/// A run starts while an earlier one has spent the server's window: knowing nothing yet, its
/// first requests are refused (429 for IETF, 403 for GitHub) with nothing remaining. Each is
/// retried after the reset without spending an attempt, so even with `--retries 0` every row
/// is a 200 at its first attempt, and nothing more is refused.
fn explained_refusals_are_retried_without_spending_an_attempt(ip: u8, style: Style) {
    let server = AnnouncingServer::start([127, 0, 0, ip], 5, Duration::from_secs(3), style);
    let (_, rows) = run_lib(config(1), &urls(&server, 5));
    assert!(rows.iter().all(|r| r.get("status") == "200"), "{style:?}");
    let mut config = config(4);
    config.retries = 0;
    let (_, rows) = run_lib(config, &urls(&server, 8));
    assert_each_index_once(&rows, 1..=8);
    let (accepted, refused) = server.counts();
    assert_eq!(accepted, 13, "{style:?}");
    assert!(
        (1..=4).contains(&refused),
        "{style:?}: {refused} refused (the first requests only)"
    );
    for r in &rows {
        assert_eq!(r.get("status"), "200", "{style:?}: {:?}", r.0);
        assert_eq!(r.get("attempts"), "1", "{style:?}: {:?}", r.0);
    }
}

#[test]
fn an_ietf_429_that_the_headers_explain_spends_no_attempt() {
    explained_refusals_are_retried_without_spending_an_attempt(78, Style::Ietf);
}

#[test]
fn a_github_403_that_the_headers_explain_spends_no_attempt() {
    explained_refusals_are_retried_without_spending_an_attempt(79, Style::GitHub);
}
