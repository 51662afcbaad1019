//! The router: MOSN's `routers[].virtual_hosts[]`. A [`RouteTable`] per
//! `router_config_name` picks the virtual host by `Host`/`:authority` (exact, then suffix and
//! prefix wildcards, then `*`) and the first route whose match applies; the [`RouteMatch`]
//! then answers everything the proxy asks of the route.
//!
//! API used by the proxy (keep it): [`Routers::new`], [`Routers::get`], [`RouteTable::route`]
//! and the methods of [`RouteMatch`]. Routing reads requests through [`Request`], so
//! HTTP heads and X-Protocol (RPC) frames share the tables; what only makes sense for HTTP
//! (actions other than forwarding, rewrites, redirects) takes `http::request::Parts`.
//!
//! Files: `request` is what the router reads of a request, `host` picks the virtual host,
//! `matcher` the route, `action` holds what a route does (cluster choice, rewrites,
//! redirects, hashing) and `header` the header mutations. The config they are built from is
//! [`crate::config::router`].

mod action;
mod header;
mod host;
mod matcher;
#[cfg(test)]
mod rpc_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod validation_tests;

use crate::protocol::Request;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::config::{MetadataMatch, RouterConfig};
use action::{Action, Forward, Target};
use header::{HeaderMutations, Side};
use host::DomainIndex;
use matcher::RouteMatcher;

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
    domains: DomainIndex,
    virtual_hosts: Vec<Arc<VirtualHost>>,
    headers: Arc<HeaderMutations>,
}

#[derive(Debug)]
struct VirtualHost {
    name: String,
    routes: Vec<Route>,
    headers: HeaderMutations,
}

#[derive(Debug)]
struct Route {
    matcher: RouteMatcher,
    action: Action,
    headers: HeaderMutations,
}

impl RouteTable {
    /// `cfg` has been validated (a regex that does not compile matches nothing).
    pub fn new(cfg: &RouterConfig) -> RouteTable {
        let virtual_hosts = cfg
            .virtual_hosts
            .iter()
            .map(|vh| {
                let routes = vh
                    .routes
                    .iter()
                    .map(|r| {
                        let matcher = RouteMatcher::new(&r.matcher);
                        Route {
                            action: Action::new(&r.action, matcher.path()),
                            matcher,
                            headers: HeaderMutations::new(&r.headers),
                        }
                    })
                    .collect();
                Arc::new(VirtualHost {
                    name: vh.name.clone(),
                    routes,
                    headers: HeaderMutations::new(&vh.headers),
                })
            })
            .collect();
        RouteTable {
            name: cfg.name.clone(),
            domains: DomainIndex::new(&cfg.virtual_hosts),
            virtual_hosts,
            headers: Arc::new(HeaderMutations::new(&cfg.headers)),
        }
    }

