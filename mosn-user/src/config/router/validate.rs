//! Validation of `servers[].routers[]` into [`RouterConfig`]s: every problem is collected
//! with its field path.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::headers::{header_name, header_ops, header_value};
use super::raw::*;
use super::*;
use crate::config::diag::{Diag, index, join};
use crate::config::validate::Clusters;

/// Validates every `servers[s].routers[i]`; `clusters` checks cluster references.
pub(in crate::config) fn routers(
    servers: &[(String, &[Value])],
    clusters: &Clusters,
    d: &mut Diag,
) -> Vec<RouterConfig> {
    let mut out = Vec::new();
    let mut first_at: HashMap<String, String> = HashMap::new();
    for (sp, values) in servers {
        for (i, value) in values.iter().enumerate() {
            let path = index(sp, "routers", i);
            let Some(raw) = d.decode::<RawRouter>(&path, value) else {
                continue;
            };
            let Some(name) = raw.router_config_name.clone() else {
                d.error(
                    &join(&path, "router_config_name"),
                    "missing router_config_name",
                );
                continue;
            };
            let np = join(&path, "router_config_name");
            if let Some(first) = first_at.get(&name) {
                d.error(
                    &np,
                    format!("duplicate router_config_name {name:?} (first at {first})"),
                );
            } else {
                first_at.insert(name.clone(), path.clone());
            }
            out.push(router(name, &raw, &path, clusters, d));
        }
    }
    out
}

fn router(name: String, raw: &RawRouter, path: &str, cl: &Clusters, d: &mut Diag) -> RouterConfig {
    d.extra(path, &raw.extra, RawRouter::KEYS);
    let headers = header_ops(
        path,
        [&raw.request_headers_to_add, &raw.response_headers_to_add],
        [
            &raw.request_headers_to_remove,
            &raw.response_headers_to_remove,
        ],
        d,
    );
    let mut domains_at: HashMap<String, String> = HashMap::new();
    let mut names_at: HashMap<String, String> = HashMap::new();
    let mut virtual_hosts = Vec::new();
    for (i, v) in raw.virtual_hosts.iter().flatten().enumerate() {
        let vp = index(path, "virtual_hosts", i);
        if let Some(name) = &v.name {
            if let Some(first) = names_at.get(name) {
                let at = join(&vp, "name");
                d.error(
                    &at,
                    format!("duplicate virtual host name {name:?} (first at {first})"),
                );
            } else {
                names_at.insert(name.clone(), vp.clone());
            }
        }
        virtual_hosts.push(virtual_host(v, &vp, &mut domains_at, cl, d));
    }
    RouterConfig {
        name,
        virtual_hosts,
        headers,
    }
}

fn virtual_host(
    raw: &RawVirtualHost,
    path: &str,
    domains_at: &mut HashMap<String, String>,
    cl: &Clusters,
    d: &mut Diag,
) -> VirtualHostConfig {
    d.extra(path, &raw.extra, RawVirtualHost::KEYS);
    let mut domains = Vec::new();
    for (i, domain) in raw.domains.iter().flatten().enumerate() {
        let dp = index(path, "domains", i);
        let lower = domain.to_ascii_lowercase();
        let stars = lower.matches('*').count();
        if lower.is_empty() || lower.contains(|c: char| c.is_whitespace() || c == '/') {
            d.error(&dp, format!("invalid domain {domain:?}"));
        } else if stars > 1 || (stars == 1 && !lower.starts_with('*') && !lower.ends_with('*')) {
            d.error(
                &dp,
                format!("invalid domain {domain:?}: one \"*\" at the start or the end only"),
            );
        } else if let Some(first) = domains_at.get(&lower) {
            d.error(
                &dp,
                format!("duplicate domain {domain:?} (also at {first})"),
            );
        } else {
            domains_at.insert(lower.clone(), dp);
            domains.push(lower);
        }
    }
    if raw.domains.as_ref().is_none_or(Vec::is_empty) {
        d.error(
            &join(path, "domains"),
            "a virtual host needs at least one domain (\"*\" matches any host)",
        );
    }
    let routes = raw
        .routers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| route(r, &index(path, "routers", i), cl, d))
        .collect();
    VirtualHostConfig {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| path.rsplit('.').next().unwrap_or(path).to_owned()),
        domains,
        routes,
        headers: header_ops(
            path,
            [&raw.request_headers_to_add, &raw.response_headers_to_add],
            [
                &raw.request_headers_to_remove,
                &raw.response_headers_to_remove,
            ],
            d,
        ),
    }
}

