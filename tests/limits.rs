//! The rate promise, checked where it matters: at the server. At `--rate R --burst B`, no
//! window of length T in the server's arrival log holds more than B + R·T requests, retries
//! included; per host likewise. A small tolerance absorbs scheduling noise on a busy 2-core
//! machine. Concurrency limits are checked with the server's in-flight gauge.

mod support;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use ratefetch::units::Rate;
use ratefetch::Config;
use support::report::{assert_each_index_once, run_lib, test_config};
use support::server::{Arrival, Server};
use support::windows::check_rate;
use support::Turn;

/// Arrival-time noise allowed on top of the promise, plus any stall the machine showed during
/// the test (a server thread kept waiting that long times its arrival as much later).
const TOLERANCE: Duration = Duration::from_millis(10);

fn per_second(r: f64) -> Rate {
    Rate::Every(Duration::from_secs_f64(1.0 / r))
}

fn times(arrivals: &[Arrival]) -> Vec<Instant> {
    arrivals.iter().map(|a| a.at).collect()
}

fn assert_promise(turn: &Turn, arrivals: &[Arrival], rate: f64, burst: u32, what: &str) {
    let stall = turn.stall();
    let check = check_rate(&times(arrivals), rate, burst, TOLERANCE + stall);
    assert!(
        check.held,
        "{what}: {} requests within {:?}, promise allows {:.2} (rate {rate}/s, burst {burst}, \
         the machine stalled up to {stall:?})",
        check.worst_count, check.worst_span, check.allowed
    );
}

#[test]
fn global_rate_holds_at_the_server() {
    let turn = support::timing_turn();
    let server = Server::start();
    let lines: Vec<String> = (0..60).map(|_| server.url("/ok")).collect();
    let config = Config {
        rate: per_second(50.0),
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=60);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 60);
    assert_promise(&turn, &arrivals, 50.0, 1, "global 50/s");
}

#[test]
fn burst_is_allowed_but_no_more() {
    let turn = support::timing_turn();
    let server = Server::start();
    let lines: Vec<String> = (0..40).map(|_| server.url("/ok")).collect();
    let config = Config {
        rate: per_second(20.0),
        burst: NonZeroU32::new(5).unwrap(),
        ..test_config()
    };
    run_lib(config, &lines);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 40);
    assert_promise(&turn, &arrivals, 20.0, 5, "20/s burst 5");
    // The burst is used: the first five left together. At burst 1 they would span 200 ms.
    let first_five = arrivals[4].at - arrivals[0].at;
    assert!(
        first_five < Duration::from_millis(150),
        "the burst took {first_five:?}"
    );
}

#[test]
fn retries_take_rate_tokens_too() {
    let turn = support::timing_turn();
    let server = Server::start();
    let lines: Vec<String> = (0..20).map(|_| server.url("/status/503")).collect();
    let config = Config {
        rate: per_second(40.0),
        retries: 2,
        backoff: Duration::from_millis(1),
        ..test_config()
    };
    let (summary, rows) = run_lib(config, &lines);
    assert!(rows
        .iter()
        .all(|r| r.get("attempts") == "3" && r.get("status") == "503"));
    assert_eq!(summary.stats.requests, 60);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 60, "every attempt reached the server");
    assert_promise(&turn, &arrivals, 40.0, 1, "40/s with retries");
}

#[test]
fn per_host_rate_holds_for_each_host_while_hosts_go_in_parallel() {
    let turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 2]);
    let b = Server::start_on([127, 0, 0, 3]);
    let lines: Vec<String> = (0..25).flat_map(|_| [a.url("/ok"), b.url("/ok")]).collect();
    let config = Config {
        per_host_rate: per_second(20.0),
        ..test_config()
    };
    run_lib(config, &lines);
    let (arr_a, arr_b) = (a.arrivals(), b.arrivals());
    assert_eq!((arr_a.len(), arr_b.len()), (25, 25));
    assert_promise(&turn, &arr_a, 20.0, 1, "host a at 20/s");
    assert_promise(&turn, &arr_b, 20.0, 1, "host b at 20/s");
}

