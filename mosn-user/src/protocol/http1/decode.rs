//! HTTP/1.x decoding: heads with `httparse`, bodies by their framing.
//!
//! Framing follows RFC 9112 §6, with the strict choices of modern proxies against request
//! smuggling: a request with both `Transfer-Encoding` and `Content-Length`, with differing
//! `Content-Length` values, or with a transfer coding other than `chunked` is refused.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use super::MAX_HEADERS;
use super::frame::{BodyKind, Frame, RequestHead, ResponseHead};
use crate::protocol::{DecodeError, Decoder};

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Where a message decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
}

/// Body decoding progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Bytes of a `Content-Length` body still to come (0: the next frame is `End`).
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Bytes of the current chunk still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last (zero-size) chunk: trailer lines until an empty line.
    Trailers,
    /// Until the connection closes.
    UntilClose,
}

impl Body {
    fn start(kind: BodyKind) -> Body {
        match kind {
            BodyKind::Empty => Body::Length(0),
            BodyKind::Length(n) => Body::Length(n),
            BodyKind::Chunked => Body::ChunkSize,
            BodyKind::CloseDelimited => Body::UntilClose,
        }
    }

    /// The next body frame from `src`, updating `self`; `Ok(None)`: need more bytes.
    /// Returns `End` when the body is complete.
    fn decode(
        &mut self,
        src: &mut BytesMut,
        max_trailers: usize,
    ) -> Result<Option<BodyFrame>, DecodeError> {
        loop {
            match *self {
                Body::Length(0) => return Ok(Some(BodyFrame::End(Bytes::new()))),
                Body::Length(rem) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = rem.min(src.len() as u64) as usize;
                    *self = Body::Length(rem - n as u64);
                    return Ok(Some(BodyFrame::Data(src.split_to(n).freeze())));
                }
                Body::UntilClose => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(BodyFrame::Data(src.split().freeze())));
                }
                Body::ChunkSize => match httparse::parse_chunk_size(src) {
                    // The limits hold however the bytes arrive: a complete line over them is
                    // refused as an incomplete one is.
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_LINE => {
                        return Err(DecodeError::malformed("chunk size", "line too long"));
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        src.advance(used);
                        *self = if size == 0 {
                            Body::Trailers
                        } else {
                            Body::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if src.len() > MAX_CHUNK_LINE => {
                        return Err(DecodeError::malformed("chunk size", "line too long"));
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => {
                        return Err(DecodeError::malformed(
                            "chunk size",
                            "invalid chunk size line",
                        ));
                    }
                },
                Body::ChunkData(rem) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = rem.min(src.len() as u64) as usize;
                    *self = if rem == n as u64 {
                        Body::ChunkEnd
                    } else {
                        Body::ChunkData(rem - n as u64)
                    };
                    return Ok(Some(BodyFrame::Data(src.split_to(n).freeze())));
                }
                Body::ChunkEnd => {
                    if src.len() < 2 {
                        return Ok(None);
                    }
                    if &src[..2] != b"\r\n" {
                        return Err(DecodeError::malformed("chunk", "data not followed by CRLF"));
                    }
                    src.advance(2);
                    *self = Body::ChunkSize;
                }
                Body::Trailers => {
                    if src.len() >= 2 && &src[..2] == b"\r\n" {
                        src.advance(2);
                        *self = Body::Length(0);
                        return Ok(Some(BodyFrame::End(Bytes::new())));
                    }
                    match find(src, b"\r\n\r\n") {
                        Some(pos) if pos + 4 > max_trailers => {
                            return Err(DecodeError::HeaderTooLarge {
                                limit: max_trailers,
                            });
                        }
                        Some(pos) => {
                            let trailers = src.split_to(pos + 2).freeze();
                            src.advance(2);
                            *self = Body::Length(0);
                            return Ok(Some(BodyFrame::End(trailers)));
                        }
                        None if src.len() > max_trailers => {
                            return Err(DecodeError::HeaderTooLarge {
                                limit: max_trailers,
                            });
                        }
                        None => return Ok(None),
                    }
                }
            }
        }
    }
}

enum BodyFrame {
    Data(Bytes),
    End(Bytes),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes requests (the server side of a connection).
#[derive(Debug)]
pub struct RequestDecoder {
    max_header_bytes: usize,
    state: State,
}

impl RequestDecoder {
    /// `max_header_bytes`: the longest head accepted (more: 431).
    pub fn new(max_header_bytes: usize) -> RequestDecoder {
        RequestDecoder {
            max_header_bytes,
            state: State::Head,
        }
    }

