//! Circuit breakers (`circuit_breakers`): per-cluster limits on connections, pending
//! requests, requests and retries. A request over a limit is answered 503 at once.
//!
//! Each limit is one atomic counter taken with a compare-and-swap loop (no lock): a slot is
//! granted only while the counter is below the limit, and given back when its
//! [`BreakerGuard`] drops. Refusals are counted in the cluster's `*_overflow` metrics once
//! the metrics are attached ([`CircuitBreakers::with_metrics`] or
//! [`CircuitBreakers::attach_metrics`], which `health::spawn` calls at startup).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::CircuitBreakersConfig;
use crate::metrics::ClusterMetrics;

/// The four limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `max_connections`.
    Connections = 0,
    /// `max_pending_requests`.
    PendingRequests = 1,
    /// `max_requests`.
    Requests = 2,
    /// `max_retries`.
    Retries = 3,
}

impl Resource {
    /// The config key of this limit.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Connections => "max_connections",
            Resource::PendingRequests => "max_pending_requests",
            Resource::Requests => "max_requests",
            Resource::Retries => "max_retries",
        }
    }
}

/// A refused slot: which limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open: {} ({limit}) reached (raise circuit_breakers' {} or add upstream capacity)", .resource.key(), .resource.key())]
pub struct Overflow {
    pub resource: Resource,
    pub limit: u32,
}

#[derive(Debug, Default)]
struct Counters {
    active: [AtomicU32; 4],
}

/// Live counters of one cluster against its limits.
#[derive(Debug)]
pub struct CircuitBreakers {
    limits: [u32; 4],
    counters: Arc<Counters>,
    metrics: OnceLock<ClusterMetrics>,
}

impl Default for CircuitBreakers {
    fn default() -> CircuitBreakers {
        CircuitBreakers::new(&CircuitBreakersConfig::default())
    }
}

