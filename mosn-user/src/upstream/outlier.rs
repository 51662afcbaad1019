//! Outlier detection (`outlier_detection`): passive ejection of hosts that keep failing
//! (consecutive 5xx or gateway errors), for a time that grows with each ejection.

use std::sync::Arc;

use super::host::Host;
use crate::config::OutlierConfig;

/// The outcome of one request (or connect) to a host, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A response with this status code.
    Status(u16),
    /// The connection could not be made (refused, timed out).
    ConnectFailure,
    /// No response within the timeout.
    Timeout,
    /// The connection broke before a full response.
    Reset,
}

/// Outlier detection of one cluster.
#[derive(Debug)]
pub struct OutlierDetector {}

impl OutlierDetector {
    pub fn new(cfg: &OutlierConfig, hosts: &[Arc<Host>]) -> OutlierDetector {
        let _ = (cfg, hosts);
        OutlierDetector {}
    }

    /// Records one outcome for `host`; may eject it.
    pub fn report(&self, host: &Arc<Host>, outcome: RequestOutcome) {
        let _ = (host, outcome);
    }
}
