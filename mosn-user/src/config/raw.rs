//! Serde types of MOSN's config file, as MOSN's examples write it (`pkg/config/v2` in mosn/mosn).
//!
//! These mirror the file, not the daemon: everything is optional here and [`super::validate`]
//! decides what is required, fills defaults and turns strings into addresses and durations.
//!
//! Deliberately *not* `deny_unknown_fields` (unlike the project convention): MOSN configs carry
//! many keys we do not implement yet (`tracing`, `metrics`, `extend_verify`, ...). Refusing them
//! would make every real MOSN file unusable, and dropping them silently would hide real
//! misconfiguration. So every object keeps its unknown keys in `extra`, and validation turns
//! each into a warning naming its full path.
//!
//! Keys use MOSN's spelling. Go's `encoding/json` matches keys case-insensitively; we do not,
//! except where MOSN's own examples use another case (`Name` of a cluster).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

/// Keys of an object that this crate does not read, by name.
pub type Extra = BTreeMap<String, Value>;

/// The whole file (MOSN's `MOSNConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a MOSN config object")]
pub struct RawConfig {
    pub servers: Option<Vec<RawServer>>,
    pub cluster_manager: Option<RawClusterManager>,
    pub admin: Option<RawAdmin>,
    /// Our extension at top level (MOSN has it per server; both are read).
    pub graceful_timeout: Option<RawDuration>,
    /// Our extension: transparent capture by the kernel programs.
    pub capture: Option<RawCapture>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawConfig {
    pub const KEYS: &'static [&'static str] = &[
        "servers",
        "cluster_manager",
        "admin",
        "graceful_timeout",
        "capture",
    ];
}

/// `servers[]` (MOSN's `ServerConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a server object")]
pub struct RawServer {
    pub listeners: Option<Vec<RawListener>>,
    pub graceful_timeout: Option<RawDuration>,
    /// Decoded by [`super::router`].
    pub routers: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawServer {
    pub const KEYS: &'static [&'static str] = &["listeners", "graceful_timeout", "routers"];
}

/// `servers[].listeners[]` (MOSN's `ListenerConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a listener object")]
pub struct RawListener {
    pub name: Option<String>,
    pub address: Option<String>,
    /// MOSN: `true` = really listen on the address. Go's zero value (absent) is `false`.
    pub bind_port: Option<bool>,
    pub filter_chains: Option<Vec<RawFilterChain>>,
    /// Our extension: "auto" | "kernel" | "userspace".
    pub fast_path: Option<String>,
    /// MOSN: "redirect" | "tproxy" (older MOSN: a boolean, `true` meaning "redirect").
    pub use_original_dst: Option<RawOriginalDst>,
    /// MOSN: the L7 stream filters, decoded by [`super::filter`].
    pub stream_filters: Option<Vec<RawFilter>>,
    /// MOSN: serve TLS and plaintext on one port (peek at the first bytes).
    pub inspector: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawListener {
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "address",
        "bind_port",
        "filter_chains",
        "fast_path",
        "use_original_dst",
        "stream_filters",
        "inspector",
    ];
}

/// `filter_chains[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a filter chain object")]
pub struct RawFilterChain {
    pub filters: Option<Vec<RawFilter>>,
    /// Decoded by [`super::tls`].
    pub tls_context: Option<Value>,
    /// Decoded by [`super::tls`]: an array of `tls_context` objects.
    pub tls_context_set: Option<Value>,
    /// Envoy's `filter_chain_match`, decoded by [`super::tls`].
    pub filter_chain_match: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawFilterChain {
    pub const KEYS: &'static [&'static str] = &[
        "filters",
        "tls_context",
        "tls_context_set",
        "filter_chain_match",
    ];
}

/// `filters[]`: `type` selects the filter, `config` is the filter's own object, decoded by
/// validation once the type is known (so a bad `config` is a collected validation error).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a filter object")]
pub struct RawFilter {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub config: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawFilter {
    pub const KEYS: &'static [&'static str] = &["type", "config"];
}

