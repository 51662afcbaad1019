//! A test PKI made with rcgen (ECDSA P-256) and written as PEM files, plus rustls configs and
//! a client connector built from those files, for the TLS tests.
//!
//! [`Pki::new`] makes two unrelated CAs and these leaves, each with a known serial number:
//!
//! | field          | file               | names (SAN)                                   | issuer |
//! |----------------|--------------------|-----------------------------------------------|--------|
//! | `server`       | `server.pem`       | `localhost`, IP `127.0.0.1`, `a.example.com`  | CA     |
//! | `server_b`     | `server-b.pem`     | `b.example.com`                               | CA     |
//! | `default`      | `default.pem`      | `default.example.com`                         | CA     |
//! | `client`       | `client.pem`       | URI `spiffe://cluster.local/ns/default/sa/client`, `client.local` | CA |
//! | `other_client` | `other-client.pem` | URI `spiffe://other.local/ns/default/sa/client`, `client.local`   | other CA |
//!
//! Keys are `<name>-key.pem` (PKCS#8). The CA certificates are `ca.pem` (`mosn-test-ca`) and
//! `other-ca.pem` (`mosn-other-ca`). Every file is written to a temporary name and renamed,
//! so a watcher never reads half a file; [`Pki::reissue_server`] uses the same to rotate
//! the server certificate in place.
//!
//! Serials are printed as OpenSSL prints them (`openssl x509 -noout -serial`): upper-case
//! hex, no separators.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The main CA's common name.
pub const CA_NAME: &str = "mosn-test-ca";
/// The unrelated CA's common name.
pub const OTHER_CA_NAME: &str = "mosn-other-ca";
/// The SPIFFE ID of [`Pki::client`].
pub const CLIENT_SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/client";
/// The SPIFFE ID of [`Pki::other_client`].
pub const OTHER_CLIENT_SPIFFE: &str = "spiffe://other.local/ns/default/sa/client";

/// Serial numbers: "MOSN" then a counter, so the high bit is clear and OpenSSL prints all
/// 16 hex digits.
const SERIAL_BASE: u64 = 0x4D4F_534E_0000_0000;
/// The first serial [`Pki::reissue_server`] hands out.
const FIRST_REISSUE: u64 = 0x100;

/// One issued certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// As `openssl x509 -noout -serial` prints it (`4D4F534E00000001`).
    pub serial: String,
    /// The SANs, in the certificate's order (`spiffe://...` for a URI, IPs as text).
    pub names: Vec<String>,
}

/// A test PKI in a directory (see the module doc).
pub struct Pki {
    pub dir: PathBuf,
    /// `ca.pem`: the CA every leaf but `other_client` chains to.
    pub ca: PathBuf,
    /// `other-ca.pem`: an unrelated CA.
    pub other_ca: PathBuf,
    pub server: Leaf,
    pub server_b: Leaf,
    pub default: Leaf,
    pub client: Leaf,
    pub other_client: Leaf,
    /// The CAs' serials.
    pub ca_serial: String,
    pub other_ca_serial: String,
    issuer: Issuer<'static, KeyPair>,
    server_key: KeyPair,
    next_serial: u64,
}

impl Pki {
    /// Makes the CAs and leaves and writes them under `dir` (created if missing).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create the PKI directory");
        let (ca, ca_serial) = make_ca(dir, "ca", CA_NAME, 0xCA);
        let (other, other_ca_serial) = make_ca(dir, "other-ca", OTHER_CA_NAME, 0xCB);
        let server_key = key();
        let server = issue(
            &ca,
            &server_key,
            dir,
            "server",
            &["localhost", "127.0.0.1", "a.example.com"],
            Use::Server,
            1,
        );
        let issue_new = |ca: &Issuer<'static, KeyPair>, name, sans: &[&str], usage, n| {
            issue(ca, &key(), dir, name, sans, usage, n)
        };
        let server_b = issue_new(&ca, "server-b", &["b.example.com"], Use::Server, 2);
        let default = issue_new(&ca, "default", &["default.example.com"], Use::Server, 3);
        let client = issue_new(
            &ca,
            "client",
            &[CLIENT_SPIFFE, "client.local"],
            Use::Client,
            4,
        );
        let other_client = issue_new(
            &other,
            "other-client",
            &[OTHER_CLIENT_SPIFFE, "client.local"],
            Use::Client,
            5,
        );
        Pki {
            dir: dir.to_owned(),
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server,
            server_b,
            default,
            client,
            other_client,
            ca_serial,
            other_ca_serial,
            issuer: ca,
            server_key,
            next_serial: FIRST_REISSUE,
        }
    }

    /// Re-issues the server certificate (same names) with a new serial, and with a new key
    /// if `new_key`, writing over `server.pem` (and `server-key.pem`). Each file is replaced
    /// by a rename; with a new key the key goes first, so between the two renames the files
    /// do not match (a reloader must check the pair). Returns the new serial, also in
    /// `self.server.serial`.
    pub fn reissue_server(&mut self, new_key: bool) -> String {
        if new_key {
            self.server_key = key();
        }
        let names: Vec<&str> = self.server.names.iter().map(String::as_str).collect();
        let n = self.next_serial;
        self.next_serial += 1;
        self.server = issue(
            &self.issuer,
            &self.server_key,
            &self.dir,
            "server",
            &names,
            Use::Server,
            n,
        );
        self.server.serial.clone()
    }

    /// The leaf a server presents for `name`: `b.example.com` → `server_b`,
    /// `default.example.com` → `default`, anything else → `server`.
    pub fn leaf_for(&self, name: &str) -> &Leaf {
        match name {
            "b.example.com" => &self.server_b,
            "default.example.com" => &self.default,
            _ => &self.server,
        }
    }
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key")
}

