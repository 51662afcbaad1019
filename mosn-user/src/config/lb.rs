//! Load-balancing configuration of a cluster: `lb_type`, the subset load balancer
//! (`lb_subset_config`) and host metadata (`hosts[].metadata`).
//!
//! Raw shapes, validated model types and their validation live together in this file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::diag::{Diag, join};
use super::model::ClusterKind;

/// `lb_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LbPolicy {
    /// `LB_ROUNDROBIN` (MOSN's default).
    RoundRobin,
    /// `LB_RANDOM`.
    Random,
    /// `LB_ORIGINAL_DST`: the connection's original destination (only `ORIGINAL_DST`
    /// clusters, whose default it is).
    OriginalDst,
    /// `LB_WEIGHTED_ROUNDROBIN`.
    WeightedRoundRobin,
    /// `LB_LEAST_REQUEST`: power of two choices on active requests.
    LeastRequest,
    /// `LB_MAGLEV`.
    Maglev,
    /// `LB_RING_HASH` (Envoy's ring hash; MOSN lacks it).
    RingHash,
}

/// Host metadata used by the subset load balancer (`metadata.filter_metadata["mosn.lb"]`).
pub type Metadata = BTreeMap<String, String>;

/// A route's `metadata_match`: the subset of hosts whose metadata has all these pairs.
pub type MetadataMatch = BTreeMap<String, String>;

/// `lb_type` for a cluster of `kind`.
pub(super) fn lb_policy(
    kind: ClusterKind,
    raw: Option<&str>,
    path: &str,
    d: &mut Diag,
) -> LbPolicy {
    let p = join(path, "lb_type");
    let named = raw.map(|r| (r, LbPolicy::from_name(r)));
    match (kind, named) {
        (ClusterKind::OriginalDst, None | Some((_, Some(LbPolicy::OriginalDst)))) => {
            LbPolicy::OriginalDst
        }
        (ClusterKind::OriginalDst, Some((other, _))) => {
            d.error(
                &p,
                format!(
                    "lb_type {other:?} does not apply to an ORIGINAL_DST cluster (use \
                     \"LB_ORIGINAL_DST\" or leave it out)"
                ),
            );
            LbPolicy::OriginalDst
        }
        (ClusterKind::Static, None) => LbPolicy::RoundRobin,
        (ClusterKind::Static, Some((_, Some(LbPolicy::OriginalDst)))) => {
            d.error(
                &p,
                "lb_type \"LB_ORIGINAL_DST\" needs \"type\": \"ORIGINAL_DST\"",
            );
            LbPolicy::RoundRobin
        }
        (ClusterKind::Static, Some((_, Some(policy)))) => policy,
        (ClusterKind::Static, Some((other, None))) => {
            d.error(
                &p,
                format!(
                    "unsupported lb_type {other:?} (supported: {})",
                    LB_TYPE_NAMES.join(", ")
                ),
            );
            LbPolicy::RoundRobin
        }
    }
}

/// Every `lb_type` spelling accepted, for error messages.
pub const LB_TYPE_NAMES: &[&str] = &[
    "LB_ROUNDROBIN",
    "LB_RANDOM",
    "LB_WEIGHTED_ROUNDROBIN",
    "LB_LEAST_REQUEST",
    "LB_MAGLEV",
    "LB_RING_HASH",
    "RING_HASH",
    "LB_ORIGINAL_DST",
];

impl LbPolicy {
    /// The policy an `lb_type` names (any kind of cluster); `None` if unknown.
    pub fn from_name(name: &str) -> Option<LbPolicy> {
        Some(match name {
            "LB_ROUNDROBIN" => LbPolicy::RoundRobin,
            "LB_RANDOM" => LbPolicy::Random,
            "LB_WEIGHTED_ROUNDROBIN" => LbPolicy::WeightedRoundRobin,
            "LB_LEAST_REQUEST" => LbPolicy::LeastRequest,
            "LB_MAGLEV" => LbPolicy::Maglev,
            "LB_RING_HASH" | "RING_HASH" => LbPolicy::RingHash,
            "LB_ORIGINAL_DST" => LbPolicy::OriginalDst,
            _ => return None,
        })
    }

