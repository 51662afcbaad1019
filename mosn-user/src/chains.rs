//! A listener's filter chains: which chain takes a connection, and TLS termination.
//!
//! When a chain matches on the ClientHello (`filter_chain_match`: `server_names`,
//! `transport_protocol`, `application_protocols`; Envoy's `tls_inspector`) or the listener
//! serves TLS and plaintext on one port (MOSN's `inspector`), the first bytes are *peeked*,
//! never consumed: a chain that does not terminate TLS (SNI passthrough) forwards the
//! untouched ClientHello, on the userspace path or the kernel splice alike. The wait for a
//! complete ClientHello is bounded; a connection no chain takes is closed and counted
//! (`errors{kind="no_filter_chain"}`).
//!
//! A chain with a `tls_context` then runs the handshake (`tls::ServerTls`) and hands the
//! TLS connection to its network filter (`tcp_proxy` or `proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span};

use crate::config::ChainMatch;
use crate::metrics::{ErrorKind, ListenerMetrics};
use crate::network::{Conn, ConnectionFuture, ConnectionHandler, Destination};
use crate::protocol::tls::{self as hello, ClientHello, Inspect};
use crate::tls::ServerTls;

/// How long the first bytes may take to tell TLS from plaintext and to complete the
/// ClientHello (Envoy's tls_inspector default is 15 s; ours matches the handshake timeout).
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One filter chain, built.
pub struct Chain {
    pub matcher: ChainMatch,
    /// Terminates TLS when set.
    pub tls: Option<Arc<ServerTls>>,
    pub handler: Arc<dyn ConnectionHandler>,
}

/// What the first bytes said.
#[derive(Debug, Default)]
struct Seen {
    /// `None`: not inspected (no chain needs it).
    tls: Option<bool>,
    hello: Option<ClientHello>,
}

/// Every chain of one listener; the listener's [`ConnectionHandler`].
pub struct FilterChains {
    listener: String,
    chains: Vec<Chain>,
    /// MOSN's `inspector`: a TLS chain also serves plaintext that arrives on it.
    inspector: bool,
    /// Whether the first bytes must be peeked at.
    inspect: bool,
    metrics: ListenerMetrics,
    timeout: Duration,
}

impl FilterChains {
    pub fn new(
        listener: &str,
        chains: Vec<Chain>,
        inspector: bool,
        metrics: ListenerMetrics,
    ) -> FilterChains {
        let inspect = inspector || chains.iter().any(|c| c.matcher.needs_inspection());
        FilterChains {
            listener: listener.to_owned(),
            chains,
            inspector,
            inspect,
            metrics,
            timeout: INSPECT_TIMEOUT,
        }
    }

    /// A listener with one chain that neither matches nor terminates TLS needs no
    /// dispatcher: its filter takes connections directly.
    pub fn single_plain(&self) -> Option<&Arc<dyn ConnectionHandler>> {
        match self.chains.as_slice() {
            [c] if !self.inspect && c.tls.is_none() => Some(&c.handler),
            _ => None,
        }
    }

