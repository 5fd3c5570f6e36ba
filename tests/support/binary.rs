//! The `ratefetch` binary under test, started with every proxy variable removed so that it
//! talks to the 127.0.0.x test servers directly whatever the environment of the test run.

use std::process::Command;

/// Every variable reqwest (or a library under it) reads a proxy setting from, in both cases.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The binary as a plain [`Command`], for tests that spawn it and talk to it while it runs
/// (signals, pipes).
pub fn ratefetch_command() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("ratefetch"));
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The binary as an [`assert_cmd::Command`], for tests that run it to the end.
pub fn ratefetch_bin() -> assert_cmd::Command {
    assert_cmd::Command::from_std(ratefetch_command())
}
