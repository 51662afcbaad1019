//! The `tcp_proxy` network filter: route a downstream connection to a cluster, connect
//! upstream (with retries on other hosts) and move the bytes, in userspace or in the kernel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span, warn};

use super::copy::{BiCopy, ByteCounters, CopyEnd};
use super::copy_tls;
use super::data_path::DataPath;
use super::spliced::{self, Baseline, SplicedEnd};
use crate::config::{TcpProxyConfig, TcpRoute};
use crate::ebpf::{SpliceError, SpliceRefused, Splicer};
use crate::metrics::{ErrorKind, ListenerMetrics};
use crate::network::{Conn, ConnectionFuture, ConnectionHandler, Destination};
use crate::upstream::{Cluster, ClusterManager};

/// One listener's tcp_proxy filter, built once from config; `handle` runs per connection.
pub struct TcpProxy {
    pub listener: String,
    default_cluster: Option<Arc<Cluster>>,
    routes: Vec<(TcpRoute, Arc<Cluster>)>,
    idle_timeout: Option<Duration>,
    max_connect_attempts: usize,
    data_path: DataPath,
    metrics: ListenerMetrics,
}

impl TcpProxy {
    /// `cfg` has been validated: every cluster it names exists in `clusters`.
    pub fn new(
        listener: &str,
        cfg: &TcpProxyConfig,
        clusters: &ClusterManager,
        data_path: DataPath,
        metrics: ListenerMetrics,
    ) -> TcpProxy {
        let cluster = |name: &str| {
            Arc::clone(
                clusters
                    .get(name)
                    .expect("validated config references known clusters"),
            )
        };
        TcpProxy {
            listener: listener.to_string(),
            default_cluster: cfg.cluster.as_deref().map(cluster),
            routes: cfg
                .routes
                .iter()
                .map(|r| (r.clone(), cluster(&r.cluster)))
                .collect(),
            idle_timeout: cfg.idle_timeout,
            max_connect_attempts: cfg.max_connect_attempts.max(1) as usize,
            data_path,
            metrics,
        }
    }

    pub fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    fn route(&self, src: SocketAddr, dst: SocketAddr) -> Option<&Arc<Cluster>> {
        let port_in = |ranges: &[(u16, u16)], p: u16| {
            ranges.is_empty() || ranges.iter().any(|&(lo, hi)| lo <= p && p <= hi)
        };
        let addr_in = |cidrs: &[crate::config::Cidr], ip| {
            cidrs.is_empty() || cidrs.iter().any(|c| c.contains(ip))
        };
        self.routes
            .iter()
            .find(|(r, _)| {
                addr_in(&r.source_addresses, src.ip())
                    && addr_in(&r.destination_addresses, dst.ip())
                    && port_in(&r.source_ports, src.port())
                    && port_in(&r.destination_ports, dst.port())
            })
            .map(|(_, c)| c)
            .or(self.default_cluster.as_ref())
    }

    /// Proxies one accepted connection to the end. `dst`: where it was going (the local
    /// address, or the original destination of a captured connection).
    pub async fn handle(self: Arc<Self>, down: Conn, peer: SocketAddr, dst: Destination) {
        let span = info_span!("conn", listener = %self.listener, %peer, original_dst = tracing::field::Empty);
        if let Some(o) = dst.original {
            span.record("original_dst", tracing::field::display(o));
        }
        async move {
            let m = &self.metrics;
            m.connections_total.inc();
            m.connections_active.inc();
            self.proxy(down, peer, dst).await;
            m.connections_active.dec();
        }
        .instrument(span)
        .await
    }