fn serial(n: u64) -> (SerialNumber, String) {
    let v = SERIAL_BASE | n;
    (SerialNumber::from(v), format!("{v:016X}"))
}

/// A self-signed CA written as `<file>.pem`; its key stays in memory.
fn make_ca(dir: &Path, file: &str, cn: &str, n: u64) -> (Issuer<'static, KeyPair>, String) {
    let key = key();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "mosn-rs tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (sn, hex) = serial(n);
    params.serial_number = Some(sn);
    let cert = params.self_signed(&key).expect("self-sign a CA");
    write_atomic(&dir.join(format!("{file}.pem")), cert.pem().as_bytes());
    (Issuer::new(params, key), hex)
}

#[derive(Clone, Copy)]
enum Use {
    Server,
    Client,
}

/// A leaf for `sans` (URIs by their scheme, IPs by parsing, the rest DNS names) signed by
/// `ca`, written as `<file>.pem` and `<file>-key.pem`.
fn issue(
    ca: &Issuer<'static, KeyPair>,
    key: &KeyPair,
    dir: &Path,
    file: &str,
    sans: &[&str],
    usage: Use,
    n: u64,
) -> Leaf {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cn = sans.iter().find(|s| !s.contains("://")).unwrap_or(&sans[0]);
    params.distinguished_name.push(DnType::CommonName, *cn);
    params.subject_alt_names = sans
        .iter()
        .map(|s| {
            if s.contains("://") {
                SanType::URI((*s).try_into().expect("an IA5 URI"))
            } else if let Ok(ip) = s.parse() {
                SanType::IpAddress(ip)
            } else {
                SanType::DnsName((*s).try_into().expect("an IA5 DNS name"))
            }
        })
        .collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let (sn, hex) = serial(n);
    params.serial_number = Some(sn);
    let cert = params.signed_by(key, ca).expect("sign a leaf");
    let (cert_path, key_path) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}-key.pem")),
    );
    write_atomic(&key_path, key.serialize_pem().as_bytes());
    write_atomic(&cert_path, cert.pem().as_bytes());
    Leaf {
        cert: cert_path,
        key: key_path,
        serial: hex,
        names: sans.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Writes `path` by writing a temporary file beside it and renaming it over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------
// rustls configs from the files
// ---------------------------------------------------------------------------------------

/// The ring provider (the only one the workspace builds).
#[expect(
    deprecated,
    reason = "ring is the workspace's only provider (aws-lc-rs needs cmake under sanitizers); \
              rustls 0.23.48 deprecates it for lacking post-quantum key exchange, which these \
              tests do not need"
)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("read certificates from {}: {e}", path.display()))
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("read a key from {}: {e}", path.display()))
}

/// A root store holding the certificates of `ca`.
pub fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca) {
        roots.add(c).expect("a CA certificate rustls accepts");
    }
    Arc::new(roots)
}

fn alpn_list(alpn: &[&str]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// A server config presenting `leaf` (read from its files now) with these ALPN protocols;
/// with `client_ca`, client certificates chaining to it are required.
pub fn server_config(leaf: &Leaf, alpn: &[&str], client_ca: Option<&Path>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(load_certs(&leaf.cert), load_key(&leaf.key))
        .expect("a certificate and key that match");
    config.alpn_protocols = alpn_list(alpn);
    Arc::new(config)
}

/// A client config trusting `ca`, offering these ALPN protocols, presenting `client` if given.
pub fn client_config(ca: &Path, client: Option<&Leaf>, alpn: &[&str]) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots(ca));
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(load_certs(&leaf.cert), load_key(&leaf.key))
            .expect("a client certificate and key that match"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn_list(alpn);
    Arc::new(config)
}

/// Connects to `addr` and runs a TLS handshake with SNI (and verified name) `server_name`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// A certificate's serial as OpenSSL prints it (upper-case hex, no leading zero byte).
pub fn cert_serial(cert: &CertificateDer<'_>) -> String {
    let (_, x) = x509_parser::parse_x509_certificate(cert).expect("a DER certificate");
    x.raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A certificate's SANs in order: DNS names and URIs as text, IPs formatted.
pub fn cert_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let (_, x) = x509_parser::parse_x509_certificate(cert).expect("a DER certificate");
    let Ok(Some(san)) = x.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) => Some((*s).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
