//! Behaviour of the route table, built from JSON through the whole config pipeline (decode,
//! validate, [`Routers::new`]). Validation errors are in `validation_tests`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use xxhash_rust::xxh64::xxh64;

use super::*;
use crate::config::{ConfigError, Format, Loaded, parse};

/// A minimal config: a proxy listener using router "r" (given), clusters a, b, c and m.
pub(super) fn config_with(router: Value) -> Value {
    let cluster = |name: &str, port: u16| json!({ "name": name, "hosts": [{ "address": format!("127.0.0.1:{port}") }] });
    json!({
        "servers": [{
            "listeners": [{
                "name": "l0",
                "address": "127.0.0.1:2045",
                "bind_port": true,
                "filter_chains": [{ "filters": [{
                    "type": "proxy",
                    "config": { "downstream_protocol": "Http1", "router_config_name": "r" }
                }] }]
            }],
            "routers": [router]
        }],
        "cluster_manager": {
            "clusters": [cluster("a", 8080), cluster("b", 8081), cluster("c", 8082),
                         cluster("m", 8083)]
        }
    })
}

pub(super) fn parse_value(v: &Value) -> Result<Loaded, ConfigError> {
    parse(&serde_json::to_string_pretty(v).unwrap(), Format::Json)
}

/// Router "r" with one virtual host for every domain, holding `routes`.
fn one_vhost(routes: Value) -> Value {
    json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "h", "domains": ["*"], "routers": routes }]
    })
}

/// The table of router "r", and the config's warnings.
fn table_and_warnings(router: Value) -> (Arc<RouteTable>, Vec<String>) {
    let loaded = match parse_value(&config_with(router)) {
        Ok(l) => l,
        Err(e) => panic!("config refused: {e}"),
    };
    let routers = Routers::new(&loaded.config.routers);
    (
        Arc::clone(routers.get("r").expect("router r")),
        loaded.warnings,
    )
}

/// The table of router "r"; the config must have no warnings.
fn table(router: Value) -> Arc<RouteTable> {
    let (t, warnings) = table_and_warnings(router);
    assert!(warnings.is_empty(), "warnings: {warnings:#?}");
    t
}

fn req(uri: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().uri(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn get(path: &str) -> Parts {
    req(path, Some("example.com"), &[])
}

const SRC: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
    5000,
);

/// The name of the cluster `head` goes to, or `None` (no route, or no cluster).
fn cluster_for(t: &RouteTable, head: &Parts) -> Option<String> {
    t.route(head, SRC)?.cluster(head).map(|c| c.into_owned())
}

fn fwd(prefix: &str, cluster: &str) -> Value {
    json!({ "match": { "prefix": prefix }, "route": { "cluster_name": cluster } })
}

#[test]
fn virtual_host_by_domain() {
    let vh = |name: &str, domains: Value| json!({ "name": name, "domains": domains, "routers": [fwd("/", "a")] });
    let t = table(json!({
        "router_config_name": "r",
        "virtual_hosts": [
            vh("any", json!(["*"])),
            vh("suffix", json!(["*.foo.com"])),
            vh("longer-suffix", json!(["*.bar.foo.com"])),
            vh("prefix", json!(["foo.*"])),
            vh("longer-prefix", json!(["foo.bar.*"])),
            vh("exact", json!(["Exact.com", "x.foo.com"])),
            vh("exact-port", json!(["exact.com:8080"])),
        ]
    }));
    let vhost = |host: &str| {
        t.route(&req("/", Some(host), &[]), SRC)
            .map(|m| m.virtual_host().to_owned())
    };
    assert_eq!(vhost("exact.com").as_deref(), Some("exact"));
    assert_eq!(
        vhost("EXACT.com").as_deref(),
        Some("exact"),
        "case-insensitive"
    );
    assert_eq!(
        vhost("exact.com:9090").as_deref(),
        Some("exact"),
        "port stripped"
    );
    assert_eq!(
        vhost("exact.com:8080").as_deref(),
        Some("exact-port"),
        "port kept first"
    );
    assert_eq!(
        vhost("x.foo.com").as_deref(),
        Some("exact"),
        "exact before wildcard"
    );
    assert_eq!(vhost("y.foo.com").as_deref(), Some("suffix"));
    assert_eq!(vhost("y.foo.com:80").as_deref(), Some("suffix"));
    assert_eq!(vhost("y.bar.foo.com").as_deref(), Some("longer-suffix"));
    assert_eq!(
        vhost("foo.com").as_deref(),
        Some("prefix"),
        "*.foo.com needs a label"
    );
    assert_eq!(vhost("xfoo.com").as_deref(), Some("any"));
    assert_eq!(vhost("foo.org").as_deref(), Some("prefix"));
    assert_eq!(vhost("foo.bar.org").as_deref(), Some("longer-prefix"));
    assert_eq!(vhost("a.foo.bar.org").as_deref(), Some("any"));
    assert_eq!(vhost("[::1]:80").as_deref(), Some("any"));
    // No Host header: the URI's authority.
    let absolute = req("http://foo.org/x", None, &[]);
    assert_eq!(t.route(&absolute, SRC).unwrap().virtual_host(), "prefix");
}

#[test]
fn no_default_virtual_host_means_no_route() {
    let t = table(json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "domains": ["a.com"], "routers": [fwd("/", "a")] }]
    }));
    assert!(t.route(&req("/", Some("b.com"), &[]), SRC).is_none());
    assert!(t.route(&req("/", None, &[]), SRC).is_none());
    let m = t.route(&req("/", Some("a.com"), &[]), SRC).unwrap();
    assert_eq!(m.virtual_host(), "virtual_hosts[0]", "default name");
}

