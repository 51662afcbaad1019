//! HTTP/1.1 encoding. Heads are written from their header maps; the framing headers
//! (`Content-Length`, `Transfer-Encoding`) are written from the [`BodyKind`] the message is
//! sent with, never copied from the map, so a head can never announce other framing than
//! the body that follows.

use bytes::{BufMut, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Version};

use super::frame::BodyKind;

/// Appends a request head (always HTTP/1.1) for a body sent as `body`.
pub fn request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: BodyKind,
    dst: &mut BytesMut,
) {
    dst.reserve(64 + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
    fields(headers, body, false, dst);
}

/// Appends a response head for a body sent as `body`. `keep_length`: keep the map's
/// `Content-Length` although no body follows (a response to HEAD, or 304).
pub fn response_head(
    version: Version,
    status: http::StatusCode,
    headers: &HeaderMap,
    body: BodyKind,
    keep_length: bool,
    dst: &mut BytesMut,
) {
    dst.reserve(64 + headers.len() * 32);
    dst.put_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    dst.put_slice(b"\r\n");
    fields(headers, body, keep_length, dst);
}

fn fields(headers: &HeaderMap, body: BodyKind, keep_length: bool, dst: &mut BytesMut) {
    for (name, value) in headers {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && !keep_length) {
            continue;
        }
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
    match body {
        BodyKind::Length(n) if !keep_length => {
            dst.put_slice(b"content-length: ");
            put_decimal(n, dst);
            dst.put_slice(b"\r\n");
        }
        BodyKind::Chunked => dst.put_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    dst.put_slice(b"\r\n");
}

/// Appends a piece of body: as is, or as one chunk.
pub fn data(chunked: bool, data: &[u8], dst: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    if chunked {
        dst.reserve(data.len() + 20);
        put_hex(data.len() as u64, dst);
        dst.put_slice(b"\r\n");
        dst.put_slice(data);
        dst.put_slice(b"\r\n");
    } else {
        dst.put_slice(data);
    }
}

/// Appends the end of a chunked body (last chunk, `trailers`, empty line); nothing for
/// other framings.
pub fn end(chunked: bool, trailers: &[u8], dst: &mut BytesMut) {
    if chunked {
        dst.put_slice(b"0\r\n");
        dst.put_slice(trailers);
        dst.put_slice(b"\r\n");
    }
}

fn put_decimal(n: u64, dst: &mut BytesMut) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&buf[i..]);
}

fn put_hex(n: u64, dst: &mut BytesMut) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_comes_from_the_body_kind() {
        let mut h = HeaderMap::new();
        h.insert("host", "a".parse().unwrap());
        h.insert("content-length", "99".parse().unwrap());
        h.insert("transfer-encoding", "gzip".parse().unwrap());
        let mut out = BytesMut::new();
        request_head(&Method::POST, "/x?y=1", &h, BodyKind::Chunked, &mut out);
        assert_eq!(
            &out[..],
            b"POST /x?y=1 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        out.clear();
        response_head(
            Version::HTTP_11,
            http::StatusCode::OK,
            &h,
            BodyKind::Length(12),
            false,
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nhost: a\r\ncontent-length: 12\r\n\r\n"
        );
        out.clear();
        response_head(
            Version::HTTP_11,
            http::StatusCode::OK,
            &h,
            BodyKind::Empty,
            true,
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nhost: a\r\ncontent-length: 99\r\n\r\n"
        );
    }

    #[test]
    fn chunks() {
        let mut out = BytesMut::new();
        data(true, &[b'x'; 300], &mut out);
        end(true, b"x-t: 1\r\n", &mut out);
        let mut expect = b"12c\r\n".to_vec();
        expect.extend_from_slice(&[b'x'; 300]);
        expect.extend_from_slice(b"\r\n0\r\nx-t: 1\r\n\r\n");
        assert_eq!(&out[..], &expect[..]);
        out.clear();
        put_decimal(0, &mut out);
        put_decimal(18446744073709551615, &mut out);
        assert_eq!(&out[..], b"018446744073709551615");
    }
}
