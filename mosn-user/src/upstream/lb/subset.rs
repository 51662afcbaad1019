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
