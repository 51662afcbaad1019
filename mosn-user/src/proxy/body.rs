//! Moving bodies: the request body from downstream to upstream ([`pump_step`]) and the
//! response body back ([`response_step`]), one bounded step at a time.
//!
//! Each step is cancel-safe (it only awaits `read_buf`/`write_buf`, which lose nothing when
//! dropped, and keeps its progress in the structs here), so the proxy can `select!` between
//! the two directions: an upstream that answers before it has read the whole request (413,
//! 100-continue, an echo of a 1 GiB upload) neither deadlocks nor makes the proxy buffer.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use crate::network::{ConnRead, ConnWrite};

use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::protocol::http1::{Frame, RequestDecoder, ResponseDecoder, encode};
use crate::protocol::{DecodeError, Decoder};

/// Bytes read per `read_buf`.
pub const READ_CHUNK: usize = 16 * 1024;
/// Encoded bytes gathered before they are written (bounds memory per direction).
const MAX_PENDING_OUT: usize = 256 * 1024;
/// Request bodies up to this size are kept for retries and mirrors (Envoy's default
/// per-request buffer limit is 1 MiB for retries; HTTP/1 APIs rarely send more than this,
/// and larger uploads are streamed without a copy).
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// Why the request body could not be moved.
#[derive(Debug)]
pub enum PumpError {
    /// The downstream closed or broke mid-body.
    Downstream(io::Error),
    /// Writing upstream failed.
    Upstream(io::Error),
    /// The body is malformed (chunk framing).
    Decode(DecodeError),
    /// A filter answered (payload limit).
    Filter(LocalReply),
}

/// The request body's progress towards upstream.
#[derive(Debug)]
pub struct RequestBody {
    /// Encode as chunks upstream.
    pub chunked: bool,
    /// The end of the body has been decoded (and encoded into `out`).
    pub done: bool,
    /// Encoded bytes not yet written upstream (the head first, on each try).
    pub out: BytesMut,
    /// Every body byte encoded so far, while at most [`REPLAY_LIMIT`]; `None` once more
    /// went upstream than was kept (no retry, no mirror).
    pub replay: Option<BytesMut>,
    /// A write upstream failed: stop pumping, wait for what upstream says.
    pub broken: bool,
}

impl RequestBody {
    /// `out` is allocated when a try starts (with the head).
    pub fn new(chunked: bool) -> RequestBody {
        RequestBody {
            chunked,
            done: false,
            out: BytesMut::new(),
            replay: Some(BytesMut::new()),
            broken: false,
        }
    }

    /// Still has something to do.
    pub fn active(&self) -> bool {
        !(self.broken || self.done && self.out.is_empty())
    }

    /// Decodes what `rbuf` holds into `out`, through the filters' data hooks. Returns
    /// whether anything was produced.
    pub fn feed(
        &mut self,
        rbuf: &mut BytesMut,
        decoder: &mut RequestDecoder,
        filters: &mut [Box<dyn StreamFilter>],
        ctx: &mut FilterContext,
    ) -> Result<bool, PumpError> {
        let mut produced = false;
        while !self.done && self.out.len() < MAX_PENDING_OUT {
            let start = self.out.len();
            match decoder.decode(rbuf).map_err(PumpError::Decode)? {
                None => break,
                Some(Frame::Head(_)) => {
                    return Err(PumpError::Decode(DecodeError::malformed(
                        "request",
                        "head inside a body",
                    )));
                }
                Some(Frame::Data(d)) => {
                    for f in filters.iter_mut() {
                        if let FilterStatus::Respond(r) = f.on_request_data(&d, false, ctx) {
                            return Err(PumpError::Filter(r));
                        }
                    }
                    encode::data(self.chunked, &d, &mut self.out);
                }
                Some(Frame::End { trailers }) => {
                    for f in filters.iter_mut() {
                        if let FilterStatus::Respond(r) = f.on_request_data(&[], true, ctx) {
                            return Err(PumpError::Filter(r));
                        }
                    }
                    encode::end(self.chunked, &trailers, &mut self.out);
                    self.done = true;
                }
            }
            produced = true;
            if let Some(r) = &mut self.replay {
                let added = &self.out[start..];
                if r.len() + added.len() <= REPLAY_LIMIT {
                    r.put_slice(added);
                } else {
                    self.replay = None;
                }
            }
        }
        Ok(produced)
    }
}

/// What the request direction of an exchange works on: the downstream's read half, read
/// buffer and decoder, and the upstream's write half.
pub struct RequestWire<'a> {
    pub down: ConnRead<'a>,
    pub rbuf: &'a mut BytesMut,
    pub decoder: &'a mut RequestDecoder,
    pub up: ConnWrite<'a>,
}

