//! One try of an HTTP/2 downstream stream against its upstream, HTTP/2 (a stream on the
//! multiplexed pool) or HTTP/1 (a connection of the ping-pong pool), and the forwarding of
//! the response. Bodies move as `Bytes` (never copied) under flow control both ways: a
//! downstream DATA frame's window is given back only once the upstream took the data, and
//! an upstream one's only once downstream did, so a slow reader on either side stops its
//! peer instead of filling the proxy.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;
use tracing::debug;

use super::outbox::Outbox;
use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::protocol::http1::{BodyKind, Frame, ResponseHead, encode};
use crate::protocol::{DecodeError, Decoder};
use crate::proxy::Proxy;
use crate::proxy::attempt::Attempt;
use crate::proxy::body::{READ_CHUNK, REPLAY_LIMIT};
use crate::proxy::phase::encode_request_head;
use crate::stream::{H2Settings, H2Stream, PoolError, UpstreamConn};

/// The downstream request body, and what of it is kept to send again on a retry.
pub(super) struct ReqBody {
    pub src: RecvStream,
    /// Everything (data and trailers) has been received from downstream.
    pub end: bool,
    /// Every chunk received so far, while their total is at most [`REPLAY_LIMIT`]; `None`
    /// once more was received (no retry then).
    pub replay: Option<Vec<Bytes>>,
    kept: usize,
    pub trailers: Option<HeaderMap>,
}

impl ReqBody {
    pub fn new(src: RecvStream) -> ReqBody {
        ReqBody {
            end: src.is_end_stream(),
            src,
            replay: Some(Vec::new()),
            kept: 0,
            trailers: None,
        }
    }

    /// The request has no body at all.
    pub fn empty(&self) -> bool {
        self.end && self.trailers.is_none() && self.replay.as_ref().is_some_and(Vec::is_empty)
    }
}

/// How far one try has sent the request body, and what of it waits to go out. Every await
/// of [`pump`] is cancel-safe: what waits lives here.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// Chunks of the replay buffer already queued on this try.
    pos: usize,
    /// The whole body went (or the try stopped sending).
    pub done: bool,
    /// The last thing queued ends the body.
    ending: bool,
    /// HTTP/2 upstream: data waiting for the stream's window.
    out: Outbox,
    /// HTTP/1 upstream: encoded bytes not written yet, and the downstream window to give
    /// back once they are.
    h1: BytesMut,
    h1_release: usize,
}

impl Sent {
    /// A try whose request has no body: nothing to send.
    pub fn nothing(empty: bool) -> Sent {
        Sent {
            done: empty,
            ..Sent::default()
        }
    }
}

/// Why a request body could not be moved.
pub(super) enum PumpError {
    /// Downstream reset its stream (or the connection broke).
    Downstream,
    /// A stream filter answered.
    Filter(LocalReply),
    /// Upstream stopped taking the body (it may still answer).
    Upstream(String),
}

