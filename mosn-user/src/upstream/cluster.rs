//! Clusters and the cluster manager.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::circuit_breaker::CircuitBreakers;
use super::host::Host;
use super::lb::{self, LbContext, LoadBalancer};
use super::outlier::{OutlierDetector, RequestOutcome};
use crate::config::{ClusterConfig, ClusterKind, Config};
use crate::metrics::{ClusterMetrics, Metrics};
use crate::network::{Conn, sockopt};
use crate::tls::{ClientTls, TlsError, TlsStats};

/// Why no upstream connection could be made. Each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cluster {cluster}: no hosts")]
    NoHost { cluster: String },
    #[error(
        "cluster {cluster}: ORIGINAL_DST cluster, but the connection has no original destination (it was not captured or redirected, it was addressed to this proxy's own listener, or the listener lacks \"use_original_dst\")"
    )]
    NoOriginalDst { cluster: String },
    #[error(
        "cluster {cluster}: all {attempts} connect attempts failed, last to {addr}: {source} (is the upstream up?)"
    )]
    Failed {
        cluster: String,
        attempts: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl ConnectError {
    /// No upstream host could even be tried (as opposed to every attempt failing).
    pub fn no_host(&self) -> bool {
        matches!(
            self,
            ConnectError::NoHost { .. } | ConnectError::NoOriginalDst { .. }
        )
    }
}

/// One upstream cluster with its load balancer and metrics.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub kind: ClusterKind,
    /// Static hosts (empty for ORIGINAL_DST).
    pub hosts: Vec<Arc<Host>>,
    pub connect_timeout: Duration,
    /// `SO_MARK` of every upstream socket (`capture.proxy_mark` when capture is configured).
    pub mark: Option<u32>,
    /// `upstream_bind_config.source_address`.
    pub bind_source: Option<SocketAddr>,
    lb: Box<dyn LoadBalancer>,
    pub breakers: CircuitBreakers,
    pub outlier: Option<OutlierDetector>,
    /// The validated config this cluster was built from (health checks read it).
    pub config: ClusterConfig,
    pub metrics: ClusterMetrics,
    /// `tls_context`: every connection to this cluster's hosts is TLS (one identity per
    /// cluster, so pooled connections, keyed by cluster, never mix identities).
    pub tls: Option<Arc<ClientTls>>,
}

impl Cluster {
    /// `mark`: the `SO_MARK` put on every upstream socket (None: no mark, which needs no
    /// privilege).
    pub fn new(cfg: &ClusterConfig, metrics: &Metrics, mark: Option<u32>) -> Cluster {
        let hosts: Vec<Arc<Host>> = cfg.hosts.iter().map(|h| Arc::new(Host::new(h))).collect();
        Cluster {
            name: cfg.name.clone(),
            kind: cfg.kind,
            connect_timeout: cfg.connect_timeout,
            mark,
            bind_source: cfg.bind_source,
            lb: lb::build(cfg, &hosts),
            breakers: CircuitBreakers::new(&cfg.circuit_breakers)
                .with_metrics(metrics.cluster(&cfg.name)),
            outlier: cfg
                .outlier_detection
                .as_ref()
                .map(|o| OutlierDetector::new(o, &hosts).with_metrics(metrics.cluster(&cfg.name))),
            hosts,
            config: cfg.clone(),
            metrics: metrics.cluster(&cfg.name),
            tls: None,
        }
    }

    /// Originates TLS to every host with `tls`.
    pub fn with_tls(mut self, tls: Option<Arc<ClientTls>>) -> Cluster {
        self.tls = tls;
        self
    }

    /// One healthy host for a request, by the cluster's load balancer; `None`: no healthy
    /// host (counted).
    pub fn choose_host(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let h = self.lb.choose(ctx);
        if h.is_none() {
            self.metrics.no_healthy_host.inc();
        }
        h
    }

    /// Tells outlier detection how a request to `host` went.
    pub fn report(&self, host: &Arc<Host>, outcome: RequestOutcome) {
        if let Some(o) = &self.outlier {
            o.report(host, outcome);
        }
    }

