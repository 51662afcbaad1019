//! What a listener hands each accepted connection to: its network filter (the L4
//! `tcp_proxy` module or the L7 `proxy` module), behind one trait so `network` knows nothing
//! of the layers above it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::conn::Conn;
use super::original_dst::Destination;

/// The future that serves one connection to its end.
pub type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A listener's network filter, built once; [`ConnectionHandler::handle`] runs per
/// connection.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// The listener's name (logs).
    fn listener(&self) -> &str;

    /// Serves one accepted connection (plain TCP from the accept loop; TLS once a
    /// filter chain has terminated it). `dst`: where it was going (the local address, or the
    /// original destination of a captured connection).
    fn handle(
        self: Arc<Self>,
        stream: Conn,
        peer: SocketAddr,
        dst: Destination,
    ) -> ConnectionFuture;
}
