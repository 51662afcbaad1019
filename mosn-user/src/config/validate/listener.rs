//! Validation of `servers[].listeners[]`: names, addresses, fast path, original destination,
//! filter chains and stream filters.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::network::{SUPPORTED_FILTERS, proxy, tcp_proxy};
use super::{ListenerRef, ValidListener};
use crate::config::addr::parse_socket_addr;
use crate::config::diag::{Diag, index, join};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::validate::Clusters;

/// What a listener's filters may refer to.
pub(super) struct ListenerCtx<'a> {
    pub clusters: &'a Clusters,
    /// Every `router_config_name` defined (also of routers with errors).
    pub routers: &'a [String],
}

pub(super) fn listeners(
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
    let stream_filters = crate::config::filter::stream_filters(
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
