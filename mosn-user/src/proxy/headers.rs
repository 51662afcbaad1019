//! Header handling between the two hops: hop-by-hop fields, `X-Forwarded-For`, and the
//! proxy's own responses.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Version};

use crate::filter::LocalReply;
use crate::protocol::http1::{BodyKind, encode};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes the hop-by-hop fields (RFC 9110 §7.6.1): `Connection` and every field it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`.
/// With `upgrade`, `Connection: upgrade` and `Upgrade` stay (WebSocket passes through).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .filter(|n| !(upgrade && n == UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
    }
    for n in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER, TRANSFER_ENCODING] {
        headers.remove(n);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// The downstream peer's address as an `X-Forwarded-For` element (made once per
/// connection).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .expect("an IP address is a valid header value")
}

/// Appends the downstream peer (`ip`, from [`peer_value`]) to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto` if absent.
pub fn forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let value = match headers.get(X_FORWARDED_FOR) {
        Some(v) if !v.is_empty() => {
            let mut s = BytesMut::with_capacity(v.len() + 2 + ip.len());
            s.put_slice(v.as_bytes());
            s.put_slice(b", ");
            s.put_slice(ip.as_bytes());
            HeaderValue::from_maybe_shared(s.freeze()).ok()
        }
        _ => Some(ip.clone()),
    };
    if let Some(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// Encodes a local reply. `close`: announce and then close the connection.
pub fn local_reply(
    reply: &LocalReply,
    version: Version,
    head_request: bool,
    close: bool,
    dst: &mut BytesMut,
) {
    let mut h = HeaderMap::with_capacity(reply.headers.len() + 3);
    for (n, v) in &reply.headers {
        h.append(n.clone(), v.clone());
    }
    if !reply.body.is_empty() && !h.contains_key(CONTENT_TYPE) {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    if close {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    h.remove(CONTENT_LENGTH);
    let len = reply.body.len() as u64;
    if head_request {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        encode::response_head(version, reply.status, &h, BodyKind::Empty, true, dst);
    } else {
        encode::response_head(version, reply.status, &h, BodyKind::Length(len), false, dst);
        dst.put_slice(&reply.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.append("x-private", "1".parse().unwrap());
        h.append("keep-alive", "timeout=5".parse().unwrap());
        h.append(TE, "trailers".parse().unwrap());
        h.append(UPGRADE, "websocket".parse().unwrap());
        h.append("x-end", "2".parse().unwrap());
        let mut up = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-end"]
        );
        up.insert(CONNECTION, "Upgrade".parse().unwrap());
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up.get(UPGRADE).unwrap(), "websocket");
        assert_eq!(up.get(CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        forwarded_for(&mut h, &peer_value("10.0.0.1".parse().unwrap()));
        assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), "10.0.0.1");
        forwarded_for(&mut h, &peer_value("::ffff:10.0.0.2".parse().unwrap()));
        assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), "10.0.0.1, 10.0.0.2");
        assert_eq!(h.get(X_FORWARDED_PROTO).unwrap(), "http");
    }
}
