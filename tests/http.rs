//! The L7 proxy with HTTP/1.1 end to end: real clients (curl, raw sockets) through the
//! daemon to a real origin (hyper). Each test starts its own daemon and origins.

use std::time::Duration;

use mosn_tests::http::{HttpSetup, cluster, curl, parse_reply, raw_exchange};
use mosn_tests::origin::{Origin, pattern_byte};
use mosn_tests::{heavy, within};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn get_keeps_headers_and_adds_forwarded_for() {
    let o = Origin::start("o1").await;
    let m = HttpSetup::simple(&[o.addr]).start().await;
    let r = curl(
        m.listen,
        "/hello?x=1",
        &[
            "-H",
            "Connection: keep-alive, x-private",
            "-H",
            "x-private: 1",
            "-H",
            "x-keep: 2",
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "o1 GET /hello");
    assert_eq!(r.header("x-origin"), Some("o1"));
    let seen = o.last();
    assert_eq!(seen.uri, "/hello?x=1");
    let h = &seen.headers;
    assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        h.get("host").unwrap(),
        &m.listen.to_string(),
        "Host is passed through"
    );
    assert_eq!(h.get("x-keep").unwrap(), "2");
    assert!(
        h.get("x-private").is_none(),
        "a field named by Connection is hop-by-hop"
    );
    let metrics = m.metrics().await;
    let l = [("listener", "l1")];
    assert_eq!(metrics.value("mosn_listener_downstream_rq_total", &l), 1);
    assert_eq!(
        metrics.value("mosn_listener_downstream_rq_2xx_total", &l),
        1
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_rq_2xx_total", &[("cluster", "c1")]),
        1
    );
}

#[tokio::test]
async fn keep_alive_reuses_both_connections_and_tolerates_pipelining() {
    let o = Origin::start("o1").await;
    let m = HttpSetup::simple(&[o.addr]).start().await;
    let mut s = TcpStream::connect(m.listen).await.unwrap();
    // Three requests in one write: answered in order on the same connection.
    let reqs = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(reqs).await.unwrap();
    let mut got = Vec::new();
    within(LIMIT, "three pipelined responses", async {
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&got).matches("x-origin").count() < 3
            || !got.ends_with(b"o1 GET /c")
        {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    let a = text.find("o1 GET /a").expect("first");
    let b = text.find("\r\n\r\nhello").expect("second (echo)");
    let c = text.find("o1 GET /c").expect("third");
    assert!(a < b && b < c, "{text}");
    // Ten more on the same connection: still one upstream connection.
    for i in 0..10 {
        s.write_all(format!("GET /n{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(&format!("o1 GET /n{i}")));
    }
    let cx = m.cluster_metric("mosn_cluster_upstream_cx_total").await;
    assert_eq!(cx, 1, "one upstream connection reused for 13 requests");
}

#[tokio::test]
async fn bodies_content_length_chunked_and_expect_continue() {
    let o = Origin::start("o1").await;
    let m = HttpSetup::simple(&[o.addr]).start().await;
    let body = "x".repeat(100_000);
    let r = curl(m.listen, "/echo", &["--data-binary", &body]).await;
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    let r = curl(
        m.listen,
        "/echo",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &body],
    )
    .await;
    assert_eq!((r.status, r.text()), (200, body.clone()));
    assert_eq!(
        o.last().headers.get("transfer-encoding").unwrap(),
        "chunked",
        "a chunked request stays chunked"
    );
    let r = curl(
        m.listen,
        "/echo",
        &["-H", "Expect: 100-continue", "--data-binary", &body],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    // A streamed (chunked) response.
    let r = curl(m.listen, "/bytes/300000", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 300_000);
    assert!(
        r.body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(i as u64))
    );
    // HEAD: the length is kept, no body follows.
    let r = curl(m.listen, "/", &["-I"]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn http10_client_gets_a_close_delimited_body() {
    let o = Origin::start("o1").await;
    let m = HttpSetup::simple(&[o.addr]).start().await;
    let raw = raw_exchange(m.listen, b"GET /bytes/1000 HTTP/1.0\r\n\r\n", LIMIT).await;
    let r = parse_reply(&raw).expect("a response");
    assert_eq!((r.status, r.body.len()), (200, 1000));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.header("transfer-encoding").is_none());
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    // A raw upstream: 101, then echo upper-cased.
    let up = mosn_tests::Upstream::spawn(|mut s, _| async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.contains("upgrade: websocket") && head.contains("connection: upgrade"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let upper = buf[..n].to_ascii_uppercase();
            s.write_all(&upper).await.unwrap();
        }
    })
    .await;
    let m = HttpSetup::simple(&[up.addr]).start().await;
    let mut s = TcpStream::connect(m.listen).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    within(LIMIT, "101", async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"frames both ways").await.unwrap();
    let mut echo = vec![0u8; 16];
    within(LIMIT, "tunnelled echo", s.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"FRAMES BOTH WAYS");
}

#[tokio::test]
async fn error_codes_and_their_metrics() {
    let o = Origin::start("o1").await;
    // A port nothing listens on, and an upstream that resets after reading the request.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let reset = mosn_tests::Upstream::spawn(|mut s, _| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        #[expect(
            deprecated,
            reason = "a zero linger does not block; it turns the close into a reset"
        )]
        let _ = s.set_linger(Some(Duration::ZERO));
    })
    .await;
    let setup = HttpSetup::new(
        json!([
            { "match": { "prefix": "/slow/" }, "route": { "cluster_name": "c1", "timeout": "300ms", "prefix_rewrite": "/" } },
            { "match": { "prefix": "/dead" }, "route": { "cluster_name": "dead" } },
            { "match": { "prefix": "/reset" }, "route": { "cluster_name": "reset" } },
            { "match": { "prefix": "/ok" }, "route": { "cluster_name": "c1" } }
        ]),
        json!([
            cluster("c1", &[o.addr]),
            cluster("dead", &[dead]),
            cluster("reset", &[reset.addr])
        ]),
    );
    let m = setup.start().await;
    let status = async |path: &str| curl(m.listen, path, &[]).await.status;
    assert_eq!(status("/nowhere").await, 404, "no route");
    assert_eq!(status("/ok").await, 200);
    assert_eq!(status("/slow/delay/2000").await, 504, "upstream timeout");
    assert_eq!(status("/dead").await, 503, "connect failure");
    assert_eq!(status("/reset").await, 502, "upstream reset");
    let bad = raw_exchange(
        m.listen,
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        LIMIT,
    )
    .await;
    let r = parse_reply(&bad).expect("a 400");
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let r = parse_reply(&raw_exchange(m.listen, &big, LIMIT).await).expect("a 431");
    assert_eq!(r.status, 431);
    let metrics = m.metrics().await;
    for (kind, n) in [
        ("no_route", 1),
        ("upstream_timeout", 1),
        ("upstream_connect", 1),
        ("upstream_reset", 1),
        ("bad_request", 1),
        ("header_too_large", 1),
    ] {
        assert_eq!(
            metrics.value(
                "mosn_listener_errors_total",
                &[("listener", "l1"), ("kind", kind)]
            ),
            n,
            "{kind}"
        );
    }
    assert!(
        curl(m.listen, "/ok", &[]).await.status == 200,
        "still serving"
    );
}

