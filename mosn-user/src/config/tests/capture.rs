//! Tests of the `capture` block and its inline workloads.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::config::capture::*;

/// A valid sidecar config with an outbound (redirect) and an inbound (tproxy) listener, both
/// to ORIGINAL_DST clusters, and a one-workload capture block.
pub(super) fn capture_base() -> serde_json::Value {
    let listener = |name: &str, addr: &str, mode: &str, cluster: &str| {
        json!({
            "name": name, "address": addr, "bind_port": true, "use_original_dst": mode,
            "filter_chains": [{ "filters": [{ "type": "tcp_proxy", "config": { "cluster": cluster } }] }]
        })
    };
    json!({
        "servers": [{ "listeners": [
            listener("out", "127.0.0.1:15001", "redirect", "pass"),
            listener("in", "0.0.0.0:15006", "tproxy", "inpass"),
        ]}],
        "cluster_manager": { "clusters": [
            { "name": "pass", "type": "ORIGINAL_DST" },
            { "name": "inpass", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
              "upstream_bind_config": { "source_address": { "address": "127.0.0.6", "port_value": 0 } } },
        ]},
        "capture": {
            "outbound_listener": "out",
            "inbound_listener": "in",
            "workloads": [{ "name": "w", "cgroup": "/sys/fs/cgroup/w" }]
        }
    })
}

fn workload0(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut v["capture"]["workloads"][0]
}

pub(super) fn capture_of(v: &serde_json::Value) -> CaptureConfig {
    parse_value(v).unwrap().config.capture.unwrap()
}

pub(super) fn ports(list: &[(u16, u16)]) -> Vec<(u16, u16)> {
    list.to_vec()
}

pub(super) fn cidr(s: &str, len: u8) -> Cidr {
    Cidr {
        addr: s.parse().unwrap(),
        prefix_len: len,
    }
}

#[test]
fn defaults() {
    let loaded = parse_value(&capture_base()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.listeners[0].original_dst, Some(OriginalDst::Redirect));
    assert_eq!(c.listeners[1].original_dst, Some(OriginalDst::Tproxy));
    assert_eq!(c.clusters[0].kind, ClusterKind::OriginalDst);
    assert_eq!(
        c.clusters[0].lb,
        LbPolicy::OriginalDst,
        "lb_type may be absent"
    );
    assert!(c.clusters[0].hosts.is_empty());
    assert_eq!(c.clusters[0].bind_source, None);
    assert_eq!(c.clusters[1].bind_source, Some(sock("127.0.0.6:0")));
    let cap = c.capture.as_ref().unwrap();
    assert_eq!(cap.mode, CaptureMode::Sidecar);
    assert_eq!(cap.outbound_listener, "out");
    assert_eq!(cap.inbound_listener.as_deref(), Some("in"));
    assert_eq!(cap.pin_path, PathBuf::from(DEFAULT_PIN_PATH));
    assert_eq!(cap.proxy_mark, 0x4d4f534e);
    assert_eq!(cap.proxy_mark, 1297044302);
    assert_eq!(
        cap.inbound_passthrough_source,
        "127.0.0.6".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        cap.sk_msg,
        SkMsgConfig {
            enabled: false,
            queue_limit: 1 << 20
        }
    );
    assert!(cap.original_dst_cgroups.is_empty());
    assert_eq!(cap.workloads_dir, None);
    assert_eq!(
        cap.workloads,
        vec![WorkloadConfig {
            name: "w".into(),
            cgroup: "/sys/fs/cgroup/w".into(),
            include_outbound_ports: vec![],
            exclude_outbound_ports: vec![],
            include_outbound_cidrs: vec![],
            exclude_outbound_cidrs: vec![],
            inbound_ports: InboundPorts::None,
            exclude_inbound_ports: vec![],
            exclude_uids: vec![],
            exclude_gids: vec![],
            sk_msg: false,
        }]
    );
    // No capture block: no capture, and the listeners/clusters keep their plain defaults.
    let c = parse_value(&base()).unwrap().config;
    assert_eq!(c.capture, None);
    assert_eq!(c.listeners[0].original_dst, None);
    assert_eq!(c.clusters[0].kind, ClusterKind::Static);
    assert_eq!(c.clusters[0].bind_source, None);
}