fn route(raw: &RawRoute, path: &str, cl: &Clusters, d: &mut Diag) -> Option<RouteConfig> {
    d.extra(path, &raw.extra, RawRoute::KEYS);
    let headers = header_ops(
        path,
        [&raw.request_headers_to_add, &raw.response_headers_to_add],
        [
            &raw.request_headers_to_remove,
            &raw.response_headers_to_remove,
        ],
        d,
    );
    let matcher = match &raw.matcher {
        Some(m) => match_config(m, &join(path, "match"), d),
        None => {
            d.error(
                &join(path, "match"),
                "missing match (e.g. {\"prefix\": \"/\"})",
            );
            None
        }
    };
    let given: Vec<&str> = [
        ("route", raw.route.is_some()),
        ("direct_response", raw.direct_response.is_some()),
        ("redirect", raw.redirect.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if given.len() != 1 {
        let reason = if given.is_empty() {
            "a route needs one of \"route\", \"direct_response\" or \"redirect\"".to_owned()
        } else {
            format!(
                "a route takes only one of \"route\", \"direct_response\" and \"redirect\" \
                 (found {})",
                given
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        d.error(path, reason);
        return None;
    }
    let matcher = matcher?;
    let action = if let Some(f) = &raw.route {
        ActionConfig::Forward(Box::new(forward(f, &join(path, "route"), &matcher, cl, d)))
    } else if let Some(r) = &raw.direct_response {
        let rp = join(path, "direct_response");
        d.extra(&rp, &r.extra, RawDirectResponse::KEYS);
        let status = match r.status {
            Some(s @ 200..=599) => s,
            Some(s) => {
                d.error(
                    &join(&rp, "status"),
                    format!("status {s} is not in 200..=599"),
                );
                500
            }
            None => {
                d.error(&join(&rp, "status"), "missing status");
                500
            }
        };
        let body = r.body.clone().unwrap_or_default();
        ActionConfig::DirectResponse { status, body }
    } else {
        let r = raw.redirect.as_ref()?;
        ActionConfig::Redirect(redirect(r, &join(path, "redirect"), &matcher, d))
    };
    Some(RouteConfig {
        matcher,
        action,
        headers,
    })
}

fn match_config(raw: &RawMatch, path: &str, d: &mut Diag) -> Option<MatchConfig> {
    d.extra(path, &raw.extra, RawMatch::KEYS);
    let case_sensitive = raw.case_sensitive.unwrap_or(true);
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let mut given = Vec::new();
    if let Some(p) = nonempty(&raw.prefix) {
        given.push(PathMatch::Prefix(p));
    }
    if let Some(p) = nonempty(&raw.path) {
        given.push(PathMatch::Exact(p));
    }
    if let Some(re) = nonempty(&raw.regex) {
        if let Err(e) = full_match_regex(&re, case_sensitive) {
            d.error(&join(path, "regex"), regex_reason(&re, &e));
        }
        given.push(PathMatch::Regex(re));
    }
    let headers: Vec<KeyValueMatch> = raw
        .headers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, h)| key_value_match(h, &index(path, "headers", i), true, d))
        .collect();
    let query_parameters = raw
        .query_parameters
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, q)| key_value_match(q, &index(path, "query_parameters", i), false, d))
        .collect();
    let path_match = match given.len() {
        0 if raw.headers.as_ref().is_some_and(|h| !h.is_empty()) => PathMatch::Any,
        0 => {
            d.error(
                path,
                "a match needs \"prefix\", \"path\", \"regex\" or \"headers\"",
            );
            return None;
        }
        1 => given.pop()?,
        _ => {
            d.error(path, "set only one of \"prefix\", \"path\" and \"regex\"");
            return None;
        }
    };
    Some(MatchConfig {
        path: path_match,
        case_sensitive,
        headers,
        query_parameters,
    })
}

