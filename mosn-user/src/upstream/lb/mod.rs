//! Load balancers: each picks one host for one request (or connection) among a cluster's
//! healthy hosts. Retries call again with the hosts already tried, which are avoided while
//! another healthy host is left.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::host::Host;
use crate::config::{ClusterConfig, LbPolicy, MetadataMatch, SubsetConfig};

mod least_request;
mod maglev;
mod ring_hash;
mod subset;
mod weighted_round_robin;

pub use least_request::{DEFAULT_CHOICE_COUNT, LeastRequest};
pub use maglev::{DEFAULT_TABLE_SIZE, Maglev};
pub use ring_hash::{DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, RingHash};
pub use subset::SubsetLb;
pub use weighted_round_robin::WeightedRoundRobin;

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

/// The balancer a cluster's config asks for, over `hosts`: its `lb_type`, inside the subset
/// balancer when it has an `lb_subset_config`.
pub fn build(cfg: &ClusterConfig, hosts: &[Arc<Host>]) -> Box<dyn LoadBalancer> {
    build_with(cfg.lb, cfg.lb_subset.as_ref(), hosts)
}

/// [`build`] from the two settings it reads.
pub fn build_with(
    policy: LbPolicy,
    subset: Option<&SubsetConfig>,
    hosts: &[Arc<Host>],
) -> Box<dyn LoadBalancer> {
    match subset {
        Some(s) => Box::new(SubsetLb::new(policy, s, hosts)),
        None => build_policy(policy, hosts),
    }
}

/// One policy over `hosts`, without subsets. `LB_ORIGINAL_DST` clusters never ask their
/// balancer (they connect to each connection's original destination); they get round robin
/// over their (empty) host list.
pub fn build_policy(policy: LbPolicy, hosts: &[Arc<Host>]) -> Box<dyn LoadBalancer> {
    match policy {
        LbPolicy::RoundRobin | LbPolicy::OriginalDst => Box::new(RoundRobin::new(hosts)),
        LbPolicy::Random => Box::new(Random::new(hosts)),
        LbPolicy::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(hosts)),
        LbPolicy::LeastRequest => Box::new(LeastRequest::new(hosts, DEFAULT_CHOICE_COUNT)),
        LbPolicy::Maglev => Box::new(Maglev::new(hosts, DEFAULT_TABLE_SIZE)),
        LbPolicy::RingHash => Box::new(RingHash::new(
            hosts,
            DEFAULT_MIN_RING_SIZE,
            DEFAULT_MAX_RING_SIZE,
        )),
    }
}

/// Which hosts a pick may return: healthy ones, minus those already tried unless every
/// healthy host was tried (then any healthy host: a retry may go back to one).
#[derive(Debug, Clone, Copy)]
struct Eligible<'a> {
    tried: &'a [SocketAddr],
    skip_tried: bool,
}

impl<'a> Eligible<'a> {
    /// `None` when no host is healthy.
    fn new(hosts: &[Arc<Host>], tried: &'a [SocketAddr]) -> Option<Eligible<'a>> {
        let mut any_healthy = false;
        for h in hosts.iter().filter(|h| h.healthy()) {
            any_healthy = true;
            if !tried.contains(&h.address) {
                return Some(Eligible {
                    tried,
                    skip_tried: true,
                });
            }
        }
        any_healthy.then_some(Eligible {
            tried,
            skip_tried: false,
        })
    }

    fn ok(&self, h: &Host) -> bool {
        h.healthy() && !(self.skip_tried && self.tried.contains(&h.address))
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
        // A retry continues in ring order after the host tried last, without moving the
        // rotation (so the next request still starts where it should); a first try takes
        // the next slot of the rotation.
        let Some(last) = ctx.tried.last() else {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if self.hosts.iter().all(|h| h.healthy()) {
                return Some(Arc::clone(&self.hosts[i % n]));
            }
            let healthy: Vec<_> = self.hosts.iter().filter(|h| h.healthy()).collect();
            return (!healthy.is_empty()).then(|| Arc::clone(healthy[i % healthy.len()]));
        };
        let start = self
            .hosts
            .iter()
            .position(|h| h.address == *last)
            .map_or(0, |i| i + 1);
        let ring = (0..n).map(|k| &self.hosts[(start + k) % n]);
        let mut fallback = None;
        for h in ring {
            if !h.healthy() {
                continue;
            }
            if !ctx.tried.contains(&h.address) {
                return Some(Arc::clone(h));
            }
            fallback.get_or_insert(h);
        }
        // Every healthy host was tried: any healthy host again.
        fallback.map(Arc::clone)
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

#[cfg(test)]
pub(super) mod tests {
    //! Helpers for the policies' tests, and tests of the shared pieces.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Format, HostConfig, Metadata, parse};
    use crate::upstream::host::HealthFlag;

    /// Chi-square critical values at p = 0.001 by degrees of freedom.
    pub const CHI2_P001_DF1: f64 = 10.83;
    pub const CHI2_P001_DF2: f64 = 13.82;
    pub const CHI2_P001_DF3: f64 = 16.27;
    pub const CHI2_P001_DF4: f64 = 18.47;

    pub fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080))
    }

