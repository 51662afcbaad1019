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
use mosn_tests::http;
use mosn_tests::origin::Origin;
use mosn_tests::rpc::{
    Incoming, RpcSetup, closed_within, read_frame, route_any_service, route_service,
    route_service_with, rpc_cluster, rpc_labels, with_heartbeat,
};
use mosn_tests::upstream::dead_addr;
use mosn_tests::{Mosn, timing, within};
use serde_json::json;
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

// =============================================================================================
// End to end: helpers

/// Starts `n` concurrent calls of `service.method` on `c`, call `i` carrying body
/// `<tag>-<i>` and `headers`; returns (body, result) of each.
async fn bolt_burst(
    c: &Arc<BoltClient>,
    n: usize,
    tag: &str,
    service: &str,
    method: &str,
    timeout_ms: i32,
    headers: &[(&str, &str)],
) -> Vec<(String, std::io::Result<BoltFrame>)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = Arc::clone(c);
        let body = format!("{tag}-{i}");
        let (service, method) = (service.to_owned(), method.to_owned());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = c
                .request_with(&service, &method, body.as_bytes(), timeout_ms, &h)
                .await;
            (body, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(within(LIMIT, "a bolt call", t).await.expect("task"));
    }
    out
}

/// Like [`bolt_burst`] for Dubbo: argument `<tag>-<i>`, attachments `attach`.
async fn dubbo_burst(
    c: &Arc<DubboClient>,
    n: usize,
    tag: &str,
    service: &str,
    attach: &[(&str, &str)],
) -> Vec<(String, std::io::Result<dubbo::DubboResponse>)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = Arc::clone(c);
        let arg = format!("{tag}-{i}");
        let mut inv = Invocation::new(service, "echo", &arg);
        for (k, v) in attach {
            inv = inv.attach(k, v);
        }
        tasks.push(tokio::spawn(async move {
            let r = c.call(&inv).await;
            (arg, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(within(LIMIT, "a dubbo call", t).await.expect("task"));
    }
    out
}

/// Asserts every call got the echo of its own body from server `server`.
fn assert_bolt_echoes(results: &[(String, std::io::Result<BoltFrame>)], server: &str) {
    for (body, r) in results {
        let r = r.as_ref().unwrap_or_else(|e| panic!("call {body}: {e}"));
        assert_eq!(
            (r.status, r.text().as_str(), r.header("server")),
            (0, body.as_str(), Some(server)),
            "call {body}"
        );
    }
}

fn assert_dubbo_echoes(results: &[(String, std::io::Result<dubbo::DubboResponse>)], server: &str) {
    for (arg, r) in results {
        let r = r.as_ref().unwrap_or_else(|e| panic!("call {arg}: {e}"));
        assert_eq!(
            (r.status, r.value.clone()),
            (dubbo::OK, Some(format!("{server}|{arg}"))),
            "call {arg}"
        );
    }
}

/// How many adjacent pairs of `ids` descend.
fn descents(ids: &[u64]) -> usize {
    ids.windows(2).filter(|w| w[0] > w[1]).count()
}

/// Waits until `mosn_rpc_errors_total` counts exactly one error with `status` for the
/// protocol, service and method.
async fn wait_one_error(m: &Mosn, protocol: &str, service: &str, method: &str, status: &str) {
    let labels = [
        &rpc_labels(protocol, service, method)[..],
        &[("status", status)],
    ]
    .concat();
    m.metric_until("mosn_rpc_errors_total", &labels, LIMIT, "1", |v| v == 1)
        .await;
}

fn bolt_simple(hosts: &[std::net::SocketAddr]) -> RpcSetup {
    RpcSetup::simple("bolt", hosts)
}

fn dubbo_simple(hosts: &[std::net::SocketAddr]) -> RpcSetup {
    RpcSetup::simple("dubbo", hosts)
}

// =============================================================================================
// 1. Multiplexing

/// 200 requests at once on one client connection, all held by the server and then answered
/// newest first: each caller gets its own response, over one upstream connection. Then two
/// client connections whose ids both start at 1, in flight together: the server sees
/// distinct ids.
#[tokio::test]
async fn bolt_multiplexes_200_requests_answered_in_reverse() {
    let s = BoltServer::start("s1").await;
    let m = bolt_simple(&[s.addr]).start().await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let results = bolt_burst(&c, 200, "a", ECHO, "echo", 10_000, &[("x-hold", "200")]).await;
    assert_bolt_echoes(&results, "s1");
    assert_eq!(
        s.connections(),
        1,
        "one upstream connection carried all 200"
    );
    assert_eq!(s.requests().len(), 200);
    // The server answered newest first; a proxy that put the responses back into request
    // order (head-of-line blocking) would deliver them ascending. Within one upstream read
    // the proxy may write them in any order.
    let arrivals = c.conn.arrivals();
    assert!(
        descents(&arrivals) > 0,
        "responses came back in request order: {arrivals:?}"
    );
    assert!(
        c.conn.unsolicited().is_empty(),
        "every response had its caller's id"
    );
    let ids: HashSet<u32> = s.requests().iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 200, "distinct upstream ids");

    // Two clients, both numbering from 1, 50 requests each held together.
    let c2 = Arc::new(BoltClient::connect(m.listen).await);
    let c3 = Arc::new(BoltClient::connect(m.listen).await);
    let (r2, r3) = tokio::join!(
        bolt_burst(&c2, 50, "b", ECHO, "echo", 10_000, &[("x-hold", "100")]),
        bolt_burst(&c3, 50, "c", ECHO, "echo", 10_000, &[("x-hold", "100")]),
    );
    assert_bolt_echoes(&r2, "s1");
    assert_bolt_echoes(&r3, "s1");
    let mine2: HashSet<u32> = r2.iter().map(|(_, r)| r.as_ref().unwrap().id).collect();
    let mine3: HashSet<u32> = r3.iter().map(|(_, r)| r.as_ref().unwrap().id).collect();
    assert_eq!(mine2, mine3, "both clients used ids 1..=50");
    let batch = &s.requests()[200..];
    assert_eq!(batch.len(), 100);
    let ids: HashSet<u32> = batch.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 100, "the server saw 100 distinct ids: {ids:?}");
    assert_eq!(
        s.connections(),
        1,
        "the client connections share the upstream one"
    );
    let labels = rpc_labels("bolt", ECHO, "echo");
    m.metric_until("mosn_rpc_requests_total", &labels, LIMIT, "300", |v| {
        v == 300
    })
    .await;
}

