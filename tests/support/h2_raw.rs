//! HTTP/2 frames written by hand, for what no well-behaved client sends (a wrong preface, an
//! oversized frame, HPACK garbage, a CONTINUATION flood, a window overflow, rapid resets), and
//! a reader that parses whatever the server answers into frames.
//!
//! ```text
//! +-----------------------------------------------+
//! |                 Length (24)                   |
//! +---------------+---------------+---------------+
//! |   Type (8)    |   Flags (8)   |
//! +-+-------------+---------------+-------------------------------+
//! |R|                 Stream Identifier (31)                      |
//! +=+=============================================================+
//! |                   Frame Payload (0...)                      ...
//! +---------------------------------------------------------------+
//! ```
//! (RFC 9113 section 4.1)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 section 7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The default SETTINGS_MAX_FRAME_SIZE: a larger frame is a FRAME_SIZE_ERROR.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// One frame: the 9-byte header and the payload.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24, "frame length fits 24 bits");
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// SETTINGS with the given (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

pub fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

/// The preface and an empty SETTINGS: what a client sends first.
pub fn client_start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings(&[]));
    v
}

pub fn headers(stream: u32, block: &[u8], end_stream: bool, end_headers: bool) -> Vec<u8> {
    let flags = if end_stream { END_STREAM } else { 0 } | if end_headers { END_HEADERS } else { 0 };
    frame(HEADERS, flags, stream, block)
}

pub fn continuation(stream: u32, block: &[u8], end_headers: bool) -> Vec<u8> {
    frame(
        CONTINUATION,
        if end_headers { END_HEADERS } else { 0 },
        stream,
        block,
    )
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(
        WINDOW_UPDATE,
        0,
        stream,
        &(increment & 0x7fff_ffff).to_be_bytes(),
    )
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn ping(opaque: [u8; 8]) -> Vec<u8> {
    frame(PING, 0, 0, &opaque)
}

/// An HPACK block for `GET http://x<path>`, no Huffman, no dynamic table: `:method GET`,
/// `:scheme http` (static indexes 2 and 6), `:path` and `:authority` as literals without
/// indexing whose names are static indexes 4 and 1.
pub fn hpack_get(path: &str) -> Vec<u8> {
    assert!(path.len() < 127, "one-byte HPACK length");
    let mut b = vec![0x82, 0x86];
    b.push(0x04);
    b.push(path.len() as u8);
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&[0x01, 0x01, b'x']);
    b
}

/// A literal header field without indexing, new name: `0x00, len, name, len, value` (both
/// under 127 bytes). Used to pad CONTINUATION frames with well-formed HPACK.
pub fn hpack_literal(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// A frame as read back.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// (last stream id, error code) of a GOAWAY.
    pub fn goaway(&self) -> Option<(u32, u32)> {
        (self.ty == GOAWAY && self.payload.len() >= 8).then(|| {
            (
                u32::from_be_bytes(self.payload[0..4].try_into().unwrap()) & 0x7fff_ffff,
                u32::from_be_bytes(self.payload[4..8].try_into().unwrap()),
            )
        })
    }

    /// The error code of an RST_STREAM.
    pub fn rst(&self) -> Option<u32> {
        (self.ty == RST_STREAM && self.payload.len() == 4)
            .then(|| u32::from_be_bytes(self.payload[..4].try_into().unwrap()))
    }
}

/// Everything the server sent until it closed (or the limit passed).
#[derive(Debug, Clone)]
pub struct Transcript {
    pub frames: Vec<RawFrame>,
    /// The server closed the connection (EOF or reset) within the limit.
    pub closed: bool,
    /// Bytes at the end that did not form a whole frame (e.g. an HTTP/1 answer).
    pub leftover: Vec<u8>,
}

impl Transcript {
    /// The (last stream id, code) of the first GOAWAY.
    pub fn goaway(&self) -> Option<(u32, u32)> {
        self.frames.iter().find_map(RawFrame::goaway)
    }

