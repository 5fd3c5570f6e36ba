//! Scraping and reports: CSV in, extracted fields out, chosen columns, saved bodies. The
//! reports are parsed back as a spreadsheet or pandas would read them.

mod support;

use std::time::Duration;

use support::report::{assert_each_index_once, parse_csv, read_csv, Row};
use support::server::Server;

use support::binary::ratefetch_bin as ratefetch;

/// A product list as users bring it: quoted cells with commas and line breaks, the URL in
/// a column of its own, and a row with no URL.
fn product_csv(server: &Server, rows: u64) -> String {
    let mut csv = String::from("sku,Product URL,note,title\n");
    for n in 1..=rows {
        let url = if n % 2 == 0 {
            server.url(&format!("/api/product/{n}"))
        } else {
            server.url(&format!("/product/{n}"))
        };
        let url = if n == 7 { String::new() } else { url };
        csv.push_str(&format!(
            "SKU-{n},{url},\"note {n}, with comma\nand a line\",t{n}\n"
        ));
    }
    csv
}

#[test]
fn csv_in_with_css_and_json_extraction_and_passthrough_opens_with_the_right_columns() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("products.csv");
    std::fs::write(&input, product_csv(&server, 1000)).unwrap();
    let report = dir.path().join("report.csv");
    ratefetch()
        .args([
            "-q",
            "-r",
            "unlimited",
            "-c",
            "32",
            "--url-column",
            "product url",
        ])
        .args([
            "--extract",
            "name=css:h1.name",
            "--extract",
            "buy=css:a.buy@href",
        ])
        .args(["--extract", "amount=json:/price/amount", "-o"])
        .arg(&report)
        .arg(&input)
        .assert()
        .success();
    let (header, mut rows) = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(
        header,
        [
            "index",
            "url",
            "final_url",
            "status",
            "error_kind",
            "error",
            "attempts",
            "elapsed_ms",
            "bytes",
            "content_type",
            "title",
            "started_at",
            "name",
            "buy",
            "amount",
            "sku",
            "note",
            "input_title"
        ]
    );
    rows.sort_by_key(Row::index);
    assert_each_index_once(&rows, 1..=1000);
    let r1 = &rows[0];
    assert_eq!(
        (r1.get("status"), r1.get("name"), r1.get("buy")),
        ("200", "Product 1", "/buy/1")
    );
    assert_eq!((r1.get("amount"), r1.get("title")), ("", "Product 1"));
    let r2 = &rows[1];
    assert_eq!((r2.get("amount"), r2.get("name")), ("2.99", ""));
    assert_eq!(r2.get("sku"), "SKU-2");
    assert_eq!(
        r2.get("note"),
        "note 2, with comma\nand a line",
        "cells keep their line breaks"
    );
    assert_eq!(r2.get("input_title"), "t2");
    let r7 = &rows[6];
    assert_eq!(r7.get("error_kind"), "invalid_url");
    assert_eq!((r7.get("sku"), r7.get("input_title")), ("SKU-7", "t7"));
    assert_eq!(
        server.arrivals().len(),
        999,
        "the row without a URL sent nothing"
    );
}

#[test]
fn extract_all_joins_every_match_and_header_and_json_values_work() {
    let server = Server::start();
    let input = format!(
        "{}\n{}\n",
        server.url("/product/3"),
        server.url("/api/product/4")
    );
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "--extract-all"])
        .args([
            "--extract",
            "prices=css:span.price",
            "--extract",
            "tags=json:/tags",
        ])
        .args([
            "--extract",
            "rid=header:x-request-id",
            "--extract",
            "cents=regex:\\.(\\d\\d)",
        ])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, mut rows) = parse_csv(&out.stdout);
    rows.sort_by_key(Row::index);
    assert_eq!(rows[0].get("prices"), "$3.99 | $3.49");
    assert_eq!(rows[0].get("cents"), "99 | 49");
    assert_eq!(rows[1].get("tags"), r#"["a","b"]"#);
    assert_eq!(rows[1].get("rid"), "4");
}

#[test]
fn fields_choose_and_order_the_columns() {
    let server = Server::start();
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "--extract", "price=css:.price"])
        .args(["--fields", "url,status,price"])
        .write_stdin(server.url("/product/5"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!("url,status,price\n{},200,$5.99\n", server.url("/product/5"))
    );
}

