//! The L7 proxy with HTTP/2 (h2c, prior knowledge): real clients (curl, h2load, the `h2`
//! crate's client) through the daemon to a real HTTP/1.1 origin (hyper) or h2c origin (the
//! `h2` crate's server). Each test starts its own daemon and origins. Hostile input is in
//! `h2_bad_input.rs`; gRPC in `grpc.rs`.
//!
//! The first two tests run the test's own HTTP/2 client and origin against each other, without
//! the daemon: they show that what the other tests rely on behaves as the tests assume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;
use http::HeaderMap;
use mosn_tests::data::{random_bytes, sha256};
use mosn_tests::h2::{
    H2Client, H2Origin, collect, curl_h2, curl_version, grpc_headers, h2load, hash_body, protocols,
};
use mosn_tests::h2_origin::send_flow;
use mosn_tests::h2_raw::{self, END_STREAM, HEADERS, RawConn};
use mosn_tests::http::{HttpSetup, curl};
use mosn_tests::origin::Origin;
use mosn_tests::{LISTENER, heavy, hex, within};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

fn setup(hosts: &[std::net::SocketAddr], down: &str, up: &str) -> HttpSetup {
    protocols(HttpSetup::simple(hosts), down, up)
}

fn trailer_map(name: &'static str, value: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, value.parse().unwrap());
    t
}

// ---------------------------------------------------------------------------------------------
// The test peers alone

#[tokio::test]
async fn h2_client_and_origin_work_directly() {
    let o = H2Origin::start("o1").await;
    let c = H2Client::connect(o.addr).await;
    within(LIMIT, "direct exchanges", async {
        let r = c.get("/hello?x=1").await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "o1 GET /hello"));
        assert_eq!(r.header("x-origin"), Some("o1"));
        let seen = o.last();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/hello?x=1")
        );
        assert_eq!(seen.authority.as_deref(), Some("127.0.0.1"));
        assert_eq!(seen.body_len, Some(0));

        let body = random_bytes(300_000, 7);
        let r = c
            .request(
                "POST",
                "/echo",
                &[],
                Bytes::from(body.clone()),
                Some(trailer_map("x-req-trailer", "1")),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.body == body,
            "echoed body differs ({} bytes)",
            r.body.len()
        );
        assert_eq!(r.trailer("x-trailer"), Some("done"));
        assert!(!r.trailers_only);
        let seen = o.last();
        assert_eq!(seen.body_len, Some(300_000));
        assert_eq!(seen.body_sha, Some(hex(&sha256(&body))));
        let t = seen.trailers.expect("request trailers recorded");
        assert_eq!(t.get("x-req-trailer").unwrap(), "1");

        let r = c.get("/trailers-only").await.unwrap();
        assert!(r.trailers_only, "{r:?}");
        assert_eq!((r.status, r.grpc_status()), (200, Some("5")));
        assert!(r.body.is_empty() && r.trailers.is_none());

        let r = c.get("/reset").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "partial");
        assert_eq!(r.reset_reason(), Some(Reason::INTERNAL_ERROR), "{r:?}");

        let e = c.get("/reset-early").await.unwrap_err();
        assert_eq!(e.reason(), Some(Reason::INTERNAL_ERROR), "{e:?}");

        let (_resp, mut out) = c.open("GET", "/hold", &[], true).await.unwrap();
        o.wait_for(LIMIT, "the /hold request", |o| {
            o.seen().last().is_some_and(|s| s.path == "/hold")
        })
        .await;
        out.send_reset(Reason::CANCEL);
        o.wait_for(LIMIT, "the reset of /hold", |o| !o.resets().is_empty())
            .await;
        assert_eq!(o.resets(), vec![("/hold".to_owned(), Reason::CANCEL)]);

        let r = c.get("/after").await.unwrap();
        assert_eq!(
            r.text(),
            "o1 GET /after",
            "the connection outlives its streams' resets"
        );
    })
    .await;
    assert_eq!(o.connections(), 1);
}

