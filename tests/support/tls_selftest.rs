//! Self-tests of the TLS support: the PKI's files, the origins, and the OpenSSL and curl
//! helpers against each other (`cargo test -p mosn-tests --lib`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TempDir;
use crate::http::{Reply, parse_reply};
use crate::tls::*;
use crate::tls_cli::*;
use crate::tls_origin::*;

fn pki(tag: &str) -> (TempDir, Pki) {
    let dir = TempDir::new(tag);
    let pki = Pki::new(&dir.path().join("pki"));
    (dir, pki)
}

/// Reads until EOF or an error (a peer that closes without close_notify is an error to
/// rustls); what arrived before counts.
async fn read_all(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// `GET <path>` over HTTP/1.1 on a new TLS connection with SNI `sni`.
async fn https1(addr: SocketAddr, sni: &str, config: Arc<ClientConfig>, path: &str) -> Reply {
    let mut tls = tls_connect(addr, sni, config).await.expect("TLS handshake");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    parse_reply(&read_all(&mut tls).await).expect("an HTTP response")
}

async fn wait_failed(origin: &TlsOrigin, n: usize) {
    for _ in 0..500 {
        if origin.failed_handshakes() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} failed handshakes, want {n}", origin.failed_handshakes());
}

#[tokio::test]
async fn pki_files_names_and_serials() {
    let (_dir, pki) = pki("tls-pki");
    let leaves = [
        &pki.server,
        &pki.server_b,
        &pki.default,
        &pki.client,
        &pki.other_client,
    ];
    let mut serials: Vec<&str> = leaves.iter().map(|l| l.serial.as_str()).collect();
    serials.extend([pki.ca_serial.as_str(), pki.other_ca_serial.as_str()]);
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 7, "serials are distinct");
    for leaf in leaves {
        let cert = &load_certs(&leaf.cert)[0];
        assert_eq!(cert_serial(cert), leaf.serial, "{}", leaf.cert.display());
        assert_eq!(cert_sans(cert), leaf.names);
        let _ = load_key(&leaf.key);
    }
    assert_eq!(
        pki.server.names,
        ["localhost", "127.0.0.1", "a.example.com"]
    );
    assert_eq!(pki.client.names[0], CLIENT_SPIFFE);
    if !require_openssl("pki_files_names_and_serials") {
        return;
    }
    // OpenSSL agrees on the chains and the serials.
    let verify = |ca: &std::path::Path, leaf: &Leaf| {
        let args = [
            "verify".to_owned(),
            "-CAfile".to_owned(),
            ca.display().to_string(),
            leaf.cert.display().to_string(),
        ];
        async move { run_limited(OPENSSL, &args, b"", CLI_LIMIT).await }
    };
    assert_eq!(verify(&pki.ca, &pki.server).await.code, Some(0));
    assert_eq!(verify(&pki.ca, &pki.client).await.code, Some(0));
    assert_eq!(verify(&pki.other_ca, &pki.other_client).await.code, Some(0));
    assert_ne!(verify(&pki.ca, &pki.other_client).await.code, Some(0));
    let args = ["x509", "-noout", "-serial", "-in"].map(str::to_owned);
    let mut args = args.to_vec();
    args.push(pki.server.cert.display().to_string());
    let out = run_limited(OPENSSL, &args, b"", CLI_LIMIT).await;
    assert_eq!(out.stdout.trim(), format!("serial={}", pki.server.serial));
}

#[tokio::test]
async fn rustls_client_http1_with_client_cert() {
    let (_dir, pki) = pki("tls-h1");
    let origin = tls_origin(&pki, &["h2", "http/1.1"], true).await;
    let config = client_config(&pki.ca, Some(&pki.client), &["http/1.1"]);
    let tls = tls_connect(origin.addr, "a.example.com", Arc::clone(&config))
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    let leaf = &conn.peer_certificates().expect("a server certificate")[0];
    assert_eq!(cert_serial(leaf), pki.server.serial);
    drop(tls);

    let r = https1(origin.addr, "a.example.com", config, "/hello?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "tls-origin GET /hello?x=1");
    assert_eq!(
        r.header("x-client-san"),
        Some(format!("{CLIENT_SPIFFE},client.local").as_str())
    );
    assert_eq!(r.header("x-tls-sni"), Some("a.example.com"));
    assert_eq!(r.header("x-tls-alpn"), Some("http/1.1"));
    assert_eq!(r.header("x-tls-version"), Some("TLSv1.3"));
    let req = origin.requests().pop().expect("a request");
    assert_eq!(
        (req.version.as_str(), req.path.as_str()),
        ("HTTP/1.1", "/hello?x=1")
    );
}

#[tokio::test]
async fn rustls_client_h2() {
    let (_dir, pki) = pki("tls-h2");
    let origin = tls_origin(&pki, &["h2", "http/1.1"], false).await;
    let config = client_config(&pki.ca, None, &["h2"]);
    let tls = tls_connect(origin.addr, "localhost", config)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/over-h2")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).expect("send");
    let resp = resp.await.expect("a response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tls-alpn"], "h2");
    assert!(resp.headers().get("x-client-san").is_none());
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"tls-origin GET /over-h2");
    assert_eq!(origin.requests()[0].version, "HTTP/2.0");
}

