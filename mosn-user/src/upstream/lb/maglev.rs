//! `LB_MAGLEV`: Google's Maglev consistent hashing, as Envoy builds it.
//!
//! At build time each host gets a permutation of the table's slots (`offset` and `skip` from
//! xxh64 of its `ip:port` with seeds 0 and 1); hosts then take turns claiming their next free
//! slot until the table is full. A host of weight `w` takes a turn only every
//! `max_weight / w` rounds (Envoy's weighted variant), so it owns about `w / sum(weights)` of
//! the slots. A request's hash picks a slot: the same hash gives the same host.
//!
//! Health: Envoy rebuilds the table when a host's health changes. This table is built once;
//! instead a pick whose slot holds an unhealthy (or already tried) host probes the following
//! slots to the first eligible host. Keys of healthy hosts therefore never move, and those of
//! an unhealthy host spread over the others in table order (the table is a pseudo-random
//! interleaving, so roughly evenly).

use std::sync::Arc;

use rand::Rng;
use xxhash_rust::xxh64::xxh64;

use super::{Eligible, LbContext, LoadBalancer};
use crate::upstream::host::Host;

/// Envoy's default table size: prime (every `skip` then visits every slot), and large
/// enough (M >> hosts * 100) that each host's share is within about 1% of its weight.
pub const DEFAULT_TABLE_SIZE: usize = 65537;

#[derive(Debug)]
pub struct Maglev {
    hosts: Vec<Arc<Host>>,
    /// Slot -> index into `hosts`; empty when there are no hosts.
    table: Vec<u32>,
}

impl Maglev {
    /// `table_size` should be prime and well above the number of hosts.
    pub fn new(hosts: &[Arc<Host>], table_size: usize) -> Maglev {
        Maglev {
            hosts: hosts.to_vec(),
            table: build_table(hosts, table_size),
        }
    }
}