fn key_value_match(
    raw: &RawKeyValueMatch,
    path: &str,
    header: bool,
    d: &mut Diag,
) -> Option<KeyValueMatch> {
    d.extra(path, &raw.extra, RawKeyValueMatch::KEYS);
    let np = join(path, "name");
    let name = match raw.name.as_deref() {
        None | Some("") => {
            d.error(&np, "missing name");
            None
        }
        Some(n) if header && PSEUDO_HEADERS.contains(&n) => Some(n.to_owned()),
        Some(n) if header => header_name(&np, n, d),
        Some(n) => Some(n.to_owned()),
    };
    let regex = raw.regex.unwrap_or(false);
    let value = match &raw.value {
        None if regex => {
            d.error(&join(path, "value"), "\"regex\": true needs a value");
            return None;
        }
        None => ValueMatch::Present,
        Some(v) if regex => {
            if let Err(e) = full_match_regex(v, true) {
                d.error(&join(path, "value"), regex_reason(v, &e));
            }
            ValueMatch::Regex(v.clone())
        }
        Some(v) => ValueMatch::Exact(v.clone()),
    };
    Some(KeyValueMatch {
        name: name?,
        value,
        invert: raw.invert_match.unwrap_or(false),
    })
}

fn forward(
    raw: &RawForward,
    path: &str,
    matcher: &MatchConfig,
    cl: &Clusters,
    d: &mut Diag,
) -> ForwardConfig {
    d.extra(path, &raw.extra, RawForward::KEYS);
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let mut targets = Vec::new();
    if let Some(c) = nonempty(&raw.cluster_name) {
        cl.check_ref(&join(path, "cluster_name"), &c, d);
        targets.push(ClusterTarget::Name(c));
    }
    if let Some(h) = nonempty(&raw.cluster_header) {
        let name = header_name(&join(path, "cluster_header"), &h, d).unwrap_or(h);
        targets.push(ClusterTarget::Header(name));
    }
    if let Some(w) = raw.weighted_clusters.as_ref().filter(|w| !w.is_empty()) {
        targets.push(ClusterTarget::Weighted(weighted(
            w,
            &join(path, "weighted_clusters"),
            cl,
            d,
        )));
    }
    let target = match targets.len() {
        1 => targets.pop().expect("one target"),
        n => {
            d.error(
                path,
                if n == 0 {
                    "a route needs \"cluster_name\", \"cluster_header\" or \"weighted_clusters\""
                } else {
                    "set only one of \"cluster_name\", \"cluster_header\" and \"weighted_clusters\""
                },
            );
            ClusterTarget::Name(String::new())
        }
    };
    let timeout = match &raw.timeout {
        None => Some(RouteTimeout::Default),
        Some(t) => d
            .duration(&join(path, "timeout"), t)
            .filter(|t| !t.is_zero())
            .map(RouteTimeout::Given),
    };
    let path_rewrite = match (nonempty(&raw.prefix_rewrite), &raw.regex_rewrite) {
        (Some(_), Some(_)) => {
            d.error(
                path,
                "set only one of \"prefix_rewrite\" and \"regex_rewrite\"",
            );
            None
        }
        (Some(p), None) => {
            prefix_rewrite(&join(path, "prefix_rewrite"), &p, matcher, d);
            Some(PathRewrite::Prefix(p))
        }
        (None, Some(r)) => regex_rewrite(r, &join(path, "regex_rewrite"), d),
        (None, None) => None,
    };
    let host_rewrite = nonempty(&raw.host_rewrite);
    if let Some(h) = &host_rewrite {
        header_value(&join(path, "host_rewrite"), h, d);
    }
    let mirrors = match &raw.request_mirror_policies {
        None => Vec::new(),
        Some(OneOrMany::One(m)) => mirror(m, &join(path, "request_mirror_policies"), cl, d)
            .into_iter()
            .collect(),
        Some(OneOrMany::Many(ms)) => ms
            .iter()
            .enumerate()
            .filter_map(|(i, m)| mirror(m, &index(path, "request_mirror_policies", i), cl, d))
            .collect(),
    };
    let hash_policy = raw
        .hash_policy
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, h)| hash_policy(h, &index(path, "hash_policy", i), d))
        .collect();
    ForwardConfig {
        target,
        metadata_match: raw
            .metadata_match
            .as_ref()
            .and_then(|m| metadata(m, &join(path, "metadata_match"), d)),
        timeout,
        retry: raw
            .retry_policy
            .as_ref()
            .and_then(|r| retry(r, &join(path, "retry_policy"), d)),
        path_rewrite,
        host_rewrite,
        mirrors,
        hash_policy,
    }
}

