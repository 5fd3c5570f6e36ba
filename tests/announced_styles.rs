//! Announced limits used whole (issue 21). Against servers that enforce and announce their
//! limit as the real middlewares do (`support::announcing`: express-rate-limit's draft-6,
//! draft-7, draft-8 and legacy headers, Flask-Limiter's fixed and moving windows with
//! `Retry-After` on every response, slowapi's reset a second late, GitHub's epoch with a
//! `Date`), a list worth several windows is fetched with not one refusal, and every window but
//! the last holds the server's whole allowance.
//!
//! Judged by the server's counts, never by time: a fixed window opens at the first request
//! after the last one ended, so a client that waits too long still fills it (the benchmark,
//! scenario n, measures the time); one that spreads a window's allowance past the window's
//! real end, or stops short of it, leaves a window part-empty. For the moving window the
//! windows counted are those a fixed one would have opened on the same accepted arrivals
//! (`AnnouncingServer::window_counts`): the moving window never lets one hold more than the
//! limit, and a client that sends what it allows as soon as it allows it fills each.
//!
//! The limit is 10 per second against 8 requests in flight: before the first answer nothing is
//! known, and the first 8 may leave together without breaking it (that first burst is not
//! what these tests are about).

mod support;

use std::time::Duration;

use ratefetch::Config;
use support::announcing::{AnnouncingServer, Style};
use support::report::{assert_each_index_once, run_lib, test_config, Row};

/// Requests each window allows.
const LIMIT: u64 = 10;
const WINDOW: Duration = Duration::from_secs(1);
/// Three whole windows and half of a fourth.
const URLS: usize = 35;

fn urls(server: &AnnouncingServer, n: usize) -> Vec<String> {
    (0..n).map(|i| server.url(&format!("/item/{i}"))).collect()
}

/// `-r unlimited -c 8`.
fn unlimited() -> Config {
    Config {
        concurrency: 8,
        workers: 8,
        ..test_config()
    }
}

/// The default rate (10/s, burst 1), `-c 8`.
fn default_rate() -> Config {
    Config {
        rate: Config::default().rate,
        burst: Config::default().burst,
        ..unlimited()
    }
}

/// Runs `config` on `n` URLs of a server on 127.0.0.`ip` allowing `limit` per `window` in
/// `style`, and returns the server (to count at) and the rows.
fn fetch(
    ip: u8,
    style: Style,
    limit: u64,
    window: Duration,
    config: Config,
    n: usize,
) -> (AnnouncingServer, Vec<Row>) {
    let server = AnnouncingServer::start([127, 0, 0, ip], limit, window, style);
    let (_, rows) = run_lib(config, &urls(&server, n));
    assert_each_index_once(&rows, 1..=n as u64);
    (server, rows)
}

