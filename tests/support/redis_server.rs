//! A real `redis-server` for the tests of shared limits: started by the test on a unix socket
//! of its own (no TCP port to race for), without persistence, killed when dropped.
//!
//! Where `redis-server` is not installed the Redis tests skip with a line that says so, so that
//! `cargo test` passes on a machine with only the toolchain; with `CI` set they fail instead
//! (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    socket: PathBuf,
    extra: Vec<String>,
    /// Keeps the socket's directory until the server is gone.
    _dir: tempfile::TempDir,
}

/// Whether `redis-server` can be run here; `false` means "skip" (and panics under `CI`).
pub fn available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: redis-server is not installed, and CI is set (.ci/run installs it)");
        }
        eprintln!("{test}: skipped: redis-server is not installed (apt-get install redis-server)");
    }
    found
}

impl Redis {
    /// Starts a server on a fresh unix socket and waits until it accepts connections.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// `start`, with more `redis-server` arguments (its files go in its own directory).
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("a directory for the socket");
        let socket = dir.path().join("redis.sock");
        let child = spawn(&socket, dir.path(), extra);
        Redis {
            child,
            socket,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        }
    }

    /// `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Kills the server at once (SIGKILL: no shutdown save, as a crash), and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new server on the same socket (after `kill`), empty as a restart without
    /// persistence leaves it, and waits until it accepts connections.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = spawn(&self.socket, self._dir.path(), &extra);
    }

    /// Runs one command with `redis-cli`-like arguments and returns its answer (for checks).
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url()).expect("a redis URL");
        let mut conn = client
            .get_connection()
            .expect("connecting to the test redis");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).expect("a redis command")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` on `socket` (no TCP, no persistence unless `extra` asks for it,
/// its files in `dir`) and waits for its "Ready" line.
fn spawn(socket: &Path, dir: &Path, extra: &[&str]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .args(["--loglevel", "notice", "--dir"])
        .arg(dir)
        .args(extra)
        .arg("--unixsocket")
        .arg(socket)
        .args(["--unixsocketperm", "700", "--logfile", ""])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line
                .to_ascii_lowercase()
                .contains("ready to accept connections")
            {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(READY_WITHIN).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not get ready within {READY_WITHIN:?}");
    }
    child
}
