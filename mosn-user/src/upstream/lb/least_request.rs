//! `LB_LEAST_REQUEST`: the power of `choice_count` choices (Envoy's, with all weights equal).
//!
//! Each pick draws `choice_count` distinct eligible hosts uniformly at random and takes the
//! one with the fewest requests in flight ([`Host::active_requests`]); ties go to the first
//! drawn, itself random. This keeps load close to the least loaded host's without scanning
//! every host or herding all pickers onto the same one. Host weights are not used.

use std::sync::Arc;

use rand::seq::index;

use super::{Eligible, LbContext, LoadBalancer};
use crate::upstream::host::Host;

/// Envoy's default `choice_count`: two choices already give most of the gain of a full scan.
pub const DEFAULT_CHOICE_COUNT: usize = 2;

#[derive(Debug)]
pub struct LeastRequest {
    hosts: Vec<Arc<Host>>,
    choice_count: usize,
}

impl LeastRequest {
    pub fn new(hosts: &[Arc<Host>], choice_count: usize) -> LeastRequest {
        LeastRequest {
            hosts: hosts.to_vec(),
            choice_count: choice_count.max(1),
        }
    }

    /// The first host with the fewest active requests among `draws` (indices into `from`).
    fn best<'h>(
        from: &[&'h Arc<Host>],
        draws: impl Iterator<Item = usize>,
    ) -> Option<&'h Arc<Host>> {
        let mut best: Option<&Arc<Host>> = None;
        for i in draws {
            let h = from[i];
            if best.is_none_or(|b| h.active_requests() < b.active_requests()) {
                best = Some(h);
            }
        }
        best
    }
}

impl LoadBalancer for LeastRequest {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let eligible = Eligible::new(&self.hosts, ctx.tried)?;
        let from: Vec<&Arc<Host>> = self.hosts.iter().filter(|h| eligible.ok(h)).collect();
        let n = from.len();
        let draws = index::sample(&mut rand::rng(), n, self.choice_count.min(n));
        Self::best(&from, draws.into_iter()).map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::config::LbPolicy;
    use crate::upstream::host::HealthFlag;

    #[test]
    fn prefers_idle_hosts() {
        let hosts = weighted(&[1, 1, 1, 1]);
        let lb = lb_for(LbPolicy::LeastRequest, &hosts);
        // Hosts 0..3 busy with 5 requests each; host 3 idle.
        let _guards: Vec<_> = hosts[..3]
            .iter()
            .flat_map(|h| (0..5).map(|_| h.start_request()))
            .collect();
        let trials = 4000;
        let hits = count(&hosts, trials, || pick(&*lb, &ctx()));
        // The idle host wins whenever it is one of the two drawn: P = 1 - C(3,2)/C(4,2) = 1/2;
        // each busy host is picked only when drawn with another busy one: 1/6 each.
        let expected = [1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 0.5].map(|p| p * trials as f64);
        let chi2 = chi_square(&hits, &expected);
        assert!(chi2 < CHI2_P001_DF3, "hits {hits:?} chi2 {chi2}");
    }

    #[test]
    fn two_distinct_candidates_so_the_busiest_never_wins() {
        let hosts = weighted(&[1, 1, 1]);
        let lb = lb_for(LbPolicy::LeastRequest, &hosts);
        let _g0 = hosts[0].start_request();
        let _g1 = [hosts[1].start_request(), hosts[1].start_request()];
        // Host 1 has the most in flight: drawn with any other distinct host, it loses.
        let hits = count(&hosts, 3000, || pick(&*lb, &ctx()));
        assert_eq!(hits[1], 0, "{hits:?}");
        // Host 0 wins only against host 1, host 2 (idle) whenever drawn: 1/3 vs 2/3.
        let chi2 = chi_square(&hits[..1], &[1000.0]) + chi_square(&hits[2..], &[2000.0]);
        assert!(chi2 < CHI2_P001_DF1, "hits {hits:?} chi2 {chi2}");
    }

    #[test]
    fn equal_load_is_uniform() {
        let hosts = weighted(&[1, 1, 1, 1]);
        let lb = lb_for(LbPolicy::LeastRequest, &hosts);
        let trials = 40_000;
        let hits = count(&hosts, trials, || pick(&*lb, &ctx()));
        let chi2 = chi_square(&hits, &[trials as f64 / 4.0; 4]);
        assert!(chi2 < CHI2_P001_DF3, "hits {hits:?} chi2 {chi2}");
    }

    #[test]
    fn skips_unhealthy_and_tried() {
        let hosts = weighted(&[1, 1, 1]);
        let lb = lb_for(LbPolicy::LeastRequest, &hosts);
        hosts[0].set_flag(HealthFlag::Ejected, true);
        let tried = [hosts[1].address];
        for _ in 0..100 {
            assert_eq!(pick(&*lb, &tried_ctx(&tried)).address, hosts[2].address);
        }
        // Host 0 idle but unhealthy: never picked even though the others are busy.
        let _g = [hosts[1].start_request(), hosts[2].start_request()];
        let hits = count(&hosts, 200, || pick(&*lb, &ctx()));
        assert_eq!(hits[0], 0);
        hosts[1].set_flag(HealthFlag::Ejected, true);
        hosts[2].set_flag(HealthFlag::Ejected, true);
        assert!(lb.choose(&ctx()).is_none());
    }
}