    /// The code of the first RST_STREAM on `stream`.
    pub fn rst(&self, stream: u32) -> Option<u32> {
        self.frames
            .iter()
            .filter(|f| f.stream == stream)
            .find_map(RawFrame::rst)
    }

    /// Frame types in order, for failure messages.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .frames
            .iter()
            .map(|f| match (f.goaway(), f.rst()) {
                (Some((last, code)), _) => format!("GOAWAY(last={last},code={code:#x})"),
                (_, Some(code)) => format!("RST_STREAM({},code={code:#x})", f.stream),
                _ => format!("type{:#x}/flags{:#x}/s{}", f.ty, f.flags, f.stream),
            })
            .collect();
        format!(
            "{names:?} closed={} leftover={:?}",
            self.closed,
            String::from_utf8_lossy(&self.leftover[..self.leftover.len().min(80)])
        )
    }
}

/// A client connection speaking raw frames.
pub struct RawConn {
    pub tcp: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let tcp = TcpStream::connect(addr).await.expect("connect (raw h2)");
        tcp.set_nodelay(true).unwrap();
        RawConn {
            tcp,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Writes `bytes`; false if the server had already closed (expected in flood tests).
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// The next whole frame, answering the server's SETTINGS with an ACK on the way. `None`
    /// on close or when `limit` passes.
    pub async fn next_frame(&mut self, limit: Duration) -> Option<RawFrame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(f) = self.parse_one() {
                if f.ty == SETTINGS && f.flags & ACK == 0 {
                    let _ = self.tcp.write_all(&settings_ack()).await;
                }
                return Some(f);
            }
            if self.closed {
                return None;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse_one(&mut self) -> Option<RawFrame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = (usize::from(self.buf[0]) << 16)
            | (usize::from(self.buf[1]) << 8)
            | usize::from(self.buf[2]);
        if self.buf.len() < 9 + len {
            return None;
        }
        let f = RawFrame {
            ty: self.buf[3],
            flags: self.buf[4],
            stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload: self.buf[9..9 + len].to_vec(),
        };
        self.buf.drain(..9 + len);
        Some(f)
    }

    /// Reads frames until `pred` matches one (returned) or the connection closes or `limit`
    /// passes (`None`). Frames read on the way are dropped.
    pub async fn until(
        &mut self,
        limit: Duration,
        pred: impl Fn(&RawFrame) -> bool,
    ) -> Option<RawFrame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.next_frame(left).await?;
            if pred(&f) {
                return Some(f);
            }
        }
    }

    /// Reads everything until the server closes or `limit` passes.
    pub async fn transcript(mut self, limit: Duration) -> Transcript {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(f) => frames.push(f),
                None => break,
            }
        }
        Transcript {
            frames,
            closed: self.closed,
            leftover: std::mem::take(&mut self.buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_layout() {
        let f = frame(HEADERS, END_HEADERS | END_STREAM, 0x8000_0003, b"abc");
        assert_eq!(&f[..9], &[0, 0, 3, 0x1, 0x5, 0, 0, 0, 3], "R bit cleared");
        assert_eq!(&f[9..], b"abc");
        let w = window_update(0, 0x7fff_ffff);
        assert_eq!(w, vec![0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        let g = RawFrame {
            ty: GOAWAY,
            flags: 0,
            stream: 0,
            payload: vec![0, 0, 0, 5, 0, 0, 0, 0xb],
        };
        assert_eq!(g.goaway(), Some((5, ENHANCE_YOUR_CALM)));
    }

    #[test]
    fn hpack_get_decodes_with_the_h2_crate_rules() {
        // Indexed :method GET (2) and :scheme http (6), then literal :path and :authority.
        let b = hpack_get("/a");
        assert_eq!(b, vec![0x82, 0x86, 0x04, 2, b'/', b'a', 0x01, 1, b'x']);
    }
}
