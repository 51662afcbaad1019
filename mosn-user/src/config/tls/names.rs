//! Names of protocol versions, cipher suites and key exchange groups as MOSN users write them
//! (MOSN's own spellings, OpenSSL's, Go's constants, IANA's), mapped to the one canonical name
//! the runtime looks up. Matching ignores ASCII case.

use super::TlsVersion;

/// A cipher suite known by name.
pub(super) struct Suite {
    /// The IANA name: what the model stores.
    pub iana: &'static str,
    /// Other spellings: OpenSSL's, MOSN's (`ECDHE-ECDSA-WITH-CHACHA20-POLY1305`), Go's
    /// constants (`TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305`).
    pub aliases: &'static [&'static str],
    /// The version the suite belongs to, when rustls (ring provider) implements it.
    pub supported: Option<TlsVersion>,
}

const fn ok(iana: &'static str, v: TlsVersion, aliases: &'static [&'static str]) -> Suite {
    Suite {
        iana,
        aliases,
        supported: Some(v),
    }
}

const fn no(iana: &'static str, aliases: &'static [&'static str]) -> Suite {
    Suite {
        iana,
        aliases,
        supported: None,
    }
}

use TlsVersion::{Tls12, Tls13};

/// Every suite rustls' ring provider implements, then suites MOSN (Go's crypto/tls, Tongsuo)
/// or OpenSSL users name that it does not: CBC, RSA key exchange, 3DES, RC4, DHE, CCM and
/// the Chinese SM suites.
const SUITES: &[Suite] = &[
    ok("TLS_AES_256_GCM_SHA384", Tls13, &[]),
    ok("TLS_AES_128_GCM_SHA256", Tls13, &[]),
    ok("TLS_CHACHA20_POLY1305_SHA256", Tls13, &[]),
    ok(
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Tls12,
        &["ECDHE-ECDSA-AES256-GCM-SHA384"],
    ),
    ok(
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Tls12,
        &["ECDHE-ECDSA-AES128-GCM-SHA256"],
    ),
    ok(
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Tls12,
        &[
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-WITH-CHACHA20-POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ],
    ),
    ok(
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Tls12,
        &["ECDHE-RSA-AES256-GCM-SHA384"],
    ),
    ok(
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Tls12,
        &["ECDHE-RSA-AES128-GCM-SHA256"],
    ),
    ok(
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Tls12,
        &[
            "ECDHE-RSA-CHACHA20-POLY1305",
            "ECDHE-RSA-WITH-CHACHA20-POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        ],
    ),
    no(
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        &["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-CBC-SHA"],
    ),
    no(
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        &["ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES256-CBC-SHA"],
    ),
    no(
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        &["ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-CBC-SHA"],
    ),
    no(
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        &["ECDHE-RSA-AES256-SHA", "ECDHE-RSA-AES256-CBC-SHA"],
    ),
    no(
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        &["ECDHE-ECDSA-AES128-SHA256"],
    ),
    no(
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        &["ECDHE-ECDSA-AES256-SHA384"],
    ),
    no(
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        &["ECDHE-RSA-AES128-SHA256"],
    ),
    no(
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        &["ECDHE-RSA-AES256-SHA384"],
    ),
    no(
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        &["AES128-GCM-SHA256", "RSA-AES128-GCM-SHA256"],
    ),
    no(
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        &["AES256-GCM-SHA384", "RSA-AES256-GCM-SHA384"],
    ),
    no(
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        &["AES128-SHA", "RSA-AES128-CBC-SHA"],
    ),
    no(
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        &["AES256-SHA", "RSA-AES256-CBC-SHA"],
    ),
    no("TLS_RSA_WITH_AES_128_CBC_SHA256", &["AES128-SHA256"]),
    no("TLS_RSA_WITH_AES_256_CBC_SHA256", &["AES256-SHA256"]),
    no(
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        &["ECDHE-RSA-DES-CBC3-SHA", "ECDHE-RSA-3DES-EDE-CBC-SHA"],
    ),
    no(
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        &["DES-CBC3-SHA", "RSA-3DES-EDE-CBC-SHA"],
    ),
    no("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", &["ECDHE-ECDSA-RC4-SHA"]),
    no("TLS_ECDHE_RSA_WITH_RC4_128_SHA", &["ECDHE-RSA-RC4-SHA"]),
    no("TLS_RSA_WITH_RC4_128_SHA", &["RC4-SHA"]),
    no(
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        &["DHE-RSA-AES128-GCM-SHA256"],
    ),
    no(
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        &["DHE-RSA-AES256-GCM-SHA384"],
    ),
    no(
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        &["DHE-RSA-CHACHA20-POLY1305"],
    ),
    no("TLS_AES_128_CCM_SHA256", &[]),
    no("TLS_AES_128_CCM_8_SHA256", &[]),
    no("TLS_SM4_GCM_SM3", &[]),
    no("TLS_SM4_CCM_SM3", &[]),
    // MOSN's names of the SM suites of TLCP / GM/T 0024, which have no IANA name.
    no("ECDHE-RSA-SM4-SM3", &[]),
    no("ECDHE-ECDSA-SM4-SM3", &[]),
    no("ECC-SM4-SM3", &["ECC-SM4-CBC-SM3"]),
    no("ECDHE-SM4-SM3", &["ECDHE-SM4-CBC-SM3"]),
];

/// The suite `name` spells, in any of its spellings.
pub(super) fn cipher_suite(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| {
        s.iana.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// The suites rustls (ring provider) implements, in its default order.
pub(super) fn supported_suites() -> impl Iterator<Item = &'static Suite> {
    SUITES.iter().filter(|s| s.supported.is_some())
}

/// A key exchange group known by name.
pub(super) struct Group {
    /// What the model stores.
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// rustls (ring provider) implements it.
    pub supported: bool,
}

const GROUPS: &[Group] = &[
    Group {
        name: "X25519",
        aliases: &["CurveX25519"],
        supported: true,
    },
    Group {
        name: "P-256",
        aliases: &["P256", "secp256r1", "prime256v1", "CurveP256"],
        supported: true,
    },
    Group {
        name: "P-384",
        aliases: &["P384", "secp384r1", "CurveP384"],
        supported: true,
    },
    Group {
        name: "P-521",
        aliases: &["P521", "secp521r1", "CurveP521"],
        supported: false,
    },
    Group {
        name: "X448",
        aliases: &[],
        supported: false,
    },
    Group {
        name: "X25519MLKEM768",
        aliases: &["X25519Kyber768Draft00"],
        supported: false,
    },
    Group {
        name: "SM2",
        aliases: &["CurveSM2", "sm2p256v1"],
        supported: false,
    },
];

/// The group `name` spells, in any of its spellings.
pub(super) fn group(name: &str) -> Option<&'static Group> {
    GROUPS.iter().find(|g| {
        g.name.eq_ignore_ascii_case(name) || g.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// A protocol version: MOSN's `TLS1.2`, also `TLSv1.2`, `TLSv1_2`, `TLS1_2` (any case).
pub(super) fn version(name: &str) -> Option<TlsVersion> {
    let upper = name.trim().to_ascii_uppercase().replace('_', ".");
    let rest = upper.strip_prefix("TLS")?;
    let number = rest.strip_prefix('V').unwrap_or(rest);
    match number {
        "1.0" => Some(TlsVersion::Tls10),
        "1.1" => Some(TlsVersion::Tls11),
        "1.2" => Some(TlsVersion::Tls12),
        "1.3" => Some(TlsVersion::Tls13),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_unique() {
        let mut seen = std::collections::HashSet::new();
        let suites = SUITES
            .iter()
            .flat_map(|s| std::iter::once(s.iana).chain(s.aliases.iter().copied()));
        let groups = GROUPS
            .iter()
            .flat_map(|g| std::iter::once(g.name).chain(g.aliases.iter().copied()));
        for n in suites.chain(groups) {
            assert!(seen.insert(n.to_ascii_uppercase()), "{n} twice");
        }
        assert_eq!(
            SUITES.iter().filter(|s| s.supported.is_some()).count(),
            9,
            "ring's nine suites"
        );
    }

    #[test]
    fn versions() {
        for (s, v) in [
            ("TLS1.2", Some(TlsVersion::Tls12)),
            ("tlsv1.3", Some(TlsVersion::Tls13)),
            ("TLSv1_0", Some(TlsVersion::Tls10)),
            ("TLS1_1", Some(TlsVersion::Tls11)),
            ("TLS1.4", None),
            ("1.2", None),
            ("SSLv3", None),
        ] {
            assert_eq!(version(s), v, "{s}");
        }
    }
}
