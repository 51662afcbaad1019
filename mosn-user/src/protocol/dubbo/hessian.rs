//! The little of hessian2 Dubbo's framing needs: reading the strings at the start of a
//! request body (as spans of the frame where they are one run of bytes) and writing a string
//! (the body of an error response).
//!
//! ```text
//! string ::= x52 ('R') b1 b0 <utf8-data> string   non-final chunk, more chunks follow
//!        ::= x53 ('S') b1 b0 <utf8-data>          final chunk
//!        ::= [x00-x1f] <utf8-data>                 0 to 31 characters
//!        ::= [x30-x33] b0 <utf8-data>             0 to 1023 characters
//! null   ::= x4e ('N')
//! ```
//!
//! Lengths count UTF-16 units, as Java's `String` does: a character outside the BMP counts
//! 2, whether it is written as one 4-byte UTF-8 sequence or (as Java's hessian writes it)
//! as two 3-byte surrogate sequences. Strings are written the Java way, so Java peers read
//! them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::xprotocol::Text;

/// Hessian2's null.
pub const NULL: u8 = b'N';
/// Tag of a final chunk with a u16 length.
const FINAL_CHUNK: u8 = b'S';
/// Tag of a non-final chunk with a u16 length.
const CHUNK: u8 = b'R';
/// The largest string written in the compact one-byte form (lengths below 32).
const COMPACT_MAX: usize = 0x1f;
/// Tag base of the two-byte form (lengths below 1024).
const MEDIUM: u8 = 0x30;
const MEDIUM_MAX: usize = 0x3ff;
/// UTF-16 units per chunk when writing (what Java's hessian uses).
const WRITE_CHUNK: usize = 0x8000;

/// Reads the string or null at `at` in `body`: its text (`None` for null; a span of the
/// frame, `body` starting at frame offset `base`, when it is one run of bytes, owned
/// bytes when it is chunked) and the offset after it. The error is the reason it is not a
/// well-formed string within `body`.
pub fn read_string(body: &[u8], at: usize, base: usize) -> Result<(Option<Text>, usize), String> {
    match body.get(at) {
        None => return Err(format!("body ends at offset {at}, a string was expected")),
        Some(&NULL) => return Ok((None, at + 1)),
        Some(_) => {}
    }
    let mut pos = at;
    let mut owned: Option<Vec<u8>> = None;
    loop {
        let (units, last, start) = chunk_header(body, pos)?;
        let end = utf8_end(body, start, units)?;
        if last && owned.is_none() {
            // One run of bytes: a span of the frame.
            let span_end = base
                .checked_add(end)
                .filter(|&e| u32::try_from(e).is_ok())
                .ok_or_else(|| format!("string at offset {at} lies beyond 4 GiB"))?;
            return Ok((Some(Text::span(base + start, span_end)), end));
        }
        owned
            .get_or_insert_with(Vec::new)
            .extend_from_slice(&body[start..end]);
        pos = end;
        if last {
            let bytes = Bytes::from(owned.unwrap_or_default());
            return Ok((Some(Text::Owned(bytes)), pos));
        }
    }
}

/// The chunk header at `pos`: length in UTF-16 units, whether it is the final chunk, and
/// where its data starts.
fn chunk_header(body: &[u8], pos: usize) -> Result<(usize, bool, usize), String> {
    let byte = |i: usize| {
        body.get(i)
            .copied()
            .ok_or_else(|| format!("string header at offset {pos} runs past the body"))
    };
    let tag = byte(pos)?;
    match tag {
        0x00..=0x1f => Ok((usize::from(tag), true, pos + 1)),
        0x30..=0x33 => {
            let len = usize::from(tag - MEDIUM) << 8 | usize::from(byte(pos + 1)?);
            Ok((len, true, pos + 2))
        }
        FINAL_CHUNK | CHUNK => {
            let len = usize::from(u16::from_be_bytes([byte(pos + 1)?, byte(pos + 2)?]));
            Ok((len, tag == FINAL_CHUNK, pos + 3))
        }
        _ => Err(format!(
            "tag {tag:#04x} at offset {pos} does not start a string"
        )),
    }
}

/// Where `units` UTF-16 units of UTF-8 (or CESU-8) data starting at `start` end.
fn utf8_end(body: &[u8], start: usize, units: usize) -> Result<usize, String> {
    let mut i = start;
    let mut left = units;
    while left > 0 {
        let Some(&lead) = body.get(i) else {
            return Err(format!(
                "string of {units} characters from offset {start} runs past the body"
            ));
        };
        let (width, count) = match lead {
            0x00..=0x7f => (1, 1),
            0xc0..=0xdf => (2, 1),
            0xe0..=0xef => (3, 1),
            0xf0..=0xf7 => (4, 2),
            _ => {
                return Err(format!(
                    "byte {lead:#04x} at offset {i} does not start UTF-8"
                ));
            }
        };
        if count > left {
            return Err(format!(
                "4-byte character at offset {i} crosses the end of a {units}-character chunk"
            ));
        }
        let tail = body
            .get(i + 1..i + width)
            .ok_or_else(|| format!("character at offset {i} runs past the body"))?;
        if tail.iter().any(|b| b & 0xc0 != 0x80) {
            return Err(format!(
                "bad UTF-8 continuation in the character at offset {i}"
            ));
        }
        i += width;
        left -= count;
    }
    Ok(i)
}

/// Appends `s` as a hessian2 string: compact below 32 UTF-16 units, the two-byte form
/// below 1024, else chunks of at most 32768 units (`R` ... then a final `S`).
pub fn write_string(dst: &mut BytesMut, s: &str) {
    let units: usize = s.chars().map(char::len_utf16).sum();
    if units <= COMPACT_MAX {
        dst.put_u8(units as u8);
        put_cesu8(dst, s);
        return;
    }
    if units <= MEDIUM_MAX {
        dst.put_u8(MEDIUM + (units >> 8) as u8);
        dst.put_u8(units as u8);
        put_cesu8(dst, s);
        return;
    }
    let mut rest = s;
    loop {
        let mut n = 0;
        let mut split = rest.len();
        for (i, c) in rest.char_indices() {
            if n + c.len_utf16() > WRITE_CHUNK {
                split = i;
                break;
            }
            n += c.len_utf16();
        }
        let (chunk, tail) = rest.split_at(split);
        let last = tail.is_empty();
        dst.put_u8(if last { FINAL_CHUNK } else { CHUNK });
        dst.put_u16(n as u16);
        put_cesu8(dst, chunk);
        if last {
            return;
        }
        rest = tail;
    }
}

/// Appends `s` as Java writes it: UTF-8, except that a character outside the BMP becomes
/// its two UTF-16 surrogates, three bytes each.
fn put_cesu8(dst: &mut BytesMut, s: &str) {
    for c in s.chars() {
        if c.len_utf16() == 1 {
            dst.put_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        } else {
            for u in c.encode_utf16(&mut [0; 2]) {
                dst.put_u8(0xe0 | (*u >> 12) as u8);
                dst.put_u8(0x80 | ((*u >> 6) & 0x3f) as u8);
                dst.put_u8(0x80 | (*u & 0x3f) as u8);
            }
        }
    }
}