#[test]
fn full_capture_block() {
    let mut v = capture_base();
    v["capture"] = json!({
        "mode": "node",
        "outbound_listener": "out",
        "inbound_listener": "in",
        "pin_path": "/sys/fs/bpf/mosn-test",
        "proxy_mark": 7,
        "inbound_passthrough_source": "::6",
        "sk_msg": { "enabled": true, "queue_limit": "64KiB" },
        "original_dst_cgroups": ["/sys/fs/cgroup/unified/x"],
        "workloads_dir": "/etc/mosn/workloads",
        "workloads": [
            {
                "name": "reviews",
                "cgroup": "/sys/fs/cgroup/unified/kubepods/pod123",
                "include_outbound_ports": ["80", "9000-9100", 443],
                "exclude_outbound_ports": [22],
                "include_outbound_cidrs": ["10.0.0.0/8", "::/0"],
                "exclude_outbound_cidrs": ["10.1.0.0/16", "fd00::1"],
                "include_inbound_ports": ["8080", 9090, "9000-9002"],
                "exclude_inbound_ports": [15020],
                "exclude_uids": [1337],
                "exclude_gids": [],
                "sk_msg": false
            },
            { "name": "ratings.v1", "cgroup": "/sys/fs/cgroup/ratings", "include_inbound_ports": "*" }
        ]
    });
    let cap = capture_of(&v);
    assert_eq!(cap.mode, CaptureMode::Node);
    assert_eq!(cap.pin_path, PathBuf::from("/sys/fs/bpf/mosn-test"));
    assert_eq!(cap.proxy_mark, 7);
    assert_eq!(
        cap.inbound_passthrough_source,
        "::6".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        cap.sk_msg,
        SkMsgConfig {
            enabled: true,
            queue_limit: 64 << 10
        }
    );
    assert_eq!(
        cap.original_dst_cgroups,
        vec![PathBuf::from("/sys/fs/cgroup/unified/x")]
    );
    assert_eq!(
        cap.workloads_dir,
        Some(PathBuf::from("/etc/mosn/workloads"))
    );
    let w = &cap.workloads[0];
    assert_eq!(w.name, "reviews");
    assert_eq!(
        w.cgroup,
        PathBuf::from("/sys/fs/cgroup/unified/kubepods/pod123")
    );
    assert_eq!(
        w.include_outbound_ports,
        ports(&[(80, 80), (9000, 9100), (443, 443)])
    );
    assert_eq!(w.exclude_outbound_ports, ports(&[(22, 22)]));
    assert_eq!(
        w.include_outbound_cidrs,
        vec![cidr("10.0.0.0", 8), cidr("::", 0)]
    );
    assert_eq!(
        w.exclude_outbound_cidrs,
        vec![cidr("10.1.0.0", 16), cidr("fd00::1", 128)]
    );
    assert_eq!(
        w.inbound_ports,
        InboundPorts::Only(vec![8080, 9090, 9000, 9001, 9002])
    );
    assert_eq!(w.exclude_inbound_ports, vec![15020]);
    assert_eq!(w.exclude_uids, vec![1337]);
    assert!(w.exclude_gids.is_empty());
    assert!(!w.sk_msg, "the workload's own sk_msg wins");
    let w = &cap.workloads[1];
    assert_eq!(w.inbound_ports, InboundPorts::All);
    assert!(w.sk_msg, "capture.sk_msg.enabled is the default");

    // The same in YAML.
    let from_yaml = parse(&serde_yaml::to_string(&v).unwrap(), Format::Yaml).unwrap();
    assert_eq!(from_yaml, parse_value(&v).unwrap());
}

