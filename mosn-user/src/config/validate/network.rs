//! Validation of a filter chain's network filters: `tcp_proxy` (with its routes) and `proxy`.

use std::time::Duration;

use serde_json::Value;

use super::listener::ListenerCtx;
use crate::config::addr::{parse_ip, parse_port_ranges};
use crate::config::diag::{Diag, index, join};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::validate::Clusters;

/// Upper bound of the default `max_connect_attempts`: MOSN's tcp_proxy retries up to 3 times.
const DEFAULT_MAX_CONNECT_ATTEMPTS: u32 = 3;
pub(super) const SUPPORTED_FILTERS: &str = "supported: tcp_proxy, proxy";

pub(super) fn tcp_proxy(
    config: Option<&Value>,
    filter_path: &str,
    clusters: &Clusters,
    d: &mut Diag,
) -> Option<TcpProxyConfig> {
    let path = join(filter_path, "config");
    let Some(value) = config else {
        d.error(
            &path,
            "missing tcp_proxy config (needs \"cluster\" or \"routes\")",
        );
        return None;
    };
    let raw: RawTcpProxy = match serde_path_to_error::deserialize(value) {
        Ok(raw) => raw,
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path
            } else {
                join(&path, &inner)
            };
            d.error(&at, e.into_inner().to_string());
            return None;
        }
    };
    let errors_before = d.errors.len();
    d.extra(&path, &raw.extra, RawTcpProxy::KEYS);

    let mut referenced = Vec::new();
    if let Some(cluster) = &raw.cluster {
        clusters.check_ref(&join(&path, "cluster"), cluster, d);
        referenced.push(cluster.clone());
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().flatten().enumerate() {
        let rp = index(&path, "routes", i);
        if let Some(route) = tcp_route(r, &rp, clusters, d) {
            referenced.push(route.cluster.clone());
            routes.push(route);
        }
    }
    if raw.cluster.is_none() && raw.routes.as_ref().is_none_or(Vec::is_empty) {
        d.error(&path, "tcp_proxy needs \"cluster\" or \"routes\"");
    }

    let idle_timeout = match &raw.idle_timeout {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(t) => match d.duration(&join(&path, "idle_timeout"), t) {
            Some(Duration::ZERO) => None,
            other => other,
        },
    };
    let max_connect_attempts = match raw.max_connect_attempts {
        None => {
            // Every host of the largest referenced cluster once, at most 3.
            let hosts = referenced
                .iter()
                .filter_map(|c| clusters.host_counts.get(c))
                .max()
                .copied()
                .unwrap_or(1);
            (hosts as u32).clamp(1, DEFAULT_MAX_CONNECT_ATTEMPTS)
        }
        Some(n @ 1..=0xffff_ffff) => n as u32,
        Some(n) => {
            d.error(
                &join(&path, "max_connect_attempts"),
                format!(
                    "max_connect_attempts must be between 1 and {}, not {n}",
                    u32::MAX
                ),
            );
            1
        }
    };
    (d.errors.len() == errors_before).then(|| TcpProxyConfig {
        cluster: raw.cluster.clone(),
        routes,
        idle_timeout,
        max_connect_attempts,
    })
}

