//! Saved bodies stream to disk: many large bodies in flight at once cost little memory, and
//! every saved file is the whole body, matching its `body_sha256`. One test in this binary,
//! so that the largest child it waits for is ratefetch.

mod support;

use sha2::Digest;
use support::binary::ratefetch_command;
use support::report::{read_csv, Row};
use support::server::Server;

const BODIES: u64 = 64;
const SIZE: u64 = 8 << 20;

/// The largest resident set of any child this process has waited for, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn sixty_four_large_bodies_in_flight_stay_small_in_memory_and_are_saved_whole() {
    let server = Server::start_on([127, 0, 0, 114]);
    let dir = tempfile::tempdir().unwrap();
    let bodies = dir.path().join("bodies");
    // Sizes differ, so each file has a hash of its own.
    let urls: Vec<String> = (0..BODIES)
        .map(|i| server.url(&format!("/stream/{}", SIZE + i)))
        .collect();
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let out = ratefetch_command()
        .args(["-r", "unlimited", "-c", "64", "-q", "--save-bodies"])
        .arg(&bodies)
        .arg("-o")
        .arg(&report)
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = children_peak_rss();
    let mut rows = read_csv(&report);
    rows.sort_by_key(Row::index);
    assert_eq!(rows.len() as u64, BODIES);
    for (i, row) in rows.iter().enumerate() {
        let want = SIZE + i as u64;
        assert_eq!(
            (row.get("status"), row.get("error_kind")),
            ("200", ""),
            "row {i}"
        );
        assert_eq!(row.get("bytes"), want.to_string());
        let saved = std::fs::read(bodies.join(format!("{}.bin", row.index()))).unwrap();
        assert_eq!(
            saved.len() as u64,
            want,
            "file of row {i} is the whole body"
        );
        assert_eq!(
            row.get("body_sha256"),
            format!("{:x}", sha2::Sha256::digest(&saved)),
            "file of row {i} matches its body_sha256"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&bodies)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial-"))
        .collect();
    assert!(names.is_empty(), "no temporary file is left: {names:?}");
    // Held in memory, the bodies alone would be 512 MiB.
    assert!(
        peak < 150 << 20,
        "peak RSS {} MiB with {BODIES} bodies of 8 MiB in flight",
        peak >> 20
    );
}
