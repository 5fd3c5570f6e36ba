//! The job queue (`ratefetch enqueue`, `--queue`): workers that come and go share one list
//! through a real `redis-server` started by each test; `ratefetch merge` of their reports
//! gives every index exactly once.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use support::binary::{ratefetch_bin, ratefetch_command};
use support::redis_server::{available, Redis};
use support::report::{assert_each_index_once, read_csv, wait_for_rows, Row};
use support::server::Server;

/// `XPENDING key group`: the count, the lowest and highest ID, and each consumer's count.
type PendingSummary = (u64, Option<String>, Option<String>, Vec<(String, String)>);

/// How long a run of these tests may take before it counts as stuck.
const STUCK: Duration = Duration::from_secs(60);

fn spawn(args: &[&str]) -> Child {
    ratefetch_command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ratefetch")
}

/// Waits for `child` to exit, killing it (and failing) if it takes longer than `within`.
fn finish_within(mut child: Child, within: Duration, what: &str) -> Output {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().expect("waiting for ratefetch").is_some() {
            return child
                .wait_with_output()
                .expect("collecting ratefetch's output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("collecting ratefetch's output");
            panic!(
                "{what}: still running after {within:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn enqueue(redis: &Redis, queue: &str, list: &Path) -> Output {
    ratefetch_bin()
        .args(["enqueue", "--redis", &redis.url(), "--queue", queue])
        .arg(list)
        .output()
        .expect("running ratefetch enqueue")
}

fn worker(redis: &Redis, queue: &str, report: &Path, extra: &[&str]) -> Child {
    let url = redis.url();
    let mut args = vec!["-q", "--redis", &url, "--queue", queue, "-o"];
    args.push(report.to_str().unwrap());
    args.extend_from_slice(extra);
    spawn(&args)
}

fn merge(reports: &[PathBuf], out: &Path) -> Vec<Row> {
    let merged = ratefetch_bin()
        .arg("merge")
        .args(reports)
        .arg("-o")
        .arg(out)
        .output()
        .expect("running ratefetch merge");
    assert_exit(&merged, 0, "the merge");
    read_csv(out)
}

#[test]
fn a_worker_killed_mid_run_leaves_its_jobs_to_the_others_and_the_merge_has_every_index_once() {
    if !available("a_worker_killed_mid_run_leaves_its_jobs_to_the_others") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 92]);
    let dir = tempfile::tempdir().unwrap();
    // A CSV list: its other column passes through to the workers' reports.
    let list = dir.path().join("items.csv");
    let mut csv = String::from("sku,url\n");
    for i in 1..=60 {
        csv.push_str(&format!(
            "sku-{i},{}\n",
            server.url(&format!("/delay/30?{i}"))
        ));
    }
    std::fs::write(&list, csv).unwrap();
    assert_exit(&enqueue(&redis, "items", &list), 0, "the enqueue");
    let reports: Vec<PathBuf> = (1..=3)
        .map(|k| dir.path().join(format!("part{k}.csv")))
        .collect();
    let limits = ["-r", "10/s", "-c", "4", "--claim-after", "1s"];
    let mut workers: Vec<Child> = reports
        .iter()
        .map(|r| worker(&redis, "items", r, &limits))
        .collect();
    // Once the second worker has rows of its own, it dies holding the jobs it read.
    wait_for_rows(
        &reports[1],
        "the second worker's first rows",
        STUCK,
        |rows| rows.len() >= 3,
    );
    let mut killed = workers.remove(1);
    let pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();
    // It died holding jobs (read, not acknowledged): the others must take them over.
    let (_, _, _, owners): PendingSummary = redis.query(&["XPENDING", "{items}:jobs", "ratefetch"]);
    let held: u64 = owners
        .iter()
        .filter(|(name, _)| name.contains(&format!("-{pid}-")))
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum();
    assert!(held > 0, "the killed worker held no jobs: {owners:?}");
    for (k, w) in workers.into_iter().enumerate() {
        let out = finish_within(w, STUCK, "a surviving worker");
        assert_exit(&out, 0, &format!("surviving worker {k}"));
    }
    let rows = merge(&reports, &dir.path().join("all.csv"));
    assert_each_index_once(&rows, 1..=60);
    for row in &rows {
        assert_eq!(row.get("status"), "200", "row {}", row.index());
        assert_eq!(
            row.get("sku"),
            format!("sku-{}", row.index()),
            "the passthrough cell"
        );
    }
}

#[test]
fn a_second_enqueue_of_the_same_list_adds_nothing_and_another_list_is_refused() {
    if !available("a_second_enqueue_of_the_same_list_adds_nothing") {
        return;
    }
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=30).map(|i| format!("http://127.0.0.93/{i}")).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    assert_exit(&enqueue(&redis, "q", &list), 0, "the first enqueue");
    assert_eq!(redis.query::<u64>(&["XLEN", "{q}:jobs"]), 30);
    let again = enqueue(&redis, "q", &list);
    assert_exit(&again, 0, "the second enqueue");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 jobs added, 30 already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        redis.query::<u64>(&["XLEN", "{q}:jobs"]),
        30,
        "no job twice"
    );
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "http://127.0.0.93/another\n").unwrap();
    let refused = enqueue(&redis, "q", &other);
    assert_exit(&refused, 1, "another list into the same queue");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another list"));
    assert_eq!(redis.query::<u64>(&["XLEN", "{q}:jobs"]), 30);
}

