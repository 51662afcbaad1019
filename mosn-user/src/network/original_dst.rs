//! Original destinations of captured connections (MOSN's `use_original_dst` listeners).
//!
//! A `redirect` listener receives connections whose destination was rewritten to it (by the
//! capture's connect hook or iptables REDIRECT); it asks the capture programs
//! ([`OriginalDstLookup`]) or the socket (`SO_ORIGINAL_DST`) where each was going. A `tproxy`
//! listener receives them unchanged, so the accepted socket's local address is the original
//! destination.
//!
//! With the destination known, MOSN's rule applies: if another listener is bound to exactly
//! that address, or to the unspecified address with that port, the connection is handed to
//! that listener's filter chain (and counted there); otherwise this listener's own tcp_proxy
//! handles it, with the original destination as the destination for route matching and for
//! `ORIGINAL_DST` clusters.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpStream;
use tracing::debug;

use super::handler::ConnectionHandler;
use super::sockopt;

/// How a `use_original_dst` listener learns a connection's original destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginalDst {
    /// `"redirect"` (or MOSN's older `true`): the connection was redirected to the listener
    /// (iptables REDIRECT, or the capture's connect hook); the original destination is asked
    /// of the capture programs, else of `getsockopt(SO_ORIGINAL_DST)`.
    Redirect,
    /// `"tproxy"`: the connection was intercepted without rewriting (TPROXY, socket lookup);
    /// the accepted socket's local address is the original destination.
    Tproxy,
}

/// Where captured connections were going, as recorded by the capture programs.
pub trait OriginalDstLookup: Send + Sync + 'static {
    /// `client` = the accepted socket's peer address (the workload's own socket address).
    fn original_dst(&self, client: SocketAddr) -> Option<SocketAddr>;
}

/// Recovers the original destination of an accepted connection: `Redirect` asks `lookup`
/// first, then `getsockopt(SO_ORIGINAL_DST)` (iptables REDIRECT, or the capture's cgroup
/// getsockopt program); `Tproxy` takes the socket's local address. `None` when nothing knows
/// (logged at debug).
pub fn recover(
    mode: OriginalDst,
    stream: &TcpStream,
    peer: SocketAddr,
    lookup: Option<&dyn OriginalDstLookup>,
) -> Option<SocketAddr> {
    match mode {
        OriginalDst::Tproxy => stream
            .local_addr()
            .inspect_err(|e| debug!(error = %e, "no local address"))
            .ok(),
        OriginalDst::Redirect => {
            if let Some(dst) = lookup.and_then(|l| l.original_dst(peer)) {
                return Some(dst);
            }
            let ipv6 = stream.local_addr().ok()?.is_ipv6();
            match sockopt::original_dst(stream, ipv6) {
                Ok(dst) => Some(dst),
                Err(e) => {
                    let why = match e.raw_os_error() {
                        Some(libc::ENOENT) => "no such redirected connection",
                        Some(libc::ENOPROTOOPT) => "no conntrack or capture program answers",
                        _ => "getsockopt failed",
                    };
                    debug!(%peer, error = %e, "SO_ORIGINAL_DST: {why}");
                    None
                }
            }
        }
    }
}

/// Where a downstream connection was going, as its tcp_proxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// The destination routes match on (`DestinationAddrs`/`DestinationPort`): the original
    /// destination when one was recovered, else the accepted socket's local address.
    pub addr: SocketAddr,
    /// The original destination an `ORIGINAL_DST` cluster connects to. `None` when none was
    /// recovered, or when it is an address of this proxy's own listener (connecting there
    /// would loop back into the proxy).
    pub original: Option<SocketAddr>,
}

impl Destination {
    /// A connection that was not captured: its destination is the local address.
    pub fn local(addr: SocketAddr) -> Destination {
        Destination {
            addr,
            original: None,
        }
    }
}

