//! No run damages a file it writes or reads: a run that is refused (a file in use, a
//! header, a damaged row) refuses before it changes a byte and leaves no new file behind;
//! every file a run writes is locked while it writes it; `--resume`, `--retry-failed` and
//! `merge` read reports back with one set of rules (damage named by its line, a torn tail
//! only at the very end).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use support::binary::{ratefetch_bin, ratefetch_command};
use support::report::{assert_each_index_once, read_csv};
use support::server::Server;

fn write_list(dir: &Path, server: &Server, paths: &[String]) -> PathBuf {
    let list = dir.join("urls.txt");
    let text: String = paths.iter().map(|p| server.url(p) + "\n").collect();
    std::fs::write(&list, text).unwrap();
    list
}

fn spawn(args: &[&str], files: &[&Path]) -> Child {
    ratefetch_command()
        .args(args)
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ratefetch")
}

/// Runs the binary to its end: its exit code and its stderr.
fn run(args: &[&str], files: &[&Path]) -> (Option<i32>, String) {
    let Output { status, stderr, .. } = ratefetch_bin().args(args).args(files).output().unwrap();
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Asserts a refusal: exit 1, one line on stderr that holds each of `says`.
fn assert_refused((code, stderr): (Option<i32>, String), says: &[&str]) {
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for s in says {
        assert!(stderr.contains(s), "{stderr:?} should say {s:?}");
    }
}

fn wait_finished(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn oks(n: u64) -> Vec<String> {
    (1..=n).map(|i| format!("/ok?{i}")).collect()
}

#[test]
fn an_overlapping_run_on_the_same_report_and_state_file_is_refused_and_changes_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &server, &oks(40));
    let report = dir.path().join("report.csv");
    let state = dir.path().join("quota.state");
    let state_arg = state.to_str().unwrap();
    let args = [
        "-q",
        "-r",
        "20/s",
        "--quota",
        "1000/h",
        "--quota-state",
        state_arg,
    ];
    let first = spawn(&args, &[Path::new("-o"), &report, &list]);
    // The first run holds its files once it sends.
    assert_eq!(server.wait_arrivals(1, Duration::from_secs(20)).len(), 1);

    // The cron job's next run, the same command: refused, naming the report.
    assert_refused(
        run(&args, &[Path::new("-o"), &report, &list]),
        &[report.to_str().unwrap(), "in use by another ratefetch run"],
    );
    // Another report with the same state file: refused before the report is created.
    let other = dir.path().join("other.csv");
    assert_refused(
        run(&args, &[Path::new("-o"), &other, &list]),
        &[state_arg, "in use by another ratefetch run"],
    );
    assert!(!other.exists(), "a refused run leaves no new file");

    wait_finished(first);
    let text = std::fs::read(&report).unwrap();
    assert!(
        !text.contains(&0),
        "no NUL bytes: the report was not truncated under the run"
    );
    assert_each_index_once(&read_csv(&report), 1..=40);
    assert_eq!(server.arrivals().len(), 39, "only the first run sent");
}

#[test]
fn two_resumes_at_once_one_is_refused_and_every_line_is_fetched_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &server, &oks(30));
    let report = dir.path().join("report.csv");
    let args = ["-q", "-r", "20/s", "--resume"];
    let first = spawn(&args, &[Path::new("-o"), &report, &list]);
    assert_eq!(server.wait_arrivals(1, Duration::from_secs(20)).len(), 1);
    assert_refused(
        run(&args, &[Path::new("-o"), &report, &list]),
        &[report.to_str().unwrap(), "in use by another ratefetch run"],
    );
    wait_finished(first);
    assert_each_index_once(&read_csv(&report), 1..=30);
    assert_eq!(server.arrivals().len(), 29, "each line fetched once");
}

