//! What the Bolt and Dubbo test clients and servers share, written once over a [`Wire`]
//! (a frame codec): a multiplexed client connection ([`RpcConn`]: many callers at once, a
//! reader task handing each response to the caller waiting for its id), a server
//! ([`RpcServer`]: answers by per-request behaviours, records everything it saw), and the
//! daemon config of an RPC listener ([`RpcSetup`]).
//!
//! The codecs themselves are in `bolt.rs` and `dubbo.rs`, written from the protocols' specs
//! and independent of the daemon's own codecs.
//!
//! Server behaviours, read from a request's headers (Bolt) or attachments (Dubbo):
//!
//! - `x-delay-ms: N`: answer after N ms.
//! - `x-status: N`: answer with status N (an error response) instead of the echo.
//! - `x-die: 1`: close the connection without answering (in-flight requests on it die too).
//! - `x-hold: N`: hold the request until N requests with `x-hold` are held (on any connection
//!   of this server), then answer all of them, newest first.
//! - otherwise: the echo (Bolt: the content, with header `server: <name>`; Dubbo: the value
//!   `<name>|<argument>`).
//!
//! Heartbeats are answered unless [`RpcServer::answer_heartbeats`] turned that off; oneway
//! requests are recorded and never answered.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::daemon::{LISTENER, Mosn};
use crate::http::{l7_config, merge};

/// How long a client call waits for its response before giving up with `TimedOut`: longer
/// than any delay a test asks of a server, so a hang in the proxy shows as an error.
pub const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// The largest frame the test codecs accept (the tests never send more than a few MiB).
pub const TEST_MAX_FRAME: usize = 64 << 20;

/// A frame codec, for both directions of one protocol.
pub trait Wire: Send + Sync + 'static {
    type Frame: Clone + Debug + Send + Sync + 'static;

    /// Decodes the next frame from the front of `buf`, consuming its bytes. `Ok(None)`: more
    /// bytes are needed (nothing consumed). `Err`: the bytes break the protocol.
    fn decode(buf: &mut BytesMut) -> Result<Option<Self::Frame>, String>;

    fn encode(frame: &Self::Frame) -> Vec<u8>;

    /// The frame's request id.
    fn id(frame: &Self::Frame) -> u64;

    /// Whether the frame is a response (to a request or a heartbeat).
    fn is_response(frame: &Self::Frame) -> bool;
}

/// What a server makes of an incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    Request,
    Oneway,
    Heartbeat,
    /// A response or something else a server does not expect.
    Other,
}

/// The server side of a [`Wire`].
pub trait ServerWire: Wire {
    fn classify(frame: &Self::Frame) -> Incoming;

    /// The behaviour key `key` (a request header, or a Dubbo attachment).
    fn behaviour(frame: &Self::Frame, key: &str) -> Option<String>;

    /// Something wrong with a decoded request that the server answers with this status
    /// (Bolt: a CRC mismatch is a codec exception).
    fn check(frame: &Self::Frame) -> Option<u16>;

    /// The echo response of server `name` to `req`.
    fn reply(req: &Self::Frame, name: &str) -> Self::Frame;

    /// An error response with `status`.
    fn error_reply(req: &Self::Frame, status: u16, name: &str) -> Self::Frame;

    fn heartbeat_reply(req: &Self::Frame) -> Self::Frame;
}

// ---------------------------------------------------------------------------------------------
// Client

type Pending<F> = Arc<Mutex<HashMap<u64, oneshot::Sender<F>>>>;

