//! HTTP/1.x frames.
//!
//! ```text
//! request   = method SP target SP "HTTP/1." ("0" / "1") CRLF
//!             *( field-name ":" OWS field-value OWS CRLF )
//!             CRLF
//!             [ body ]
//! body      = content-length octets
//!           / chunked: *( hex-size [;ext] CRLF data CRLF ) "0" CRLF *( trailer CRLF ) CRLF
//!           / (responses only) every octet until the connection closes
//! response  = "HTTP/1." ("0" / "1") SP 3DIGIT SP reason CRLF *( field CRLF ) CRLF [ body ]
//! ```
//!
//! A decoder yields one `Head`, then `Data` pieces of the body as they arrive, then `End`.

use bytes::Bytes;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no framing headers on a request; 1xx/204/304/HEAD responses).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses without framing).
    CloseDelimited,
}

impl BodyKind {
    pub fn is_empty(self) -> bool {
        matches!(self, BodyKind::Empty | BodyKind::Length(0))
    }
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    pub body: BodyKind,
    /// The client keeps the connection open after this exchange (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header (WebSocket): on a 101 response the
    /// connection becomes a byte tunnel.
    pub upgrade: bool,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub body: BodyKind,
    /// The server keeps the connection open after this exchange.
    pub keep_alive: bool,
}

/// One decoded piece of a message.
#[derive(Debug)]
pub enum Frame<H> {
    Head(H),
    /// Body bytes (without chunk framing).
    Data(Bytes),
    /// The body is complete. `trailers`: the raw trailer lines of a chunked body (each
    /// ending in CRLF), empty if none.
    End {
        trailers: Bytes,
    },
}
