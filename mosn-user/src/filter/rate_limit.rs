//! `local_ratelimit` (Envoy's local rate limit): one token bucket shared by every request of
//! the listener; a request that finds it empty is answered 429 at once.
//!
//! The bucket starts full and is refilled lazily: each take first adds `tokens_per_fill` for
//! every whole `fill_interval` since the last fill, up to `max_tokens`. Time is tokio's, so
//! tests can pause the clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::protocol::Request;
use http::StatusCode;
use tokio::time::Instant;

use super::{
    FilterContext, FilterDeps, FilterStatus, LocalReply, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;
use crate::config::filter::LocalRateLimitConfig;

pub(super) const NAME: &str = "local_ratelimit";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::LocalRateLimit(c) => Some(Arc::new(RateLimitFactory {
            bucket: Arc::new(TokenBucket::new(c)),
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct RateLimitFactory {
    bucket: Arc<TokenBucket>,
}

impl StreamFilterFactory for RateLimitFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        Some(Box::new(RateLimit {
            bucket: self.bucket.clone(),
        }))
    }
}

struct RateLimit {
    bucket: Arc<TokenBucket>,
}

impl StreamFilter for RateLimit {
    fn on_request_headers(
        &mut self,
        _req: &mut dyn Request,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        if self.bucket.try_take() {
            FilterStatus::Continue
        } else {
            FilterStatus::Respond(LocalReply::text(
                StatusCode::TOO_MANY_REQUESTS,
                "local_rate_limited",
                "local_rate_limited",
            ))
        }
    }
}

/// A token bucket behind a short mutex (a few integer operations are held under it).
#[derive(Debug)]
struct TokenBucket {
    max_tokens: u64,
    tokens_per_fill: u64,
    fill_interval: Duration,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: u64,
    /// When the last whole interval was added.
    last_fill: Instant,
}

impl TokenBucket {
    fn new(cfg: &LocalRateLimitConfig) -> TokenBucket {
        TokenBucket {
            max_tokens: cfg.max_tokens,
            tokens_per_fill: cfg.tokens_per_fill,
            // Validation refuses 0; a zero here would divide by zero below.
            fill_interval: cfg.fill_interval.max(Duration::from_nanos(1)),
            state: Mutex::new(BucketState {
                tokens: cfg.max_tokens,
                last_fill: Instant::now(),
            }),
        }
    }

    /// Takes one token if there is one.
    fn try_take(&self) -> bool {
        let now = Instant::now();
        // The state is two integers, consistent after every statement: a panic elsewhere
        // while holding the lock cannot leave it broken.
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(s.last_fill);
        let interval = self.fill_interval.as_nanos();
        let fills = elapsed.as_nanos() / interval;
        if fills > 0 {
            let added = fills.saturating_mul(u128::from(self.tokens_per_fill));
            let tokens = (u128::from(s.tokens) + added).min(u128::from(self.max_tokens));
            s.tokens = u64::try_from(tokens).unwrap_or(self.max_tokens);
            // Keep the part of an interval already elapsed.
            let rest = elapsed.as_nanos() % interval;
            s.last_fill = now - Duration::from_nanos(u64::try_from(rest).unwrap_or(0));
        }
        if s.tokens > 0 {
            s.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    /// How many of `n` requests pass now.
    fn passing(f: &[Arc<dyn StreamFilterFactory>], n: usize) -> usize {
        let mut ctx = ctx("10.0.0.1:1000");
        let mut passed = 0;
        for _ in 0..n {
            let mut head = request("GET", "/", &[]);
            match chain(f)[0].on_request_headers(&mut head, &mut ctx) {
                FilterStatus::Continue => passed += 1,
                FilterStatus::Respond(r) => {
                    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
                    assert_eq!(&r.body[..], b"local_rate_limited\n");
                }
                FilterStatus::Pause(d) => panic!("unexpected pause {d:?}"),
            }
        }
        passed
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_starts_full_and_refills_per_whole_interval() {
        let f = factories(json!([{ "type": "local_ratelimit", "config": {
            "max_tokens": 5, "tokens_per_fill": 2, "fill_interval": "1s",
        }}]));
        assert_eq!(passing(&f, 10), 5);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(passing(&f, 10), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(passing(&f, 10), 2);
        // Half an interval, then another half: the first half is not lost.
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(passing(&f, 10), 2);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(passing(&f, 10), 2);
        // A long idle time fills up to max_tokens only.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(passing(&f, 10), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn listeners_have_separate_buckets() {
        let cfg = json!([{ "type": "local_ratelimit", "config": {
            "max_tokens": 1, "fill_interval": "1m",
        }}]);
        let a = factories(cfg.clone());
        let b = factories(cfg);
        assert_eq!(passing(&a, 3), 1);
        assert_eq!(passing(&b, 3), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(passing(&a, 3), 1);
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(json!([{ "type": "local_ratelimit", "config": {
                "max_tokens": 0, "tokens_per_fill": 0, "fill_interval": "0s",
            }}])),
            vec![
                format!("{p}.max_tokens: must be at least 1"),
                format!("{p}.tokens_per_fill: must be at least 1"),
                format!("{p}.fill_interval: must be more than 0"),
            ]
        );
        assert_eq!(
            errors(json!([{ "type": "local_ratelimit", "config": { "fill_interval": "1x" } }])),
            vec![
                format!("{p}.max_tokens: missing max_tokens (the bucket's size)"),
                format!(
                    "{p}.fill_interval: invalid duration \"1x\": unknown unit \"x\" (use ns, us, ms, s, m or h)"
                ),
            ]
        );
    }
}
