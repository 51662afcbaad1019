//! Tests of the whole config pipeline (decode + validate). Parsers of durations and addresses
//! have their own tests beside them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod capture;
mod chains;
mod http2;
mod original_dst;
mod proxy;
mod tls;
mod workload_file;

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A minimal valid config, as JSON, for tests to break one piece of.
fn base() -> serde_json::Value {
    serde_json::json!({
        "servers": [{
            "listeners": [{
                "name": "l0",
                "address": "127.0.0.1:2045",
                "bind_port": true,
                "filter_chains": [{
                    "filters": [{ "type": "tcp_proxy", "config": { "cluster": "a" } }]
                }]
            }]
        }],
        "cluster_manager": {
            "clusters": [
                { "name": "a", "hosts": [{ "address": "127.0.0.1:8080" }] },
                { "name": "b", "hosts": [{ "address": "127.0.0.1:8081" }] }
            ]
        }
    })
}

fn parse_value(v: &serde_json::Value) -> Result<Loaded, ConfigError> {
    parse(&serde_json::to_string_pretty(v).unwrap(), Format::Json)
}

/// Parses `v`, expecting validation errors; returns them as "path: reason" lines.
fn errors_of(v: &serde_json::Value) -> Vec<String> {
    match parse_value(v) {
        Ok(l) => panic!("expected errors, got {l:#?}"),
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation errors, got {other}"),
    }
}

fn assert_one_error(v: &serde_json::Value, expected: &str) {
    let errors = errors_of(v);
    assert_eq!(errors, vec![expected.to_owned()], "errors: {errors:#?}");
}

fn listener0(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut v["servers"][0]["listeners"][0]
}

fn tcp_config0(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut listener0(v)["filter_chains"][0]["filters"][0]["config"]
}

#[test]
fn base_config_is_valid_with_defaults() {
    let loaded = parse_value(&base()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.fast_path, FastPath::Auto);
    assert_eq!(
        l.filter().tcp_proxy().unwrap().idle_timeout,
        Some(DEFAULT_IDLE_TIMEOUT)
    );
    assert_eq!(
        l.filter().tcp_proxy().unwrap().max_connect_attempts,
        1,
        "one host: tried once"
    );
    assert_eq!(c.clusters[0].lb, LbPolicy::RoundRobin);
    assert_eq!(c.clusters[0].connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(c.clusters[0].hosts[0].weight, 1);
    assert_eq!(c.admin, None);
    assert_eq!(c.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
}

#[test]
fn mosn_tcpproxy_sample_parses_with_warnings() {
    let path = manifest_path("tests/fixtures/mosn_tcpproxy_sample.json");
    let loaded = load(&path).unwrap();
    let c = &loaded.config;
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.name, "proxyListener");
    assert_eq!(l.address, sock("127.0.0.1:2045"));
    assert_eq!(
        l.filter().tcp_proxy().unwrap().cluster.as_deref(),
        Some("serverCluster")
    );
    assert_eq!(l.filter().tcp_proxy().unwrap().routes.len(), 1);
    assert_eq!(
        l.filter().tcp_proxy().unwrap().routes[0].cluster,
        "serverCluster"
    );
    assert!(
        l.filter().tcp_proxy().unwrap().routes[0]
            .source_addresses
            .is_empty()
    );
    assert_eq!(c.clusters.len(), 1);
    let cl = &c.clusters[0];
    assert_eq!(cl.name, "serverCluster", "MOSN's \"Name\" spelling is read");
    assert_eq!(cl.lb, LbPolicy::Random);
    assert_eq!(
        cl.hosts,
        vec![HostConfig {
            address: sock("127.0.0.1:8080"),
            weight: 1,
            metadata: Default::default(),
        }]
    );
    let expected = [
        "ignoring unsupported key servers[0].default_log_path",
        "ignoring unsupported key servers[0].listeners[0].log_path",
        "ignoring unsupported key cluster_manager.clusters[0].conn_buffer_limit_bytes",
    ];
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("max_request_per_conn")),
        "max_request_per_conn is read (multiplexed pools)"
    );
    for w in expected {
        assert!(
            loaded.warnings.iter().any(|x| x == w),
            "missing warning {w:?} in {:#?}",
            loaded.warnings
        );
    }
    assert_eq!(
        loaded.warnings.len(),
        expected.len(),
        "{:#?}",
        loaded.warnings
    );
}