fn weighted(
    raw: &[RawWeightedEntry],
    path: &str,
    cl: &Clusters,
    d: &mut Diag,
) -> Vec<WeightedClusterConfig> {
    let mut out = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let ep = format!("{path}[{i}]");
        d.extra(&ep, &entry.extra, RawWeightedEntry::KEYS);
        let cp = join(&ep, "cluster");
        let Some(c) = &entry.cluster else {
            d.error(
                &cp,
                "missing cluster (e.g. {\"name\": \"c\", \"weight\": 50})",
            );
            continue;
        };
        d.extra(&cp, &c.extra, RawWeightedCluster::KEYS);
        let Some(name) = c.name.clone().filter(|n| !n.is_empty()) else {
            d.error(&join(&cp, "name"), "missing name");
            continue;
        };
        cl.check_ref(&join(&cp, "name"), &name, d);
        out.push(WeightedClusterConfig {
            name,
            weight: c.weight.unwrap_or(0),
            metadata_match: c
                .metadata_match
                .as_ref()
                .and_then(|m| metadata(m, &join(&cp, "metadata_match"), d)),
        });
    }
    if out.len() == raw.len() && out.iter().all(|w| w.weight == 0) {
        d.error(
            path,
            "the weights sum to 0 (give a cluster a positive \"weight\")",
        );
    }
    out
}

fn metadata(raw: &RawMetadata, path: &str, d: &mut Diag) -> Option<MetadataMatch> {
    d.extra(path, &raw.extra, RawMetadata::KEYS);
    let fp = join(path, "filter_metadata");
    let mut out = MetadataMatch::new();
    for (ns, pairs) in raw.filter_metadata.iter().flatten() {
        if ns != LB_NAMESPACE {
            d.warn(format!(
                "ignoring unsupported key {} (only \"{LB_NAMESPACE}\" is read)",
                join(&fp, ns)
            ));
            continue;
        }
        for (k, v) in pairs {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    let at = join(&join(&fp, ns), k);
                    d.error(
                        &at,
                        "a metadata value must be a string, a number or a boolean",
                    );
                    continue;
                }
            };
            out.insert(k.clone(), value);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn retry(raw: &RawRetry, path: &str, d: &mut Diag) -> Option<RetryConfig> {
    d.extra(path, &raw.extra, RawRetry::KEYS);
    let mut r = RetryConfig {
        num_retries: raw.num_retries.unwrap_or(DEFAULT_NUM_RETRIES),
        per_try_timeout: raw
            .retry_timeout
            .as_ref()
            .and_then(|t| d.duration(&join(path, "retry_timeout"), t))
            .filter(|t| !t.is_zero()),
        on_connect_failure: false,
        on_5xx: false,
        on_gateway_error: false,
        on_status: Vec::new(),
        on_grpc: Vec::new(),
    };
    let codes = raw.status_codes.clone().unwrap_or_default();
    for (i, code) in codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            let at = index(path, "status_codes", i);
            d.error(&at, format!("status code {code} is not in 100..=599"));
        }
    }
    let op = join(path, "retry_on");
    match &raw.retry_on {
        None | Some(RawRetryOn::Bool(false)) => return None,
        Some(RawRetryOn::Bool(true)) => {
            r.on_connect_failure = true;
            r.on_5xx = true;
            r.on_gateway_error = true;
            r.on_status = codes;
        }
        Some(RawRetryOn::Conditions(text)) => {
            for cond in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match cond {
                    "5xx" => r.on_5xx = true,
                    "gateway-error" => r.on_gateway_error = true,
                    "connect-failure" | "refused-stream" | "reset" => r.on_connect_failure = true,
                    "retriable-status-codes" if codes.is_empty() => {
                        d.error(&op, "retriable-status-codes needs \"status_codes\"");
                    }
                    "retriable-status-codes" => r.on_status = codes.clone(),
                    g if let Some(code) = crate::protocol::grpc::retry_condition(g) => {
                        r.on_grpc.push(code);
                    }
                    other => d.error(
                        &op,
                        format!(
                            "unknown retry condition {other:?} (supported: {RETRY_CONDITIONS})"
                        ),
                    ),
                }
            }
            if !codes.is_empty() && r.on_status.is_empty() {
                d.warn(format!(
                    "ignoring {} without \"retriable-status-codes\" in {op}",
                    join(path, "status_codes")
                ));
            }
        }
    }
    let retries_something = r.on_connect_failure
        || r.on_5xx
        || r.on_gateway_error
        || !r.on_status.is_empty()
        || !r.on_grpc.is_empty();
    (retries_something && r.num_retries > 0).then_some(r)
}

