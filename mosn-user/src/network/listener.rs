//! Listening sockets and the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::handler::ConnectionHandler;
use super::original_dst::{
    Destination, ListenerIndex, OriginalDst, OriginalDstHandler, OriginalDstLookup, set_transparent,
};

/// Tracks live connection tasks so shutdown can wait for them to finish.
pub type ConnTracker = tokio_util::task::TaskTracker;

/// Listen backlog: large enough for connection bursts (1,000 concurrent connects in tests,
/// HAProxy and nginx default to 511-1024); the kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// A bound listener with its filter.
pub struct BoundListener {
    pub name: String,
    pub local_addr: SocketAddr,
    listener: TcpListener,
    proxy: Arc<dyn ConnectionHandler>,
    /// `use_original_dst`, as configured.
    original_dst_mode: Option<OriginalDst>,
    /// Set by [`BoundListener::enable_original_dst`] once every listener is bound.
    original_dst: Option<OriginalDstHandler>,
}

impl BoundListener {
    /// The listening socket (for the capture programs' listener map).
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.listener.as_fd()
    }

    /// Binds `addr` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT). A `tproxy`
    /// listener also gets `IP_TRANSPARENT` (without CAP_NET_ADMIN: a warning, as it only
    /// matters for connections to non-local addresses).
    pub fn bind(
        name: &str,
        addr: SocketAddr,
        proxy: Arc<dyn ConnectionHandler>,
        original_dst: Option<OriginalDst>,
    ) -> std::io::Result<BoundListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        if original_dst == Some(OriginalDst::Tproxy)
            && let Err(e) = set_transparent(&socket, addr.is_ipv6())
        {
            warn!(listener = %name, error = %e, "tproxy listener: cannot set IP_TRANSPARENT (needs CAP_NET_ADMIN); it only receives connections to local addresses");
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener = TcpListener::from_std(socket.into())?;
        let local_addr = listener.local_addr()?;
        Ok(BoundListener {
            name: name.to_string(),
            local_addr,
            listener,
            proxy,
            original_dst_mode: original_dst,
            original_dst: None,
        })
    }

    /// This listener's filter chain.
    pub fn proxy(&self) -> &Arc<dyn ConnectionHandler> {
        &self.proxy
    }

    /// For a `use_original_dst` listener (no-op otherwise): recover each accepted
    /// connection's original destination (`lookup`: the capture programs' record) and hand
    /// it to the listener in `listeners` bound to it, if any.
    pub fn enable_original_dst(
        &mut self,
        lookup: Option<Arc<dyn OriginalDstLookup>>,
        listeners: Arc<ListenerIndex>,
    ) {
        if let Some(mode) = self.original_dst_mode {
            self.original_dst = Some(OriginalDstHandler {
                mode,
                lookup: lookup.filter(|_| mode == OriginalDst::Redirect),
                listeners,
            });
        }
    }

    /// Accepts until `stop` is cancelled, spawning each connection on `tracker`.
    pub async fn serve(self, stop: CancellationToken, tracker: ConnTracker) {
        info!(listener = %self.name, address = %self.local_addr, "listening");
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let (proxy, dst) = match &self.original_dst {
                            Some(h) => h.dispatch(&self.proxy, self.local_addr, &stream, peer),
                            None => {
                                let local = stream.local_addr().unwrap_or(self.local_addr);
                                (Arc::clone(&self.proxy), Destination::local(local))
                            }
                        };
                        tracker.spawn(ConnectionHandler::handle(proxy, stream.into(), peer, dst));
                    }
                    Err(e) => {
                        // EMFILE/ENFILE/ENOBUFS: back off instead of spinning on the error.
                        warn!(listener = %self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        info!(listener = %self.name, "stopped accepting");
    }
}
