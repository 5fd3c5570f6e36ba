//! `--log-requests` and `ratefetch audit`: a run's log proves that it kept its limits, the
//! audit catches a log that broke one, and logs of several runs are checked together.

mod support;

use std::path::{Path, PathBuf};

use support::binary::ratefetch_bin;
use support::server::Server;

fn write_list(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("urls.txt");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Runs `ratefetch audit` with `args`; returns the exit code and stdout + stderr.
fn audit(args: &[&str]) -> (i32, String) {
    let out = ratefetch_bin().arg("audit").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// A log in the documented format, with requests at these offsets (ms) from a fixed time.
fn hand_log(path: &Path, limits: &str, sends_ms: &[u64]) {
    let sends: Vec<(u64, &str, u16)> = sends_ms.iter().map(|ms| (*ms, "h", 200)).collect();
    hosts_log(path, limits, &sends);
}

const RATE_10: &str =
    r#"{"rate":"10/s","burst":1,"quotas":[],"per_host_rate":null,"per_host_quotas":[]}"#;

#[test]
fn a_run_logs_every_request_and_its_audit_passes() {
    let server = Server::start_on([127, 0, 0, 40]);
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..9).map(|i| server.url(&format!("/ok?{i}"))).collect();
    lines.push(server.url("/status/503"));
    let list = write_list(dir.path(), &lines);
    let log = dir.path().join("requests.jsonl");
    let out = ratefetch_bin()
        .arg(&list)
        .args(["-q", "-o"])
        .arg(dir.path().join("report.csv"))
        .args(["-r", "40/s", "--quota", "6/500ms", "--retries", "1"])
        .args(["--backoff", "1ms", "--log-requests"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries[0]["ratefetch_log"], 2, "a header first");
    assert_eq!(entries[0]["limits"]["quotas"][0], "6/500ms");
    // Eleven requests: nine, and the 503 twice (a retry is a request).
    assert_eq!(entries.len() - 1, 11);
    assert_eq!(server.arrivals().len(), 11);
    let retried: Vec<_> = entries[1..]
        .iter()
        .filter(|e| e["index"] == 10)
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(retried.len(), 2);
    assert!(retried.contains(&(1, 503)) && retried.contains(&(2, 503)));

    // With the limits the log names, and with them given outright. Send times are read by
    // the workers; on a busy 2-core machine one may read its clock late: the tests' usual
    // 10 ms tolerance.
    let log = log.to_str().unwrap();
    let (code, text) = audit(&[log, "--tolerance", "10ms"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("11 requests"), "{text}");
    assert!(text.contains("--quota 6/500ms: held"), "{text}");
    assert!(text.contains("--rate 40/s --burst 1: held"), "{text}");
    let (code, text) = audit(&[log, "--tolerance", "10ms", "--quota", "6/500ms"]);
    assert_eq!(code, 0, "{text}");
    // A stricter limit than the run kept is caught.
    let (code, text) = audit(&[log, "--tolerance", "10ms", "--quota", "3/500ms"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--quota 3/500ms: BROKEN at "), "{text}");
}

#[test]
fn a_log_that_breaks_the_rate_is_caught_with_the_first_violation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broken.jsonl");
    // 10/s: 0, 100, 200 are fine; 250 comes 50 ms early. Written out of order, as logs are.
    hand_log(&log, RATE_10, &[100, 0, 200, 250, 400]);
    let (code, text) = audit(&[log.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--rate 10/s --burst 1: BROKEN at 2026-12-02T10:00:00.250000Z"),
        "{text}"
    );
    let ok = dir.path().join("ok.jsonl");
    hand_log(&ok, RATE_10, &[100, 0, 200, 300, 400]);
    let (code, text) = audit(&[ok.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_version_1_log_still_audits_with_the_limits_its_header_names() {
    // Users keep their proof logs: a log written by hand in format 1, as ratefetch wrote it
    // before (the header built with json!, its keys in order, a rate as `Rate` showed it).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("v1.jsonl");
    let mut text = String::from(
        "{\"limits\":{\"burst\":2,\"per_host_quotas\":[\"2/1s\"],\"per_host_rate\":null,\
         \"quotas\":[\"3/1s\"],\"rate\":\"30/m\"},\"max_disorder_ms\":31000,\
         \"ratefetch_log\":1,\"started\":\"2026-12-02T14:00:00.000000Z\"}\n",
    );
    for (ms, i) in [(0, 1), (0, 2), (2000, 3), (4000, 4)] {
        let t = humantime::parse_rfc3339("2026-12-02T14:00:00Z").unwrap()
            + std::time::Duration::from_millis(ms);
        text.push_str(&format!(
            "{{\"attempt\":1,\"host\":\"h\",\"index\":{i},\"ratelimit\":{{\"remaining\":0,\"reset_ms\":60000}},\"status\":200,\"t\":\"{}\"}}\n",
            humantime::format_rfc3339_micros(t)
        ));
    }
    std::fs::write(&log, &text).unwrap();
    let (code, out) = audit(&[log.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 requests in 1 log(s)"), "{out}");
    for held in [
        "--rate 0.5/s --burst 2: held",
        "--quota 3/1s: held",
        "--per-host-quota 2/1s: held",
        "announced limits: held",
    ] {
        assert!(out.contains(held), "{held}: {out}");
    }
    // Its announcements do not say when they were heard: not judged, and said so.
    assert!(out.contains("4 more not judged"), "{out}");
    // The limits its header names are checked: one request more at once breaks its burst.
    text.push_str(
        &text
            .lines()
            .nth(1)
            .unwrap()
            .replace("\"index\":1", "\"index\":5"),
    );
    text.push('\n');
    std::fs::write(&log, &text).unwrap();
    let (code, out) = audit(&[log.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("--rate 0.5/s --burst 2: BROKEN at 2026-12-02T14:00:00.000000Z"),
        "{out}"
    );
}

#[test]
fn with_no_flags_the_header_limits_are_checked_and_a_flag_replaces_only_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    // 10/s kept; a quota of 3 in 1 s is not.
    let limits = r#"{"rate":"10/s","burst":1,"quotas":["3/1s"]}"#;
    hand_log(&log, limits, &[0, 100, 200, 300, 400]);
    let log = log.to_str().unwrap();
    let (code, text) = audit(&[log]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--rate 10/s --burst 1: held"), "{text}");
    assert!(text.contains("--quota 3/1s: BROKEN"), "{text}");
    // A quota flag replaces the header's quotas, and its rate is still checked.
    let (code, text) = audit(&[log, "--quota", "5/1s"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("--rate 10/s --burst 1: held"), "{text}");
    assert!(!text.contains("3/1s"), "{text}");
    // Judged as a fixed window of 2 s, five in the first breaks it.
    let (code, text) = audit(&[log, "--fixed-quota", "4/2s"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--fixed-quota 4/2s: BROKEN"), "{text}");
}

#[test]
fn two_logs_that_break_a_limit_only_together_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    hand_log(&a, RATE_10, &[0, 100, 200, 300]);
    hand_log(&b, RATE_10, &[50, 150, 250, 350]);
    for one in [&a, &b] {
        let (code, text) = audit(&[one.to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
    }
    let (code, text) = audit(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("8 requests in 2 log(s)"), "{text}");
    assert!(
        text.contains("BROKEN at 2026-12-02T10:00:00.050000Z"),
        "{text}"
    );
}

#[test]
fn unreadable_or_foreign_logs_are_usage_errors_and_a_torn_last_line_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = audit(&[dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read"), "{text}");
    let foreign = dir.path().join("report.csv");
    std::fs::write(&foreign, "index,url\n1,http://x\n").unwrap();
    let (code, text) = audit(&[foreign.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    let (code, text) = audit(&[]);
    assert_eq!(code, 2, "{text}");

    let torn = dir.path().join("torn.jsonl");
    hand_log(&torn, RATE_10, &[0, 100, 200]);
    let mut text = std::fs::read_to_string(&torn).unwrap();
    text.push_str("{\"t\":\"2026-12-02T10:00:00.2");
    std::fs::write(&torn, &text).unwrap();
    let (code, out) = audit(&[torn.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 requests"), "{out}");
    // A bad line in the middle is not a torn end.
    let bad = dir.path().join("bad.jsonl");
    text.push_str("\n{\"t\":\"2026-12-02T10:00:01Z\",\"host\":\"h\"}\n");
    std::fs::write(&bad, &text).unwrap();
    let (code, out) = audit(&[bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn the_subcommand_wins_over_a_file_named_audit_and_dot_slash_audit_reads_the_file() {
    let server = Server::start_on([127, 0, 0, 41]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit"), server.url("/ok")).unwrap();
    let out = ratefetch_bin()
        .current_dir(dir.path())
        .args(["./audit", "-q", "-r", "unlimited"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, rows) = support::report::parse_csv(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("status"), "200");
    // As the first argument, `audit` is the subcommand: the file is read as a log, and it
    // is not one.
    let out = ratefetch_bin()
        .current_dir(dir.path())
        .args(["audit", "audit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(server.arrivals().len(), 1, "the subcommand fetched nothing");
}

#[test]
fn the_tolerance_is_allowed_once_per_window_not_once_per_gap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fast.jsonl");
    // 10/s, each gap 1 ms short: twenty sends span 1.881 s, where 10/s allows nineteen
    // (and the 1 ms tolerance does not add up over the gaps).
    let sends: Vec<u64> = (0..20).map(|i| i * 99).collect();
    hand_log(&log, RATE_10, &sends);
    let (code, text) = audit(&[log.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = audit(&[log.to_str().unwrap(), "--tolerance", "20ms"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_run_appending_to_a_log_torn_by_a_kill_starts_on_a_line_of_its_own() {
    let server = Server::start_on([127, 0, 0, 42]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    hand_log(&log, RATE_10, &[0, 100, 200]);
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"t\":\"2026-12-02T10:00:00.3");
    std::fs::write(&log, &text).unwrap();
    let list = write_list(dir.path(), &[server.url("/ok")]);
    let out = ratefetch_bin()
        .arg(&list)
        .args(["-q", "-r", "10/s", "-o"])
        .arg(dir.path().join("report.csv"))
        .arg("--log-requests")
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, text) = audit(&[log.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("4 requests"), "{text}");
}

#[test]
fn two_machines_logs_are_checked_at_their_grant_times_not_their_clocks() {
    // Two machines sharing 10/s through Redis: each granted a slot every 200 ms, the second
    // 100 ms after the first, on Redis' clock. The second machine's clock is 50 ms behind,
    // so by the local send times its requests land 50 ms after the first machine's.
    let dir = tempfile::tempdir().unwrap();
    let t0 = humantime::parse_rfc3339("2026-12-02T10:00:00Z").unwrap();
    let ms = std::time::Duration::from_millis;
    let header = format!(
        "{{\"ratefetch_log\":1,\"max_disorder_ms\":1000,\"limit_key\":\"k\",\"limits\":{RATE_10}}}\n"
    );
    let mut paths = Vec::new();
    for (machine, (offset, skew)) in [(0u64, 0i64), (100, -50)].into_iter().enumerate() {
        let mut text = header.clone();
        for i in 0..10u64 {
            let granted = t0 + ms(offset + 200 * i);
            let sent = if skew < 0 {
                granted - ms(skew.unsigned_abs())
            } else {
                granted + ms(skew as u64)
            };
            text.push_str(&format!(
                "{{\"t\":\"{}\",\"granted\":\"{}\",\"host\":\"h\",\"index\":{},\"attempt\":1,\"status\":200}}\n",
                humantime::format_rfc3339_micros(sent),
                humantime::format_rfc3339_micros(granted),
                i + 1
            ));
        }
        let path = dir.path().join(format!("m{machine}.jsonl"));
        std::fs::write(&path, text).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (code, text) = audit(&args);
    assert_eq!(code, 0, "held at the grant times: {text}");
    // By the send times, the two machines' requests come 50 ms apart: 10/s is broken.
    for path in &paths {
        let local = std::fs::read_to_string(path).unwrap();
        let stripped: String = local
            .lines()
            .map(|l| match l.find(",\"granted\":") {
                Some(at) => {
                    let end = l[at + 1..]
                        .find(",\"host\"")
                        .map_or(l.len(), |e| at + 1 + e);
                    format!("{}{}\n", &l[..at], &l[end..])
                }
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(path, stripped).unwrap();
    }
    let (code, text) = audit(&args);
    assert_eq!(code, 1, "broken at the local send times: {text}");
}

/// A log of requests to several hosts: (ms from the start, host, status) each.
fn hosts_log(path: &Path, limits: &str, sends: &[(u64, &str, u16)]) {
    let mut text =
        format!("{{\"ratefetch_log\":1,\"max_disorder_ms\":1000,\"limits\":{limits}}}\n");
    let t0 = humantime::parse_rfc3339("2026-12-02T10:00:00Z").unwrap();
    for (i, (ms, host, status)) in sends.iter().enumerate() {
        let t = t0 + std::time::Duration::from_millis(*ms);
        text.push_str(&format!(
            "{{\"t\":\"{}\",\"host\":\"{host}\",\"index\":{},\"attempt\":1,\"status\":{status}}}\n",
            humantime::format_rfc3339_micros(t),
            i + 1
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
#[cfg(feature = "plot")]
fn plot_draws_a_valid_svg_with_a_series_per_busiest_host_the_limits_and_the_429s() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    // busy.test: 8 requests (two answered 429), calm.test 4, rare.test 2, over 4 seconds.
    let mut sends = Vec::new();
    for i in 0..8 {
        sends.push((i * 450, "busy.test", if i % 4 == 3 { 429 } else { 200 }));
    }
    for i in 0..4 {
        sends.push((100 + i * 900, "calm.test", 200));
    }
    sends.push((200, "rare.test", 200));
    sends.push((3200, "rare.test", 404));
    sends.sort();
    let rate_40 = r#"{"rate":"40/s","burst":1,"quotas":["100/1m"],"per_host_rate":null,"per_host_quotas":[]}"#;
    hosts_log(&log, rate_40, &sends);
    let svg = dir.path().join("rate.svg");
    let (code, text) = audit(&[
        log.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--plot-hosts",
        "2",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("plot: ") && text.contains("busy.test, calm.test"),
        "{text}"
    );

    let drawn = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&drawn).expect("the plot is well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for label in [
        "all hosts",
        "busy.test",
        "calm.test",
        "--rate 40/s --burst 1",
        "--quota 100/1m (its average)",
        "429 answers / s",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in the legend: {texts:?}"
        );
    }
    assert!(
        !texts.iter().any(|t| t == "rare.test"),
        "only the 2 busiest hosts"
    );
    let lines = |doc: &roxmltree::Document| {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count()
    };
    let with_hosts = lines(&doc);

    // No host series.
    let (code, text) = audit(&[
        log.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--plot-hosts",
        "0",
    ]);
    assert_eq!(code, 0, "{text}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&drawn).unwrap();
    // Each host is its line and its sample in the legend.
    assert_eq!(
        with_hosts - lines(&doc),
        2 * 2,
        "one series per host asked for"
    );
}

/// Runs `cmd` with the child's writes capped at `fsize` bytes per file (`RLIMIT_FSIZE`) and
/// `SIGXFSZ` ignored, so that a write past the cap fails with EFBIG, as on a full disk.
#[cfg(unix)]
fn with_file_size_limit(cmd: &mut std::process::Command, fsize: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: fsize as libc::rlim_t,
        rlim_max: fsize as libc::rlim_t,
    };
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (signal, setrlimit) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The numbers in "… N of the M requests sent have no log line".
fn unlogged_of(line: &str) -> (u64, u64) {
    let end = line
        .find(" requests sent have no log line")
        .unwrap_or_else(|| panic!("no count of unlogged requests in {line:?}"));
    let words: Vec<&str> = line[..end].split(' ').collect();
    let n = words.len();
    assert_eq!(words[n - 3..n - 1], ["of", "the"], "{line}");
    (words[n - 4].parse().unwrap(), words[n - 1].parse().unwrap())
}

#[test]
#[cfg(unix)]
fn a_log_write_that_fails_stops_the_run_at_once_and_counts_the_requests_without_a_line() {
    // issue 19: the log writer stopped at its first error, but the run went on sending.
    let server = Server::start_on([127, 0, 0, 43]);
    let dir = tempfile::tempdir().unwrap();
    // A thousand requests at 50/s take 20 s; the log has room for some twenty lines.
    let lines: Vec<String> = (0..1000).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let list = write_list(dir.path(), &lines);
    // The log holds an earlier run (some 300 KiB of it); the limit leaves 2 KiB to this
    // run's header and lines. The report stays below the limit even with every row.
    let log = dir.path().join("requests.jsonl");
    let earlier: Vec<u64> = (0..4000).map(|i| i * 100).collect();
    hand_log(&log, RATE_10, &earlier);
    let before = std::fs::read(&log).unwrap();
    assert!(before.len() > 300_000, "{}", before.len());
    let limit = before.len() as u64 + 2048;
    let report = dir.path().join("report.csv");
    let mut cmd = support::binary::ratefetch_command();
    cmd.arg(&list)
        .args(["-q", "-r", "50/s", "-o"])
        .arg(&report)
        .arg("--log-requests")
        .arg(&log);
    with_file_size_limit(&mut cmd, limit);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(said.len(), 1, "one line: {stderr}");
    assert!(said[0].contains(log.to_str().unwrap()), "{stderr}");
    let (unlogged, sent) = unlogged_of(said[0]);

    // Intake stopped at once: far fewer requests than the list, and every one counted.
    let arrived = server.arrivals().len() as u64;
    assert!(
        arrived < 200,
        "{arrived} of 1000 requests sent after the log failed"
    );
    assert_eq!(sent, arrived, "{stderr}");
    // The lines this run got into the log, whole, are the ones not counted as missing.
    let after = std::fs::read(&log).unwrap();
    assert!(after.len() as u64 <= limit);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the earlier run's lines are kept"
    );
    let ours = String::from_utf8_lossy(&after[before.len()..]).to_string();
    let mut whole = ours.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    let header: serde_json::Value = serde_json::from_str(whole.next().unwrap()).unwrap();
    assert_eq!(header["ratefetch_log"], 2);
    let mut logged = 0u64;
    for l in whole {
        let entry: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(entry["host"], "127.0.0.43", "{l}");
        logged += 1;
    }
    assert!(unlogged > 0, "{stderr}");
    assert_eq!(logged, sent - unlogged, "{stderr}");

    // Requests in flight finished into the report: one valid row each.
    let (_, rows) = support::report::parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(rows.len() as u64, arrived);
    assert!(rows.iter().all(|r| r.get("status") == "200"));
    // And the audit reads the log, torn last line and all.
    let (code, text) = audit(&[log.to_str().unwrap()]);
    assert_ne!(code, 2, "{text}");
}

#[test]
#[cfg(unix)]
fn a_report_write_that_fails_stops_the_run_at_once() {
    // issue 19: any file the run writes; the report holds some fifty rows.
    let server = Server::start_on([127, 0, 0, 45]);
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..1000).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let list = write_list(dir.path(), &lines);
    let report = dir.path().join("report.csv");
    let mut cmd = support::binary::ratefetch_command();
    cmd.arg(&list).args(["-q", "-r", "50/s", "-o"]).arg(&report);
    with_file_size_limit(&mut cmd, 8192);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(said.len(), 1, "one line: {stderr}");
    assert!(said[0].contains(report.to_str().unwrap()), "{stderr}");
    // Rows reach the writer once a second: the failure is found within a second or two of
    // the report filling, some fifty requests at 50/s each.
    let arrived = server.arrivals().len();
    assert!(
        arrived < 300,
        "{arrived} of 1000 requests sent after the report failed"
    );
}

#[test]
fn a_second_run_on_a_log_in_use_is_refused_and_changes_nothing() {
    let server = Server::start_on([127, 0, 0, 44]);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &[server.url("/ok")]);
    let log = dir.path().join("requests.jsonl");
    hand_log(&log, RATE_10, &[0, 100, 200]);
    let before = std::fs::read(&log).unwrap();
    // Another run holds it.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .unwrap();
    held.lock().unwrap();
    let out = ratefetch_bin()
        .arg(&list)
        .args(["-q", "-o"])
        .arg(dir.path().join("report.csv"))
        .arg("--log-requests")
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(said.len(), 1, "one line: {stderr}");
    assert!(said[0].contains(log.to_str().unwrap()), "{stderr}");
    assert!(
        said[0].contains("in use by another ratefetch run"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), before, "the log is unchanged");
    assert!(
        !dir.path().join("report.csv").exists(),
        "the refused run created no report"
    );
    assert!(server.arrivals().is_empty(), "nothing was sent");
    drop(held);
}

#[test]
#[cfg(all(unix, feature = "plot"))]
fn plot_over_a_century_completes_in_bounded_memory() {
    // issue 19: one counter per second of a 1970 → 2100 log was 16 GB ("memory allocation
    // of 16409779200 bytes failed").
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("century.jsonl");
    std::fs::write(
        &log,
        format!(
            "{{\"ratefetch_log\":1,\"max_disorder_ms\":1000,\"limits\":{RATE_10}}}\n\
             {{\"t\":\"1970-01-01T00:00:00Z\",\"host\":\"h\",\"index\":1,\"attempt\":1,\"status\":200}}\n\
             {{\"t\":\"2100-01-01T00:00:00Z\",\"host\":\"h\",\"index\":2,\"attempt\":1,\"status\":429}}\n"
        ),
    )
    .unwrap();
    let svg = dir.path().join("century.svg");
    let mut cmd = support::binary::ratefetch_command();
    cmd.arg("audit").arg(&log).arg("--plot").arg(&svg);
    // A gibibyte of address space, for the binary and all it maps.
    let gib: libc::rlim_t = 1 << 30;
    {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit {
            rlim_cur: gib,
            rlim_max: gib,
        };
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("2 requests"), "{text}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&drawn).expect("the plot is well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}
