//! One multiplexed upstream connection: the task that owns its socket and its requests in
//! flight, and the handle the pool and the callers share.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{CallError, HostPool, MuxSettings};
use crate::metrics::ClusterMetrics;
use crate::network::Conn as Socket;
use crate::protocol::DecodeError;
use crate::protocol::xprotocol::{Kind, XFrame, XProtocol};
use crate::upstream::circuit_breaker::BreakerGuard;

/// Requests queued towards one connection's task before callers wait (each caller already
/// holds a slot, so this bounds oneway floods, not normal traffic).
const QUEUE: usize = 1024;
/// Requests taken from the queue per wakeup, encoded into one write.
const BATCH: usize = 128;
/// Read buffer size (grown by the codec for larger frames).
const READ_BUFFER: usize = 64 * 1024;
/// Read again only with at least this much room; else grow the buffer first.
const MIN_READ_ROOM: usize = 4 * 1024;
/// Queued requests are encoded into the output until it holds this much, then written
/// (and while the upstream does not read, the rest wait in the queue).
const WRITE_BATCH: usize = 64 * 1024;
/// Far enough to never fire (the timer of a connection without heartbeats).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A request handed to a connection's task.
pub(super) struct Outgoing {
    pub(super) frame: XFrame,
    /// Where the response goes; `None` for a oneway request.
    pub(super) reply: Option<oneshot::Sender<Result<XFrame, CallError>>>,
    /// A ping-pong connection's slot, given back when the response arrives.
    pub(super) slot: Option<Slot>,
}

/// What the pool and the callers share of one connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u64,
    tx: mpsc::Sender<Outgoing>,
    /// Request slots taken ([`super::MuxConn`]s alive, plus ping-pong requests awaiting
    /// their response).
    in_flight: AtomicU32,
    /// The task is ending: no more slots are handed out.
    closed: AtomicBool,
}

impl Conn {
    pub(super) fn new(id: u64) -> (Arc<Conn>, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let conn = Conn {
            id,
            tx,
            in_flight: AtomicU32::new(0),
            closed: AtomicBool::new(false),
        };
        (Arc::new(conn), rx)
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn take_slot(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues `out` for the connection's task; `NotSent` if the task has ended.
    pub(super) async fn send(&self, out: Outgoing) -> Result<(), CallError> {
        self.tx
            .send(out)
            .await
            .map_err(|_| CallError::NotSent("the upstream connection closed".to_owned()))
    }
}

/// A request slot held by the connection task (ping-pong), given back when dropped.
pub(super) struct Slot(Arc<Conn>);

impl Slot {
    pub(super) fn new(conn: Arc<Conn>) -> Slot {
        Slot(conn)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release_slot();
    }
}

/// Everything a connection's task needs besides its socket and queue.
pub(super) struct Context {
    pub(super) conn: Arc<Conn>,
    pub(super) pool: Arc<HostPool>,
    pub(super) proto: &'static dyn XProtocol,
    pub(super) settings: MuxSettings,
    pub(super) ping_pong: bool,
    pub(super) cluster: String,
    pub(super) addr: SocketAddr,
    pub(super) metrics: ClusterMetrics,
    /// The cluster's `max_connections` slot, held while the connection lives.
    pub(super) _breaker: BreakerGuard,
    pub(super) shutdown: CancellationToken,
}

/// Starts the task of a connected socket.
pub(super) fn spawn(stream: Socket, rx: mpsc::Receiver<Outgoing>, cx: Context) {
    let span = tracing::debug_span!(
        "mux",
        cluster = %cx.cluster,
        upstream = %cx.addr,
        protocol = cx.proto.name(),
        conn = cx.conn.id,
    );
    cx.metrics.upstream_cx_active.inc();
    let task = Task {
        next_id: 0,
        pending: HashMap::default(),
        sweep_at: sweep_floor(&cx.settings),
        rbuf: BytesMut::with_capacity(READ_BUFFER),
        wbuf: BytesMut::new(),
        written: 0,
        last_rx: Instant::now(),
        hb_outstanding: false,
        hb_failures: 0,
        rx,
        cx,
    };
    tokio::spawn(task.run(stream).instrument(span));
}

/// Pending entries above which those whose caller gave up are swept out.
fn sweep_floor(settings: &MuxSettings) -> usize {
    (settings.max_requests_per_conn as usize)
        .saturating_mul(2)
        .max(64)
}

/// A request written (or being written) and awaiting its response.
struct Pending {
    /// The caller's request id, put back into the response.
    original_id: u64,
    reply: oneshot::Sender<Result<XFrame, CallError>>,
    /// Where the request's bytes start in the connection's output: written already when
    /// below [`Task::written`].
    start: u64,
    _slot: Option<Slot>,
}

/// Hashes the connection's own sequential u32 ids (no need for a DoS-resistant hash).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Fibonacci hashing: sequential ids spread over the whole range, top bits included.
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Why a connection ended.
enum Close {
    Eof,
    Read(std::io::Error),
    Write(std::io::Error),
    Decode(DecodeError),
    Heartbeat(u32),
    /// A ping-pong request whose caller gave up: the connection is out of step.
    Abandoned,
    Shutdown,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::Eof => f.write_str("the upstream closed the connection"),
            Close::Read(e) => write!(f, "read from the upstream: {e}"),
            Close::Write(e) => write!(f, "write to the upstream: {e}"),
            Close::Decode(e) => write!(f, "undecodable frame from the upstream: {e}"),
            Close::Heartbeat(n) => write!(f, "{n} heartbeats in a row got no reply"),
            Close::Abandoned => f.write_str("a request on this ping-pong connection was abandoned"),
            Close::Shutdown => f.write_str("the proxy is shutting down"),
        }
    }
}

