//! ClientHellos built by hand field by field, and one captured from `openssl s_client`.

use super::*;

/// A ClientHello, laid out from RFC 8446 §4.1.2 (not with the code under test).
#[derive(Clone)]
struct Hello {
    version: u16,
    session_id: Vec<u8>,
    suites: Vec<u8>,
    compression: Vec<u8>,
    /// `None`: no extensions block at all.
    extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Hello {
    fn new() -> Hello {
        Hello {
            version: 0x0303,
            session_id: vec![7; 32],
            suites: vec![0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f],
            compression: vec![0],
            extensions: Some(vec![(10, vec![0, 2, 0, 29]), (43, vec![2, 3, 4])]),
        }
    }

    fn ext(mut self, kind: u16, data: Vec<u8>) -> Hello {
        self.extensions
            .get_or_insert_with(Vec::new)
            .push((kind, data));
        self
    }

    /// The handshake message, header included.
    fn message(&self) -> Vec<u8> {
        let mut body = self.version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0xab; 32]);
        body.push(self.session_id.len() as u8);
        body.extend_from_slice(&self.session_id);
        body.extend_from_slice(&(self.suites.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.suites);
        body.push(self.compression.len() as u8);
        body.extend_from_slice(&self.compression);
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (kind, data) in exts {
                block.extend_from_slice(&kind.to_be_bytes());
                block.extend_from_slice(&(data.len() as u16).to_be_bytes());
                block.extend_from_slice(data);
            }
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(&block);
        }
        handshake(1, &body)
    }

    /// In one record.
    fn bytes(&self) -> Vec<u8> {
        records(&self.message(), MAX_FRAGMENT)
    }
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len() as u32;
    let mut m = vec![kind, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    m.extend_from_slice(body);
    m
}

/// `message` in handshake records (version 0x0301) of at most `size` bytes each.
fn records(message: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in message.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// The handshake bytes of consecutive records (the records trusted: test input).
fn unrecord(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        out.extend_from_slice(&bytes[5..5 + len]);
        bytes = &bytes[5 + len..];
    }
    out
}