    async fn serve(self: Arc<Self>, conn: Conn, peer: SocketAddr, dst: Destination) {
        let Conn::Tcp(tcp) = conn else {
            // Already TLS (never from the accept loop): the first chain's filter.
            let h = Arc::clone(&self.chains[0].handler);
            return h.handle(conn, peer, dst).await;
        };
        let seen = if self.inspect {
            match tokio::time::timeout(self.timeout, peek_hello(&tcp)).await {
                Ok(Some(seen)) => seen,
                Ok(None) => {
                    debug!("closed before its first bytes were complete");
                    return;
                }
                Err(_) => {
                    debug!("no complete ClientHello in time; closing");
                    self.metrics.errors.inc(ErrorKind::NoFilterChain);
                    return;
                }
            }
        } else {
            Seen::default()
        };
        let Some(chain) = self.select(&seen) else {
            debug!(sni = ?seen.hello.as_ref().and_then(|h| h.server_name.as_deref()), "no filter chain matches; closing");
            self.metrics.errors.inc(ErrorKind::NoFilterChain);
            return;
        };
        let conn = match &chain.tls {
            Some(tls) if !(self.inspector && seen.tls == Some(false)) => {
                match tls.accept(tcp).await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(reason = e.reason, error = %e.error, "TLS handshake failed");
                        return;
                    }
                }
            }
            _ => Conn::Tcp(tcp),
        };
        Arc::clone(&chain.handler).handle(conn, peer, dst).await
    }

    /// The most specific chain whose every criterion matches (Envoy's order: server name,
    /// then transport protocol, then application protocols).
    fn select(&self, seen: &Seen) -> Option<&Chain> {
        let sni = seen.hello.as_ref().and_then(|h| h.server_name.as_deref());
        let transport = seen.tls.map(|tls| if tls { "tls" } else { "raw_buffer" });
        let alpn: &[Vec<u8>] = seen.hello.as_ref().map_or(&[], |h| &h.alpn);
        self.chains
            .iter()
            .filter_map(|c| {
                let m = &c.matcher;
                let name = if m.server_names.is_empty() {
                    0
                } else {
                    name_score(&m.server_names, sni?)?
                };
                let transport_score = match &m.transport_protocol {
                    None => 0,
                    Some(t) if Some(t.as_str()) == transport => 1,
                    Some(_) => return None,
                };
                let alpn_score = if m.application_protocols.is_empty() {
                    0
                } else if m
                    .application_protocols
                    .iter()
                    .any(|p| alpn.iter().any(|a| a == p.as_bytes()))
                {
                    1
                } else {
                    return None;
                };
                Some(((name, transport_score, alpn_score), c))
            })
            // max_by_key keeps the last of equals; chains are unique by match (validated),
            // so equal scores only tie across different criteria: prefer the first.
            .fold(None, |best: Option<((usize, u8, u8), &Chain)>, (s, c)| match best {
                Some((b, _)) if b >= s => best,
                _ => Some((s, c)),
            })
            .map(|(_, c)| c)
    }
}

/// How well `sni` matches `names`: an exact name beats any wildcard, a longer wildcard
/// suffix beats a shorter one; `None` if none matches.
fn name_score(names: &[String], sni: &str) -> Option<usize> {
    let sni = sni.to_ascii_lowercase();
    names
        .iter()
        .filter_map(|n| {
            if *n == sni {
                Some(usize::MAX)
            } else if let Some(suffix) = n.strip_prefix('*') {
                // "*.example.com" matches "a.example.com", not "example.com".
                (sni.len() > suffix.len() && sni.ends_with(suffix)).then_some(suffix.len())
            } else {
                None
            }
        })
        .max()
}

/// Peeks until the first bytes say TLS or not and, for TLS, the ClientHello is complete.
/// `None`: the peer closed (or failed) first.
async fn peek_hello(tcp: &TcpStream) -> Option<Seen> {
    let mut buf = vec![0u8; hello::MAX_CLIENT_HELLO];
    let mut have = 0;
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        match hello::inspect(&buf[..n]) {
            Inspect::Hello(h) => {
                return Some(Seen {
                    tls: Some(true),
                    hello: Some(h),
                });
            }
            Inspect::NotTls | Inspect::TooLarge => {
                return Some(Seen {
                    tls: Some(false),
                    hello: None,
                });
            }
            Inspect::Again => {}
        }
        if n > have {
            have = n;
        }
        // Wait for more bytes: clear the readiness the peek left set (the runtime is edge
        // triggered), re-check what arrived meanwhile, then wait for a new edge.
        let _ = tcp.try_io(Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        let again = tcp.peek(&mut buf[..]).await.ok()?;
        if again > have {
            continue;
        }
        tcp.readable().await.ok()?;
    }
}

impl ConnectionHandler for FilterChains {
    fn listener(&self) -> &str {
        &self.listener
    }

    fn handle(self: Arc<Self>, stream: Conn, peer: SocketAddr, dst: Destination) -> ConnectionFuture {
        let span = info_span!("chains", listener = %self.listener, %peer);
        Box::pin(self.serve(stream, peer, dst).instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::name_score;

    #[test]
    fn exact_names_beat_wildcards_and_longer_wildcards_beat_shorter() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let exact = name_score(&names(&["a.example.com"]), "a.example.com").unwrap();
        let wild = name_score(&names(&["*.example.com"]), "a.example.com").unwrap();
        let longer = name_score(&names(&["*.b.example.com"]), "a.b.example.com").unwrap();
        let shorter = name_score(&names(&["*.example.com"]), "a.b.example.com").unwrap();
        assert!(exact > wild);
        assert!(longer > shorter);
        assert_eq!(name_score(&names(&["*.example.com"]), "example.com"), None);
        assert_eq!(name_score(&names(&["b.example.com"]), "a.example.com"), None);
        assert!(name_score(&names(&["a.example.com"]), "A.Example.COM").is_some());
    }
}
