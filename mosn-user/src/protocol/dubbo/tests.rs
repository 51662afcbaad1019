//! Dubbo codec tests. Frames are built by hand from the wire layout (the `frame` helper
//! and byte literals below), never with the encoder under test.

use bytes::BytesMut;

use super::DUBBO;
use super::encode::CODEC_ERROR_MESSAGE;
use crate::protocol::xprotocol::{Hijack, Kind, PoolMode, StatusClass, Text, XFrame, XProtocol};
use crate::protocol::{DecodeError, Match};

const MAX: usize = 1 << 20;

/// A frame from the spec's layout: magic, flag, status, id, body length, body.
fn frame(flag: u8, status: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xda, 0xbb, flag, status];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A compact hessian2 string of BMP characters (length byte = UTF-16 units).
fn compact(s: &str) -> Vec<u8> {
    let units = s.encode_utf16().count();
    assert!(units < 32 && s.chars().all(|c| c.len_utf16() == 1));
    let mut v = vec![units as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn decode_all(bytes: &[u8]) -> Result<Option<XFrame>, DecodeError> {
    let mut src = BytesMut::from(bytes);
    DUBBO.decode(&mut src, MAX)
}

fn decoded(bytes: &[u8]) -> XFrame {
    match decode_all(bytes) {
        Ok(Some(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

const SERVICE: &str = "org.apache.dubbo.samples.basic.api.DemoService";

/// A request body: the four leading strings in four different forms, then a parameter
/// descriptor and bytes that are no valid hessian (never read).
fn request_body() -> Vec<u8> {
    let mut medium = vec![0x30, SERVICE.len() as u8];
    medium.extend_from_slice(SERVICE.as_bytes());
    cat(&[
        &compact("2.0.2"),
        &medium,
        b"S\x00\x051.0.0",
        b"R\x00\x03say",
        b"S\x00\x05Hello",
        &compact("Ljava/lang/String;"),
        &[0xff, 0xfe, 0x00, 0x99],
    ])
}

#[test]
fn request_leading_strings_in_every_form() {
    let bytes = frame(0xc2, 0, 0x0102_0304_0506_0708, &request_body());
    let mut src = BytesMut::from(&bytes[..]);
    src.extend_from_slice(b"next");
    let f = DUBBO.decode(&mut src, MAX).unwrap().unwrap();
    assert_eq!(&src[..], b"next", "only the frame is consumed");
    assert_eq!(&f.raw[..], &bytes[..]);
    assert_eq!(f.kind, Kind::Request);
    assert_eq!(f.request_id, 0x0102_0304_0506_0708);
    assert_eq!(f.status, 0);
    assert_eq!(f.timeout, None);
    assert!(!f.headers_changed);
    assert_eq!(f.header_str("dubbo"), Some("2.0.2"));
    assert_eq!(f.header_str("service"), Some(SERVICE));
    assert_eq!(f.header_str("version"), Some("1.0.0"));
    assert_eq!(f.header_str("method"), Some("sayHello"));
    assert_eq!(f.service(), Some(SERVICE.as_bytes()));
    assert_eq!(f.method(), Some(&b"sayHello"[..]));
    let keys: Vec<_> = f.headers.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        ["dubbo", "service", "version", "method"].map(Text::Static)
    );
    // One run of bytes is a span of the frame (16 header + 6 + 2 bytes in); the chunked
    // method is owned.
    assert_eq!(f.service, Some(Text::span(24, 24 + SERVICE.len())));
    assert!(matches!(f.headers[2].1, Text::Span { .. }));
    assert_eq!(f.method, Some(Text::Owned("sayHello".into())));
}

#[test]
fn non_ascii_strings_count_utf16_units() {
    // "é" is 2 bytes, "服务" 3 each, "😀" 4 bytes counting 2 units; CESU-8 (Java's form
    // of "😀": two 3-byte surrogates) also counts 2.
    let svc = "服务.é😀";
    let cesu_smiley = [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80];
    let body = cat(&[
        &[0x06],
        "2.7.😀".as_bytes(),
        &[6],
        svc.as_bytes(),
        &[0x30, 0x03],
        b"v",
        &cesu_smiley,
        b"R\x00\x02\xf0\x9f\x98\x80",
        &[0x02],
        "ça".as_bytes(),
        b"N",
    ]);
    let f = decoded(&frame(0xc2, 0, 9, &body));
    assert_eq!(f.header_str("dubbo"), Some("2.7.😀"));
    assert_eq!(f.service(), Some(svc.as_bytes()));
    let mut version = b"v".to_vec();
    version.extend_from_slice(&cesu_smiley);
    assert_eq!(f.header("version"), Some(&version[..]));
    assert_eq!(f.header_str("method"), Some("😀ça"));
}

#[test]
fn four_byte_character_across_a_chunk_end_is_malformed() {
    // A chunk of 1 unit cannot hold a character counting 2.
    let body = cat(&[
        b"\x01\xf0\x9f\x98\x80",
        &compact("s"),
        &compact("v"),
        &compact("m"),
    ]);
    let err = decode_all(&frame(0xc2, 0, 1, &body)).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
}

#[test]
fn null_version_is_left_out() {
    let body = cat(&[&compact("2.0.2"), &compact("a.B"), b"N", &compact("m")]);
    let f = decoded(&frame(0xc2, 0, 1, &body));
    assert_eq!(f.header("version"), None);
    assert_eq!(f.headers.len(), 3);
    assert_eq!(f.service(), Some(&b"a.B"[..]));
    assert_eq!(f.method(), Some(&b"m"[..]));
}

#[test]
fn other_serializations_are_not_read() {
    // Serialization 6 (fastjson): the body is not hessian and is left alone.
    let f = decoded(&frame(0xc6, 0, 3, b"\"2.0.2\"\n\"a.B\""));
    assert_eq!(f.kind, Kind::Request);
    assert!(f.headers.is_empty());
    assert_eq!(f.service, None);
    assert_eq!(f.method, None);
}

#[test]
fn responses_ok_and_error() {
    // Status 20: response type (hessian int 1 = 0x91) and a value.
    let ok = decoded(&frame(
        0x02,
        20,
        77,
        &[0x91, 0x05, b'h', b'e', b'l', b'l', b'o'],
    ));
    assert_eq!(ok.kind, Kind::Response);
    assert_eq!(ok.status, 20);
    assert_eq!(ok.request_id, 77);
    assert!(ok.headers.is_empty() && ok.service.is_none());
    assert_eq!(DUBBO.status_class(ok.status), StatusClass::OK);

    let err = decoded(&frame(0x02, 70, 78, &compact("boom")));
    assert_eq!(err.kind, Kind::Response);
    assert_eq!(err.status, 70);
    assert_eq!(DUBBO.status_class(err.status), StatusClass(500));
}

#[test]
fn heartbeat_and_reply_bytes() {
    let hb = DUBBO.heartbeat(0x1122);
    let expected = [
        0xda, 0xbb, 0xe2, 0x00, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0, 0, 0, 1, b'N',
    ];
    assert_eq!(&hb[..], &expected[..]);
    let req = decoded(&expected);
    assert_eq!(req.kind, Kind::Heartbeat);
    assert_eq!(req.request_id, 0x1122);
    assert!(req.headers.is_empty() && req.service.is_none() && req.method.is_none());

    let reply = DUBBO.heartbeat_reply(&req);
    let expected_reply = [
        0xda, 0xbb, 0x22, 20, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0, 0, 0, 1, b'N',
    ];
    assert_eq!(&reply[..], &expected_reply[..]);
    assert_eq!(decoded(&reply).kind, Kind::HeartbeatReply);

    // The reply keeps the request's serialization id.
    let other = decoded(&frame(0xe6, 0, 5, b"N"));
    assert_eq!(other.kind, Kind::Heartbeat);
    assert_eq!(DUBBO.heartbeat_reply(&other)[2], 0x26);
}

#[test]
fn oneway_requests() {
    let f = decoded(&frame(0x82, 0, 4, &request_body()));
    assert_eq!(f.kind, Kind::Oneway);
    assert_eq!(f.method(), Some(&b"sayHello"[..]));
    assert!(DUBBO.hijack(&f, Hijack::NoRoute, "x").is_none());
    // A oneway event (Dubbo's read-only notice) is forwarded, not answered.
    let ro = decoded(&frame(0xa2, 0, 6, &compact("R")));
    assert_eq!(ro.kind, Kind::Oneway);
    assert!(ro.headers.is_empty());
}

#[test]
fn byte_at_a_time() {
    let one = frame(0xc2, 0, 1, &request_body());
    let two = frame(0x02, 20, 1, &[0x91, 0x4e]);
    let all = cat(&[&one, &two]);
    let mut src = BytesMut::new();
    let mut frames = Vec::new();
    for (i, b) in all.iter().enumerate() {
        src.extend_from_slice(&[*b]);
        match DUBBO.decode(&mut src, MAX).unwrap() {
            Some(f) => frames.push((i, f)),
            None => assert!(!src.is_empty()),
        }
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].0, one.len() - 1);
    assert_eq!(frames[0].1.method(), Some(&b"sayHello"[..]));
    assert_eq!(frames[1].0, all.len() - 1);
    assert_eq!(frames[1].1.kind, Kind::Response);
    assert!(src.is_empty());
}

#[test]
fn two_frames_in_one_buffer() {
    let a = frame(0xc2, 0, 1, &request_body());
    let b = frame(
        0xc2,
        0,
        2,
        &cat(&[&compact("2"), &compact("x.Y"), b"N", &compact("z")]),
    );
    let mut src = BytesMut::from(&cat(&[&a, &b])[..]);
    let fa = DUBBO.decode(&mut src, MAX).unwrap().unwrap();
    let fb = DUBBO.decode(&mut src, MAX).unwrap().unwrap();
    assert_eq!((fa.request_id, fb.request_id), (1, 2));
    assert_eq!(fb.service(), Some(&b"x.Y"[..]));
    assert_eq!(&fb.raw[..], &b[..]);
    assert!(DUBBO.decode(&mut src, MAX).unwrap().is_none());
}

#[test]
fn too_large_is_an_error_without_waiting() {
    let mut header = frame(0xc2, 0, 1, &[]);
    header[12..16].copy_from_slice(&1000u32.to_be_bytes());
    let mut src = BytesMut::from(&header[..]);
    assert_eq!(
        DUBBO.decode(&mut src, 1015).unwrap_err(),
        (DecodeError::FrameTooLarge {
            len: 1016,
            limit: 1015
        })
    );
    header[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut src = BytesMut::from(&header[..]);
    assert!(matches!(
        DUBBO.decode(&mut src, MAX),
        Err(DecodeError::FrameTooLarge { .. })
    ));
    // Exactly at the limit is fine.
    let body = cat(&[&compact("2"), &compact("x.Y"), b"N", &compact("z")]);
    let whole = frame(0xc2, 0, 1, &body);
    let mut src = BytesMut::from(&whole[..]);
    assert!(DUBBO.decode(&mut src, whole.len()).unwrap().is_some());
}

#[test]
fn incomplete_frames_wait() {
    let whole = frame(0xc2, 0, 1, &request_body());
    for cut in [0, 1, 2, 15, 16, whole.len() - 1] {
        let mut src = BytesMut::from(&whole[..cut]);
        assert_eq!(
            DUBBO.decode(&mut src, MAX).unwrap().map(|f| f.kind),
            None,
            "cut {cut}"
        );
        assert_eq!(src.len(), cut);
    }
}

#[test]
fn bad_magic() {
    let mut bytes = frame(0xc2, 0, 1, &request_body());
    bytes[1] = 0xbc;
    assert!(matches!(
        decode_all(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
    // Seen at once: a first byte that is not 0xda is an error before the header is in.
    assert!(decode_all(&[0x01]).is_err());
    assert!(decode_all(b"GET / HTTP/1.1\r\n").is_err());
}

#[test]
fn garbled_hessian_is_malformed() {
    let s = compact("s");
    let rest = cat(&[&s, &s, &s]);
    let cases: Vec<Vec<u8>> = vec![
        vec![],                                               // no body at all
        vec![0x91],                                           // an int, not a string
        vec![0x05, b'2', b'.'],                               // runs past the body
        b"S\x00".to_vec(),                                    // chunk header cut short
        vec![0x30],                                           // medium header cut short
        b"R\x00\x01a".to_vec(),                               // non-final chunk and nothing after
        cat(&[b"R\x00\x01aN", &rest]),                        // null cannot continue a string
        cat(&[&[0x02, 0x80, b'a'], &rest]),                   // a continuation byte as lead
        cat(&[&[0x01, 0xc3, 0x41], &rest]),                   // bad continuation
        cat(&[&[0x01, 0xf8, 0x80, 0x80, 0x80, 0x80], &rest]), // no 5-byte UTF-8
        rest.clone(),                                         // method missing
        cat(&[&rest, &[0x03, b'a', b'b']]),                   // method cut short
    ];
    for body in cases {
        let got = decode_all(&frame(0xc2, 0, 1, &body));
        assert!(
            matches!(got, Err(DecodeError::Malformed { .. })),
            "body {body:02x?}: {got:?}"
        );
    }
    // With the bad byte fixed the same body decodes.
    let fixed = decode_all(&frame(0xc2, 0, 1, &cat(&[&[0x01, 0xc3, 0xa9], &rest])));
    assert_eq!(fixed.unwrap().unwrap().header_str("dubbo"), Some("é"));
    // The same bytes as a response or an event are not read.
    assert!(decode_all(&frame(0x02, 20, 1, &[0x91])).unwrap().is_some());
    assert!(decode_all(&frame(0xe2, 0, 1, &[0x91])).unwrap().is_some());
}

#[test]
fn set_request_id_patches_the_bytes() {
    let bytes = frame(0xc2, 0, 1, &request_body());
    let mut f = decoded(&bytes);
    DUBBO.set_request_id(&mut f, 0xdead_beef_0000_0042);
    assert_eq!(f.request_id, 0xdead_beef_0000_0042);
    assert_eq!(&f.raw[4..12], &0xdead_beef_0000_0042u64.to_be_bytes());
    assert_eq!(&f.raw[..4], &bytes[..4]);
    assert_eq!(&f.raw[12..], &bytes[12..]);
    let mut out = BytesMut::new();
    DUBBO.encode(&f, &mut out);
    assert_eq!(out, f.raw);
    let again = decoded(&out);
    assert_eq!(again.request_id, 0xdead_beef_0000_0042);
    assert_eq!(again.method(), Some(&b"sayHello"[..]));
}

#[test]
fn encode_writes_raw_even_with_changed_headers() {
    let bytes = frame(0xc2, 0, 1, &request_body());
    let mut f = decoded(&bytes);
    f.set_header("service", "other.Service".into());
    assert!(f.headers_changed);
    let mut out = BytesMut::from(&b"before"[..]);
    DUBBO.encode(&f, &mut out);
    assert_eq!(&out[..6], b"before");
    assert_eq!(&out[6..], &bytes[..]);
}

#[test]
fn hijack_bytes_for_each_reason() {
    let req = decoded(&frame(0xc2, 0, 0x0a0b, &request_body()));
    let cases = [
        (Hijack::NoRoute, 60),
        (Hijack::NoHealthyHost, 80),
        (Hijack::Timeout, 31),
        (Hijack::Overflow, 100),
        (Hijack::UpstreamReset, 80),
        (Hijack::Codec, 40),
        (Hijack::Forbidden, 40),
    ];
    for (why, status) in cases {
        let got = DUBBO.hijack(&req, why, "no route").unwrap();
        let expected = frame(0x02, status, 0x0a0b, &compact("no route"));
        assert_eq!(&got[..], &expected[..], "{why:?}");
        let resp = decoded(&got);
        assert_eq!(
            (resp.kind, resp.status),
            (Kind::Response, u16::from(status))
        );
    }
    // The request's serialization id is kept; an event keeps the event bit.
    let fastjson = decoded(&frame(0xc6, 0, 1, b"{}"));
    assert_eq!(
        DUBBO.hijack(&fastjson, Hijack::Timeout, "t").unwrap()[2],
        0x06
    );
    let hb = decoded(&frame(0xe2, 0, 1, b"N"));
    let got = DUBBO.hijack(&hb, Hijack::NoHealthyHost, "down").unwrap();
    assert_eq!(&got[..], &frame(0x22, 80, 1, &compact("down"))[..]);
    // A response is never answered.
    let resp = decoded(&frame(0x02, 20, 1, b"N"));
    assert!(DUBBO.hijack(&resp, Hijack::Codec, "x").is_none());
}

#[test]
fn hijack_message_forms() {
    let req = decoded(&frame(0xc2, 0, 1, &request_body()));
    let body = |msg: &str| {
        let got = DUBBO.hijack(&req, Hijack::NoRoute, msg).unwrap();
        let len = u32::from_be_bytes([got[12], got[13], got[14], got[15]]) as usize;
        assert_eq!(got.len(), 16 + len);
        got[16..].to_vec()
    };
    assert_eq!(body(""), vec![0x00]);
    let m31 = "a".repeat(31);
    assert_eq!(body(&m31), cat(&[&[31], m31.as_bytes()]));
    let m32 = "b".repeat(32);
    assert_eq!(body(&m32), cat(&[&[0x30, 32], m32.as_bytes()]));
    let m1023 = "c".repeat(1023);
    assert_eq!(body(&m1023), cat(&[&[0x33, 0xff], m1023.as_bytes()]));
    let m1024 = "d".repeat(1024);
    assert_eq!(body(&m1024), cat(&[b"S\x04\x00", m1024.as_bytes()]));
    let long = "e".repeat(40_000);
    let expected = cat(&[
        b"R\x80\x00",
        &long.as_bytes()[..32_768],
        b"S\x1c\x40",
        &long.as_bytes()[32_768..],
    ]);
    assert_eq!(body(&long), expected);
    // Outside the BMP: Java's form, two 3-byte surrogates counting one unit each.
    assert_eq!(
        body("é😀"),
        vec![0x03, 0xc3, 0xa9, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]
    );
}

#[test]
fn codec_error_reply_needs_a_two_way_request_header() {
    let good = frame(0xc2, 0, 0x42, &[0xff; 4]);
    let reply = DUBBO.codec_error_reply(&good).unwrap();
    assert_eq!(
        &reply[..],
        &frame(0x02, 40, 0x42, &compact(CODEC_ERROR_MESSAGE))[..]
    );
    assert!(
        DUBBO.codec_error_reply(&good[..15]).is_none(),
        "header not all in"
    );
    assert!(
        DUBBO.codec_error_reply(&good[..16]).is_some(),
        "the header is enough"
    );
    let mut bad = good.clone();
    bad[0] = 0xdb;
    assert!(DUBBO.codec_error_reply(&bad).is_none(), "bad magic");
    assert!(
        DUBBO.codec_error_reply(&frame(0x82, 0, 1, &[])).is_none(),
        "oneway"
    );
    assert!(
        DUBBO.codec_error_reply(&frame(0x02, 20, 1, &[])).is_none(),
        "response"
    );
    assert!(DUBBO.codec_error_reply(&[]).is_none());
}

#[test]
fn matcher_against_other_protocols() {
    assert_eq!(DUBBO.matches(&[]), Match::Again);
    assert_eq!(DUBBO.matches(&[0xda]), Match::Again);
    assert_eq!(DUBBO.matches(&[0xda, 0xbb]), Match::Yes);
    assert_eq!(DUBBO.matches(&frame(0xc2, 0, 1, &[])), Match::Yes);
    assert_eq!(DUBBO.matches(&[0xda, 0xbc]), Match::No);
    assert_eq!(DUBBO.matches(b"GET / HTTP/1.1\r\n"), Match::No);
    assert_eq!(DUBBO.matches(b"P"), Match::No);
    assert_eq!(
        DUBBO.matches(&[0x01, 0x01, 0x00, 0x01]),
        Match::No,
        "Bolt v1"
    );
    assert_eq!(DUBBO.matches(&[0x02, 0x01, 0x01]), Match::No, "Bolt v2");
    assert_eq!(DUBBO.matches(&[0x01]), Match::No);
}

#[test]
fn status_classes_and_fixed_answers() {
    let cases = [
        (20, 200),
        (30, 504),
        (31, 504),
        (40, 400),
        (50, 500),
        (60, 404),
        (70, 500),
        (80, 502),
        (90, 500),
        (100, 503),
        (0, 500),
        (300, 500),
    ];
    for (status, class) in cases {
        assert_eq!(
            DUBBO.status_class(status),
            StatusClass(class),
            "status {status}"
        );
    }
    assert_eq!(super::status::OK, 20);
    assert_eq!(super::status::SERVER_THREADPOOL_EXHAUSTED, 100);
    assert_eq!(DUBBO.pool_mode(), PoolMode::Multiplex);
    assert_eq!(DUBBO.name(), "dubbo");
}

/// A small fixed-seed generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every span a frame holds lies inside its raw bytes.
fn check_spans(f: &XFrame) {
    let texts = f
        .headers
        .iter()
        .flat_map(|(k, v)| [k, v])
        .chain(f.service.iter())
        .chain(f.method.iter());
    for t in texts {
        if let Text::Span { start, end } = t {
            assert!(
                start <= end && *end as usize <= f.raw.len(),
                "{t:?} in {}",
                f.raw.len()
            );
        }
    }
}

#[test]
fn pseudo_random_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let template = frame(0xc2, 0, 1, &request_body());
    let flags = [0xc2, 0x82, 0xe2, 0x02, 0x22, 0xc6, 0x00, 0xff];
    let mut decoded_frames = 0;
    for round in 0..20_000 {
        let bytes: Vec<u8> = match round % 3 {
            // Random bytes, sometimes behind the magic.
            0 => {
                let mut v: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
                if rng.below(2) == 0 {
                    v.splice(0..0, [0xda, 0xbb]);
                }
                v
            }
            // A header with a plausible flag and a random hessian-ish body.
            1 => {
                let alphabet = [
                    0x00, 0x05, 0x1f, 0x30, 0x33, b'S', b'R', b'N', 0xc3, 0xf0, 0x80, b'a',
                ];
                let body: Vec<u8> = (0..rng.below(40))
                    .map(|_| {
                        if rng.below(2) == 0 {
                            alphabet[rng.below(alphabet.len())]
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                frame(
                    flags[rng.below(flags.len())],
                    rng.next() as u8,
                    rng.next(),
                    &body,
                )
            }
            // A valid request with a few bytes changed.
            _ => {
                let mut v = template.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = 2 + rng.below(v.len() - 2);
                    v[at] = rng.next() as u8;
                }
                v
            }
        };
        let _ = DUBBO.matches(&bytes);
        let _ = DUBBO.codec_error_reply(&bytes);
        let mut src = BytesMut::from(&bytes[..]);
        let max = 16 + rng.below(200);
        while let Ok(Some(mut f)) = DUBBO.decode(&mut src, max) {
            decoded_frames += 1;
            check_spans(&f);
            assert!(f.raw.len() >= 16 && f.raw.len() <= max);
            let _ = f.header_str("method");
            let _ = DUBBO.hijack(&f, Hijack::Codec, "x");
            let _ = DUBBO.heartbeat_reply(&f);
            DUBBO.set_request_id(&mut f, rng.next());
        }
    }
    assert!(
        decoded_frames > 1000,
        "the inputs reach the body parser: {decoded_frames}"
    );
}
