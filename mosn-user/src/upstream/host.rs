//! Upstream hosts: address, weight, metadata, and the live state the load balancers, health
//! checker, outlier detector and circuit breakers share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::config::{HostConfig, Metadata};

/// Why a host is not healthy; a host is healthy when no flag is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthFlag {
    /// The active health check marked it down.
    FailedActiveCheck = 1,
    /// Outlier detection ejected it.
    Ejected = 2,
}

/// One upstream host. Shared (`Arc<Host>`) by everything that looks at it; its state is
/// atomics, so readers on the data path take no lock.
#[derive(Debug)]
pub struct Host {
    pub address: SocketAddr,
    /// `weight` (1..=128).
    pub weight: u32,
    pub metadata: Metadata,
    /// Requests in flight to this host (least-request balancing, `max_requests`).
    active_requests: AtomicU32,
    /// [`HealthFlag`] bits.
    health: AtomicU8,
}

impl Host {
    pub fn new(cfg: &HostConfig) -> Host {
        Host {
            address: cfg.address,
            weight: cfg.weight,
            metadata: cfg.metadata.clone(),
            active_requests: AtomicU32::new(0),
            health: AtomicU8::new(0),
        }
    }

    /// A host for an address alone (ORIGINAL_DST clusters, tests): weight 1, no metadata.
    pub fn from_addr(address: SocketAddr) -> Host {
        Host::new(&HostConfig {
            address,
            weight: 1,
            metadata: Metadata::new(),
        })
    }

    /// No health flag set.
    pub fn healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == 0
    }

    pub fn has_flag(&self, flag: HealthFlag) -> bool {
        self.health.load(Ordering::Relaxed) & flag as u8 != 0
    }

    /// Sets or clears `flag`; returns whether it changed.
    pub fn set_flag(&self, flag: HealthFlag, on: bool) -> bool {
        let bit = flag as u8;
        let old = if on {
            self.health.fetch_or(bit, Ordering::Relaxed)
        } else {
            self.health.fetch_and(!bit, Ordering::Relaxed)
        };
        (old & bit != 0) != on
    }

    /// Requests in flight to this host now.
    pub fn active_requests(&self) -> u32 {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start_request(self: &std::sync::Arc<Self>) -> RequestGuard {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard(std::sync::Arc::clone(self))
    }
}

/// A request in flight to a host; see [`Host::start_request`].
#[derive(Debug)]
pub struct RequestGuard(std::sync::Arc<Host>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}
