//! TLS (MOSN's `pkg/mtls`): validated `tls_context`s turned into rustls configs, and the
//! handshakes on both sides.
//!
//! - [`ServerTls`]: one per listener filter chain. Certificates picked by SNI over a
//!   `tls_context_set`, client certificates verified (and matched against
//!   `match_subject_alt_names`), session resumption by tickets (rustls' rotating keys, or
//!   Envoy-format key files) and a TLS 1.2 session cache, files watched and reloaded.
//! - [`ClientTls`]: one per cluster with a `tls_context`. Server verification (the CA, else the
//!   system bundle; or `insecure_skip`), SNI, client certificate, ALPN, resumption.
//! - [`TlsStats`]: the handshake, reload and certificate-expiry metrics of both (see
//!   [`stats`] for names and labels).
//!
//! Only the ring provider is used, passed explicitly to every builder; [`install_provider`]
//! also makes it the process default for code that asks rustls for one.

mod client;
mod error;
mod load;
mod params;
mod server;
mod sni;
pub mod stats;
mod ticket;
mod verify;
mod watch;

#[cfg(test)]
mod tests;

pub use client::ClientTls;
pub use error::{HandshakeError, Reason, TlsError};
pub use server::ServerTls;
pub use stats::TlsStats;
pub use watch::WATCH_INTERVAL;

/// Installs the ring provider as the process default, once (idempotent: a provider already
/// installed, ours or another, is left alone).
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a default is already installed; every builder here names ring explicitly anyway.
        let _ = params::ring_provider().install_default();
    });
}
