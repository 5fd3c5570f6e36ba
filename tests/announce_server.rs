//! The announcing test server itself: it refuses the request over its limit, announces a
//! decreasing remaining, and is whole again once the reset it announced has passed.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::announcing::{AnnouncingServer, Style};

/// Long enough for a busy 2-core machine: no test waits for a wait_arrivals timeout.
const WAIT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("building the test client")
}

/// Status and the named headers (missing ones as empty strings) of a GET of `url`.
async fn get(client: &reqwest::Client, url: &str, names: &[&str]) -> (u16, Vec<String>) {
    let resp = client
        .get(url)
        .send()
        .await
        .expect("the test server answers");
    let values = names
        .iter()
        .map(|name| {
            resp.headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    (resp.status().as_u16(), values)
}

/// Asserts that the first `n` arrivals fell within one `window`, so that the counts seen were
/// those of a single window (on a busy machine a slow client could straddle two).
fn assert_one_window(server: &AnnouncingServer, n: usize, window: Duration) {
    let arrivals = server.wait_arrivals(n, WAIT);
    assert_eq!(arrivals.len(), n, "arrivals: {arrivals:?}");
    let span = arrivals[n - 1].0 - arrivals[0].0;
    assert!(
        span < window,
        "{n} requests took {span:?}, over the {window:?} window"
    );
}

/// The integer after `key=` in an IETF item such as `"default";r=2;t=1`.
fn param(item: &str, key: &str) -> u64 {
    item.split(';')
        .find_map(|p| p.trim().strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no integer {key} in {item:?}"))
}

#[tokio::test]
async fn ietf_style_refuses_the_request_over_the_limit_and_resets_when_it_said() {
    let window = Duration::from_secs(2);
    let server = AnnouncingServer::start([127, 0, 0, 71], 3, window, Style::Ietf);
    let client = client();
    let names = ["ratelimit-policy", "ratelimit"];
    let mut seen = Vec::new();
    for i in 0..4 {
        seen.push(get(&client, &server.url(&format!("/{i}")), &names).await);
    }
    assert_one_window(&server, 4, window);
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let remaining: Vec<u64> = seen.iter().map(|(_, h)| param(&h[1], "r")).collect();
    assert_eq!(remaining, [2, 1, 0, 0]);
    for (_, headers) in &seen {
        assert_eq!(headers[0], "\"default\";q=3;w=2");
        assert!((1..=2).contains(&param(&headers[1], "t")), "{headers:?}");
    }
    assert_eq!(server.counts(), (3, 1));

    // A client that waits for the announced reset finds the allowance whole again.
    let t = param(&seen[3].1[1], "t");
    tokio::time::sleep(Duration::from_secs(t)).await;
    let (status, headers) = get(&client, &server.url("/after"), &names).await;
    assert_eq!((status, param(&headers[1], "r")), (200, 2), "{headers:?}");
    let refused: Vec<bool> = server.wait_arrivals(5, WAIT).iter().map(|a| a.1).collect();
    assert_eq!(refused, [false, false, false, true, false]);
}

#[tokio::test]
async fn github_style_refuses_with_403_and_an_exact_epoch_reset() {
    let window = Duration::from_secs(1);
    let server = AnnouncingServer::start([127, 0, 0, 72], 2, window, Style::GitHub);
    let client = client();
    let names = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "date",
    ];
    let mut seen = Vec::new();
    for i in 0..3 {
        seen.push(get(&client, &server.url(&format!("/{i}")), &names).await);
    }
    // A GitHub window runs to a whole second, up to 2 s here.
    assert_one_window(&server, 3, window * 2);
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 403]);
    let remaining: Vec<&str> = seen.iter().map(|(_, h)| h[1].as_str()).collect();
    assert_eq!(remaining, ["1", "0", "0"]);
    let epoch: u64 = seen[2].1[2]
        .parse()
        .expect("x-ratelimit-reset is epoch seconds");
    for (_, headers) in &seen {
        assert_eq!(headers[0], "2");
        assert_eq!(headers[2], epoch.to_string(), "one window, one reset");
        let date = httpdate::parse_http_date(&headers[3]).expect("a Date header");
        let date = date.duration_since(UNIX_EPOCH).expect("after 1970");
        // Date is the arrival second rounded down, the reset a whole second 1 s to 2 s on.
        let ahead = epoch.checked_sub(date.as_secs());
        assert!(
            ahead.is_some_and(|a| (1..=2).contains(&a)),
            "reset {epoch}, {headers:?}"
        );
    }

    // At the announced second (local and server clock are one here) the window is new.
    let reset_at = UNIX_EPOCH + Duration::from_secs(epoch);
    let wait = reset_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
    let (status, headers) = get(&client, &server.url("/after"), &names).await;
    assert_eq!((status, headers[1].as_str()), (200, "1"), "{headers:?}");
    let new_epoch: u64 = headers[2].parse().expect("epoch seconds");
    assert!(new_epoch > epoch, "reset {new_epoch} after {epoch}");
    assert_eq!(server.counts(), (3, 1));
}

