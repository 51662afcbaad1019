//! What can go wrong: [`TlsError`] when turning config into rustls configs (names the field,
//! the file and the reason), [`HandshakeError`] and its [`Reason`] (the `reason` label of the
//! handshake error counters) when a handshake fails.

use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError, PeerIncompatible};

/// A `tls_context` that cannot be turned into a working rustls config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key, CA or ticket key (a file or inline PEM) that cannot be used, e.g.
    /// `cert_chain /x/y.pem: no certificate in the file`.
    #[error("{field} {origin}: {reason}")]
    Source {
        /// The config key (`cert_chain`, `private_key`, `ca_cert`, `session_ticket_keys`).
        field: &'static str,
        /// The file path, or `inline:<context index>` for PEM given in the config itself.
        origin: String,
        reason: String,
    },
    /// A setting that cannot be used (`cipher_suites`, `ecdh_curves`, versions, ...).
    #[error("{field}: {reason}")]
    Setting { field: &'static str, reason: String },
    /// rustls refused the assembled configuration.
    #[error("{what}: {error}")]
    Rustls {
        what: &'static str,
        error: rustls::Error,
    },
}

/// Why a handshake failed: the `reason` label of `mosn_tls_handshake_errors_total` and
/// `mosn_tls_upstream_handshake_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not done within `handshake_timeout`.
    Timeout,
    /// The peer does not speak TLS: the first bytes are not a TLS handshake record (plaintext
    /// HTTP, garbage), or a record rustls cannot parse.
    NotTls,
    /// The server requires a client certificate and the client sent none.
    NoClientCert,
    /// The peer's certificate was refused (unknown CA, expired, bad signature, wrong name),
    /// or the peer refused ours (its alert says so).
    BadCertificate,
    /// The certificate verified but none of its SANs matches `match_subject_alt_names`.
    SanMismatch,
    /// No protocol version in common.
    ProtocolVersion,
    /// No cipher suite, group or signature scheme in common.
    NoSharedCipher,
    /// The peer closed (or reset) the connection before the handshake finished.
    Closed,
    /// Another I/O error on the socket.
    Io,
    /// Anything else (the peer misbehaved, an unexpected alert, ...).
    Other,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 10] = [
        Reason::Timeout,
        Reason::NotTls,
        Reason::NoClientCert,
        Reason::BadCertificate,
        Reason::SanMismatch,
        Reason::ProtocolVersion,
        Reason::NoSharedCipher,
        Reason::Closed,
        Reason::Io,
        Reason::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::NotTls => "not_tls",
            Reason::NoClientCert => "no_client_cert",
            Reason::BadCertificate => "bad_certificate",
            Reason::SanMismatch => "san_mismatch",
            Reason::ProtocolVersion => "protocol_version",
            Reason::NoSharedCipher => "no_shared_cipher",
            Reason::Closed => "closed",
            Reason::Io => "io",
            Reason::Other => "other",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed handshake: why (the label value) and the error itself.
#[derive(Debug)]
pub struct HandshakeError {
    /// One of [`Reason::as_str`].
    pub reason: &'static str,
    pub error: io::Error,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake failed ({}): {}", self.reason, self.error)
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A peer certificate that verified but has no SAN matching `match_subject_alt_names`: carried
/// inside `CertificateError::Other` so the handshake error can be told apart.
#[derive(Debug)]
pub(crate) struct SanMismatch {
    pub sans: Vec<String>,
}

impl fmt::Display for SanMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no subject alt name of the peer certificate matches match_subject_alt_names (it has: {})",
            if self.sans.is_empty() {
                "none".to_string()
            } else {
                self.sans.join(", ")
            }
        )
    }
}

impl std::error::Error for SanMismatch {}

/// How far the handshake got when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the ClientHello (server side only): anything unparsable means "not TLS".
    Hello,
    /// After the ClientHello (server) or from the start (client).
    Handshake,
}

/// Classifies an error returned by tokio-rustls (an `io::Error` that may wrap a
/// `rustls::Error`).
pub(crate) fn classify(e: &io::Error, phase: Phase) -> Reason {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return classify_rustls(tls, phase);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Reason::Closed,
        io::ErrorKind::TimedOut => Reason::Timeout,
        // The ClientHello reader's own complaints (e.g. its buffer filled with junk).
        io::ErrorKind::InvalidData if phase == Phase::Hello => Reason::NotTls,
        _ => Reason::Io,
    }
}

fn classify_rustls(e: &rustls::Error, phase: Phase) -> Reason {
    use rustls::Error as E;
    match e {
        E::InvalidMessage(_) => Reason::NotTls,
        E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerMisbehaved(_)
            if phase == Phase::Hello =>
        {
            Reason::NotTls
        }
        E::NoCertificatesPresented => Reason::NoClientCert,
        E::InvalidCertificate(CertificateError::Other(other))
            if other.0.downcast_ref::<SanMismatch>().is_some() =>
        {
            Reason::SanMismatch
        }
        E::InvalidCertificate(_) | E::InvalidCertRevocationList(_) => Reason::BadCertificate,
        E::PeerIncompatible(p) => classify_incompatible(p),
        E::AlertReceived(alert) => classify_alert(*alert),
        _ => Reason::Other,
    }
}

fn classify_incompatible(p: &PeerIncompatible) -> Reason {
    use PeerIncompatible as P;
    match p {
        P::ServerDoesNotSupportTls12Or13
        | P::ServerTlsVersionIsDisabledByOurConfig
        | P::SupportedVersionsExtensionRequired
        | P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled
        | P::Tls13RequiredForQuic => Reason::ProtocolVersion,
        _ => Reason::NoSharedCipher,
    }
}

/// The peer's alert, as seen by the side that receives it.
fn classify_alert(alert: AlertDescription) -> Reason {
    use AlertDescription as A;
    match alert {
        A::CertificateRequired => Reason::NoClientCert,
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::BadCertificateStatusResponse => Reason::BadCertificate,
        A::ProtocolVersion => Reason::ProtocolVersion,
        // rustls (and most stacks) answer "nothing in common" with handshake_failure.
        A::HandshakeFailure | A::InsufficientSecurity => Reason::NoSharedCipher,
        A::DecodeError | A::UnexpectedMessage | A::RecordOverflow => Reason::NotTls,
        _ => Reason::Other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn wrap(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn rustls_errors_map_to_reasons() {
        let cases = [
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Reason::NotTls,
            ),
            (rustls::Error::NoCertificatesPresented, Reason::NoClientCert),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                Reason::BadCertificate,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(SanMismatch { sans: vec![] }),
                ))),
                Reason::SanMismatch,
            ),
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                Reason::NoSharedCipher,
            ),
            (
                rustls::Error::PeerIncompatible(
                    PeerIncompatible::SupportedVersionsExtensionRequired,
                ),
                Reason::ProtocolVersion,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                Reason::NoClientCert,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                Reason::BadCertificate,
            ),
        ];
        for (e, want) in cases {
            let text = format!("{e:?}");
            assert_eq!(classify(&wrap(e), Phase::Handshake), want, "{text}");
        }
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify(&eof, Phase::Hello), Reason::Closed);
        let other = io::Error::other("boom");
        assert_eq!(classify(&other, Phase::Handshake), Reason::Io);
        assert_eq!(Reason::ALL.iter().map(|r| r.index()).max(), Some(9));
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
