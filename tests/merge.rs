//! `ratefetch merge REPORT... -o OUT`: reports of one input (the `--shard` parts of a list,
//! reruns, the reports of killed runs) become one, with every index once: a success over a
//! failure, then the later `started_at`; a torn last record cut; reports with other columns
//! or no index column refused.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::binary::ratefetch_bin;
use support::report::{parse_csv, read_csv, Row};
use support::server::Server;

/// Runs ratefetch on `list` writing `report`, with `args` added; the run must finish.
fn fetch(list: &Path, report: &Path, args: &[&str]) {
    let out = ratefetch_bin()
        .args([
            "-q",
            "-r",
            "unlimited",
            "--retries",
            "0",
            "--connect-timeout",
            "2s",
        ])
        .args(args)
        .arg("-o")
        .arg(report)
        .arg(list)
        .output()
        .expect("running ratefetch");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Runs `ratefetch merge` with `args`.
fn merge(args: &[&Path]) -> Output {
    ratefetch_bin()
        .arg("merge")
        .args(args)
        .output()
        .expect("running ratefetch merge")
}

/// Merges `reports` into `out`; the merge must succeed. Returns its summary line.
fn merged(reports: &[&Path], out: &Path) -> String {
    let mut args = reports.to_vec();
    args.extend([Path::new("-o"), out]);
    let result = merge(&args);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let line = stderr(&result);
    assert_eq!(
        line.trim_end().lines().count(),
        1,
        "one summary line: {line}"
    );
    line
}

/// Runs a merge that must be refused: exit 1, one line naming `file`, no output written.
fn refused(reports: &[&Path], out: &Path, file: &Path, why: &str) {
    let mut args = reports.to_vec();
    args.extend([Path::new("-o"), out]);
    let result = merge(&args);
    let line = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{line}");
    assert_eq!(line.trim_end().lines().count(), 1, "one line: {line}");
    assert!(
        line.contains(&file.display().to_string()) && line.contains(why),
        "{line:?} should name {} and say {why:?}",
        file.display()
    );
    assert!(!out.exists(), "a refused merge writes nothing");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_list(dir: &Path, lines: &[String]) -> PathBuf {
    let list = dir.join("urls.txt");
    std::fs::write(&list, lines.join("\n")).unwrap();
    list
}

/// A list with successes, HTTP errors and failures of every sort, and a comment line (6).
fn mixed_list(server: &Server) -> Vec<String> {
    vec![
        server.url("/ok?1"),
        server.url("/status/404"),
        server.url("/html/Three"),
        "not a url".into(),
        server.url("/status/500"),
        "# a comment keeps its line number".into(),
        // Nothing listens on port 1: a connect error.
        "http://127.0.0.81:1/".into(),
        server.url("/ok?8"),
        server.url("/status/503"),
        server.url("/html/Ten"),
        server.url("/ok?11"),
    ]
}

/// Rows by index; panics on an index twice.
fn by_index(rows: Vec<Row>) -> BTreeMap<u64, BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for row in rows {
        let index = row.index();
        let cells = row.0.into_iter().collect();
        assert!(map.insert(index, cells).is_none(), "index {index} twice");
    }
    map
}

/// The merged CSV report: its rows in file order must have increasing indices.
fn read_merged(path: &Path) -> (Vec<String>, Vec<Row>) {
    let (header, rows) = parse_csv(&std::fs::read(path).unwrap());
    let indices: Vec<u64> = rows.iter().map(Row::index).collect();
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "in index order, each once: {indices:?}"
    );
    (header, rows)
}

#[test]
fn the_shard_halves_of_a_list_merge_into_their_union_with_every_index_once() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &mixed_list(&server));
    let (one, two) = (dir.path().join("part1.csv"), dir.path().join("part2.csv"));
    fetch(&list, &one, &["--shard", "1/2"]);
    fetch(&list, &two, &["--shard", "2/2"]);
    let out = dir.path().join("all.csv");
    let summary = merged(&[&one, &two], &out);
    assert!(
        summary.contains("10 rows from 2 reports, 0 duplicates dropped"),
        "{summary}"
    );

    let (header, rows) = read_merged(&out);
    assert_eq!(header, parse_csv(&std::fs::read(&one).unwrap()).0);
    let mut union = by_index(read_csv(&one));
    union.extend(by_index(read_csv(&two)));
    let merged = by_index(rows);
    assert_eq!(
        merged.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 7, 8, 9, 10, 11],
        "every line but the comment, once"
    );
    assert_eq!(merged, union, "the rows are the parts' rows, unchanged");
    let status = |i: u64| {
        (
            merged[&i]["status"].as_str(),
            merged[&i]["error_kind"].as_str(),
        )
    };
    assert_eq!(
        [status(2), status(4), status(5), status(7), status(9)],
        [
            ("404", ""),
            ("", "invalid_url"),
            ("500", ""),
            ("", "connect"),
            ("503", "")
        ]
    );
}

