//! The RPC path of the L7 proxy: any [`XProtocol`] (Bolt, Dubbo), multiplexed end to end.
//!
//! Per downstream connection one task reads and decodes frames, and keeps every request it
//! has read in flight at once (a `FuturesUnordered`, no task per request): heartbeats are
//! answered here; each request is routed (on its `service` or any header), given a host by
//! the cluster's load balancer and sent on a shared multiplexed upstream connection
//! ([`crate::stream::mux`]), which rewrites its id and restores it on the response.
//! Responses are written back as they complete, in any order, batched per wake-up. Failures
//! are answered in the protocol's own format ([`XProtocol::hijack`]).
//!
//! A request's raw bytes travel untouched: only the request id is patched in place going
//! up and coming back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tracing::debug;

use super::Proxy;
use super::attempt::{Attempt, Error, Failure};
use super::{mirror, rpc_filters};
use crate::filter::{FilterContext, MirrorRequest};
use crate::metrics::{ErrorKind, Metrics, RpcMetrics};
use crate::protocol::xprotocol::{Hijack, Kind, StatusClass, XFrame, XProtocol};
use crate::stream::PoolError;
use crate::stream::mux::{CallError, MuxSettings};

/// Requests in flight on one downstream connection; reading pauses beyond it.
const MAX_IN_FLIGHT: usize = 4096;
/// Bytes of requests in flight on one downstream connection; reading pauses beyond it (one
/// frame up to `max_frame_size` is always taken), so a client flooding a slow upstream with
/// large frames holds at most this much (plus one frame) in the proxy.
const MAX_IN_FLIGHT_BYTES: usize = 8 << 20;
/// Bytes of replies waiting for a client that does not read; reading pauses beyond it.
const MAX_PENDING_WRITE: usize = 4 << 20;

/// Whether a connection may take another request.
fn has_room(requests: usize, bytes: usize, pending_write: usize) -> bool {
    requests < MAX_IN_FLIGHT && bytes < MAX_IN_FLIGHT_BYTES && pending_write < MAX_PENDING_WRITE
}
/// Distinct (service, method) label sets per listener and protocol; more are counted
/// under service and method `"other"`.
const MAX_RPC_SERIES: usize = 1024;
/// Read size of a downstream connection.
const READ_CHUNK: usize = 16 * 1024;

/// Per (protocol, service, method) metric handles of one listener, bounded in number.
pub(crate) struct RpcStats {
    listener: Arc<str>,
    metrics: Arc<Metrics>,
    series: Mutex<HashMap<Box<[u8]>, Arc<RpcMetrics>>>,
}

