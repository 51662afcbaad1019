//! Routing X-Protocol (RPC) frames through the same tables as HTTP, and whether a route's
//! timeout was configured. Frames are built by hand: header keys and values are spans of the
//! raw bytes, as the codecs make them.

use crate::protocol::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Value, json};
use xxhash_rust::xxh64::xxh64;

use super::tests::{config_with, parse_value};
use super::*;
use crate::config::router::{ActionConfig, RouteTimeout};
use crate::protocol::xprotocol::{Kind, Text, XFrame};

const SRC: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
    5000,
);

/// A request frame whose header fields are spans of its raw bytes, plus `synthesised`
/// fields with static keys and values (as Dubbo's `service`, `version`, `method`).
fn frame(fields: &[(&str, &[u8])], synthesised: &[(&'static str, &'static str)]) -> XFrame {
    let mut raw = BytesMut::from(&b"\x01\x01\x00\x01"[..]);
    let mut headers = Vec::new();
    for (k, v) in fields {
        let ks = raw.len();
        raw.extend_from_slice(k.as_bytes());
        let vs = raw.len();
        raw.extend_from_slice(v);
        headers.push((Text::span(ks, vs), Text::span(vs, raw.len())));
    }
    for (k, v) in synthesised {
        headers.push((Text::Static(k), Text::Static(v)));
    }
    let method = synthesised
        .iter()
        .find(|(k, _)| *k == "method")
        .map(|(_, v)| Text::Static(v));
    XFrame {
        kind: Kind::Request,
        request_id: 7,
        status: 0,
        timeout: Some(Duration::from_secs(3)),
        raw,
        headers,
        service: None,
        method,
        headers_changed: false,
    }
}

/// A Bolt-like request for `service`.
fn bolt(service: &str) -> XFrame {
    frame(&[("service", service.as_bytes())], &[])
}

/// The table of router "r" (the config must have no warnings).
fn table(router: Value) -> Arc<RouteTable> {
    let loaded = match parse_value(&config_with(router)) {
        Ok(l) => l,
        Err(e) => panic!("config refused: {e}"),
    };
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let routers = Routers::new(&loaded.config.routers);
    Arc::clone(routers.get("r").expect("router r"))
}

fn one_vhost(routes: Value) -> Value {
    json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "h", "domains": ["*"], "routers": routes }]
    })
}

fn cluster_for<R: Request + ?Sized>(t: &RouteTable, req: &R) -> Option<String> {
    t.route(req, SRC)?.cluster(req).map(|c| c.into_owned())
}

#[test]
fn mosn_bolt_example_routes_any_service() {
    // MOSN's examples/codes/sofarpc-with-xprotocol-sample: regex, then the exact form.
    let t = table(one_vhost(json!([
        { "match": { "headers": [
            { "name": "service", "value": "com.alipay.test.TestService:1.0" } ] },
          "route": { "cluster_name": "b" } },
        { "match": { "headers": [{ "name": "service", "value": ".*", "regex": true }] },
          "route": { "cluster_name": "a" } },
    ])));
    let test_service = bolt("com.alipay.test.TestService:1.0");
    assert_eq!(cluster_for(&t, &test_service).as_deref(), Some("b"));
    assert_eq!(
        cluster_for(&t, &bolt("com.alipay.test.Other:1.0")).as_deref(),
        Some("a")
    );
    assert_eq!(cluster_for(&t, &bolt("")).as_deref(), Some("a"), "\".*\"");
    assert_eq!(
        cluster_for(&t, &frame(&[("other", b"x")], &[])),
        None,
        "no service header"
    );
    let m = t.route(&test_service, SRC).unwrap();
    assert_eq!(m.virtual_host(), "h");
    assert!(matches!(m.cluster(&test_service), Some(Cow::Borrowed("b"))));
}

#[test]
fn dubbo_service_version_and_method() {
    let t = table(one_vhost(json!([
        { "match": { "headers": [
            { "name": "service", "value": "org.demo.Greeter" },
            { "name": "version", "value": "2\\..*", "regex": true },
            { "name": ":method", "value": "sayHello" } ] },
          "route": { "cluster_name": "a" } },
        { "match": { "headers": [
            { "name": "service", "value": "org.demo.Greeter" },
            { "name": "method", "value": "sayBye" } ] },
          "route": { "cluster_name": "b" } },
    ])));
    let dubbo = |version: &'static str, method: &'static str| {
        frame(
            &[("dubbo", b"2.0.2")],
            &[
                ("service", "org.demo.Greeter"),
                ("version", version),
                ("method", method),
            ],
        )
    };
    assert_eq!(
        cluster_for(&t, &dubbo("2.1.0", "sayHello")).as_deref(),
        Some("a")
    );
    assert_eq!(
        cluster_for(&t, &dubbo("1.0.0", "sayHello")),
        None,
        "version"
    );
    assert_eq!(
        cluster_for(&t, &dubbo("1.0.0", "sayBye")).as_deref(),
        Some("b"),
        "the synthesised method header"
    );
    assert_eq!(cluster_for(&t, &dubbo("2.1.0", "other")), None, ":method");
}

