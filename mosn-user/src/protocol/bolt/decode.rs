//! Decoding of Bolt frames (v1 and v2, per frame) into [`XFrame`]s: the bytes are split off
//! whole, header fields, service and method become spans of them.

use std::time::Duration;

use bytes::BytesMut;

use super::frame::{CRC_LEN, HEADER_METHOD, HEADER_SERVICE, HEADER_TARGET_SERVICE, Layout, u32_at};
use crate::protocol::DecodeError;
use crate::protocol::xprotocol::{Text, XFrame, whole_frame};

/// Decodes the next frame from the front of `src` (see [`crate::protocol::xprotocol::XProtocol::decode`]).
/// Nothing is consumed unless a whole, valid frame is returned.
pub fn decode(src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError> {
    let Some(layout) = Layout::parse(src)? else {
        return Ok(None);
    };
    let Some(total) = whole_frame(src, layout.total(), max_frame)? else {
        return Ok(None);
    };
    let frame = &src[..total];
    if layout.crc {
        let body = total - CRC_LEN;
        let want = u32_at(frame, body).unwrap_or_default();
        let got = crc32fast::hash(&frame[..body]);
        if want != got {
            return Err(DecodeError::malformed(
                "bolt frame",
                format!("CRC32 {want:#010x} does not match the frame's {got:#010x}"),
            ));
        }
    }
    let start = layout.header_start();
    let block = &frame[start..layout.content_start()];
    let count = walk_headers(block, start, |_, _| {})?;
    let mut headers = Vec::with_capacity(count);
    walk_headers(block, start, |k, v| headers.push((k, v)))?;

    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| span_of(frame, k) == name.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let service = find(HEADER_SERVICE).or_else(|| find(HEADER_TARGET_SERVICE));
    let method = find(HEADER_METHOD);
    let timeout = (layout.kind.is_request() && layout.timeout_ms > 0)
        .then(|| Duration::from_millis(layout.timeout_ms as u64));

    Ok(Some(XFrame {
        kind: layout.kind,
        request_id: u64::from(layout.request_id),
        status: layout.status,
        timeout,
        raw: src.split_to(total),
        headers,
        service,
        method,
        headers_changed: false,
    }))
}

/// The bytes a span of `frame` covers (header keys here are always spans).
fn span_of<'a>(frame: &'a [u8], t: &Text) -> &'a [u8] {
    match t {
        Text::Span { start, end } => frame
            .get(*start as usize..*end as usize)
            .unwrap_or_default(),
        _ => &[],
    }
}

/// Calls `field` with each key and value of a header block as spans (offsets from the frame
/// start, the block beginning at `base`) and returns how many fields there were; an error if
/// the block is not exactly a sequence of length-prefixed keys and values.
fn walk_headers(
    block: &[u8],
    base: usize,
    mut field: impl FnMut(Text, Text),
) -> Result<usize, DecodeError> {
    let mut at = 0;
    let mut count = 0;
    while at < block.len() {
        let (key, next) = string_at(block, at, base, "key")?;
        let (value, next) = string_at(block, next, base, "value")?;
        field(key, value);
        count += 1;
        at = next;
    }
    Ok(count)
}

/// The length-prefixed string at `at` in `block` as a span, and the offset after it.
fn string_at(
    block: &[u8],
    at: usize,
    base: usize,
    what: &str,
) -> Result<(Text, usize), DecodeError> {
    let bad = |reason: String| DecodeError::malformed("bolt header block", reason);
    let len = u32_at(block, at).ok_or_else(|| {
        bad(format!(
            "{} bytes left at offset {at} of {}, too few for a {what} length",
            block.len() - at,
            block.len()
        ))
    })?;
    let start = at + 4;
    let end = start
        .checked_add(len as usize)
        .filter(|&end| end <= block.len())
        .ok_or_else(|| {
            bad(format!(
                "{what} of {len} bytes at offset {start} runs past the block's {} bytes",
                block.len()
            ))
        })?;
    Ok((Text::span(base + start, base + end), end))
}
