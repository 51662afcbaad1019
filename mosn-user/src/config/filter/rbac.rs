//! `rbac` config (Envoy's `config.rbac.v3.RBAC`, which MOSN's rbac filter reuses): a subset
//! of principals and permissions, each refused loudly when it uses a matcher we do not
//! implement (silently dropping one would widen or narrow access).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::diag::{Diag, index, join};
use super::super::model::Cidr;
use super::super::raw::Extra;
use super::{HeaderMatch, HeaderRule, Pattern, header_name, masked_cidr, pattern};

/// `rbac`: allow or deny requests matching policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RbacConfig {
    /// `action` (default ALLOW, as Envoy).
    pub action: RbacAction,
    /// `policies`, by name.
    pub policies: Vec<RbacPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RbacAction {
    /// Only requests that some policy matches pass.
    Allow,
    /// Requests that some policy matches are refused.
    Deny,
}

/// A policy matches a request when some principal and some permission match it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RbacPolicy {
    pub name: String,
    /// Who: at least one.
    pub principals: Vec<Principal>,
    /// What: at least one.
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    Any,
    /// `source_ip` / `direct_remote_ip`: the downstream peer's address.
    SourceIp(Cidr),
    Header(HeaderMatch),
    /// `authenticated.principal_name` (Envoy): a subject alt name (URI such as
    /// `spiffe://...`, DNS, IP) of the client's verified TLS certificate. A connection without
    /// one never matches.
    Authenticated(PathMatch),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Any,
    /// `url_path.path`: the request path without its query.
    UrlPath(PathMatch),
    Header(HeaderMatch),
}

/// Envoy's `StringMatcher` on the path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Pattern),
}