#[test]
fn path_conditions_and_pseudo_headers_on_rpc() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/a", "headers": [{ "name": "service" }] },
          "route": { "cluster_name": "a" } },
        { "match": { "path": "/", "headers": [{ "name": "service" }] },
          "route": { "cluster_name": "a" } },
        { "match": { "regex": ".*", "headers": [{ "name": "service" }] },
          "route": { "cluster_name": "a" } },
        { "match": { "headers": [{ "name": ":authority", "value": ".*", "regex": true }] },
          "route": { "cluster_name": "a" } },
        { "match": { "headers": [{ "name": ":path", "value": ".*", "regex": true }] },
          "route": { "cluster_name": "a" } },
        { "match": { "headers": [{ "name": ":scheme", "value": ".*", "regex": true }] },
          "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/", "query_parameters": [{ "name": "q" }] },
          "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/", "headers": [{ "name": "service", "value": "s1" }] },
          "route": { "cluster_name": "b" } },
        { "match": { "prefix": "/", "case_sensitive": false,
                     "query_parameters": [{ "name": "q", "invert_match": true }] },
          "route": { "cluster_name": "c" } },
    ])));
    assert_eq!(
        cluster_for(&t, &bolt("s1")).as_deref(),
        Some("b"),
        "only the prefix \"/\" matches a frame"
    );
    assert_eq!(
        cluster_for(&t, &bolt("s2")).as_deref(),
        Some("c"),
        "an inverted condition on what a frame lacks"
    );
    let head = http::Request::builder()
        .uri("/a")
        .header("service", "s1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(
        cluster_for(&t, &head).as_deref(),
        Some("a"),
        "HTTP still matches the path"
    );
}

#[test]
fn rpc_frames_take_the_any_virtual_host() {
    let router = |domains: Value| {
        json!({
            "router_config_name": "r",
            "virtual_hosts": [
                { "name": "web", "domains": ["example.com", "*.svc", "api.*"],
                  "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "a" } }] },
                { "name": "rpc", "domains": domains,
                  "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "b" } }] },
            ]
        })
    };
    let t = table(router(json!(["*"])));
    let m = t.route(&bolt("s"), SRC).unwrap();
    assert_eq!(m.virtual_host(), "rpc");
    assert_eq!(m.cluster(&bolt("s")).as_deref(), Some("b"));
    let t = table(router(json!(["rpc.local"])));
    assert!(t.route(&bolt("s"), SRC).is_none(), "no \"*\" virtual host");
}

#[test]
fn rpc_header_keys_and_values() {
    let t = table(one_vhost(json!([
        { "match": { "headers": [{ "name": "X-Tenant", "value": "t1" }] },
          "route": { "cluster_name": "a" } },
        { "match": { "headers": [{ "name": "k", "value": "second" }] },
          "route": { "cluster_name": "b" } },
        { "match": { "headers": [{ "name": "bin", "value": ".*", "regex": true }] },
          "route": { "cluster_name": "c" } },
        { "match": { "headers": [{ "name": "bin" }] },
          "route": { "cluster_name": "m" } },
    ])));
    let c = |fields: &[(&str, &[u8])]| cluster_for(&t, &frame(fields, &[]));
    // The config lowers header names; frame keys are compared ASCII case-insensitively.
    assert_eq!(c(&[("X-Tenant", b"t1")]).as_deref(), Some("a"));
    assert_eq!(c(&[("x-tenant", b"t1")]).as_deref(), Some("a"));
    assert_eq!(c(&[("x-tenant", b"T1")]), None, "values are exact");
    assert_eq!(
        c(&[("k", b"first"), ("k", b"second")]),
        None,
        "the first field of a key decides"
    );
    assert_eq!(
        c(&[("k", b"second"), ("k", b"first")]).as_deref(),
        Some("b")
    );
    assert_eq!(
        c(&[("bin", b"\xff\xfe")]).as_deref(),
        Some("m"),
        "a non-UTF-8 value matches no value condition, but is present"
    );
    assert_eq!(c(&[("bin", b"ok")]).as_deref(), Some("c"));
}

#[test]
fn cluster_header_and_hash_on_rpc() {
    let t = table(one_vhost(json!([
        { "match": { "headers": [{ "name": "x-cluster" }] },
          "route": { "cluster_header": "x-cluster" } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a", "hash_policy": [
            { "header": { "key": "service" } }, { "cookie": { "name": "sid" } },
            { "source_ip": {} } ] } },
    ])));
    assert_eq!(
        cluster_for(&t, &frame(&[("x-cluster", b"c")], &[])).as_deref(),
        Some("c")
    );
    let empty = frame(&[("x-cluster", b"")], &[]);
    assert_eq!(cluster_for(&t, &empty), None, "an empty cluster_header");
    let bad = frame(&[("x-cluster", b"\xff")], &[]);
    assert_eq!(cluster_for(&t, &bad), None, "a non-UTF-8 cluster_header");

    let hash = |f: &XFrame| t.route(f, SRC).unwrap().hash(f, SRC);
    assert_eq!(hash(&bolt("svc")), Some(xxh64(b"svc", 0)));
    assert_eq!(
        hash(&frame(&[("service", b"\xff")], &[])),
        Some(xxh64(b"\xff", 0)),
        "hashes take the bytes"
    );
    assert_eq!(
        hash(&frame(&[("cookie", b"sid=1")], &[])),
        Some(xxh64(&[10, 0, 0, 7], 0)),
        "no cookies in RPC: the source IP"
    );
}

