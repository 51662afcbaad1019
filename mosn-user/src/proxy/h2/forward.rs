//! The response's way downstream: body and trailers from an HTTP/2 stream or an HTTP/1
//! connection to the client's stream, with the rest of the request going up at the same
//! time (gRPC streams both ways).

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::AsyncReadExt;
use crate::network::ConnRead;

use super::outbox::Outbox;
use super::request_body::{PumpError, ReqBody, Sink, parse_trailers, pump};
use super::upstream::{Reply, Up};
use crate::filter::{FilterContext, StreamFilter};
use crate::protocol::Decoder;
use crate::protocol::http1::Frame;
use crate::proxy::Proxy;
use crate::proxy::body::READ_CHUNK;
use crate::stream::UpstreamConn;

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
    rd: &mut ConnRead<'_>,
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
