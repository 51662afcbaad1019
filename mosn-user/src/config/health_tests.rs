//! Tests of `health_check`, `outlier_detection` and `circuit_breakers` validation.

use serde_json::json;

use super::*;
use crate::config::{self, ConfigError, Format};

const P: &str = "c";

/// Runs `f` on `v`; returns its result, the errors ("path: reason") and the warnings.
fn run<T>(
    v: Value,
    f: impl FnOnce(Option<&Value>, &str, &mut Diag) -> T,
) -> (T, Vec<String>, Vec<String>) {
    let mut d = Diag::default();
    let out = f(Some(&v), P, &mut d);
    let errors = d.errors.iter().map(ToString::to_string).collect();
    (out, errors, d.warnings)
}

fn hc(v: Value) -> (Option<HealthCheckConfig>, Vec<String>, Vec<String>) {
    run(v, health_check)
}

fn hc_error(v: Value) -> Vec<String> {
    let (out, errors, _) = hc(v);
    assert!(out.is_none(), "{out:?}");
    errors
}

fn http(v: Value) -> HttpCheckConfig {
    let (out, errors, _) = hc(json!({ "protocol": "http", "check_config": v }));
    assert!(errors.is_empty(), "{errors:?}");
    match out.unwrap().kind {
        HealthCheckKind::Http(h) => h,
        other => panic!("{other:?}"),
    }
}

#[test]
fn health_check_defaults() {
    let (out, errors, warnings) = hc(json!({ "protocol": "TCP" }));
    assert!(
        errors.is_empty() && warnings.is_empty(),
        "{errors:?} {warnings:?}"
    );
    assert_eq!(
        out.unwrap(),
        HealthCheckConfig {
            kind: HealthCheckKind::Tcp,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(15),
            interval_jitter: Duration::ZERO,
            initial_delay: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    );
    assert_eq!(
        http(json!(null)),
        HttpCheckConfig {
            path: "/".into(),
            host: None,
            method: "GET".into(),
            codes: vec![CodeRange {
                start: 200,
                end: 299
            }],
            port: None,
        }
    );
    let mut d = Diag::default();
    assert_eq!(health_check(None, P, &mut d), None);
    assert_eq!(health_check(Some(&Value::Null), P, &mut d), None);
    assert!(d.errors.is_empty());
}

#[test]
fn health_check_full() {
    let (out, errors, warnings) = hc(json!({
        "protocol": "Http1", "timeout": "2s", "interval": "500ms", "interval_jitter": "100ms",
        "initial_delay": "0s", "healthy_threshold": 1, "unhealthy_threshold": 5,
        "service_name": "x",
        "check_config": { "path": "/health?full=1", "host": "svc.local", "port": 9090,
                          "codes": [200, "301-302", { "start": 204, "end": 206 }], "method": "HEAD" }
    }));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(warnings, vec!["ignoring unsupported key c.service_name"]);
    let hc = out.unwrap();
    assert_eq!(
        (
            hc.timeout,
            hc.interval,
            hc.interval_jitter,
            hc.initial_delay
        ),
        (
            Duration::from_secs(2),
            Duration::from_millis(500),
            Duration::from_millis(100),
            Duration::ZERO
        )
    );
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (1, 5));
    let HealthCheckKind::Http(h) = hc.kind else {
        panic!()
    };
    assert_eq!(
        (
            h.path.as_str(),
            h.host.as_deref(),
            h.port,
            h.method.as_str()
        ),
        ("/health?full=1", Some("svc.local"), Some(9090), "HEAD")
    );
    let accepted: Vec<u16> = [200, 201, 204, 206, 207, 301, 302, 303]
        .into_iter()
        .filter(|&s| h.accepts(s))
        .collect();
    assert_eq!(accepted, vec![200, 204, 206, 301, 302]);
}

