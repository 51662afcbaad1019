//! Tests of listeners with several filter chains: `filter_chain_match`, TLS per chain,
//! `inspector` and the kernel fast path.

use serde_json::{Value, json};

use super::tls::{Files, chain0};
use super::*;

const L0: &str = "servers[0].listeners[0]";

fn tcp_chain(cluster: &str) -> Value {
    json!({ "filters": [{ "type": "tcp_proxy", "config": { "cluster": cluster } }] })
}

/// `base()` with `chains` as the listener's filter chains.
fn with_chains(chains: Vec<Value>) -> Value {
    let mut v = base();
    listener0(&mut v)["filter_chains"] = Value::Array(chains);
    v
}

fn with_match(mut chain: Value, m: Value) -> Value {
    chain["filter_chain_match"] = m;
    chain
}

fn with_tls(mut chain: Value, ctx: Value) -> Value {
    chain["tls_context"] = ctx;
    chain
}

fn cluster_of(c: &FilterChainConfig) -> &str {
    c.filter.tcp_proxy().unwrap().cluster.as_deref().unwrap()
}

#[test]
fn two_chains_with_different_clusters() {
    let f = Files::new();
    let v = with_chains(vec![
        with_tls(
            with_match(
                tcp_chain("a"),
                json!({ "server_names": ["A.example.com", "*.Example.org", "a.example.com"],
                        "transport_protocol": "tls", "application_protocols": ["h2", "h2"] }),
            ),
            f.server(),
        ),
        tcp_chain("b"),
    ]);
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let l = &loaded.config.listeners[0];
    assert_eq!(l.filter_chains.len(), 2);
    let (first, second) = (&l.filter_chains[0], &l.filter_chains[1]);
    assert_eq!(
        first.chain_match,
        ChainMatch {
            server_names: vec!["a.example.com".into(), "*.example.org".into()],
            transport_protocol: Some("tls".into()),
            application_protocols: vec!["h2".into()],
        }
    );
    assert!(first.chain_match.needs_inspection());
    assert_eq!(first.tls.len(), 1);
    assert_eq!(cluster_of(first), "a");
    assert_eq!(second.chain_match, ChainMatch::default());
    assert!(!second.chain_match.needs_inspection());
    assert!(second.tls.is_empty());
    assert_eq!(cluster_of(second), "b");
    assert_eq!(l.filter(), &first.filter, "filter() is the first chain's");
}

#[test]
fn tls_passthrough_and_mixed_filters() {
    // A chain may pick TLS connections by SNI without terminating them, and a tcp_proxy chain
    // and a proxy chain may share a listener; stream filters run on the proxy chains.
    let mut v = with_chains(vec![
        with_match(tcp_chain("a"), json!({ "server_names": ["a.example.com"] })),
        json!({ "filters": [{ "type": "proxy",
                "config": { "downstream_protocol": "Http1", "router_config_name": "r" } }] }),
    ]);
    v["servers"][0]["routers"] = json!([{ "router_config_name": "r" }]);
    listener0(&mut v)["stream_filters"] =
        json!([{ "type": "mirror", "config": { "cluster": "b" } }]);
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let chains = &loaded.config.listeners[0].filter_chains;
    assert!(chains.iter().all(|c| c.tls.is_empty()));
    assert!(matches!(chains[1].filter, NetworkFilter::Proxy(_)));

    // Stream filters with tcp_proxy chains only.
    let mut v = with_chains(vec![
        with_match(tcp_chain("a"), json!({ "server_names": ["a.example.com"] })),
        tcp_chain("b"),
    ]);
    listener0(&mut v)["stream_filters"] =
        json!([{ "type": "mirror", "config": { "cluster": "b" } }]);
    assert_one_error(
        &v,
        &format!(
            "{L0}.stream_filters: stream filters need an L7 listener (a \"proxy\" network \
             filter on a chain), not only tcp_proxy"
        ),
    );
}