/// Where a try sends the request body.
pub(super) enum Sink<'a> {
    H2(&'a mut SendStream<Bytes>),
    H1 { w: WriteHalf<'a>, chunked: bool },
}

/// One step of the request body towards `sink`: write what waits, else take the next piece
/// (from the replay buffer, else from downstream) and queue it.
pub(super) async fn pump(
    body: &mut ReqBody,
    sent: &mut Sent,
    sink: &mut Sink<'_>,
    filters: &mut [Box<dyn StreamFilter>],
    fctx: &mut FilterContext,
) -> Result<(), PumpError> {
    let upstream = |e: String| PumpError::Upstream(e);
    match sink {
        Sink::H2(s) if !sent.out.is_empty() => {
            let release = sent
                .out
                .flush(s)
                .await
                .map_err(|e| upstream(e.to_string()))?;
            // Only now that upstream took it may downstream send more.
            let _ = body.src.flow_control().release_capacity(release);
            sent.done = sent.ending;
            return Ok(());
        }
        Sink::H1 { w, .. } if !sent.h1.is_empty() => {
            w.write_buf(&mut sent.h1)
                .await
                .map_err(|e| upstream(e.to_string()))?;
            if sent.h1.is_empty() {
                let release = std::mem::take(&mut sent.h1_release);
                let _ = body.src.flow_control().release_capacity(release);
                sent.done = sent.ending;
            }
            return Ok(());
        }
        _ => {}
    }
    if sent.ending {
        sent.done = true;
        return Ok(());
    }
    if let Some(replay) = &body.replay
        && sent.pos < replay.len()
    {
        let chunk = replay[sent.pos].clone();
        sent.pos += 1;
        let last = body.end && body.trailers.is_none() && sent.pos == replay.len();
        queue(sent, sink, chunk, last, 0);
        return Ok(());
    }
    if body.end {
        return queue_end(sent, sink, body.trailers.as_ref()).map_err(upstream);
    }
    match body.src.data().await {
        Some(Ok(chunk)) => {
            let len = chunk.len();
            let end = body.src.is_end_stream();
            for f in filters.iter_mut() {
                if let FilterStatus::Respond(r) = f.on_request_data(&chunk, end, fctx) {
                    return Err(PumpError::Filter(r));
                }
            }
            if let Some(r) = &mut body.replay {
                if body.kept + len <= REPLAY_LIMIT {
                    body.kept += len;
                    r.push(chunk.clone());
                    sent.pos += 1;
                } else {
                    body.replay = None;
                }
            }
            body.end = end;
            queue(sent, sink, chunk, end, len);
            Ok(())
        }
        Some(Err(e)) => {
            debug!(error = %e, "downstream request body broke");
            Err(PumpError::Downstream)
        }
        None => {
            body.trailers = match poll_fn(|cx| body.src.poll_trailers(cx)).await {
                Ok(t) => t,
                Err(_) => return Err(PumpError::Downstream),
            };
            body.end = true;
            if body.trailers.is_none() {
                for f in filters.iter_mut() {
                    if let FilterStatus::Respond(r) = f.on_request_data(&[], true, fctx) {
                        return Err(PumpError::Filter(r));
                    }
                }
            }
            queue_end(sent, sink, body.trailers.as_ref()).map_err(upstream)
        }
    }
}

/// Queues a piece of the body (`end`: the last); `release` is the downstream window it
/// stands for.
fn queue(sent: &mut Sent, sink: &Sink<'_>, data: Bytes, end: bool, release: usize) {
    match sink {
        Sink::H2(_) => sent.out.put(data, end, release),
        Sink::H1 { chunked, .. } => {
            encode::data(*chunked, &data, &mut sent.h1);
            if end {
                encode::end(*chunked, b"", &mut sent.h1);
            }
            sent.h1_release = release;
            if sent.h1.is_empty() {
                // An empty piece: nothing to write, the window goes back at once.
                sent.done = end;
            }
        }
    }
    sent.ending = end;
}

/// Queues the end of the body: the trailers (HTTP/2 at once; HTTP/1 chunked as trailer
/// lines) or an empty END_STREAM.
fn queue_end(
    sent: &mut Sent,
    sink: &mut Sink<'_>,
    trailers: Option<&HeaderMap>,
) -> Result<(), String> {
    sent.ending = true;
    match sink {
        Sink::H2(s) => match trailers {
            Some(t) => {
                s.send_trailers(t.clone()).map_err(|e| e.to_string())?;
                sent.done = true;
            }
            None => sent.out.put(Bytes::new(), true, 0),
        },
        Sink::H1 { chunked: true, .. } => {
            let lines = trailers.map(trailer_lines).unwrap_or_default();
            encode::end(true, &lines, &mut sent.h1);
        }
        Sink::H1 { .. } => sent.done = true,
    }
    Ok(())
}

/// Sends `data` on an HTTP/2 stream as the peer's window allows.
pub(in crate::proxy) async fn send_data(
    s: &mut SendStream<Bytes>,
    data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    Outbox::send(s, data, end).await
}

/// Trailer fields as HTTP/1 chunked-body trailer lines.
pub(in crate::proxy) fn trailer_lines(t: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in t {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// HTTP/1 trailer lines (`name: value\r\n`...) as fields; lines that do not parse are
/// dropped.
fn parse_trailers(raw: &[u8]) -> HeaderMap {
    let mut t = HeaderMap::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            t.append(n, v);
        }
    }
    t
}

/// An upstream that answered: its response head and how the rest of it arrives.
pub(super) struct Reply {
    pub head: http::response::Parts,
    /// No body or trailers follow (an HTTP/2 HEADERS frame with END_STREAM: a gRPC
    /// trailers-only response stays one).
    pub end: bool,
    pub up: Up,
    pub sent: Sent,
}

/// The upstream side of a try.
pub(super) enum Up {
    H2 {
        _slot: H2Stream,
        send: SendStream<Bytes>,
        recv: RecvStream,
    },
    H1 {
        conn: UpstreamConn,
        chunked: bool,
        keep_alive: bool,
    },
}

/// Why a try ended without a response to forward.
pub(super) enum Stop {
    /// The pool gave no connection.
    Pool(PoolError),
    /// The connection broke, or the stream was reset, before a response head.
    Reset(String),
    /// An HTTP/2 server refused the stream unprocessed (REFUSED_STREAM, or GOAWAY before
    /// it): safe to send again, not the host's fault.
    Refused(String),
    /// No response head before the deadline.
    Timeout,
    /// The upstream's response was not HTTP.
    Malformed(DecodeError),
    /// Downstream reset the stream, or went away.
    Cancelled,
    /// A stream filter answered while the body moved.
    Filter(LocalReply),
}

/// What a try needs from its exchange.
pub(super) struct TryCtx<'a> {
    pub proxy: &'a Proxy,
    pub head: &'a http::request::Parts,
    pub body: &'a mut ReqBody,
    pub filters: &'a mut [Box<dyn StreamFilter>],
    pub fctx: &'a mut FilterContext,
    pub respond: &'a mut SendResponse<Bytes>,
    pub timeouts: Timeouts,
}

