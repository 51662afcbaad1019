//! Handshakes between ServerTls and ClientTls over loopback: ALPN, SNI, versions, and the
//! failures that are not about client certificates.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::*;
use crate::config::tls::SanMatcher;
use crate::tls::TlsError;

#[tokio::test]
async fn handshake_negotiates_h2_and_counts() {
    let pki = Pki::new("alpn");
    let mut sctx = pki.server_ctx("srv", &["server.test"], 10);
    sctx.alpn = vec!["h2".into(), "http/1.1".into()];
    let (server, stats) = server(&[sctx]);
    assert_eq!(server.alpn(), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    let mut cctx = pki.client_ctx();
    cctx.alpn = vec!["h2".into()];
    let cstats = TlsStats::new();
    let client = ClientTls::new("c1", &cctx, cstats.clone()).unwrap();
    assert!(client.offers_h2());

    let (s, c) = connect_ok(&server, &client, Some("server.test")).await;
    assert_eq!(s.alpn(), Some(&b"h2"[..]));
    assert_eq!(c.alpn(), Some(&b"h2"[..]));
    assert!(s.is_tls() && c.is_tls());
    assert!(s.identity().is_none(), "no client certificate");
    assert_eq!(peer_serial(&c), "10");
    assert_eq!(version(&c), Some(rustls::ProtocolVersion::TLSv1_3));

    let hs = "tls_handshakes";
    assert_eq!(
        sample(&stats, hs, &[("listener", "l1"), ("resumed", "false")]),
        Some(1)
    );
    assert_eq!(
        sample(&stats, hs, &[("listener", "l1"), ("resumed", "true")]),
        Some(0)
    );
    let errs = ("listener", "l1");
    assert_eq!(
        sample(
            &stats,
            "tls_handshake_errors",
            &[errs, ("reason", "timeout")]
        ),
        Some(0)
    );
    assert_eq!(sample(&stats, "tls_reload_errors", &[errs]), Some(0));
    let up = "tls_upstream_handshakes";
    assert_eq!(
        sample(&cstats, up, &[("cluster", "c1"), ("resumed", "false")]),
        Some(1)
    );
    assert_eq!(
        sample(
            &cstats,
            "tls_upstream_handshake_errors",
            &[("cluster", "c1"), ("reason", "closed")]
        ),
        Some(0)
    );
}

#[tokio::test]
async fn sni_picks_the_certificate_of_a_set() {
    let pki = Pki::new("sni");
    let default = pki.server_ctx("default", &["default.test", "127.0.0.1"], 1);
    let mut named = pki.server_ctx("named", &["other.test"], 2);
    named.server_name = Some("API.test".into());
    let wild = pki.server_ctx("wild", &["*.wild.test"], 3);
    let (server, _) = server(&[default, named, wild]);

    // Verified connections: the names are in the certificates picked.
    let verified = client(&pki.client_ctx());
    for (host, serial) in [
        ("default.test", "1"),
        ("other.test", "2"),
        ("x.wild.test", "3"),
    ] {
        let (_s, c) = connect_ok(&server, &verified, Some(host)).await;
        assert_eq!(peer_serial(&c), serial, "{host}");
    }
    // No SNI (an IP address): the default certificate, which has the IP.
    let (_s, c) = connect_ok(&server, &verified, None).await;
    assert_eq!(peer_serial(&c), "1");

    // Unverified, to see what is served where no certificate has the name.
    let mut insecure = pki.client_ctx();
    insecure.insecure_skip = true;
    let insecure = client(&insecure);
    for (host, serial) in [
        ("api.test", "2"),      // the context's server_name (case-insensitive)
        ("a.b.wild.test", "1"), // a wildcard covers one label only
        ("wild.test", "1"),
        ("unknown.test", "1"),
    ] {
        let (_s, c) = connect_ok(&server, &insecure, Some(host)).await;
        assert_eq!(peer_serial(&c), serial, "{host}");
    }
}

#[tokio::test]
async fn tls12_only_server_negotiates_tls12() {
    let pki = Pki::new("tls12");
    let mut sctx = pki.server_ctx("srv", &["server.test"], 5);
    sctx.max_version = TlsVersion::Tls12;
    sctx.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()];
    sctx.ecdh_curves = vec!["P-256".into()];
    let (server, _) = server(&[sctx]);
    let client = client(&pki.client_ctx());
    let (_s, c) = connect_ok(&server, &client, Some("server.test")).await;
    assert_eq!(version(&c), Some(rustls::ProtocolVersion::TLSv1_2));
    let Conn::Tls { stream, .. } = &c else {
        unreachable!()
    };
    let suite = stream.get_ref().1.negotiated_cipher_suite().unwrap();
    assert_eq!(
        suite.suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
}

#[tokio::test]
async fn nothing_in_common_is_protocol_version_or_no_shared_cipher() {
    let pki = Pki::new("incompat");
    let mut only13 = pki.server_ctx("srv13", &["server.test"], 1);
    only13.min_version = TlsVersion::Tls13;
    let (server13, _) = server(&[only13]);
    let mut cctx = pki.client_ctx();
    cctx.max_version = TlsVersion::Tls12;
    let client12 = client(&cctx);
    let out = handshake(&server13, &client12, Some("server.test")).await;
    assert_eq!(server_reason(&out), "protocol_version");
    assert_eq!(client_reason(&out), "protocol_version");

    let mut sctx = pki.server_ctx("srv12", &["server.test"], 2);
    sctx.max_version = TlsVersion::Tls12;
    sctx.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()];
    let (server12, stats) = server(&[sctx]);
    cctx.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()];
    let client = client(&cctx);
    let out = handshake(&server12, &client, Some("server.test")).await;
    assert_eq!(server_reason(&out), "no_shared_cipher");
    assert_eq!(client_reason(&out), "no_shared_cipher");
    let labels = [("listener", "l1"), ("reason", "no_shared_cipher")];
    assert_eq!(sample(&stats, "tls_handshake_errors", &labels), Some(1));
}

