//! Reloads (by hand and by the watcher) and the certificate expiry gauge.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

const HOST: Option<&str> = Some("server.test");

/// The serial served to a fresh client (no session to resume).
async fn served_serial(server: &ServerTls, pki: &Pki) -> String {
    let (_s, c) = connect_ok(server, &client(&pki.client_ctx()), HOST).await;
    peer_serial(&c)
}

#[tokio::test]
async fn reload_serves_a_new_pair_and_keeps_the_old_one_when_broken() {
    let pki = Pki::new("reload");
    let (server, stats) = server(&[pki.server_ctx("srv", &["server.test"], 1)]);
    let (mut old_s, mut old_c) = connect_ok(&server, &client(&pki.client_ctx()), HOST).await;
    assert_eq!(peer_serial(&old_c), "1");
    assert!(!server.reload().unwrap(), "nothing changed");

    pki.leaf_files("srv", &["server.test"], 2);
    assert!(server.reload().unwrap());
    assert_eq!(served_serial(&server, &pki).await, "2");

    // An established connection keeps working.
    old_s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    old_c.read_exact(&mut b).await.unwrap();

    // A certificate with someone else's key: refused, the previous pair stays.
    let (cert3, _) = pki.leaf_with(&["server.test"], 3, |_| {});
    pki.write("srv.crt", cert3);
    let e = server.reload().unwrap_err().to_string();
    assert!(e.contains("does not match the certificate"), "{e}");
    assert_eq!(served_serial(&server, &pki).await, "2");
    // A missing file too.
    std::fs::remove_file(pki.dir.join("srv.key")).unwrap();
    assert!(
        server
            .reload()
            .unwrap_err()
            .to_string()
            .contains("cannot read the file")
    );
    assert_eq!(served_serial(&server, &pki).await, "2");

    assert_eq!(
        sample(&stats, "tls_reloads", &[("listener", "l1")]),
        Some(1)
    );
    assert_eq!(
        sample(&stats, "tls_reload_errors", &[("listener", "l1")]),
        Some(2)
    );
}

#[tokio::test]
async fn watcher_reloads_changed_files_until_stopped() {
    let pki = Pki::new("watch");
    let mut ctx = pki.server_ctx("srv", &["server.test"], 1);
    ctx.ca_cert = file(&pki.ca_file);
    ctx.verify_client = true;
    let (server, stats) = server(&[ctx]);
    assert_eq!(server.watched_files().len(), 3);
    let stop = CancellationToken::new();
    let task = server
        .spawn_watcher_every(stop.clone(), Duration::from_millis(40))
        .expect("files to watch");

    pki.leaf_files("srv", &["server.test"], 2);
    let mut serial = String::new();
    for _ in 0..100 {
        serial = served_serial(&server, &pki).await;
        if serial == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serial, "2", "the watcher reloaded the new pair");
    assert_eq!(
        sample(&stats, "tls_reload_errors", &[("listener", "l1")]),
        Some(0)
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn cert_expiry_gauge_per_certificate() {
    let pki = Pki::new("expiry");
    let (future, key1) = pki.leaf_with(&["a.test"], 1, |p| {
        p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    });
    let (past, key2) = pki.leaf_with(&["b.test"], 2, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let future_path = pki.write("future.crt", future);
    let ctx1 = TlsContext {
        cert_chain: file(&future_path),
        private_key: file(&pki.write("future.key", key1)),
        ..base_ctx()
    };
    let ctx2 = TlsContext {
        cert_chain: Some(PemSource::Inline(past)),
        private_key: Some(PemSource::Inline(key2)),
        ..base_ctx()
    };
    let stats = TlsStats::new();
    let server = ServerTls::new("l1", &[ctx1, ctx2], stats.clone()).unwrap();
    let path = future_path.display().to_string();
    let name = "tls_cert_expiry_seconds";
    let left = sample(&stats, name, &[("listener", "l1"), ("cert", &path)]).unwrap();
    assert!(left > 70 * 365 * 86_400, "{left}");
    assert_eq!(
        sample(&stats, name, &[("listener", "l1"), ("cert", "inline:1")]),
        Some(0)
    );

    let cctx = pki.mtls_client_ctx("cli", &["client.test"], 3);
    let client = ClientTls::new("c1", &cctx, stats.clone()).unwrap();
    let cert = pki.dir.join("cli.crt").display().to_string();
    assert!(sample(&stats, name, &[("cluster", "c1"), ("cert", &cert)]).unwrap() > 0);

    drop(server);
    drop(client);
    assert_eq!(sample(&stats, name, &[]), None, "gone with their holders");
    let kinds: Vec<_> = stats.samples().iter().map(|s| (s.name, s.kind)).collect();
    assert!(kinds.contains(&("tls_handshakes", crate::metrics::SampleKind::Counter)));
    assert!(kinds.contains(&(
        "tls_upstream_handshake_errors",
        crate::metrics::SampleKind::Counter
    )));
}