    /// Between messages (no head or body partly decoded).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    fn head(&self, src: &mut BytesMut) -> Result<Option<RequestHead>, DecodeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(src);
        let Some(n) = head_len(parsed, src.len(), self.max_header_bytes, "request head")? else {
            return Ok(None);
        };
        let base = src.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| DecodeError::malformed("request line", "invalid method"))?;
        let target = offset(req.path.unwrap_or_default().as_bytes());
        let version = version(req.version);
        let mut fields = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        let count = field_offsets(base, req.headers, &mut fields);
        let bytes = src.split_to(n).freeze();
        let uri = Uri::from_maybe_shared(bytes.slice(target.0..target.0 + target.1))
            .map_err(|e| DecodeError::malformed("request target", e.to_string()))?;
        let headers = header_map(&bytes, &fields[..count])?;
        if method == Method::CONNECT {
            return Err(DecodeError::Unsupported("CONNECT"));
        }
        // RFC 9112 3.2: origin-form (`/path`), absolute-form (`http://host/path`), or `*`
        // for OPTIONS; authority-form belongs to CONNECT, refused above.
        let raw_target = &bytes[target.0..target.0 + target.1];
        let target_ok = raw_target.first() == Some(&b'/')
            || uri.scheme().is_some()
            || (raw_target == b"*" && method == Method::OPTIONS);
        if !target_ok {
            return Err(DecodeError::malformed(
                "request target",
                "not origin-form, absolute-form or * for OPTIONS",
            ));
        }
        let conn = ConnectionTokens::of(&headers);
        if version == Version::HTTP_11 {
            match headers.get_all(HOST).iter().count() {
                1 => {}
                0 => {
                    return Err(DecodeError::malformed(
                        "request",
                        "HTTP/1.1 request without Host",
                    ));
                }
                _ => {
                    return Err(DecodeError::malformed(
                        "request",
                        "more than one Host header",
                    ));
                }
            }
        }
        let body = match (transfer_encoding(&headers)?, content_length(&headers)?) {
            (Some(_), Some(_)) => {
                return Err(DecodeError::malformed(
                    "request",
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            (Some(true), None) => BodyKind::Chunked,
            (Some(false), None) => {
                return Err(DecodeError::Unsupported(
                    "transfer coding other than chunked",
                ));
            }
            (None, Some(n)) if n > 0 => BodyKind::Length(n),
            (None, _) => BodyKind::Empty,
        };
        let keep_alive = conn.keep_alive_in(version);
        let upgrade = conn.upgrade && headers.contains_key(UPGRADE);
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = version;
        parts.headers = headers;
        Ok(Some(RequestHead {
            parts,
            body,
            keep_alive,
            upgrade,
        }))
    }
}

impl Decoder for RequestDecoder {
    type Frame = Frame<RequestHead>;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Frame>, DecodeError> {
        match &mut self.state {
            State::Head => {
                let Some(head) = self.head(src)? else {
                    return Ok(None);
                };
                self.state = State::Body(Body::start(head.body));
                Ok(Some(Frame::Head(head)))
            }
            State::Body(_) => body_frame(&mut self.state, src, self.max_header_bytes),
        }
    }
}

/// Decodes responses (the client side of a connection). Each response must be announced
/// with [`ResponseDecoder::expect`] (a response to HEAD has no body).
#[derive(Debug)]
pub struct ResponseDecoder {
    max_header_bytes: usize,
    state: State,
    head_request: bool,
}

impl ResponseDecoder {
    pub fn new(max_header_bytes: usize) -> ResponseDecoder {
        ResponseDecoder {
            max_header_bytes,
            state: State::Head,
            head_request: false,
        }
    }

    /// The next response answers a request with this method.
    pub fn expect(&mut self, method: &Method) {
        self.head_request = method == Method::HEAD;
        self.state = State::Head;
    }

    /// The connection closed: the end of a close-delimited body, else `None` (clean end
    /// between messages) or an error (truncated message).
    pub fn eof(&mut self) -> Result<Option<Frame<ResponseHead>>, DecodeError> {
        match self.state {
            State::Body(Body::UntilClose) => {
                self.state = State::Head;
                Ok(Some(Frame::End {
                    trailers: Bytes::new(),
                }))
            }
            State::Head => Ok(None),
            State::Body(_) => Err(DecodeError::malformed(
                "response",
                "connection closed mid-body",
            )),
        }
    }

    fn head(&self, src: &mut BytesMut) -> Result<Option<ResponseHead>, DecodeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let parsed = resp.parse(src);
        let Some(n) = head_len(parsed, src.len(), self.max_header_bytes, "response head")? else {
            return Ok(None);
        };
        let status = StatusCode::from_u16(resp.code.unwrap_or_default())
            .map_err(|_| DecodeError::malformed("status line", "invalid status code"))?;
        let version = version(resp.version);
        let mut fields = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        let count = field_offsets(src.as_ptr() as usize, resp.headers, &mut fields);
        let bytes = src.split_to(n).freeze();
        let headers = header_map(&bytes, &fields[..count])?;
        let conn = ConnectionTokens::of(&headers);
        let no_body = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || self.head_request;
        let body = if no_body {
            BodyKind::Empty
        } else {
            match (transfer_encoding(&headers)?, content_length(&headers)?) {
                (Some(true), _) => BodyKind::Chunked,
                (Some(false), _) => BodyKind::CloseDelimited,
                (None, Some(0)) => BodyKind::Empty,
                (None, Some(n)) => BodyKind::Length(n),
                (None, None) => BodyKind::CloseDelimited,
            }
        };
        let keep_alive = body != BodyKind::CloseDelimited && conn.keep_alive_in(version);
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.version = version;
        parts.headers = headers;
        Ok(Some(ResponseHead {
            parts,
            body,
            keep_alive,
        }))
    }
}

impl Decoder for ResponseDecoder {
    type Frame = Frame<ResponseHead>;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Frame>, DecodeError> {
        match &mut self.state {
            State::Head => {
                let Some(head) = self.head(src)? else {
                    return Ok(None);
                };
                // An interim (1xx) response is followed by another head.
                if !head.parts.status.is_informational() {
                    self.state = State::Body(Body::start(head.body));
                }
                Ok(Some(Frame::Head(head)))
            }
            State::Body(_) => body_frame(&mut self.state, src, self.max_header_bytes),
        }
    }
}

/// A body frame in `state` (which is `State::Body`); back to `State::Head` at the end.
fn body_frame<H>(
    state: &mut State,
    src: &mut BytesMut,
    max_trailers: usize,
) -> Result<Option<Frame<H>>, DecodeError> {
    let State::Body(body) = state else {
        return Ok(None);
    };
    Ok(match body.decode(src, max_trailers)? {
        None => None,
        Some(BodyFrame::Data(d)) => Some(Frame::Data(d)),
        Some(BodyFrame::End(trailers)) => {
            *state = State::Head;
            Some(Frame::End { trailers })
        }
    })
}

/// The length of a head httparse parsed out of `buffered` bytes; `None`: incomplete and
/// still under `limit`. Over the limit (or too many fields): 431.
fn head_len(
    parsed: Result<httparse::Status<usize>, httparse::Error>,
    buffered: usize,
    limit: usize,
    what: &'static str,
) -> Result<Option<usize>, DecodeError> {
    let too_large = DecodeError::HeaderTooLarge { limit };
    match parsed {
        Ok(httparse::Status::Complete(n)) if n > limit => Err(too_large),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered > limit => Err(too_large),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(too_large),
        Err(e) => Err(DecodeError::malformed(what, e.to_string())),
    }
}

fn version(v: Option<u8>) -> Version {
    match v {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// Offsets (name, name length, value, value length) of each parsed field from `base`, the
/// start of the buffer: offsets, not slices, because the bytes are frozen afterwards and the
/// values share them. Returns how many fields there are.
fn field_offsets(
    base: usize,
    headers: &[httparse::Header<'_>],
    out: &mut [(usize, usize, usize, usize); MAX_HEADERS],
) -> usize {
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    for (f, h) in out.iter_mut().zip(headers) {
        let (no, nl) = offset(h.name.as_bytes());
        let (vo, vl) = offset(h.value);
        *f = (no, nl, vo, vl);
    }
    headers.len()
}

/// Builds the header map from `(name offset, name len, value offset, value len)` into
/// `bytes`; values share `bytes` (no copy).
fn header_map(
    bytes: &Bytes,
    fields: &[(usize, usize, usize, usize)],
) -> Result<HeaderMap, DecodeError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for &(no, nl, vo, vl) in fields {
        let name = HeaderName::from_bytes(&bytes[no..no + nl])
            .map_err(|_| DecodeError::malformed("header", "invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(vo..vo + vl))
            .map_err(|_| DecodeError::malformed("header", "invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// `Some(true)`: chunked is the final transfer coding; `Some(false)`: another coding is.
/// A `Transfer-Encoding` field that names no coding at all is malformed (taken as absent,
/// it would let a `Content-Length` frame a request that has both).
fn transfer_encoding(headers: &HeaderMap) -> Result<Option<bool>, DecodeError> {
    let mut present = false;
    let mut last: Option<Vec<u8>> = None;
    for v in headers.get_all(TRANSFER_ENCODING) {
        present = true;
        for coding in v.as_bytes().split(|&b| b == b',') {
            let c = coding.trim_ascii();
            if !c.is_empty() {
                last = Some(c.to_ascii_lowercase());
            }
        }
    }
    if present && last.is_none() {
        return Err(DecodeError::malformed(
            "header",
            "Transfer-Encoding without a coding",
        ));
    }
    Ok(last.map(|c| c == b"chunked"))
}

/// The `Content-Length`, if any; several differing values are an error.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, DecodeError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let p = part.trim_ascii();
            if p.is_empty() || !p.iter().all(u8::is_ascii_digit) || p.len() > 19 {
                return Err(DecodeError::malformed("header", "invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DecodeError::malformed("header", "invalid Content-Length"))?;
            match found {
                Some(f) if f != n => {
                    return Err(DecodeError::malformed(
                        "header",
                        "differing Content-Length values",
                    ));
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// The tokens of `Connection` that matter here.
#[derive(Debug, Default)]
pub(crate) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl ConnectionTokens {
    /// Whether the peer keeps the connection: HTTP/1.1 unless `close`, HTTP/1.0 only with
    /// `keep-alive`.
    pub fn keep_alive_in(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }

    pub fn of(headers: &HeaderMap) -> ConnectionTokens {
        let mut t = ConnectionTokens::default();
        for v in headers.get_all(CONNECTION) {
            for token in v.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    t.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    t.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    t.upgrade = true;
                }
            }
        }
        t
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
