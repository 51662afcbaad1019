//! Listeners, connections and the `tcp_proxy` network filter (MOSN's network layer).

mod copy;
mod handler;
mod listener;
mod original_dst;
pub mod sockopt;
mod spliced;
mod tcp_proxy;
#[cfg(test)]
pub(crate) mod test_util;

pub use copy::{BiCopy, COPY_BUFFER_INITIAL, COPY_BUFFER_MAX, CopyEnd, DirectionStats};
pub use handler::{ConnectionFuture, ConnectionHandler};
pub use listener::{BoundListener, ConnTracker};
pub use original_dst::{
    Destination, ListenerIndex, OriginalDstHandler, OriginalDstLookup, recover,
};
pub use spliced::SplicedEnd;
pub use tcp_proxy::{
    AUTO_MAX_ACTIVE, AUTO_MAX_SPLICED, AUTO_MIN_READS_EACH_WAY, AutoRule, DataPath, TcpProxy,
};
