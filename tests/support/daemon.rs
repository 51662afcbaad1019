//! The daemon under test: finding the binary, generating a config, running `mosn start` as a
//! child process and stopping it.

use std::fs;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::admin::{Metrics, http_get};

/// Name of the listener every generated config has.
pub const LISTENER: &str = "l1";
/// Name of the cluster every generated config has.
pub const CLUSTER: &str = "c1";

/// Lines of a failed test's daemon log printed from its start and from its end.
const LOG_HEAD: usize = 15;
const LOG_TAIL: usize = 40;

/// What aya's `ProgramError::LoadError` prints before the kernel verifier's log.
const VERIFIER_MARK: &str = "Verifier output:";

/// How long the daemon may take from spawn to `GET /ready` = 200.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The daemon under test: `$MOSN_BIN`, else `mosn-under-test` next to this test binary
/// (`target/<profile>/deps/l4-<hash>` -> `target/<profile>/mosn-under-test`). That binary is
/// the daemon's own `main.rs` compiled as a binary of this package (see tests/Cargo.toml), so
/// cargo builds it, fresh, before these tests run, in `cargo test` as in `cargo xtask test`.
pub fn mosn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSN_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "MOSN_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("mosn-under-test");
    assert!(
        bin.is_file(),
        "{} does not exist: run the tests through cargo (`cargo test -p mosn-tests`), which builds it",
        bin.display()
    );
    bin
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released). Another
/// socket can take it before the daemon binds it; [`Mosn::start`] retries on that.
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A directory under the system temp dir (mode 0755), removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "mosn-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` with `contents`, mode 0644 (readable by any user).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, contents).expect("write temp file");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A listener's `fast_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    Userspace,
    Kernel,
    Auto,
}

impl FastPath {
    pub fn as_str(self) -> &'static str {
        match self {
            FastPath::Userspace => "userspace",
            FastPath::Kernel => "kernel",
            FastPath::Auto => "auto",
        }
    }
}

/// One listener `l1` (tcp_proxy to cluster `c1`) and one cluster `c1`: what a test varies.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub fast_path: FastPath,
    pub hosts: Vec<SocketAddr>,
    pub lb_type: &'static str,
    pub max_connect_attempts: u32,
    pub idle_timeout: String,
    pub connect_timeout: String,
    pub graceful_timeout: String,
}

impl ProxyConfig {
    pub fn new(fast_path: FastPath, hosts: &[SocketAddr]) -> ProxyConfig {
        ProxyConfig {
            fast_path,
            hosts: hosts.to_vec(),
            lb_type: "LB_ROUNDROBIN",
            max_connect_attempts: 3,
            idle_timeout: "30s".into(),
            connect_timeout: "1s".into(),
            graceful_timeout: "5s".into(),
        }
    }

    pub fn idle_timeout(mut self, t: &str) -> Self {
        self.idle_timeout = t.into();
        self
    }

    pub fn graceful_timeout(mut self, t: &str) -> Self {
        self.graceful_timeout = t.into();
        self
    }

    pub fn max_connect_attempts(mut self, n: u32) -> Self {
        self.max_connect_attempts = n;
        self
    }

    /// The MOSN JSON config with the listener on `listen_port` and admin on `admin_port`.
    pub fn to_json(&self, listen_port: u16, admin_port: u16) -> Value {
        let hosts: Vec<Value> = self
            .hosts
            .iter()
            .map(|h| json!({ "address": h.to_string() }))
            .collect();
        json!({
            "servers": [{
                "listeners": [{
                    "name": LISTENER,
                    "address": format!("127.0.0.1:{listen_port}"),
                    "bind_port": true,
                    "fast_path": self.fast_path.as_str(),
                    "filter_chains": [{
                        "filters": [{
                            "type": "tcp_proxy",
                            "config": {
                                "cluster": CLUSTER,
                                "idle_timeout": self.idle_timeout,
                                "max_connect_attempts": self.max_connect_attempts,
                            }
                        }]
                    }]
                }]
            }],
            "cluster_manager": {
                "clusters": [{
                    "name": CLUSTER,
                    "type": "SIMPLE",
                    "lb_type": self.lb_type,
                    "connect_timeout": self.connect_timeout,
                    "hosts": hosts,
                }]
            },
            "admin": {
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } }
            },
            "graceful_timeout": self.graceful_timeout,
        })
    }
}

/// A running `mosn start`. Killed on drop; if the test is failing, its log is printed then.
pub struct Mosn {
    child: Child,
    exited: Option<ExitStatus>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

/// Why a start attempt failed.
enum StartFailure {
    /// The process exited; its log says why.
    Exited(ExitStatus),
    TimedOut,
}

impl Mosn {
    /// Starts the daemon on `cfg` with fresh ports and waits until `/ready` says so.
    pub async fn start(cfg: &ProxyConfig) -> Mosn {
        Mosn::start_with(|listen, admin| cfg.to_json(listen, admin)).await
    }