/// The hand-written frames mean what they say: the `h2` crate's server answers each with the
/// error the bad-input tests expect of the daemon, or with a response.
#[tokio::test]
async fn raw_frames_work_directly() {
    let o = H2Origin::start("o1").await;
    // A well-formed GET: HEADERS then DATA with END_STREAM on stream 1.
    let mut raw = RawConn::connect(o.addr).await;
    let mut req = h2_raw::client_start();
    req.extend(h2_raw::headers(1, &h2_raw::hpack_get("/raw"), true, true));
    assert!(raw.send(&req).await);
    let head = raw
        .until(LIMIT, |f| f.ty == HEADERS && f.stream == 1)
        .await
        .expect("response HEADERS on stream 1");
    assert_eq!(head.flags & END_STREAM, 0);
    let end = raw
        .until(LIMIT, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await
        .expect("end of stream 1");
    assert_eq!(end.payload, b"o1 GET /raw");
    assert_eq!(o.last().authority.as_deref(), Some("x"));

    let cases: [(&str, Vec<u8>, u32); 3] = [
        (
            "window overflow",
            h2_raw::window_update(0, 0x7fff_ffff),
            h2_raw::FLOW_CONTROL_ERROR,
        ),
        (
            "oversized frame",
            h2_raw::headers(1, &vec![0u8; h2_raw::DEFAULT_MAX_FRAME + 1], true, true),
            h2_raw::FRAME_SIZE_ERROR,
        ),
        (
            "too many CONTINUATION frames",
            {
                let mut v = h2_raw::headers(1, &h2_raw::hpack_get("/"), true, false);
                for i in 0..2000 {
                    let pad = h2_raw::hpack_literal(&format!("x-pad-{i}"), "y");
                    v.extend(h2_raw::continuation(1, &pad, false));
                }
                v
            },
            h2_raw::ENHANCE_YOUR_CALM,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut raw = RawConn::connect(o.addr).await;
        let mut all = h2_raw::client_start();
        all.extend(bytes);
        raw.send(&all).await;
        let t = raw.transcript(LIMIT).await;
        assert_eq!(
            t.goaway().map(|g| g.1),
            Some(code),
            "{what}: {}",
            t.summary()
        );
        assert!(t.closed, "{what}: {}", t.summary());
    }
    // HPACK garbage: the h2 crate answers PROTOCOL_ERROR (RFC 9113 asks COMPRESSION_ERROR).
    let mut raw = RawConn::connect(o.addr).await;
    let mut all = h2_raw::client_start();
    all.extend(h2_raw::headers(1, &[0xff, 0xff, 0xff, 0x7f], true, true));
    raw.send(&all).await;
    let t = raw.transcript(LIMIT).await;
    let code = t.goaway().map(|g| g.1);
    assert!(
        code == Some(h2_raw::PROTOCOL_ERROR) || code == Some(h2_raw::COMPRESSION_ERROR),
        "{}",
        t.summary()
    );
}

/// curl and h2load against the h2c origin: the parsers read what the real tools print.
#[tokio::test]
async fn curl_and_h2load_work_directly() {
    let o = H2Origin::start("o1").await;
    let (version, r) = curl_h2(o.addr, "/direct", &[]).await;
    assert_eq!(
        (version.as_str(), r.status, r.text().as_str()),
        ("HTTP/2", 200, "o1 GET /direct")
    );
    let r = h2load(&format!("http://{}/load", o.addr), 200, 2, 4, LIMIT).await;
    assert_eq!(
        (r.total, r.succeeded, r.failed, r.errored, r.status_2xx),
        (200, 200, 0, 0, 200),
        "{}",
        r.output
    );
    assert_eq!(o.count(), 201);
}

// ---------------------------------------------------------------------------------------------
// Protocol pairings

#[tokio::test]
async fn curl_h2c_through_to_an_http1_origin() {
    let o = Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http1").start().await;
    let (version, r) = curl_h2(m.listen, "/hello?x=1", &["-H", "x-keep: 2"]).await;
    assert_eq!(
        (version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.text()
    );
    assert_eq!(r.text(), "o1 GET /hello");
    assert_eq!(r.header("x-origin"), Some("o1"));
    let seen = o.last();
    assert_eq!(seen.uri, "/hello?x=1");
    assert_eq!(seen.headers.get("x-keep").unwrap(), "2");
    assert_eq!(
        seen.headers.get("host").unwrap(),
        &m.listen.to_string(),
        ":authority becomes Host"
    );
    let body = "x".repeat(100_000);
    let (_, r) = curl_h2(m.listen, "/echo", &["--data-binary", &body]).await;
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    assert!(r.body == body.as_bytes());
    let metrics = m.metrics().await;
    let l = [("listener", LISTENER)];
    assert_eq!(metrics.value("mosn_listener_downstream_rq_total", &l), 2);
    assert_eq!(
        metrics.value("mosn_listener_downstream_rq_2xx_total", &l),
        2
    );
}

#[tokio::test]
async fn curl_h2c_through_to_an_h2c_origin() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let (version, r) = curl_h2(m.listen, "/hello", &["-H", "x-keep: 2"]).await;
    assert_eq!(
        (version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.text()
    );
    assert_eq!(r.text(), "o1 GET /hello");
    let seen = o.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/hello")
    );
    assert_eq!(seen.authority, Some(m.listen.to_string()));
    assert_eq!(seen.headers.get("x-keep").unwrap(), "2");
    let body = "y".repeat(100_000);
    let (_, r) = curl_h2(m.listen, "/sink", &["--data-binary", &body]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("100000 {}", hex(&sha256(body.as_bytes())))
    );
    let l = [("listener", LISTENER)];
    assert_eq!(
        m.metrics()
            .await
            .value("mosn_listener_downstream_rq_total", &l),
        2
    );
}

#[tokio::test]
async fn http1_client_through_to_an_h2c_origin() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http1", "Http2").start().await;
    let body = "z".repeat(100_000);
    let r = curl(m.listen, "/echo", &["--data-binary", &body]).await;
    assert_eq!((r.status, r.body.len()), (200, body.len()), "{}", r.text());
    assert!(r.body == body.as_bytes());
    let seen = o.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/echo")
    );
    assert_eq!(seen.body_sha, Some(hex(&sha256(body.as_bytes()))));
    assert!(
        seen.headers.get("connection").is_none() && seen.headers.get("transfer-encoding").is_none(),
        "no HTTP/1 connection-specific fields upstream over HTTP/2: {:?}",
        seen.headers
    );
    let r = curl(m.listen, "/reset-early", &[]).await;
    assert_eq!(
        r.status,
        502,
        "an upstream reset before headers: {}",
        r.text()
    );
    let r = curl(m.listen, "/status/404", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (404, "status 404"));
}