#[tokio::test]
async fn dubbo_multiplexes_200_requests_answered_in_reverse() {
    let s = DubboServer::start("d1").await;
    let m = dubbo_simple(&[s.addr]).start().await;
    let c = Arc::new(DubboClient::connect(m.listen).await);
    let results = dubbo_burst(&c, 200, "a", DUBBO_ECHO, &[("x-hold", "200")]).await;
    assert_dubbo_echoes(&results, "d1");
    assert_eq!(s.connections(), 1);
    assert!(descents(&c.conn.arrivals()) > 0, "out of order");
    assert!(c.conn.unsolicited().is_empty());
    let ids: HashSet<u64> = s.requests().iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 200);

    let c2 = Arc::new(DubboClient::connect(m.listen).await);
    let c3 = Arc::new(DubboClient::connect(m.listen).await);
    let (r2, r3) = tokio::join!(
        dubbo_burst(&c2, 50, "b", DUBBO_ECHO, &[("x-hold", "100")]),
        dubbo_burst(&c3, 50, "c", DUBBO_ECHO, &[("x-hold", "100")]),
    );
    assert_dubbo_echoes(&r2, "d1");
    assert_dubbo_echoes(&r3, "d1");
    let batch = &s.requests()[200..];
    let ids: HashSet<u64> = batch.iter().map(|f| f.id).collect();
    assert_eq!(
        (batch.len(), ids.len()),
        (100, 100),
        "distinct ids upstream"
    );
    assert_eq!(s.connections(), 1);
}

// =============================================================================================
// 2. Heartbeats

/// A client's heartbeat is answered by mosn itself; an idle upstream connection gets
/// mosn's heartbeats every interval; one whose heartbeats go unanswered `max_failures`
/// times is closed, and the next request opens a new one.
#[tokio::test]
async fn bolt_heartbeats_downstream_and_upstream() {
    let _t = timing().await;
    let s = BoltServer::start("s1").await;
    let setup = RpcSetup::new(
        "bolt",
        json!([route_any_service("c1")]),
        json!([with_heartbeat(rpc_cluster("c1", &[s.addr]), "1s", 2)]),
    );
    let m = setup.start().await;
    let c = BoltClient::connect(m.listen).await;
    assert_eq!(c.heartbeat().await.unwrap(), bolt::SUCCESS);
    let v2 = BoltClient::connect_version(m.listen, BoltVersion::V2Crc).await;
    let hb = BoltFrame::heartbeat(BoltVersion::V2Crc, 77);
    let r = v2.call(hb).await.unwrap();
    assert_eq!(
        (r.ty, r.cmdcode, r.status, r.id, r.version(), r.crc_ok),
        (
            TYPE_RESPONSE,
            CMD_HEARTBEAT,
            0,
            77,
            BoltVersion::V2Crc,
            Some(true)
        ),
        "a v2 heartbeat answered in v2 with a valid CRC"
    );
    assert_eq!(
        (s.connections(), s.heartbeats()),
        (0, 0),
        "client heartbeats never reach the server"
    );

    let r = c.request(ECHO, "echo", b"open", 3000).await.unwrap();
    assert_eq!(r.status, 0);
    s.wait_for(
        Duration::from_secs(6),
        "2 heartbeats on the idle upstream connection",
        |s| s.heartbeats() >= 2,
    )
    .await;
    let beats: Vec<Instant> = s
        .seen()
        .iter()
        .filter(|x| x.kind == Incoming::Heartbeat)
        .map(|x| x.at)
        .collect();
    let gap = beats[1] - beats[0];
    assert!(
        gap >= Duration::from_millis(500),
        "heartbeats {gap:?} apart with a 1 s interval"
    );
    assert_eq!((s.connections(), s.closed_by_peer()), (1, 0));

    s.answer_heartbeats(false);
    let t0 = Instant::now();
    s.wait_for(
        Duration::from_secs(8),
        "mosn closes the connection whose heartbeats go unanswered",
        |s| s.closed_by_peer() == 1,
    )
    .await;
    let ignored = s.heartbeats_ignored();
    assert!(
        ignored >= 2,
        "closed after {ignored} unanswered heartbeat(s) ({:?}); max_failures is 2",
        t0.elapsed()
    );
    s.answer_heartbeats(true);
    let r = c.request(ECHO, "echo", b"again", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "again"));
    assert_eq!(s.connections(), 2, "a new upstream connection");
}

#[tokio::test]
async fn dubbo_heartbeats_downstream_and_upstream() {
    let _t = timing().await;
    let s = DubboServer::start("d1").await;
    let setup = RpcSetup::new(
        "dubbo",
        json!([route_any_service("c1")]),
        json!([with_heartbeat(rpc_cluster("c1", &[s.addr]), "1s", 2)]),
    );
    let m = setup.start().await;
    let c = DubboClient::connect(m.listen).await;
    assert_eq!(c.heartbeat().await.unwrap(), dubbo::OK);
    assert_eq!((s.connections(), s.heartbeats()), (0, 0));
    let r = c.request(DUBBO_ECHO, "echo", "open").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|open"));
    s.wait_for(Duration::from_secs(6), "upstream heartbeats", |s| {
        s.heartbeats() >= 2
    })
    .await;
    let hb = &s.seen_kind(Incoming::Heartbeat)[0];
    assert_eq!(
        (hb.flag & 0xe0, hb.body.as_slice()),
        (0xe0, &b"N"[..]),
        "an event request, two-way, body null"
    );
    s.answer_heartbeats(false);
    s.wait_for(Duration::from_secs(8), "connection closed", |s| {
        s.closed_by_peer() == 1
    })
    .await;
    assert!(s.heartbeats_ignored() >= 2);
    s.answer_heartbeats(true);
    let r = c.request(DUBBO_ECHO, "echo", "again").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|again"));
    assert_eq!(s.connections(), 2);
}

// =============================================================================================
// 3. Upstream death

