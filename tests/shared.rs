//! Shared limits (`--redis`, `--limit-key`): processes that name the same Redis and key obey
//! the limits together, checked at the server over the union of their requests. Every test
//! starts a real `redis-server` of its own (`support::redis_server`).

mod support;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use support::binary::{ratefetch_bin, ratefetch_command};
use support::redis_server::{available, Redis};
use support::report::read_csv;
use support::server::{Arrival, Server};
use support::windows::{check_rate, max_in_window};

/// Arrival-time noise allowed on top of the promise.
/// Noise allowed on every window at the server: a worker descheduled between its grant and
/// the wire on a busy 2-core machine (tests-under-load once saw 11 requests in 239 ms at
/// 40/s, 1.3 ms past a 10 ms tolerance).
const TOLERANCE: Duration = Duration::from_millis(15);

fn times(arrivals: &[Arrival]) -> Vec<Instant> {
    arrivals.iter().map(|a| a.at).collect()
}

fn write_list(path: &Path, urls: &[String]) {
    std::fs::write(path, urls.join("\n") + "\n").unwrap();
}

/// Starts ratefetch with `args` (stderr kept, to show on failure).
fn spawn(args: &[&str]) -> Child {
    ratefetch_command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ratefetch")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("waiting for ratefetch")
}

/// Starts `n` processes sharing the limits in `redis`, process k fetching `per` URLs of its
/// own on `server` with `args`, its report in `dir/part{k}.csv`.
fn start_processes(
    redis: &Redis,
    server: &Server,
    dir: &Path,
    (n, per): (usize, usize),
    args: &[&str],
) -> Vec<Child> {
    let url = redis.url();
    (1..=n)
        .map(|k| {
            let list = dir.join(format!("urls{k}.txt"));
            let urls: Vec<String> = (0..per)
                .map(|i| server.url(&format!("/ok?{k}-{i}")))
                .collect();
            write_list(&list, &urls);
            let report = dir.join(format!("part{k}.csv"));
            let mut all = vec!["-q", "--redis", &url, "-o", report.to_str().unwrap()];
            all.extend_from_slice(args);
            all.push(list.to_str().unwrap());
            spawn(&all)
        })
        .collect()
}

fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_rate(arrivals: &[Arrival], rate: f64, burst: u32, what: &str) {
    let check = check_rate(&times(arrivals), rate, burst, TOLERANCE);
    assert!(
        check.held,
        "{what}: {} requests within {:?}, the promise allows {:.2} (rate {rate}/s, burst {burst})",
        check.worst_count, check.worst_span, check.allowed
    );
}

#[test]
fn four_processes_on_one_key_keep_the_rate_together_at_the_server() {
    if !available("four_processes_on_one_key_keep_the_rate_together_at_the_server") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 85]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (1..=160).map(|i| server.url(&format!("/ok?{i}"))).collect();
    write_list(&list, &urls);
    let url = redis.url();
    let runs: Vec<(Child, std::path::PathBuf)> = (1..=4)
        .map(|k| {
            let report = dir.path().join(format!("part{k}.csv"));
            let log = dir.path().join(format!("part{k}.log"));
            let shard = format!("{k}/4");
            let child = spawn(&[
                "-q",
                "-r",
                "100/s",
                "-c",
                "4",
                "--redis",
                &url,
                "--shard",
                &shard,
                "--log-requests",
                log.to_str().unwrap(),
                "-o",
                report.to_str().unwrap(),
                list.to_str().unwrap(),
            ]);
            (child, report)
        })
        .collect();
    let mut rows = 0;
    for (child, report) in runs {
        assert_exit(&finish(child), 0, "a process sharing the limit");
        let part = read_csv(&report);
        assert!(part.iter().all(|r| r.get("status") == "200"));
        rows += part.len();
    }
    assert_eq!(rows, 160, "every line has its row in one of the parts");
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 160, "each URL fetched once");
    // Alone, each process would send at 100/s: together 400/s.
    assert_rate(&arrivals, 100.0, 1, "the union of four processes");

    // The logs, audited together at the grants' times on Redis' clock, hold the limit; a
    // stricter rate than the one shared does not.
    let logs: Vec<String> = (1..=4)
        .map(|k| {
            let log = dir.path().join(format!("part{k}.log"));
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(
                text.lines().skip(1).all(|l| l.contains("\"granted\":")),
                "each request's line carries its grant time"
            );
            log.to_str().unwrap().to_string()
        })
        .collect();
    let audit = ratefetch_bin()
        .arg("audit")
        .args(&logs)
        .output()
        .expect("running the audit");
    assert_exit(&audit, 0, "the audit of the four logs");
    let strict = ratefetch_bin()
        .arg("audit")
        .args(&logs)
        .args(["--rate", "80/s"])
        .output()
        .expect("running the audit");
    assert_exit(&strict, 1, "the audit against a stricter rate");
}

