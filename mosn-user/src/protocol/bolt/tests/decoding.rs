//! Decoding: fields, versions, CRC, partial input, limits, malformed frames, detection.

use super::*;

#[test]
fn v1_request_fields() {
    let w = Wire::request();
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(w.fixed(), 22);
    assert_eq!(f.kind, Kind::Request);
    assert_eq!(f.request_id, 0x0102_0304);
    assert_eq!(f.status, 0);
    assert_eq!(f.timeout, Some(Duration::from_millis(3000)));
    assert_eq!(f.service(), Some(&b"com.example.Echo:1.0"[..]));
    assert_eq!(f.method(), Some(&b"echo"[..]));
    assert!(
        matches!(f.service, Some(Text::Span { .. })),
        "service is a span"
    );
    assert!(
        matches!(f.method, Some(Text::Span { .. })),
        "method is a span"
    );
    assert_eq!(
        f.header_str("rpc_trace_context.sofaTraceId"),
        Some("0a0b0c")
    );
}

#[test]
fn v1_response_fields() {
    let w = Wire {
        status: status::SERVER_EXCEPTION,
        id: 0xffff_fffe,
        ..Wire::response()
    };
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(w.fixed(), 20);
    assert_eq!(f.kind, Kind::Response);
    assert_eq!(f.status, 2);
    assert_eq!(f.request_id, 0xffff_fffe);
    assert_eq!(f.timeout, None);
    assert_eq!(f.service(), None);
    assert_eq!(f.method(), None);
}

#[test]
fn v2_request_and_response_fields() {
    let w = Wire::request().v2(1, 0);
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(w.fixed(), 24);
    assert_eq!(f.kind, Kind::Request);
    assert_eq!(f.timeout, Some(Duration::from_millis(3000)));
    assert_eq!(f.service(), Some(&b"com.example.Echo:1.0"[..]));

    let w = Wire {
        status: status::TIMEOUT,
        ..Wire::response().v2(1, 0)
    };
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(w.fixed(), 22);
    assert_eq!(f.kind, Kind::Response);
    assert_eq!(f.status, 7);
}

#[test]
fn v2_crc_checked() {
    // crc32fast is the IEEE CRC32 the wire uses.
    assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    for w in [Wire::request().v2(1, 1), Wire::response().v2(1, 1)] {
        let bytes = w.bytes();
        let f = decode_one(&bytes);
        check_fields(&f, &w);
        assert_eq!(f.raw.len(), bytes.len(), "the CRC is part of the frame");

        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(matches!(decode_err(&bad), DecodeError::Malformed { .. }));
        let mut bad = bytes.clone();
        bad[w.fixed() + 2] ^= 0x01; // a class byte
        assert!(matches!(decode_err(&bad), DecodeError::Malformed { .. }));
    }
    // Other switch bits do not add a CRC.
    let w = Wire::request().v2(1, 0x02);
    check_fields(&decode_one(&w.bytes()), &w);
}

#[test]
fn byte_at_a_time() {
    for w in [
        Wire::request(),
        Wire::response(),
        Wire::request().v2(1, 1),
        Wire::response().v2(1, 0),
    ] {
        let bytes = w.bytes();
        let mut src = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            src.extend_from_slice(&[*b]);
            let got = BOLT.decode(&mut src, MAX).expect("no error on a prefix");
            if i + 1 < bytes.len() {
                assert!(
                    got.is_none(),
                    "a frame from {} of {} bytes",
                    i + 1,
                    bytes.len()
                );
                assert_eq!(src.len(), i + 1, "nothing consumed");
            } else {
                check_fields(&got.expect("the whole frame"), &w);
                assert!(src.is_empty());
            }
        }
    }
}