/// The server closes the connection with ten requests on it (one `x-die`, nine held): all
/// ten callers get "connection closed" at once. Then the server goes away entirely with ten
/// more in flight: the same.
#[tokio::test]
async fn bolt_upstream_death_answers_every_request_in_flight() {
    let s = BoltServer::start("s1").await;
    let mut m = bolt_simple(&[s.addr]).start().await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let held = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            bolt_burst(&c, 9, "held", ECHO, "echo", 30_000, &[("x-hold", "1000")]).await
        })
    };
    s.wait_for(LIMIT, "9 held", |s| s.held() == 9).await;
    let t0 = Instant::now();
    let die = c
        .request_with(ECHO, "echo", b"", 30_000, &[("x-die", "1")])
        .await
        .unwrap();
    let held = within(Duration::from_secs(5), "held callers", held)
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(die.status, bolt::CONNECTION_CLOSED, "{}", die.text());
    for (body, r) in &held {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(r.status, bolt::CONNECTION_CLOSED, "{body}");
    }
    // The next request gets a new upstream connection.
    let r = c.request(ECHO, "echo", b"after", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "after"));
    assert_eq!(s.connections(), 2);

    let flight = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            bolt_burst(&c, 10, "gone", ECHO, "echo", 30_000, &[("x-hold", "1000")]).await
        })
    };
    s.wait_for(LIMIT, "10 held", |s| s.held() == 10).await;
    drop(s);
    let flight = within(
        Duration::from_secs(5),
        "callers of a dropped server",
        flight,
    )
    .await
    .unwrap();
    for (body, r) in &flight {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(r.status, bolt::CONNECTION_CLOSED, "{body}");
    }
    m.assert_up().await;
}

#[tokio::test]
async fn dubbo_upstream_death_answers_every_request_in_flight() {
    let s = DubboServer::start("d1").await;
    let m = dubbo_simple(&[s.addr]).start().await;
    let c = Arc::new(DubboClient::connect(m.listen).await);
    let held = {
        let c = Arc::clone(&c);
        tokio::spawn(
            async move { dubbo_burst(&c, 9, "h", DUBBO_ECHO, &[("x-hold", "1000")]).await },
        )
    };
    s.wait_for(LIMIT, "9 held", |s| s.held() == 9).await;
    let die = c
        .call(&Invocation::new(DUBBO_ECHO, "echo", "").attach("x-die", "1"))
        .await
        .unwrap();
    assert_eq!(die.status, dubbo::SERVER_ERROR, "{:?}", die.error);
    let held = within(Duration::from_secs(5), "held callers", held)
        .await
        .unwrap();
    for (arg, r) in &held {
        assert_eq!(r.as_ref().unwrap().status, dubbo::SERVER_ERROR, "{arg}");
    }
    let r = c.request(DUBBO_ECHO, "echo", "after").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|after"));
    let flight = {
        let c = Arc::clone(&c);
        tokio::spawn(
            async move { dubbo_burst(&c, 10, "g", DUBBO_ECHO, &[("x-hold", "1000")]).await },
        )
    };
    s.wait_for(LIMIT, "10 held", |s| s.held() == 10).await;
    drop(s);
    let flight = within(
        Duration::from_secs(5),
        "callers of a dropped server",
        flight,
    )
    .await
    .unwrap();
    for (arg, r) in &flight {
        assert_eq!(r.as_ref().unwrap().status, dubbo::SERVER_ERROR, "{arg}");
    }
}

// =============================================================================================
// 4. Routing

/// Two services to two clusters; a service no route matches gets "no processor" and is
/// counted as an error; the connection keeps working.
#[tokio::test]
async fn bolt_routes_by_service() {
    let s1 = BoltServer::start("s1").await;
    let s2 = BoltServer::start("s2").await;
    let setup = RpcSetup::new(
        "bolt",
        json!([route_service(ECHO, "c1"), route_service(OTHER, "c2")]),
        json!([rpc_cluster("c1", &[s1.addr]), rpc_cluster("c2", &[s2.addr])]),
    );
    let m = setup.start().await;
    let c = BoltClient::connect(m.listen).await;
    for _ in 0..3 {
        let r = c.request(ECHO, "echo", b"e", 3000).await.unwrap();
        assert_eq!((r.status, r.header("server")), (0, Some("s1")));
        let r = c.request(OTHER, "echo", b"o", 3000).await.unwrap();
        assert_eq!((r.status, r.header("server")), (0, Some("s2")));
    }
    let nope = "com.alipay.test.Nope:1.0";
    let r = c.request(nope, "call", b"x", 3000).await.unwrap();
    assert_eq!(r.status, bolt::NO_PROCESSOR, "{}", r.text());
    assert_eq!(r.id, c.conn.arrivals().last().copied().unwrap() as u32);
    assert_eq!(
        s1.requests().len() + s2.requests().len(),
        6,
        "nobody saw it"
    );
    let r = c.request(ECHO, "echo", b"still", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "still"));

    wait_one_error(&m, "bolt", nope, "call", "6").await;
    let metrics = m.metrics().await;
    assert_eq!(
        metrics.value(
            "mosn_rpc_requests_total",
            &rpc_labels("bolt", OTHER, "echo")
        ),
        3
    );
    assert_eq!(
        metrics.value("mosn_rpc_requests_total", &rpc_labels("bolt", nope, "call")),
        1
    );
}

/// MOSN's `"X"` + `sub_protocol` form, and a regex catch-all after an exact route.
#[tokio::test]
async fn bolt_x_protocol_form_and_catch_all_route() {
    let s1 = BoltServer::start("s1").await;
    let s2 = BoltServer::start("s2").await;
    let setup = RpcSetup::new(
        "bolt",
        json!([route_service(ECHO, "c1"), route_any_service("c2")]),
        json!([rpc_cluster("c1", &[s1.addr]), rpc_cluster("c2", &[s2.addr])]),
    )
    .x_form();
    let m = setup.start().await;
    let c = BoltClient::connect(m.listen).await;
    let r = c.request(ECHO, "echo", b"e", 3000).await.unwrap();
    assert_eq!(r.header("server"), Some("s1"));
    let r = c
        .request("any.Thing:2.0", "echo", b"e", 3000)
        .await
        .unwrap();
    assert_eq!((r.status, r.header("server")), (0, Some("s2")));
    assert_eq!(s2.requests()[0].header("service"), Some("any.Thing:2.0"));
}

#[tokio::test]
async fn dubbo_routes_by_service() {
    let s1 = DubboServer::start("d1").await;
    let s2 = DubboServer::start("d2").await;
    let other = "com.alipay.test.DubboOtherService";
    let setup = RpcSetup::new(
        "dubbo",
        json!([route_service(DUBBO_ECHO, "c1"), route_service(other, "c2")]),
        json!([rpc_cluster("c1", &[s1.addr]), rpc_cluster("c2", &[s2.addr])]),
    );
    let m = setup.start().await;
    let c = DubboClient::connect(m.listen).await;
    let r = c.request(DUBBO_ECHO, "echo", "a").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|a"));
    let r = c.request(other, "echo", "b").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d2|b"));
    let nope = "com.alipay.test.Nope";
    let r = c.request(nope, "call", "c").await.unwrap();
    assert_eq!(r.status, dubbo::SERVICE_NOT_FOUND, "{:?}", r.error);
    assert_eq!(s1.requests().len() + s2.requests().len(), 2);
    let r = c.request(DUBBO_ECHO, "echo", "d").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|d"));
    wait_one_error(&m, "dubbo", nope, "call", "60").await;
}

