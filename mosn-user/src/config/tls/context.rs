//! `tls_context` / `tls_context_set` -> [`TlsContext`]: which keys are required, which make
//! sense on a listener or on a cluster only, that the files named exist (their PEM is parsed
//! by the runtime, not here), and the names of versions, suites and groups.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::names::{self, Suite};
use super::raw::*;
use super::{DEFAULT_HANDSHAKE_TIMEOUT, PemSource, SanMatcher, TlsContext, TlsVersion};
use crate::config::diag::{Diag, index, join};

/// Where a context is used: settings that mean something on one side only are warned about
/// (and dropped) on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Listener,
    Cluster,
}

/// Size of one session ticket key file (Envoy's format: name, AES key, HMAC key).
const TICKET_KEY_LEN: u64 = 80;

/// A filter chain's `tls_context` and `tls_context_set` (the chain at `chain_path`): every
/// enabled context, in file order (empty: the chain is plaintext).
pub(in crate::config) fn chain_tls(
    tls_context: Option<&Value>,
    tls_context_set: Option<&Value>,
    chain_path: &str,
    d: &mut Diag,
) -> Vec<TlsContext> {
    let single_path = join(chain_path, "tls_context");
    let single: Option<RawTlsContext> = tls_context.and_then(|v| d.decode(&single_path, v));
    let set_path = join(chain_path, "tls_context_set");
    let set: Vec<RawTlsContext> = tls_context_set
        .and_then(|v| d.decode(&set_path, v))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(raw) = &single {
        out.extend(context(raw, &single_path, Side::Listener, d));
    }
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, raw) in set.iter().enumerate() {
        let p = index(chain_path, "tls_context_set", i);
        let Some(c) = context(raw, &p, Side::Listener, d) else {
            continue;
        };
        if let Some(name) = &c.server_name {
            if let Some(first) = names.get(name) {
                d.error(
                    &join(&p, "server_name"),
                    format!("same server_name {name:?} as {first}"),
                );
            } else {
                names.insert(name.clone(), p.clone());
            }
        }
        out.push(c);
    }
    if single.as_ref().is_some_and(enabled) && set.iter().any(enabled) {
        d.error(
            &set_path,
            "a filter chain takes tls_context or tls_context_set, not both enabled (put every \
             certificate in tls_context_set, or set \"status\": false in one)",
        );
    }
    out
}