#[tokio::test]
async fn auto_detects_h2c_beside_http1() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Auto", "Http2").start().await;
    let (v1, r1) = curl_version(m.listen, "/one", "--http1.1", &[]).await;
    assert_eq!(
        (v1.as_str(), r1.status, r1.text().as_str()),
        ("HTTP/1.1", 200, "o1 GET /one")
    );
    let (v2, r2) = curl_h2(m.listen, "/two", &[]).await;
    assert_eq!(
        (v2.as_str(), r2.status, r2.text().as_str()),
        ("HTTP/2", 200, "o1 GET /two")
    );
    let c = H2Client::connect(m.listen).await;
    let r = within(LIMIT, "h2 client through Auto", c.get("/three"))
        .await
        .unwrap();
    assert_eq!(r.text(), "o1 GET /three");
    assert_eq!(o.count(), 3);
}

#[tokio::test]
async fn h2load_requests_all_succeed() {
    let _heavy = heavy().await;
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let url = format!("http://{}/load", m.listen);
    let r = h2load(&url, 2000, 4, 16, Duration::from_secs(60)).await;
    assert_eq!(
        (
            r.total,
            r.succeeded,
            r.failed,
            r.errored,
            r.timeout,
            r.status_2xx
        ),
        (2000, 2000, 0, 0, 0, 2000),
        "{}",
        r.output
    );
    assert_eq!(o.count(), 2000);
    let metrics = m.metrics().await;
    let l = [("listener", LISTENER)];
    assert_eq!(metrics.value("mosn_listener_downstream_rq_total", &l), 2000);
    assert_eq!(
        metrics.value("mosn_listener_downstream_rq_2xx_total", &l),
        2000
    );
}

// ---------------------------------------------------------------------------------------------
// Streams: trailers, resets, concurrency, size

#[tokio::test]
async fn trailers_pass_through_both_ways() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = H2Client::connect(m.listen).await;
    within(LIMIT, "trailers", async {
        let r = c
            .request(
                "POST",
                "/echo",
                &[("te", "trailers")],
                Bytes::from_static(b"hello"),
                Some(trailer_map("x-req-trailer", "yes")),
            )
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.trailer("x-trailer"), Some("done"), "{r:?}");
        let seen = o.last();
        let t = seen.trailers.expect("request trailers reached the origin");
        assert_eq!(t.get("x-req-trailer").unwrap(), "yes");

        let r = c.get("/trailers-only").await.unwrap();
        assert!(
            r.trailers_only,
            "a trailers-only response stays one HEADERS frame: {r:?}"
        );
        assert_eq!((r.status, r.grpc_status()), (200, Some("5")));
        assert_eq!(r.header("grpc-message"), Some("not found here"));
    })
    .await;
}

