//! Shared test helpers: a throwaway PKI made with rcgen (ECDSA P-256) written to a temporary
//! directory, contexts, loopback TCP pairs, and what a connection says about its peer.

mod handshake;
mod mtls;
mod reload;
mod resume;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ClientTls, HandshakeError, ServerTls, TlsStats, install_provider};
use crate::config::tls::{DEFAULT_HANDSHAKE_TIMEOUT, PemSource, TlsContext, TlsVersion};
use crate::metrics::{Sample, SampleSource};
use crate::network::Conn;

/// A context with every field at its default (no files).
pub(crate) fn base_ctx() -> TlsContext {
    TlsContext {
        cert_chain: None,
        private_key: None,
        ca_cert: None,
        verify_client: false,
        require_client_cert: false,
        server_name: None,
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        cipher_suites: Vec::new(),
        ecdh_curves: Vec::new(),
        alpn: Vec::new(),
        insecure_skip: false,
        match_subject_alt_names: Vec::new(),
        session_ticket_keys: Vec::new(),
        handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A CA and a directory for its certificates; the directory goes when this is dropped.
pub(crate) struct Pki {
    pub dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_file: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn san(s: &str) -> SanType {
    if let Ok(ip) = s.parse::<IpAddr>() {
        SanType::IpAddress(ip)
    } else if s.contains("://") {
        SanType::URI(s.try_into().unwrap())
    } else {
        SanType::DnsName(s.try_into().unwrap())
    }
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        install_provider();
        let dir = std::env::temp_dir().join(format!(
            "mosn-tls-test-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("mosn test CA {tag}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            dir,
            ca_params,
            ca_key,
            ca_file,
        }
    }

    /// A leaf signed by this CA, with these SANs (DNS names, `scheme://` URIs, IPs) and
    /// serial: (certificate PEM, key PEM). `edit` may change anything else.
    pub fn leaf_with(
        &self,
        sans: &[&str],
        serial: u64,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("leaf {serial}"));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut params);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// [`Pki::leaf_with`] written to `<name>.crt` / `<name>.key`.
    pub fn leaf_files(&self, name: &str, sans: &[&str], serial: u64) -> (PathBuf, PathBuf) {
        let (cert, key) = self.leaf_with(sans, serial, |_| {});
        (
            self.write(&format!("{name}.crt"), cert),
            self.write(&format!("{name}.key"), key),
        )
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.join(name);
        // Write then rename, as a certificate manager does: the watcher never sees half a file.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// A server context serving `<name>.crt` / `<name>.key` (made with these SANs, serial).
    pub fn server_ctx(&self, name: &str, sans: &[&str], serial: u64) -> TlsContext {
        let (cert, key) = self.leaf_files(name, sans, serial);
        TlsContext {
            cert_chain: Some(PemSource::File(cert)),
            private_key: Some(PemSource::File(key)),
            ..base_ctx()
        }
    }

    /// A client context trusting this CA.
    pub fn client_ctx(&self) -> TlsContext {
        TlsContext {
            ca_cert: Some(PemSource::File(self.ca_file.clone())),
            ..base_ctx()
        }
    }

    /// A client context trusting this CA and presenting a certificate with these SANs.
    pub fn mtls_client_ctx(&self, name: &str, sans: &[&str], serial: u64) -> TlsContext {
        let (cert, key) = self.leaf_files(name, sans, serial);
        TlsContext {
            cert_chain: Some(PemSource::File(cert)),
            private_key: Some(PemSource::File(key)),
            ..self.client_ctx()
        }
    }
}

pub(crate) fn file(p: &Path) -> Option<PemSource> {
    Some(PemSource::File(p.to_path_buf()))
}

pub(crate) fn server(contexts: &[TlsContext]) -> (Arc<ServerTls>, Arc<TlsStats>) {
    let stats = TlsStats::new();
    let s = ServerTls::new("l1", contexts, stats.clone()).unwrap();
    (s, stats)
}

pub(crate) fn client(ctx: &TlsContext) -> Arc<ClientTls> {
    ClientTls::new("c1", ctx, TlsStats::new()).unwrap()
}

/// A connected loopback pair: (client side, server side).
pub(crate) async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), s.unwrap().0)
}

pub(crate) type Outcome = (Result<Conn, HandshakeError>, io::Result<Conn>);

/// Both handshakes over a fresh loopback pair: (server side, client side).
pub(crate) async fn handshake(
    server: &ServerTls,
    client: &ClientTls,
    host: Option<&str>,
) -> Outcome {
    let (c, s) = tcp_pair().await;
    let ip = c.peer_addr().unwrap().ip();
    tokio::join!(server.accept(s), client.connect(c, host, ip))
}

/// Both handshakes succeed, then one byte each way (so the client has read the session tickets
/// that precede it): (server conn, client conn).
pub(crate) async fn connect_ok(
    server: &ServerTls,
    client: &ClientTls,
    host: Option<&str>,
) -> (Conn, Conn) {
    let (s, c) = handshake(server, client, host).await;
    let (mut s, mut c) = (s.expect("server handshake"), c.expect("client handshake"));
    let mut b = [0u8; 1];
    s.write_all(b"s").await.unwrap();
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"s");
    c.write_all(b"c").await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"c");
    (s, c)
}

fn client_session(conn: &Conn) -> &rustls::ClientConnection {
    match conn {
        Conn::Tls { stream, .. } => match stream.as_ref() {
            tokio_rustls::TlsStream::Client(s) => s.get_ref().1,
            tokio_rustls::TlsStream::Server(_) => panic!("a server connection"),
        },
        Conn::Tcp(_) => panic!("not TLS"),
    }
}

/// The serial (decimal) of the certificate the server presented, seen from the client.
pub(crate) fn peer_serial(conn: &Conn) -> String {
    let chain = client_session(conn)
        .peer_certificates()
        .expect("server certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    cert.tbs_certificate.serial.to_string()
}

pub(crate) fn resumed(conn: &Conn) -> bool {
    client_session(conn).handshake_kind() == Some(HandshakeKind::Resumed)
}

pub(crate) fn version(conn: &Conn) -> Option<rustls::ProtocolVersion> {
    client_session(conn).protocol_version()
}

/// The value of the sample `name` whose labels include every pair of `labels`.
pub(crate) fn sample(stats: &TlsStats, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let samples: Vec<Sample> = stats.samples();
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

/// The server's error reason, when the server side failed.
pub(crate) fn server_reason(outcome: &Outcome) -> &'static str {
    match &outcome.0 {
        Ok(_) => panic!("the server accepted"),
        Err(e) => e.reason,
    }
}

/// The client's error reason, when the client side failed.
pub(crate) fn client_reason(outcome: &Outcome) -> &'static str {
    match &outcome.1 {
        Ok(_) => panic!("the client connected"),
        Err(e) => {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<HandshakeError>())
                .expect("a HandshakeError inside")
                .reason
        }
    }
}
