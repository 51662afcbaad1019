//! Raw (file-shaped) config -> validated [`Config`]: fills defaults, parses addresses and
//! durations, checks references and uniqueness. Every problem is collected (not just the
//! first), each with the path of its field; unknown keys become warnings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::Loaded;
use super::addr::{parse_ip, parse_port_ranges, parse_socket_addr};
use super::diag::{Diag, index, join};
use super::error::ConfigError;
use super::model::*;
use super::raw::*;

pub(super) mod capture;
mod cluster;

pub(in crate::config) use cluster::Clusters;
use cluster::clusters;

/// Upper bound of the default `max_connect_attempts`: MOSN's tcp_proxy retries up to 3 times.
const DEFAULT_MAX_CONNECT_ATTEMPTS: u32 = 3;
const SUPPORTED_FILTERS: &str = "supported: tcp_proxy, proxy";

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

/// What a listener's filters may refer to.
struct ListenerCtx<'a> {
    clusters: &'a Clusters,
    /// Every `router_config_name` defined (also of routers with errors).
    routers: &'a [String],
}

fn listeners(
    servers: &[RawServer],
    ctx: &ListenerCtx<'_>,
    refs: &mut HashMap<String, ListenerRef>,
    d: &mut Diag,
) -> Vec<ListenerConfig> {
    let mut out = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, String> = HashMap::new();
    let mut any_listener = false;
    for (s, server) in servers.iter().enumerate() {
        let sp = index("", "servers", s);
        d.extra(&sp, &server.extra, RawServer::KEYS);
        for (i, l) in server.listeners.iter().flatten().enumerate() {
            any_listener = true;
            let path = index(&sp, "listeners", i);
            if let Some(name) = &l.name
                && !name.is_empty()
            {
                if let Some(first) = names.get(name) {
                    d.error(
                        &join(&path, "name"),
                        format!("duplicate listener name {name:?} (also at {first})"),
                    );
                } else {
                    names.insert(name.clone(), path.clone());
                }
            }
            let valid = listener(l, &path, ctx, d);
            if let Some(name) = l.name.as_ref().filter(|n| !n.is_empty()) {
                refs.entry(name.clone()).or_insert_with(|| ListenerRef {
                    path: path.clone(),
                    valid: valid.as_ref().map(|(c, _)| ValidListener {
                        address: c.address,
                        original_dst: c.original_dst,
                        started: false,
                    }),
                });
            }
            let Some((config, bind)) = valid else {
                continue;
            };
            if !bind {
                let why = if l.bind_port.is_none() {
                    "absent"
                } else {
                    "false"
                };
                d.warn(format!(
                    "{path}: listener {:?} is not started: \"bind_port\" is {why} (in MOSN only \
                     \"bind_port\": true listens; virtual listeners are not supported yet)",
                    config.name
                ));
                continue;
            }
            if config.address.port() != 0 {
                if let Some(first) = addrs.get(&config.address) {
                    d.error(
                        &join(&path, "address"),
                        format!(
                            "duplicate listener address {} (also at {first})",
                            config.address
                        ),
                    );
                    continue;
                }
                addrs.insert(config.address, path.clone());
            }
            if let Some(ListenerRef {
                path: p,
                valid: Some(v),
            }) = refs.get_mut(&config.name)
                && *p == path
            {
                v.started = true;
            }
            out.push(config);
        }
    }
    if out.is_empty() {
        let why = if any_listener {
            "none has \"bind_port\": true"
        } else {
            "none is configured"
        };
        d.warn(format!("no listener will be started: {why}"));
    }
    out
}

