//! Local limits are not server errors: with few open files allowed, ratefetch fits its
//! concurrency to them instead of reporting healthy servers as `connect` errors.

mod support;

use std::os::unix::process::CommandExt;

use support::binary::ratefetch_command;
use support::report::read_csv;
use support::server::Server;

/// The tests here run one at a time: a child forked while another test's server holds many
/// connections starts with those open too (until its exec), and opening 180 more in
/// `pre_exec` would then run out.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_low_open_file_limit_caps_the_concurrency_and_every_row_is_200() {
    let _serial = one_at_a_time();
    let server = Server::start_on([127, 0, 0, 102]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (0..400)
        .map(|i| server.url(&format!("/delay/300?{i}")))
        .collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let mut cmd = ratefetch_command();
    cmd.args(["-r", "unlimited", "-c", "1000", "--retries", "0", "-o"])
        .arg(&report)
        .arg(&list);
    // The child alone gets 256 open files, soft and hard (macOS's default soft limit).
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().expect("running ratefetch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("at most 256 open files") && stderr.contains("running with -c 96"),
        "one warning says the concurrency was capped: {stderr}"
    );
    let rows = read_csv(&report);
    assert_eq!(rows.len(), 400);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.get("status") != "200")
        .map(|r| format!("{} {}", r.get("error_kind"), r.get("error")))
        .take(3)
        .collect();
    assert!(failed.is_empty(), "rows that are not 200: {failed:?}");
}

#[test]
fn requests_that_find_no_open_file_wait_for_one_and_every_row_is_200() {
    let _serial = one_at_a_time();
    let server = Server::start_on([127, 0, 0, 103]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (0..300)
        .map(|i| server.url(&format!("/delay/300?{i}")))
        .collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let mut cmd = ratefetch_command();
    cmd.args(["-r", "unlimited", "-c", "1000", "--retries", "0", "-o"])
        .arg(&report)
        .arg(&list);
    // 256 open files, as above, but the child inherits 180 of them already open: -c is
    // fitted to 96 as if all were free, and about 60 connections find a file.
    with_most_files_taken(&mut cmd);
    let out = cmd.output().expect("running ratefetch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("running with -c 96"), "{stderr}");
    // Files, not -c, held the requests back.
    assert!(
        server.max_in_flight() < 90,
        "at most {} requests in flight",
        server.max_in_flight()
    );
    let rows = read_csv(&report);
    assert_eq!(rows.len(), 300);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.get("status") != "200" || r.get("attempts") != "1")
        .map(|r| {
            format!(
                "{} {} {}",
                r.get("error_kind"),
                r.get("error"),
                r.get("attempts")
            )
        })
        .take(3)
        .collect();
    assert!(
        failed.is_empty(),
        "rows that are not 200 at the first attempt: {failed:?}"
    );
}

/// The child gets 256 open files, soft and hard, and inherits 180 of them already open.
fn with_most_files_taken(cmd: &mut std::process::Command) {
    // SAFETY: setrlimit and open are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for _ in 0..180 {
                if libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
