//! Stopping and resuming: Ctrl-C / SIGTERM stop intake, let requests in flight finish,
//! flush and exit 130; a second Ctrl-C exits at once; `--resume` finishes the list so that
//! every index appears exactly once, even after SIGKILL.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ratefetch::config::{InputSource, OutputTarget};
use ratefetch::units::Rate;
use ratefetch::{Config, Shutdown};
use support::binary::{ratefetch_bin, ratefetch_command};
use support::report::{assert_each_index_once, read_csv, test_config, wait_for_rows};
use support::server::Server;

fn spawn(args: &[&str], list: &Path, report: &Path) -> Child {
    ratefetch_command()
        .args(args)
        .arg("-o")
        .arg(report)
        .arg(list)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ratefetch")
}

/// Sends `sig` to the child. For a signal ratefetch catches, first waits until it does: its
/// `main` spawns the signal watcher next to the run, so requests may leave before the handler
/// is installed, and a Ctrl-C then would kill it outright.
fn signal(child: &Child, sig: libc::c_int) {
    if sig != libc::SIGKILL {
        wait_until_caught(child, sig);
    }
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits until the child has a handler for `sig`: its bit in `SigCgt` of `/proc/PID/status`.
#[cfg(target_os = "linux")]
fn wait_until_caught(child: &Child, sig: libc::c_int) {
    let path = format!("/proc/{}/status", child.id());
    let bit = 1u64 << (sig - 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(&path).expect("reading the child's status");
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .map(|mask| u64::from_str_radix(mask.trim(), 16).expect("SigCgt is hex"))
            .expect("a SigCgt line");
        if caught & bit != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ratefetch did not catch signal {sig} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Elsewhere there is no cheap way to look; the arrivals waited for make it near certain.
#[cfg(not(target_os = "linux"))]
fn wait_until_caught(_child: &Child, _sig: libc::c_int) {}

fn write_list(dir: &Path, urls: impl Iterator<Item = String>) -> std::path::PathBuf {
    let list = dir.join("urls.txt");
    let text: String = urls.map(|u| u + "\n").collect();
    std::fs::write(&list, text).unwrap();
    list
}

fn wait_output(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("waiting for ratefetch");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctrl_c_flushes_exits_130_and_resume_does_the_rest_exactly_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(
        dir.path(),
        (0..100).map(|i| server.url(&format!("/ok?{i}"))),
    );
    let report = dir.path().join("report.csv");

    let child = spawn(&["-r", "20/s"], &list, &report);
    assert_eq!(server.wait_arrivals(10, Duration::from_secs(20)).len(), 10);
    signal(&child, libc::SIGINT);
    let (code, stderr) = wait_output(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("--resume"),
        "{stderr}"
    );
    let partial = read_csv(&report);
    assert!(
        partial.len() >= 10 && partial.len() < 100,
        "{} rows",
        partial.len()
    );
    let indices: std::collections::HashSet<u64> = partial.iter().map(|r| r.index()).collect();
    assert_eq!(indices.len(), partial.len(), "no index twice");

    let child = spawn(&["-q", "-r", "unlimited", "--resume"], &list, &report);
    let (code, stderr) = wait_output(child);
    assert_eq!(code, Some(0), "{stderr}");
    let all = read_csv(&report);
    assert_each_index_once(&all, 1..=100);
    // Jobs stopped before they were sent were not sent: each URL reached the server once.
    let arrivals = server.arrivals();
    let total = 10 + arrivals.len();
    assert_eq!(
        total, 100,
        "each URL fetched exactly once across the two runs"
    );
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), (0..100).map(|_| server.url("/ok")));
    let report = dir.path().join("report.csv");
    let child = spawn(&["-r", "20/s"], &list, &report);
    assert_eq!(server.wait_arrivals(3, Duration::from_secs(20)).len(), 3);
    signal(&child, libc::SIGTERM);
    let (code, stderr) = wait_output(child);
    assert_eq!(code, Some(130), "{stderr}");
    let rows = read_csv(&report);
    assert!(rows.len() >= 3 && rows.len() < 100, "{} rows", rows.len());
    let unique: std::collections::HashSet<u64> = rows.iter().map(|r| r.index()).collect();
    assert_eq!(unique.len(), rows.len(), "no index twice");
}

#[test]
fn second_ctrl_c_exits_at_once_without_waiting_for_the_grace_period() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![server.url("/ok")];
    urls.extend((0..4).map(|_| server.url("/delay/60000")));
    let list = write_list(dir.path(), urls.into_iter());
    let report = dir.path().join("report.csv");
    let mut child = spawn(&["-r", "unlimited", "--grace", "120s"], &list, &report);
    // The four slow requests are in flight...
    assert_eq!(server.wait_arrivals(5, Duration::from_secs(20)).len(), 5);
    // ...and the fast one is done: its row is on disk. Its arrival alone does not say so.
    wait_for_rows(&report, "the /ok row", Duration::from_secs(30), |rows| {
        rows.iter().any(|r| r.index() == 1)
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    signal(&child, libc::SIGINT);
    // The first stop waits (up to 120 s) for the four slow requests; once it is under way
    // (the notice is printed), the second ends it.
    let mut line = String::new();
    while !line.contains("stopping") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "stderr ended before the notice"
        );
    }
    signal(&child, libc::SIGINT);
    let code = child.wait().unwrap().code();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("interrupted"), "{rest}");
    assert_eq!(code, Some(130));
    let rows = read_csv(&report);
    // What finished is there; the aborted requests wrote no row.
    assert_each_index_once(&rows, [1]);
}