/// Sets the JSON pointer `pointer` of a fresh [`capture_base`] to `value` (`null` removes the
/// key) and expects exactly one error containing `expected`.
fn expect_capture_error(pointer: &str, value: serde_json::Value, expected: &str) {
    let mut v = capture_base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap();
    if value.is_null() {
        target.as_object_mut().unwrap().remove(key);
    } else {
        target[key] = value;
    }
    let errors = errors_of(&v);
    assert!(
        errors.len() == 1 && errors[0].contains(expected),
        "{pointer}: expected {expected:?}, got {errors:#?}"
    );
}

#[test]
fn capture_block_errors() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "/capture/mode",
            "cluster".into(),
            "capture.mode: invalid mode \"cluster\" (allowed: \"sidecar\", \"node\")",
        ),
        (
            "/capture/outbound_listener",
            serde_json::Value::Null,
            "capture.outbound_listener: missing outbound_listener (the name of a listener with \
             \"use_original_dst\": \"redirect\")",
        ),
        (
            "/capture/outbound_listener",
            "nope".into(),
            "capture.outbound_listener: unknown listener \"nope\" (defined listeners: in, out)",
        ),
        (
            "/capture/outbound_listener",
            "in".into(),
            "capture.outbound_listener: listener \"in\" (at servers[0].listeners[1]) needs \
             \"use_original_dst\": \"redirect\" (has \"tproxy\")",
        ),
        (
            "/capture/inbound_listener",
            "out".into(),
            "capture.inbound_listener: listener \"out\" (at servers[0].listeners[0]) needs \
             \"use_original_dst\": \"tproxy\" (has \"redirect\")",
        ),
        (
            "/servers/0/listeners/0/use_original_dst",
            serde_json::Value::Null,
            "needs \"use_original_dst\": \"redirect\" (has none)",
        ),
        (
            "/servers/0/listeners/0/address",
            "127.0.0.1:0".into(),
            "capture.outbound_listener: listener \"out\" (at servers[0].listeners[0]) listens \
             on port 0; the capture programs need its port in advance",
        ),
        (
            "/capture/pin_path",
            "bpf/mosn".into(),
            "capture.pin_path: \"bpf/mosn\" is not an absolute path",
        ),
        (
            "/capture/proxy_mark",
            0.into(),
            "capture.proxy_mark: proxy_mark must not be 0",
        ),
        (
            "/capture/proxy_mark",
            (1u64 << 32).into(),
            "capture.proxy_mark: proxy_mark 4294967296 does not fit in 32 bits",
        ),
        (
            "/capture/inbound_passthrough_source",
            "0.0.0.0".into(),
            "capture.inbound_passthrough_source: \"0.0.0.0\" is not a source address",
        ),
        (
            "/capture/inbound_passthrough_source",
            "127.0.0.256".into(),
            "capture.inbound_passthrough_source: invalid address \"127.0.0.256\"",
        ),
        (
            "/capture/sk_msg",
            json!({ "queue_limit": "1MB" }),
            "capture.sk_msg.queue_limit: invalid size \"1MB\": unknown unit \"MB\" (use B, \
             KiB, MiB or GiB)",
        ),
        (
            "/capture/sk_msg",
            json!({ "queue_limit": "32KiB" }),
            "capture.sk_msg.queue_limit: queue_limit 32KiB is out of range (64KiB..=64MiB)",
        ),
        (
            "/capture/sk_msg",
            json!({ "queue_limit": 128u64 << 20 }),
            "capture.sk_msg.queue_limit: queue_limit 128MiB is out of range (64KiB..=64MiB)",
        ),
        (
            "/capture/sk_msg",
            json!({ "queue_limit": -1 }),
            "capture.sk_msg.queue_limit: invalid size: negative size -1",
        ),
        (
            "/capture/original_dst_cgroups",
            json!(["/ok", "rel"]),
            "capture.original_dst_cgroups[1]: \"rel\" is not an absolute path",
        ),
        (
            "/capture/workloads",
            json!([]),
            "capture.workloads: sidecar mode needs exactly one workload, found 0",
        ),
        (
            "/capture/workloads",
            serde_json::Value::Null,
            "capture.workloads: sidecar mode needs exactly one workload, found 0",
        ),
        (
            "/capture/workloads",
            json!([{ "name": "a", "cgroup": "/a" }, { "name": "b", "cgroup": "/b" }]),
            "capture.workloads: sidecar mode needs exactly one workload, found 2 (\"mode\": \
             \"node\" captures several)",
        ),
        (
            "/capture/workloads_dir",
            "/etc/mosn/workloads".into(),
            "capture.workloads_dir: workloads_dir is only read in node mode",
        ),
    ];
    for (pointer, value, expected) in cases {
        expect_capture_error(pointer, value.clone(), expected);
    }
}

