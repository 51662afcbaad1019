//! RPC (SOFA Bolt v1/v2, Dubbo 2.x) through the daemon's L7 proxy, end to end: the test
//! crate's own Bolt and Dubbo clients and servers (tests/support/{bolt,dubbo,rpc}.rs, written
//! from the protocol specs, not from the daemon's codecs) on both sides of `mosn start`.
//!
//! The `selftest_*` tests run the clients against the servers directly, without the daemon,
//! so a failure of an end-to-end test is not a bug of the test codecs. Each end-to-end test
//! starts its own daemon and servers; every wait is bounded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mosn_tests::bolt::{
    self, Bolt, BoltClient, BoltFrame, BoltServer, BoltVersion, CMD_HEARTBEAT, CMD_RESPONSE,
    TYPE_RESPONSE,
};
use mosn_tests::dubbo::{
    self, Dubbo, DubboClient, DubboFrame, DubboServer, Invocation, Reader, count_params, put_int,
    put_string,
};
use mosn_tests::rpc::{closed_within, read_frame};
use mosn_tests::within;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

const ECHO: &str = "com.alipay.test.EchoService:1.0";
const OTHER: &str = "com.alipay.test.OtherService:1.0";
const DUBBO_ECHO: &str = "com.alipay.test.DubboEchoService";

// =============================================================================================
// Self-tests of the test codecs, clients and servers (no daemon)

/// A Bolt v1 request, byte by byte as the spec lays it out.
#[test]
fn selftest_bolt_v1_request_layout() {
    let f = BoltFrame::request(BoltVersion::V1, 7, "S", "m", b"hi", 3000);
    let mut want = vec![
        0x01, // proto
        0x01, // type: request
        0x00, 0x01, // cmdcode: request
        0x01, // ver2
        0x00, 0x00, 0x00, 0x07, // request id
        0x01, // codec: hessian2
        0x00, 0x00, 0x0b, 0xb8, // timeout 3000
    ];
    let class = bolt::REQUEST_CLASS.as_bytes();
    let mut headers = Vec::new();
    for s in ["service", "S", "sofa_head_method_name", "m"] {
        headers.extend_from_slice(&(s.len() as u32).to_be_bytes());
        headers.extend_from_slice(s.as_bytes());
    }
    want.extend_from_slice(&(class.len() as u16).to_be_bytes());
    want.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    want.extend_from_slice(&2u32.to_be_bytes());
    assert_eq!(want.len(), 22, "v1 request header");
    want.extend_from_slice(class);
    want.extend_from_slice(&headers);
    want.extend_from_slice(b"hi");
    assert_eq!(f.encode(), want);

    // Every prefix needs more bytes; the whole frame decodes and is consumed exactly.
    for n in 0..want.len() {
        let mut b = BytesMut::from(&want[..n]);
        assert_eq!(BoltFrame::decode(&mut b).unwrap(), None, "prefix {n}");
        assert_eq!(b.len(), n);
    }
    let mut b = BytesMut::from(&want[..]);
    b.extend_from_slice(b"rest");
    let d = BoltFrame::decode(&mut b).unwrap().unwrap();
    assert_eq!(&b[..], b"rest");
    assert_eq!(d, f);
    assert_eq!(d.header("service"), Some("S"));
    let mut bad = BytesMut::from(&[0x07u8, 1, 0, 1][..]);
    assert!(BoltFrame::decode(&mut bad).is_err(), "unknown proto byte");
}

/// A v1 response (20-byte header, status at 10) and a v2 request with CRC (24-byte header,
/// switch at 11, CRC32 of everything before it at the end).
#[test]
fn selftest_bolt_response_and_v2_crc_layout() {
    let req = BoltFrame::request(BoltVersion::V1, 0x01020304, "S", "m", b"", 100);
    let resp = req.response_to(bolt::NO_PROCESSOR, b"x");
    let bytes = resp.encode();
    assert_eq!(&bytes[..10], &[1, 0, 0, 2, 1, 1, 2, 3, 4, 1]);
    assert_eq!(&bytes[10..12], &[0, 6], "status");
    let class_len = bolt::RESPONSE_CLASS.len();
    assert_eq!(&bytes[12..14], &(class_len as u16).to_be_bytes());
    assert_eq!(&bytes[14..16], &[0, 0], "no headers");
    assert_eq!(&bytes[16..20], &[0, 0, 0, 1]);
    assert_eq!(bytes.len(), 20 + class_len + 1);

    let v2 = BoltFrame::request(BoltVersion::V2Crc, 9, "S", "m", b"abc", 100);
    let bytes = v2.encode();
    assert_eq!(&bytes[..3], &[2, 1, 1], "proto, ver1, type");
    assert_eq!(&bytes[10..12], &[1, 1], "codec, switch");
    let body = bytes.len() - 4;
    assert_eq!(
        &bytes[body..],
        &crc32fast::hash(&bytes[..body]).to_be_bytes()
    );
    let d = BoltFrame::decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!((d.crc_ok, d.version()), (Some(true), BoltVersion::V2Crc));
    let mut corrupt = bytes.clone();
    corrupt[30] ^= 0xff;
    let d = BoltFrame::decode(&mut BytesMut::from(&corrupt[..]))
        .unwrap()
        .unwrap();
    assert_eq!(d.crc_ok, Some(false));
    let v2r = v2.response_to(0, b"abc").encode();
    assert_eq!(&v2r[10..14], &[1, 1, 0, 0], "codec, switch, status");
    let d = BoltFrame::decode(&mut BytesMut::from(&v2r[..]))
        .unwrap()
        .unwrap();
    assert_eq!((d.is_response(), d.crc_ok), (true, Some(true)));
}

