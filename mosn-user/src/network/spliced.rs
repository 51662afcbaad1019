//! Supervising a connection whose bytes the kernel splices.
//!
//! The verdict program moves data but not FIN: when one side's FIN arrives (`POLLRDHUP`), we
//! wait until every byte that side received has been written into the other socket (its bytes
//! acknowledged plus its unacknowledged send queue equal what the first side received), and
//! only then `shutdown(SHUT_WR)` the other socket, so its FIN goes after the last byte. A reset
//! on one side is propagated as a reset on the other.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

use super::sockopt;

/// How a spliced connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SplicedEnd {
    /// FIN seen and forwarded both ways, every byte delivered.
    Done,
    /// No data either way for the idle timeout.
    IdleTimeout,
    /// One side reset (or failed); the other is to be reset too.
    Reset { downstream: bool },
    /// Bytes stopped moving into the peer's send queue before the FIN could be forwarded.
    Stalled { downstream_to_upstream: bool, missing: u64 },
}

/// How long a FIN is held back while the other socket's send queue does not grow. Longer
/// than any plausible stall of the kernel's redirect worker; a peer that stops reading keeps
/// the send queue full and shows as no progress too.
const DELIVERY_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes ever written into a socket's send queue, as TCP counts them: acknowledged plus
/// still queued. On an actively opened socket `tcpi_bytes_acked` also counts the SYN, hence
/// the per-socket offsets in [`Baseline`].
fn written(to: &TcpStream) -> io::Result<u64> {
    Ok(sockopt::tcp_info(to)?.bytes_acked + sockopt::unacked_bytes(to)?)
}

/// What each socket had written before the kernel took over, so that "everything received on
/// one side is in the other's send queue" can be checked exactly.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// `written(up)` minus the bytes userspace copied downstream -> upstream.
    up_offset: u64,
    /// `written(down)` minus the bytes userspace copied upstream -> downstream.
    down_offset: u64,
}

impl Baseline {
    /// Must be taken before the sockets enter the SOCKHASH, when only userspace has written
    /// to them and its buffers are empty: `copied_*` are the bytes it moved each way.
    pub fn capture(down: &TcpStream, up: &TcpStream, copied_d2u: u64, copied_u2d: u64) -> io::Result<Baseline> {
        Ok(Baseline {
            up_offset: written(up)?.saturating_sub(copied_d2u),
            down_offset: written(down)?.saturating_sub(copied_u2d),
        })
    }
}

/// Bytes `from` has received that are not yet in `to`'s send queue (0 when all delivered).
/// Called once `from` has seen FIN, which `tcpi_bytes_received` counts as one byte.
fn undelivered(from: &TcpStream, to: &TcpStream, to_offset: u64) -> io::Result<u64> {
    let received = sockopt::tcp_info(from)?.bytes_received.saturating_sub(1);
    let delivered = written(to)?.saturating_sub(to_offset);
    tracing::trace!(received, delivered, "delivery check");
    Ok(received.saturating_sub(delivered))
}

/// Waits until every byte received on `from` has been queued on `to`.
async fn wait_delivered(from: &TcpStream, to: &TcpStream, to_offset: u64) -> io::Result<u64> {
    let mut missing = undelivered(from, to, to_offset)?;
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_micros(50);
    while missing > 0 {
        if let Some(e) = sockopt::take_error(to)? {
            return Err(e);
        }
        if last_progress.elapsed() > DELIVERY_STALL_TIMEOUT {
            return Ok(missing);
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(20));
        let now = undelivered(from, to, to_offset)?;
        if now < missing {
            last_progress = Instant::now();
        }
        missing = now;
    }
    Ok(0)
}

/// Is this readiness a FIN (Ok(true)), a reset/error (Err), or nothing (Ok(false))?
fn classify(stream: &TcpStream, ready: tokio::io::Ready) -> io::Result<bool> {
    if ready.is_error() || ready.is_read_closed() {
        if let Some(e) = sockopt::take_error(stream)? {
            tracing::debug!(?ready, error = %e, "socket error");
            return Err(e);
        }
        // Both read and write closed with no pending error: the peer reset and the error was
        // already consumed, or the socket is fully closed. Treat read-closed as FIN.
        return Ok(ready.is_read_closed());
    }
    // Readable without EOF: the verdict passed a segment up (no pair entry). Clear readiness.
    let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    Ok(false)
}

/// Runs until both directions have been closed or the connection idles out.
pub async fn supervise(
    down: &TcpStream,
    up: &TcpStream,
    idle: Option<Duration>,
    base: Baseline,
) -> io::Result<SplicedEnd> {
    let mut down_fin = false;
    let mut up_fin = false;
    // Idle is judged from TCP's own "ms since data was last received" on both sockets, so the
    // data path never has to report activity to userspace.
    let check_every = idle.map(|d| (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(30)));
    let mut idle_tick = tokio::time::interval(check_every.unwrap_or(Duration::from_secs(3600)));
    idle_tick.tick().await;
    let interest = Interest::READABLE | Interest::ERROR;
    while !(down_fin && up_fin) {
        tokio::select! {
            r = down.ready(interest), if !down_fin => {
                match classify(down, r?) {
                    Err(_) => return Ok(SplicedEnd::Reset { downstream: true }),
                    Ok(false) => {}
                    Ok(true) => {
                        let missing = wait_delivered(down, up, base.up_offset).await?;
                        if missing > 0 {
                            return Ok(SplicedEnd::Stalled { downstream_to_upstream: true, missing });
                        }
                        sockopt::shutdown_write(up)?;
                        down_fin = true;
                    }
                }
            }
            r = up.ready(interest), if !up_fin => {
                match classify(up, r?) {
                    Err(_) => return Ok(SplicedEnd::Reset { downstream: false }),
                    Ok(false) => {}
                    Ok(true) => {
                        let missing = wait_delivered(up, down, base.down_offset).await?;
                        if missing > 0 {
                            return Ok(SplicedEnd::Stalled { downstream_to_upstream: false, missing });
                        }
                        sockopt::shutdown_write(down)?;
                        up_fin = true;
                    }
                }
            }
            _ = idle_tick.tick(), if idle.is_some() => {
                let idle = idle.unwrap_or_default();
                let quiet = sockopt::tcp_info(down)?.last_data_recv.min(sockopt::tcp_info(up)?.last_data_recv);
                if Duration::from_millis(u64::from(quiet)) >= idle {
                    return Ok(SplicedEnd::IdleTimeout);
                }
            }
        }
    }
    Ok(SplicedEnd::Done)
}
