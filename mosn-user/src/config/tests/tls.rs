//! Tests of `tls_context` / `tls_context_set` on listeners and clusters. Filter chains
//! (`filter_chain_match`, several chains, `inspector`) are in `chains.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// A directory of files for a test (removed when dropped): `cert.pem`, `key.pem`, `ca.pem`
/// (not real PEM: validation only checks that they can be opened), `ticket.key` (80 bytes)
/// and `short.key` (10 bytes).
pub(super) struct Files(PathBuf);

impl Files {
    pub(super) fn new() -> Files {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mosn-config-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("cert.pem", "-----BEGIN CERTIFICATE-----\n"),
            ("key.pem", "-----BEGIN PRIVATE KEY-----\n"),
            ("ca.pem", "-----BEGIN CERTIFICATE-----\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        std::fs::write(dir.join("ticket.key"), [7u8; 80]).unwrap();
        std::fs::write(dir.join("short.key"), [7u8; 10]).unwrap();
        Files(dir)
    }

    pub(super) fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// An enabled listener context with this directory's certificate and key.
    pub(super) fn server(&self) -> Value {
        json!({ "status": true, "cert_chain": self.path("cert.pem"),
                "private_key": self.path("key.pem") })
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const INLINE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAA\n\
                          -----END PRIVATE KEY-----\n";
const CHAIN0: &str = "servers[0].listeners[0].filter_chains[0]";
const CTX: &str = "servers[0].listeners[0].filter_chains[0].tls_context";
const CLUSTER_CTX: &str = "cluster_manager.clusters[0].tls_context";

pub(super) fn chain0(v: &mut Value) -> &mut Value {
    &mut listener0(v)["filter_chains"][0]
}

/// `base()` with `ctx` as the first chain's `tls_context`.
fn with_listener_tls(ctx: Value) -> Value {
    let mut v = base();
    chain0(&mut v)["tls_context"] = ctx;
    v
}

fn with_cluster_tls(ctx: Value) -> Value {
    let mut v = base();
    v["cluster_manager"]["clusters"][0]["tls_context"] = ctx;
    v
}

fn listener_tls(v: &Value) -> (Vec<TlsContext>, Vec<String>) {
    let loaded = parse_value(v).unwrap();
    let tls = loaded.config.listeners[0].filter_chains[0].tls.clone();
    (tls, loaded.warnings)
}

/// Merges `extra` into `ctx`'s keys.
fn plus(mut ctx: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        ctx[k] = v.clone();
    }
    ctx
}

#[test]
fn full_listener_context() {
    let f = Files::new();
    let v = with_listener_tls(json!({
        "status": true,
        "type": "",
        "cert_chain": f.path("cert.pem"),
        "private_key": INLINE_KEY,
        "ca_cert": f.path("ca.pem"),
        "require_client_cert": true,
        "server_name": "API.example.com",
        "min_version": "TLS1.2",
        "max_version": "TLSv1.3",
        "cipher_suites": "ECDHE-ECDSA-AES128-GCM-SHA256, TLS_AES_128_GCM_SHA256",
        "ecdh_curves": "X25519,P-256",
        "alpn": ["h2", "http/1.1"],
        "match_subject_alt_names": [
            { "exact": "spiffe://cluster.local/ns/a/sa/b" },
            { "prefix": "spiffe://cluster.local/ns/c/" },
            { "suffix": ".example.com" },
            { "contains": "mesh" }
        ],
        "session_ticket_keys": [{ "filename": f.path("ticket.key") }, f.path("ticket.key")],
        "handshake_timeout": "3s"
    }));
    let (tls, warnings) = listener_tls(&v);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        tls,
        vec![TlsContext {
            cert_chain: Some(PemSource::File(f.path("cert.pem").into())),
            private_key: Some(PemSource::Inline(INLINE_KEY.to_owned())),
            ca_cert: Some(PemSource::File(f.path("ca.pem").into())),
            verify_client: true,
            require_client_cert: true,
            server_name: Some("api.example.com".into()),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: vec![
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_AES_128_GCM_SHA256".into()
            ],
            ecdh_curves: vec!["X25519".into(), "P-256".into()],
            alpn: vec!["h2".into(), "http/1.1".into()],
            insecure_skip: false,
            match_subject_alt_names: vec![
                SanMatcher::Exact("spiffe://cluster.local/ns/a/sa/b".into()),
                SanMatcher::Prefix("spiffe://cluster.local/ns/c/".into()),
                SanMatcher::Suffix(".example.com".into()),
                SanMatcher::Contains("mesh".into()),
            ],
            session_ticket_keys: vec![f.path("ticket.key").into(), f.path("ticket.key").into()],
            handshake_timeout: Duration::from_secs(3),
        }]
    );
    let shown = format!("{tls:?}");
    assert!(!shown.contains("MC4CAQ"), "Debug hides inline PEM: {shown}");
}

#[test]
fn defaults_and_mosn_alpn_string() {
    let f = Files::new();
    let v = with_listener_tls(plus(f.server(), json!({ "alpn": "h2, http/1.1,h2" })));
    let (tls, warnings) = listener_tls(&v);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let t = &tls[0];
    assert_eq!(t.min_version, TlsVersion::Tls12);
    assert_eq!(t.max_version, TlsVersion::Tls13);
    assert!(t.cipher_suites.is_empty() && t.ecdh_curves.is_empty());
    assert_eq!(t.alpn, vec!["h2", "http/1.1"]);
    assert_eq!(
        t.handshake_timeout,
        crate::config::tls::DEFAULT_HANDSHAKE_TIMEOUT
    );
    assert!(!t.verify_client && !t.require_client_cert && t.ca_cert.is_none());
    assert!(t.session_ticket_keys.is_empty());
}

#[test]
fn versions() {
    let f = Files::new();
    let with = |min: &str, max: &str| {
        with_listener_tls(plus(
            f.server(),
            json!({ "min_version": min, "max_version": max }),
        ))
    };
    for (min, max, expected) in [
        ("TLS1.3", "TLS1.3", (TlsVersion::Tls13, TlsVersion::Tls13)),
        ("tlsv1_2", "TLS1_2", (TlsVersion::Tls12, TlsVersion::Tls12)),
        ("TLS_AUTO", "", (TlsVersion::Tls12, TlsVersion::Tls13)),
    ] {
        let (tls, warnings) = listener_tls(&with(min, max));
        assert!(warnings.is_empty(), "{warnings:#?}");
        assert_eq!(
            (tls[0].min_version, tls[0].max_version),
            expected,
            "{min}..{max}"
        );
    }
    let (tls, warnings) = listener_tls(&with("TLS1.0", "TLS1.3"));
    assert_eq!(tls[0].min_version, TlsVersion::Tls12);
    assert_eq!(
        warnings,
        vec![format!(
            "{CTX}.min_version: TLS1.0 cannot be honoured; rustls speaks TLS1.2 and TLS1.3 \
             (TLS1.2 is the minimum used)"
        )]
    );
    assert_one_error(
        &with("TLS1.2", "TLS1.1"),
        &format!("{CTX}.max_version: TLS1.1 leaves no version rustls speaks (TLS1.2 and TLS1.3)"),
    );
    assert_one_error(
        &with("TLS1.3", "TLS1.2"),
        &format!("{CTX}.min_version: min_version TLS1.3 is above max_version TLS1.2"),
    );
    assert_one_error(
        &with("SSLv3", "TLS1.3"),
        &format!(
            "{CTX}.min_version: unknown TLS version \"SSLv3\" (allowed: TLS1.0, TLS1.1, \
             TLS1.2, TLS1.3)"
        ),
    );
}

#[test]
fn cipher_suite_names() {
    let f = Files::new();
    let with = |suites: &str, max: &str| {
        with_listener_tls(plus(
            f.server(),
            json!({ "cipher_suites": suites, "max_version": max }),
        ))
    };
    // OpenSSL, MOSN and Go spellings; a TLS1.3 suite is named, so TLS1.3 keeps only it.
    let (tls, warnings) = listener_tls(&with(
        "ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384, \
         ECDHE-ECDSA-CHACHA20-POLY1305,ecdhe-rsa-with-chacha20-poly1305,\
         TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_CHACHA20_POLY1305_SHA256,,",
        "TLS1.3",
    ));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        tls[0].cipher_suites,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ]
    );

    // Unsupported and unknown names are warnings; TLS1.3, not named, keeps its defaults (Go).
    let (tls, warnings) = listener_tls(&with(
        "ECDHE-RSA-AES128-CBC-SHA,ECDHE-RSA-SM4-SM3,TLS_RSA_WITH_AES_128_GCM_SHA256,\
         ECDHE-RSA-AES128-GCM-SHA256,NOPE",
        "TLS1.3",
    ));
    let p = format!("{CTX}.cipher_suites");
    assert_eq!(
        warnings,
        vec![
            format!(
                "{p}: cipher suite \"ECDHE-RSA-AES128-CBC-SHA\" \
                 (TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA) is not implemented by rustls; left out"
            ),
            format!(
                "{p}: cipher suite \"ECDHE-RSA-SM4-SM3\" is not implemented by rustls; left out"
            ),
            format!(
                "{p}: cipher suite \"TLS_RSA_WITH_AES_128_GCM_SHA256\" is not implemented by \
                 rustls; left out"
            ),
            format!("{p}: unknown cipher suite \"NOPE\"; left out"),
        ]
    );
    assert_eq!(
        tls[0].cipher_suites,
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ]
    );
    // ... unless TLS1.3 is off.
    let (tls, _) = listener_tls(&with("ECDHE-RSA-AES128-GCM-SHA256", "TLS1.2"));
    assert_eq!(
        tls[0].cipher_suites,
        ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    );
    // A TLS1.3 suite with TLS1.3 off is not used.
    let (_, warnings) = listener_tls(&with("TLS_AES_128_GCM_SHA256", "TLS1.2"));
    assert_eq!(
        warnings,
        vec![format!(
            "{p}: TLS_AES_128_GCM_SHA256 not used: outside min_version TLS1.2 .. max_version \
             TLS1.2"
        )]
    );

    let errors = errors_of(&with("RSA-AES128-CBC-SHA, ECDHE-RSA-SM4-SM3", "TLS1.3"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!(
            "{p}: no cipher suite named here is implemented by rustls (it has: \
             TLS_AES_256_GCM_SHA384, "
        )),
        "{errors:#?}"
    );
}