fn far() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86400 * 365)
}

/// When a try gives up waiting for the response head.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// The route's `timeout`: from the end of the request (Envoy's rule, so a long upload
    /// or client stream is not cut short).
    pub route: Option<std::time::Duration>,
    /// The retry policy's per-try timeout, from the end of the request on each try.
    pub per_try: Option<std::time::Duration>,
    /// The client's own deadline (`grpc-timeout`), from when the request arrived.
    pub grpc_deadline: Option<Instant>,
}

impl Timeouts {
    /// While the request is still being sent: only the client's deadline.
    fn sending(&self) -> Instant {
        self.grpc_deadline.unwrap_or_else(far)
    }

    /// Once the request is complete: the route's deadline (armed on the attempt the first
    /// time, so retries share it), this try's, and the client's, whichever comes first.
    fn complete(&self, attempt: &mut Attempt) -> Instant {
        let now = Instant::now();
        if attempt.deadline.is_none() {
            attempt.deadline = self.route.map(|t| now + t);
        }
        [
            attempt.deadline,
            self.per_try.map(|t| now + t),
            self.grpc_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(far)
    }

    /// The first deadline of a try: [`Timeouts::complete`] if the request is already sent
    /// (`done`), else [`Timeouts::sending`].
    fn first(&self, done: bool, attempt: &mut Attempt) -> Instant {
        if done {
            self.complete(attempt)
        } else {
            self.sending()
        }
    }

    /// How long a request may wait for a pooled connection.
    fn pool_wait(&self) -> Option<Instant> {
        let route = self.route.map(|t| Instant::now() + t);
        match (route, self.grpc_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Settings of this listener's upstream HTTP/2 connections.
pub(in crate::proxy) fn h2_settings(proxy: &Proxy) -> H2Settings {
    let o = &proxy.config.http2;
    H2Settings {
        initial_stream_window_size: o.initial_stream_window_size,
        initial_connection_window_size: o.initial_connection_window_size,
        max_header_list_size: 64 * 1024,
        keepalive_interval: o.keepalive_interval,
        keepalive_timeout: o.keepalive_timeout,
    }
}

/// One try over an HTTP/2 stream.
pub(super) async fn try_h2(cx: TryCtx<'_>, attempt: &mut Attempt) -> Result<Reply, Stop> {
    let slot = cx
        .proxy
        .h2pools
        .acquire(&attempt.cluster, attempt.host(), &h2_settings(cx.proxy))
        .await
        .map_err(Stop::Pool)?;
    attempt.begin_try();
    let req = request_head(cx.head);
    let refused = |e: h2::Error, slot: &H2Stream| {
        if e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) || e.is_io() {
            slot.retire();
            Stop::Refused(e.to_string())
        } else {
            Stop::Reset(e.to_string())
        }
    };
    let mut sender = match slot.send.clone().ready().await {
        Ok(s) => s,
        Err(e) => return Err(refused(e, &slot)),
    };
    let empty = cx.body.empty();
    let (mut response, mut send) = match sender.send_request(req, empty) {
        Ok(pair) => pair,
        Err(e) => return Err(refused(e, &slot)),
    };
    let mut sent = Sent::nothing(empty);
    let t = cx.timeouts;
    let timer = tokio::time::sleep_until(t.first(sent.done, attempt));
    tokio::pin!(timer);
    let respond = cx.respond;
    let (body, filters, fctx) = (cx.body, cx.filters, cx.fctx);
    let head = loop {
        let mut sink = Sink::H2(&mut send);
        tokio::select! {
            r = pump(body, &mut sent, &mut sink, filters, fctx), if !sent.done => match r {
                Ok(()) => {
                    if sent.done {
                        timer.as_mut().reset(t.complete(attempt));
                    }
                }
                Err(PumpError::Upstream(why)) => {
                    debug!(%why, "upstream stopped taking the request body");
                    sent.done = true;
                    timer.as_mut().reset(t.complete(attempt));
                }
                Err(PumpError::Downstream) => {
                    send.send_reset(h2::Reason::CANCEL);
                    return Err(Stop::Cancelled);
                }
                Err(PumpError::Filter(r)) => {
                    send.send_reset(h2::Reason::CANCEL);
                    return Err(Stop::Filter(r));
                }
            },
            r = &mut response => match r {
                Ok(resp) => break resp,
                Err(e) => return Err(refused(e, &slot)),
            },
            () = &mut timer => {
                send.send_reset(h2::Reason::CANCEL);
                return Err(Stop::Timeout);
            }
            _ = poll_fn(|c| respond.poll_reset(c)) => {
                send.send_reset(h2::Reason::CANCEL);
                return Err(Stop::Cancelled);
            }
        }
    };
    let (head, recv) = head.into_parts();
    Ok(Reply {
        end: recv.is_end_stream(),
        head,
        up: Up::H2 {
            _slot: slot,
            send,
            recv,
        },
        sent,
    })
}

/// `head` as an HTTP/2 request head (`:authority` instead of `Host`).
pub(in crate::proxy) fn request_head(head: &http::request::Parts) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = h2_uri(head);
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = head.headers.clone();
    req.headers_mut().remove(http::header::HOST);
    req
}

/// The request target for HTTP/2: `:scheme` http and `:authority` from the URI or `Host`.
fn h2_uri(head: &http::request::Parts) -> http::Uri {
    let authority = head
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            head.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let path = head
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut b = http::Uri::builder().path_and_query(path.as_str());
    if let Some(a) = authority {
        b = b.scheme("http").authority(a.as_str());
    }
    b.build().unwrap_or_else(|_| head.uri.clone())
}

/// One try over an HTTP/1.1 connection.
pub(super) async fn try_h1(cx: TryCtx<'_>, attempt: &mut Attempt) -> Result<Reply, Stop> {
    let max_header = cx.proxy.config.max_request_header_bytes.max(64 * 1024);
    let mut conn = cx
        .proxy
        .pools
        .acquire(
            &attempt.cluster,
            attempt.host(),
            cx.timeouts.pool_wait(),
            max_header,
        )
        .await
        .map_err(Stop::Pool)?;
    attempt.begin_try();
    conn.decoder.expect(&cx.head.method);
    let mut h1 = cx.head.clone();
    h1.version = Version::HTTP_11;
    let empty = cx.body.empty();
    let length = h1
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let kind = match (empty, length) {
        (true, _) => BodyKind::Empty,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::Chunked,
    };
    let chunked = kind == BodyKind::Chunked;
    let mut out = BytesMut::with_capacity(512);
    encode_request_head(&h1, kind, &mut out);
    let reused = conn.reused;
    let stale = |why: String| {
        if reused {
            Stop::Refused(why)
        } else {
            Stop::Reset(why)
        }
    };
    if let Err(e) = conn.stream.write_all(&out).await {
        return Err(stale(e.to_string()));
    }
    let mut sent = Sent::nothing(empty);
    let t = cx.timeouts;
    let timer = tokio::time::sleep_until(t.first(sent.done, attempt));
    tokio::pin!(timer);
    let respond = cx.respond;
    let (body, filters, fctx) = (cx.body, cx.filters, cx.fctx);
    let head = {
        let UpstreamConn {
            stream,
            buf,
            decoder,
            ..
        } = &mut conn;
        let (mut rd, w) = stream.split();
        let mut sink = Sink::H1 { w, chunked };
        loop {
            tokio::select! {
                r = pump(body, &mut sent, &mut sink, filters, fctx), if !sent.done => match r {
                    Ok(()) => {
                        if sent.done {
                            timer.as_mut().reset(t.complete(attempt));
                        }
                    }
                    Err(PumpError::Upstream(why)) => {
                        debug!(%why, "upstream stopped reading the request body");
                        sent.done = true;
                        timer.as_mut().reset(t.complete(attempt));
                    }
                    Err(PumpError::Downstream) => return Err(Stop::Cancelled),
                    Err(PumpError::Filter(r)) => return Err(Stop::Filter(r)),
                },
                r = read_head(&mut rd, buf, decoder) => match r {
                    Ok(h) if h.parts.status.is_informational() => {}
                    Ok(h) => break h,
                    Err(Stop::Reset(why)) if buf.is_empty() => return Err(stale(why)),
                    Err(e) => return Err(e),
                },
                () = &mut timer => return Err(Stop::Timeout),
                _ = poll_fn(|c| respond.poll_reset(c)) => return Err(Stop::Cancelled),
            }
        }
    };
    let ResponseHead {
        mut parts,
        body: resp_kind,
        keep_alive,
    } = head;
    parts.version = Version::HTTP_2;
    crate::proxy::headers::strip_hop_by_hop(&mut parts.headers, false);
    Ok(Reply {
        end: resp_kind == BodyKind::Empty,
        head: parts,
        up: Up::H1 {
            conn,
            chunked,
            keep_alive: keep_alive && resp_kind != BodyKind::CloseDelimited,
        },
        sent,
    })
}

/// Reads until an HTTP/1 response head is decoded (cancel-safe: progress stays in `buf`).
async fn read_head(
    rd: &mut ReadHalf<'_>,
    buf: &mut BytesMut,
    decoder: &mut crate::protocol::http1::ResponseDecoder,
) -> Result<ResponseHead, Stop> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(Frame::Head(h))) => return Ok(h),
            Ok(Some(_)) => {
                return Err(Stop::Malformed(DecodeError::malformed(
                    "response",
                    "body before head",
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(Stop::Malformed(e)),
        }
        buf.reserve(READ_CHUNK);
        match rd.read_buf(buf).await {
            Ok(0) => return Err(Stop::Reset("connection closed".into())),
            Ok(_) => {}
            Err(e) => return Err(Stop::Reset(e.to_string())),
        }
    }
}

/// How forwarding a response ended.
pub(super) enum Forwarded {
    /// Complete; the trailers' `grpc-status`, if any.
    Done(Option<u32>),
    /// Upstream broke mid-response: downstream got RST_STREAM.
    UpstreamBroke,
    /// Downstream reset the stream (or went away): upstream was cancelled.
    Cancelled,
}

/// Forwards the rest of the response (body, trailers) from `up` to `down`, and the rest of
/// the request body (gRPC streams both ways at once), until the response is complete.
pub(super) async fn forward(
    reply: &mut Reply,
    down: &mut SendStream<Bytes>,
    body: &mut ReqBody,
    filters: &mut [Box<dyn StreamFilter>],
    fctx: &mut FilterContext,
) -> Forwarded {
    let sent = &mut reply.sent;
    let mut downward = Downward::default();
    let dw = &mut downward;
    match &mut reply.up {
        Up::H2 { send, recv, .. } => loop {
            let mut sink = Sink::H2(send);
            tokio::select! {
                r = pump(body, sent, &mut sink, filters, fctx), if !sent.done => {
                    if let Err(e) = r {
                        sent.done = true;
                        if matches!(e, PumpError::Downstream) {
                            send.send_reset(h2::Reason::CANCEL);
                            return Forwarded::Cancelled;
                        }
                    }
                }
                step = h2_step(recv, down, dw) => match step {
                    Step::More => {}
                    Step::Done(g) => {
                        if !sent.done {
                            // The server answered before the request ended (gRPC does):
                            // the rest of the request is not wanted.
                            send.send_reset(h2::Reason::CANCEL);
                        }
                        return Forwarded::Done(g);
                    }
                    Step::UpBroke(reason) => {
                        down.send_reset(reason);
                        return Forwarded::UpstreamBroke;
                    }
                    Step::DownGone => {
                        send.send_reset(h2::Reason::CANCEL);
                        return Forwarded::Cancelled;
                    }
                },
            }
        },
        Up::H1 {
            conn,
            chunked,
            keep_alive,
        } => {
            let outcome = {
                let UpstreamConn {
                    stream,
                    buf,
                    decoder,
                    ..
                } = conn;
                let (mut rd, w) = stream.split();
                let mut sink = Sink::H1 {
                    w,
                    chunked: *chunked,
                };
                loop {
                    tokio::select! {
                        r = pump(body, sent, &mut sink, filters, fctx), if !sent.done => {
                            if let Err(e) = r {
                                sent.done = true;
                                *keep_alive = false;
                                if matches!(e, PumpError::Downstream) {
                                    break Forwarded::Cancelled;
                                }
                            }
                        }
                        step = h1_step(&mut rd, buf, decoder, down, dw) => match step {
                            Step::More => {}
                            Step::Done(g) => break Forwarded::Done(g),
                            Step::UpBroke(reason) => {
                                down.send_reset(reason);
                                break Forwarded::UpstreamBroke;
                            }
                            Step::DownGone => break Forwarded::Cancelled,
                        },
                    }
                }
            };
            let clean = matches!(outcome, Forwarded::Done(_)) && sent.done && *keep_alive;
            if !clean {
                *keep_alive = false;
            }
            outcome
        }
    }
}

/// Gives a finished HTTP/1 connection back to its pool when it can carry another request.
pub(super) fn release(proxy: &Proxy, up: Up, request_done: bool) {
    if let Up::H1 {
        conn, keep_alive, ..
    } = up
        && keep_alive
        && request_done
    {
        proxy.pools.release(conn);
    }
}

enum Step {
    More,
    Done(Option<u32>),
    UpBroke(h2::Reason),
    DownGone,
}

/// The response's way downstream: what waits for the client's window (cancel-safe, as the
/// request's [`Sent`]).
#[derive(Debug, Default)]
struct Downward {
    out: Outbox,
    /// What waits ends the response.
    ending: bool,
}

impl Downward {
    /// Flushes what waits; `Some(release)` (the upstream window to give back) once it is out.
    async fn flush(&mut self, down: &mut SendStream<Bytes>) -> Result<usize, Step> {
        self.out.flush(down).await.map_err(|_| Step::DownGone)
    }

    fn queue(&mut self, data: Bytes, end: bool, release: usize) {
        self.out.put(data, end, release);
        self.ending = end;
    }
}

async fn h2_step(recv: &mut RecvStream, down: &mut SendStream<Bytes>, dw: &mut Downward) -> Step {
    if !dw.out.is_empty() {
        return match dw.flush(down).await {
            Ok(release) => {
                let _ = recv.flow_control().release_capacity(release);
                if dw.ending {
                    Step::Done(None)
                } else {
                    Step::More
                }
            }
            Err(step) => step,
        };
    }
    let data = tokio::select! {
        d = recv.data() => d,
        _ = poll_fn(|c| down.poll_reset(c)) => return Step::DownGone,
    };
    match data {
        Some(Ok(chunk)) => {
            let len = chunk.len();
            dw.queue(chunk, recv.is_end_stream(), len);
            Step::More
        }
        Some(Err(e)) => Step::UpBroke(e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR)),
        None => {
            let trailers = tokio::select! {
                t = poll_fn(|c| recv.poll_trailers(c)) => t,
                _ = poll_fn(|c| down.poll_reset(c)) => return Step::DownGone,
            };
            match trailers {
                Ok(Some(t)) => {
                    let g = crate::protocol::grpc::status_of(&t);
                    match down.send_trailers(t) {
                        Ok(()) => Step::Done(g),
                        Err(_) => Step::DownGone,
                    }
                }
                Ok(None) => {
                    dw.queue(Bytes::new(), true, 0);
                    Step::More
                }
                Err(e) => Step::UpBroke(e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR)),
            }
        }
    }
}

