//! HTTP/2 as far as the codec layer goes: telling a prior-knowledge (h2c) connection from its
//! first bytes. Framing, HPACK, flow control and SETTINGS are the `h2` crate's; the proxy
//! drives it (`proxy/h2/`, `stream/h2.rs`).

use crate::protocol::Match;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `Yes` once the whole preface is seen, `Again` while the bytes are a prefix of it.
pub fn matches(prefix: &[u8]) -> Match {
    let n = prefix.len().min(PREFACE.len());
    if prefix[..n] != PREFACE[..n] {
        Match::No
    } else if n == PREFACE.len() {
        Match::Yes
    } else {
        Match::Again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_and_nothing_else() {
        assert_eq!(matches(PREFACE), Match::Yes);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(matches(&more), Match::Yes);
        assert_eq!(matches(b"PRI * HTTP/2"), Match::Again);
        assert_eq!(matches(b""), Match::Again);
        assert_eq!(matches(b"PRI * HTTP/1.1\r\n"), Match::No);
        assert_eq!(matches(b"GET / HTTP/1.1\r\n"), Match::No);
    }
}
