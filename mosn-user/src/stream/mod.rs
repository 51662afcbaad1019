//! Streams over codecs (MOSN's stream layer): upstream connection pools and the per-request
//! byte movement between a downstream connection and an upstream one.
//!
//! HTTP/1.1 upstreams use the ping-pong [`pool`]: a connection carries one request at a
//! time and goes back to its host's idle list when the response is complete. Multiplexed
//! protocols (HTTP/2, RPC) will get a pool whose connections carry many requests, keyed the
//! same way (cluster, host); the proxy asks either for a connection the same way.

pub mod pool;

pub use pool::{PoolError, Pools, UpstreamConn};
