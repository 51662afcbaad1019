//! HTTP/1 downstream, HTTP/2 upstream (`"upstream_protocol": "Http2"`): the same phases,
//! with a stream of the multiplexed HTTP/2 pool in place of a ping-pong connection. The
//! request body is decoded from HTTP/1 framing and sent as DATA frames under the stream's
//! flow control; the response body is sent downstream with HTTP/1 framing (chunked when
//! the upstream gave no length), its trailers as chunked-body trailers.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use crate::network::{ConnRead, ConnWrite};
use tokio::time::Instant;
use tracing::debug;

use super::{Exchange, Failure, Phase, PumpError, fail};
use crate::filter::{FilterContext, StreamFilter};
use crate::protocol::http1::{BodyKind, RequestDecoder, ResponseHead, encode};
use crate::proxy::body::{READ_CHUNK, RequestBody};
use crate::proxy::h2::{Outbox, h2_settings, request_head, trailer_lines};
use crate::stream::H2Stream;

/// The HTTP/2 stream of the current try.
pub(super) struct H2Up {
    slot: H2Stream,
    send: SendStream<Bytes>,
    recv: Option<RecvStream>,
    /// END_STREAM went upstream.
    end_sent: bool,
    /// Body waiting for the stream's window (cancel-safe: the pump is a `select!` branch).
    outbox: Outbox,
    /// What waits in `outbox` ends the body.
    ending: bool,
    /// The response came to its end (else dropping the stream cancels it upstream).
    complete: bool,
}

impl Drop for H2Up {
    fn drop(&mut self) {
        if !self.complete {
            // Abandoned mid-way (a local reply, a failure, the client gone): cancel it.
            self.send.send_reset(h2::Reason::CANCEL);
        }
    }
}

/// The request side of an exchange: the body's next step while it is `active`, else the
/// watch for a client that leaves ([`client_gone`], reported as a downstream error).
#[allow(clippy::too_many_arguments)]
async fn request_side(
    active: bool,
    body: &mut RequestBody,
    up: &mut H2Up,
    rd: &mut ConnRead<'_>,
    rbuf: &mut BytesMut,
    decoder: &mut RequestDecoder,
    filters: &mut [Box<dyn StreamFilter>],
    fctx: &mut FilterContext,
    watching: &mut bool,
) -> Result<(), PumpError> {
    if active {
        return pump_h2(body, up, rd, rbuf, decoder, filters, fctx).await;
    }
    client_gone(rd, watching).await;
    Err(PumpError::Downstream(
        std::io::ErrorKind::UnexpectedEof.into(),
    ))
}

/// Resolves when the downstream client closed its side while the request body is done (an
/// HTTP/1 client that gives up): its exchange is then cancelled. Bytes of a next
/// (pipelined) request are only peeked at, and end the watch.
async fn client_gone(rd: &mut ConnRead<'_>, watching: &mut bool) {
    let mut probe = [0u8; 1];
    match rd.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => {
            *watching = false;
            std::future::pending::<()>().await;
        }
    }
}