#[test]
fn mosn_nested_http_check_config() {
    let h = http(json!({ "http_check_config": {
        "path": "/ok", "domain": "d.example", "port": 8081,
        "codes": [{ "Start": 200, "End": 204 }] } }));
    assert_eq!(
        (h.path.as_str(), h.host.as_deref(), h.port),
        ("/ok", Some("d.example"), Some(8081))
    );
    assert_eq!(
        h.codes,
        vec![CodeRange {
            start: 200,
            end: 204
        }]
    );
    let (_, errors, warnings) = hc(json!({ "protocol": "http", "check_config": {
        "http_check_config": { "timeout": "5s", "pathh": "/" } } }));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        vec![
            "ignoring c.check_config.http_check_config.timeout: the health_check's own timeout applies",
            "ignoring unsupported key c.check_config.http_check_config.pathh (did you mean \"path\"?)",
        ]
    );
}

#[test]
fn health_check_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({}),
            "c.protocol: missing protocol (supported: \"tcp\", \"http\", \"bolt\", \"dubbo\")",
        ),
        (
            json!({ "protocol": "grpc" }),
            "c.protocol: unsupported health check protocol \"grpc\" (supported: \"tcp\", \"http\", \"bolt\", \"dubbo\")",
        ),
        (
            json!({ "protocol": "tcp", "interval": "0s" }),
            "c.interval: interval must be greater than 0",
        ),
        (
            json!({ "protocol": "tcp", "timeout": "0" }),
            "c.timeout: timeout must be greater than 0",
        ),
        (
            json!({ "protocol": "tcp", "timeout": "5 parsecs" }),
            "c.timeout: invalid duration \"5 parsecs\": ",
        ),
        (
            json!({ "protocol": "tcp", "interval_jitter": -1 }),
            "c.interval_jitter: invalid duration: negative duration -1",
        ),
        (
            json!({ "protocol": "tcp", "healthy_threshold": 0 }),
            "c.healthy_threshold: healthy_threshold must be at least 1",
        ),
        (
            json!({ "protocol": "tcp", "unhealthy_threshold": 5_000_000_000u64 }),
            "c.unhealthy_threshold: unhealthy_threshold 5000000000 is out of range (1..=4294967295)",
        ),
        (
            json!({ "protocol": "tcp", "unhealthy_threshold": -2 }),
            "c.unhealthy_threshold: invalid value: integer `-2`, expected u64",
        ),
        (
            json!("tcp"),
            "c: invalid type: string \"tcp\", expected a health_check object",
        ),
        (
            json!({ "protocol": "http", "check_config": { "path": "health" } }),
            "c.check_config.path: path \"health\" must start with \"/\"",
        ),
        (
            json!({ "protocol": "http", "check_config": { "path": "/a b" } }),
            "c.check_config.path: invalid path \"/a b\": must be non-empty, without spaces or control characters",
        ),
        (
            json!({ "protocol": "http", "check_config": { "host": "" } }),
            "c.check_config.host: invalid host \"\": must be non-empty, without spaces or control characters",
        ),
        (
            json!({ "protocol": "http", "check_config": { "method": "get" } }),
            "c.check_config.method: invalid method \"get\" (expected an upper-case method such as \"GET\")",
        ),
        (
            json!({ "protocol": "http", "check_config": { "scheme": "https" } }),
            "c.check_config.scheme: unsupported scheme \"https\": health checks speak plain \"http\" only",
        ),
        (
            json!({ "protocol": "http", "check_config": { "port": 70000 } }),
            "c.check_config.port: port 70000 is out of range (1..=65535)",
        ),
        (
            json!({ "protocol": "http", "check_config": { "codes": [] } }),
            "c.check_config.codes: codes must not be empty (leave it out for 200-299)",
        ),
        (
            json!({ "protocol": "http", "check_config": { "codes": [200, "2xx"] } }),
            "c.check_config.codes[1]: invalid status code \"2xx\": expected a status code (200), a range \"200-299\" or {\"start\": 200, \"end\": 299}",
        ),
        (
            json!({ "protocol": "http", "check_config": { "codes": [{ "start": 300, "end": 200 }] } }),
            "c.check_config.codes[0]: invalid status range 300-200: codes are 100..=599, start <= end",
        ),
        (
            json!({ "protocol": "http", "check_config": { "codes": [600] } }),
            "c.check_config.codes[0]: invalid status range 600-600: codes are 100..=599, start <= end",
        ),
        (
            json!({ "protocol": "http", "check_config": { "path": 5 } }),
            "c.check_config.path: invalid type: integer `5`, expected a string",
        ),
        (
            json!({ "protocol": "http", "check_config": { "http_check_config": { "path": "x" } } }),
            "c.check_config.http_check_config.path: path \"x\" must start with \"/\"",
        ),
        (
            json!({ "protocol": "http", "check_config": { "http_check_config": { "http_check_config": {} } } }),
            "c.check_config.http_check_config.http_check_config: http_check_config cannot be nested twice",
        ),
    ];
    for (v, expected) in cases {
        let errors = hc_error(v.clone());
        assert_eq!(errors.len(), 1, "{v}: {errors:#?}");
        assert!(
            errors[0].starts_with(expected),
            "{v}:\n{}\n{expected}",
            errors[0]
        );
    }
    // Several errors at once, each at its own path.
    let errors = hc_error(json!({ "protocol": "tcp", "interval": "0s", "healthy_threshold": 0 }));
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn x_protocol_checks_send_heartbeats() {
    for (written, name) in [("bolt", "bolt"), ("Dubbo", "dubbo"), ("BOLT", "bolt")] {
        let (out, errors, warnings) = hc(json!({ "protocol": written, "timeout": "500ms",
            "interval": "5s", "healthy_threshold": 1 }));
        assert!(
            errors.is_empty() && warnings.is_empty(),
            "{errors:?} {warnings:?}"
        );
        assert_eq!(
            out.unwrap(),
            HealthCheckConfig {
                kind: HealthCheckKind::XProtocol(name),
                timeout: Duration::from_millis(500),
                interval: Duration::from_secs(5),
                interval_jitter: Duration::ZERO,
                initial_delay: DEFAULT_HC_INITIAL_DELAY,
                healthy_threshold: 1,
                unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            },
            "{written}"
        );
    }
    // Every X-Protocol built in is a health check protocol, by its own name.
    for p in crate::protocol::x_protocols() {
        let (out, errors, _) = hc(json!({ "protocol": p.name() }));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.unwrap().kind, HealthCheckKind::XProtocol(p.name()));
    }
    let (out, errors, warnings) =
        hc(json!({ "protocol": "bolt", "check_config": { "path": "/" } }));
    assert!(out.is_some() && errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        vec!["ignoring c.check_config: a bolt health check only sends heartbeats"]
    );
}