#[test]
fn selftest_hessian_strings_ints_and_dubbo_header() {
    let enc = |s: &str| {
        let mut v = Vec::new();
        put_string(&mut v, s);
        v
    };
    assert_eq!(enc(""), [0x00]);
    assert_eq!(enc("hello"), b"\x05hello");
    assert_eq!(enc("\u{e9}"), [0x01, 0xc3, 0xa9], "length in characters");
    let s32 = "a".repeat(32);
    assert_eq!(&enc(&s32)[..2], &[0x30, 0x20]);
    let s1023 = "a".repeat(1023);
    assert_eq!(&enc(&s1023)[..2], &[0x33, 0xff]);
    let s1024 = "a".repeat(1024);
    assert_eq!(&enc(&s1024)[..3], b"S\x04\x00");
    let long = "b".repeat(70_000);
    let e = enc(&long);
    assert_eq!(&e[..3], b"R\xff\xff");
    assert_eq!(&e[3 + 65_535..3 + 65_535 + 3], b"S\x11\x71", "4,465 left");
    for s in ["", "hello", "\u{e9}t\u{e9}", &s32, &s1023, &s1024, &long] {
        assert_eq!(Reader::new(&enc(s)).string().unwrap(), s);
    }
    for (v, bytes) in [
        (0, &[0x90][..]),
        (1, &[0x91]),
        (-16, &[0x80]),
        (47, &[0xbf]),
        (48, &[0xc8, 0x30]),
        (-2048, &[0xc0, 0x00]),
        (262_143, &[0xd7, 0xff, 0xff]),
        (1 << 20, &[b'I', 0, 0x10, 0, 0]),
    ] {
        let mut out = Vec::new();
        put_int(&mut out, v);
        assert_eq!(out, bytes, "int {v}");
        assert_eq!(Reader::new(bytes).int().unwrap(), v);
    }
    assert_eq!(count_params("Ljava/lang/String;[II").unwrap(), 3);
    assert_eq!(count_params("").unwrap(), 0);

    let inv = Invocation::new("svc.Api", "call", "payload").attach("x-k", "v");
    let f = DubboFrame {
        flag: 0xc2,
        status: 0,
        id: 0x0102030405060708,
        body: inv.encode(),
    };
    let bytes = f.encode();
    assert_eq!(&bytes[..12], &[0xda, 0xbb, 0xc2, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&bytes[12..16], &(f.body.len() as u32).to_be_bytes());
    assert_eq!(&f.body[..6], b"\x052.0.2");
    for n in 0..bytes.len() {
        let mut b = BytesMut::from(&bytes[..n]);
        assert_eq!(DubboFrame::decode(&mut b).unwrap(), None, "prefix {n}");
    }
    let d = DubboFrame::decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!(d, f);
    assert_eq!(Invocation::decode(&d.body).unwrap(), inv);
    assert!(DubboFrame::decode(&mut BytesMut::from(&b"\xda\xbc"[..])).is_err());
}

#[tokio::test]
async fn selftest_bolt_client_against_server() {
    let s = BoltServer::start("s1").await;
    let c = Arc::new(BoltClient::connect(s.addr).await);
    let r = c.request(ECHO, "echo", b"hello", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "hello"));
    assert_eq!((r.header("server"), r.cmdcode), (Some("s1"), CMD_RESPONSE));
    assert_eq!(s.requests()[0].header("service"), Some(ECHO));

    // 50 held, then answered newest first: every caller still gets its own response.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let body = format!("body-{i}");
            let r = c
                .request_with(ECHO, "echo", body.as_bytes(), 3000, &[("x-hold", "50")])
                .await
                .unwrap();
            assert_eq!((r.status, r.text()), (0, body));
            r.id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(within(LIMIT, "held requests", t).await.unwrap());
    }
    let sent: Vec<u64> = s.requests()[1..].iter().map(|f| f.id.into()).collect();
    let arrived = c.conn.arrivals()[1..].to_vec();
    let reversed: Vec<u64> = sent.iter().rev().copied().collect();
    assert_eq!(arrived, reversed, "answered newest first");

    assert_eq!(c.heartbeat().await.unwrap(), 0);
    assert_eq!(s.heartbeats(), 1);
    c.oneway(ECHO, "fire", b"one").await.unwrap();
    s.wait_for(LIMIT, "oneway", |s| s.oneways().len() == 1)
        .await;
    let r = c
        .request_with(ECHO, "echo", b"", 3000, &[("x-status", "4")])
        .await
        .unwrap();
    assert_eq!(r.status, bolt::THREADPOOL_BUSY);
    let t0 = Instant::now();
    let r = c
        .request_with(ECHO, "echo", b"late", 3000, &[("x-delay-ms", "150")])
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(r.text(), "late");
    assert!(c.conn.unsolicited().is_empty(), "nothing for the oneway");

    // v2 with CRC, and a frame whose CRC is wrong (the server says codec exception).
    let v2 = BoltClient::connect_version(s.addr, BoltVersion::V2Crc).await;
    let r = v2.request(ECHO, "echo", b"crc", 3000).await.unwrap();
    assert_eq!(
        (r.status, r.version(), r.crc_ok),
        (0, BoltVersion::V2Crc, Some(true))
    );
    let mut bad = v2.frame(ECHO, "echo", b"corrupt", 3000).encode();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    v2.send_bytes(&bad).await.unwrap();
    s.wait_for(LIMIT, "a rejected CRC", |s| s.rejected() == 1)
        .await;

    // x-die: the connection goes, the caller learns it.
    let e = c
        .request_with(ECHO, "echo", b"", 3000, &[("x-die", "1")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
    assert!(c.conn.wait_closed(LIMIT).await);
}

#[tokio::test]
async fn selftest_dubbo_client_against_server() {
    let s = DubboServer::start("d1").await;
    let c = Arc::new(DubboClient::connect(s.addr).await);
    let r = c.request(DUBBO_ECHO, "echo", "hello").await.unwrap();
    assert_eq!((r.status, r.value.as_deref()), (20, Some("d1|hello")));
    let inv = Invocation::decode(&s.requests()[0].body).unwrap();
    assert_eq!(
        (inv.service.as_str(), inv.method.as_str()),
        (DUBBO_ECHO, "echo")
    );

    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let inv = Invocation::new(DUBBO_ECHO, "echo", &format!("v{i}")).attach("x-hold", "40");
            let r = c.call(&inv).await.unwrap();
            assert_eq!(r.value, Some(format!("d1|v{i}")));
        }));
    }
    for t in tasks {
        within(LIMIT, "held requests", t).await.unwrap();
    }
    let sent: Vec<u64> = s.requests()[1..].iter().map(|f| f.id).collect();
    let reversed: Vec<u64> = sent.iter().rev().copied().collect();
    assert_eq!(c.conn.arrivals()[1..].to_vec(), reversed);

    assert_eq!(c.heartbeat().await.unwrap(), dubbo::OK);
    assert_eq!(s.heartbeats(), 1);
    c.oneway(&Invocation::new(DUBBO_ECHO, "fire", "x"))
        .await
        .unwrap();
    s.wait_for(LIMIT, "oneway", |s| s.oneways().len() == 1)
        .await;
    let r = c
        .call(&Invocation::new(DUBBO_ECHO, "echo", "").attach("x-status", "70"))
        .await
        .unwrap();
    assert_eq!(r.status, dubbo::SERVICE_ERROR);
    assert_eq!(r.error.as_deref(), Some("error 70 from d1"));
    assert!(c.conn.unsolicited().is_empty());
    let e = c
        .call(&Invocation::new(DUBBO_ECHO, "echo", "").attach("x-die", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
}

/// Dropping a server closes its connections: callers with requests in flight learn it at
/// once, and its port refuses new connections.
#[tokio::test]
async fn selftest_dropped_server_closes_its_connections() {
    let s = BoltServer::start("s1").await;
    let addr = s.addr;
    let c = Arc::new(BoltClient::connect(addr).await);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            c.request_with(ECHO, "echo", b"", 30_000, &[("x-delay-ms", "20000")])
                .await
        }));
    }
    s.wait_for(LIMIT, "3 requests", |s| s.requests().len() == 3)
        .await;
    drop(s);
    for t in tasks {
        let r = within(Duration::from_secs(3), "caller of a dropped server", t)
            .await
            .unwrap();
        assert!(r.is_err(), "{r:?}");
    }
    assert!(TcpStream::connect(addr).await.is_err(), "port closed");
}
