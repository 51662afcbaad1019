//! The ClientHello inspector (`protocol::tls::inspect`) on arbitrary bytes, twice: the input
//! as the first bytes of a connection, and the input as the body of a ClientHello handshake
//! message (wrapped in records here, so the fuzzer reaches the extension parser without
//! having to find the record framing first). What must hold for any input:
//! - `inspect` never panics, and reads nothing past `MAX_CLIENT_HELLO`;
//! - an answer other than `Again` never changes when more bytes arrive: every prefix is
//!   `Again` or the answer for the whole input;
//! - it agrees with `looks_like_tls` and with its own `matches()`;
//! - a hello's fields are what the parser promises (SNI lowercased ASCII, 1 to 255 bytes;
//!   ALPN names non-empty; a TLS major version);
//! - the same handshake message in records of another size (from the input's last byte)
//!   or in one record gives the same hello, and a hello written afresh from the fields that
//!   came out reads back as the same fields.

use crate::protocol::Match;
use crate::protocol::tls::{ClientHello, Inspect, MAX_CLIENT_HELLO, inspect, looks_like_tls};

use super::knobs;

/// Prefix lengths looked at one by one from the start (the record and handshake headers,
/// the fixed fields) and from the end (the last extension).
const EDGE_PREFIXES: usize = 64;
/// Prefix lengths looked at evenly spaced in between.
const SPACED_PREFIXES: usize = 128;
/// The largest record fragment, as in RFC 8446 §5.1 (written out again here, not taken from
/// the code under test).
const FRAGMENT: usize = 1 << 14;

/// Checks the inspector on `data`.
pub fn client_hello(data: &[u8]) {
    let step = knobs(data).step;
    connection(data, step);
    // As the body of a ClientHello (a 24-bit length covers any input the fuzzer makes).
    if data.len() < 1 << 24 {
        let n = data.len();
        let mut message = vec![1, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        message.extend_from_slice(data);
        connection(&records(&message, FRAGMENT), step);
        connection(&records(&message, step), step);
    }
}

/// `bytes` as the first bytes of a connection.
fn connection(bytes: &[u8], step: usize) {
    let whole = inspect(bytes);
    let capped = &bytes[..bytes.len().min(MAX_CLIENT_HELLO)];
    assert_eq!(
        inspect(capped),
        whole,
        "bytes past the limit changed the answer"
    );
    if bytes.len() > MAX_CLIENT_HELLO {
        assert_ne!(whole, Inspect::Again, "still waiting past the limit");
    }
    for n in prefixes(bytes.len()) {
        let got = inspect(&bytes[..n]);
        assert!(
            got == Inspect::Again || got == whole,
            "{n} of {} bytes: {got:?}, all of them: {whole:?}",
            bytes.len()
        );
    }
    assert_eq!(
        whole.matches(),
        match &whole {
            Inspect::Hello(_) => Match::Yes,
            Inspect::Again => Match::Again,
            Inspect::NotTls | Inspect::TooLarge => Match::No,
        }
    );
    match looks_like_tls(bytes) {
        Some(false) => assert_eq!(whole, Inspect::NotTls, "not TLS by its first bytes"),
        None => assert!(
            matches!(whole, Inspect::Again | Inspect::NotTls),
            "{whole:?}"
        ),
        Some(true) => {}
    }
    if let Inspect::Hello(h) = &whole {
        fields(h);
        let message = message_of(bytes);
        assert_eq!(
            inspect(&records(&message, step)),
            whole,
            "in records of {step}"
        );
        assert_eq!(
            inspect(&records(&message, FRAGMENT)),
            whole,
            "in one record"
        );
        let fresh = hello_from(h);
        assert_eq!(inspect(&fresh), whole, "written afresh: {fresh:02x?}");
    }
}

/// The prefix lengths checked: the first and last few, and some evenly spaced.
fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let spaced = (len / SPACED_PREFIXES).max(1);
    (0..len.min(EDGE_PREFIXES))
        .chain((0..len).step_by(spaced))
        .chain(len.saturating_sub(EDGE_PREFIXES)..len)
}

fn fields(h: &ClientHello) {
    if let Some(name) = &h.server_name {
        assert!(
            (1..=255).contains(&name.len()),
            "SNI of {} bytes",
            name.len()
        );
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "SNI {name:?}"
        );
    }
    assert!(h.alpn.iter().all(|p| !p.is_empty() && p.len() < 256));
    assert_eq!(
        h.legacy_version >> 8,
        3,
        "legacy_version {:#06x}",
        h.legacy_version
    );
}

/// The handshake message at the front of `bytes`, out of its records (the inspector found a
/// hello there, so the records are whole up to its end).
fn message_of(bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        if let Some(l) = message.get(1..4) {
            let len = 4 + (usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]));
            if message.len() >= len {
                message.truncate(len);
                return message;
            }
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let end = (5 + len).min(rest.len());
        message.extend_from_slice(&rest[5..end]);
        rest = &rest[end..];
    }
}

/// `message` in handshake records of at most `size` bytes.
fn records(message: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / size * 5 + 5);
    for piece in message.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// A ClientHello carrying `h`'s fields, laid out from RFC 8446 §4.1.2, in one record.
fn hello_from(h: &ClientHello) -> Vec<u8> {
    let vec16 = |out: &mut Vec<u8>, data: &[u8]| {
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    };
    let mut extensions = Vec::new();
    if let Some(name) = &h.server_name {
        let mut entry = vec![0];
        vec16(&mut entry, name.as_bytes());
        let mut list = Vec::new();
        vec16(&mut list, &entry);
        extensions.extend_from_slice(&0u16.to_be_bytes());
        vec16(&mut extensions, &list);
    }
    if !h.alpn.is_empty() {
        let mut names = Vec::new();
        for p in &h.alpn {
            names.push(p.len() as u8);
            names.extend_from_slice(p);
        }
        let mut list = Vec::new();
        vec16(&mut list, &names);
        extensions.extend_from_slice(&16u16.to_be_bytes());
        vec16(&mut extensions, &list);
    }
    let mut body = h.legacy_version.to_be_bytes().to_vec();
    body.extend_from_slice(&[0; 32]); // random
    body.push(0); // session_id
    vec16(&mut body, &[0x13, 0x01]);
    body.extend_from_slice(&[1, 0]); // compression_methods: null
    vec16(&mut body, &extensions);
    let n = body.len();
    let mut message = vec![1, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    message.extend_from_slice(&body);
    records(&message, FRAGMENT)
}
