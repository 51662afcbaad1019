//! One request through the proxy: an explicit state machine, one method per [`Phase`].
//!
//! ```text
//!  RequestFilters ──► Route ──► ChooseHost ──► UpstreamRequest ──► ResponseFilters ──► StreamResponse ──► End
//!        │              │           │  ▲           │      │               │                                ▲
//!        │              │           │  └── Retry ◄─┘      └─► Upgrade ────┼────────────────────────────────┤
//!        └──────────────┴───────────┴───────────┴─────────────► LocalReply ───────────────────────────────┘
//! ```
//! (`docs/ARCHITECTURE.md` has the full chart and what each phase does.)

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::HOST;
use http::{HeaderValue, Method, StatusCode, Version};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::debug;

use super::attempt::{self, Attempt, Error};
use super::body::{
    PumpError, RequestBody, ResponseBody, ResponseError, ResponseWire, pump_step, response_step,
    wires,
};
use super::headers;
use super::mirror;
use super::routing::{self, Routed};
use super::{Downstream, Proxy};
use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::metrics::ErrorKind;
use crate::protocol::http1::{BodyKind, Frame, RequestHead, ResponseHead, encode};
use crate::protocol::{DecodeError, Decoder};
use crate::stream::UpstreamConn;

mod h2_upstream;

/// Where a request is.
#[derive(Debug)]
pub enum Phase {
    /// Stream filters see the request head (may answer, delay or change it).
    RequestFilters,
    /// The router picks the route; direct responses and redirects answer here.
    Route,
    /// The circuit breaker admits the request and the load balancer picks a host.
    ChooseHost,
    /// Connect (or reuse), send the request, wait for the response head.
    UpstreamRequest,
    /// A try failed: try another host if the retry policy allows, else answer.
    Retry(Failure),
    /// Stream filters and the route see the response head; it is encoded.
    ResponseFilters(Box<ResponseHead>),
    /// The response body flows to downstream (and any remaining request body upstream).
    StreamResponse,
    /// A 101 answered an upgrade request: bytes flow both ways untouched.
    Upgrade,
    /// The proxy answers by itself.
    LocalReply(LocalReply, ErrorKind),
    /// Done: filters told, metrics counted, the upstream connection pooled or closed.
    End,
}

/// Why a try failed; a retriable response is kept (and its connection) in case no retry
/// happens and it is forwarded.
pub type Failure = attempt::Failure<Box<ResponseHead>>;

/// The proxy's own answer to `e`.
fn fail(e: Error) -> Phase {
    match routing::fail(e) {
        Routed::Reply(r, kind) => Phase::LocalReply(r, kind),
        Routed::Forward(..) => unreachable!("an error is answered"),
    }
}