fn mirror(raw: &RawMirror, path: &str, cl: &Clusters, d: &mut Diag) -> Option<MirrorConfig> {
    d.extra(path, &raw.extra, RawMirror::KEYS);
    let percent = raw.percent.unwrap_or(100);
    if percent > 100 {
        d.error(
            &join(path, "percent"),
            format!("percent {percent} is over 100"),
        );
    }
    let Some(cluster) = raw.cluster.clone().filter(|c| !c.is_empty()) else {
        d.error(&join(path, "cluster"), "missing cluster");
        return None;
    };
    cl.check_ref(&join(path, "cluster"), &cluster, d);
    Some(MirrorConfig {
        cluster,
        fraction: f64::from(percent.min(100)) / 100.0,
    })
}

fn hash_policy(raw: &RawHashPolicy, path: &str, d: &mut Diag) -> Option<HashPolicyConfig> {
    d.extra(path, &raw.extra, RawHashPolicy::KEYS);
    let set = [
        raw.header.is_some(),
        raw.cookie.is_some(),
        raw.source_ip.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        d.error(
            path,
            "a hash policy needs exactly one of \"header\", \"cookie\" and \"source_ip\"",
        );
        return None;
    }
    if let Some(h) = &raw.header {
        let hp = join(path, "header");
        d.extra(&hp, &h.extra, RawHashHeader::KEYS);
        let Some(key) = h.key.as_deref().filter(|k| !k.is_empty()) else {
            d.error(&join(&hp, "key"), "missing key (the header's name)");
            return None;
        };
        header_name(&join(&hp, "key"), key, d).map(HashPolicyConfig::Header)
    } else if let Some(c) = &raw.cookie {
        let cp = join(path, "cookie");
        d.extra(&cp, &c.extra, RawHashCookie::KEYS);
        match c.name.clone().filter(|n| !n.is_empty()) {
            Some(name) => Some(HashPolicyConfig::Cookie(name)),
            None => {
                d.error(&join(&cp, "name"), "missing name (the cookie's name)");
                None
            }
        }
    } else {
        let sp = join(path, "source_ip");
        for key in raw.source_ip.iter().flat_map(|e| e.keys()) {
            d.warn(format!("ignoring unsupported key {}", join(&sp, key)));
        }
        Some(HashPolicyConfig::SourceIp)
    }
}

