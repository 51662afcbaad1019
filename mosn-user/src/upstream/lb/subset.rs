//! The subset load balancer (MOSN's `lb_subset_config`, after Envoy's): requests whose route
//! has a `metadata_match` go to the hosts whose metadata carries those pairs.
//!
//! At build time, for each selector (a set of metadata keys), hosts that have all the keys
//! are grouped by their values; each group (subset) gets its own balancer of the cluster's
//! `lb_type`. A pick finds the selector whose keys are exactly the `metadata_match`'s keys,
//! then the subset with its values. With no such subset, or no `metadata_match`, the
//! `fall_back_policy` decides: no host, any host, or the `default_subset`'s hosts (if none
//! match it, no host, as in Envoy).
//!
//! A subset that exists but has no healthy host yields no host rather than the fallback
//! (Envoy's behaviour: a route asking for `version: v2` is not sent to `v1`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{LbContext, LoadBalancer, build_policy};
use crate::config::lb::FallbackPolicy;
use crate::config::{LbPolicy, SubsetConfig};
use crate::upstream::host::Host;

#[derive(Debug)]
pub struct SubsetLb {
    selectors: Vec<Selector>,
    /// The fall-back balancer; `None` for `NO_FALLBACK` or an empty default subset.
    fallback: Option<Box<dyn LoadBalancer>>,
}

#[derive(Debug)]
struct Selector {
    /// Sorted, as a `MetadataMatch`'s keys iterate.
    keys: Vec<String>,
    /// The values of `keys` (in order) -> the balancer over the hosts that have them.
    subsets: HashMap<Vec<String>, Box<dyn LoadBalancer>>,
}

impl SubsetLb {
    /// Subsets of `hosts`, each balanced by `policy`.
    pub fn new(policy: LbPolicy, cfg: &SubsetConfig, hosts: &[Arc<Host>]) -> SubsetLb {
        let selectors = cfg
            .selectors
            .iter()
            .map(|keys| {
                let mut keys = keys.clone();
                keys.sort();
                keys.dedup();
                let mut groups: HashMap<Vec<String>, Vec<Arc<Host>>> = HashMap::new();
                for h in hosts {
                    let values: Option<Vec<String>> =
                        keys.iter().map(|k| h.metadata.get(k).cloned()).collect();
                    if let Some(values) = values {
                        groups.entry(values).or_default().push(Arc::clone(h));
                    }
                }
                let subsets = groups
                    .into_iter()
                    .map(|(values, members)| (values, build_policy(policy, &members)))
                    .collect();
                Selector { keys, subsets }
            })
            .collect();
        let fallback = match cfg.fallback {
            FallbackPolicy::NoFallback => None,
            FallbackPolicy::AnyEndpoint => Some(build_policy(policy, hosts)),
            FallbackPolicy::DefaultSubset => {
                let members: Vec<Arc<Host>> = hosts
                    .iter()
                    .filter(|h| {
                        cfg.default_subset
                            .iter()
                            .all(|(k, v)| h.metadata.get(k) == Some(v))
                    })
                    .cloned()
                    .collect();
                (!members.is_empty()).then(|| build_policy(policy, &members))
            }
        };
        SubsetLb {
            selectors,
            fallback,
        }
    }

    /// Number of subsets built for each selector, in config order.
    pub fn subset_counts(&self) -> Vec<usize> {
        self.selectors.iter().map(|s| s.subsets.len()).collect()
    }
}

