//! TLS counters, read at scrape time through [`SampleSource`].
//!
//! Exposed (names as the admin server shows them):
//! - `mosn_tls_handshakes_total{listener, resumed="true"|"false"}`
//! - `mosn_tls_handshake_errors_total{listener, reason}` (every [`Reason`], zeros included)
//! - `mosn_tls_upstream_handshakes_total{cluster, resumed}`
//! - `mosn_tls_upstream_handshake_errors_total{cluster, reason}`
//! - `mosn_tls_reloads_total{listener}`: reloads that changed the served config
//! - `mosn_tls_reload_errors_total{listener}`: reloads refused (the old config stays)
//! - `mosn_tls_cert_expiry_seconds{listener|cluster, cert}`: seconds until the certificate's
//!   notAfter (0 once past); `cert` is the cert_chain path or `inline:<context index>`.
//!
//! The data path only bumps atomics of an [`OwnerStats`] it holds; nothing is looked up per
//! handshake.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::Reason;
use crate::metrics::{Sample, SampleKind, SampleSource};

/// Which side a set of counters belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    /// A listener's filter chain (downstream handshakes, we are the server).
    Listener,
    /// A cluster (upstream handshakes, we are the client).
    Cluster,
}

impl Side {
    const fn label(self) -> &'static str {
        match self {
            Side::Listener => "listener",
            Side::Cluster => "cluster",
        }
    }
}

struct CertExpiry {
    /// The [`super::ServerTls`] / [`super::ClientTls`] that loaded it.
    holder: u64,
    label: String,
    not_after: i64,
}

/// The counters of one listener or cluster (shared by every filter chain of a listener).
pub(crate) struct OwnerStats {
    side: Side,
    name: String,
    full: AtomicU64,
    resumed: AtomicU64,
    errors: [AtomicU64; Reason::ALL.len()],
    reloads: AtomicU64,
    reload_errors: AtomicU64,
    certs: Mutex<Vec<CertExpiry>>,
}

impl OwnerStats {
    pub fn handshake(&self, resumed: bool) {
        let c = if resumed { &self.resumed } else { &self.full };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, reason: Reason) {
        self.errors[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload_error(&self) {
        self.reload_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the certificates `holder` serves: (label, notAfter in Unix seconds).
    pub fn set_certs(&self, holder: u64, certs: impl IntoIterator<Item = (String, i64)>) {
        let mut all = self.certs.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|c| c.holder != holder);
        all.extend(certs.into_iter().map(|(label, not_after)| CertExpiry {
            holder,
            label,
            not_after,
        }));
    }

    /// `holder` is gone: its certificates are no longer reported.
    pub fn drop_certs(&self, holder: u64) {
        self.set_certs(holder, []);
    }
}

/// Every TLS counter of the process: one per daemon, shared by all listeners and clusters.
/// Register it with `Metrics::add_collector(stats.source())`.
#[derive(Default)]
pub struct TlsStats {
    owners: Mutex<Vec<Arc<OwnerStats>>>,
    next_holder: AtomicU64,
}

impl std::fmt::Debug for TlsStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("TlsStats").field("owners", &n).finish()
    }
}

impl TlsStats {
    pub fn new() -> Arc<TlsStats> {
        Arc::new(TlsStats::default())
    }

    /// This as a boxed source for `Metrics::add_collector`.
    pub fn source(self: &Arc<Self>) -> Box<dyn SampleSource> {
        let this = self.clone();
        Box::new(move || this.samples())
    }

    /// The counters of `name` (created on first use) and a fresh holder id for its
    /// certificates.
    pub(crate) fn owner(&self, side: Side, name: &str) -> (Arc<OwnerStats>, u64) {
        let holder = self.next_holder.fetch_add(1, Ordering::Relaxed);
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = owners.iter().find(|o| o.side == side && o.name == name) {
            return (o.clone(), holder);
        }
        let o = Arc::new(OwnerStats {
            side,
            name: name.to_string(),
            full: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
            certs: Mutex::new(Vec::new()),
        });
        owners.push(o.clone());
        (o, holder)
    }
}

fn counter(
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    value: u64,
) -> Sample {
    Sample {
        name,
        help,
        kind: SampleKind::Counter,
        labels,
        value,
    }
}

impl SampleSource for TlsStats {
    fn samples(&self) -> Vec<Sample> {
        let owners = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out = Vec::new();
        // (side, owner, cert) -> earliest notAfter: two chains of a listener may serve one file.
        let mut expiry: BTreeMap<(Side, String, String), i64> = BTreeMap::new();
        for o in &owners {
            let who = o.side.label();
            let (hs, hs_help, err, err_help) = match o.side {
                Side::Listener => (
                    "tls_handshakes",
                    "Downstream TLS handshakes completed, by whether the session was resumed.",
                    "tls_handshake_errors",
                    "Downstream TLS handshakes that failed, by reason.",
                ),
                Side::Cluster => (
                    "tls_upstream_handshakes",
                    "Upstream TLS handshakes completed, by whether the session was resumed.",
                    "tls_upstream_handshake_errors",
                    "Upstream TLS handshakes that failed, by reason.",
                ),
            };
            for (resumed, c) in [("false", &o.full), ("true", &o.resumed)] {
                let labels = vec![(who, o.name.clone()), ("resumed", resumed.to_string())];
                out.push(counter(hs, hs_help, labels, c.load(Ordering::Relaxed)));
            }
            for r in Reason::ALL {
                let labels = vec![(who, o.name.clone()), ("reason", r.as_str().to_string())];
                let v = o.errors[r.index()].load(Ordering::Relaxed);
                out.push(counter(err, err_help, labels, v));
            }
            if o.side == Side::Listener {
                out.push(counter(
                    "tls_reloads",
                    "Certificate/key/CA/ticket-key reloads that changed a listener's TLS config.",
                    vec![(who, o.name.clone())],
                    o.reloads.load(Ordering::Relaxed),
                ));
                out.push(counter(
                    "tls_reload_errors",
                    "TLS reloads refused (the previous config stays in use).",
                    vec![(who, o.name.clone())],
                    o.reload_errors.load(Ordering::Relaxed),
                ));
            }
            for c in o
                .certs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                let slot = expiry
                    .entry((o.side, o.name.clone(), c.label.clone()))
                    .or_insert(c.not_after);
                *slot = (*slot).min(c.not_after);
            }
        }
        for ((side, name, cert), not_after) in expiry {
            out.push(Sample {
                name: "tls_cert_expiry_seconds",
                help: "Seconds until the certificate's notAfter (0 once expired).",
                kind: SampleKind::Gauge,
                labels: vec![(side.label(), name), ("cert", cert)],
                value: u64::try_from(not_after.saturating_sub(now)).unwrap_or(0),
            });
        }
        out
    }
}
