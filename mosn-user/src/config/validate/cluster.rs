//! Validation of `cluster_manager.clusters[]`: types, load balancers, hosts, bind sources,
//! TLS.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::socket_address;
use crate::config::addr::parse_socket_addr;
use crate::config::diag::{Diag, index, join};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::{health, lb, tls};

/// MOSN's host weight range (`MinHostWeight`..=`MaxHostWeight`).
const HOST_WEIGHTS: std::ops::RangeInclusive<u64> = 1..=128;

/// Validated clusters plus what listeners need to check their references.
pub(in crate::config) struct Clusters {
    pub configs: Vec<ClusterConfig>,
    /// Every cluster name given, in file order, even of clusters with other errors (so one
    /// bad cluster does not also produce "unknown cluster" errors at every reference).
    pub names: Vec<String>,
    pub host_counts: HashMap<String, usize>,
    /// Names of the `ORIGINAL_DST` clusters.
    pub original_dst: HashSet<String>,
}

impl Clusters {
    pub fn check_ref(&self, path: &str, name: &str, d: &mut Diag) {
        if !self.names.iter().any(|n| n == name) {
            let defined = if self.names.is_empty() {
                "no clusters are defined".to_owned()
            } else {
                format!("defined clusters: {}", self.names.join(", "))
            };
            d.error(path, format!("unknown cluster {name:?} ({defined})"));
        }
    }
}

pub(in crate::config) fn clusters(raw: Option<&RawClusterManager>, d: &mut Diag) -> Clusters {
    let mut out = Clusters {
        configs: Vec::new(),
        names: Vec::new(),
        host_counts: HashMap::new(),
        original_dst: HashSet::new(),
    };
    let Some(cm) = raw else { return out };
    d.extra("cluster_manager", &cm.extra, RawClusterManager::KEYS);
    let mut first_at: HashMap<String, String> = HashMap::new();
    for (i, c) in cm.clusters.iter().flatten().enumerate() {
        let path = index("cluster_manager", "clusters", i);
        let (name, config) = cluster(c, &path, d);
        if let Some(name) = name {
            if let Some(first) = first_at.get(&name) {
                d.error(
                    &join(&path, "name"),
                    format!("duplicate cluster name {name:?} (first defined at {first})"),
                );
                continue;
            }
            first_at.insert(name.clone(), path);
            out.host_counts
                .insert(name.clone(), c.hosts.as_ref().map_or(0, Vec::len));
            if c.kind.as_deref() == Some("ORIGINAL_DST") {
                out.original_dst.insert(name.clone());
            }
            out.names.push(name);
        }
        out.configs.extend(config);
    }
    out
}

/// Returns the cluster's name (if it has one) and, if it is fully valid, its config.
fn cluster(c: &RawCluster, path: &str, d: &mut Diag) -> (Option<String>, Option<ClusterConfig>) {
    let errors_before = d.errors.len();
    d.extra(path, &c.extra, RawCluster::KEYS);
    let name = match (&c.name, &c.name_go) {
        (Some(a), Some(b)) if a != b => {
            d.error(
                &join(path, "Name"),
                format!("both \"name\" ({a:?}) and \"Name\" ({b:?}) are set and differ; keep one"),
            );
            None
        }
        (Some(n), _) | (None, Some(n)) if n.is_empty() => {
            d.error(&join(path, "name"), "cluster name must not be empty");
            None
        }
        (Some(n), _) | (None, Some(n)) => Some(n.clone()),
        (None, None) => {
            d.error(&join(path, "name"), "missing cluster name");
            None
        }
    };
    let kind = match c.kind.as_deref() {
        None | Some("SIMPLE" | "STATIC") => ClusterKind::Static,
        Some("ORIGINAL_DST") => ClusterKind::OriginalDst,
        Some(other) => {
            d.error(
                &join(path, "type"),
                format!(
                    "unsupported cluster type {other:?} (supported: SIMPLE, STATIC, ORIGINAL_DST)"
                ),
            );
            ClusterKind::Static
        }
    };
    let lb = lb::lb_policy(kind, c.lb_type.as_deref(), path, d);
    let connect_timeout = match &c.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(raw) => {
            let p = join(path, "connect_timeout");
            match d.duration(&p, raw) {
                Some(Duration::ZERO) => {
                    d.error(&p, "connect_timeout must be greater than 0");
                    DEFAULT_CONNECT_TIMEOUT
                }
                Some(t) => t,
                None => DEFAULT_CONNECT_TIMEOUT,
            }
        }
    };
    let tls = tls::cluster_tls(c.tls_context.as_ref(), &join(path, "tls_context"), d);

    let bind_source = c
        .upstream_bind_config
        .as_ref()
        .and_then(|b| bind_config(b, &join(path, "upstream_bind_config"), d));

    let mut hosts = Vec::new();
    match c.hosts.as_deref() {
        Some([_, ..]) if kind == ClusterKind::OriginalDst => d.error(
            &join(path, "hosts"),
            "an ORIGINAL_DST cluster connects to each connection's original destination; \
             remove \"hosts\"",
        ),
        None | Some([]) if kind == ClusterKind::OriginalDst => {}
        None | Some([]) => d.error(
            &join(path, "hosts"),
            "a cluster needs at least one host (dynamic discovery is not supported yet)",
        ),
        Some(raw_hosts) => {
            for (i, h) in raw_hosts.iter().enumerate() {
                let hp = index(path, "hosts", i);
                if let Some(host) = host(h, &hp, d) {
                    if hosts.iter().any(|x: &HostConfig| x.address == host.address) {
                        d.warn(format!("{hp}: host {} is listed twice", host.address));
                    }
                    hosts.push(host);
                }
            }
        }
    }

    let lb_subset = lb::subset(
        c.lb_subset_config.as_ref(),
        &join(path, "lb_subset_config"),
        d,
    );
    let health_check =
        health::health_check(c.health_check.as_ref(), &join(path, "health_check"), d);
    let outlier_detection = health::outlier_detection(
        c.outlier_detection.as_ref(),
        &join(path, "outlier_detection"),
        d,
    );
    let circuit_breakers = health::circuit_breakers(
        c.circuit_breakers.as_ref(),
        &join(path, "circuit_breakers"),
        d,
    );

    let max_request_per_conn = match c.max_request_per_conn {
        None => DEFAULT_MAX_REQUEST_PER_CONN,
        Some(0) => {
            d.error(
                &join(path, "max_request_per_conn"),
                "must be at least 1 (requests in flight per multiplexed connection)",
            );
            DEFAULT_MAX_REQUEST_PER_CONN
        }
        Some(n) => n,
    };
    let heartbeat = c
        .heartbeat
        .as_ref()
        .map(|h| heartbeat(h, &join(path, "heartbeat"), d))
        .unwrap_or_default();

    let config = (d.errors.len() == errors_before).then(|| ClusterConfig {
        name: name.clone().unwrap_or_default(),
        kind,
        lb,
        connect_timeout,
        hosts,
        bind_source,
        lb_subset,
        health_check,
        outlier_detection,
        circuit_breakers,
        max_request_per_conn,
        heartbeat,
        tls,
    });
    (name, config)
}

