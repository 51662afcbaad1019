//! SOFARPC Bolt v1 for `bench/bolt_suite.py`: an echo server and a load generator that speak
//! the wire format themselves (no code shared with the proxy under test).
//!
//! * `bolt-server --listen ADDR [--size B] [--stats-listen ADDR]`: answers every Bolt request
//!   with a `SofaResponse` of B content bytes (status 0) whose first 8 bytes repeat the request
//!   content's first 8 (the client's tag), every heartbeat with a heartbeat response, and nothing
//!   to a oneway request. Per connection it decodes every complete request in the read buffer
//!   and writes all their responses with one write. `--stats-listen` serves its counters as one
//!   JSON line to whoever connects (the benchmark's origin-side request count).
//! * `bolt-load --target ADDR --connections N --duration S [--in-flight K] [--size B] [--json]`:
//!   N connections, each keeping K requests of B content bytes in flight (a new one is sent for
//!   every response), for S seconds (after `--warmup`), then waits up to `--grace` for what is
//!   still in flight. Every response must carry the id of a request outstanding on its
//!   connection, status 0 and the request's tag; anything else is counted as an error by kind.
//!
//! Wire format (big-endian), request: proto u8 1, type u8 (1 request, 2 oneway), cmdcode u16
//! (1 request, 0 heartbeat), ver2 u8 1, request id u32, codec u8 1, timeout i32 ms, classLen u16,
//! headerLen u16, contentLen u32 (22 bytes), then class, header block (`u32 len, key, u32 len,
//! value` repeated), content. Response: proto, type 0, cmdcode u16 (2 response, 0 heartbeat),
//! ver2, id u32, codec, respStatus u16, classLen, headerLen, contentLen (20 bytes), then class,
//! header block, content.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::hist::Histogram;

pub const REQ_HEADER_LEN: usize = 22;
pub const RESP_HEADER_LEN: usize = 20;
const PROTO_V1: u8 = 1;
const TYPE_RESPONSE: u8 = 0;
const TYPE_REQUEST: u8 = 1;
const TYPE_ONEWAY: u8 = 2;
const CMD_HEARTBEAT: u16 = 0;
const CMD_REQUEST: u16 = 1;
const CMD_RESPONSE: u16 = 2;
const VER2: u8 = 1;
const CODEC_HESSIAN2: u8 = 1;
pub const REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
pub const RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";
pub const SERVICE: &str = "com.alipay.test.EchoService:1.0";
pub const METHOD: &str = "echo";
/// Frames longer than this are a protocol error (the peer is not speaking Bolt v1).
const MAX_FRAME: usize = 16 << 20;
/// Leading content bytes a response repeats from its request.
const TAG_LEN: usize = 8;
const READ_CHUNK: usize = 64 * 1024;

/// One decoded frame: its head and where its parts lie in the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub typ: u8,
    pub cmd: u16,
    pub id: u32,
    /// Requests: 0 (their timeout is not kept); responses: respStatus.
    pub status: u16,
    pub class: std::ops::Range<usize>,
    pub header: std::ops::Range<usize>,
    pub content: std::ops::Range<usize>,
    /// Bytes of the whole frame.
    pub len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the frame at the start of `b`: `Ok(None)` until it is complete.
pub fn parse(b: &[u8]) -> Result<Option<Frame>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] != PROTO_V1 {
        return Err(format!("protocol byte {:#04x}, not Bolt v1", b[0]));
    }
    let typ = b[1];
    let (hlen, status, lens_at) = match typ {
        TYPE_RESPONSE => (RESP_HEADER_LEN, true, 12),
        TYPE_REQUEST | TYPE_ONEWAY => (REQ_HEADER_LEN, false, 14),
        t => return Err(format!("frame type {t}")),
    };
    if b.len() < hlen {
        return Ok(None);
    }
    let class_len = be16(b, lens_at) as usize;
    let header_len = be16(b, lens_at + 2) as usize;
    let content_len = be32(b, lens_at + 4) as usize;
    let len = hlen + class_len + header_len + content_len;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes"));
    }
    if b.len() < len {
        return Ok(None);
    }
    let c0 = hlen;
    let h0 = c0 + class_len;
    let d0 = h0 + header_len;
    Ok(Some(Frame {
        typ,
        cmd: be16(b, 2),
        id: be32(b, 5),
        status: if status { be16(b, 10) } else { 0 },
        class: c0..h0,
        header: h0..d0,
        content: d0..len,
        len,
    }))
}