// =============================================================================================
// 5. Auto-detection

/// One `"Auto"` listener serves Bolt, Dubbo and HTTP/1.1 clients at the same time, each to
/// its own upstream.
#[tokio::test]
async fn auto_listener_serves_bolt_dubbo_and_http_together() {
    let bs = BoltServer::start("b1").await;
    let ds = DubboServer::start("d1").await;
    let o = Origin::start("o1").await;
    let setup = RpcSetup::new(
        "Auto",
        json!([
            route_service(ECHO, "bolt"),
            route_service(DUBBO_ECHO, "dubbo"),
            { "match": { "prefix": "/" }, "route": { "cluster_name": "web" } }
        ]),
        json!([
            rpc_cluster("bolt", &[bs.addr]),
            rpc_cluster("dubbo", &[ds.addr]),
            http::cluster("web", &[o.addr])
        ]),
    );
    let m = setup.start().await;
    let bc = Arc::new(BoltClient::connect(m.listen).await);
    let bc2 = Arc::new(BoltClient::connect_version(m.listen, BoltVersion::V2Crc).await);
    let dc = Arc::new(DubboClient::connect(m.listen).await);
    let listen = m.listen;
    let web = async move {
        let mut replies = Vec::new();
        for i in 0..5 {
            replies.push(http::curl(listen, &format!("/hello/{i}"), &[]).await);
        }
        replies
    };
    let (b, b2, d, w) = tokio::join!(
        bolt_burst(&bc, 20, "bolt", ECHO, "echo", 5000, &[]),
        bolt_burst(&bc2, 20, "bolt2", ECHO, "echo", 5000, &[]),
        dubbo_burst(&dc, 20, "dubbo", DUBBO_ECHO, &[]),
        within(LIMIT, "curl", web),
    );
    assert_bolt_echoes(&b, "b1");
    assert_bolt_echoes(&b2, "b1");
    assert_dubbo_echoes(&d, "d1");
    for (i, r) in w.iter().enumerate() {
        assert_eq!(
            (r.status, r.text()),
            (200, format!("o1 GET /hello/{i}")),
            "curl {i}"
        );
    }
    assert_eq!(
        (bs.requests().len(), ds.requests().len(), o.count()),
        (40, 20, 5)
    );
}

// =============================================================================================
// 6. Oneway

/// A oneway request reaches the server, nothing comes back (not even after its timeout),
/// and the connection keeps working.
#[tokio::test]
async fn bolt_oneway_reaches_the_server_and_gets_no_answer() {
    let s = BoltServer::start("s1").await;
    let m = bolt_simple(&[s.addr]).start().await;
    let c = BoltClient::connect(m.listen).await;
    let mut f = c.frame(ECHO, "fire", b"one-1", 200);
    f.ty = bolt::TYPE_ONEWAY;
    c.conn.send(&f).await.unwrap();
    s.wait_for(LIMIT, "the oneway", |s| s.oneways().len() == 1)
        .await;
    let seen = &s.oneways()[0];
    assert_eq!(
        (seen.ty, seen.content.as_slice()),
        (bolt::TYPE_ONEWAY, &b"one-1"[..])
    );
    // Past the oneway's 200 ms timeout: still nothing for it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = c.request(ECHO, "echo", b"two-way", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "two-way"));
    c.oneway(ECHO, "fire", b"one-2").await.unwrap();
    s.wait_for(LIMIT, "the second oneway", |s| s.oneways().len() == 2)
        .await;
    let r = c.request(ECHO, "echo", b"last", 3000).await.unwrap();
    assert_eq!(r.text(), "last");
    assert!(
        c.conn.unsolicited().is_empty(),
        "something came back for a oneway: {:?}",
        c.conn.unsolicited()
    );
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn dubbo_oneway_reaches_the_server_and_gets_no_answer() {
    let s = DubboServer::start("d1").await;
    let m = dubbo_simple(&[s.addr]).start().await;
    let c = DubboClient::connect(m.listen).await;
    c.oneway(&Invocation::new(DUBBO_ECHO, "fire", "one"))
        .await
        .unwrap();
    s.wait_for(LIMIT, "the oneway", |s| s.oneways().len() == 1)
        .await;
    assert_eq!(s.oneways()[0].flag & dubbo::FLAG_TWO_WAY, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.request(DUBBO_ECHO, "echo", "x").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|x"));
    assert!(
        c.conn.unsolicited().is_empty(),
        "{:?}",
        c.conn.unsolicited()
    );
}

// =============================================================================================
// 7. Timeouts

/// The frame's own timeout (200 ms) and a route timeout (300 ms, shorter than the frame's
/// 5 s) each end a request to a server that takes 2 s with status 7; the late answers are
/// dropped.
#[tokio::test]
async fn bolt_timeouts_from_the_frame_and_the_route() {
    let _t = timing().await;
    let s = BoltServer::start("s1").await;
    let setup = RpcSetup::new(
        "bolt",
        json!([
            route_service_with(OTHER, "c1", json!({ "timeout": "300ms" })),
            route_any_service("c1")
        ]),
        json!([rpc_cluster("c1", &[s.addr])]),
    );
    let m = setup.start().await;
    let c = BoltClient::connect(m.listen).await;
    let slow = [("x-delay-ms", "2000")];
    let t0 = Instant::now();
    let r = c.request_with(ECHO, "slow", b"", 200, &slow).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, bolt::TIMEOUT, "{}", r.text());
    assert!(
        (Duration::from_millis(150)..Duration::from_secs(1)).contains(&took),
        "frame timeout 200 ms answered after {took:?}"
    );
    let t1 = Instant::now();
    let r = c
        .request_with(OTHER, "slow", b"", 5000, &slow)
        .await
        .unwrap();
    let took = t1.elapsed();
    assert_eq!(r.status, bolt::TIMEOUT, "{}", r.text());
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(1500)).contains(&took),
        "route timeout 300 ms answered after {took:?}"
    );
    // The server's late answers arrive at mosn and go nowhere.
    let late = t1 + Duration::from_millis(2300);
    tokio::time::sleep_until(late.into()).await;
    let r = c.request(ECHO, "echo", b"fine", 3000).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "fine"));
    assert!(
        c.conn.unsolicited().is_empty(),
        "{:?}",
        c.conn.unsolicited()
    );
    assert_eq!(
        s.connections(),
        1,
        "a timeout does not close the upstream connection"
    );
    wait_one_error(&m, "bolt", ECHO, "slow", "7").await;
}

