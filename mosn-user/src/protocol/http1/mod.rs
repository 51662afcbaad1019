//! HTTP/1.1 (and 1.0): heads parsed by `httparse`, bodies framed by content length, chunked
//! transfer coding or connection close, streamed frame by frame (never buffered whole).

pub mod decode;
pub mod encode;
pub mod frame;
pub mod matcher;

pub use decode::{RequestDecoder, ResponseDecoder};
pub use frame::{BodyKind, Frame, RequestHead, ResponseHead};

/// Most header lines a head may have (Envoy's `max_headers_count` default); more is 431.
pub const MAX_HEADERS: usize = 100;