    async fn proxy(&self, down: Conn, peer: SocketAddr, dst: Destination) {
        let m = &self.metrics;
        let Some(cluster) = self.route(peer, dst.addr) else {
            debug!("no tcp_proxy route matches; closing");
            m.errors.inc(ErrorKind::Other);
            return;
        };
        let connected = cluster
            .connect(self.max_connect_attempts, dst.original)
            .await;
        let (up, upstream) = match connected {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "closing downstream: no upstream connection");
                m.errors.inc(if e.no_host() {
                    ErrorKind::NoHealthyHost
                } else {
                    ErrorKind::UpstreamConnect
                });
                return;
            }
        };
        let cm = &cluster.metrics;
        cm.upstream_cx_active.inc();
        // Decremented on every exit path.
        let _active = scopeguard::guard((), |()| {
            cm.upstream_cx_active.dec();
        });
        debug!(%upstream, cluster = %cluster.name, path = self.data_path.name(), "upstream connected");
        // Small request/response exchanges must not wait for Nagle on either hop.
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let c = Counters { l: m, c: cm };
        match (down, up) {
            (Conn::Tcp(mut down), Conn::Tcp(mut up)) => self.plain(&mut down, &mut up, &c).await,
            (mut down, mut up) => {
                // TLS on either side: the bytes pass through rustls, in userspace.
                m.userspace_copied_total.inc();
                let (d2u, u2d) = c.directions();
                let end = copy_tls::run(&mut down, &mut up, self.idle_timeout, d2u, u2d).await;
                match end {
                    CopyEnd::Failed { downstream, error } => {
                        debug!(%error, downstream, "connection failed");
                        self.count_failure(downstream);
                    }
                    CopyEnd::IdleTimeout => {
                        debug!("idle timeout");
                        m.errors.inc(ErrorKind::IdleTimeout);
                    }
                    CopyEnd::Done | CopyEnd::HandOff => debug!("connection closed"),
                }
            }
        }
    }

    /// Both sides plain TCP: the listener's data path (userspace copy, kernel splice, auto).
    async fn plain(&self, down: &mut TcpStream, up: &mut TcpStream, c: &Counters<'_>) {
        let m = &self.metrics;
        match &self.data_path {
            DataPath::Userspace => {
                m.userspace_copied_total.inc();
                self.copy(down, up, c).await
            }
            DataPath::Kernel(s) => {
                self.splice_or_copy(s, down, up, (0, 0), false, c)
                    .await
            }
            DataPath::Auto(s, rule) => {
                // Held for the whole connection, spliced or not.
                let _open = rule.open_connection();
                let mut slot = None;
                let mut bi = BiCopy::new();
                m.userspace_copied_total.inc();
                let (d2u, u2d) = c.directions();
                let end = bi
                    .run(
                        down,
                        up,
                        self.idle_timeout,
                        d2u,
                        u2d,
                        &mut |a, b| {
                            // Ask for a slot only once the traffic qualifies; keep it if granted.
                            if slot.is_none()
                                && rule.is_request_response(a, b)
                                && rule.latency_bound()
                            {
                                slot = rule.try_take_slot();
                            }
                            slot.is_some()
                        },
                    )
                    .await;
                match end {
                    CopyEnd::HandOff => {
                        let (d2u, u2d) = bi.stats();
                        let copied = (d2u.bytes, u2d.bytes);
                        self.splice_or_copy(s, down, up, copied, true, c)
                            .await;
                    }
                    other => self.finish_copy(other, &mut bi, down, up).await,
                }
            }
        }
    }

    /// Splices the connection in the kernel; copies in userspace if that cannot be set up.
    /// `copied` = bytes userspace already moved (down->up, up->down), with empty buffers;
    /// `counted` = the connection is already counted as copied in userspace (an `auto`
    /// hand-off), so a fallback copy is not counted again.
    async fn splice_or_copy(
        &self,
        splicer: &Arc<Splicer>,
        down: &mut TcpStream,
        up: &mut TcpStream,
        copied: (u64, u64),
        counted: bool,
        c: &Counters<'_>,
    ) {
        let m = &self.metrics;
        // The baseline must be taken before the sockets enter the SOCKHASH.
        let spliced = match Baseline::capture(down, up, copied.0, copied.1) {
            Ok(baseline) => splicer.splice(&*down, &*up).map(|g| (baseline, g)),
            Err(e) => Err(SpliceRefused {
                error: Box::new(e.into()),
                kept: None,
            }),
        };
        let (baseline, guard) = match spliced {
            Ok(x) => x,
            Err(SpliceRefused { error, kept }) => {
                if matches!(*error, SpliceError::Closing) {
                    debug!("connection already closing; copying in userspace");
                } else {
                    warn!(error = %error, "kernel splice failed for this connection; copying in userspace");
                    m.errors.inc(ErrorKind::SpliceSetup);
                }
                if !counted {
                    m.userspace_copied_total.inc();
                }
                // A socket the kernel kept (diverted) leaves the SOCKHASH only after the copy.
                let _kept = kept;
                return self.copy(down, up, c).await;
            }
        };
        m.kernel_spliced_total.inc();
        let (d2u, u2d) = c.directions();
        let end = spliced::supervise(down, up, self.idle_timeout, baseline, d2u, u2d, &guard).await;
        match end {
            Ok(SplicedEnd::Done { diverted }) => debug!(diverted, "spliced connection closed"),
            Ok(SplicedEnd::IdleTimeout) => {
                debug!("idle timeout");
                m.errors.inc(ErrorKind::IdleTimeout);
            }
            Ok(SplicedEnd::Reset { downstream }) => self.count_failure(downstream),
            Ok(SplicedEnd::Stalled {
                downstream_to_upstream,
                missing,
            }) => {
                warn!(
                    downstream_to_upstream,
                    missing, "spliced bytes stopped moving; closing"
                );
                m.errors.inc(ErrorKind::Other);
            }
            Err(e) => {
                debug!(error = %e, "spliced connection failed");
                m.errors.inc(ErrorKind::Other);
            }
        }
        // Unpair before the sockets close.
        drop(guard);
    }

    /// Copies the connection in userspace; the caller has counted it.
    async fn copy(&self, down: &mut TcpStream, up: &mut TcpStream, c: &Counters<'_>) {
        let (d2u, u2d) = c.directions();
        let mut bi = BiCopy::new();
        let end = bi
            .run(down, up, self.idle_timeout, d2u, u2d, &mut |_, _| false)
            .await;
        self.finish_copy(end, &mut bi, down, up).await;
    }

    async fn finish_copy(
        &self,
        end: CopyEnd,
        bi: &mut BiCopy,
        down: &mut TcpStream,
        up: &mut TcpStream,
    ) {
        match end {
            CopyEnd::Done | CopyEnd::HandOff => debug!("connection closed"),
            CopyEnd::IdleTimeout => {
                debug!("idle timeout");
                self.metrics.errors.inc(ErrorKind::IdleTimeout);
            }
            CopyEnd::Failed { downstream, error } => {
                debug!(%error, downstream, "connection failed; flushing, then resetting the other side");
                self.count_failure(downstream);
                // The other side gets what was in flight, then the reset.
                let other = if downstream { up } else { down };
                bi.flush_and_reset(downstream, other, self.idle_timeout)
                    .await;
            }
        }
    }

    /// One side failed or was reset.
    fn count_failure(&self, downstream: bool) {
        let kind = if downstream {
            ErrorKind::DownstreamReset
        } else {
            ErrorKind::UpstreamReset
        };
        self.metrics.errors.inc(kind);
    }
}

impl ConnectionHandler for TcpProxy {
    fn listener(&self) -> &str {
        &self.listener
    }

    fn handle(
        self: Arc<Self>,
        stream: Conn,
        peer: SocketAddr,
        dst: Destination,
    ) -> ConnectionFuture {
        Box::pin(TcpProxy::handle(self, stream, peer, dst))
    }
}

/// The byte counters of one connection: its listener's and its cluster's.
struct Counters<'a> {
    l: &'a ListenerMetrics,
    c: &'a crate::metrics::ClusterMetrics,
}

impl Counters<'_> {
    /// (downstream -> upstream, upstream -> downstream).
    fn directions(&self) -> (ByteCounters<'_>, ByteCounters<'_>) {
        (
            ByteCounters {
                read_side: &self.l.bytes_received,
                write_side: &self.c.upstream_bytes_sent,
            },
            ByteCounters {
                read_side: &self.c.upstream_bytes_received,
                write_side: &self.l.bytes_sent,
            },
        )
    }
}
