//! A raw-TCP test server for misbehaving peers ([`RawServer`]), and a URL where nothing listens
//! ([`closed_port_url`]).

use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::panic_message;

/// A TCP server for fault tests: every accepted connection is handed, as a blocking
/// [`TcpStream`], to the handler on a thread of its own, which may then do anything a broken or
/// hostile peer would (stall, send garbage, hang up mid-response).
///
/// Dropping it stops accepting and joins the accept thread. Handler threads are not waited for (a
/// stalling handler must not hang the test), but a handler that already panicked makes the drop
/// panic, unless the test is already panicking.
pub struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl RawServer {
    /// Binds `127.0.0.1:0` and runs `handler` for every connection.
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("binding raw test server");
        let addr = listener.local_addr().expect("raw test server address");
        let stop = Arc::new(AtomicBool::new(false));
        let handlers = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);

        let accept_thread = {
            let stop = Arc::clone(&stop);
            let handlers = Arc::clone(&handlers);
            std::thread::Builder::new()
                .name(format!("raw-server-{addr}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        // Checked after accept: Drop's wake-up connection lands here.
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let handler = Arc::clone(&handler);
                        let thread = std::thread::spawn(move || handler(stream));
                        handlers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(thread);
                    }
                })
                .expect("spawning raw test server thread")
        };

        RawServer {
            addr,
            stop,
            accept_thread: Some(accept_thread),
            handlers,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // `accept` has no timeout; a connection of our own is what wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        let mut failures = Vec::new();
        if let Some(thread) = self.accept_thread.take() {
            if let Err(payload) = thread.join() {
                failures.push(panic_message(payload.as_ref()));
            }
        }
        let handlers =
            std::mem::take(&mut *self.handlers.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in handlers.into_iter().filter(JoinHandle::is_finished) {
            if let Err(payload) = thread.join() {
                failures.push(panic_message(payload.as_ref()));
            }
        }
        if !failures.is_empty() && !std::thread::panicking() {
            panic!(
                "raw test server {} panicked: {}",
                self.addr,
                failures.join("; ")
            );
        }
    }
}

/// `http://127.0.0.1:PORT/` for a port where nothing listens (it was bound and released), so
/// a connection is refused.
pub fn closed_port_url() -> String {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("binding a throwaway port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}/")
}
