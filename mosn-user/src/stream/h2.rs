//! The multiplexed HTTP/2 upstream pool: per cluster and host, a few h2c connections, each
//! carrying as many streams at once as its server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! allows. A full connection makes the pool open another (within the cluster's
//! `max_connections` breaker; past it, streams queue on the least loaded connection, which
//! h2 holds until the server allows more). One task per connection drives it and sends PING
//! keepalives; a connection that stops answering PINGs, sends GOAWAY or breaks leaves the
//! pool, and its streams that the server did not process are reported as refused, so the
//! proxy may try them again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tracing::debug;

use super::PoolError;
use crate::upstream::circuit_breaker::BreakerGuard;
use crate::upstream::{Cluster, Host};

/// What every upstream HTTP/2 connection is opened with (the listener's
/// `http2_protocol_options`).
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_header_list_size: u32,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
}

/// One upstream HTTP/2 connection.
#[derive(Debug)]
struct Conn {
    send: SendRequest<Bytes>,
    /// Streams this proxy has open on it.
    active: AtomicUsize,
    /// The connection ended, went away (GOAWAY) or failed: no new streams.
    closed: AtomicBool,
    _slot: Option<BreakerGuard>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// The server's current stream limit (h2 reports it once the SETTINGS arrived).
    fn has_room(&self) -> bool {
        self.usable() && self.active.load(Ordering::Acquire) < self.send.current_max_send_streams()
    }
}

/// A stream's claim on its connection: counted until dropped.
#[derive(Debug)]
pub struct H2Stream {
    pub send: SendRequest<Bytes>,
    conn: Arc<Conn>,
    /// The connection was opened for this stream (a failure cannot be a stale connection).
    pub fresh: bool,
}

impl H2Stream {
    /// The connection cannot take new streams (the server went away): the pool drops it.
    pub fn retire(&self) {
        self.conn.closed.store(true, Ordering::Release);
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.conn.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct HostConns {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// One connect at a time per host: streams arriving together share the new connection
    /// instead of each opening one.
    connecting: tokio::sync::Mutex<()>,
}

/// Every cluster's HTTP/2 connections, by host.
#[derive(Debug, Default)]
pub struct H2Pools {
    hosts: RwLock<HashMap<(String, SocketAddr), Arc<HostConns>>>,
}

impl H2Pools {
    pub fn new() -> Arc<H2Pools> {
        Arc::new(H2Pools::default())
    }

    fn host(&self, cluster: &str, addr: SocketAddr) -> Arc<HostConns> {
        let key = (cluster.to_owned(), addr);
        if let Some(h) = self
            .hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(h);
        }
        Arc::clone(
            self.hosts
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default(),
        )
    }

    /// A stream slot on a connection to `host`: one with room, else a new connection, else
    /// (at `max_connections`) the least loaded one, where h2 queues the stream.
    pub async fn acquire(
        &self,
        cluster: &Cluster,
        host: &Arc<Host>,
        settings: &H2Settings,
    ) -> Result<H2Stream, PoolError> {
        let hc = self.host(&cluster.name, host.address);
        if let Some(s) = claim(&hc, false) {
            return Ok(s);
        }
        let _one = hc.connecting.lock().await;
        // Another stream may have opened a connection while this one waited.
        if let Some(s) = claim(&hc, false) {
            return Ok(s);
        }
        let Some(slot) = cluster.breakers.try_connection() else {
            return claim(&hc, true).ok_or_else(|| PoolError::Overflow(cluster.name.clone()));
        };
        let conn = connect(cluster, host.address, settings, slot).await?;
        conn.active.fetch_add(1, Ordering::AcqRel);
        let send = conn.send.clone();
        {
            let mut list = hc.conns.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|c| c.usable());
            list.push(Arc::clone(&conn));
        }
        Ok(H2Stream {
            send,
            conn,
            fresh: true,
        })
    }
}

/// A usable connection with room (`any`: the least loaded usable one, room or not).
fn claim(hc: &HostConns, any: bool) -> Option<H2Stream> {
    let mut list = hc.conns.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|c| c.usable());
    let conn = if any {
        list.iter()
            .min_by_key(|c| c.active.load(Ordering::Acquire))?
    } else {
        list.iter().find(|c| c.has_room())?
    };
    conn.active.fetch_add(1, Ordering::AcqRel);
    Some(H2Stream {
        send: conn.send.clone(),
        conn: Arc::clone(conn),
        fresh: false,
    })
}

/// Opens an h2c connection and spawns the task that drives it.
async fn connect(
    cluster: &Cluster,
    addr: SocketAddr,
    settings: &H2Settings,
    slot: BreakerGuard,
) -> Result<Arc<Conn>, PoolError> {
    let refused = |source| PoolError::Connect { addr, source };
    let stream = cluster.connect_host(addr).await.map_err(refused)?;
    let _ = stream.set_nodelay(true);
    let handshake = h2::client::Builder::new()
        .initial_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .max_header_list_size(settings.max_header_list_size)
        .enable_push(false)
        .handshake::<_, Bytes>(stream);
    let (send, mut connection) =
        match tokio::time::timeout(cluster.connect_timeout, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(refused(std::io::Error::other(e))),
            Err(_) => {
                return Err(refused(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                )));
            }
        };
    let conn = Arc::new(Conn {
        send,
        active: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        _slot: Some(slot),
    });
    let weak = Arc::downgrade(&conn);
    let ping = connection.ping_pong();
    let (interval, timeout) = (settings.keepalive_interval, settings.keepalive_timeout);
    let metrics = cluster.metrics.clone();
    metrics.upstream_cx_active.inc();
    tokio::spawn(async move {
        let why = drive(&mut connection, ping, interval, timeout).await;
        debug!(%addr, why, "upstream HTTP/2 connection ended");
        if let Some(c) = weak.upgrade() {
            c.closed.store(true, Ordering::Release);
        }
        metrics.upstream_cx_active.dec();
    });
    Ok(conn)
}

/// Drives `connection` until it ends; PINGs it every `interval` when set and gives up on a
/// PING unanswered for `timeout`.
async fn drive(
    connection: &mut h2::client::Connection<crate::network::Conn, Bytes>,
    ping: Option<h2::PingPong>,
    interval: Option<Duration>,
    timeout: Duration,
) -> &'static str {
    let (Some(mut ping), Some(interval)) = (ping, interval) else {
        return match connection.await {
            Ok(()) => "closed",
            Err(_) => "failed",
        };
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            r = &mut *connection => return match r { Ok(()) => "closed", Err(_) => "failed" },
            _ = tick.tick() => {
                let pong = tokio::time::timeout(timeout, ping.ping(h2::Ping::opaque()));
                tokio::select! {
                    r = &mut *connection => return match r { Ok(()) => "closed", Err(_) => "failed" },
                    r = pong => match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return "ping failed",
                        Err(_) => return "ping timed out",
                    },
                }
            }
        }
    }
}
