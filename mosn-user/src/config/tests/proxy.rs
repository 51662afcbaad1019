//! Tests of the `proxy` network filter: its router, its RPC protocol forms, and stream
//! filters on RPC listeners.

use super::*;

#[test]
fn proxy_filter_needs_a_known_router() {
    let mut v = base();
    listener0(&mut v)["filter_chains"][0]["filters"][0] = serde_json::json!({
        "type": "proxy",
        "config": { "downstream_protocol": "Http1", "router_config_name": "r" }
    });
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config.router_config_name: unknown \
         router \"r\" (no routers are defined)",
    );
    listener0(&mut v)["filter_chains"][0]["filters"][0]["config"]["downstream_protocol"] =
        "Http9".into();
    v["servers"][0]["routers"] = serde_json::json!([{ "router_config_name": "r" }]);
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config.downstream_protocol: \
         unsupported protocol \"Http9\" (supported: \"Http1\", \"Http2\", \"Auto\", \"X\", \"bolt\", \"dubbo\")",
    );
}

/// The proxy filter's RPC forms: a protocol by name, MOSN's "X" + sub_protocol, "Auto".
#[test]
fn proxy_filter_rpc_protocols() {
    let mut v = base();
    v["servers"][0]["routers"] = serde_json::json!([{ "router_config_name": "r" }]);
    let set = |v: &mut serde_json::Value, cfg: serde_json::Value| {
        listener0(v)["filter_chains"][0]["filters"][0] =
            serde_json::json!({ "type": "proxy", "config": cfg });
    };
    let proxy = |v: &serde_json::Value| match parse_value(v) {
        Ok(l) => match l.config.listeners[0].filter() {
            NetworkFilter::Proxy(p) => p.clone(),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e}"),
    };
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "bolt", "router_config_name": "r" }),
    );
    let p = proxy(&v);
    assert_eq!(
        p.downstream_protocol,
        Protocol::X(&crate::protocol::bolt::BOLT)
    );
    assert_eq!(
        p.upstream_protocol,
        Protocol::X(&crate::protocol::bolt::BOLT)
    );
    assert_eq!(p.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    // The config dump writes protocols as configs name them.
    let dumped = serde_json::to_value(&p).expect("serializes");
    assert_eq!(dumped["downstream_protocol"], "bolt");
    set(
        &mut v,
        serde_json::json!({
            "downstream_protocol": "X", "upstream_protocol": "X",
            "extend_config": { "sub_protocol": "dubbo" },
            "router_config_name": "r", "max_frame_size": "64KiB"
        }),
    );
    let p = proxy(&v);
    assert_eq!(
        (p.downstream_protocol, p.upstream_protocol),
        (
            Protocol::X(&crate::protocol::dubbo::DUBBO),
            Protocol::X(&crate::protocol::dubbo::DUBBO)
        )
    );
    assert_eq!(p.max_frame_size, 64 * 1024);
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "Auto", "router_config_name": "r" }),
    );
    assert_eq!(proxy(&v).downstream_protocol, Protocol::Auto);

    let path = "servers[0].listeners[0].filter_chains[0].filters[0].config";
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "X", "router_config_name": "r" }),
    );
    assert_one_error(
        &v,
        &format!(
            "{path}.extend_config.sub_protocol: \"X\" needs extend_config.sub_protocol (one of \"bolt\", \"dubbo\")"
        ),
    );
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "X", "extend_config": { "sub_protocol": "thrift" }, "router_config_name": "r" }),
    );
    assert_one_error(
        &v,
        &format!(
            "{path}.extend_config.sub_protocol: unknown sub_protocol \"thrift\" (supported: \"bolt\", \"dubbo\")"
        ),
    );
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "bolt", "upstream_protocol": "Http1", "router_config_name": "r" }),
    );
    assert_one_error(
        &v,
        &format!(
            "{path}.upstream_protocol: \"bolt\" downstream with \"Http1\" upstream: protocol conversion is not supported (leave upstream_protocol out to use the downstream protocol)"
        ),
    );
    set(
        &mut v,
        serde_json::json!({ "downstream_protocol": "bolt", "router_config_name": "r", "max_frame_size": "2GiB" }),
    );
    assert_one_error(
        &v,
        &format!("{path}.max_frame_size: 2147483648 bytes is out of range (1KiB..=1GiB)"),
    );
}

/// Stream filters run on RPC requests too, mirror included.
#[test]
fn stream_filters_on_rpc_listeners() {
    let mut v = base();
    v["servers"][0]["routers"] = serde_json::json!([{ "router_config_name": "r" }]);
    let l = listener0(&mut v);
    l["filter_chains"][0]["filters"][0] = serde_json::json!({
        "type": "proxy",
        "config": { "downstream_protocol": "bolt", "router_config_name": "r" }
    });
    l["stream_filters"] = serde_json::json!([
        { "type": "payload_limit", "config": { "max_entity_size": 10 } },
        { "type": "mirror", "config": { "cluster": "a" } }
    ]);
    let loaded = parse_value(&v).expect("filters run on RPC");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    listener0(&mut v)["filter_chains"][0]["filters"][0]["config"]["downstream_protocol"] =
        "Auto".into();
    let loaded = parse_value(&v).expect("valid");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}