#[test]
fn filter_chain_match_errors_and_warnings() {
    let m = format!("{L0}.filter_chains[0].filter_chain_match");
    for (value, expected) in [
        (
            json!({ "server_names": ["*"] }),
            format!(
                "{m}.server_names[0]: a bare \"*\" would match every name: leave server_names out for that"
            ),
        ),
        (
            json!({ "server_names": ["ok.example.com", "a.*.example.com"] }),
            format!(
                "{m}.server_names[1]: \"a.*.example.com\": a wildcard is only allowed as a \
                 whole first label (\"*.example.com\")"
            ),
        ),
        (
            json!({ "server_names": ["*example.com"] }),
            format!(
                "{m}.server_names[0]: \"*example.com\": a wildcard is only allowed as a whole \
                 first label (\"*.example.com\")"
            ),
        ),
        (
            json!({ "server_names": ["a b"] }),
            format!("{m}.server_names[0]: \"a b\" is not a DNS name"),
        ),
        (
            json!({ "transport_protocol": "quic" }),
            format!(
                "{m}.transport_protocol: unknown transport_protocol \"quic\" (allowed: \"tls\", \
                 \"raw_buffer\")"
            ),
        ),
        (
            json!({ "application_protocols": [""] }),
            format!("{m}.application_protocols[0]: an ALPN protocol must not be empty"),
        ),
        (
            json!({ "server_names": "a.example.com" }),
            format!(
                "{m}.server_names: invalid type: string \"a.example.com\", expected a sequence"
            ),
        ),
    ] {
        let v = with_chains(vec![with_match(tcp_chain("a"), value.clone())]);
        assert_one_error(&v, &expected);
    }

    let v = with_chains(vec![with_match(
        tcp_chain("a"),
        json!({ "destination_port": 443, "server_name": ["x"], "transport_protocol": "raw_buffer" }),
    )]);
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            format!("ignoring unsupported key {m}.destination_port"),
            format!("ignoring unsupported key {m}.server_name (did you mean \"server_names\"?)"),
        ]
    );
    assert_eq!(
        loaded.config.listeners[0].filter_chains[0]
            .chain_match
            .transport_protocol
            .as_deref(),
        Some("raw_buffer")
    );

    // raw_buffer takes plaintext: it cannot terminate TLS.
    let f = Files::new();
    let v = with_chains(vec![with_tls(
        with_match(
            tcp_chain("a"),
            json!({ "transport_protocol": "raw_buffer" }),
        ),
        f.server(),
    )]);
    assert_one_error(
        &v,
        &format!(
            "{m}.transport_protocol: \"raw_buffer\" takes plaintext connections, but this chain \
             terminates TLS"
        ),
    );
}

#[test]
fn chains_with_the_same_match() {
    let dup = |i: usize, first: usize| {
        format!("{L0}.filter_chains[{i}].filter_chain_match: same match as filter_chains[{first}]")
    };
    // Two default chains.
    assert_one_error(
        &with_chains(vec![tcp_chain("a"), tcp_chain("b")]),
        &dup(1, 0),
    );
    // Same criteria in another order; Envoy keys we ignore do not tell chains apart.
    let v = with_chains(vec![
        with_match(
            tcp_chain("a"),
            json!({ "server_names": ["a.com", "b.com"] }),
        ),
        tcp_chain("b"),
        with_match(
            tcp_chain("b"),
            json!({ "server_names": ["B.com", "a.com"], "destination_port": 443 }),
        ),
    ]);
    assert_one_error(&v, &dup(2, 0));
    // Different transport: fine.
    let v = with_chains(vec![
        with_match(tcp_chain("a"), json!({ "transport_protocol": "tls" })),
        with_match(
            tcp_chain("b"),
            json!({ "transport_protocol": "raw_buffer" }),
        ),
    ]);
    parse_value(&v).unwrap();
}

