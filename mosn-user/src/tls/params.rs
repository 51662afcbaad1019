//! Protocol versions, cipher suites and key-exchange groups of a `tls_context`, as a ring
//! [`CryptoProvider`] and a version list (the same on both sides).

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite as cs, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::error::TlsError;
use crate::config::tls::{TlsContext, TlsVersion};

/// Cipher suite names: the IANA name first (what the config normally holds), then the
/// OpenSSL and Go spellings validation also lets through. Only what the ring provider has.
const SUITES: &[(&[&str], SupportedCipherSuite)] = &[
    (&["TLS_AES_128_GCM_SHA256"], cs::TLS13_AES_128_GCM_SHA256),
    (&["TLS_AES_256_GCM_SHA384"], cs::TLS13_AES_256_GCM_SHA384),
    (
        &["TLS_CHACHA20_POLY1305_SHA256"],
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        &[
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        &[
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ],
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        &[
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ],
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        &[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ],
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        &[
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
        ],
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        &[
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ],
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Group names (validated spelling first, then common aliases).
const GROUPS: &[(&[&str], &dyn SupportedKxGroup)] = &[
    (&["X25519"], kx_group::X25519),
    (
        &["P-256", "secp256r1", "prime256v1", "CurveP256"],
        kx_group::SECP256R1,
    ),
    (&["P-384", "secp384r1", "CurveP384"], kx_group::SECP384R1),
];

/// rustls' ring provider with its defaults.
#[expect(
    deprecated,
    reason = "rustls 0.23.48 deprecates the ring provider for lacking post-quantum key exchange; this project builds rustls without aws-lc-rs (cmake under sanitizers), so ring it is"
)]
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The versions rustls will speak within `min_version..=max_version` (TLS 1.2 and 1.3 only).
pub(crate) fn versions(
    ctx: &TlsContext,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut out = Vec::new();
    if (ctx.min_version..=ctx.max_version).contains(&TlsVersion::Tls13) {
        out.push(&rustls::version::TLS13);
    }
    if (ctx.min_version..=ctx.max_version).contains(&TlsVersion::Tls12) {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err(TlsError::Setting {
            field: "min_version/max_version",
            reason: format!(
                "{:?}..{:?} leaves neither TLS1.2 nor TLS1.3 (the only versions supported)",
                ctx.min_version, ctx.max_version
            ),
        });
    }
    Ok(out)
}

/// The ring provider narrowed to the context's cipher suites and groups.
///
/// `cipher_suites` keeps its order. A protocol version none of whose suites is named keeps
/// the provider's default suites for that version (as Go and BoringSSL do for TLS 1.3, whose
/// suites a TLS 1.2-era list never names).
pub(crate) fn provider(ctx: &TlsContext) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut provider = ring_provider();
    if !ctx.cipher_suites.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = Vec::new();
        for name in &ctx.cipher_suites {
            let suite = lookup(SUITES, name).ok_or_else(|| TlsError::Setting {
                field: "cipher_suites",
                reason: format!("{name}: not supported (rustls offers AEAD suites only)"),
            })?;
            if !suites.contains(&suite) {
                suites.push(suite);
            }
        }
        let defaults = provider.cipher_suites.clone();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            if !suites.iter().any(|s| s.version() == version) {
                suites.extend(defaults.iter().filter(|s| s.version() == version));
            }
        }
        provider.cipher_suites = suites;
    }
    if !ctx.ecdh_curves.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in &ctx.ecdh_curves {
            let group = lookup(GROUPS, name).ok_or_else(|| TlsError::Setting {
                field: "ecdh_curves",
                reason: format!("{name}: not supported (X25519, P-256, P-384)"),
            })?;
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(group);
            }
        }
        provider.kx_groups = groups;
    }
    Ok(Arc::new(provider))
}

fn lookup<T: Copy>(table: &[(&[&str], T)], name: &str) -> Option<T> {
    let name = name.trim();
    table
        .iter()
        .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::base_ctx;

    #[test]
    fn versions_within_range() {
        let mut ctx = base_ctx();
        ctx.min_version = TlsVersion::Tls10;
        ctx.max_version = TlsVersion::Tls12;
        assert_eq!(versions(&ctx).unwrap(), vec![&rustls::version::TLS12]);
        ctx.max_version = TlsVersion::Tls13;
        assert_eq!(versions(&ctx).unwrap().len(), 2);
        ctx.max_version = TlsVersion::Tls11;
        let e = versions(&ctx).unwrap_err().to_string();
        assert!(e.contains("min_version/max_version"), "{e}");
    }

    #[test]
    fn suites_keep_order_and_fill_the_other_version() {
        let mut ctx = base_ctx();
        ctx.cipher_suites = vec![
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
            "ecdhe-ecdsa-aes128-gcm-sha256".into(),
        ];
        ctx.ecdh_curves = vec!["P-256".into(), "X25519".into()];
        let p = provider(&ctx).unwrap();
        assert_eq!(
            p.cipher_suites[0],
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        );
        assert_eq!(
            p.cipher_suites[1],
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
        // TLS 1.3 suites were not named: its defaults follow.
        assert_eq!(p.cipher_suites.len(), 5);
        assert!(p.cipher_suites[2..].iter().all(|s| s.tls13().is_some()));
        assert_eq!(p.kx_groups.len(), 2);
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::secp256r1);

        ctx.cipher_suites = vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()];
        let e = provider(&ctx).unwrap_err().to_string();
        assert!(
            e.starts_with("cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA"),
            "{e}"
        );
        ctx.cipher_suites.clear();
        ctx.ecdh_curves = vec!["P-521".into()];
        assert!(
            provider(&ctx)
                .unwrap_err()
                .to_string()
                .contains("ecdh_curves")
        );
    }
}
