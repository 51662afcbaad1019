//! Upstream resilience configuration of a cluster: active health checks (`health_check`),
//! outlier detection (`outlier_detection`) and circuit breakers (`circuit_breakers`).
//!
//! Raw shapes, validated model types and their validation live together in this file.
//!
//! - `health_check` follows MOSN (`v2.HealthCheck`): `protocol`, `timeout`, `interval`,
//!   `interval_jitter`, `initial_delay_seconds`, `healthy_threshold`, `unhealthy_threshold`,
//!   `check_config`. The HTTP check reads `check_config.{path, host, codes, port, method}`,
//!   or MOSN's nested `check_config.http_check_config.{path, domain, codes, port, method}`.
//!   An X-Protocol's name (`bolt`, `dubbo`) sends that protocol's heartbeat (MOSN's Bolt
//!   heartbeat check).
//! - `outlier_detection` uses Envoy's names (MOSN has none).
//! - `circuit_breakers` accepts MOSN's array of thresholds and Envoy's `{"thresholds": [...]}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diag::{Diag, index, join};
use super::raw::{Extra, RawDuration};

/// MOSN's `DefaultTimeout`: a check that takes longer fails.
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);
/// MOSN's `DefaultInterval`.
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(15);
/// MOSN's `firstInterval`: the first check runs one second after start.
pub const DEFAULT_HC_INITIAL_DELAY: Duration = Duration::from_secs(1);
/// MOSN leaves the thresholds at Go's zero (which never changes a host) and Envoy requires
/// them; 2 successes to come back and 3 failures to go down are the usual choices (and the
/// values of MOSN's own examples).
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// See [`DEFAULT_HEALTHY_THRESHOLD`].
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// The HTTP check's path when none is given.
pub const DEFAULT_HC_PATH: &str = "/";

/// Envoy's outlier detection defaults (`consecutive_5xx`, `consecutive_gateway_failure`).
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
/// See [`DEFAULT_CONSECUTIVE_5XX`].
pub const DEFAULT_CONSECUTIVE_GATEWAY_FAILURE: u32 = 5;
/// Envoy's `interval`: how often ejections are reviewed (and ended).
pub const DEFAULT_OUTLIER_INTERVAL: Duration = Duration::from_secs(10);
/// Envoy's `base_ejection_time`.
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// Envoy's `max_ejection_time`.
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// Envoy's `max_ejection_percent` (one host may always be ejected).
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
/// Envoy's `enforcing_consecutive_*`: eject every time a threshold is reached.
pub const DEFAULT_ENFORCING: u32 = 100;

/// Envoy's circuit breaker defaults (MOSN's Go zero values mean "unset").
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// See [`DEFAULT_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_PENDING_REQUESTS: u32 = 1024;
/// See [`DEFAULT_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
/// See [`DEFAULT_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_RETRIES: u32 = 3;

// ---------------------------------------------------------------------------------------
// Model

/// `health_check`. Hosts start healthy (as in MOSN) and are marked down only by failing
/// checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckConfig {
    /// `protocol`: what one check does.
    pub kind: HealthCheckKind,
    /// `timeout` (default [`DEFAULT_HC_TIMEOUT`]): one check, connect included.
    pub timeout: Duration,
    /// `interval` (default [`DEFAULT_HC_INTERVAL`]): from the end of one check to the next.
    pub interval: Duration,
    /// `interval_jitter` (default 0): a random extra wait in `0..interval_jitter`.
    pub interval_jitter: Duration,
    /// `initial_delay_seconds` (or `initial_delay`; default [`DEFAULT_HC_INITIAL_DELAY`]).
    pub initial_delay: Duration,
    /// `healthy_threshold` (default [`DEFAULT_HEALTHY_THRESHOLD`]): consecutive successes
    /// that bring a host marked down back.
    pub healthy_threshold: u32,
    /// `unhealthy_threshold` (default [`DEFAULT_UNHEALTHY_THRESHOLD`]): consecutive failures
    /// that mark a host down.
    pub unhealthy_threshold: u32,
}

