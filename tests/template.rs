//! `--url-template`: one request per id. `{name}` takes a CSV column, `{}` a text line,
//! each percent-encoded; every input column passes through and the url column shows the
//! URL that was filled.

mod support;

use std::path::Path;

use support::binary::ratefetch_bin;
use support::report::{read_csv, Row};
use support::server::Server;

fn run(dir: &Path, name: &str, text: &str, args: &[&str]) -> (Option<i32>, String, Vec<Row>) {
    let input = dir.join(name);
    std::fs::write(&input, text).unwrap();
    let report = dir.join("report.csv");
    let _ = std::fs::remove_file(&report);
    let out = ratefetch_bin()
        .args(["-r", "unlimited", "-q", "-o"])
        .arg(&report)
        .args(args)
        .arg(&input)
        .output()
        .unwrap();
    let mut rows = if report.exists() {
        read_csv(&report)
    } else {
        Vec::new()
    };
    rows.sort_by_key(Row::index);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rows,
    )
}

#[test]
fn csv_columns_fill_the_template_encoded_and_pass_through() {
    let server = Server::start_on([127, 0, 0, 110]);
    let dir = tempfile::tempdir().unwrap();
    let template = server.url("/echo/items/{id}?lang={Lang}");
    let text = "id,lang,note\n42,en,first\n\"a/b c&d\",pt-BR,second\n,de,no id\n";
    let (code, stderr, rows) = run(dir.path(), "ids.csv", text, &["--url-template", &template]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rows.len(), 3);
    let mut paths: Vec<String> = server.arrivals().into_iter().map(|a| a.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/echo/items/42?lang=en",
            "/echo/items/a%2Fb%20c%26d?lang=pt-BR"
        ],
        "one request per row with an id, each value one segment or one value"
    );
    assert_eq!(rows[0].get("url"), server.url("/echo/items/42?lang=en"));
    assert_eq!(
        (rows[1].get("id"), rows[1].get("lang"), rows[1].get("note")),
        ("a/b c&d", "pt-BR", "second"),
        "every column passes through"
    );
    assert_eq!(rows[2].get("error_kind"), "invalid_url");
    assert!(
        rows[2].get("error").contains("{id}"),
        "{}",
        rows[2].get("error")
    );
    assert_eq!(rows[2].get("note"), "no id");
}

#[test]
fn text_lines_fill_the_empty_placeholder_and_are_kept_in_the_line_column() {
    let server = Server::start_on([127, 0, 0, 111]);
    let dir = tempfile::tempdir().unwrap();
    let template = server.url("/html/{}");
    let (code, stderr, rows) = run(
        dir.path(),
        "ids.txt",
        "alice\n# skipped\n\nbob smith\n",
        &["--url-template", &template],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].index(), rows[0].get("line")), (1, "alice"));
    assert_eq!((rows[1].index(), rows[1].get("line")), (4, "bob smith"));
    assert_eq!(rows[1].get("url"), server.url("/html/bob%20smith"));
    assert_eq!(
        (rows[1].get("status"), rows[1].get("title")),
        ("200", "bob smith")
    );
}

#[test]
fn a_template_that_does_not_fit_the_input_is_a_usage_error_before_any_request() {
    let server = Server::start_on([127, 0, 0, 112]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "ids.csv",
            "id\n1\n",
            server.url("/x/{sku}"),
            "no column \"sku\"",
        ),
        (
            "ids.csv",
            "id\n1\n",
            server.url("/x/{}"),
            "text input's line",
        ),
        (
            "ids.txt",
            "1\n",
            server.url("/x/{id}"),
            "use {} for each line",
        ),
        ("ids.txt", "1\n", server.url("/x/{id"), "without its }"),
        ("ids.txt", "1\n", "file:///{}".to_string(), "http(s) URL"),
    ];
    for (name, text, template, why) in cases {
        let (code, stderr, rows) = run(dir.path(), name, text, &["--url-template", &template]);
        assert_eq!(code, Some(2), "{template}: {stderr}");
        assert!(
            stderr.contains("--url-template") && stderr.contains(why),
            "{template}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(rows.is_empty());
    }
    let (code, stderr, _) = run(
        dir.path(),
        "ids.csv",
        "id,url\n1,x\n",
        &[
            "--url-template",
            &server.url("/x/{id}"),
            "--url-column",
            "url",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(server.arrivals().is_empty(), "nothing was fetched");
}
