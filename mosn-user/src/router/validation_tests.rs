//! Validation of `routers[]`: every problem is an error naming the field and the reason.

use serde_json::{Value, json};

use super::tests::{config_with, parse_value};
use crate::config::ConfigError;

/// The errors of a config using `router`, as "path: reason" lines.
fn errors(router: Value) -> Vec<String> {
    errors_of(&config_with(router))
}

fn errors_of(v: &Value) -> Vec<String> {
    match parse_value(v) {
        Ok(l) => panic!("expected errors, got {:#?}", l.config.routers),
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation errors, got {other}"),
    }
}

/// Router "r" with one virtual host holding `routes`.
fn with_routes(routes: Value) -> Value {
    json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "h", "domains": ["*"], "routers": routes }]
    })
}

/// A route forwarding everything with `route` (merged over `{"cluster_name": "a"}`).
fn forward(extra: Value) -> Value {
    let mut route = json!({ "cluster_name": "a" });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            route.as_object_mut().unwrap().remove(k);
        } else {
            route[k] = v.clone();
        }
    }
    json!({ "match": { "prefix": "/" }, "route": route })
}

/// `servers[0].routers[0].virtual_hosts[0].routers[i]` followed by `rest`.
fn at(i: usize, rest: &str) -> String {
    format!("servers[0].routers[0].virtual_hosts[0].routers[{i}]{rest}")
}

#[test]
fn a_route_needs_a_match_and_one_action() {
    let e = errors(with_routes(json!([
        { "match": { "prefix": "/" } },
        { "match": { "prefix": "/" }, "route": { "cluster_name": "a" },
          "direct_response": { "status": 200 } },
        { "match": { "regex": "(" }, "route": { "cluster_name": "nope" } },
        { "match": {}, "route": { "cluster_name": "a" } },
        { "match": { "prefix": "/", "path": "/x" }, "route": { "cluster_name": "a" } },
        { "route": { "cluster_name": "a" } },
    ])));
    assert_eq!(
        e,
        [
            at(
                0,
                ": a route needs one of \"route\", \"direct_response\" or \"redirect\""
            ),
            at(
                1,
                ": a route takes only one of \"route\", \"direct_response\" and \"redirect\" \
                 (found \"route\", \"direct_response\")"
            ),
            at(2, ".match.regex: invalid regex \"(\": unclosed group"),
            at(
                2,
                ".route.cluster_name: unknown cluster \"nope\" (defined clusters: a, b, c, m)"
            ),
            at(
                3,
                ".match: a match needs \"prefix\", \"path\", \"regex\" or \"headers\""
            ),
            at(
                4,
                ".match: set only one of \"prefix\", \"path\" and \"regex\""
            ),
            at(5, ".match: missing match (e.g. {\"prefix\": \"/\"})"),
        ]
    );
}

#[test]
fn router_names_and_domains() {
    let mut v = config_with(with_routes(json!([forward(json!({}))])));
    v["servers"][0]["routers"] = json!([
        { "virtual_hosts": [] },
        with_routes(json!([forward(json!({}))])),
        { "router_config_name": "r", "virtual_hosts": [
            { "name": "x", "domains": ["a.com", "*.b.com", "c.*"], "routers": [] },
            { "name": "x", "domains": ["A.com", "a*b.com", "*c*", "", "with space"] },
            { "domains": [] },
            {} ] },
        { "router_config_name": "t", "virtual_hosts": 3 }
    ]);
    let r2 = "servers[0].routers[2].virtual_hosts";
    assert_eq!(
        errors_of(&v),
        [
            "servers[0].routers[0].router_config_name: missing router_config_name".to_owned(),
            "servers[0].routers[2].router_config_name: duplicate router_config_name \"r\" \
             (first at servers[0].routers[1])"
                .to_owned(),
            format!("{r2}[1].name: duplicate virtual host name \"x\" (first at {r2}[0])"),
            format!("{r2}[1].domains[0]: duplicate domain \"A.com\" (also at {r2}[0].domains[0])"),
            format!(
                "{r2}[1].domains[1]: invalid domain \"a*b.com\": one \"*\" at the start or the \
                 end only"
            ),
            format!(
                "{r2}[1].domains[2]: invalid domain \"*c*\": one \"*\" at the start or the end \
                 only"
            ),
            format!("{r2}[1].domains[3]: invalid domain \"\""),
            format!("{r2}[1].domains[4]: invalid domain \"with space\""),
            format!(
                "{r2}[2].domains: a virtual host needs at least one domain (\"*\" matches any \
                 host)"
            ),
            format!(
                "{r2}[3].domains: a virtual host needs at least one domain (\"*\" matches any \
                 host)"
            ),
            "servers[0].routers[3].virtual_hosts: invalid type: integer `3`, expected a sequence"
                .to_owned(),
        ]
    );
}