#[tokio::test]
async fn x_ratelimit_seconds_style_announces_seconds_to_go() {
    let window = Duration::from_secs(1);
    let server = AnnouncingServer::start([127, 0, 0, 73], 1, window, Style::XRateLimitSeconds);
    let client = client();
    let names = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ];
    let first = get(&client, &server.url("/a"), &names).await;
    let second = get(&client, &server.url("/b"), &names).await;
    assert_one_window(&server, 2, window);
    assert_eq!(first, (200, vec!["1".into(), "0".into(), "1".into()]));
    assert_eq!(second, (429, vec!["1".into(), "0".into(), "1".into()]));
    assert_eq!(server.counts(), (1, 1));
}

/// The seconds of an HTTP `Date`, since the epoch.
fn date_secs(date: &str) -> u64 {
    httpdate::parse_http_date(date)
        .expect("a Date header")
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// express-rate-limit's four header forms, a refusal's `Retry-After`, and the window counted
/// per window.
#[tokio::test]
async fn express_styles_announce_in_their_draft_forms() {
    let window = Duration::from_secs(2);
    let client = client();
    let cases: [(u8, Style, &[&str]); 4] = [
        (
            170,
            Style::Draft6,
            &[
                "ratelimit-policy",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
            ],
        ),
        (171, Style::Draft7, &["ratelimit-policy", "ratelimit"]),
        (172, Style::Draft8, &["ratelimit-policy", "ratelimit"]),
        (
            173,
            Style::Legacy,
            &[
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ],
        ),
    ];
    for (ip, style, names) in cases {
        let server = AnnouncingServer::start([127, 0, 0, ip], 2, window, style);
        let names: Vec<&str> = names
            .iter()
            .copied()
            .chain(["retry-after", "date"])
            .collect();
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.push(get(&client, &server.url(&format!("/{i}")), &names).await);
        }
        assert_one_window(&server, 3, window);
        let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [200, 200, 429], "{style:?}");
        let h: Vec<&Vec<String>> = seen.iter().map(|(_, h)| h).collect();
        let retry = names.len() - 2;
        // Seconds to the reset, rounded up: 1 or 2 of a 2 s window.
        let to_reset = |v: &str| (1..=2).contains(&v.parse::<u64>().unwrap_or(0));
        match style {
            Style::Draft6 => {
                for (i, rem) in ["1", "0", "0"].iter().enumerate() {
                    assert_eq!(h[i][..3], ["2;w=2", "2", *rem], "{style:?}");
                    assert!(to_reset(&h[i][3]), "{style:?}: {:?}", h[i]);
                }
            }
            Style::Draft7 => {
                for (i, rem) in [1, 0, 0].iter().enumerate() {
                    assert_eq!(h[i][0], "2;w=2", "{style:?}");
                    let reset = h[i][1]
                        .strip_prefix(&format!("limit=2, remaining={rem}, reset="))
                        .unwrap_or_else(|| panic!("{style:?}: {:?}", h[i]));
                    assert!(to_reset(reset), "{style:?}: {:?}", h[i]);
                }
            }
            Style::Draft8 => {
                for (i, rem) in [1, 0, 0].iter().enumerate() {
                    assert_eq!(
                        h[i][0], "\"2-in-2sec\"; q=2; w=2; pk=:MTJjYTE3YjQ5YWYy:",
                        "{style:?}"
                    );
                    let reset = h[i][1]
                        .strip_prefix(&format!("\"2-in-2sec\"; r={rem}; t="))
                        .unwrap_or_else(|| panic!("{style:?}: {:?}", h[i]));
                    assert!(to_reset(reset), "{style:?}: {:?}", h[i]);
                }
            }
            Style::Legacy => {
                for (i, rem) in ["1", "0", "0"].iter().enumerate() {
                    assert_eq!(h[i][..2], ["2", *rem], "{style:?}");
                    // ceil(T) against the floored Date: 2 or 3 seconds on.
                    let epoch: u64 = h[i][2].parse().expect("epoch seconds");
                    let ahead = epoch - date_secs(&h[i][names.len() - 1]);
                    assert!((2..=3).contains(&ahead), "{style:?}: {:?}", h[i]);
                }
            }
            _ => unreachable!(),
        }
        assert_eq!(h[0][retry], "", "{style:?}: no Retry-After on a 200");
        assert_eq!(h[1][retry], "", "{style:?}: no Retry-After on a 200");
        assert!(to_reset(&h[2][retry]), "{style:?}: {:?}", h[2]);
        assert_eq!(server.window_counts(), [2], "{style:?}");
    }
}

