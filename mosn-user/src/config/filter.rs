//! Stream filter configuration: a listener's `stream_filters[]` (MOSN's spelling), each
//! `{"type": ..., "config": {...}}`.
//!
//! Raw shapes, validated model types and their validation live together in this file (RBAC,
//! the largest, in [`rbac`]). Raw shapes keep unknown keys in `extra` and validation turns
//! each into a warning naming its full path, as in [`super::raw`].

mod rbac;

use std::time::Duration;

use http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::addr::parse_cidr;
use super::diag::{Diag, index, join};
use super::model::Cidr;
use super::raw::{Extra, RawDuration, RawFilter};
use super::validate::Clusters;
use crate::protocol::Request;

pub use rbac::{PathMatch, Permission, Principal, RbacAction, RbacConfig, RbacPolicy};

/// Every stream filter `type` we accept, for error messages.
const SUPPORTED: &str =
    "supported: fault, mirror, rbac, local_ratelimit, payload_limit, ip_access (or ipaccess)";

/// Upper bound of mirror `amplification`: a typo must not multiply a listener's traffic by a
/// thousand; MOSN's examples use 1 to 3.
const MAX_AMPLIFICATION: u32 = 100;

/// Default `http_status` of `payload_limit`: 413 Content Too Large, as MOSN.
const DEFAULT_PAYLOAD_STATUS: StatusCode = StatusCode::PAYLOAD_TOO_LARGE;

/// One configured stream filter. Serialized with its canonical `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum StreamFilterConfig {
    #[serde(rename = "fault")]
    Fault(FaultConfig),
    #[serde(rename = "mirror")]
    Mirror(MirrorConfig),
    #[serde(rename = "rbac")]
    Rbac(RbacConfig),
    #[serde(rename = "local_ratelimit")]
    LocalRateLimit(LocalRateLimitConfig),
    #[serde(rename = "payload_limit")]
    PayloadLimit(PayloadLimitConfig),
    #[serde(rename = "ip_access")]
    IpAccess(IpAccessConfig),
}

// ---------------------------------------------------------------------------------------------
// Model types

/// `fault` (MOSN's `StreamFaultInject`): delay and/or abort a percentage of the requests whose
/// headers match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultConfig {
    /// `delay_percent`: 0..=100.
    pub delay_percent: u32,
    /// `delay_duration`; zero when `delay_percent` is 0.
    pub delay: Duration,
    /// `abort_percent`: 0..=100, drawn independently of the delay.
    pub abort_percent: u32,
    /// `abort_status` (200..=599); 503 when `abort_percent` is 0 and it is not given.
    #[serde(serialize_with = "ser_status")]
    pub abort_status: StatusCode,
    /// `headers`: every one must match; empty = every request.
    pub headers: Vec<HeaderMatch>,
}

/// `mirror`: copies of a percentage of the requests to another cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorConfig {
    /// `cluster`: where the copies go.
    pub cluster: String,
    /// `amplification`: copies per mirrored request, 1..=[`MAX_AMPLIFICATION`] (default 1).
    pub amplification: u32,
    /// `percent`: 0..=100 (default 100).
    pub percent: u32,
}

/// `local_ratelimit`: one token bucket for every request of the listener (Envoy's local rate
/// limit). The bucket starts full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalRateLimitConfig {
    /// `max_tokens`: the bucket's size, at least 1.
    pub max_tokens: u64,
    /// `tokens_per_fill`: tokens added every `fill_interval`, at least 1 (default 1).
    pub tokens_per_fill: u64,
    /// `fill_interval`: more than 0.
    pub fill_interval: Duration,
}

/// `payload_limit` (MOSN's `payloadlimit`): refuse request bodies larger than a limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayloadLimitConfig {
    /// `max_entity_size`: bytes of body allowed, at least 1.
    pub max_entity_size: u64,
    /// `http_status` of the refusal (default 413).
    #[serde(serialize_with = "ser_status")]
    pub status: StatusCode,
}

/// `ip_access` (MOSN's `ipaccess`): allow or deny by client address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpAccessConfig {
    /// `header`: take the client address from the first entry of this header (for example
    /// `x-forwarded-for`) instead of the peer; the peer is used when the header is absent.
    #[serde(serialize_with = "ser_opt_header_name")]
    pub header: Option<HeaderName>,
    /// `ips`, in order: the first rule with a matching prefix decides.
    pub rules: Vec<IpRule>,
    /// `default_action`, when no rule matches.
    pub default_action: IpAction,
}

