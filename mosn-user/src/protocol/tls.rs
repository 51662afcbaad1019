//! TLS as far as the codec layer goes: reading a connection's ClientHello from its first bytes
//! (peeked, not consumed), the way Envoy's `tls_inspector` listener filter does, so that a
//! listener can pick a filter chain by SNI and ALPN, or pass the bytes through untouched.
//! The handshake itself is rustls' (`network::Conn`); nothing here decrypts or answers.
//!
//! ```text
//! TLSPlaintext record (RFC 8446 §5.1), repeated while the handshake message spans records:
//!  +------+---------+---------+=====================+
//!  | 0x16 | version | length  | fragment (<= 2^14)  |   type 22 = handshake
//!  |  1   |    2    |    2    |      length         |
//!  +------+---------+---------+=====================+
//! Handshake message, reassembled from the fragments (§4):
//!  +------+----------+--------------------------------------------------------------+
//!  | 0x01 | length 3 | legacy_version 2 | random 32 | session_id <0..32>            |
//!  +------+----------+ cipher_suites <2..2^16-2> | compression_methods <1..2^8-1>   |
//!                    | extensions <0..2^16-1>: (type 2, length 2, data)*            |
//!                    +--------------------------------------------------------------+
//! server_name (type 0, RFC 6066 §3): list <1..2^16-1> of (name_type 1, name <1..2^16-1>)
//! ALPN (type 16, RFC 7301 §3.1):     list <2..2^16-1> of (name <1..2^8-1>)
//! ```
//!
//! [`inspect`] answers with its own enum rather than [`Match`](super::Match) because a
//! `Yes` carries the hello's fields and "too large" is not the same as "not TLS"; the
//! [`Inspect::matches`] view gives the plain `Match` for protocol detection.
//!
//! The parse is strict where the RFCs say MUST (lengths that add up exactly, no zero-length
//! handshake records, no duplicate extensions, at most one host_name) and decides as early as
//! the bytes allow: a prefix that already breaks the format is `NotTls` at once, so a plaintext
//! client is not kept waiting for bytes it will never send. An answer other than `Again`
//! never changes when more bytes arrive, and bytes past [`MAX_CLIENT_HELLO`] are never read.

use std::borrow::Cow;

use crate::protocol::Match;

/// Record content type of handshake messages.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// A record's header: type, version, length.
const RECORD_HEADER: usize = 5;
/// Largest record fragment (RFC 8446 §5.1: 2^14 bytes of plaintext).
const MAX_FRAGMENT: usize = 16 * 1024;
/// A handshake message's header: type and a 24-bit length.
const HANDSHAKE_HEADER: usize = 4;
/// Extension types read here.
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// `NameType.host_name` in the server_name list.
const HOST_NAME: u8 = 0;
/// Longest host name accepted (DNS names are at most 253 characters; BoringSSL's limit).
const MAX_HOST_NAME: usize = 255;

/// The most bytes of a connection the inspector reads: one record of the largest size. A
/// hello that does not end within them is [`Inspect::TooLarge`]; real ones are well under
/// 2 KiB (a post-quantum key share included), so this bounds a peek buffer without
/// turning clients away.
pub const MAX_CLIENT_HELLO: usize = MAX_FRAGMENT + RECORD_HEADER;

/// What a ClientHello offers, as far as choosing a filter chain goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The `host_name` of the server_name extension (SNI), lowercased; `None` without one.
    pub server_name: Option<String>,
    /// The ALPN protocol names in the client's order (`b"h2"`, `b"http/1.1"`); empty without
    /// the extension.
    pub alpn: Vec<Vec<u8>>,
    /// The hello's `legacy_version` (0x0303 for TLS 1.2 and 1.3 clients, 0x0301 for TLS 1.0).
    pub legacy_version: u16,
}