impl LoadBalancer for SubsetLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        if let Some(m) = ctx.metadata_match.filter(|m| !m.is_empty())
            && let Some(sel) = self.selectors.iter().find(|s| s.keys.iter().eq(m.keys()))
        {
            let values: Vec<String> = m.values().cloned().collect();
            if let Some(lb) = sel.subsets.get(&values) {
                return lb.choose(ctx);
            }
        }
        self.fallback.as_ref()?.choose(ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use serde_json::json;

    use super::super::tests::*;
    use super::*;
    use crate::config::MetadataMatch;
    use crate::upstream::host::HealthFlag;
    use crate::upstream::lb::build;

    /// a: v1/z1, b: v1/z2, c: v2/z1, d: v2 (no zone), e: no metadata.
    fn hosts() -> Vec<Arc<Host>> {
        vec![
            host(0, 1, &[("version", "v1"), ("zone", "z1")]),
            host(1, 1, &[("version", "v1"), ("zone", "z2")]),
            host(2, 1, &[("version", "v2"), ("zone", "z1")]),
            host(3, 1, &[("version", "v2")]),
            host(4, 1, &[]),
        ]
    }

    fn subset_lb(
        lb_type: &str,
        fallback: serde_json::Value,
        hosts: &[Arc<Host>],
    ) -> Box<dyn LoadBalancer> {
        let mut s = json!({
            "fall_back_policy": fallback,
            "subset_selectors": [["version"], ["zone", "version"]],
        });
        if fallback == json!(2) || fallback == json!("DEFAULT_SUBSET") {
            s["default_subset"] = json!({"version": "v2"});
        }
        build(&cluster_config(lb_type, Some(s)), hosts)
    }

    fn mm(pairs: &[(&str, &str)]) -> MetadataMatch {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Indices of the hosts picked in 200 tries.
    fn picked(
        lb: &dyn LoadBalancer,
        hosts: &[Arc<Host>],
        m: Option<&MetadataMatch>,
    ) -> BTreeSet<usize> {
        let ctx = LbContext {
            metadata_match: m,
            ..LbContext::default()
        };
        (0..200)
            .filter_map(|_| lb.choose(&ctx))
            .map(|h| index_of(hosts, &h))
            .collect()
    }

    #[test]
    fn picks_within_the_matching_subset() {
        let hosts = hosts();
        let lb = subset_lb("LB_ROUNDROBIN", json!(0), &hosts);
        let v1 = mm(&[("version", "v1")]);
        assert_eq!(picked(&*lb, &hosts, Some(&v1)), BTreeSet::from([0, 1]));
        let v2 = mm(&[("version", "v2")]);
        assert_eq!(picked(&*lb, &hosts, Some(&v2)), BTreeSet::from([2, 3]));
        let v2z1 = mm(&[("version", "v2"), ("zone", "z1")]);
        assert_eq!(picked(&*lb, &hosts, Some(&v2z1)), BTreeSet::from([2]));
    }

    #[test]
    fn subsets_built_per_selector() {
        let hosts = hosts();
        let cfg = cluster_config(
            "LB_RANDOM",
            Some(json!({"subset_selectors": [["version"], ["version", "zone"], ["rack"]]})),
        );
        let lb = SubsetLb::new(cfg.lb, cfg.lb_subset.as_ref().unwrap(), &hosts);
        assert_eq!(lb.subset_counts(), vec![2, 3, 0]);
    }

    #[test]
    fn no_fallback_gives_no_host() {
        let hosts = hosts();
        for fb in [json!(0), json!("NO_FALLBACK")] {
            let lb = subset_lb("LB_RANDOM", fb, &hosts);
            let none = BTreeSet::new();
            assert_eq!(picked(&*lb, &hosts, None), none, "no metadata_match");
            assert_eq!(
                picked(&*lb, &hosts, Some(&mm(&[]))),
                none,
                "empty metadata_match"
            );
            let v3 = mm(&[("version", "v3")]);
            assert_eq!(picked(&*lb, &hosts, Some(&v3)), none, "no such subset");
            let zone = mm(&[("zone", "z1")]);
            assert_eq!(
                picked(&*lb, &hosts, Some(&zone)),
                none,
                "no selector for [zone]"
            );
        }
    }

    #[test]
    fn any_endpoint_fallback_uses_every_host() {
        let hosts = hosts();
        for fb in [json!(1), json!("ANY_ENDPOINT")] {
            let lb = subset_lb("LB_ROUNDROBIN", fb, &hosts);
            let all = BTreeSet::from([0, 1, 2, 3, 4]);
            assert_eq!(picked(&*lb, &hosts, None), all);
            let zone = mm(&[("zone", "z1")]);
            assert_eq!(picked(&*lb, &hosts, Some(&zone)), all);
            let v1 = mm(&[("version", "v1")]);
            assert_eq!(picked(&*lb, &hosts, Some(&v1)), BTreeSet::from([0, 1]));
        }
    }

    #[test]
    fn default_subset_fallback_uses_its_hosts() {
        let hosts = hosts();
        for fb in [json!(2), json!("DEFAULT_SUBSET")] {
            let lb = subset_lb("LB_ROUNDROBIN", fb, &hosts);
            let v2 = BTreeSet::from([2, 3]);
            assert_eq!(picked(&*lb, &hosts, None), v2);
            let v3 = mm(&[("version", "v3"), ("zone", "z1")]);
            assert_eq!(picked(&*lb, &hosts, Some(&v3)), v2);
        }
        // A default subset no host matches behaves as NO_FALLBACK (as in Envoy).
        let cfg = cluster_config(
            "LB_ROUNDROBIN",
            Some(json!({
                "fall_back_policy": 2,
                "default_subset": {"version": "v9"},
                "subset_selectors": [["version"]],
            })),
        );
        let lb = build(&cfg, &hosts);
        assert!(picked(&*lb, &hosts, None).is_empty());
    }

    #[test]
    fn an_unhealthy_subset_does_not_fall_back() {
        let hosts = hosts();
        let lb = subset_lb("LB_ROUNDROBIN", json!(1), &hosts);
        hosts[0].set_flag(HealthFlag::Ejected, true);
        let v1 = mm(&[("version", "v1")]);
        assert_eq!(picked(&*lb, &hosts, Some(&v1)), BTreeSet::from([1]));
        hosts[1].set_flag(HealthFlag::FailedActiveCheck, true);
        assert!(picked(&*lb, &hosts, Some(&v1)).is_empty());
        // The fallback (any host) skips the unhealthy ones too.
        assert_eq!(picked(&*lb, &hosts, None), BTreeSet::from([2, 3, 4]));
    }

    #[test]
    fn inner_balancer_is_the_clusters_lb_type_and_avoids_tried() {
        let hosts = vec![
            host(0, 3, &[("version", "v1")]),
            host(1, 1, &[("version", "v1")]),
            host(2, 5, &[("version", "v2")]),
        ];
        let lb = subset_lb("LB_WEIGHTED_ROUNDROBIN", json!(0), &hosts);
        let v1 = mm(&[("version", "v1")]);
        let ctx = LbContext {
            metadata_match: Some(&v1),
            ..LbContext::default()
        };
        assert_eq!(count(&hosts, 40, || pick(&*lb, &ctx)), vec![30, 10, 0]);
        let tried: [SocketAddr; 1] = [hosts[0].address];
        let ctx = LbContext {
            metadata_match: Some(&v1),
            tried: &tried,
            ..LbContext::default()
        };
        assert_eq!(count(&hosts, 10, || pick(&*lb, &ctx)), vec![0, 10, 0]);

        // Hashing inside a subset: the same hash, the same host of the subset.
        let hosts = self::hosts();
        let lb = subset_lb("LB_MAGLEV", json!(0), &hosts);
        let v2 = mm(&[("version", "v2")]);
        for hash in 0..50u64 {
            let ctx = LbContext {
                hash: Some(hash),
                metadata_match: Some(&v2),
                tried: &[],
            };
            let first = pick(&*lb, &ctx);
            assert!([2, 3].contains(&index_of(&hosts, &first)));
            assert_eq!(pick(&*lb, &ctx).address, first.address);
        }
    }
}
