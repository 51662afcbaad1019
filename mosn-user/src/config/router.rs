//! Router configuration: MOSN's `servers[].routers[]` (`router_config_name` of a `proxy`
//! filter names one), with virtual hosts, route matches and actions.
//!
//! The validated model types are here, the file's shapes in `raw` and their validation in
//! `validate` (header lists in `headers`). The model keeps regexes and header names as
//! validated strings (it must stay `Serialize` and `PartialEq`); [`crate::router`] compiles
//! them, with [`full_match_regex`] for the anchored ones so that validation and matching
//! agree.

mod headers;
mod raw;
mod validate;

use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::Serialize;

use super::lb::MetadataMatch;

pub(super) use validate::routers;

/// A route's timeout when it gives none: MOSN's default (60 s). `"0s"` means no timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
/// `num_retries` of a retry policy that gives none: Envoy's default, 1 (Go's zero value, which
/// MOSN would read, would silently disable the policy the operator just wrote).
pub const DEFAULT_NUM_RETRIES: u32 = 1;
/// `response_code` of a redirect that gives none: 301, as in MOSN and Envoy.
pub const DEFAULT_REDIRECT_CODE: u16 = 301;
const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];
/// The metadata namespace of `metadata_match.filter_metadata` that the load balancer reads.
const LB_NAMESPACE: &str = "mosn.lb";
/// Pseudo-headers a `match.headers[]` entry may name (Envoy's spelling).
pub const PSEUDO_HEADERS: [&str; 4] = [":method", ":authority", ":path", ":scheme"];
const RETRY_CONDITIONS: &str = "5xx, gateway-error, connect-failure, refused-stream, reset, retriable-status-codes, \
     cancelled, deadline-exceeded, resource-exhausted, unavailable";

// ---------------------------------------------------------------------------------------------
// Model

/// One router (`servers[].routers[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterConfig {
    /// `router_config_name`.
    pub name: String,
    /// `virtual_hosts`, in file order.
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// Header mutations of every route of the router (applied after the route's and the
    /// virtual host's).
    pub headers: HeaderOps,
}

/// `request_headers_to_add` / `_to_remove` and `response_headers_to_add` / `_to_remove` of
/// one level (router, virtual host or route).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HeaderOps {
    pub request_add: Vec<HeaderAdd>,
    /// Lower-case header names.
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<String>,
}

/// `{"header": {"key": k, "value": v}, "append": bool}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderAdd {
    /// A valid header name, lower case.
    pub name: String,
    /// A valid header value.
    pub value: String,
    /// `true`: add another value; `false` (default): replace the header.
    pub append: bool,
}

/// `virtual_hosts[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHostConfig {
    /// `name` (default: `virtual_hosts[i]`).
    pub name: String,
    /// Lower case: `*`, `*.suffix`, `prefix.*` or an exact host (with or without port).
    pub domains: Vec<String>,
    /// `routers`: the first whose match applies wins.
    pub routes: Vec<RouteConfig>,
    pub headers: HeaderOps,
}

/// `virtual_hosts[].routers[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    /// `match`.
    pub matcher: MatchConfig,
    /// `route`, `direct_response` or `redirect`.
    pub action: ActionConfig,
    pub headers: HeaderOps,
}

/// `match`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchConfig {
    /// On the path without the query.
    pub path: PathMatch,
    /// `case_sensitive` (default true), for the path only.
    pub case_sensitive: bool,
    /// `headers`: all must match.
    pub headers: Vec<KeyValueMatch>,
    /// `query_parameters`: all must match.
    pub query_parameters: Vec<KeyValueMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PathMatch {
    /// No path condition (a route matching on `headers` only, as MOSN's RPC routes do).
    Any,
    /// `prefix`.
    Prefix(String),
    /// `path`.
    Exact(String),
    /// `regex`, matching the whole path (see [`full_match_regex`]).
    Regex(String),
}