    pub fn host(i: usize, weight: u32, metadata: &[(&str, &str)]) -> Arc<Host> {
        Arc::new(Host::new(&HostConfig {
            address: addr(i),
            weight,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Metadata>(),
        }))
    }

    pub fn weighted(weights: &[u32]) -> Vec<Arc<Host>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| host(i, w, &[]))
            .collect()
    }

    /// A cluster's config as the config file gives it (so `lb_type` names are checked too).
    pub fn cluster_config(lb_type: &str, subset: Option<serde_json::Value>) -> ClusterConfig {
        let mut c = serde_json::json!({
            "name": "c",
            "lb_type": lb_type,
            "hosts": [{ "address": "127.0.0.1:8080" }],
        });
        if let Some(s) = subset {
            c["lb_subset_config"] = s;
        }
        let v = serde_json::json!({ "cluster_manager": { "clusters": [c] } });
        let loaded = parse(&v.to_string(), Format::Json).expect("valid cluster config");
        loaded.config.clusters.into_iter().next().unwrap()
    }

    /// [`build`] for `policy` over `hosts`.
    pub fn lb_for(policy: LbPolicy, hosts: &[Arc<Host>]) -> Box<dyn LoadBalancer> {
        let cfg = cluster_config(policy.name(), None);
        assert_eq!(cfg.lb, policy);
        build(&cfg, hosts)
    }

    pub fn ctx() -> LbContext<'static> {
        LbContext::default()
    }

    pub fn hash_ctx(hash: u64) -> LbContext<'static> {
        LbContext {
            hash: Some(hash),
            ..LbContext::default()
        }
    }

    pub fn tried_ctx(tried: &[SocketAddr]) -> LbContext<'_> {
        LbContext {
            tried,
            ..LbContext::default()
        }
    }

    pub fn pick(lb: &dyn LoadBalancer, ctx: &LbContext<'_>) -> Arc<Host> {
        lb.choose(ctx).expect("a host")
    }

    pub fn index_of(hosts: &[Arc<Host>], h: &Host) -> usize {
        hosts
            .iter()
            .position(|x| x.address == h.address)
            .expect("one of the hosts")
    }

    /// How often each of `hosts` is picked in `n` calls of `pick`.
    pub fn count(hosts: &[Arc<Host>], n: usize, mut pick: impl FnMut() -> Arc<Host>) -> Vec<u64> {
        let mut hits = vec![0u64; hosts.len()];
        for _ in 0..n {
            hits[index_of(hosts, &pick())] += 1;
        }
        hits
    }

    pub fn chi_square(hits: &[u64], expected: &[f64]) -> f64 {
        assert_eq!(hits.len(), expected.len());
        hits.iter()
            .zip(expected)
            .map(|(&h, &e)| (h as f64 - e).powi(2) / e)
            .sum()
    }

    #[test]
    fn round_robin_rotates_over_healthy_hosts() {
        let hosts = weighted(&[1, 1, 1]);
        let lb = lb_for(LbPolicy::RoundRobin, &hosts);
        assert_eq!(count(&hosts, 300, || pick(&*lb, &ctx())), vec![100; 3]);
        hosts[1].set_flag(HealthFlag::Ejected, true);
        assert_eq!(count(&hosts, 300, || pick(&*lb, &ctx())), vec![150, 0, 150]);
    }

    #[test]
    fn random_is_uniform_and_skips_tried() {
        let hosts = weighted(&[1, 1, 1, 1]);
        let lb = lb_for(LbPolicy::Random, &hosts);
        let trials = 40_000;
        let hits = count(&hosts, trials, || pick(&*lb, &ctx()));
        let chi2 = chi_square(&hits, &[trials as f64 / 4.0; 4]);
        assert!(chi2 < CHI2_P001_DF3, "hits {hits:?} chi2 {chi2}");
        let tried = [hosts[0].address, hosts[2].address];
        let hits = count(&hosts, 1000, || pick(&*lb, &tried_ctx(&tried)));
        assert_eq!((hits[0], hits[2]), (0, 0));
    }

    #[test]
    fn every_policy_returns_none_without_healthy_hosts() {
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::WeightedRoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Maglev,
            LbPolicy::RingHash,
        ] {
            let lb = build_policy(policy, &[]);
            assert!(
                lb.choose(&hash_ctx(1)).is_none(),
                "{policy:?} with no hosts"
            );
            let hosts = weighted(&[1, 2]);
            let lb = lb_for(policy, &hosts);
            let tried = [hosts[0].address];
            for _ in 0..50 {
                let mut c = hash_ctx(rand::random());
                c.tried = &tried;
                assert_eq!(pick(&*lb, &c).address, hosts[1].address, "{policy:?}");
            }
            hosts[1].set_flag(HealthFlag::FailedActiveCheck, true);
            for _ in 0..10 {
                let mut c = hash_ctx(rand::random());
                c.tried = &tried;
                assert_eq!(
                    pick(&*lb, &c).address,
                    hosts[0].address,
                    "{policy:?}: every healthy host tried, so a tried one"
                );
            }
            hosts[0].set_flag(HealthFlag::Ejected, true);
            assert!(lb.choose(&hash_ctx(7)).is_none(), "{policy:?}");
            assert!(lb.choose(&ctx()).is_none(), "{policy:?}");
        }
    }
}
