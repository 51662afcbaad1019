//! Load balancers. Each yields, for one downstream connection, the order in which hosts are
//! tried: the first pick, then (on connect failure) the next hosts, each host at most once.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use crate::config::LbPolicy;

/// A load balancer over a fixed host list of `n` hosts.
#[derive(Debug)]
pub enum LoadBalancer {
    /// `LB_ROUNDROBIN`: successive connections start at successive hosts; retries continue
    /// in ring order.
    RoundRobin { next: AtomicUsize },
    /// `LB_RANDOM`: a uniformly random first host; retries walk a random permutation.
    Random,
}

impl LoadBalancer {
    pub fn new(policy: LbPolicy) -> LoadBalancer {
        match policy {
            // An ORIGINAL_DST cluster has no host list to balance over; it never asks.
            LbPolicy::RoundRobin | LbPolicy::OriginalDst => LoadBalancer::RoundRobin {
                next: AtomicUsize::new(0),
            },
            LbPolicy::Random => LoadBalancer::Random,
        }
    }

    /// Host indexes to try, in order: at most `attempts` distinct hosts out of `n`.
    pub fn pick_order(&self, n: usize, attempts: usize) -> Vec<usize> {
        let k = attempts.min(n);
        if k == 0 {
            return Vec::new();
        }
        match self {
            LoadBalancer::RoundRobin { next } => {
                let start = next.fetch_add(1, Ordering::Relaxed) % n;
                (0..k).map(|i| (start + i) % n).collect()
            }
            LoadBalancer::Random => {
                // Partial Fisher-Yates: the first k of a uniform random permutation.
                let mut idx: Vec<usize> = (0..n).collect();
                let mut rng = rand::rng();
                for i in 0..k {
                    let j = rng.random_range(i..n);
                    idx.swap(i, j);
                }
                idx.truncate(k);
                idx
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_rotates_and_retries_in_ring_order() {
        let lb = LoadBalancer::new(LbPolicy::RoundRobin);
        assert_eq!(lb.pick_order(3, 3), vec![0, 1, 2]);
        assert_eq!(lb.pick_order(3, 3), vec![1, 2, 0]);
        assert_eq!(lb.pick_order(3, 2), vec![2, 0]);
        assert_eq!(lb.pick_order(3, 1), vec![0]);
        assert_eq!(
            lb.pick_order(3, 10).len(),
            3,
            "never more attempts than hosts"
        );
        assert!(lb.pick_order(0, 3).is_empty());
    }

    #[test]
    fn round_robin_is_even() {
        let lb = LoadBalancer::new(LbPolicy::RoundRobin);
        let mut hits = [0u32; 4];
        for _ in 0..4000 {
            hits[lb.pick_order(4, 1)[0]] += 1;
        }
        assert_eq!(hits, [1000; 4]);
    }

    #[test]
    fn random_is_uniform_and_distinct() {
        let lb = LoadBalancer::new(LbPolicy::Random);
        let n = 4;
        let trials = 40_000;
        let mut hits = vec![0f64; n];
        for _ in 0..trials {
            let order = lb.pick_order(n, n);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3], "each host at most once");
            hits[order[0]] += 1.0;
        }
        // Chi-square against uniform, 3 degrees of freedom: p = 0.001 at 16.27.
        let expected = trials as f64 / n as f64;
        let chi2: f64 = hits.iter().map(|h| (h - expected).powi(2) / expected).sum();
        assert!(
            chi2 < 16.27,
            "first picks not uniform: {hits:?} chi2={chi2}"
        );
    }
}
