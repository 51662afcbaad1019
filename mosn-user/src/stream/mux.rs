//! The multiplexed upstream connection pool (RPC: Bolt, Dubbo; MOSN's multiplex pool): per
//! cluster, host and protocol, a few long-lived connections, each carrying many requests
//! at once.
//!
//! A caller takes a [`MuxConn`] (a request slot on the least loaded live connection, or on
//! a new one) and hands it one request frame. The connection's task gives the frame an
//! upstream request id unique on that connection, writes it (batched with whatever else is
//! queued), and routes the response carrying that id back to the caller with the caller's
//! own id restored. Many downstream connections share the upstream ones this way.
//!
//! Each connection is one task owning the socket and the table of requests in flight
//! (no lock on the data path: callers reach it through a channel). It ends when the
//! upstream closes, a frame cannot be decoded, heartbeats go unanswered, or the pools
//! shut down ([`MuxPools`] dropped, or its shutdown token cancelled); it leaves the pool at
//! once and fails its requests: [`CallError::Reset`] for those written, [`CallError::NotSent`]
//! (safe to retry) for the rest. Its `max_connections` breaker slot is held while it lives.
//!
//! Ping-pong protocols ([`PoolMode::PingPong`]) use the same machinery with one request per
//! connection, whose slot stays taken until the response arrives even if the caller gave up.

mod conn;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use self::conn::{Conn, Outgoing, Slot};
use super::PoolError;
use crate::config::ClusterConfig;
use crate::protocol::xprotocol::{PoolMode, XFrame, XProtocol};
use crate::upstream::circuit_breaker::BreakerGuard;
use crate::upstream::{Cluster, Host};

/// Default largest frame accepted from an upstream: RPC bodies are small, but a frame this
/// size is legal in both Bolt and Dubbo and must not be mistaken for garbage.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// How the connections of one cluster behave (from the cluster's config:
/// [`MuxSettings::from_cluster`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxSettings {
    /// Requests in flight per connection; when every connection to the host is full, another
    /// is opened (within the cluster's max_connections breaker). MOSN's cluster
    /// `max_request_per_conn`.
    pub max_requests_per_conn: u32,
    /// Send a heartbeat after this long without any frame received on a connection (MOSN:
    /// 15 s); None: never.
    pub heartbeat_interval: Option<Duration>,
    /// Close the connection after this many heartbeats in a row got no reply within the
    /// interval (MOSN: 6).
    pub heartbeat_max_failures: u32,
    /// Largest frame accepted from upstream.
    pub max_frame: usize,
}

impl Default for MuxSettings {
    fn default() -> MuxSettings {
        MuxSettings::from_cluster_config(
            crate::config::DEFAULT_MAX_REQUEST_PER_CONN,
            Default::default(),
        )
    }
}

impl MuxSettings {
    /// The settings a cluster's config asks for (`max_request_per_conn`, `heartbeat`).
    pub fn from_cluster(cfg: &ClusterConfig) -> MuxSettings {
        MuxSettings::from_cluster_config(cfg.max_request_per_conn, cfg.heartbeat)
    }