#[test]
fn curve_names() {
    let f = Files::new();
    let with = |curves: &str| with_listener_tls(plus(f.server(), json!({ "ecdh_curves": curves })));
    let (tls, warnings) = listener_tls(&with("x25519,prime256v1,CurveP384,secp256r1,p521,foo"));
    assert_eq!(tls[0].ecdh_curves, ["X25519", "P-256", "P-384"]);
    let p = format!("{CTX}.ecdh_curves");
    assert_eq!(
        warnings,
        vec![
            format!("{p}: curve \"p521\" (P-521) is not implemented by rustls; left out"),
            format!("{p}: unknown curve \"foo\"; left out"),
        ]
    );
    for (given, canonical) in [("P256", "P-256"), ("secp384r1", "P-384"), ("P384", "P-384")] {
        let (tls, _) = listener_tls(&with(given));
        assert_eq!(tls[0].ecdh_curves, [canonical], "{given}");
    }
    assert_one_error(
        &with("CurveP521"),
        &format!(
            "{p}: no curve named here is implemented by rustls (it has: X25519, P-256, P-384)"
        ),
    );
}

#[test]
fn unknown_and_unhonoured_keys_are_warnings() {
    let f = Files::new();
    let v = with_listener_tls(plus(
        f.server(),
        json!({ "fall_back": true, "extend_verify": {"a": 1}, "sds_source": {},
                "sever_name": "x", "type": "sm" }),
    ));
    let (_, warnings) = listener_tls(&v);
    assert_eq!(
        warnings,
        vec![
            format!("ignoring unsupported key {CTX}.extend_verify"),
            format!("ignoring unsupported key {CTX}.fall_back"),
            format!("ignoring unsupported key {CTX}.sds_source"),
            format!("ignoring unsupported key {CTX}.sever_name (did you mean \"server_name\"?)"),
            format!(
                "{CTX}.type: type \"sm\" (a MOSN TLS extension) cannot be honoured; the \
                 standard TLS context is used"
            ),
        ]
    );
    // A disabled context only warns about its unknown keys.
    let v = with_listener_tls(json!({ "status": false, "hosts": [], "private_key": "/nope" }));
    let (tls, warnings) = listener_tls(&v);
    assert!(tls.is_empty());
    assert_eq!(
        warnings,
        vec![format!("ignoring unsupported key {CTX}.hosts")]
    );
    // A type error is a collected error with its path.
    assert_one_error(
        &with_listener_tls(json!({ "status": "yes" })),
        &format!("{CTX}.status: invalid type: string \"yes\", expected a boolean"),
    );
}

