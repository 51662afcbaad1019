//! Hostile HTTP/2 input on an h2c listener: frames written by hand (`support/h2_raw.rs`).
//! Each case expects the protocol's answer (GOAWAY with the RFC 9113 code for a connection
//! error, RST_STREAM for a stream error), and then that the daemon still runs, that a
//! connection opened before the bad one still serves, and that a new one does too.

use std::time::Duration;

use mosn_tests::h2::{H2Client, H2Origin, protocols};
use mosn_tests::h2_raw::{
    self, ACK, CANCEL, ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, HEADERS, PING,
    PROTOCOL_ERROR, RawConn, Transcript,
};
use mosn_tests::http::{HttpSetup, merge};
use mosn_tests::{Mosn, within};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// An origin, a daemon (Http2 both sides, `extra` merged into the proxy config) and a healthy
/// client connection that has completed one request.
async fn start(extra: Value) -> (H2Origin, Mosn, H2Client) {
    let o = H2Origin::start("o1").await;
    let mut s = protocols(HttpSetup::simple(&[o.addr]), "Http2", "Http2");
    merge(&mut s.proxy_extra, &extra);
    let m = s.start().await;
    let c = H2Client::connect(m.listen).await;
    let r = within(LIMIT, "healthy request", c.get("/before"))
        .await
        .unwrap();
    assert_eq!(r.text(), "o1 GET /before");
    (o, m, c)
}

/// The daemon runs, the connection opened before still serves, a new one serves.
async fn others_unharmed(m: &mut Mosn, healthy: &H2Client, what: &str) {
    let r = within(LIMIT, "the healthy connection", healthy.get("/still"))
        .await
        .unwrap_or_else(|e| panic!("after {what}: the other connection broke: {e:?}"));
    assert_eq!(r.text(), "o1 GET /still", "after {what}");
    let fresh = H2Client::connect(m.listen).await;
    let r = within(LIMIT, "a new connection", fresh.get("/fresh"))
        .await
        .unwrap_or_else(|e| panic!("after {what}: a new connection failed: {e:?}"));
    assert_eq!(r.text(), "o1 GET /fresh", "after {what}");
    m.assert_up().await;
}

/// Sends the client preface and `bytes` on a new connection; everything the server answers.
async fn send_raw(m: &Mosn, bytes: &[u8]) -> Transcript {
    let mut raw = RawConn::connect(m.listen).await;
    let mut all = h2_raw::client_start();
    all.extend_from_slice(bytes);
    // The server may close while the tail is still being written: that is expected.
    raw.send(&all).await;
    raw.transcript(LIMIT).await
}

fn assert_goaway(t: &Transcript, code: u32, what: &str) {
    assert_eq!(
        t.goaway().map(|g| g.1),
        Some(code),
        "{what}: expected GOAWAY({code:#x}): {}",
        t.summary()
    );
    assert!(
        t.closed,
        "{what}: the connection closes after GOAWAY: {}",
        t.summary()
    );
}

