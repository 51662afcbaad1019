//! Protocol codecs (MOSN's protocol layer): pure decode/encode of frames over byte buffers,
//! and detection of a connection's protocol from its first bytes.
//!
//! A codec never does I/O: decoding takes a `BytesMut` of received bytes and returns
//! `Ok(Some(frame))` (consuming the frame's bytes), `Ok(None)` (need more bytes; nothing
//! consumed that matters) or an error that ends the connection with the protocol's own error
//! response. Encoding appends to a `BytesMut`. One module per protocol, each with the same
//! files: `frame.rs` (types and the wire layout), `decode.rs`, `encode.rs`, `matcher.rs`.
//!
//! [`Registry::builtin`] is the one list of protocols ([`register_builtin`]).

pub mod bolt;
pub mod dubbo;
pub mod http1;
pub mod xprotocol;

use bytes::BytesMut;

use crate::config::Protocol;

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

/// A protocol as the registry knows it.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolSpec {
    pub protocol: Protocol,
    /// Detection from a connection's first bytes.
    pub matcher: fn(&[u8]) -> Match,
}

/// Every protocol the proxy speaks.
#[derive(Debug, Default)]
pub struct Registry {
    protocols: Vec<ProtocolSpec>,
}

impl Registry {
    pub fn register(&mut self, spec: ProtocolSpec) {
        self.protocols.push(spec);
    }

    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        register_builtin(&mut r);
        r
    }

    pub fn get(&self, protocol: Protocol) -> Option<&ProtocolSpec> {
        self.protocols.iter().find(|p| p.protocol == protocol)
    }

    /// The protocol whose matcher says `Yes` to `prefix`; `Err(true)` when some matcher
    /// needs more bytes, `Err(false)` when none can match.
    pub fn detect(&self, prefix: &[u8]) -> Result<Protocol, bool> {
        let mut again = false;
        for p in &self.protocols {
            match (p.matcher)(prefix) {
                Match::Yes => return Ok(p.protocol),
                Match::Again => again = true,
                Match::No => {}
            }
        }
        Err(again)
    }
}

/// Lists every built-in protocol.
pub fn register_builtin(r: &mut Registry) {
    r.register(ProtocolSpec {
        protocol: Protocol::Http1,
        matcher: http1::matcher::matches,
    });
}