    fn from_cluster_config(
        max_requests_per_conn: u32,
        heartbeat: crate::config::HeartbeatConfig,
    ) -> MuxSettings {
        MuxSettings {
            max_requests_per_conn,
            heartbeat_interval: heartbeat.interval.filter(|d| !d.is_zero()),
            heartbeat_max_failures: heartbeat.max_failures,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The connection was closed before the request was written: safe to retry elsewhere.
    #[error("request not sent upstream: {0}")]
    NotSent(String),
    /// The connection broke after the request was written (the server may have it): not
    /// safe to retry.
    #[error("upstream connection broke with the request in flight: {0}")]
    Reset(String),
}

/// The outcome a connecting caller announces to the callers waiting for the same host:
/// `Ok` (look again for a connection with room) or the connect error (kind and text).
type ConnectOutcome = Option<Result<(), (std::io::ErrorKind, String)>>;

/// The connections to one host for one cluster and protocol.
#[derive(Debug, Default)]
struct HostPool {
    state: Mutex<HostState>,
}

#[derive(Debug, Default)]
struct HostState {
    live: Vec<Arc<Conn>>,
    /// Set while one caller connects; the others wait on it instead of connecting too.
    connecting: Option<watch::Receiver<ConnectOutcome>>,
}

impl HostPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a request slot on the least loaded live connection with room.
    fn take_slot(&self, max: u32) -> Option<Arc<Conn>> {
        self.lock().take_slot(max)
    }

    /// Called by a closing connection's task: later callers open a new one.
    fn remove(&self, conn: &Arc<Conn>) {
        self.lock().live.retain(|c| !Arc::ptr_eq(c, conn));
    }
}

impl HostState {
    fn take_slot(&self, max: u32) -> Option<Arc<Conn>> {
        // Slots are only taken under this lock and only given back elsewhere, so the check
        // and the increment cannot let a connection go over `max`.
        let c = self
            .live
            .iter()
            .filter(|c| !c.is_closed())
            .map(|c| (c.in_flight(), c))
            .filter(|(n, _)| *n < max)
            .min_by_key(|(n, _)| *n)?
            .1;
        c.take_slot();
        Some(Arc::clone(c))
    }
}

/// (host address, protocol name).
type HostKey = (SocketAddr, &'static str);

/// Hosts known before a new one prunes those left with nothing (an ORIGINAL_DST cluster
/// meets a new host per destination).
const PRUNE_AT: usize = 256;

/// Drops the pools nobody uses: no connection, none being made, and no handle but the map's
/// (a caller or connection task holding one keeps it). Called under the map's write lock, so
/// nobody can take a new handle meanwhile.
fn prune(hosts: &mut HashMap<HostKey, ByCluster>) {
    for list in hosts.values_mut() {
        list.retain(|(_, p)| {
            Arc::strong_count(p) > 1 || {
                let st = p.lock();
                !st.live.is_empty() || st.connecting.is_some()
            }
        });
    }
    hosts.retain(|_, list| !list.is_empty());
}
/// The pools of one [`HostKey`], by cluster name (usually one).
type ByCluster = Vec<(Box<str>, Arc<HostPool>)>;

/// Every host's multiplexed connections, keyed by (cluster, host address, protocol). One per
/// process.
#[derive(Debug)]
pub struct MuxPools {
    hosts: RwLock<HashMap<HostKey, ByCluster>>,
    next_conn_id: AtomicU64,
    /// Ends every connection task (cancelled when the pools are dropped).
    shutdown: CancellationToken,
    _cancel_on_drop: DropGuard,
}

/// Clears a host's `connecting` mark if the connecting caller gives up (its future
/// dropped), so that a waiting caller connects instead.
struct ConnectingGuard<'a> {
    pool: &'a HostPool,
    armed: bool,
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.lock().connecting = None;
        }
    }
}

/// What a caller does after looking at a host's connections.
enum Step {
    Wait(watch::Receiver<ConnectOutcome>),
    /// Connect, and tell the waiting callers how it went (if they may wait).
    Connect(Option<watch::Sender<ConnectOutcome>>, BreakerGuard),
}

impl MuxPools {
    /// Pools whose connections end when the returned value is dropped.
    pub fn new() -> Arc<MuxPools> {
        MuxPools::with_shutdown(&CancellationToken::new())
    }

    /// Pools whose connections end when `stop` is cancelled or the pools are dropped.
    pub fn with_shutdown(stop: &CancellationToken) -> Arc<MuxPools> {
        let shutdown = stop.child_token();
        Arc::new(MuxPools {
            hosts: RwLock::default(),
            next_conn_id: AtomicU64::new(1),
            _cancel_on_drop: shutdown.clone().drop_guard(),
            shutdown,
        })
    }

