//! Session resumption: rustls' rotating ticketer, Envoy-format key files and their rotation,
//! TLS 1.2.

use super::*;

const HOST: Option<&str> = Some("server.test");

/// An 80-byte key file whose name (bytes 0..16) and keys depend on `seed`.
fn key_file(seed: u8) -> Vec<u8> {
    (0..80u8)
        .map(|i| seed.wrapping_mul(37).wrapping_add(i))
        .collect()
}

#[tokio::test]
async fn default_ticketer_resumes_on_the_same_server_only() {
    let pki = Pki::new("resume-default");
    let ctx = pki.server_ctx("srv", &["server.test"], 1);
    let (server, stats) = server(std::slice::from_ref(&ctx));
    let client = client(&pki.client_ctx());

    let (_s, c) = connect_ok(&server, &client, HOST).await;
    assert!(!resumed(&c));
    let (_s, c) = connect_ok(&server, &client, HOST).await;
    assert!(resumed(&c), "second connection resumes");
    assert_eq!(
        sample(&stats, "tls_handshakes", &[("resumed", "true")]),
        Some(1)
    );
    assert_eq!(
        sample(&stats, "tls_handshakes", &[("resumed", "false")]),
        Some(1)
    );

    // Another chain has its own random ticket keys: a full handshake there.
    let (other, _) = super::server(&[ctx]);
    let (_s, c) = connect_ok(&other, &client, HOST).await;
    assert!(!resumed(&c));
}

#[tokio::test]
async fn tls12_sessions_resume() {
    let pki = Pki::new("resume-12");
    let mut ctx = pki.server_ctx("srv", &["server.test"], 1);
    ctx.max_version = TlsVersion::Tls12;
    let (server, _) = server(&[ctx]);
    let client = client(&pki.client_ctx());
    let (_s, c) = connect_ok(&server, &client, HOST).await;
    assert_eq!(version(&c), Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(!resumed(&c));
    let (_s, c) = connect_ok(&server, &client, HOST).await;
    assert!(resumed(&c));
}

#[tokio::test]
async fn key_files_resume_across_servers_and_rotation() {
    let pki = Pki::new("resume-keys");
    let main = pki.write("ticket-main.key", key_file(1));
    let old = pki.write("ticket-old.key", key_file(9));
    let mut ctx = pki.server_ctx("srv", &["server.test"], 1);
    ctx.session_ticket_keys = vec![main.clone(), old.clone()];
    let (server, _) = server(std::slice::from_ref(&ctx));

    // Another instance with the same key files (another worker, a restarted process).
    let (twin, _) = super::server(&[ctx]);
    let a = client(&pki.client_ctx());
    let (_s, c) = connect_ok(&server, &a, HOST).await;
    assert!(!resumed(&c));
    let (_s, c) = connect_ok(&twin, &a, HOST).await;
    assert!(resumed(&c), "a ticket from one instance opens on the other");

    // Two clients holding tickets sealed by key 1.
    let b = client(&pki.client_ctx());
    let c_ = client(&pki.client_ctx());
    for cl in [&b, &c_] {
        let (_s, c) = connect_ok(&server, cl, HOST).await;
        assert!(!resumed(&c));
    }

    // Rotation to [new, old]: tickets of the old key still open.
    pki.write("ticket-main.key", key_file(2));
    pki.write("ticket-old.key", key_file(1));
    assert!(server.reload().unwrap());
    let (_s, c) = connect_ok(&server, &b, HOST).await;
    assert!(resumed(&c), "sealed by a key still listed");

    // Key 1 gone: a full handshake, which still succeeds, then resumption under key 2.
    pki.write("ticket-old.key", key_file(3));
    assert!(server.reload().unwrap());
    let (_s, c) = connect_ok(&server, &c_, HOST).await;
    assert!(!resumed(&c), "sealed by a key no longer listed");
    let (_s, c) = connect_ok(&server, &c_, HOST).await;
    assert!(resumed(&c));

    // A key file of the wrong size is refused and the keys in use stay.
    pki.write("ticket-old.key", [0u8; 10]);
    assert!(server.reload().is_err());
    let (_s, c) = connect_ok(&server, &c_, HOST).await;
    assert!(resumed(&c));
}
