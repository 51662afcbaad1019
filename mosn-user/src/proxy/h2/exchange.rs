//! One HTTP/2 stream through the request pipeline shared with HTTP/1 and RPC: stream
//! filters on the head, routing ([`routing`]), the upstream [`Attempt`] (breakers, load
//! balancer, tries, retries, outlier feedback, metrics), then the response forwarded as it
//! came: headers, body, trailers; a trailers-only response stays trailers-only.
//!
//! A gRPC request (by its `content-type`) gets the proxy's own errors in gRPC's form: HTTP
//! 200, trailers-only, `grpc-status` and `grpc-message`; its `grpc-timeout` bounds the
//! route's timeout; and it is counted in `mosn_grpc_requests_total`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tracing::debug;

use super::forward::{self, Forwarded};
use super::request_body::{self, ReqBody};
use super::upstream::{self, Reply, Stop, Timeouts, TryCtx};
use crate::network::PeerIdentity;
use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::metrics::{ErrorKind, GrpcMetrics, Metrics};
use crate::protocol::{Protocol, grpc};
use crate::proxy::Proxy;
use crate::proxy::attempt::{Attempt, Error, Failure};
use crate::proxy::mirror;
use crate::proxy::routing::{self, Routed};

/// Label sets of gRPC metrics one listener creates at most; calls of further services and
/// methods are counted under service and method `other`.
const MAX_GRPC_SERIES: usize = 1024;

/// Metric handles by `:path` (`/service/method`), so a hit is a lookup by `&str`.
type Series = HashMap<Box<str>, Arc<GrpcMetrics>>;

/// gRPC metric handles of one listener, by service and method.
pub(crate) struct GrpcStats {
    listener: Arc<str>,
    metrics: Arc<Metrics>,
    series: Mutex<Series>,
}

impl GrpcStats {
    pub(crate) fn new(listener: Arc<str>, metrics: Arc<Metrics>) -> GrpcStats {
        GrpcStats {
            listener,
            metrics,
            series: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, path: &str) -> Arc<GrpcMetrics> {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = series.get(path) {
            return Arc::clone(m);
        }
        let (key, (service, method)) = if series.len() >= MAX_GRPC_SERIES {
            ("other", ("other", "other"))
        } else {
            match grpc::service_method(path) {
                ("", _) => ("-", ("-", "-")),
                sm => (path, sm),
            }
        };
        let m = series
            .entry(Box::from(key))
            .or_insert_with(|| Arc::new(self.metrics.grpc(&self.listener, service, method)));
        Arc::clone(m)
    }
}

/// The downstream side of the stream.
enum Down {
    /// No response head sent yet.
    Head(SendResponse<Bytes>),
    /// The head went; body and trailers may follow.
    Body(SendStream<Bytes>),
    /// Finished (or reset).
    Done,
}

struct Exchange<'a> {
    proxy: &'a Proxy,
    head: http::request::Parts,
    body: ReqBody,
    down: Down,
    filters: Vec<Box<dyn StreamFilter>>,
    fctx: FilterContext,
    /// gRPC requests: the call's metric handles.
    grpc: Option<Arc<GrpcMetrics>>,
    /// The call's `grpc-status` as sent downstream.
    grpc_status: Option<u32>,
    /// The HTTP status sent downstream.
    status: Option<StatusCode>,
    /// Downstream reset the stream.
    reset_by_peer: bool,
    started: Instant,
}

/// Runs one stream to its end; returns whether the client reset it (the connection counts
/// those against its reset limit).
pub(super) async fn run(
    proxy: &Proxy,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: SocketAddr,
    peer_value: &HeaderValue,
    identity: Option<&Arc<PeerIdentity>>,
) -> bool {
    let m = &proxy.metrics;
    m.downstream_rq_total.inc();
    m.downstream_rq_active.inc();
    let (head, body) = req.into_parts();
    let grpc = grpc::is_grpc(&head.headers).then(|| proxy.grpc_stats.get(head.uri.path()));
    let mut x = Exchange {
        proxy,
        body: ReqBody::new(body),
        head,
        down: Down::Head(respond),
        filters: proxy.filters.create(),
        fctx: FilterContext {
            source: peer,
            listener: Arc::clone(&proxy.listener),
            identity: identity.cloned(),
            mirrors: Vec::new(),
        },
        grpc,
        grpc_status: None,
        status: None,
        reset_by_peer: false,
        started: Instant::now(),
    };
    x.serve(peer_value).await;
    x.end()
}