fn build_table(hosts: &[Arc<Host>], size: usize) -> Vec<u32> {
    if hosts.is_empty() || size == 0 {
        return Vec::new();
    }
    let m = size as u64;
    struct Entry {
        offset: u64,
        skip: u64,
        weight: u64,
        next: u64,
        target: u64,
    }
    let mut entries: Vec<Entry> = hosts
        .iter()
        .map(|h| {
            let key = h.address.to_string();
            Entry {
                offset: xxh64(key.as_bytes(), 0) % m,
                skip: if m > 1 {
                    xxh64(key.as_bytes(), 1) % (m - 1) + 1
                } else {
                    1
                },
                weight: u64::from(h.weight.max(1)),
                next: 0,
                target: 0,
            }
        })
        .collect();
    let max_weight = entries.iter().map(|e| e.weight).max().unwrap_or(1);
    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; size];
    let mut filled = 0usize;
    let mut iteration = 1u64;
    while filled < size {
        for (i, e) in entries.iter_mut().enumerate() {
            if filled == size {
                break;
            }
            // A host of max weight claims a slot every round; of max/3, every third round.
            if iteration * e.weight < e.target {
                continue;
            }
            e.target += max_weight;
            let mut c = ((e.offset + e.skip * e.next) % m) as usize;
            while table[c] != EMPTY {
                e.next += 1;
                c = ((e.offset + e.skip * e.next) % m) as usize;
            }
            table[c] = i as u32;
            e.next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    table
}

impl LoadBalancer for Maglev {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let eligible = Eligible::new(&self.hosts, ctx.tried)?;
        let Some(hash) = ctx.hash else {
            let from: Vec<&Arc<Host>> = self.hosts.iter().filter(|h| eligible.ok(h)).collect();
            return Some(Arc::clone(from[rand::rng().random_range(0..from.len())]));
        };
        let start = (hash % self.table.len() as u64) as usize;
        // Every host owns at least one slot (hosts < table size), so this finds the
        // eligible host that `Eligible::new` saw.
        (0..self.table.len())
            .map(|k| &self.hosts[self.table[(start + k) % self.table.len()] as usize])
            .find(|h| eligible.ok(h))
            .map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::config::LbPolicy;
    use crate::upstream::host::HealthFlag;

    #[test]
    fn table_shares_follow_weights() {
        let hosts = weighted(&[1, 2, 3, 4]);
        let m = Maglev::new(&hosts, DEFAULT_TABLE_SIZE);
        let mut owned = vec![0u64; hosts.len()];
        for &i in &m.table {
            owned[i as usize] += 1;
        }
        for (i, w) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            let share = owned[i] as f64 / DEFAULT_TABLE_SIZE as f64;
            assert!((share - w / 10.0).abs() < 0.005, "owned {owned:?}");
        }
    }

    #[test]
    fn requests_follow_weights() {
        let hosts = weighted(&[1, 1, 2]);
        let lb = lb_for(LbPolicy::Maglev, &hosts);
        let trials = 20_000;
        // Seeded: the ring is fixed, so fixed request hashes make the test deterministic (an
        // unseeded one failed its p = 0.001 bound about once in a thousand runs, by design).
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0x6d6f_736e);
        let hits = count(&hosts, trials, || pick(&*lb, &hash_ctx(rng.random())));
        let t = trials as f64;
        let chi2 = chi_square(&hits, &[t / 4.0, t / 4.0, t / 2.0]);
        assert!(chi2 < CHI2_P001_DF2, "hits {hits:?} chi2 {chi2}");
    }

    #[test]
    fn same_hash_same_host_and_no_hash_is_random() {
        let hosts = weighted(&[1; 5]);
        let lb = lb_for(LbPolicy::Maglev, &hosts);
        for h in [0u64, 1, 42, u64::MAX, 123_456_789] {
            let first = pick(&*lb, &hash_ctx(h)).address;
            for _ in 0..10 {
                assert_eq!(pick(&*lb, &hash_ctx(h)).address, first);
            }
        }
        let hits = count(&hosts, 5000, || pick(&*lb, &ctx()));
        let chi2 = chi_square(&hits, &[1000.0; 5]);
        assert!(chi2 < CHI2_P001_DF4, "hits {hits:?} chi2 {chi2}");
    }

    #[test]
    fn ejecting_a_host_moves_only_its_keys() {
        let hosts = weighted(&[1; 10]);
        let lb = lb_for(LbPolicy::Maglev, &hosts);
        let keys: Vec<u64> = (0..10_000u64).map(|k| xxh64(&k.to_le_bytes(), 7)).collect();
        let before: Vec<_> = keys
            .iter()
            .map(|&k| pick(&*lb, &hash_ctx(k)).address)
            .collect();
        hosts[3].set_flag(HealthFlag::Ejected, true);
        let after: Vec<_> = keys
            .iter()
            .map(|&k| pick(&*lb, &hash_ctx(k)).address)
            .collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*b, hosts[3].address, "only the ejected host's keys move");
                moved += 1;
            }
            assert_ne!(*a, hosts[3].address);
        }
        assert!((700..1300).contains(&moved), "moved {moved} of 10000");
        // Its keys spread over the others rather than all landing on one neighbour.
        let mut to = std::collections::HashMap::new();
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                *to.entry(*a).or_insert(0) += 1;
            }
        }
        assert!(
            to.len() >= 8 && to.values().all(|&n| n < moved / 3),
            "{to:?}"
        );
        hosts[3].set_flag(HealthFlag::Ejected, false);
        let back: Vec<_> = keys
            .iter()
            .map(|&k| pick(&*lb, &hash_ctx(k)).address)
            .collect();
        assert_eq!(back, before);
    }

    #[test]
    fn removing_a_host_moves_about_one_nth() {
        let hosts = weighted(&[1; 10]);
        let full = lb_for(LbPolicy::Maglev, &hosts);
        let fewer = lb_for(LbPolicy::Maglev, &[&hosts[..4], &hosts[5..]].concat());
        let keys: Vec<u64> = (0..10_000u64).map(|k| xxh64(&k.to_le_bytes(), 9)).collect();
        let moved = keys
            .iter()
            .filter(|&&k| {
                let a = pick(&*full, &hash_ctx(k)).address;
                a != hosts[4].address && a != pick(&*fewer, &hash_ctx(k)).address
            })
            .count();
        // Maglev trades a little disruption for balance: a few % of other keys move too.
        assert!(moved < 600, "{moved} keys of remaining hosts moved");
    }

    #[test]
    fn retry_avoids_tried_host() {
        let hosts = weighted(&[1; 4]);
        let lb = lb_for(LbPolicy::Maglev, &hosts);
        for k in 0..200u64 {
            let first = pick(&*lb, &hash_ctx(k));
            let tried = [first.address];
            let mut c = hash_ctx(k);
            c.tried = &tried;
            let second = pick(&*lb, &c);
            assert_ne!(second.address, first.address);
            assert_eq!(
                pick(&*lb, &c).address,
                second.address,
                "retries are consistent too"
            );
        }
        for h in &hosts {
            h.set_flag(HealthFlag::FailedActiveCheck, true);
        }
        assert!(lb.choose(&hash_ctx(1)).is_none());
    }
}