#[tokio::test]
async fn client_cert_required() {
    let (_dir, pki) = pki("tls-mtls");
    let origin = tls_origin(&pki, &["http/1.1"], true).await;
    // Without a certificate, and with one from the other CA: the server refuses (in TLS 1.3
    // the client learns it on its first read).
    for (n, client) in [None, Some(&pki.other_client)].into_iter().enumerate() {
        let config = client_config(&pki.ca, client, &["http/1.1"]);
        if let Ok(mut tls) = tls_connect(origin.addr, "localhost", config).await {
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            let got = read_all(&mut tls).await;
            assert!(
                got.is_empty(),
                "answered: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        wait_failed(&origin, n + 1).await;
    }
    assert!(origin.requests().is_empty());
    assert!(origin.last_error().is_some());
}

#[tokio::test]
async fn openssl_against_the_origin() {
    if !require_openssl("openssl_against_the_origin") {
        return;
    }
    let (dir, pki) = pki("tls-openssl");
    let origin = tls_origin(&pki, &["h2", "http/1.1"], false).await;
    let ca = pki.ca.display().to_string();
    let base = ["-servername", "a.example.com", "-CAfile", &ca];

    // A handshake only: stdin ends at once.
    let out = openssl_s_client(origin.addr, &[&base[..], &["-alpn", "h2"]].concat(), b"").await;
    assert!(!out.timed_out, "{out:?}");
    assert_eq!(out.protocol(), Some("TLSv1.3"), "{}", out.stdout);
    assert_eq!(out.alpn(), Some("h2"));
    assert_eq!(out.reused(), Some(false));
    assert_eq!(out.verify_code(), Some(0));
    assert!(out.cipher().is_some_and(|c| c.starts_with("TLS_")));
    assert_eq!(
        peer_serial(&out).await.as_deref(),
        Some(pki.server.serial.as_str())
    );
    assert_eq!(origin.conns()[0].sni.as_deref(), Some("a.example.com"));

    // No ALPN offered: none negotiated.
    let out = openssl_s_client(origin.addr, &base, b"").await;
    assert!(out.stdout.contains("No ALPN negotiated"), "{}", out.stdout);
    assert_eq!(out.alpn(), None);
    // -brief: the protocol on stderr.
    let out = openssl_s_client(origin.addr, &[&base[..], &["-brief"]].concat(), b"").await;
    assert_eq!(out.protocol(), Some("TLSv1.3"), "{}", out.stderr);
    assert!(out.stderr.contains("Protocol version: TLSv1.3"));

    // A request, and the session saved for a resumption.
    let sess = dir.path().join("session.pem").display().to_string();
    let request = b"GET /via-openssl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let args = [
        &base[..],
        &["-alpn", "http/1.1", "-ign_eof", "-sess_out", &sess],
    ]
    .concat();
    let out = openssl_s_client(origin.addr, &args, request).await;
    assert!(!out.timed_out, "{out:?}");
    assert!(
        out.stdout.contains("tls-origin GET /via-openssl"),
        "{}",
        out.stdout
    );
    assert_eq!(out.alpn(), Some("http/1.1"));
    let args = [&base[..], &["-sess_in", &sess]].concat();
    let out = openssl_s_client(origin.addr, &args, b"").await;
    assert_eq!(out.reused(), Some(true), "{}", out.stdout);
    assert_eq!(out.protocol(), Some("TLSv1.3"));

    // An untrusted CA: the handshake completes, the verification does not.
    let other = pki.other_ca.display().to_string();
    let out = openssl_s_client(origin.addr, &["-CAfile", &other], b"").await;
    assert_ne!(out.verify_code(), Some(0));

    // A client certificate from OpenSSL, required by the origin.
    let mtls = tls_origin(&pki, &["http/1.1"], true).await;
    let (cert, key) = (
        pki.client.cert.display().to_string(),
        pki.client.key.display().to_string(),
    );
    let args = [&base[..], &["-cert", &cert, "-key", &key, "-quiet"]].concat();
    let out = openssl_s_client(mtls.addr, &args, request).await;
    let reply = parse_reply(out.stdout.as_bytes()).expect("a reply on stdout");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("x-client-san")
            .is_some_and(|s| s.starts_with(CLIENT_SPIFFE))
    );
    // Without one: no handshake.
    let out = openssl_s_client(mtls.addr, &[&base[..], &["-ign_eof"]].concat(), request).await;
    assert!(!out.stdout.contains("tls-origin GET"), "{}", out.stdout);
    wait_failed(&mtls, 1).await;
}

