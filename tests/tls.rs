//! HTTPS: `--cacert FILE` trusts a certificate authority of the user's instead of the
//! built-in roots, and `-k, --insecure` accepts any certificate, with one warning. The
//! servers are HTTPS servers of the tests' own, with certificates the tests make.

mod support;

use std::path::Path;

use support::binary::ratefetch_bin;
use support::report::{read_csv, Row};
use support::server::Server;
use support::tls::{self_signed, TestCa};

/// Runs ratefetch on `urls` with `args`; returns its exit code, stderr and rows.
fn fetch(dir: &Path, urls: &[String], args: &[&str]) -> (Option<i32>, String, Vec<Row>) {
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.join("report.csv");
    let out = ratefetch_bin()
        .args(["-r", "unlimited", "--retries", "0", "-o"])
        .arg(&report)
        .args(args)
        .arg(&list)
        .output()
        .expect("running ratefetch");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rows = if report.exists() {
        read_csv(&report)
    } else {
        Vec::new()
    };
    (out.status.code(), stderr, rows)
}

fn statuses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{}{}", r.get("status"), r.get("error_kind")))
        .collect()
}

#[test]
fn cacert_trusts_the_given_authority_and_nothing_else() {
    let ip = [127, 0, 0, 105];
    let ca = TestCa::new("ratefetch test CA");
    let server = Server::start_tls(ip, ca.server(ip));
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    ca.write_pem(&pem);
    let other = dir.path().join("other.pem");
    TestCa::new("another CA").write_pem(&other);
    let urls: Vec<String> = (0..5).map(|i| server.url(&format!("/ok?{i}"))).collect();

    let (code, stderr, rows) = fetch(dir.path(), &urls, &["--cacert", pem.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), vec!["200"; 5], "{stderr}");
    assert!(rows
        .iter()
        .all(|r| r.get("final_url").starts_with("https://")));

    // The built-in roots do not know the test CA, and another CA does not vouch for it.
    let (code, _, rows) = fetch(dir.path(), &urls, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(statuses(&rows), vec!["tls"; 5]);
    let (code, _, rows) = fetch(dir.path(), &urls, &["--cacert", other.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(statuses(&rows), vec!["tls"; 5]);
    assert!(
        rows[0].get("error").contains("certificate"),
        "the error says why: {}",
        rows[0].get("error")
    );
}

#[test]
fn insecure_accepts_a_self_signed_certificate_with_one_warning() {
    let ip = [127, 0, 0, 106];
    let server = Server::start_tls(ip, self_signed(ip));
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..5).map(|i| server.url(&format!("/ok?{i}"))).collect();

    let (code, stderr, rows) = fetch(dir.path(), &urls, &["-k"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&rows), vec!["200"; 5], "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--insecure"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {stderr}");
    assert!(warnings[0].starts_with("ratefetch: warning:"), "{stderr}");

    let (_, stderr, rows) = fetch(dir.path(), &urls, &["--insecure"]);
    assert_eq!(statuses(&rows), vec!["200"; 5], "{stderr}");
    let (_, stderr, rows) = fetch(dir.path(), &urls, &[]);
    assert_eq!(statuses(&rows), vec!["tls"; 5]);
    assert!(
        !stderr.contains("--insecure"),
        "no warning without -k: {stderr}"
    );
}

#[test]
fn a_cacert_file_that_cannot_be_used_fails_before_the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let urls = vec!["https://127.0.0.107:9/".to_string()];
    for (file, why) in [(&missing, "No such file"), (&garbage, "no PEM certificate")] {
        let (code, stderr, rows) = fetch(dir.path(), &urls, &["--cacert", file.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("cannot use --cacert") && stderr.contains(why),
            "{stderr}"
        );
        assert!(rows.is_empty(), "no report: {rows:?}");
    }
}