#[tokio::test]
async fn dubbo_route_timeout() {
    let _t = timing().await;
    let s = DubboServer::start("d1").await;
    let setup = RpcSetup::new(
        "dubbo",
        json!([route_service_with(
            DUBBO_ECHO,
            "c1",
            json!({ "timeout": "300ms" })
        )]),
        json!([rpc_cluster("c1", &[s.addr])]),
    );
    let m = setup.start().await;
    let c = DubboClient::connect(m.listen).await;
    let t0 = Instant::now();
    let r = c
        .call(&Invocation::new(DUBBO_ECHO, "echo", "").attach("x-delay-ms", "2000"))
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, dubbo::SERVER_TIMEOUT, "{:?}", r.error);
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(1500)).contains(&took),
        "route timeout 300 ms answered after {took:?}"
    );
    let r = c.request(DUBBO_ECHO, "echo", "ok").await.unwrap();
    assert_eq!(r.value.as_deref(), Some("d1|ok"));
    drop(m);
}

// =============================================================================================
// 8. Bad input

/// An unknown protocol byte closes the connection; a frame declaring more than
/// `max_frame_size` gets a codec exception (with its id) and a close; a frame split in two
/// writes 200 ms apart is served. A connection opened before all this is unaffected.
#[tokio::test]
async fn bolt_bad_input() {
    let s = BoltServer::start("s1").await;
    let mut m = bolt_simple(&[s.addr])
        .proxy(json!({ "max_frame_size": "64KiB" }))
        .start()
        .await;
    let bystander = BoltClient::connect(m.listen).await;
    assert_eq!(
        bystander
            .request(ECHO, "echo", b"1", 3000)
            .await
            .unwrap()
            .status,
        0
    );

    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&[
        0x07, 0x01, 0x00, 0x01, 0x01, 0, 0, 0, 1, 1, 0, 0, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
    ])
    .await
    .unwrap();
    assert!(
        closed_within(&mut raw, Duration::from_secs(5)).await,
        "unknown proto byte: connection closed"
    );
    m.assert_up().await;

    // Over the limit: the header says 1 MiB of content; only the header is sent.
    let mut f = BoltFrame::request(BoltVersion::V1, 0x42, ECHO, "echo", b"", 3000).encode();
    f[18..22].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&f).await.unwrap();
    let mut buf = BytesMut::new();
    let r = read_frame::<Bolt>(&mut raw, &mut buf, Duration::from_secs(5))
        .await
        .expect("a codec-exception response")
        .expect("a response before the close");
    assert_eq!(
        (r.ty, r.id, r.status),
        (TYPE_RESPONSE, 0x42, bolt::CODEC_EXCEPTION),
        "{r:?}"
    );
    assert!(
        closed_within(&mut raw, Duration::from_secs(5)).await,
        "closed after it"
    );

    // A header block whose first key claims more bytes than the block has.
    let mut f = BoltFrame::request(BoltVersion::V1, 0x44, ECHO, "echo", b"c", 3000);
    f.headers.clear();
    f.class.clear();
    let mut bytes = f.encode();
    let block = [0u8, 0, 0x03, 0xe8, b'k', b'e', b'y', 0, 0, 0, 0];
    bytes[16..18].copy_from_slice(&(block.len() as u16).to_be_bytes());
    bytes.splice(22..22, block);
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&bytes).await.unwrap();
    let mut buf = BytesMut::new();
    let r = read_frame::<Bolt>(&mut raw, &mut buf, Duration::from_secs(5))
        .await
        .expect("a codec-exception response")
        .expect("a response before the close");
    assert_eq!((r.id, r.status), (0x44, bolt::CODEC_EXCEPTION), "{r:?}");
    assert!(closed_within(&mut raw, Duration::from_secs(5)).await);

    // Within the limit, in two writes.
    let body = vec![b'z'; 60_000];
    let f = BoltFrame::request(BoltVersion::V2Crc, 0x43, ECHO, "echo", &body, 3000).encode();
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&f[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.write_all(&f[10..]).await.unwrap();
    let mut buf = BytesMut::new();
    let r = read_frame::<Bolt>(&mut raw, &mut buf, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the response");
    assert_eq!((r.id, r.status, r.crc_ok), (0x43, 0, Some(true)));
    assert_eq!(r.content, body);

    assert_eq!(
        bystander
            .request(ECHO, "echo", b"2", 3000)
            .await
            .unwrap()
            .text(),
        "2"
    );
    assert_eq!(
        s.requests().len(),
        3,
        "only the good frames reached the server"
    );
}

#[tokio::test]
async fn dubbo_bad_input() {
    let s = DubboServer::start("d1").await;
    let mut m = dubbo_simple(&[s.addr])
        .proxy(json!({ "max_frame_size": "64KiB" }))
        .start()
        .await;
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(b"\xda\xbc\xc2\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01N")
        .await
        .unwrap();
    assert!(
        closed_within(&mut raw, Duration::from_secs(5)).await,
        "bad magic"
    );
    m.assert_up().await;

    let mut f = DubboFrame {
        flag: 0xc2,
        status: 0,
        id: 0x77,
        body: Vec::new(),
    }
    .encode();
    f[12..16].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&f).await.unwrap();
    let mut buf = BytesMut::new();
    let r = read_frame::<Dubbo>(&mut raw, &mut buf, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a bad-request response");
    assert_eq!(
        (r.id, r.status, r.is_request()),
        (0x77, dubbo::BAD_REQUEST, false)
    );
    assert!(closed_within(&mut raw, Duration::from_secs(5)).await);

    let f = DubboFrame {
        flag: 0xc2,
        status: 0,
        id: 0x78,
        body: Invocation::new(DUBBO_ECHO, "echo", "split").encode(),
    }
    .encode();
    let mut raw = TcpStream::connect(m.listen).await.unwrap();
    raw.write_all(&f[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.write_all(&f[7..]).await.unwrap();
    let mut buf = BytesMut::new();
    let r = read_frame::<Dubbo>(&mut raw, &mut buf, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the response");
    assert_eq!((r.id, r.value()), (0x78, Some("d1|split".to_owned())));
    assert_eq!(s.requests().len(), 1);
}

// =============================================================================================
// 9. Versions

/// v1, v2 and v2-with-CRC frames alternate on one connection, one at a time and then all
/// at once: each answer comes in its request's version, CRCs valid both ways (the request id
/// patched by mosn is covered by the CRC).
#[tokio::test]
async fn bolt_v1_and_v2_frames_alternate_on_one_connection() {
    /// Client ids far from where mosn's upstream numbering starts.
    const CLIENT_ID_BASE: u32 = 0x7000_0000;
    let s = BoltServer::start("s1").await;
    let m = bolt_simple(&[s.addr]).start().await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let versions = [BoltVersion::V1, BoltVersion::V2, BoltVersion::V2Crc];
    for i in 0..30 {
        let v = versions[i % 3];
        let body = format!("seq-{i}");
        let f = BoltFrame::request(
            v,
            CLIENT_ID_BASE + c.conn.next_id() as u32,
            ECHO,
            "echo",
            body.as_bytes(),
            3000,
        );
        let r = c.call(f).await.unwrap();
        assert_eq!((r.status, r.version(), r.text()), (0, v, body), "{r:?}");
        if v == BoltVersion::V2Crc {
            assert_eq!(r.crc_ok, Some(true), "response CRC");
        }
    }
    let mut tasks = Vec::new();
    for i in 0..60 {
        let c = Arc::clone(&c);
        let v = versions[i % 3];
        tasks.push(tokio::spawn(async move {
            let body = format!("par-{i}");
            let f = BoltFrame::request(
                v,
                CLIENT_ID_BASE + c.conn.next_id() as u32,
                ECHO,
                "echo",
                body.as_bytes(),
                3000,
            );
            let r = c.call(f).await.unwrap();
            assert_eq!((r.status, r.version(), r.text()), (0, v, body));
            assert_ne!(r.crc_ok, Some(false));
        }));
    }
    for t in tasks {
        within(LIMIT, "mixed versions", t).await.unwrap();
    }
    assert_eq!(s.rejected(), 0, "every CRC the server checked was right");
    let seen = s.requests();
    assert_eq!(seen.len(), 90);
    // mosn numbers upstream requests itself, so it patched the id inside CRC-covered bytes
    // both ways: the CRCs above being right means it recomputed them.
    assert!(
        seen.iter().all(|f| f.id < CLIENT_ID_BASE),
        "upstream ids are mosn's own"
    );
    let crc_seen = seen
        .iter()
        .filter(|f| f.version() == BoltVersion::V2Crc)
        .count();
    assert_eq!(crc_seen, 30, "v2 frames with CRC go upstream as they came");
}

// =============================================================================================
// 10. Metrics

/// Requests, errors and durations per service and method, plus the listener and cluster
/// request counters.
#[tokio::test]
async fn bolt_metrics_per_service_and_method() {
    let s = BoltServer::start("s1").await;
    let m = bolt_simple(&[s.addr]).start().await;
    let c = BoltClient::connect(m.listen).await;
    for _ in 0..3 {
        assert_eq!(
            c.request(ECHO, "sayHello", b"", 3000).await.unwrap().status,
            0
        );
    }
    for _ in 0..2 {
        assert_eq!(
            c.request(ECHO, "sayBye", b"", 3000).await.unwrap().status,
            0
        );
    }
    assert_eq!(
        c.request(OTHER, "sayHello", b"", 3000)
            .await
            .unwrap()
            .status,
        0
    );
    let r = c
        .request_with(ECHO, "sayHello", b"", 3000, &[("x-status", "2")])
        .await
        .unwrap();
    assert_eq!(r.status, bolt::SERVER_EXCEPTION);

    let hello = rpc_labels("bolt", ECHO, "sayHello");
    m.metric_until("mosn_rpc_requests_total", &hello, LIMIT, "4", |v| v == 4)
        .await;
    m.metric_until(
        "mosn_rpc_request_duration_seconds_count",
        &hello,
        LIMIT,
        "4",
        |v| v == 4,
    )
    .await;
    let metrics = m.metrics().await;
    let bye = rpc_labels("bolt", ECHO, "sayBye");
    let other = rpc_labels("bolt", OTHER, "sayHello");
    assert_eq!(metrics.value("mosn_rpc_requests_total", &bye), 2);
    assert_eq!(metrics.value("mosn_rpc_requests_total", &other), 1);
    assert_eq!(
        metrics.value("mosn_rpc_request_duration_seconds_count", &bye),
        2
    );
    assert_eq!(
        metrics.value(
            "mosn_rpc_errors_total",
            &[&hello[..], &[("status", "2")]].concat()
        ),
        1
    );
    assert!(
        metrics
            .get(
                "mosn_rpc_errors_total",
                &[&bye[..], &[("status", "2")]].concat()
            )
            .is_none_or(|v| v == 0.0),
        "no errors for sayBye"
    );
    assert_eq!(
        metrics.value("mosn_listener_downstream_rq_total", &[("listener", "l1")]),
        7
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_rq_total", &[("cluster", "c1")]),
        7
    );
}

#[tokio::test]
async fn dubbo_metrics_per_service_and_method() {
    let s = DubboServer::start("d1").await;
    let m = dubbo_simple(&[s.addr]).start().await;
    let c = DubboClient::connect(m.listen).await;
    for _ in 0..3 {
        assert_eq!(
            c.request(DUBBO_ECHO, "echo", "x").await.unwrap().status,
            dubbo::OK
        );
    }
    let r = c
        .call(&Invocation::new(DUBBO_ECHO, "echo", "").attach("x-status", "70"))
        .await
        .unwrap();
    assert_eq!(r.status, dubbo::SERVICE_ERROR);
    let echo = rpc_labels("dubbo", DUBBO_ECHO, "echo");
    m.metric_until("mosn_rpc_requests_total", &echo, LIMIT, "4", |v| v == 4)
        .await;
    wait_one_error(&m, "dubbo", DUBBO_ECHO, "echo", "70").await;
    assert_eq!(m.cluster_metric("mosn_cluster_upstream_rq_total").await, 4);
}

// =============================================================================================
// 11. Hosts: none healthy, retries, circuit breaker

#[tokio::test]
async fn bolt_no_healthy_host_is_connection_closed() {
    let m = bolt_simple(&[dead_addr()]).start().await;
    let c = BoltClient::connect(m.listen).await;
    let t0 = Instant::now();
    let r = c.request(ECHO, "echo", b"", 10_000).await.unwrap();
    assert_eq!(r.status, bolt::CONNECTION_CLOSED, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let r = c.request(ECHO, "echo", b"", 10_000).await.unwrap();
    assert_eq!(
        r.status,
        bolt::CONNECTION_CLOSED,
        "the connection stays usable"
    );
}

#[tokio::test]
async fn dubbo_no_healthy_host_is_server_error() {
    let m = dubbo_simple(&[dead_addr()]).start().await;
    let c = DubboClient::connect(m.listen).await;
    let r = c.request(DUBBO_ECHO, "echo", "").await.unwrap();
    assert_eq!(r.status, dubbo::SERVER_ERROR, "{:?}", r.error);
}

/// Two hosts, one refusing connections; with a retry policy every request succeeds.
#[tokio::test]
async fn bolt_retry_moves_to_the_live_host() {
    let s = BoltServer::start("s1").await;
    let dead = dead_addr();
    let setup = RpcSetup::new(
        "bolt",
        json!([
            route_service_with(
                ECHO,
                "c1",
                json!({ "retry_policy": { "retry_on": true, "num_retries": 1 } })
            ),
            route_service(OTHER, "plain")
        ]),
        json!([
            rpc_cluster("c1", &[dead, s.addr]),
            rpc_cluster("plain", &[dead, s.addr])
        ]),
    );
    let m = setup.start().await;
    let c = BoltClient::connect(m.listen).await;
    for i in 0..20 {
        let body = format!("r{i}");
        let r = c
            .request(ECHO, "echo", body.as_bytes(), 5000)
            .await
            .unwrap();
        assert_eq!((r.status, r.text()), (0, body), "request {i}");
    }
    assert_eq!(s.requests().len(), 20);
    let retried = m
        .metrics()
        .await
        .value("mosn_cluster_upstream_rq_retry_total", &[("cluster", "c1")]);
    assert!(
        retried > 0,
        "round robin sent some first tries to the dead host"
    );
    // Without the policy, the refused connect is the answer for some.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(c.request(OTHER, "echo", b"", 5000).await.unwrap().status);
    }
    assert!(
        statuses.contains(&bolt::CONNECTION_CLOSED) && statuses.contains(&bolt::SUCCESS),
        "{statuses:?}"
    );
}

/// Over the cluster's `max_requests`, a request is refused with "threadpool busy".
#[tokio::test]
async fn bolt_circuit_breaker_overflow_is_threadpool_busy() {
    let s = BoltServer::start("s1").await;
    let mut cluster = rpc_cluster("c1", &[s.addr]);
    cluster["circuit_breakers"] = json!([{ "max_requests": 2 }]);
    let m = RpcSetup::new("bolt", json!([route_any_service("c1")]), json!([cluster]))
        .start()
        .await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let busy = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            bolt_burst(
                &c,
                2,
                "slow",
                ECHO,
                "echo",
                10_000,
                &[("x-delay-ms", "1000")],
            )
            .await
        })
    };
    s.wait_for(LIMIT, "2 in flight", |s| s.requests().len() == 2)
        .await;
    let r = c.request(ECHO, "echo", b"third", 10_000).await.unwrap();
    assert_eq!(r.status, bolt::THREADPOOL_BUSY, "{}", r.text());
    assert_bolt_echoes(&within(LIMIT, "the two", busy).await.unwrap(), "s1");
    let r = c.request(ECHO, "echo", b"fourth", 10_000).await.unwrap();
    assert_eq!(r.status, 0, "below the limit again");
}

// =============================================================================================
// 12. Header mutations

/// A route's header mutations rewrite Bolt frames both ways (v2 with its CRC recomputed);
/// frames on a route without mutations go upstream byte for byte, id aside.
#[tokio::test]
async fn bolt_route_header_mutations_rewrite_frames() {
    let s = BoltServer::start("s1").await;
    let entry = |k: &str, v: &str| json!({ "header": { "key": k, "value": v }, "append": false });
    let setup = RpcSetup::new(
        "bolt",
        json!([
            route_service(ECHO, "c1"),
            {
                "match": { "headers": [{ "name": "service", "value": OTHER }] },
                "route": { "cluster_name": "c1" },
                "request_headers_to_add": [entry("x-route", "r1")],
                "request_headers_to_remove": ["x-drop"],
                "response_headers_to_add": [entry("x-resp", "added")]
            }
        ]),
        json!([rpc_cluster("c1", &[s.addr])]),
    );
    let m = setup.start().await;
    let c = BoltClient::connect_version(m.listen, BoltVersion::V2Crc).await;
    let req = c
        .frame(OTHER, "echo", b"mutated", 3000)
        .with_header("x-drop", "1")
        .with_header("x-keep", "2");
    let r = c.call(req).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "mutated"), "{r:?}");
    assert_eq!(r.header("x-resp"), Some("added"));
    assert_eq!(r.crc_ok, Some(true), "the rebuilt response's CRC");
    let seen = s.requests();
    let up = seen.last().expect("the server saw it");
    assert_eq!(up.header("x-route"), Some("r1"));
    assert_eq!(up.header("x-drop"), None);
    assert_eq!(up.header("x-keep"), Some("2"));
    assert_eq!(up.header("service"), Some(OTHER));
    assert_eq!(s.rejected(), 0, "the rebuilt request's CRC was right");

    // No mutations: the frame goes upstream as sent, apart from its id (and CRC).
    let req = c
        .frame(ECHO, "echo", b"as is", 3000)
        .with_header("x-drop", "1");
    let sent = req.encode();
    let r = c.call(req).await.unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.header("x-resp"), None);
    let up = s.requests().last().cloned().expect("seen");
    let mut got = up.encode();
    // Bring the upstream id back to the client's and compare every byte.
    let id_at = 2 + 1 + 2 + 1; // v2: proto, ver1, type, cmdcode, ver2
    got[id_at..id_at + 4].copy_from_slice(&sent[id_at..id_at + 4]);
    let crc_at = got.len() - 4;
    got[crc_at..].copy_from_slice(&sent[crc_at..]);
    assert_eq!(got, sent, "forwarded byte for byte");
}

