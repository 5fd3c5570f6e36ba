//! Helpers to run ratefetch (the library or the binary) on a URL list and read its report
//! back with the `csv` crate.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ratefetch::config::{InputSource, OutputTarget};
use ratefetch::units::Rate;
use ratefetch::{Config, Shutdown, Summary};

// Its home before `binary.rs`; tests on other branches import it from here.
#[allow(unused_imports)]
pub use super::binary::ratefetch_bin;

/// One report row, by column name.
#[derive(Debug, Clone)]
pub struct Row(pub HashMap<String, String>);

impl Row {
    /// The cell of `column` (panics on an unknown column: a test bug).
    pub fn get(&self, column: &str) -> &str {
        self.0
            .get(column)
            .unwrap_or_else(|| panic!("no column {column:?} in {:?}", self.0))
    }

    pub fn index(&self) -> u64 {
        self.get("index").parse().expect("index is a number")
    }
}

/// Parses a CSV report; also returns its header.
pub fn parse_csv(text: &[u8]) -> (Vec<String>, Vec<Row>) {
    let mut rdr = csv::Reader::from_reader(text);
    let header: Vec<String> = rdr
        .headers()
        .expect("a header")
        .iter()
        .map(String::from)
        .collect();
    let rows = rdr
        .records()
        .map(|r| {
            let r = r.expect("a valid CSV record");
            assert_eq!(r.len(), header.len(), "every row has every column");
            Row(header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect())
        })
        .collect();
    (header, rows)
}

pub fn read_csv(path: &Path) -> Vec<Row> {
    parse_csv(&std::fs::read(path).expect("reading the report")).1
}

/// The complete rows of a report that a running (or killed) ratefetch may still be writing:
/// a missing file has none, and a last line without its newline is left out.
pub fn read_csv_so_far(path: &Path) -> Vec<Row> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading the report {}: {e}", path.display()),
    };
    let whole = &text[..text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)];
    parse_csv(whole).1
}

/// Re-reads the report a running ratefetch writes until its rows satisfy `done`, and returns
/// them; panics naming `what` if that has not happened within `timeout`. Rows reach the file
/// at least once a second, so this waits for the event itself rather than for a guess.
pub fn wait_for_rows(
    path: &Path,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Row]) -> bool,
) -> Vec<Row> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let rows = read_csv_so_far(path);
        if done(&rows) {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not in the report after {timeout:?}; it has {} rows",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config for library tests: quiet, no proxies, no rate limit, short timeouts.
pub fn test_config() -> Config {
    Config {
        quiet: true,
        no_proxy: true,
        rate: Rate::Unlimited,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(10),
        ..Config::default()
    }
}

/// Runs the library on `lines` with `config` (its input and output are replaced by temp
/// files) and returns the summary and the rows sorted by index.
pub fn run_lib(mut config: Config, lines: &[String]) -> (Summary, Vec<Row>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("urls.txt");
    let output = dir.path().join("report.csv");
    std::fs::write(&input, lines.join("\n")).expect("writing the input");
    config.input = InputSource::Path(input);
    config.output = OutputTarget::Path(output.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let summary = rt
        .block_on(ratefetch::run(config, Shutdown::new()))
        .expect("the run succeeds");
    let mut rows = read_csv(&output);
    rows.sort_by_key(Row::index);
    (summary, rows)
}

/// Asserts that the rows hold every index of `expected` exactly once.
pub fn assert_each_index_once(rows: &[Row], expected: impl IntoIterator<Item = u64>) {
    let mut got: Vec<u64> = rows.iter().map(Row::index).collect();
    got.sort_unstable();
    let mut want: Vec<u64> = expected.into_iter().collect();
    want.sort_unstable();
    assert_eq!(got, want, "every index exactly once");
}
