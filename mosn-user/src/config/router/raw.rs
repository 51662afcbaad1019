//! Serde shapes of a router as the file writes it: MOSN's `v2.RouterConfiguration`, with
//! Envoy's spellings where noted. Unknown keys are kept in `extra` (see [`crate::config::raw`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::raw::{Extra, RawDuration};

macro_rules! raw {
    ($(#[$m:meta])* $name:ident ($what:literal) { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? }
     keys [$($key:literal),* $(,)?]) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(expecting = $what)]
        pub struct $name {
            $($(#[$fm])* pub $field: Option<$ty>,)*
            #[serde(flatten)]
            pub extra: Extra,
        }
        impl $name {
            pub const KEYS: &'static [&'static str] = &[$($key),*];
        }
    };
}

raw!(/// `servers[].routers[]`.
RawRouter ("a router object") {
    router_config_name: String,
    virtual_hosts: Vec<RawVirtualHost>,
    request_headers_to_add: Vec<RawHeaderAdd>,
    request_headers_to_remove: Vec<String>,
    response_headers_to_add: Vec<RawHeaderAdd>,
    response_headers_to_remove: Vec<String>,
} keys ["router_config_name", "virtual_hosts", "request_headers_to_add",
    "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]);

raw!(/// `virtual_hosts[]`.
RawVirtualHost ("a virtual host object") {
    name: String,
    domains: Vec<String>,
    routers: Vec<RawRoute>,
    request_headers_to_add: Vec<RawHeaderAdd>,
    request_headers_to_remove: Vec<String>,
    response_headers_to_add: Vec<RawHeaderAdd>,
    response_headers_to_remove: Vec<String>,
} keys ["name", "domains", "routers", "request_headers_to_add", "request_headers_to_remove",
    "response_headers_to_add", "response_headers_to_remove"]);

raw!(/// `virtual_hosts[].routers[]`.
RawRoute ("a route object") {
    #[serde(rename = "match")]
    matcher: RawMatch,
    route: RawForward,
    direct_response: RawDirectResponse,
    redirect: RawRedirect,
    request_headers_to_add: Vec<RawHeaderAdd>,
    request_headers_to_remove: Vec<String>,
    response_headers_to_add: Vec<RawHeaderAdd>,
    response_headers_to_remove: Vec<String>,
} keys ["match", "route", "direct_response", "redirect", "request_headers_to_add",
    "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]);

raw!(/// `{"header": {"key": k, "value": v}, "append": false}`.
RawHeaderAdd ("a header object like {\"header\": {\"key\": \"k\", \"value\": \"v\"}}") {
    header: RawKeyValue,
    append: bool,
} keys ["header", "append"]);

raw!(RawKeyValue ("an object like {\"key\": \"k\", \"value\": \"v\"}") {
    key: String,
    value: String,
} keys ["key", "value"]);

raw!(/// `match`.
RawMatch ("a match object") {
    prefix: String,
    path: String,
    regex: String,
    case_sensitive: bool,
    headers: Vec<RawKeyValueMatch>,
    query_parameters: Vec<RawKeyValueMatch>,
} keys ["prefix", "path", "regex", "case_sensitive", "headers", "query_parameters"]);

raw!(/// `match.headers[]` / `match.query_parameters[]`.
RawKeyValueMatch ("an object like {\"name\": \"n\", \"value\": \"v\"}") {
    name: String,
    value: String,
    regex: bool,
    invert_match: bool,
} keys ["name", "value", "regex", "invert_match"]);

raw!(/// `route`.
RawForward ("a route action object") {
    cluster_name: String,
    cluster_header: String,
    weighted_clusters: Vec<RawWeightedEntry>,
    metadata_match: RawMetadata,
    timeout: RawDuration,
    retry_policy: RawRetry,
    prefix_rewrite: String,
    regex_rewrite: RawRegexRewrite,
    host_rewrite: String,
    request_mirror_policies: OneOrMany<RawMirror>,
    hash_policy: Vec<RawHashPolicy>,
} keys ["cluster_name", "cluster_header", "weighted_clusters", "metadata_match", "timeout",
    "retry_policy", "prefix_rewrite", "regex_rewrite", "host_rewrite",
    "request_mirror_policies", "hash_policy"]);

raw!(/// `weighted_clusters[]`: `{"cluster": {...}}`.
RawWeightedEntry ("an object like {\"cluster\": {\"name\": \"c\", \"weight\": 50}}") {
    cluster: RawWeightedCluster,
} keys ["cluster"]);

raw!(RawWeightedCluster ("a weighted cluster object") {
    name: String,
    weight: u32,
    metadata_match: RawMetadata,
} keys ["name", "weight", "metadata_match"]);

raw!(/// `{"filter_metadata": {"mosn.lb": {k: v}}}`.
RawMetadata ("an object like {\"filter_metadata\": {\"mosn.lb\": {\"k\": \"v\"}}}") {
    filter_metadata: BTreeMap<String, BTreeMap<String, Value>>,
} keys ["filter_metadata"]);

raw!(/// `retry_policy`.
RawRetry ("a retry policy object") {
    retry_on: RawRetryOn,
    #[serde(alias = "per_try_timeout")]
    retry_timeout: RawDuration,
    num_retries: u32,
    #[serde(alias = "retriable_status_codes")]
    status_codes: Vec<u16>,
} keys ["retry_on", "retry_timeout", "per_try_timeout", "num_retries", "status_codes",
    "retriable_status_codes"]);

raw!(/// `regex_rewrite`: `{"pattern": {"regex": "..."}, "substitution": "..."}`.
RawRegexRewrite ("a regex rewrite object") {
    pattern: RawRegexPattern,
    substitution: String,
} keys ["pattern", "substitution"]);

raw!(RawRegexPattern ("an object like {\"regex\": \"^/a/(.*)\"}") {
    regex: String,
    /// Envoy's engine selector, accepted and ignored: there is one engine here.
    #[expect(dead_code, reason = "read only so that it is not reported as unknown")]
    google_re2: Value,
} keys ["regex", "google_re2"]);

raw!(/// `request_mirror_policies`.
RawMirror ("a mirror policy object") {
    cluster: String,
    percent: u32,
} keys ["cluster", "percent"]);

raw!(/// `hash_policy[]`: one of the three keys.
RawHashPolicy ("a hash policy object") {
    header: RawHashHeader,
    cookie: RawHashCookie,
    source_ip: Extra,
} keys ["header", "cookie", "source_ip"]);

raw!(RawHashHeader ("an object like {\"key\": \"x-user\"}") {
    #[serde(alias = "header_name")]
    key: String,
} keys ["key", "header_name"]);

raw!(RawHashCookie ("an object like {\"name\": \"sid\"}") {
    name: String,
} keys ["name"]);

raw!(/// `direct_response`.
RawDirectResponse ("a direct response object") {
    status: u16,
    body: String,
} keys ["status", "body"]);

raw!(/// `redirect`.
RawRedirect ("a redirect object") {
    scheme_redirect: String,
    https_redirect: bool,
    host_redirect: String,
    port_redirect: u16,
    path_redirect: String,
    prefix_rewrite: String,
    strip_query: bool,
    response_code: u16,
} keys ["scheme_redirect", "https_redirect", "host_redirect", "port_redirect", "path_redirect",
    "prefix_rewrite", "strip_query", "response_code"]);

/// `retry_on`: MOSN's boolean, or Envoy's comma-separated conditions.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected true, false or conditions like \"5xx,connect-failure\""
)]
pub enum RawRetryOn {
    Bool(bool),
    Conditions(String),
}

/// One object or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected an object or a list of objects")]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}
