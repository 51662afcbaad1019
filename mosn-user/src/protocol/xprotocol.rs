//! X-Protocol: the interface an RPC codec implements to get the whole RPC path for free
//! (MOSN's `XProtocol`): multiplexed downstream and upstream connections with request-id
//! rewriting, heartbeats, routing on any header, protocol-native error responses, per
//! service and method metrics, and auto-detection on a shared listener.
//!
//! A protocol is a zero-sized type implementing [`XProtocol`] in its own module
//! (`protocol/<name>/`) plus one `register_x` line in [`super::register_builtin`];
//! `docs/ADDING_A_PROTOCOL.md` walks through it.
//!
//! Decoding yields an [`XFrame`]: the frame's raw bytes, kept whole, plus what the proxy needs
//! to know about them (kind, request id, status, timeout, header fields as spans of the raw
//! bytes). Forwarding a frame whose headers were not changed writes the raw bytes back with
//! only the request id patched in place: no re-encoding, no copy of the body.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{DecodeError, Match};

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request expecting a response.
    Request,
    /// A request expecting no response (Bolt type 2, Dubbo without the two-way bit).
    Oneway,
    /// A response to a request.
    Response,
    /// A heartbeat request (answer with [`XProtocol::heartbeat_reply`]).
    Heartbeat,
    /// A heartbeat response.
    HeartbeatReply,
}

impl Kind {
    pub fn is_request(self) -> bool {
        matches!(self, Kind::Request | Kind::Oneway | Kind::Heartbeat)
    }
}

/// A piece of text a frame refers to: a span of its raw bytes (the usual case, no copy), a
/// static name (fields a protocol synthesises, such as Dubbo's `service`), or owned bytes
/// (values set by the proxy, or decoded from an escaped form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// `raw[start..end]`.
    Span {
        start: u32,
        end: u32,
    },
    Static(&'static str),
    Owned(Bytes),
}

impl Text {
    pub fn span(start: usize, end: usize) -> Text {
        Text::Span {
            start: start as u32,
            end: end as u32,
        }
    }
}

/// Bytes of a request kept by [`XFrame::head_copy`]: more than any protocol's fixed header.
pub const HEAD_COPY: usize = 64;

/// One decoded frame.
#[derive(Clone)]
pub struct XFrame {
    pub kind: Kind,
    /// The request id as on the wire (Bolt: u32, Dubbo: u64).
    pub request_id: u64,
    /// A response's status in the protocol's own codes (0 for requests).
    pub status: u16,
    /// The timeout the frame carries (Bolt's timeout field), if any and positive.
    pub timeout: Option<Duration>,
    /// The whole frame as received (or as built).
    pub raw: BytesMut,
    /// Header fields in wire order (keys and values), for routing and header access.
    pub headers: Vec<(Text, Text)>,
    /// The service (Bolt: the `service` header; Dubbo: interface, from the body).
    pub service: Option<Text>,
    /// The method (Bolt: `sofa_head_method_name`; Dubbo: from the body).
    pub method: Option<Text>,
    /// `headers` were changed: [`XProtocol::encode`] must rebuild the frame from them
    /// instead of writing `raw`.
    pub headers_changed: bool,
}

impl XFrame {
    /// A copy of the frame's head (its first [`HEAD_COPY`] bytes, no headers), kept by the
    /// proxy once the frame itself has gone upstream, to build an error response with
    /// [`XProtocol::hijack`] if the upstream fails.
    pub fn head_copy(&self) -> XFrame {
        XFrame {
            kind: self.kind,
            request_id: self.request_id,
            status: self.status,
            timeout: self.timeout,
            raw: BytesMut::from(&self.raw[..self.raw.len().min(HEAD_COPY)]),
            headers: Vec::new(),
            service: None,
            method: None,
            headers_changed: false,
        }
    }

    /// The bytes `t` stands for.
    pub fn text<'a>(&'a self, t: &'a Text) -> &'a [u8] {
        match t {
            Text::Span { start, end } => self
                .raw
                .get(*start as usize..*end as usize)
                .unwrap_or_default(),
            Text::Static(s) => s.as_bytes(),
            Text::Owned(b) => b,
        }
    }

    /// The first header named `name` (exact, case-sensitive as RPC header keys are).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| self.text(k) == name.as_bytes())
            .map(|(_, v)| self.text(v))
    }

    /// [`XFrame::header`] as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn service(&self) -> Option<&[u8]> {
        self.service.as_ref().map(|t| self.text(t))
    }

    pub fn method(&self) -> Option<&[u8]> {
        self.method.as_ref().map(|t| self.text(t))
    }

    /// Sets header `name` (replacing every field of that name); the frame will be re-encoded.
    pub fn set_header(&mut self, name: &str, value: Bytes) {
        self.remove_header(name);
        self.headers.push((
            Text::Owned(Bytes::copy_from_slice(name.as_bytes())),
            Text::Owned(value),
        ));
        self.headers_changed = true;
    }

    /// Adds a field `name` after any of that name; the frame will be re-encoded.
    pub fn append_header(&mut self, name: &str, value: Bytes) {
        self.headers.push((
            Text::Owned(Bytes::copy_from_slice(name.as_bytes())),
            Text::Owned(value),
        ));
        self.headers_changed = true;
    }

    /// Removes every field named `name`; the frame will be re-encoded if one was there.
    pub fn remove_header(&mut self, name: &str) {
        let before = self.headers.len();
        let raw = &self.raw;
        self.headers.retain(|(k, _)| {
            let key: &[u8] = match k {
                Text::Span { start, end } => {
                    raw.get(*start as usize..*end as usize).unwrap_or_default()
                }
                Text::Static(s) => s.as_bytes(),
                Text::Owned(b) => b,
            };
            key != name.as_bytes()
        });
        if self.headers.len() != before {
            self.headers_changed = true;
        }
    }
}