#[test]
fn capture_listener_must_be_started() {
    let mut v = capture_base();
    v["servers"][0]["listeners"][0]["bind_port"] = false.into();
    let errors = errors_of(&v);
    assert_eq!(
        errors,
        vec![
            "capture.outbound_listener: listener \"out\" (at servers[0].listeners[0]) is not \
             started (it needs \"bind_port\": true)"
        ]
    );
    // A capture listener with errors of its own is not reported twice.
    let mut v = capture_base();
    v["servers"][0]["listeners"][0]["address"] = "nowhere".into();
    assert_eq!(errors_of(&v).len(), 1, "{:#?}", errors_of(&v));
}

#[test]
fn node_mode_workload_sources() {
    let mut v = capture_base();
    v["capture"]["mode"] = "node".into();
    v["capture"]["workloads"] = json!([]);
    assert_one_error(
        &v,
        "capture: node mode needs \"workloads\" or \"workloads_dir\" (or both)",
    );
    v["capture"]["workloads_dir"] = "/etc/mosn/workloads".into();
    let cap = capture_of(&v);
    assert!(
        cap.workloads.is_empty(),
        "an empty list with a directory is fine"
    );
    v["capture"]["workloads_dir"] = "etc/mosn".into();
    assert_one_error(
        &v,
        "capture.workloads_dir: \"etc/mosn\" is not an absolute path",
    );

    // At most MAX_WORKLOADS inline.
    let mut v = capture_base();
    v["capture"]["mode"] = "node".into();
    v["capture"]["workloads"] = (0..=MAX_WORKLOADS)
        .map(|i| json!({ "name": format!("w{i}"), "cgroup": format!("/cg/{i}") }))
        .collect();
    assert_one_error(
        &v,
        "capture.workloads: at most 254 workloads (the kernel policy map's size), found 255",
    );
    v["capture"]["workloads"].as_array_mut().unwrap().pop();
    assert_eq!(capture_of(&v).workloads.len(), MAX_WORKLOADS);
}

#[test]
fn duplicate_workloads() {
    let mut v = capture_base();
    v["capture"]["mode"] = "node".into();
    v["capture"]["workloads"] = json!([
        { "name": "a", "cgroup": "/cg/a" },
        { "name": "a", "cgroup": "/cg/b" },
        { "name": "c", "cgroup": "/cg/a/" }
    ]);
    assert_eq!(
        errors_of(&v),
        vec![
            "capture.workloads[1].name: duplicate workload name \"a\" (also at \
             capture.workloads[0])",
            "capture.workloads[2].cgroup: cgroup /cg/a/ is already captured by \
             capture.workloads[0] (one workload per cgroup)",
        ]
    );
}

