//! File-shaped `tls_context` and `filter_chain_match`, decoded from the raw config's values
//! by validation (so a type error is a collected error with its field path).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::config::raw::{Extra, RawDuration};

/// One `tls_context` (MOSN's `TLSConfig`, plus our extensions).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a tls_context object like {\"status\": true, \"cert_chain\": ...}")]
pub struct RawTlsContext {
    pub status: Option<bool>,
    /// MOSN: selects an extension implementation of TLS.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub cert_chain: Option<String>,
    pub private_key: Option<String>,
    pub ca_cert: Option<String>,
    pub verify_client: Option<bool>,
    pub require_client_cert: Option<bool>,
    pub server_name: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Comma-separated.
    pub cipher_suites: Option<String>,
    /// Comma-separated.
    pub ecdh_curves: Option<String>,
    pub alpn: Option<RawAlpn>,
    pub insecure_skip: Option<bool>,
    pub match_subject_alt_names: Option<Vec<RawSanMatcher>>,
    pub session_ticket_keys: Option<RawTicketKeys>,
    pub handshake_timeout: Option<RawDuration>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawTlsContext {
    pub const KEYS: &'static [&'static str] = &[
        "status",
        "type",
        "cert_chain",
        "private_key",
        "ca_cert",
        "verify_client",
        "require_client_cert",
        "server_name",
        "min_version",
        "max_version",
        "cipher_suites",
        "ecdh_curves",
        "alpn",
        "insecure_skip",
        "match_subject_alt_names",
        "session_ticket_keys",
        "handshake_timeout",
    ];
}

/// `alpn`: an array of protocols, or MOSN's one comma-separated string (`"h2,http/1.1"`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawAlpn {
    Text(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawAlpn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAlpn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of protocols like [\"h2\", \"http/1.1\"]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAlpn, E> {
                Ok(RawAlpn::Text(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawAlpn, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element()? {
                    out.push(p);
                }
                Ok(RawAlpn::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One of `match_subject_alt_names[]` (Envoy's `StringMatcher`): exactly one key.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a matcher object like {\"exact\": \"spiffe://cluster.local/ns/a/sa/b\"}")]
pub struct RawSanMatcher {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawSanMatcher {
    pub const KEYS: &'static [&'static str] = &["exact", "prefix", "suffix", "contains"];
}

/// `session_ticket_keys`: a list of files (each a path or Envoy's `{"filename": ...}`), or
/// Envoy's `{"keys": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of key files like [{\"filename\": \"/etc/mosn/ticket.key\"}]"
)]
pub enum RawTicketKeys {
    List(Vec<RawTicketKey>),
    Envoy(RawEnvoyTicketKeys),
}

/// Envoy's `TlsSessionTicketKeys`.
#[derive(Debug, Default, Deserialize)]
pub struct RawEnvoyTicketKeys {
    pub keys: Option<Vec<RawTicketKey>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawEnvoyTicketKeys {
    pub const KEYS: &'static [&'static str] = &["keys"];
}

/// One session ticket key file.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a key file: a path, or {\"filename\": \"/etc/mosn/ticket.key\"}"
)]
pub enum RawTicketKey {
    Path(String),
    Source(RawDataSource),
}

/// Envoy's `DataSource`; only `filename` is read.
#[derive(Debug, Default, Deserialize)]
pub struct RawDataSource {
    pub filename: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawDataSource {
    pub const KEYS: &'static [&'static str] = &["filename"];
}

/// `filter_chains[].filter_chain_match` (Envoy's `FilterChainMatch`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a filter_chain_match object like {\"server_names\": [\"a.example.com\"]}")]
pub struct RawChainMatch {
    pub server_names: Option<Vec<String>>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawChainMatch {
    pub const KEYS: &'static [&'static str] = &[
        "server_names",
        "transport_protocol",
        "application_protocols",
    ];
}