#[tokio::test]
async fn curl_against_the_origin() {
    let (_dir, pki) = pki("tls-curl");
    let origin = tls_origin(&pki, &["h2", "http/1.1"], false).await;
    let port = origin.addr.port();
    let (status, body) = curl_https(&format!("https://localhost:{port}/c"), &pki.ca, &[]).await;
    assert_eq!((status, body.as_str()), (200, "tls-origin GET /c"));
    let resolve = resolve("a.example.com", origin.addr);
    let url = format!("https://a.example.com:{port}/named");
    let (status, body) = curl_https(&url, &pki.ca, &["--resolve", &resolve, "--http2"]).await;
    assert_eq!((status, body.as_str()), (200, "tls-origin GET /named"));
    let last = origin.requests().pop().unwrap();
    assert_eq!(last.version, "HTTP/2.0");
    assert_eq!(last.conn.sni.as_deref(), Some("a.example.com"));
    // A name the certificate does not have, and a CA that did not sign it.
    let (status, err) = curl_https(
        &format!("https://b.example.com:{port}/"),
        &pki.ca,
        &[
            "--resolve",
            &crate::tls_cli::resolve("b.example.com", origin.addr),
        ],
    )
    .await;
    assert_eq!(status, 0, "{err}");
    let (status, err) = curl_https(&format!("https://localhost:{port}/"), &pki.other_ca, &[]).await;
    assert_eq!(status, 0, "{err}");
}

#[tokio::test]
async fn echo_servers() {
    let (_dir, pki) = pki("tls-echo");
    let echo = tls_echo(&pki, false).await;
    let config = client_config(&pki.ca, None, &[]);
    let mut tls = tls_connect(echo.addr, "localhost", Arc::clone(&config))
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    tls.shutdown().await.unwrap();
    assert!(read_all(&mut tls).await.is_empty(), "EOF after ours");

    for name in ["b.example.com", "default.example.com"] {
        let sni = tls_echo_sni(&pki, name).await;
        let mut tls = tls_connect(sni.addr, name, Arc::clone(&config))
            .await
            .unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(cert_serial(&leaf), pki.leaf_for(name).serial);
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.unwrap();
        let got = read_all(&mut tls).await;
        assert_eq!(got, format!("hello from {name}\npong").as_bytes());
    }
}

#[tokio::test]
async fn reissued_server_certificate() {
    let (_dir, mut pki) = pki("tls-rotate");
    let first = pki.server.serial.clone();
    let key = std::fs::read(&pki.server.key).unwrap();
    let second = pki.reissue_server(false);
    assert_ne!(first, second);
    assert_eq!(std::fs::read(&pki.server.key).unwrap(), key, "same key");
    assert_eq!(cert_serial(&load_certs(&pki.server.cert)[0]), second);
    let third = pki.reissue_server(true);
    assert_ne!(std::fs::read(&pki.server.key).unwrap(), key, "a new key");
    assert!(![&first, &second].contains(&&third));
    // The files make a working pair, presented with the new serial.
    let origin = tls_origin(&pki, &[], false).await;
    let tls = tls_connect(origin.addr, "localhost", client_config(&pki.ca, None, &[]))
        .await
        .expect("handshake with the re-issued certificate");
    let leaf = &tls.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(cert_serial(leaf), third);
    let leftovers: Vec<_> = std::fs::read_dir(&pki.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