// =============================================================================================
// 13. Drain

/// On SIGTERM a Bolt connection stops taking requests but answers the one in flight, then
/// closes; the daemon exits once it has.
#[tokio::test]
async fn bolt_drain_answers_requests_in_flight() {
    let s = BoltServer::start("s1").await;
    let mut m = bolt_simple(&[s.addr]).start().await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let slow = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            c.request_with(ECHO, "echo", b"slow", 5000, &[("x-delay-ms", "800")])
                .await
        })
    };
    // The request is upstream before the signal.
    let started = Instant::now();
    while s.requests().is_empty() {
        assert!(
            started.elapsed() < LIMIT,
            "the request never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m.signal(libc::SIGTERM);
    let r = within(LIMIT, "slow request", slow).await.unwrap().unwrap();
    assert_eq!((r.status, r.text().as_str()), (0, "slow"));
    assert!(
        c.conn.wait_closed(Duration::from_secs(5)).await,
        "the drained connection closes"
    );
    let exit = m.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}\n{}", m.log());
}

// =============================================================================================
// 14. Backpressure

/// A client flooding a slow upstream with large requests: mosn stops reading once 8 MiB of
/// requests are in flight on the connection (so it never holds the whole flood), and every
/// request is still answered as the upstream catches up.
#[tokio::test]
async fn bolt_large_requests_in_flight_are_bounded() {
    const N: usize = 100;
    const SIZE: usize = 256 * 1024;
    /// 8 MiB of requests in flight, plus the one that crosses the line.
    const MAX_SEEN: usize = (8 << 20) / SIZE + 1;
    let s = BoltServer::start("s1").await;
    let m = bolt_simple(&[s.addr]).start().await;
    let c = Arc::new(BoltClient::connect(m.listen).await);
    let body = vec![b'x'; SIZE];
    let mut tasks = Vec::new();
    for _ in 0..N {
        let (c, body) = (Arc::clone(&c), body.clone());
        tasks.push(tokio::spawn(async move {
            c.request_with(ECHO, "echo", &body, 30_000, &[("x-delay-ms", "700")])
                .await
        }));
    }
    // While the first requests are held by the server, the rest wait in the client's socket.
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_millis(600) {
        most = most.max(s.requests().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most > 0, "requests reached the server");
    assert!(
        most <= MAX_SEEN,
        "{most} requests of 256 KiB in flight at once (at most {MAX_SEEN})"
    );
    for t in tasks {
        let r = within(LIMIT, "flooded request", t).await.unwrap().unwrap();
        assert_eq!((r.status, r.content.len()), (0, SIZE));
    }
    assert_eq!(s.requests().len(), N);
}

// =============================================================================================
// 15. Stream filters

/// The listener's stream filters see RPC requests (their headers as HTTP headers) and their
/// answers come back in Bolt's format: rbac on the `service` header → no processor, the
/// local rate limit → threadpool busy, payload_limit on the frame's size.
#[tokio::test]
async fn bolt_stream_filters_answer_in_bolt() {
    let s = BoltServer::start("s1").await;
    let secret = "com.alipay.test.Secret:1.0";
    let m = RpcSetup::simple("bolt", &[s.addr])
        .stream_filters(json!([
            { "type": "rbac", "config": { "action": "DENY", "policies": { "no-secret": {
                "principals": [{ "any": true }],
                "permissions": [{ "header": { "name": "service", "exact_match": secret } }]
            } } } },
            { "type": "payload_limit", "config": { "max_entity_size": 4096 } },
            { "type": "local_ratelimit", "config": { "max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "1h" } }
        ]))
        .start()
        .await;
    let c = BoltClient::connect(m.listen).await;
    let r = c.request(secret, "get", b"x", 3000).await.unwrap();
    assert_eq!(r.status, bolt::NO_PROCESSOR, "rbac denies the service");
    let r = c.request(ECHO, "echo", &[b'x'; 8192], 3000).await.unwrap();
    assert_eq!(
        r.status,
        bolt::NO_PROCESSOR,
        "payload_limit refuses a large frame"
    );
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = c
            .request(ECHO, "echo", format!("r{i}").as_bytes(), 3000)
            .await
            .unwrap();
        statuses.push(r.status);
    }
    // As for HTTP, every filter sees the head before any sees the body: the large request
    // took a token before payload_limit refused its body, so two are left.
    let busy = bolt::THREADPOOL_BUSY;
    assert_eq!(
        statuses,
        [0, 0, busy, busy, busy],
        "three tokens, then the limit"
    );
    assert_eq!(
        s.requests().len(),
        2,
        "only admitted requests reach the server"
    );
}

/// Mirroring works on RPC too: the `mirror` filter and a route's `request_mirror_policies`
/// each send a copy of the frame (as sent upstream, with the route's header mutations) to
/// their cluster; the client gets the real upstream's answer only, and the mirror cluster
/// counts `upstream_rq_mirrored`.
#[tokio::test]
async fn bolt_requests_are_mirrored() {
    let s = BoltServer::start("s1").await;
    let by_filter = BoltServer::start("m1").await;
    let by_route = BoltServer::start("m2").await;
    let entry = json!({ "header": { "key": "x-route", "value": "r1" }, "append": false });
    let m = RpcSetup::new(
        "bolt",
        json!([{
            "match": { "headers": [{ "name": "service", "value": ECHO }] },
            "route": {
                "cluster_name": "c1",
                "request_mirror_policies": { "cluster": "m2", "percent": 100 }
            },
            "request_headers_to_add": [entry]
        }]),
        json!([
            rpc_cluster("c1", &[s.addr]),
            rpc_cluster("m1", &[by_filter.addr]),
            rpc_cluster("m2", &[by_route.addr])
        ]),
    )
    .stream_filters(json!([{ "type": "mirror", "config": { "cluster": "m1" } }]))
    .start()
    .await;
    let c = BoltClient::connect(m.listen).await;
    for i in 0..3 {
        let body = format!("copy me {i}");
        let r = c
            .request(ECHO, "echo", body.as_bytes(), 3000)
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.text(), r.header("server")),
            (0, body.clone(), Some("s1")),
            "answered by s1 only: the mirrors' answers are dropped"
        );
    }
    for (name, server) in [("m1", &by_filter), ("m2", &by_route)] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while server.requests().len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = server.requests();
        assert_eq!(seen.len(), 3, "{name} got a copy of every request");
        for (i, req) in seen.iter().enumerate() {
            assert_eq!(req.header("service"), Some(ECHO));
            assert_eq!(req.header("x-route"), Some("r1"), "as sent upstream");
            assert_eq!(req.text(), format!("copy me {i}"));
        }
        let mirrored = m.metrics().await.value(
            "mosn_cluster_upstream_rq_mirrored_total",
            &[("cluster", name)],
        );
        assert_eq!(mirrored, 3, "{name}: upstream_rq_mirrored");
    }
    assert_eq!(s.requests().len(), 3);
}