/// `health_check.protocol`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum HealthCheckKind {
    /// `tcp`: a connect that succeeds within the timeout.
    Tcp,
    /// `http` / `Http1`: `GET path` answered with an expected status.
    Http(HttpCheckConfig),
    /// An X-Protocol's name (`bolt`, `dubbo`; see [`crate::protocol::x_protocol`]): its
    /// heartbeat answered with a successful heartbeat reply.
    XProtocol(&'static str),
}

/// `health_check.check_config` of an HTTP check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpCheckConfig {
    /// `path` (default [`DEFAULT_HC_PATH`]), query included.
    pub path: String,
    /// `host` (MOSN: `domain`): the `Host` header (default: the checked address).
    pub host: Option<String>,
    /// `method` (default `GET`).
    pub method: String,
    /// `codes`: inclusive status ranges that pass (default 200-299; MOSN's is 200 alone).
    pub codes: Vec<CodeRange>,
    /// `port`: check this port of the host's IP instead of the host's own port.
    pub port: Option<u16>,
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CodeRange {
    pub start: u16,
    pub end: u16,
}

impl HttpCheckConfig {
    /// Whether `status` passes the check.
    pub fn accepts(&self, status: u16) -> bool {
        self.codes
            .iter()
            .any(|r| (r.start..=r.end).contains(&status))
    }
}

/// `outlier_detection` (Envoy's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierConfig {
    /// `consecutive_5xx`: 5xx responses (gateway failures included) in a row that eject.
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure`: 502/503/504 or connect failures, timeouts and resets
    /// in a row that eject.
    pub consecutive_gateway_failure: u32,
    /// `interval`: how often ejections are reviewed; an ejection ends at the first review
    /// after its time is up.
    pub interval: Duration,
    /// `base_ejection_time`: the first ejection's length; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// `max_ejection_time`: the longest ejection (never less than `base_ejection_time`).
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`: at most this share of hosts ejected at once (one host may
    /// always be ejected).
    pub max_ejection_percent: u32,
    /// `enforcing_consecutive_5xx`: the chance in percent that reaching `consecutive_5xx`
    /// ejects.
    pub enforcing_consecutive_5xx: u32,
    /// `enforcing_consecutive_gateway_failure`: likewise for gateway failures.
    pub enforcing_consecutive_gateway_failure: u32,
}

impl Default for OutlierConfig {
    fn default() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: DEFAULT_CONSECUTIVE_5XX,
            consecutive_gateway_failure: DEFAULT_CONSECUTIVE_GATEWAY_FAILURE,
            interval: DEFAULT_OUTLIER_INTERVAL,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            enforcing_consecutive_5xx: DEFAULT_ENFORCING,
            enforcing_consecutive_gateway_failure: DEFAULT_ENFORCING,
        }
    }
}

/// `circuit_breakers` (absent: Envoy's defaults). Only the `default` priority applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakersConfig {
    /// `max_connections`: upstream connections open at once.
    pub max_connections: u32,
    /// `max_pending_requests`: requests waiting for a connection.
    pub max_pending_requests: u32,
    /// `max_requests`: requests in flight.
    pub max_requests: u32,
    /// `max_retries`: retries in flight.
    pub max_retries: u32,
}

