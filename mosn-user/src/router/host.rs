//! Picking the virtual host of a request by its host: exact domain, then the longest suffix
//! wildcard (`*.foo.com`), then the longest prefix wildcard (`foo.*`), then `*`. Each step
//! tries the host as sent, then without its port.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::router::VirtualHostConfig;

/// Domains of a router's virtual hosts, by kind; values are indexes of virtual hosts.
#[derive(Debug, Default)]
pub(super) struct DomainIndex {
    exact: HashMap<String, usize>,
    /// `*.foo.com` as `.foo.com`, longest first.
    suffixes: Vec<(String, usize)>,
    /// `foo.*` as `foo.`, longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl DomainIndex {
    /// Domains are lower case and unique (validated); on a duplicate the first one wins.
    pub fn new(vhosts: &[VirtualHostConfig]) -> DomainIndex {
        let mut ix = DomainIndex::default();
        for (i, vh) in vhosts.iter().enumerate() {
            for domain in &vh.domains {
                if domain == "*" {
                    ix.any.get_or_insert(i);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    ix.suffixes.push((suffix.to_owned(), i));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    ix.prefixes.push((prefix.to_owned(), i));
                } else {
                    ix.exact.entry(domain.clone()).or_insert(i);
                }
            }
        }
        // Stable sorts: among equal lengths the earlier virtual host stays first.
        ix.suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        ix.prefixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        ix
    }

    /// The virtual host for `host` (the `Host` header or the URI's authority; "" if none).
    pub fn find(&self, host: &str) -> Option<usize> {
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let full = host.as_ref();
        let bare = strip_port(full);
        let candidates = [Some(full), (bare != full).then_some(bare)];
        let hosts = candidates.iter().flatten();
        hosts
            .clone()
            .find_map(|h| self.exact.get(*h).copied())
            .or_else(|| {
                hosts.clone().find_map(|h| {
                    let hit =
                        |(s, _): &&(String, usize)| h.len() > s.len() && h.ends_with(s.as_str());
                    self.suffixes.iter().find(hit).map(|(_, i)| *i)
                })
            })
            .or_else(|| {
                hosts.clone().find_map(|h| {
                    let hit =
                        |(p, _): &&(String, usize)| h.len() > p.len() && h.starts_with(p.as_str());
                    self.prefixes.iter().find(hit).map(|(_, i)| *i)
                })
            })
            .or(self.any)
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub(super) fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    }
}
