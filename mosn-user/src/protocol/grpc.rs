//! gRPC over HTTP/2 as the proxy sees it: a request is gRPC by its `content-type`; its
//! `grpc-timeout` bounds the route's timeout; the proxy's own errors are trailers-only
//! responses with a `grpc-status`; metrics name the service and method from `:path`.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// `grpc-status` codes the proxy uses or retries on (the gRPC spec's numbering).
pub mod status {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// The `grpc-status` an Envoy `retry_on` gRPC condition names (`cancelled`,
/// `deadline-exceeded`, `resource-exhausted`, `unavailable`).
pub fn retry_condition(name: &str) -> Option<u32> {
    match name {
        "cancelled" => Some(status::CANCELLED),
        "deadline-exceeded" => Some(status::DEADLINE_EXCEEDED),
        "resource-exhausted" => Some(status::RESOURCE_EXHAUSTED),
        "unavailable" => Some(status::UNAVAILABLE),
        _ => None,
    }
}

/// Whether a request or response with these headers is gRPC (`application/grpc`, with or
/// without a `+proto`-style suffix or parameters).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.as_bytes();
            ct.len() >= 16
                && ct[..16].eq_ignore_ascii_case(b"application/grpc")
                && matches!(ct.get(16), None | Some(b'+' | b';'))
        })
}

/// `grpc-timeout` (`<1..8 digits><H|M|S|m|u|n>`), if present and well formed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit[0] {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-status` in `headers` (response headers of a trailers-only response, or
/// trailers).
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The gRPC status a proxy would give for an HTTP status it cannot forward as one (the
/// gRPC spec's "HTTP to gRPC status code mapping").
pub fn status_for_http(code: u16) -> u32 {
    match code {
        400 => status::INTERNAL,
        401 => status::UNAUTHENTICATED,
        403 => status::PERMISSION_DENIED,
        404 => status::UNIMPLEMENTED,
        429 | 502..=504 => status::UNAVAILABLE,
        _ => status::UNKNOWN,
    }
}

/// `(service, method)` of a gRPC `:path` (`/package.Service/Method`); both empty strings
/// when the path has another shape.
pub fn service_method(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.split_once('/') {
        Some((s, m)) if !s.is_empty() && !m.is_empty() && !m.contains('/') => (s, m),
        _ => ("", ""),
    }
}

/// `grpc-message` percent-encoded as the spec asks (bytes outside printable ASCII, and `%`).
pub fn message_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The name gRPC gives a status code (for logs and metric labels use the number).
pub fn status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&h(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&h(&[("content-type", "application/grpc+proto")])));
        assert!(is_grpc(&h(&[("content-type", "Application/GRPC;x=1")])));
        assert!(!is_grpc(&h(&[("content-type", "application/grpc-web")])));
        assert!(!is_grpc(&h(&[("content-type", "application/json")])));
        assert!(!is_grpc(&h(&[])));
    }

    #[test]
    fn grpc_timeouts() {
        let t = |v: &'static str| timeout(&h(&[("grpc-timeout", v)]));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("123456789S"), None, "more than 8 digits");
        assert_eq!(t("10x"), None);
        assert_eq!(t("m"), None);
        assert_eq!(t(""), None);
    }

    #[test]
    fn paths_and_messages() {
        assert_eq!(service_method("/pkg.Svc/Call"), ("pkg.Svc", "Call"));
        assert_eq!(service_method("/x"), ("", ""));
        assert_eq!(service_method("/a/b/c"), ("", ""));
        assert_eq!(
            message_value("no route: 100%").to_str().unwrap(),
            "no route: 100%25"
        );
        assert_eq!(message_value("é").to_str().unwrap(), "%C3%A9");
        assert_eq!(status_name(14), "UNAVAILABLE");
        assert_eq!(status_for_http(404), status::UNIMPLEMENTED);
    }
}
