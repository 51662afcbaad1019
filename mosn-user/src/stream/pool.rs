//! The ping-pong upstream connection pool (HTTP/1.1): per cluster, per host, a list of idle
//! keep-alive connections. A request takes an idle connection or opens a new one (within the
//! cluster's `max_connections` circuit breaker; beyond it the request waits as pending,
//! within `max_pending_requests`), and gives it back when its response is complete.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::network::Conn;
use crate::protocol::http1::ResponseDecoder;
use crate::upstream::circuit_breaker::BreakerGuard;
use crate::upstream::{Cluster, Host};

/// Idle connections kept per host; more are closed when released.
pub const MAX_IDLE_PER_HOST: usize = 256;
/// An idle connection older than this is closed instead of reused: servers close idle
/// keep-alive connections after a while (nginx: 75 s, Go: 90 s), and reusing one just as it
/// closes fails the request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Read buffer of an upstream connection.
const READ_BUFFER: usize = 16 * 1024;

/// Why no upstream connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {0}: circuit breaker open (max_connections and max_pending_requests reached)")]
    Overflow(String),
    #[error("timed out waiting for a connection to {0}")]
    Timeout(SocketAddr),
}

/// One upstream connection, owned by one request at a time.
#[derive(Debug)]
pub struct UpstreamConn {
    pub stream: Conn,
    /// Received bytes not decoded yet.
    pub buf: BytesMut,
    pub decoder: ResponseDecoder,
    pub host: Arc<Host>,
    /// Taken from the idle list (it has carried a request before).
    pub reused: bool,
    idle_since: Instant,
    /// The cluster's `max_connections` slot, released when the connection closes.
    _slot: Option<BreakerGuard>,
    pool: Arc<ClusterPool>,
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        // A connection closing frees a max_connections slot: wake one pending request.
        self.pool.released.notify_one();
    }
}

/// The idle connections of one cluster.
#[derive(Debug, Default)]
struct ClusterPool {
    idle: Mutex<HashMap<SocketAddr, Vec<UpstreamConn>>>,
    released: Notify,
}

/// Every cluster's pool.
#[derive(Debug, Default)]
pub struct Pools {
    clusters: RwLock<HashMap<String, Arc<ClusterPool>>>,
}

impl Pools {
    pub fn new() -> Arc<Pools> {
        Arc::new(Pools::default())
    }

    fn cluster(&self, name: &str) -> Arc<ClusterPool> {
        if let Some(p) = self
            .clusters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Arc::clone(p);
        }
        Arc::clone(
            self.clusters
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        )
    }

    /// A connection to `host` of `cluster`: an idle one if any is alive, else a new one.
    /// `deadline`: how long a pending request may wait for a free connection slot.
    pub async fn acquire(
        &self,
        cluster: &Cluster,
        host: &Arc<Host>,
        deadline: Option<Instant>,
        max_header_bytes: usize,
    ) -> Result<UpstreamConn, PoolError> {
        let pool = self.cluster(&cluster.name);
        let mut pending = None;
        loop {
            if let Some(c) = take_idle(&pool, host.address) {
                return Ok(c);
            }
            if let Some(slot) = cluster.breakers.try_connection() {
                let stream = cluster.connect_host(host.address).await.map_err(|source| {
                    PoolError::Connect {
                        addr: host.address,
                        source,
                    }
                })?;
                let _ = stream.set_nodelay(true);
                return Ok(UpstreamConn {
                    stream,
                    buf: BytesMut::with_capacity(READ_BUFFER),
                    decoder: ResponseDecoder::new(max_header_bytes),
                    host: Arc::clone(host),
                    reused: false,
                    idle_since: Instant::now(),
                    _slot: Some(slot),
                    pool: Arc::clone(&pool),
                });
            }
            // (The breakers count their own overflows.)
            if pending.is_none() {
                pending = Some(
                    cluster
                        .breakers
                        .try_pending()
                        .ok_or_else(|| PoolError::Overflow(cluster.name.clone()))?,
                );
            }
            let wait = pool.released.notified();
            match deadline {
                Some(d) => tokio::time::timeout_at(d, wait)
                    .await
                    .map_err(|_| PoolError::Timeout(host.address))?,
                None => wait.await,
            }
        }
    }

    /// Gives a connection whose last response was complete and keep-alive back to its host's
    /// idle list.
    pub fn release(&self, mut conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            // Bytes after a complete response: the connection is out of step.
            return;
        }
        conn.reused = true;
        conn.idle_since = Instant::now();
        let pool = Arc::clone(&conn.pool);
        {
            let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let list = idle.entry(conn.host.address).or_default();
            if list.len() >= MAX_IDLE_PER_HOST {
                return;
            }
            list.push(conn);
        }
        pool.released.notify_one();
    }
}

/// The most recently used idle connection to `addr` that is still usable.
fn take_idle(pool: &ClusterPool, addr: SocketAddr) -> Option<UpstreamConn> {
    loop {
        let c = {
            let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.get_mut(&addr)?.pop()?
        };
        if c.idle_since.elapsed() < IDLE_TIMEOUT && quiet(&c.stream) {
            return Some(c);
        }
        // Stale: the server closed it (EOF) or sent something unasked for.
    }
}

/// Whether an idle connection has nothing to read (no data, no EOF): see [`Conn::quiet`].
fn quiet(stream: &Conn) -> bool {
    stream.quiet()
}