impl Default for CircuitBreakersConfig {
    fn default() -> CircuitBreakersConfig {
        CircuitBreakersConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw shapes

/// `health_check` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a health_check object")]
struct RawHealthCheck {
    protocol: Option<String>,
    timeout: Option<RawDuration>,
    interval: Option<RawDuration>,
    interval_jitter: Option<RawDuration>,
    #[serde(alias = "initial_delay")]
    initial_delay_seconds: Option<RawDuration>,
    healthy_threshold: Option<u64>,
    unhealthy_threshold: Option<u64>,
    check_config: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawHealthCheck {
    const KEYS: &'static [&'static str] = &[
        "protocol",
        "timeout",
        "interval",
        "interval_jitter",
        "initial_delay_seconds",
        "initial_delay",
        "healthy_threshold",
        "unhealthy_threshold",
        "check_config",
    ];
}

/// `check_config` (and MOSN's nested `check_config.http_check_config`) of an HTTP check.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a check_config object")]
struct RawHttpCheck {
    path: Option<String>,
    #[serde(alias = "domain")]
    host: Option<String>,
    method: Option<String>,
    scheme: Option<String>,
    codes: Option<Vec<Value>>,
    port: Option<u64>,
    http_check_config: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawHttpCheck {
    const KEYS: &'static [&'static str] = &[
        "path",
        "host",
        "domain",
        "method",
        "scheme",
        "codes",
        "port",
        "http_check_config",
    ];
}

/// `outlier_detection` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an outlier_detection object")]
struct RawOutlier {
    consecutive_5xx: Option<u64>,
    consecutive_gateway_failure: Option<u64>,
    interval: Option<RawDuration>,
    base_ejection_time: Option<RawDuration>,
    max_ejection_time: Option<RawDuration>,
    max_ejection_percent: Option<u64>,
    enforcing_consecutive_5xx: Option<u64>,
    enforcing_consecutive_gateway_failure: Option<u64>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawOutlier {
    const KEYS: &'static [&'static str] = &[
        "consecutive_5xx",
        "consecutive_gateway_failure",
        "interval",
        "base_ejection_time",
        "max_ejection_time",
        "max_ejection_percent",
        "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure",
    ];
}

/// Envoy's `circuit_breakers` object.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a circuit_breakers object or an array of thresholds")]
struct RawBreakers {
    thresholds: Option<Vec<Value>>,
    #[serde(flatten)]
    extra: Extra,
}

/// One entry of the thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a thresholds object")]
struct RawThresholds {
    priority: Option<String>,
    max_connections: Option<u64>,
    max_pending_requests: Option<u64>,
    max_requests: Option<u64>,
    max_retries: Option<u64>,
    #[serde(flatten)]
    extra: Extra,
}

impl RawThresholds {
    const KEYS: &'static [&'static str] = &[
        "priority",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ];
}

// ---------------------------------------------------------------------------------------
// Validation

/// A duration field: absent gives `default`; `zero_ok` false refuses "0s".
fn duration(
    raw: Option<&RawDuration>,
    path: &str,
    key: &str,
    default: Duration,
    zero_ok: bool,
    d: &mut Diag,
) -> Duration {
    let Some(raw) = raw else { return default };
    let p = join(path, key);
    match d.duration(&p, raw) {
        Some(Duration::ZERO) if !zero_ok => {
            d.error(&p, format!("{key} must be greater than 0"));
            default
        }
        Some(v) => v,
        None => default,
    }
}

/// An integer field in `min..=max`.
fn bounded(
    raw: Option<u64>,
    path: &str,
    key: &str,
    default: u32,
    (min, max): (u32, u32),
    why_min: &str,
    d: &mut Diag,
) -> u32 {
    match raw {
        None => default,
        Some(v) if v < u64::from(min) => {
            d.error(
                &join(path, key),
                format!("{key} must be at least {min}{why_min}"),
            );
            default
        }
        Some(v) if v > u64::from(max) => {
            d.error(
                &join(path, key),
                format!("{key} {v} is out of range ({min}..={max})"),
            );
            default
        }
        Some(v) => v as u32,
    }
}

/// `health_check` (absent or `null`: no active checks).
pub(super) fn health_check(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> Option<HealthCheckConfig> {
    let value = value.filter(|v| !v.is_null())?;
    let raw: RawHealthCheck = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawHealthCheck::KEYS);
    let errors_before = d.errors.len();
    let p = join(path, "protocol");
    let protocol = raw.protocol.as_deref().map(str::to_ascii_lowercase);
    let x = protocol.as_deref().and_then(crate::protocol::x_protocol);
    let kind = match protocol.as_deref() {
        None => {
            d.error(&p, format!("missing protocol (supported: {})", supported()));
            None
        }
        Some("tcp") => {
            if raw.check_config.as_ref().is_some_and(|c| !c.is_null()) {
                d.warn(format!(
                    "ignoring {}: a tcp health check only connects",
                    join(path, "check_config")
                ));
            }
            Some(HealthCheckKind::Tcp)
        }
        Some("http" | "http1") => {
            http_check(raw.check_config.as_ref(), &join(path, "check_config"), d)
                .map(HealthCheckKind::Http)
        }
        Some(name) if let Some(x) = x => {
            if raw.check_config.as_ref().is_some_and(|c| !c.is_null()) {
                d.warn(format!(
                    "ignoring {}: a {name} health check only sends heartbeats",
                    join(path, "check_config")
                ));
            }
            Some(HealthCheckKind::XProtocol(x.name()))
        }
        Some(_) => {
            d.error(
                &p,
                format!(
                    "unsupported health check protocol {:?} (supported: {})",
                    raw.protocol.as_deref().unwrap_or_default(),
                    supported()
                ),
            );
            None
        }
    };
    let timeout = duration(
        raw.timeout.as_ref(),
        path,
        "timeout",
        DEFAULT_HC_TIMEOUT,
        false,
        d,
    );
    let interval = duration(
        raw.interval.as_ref(),
        path,
        "interval",
        DEFAULT_HC_INTERVAL,
        false,
        d,
    );
    let interval_jitter = duration(
        raw.interval_jitter.as_ref(),
        path,
        "interval_jitter",
        Duration::ZERO,
        true,
        d,
    );
    let initial_delay = duration(
        raw.initial_delay_seconds.as_ref(),
        path,
        "initial_delay_seconds",
        DEFAULT_HC_INITIAL_DELAY,
        true,
        d,
    );
    let threshold =
        |raw, key, default, d: &mut Diag| bounded(raw, path, key, default, (1, u32::MAX), "", d);
    let healthy_threshold = threshold(
        raw.healthy_threshold,
        "healthy_threshold",
        DEFAULT_HEALTHY_THRESHOLD,
        d,
    );
    let unhealthy_threshold = threshold(
        raw.unhealthy_threshold,
        "unhealthy_threshold",
        DEFAULT_UNHEALTHY_THRESHOLD,
        d,
    );
    if d.errors.len() != errors_before {
        return None;
    }
    Some(HealthCheckConfig {
        kind: kind?,
        timeout,
        interval,
        interval_jitter,
        initial_delay,
        healthy_threshold,
        unhealthy_threshold,
    })
}

/// The `health_check.protocol` names, quoted, for error messages: `tcp`, `http` and every
/// X-Protocol.
fn supported() -> String {
    let x = crate::protocol::x_protocols().iter().map(|p| p.name());
    ["tcp", "http"]
        .into_iter()
        .chain(x)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `check_config` of an HTTP check (absent: `GET /`, 2xx).
fn http_check(value: Option<&Value>, path: &str, d: &mut Diag) -> Option<HttpCheckConfig> {
    let mut raw = match value.filter(|v| !v.is_null()) {
        None => RawHttpCheck::default(),
        Some(v) => d.decode::<RawHttpCheck>(path, v)?,
    };
    d.extra(path, &raw.extra, RawHttpCheck::KEYS);
    // MOSN nests the HTTP settings one level down; read them from there.
    let mut path = path.to_owned();
    if let Some(nested) = raw.http_check_config.take().filter(|v| !v.is_null()) {
        path = join(&path, "http_check_config");
        raw = d.decode::<RawHttpCheck>(&path, &nested)?;
        let mut extra = std::mem::take(&mut raw.extra);
        if extra.remove("timeout").is_some() {
            d.warn(format!(
                "ignoring {}: the health_check's own timeout applies",
                join(&path, "timeout")
            ));
        }
        d.extra(&path, &extra, RawHttpCheck::KEYS);
        if raw.http_check_config.is_some() {
            d.error(
                &join(&path, "http_check_config"),
                "http_check_config cannot be nested twice",
            );
            return None;
        }
    }
    let errors_before = d.errors.len();
    let check_text = |v: &str, p: &str, what: &str, d: &mut Diag| {
        if v.is_empty()
            || v.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            d.error(
                p,
                format!(
                    "invalid {what} {v:?}: must be non-empty, without spaces or control characters"
                ),
            );
        }
    };
    let http_path = raw.path.unwrap_or_else(|| DEFAULT_HC_PATH.to_owned());
    let pp = join(&path, "path");
    check_text(&http_path, &pp, "path", d);
    if !http_path.starts_with('/') {
        d.error(&pp, format!("path {http_path:?} must start with \"/\""));
    }
    if let Some(h) = &raw.host {
        check_text(h, &join(&path, "host"), "host", d);
    }
    let method = raw.method.unwrap_or_else(|| "GET".to_owned());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        d.error(
            &join(&path, "method"),
            format!("invalid method {method:?} (expected an upper-case method such as \"GET\")"),
        );
    }
    match raw.scheme.as_deref() {
        None | Some("http") => {}
        Some(other) => d.error(
            &join(&path, "scheme"),
            format!("unsupported scheme {other:?}: health checks speak plain \"http\" only"),
        ),
    }
    let port = match raw.port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            d.error(
                &join(&path, "port"),
                format!("port {p} is out of range (1..=65535)"),
            );
            None
        }
    };
    let codes = match raw.codes {
        None => vec![CodeRange {
            start: 200,
            end: 299,
        }],
        Some(items) if items.is_empty() => {
            d.error(
                &join(&path, "codes"),
                "codes must not be empty (leave it out for 200-299)",
            );
            Vec::new()
        }
        Some(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| code_range(v, &index(&path, "codes", i), d))
            .collect(),
    };
    (d.errors.len() == errors_before).then_some(HttpCheckConfig {
        path: http_path,
        host: raw.host,
        method,
        codes,
        port,
    })
}