#[test]
fn examples_json_and_yaml_are_equal() {
    let json = load(&manifest_path("../examples/tcpproxy.json")).unwrap();
    let yaml = load(&manifest_path("../examples/tcpproxy.yaml")).unwrap();
    assert!(json.warnings.is_empty(), "{:?}", json.warnings);
    assert_eq!(json, yaml);
    let c = json.config;
    assert_eq!(c.listeners[0].address, sock("127.0.0.1:2045"));
    assert_eq!(c.listeners[0].fast_path, FastPath::Auto);
    assert_eq!(
        c.listeners[0].filter().tcp_proxy().unwrap().idle_timeout,
        Some(Duration::from_secs(600))
    );
    assert_eq!(c.clusters[0].hosts[0].address, sock("127.0.0.1:8080"));
    assert_eq!(c.admin, Some(sock("127.0.0.1:34901")));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
}

#[test]
fn sidecar_example_parses() {
    let loaded = load(&manifest_path("../examples/capture-sidecar.json")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.listeners[0].address, sock("127.0.0.1:15001"));
    assert_eq!(c.listeners[0].original_dst, Some(OriginalDst::Redirect));
    assert_eq!(c.listeners[1].address, sock("0.0.0.0:15006"));
    assert_eq!(c.listeners[1].original_dst, Some(OriginalDst::Tproxy));
    assert!(
        c.clusters
            .iter()
            .all(|c| c.kind == ClusterKind::OriginalDst)
    );
    let inbound = c
        .clusters
        .iter()
        .find(|c| c.name == "InboundPassthroughCluster")
        .unwrap();
    assert_eq!(inbound.bind_source, Some(sock("127.0.0.6:0")));
    assert_eq!(c.admin, Some(sock("127.0.0.1:34901")));
    let cap = c.capture.unwrap();
    assert_eq!(cap.mode, CaptureMode::Sidecar);
    assert_eq!(cap.outbound_listener, "outbound");
    assert_eq!(cap.inbound_listener.as_deref(), Some("inbound"));
    let w = &cap.workloads[0];
    assert_eq!(w.cgroup, Path::new("/sys/fs/cgroup/unified/mosn-demo"));
    assert_eq!(w.inbound_ports, InboundPorts::Only(vec![8080]));
    assert_eq!(w.exclude_outbound_ports, vec![(22, 22)]);

    // /config_dump shows it.
    let dump = serde_json::to_value(&cap).unwrap();
    assert_eq!(dump["mode"], "sidecar");
    assert_eq!(dump["pin_path"], "/sys/fs/bpf/mosn");
    assert_eq!(
        dump["workloads"][0]["inbound_ports"],
        serde_json::json!({"Only": [8080]})
    );
}

#[test]
fn yaml_equivalent_gives_equal_config() {
    let mut v = base();
    v["admin"] =
        serde_json::json!({"address": {"socket_address": {"address": "::1", "port_value": 34901}}});
    let from_json = parse_value(&v).unwrap();
    let from_yaml = parse(&serde_yaml::to_string(&v).unwrap(), Format::Yaml).unwrap();
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json.config.admin, Some(sock("[::1]:34901")));
}

#[test]
fn format_from_extension() {
    assert_eq!(Format::from_path(Path::new("a.yaml")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.YML")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.json")), Format::Json);
    assert_eq!(Format::from_path(Path::new("mosn_config")), Format::Json);
}

