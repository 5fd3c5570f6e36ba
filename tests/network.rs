//! Network options a crawler needs, named as curl names them: `-x, --proxy` (HTTP, CONNECT
//! for HTTPS, SOCKS5), the proxy environment variables when no `--proxy` is given, and a
//! cookie store (`--cookies`) that `-b, --cookie` seeds for the input's own hosts only.

mod support;

use std::path::Path;

use support::binary::ratefetch_bin;
use support::proxy::Proxy;
use support::report::{read_csv, Row};
use support::server::Server;
use support::tls::TestCa;

/// Runs ratefetch on `urls` with `args` and `env`; returns its exit code, stderr and rows
/// in input order.
fn fetch(
    dir: &Path,
    urls: &[String],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, Vec<Row>) {
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.join("report.csv");
    let _ = std::fs::remove_file(&report);
    let mut cmd = ratefetch_bin();
    cmd.args(["-r", "unlimited", "--retries", "0", "-c", "1", "-q", "-o"])
        .arg(&report)
        .args(args)
        .arg(&list);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running ratefetch");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut rows = if report.exists() {
        read_csv(&report)
    } else {
        Vec::new()
    };
    rows.sort_by_key(Row::index);
    (out.status.code(), stderr, rows)
}

fn statuses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{}{}", r.get("status"), r.get("error_kind")))
        .collect()
}

#[test]
fn proxy_carries_http_forward_and_https_through_connect() {
    let plain = Server::start_on([127, 0, 0, 115]);
    let ca = TestCa::new("ratefetch proxy test CA");
    let secure = Server::start_tls([127, 0, 0, 116], ca.server([127, 0, 0, 116]));
    let proxy = Proxy::http([127, 0, 0, 117]);
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    ca.write_pem(&pem);
    let urls = [plain.url("/ok?a"), secure.url("/ok?b")];
    let (code, stderr, rows) = fetch(
        dir.path(),
        &urls,
        &["-x", &proxy.url(), "--cacert", pem.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["200", "200"], "{stderr}");
    let secure_authority = secure
        .url("")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    assert_eq!(
        proxy.seen(),
        [
            format!("GET {} HTTP/1.1", plain.url("/ok?a")),
            format!("CONNECT {secure_authority} HTTP/1.1"),
        ],
        "HTTP goes to the proxy in absolute form, HTTPS as a tunnel"
    );
    let at_plain = plain.arrivals();
    assert_eq!(at_plain.len(), 1);
    assert_eq!(
        at_plain[0].header("via"),
        Some("1.1 test-proxy"),
        "came through the proxy"
    );
    assert_eq!(secure.arrivals().len(), 1);
}

#[test]
fn socks5_proxy_carries_the_requests() {
    let server = Server::start_on([127, 0, 0, 118]);
    let proxy = Proxy::socks5([127, 0, 0, 119]);
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/ok?1"), server.url("/ok?2")];
    let (code, stderr, rows) = fetch(dir.path(), &urls, &["--proxy", &proxy.url()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["200", "200"], "{stderr}");
    let authority = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let seen = proxy.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|t| *t == authority),
        "{seen:?}"
    );
    assert_eq!(server.arrivals().len(), 2);
}

#[test]
fn proxy_variables_are_honoured_without_proxy_and_no_proxy_skips_a_host() {
    let proxied = Server::start_on([127, 0, 0, 120]);
    let direct = Server::start_on([127, 0, 0, 121]);
    let proxy = Proxy::http([127, 0, 0, 122]);
    let dir = tempfile::tempdir().unwrap();
    let urls = [proxied.url("/ok"), direct.url("/ok")];
    let env = [
        ("HTTP_PROXY", proxy.url()),
        ("NO_PROXY", "127.0.0.121".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stderr, rows) = fetch(dir.path(), &urls, &[], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["200", "200"], "{stderr}");
    assert_eq!(
        proxy.seen(),
        [format!("GET {} HTTP/1.1", proxied.url("/ok"))]
    );
    assert_eq!(proxied.arrivals()[0].header("via"), Some("1.1 test-proxy"));
    assert_eq!(
        direct.arrivals()[0].header("via"),
        None,
        "NO_PROXY goes direct"
    );

    // --proxy wins over the variables (and NO_PROXY still applies, as with curl).
    let other = Proxy::http([127, 0, 0, 123]);
    let (code, stderr, _) = fetch(dir.path(), &urls, &["-x", &other.url()], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        other.seen(),
        [format!("GET {} HTTP/1.1", proxied.url("/ok"))]
    );
    assert_eq!(
        proxy.seen().len(),
        1,
        "the variable's proxy saw nothing more"
    );
}

#[test]
fn a_bad_proxy_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["ftp://127.0.0.1:21", "not a url"] {
        let (code, stderr, rows) = fetch(
            dir.path(),
            &["http://127.0.0.1:9/".to_string()],
            &["-x", bad],
            &[],
        );
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--proxy"), "{bad}: {stderr}");
        assert!(rows.is_empty());
    }
}

#[test]
fn cookie_arguments_that_cannot_work_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = ["http://127.0.0.1:9/".to_string()];
    let cases: [(&[&str], &str); 3] = [
        (&["-b", "cookies.txt"], "--cookie"),
        (&["-b", "=nameless"], "--cookie"),
        (&["--cookies", "-H", "Cookie: a=1"], "--header"),
    ];
    for (args, flag) in cases {
        let (code, stderr, rows) = fetch(dir.path(), &url, args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(rows.is_empty());
    }
}

#[test]
fn the_cookie_store_keeps_what_a_server_sets_for_the_next_request() {
    let server = Server::start_on([127, 0, 0, 124]);
    let dir = tempfile::tempdir().unwrap();
    // /login sets a session cookie and redirects to /private, which needs it.
    let urls = [server.url("/login")];
    let (code, stderr, rows) = fetch(dir.path(), &urls, &[], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["403"], "no store, no cookie");
    let (code, stderr, rows) = fetch(dir.path(), &urls, &["--cookies"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["200"], "the store sent the session back");
    assert_eq!(rows[0].get("final_url"), server.url("/private"));
}

#[test]
fn cookie_flag_seeds_the_store_for_the_own_host_only() {
    let own = Server::start_on([127, 0, 0, 125]);
    let other = Server::start_on([127, 0, 0, 126]);
    let dir = tempfile::tempdir().unwrap();
    let away = other.url("/ok").replace(':', "%3A");
    let urls = [own.url("/login"), own.url(&format!("/to?u={away}"))];
    let (code, stderr, rows) = fetch(dir.path(), &urls, &["-b", "lang=pt; theme=dark"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), ["200", "200"], "{stderr}");
    let at_own = own.arrivals();
    let cookies = |a: &support::server::Arrival| {
        let mut c: Vec<String> = a
            .header("cookie")
            .unwrap_or("")
            .split("; ")
            .map(str::to_string)
            .collect();
        c.sort();
        c.join("; ")
    };
    let private = at_own
        .iter()
        .find(|a| a.path == "/private")
        .expect("/private was reached");
    assert_eq!(
        cookies(private),
        "lang=pt; session=s3cret; theme=dark",
        "-b's cookies and the one the server set, together: -b did not switch the store off"
    );
    assert_eq!(cookies(&at_own[0]), "lang=pt; theme=dark");
    assert_eq!(
        other.arrivals()[0].header("cookie"),
        None,
        "-b's cookies are not sent to another host after a redirect"
    );
}