#[test]
fn enqueue_waits_while_the_queue_holds_more_than_max_unread_jobs() {
    if !available("enqueue_waits_while_the_queue_holds_more_than_max_unread_jobs") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 94]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=600).map(|i| server.url(&format!("/ok?{i}"))).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    let filling = ratefetch_command()
        .args([
            "enqueue",
            "--redis",
            &redis.url(),
            "--queue",
            "big",
            "--max-unread",
            "100",
        ])
        .arg(&list)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first chunk goes in; the rest waits for workers.
    let deadline = Instant::now() + STUCK;
    while redis.query::<u64>(&["XLEN", "{big}:jobs"]) == 0 {
        assert!(Instant::now() < deadline, "nothing was enqueued");
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = dir.path().join("part.csv");
    let w = worker(&redis, "big", &report, &["-r", "unlimited"]);
    // While the worker drains the queue, the stream never holds more than the bound plus
    // one chunk of the enqueue.
    let mut most = 0;
    let mut child = filling;
    while child.try_wait().unwrap().is_none() {
        most = most.max(redis.query::<u64>(&["XLEN", "{big}:jobs"]));
        assert!(Instant::now() < deadline, "the enqueue never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_exit(&child.wait_with_output().unwrap(), 0, "the enqueue");
    assert_exit(&finish_within(w, STUCK, "the worker"), 0, "the worker");
    assert!(most <= 100 + 256, "the queue held {most} jobs");
    assert_each_index_once(&read_csv(&report), 1..=600);
}

#[test]
fn jobs_waiting_on_their_hosts_pace_are_kept_fresh_and_not_taken_over() {
    if !available("jobs_waiting_on_their_hosts_pace_are_kept_fresh_and_not_taken_over") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 97]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=15).map(|i| server.url(&format!("/ok?{i}"))).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    assert_exit(&enqueue(&redis, "paced", &list), 0, "the enqueue");
    // One host at 5/s shared: 15 jobs take 3 s, and most of them wait in a worker much
    // longer than --claim-after.
    let limits = [
        "-r",
        "unlimited",
        "--per-host-rate",
        "5/s",
        "--claim-after",
        "500ms",
    ];
    let reports: Vec<PathBuf> = (1..=2)
        .map(|k| dir.path().join(format!("part{k}.csv")))
        .collect();
    let workers: Vec<Child> = reports
        .iter()
        .map(|r| worker(&redis, "paced", r, &limits))
        .collect();
    for w in workers {
        assert_exit(&finish_within(w, STUCK, "a worker"), 0, "a worker");
    }
    assert_eq!(
        server.arrivals().len(),
        15,
        "each job fetched once: none was taken over while it waited"
    );
    let rows = merge(&reports, &dir.path().join("all.csv"));
    assert_each_index_once(&rows, 1..=15);
}