#[test]
fn stop_lets_requests_in_flight_finish_and_writes_their_rows() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // Long enough that none of the first four can finish, and free its worker for a fifth,
    // before the stop (checked below).
    let delay = Duration::from_secs(1);
    let list = write_list(
        dir.path(),
        (0..20).map(|_| server.url(&format!("/delay/{}", delay.as_millis()))),
    );
    let report = dir.path().join("report.csv");
    let config = Config {
        input: InputSource::Path(list),
        output: OutputTarget::Path(report.clone()),
        rate: Rate::Unlimited,
        concurrency: 4,
        workers: 4,
        grace: Duration::from_secs(30),
        ..test_config()
    };
    let shutdown = Shutdown::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = rt.spawn(ratefetch::run(config, shutdown.clone()));
    let first = server.wait_arrivals(4, Duration::from_secs(20));
    assert_eq!(first.len(), 4);
    shutdown.stop.cancel();
    let since_first = first.iter().map(|a| a.at).min().expect("four").elapsed();
    assert!(
        since_first < delay,
        "the stop came {since_first:?} after the first request arrived, when it may have \
         finished and let a fifth go: the test cannot tell what was in flight"
    );
    let summary = rt.block_on(run).unwrap().unwrap();
    assert!(summary.interrupted);
    let rows = read_csv(&report);
    assert_eq!(rows.len(), 4, "the four requests in flight finished");
    assert!(rows.iter().all(|r| r.get("status") == "200"));
    assert!(
        server.arrivals().is_empty(),
        "nothing new was sent after the stop"
    );
}

#[test]
fn grace_period_ends_requests_still_in_flight_without_rows() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), (0..4).map(|_| server.url("/delay/60000")));
    let report = dir.path().join("report.csv");
    let config = Config {
        input: InputSource::Path(list),
        output: OutputTarget::Path(report.clone()),
        grace: Duration::from_millis(200),
        ..test_config()
    };
    let shutdown = Shutdown::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = rt.spawn(ratefetch::run(config, shutdown.clone()));
    assert_eq!(server.wait_arrivals(4, Duration::from_secs(20)).len(), 4);
    shutdown.stop.cancel();
    let summary = rt.block_on(run).unwrap().unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.not_done, 4);
    assert!(read_csv(&report).is_empty());
}