    /// Starts the daemon on the config `make(listen_port, admin_port)` returns (its listener
    /// must bind `127.0.0.1:listen_port`, its admin `127.0.0.1:admin_port`).
    pub async fn start_with(make: impl Fn(u16, u16) -> Value) -> Mosn {
        // A port picked free can be taken (by an outgoing connection's ephemeral port) before
        // the daemon binds it; that shows as "cannot listen on" and is retried with new ports.
        let mut last_log = String::new();
        for _attempt in 0..4 {
            let (listen_port, admin_port) = (free_port(), free_port());
            if listen_port == admin_port {
                continue;
            }
            let dir = TempDir::new("daemon");
            let text = serde_json::to_string_pretty(&make(listen_port, admin_port)).unwrap();
            let config = dir.write("mosn.json", &text);
            let log = dir.path().join("mosn.log");
            let out = fs::File::create(&log).expect("create daemon log");
            let err = out.try_clone().expect("dup log fd");
            let filter =
                std::env::var("MOSN_TEST_LOG").unwrap_or_else(|_| "info,mosn=debug".into());
            let child = Command::new(mosn_bin())
                .arg("start")
                .arg("-c")
                .arg(&config)
                .env("RUST_LOG", filter)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawn mosn");
            let mut m = Mosn {
                child,
                exited: None,
                listen: SocketAddr::from(([127, 0, 0, 1], listen_port)),
                admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
                log,
                _dir: dir,
            };
            match m.wait_ready().await {
                Ok(()) => return m,
                Err(StartFailure::Exited(status)) => {
                    last_log = m.log();
                    if last_log.contains("cannot listen on") {
                        continue;
                    }
                    panic!(
                        "mosn exited during startup ({status}); config:\n{text}\nlog:\n{last_log}"
                    );
                }
                Err(StartFailure::TimedOut) => {
                    panic!(
                        "mosn not ready within {READY_TIMEOUT:?}; config:\n{text}\nlog:\n{}",
                        m.log()
                    );
                }
            }
        }
        panic!("mosn could not bind fresh ports after 4 attempts; last log:\n{last_log}");
    }

    async fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Err(StartFailure::Exited(status));
            }
            if let Ok((200, body)) = http_get(self.admin, "/ready").await
                && body.trim() == "ready"
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(StartFailure::TimedOut)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The daemon's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped
        // (we only reap in try_wait/Drop, after which no signal is sent).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Panics unless the process is alive and `/ready` answers 200.
    pub async fn assert_up(&mut self) {
        if let Some(s) = self.try_wait() {
            panic!("mosn exited unexpectedly ({s})");
        }
        let (status, body) = http_get(self.admin, "/ready").await.expect("GET /ready");
        assert_eq!((status, body.trim()), (200, "ready"), "mosn is not ready");
    }

    /// One scrape of `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        let (status, body) = http_get(self.admin, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// `name{listener="l1"}`.
    pub async fn listener_metric(&self, name: &str) -> u64 {
        self.metrics().await.value(name, &[("listener", LISTENER)])
    }

    /// `mosn_listener_errors_total{listener="l1",kind=kind}`.
    pub async fn errors(&self, kind: &str) -> u64 {
        self.metrics().await.value(
            "mosn_listener_errors_total",
            &[("listener", LISTENER), ("kind", kind)],
        )
    }

    /// `name{cluster="c1"}`.
    pub async fn cluster_metric(&self, name: &str) -> u64 {
        self.metrics().await.value(name, &[("cluster", CLUSTER)])
    }

    /// Polls `name{labels}` until `pred` holds (for values the daemon updates after the
    /// client already saw the effect, e.g. gauges dropping when a task ends). Returns the last
    /// value; panics with it after `limit`.
    pub async fn metric_until(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
        what: &str,
        pred: impl Fn(u64) -> bool,
    ) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.metrics().await.value(name, labels);
            if pred(v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("{name}{labels:?} = {v} after {limit:?}: expected {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no downstream connection is active (tasks finished their bookkeeping).
    pub async fn wait_idle(&self) {
        let l = [("listener", LISTENER)];
        self.metric_until(
            "mosn_listener_connections_active",
            &l,
            Duration::from_secs(10),
            "0",
            |v| v == 0,
        )
        .await;
    }
}

impl Drop for Mosn {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // The test failed: keep the whole log (the temp dir goes away) and print its ends.
            let log = self.log();
            let kept = std::env::temp_dir().join(format!("mosn-failed-{}.log", self.child.id()));
            let kept = match fs::write(&kept, &log) {
                Ok(()) => format!("full log: {}", kept.display()),
                Err(e) => format!("(could not keep the full log: {e})"),
            };
            let lines: Vec<&str> = log.lines().collect();
            // A verifier rejection (aya's ProgramError::LoadError) is the whole story and sits
            // anywhere in the log: shown in full, never cut to head and tail (in the VM run
            // the kept log file is gone with the VM).
            let shown = if lines.len() <= LOG_HEAD + LOG_TAIL || log.contains(VERIFIER_MARK) {
                lines.join("\n")
            } else {
                format!(
                    "{}\n[... {} lines ...]\n{}",
                    lines[..LOG_HEAD].join("\n"),
                    lines.len() - LOG_HEAD - LOG_TAIL,
                    lines[lines.len() - LOG_TAIL..].join("\n")
                )
            };
            eprintln!(
                "----- mosn log (pid {}, listener {}, admin {}; {kept}) -----\n{shown}\n----- end of mosn log -----",
                self.child.id(),
                self.listen,
                self.admin,
            );
        }
    }
}
