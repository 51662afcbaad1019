//! `filter_chain_match` (Envoy's `FilterChainMatch`) -> [`ChainMatch`]: SNI names, transport
//! protocol and ALPN protocols. Envoy's other criteria (ports, address ranges) cannot be
//! honoured and are warned about.

use serde_json::Value;

use super::ChainMatch;
use super::context::dns_name;
use super::raw::RawChainMatch;
use crate::config::diag::{Diag, index, join};

/// A chain's `filter_chain_match` (at `path`); absent: match everything.
pub(in crate::config) fn chain_match(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> ChainMatch {
    let mut out = ChainMatch::default();
    let Some(raw) = value.and_then(|v| d.decode::<RawChainMatch>(path, v)) else {
        return out;
    };
    d.extra(path, &raw.extra, RawChainMatch::KEYS);
    for (i, name) in raw.server_names.iter().flatten().enumerate() {
        let p = index(path, "server_names", i);
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("*.").unwrap_or(&lower);
        if lower == "*" {
            d.error(
                &p,
                "a bare \"*\" would match every name: leave server_names out for that",
            );
        } else if bare.contains('*') {
            d.error(
                &p,
                format!(
                    "{name:?}: a wildcard is only allowed as a whole first label \
                     (\"*.example.com\")"
                ),
            );
        } else if !dns_name(bare) {
            d.error(&p, format!("{name:?} is not a DNS name"));
        } else if !out.server_names.contains(&lower) {
            out.server_names.push(lower);
        }
    }
    match raw.transport_protocol.as_deref() {
        None | Some("") => {}
        Some(t @ ("tls" | "raw_buffer")) => out.transport_protocol = Some(t.to_owned()),
        Some(other) => d.error(
            &join(path, "transport_protocol"),
            format!("unknown transport_protocol {other:?} (allowed: \"tls\", \"raw_buffer\")"),
        ),
    }
    for (i, p) in raw.application_protocols.iter().flatten().enumerate() {
        let at = index(path, "application_protocols", i);
        if p.is_empty() {
            d.error(&at, "an ALPN protocol must not be empty");
        } else if p.len() > 255 {
            d.error(
                &at,
                format!("an ALPN protocol is at most 255 bytes, not {}", p.len()),
            );
        } else if !out.application_protocols.contains(p) {
            out.application_protocols.push(p.clone());
        }
    }
    out
}

/// Whether two chains take the same connections: equal criteria, in any order.
pub(in crate::config) fn same_match(a: &ChainMatch, b: &ChainMatch) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.transport_protocol == b.transport_protocol
        && sorted(&a.server_names) == sorted(&b.server_names)
        && sorted(&a.application_protocols) == sorted(&b.application_protocols)
}