#[test]
fn workload_errors() {
    let long = "x".repeat(65);
    let many_ports: Vec<u16> = (1..=17).collect();
    let many_v4: Vec<String> = (0..17).map(|i| format!("10.{i}.0.0/16")).collect();
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        (
            "name",
            serde_json::Value::Null,
            "capture.workloads[0].name: missing workload name".into(),
        ),
        (
            "name",
            "a b".into(),
            "capture.workloads[0].name: workload name \"a b\" contains ' ' (allowed: letters, \
             digits, '_', '.', '-')"
                .into(),
        ),
        (
            "name",
            long.clone().into(),
            format!(
                "capture.workloads[0].name: workload name {long:?} must be 1 to 64 characters long"
            ),
        ),
        (
            "name",
            "".into(),
            "capture.workloads[0].name: workload name \"\" must be 1 to 64".into(),
        ),
        (
            "cgroup",
            serde_json::Value::Null,
            "capture.workloads[0].cgroup: missing cgroup".into(),
        ),
        (
            "cgroup",
            "kubepods/pod".into(),
            "capture.workloads[0].cgroup: \"kubepods/pod\" is not an absolute path".into(),
        ),
        (
            "cgroup",
            "/sys/fs/cgroup/../etc".into(),
            "capture.workloads[0].cgroup: \"/sys/fs/cgroup/../etc\" must not contain \"..\"".into(),
        ),
        (
            "include_outbound_ports",
            json!(["80", 0]),
            "capture.workloads[0].include_outbound_ports[1]: invalid port \"0\": port 0 cannot \
             be connected to"
                .into(),
        ),
        (
            "exclude_outbound_ports",
            json!(["9100-9000"]),
            "capture.workloads[0].exclude_outbound_ports[0]: invalid port \"9100-9000\": range \
             \"9100-9000\" ends before it starts"
                .into(),
        ),
        (
            "exclude_outbound_ports",
            json!(["http"]),
            "capture.workloads[0].exclude_outbound_ports[0]: invalid port \"http\": invalid port \
             \"http\""
                .into(),
        ),
        (
            "exclude_outbound_ports",
            json!([""]),
            "capture.workloads[0].exclude_outbound_ports[0]: empty port".into(),
        ),
        (
            "include_outbound_ports",
            json!(many_ports),
            "capture.workloads[0].include_outbound_ports: 17 port entries; at most 16 (the \
             kernel policy's fixed size)"
                .into(),
        ),
        (
            "include_outbound_cidrs",
            json!(["10.0.0.0/33"]),
            "capture.workloads[0].include_outbound_cidrs[0]: invalid prefix \"10.0.0.0/33\": \
             prefix length \"33\" is out of range for 10.0.0.0 (0..=32)"
                .into(),
        ),
        (
            "exclude_outbound_cidrs",
            json!(["fd00::/129"]),
            "capture.workloads[0].exclude_outbound_cidrs[0]: invalid prefix \"fd00::/129\": \
             prefix length \"129\" is out of range for fd00:: (0..=128)"
                .into(),
        ),
        (
            "exclude_outbound_cidrs",
            json!(many_v4),
            "capture.workloads[0].exclude_outbound_cidrs: 17 IPv4 prefixes; at most 16 per \
             address family (the kernel policy's fixed size)"
                .into(),
        ),
        (
            "include_inbound_ports",
            json!(["8080", "0"]),
            "capture.workloads[0].include_inbound_ports[1]: invalid port \"0\": port 0 cannot \
             be connected to"
                .into(),
        ),
        (
            "include_inbound_ports",
            json!(["1000-1064"]),
            "capture.workloads[0].include_inbound_ports: include_inbound_ports and \
             exclude_inbound_ports together list 65 ports; at most 64"
                .into(),
        ),
        (
            "include_inbound_ports",
            json!(["1-65535"]),
            "capture.workloads[0].include_inbound_ports[0]: range \"1-65535\" has 65535 ports; \
             at most 64 inbound ports per workload (use \"*\" for every port)"
                .into(),
        ),
        (
            "include_inbound_ports",
            "all".into(),
            "capture.workloads[0].include_inbound_ports: invalid port \"all\"".into(),
        ),
        (
            "exclude_uids",
            json!([1, 2, 3, 4, 5, 6, 7, 8, 9]),
            "capture.workloads[0].exclude_uids: 9 ids; at most 8 (the kernel policy's fixed \
             size)"
                .into(),
        ),
        (
            "exclude_gids",
            json!([4294967295u64]),
            "capture.workloads[0].exclude_gids[0]: 4294967295 is not a valid id \
             (0..=4294967294)"
                .into(),
        ),
    ];
    for (key, value, expected) in cases {
        expect_capture_error(&format!("/capture/workloads/0/{key}"), value, &expected);
    }
}