#[test]
fn path_matches_first_wins() {
    let t = table(one_vhost(json!([
        { "match": { "path": "/exact" }, "route": { "cluster_name": "a" } },
        { "match": { "regex": "/r[0-9]+" }, "route": { "cluster_name": "b" } },
        { "match": { "prefix": "/Api", "case_sensitive": false },
          "route": { "cluster_name": "c" } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "m" } },
    ])));
    let c = |p: &str| cluster_for(&t, &get(p));
    assert_eq!(c("/exact").as_deref(), Some("a"));
    assert_eq!(
        c("/exact?q=1").as_deref(),
        Some("a"),
        "the query is not part of the path"
    );
    assert_eq!(c("/exact/more").as_deref(), Some("m"));
    assert_eq!(c("/r12").as_deref(), Some("b"));
    assert_eq!(
        c("/r12x").as_deref(),
        Some("m"),
        "a regex matches the whole path"
    );
    assert_eq!(c("/x/r12").as_deref(), Some("m"));
    assert_eq!(c("/API/v1").as_deref(), Some("c"));
    assert_eq!(c("/apix").as_deref(), Some("c"));
    assert_eq!(c("/ap").as_deref(), Some("m"));
    assert_eq!(
        c("/EXACT").as_deref(),
        Some("m"),
        "case-sensitive by default"
    );
}

#[test]
fn case_insensitive_path_and_regex() {
    let t = table(one_vhost(json!([
        { "match": { "path": "/Exact", "case_sensitive": false },
          "route": { "cluster_name": "a" } },
        { "match": { "regex": "/r[a-c]", "case_sensitive": false },
          "route": { "cluster_name": "b" } },
    ])));
    assert_eq!(cluster_for(&t, &get("/eXACT")).as_deref(), Some("a"));
    assert_eq!(cluster_for(&t, &get("/RB")).as_deref(), Some("b"));
    assert_eq!(cluster_for(&t, &get("/rd")), None);
}