#[test]
fn full_feature_set() {
    let mut v = base();
    *listener0(&mut v) = serde_json::json!({
        "name": "l0",
        "address": "[::1]:0",
        "bind_port": true,
        "fast_path": "kernel",
        "filter_chains": [{ "filters": [{ "type": "tcp_proxy", "config": {
            "routes": [{
                "cluster": "b",
                "SourceAddrs": [{ "address": "10.0.0.0", "length": 8 }],
                "DestinationAddrs": [{ "address": "fd00::", "length": 16 }],
                "SourcePort": "8000-9000",
                "DestinationPort": 2045
            }],
            "idle_timeout": 0,
            "max_connect_attempts": 5
        }}]}]
    });
    v["cluster_manager"]["clusters"][1] = serde_json::json!({
        "name": "b", "type": "STATIC", "lb_type": "LB_RANDOM", "connect_timeout": 500_000_000,
        "hosts": [{ "address": "127.0.0.1:1", "weight": 128 }, { "address": "[::1]:2" }]
    });
    v["graceful_timeout"] = "1m30s".into();
    v["servers"][0]["graceful_timeout"] = "90s".into();
    let c = parse_value(&v).unwrap().config;
    let tp = &c.listeners[0].filter().tcp_proxy().unwrap();
    assert_eq!(c.listeners[0].fast_path, FastPath::Kernel);
    assert_eq!(tp.cluster, None);
    assert_eq!(tp.idle_timeout, None, "0 disables the idle timeout");
    assert_eq!(tp.max_connect_attempts, 5);
    let r = &tp.routes[0];
    assert_eq!(r.source_ports, vec![(8000, 9000)]);
    assert_eq!(r.destination_ports, vec![(2045, 2045)]);
    assert!(r.source_addresses[0].contains("10.1.2.3".parse().unwrap()));
    assert_eq!(r.destination_addresses[0].prefix_len, 16);
    let b = &c.clusters[1];
    assert_eq!(
        b.connect_timeout,
        Duration::from_millis(500),
        "numbers are nanoseconds"
    );
    assert_eq!(b.hosts[0].weight, 128);
    assert_eq!(c.drain_timeout, Duration::from_secs(90));
}

#[test]
fn default_connect_attempts_follow_host_count() {
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["hosts"] = serde_json::json!([
        {"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2"}, {"address": "127.0.0.1:3"},
        {"address": "127.0.0.1:4"}
    ]);
    let c = parse_value(&v).unwrap().config;
    assert_eq!(
        c.listeners[0]
            .filter()
            .tcp_proxy()
            .unwrap()
            .max_connect_attempts,
        3
    );
}

#[test]
fn bad_address() {
    let mut v = base();
    listener0(&mut v)["address"] = "localhost:2045".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].address: invalid socket address \"localhost:2045\": DNS names \
         are not supported yet, use an IP",
    );
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["hosts"][0]["address"] = "example.com:80".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[0].hosts[0].address: invalid socket address \"example.com:80\": \
         DNS names are not supported yet, use an IP",
    );
}

#[test]
fn bad_port() {
    let mut v = base();
    listener0(&mut v)["address"] = "1.2.3.4:99999".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].address: invalid socket address \"1.2.3.4:99999\": invalid port",
    );
}

#[test]
fn unknown_cluster() {
    let mut v = base();
    tcp_config0(&mut v)["cluster"] = "foo".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster: unknown cluster \
         \"foo\" (defined clusters: a, b)",
    );
    let mut v = base();
    tcp_config0(&mut v)["routes"] = serde_json::json!([{ "cluster": "zz" }]);
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config.routes[0].cluster: unknown \
         cluster \"zz\" (defined clusters: a, b)",
    );
}

#[test]
fn duplicate_names_and_addresses() {
    let mut v = base();
    v["cluster_manager"]["clusters"][1]["name"] = "a".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[1].name: duplicate cluster name \"a\" (first defined at \
         cluster_manager.clusters[0])",
    );

    let mut v = base();
    let mut second = listener0(&mut v).clone();
    second["address"] = "127.0.0.1:2046".into();
    v["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(second);
    assert_one_error(
        &v,
        "servers[0].listeners[1].name: duplicate listener name \"l0\" (also at \
         servers[0].listeners[0])",
    );

    let mut v = base();
    let mut second = listener0(&mut v).clone();
    second["name"] = "l1".into();
    v["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(second);
    assert_one_error(
        &v,
        "servers[0].listeners[1].address: duplicate listener address 127.0.0.1:2045 (also at \
         servers[0].listeners[0])",
    );
}

#[test]
fn bad_lb_type_and_cluster_type() {
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["lb_type"] = "LB_NOPE".into();
    v["cluster_manager"]["clusters"][1]["type"] = "EDS".into();
    assert_eq!(
        errors_of(&v),
        vec![
            "cluster_manager.clusters[0].lb_type: unsupported lb_type \"LB_NOPE\" (supported: \
             LB_ROUNDROBIN, LB_RANDOM, LB_WEIGHTED_ROUNDROBIN, LB_LEAST_REQUEST, LB_MAGLEV, \
             LB_RING_HASH, RING_HASH, LB_ORIGINAL_DST)",
            "cluster_manager.clusters[1].type: unsupported cluster type \"EDS\" (supported: \
             SIMPLE, STATIC, ORIGINAL_DST)",
        ]
    );
}

#[test]
fn bad_fast_path() {
    let mut v = base();
    listener0(&mut v)["fast_path"] = "ebpf".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].fast_path: invalid fast_path \"ebpf\" (allowed: \"auto\", \
         \"kernel\", \"userspace\")",
    );
}

