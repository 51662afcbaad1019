//! Frames the codec writes: heartbeats, hijack and codec-error responses, id patching,
//! re-encoding with changed headers; status classes.

use super::*;

#[test]
fn heartbeat_request_bytes() {
    let hb = BOLT.heartbeat(0x0a0b_0c0d);
    assert_eq!(
        &hb[..],
        &[
            0x01, 0x01, 0x00, 0x00, 0x01, 0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0xff, 0xff, 0xff, 0xff,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ][..]
    );
    let f = decode_one(&hb);
    assert_eq!(f.kind, Kind::Heartbeat);
    assert_eq!(f.request_id, 0x0a0b_0c0d);
    assert_eq!(f.timeout, None);
    // Ids are truncated to 32 bits.
    assert_eq!(decode_one(&BOLT.heartbeat(0x1_0000_0007)).request_id, 7);
}

#[test]
fn heartbeat_reply_bytes() {
    let v1 = [
        0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x01, 0xff, 0xff, 0xff, 0xff, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let req = decode_one(&v1);
    assert_eq!(req.kind, Kind::Heartbeat);
    assert_eq!(
        BOLT.hijack(&req, Hijack::NoRoute, ""),
        None,
        "heartbeats are not hijacked"
    );
    let reply = BOLT.heartbeat_reply(&req);
    assert_eq!(
        &reply[..],
        &[
            0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ][..]
    );
    let r = decode_one(&reply);
    assert_eq!(
        (r.kind, r.request_id, r.status),
        (Kind::HeartbeatReply, 42, 0)
    );

    // v2, another codec and version bytes: mirrored.
    let v2 = [
        0x02, 0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x00, 0xff, 0xff, 0xff,
        0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let reply = BOLT.heartbeat_reply(&decode_one(&v2));
    assert_eq!(
        &reply[..],
        &[
            0x02, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ][..]
    );

    // v2 with the CRC switch: the reply keeps the switch and carries its own CRC.
    let mut v2crc = v2.to_vec();
    v2crc[11] = 0x01;
    let sum = crc32fast::hash(&v2crc);
    v2crc.extend(sum.to_be_bytes());
    let reply = BOLT.heartbeat_reply(&decode_one(&v2crc));
    let mut want = vec![
        0x02, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let sum = crc32fast::hash(&want);
    want.extend(sum.to_be_bytes());
    assert_eq!(&reply[..], &want[..]);
    assert_eq!(decode_one(&reply).kind, Kind::HeartbeatReply);
}

#[test]
fn hijack_bytes() {
    let reasons = [
        (Hijack::NoRoute, 0x06),
        (Hijack::NoHealthyHost, 0x10),
        (Hijack::Timeout, 0x07),
        (Hijack::Overflow, 0x04),
        (Hijack::UpstreamReset, 0x10),
        (Hijack::Codec, 0x09),
        (Hijack::Forbidden, 0x06),
    ];
    let v1 = decode_one(&Wire::request().bytes());
    let v2 = decode_one(
        &Wire {
            codec: 0x0b,
            ver2: 3,
            ..Wire::request().v2(7, 0)
        }
        .bytes(),
    );
    for (why, code) in reasons {
        let got = BOLT.hijack(&v1, why, "ignored").expect("a response");
        assert_eq!(
            &got[..],
            &[
                0x01, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03, 0x04, 0x01, 0x00, code, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ][..],
            "v1 {why:?}"
        );
        let r = decode_one(&got);
        assert_eq!(
            (r.kind, r.status, r.request_id),
            (Kind::Response, u16::from(code), 0x0102_0304)
        );

        let got = BOLT.hijack(&v2, why, "ignored").expect("a response");
        assert_eq!(
            &got[..],
            &[
                0x02, 0x07, 0x00, 0x00, 0x02, 0x03, 0x01, 0x02, 0x03, 0x04, 0x0b, 0x00, 0x00, code,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ][..],
            "v2 {why:?}"
        );
    }
    // The id the proxy set is the one answered.
    let mut req = decode_one(&Wire::request().bytes());
    BOLT.set_request_id(&mut req, 77);
    let r = decode_one(&BOLT.hijack(&req, Hijack::Timeout, "").unwrap());
    assert_eq!(r.request_id, 77);
    // The proxy may keep only a request's head (its first 64 bytes, no headers) to answer
    // from; that is enough, with and without the CRC switch.
    for w in [Wire::request(), Wire::request().v2(1, 1)] {
        let full = decode_one(&w.bytes());
        let mut head = decode_one(&w.bytes());
        head.raw.truncate(64);
        head.headers.clear();
        (head.service, head.method) = (None, None);
        let reply = BOLT.hijack(&head, Hijack::UpstreamReset, "");
        assert_eq!(reply, BOLT.hijack(&full, Hijack::UpstreamReset, ""));
        let r = decode_one(&reply.expect("a response"));
        assert_eq!((r.status, r.request_id), (0x10, 0x0102_0304));
    }
    // Responses are not hijacked.
    assert_eq!(
        BOLT.hijack(&decode_one(&Wire::response().bytes()), Hijack::Timeout, ""),
        None
    );
}

#[test]
fn set_request_id_patches_only_the_id() {
    for (w, at) in [
        (Wire::request(), 5),
        (Wire::response(), 5),
        (Wire::request().v2(1, 0), 6),
        (Wire::response().v2(1, 0), 6),
    ] {
        let before = w.bytes();
        let mut f = decode_one(&before);
        BOLT.set_request_id(&mut f, 0x1_dead_beef);
        assert_eq!(f.request_id, 0xdead_beef, "truncated to u32");
        let after = &f.raw[..];
        assert_eq!(after.len(), before.len());
        for i in 0..before.len() {
            if (at..at + 4).contains(&i) {
                assert_eq!(after[i], [0xde, 0xad, 0xbe, 0xef][i - at]);
            } else {
                assert_eq!(after[i], before[i], "byte {i}");
            }
        }
        let mut out = BytesMut::new();
        BOLT.encode(&f, &mut out);
        assert_eq!(&out[..], after, "unchanged headers: raw bytes out");
        assert_eq!(decode_one(&out).request_id, 0xdead_beef);
    }
}

#[test]
fn set_request_id_refreshes_the_crc() {
    let w = Wire::request().v2(1, 1);
    let before = w.bytes();
    let mut f = decode_one(&before);
    BOLT.set_request_id(&mut f, 5);
    let n = before.len();
    assert_eq!(&f.raw[6..10], &[0, 0, 0, 5]);
    assert_eq!(&f.raw[..6], &before[..6]);
    assert_eq!(&f.raw[10..n - 4], &before[10..n - 4]);
    let f = decode_one(&f.raw);
    assert_eq!(f.request_id, 5, "the new CRC is valid");
}

#[test]
fn encode_rebuilds_changed_headers() {
    for w in [
        Wire::request(),
        Wire::request().v2(1, 1),
        Wire::response().v2(1, 0),
    ] {
        let mut f = decode_one(&w.bytes());
        f.set_header("service", Bytes::from_static(b"com.example.Other:2.0"));
        f.set_header("x-added", Bytes::from_static(b"yes"));
        f.remove_header("rpc_trace_context.sofaTraceId");
        BOLT.set_request_id(&mut f, 31);
        let mut out = BytesMut::from(&b"before"[..]);
        BOLT.encode(&f, &mut out);
        assert_eq!(&out[..6], b"before", "appended");
        let g = decode_one(&out[6..]);
        assert_eq!(g.kind, f.kind);
        assert_eq!(g.request_id, 31);
        assert_eq!(g.status, f.status);
        assert_eq!(g.timeout, f.timeout);
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = wire_pairs(&w)
            .into_iter()
            .filter(|(k, _)| k != b"service" && k != b"rpc_trace_context.sofaTraceId")
            .collect();
        want.push((b"service".to_vec(), b"com.example.Other:2.0".to_vec()));
        want.push((b"x-added".to_vec(), b"yes".to_vec()));
        assert_eq!(header_pairs(&g), want);
        if f.kind == Kind::Request {
            assert_eq!(g.service(), Some(&b"com.example.Other:2.0"[..]));
            assert_eq!(g.method(), Some(&b"echo"[..]));
        }
        let fixed = w.fixed();
        assert_eq!(&g.raw[fixed..fixed + w.class.len()], w.class, "same class");
        let end = g.raw.len()
            - if g.raw[0] == 2 && g.raw[11] & 1 != 0 {
                4
            } else {
                0
            };
        assert_eq!(
            &g.raw[end - w.content.len()..end],
            w.content,
            "same content"
        );
    }
}

#[test]
fn codec_error_replies() {
    let req = Wire::request().bytes();
    let reply = BOLT
        .codec_error_reply(&req[..10])
        .expect("10 bytes address a v1 reply");
    assert_eq!(
        &reply[..],
        &[
            0x01, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03, 0x04, 0x01, 0x00, 0x09, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ][..]
    );
    assert_eq!(BOLT.codec_error_reply(&req[..9]), None);
    // A request with a broken header block still gets its reply.
    let mut broken = req.clone();
    broken[17] = 0x01;
    assert!(BOLT.decode(&mut BytesMut::from(&broken[..]), MAX).is_err());
    assert_eq!(BOLT.codec_error_reply(&broken), Some(reply));

    let v2 = Wire::request().v2(1, 0).bytes();
    assert_eq!(BOLT.codec_error_reply(&v2[..11]), None);
    let reply = BOLT
        .codec_error_reply(&v2[..12])
        .expect("12 bytes address a v2 reply");
    assert_eq!(
        &reply[..],
        &[
            0x02, 0x01, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03, 0x04, 0x01, 0x00, 0x00, 0x09,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ][..]
    );
    // Not requests, or not Bolt: nothing to answer.
    assert_eq!(BOLT.codec_error_reply(&Wire::response().bytes()), None);
    assert_eq!(
        BOLT.codec_error_reply(
            &Wire {
                cmd_type: 2,
                ..Wire::request()
            }
            .bytes()
        ),
        None,
        "oneway"
    );
    assert_eq!(BOLT.codec_error_reply(b"GET / HTTP/1.1\r\n\r\n"), None);
    assert_eq!(
        BOLT.codec_error_reply(&[0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        None
    );
    assert_eq!(BOLT.codec_error_reply(&[]), None);
}

#[test]
fn protocol_facts() {
    assert_eq!(BOLT.name(), "bolt");
    assert_eq!(BOLT.pool_mode(), PoolMode::Multiplex);
    let classes = [
        (status::SUCCESS, 200),
        (status::ERROR, 500),
        (status::SERVER_EXCEPTION, 500),
        (status::UNKNOWN, 500),
        (status::SERVER_THREADPOOL_BUSY, 503),
        (status::ERROR_COMM, 500),
        (status::NO_PROCESSOR, 404),
        (status::TIMEOUT, 504),
        (status::CLIENT_SEND_ERROR, 500),
        (status::CODEC_EXCEPTION, 500),
        (status::CONNECTION_CLOSED, 502),
        (status::SERVER_SERIAL_EXCEPTION, 500),
        (status::SERVER_DESERIAL_EXCEPTION, 500),
        (0xffff, 500),
    ];
    for (s, http) in classes {
        assert_eq!(BOLT.status_class(s).0, http, "status {s:#x}");
    }
}