/// Does a listener bound to `listener` own `addr` (same address, or the unspecified address
/// of the same family with the same port)?
fn binds(listener: SocketAddr, addr: SocketAddr) -> bool {
    listener == addr
        || (listener.ip().is_unspecified()
            && listener.is_ipv4() == addr.is_ipv4()
            && listener.port() == addr.port())
}

/// Every bound listener's address and filter chain, for hand-off by original destination.
#[derive(Default)]
pub struct ListenerIndex {
    by_addr: HashMap<SocketAddr, Arc<dyn ConnectionHandler>>,
}

impl ListenerIndex {
    /// `listeners`: each listener's bound address (port resolved) and its tcp_proxy.
    pub fn new(
        listeners: impl IntoIterator<Item = (SocketAddr, Arc<dyn ConnectionHandler>)>,
    ) -> ListenerIndex {
        ListenerIndex {
            by_addr: listeners.into_iter().collect(),
        }
    }

    /// The listener bound to exactly `dst`, else the one bound to the unspecified address of
    /// `dst`'s family with `dst`'s port; with its bound address.
    pub fn find(&self, dst: SocketAddr) -> Option<(SocketAddr, &Arc<dyn ConnectionHandler>)> {
        let any = SocketAddr::new(
            if dst.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            },
            dst.port(),
        );
        [dst, any]
            .into_iter()
            .find_map(|a| self.by_addr.get_key_value(&a).map(|(k, v)| (*k, v)))
    }
}

/// What a `use_original_dst` listener does on accept.
pub struct OriginalDstHandler {
    pub mode: OriginalDst,
    /// The capture programs' record (redirect mode only); `None` without capture.
    pub lookup: Option<Arc<dyn OriginalDstLookup>>,
    pub listeners: Arc<ListenerIndex>,
}

impl OriginalDstHandler {
    /// Chooses the filter chain for an accepted connection and the destination it sees.
    /// `own`/`listener_addr`: the accepting listener's tcp_proxy and bound address.
    pub fn dispatch(
        &self,
        own: &Arc<dyn ConnectionHandler>,
        listener_addr: SocketAddr,
        stream: &TcpStream,
        peer: SocketAddr,
    ) -> (Arc<dyn ConnectionHandler>, Destination) {
        let local = stream.local_addr().unwrap_or(listener_addr);
        let Some(dst) = recover(self.mode, stream, peer, self.lookup.as_deref()) else {
            debug!(listener = %own.listener(), %peer, "no original destination; using the listener's address");
            return (Arc::clone(own), Destination::local(local));
        };
        if binds(listener_addr, dst) {
            // Addressed to this listener itself (not captured, or a direct connection to a
            // tproxy port): using it as the upstream would connect the proxy to itself.
            debug!(listener = %own.listener(), %peer, %dst, "original destination is this listener; not captured");
            return (Arc::clone(own), Destination::local(dst));
        }
        match self.listeners.find(dst) {
            Some((bound, target)) if !Arc::ptr_eq(target, own) => {
                debug!(listener = %own.listener(), %peer, %dst, to = %target.listener(), "handing over to the listener of the original destination");
                let original = (bound != dst).then_some(dst);
                (
                    Arc::clone(target),
                    Destination {
                        addr: dst,
                        original,
                    },
                )
            }
            _ => (
                Arc::clone(own),
                Destination {
                    addr: dst,
                    original: Some(dst),
                },
            ),
        }
    }
}

/// Sets `IP_TRANSPARENT` (IPv4) or `IPV6_TRANSPARENT` on a `tproxy` listener, so it can
/// accept connections addressed to non-local addresses (needs CAP_NET_ADMIN).
pub fn set_transparent(socket: &socket2::Socket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        socket.set_ip_transparent_v6(true)
    } else {
        socket.set_ip_transparent_v4(true)
    }
}

#[cfg(test)]
#[path = "original_dst_tests.rs"]
mod tests;