/// One `ips[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpRule {
    pub action: IpAction,
    /// `addrs`: "10.0.0.0/8" or a bare address (a host prefix).
    pub addrs: Vec<Cidr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpAction {
    Allow,
    Deny,
}

/// A condition on one request header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatch {
    #[serde(serialize_with = "ser_header_name")]
    pub name: HeaderName,
    pub rule: HeaderRule,
    /// Envoy's `invert_match`: the result is negated.
    pub invert: bool,
}

/// How a header's value is matched. Several values of one header are joined with "," first,
/// as Envoy does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderRule {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Pattern),
    /// `true`: the header is present; `false`: it is absent.
    Present(bool),
}

impl HeaderMatch {
    /// Over a request of any protocol ([`Request::joined_header`]).
    pub fn matches(&self, req: &(impl Request + ?Sized)) -> bool {
        let value = req.joined_header(&self.name);
        let present = value.is_some();
        let result = match (&self.rule, value) {
            (HeaderRule::Present(want), _) => present == *want,
            (_, None) => false,
            (rule, Some(joined)) => match rule {
                HeaderRule::Exact(s) => joined == *s,
                HeaderRule::Prefix(s) => joined.starts_with(s.as_str()),
                HeaderRule::Suffix(s) => joined.ends_with(s.as_str()),
                HeaderRule::Regex(p) => p.is_match(&joined),
                HeaderRule::Present(want) => present == *want,
            },
        };
        result != self.invert
    }
}