/// 1 GiB up and 1 GiB down through the proxy: every byte arrives, and the daemon's peak
/// memory stays bounded.
#[tokio::test]
async fn one_gib_each_way_with_bounded_memory() {
    let _load = heavy().await;
    let o = Origin::start("o1").await;
    let m = HttpSetup::simple(&[o.addr]).start().await;
    const GIB: u64 = 1 << 30;
    // Upload: chunked, hashed on both sides.
    let mut s = TcpStream::connect(m.listen).await.unwrap();
    s.write_all(b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let mut hash = Sha256::new();
    within(Duration::from_secs(120), "upload 1 GiB", async {
        let mut sent = 0u64;
        while sent < GIB {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .unwrap();
            s.write_all(&chunk).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
            hash.update(&chunk);
            sent += chunk.len() as u64;
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
    })
    .await;
    let mut resp = Vec::new();
    within(LIMIT, "upload answer", async {
        let mut buf = [0u8; 4096];
        while parse_reply(&resp).is_none_or(|r| r.body.len() < 10) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            resp.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let r = parse_reply(&resp).unwrap();
    let expect = format!("{GIB} {}", mosn_tests::hex(&hash.finalize().into()));
    within(LIMIT, "whole upload answer", async {
        let mut buf = [0u8; 4096];
        while parse_reply(&resp).unwrap().body.len() < expect.len() {
            let n = s.read(&mut buf).await.unwrap();
            resp.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let _ = r;
    assert_eq!(parse_reply(&resp).unwrap().text(), expect);
    // Download on the same connection.
    s.write_all(format!("GET /bytes/{GIB} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let received = within(Duration::from_secs(120), "download 1 GiB", async {
        let mut head = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        // Chunked framing: count payload bytes by decoding sizes.
        let start = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut pending = head.split_off(start);
        let mut total = 0u64;
        loop {
            let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") else {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-body after {total}");
                pending.extend_from_slice(&buf[..n]);
                continue;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&pending[..line_end]).unwrap(), 16)
                    .unwrap();
            while pending.len() < line_end + 2 + size + 2 {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-chunk after {total}");
                pending.extend_from_slice(&buf[..n]);
            }
            if size == 0 {
                break total;
            }
            total += size as u64;
            pending.drain(..line_end + 2 + size + 2);
        }
    })
    .await;
    assert_eq!(received, GIB);
    let hwm = peak_rss_kib(m.pid());
    assert!(
        hwm < 64 * 1024,
        "mosn peak RSS {hwm} KiB for 2 GiB streamed (bound: 64 MiB)"
    );
}

fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}