/// One request's state across its phases.
pub(crate) struct Exchange<'a> {
    proxy: &'a Proxy,
    down: &'a mut Downstream,
    head: http::request::Parts,
    req_kind: BodyKind,
    /// The downstream stays open after this exchange.
    keep_alive: bool,
    upgrade: bool,
    filters: Vec<Box<dyn StreamFilter>>,
    fctx: FilterContext,
    /// The routed request's way upstream (cluster, breakers, hosts, tries, retries). Its
    /// deadline is the route's timeout, counted (as Envoy does) from when the whole request
    /// has been received, so a long upload is not cut short; armed then.
    attempt: Option<Attempt>,
    stale_retry_used: bool,
    route_timeout: Option<std::time::Duration>,
    body: RequestBody,
    /// The request head as sent upstream (encoded once, sent again on retries).
    upstream_head: Bytes,
    upstream: Option<UpstreamConn>,
    /// The try's HTTP/2 stream, when the upstream speaks HTTP/2.
    h2: Option<h2_upstream::H2Up>,
    /// The client asked for trailers (`TE: trailers`): an HTTP/2 upstream's are passed on.
    client_trailers: bool,
    response: Option<ResponseBody>,
    /// The status sent downstream (once a head is written).
    status: Option<StatusCode>,
    /// The upstream keeps its connection open after this response.
    upstream_keep: bool,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(
        proxy: &'a Proxy,
        down: &'a mut Downstream,
        head: RequestHead,
    ) -> Exchange<'a> {
        // An HTTP/2 upstream gets the body without HTTP/1 framing, and no upgrade.
        let h2_up = proxy.config.upstream_protocol == crate::protocol::Protocol::Http2;
        let chunked = head.body == BodyKind::Chunked && !h2_up;
        let client_trailers = head
            .parts
            .headers
            .get_all(http::header::TE)
            .iter()
            .any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
            });
        let fctx = FilterContext {
            source: down.peer,
            listener: Arc::clone(&proxy.listener),
            identity: down.stream.identity().cloned(),
            mirrors: Vec::new(),
        };
        Exchange {
            proxy,
            filters: proxy.filters.create(),
            fctx,
            body: RequestBody::new(chunked),
            req_kind: head.body,
            keep_alive: head.keep_alive,
            upgrade: head.upgrade && !h2_up,
            head: head.parts,
            down,
            attempt: None,
            stale_retry_used: false,
            route_timeout: None,
            upstream_head: Bytes::new(),
            upstream: None,
            h2: None,
            client_trailers,
            response: None,
            status: None,
            upstream_keep: false,
        }
    }

    /// Runs the request to its end. Returns whether the downstream connection stays open.
    pub async fn run(mut self) -> bool {
        let m = &self.proxy.metrics;
        m.downstream_rq_total.inc();
        m.downstream_rq_active.inc();
        let mut phase = Phase::RequestFilters;
        loop {
            phase = match phase {
                Phase::RequestFilters => self.request_filters().await,
                Phase::Route => self.route(),
                Phase::ChooseHost => self.choose_host(),
                Phase::UpstreamRequest => self.upstream_request().await,
                Phase::Retry(f) => self.retry(f),
                Phase::ResponseFilters(h) => self.response_filters(*h),
                Phase::StreamResponse => self.stream_response().await,
                Phase::Upgrade => self.tunnel().await,
                Phase::LocalReply(r, kind) => self.local_reply(r, kind).await,
                Phase::End => break,
            };
        }
        self.end()
    }

    async fn request_filters(&mut self) -> Phase {
        match routing::request_filters(&mut self.filters, &mut self.head, &mut self.fctx).await {
            Ok(()) => Phase::Route,
            Err(r) => Phase::LocalReply(r, ErrorKind::Other),
        }
    }

    fn route(&mut self) -> Phase {
        let routed = routing::route(
            self.proxy,
            &mut self.head,
            &mut self.fctx,
            &self.down.peer_value,
            self.upgrade,
        );
        match routed {
            Routed::Forward(attempt, timeout) => {
                let mut out = BytesMut::with_capacity(256);
                encode_request_head(&self.head, self.req_kind, &mut out);
                self.upstream_head = out.freeze();
                self.route_timeout = timeout;
                self.attempt = Some(attempt);
                Phase::ChooseHost
            }
            Routed::Reply(r, kind) => Phase::LocalReply(r, kind),
        }
    }

    fn choose_host(&mut self) -> Phase {
        match self.attempt.as_mut().expect("routed").choose_host() {
            Ok(_) => Phase::UpstreamRequest,
            Err(e) => fail(e),
        }
    }

    async fn upstream_request(&mut self) -> Phase {
        if self.h2_upstream() {
            return self.upstream_request_h2().await;
        }
        let attempt = self.attempt.as_mut().expect("routed");
        let cluster = Arc::clone(&attempt.cluster);
        let host = Arc::clone(attempt.host());
        let max_header = self.proxy.config.max_request_header_bytes;
        let mut conn = match self
            .proxy
            .pools
            .acquire(
                &cluster,
                &host,
                self.route_timeout.map(|t| Instant::now() + t),
                max_header.max(64 * 1024),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return match self.attempt.as_mut().expect("routed").pool_failed(e) {
                    Ok(f) => Phase::Retry(f),
                    Err(e) => fail(e),
                };
            }
        };
        conn.decoder.expect(&self.head.method);
        let attempt = self.attempt.as_mut().expect("routed");
        attempt.begin_try();

        // The head, then whatever body was kept (a retry) or is already here.
        let body = &mut self.body;
        let mut out = BytesMut::with_capacity(self.upstream_head.len() + body.out.len());
        out.extend_from_slice(&self.upstream_head);
        if let Some(r) = &body.replay {
            out.extend_from_slice(r);
        }
        if let Err(e) = self.start_body(out) {
            self.upstream = Some(conn);
            return self.pump_failed(e);
        }

        let reused = conn.reused;
        let result = {
            let (mut req, mut resp_w) = wires(self.down, &mut conn);
            let body = &mut self.body;
            let filters = &mut self.filters;
            let fctx = &mut self.fctx;
            // The deadline of this try once the request is complete: the route's (fixed the
            // first time the request completes), or the per-try timeout if sooner.
            let route_timeout = self.route_timeout;
            let attempt = self.attempt.as_mut().expect("routed");
            let per_try = attempt.retry_policy().and_then(|p| p.per_try_timeout);
            let route_deadline = &mut attempt.deadline;
            let mut arm = || -> Option<Instant> {
                if route_deadline.is_none() {
                    *route_deadline = route_timeout.map(|t| Instant::now() + t);
                }
                let try_deadline = per_try.map(|t| Instant::now() + t);
                match (*route_deadline, try_deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            // The timeout runs from when the request is complete (now, for most).
            let complete_at = |body: &RequestBody| !body.active() || body.broken;
            let far = Instant::now() + std::time::Duration::from_secs(86400 * 365);
            let mut armed = complete_at(body);
            let first = if armed { arm() } else { None };
            let timer = tokio::time::sleep_until(first.unwrap_or(far));
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    r = pump_step(body, &mut req, filters, fctx), if body.active() => {
                        match r {
                            Ok(()) => {}
                            Err(PumpError::Upstream(e)) => {
                                // Upstream stopped reading; it may still answer.
                                debug!(error = %e, "upstream stopped reading the request");
                                body.broken = true;
                            }
                            Err(e) => break Err(HeadError::Pump(e)),
                        }
                        if !armed && complete_at(body) {
                            armed = true;
                            if let Some(d) = arm() {
                                timer.as_mut().reset(d);
                            }
                        }
                    }
                    h = read_head(&mut resp_w) => {
                        let h = match h {
                            Ok(h) => h,
                            Err(e) => break Err(e),
                        };
                        if h.parts.status.is_informational() && h.parts.status != StatusCode::SWITCHING_PROTOCOLS {
                            // 100 Continue and friends go straight to the client.
                            let w = &mut resp_w;
                            w.wbuf.clear();
                            encode::response_head(Version::HTTP_11, h.parts.status, &h.parts.headers, BodyKind::Empty, true, w.wbuf);
                            if let Err(e) = w.down.write_all(w.wbuf).await {
                                break Err(HeadError::Pump(PumpError::Downstream(e)));
                            }
                            w.wbuf.clear();
                            continue;
                        }
                        break Ok(h);
                    }
                    () = &mut timer => break Err(HeadError::Timeout),
                }
            }
        };
        self.upstream = Some(conn);
        let attempt = self.attempt.as_mut().expect("routed");
        match result {
            Ok(head) => {
                let code = head.parts.status.as_u16();
                attempt.responded(code);
                let retriable = attempt
                    .retry_policy()
                    .is_some_and(|p| p.retries_status(code));
                if retriable {
                    Phase::Retry(Failure::Status(code, Box::new(head)))
                } else {
                    Phase::ResponseFilters(Box::new(head))
                }
            }
            Err(HeadError::Timeout) => {
                attempt.timed_out();
                self.upstream = None;
                Phase::Retry(Failure::Timeout)
            }
            Err(HeadError::Reset(why)) => {
                self.upstream = None;
                if reused && !self.stale_retry_used && self.body.replay.is_some() {
                    // A pooled connection the server closed just as we sent: once, try a
                    // fresh one without spending a retry (or blaming the host).
                    self.stale_retry_used = true;
                    attempt.reset(false);
                    attempt.end_try();
                    return Phase::ChooseHost;
                }
                attempt.reset(true);
                Phase::Retry(Failure::Reset(why))
            }
            Err(HeadError::Malformed(e)) => {
                attempt.responded(502);
                self.upstream = None;
                Phase::LocalReply(
                    LocalReply::text(
                        StatusCode::BAD_GATEWAY,
                        "upstream_malformed",
                        &format!("malformed upstream response: {e}"),
                    ),
                    ErrorKind::UpstreamReset,
                )
            }
            Err(HeadError::Pump(e)) => self.pump_failed(e),
        }
    }

    /// A try's first bytes: `out` (the head, then what earlier tries sent), then whatever
    /// body is already buffered.
    fn start_body(&mut self, out: BytesMut) -> Result<(), PumpError> {
        let body = &mut self.body;
        body.out = out;
        body.broken = false;
        if !body.done {
            body.feed(
                &mut self.down.rbuf,
                &mut self.down.decoder,
                &mut self.filters,
                &mut self.fctx,
            )?;
        }
        Ok(())
    }

    /// The request body could not be moved: answer (400, a filter's reply) or give up.
    fn pump_failed(&mut self, e: PumpError) -> Phase {
        self.upstream = None;
        self.keep_alive = false;
        match e {
            PumpError::Decode(d) => Phase::LocalReply(decode_reply(&d), ErrorKind::BadRequest),
            PumpError::Filter(r) => Phase::LocalReply(r, ErrorKind::Other),
            PumpError::Downstream(err) => {
                debug!(error = %err, "downstream went away mid-request");
                self.proxy.metrics.errors.inc(ErrorKind::DownstreamReset);
                Phase::End
            }
            PumpError::Upstream(err) => Phase::Retry(Failure::Reset(err.to_string())),
        }
    }

    /// Ends the current try's accounting.
    fn end_try(&mut self) {
        if let Some(a) = &mut self.attempt {
            a.end_try();
        }
    }

    /// Another try if the attempt allows one (the body can be sent again while it is kept
    /// for replay), else the proxy's answer or the retriable response as it is.
    fn retry(&mut self, failure: Failure) -> Phase {
        let replayable = self.body.replay.is_some();
        let attempt = self.attempt.as_mut().expect("routed");
        if attempt.retry(&failure, replayable) {
            self.upstream = None;
            debug!(
                ?failure,
                retry = attempt.retries(),
                "retrying on another host"
            );
            return Phase::ChooseHost;
        }
        match failure.into_result() {
            Ok(head) => Phase::ResponseFilters(head),
            Err(e) => fail(e),
        }
    }

    fn response_filters(&mut self, head: ResponseHead) -> Phase {
        let mut parts = head.parts;
        for f in &mut self.filters {
            if let FilterStatus::Respond(r) = f.on_response_headers(&mut parts, &mut self.fctx) {
                self.upstream = None;
                return Phase::LocalReply(r, ErrorKind::Other);
            }
        }
        if let Some(a) = &self.attempt {
            a.route.apply_response(&mut parts);
        }
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let upgrade = switching && self.upgrade;
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        let down_11 = self.head.version == Version::HTTP_11;
        let (kind, keep_length) = match head.body {
            BodyKind::Empty => (BodyKind::Empty, true),
            BodyKind::Length(n) => (BodyKind::Length(n), false),
            BodyKind::Chunked | BodyKind::CloseDelimited if down_11 => (BodyKind::Chunked, false),
            BodyKind::Chunked | BodyKind::CloseDelimited => {
                // An HTTP/1.0 client cannot read chunks: the body ends with the connection.
                self.keep_alive = false;
                (BodyKind::CloseDelimited, false)
            }
        };
        if switching && !upgrade {
            return Phase::LocalReply(
                LocalReply::text(
                    StatusCode::BAD_GATEWAY,
                    "upstream_malformed",
                    "unexpected 101 from upstream",
                ),
                ErrorKind::UpstreamReset,
            );
        }
        if !upgrade {
            if !self.keep_alive {
                parts
                    .headers
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            } else if !down_11 {
                parts.headers.insert(
                    http::header::CONNECTION,
                    HeaderValue::from_static("keep-alive"),
                );
            }
        }
        let wbuf = &mut self.down.wbuf;
        encode::response_head(
            Version::HTTP_11,
            parts.status,
            &parts.headers,
            kind,
            keep_length,
            wbuf,
        );
        self.set_status(parts.status);
        if upgrade {
            return Phase::Upgrade;
        }
        if !head.keep_alive {
            // The upstream closes after this response: do not pool it.
            if let Some(c) = &mut self.upstream {
                c.reused = false;
            }
        }
        self.response = Some(ResponseBody {
            chunked: kind == BodyKind::Chunked,
            done: false,
        });
        self.upstream_keep = head.keep_alive;
        Phase::StreamResponse
    }

    fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
        self.proxy.metrics.count_status(status.as_u16());
    }

    async fn stream_response(&mut self) -> Phase {
        if self.h2.is_some() {
            return self.stream_response_h2().await;
        }
        let mut conn = self
            .upstream
            .take()
            .expect("a response comes from a connection");
        let mut resp = self.response.take().expect("response filters ran");
        let result = {
            let (mut req, mut resp_w) = wires(self.down, &mut conn);
            let body = &mut self.body;
            let filters = &mut self.filters;
            let fctx = &mut self.fctx;
            loop {
                if resp.finished(resp_w.wbuf) {
                    break Ok(());
                }
                tokio::select! {
                    r = pump_step(body, &mut req, filters, fctx), if body.active() => {
                        if let Err(e) = r {
                            debug!(?e, "request body stopped while the response flows");
                            body.broken = true;
                        }
                    }
                    r = response_step(&mut resp, &mut resp_w) => {
                        if let Err(e) = r {
                            break Err(e);
                        }
                    }
                }
            }
        };
        self.end_try();
        match result {
            Ok(()) => {
                let request_done = self.body.done && self.body.out.is_empty() && !self.body.broken;
                if !request_done {
                    // The upstream answered before reading the whole request: neither
                    // connection is in step any more.
                    self.keep_alive = false;
                } else if self.upstream_keep {
                    self.proxy.pools.release(conn);
                }
            }
            Err(ResponseError::Upstream(why)) => self.upstream_broke_midway(&why),
            Err(ResponseError::Downstream(e)) => self.downstream_gone_midway(&e),
        }
        Phase::End
    }

    /// The upstream broke after the response head went downstream: counted, and the
    /// downstream closes (it cannot be told otherwise).
    fn upstream_broke_midway(&mut self, why: &str) {
        debug!(%why, "upstream broke mid-response; closing the downstream");
        if let Some(a) = &self.attempt {
            a.broke_midway();
        }
        self.proxy.metrics.errors.inc(ErrorKind::UpstreamReset);
        self.keep_alive = false;
    }

    /// The downstream went away mid-response.
    fn downstream_gone_midway(&mut self, e: &std::io::Error) {
        debug!(error = %e, "downstream went away mid-response");
        self.proxy.metrics.errors.inc(ErrorKind::DownstreamReset);
        self.keep_alive = false;
    }

    /// After a 101: the written head, leftovers both ways, then a byte tunnel until both
    /// sides are done.
    async fn tunnel(&mut self) -> Phase {
        self.keep_alive = false;
        let Some(mut conn) = self.upstream.take() else {
            return Phase::End;
        };
        self.end_try();
        let down = &mut *self.down;
        let mut first = std::mem::take(&mut down.wbuf);
        first.extend_from_slice(&conn.buf);
        conn.buf.clear();
        if down.stream.write_all(&first).await.is_err() {
            return Phase::End;
        }
        if !down.rbuf.is_empty() {
            if conn.stream.write_all(&down.rbuf).await.is_err() {
                return Phase::End;
            }
            down.rbuf.clear();
        }
        match tokio::io::copy_bidirectional(&mut down.stream, &mut conn.stream).await {
            Ok((up, back)) => debug!(up, back, "upgraded connection closed"),
            Err(e) => debug!(error = %e, "upgraded connection broke"),
        }
        Phase::End
    }

    async fn local_reply(&mut self, reply: LocalReply, kind: ErrorKind) -> Phase {
        self.end_try();
        self.upstream = None;
        self.h2 = None;
        if kind != ErrorKind::Other {
            self.proxy.metrics.errors.inc(kind);
        }
        if self.status.is_some() {
            // A head already went out: nothing else can be said on this connection.
            self.keep_alive = false;
            return Phase::End;
        }
        if !self.body.done {
            if self.req_kind.is_empty() {
                // The decoder still holds the (empty) body's end: take it, so the next
                // request's head comes next.
                match self.down.decoder.decode(&mut self.down.rbuf) {
                    Ok(Some(Frame::End { .. })) => self.body.done = true,
                    _ => self.keep_alive = false,
                }
            } else {
                // The rest of the request body is still on the wire.
                self.keep_alive = false;
            }
        }
        debug!(
            status = reply.status.as_u16(),
            detail = reply.detail,
            "local reply"
        );
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = reply.status;
        for f in &mut self.filters {
            let _ = f.on_response_headers(&mut parts, &mut self.fctx);
        }
        let mut reply = reply;
        for (n, v) in &parts.headers {
            reply.headers.push((n.clone(), v.clone()));
        }
        let down = &mut *self.down;
        down.wbuf.clear();
        headers::local_reply(
            &reply,
            Version::HTTP_11,
            self.head.method == Method::HEAD,
            !self.keep_alive,
            &mut down.wbuf,
        );
        self.set_status(reply.status);
        let down = &mut *self.down;
        if down.stream.write_all(&down.wbuf).await.is_err() {
            self.keep_alive = false;
        }
        down.wbuf.clear();
        Phase::End
    }

    /// Tells the filters, counts, sends mirrors; returns whether the downstream stays open.
    fn end(mut self) -> bool {
        self.end_try();
        let status = self.status.unwrap_or(StatusCode::BAD_GATEWAY);
        for f in &mut self.filters {
            f.on_done(status, &self.fctx);
        }
        self.proxy.metrics.downstream_rq_active.dec();
        if !self.fctx.mirrors.is_empty()
            && self.body.done
            && let Some(body) = self.body.replay.take()
        {
            mirror::send(
                self.proxy,
                &self.head,
                self.req_kind,
                body.freeze(),
                std::mem::take(&mut self.fctx.mirrors),
            );
        }
        self.keep_alive && self.status.is_some()
    }
}