/// A run with `--redis` and `--log-requests` under every kind of limit the script keeps (a
/// burst, a quota, a per-host pace, a per-host quota) passes `ratefetch audit` on its log,
/// judged at Redis' granted instants with the limits of the log's header; a stricter quota
/// does not.
#[test]
fn a_run_with_redis_passes_the_audit_of_its_log_under_every_limit() {
    if !available("a_run_with_redis_passes_the_audit_of_its_log_under_every_limit") {
        return;
    }
    let redis = Redis::start();
    let a = Server::start_on([127, 0, 0, 102]);
    let b = Server::start_on([127, 0, 0, 103]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let urls: Vec<String> = (0..15)
        .flat_map(|i| [a.url(&format!("/ok?{i}")), b.url(&format!("/ok?{i}"))])
        .collect();
    write_list(&list, &urls);
    let log = dir.path().join("run.log");
    let report = dir.path().join("report.csv");
    let out = finish(spawn(&[
        "-q",
        "-r",
        "200/s",
        "--burst",
        "3",
        "--quota",
        "10/100ms",
        "--per-host-rate",
        "100/s",
        "--per-host-quota",
        "6/100ms",
        "--redis",
        &redis.url(),
        "--log-requests",
        log.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
        list.to_str().unwrap(),
    ]));
    assert_exit(&out, 0, "the run");
    assert_eq!(read_csv(&report).len(), 30);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 31, "a header and a line per request");
    assert!(
        text.lines().skip(1).all(|l| l.contains("\"granted\":")),
        "each request's line carries its grant time"
    );
    let audit = ratefetch_bin()
        .arg("audit")
        .arg(&log)
        .output()
        .expect("running the audit");
    assert_exit(&audit, 0, "the audit of the run's log");
    let said = String::from_utf8_lossy(&audit.stdout);
    assert!(
        said.contains("granted"),
        "names the instants judged: {said}"
    );
    // Every limit of the run, read from the log's header, judged.
    for limit in [
        "--rate 200/s --burst 3: held",
        "--quota 10/100ms: held",
        "--per-host-rate 100/s: held",
        "--per-host-quota 6/100ms: held",
    ] {
        assert!(said.contains(limit), "{limit}: {said}");
    }
    // The quota bound the run (200/s would send 20 in 100 ms): some window holds 10.
    let strict = ratefetch_bin()
        .arg("audit")
        .arg(&log)
        .args(["--quota", "9/100ms"])
        .output()
        .expect("running the audit");
    assert_exit(&strict, 1, "the audit against a stricter quota");
}

#[test]
fn a_process_stopped_mid_run_does_not_send_its_stale_grants_in_a_burst() {
    if !available("a_process_stopped_mid_run_does_not_send_its_stale_grants_in_a_burst") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 99]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["-r", "100/s", "-c", "16"];
    let runs = start_processes(&redis, &server, dir.path(), (2, 60), &args);
    let mut arrivals = server.wait_arrivals(30, Duration::from_secs(30));
    assert_eq!(arrivals.len(), 30, "the runs got going");
    // The first process stops (as a machine that stalls) while its workers hold grants, and
    // goes on 300 ms later, when every one of them is stale.
    let pid = runs[0].id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    for child in runs {
        assert_exit(&finish(child), 0, "a process sharing the limit");
    }
    arrivals.extend(server.arrivals());
    assert_eq!(arrivals.len(), 120);
    assert_rate(&arrivals, 100.0, 1, "the union, across the stall");
}

