//! Cells kept as given (issue 9 §3): a CSV input's passthrough cells with line breaks (an
//! address, a note) come out as they went in, and a report whose rows span several lines
//! still resumes, after SIGKILL and after a row torn between the lines of a cell, with
//! every index exactly once. The reports are parsed back with the `csv` crate.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::report::{assert_each_index_once, parse_csv, ratefetch_bin, read_csv, Row};
use support::server::Server;

/// The address of row `n`: line breaks (LF and CR LF), a comma and quotes, as people type them.
fn address(n: u64) -> String {
    format!("{n} Main St, \"Apt {n}\"\r\nSpringfield\nUSA")
}

/// A CSV input `id,url,address` of `rows` rows whose URLs are `path(n)` on `server`.
fn write_input(dir: &Path, server: &Server, rows: u64, path: impl Fn(u64) -> String) -> PathBuf {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "url", "address"]).unwrap();
    for n in 1..=rows {
        w.write_record([format!("ID-{n}"), server.url(&path(n)), address(n)])
            .unwrap();
    }
    let input = dir.join("people.csv");
    std::fs::write(&input, w.into_inner().unwrap()).unwrap();
    input
}

/// Checks that a row has its input's cells, line breaks included.
fn assert_cells_intact(row: &Row) {
    let n = row.index();
    assert_eq!(row.get("id"), format!("ID-{n}"), "index {n}");
    assert_eq!(row.get("address"), address(n), "index {n}");
}

fn spawn(args: &[&str], input: &Path, report: &Path) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("ratefetch"))
        .args(args)
        .arg("-o")
        .arg(report)
        .arg(input)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ratefetch")
}

fn sigkill(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill({pid}, SIGKILL)");
    child.wait().unwrap();
}

/// The rows of a report that a kill may have torn, and the length of its whole part. The
/// last record is whole when it has every column, its address is complete (the address is
/// the last column, so a record torn inside it still has every column) and its newline was
/// written; otherwise it is left out.
fn whole_rows(text: &[u8]) -> (Vec<Row>, usize) {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text);
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let mut rows = Vec::new();
    let mut whole = rdr.position().byte() as usize;
    let mut record = csv::StringRecord::new();
    while rdr.read_record(&mut record).expect("a CSV record") {
        // Where the next record starts: the end of this one, with its newline if written.
        let end = rdr.position().byte() as usize;
        let row = Row(header
            .iter()
            .cloned()
            .zip(record.iter().map(String::from))
            .collect());
        let complete = record.len() == header.len()
            && row.0.get("address") == Some(&address(row.index()))
            && text[..end].ends_with(b"\n");
        if !complete {
            break;
        }
        rows.push(row);
        whole = end;
    }
    (rows, whole)
}

/// The first bytes of a report row for `index`, cut right after the first line break of its
/// address: what a kill during that row's write can leave. As the address is the last
/// column, the csv reader takes these bytes for a whole record with a shorter address.
fn row_torn_inside_its_address(server: &Server, index: u64) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let url = server.url(&format!("/ok?{index}"));
    let record = [
        index.to_string(),
        url.clone(),
        url,
        "200".into(),
        String::new(),
        String::new(),
        "1".into(),
        "3".into(),
        "2".into(),
        "text/plain".into(),
        String::new(),
        "2026-11-23T08:54:07.123Z".into(),
        format!("ID-{index}"),
        address(index),
    ];
    w.write_record(&record).unwrap();
    let bytes = w.into_inner().unwrap();
    let first_break = bytes.iter().position(|b| *b == b'\n').unwrap();
    assert!(
        first_break + 1 < bytes.len(),
        "the break is inside the address"
    );
    bytes[..=first_break].to_vec()
}

