//! Listeners and accepted connections (MOSN's network layer): the accept loop, the
//! [`ConnectionHandler`] a listener hands each connection to, original destinations of
//! captured connections, and the socket options the layers above rely on.

mod conn;
mod handler;
mod listener;
mod original_dst;
pub mod sockopt;
#[cfg(test)]
pub(crate) mod test_util;

pub use conn::{Conn, ConnRead, ConnWrite, PeerIdentity, TlsStream};
pub use handler::{ConnectionFuture, ConnectionHandler};
pub use listener::{BoundListener, ConnTracker};
pub use original_dst::{
    Destination, ListenerIndex, OriginalDst, OriginalDstHandler, OriginalDstLookup, recover,
};