#[test]
fn listener_needs_certificate_and_key() {
    assert_eq!(
        errors_of(&with_listener_tls(json!({ "status": true }))),
        vec![
            format!(
                "{CTX}.cert_chain: missing cert_chain: a listener's TLS needs cert_chain and \
                 private_key (a file path, or the PEM text itself)"
            ),
            format!(
                "{CTX}.private_key: missing private_key: a listener's TLS needs cert_chain and \
                 private_key (a file path, or the PEM text itself)"
            ),
        ]
    );
    let f = Files::new();
    assert_one_error(
        &with_listener_tls(
            json!({ "status": true, "private_key": f.path("key.pem"), "cert_chain": "" }),
        ),
        &format!(
            "{CTX}.cert_chain: missing cert_chain: it comes with private_key (a file path, or \
             the PEM text itself)"
        ),
    );
}

#[test]
fn files_must_exist() {
    let f = Files::new();
    let missing = f.path("nope.pem");
    assert_one_error(
        &with_listener_tls(plus(f.server(), json!({ "cert_chain": missing }))),
        &format!(
            "{CTX}.cert_chain: cannot read {missing:?}: No such file or directory (os error 2)"
        ),
    );
    let dir = f.path("");
    assert_one_error(
        &with_listener_tls(plus(f.server(), json!({ "private_key": dir }))),
        &format!("{CTX}.private_key: {dir:?} is a directory, not a file"),
    );
    assert_one_error(
        &with_cluster_tls(json!({ "status": true, "ca_cert": missing })),
        &format!(
            "{CLUSTER_CTX}.ca_cert: cannot read {missing:?}: No such file or directory (os \
             error 2)"
        ),
    );
}