    /// A request slot on a connection to `host` of `cluster`: the least loaded live
    /// connection with room, else a new one (within the cluster's `max_connections`
    /// breaker: [`PoolError::Overflow`] when it is open and no connection has room).
    /// Callers that find no room while another caller connects to the host wait for that
    /// connection, and fail with its error if it fails (except on ping-pong connections,
    /// which have room for one caller only: each caller opens its own).
    pub async fn get(
        &self,
        cluster: &Cluster,
        host: &Arc<Host>,
        proto: &'static dyn XProtocol,
        settings: &MuxSettings,
    ) -> Result<MuxConn, PoolError> {
        let ping_pong = proto.pool_mode() == PoolMode::PingPong;
        let max = if ping_pong {
            1
        } else {
            settings.max_requests_per_conn.max(1)
        };
        let key = (host.address, proto.name());
        // The common case: a live connection has room (no allocation, no Arc<HostPool> clone).
        if let Some(conn) = self.with_host(&key, &cluster.name, |p| p.take_slot(max)) {
            return Ok(MuxConn::new(conn, host, ping_pong));
        }
        let pool = self.host_pool(key, &cluster.name);
        loop {
            let step = {
                let mut st = pool.lock();
                if let Some(conn) = st.take_slot(max) {
                    return Ok(MuxConn::new(conn, host, ping_pong));
                }
                match &st.connecting {
                    Some(rx) if max > 1 => Step::Wait(rx.clone()),
                    _ => {
                        // (The breaker counts its own overflows.)
                        let slot = cluster
                            .breakers
                            .try_connection()
                            .ok_or_else(|| PoolError::Overflow(cluster.name.clone()))?;
                        let announce = (max > 1).then(|| {
                            let (tx, rx) = watch::channel(None);
                            st.connecting = Some(rx);
                            tx
                        });
                        Step::Connect(announce, slot)
                    }
                }
            };
            match step {
                Step::Connect(announce, slot) => {
                    return self
                        .connect(&pool, announce, slot, cluster, host, proto, settings)
                        .await;
                }
                Step::Wait(mut rx) => {
                    // Err: the connecting caller gave up; look again (one of us connects).
                    if rx.changed().await.is_ok()
                        && let Some(Err((kind, msg))) = &*rx.borrow()
                    {
                        return Err(PoolError::Connect {
                            addr: host.address,
                            source: std::io::Error::new(*kind, msg.clone()),
                        });
                    }
                }
            }
        }
    }