#[test]
fn header_matches() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/", "headers": [
            { "name": "x-exact", "value": "v" },
            { "name": "X-Re", "value": "ab+", "regex": true } ] },
          "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/", "headers": [{ "name": "x-present" }] },
          "route": { "cluster_name": "b" } },
        { "match": { "prefix": "/", "headers": [
            { "name": ":method", "value": "POST" },
            { "name": "x-not", "value": "1", "invert_match": true } ] },
          "route": { "cluster_name": "c" } },
        { "match": { "headers": [{ "name": ":authority", "value": "rpc\\..*", "regex": true }] },
          "route": { "cluster_name": "m" } },
    ])));
    let c = |h: &[(&str, &str)]| cluster_for(&t, &req("/p", Some("example.com"), h));
    assert_eq!(
        c(&[("x-exact", "v"), ("x-re", "abbb")]).as_deref(),
        Some("a")
    );
    assert_eq!(
        c(&[("x-exact", "v"), ("x-re", "abbbc")]),
        None,
        "whole-value regex"
    );
    assert_eq!(c(&[("x-exact", "V"), ("x-re", "ab")]), None);
    assert_eq!(c(&[("x-exact", "v")]), None, "every header must match");
    assert_eq!(c(&[("x-present", "")]).as_deref(), Some("b"));
    let post = |h: &[(&str, &str)]| {
        let mut r = req("/p", Some("example.com"), h);
        r.method = Method::POST;
        cluster_for(&t, &r)
    };
    assert_eq!(post(&[]).as_deref(), Some("c"));
    assert_eq!(post(&[("x-not", "2")]).as_deref(), Some("c"));
    assert_eq!(post(&[("x-not", "1")]), None, "inverted");
    let rpc = req("/anything", Some("rpc.svc"), &[]);
    assert_eq!(
        cluster_for(&t, &rpc).as_deref(),
        Some("m"),
        "headers-only match"
    );
}

#[test]
fn query_parameter_matches() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/", "query_parameters": [
            { "name": "q", "value": "1" }, { "name": "flag" } ] },
          "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/", "query_parameters": [
            { "name": "id", "value": "[0-9]+", "regex": true } ] },
          "route": { "cluster_name": "b" } },
    ])));
    let c = |p: &str| cluster_for(&t, &get(p));
    assert_eq!(c("/x?q=1&flag").as_deref(), Some("a"));
    assert_eq!(c("/x?flag=&q=1").as_deref(), Some("a"));
    assert_eq!(c("/x?q=2&flag"), None);
    assert_eq!(c("/x?q=1"), None, "flag must be present");
    assert_eq!(c("/x?id=42").as_deref(), Some("b"));
    assert_eq!(c("/x?id=42a"), None);
    assert_eq!(c("/x"), None);
}

#[test]
fn cluster_header_and_name() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/h" }, "route": { "cluster_header": "X-Cluster" } },
        fwd("/", "a"),
    ])));
    let head = req("/h", Some("e"), &[("x-cluster", "zzz")]);
    assert_eq!(cluster_for(&t, &head).as_deref(), Some("zzz"));
    let m = t.route(&get("/h"), SRC).unwrap();
    assert_eq!(m.cluster(&get("/h")), None, "header absent");
    assert!(matches!(m.action(&get("/h")), RouteAction::Forward));
    let m = t.route(&get("/"), SRC).unwrap();
    assert!(matches!(m.cluster(&get("/")), Some(Cow::Borrowed("a"))));
}

/// Pearson's chi-square of `counts` against `weights`.
fn chi_square(counts: &[u64], weights: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let total: f64 = weights.iter().sum();
    counts
        .iter()
        .zip(weights)
        .map(|(&c, &w)| {
            let expected = n as f64 * w / total;
            (c as f64 - expected).powi(2) / expected
        })
        .sum()
}

#[test]
fn chi_square_tells_wrong_shares_apart() {
    // The check below can fail: shares off by a few percent exceed the bound.
    let off = [5_400, 2_800, 1_800];
    assert!(chi_square(&off, &[50.0, 30.0, 20.0]) > CHI2_BOUND_DF2);
    assert!(chi_square(&[5_010, 2_990, 2_000], &[50.0, 30.0, 20.0]) < CHI2_BOUND_DF2);
}

/// Chi-square with 2 degrees of freedom exceeds this with probability e^(-x/2) = 1e-6.
const CHI2_BOUND_DF2: f64 = 27.63;

