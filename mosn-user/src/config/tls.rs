//! `tls_context` / `tls_context_set` (MOSN's keys) on a listener's filter chain and on a
//! cluster, and `filter_chain_match` (Envoy's keys) that picks a listener's filter chain.
//!
//! MOSN's `tls_context`: `status`, `cert_chain`, `private_key`, `ca_cert`, `verify_client`,
//! `require_client_cert`, `server_name`, `min_version`, `max_version` (`TLS1.0` .. `TLS1.3`),
//! `cipher_suites` (comma-separated), `ecdh_curves` (comma-separated), `alpn` (array),
//! `insecure_skip`. Our extensions, in Envoy's spelling where Envoy has the key:
//! `match_subject_alt_names` (peer SAN matchers), `session_ticket_keys` (files),
//! `handshake_timeout`.
//!
//! The model types are here; [`chain_tls`], [`cluster_tls`] and [`chain_match`] turn the
//! file's values into them (in `tls/`: the file-shaped types, the names of suites and
//! groups, and the rules).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

mod chain_match;
mod context;
mod names;
mod raw;

pub(in crate::config) use chain_match::{chain_match, same_match};
pub(in crate::config) use context::{chain_tls, cluster_tls};

/// Default time a downstream TLS handshake may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where PEM text comes from: MOSN takes a file path or the PEM itself in the same key
/// (inline when the string contains `-----BEGIN`).
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// Never serialized (the config dump shows `"<inline>"`) nor shown by `Debug` (a private
    /// key must not reach a log or a test's failure message).
    Inline(String),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PemSource::Inline(text) => write!(f, "Inline(<{} bytes>)", text.len()),
        }
    }
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

impl TlsVersion {
    /// MOSN's spelling (`TLS1.2`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS1.0",
            TlsVersion::Tls11 => "TLS1.1",
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// One validated `tls_context` with `"status": true` (a disabled one is absent from the
/// model: `None` on a cluster, no element on a filter chain).
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
    /// At least TLS1.2 (a lower `min_version` is warned about and raised), default TLS1.2.
    pub min_version: TlsVersion,
    /// At least `min_version`, default TLS1.3.
    pub max_version: TlsVersion,
    /// IANA names of suites rustls (ring) implements, in preference order; empty: rustls'
    /// defaults. Written in IANA, OpenSSL, Go or MOSN spelling; validation stores the IANA
    /// name. A version none of whose suites was named keeps its default suites, which
    /// validation appends (as in Go, where `cipher_suites` never restricts TLS1.3), so this
    /// list is exactly what may be negotiated.
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
    /// Listener: a handshake not done in this long closes the connection (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

/// `filter_chain_match` (Envoy's keys): which connections a filter chain takes. Empty: every
/// connection (the default chain; a listener has at most one, as no two of its chains have
/// the same match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainMatch {
    /// SNI names, lowercase, each once: exact (`a.example.com`) or a suffix wildcard
    /// (`*.example.com`).
    pub server_names: Vec<String>,
    /// `"tls"` or `"raw_buffer"`.
    pub transport_protocol: Option<String>,
    /// ALPN protocols offered in the ClientHello (any one of them), each once.
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