#[test]
fn a_job_delivered_more_than_max_deliveries_times_becomes_an_error_row() {
    if !available("a_job_delivered_more_than_max_deliveries_times_becomes_an_error_row") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 95]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=3).map(|i| server.url(&format!("/ok?{i}"))).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    assert_exit(&enqueue(&redis, "poison", &list), 0, "the enqueue");
    // A worker that died after reading every job (it never acknowledged them).
    let _: () = redis.query(&[
        "XGROUP",
        "CREATE",
        "{poison}:jobs",
        "ratefetch",
        "0",
        "MKSTREAM",
    ]);
    let _: redis::Value = redis.query(&[
        "XREADGROUP",
        "GROUP",
        "ratefetch",
        "dead",
        "COUNT",
        "10",
        "STREAMS",
        "{poison}:jobs",
        ">",
    ]);
    let report = dir.path().join("part.csv");
    let w = worker(
        &redis,
        "poison",
        &report,
        &["--max-deliveries", "1", "--claim-after", "100ms"],
    );
    assert_exit(&finish_within(w, STUCK, "the worker"), 0, "the worker");
    let rows = read_csv(&report);
    assert_each_index_once(&rows, 1..=3);
    for row in &rows {
        assert_eq!(row.get("error_kind"), "other");
        assert_eq!(row.get("error"), "given up after 1 deliveries");
    }
    assert!(server.arrivals().is_empty(), "nothing was fetched");
}

#[test]
fn a_worker_stopped_with_ctrl_c_hands_back_its_jobs_at_once() {
    if !available("a_worker_stopped_with_ctrl_c_hands_back_its_jobs_at_once") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 96]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=40).map(|i| server.url(&format!("/ok?{i}"))).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    assert_exit(&enqueue(&redis, "handback", &list), 0, "the enqueue");
    let first = dir.path().join("first.csv");
    // Slow: it holds jobs it has not started when it is stopped.
    let slow = worker(&redis, "handback", &first, &["-r", "2/s"]);
    assert_eq!(
        server.wait_arrivals(1, STUCK).len(),
        1,
        "the first worker began"
    );
    let rc = unsafe { libc::kill(slow.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let out = finish_within(slow, STUCK, "the stopped worker");
    assert_exit(&out, 130, "a worker stopped with Ctrl-C");
    // The jobs it had read come back at once: the next worker finishes the queue long
    // before --claim-after (60s by default) would free them.
    let second = dir.path().join("second.csv");
    let started = Instant::now();
    // (Other limits, so another --limit-key.)
    let fast = worker(
        &redis,
        "handback",
        &second,
        &["-r", "unlimited", "--limit-key", "fast"],
    );
    assert_exit(
        &finish_within(fast, STUCK, "the second worker"),
        0,
        "the second worker",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the handed-back jobs took {:?}",
        started.elapsed()
    );
    let rows = merge(&[first, second], &dir.path().join("all.csv"));
    assert_each_index_once(&rows, 1..=40);
    // Handed back is not delivered: none came close to --max-deliveries.
    assert!(rows.iter().all(|r| r.get("status") == "200"));
}

#[test]
fn queue_arguments_that_cannot_work_are_usage_errors_naming_the_flag() {
    for (args, flag) in [
        (vec!["--queue", "q", "-o", "p.csv"], "--queue"),
        (
            vec!["--redis", "redis://127.0.0.1", "--queue", "q"],
            "--queue",
        ),
        (
            vec![
                "--redis",
                "redis://127.0.0.1",
                "--queue",
                "q",
                "-o",
                "p.csv",
                "urls.txt",
            ],
            "--queue",
        ),
        (vec!["enqueue", "urls.txt", "--queue", "q"], "--redis"),
    ] {
        let out = ratefetch_bin()
            .args(&args)
            .output()
            .expect("running ratefetch");
        assert_exit(&out, 2, &args.join(" "));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: names {flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