#[test]
fn weighted_clusters_follow_weights() {
    let t = table(one_vhost(json!([{
        "match": { "prefix": "/" },
        "route": {
            "weighted_clusters": [
                { "cluster": { "name": "a", "weight": 50 } },
                { "cluster": { "name": "b", "weight": 30,
                               "metadata_match": { "filter_metadata": { "mosn.lb": {
                                   "version": "v2" } } } } },
                { "cluster": { "name": "c", "weight": 20 } },
                { "cluster": { "name": "m", "weight": 0 } },
            ],
            "metadata_match": { "filter_metadata": { "mosn.lb": { "version": "v1" } } }
        }
    }])));
    let head = get("/");
    let mut counts = [0u64; 4];
    for _ in 0..10_000 {
        let m = t.route(&head, SRC).unwrap();
        let cluster = m.cluster(&head).unwrap();
        // The pick is made once per route(): cluster and metadata agree, and stay put.
        assert_eq!(m.cluster(&head).unwrap(), cluster);
        let version = &m.metadata_match().unwrap()["version"];
        let i = ["a", "b", "c", "m"]
            .iter()
            .position(|c| *c == cluster)
            .unwrap();
        assert_eq!(version, if i == 1 { "v2" } else { "v1" });
        counts[i] += 1;
    }
    assert_eq!(counts[3], 0, "weight 0 is never picked");
    let chi2 = chi_square(&counts[..3], &[50.0, 30.0, 20.0]);
    assert!(
        chi2 < CHI2_BOUND_DF2,
        "counts {counts:?}: chi-square {chi2}"
    );
}

#[test]
fn direct_response() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/" }, "direct_response": { "status": 403, "body": "no" } },
    ])));
    let m = t.route(&get("/"), SRC).unwrap();
    match m.action(&get("/")) {
        RouteAction::DirectResponse { status, body } => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body, "no");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.cluster(&get("/")), None);
    assert_eq!(m.timeout(), None);
    assert!(m.retry_policy().is_none() && m.mirror_policies().is_empty());
}

fn location(t: &RouteTable, head: &Parts) -> (StatusCode, String) {
    match t.route(head, SRC).unwrap().action(head) {
        RouteAction::Redirect { status, location } => {
            (status, location.to_str().unwrap().to_owned())
        }
        other => panic!("not a redirect: {other:?}"),
    }
}

#[test]
fn redirects() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/plain" }, "redirect": {} },
        { "match": { "prefix": "/tls" }, "redirect": { "scheme_redirect": "https" } },
        { "match": { "prefix": "/all" }, "redirect": {
            "scheme_redirect": "https", "host_redirect": "new.example", "port_redirect": 8443,
            "path_redirect": "/p", "response_code": 308 } },
        { "match": { "prefix": "/old/" }, "redirect": {
            "prefix_rewrite": "/new/", "strip_query": true, "response_code": 302 } },
        { "match": { "prefix": "/q" }, "redirect": { "path_redirect": "/p?x=1" } },
        { "match": { "prefix": "/port" }, "redirect": { "port_redirect": 9000 } },
    ])));
    let r = |uri: &str, host: &str| location(&t, &req(uri, Some(host), &[]));
    let moved = StatusCode::MOVED_PERMANENTLY;
    assert_eq!(
        r("/plain/a?b=1", "h.com"),
        (moved, "http://h.com/plain/a?b=1".into())
    );
    assert_eq!(
        r("/tls/a", "h.com:80"),
        (moved, "https://h.com/tls/a".into())
    );
    assert_eq!(
        r("/tls/a", "h.com:8080"),
        (moved, "https://h.com:8080/tls/a".into())
    );
    assert_eq!(
        r("/all/x?k=v", "h.com:80"),
        (
            StatusCode::PERMANENT_REDIRECT,
            "https://new.example:8443/p?k=v".into()
        )
    );
    assert_eq!(
        r("/old/a/b?k=v", "h.com"),
        (StatusCode::FOUND, "http://h.com/new/a/b".into())
    );
    assert_eq!(r("/q?k=v", "h.com"), (moved, "http://h.com/p?x=1".into()));
    assert_eq!(
        r("/port/z", "h.com:80"),
        (moved, "http://h.com:9000/port/z".into())
    );
    assert_eq!(
        r("/port/z", "[::1]:80"),
        (moved, "http://[::1]:9000/port/z".into())
    );
    let m = t.route(&get("/plain"), SRC).unwrap();
    assert_eq!(m.cluster(&get("/plain")), None);
}