/// One client connection carrying many requests at once. Responses are matched to callers
/// by request id; frames nobody waits for are kept ([`RpcConn::unsolicited`]).
pub struct RpcConn<W: Wire> {
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending<W::Frame>,
    unsolicited: Arc<Mutex<Vec<W::Frame>>>,
    arrivals: Arc<Mutex<Vec<u64>>>,
    closed: Arc<tokio::sync::Notify>,
    is_closed: Arc<AtomicBool>,
    decode_error: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl<W: Wire> RpcConn<W> {
    pub async fn connect(addr: SocketAddr) -> io::Result<RpcConn<W>> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect {addr}")))??;
        stream.set_nodelay(true)?;
        let (mut read, write) = stream.into_split();
        let pending: Pending<W::Frame> = Arc::default();
        let unsolicited: Arc<Mutex<Vec<W::Frame>>> = Arc::default();
        let arrivals: Arc<Mutex<Vec<u64>>> = Arc::default();
        let closed = Arc::new(tokio::sync::Notify::new());
        let is_closed = Arc::new(AtomicBool::new(false));
        let decode_error: Arc<Mutex<Option<String>>> = Arc::default();
        let reader = {
            let (pending, unsolicited) = (Arc::clone(&pending), Arc::clone(&unsolicited));
            let arrivals = Arc::clone(&arrivals);
            let (closed, is_closed) = (Arc::clone(&closed), Arc::clone(&is_closed));
            let decode_error = Arc::clone(&decode_error);
            tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(64 * 1024);
                'read: loop {
                    loop {
                        match W::decode(&mut buf) {
                            Ok(Some(f)) => {
                                arrivals.lock().unwrap().push(W::id(&f));
                                let waiter = if W::is_response(&f) {
                                    pending.lock().unwrap().remove(&W::id(&f))
                                } else {
                                    None
                                };
                                match waiter {
                                    Some(tx) => {
                                        let _ = tx.send(f);
                                    }
                                    None => unsolicited.lock().unwrap().push(f),
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                *decode_error.lock().unwrap() = Some(e);
                                break 'read;
                            }
                        }
                    }
                    match read.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                is_closed.store(true, Ordering::SeqCst);
                // Dropping the senders tells every waiting caller the connection is gone.
                pending.lock().unwrap().clear();
                closed.notify_waiters();
            })
        };
        Ok(RpcConn {
            write: tokio::sync::Mutex::new(write),
            pending,
            unsolicited,
            arrivals,
            closed,
            is_closed,
            decode_error,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// The next request id of this connection (1, 2, ...).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `req` and waits (at most [`CLIENT_WAIT`]) for the response with its id.
    pub async fn call(&self, req: &W::Frame) -> io::Result<W::Frame> {
        let id = W::id(req);
        let (tx, rx) = oneshot::channel();
        if self.is_closed() {
            return Err(closed_error());
        }
        let previous = self.pending.lock().unwrap().insert(id, tx);
        assert!(previous.is_none(), "request id {id} is already in flight");
        if let Err(e) = self.send_bytes(&W::encode(req)).await {
            self.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(CLIENT_WAIT, rx).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(_)) => Err(closed_error()),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response to request {id} within {CLIENT_WAIT:?}"),
                ))
            }
        }
    }

    /// Sends a frame that gets no response.
    pub async fn send(&self, frame: &W::Frame) -> io::Result<()> {
        self.send_bytes(&W::encode(frame)).await
    }

    /// Writes `bytes` as they are.
    pub async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let mut w = self.write.lock().await;
        tokio::time::timeout(Duration::from_secs(10), w.write_all(bytes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Frames that arrived with no caller waiting for them (e.g. a response to a oneway).
    pub fn unsolicited(&self) -> Vec<W::Frame> {
        self.unsolicited.lock().unwrap().clone()
    }

    /// The ids of every frame received, in arrival order.
    pub fn arrivals(&self) -> Vec<u64> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Whether the peer closed the connection (or it failed, or sent undecodable bytes).
    pub fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::SeqCst)
    }

    /// Why the reader stopped, if it was bytes it could not decode.
    pub fn decode_error(&self) -> Option<String> {
        self.decode_error.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the connection to close; whether it did.
    pub async fn wait_closed(&self, limit: Duration) -> bool {
        let notified = self.closed.notified();
        if self.is_closed() {
            return true;
        }
        let _ = tokio::time::timeout(limit, notified).await;
        self.is_closed()
    }
}

impl<W: Wire> Drop for RpcConn<W> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection closed before the response",
    )
}