pub(super) fn proxy(
    config: Option<&Value>,
    filter_path: &str,
    ctx: &ListenerCtx<'_>,
    d: &mut Diag,
) -> Option<ProxyConfig> {
    let path = join(filter_path, "config");
    let Some(value) = config else {
        d.error(
            &path,
            "missing proxy config (needs \"downstream_protocol\" and \"router_config_name\")",
        );
        return None;
    };
    let raw: RawProxy = d.decode(&path, value)?;
    let errors_before = d.errors.len();
    d.extra(&path, &raw.extra, RawProxy::KEYS);
    let supported = || {
        Protocol::names()
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sub_protocol = match &raw.extend_config {
        Some(e) => {
            d.extra(
                &join(&path, "extend_config"),
                &e.extra,
                RawExtendConfig::KEYS,
            );
            e.sub_protocol.as_deref()
        }
        None => None,
    };
    let mut protocol = |key: &str, v: Option<&str>| -> Option<Protocol> {
        let v = v?;
        if v.eq_ignore_ascii_case("X") {
            // MOSN's form: "X" with extend_config.sub_protocol naming the X-Protocol.
            let sub_path = join(&join(&path, "extend_config"), "sub_protocol");
            let names = crate::protocol::x_protocols()
                .iter()
                .map(|p| format!("{:?}", p.name()))
                .collect::<Vec<_>>()
                .join(", ");
            return match sub_protocol {
                None => {
                    d.error(
                        &sub_path,
                        format!("\"X\" needs extend_config.sub_protocol (one of {names})"),
                    );
                    None
                }
                Some(s) => {
                    let p = crate::protocol::x_protocol(&s.trim().to_ascii_lowercase());
                    if p.is_none() {
                        d.error(
                            &sub_path,
                            format!("unknown sub_protocol {s:?} (supported: {names})"),
                        );
                    }
                    p.map(Protocol::X)
                }
            };
        }
        let p = Protocol::parse(v);
        if p.is_none() {
            d.error(
                &join(&path, key),
                format!("unsupported protocol {v:?} (supported: {})", supported()),
            );
        }
        p
    };
    let downstream = protocol("downstream_protocol", raw.downstream_protocol.as_deref());
    let upstream = protocol("upstream_protocol", raw.upstream_protocol.as_deref());
    if raw.downstream_protocol.is_none() {
        d.error(
            &join(&path, "downstream_protocol"),
            format!("missing downstream_protocol (supported: {})", supported()),
        );
    }
    // HTTP/1 and HTTP/2 convert into each other (an "Auto" listener's HTTP requests too);
    // an RPC protocol only goes upstream as itself.
    if let (Some(down), Some(up)) = (downstream, upstream)
        && down != up
        && !(up.is_http() && (down.is_http() || down == Protocol::Auto))
    {
        d.error(
            &join(&path, "upstream_protocol"),
            format!(
                "{:?} downstream with {:?} upstream: protocol conversion is not supported \
                 (leave upstream_protocol out to use the downstream protocol)",
                down.name(),
                up.name()
            ),
        );
    }
    let max_frame_size = size_in(
        raw.max_frame_size.as_ref(),
        &join(&path, "max_frame_size"),
        (1024, 1 << 30, "1KiB..=1GiB"),
        DEFAULT_MAX_FRAME_SIZE,
        d,
    );
    let router = match raw.router_config_name.as_deref() {
        None | Some("") => {
            d.error(
                &join(&path, "router_config_name"),
                "missing router_config_name (the name of a servers[].routers[] entry)",
            );
            None
        }
        Some(r) if !ctx.routers.iter().any(|n| n == r) => {
            let defined = if ctx.routers.is_empty() {
                "no routers are defined".to_owned()
            } else {
                format!("defined routers: {}", ctx.routers.join(", "))
            };
            d.error(
                &join(&path, "router_config_name"),
                format!("unknown router {r:?} ({defined})"),
            );
            None
        }
        Some(r) => Some(r.to_owned()),
    };
    let max_request_header_bytes = size_in(
        raw.max_request_header_bytes.as_ref(),
        &join(&path, "max_request_header_bytes"),
        (1024, 1 << 20, "1KiB..=1MiB"),
        DEFAULT_MAX_REQUEST_HEADER_BYTES,
        d,
    );
    let idle_timeout = match &raw.idle_timeout {
        None => Some(DEFAULT_HTTP_IDLE_TIMEOUT),
        Some(t) => match d.duration(&join(&path, "idle_timeout"), t) {
            Some(Duration::ZERO) => None,
            other => other,
        },
    };
    let http2 = crate::config::http2::validate(
        raw.http2_protocol_options.as_ref(),
        &join(&path, "http2_protocol_options"),
        d,
    );
    if d.errors.len() != errors_before {
        return None;
    }
    let downstream_protocol = downstream?;
    Some(ProxyConfig {
        downstream_protocol,
        upstream_protocol: upstream.unwrap_or(downstream_protocol),
        router_config_name: router?,
        max_request_header_bytes,
        idle_timeout,
        max_frame_size,
        http2,
    })
}

/// A size key (`"64KiB"` or a number of bytes) within `(min, max, as written)`; `default`
/// when absent or wrong (the error is recorded).
fn size_in(
    raw: Option<&RawSize>,
    path: &str,
    (min, max, range): (u64, u64, &str),
    default: usize,
    d: &mut Diag,
) -> usize {
    let Some(v) = raw else {
        return default;
    };
    match crate::config::size::parse_raw_size(v) {
        Ok(n) if (min..=max).contains(&n) => n as usize,
        Ok(n) => {
            d.error(path, format!("{n} bytes is out of range ({range})"));
            default
        }
        Err(reason) => {
            d.error(path, reason);
            default
        }
    }
}

fn tcp_route(r: &RawTcpRoute, path: &str, clusters: &Clusters, d: &mut Diag) -> Option<TcpRoute> {
    let errors_before = d.errors.len();
    d.extra(path, &r.extra, RawTcpRoute::KEYS);
    let cluster = match &r.cluster {
        None => {
            d.error(&join(path, "cluster"), "missing cluster of route");
            None
        }
        Some(c) => {
            clusters.check_ref(&join(path, "cluster"), c, d);
            Some(c.clone())
        }
    };
    let cidrs = |key: &str, list: &Option<Vec<RawCidr>>, d: &mut Diag| -> Vec<Cidr> {
        let mut out = Vec::new();
        for (i, c) in list.iter().flatten().enumerate() {
            out.extend(cidr(c, &index(path, key, i), d));
        }
        out
    };
    let source_addresses = cidrs("SourceAddrs", &r.source_addrs, d);
    let destination_addresses = cidrs("DestinationAddrs", &r.destination_addrs, d);
    let ports = |key: &str, raw: &Option<RawPorts>, d: &mut Diag| -> Vec<(u16, u16)> {
        let Some(RawPorts(s)) = raw else {
            return Vec::new();
        };
        parse_port_ranges(s).unwrap_or_else(|reason| {
            d.error(
                &join(path, key),
                format!("invalid port list {s:?}: {reason}"),
            );
            Vec::new()
        })
    };
    let source_ports = ports("SourcePort", &r.source_port, d);
    let destination_ports = ports("DestinationPort", &r.destination_port, d);
    if d.errors.len() != errors_before {
        return None;
    }
    Some(TcpRoute {
        cluster: cluster?,
        destination_addresses,
        source_addresses,
        destination_ports,
        source_ports,
    })
}

fn cidr(c: &RawCidr, path: &str, d: &mut Diag) -> Option<Cidr> {
    d.extra(path, &c.extra, RawCidr::KEYS);
    let ap = join(path, "address");
    let addr = match c.address.as_deref() {
        None => {
            d.error(&ap, "missing address");
            None
        }
        Some(a) => parse_ip(a)
            .map_err(|reason| d.error(&ap, format!("invalid address {a:?}: {reason}")))
            .ok(),
    }?;
    let lp = join(path, "length");
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match c.length {
        None => {
            d.error(&lp, format!("missing prefix length (0..={max})"));
            None
        }
        Some(len) if len <= max => Some(Cidr {
            addr,
            prefix_len: len as u8,
        }),
        Some(len) => {
            d.error(
                &lp,
                format!("prefix length {len} is out of range for {addr} (0..={max})"),
            );
            None
        }
    }
}