#[test]
fn path_and_host_rewrites() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/api/" },
          "route": { "cluster_name": "a", "prefix_rewrite": "/v2/", "host_rewrite": "up.svc" } },
        { "match": { "prefix": "/CI/", "case_sensitive": false },
          "route": { "cluster_name": "a", "prefix_rewrite": "/ci/" } },
        { "match": { "path": "/exact" },
          "route": { "cluster_name": "a", "prefix_rewrite": "/other" } },
        { "match": { "prefix": "/a/" },
          "route": { "cluster_name": "a", "regex_rewrite": {
              "pattern": { "regex": "^/a/([^/]*)/(.*)$" }, "substitution": "/b/\\2/\\1$" } } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a" } },
    ])));
    let rewritten = |uri: &str| {
        let mut head = req(uri, Some("orig.com"), &[]);
        t.route(&head, SRC).unwrap().apply_request(&mut head);
        let host = head.headers["host"].to_str().unwrap().to_owned();
        (head.uri.to_string(), host)
    };
    assert_eq!(
        rewritten("/api/users?x=1"),
        ("/v2/users?x=1".into(), "up.svc".into())
    );
    assert_eq!(rewritten("/ci/X"), ("/ci/X".into(), "orig.com".into()));
    assert_eq!(rewritten("/Ci/X"), ("/ci/X".into(), "orig.com".into()));
    assert_eq!(
        rewritten("/exact?k"),
        ("/other?k".into(), "orig.com".into())
    );
    assert_eq!(
        rewritten("/a/one/two/three?q=1"),
        ("/b/two/three/one$?q=1".into(), "orig.com".into())
    );
    assert_eq!(
        rewritten("/untouched?q"),
        ("/untouched?q".into(), "orig.com".into())
    );
    // Absolute-form URIs keep their scheme; host_rewrite changes their authority too.
    let mut head = req("http://orig.com/api/x", None, &[]);
    t.route(&head, SRC).unwrap().apply_request(&mut head);
    assert_eq!(head.uri.to_string(), "http://up.svc/v2/x");
}

#[test]
fn header_mutations_at_three_levels() {
    let add = |k: &str, v: &str, append: bool| json!({ "header": { "key": k, "value": v }, "append": append });
    let t = table(json!({
        "router_config_name": "r",
        "request_headers_to_add": [add("x-level", "router", false), add("x-router", "1", false),
                                   add("x-list", "router", true)],
        "request_headers_to_remove": ["x-drop-router"],
        "response_headers_to_add": [add("x-resp", "router", false)],
        "response_headers_to_remove": ["server"],
        "virtual_hosts": [{
            "domains": ["*"],
            "request_headers_to_add": [add("x-level", "vhost", false),
                                       add("x-list", "vhost", true)],
            "request_headers_to_remove": ["x-drop-vhost"],
            "response_headers_to_add": [add("x-resp", "vhost", false),
                                        add("x-resp-vhost", "1", false)],
            "routers": [{
                "match": { "prefix": "/" },
                "route": { "cluster_name": "a" },
                "request_headers_to_add": [add("x-level", "route", false),
                                           add("x-list", "route", true),
                                           add("x-replaced", "new", false)],
                "request_headers_to_remove": ["x-replaced", "x-drop-route"],
                "response_headers_to_add": [add("x-resp", "route", false)]
            }]
        }]
    }));
    let mut head = req(
        "/",
        Some("h"),
        &[
            ("x-drop-router", "1"),
            ("x-drop-vhost", "1"),
            ("x-drop-route", "1"),
            ("x-replaced", "old"),
            ("x-list", "orig"),
            ("x-level", "orig"),
            ("x-keep", "k"),
        ],
    );
    let m = t.route(&head, SRC).unwrap();
    m.apply_request(&mut head);
    let all = |name: &str| -> Vec<&str> {
        head.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(
        all("x-level"),
        ["route"],
        "the route wins over vhost and router"
    );
    assert_eq!(all("x-list"), ["orig", "route", "vhost", "router"]);
    assert_eq!(all("x-router"), ["1"]);
    assert_eq!(all("x-replaced"), ["new"], "removal comes before addition");
    assert_eq!(all("x-keep"), ["k"]);
    for gone in ["x-drop-router", "x-drop-vhost", "x-drop-route"] {
        assert!(head.headers.get(gone).is_none(), "{gone}");
    }
    let mut resp = http::Response::builder()
        .header("server", "upstream")
        .header("x-resp", "upstream")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    m.apply_response(&mut resp);
    assert!(resp.headers.get("server").is_none());
    assert_eq!(resp.headers["x-resp"], "route");
    assert_eq!(resp.headers["x-resp-vhost"], "1");
    assert_eq!(resp.headers.len(), 2);
}

#[test]
fn timeouts() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/default" }, "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/none" }, "route": { "cluster_name": "a", "timeout": "0s" } },
        { "match": { "prefix": "/nanos" },
          "route": { "cluster_name": "a", "timeout": 1_500_000_000u64 } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a", "timeout": "250ms" } },
    ])));
    let timeout = |p: &str| t.route(&get(p), SRC).unwrap().timeout();
    assert_eq!(timeout("/default"), Some(Duration::from_secs(60)));
    assert_eq!(timeout("/none"), None);
    assert_eq!(timeout("/nanos"), Some(Duration::from_millis(1500)));
    assert_eq!(timeout("/x"), Some(Duration::from_millis(250)));
}

