//! TLS through the daemon with real peers: `curl --cacert` and `openssl s_client` against
//! termination, `h2load` over TLS with ALPN h2, a rustls origin for origination, and SNI
//! passthrough to two TLS backends (userspace and, as root, the kernel splice). Certificates
//! are made per test with rcgen (`mosn_tests::tls::Pki`). Hostile input is at the end.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mosn_tests::data::{random_bytes, sha256};
use mosn_tests::daemon::{Mosn, TempDir};
use mosn_tests::http::cluster;
use mosn_tests::origin::Origin;
use mosn_tests::tls::{Pki, cert_serial, client_config, tls_connect};
use mosn_tests::tls_cli::{curl_https, openssl_s_client, peer_serial, require_openssl, resolve};
use mosn_tests::tls_origin::{tls_echo, tls_echo_sni, tls_origin};
use mosn_tests::{LISTENER, hex, require_kernel, within};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(60);

fn router() -> Value {
    json!({
        "router_config_name": "r",
        "virtual_hosts": [{ "name": "all", "domains": ["*"],
            "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }] }]
    })
}

fn proxy_filter(down: &str, up: &str) -> Value {
    json!({ "type": "proxy", "config": {
        "downstream_protocol": down, "upstream_protocol": up, "router_config_name": "r" } })
}

fn tcp_filter(cluster: &str) -> Value {
    json!({ "type": "tcp_proxy", "config": { "cluster": cluster } })
}

/// One listener named [`LISTENER`] with `chains`, plus `extra` listener keys.
fn config(listen: u16, admin: u16, chains: Value, extra: Value, clusters: Value) -> Value {
    let mut l = json!({
        "name": LISTENER,
        "address": format!("127.0.0.1:{listen}"),
        "bind_port": true,
        "filter_chains": chains,
    });
    mosn_tests::http::merge(&mut l, &extra);
    json!({
        "servers": [{ "routers": [router()], "listeners": [l] }],
        "cluster_manager": { "clusters": clusters },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "graceful_timeout": "2s",
    })
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A listener tls_context for the PKI's server certificate.
fn server_ctx(pki: &Pki, extra: Value) -> Value {
    let mut c = json!({
        "status": true,
        "cert_chain": path(&pki.server.cert),
        "private_key": path(&pki.server.key),
        "alpn": ["h2", "http/1.1"],
    });
    mosn_tests::http::merge(&mut c, &extra);
    c
}

/// Starts the daemon terminating TLS with `ctx` in front of an HTTP/1.1 origin.
async fn terminating(ctx: Value, origin: SocketAddr) -> Mosn {
    Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "tls_context": ctx, "filters": [proxy_filter("Auto", "Http1")] }]),
            json!({}),
            json!([cluster("c1", &[origin])]),
        )
    })
    .await
}

async fn tls_metric(m: &Mosn, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.metrics().await.value(name, labels)
}

async fn handshake_errors(m: &Mosn, reason: &str) -> u64 {
    tls_metric(
        m,
        "mosn_tls_handshake_errors_total",
        &[("listener", LISTENER), ("reason", reason)],
    )
    .await
}

fn url(m: &Mosn, p: &str) -> String {
    format!("https://localhost:{}{p}", m.listen.port())
}

// ---------------------------------------------------------------------------------------------
// Termination

#[tokio::test]
async fn termination_serves_curl_and_openssl_with_alpn() {
    if !require_openssl("termination_serves_curl_and_openssl_with_alpn") {
        return;
    }
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = terminating(server_ctx(&pki, json!({})), origin.addr).await;
    within(LIMIT, "termination", async {
        let (status, body) = curl_https(&url(&m, "/hello"), &pki.ca, &["--http1.1"]).await;
        assert_eq!((status, body.as_str()), (200, "o1 GET /hello"));
        let (status, body) = curl_https(&url(&m, "/two"), &pki.ca, &["--http2"]).await;
        assert_eq!((status, body.as_str()), (200, "o1 GET /two"), "h2 by ALPN");
        let out = openssl_s_client(
            m.listen,
            &["-servername", "localhost", "-alpn", "h2", "-CAfile", &path(&pki.ca)],
            b"",
        )
        .await;
        assert_eq!(out.protocol(), Some("TLSv1.3"), "{}", out.stdout);
        assert_eq!(out.alpn(), Some("h2"));
        assert_eq!(out.verify_code(), Some(0));
        assert_eq!(peer_serial(&out).await.as_deref(), Some(pki.server.serial.as_str()));
        let done = tls_metric(
            &m,
            "mosn_tls_handshakes_total",
            &[("listener", LISTENER), ("resumed", "false")],
        )
        .await;
        assert!(done >= 3, "handshakes counted: {done}");
        assert!(
            m.metrics().await.get("mosn_tls_cert_expiry_seconds", &[("listener", LISTENER)]).unwrap_or(0.0) > 86400.0,
            "certificate expiry exported"
        );
    })
    .await;
}