#[test]
fn a_per_host_rate_and_a_quota_hold_across_processes() {
    if !available("a_per_host_rate_and_a_quota_hold_across_processes") {
        return;
    }
    let redis = Redis::start();
    let a = Server::start_on([127, 0, 0, 86]);
    let b = Server::start_on([127, 0, 0, 87]);
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let runs: Vec<Child> = (1..=2)
        .map(|k| {
            let list = dir.path().join(format!("urls{k}.txt"));
            let urls: Vec<String> = (0..10)
                .flat_map(|i| {
                    [
                        a.url(&format!("/ok?{k}-{i}")),
                        b.url(&format!("/ok?{k}-{i}")),
                    ]
                })
                .collect();
            write_list(&list, &urls);
            let report = dir.path().join(format!("part{k}.csv"));
            spawn(&[
                "-q",
                "-r",
                "unlimited",
                "--per-host-rate",
                "10/s",
                "--quota",
                "12/1s",
                "--redis",
                &url,
                "--limit-key",
                "hosts-and-quota",
                "-o",
                report.to_str().unwrap(),
                list.to_str().unwrap(),
            ])
        })
        .collect();
    for child in runs {
        assert_exit(&finish(child), 0, "a process sharing the limits");
    }
    let (on_a, on_b) = (a.arrivals(), b.arrivals());
    assert_eq!((on_a.len(), on_b.len()), (20, 20));
    // Alone, each process would send 10/s to each host, and 12 in each second.
    assert_rate(&on_a, 10.0, 1, "host A, both processes");
    assert_rate(&on_b, 10.0, 1, "host B, both processes");
    let all: Vec<Instant> = times(&on_a).into_iter().chain(times(&on_b)).collect();
    // Coarse, as for quotas on new connections: a request that opens one arrives late.
    let busiest = max_in_window(&all, Duration::from_secs(1) - Duration::from_millis(100));
    assert!(
        busiest <= 12,
        "{busiest} requests in a window of 1s, quota 12"
    );
}

#[test]
fn a_per_host_quota_holds_across_processes() {
    if !available("a_per_host_quota_holds_across_processes") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 100]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["-r", "unlimited", "--per-host-quota", "6/1s"];
    let runs = start_processes(&redis, &server, dir.path(), (2, 8), &args);
    for child in runs {
        assert_exit(&finish(child), 0, "a process sharing the host's quota");
    }
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 16);
    // Alone, each process would send 6 in each second.
    let window = Duration::from_secs(1) - Duration::from_millis(100);
    let busiest = max_in_window(&times(&arrivals), window);
    assert!(
        busiest <= 6,
        "{busiest} requests to the host in a window of 1s, quota 6"
    );
}