/// One `codes` entry: `200`, `"200-299"`, `{"start": 200, "end": 299}` (MOSN: `Start`/`End`).
fn code_range(v: &Value, path: &str, d: &mut Diag) -> Option<CodeRange> {
    const EXPECTED: &str =
        "expected a status code (200), a range \"200-299\" or {\"start\": 200, \"end\": 299}";
    let code = |v: Option<&Value>| v.and_then(Value::as_u64);
    let (start, end) = match v {
        Value::Number(_) => (code(Some(v)), code(Some(v))),
        Value::String(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            (a.trim().parse().ok(), b.trim().parse().ok())
        }
        Value::Object(o) => {
            let get = |k: &str, go: &str| code(o.get(k).or_else(|| o.get(go)));
            let (s, e) = (get("start", "Start"), get("end", "End"));
            (s, e.or(s))
        }
        _ => (None, None),
    };
    let (Some(start), Some(end)) = (start, end) else {
        d.error(path, format!("invalid status code {v}: {EXPECTED}"));
        return None;
    };
    if !(100..=599).contains(&start) || !(100..=599).contains(&end) || start > end {
        d.error(
            path,
            format!("invalid status range {start}-{end}: codes are 100..=599, start <= end"),
        );
        return None;
    }
    Some(CodeRange {
        start: start as u16,
        end: end as u16,
    })
}

