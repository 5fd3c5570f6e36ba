//! The binary: arguments, input sources, output formats, stderr, exit codes. Runs
//! `ratefetch` with assert_cmd against servers started here and parses its report back.

mod support;

use std::time::Duration;

use support::report::{assert_each_index_once, parse_csv, read_csv};
use support::server::Server;

use support::binary::ratefetch_bin as ratefetch;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn reads_stdin_and_writes_one_csv_row_per_line_to_stdout() {
    let server = Server::start();
    let input = format!(
        "{}\n\n# a comment\n{}\nnot-a-url\n{}\n",
        server.url("/html/One"),
        server.url("/status/404"),
        server.url("/ok")
    );
    let out = ratefetch()
        .args(["-q", "-r", "unlimited"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (header, mut rows) = parse_csv(&out.stdout);
    assert_eq!(
        header,
        [
            "index",
            "url",
            "final_url",
            "status",
            "error_kind",
            "error",
            "attempts",
            "elapsed_ms",
            "bytes",
            "content_type",
            "title",
            "started_at"
        ]
    );
    rows.sort_by_key(|r| r.index());
    assert_each_index_once(&rows, [1, 4, 5, 6]);
    assert_eq!(rows[0].get("title"), "One");
    assert_eq!(rows[1].get("status"), "404");
    assert_eq!(rows[2].get("error_kind"), "invalid_url");
    assert_eq!(rows[3].get("status"), "200");
}

#[test]
fn dash_reads_stdin_and_a_path_reads_the_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    std::fs::write(
        &list,
        format!("{}\n{}\n", server.url("/ok"), server.url("/ok")),
    )
    .unwrap();
    let report = dir.path().join("report.csv");
    ratefetch()
        .args(["-q", "-r", "unlimited", "-o"])
        .arg(&report)
        .arg(&list)
        .assert()
        .success();
    assert_eq!(read_csv(&report).len(), 2);
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "-"])
        .write_stdin(server.url("/ok"))
        .output()
        .unwrap();
    assert_eq!(parse_csv(&out.stdout).1.len(), 1);
}

#[test]
fn jsonl_has_the_same_fields_with_numbers_and_nulls() {
    let server = Server::start();
    let input = format!("{}\nexample.com\n", server.url("/ok"));
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "--format", "jsonl"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    rows.sort_by_key(|r| r["index"].as_u64());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], 200);
    assert!(rows[0]["elapsed_ms"].is_u64());
    assert_eq!(rows[0]["error_kind"], serde_json::Value::Null);
    assert_eq!(rows[1]["status"], serde_json::Value::Null);
    assert_eq!(rows[1]["error_kind"], "invalid_url");
    assert_eq!(rows[0].as_object().unwrap().len(), 12);
}

/// Issue 19: `--timeout 0` timed out every request; like `--connect-timeout 0` and
/// `--max-body 0` it is no limit. The body drips for some 400 ms, past any zero deadline.
#[test]
fn timeout_0_and_connect_timeout_0_mean_no_limit() {
    let server = Server::start();
    let out = ratefetch()
        .args([
            "-q",
            "--timeout",
            "0",
            "--connect-timeout",
            "0",
            "--retries",
            "0",
        ])
        .write_stdin(format!("{}\n", server.url("/drip/2")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (_, rows) = parse_csv(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].get("status"),
            rows[0].get("error_kind"),
            rows[0].get("bytes")
        ),
        ("200", "", "2"),
        "{}",
        rows[0].get("error")
    );
}

/// Issue 19: `-r 0.0000001/s --burst 4294967295` overflowed the limiter's nanoseconds (a
/// panic in a debug build, a wrong limit in a release one); it is a usage error naming
/// --burst and the bound. A span just under the bound fetches.
#[test]
fn a_burst_span_the_limiter_cannot_hold_is_a_usage_error() {
    for (rate, burst) in [("0.0000001/s", "4294967295"), ("1/h", "2600000")] {
        let out = ratefetch()
            .args(["-q", "-r", rate, "--burst", burst])
            .write_stdin("http://127.0.0.1:9/\n")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{rate} {burst}: {}",
            stderr_of(&out)
        );
        let err = stderr_of(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(
            err.contains("--burst: burst × period (1/--rate) must be at most 292 years"),
            "{err}"
        );
    }
    let server = Server::start();
    // 2,500,000 hours: 285 years.
    let out = ratefetch()
        .args(["-q", "-r", "1/h", "--burst", "2500000"])
        .write_stdin(format!("{}\n{}\n", server.url("/ok"), server.url("/ok")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (_, rows) = parse_csv(&out.stdout);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get("status") == "200"));
}