#[test]
fn client_verification_rules() {
    let f = Files::new();
    let with = |extra: Value| with_listener_tls(plus(f.server(), extra));
    for key in ["verify_client", "require_client_cert"] {
        assert_one_error(
            &with(json!({ key: true })),
            &format!(
                "{CTX}.ca_cert: missing ca_cert: {key} needs the CA certificates client \
                 certificates are verified against (a file path, or the PEM text itself)"
            ),
        );
    }
    let (tls, warnings) = listener_tls(&with(
        json!({ "require_client_cert": true, "verify_client": false, "ca_cert": f.path("ca.pem") }),
    ));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(
        tls[0].verify_client,
        "require_client_cert implies verify_client"
    );
    let (tls, warnings) = listener_tls(&with(json!({ "ca_cert": f.path("ca.pem") })));
    assert!(!tls[0].verify_client);
    assert_eq!(
        warnings,
        vec![format!(
            "{CTX}.ca_cert: not used without \"verify_client\": true (clients are not asked for \
             a certificate)"
        )]
    );
    assert_one_error(
        &with(json!({ "match_subject_alt_names": [{ "exact": "a" }] })),
        &format!(
            "{CTX}.match_subject_alt_names: needs \"verify_client\": true: clients are not asked \
             for a certificate, so there is no name to match"
        ),
    );
    let (tls, warnings) = listener_tls(&with(json!({ "insecure_skip": true })));
    assert!(!tls[0].insecure_skip);
    assert_eq!(
        warnings,
        vec![format!(
            "{CTX}.insecure_skip: meaningless on a listener (it skips verifying an upstream \
             server's certificate); ignored"
        )]
    );
}