#[test]
fn global_and_per_host_rates_hold_together() {
    let turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 4]);
    let b = Server::start_on([127, 0, 0, 5]);
    let lines: Vec<String> = (0..20).flat_map(|_| [a.url("/ok"), b.url("/ok")]).collect();
    let config = Config {
        rate: per_second(30.0),
        per_host_rate: per_second(20.0),
        ..test_config()
    };
    run_lib(config, &lines);
    let (arr_a, arr_b) = (a.arrivals(), b.arrivals());
    assert_promise(&turn, &arr_a, 20.0, 1, "host a at 20/s");
    assert_promise(&turn, &arr_b, 20.0, 1, "host b at 20/s");
    let mut all = arr_a;
    all.extend(arr_b);
    assert_eq!(all.len(), 40);
    assert_promise(&turn, &all, 30.0, 1, "global 30/s");
}

#[test]
fn concurrency_caps_requests_in_flight() {
    let _turn = support::timing_turn();
    let server = Server::start();
    let lines: Vec<String> = (0..24).map(|_| server.url("/delay/50")).collect();
    let config = Config {
        concurrency: 3,
        workers: 16,
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_eq!(rows.len(), 24);
    let max = server.max_in_flight();
    assert!(max <= 3, "{max} requests in flight with --concurrency 3");
}

#[test]
fn per_host_concurrency_caps_each_host() {
    let _turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 6]);
    let b = Server::start_on([127, 0, 0, 7]);
    let lines: Vec<String> = (0..12)
        .flat_map(|_| [a.url("/delay/50"), b.url("/delay/50")])
        .collect();
    let config = Config {
        per_host_concurrency: Some(2),
        concurrency: 16,
        workers: 16,
        ..test_config()
    };
    run_lib(config, &lines);
    assert!(a.max_in_flight() <= 2, "host a: {}", a.max_in_flight());
    assert!(b.max_in_flight() <= 2, "host b: {}", b.max_in_flight());
}

#[test]
fn retry_after_cools_the_whole_host_while_other_hosts_go_on() {
    let _turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 8]);
    let b = Server::start_on([127, 0, 0, 9]);
    let mut lines = vec![a.url("/status/429?retry_after=1")];
    // Ten jobs for host a among 230 slow ones for host b: enough b work to outlast the
    // cool-down, and enough workers that a's waiting jobs cannot hold them all.
    for i in 0..240 {
        lines.push(if i % 24 == 0 {
            a.url("/ok")
        } else {
            b.url("/delay/100")
        });
    }
    let config = Config {
        retries: 1,
        concurrency: 32,
        workers: 32,
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_eq!(rows.len(), 241);
    assert_eq!(rows[0].get("status"), "429");
    assert_eq!(rows[0].get("attempts"), "2");

    let arr_a = a.arrivals();
    let first_429 = arr_a
        .iter()
        .find(|x| x.path.starts_with("/status/429"))
        .expect("the 429 arrived")
        .at;
    // Requests sent before the 429 came back may land just after it (on a busy 2-core
    // machine, a request that took its token just before the client read the 429 can reach
    // the server 100 ms or more later); after that, host a is quiet until a second has passed.
    let early = first_429 + Duration::from_millis(300);
    let quiet_until = first_429 + Duration::from_secs(1);
    let offenders: Vec<Duration> = arr_a
        .iter()
        .filter(|x| x.at > early && x.at < quiet_until)
        .map(|x| x.at - first_429)
        .collect();
    assert!(
        offenders.is_empty(),
        "host a got requests during its cool-down at {offenders:?}"
    );
    let b_during = b
        .arrivals()
        .iter()
        .filter(|x| x.at > early && x.at < quiet_until)
        .count();
    assert!(b_during > 0, "host b went on during host a's cool-down");
}

#[test]
fn redirect_hops_take_rate_tokens_too() {
    let turn = support::timing_turn();
    let server = Server::start();
    let lines: Vec<String> = (0..10).map(|_| server.url("/redirect/4")).collect();
    let config = Config {
        rate: per_second(25.0),
        ..test_config()
    };
    let (summary, rows) = run_lib(config, &lines);
    assert!(rows
        .iter()
        .all(|r| r.get("status") == "200" && r.get("attempts") == "1"));
    assert_eq!(summary.stats.requests, 50);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 50, "every hop reached the server");
    assert_promise(&turn, &arrivals, 25.0, 1, "25/s with redirect hops");
}