#[test]
fn a_refused_resume_on_a_file_that_is_not_a_report_leaves_it_byte_for_byte() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &server, &oks(3));
    for (name, format, text) in [
        (
            "contacts.csv",
            "csv",
            "name,email\nann,a@x.test\nbob,b@x.test",
        ),
        (
            "contacts.jsonl",
            "jsonl",
            "{\"name\":\"ann\"}\n{\"name\":\"bob\"",
        ),
        // Nothing but one line, no newline: not this run's header cut short, nor its first
        // row.
        ("note.csv", "csv", "remember the milk"),
        ("note.jsonl", "jsonl", "remember the milk"),
        ("object.jsonl", "jsonl", "{\"a\":1}"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, stderr) = run(
            &["-q", "--resume", "--format", format],
            &[Path::new("-o"), &path, &list],
        );
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains("write to a new file"), "{name}: {stderr}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{name}");
    }
    assert!(server.arrivals().is_empty(), "nothing was sent");
}

/// A finished report of `n` rows: `/status/500` for every fifth (so --retry-failed has rows
/// to fetch again), `/ok` for the rest.
fn finished_report(dir: &Path, server: &Server, n: u64) -> (PathBuf, PathBuf) {
    let paths: Vec<String> = (1..=n)
        .map(|i| {
            if i % 5 == 0 {
                format!("/status/500?{i}")
            } else {
                format!("/ok?{i}")
            }
        })
        .collect();
    let list = write_list(dir, server, &paths);
    let report = dir.join("report.csv");
    ratefetch_bin()
        .args(["-q", "-r", "unlimited", "--retries", "0", "-o"])
        .arg(&report)
        .arg(&list)
        .assert()
        .success();
    assert_eq!(
        server
            .wait_arrivals(n as usize, Duration::from_secs(20))
            .len(),
        n as usize
    );
    (list, report)
}

/// `text` with `what` put in at the start of the line that starts with `prefix`.
fn insert_at_line(text: &str, prefix: &str, what: &str) -> String {
    let at = text
        .match_indices(&format!("\n{prefix}"))
        .next()
        .expect("the line")
        .0
        + 1;
    format!("{}{what}{}", &text[..at], &text[at..])
}

/// `--resume`, `--retry-failed` and `merge` on a damaged report: each refuses with exit 1
/// and one line naming the file and `line`, sends nothing, and leaves the report and the
/// merge's output as they were. `merge --skip-damaged` then saves the good rows.
fn damage_is_refused_by_all_three(damage: impl Fn(&str) -> String, says: &str) {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (list, report) = finished_report(dir.path(), &server, 100);
    let text = std::fs::read_to_string(&report).unwrap();
    // Rows are in the order they finished: find index 10's line.
    let at = text.find("\n10,").expect("row 10") + 1;
    let line = format!("line {}", text[..at].matches('\n').count() + 1);
    let line = line.as_str();
    let damaged = damage(&text);
    std::fs::write(&report, &damaged).unwrap();
    let name = report.to_str().unwrap();
    let merged = dir.path().join("merged.csv");
    let cases: [(&[&str], Vec<&Path>); 3] = [
        (
            &["-q", "--resume", "-r", "unlimited"],
            vec![Path::new("-o"), &report, &list],
        ),
        (&["-q", "-r", "unlimited", "--retry-failed"], vec![&report]),
        (&["merge", "-q"], vec![&report, Path::new("-o"), &merged]),
    ];
    for (args, files) in cases {
        assert_refused(run(args, &files), &[name, line, says]);
        assert_eq!(
            std::fs::read_to_string(&report).unwrap(),
            damaged,
            "{args:?} changed nothing"
        );
        assert!(!merged.exists(), "{args:?} wrote no merge");
    }
    assert!(server.arrivals().is_empty(), "nothing was sent");

    let (code, stderr) = run(
        &["merge", "--skip-damaged"],
        &[&report, Path::new("-o"), &merged],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("1 damaged row left out"), "{stderr}");
    assert!(stderr.contains(line), "the row left out is named: {stderr}");
    let rows = read_csv(&merged);
    assert_each_index_once(&rows, (1..=100).filter(|i| *i != 10));
}

#[test]
fn a_stray_quote_mid_report_is_damage_for_resume_retry_failed_and_merge() {
    damage_is_refused_by_all_three(|text| insert_at_line(text, "10,", "\""), "stray quote");
}

#[test]
fn an_index_0_row_is_damage_for_resume_retry_failed_and_merge() {
    damage_is_refused_by_all_three(|text| text.replacen("\n10,", "\n0,", 1), "its index is 0");
}