#[test]
fn bad_values_exit_2_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["--rate", "lots"][..], "--rate"),
        (&["--timeout", "ten"][..], "--timeout"),
        (&["--max-body", "huge"][..], "--max-body"),
        (&["-c", "0"][..], "--concurrency"),
        (&["--resume"][..], "--resume"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = ratefetch().args(args).write_stdin("").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.contains(flag), "{args:?}: {err:?}");
    }
    let out = ratefetch().args(["--rate", "lots"]).output().unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains("10/s") && err.contains("600/m") && err.contains("unlimited"),
        "{err}"
    );
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let out = ratefetch().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--output",
        "--rate",
        "--burst",
        "--concurrency",
        "--workers",
        "--per-host-rate",
        "--per-host-concurrency",
        "--timeout",
        "--connect-timeout",
        "--retries",
        "--method",
        "--header",
        "--data",
        "--user-agent",
        "--max-redirects",
        "--max-body",
        "--format",
        "--quiet",
        "--resume",
        "--retry-status",
        "--backoff",
        "--max-retry-after",
        "--grace",
        "--plan",
        "--proxy",
        "--cookies",
        "--cookie",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn version_names_the_optional_features_compiled_in() {
    for args in [&["--version"][..], &["audit", "--version"]] {
        let out = ratefetch().args(args).output().unwrap();
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        let features = if cfg!(feature = "plot") {
            "(features: plot)"
        } else {
            "(features: none"
        };
        assert!(
            line.starts_with("ratefetch")
                && line.contains(env!("CARGO_PKG_VERSION"))
                && line.contains(features),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn unreadable_input_exits_1_before_any_request() {
    let out = ratefetch().arg("/no/such/list.txt").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot read input") && err.contains("/no/such/list.txt"),
        "{err}"
    );
}

#[test]
fn unwritable_output_exits_1_before_any_request() {
    let server = Server::start();
    let out = ratefetch()
        .args(["-o", "/no/such/dir/report.csv"])
        .write_stdin(server.url("/ok"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("cannot write output"),
        "{}",
        stderr_of(&out)
    );
    assert!(server
        .wait_arrivals(1, Duration::from_millis(300))
        .is_empty());
}

#[test]
fn full_disk_exits_1_with_one_line_before_any_request() {
    let server = Server::start();
    let input: String = (0..50).map(|_| server.url("/ok") + "\n").collect();
    let out = ratefetch()
        .args(["-q", "-r", "unlimited", "-o", "/dev/full"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/dev/full"), "{err}");
    // The header is written first, so a full disk is found before any request.
    assert!(
        server.arrivals().is_empty(),
        "requests were sent to a run that cannot report"
    );
}

#[test]
fn summary_line_on_stderr_unless_quiet() {
    let server = Server::start();
    let input = format!("{}\n{}\n", server.url("/ok"), server.url("/status/500"));
    let out = ratefetch()
        .args(["-r", "unlimited", "--retries", "0"])
        .write_stdin(input.clone())
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains("2 rows (1 2xx/3xx, 1 4xx/5xx, 0 failed)"),
        "{err}"
    );
    assert!(err.contains("req/s"), "{err}");
    let out = ratefetch()
        .args(["-q", "-r", "unlimited"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
}

#[test]
fn ten_thousand_urls_unlimited_give_exactly_one_row_per_line() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let input: String = (0..10_000)
        .map(|i| server.url(&format!("/ok?i={i}")) + "\n")
        .collect();
    std::fs::write(&list, input).unwrap();
    let report = dir.path().join("report.csv");
    ratefetch()
        .args(["-q", "-r", "unlimited", "-c", "64", "-o"])
        .arg(&report)
        .arg(&list)
        .assert()
        .success();
    let rows = read_csv(&report);
    assert_each_index_once(&rows, 1..=10_000);
    for row in &rows {
        assert_eq!(
            row.get("url"),
            server.url(&format!("/ok?i={}", row.index() - 1))
        );
        assert_eq!(row.get("status"), "200");
    }
}

/// `ratefetch completions SHELL` prints its output (stdout) with exit 0.
fn generated(args: &[&str]) -> String {
    let out = ratefetch().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_are_generated_for_each_shell_with_the_flags_and_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = generated(&["completions", shell]);
        for word in [
            "ratefetch",
            "cacert",
            "per-host-quota",
            "audit",
            "tolerance",
        ] {
            assert!(script.contains(word), "{shell} script without {word}");
        }
    }
    // The bash script loads and registers a completion for ratefetch.
    let script = generated(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratefetch.bash");
    std::fs::write(&path, script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p ratefetch",
            path.display()
        ))
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ratefetch"));
    let out = ratefetch().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_pages_name_every_flag() {
    let tree = ratefetch::cli::command_tree();
    let check = |page: &str, command: &clap::Command| {
        assert!(
            page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"),
            "{page}"
        );
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&roff), "--{long} missing from the man page");
            }
        }
    };
    let main = generated(&["man"]);
    assert!(main.contains(".TH ratefetch 1"), "{main}");
    check(&main, &tree);
    for sub in tree.get_subcommands() {
        let name = sub.get_name();
        let page = generated(&["man", name]);
        assert!(page.contains(&format!(".TH ratefetch-{name} 1")), "{page}");
        assert!(
            main.contains(&format!("ratefetch\\-{name}(1)")),
            "{name} not listed"
        );
        check(&page, sub);
    }
}
