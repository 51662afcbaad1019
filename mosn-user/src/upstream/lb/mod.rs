//! Load balancers: each picks one host for one request (or connection) among a cluster's
//! healthy hosts. Retries call again with the hosts already tried, which are avoided while
//! another healthy host is left.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::host::Host;
use crate::config::{ClusterConfig, LbPolicy, MetadataMatch};

/// What a pick may depend on.
#[derive(Debug, Default, Clone, Copy)]
pub struct LbContext<'a> {
    /// The request's hash (the route's hash policy), for hashing balancers.
    pub hash: Option<u64>,
    /// The route's `metadata_match`, for the subset balancer.
    pub metadata_match: Option<&'a MetadataMatch>,
    /// Hosts already tried for this request (retries): avoided while another is left.
    pub tried: &'a [SocketAddr],
}

/// A load-balancing policy over a fixed host list.
pub trait LoadBalancer: Send + Sync + Debug {
    /// One healthy host, or `None` when no host is healthy.
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>>;
}

/// The balancer a cluster's config asks for, over `hosts`.
pub fn build(cfg: &ClusterConfig, hosts: &[Arc<Host>]) -> Box<dyn LoadBalancer> {
    match cfg.lb {
        LbPolicy::Random => Box::new(Random::new(hosts)),
        _ => Box::new(RoundRobin::new(hosts)),
    }
}

/// Healthy hosts not tried yet; if every healthy host was tried, every healthy host.
fn candidates<'h>(hosts: &'h [Arc<Host>], tried: &[SocketAddr]) -> Vec<&'h Arc<Host>> {
    let healthy: Vec<_> = hosts.iter().filter(|h| h.healthy()).collect();
    let fresh: Vec<_> = healthy
        .iter()
        .copied()
        .filter(|h| !tried.contains(&h.address))
        .collect();
    if fresh.is_empty() { healthy } else { fresh }
}

/// `LB_ROUNDROBIN`: successive picks take successive hosts.
#[derive(Debug)]
pub struct RoundRobin {
    hosts: Vec<Arc<Host>>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(hosts: &[Arc<Host>]) -> RoundRobin {
        RoundRobin {
            hosts: hosts.to_vec(),
            next: AtomicUsize::new(0),
        }
    }
}

impl LoadBalancer for RoundRobin {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        if ctx.tried.is_empty() && self.hosts.iter().all(|h| h.healthy()) {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            return Some(Arc::clone(&self.hosts[i]));
        }
        let c = candidates(&self.hosts, ctx.tried);
        if c.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % c.len();
        Some(Arc::clone(c[i]))
    }
}

/// `LB_RANDOM`: a uniformly random healthy host.
#[derive(Debug)]
pub struct Random {
    hosts: Vec<Arc<Host>>,
}

impl Random {
    pub fn new(hosts: &[Arc<Host>]) -> Random {
        Random {
            hosts: hosts.to_vec(),
        }
    }
}

impl LoadBalancer for Random {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let c = candidates(&self.hosts, ctx.tried);
        if c.is_empty() {
            return None;
        }
        Some(Arc::clone(c[rand::rng().random_range(0..c.len())]))
    }
}
