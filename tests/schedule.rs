//! The scheduler: a job that must wait (a backoff, a host's cool-down, a host's pace) holds
//! no worker, so other hosts go on. Judged from the servers' arrival logs, in the order of
//! events and with loose bounds, never by timing the run.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ratefetch::units::Rate;
use ratefetch::Config;
use support::report::{assert_each_index_once, run_lib, test_config};
use support::server::{check_rate, Arrival, Server};

fn per_second(r: f64) -> Rate {
    Rate::Every(Duration::from_secs_f64(1.0 / r))
}

fn times(arrivals: &[Arrival]) -> Vec<Instant> {
    arrivals.iter().map(|a| a.at).collect()
}

/// One worker: if a waiting job held it, nothing else could happen while it waits.
fn one_worker() -> Config {
    Config {
        workers: 1,
        concurrency: 1,
        ..test_config()
    }
}

#[test]
fn a_job_in_backoff_does_not_delay_the_next_job_on_another_host() {
    let _turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 2]);
    let b = Server::start_on([127, 0, 0, 3]);
    let mut lines = vec![a.url("/status/503")];
    lines.extend((0..5).map(|i| b.url(&format!("/ok?{i}"))));
    let config = Config {
        retries: 1,
        // Without jitter the backoff is exactly its ceiling: a long, known wait.
        backoff: Duration::from_secs(2),
        backoff_jitter: false,
        ..one_worker()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=6);
    assert_eq!(rows[0].get("attempts"), "2");
    let (arr_a, arr_b) = (a.arrivals(), b.arrivals());
    assert_eq!((arr_a.len(), arr_b.len()), (2, 5));
    // The retry waited its whole backoff, and every job on the other host went meanwhile.
    assert!(arr_a[1].at - arr_a[0].at >= Duration::from_secs(2));
    assert!(
        arr_b.iter().all(|x| x.at < arr_a[1].at),
        "host b waited for host a's backoff"
    );
}

#[test]
fn a_cool_down_on_one_host_does_not_slow_the_others() {
    let _turn = support::timing_turn();
    let a = Server::start_on([127, 0, 0, 4]);
    let b = Server::start_on([127, 0, 0, 5]);
    let mut lines = vec![a.url("/status/429?retry_after=2")];
    lines.extend((0..5).map(|i| b.url(&format!("/ok?{i}"))));
    let config = Config {
        retries: 1,
        ..one_worker()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=6);
    let (arr_a, arr_b) = (a.arrivals(), b.arrivals());
    assert_eq!((arr_a.len(), arr_b.len()), (2, 5));
    assert!(
        arr_a[1].at - arr_a[0].at >= Duration::from_secs(2),
        "host a cooled down"
    );
    assert!(
        arr_b.iter().all(|x| x.at < arr_a[1].at),
        "host b waited for host a's cool-down"
    );
}

/// Arrivals per server address, each in order.
fn by_host(servers: &[Server]) -> HashMap<SocketAddr, Vec<Arrival>> {
    servers.iter().map(|s| (s.addr(), s.arrivals())).collect()
}

#[test]
fn a_list_sorted_by_host_goes_to_every_host_at_once() {
    let _turn = support::timing_turn();
    let servers: Vec<Server> = (10..16).map(|i| Server::start_on([127, 0, 0, i])).collect();
    let per_host = 8;
    let lines: Vec<String> = servers
        .iter()
        .flat_map(|s| (0..per_host).map(move |i| s.url(&format!("/ok?{i}"))))
        .collect();
    let config = Config {
        per_host_rate: per_second(5.0),
        concurrency: 16,
        workers: 16,
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=(6 * per_host));
    let arrivals = by_host(&servers);
    for arr in arrivals.values() {
        assert_eq!(arr.len(), per_host as usize);
        // Six hosts open their first connections at once here, on a busy machine: a first
        // request reaches its server up to tens of ms after it left (the pace counts from
        // when it left), its successors on the warm connection at once. The pace itself is
        // checked tightly in `tests/limits.rs`; this allows for that set-up.
        let check = check_rate(&times(arr), 5.0, 1, Duration::from_millis(30));
        assert!(
            check.held,
            "a host above 5/s: {} in {:?} (gaps {:?})",
            check.worst_count,
            check.worst_span,
            arr.windows(2)
                .map(|w| w[1].at - w[0].at)
                .collect::<Vec<_>>()
        );
    }
    // Every host started within the first period or so: before any host's third request,
    // which its pace puts 400 ms after its first. (Worker by worker, the last host would
    // start only after the others had sent most of their jobs.)
    let third = arrivals.values().map(|a| a[2].at).min().unwrap();
    for (host, arr) in &arrivals {
        assert!(arr[0].at < third, "host {host} started late");
    }
    // And the whole list took about its ideal time (7 periods of 200 ms), not host by host.
    let first = arrivals.values().map(|a| a[0].at).min().unwrap();
    let last = arrivals.values().map(|a| a[a.len() - 1].at).max().unwrap();
    assert!(
        last - first < Duration::from_millis(1400 + 1000),
        "took {:?}",
        last - first
    );
}

#[test]
fn hosts_with_thousands_of_jobs_each_go_in_parallel() {
    let _turn = support::timing_turn();
    // More jobs per host than the scheduler keeps in memory: the rest wait on disk, and the
    // input is read on to the next hosts.
    let servers: Vec<Server> = (20..23).map(|i| Server::start_on([127, 0, 0, i])).collect();
    let per_host = 1500u64;
    let lines: Vec<String> = servers
        .iter()
        .flat_map(|s| (0..per_host).map(move |i| s.url(&format!("/ok?{i}"))))
        .collect();
    let config = Config {
        per_host_rate: per_second(500.0),
        concurrency: 8,
        workers: 8,
        ..test_config()
    };
    let (_, rows) = run_lib(config, &lines);
    assert_each_index_once(&rows, 1..=(3 * per_host));
    assert!(rows.iter().all(|r| r.get("status") == "200"));
    let arrivals = by_host(&servers);
    // The last host started while the first was still at its beginning.
    let first_host = &arrivals[&servers[0].addr()];
    let last_host_start = arrivals[&servers[2].addr()][0].at;
    assert!(
        last_host_start < first_host[300].at,
        "the last host waited for the first host's jobs"
    );
    for (host, arr) in &arrivals {
        assert_eq!(arr.len() as u64, per_host, "{host}");
    }
}

#[test]
fn a_resume_with_more_jobs_left_below_its_last_index_than_the_lookahead_finishes() {
    // A report that holds only the list's last line: every other line is not done and
    // lies below the report's last index. They wait in the (held, spilling) scheduler until
    // the input is known to be the report's, then all go.
    let server = Server::start();
    let n = 9000u64;
    let urls: Vec<String> = (1..=n).map(|i| server.url(&format!("/ok?{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    std::fs::write(
        &report,
        format!(
            "index,url,final_url,status,error_kind,error,attempts,elapsed_ms,bytes,content_type,title,started_at\n\
             {n},{},,200,,,1,1,2,,,\n",
            urls[n as usize - 1]
        ),
    )
    .unwrap();
    support::binary::ratefetch_bin()
        .args(["-q", "-r", "unlimited", "--resume", "-o"])
        .arg(&report)
        .arg(&list)
        .assert()
        .success();
    let rows = support::report::read_csv(&report);
    assert_each_index_once(&rows, 1..=n);
    assert_eq!(
        server.arrivals().len() as u64,
        n - 1,
        "the done line was not fetched"
    );
}
