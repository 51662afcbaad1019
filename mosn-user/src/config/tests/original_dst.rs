//! Tests of `use_original_dst` listeners, ORIGINAL_DST clusters and `upstream_bind_config`.

use serde_json::json;

use super::capture::capture_base;
use super::*;

#[test]
fn use_original_dst_spellings() {
    for (value, expected) in [
        (json!(true), Some(OriginalDst::Redirect)),
        (json!(false), None),
        (json!("redirect"), Some(OriginalDst::Redirect)),
        (json!("tproxy"), Some(OriginalDst::Tproxy)),
    ] {
        let mut v = base();
        listener0(&mut v)["use_original_dst"] = value.clone();
        let c = parse_value(&v).unwrap().config;
        assert_eq!(c.listeners[0].original_dst, expected, "{value}");
    }
    let mut v = base();
    listener0(&mut v)["use_original_dst"] = "REDIRECT".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].use_original_dst: invalid use_original_dst \"REDIRECT\" \
         (allowed: \"redirect\", \"tproxy\", or true for \"redirect\")",
    );
    let mut v = base();
    listener0(&mut v)["use_original_dst"] = 1.into();
    let err = parse_value(&v).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "servers[0].listeners[0].use_original_dst: invalid type: integer `1`, expected \
             \"redirect\", \"tproxy\" or a boolean"
        ),
        "{err}"
    );
}

fn cluster(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut v["cluster_manager"]["clusters"][0]
}

#[test]
fn original_dst_cluster_rules() {
    let mut v = capture_base();
    cluster(&mut v)["hosts"] = json!([{ "address": "127.0.0.1:80" }]);
    assert_one_error(
        &v,
        "cluster_manager.clusters[0].hosts: an ORIGINAL_DST cluster connects to each \
         connection's original destination; remove \"hosts\"",
    );
    let mut v = capture_base();
    cluster(&mut v)["hosts"] = json!([]);
    assert!(parse_value(&v).is_ok(), "an empty host list is no host");

    let mut v = capture_base();
    cluster(&mut v)["lb_type"] = "LB_ROUNDROBIN".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[0].lb_type: lb_type \"LB_ROUNDROBIN\" does not apply to an \
         ORIGINAL_DST cluster (use \"LB_ORIGINAL_DST\" or leave it out)",
    );
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["lb_type"] = "LB_ORIGINAL_DST".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[0].lb_type: lb_type \"LB_ORIGINAL_DST\" needs \"type\": \
         \"ORIGINAL_DST\"",
    );
}

#[test]
fn upstream_bind_config() {
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["upstream_bind_config"] =
        json!({ "source_address": { "address": "::1" }, "freebind": true });
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.config.clusters[0].bind_source,
        Some(sock("[::1]:0")),
        "valid for a static cluster; port_value defaults to 0"
    );
    assert_eq!(
        loaded.warnings,
        vec!["ignoring unsupported key cluster_manager.clusters[0].upstream_bind_config.freebind"]
    );

    let mut v = base();
    v["cluster_manager"]["clusters"][0]["upstream_bind_config"] =
        json!({ "source_address": { "address": "127.0.0.6", "port_value": 4000 } });
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.config.clusters[0].bind_source,
        Some(sock("127.0.0.6:4000"))
    );
    assert!(
        loaded.warnings[0].starts_with(
            "cluster_manager.clusters[0].upstream_bind_config.source_address.port_value: \
             binding every upstream connection to port 4000"
        ),
        "{:?}",
        loaded.warnings
    );

    for (bind, expected) in [
        (
            json!({}),
            "cluster_manager.clusters[0].upstream_bind_config.source_address: missing \
             source_address (expected {\"address\": \"127.0.0.6\", \"port_value\": 0})",
        ),
        (
            json!({ "source_address": { "address": "local" } }),
            "cluster_manager.clusters[0].upstream_bind_config.source_address.address: invalid \
             address \"local\": DNS names are not supported yet, use an IP",
        ),
        (
            json!({ "source_address": { "address": "127.0.0.6", "port_value": 65536 } }),
            "cluster_manager.clusters[0].upstream_bind_config.source_address.port_value: \
             invalid port 65536",
        ),
    ] {
        let mut v = base();
        v["cluster_manager"]["clusters"][0]["upstream_bind_config"] = bind;
        assert_one_error(&v, expected);
    }
}

#[test]
fn original_dst_cluster_on_a_plain_listener_warns() {
    let mut v = capture_base();
    let mut plain = v["servers"][0]["listeners"][0].clone();
    plain["name"] = "plain".into();
    plain["address"] = "0.0.0.0:9080".into();
    plain.as_object_mut().unwrap().remove("use_original_dst");
    v["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(plain);
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "servers[0].listeners[2]: listener \"plain\" has no \"use_original_dst\"; its \
             ORIGINAL_DST cluster \"pass\" only serves connections handed over by a \
             \"use_original_dst\" listener (others are closed)"
        ]
    );
}