#[test]
fn forward_errors() {
    let e = errors(with_routes(json!([
        forward(json!({ "cluster_name": null })),
        forward(json!({ "cluster_header": "x-c" })),
        forward(json!({ "cluster_name": null, "weighted_clusters": [
            { "cluster": { "name": "a" } }, { "cluster": { "name": "zz", "weight": 0 } },
            { "cluster": { "weight": 1 } }, {} ] })),
        forward(json!({ "cluster_name": null, "weighted_clusters": [
            { "cluster": { "name": "a", "weight": 0 } }, { "cluster": { "name": "b" } } ] })),
        forward(json!({ "cluster_name": null, "cluster_header": "bad header" })),
        forward(json!({ "timeout": "1x" })),
        { "match": { "regex": "/a.*" },
          "route": { "cluster_name": "a", "prefix_rewrite": "/b" } },
        forward(json!({ "prefix_rewrite": "/b",
            "regex_rewrite": { "pattern": { "regex": "a" }, "substitution": "b" } })),
        forward(json!({ "regex_rewrite": { "pattern": { "regex": "(" }, "substitution": "b" } })),
        forward(json!({ "regex_rewrite": { "pattern": { "regex": "/(a)" },
                                           "substitution": "\\2" } })),
        forward(json!({ "regex_rewrite": { "pattern": { "regex": "/(a)" },
                                           "substitution": "\\x" } })),
        forward(json!({ "regex_rewrite": { "pattern": {} } })),
        forward(json!({ "host_rewrite": "a\u{1}b" })),
        forward(json!({ "request_mirror_policies": [{ "cluster": "zz", "percent": 101 }, {}] })),
        forward(json!({ "hash_policy": [{}, { "header": { "key": "x" }, "source_ip": {} },
            { "cookie": {} }, { "header": { "key": "a b" } }, { "header": {} }] })),
        forward(json!({ "metadata_match": { "filter_metadata": { "mosn.lb": { "k": [1] } } } })),
    ])));
    let unknown_zz = "unknown cluster \"zz\" (defined clusters: a, b, c, m)";
    let one_hash = ": a hash policy needs exactly one of \"header\", \"cookie\" and \"source_ip\"";
    assert_eq!(
        e,
        [
            at(
                0,
                ".route: a route needs \"cluster_name\", \"cluster_header\" or \
                 \"weighted_clusters\""
            ),
            at(
                1,
                ".route: set only one of \"cluster_name\", \"cluster_header\" and \
                 \"weighted_clusters\""
            ),
            at(
                2,
                &format!(".route.weighted_clusters[1].cluster.name: {unknown_zz}")
            ),
            at(2, ".route.weighted_clusters[2].cluster.name: missing name"),
            at(
                2,
                ".route.weighted_clusters[3].cluster: missing cluster (e.g. {\"name\": \"c\", \
                 \"weight\": 50})"
            ),
            at(
                3,
                ".route.weighted_clusters: the weights sum to 0 (give a cluster a positive \
                 \"weight\")"
            ),
            at(
                4,
                ".route.cluster_header: invalid header name \"bad header\""
            ),
            at(
                5,
                ".route.timeout: invalid duration \"1x\": unknown unit \"x\" (use ns, us, ms, s, \
                 m or h)"
            ),
            at(
                6,
                ".route.prefix_rewrite: prefix_rewrite needs a \"prefix\" or \"path\" match"
            ),
            at(
                7,
                ".route: set only one of \"prefix_rewrite\" and \"regex_rewrite\""
            ),
            at(
                8,
                ".route.regex_rewrite.pattern.regex: invalid regex \"(\": unclosed group"
            ),
            at(
                9,
                ".route.regex_rewrite.substitution: \\2 refers to a group the pattern does not \
                 have (it has 1)"
            ),
            at(
                10,
                ".route.regex_rewrite.substitution: invalid escape \"\\\\x\" (use \\0..\\9 or \
                 \\\\)"
            ),
            at(11, ".route.regex_rewrite.pattern.regex: missing regex"),
            at(
                12,
                ".route.host_rewrite: invalid header value \"a\\u{1}b\" (control characters are \
                 not allowed)"
            ),
            at(
                13,
                ".route.request_mirror_policies[0].percent: percent 101 is over 100"
            ),
            at(
                13,
                &format!(".route.request_mirror_policies[0].cluster: {unknown_zz}")
            ),
            at(
                13,
                ".route.request_mirror_policies[1].cluster: missing cluster"
            ),
            at(14, &format!(".route.hash_policy[0]{one_hash}")),
            at(14, &format!(".route.hash_policy[1]{one_hash}")),
            at(
                14,
                ".route.hash_policy[2].cookie.name: missing name (the cookie's name)"
            ),
            at(
                14,
                ".route.hash_policy[3].header.key: invalid header name \"a b\""
            ),
            at(
                14,
                ".route.hash_policy[4].header.key: missing key (the header's name)"
            ),
            at(
                15,
                ".route.metadata_match.filter_metadata.mosn.lb.k: a metadata value must be a \
                 string, a number or a boolean"
            ),
        ]
    );
}

