//! Tests of HTTP/2 on the proxy filter: the protocol pairs that convert, and
//! `http2_protocol_options`.

use serde_json::{Value, json};

use super::*;
use crate::config::http2::Http2Options;

fn with_proxy(cfg: Value) -> Value {
    let mut v = base();
    v["servers"][0]["routers"] = json!([{ "router_config_name": "r" }]);
    listener0(&mut v)["filter_chains"][0]["filters"][0] = json!({ "type": "proxy", "config": cfg });
    v
}

fn proxy_of(v: &Value) -> ProxyConfig {
    match parse_value(v) {
        Ok(l) => match l.config.listeners[0].filter() {
            NetworkFilter::Proxy(p) => p.clone(),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e}"),
    }
}

const PATH: &str = "servers[0].listeners[0].filter_chains[0].filters[0].config";

#[test]
fn http_protocols_convert_both_ways() {
    for (down, up) in [
        ("Http2", "Http2"),
        ("Http2", "Http1"),
        ("Http1", "Http2"),
        ("http2", "HTTP1"),
        ("Auto", "Http2"),
    ] {
        let p = proxy_of(&with_proxy(json!({
            "downstream_protocol": down, "upstream_protocol": up, "router_config_name": "r"
        })));
        assert_eq!(
            p.downstream_protocol.name().to_lowercase(),
            down.to_lowercase()
        );
        assert_eq!(p.upstream_protocol.name().to_lowercase(), up.to_lowercase());
    }
    let p = proxy_of(&with_proxy(
        json!({ "downstream_protocol": "Http2", "router_config_name": "r" }),
    ));
    assert_eq!(
        p.upstream_protocol,
        Protocol::Http2,
        "absent: the downstream's"
    );
    assert_eq!(p.http2, Http2Options::default());
    // RPC does not convert to or from HTTP.
    assert_one_error(
        &with_proxy(json!({
            "downstream_protocol": "bolt", "upstream_protocol": "Http2", "router_config_name": "r"
        })),
        &format!(
            "{PATH}.upstream_protocol: \"bolt\" downstream with \"Http2\" upstream: protocol \
             conversion is not supported (leave upstream_protocol out to use the downstream protocol)"
        ),
    );
    assert_one_error(
        &with_proxy(json!({
            "downstream_protocol": "Http2", "upstream_protocol": "dubbo", "router_config_name": "r"
        })),
        &format!(
            "{PATH}.upstream_protocol: \"Http2\" downstream with \"dubbo\" upstream: protocol \
             conversion is not supported (leave upstream_protocol out to use the downstream protocol)"
        ),
    );
}

#[test]
fn http2_protocol_options() {
    let p = proxy_of(&with_proxy(json!({
        "downstream_protocol": "Http2", "router_config_name": "r",
        "http2_protocol_options": {
            "max_concurrent_streams": 100,
            "initial_stream_window_size": 65535,
            "initial_connection_window_size": 1048576,
            "max_resets_per_second": 50,
            "connection_keepalive": { "interval": "5s", "timeout": "1s" }
        }
    })));
    assert_eq!(
        p.http2,
        Http2Options {
            max_concurrent_streams: 100,
            initial_stream_window_size: 65_535,
            initial_connection_window_size: 1_048_576,
            max_resets_per_second: 50,
            keepalive_interval: Some(std::time::Duration::from_secs(5)),
            keepalive_timeout: std::time::Duration::from_secs(1),
        }
    );
    let p = proxy_of(&with_proxy(json!({
        "downstream_protocol": "Http2", "router_config_name": "r",
        "http2_protocol_options": { "connection_keepalive": { "interval": "0s" } }
    })));
    assert_eq!(p.http2.keepalive_interval, None, "0s: no PINGs");
    let o = format!("{PATH}.http2_protocol_options");
    for (opts, error) in [
        (
            json!({ "max_concurrent_streams": 0 }),
            format!("{o}.max_concurrent_streams: 0 is out of range (1..=2147483647)"),
        ),
        (
            json!({ "initial_stream_window_size": 1000 }),
            format!("{o}.initial_stream_window_size: 1000 is out of range (65535..=2147483647)"),
        ),
        (
            json!({ "max_resets_per_second": 0 }),
            format!("{o}.max_resets_per_second: 0 is out of range (1..=1000000)"),
        ),
        (
            json!({ "connection_keepalive": { "timeout": "0s" } }),
            format!("{o}.connection_keepalive.timeout: must be more than 0s"),
        ),
    ] {
        let v = with_proxy(json!({
            "downstream_protocol": "Http2", "router_config_name": "r",
            "http2_protocol_options": opts
        }));
        let errors = errors_of(&v);
        assert!(
            errors.iter().any(|e| e.starts_with(&error)),
            "{error}\nnot in {errors:?}"
        );
    }
    let v = with_proxy(json!({
        "downstream_protocol": "Http2", "router_config_name": "r",
        "http2_protocol_options": { "max_concurent_streams": 10 }
    }));
    let warnings = parse_value(&v).unwrap().warnings;
    assert!(
        warnings.contains(&format!(
            "ignoring unsupported key {o}.max_concurent_streams (did you mean \"max_concurrent_streams\"?)"
        )),
        "{warnings:?}"
    );
}

#[test]
fn grpc_example_parses() {
    let loaded = load(&manifest_path("../examples/grpc.json")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let NetworkFilter::Proxy(p) = loaded.config.listeners[0].filter() else {
        panic!("a proxy listener");
    };
    assert_eq!(
        (p.downstream_protocol, p.upstream_protocol),
        (Protocol::Auto, Protocol::Http2)
    );
}
