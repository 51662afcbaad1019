//! The router: MOSN's `routers[].virtual_hosts[]`. A [`RouteTable`] per
//! `router_config_name` picks the virtual host by `Host`/`:authority` (exact, then suffix and
//! prefix wildcards, then `*`) and the first route whose match applies; the [`RouteMatch`]
//! then answers everything the proxy asks of the route.
//!
//! API used by the proxy (keep it): [`Routers::new`], [`Routers::get`], [`RouteTable::route`]
//! and the methods of [`RouteMatch`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::config::{MetadataMatch, RouterConfig};

/// Every router of the config, by `router_config_name`.
#[derive(Debug, Default)]
pub struct Routers {
    tables: HashMap<String, Arc<RouteTable>>,
}

impl Routers {
    /// `cfgs` have been validated.
    pub fn new(cfgs: &[RouterConfig]) -> Routers {
        Routers {
            tables: cfgs
                .iter()
                .map(|c| (c.name.clone(), Arc::new(RouteTable::new(c))))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RouteTable>> {
        self.tables.get(name)
    }
}

/// One router's virtual hosts.
#[derive(Debug)]
pub struct RouteTable {
    pub name: String,
}

impl RouteTable {
    pub fn new(cfg: &RouterConfig) -> RouteTable {
        RouteTable {
            name: cfg.name.clone(),
        }
    }

    /// The route for a request, or `None` (404). `source`: the downstream peer.
    pub fn route(&self, head: &http::request::Parts, source: SocketAddr) -> Option<RouteMatch> {
        let _ = (head, source);
        None
    }
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Forward upstream to the cluster given by [`RouteMatch::cluster`].
    Forward,
    /// `direct_response`: answer with this status and body.
    DirectResponse { status: StatusCode, body: Bytes },
    /// `redirect`: answer with this status (301, 302, 303, 307, 308) and `Location`.
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
}

/// Which failures a route retries (`retry_policy`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `num_retries`.
    pub num_retries: u32,
    /// `retry_timeout`: the timeout of each try (absent: the route's timeout).
    pub per_try_timeout: Option<Duration>,
    /// Retry when the upstream connection fails or is reset before a response.
    pub on_connect_failure: bool,
    /// Retry on 5xx responses.
    pub on_5xx: bool,
    /// Retry on 502, 503, 504.
    pub on_gateway_error: bool,
    /// Retry on these status codes (`status_codes` / `retriable_status_codes`).
    pub on_status: Vec<u16>,
}

impl RetryPolicy {
    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on_5xx && (500..600).contains(&status))
            || (self.on_gateway_error && matches!(status, 502..=504))
            || self.on_status.contains(&status)
    }
}

/// `request_mirror_policies`: copy requests to `cluster` (responses are discarded).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorPolicy {
    pub cluster: String,
    /// Share of requests mirrored, 0.0..=1.0.
    pub fraction: f64,
}

/// A matched route, with its virtual host and router (for header mutations at each level).
#[derive(Debug, Clone)]
pub struct RouteMatch {}

impl RouteMatch {
    pub fn action(&self, head: &http::request::Parts) -> RouteAction {
        let _ = head;
        RouteAction::Forward
    }

    /// The cluster to forward to: `cluster_name`, the value of `cluster_header`, or one of
    /// `weighted_clusters` by weight. `None`: `cluster_header` absent from the request.
    pub fn cluster(&self, head: &http::request::Parts) -> Option<Cow<'_, str>> {
        let _ = head;
        None
    }

    /// Rewrites the request for upstream: `prefix_rewrite`/`regex_rewrite` of the path,
    /// `host_rewrite`, and header add/remove of the route, virtual host and router.
    pub fn apply_request(&self, head: &mut http::request::Parts) {
        let _ = head;
    }

    /// Header add/remove on the response, at each level.
    pub fn apply_response(&self, head: &mut http::response::Parts) {
        let _ = head;
    }

    /// `timeout`: the whole request, retries included (`None`: no timeout).
    pub fn timeout(&self) -> Option<Duration> {
        None
    }

    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        None
    }

    /// `metadata_match` (subset load balancing).
    pub fn metadata_match(&self) -> Option<&MetadataMatch> {
        None
    }

    pub fn mirror_policies(&self) -> &[MirrorPolicy] {
        &[]
    }

    /// The request's hash under the route's `hash_policy` (header, cookie, source IP), for
    /// hashing load balancers.
    pub fn hash(&self, head: &http::request::Parts, source: SocketAddr) -> Option<u64> {
        let _ = (head, source);
        None
    }
}