impl ClientHello {
    /// Whether the client offers this ALPN protocol.
    pub fn offers(&self, protocol: &[u8]) -> bool {
        self.alpn.iter().any(|p| p == protocol)
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspect {
    /// A complete, well-formed ClientHello (bytes after it are not looked at).
    Hello(ClientHello),
    /// Not a TLS ClientHello: another protocol, an SSLv2-compatible hello, a record that is
    /// not a handshake, or a hello whose lengths or extensions are malformed. A listener
    /// treats the connection as plaintext (Envoy's `tls_not_found`).
    NotTls,
    /// Not enough bytes to tell; peek again when more have arrived.
    Again,
    /// A handshake that looks like TLS but whose ClientHello does not end within
    /// [`MAX_CLIENT_HELLO`] bytes (Envoy's `client_hello_too_large`: close the connection).
    TooLarge,
}

impl Inspect {
    /// As protocol detection sees it: `Yes` for a hello, `No` for anything else decided.
    pub fn matches(&self) -> Match {
        match self {
            Inspect::Hello(_) => Match::Yes,
            Inspect::NotTls | Inspect::TooLarge => Match::No,
            Inspect::Again => Match::Again,
        }
    }
}

/// MOSN's quick test on the first bytes (`pkg/mtls`): a handshake record (0x16) with major
/// version 3. `None` while there are too few bytes to tell.
pub fn looks_like_tls(buf: &[u8]) -> Option<bool> {
    match buf {
        [] | [CONTENT_HANDSHAKE] => None,
        [CONTENT_HANDSHAKE, 3, ..] => Some(true),
        _ => Some(false),
    }
}

/// Reads a ClientHello from the first bytes of a connection (as peeked, not consumed). The
/// handshake message may span several records and the records several reads; `buf` is
/// everything received so far. Never panics, whatever the bytes.
pub fn inspect(buf: &[u8]) -> Inspect {
    let buf = &buf[..buf.len().min(MAX_CLIENT_HELLO)];
    match read(buf) {
        Ok(hello) => Inspect::Hello(hello),
        Err(Stop::Bad) => Inspect::NotTls,
        Err(Stop::TooLarge) => Inspect::TooLarge,
        Err(Stop::Short) if buf.len() == MAX_CLIENT_HELLO => Inspect::TooLarge,
        Err(Stop::Short) => Inspect::Again,
    }
}

/// Why reading stopped short of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes so far are a valid beginning; more are needed.
    Short,
    /// The bytes break the format.
    Bad,
    /// The hello announces more bytes than [`MAX_CLIENT_HELLO`] can hold.
    TooLarge,
}

fn read(buf: &[u8]) -> Result<ClientHello, Stop> {
    let (message, declared) = reassemble(buf)?;
    let hello = Reader::new(&message, declared);
    parse_hello(hello)
}

/// Collects the handshake message's bytes from consecutive handshake records: the bytes
/// available so far (borrowed when they lie in the first record) and the message's declared
/// length (header included). Errors come in byte order, so a prefix that is already wrong
/// is `Bad` however many bytes follow.
fn reassemble(buf: &[u8]) -> Result<(Cow<'_, [u8]>, usize), Stop> {
    let mut message: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut at = 0;
    loop {
        let fragment = match record(buf.get(at..).unwrap_or_default()) {
            Ok(f) => f,
            // The records so far end where the buffer does: parse the message as it stands.
            Err(Stop::Short) if !message.is_empty() => {
                let declared = handshake_len(&message)?.ok_or(Stop::Short)?;
                return Ok((message, declared));
            }
            Err(e) => return Err(e),
        };
        at += RECORD_HEADER + fragment.len();
        if message.is_empty() {
            message = Cow::Borrowed(fragment);
        } else {
            message.to_mut().extend_from_slice(fragment);
        }
        let declared = handshake_len(&message)?;
        // A record cut short: parse what there is (it may already be wrong).
        let available = at <= buf.len();
        if let Some(declared) = declared {
            if message.len() >= declared {
                let message = match message {
                    Cow::Borrowed(m) => Cow::Borrowed(m.get(..declared).ok_or(Stop::Bad)?),
                    Cow::Owned(mut m) => {
                        m.truncate(declared);
                        Cow::Owned(m)
                    }
                };
                return Ok((message, declared));
            }
            if !available {
                return Ok((message, declared));
            }
        } else if !available {
            return Err(Stop::Short);
        }
    }
}

/// The fragment of the record at the front of `buf`, as much of it as `buf` holds. The
/// header is checked byte by byte as it arrives.
fn record(buf: &[u8]) -> Result<&[u8], Stop> {
    match buf.first() {
        None => return Err(Stop::Short),
        Some(&CONTENT_HANDSHAKE) => {}
        // SSLv2-compatible hellos (high bit set), alerts, application data, plaintext.
        Some(_) => return Err(Stop::Bad),
    }
    match buf.get(1) {
        None => return Err(Stop::Short),
        Some(3) => {}
        Some(_) => return Err(Stop::Bad),
    }
    // Any minor version: clients send 0x0301 or 0x0303 in the record; TLS 1.3 ignores it.
    let len = match buf.get(3..RECORD_HEADER) {
        None => return Err(Stop::Short),
        Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
    };
    if len == 0 || len > MAX_FRAGMENT {
        // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
        return Err(Stop::Bad);
    }
    let end = (RECORD_HEADER + len).min(buf.len());
    buf.get(RECORD_HEADER..end).ok_or(Stop::Short)
}

/// The whole handshake message's length (header included) once its header is in, checking
/// that it is a ClientHello that can fit.
fn handshake_len(message: &[u8]) -> Result<Option<usize>, Stop> {
    match message.first() {
        None => return Ok(None),
        Some(&CLIENT_HELLO) => {}
        Some(_) => return Err(Stop::Bad),
    }
    let Some(l) = message.get(1..HANDSHAKE_HEADER) else {
        return Ok(None);
    };
    let len =
        HANDSHAKE_HEADER + (usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]));
    // At least one record header in front of it.
    if len + RECORD_HEADER > MAX_CLIENT_HELLO {
        return Err(Stop::TooLarge);
    }
    Ok(Some(len))
}