#[test]
fn jsonl_parts_merge_into_one_jsonl_report_in_index_order() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &mixed_list(&server));
    let (one, two) = (
        dir.path().join("part1.jsonl"),
        dir.path().join("part2.jsonl"),
    );
    fetch(&list, &one, &["--shard", "1/2", "--format", "jsonl"]);
    fetch(&list, &two, &["--shard", "2/2", "--format", "jsonl"]);
    let out = dir.path().join("all.jsonl");
    merged(&[&two, &one], &out);

    let text = std::fs::read_to_string(&out).unwrap();
    let parts = std::fs::read_to_string(&one).unwrap() + &std::fs::read_to_string(&two).unwrap();
    let mut indices = Vec::new();
    for line in text.lines() {
        assert!(
            parts.lines().any(|l| l == line),
            "each line is a part's line as it was: {line}"
        );
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        indices.push(row["index"].as_u64().unwrap());
    }
    assert_eq!(indices, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
    assert_eq!(text.lines().count(), parts.lines().count());
}

#[test]
fn of_two_successes_of_an_index_the_later_started_at_wins_in_either_order() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(
        dir.path(),
        &(1..=4)
            .map(|i| server.url(&format!("/ok?{i}")))
            .collect::<Vec<_>>(),
    );
    let (early, late) = (dir.path().join("early.csv"), dir.path().join("late.csv"));
    fetch(&list, &early, &[]);
    fetch(&list, &late, &[]);
    let late_rows = by_index(read_csv(&late));
    for (n, order) in [[&early, &late], [&late, &early]].into_iter().enumerate() {
        let out = dir.path().join(format!("merged{n}.csv"));
        let summary = merged(&[order[0].as_path(), order[1].as_path()], &out);
        assert!(
            summary.contains("4 rows from 2 reports, 4 duplicates dropped"),
            "{summary}"
        );
        assert_eq!(
            by_index(read_merged(&out).1),
            late_rows,
            "the later run's rows"
        );
    }
}

#[test]
fn a_success_wins_over_a_later_failure_of_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on([127, 0, 0, 82]);
    let lines: Vec<String> = (1..=3).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let list = write_list(dir.path(), &lines);
    let (ok, failed) = (dir.path().join("ok.csv"), dir.path().join("failed.csv"));
    fetch(&list, &ok, &[]);
    // The server is gone: the same list again fails, later.
    drop(server);
    fetch(&list, &failed, &[]);
    let failed_rows = read_csv(&failed);
    assert!(
        failed_rows.iter().all(|r| r.get("error_kind") == "connect"),
        "{failed_rows:?}"
    );
    let ok_rows = by_index(read_csv(&ok));
    for (n, order) in [[&ok, &failed], [&failed, &ok]].into_iter().enumerate() {
        let out = dir.path().join(format!("merged{n}.csv"));
        merged(&[order[0].as_path(), order[1].as_path()], &out);
        assert_eq!(by_index(read_merged(&out).1), ok_rows, "the successes");
    }
}