#[test]
fn retry_errors_and_warning() {
    let e = errors(with_routes(json!([
        forward(json!({ "retry_policy": { "retry_on": "5xx,teapot" } })),
        forward(json!({ "retry_policy": { "retry_on": "retriable-status-codes" } })),
        forward(json!({ "retry_policy": { "retry_on": true, "status_codes": [99, 503, 600] } })),
        forward(json!({ "retry_policy": { "retry_on": true, "retry_timeout": "fast" } })),
    ])));
    let p = ".route.retry_policy";
    assert_eq!(
        e,
        [
            at(
                0,
                &format!(
                    "{p}.retry_on: unknown retry condition \"teapot\" (supported: 5xx, \
                     gateway-error, connect-failure, refused-stream, reset, \
                     retriable-status-codes, cancelled, deadline-exceeded, resource-exhausted, \
                     unavailable)"
                )
            ),
            at(
                1,
                &format!("{p}.retry_on: retriable-status-codes needs \"status_codes\"")
            ),
            at(
                2,
                &format!("{p}.status_codes[0]: status code 99 is not in 100..=599")
            ),
            at(
                2,
                &format!("{p}.status_codes[2]: status code 600 is not in 100..=599")
            ),
            at(
                3,
                &format!("{p}.retry_timeout: invalid duration \"fast\": expected a number")
            ),
        ]
    );
    // A type error stops decoding of its router: routers[1] is not looked at.
    let e = errors(with_routes(json!([
        forward(json!({ "retry_policy": { "retry_on": 5 } })),
        forward(json!({ "retry_policy": { "num_retries": "3" } })),
    ])));
    assert_eq!(
        e,
        [at(
            0,
            &format!(
                "{p}.retry_on: expected true, false or conditions like \"5xx,connect-failure\""
            )
        )]
    );
    let e = errors(with_routes(json!([forward(
        json!({ "retry_policy": { "num_retries": "3" } })
    ),])));
    assert_eq!(
        e,
        [at(
            0,
            &format!("{p}.num_retries: invalid type: string \"3\", expected u32")
        )]
    );
    // Status codes without the condition that reads them: a warning.
    let loaded = parse_value(&config_with(with_routes(json!([forward(json!({
        "retry_policy": { "retry_on": "5xx", "status_codes": [409] } }))]))))
    .unwrap();
    assert_eq!(
        loaded.warnings,
        [format!(
            "ignoring {} without \"retriable-status-codes\" in {}",
            at(0, &format!("{p}.status_codes")),
            at(0, &format!("{p}.retry_on"))
        )]
    );
}

