//! Upstream management: the cluster manager, host sets and load balancers.

mod cluster;
mod lb;

pub use cluster::{Cluster, ClusterManager, ConnectError};
pub use lb::LoadBalancer;
