#![allow(dead_code)]
//! Helpers shared by the integration tests: `server` (the scripted hyper server), `announcing`
//! (a server enforcing a limit it announces in rate-limit headers), `raw` (a raw-TCP server for
//! misbehaving peers), `windows` (rate checks over arrival times),
//! `tls` (test certificate authorities), `proxy` (forward and SOCKS5 proxies that record what passes), `binary` (the binary under test, proxy-free) and `report` (running ratefetch, reading its
//! report back).

pub mod announcing;
pub mod binary;
pub mod proxy;
pub mod raw;
pub mod redis_server;
pub mod report;
pub mod server;
pub mod tls;
pub mod windows;

/// The message of a panic payload caught by `join` or `catch_unwind`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A turn for a test that measures time at its server. Such tests take turns within their
/// test binary: on a 2-core machine, ten of them at once (each with its own server and client
/// runtimes) add more scheduling noise to the arrival times than the tolerance they allow. A
/// test that panicked does not block the others.
///
/// The turn also measures how late this machine ran a thread that was due (see
/// [`Turn::stall`]): an arrival is timed by the server's thread, so a stall of the machine
/// shifts it by as much, and a check at the server may allow that on top of its tolerance.
pub fn timing_turn() -> Turn {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = TURN.lock().unwrap_or_else(|e| e.into_inner());
    Turn {
        stall: windows::StallMeter::start(),
        _guard: guard,
    }
}

/// A test's turn at timing (see [`timing_turn`]).
pub struct Turn {
    stall: windows::StallMeter,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl Turn {
    /// The longest this machine has kept a due thread waiting since the turn began.
    pub fn stall(&self) -> std::time::Duration {
        self.stall.worst()
    }
}
