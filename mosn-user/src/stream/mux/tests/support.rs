//! The tests' protocol (kind: u8, request id: u32, payload length: u32, payload), test
//! servers, and a pool user with one cluster of one host.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

use super::super::*;
use crate::config::{self, Format};
use crate::metrics::Metrics;
use crate::protocol::xprotocol::{Hijack, Kind, StatusClass};
use crate::protocol::{DecodeError, Match};

pub(super) const REQUEST: u8 = 1;
pub(super) const ONEWAY: u8 = 2;
pub(super) const RESPONSE: u8 = 3;
pub(super) const HEARTBEAT: u8 = 4;
pub(super) const HEARTBEAT_REPLY: u8 = 5;
pub(super) const HEADER: usize = 9;

/// Every test ends within this, whatever goes wrong.
const LIMIT: Duration = Duration::from_secs(10);

/// The test protocol: a 9-byte header (kind, request id, payload length) and the payload.
pub(super) struct TestProto {
    name: &'static str,
    mode: PoolMode,
}

pub(super) static MUX: TestProto = TestProto {
    name: "test-mux",
    mode: PoolMode::Multiplex,
};
pub(super) static PING_PONG: TestProto = TestProto {
    name: "test-pp",
    mode: PoolMode::PingPong,
};

fn kind_of(b: u8) -> Option<Kind> {
    Some(match b {
        REQUEST => Kind::Request,
        ONEWAY => Kind::Oneway,
        RESPONSE => Kind::Response,
        HEARTBEAT => Kind::Heartbeat,
        HEARTBEAT_REPLY => Kind::HeartbeatReply,
        _ => return None,
    })
}

pub(super) fn encode(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

impl XProtocol for TestProto {
    fn name(&self) -> &'static str {
        self.name
    }

    fn matches(&self, _prefix: &[u8]) -> Match {
        Match::No
    }

    fn decode(&self, src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError> {
        if src.len() < HEADER {
            return Ok(None);
        }
        let kind = kind_of(src[0])
            .ok_or_else(|| DecodeError::malformed("test frame", format!("kind {}", src[0])))?;
        let id = u32::from_be_bytes([src[1], src[2], src[3], src[4]]);
        let len = u32::from_be_bytes([src[5], src[6], src[7], src[8]]) as usize;
        if HEADER + len > max_frame {
            return Err(DecodeError::malformed("test frame", "too long"));
        }
        if src.len() < HEADER + len {
            return Ok(None);
        }
        Ok(Some(XFrame {
            kind,
            request_id: u64::from(id),
            status: 0,
            timeout: None,
            raw: src.split_to(HEADER + len),
            headers: Vec::new(),
            service: None,
            method: None,
            headers_changed: false,
        }))
    }

    fn encode(&self, frame: &XFrame, dst: &mut BytesMut) {
        dst.extend_from_slice(&frame.raw);
    }

    fn set_request_id(&self, frame: &mut XFrame, id: u64) {
        frame.request_id = id & u64::from(u32::MAX);
        if let Some(b) = frame.raw.get_mut(1..5) {
            b.copy_from_slice(&(id as u32).to_be_bytes());
        }
    }

    fn pool_mode(&self) -> PoolMode {
        self.mode
    }

    fn heartbeat(&self, id: u64) -> BytesMut {
        encode(HEARTBEAT, id as u32, &[])[..].into()
    }

    fn heartbeat_reply(&self, req: &XFrame) -> BytesMut {
        encode(HEARTBEAT_REPLY, req.request_id as u32, &[])[..].into()
    }

    fn hijack(&self, _req: &XFrame, _why: Hijack, _message: &str) -> Option<BytesMut> {
        None
    }

    fn hijack_status(&self, _why: Hijack) -> u16 {
        1
    }

    fn codec_error_reply(&self, _src: &[u8]) -> Option<BytesMut> {
        None
    }

    fn status_class(&self, _status: u16) -> StatusClass {
        StatusClass::OK
    }
}

/// A frame as the caller hands it to the pool.
pub(super) fn frame(kind: u8, id: u32, payload: &[u8]) -> XFrame {
    let mut b = BytesMut::from(&encode(kind, id, payload)[..]);
    MUX.decode(&mut b, usize::MAX).unwrap().unwrap()
}

pub(super) fn payload(f: &XFrame) -> &[u8] {
    &f.raw[HEADER..]
}

/// One frame as the test server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    pub(super) kind: u8,
    pub(super) id: u32,
    pub(super) payload: Vec<u8>,
}

pub(super) async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<Wire> {
    let mut h = [0u8; HEADER];
    s.read_exact(&mut h).await.ok()?;
    let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some(Wire {
        kind: h[0],
        id: u32::from_be_bytes([h[1], h[2], h[3], h[4]]),
        payload,
    })
}

