//! Picking a listener's certificate by SNI over every context of its `tls_context_set`.
//!
//! Order: an exact name (the context's `server_name`, or a DNS SAN of its certificate), then a
//! one-label wildcard SAN (`*.example.com` answers `a.example.com`, not `a.b.example.com`),
//! else the first context: the default certificate, also served when the client sends no SNI.

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load::LoadedCert;

struct Entry {
    key: Arc<CertifiedKey>,
    /// Lower case, without a trailing dot.
    exact: Vec<String>,
    /// `*.example.com` stored as `example.com`.
    wildcard_parents: Vec<String>,
}

/// The certificates of one filter chain, in context order.
pub(crate) struct CertSet {
    entries: Vec<Entry>,
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSet")
            .field(
                "names",
                &self.entries.iter().map(|e| &e.exact).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl CertSet {
    /// `certs[i]` and `server_names[i]` belong to context `i`; `certs` is not empty.
    pub fn new(certs: &[LoadedCert], server_names: &[Option<String>]) -> CertSet {
        let entries = certs
            .iter()
            .zip(server_names)
            .map(|(cert, server_name)| {
                let mut exact = Vec::new();
                let mut wildcard_parents = Vec::new();
                let configured = server_name.iter().map(|n| normalize(n));
                for name in configured.chain(cert.dns_names.iter().cloned()) {
                    match name.strip_prefix("*.") {
                        Some(parent) => wildcard_parents.push(parent.to_string()),
                        None => exact.push(name),
                    }
                }
                Entry {
                    key: cert.key.clone(),
                    exact,
                    wildcard_parents,
                }
            })
            .collect();
        CertSet { entries }
    }

    /// The index of the context that answers `sni`.
    pub fn pick(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        let sni = normalize(sni);
        if let Some(i) = self.entries.iter().position(|e| e.exact.contains(&sni)) {
            return i;
        }
        if let Some((_, parent)) = sni.split_once('.')
            && let Some(i) = self
                .entries
                .iter()
                .position(|e| e.wildcard_parents.iter().any(|p| p == parent))
        {
            return i;
        }
        0
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl ResolvesServerCert for CertSet {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = self.pick(hello.server_name());
        self.entries.get(i).map(|e| e.key.clone())
    }
}