#[test]
fn workload_limits_are_inclusive() {
    let mut v = capture_base();
    let w = workload0(&mut v);
    w["include_outbound_ports"] = (1..=16u16).collect();
    w["exclude_outbound_ports"] = (100..=115u16)
        .map(|p| format!("{p}-{}", p + 1000))
        .collect();
    w["include_outbound_cidrs"] = (0..16)
        .map(|i| format!("10.{i}.0.0/16"))
        .chain((0..16).map(|i| format!("fd{i:02x}::/16")))
        .collect();
    w["include_inbound_ports"] = json!(["1000-1031"]);
    w["exclude_inbound_ports"] = json!(["2000-2031"]);
    w["exclude_uids"] = (0..8).collect();
    w["exclude_gids"] = (0..8).collect();
    let cap = capture_of(&v);
    let w = &cap.workloads[0];
    assert_eq!(w.include_outbound_ports.len(), MAX_PORT_RANGES);
    assert_eq!(w.include_outbound_cidrs.len(), 2 * MAX_CIDRS_PER_FAMILY);
    assert_eq!(
        w.exclude_inbound_ports.len() + 32,
        MAX_INBOUND_PORTS,
        "64 inbound ports in all is the limit"
    );
    assert_eq!(w.exclude_uids.len(), MAX_IDS);
}

#[test]
fn inbound_capture_needs_the_inbound_listener() {
    let mut v = capture_base();
    v["capture"]
        .as_object_mut()
        .unwrap()
        .remove("inbound_listener");
    assert!(parse_value(&v).is_ok(), "outbound-only capture");
    workload0(&mut v)["include_inbound_ports"] = "*".into();
    assert_one_error(
        &v,
        "capture.workloads[0].include_inbound_ports: inbound capture needs \
         capture.inbound_listener (a listener with \"use_original_dst\": \"tproxy\")",
    );
    workload0(&mut v)["include_inbound_ports"] = json!([]);
    assert_eq!(
        capture_of(&v).workloads[0].inbound_ports,
        InboundPorts::None,
        "an empty list captures nothing"
    );
}

#[test]
fn capture_warnings() {
    let mut v = capture_base();
    v["capture"]["interception_mode"] = "TPROXY".into();
    v["capture"]["sk_msg"] = json!({ "enable": true, "queue_limit": 65536 });
    v["capture"]["original_dst_cgroups"] = json!(["/a", "/a"]);
    let w = workload0(&mut v);
    w["cgroups"] = json!([]);
    w["include_outbound_cidrs"] = json!(["10.1.2.3/8"]);
    w["exclude_inbound_ports"] = json!([15020]);
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "ignoring unsupported key capture.interception_mode",
            "ignoring unsupported key capture.sk_msg.enable (did you mean \"enabled\"?)",
            "capture.original_dst_cgroups[1]: cgroup /a is listed twice",
            "ignoring unsupported key capture.workloads[0].cgroups (did you mean \"cgroup\"?)",
            "capture.workloads[0].include_outbound_cidrs[0]: \"10.1.2.3/8\" has host bits set; \
             it means 10.0.0.0/8",
            "capture.workloads[0].exclude_inbound_ports: has no effect: no inbound port is \
             captured (include_inbound_ports is absent or empty)",
        ]
    );
    let cap = loaded.config.capture.unwrap();
    assert_eq!(cap.sk_msg.queue_limit, 65536, "integer bytes");
    assert_eq!(cap.original_dst_cgroups.len(), 1);
    assert_eq!(
        cap.workloads[0].include_outbound_cidrs,
        vec![cidr("10.0.0.0", 8)]
    );
}
