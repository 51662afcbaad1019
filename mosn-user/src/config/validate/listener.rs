//! Validation of `servers[].listeners[]`: names, addresses, fast path, original destination,
//! filter chains (their match, TLS and network filter) and stream filters.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::network::{SUPPORTED_FILTERS, proxy, tcp_proxy};
use super::{ListenerRef, ValidListener};
use crate::config::addr::parse_socket_addr;
use crate::config::diag::{Diag, index, join};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::tls;
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
    let filter_chains = filter_chains(l, path, ctx, d);
    let stream_filters = crate::config::filter::stream_filters(
        l.stream_filters.as_deref().unwrap_or_default(),
        path,
        clusters,
        d,
    );
    // RPC requests go through the filters too (mirror included).
    if let Some(chains) = &filter_chains
        && !stream_filters.is_empty()
        && !chains
            .iter()
            .any(|c| matches!(c.filter, NetworkFilter::Proxy(_)))
    {
        d.error(
            &join(path, "stream_filters"),
            "stream filters need an L7 listener (a \"proxy\" network filter on a chain), not only \
             tcp_proxy",
        );
    }
    let inspector = l.inspector == Some(true);
    if let Some(chains) = &filter_chains {
        let terminating = chains.iter().filter(|c| !c.tls.is_empty()).count();
        if fast_path == FastPath::Kernel && terminating == chains.len() {
            d.error(
                &join(path, "fast_path"),
                "\"kernel\" cannot carry the TLS that mosn terminates on every filter chain \
                 here (the kernel splice moves bytes untouched); use \"auto\" or \"userspace\"",
            );
        }
        if inspector && terminating == 0 {
            d.warn(format!(
                "{}: no filter chain terminates TLS, so there is nothing to tell plaintext \
                 from; ignored",
                join(path, "inspector")
            ));
        }
    }
    if d.errors.len() != errors_before {
        return None;
    }
    let filter_chains = filter_chains?;
    if original_dst.is_none() {
        for c in &filter_chains {
            let NetworkFilter::TcpProxy(tcp_proxy) = &c.filter else {
                continue;
            };
            let referenced = tcp_proxy
                .cluster
                .iter()
                .chain(tcp_proxy.routes.iter().map(|r| &r.cluster));
            if let Some(c) = referenced
                .into_iter()
                .find(|c| clusters.original_dst.contains(*c))
            {
                d.warn(format!(
                    "{path}: listener {:?} has no \"use_original_dst\"; its ORIGINAL_DST \
                     cluster {c:?} only serves connections handed over by a \
                     \"use_original_dst\" listener (others are closed)",
                    name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    Some((
        ListenerConfig {
            name: name?,
            address: address?,
            fast_path,
            original_dst,
            inspector: inspector && filter_chains.iter().any(|c| !c.tls.is_empty()),
            filter_chains,
            stream_filters,
        },
        l.bind_port == Some(true),
    ))
}

/// Every filter chain of a listener, if all are valid: its match (no two alike), its TLS and
/// its network filter.
fn filter_chains(
    l: &RawListener,
    path: &str,
    ctx: &ListenerCtx<'_>,
    d: &mut Diag,
) -> Option<Vec<FilterChainConfig>> {
    let chains = l.filter_chains.as_deref().unwrap_or_default();
    if chains.is_empty() {
        d.error(
            &join(path, "filter_chains"),
            "a listener needs a filter chain with a tcp_proxy or proxy filter",
        );
        return None;
    }
    let errors_before = d.errors.len();
    let mut out = Vec::new();
    let mut matches: Vec<(usize, ChainMatch)> = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        let cp = index(path, "filter_chains", c);
        d.extra(&cp, &chain.extra, RawFilterChain::KEYS);
        let mp = join(&cp, "filter_chain_match");
        let match_errors = d.errors.len();
        let chain_match = tls::chain_match(chain.filter_chain_match.as_ref(), &mp, d);
        if d.errors.len() == match_errors {
            if let Some((first, _)) = matches
                .iter()
                .find(|(_, m)| tls::same_match(m, &chain_match))
            {
                d.error(&mp, format!("same match as filter_chains[{first}]"));
            }
            matches.push((c, chain_match.clone()));
        }
        let tls = tls::chain_tls(
            chain.tls_context.as_ref(),
            chain.tls_context_set.as_ref(),
            &cp,
            d,
        );
        if !tls.is_empty() && chain_match.transport_protocol.as_deref() == Some("raw_buffer") {
            d.error(
                &join(&mp, "transport_protocol"),
                "\"raw_buffer\" takes plaintext connections, but this chain terminates TLS",
            );
        }
        if let Some(filter) = network_filter(chain, &cp, ctx, d) {
            out.push(FilterChainConfig {
                chain_match,
                tls,
                filter,
            });
        }
    }
    (d.errors.len() == errors_before).then_some(out)
}

/// A chain's one network filter.
fn network_filter(
    chain: &RawFilterChain,
    cp: &str,
    ctx: &ListenerCtx<'_>,
    d: &mut Diag,
) -> Option<NetworkFilter> {
    let filters = chain.filters.as_deref().unwrap_or_default();
    if filters.is_empty() {
        d.error(
            &join(cp, "filters"),
            format!("a filter chain needs a network filter ({SUPPORTED_FILTERS})"),
        );
    }
    let mut found: Option<(String, Option<NetworkFilter>)> = None;
    for (f, filter) in filters.iter().enumerate() {
        let fp = index(cp, "filters", f);
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
                    tcp_proxy(filter.config.as_ref(), &fp, ctx.clusters, d)
                        .map(NetworkFilter::TcpProxy)
                };
                if let Some((first, _)) = &found {
                    d.error(
                        &fp,
                        format!(
                            "only one network filter (tcp_proxy or proxy) per filter chain \
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
    found.and_then(|(_, config)| config)
}
