//! Detection of Dubbo from a connection's first bytes: the magic `0xda 0xbb`. HTTP (ASCII
//! letters) and Bolt (0x01 or 0x02) never pass the first byte.

use super::frame::{MAGIC, magic_ok};
use crate::protocol::Match;

/// `Yes` once both magic bytes are seen, `Again` while the bytes are a prefix of the magic,
/// `No` otherwise.
pub fn matches(prefix: &[u8]) -> Match {
    if !magic_ok(prefix) {
        Match::No
    } else if prefix.len() < MAGIC.len() {
        Match::Again
    } else {
        Match::Yes
    }
}