#[test]
fn unknown_field_or_bad_rule_is_a_usage_error_before_any_request() {
    let server = Server::start();
    for (args, flag, hint) in [
        (
            &["--fields", "url,cost"][..],
            "--fields",
            "valid columns: index,url",
        ),
        (&["--extract", "p=css:a[["][..], "--extract", "CSS selector"),
        (
            &["--extract", "p=regex:(unclosed"][..],
            "--extract",
            "regex",
        ),
        (
            &["--extract", "p=json:price"][..],
            "--extract",
            "JSON pointer",
        ),
    ] {
        let out = ratefetch()
            .args(["-r", "unlimited"])
            .args(args)
            .write_stdin(server.url("/product/1"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(flag) && err.contains(hint), "{args:?}: {err}");
    }
    assert!(server
        .wait_arrivals(1, Duration::from_millis(200))
        .is_empty());
}

#[test]
fn save_bodies_writes_each_body_by_index_with_its_sha256() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let bodies = dir.path().join("bodies");
    let input = format!(
        "{}\n# skip\n{}\n",
        server.url("/product/1"),
        server.url("/api/product/2")
    );
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "--save-bodies"])
        .arg(&bodies)
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (header, mut rows) = parse_csv(&out.stdout);
    assert_eq!(header.last().map(String::as_str), Some("body_sha256"));
    rows.sort_by_key(Row::index);
    let html = std::fs::read(bodies.join("1.html")).unwrap();
    let json = std::fs::read(bodies.join("3.json")).unwrap();
    assert!(String::from_utf8_lossy(&html).contains("Product 1"));
    assert!(String::from_utf8_lossy(&json).contains("\"id\":2"));
    assert_eq!(rows[0].get("body_sha256"), sha256_hex(&html));
    assert_eq!(rows[1].get("body_sha256"), sha256_hex(&json));
    assert_eq!(rows[0].get("bytes"), html.len().to_string());
}

#[test]
fn jsonl_carries_extracted_and_passthrough_fields() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        format!("url,sku\n{},S1\n", server.url("/product/8")),
    )
    .unwrap();
    let out = ratefetch()
        .args([
            "-q",
            "-r",
            "unlimited",
            "--format",
            "jsonl",
            "--extract",
            "name=css:h1",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["name"], "Product 8");
    assert_eq!(row["sku"], "S1");
    assert_eq!(row["status"], 200);
}

#[test]
fn a_csv_report_with_extra_columns_resumes() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("products.csv");
    std::fs::write(&input, product_csv(&server, 40)).unwrap();
    let report = dir.path().join("report.csv");
    let args = [
        "-q",
        "-r",
        "unlimited",
        "--url-column",
        "Product URL",
        "--extract",
        "name=css:h1",
    ];
    ratefetch()
        .args(args)
        .arg("-o")
        .arg(&report)
        .arg(&input)
        .assert()
        .success();
    // Keep the header and the first ten rows (each spans two lines), as after a kill.
    let text = std::fs::read_to_string(&report).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    for _ in 0..10 {
        assert!(rdr.read_record(&mut record).unwrap());
    }
    let kept = text[..rdr.position().byte() as usize].to_string();
    std::fs::write(&report, &kept).unwrap();
    let kept_rows = parse_csv(kept.as_bytes()).1;
    assert_eq!(kept_rows.len(), 10);
    let kept_indices: Vec<u64> = kept_rows.iter().map(Row::index).collect();
    server.arrivals();
    ratefetch()
        .args(args)
        .arg("--resume")
        .arg("-o")
        .arg(&report)
        .arg(&input)
        .assert()
        .success();
    assert_each_index_once(&read_csv(&report), 1..=40);
    let after = std::fs::read_to_string(&report).unwrap();
    assert!(after.starts_with(&kept), "the kept rows are untouched");
    // Only the missing rows were fetched (row 7 has no URL).
    let missing = (1..=40u64)
        .filter(|i| !kept_indices.contains(i) && *i != 7)
        .count();
    assert_eq!(server.arrivals().len(), missing);
}

#[test]
fn retry_failed_refetches_only_failed_rows_and_rewrites_the_report_in_place() {
    let server = Server::start();
    let closed = support::raw::closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let input = [
        server.url("/ok"),
        server.url("/flaky/a"),
        server.url("/status/404"),
        server.url("/flaky/b"),
        closed,
    ]
    .join("\n");
    let report = dir.path().join("report.csv");
    ratefetch()
        .args(["-q", "-r", "unlimited", "--retries", "0", "-o"])
        .arg(&report)
        .write_stdin(input)
        .assert()
        .success();
    let before: Vec<Row> = {
        let mut r = read_csv(&report);
        r.sort_by_key(Row::index);
        r
    };
    assert_eq!(before[1].get("status"), "503");
    server.arrivals();

    let out = ratefetch()
        .args(["-r", "unlimited", "--retries", "0", "--retry-failed"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retried 3 rows; 2 now succeed"), "{err}");
    let mut after = read_csv(&report);
    after.sort_by_key(Row::index);
    assert_each_index_once(&after, 1..=5);
    assert_eq!(
        (after[1].get("status"), after[3].get("status")),
        ("200", "200")
    );
    assert_eq!(after[4].get("error_kind"), "connect");
    // Rows that had not failed are untouched, to the cell.
    for i in [0, 2] {
        assert_eq!(after[i].0, before[i].0);
    }
    let refetched: Vec<String> = server.arrivals().into_iter().map(|a| a.path).collect();
    assert_eq!(refetched.len(), 2, "{refetched:?}");
    assert!(refetched.iter().all(|p| p.starts_with("/flaky/")));
    // No temporary file is left beside the report.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn retry_failed_refuses_a_report_with_other_columns() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.csv");
    std::fs::write(&report, "a,b\n1,2\n").unwrap();
    let out = ratefetch()
        .arg("--retry-failed")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("columns"));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "a,b\n1,2\n");
}

/// Lower-case hex SHA-256, as the report's `body_sha256` column writes it.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