#[test]
fn redirect_and_direct_response_errors() {
    let e = errors(with_routes(json!([
        { "match": { "prefix": "/" }, "redirect": { "response_code": 305 } },
        { "match": { "prefix": "/" }, "redirect": { "port_redirect": 0, "host_redirect": "a b" } },
        { "match": { "prefix": "/" },
          "redirect": { "path_redirect": "/a", "prefix_rewrite": "/b" } },
        { "match": { "prefix": "/" }, "redirect": { "path_redirect": "a" } },
        { "match": { "regex": "/.*" }, "redirect": { "prefix_rewrite": "/b" } },
        { "match": { "prefix": "/" },
          "redirect": { "scheme_redirect": "1http", "https_redirect": true } },
        { "match": { "prefix": "/" }, "direct_response": { "status": 99 } },
        { "match": { "prefix": "/" }, "direct_response": { "body": "x" } },
    ])));
    assert_eq!(
        e,
        [
            at(
                0,
                ".redirect.response_code: unsupported redirect code 305 (supported: 301, 302, \
                 303, 307, 308)"
            ),
            at(1, ".redirect.host_redirect: invalid host \"a b\""),
            at(
                1,
                ".redirect.port_redirect: port 0 is not a valid redirect port"
            ),
            at(
                2,
                ".redirect: set only one of \"path_redirect\" and \"prefix_rewrite\""
            ),
            at(
                3,
                ".redirect.path_redirect: invalid path \"a\" (a path starting with \"/\")"
            ),
            at(
                4,
                ".redirect.prefix_rewrite: prefix_rewrite needs a \"prefix\" or \"path\" match"
            ),
            at(5, ".redirect.scheme_redirect: invalid scheme \"1http\""),
            at(
                5,
                ".redirect: set only one of \"scheme_redirect\" and \"https_redirect\""
            ),
            at(6, ".direct_response.status: status 99 is not in 200..=599"),
            at(7, ".direct_response.status: missing status"),
        ]
    );
}