#[tokio::test]
async fn h2load_over_tls_with_alpn_h2() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = terminating(server_ctx(&pki, json!({})), origin.addr).await;
    within(LIMIT, "h2load", async {
        let out = tokio::process::Command::new("/usr/bin/h2load")
            .args(["-n", "2000", "-c", "4", "-m", "8", &url(&m, "/load")])
            .output()
            .await
            .expect("run h2load");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("Application protocol: h2"), "{text}");
        assert!(
            text.contains("2000 succeeded, 0 failed, 0 errored"),
            "h2load over TLS: {text}"
        );
        assert!(text.contains("status codes: 2000 2xx"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn sni_picks_the_certificate_and_no_sni_gets_the_default() {
    if !require_openssl("sni_picks_the_certificate_and_no_sni_gets_the_default") {
        return;
    }
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let ctx = |leaf: &mosn_tests::tls::Leaf| {
        json!({ "status": true, "cert_chain": path(&leaf.cert), "private_key": path(&leaf.key) })
    };
    let set = json!([ctx(&pki.default), ctx(&pki.server), ctx(&pki.server_b)]);
    let m = Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "tls_context_set": set, "filters": [proxy_filter("Auto", "Http1")] }]),
            json!({}),
            json!([cluster("c1", &[origin.addr])]),
        )
    })
    .await;
    within(LIMIT, "sni", async {
        for (sni, want) in [
            (Some("a.example.com"), &pki.server.serial),
            (Some("b.example.com"), &pki.server_b.serial),
            (Some("nobody.example.org"), &pki.default.serial),
            (None, &pki.default.serial),
        ] {
            let mut args = vec!["-CAfile".to_owned(), path(&pki.ca)];
            match sni {
                Some(s) => args.extend(["-servername".to_owned(), s.to_owned()]),
                None => args.push("-noservername".to_owned()),
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = openssl_s_client(m.listen, &args, b"").await;
            assert_eq!(
                peer_serial(&out).await.as_deref(),
                Some(want.as_str()),
                "SNI {sni:?}: {}",
                out.stdout
            );
        }
        let (status, body) = curl_https(
            &format!("https://b.example.com:{}/b", m.listen.port()),
            &pki.ca,
            &["--resolve", &resolve("b.example.com", m.listen)],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "o1 GET /b"));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// mTLS

#[tokio::test]
async fn mtls_refuses_no_cert_wrong_ca_and_wrong_san() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let strict = |san: &str| {
        server_ctx(
            &pki,
            json!({ "ca_cert": path(&pki.ca), "require_client_cert": true,
                    "match_subject_alt_names": [{ "exact": san }] }),
        )
    };
    let m = terminating(
        strict("spiffe://cluster.local/ns/default/sa/client"),
        origin.addr,
    )
    .await;
    let other_san = terminating(strict("spiffe://cluster.local/ns/prod/sa/api"), origin.addr).await;
    within(LIMIT, "mtls", async {
        let cert = |leaf: &mosn_tests::tls::Leaf| {
            vec!["--cert".to_owned(), path(&leaf.cert), "--key".to_owned(), path(&leaf.key)]
        };
        let run = |m: &Mosn, args: Vec<String>| {
            let u = url(m, "/who");
            let ca = pki.ca.clone();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                curl_https(&u, &ca, &args).await
            }
        };
        let (status, body) = run(&m, cert(&pki.client)).await;
        assert_eq!((status, body.as_str()), (200, "o1 GET /who"), "the right client");
        let (status, _) = run(&m, vec![]).await;
        assert_eq!(status, 0, "no client certificate: refused");
        let (status, _) = run(&m, cert(&pki.other_client)).await;
        assert_eq!(status, 0, "a certificate of another CA: refused");
        let (status, _) = run(&other_san, cert(&pki.client)).await;
        assert_eq!(status, 0, "a SAN the listener does not allow: refused");
        assert!(handshake_errors(&m, "no_client_cert").await >= 1);
        assert!(handshake_errors(&m, "bad_certificate").await >= 1);
        assert!(handshake_errors(&other_san, "san_mismatch").await >= 1);
        assert_eq!(origin.count(), 1, "only the allowed client reached the origin");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Resumption and rotation

/// Envoy's 80-byte ticket key file.
fn ticket_key(dir: &TempDir, name: &str, seed: u64) -> std::path::PathBuf {
    let bytes = random_bytes(80, seed);
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// One `s_client` run that saves its session (`-sess_out`) or resumes one (`-sess_in`);
/// whether the handshake was a resumption.
async fn s_client_session(addr: SocketAddr, pki: &Pki, flag: &str, file: &Path) -> bool {
    // TLS 1.3 tickets arrive after the handshake: keep stdin open a moment.
    let out = openssl_s_client(
        addr,
        &["-servername", "localhost", "-CAfile", &path(&pki.ca), flag, &path(file)],
        b"",
    )
    .await;
    out.reused()
        .unwrap_or_else(|| panic!("s_client printed no New/Reused line: {}", out.stdout))
}

#[tokio::test]
async fn resumption_with_ticket_keys_survives_key_rotation() {
    if !require_openssl("resumption_with_ticket_keys_survives_key_rotation") {
        return;
    }
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let first = ticket_key(&dir, "k1", 1);
    let second = ticket_key(&dir, "k2", 2);
    let ctx = server_ctx(&pki, json!({ "session_ticket_keys": [{ "filename": path(&first) }, { "filename": path(&second) }] }));
    let m = terminating(ctx, origin.addr).await;
    within(LIMIT, "resumption", async {
        let sess = dir.path().join("sess.pem");
        assert!(!s_client_session(m.listen, &pki, "-sess_out", &sess).await);
        assert!(
            s_client_session(m.listen, &pki, "-sess_in", &sess).await,
            "second connection resumes"
        );
        // Rotate: a new key encrypts, the old one (k1, now second) still decrypts.
        let old = std::fs::read(&first).unwrap();
        std::fs::write(&second, &old).unwrap();
        std::fs::write(&first, random_bytes(80, 3)).unwrap();
        let reloads = |m: &Mosn| {
            let admin = m.admin;
            async move {
                mosn_tests::admin::scrape(admin)
                    .await
                    .value("mosn_tls_reloads_total", &[("listener", LISTENER)])
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while reloads(&m).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "key files never reloaded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            s_client_session(m.listen, &pki, "-sess_in", &sess).await,
            "a ticket of the previous key resumes within the overlap"
        );
        let resumed = tls_metric(
            &m,
            "mosn_tls_handshakes_total",
            &[("listener", LISTENER), ("resumed", "true")],
        )
        .await;
        assert!(resumed >= 2, "resumed handshakes counted: {resumed}");
    })
    .await;
}

#[tokio::test]
async fn certificate_rotation_under_load_fails_nothing() {
    let dir = TempDir::new("tls");
    let mut pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = terminating(server_ctx(&pki, json!({})), origin.addr).await;
    let old_serial = pki.server.serial.clone();
    within(LIMIT, "rotation", async {
        let client = client_config(&pki.ca, None, &["http/1.1"]);
        let addr = m.listen;
        let load = tokio::spawn(async move {
            let mut serials = Vec::new();
            let end = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut n = 0;
            while tokio::time::Instant::now() < end && n < 5_000 {
                n += 1;
                let mut s = tls_connect(addr, "localhost", client.clone())
                    .await
                    .unwrap_or_else(|e| panic!("connection {n}: {e}"));
                let serial = cert_serial(&s.get_ref().1.peer_certificates().unwrap()[0]);
                s.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply).await;
                let text = String::from_utf8_lossy(&reply);
                assert!(text.starts_with("HTTP/1.1 200"), "connection {n}: {text}");
                serials.push(serial);
            }
            serials
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new_serial = pki.reissue_server(true);
        let serials = load.await.expect("no request failed during the rotation");
        assert_eq!(serials.first(), Some(&old_serial));
        assert_eq!(
            serials.last(),
            Some(&new_serial),
            "new connections present the new certificate ({} connections)",
            serials.len()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Origination

#[tokio::test]
async fn origination_http_and_l4_with_client_certificate() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = tls_origin(&pki, &["http/1.1"], true).await;
    let echo = tls_echo(&pki, true).await;
    let up_tls = json!({
        "status": true, "server_name": "localhost", "ca_cert": path(&pki.ca),
        "cert_chain": path(&pki.client.cert), "private_key": path(&pki.client.key),
        "alpn": ["http/1.1"],
    });
    let mut c1 = cluster("c1", &[origin.addr]);
    c1["tls_context"] = up_tls.clone();
    let mut c2 = cluster("c2", &[echo.addr]);
    c2["tls_context"] = up_tls;
    let http = Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "filters": [proxy_filter("Http1", "Http1")] }]),
            json!({}),
            json!([c1.clone()]),
        )
    })
    .await;
    let l4 = Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "filters": [tcp_filter("c2")] }]),
            json!({}),
            json!([c2.clone()]),
        )
    })
    .await;
    within(LIMIT, "origination", async {
        for i in 0..3 {
            let mut s = TcpStream::connect(http.listen).await.unwrap();
            s.write_all(format!("GET /o{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).await.unwrap();
            let text = String::from_utf8_lossy(&reply);
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        }
        let reqs = origin.requests();
        assert_eq!(reqs.len(), 3);
        let conn = &reqs[0].conn;
        assert_eq!(conn.sni.as_deref(), Some("localhost"));
        assert_eq!(conn.version, "TLSv1.3");
        assert!(
            conn.client_sans.iter().any(|s| s == "spiffe://cluster.local/ns/default/sa/client"),
            "the origin saw mosn's client certificate: {:?}",
            conn.client_sans
        );
        let resumed = tls_metric(
            &http,
            "mosn_tls_upstream_handshakes_total",
            &[("cluster", "c1"), ("resumed", "true")],
        )
        .await;
        let total = resumed
            + tls_metric(
                &http,
                "mosn_tls_upstream_handshakes_total",
                &[("cluster", "c1"), ("resumed", "false")],
            )
            .await;
        assert!(total >= 1, "upstream handshakes counted");

        // L4: bytes through TLS origination, hash-checked both ways.
        let data = random_bytes(1 << 20, 11);
        let mut s = TcpStream::connect(l4.listen).await.unwrap();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let ((), got) = tokio::join!(send, recv);
        got.unwrap();
        assert_eq!(hex(&sha256(&back)), hex(&sha256(&data)), "echo through TLS origination");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// SNI passthrough

async fn passthrough(fast_path: &str) {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let a = tls_echo_sni(&pki, "a.example.com").await;
    let b = tls_echo_sni(&pki, "b.example.com").await;
    let m = Mosn::start_with(|l, adm| {
        config(
            l,
            adm,
            json!([
                { "filter_chain_match": { "server_names": ["a.example.com"] }, "filters": [tcp_filter("ca")] },
                { "filter_chain_match": { "server_names": ["*.example.com"] }, "filters": [tcp_filter("cb")] },
            ]),
            json!({ "fast_path": fast_path }),
            json!([cluster("ca", &[a.addr]), cluster("cb", &[b.addr])]),
        )
    })
    .await;
    let client = client_config(&pki.ca, None, &[]);
    within(LIMIT, "passthrough", async {
        for (sni, backend) in [("a.example.com", "a.example.com"), ("b.example.com", "b.example.com")] {
            let mut s = tls_connect(m.listen, sni, client.clone())
                .await
                .unwrap_or_else(|e| panic!("{sni}: {e}"));
            let greeting = format!("hello from {backend}\n");
            let mut got = vec![0u8; greeting.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&got), greeting, "SNI {sni}");
            let data = random_bytes(256 * 1024, sni.len() as u64);
            let (mut r, mut w) = tokio::io::split(s);
            let send = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let recv = r.read_to_end(&mut back);
            let ((), got) = tokio::join!(send, recv);
            got.unwrap();
            assert_eq!(hex(&sha256(&back)), hex(&sha256(&data)), "SNI {sni}: echo");
        }
        // No chain for this name: closed, counted.
        let refused = tls_connect(m.listen, "other.test", client.clone()).await;
        assert!(refused.is_err(), "an SNI no chain takes is closed");
        let n = m.errors("no_filter_chain").await;
        assert!(n >= 1, "no_filter_chain counted: {n}");
        let spliced = m.listener_metric("mosn_listener_kernel_spliced_total").await;
        if fast_path == "kernel" {
            assert!(spliced >= 2, "TLS passthrough spliced in the kernel: {spliced}");
        }
    })
    .await;
}

#[tokio::test]
async fn sni_passthrough_picks_the_backend_userspace() {
    passthrough("userspace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_passthrough_picks_the_backend_kernel() {
    if !require_kernel("sni_passthrough_picks_the_backend_kernel") {
        return;
    }
    passthrough("kernel").await;
}

// ---------------------------------------------------------------------------------------------
// Inspector and bad input

#[tokio::test]
async fn inspector_serves_tls_and_plaintext_on_one_port() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "tls_context": server_ctx(&pki, json!({})), "filters": [proxy_filter("Auto", "Http1")] }]),
            json!({ "inspector": true }),
            json!([cluster("c1", &[origin.addr])]),
        )
    })
    .await;
    within(LIMIT, "inspector", async {
        let (status, body) = curl_https(&url(&m, "/tls"), &pki.ca, &[]).await;
        assert_eq!((status, body.as_str()), (200, "o1 GET /tls"));
        let r = mosn_tests::http::curl(m.listen, "/plain", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "o1 GET /plain"));
    })
    .await;
}