#[tokio::test]
async fn silent_client_times_out() {
    let pki = Pki::new("timeout");
    let mut sctx = pki.server_ctx("srv", &["server.test"], 1);
    sctx.handshake_timeout = Duration::from_millis(150);
    let (server, stats) = server(&[sctx]);
    let (_c, s) = tcp_pair().await;
    let started = Instant::now();
    let e = server.accept(s).await.unwrap_err();
    assert_eq!(e.reason, "timeout");
    assert_eq!(e.error.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(2));
    let labels = [("listener", "l1"), ("reason", "timeout")];
    assert_eq!(sample(&stats, "tls_handshake_errors", &labels), Some(1));
}

#[tokio::test]
async fn plaintext_and_garbage_are_not_tls_and_eof_is_closed() {
    let pki = Pki::new("nottls");
    let (server, stats) = server(&[pki.server_ctx("srv", &["server.test"], 1)]);
    let garbage: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: server.test\r\n\r\n",
        b"\x00\x01\x02\x03garbage garbage garbage",
        // A handshake record header with a version no TLS has.
        b"\x16\x09\x09\x00\x05hello",
    ];
    for bytes in garbage {
        let (mut c, s) = tcp_pair().await;
        c.write_all(bytes).await.unwrap();
        let e = server.accept(s).await.unwrap_err();
        assert_eq!(e.reason, "not_tls", "{bytes:?}: {}", e.error);
    }
    let (c, s) = tcp_pair().await;
    drop(c);
    assert_eq!(server.accept(s).await.unwrap_err().reason, "closed");
    let labels = [("listener", "l1"), ("reason", "not_tls")];
    assert_eq!(sample(&stats, "tls_handshake_errors", &labels), Some(3));
}