pub(super) async fn write_frame(s: &mut TcpStream, kind: u8, id: u32, payload: &[u8]) -> bool {
    s.write_all(&encode(kind, id, payload)).await.is_ok()
}

pub(super) type Log = Arc<Mutex<Vec<Wire>>>;

pub(super) fn logged(log: &Log) -> Vec<Wire> {
    log.lock().unwrap().clone()
}

pub(super) fn count(log: &Log, kind: u8) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|w| w.kind == kind)
        .count()
}

/// Answers requests (same id and payload) and heartbeats; logs every frame (before
/// answering it).
pub(super) async fn echo(mut s: TcpStream, log: Log) {
    while let Some(f) = read_frame(&mut s).await {
        let (kind, id) = (f.kind, f.id);
        let body = f.payload.clone();
        log.lock().unwrap().push(f);
        let ok = match kind {
            REQUEST => write_frame(&mut s, RESPONSE, id, &body).await,
            HEARTBEAT => write_frame(&mut s, HEARTBEAT_REPLY, id, &[]).await,
            _ => true,
        };
        if !ok {
            return;
        }
    }
}

/// A loopback server running `handler(stream, n)` for its n-th accepted connection.
pub(super) struct Server {
    pub(super) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    pub(super) async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let n = a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handler(s, n));
            }
        });
        Server { addr, accepted }
    }

    pub(super) async fn echo() -> (Server, Log) {
        let log = Log::default();
        let l = Arc::clone(&log);
        (
            Server::start(move |s, _| echo(s, Arc::clone(&l))).await,
            log,
        )
    }

    pub(super) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Asserts that exactly `n` connections were accepted (a connect completes before the
    /// server's accept returns, so wait for `n`, then make sure no more follow).
    pub(super) async fn assert_accepted(&self, n: usize) {
        until(|| self.accepted() >= n).await;
        sleep(Duration::from_millis(30)).await;
        assert_eq!(self.accepted(), n, "connections accepted");
    }
}

/// A pool user: the pools, a cluster of one host, and its metrics.
pub(super) struct Env {
    pub(super) pools: Arc<MuxPools>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) host: Arc<Host>,
    pub(super) settings: MuxSettings,
}

impl Env {
    pub(super) fn new(addr: SocketAddr, max_connections: u32, settings: MuxSettings) -> Env {
        let cfg = config::parse(
            &serde_json::json!({
                "cluster_manager": { "clusters": [{
                    "name": "rpc",
                    "hosts": [{ "address": addr.to_string() }],
                    "circuit_breakers": [{ "max_connections": max_connections }]
                }]}
            })
            .to_string(),
            Format::Json,
        )
        .unwrap()
        .config;
        let cluster = Arc::new(Cluster::new(&cfg.clusters[0], &Metrics::new(), None));
        let host = Arc::clone(&cluster.hosts[0]);
        Env {
            pools: MuxPools::new(),
            cluster,
            host,
            settings,
        }
    }

    pub(super) async fn get(&self) -> Result<MuxConn, PoolError> {
        self.get_with(&MUX).await
    }

    pub(super) async fn get_with(&self, proto: &'static TestProto) -> Result<MuxConn, PoolError> {
        self.pools
            .get(&self.cluster, &self.host, proto, &self.settings)
            .await
    }

    pub(super) async fn call(&self, id: u32, body: &[u8]) -> Result<XFrame, CallError> {
        self.get()
            .await
            .unwrap()
            .call(frame(REQUEST, id, body))
            .await
    }

    pub(super) fn live(&self) -> Vec<Arc<Conn>> {
        self.live_with(&MUX)
    }

    pub(super) fn live_with(&self, proto: &'static TestProto) -> Vec<Arc<Conn>> {
        self.pools.live("rpc", self.host.address, proto.name)
    }
}

pub(super) fn settings(max_requests_per_conn: u32) -> MuxSettings {
    MuxSettings {
        max_requests_per_conn,
        heartbeat_interval: None,
        heartbeat_max_failures: 6,
        max_frame: 1 << 20,
    }
}

pub(super) async fn within<T>(f: impl Future<Output = T>) -> T {
    timeout(LIMIT, f).await.expect("test timed out")
}

/// Waits until `cond` holds (bounded by the caller's `within`).
pub(super) async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn heartbeats(interval_ms: u64, max_failures: u32) -> MuxSettings {
    MuxSettings {
        heartbeat_interval: Some(Duration::from_millis(interval_ms)),
        heartbeat_max_failures: max_failures,
        ..settings(1024)
    }
}