#[test]
fn a_torn_last_record_is_cut_inside_a_multi_line_cell_and_in_jsonl() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    // A CSV input whose last column, passed through, holds line breaks.
    let mut input = String::from("url,note\n");
    for i in 1..=4 {
        input.push_str(&format!(
            "{},\"line one of {i}\nline two\"\n",
            server.url(&format!("/ok?{i}"))
        ));
    }
    let list = dir.path().join("urls.csv");
    std::fs::write(&list, input).unwrap();

    let report = dir.path().join("killed.csv");
    fetch(&list, &report, &["-c", "1"]);
    // Killed inside the last record's note, after its first line break.
    let text = std::fs::read_to_string(&report).unwrap();
    let last = read_csv(&report).last().unwrap().index();
    let first_line = format!("line one of {last}\n");
    let cut = text.rfind(&first_line).unwrap() + first_line.len();
    std::fs::write(&report, &text[..cut]).unwrap();
    let out = dir.path().join("merged.csv");
    let summary = merged(&[&report], &out);
    assert!(summary.contains("1 torn last record cut"), "{summary}");
    let rows = by_index(read_merged(&out).1);
    assert_eq!(rows.len(), 3);
    assert!(
        !rows.contains_key(&last),
        "the torn record is cut: {rows:?}"
    );
    assert!(rows.values().all(|r| r["note"].ends_with("\nline two")));

    let report = dir.path().join("killed.jsonl");
    fetch(&list, &report, &["--format", "jsonl"]);
    let text = std::fs::read_to_string(&report).unwrap();
    let torn_at = text.trim_end().rfind('\n').unwrap() + 1 + 20;
    std::fs::write(&report, &text[..torn_at]).unwrap();
    let out = dir.path().join("merged.jsonl");
    let summary = merged(&[&report], &out);
    assert!(
        summary.contains("3 rows from 1 report, 0 duplicates dropped, 1 torn last record cut"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        3,
        "the whole lines"
    );
}

#[test]
fn reports_with_other_columns_or_without_an_index_column_are_refused() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &[server.url("/html/One"), server.url("/ok")]);
    let plain = dir.path().join("plain.csv");
    fetch(&list, &plain, &[]);
    let extract = dir.path().join("extract.csv");
    fetch(&list, &extract, &["--extract", "h=css:title"]);
    let no_index = dir.path().join("no-index.csv");
    fetch(&list, &no_index, &["--fields", "url,status"]);
    let jsonl = dir.path().join("plain.jsonl");
    fetch(&list, &jsonl, &["--format", "jsonl"]);
    let jsonl_no_index = dir.path().join("no-index.jsonl");
    fetch(
        &list,
        &jsonl_no_index,
        &["--format", "jsonl", "--fields", "url,status"],
    );

    let out = dir.path().join("out.csv");
    refused(&[&plain, &extract], &out, &extract, "columns");
    refused(&[&extract, &plain], &out, &plain, "columns");
    refused(&[&no_index], &out, &no_index, "no index column");
    refused(&[&plain, &no_index], &out, &no_index, "no index column");
    refused(&[&jsonl_no_index], &out, &jsonl_no_index, "no index column");
    refused(&[&plain, &jsonl], &out, &jsonl, "JSONL");
    merged(&[&plain, &plain], &out);
}

#[test]
fn the_output_is_no_input_and_not_stdout_and_a_refused_merge_leaves_it_as_it_was() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &[server.url("/ok")]);
    let report = dir.path().join("r.csv");
    fetch(&list, &report, &[]);
    let before = std::fs::read(&report).unwrap();
    let result = merge(&[&report, Path::new("-o"), &report]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert!(stderr(&result).contains("is also the output"));
    assert_eq!(std::fs::read(&report).unwrap(), before);

    let result = merge(&[&report, Path::new("-o"), Path::new("-")]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    let result = merge(&[&report]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(stderr(&result).contains("--output"), "{}", stderr(&result));

    let out = dir.path().join("out.csv");
    std::fs::write(&out, "an earlier merge\n").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "url\nhttp://x/\n").unwrap();
    let result = merge(&[&report, &bad, Path::new("-o"), &out]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "an earlier merge\n");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no temporary left: {names:?}"
    );
}

#[test]
fn the_subcommand_wins_over_a_file_named_merge_and_dot_slash_merge_reads_the_file() {
    let server = Server::start_on([127, 0, 0, 81]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("merge"), server.url("/ok")).unwrap();
    let out = ratefetch_bin()
        .current_dir(dir.path())
        .args(["./merge", "-q", "-r", "unlimited"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, rows) = parse_csv(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("status"), "200");
    // As the first argument, `merge` is the subcommand: without -o it is a usage error,
    // and nothing is fetched.
    let out = ratefetch_bin()
        .current_dir(dir.path())
        .args(["merge", "merge"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(server.arrivals().len(), 1, "the subcommand fetched nothing");
}