/// A cluster's `tls_context` (at `path`): `None` when absent or disabled (or invalid: the
/// errors are in `d`).
pub(in crate::config) fn cluster_tls(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> Option<TlsContext> {
    let raw: RawTlsContext = d.decode(path, value?)?;
    context(&raw, path, Side::Cluster, d)
}

fn enabled(raw: &RawTlsContext) -> bool {
    raw.status == Some(true)
}

/// MOSN omits empty strings (`omitempty`): an empty one is an absent one.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// One context; `None` when disabled or when it has errors.
fn context(raw: &RawTlsContext, path: &str, side: Side, d: &mut Diag) -> Option<TlsContext> {
    d.extra(path, &raw.extra, RawTlsContext::KEYS);
    if !enabled(raw) {
        return None;
    }
    let errors_before = d.errors.len();
    let at = |key: &str| join(path, key);
    if let Some(kind) = given(&raw.kind) {
        d.warn(format!(
            "{}: type {kind:?} (a MOSN TLS extension) cannot be honoured; the standard TLS \
             context is used",
            at("type")
        ));
    }

    let cert_chain = given(&raw.cert_chain).map(|s| pem(s, &at("cert_chain"), d));
    let private_key = given(&raw.private_key).map(|s| pem(s, &at("private_key"), d));
    let ca_cert = given(&raw.ca_cert).map(|s| pem(s, &at("ca_cert"), d));
    let pem_hint = "a file path, or the PEM text itself";
    match (&cert_chain, &private_key) {
        (Some(_), None) => d.error(
            &at("private_key"),
            format!("missing private_key: it comes with cert_chain ({pem_hint})"),
        ),
        (None, Some(_)) => d.error(
            &at("cert_chain"),
            format!("missing cert_chain: it comes with private_key ({pem_hint})"),
        ),
        (None, None) if side == Side::Listener => {
            for key in ["cert_chain", "private_key"] {
                d.error(
                    &at(key),
                    format!(
                        "missing {key}: a listener's TLS needs cert_chain and private_key \
                         ({pem_hint})"
                    ),
                );
            }
        }
        _ => {}
    }

    let require_client_cert = side == Side::Listener && raw.require_client_cert == Some(true);
    let verify_client =
        side == Side::Listener && (raw.verify_client == Some(true) || require_client_cert);
    let insecure_skip = raw.insecure_skip == Some(true);
    let match_subject_alt_names = san_matchers(raw.match_subject_alt_names.as_deref(), path, d);
    match side {
        Side::Listener => {
            if verify_client && ca_cert.is_none() {
                let by = if raw.verify_client == Some(true) {
                    "verify_client"
                } else {
                    "require_client_cert"
                };
                d.error(
                    &at("ca_cert"),
                    format!(
                        "missing ca_cert: {by} needs the CA certificates client certificates \
                         are verified against ({pem_hint})"
                    ),
                );
            }
            if !verify_client && ca_cert.is_some() {
                d.warn(format!(
                    "{}: not used without \"verify_client\": true (clients are not asked for \
                     a certificate)",
                    at("ca_cert")
                ));
            }
            if !verify_client && !match_subject_alt_names.is_empty() {
                d.error(
                    &at("match_subject_alt_names"),
                    "needs \"verify_client\": true: clients are not asked for a certificate, so \
                     there is no name to match",
                );
            }
            if insecure_skip {
                d.warn(format!(
                    "{}: meaningless on a listener (it skips verifying an upstream server's \
                     certificate); ignored",
                    at("insecure_skip")
                ));
            }
        }
        Side::Cluster => {
            for (key, on) in [
                ("verify_client", raw.verify_client),
                ("require_client_cert", raw.require_client_cert),
            ] {
                if on == Some(true) {
                    d.warn(format!(
                        "{}: meaningless on a cluster (a listener asks its clients for \
                         certificates); ignored",
                        at(key)
                    ));
                }
            }
            if ca_cert.is_none() && !insecure_skip {
                d.error(
                    &at("ca_cert"),
                    format!(
                        "missing ca_cert: the upstream's certificate is verified against it \
                         (system roots are not read; {pem_hint}), or set \"insecure_skip\": \
                         true to not verify it"
                    ),
                );
            }
            if insecure_skip && !match_subject_alt_names.is_empty() {
                d.error(
                    &at("match_subject_alt_names"),
                    "\"insecure_skip\": true does not verify the upstream's certificate, so its \
                     names cannot be trusted; remove one of the two",
                );
            }
        }
    }

    let server_name =
        given(&raw.server_name).and_then(|s| server_name(s, side, &at("server_name"), d));
    let (min_version, max_version) = versions(raw, path, d);
    let cipher_suites = cipher_suites(
        given(&raw.cipher_suites),
        &at("cipher_suites"),
        (min_version, max_version),
        d,
    );
    let ecdh_curves = curves(given(&raw.ecdh_curves), &at("ecdh_curves"), d);
    let alpn = alpn(raw.alpn.as_ref(), &at("alpn"), d);

    let (session_ticket_keys, handshake_timeout) = match side {
        Side::Listener => {
            let keys = ticket_keys(
                raw.session_ticket_keys.as_ref(),
                &at("session_ticket_keys"),
                d,
            );
            let timeout = match &raw.handshake_timeout {
                None => DEFAULT_HANDSHAKE_TIMEOUT,
                Some(t) => match d.duration(&at("handshake_timeout"), t) {
                    Some(Duration::ZERO) => {
                        d.error(&at("handshake_timeout"), "must be more than 0s");
                        DEFAULT_HANDSHAKE_TIMEOUT
                    }
                    Some(t) => t,
                    None => DEFAULT_HANDSHAKE_TIMEOUT,
                },
            };
            (keys, timeout)
        }
        Side::Cluster => {
            for (key, set) in [
                ("session_ticket_keys", raw.session_ticket_keys.is_some()),
                ("handshake_timeout", raw.handshake_timeout.is_some()),
            ] {
                if set {
                    d.warn(format!(
                        "{}: meaningless on a cluster (a listener's setting; an upstream \
                         handshake is bounded by connect_timeout); ignored",
                        at(key)
                    ));
                }
            }
            (Vec::new(), DEFAULT_HANDSHAKE_TIMEOUT)
        }
    };

    (d.errors.len() == errors_before).then(|| TlsContext {
        cert_chain,
        private_key,
        ca_cert,
        verify_client,
        require_client_cert,
        server_name,
        min_version,
        max_version,
        cipher_suites,
        ecdh_curves,
        alpn,
        insecure_skip: side == Side::Cluster && insecure_skip,
        match_subject_alt_names,
        session_ticket_keys,
        handshake_timeout,
    })
}

/// A PEM key's value: inline PEM, or a file that must exist and be readable (its content is
/// the runtime's to parse).
fn pem(value: &str, path: &str, d: &mut Diag) -> PemSource {
    if value.contains("-----BEGIN") {
        return PemSource::Inline(value.to_owned());
    }
    check_file(value, path, d);
    PemSource::File(PathBuf::from(value))
}

/// Checks that `file` is a file this process can open; returns its size.
fn check_file(file: &str, path: &str, d: &mut Diag) -> Option<u64> {
    match std::fs::metadata(file) {
        Err(e) => {
            d.error(path, format!("cannot read {file:?}: {e}"));
            None
        }
        Ok(m) if m.is_dir() => {
            d.error(path, format!("{file:?} is a directory, not a file"));
            None
        }
        Ok(m) => match std::fs::File::open(file) {
            Err(e) => {
                d.error(path, format!("cannot read {file:?}: {e}"));
                None
            }
            Ok(_) => Some(m.len()),
        },
    }
}

/// A DNS name (no wildcard): dot-separated labels of letters, digits, `-` and `_`.
pub(super) fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `server_name`, lowercase: on a cluster the name sent and verified (a DNS name or an IP
/// address), on a listener the SNI a certificate answers (a DNS name, `*.` wildcard allowed).
fn server_name(s: &str, side: Side, path: &str, d: &mut Diag) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let ok = match side {
        Side::Cluster => lower.parse::<IpAddr>().is_ok() || dns_name(&lower),
        Side::Listener => dns_name(lower.strip_prefix("*.").unwrap_or(&lower)),
    };
    if ok {
        Some(lower)
    } else {
        let what = match side {
            Side::Cluster => "a DNS name or an IP address",
            Side::Listener => "a DNS name like \"a.example.com\" or \"*.example.com\"",
        };
        d.error(path, format!("{s:?} is not {what}"));
        None
    }
}

/// `min_version` (default and floor TLS1.2) and `max_version` (default TLS1.3). MOSN's
/// `TLS_AUTO` is the default.
fn versions(raw: &RawTlsContext, path: &str, d: &mut Diag) -> (TlsVersion, TlsVersion) {
    let mut parse = |key: &str| -> Option<TlsVersion> {
        let s = given(if key == "min_version" {
            &raw.min_version
        } else {
            &raw.max_version
        })
        .filter(|s| !s.eq_ignore_ascii_case("TLS_AUTO"))?;
        let v = names::version(s);
        if v.is_none() {
            d.error(
                &join(path, key),
                format!("unknown TLS version {s:?} (allowed: TLS1.0, TLS1.1, TLS1.2, TLS1.3)"),
            );
        }
        v
    };
    let min = parse("min_version");
    let max = parse("max_version");
    let min = match min {
        Some(v) if v < TlsVersion::Tls12 => {
            d.warn(format!(
                "{}: {v} cannot be honoured; rustls speaks TLS1.2 and TLS1.3 (TLS1.2 is the \
                 minimum used)",
                join(path, "min_version")
            ));
            TlsVersion::Tls12
        }
        Some(v) => v,
        None => TlsVersion::Tls12,
    };
    let max = match max {
        Some(v) if v < TlsVersion::Tls12 => {
            d.error(
                &join(path, "max_version"),
                format!("{v} leaves no version rustls speaks (TLS1.2 and TLS1.3)"),
            );
            TlsVersion::Tls13
        }
        Some(v) => v,
        None => TlsVersion::Tls13,
    };
    if min > max {
        d.error(
            &join(path, "min_version"),
            format!("min_version {min} is above max_version {max}"),
        );
    }
    (min, max)
}

/// `cipher_suites` (comma-separated): IANA names of the suites rustls implements, plus the
/// defaults of an enabled version none of whose suites is named.
fn cipher_suites(
    list: Option<&str>,
    path: &str,
    (min, max): (TlsVersion, TlsVersion),
    d: &mut Diag,
) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut out: Vec<&Suite> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match names::cipher_suite(name) {
            Some(s) if s.supported.is_some() => {
                if !out.iter().any(|o| o.iana == s.iana) {
                    out.push(s);
                }
            }
            Some(s) => {
                let iana = if s.iana.eq_ignore_ascii_case(name) {
                    String::new()
                } else {
                    format!(" ({})", s.iana)
                };
                d.warn(format!(
                    "{path}: cipher suite {name:?}{iana} is not implemented by rustls; left out"
                ));
            }
            None => d.warn(format!("{path}: unknown cipher suite {name:?}; left out")),
        }
    }
    if out.is_empty() {
        let supported = names::supported_suites()
            .map(|s| s.iana)
            .collect::<Vec<_>>()
            .join(", ");
        d.error(
            path,
            format!("no cipher suite named here is implemented by rustls (it has: {supported})"),
        );
        return Vec::new();
    }
    let enabled = |v: TlsVersion| (min..=max).contains(&v);
    let unused: Vec<&str> = out
        .iter()
        .filter(|s| !s.supported.is_some_and(enabled))
        .map(|s| s.iana)
        .collect();
    if !unused.is_empty() {
        d.warn(format!(
            "{path}: {} not used: outside min_version {min} .. max_version {max}",
            unused.join(", ")
        ));
    }
    // Go never restricts TLS1.3 by cipher_suites; likewise a version none of whose suites
    // is named keeps its defaults.
    for v in [TlsVersion::Tls13, TlsVersion::Tls12] {
        if enabled(v) && !out.iter().any(|s| s.supported == Some(v)) {
            out.extend(names::supported_suites().filter(|s| s.supported == Some(v)));
        }
    }
    out.iter().map(|s| s.iana.to_owned()).collect()
}