    /// The canonical `lb_type` spelling.
    pub fn name(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "LB_ROUNDROBIN",
            LbPolicy::Random => "LB_RANDOM",
            LbPolicy::OriginalDst => "LB_ORIGINAL_DST",
            LbPolicy::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbPolicy::LeastRequest => "LB_LEAST_REQUEST",
            LbPolicy::Maglev => "LB_MAGLEV",
            LbPolicy::RingHash => "LB_RING_HASH",
        }
    }
}

/// `lb_subset_config.fall_back_policy`: what a request gets when its `metadata_match`
/// selects no subset (or it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum FallbackPolicy {
    /// `0` / `NO_FALLBACK` (MOSN's default): no host.
    #[default]
    NoFallback,
    /// `1` / `ANY_ENDPOINT`: any host of the cluster.
    AnyEndpoint,
    /// `2` / `DEFAULT_SUBSET`: the hosts matching `default_subset`.
    DefaultSubset,
}

/// `lb_subset_config` (MOSN's `LBSubsetConfig`, after Envoy's subset load balancer).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SubsetConfig {
    /// `fall_back_policy`.
    pub fallback: FallbackPolicy,
    /// `default_subset`: the pairs a host needs to be in the fallback subset
    /// ([`FallbackPolicy::DefaultSubset`] only; empty: every host).
    pub default_subset: Metadata,
    /// `subset_selectors`: each a set of metadata keys (sorted, distinct); hosts are grouped
    /// into subsets by their values for these keys.
    pub selectors: Vec<Vec<String>>,
}

const SUBSET_KEYS: &[&str] = &["fall_back_policy", "default_subset", "subset_selectors"];

/// `lb_subset_config` (absent: no subset load balancing).
pub(super) fn subset(value: Option<&Value>, path: &str, d: &mut Diag) -> Option<SubsetConfig> {
    let value = value?;
    if value.is_null() {
        return None;
    }
    let Some(obj) = value.as_object() else {
        d.error(
            path,
            format!(
                "expected an object like {{\"fall_back_policy\": 1, \"subset_selectors\": \
                 [[\"version\"]]}}, got {}",
                kind_of(value)
            ),
        );
        return None;
    };
    let extra: BTreeMap<String, Value> = obj
        .iter()
        .filter(|(k, _)| !SUBSET_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    d.extra(path, &extra, SUBSET_KEYS);

    let errors_before = d.errors.len();
    let fp = join(path, "fall_back_policy");
    let fallback = match obj.get("fall_back_policy") {
        None | Some(Value::Null) => FallbackPolicy::NoFallback,
        Some(v) => match fallback_policy(v) {
            Some(f) => f,
            None => {
                d.error(
                    &fp,
                    format!(
                        "unsupported fall_back_policy {v} (supported: 0 or \"NO_FALLBACK\", 1 \
                         or \"ANY_ENDPOINT\", 2 or \"DEFAULT_SUBSET\")"
                    ),
                );
                FallbackPolicy::NoFallback
            }
        },
    };

    let dp = join(path, "default_subset");
    let default_subset = match obj.get("default_subset") {
        None | Some(Value::Null) => {
            if fallback == FallbackPolicy::DefaultSubset {
                d.error(
                    &dp,
                    "fall_back_policy DEFAULT_SUBSET needs a default_subset (for example \
                     {\"version\": \"v1\"})",
                );
            }
            Metadata::new()
        }
        Some(v) => {
            let m = pairs(v, &dp, d);
            if fallback != FallbackPolicy::DefaultSubset {
                d.warn(format!(
                    "{dp}: ignored: fall_back_policy is not DEFAULT_SUBSET"
                ));
            } else if m.is_empty() && v.is_object() {
                d.warn(format!(
                    "{dp}: an empty default_subset matches every host (the same as \
                     fall_back_policy ANY_ENDPOINT)"
                ));
            }
            m
        }
    };

    let sp = join(path, "subset_selectors");
    let mut selectors: Vec<Vec<String>> = Vec::new();
    match obj.get("subset_selectors") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, sel) in list.iter().enumerate() {
                let p = format!("{sp}[{i}]");
                let Some(keys) = selector(sel, &p, d) else {
                    continue;
                };
                if let Some(first) = selectors.iter().position(|s| *s == keys) {
                    d.error(
                        &p,
                        format!("the same keys as subset_selectors[{first}]; remove one"),
                    );
                    continue;
                }
                selectors.push(keys);
            }
        }
        Some(other) => d.error(
            &sp,
            format!(
                "expected a list of key lists like [[\"version\"], [\"version\", \"zone\"]], \
                 got {}",
                kind_of(other)
            ),
        ),
    }
    if selectors.is_empty() && d.errors.len() == errors_before {
        d.warn(format!(
            "{sp}: no subset selectors: every request uses the fall_back_policy"
        ));
    }
    (d.errors.len() == errors_before).then_some(SubsetConfig {
        fallback,
        default_subset,
        selectors,
    })
}