/// Holds one unit of a limit until dropped.
#[derive(Debug)]
pub struct BreakerGuard {
    counters: Arc<Counters>,
    resource: Resource,
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.counters.active[self.resource as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

impl BreakerGuard {
    /// The limit this guard holds a slot of.
    pub fn resource(&self) -> Resource {
        self.resource
    }
}

impl CircuitBreakers {
    pub fn new(cfg: &CircuitBreakersConfig) -> CircuitBreakers {
        CircuitBreakers {
            limits: [
                cfg.max_connections,
                cfg.max_pending_requests,
                cfg.max_requests,
                cfg.max_retries,
            ],
            counters: Arc::default(),
            metrics: OnceLock::new(),
        }
    }

    /// Counts overflows in `metrics` (the cluster's `upstream_*_overflow` counters).
    pub fn with_metrics(self, metrics: ClusterMetrics) -> CircuitBreakers {
        self.attach_metrics(metrics);
        self
    }

    /// Like [`Self::with_metrics`] on a shared value; the first metrics attached stay.
    pub fn attach_metrics(&self, metrics: ClusterMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// A slot of `resource`, or which limit refused it (counted as an overflow).
    pub fn acquire(&self, resource: Resource) -> Result<BreakerGuard, Overflow> {
        let i = resource as usize;
        let limit = self.limits[i];
        match self.counters.active[i].fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        }) {
            Ok(_) => Ok(BreakerGuard {
                counters: Arc::clone(&self.counters),
                resource,
            }),
            Err(_) => {
                if let Some(m) = self.metrics.get() {
                    match resource {
                        Resource::Connections => m.upstream_cx_overflow.inc(),
                        Resource::PendingRequests => m.upstream_rq_pending_overflow.inc(),
                        Resource::Requests => m.upstream_rq_overflow.inc(),
                        Resource::Retries => m.upstream_rq_retry_overflow.inc(),
                    };
                }
                tracing::debug!(limit, resource = resource.key(), "circuit breaker open");
                Err(Overflow { resource, limit })
            }
        }
    }

    /// A request slot (`max_requests`), or `None` when the breaker is open.
    pub fn try_request(&self) -> Option<BreakerGuard> {
        self.acquire(Resource::Requests).ok()
    }

    /// A pending-request slot (`max_pending_requests`: waiting for a pooled connection).
    pub fn try_pending(&self) -> Option<BreakerGuard> {
        self.acquire(Resource::PendingRequests).ok()
    }

    /// A retry slot (`max_retries`: retries in flight).
    pub fn try_retry(&self) -> Option<BreakerGuard> {
        self.acquire(Resource::Retries).ok()
    }

    /// A connection slot (`max_connections`).
    pub fn try_connection(&self) -> Option<BreakerGuard> {
        self.acquire(Resource::Connections).ok()
    }

    /// Slots of `resource` held now.
    pub fn active(&self, resource: Resource) -> u32 {
        self.counters.active[resource as usize].load(Ordering::Acquire)
    }

    /// The limit of `resource`.
    pub fn limit(&self, resource: Resource) -> u32 {
        self.limits[resource as usize]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Barrier;

    use super::*;
    use crate::metrics::Metrics;

    fn cfg(conn: u32, pending: u32, req: u32, retry: u32) -> CircuitBreakersConfig {
        CircuitBreakersConfig {
            max_connections: conn,
            max_pending_requests: pending,
            max_requests: req,
            max_retries: retry,
        }
    }

    #[test]
    fn each_limit_is_separate_and_guards_release_on_drop() {
        let metrics = Metrics::new().cluster("c");
        let b = CircuitBreakers::new(&cfg(1, 2, 3, 0)).with_metrics(metrics.clone());
        let c1 = b.try_connection().unwrap();
        assert!(b.try_connection().is_none());
        let p: Vec<_> = (0..2).map(|_| b.try_pending().unwrap()).collect();
        assert!(b.try_pending().is_none());
        let r: Vec<_> = (0..3).map(|_| b.try_request().unwrap()).collect();
        assert!(b.try_request().is_none());
        assert!(b.try_retry().is_none(), "max_retries 0: no retries");
        assert_eq!(
            (
                b.active(Resource::Connections),
                b.active(Resource::PendingRequests),
                b.active(Resource::Requests),
                b.active(Resource::Retries)
            ),
            (1, 2, 3, 0)
        );
        assert_eq!(
            (
                metrics.upstream_cx_overflow.get(),
                metrics.upstream_rq_pending_overflow.get(),
                metrics.upstream_rq_overflow.get(),
                metrics.upstream_rq_retry_overflow.get()
            ),
            (1, 1, 1, 1)
        );
        drop(c1);
        let c2 = b
            .try_connection()
            .expect("the dropped guard gave its slot back");
        assert_eq!(c2.resource(), Resource::Connections);
        drop((p, r, c2));
        for res in [
            Resource::Connections,
            Resource::PendingRequests,
            Resource::Requests,
        ] {
            assert_eq!(b.active(res), 0, "{res:?}");
        }
    }

    #[test]
    fn overflow_names_the_limit() {
        let b = CircuitBreakers::new(&cfg(1, 1, 1, 1));
        let _g = b.acquire(Resource::Requests).unwrap();
        let err = b.acquire(Resource::Requests).unwrap_err();
        assert_eq!(
            err,
            Overflow {
                resource: Resource::Requests,
                limit: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "circuit breaker open: max_requests (1) reached (raise circuit_breakers' \
             max_requests or add upstream capacity)"
        );
    }

    #[test]
    fn defaults_are_envoys() {
        let b = CircuitBreakers::default();
        assert_eq!(
            [
                Resource::Connections,
                Resource::PendingRequests,
                Resource::Requests,
                Resource::Retries
            ]
            .map(|r| b.limit(r)),
            [1024, 1024, 1024, 3]
        );
    }

    /// 64 tasks race for 10 request slots on a multi-threaded runtime; exactly 10 win while
    /// they all hold on, and all slots come back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limit_holds_under_concurrency() {
        const TASKS: usize = 64;
        const LIMIT: u32 = 10;
        let metrics = Metrics::new().cluster("c");
        let b = Arc::new(CircuitBreakers::new(&cfg(1, 1, LIMIT, 1)).with_metrics(metrics.clone()));
        let start = Arc::new(Barrier::new(TASKS));
        let held = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (b, start, held) = (b.clone(), start.clone(), held.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let g = b.try_request();
                    let got = g.is_some();
                    // Everyone has tried before anyone lets go.
                    held.wait().await;
                    drop(g);
                    got
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap()
            {
                granted += 1;
            }
        }
        assert_eq!(granted, LIMIT as usize);
        assert_eq!(
            metrics.upstream_rq_overflow.get(),
            (TASKS as u64) - u64::from(LIMIT)
        );
        assert_eq!(b.active(Resource::Requests), 0);
    }
}