    /// Connects to one host (connect timeout, mark, bind source; then the TLS handshake,
    /// bounded by the connect timeout too), counting the attempt and its failure.
    pub async fn connect_host(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        self.metrics.upstream_cx_total.inc();
        match tokio::time::timeout(self.connect_timeout, self.connect_to(addr)).await {
            Ok(Ok(s)) => match &self.tls {
                None => Ok(Conn::Tcp(s)),
                Some(tls) => {
                    let handshake = tls.connect(s, None, addr.ip());
                    match tokio::time::timeout(self.connect_timeout, handshake).await {
                        Ok(Ok(c)) => Ok(c),
                        Ok(Err(e)) => {
                            self.metrics.upstream_cx_connect_fail.inc();
                            tracing::debug!(%addr, error = %e, "upstream TLS handshake failed");
                            Err(e)
                        }
                        Err(_) => {
                            self.metrics.upstream_cx_connect_timeout.inc();
                            tracing::debug!(%addr, "upstream TLS handshake timed out");
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("TLS handshake timeout after {:?}", self.connect_timeout),
                            ))
                        }
                    }
                }
            },
            Ok(Err(e)) => {
                self.metrics.upstream_cx_connect_fail.inc();
                tracing::debug!(%addr, error = %e, "upstream connect failed");
                Err(e)
            }
            Err(_) => {
                self.metrics.upstream_cx_connect_timeout.inc();
                tracing::debug!(%addr, timeout = ?self.connect_timeout, "upstream connect timed out");
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timeout after {:?}", self.connect_timeout),
                ))
            }
        }
    }

    /// Connects upstream. A static cluster tries up to `attempts` distinct hosts in its load
    /// balancer's order (the next one on refusal or timeout); an ORIGINAL_DST cluster connects
    /// to `original_dst`, the connection's recovered original destination (once), and fails
    /// without one. Static clusters ignore `original_dst`.
    pub async fn connect(
        &self,
        attempts: usize,
        original_dst: Option<SocketAddr>,
    ) -> Result<(Conn, SocketAddr), ConnectError> {
        let original = match (self.kind, original_dst) {
            (ClusterKind::Static, _) => None,
            (ClusterKind::OriginalDst, Some(addr)) => Some(addr),
            (ClusterKind::OriginalDst, None) => {
                self.metrics.no_healthy_host.inc();
                return Err(ConnectError::NoOriginalDst {
                    cluster: self.name.clone(),
                });
            }
        };
        let attempts = if original.is_some() {
            1
        } else {
            attempts.max(1)
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last = None;
        while tried.len() < attempts {
            let (addr, host) = match original {
                Some(addr) => (addr, None),
                None => {
                    let ctx = LbContext {
                        tried: &tried,
                        ..LbContext::default()
                    };
                    match self.lb.choose(&ctx) {
                        // Every healthy host tried: stop, each host at most once.
                        Some(h) if tried.contains(&h.address) => break,
                        Some(h) => (h.address, Some(h)),
                        None => break,
                    }
                }
            };
            tried.push(addr);
            match self.connect_host(addr).await {
                Ok(s) => return Ok((s, addr)),
                Err(e) => {
                    if let Some(h) = &host {
                        self.report(h, RequestOutcome::ConnectFailure);
                    }
                    last = Some((addr, e));
                }
            }
        }
        self.metrics.no_healthy_host.inc();
        match last {
            Some((addr, source)) => Err(ConnectError::Failed {
                cluster: self.name.clone(),
                attempts: tried.len(),
                addr,
                source,
            }),
            None => Err(ConnectError::NoHost {
                cluster: self.name.clone(),
            }),
        }
    }

    /// One connect: a socket with the cluster's mark and bind source, then connect.
    async fn connect_to(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        // A source of the other address family cannot be bound (an IPv4 passthrough source
        // for an IPv6 destination): such connections go out unbound. The mark still keeps
        // them out of the capture.
        let bind = self.bind_source.filter(|b| b.is_ipv4() == addr.is_ipv4());
        if bind.is_none() && self.bind_source.is_some() {
            tracing::debug!(%addr, source = ?self.bind_source, "bind source of another address family; not binding");
        }
        sockopt::upstream_socket(addr, self.mark, bind)?
            .connect(addr)
            .await
    }
}

/// All clusters by name.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: HashMap<String, Arc<Cluster>>,
}

