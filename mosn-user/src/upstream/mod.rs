//! Upstream management: the cluster manager, hosts, load balancers, health checks, outlier
//! detection and circuit breakers.

pub mod circuit_breaker;
mod cluster;
pub mod health;
pub mod host;
pub mod lb;
pub mod outlier;

pub use cluster::{Cluster, ClusterManager, ConnectError};
pub use host::{HealthFlag, Host};
pub use lb::{LbContext, LoadBalancer};
pub use outlier::RequestOutcome;