fn fallback_policy(v: &Value) -> Option<FallbackPolicy> {
    match v {
        Value::Number(n) => match n.as_u64()? {
            0 => Some(FallbackPolicy::NoFallback),
            1 => Some(FallbackPolicy::AnyEndpoint),
            2 => Some(FallbackPolicy::DefaultSubset),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "NO_FALLBACK" => Some(FallbackPolicy::NoFallback),
            "ANY_ENDPOINT" => Some(FallbackPolicy::AnyEndpoint),
            "DEFAULT_SUBSET" => Some(FallbackPolicy::DefaultSubset),
            _ => None,
        },
        _ => None,
    }
}

/// One `subset_selectors[i]`: a non-empty list of distinct, non-empty keys (returned sorted).
fn selector(v: &Value, path: &str, d: &mut Diag) -> Option<Vec<String>> {
    let Some(list) = v.as_array() else {
        d.error(
            path,
            format!(
                "expected a list of metadata keys like [\"version\"], got {}",
                kind_of(v)
            ),
        );
        return None;
    };
    if list.is_empty() {
        d.error(
            path,
            "an empty selector selects nothing; list at least one metadata key",
        );
        return None;
    }
    let mut keys: Vec<String> = Vec::new();
    let mut ok = true;
    for (j, k) in list.iter().enumerate() {
        let p = format!("{path}[{j}]");
        match k.as_str() {
            Some("") => {
                d.error(&p, "metadata key must not be empty");
                ok = false;
            }
            Some(k) if keys.iter().any(|x| x == k) => {
                d.error(&p, format!("key {k:?} is listed twice in this selector"));
                ok = false;
            }
            Some(k) => keys.push(k.to_owned()),
            None => {
                d.error(
                    &p,
                    format!("expected a metadata key (a string), got {}", kind_of(k)),
                );
                ok = false;
            }
        }
    }
    keys.sort();
    ok.then_some(keys)
}

/// The metadata namespace subset load balancing reads (MOSN's `mosn.lb`).
pub const METADATA_NAMESPACE: &str = "mosn.lb";

/// A host's `metadata` (absent: empty): `{"filter_metadata": {"mosn.lb": {"k": "v"}}}`.
pub(super) fn host_metadata(value: Option<&Value>, path: &str, d: &mut Diag) -> Metadata {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Metadata::new();
    };
    let example = "{\"filter_metadata\": {\"mosn.lb\": {\"version\": \"v1\"}}}";
    let Some(obj) = value.as_object() else {
        d.error(
            path,
            format!("expected an object like {example}, got {}", kind_of(value)),
        );
        return Metadata::new();
    };
    let extra: BTreeMap<String, Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "filter_metadata")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    d.extra(path, &extra, &["filter_metadata"]);
    let fp = join(path, "filter_metadata");
    let namespaces = match obj.get("filter_metadata") {
        None | Some(Value::Null) => return Metadata::new(),
        Some(Value::Object(ns)) => ns,
        Some(other) => {
            d.error(
                &fp,
                format!(
                    "expected an object of namespaces like {{\"mosn.lb\": {{\"version\": \
                     \"v1\"}}}}, got {}",
                    kind_of(other)
                ),
            );
            return Metadata::new();
        }
    };
    for ns in namespaces.keys().filter(|k| *k != METADATA_NAMESPACE) {
        d.warn(format!(
            "{fp}[{ns:?}]: ignored: load balancing reads only the {METADATA_NAMESPACE:?} \
             namespace"
        ));
    }
    match namespaces.get(METADATA_NAMESPACE) {
        None | Some(Value::Null) => Metadata::new(),
        Some(v) => pairs(v, &format!("{fp}[{METADATA_NAMESPACE:?}]"), d),
    }
}