#[test]
fn sigkill_at_random_points_then_resume_gives_each_index_exactly_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 4000u64;
    let list = write_list(dir.path(), (0..n).map(|i| server.url(&format!("/ok?{i}"))));
    let report = dir.path().join("report.csv");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..5 {
        let resume: &[&str] = if round == 0 { &[] } else { &["--resume"] };
        let mut args = vec!["-q", "-r", "1000/s"];
        args.extend_from_slice(resume);
        let mut child = spawn(&args, &list, &report);
        // Kill after a random number of requests (0.05 to 1.5 s of work), so the kill lands
        // before, between and after writes (a 64 KiB buffer, flushed every second).
        let wait_for = rng.usize(50..1500);
        assert_eq!(
            server
                .wait_arrivals(wait_for, Duration::from_secs(20))
                .len(),
            wait_for
        );
        signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        // Whatever the moment, the file is CSV but for perhaps a torn last line.
        let text = std::fs::read(&report).unwrap();
        let whole = &text[..text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)];
        let (_, rows) = support::report::parse_csv(whole);
        let unique: std::collections::HashSet<u64> = rows.iter().map(|r| r.index()).collect();
        assert_eq!(unique.len(), rows.len(), "round {round}: an index twice");
    }
    let child = spawn(&["-q", "-r", "unlimited", "--resume"], &list, &report);
    let (code, stderr) = wait_output(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_each_index_once(&read_csv(&report), 1..=n);
}

#[test]
fn resume_with_another_input_is_refused_and_the_report_untouched() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), (0..5).map(|i| server.url(&format!("/ok?{i}"))));
    let report = dir.path().join("report.csv");
    let (code, stderr) = wait_output(spawn(&["-q", "-r", "unlimited"], &list, &report));
    assert_eq!(code, Some(0), "{stderr}");
    let before = std::fs::read(&report).unwrap();
    server.arrivals();

    let other_dir = tempfile::tempdir().unwrap();
    let other = write_list(
        other_dir.path(),
        (0..8).map(|i| server.url(&format!("/other?{i}"))),
    );
    let (code, stderr) = wait_output(spawn(&["-r", "unlimited", "--resume"], &other, &report));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the input the report was made from"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(&report).unwrap(),
        before,
        "the report is untouched"
    );
    assert!(server.arrivals().is_empty(), "nothing was fetched");
}

#[test]
fn resume_with_other_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(
        dir.path(),
        std::iter::once("http://127.0.0.1:9/".to_string()),
    );
    let report = dir.path().join("report.csv");
    std::fs::write(&report, "name,price\nwidget,3\n").unwrap();
    let (code, stderr) = wait_output(spawn(&["-r", "unlimited", "--resume"], &list, &report));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("columns"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "name,price\nwidget,3\n"
    );
}

#[test]
fn jsonl_reports_resume_too() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), (0..60).map(|i| server.url(&format!("/ok?{i}"))));
    let report = dir.path().join("report.jsonl");
    let child = spawn(&["-r", "20/s", "--format", "jsonl"], &list, &report);
    assert_eq!(server.wait_arrivals(10, Duration::from_secs(20)).len(), 10);
    signal(&child, libc::SIGINT);
    let (code, stderr) = wait_output(child);
    assert_eq!(code, Some(130), "{stderr}");
    let args = ["-q", "-r", "unlimited", "--format", "jsonl", "--resume"];
    let (code, stderr) = wait_output(spawn(&args, &list, &report));
    assert_eq!(code, Some(0), "{stderr}");
    let mut indices: Vec<u64> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (1..=60).collect::<Vec<_>>());
}

#[test]
fn resume_from_stdin_with_another_input_fetches_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), (0..5).map(|i| server.url(&format!("/ok?{i}"))));
    let report = dir.path().join("report.csv");
    // A report with rows 3 and 5 missing (as after a kill).
    let (code, _) = wait_output(spawn(&["-q", "-r", "unlimited"], &list, &report));
    assert_eq!(code, Some(0));
    let text = std::fs::read_to_string(&report).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("3,") && !l.starts_with("5,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&report, &kept).unwrap();
    server.arrivals();

    // The same lines but line 4 changed, given on stdin: line 3 comes before the mismatch
    // and must not be fetched either.
    let mut other: Vec<String> = (0..5).map(|i| server.url(&format!("/ok?{i}"))).collect();
    other[3] = server.url("/changed");
    let out = ratefetch_bin()
        .args(["-r", "unlimited", "--resume", "-o"])
        .arg(&report)
        .write_stdin(other.join("\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(server.arrivals().is_empty(), "something was fetched");
    assert_eq!(std::fs::read_to_string(&report).unwrap(), kept);
}