#[test]
fn tcp_check_config_is_a_warning() {
    let (out, errors, warnings) = hc(json!({ "protocol": "tcp", "check_config": { "path": "/" } }));
    assert!(out.is_some() && errors.is_empty());
    assert_eq!(
        warnings,
        vec!["ignoring c.check_config: a tcp health check only connects"]
    );
}

#[test]
fn outlier_defaults_and_values() {
    let (out, errors, warnings) = run(json!({}), outlier_detection);
    assert!(errors.is_empty() && warnings.is_empty());
    let def = out.unwrap();
    assert_eq!(def, OutlierConfig::default());
    assert_eq!(
        (
            def.consecutive_5xx,
            def.consecutive_gateway_failure,
            def.interval,
            def.base_ejection_time,
            def.max_ejection_time,
            def.max_ejection_percent,
            def.enforcing_consecutive_5xx,
            def.enforcing_consecutive_gateway_failure
        ),
        (
            5,
            5,
            Duration::from_secs(10),
            Duration::from_secs(30),
            Duration::from_secs(300),
            10,
            100,
            100
        )
    );
    let (out, errors, warnings) = run(
        json!({ "consecutive_5xx": 2, "consecutive_gateway_failure": 3, "interval": "1s",
                "base_ejection_time": "400s", "max_ejection_percent": 0,
                "enforcing_consecutive_5xx": 50, "enforcing_consecutive_gateway_failure": 0,
                "success_rate_minimum_hosts": 5 }),
        outlier_detection,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        vec!["ignoring unsupported key c.success_rate_minimum_hosts"]
    );
    assert_eq!(
        out.unwrap(),
        OutlierConfig {
            consecutive_5xx: 2,
            consecutive_gateway_failure: 3,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(400),
            // Absent: the larger of 300s and base_ejection_time.
            max_ejection_time: Duration::from_secs(400),
            max_ejection_percent: 0,
            enforcing_consecutive_5xx: 50,
            enforcing_consecutive_gateway_failure: 0,
        }
    );
    let mut d = Diag::default();
    assert_eq!(outlier_detection(None, P, &mut d), None);
}