#[test]
fn san_matchers_alpn_timeouts_and_ticket_keys() {
    let f = Files::new();
    let verified = plus(
        f.server(),
        json!({ "verify_client": true, "ca_cert": f.path("ca.pem") }),
    );
    let with = |extra: Value| with_listener_tls(plus(verified.clone(), extra));
    let sans = format!("{CTX}.match_subject_alt_names");
    for (matchers, expected) in [
        (
            json!([{ "exact": "a", "prefix": "b" }]),
            format!(
                "{sans}[0]: has \"exact\" and \"prefix\": give exactly one of \"exact\", \
                 \"prefix\", \"suffix\", \"contains\""
            ),
        ),
        (
            json!([{ "exact": "a" }, { "safe_regex": ".*" }]),
            format!("{sans}[1]: needs one of \"exact\", \"prefix\", \"suffix\", \"contains\""),
        ),
        (
            json!([{ "suffix": "" }]),
            format!("{sans}[0].suffix: must not be empty"),
        ),
    ] {
        assert_one_error(
            &with(json!({ "match_subject_alt_names": matchers })),
            &expected,
        );
    }
    assert_one_error(
        &with(json!({ "alpn": ["h2", ""] })),
        &format!("{CTX}.alpn[1]: an ALPN protocol must not be empty"),
    );
    assert_one_error(
        &with(json!({ "alpn": ["x".repeat(256)] })),
        &format!("{CTX}.alpn[0]: an ALPN protocol is at most 255 bytes, not 256"),
    );
    assert_one_error(
        &with(json!({ "handshake_timeout": "0s" })),
        &format!("{CTX}.handshake_timeout: must be more than 0s"),
    );
    let short = f.path("short.key");
    assert_one_error(
        &with(json!({ "session_ticket_keys": { "keys": [{ "filename": short }] } })),
        &format!(
            "{CTX}.session_ticket_keys.keys[0].filename: {short:?} has 10 bytes; a session \
             ticket key file has exactly 80"
        ),
    );
    assert_one_error(
        &with(json!({ "session_ticket_keys": [{ "inline_bytes": "AAAA" }] })),
        &format!(
            "{CTX}.session_ticket_keys[0].filename: missing filename of a session ticket key \
             file (inline keys are not supported)"
        ),
    );
    // Envoy's {"keys": [...]} form.
    let (tls, _) = listener_tls(&with(
        json!({ "session_ticket_keys": { "keys": [{ "filename": f.path("ticket.key") }] } }),
    ));
    assert_eq!(
        tls[0].session_ticket_keys,
        [PathBuf::from(f.path("ticket.key"))]
    );
}

#[test]
fn tls_context_set() {
    let f = Files::new();
    let mut v = base();
    chain0(&mut v)["tls_context_set"] = json!([
        plus(f.server(), json!({ "server_name": "a.example.com" })),
        { "status": false },
        plus(f.server(), json!({ "server_name": "*.B.example.com", "private_key": INLINE_KEY })),
    ]);
    let (tls, warnings) = listener_tls(&v);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let names: Vec<_> = tls.iter().map(|t| t.server_name.as_deref()).collect();
    assert_eq!(names, [Some("a.example.com"), Some("*.b.example.com")]);

    // A disabled tls_context beside a set is fine; an enabled one is not.
    chain0(&mut v)["tls_context"] = json!({ "status": false });
    assert_eq!(listener_tls(&v).0.len(), 2);
    chain0(&mut v)["tls_context"] = f.server();
    assert_one_error(
        &v,
        &format!(
            "{CHAIN0}.tls_context_set: a filter chain takes tls_context or tls_context_set, \
             not both enabled (put every certificate in tls_context_set, or set \"status\": \
             false in one)"
        ),
    );

    chain0(&mut v)["tls_context"] = Value::Null;
    chain0(&mut v)["tls_context_set"][1] =
        plus(f.server(), json!({ "server_name": "A.example.com" }));
    assert_one_error(
        &v,
        &format!(
            "{CHAIN0}.tls_context_set[1].server_name: same server_name \"a.example.com\" as \
             {CHAIN0}.tls_context_set[0]"
        ),
    );
    chain0(&mut v)["tls_context_set"][1] = plus(f.server(), json!({ "server_name": "a.*.com" }));
    assert_one_error(
        &v,
        &format!(
            "{CHAIN0}.tls_context_set[1].server_name: \"a.*.com\" is not a DNS name like \
             \"a.example.com\" or \"*.example.com\""
        ),
    );
    chain0(&mut v)["tls_context_set"][1] = json!({ "status": true });
    assert_eq!(errors_of(&v).len(), 2, "cert_chain and private_key");
}