    /// Opens a connection to `host`; with `announce`, for the caller that marked the host
    /// as connecting, and tells the callers waiting on it how it went.
    #[expect(
        clippy::too_many_arguments,
        reason = "the pieces of one get() call, split off to keep get() readable"
    )]
    async fn connect(
        &self,
        pool: &Arc<HostPool>,
        announce: Option<watch::Sender<ConnectOutcome>>,
        slot: BreakerGuard,
        cluster: &Cluster,
        host: &Arc<Host>,
        proto: &'static dyn XProtocol,
        settings: &MuxSettings,
    ) -> Result<MuxConn, PoolError> {
        let mut guard = ConnectingGuard {
            pool: pool.as_ref(),
            armed: announce.is_some(),
        };
        let stream = match cluster.connect_host(host.address).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(tx) = announce {
                    guard.armed = false;
                    pool.lock().connecting = None;
                    let _ = tx.send(Some(Err((e.kind(), e.to_string()))));
                }
                return Err(PoolError::Connect {
                    addr: host.address,
                    source: e,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn, rx) = Conn::new(self.next_conn_id.fetch_add(1, Ordering::Relaxed));
        // The connecting caller's own slot.
        conn.take_slot();
        conn::spawn(
            stream,
            rx,
            conn::Context {
                conn: Arc::clone(&conn),
                pool: Arc::clone(pool),
                proto,
                settings: settings.clone(),
                ping_pong: proto.pool_mode() == PoolMode::PingPong,
                cluster: cluster.name.clone(),
                addr: host.address,
                metrics: cluster.metrics.clone(),
                _breaker: slot,
                shutdown: self.shutdown.clone(),
            },
        );
        {
            let mut st = pool.lock();
            st.live.push(Arc::clone(&conn));
            if announce.is_some() {
                st.connecting = None;
            }
        }
        guard.armed = false;
        if let Some(tx) = announce {
            let _ = tx.send(Some(Ok(())));
        }
        Ok(MuxConn::new(
            conn,
            host,
            proto.pool_mode() == PoolMode::PingPong,
        ))
    }

    /// Runs `f` on the pool of (`key`, `cluster`) if it exists, under the map's read lock.
    fn with_host<T>(
        &self,
        key: &HostKey,
        cluster: &str,
        f: impl FnOnce(&Arc<HostPool>) -> Option<T>,
    ) -> Option<T> {
        let hosts = self.hosts.read().unwrap_or_else(PoisonError::into_inner);
        let (_, p) = hosts.get(key)?.iter().find(|(c, _)| &**c == cluster)?;
        f(p)
    }

    /// The pool of (`key`, `cluster`), created empty if new.
    fn host_pool(&self, key: HostKey, cluster: &str) -> Arc<HostPool> {
        if let Some(p) = self.with_host(&key, cluster, |p| Some(Arc::clone(p))) {
            return p;
        }
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        if hosts.len() >= PRUNE_AT && !hosts.contains_key(&key) {
            prune(&mut hosts);
        }
        let list = hosts.entry(key).or_default();
        if let Some((_, p)) = list.iter().find(|(c, _)| &**c == cluster) {
            return Arc::clone(p);
        }
        let p = Arc::new(HostPool::default());
        list.push((cluster.into(), Arc::clone(&p)));
        p
    }

    #[cfg(test)]
    fn live(&self, cluster: &str, addr: SocketAddr, proto: &'static str) -> Vec<Arc<Conn>> {
        self.with_host(&(addr, proto), cluster, |p| Some(p.lock().live.clone()))
            .unwrap_or_default()
    }
}

/// The handle for one request: holds its slot on one connection until dropped (for a
/// ping-pong connection, until the response arrives).
#[derive(Debug)]
pub struct MuxConn {
    conn: Arc<Conn>,
    host: Arc<Host>,
    ping_pong: bool,
    /// This handle gives the slot back when dropped (a ping-pong call hands it to the
    /// connection task instead).
    owns_slot: bool,
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        if self.owns_slot {
            self.conn.release_slot();
        }
    }
}

impl MuxConn {
    fn new(conn: Arc<Conn>, host: &Arc<Host>, ping_pong: bool) -> MuxConn {
        MuxConn {
            conn,
            host: Arc::clone(host),
            ping_pong,
            owns_slot: true,
        }
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Sends `req` (a request expecting a response; oneways go through
    /// [`MuxConn::send_oneway`]) and waits for its response, whose request id is set back to
    /// `req`'s. Dropping the future (the caller's timeout) forgets the request: its late
    /// response is discarded.
    pub async fn call(mut self, req: XFrame) -> Result<XFrame, CallError> {
        let (reply, rx) = oneshot::channel();
        let slot = self.hand_off_slot();
        self.conn
            .send(Outgoing {
                frame: req,
                reply: Some(reply),
                slot,
            })
            .await?;
        rx.await
            .unwrap_or_else(|_| Err(CallError::Reset("the connection's task ended".to_owned())))
    }

    /// Sends a oneway request (no response expected); `Ok` once queued for writing.
    pub async fn send_oneway(mut self, req: XFrame) -> Result<(), CallError> {
        let slot = self.hand_off_slot();
        self.conn
            .send(Outgoing {
                frame: req,
                reply: None,
                slot,
            })
            .await
    }

    /// For a ping-pong connection, the slot moves with the request to the connection task,
    /// which gives it back when the response arrives.
    fn hand_off_slot(&mut self) -> Option<Slot> {
        if !self.ping_pong {
            return None;
        }
        self.owns_slot = false;
        Some(Slot::new(Arc::clone(&self.conn)))
    }
}
