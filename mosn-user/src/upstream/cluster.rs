//! Clusters and the cluster manager.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::lb::LoadBalancer;
use crate::config::{ClusterConfig, Config};
use crate::metrics::{ClusterMetrics, Metrics};

/// Why no upstream connection could be made. Each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cluster {cluster}: no hosts")]
    NoHost { cluster: String },
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

/// One upstream cluster with its load balancer and metrics.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub hosts: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    lb: LoadBalancer,
    pub metrics: ClusterMetrics,
}

impl Cluster {
    pub fn new(cfg: &ClusterConfig, metrics: &Metrics) -> Cluster {
        Cluster {
            name: cfg.name.clone(),
            hosts: cfg.hosts.iter().map(|h| h.address).collect(),
            connect_timeout: cfg.connect_timeout,
            lb: LoadBalancer::new(cfg.lb),
            metrics: metrics.cluster(&cfg.name),
        }
    }

    /// Connects to a host chosen by the load balancer, trying up to `attempts` distinct
    /// hosts (the next one on refusal or timeout).
    pub async fn connect(&self, attempts: usize) -> Result<(TcpStream, SocketAddr), ConnectError> {
        let order = self.lb.pick_order(self.hosts.len(), attempts.max(1));
        let mut last = None;
        for &i in &order {
            let addr = self.hosts[i];
            self.metrics.upstream_cx_total.inc();
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok((s, addr)),
                Ok(Err(e)) => {
                    self.metrics.upstream_cx_connect_fail.inc();
                    tracing::debug!(%addr, error = %e, "upstream connect failed");
                    last = Some((addr, e));
                }
                Err(_) => {
                    self.metrics.upstream_cx_connect_timeout.inc();
                    tracing::debug!(%addr, timeout = ?self.connect_timeout, "upstream connect timed out");
                    last = Some((
                        addr,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("connect timeout after {:?}", self.connect_timeout),
                        ),
                    ));
                }
            }
        }
        self.metrics.no_healthy_host.inc();
        match last {
            Some((addr, source)) => Err(ConnectError::Failed {
                cluster: self.name.clone(),
                attempts: order.len(),
                addr,
                source,
            }),
            None => Err(ConnectError::NoHost {
                cluster: self.name.clone(),
            }),
        }
    }
}

/// All clusters by name.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: HashMap<String, Arc<Cluster>>,
}

impl ClusterManager {
    pub fn new(cfg: &Config, metrics: &Metrics) -> ClusterManager {
        ClusterManager {
            clusters: cfg
                .clusters
                .iter()
                .map(|c| (c.name.clone(), Arc::new(Cluster::new(c, metrics))))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }
}
