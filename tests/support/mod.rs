//! Shared support for the integration tests: the `mosn` daemon as a child process with a
//! generated config, upstream servers the tests control, an admin client with a metrics
//! parser, random payloads with their SHA-256, and the scenarios that `l4.rs` and `kernel.rs`
//! run for each `fast_path`.
//!
//! Everything binds port 0 or a port picked free just before use; every wait is bounded.

pub mod admin;
pub mod bolt;
pub mod capture_env;
pub mod daemon;
pub mod data;
pub mod dubbo;
pub mod grpc;
pub mod h2;
pub mod h2_origin;
pub mod h2_raw;
pub mod http;
pub mod origin;
pub mod resets;
pub mod rpc;
pub mod scenarios;
pub mod tls;
pub mod tls_cli;
pub mod tls_origin;
#[cfg(test)]
mod tls_selftest;
pub mod upstream;

pub use admin::{Metrics, http_get};
pub use daemon::{CLUSTER, FastPath, LISTENER, Mosn, ProxyConfig, TempDir, free_port, mosn_bin};
pub use data::{Sha, hex, recv_hashed, send_random};
pub use upstream::Upstream;

use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

/// Whether a privileged test can run. Not root: in CI (env `CI` set) that is a failure;
/// elsewhere the test prints why it is skipped and returns early.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("privileged test must run in CI: not root ({test})");
    }
    // Straight to stderr, past libtest's output capture, so the skip shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: needs root (BPF programs, SOCKHASH, setpriv); run the suite as root to cover it"
    );
    false
}

/// For tests of the kernel path: root (as [`require_root`]) and a daemon built with the kernel
/// programs (`mosn version` says so). A plain `cargo test` builds the daemon without them;
/// that skips with the reason, except in CI, where it fails.
pub fn require_kernel(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let out = std::process::Command::new(mosn_bin())
        .arg("version")
        .output();
    let built_in = out
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("kernel programs: built in"));
    if built_in {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "kernel test must run in CI, but the daemon has no kernel programs built in ({test}): run `cargo xtask test`"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: the daemon was built without the kernel programs; `cargo xtask test` builds them"
    );
    false
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit, if lower). The
/// daemon started afterwards inherits it. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid rlimit struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let target = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the valid rlimit struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &target) } == 0 {
        target.rlim_cur
    } else {
        lim.rlim_cur
    }
}

/// Runs `fut` with a time limit, so a hang fails the test (and the daemon's Drop prints its
/// log) instead of stalling the suite.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Serialises the tests that load both CPUs (bulk transfers, 1,000 connections) against each
/// other and against the tests that measure time (idle timeout, drain, reply latency), so a
/// 2-vCPU CI runner gives both honest results. `cargo test` runs tests on parallel threads,
/// each with its own runtime; a tokio lock works across runtimes.
pub static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that saturates the machine.
pub async fn heavy() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

/// Held by a test whose assertions are about time.
pub async fn timing() -> tokio::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().await
}