#[tokio::test]
async fn bad_handshakes_are_closed_and_counted_and_others_unaffected() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = terminating(server_ctx(&pki, json!({ "handshake_timeout": "1s" })), origin.addr).await;
    within(LIMIT, "bad input", async {
        // A client that never finishes: the handshake timeout closes it.
        let mut silent = TcpStream::connect(m.listen).await.unwrap();
        // Random bytes.
        let mut garbage = TcpStream::connect(m.listen).await.unwrap();
        garbage.write_all(&random_bytes(600, 5)).await.unwrap();
        // Plaintext HTTP to the TLS port.
        let mut plain = TcpStream::connect(m.listen).await.unwrap();
        plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // A truncated ClientHello, then the client leaves.
        {
            let hello_prefix = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
            let mut t = TcpStream::connect(m.listen).await.unwrap();
            t.write_all(&hello_prefix).await.unwrap();
        }
        // Meanwhile a good client is served.
        let (status, _) = curl_https(&url(&m, "/ok"), &pki.ca, &[]).await;
        assert_eq!(status, 200);
        for (name, s) in [("silent", &mut silent), ("garbage", &mut garbage), ("plaintext", &mut plain)] {
            let mut buf = [0u8; 512];
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "{name}: closed by the proxy");
        }
        for reason in ["timeout", "not_tls", "closed"] {
            let n = handshake_errors(&m, reason).await;
            assert!(n >= 1, "handshake errors {{reason={reason}}}: {n}");
        }
        let (status, _) = curl_https(&url(&m, "/still"), &pki.ca, &[]).await;
        assert_eq!(status, 200, "still serving");
        m.assert_up_ref();
    })
    .await;
}

#[tokio::test]
async fn tls_to_a_plaintext_port_is_refused_cleanly() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path());
    let origin = Origin::start("o1").await;
    let m = Mosn::start_with(|l, a| {
        config(
            l,
            a,
            json!([{ "filters": [proxy_filter("Http1", "Http1")] }]),
            json!({}),
            json!([cluster("c1", &[origin.addr])]),
        )
    })
    .await;
    within(LIMIT, "tls to plaintext", async {
        let client = client_config(&pki.ca, None, &[]);
        let r = tls_connect(m.listen, "localhost", client).await;
        assert!(r.is_err(), "no TLS on a plaintext port");
        let n = m.errors("bad_request").await;
        assert!(n >= 1, "counted as a bad request: {n}");
        let r = mosn_tests::http::curl(m.listen, "/plain", &[]).await;
        assert_eq!(r.status, 200);
    })
    .await;
}
