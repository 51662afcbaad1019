//! One try of an HTTP/2 downstream stream against its upstream: HTTP/2 (a stream on the
//! multiplexed pool) or HTTP/1 (a connection of the ping-pong pool), up to the response head.
//! The request body's pump is in [`super::request_body`], the response's way down in
//! [`super::forward`]. Bodies move as `Bytes` under flow control both ways: a downstream DATA
//! frame's window is given back only once the upstream took the data, and an upstream one's
//! only once downstream did, so a slow reader on either side stops its peer instead of
//! filling the proxy.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{Request, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use crate::network::ConnRead;
use tokio::time::Instant;
use tracing::debug;

use super::request_body::{PumpError, ReqBody, Sent, Sink, pump};
use crate::filter::{FilterContext, LocalReply, StreamFilter};
use crate::protocol::http1::{BodyKind, Frame, ResponseHead};
use crate::protocol::{DecodeError, Decoder};
use crate::proxy::Proxy;
use crate::proxy::attempt::Attempt;
use crate::proxy::body::READ_CHUNK;
use crate::proxy::phase::encode_request_head;
use crate::stream::{H2Settings, H2Stream, PoolError, UpstreamConn};

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
    rd: &mut ConnRead<'_>,
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

/// The HTTP/2 response head for an upstream's `status` (for local replies).
pub(super) fn status_head(status: StatusCode) -> http::response::Parts {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = Version::HTTP_2;
    parts
}