fn put_header_block(out: &mut Vec<u8>, kv: &[(&str, &str)]) {
    for (k, v) in kv {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

/// Key/value pairs of a header block (`None` if it is malformed).
pub fn header_pairs(block: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let mut field = || -> Option<&[u8]> {
            let n = be32(block.get(at..at + 4)?, 0) as usize;
            let f = block.get(at + 4..at + 4 + n)?;
            at += 4 + n;
            Some(f)
        };
        let k = field()?;
        let v = field()?;
        out.push((k, v));
    }
    Some(out)
}

/// A request frame (cmdcode 1, type 1) with the benchmark's class and headers and `size`
/// content bytes; the id is patched in per send ([`set_id`]), the tag with [`set_tag`].
pub fn request_frame(id: u32, size: usize, timeout_ms: i32) -> Vec<u8> {
    let mut header = Vec::new();
    put_header_block(
        &mut header,
        &[("service", SERVICE), ("sofa_head_method_name", METHOD)],
    );
    let mut f = Vec::with_capacity(REQ_HEADER_LEN + REQUEST_CLASS.len() + header.len() + size);
    f.push(PROTO_V1);
    f.push(TYPE_REQUEST);
    f.extend_from_slice(&CMD_REQUEST.to_be_bytes());
    f.push(VER2);
    f.extend_from_slice(&id.to_be_bytes());
    f.push(CODEC_HESSIAN2);
    f.extend_from_slice(&timeout_ms.to_be_bytes());
    f.extend_from_slice(&(REQUEST_CLASS.len() as u16).to_be_bytes());
    f.extend_from_slice(&(header.len() as u16).to_be_bytes());
    f.extend_from_slice(&(size as u32).to_be_bytes());
    f.extend_from_slice(REQUEST_CLASS.as_bytes());
    f.extend_from_slice(&header);
    f.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    f
}

/// A heartbeat request (cmdcode 0, type 1, timeout -1, no class, header or content).
pub fn heartbeat_frame(id: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(REQ_HEADER_LEN);
    f.push(PROTO_V1);
    f.push(TYPE_REQUEST);
    f.extend_from_slice(&CMD_HEARTBEAT.to_be_bytes());
    f.push(VER2);
    f.extend_from_slice(&id.to_be_bytes());
    f.push(CODEC_HESSIAN2);
    f.extend_from_slice(&(-1i32).to_be_bytes());
    f.extend_from_slice(&[0; 8]);
    f
}

/// A response (cmdcode 2, or 0 for a heartbeat) with status 0; `class` and `size` content bytes.
fn response_frame(cmd: u16, id: u32, class: &str, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(RESP_HEADER_LEN + class.len() + size);
    f.push(PROTO_V1);
    f.push(TYPE_RESPONSE);
    f.extend_from_slice(&cmd.to_be_bytes());
    f.push(VER2);
    f.extend_from_slice(&id.to_be_bytes());
    f.push(CODEC_HESSIAN2);
    f.extend_from_slice(&0u16.to_be_bytes());
    f.extend_from_slice(&(class.len() as u16).to_be_bytes());
    f.extend_from_slice(&0u16.to_be_bytes());
    f.extend_from_slice(&(size as u32).to_be_bytes());
    f.extend_from_slice(class.as_bytes());
    f.extend((0..size).map(|i| b'A' + (i % 26) as u8));
    f
}

/// Patches the request id of the frame starting at `f`.
fn set_id(f: &mut [u8], id: u32) {
    f[5..9].copy_from_slice(&id.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// server

static SRV_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static SRV_REQUESTS: AtomicU64 = AtomicU64::new(0);
static SRV_ONEWAY: AtomicU64 = AtomicU64::new(0);
static SRV_HEARTBEATS: AtomicU64 = AtomicU64::new(0);
static SRV_BAD: AtomicU64 = AtomicU64::new(0);
static SRV_BAD_HEADERS: AtomicU64 = AtomicU64::new(0);

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    sock.listen(8192)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into())?)
}

