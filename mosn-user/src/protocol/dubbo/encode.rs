//! Building Dubbo frames: forwarding (raw bytes), request id patching, heartbeats and the
//! proxy's own error responses.

use bytes::{BufMut, BytesMut};

use super::frame::{
    BODY_LEN_AT, FLAG_AT, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_LEN, ID_AT, MAGIC,
    SERIALIZATION_HESSIAN2, SERIALIZATION_MASK, status,
};
use super::hessian::{NULL, write_string};
use crate::protocol::xprotocol::{Kind, XFrame};

/// What a codec error reply says.
pub const CODEC_ERROR_MESSAGE: &str = "bad request: undecodable frame";

/// Appends `frame` to `dst`: always its raw bytes (see the note on the `XProtocol` impl:
/// changed headers are not written back into the body).
pub fn encode(frame: &XFrame, dst: &mut BytesMut) {
    dst.extend_from_slice(&frame.raw);
}

/// Patches the request id in `frame`'s raw bytes and sets `frame.request_id`.
pub fn set_request_id(frame: &mut XFrame, id: u64) {
    if let Some(field) = frame.raw.get_mut(ID_AT..ID_AT + 8) {
        field.copy_from_slice(&id.to_be_bytes());
    }
    frame.request_id = id;
}

/// A frame with the given header fields and the body `body` appends (its length filled in).
fn build(flag: u8, status: u8, id: u64, body: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::with_capacity(HEADER_LEN + 64);
    b.put_slice(&MAGIC);
    b.put_u8(flag);
    b.put_u8(status);
    b.put_u64(id);
    b.put_u32(0);
    body(&mut b);
    // Bodies built here are a null or a proxy-made message; a message past 4 GiB would
    // have its length saturate rather than wrap.
    let len = u32::try_from(b.len() - HEADER_LEN).unwrap_or(u32::MAX);
    b[BODY_LEN_AT..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    b
}

/// A heartbeat request with `id`: a hessian2 two-way event whose body is null.
pub fn heartbeat(id: u64) -> BytesMut {
    let flag = FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | SERIALIZATION_HESSIAN2;
    build(flag, 0, id, |b| b.put_u8(NULL))
}

/// The serialization id of request `req` (hessian2 if its raw bytes are too short to say).
fn serialization_of(req: &XFrame) -> u8 {
    req.raw
        .get(FLAG_AT)
        .map_or(SERIALIZATION_HESSIAN2, |f| f & SERIALIZATION_MASK)
}

/// Whether `req` is an event (its flag's event bit, or a heartbeat however it was made).
fn is_event(req: &XFrame) -> bool {
    req.kind == Kind::Heartbeat || req.raw.get(FLAG_AT).is_some_and(|f| f & FLAG_EVENT != 0)
}

/// The reply to heartbeat `req`: an OK event response with its id and serialization, body
/// null.
pub fn heartbeat_reply(req: &XFrame) -> BytesMut {
    let flag = FLAG_EVENT | serialization_of(req);
    build(flag, status::OK, req.request_id, |b| b.put_u8(NULL))
}

/// An error response to request `req` with `status` and a hessian2 string `message` as
/// its body; `None` when nothing may be answered (oneway requests, responses).
pub fn error_response(req: &XFrame, status: u8, message: &str) -> Option<BytesMut> {
    if !matches!(req.kind, Kind::Request | Kind::Heartbeat) {
        return None;
    }
    let event = if is_event(req) { FLAG_EVENT } else { 0 };
    let flag = event | serialization_of(req);
    Some(build(flag, status, req.request_id, |b| {
        write_string(b, message)
    }))
}

/// A bad-request response addressed from the fixed header at the start of `src`, if it is
/// there, has the magic and is a two-way request.
pub fn codec_error_reply(src: &[u8]) -> Option<BytesMut> {
    let h = src.get(..HEADER_LEN)?;
    if h[..2] != MAGIC {
        return None;
    }
    let flag = h[FLAG_AT];
    if flag & (FLAG_REQUEST | FLAG_TWO_WAY) != FLAG_REQUEST | FLAG_TWO_WAY {
        return None;
    }
    let mut id = [0; 8];
    id.copy_from_slice(&h[ID_AT..ID_AT + 8]);
    let reply_flag = flag & (FLAG_EVENT | SERIALIZATION_MASK);
    Some(build(
        reply_flag,
        status::BAD_REQUEST,
        u64::from_be_bytes(id),
        |b| write_string(b, CODEC_ERROR_MESSAGE),
    ))
}