#[test]
fn frames_back_to_back() {
    let frames = [
        Wire::request(),
        Wire::request().v2(1, 1),
        Wire {
            id: 9,
            ..Wire::response()
        },
        Wire::response().v2(1, 0),
        Wire::request(),
    ];
    let mut src = BytesMut::new();
    for w in &frames {
        src.extend_from_slice(&w.bytes());
    }
    src.extend_from_slice(&Wire::request().bytes()[..7]); // a partial next frame
    for w in &frames {
        let f = BOLT.decode(&mut src, MAX).unwrap().expect("a frame");
        check_fields(&f, w);
    }
    assert!(BOLT.decode(&mut src, MAX).unwrap().is_none());
    assert_eq!(src.len(), 7, "the partial frame stays");
}

#[test]
fn oneway_and_timeouts() {
    let w = Wire {
        cmd_type: 2,
        ..Wire::request()
    };
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(f.kind, Kind::Oneway);
    assert_eq!(f.timeout, Some(Duration::from_millis(3000)));
    assert_eq!(BOLT.hijack(&f, Hijack::Timeout, "late"), None);

    for timeout in [0, -1, i32::MIN] {
        let f = decode_one(
            &Wire {
                timeout,
                ..Wire::request()
            }
            .bytes(),
        );
        assert_eq!(f.timeout, None, "timeout {timeout}");
    }
}

#[test]
fn service_falls_back_to_target_service() {
    let w = Wire {
        headers: vec![
            (b"sofa_head_target_service", b"com.example.Target:1.0"),
            (b"sofa_head_method_name", b"call"),
        ],
        ..Wire::request()
    };
    let f = decode_one(&w.bytes());
    assert_eq!(f.service(), Some(&b"com.example.Target:1.0"[..]));
    assert_eq!(f.method(), Some(&b"call"[..]));

    let w = Wire {
        headers: vec![
            (b"sofa_head_target_service", b"target"),
            (b"service", b"preferred"),
        ],
        ..Wire::request()
    };
    let f = decode_one(&w.bytes());
    assert_eq!(f.service(), Some(&b"preferred"[..]));
    assert_eq!(f.method(), None);
}

#[test]
fn empty_parts_and_empty_strings() {
    let w = Wire {
        class: b"",
        headers: vec![(b"", b""), (b"k", b"")],
        content: b"",
        ..Wire::request()
    };
    let f = decode_one(&w.bytes());
    check_fields(&f, &w);
    assert_eq!(f.header("k"), Some(&b""[..]));
}

#[test]
fn too_large_fails_without_waiting() {
    // A v1 request header announcing 1 MiB of content, with none of it sent.
    let mut head = Wire {
        class: b"",
        headers: vec![],
        content: b"",
        ..Wire::request()
    }
    .bytes();
    head[18..22].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let mut src = BytesMut::from(&head[..]);
    match BOLT.decode(&mut src, 64 * 1024) {
        Err(DecodeError::FrameTooLarge { len, limit }) => {
            assert_eq!((len, limit), (22 + (1 << 20), 64 * 1024));
        }
        other => panic!("{other:?}"),
    }
    // The largest lengths the fields can say, on v2 with a CRC, do not overflow.
    let mut head = Wire {
        class: b"",
        headers: vec![],
        content: b"",
        ..Wire::request().v2(1, 1)
    }
    .bytes();
    head[16..24].copy_from_slice(&[0xff; 8]);
    let mut src = BytesMut::from(&head[..24]);
    assert!(matches!(
        BOLT.decode(&mut src, MAX),
        Err(DecodeError::FrameTooLarge { len, .. }) if len == 24 + 0xffff + 0xffff + 0xffff_ffff + 4
    ));
    // Exactly at the limit is fine.
    let bytes = Wire::request().bytes();
    let mut src = BytesMut::from(&bytes[..]);
    assert!(BOLT.decode(&mut src, bytes.len()).unwrap().is_some());
    let mut src = BytesMut::from(&bytes[..]);
    assert!(BOLT.decode(&mut src, bytes.len() - 1).is_err());
}