/// The `config` of a `tcp_proxy` filter (MOSN's `TCPProxy`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a tcp_proxy config object")]
pub struct RawTcpProxy {
    pub cluster: Option<String>,
    pub routes: Option<Vec<RawTcpRoute>>,
    pub idle_timeout: Option<RawDuration>,
    pub max_connect_attempts: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawTcpProxy {
    pub const KEYS: &'static [&'static str] =
        &["cluster", "routes", "idle_timeout", "max_connect_attempts"];
}

/// The `config` of a `proxy` filter (MOSN's `Proxy`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a proxy config object")]
pub struct RawProxy {
    pub downstream_protocol: Option<String>,
    pub upstream_protocol: Option<String>,
    pub router_config_name: Option<String>,
    pub max_request_header_bytes: Option<RawSize>,
    pub idle_timeout: Option<RawDuration>,
    /// MOSN's `extend_config`; `sub_protocol` names the protocol of `"X"`.
    pub extend_config: Option<RawExtendConfig>,
    pub max_frame_size: Option<RawSize>,
    /// Envoy's HTTP/2 options ([`super::http2`]).
    pub http2_protocol_options: Option<super::http2::RawHttp2Options>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `proxy` filter's `extend_config` (MOSN: `{"sub_protocol": "bolt"}` with `"X"`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an extend_config object like {\"sub_protocol\": \"bolt\"}")]
pub struct RawExtendConfig {
    pub sub_protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawExtendConfig {
    pub const KEYS: &'static [&'static str] = &["sub_protocol"];
}

impl RawProxy {
    pub const KEYS: &'static [&'static str] = &[
        "downstream_protocol",
        "upstream_protocol",
        "router_config_name",
        "max_request_header_bytes",
        "idle_timeout",
        "extend_config",
        "max_frame_size",
        "http2_protocol_options",
    ];
}

/// `routes[]` of a `tcp_proxy` (MOSN's `TCPRoute`, whose Go fields have no json tags, hence
/// the CamelCase keys).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a tcp_proxy route object")]
pub struct RawTcpRoute {
    #[serde(alias = "Cluster")]
    pub cluster: Option<String>,
    #[serde(rename = "SourceAddrs")]
    pub source_addrs: Option<Vec<RawCidr>>,
    #[serde(rename = "DestinationAddrs")]
    pub destination_addrs: Option<Vec<RawCidr>>,
    #[serde(rename = "SourcePort")]
    pub source_port: Option<RawPorts>,
    #[serde(rename = "DestinationPort")]
    pub destination_port: Option<RawPorts>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawTcpRoute {
    pub const KEYS: &'static [&'static str] = &[
        "cluster",
        "SourceAddrs",
        "DestinationAddrs",
        "SourcePort",
        "DestinationPort",
    ];
}

/// MOSN's `CidrRange`: `{"address": "10.0.0.0", "length": 8}`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an address range object like {\"address\": \"10.0.0.0\", \"length\": 8}")]
pub struct RawCidr {
    pub address: Option<String>,
    pub length: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawCidr {
    pub const KEYS: &'static [&'static str] = &["address", "length"];
}

/// `cluster_manager`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a cluster_manager object")]
pub struct RawClusterManager {
    pub clusters: Option<Vec<RawCluster>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawClusterManager {
    pub const KEYS: &'static [&'static str] = &["clusters"];
}

