//! `tls_context` / `tls_context_set` (MOSN's keys) on a listener's filter chain and on a
//! cluster, and `filter_chain_match` (Envoy's keys) that picks a listener's filter chain.
//!
//! MOSN's `tls_context`: `status`, `cert_chain`, `private_key`, `ca_cert`, `verify_client`,
//! `require_client_cert`, `server_name`, `min_version`, `max_version` (`TLS1.0` .. `TLS1.3`),
//! `cipher_suites` (comma-separated), `ecdh_curves` (comma-separated), `alpn` (array),
//! `insecure_skip`. Our extensions, in Envoy's spelling where Envoy has the key:
//! `match_subject_alt_names` (peer SAN matchers), `session_ticket_keys` (files),
//! `handshake_timeout`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Default time a downstream TLS handshake may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where PEM text comes from: MOSN takes a file path or the PEM itself in the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// Never serialized (the config dump shows `"<inline>"`).
    Inline(String),
}

impl Serialize for PemSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PemSource::File(p) => s.serialize_str(&p.to_string_lossy()),
            PemSource::Inline(_) => s.serialize_str("<inline>"),
        }
    }
}

/// A protocol version, MOSN's spelling `TLS1.0` .. `TLS1.3` (rustls speaks 1.2 and 1.3;
/// validation refuses a range that leaves neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLS1.0")]
    Tls10,
    #[serde(rename = "TLS1.1")]
    Tls11,
    #[serde(rename = "TLS1.2")]
    Tls12,
    #[serde(rename = "TLS1.3")]
    Tls13,
}

/// How one peer subject alt name must look (Envoy's `StringMatcher`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SanMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

impl SanMatcher {
    pub fn matches(&self, san: &str) -> bool {
        match self {
            SanMatcher::Exact(v) => san == v,
            SanMatcher::Prefix(v) => san.starts_with(v.as_str()),
            SanMatcher::Suffix(v) => san.ends_with(v.as_str()),
            SanMatcher::Contains(v) => san.contains(v.as_str()),
        }
    }
}

/// One validated `tls_context` with `"status": true` (a disabled one is `None` in the model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsContext {
    pub cert_chain: Option<PemSource>,
    pub private_key: Option<PemSource>,
    pub ca_cert: Option<PemSource>,
    /// Listener: verify client certificates against `ca_cert`.
    pub verify_client: bool,
    /// Listener: refuse a client without a certificate (implies `verify_client`).
    pub require_client_cert: bool,
    /// Cluster: the SNI sent and the name verified (else the host's name or address).
    /// Listener (in a `tls_context_set`): the SNI this certificate answers, besides the DNS
    /// names in the certificate itself.
    pub server_name: Option<String>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Validated names (IANA or OpenSSL/Go spelling), in preference order; empty: rustls'
    /// defaults.
    pub cipher_suites: Vec<String>,
    /// Validated group names (`X25519`, `P-256`, `P-384`); empty: rustls' defaults.
    pub ecdh_curves: Vec<String>,
    /// ALPN protocols offered (cluster) or accepted (listener), in preference order.
    pub alpn: Vec<String>,
    /// Cluster: do not verify the server certificate (logged as a warning at startup).
    pub insecure_skip: bool,
    /// Peer certificates must carry a SAN (DNS, URI such as `spiffe://...`, IP) matching one
    /// of these; empty: any peer the CA verifies.
    pub match_subject_alt_names: Vec<SanMatcher>,
    /// Listener: files of 80-byte session ticket keys (Envoy's format; the first encrypts,
    /// every one decrypts), re-read when they change. Empty: keys made at start, shared by
    /// every worker and rotated by time.
    pub session_ticket_keys: Vec<PathBuf>,
    /// Listener: a handshake not done in this long closes the connection.
    pub handshake_timeout: Duration,
}

/// `filter_chain_match` (Envoy's keys): which connections a filter chain takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainMatch {
    /// SNI names: exact (`a.example.com`) or a suffix wildcard (`*.example.com`).
    pub server_names: Vec<String>,
    /// `"tls"` or `"raw_buffer"`.
    pub transport_protocol: Option<String>,
    /// ALPN protocols offered in the ClientHello (any one of them).
    pub application_protocols: Vec<String>,
}

impl ChainMatch {
    /// Whether matching this chain needs the ClientHello (SNI, ALPN or transport).
    pub fn needs_inspection(&self) -> bool {
        !self.server_names.is_empty()
            || self.transport_protocol.is_some()
            || !self.application_protocols.is_empty()
    }
}
