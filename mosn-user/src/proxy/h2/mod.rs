//! HTTP/2 downstream connections (h2c, prior knowledge): the `h2` crate does the framing,
//! HPACK, flow control and SETTINGS; this module accepts a connection's streams and runs each
//! through the request pipeline ([`exchange`]), to an HTTP/2 or an HTTP/1 upstream
//! ([`upstream`]).
//!
//! Limits that protect the proxy: `max_concurrent_streams` (SETTINGS), the header list size
//! (`max_request_header_bytes`, which also bounds CONTINUATION sequences), flow-control
//! windows (what a slow reader can make the proxy hold, per stream and per connection), and
//! a cap on streams the client resets per second (the rapid-reset attack, CVE-2023-44487):
//! past it the connection gets GOAWAY `ENHANCE_YOUR_CALM`. On shutdown or after
//! `idle_timeout` without streams the connection gets a graceful GOAWAY: streams in flight
//! finish, then it closes.

mod exchange;
mod forward;
mod io;
mod outbox;
mod request_body;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tracing::debug;

use super::{Proxy, headers};
use crate::metrics::ErrorKind;

pub(crate) use exchange::GrpcStats;
pub(super) use outbox::Outbox;
pub(super) use request_body::trailer_lines;
pub(super) use upstream::{h2_settings, request_head};

/// How long a new connection has to send its preface and SETTINGS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams the client may reset before the proxy has even accepted them (h2's own count).
const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams the proxy may reset because of the client's errors before it closes the
/// connection (h2's count: malformed headers, flow-control violations per stream).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Resets a client made within the current second.
struct ResetMeter {
    limit: u32,
    window: Instant,
    count: u32,
}

impl ResetMeter {
    fn new(limit: u32) -> ResetMeter {
        ResetMeter {
            limit,
            window: Instant::now(),
            count: 0,
        }
    }

    /// Counts one reset; `true` once this second's count is over the limit.
    fn hit(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
        }
        self.count += 1;
        self.count > self.limit
    }
}

impl Proxy {
    /// Serves one HTTP/2 connection; `rbuf` holds bytes already read from it.
    pub(super) async fn serve_h2(&self, stream: crate::network::Conn, peer: SocketAddr, rbuf: BytesMut) {
        let _ = stream.set_nodelay(true);
        self.serve_h2_io(stream, peer, rbuf).await;
    }

    /// [`Proxy::serve_h2`] over any byte stream (the fuzz target's in-memory pipe).
    pub(crate) async fn serve_h2_io<T>(&self, stream: T, peer: SocketAddr, rbuf: BytesMut)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let o = self.config.http2;
        let header_limit = u32::try_from(self.config.max_request_header_bytes).unwrap_or(u32::MAX);
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(o.max_concurrent_streams)
            .initial_window_size(o.initial_stream_window_size)
            .initial_connection_window_size(o.initial_connection_window_size)
            .max_header_list_size(header_limit)
            .max_send_buffer_size(o.initial_stream_window_size as usize)
            .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
        let io = io::Prefixed::new(rbuf.freeze(), stream);
        let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake(io)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(error = %e, "HTTP/2 handshake failed");
                self.metrics.errors.inc(ErrorKind::BadRequest);
                return;
            }
            Err(_) => {
                self.metrics.errors.inc(ErrorKind::IdleTimeout);
                return;
            }
        };
        let peer_value = headers::peer_value(peer.ip());
        let mut streams = FuturesUnordered::new();
        let mut resets = ResetMeter::new(o.max_resets_per_second);
        let mut draining = false;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let idle_deadline = |streams_empty: bool| match (streams_empty, self.config.idle_timeout) {
            (true, Some(t)) => Instant::now() + t,
            _ => far,
        };
        let idle = tokio::time::sleep_until(idle_deadline(true));
        tokio::pin!(idle);
        loop {
            tokio::select! {
                accepted = conn.accept() => match accepted {
                    Some(Ok((req, respond))) => {
                        streams.push(exchange::run(self, req, respond, peer, &peer_value));
                        idle.as_mut().reset(far);
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "HTTP/2 connection error");
                        if !e.is_io() {
                            self.metrics.errors.inc(ErrorKind::BadRequest);
                        }
                        break;
                    }
                    None => break,
                },
                Some(reset_by_peer) = streams.next(), if !streams.is_empty() => {
                    if reset_by_peer && resets.hit() {
                        debug!(limit = o.max_resets_per_second, "too many streams reset by the client: GOAWAY");
                        self.metrics.errors.inc(ErrorKind::BadRequest);
                        conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    }
                    if streams.is_empty() {
                        idle.as_mut().reset(idle_deadline(true));
                    }
                }
                () = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.graceful_shutdown();
                }
                () = &mut idle, if !draining => {
                    self.metrics.errors.inc(ErrorKind::IdleTimeout);
                    draining = true;
                    conn.graceful_shutdown();
                }
            }
        }
        // The connection is over: streams still running find theirs gone.
        while streams.next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_reset_meter_counts_per_second() {
        let mut m = ResetMeter::new(3);
        assert!(!m.hit() && !m.hit() && !m.hit());
        assert!(m.hit(), "the fourth within a second");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!m.hit(), "a new second");
    }
}