/// What the response direction works on: the upstream's read half, buffer and decoder, and
/// the downstream's write half and write buffer.
pub struct ResponseWire<'a> {
    pub up: ConnRead<'a>,
    pub ubuf: &'a mut BytesMut,
    pub decoder: &'a mut ResponseDecoder,
    pub down: ConnWrite<'a>,
    pub wbuf: &'a mut BytesMut,
}

/// Splits a downstream and an upstream connection into the two directions, which can then be
/// driven at the same time.
pub fn wires<'a>(
    down: &'a mut super::Downstream,
    up: &'a mut crate::stream::UpstreamConn,
) -> (RequestWire<'a>, ResponseWire<'a>) {
    let (drd, dwr) = down.stream.split();
    let (urd, uwr) = up.stream.split();
    (
        RequestWire {
            down: drd,
            rbuf: &mut down.rbuf,
            decoder: &mut down.decoder,
            up: uwr,
        },
        ResponseWire {
            up: urd,
            ubuf: &mut up.buf,
            decoder: &mut up.decoder,
            down: dwr,
            wbuf: &mut down.wbuf,
        },
    )
}

/// One step of the request body: write what is encoded, else decode what is buffered, else
/// read more from downstream.
pub async fn pump_step(
    body: &mut RequestBody,
    w: &mut RequestWire<'_>,
    filters: &mut [Box<dyn StreamFilter>],
    ctx: &mut FilterContext,
) -> Result<(), PumpError> {
    let RequestWire {
        down,
        rbuf,
        decoder,
        up,
    } = w;
    if body.out.is_empty() && !body.done && !body.feed(rbuf, decoder, filters, ctx)? {
        rbuf.reserve(READ_CHUNK);
        let n = down.read_buf(rbuf).await.map_err(PumpError::Downstream)?;
        if n == 0 {
            return Err(PumpError::Downstream(io::ErrorKind::UnexpectedEof.into()));
        }
        return Ok(());
    }
    if !body.out.is_empty() {
        up.write_buf(&mut body.out)
            .await
            .map_err(PumpError::Upstream)?;
    }
    Ok(())
}

/// Why the response body could not be moved.
#[derive(Debug)]
pub enum ResponseError {
    /// The upstream closed or broke mid-body, or sent a malformed body.
    Upstream(String),
    /// Writing downstream failed.
    Downstream(io::Error),
}

/// The response body's progress towards downstream.
#[derive(Debug)]
pub struct ResponseBody {
    /// Encode as chunks downstream.
    pub chunked: bool,
    /// The end of the body has been decoded.
    pub done: bool,
}

impl ResponseBody {
    pub fn finished(&self, wbuf: &BytesMut) -> bool {
        self.done && wbuf.is_empty()
    }
}

/// One step of the response body: decode what is buffered into `wbuf`, write `wbuf`, else
/// read more from upstream.
pub async fn response_step(
    body: &mut ResponseBody,
    w: &mut ResponseWire<'_>,
) -> Result<(), ResponseError> {
    let ResponseWire {
        up,
        ubuf,
        decoder,
        down,
        wbuf,
    } = w;
    while !body.done && wbuf.len() < MAX_PENDING_OUT {
        match decoder.decode(ubuf) {
            Ok(None) => break,
            Ok(Some(Frame::Data(d))) => encode::data(body.chunked, &d, wbuf),
            Ok(Some(Frame::End { trailers })) => {
                encode::end(body.chunked, &trailers, wbuf);
                body.done = true;
            }
            Ok(Some(Frame::Head(_))) => {
                return Err(ResponseError::Upstream(
                    "a response head inside a body".into(),
                ));
            }
            Err(e) => return Err(ResponseError::Upstream(e.to_string())),
        }
    }
    if !wbuf.is_empty() {
        down.write_buf(wbuf)
            .await
            .map_err(ResponseError::Downstream)?;
        return Ok(());
    }
    if body.done {
        return Ok(());
    }
    ubuf.reserve(READ_CHUNK);
    let n = up
        .read_buf(ubuf)
        .await
        .map_err(|e| ResponseError::Upstream(e.to_string()))?;
    if n == 0 {
        match decoder.eof() {
            Ok(Some(Frame::End { trailers })) => {
                encode::end(body.chunked, &trailers, wbuf);
                body.done = true;
            }
            Ok(_) => return Err(ResponseError::Upstream("closed mid-body".into())),
            Err(e) => return Err(ResponseError::Upstream(e.to_string())),
        }
    }
    Ok(())
}
