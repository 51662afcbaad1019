//! What a matched route does: forward (cluster choice, rewrites, hash), answer directly, or
//! redirect.

use crate::protocol::Request;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{HeaderName, HeaderValue, StatusCode, header};
use rand::Rng;
use regex::Regex;
use xxhash_rust::xxh64::xxh64;

use super::matcher::PathMatcher;
use super::{MirrorPolicy, RetryPolicy};
use crate::config::MetadataMatch;
use crate::config::router::{
    ActionConfig, ClusterTarget, DEFAULT_ROUTE_TIMEOUT, ForwardConfig, HashPolicyConfig,
    PathRewrite, RedirectConfig, RedirectPath, RetryConfig, RouteTimeout,
};

#[derive(Debug)]
pub(super) enum Action {
    Forward(Box<Forward>),
    Direct { status: StatusCode, body: Bytes },
    Redirect(Redirect),
}

#[derive(Debug)]
pub(super) struct Forward {
    pub target: Target,
    pub metadata_match: Option<MetadataMatch>,
    pub timeout: Option<Duration>,
    /// The route gave `timeout` (else `timeout` is the default).
    pub timeout_configured: bool,
    pub retry: Option<RetryPolicy>,
    rewrite: Option<Rewrite>,
    /// `host_rewrite`, and the same as an authority for absolute-form URIs.
    host_rewrite: Option<(HeaderValue, Option<Authority>)>,
    pub mirrors: Vec<MirrorPolicy>,
    hash_policy: Vec<HashPolicy>,
}

#[derive(Debug)]
pub(super) enum Target {
    Name(String),
    Header(HeaderName),
    /// Names with their cumulative weight (the last one's is `total`).
    Weighted {
        clusters: Vec<(String, u64, Option<MetadataMatch>)>,
        total: u64,
    },
}

#[derive(Debug)]
enum Rewrite {
    /// Replace the first `len` bytes of the path (the matched prefix) with `with`.
    Prefix {
        len: usize,
        with: String,
    },
    Regex {
        re: Regex,
        replacement: String,
    },
}

#[derive(Debug)]
enum HashPolicy {
    Header(HeaderName),
    Cookie(String),
    SourceIp,
}

#[derive(Debug)]
pub(super) struct Redirect {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<RedirectPath>,
    /// Length of the matched prefix, for `prefix_rewrite`.
    matched_len: usize,
    strip_query: bool,
    pub status: StatusCode,
}

/// The length of what a prefix or exact path match matched.
fn matched_len(path: &PathMatcher) -> usize {
    match path {
        PathMatcher::Prefix(p) | PathMatcher::Exact(p) => p.len(),
        PathMatcher::Any | PathMatcher::Regex(_) => 0,
    }
}

impl Action {
    pub fn new(cfg: &ActionConfig, path: &PathMatcher) -> Action {
        match cfg {
            ActionConfig::Forward(f) => Action::Forward(Box::new(Forward::new(f, path))),
            ActionConfig::DirectResponse { status, body } => Action::Direct {
                status: StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body: Bytes::from(body.clone()),
            },
            ActionConfig::Redirect(r) => Action::Redirect(Redirect::new(r, path)),
        }
    }
}

impl Forward {
    fn new(cfg: &ForwardConfig, path: &PathMatcher) -> Forward {
        let target = match &cfg.target {
            ClusterTarget::Name(n) => Target::Name(n.clone()),
            ClusterTarget::Header(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Target::Header(h),
                Err(_) => Target::Name(String::new()),
            },
            ClusterTarget::Weighted(ws) => {
                let mut total = 0u64;
                let clusters = ws
                    .iter()
                    .map(|w| {
                        total += u64::from(w.weight);
                        (w.name.clone(), total, w.metadata_match.clone())
                    })
                    .collect();
                Target::Weighted { clusters, total }
            }
        };
        let rewrite = cfg.path_rewrite.as_ref().and_then(|r| match r {
            PathRewrite::Prefix(with) => Some(Rewrite::Prefix {
                len: matched_len(path),
                with: with.clone(),
            }),
            PathRewrite::Regex {
                pattern,
                replacement,
            } => Some(Rewrite::Regex {
                re: Regex::new(pattern).ok()?,
                replacement: replacement.clone(),
            }),
        });
        let host_rewrite = cfg
            .host_rewrite
            .as_ref()
            .and_then(|h| Some((HeaderValue::from_str(h).ok()?, h.parse::<Authority>().ok())));
        Forward {
            target,
            metadata_match: cfg.metadata_match.clone(),
            timeout: cfg.timeout.map(|t| match t {
                RouteTimeout::Default => DEFAULT_ROUTE_TIMEOUT,
                RouteTimeout::Given(d) => d,
            }),
            timeout_configured: cfg.timeout != Some(RouteTimeout::Default),
            retry: cfg.retry.as_ref().map(retry_policy),
            rewrite,
            host_rewrite,
            mirrors: cfg
                .mirrors
                .iter()
                .map(|m| MirrorPolicy {
                    cluster: m.cluster.clone(),
                    fraction: m.fraction,
                })
                .collect(),
            hash_policy: cfg
                .hash_policy
                .iter()
                .filter_map(|h| {
                    Some(match h {
                        HashPolicyConfig::Header(n) => {
                            HashPolicy::Header(HeaderName::from_bytes(n.as_bytes()).ok()?)
                        }
                        HashPolicyConfig::Cookie(n) => HashPolicy::Cookie(n.clone()),
                        HashPolicyConfig::SourceIp => HashPolicy::SourceIp,
                    })
                })
                .collect(),
        }
    }

