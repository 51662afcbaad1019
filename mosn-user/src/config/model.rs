//! The validated, typed configuration the daemon runs on.
//!
//! Produced by [`super::load`] / [`super::parse`] from MOSN's JSON (or YAML) shape; everything
//! here has been checked (addresses parsed, clusters referenced by listeners exist, durations
//! positive), so the data path never re-validates.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

pub use super::capture::{CaptureConfig, CaptureMode, InboundPorts, SkMsgConfig, WorkloadConfig};
pub use super::filter::StreamFilterConfig;
pub use super::health::{CircuitBreakersConfig, HealthCheckConfig, OutlierConfig};
pub use super::lb::{LbPolicy, Metadata, MetadataMatch, SubsetConfig};
pub use super::router::RouterConfig;
pub use super::tls::{ChainMatch, PemSource, SanMatcher, TlsContext, TlsVersion};
pub use crate::network::OriginalDst;
pub use crate::protocol::Protocol;

/// Default connect timeout when a cluster gives none: MOSN's default (3 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default idle timeout of a proxied TCP connection: MOSN's tcp_proxy default is 0 (none);
/// Envoy's is 1 h. We follow Envoy so forgotten connections do not live forever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a graceful shutdown waits for live connections (MOSN's default graceful timeout
/// is 30 s).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole running configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub clusters: Vec<ClusterConfig>,
    /// Every `servers[].routers[]`, by `router_config_name` (unique).
    pub routers: Vec<RouterConfig>,
    /// Admin HTTP server address (`admin.address.socket_address`), if configured.
    pub admin: Option<SocketAddr>,
    /// Graceful shutdown drain timeout (extension key `graceful_timeout` at top level, MOSN
    /// spelling, e.g. "30s").
    pub drain_timeout: Duration,
    /// Transparent capture by the kernel programs (extension key `capture`), if configured.
    pub capture: Option<CaptureConfig>,
}

/// One listener (`servers[].listeners[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Extension key `fast_path`.
    pub fast_path: FastPath,
    /// MOSN's `use_original_dst`: this listener receives captured (redirected or
    /// transparently intercepted) connections and recovers where each was going.
    pub original_dst: Option<OriginalDst>,
    /// MOSN's `inspector`: serve TLS and plaintext on one port, telling them apart by the
    /// first bytes of each connection.
    pub inspector: bool,
    /// `filter_chains[]`, in file order (at least one; no two with the same
    /// `filter_chain_match`).
    pub filter_chains: Vec<FilterChainConfig>,
    /// `stream_filters[]`, in order: they run on every `proxy` chain of the listener.
    pub stream_filters: Vec<StreamFilterConfig>,
}

impl ListenerConfig {
    /// The first filter chain's network filter (a listener's only one, until several chains
    /// are served).
    pub fn filter(&self) -> &NetworkFilter {
        &self.filter_chains[0].filter
    }
}

/// One filter chain: which connections it takes, the TLS it terminates, and its network
/// filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterChainConfig {
    /// `filter_chain_match` (Envoy's keys); empty: every connection.
    #[serde(rename = "filter_chain_match")]
    pub chain_match: ChainMatch,
    /// Every enabled `tls_context` / `tls_context_set` element (several: a certificate
    /// chosen by SNI); empty: the chain is plaintext (or passes TLS through untouched).
    #[serde(rename = "tls_context")]
    pub tls: Vec<TlsContext>,
    /// The chain's network filter (one per chain).
    pub filter: NetworkFilter,
}

/// The network filter that handles a listener's connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkFilter {
    /// `tcp_proxy`: pure L4.
    TcpProxy(TcpProxyConfig),
    /// `proxy`: MOSN's L7 proxy (codec, streams, router).
    Proxy(ProxyConfig),
}

impl NetworkFilter {
    /// The `tcp_proxy` config, if this is one.
    pub fn tcp_proxy(&self) -> Option<&TcpProxyConfig> {
        match self {
            NetworkFilter::TcpProxy(t) => Some(t),
            NetworkFilter::Proxy(_) => None,
        }
    }
}

/// Default limit of a request's header block: Envoy's `max_request_headers_kb` default
/// (60 KiB). Larger headers are answered with 431.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 60 * 1024;
/// Default idle timeout of a downstream L7 connection with no request in flight: Envoy's
/// HTTP connection manager default (1 h).
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The `proxy` network filter (MOSN's `Proxy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// `downstream_protocol`.
    pub downstream_protocol: Protocol,
    /// `upstream_protocol` (absent: the downstream protocol).
    pub upstream_protocol: Protocol,
    /// `router_config_name`: the router (`servers[].routers[]`) requests are routed by.
    pub router_config_name: String,
    /// `max_request_header_bytes` (our extension; default
    /// [`DEFAULT_MAX_REQUEST_HEADER_BYTES`]).
    pub max_request_header_bytes: usize,
    /// `idle_timeout`: closes a downstream connection idle this long between requests
    /// (default [`DEFAULT_HTTP_IDLE_TIMEOUT`]; "0s" disables: `None`).
    pub idle_timeout: Option<Duration>,
    /// `max_frame_size` (our extension): the largest RPC frame accepted from either side
    /// (default [`DEFAULT_MAX_FRAME_SIZE`]); a larger one closes its connection with a
    /// codec-exception response.
    pub max_frame_size: usize,
    /// `http2_protocol_options`: HTTP/2 limits, downstream and upstream.
    pub http2: super::http2::Http2Options,
}

