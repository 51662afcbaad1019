//! Helpers for the filters' tests: a minimal L7 listener around some `stream_filters`,
//! requests and contexts.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{FilterChain, FilterContext, FilterDeps, Registry, StreamFilter, StreamFilterFactory};
use crate::config::{self, ConfigError, Format, Loaded};
use crate::metrics::Metrics;
use crate::upstream::ClusterManager;

/// A config with one L7 listener using `filters` as its `stream_filters`, and clusters `c`
/// and `m`.
pub(super) fn config_with(filters: Value) -> Value {
    json!({
        "servers": [{
            "routers": [{
                "router_config_name": "r",
                "virtual_hosts": [{
                    "name": "v",
                    "domains": ["*"],
                    "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "c" } }]
                }]
            }],
            "listeners": [{
                "name": "l",
                "address": "127.0.0.1:0",
                "bind_port": true,
                "stream_filters": filters,
                "filter_chains": [{ "filters": [{
                    "type": "proxy",
                    "config": { "downstream_protocol": "Http1", "router_config_name": "r" }
                }]}]
            }]
        }],
        "cluster_manager": { "clusters": [
            { "name": "c", "hosts": [{ "address": "127.0.0.1:1" }] },
            { "name": "m", "hosts": [{ "address": "127.0.0.1:2" }] }
        ]}
    })
}

/// Parses the config around `filters`.
pub(super) fn parse_filters(filters: Value) -> Result<Loaded, ConfigError> {
    config::parse(&config_with(filters).to_string(), Format::Json)
}

/// The first listener's factories.
pub(super) fn build_all(loaded: &Loaded) -> Vec<Arc<dyn StreamFilterFactory>> {
    let cfg = &loaded.config;
    let clusters = ClusterManager::new(cfg, &Metrics::new());
    Registry::builtin().build(
        &cfg.listeners[0].stream_filters,
        &FilterDeps {
            clusters: &clusters,
        },
    )
}

/// The factories of a valid `filters` list (panics on errors).
pub(super) fn factories(filters: Value) -> Vec<Arc<dyn StreamFilterFactory>> {
    match parse_filters(filters) {
        Ok(loaded) => build_all(&loaded),
        Err(e) => panic!("config refused: {e}"),
    }
}

/// One request's instances.
pub(super) fn chain(f: &[Arc<dyn StreamFilterFactory>]) -> Vec<Box<dyn StreamFilter>> {
    FilterChain::new(f.to_vec()).create()
}

/// The validation errors of `filters`, as "path: reason".
pub(super) fn errors(filters: Value) -> Vec<String> {
    match parse_filters(filters) {
        Ok(l) => panic!(
            "expected errors, got {:#?}",
            l.config.listeners[0].stream_filters
        ),
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation errors, got {other}"),
    }
}

/// The warnings of a valid `filters` list.
pub(super) fn warnings(filters: Value) -> Vec<String> {
    match parse_filters(filters) {
        Ok(l) => l.warnings,
        Err(e) => panic!("config refused: {e}"),
    }
}

pub(super) fn ctx(source: &str) -> FilterContext {
    FilterContext {
        source: source.parse().expect("a socket address"),
        identity: None,
        listener: Arc::from("l"),
        mirrors: Vec::new(),
    }
}

pub(super) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("a valid request").into_parts().0
}

const P: &str = "servers[0].listeners[0].stream_filters";

#[test]
fn unknown_and_missing_types_list_the_supported_ones() {
    let supported =
        "supported: fault, mirror, rbac, local_ratelimit, payload_limit, ip_access (or ipaccess)";
    assert_eq!(
        errors(json!([
            { "type": "faultinject", "config": {} },
            { "config": {} },
            { "type": "mirror" },
        ])),
        vec![
            format!("{P}[0].type: unknown stream filter \"faultinject\" ({supported})"),
            format!("{P}[1].type: missing type ({supported})"),
            format!("{P}[2].config: missing config of the mirror filter"),
        ]
    );
}

#[test]
fn unknown_keys_are_warnings_with_their_path() {
    let w = warnings(json!([
        { "type": "payload_limit", "foo": 1, "config": { "max_entity_size": 10, "http_stauts": 400 } },
    ]));
    assert_eq!(
        w,
        vec![
            format!("ignoring unsupported key {P}[0].foo"),
            format!(
                "ignoring unsupported key {P}[0].config.http_stauts (did you mean \"http_status\"?)"
            ),
        ]
    );
}

#[test]
fn every_builtin_filter_is_registered_in_order() {
    let f = factories(json!([
        { "type": "fault", "config": { "abort_percent": 1, "abort_status": 500 } },
        { "type": "mirror", "config": { "cluster": "m" } },
        { "type": "rbac", "config": { "action": "DENY" } },
        { "type": "local_ratelimit", "config": { "max_tokens": 1, "fill_interval": "1s" } },
        { "type": "payload_limit", "config": { "max_entity_size": 1 } },
        { "type": "ipaccess", "config": { "default_action": "allow" } },
    ]));
    let names: Vec<_> = f.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "fault",
            "mirror",
            "rbac",
            "local_ratelimit",
            "payload_limit",
            "ip_access"
        ]
    );
}

#[test]
fn stream_filters_need_an_l7_listener() {
    let mut v =
        config_with(json!([{ "type": "payload_limit", "config": { "max_entity_size": 1 } }]));
    v["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0] =
        json!({ "type": "tcp_proxy", "config": { "cluster": "c" } });
    let err = config::parse(&v.to_string(), Format::Json).unwrap_err();
    assert!(
        err.to_string()
            .contains("stream filters need an L7 listener"),
        "{err}"
    );
}

#[test]
fn configs_serialize_with_their_canonical_type() {
    let loaded = parse_filters(json!([
        { "type": "ipaccess", "config": {
            "header": "X-Real-IP",
            "ips": [{ "action": "deny", "addrs": ["10.0.0.0/8"] }],
            "default_action": "allow",
        }},
        { "type": "fault", "config": {
            "abort_percent": 5, "abort_status": 500,
            "headers": [{ "name": "x-f", "value": "a.*", "regex": true }],
        }},
    ]))
    .unwrap();
    let v = serde_json::to_value(&loaded.config.listeners[0].stream_filters).unwrap();
    assert_eq!(
        v,
        json!([
            {
                "type": "ip_access",
                "header": "x-real-ip",
                "rules": [{ "action": "deny", "addrs": [{ "addr": "10.0.0.0", "prefix_len": 8 }] }],
                "default_action": "allow",
            },
            {
                "type": "fault",
                "delay_percent": 0,
                "delay": { "secs": 0, "nanos": 0 },
                "abort_percent": 5,
                "abort_status": 500,
                "headers": [{ "name": "x-f", "rule": { "regex": "a.*" }, "invert": false }],
            },
        ])
    );
}