#[test]
fn a_cool_down_one_process_is_told_holds_for_the_others() {
    if !available("a_cool_down_one_process_is_told_holds_for_the_others") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 88]);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.txt");
    write_list(&first, &[server.url("/status/429?retry_after=2")]);
    let second = dir.path().join("second.txt");
    write_list(&second, &[server.url("/ok")]);
    let url = redis.url();
    let common = ["-q", "-r", "unlimited", "--retries", "1", "--redis", &url];
    let one = spawn(&[&common[..], &["-o", "/dev/null", first.to_str().unwrap()]].concat());
    let refused = server.wait_arrivals(1, Duration::from_secs(20));
    assert_eq!(refused.len(), 1, "the first process sent its request");
    // The second starts once the cool-down is in Redis (the first process tells it when the
    // 429 comes back).
    let key = format!("{{ratefetch}}:cool:{}", server.addr().ip());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !redis.query::<bool>(&["EXISTS", &key]) {
        assert!(
            Instant::now() < deadline,
            "the cool-down never reached Redis"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let two = spawn(&[&common[..], &["-o", "/dev/null", second.to_str().unwrap()]].concat());
    assert_exit(&finish(two), 0, "the second process");
    assert_exit(&finish(one), 0, "the first process");
    let later = server.arrivals();
    let ok = later
        .iter()
        .find(|a| a.path == "/ok")
        .expect("the second process's request arrived");
    let waited = ok.at - refused[0].at;
    assert!(
        waited >= Duration::from_secs(2) - TOLERANCE,
        "the other process sent {waited:?} after a Retry-After of 2s"
    );
}

#[test]
fn redis_killed_and_restarted_mid_run_sends_nothing_meanwhile_and_the_runs_finish() {
    if !available("redis_killed_and_restarted_mid_run_sends_nothing_meanwhile_and_the_runs_finish")
    {
        return;
    }
    let mut redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 89]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["-r", "40/s", "-c", "2"];
    let runs = start_processes(&redis, &server, dir.path(), (2, 40), &args);
    let mut before = server.wait_arrivals(20, Duration::from_secs(30));
    assert_eq!(before.len(), 20, "the runs got going");
    redis.kill();
    let killed = Instant::now();
    // The outage: 700 ms without Redis.
    std::thread::sleep(Duration::from_millis(700));
    let outage_end = Instant::now();
    redis.restart();
    let back = Instant::now();
    for (k, child) in runs.into_iter().enumerate() {
        assert_exit(&finish(child), 0, "a run through the outage");
        let report = dir.path().join(format!("part{}.csv", k + 1));
        let rows = read_csv(&report);
        assert_eq!(rows.len(), 40);
        assert!(
            rows.iter().all(|r| r.get("status") == "200"),
            "every row is 200"
        );
    }
    let rest = server.arrivals();
    // Grants taken before the kill may still leave (each of the 4 workers holds at most one,
    // at most 4 × 25 ms ahead); nothing else leaves until Redis is back.
    let late = Duration::from_millis(250);
    let during: Vec<&Arrival> = rest
        .iter()
        .filter(|a| a.at > killed + late && a.at < outage_end)
        .collect();
    assert!(
        during.is_empty(),
        "{} requests left while Redis was down",
        during.len()
    );
    let (mut early, after): (Vec<Arrival>, Vec<Arrival>) =
        rest.into_iter().partition(|a| a.at < back);
    before.append(&mut early);
    assert_rate(&before, 40.0, 1, "before the restart");
    assert_rate(&after, 40.0, 1, "after the restart");
    // The restart forgot the shared state: across it, a window may hold one burst more.
    let all: Vec<Arrival> = before.into_iter().chain(after).collect();
    assert_eq!(all.len(), 80);
    assert_rate(&all, 40.0, 2, "across the restart");
}

#[test]
fn an_unreachable_redis_sends_nothing_and_exits_1_with_one_line() {
    let server = Server::start_on([127, 0, 0, 90]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    write_list(&list, &[server.url("/ok")]);
    let nowhere = format!("redis+unix://{}", dir.path().join("no.sock").display());
    let out = ratefetch_bin()
        .args([
            "-q",
            "--connect-timeout",
            "500ms",
            "--redis",
            &nowhere,
            "-o",
        ])
        .arg(dir.path().join("report.csv"))
        .arg(&list)
        .output()
        .expect("running ratefetch");
    assert_exit(&out, 1, "an unreachable Redis");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--redis"), "names the flag: {stderr}");
    assert!(server.arrivals().is_empty(), "nothing was sent");
}

#[test]
fn a_key_that_holds_other_limits_is_refused_with_exit_2() {
    if !available("a_key_that_holds_other_limits_is_refused_with_exit_2") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 91]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    write_list(&list, &[server.url("/ok")]);
    let run = |rate: &str| {
        ratefetch_bin()
            .args([
                "-q",
                "-r",
                rate,
                "--redis",
                &redis.url(),
                "--limit-key",
                "team",
            ])
            .args(["-o", "/dev/null"])
            .arg(&list)
            .output()
            .expect("running ratefetch")
    };
    assert_exit(&run("100/s"), 0, "the first run takes the key");
    let other = run("50/s");
    assert_exit(&other, 2, "a run with other limits on the same key");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--limit-key"), "names the flag: {stderr}");
    assert_eq!(server.arrivals().len(), 1, "the refused run sent nothing");
    assert_exit(&run("100/s"), 0, "the same limits again");
}