#[test]
fn bad_duration() {
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["connect_timeout"] = "3 seconds".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[0].connect_timeout: invalid duration \"3 seconds\": unknown \
         unit \" seconds\" (use ns, us, ms, s, m or h)",
    );
    let mut v = base();
    tcp_config0(&mut v)["idle_timeout"] = "10".into();
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config.idle_timeout: invalid \
         duration \"10\": missing unit (use ns, us, ms, s, m or h)",
    );
    let mut v = base();
    v["graceful_timeout"] = (-5).into();
    assert_one_error(
        &v,
        "graceful_timeout: invalid duration: negative duration -5",
    );
}

#[test]
fn unsupported_filter_type() {
    let mut v = base();
    listener0(&mut v)["filter_chains"][0]["filters"][0] = serde_json::json!({
        "type": "dubbo_proxy",
        "config": {}
    });
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].type: filter type \"dubbo_proxy\" is \
         not supported yet (supported: tcp_proxy, proxy)",
    );
}

#[test]
fn cluster_multiplexing_and_heartbeat() {
    let mut v = base();
    let c = &mut v["cluster_manager"]["clusters"][1];
    c["max_request_per_conn"] = 16.into();
    c["heartbeat"] = serde_json::json!({ "interval": "2s", "max_failures": 3 });
    let l = parse_value(&v).expect("valid");
    let c = &l.config.clusters[1];
    assert_eq!(c.max_request_per_conn, 16);
    assert_eq!(c.heartbeat.interval, Some(Duration::from_secs(2)));
    assert_eq!(c.heartbeat.max_failures, 3);
    assert_eq!(l.config.clusters[0].heartbeat, HeartbeatConfig::default());
    assert_eq!(
        l.config.clusters[0].max_request_per_conn,
        DEFAULT_MAX_REQUEST_PER_CONN
    );

    let c = &mut v["cluster_manager"]["clusters"][1];
    c["heartbeat"] = serde_json::json!({ "interval": "0s" });
    assert_eq!(
        parse_value(&v).expect("valid").config.clusters[1]
            .heartbeat
            .interval,
        None
    );
    let c = &mut v["cluster_manager"]["clusters"][1];
    c["heartbeat"] = serde_json::json!({ "interval": "1ms", "max_failures": 0 });
    c["max_request_per_conn"] = 0.into();
    let e = parse_value(&v).expect_err("invalid").to_string();
    for want in [
        "cluster_manager.clusters[1].max_request_per_conn: must be at least 1",
        "cluster_manager.clusters[1].heartbeat.interval: 1ms is too short",
        "cluster_manager.clusters[1].heartbeat.max_failures: must be at least 1",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
}

#[test]
fn empty_hosts() {
    let mut v = base();
    v["cluster_manager"]["clusters"][1]["hosts"] = serde_json::json!([]);
    assert_one_error(
        &v,
        "cluster_manager.clusters[1].hosts: a cluster needs at least one host (dynamic discovery \
         is not supported yet)",
    );
}

#[test]
fn name_and_go_name() {
    let mut v = base();
    v["cluster_manager"]["clusters"][1]["Name"] = "b".into();
    assert!(parse_value(&v).is_ok(), "equal spellings are fine");
    v["cluster_manager"]["clusters"][1]["Name"] = "c".into();
    assert_one_error(
        &v,
        "cluster_manager.clusters[1].Name: both \"name\" (\"b\") and \"Name\" (\"c\") are set and \
         differ; keep one",
    );
}

#[test]
fn wrong_json_type_reports_path_and_position() {
    let text = r#"{
  "servers": [{ "listeners": [{ "name": "l", "bind_port": "yes" }] }]
}"#;
    let err = parse(text, Format::Json).unwrap_err();
    let ConfigError::Syntax {
        path, line, column, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(path, "servers[0].listeners[0].bind_port");
    assert_eq!((*line, column.is_some()), (Some(2), true));
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "servers[0].listeners[0].bind_port: invalid type: string \"yes\", expected a boolean"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("(line 2, column 63)"), "{msg}");

    // Inside a filter's config (decoded during validation): the path is still complete.
    let mut v = base();
    tcp_config0(&mut v)["max_connect_attempts"] = "3".into();
    let errors = errors_of(&v);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "servers[0].listeners[0].filter_chains[0].filters[0].config.max_connect_attempts: \
             invalid type: string \"3\""
        ),
        "{errors:?}"
    );

    // YAML type errors carry the path too.
    let err = parse(
        "servers:\n  - listeners:\n      - bind_port: [1]\n",
        Format::Yaml,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("servers[0].listeners[0].bind_port: invalid type"),
        "{msg}"
    );
    assert!(msg.ends_with("(line 3, column 20)"), "{msg}");
}

