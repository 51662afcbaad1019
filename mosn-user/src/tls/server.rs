//! A listener filter chain's TLS: rustls `ServerConfig`s built from its contexts, the
//! handshake (bounded, classified, counted) and reloads that swap the configs for new
//! handshakes only.
//!
//! One `ServerConfig` per context of the set, all sharing one SNI certificate resolver, one
//! session cache and one ticketer. The ClientHello is read first, its SNI picks the context
//! (the same rule as the resolver: see [`super::sni`]), and that context's config finishes the
//! handshake, so contexts of a set may differ in client verification, ALPN or versions.
//! Set-wide settings come from the first context: `handshake_timeout`, `session_ticket_keys`
//! and [`ServerTls::alpn`].

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{
    Acceptor, ProducesTickets, ServerConfig, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::{HandshakeKind, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info, warn};

use super::error::{HandshakeError, Phase, Reason, TlsError, classify};
use super::load::{self, LoadedCert, Reader};
use super::sni::CertSet;
use super::stats::{OwnerStats, Side, TlsStats};
use super::ticket::FileTicketer;
use super::{params, verify};
use crate::config::tls::{PemSource, TlsContext};
use crate::network::Conn;

/// TLS 1.2 session-id cache size (sessions of clients that do not take tickets).
const SESSION_CACHE_SIZE: usize = 4096;

/// What was read from the files, before anything is built.
struct Material {
    digest: Vec<u8>,
    certs: Vec<LoadedCert>,
    /// Per context: the client CA, when it verifies clients.
    roots: Vec<Option<Arc<RootCertStore>>>,
    /// The first context's ticket key files (path, contents), if any.
    ticket_keys: Vec<(String, Vec<u8>)>,
}

/// The configs in use; replaced whole by a reload.
struct Snapshot {
    digest: Vec<u8>,
    certs: Arc<CertSet>,
    configs: Vec<Arc<ServerConfig>>,
    /// (cert label, notAfter) per context, for the expiry gauge.
    expiry: Vec<(String, i64)>,
}

/// One listener filter chain's TLS termination.
pub struct ServerTls {
    listener: String,
    contexts: Vec<TlsContext>,
    current: ArcSwap<Snapshot>,
    /// Serializes reloads (the watcher and an admin-triggered one).
    reload_lock: Mutex<()>,
    /// rustls' rotating ticketer, kept across reloads; `None` when key files are configured.
    default_ticketer: Option<Arc<dyn ProducesTickets>>,
    sessions: Arc<ServerSessionMemoryCache>,
    alpn: Vec<Vec<u8>>,
    handshake_timeout: Duration,
    stats: Arc<OwnerStats>,
    holder: u64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("listener", &self.listener)
            .field("contexts", &self.contexts.len())
            .finish()
    }
}

/// Whether context `ctx` verifies client certificates.
fn verifies_clients(ctx: &TlsContext) -> bool {
    ctx.verify_client || ctx.require_client_cert
}

fn read_material(contexts: &[TlsContext]) -> Result<Material, TlsError> {
    let mut reader = Reader::new();
    let mut certs = Vec::with_capacity(contexts.len());
    let mut roots = Vec::with_capacity(contexts.len());
    for (i, ctx) in contexts.iter().enumerate() {
        certs.push(load::load_pair(&mut reader, ctx, i)?);
        roots.push(match (&ctx.ca_cert, verifies_clients(ctx)) {
            (Some(src), true) => Some(load::roots(&mut reader, src, i)?),
            (None, true) => {
                return Err(TlsError::Setting {
                    field: "ca_cert",
                    reason: format!(
                        "context {i} verifies client certificates but has no ca_cert to verify them with"
                    ),
                });
            }
            (_, false) => None,
        });
    }
    let mut ticket_keys = Vec::new();
    for path in &contexts[0].session_ticket_keys {
        let bytes = reader.read_path("session_ticket_keys", path)?;
        ticket_keys.push((path.display().to_string(), bytes));
    }
    Ok(Material {
        digest: reader.finish(),
        certs,
        roots,
        ticket_keys,
    })
}

/// The configs of every context from what was read.
fn build(
    contexts: &[TlsContext],
    default_ticketer: Option<&Arc<dyn ProducesTickets>>,
    sessions: &Arc<ServerSessionMemoryCache>,
    material: Material,
) -> Result<Snapshot, TlsError> {
    let server_names: Vec<_> = contexts.iter().map(|c| c.server_name.clone()).collect();
    let certs = Arc::new(CertSet::new(&material.certs, &server_names));
    let ticketer: Arc<dyn ProducesTickets> = match default_ticketer {
        Some(t) => t.clone(),
        None => Arc::new(FileTicketer::new(&material.ticket_keys)?),
    };
    let mut configs = Vec::with_capacity(contexts.len());
    for (ctx, roots) in contexts.iter().zip(material.roots) {
        let provider = params::provider(ctx)?;
        let versions = params::versions(ctx)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|error| TlsError::Rustls {
                what: "min_version/max_version/cipher_suites",
                error,
            })?;
        let builder = match roots {
            Some(roots) => {
                let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider);
                if !ctx.require_client_cert {
                    b = b.allow_unauthenticated();
                }
                let webpki = b.build().map_err(|e| TlsError::Setting {
                    field: "ca_cert",
                    reason: format!("cannot verify clients with it: {e}"),
                })?;
                let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                    if ctx.match_subject_alt_names.is_empty() {
                        webpki
                    } else {
                        Arc::new(verify::SanClientVerifier {
                            inner: webpki,
                            matchers: ctx.match_subject_alt_names.clone(),
                        })
                    };
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certs.clone());
        config.alpn_protocols = ctx.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.session_storage = sessions.clone();
        config.ticketer = ticketer.clone();
        configs.push(Arc::new(config));
    }
    let expiry = material
        .certs
        .iter()
        .map(|c| (c.label.clone(), c.not_after))
        .collect();
    Ok(Snapshot {
        digest: material.digest,
        certs,
        configs,
        expiry,
    })
}