/// Reads one frame from `stream` into `buf` (bytes after it stay in `buf`), waiting at most
/// `limit`. `Ok(None)`: the peer closed the connection first.
pub async fn read_frame<W: Wire>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
) -> io::Result<Option<W::Frame>> {
    let read = async {
        loop {
            if let Some(f) =
                W::decode(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(f));
            }
            if stream.read_buf(buf).await? == 0 {
                return Ok(None);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no frame in time"))?
}

/// Reads until the peer closes the connection (`true`) or `limit` passes (`false`).
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let drain = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, drain).await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Server

/// One frame a server received.
#[derive(Debug, Clone)]
pub struct Seen<F> {
    /// Which accepted connection (0, 1, ...).
    pub conn: usize,
    pub kind: Incoming,
    pub frame: F,
    pub at: Instant,
}

type Writer = mpsc::UnboundedSender<Vec<u8>>;

struct State<W: Wire> {
    name: String,
    seen: Mutex<Vec<Seen<W::Frame>>>,
    accepted: AtomicUsize,
    /// Connections whose peer closed them (EOF or error on read).
    closed_by_peer: AtomicUsize,
    answer_heartbeats: AtomicBool,
    heartbeats_ignored: AtomicUsize,
    /// Frames answered with a [`ServerWire::check`] status.
    rejected: AtomicUsize,
    /// Requests held by `x-hold`, with their connection.
    held: Mutex<Vec<(usize, W::Frame, Writer)>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A Bolt or Dubbo server on 127.0.0.1; stops, closing its connections, when dropped.
pub struct RpcServer<W: ServerWire> {
    pub addr: SocketAddr,
    state: Arc<State<W>>,
    accept: JoinHandle<()>,
}

impl<W: ServerWire> RpcServer<W> {
    /// Serves on 127.0.0.1:0.
    pub async fn start(name: &str) -> RpcServer<W> {
        RpcServer::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    /// Serves on `addr`.
    pub async fn start_on(addr: SocketAddr, name: &str) -> RpcServer<W> {
        let listener = TcpListener::bind(addr).await.expect("bind rpc server");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::<W> {
            name: name.to_owned(),
            seen: Mutex::default(),
            accepted: AtomicUsize::new(0),
            closed_by_peer: AtomicUsize::new(0),
            answer_heartbeats: AtomicBool::new(true),
            heartbeats_ignored: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            held: Mutex::default(),
            tasks: Mutex::default(),
        });
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let conn = st.accepted.fetch_add(1, Ordering::SeqCst);
                let (read, write) = stream.into_split();
                let (tx, rx) = mpsc::unbounded_channel();
                let writer = tokio::spawn(write_loop(write, rx));
                let reader = tokio::spawn(serve_conn(
                    Arc::clone(&st),
                    conn,
                    read,
                    tx,
                    writer.abort_handle(),
                ));
                let mut tasks = st.tasks.lock().unwrap();
                tasks.push(writer.abort_handle());
                tasks.push(reader.abort_handle());
            }
        });
        RpcServer {
            addr,
            state,
            accept,
        }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections the peer closed.
    pub fn closed_by_peer(&self) -> usize {
        self.state.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Whether heartbeats are answered (the default) or ignored from now on.
    pub fn answer_heartbeats(&self, yes: bool) {
        self.state.answer_heartbeats.store(yes, Ordering::SeqCst);
    }

    /// Heartbeats received while not answering them.
    pub fn heartbeats_ignored(&self) -> usize {
        self.state.heartbeats_ignored.load(Ordering::SeqCst)
    }

    /// Requests answered with the status [`ServerWire::check`] gave (e.g. a bad CRC).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// Every frame received, in arrival order.
    pub fn seen(&self) -> Vec<Seen<W::Frame>> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Frames of `kind` received.
    pub fn seen_kind(&self, kind: Incoming) -> Vec<W::Frame> {
        let seen = self.state.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.frame.clone())
            .collect()
    }

    /// Two-way requests received.
    pub fn requests(&self) -> Vec<W::Frame> {
        self.seen_kind(Incoming::Request)
    }

    pub fn oneways(&self) -> Vec<W::Frame> {
        self.seen_kind(Incoming::Oneway)
    }

    pub fn heartbeats(&self) -> usize {
        self.seen_kind(Incoming::Heartbeat).len()
    }

    /// Requests currently held by `x-hold`.
    pub fn held(&self) -> usize {
        self.state.held.lock().unwrap().len()
    }

    /// Polls (every 10 ms, at most `limit`) until `pred(self)` holds; panics saying `what`.
    pub async fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !pred(self) {
            assert!(
                Instant::now() < deadline,
                "server {}: {what}: not within {limit:?}",
                self.state.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl<W: ServerWire> Drop for RpcServer<W> {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn write_loop(mut write: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

async fn serve_conn<W: ServerWire>(
    st: Arc<State<W>>,
    conn: usize,
    mut read: tokio::net::tcp::OwnedReadHalf,
    tx: Writer,
    writer: AbortHandle,
) {
    serve_frames(&st, conn, &mut read, &tx, &writer).await;
    // Requests held on a connection that is gone are not answered by a later release.
    st.held.lock().unwrap().retain(|(c, _, _)| *c != conn);
}

async fn serve_frames<W: ServerWire>(
    st: &Arc<State<W>>,
    conn: usize,
    read: &mut tokio::net::tcp::OwnedReadHalf,
    tx: &Writer,
    writer: &AbortHandle,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let frame = match W::decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("rpc server {}: closing connection {conn}: {e}", st.name);
                    writer.abort();
                    return;
                }
            };
            let kind = W::classify(&frame);
            st.seen.lock().unwrap().push(Seen {
                conn,
                kind,
                frame: frame.clone(),
                at: Instant::now(),
            });
            match kind {
                Incoming::Heartbeat if st.answer_heartbeats.load(Ordering::SeqCst) => {
                    let _ = tx.send(W::encode(&W::heartbeat_reply(&frame)));
                }
                Incoming::Heartbeat => {
                    st.heartbeats_ignored.fetch_add(1, Ordering::SeqCst);
                }
                Incoming::Oneway | Incoming::Other => {}
                Incoming::Request => {
                    if W::behaviour(&frame, "x-die").is_some() {
                        // Both halves go: the write half with the writer task, the read half
                        // with this one.
                        writer.abort();
                        return;
                    }
                    answer::<W>(st, conn, frame, tx);
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(_) => {}
        }
    }
}

fn answer<W: ServerWire>(st: &Arc<State<W>>, conn: usize, req: W::Frame, tx: &Writer) {
    if let Some(status) = W::check(&req) {
        st.rejected.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(W::encode(&W::error_reply(&req, status, &st.name)));
        return;
    }
    if let Some(n) = W::behaviour(&req, "x-hold").and_then(|v| v.parse::<usize>().ok()) {
        let mut held = st.held.lock().unwrap();
        held.push((conn, req, tx.clone()));
        if held.len() >= n {
            for (_, req, tx) in held.drain(..).rev() {
                let _ = tx.send(W::encode(&W::reply(&req, &st.name)));
            }
        }
        return;
    }
    let response = match W::behaviour(&req, "x-status").and_then(|v| v.parse::<u16>().ok()) {
        Some(status) => W::error_reply(&req, status, &st.name),
        None => W::reply(&req, &st.name),
    };
    let bytes = W::encode(&response);
    match W::behaviour(&req, "x-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
        Some(ms) => {
            let tx = tx.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = tx.send(bytes);
            });
            st.tasks.lock().unwrap().push(task.abort_handle());
        }
        None => {
            let _ = tx.send(bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon config

/// Name of the router every generated RPC config has.
pub const RPC_ROUTER: &str = "rpc";

/// An RPC listener config: listener `l1` with the `proxy` filter and router `rpc`.
#[derive(Debug, Clone)]
pub struct RpcSetup {
    /// `downstream_protocol`: `"bolt"`, `"dubbo"` or `"Auto"`.
    pub protocol: String,
    /// Write MOSN's older form: `"X"` with `extend_config.sub_protocol`.
    pub x_form: bool,
    /// The routes of the one virtual host `*`.
    pub routes: Value,
    /// `cluster_manager.clusters`.
    pub clusters: Value,
    /// Extra keys of the proxy filter's config (e.g. `max_frame_size`).
    pub proxy_extra: Value,
    /// The listener's `stream_filters` (default none).
    pub stream_filters: Value,
}

impl RpcSetup {
    pub fn new(protocol: &str, routes: Value, clusters: Value) -> RpcSetup {
        RpcSetup {
            protocol: protocol.to_owned(),
            x_form: false,
            routes,
            clusters,
            proxy_extra: json!({}),
            stream_filters: json!([]),
        }
    }

    /// Every request of any service to cluster `c1` on `hosts`.
    pub fn simple(protocol: &str, hosts: &[SocketAddr]) -> RpcSetup {
        RpcSetup::new(
            protocol,
            json!([route_any_service("c1")]),
            json!([rpc_cluster("c1", hosts)]),
        )
    }

    /// Adds keys to the proxy filter's config.
    pub fn proxy(mut self, extra: Value) -> RpcSetup {
        merge(&mut self.proxy_extra, &extra);
        self
    }

    /// The listener's `stream_filters`.
    pub fn stream_filters(mut self, filters: Value) -> RpcSetup {
        self.stream_filters = filters;
        self
    }

    /// Uses MOSN's `"X"` + `extend_config.sub_protocol` form.
    pub fn x_form(mut self) -> RpcSetup {
        self.x_form = true;
        self
    }

    pub fn to_json(&self, listen_port: u16, admin_port: u16) -> Value {
        let mut proxy = if self.x_form {
            json!({
                "downstream_protocol": "X",
                "extend_config": { "sub_protocol": self.protocol },
                "router_config_name": RPC_ROUTER,
            })
        } else if self.protocol.eq_ignore_ascii_case("auto") {
            json!({ "downstream_protocol": self.protocol, "router_config_name": RPC_ROUTER })
        } else {
            json!({
                "downstream_protocol": self.protocol,
                "upstream_protocol": self.protocol,
                "router_config_name": RPC_ROUTER,
            })
        };
        merge(&mut proxy, &self.proxy_extra);
        let router = json!({
            "router_config_name": RPC_ROUTER,
            "virtual_hosts": [{ "name": "h", "domains": ["*"], "routers": self.routes }]
        });
        l7_config(
            router,
            proxy,
            &self.stream_filters,
            &self.clusters,
            listen_port,
            admin_port,
        )
    }

    pub async fn start(&self) -> Mosn {
        Mosn::start_with(|l, a| self.to_json(l, a)).await
    }
}

/// A route matching header `service` exactly.
pub fn route_service(service: &str, cluster: &str) -> Value {
    route_service_with(service, cluster, json!({}))
}

/// [`route_service`] with extra keys in the route action (`timeout`, `retry_policy`, ...).
pub fn route_service_with(service: &str, cluster: &str, action: Value) -> Value {
    let mut route = json!({ "cluster_name": cluster });
    merge(&mut route, &action);
    json!({
        "match": { "headers": [{ "name": "service", "value": service }] },
        "route": route,
    })
}

/// A route for every request with a `service` header (regex `.*`).
pub fn route_any_service(cluster: &str) -> Value {
    json!({
        "match": { "headers": [{ "name": "service", "value": ".*", "regex": true }] },
        "route": { "cluster_name": cluster },
    })
}

/// An RPC cluster as MOSN writes one: round robin, 1 s connect timeout, 1,024 requests per
/// connection, heartbeats every 15 s.
pub fn rpc_cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|h| json!({ "address": h.to_string() }))
        .collect();
    json!({
        "name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "1s",
        "max_request_per_conn": 1024,
        "heartbeat": { "interval": "15s", "max_failures": 6 },
        "hosts": hosts,
    })
}

/// `cluster` with its `heartbeat` replaced.
pub fn with_heartbeat(mut cluster: Value, interval: &str, max_failures: u32) -> Value {
    cluster["heartbeat"] = json!({ "interval": interval, "max_failures": max_failures });
    cluster
}

/// `mosn_rpc_*` labels of listener `l1`.
pub fn rpc_labels<'a>(
    protocol: &'a str,
    service: &'a str,
    method: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("listener", LISTENER),
        ("protocol", protocol),
        ("service", service),
        ("method", method),
    ]
}
