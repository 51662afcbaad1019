//! A route's `match`: the path (prefix, exact or whole-path regex, without the query), then
//! every header and every query parameter condition, over any [`Request`].

use http::HeaderName;
use regex::Regex;

use crate::config::router::{KeyValueMatch, MatchConfig, PathMatch, ValueMatch, full_match_regex};
use crate::protocol::Request;

#[derive(Debug)]
pub(super) struct RouteMatcher {
    path: PathMatcher,
    case_sensitive: bool,
    headers: Vec<KvMatcher<HeaderSource>>,
    query: Vec<KvMatcher<String>>,
}

#[derive(Debug)]
pub(super) enum PathMatcher {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct KvMatcher<K> {
    key: K,
    value: ValueMatcher,
    invert: bool,
}

#[derive(Debug)]
enum ValueMatcher {
    Present,
    Exact(String),
    Regex(Regex),
}

/// Where a header condition reads its value.
#[derive(Debug)]
enum HeaderSource {
    Header(HeaderName),
    Method,
    Authority,
    Path,
    Scheme,
}

/// A regex that matches nothing, for a pattern that does not compile (validation refuses
/// those, so this only guards hand-built configs).
fn compile(pattern: &str, case_sensitive: bool) -> Regex {
    full_match_regex(pattern, case_sensitive).unwrap_or_else(|e| {
        tracing::error!("route regex {pattern:?} does not compile ({e}); it matches nothing");
        Regex::new(r"[^\s\S]").expect("valid regex")
    })
}

impl ValueMatcher {
    fn new(cfg: &ValueMatch) -> ValueMatcher {
        match cfg {
            ValueMatch::Present => ValueMatcher::Present,
            ValueMatch::Exact(v) => ValueMatcher::Exact(v.clone()),
            ValueMatch::Regex(re) => ValueMatcher::Regex(compile(re, true)),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatcher::Present => true,
            ValueMatcher::Exact(v) => v == value,
            ValueMatcher::Regex(re) => re.is_match(value),
        }
    }
}

impl RouteMatcher {
    pub fn new(cfg: &MatchConfig) -> RouteMatcher {
        let path = match &cfg.path {
            PathMatch::Any => PathMatcher::Any,
            PathMatch::Prefix(p) => PathMatcher::Prefix(p.clone()),
            PathMatch::Exact(p) => PathMatcher::Exact(p.clone()),
            PathMatch::Regex(re) => PathMatcher::Regex(compile(re, cfg.case_sensitive)),
        };
        let kv = |m: &KeyValueMatch| (ValueMatcher::new(&m.value), m.invert);
        let headers = cfg
            .headers
            .iter()
            .filter_map(|m| {
                let key = match m.name.as_str() {
                    ":method" => HeaderSource::Method,
                    ":authority" => HeaderSource::Authority,
                    ":path" => HeaderSource::Path,
                    ":scheme" => HeaderSource::Scheme,
                    n => HeaderSource::Header(HeaderName::from_bytes(n.as_bytes()).ok()?),
                };
                let (value, invert) = kv(m);
                Some(KvMatcher { key, value, invert })
            })
            .collect();
        let query = cfg
            .query_parameters
            .iter()
            .map(|m| {
                let (value, invert) = kv(m);
                KvMatcher {
                    key: m.name.clone(),
                    value,
                    invert,
                }
            })
            .collect();
        RouteMatcher {
            path,
            case_sensitive: cfg.case_sensitive,
            headers,
            query,
        }
    }

    pub fn path(&self) -> &PathMatcher {
        &self.path
    }

    pub fn matches<R: Request + ?Sized>(&self, req: &R) -> bool {
        self.path_matches(req.path())
            && self.headers.iter().all(|m| m.header_matches(req))
            && self.query.iter().all(|m| m.query_matches(req.query()))
    }

    /// A request without a path (RPC) matches no path condition but a `prefix` of `/`.
    fn path_matches(&self, path: Option<&str>) -> bool {
        let cs = self.case_sensitive;
        let Some(path) = path else {
            return match &self.path {
                PathMatcher::Any => true,
                PathMatcher::Prefix(p) => p == "/",
                PathMatcher::Exact(_) | PathMatcher::Regex(_) => false,
            };
        };
        match &self.path {
            PathMatcher::Any => true,
            PathMatcher::Prefix(p) if cs => path.starts_with(p.as_str()),
            PathMatcher::Prefix(p) => path
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            PathMatcher::Exact(p) if cs => path == p,
            PathMatcher::Exact(p) => path.eq_ignore_ascii_case(p),
            PathMatcher::Regex(re) => re.is_match(path),
        }
    }
}

impl KvMatcher<HeaderSource> {
    fn header_matches<R: Request + ?Sized>(&self, req: &R) -> bool {
        let single = |v: Option<&str>| v.is_some_and(|v| self.value.matches(v));
        let hit = match &self.key {
            HeaderSource::Header(name) => match self.value {
                ValueMatcher::Present => req.has_header(name),
                _ => req.any_header(name, &mut |v| self.value.matches(v)),
            },
            HeaderSource::Method => single(req.method()),
            HeaderSource::Authority => single(req.host()),
            HeaderSource::Path => single(req.path_and_query()),
            HeaderSource::Scheme => single(req.scheme()),
        };
        hit != self.invert
    }
}

impl KvMatcher<String> {
    /// The first parameter of that name decides; values are compared as sent (not decoded).
    fn query_matches(&self, query: Option<&str>) -> bool {
        let value = query.and_then(|q| {
            q.split('&')
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(name, _)| *name == self.key)
                .map(|(_, value)| value)
        });
        value.is_some_and(|v| self.value.matches(v)) != self.invert
    }
}