/// Why no response head arrived.
enum HeadError {
    Timeout,
    Reset(String),
    Malformed(DecodeError),
    Pump(PumpError),
}

/// Reads until a response head is decoded. Cancel-safe: progress stays in `ubuf`.
async fn read_head(w: &mut ResponseWire<'_>) -> Result<ResponseHead, HeadError> {
    let ResponseWire {
        up, ubuf, decoder, ..
    } = w;
    use tokio::io::AsyncReadExt;
    loop {
        match decoder.decode(ubuf) {
            Ok(Some(Frame::Head(h))) => return Ok(h),
            Ok(Some(_)) => {
                return Err(HeadError::Malformed(DecodeError::malformed(
                    "response",
                    "body before head",
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(HeadError::Malformed(e)),
        }
        ubuf.reserve(super::body::READ_CHUNK);
        match up.read_buf(ubuf).await {
            Ok(0) => return Err(HeadError::Reset("connection closed".into())),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Reset(e.to_string())),
        }
    }
}

/// Encodes the request head for upstream: origin-form target, HTTP/1.1.
pub(super) fn encode_request_head(head: &http::request::Parts, kind: BodyKind, dst: &mut BytesMut) {
    // An absolute-form target without a path (`http://h?q`) is `/?q` in origin form.
    let with_root;
    let target = match head.uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/",
        Some(p) if p.starts_with('?') => {
            with_root = format!("/{p}");
            &with_root
        }
        Some(p) => p,
    };
    let mut headers_ref = &head.headers;
    let owned;
    if !head.headers.contains_key(HOST)
        && let Some(a) = head.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        // An absolute-form target carries the host: make it the Host header.
        let mut h = head.headers.clone();
        h.insert(HOST, v);
        owned = h;
        headers_ref = &owned;
    }
    encode::request_head(&head.method, target, headers_ref, kind, dst);
}

/// The response to a request that could not be decoded.
pub(super) fn decode_reply(e: &DecodeError) -> LocalReply {
    match e {
        DecodeError::HeaderTooLarge { .. } => LocalReply::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
            &e.to_string(),
        ),
        DecodeError::Unsupported(_) => LocalReply::text(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            &e.to_string(),
        ),
        DecodeError::Malformed { .. } | DecodeError::FrameTooLarge { .. } => {
            LocalReply::text(StatusCode::BAD_REQUEST, "bad_request", &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_line(target: &str) -> String {
        let req = http::Request::get(target).body(()).expect("valid request");
        let (parts, ()) = req.into_parts();
        let mut out = BytesMut::new();
        encode_request_head(&parts, BodyKind::Empty, &mut out);
        let text = String::from_utf8(out.to_vec()).expect("ASCII head");
        text.lines().next().unwrap_or_default().to_owned()
    }

    /// Found by fuzzing: an absolute-form target without a path went upstream as `GET ?q`.
    #[test]
    fn origin_form_targets() {
        assert_eq!(head_line("http://example.com?q=1"), "GET /?q=1 HTTP/1.1");
        assert_eq!(head_line("http://example.com"), "GET / HTTP/1.1");
        assert_eq!(head_line("http://example.com/a?b"), "GET /a?b HTTP/1.1");
        assert_eq!(head_line("/x"), "GET /x HTTP/1.1");
    }
}