/// Default `max_frame_size` of RPC protocols (16 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// Where a listener's pure L4 bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FastPath {
    /// Per connection: kernel splice where it wins, userspace copy otherwise; falls back to
    /// userspace (one warning) when the BPF programs cannot be loaded.
    #[default]
    Auto,
    /// Always splice in the kernel; startup fails if the programs cannot be loaded.
    Kernel,
    /// Always copy in userspace.
    Userspace,
}

/// The `tcp_proxy` network filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpProxyConfig {
    /// `config.cluster`: the cluster used when no route matches (or when there are no routes).
    pub cluster: Option<String>,
    /// `config.routes`: the first route whose source/destination match wins.
    pub routes: Vec<TcpRoute>,
    /// `config.idle_timeout` (absent: [`DEFAULT_IDLE_TIMEOUT`]; "0s" disables).
    ///
    /// Already resolved by validation: `None` means no idle timeout (the file said "0s" or 0);
    /// an absent key has become `Some(DEFAULT_IDLE_TIMEOUT)`. Never `Some(Duration::ZERO)`.
    pub idle_timeout: Option<Duration>,
    /// `config.max_connect_attempts`: hosts tried before giving up (default: every host once,
    /// at most 3 — MOSN retries up to 3 times). Already resolved by validation (>= 1): the
    /// default uses the host count of the largest cluster this tcp_proxy references.
    pub max_connect_attempts: u32,
}

/// One `tcp_proxy` route (`config.routes[]`): MOSN matches on destination/source CIDRs and
/// ports. An empty list matches everything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpRoute {
    pub cluster: String,
    pub destination_addresses: Vec<Cidr>,
    pub source_addresses: Vec<Cidr>,
    /// Inclusive port ranges of the destination (the listener's local port unless
    /// transparent).
    pub destination_ports: Vec<(u16, u16)>,
    pub source_ports: Vec<(u16, u16)>,
}

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let bits = u32::from(self.prefix_len.min(32));
                if bits == 0 {
                    return true;
                }
                let mask = u32::MAX << (32 - bits);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let bits = u32::from(self.prefix_len.min(128));
                if bits == 0 {
                    return true;
                }
                let mask = u128::MAX << (128 - bits);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// One cluster (`cluster_manager.clusters[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    pub name: String,
    /// `type`.
    pub kind: ClusterKind,
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    /// Static hosts; always empty for [`ClusterKind::OriginalDst`].
    pub hosts: Vec<HostConfig>,
    /// `upstream_bind_config.source_address` (Envoy's spelling): the local address upstream
    /// sockets bind before connecting (port 0: the kernel picks the port at connect time).
    pub bind_source: Option<SocketAddr>,
    /// `lb_subset_config`: subset load balancing by host metadata.
    pub lb_subset: Option<SubsetConfig>,
    /// `health_check`: active health checking.
    pub health_check: Option<HealthCheckConfig>,
    /// `outlier_detection`: passive ejection of failing hosts.
    pub outlier_detection: Option<OutlierConfig>,
    /// `circuit_breakers`: limits that answer 503 at once when reached.
    pub circuit_breakers: CircuitBreakersConfig,
    /// `max_request_per_conn` (MOSN): requests in flight on one multiplexed (RPC) upstream
    /// connection; another connection opens when every one is full.
    pub max_request_per_conn: u32,
    /// `heartbeat`: on idle multiplexed upstream connections.
    pub heartbeat: HeartbeatConfig,
    /// `tls_context` with `"status": true`: upstream connections speak TLS.
    pub tls: Option<TlsContext>,
}

/// Default `max_request_per_conn`.
pub const DEFAULT_MAX_REQUEST_PER_CONN: u32 = 1024;

/// Heartbeats on an idle multiplexed upstream connection (MOSN's keepalive: 15 s, close
/// after 6 unanswered).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeartbeatConfig {
    /// Send one after this long without a frame received (`None`: never, `"0s"`).
    pub interval: Option<Duration>,
    /// Close the connection after this many unanswered in a row.
    pub max_failures: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> HeartbeatConfig {
        HeartbeatConfig {
            interval: Some(Duration::from_secs(15)),
            max_failures: 6,
        }
    }
}

/// A cluster's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClusterKind {
    /// `SIMPLE` / `STATIC` (MOSN's default): the configured `hosts`.
    Static,
    /// `ORIGINAL_DST` (MOSN/Envoy): the one host is each connection's original destination,
    /// as recovered by a `use_original_dst` listener.
    OriginalDst,
}

/// A static upstream host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostConfig {
    pub address: SocketAddr,
    /// `weight` (1..=128 in MOSN; default 1). Used by weighted policies later.
    pub weight: u32,
    /// `metadata` (MOSN: `{"filter_metadata": {"mosn.lb": {"version": "v1"}}}`): the
    /// key/value pairs subset load balancing matches on.
    pub metadata: Metadata,
}