/// An entry of `headers` or `query_parameters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValueMatch {
    /// Header names are lower case; they may also be one of [`PSEUDO_HEADERS`].
    pub name: String,
    pub value: ValueMatch,
    /// `invert_match`: the entry matches when the condition does not.
    pub invert: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ValueMatch {
    /// No `value`: the header or parameter is present.
    Present,
    Exact(String),
    /// `regex: true`: the value matches the whole pattern.
    Regex(String),
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ActionConfig {
    /// `route`.
    Forward(Box<ForwardConfig>),
    /// `direct_response`.
    DirectResponse { status: u16, body: String },
    /// `redirect`.
    Redirect(RedirectConfig),
}

/// `route`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardConfig {
    pub target: ClusterTarget,
    /// `metadata_match.filter_metadata["mosn.lb"]`, values stringified.
    pub metadata_match: Option<MetadataMatch>,
    /// `timeout`: `None` for `"0s"` (no timeout).
    pub timeout: Option<RouteTimeout>,
    /// `retry_policy`; `None` when it retries nothing.
    pub retry: Option<RetryConfig>,
    pub path_rewrite: Option<PathRewrite>,
    /// `host_rewrite`: a valid header value.
    pub host_rewrite: Option<String>,
    /// `request_mirror_policies`.
    pub mirrors: Vec<MirrorConfig>,
    /// `hash_policy`, in order: the first that yields a value gives the hash.
    pub hash_policy: Vec<HashPolicyConfig>,
}

/// A route's `timeout` other than `"0s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RouteTimeout {
    /// Absent: [`DEFAULT_ROUTE_TIMEOUT`], except that an RPC request carrying its own timeout
    /// (Bolt's timeout field) uses that.
    Default,
    /// Given, greater than zero.
    Given(Duration),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ClusterTarget {
    /// `cluster_name`.
    Name(String),
    /// `cluster_header`: the lower-case name of the header holding the cluster's name.
    Header(String),
    /// `weighted_clusters` (their weights sum to more than 0).
    Weighted(Vec<WeightedClusterConfig>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedClusterConfig {
    pub name: String,
    pub weight: u32,
    /// Replaces the route's `metadata_match` when this cluster is picked.
    pub metadata_match: Option<MetadataMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PathRewrite {
    /// `prefix_rewrite`: replaces the matched `prefix` (or the whole matched `path`).
    Prefix(String),
    /// `regex_rewrite`: every match of `pattern` in the path is replaced by `replacement`,
    /// written in the `regex` crate's syntax (`${1}`; the file's `\1` is converted).
    Regex {
        pattern: String,
        replacement: String,
    },
}

/// `retry_policy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryConfig {
    pub num_retries: u32,
    /// `retry_timeout` / `per_try_timeout` (`None`: absent or 0).
    pub per_try_timeout: Option<Duration>,
    /// `connect-failure`, `refused-stream`, `reset` (and `retry_on: true`).
    pub on_connect_failure: bool,
    /// `5xx` (and `retry_on: true`, as MOSN retries any status >= 500).
    pub on_5xx: bool,
    /// `gateway-error` (and `retry_on: true`).
    pub on_gateway_error: bool,
    /// `status_codes` / `retriable_status_codes`.
    pub on_status: Vec<u16>,
    /// Envoy's gRPC conditions (`cancelled`, `deadline-exceeded`, `resource-exhausted`,
    /// `unavailable`): the `grpc-status` codes retried.
    pub on_grpc: Vec<u32>,
}

/// `request_mirror_policies`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorConfig {
    pub cluster: String,
    /// `percent` / 100 (default 1.0).
    pub fraction: f64,
}

/// `hash_policy[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum HashPolicyConfig {
    /// `{"header": {"key": name}}`: the header's value (lower-case name).
    Header(String),
    /// `{"cookie": {"name": name}}`: the cookie's value.
    Cookie(String),
    /// `{"source_ip": {}}`: the downstream IP address.
    SourceIp,
}

/// `redirect`. Each part left `None` is taken from the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedirectConfig {
    /// `scheme_redirect` (or `https_redirect: true`).
    pub scheme: Option<String>,
    /// `host_redirect`: replaces the whole host (with its port, if any).
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    pub path: Option<RedirectPath>,
    /// `strip_query`.
    pub strip_query: bool,
    /// `response_code`: 301 (default), 302, 303, 307 or 308.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RedirectPath {
    /// `path_redirect`: the whole path (its own `?query`, if any, replaces the request's).
    Path(String),
    /// `prefix_rewrite`: replaces the matched `prefix` (or the whole matched `path`).
    Prefix(String),
}

/// Compiles `pattern` so that it must match the whole input (`^(?:pattern)$`), as route
/// `regex`es and regex header/query matches do.
pub fn full_match_regex(pattern: &str, case_sensitive: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(!case_sensitive)
        .build()
}