#[tokio::test]
async fn client_refuses_unknown_ca_and_wrong_san_unless_insecure() {
    let pki = Pki::new("upstream");
    let other = Pki::new("upstream-other");
    let (server, sstats) = server(&[pki.server_ctx("srv", &["server.test"], 1)]);

    let cstats = TlsStats::new();
    let wrong_ca = ClientTls::new("c1", &other.client_ctx(), cstats.clone()).unwrap();
    let out = handshake(&server, &wrong_ca, Some("server.test")).await;
    assert_eq!(client_reason(&out), "bad_certificate");
    assert_eq!(server_reason(&out), "bad_certificate", "the client's alert");
    let labels = [("cluster", "c1"), ("reason", "bad_certificate")];
    assert_eq!(
        sample(&cstats, "tls_upstream_handshake_errors", &labels),
        Some(1)
    );
    let labels = [("listener", "l1"), ("reason", "bad_certificate")];
    assert_eq!(sample(&sstats, "tls_handshake_errors", &labels), Some(1));

    // The name verified is server_name when set.
    let mut named = pki.client_ctx();
    named.server_name = Some("elsewhere.test".into());
    let out = handshake(&server, &client(&named), Some("server.test")).await;
    assert_eq!(client_reason(&out), "bad_certificate");

    let mut matching = pki.client_ctx();
    matching.match_subject_alt_names = vec![SanMatcher::Exact("other.test".into())];
    let out = handshake(&server, &client(&matching), Some("server.test")).await;
    assert_eq!(client_reason(&out), "san_mismatch");
    matching.match_subject_alt_names = vec![SanMatcher::Suffix(".test".into())];
    connect_ok(&server, &client(&matching), Some("server.test")).await;

    let mut insecure = other.client_ctx();
    insecure.insecure_skip = true;
    insecure.server_name = Some("anything.test".into());
    let (_s, c) = connect_ok(&server, &client(&insecure), None).await;
    assert_eq!(peer_serial(&c), "1");
}

#[test]
fn config_errors_name_the_field_and_file() {
    let pki = Pki::new("errors");
    let stats = TlsStats::new();
    let err = |ctx: TlsContext| -> String {
        ServerTls::new("l1", &[ctx], stats.clone())
            .unwrap_err()
            .to_string()
    };
    let (cert, key) = pki.leaf_files("a", &["a.test"], 1);
    let (_, other_key) = pki.leaf_files("b", &["b.test"], 2);
    let empty = pki.write("empty.pem", "");
    let missing = pki.dir.join("missing.pem");

    let mut ctx = TlsContext {
        cert_chain: file(&empty),
        private_key: file(&key),
        ..base_ctx()
    };
    assert_eq!(
        err(ctx.clone()),
        format!("cert_chain {}: no certificate in the file", empty.display())
    );
    ctx.cert_chain = file(&missing);
    assert!(err(ctx.clone()).starts_with(&format!(
        "cert_chain {}: cannot read the file",
        missing.display()
    )));
    ctx.cert_chain = file(&cert);
    ctx.private_key = file(&cert);
    assert_eq!(
        err(ctx.clone()),
        format!("private_key {}: no private key in the file", cert.display())
    );
    ctx.private_key = file(&other_key);
    assert_eq!(
        err(ctx.clone()),
        format!(
            "private_key {}: does not match the certificate in cert_chain {}",
            other_key.display(),
            cert.display()
        )
    );
    ctx.private_key = file(&key);
    ctx.verify_client = true;
    assert!(err(ctx.clone()).starts_with("ca_cert: context 0 verifies client certificates"));
    ctx.verify_client = false;
    ctx.cert_chain = Some(PemSource::Inline("not pem".into()));
    assert_eq!(
        err(ctx.clone()),
        "cert_chain inline:0: no certificate in the PEM"
    );
    ctx.cert_chain = file(&cert);
    ctx.session_ticket_keys = vec![empty.clone()];
    assert_eq!(
        err(ctx.clone()),
        format!(
            "session_ticket_keys {}: 0 bytes; a ticket key file holds exactly 80",
            empty.display()
        )
    );
    assert!(ServerTls::new("l1", &[], stats.clone()).is_err());
    assert!(matches!(
        ClientTls::new(
            "c1",
            &TlsContext {
                server_name: Some("bad name!".into()),
                ..pki.client_ctx()
            },
            stats
        ),
        Err(TlsError::Setting {
            field: "server_name",
            ..
        })
    ));
}
