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
