//! Raw (file-shaped) config -> validated [`Config`]: fills defaults, parses addresses and
//! durations, checks references and uniqueness. Every problem is collected (not just the
//! first), each with the path of its field; unknown keys become warnings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::Loaded;
use super::addr::parse_ip;
use super::diag::{Diag, index, join};
use super::error::ConfigError;
use super::model::*;
use super::raw::*;

pub(super) mod capture;
mod cluster;
mod listener;
mod network;

pub(in crate::config) use cluster::Clusters;
use cluster::clusters;
use listener::{ListenerCtx, listeners};

/// Validates a decoded file. Returns every error found, or the config plus warnings.
pub fn validate(raw: &RawConfig) -> Result<Loaded, ConfigError> {
    let mut d = Diag::default();
    d.extra("", &raw.extra, RawConfig::KEYS);

    // Clusters are validated first (listeners refer to them) but reported after the
    // listeners, in file order.
    let mut cluster_diag = Diag::default();
    let clusters = clusters(raw.cluster_manager.as_ref(), &mut cluster_diag);
    let servers = raw.servers.as_deref().unwrap_or_default();
    let router_values: Vec<(String, &[Value])> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                index("", "servers", i),
                s.routers.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let mut router_diag = Diag::default();
    let routers = super::router::routers(&router_values, &clusters, &mut router_diag);
    let router_names: Vec<String> = router_values
        .iter()
        .flat_map(|(_, rs)| rs.iter())
        .filter_map(|r| r.get("router_config_name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let mut listener_refs = HashMap::new();
    let ctx = ListenerCtx {
        clusters: &clusters,
        routers: &router_names,
    };
    let listeners = listeners(servers, &ctx, &mut listener_refs, &mut d);
    d.errors.append(&mut router_diag.errors);
    d.warnings.append(&mut router_diag.warnings);
    d.errors.append(&mut cluster_diag.errors);
    d.warnings.append(&mut cluster_diag.warnings);
    let admin = raw.admin.as_ref().and_then(|a| admin(a, &mut d));
    let drain_timeout = drain_timeout(raw, &mut d);
    let capture = raw
        .capture
        .as_ref()
        .and_then(|c| capture::capture(c, &listener_refs, &mut d));

    if d.errors.is_empty() {
        Ok(Loaded {
            config: Config {
                listeners,
                clusters: clusters.configs,
                routers,
                admin,
                drain_timeout,
                capture,
            },
            warnings: d.warnings,
        })
    } else {
        Err(ConfigError::Invalid(d.errors))
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners

/// What the `capture` block needs to know of a listener it names.
pub(super) struct ListenerRef {
    /// Where the listener is defined.
    pub path: String,
    /// `None` when the listener has errors of its own (already reported).
    pub valid: Option<ValidListener>,
}

pub(super) struct ValidListener {
    pub address: SocketAddr,
    pub original_dst: Option<OriginalDst>,
    /// `bind_port: true` and not refused (duplicate address).
    pub started: bool,
}

// ---------------------------------------------------------------------------------------------
// Admin and top-level settings

fn admin(a: &RawAdmin, d: &mut Diag) -> Option<SocketAddr> {
    d.extra("admin", &a.extra, RawAdmin::KEYS);
    let Some(address) = &a.address else {
        d.error(
            "admin.address",
            "missing address (expected {\"socket_address\": {\"address\": \"0.0.0.0\", \
             \"port_value\": 34901}})",
        );
        return None;
    };
    d.extra("admin.address", &address.extra, RawAdminAddress::KEYS);
    let path = "admin.address.socket_address";
    let Some(sa) = &address.socket_address else {
        d.error(
            path,
            "missing socket_address (expected {\"address\": \"0.0.0.0\", \"port_value\": 34901})",
        );
        return None;
    };
    socket_address(sa, path, None, d)
}

/// An Envoy `socket_address` object; `default_port` applies when `port_value` is absent
/// (else it is required).
fn socket_address(
    sa: &RawSocketAddress,
    path: &str,
    default_port: Option<u16>,
    d: &mut Diag,
) -> Option<SocketAddr> {
    d.extra(path, &sa.extra, RawSocketAddress::KEYS);
    let ip = match sa.address.as_deref() {
        None => {
            d.error(&join(path, "address"), "missing address");
            None
        }
        Some(a) => parse_ip(a)
            .map_err(|reason| {
                d.error(
                    &join(path, "address"),
                    format!("invalid address {a:?}: {reason}"),
                )
            })
            .ok(),
    };
    let port = match (sa.port_value, default_port) {
        (None, Some(p)) => Some(p),
        (None, None) => {
            d.error(&join(path, "port_value"), "missing port_value");
            None
        }
        (Some(p), _) => u16::try_from(p)
            .map_err(|_| d.error(&join(path, "port_value"), format!("invalid port {p}")))
            .ok(),
    };
    Some(SocketAddr::new(ip?, port?))
}

/// `graceful_timeout` at top level (our extension) or in a server (MOSN's place); they must
/// agree.
fn drain_timeout(raw: &RawConfig, d: &mut Diag) -> Duration {
    let mut first: Option<(String, Duration)> = None;
    let top = raw
        .graceful_timeout
        .iter()
        .map(|t| ("graceful_timeout".to_owned(), t));
    let per_server = raw
        .servers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            let t = s.graceful_timeout.as_ref()?;
            Some((join(&index("", "servers", i), "graceful_timeout"), t))
        });
    for (path, raw) in top.chain(per_server) {
        let Some(t) = d.duration(&path, raw) else {
            continue;
        };
        match &first {
            None => first = Some((path, t)),
            Some((fp, ft)) if *ft != t => d.error(
                &path,
                format!("graceful_timeout {t:?} conflicts with {fp} ({ft:?})"),
            ),
            Some(_) => {}
        }
    }
    first.map_or(DEFAULT_DRAIN_TIMEOUT, |(_, t)| t)
}