#[test]
fn timeout_configured_tells_absent_from_given() {
    let routes = json!([
        { "match": { "prefix": "/default" }, "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/none" }, "route": { "cluster_name": "a", "timeout": "0s" } },
        { "match": { "prefix": "/sixty" }, "route": { "cluster_name": "a", "timeout": "60s" } },
        { "match": { "prefix": "/direct" }, "direct_response": { "status": 200 } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a", "timeout": "250ms" } },
    ]);
    let t = table(one_vhost(routes.clone()));
    let get = |p: &str| {
        let head = http::Request::builder()
            .uri(p)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let m = t.route(&head, SRC).unwrap();
        (m.timeout(), m.timeout_configured())
    };
    assert_eq!(get("/default"), (Some(Duration::from_secs(60)), false));
    assert_eq!(get("/sixty"), (Some(Duration::from_secs(60)), true));
    assert_eq!(get("/none"), (None, true));
    assert_eq!(get("/x"), (Some(Duration::from_millis(250)), true));
    assert_eq!(get("/direct"), (None, false));

    let loaded = parse_value(&config_with(one_vhost(routes))).unwrap();
    let timeouts: Vec<_> = loaded.config.routers[0].virtual_hosts[0]
        .routes
        .iter()
        .map(|r| match &r.action {
            ActionConfig::Forward(f) => Some(f.timeout),
            _ => None,
        })
        .collect();
    assert_eq!(
        timeouts,
        [
            Some(Some(RouteTimeout::Default)),
            Some(None),
            Some(Some(RouteTimeout::Given(Duration::from_secs(60)))),
            None,
            Some(Some(RouteTimeout::Given(Duration::from_millis(250)))),
        ]
    );
}

#[test]
fn route_table_serves_dyn_requests() {
    // The proxy may hold a request as `&dyn Request`.
    let t = table(one_vhost(json!([
        { "match": { "headers": [{ "name": "service", "value": "s" }] },
          "route": { "cluster_name": "a", "hash_policy": [{ "header": { "key": "service" } }] } },
    ])));
    let f = bolt("s");
    let req: &dyn Request = &f;
    let m = t.route(req, SRC).unwrap();
    assert_eq!(m.cluster(req).as_deref(), Some("a"));
    assert_eq!(m.hash(req, SRC), Some(xxh64(b"s", 0)));
}

#[test]
fn header_mutations_on_rpc_frames() {
    let entry = |k: &str, v: &str, append: bool| json!({ "header": { "key": k, "value": v }, "append": append });
    let t = table(json!({
        "router_config_name": "r",
        "request_headers_to_add": [entry("x-level", "router", false)],
        "virtual_hosts": [{
            "name": "h",
            "domains": ["*"],
            "request_headers_to_remove": ["x-drop"],
            "routers": [{
                "match": { "headers": [{ "name": "service", "value": "a" }] },
                "route": { "cluster_name": "a" },
                "request_headers_to_add": [entry("x-level", "route", false), entry("service", "b", true)],
                "response_headers_to_add": [entry("x-resp", "1", false)]
            }, {
                "match": { "headers": [{ "name": "service", "value": "plain" }] },
                "route": { "cluster_name": "a" }
            }]
        }]
    }));
    let mut f = frame(&[("service", b"a"), ("x-drop", b"1")], &[]);
    let m = t.route(&f, SRC).expect("routed");
    m.apply_frame_request(&mut f);
    assert!(f.headers_changed);
    assert_eq!(f.header("x-drop"), None);
    assert_eq!(
        f.header("x-level"),
        Some(&b"route"[..]),
        "the route level wins"
    );
    let services: Vec<&[u8]> = f
        .headers
        .iter()
        .filter(|(k, _)| f.text(k) == b"service")
        .map(|(_, v)| f.text(v))
        .collect();
    assert_eq!(
        services,
        [&b"a"[..], &b"b"[..]],
        "append keeps the first field"
    );
    let mut resp = frame(&[], &[]);
    m.apply_frame_response(&mut resp);
    assert_eq!(resp.header("x-resp"), Some(&b"1"[..]));

    // A route whose levels change nothing leaves the frame as received: raw bytes only.
    let t = table(one_vhost(json!([{
        "match": { "headers": [{ "name": "service", "value": "plain" }] },
        "route": { "cluster_name": "a" }
    }])));
    let mut f = bolt("plain");
    t.route(&f, SRC)
        .expect("routed")
        .apply_frame_request(&mut f);
    assert!(!f.headers_changed);
}
