//! `http2_protocol_options` of a `proxy` filter (Envoy's name and field names): the HTTP/2
//! limits of the listener's downstream connections and of its HTTP/2 upstream connections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diag::{Diag, join};
use super::raw::{Extra, RawDuration};

/// Streams a downstream connection may have open at once (advertised in SETTINGS).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
/// The flow-control window of each stream: what a slow reader can make the proxy hold.
pub const DEFAULT_STREAM_WINDOW: u32 = 256 * 1024;
/// The flow-control window of each connection.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams a client may reset per second before the connection is closed with GOAWAY
/// (ENHANCE_YOUR_CALM): the rapid-reset defence (CVE-2023-44487).
pub const DEFAULT_MAX_RESETS_PER_SECOND: u32 = 200;
/// PING keepalive of upstream HTTP/2 connections.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The validated options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Http2Options {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    /// Our extension.
    pub max_resets_per_second: u32,
    /// `connection_keepalive.interval` (`None`: "0s", no PINGs).
    pub keepalive_interval: Option<Duration>,
    /// `connection_keepalive.timeout`: a PING unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            initial_stream_window_size: DEFAULT_STREAM_WINDOW,
            initial_connection_window_size: DEFAULT_CONNECTION_WINDOW,
            max_resets_per_second: DEFAULT_MAX_RESETS_PER_SECOND,
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an http2_protocol_options object")]
pub struct RawHttp2Options {
    pub max_concurrent_streams: Option<u64>,
    pub initial_stream_window_size: Option<u64>,
    pub initial_connection_window_size: Option<u64>,
    pub max_resets_per_second: Option<u64>,
    pub connection_keepalive: Option<RawKeepalive>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RawHttp2Options {
    pub const KEYS: &'static [&'static str] = &[
        "max_concurrent_streams",
        "initial_stream_window_size",
        "initial_connection_window_size",
        "max_resets_per_second",
        "connection_keepalive",
    ];
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    expecting = "a connection_keepalive object like {\"interval\": \"30s\", \"timeout\": \"10s\"}"
)]
pub struct RawKeepalive {
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Validates `raw` at `path` (errors and warnings into `d`); defaults where absent or wrong.
pub(super) fn validate(raw: Option<&RawHttp2Options>, path: &str, d: &mut Diag) -> Http2Options {
    let mut o = Http2Options::default();
    let Some(raw) = raw else {
        return o;
    };
    d.extra(path, &raw.extra, RawHttp2Options::KEYS);
    let mut within = |key: &str, v: Option<u64>, (lo, hi): (u64, u64), into: &mut u32| {
        if let Some(v) = v {
            if (lo..=hi).contains(&v) {
                *into = v as u32;
            } else {
                d.error(
                    &join(path, key),
                    format!("{v} is out of range ({lo}..={hi})"),
                );
            }
        }
    };
    within(
        "max_concurrent_streams",
        raw.max_concurrent_streams,
        (1, 2_147_483_647),
        &mut o.max_concurrent_streams,
    );
    // RFC 9113 §6.9.2: a window is at most 2^31-1; Envoy's minimum is 65,535.
    within(
        "initial_stream_window_size",
        raw.initial_stream_window_size,
        (65_535, 2_147_483_647),
        &mut o.initial_stream_window_size,
    );
    within(
        "initial_connection_window_size",
        raw.initial_connection_window_size,
        (65_535, 2_147_483_647),
        &mut o.initial_connection_window_size,
    );
    within(
        "max_resets_per_second",
        raw.max_resets_per_second,
        (1, 1_000_000),
        &mut o.max_resets_per_second,
    );
    if let Some(k) = &raw.connection_keepalive {
        let kp = join(path, "connection_keepalive");
        d.extra(&kp, &k.extra, &["interval", "timeout"]);
        if let Some(i) = &k.interval {
            o.keepalive_interval = d
                .duration(&join(&kp, "interval"), i)
                .filter(|i| !i.is_zero());
        }
        if let Some(t) = &k.timeout {
            match d.duration(&join(&kp, "timeout"), t) {
                Some(t) if !t.is_zero() => o.keepalive_timeout = t,
                Some(_) => d.error(&join(&kp, "timeout"), "must be more than 0s"),
                None => {}
            }
        }
    }
    o
}