#[test]
fn retry_policies() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/bool" }, "route": { "cluster_name": "a", "retry_policy": {
            "retry_on": true, "retry_timeout": "500ms", "num_retries": 3 } } },
        { "match": { "prefix": "/envoy" }, "route": { "cluster_name": "a", "retry_policy": {
            "retry_on": "gateway-error, retriable-status-codes", "per_try_timeout": "1s",
            "retriable_status_codes": [409] } } },
        { "match": { "prefix": "/reset" }, "route": { "cluster_name": "a", "retry_policy": {
            "retry_on": "reset" } } },
        { "match": { "prefix": "/grpc" }, "route": { "cluster_name": "a", "retry_policy": {
            "retry_on": "unavailable,cancelled, deadline-exceeded,resource-exhausted" } } },
        { "match": { "prefix": "/off" }, "route": { "cluster_name": "a", "retry_policy": {
            "retry_on": false, "num_retries": 3 } } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a" } },
    ])));
    let policy = |p: &str| t.route(&get(p), SRC).unwrap().retry_policy().cloned();
    let b = policy("/bool").unwrap();
    assert_eq!(
        b,
        RetryPolicy {
            num_retries: 3,
            per_try_timeout: Some(Duration::from_millis(500)),
            on_connect_failure: true,
            on_5xx: true,
            on_gateway_error: true,
            on_status: vec![],
            on_grpc: vec![],
        }
    );
    assert!(b.retries_status(500) && b.retries_status(503) && !b.retries_status(404));
    let e = policy("/envoy").unwrap();
    assert_eq!(
        e,
        RetryPolicy {
            num_retries: 1,
            per_try_timeout: Some(Duration::from_secs(1)),
            on_connect_failure: false,
            on_5xx: false,
            on_gateway_error: true,
            on_status: vec![409],
            on_grpc: vec![],
        }
    );
    assert!(e.retries_status(409) && e.retries_status(502) && !e.retries_status(500));
    let g = policy("/grpc").unwrap();
    assert_eq!(g.on_grpc, vec![14, 1, 4, 8]);
    assert!(g.retries_grpc(14) && g.retries_grpc(8) && !g.retries_grpc(2));
    assert!(
        !g.retries_status(503),
        "gRPC conditions do not retry HTTP statuses"
    );
    let r = policy("/reset").unwrap();
    assert!(r.on_connect_failure && !r.on_5xx && !r.on_gateway_error);
    assert_eq!(policy("/off"), None);
    assert_eq!(policy("/"), None);
}

