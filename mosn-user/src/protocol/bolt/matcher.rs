//! Detection of Bolt from a connection's first bytes: a protocol byte (0x01 or 0x02), then a
//! `type` and `cmdcode` pair Bolt uses. HTTP (ASCII letters) and Dubbo (0xda 0xbb) never pass
//! the first byte.

use super::frame::{Version, kind_of};
use crate::protocol::Match;

/// `Yes` once the protocol byte, type and command code are read and plausible, `Again`
/// while fewer bytes than that are there and those are plausible, `No` otherwise.
pub fn matches(prefix: &[u8]) -> Match {
    let Some(&proto) = prefix.first() else {
        return Match::Again;
    };
    let Some(version) = Version::from_proto(proto) else {
        return Match::No;
    };
    let type_at = version.type_at();
    let Some(&cmd_type) = prefix.get(type_at) else {
        return Match::Again;
    };
    let known = |code: u16| kind_of(cmd_type, code).is_some();
    let at = version.cmd_code_at();
    match prefix.get(at..at + 2) {
        Some(c) if known(u16::from_be_bytes([c[0], c[1]])) => Match::Yes,
        Some(_) => Match::No,
        None => {
            // At most the code's high byte so far; every code Bolt uses is below 256.
            let high_zero = prefix.get(at).is_none_or(|&hi| hi == 0);
            if high_zero && (0..=2).any(known) {
                Match::Again
            } else {
                Match::No
            }
        }
    }
}