    /// The route for a request (an HTTP head or an RPC frame), or `None` (HTTP 404).
    /// `source`: the downstream peer.
    ///
    /// The virtual host is chosen by the `Host` header (or the URI's authority; an RPC frame
    /// has neither and gets the `*` virtual host); the first of its routes whose match
    /// applies wins. A weighted route picks its cluster here, so that [`RouteMatch::cluster`]
    /// and [`RouteMatch::metadata_match`] agree.
    pub fn route<R: Request + ?Sized>(&self, req: &R, source: SocketAddr) -> Option<RouteMatch> {
        let _ = source;
        let vi = self.domains.find(req.host().unwrap_or_default())?;
        let vhost = &self.virtual_hosts[vi];
        let route = vhost.routes.iter().position(|r| r.matcher.matches(req))?;
        let picked = match &vhost.routes[route].action {
            Action::Forward(f) => f.pick(),
            _ => 0,
        };
        Some(RouteMatch {
            vhost: Arc::clone(vhost),
            route,
            router: Arc::clone(&self.headers),
            picked,
        })
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
    /// Retry on these `grpc-status` codes (Envoy's gRPC `retry_on` conditions).
    pub on_grpc: Vec<u32>,
}

impl RetryPolicy {
    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on_5xx && (500..600).contains(&status))
            || (self.on_gateway_error && matches!(status, 502..=504))
            || self.on_status.contains(&status)
    }

    /// Whether a gRPC response with `grpc-status` `code` (in its headers) is retried.
    pub fn retries_grpc(&self, code: u32) -> bool {
        self.on_grpc.contains(&code)
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
pub struct RouteMatch {
    vhost: Arc<VirtualHost>,
    /// Index in `vhost.routes`.
    route: usize,
    router: Arc<HeaderMutations>,
    /// The weighted cluster picked (0 otherwise).
    picked: usize,
}

impl RouteMatch {
    fn route(&self) -> &Route {
        &self.vhost.routes[self.route]
    }

    fn forward(&self) -> Option<&Forward> {
        match &self.route().action {
            Action::Forward(f) => Some(f),
            _ => None,
        }
    }

    /// The matched virtual host's `name`.
    pub fn virtual_host(&self) -> &str {
        &self.vhost.name
    }

    pub fn action(&self, head: &http::request::Parts) -> RouteAction {
        match &self.route().action {
            Action::Forward(_) => RouteAction::Forward,
            Action::Direct { status, body } => RouteAction::DirectResponse {
                status: *status,
                body: body.clone(),
            },
            Action::Redirect(r) => RouteAction::Redirect {
                status: r.status,
                location: r.location(head),
            },
        }
    }

    /// The cluster to forward to: `cluster_name`, the value of `cluster_header`, or one of
    /// `weighted_clusters` by weight (picked once per [`RouteTable::route`]). `None`:
    /// `cluster_header` absent from the request (or empty, or not UTF-8), or the route does not
    /// forward.
    pub fn cluster<R: Request + ?Sized>(&self, req: &R) -> Option<Cow<'_, str>> {
        match &self.forward()?.target {
            Target::Name(n) => Some(Cow::Borrowed(n)),
            Target::Header(h) => req
                .header(h)
                .filter(|v| !v.is_empty())
                .map(|v| Cow::Owned(v.to_owned())),
            Target::Weighted { clusters, .. } => clusters
                .get(self.picked)
                .map(|(n, _, _)| Cow::Borrowed(n.as_str())),
        }
    }

    /// Rewrites the request for upstream: `prefix_rewrite`/`regex_rewrite` of the path,
    /// `host_rewrite`, and header add/remove of the route, virtual host and router.
    pub fn apply_request(&self, head: &mut http::request::Parts) {
        if let Some(f) = self.forward() {
            f.rewrite(head);
        }
        header::apply(self.levels(), Side::Request, &mut head.headers);
    }

    /// Header add/remove of the route, virtual host and router on an RPC request (the
    /// frame is re-encoded only when there is something to change).
    pub fn apply_frame_request(&self, frame: &mut crate::protocol::xprotocol::XFrame) {
        self.apply_frame(Side::Request, frame);
    }

    /// Header add/remove on an RPC response, at each level.
    pub fn apply_frame_response(&self, frame: &mut crate::protocol::xprotocol::XFrame) {
        self.apply_frame(Side::Response, frame);
    }

    fn apply_frame(&self, side: Side, frame: &mut crate::protocol::xprotocol::XFrame) {
        let levels = self.levels();
        if levels.iter().all(|l| l.is_empty(side)) {
            return;
        }
        header::apply_frame(levels, side, frame);
    }

    /// Header add/remove on the response, at each level.
    pub fn apply_response(&self, head: &mut http::response::Parts) {
        header::apply(self.levels(), Side::Response, &mut head.headers);
    }

    fn levels(&self) -> [&HeaderMutations; 3] {
        [&self.route().headers, &self.vhost.headers, &self.router]
    }

    /// `timeout`: the whole request, retries included (`None`: no timeout). A route without
    /// `timeout` has [`crate::config::router::DEFAULT_ROUTE_TIMEOUT`].
    pub fn timeout(&self) -> Option<Duration> {
        self.forward()?.timeout
    }

    /// Whether the route set `timeout` itself (`"0s"` included). When it did not, an RPC
    /// request that carries its own timeout (Bolt's timeout field) uses that instead of
    /// [`RouteMatch::timeout`]'s default. `false` for a route that does not forward.
    pub fn timeout_configured(&self) -> bool {
        self.forward().is_some_and(|f| f.timeout_configured)
    }

    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.forward()?.retry.as_ref()
    }

    /// `metadata_match` (subset load balancing): the picked weighted cluster's, else the
    /// route's.
    pub fn metadata_match(&self) -> Option<&MetadataMatch> {
        let f = self.forward()?;
        let picked = match &f.target {
            Target::Weighted { clusters, .. } => clusters.get(self.picked)?.2.as_ref(),
            _ => None,
        };
        picked.or(f.metadata_match.as_ref())
    }

    pub fn mirror_policies(&self) -> &[MirrorPolicy] {
        self.forward().map_or(&[], |f| &f.mirrors)
    }

    /// The request's hash under the route's `hash_policy` (header, cookie, source IP), for
    /// hashing load balancers: xxh64 of the first policy that yields a value.
    pub fn hash<R: Request + ?Sized>(&self, req: &R, source: SocketAddr) -> Option<u64> {
        self.forward()?.hash(req, source)
    }
}
