//! Bolt codec tests. Frames are written field by field from the wire layout (the `Wire`
//! builder below, or byte literals), never with the codec's own encoder.

mod decoding;
mod random;
mod replies;

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{BOLT, status};
use crate::protocol::xprotocol::{Hijack, Kind, PoolMode, Text, XFrame, XProtocol};
use crate::protocol::{DecodeError, Match};

const MAX: usize = 1 << 20;

/// A Bolt frame described field by field; `bytes` lays it out as the wire format says.
#[derive(Clone)]
struct Wire {
    /// `Some((ver1, switch))` for v2.
    v2: Option<(u8, u8)>,
    cmd_type: u8,
    cmd_code: u16,
    ver2: u8,
    id: u32,
    codec: u8,
    /// Requests only.
    timeout: i32,
    /// Responses only.
    status: u16,
    class: &'static [u8],
    headers: Vec<(&'static [u8], &'static [u8])>,
    content: &'static [u8],
}

impl Wire {
    fn request() -> Wire {
        Wire {
            v2: None,
            cmd_type: 1,
            cmd_code: 1,
            ver2: 1,
            id: 0x0102_0304,
            codec: 1,
            timeout: 3000,
            status: 0,
            class: b"com.alipay.sofa.rpc.core.request.SofaRequest",
            headers: vec![
                (b"service", b"com.example.Echo:1.0"),
                (b"sofa_head_method_name", b"echo"),
                (b"rpc_trace_context.sofaTraceId", b"0a0b0c"),
            ],
            content: b"\x4f\xbc hessian body",
        }
    }

    fn response() -> Wire {
        Wire {
            cmd_type: 0,
            cmd_code: 2,
            timeout: 0,
            status: 0,
            class: b"com.alipay.sofa.rpc.core.response.SofaResponse",
            headers: vec![(b"rpc_resp_baggage", b"x=1")],
            content: b"\x4f response",
            ..Wire::request()
        }
    }

    fn v2(mut self, ver1: u8, switch: u8) -> Wire {
        self.v2 = Some((ver1, switch));
        self
    }

    fn block(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in &self.headers {
            b.extend((k.len() as u32).to_be_bytes());
            b.extend(*k);
            b.extend((v.len() as u32).to_be_bytes());
            b.extend(*v);
        }
        b
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self.v2 {
            None => b.push(0x01),
            Some((ver1, _)) => b.extend([0x02, ver1]),
        }
        b.push(self.cmd_type);
        b.extend(self.cmd_code.to_be_bytes());
        b.push(self.ver2);
        b.extend(self.id.to_be_bytes());
        b.push(self.codec);
        if let Some((_, switch)) = self.v2 {
            b.push(switch);
        }
        if self.cmd_type == 0 {
            b.extend(self.status.to_be_bytes());
        } else {
            b.extend(self.timeout.to_be_bytes());
        }
        let block = self.block();
        b.extend((self.class.len() as u16).to_be_bytes());
        b.extend((block.len() as u16).to_be_bytes());
        b.extend((self.content.len() as u32).to_be_bytes());
        b.extend(self.class);
        b.extend(&block);
        b.extend(self.content);
        if matches!(self.v2, Some((_, s)) if s & 1 != 0) {
            let sum = crc32fast::hash(&b);
            b.extend(sum.to_be_bytes());
        }
        b
    }

    /// Fixed header length.
    fn fixed(&self) -> usize {
        let base = if self.cmd_type == 0 { 20 } else { 22 };
        base + if self.v2.is_some() { 2 } else { 0 }
    }
}

fn decode_one(bytes: &[u8]) -> XFrame {
    let mut src = BytesMut::from(bytes);
    let f = BOLT
        .decode(&mut src, MAX)
        .expect("decodes")
        .expect("a whole frame");
    assert!(src.is_empty(), "{} bytes left over", src.len());
    f
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    let mut src = BytesMut::from(bytes);
    let e = BOLT.decode(&mut src, MAX).expect_err("an error");
    assert_eq!(&src[..], bytes, "nothing consumed on error");
    e
}

fn header_pairs(f: &XFrame) -> Vec<(Vec<u8>, Vec<u8>)> {
    f.headers
        .iter()
        .map(|(k, v)| (f.text(k).to_vec(), f.text(v).to_vec()))
        .collect()
}

fn wire_pairs(w: &Wire) -> Vec<(Vec<u8>, Vec<u8>)> {
    w.headers
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// Checks every field of `f` against the description it was written from.
fn check_fields(f: &XFrame, w: &Wire) {
    let bytes = w.bytes();
    assert_eq!(&f.raw[..], &bytes[..], "raw is the whole frame");
    assert_eq!(f.request_id, u64::from(w.id));
    assert_eq!(header_pairs(f), wire_pairs(w));
    assert!(!f.headers_changed);
    assert!(
        f.headers
            .iter()
            .all(|(k, v)| matches!(k, Text::Span { .. }) && matches!(v, Text::Span { .. })),
        "header fields are spans of raw"
    );
    let fixed = w.fixed();
    assert_eq!(
        &f.raw[fixed..fixed + w.class.len()],
        w.class,
        "class follows the fixed header"
    );
    let content_at = fixed + w.class.len() + w.block().len();
    assert_eq!(&f.raw[content_at..content_at + w.content.len()], w.content);
}