/// A cursor over length-delimited fields: `buf` is what has arrived, `end` where the
/// enclosing field ends by its declared length. Reading past `end` is malformed; past the
/// bytes available (but within `end`) is short.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], end: usize) -> Reader<'a> {
        Reader { buf, at: 0, end }
    }

    fn left(&self) -> usize {
        self.end - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let to = self.at.checked_add(n).ok_or(Stop::Bad)?;
        if to > self.end {
            return Err(Stop::Bad);
        }
        let bytes = self.buf.get(self.at..to).ok_or(Stop::Short)?;
        self.at = to;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), Stop> {
        self.take(n).map(drop)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Stop> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A sub-reader over the next `n` bytes (which need not have arrived yet); this reader
    /// moves past them.
    fn sub(&mut self, n: usize) -> Result<Reader<'a>, Stop> {
        let to = self.at.checked_add(n).ok_or(Stop::Bad)?;
        if to > self.end {
            return Err(Stop::Bad);
        }
        let sub = Reader {
            buf: self.buf,
            at: self.at,
            end: to,
        };
        self.at = to;
        Ok(sub)
    }

    /// A vector with a one-byte length, of `min..` bytes.
    fn vec8(&mut self, min: usize) -> Result<Reader<'a>, Stop> {
        let n = usize::from(self.u8()?);
        if n < min {
            return Err(Stop::Bad);
        }
        self.sub(n)
    }

    /// A vector with a two-byte length, of `min..` bytes.
    fn vec16(&mut self, min: usize) -> Result<Reader<'a>, Stop> {
        let n = usize::from(self.u16()?);
        if n < min {
            return Err(Stop::Bad);
        }
        self.sub(n)
    }

    /// Every byte up to `end` has arrived.
    fn arrived(&self) -> Result<(), Stop> {
        if self.buf.len() >= self.end {
            Ok(())
        } else {
            Err(Stop::Short)
        }
    }

    /// All of this reader's bytes consumed (a vector's contents add up to its length).
    fn done(&self) -> Result<(), Stop> {
        if self.at == self.end {
            Ok(())
        } else {
            Err(Stop::Bad)
        }
    }
}

/// The ClientHello in `r` (its handshake header first). Short when the available bytes run
/// out before anything is found wrong.
fn parse_hello(mut r: Reader<'_>) -> Result<ClientHello, Stop> {
    r.skip(HANDSHAKE_HEADER)?;
    let legacy_version = r.u16()?;
    if legacy_version >> 8 != 3 {
        return Err(Stop::Bad);
    }
    r.skip(32)?; // random
    let session_id = r.vec8(0)?;
    if session_id.left() > 32 {
        return Err(Stop::Bad);
    }
    let suites = r.vec16(2)?;
    if suites.left() % 2 != 0 {
        return Err(Stop::Bad);
    }
    r.vec8(1)?; // compression_methods
    let mut hello = ClientHello {
        legacy_version,
        ..ClientHello::default()
    };
    // Hellos from before extensions (TLS 1.0 clients may send none) end here.
    if r.left() == 0 {
        r.arrived()?;
        return Ok(hello);
    }
    let mut extensions = r.vec16(0)?;
    r.done()?;
    let mut seen: Vec<u16> = Vec::new();
    while extensions.left() > 0 {
        let kind = extensions.u16()?;
        let data = extensions.vec16(0)?;
        // "There MUST NOT be more than one extension of the same type" (RFC 8446 §4.2).
        if seen.contains(&kind) {
            return Err(Stop::Bad);
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => hello.server_name = server_name(data)?,
            EXT_ALPN => hello.alpn = alpn(data)?,
            _ => {}
        }
    }
    // Skipped fields (unknown extensions, cipher suites) are not read: wait for all of them.
    r.arrived()?;
    Ok(hello)
}

/// The host_name of a server_name extension. Entries of other name types are skipped (they
/// are laid out with a two-byte length too, as every implementation reads them); a second
/// host_name is malformed (RFC 6066 §3), and so is an empty extension body (only a
/// ServerHello sends one). OpenSSL and BoringSSL accept nothing but a single host_name; the
/// terminating peer still applies its own rule.
fn server_name(mut data: Reader<'_>) -> Result<Option<String>, Stop> {
    let mut list = data.vec16(1)?;
    data.done()?;
    let mut host = None;
    while list.left() > 0 {
        let kind = list.u8()?;
        let mut name = list.vec16(1)?;
        if kind != HOST_NAME {
            continue;
        }
        if host.is_some() {
            return Err(Stop::Bad);
        }
        let n = name.left();
        if n > MAX_HOST_NAME {
            return Err(Stop::Bad);
        }
        let bytes = name.take(n)?;
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(Stop::Bad);
        }
        host = Some(String::from_utf8_lossy(bytes).to_ascii_lowercase());
    }
    Ok(host)
}

/// The protocol names of an ALPN extension, none of them empty.
fn alpn(mut data: Reader<'_>) -> Result<Vec<Vec<u8>>, Stop> {
    let mut list = data.vec16(2)?;
    data.done()?;
    let mut names = Vec::new();
    while list.left() > 0 {
        let mut name = list.vec8(1)?;
        let n = name.left();
        names.push(name.take(n)?.to_vec());
    }
    Ok(names)
}

#[cfg(test)]
mod tests;
