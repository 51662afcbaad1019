//! Supervising a connection whose bytes the kernel splices.
//!
//! The verdict program moves data but not FIN: when one side's FIN arrives (`POLLRDHUP`), we
//! wait until every byte that side received has been written into the other socket (its bytes
//! acknowledged plus its unacknowledged send queue equal what the first side received), and
//! only then `shutdown(SHUT_WR)` the other socket, so its FIN goes after the last byte. A reset
//! (or any error) on one side reaches the other side as a reset, after every byte the failed
//! side sent has been delivered; a side whose direction has already finished is still watched
//! for one.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

use super::copy::{self, ByteCounters};
use crate::network::sockopt;

/// How a spliced connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SplicedEnd {
    /// FIN seen and forwarded both ways, every byte delivered; `diverted` when a direction
    /// had to be finished in userspace (see `PEER_DIVERTED`).
    Done { diverted: bool },
    /// No data either way for the idle timeout.
    IdleTimeout,
    /// One side reset (or failed); what it had sent was delivered and the other side is set
    /// to reset when it is closed.
    Reset { downstream: bool },
    /// Bytes stopped moving into the peer's send queue before the FIN could be forwarded.
    Stalled {
        downstream_to_upstream: bool,
        missing: u64,
    },
}

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
    pub fn capture(
        down: &TcpStream,
        up: &TcpStream,
        copied_d2u: u64,
        copied_u2d: u64,
    ) -> io::Result<Baseline> {
        Ok(Baseline {
            up_offset: written(up)?.saturating_sub(copied_d2u),
            down_offset: written(down)?.saturating_sub(copied_u2d),
        })
    }
}

/// Bytes `from` has received that are not yet in `to`'s send queue (0 when all delivered).
/// Called once `from` is finished: with `fin`, `tcpi_bytes_received` counts the FIN as one
/// byte; after a reset there is no FIN.
fn undelivered(from: &TcpStream, to: &TcpStream, to_offset: u64, fin: bool) -> io::Result<u64> {
    let received = sockopt::tcp_info(from)?
        .bytes_received
        .saturating_sub(u64::from(fin));
    let delivered = written(to)?.saturating_sub(to_offset);
    tracing::trace!(received, delivered, "delivery check");
    Ok(received.saturating_sub(delivered))
}

/// How one direction of a spliced connection ended.
enum DirEnd {
    /// FIN forwarded after every byte.
    Fin,
    /// The direction was diverted to the daemon and copied to EOF in userspace.
    Copied,
    /// `from` failed; the other side is set to reset.
    Reset,
    /// `to` is gone (reset) while bytes were still on their way to it; `from` is set to reset.
    PeerReset,
    Stalled(u64),
}

/// Why [`wait_delivered`] returned.
enum Delivery {
    Done,
    Stalled(u64),
    /// Bytes showed up on `from` itself: the direction was diverted.
    Diverted,
    /// `to` was reset meanwhile: the bytes cannot be delivered.
    PeerGone,
}

/// Waits until every byte received on `from` has been queued on `to`. Gives up when nothing
/// moved for `patience` (the connection's idle timeout; `None`: never, as a userspace copy
/// would wait on a slow reader too).
async fn wait_delivered(
    from: &TcpStream,
    to: &TcpStream,
    to_offset: u64,
    fin: bool,
    patience: Option<Duration>,
    diverted: &(dyn Fn() -> bool + Sync),
) -> io::Result<Delivery> {
    let mut missing = undelivered(from, to, to_offset, fin)?;
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_micros(50);
    while missing > 0 {
        if sockopt::readable_bytes(from)? > 0 && diverted() {
            return Ok(Delivery::Diverted);
        }
        // Looked at without consuming SO_ERROR: the other direction reports it.
        if sockopt::tcp_info(to)?.state == sockopt::TCP_CLOSE {
            return Ok(Delivery::PeerGone);
        }
        if patience.is_some_and(|p| last_progress.elapsed() > p) {
            return Ok(Delivery::Stalled(missing));
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(20));
        let now = undelivered(from, to, to_offset, fin)?;
        if now < missing {
            last_progress = Instant::now();
        }
        missing = now;
    }
    Ok(Delivery::Done)
}