impl PathMatch {
    /// A request without a path (RPC) matches only a prefix of `/` (or nothing), as a route
    /// match does.
    pub fn matches(&self, path: Option<&str>) -> bool {
        let Some(path) = path else {
            return matches!(self, PathMatch::Prefix(s) if s.is_empty() || s == "/");
        };
        match self {
            PathMatch::Exact(s) => path == s,
            PathMatch::Prefix(s) => path.starts_with(s.as_str()),
            PathMatch::Suffix(s) => path.ends_with(s.as_str()),
            PathMatch::Regex(p) => p.is_match(path),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw shapes

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an rbac config object")]
struct RawRbac {
    action: Option<String>,
    policies: Option<BTreeMap<String, RawPolicy>>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawRbac {
    const KEYS: &'static [&'static str] = &["action", "policies"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a policy object")]
struct RawPolicy {
    principals: Option<Vec<RawPrincipal>>,
    permissions: Option<Vec<RawPermission>>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawPolicy {
    const KEYS: &'static [&'static str] = &["principals", "permissions"];
}

/// One principal: exactly one of its keys.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a principal object")]
struct RawPrincipal {
    any: Option<bool>,
    source_ip: Option<RawCidrRange>,
    direct_remote_ip: Option<RawCidrRange>,
    header: Option<RawHeaderMatch>,
    authenticated: Option<RawAuthenticated>,
    #[serde(flatten)]
    extra: Extra,
}

/// Envoy's `Principal.Authenticated`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an authenticated object")]
struct RawAuthenticated {
    principal_name: Option<RawPathMatch>,
    #[serde(flatten)]
    extra: Extra,
}

/// One permission: exactly one of its keys.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a permission object")]
struct RawPermission {
    any: Option<bool>,
    url_path: Option<RawUrlPath>,
    header: Option<RawHeaderMatch>,
    #[serde(flatten)]
    extra: Extra,
}

/// Envoy's `CidrRange`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a CIDR range object")]
struct RawCidrRange {
    address_prefix: Option<String>,
    prefix_len: Option<u8>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawCidrRange {
    const KEYS: &'static [&'static str] = &["address_prefix", "prefix_len"];
}

/// Envoy's `HeaderMatcher` (the non-deprecated part we implement).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a header matcher object")]
struct RawHeaderMatch {
    name: Option<String>,
    exact_match: Option<String>,
    prefix_match: Option<String>,
    suffix_match: Option<String>,
    regex_match: Option<String>,
    present_match: Option<bool>,
    invert_match: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawHeaderMatch {
    const KEYS: &'static [&'static str] = &[
        "name",
        "exact_match",
        "prefix_match",
        "suffix_match",
        "regex_match",
        "present_match",
        "invert_match",
    ];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a url_path object")]
struct RawUrlPath {
    path: Option<RawPathMatch>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawUrlPath {
    const KEYS: &'static [&'static str] = &["path"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a string matcher object")]
struct RawPathMatch {
    exact: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    regex: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawPathMatch {
    const KEYS: &'static [&'static str] = &["exact", "prefix", "suffix", "regex"];
}

// ---------------------------------------------------------------------------------------------
// Validation

pub(super) fn rbac(value: &Value, path: &str, d: &mut Diag) -> Option<RbacConfig> {
    let raw: RawRbac = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawRbac::KEYS);
    let errors_before = d.errors.len();
    let action = match raw.action.as_deref() {
        None => Some(RbacAction::Allow),
        Some(a) if a.eq_ignore_ascii_case("allow") => Some(RbacAction::Allow),
        Some(a) if a.eq_ignore_ascii_case("deny") => Some(RbacAction::Deny),
        Some(a) => {
            d.error(
                &join(path, "action"),
                format!("invalid action {a:?} (\"ALLOW\" or \"DENY\")"),
            );
            None
        }
    };
    let mut policies = Vec::new();
    let pp = join(path, "policies");
    for (name, p) in raw.policies.iter().flatten() {
        policies.extend(policy(name, p, &join(&pp, name), d));
    }
    if d.errors.len() != errors_before {
        return None;
    }
    let action = action?;
    if policies.is_empty() {
        let effect = match action {
            RbacAction::Allow => "every request is denied",
            RbacAction::Deny => "no request is denied",
        };
        d.warn(format!("{pp}: no policies; {effect}"));
    }
    Some(RbacConfig { action, policies })
}

fn policy(name: &str, raw: &RawPolicy, path: &str, d: &mut Diag) -> Option<RbacPolicy> {
    d.extra(path, &raw.extra, RawPolicy::KEYS);
    let mut principals = Vec::new();
    for (i, p) in raw.principals.iter().flatten().enumerate() {
        principals.extend(principal(p, &index(path, "principals", i), d));
    }
    let mut permissions = Vec::new();
    for (i, p) in raw.permissions.iter().flatten().enumerate() {
        permissions.extend(permission(p, &index(path, "permissions", i), d));
    }
    // A policy without either list would match nothing; Envoy refuses it too.
    if raw.principals.as_ref().is_none_or(Vec::is_empty) {
        d.error(
            &join(path, "principals"),
            "missing principals (at least one; {\"any\": true} for everyone)",
        );
    }
    if raw.permissions.as_ref().is_none_or(Vec::is_empty) {
        d.error(
            &join(path, "permissions"),
            "missing permissions (at least one; {\"any\": true} for everything)",
        );
    }
    Some(RbacPolicy {
        name: name.to_owned(),
        principals,
        permissions,
    })
}

const PRINCIPAL_KEYS: &str = "any, source_ip, direct_remote_ip, header, authenticated";
const PERMISSION_KEYS: &str = "any, url_path, header";

fn principal(raw: &RawPrincipal, path: &str, d: &mut Diag) -> Option<Principal> {
    let set = usize::from(raw.any.is_some())
        + usize::from(raw.source_ip.is_some())
        + usize::from(raw.direct_remote_ip.is_some())
        + usize::from(raw.header.is_some())
        + usize::from(raw.authenticated.is_some());
    if !one_of(path, set, &raw.extra, "principal", PRINCIPAL_KEYS, d) {
        return None;
    }
    if let Some(a) = &raw.authenticated {
        let ap = join(path, "authenticated");
        d.extra(&ap, &a.extra, &["principal_name"]);
        let np = join(&ap, "principal_name");
        let Some(m) = &a.principal_name else {
            d.error(&np, "missing principal_name (one of exact, prefix, suffix, regex)");
            return None;
        };
        return string_match(m, &np, d).map(Principal::Authenticated);
    }
    if let Some(any) = raw.any {
        return any_true(&join(path, "any"), any, d).then_some(Principal::Any);
    }
    if let Some(h) = &raw.header {
        return header_match(h, &join(path, "header"), d).map(Principal::Header);
    }
    let (key, c) = match (&raw.source_ip, &raw.direct_remote_ip) {
        (Some(c), _) => ("source_ip", c),
        (None, Some(c)) => ("direct_remote_ip", c),
        (None, None) => return None,
    };
    cidr_range(c, &join(path, key), d).map(Principal::SourceIp)
}

fn permission(raw: &RawPermission, path: &str, d: &mut Diag) -> Option<Permission> {
    let set = usize::from(raw.any.is_some())
        + usize::from(raw.url_path.is_some())
        + usize::from(raw.header.is_some());
    if !one_of(path, set, &raw.extra, "permission", PERMISSION_KEYS, d) {
        return None;
    }
    if let Some(any) = raw.any {
        return any_true(&join(path, "any"), any, d).then_some(Permission::Any);
    }
    if let Some(h) = &raw.header {
        return header_match(h, &join(path, "header"), d).map(Permission::Header);
    }
    let u = raw.url_path.as_ref()?;
    let up = join(path, "url_path");
    d.extra(&up, &u.extra, RawUrlPath::KEYS);
    let pp = join(&up, "path");
    let Some(p) = &u.path else {
        d.error(&pp, "missing path (one of exact, prefix, suffix, regex)");
        return None;
    };
    string_match(p, &pp, d).map(Permission::UrlPath)
}

/// Envoy's `StringMatcher`: exactly one of exact, prefix, suffix, regex.
fn string_match(p: &RawPathMatch, pp: &str, d: &mut Diag) -> Option<PathMatch> {
    d.extra(pp, &p.extra, RawPathMatch::KEYS);
    let given = [&p.exact, &p.prefix, &p.suffix, &p.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        d.error(
            pp,
            format!("needs exactly one of exact, prefix, suffix, regex ({given} given)"),
        );
        return None;
    }
    match (&p.exact, &p.prefix, &p.suffix, &p.regex) {
        (Some(s), ..) => Some(PathMatch::Exact(s.clone())),
        (_, Some(s), ..) => Some(PathMatch::Prefix(s.clone())),
        (_, _, Some(s), _) => Some(PathMatch::Suffix(s.clone())),
        (.., Some(r)) => Some(PathMatch::Regex(pattern(&join(pp, "regex"), r, d)?)),
        _ => None,
    }
}

/// Checks that a principal or permission sets exactly one matcher; a key we do not know is
/// an error here, not a warning: ignoring it would change who is allowed.
fn one_of(path: &str, set: usize, extra: &Extra, what: &str, keys: &str, d: &mut Diag) -> bool {
    for key in extra.keys() {
        d.error(
            &join(path, key),
            format!("unsupported {what} matcher (supported: {keys})"),
        );
    }
    if !extra.is_empty() {
        return false;
    }
    if set != 1 {
        d.error(
            path,
            format!("a {what} needs exactly one of {keys} ({set} given)"),
        );
        return false;
    }
    true
}

fn any_true(path: &str, any: bool, d: &mut Diag) -> bool {
    if !any {
        d.error(path, "must be true (remove the entry instead)");
    }
    any
}

fn cidr_range(raw: &RawCidrRange, path: &str, d: &mut Diag) -> Option<Cidr> {
    d.extra(path, &raw.extra, RawCidrRange::KEYS);
    let ap = join(path, "address_prefix");
    let Some(a) = &raw.address_prefix else {
        d.error(&ap, "missing address_prefix");
        return None;
    };
    let Ok(addr) = a.trim().parse::<std::net::IpAddr>() else {
        d.error(&ap, format!("invalid address {a:?}"));
        return None;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let lp = join(path, "prefix_len");
    match raw.prefix_len {
        // Envoy reads a missing length as 0 (everyone); that is too easy to write by mistake.
        None => {
            d.error(&lp, format!("missing prefix_len (0..={max})"));
            None
        }
        Some(len) if len > max => {
            d.error(&lp, format!("{len} is out of range for {addr} (0..={max})"));
            None
        }
        Some(len) => Some(masked_cidr(path, a, addr, len, d)),
    }
}

fn header_match(raw: &RawHeaderMatch, path: &str, d: &mut Diag) -> Option<HeaderMatch> {
    d.extra(path, &raw.extra, RawHeaderMatch::KEYS);
    let name = header_name(&join(path, "name"), raw.name.as_deref(), d);
    let given = usize::from(raw.exact_match.is_some())
        + usize::from(raw.prefix_match.is_some())
        + usize::from(raw.suffix_match.is_some())
        + usize::from(raw.regex_match.is_some())
        + usize::from(raw.present_match.is_some());
    if given != 1 {
        d.error(
            path,
            format!(
                "needs exactly one of exact_match, prefix_match, suffix_match, regex_match, \
                 present_match ({given} given)"
            ),
        );
        return None;
    }
    let rule = if let Some(s) = &raw.exact_match {
        HeaderRule::Exact(s.clone())
    } else if let Some(s) = &raw.prefix_match {
        HeaderRule::Prefix(s.clone())
    } else if let Some(s) = &raw.suffix_match {
        HeaderRule::Suffix(s.clone())
    } else if let Some(r) = &raw.regex_match {
        HeaderRule::Regex(pattern(&join(path, "regex_match"), r, d)?)
    } else {
        HeaderRule::Present(raw.present_match.unwrap_or(true))
    };
    Some(HeaderMatch {
        name: name?,
        rule,
        invert: raw.invert_match.unwrap_or(false),
    })
}