/// One step of the request body towards an HTTP/2 stream: send what is decoded, else
/// decode what is buffered, else read more from downstream.
async fn pump_h2(
    body: &mut RequestBody,
    up: &mut H2Up,
    down: &mut ConnRead<'_>,
    rbuf: &mut BytesMut,
    decoder: &mut RequestDecoder,
    filters: &mut [Box<dyn StreamFilter>],
    fctx: &mut FilterContext,
) -> Result<(), PumpError> {
    if !up.outbox.is_empty() {
        up.outbox
            .flush(&mut up.send)
            .await
            .map_err(|e| PumpError::Upstream(std::io::Error::other(e)))?;
        up.end_sent = up.ending;
        return Ok(());
    }
    if body.out.is_empty() && !body.done && !body.feed(rbuf, decoder, filters, fctx)? {
        rbuf.reserve(READ_CHUNK);
        let n = down.read_buf(rbuf).await.map_err(PumpError::Downstream)?;
        if n == 0 {
            return Err(PumpError::Downstream(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        return Ok(());
    }
    // Queued, then sent by the next steps: nothing taken from `out` is lost if this step
    // is cancelled.
    let data = body.out.split().freeze();
    up.ending = body.done;
    up.outbox.put(data, body.done, 0);
    Ok(())
}

impl Exchange<'_> {
    /// Whether this listener's upstream speaks HTTP/2.
    pub(super) fn h2_upstream(&self) -> bool {
        self.proxy.config.upstream_protocol == crate::protocol::Protocol::Http2
    }

    /// `UpstreamRequest` over an HTTP/2 stream.
    pub(super) async fn upstream_request_h2(&mut self) -> Phase {
        self.h2 = None;
        let settings = h2_settings(self.proxy);
        let attempt = self.attempt.as_mut().expect("routed");
        let slot = match self
            .proxy
            .h2pools
            .acquire(&attempt.cluster, attempt.host(), &settings)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return match attempt.pool_failed(e) {
                    Ok(f) => Phase::Retry(f),
                    Err(e) => fail(e),
                };
            }
        };
        attempt.begin_try();
        let body = &mut self.body;
        let empty = self.req_kind.is_empty();
        let started = async {
            let mut sender = slot.send.clone().ready().await?;
            sender.send_request(request_head(&self.head), empty)
        };
        let (mut response, send) = match started.await {
            Ok(pair) => pair,
            Err(e) => {
                slot.retire();
                return self.refused(e.to_string());
            }
        };
        let mut up = H2Up {
            slot,
            send,
            recv: None,
            end_sent: empty,
            outbox: Outbox::default(),
            ending: false,
            complete: false,
        };
        // What earlier tries sent, then whatever is already buffered.
        let kept = body.replay.clone().unwrap_or_default();
        if let Err(e) = self.start_body(kept) {
            self.h2 = Some(up);
            return self.pump_failed(e);
        }
        let route_timeout = self.route_timeout;
        let attempt = self.attempt.as_mut().expect("routed");
        let per_try = attempt.retry_policy().and_then(|p| p.per_try_timeout);
        if attempt.deadline.is_none() {
            attempt.deadline = route_timeout.map(|t| Instant::now() + t);
        }
        let deadline = match (attempt.deadline, per_try.map(|t| Instant::now() + t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let far = Instant::now() + std::time::Duration::from_secs(86400 * 365);
        let timer = tokio::time::sleep_until(deadline.unwrap_or(far));
        tokio::pin!(timer);
        let result = {
            let down = &mut *self.down;
            let (mut rd, _wr) = down.stream.split();
            let (rbuf, decoder) = (&mut down.rbuf, &mut down.decoder);
            let (body, filters, fctx) = (&mut self.body, &mut self.filters, &mut self.fctx);
            let mut watching = true;
            loop {
                let active = !up.end_sent && !body.broken;
                let watch = !active && watching && rbuf.is_empty();
                tokio::select! {
                    r = request_side(active, body, &mut up, &mut rd, rbuf, decoder, filters, fctx, &mut watching), if active || watch => match r {
                        Ok(()) => {}
                        Err(PumpError::Upstream(e)) => {
                            debug!(error = %e, "upstream stopped taking the request body");
                            body.broken = true;
                        }
                        Err(e) => break Head::Pump(e),
                    },
                    r = &mut response => break match r {
                        Ok(resp) => Head::Response(resp),
                        Err(e) => Head::Broke(e),
                    },
                    () = &mut timer => break Head::Timeout,
                }
            }
        };
        let attempt = self.attempt.as_mut().expect("routed");
        match result {
            Head::Response(resp) => {
                let (mut parts, recv) = resp.into_parts();
                parts.version = Version::HTTP_11;
                let length = parts
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body = match (recv.is_end_stream(), length) {
                    (true, _) => BodyKind::Empty,
                    (false, Some(n)) => BodyKind::Length(n),
                    (false, None) => BodyKind::Chunked,
                };
                let code = parts.status.as_u16();
                attempt.responded(code);
                up.recv = Some(recv);
                self.h2 = Some(up);
                let head = Box::new(ResponseHead {
                    parts,
                    body,
                    keep_alive: true,
                });
                if attempt
                    .retry_policy()
                    .is_some_and(|p| p.retries_status(code))
                {
                    Phase::Retry(Failure::Status(code, head))
                } else {
                    Phase::ResponseFilters(head)
                }
            }
            Head::Pump(e) => {
                self.h2 = Some(up);
                self.pump_failed(e)
            }
            Head::Broke(e) => {
                if e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                    up.slot.retire();
                    return self.refused(e.to_string());
                }
                attempt.reset(true);
                Phase::Retry(Failure::Reset(e.to_string()))
            }
            Head::Timeout => {
                attempt.timed_out();
                Phase::Retry(Failure::Timeout)
            }
        }
    }

    /// The server did not process the stream (GOAWAY, REFUSED_STREAM, a connection that
    /// had just closed): once, try again without spending a retry or blaming the host.
    fn refused(&mut self, why: String) -> Phase {
        let attempt = self.attempt.as_mut().expect("routed");
        if !self.stale_retry_used && self.body.replay.is_some() {
            self.stale_retry_used = true;
            attempt.reset(false);
            attempt.end_try();
            return Phase::ChooseHost;
        }
        attempt.reset(true);
        Phase::Retry(Failure::Reset(why))
    }

    /// `StreamResponse` from an HTTP/2 stream: the head (already encoded), body and
    /// trailers downstream, and the rest of the request body upstream.
    pub(super) async fn stream_response_h2(&mut self) -> Phase {
        let mut up = self.h2.take().expect("a response came on a stream");
        let mut resp = self.response.take().expect("response filters ran");
        let mut recv = up.recv.take().expect("a response head was read");
        let trailers = self.client_trailers;
        let result = {
            let down = &mut *self.down;
            let (mut rd, mut wr) = down.stream.split();
            let (rbuf, decoder, wbuf) = (&mut down.rbuf, &mut down.decoder, &mut down.wbuf);
            let (body, filters, fctx) = (&mut self.body, &mut self.filters, &mut self.fctx);
            let mut watching = true;
            loop {
                if resp.done && wbuf.is_empty() {
                    break Ok(());
                }
                let active = !up.end_sent && !body.broken;
                let watch = !active && watching && rbuf.is_empty();
                tokio::select! {
                    r = request_side(active, body, &mut up, &mut rd, rbuf, decoder, filters, fctx, &mut watching), if active || watch => {
                        if let Err(PumpError::Downstream(e)) = r {
                            break Err(Broke::Downstream(e));
                        } else if let Err(e) = r {
                            debug!(?e, "request body stopped while the response flows");
                            body.broken = true;
                        }
                    }
                    r = response_step(&mut resp, &mut recv, &mut wr, wbuf, trailers) => if let Err(e) = r {
                        break Err(e);
                    },
                }
            }
        };
        self.end_try();
        up.complete = result.is_ok();
        match result {
            Ok(()) => {
                if !self.body.done || self.body.broken {
                    // The request was not read to its end: the downstream is out of step.
                    self.keep_alive = false;
                }
            }
            Err(Broke::Upstream(why)) => self.upstream_broke_midway(&why),
            Err(Broke::Downstream(e)) => self.downstream_gone_midway(&e),
        }
        up.recv = Some(recv);
        Phase::End
    }
}

/// How waiting for the response head ended.
enum Head {
    Response(http::Response<RecvStream>),
    Pump(PumpError),
    Broke(h2::Error),
    Timeout,
}

enum Broke {
    Upstream(String),
    Downstream(std::io::Error),
}

/// Writes what `wbuf` holds downstream, else reads the next piece of the response from the
/// stream into it (HTTP/1 framing).
async fn response_step(
    resp: &mut crate::proxy::body::ResponseBody,
    recv: &mut RecvStream,
    wr: &mut ConnWrite<'_>,
    wbuf: &mut BytesMut,
    pass_trailers: bool,
) -> Result<(), Broke> {
    if !wbuf.is_empty() {
        return wr
            .write_buf(wbuf)
            .await
            .map(drop)
            .map_err(Broke::Downstream);
    }
    if resp.done {
        return std::future::pending().await;
    }
    match recv.data().await {
        Some(Ok(d)) => {
            encode::data(resp.chunked, &d, wbuf);
            let _ = recv.flow_control().release_capacity(d.len());
            Ok(())
        }
        Some(Err(e)) => Err(Broke::Upstream(e.to_string())),
        None => {
            let trailers = poll_fn(|c| recv.poll_trailers(c))
                .await
                .map_err(|e| Broke::Upstream(e.to_string()))?;
            // Trailers only to a client that said it takes them (`TE: trailers`), as
            // Envoy's HTTP/1 codec does by default.
            let lines = trailers
                .as_ref()
                .filter(|_| pass_trailers)
                .map(trailer_lines)
                .unwrap_or_default();
            encode::end(resp.chunked, &lines, wbuf);
            resp.done = true;
            Ok(())
        }
    }
}