fn sni(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

fn alpn(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for name in names {
        list.push(name.len() as u8);
        list.extend_from_slice(name);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

fn hello_of(i: Inspect) -> ClientHello {
    match i {
        Inspect::Hello(h) => h,
        other => panic!("want a hello, got {other:?}"),
    }
}

/// `inspect(bytes)`, after checking that every shorter prefix is `Again` or the same answer
/// (and, for a hello, `Again` on every prefix: it is complete only at the end).
fn settled(bytes: &[u8]) -> Inspect {
    let whole = inspect(bytes);
    for n in 0..bytes.len() {
        let got = inspect(&bytes[..n]);
        if matches!(whole, Inspect::Hello(_)) {
            // Bytes past the hello are not needed; before its end nothing is decided.
            if got != Inspect::Again {
                assert_eq!(got, whole, "prefix of {n} bytes");
            }
        } else {
            assert!(
                got == Inspect::Again || got == whole,
                "prefix of {n}: {got:?}, whole: {whole:?}"
            );
        }
    }
    whole
}

fn sni_alpn_hello() -> Hello {
    Hello::new()
        .ext(EXT_SERVER_NAME, sni(&[(0, b"A.Example.COM")]))
        .ext(EXT_ALPN, alpn(&[b"h2", b"http/1.1"]))
}

#[test]
fn sni_and_alpn() {
    let bytes = sni_alpn_hello().bytes();
    let h = hello_of(settled(&bytes));
    assert_eq!(h.server_name.as_deref(), Some("a.example.com"));
    assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(h.offers(b"h2") && !h.offers(b"h3"));
    assert_eq!(h.legacy_version, 0x0303);
    assert_eq!(inspect(&bytes).matches(), Match::Yes);
    // Every proper prefix waits.
    for n in 0..bytes.len() {
        assert_eq!(
            inspect(&bytes[..n]),
            Inspect::Again,
            "{n} of {} bytes",
            bytes.len()
        );
    }
    // What follows the hello (early data, the next records) changes nothing.
    let mut more = bytes.clone();
    more.extend_from_slice(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    assert_eq!(inspect(&more), Inspect::Hello(h));
}

#[test]
fn a_handshake_message_over_several_records() {
    let hello = sni_alpn_hello();
    let want = inspect(&hello.bytes());
    for size in [1, 2, 3, 4, 5, 7, 40, 100] {
        let bytes = records(&hello.message(), size);
        assert_eq!(settled(&bytes), want, "records of {size} bytes");
        for n in 0..bytes.len() {
            assert_eq!(
                inspect(&bytes[..n]),
                Inspect::Again,
                "records of {size}, {n} bytes"
            );
        }
    }
    // A record of another type in between ends it.
    let message = hello.message();
    let mut bytes = records(&message[..10], 10);
    bytes.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    bytes.extend_from_slice(&records(&message[10..], 1000));
    assert_eq!(settled(&bytes), Inspect::NotTls);
    let mut alert = records(&message[..10], 10);
    alert.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
    assert_eq!(settled(&alert), Inspect::NotTls);
}

#[test]
fn no_extensions_no_sni() {
    let mut h = Hello::new();
    h.extensions = None;
    h.version = 0x0301;
    let got = hello_of(settled(&h.bytes()));
    assert_eq!(
        got,
        ClientHello {
            server_name: None,
            alpn: vec![],
            legacy_version: 0x0301
        }
    );
    h.extensions = Some(vec![]);
    assert_eq!(hello_of(settled(&h.bytes())).server_name, None);
    // Unknown and GREASE extensions are skipped.
    let h = Hello::new().ext(0x0a0a, vec![]).ext(0xfe0d, vec![1; 300]);
    assert_eq!(hello_of(settled(&h.bytes())).alpn, Vec::<Vec<u8>>::new());
}

#[test]
fn the_host_name_among_other_names() {
    let h = Hello::new().ext(
        EXT_SERVER_NAME,
        sni(&[(1, b"x"), (0, b"b.example.com."), (7, b"yy")]),
    );
    assert_eq!(
        hello_of(settled(&h.bytes())).server_name.as_deref(),
        Some("b.example.com.")
    );
    // No host_name among them: no SNI.
    let h = Hello::new().ext(EXT_SERVER_NAME, sni(&[(1, b"x")]));
    assert_eq!(hello_of(settled(&h.bytes())).server_name, None);
    // Two host_names: malformed.
    let h = Hello::new().ext(
        EXT_SERVER_NAME,
        sni(&[(0, b"a.example.com"), (0, b"b.example.com")]),
    );
    assert_eq!(settled(&h.bytes()), Inspect::NotTls);
}

#[test]
fn malformed_hellos_are_not_tls() {
    let max_name = vec![b'a'; MAX_HOST_NAME];
    let ok = Hello::new().ext(EXT_SERVER_NAME, sni(&[(0, &max_name)]));
    assert!(matches!(settled(&ok.bytes()), Inspect::Hello(_)));

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut with = |what, f: &dyn Fn(&mut Hello)| {
        let mut h = sni_alpn_hello();
        f(&mut h);
        cases.push((what, h.bytes()));
    };
    with("legacy_version 2.0", &|h| h.version = 0x0200);
    with("33-byte session id", &|h| h.session_id = vec![1; 33]);
    with("odd cipher suites", &|h| h.suites = vec![0x13, 0x01, 0x13]);
    with("no cipher suites", &|h| h.suites = vec![]);
    with("no compression methods", &|h| h.compression = vec![]);
    with("duplicate extension", &|h| {
        h.extensions.as_mut().unwrap().push((10, vec![0, 2, 0, 29]))
    });
    with("two SNI extensions", &|h| {
        h.extensions
            .as_mut()
            .unwrap()
            .push((EXT_SERVER_NAME, sni(&[(0, b"c.example.com")])))
    });
    let mut bad_ext = |what, kind, data: Vec<u8>| {
        cases.push((what, Hello::new().ext(kind, data).bytes()));
    };
    bad_ext("empty SNI body", EXT_SERVER_NAME, vec![]);
    bad_ext("empty SNI list", EXT_SERVER_NAME, vec![0, 0]);
    bad_ext(
        "SNI list longer than the extension",
        EXT_SERVER_NAME,
        vec![0, 9, 0, 0, 1, b'a'],
    );
    bad_ext("SNI list shorter than the extension", EXT_SERVER_NAME, {
        let mut d = sni(&[(0, b"a")]);
        d.push(0);
        d
    });
    bad_ext("empty host name", EXT_SERVER_NAME, sni(&[(0, b"")]));
    bad_ext(
        "NUL in host name",
        EXT_SERVER_NAME,
        sni(&[(0, b"a\0.example.com")]),
    );
    bad_ext("space in host name", EXT_SERVER_NAME, sni(&[(0, b"a b")]));
    bad_ext(
        "UTF-8 host name",
        EXT_SERVER_NAME,
        sni(&[(0, "bücher.de".as_bytes())]),
    );
    bad_ext(
        "256-byte host name",
        EXT_SERVER_NAME,
        sni(&[(0, &[b'a'; 256])]),
    );
    bad_ext("empty ALPN body", EXT_ALPN, vec![]);
    bad_ext("empty ALPN list", EXT_ALPN, vec![0, 0]);
    bad_ext("empty ALPN name", EXT_ALPN, alpn(&[b"h2", b""]));
    bad_ext(
        "ALPN name past the list",
        EXT_ALPN,
        vec![0, 3, 5, b'h', b'2'],
    );
    bad_ext(
        "ALPN list past the extension",
        EXT_ALPN,
        vec![0, 9, 2, b'h', b'2'],
    );
    let ok = sni_alpn_hello().message();
    let patched = |at: usize, v: u8| {
        let mut m = ok.clone();
        m[at] = v;
        records(&m, MAX_FRAGMENT)
    };
    // The extensions block's length (after 4 + 2 + 32 + 33 + 8 + 2 bytes), one too long and
    // one too short.
    let at = 4 + 2 + 32 + 33 + 8 + 2;
    cases.push((
        "extensions past the message",
        patched(at + 1, ok[at + 1] + 1),
    ));
    cases.push((
        "bytes after the extensions",
        patched(at + 1, ok[at + 1] - 1),
    ));
    cases.push(("handshake longer than its extensions", {
        let mut m = ok.clone();
        m[3] += 1;
        m.push(0);
        records(&m, MAX_FRAGMENT)
    }));
    cases.push(("ServerHello", patched(0, 2)));
    for (what, bytes) in cases {
        assert_eq!(settled(&bytes), Inspect::NotTls, "{what}");
    }
}

#[test]
fn other_protocols_and_bad_records() {
    let ok = sni_alpn_hello().bytes();
    let cases: &[(&str, &[u8])] = &[
        ("HTTP/1", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("SSH", b"SSH-2.0-OpenSSH_9.6\r\n"),
        // An SSLv2-compatible hello: 2-byte length with the high bit, msg type 1, version 3.1.
        (
            "SSLv2 hello",
            &[
                0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ],
        ),
        ("alert", &[21, 3, 3, 0, 2, 2, 40]),
        ("application data", &[23, 3, 3, 0, 3, 1, 2, 3]),
        ("record version 2", &[22, 2, 0, 0, 4, 1, 0, 0, 0]),
        ("zero-length record", &[22, 3, 1, 0, 0, 1, 0, 0, 0]),
        ("record over 2^14", &[22, 3, 1, 0x40, 0x01, 1]),
        // Decided from the handshake type without waiting for the record's 16 KiB.
        ("server hello in a big record", &[22, 3, 3, 0x40, 0x00, 2]),
        ("NUL byte", &[0]),
    ];
    for (what, bytes) in cases {
        assert_eq!(settled(bytes), Inspect::NotTls, "{what}");
        assert_eq!(inspect(bytes).matches(), Match::No);
    }
    // Garbage after a valid start of a record.
    let mut cut = ok[..20].to_vec();
    cut[15] = 0xff; // inside the random: still fine, waits
    assert_eq!(inspect(&cut), Inspect::Again);
    assert_eq!(inspect(&[]), Inspect::Again);
    assert_eq!(inspect(&[22, 3, 1, 0]), Inspect::Again);
}

#[test]
fn looks_like_tls_from_the_first_bytes() {
    assert_eq!(looks_like_tls(&[]), None);
    assert_eq!(looks_like_tls(&[22]), None);
    assert_eq!(looks_like_tls(&[22, 3]), Some(true));
    assert_eq!(looks_like_tls(&sni_alpn_hello().bytes()), Some(true));
    assert_eq!(looks_like_tls(&[22, 2, 0]), Some(false));
    assert_eq!(looks_like_tls(b"GET /"), Some(false));
    assert_eq!(looks_like_tls(&[0x80, 0x2e, 1]), Some(false));
}

#[test]
fn hellos_that_do_not_fit_are_too_large() {
    // Announced: a handshake message of 16 KiB (+4 header +5 record header) cannot fit.
    let big = [22, 3, 1, 0x40, 0x00, 1, 0, 0x40, 0x00];
    assert_eq!(settled(&big), Inspect::TooLarge);
    assert_eq!(inspect(&big).matches(), Match::No);
    let fits = [22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
    assert_eq!(inspect(&fits), Inspect::Again);
    // The largest hello that fits in one record, padded with an unknown extension.
    let mut h = sni_alpn_hello();
    let room = MAX_FRAGMENT - h.message().len() - 4;
    h = h.ext(21, vec![0; room]);
    let bytes = h.bytes();
    assert_eq!(bytes.len(), MAX_CLIENT_HELLO);
    assert!(matches!(inspect(&bytes), Inspect::Hello(_)));
    // The same in small records: the connection bytes run past the limit.
    let bytes = records(&h.message(), 1000);
    assert_eq!(inspect(&bytes[..MAX_CLIENT_HELLO - 1]), Inspect::Again);
    assert_eq!(inspect(&bytes[..MAX_CLIENT_HELLO]), Inspect::TooLarge);
    assert_eq!(inspect(&bytes), Inspect::TooLarge);
}

/// A xorshift generator: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutations of `bytes` (bytes set, cut, inserted, removed): never a panic, and every prefix
/// agrees with the whole.
fn mutate(bytes: &[u8], seed: u64, rounds: usize) {
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let mut m = bytes.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(m.len() + 1);
            match rng.below(4) {
                0 if at < m.len() => m[at] = rng.next() as u8,
                1 => m.truncate(at),
                2 => m.insert(at, rng.next() as u8),
                _ if at < m.len() => drop(m.remove(at)),
                _ => {}
            }
        }
        settled(&m);
    }
}

#[test]
fn mutated_hellos_never_panic() {
    mutate(&sni_alpn_hello().bytes(), 0x9e37_79b9_7f4a_7c15, 300);
    mutate(
        &records(&sni_alpn_hello().message(), 9),
        0x2545_f491_4f6c_dd1d,
        200,
    );
}

/// The bytes `openssl s_client` sends first, read from a std listener until the hello is in.
/// `None` (with the reason printed) if OpenSSL is not installed.
fn openssl_hello() -> Option<Vec<u8>> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let openssl = "/usr/bin/openssl";
    if !std::path::Path::new(openssl).exists() {
        eprintln!("SKIP: {openssl} is missing; the hand-built hellos still cover the parser");
        return None;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = Command::new(openssl)
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", "a.example.com", "-alpn", "h2,http/1.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let _reap = scopeguard::guard((), |()| {
        let _ = child.kill();
        let _ = child.wait();
    });
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "openssl did not connect");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while inspect(&got) == Inspect::Again {
        let n = conn.read(&mut buf).expect("read the hello");
        assert!(n > 0, "openssl closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    Some(got)
}

#[test]
fn a_hello_from_openssl() {
    let Some(bytes) = openssl_hello() else { return };
    let want = ClientHello {
        server_name: Some("a.example.com".into()),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        legacy_version: 0x0303,
    };
    // Byte by byte: nothing before the end.
    assert_eq!(hello_of(settled(&bytes)), want);
    for n in 0..bytes.len() {
        assert_eq!(
            inspect(&bytes[..n]),
            Inspect::Again,
            "{n} of {} bytes",
            bytes.len()
        );
    }
    // Split into records of other sizes.
    let message = unrecord(&bytes);
    for size in [1, 3, 64, 200] {
        assert_eq!(
            hello_of(settled(&records(&message, size))),
            want,
            "records of {size}"
        );
    }
    // Truncated in the middle of a record's announced bytes: waits. The record cut short
    // and followed by application data: the message never ends.
    assert_eq!(inspect(&bytes[..bytes.len() / 2]), Inspect::Again);
    let mut shorter = records(&message[..message.len() - 10], MAX_FRAGMENT);
    assert_eq!(inspect(&shorter), Inspect::Again);
    shorter.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    assert_eq!(settled(&shorter), Inspect::NotTls);
    // Garbage in the front, and mutations.
    let mut garbage = b"\r\n".to_vec();
    garbage.extend_from_slice(&bytes);
    assert_eq!(inspect(&garbage), Inspect::NotTls);
    mutate(&bytes, 0xdead_beef_cafe_f00d, 200);
}