/// `cluster_manager.clusters[]` (MOSN's `Cluster`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a cluster object")]
pub struct RawCluster {
    pub name: Option<String>,
    /// MOSN's own examples spell it `Name` (Go matches keys case-insensitively).
    #[serde(rename = "Name")]
    pub name_go: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub lb_type: Option<String>,
    pub connect_timeout: Option<RawDuration>,
    pub hosts: Option<Vec<RawHost>>,
    /// Decoded by [`super::tls`].
    pub tls_context: Option<Value>,
    /// Envoy's spelling: `{"source_address": {"address": "127.0.0.6", "port_value": 0}}`.
    #[serde(alias = "upstreamBindConfig")]
    pub upstream_bind_config: Option<RawBindConfig>,
    /// Decoded by [`super::lb`].
    pub lb_subset_config: Option<Value>,
    /// Decoded by [`super::health`].
    pub health_check: Option<Value>,
    /// Decoded by [`super::health`]. MOSN has none; Envoy's name.
    pub outlier_detection: Option<Value>,
    /// Decoded by [`super::health`].
    pub circuit_breakers: Option<Value>,
    /// MOSN's `max_request_per_conn`: requests in flight per multiplexed connection.
    pub max_request_per_conn: Option<u32>,
    /// Heartbeats on idle multiplexed (RPC) upstream connections.
    pub heartbeat: Option<RawHeartbeat>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `clusters[].heartbeat`: `{"interval": "15s", "max_failures": 6}` (MOSN's defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a heartbeat object like {\"interval\": \"15s\", \"max_failures\": 6}")]
pub struct RawHeartbeat {
    pub interval: Option<RawDuration>,
    pub max_failures: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawHeartbeat {
    pub const KEYS: &'static [&'static str] = &["interval", "max_failures"];
}

impl RawCluster {
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "Name",
        "type",
        "lb_type",
        "connect_timeout",
        "hosts",
        "tls_context",
        "upstream_bind_config",
        "lb_subset_config",
        "health_check",
        "outlier_detection",
        "circuit_breakers",
        "max_request_per_conn",
        "heartbeat",
    ];
}

/// `clusters[].upstream_bind_config` (Envoy's `BindConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a bind config object like {\"source_address\": {...}}")]
pub struct RawBindConfig {
    #[serde(alias = "sourceAddress")]
    pub source_address: Option<RawSocketAddress>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawBindConfig {
    pub const KEYS: &'static [&'static str] = &["source_address"];
}

/// `hosts[]` (MOSN's `HostConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a host object")]
pub struct RawHost {
    pub address: Option<String>,
    pub weight: Option<u64>,
    /// Decoded by [`super::lb`].
    pub metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawHost {
    pub const KEYS: &'static [&'static str] = &["address", "weight", "metadata"];
}

/// `admin` (Envoy's bootstrap `Admin`, which MOSN decodes with jsonpb, so the camelCase
/// spellings are accepted too).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an admin object")]
pub struct RawAdmin {
    pub address: Option<RawAdminAddress>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawAdmin {
    pub const KEYS: &'static [&'static str] = &["address"];
}

/// `admin.address`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an address object like {\"socket_address\": {...}}")]
pub struct RawAdminAddress {
    #[serde(alias = "socketAddress")]
    pub socket_address: Option<RawSocketAddress>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawAdminAddress {
    pub const KEYS: &'static [&'static str] = &["socket_address"];
}

/// `admin.address.socket_address`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    expecting = "a socket address object like {\"address\": \"0.0.0.0\", \"port_value\": 34901}"
)]
pub struct RawSocketAddress {
    pub address: Option<String>,
    #[serde(alias = "portValue")]
    pub port_value: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawSocketAddress {
    pub const KEYS: &'static [&'static str] = &["address", "port_value"];
}

/// Top-level `capture` (our extension; see [`super::capture`]).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a capture object")]
pub struct RawCapture {
    pub mode: Option<String>,
    pub outbound_listener: Option<String>,
    pub inbound_listener: Option<String>,
    pub pin_path: Option<String>,
    pub proxy_mark: Option<u64>,
    pub inbound_passthrough_source: Option<String>,
    pub sk_msg: Option<RawSkMsg>,
    pub original_dst_cgroups: Option<Vec<String>>,
    pub workloads: Option<Vec<RawWorkload>>,
    pub workloads_dir: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawCapture {
    pub const KEYS: &'static [&'static str] = &[
        "mode",
        "outbound_listener",
        "inbound_listener",
        "pin_path",
        "proxy_mark",
        "inbound_passthrough_source",
        "sk_msg",
        "original_dst_cgroups",
        "workloads",
        "workloads_dir",
    ];
}

/// `capture.sk_msg`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an sk_msg object like {\"enabled\": true, \"queue_limit\": \"1MiB\"}")]
pub struct RawSkMsg {
    pub enabled: Option<bool>,
    pub queue_limit: Option<RawSize>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawSkMsg {
    pub const KEYS: &'static [&'static str] = &["enabled", "queue_limit"];
}