#[tokio::test]
async fn upstream_resets_reach_the_client() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = H2Client::connect(m.listen).await;
    within(LIMIT, "resets", async {
        // After the response headers: the client's stream is reset, the headers arrived.
        let r = c.get("/reset").await.expect("headers before the reset");
        assert_eq!(r.status, 200);
        assert!(
            r.error.as_ref().is_some_and(h2::Error::is_reset),
            "the upstream reset reaches the client as RST_STREAM: {r:?}"
        );
        assert!(b"partial".starts_with(&r.body), "{:?}", r.text());
        // Before them: a local reply.
        let r = c.get("/reset-early").await.expect("a local reply");
        assert_eq!(r.status, 502, "{}", r.text());
        // The same, for a gRPC request: 200, trailers-only, UNAVAILABLE.
        let r = c
            .request(
                "POST",
                "/reset-early",
                &grpc_headers(&[]),
                Bytes::new(),
                None,
            )
            .await
            .expect("a gRPC local reply");
        assert_eq!((r.status, r.grpc_status()), (200, Some("14")), "{r:?}");
        assert!(r.trailers_only, "{r:?}");
        // The connection still serves.
        let r = c.get("/ok").await.unwrap();
        assert_eq!(r.text(), "o1 GET /ok");
    })
    .await;
}

#[tokio::test]
async fn downstream_reset_cancels_the_upstream_stream() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = H2Client::connect(m.listen).await;
    let (_resp, mut out) = c.open("GET", "/hold", &[], true).await.unwrap();
    o.wait_for(LIMIT, "the /hold request upstream", |o| o.count() == 1)
        .await;
    out.send_reset(Reason::CANCEL);
    o.wait_for(LIMIT, "the cancellation upstream", |o| {
        !o.resets().is_empty()
    })
    .await;
    assert_eq!(o.resets(), vec![("/hold".to_owned(), Reason::CANCEL)]);
    let r = within(LIMIT, "next request", c.get("/next")).await.unwrap();
    assert_eq!(r.text(), "o1 GET /next");
}

#[tokio::test]
async fn http1_client_leaving_cancels_the_upstream_stream() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http1", "Http2").start().await;
    let mut s = TcpStream::connect(m.listen).await.unwrap();
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    o.wait_for(LIMIT, "the /hold request upstream", |o| o.count() == 1)
        .await;
    drop(s);
    o.wait_for(LIMIT, "the upstream stream reset", |o| {
        !o.resets().is_empty()
    })
    .await;
    assert_eq!(o.resets()[0].0, "/hold");
}

#[tokio::test]
async fn a_thousand_concurrent_streams_on_one_connection() {
    let _heavy = heavy().await;
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = Arc::new(H2Client::connect(m.listen).await);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let r = c.get(&format!("/delay/300?i={i}")).await;
            r.map(|r| (r.status, r.text()))
        }));
    }
    let mut ok = 0;
    within(LIMIT, "1,000 streams", async {
        for t in tasks {
            let (status, text) = t.await.unwrap().expect("stream answered");
            assert_eq!((status, text.as_str()), (200, "delayed"));
            ok += 1;
        }
    })
    .await;
    let took = started.elapsed();
    assert_eq!(ok, 1000);
    // Served one after another they would take 300 s; concurrently, a few seconds.
    assert!(
        took < Duration::from_secs(20),
        "1,000 streams of 300 ms took {took:?}"
    );
    assert_eq!(o.count(), 1000);
    let mut seen: Vec<String> = o.seen().into_iter().map(|s| s.path).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1000, "every stream reached the origin once");
    let l = [("listener", LISTENER)];
    assert_eq!(
        m.metrics()
            .await
            .value("mosn_listener_downstream_rq_total", &l),
        1000
    );
}

#[tokio::test]
async fn sixty_four_mib_each_way_arrive_intact() {
    const SIZE: usize = 64 << 20;
    let _heavy = heavy().await;
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = H2Client::connect(m.listen).await;
    let data = Bytes::from(random_bytes(SIZE, 64));
    let want = hex(&sha256(&data));
    let (resp, mut out) = c.open("POST", "/echo", &[], false).await.unwrap();
    let (sent, got) = within(Duration::from_secs(120), "64 MiB echoed", async {
        tokio::join!(send_flow(&mut out, data, true), async {
            hash_body(resp.await?).await
        })
    })
    .await;
    sent.expect("request body sent");
    let (status, len, sha, trailers) = got.expect("response body received");
    assert_eq!((status, len), (200, SIZE as u64));
    assert_eq!(sha, want, "the echoed 64 MiB match what was sent");
    assert_eq!(trailers.unwrap().get("x-trailer").unwrap(), "done");
    let seen = o.last();
    assert_eq!(seen.body_len, Some(SIZE as u64));
    assert_eq!(
        seen.body_sha,
        Some(want),
        "the origin got the 64 MiB intact"
    );
}