#[test]
fn outlier_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "consecutive_5xx": 0 }),
            "c.consecutive_5xx: consecutive_5xx must be at least 1 (to stop this kind of ejection, set its enforcing_* to 0)",
        ),
        (
            json!({ "consecutive_gateway_failure": 0 }),
            "c.consecutive_gateway_failure: consecutive_gateway_failure must be at least 1",
        ),
        (
            json!({ "max_ejection_percent": 101 }),
            "c.max_ejection_percent: max_ejection_percent 101 is out of range (0..=100)",
        ),
        (
            json!({ "enforcing_consecutive_5xx": 200 }),
            "c.enforcing_consecutive_5xx: enforcing_consecutive_5xx 200 is out of range (0..=100)",
        ),
        (
            json!({ "enforcing_consecutive_gateway_failure": 101 }),
            "c.enforcing_consecutive_gateway_failure: enforcing_consecutive_gateway_failure 101 is out of range (0..=100)",
        ),
        (
            json!({ "interval": "0s" }),
            "c.interval: interval must be greater than 0",
        ),
        (
            json!({ "base_ejection_time": "0s" }),
            "c.base_ejection_time: base_ejection_time must be greater than 0",
        ),
        (
            json!({ "max_ejection_time": "0s" }),
            "c.max_ejection_time: max_ejection_time must be greater than 0",
        ),
        (
            json!({ "base_ejection_time": "60s", "max_ejection_time": "30s" }),
            "c.max_ejection_time: max_ejection_time (30s) must not be less than base_ejection_time (60s)",
        ),
        (
            json!({ "interval": true }),
            "c.interval: invalid type: boolean `true`, expected a duration string",
        ),
        (
            json!([]),
            "c: invalid type: sequence, expected an outlier_detection object",
        ),
    ];
    for (v, expected) in cases {
        let (out, errors, _) = run(v.clone(), outlier_detection);
        assert!(out.is_none(), "{v}");
        assert_eq!(errors.len(), 1, "{v}: {errors:#?}");
        assert!(
            errors[0].starts_with(expected),
            "{v}:\n{}\n{expected}",
            errors[0]
        );
    }
}

