//! Listening sockets and the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::tcp_proxy::TcpProxy;

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
    proxy: Arc<TcpProxy>,
}

impl BoundListener {
    /// Binds `addr` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
    pub fn bind(name: &str, addr: SocketAddr, proxy: TcpProxy) -> std::io::Result<BoundListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
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
            proxy: Arc::new(proxy),
        })
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
                        tracker.spawn(Arc::clone(&self.proxy).handle(stream, peer));
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
