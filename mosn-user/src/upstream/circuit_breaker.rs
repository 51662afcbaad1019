//! Circuit breakers (`circuit_breakers`): per-cluster limits on connections, pending
//! requests, requests and retries. A request over a limit is answered 503 at once.

use crate::config::CircuitBreakersConfig;

/// Live counters of one cluster against its limits.
#[derive(Debug, Default)]
pub struct CircuitBreakers {}

/// Holds one unit of a limit until dropped.
#[derive(Debug)]
pub struct BreakerGuard {}

impl CircuitBreakers {
    pub fn new(cfg: &CircuitBreakersConfig) -> CircuitBreakers {
        let _ = cfg;
        CircuitBreakers {}
    }

    /// A request slot (`max_requests`), or `None` when the breaker is open.
    pub fn try_request(&self) -> Option<BreakerGuard> {
        Some(BreakerGuard {})
    }

    /// A pending-request slot (`max_pending_requests`: waiting for a pooled connection).
    pub fn try_pending(&self) -> Option<BreakerGuard> {
        Some(BreakerGuard {})
    }

    /// A retry slot (`max_retries`: retries in flight).
    pub fn try_retry(&self) -> Option<BreakerGuard> {
        Some(BreakerGuard {})
    }

    /// A connection slot (`max_connections`).
    pub fn try_connection(&self) -> Option<BreakerGuard> {
        Some(BreakerGuard {})
    }
}