#[test]
fn cluster_tls() {
    let f = Files::new();
    let v = with_cluster_tls(json!({
        "status": true, "ca_cert": f.path("ca.pem"), "server_name": "Backend.svc",
        "cert_chain": f.path("cert.pem"), "private_key": f.path("key.pem"),
        "alpn": ["h2"], "match_subject_alt_names": [{ "exact": "spiffe://b" }]
    }));
    let loaded = parse_value(&v).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let t = loaded.config.clusters[0].tls.as_ref().unwrap();
    assert_eq!(t.server_name.as_deref(), Some("backend.svc"));
    assert_eq!(t.alpn, ["h2"]);
    assert_eq!(
        t.cert_chain,
        Some(PemSource::File(f.path("cert.pem").into()))
    );
    assert_eq!(loaded.config.clusters[1].tls, None);

    // Listener-only settings are warnings; verification needs a CA or insecure_skip.
    let v = with_cluster_tls(json!({
        "status": true, "insecure_skip": true, "server_name": "10.0.0.1",
        "verify_client": true, "require_client_cert": true,
        "session_ticket_keys": ["/nope"], "handshake_timeout": "1s"
    }));
    let loaded = parse_value(&v).unwrap();
    let t = loaded.config.clusters[0].tls.as_ref().unwrap();
    assert!(t.insecure_skip && !t.verify_client && !t.require_client_cert);
    assert!(t.session_ticket_keys.is_empty());
    assert_eq!(
        t.handshake_timeout,
        crate::config::tls::DEFAULT_HANDSHAKE_TIMEOUT
    );
    assert_eq!(t.server_name.as_deref(), Some("10.0.0.1"));
    let meaningless = |key: &str, why: &str| {
        format!("{CLUSTER_CTX}.{key}: meaningless on a cluster ({why}); ignored")
    };
    let client = "a listener asks its clients for certificates";
    let listener = "a listener's setting; an upstream handshake is bounded by connect_timeout";
    assert_eq!(
        loaded.warnings,
        vec![
            meaningless("verify_client", client),
            meaningless("require_client_cert", client),
            meaningless("session_ticket_keys", listener),
            meaningless("handshake_timeout", listener),
        ]
    );

    assert_one_error(
        &with_cluster_tls(json!({ "status": true })),
        &format!(
            "{CLUSTER_CTX}.ca_cert: missing ca_cert: the upstream's certificate is verified \
             against it (system roots are not read; a file path, or the PEM text itself), or \
             set \"insecure_skip\": true to not verify it"
        ),
    );
    assert_one_error(
        &with_cluster_tls(
            json!({ "status": true, "insecure_skip": true, "private_key": INLINE_KEY }),
        ),
        &format!(
            "{CLUSTER_CTX}.cert_chain: missing cert_chain: it comes with private_key (a file \
             path, or the PEM text itself)"
        ),
    );
    assert_one_error(
        &with_cluster_tls(json!({ "status": true, "insecure_skip": true,
                                  "match_subject_alt_names": [{ "exact": "b" }] })),
        &format!(
            "{CLUSTER_CTX}.match_subject_alt_names: \"insecure_skip\": true does not verify the \
             upstream's certificate, so its names cannot be trusted; remove one of the two"
        ),
    );
    assert_one_error(
        &with_cluster_tls(json!({ "status": true, "insecure_skip": true, "server_name": "a b" })),
        &format!("{CLUSTER_CTX}.server_name: \"a b\" is not a DNS name or an IP address"),
    );
}

#[test]
fn serialized_config_never_shows_inline_pem() {
    let f = Files::new();
    let mut v = with_listener_tls(plus(f.server(), json!({ "private_key": INLINE_KEY })));
    v["cluster_manager"]["clusters"][0]["tls_context"] =
        json!({ "status": true, "ca_cert": INLINE_KEY.replace("PRIVATE KEY", "CERTIFICATE") });
    let config = parse_value(&v).unwrap().config;
    let dumped = serde_json::to_value(&config).unwrap();
    let text = dumped.to_string();
    assert!(
        !text.contains("-----BEGIN") && !text.contains("MC4CAQ"),
        "{text}"
    );
    let chain = &dumped["listeners"][0]["filter_chains"][0];
    assert_eq!(chain["tls_context"][0]["private_key"], "<inline>");
    assert_eq!(chain["tls_context"][0]["cert_chain"], f.path("cert.pem"));
    assert_eq!(chain["filter_chain_match"]["server_names"], json!([]));
    assert_eq!(dumped["clusters"][0]["tls"]["ca_cert"], "<inline>");
    assert!(!format!("{config:?}").contains("MC4CAQ"), "nor Debug");
}