async fn h1_step(
    rd: &mut ReadHalf<'_>,
    buf: &mut BytesMut,
    decoder: &mut crate::protocol::http1::ResponseDecoder,
    down: &mut SendStream<Bytes>,
    dw: &mut Downward,
) -> Step {
    if !dw.out.is_empty() {
        return match dw.flush(down).await {
            Ok(_) if dw.ending => Step::Done(None),
            Ok(_) => Step::More,
            Err(step) => step,
        };
    }
    loop {
        match decoder.decode(buf) {
            Ok(Some(Frame::Data(d))) => {
                dw.queue(d, false, 0);
                return Step::More;
            }
            Ok(Some(Frame::End { trailers })) => {
                if trailers.is_empty() {
                    dw.queue(Bytes::new(), true, 0);
                    return Step::More;
                }
                return match down.send_trailers(parse_trailers(&trailers)) {
                    Ok(()) => Step::Done(None),
                    Err(_) => Step::DownGone,
                };
            }
            Ok(Some(Frame::Head(_))) | Err(_) => return Step::UpBroke(h2::Reason::INTERNAL_ERROR),
            Ok(None) => {}
        }
        buf.reserve(READ_CHUNK);
        let n = tokio::select! {
            n = rd.read_buf(buf) => n,
            _ = poll_fn(|c| down.poll_reset(c)) => return Step::DownGone,
        };
        match n {
            Ok(0) => {
                // A close-delimited body ends here; the decoder says whether it may.
                return match decoder.eof() {
                    Ok(Some(Frame::End { .. })) => {
                        dw.queue(Bytes::new(), true, 0);
                        Step::More
                    }
                    _ => Step::UpBroke(h2::Reason::INTERNAL_ERROR),
                };
            }
            Ok(_) => {}
            Err(_) => return Step::UpBroke(h2::Reason::INTERNAL_ERROR),
        }
    }
}

/// The HTTP/2 response head for an upstream's `status` (for local replies).
pub(super) fn status_head(status: StatusCode) -> http::response::Parts {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = Version::HTTP_2;
    parts
}