#[test]
fn multi_line_cells_survive_sigkill_torn_rows_and_resume_with_each_index_exactly_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let input = write_input(dir.path(), &server, n, |i| format!("/ok?{i}"));
    let report = dir.path().join("report.csv");
    let mut rng = fastrand::Rng::with_seed(0x9_3);
    let mut torn_by_the_test = 0;
    for round in 0..4 {
        let mut args = vec!["-q", "-r", "1000/s"];
        if round > 0 {
            args.push("--resume");
        }
        // Kill after a random number of requests (0.05 to 1.5 s of work), so the kill lands
        // before, between and after writes (a 64 KiB buffer, flushed every second); but
        // never after more than half the work left, so the run cannot finish first.
        let done = match std::fs::read(&report) {
            Ok(text) => whole_rows(&text).0.len(),
            Err(_) => 0,
        };
        let left = n as usize - done;
        let wait_for = rng.usize(50..1500).min(left / 2);
        assert!(wait_for > 0, "round {round}: no work left to kill");
        let mut child = spawn(&args, &input, &report);
        assert_eq!(
            server
                .wait_arrivals(wait_for, Duration::from_secs(20))
                .len(),
            wait_for
        );
        sigkill(&mut child);
        let text = std::fs::read(&report).unwrap();
        let (rows, whole) = whole_rows(&text);
        let unique: std::collections::HashSet<u64> = rows.iter().map(Row::index).collect();
        assert_eq!(unique.len(), rows.len(), "round {round}: an index twice");
        rows.iter().for_each(assert_cells_intact);
        if whole == text.len() {
            // The kill left whole rows: add a row torn between the lines of its address, as
            // a kill during its write would leave it. Its index is one not done yet.
            let next = (1..=n).find(|i| !unique.contains(i)).expect("work left");
            let mut torn = text.clone();
            torn.extend(row_torn_inside_its_address(&server, next));
            std::fs::write(&report, torn).unwrap();
            torn_by_the_test += 1;
        }
    }
    assert!(
        torn_by_the_test > 0,
        "no round tested a row torn inside a cell"
    );
    let child = spawn(&["-q", "-r", "unlimited", "--resume"], &input, &report);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_csv(&report);
    assert_each_index_once(&rows, 1..=n);
    rows.iter().for_each(assert_cells_intact);
}

#[test]
fn retry_failed_keeps_multi_line_cells_and_cuts_a_row_torn_inside_one() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let paths = ["/ok", "/flaky/a", "/status/404", "/flaky/b"];
    let input = write_input(dir.path(), &server, 4, |i| {
        paths[i as usize - 1].to_string()
    });
    let report = dir.path().join("report.csv");
    ratefetch_bin()
        .args(["-q", "-r", "unlimited", "--retries", "0", "-o"])
        .arg(&report)
        .arg(&input)
        .assert()
        .success();
    let before = {
        let mut r = read_csv(&report);
        r.sort_by_key(Row::index);
        r
    };
    assert_eq!(before[1].get("status"), "503");
    before.iter().for_each(assert_cells_intact);
    // A kill of a later run left a row torn between the lines of its address.
    let mut text = std::fs::read(&report).unwrap();
    text.extend(row_torn_inside_its_address(&server, 5));
    std::fs::write(&report, &text).unwrap();
    server.arrivals();

    let out = ratefetch_bin()
        .args(["-r", "unlimited", "--retries", "0", "--retry-failed"])
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("retried 2 rows; 2 now succeed"), "{err}");
    assert!(err.contains("cut a torn last row"), "{err}");
    let (_, mut after) = parse_csv(&std::fs::read(&report).unwrap());
    after.sort_by_key(Row::index);
    assert_each_index_once(&after, 1..=4);
    after.iter().for_each(assert_cells_intact);
    assert_eq!(
        (after[1].get("status"), after[3].get("status")),
        ("200", "200")
    );
    // Rows that had not failed are untouched, to the cell.
    for i in [0, 2] {
        assert_eq!(after[i].0, before[i].0);
    }
    assert_eq!(
        server.arrivals().len(),
        2,
        "only the failed rows were fetched"
    );
}
