//! Hostile servers and other faults. Each case ends as an error row or a capped row, with
//! bounded memory and no panic, and the run goes on.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ratefetch::Config;
use support::binary::ratefetch_command as ratefetch;
use support::raw::RawServer;
use support::report::{assert_each_index_once, run_lib, test_config, wait_for_rows, Row};
use support::server::Server;

fn no_retries() -> Config {
    Config {
        retries: 0,
        timeout: Duration::from_secs(5),
        ..test_config()
    }
}

/// Reads the request head, then lets `respond` write whatever it likes.
fn raw(respond: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> RawServer {
    RawServer::start(move |mut stream| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        respond(&mut stream);
    })
}

/// Fetches one URL (plus a good one after it, to show the run goes on) and returns the row
/// of the first.
fn row_for(config: Config, url: String) -> Row {
    let good = Server::start();
    let (_, rows) = run_lib(config, &[url, good.url("/ok")]);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1].get("status"),
        "200",
        "the run went on after the fault"
    );
    rows.into_iter().next().unwrap()
}

#[test]
fn connection_closed_mid_headers_is_an_other_row() {
    let server = raw(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
    });
    let row = row_for(no_retries(), server.url("/"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("", "other"));
}

#[test]
fn connection_closed_mid_body_is_a_body_row() {
    let server = raw(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
    });
    let row = row_for(no_retries(), server.url("/"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("200", "body"));
}

#[test]
fn endless_body_without_length_is_capped() {
    let server = raw(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        let chunk = [b'z'; 16 * 1024];
        // Until the client hangs up.
        while s.write_all(&chunk).is_ok() {}
    });
    let config = Config {
        max_body: Some(1 << 20),
        ..no_retries()
    };
    let row = row_for(config, server.url("/"));
    assert_eq!(row.get("error_kind"), "body_too_large");
    assert_eq!(row.get("bytes"), (1u64 << 20).to_string());
}

/// A gzip stream that inflates to `size` bytes of `a` from about size/160 bytes: one fixed-
/// Huffman deflate block of a literal followed by (length 258, distance 1) copies. The
/// trailer is never reached by a client that honours its cap, so it is left out.
fn gzip_bomb(size: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// `len` bits of `value`, least significant first (deflate's bit order).
        fn put(&mut self, value: u64, len: u32) {
            self.acc |= value << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u64, len: u32) {
            let reversed = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
            self.put(reversed, len);
        }
    }
    let mut bits = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    bits.code(0x30 + u64::from(b'a'), 8); // literal 'a'
    for _ in 0..(size - 1) / 258 {
        bits.code(0b1100_0101, 8); // length code 285 = 258
        bits.code(0, 5); // distance code 0 = 1
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7);
    bits.out
}

#[test]
fn gzip_bomb_is_capped_on_decompressed_bytes() {
    let bomb = Arc::new(gzip_bomb(2 << 30)); // 2 GiB inflated
    assert!(
        bomb.len() < 20 << 20,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let body = bomb.clone();
    let server = raw(move |s| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    });
    let row = row_for(no_retries(), server.url("/")); // the default cap, 10 MiB
    assert_eq!(row.get("error_kind"), "body_too_large");
    assert_eq!(row.get("bytes"), (10u64 << 20).to_string());
}

#[test]
fn megabyte_header_is_an_other_row() {
    let server = raw(|s| {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 1 << 20));
        head.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        let _ = s.write_all(&head);
    });
    let row = row_for(no_retries(), server.url("/"));
    assert_eq!((row.get("status"), row.get("error_kind")), ("", "other"));
}

#[test]
fn invalid_utf8_and_megabyte_titles_are_cut_and_replaced() {
    let server = raw(|s| {
        let mut body = b"<html><title>caf\xe9 \xff".to_vec();
        body.extend(std::iter::repeat_n(b'x', 3 << 20));
        body.extend_from_slice(b"</title></html>");
        let head = format!(
            // Declared UTF-8, so the bad bytes are replaced (a page that said nothing would
            // be decoded as the detector guesses, as browsers do).
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    });
    let row = row_for(no_retries(), server.url("/"));
    let title = row.get("title");
    assert!(title.starts_with("caf\u{fffd} \u{fffd}x"), "{title:.40}");
    assert!(title.chars().count() <= 1025 && title.ends_with('…'));
}

#[test]
fn stdout_closed_early_ends_quietly() {
    let server = Server::start();
    let list: String = (0..2000).map(|_| server.url("/ok") + "\n").collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("urls.txt");
    std::fs::write(&path, list).unwrap();
    let mut child = ratefetch()
        .args(["-q", "-r", "unlimited"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -1`: read the header line, then close the pipe.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.starts_with("index,url"));
    drop(out);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn input_is_streamed_fetching_starts_before_it_ends() {
    let server = Server::start();
    let mut child = ratefetch()
        .args(["-q", "-r", "unlimited"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", server.url("/ok?first")).unwrap();
    stdin.flush().unwrap();
    // stdin is still open: the first URL must be fetched without waiting for the end.
    let first = server.wait_arrivals(1, Duration::from_secs(20));
    assert_eq!(
        first.len(),
        1,
        "nothing fetched while the input was still open"
    );
    writeln!(stdin, "{}", server.url("/ok?second")).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let (_, rows) = support::report::parse_csv(&out.stdout);
    assert_each_index_once(&rows, [1, 2]);
}

#[test]
fn rows_are_written_in_completion_order() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    // The slow job cannot finish while the test runs: the first row can only come first by
    // completion, not by a head start.
    std::fs::write(
        &list,
        format!("{}\n{}\n", server.url("/delay/60000"), server.url("/ok")),
    )
    .unwrap();
    let mut child = ratefetch()
        .args(["-q", "-r", "unlimited", "-c", "2"])
        .arg(&list)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut head = String::new();
    for _ in 0..2 {
        assert!(
            out.read_line(&mut head).unwrap() > 0,
            "stdout ended early: {head:?}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, rows) = support::report::parse_csv(head.as_bytes());
    let order: Vec<u64> = rows.iter().map(Row::index).collect();
    assert_eq!(order, [2], "the fast job's row comes first");
}

#[test]
fn rows_are_flushed_while_the_run_goes_on() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    let report = dir.path().join("report.csv");
    let n = 40;
    std::fs::write(
        &list,
        (0..n).map(|_| server.url("/ok") + "\n").collect::<String>(),
    )
    .unwrap();
    let mut child = ratefetch()
        .args(["-q", "-r", "5/s", "-o"])
        .arg(&report)
        .arg(&list)
        .spawn()
        .unwrap();
    // At 5/s the list takes 8 s, and 40 rows are far from the 64 KiB write buffer: rows on
    // disk before the last request was sent were flushed by the clock (at least once a
    // second), while the run went on.
    let rows = wait_for_rows(&report, "3 rows", Duration::from_secs(30), |rows| {
        rows.len() >= 3
    });
    let sent = server.arrivals().len();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        sent < n,
        "{} rows reached the disk only after all {n} requests were sent",
        rows.len()
    );
}