/// Returns the listener and whether it binds (`bind_port`), if it is fully valid.
fn listener(
    l: &RawListener,
    path: &str,
    ctx: &ListenerCtx<'_>,
    d: &mut Diag,
) -> Option<(ListenerConfig, bool)> {
    let clusters = ctx.clusters;
    let errors_before = d.errors.len();
    d.extra(path, &l.extra, RawListener::KEYS);
    let name = match l.name.as_deref() {
        None => {
            d.error(&join(path, "name"), "missing listener name");
            None
        }
        Some("") => {
            d.error(&join(path, "name"), "listener name must not be empty");
            None
        }
        Some(n) => Some(n.to_owned()),
    };
    let ap = join(path, "address");
    let address = match l.address.as_deref() {
        None => {
            d.error(&ap, "missing address (expected \"ip:port\")");
            None
        }
        Some(a) => parse_socket_addr(a)
            .map_err(|reason| d.error(&ap, format!("invalid socket address {a:?}: {reason}")))
            .ok(),
    };
    let fast_path = match l.fast_path.as_deref() {
        None | Some("auto") => FastPath::Auto,
        Some("kernel") => FastPath::Kernel,
        Some("userspace") => FastPath::Userspace,
        Some(other) => {
            d.error(
                &join(path, "fast_path"),
                format!(
                    "invalid fast_path {other:?} (allowed: \"auto\", \"kernel\", \"userspace\")"
                ),
            );
            FastPath::Auto
        }
    };
    let original_dst = match &l.use_original_dst {
        None | Some(RawOriginalDst::Bool(false)) => None,
        Some(RawOriginalDst::Bool(true)) => Some(OriginalDst::Redirect),
        Some(RawOriginalDst::Text(t)) if t == "redirect" => Some(OriginalDst::Redirect),
        Some(RawOriginalDst::Text(t)) if t == "tproxy" => Some(OriginalDst::Tproxy),
        Some(RawOriginalDst::Text(other)) => {
            d.error(
                &join(path, "use_original_dst"),
                format!(
                    "invalid use_original_dst {other:?} (allowed: \"redirect\", \"tproxy\", \
                     or true for \"redirect\")"
                ),
            );
            None
        }
    };
    let filter = filter_chains(l, path, ctx, d);
    let stream_filters = super::filter::stream_filters(
        l.stream_filters.as_deref().unwrap_or_default(),
        path,
        clusters,
        d,
    );
    if !stream_filters.is_empty() {
        let sf = join(path, "stream_filters");
        match &filter {
            Some(NetworkFilter::TcpProxy(_)) => d.error(
                &sf,
                "stream filters need an L7 listener (a \"proxy\" network filter), not tcp_proxy",
            ),
            // RPC requests go through the filters too (mirror included).
            Some(NetworkFilter::Proxy(_)) => {}
            None => {}
        }
    }
    if d.errors.len() != errors_before {
        return None;
    }
    let filter = filter?;
    if let (None, NetworkFilter::TcpProxy(tcp_proxy)) = (original_dst, &filter) {
        let referenced = tcp_proxy
            .cluster
            .iter()
            .chain(tcp_proxy.routes.iter().map(|r| &r.cluster));
        if let Some(c) = referenced
            .into_iter()
            .find(|c| clusters.original_dst.contains(*c))
        {
            d.warn(format!(
                "{path}: listener {:?} has no \"use_original_dst\"; its ORIGINAL_DST cluster \
                 {c:?} only serves connections handed over by a \"use_original_dst\" listener \
                 (others are closed)",
                name.as_deref().unwrap_or_default()
            ));
        }
    }
    Some((
        ListenerConfig {
            name: name?,
            address: address?,
            fast_path,
            original_dst,
            filter,
            stream_filters,
        },
        l.bind_port == Some(true),
    ))
}

fn filter_chains(
    l: &RawListener,
    path: &str,
    ctx: &ListenerCtx<'_>,
    d: &mut Diag,
) -> Option<NetworkFilter> {
    let clusters = ctx.clusters;
    let chains = l.filter_chains.as_deref().unwrap_or_default();
    if chains.is_empty() {
        d.error(
            &join(path, "filter_chains"),
            "a listener needs one filter chain with a tcp_proxy or proxy filter",
        );
        return None;
    }
    if chains.len() > 1 {
        d.error(
            &index(path, "filter_chains", 1),
            "only one filter chain per listener is supported",
        );
    }
    let mut found: Option<(String, Option<NetworkFilter>)> = None;
    for (c, chain) in chains.iter().enumerate() {
        let cp = index(path, "filter_chains", c);
        d.extra(&cp, &chain.extra, RawFilterChain::KEYS);
        d.tls(&join(&cp, "tls_context"), chain.tls_context.as_ref());
        d.tls(
            &join(&cp, "tls_context_set"),
            chain.tls_context_set.as_ref(),
        );
        let filters = chain.filters.as_deref().unwrap_or_default();
        if filters.is_empty() {
            d.error(
                &join(&cp, "filters"),
                format!("a filter chain needs a network filter ({SUPPORTED_FILTERS})"),
            );
        }
        for (f, filter) in filters.iter().enumerate() {
            let fp = index(&cp, "filters", f);
            d.extra(&fp, &filter.extra, RawFilter::KEYS);
            match filter.kind.as_deref() {
                None => d.error(
                    &join(&fp, "type"),
                    format!("missing filter type ({SUPPORTED_FILTERS})"),
                ),
                Some(kind @ ("tcp_proxy" | "proxy")) => {
                    let config = if kind == "proxy" {
                        proxy(filter.config.as_ref(), &fp, ctx, d).map(NetworkFilter::Proxy)
                    } else {
                        tcp_proxy(filter.config.as_ref(), &fp, clusters, d)
                            .map(NetworkFilter::TcpProxy)
                    };
                    if let Some((first, _)) = &found {
                        d.error(
                            &fp,
                            format!(
                                "only one network filter (tcp_proxy or proxy) per listener \
                                 (first at {first})"
                            ),
                        );
                    } else {
                        found = Some((fp, config));
                    }
                }
                Some(other) => d.error(
                    &join(&fp, "type"),
                    format!("filter type {other:?} is not supported yet ({SUPPORTED_FILTERS})"),
                ),
            }
        }
    }
    found.and_then(|(_, config)| config)
}

fn tcp_proxy(
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

fn proxy(
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
    let http2 = super::http2::validate(
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
    match super::size::parse_raw_size(v) {
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