/// `outlier_detection` (absent or `null`: no outlier detection).
pub(super) fn outlier_detection(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> Option<OutlierConfig> {
    let value = value.filter(|v| !v.is_null())?;
    let raw: RawOutlier = d.decode(path, value)?;
    d.extra(path, &raw.extra, RawOutlier::KEYS);
    let errors_before = d.errors.len();
    let def = OutlierConfig::default();
    const OFF: &str = " (to stop this kind of ejection, set its enforcing_* to 0)";
    let consecutive_5xx = bounded(
        raw.consecutive_5xx,
        path,
        "consecutive_5xx",
        def.consecutive_5xx,
        (1, u32::MAX),
        OFF,
        d,
    );
    let consecutive_gateway_failure = bounded(
        raw.consecutive_gateway_failure,
        path,
        "consecutive_gateway_failure",
        def.consecutive_gateway_failure,
        (1, u32::MAX),
        OFF,
        d,
    );
    let percent =
        |raw, key, default, d: &mut Diag| bounded(raw, path, key, default, (0, 100), "", d);
    let max_ejection_percent = percent(
        raw.max_ejection_percent,
        "max_ejection_percent",
        def.max_ejection_percent,
        d,
    );
    let enforcing_consecutive_5xx = percent(
        raw.enforcing_consecutive_5xx,
        "enforcing_consecutive_5xx",
        def.enforcing_consecutive_5xx,
        d,
    );
    let enforcing_consecutive_gateway_failure = percent(
        raw.enforcing_consecutive_gateway_failure,
        "enforcing_consecutive_gateway_failure",
        def.enforcing_consecutive_gateway_failure,
        d,
    );
    let interval = duration(
        raw.interval.as_ref(),
        path,
        "interval",
        def.interval,
        false,
        d,
    );
    let base_ejection_time = duration(
        raw.base_ejection_time.as_ref(),
        path,
        "base_ejection_time",
        def.base_ejection_time,
        false,
        d,
    );
    // Envoy: absent, the larger of 300s and base_ejection_time.
    let max_ejection_time = match &raw.max_ejection_time {
        None => def.max_ejection_time.max(base_ejection_time),
        Some(_) => {
            let max = duration(
                raw.max_ejection_time.as_ref(),
                path,
                "max_ejection_time",
                def.max_ejection_time,
                false,
                d,
            );
            if max < base_ejection_time {
                d.error(
                    &join(path, "max_ejection_time"),
                    format!(
                        "max_ejection_time ({max:?}) must not be less than base_ejection_time \
                         ({base_ejection_time:?})"
                    ),
                );
            }
            max
        }
    };
    (d.errors.len() == errors_before).then_some(OutlierConfig {
        consecutive_5xx,
        consecutive_gateway_failure,
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
        enforcing_consecutive_5xx,
        enforcing_consecutive_gateway_failure,
    })
}

/// `circuit_breakers`: MOSN's `[{"priority": "default", ...}]` or Envoy's
/// `{"thresholds": [...]}`; absent, `null` or without a default entry: Envoy's defaults.
pub(super) fn circuit_breakers(
    value: Option<&Value>,
    path: &str,
    d: &mut Diag,
) -> CircuitBreakersConfig {
    let mut out = CircuitBreakersConfig::default();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return out;
    };
    let (items, base) = match value {
        Value::Array(items) => (items.clone(), path.to_owned()),
        _ => {
            let Some(raw) = d.decode::<RawBreakers>(path, value) else {
                return out;
            };
            d.extra(path, &raw.extra, &["thresholds"]);
            (raw.thresholds.unwrap_or_default(), join(path, "thresholds"))
        }
    };
    let at = |i| {
        if base == path {
            format!("{path}[{i}]")
        } else {
            index(path, "thresholds", i)
        }
    };
    let mut default_at: Option<String> = None;
    for (i, item) in items.iter().enumerate() {
        let p = at(i);
        let Some(t) = d.decode::<RawThresholds>(&p, item) else {
            continue;
        };
        d.extra(&p, &t.extra, RawThresholds::KEYS);
        match t.priority.as_deref() {
            None | Some("default" | "DEFAULT") => {}
            Some("high" | "HIGH") => {
                d.warn(format!(
                    "ignoring {p}: requests carry no priority here, only \"default\" thresholds apply"
                ));
                continue;
            }
            Some(other) => {
                d.error(
                    &join(&p, "priority"),
                    format!("unknown priority {other:?} (expected \"default\" or \"high\")"),
                );
                continue;
            }
        }
        if let Some(first) = &default_at {
            d.error(
                &join(&p, "priority"),
                format!("duplicate \"default\" thresholds (first at {first})"),
            );
            continue;
        }
        default_at = Some(p.clone());
        const ZERO: &str = " (0 would refuse everything; leave it out for the default)";
        let limit = |raw, key, default, d: &mut Diag| {
            bounded(raw, &p, key, default, (1, u32::MAX), ZERO, d)
        };
        // 0 retries is meaningful: no retries at all.
        let max_retries = bounded(
            t.max_retries,
            &p,
            "max_retries",
            DEFAULT_MAX_RETRIES,
            (0, u32::MAX),
            "",
            d,
        );
        out = CircuitBreakersConfig {
            max_connections: limit(
                t.max_connections,
                "max_connections",
                DEFAULT_MAX_CONNECTIONS,
                d,
            ),
            max_pending_requests: limit(
                t.max_pending_requests,
                "max_pending_requests",
                DEFAULT_MAX_PENDING_REQUESTS,
                d,
            ),
            max_requests: limit(t.max_requests, "max_requests", DEFAULT_MAX_REQUESTS, d),
            max_retries,
        };
    }
    out
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