#[test]
fn header_errors() {
    let add = |k: &str, v: &str| json!({ "header": { "key": k, "value": v } });
    let e = errors(json!({
        "router_config_name": "r",
        "request_headers_to_add": [add("bad name", "v"), add("x", "a\u{7f}"), {},
                                   { "header": { "value": "v" } }],
        "request_headers_to_remove": ["Host", "bad name"],
        "response_headers_to_remove": ["host"],
        "virtual_hosts": [{
            "domains": ["*"],
            "response_headers_to_add": [add(":status", "1")],
            "routers": [{
                "match": {
                    "prefix": "/",
                    "headers": [{ "name": "bad name", "value": "v" }, { "value": "v" },
                                { "name": "x", "regex": true },
                                { "name": "y", "value": "(", "regex": true },
                                { "name": ":status", "value": "200" }],
                    "query_parameters": [{ "value": "1" },
                                         { "name": "q", "value": "[", "regex": true }]
                },
                "route": { "cluster_name": "a" },
                "request_headers_to_remove": ["x-ok"],
                "response_headers_to_add": [add("x-ok", "line\nbreak")]
            }]
        }]
    }));
    let r = "servers[0].routers[0]";
    assert_eq!(
        e,
        [
            format!("{r}.request_headers_to_add[0].header.key: invalid header name \"bad name\""),
            format!(
                "{r}.request_headers_to_add[1].header.value: invalid header value \"a\\u{{7f}}\" \
                 (control characters are not allowed)"
            ),
            format!(
                "{r}.request_headers_to_add[2].header: missing header (e.g. {{\"key\": \"x-k\", \
                 \"value\": \"v\"}})"
            ),
            format!("{r}.request_headers_to_add[3].header.key: missing key"),
            format!("{r}.request_headers_to_remove[0]: the host header cannot be removed"),
            format!("{r}.request_headers_to_remove[1]: invalid header name \"bad name\""),
            at(
                0,
                ".response_headers_to_add[0].header.value: invalid header value \
                 \"line\\nbreak\" (control characters are not allowed)"
            ),
            at(
                0,
                ".match.headers[0].name: invalid header name \"bad name\""
            ),
            at(0, ".match.headers[1].name: missing name"),
            at(0, ".match.headers[2].value: \"regex\": true needs a value"),
            at(
                0,
                ".match.headers[3].value: invalid regex \"(\": unclosed group"
            ),
            at(0, ".match.headers[4].name: invalid header name \":status\""),
            at(0, ".match.query_parameters[0].name: missing name"),
            at(
                0,
                ".match.query_parameters[1].value: invalid regex \"[\": unclosed character class"
            ),
            format!(
                "{r}.virtual_hosts[0].response_headers_to_add[0].header.key: invalid header name \
                 \":status\""
            ),
        ]
    );
}

#[test]
fn valid_router_round_trips_into_the_model() {
    use crate::config::router::*;
    let loaded = parse_value(&config_with(json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "h", "domains": ["*", "Foo.com"], "routers": [{
            "match": { "prefix": "/", "headers": [{ "name": "X-A", "value": "v" }] },
            "route": { "cluster_name": "a", "timeout": "0s",
                       "regex_rewrite": { "pattern": { "regex": "^/(.*)$", "google_re2": {} },
                                          "substitution": "/x/\\1\\\\$" } },
            "request_headers_to_add": [{ "header": { "key": "X-Up", "value": "1" },
                                         "append": true }],
            "response_headers_to_remove": ["Server"]
        }] }]
    })))
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let want = RouterConfig {
        name: "r".into(),
        virtual_hosts: vec![VirtualHostConfig {
            name: "h".into(),
            domains: vec!["*".into(), "foo.com".into()],
            routes: vec![RouteConfig {
                matcher: MatchConfig {
                    path: PathMatch::Prefix("/".into()),
                    case_sensitive: true,
                    headers: vec![KeyValueMatch {
                        name: "x-a".into(),
                        value: ValueMatch::Exact("v".into()),
                        invert: false,
                    }],
                    query_parameters: vec![],
                },
                action: ActionConfig::Forward(Box::new(ForwardConfig {
                    target: ClusterTarget::Name("a".into()),
                    metadata_match: None,
                    timeout: None,
                    retry: None,
                    path_rewrite: Some(PathRewrite::Regex {
                        pattern: "^/(.*)$".into(),
                        replacement: "/x/${1}\\$$".into(),
                    }),
                    host_rewrite: None,
                    mirrors: vec![],
                    hash_policy: vec![],
                })),
                headers: HeaderOps {
                    request_add: vec![HeaderAdd {
                        name: "x-up".into(),
                        value: "1".into(),
                        append: true,
                    }],
                    response_remove: vec!["server".into()],
                    ..HeaderOps::default()
                },
            }],
            headers: HeaderOps::default(),
        }],
        headers: HeaderOps::default(),
    };
    assert_eq!(loaded.config.routers, [want]);
}
