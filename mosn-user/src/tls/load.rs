//! Reading certificates, keys, CAs and ticket keys (files or inline PEM) into rustls types,
//! and the few certificate fields we need (SANs, notAfter) through x509-parser.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ring::digest;
use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::error::TlsError;
use crate::config::tls::{PemSource, TlsContext};

/// Where a source is, for errors and the `cert` metric label: the path, or `inline:<index>`
/// (the context's index in its set) for PEM given in the config.
pub(crate) fn origin(src: &PemSource, index: usize) -> String {
    match src {
        PemSource::File(p) => p.display().to_string(),
        PemSource::Inline(_) => format!("inline:{index}"),
    }
}

/// Reads sources and hashes everything it read, so a reload can tell whether anything changed.
pub(crate) struct Reader {
    digest: digest::Context,
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            digest: digest::Context::new(&digest::SHA256),
        }
    }

    /// The PEM bytes of `src` (a file is read now).
    pub fn read(&mut self, field: &'static str, src: &PemSource) -> Result<Vec<u8>, TlsError> {
        let bytes = match src {
            PemSource::File(path) => return self.read_path(field, path),
            PemSource::Inline(text) => text.as_bytes().to_vec(),
        };
        self.feed(field, &bytes);
        Ok(bytes)
    }

    pub fn read_path(&mut self, field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| TlsError::Source {
            field,
            origin: path.display().to_string(),
            reason: format!("cannot read the file: {e}"),
        })?;
        self.feed(field, &bytes);
        Ok(bytes)
    }

    fn feed(&mut self, field: &str, bytes: &[u8]) {
        self.digest.update(field.as_bytes());
        self.digest.update(&(bytes.len() as u64).to_be_bytes());
        self.digest.update(bytes);
    }

    /// The hash of everything read, in order.
    pub fn finish(self) -> Vec<u8> {
        self.digest.finish().as_ref().to_vec()
    }
}

fn what(src_is_file: bool) -> &'static str {
    if src_is_file { "the file" } else { "the PEM" }
}

fn pem_error(field: &'static str, origin: &str, e: pem::Error) -> TlsError {
    TlsError::Source {
        field,
        origin: origin.to_string(),
        reason: format!("malformed PEM: {e}"),
    }
}

/// Every certificate of a PEM bundle, in order; none is an error.
pub(crate) fn parse_certs(
    field: &'static str,
    src: &PemSource,
    origin: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(field, origin, e))?;
    if certs.is_empty() {
        return Err(TlsError::Source {
            field,
            origin: origin.to_string(),
            reason: format!(
                "no certificate in {}",
                what(matches!(src, PemSource::File(_)))
            ),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM bundle (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn parse_key(
    src: &PemSource,
    origin: &str,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Source {
            field: "private_key",
            origin: origin.to_string(),
            reason: format!(
                "no private key in {}",
                what(matches!(src, PemSource::File(_)))
            ),
        },
        e => pem_error("private_key", origin, e),
    })
}

/// A root store of every certificate in `ca_cert`.
pub(crate) fn roots(
    reader: &mut Reader,
    src: &PemSource,
    index: usize,
) -> Result<Arc<RootCertStore>, TlsError> {
    let origin = origin(src, index);
    let pem = reader.read("ca_cert", src)?;
    let mut store = RootCertStore::empty();
    for cert in parse_certs("ca_cert", src, &origin, &pem)? {
        store.add(cert).map_err(|e| TlsError::Source {
            field: "ca_cert",
            origin: origin.clone(),
            reason: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}

/// A certificate chain and its key, ready to serve or present.
pub(crate) struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS SANs, lower case (`*.example.com` kept as is).
    pub dns_names: Vec<String>,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
    /// The `cert` metric label: the cert_chain path or `inline:<index>`.
    pub label: String,
}

/// Loads `cert_chain` + `private_key` of context `index` and checks that they belong together.
pub(crate) fn load_pair(
    reader: &mut Reader,
    ctx: &TlsContext,
    index: usize,
) -> Result<LoadedCert, TlsError> {
    let (Some(cert_src), Some(key_src)) = (&ctx.cert_chain, &ctx.private_key) else {
        return Err(TlsError::Setting {
            field: "cert_chain/private_key",
            reason: format!("context {index} needs both a certificate chain and its key"),
        });
    };
    let cert_origin = origin(cert_src, index);
    let key_origin = origin(key_src, index);
    let cert_pem = reader.read("cert_chain", cert_src)?;
    let key_pem = reader.read("private_key", key_src)?;
    let chain = parse_certs("cert_chain", cert_src, &cert_origin, &cert_pem)?;
    let info = cert_info(&chain[0]).map_err(|reason| TlsError::Source {
        field: "cert_chain",
        origin: cert_origin.clone(),
        reason,
    })?;
    let key = parse_key(key_src, &key_origin, &key_pem)?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Source {
            field: "private_key",
            origin: key_origin.clone(),
            reason: format!("unsupported or malformed key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::Source {
                field: "private_key",
                origin: key_origin,
                reason: format!("does not match the certificate in cert_chain {cert_origin}"),
            });
        }
        Err(e) => {
            return Err(TlsError::Source {
                field: "cert_chain",
                origin: cert_origin,
                reason: format!("unusable certificate: {e}"),
            });
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        dns_names: info.dns_names,
        not_after: info.not_after,
        label: cert_origin,
    })
}

/// What we read from a leaf certificate.
pub(crate) struct CertInfo {
    pub dns_names: Vec<String>,
    pub not_after: i64,
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("cannot parse the certificate: {e}"))
}

pub(crate) fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let cert = parse(der)?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                dns_names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        dns_names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A certificate's subject alt names as text: DNS names and URIs as written, IP addresses in
/// their usual notation (no `DNS:`/`URI:`/`IP:` prefixes).
pub(crate) fn sans(der: &[u8]) -> Result<Vec<String>, String> {
    let cert = parse(der)?;
    let mut out = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.push((*d).to_string()),
                GeneralName::URI(u) => out.push((*u).to_string()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        out.push(IpAddr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        out.push(IpAddr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