/// The state of one connection's task.
struct Task {
    /// The last upstream request id given out.
    next_id: u32,
    pending: HashMap<u32, Pending, BuildHasherDefault<IdHasher>>,
    /// Sweep entries of callers that gave up when `pending` reaches this size.
    sweep_at: usize,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes written to the socket so far.
    written: u64,
    /// When a frame last arrived (or the connection opened).
    last_rx: Instant,
    /// A heartbeat was sent and nothing arrived since.
    hb_outstanding: bool,
    /// Heartbeat intervals in a row that ended with nothing received.
    hb_failures: u32,
    rx: mpsc::Receiver<Outgoing>,
    cx: Context,
}

impl Task {
    async fn run(mut self, mut stream: Socket) {
        let shutdown = self.cx.shutdown.clone();
        let why = self.serve(&mut stream, &shutdown).await;
        self.close(why);
    }

    /// Moves requests out and responses in until the connection ends.
    async fn serve(&mut self, stream: &mut Socket, shutdown: &CancellationToken) -> Close {
        let (mut r, mut w) = stream.split();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let interval = self.cx.settings.heartbeat_interval;
        let timer = tokio::time::sleep(interval.unwrap_or(NEVER));
        tokio::pin!(timer);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < MIN_READ_ROOM {
                self.rbuf.reserve(READ_BUFFER);
            }
            tokio::select! {
                biased;
                () = &mut cancelled => return Close::Shutdown,
                res = r.read_buf(&mut self.rbuf) => match res {
                    Ok(0) => return Close::Eof,
                    Ok(n) => {
                        self.cx.metrics.upstream_bytes_received.inc_by(n as u64);
                        if let Err(e) = self.on_read() {
                            return Close::Decode(e);
                        }
                    }
                    Err(e) => return Close::Read(e),
                },
                n = self.rx.recv_many(&mut batch, BATCH), if self.wbuf.len() < WRITE_BATCH => {
                    if n == 0 {
                        // Every sender is gone: nobody can use this connection any more.
                        return Close::Shutdown;
                    }
                    for out in batch.drain(..) {
                        self.enqueue(out);
                    }
                },
                res = w.write(&self.wbuf), if !self.wbuf.is_empty() => match res {
                    Ok(0) => return Close::Write(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.wbuf.advance(n);
                        self.written += n as u64;
                        self.cx.metrics.upstream_bytes_sent.inc_by(n as u64);
                    }
                    Err(e) => return Close::Write(e),
                },
                () = &mut timer, if interval.is_some() => {
                    if let Some(why) = self.on_timer(timer.as_mut()) {
                        return why;
                    }
                },
            }
        }
    }

    /// The next upstream request id not held by a pending request.
    fn next_id(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if !self.pending.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    /// Gives a request its upstream id and appends it to the output.
    fn enqueue(&mut self, out: Outgoing) {
        let Outgoing {
            mut frame,
            reply,
            slot,
        } = out;
        if reply.as_ref().is_some_and(|r| r.is_closed()) {
            // The caller gave up before it was written: do not send it at all.
            return;
        }
        let id = self.next_id();
        let original_id = frame.request_id;
        self.cx.proto.set_request_id(&mut frame, u64::from(id));
        let start = self.written + self.wbuf.len() as u64;
        self.cx.proto.encode(&frame, &mut self.wbuf);
        if let Some(reply) = reply {
            if self.pending.len() >= self.sweep_at {
                self.sweep();
            }
            self.pending.insert(
                id,
                Pending {
                    original_id,
                    reply,
                    start,
                    _slot: slot,
                },
            );
        }
    }

    /// Forgets the requests whose caller gave up (their responses would be dropped anyway).
    fn sweep(&mut self) {
        self.pending.retain(|_, p| !p.reply.is_closed());
        self.sweep_at = (self.pending.len() * 2).max(sweep_floor(&self.cx.settings));
    }

    /// Decodes and dispatches every complete frame received.
    fn on_read(&mut self) -> Result<(), DecodeError> {
        let mut any = false;
        while let Some(frame) = self
            .cx
            .proto
            .decode(&mut self.rbuf, self.cx.settings.max_frame)?
        {
            any = true;
            self.dispatch(frame);
        }
        if any {
            self.hb_outstanding = false;
            self.hb_failures = 0;
            if self.cx.settings.heartbeat_interval.is_some() {
                self.last_rx = Instant::now();
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, mut frame: XFrame) {
        match frame.kind {
            Kind::Response => {
                let entry = u32::try_from(frame.request_id)
                    .ok()
                    .and_then(|id| self.pending.remove(&id))
                    .or_else(|| self.only_pending());
                match entry {
                    Some(p) => {
                        self.cx.proto.set_request_id(&mut frame, p.original_id);
                        // A caller that gave up dropped its receiver: the response goes too.
                        let _ = p.reply.send(Ok(frame));
                    }
                    None => {
                        tracing::debug!(
                            id = frame.request_id,
                            "response to no pending request; dropped"
                        );
                    }
                }
            }
            Kind::HeartbeatReply => {}
            Kind::Heartbeat => {
                let reply = self.cx.proto.heartbeat_reply(&frame);
                self.wbuf.extend_from_slice(&reply);
            }
            Kind::Request | Kind::Oneway => {
                tracing::debug!(id = frame.request_id, kind = ?frame.kind, "request from the upstream; dropped");
            }
        }
    }

    /// On a ping-pong connection, the one request in flight (whatever id its response
    /// carries: such protocols need not echo ids).
    fn only_pending(&mut self) -> Option<Pending> {
        if !self.cx.ping_pong || self.pending.len() != 1 {
            return None;
        }
        let id = *self.pending.keys().next()?;
        self.pending.remove(&id)
    }

    /// The heartbeat timer fired: send a heartbeat if the connection was idle for the
    /// interval, count an unanswered one, or wait for the rest of the interval.
    fn on_timer(&mut self, timer: Pin<&mut Sleep>) -> Option<Close> {
        let interval = self.cx.settings.heartbeat_interval?;
        let now = Instant::now();
        if self.cx.ping_pong {
            if self.pending.values().any(|p| p.reply.is_closed()) {
                return Some(Close::Abandoned);
            }
        } else if !self.pending.is_empty() {
            self.sweep();
        }
        if self.hb_outstanding {
            self.hb_failures += 1;
            if self.hb_failures >= self.cx.settings.heartbeat_max_failures.max(1) {
                return Some(Close::Heartbeat(self.hb_failures));
            }
        } else if now.duration_since(self.last_rx) < interval {
            timer.reset(self.last_rx + interval);
            return None;
        }
        // A ping-pong protocol cannot interleave a heartbeat with a request in flight.
        if !self.cx.ping_pong || self.pending.is_empty() {
            let id = self.next_id();
            let hb = self.cx.proto.heartbeat(u64::from(id));
            self.wbuf.extend_from_slice(&hb);
            self.hb_outstanding = true;
            tracing::trace!(id, "heartbeat sent");
        }
        timer.reset(now + interval);
        None
    }

    /// Takes the connection out of the pool and fails every request on it.
    fn close(mut self, why: Close) {
        self.cx.conn.closed.store(true, Ordering::Release);
        self.cx.pool.remove(&self.cx.conn);
        let msg = format!("{}: {why}", self.cx.addr);
        self.rx.close();
        while let Ok(out) = self.rx.try_recv() {
            if let Some(reply) = out.reply {
                let _ = reply.send(Err(CallError::NotSent(msg.clone())));
            }
        }
        let pending = self.pending.len();
        for (_, p) in self.pending.drain() {
            let err = if p.start >= self.written {
                CallError::NotSent(msg.clone())
            } else {
                CallError::Reset(msg.clone())
            };
            let _ = p.reply.send(Err(err));
        }
        self.cx.metrics.upstream_cx_active.dec();
        match why {
            Close::Eof | Close::Shutdown => {
                tracing::debug!(pending, "upstream connection closed: {why}");
            }
            _ => tracing::warn!(pending, "upstream connection closed: {why}"),
        }
    }
}