    /// Picks one of `weighted_clusters` by weight (0 for other targets).
    pub fn pick(&self) -> usize {
        match &self.target {
            Target::Weighted { clusters, total } if clusters.len() > 1 && *total > 0 => {
                let r = rand::rng().random_range(0..*total);
                clusters
                    .iter()
                    .position(|(_, end, _)| r < *end)
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Path rewrite and `host_rewrite`.
    pub fn rewrite(&self, head: &mut Parts) {
        if let Some(rewrite) = &self.rewrite {
            let path = head.uri.path();
            let new_path = match rewrite {
                Rewrite::Prefix { len, with } => {
                    path.get(*len..).map(|rest| format!("{with}{rest}"))
                }
                Rewrite::Regex { re, replacement } => {
                    let out = re.replace_all(path, replacement.as_str());
                    (out != path).then(|| out.into_owned())
                }
            };
            if let Some(p) = new_path {
                set_path(&mut head.uri, &p);
            }
        }
        if let Some((value, authority)) = &self.host_rewrite {
            head.headers.insert(header::HOST, value.clone());
            if let (Some(authority), Some(_)) = (authority, head.uri.authority()) {
                let mut parts = head.uri.clone().into_parts();
                parts.authority = Some(authority.clone());
                if let Ok(uri) = Uri::from_parts(parts) {
                    head.uri = uri;
                }
            }
        }
    }

    pub fn hash<R: Request + ?Sized>(&self, req: &R, source: SocketAddr) -> Option<u64> {
        self.hash_policy.iter().find_map(|p| match p {
            HashPolicy::Header(name) => req.header_bytes(name).map(|v| xxh64(v, 0)),
            HashPolicy::Cookie(name) => req.cookie(name).map(|v| xxh64(v.as_bytes(), 0)),
            HashPolicy::SourceIp => Some(match source.ip().to_canonical() {
                std::net::IpAddr::V4(ip) => xxh64(&ip.octets(), 0),
                std::net::IpAddr::V6(ip) => xxh64(&ip.octets(), 0),
            }),
        })
    }
}

fn retry_policy(cfg: &RetryConfig) -> RetryPolicy {
    RetryPolicy {
        num_retries: cfg.num_retries,
        per_try_timeout: cfg.per_try_timeout,
        on_connect_failure: cfg.on_connect_failure,
        on_5xx: cfg.on_5xx,
        on_gateway_error: cfg.on_gateway_error,
        on_status: cfg.on_status.clone(),
        on_grpc: cfg.on_grpc.clone(),
    }
}

/// Replaces the path of `uri`, keeping its query (and scheme and authority). A path the URI
/// refuses leaves it unchanged.
fn set_path(uri: &mut Uri, path: &str) {
    let path = if path.is_empty() { "/" } else { path };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    match PathAndQuery::try_from(pq) {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(e) => {
            tracing::warn!("path rewrite to {path:?} gives an invalid URI ({e}); not rewritten");
            return;
        }
    }
    match Uri::from_parts(parts) {
        Ok(new) => *uri = new,
        Err(e) => {
            tracing::warn!("path rewrite to {path:?} gives an invalid URI ({e}); not rewritten")
        }
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

impl Redirect {
    fn new(cfg: &RedirectConfig, path: &PathMatcher) -> Redirect {
        Redirect {
            scheme: cfg.scheme.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            path: cfg.path.clone(),
            matched_len: matched_len(path),
            strip_query: cfg.strip_query,
            status: StatusCode::from_u16(cfg.status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
        }
    }

    /// The `Location`: the request's URL with the configured parts replaced.
    pub fn location(&self, head: &Parts) -> HeaderValue {
        let orig_scheme = head.uri.scheme_str().unwrap_or("http");
        let scheme = self.scheme.as_deref().unwrap_or(orig_scheme);
        let mut host = self
            .host
            .as_deref()
            .or_else(|| head.host())
            .unwrap_or_default()
            .to_owned();
        let bare = super::host::strip_port(&host);
        if let Some(port) = self.port {
            host = format!("{bare}:{port}");
        } else if scheme != orig_scheme
            && default_port(orig_scheme)
                .is_some_and(|p| host.len() > bare.len() && host[bare.len() + 1..] == *p)
        {
            // http://h:80 -> https://h, not https://h:80.
            host.truncate(bare.len());
        }
        let req_path = head.uri.path();
        let (path, keep_query) = match &self.path {
            None => (req_path.to_owned(), true),
            Some(RedirectPath::Path(p)) => (p.clone(), !p.contains('?')),
            Some(RedirectPath::Prefix(with)) => {
                let rest = req_path.get(self.matched_len..).unwrap_or_default();
                (format!("{with}{rest}"), true)
            }
        };
        let mut location = format!("{scheme}://{host}{path}");
        if let (true, false, Some(q)) = (keep_query, self.strip_query, head.uri.query()) {
            location.push('?');
            location.push_str(q);
        }
        HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
    }
}
