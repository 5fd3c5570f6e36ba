//! `--plan`: reads the input, sends nothing, prints the requests, the hosts and the least
//! time the limits make the run take, and exits 0; it creates no report and leaves a
//! resumed one byte for byte as it was, torn last line included.

mod support;

use std::path::Path;
use std::time::Duration;

use ratefetch::config::InputSource;
use ratefetch::units::{parse_quota, parse_rate};
use ratefetch::Config;
use support::binary::ratefetch_bin;
use support::report::{assert_each_index_once, read_csv, run_lib, test_config};
use support::server::Server;

/// Runs `ratefetch --plan ARGS…` to the end; returns its stdout, asserting exit 0 and
/// nothing on stderr.
fn plan(args: &[&str], list: &Path) -> String {
    let out = ratefetch_bin()
        .arg("--plan")
        .args(args)
        .arg(list)
        .output()
        .expect("running ratefetch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Asserts that no request reached `server`, waiting a little for one in transit.
fn assert_nothing_arrived(server: &Server) {
    let got = server.wait_arrivals(1, Duration::from_millis(300));
    assert!(got.is_empty(), "{} requests arrived", got.len());
}

#[test]
fn plan_prints_the_counts_and_the_binding_limit_and_sends_nothing() {
    let a = Server::start_on([127, 0, 0, 60]);
    let b = Server::start_on([127, 0, 0, 61]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let lines = [
        a.url("/ok?1"),
        "# a comment".to_string(),
        a.url("/ok?2"),
        b.url("/ok"),
        "not a url".to_string(),
        a.url("/ok?3"),
        String::new(),
        a.url("/ok?4"),
    ];
    std::fs::write(&list, lines.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let report_arg = report.to_str().unwrap();

    let text = plan(&["--per-host-rate", "1/s", "-o", report_arg], &list);
    assert_eq!(
        text,
        "plan: 5 requests to 2 hosts (nothing sent)\n\
         busiest hosts: 127.0.0.60 4, 127.0.0.61 1\n\
         at least 3s at the limits (bound by --per-host-rate 1/s); response times not included\n"
    );
    assert!(!report.exists(), "--plan created the report");

    // Five requests at -r 10/s --quota 4/1h: the fifth waits an hour.
    let text = plan(
        &[
            "-r", "10/s", "--quota", "4/h", "--budget", "100", "-o", report_arg,
        ],
        &list,
    );
    assert!(
        text.ends_with(
            "at least 1h at the limits (bound by --quota 4/1h); response times not included\n"
        ),
        "{text}"
    );
    // A budget below the requests stops the run there.
    let text = plan(&["--budget", "2", "--respect-robots"], &list);
    assert!(
        text.starts_with("plan: 7 requests to 2 hosts, 2 of them for robots.txt (nothing sent)\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "--budget 2 stops the run after 2 requests; --resume goes on with the other 5\n"
        ),
        "{text}"
    );
    assert!(!report.exists());
    assert_nothing_arrived(&a);
    assert_nothing_arrived(&b);
}

#[test]
fn plan_reads_the_url_column_of_a_csv_input() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("products.csv");
    std::fs::write(
        &list,
        "sku,Product URL\n1,http://127.0.0.62/a\n2,\n3,http://127.0.0.62/b\n4,http://127.0.0.63/c\n",
    )
    .unwrap();
    let text = plan(&["--url-column", "product url"], &list);
    assert!(
        text.starts_with(
            "plan: 3 requests to 2 hosts (nothing sent)\nbusiest hosts: 127.0.0.62 2, 127.0.0.63 1\n"
        ),
        "{text}"
    );
}

#[test]
fn plan_with_resume_counts_only_undone_lines_and_leaves_a_torn_report_unchanged() {
    let server = Server::start_on([127, 0, 0, 64]);
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (1..=6).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let first = dir.path().join("first.txt");
    std::fs::write(&first, urls[..3].join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    ratefetch_bin()
        .args(["-q", "-r", "unlimited", "-o"])
        .arg(&report)
        .arg(&first)
        .assert()
        .success();
    assert_eq!(server.wait_arrivals(3, Duration::from_secs(10)).len(), 3);
    assert_eq!(read_csv(&report).len(), 3);
    // Tear the last row in the middle, as a kill mid-write would.
    let whole = std::fs::read(&report).unwrap();
    let body = &whole[..whole.len() - 1];
    let last_row_start = body.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let torn = whole[..last_row_start + (whole.len() - last_row_start) / 2].to_vec();
    std::fs::write(&report, &torn).unwrap();

    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let text = plan(&["--resume", "-o", report.to_str().unwrap()], &list);
    // Two whole rows are done; the torn one and the three new lines are not.
    assert!(
        text.starts_with(
            "plan: 4 requests to 1 host (nothing sent)\nbusiest hosts: 127.0.0.64 4\n"
        ),
        "{text}"
    );
    assert_eq!(std::fs::read(&report).unwrap(), torn, "the report changed");
    assert_nothing_arrived(&server);

    // Another input than the report's is refused, as the run would refuse it.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, server.url("/elsewhere")).unwrap();
    let out = ratefetch_bin()
        .args(["--plan", "--resume", "-o"])
        .arg(&report)
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot resume"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&report).unwrap(), torn);
}

/// Usage recorded in `--quota-state` by an earlier run fills the windows of the plan: after
/// four sends, a plan for three more under `--quota 5/1h` waits most of an hour.
#[test]
fn plan_counts_the_usage_recorded_in_the_quota_state() {
    let server = Server::start_on([127, 0, 0, 62]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("quota.state");
    let state_arg = state.to_str().unwrap();
    let list = dir.path().join("urls.txt");
    let lines: Vec<String> = (0..4).map(|i| server.url(&format!("/ok?{i}"))).collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let out = ratefetch_bin()
        .args(["-r", "unlimited", "-q", "--quota-state", state_arg, "-o"])
        .arg(&report)
        .arg(&list)
        .output()
        .expect("running ratefetch");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.wait_arrivals(4, Duration::from_secs(5)).len(), 4);
    let more = dir.path().join("more.txt");
    let lines: Vec<String> = (0..3).map(|i| server.url(&format!("/more?{i}"))).collect();
    std::fs::write(&more, lines.join("\n")).unwrap();
    let args = [
        "-r",
        "unlimited",
        "--quota",
        "5/1h",
        "--quota-state",
        state_arg,
    ];
    let text = plan(&args, &more);
    assert!(
        text.contains("(bound by --quota 5/1h)")
            && (text.contains("at least 59m") || text.contains("at least 1h")),
        "{text}"
    );
    // Without the state, the same plan fits in the window.
    let text = plan(&["-r", "unlimited", "--quota", "5/1h"], &more);
    assert!(text.contains("the limits do not slow it"), "{text}");
    assert_nothing_arrived(&server);
}

/// A plan is its run's schedule at the limits, found by the run's own gates: the run it plans
/// takes at least the time it says (the plan is a lower bound), and on a quiet machine not
/// much more. Judged at the instants the run's request log records, which are the instants its
/// limits judged.
#[test]
fn a_run_takes_at_least_the_time_its_plan_says_and_not_much_more() {
    let _turn = support::timing_turn();
    let server = Server::start_on([127, 0, 0, 65]);
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..6).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let log = dir.path().join("requests.log");
    // 0, 0.2, 0.4 s; the fourth once the first has left the window, at 1 s; then 1.2, 1.4 s.
    let config = Config {
        rate: parse_rate("20/s").unwrap(),
        per_host_rate: parse_rate("5/s").unwrap(),
        quotas: vec![parse_quota("3/1s").unwrap()],
        log_requests: Some(log.clone()),
        ..test_config()
    };
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, lines.join("\n")).unwrap();
    let planned = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(ratefetch::plan(Config {
            input: InputSource::Path(list),
            ..config.clone()
        }))
        .unwrap();
    assert_eq!(planned.requests(), 6);
    assert_eq!(planned.duration(), Duration::from_millis(1400));

    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=6);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut stamps: Vec<std::time::SystemTime> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(humantime::parse_rfc3339(v.get("t")?.as_str()?).unwrap()))
        .collect();
    assert_eq!(stamps.len(), 6, "{text}");
    stamps.sort();
    let span = stamps[5].duration_since(stamps[0]).unwrap();
    // The log keeps microseconds: a span may read one short.
    assert!(
        span + Duration::from_micros(1) >= planned.duration(),
        "the run took {span:?}, less than its plan"
    );
    assert!(
        span < planned.duration() + Duration::from_secs(1),
        "the run took {span:?}, far more than its plan"
    );
}
