//! Client certificates: required, optional, from the wrong CA, and SAN matchers.

use super::*;
use crate::config::tls::SanMatcher;
use crate::network::PeerIdentity;

const SPIFFE_X: &str = "spiffe://cluster.local/ns/x/sa/y";

fn mtls_server(
    pki: &Pki,
    require: bool,
    matchers: Vec<SanMatcher>,
) -> (Arc<ServerTls>, Arc<TlsStats>) {
    let mut ctx = pki.server_ctx("srv", &["server.test"], 1);
    ctx.ca_cert = file(&pki.ca_file);
    ctx.verify_client = true;
    ctx.require_client_cert = require;
    ctx.match_subject_alt_names = matchers;
    server(&[ctx])
}

#[tokio::test]
async fn required_client_cert_missing_or_from_another_ca_is_refused() {
    let pki = Pki::new("mtls-req");
    let other = Pki::new("mtls-other");
    let (server, stats) = mtls_server(&pki, true, vec![]);

    let out = handshake(&server, &client(&pki.client_ctx()), Some("server.test")).await;
    assert_eq!(server_reason(&out), "no_client_cert");

    let mut foreign = other.mtls_client_ctx("foreign", &["client.test"], 7);
    foreign.ca_cert = file(&pki.ca_file);
    let out = handshake(&server, &client(&foreign), Some("server.test")).await;
    assert_eq!(server_reason(&out), "bad_certificate");

    let good = client(&pki.mtls_client_ctx("cli", &[SPIFFE_X, "client.test", "10.1.2.3"], 8));
    let (s, _c) = connect_ok(&server, &good, Some("server.test")).await;
    let want = PeerIdentity {
        sans: vec![SPIFFE_X.into(), "client.test".into(), "10.1.2.3".into()],
    };
    assert_eq!(s.identity().map(|i| i.as_ref()), Some(&want));

    for (reason, n) in [
        ("no_client_cert", 1),
        ("bad_certificate", 1),
        ("san_mismatch", 0),
    ] {
        let labels = [("listener", "l1"), ("reason", reason)];
        assert_eq!(
            sample(&stats, "tls_handshake_errors", &labels),
            Some(n),
            "{reason}"
        );
    }
    let labels = [("listener", "l1"), ("resumed", "false")];
    assert_eq!(sample(&stats, "tls_handshakes", &labels), Some(1));
}

#[tokio::test]
async fn optional_client_cert_may_be_absent() {
    let pki = Pki::new("mtls-opt");
    let (server, _) = mtls_server(&pki, false, vec![]);
    let (s, _c) = connect_ok(&server, &client(&pki.client_ctx()), Some("server.test")).await;
    assert!(s.identity().is_none());
    let with_cert = client(&pki.mtls_client_ctx("cli", &["client.test"], 3));
    let (s, _c) = connect_ok(&server, &with_cert, Some("server.test")).await;
    assert_eq!(s.identity().unwrap().sans, vec!["client.test".to_string()]);
}

#[tokio::test]
async fn san_matchers_refuse_other_identities_and_accept_a_spiffe_uri() {
    let pki = Pki::new("mtls-san");
    let matchers = vec![
        SanMatcher::Prefix("spiffe://cluster.local/ns/x/".into()),
        SanMatcher::Exact("10.9.9.9".into()),
    ];
    let (server, stats) = mtls_server(&pki, true, matchers);

    let wrong =
        client(&pki.mtls_client_ctx("wrong", &["spiffe://cluster.local/ns/z/sa/y", "x.test"], 4));
    let out = handshake(&server, &wrong, Some("server.test")).await;
    assert_eq!(server_reason(&out), "san_mismatch");
    let e = out.0.unwrap_err();
    assert!(
        e.error
            .to_string()
            .contains("spiffe://cluster.local/ns/z/sa/y"),
        "{}",
        e.error
    );

    let spiffe = client(&pki.mtls_client_ctx("spiffe", &[SPIFFE_X], 5));
    let (s, _c) = connect_ok(&server, &spiffe, Some("server.test")).await;
    assert_eq!(s.identity().unwrap().sans, vec![SPIFFE_X.to_string()]);

    let by_ip = client(&pki.mtls_client_ctx("ip", &["10.9.9.9"], 6));
    connect_ok(&server, &by_ip, Some("server.test")).await;

    let labels = [("listener", "l1"), ("reason", "san_mismatch")];
    assert_eq!(sample(&stats, "tls_handshake_errors", &labels), Some(1));
}