#[test]
fn json_syntax_error_reports_line_and_column() {
    let text = "{\n  \"servers\": [\n    { \"listeners\": [ } ]\n  ]\n}";
    let err = parse(text, Format::Json).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, Some(3));
    assert!(column.is_some());
    let msg = err.to_string();
    assert!(msg.contains("(line 3, column"), "{msg}");
    assert_eq!(msg.matches("line").count(), 1, "location shown once: {msg}");

    let err = parse("{} trailing", Format::Json).unwrap_err();
    assert!(err.to_string().contains("trailing characters"), "{err}");

    let err = parse("servers: [\n", Format::Yaml).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.ends_with("(line 2, column 1)") && msg.matches("line").count() == 1,
        "{msg}"
    );

    for format in [Format::Json, Format::Yaml] {
        let err = parse(" \n", format).unwrap_err();
        assert_eq!(err.to_string(), "the config is empty");
    }
}

#[test]
fn multiple_errors_reported_together() {
    let mut v = base();
    listener0(&mut v)["address"] = "1.2.3.4:99999".into();
    listener0(&mut v)["fast_path"] = "fast".into();
    tcp_config0(&mut v)["cluster"] = "nope".into();
    v["cluster_manager"]["clusters"][0]["lb_type"] = "LB_NOPE".into();
    v["cluster_manager"]["clusters"][1]["hosts"][0]["weight"] = 0.into();
    let err = parse_value(&v).unwrap_err();
    let ConfigError::Invalid(errors) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.len(), 5, "{errors:#?}");
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 5, "one error per line: {shown}");
    for path in [
        "servers[0].listeners[0].address",
        "servers[0].listeners[0].fast_path",
        "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster",
        "cluster_manager.clusters[0].lb_type",
        "cluster_manager.clusters[1].hosts[0].weight",
    ] {
        assert!(
            errors.iter().any(|e| e.path == path),
            "no error at {path}: {shown}"
        );
    }
}

#[test]
fn tcp_proxy_needs_a_target() {
    let mut v = base();
    *tcp_config0(&mut v) = serde_json::json!({});
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].filters[0].config: tcp_proxy needs \"cluster\" \
         or \"routes\"",
    );
}

#[test]
fn enabled_tls_needs_its_keys_disabled_tls_is_fine() {
    let mut v = base();
    listener0(&mut v)["filter_chains"][0]["tls_context"] =
        serde_json::json!({"status": true, "cert_chain": "-----BEGIN CERTIFICATE-----\n"});
    assert_one_error(
        &v,
        "servers[0].listeners[0].filter_chains[0].tls_context.private_key: missing private_key: \
         it comes with cert_chain (a file path, or the PEM text itself)",
    );
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["tls_context"] = serde_json::json!({"status": false});
    listener0(&mut v)["filter_chains"][0]["tls_context"] = serde_json::json!({});
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.clusters[0].tls, None);
    assert!(loaded.config.listeners[0].filter_chains[0].tls.is_empty());
}