/// Every row a 200 and not one request refused at the server.
fn assert_nothing_refused(server: &AnnouncingServer, rows: &[Row], n: usize, style: Style) {
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.get("status") != "200")
        .map(|r| {
            (
                r.index(),
                r.get("status").to_owned(),
                r.get("error").to_owned(),
            )
        })
        .collect();
    assert!(failed.is_empty(), "{style:?}: rows not 200: {failed:?}");
    let (accepted, refused) = server.counts();
    assert_eq!(
        refused,
        0,
        "{style:?}: the server refused {refused}; accepted per window {:?}; arrivals {:?}",
        server.window_counts(),
        {
            let log = server.log();
            let t0 = log.first().map(|a| a.at);
            log.iter()
                .map(|a| {
                    let ms = t0.map_or(0, |t| (a.at - t).as_millis());
                    format!("{ms}{}", if a.refused { "X" } else { "" })
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
    assert_eq!(accepted, n as u64, "{style:?}");
}

/// Every window but the last holds the whole allowance; the last holds the rest.
fn assert_windows_whole(server: &AnnouncingServer, limit: u64, n: usize, style: Style) {
    let counts = server.window_counts();
    let (last, whole) = counts.split_last().expect("at least one window");
    assert!(
        whole.iter().all(|&c| c == limit)
            && *last <= limit
            && counts.iter().sum::<u64>() == n as u64,
        "{style:?}: accepted per window {counts:?}, {limit} allowed in each (all but the last \
         should be whole)"
    );
}

/// `-r unlimited -c 8` on three and a half windows' worth: nothing refused, windows whole.
fn used_whole(ip: u8, style: Style) {
    let (server, rows) = fetch(ip, style, LIMIT, WINDOW, unlimited(), URLS);
    assert_nothing_refused(&server, &rows, URLS, style);
    assert_windows_whole(&server, LIMIT, URLS, style);
}

#[test]
fn express_draft6_windows_are_used_whole_without_refusals() {
    used_whole(150, Style::Draft6);
}

#[test]
fn express_draft7_windows_are_used_whole_without_refusals() {
    used_whole(151, Style::Draft7);
}

#[test]
fn express_draft8_windows_are_used_whole_without_refusals() {
    used_whole(152, Style::Draft8);
}

/// An epoch reset rounded up, read against a `Date` rounded down.
#[test]
fn express_legacy_windows_are_used_whole_without_refusals() {
    used_whole(153, Style::Legacy);
}

/// An epoch reset `int(T + 1)` and a `Retry-After` on every 200.
#[test]
fn flask_fixed_windows_are_used_whole_without_refusals() {
    used_whole(154, Style::FlaskFixed);
}

/// A reset frees one slot, not the window: a client that takes it for a fixed window's reset
/// is refused.
#[test]
fn flask_moving_window_is_used_whole_without_refusals() {
    used_whole(155, Style::FlaskMoving);
}

/// The reset announced a second late (`1 + T`), with uvicorn's `Date` up to a second stale.
#[test]
fn slowapi_windows_are_used_whole_though_its_reset_is_a_second_late() {
    used_whole(156, Style::Slowapi);
}

/// A window that ends on a whole second, its epoch exact against the `Date`.
#[test]
fn github_epoch_windows_are_used_whole_without_refusals() {
    used_whole(157, Style::GitHub);
}

/// At the default rate (10/s) against 5 per second: the rate fills half of each window, the
/// announced limit holds the rest back, and each window still gets its five. (The first five
/// leave in 0.4 s, before anything is known but the first answers: an answer slower than that
/// would let the sixth leave blind.)
#[test]
fn at_the_default_rate_the_moving_window_is_used_whole_without_refusals() {
    let (limit, n) = (5, 18);
    let (server, rows) = fetch(158, Style::FlaskMoving, limit, WINDOW, default_rate(), n);
    assert_nothing_refused(&server, &rows, n, Style::FlaskMoving);
    assert_windows_whole(&server, limit, n, Style::FlaskMoving);
}

/// A `Retry-After` on a 200 (Flask-Limiter and slowapi send one on every response, the
/// seconds to their reset) is not a cool-down: with an allowance the list never reaches, every
/// request arrives within the server's first 10 s window. A client that paused for it would
/// send 8, wait most of a window, and spill into the next windows.
fn retry_after_on_a_200_changes_nothing(ip: u8, style: Style) {
    let n = 40;
    let (server, rows) = fetch(ip, style, 1000, Duration::from_secs(10), unlimited(), n);
    assert_nothing_refused(&server, &rows, n, style);
    assert_eq!(
        server.window_counts(),
        [n as u64],
        "{style:?}: accepted per 10 s window"
    );
}

#[test]
fn flask_retry_after_on_a_200_changes_nothing() {
    retry_after_on_a_200_changes_nothing(159, Style::FlaskFixed);
}

#[test]
fn slowapi_retry_after_on_a_200_changes_nothing() {
    retry_after_on_a_200_changes_nothing(160, Style::Slowapi);
}

/// With `--ignore-ratelimit-headers` every one of these servers refuses part of the same
/// list: the tests above would catch a client that did not follow what they announce.
#[test]
fn each_style_refuses_a_client_that_ignores_its_headers() {
    for (ip, style) in [
        (161, Style::Draft6),
        (162, Style::Draft7),
        (163, Style::Draft8),
        (164, Style::Legacy),
        (165, Style::FlaskFixed),
        (166, Style::FlaskMoving),
        (167, Style::Slowapi),
        (168, Style::GitHub),
    ] {
        let config = Config {
            ignore_ratelimit_headers: true,
            retries: 0,
            ..unlimited()
        };
        let (server, _) = fetch(ip, style, LIMIT, WINDOW, config, URLS);
        let (_, refused) = server.counts();
        assert!(refused > 0, "{style:?}: nothing refused");
    }
}
