//! Routing an HTTP request head (HTTP/1 and HTTP/2 alike): the route, its direct responses
//! and redirects, the cluster, the request rewrites, hop-by-hop fields, `X-Forwarded-For`,
//! mirrors, the hash, and the [`Attempt`] that carries it upstream; and the HTTP form of the
//! proxy's own errors.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::LOCATION;

use super::Proxy;
use super::attempt::{Attempt, Error};
use super::{headers, mirror};
use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::metrics::ErrorKind;
use crate::protocol::Request;
use crate::router::RouteAction;

/// Runs the request-head hooks of `filters` on `req`: `Err` with the answer of a filter
/// that answers (after any pause it asked for).
pub(super) async fn request_filters(
    filters: &mut [Box<dyn StreamFilter>],
    req: &mut dyn Request,
    ctx: &mut FilterContext,
) -> Result<(), LocalReply> {
    for f in filters.iter_mut() {
        match f.on_request_headers(req, ctx) {
            FilterStatus::Continue => {}
            FilterStatus::Pause(d) => {
                tokio::time::sleep(d).await;
                if let FilterStatus::Respond(r) = f.on_resume(ctx) {
                    return Err(r);
                }
            }
            FilterStatus::Respond(r) => return Err(r),
        }
    }
    Ok(())
}

/// Where routing sends a request.
pub(super) enum Routed {
    /// Upstream, through this attempt; the route's timeout.
    Forward(Attempt, Option<Duration>),
    /// The proxy answers (direct response, redirect, or an error).
    Reply(LocalReply, ErrorKind),
}

/// Routes `head` (changed in place into the head to send upstream) from `peer`.
pub(super) fn route(
    proxy: &Proxy,
    head: &mut http::request::Parts,
    fctx: &mut FilterContext,
    peer_value: &http::HeaderValue,
    upgrade: bool,
) -> Routed {
    let Some(route) = proxy.routes.route(head, fctx.source) else {
        return fail(Error::NoRoute);
    };
    match route.action(head) {
        RouteAction::Forward => {}
        RouteAction::DirectResponse { status, body } => {
            let reply = LocalReply {
                status,
                body,
                headers: Vec::new(),
                detail: "direct_response",
            };
            return Routed::Reply(reply, ErrorKind::Other);
        }
        RouteAction::Redirect { status, location } => {
            let reply = LocalReply {
                status,
                body: Bytes::new(),
                headers: vec![(LOCATION, location)],
                detail: "redirect",
            };
            return Routed::Reply(reply, ErrorKind::Other);
        }
    }
    let cluster = match Attempt::cluster(&proxy.clusters, route.cluster(head)) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let timeout = route.timeout();
    route.apply_request(head);
    headers::strip_hop_by_hop(&mut head.headers, upgrade);
    headers::forwarded_for(&mut head.headers, peer_value);
    mirror::draw(&route, &mut fctx.mirrors);
    let hash = route.hash(head, fctx.source);
    match Attempt::new(route, cluster, hash) {
        Ok(a) => Routed::Forward(a, timeout),
        Err(e) => fail(e),
    }
}

/// The proxy's HTTP answer to `e`.
pub(super) fn fail(e: Error) -> Routed {
    let (status, detail, text) = match &e {
        Error::NoRoute => (
            StatusCode::NOT_FOUND,
            "no_route",
            "no route matched the request".to_owned(),
        ),
        Error::NoCluster => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_not_found",
            "the route's cluster does not exist".to_owned(),
        ),
        Error::Overflow => (
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit_open",
            "upstream overflow: circuit breaker open".to_owned(),
        ),
        Error::NoHealthyHost => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_upstream",
            "no healthy upstream".to_owned(),
        ),
        Error::Connect(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_connect_failure",
            format!("upstream connect error: {why}"),
        ),
        Error::Reset(why) => (
            StatusCode::BAD_GATEWAY,
            "upstream_reset",
            format!("upstream reset before response: {why}"),
        ),
        Error::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "upstream request timeout".to_owned(),
        ),
    };
    Routed::Reply(LocalReply::text(status, detail, &text), e.kind())
}