impl Exchange<'_> {
    async fn serve(&mut self, peer_value: &HeaderValue) {
        if let Err(r) =
            routing::request_filters(&mut self.filters, &mut self.head, &mut self.fctx).await
        {
            return self.local_reply(r, ErrorKind::Other).await;
        }
        // HTTP/2 allows `te` only as "trailers", which gRPC servers want: it stays.
        let te_trailers = self.head.headers.get(TE).is_some_and(|v| v == "trailers");
        let routed = routing::route(
            self.proxy,
            &mut self.head,
            &mut self.fctx,
            peer_value,
            false,
        );
        let (mut attempt, route_timeout) = match routed {
            Routed::Forward(a, t) => (a, t),
            Routed::Reply(r, kind) => return self.local_reply(r, kind).await,
        };
        if te_trailers {
            self.head
                .headers
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        let grpc_deadline = grpc::timeout(&self.head.headers).map(|t| self.started + t);
        let reply = match self.tries(&mut attempt, route_timeout, grpc_deadline).await {
            Ok(r) => r,
            Err(None) => return,
            Err(Some((r, kind))) => return self.local_reply(r, kind).await,
        };
        self.respond(&mut attempt, reply).await;
    }

    /// Tries until a response to forward, or the reply to give instead (`None`: nothing
    /// to answer, downstream is gone).
    async fn tries(
        &mut self,
        attempt: &mut Attempt,
        route: Option<std::time::Duration>,
        grpc_deadline: Option<Instant>,
    ) -> Result<Box<Reply>, Option<(LocalReply, ErrorKind)>> {
        let http2_up = match self.proxy.config.upstream_protocol {
            Protocol::Http1 => false,
            // "Http2", or "Auto": the upstream speaks what was detected.
            _ => true,
        };
        let mut refused_retry = false;
        loop {
            if let Err(e) = attempt.choose_host() {
                return Err(Some(error_reply(e)));
            }
            let Down::Head(respond) = &mut self.down else {
                return Err(None);
            };
            let timeouts = Timeouts {
                route,
                per_try: attempt.retry_policy().and_then(|p| p.per_try_timeout),
                grpc_deadline,
            };
            let cx = TryCtx {
                proxy: self.proxy,
                head: &self.head,
                body: &mut self.body,
                filters: &mut self.filters,
                fctx: &mut self.fctx,
                respond,
                timeouts,
            };
            let result = if http2_up {
                upstream::try_h2(cx, attempt).await
            } else {
                upstream::try_h1(cx, attempt).await
            };
            let replayable = self.body.replay.is_some();
            let failure = match result {
                Ok(reply) => {
                    let code = reply.head.status.as_u16();
                    attempt.responded(code);
                    let policy = attempt.retry_policy();
                    let grpc_code = (self.grpc.is_some() && reply.end)
                        .then(|| grpc::status_of(&reply.head.headers))
                        .flatten();
                    let reply = Box::new(reply);
                    match (policy, grpc_code) {
                        (Some(p), Some(g)) if p.retries_grpc(g) => Failure::Grpc(g, reply),
                        (Some(p), _) if p.retries_status(code) => Failure::Status(code, reply),
                        _ => return Ok(reply),
                    }
                }
                Err(Stop::Pool(e)) => match attempt.pool_failed(e) {
                    Ok(f) => f,
                    Err(e) => return Err(Some(error_reply(e))),
                },
                Err(Stop::Refused(why)) if !refused_retry && replayable => {
                    // Not processed by the server (GOAWAY, REFUSED_STREAM, a pooled
                    // connection that had just closed): once, without spending a retry.
                    debug!(%why, "upstream refused the stream; trying again");
                    refused_retry = true;
                    attempt.reset(false);
                    attempt.end_try();
                    continue;
                }
                Err(Stop::Refused(why) | Stop::Reset(why)) => {
                    attempt.reset(true);
                    Failure::Reset(why)
                }
                Err(Stop::Timeout) => {
                    attempt.timed_out();
                    Failure::Timeout
                }
                Err(Stop::Malformed(e)) => {
                    attempt.responded(502);
                    let r = LocalReply::text(
                        StatusCode::BAD_GATEWAY,
                        "upstream_malformed",
                        &format!("malformed upstream response: {e}"),
                    );
                    return Err(Some((r, ErrorKind::UpstreamReset)));
                }
                Err(Stop::Cancelled) => {
                    self.downstream_gone();
                    return Err(None);
                }
                Err(Stop::Filter(r)) => return Err(Some((r, ErrorKind::Other))),
            };
            if attempt.retry(&failure, replayable) {
                debug!(
                    failure = failure_kind(&failure),
                    retry = attempt.retries(),
                    "retrying"
                );
                continue;
            }
            return match failure.into_result() {
                Ok(reply) => Ok(reply),
                Err(e) => Err(Some(error_reply(e))),
            };
        }
    }

    /// Sends the response head (after the filters and the route's header rules), then its
    /// body and trailers.
    async fn respond(&mut self, attempt: &mut Attempt, mut reply: Box<Reply>) {
        for f in &mut self.filters {
            if let FilterStatus::Respond(r) = f.on_response_headers(&mut reply.head, &mut self.fctx)
            {
                attempt.end_try();
                return self.local_reply(r, ErrorKind::Other).await;
            }
        }
        attempt.route.apply_response(&mut reply.head);
        let Down::Head(mut respond) = std::mem::replace(&mut self.down, Down::Done) else {
            return;
        };
        let status = reply.head.status;
        if reply.end && self.grpc.is_some() {
            self.grpc_status = grpc::status_of(&reply.head.headers);
        }
        let head = Response::from_parts(
            std::mem::replace(&mut reply.head, upstream::status_head(status)),
            (),
        );
        let mut send = match respond.send_response(head, reply.end) {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "downstream stream gone before the response head");
                self.downstream_gone();
                return;
            }
        };
        self.set_status(status);
        let mut reply = *reply;
        if reply.end {
            attempt.end_try();
            let done = reply.sent.done;
            forward::release(self.proxy, reply.up, done);
            return;
        }
        let outcome = forward::forward(
            &mut reply,
            &mut send,
            &mut self.body,
            &mut self.filters,
            &mut self.fctx,
        )
        .await;
        attempt.end_try();
        match outcome {
            Forwarded::Done(g) => {
                if g.is_some() {
                    self.grpc_status = g;
                }
                let done = reply.sent.done;
                forward::release(self.proxy, reply.up, done);
            }
            Forwarded::UpstreamBroke => {
                attempt.broke_midway();
                self.proxy.metrics.errors.inc(ErrorKind::UpstreamReset);
                self.grpc_status = Some(grpc::status::UNAVAILABLE);
            }
            Forwarded::Cancelled => self.downstream_gone(),
        }
        self.down = Down::Body(send);
    }

    fn downstream_gone(&mut self) {
        self.reset_by_peer = true;
        self.grpc_status = Some(grpc::status::CANCELLED);
        self.proxy.metrics.errors.inc(ErrorKind::DownstreamReset);
        self.down = Down::Done;
    }

    fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
        self.proxy.metrics.count_status(status.as_u16());
    }

    /// The proxy's own answer: gRPC's form for a gRPC request, else a text body.
    async fn local_reply(&mut self, reply: LocalReply, kind: ErrorKind) {
        if kind != ErrorKind::Other {
            self.proxy.metrics.errors.inc(kind);
        }
        debug!(
            status = reply.status.as_u16(),
            detail = reply.detail,
            "local reply"
        );
        let respond = match std::mem::replace(&mut self.down, Down::Done) {
            Down::Head(r) => r,
            Down::Body(mut s) => {
                // A head already went out: all that is left to say is a reset.
                s.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Down::Done => return,
        };
        let mut respond = respond;
        let mut parts = upstream::status_head(reply.status);
        for f in &mut self.filters {
            let _ = f.on_response_headers(&mut parts, &mut self.fctx);
        }
        for (n, v) in &reply.headers {
            parts.headers.append(n.clone(), v.clone());
        }
        let grpc = self.grpc.is_some();
        let body = if grpc {
            let code = grpc_status_of_reply(reply.status);
            parts.status = StatusCode::OK;
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            parts.headers.insert("grpc-status", HeaderValue::from(code));
            let text = String::from_utf8_lossy(&reply.body);
            parts
                .headers
                .insert("grpc-message", grpc::message_value(text.trim_end()));
            self.grpc_status = Some(code);
            Bytes::new()
        } else {
            if !reply.body.is_empty() && !parts.headers.contains_key(CONTENT_TYPE) {
                parts
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
            if self.head.method == http::Method::HEAD {
                Bytes::new()
            } else {
                reply.body
            }
        };
        let status = parts.status;
        let end = body.is_empty();
        match respond.send_response(Response::from_parts(parts, ()), end) {
            Ok(mut s) => {
                self.set_status(status);
                if !end {
                    let _ = request_body::send_data(&mut s, body, true).await;
                }
            }
            Err(_) => self.downstream_gone(),
        }
    }

    /// Tells the filters, counts, sends mirrors; whether the client reset the stream.
    fn end(mut self) -> bool {
        let status = self.status.unwrap_or(StatusCode::BAD_GATEWAY);
        for f in &mut self.filters {
            f.on_done(status, &self.fctx);
        }
        self.proxy.metrics.downstream_rq_active.dec();
        if let Some(g) = &self.grpc {
            g.duration.observe(self.started.elapsed().as_secs_f64());
            let code = self.grpc_status.unwrap_or(if status == StatusCode::OK {
                grpc::status::OK
            } else {
                grpc::status_for_http(status.as_u16())
            });
            g.done(code);
        }
        if !self.fctx.mirrors.is_empty()
            && self.body.end
            && let Some(chunks) = self.body.replay.take()
        {
            let body: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            let kind = crate::protocol::http1::BodyKind::Length(body.len() as u64);
            mirror::send(
                self.proxy,
                &self.head,
                kind,
                Bytes::from(body),
                std::mem::take(&mut self.fctx.mirrors),
            );
        }
        self.reset_by_peer
    }
}

/// The HTTP answer to an upstream error (shared with HTTP/1).
fn error_reply(e: Error) -> (LocalReply, ErrorKind) {
    match routing::fail(e) {
        Routed::Reply(r, kind) => (r, kind),
        Routed::Forward(..) => unreachable!("an error is answered"),
    }
}

/// The `grpc-status` of a reply the proxy makes with HTTP `status`: the gRPC spec's
/// mapping, except that a rate limit (429) is RESOURCE_EXHAUSTED and a timeout (504)
/// DEADLINE_EXCEEDED, as Envoy answers them.
fn grpc_status_of_reply(status: StatusCode) -> u32 {
    match status.as_u16() {
        429 => grpc::status::RESOURCE_EXHAUSTED,
        504 => grpc::status::DEADLINE_EXCEEDED,
        503 => grpc::status::UNAVAILABLE,
        s => grpc::status_for_http(s),
    }
}

fn failure_kind<R>(f: &Failure<R>) -> &'static str {
    match f {
        Failure::Connect(_) => "connect",
        Failure::Reset(_) => "reset",
        Failure::Timeout => "timeout",
        Failure::Status(..) => "status",
        Failure::Grpc(..) => "grpc-status",
    }
}
