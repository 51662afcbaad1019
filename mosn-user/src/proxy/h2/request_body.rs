//! The request body's way upstream from an HTTP/2 stream: what of it is kept for retries
//! ([`ReqBody`]), how far a try has sent it ([`Sent`]), and the pump that moves it to an
//! HTTP/2 stream or an HTTP/1 connection under flow control; every await cancel-safe.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue};
use tokio::io::AsyncWriteExt;
use crate::network::ConnWrite;
use tracing::debug;

use super::outbox::Outbox;
use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::protocol::http1::encode;
use crate::proxy::body::REPLAY_LIMIT;

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
    H1 { w: ConnWrite<'a>, chunked: bool },
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
pub(super) fn parse_trailers(raw: &[u8]) -> HeaderMap {
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