#[test]
fn malformed_frames() {
    // Unknown protocol bytes, told from the first byte.
    for b in [0x00u8, 0x03, 0x47, 0xda] {
        assert!(
            matches!(decode_err(&[b]), DecodeError::Malformed { .. }),
            "{b:#x}"
        );
    }
    // Unknown command types and type/code pairs.
    let mut bad = Wire::request().bytes();
    bad[1] = 3;
    assert!(
        matches!(decode_err(&bad[..2]), DecodeError::Malformed { .. }),
        "type 3"
    );
    for (t, c) in [(1u8, 2u16), (0, 1), (2, 0), (2, 2), (1, 3), (1, 0x0100)] {
        let w = Wire {
            cmd_type: t,
            cmd_code: c,
            ..Wire::request()
        };
        assert!(
            matches!(decode_err(&w.bytes()), DecodeError::Malformed { .. }),
            "type {t} code {c}"
        );
    }
    // Header blocks that are not exactly key/value pairs.
    let w = Wire {
        headers: vec![(b"ab", b"cd")],
        ..Wire::request()
    };
    let good = w.bytes();
    let block_at = 22 + w.class.len();
    let block_len_at = 16;
    let with = |block: &[u8]| {
        let mut b = good[..block_at].to_vec();
        b[block_len_at..block_len_at + 2].copy_from_slice(&(block.len() as u16).to_be_bytes());
        b.extend(block);
        b.extend(w.content);
        b
    };
    assert_eq!(with(&w.block()), good, "the helper rebuilds the good frame");
    let cases: [&[u8]; 6] = [
        b"\x00\x00\x00",                             // short key length
        b"\x00\x00\x00\x03ab",                       // key runs past the block
        b"\x00\x00\x00\x02ab",                       // no value length
        b"\x00\x00\x00\x02ab\x00\x00\x00\x03cd",     // value runs past the block
        b"\x00\x00\x00\x02ab\x00\x00\x00\x02cd\x00", // a stray byte after the last pair
        b"\xff\xff\xff\xff",                         // a huge key length
    ];
    for block in cases {
        assert!(
            matches!(decode_err(&with(block)), DecodeError::Malformed { .. }),
            "{block:?}"
        );
    }
}

#[test]
fn detection() {
    for w in [Wire::request(), Wire::response(), Wire::request().v2(1, 1)] {
        let b = w.bytes();
        assert_eq!(BOLT.matches(&b), Match::Yes);
        let need = if w.v2.is_some() { 5 } else { 4 };
        assert_eq!(BOLT.matches(&b[..need]), Match::Yes);
        for n in 0..need {
            assert_eq!(BOLT.matches(&b[..n]), Match::Again, "{n} bytes");
        }
    }
    assert_eq!(BOLT.matches(&BOLT.heartbeat(1)), Match::Yes);
    assert_eq!(BOLT.matches(b"GET / HTTP/1.1\r\n"), Match::No);
    assert_eq!(BOLT.matches(b"G"), Match::No);
    assert_eq!(BOLT.matches(b"POST /x HTTP/1.1\r\n"), Match::No);
    assert_eq!(
        BOLT.matches(&[0xda, 0xbb, 0xc2, 0x00]),
        Match::No,
        "Dubbo magic"
    );
    assert_eq!(BOLT.matches(&[0xda]), Match::No);
    assert_eq!(BOLT.matches(b"\x16\x03\x01"), Match::No, "TLS");
    assert_eq!(BOLT.matches(b"PRI * HTTP/2.0"), Match::No);
    assert_eq!(BOLT.matches(&[0x01, 0x03]), Match::No, "type 3");
    assert_eq!(
        BOLT.matches(&[0x01, 0x01, 0x01]),
        Match::No,
        "code high byte"
    );
    assert_eq!(
        BOLT.matches(&[0x01, 0x01, 0x00, 0x02]),
        Match::No,
        "request with the response code"
    );
    assert_eq!(
        BOLT.matches(&[0x01, 0x02, 0x00, 0x00]),
        Match::No,
        "oneway heartbeat"
    );
    assert_eq!(BOLT.matches(&[0x02, 0x01, 0x05]), Match::No, "v2 type 5");
    assert_eq!(BOLT.matches(&[0x02, 0x01, 0x00, 0x00]), Match::Again);
}
