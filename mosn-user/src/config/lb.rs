//! Load-balancing configuration of a cluster: `lb_type`, the subset load balancer
//! (`lb_subset_config`) and host metadata (`hosts[].metadata`).
//!
//! Raw shapes, validated model types and their validation live together in this file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::diag::{Diag, join};
use super::model::ClusterKind;

/// `lb_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LbPolicy {
    /// `LB_ROUNDROBIN` (MOSN's default).
    RoundRobin,
    /// `LB_RANDOM`.
    Random,
    /// `LB_ORIGINAL_DST`: the connection's original destination (only `ORIGINAL_DST`
    /// clusters, whose default it is).
    OriginalDst,
    /// `LB_WEIGHTED_ROUNDROBIN`.
    WeightedRoundRobin,
    /// `LB_LEAST_REQUEST`: power of two choices on active requests.
    LeastRequest,
    /// `LB_MAGLEV`.
    Maglev,
    /// `LB_RING_HASH` (Envoy's ring hash; MOSN lacks it).
    RingHash,
}

/// Host metadata used by the subset load balancer (`metadata.filter_metadata["mosn.lb"]`).
pub type Metadata = BTreeMap<String, String>;

/// A route's `metadata_match`: the subset of hosts whose metadata has all these pairs.
pub type MetadataMatch = BTreeMap<String, String>;

/// `lb_subset_config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SubsetConfig {}

/// `lb_type` for a cluster of `kind`.
pub(super) fn lb_policy(
    kind: ClusterKind,
    raw: Option<&str>,
    path: &str,
    d: &mut Diag,
) -> LbPolicy {
    let p = join(path, "lb_type");
    match (kind, raw) {
        (ClusterKind::OriginalDst, None | Some("LB_ORIGINAL_DST")) => LbPolicy::OriginalDst,
        (ClusterKind::OriginalDst, Some(other)) => {
            d.error(
                &p,
                format!(
                    "lb_type {other:?} does not apply to an ORIGINAL_DST cluster (use \
                     \"LB_ORIGINAL_DST\" or leave it out)"
                ),
            );
            LbPolicy::OriginalDst
        }
        (ClusterKind::Static, None | Some("LB_ROUNDROBIN")) => LbPolicy::RoundRobin,
        (ClusterKind::Static, Some("LB_RANDOM")) => LbPolicy::Random,
        (ClusterKind::Static, Some("LB_ORIGINAL_DST")) => {
            d.error(
                &p,
                "lb_type \"LB_ORIGINAL_DST\" needs \"type\": \"ORIGINAL_DST\"",
            );
            LbPolicy::RoundRobin
        }
        (ClusterKind::Static, Some(other)) => {
            d.error(
                &p,
                format!(
                    "unsupported lb_type {other:?} (supported: LB_ROUNDROBIN, LB_RANDOM, \
                     LB_ORIGINAL_DST)"
                ),
            );
            LbPolicy::RoundRobin
        }
    }
}

/// `lb_subset_config` (absent: no subset load balancing).
pub(super) fn subset(value: Option<&Value>, path: &str, d: &mut Diag) -> Option<SubsetConfig> {
    let _ = (value, path, d);
    None
}

/// A host's `metadata` (absent: empty).
pub(super) fn host_metadata(value: Option<&Value>, path: &str, d: &mut Diag) -> Metadata {
    let _ = (value, path, d);
    Metadata::new()
}
