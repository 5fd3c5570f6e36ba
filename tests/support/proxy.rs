//! Proxies for tests, each on a loopback address of its own, that record what passes:
//! [`Proxy::http`], a forward proxy (absolute-form requests are forwarded to their target
//! with a `Via: 1.1 test-proxy` header added; `CONNECT host:port` is tunnelled), and
//! [`Proxy::socks5`] (RFC 1928, no authentication, CONNECT only). Blocking threads, one per
//! connection; dropping the proxy stops accepting.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct Proxy {
    addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A forward HTTP proxy on `ip` (a free port).
    pub fn http(ip: [u8; 4]) -> Proxy {
        Proxy::start(ip, "http", http_connection)
    }

    /// A SOCKS5 proxy on `ip` (a free port).
    pub fn socks5(ip: [u8; 4]) -> Proxy {
        Proxy::start(ip, "socks5", socks_connection)
    }

    fn start(
        ip: [u8; 4],
        scheme: &'static str,
        serve: fn(TcpStream, &Mutex<Vec<String>>) -> std::io::Result<()>,
    ) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::from(ip), 0)).expect("binding test proxy");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let seen = Arc::clone(&seen);
                    std::thread::spawn(move || {
                        let _ = serve(conn, &seen);
                    });
                }
            })
        };
        Proxy {
            addr,
            scheme,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    /// The proxy's URL, e.g. `socks5://127.0.0.118:40123`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// What passed so far, in order: request lines (`GET http://…`, `CONNECT host:port`) for
    /// the HTTP proxy, `host:port` targets for SOCKS5.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// The request head, up to and including the blank line.
fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// One client connection of the HTTP proxy: one request (the proxy closes after it).
fn http_connection(mut conn: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(&read_head(&mut conn)?).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    seen.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let upstream = TcpStream::connect(target)?;
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        return tunnel(conn, upstream);
    }
    // Absolute form: http://host:port/path → connect to host:port, send /path.
    let Some(rest) = target.strip_prefix("http://") else {
        return conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut upstream = TcpStream::connect(authority)?;
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "proxy-connection" | "keep-alive"
        ) {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("via: 1.1 test-proxy\r\nconnection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes())?;
    // The upstream closes after its response (`connection: close`); so does the proxy.
    std::io::copy(&mut upstream, &mut conn)?;
    conn.shutdown(Shutdown::Both)
}

/// One client connection of the SOCKS5 proxy.
fn socks_connection(mut conn: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut greeting = [0u8; 2];
    conn.read_exact(&mut greeting)?;
    let mut methods = vec![0u8; greeting[1] as usize];
    conn.read_exact(&mut methods)?;
    if greeting[0] != 5 || !methods.contains(&0) {
        return conn.write_all(&[5, 0xff]);
    }
    conn.write_all(&[5, 0])?;
    let mut request = [0u8; 4];
    conn.read_exact(&mut request)?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            conn.read_exact(&mut ip)?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            conn.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            conn.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return conn.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]),
    };
    let mut port = [0u8; 2];
    conn.read_exact(&mut port)?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    seen.lock().unwrap().push(target.clone());
    if request[1] != 1 {
        return conn.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    let upstream = TcpStream::connect(&target)?;
    conn.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    tunnel(conn, upstream)
}

/// Copies both ways until either side closes.
fn tunnel(conn: TcpStream, upstream: TcpStream) -> std::io::Result<()> {
    let (mut up_read, mut conn_write) = (upstream.try_clone()?, conn.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut conn_write);
        let _ = conn_write.shutdown(Shutdown::Both);
    });
    let (mut conn_read, mut up_write) = (conn, upstream);
    let _ = std::io::copy(&mut conn_read, &mut up_write);
    let _ = up_write.shutdown(Shutdown::Both);
    let _ = back.join();
    Ok(())
}