fn redirect(raw: &RawRedirect, path: &str, matcher: &MatchConfig, d: &mut Diag) -> RedirectConfig {
    d.extra(path, &raw.extra, RawRedirect::KEYS);
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let mut scheme = nonempty(&raw.scheme_redirect).map(|s| s.to_ascii_lowercase());
    if let Some(s) = &scheme {
        let valid = s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid {
            d.error(
                &join(path, "scheme_redirect"),
                format!("invalid scheme {s:?}"),
            );
        }
    }
    if raw.https_redirect == Some(true) {
        if scheme.is_some() {
            d.error(
                path,
                "set only one of \"scheme_redirect\" and \"https_redirect\"",
            );
        }
        scheme = Some("https".to_owned());
    }
    let host = nonempty(&raw.host_redirect);
    if let Some(h) = &host
        && h.parse::<http::uri::Authority>().is_err()
    {
        d.error(&join(path, "host_redirect"), format!("invalid host {h:?}"));
    }
    if raw.port_redirect == Some(0) {
        d.error(
            &join(path, "port_redirect"),
            "port 0 is not a valid redirect port",
        );
    }
    let path_redirect = match (nonempty(&raw.path_redirect), nonempty(&raw.prefix_rewrite)) {
        (Some(_), Some(_)) => {
            d.error(
                path,
                "set only one of \"path_redirect\" and \"prefix_rewrite\"",
            );
            None
        }
        (Some(p), None) => {
            let valid = p.starts_with('/')
                && !p.contains('#')
                && p.parse::<http::uri::PathAndQuery>().is_ok();
            if !valid {
                let at = join(path, "path_redirect");
                d.error(
                    &at,
                    format!("invalid path {p:?} (a path starting with \"/\")"),
                );
            }
            Some(RedirectPath::Path(p))
        }
        (None, Some(p)) => {
            prefix_rewrite(&join(path, "prefix_rewrite"), &p, matcher, d);
            Some(RedirectPath::Prefix(p))
        }
        (None, None) => None,
    };
    let status = match raw.response_code {
        None => DEFAULT_REDIRECT_CODE,
        Some(c) if REDIRECT_CODES.contains(&c) => c,
        Some(c) => {
            d.error(
                &join(path, "response_code"),
                format!("unsupported redirect code {c} (supported: 301, 302, 303, 307, 308)"),
            );
            DEFAULT_REDIRECT_CODE
        }
    };
    RedirectConfig {
        scheme,
        host,
        port: raw.port_redirect,
        path: path_redirect,
        strip_query: raw.strip_query.unwrap_or(false),
        status,
    }
}

/// A `prefix_rewrite` (of `route` or `redirect`) needs a prefix or exact path match to
/// replace, and must be path characters only.
fn prefix_rewrite(path: &str, value: &str, matcher: &MatchConfig, d: &mut Diag) {
    if !matches!(matcher.path, PathMatch::Prefix(_) | PathMatch::Exact(_)) {
        d.error(path, "prefix_rewrite needs a \"prefix\" or \"path\" match");
    }
    let valid = !value.contains(['?', '#'])
        && format!("/{value}")
            .parse::<http::uri::PathAndQuery>()
            .is_ok();
    if !valid {
        d.error(path, format!("invalid path {value:?}"));
    }
}

fn regex_rewrite(raw: &RawRegexRewrite, path: &str, d: &mut Diag) -> Option<PathRewrite> {
    d.extra(path, &raw.extra, RawRegexRewrite::KEYS);
    let pp = join(path, "pattern");
    let Some(p) = &raw.pattern else {
        d.error(&pp, "missing pattern (e.g. {\"regex\": \"^/a/(.*)\"})");
        return None;
    };
    d.extra(&pp, &p.extra, RawRegexPattern::KEYS);
    let Some(pattern) = p.regex.clone().filter(|r| !r.is_empty()) else {
        d.error(&join(&pp, "regex"), "missing regex");
        return None;
    };
    let groups = match Regex::new(&pattern) {
        Ok(re) => re.captures_len() - 1,
        Err(e) => {
            d.error(&join(&pp, "regex"), regex_reason(&pattern, &e));
            return None;
        }
    };
    let sp = join(path, "substitution");
    let Some(sub) = &raw.substitution else {
        d.error(&sp, "missing substitution");
        return None;
    };
    match substitution(sub, groups) {
        Ok(replacement) => Some(PathRewrite::Regex {
            pattern,
            replacement,
        }),
        Err(reason) => {
            d.error(&sp, reason);
            None
        }
    }
}

/// Envoy's (RE2's) substitution syntax, `\1` for a group and `\\` for a backslash, into the
/// `regex` crate's (`${1}`, `$$` for a dollar).
fn substitution(sub: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(sub.len());
    let mut chars = sub.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(g @ '0'..='9') => {
                    let n = g as usize - '0' as usize;
                    if n > groups {
                        return Err(format!(
                            "\\{n} refers to a group the pattern does not have (it has {groups})"
                        ));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                other => {
                    let got = other.map_or("\\ at the end".to_owned(), |c| format!("\\{c}"));
                    return Err(format!("invalid escape {got:?} (use \\0..\\9 or \\\\)"));
                }
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// "invalid regex "(": unclosed group": the `regex` crate's message without its drawing.
fn regex_reason(pattern: &str, e: &regex::Error) -> String {
    let msg = e.to_string();
    let detail = msg
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(&msg);
    format!("invalid regex {pattern:?}: {detail}")
}