/// An object of metadata pairs; strings, numbers and booleans are kept as their text.
fn pairs(v: &Value, path: &str, d: &mut Diag) -> Metadata {
    let Some(obj) = v.as_object() else {
        d.error(
            path,
            format!(
                "expected an object of key/value pairs like {{\"version\": \"v1\"}}, got {}",
                kind_of(v)
            ),
        );
        return Metadata::new();
    };
    let mut out = Metadata::new();
    for (k, v) in obj {
        if k.is_empty() {
            d.error(path, "metadata key must not be empty");
            continue;
        }
        let p = join(path, k);
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                d.error(
                    &p,
                    format!(
                        "expected a string, number or boolean, got {}",
                        kind_of(other)
                    ),
                );
                continue;
            }
        };
        out.insert(k.clone(), text);
    }
    out
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::{ConfigError, Format, Loaded, parse};

    /// A config of one cluster `c` (as `clusters[0]`) with `extra` merged into it.
    fn config(extra: Value) -> Value {
        let mut c = json!({ "name": "c", "hosts": [{ "address": "127.0.0.1:8080" }] });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({ "cluster_manager": { "clusters": [c] } })
    }

    fn load(v: &Value) -> Result<Loaded, ConfigError> {
        parse(&v.to_string(), Format::Json)
    }

    fn errors(extra: Value) -> Vec<String> {
        match load(&config(extra)) {
            Ok(l) => panic!("expected errors, got {:#?}", l.config.clusters),
            Err(ConfigError::Invalid(e)) => e.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected validation errors, got {other}"),
        }
    }

    /// Loads a valid config; keeps only the warnings about the cluster.
    fn ok(extra: Value) -> Loaded {
        let mut l = load(&config(extra)).unwrap_or_else(|e| panic!("{e}"));
        l.warnings.retain(|w| w.contains("cluster_manager"));
        l
    }

    const P: &str = "cluster_manager.clusters[0]";

    #[test]
    fn lb_type_names() {
        for (name, policy) in [
            ("LB_ROUNDROBIN", LbPolicy::RoundRobin),
            ("LB_RANDOM", LbPolicy::Random),
            ("LB_WEIGHTED_ROUNDROBIN", LbPolicy::WeightedRoundRobin),
            ("LB_LEAST_REQUEST", LbPolicy::LeastRequest),
            ("LB_MAGLEV", LbPolicy::Maglev),
            ("LB_RING_HASH", LbPolicy::RingHash),
            ("RING_HASH", LbPolicy::RingHash),
        ] {
            let l = ok(json!({ "lb_type": name }));
            assert_eq!(l.config.clusters[0].lb, policy, "{name}");
            assert_eq!(LbPolicy::from_name(policy.name()), Some(policy));
        }
        assert_eq!(
            errors(json!({ "lb_type": "LB_LEAST_CONNECTION" })),
            vec![format!(
                "{P}.lb_type: unsupported lb_type \"LB_LEAST_CONNECTION\" (supported: \
                 LB_ROUNDROBIN, LB_RANDOM, LB_WEIGHTED_ROUNDROBIN, LB_LEAST_REQUEST, LB_MAGLEV, \
                 LB_RING_HASH, RING_HASH, LB_ORIGINAL_DST)"
            )]
        );
        assert_eq!(
            errors(json!({ "lb_type": "LB_ORIGINAL_DST" })),
            vec![format!(
                "{P}.lb_type: lb_type \"LB_ORIGINAL_DST\" needs \"type\": \"ORIGINAL_DST\""
            )]
        );
        let odst = json!({ "type": "ORIGINAL_DST", "lb_type": "LB_MAGLEV", "hosts": [] });
        assert_eq!(
            errors(odst),
            vec![format!(
                "{P}.lb_type: lb_type \"LB_MAGLEV\" does not apply to an ORIGINAL_DST cluster \
                 (use \"LB_ORIGINAL_DST\" or leave it out)"
            )]
        );
    }

    #[test]
    fn subset_config_parses() {
        let l = ok(json!({ "lb_subset_config": {
            "fall_back_policy": "DEFAULT_SUBSET",
            "default_subset": { "version": "v1", "canary": false },
            "subset_selectors": [["version"], ["zone", "version"]],
        }}));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(
            l.config.clusters[0].lb_subset,
            Some(SubsetConfig {
                fallback: FallbackPolicy::DefaultSubset,
                default_subset: [("canary", "false"), ("version", "v1")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
                selectors: vec![
                    vec!["version".into()],
                    vec!["version".into(), "zone".into()]
                ],
            })
        );
        for (raw, fallback) in [
            (json!(0), FallbackPolicy::NoFallback),
            (json!(1), FallbackPolicy::AnyEndpoint),
            (json!("ANY_ENDPOINT"), FallbackPolicy::AnyEndpoint),
            (json!("NO_FALLBACK"), FallbackPolicy::NoFallback),
        ] {
            let l = ok(json!({ "lb_subset_config": {
                "fall_back_policy": raw, "subset_selectors": [["v"]]
            }}));
            assert_eq!(
                l.config.clusters[0].lb_subset.as_ref().unwrap().fallback,
                fallback
            );
        }
        let l = ok(json!({ "lb_subset_config": { "subset_selectors": [["v"]] } }));
        assert_eq!(
            l.config.clusters[0].lb_subset.as_ref().unwrap().fallback,
            FallbackPolicy::NoFallback,
            "MOSN's default"
        );
        assert_eq!(ok(json!({})).config.clusters[0].lb_subset, None);
    }

    #[test]
    fn subset_config_errors_name_the_field() {
        let s = |v: Value| json!({ "lb_subset_config": v });
        let sp = format!("{P}.lb_subset_config");
        assert_eq!(
            errors(s(json!({ "subset_selectors": [["version"], []] }))),
            vec![format!(
                "{sp}.subset_selectors[1]: an empty selector selects nothing; list at least \
                 one metadata key"
            )]
        );
        assert_eq!(
            errors(s(
                json!({ "subset_selectors": [["version", ""], ["a", "a"], ["b", 3]] })
            )),
            vec![
                format!("{sp}.subset_selectors[0][1]: metadata key must not be empty"),
                format!("{sp}.subset_selectors[1][1]: key \"a\" is listed twice in this selector"),
                format!(
                    "{sp}.subset_selectors[2][1]: expected a metadata key (a string), got a \
                     number"
                ),
            ]
        );
        assert_eq!(
            errors(s(json!({ "subset_selectors": [["a", "b"], ["b", "a"]] }))),
            vec![format!(
                "{sp}.subset_selectors[1]: the same keys as subset_selectors[0]; remove one"
            )]
        );
        assert_eq!(
            errors(s(json!({ "subset_selectors": "version" }))),
            vec![format!(
                "{sp}.subset_selectors: expected a list of key lists like [[\"version\"], \
                 [\"version\", \"zone\"]], got a string"
            )]
        );
        assert_eq!(
            errors(s(
                json!({ "fall_back_policy": 2, "subset_selectors": [["v"]] })
            )),
            vec![format!(
                "{sp}.default_subset: fall_back_policy DEFAULT_SUBSET needs a default_subset \
                 (for example {{\"version\": \"v1\"}})"
            )]
        );
        assert_eq!(
            errors(s(
                json!({ "fall_back_policy": 3, "subset_selectors": [["v"]] })
            )),
            vec![format!(
                "{sp}.fall_back_policy: unsupported fall_back_policy 3 (supported: 0 or \
                 \"NO_FALLBACK\", 1 or \"ANY_ENDPOINT\", 2 or \"DEFAULT_SUBSET\")"
            )]
        );
        assert_eq!(
            errors(s(json!({
                "fall_back_policy": "DEFAULT_SUBSET",
                "default_subset": { "version": ["v1"] },
                "subset_selectors": [["v"]],
            }))),
            vec![format!(
                "{sp}.default_subset.version: expected a string, number or boolean, got a list"
            )]
        );
        assert_eq!(
            errors(s(json!([["version"]]))),
            vec![format!(
                "{sp}: expected an object like {{\"fall_back_policy\": 1, \"subset_selectors\": \
                 [[\"version\"]]}}, got a list"
            )]
        );
    }

    #[test]
    fn subset_config_warnings() {
        let l = ok(json!({ "lb_subset_config": {
            "fall_back_policy": 1,
            "default_subset": { "version": "v1" },
            "subset_selector": [["version"]],
        }}));
        let sp = format!("{P}.lb_subset_config");
        assert_eq!(
            l.warnings,
            vec![
                format!(
                    "ignoring unsupported key {sp}.subset_selector (did you mean \
                     \"subset_selectors\"?)"
                ),
                format!("{sp}.default_subset: ignored: fall_back_policy is not DEFAULT_SUBSET"),
                format!(
                    "{sp}.subset_selectors: no subset selectors: every request uses the \
                     fall_back_policy"
                ),
            ]
        );
    }

    fn with_metadata(m: Value) -> Value {
        json!({ "hosts": [
            { "address": "127.0.0.1:8080" },
            { "address": "127.0.0.1:8081", "metadata": m },
        ]})
    }

    #[test]
    fn host_metadata_is_read_from_mosn_lb() {
        let l = ok(with_metadata(json!({ "filter_metadata": { "mosn.lb": {
            "version": "v1", "weight": 3, "ratio": 0.5, "canary": true,
        }}})));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let hosts = &l.config.clusters[0].hosts;
        assert!(hosts[0].metadata.is_empty());
        let expected: Metadata = [
            ("canary", "true"),
            ("ratio", "0.5"),
            ("version", "v1"),
            ("weight", "3"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        assert_eq!(hosts[1].metadata, expected);

        let l = ok(with_metadata(json!({
            "filter_metadata": { "envoy.lb": { "version": "v1" } },
            "labels": {},
        })));
        assert!(l.config.clusters[0].hosts[1].metadata.is_empty());
        let hp = format!("{P}.hosts[1].metadata");
        assert_eq!(
            l.warnings,
            vec![
                format!("ignoring unsupported key {hp}.labels"),
                format!(
                    "{hp}.filter_metadata[\"envoy.lb\"]: ignored: load balancing reads only \
                     the \"mosn.lb\" namespace"
                ),
            ]
        );
    }

    #[test]
    fn host_metadata_errors_name_the_field() {
        let hp = format!("{P}.hosts[1].metadata");
        assert_eq!(
            errors(with_metadata(json!({ "filter_metadata": { "mosn.lb": {
                "version": null, "zone": { "a": 1 }, "": "x",
            }}}))),
            vec![
                format!("{hp}.filter_metadata[\"mosn.lb\"]: metadata key must not be empty"),
                format!(
                    "{hp}.filter_metadata[\"mosn.lb\"].version: expected a string, number or \
                     boolean, got null"
                ),
                format!(
                    "{hp}.filter_metadata[\"mosn.lb\"].zone: expected a string, number or \
                     boolean, got an object"
                ),
            ]
        );
        assert_eq!(
            errors(with_metadata(
                json!({ "filter_metadata": { "mosn.lb": ["v1"] } })
            )),
            vec![format!(
                "{hp}.filter_metadata[\"mosn.lb\"]: expected an object of key/value pairs like \
                 {{\"version\": \"v1\"}}, got a list"
            )]
        );
        assert_eq!(
            errors(with_metadata(json!({ "filter_metadata": "v1" }))),
            vec![format!(
                "{hp}.filter_metadata: expected an object of namespaces like {{\"mosn.lb\": \
                 {{\"version\": \"v1\"}}}}, got a string"
            )]
        );
        assert_eq!(
            errors(with_metadata(json!("v1"))),
            vec![format!(
                "{hp}: expected an object like {{\"filter_metadata\": {{\"mosn.lb\": \
                 {{\"version\": \"v1\"}}}}}}, got a string"
            )]
        );
    }
}
