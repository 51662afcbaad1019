//! A cluster's TLS origination: one rustls `ClientConfig` per cluster (so its in-memory
//! session store, keyed by server name, resumes sessions across every connection of the
//! cluster), the handshake (bounded, classified, counted).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, HandshakeKind, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::error::{HandshakeError, Phase, Reason, TlsError, classify};
use super::load::{self, Reader};
use super::stats::{OwnerStats, Side, TlsStats};
use super::{params, verify};
use crate::config::tls::TlsContext;
use crate::network::Conn;

/// Where the system CA bundle may be (Debian/Ubuntu/Alpine, Fedora/RHEL, others), used when a
/// cluster verifies servers without a `ca_cert`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    for path in SYSTEM_BUNDLES {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        let mut store = RootCertStore::empty();
        let (added, _) = store
            .add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if added > 0 {
            return Ok(Arc::new(store));
        }
    }
    Err(TlsError::Setting {
        field: "ca_cert",
        reason: format!(
            "not set, and no system CA bundle found ({}) to verify servers with",
            SYSTEM_BUNDLES.join(", ")
        ),
    })
}

/// The client certificate, presented whenever a server asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One cluster's TLS.
pub struct ClientTls {
    cluster: String,
    config: Arc<ClientConfig>,
    /// `server_name` of the context: the SNI sent and the name verified for every host.
    server_name: Option<ServerName<'static>>,
    h2: bool,
    handshake_timeout: Duration,
    stats: Arc<OwnerStats>,
    holder: u64,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("cluster", &self.cluster)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Builds the cluster's config, reading its CA (else the system bundle) and client
    /// certificate now.
    pub fn new(
        cluster: &str,
        ctx: &TlsContext,
        stats: Arc<TlsStats>,
    ) -> Result<Arc<ClientTls>, TlsError> {
        let provider = params::provider(ctx)?;
        let versions = params::versions(ctx)?;
        let mut reader = Reader::new();
        let webpki: Arc<dyn ServerCertVerifier> = if ctx.insecure_skip {
            warn!(cluster = %cluster, "tls_context insecure_skip: this cluster's server certificates are NOT verified");
            Arc::new(verify::InsecureServerVerifier {
                provider: provider.clone(),
            })
        } else {
            let roots = match &ctx.ca_cert {
                Some(src) => load::roots(&mut reader, src, 0)?,
                None => system_roots()?,
            };
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsError::Setting {
                    field: "ca_cert",
                    reason: format!("cannot verify servers with it: {e}"),
                })?
        };
        let verifier: Arc<dyn ServerCertVerifier> = if ctx.match_subject_alt_names.is_empty() {
            webpki
        } else {
            Arc::new(verify::SanServerVerifier {
                inner: webpki,
                matchers: ctx.match_subject_alt_names.clone(),
            })
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|error| TlsError::Rustls {
                what: "min_version/max_version/cipher_suites",
                error,
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (mut config, expiry) = if ctx.cert_chain.is_some() || ctx.private_key.is_some() {
            let cert = load::load_pair(&mut reader, ctx, 0)?;
            let config = builder.with_client_cert_resolver(Arc::new(ClientCert(cert.key)));
            (config, vec![(cert.label, cert.not_after)])
        } else {
            (builder.with_no_client_auth(), Vec::new())
        };
        config.alpn_protocols = ctx.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // `config.resumption` stays rustls' default: an in-memory store of 256 server names.
        let server_name = match &ctx.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone()).map_err(|e| TlsError::Setting {
                    field: "server_name",
                    reason: format!("{n}: {e}"),
                })?,
            ),
            None => None,
        };
        let (stats, holder) = stats.owner(Side::Cluster, cluster);
        stats.set_certs(holder, expiry);
        Ok(Arc::new(ClientTls {
            cluster: cluster.to_string(),
            config: Arc::new(config),
            server_name,
            h2: ctx.alpn.iter().any(|p| p == "h2"),
            handshake_timeout: ctx.handshake_timeout,
            stats,
            holder,
        }))
    }

    /// Whether `h2` is among the ALPN protocols offered.
    pub fn offers_h2(&self) -> bool {
        self.h2
    }

    fn name_for(&self, host: Option<&str>, addr: IpAddr) -> io::Result<ServerName<'static>> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        match host {
            Some(h) => ServerName::try_from(h.to_string()).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("host {h:?}: {e}"))
            }),
            None => Ok(ServerName::IpAddress(addr.into())),
        }
    }

    /// The handshake over `tcp`, bounded by the context's `handshake_timeout`. The name sent
    /// (SNI) and verified: the context's `server_name`, else `host` (a configured hostname,
    /// without port), else the address (no SNI is sent for an address). A failure is counted
    /// and returned as an `io::Error` (same kind) wrapping a [`HandshakeError`].
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: Option<&str>,
        addr: IpAddr,
    ) -> io::Result<Conn> {
        let name = self
            .name_for(host, addr)
            .inspect_err(|_| self.stats.error(Reason::Other))?;
        let connector = TlsConnector::from(self.config.clone());
        let outcome = match tokio::time::timeout(
            self.handshake_timeout,
            connector.connect(name.clone(), tcp),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err((classify(&e, Phase::Handshake), e)),
            Err(_) => Err((
                Reason::Timeout,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not done within {:?}", self.handshake_timeout),
                ),
            )),
        };
        match outcome {
            Ok(stream) => {
                let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
                self.stats.handshake(resumed);
                Ok(Conn::tls(tokio_rustls::TlsStream::Client(stream), None))
            }
            Err((reason, error)) => {
                self.stats.error(reason);
                debug!(cluster = %self.cluster, server = ?name, %reason, %error, "upstream TLS handshake failed");
                Err(io::Error::new(
                    error.kind(),
                    HandshakeError {
                        reason: reason.as_str(),
                        error,
                    },
                ))
            }
        }
    }
}

impl Drop for ClientTls {
    fn drop(&mut self) {
        self.stats.drop_certs(self.holder);
    }
}
