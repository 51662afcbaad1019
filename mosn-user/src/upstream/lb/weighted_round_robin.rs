//! `LB_WEIGHTED_ROUNDROBIN`: nginx's smooth weighted round robin.
//!
//! Each pick adds every eligible host's weight to its running score, takes the host with the
//! highest score and subtracts the eligible hosts' total weight from it. Over a cycle of
//! `sum(weights)` picks each host is taken exactly `weight` times, spread out rather than in
//! bursts (weights 5,1,1 give `a a b a c a a`). The scores sit behind a `Mutex` held for one
//! pass over the hosts.

use std::sync::{Arc, Mutex};

use super::{Eligible, LbContext, LoadBalancer};
use crate::upstream::host::Host;

#[derive(Debug)]
pub struct WeightedRoundRobin {
    hosts: Vec<Arc<Host>>,
    /// nginx's `current_weight`, one per host.
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new(hosts: &[Arc<Host>]) -> WeightedRoundRobin {
        WeightedRoundRobin {
            hosts: hosts.to_vec(),
            current: Mutex::new(vec![0; hosts.len()]),
        }
    }
}

impl LoadBalancer for WeightedRoundRobin {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let eligible = Eligible::new(&self.hosts, ctx.tried)?;
        // A poisoned lock only means another pick panicked mid-update; scores stay usable.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, h) in self.hosts.iter().enumerate() {
            if !eligible.ok(h) {
                continue;
            }
            let w = i64::from(h.weight.max(1));
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(Arc::clone(&self.hosts[best]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::config::LbPolicy;
    use crate::upstream::host::HealthFlag;

    #[test]
    fn exact_proportions_over_a_cycle() {
        let hosts = weighted(&[5, 1, 1, 3]);
        let lb = lb_for(LbPolicy::WeightedRoundRobin, &hosts);
        for _cycle in 0..3 {
            let hits = count(&hosts, 10, || pick(&*lb, &ctx()));
            assert_eq!(hits, vec![5, 1, 1, 3]);
        }
    }

    #[test]
    fn smooth_not_bursty() {
        let hosts = weighted(&[5, 1, 1]);
        let lb = lb_for(LbPolicy::WeightedRoundRobin, &hosts);
        let order: Vec<usize> = (0..7)
            .map(|_| index_of(&hosts, &pick(&*lb, &ctx())))
            .collect();
        assert_eq!(
            order,
            vec![0, 0, 1, 0, 2, 0, 0],
            "nginx's sequence for 5,1,1"
        );
    }

    #[test]
    fn skips_unhealthy_and_keeps_proportions_among_the_rest() {
        let hosts = weighted(&[2, 3, 1]);
        hosts[1].set_flag(HealthFlag::Ejected, true);
        let lb = lb_for(LbPolicy::WeightedRoundRobin, &hosts);
        let hits = count(&hosts, 30, || pick(&*lb, &ctx()));
        assert_eq!(hits, vec![20, 0, 10]);
        hosts[0].set_flag(HealthFlag::Ejected, true);
        hosts[2].set_flag(HealthFlag::FailedActiveCheck, true);
        assert!(lb.choose(&ctx()).is_none());
    }

    #[test]
    fn avoids_tried_hosts() {
        let hosts = weighted(&[10, 1, 1]);
        let lb = lb_for(LbPolicy::WeightedRoundRobin, &hosts);
        let tried = [hosts[0].address];
        for _ in 0..20 {
            let h = pick(&*lb, &tried_ctx(&tried));
            assert_ne!(h.address, hosts[0].address);
        }
        let all: Vec<_> = hosts.iter().map(|h| h.address).collect();
        assert!(
            lb.choose(&tried_ctx(&all)).is_some(),
            "all tried: any healthy host"
        );
    }
}
