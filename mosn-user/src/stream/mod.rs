//! Streams over codecs (MOSN's stream layer): upstream connection pools and the per-request
//! byte movement between a downstream connection and an upstream one.
//!
//! HTTP/1.1 upstreams use the ping-pong [`pool`]: a connection carries one request at a
//! time and goes back to its host's idle list when the response is complete. RPC
//! protocols (X-Protocol: Bolt, Dubbo) use the multiplexed [`mux`] pool: per cluster, host
//! and protocol a few long-lived connections, each carrying many requests told apart by
//! request ids the pool rewrites, kept warm by heartbeats. HTTP/2 upstreams use the
//! multiplexed [`h2`] pool: streams over a few h2c connections per host, within the
//! server's stream limit. All are keyed by cluster and host and share the cluster's circuit
//! breakers.

pub mod h2;
pub mod mux;
pub mod pool;

pub use h2::{H2Pools, H2Settings, H2Stream};
pub use mux::{CallError, MuxConn, MuxPools, MuxSettings};
pub use pool::{PoolError, Pools, UpstreamConn};