#[test]
fn every_chain_is_validated() {
    let mut second = tcp_chain("nope");
    second["filters"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "proxy" }));
    let v = with_chains(vec![
        tcp_chain("a"),
        with_match(second, json!({ "server_names": ["a.com"] })),
    ]);
    let c1 = format!("{L0}.filter_chains[1]");
    assert_eq!(
        errors_of(&v),
        vec![
            format!(
                "{c1}.filters[0].config.cluster: unknown cluster \"nope\" (defined clusters: a, b)"
            ),
            format!(
                "{c1}.filters[1].config: missing proxy config (needs \"downstream_protocol\" and \
                 \"router_config_name\")"
            ),
            format!(
                "{c1}.filters[1]: only one network filter (tcp_proxy or proxy) per filter chain \
                 (first at {c1}.filters[0])"
            ),
        ]
    );
    let v = with_chains(vec![
        tcp_chain("a"),
        json!({ "filters": [], "filter_chain_match": { "transport_protocol": "tls" } }),
    ]);
    assert_one_error(
        &v,
        &format!(
            "{c1}.filters: a filter chain needs a network filter (supported: tcp_proxy, proxy)"
        ),
    );
}

#[test]
fn original_dst_warning_per_chain() {
    let mut v = with_chains(vec![
        with_match(tcp_chain("a"), json!({ "server_names": ["a.com"] })),
        tcp_chain("od"),
    ]);
    v["cluster_manager"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "od", "type": "ORIGINAL_DST" }));
    let loaded = parse_value(&v).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![format!(
            "{L0}: listener \"l0\" has no \"use_original_dst\"; its ORIGINAL_DST cluster \"od\" \
             only serves connections handed over by a \"use_original_dst\" listener (others \
             are closed)"
        )]
    );
}

#[test]
fn inspector() {
    let f = Files::new();
    let mut v = base();
    chain0(&mut v)["tls_context"] = f.server();
    listener0(&mut v)["inspector"] = true.into();
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert!(loaded.config.listeners[0].inspector);

    listener0(&mut v)["inspector"] = false.into();
    assert!(!parse_value(&v).unwrap().config.listeners[0].inspector);

    let mut v = base();
    listener0(&mut v)["inspector"] = true.into();
    let loaded = parse_value(&v).unwrap();
    assert!(!loaded.config.listeners[0].inspector);
    assert_eq!(
        loaded.warnings,
        vec![format!(
            "{L0}.inspector: no filter chain terminates TLS, so there is nothing to tell \
             plaintext from; ignored"
        )]
    );
    assert!(!parse_value(&base()).unwrap().config.listeners[0].inspector);
}

#[test]
fn kernel_fast_path_cannot_carry_terminated_tls() {
    let f = Files::new();
    let tls_chain = with_tls(tcp_chain("a"), f.server());
    let mut v = with_chains(vec![tls_chain.clone()]);
    listener0(&mut v)["fast_path"] = "kernel".into();
    assert_one_error(
        &v,
        &format!(
            "{L0}.fast_path: \"kernel\" cannot carry the TLS that mosn terminates on every \
             filter chain here (the kernel splice moves bytes untouched); use \"auto\" or \
             \"userspace\""
        ),
    );
    for fast_path in ["auto", "userspace"] {
        listener0(&mut v)["fast_path"] = fast_path.into();
        parse_value(&v).unwrap();
    }
    // One plaintext chain is enough for the kernel to have work.
    let mut v = with_chains(vec![
        with_match(tls_chain, json!({ "server_names": ["a.com"] })),
        tcp_chain("b"),
    ]);
    listener0(&mut v)["fast_path"] = "kernel".into();
    assert_eq!(
        parse_value(&v).unwrap().config.listeners[0].fast_path,
        FastPath::Kernel
    );
}

#[test]
fn tls_on_an_rpc_proxy_chain() {
    let f = Files::new();
    let mut v = base();
    v["servers"][0]["routers"] = json!([{ "router_config_name": "r" }]);
    chain0(&mut v)["filters"][0] = json!({ "type": "proxy",
        "config": { "downstream_protocol": "bolt", "router_config_name": "r" } });
    chain0(&mut v)["tls_context"] = plus_alpn(f.server());
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.listeners[0].filter_chains[0].tls[0].alpn,
        ["sofa"]
    );
}

fn plus_alpn(mut ctx: Value) -> Value {
    ctx["alpn"] = json!(["sofa"]);
    ctx
}