#[tokio::test]
async fn http2_protocol_options_are_advertised_and_flow_control_holds() {
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2");
    let mut m_setup = m;
    mosn_tests::http::merge(
        &mut m_setup.proxy_extra,
        &json!({ "http2_protocol_options": {
            "max_concurrent_streams": 7,
            "initial_stream_window_size": 65535,
            "initial_connection_window_size": 1048576
        } }),
    );
    let m = m_setup.start().await;
    let mut raw = RawConn::connect(m.listen).await;
    raw.send(&h2_raw::client_start()).await;
    let s = raw
        .until(LIMIT, |f| {
            f.ty == h2_raw::SETTINGS && f.flags & h2_raw::ACK == 0
        })
        .await
        .expect("the server's SETTINGS");
    let pairs: Vec<(u16, u32)> = s
        .payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        pairs.contains(&(0x3, 7)),
        "SETTINGS_MAX_CONCURRENT_STREAMS = 7: {pairs:?}"
    );
    assert!(
        pairs.contains(&(0x4, 65535)) || !pairs.iter().any(|p| p.0 == 0x4),
        "SETTINGS_INITIAL_WINDOW_SIZE = 65535 (or left at that default): {pairs:?}"
    );
    // 4 MiB to an origin that reads slowly, through 64 KiB stream windows: intact.
    let c = H2Client::connect(m.listen).await;
    let data = random_bytes(4 << 20, 3);
    let r = within(
        Duration::from_secs(60),
        "4 MiB to a slow reader",
        c.request("POST", "/slow", &[], Bytes::from(data.clone()), None),
    )
    .await
    .unwrap();
    assert_eq!(r.text(), format!("{} {}", 4 << 20, hex(&sha256(&data))));
}

#[tokio::test]
async fn sigterm_sends_goaway_and_finishes_streams_in_flight() {
    let o = H2Origin::start("o1").await;
    let mut m = setup(&[o.addr], "Http2", "Http2").start().await;
    let mut raw = RawConn::connect(m.listen).await;
    let mut req = h2_raw::client_start();
    req.extend(h2_raw::headers(
        1,
        &h2_raw::hpack_get("/delay/1000"),
        true,
        true,
    ));
    assert!(raw.send(&req).await);
    o.wait_for(LIMIT, "the request upstream", |o| o.count() == 1)
        .await;
    m.signal(libc::SIGTERM);
    let t = raw.transcript(LIMIT).await;
    let goaways: Vec<(u32, u32)> = t.frames.iter().filter_map(|f| f.goaway()).collect();
    assert!(!goaways.is_empty(), "a GOAWAY on SIGTERM: {}", t.summary());
    assert!(
        goaways.iter().all(|&(_, code)| code == h2_raw::NO_ERROR),
        "graceful: NO_ERROR: {}",
        t.summary()
    );
    assert!(
        goaways.last().unwrap().0 >= 1,
        "stream 1 is kept: {}",
        t.summary()
    );
    let ended = t
        .frames
        .iter()
        .any(|f| f.stream == 1 && f.flags & END_STREAM != 0);
    let data: Vec<u8> = t
        .frames
        .iter()
        .filter(|f| f.stream == 1 && f.ty == h2_raw::DATA)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert!(
        ended && data == b"delayed",
        "the stream in flight finished: {}",
        t.summary()
    );
    assert!(t.closed, "then the connection closes: {}", t.summary());
    let exit = m.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
}

#[tokio::test]
async fn a_response_read_with_collect_matches_the_origin() {
    // One stream opened by hand and collected: the pieces `request` is built from.
    let o = H2Origin::start("o1").await;
    let m = setup(&[o.addr], "Http2", "Http2").start().await;
    let c = H2Client::connect(m.listen).await;
    let (resp, _out) = c.open("GET", "/status/201", &[], true).await.unwrap();
    let r = within(LIMIT, "201", async { collect(resp.await.unwrap()).await })
        .await
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (201, "status 201"));
    assert_eq!(r.header("x-origin"), Some("o1"));
}
