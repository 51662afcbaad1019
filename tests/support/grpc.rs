//! The gRPC test peer (`grpc_peer.py`, on Debian's python3-grpcio) as a server process and as
//! a client run per call, for the gRPC tests. The Python side has no generated code: generic
//! handlers and raw-bytes messages (see the script's doc).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The interpreter apt's python3-grpcio installs into (`cargo xtask setup` installs it).
pub const PYTHON: &str = "/usr/bin/python3";

/// The service every method of the peer is under by default.
pub const SERVICE: &str = "mosn.test.Peer";

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/grpc_peer.py")
}

/// A running gRPC server; killed on drop.
pub struct GrpcServer {
    pub addr: SocketAddr,
    events: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl GrpcServer {
    /// Starts `grpc_peer.py server --port 0` and waits (10 s at most) for its `READY <port>`.
    pub async fn start() -> GrpcServer {
        let mut child = Command::new(PYTHON)
            .arg(script())
            .args(["server", "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the gRPC peer (is python3-grpcio installed? cargo xtask setup)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("gRPC peer: READY within 10 s")
            .expect("read the gRPC peer's stdout")
            .unwrap_or_default();
        let port: u16 = first
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("gRPC peer did not start: {first:?}"));
        let events: Arc<Mutex<Vec<String>>> = Arc::default();
        let ev = Arc::clone(&events);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                ev.lock().unwrap().push(line);
            }
        });
        GrpcServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            events,
            _child: child,
        }
    }

    /// Lines the server printed after READY (`CALL <method>`, `CANCELLED <method>`).
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// How many `CALL <method>` lines name `method` (e.g. `/mosn.test.Peer/Unary`).
    pub fn calls(&self, method: &str) -> usize {
        let want = format!("CALL {method}");
        self.events().iter().filter(|l| **l == want).count()
    }

    /// Waits until the server printed `line`; panics after `limit`.
    pub async fn wait_event(&self, line: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.events().iter().any(|l| l == line) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gRPC server: no {line:?} within {limit:?}; events: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `grpc_peer.py client --target <target> --call <call> <args>` (60 s at most) and returns
/// one JSON object per call it made.
pub async fn grpc_client(target: SocketAddr, call: &str, args: &[&str]) -> Vec<Value> {
    let run = Command::new(PYTHON)
        .arg(script())
        .args(["client", "--target", &target.to_string(), "--call", call])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("gRPC client {call} {args:?}: not done within 60 s"))
        .expect("run the gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success() && !results.is_empty(),
        "gRPC client {call} {args:?} failed ({}): stdout {stdout} stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

/// [`grpc_client`] for a single call.
pub async fn grpc_call(target: SocketAddr, call: &str, args: &[&str]) -> Value {
    let mut r = grpc_client(target, call, args).await;
    assert_eq!(r.len(), 1, "one call, one result: {r:?}");
    r.remove(0)
}

/// A result's string field (empty if absent).
pub fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A result's status code name (`"OK"`, `"UNAVAILABLE"` ...).
pub fn code(v: &Value) -> &str {
    field(v, "code")
}