#[test]
fn circuit_breakers_forms_and_defaults() {
    let def = CircuitBreakersConfig {
        max_connections: 1024,
        max_pending_requests: 1024,
        max_requests: 1024,
        max_retries: 3,
    };
    assert_eq!(CircuitBreakersConfig::default(), def);
    let mut d = Diag::default();
    assert_eq!(circuit_breakers(None, P, &mut d), def);
    let set = CircuitBreakersConfig {
        max_connections: 10,
        max_pending_requests: 20,
        max_requests: 30,
        max_retries: 0,
    };
    let entry = json!({ "priority": "default", "max_connections": 10,
        "max_pending_requests": 20, "max_requests": 30, "max_retries": 0 });
    // MOSN's array, with a "high" entry that is ignored.
    let (out, errors, warnings) = run(
        json!([{ "priority": "high", "max_connections": 1 }, entry]),
        circuit_breakers,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(out, set);
    assert_eq!(
        warnings,
        vec!["ignoring c[0]: requests carry no priority here, only \"default\" thresholds apply"]
    );
    // Envoy's object; priority defaults to "default", absent limits keep their defaults.
    let (out, errors, _) = run(
        json!({ "thresholds": [{ "max_requests": 7 }] }),
        circuit_breakers,
    );
    assert!(errors.is_empty());
    assert_eq!(
        out,
        CircuitBreakersConfig {
            max_requests: 7,
            ..def
        }
    );
}

#[test]
fn circuit_breaker_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([{ "max_connections": 0 }]),
            "c[0].max_connections: max_connections must be at least 1 (0 would refuse everything; leave it out for the default)",
        ),
        (
            json!({ "thresholds": [{ "max_requests": 0 }] }),
            "c.thresholds[0].max_requests: max_requests must be at least 1",
        ),
        (
            json!([{ "max_pending_requests": 5_000_000_000u64 }]),
            "c[0].max_pending_requests: max_pending_requests 5000000000 is out of range",
        ),
        (
            json!([{ "priority": "urgent" }]),
            "c[0].priority: unknown priority \"urgent\" (expected \"default\" or \"high\")",
        ),
        (
            json!([{}, { "priority": "default" }]),
            "c[1].priority: duplicate \"default\" thresholds (first at c[0])",
        ),
        (
            json!([{ "max_retries": "3" }]),
            "c[0].max_retries: invalid type: string \"3\", expected u64",
        ),
        (
            json!("x"),
            "c: invalid type: string \"x\", expected a circuit_breakers object or an array of thresholds",
        ),
    ];
    for (v, expected) in cases {
        let (_, errors, _) = run(v.clone(), circuit_breakers);
        assert_eq!(errors.len(), 1, "{v}: {errors:#?}");
        assert!(
            errors[0].starts_with(expected),
            "{v}:\n{}\n{expected}",
            errors[0]
        );
    }
}

/// Through the whole pipeline: errors carry the cluster's full path, and a valid block ends
/// up in the cluster's config.
#[test]
fn paths_through_the_pipeline() {
    let cfg = |hc: Value| {
        json!({ "cluster_manager": { "clusters": [{
            "name": "a", "hosts": [{ "address": "127.0.0.1:8080" }],
            "health_check": hc,
            "outlier_detection": { "consecutive_5xx": 0 },
            "circuit_breakers": [{ "max_requests": 0 }]
        }]}})
    };
    let errors = match config::parse(
        &cfg(json!({ "protocol": "tcp", "interval": "0s" })).to_string(),
        Format::Json,
    ) {
        Err(ConfigError::Invalid(e)) => e.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let p = "cluster_manager.clusters[0]";
    assert_eq!(
        errors,
        vec![
            format!("{p}.health_check.interval: interval must be greater than 0"),
            format!(
                "{p}.outlier_detection.consecutive_5xx: consecutive_5xx must be at least 1 (to stop this kind of ejection, set its enforcing_* to 0)"
            ),
            format!(
                "{p}.circuit_breakers[0].max_requests: max_requests must be at least 1 (0 would refuse everything; leave it out for the default)"
            ),
        ]
    );
    let ok = json!({ "cluster_manager": { "clusters": [{
        "name": "a", "hosts": [{ "address": "127.0.0.1:8080" }],
        "health_check": { "protocol": "tcp" }, "outlier_detection": {},
        "circuit_breakers": { "thresholds": [{ "max_requests": 5 }] }
    }]}});
    let c = config::parse(&ok.to_string(), Format::Json)
        .unwrap()
        .config
        .clusters
        .remove(0);
    assert_eq!(c.health_check.unwrap().kind, HealthCheckKind::Tcp);
    assert_eq!(c.outlier_detection, Some(OutlierConfig::default()));
    assert_eq!(c.circuit_breakers.max_requests, 5);
}

/// `examples/bolt.json` checks its Bolt servers with heartbeats.
#[test]
fn bolt_example_has_a_heartbeat_check() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bolt.json");
    let loaded = config::load(&path).unwrap();
    let kinds: Vec<_> = loaded
        .config
        .clusters
        .iter()
        .filter_map(|c| c.health_check.as_ref().map(|h| h.kind.clone()))
        .collect();
    assert_eq!(kinds, [HealthCheckKind::XProtocol("bolt")]);
}
