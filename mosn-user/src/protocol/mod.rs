//! Protocol codecs (MOSN's protocol layer): pure decode/encode of frames over byte buffers,
//! and detection of a connection's protocol from its first bytes.
//!
//! A codec never does I/O: decoding takes a `BytesMut` of received bytes and returns
//! `Ok(Some(frame))` (consuming the frame's bytes), `Ok(None)` (need more bytes; nothing
//! consumed that matters) or an error that ends the connection with the protocol's own error
//! response. Encoding appends to a `BytesMut`. One module per protocol, each with the same
//! files: `frame.rs` (types and the wire layout), `decode.rs`, `encode.rs`, `matcher.rs`.
//!
//! HTTP/1 has its own streaming codec ([`http1`]). RPC protocols implement the
//! [`xprotocol::XProtocol`] trait and are listed once, in `X_PROTOCOLS` ([`x_protocols`]);
//! [`detect`] tells every protocol apart by a connection's first bytes.

pub mod bolt;
pub mod dubbo;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod request;
pub mod tls;
pub mod xprotocol;

pub use request::Request;

use bytes::BytesMut;

use xprotocol::XProtocol;

/// Result of protocol detection on a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// These bytes start this protocol.
    Yes,
    /// They cannot start this protocol.
    No,
    /// Not enough bytes to tell.
    Again,
}

/// Why bytes could not be decoded. Every variant ends the connection; the protocol answers
/// with its error response where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the protocol (HTTP: 400).
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A header block over the configured limit (HTTP: 431).
    #[error("header block over the limit of {limit} bytes")]
    HeaderTooLarge { limit: usize },
    /// A frame whose length fields add up to more than the configured limit (RPC codecs;
    /// reported before its bytes are waited for).
    #[error("frame of {len} bytes over the limit of {limit} bytes")]
    FrameTooLarge { len: u64, limit: usize },
    /// A feature we do not implement (HTTP: 501).
    #[error("not implemented: {0}")]
    Unsupported(&'static str),
}

impl DecodeError {
    pub fn malformed(what: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

/// A pure decoder of one direction of a protocol.
pub trait Decoder {
    type Frame;

    /// Decodes the next frame from the front of `src`. `Ok(None)`: more bytes are needed.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Frame>, DecodeError>;
}

/// Every X-Protocol (RPC) built in, as configs name them. Adding a protocol: its module and
/// one line here (`docs/ADDING_A_PROTOCOL.md`).
static X_PROTOCOLS: &[&dyn XProtocol] = &[&bolt::BOLT, &dubbo::DUBBO];

/// Every built-in X-Protocol.
pub fn x_protocols() -> &'static [&'static dyn XProtocol] {
    X_PROTOCOLS
}

/// The X-Protocol named `name` (lower case), e.g. `"bolt"`.
pub fn x_protocol(name: &str) -> Option<&'static dyn XProtocol> {
    X_PROTOCOLS.iter().copied().find(|p| p.name() == name)
}

/// An L7 protocol, as MOSN's config names it (and as the config dump writes it): what a
/// listener's `proxy` speaks, or what [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `"Http1"`: HTTP/1.1 (and 1.0).
    Http1,
    /// `"Http2"`: HTTP/2 over cleartext with prior knowledge (h2c), gRPC included.
    Http2,
    /// An X-Protocol (RPC), resolved once from its registry name when the config is read:
    /// `"bolt"`, `"dubbo"`, or MOSN's `"X"` with `extend_config.sub_protocol`.
    X(&'static dyn XProtocol),
    /// `"Auto"`: each connection's protocol is detected from its first bytes; the upstream
    /// speaks the detected protocol.
    Auto,
}

impl Protocol {
    /// `s` as a protocol name (case-insensitive): `"Http1"`, `"Auto"`, or a registered
    /// X-Protocol. MOSN's `"X"` is resolved by the caller (it needs `sub_protocol`).
    pub fn parse(s: &str) -> Option<Protocol> {
        if s.eq_ignore_ascii_case("Http1") {
            Some(Protocol::Http1)
        } else if s.eq_ignore_ascii_case("Http2") {
            Some(Protocol::Http2)
        } else if s.eq_ignore_ascii_case("Auto") {
            Some(Protocol::Auto)
        } else {
            x_protocol(&s.to_ascii_lowercase()).map(Protocol::X)
        }
    }

    /// Every accepted name, for error messages.
    pub fn names() -> Vec<&'static str> {
        let mut n = vec!["Http1", "Http2", "Auto", "X"];
        n.extend(x_protocols().iter().map(|p| p.name()));
        n
    }

    /// HTTP/1 or HTTP/2: the two convert into each other.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http1 | Protocol::Http2)
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "Http1",
            Protocol::Http2 => "Http2",
            Protocol::X(p) => p.name(),
            Protocol::Auto => "Auto",
        }
    }
}

impl serde::Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The protocol a connection speaks, told from its first bytes (`"Auto"` listeners): HTTP/1,
/// HTTP/2 (the prior-knowledge preface) or an X-Protocol. `Err(true)`: some protocol needs more bytes to tell; `Err(false)`: no
/// protocol can start with these bytes.
pub fn detect(prefix: &[u8]) -> Result<Protocol, bool> {
    let mut again = false;
    let mut seen = |m: Match| match m {
        Match::Yes => true,
        Match::Again => {
            again = true;
            false
        }
        Match::No => false,
    };
    for p in X_PROTOCOLS {
        if seen(p.matches(prefix)) {
            return Ok(Protocol::X(*p));
        }
    }
    // Before HTTP/1: "PRI" is not one of its methods, but the preface must win regardless.
    if seen(http2::matches(prefix)) {
        return Ok(Protocol::Http2);
    }
    if seen(http1::matcher::matches(prefix)) {
        return Ok(Protocol::Http1);
    }
    Err(again)
}