impl ClusterManager {
    /// With `cfg.capture`, every upstream socket is marked with `capture.proxy_mark`.
    /// Clusters with a `tls_context` originate TLS; their handshakes count in `tls_stats`.
    pub fn with_tls(
        cfg: &Config,
        metrics: &Metrics,
        tls_stats: &Arc<TlsStats>,
    ) -> Result<ClusterManager, TlsError> {
        let mark = cfg.capture.as_ref().map(|c| c.proxy_mark);
        let mut clusters = HashMap::new();
        for c in &cfg.clusters {
            let tls = match &c.tls {
                Some(ctx) => Some(ClientTls::new(&c.name, ctx, Arc::clone(tls_stats))?),
                None => None,
            };
            let cluster = Cluster::new(c, metrics, mark).with_tls(tls);
            clusters.insert(c.name.clone(), Arc::new(cluster));
        }
        Ok(ClusterManager { clusters })
    }

    /// [`ClusterManager::with_tls`] for configs whose TLS files are known good (tests,
    /// fuzzing): panics on a TLS error.
    pub fn new(cfg: &Config, metrics: &Metrics) -> ClusterManager {
        Self::with_tls(cfg, metrics, &TlsStats::new()).expect("cluster TLS contexts load")
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// Starts every cluster's active health checks, until `stop` is cancelled.
    pub fn start_health_checks(&self, stop: &tokio_util::sync::CancellationToken) {
        for c in self.clusters.values() {
            super::health::spawn(c, stop.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{self, Format};
    use crate::network::sockopt;
    use crate::network::test_util::{origin, require_root};

    fn manager(config: &Config) -> (ClusterManager, Arc<Metrics>) {
        let metrics = Metrics::new();
        (ClusterManager::new(config, &metrics), metrics)
    }

    fn parse(v: serde_json::Value) -> Config {
        config::parse(&v.to_string(), Format::Json).unwrap().config
    }

    #[tokio::test]
    async fn original_dst_cluster_connects_to_the_original_destination() {
        let o = origin("o").await;
        let (m, metrics) = manager(&parse(serde_json::json!({
            "cluster_manager": { "clusters": [
                { "name": "pass", "type": "ORIGINAL_DST" },
                { "name": "static", "hosts": [{ "address": o.to_string() }] }
            ]}
        })));
        let pass = m.get("pass").unwrap();
        let (up, addr) = pass.connect(3, Some(o)).await.unwrap();
        assert_eq!((addr, up.tcp().peer_addr().unwrap()), (o, o));
        assert_eq!(sockopt::mark(&up).unwrap(), 0, "no capture config: no mark");

        let err = pass.connect(3, None).await.unwrap_err();
        assert!(err.no_host());
        assert!(
            err.to_string().starts_with(
                "cluster pass: ORIGINAL_DST cluster, but the connection has no original destination"
            ),
            "{err}"
        );
        let cm = metrics.cluster("pass");
        assert_eq!(
            (cm.upstream_cx_total.get(), cm.no_healthy_host.get()),
            (1, 1)
        );

        // A static cluster ignores the original destination.
        let (_, addr) = m
            .get("static")
            .unwrap()
            .connect(1, Some("127.0.0.1:1".parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(addr, o);
    }

    #[tokio::test]
    async fn capture_marks_every_upstream_socket() {
        if !require_root("capture_marks_every_upstream_socket") {
            return;
        }
        let o = origin("o").await;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/capture-sidecar.json");
        let config = config::load(&path).unwrap().config;
        let mark = config.capture.as_ref().unwrap().proxy_mark;
        let (m, _) = manager(&config);
        for name in ["PassthroughCluster", "InboundPassthroughCluster"] {
            let (up, _) = m.get(name).unwrap().connect(1, Some(o)).await.unwrap();
            assert_eq!(sockopt::mark(&up).unwrap(), mark, "{name}");
        }
        let (up, _) = m
            .get("InboundPassthroughCluster")
            .unwrap()
            .connect(1, Some(o))
            .await
            .unwrap();
        assert_eq!(
            up.tcp().local_addr().unwrap().ip(),
            "127.0.0.6".parse::<std::net::IpAddr>().unwrap(),
            "upstream_bind_config source"
        );
    }
}