pub fn server_stats() -> serde_json::Value {
    json!({
        "connections": SRV_CONNECTIONS.load(Relaxed),
        "requests": SRV_REQUESTS.load(Relaxed),
        "oneway": SRV_ONEWAY.load(Relaxed),
        "heartbeats": SRV_HEARTBEATS.load(Relaxed),
        "bad_frames": SRV_BAD.load(Relaxed),
        "requests_without_service_header": SRV_BAD_HEADERS.load(Relaxed),
    })
}

/// The Bolt echo server (runs until killed; `main` bounds it with a watchdog). Must run inside a
/// `LocalSet` (one task per connection on the current thread).
pub async fn server(listen_addr: SocketAddr, size: usize, stats: Option<SocketAddr>) -> Result<()> {
    let listener = listen(listen_addr)?;
    if let Some(sa) = stats {
        let sl = listen(sa)?;
        tokio::task::spawn_local(async move {
            loop {
                if let Ok((mut s, _)) = sl.accept().await {
                    let line = format!("{}\n", server_stats());
                    let _ = s.write_all(line.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            }
        });
    }
    eprintln!("mosn-bench bolt-server listening on {listen_addr} (response content {size} B)");
    let template: Rc<Vec<u8>> = Rc::new(response_frame(CMD_RESPONSE, 0, RESPONSE_CLASS, size));
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                SRV_CONNECTIONS.fetch_add(1, Relaxed);
                tokio::task::spawn_local(server_conn(s, template.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn server_conn(mut s: TcpStream, template: Rc<Vec<u8>>) {
    let _ = s.set_nodelay(true);
    let content_at = RESP_HEADER_LEN + RESPONSE_CLASS.len();
    let tag_room = (template.len() - content_at).min(TAG_LEN);
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut wbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut checked_headers = false;
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        match s.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut pos = 0;
        loop {
            let f = match parse(&rbuf[pos..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    SRV_BAD.fetch_add(1, Relaxed);
                    eprintln!("bolt-server: closing a connection: {e}");
                    let _ = s.write_all(&wbuf).await;
                    return;
                }
            };
            let fb = &rbuf[pos..pos + f.len];
            match (f.typ, f.cmd) {
                (TYPE_REQUEST, CMD_REQUEST) => {
                    SRV_REQUESTS.fetch_add(1, Relaxed);
                    if !checked_headers {
                        // once per connection: the routing header must have come through
                        checked_headers = true;
                        let ok = header_pairs(&fb[f.header.clone()]).is_some_and(|kv| {
                            kv.iter()
                                .any(|(k, v)| *k == b"service" && *v == SERVICE.as_bytes())
                        });
                        if !ok {
                            SRV_BAD_HEADERS.fetch_add(1, Relaxed);
                        }
                    }
                    let at = wbuf.len();
                    wbuf.extend_from_slice(&template);
                    set_id(&mut wbuf[at..], f.id);
                    let content = &fb[f.content.clone()];
                    let n = content.len().min(tag_room);
                    wbuf[at + content_at..at + content_at + n].copy_from_slice(&content[..n]);
                }
                (TYPE_ONEWAY, CMD_REQUEST) => {
                    SRV_ONEWAY.fetch_add(1, Relaxed);
                }
                (TYPE_REQUEST, CMD_HEARTBEAT) => {
                    SRV_HEARTBEATS.fetch_add(1, Relaxed);
                    wbuf.extend_from_slice(&response_frame(CMD_HEARTBEAT, f.id, "", 0));
                }
                (t, c) => {
                    SRV_BAD.fetch_add(1, Relaxed);
                    eprintln!("bolt-server: ignoring a frame of type {t}, cmdcode {c}");
                }
            }
            pos += f.len;
        }
        rbuf.drain(..pos);
        if !wbuf.is_empty() {
            if s.write_all(&wbuf).await.is_err() {
                return;
            }
            wbuf.clear();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// load generator

pub struct LoadCfg {
    pub target: SocketAddr,
    pub connections: usize,
    pub in_flight: usize,
    pub size: usize,
    pub duration: f64,
    pub warmup: f64,
    pub grace: f64,
    pub timeout_ms: i32,
    pub heartbeat: bool,
}

#[derive(Default)]
struct LoadStats {
    hist: Histogram,
    /// Status-0 responses to requests sent in the measured window.
    ok: u64,
    /// Every request sent / status-0 response received (warm-up included): what the proxy's and
    /// the server's counters are checked against.
    sent_total: u64,
    responses_total: u64,
    heartbeats_ok: u64,
    errors: BTreeMap<&'static str, u64>,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    bytes_sent: u64,
    bytes_received: u64,
}

impl LoadStats {
    fn error(&mut self, kind: &'static str, n: u64, what: impl std::fmt::Display) {
        if n == 0 {
            return;
        }
        *self.errors.entry(kind).or_default() += n;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{kind}: {what}"));
        }
    }
}

pub async fn load(cfg: LoadCfg) -> serde_json::Value {
    let stats = Rc::new(RefCell::new(LoadStats::default()));
    let start = Instant::now();
    let rec_from = start + Duration::from_secs_f64(cfg.warmup);
    let deadline = rec_from + Duration::from_secs_f64(cfg.duration);
    let hard = deadline + Duration::from_secs_f64(cfg.grace);
    let cfg = Rc::new(cfg);
    let handles = (0..cfg.connections)
        .map(|i| {
            tokio::task::spawn_local(load_conn(
                i as u32,
                cfg.clone(),
                rec_from,
                deadline,
                hard,
                stats.clone(),
            ))
        })
        .collect();
    let stuck = crate::join_all(handles, hard + Duration::from_millis(500)).await;
    let mut st = stats.borrow_mut();
    st.error(
        "stuck_tasks",
        stuck,
        "connection tasks still running after the grace time",
    );
    let errors: u64 = st.errors.values().sum();
    let rate = st.ok as f64 / cfg.duration;
    let mut out = json!({
        "mode": "bolt",
        "target": cfg.target.to_string(),
        "connections": cfg.connections,
        "in_flight": cfg.in_flight,
        "size": cfg.size,
        "duration_s": cfg.duration,
        "warmup_s": cfg.warmup,
        "requests": st.ok,
        "rate": rate,
        "rps": rate,
        "errors": errors,
        "errors_by_kind": st.errors,
        "statuses": st.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "sent_total": st.sent_total,
        "responses_total": st.responses_total,
        "heartbeats_ok": st.heartbeats_ok,
        "bytes_sent": st.bytes_sent,
        "bytes_received": st.bytes_received,
        "request_frame_bytes": request_frame(0, cfg.size, cfg.timeout_ms).len(),
        "first_error": st.first_error,
    });
    crate::merge(&mut out, crate::latency_json(&st.hist));
    out
}

/// One connection: reconnects after a failure until the deadline; every wait is bounded by
/// `hard` (requests still outstanding then count as `timeout` errors).
async fn load_conn(
    conn: u32,
    cfg: Rc<LoadCfg>,
    rec_from: Instant,
    deadline: Instant,
    hard: Instant,
    stats: Rc<RefCell<LoadStats>>,
) {
    let template = request_frame(0, cfg.size, cfg.timeout_ms);
    let content_at = template.len() - cfg.size;
    let tag_len = cfg.size.min(TAG_LEN);
    // ids count up from a per-connection base, so ids of different connections differ (a proxy
    // that mixes connections up shows as id or tag mismatches)
    let mut next_id: u32 = conn.wrapping_mul(0x0100_0000).wrapping_add(1);
    let mut wbuf: Vec<u8> = Vec::with_capacity(template.len() * cfg.in_flight);
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // (id, sent at, tag) of each request in flight, oldest first
    let mut outstanding: VecDeque<(u32, Instant, [u8; TAG_LEN])> =
        VecDeque::with_capacity(cfg.in_flight);
    let tag_of = |id: u32| -> [u8; TAG_LEN] {
        let mut t = [0u8; TAG_LEN];
        t[..4].copy_from_slice(&conn.to_be_bytes());
        t[4..].copy_from_slice(&id.to_be_bytes());
        t
    };
    'conn: while Instant::now() < deadline {
        let mut s = match tokio::time::timeout_at(hard, crate::connect(cfg.target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                stats.borrow_mut().error("connect", 1, e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                stats.borrow_mut().error("connect", 1, "timed out");
                return;
            }
        };
        rbuf.clear();
        outstanding.clear();
        if cfg.heartbeat {
            let id = next_id;
            next_id = next_id.wrapping_add(1);
            if let Err(e) = heartbeat(&mut s, id, &mut rbuf, hard).await {
                stats.borrow_mut().error("heartbeat", 1, e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue 'conn;
            }
            stats.borrow_mut().heartbeats_ok += 1;
        }
        loop {
            // top up to K requests in flight (none once the deadline has passed)
            let now = Instant::now();
            let mut sent = 0u64;
            while outstanding.len() < cfg.in_flight && now < deadline {
                let id = next_id;
                next_id = next_id.wrapping_add(1);
                let at = wbuf.len();
                wbuf.extend_from_slice(&template);
                set_id(&mut wbuf[at..], id);
                let tag = tag_of(id);
                wbuf[at + content_at..at + content_at + tag_len].copy_from_slice(&tag[..tag_len]);
                outstanding.push_back((id, now, tag));
                sent += 1;
            }
            if !wbuf.is_empty() {
                let n = wbuf.len() as u64;
                let r = tokio::time::timeout_at(hard, s.write_all(&wbuf)).await;
                wbuf.clear();
                {
                    let mut st = stats.borrow_mut();
                    st.sent_total += sent;
                    st.bytes_sent += n;
                }
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let lost = outstanding.len() as u64;
                        stats.borrow_mut().error("io", lost, format!("write: {e}"));
                        continue 'conn;
                    }
                    Err(_) => {
                        let lost = outstanding.len() as u64;
                        stats.borrow_mut().error("timeout", lost, "write timed out");
                        return;
                    }
                }
            }
            if outstanding.is_empty() {
                return; // the deadline has passed and everything sent was answered
            }
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            let r = tokio::time::timeout_at(hard, s.read_buf(&mut rbuf)).await;
            let now = Instant::now();
            match r {
                Ok(Ok(0)) => {
                    let lost = outstanding.len() as u64;
                    stats.borrow_mut().error(
                        "closed",
                        lost.max(1),
                        format!("connection closed by the peer with {lost} request(s) outstanding"),
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue 'conn;
                }
                Ok(Err(e)) => {
                    let lost = outstanding.len() as u64;
                    stats
                        .borrow_mut()
                        .error("io", lost.max(1), format!("read: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue 'conn;
                }
                Err(_) => {
                    let lost = outstanding.len() as u64;
                    stats.borrow_mut().error(
                        "timeout",
                        lost,
                        format!("{lost} request(s) unanswered after the grace time"),
                    );
                    return;
                }
                Ok(Ok(n)) => stats.borrow_mut().bytes_received += n as u64,
            }
            let mut pos = 0;
            let mut st = stats.borrow_mut();
            loop {
                let f = match parse(&rbuf[pos..]) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let lost = outstanding.len() as u64;
                        st.error("decode", lost.max(1), e);
                        drop(st);
                        continue 'conn;
                    }
                };
                let fb = &rbuf[pos..pos + f.len];
                pos += f.len;
                if f.typ != TYPE_RESPONSE || f.cmd != CMD_RESPONSE {
                    st.error(
                        "unexpected_frame",
                        1,
                        format!("type {} cmdcode {} id {}", f.typ, f.cmd, f.id),
                    );
                    continue;
                }
                let Some(i) = outstanding.iter().position(|o| o.0 == f.id) else {
                    st.error(
                        "id_mismatch",
                        1,
                        format!("response id {} matches no request in flight", f.id),
                    );
                    continue;
                };
                let (_, t0, tag) = outstanding.remove(i).expect("index from position");
                if f.status != 0 {
                    *st.statuses.entry(f.status).or_default() += 1;
                    st.error("status", 1, format!("response status {}", f.status));
                    continue;
                }
                let content = &fb[f.content.clone()];
                if content.len() < tag_len || content[..tag_len] != tag[..tag_len] {
                    st.error(
                        "content_mismatch",
                        1,
                        format!("response {} does not carry its request's tag", f.id),
                    );
                    continue;
                }
                st.responses_total += 1;
                if t0 >= rec_from {
                    st.hist.record(now.duration_since(t0).as_nanos() as u64);
                    st.ok += 1;
                }
            }
            drop(st);
            rbuf.drain(..pos);
        }
    }
}

/// Sends a heartbeat and waits for its answer (cmdcode 0, same id, status 0).
async fn heartbeat(s: &mut TcpStream, id: u32, rbuf: &mut Vec<u8>, hard: Instant) -> Result<()> {
    tokio::time::timeout_at(hard, s.write_all(&heartbeat_frame(id)))
        .await
        .context("write timed out")??;
    loop {
        if let Some(f) = parse(rbuf).map_err(anyhow::Error::msg)? {
            rbuf.drain(..f.len);
            anyhow::ensure!(
                f.typ == TYPE_RESPONSE && f.cmd == CMD_HEARTBEAT && f.id == id && f.status == 0,
                "heartbeat {id} answered by type {} cmdcode {} id {} status {}",
                f.typ,
                f.cmd,
                f.id,
                f.status
            );
            return Ok(());
        }
        rbuf.reserve(READ_CHUNK);
        let n = tokio::time::timeout_at(hard, s.read_buf(rbuf))
            .await
            .context("no heartbeat response in time")??;
        anyhow::ensure!(n > 0, "connection closed before the heartbeat response");
    }
}

/// A human-readable summary of `load`'s JSON.
pub fn describe(j: &serde_json::Value) -> String {
    format!(
        "{} conns x {} in flight, {} B: {:.0} req/s, p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, \
         {} errors {}{}",
        j["connections"],
        j["in_flight"],
        j["size"],
        j["rate"].as_f64().unwrap_or(0.0),
        j["p50_us"],
        j["p90_us"],
        j["p99_us"],
        j["p999_us"],
        j["errors"],
        j["errors_by_kind"],
        j["first_error"]
            .as_str()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let f = request_frame(0x01020304, 1024, 3000);
        assert_eq!(&f[..9], &[1, 1, 0, 1, 1, 1, 2, 3, 4]);
        let p = parse(&f).unwrap().unwrap();
        assert_eq!(p.len, f.len());
        assert_eq!((p.typ, p.cmd, p.id), (1, 1, 0x01020304));
        assert_eq!(&f[p.class.clone()], REQUEST_CLASS.as_bytes());
        assert_eq!(p.content.len(), 1024);
        let kv = header_pairs(&f[p.header.clone()]).unwrap();
        assert_eq!(kv[0], (&b"service"[..], SERVICE.as_bytes()));
        assert_eq!(kv[1], (&b"sofa_head_method_name"[..], &b"echo"[..]));
        assert_eq!(be32(&f, 10) as i32, 3000);
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn response_and_heartbeat_layout() {
        let r = response_frame(CMD_RESPONSE, 7, RESPONSE_CLASS, 1024);
        let p = parse(&r).unwrap().unwrap();
        assert_eq!((p.typ, p.cmd, p.id, p.status), (0, 2, 7, 0));
        assert_eq!(p.len, RESP_HEADER_LEN + RESPONSE_CLASS.len() + 1024);
        let h = heartbeat_frame(9);
        assert_eq!(h.len(), REQ_HEADER_LEN);
        let p = parse(&h).unwrap().unwrap();
        assert_eq!((p.typ, p.cmd, p.id), (1, 0, 9));
        assert_eq!(be32(&h, 10) as i32, -1);
        assert!(parse(&[2, 0]).is_err());
    }

    #[test]
    fn echo_through_server_and_load() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let out = local.block_on(&rt, async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            drop(l);
            tokio::task::spawn_local(server(addr, 1024, None));
            tokio::time::sleep(Duration::from_millis(100)).await;
            load(LoadCfg {
                target: addr,
                connections: 3,
                in_flight: 4,
                size: 1024,
                duration: 0.3,
                warmup: 0.0,
                grace: 2.0,
                timeout_ms: 3000,
                heartbeat: true,
            })
            .await
        });
        assert_eq!(out["errors"], 0, "{out}");
        assert!(out["requests"].as_u64().unwrap() > 10, "{out}");
        assert_eq!(out["heartbeats_ok"], 3, "{out}");
        assert_eq!(out["sent_total"], out["responses_total"], "{out}");
    }
}