/// Flask-Limiter and slowapi send `Retry-After` on every response, 200s included, with their
/// epoch resets: `int(T + 1)` (Flask) and `1 + T` as a float (slowapi, a second late).
#[tokio::test]
async fn python_styles_send_retry_after_on_every_response() {
    let window = Duration::from_secs(2);
    let client = client();
    let names = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "date",
    ];
    for (ip, style) in [
        (174, Style::FlaskFixed),
        (175, Style::FlaskMoving),
        (176, Style::Slowapi),
    ] {
        let server = AnnouncingServer::start([127, 0, 0, ip], 2, window, style);
        let mut seen = Vec::new();
        for i in 0..3 {
            let before = SystemTime::now();
            let got = get(&client, &server.url(&format!("/{i}")), &names).await;
            seen.push((before, got));
        }
        assert_one_window(&server, 3, window);
        let first = seen[0].0.duration_since(UNIX_EPOCH).expect("after 1970");
        let statuses: Vec<u16> = seen.iter().map(|(_, (s, _))| *s).collect();
        assert_eq!(statuses, [200, 200, 429], "{style:?}");
        for (i, (before, (_, h))) in seen.iter().enumerate() {
            let before = before.duration_since(UNIX_EPOCH).expect("after 1970");
            assert_eq!(h[0], "2", "{style:?}");
            assert_eq!(h[1], ["1", "0", "0"][i], "{style:?}");
            // T is the first arrival plus 2 s (one window, and the moving window's oldest).
            let t = first.as_secs_f64() + 2.0;
            let retry: i64 = h[3].parse().expect("Retry-After is whole seconds");
            if style == Style::Slowapi {
                let reset: f64 = h[2].parse().expect("a float epoch");
                assert!(h[2].contains('.'), "{style:?}: {h:?}");
                assert!(
                    (reset - 1.0 - t).abs() < 0.5,
                    "{style:?}: reset {reset}, T ≈ {t}"
                );
                // int(1 + T − now): 2 s to 3 s to go, truncated.
                assert!((1..=3).contains(&retry), "{style:?}: {h:?}");
            } else {
                let reset: u64 = h[2].parse().expect("whole epoch seconds");
                let t_floor = t.floor() as u64;
                assert!(
                    (t_floor..=t_floor + 2).contains(&reset),
                    "{style:?}: reset {reset}, T ≈ {t}"
                );
                assert!(
                    (1..=3).contains(&retry) && reset.abs_diff(before.as_secs()) <= 4,
                    "{style:?}: {h:?}"
                );
                // werkzeug's Date is the response's second, floored.
                assert!(
                    date_secs(&h[4]).abs_diff(before.as_secs()) <= 1,
                    "{style:?}: {h:?}"
                );
            }
        }
        assert_eq!(server.window_counts(), [2], "{style:?}");
    }
}

