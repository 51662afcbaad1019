//! Detection of HTTP/1.x from a connection's first bytes: a known method token followed by
//! a space.

use crate::protocol::Match;

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// `Yes` once a method and a space are seen, `Again` while the bytes are a prefix of one.
pub fn matches(prefix: &[u8]) -> Match {
    let mut again = false;
    for m in METHODS {
        if prefix.len() > m.len() {
            if prefix.starts_with(m) && prefix[m.len()] == b' ' {
                return Match::Yes;
            }
        } else if m.starts_with(prefix) {
            again = true;
        }
    }
    if again { Match::Again } else { Match::No }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_recognised() {
        assert_eq!(matches(b"GET / HTTP/1.1\r\n"), Match::Yes);
        assert_eq!(matches(b"PO"), Match::Again);
        assert_eq!(matches(b""), Match::Again);
        assert_eq!(matches(b"POST"), Match::Again);
        assert_eq!(matches(b"POSTX"), Match::No);
        assert_eq!(matches(&[0x01, 0x01, 0x00]), Match::No, "a Bolt request");
        assert_eq!(matches(&[0xda, 0xbb]), Match::No, "a Dubbo request");
    }
}