/// Copies a diverted direction in userspace until EOF, then forwards the FIN. The verdict
/// passes every segment of a diverted direction to `from` itself, in order, so reading `from`
/// yields the rest of the stream.
async fn copy_rest(
    from: &TcpStream,
    to: &TcpStream,
    counters: &ByteCounters<'_>,
) -> io::Result<()> {
    let mut buf = vec![0u8; super::copy::COPY_BUFFER_INITIAL];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        counters.read_side.inc_by(n as u64);
        let mut off = 0;
        while off < n {
            to.writable().await?;
            match to.try_write(&buf[off..n]) {
                Ok(w) => off += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        counters.write_side.inc_by(n as u64);
    }
    sockopt::shutdown_write(to)
}

/// Supervises one direction: FIN forwarding, resets, and the diverted fallback.
/// `diverted()` reads the direction's `PEER_DIVERTED` flag from the pair map.
async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    to_offset: u64,
    patience: Option<Duration>,
    counters: ByteCounters<'_>,
    diverted: &(dyn Fn() -> bool + Sync),
) -> io::Result<DirEnd> {
    let interest = Interest::READABLE | Interest::ERROR;
    // Bytes readable on a spliced socket are normally transient (received, not yet through
    // the verdict); only the kernel's flag says the direction is ours now.
    let is_diverted =
        || -> io::Result<bool> { Ok(sockopt::readable_bytes(from)? > 0 && diverted()) };
    loop {
        let ready = from.ready(interest).await?;
        if is_diverted()? {
            tracing::debug!("direction diverted to userspace during splice set-up");
            return copy_rest(from, to, &counters)
                .await
                .map(|()| DirEnd::Copied);
        }
        if (ready.is_error() || ready.is_read_closed())
            && let Some(e) = sockopt::take_error(from)?
        {
            // What the failed side sent before failing still reaches the other side, then
            // the reset.
            tracing::debug!(?ready, error = %e, "socket error; flushing, then resetting the other side");
            return Ok(
                match wait_delivered(from, to, to_offset, false, patience, diverted).await? {
                    Delivery::PeerGone => DirEnd::PeerReset,
                    _ => {
                        copy::pass_reset(to, patience).await;
                        DirEnd::Reset
                    }
                },
            );
        }
        if ready.is_read_closed() {
            return match wait_delivered(from, to, to_offset, true, patience, diverted).await? {
                Delivery::Done => sockopt::shutdown_write(to).map(|()| DirEnd::Fin),
                Delivery::Stalled(missing) => Ok(DirEnd::Stalled(missing)),
                Delivery::PeerGone => Ok(DirEnd::PeerReset),
                Delivery::Diverted => copy_rest(from, to, &counters)
                    .await
                    .map(|()| DirEnd::Copied),
            };
        }
        // Woken without EOF or queued bytes: clear the readiness and wait again.
        let _ = from.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }
}

/// A finished direction (`downstream`: the one read from the downstream socket): `Ok(diverted)`
/// if the connection goes on, or how it ends.
async fn finished(
    end: DirEnd,
    downstream: bool,
    from: &TcpStream,
    patience: Option<Duration>,
) -> Result<bool, SplicedEnd> {
    match end {
        DirEnd::Fin => Ok(false),
        DirEnd::Copied => Ok(true),
        DirEnd::Reset => Err(SplicedEnd::Reset { downstream }),
        DirEnd::PeerReset => {
            copy::pass_reset(from, patience).await;
            Err(SplicedEnd::Reset {
                downstream: !downstream,
            })
        }
        DirEnd::Stalled(missing) => Err(SplicedEnd::Stalled {
            downstream_to_upstream: downstream,
            missing,
        }),
    }
}