impl RpcStats {
    pub(crate) fn new(listener: Arc<str>, metrics: Arc<Metrics>) -> RpcStats {
        RpcStats {
            listener,
            metrics,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The handles for `frame`'s service and method. `last` is the connection's own cache of
    /// the previous request's: a connection mostly calls one service and method, and then
    /// the shared map (and its lock) is not touched.
    fn get(&self, proto: &dyn XProtocol, frame: &XFrame, last: &mut LastSeries) -> Arc<RpcMetrics> {
        let service = frame.service().unwrap_or(b"-");
        let method = frame.method().unwrap_or(b"-");
        let key = &mut last.scratch;
        key.clear();
        key.extend_from_slice(proto.name().as_bytes());
        key.push(0);
        key.extend_from_slice(service);
        key.push(0);
        key.extend_from_slice(method);
        if let Some((k, m)) = &last.entry
            && k == key
        {
            return Arc::clone(m);
        }
        let m = self.lookup(proto, service, method, key);
        last.entry = Some((key.clone(), Arc::clone(&m)));
        m
    }

    fn lookup(
        &self,
        proto: &dyn XProtocol,
        service: &[u8],
        method: &[u8],
        key: &mut Vec<u8>,
    ) -> Arc<RpcMetrics> {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = series.get(key.as_slice()) {
            return Arc::clone(m);
        }
        let (service, method, key) = if series.len() < MAX_RPC_SERIES {
            (
                String::from_utf8_lossy(service),
                String::from_utf8_lossy(method),
                key.as_slice(),
            )
        } else {
            key.clear();
            key.extend_from_slice(proto.name().as_bytes());
            key.extend_from_slice(b"\0other\0other");
            if let Some(m) = series.get(key.as_slice()) {
                return Arc::clone(m);
            }
            ("other".into(), "other".into(), key.as_slice())
        };
        let m = Arc::new(
            self.metrics
                .rpc(&self.listener, proto.name(), &service, &method),
        );
        series.insert(key.into(), Arc::clone(&m));
        m
    }
}

/// A connection's cache of the metric handles of its last (service, method).
#[derive(Default)]
pub(crate) struct LastSeries {
    /// Scratch space for the key of a lookup.
    scratch: Vec<u8>,
    entry: Option<(Vec<u8>, Arc<RpcMetrics>)>,
}

/// What one request's future yields: bytes for downstream (none for oneway requests), and
/// the size of the request (counted in flight until then).
type Reply = (Option<BytesMut>, usize);

impl Proxy {
    /// Serves one downstream connection speaking `proto`; `rbuf` holds bytes already read
    /// (protocol detection).
    pub(crate) async fn serve_rpc(
        &self,
        mut stream: crate::network::Conn,
        peer: SocketAddr,
        proto: &'static dyn XProtocol,
        mut rbuf: BytesMut,
    ) {
        let _ = stream.set_nodelay(true);
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut in_flight = FuturesUnordered::new();
        let mut last_series = LastSeries::default();
        let max_frame = self.config.max_frame_size;
        // Set once the connection is to end: no more reading; in-flight requests finish
        // and every reply is written first.
        let mut closing = false;
        let mut idle_since = Instant::now();
        // Bytes of the requests in `in_flight`.
        let mut in_flight_bytes = 0;
        loop {
            // Decode every complete frame received.
            while !closing && has_room(in_flight.len(), in_flight_bytes, wbuf.len()) {
                match proto.decode(&mut rbuf, max_frame) {
                    Ok(Some(frame)) => match frame.kind {
                        Kind::Heartbeat => wbuf.extend_from_slice(&proto.heartbeat_reply(&frame)),
                        Kind::Request | Kind::Oneway => {
                            let stats = self.rpc_stats.get(proto, &frame, &mut last_series);
                            in_flight_bytes += frame.raw.len();
                            in_flight.push(self.rpc_request(proto, frame, peer, stats));
                        }
                        Kind::Response | Kind::HeartbeatReply => {
                            debug!(id = frame.request_id, "ignoring a response from downstream");
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        debug!(error = %e, "undecodable request; closing");
                        self.metrics.errors.inc(ErrorKind::BadRequest);
                        self.metrics.downstream_rq_total.inc();
                        self.metrics.downstream_rq_4xx.inc();
                        if let Some(reply) = proto.codec_error_reply(&rbuf) {
                            wbuf.extend_from_slice(&reply);
                        }
                        rbuf.clear();
                        closing = true;
                    }
                }
            }
            // Collect every reply that is ready, then write them in one go.
            while let Some(Some((reply, size))) = in_flight.next().now_or_never() {
                in_flight_bytes -= size;
                if let Some(r) = reply {
                    wbuf.extend_from_slice(&r);
                }
            }
            while !wbuf.is_empty() {
                match stream.try_write(&wbuf) {
                    Ok(n) => {
                        let _ = wbuf.split_to(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
            // TLS: records the session still holds (always flushed for plain TCP).
            let flushed = match stream.try_flush() {
                Ok(done) => done,
                Err(_) => return,
            };
            if closing && in_flight.is_empty() && wbuf.is_empty() && flushed {
                return;
            }
            let idle = in_flight.is_empty() && wbuf.is_empty() && rbuf.is_empty();
            if !idle {
                idle_since = Instant::now();
            }
            let can_read = !closing && has_room(in_flight.len(), in_flight_bytes, wbuf.len());
            tokio::select! {
                biased;
                Some((reply, size)) = in_flight.next(), if !in_flight.is_empty() => {
                    in_flight_bytes -= size;
                    if let Some(r) = reply {
                        wbuf.extend_from_slice(&r);
                    }
                }
                w = stream.writable(), if !wbuf.is_empty() || !flushed => {
                    if w.is_err() {
                        return;
                    }
                }
                r = stream.readable(), if can_read => {
                    if r.is_err() {
                        return;
                    }
                    rbuf.reserve(READ_CHUNK);
                    match stream.try_read_buf(&mut rbuf) {
                        Ok(0) => {
                            // The client closed (or half-closed): answer what is in flight.
                            closing = true;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                // Draining: no new requests are read; those in flight are answered, then
                // the connection closes (RPC protocols have no goaway; clients reconnect).
                _ = self.shutdown.cancelled(), if !closing => closing = true,
                _ = sleep_until(self.config.idle_timeout.map(|t| idle_since + t)), if idle && !closing => {
                    self.metrics.errors.inc(ErrorKind::IdleTimeout);
                    return;
                }
            }
        }
    }

    /// One request, from routing to the bytes of its response (or of the error response
    /// built in its place).
    async fn rpc_request(
        &self,
        proto: &'static dyn XProtocol,
        frame: XFrame,
        peer: SocketAddr,
        stats: Arc<RpcMetrics>,
    ) -> Reply {
        let start = Instant::now();
        let size = frame.raw.len();
        let m = &self.metrics;
        m.downstream_rq_total.inc();
        m.downstream_rq_active.inc();
        stats.requests.inc();
        let oneway = frame.kind == Kind::Oneway;
        // Stream filters, when the listener has any, see the request first.
        let mut filters = Vec::new();
        let mut fctx = None;
        let result = if self.filters.is_empty() {
            self.rpc_forward(proto, frame, peer, Vec::new()).await
        } else {
            filters = self.filters.create();
            let ctx = fctx.insert(FilterContext {
                source: peer,
                listener: Arc::clone(&self.listener),
                mirrors: Vec::new(),
            });
            let mut frame = frame;
            match rpc_filters::on_request(&mut filters, &mut frame, ctx).await {
                Ok(()) => {
                    let mirrors = std::mem::take(&mut ctx.mirrors);
                    self.rpc_forward(proto, frame, peer, mirrors).await
                }
                Err(reply) => Err(Failed::new(
                    frame,
                    rpc_filters::hijack_of(&reply),
                    ErrorKind::Other,
                    reply.detail,
                )),
            }
        };
        m.downstream_rq_active.dec();
        // What the outcome means, for the filters' `on_done`.
        let mut outcome = StatusClass::OK;
        let reply = match result {
            Ok(None) => None,
            Ok(Some(resp)) => {
                let class = proto.status_class(resp.status);
                outcome = class;
                m.count_status(class.0);
                if !class.is_success() {
                    stats.error(resp.status);
                }
                if resp.headers_changed {
                    let mut out = BytesMut::with_capacity(resp.raw.len());
                    proto.encode(&resp, &mut out);
                    Some(out)
                } else {
                    // As received, with only the request id patched back.
                    Some(resp.raw)
                }
            }
            Err(h) => {
                m.errors.inc(h.kind);
                let status = proto.hijack_status(h.why);
                outcome = proto.status_class(status);
                m.count_status(outcome.0);
                stats.error(status);
                proto.hijack(&h.request, h.why, &h.message)
            }
        };
        if let Some(ctx) = &fctx {
            rpc_filters::on_done(&mut filters, outcome.0, ctx);
        }
        if !oneway {
            stats.duration.observe(start.elapsed().as_secs_f64());
        }
        (reply, size)
    }

    /// Routes and forwards `frame`: the response (`None` for a oneway request), or why
    /// the proxy answers itself. The way upstream is the shared [`Attempt`]; what is RPC's
    /// own: the multiplexed pool, the frame's timeout, and which failures leave the request
    /// safe to send again (not sent at all; never a reset after sending). `mirrors`: what
    /// the filters asked for; the route's mirror policies add theirs.
    async fn rpc_forward(
        &self,
        proto: &'static dyn XProtocol,
        frame: XFrame,
        peer: SocketAddr,
        mut mirrors: Vec<MirrorRequest>,
    ) -> Result<Option<XFrame>, Failed> {
        let Some(route) = self.routes.route(&frame, peer) else {
            return Err(Failed::of(frame, Error::NoRoute));
        };
        // (A route that does not forward — direct responses, redirects: HTTP only — has no
        // cluster.)
        let cluster = match Attempt::cluster(&self.clusters, route.cluster(&frame)) {
            Ok(c) => c,
            Err(e) => return Err(Failed::of(frame, e)),
        };
        // The route's own timeout if it sets one, else the frame's (Bolt's timeout field),
        // else the route's default.
        let timeout = if route.timeout_configured() {
            route.timeout()
        } else {
            frame.timeout.or(route.timeout())
        };
        let hash = route.hash(&frame, peer);
        let mut attempt = match Attempt::new(route, cluster, hash) {
            Ok(a) => a,
            Err(e) => return Err(Failed::of(frame, e)),
        };
        attempt.deadline = timeout.map(|t| Instant::now() + t);
        let deadline = attempt.deadline;
        // Whether a retry can happen at all: then the whole request is kept for it.
        let retriable = attempt.retry_policy().is_some_and(|p| {
            p.num_retries > 0 && (p.on_connect_failure || p.on_5xx || p.on_gateway_error)
        });
        let mut settings = MuxSettings::from_cluster(&attempt.cluster.config);
        settings.max_frame = self.config.max_frame_size;
        let mut frame = frame;
        attempt.route.apply_frame_request(&mut frame);
        mirror::draw(&attempt.route, &mut mirrors);
        if !mirrors.is_empty() {
            mirror::send_frame(self, proto, &frame, mirrors);
        }
        loop {
            let host = match attempt.choose_host() {
                Ok(h) => h,
                Err(e) => return Err(Failed::of(frame, e)),
            };
            let get = self.mux.get(&attempt.cluster, &host, proto, &settings);
            let got = match deadline {
                Some(d) => tokio::time::timeout_at(d, get)
                    .await
                    .unwrap_or(Err(PoolError::Timeout(host.address))),
                None => get.await,
            };
            let conn = match got {
                Ok(c) => c,
                Err(e) => match attempt.pool_failed::<Infallible>(e) {
                    Ok(failure) => {
                        // Nothing was sent: the request can go to another host.
                        if attempt.retry(&failure, true) {
                            debug!(?failure, "retrying on another host");
                            continue;
                        }
                        let Err(e) = failure.into_result();
                        return Err(Failed::of(frame, e));
                    }
                    Err(e) => return Err(Failed::of(frame, e)),
                },
            };
            attempt.begin_try();
            if frame.kind == Kind::Oneway {
                if let Err(e) = conn.send_oneway(frame).await {
                    // Nothing can be answered to a oneway request.
                    debug!(error = %e, "oneway request lost");
                    attempt.reset(false);
                }
                return Ok(None);
            }
            // What an error response needs of the request once it is handed upstream: its
            // head; the whole request while a retry is possible.
            let copy = if retriable {
                frame.clone()
            } else {
                frame.head_copy()
            };
            let call = conn.call(frame);
            let result = match deadline {
                Some(d) => match tokio::time::timeout_at(d, call).await {
                    Ok(r) => r,
                    Err(_) => {
                        attempt.timed_out();
                        return Err(Failed::of(copy, Error::Timeout));
                    }
                },
                None => call.await,
            };
            match result {
                Ok(mut resp) => {
                    attempt.route.apply_frame_response(&mut resp);
                    attempt.responded(proto.status_class(resp.status).0);
                    return Ok(Some(resp));
                }
                Err(CallError::NotSent(why)) => {
                    let failure = Failure::<Infallible>::Reset(why);
                    if attempt.retry(&failure, true) {
                        debug!(?failure, "retrying on another host");
                        frame = copy;
                        continue;
                    }
                    attempt.reset(true);
                    let Err(e) = failure.into_result();
                    return Err(Failed::of(copy, e));
                }
                // The request may have been processed: never sent again.
                Err(CallError::Reset(why)) => {
                    attempt.reset(true);
                    return Err(Failed::of(copy, Error::Reset(why)));
                }
            }
        }
    }
}

/// A request the proxy answers itself.
struct Failed {
    /// The request (or as much of it as the error response needs: its header).
    request: XFrame,
    why: Hijack,
    kind: ErrorKind,
    message: String,
}

impl Failed {
    /// The proxy's answer to `e`, in RPC terms.
    fn of(request: XFrame, e: Error) -> Failed {
        let (why, message) = match &e {
            Error::NoRoute => (Hijack::NoRoute, "no route"),
            Error::NoCluster => (Hijack::NoRoute, "no cluster for the route"),
            Error::Overflow => (Hijack::Overflow, "upstream overflow: circuit breaker open"),
            Error::NoHealthyHost => (Hijack::NoHealthyHost, "no healthy upstream"),
            Error::Connect(why) => (Hijack::NoHealthyHost, why.as_str()),
            Error::Timeout => (Hijack::Timeout, "upstream timeout"),
            Error::Reset(why) => (Hijack::UpstreamReset, why.as_str()),
        };
        Failed::new(request, why, e.kind(), message)
    }

    fn new(request: XFrame, why: Hijack, kind: ErrorKind, message: &str) -> Failed {
        Failed {
            request,
            why,
            kind,
            message: message.to_owned(),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