/// `capture.workloads[]`, or one file of `capture.workloads_dir`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a workload object")]
pub struct RawWorkload {
    pub name: Option<String>,
    pub cgroup: Option<String>,
    pub include_outbound_ports: Option<Vec<RawPorts>>,
    pub exclude_outbound_ports: Option<Vec<RawPorts>>,
    pub include_outbound_cidrs: Option<Vec<String>>,
    pub exclude_outbound_cidrs: Option<Vec<String>>,
    pub include_inbound_ports: Option<RawInboundPorts>,
    pub exclude_inbound_ports: Option<Vec<RawPorts>>,
    pub exclude_uids: Option<Vec<u64>>,
    pub exclude_gids: Option<Vec<u64>>,
    pub sk_msg: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawWorkload {
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "cgroup",
        "include_outbound_ports",
        "exclude_outbound_ports",
        "include_outbound_cidrs",
        "exclude_outbound_cidrs",
        "include_inbound_ports",
        "exclude_inbound_ports",
        "exclude_uids",
        "exclude_gids",
        "sk_msg",
    ];
}

/// A listener's `use_original_dst`: MOSN's "redirect" | "tproxy", or its older boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum RawOriginalDst {
    Text(String),
    Bool(bool),
}

impl<'de> Deserialize<'de> for RawOriginalDst {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawOriginalDst;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"redirect\", \"tproxy\" or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawOriginalDst, E> {
                Ok(RawOriginalDst::Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawOriginalDst, E> {
                Ok(RawOriginalDst::Bool(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A workload's `include_inbound_ports`: `"*"` (every port), or a list like
/// [`RawWorkload::exclude_inbound_ports`]. A single string other than "*" is read as a port
/// list ("8080,9090").
#[derive(Debug, Clone, PartialEq)]
pub enum RawInboundPorts {
    Text(String),
    List(Vec<RawPorts>),
}

impl<'de> Deserialize<'de> for RawInboundPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawInboundPorts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"*\" or a list of ports like [\"8080\", 9090]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawInboundPorts, E> {
                Ok(RawInboundPorts::Text(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawInboundPorts, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element()? {
                    out.push(p);
                }
                Ok(RawInboundPorts::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: an integer number of bytes or a string with a binary unit ("64KiB", "1MiB").
/// Kept unparsed, like [`RawDuration`], so a bad string is a collected validation error.
#[derive(Debug, Clone, PartialEq)]
pub enum RawSize {
    Text(String),
    Bytes(u64),
    /// A number that cannot be a size (negative, fractional); the reason.
    Invalid(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"1MiB\" or an integer number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(match u64::try_from(v) {
                    Ok(n) => RawSize::Bytes(n),
                    Err(_) => RawSize::Invalid(format!("negative size {v}")),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawSize, E> {
                Ok(RawSize::Invalid(format!(
                    "{v} is not a whole number of bytes"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as MOSN accepts it: a Go duration string ("30s", "1m30s", "500ms") or a number,
/// which Go's `time.Duration` JSON encoding reads as **nanoseconds**. Kept unparsed so a bad
/// string becomes a collected validation error with its path, not a fatal parse error.
#[derive(Debug, Clone, PartialEq)]
pub enum RawDuration {
    Text(String),
    Nanos(u64),
    /// A number that cannot be a duration (negative, not finite); the reason.
    Invalid(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"30s\" or an integer number of nanoseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Nanos(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(match u64::try_from(v) {
                    Ok(n) => RawDuration::Nanos(n),
                    Err(_) => RawDuration::Invalid(format!("negative duration {v}")),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                // Go converts a JSON float to time.Duration by truncation.
                Ok(if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                    RawDuration::Nanos(v as u64)
                } else {
                    RawDuration::Invalid(format!("{v} is not a valid number of nanoseconds"))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A port list as MOSN's tcp_proxy routes write it: a string "8080", "8000-9000" or
/// "80,443,8000-9000". A bare integer is accepted too (YAML users write `SourcePort: 8080`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawPorts(pub String);

impl<'de> Deserialize<'de> for RawPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPorts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port string like \"8080\" or \"8000-9000\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPorts, E> {
                Ok(RawPorts(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPorts, E> {
                Ok(RawPorts(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPorts, E> {
                Ok(RawPorts(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