#[test]
fn a_redirect_to_another_host_obeys_that_hosts_limits() {
    let turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 10]);
    let b = Server::start_on([127, 0, 0, 11]);
    // Every job starts on host a and is redirected to host b.
    let hop = |i: usize| format!("/to?u={}", b.url(&format!("/ok?{i}")).replace(':', "%3A"));
    let lines: Vec<String> = (0..20).map(|i| a.url(&hop(i))).collect();
    let config = Config {
        per_host_rate: per_second(20.0),
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert!(rows
        .iter()
        .all(|r| r.get("final_url").starts_with(&b.url("/ok"))));
    let arr_b = b.arrivals();
    assert_eq!(arr_b.len(), 20);
    assert_promise(
        &turn,
        &arr_b,
        20.0,
        1,
        "host b reached by redirects at 20/s",
    );
}

/// The run's own proof holds on plain runs: at the default burst, from 10/s to 200/s, the
/// request log of every run passes `ratefetch audit` with no flags (the limits from the log's
/// header, the default 1 ms tolerance). The sends are judged at the instants the log records,
/// so this holds however busy the machine is: a request that left late is not caught up on.
#[test]
fn default_runs_pass_their_own_audit() {
    use support::binary::ratefetch_bin;
    // Not timed itself, but its load would add noise to the tests here that are.
    let _turn = support::timing_turn();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (rate, n) in [(10, 8), (50, 30), (100, 50), (200, 100)] {
        let lines: Vec<String> = (0..n).map(|i| server.url(&format!("/ok?{i}"))).collect();
        let list = dir.path().join("urls.txt");
        std::fs::write(&list, lines.join("\n")).unwrap();
        for run in 0..2 {
            let log = dir.path().join(format!("{rate}-{run}.log"));
            let out = ratefetch_bin()
                .arg(&list)
                .args(["-q", "-o"])
                .arg(dir.path().join(format!("{rate}-{run}.csv")))
                .args(["-r", &format!("{rate}/s"), "--log-requests"])
                .arg(&log)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let out = ratefetch_bin().arg("audit").arg(&log).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "run {run} at {rate}/s: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("held"), "{text}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Over random limit sets and demand (one or two hosts, a global rate and burst, maybe a
    /// per-host rate, maybe a quota), the run's own request log passes `audit` under the
    /// limits its header names, with the default 1 ms tolerance.
    #[test]
    fn a_runs_log_passes_its_audit(
        rate in 40u32..400,
        burst in 1u32..4,
        per_host in proptest::option::of(20u32..200),
        quota in proptest::option::of((3u64..12, 50u64..250)),
        two_hosts in proptest::bool::ANY,
        demand in 10usize..40,
    ) {
        use ratefetch::audit::{audit, Asked};
        use ratefetch::units::Quota;
        let _turn = support::timing_turn();
        let servers = if two_hosts {
            vec![Server::start_on([127, 0, 0, 140]), Server::start_on([127, 0, 0, 141])]
        } else {
            vec![Server::start_on([127, 0, 0, 140])]
        };
        // About a second of work at most, whatever the limits.
        let slowest = [
            Some(f64::from(rate)),
            per_host.map(|r| f64::from(r) * servers.len() as f64),
            quota.map(|(n, w)| n as f64 * 1000.0 / w as f64),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
        let n = demand.min(slowest as usize + 2);
        let lines: Vec<String> = (0..n)
            .map(|i| servers[i % servers.len()].url(&format!("/ok?{i}")))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.log");
        let config = Config {
            rate: per_second(f64::from(rate)),
            burst: NonZeroU32::new(burst).unwrap(),
            per_host_rate: per_host.map_or(Rate::Unlimited, |r| per_second(f64::from(r))),
            quotas: quota
                .map(|(limit, ms)| Quota { limit, window: Duration::from_millis(ms) })
                .into_iter()
                .collect(),
            log_requests: Some(log.clone()),
            ..test_config()
        };
        let (_, rows) = run_lib(config, &lines);
        assert_each_index_once(&rows, 1..=n as u64);
        let found = audit(&[log], &Asked::default(), Duration::from_millis(1)).unwrap();
        proptest::prop_assert!(found.held, "{}", found.lines.join("\n"));
    }
}