#[test]
fn metadata_match_values_are_stringified() {
    let t = table(one_vhost(json!([{
        "match": { "prefix": "/" },
        "route": { "cluster_name": "a", "metadata_match": { "filter_metadata": { "mosn.lb": {
            "version": "v1", "weight": 3, "canary": true } } } }
    }])));
    let m = t.route(&get("/"), SRC).unwrap();
    let want: MetadataMatch = [("canary", "true"), ("version", "v1"), ("weight", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(m.metadata_match(), Some(&want));
    let t = table(one_vhost(json!([fwd("/", "a")])));
    assert_eq!(t.route(&get("/"), SRC).unwrap().metadata_match(), None);
}

#[test]
fn mirror_policies() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/one" }, "route": { "cluster_name": "a",
          "request_mirror_policies": { "cluster": "m", "percent": 50 } } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a",
          "request_mirror_policies": [{ "cluster": "m" }, { "cluster": "b", "percent": 0 }] } },
    ])));
    let mirrors = |p: &str| t.route(&get(p), SRC).unwrap().mirror_policies().to_vec();
    let mp = |c: &str, fraction: f64| MirrorPolicy {
        cluster: c.into(),
        fraction,
    };
    assert_eq!(mirrors("/one"), [mp("m", 0.5)]);
    assert_eq!(mirrors("/two"), [mp("m", 1.0), mp("b", 0.0)]);
}

#[test]
fn hash_policies() {
    let t = table(one_vhost(json!([
        { "match": { "prefix": "/h" }, "route": { "cluster_name": "a", "hash_policy": [
            { "header": { "key": "x-user" } }, { "cookie": { "name": "sid" } },
            { "source_ip": {} } ] } },
        { "match": { "prefix": "/c" }, "route": { "cluster_name": "a", "hash_policy": [
            { "cookie": { "name": "sid" } } ] } },
        fwd("/", "a"),
    ])));
    let hash = |p: &str, h: &[(&str, &str)], src: SocketAddr| {
        let head = req(p, Some("e"), h);
        t.route(&head, SRC).unwrap().hash(&head, src)
    };
    assert_eq!(
        hash("/h", &[("x-user", "alice")], SRC),
        Some(xxh64(b"alice", 0))
    );
    assert_eq!(
        hash("/h", &[("cookie", "a=1; sid=s3"), ("x-other", "1")], SRC),
        Some(xxh64(b"s3", 0)),
        "the header is absent: the cookie"
    );
    assert_eq!(
        hash("/h", &[], SRC),
        Some(xxh64(&[10, 0, 0, 7], 0)),
        "then the source IP"
    );
    let mapped: SocketAddr = "[::ffff:10.0.0.7]:1".parse().unwrap();
    assert_eq!(hash("/h", &[], mapped), Some(xxh64(&[10, 0, 0, 7], 0)));
    let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
    let v6_octets = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    assert_eq!(hash("/h", &[], v6), Some(xxh64(&v6_octets, 0)));
    assert_eq!(
        hash("/c", &[("cookie", "sidx=1")], SRC),
        None,
        "no such cookie"
    );
    assert_eq!(
        hash("/c", &[("cookie", "a=1"), ("cookie", "sid=z")], SRC),
        Some(xxh64(b"z", 0))
    );
    assert_eq!(hash("/", &[("x-user", "alice")], SRC), None, "no policy");
}

#[test]
fn unsupported_keys_are_warnings_with_full_paths() {
    let (t, warnings) = table_and_warnings(json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "first", "domains": ["a.com"], "routers": [fwd("/", "a")] },
                          { "name": "second", "domains": ["*"], "per_filter_config": {},
                            "routers": [{
            "match": { "prefix": "/", "variables": [] },
            "route": { "cluster_name": "a", "foo": 1, "auto_host_rewrite": true,
                       "metadata_match": { "filter_metadata": { "other": { "k": "v" } } },
                       "hash_policy": [{ "cookie": { "name": "sid", "ttl": "1s" } }] },
            "direct": 1 }] }],
        "timeout": "1s"
    }));
    assert_eq!(
        warnings,
        [
            "ignoring unsupported key servers[0].routers[0].timeout",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].per_filter_config",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].direct \
             (did you mean \"redirect\"?)",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].match\
             .variables",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].route\
             .auto_host_rewrite",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].route\
             .foo",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].route\
             .hash_policy[0].cookie.ttl",
            "ignoring unsupported key servers[0].routers[0].virtual_hosts[1].routers[0].route\
             .metadata_match.filter_metadata.other (only \"mosn.lb\" is read)",
        ]
    );
    let m = t.route(&get("/"), SRC).unwrap();
    assert_eq!(m.virtual_host(), "second");
    assert_eq!(m.metadata_match(), None);
}