#[test]
fn a_redis_that_keeps_nothing_on_disk_is_warned_of_at_the_start() {
    if !available("a_redis_that_keeps_nothing_on_disk_is_warned_of_at_the_start") {
        return;
    }
    let server = Server::start_on([127, 0, 0, 98]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    write_list(&list, &[server.url("/ok")]);
    let run = |redis: &Redis| {
        let out = ratefetch_bin()
            .args(["--redis", &redis.url(), "-o", "/dev/null"])
            .arg(&list)
            .output()
            .expect("running ratefetch");
        assert_exit(&out, 0, "a run");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let volatile = run(&Redis::start());
    assert!(
        volatile.contains("keeps nothing on disk"),
        "warned of a Redis without persistence: {volatile}"
    );
    let durable = run(&Redis::start_with(&["--appendonly", "yes"]));
    assert!(
        !durable.contains("keeps nothing on disk"),
        "no warning with appendonly: {durable}"
    );
}

#[test]
fn an_error_from_redis_that_waiting_does_not_mend_ends_the_run_with_exit_1() {
    if !available("an_error_from_redis_that_waiting_does_not_mend_ends_the_run_with_exit_1") {
        return;
    }
    let redis = Redis::start();
    // Another program's list where the shared rate lives: every grant is refused (WRONGTYPE).
    let _: u64 = redis.query(&["RPUSH", "{clash}:rate", "not a number"]);
    let server = Server::start_on([127, 0, 0, 101]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    write_list(&list, &[server.url("/ok")]);
    let out = ratefetch_bin()
        .args([
            "-q",
            "--redis",
            &redis.url(),
            "--limit-key",
            "clash",
            "-o",
            "/dev/null",
        ])
        .arg(&list)
        .output()
        .expect("running ratefetch");
    assert_exit(&out, 1, "a grant Redis refuses");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--redis"), "names the flag: {stderr}");
    assert!(server.arrivals().is_empty(), "nothing was sent");
}

/// Issue 19: `-r 0.0000001/s --burst 4294967295` exited 1 blaming Redis ("value is not an
/// integer or out of range"); it is a usage error naming --burst and the bound, found before
/// Redis is asked anything (this Redis does not exist).
#[test]
fn a_burst_span_redis_cannot_hold_is_a_usage_error_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("redis+unix://{}", dir.path().join("no.sock").display());
    for (rate, burst) in [("0.0000001/s", "4294967295"), ("1/h", "900000")] {
        let out = ratefetch_bin()
            .args(["-q", "--connect-timeout", "500ms", "--redis", &nowhere])
            .args(["-r", rate, "--burst", burst])
            .write_stdin("http://127.0.0.1:9/\n")
            .output()
            .expect("running ratefetch");
        assert_exit(&out, 2, &format!("-r {rate} --burst {burst}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(
                "--burst: with --redis, burst × period (1/--rate) must be at most 100 years"
            ),
            "{stderr}"
        );
    }
}

/// The bound is enough: a burst span just under it is granted by a real Redis.
#[test]
fn a_burst_span_under_the_bound_is_granted_by_redis() {
    if !available("a_burst_span_under_the_bound_is_granted_by_redis") {
        return;
    }
    let redis = Redis::start();
    let server = Server::start_on([127, 0, 0, 91]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.csv");
    // 870,000 hours: 99.3 years.
    let out = ratefetch_bin()
        .args([
            "-q",
            "--redis",
            &redis.url(),
            "-r",
            "1/h",
            "--burst",
            "870000",
            "-o",
        ])
        .arg(&report)
        .write_stdin(format!(
            "{}\n{}\n",
            server.url("/ok?1"),
            server.url("/ok?2")
        ))
        .output()
        .expect("running ratefetch");
    assert_exit(&out, 0, "a burst span of 99 years");
    let rows = read_csv(&report);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get("status") == "200"), "{rows:?}");
}

#[test]
fn bad_redis_arguments_are_usage_errors_naming_the_flag() {
    for (args, flag) in [
        (vec!["--redis", "http://127.0.0.1:6379"], "--redis"),
        (
            vec!["--redis", "redis://127.0.0.1", "--limit-key", "a{b}"],
            "--limit-key",
        ),
        (
            vec!["--redis", "redis://127.0.0.1", "--quota-state", "q.state"],
            "--quota-state",
        ),
    ] {
        let out = ratefetch_bin()
            .args(&args)
            .arg("urls.txt")
            .output()
            .expect("running ratefetch");
        assert_exit(&out, 2, &args.join(" "));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: names {flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