impl ServerTls {
    /// Builds the chain's TLS from its contexts (its `tls_context`, or every context of its
    /// `tls_context_set`; the first is the default certificate), reading every file now.
    pub fn new(
        listener: &str,
        contexts: &[TlsContext],
        stats: Arc<TlsStats>,
    ) -> Result<Arc<ServerTls>, TlsError> {
        let Some(first) = contexts.first() else {
            return Err(TlsError::Setting {
                field: "tls_context",
                reason: "a TLS filter chain needs at least one context".into(),
            });
        };
        let default_ticketer = if first.session_ticket_keys.is_empty() {
            let t = rustls::crypto::ring::Ticketer::new().map_err(|error| TlsError::Rustls {
                what: "session ticketer",
                error,
            })?;
            Some(t)
        } else {
            None
        };
        let sessions = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let snapshot = build(
            contexts,
            default_ticketer.as_ref(),
            &sessions,
            read_material(contexts)?,
        )?;
        let (stats, holder) = stats.owner(Side::Listener, listener);
        stats.set_certs(holder, snapshot.expiry.clone());
        Ok(Arc::new(ServerTls {
            listener: listener.to_string(),
            contexts: contexts.to_vec(),
            current: ArcSwap::from_pointee(snapshot),
            reload_lock: Mutex::new(()),
            default_ticketer,
            sessions,
            alpn: first.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            handshake_timeout: first.handshake_timeout,
            stats,
            holder,
        }))
    }

    /// The listener this chain belongs to.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// ALPN protocols accepted (the first context's), in preference order.
    pub fn alpn(&self) -> &[Vec<u8>] {
        &self.alpn
    }

    /// The handshake, bounded by the first context's `handshake_timeout`; counts the outcome.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Conn, HandshakeError> {
        let outcome = match tokio::time::timeout(self.handshake_timeout, self.handshake(tcp)).await
        {
            Ok(r) => r,
            Err(_) => Err((
                Reason::Timeout,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "TLS handshake not done within {:?} (handshake_timeout)",
                        self.handshake_timeout
                    ),
                ),
            )),
        };
        match outcome {
            Ok((conn, resumed)) => {
                self.stats.handshake(resumed);
                Ok(conn)
            }
            Err((reason, error)) => {
                self.stats.error(reason);
                debug!(listener = %self.listener, %reason, %error, "downstream TLS handshake failed");
                Err(HandshakeError {
                    reason: reason.as_str(),
                    error,
                })
            }
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<(Conn, bool), (Reason, io::Error)> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
            .await
            .map_err(|e| (classify(&e, Phase::Hello), e))?;
        let config = {
            let snapshot = self.current.load();
            let i = snapshot.certs.pick(start.client_hello().server_name());
            snapshot.configs[i].clone()
        };
        let stream = start
            .into_stream(config)
            .await
            .map_err(|e| (classify(&e, Phase::Handshake), e))?;
        let session = stream.get_ref().1;
        let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
        let identity = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(verify::identity);
        let conn = Conn::tls(tokio_rustls::TlsStream::Server(stream), identity);
        Ok((conn, resumed))
    }

    /// Re-reads every file. Nothing changed: `Ok(false)`. A new valid set: swapped in for new
    /// handshakes (established connections keep theirs), `Ok(true)`. Anything unusable (a
    /// missing file, a key that does not match its certificate, a bad ticket key): the old
    /// configs stay, the refusal is logged and counted, and the error returned.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let built = read_material(&self.contexts).and_then(|m| {
            if m.digest == self.current.load().digest {
                return Ok(None);
            }
            let ticketer = self.default_ticketer.as_ref();
            build(&self.contexts, ticketer, &self.sessions, m).map(Some)
        });
        match built {
            Ok(None) => Ok(false),
            Ok(Some(snapshot)) => {
                self.stats.set_certs(self.holder, snapshot.expiry.clone());
                self.current.store(Arc::new(snapshot));
                self.stats.reloaded();
                info!(listener = %self.listener, "TLS certificates reloaded");
                Ok(true)
            }
            Err(error) => {
                self.stats.reload_error();
                warn!(listener = %self.listener, %error, "TLS reload refused; the previous certificates stay in use");
                Err(error)
            }
        }
    }

    /// Every file a reload reads (what the watcher polls).
    pub(crate) fn watched_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut add = |src: &Option<PemSource>| {
            if let Some(PemSource::File(p)) = src {
                out.push(p.clone());
            }
        };
        for ctx in &self.contexts {
            add(&ctx.cert_chain);
            add(&ctx.private_key);
            if verifies_clients(ctx) {
                add(&ctx.ca_cert);
            }
        }
        out.extend(self.contexts[0].session_ticket_keys.iter().cloned());
        out.sort();
        out.dedup();
        out
    }
}

impl Drop for ServerTls {
    fn drop(&mut self) {
        self.stats.drop_certs(self.holder);
    }
}