/// `ecdh_curves` (comma-separated): the canonical names of the groups rustls implements.
fn curves(list: Option<&str>, path: &str, d: &mut Diag) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match names::group(name) {
            Some(g) if g.supported => {
                if !out.iter().any(|o| o == g.name) {
                    out.push(g.name.to_owned());
                }
            }
            Some(g) => d.warn(format!(
                "{path}: curve {name:?} ({}) is not implemented by rustls; left out",
                g.name
            )),
            None => d.warn(format!("{path}: unknown curve {name:?}; left out")),
        }
    }
    if out.is_empty() {
        d.error(
            path,
            "no curve named here is implemented by rustls (it has: X25519, P-256, P-384)",
        );
    }
    out
}

/// `alpn`: an array, or MOSN's comma-separated string; each protocol 1..=255 bytes.
fn alpn(raw: Option<&RawAlpn>, path: &str, d: &mut Diag) -> Vec<String> {
    let (items, indexed): (Vec<String>, bool) = match raw {
        None => return Vec::new(),
        Some(RawAlpn::Text(s)) => (
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            false,
        ),
        Some(RawAlpn::List(list)) => (list.clone(), true),
    };
    let mut out: Vec<String> = Vec::new();
    for (i, p) in items.into_iter().enumerate() {
        let at = if indexed {
            format!("{path}[{i}]")
        } else {
            path.to_owned()
        };
        if p.is_empty() {
            d.error(&at, "an ALPN protocol must not be empty");
        } else if p.len() > 255 {
            d.error(
                &at,
                format!("an ALPN protocol is at most 255 bytes, not {}", p.len()),
            );
        } else if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// `match_subject_alt_names` of the context at `path`.
fn san_matchers(raw: Option<&[RawSanMatcher]>, path: &str, d: &mut Diag) -> Vec<SanMatcher> {
    let mut out = Vec::new();
    for (i, m) in raw.unwrap_or_default().iter().enumerate() {
        let p = index(path, "match_subject_alt_names", i);
        d.extra(&p, &m.extra, RawSanMatcher::KEYS);
        let given: Vec<(&str, &String)> = [
            ("exact", &m.exact),
            ("prefix", &m.prefix),
            ("suffix", &m.suffix),
            ("contains", &m.contains),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect();
        match given.as_slice() {
            [(key, v)] if v.is_empty() => d.error(&join(&p, key), "must not be empty"),
            [(key, v)] => out.push(match *key {
                "exact" => SanMatcher::Exact((*v).clone()),
                "prefix" => SanMatcher::Prefix((*v).clone()),
                "suffix" => SanMatcher::Suffix((*v).clone()),
                _ => SanMatcher::Contains((*v).clone()),
            }),
            [] => d.error(
                &p,
                "needs one of \"exact\", \"prefix\", \"suffix\", \"contains\"",
            ),
            many => d.error(
                &p,
                format!(
                    "has {}: give exactly one of \"exact\", \"prefix\", \"suffix\", \"contains\"",
                    many.iter()
                        .map(|(k, _)| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ),
        }
    }
    out
}

/// `session_ticket_keys` (at `path`): files of exactly 80 bytes.
fn ticket_keys(raw: Option<&RawTicketKeys>, path: &str, d: &mut Diag) -> Vec<PathBuf> {
    let (items, base) = match raw {
        None => return Vec::new(),
        Some(RawTicketKeys::List(list)) => (list.as_slice(), path.to_owned()),
        Some(RawTicketKeys::Envoy(e)) => {
            d.extra(path, &e.extra, RawEnvoyTicketKeys::KEYS);
            (e.keys.as_deref().unwrap_or_default(), join(path, "keys"))
        }
    };
    let mut out = Vec::new();
    for (i, key) in items.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let (file, at) = match key {
            RawTicketKey::Path(f) => (Some(f.as_str()), p),
            RawTicketKey::Source(src) => {
                d.extra(&p, &src.extra, RawDataSource::KEYS);
                (src.filename.as_deref(), join(&p, "filename"))
            }
        };
        match file {
            None | Some("") => d.error(
                &at,
                "missing filename of a session ticket key file (inline keys are not supported)",
            ),
            Some(f) => {
                match check_file(f, &at, d) {
                    Some(TICKET_KEY_LEN) | None => {}
                    Some(len) => d.error(
                        &at,
                        format!(
                            "{f:?} has {len} bytes; a session ticket key file has exactly \
                             {TICKET_KEY_LEN}"
                        ),
                    ),
                }
                out.push(PathBuf::from(f));
            }
        }
    }
    out
}