/// `heartbeat`: `interval` (`"0s"`: none) and `max_failures` (at least 1).
fn heartbeat(h: &RawHeartbeat, path: &str, d: &mut Diag) -> HeartbeatConfig {
    d.extra(path, &h.extra, RawHeartbeat::KEYS);
    let mut out = HeartbeatConfig::default();
    if let Some(i) = &h.interval {
        match d.duration(&join(path, "interval"), i) {
            Some(Duration::ZERO) => out.interval = None,
            Some(i) if i < Duration::from_millis(100) => d.error(
                &join(path, "interval"),
                format!("{i:?} is too short (at least 100ms; \"0s\" disables heartbeats)"),
            ),
            Some(i) => out.interval = Some(i),
            None => {}
        }
    }
    match h.max_failures {
        Some(0) => d.error(&join(path, "max_failures"), "must be at least 1"),
        Some(n) => out.max_failures = n,
        None => {}
    }
    out
}

/// `upstream_bind_config`: Envoy's `{"source_address": {"address": ..., "port_value": 0}}`.
fn bind_config(b: &RawBindConfig, path: &str, d: &mut Diag) -> Option<SocketAddr> {
    d.extra(path, &b.extra, RawBindConfig::KEYS);
    let path = join(path, "source_address");
    let Some(sa) = &b.source_address else {
        d.error(
            &path,
            "missing source_address (expected {\"address\": \"127.0.0.6\", \"port_value\": 0})",
        );
        return None;
    };
    // A bind source usually leaves the port to the kernel; port_value defaults to 0.
    let addr = socket_address(sa, &path, Some(0), d)?;
    if addr.port() != 0 {
        d.warn(format!(
            "{path}.port_value: binding every upstream connection to port {} allows only one \
             connection per destination at a time; 0 lets the kernel choose",
            addr.port()
        ));
    }
    Some(addr)
}

fn host(h: &RawHost, path: &str, d: &mut Diag) -> Option<HostConfig> {
    d.extra(path, &h.extra, RawHost::KEYS);
    let ap = join(path, "address");
    let address = match h.address.as_deref() {
        None => {
            d.error(&ap, "missing address (expected \"ip:port\")");
            None
        }
        Some(a) => match parse_socket_addr(a) {
            Ok(sa) if sa.port() == 0 => {
                d.error(
                    &ap,
                    format!("invalid socket address {a:?}: port 0 cannot be connected to"),
                );
                None
            }
            Ok(sa) => Some(sa),
            Err(reason) => {
                d.error(&ap, format!("invalid socket address {a:?}: {reason}"));
                None
            }
        },
    };
    let weight = match h.weight {
        None => 1,
        Some(w) if HOST_WEIGHTS.contains(&w) => w as u32,
        Some(w) => {
            d.error(
                &join(path, "weight"),
                format!("weight {w} is out of range (1..=128)"),
            );
            return None;
        }
    };
    let metadata = lb::host_metadata(h.metadata.as_ref(), &join(path, "metadata"), d);
    Some(HostConfig {
        address: address?,
        weight,
        metadata,
    })
}