/// A regular expression that must match the *whole* value (RE2 and Envoy semantics), kept
/// with the text it was written as (compared and serialized as that text).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`, anchored at both ends. The error is the last line of the regex
    /// crate's message about `source` itself (e.g. "unclosed group").
    pub fn new(source: &str) -> Result<Pattern, String> {
        let reason = |e: regex::Error| {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default().trim();
            last.strip_prefix("error: ").unwrap_or(last).to_owned()
        };
        // Checked alone first, so that errors point into what the operator wrote.
        regex::Regex::new(source).map_err(reason)?;
        Ok(Pattern {
            source: source.to_owned(),
            regex: regex::Regex::new(&format!("^(?:{source})$")).map_err(reason)?,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn ser_status<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

fn ser_header_name<S: Serializer>(name: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

fn ser_opt_header_name<S: Serializer>(name: &Option<HeaderName>, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_some(n.as_str()),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw shapes (the `config` object of each filter)

/// `fault` config (MOSN's `StreamFaultInject`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a fault config object")]
struct RawFault {
    delay_percent: Option<u32>,
    delay_duration: Option<RawDuration>,
    abort_percent: Option<u32>,
    abort_status: Option<u16>,
    /// Read only to refuse it (see [`fault`]).
    upstream_cluster: Option<Value>,
    headers: Option<Vec<RawKeyValueMatch>>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawFault {
    const KEYS: &'static [&'static str] = &[
        "delay_percent",
        "delay_duration",
        "abort_percent",
        "abort_status",
        "upstream_cluster",
        "headers",
    ];
}

/// MOSN's `HeaderMatcher`: `{"name", "value", "regex": bool}`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a header matcher object")]
struct RawKeyValueMatch {
    name: Option<String>,
    value: Option<String>,
    regex: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawKeyValueMatch {
    const KEYS: &'static [&'static str] = &["name", "value", "regex"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mirror config object")]
struct RawMirror {
    cluster: Option<String>,
    amplification: Option<u32>,
    percent: Option<u32>,
    broadcast: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawMirror {
    const KEYS: &'static [&'static str] = &["cluster", "amplification", "percent", "broadcast"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a local_ratelimit config object")]
struct RawLocalRateLimit {
    max_tokens: Option<u64>,
    tokens_per_fill: Option<u64>,
    fill_interval: Option<RawDuration>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawLocalRateLimit {
    const KEYS: &'static [&'static str] = &["max_tokens", "tokens_per_fill", "fill_interval"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a payload_limit config object")]
struct RawPayloadLimit {
    max_entity_size: Option<u64>,
    http_status: Option<u16>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawPayloadLimit {
    const KEYS: &'static [&'static str] = &["max_entity_size", "http_status"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an ip_access config object")]
struct RawIpAccess {
    header: Option<String>,
    ips: Option<Vec<RawIpRule>>,
    default_action: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawIpAccess {
    const KEYS: &'static [&'static str] = &["header", "ips", "default_action"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an ips[] rule object")]
struct RawIpRule {
    action: Option<String>,
    addrs: Option<Vec<String>>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawIpRule {
    const KEYS: &'static [&'static str] = &["action", "addrs"];
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Validates a listener's `stream_filters` (path: the listener's path).
pub(super) fn stream_filters(
    raw: &[RawFilter],
    path: &str,
    clusters: &Clusters,
    d: &mut Diag,
) -> Vec<StreamFilterConfig> {
    let mut out = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let fp = index(path, "stream_filters", i);
        d.extra(&fp, &f.extra, RawFilter::KEYS);
        let Some(kind) = f.kind.as_deref() else {
            d.error(&join(&fp, "type"), format!("missing type ({SUPPORTED})"));
            continue;
        };
        let known = [
            "fault",
            "mirror",
            "rbac",
            "local_ratelimit",
            "payload_limit",
            "ip_access",
            "ipaccess",
        ];
        if !known.contains(&kind) {
            d.error(
                &join(&fp, "type"),
                format!("unknown stream filter {kind:?} ({SUPPORTED})"),
            );
            continue;
        }
        let cp = join(&fp, "config");
        let Some(value) = &f.config else {
            d.error(&cp, format!("missing config of the {kind} filter"));
            continue;
        };
        let cfg = match kind {
            "fault" => fault(value, &cp, d).map(StreamFilterConfig::Fault),
            "mirror" => mirror(value, &cp, clusters, d).map(StreamFilterConfig::Mirror),
            "rbac" => rbac::rbac(value, &cp, d).map(StreamFilterConfig::Rbac),
            "local_ratelimit" => {
                local_ratelimit(value, &cp, d).map(StreamFilterConfig::LocalRateLimit)
            }
            "payload_limit" => payload_limit(value, &cp, d).map(StreamFilterConfig::PayloadLimit),
            _ => ip_access(value, &cp, d).map(StreamFilterConfig::IpAccess),
        };
        out.extend(cfg);
    }
    out
}

fn fault(value: &Value, path: &str, d: &mut Diag) -> Option<FaultConfig> {
    let raw: RawFault = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawFault::KEYS);
    let errors_before = d.errors.len();
    if raw.upstream_cluster.is_some() {
        d.error(
            &join(path, "upstream_cluster"),
            "not supported: stream filters run before routing, so the upstream cluster is not \
             known yet; remove it to inject faults into every matching request of this listener",
        );
    }
    let delay_percent = percent(path, "delay_percent", raw.delay_percent, 0, d);
    let abort_percent = percent(path, "abort_percent", raw.abort_percent, 0, d);
    let dp = join(path, "delay_duration");
    let delay = match (&raw.delay_duration, delay_percent) {
        (Some(r), _) => d.duration(&dp, r).unwrap_or_default(),
        (None, 0) => Duration::ZERO,
        (None, _) => {
            d.error(
                &dp,
                "missing delay_duration (needed when delay_percent > 0)",
            );
            Duration::ZERO
        }
    };
    if delay_percent > 0 && delay.is_zero() && raw.delay_duration.is_some() {
        d.error(&dp, "must be more than 0 when delay_percent > 0");
    }
    let sp = join(path, "abort_status");
    let abort_status = match raw.abort_status {
        Some(s) => status(&sp, s, d),
        None if abort_percent > 0 => {
            d.error(&sp, "missing abort_status (needed when abort_percent > 0)");
            None
        }
        None => Some(StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut headers = Vec::new();
    for (i, h) in raw.headers.iter().flatten().enumerate() {
        headers.extend(key_value_match(h, &index(path, "headers", i), d));
    }
    if delay_percent == 0 && abort_percent == 0 {
        d.warn(format!(
            "{path}: delay_percent and abort_percent are both 0; this fault filter does nothing"
        ));
    }
    if d.errors.len() != errors_before {
        return None;
    }
    Some(FaultConfig {
        delay_percent,
        delay,
        abort_percent,
        abort_status: abort_status?,
        headers,
    })
}

/// MOSN's `{"name", "value", "regex"}` header matcher.
fn key_value_match(raw: &RawKeyValueMatch, path: &str, d: &mut Diag) -> Option<HeaderMatch> {
    d.extra(path, &raw.extra, RawKeyValueMatch::KEYS);
    let name = header_name(&join(path, "name"), raw.name.as_deref(), d);
    let vp = join(path, "value");
    let Some(value) = &raw.value else {
        d.error(&vp, "missing value");
        return None;
    };
    let rule = if raw.regex == Some(true) {
        HeaderRule::Regex(pattern(&vp, value, d)?)
    } else {
        HeaderRule::Exact(value.clone())
    };
    Some(HeaderMatch {
        name: name?,
        rule,
        invert: false,
    })
}

fn mirror(value: &Value, path: &str, clusters: &Clusters, d: &mut Diag) -> Option<MirrorConfig> {
    let raw: RawMirror = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawMirror::KEYS);
    let errors_before = d.errors.len();
    let cp = join(path, "cluster");
    match &raw.cluster {
        Some(c) => clusters.check_ref(&cp, c, d),
        None => d.error(&cp, "missing cluster (where the copies go)"),
    }
    if raw.broadcast == Some(true) {
        d.error(
            &join(path, "broadcast"),
            "not supported: each copy goes to one host chosen by the cluster's load balancer",
        );
    }
    let amplification = raw.amplification.unwrap_or(1);
    if !(1..=MAX_AMPLIFICATION).contains(&amplification) {
        d.error(
            &join(path, "amplification"),
            format!("{amplification} is out of range (1..={MAX_AMPLIFICATION})"),
        );
    }
    let percent = percent(path, "percent", raw.percent, 100, d);
    if d.errors.len() != errors_before {
        return None;
    }
    Some(MirrorConfig {
        cluster: raw.cluster?,
        amplification,
        percent,
    })
}

fn local_ratelimit(value: &Value, path: &str, d: &mut Diag) -> Option<LocalRateLimitConfig> {
    let raw: RawLocalRateLimit = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawLocalRateLimit::KEYS);
    let errors_before = d.errors.len();
    let mp = join(path, "max_tokens");
    let max_tokens = match raw.max_tokens {
        None => {
            d.error(&mp, "missing max_tokens (the bucket's size)");
            0
        }
        Some(0) => {
            d.error(&mp, "must be at least 1");
            0
        }
        Some(n) => n,
    };
    let tokens_per_fill = raw.tokens_per_fill.unwrap_or(1);
    if tokens_per_fill == 0 {
        d.error(&join(path, "tokens_per_fill"), "must be at least 1");
    }
    let fp = join(path, "fill_interval");
    let fill_interval = match &raw.fill_interval {
        None => {
            d.error(&fp, "missing fill_interval (e.g. \"1s\")");
            None
        }
        Some(r) => d.duration(&fp, r),
    };
    if fill_interval.is_some_and(|f| f.is_zero()) {
        d.error(&fp, "must be more than 0");
    }
    if d.errors.len() != errors_before {
        return None;
    }
    Some(LocalRateLimitConfig {
        max_tokens,
        tokens_per_fill,
        fill_interval: fill_interval?,
    })
}

fn payload_limit(value: &Value, path: &str, d: &mut Diag) -> Option<PayloadLimitConfig> {
    let raw: RawPayloadLimit = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawPayloadLimit::KEYS);
    let errors_before = d.errors.len();
    let mp = join(path, "max_entity_size");
    match raw.max_entity_size {
        None => d.error(
            &mp,
            "missing max_entity_size (bytes of request body allowed)",
        ),
        Some(0) => d.error(
            &mp,
            "must be at least 1 (remove the filter to allow bodies of any size)",
        ),
        Some(_) => {}
    }
    let status = match raw.http_status {
        Some(s) => status(&join(path, "http_status"), s, d),
        None => Some(DEFAULT_PAYLOAD_STATUS),
    };
    if d.errors.len() != errors_before {
        return None;
    }
    Some(PayloadLimitConfig {
        max_entity_size: raw.max_entity_size?,
        status: status?,
    })
}

fn ip_access(value: &Value, path: &str, d: &mut Diag) -> Option<IpAccessConfig> {
    let raw: RawIpAccess = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawIpAccess::KEYS);
    let errors_before = d.errors.len();
    let header = match &raw.header {
        Some(h) if h.is_empty() => None,
        Some(h) => header_name(&join(path, "header"), Some(h), d),
        None => None,
    };
    let mut rules = Vec::new();
    for (i, r) in raw.ips.iter().flatten().enumerate() {
        let rp = index(path, "ips", i);
        d.extra(&rp, &r.extra, RawIpRule::KEYS);
        let action = ip_action(&join(&rp, "action"), r.action.as_deref(), d);
        let mut addrs = Vec::new();
        for (j, a) in r.addrs.iter().flatten().enumerate() {
            addrs.extend(cidr(&index(&rp, "addrs", j), a, d));
        }
        if r.addrs.as_ref().is_none_or(Vec::is_empty) {
            d.error(&join(&rp, "addrs"), "missing addrs (at least one prefix)");
        }
        if let Some(action) = action {
            rules.push(IpRule { action, addrs });
        }
    }
    let default_action = ip_action(
        &join(path, "default_action"),
        raw.default_action.as_deref(),
        d,
    );
    if d.errors.len() != errors_before {
        return None;
    }
    Some(IpAccessConfig {
        header,
        rules,
        default_action: default_action?,
    })
}

fn ip_action(path: &str, raw: Option<&str>, d: &mut Diag) -> Option<IpAction> {
    match raw {
        Some(s) if s.eq_ignore_ascii_case("allow") => Some(IpAction::Allow),
        Some(s) if s.eq_ignore_ascii_case("deny") => Some(IpAction::Deny),
        Some(s) => {
            d.error(
                path,
                format!("invalid action {s:?} (\"allow\" or \"deny\")"),
            );
            None
        }
        None => {
            d.error(path, "missing action (\"allow\" or \"deny\")");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared field helpers

/// A percentage `<path>.<key>`, 0..=100.
fn percent(path: &str, key: &str, raw: Option<u32>, default: u32, d: &mut Diag) -> u32 {
    match raw {
        None => default,
        Some(p) if p <= 100 => p,
        Some(p) => {
            d.error(&join(path, key), format!("{p} is out of range (0..=100)"));
            0
        }
    }
}

/// A status a filter answers with: 200..=599.
fn status(path: &str, raw: u16, d: &mut Diag) -> Option<StatusCode> {
    match StatusCode::from_u16(raw) {
        Ok(s) if (200..=599).contains(&raw) => Some(s),
        _ => {
            d.error(path, format!("invalid HTTP status {raw} (200..=599)"));
            None
        }
    }
}

/// A header name at `path`, lowercased.
fn header_name(path: &str, raw: Option<&str>, d: &mut Diag) -> Option<HeaderName> {
    let Some(raw) = raw else {
        d.error(path, "missing header name");
        return None;
    };
    HeaderName::from_bytes(raw.to_ascii_lowercase().as_bytes())
        .map_err(|_| d.error(path, format!("invalid header name {raw:?}")))
        .ok()
}

fn pattern(path: &str, raw: &str, d: &mut Diag) -> Option<Pattern> {
    Pattern::new(raw)
        .map_err(|e| d.error(path, format!("invalid regex {raw:?}: {e}")))
        .ok()
}

/// "10.0.0.0/8", or a bare address (a host prefix). Host bits are cleared with a warning.
fn cidr(path: &str, raw: &str, d: &mut Diag) -> Option<Cidr> {
    match parse_cidr(raw) {
        Ok((addr, prefix_len)) => Some(masked_cidr(path, raw, addr, prefix_len, d)),
        Err(reason) => {
            d.error(path, format!("invalid prefix {raw:?}: {reason}"));
            None
        }
    }
}

/// The prefix with host bits cleared; a warning when there were some.
fn masked_cidr(path: &str, raw: &str, addr: std::net::IpAddr, len: u8, d: &mut Diag) -> Cidr {
    use std::net::IpAddr;
    let masked = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    };
    if masked != addr {
        d.warn(format!(
            "{path}: {raw:?} has host bits set; it means {masked}/{len}"
        ));
    }
    Cidr {
        addr: masked,
        prefix_len: len,
    }
}