impl fmt::Debug for XFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        f.debug_struct("XFrame")
            .field("kind", &self.kind)
            .field("request_id", &self.request_id)
            .field("status", &self.status)
            .field("timeout", &self.timeout)
            .field("len", &self.raw.len())
            .field("service", &s(self.service()))
            .field("method", &s(self.method()))
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// Whether upstream connections carry many requests at once (request ids tell the
/// responses apart) or one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Multiplex,
    PingPong,
}

/// Why the proxy answers a request by itself ([`XProtocol::hijack`]). Each protocol maps
/// these to its own status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hijack {
    /// No route matched (Bolt: no processor).
    NoRoute,
    /// The cluster has no healthy host or none could be connected (Bolt: connection closed).
    NoHealthyHost,
    /// No response within the timeout (Bolt: timeout).
    Timeout,
    /// A circuit breaker or rate limit refused the request (Bolt: threadpool busy).
    Overflow,
    /// The upstream connection broke with the request in flight (Bolt: connection closed).
    UpstreamReset,
    /// The request could not be decoded (Bolt: codec exception).
    Codec,
    /// A filter or route refused the request (Bolt: no processor).
    Forbidden,
}

/// What a response status means, protocol-independently (for metrics, retries, outlier
/// detection), as the HTTP status MOSN maps it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClass(pub u16);

impl StatusClass {
    pub const OK: StatusClass = StatusClass(200);

    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// A gateway-type failure (502, 503, 504): counts towards outlier detection's
    /// consecutive gateway failures.
    pub fn is_gateway_error(self) -> bool {
        matches!(self.0, 502..=504)
    }
}

/// An RPC protocol. Implementations are stateless (`&'static` singletons): every method is
/// a pure function of its arguments, and no method panics on any input.
pub trait XProtocol: Send + Sync + 'static {
    /// The name configs use (`"bolt"`, `"dubbo"`); lower case.
    fn name(&self) -> &'static str;

    /// Whether `prefix` (a connection's first bytes) starts this protocol.
    fn matches(&self, prefix: &[u8]) -> Match;

    /// Decodes the next frame from the front of `src`, splitting its bytes off into
    /// [`XFrame::raw`]. `Ok(None)`: more bytes are needed (nothing consumed; `src` may be
    /// reserved to the frame's length). A frame longer than `max_frame` bytes, an unknown
    /// protocol byte or impossible lengths are errors: the connection closes, after
    /// [`XProtocol::codec_error_reply`] if it can build one.
    fn decode(&self, src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError>;

    /// Appends `frame` to `dst`: its raw bytes when its headers are unchanged, else the
    /// frame rebuilt from `headers` (class name, body and protocol fields from `raw`).
    fn encode(&self, frame: &XFrame, dst: &mut BytesMut);

    /// Sets the request id, patching the raw bytes in place (and `frame.request_id`). The id
    /// is truncated to the protocol's width (Bolt: u32).
    fn set_request_id(&self, frame: &mut XFrame, id: u64);

    /// Multiplex (Bolt, Dubbo) or one request at a time per connection.
    fn pool_mode(&self) -> PoolMode;

    /// A heartbeat request with `id`, sent on idle upstream connections and by health checks.
    fn heartbeat(&self, id: u64) -> BytesMut;

    /// The reply to a heartbeat request `req` (status success, same id and version).
    fn heartbeat_reply(&self, req: &XFrame) -> BytesMut;

    /// A response to request `req`, in the protocol's own format (same version, codec and
    /// id), carrying the error status for `why` and, where the protocol has one, `message`.
    /// `None` for a oneway request (nothing may be sent back). `req` may be a
    /// [`XFrame::head_copy`]: only its first [`HEAD_COPY`] bytes, no headers.
    fn hijack(&self, req: &XFrame, why: Hijack, message: &str) -> Option<BytesMut>;

    /// The status [`XProtocol::hijack`] puts in its response for `why` (metrics count it).
    fn hijack_status(&self, why: Hijack) -> u16;

    /// For bytes that failed to decode: a codec-exception response, if the bytes' header can
    /// be read far enough to address one (request id, version); else `None`.
    fn codec_error_reply(&self, src: &[u8]) -> Option<BytesMut>;

    /// What a response status means.
    fn status_class(&self, status: u16) -> StatusClass;
}

// A protocol is known by its name (`X_PROTOCOLS` lists each once), so a resolved
// `&'static dyn XProtocol` can be compared, hashed and printed like the name it replaces.
impl fmt::Debug for dyn XProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.name(), f)
    }
}

impl PartialEq for dyn XProtocol {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for dyn XProtocol {}

impl std::hash::Hash for dyn XProtocol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

/// The frame-length step every X-Protocol decoder shares: `total` (the frame's length from
/// its header, computed without overflow) over `max_frame` is
/// [`DecodeError::FrameTooLarge`] at once, without waiting for the bytes; while fewer than
/// `total` bytes are in, `src` is reserved to the frame's size and `Ok(None)` asks for more;
/// then `Ok(Some(total))`.
pub fn whole_frame(
    src: &mut BytesMut,
    total: u64,
    max_frame: usize,
) -> Result<Option<usize>, DecodeError> {
    if total > max_frame as u64 {
        return Err(DecodeError::FrameTooLarge {
            len: total,
            limit: max_frame,
        });
    }
    // At most `max_frame`, so it fits.
    let total = total as usize;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    Ok(Some(total))
}