#[test]
fn unknown_keys_are_warnings_everywhere() {
    let mut v = base();
    for key in [
        "tracing",
        "metrics",
        "pprof",
        "dynamic_resources",
        "static_resources",
        "close_graceful",
        "inheritOldMosnconfig",
        "raw_dynamic_resources",
        "extends",
        "third_part_codec",
    ] {
        v[key] = serde_json::json!({"anything": [1, 2]});
    }
    listener0(&mut v)["adress"] = "typo".into();
    tcp_config0(&mut v)["stat_prefix"] = "tcp".into();
    v["admin"] = serde_json::json!({"address": {"socket_address": {
        "address": "0.0.0.0", "portValue": 34901, "protocol": "TCP"}}, "access_log_path": "x"});
    let loaded = parse_value(&v).unwrap();
    let w = &loaded.warnings;
    for expected in [
        "ignoring unsupported key tracing",
        "ignoring unsupported key inheritOldMosnconfig",
        "ignoring unsupported key third_part_codec",
        "ignoring unsupported key servers[0].listeners[0].adress (did you mean \"address\"?)",
        "ignoring unsupported key servers[0].listeners[0].filter_chains[0].filters[0].config.stat_prefix",
        "ignoring unsupported key admin.access_log_path",
        "ignoring unsupported key admin.address.socket_address.protocol",
    ] {
        assert!(
            w.iter().any(|x| x == expected),
            "missing {expected:?} in {w:#?}"
        );
    }
    assert_eq!(w.len(), 10 + 4, "{w:#?}");
    assert_eq!(
        loaded.config.admin,
        Some(sock("0.0.0.0:34901")),
        "camelCase portValue read"
    );
}

#[test]
fn bind_port_false_is_skipped_with_warning() {
    let mut v = base();
    listener0(&mut v)["bind_port"] = false.into();
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.config.listeners.is_empty());
    assert!(loaded.warnings[0].contains("servers[0].listeners[0]: listener \"l0\" is not started"));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("no listener will be started"))
    );

    // Still validated.
    tcp_config0(&mut v)["cluster"] = "nope".into();
    assert_eq!(errors_of(&v).len(), 1);
}

#[test]
fn other_validation_errors() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "/servers/0/listeners/0/filter_chains/0/filters/0/config/max_connect_attempts",
            0.into(),
            "config.max_connect_attempts: max_connect_attempts must be between 1 and",
        ),
        (
            "/servers/0/listeners/0/filter_chains/0/filters/0/config/routes",
            serde_json::json!([{"cluster": "a", "SourceAddrs": [{"address": "10.0.0.0", "length": 33}]}]),
            "routes[0].SourceAddrs[0].length: prefix length 33 is out of range for 10.0.0.0 (0..=32)",
        ),
        (
            "/servers/0/listeners/0/filter_chains/0/filters/0/config/routes",
            serde_json::json!([{"cluster": "a", "DestinationPort": "9000-8000"}]),
            "routes[0].DestinationPort: invalid port list \"9000-8000\": range \"9000-8000\" ends before it starts",
        ),
        (
            "/servers/0/listeners/0/address",
            "::1:80".into(),
            "IPv6 addresses need brackets",
        ),
        (
            "/servers/0/listeners/0/name",
            "".into(),
            "listener name must not be empty",
        ),
        (
            "/cluster_manager/clusters/0/hosts/0/weight",
            129.into(),
            "weight 129 is out of range",
        ),
        (
            "/cluster_manager/clusters/0/hosts/0/address",
            "127.0.0.1:0".into(),
            "port 0 cannot be connected to",
        ),
        (
            "/cluster_manager/clusters/0/connect_timeout",
            "0s".into(),
            "connect_timeout must be greater than 0",
        ),
        (
            "/admin",
            serde_json::json!({"address": {"socket_address": {"address": "0.0.0.0", "port_value": 70000}}}),
            "admin.address.socket_address.port_value: invalid port 70000",
        ),
        (
            "/servers/0/graceful_timeout",
            "31s".into(),
            "conflicts with graceful_timeout (30s)",
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut v = base();
        v["graceful_timeout"] = "30s".into();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut v
        } else {
            v.pointer_mut(parent).unwrap()
        };
        target[key] = value.clone();
        let errors = errors_of(&v);
        assert!(
            errors.len() == 1 && errors[0].contains(expected),
            "{pointer}: expected {expected:?}, got {errors:#?}"
        );
    }
}

#[test]
fn read_error_names_the_file() {
    let err = load(Path::new("/nonexistent/mosn.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/mosn.json"), "{err}");
}