/// Runs until both directions have been closed or the connection idles out. `d2u`/`u2d`
/// count bytes of a direction the kernel diverted to userspace. A side whose direction has
/// finished is still watched: an error on it (a reset after its FIN) resets the other side.
pub async fn supervise(
    down: &TcpStream,
    up: &TcpStream,
    idle: Option<Duration>,
    base: Baseline,
    d2u: ByteCounters<'_>,
    u2d: ByteCounters<'_>,
    guard: &crate::ebpf::SpliceGuard,
) -> io::Result<SplicedEnd> {
    // Idle is judged from TCP's own "ms since data was last received" on both sockets, so the
    // data path never has to report activity to userspace.
    let check_every =
        idle.map(|d| (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(30)));
    let mut idle_tick = tokio::time::interval(check_every.unwrap_or(Duration::from_secs(3600)));
    idle_tick.tick().await;
    let down_diverted = || guard.diverted(true);
    let up_diverted = || guard.diverted(false);
    let down_to_up = direction(down, up, base.up_offset, idle, d2u, &down_diverted);
    let up_to_down = direction(up, down, base.down_offset, idle, u2d, &up_diverted);
    let down_error = down.ready(Interest::ERROR);
    let up_error = up.ready(Interest::ERROR);
    tokio::pin!(down_to_up, up_to_down, down_error, up_error);
    let (mut d_done, mut u_done) = (false, false);
    let mut diverted = false;
    while !(d_done && u_done) {
        tokio::select! {
            r = &mut down_to_up, if !d_done => match finished(r?, true, down, idle).await {
                Ok(d) => (diverted, d_done) = (diverted | d, true),
                Err(end) => return Ok(end),
            },
            r = &mut up_to_down, if !u_done => match finished(r?, false, up, idle).await {
                Ok(d) => (diverted, u_done) = (diverted | d, true),
                Err(end) => return Ok(end),
            },
            _ = &mut down_error, if d_done => {
                tracing::debug!("downstream failed after its FIN; resetting upstream");
                copy::pass_reset(up, idle).await;
                return Ok(SplicedEnd::Reset { downstream: true });
            },
            _ = &mut up_error, if u_done => {
                tracing::debug!("upstream failed after its FIN; resetting downstream");
                copy::pass_reset(down, idle).await;
                return Ok(SplicedEnd::Reset { downstream: false });
            },
            _ = idle_tick.tick(), if idle.is_some() => {
                let idle = idle.unwrap_or_default();
                let quiet = sockopt::tcp_info(down)?.last_data_recv.min(sockopt::tcp_info(up)?.last_data_recv);
                if Duration::from_millis(u64::from(quiet)) >= idle {
                    return Ok(SplicedEnd::IdleTimeout);
                }
            }
        }
    }
    Ok(SplicedEnd::Done { diverted })
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A direction the kernel diverted during set-up is finished by the daemon: every byte
    /// arrives in order, then the FIN; the other direction stays spliced.
    #[tokio::test]
    async fn a_diverted_direction_is_finished_in_userspace() {
        let Some(splicer) = crate::ebpf::splicer_or_skip() else {
            return;
        };
        let (mut client, down) = crate::network::test_util::tcp_pair().await;
        let (up, mut server) = crate::network::test_util::tcp_pair().await;
        let base = Baseline::capture(&down, &up, 0, 0).unwrap();
        let (guard, complete) = splicer.splice_half_for_test(&down, &up);
        // Arrives while the upstream socket is not in the SOCKHASH: diverted.
        client.write_all(b"early ").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        complete();
        assert!(guard.diverted(true), "the verdict flagged the direction");
        let c = Counter::default();
        let counters = || ByteCounters {
            read_side: &c,
            write_side: &c,
        };
        let sup = supervise(&down, &up, None, base, counters(), counters(), &guard);
        let traffic = async {
            client.write_all(b"and late").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"early and late", "in order, then FIN");
            // The other direction is spliced by the kernel.
            server.write_all(b"reply").await.unwrap();
            server.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"reply");
        };
        let (end, ()) =
            tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(sup, traffic) })
                .await
                .expect("no hang");
        assert_eq!(end.unwrap(), SplicedEnd::Done { diverted: true });
        assert_eq!(
            c.get(),
            2 * 14,
            "the diverted bytes were copied (read + write) in userspace"
        );
        drop(guard);
    }
}