#[tokio::test]
async fn wrong_preface_closes_only_that_connection() {
    let (_o, mut m, c) = start(json!({})).await;
    for (what, bytes) in [
        (
            "a corrupted preface",
            &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        ),
        (
            "an HTTP/1.1 request",
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
    ] {
        let mut raw = RawConn::connect(m.listen).await;
        raw.send(bytes).await;
        let t = raw.transcript(LIMIT).await;
        assert!(
            t.closed,
            "{what}: the connection is closed: {}",
            t.summary()
        );
        assert!(
            t.goaway().is_none_or(|g| g.1 == PROTOCOL_ERROR),
            "{what}: a GOAWAY, if any, says PROTOCOL_ERROR: {}",
            t.summary()
        );
        assert!(
            t.leftover.is_empty(),
            "{what}: nothing but HTTP/2 frames: {}",
            t.summary()
        );
        others_unharmed(&mut m, &c, what).await;
    }
}

#[tokio::test]
async fn oversized_frame_is_a_frame_size_error() {
    let (o, mut m, c) = start(json!({})).await;
    let before = o.count();
    let t = send_raw(
        &m,
        &h2_raw::headers(1, &vec![0u8; h2_raw::DEFAULT_MAX_FRAME + 1], true, true),
    )
    .await;
    assert_goaway(&t, FRAME_SIZE_ERROR, "a 16,385-byte frame");
    others_unharmed(&mut m, &c, "an oversized frame").await;
    assert_eq!(
        o.count(),
        before + 2,
        "only the two healthy requests went upstream"
    );
}

/// RFC 9113 section 4.3 asks COMPRESSION_ERROR for a field block that does not decode; the
/// `h2` crate answers PROTOCOL_ERROR. Either is a connection error that names the fault;
/// anything else (no GOAWAY, NO_ERROR, INTERNAL_ERROR) fails.
#[tokio::test]
async fn hpack_garbage_is_a_connection_error() {
    let (o, mut m, c) = start(json!({})).await;
    let before = o.count();
    // Indexed field 0x7f + 0x7f... = an index far past the static and dynamic tables.
    let t = send_raw(
        &m,
        &h2_raw::headers(1, &[0xff, 0xff, 0xff, 0x7f], true, true),
    )
    .await;
    let code = t.goaway().map(|g| g.1);
    assert!(
        code == Some(h2_raw::COMPRESSION_ERROR) || code == Some(PROTOCOL_ERROR),
        "GOAWAY(COMPRESSION_ERROR or PROTOCOL_ERROR): {}",
        t.summary()
    );
    assert!(t.closed, "{}", t.summary());
    others_unharmed(&mut m, &c, "HPACK garbage").await;
    assert_eq!(o.count(), before + 2);
}

/// A header block that never ends: 2,000 small CONTINUATION frames without END_HEADERS.
/// The server must stop it with ENHANCE_YOUR_CALM instead of buffering it, and nothing reaches
/// the origin.
#[tokio::test]
async fn continuation_flood_is_cut_off() {
    let (o, mut m, c) = start(json!({ "max_request_header_bytes": 16384 })).await;
    let before = o.count();
    let mut flood = h2_raw::headers(1, &h2_raw::hpack_get("/flood"), true, false);
    for i in 0..2000 {
        let pad = h2_raw::hpack_literal(&format!("x-pad-{i}"), "y");
        flood.extend(h2_raw::continuation(1, &pad, false));
    }
    let t = send_raw(&m, &flood).await;
    assert_goaway(&t, ENHANCE_YOUR_CALM, "a CONTINUATION flood");
    others_unharmed(&mut m, &c, "a CONTINUATION flood").await;
    assert!(
        o.seen().iter().all(|s| s.path != "/flood"),
        "the flooded request never went upstream"
    );
    assert_eq!(o.count(), before + 2);
}

#[tokio::test]
async fn window_update_overflow_is_a_flow_control_error() {
    let (_o, mut m, c) = start(json!({})).await;
    // The connection window: 65,535 + (2^31 - 1) overflows: a connection error.
    let t = send_raw(&m, &h2_raw::window_update(0, 0x7fff_ffff)).await;
    assert_goaway(&t, FLOW_CONTROL_ERROR, "connection window overflow");
    others_unharmed(&mut m, &c, "a connection window overflow").await;

    // A stream window: a stream error, RST_STREAM; the connection lives on.
    let mut raw = RawConn::connect(m.listen).await;
    let mut b = h2_raw::client_start();
    b.extend(h2_raw::headers(
        1,
        &h2_raw::hpack_get("/delay/2000"),
        true,
        true,
    ));
    b.extend(h2_raw::window_update(1, 0x7fff_ffff));
    assert!(raw.send(&b).await);
    let rst = raw
        .until(LIMIT, |f| f.stream == 1 && f.rst().is_some())
        .await
        .expect("RST_STREAM on stream 1");
    assert_eq!(rst.rst(), Some(FLOW_CONTROL_ERROR));
    assert!(raw.send(&h2_raw::ping(*b"stillon!")).await);
    let pong = raw
        .until(LIMIT, |f| f.ty == PING || f.goaway().is_some())
        .await
        .expect("an answer to PING");
    assert_eq!(
        (pong.ty, pong.flags, pong.payload.as_slice()),
        (PING, ACK, &b"stillon!"[..])
    );
    others_unharmed(&mut m, &c, "a stream window overflow").await;
}

/// A connection-specific field (`connection: keep-alive`) makes the request malformed: a
/// stream error (RST_STREAM PROTOCOL_ERROR), and the next stream on the connection is served.
#[tokio::test]
async fn malformed_request_is_a_stream_error() {
    let (o, mut m, c) = start(json!({})).await;
    let mut raw = RawConn::connect(m.listen).await;
    let mut bad = h2_raw::hpack_get("/malformed");
    bad.extend(h2_raw::hpack_literal("connection", "keep-alive"));
    let mut b = h2_raw::client_start();
    b.extend(h2_raw::headers(1, &bad, true, true));
    assert!(raw.send(&b).await);
    let rst = raw
        .until(LIMIT, |f| {
            f.stream == 1 && (f.rst().is_some() || f.ty == HEADERS)
        })
        .await
        .expect("an answer on stream 1");
    assert_eq!(
        rst.rst(),
        Some(PROTOCOL_ERROR),
        "RST_STREAM(PROTOCOL_ERROR) on stream 1"
    );
    assert!(
        raw.send(&h2_raw::headers(3, &h2_raw::hpack_get("/good"), true, true))
            .await
    );
    let head = raw
        .until(LIMIT, |f| f.stream == 3 || f.goaway().is_some())
        .await
        .expect("an answer on stream 3");
    assert_eq!(
        head.ty, HEADERS,
        "stream 3 is answered on the same connection"
    );
    assert!(o.seen().iter().all(|s| s.path != "/malformed"));
    others_unharmed(&mut m, &c, "a malformed request").await;
}

/// Rapid reset (CVE-2023-44487): streams opened and cancelled at once. Under the limit
/// (`max_resets_per_second`: 50) the connection lives; far over it, GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test]
async fn rapid_reset_gets_enhance_your_calm() {
    let (_o, mut m, c) =
        start(json!({ "http2_protocol_options": { "max_resets_per_second": 50 } })).await;
    let mut raw = RawConn::connect(m.listen).await;
    assert!(raw.send(&h2_raw::client_start()).await);
    let burst = |from: u32, n: u32| {
        let mut b = Vec::new();
        for i in 0..n {
            let id = from + 2 * i;
            b.extend(h2_raw::headers(
                id,
                &h2_raw::hpack_get("/delay/1000"),
                true,
                true,
            ));
            b.extend(h2_raw::rst_stream(id, CANCEL));
        }
        b
    };
    // 10 resets: within the limit.
    assert!(raw.send(&burst(1, 10)).await);
    assert!(raw.send(&h2_raw::ping(*b"under-it")).await);
    let f = raw
        .until(LIMIT, |f| {
            (f.ty == PING && f.flags & ACK != 0) || f.goaway().is_some()
        })
        .await
        .expect("PING ACK");
    assert_eq!(f.ty, PING, "10 resets are within the limit: {f:?}");
    // 1,000 more at once: far over.
    raw.send(&burst(21, 1000)).await;
    let t = raw.transcript(LIMIT).await;
    assert_goaway(&t, ENHANCE_YOUR_CALM, "1,000 rapid resets");
    others_unharmed(&mut m, &c, "rapid resets").await;
}

/// A header list over `max_request_header_bytes`: refused for that stream only (the `h2`
/// crate's server answers 431 with END_STREAM; a RST_STREAM is as good), never forwarded, and
/// the connection goes on.
#[tokio::test]
async fn header_list_over_the_limit_is_refused_per_stream() {
    let (o, mut m, c) = start(json!({ "max_request_header_bytes": 8192 })).await;
    let big = "a".repeat(20_000);
    let res = within(
        LIMIT,
        "an oversized header list",
        c.request("GET", "/big", &[("x-big", &big)], bytes::Bytes::new(), None),
    )
    .await;
    match &res {
        Ok(r) => assert_eq!(r.status, 431, "{r:?}"),
        Err(e) => assert!(e.is_reset() && !e.is_go_away(), "a stream error: {e:?}"),
    }
    assert!(o.seen().iter().all(|s| s.path != "/big"), "never forwarded");
    others_unharmed(&mut m, &c, "an oversized header list").await;
}
