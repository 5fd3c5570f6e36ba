//! `--shard K/N`: N processes with the same list and 1/N … N/N cover it exactly once, each
//! row keeping its original index.

mod support;

use support::binary::ratefetch_bin;
use support::report::{assert_each_index_once, read_csv, Row};
use support::server::Server;

#[test]
fn shards_of_a_list_cover_it_exactly_once_with_the_original_indexes() {
    let server = Server::start_on([127, 0, 0, 80]);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let mut lines: Vec<String> = (1..=11).map(|i| server.url(&format!("/ok?{i}"))).collect();
    lines[4] = "# a comment keeps its line number".into();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let mut all: Vec<Row> = Vec::new();
    for k in 1..=3u64 {
        let report = dir.path().join(format!("part{k}.csv"));
        let out = ratefetch_bin()
            .args(["-r", "unlimited", "-q", "--shard", &format!("{k}/3"), "-o"])
            .arg(&report)
            .arg(&list)
            .output()
            .expect("running ratefetch");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = read_csv(&report);
        for row in &rows {
            assert_eq!(
                (row.index() - 1) % 3,
                k - 1,
                "shard {k} took line {}",
                row.index()
            );
            assert!(
                row.get("url").ends_with(&format!("/ok?{}", row.index())),
                "line {} kept its URL: {}",
                row.index(),
                row.get("url")
            );
        }
        all.extend(rows);
    }
    // Line 5 is a comment: no row in any shard, as without --shard.
    assert_each_index_once(&all, (1..=11).filter(|&i| i != 5));
    assert_eq!(server.arrivals().len(), 10, "each URL fetched once");
}

#[test]
fn a_shard_out_of_range_is_a_usage_error_naming_the_flag() {
    for bad in ["0/3", "4/3", "3", "x/y"] {
        let out = ratefetch_bin()
            .args(["--shard", bad, "urls.txt"])
            .output()
            .expect("running ratefetch");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--shard"), "{bad}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bad}: {stderr}");
    }
}