/// The moving window frees one slot per reset: after the oldest of three arrivals leaves it,
/// one more is accepted, not three; it announces the oldest arrival plus the window.
#[tokio::test]
async fn the_moving_window_frees_a_slot_when_its_oldest_arrival_leaves() {
    let window = Duration::from_secs(2);
    let server = AnnouncingServer::start([127, 0, 0, 177], 3, window, Style::FlaskMoving);
    let client = client();
    let names = ["x-ratelimit-remaining", "x-ratelimit-reset"];
    let first = get(&client, &server.url("/0"), &names).await;
    assert_eq!(first.0, 200);
    // The second and third arrive a second after the first: they stay in the window a
    // second longer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut seen = Vec::new();
    for i in 1..4 {
        seen.push(get(&client, &server.url(&format!("/{i}")), &names).await);
    }
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(seen[2].1[0], "0");
    // The reset announced is the first arrival's window end, not the last's.
    assert_eq!(
        seen[2].1[1], first.1[1],
        "one reset until the oldest leaves"
    );
    let log = server.log();
    assert!(
        log[3].at - log[0].at < window,
        "the refusal came {:?} after the first",
        log[3].at - log[0].at
    );
    // Just after the oldest leaves: one slot, not three.
    let free_at = log[0].at + window + Duration::from_millis(100);
    tokio::time::sleep_until(free_at.into()).await;
    let mut after = Vec::new();
    for i in 4..6 {
        after.push(get(&client, &server.url(&format!("/{i}")), &names).await.0);
    }
    let log = server.log();
    assert!(
        log[5].at - log[1].at < window,
        "the last came {:?} after the second: too late to check",
        log[5].at - log[1].at
    );
    assert_eq!(after, [200, 429]);
    assert!(log.iter().all(|a| a.window.is_none()));
    // As fixed windows would have opened on the accepted arrivals: 3, then 1.
    assert_eq!(server.window_counts(), [3, 1]);
    assert_eq!(server.counts(), (4, 2));
}

/// Fixed windows number their arrivals; a refusal counts in its window but not in its count.
#[tokio::test]
async fn fixed_windows_number_their_arrivals() {
    let window = Duration::from_secs(1);
    let server = AnnouncingServer::start([127, 0, 0, 178], 2, window, Style::FlaskFixed);
    let client = client();
    for i in 0..3 {
        get(&client, &server.url(&format!("/{i}")), &[]).await;
    }
    let log = server.log();
    tokio::time::sleep_until((log[0].at + window).into()).await;
    get(&client, &server.url("/3"), &[]).await;
    let log = server.log();
    assert!(log[2].at - log[0].at < window, "{log:?}");
    let windows: Vec<Option<u64>> = log.iter().map(|a| a.window).collect();
    assert_eq!(windows, [Some(0), Some(0), Some(0), Some(1)]);
    let refused: Vec<bool> = log.iter().map(|a| a.refused).collect();
    assert_eq!(refused, [false, false, true, false]);
    assert_eq!(server.window_counts(), [2, 1]);
}
