//! The userspace data path: a bidirectional copy between the downstream and the upstream
//! socket with half-close, an idle timeout and, for `fast_path: auto`, a hand-off point where
//! the connection can move to the kernel splice with no byte held in userspace.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::network::sockopt;

/// First buffer of a direction, allocated only once its socket is readable: an idle
/// connection holds no copy buffer at all, a request/response one 16 KiB per direction.
pub const COPY_BUFFER_INITIAL: usize = 16 * 1024;
/// A read that fills the buffer doubles it, up to this size (bulk transfers). 256 KiB
/// moves several 64 KiB loopback TSO segments per read/write pair.
pub const COPY_BUFFER_MAX: usize = 256 * 1024;

/// What the copy saw of one direction; input to the auto fast-path rule.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectionStats {
    pub bytes: u64,
    pub reads: u64,
    /// Reads that filled the whole buffer: the sender had more queued (bulk transfer).
    pub full_reads: u64,
}

/// How a userspace copy ended.
#[derive(Debug)]
pub enum CopyEnd {
    /// Both directions saw EOF and were shut down.
    Done,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// The hand-off predicate said yes while nothing was buffered: the caller may splice.
    HandOff,
    /// A socket failed (reset, or an error on write); `downstream` says which one.
    Failed { downstream: bool, error: io::Error },
}

impl PartialEq for CopyEnd {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Which socket of a direction an error came from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Reader,
    Writer,
}

/// Counters a direction adds its bytes to.
pub struct ByteCounters<'a> {
    pub read_side: &'a Counter,
    pub write_side: &'a Counter,
}

struct Pump {
    /// Empty until the first readable event.
    buf: Vec<u8>,
    pos: usize,
    cap: usize,
    eof: bool,
    shut: bool,
    stats: DirectionStats,
}

impl Pump {
    fn new() -> Pump {
        Pump {
            buf: Vec::new(),
            pos: 0,
            cap: 0,
            eof: false,
            shut: false,
            stats: DirectionStats::default(),
        }
    }

    fn idle(&self) -> bool {
        self.pos == self.cap
    }

    /// Moves bytes from `r` to `w` until `r` would block (Pending) or is done (Ready).
    /// `moved` is set when any byte was read.
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        r: &TcpStream,
        w: &TcpStream,
        counters: &ByteCounters<'_>,
        moved: &mut bool,
    ) -> Poll<Result<(), (Side, io::Error)>> {
        loop {
            if self.pos == self.cap && !self.eof {
                ready!(r.poll_read_ready(cx)).map_err(|e| (Side::Reader, e))?;
                if self.buf.is_empty() {
                    self.buf = vec![0u8; COPY_BUFFER_INITIAL];
                }
                let n = match r.try_read(&mut self.buf) {
                    Ok(n) => n,
                    // Readiness was cleared: poll again to register the waker.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err((Side::Reader, e))),
                };
                if n == 0 {
                    self.eof = true;
                } else {
                    *moved = true;
                    self.pos = 0;
                    self.cap = n;
                    self.stats.reads += 1;
                    if n == self.buf.len() {
                        self.stats.full_reads += 1;
                    }
                    counters.read_side.inc_by(n as u64);
                }
            }
            while self.pos < self.cap {
                ready!(w.poll_write_ready(cx)).map_err(|e| (Side::Writer, e))?;
                let n = match w.try_write(&self.buf[self.pos..self.cap]) {
                    Ok(0) => {
                        return Poll::Ready(Err((Side::Writer, io::ErrorKind::WriteZero.into())));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err((Side::Writer, e))),
                };
                self.pos += n;
                self.stats.bytes += n as u64;
                counters.write_side.inc_by(n as u64);
            }
            if !self.buf.is_empty()
                && self.cap == self.buf.len()
                && self.buf.len() < COPY_BUFFER_MAX
            {
                // The sender had more than a buffer's worth queued: grow (the buffer is empty
                // here, nothing to copy over).
                let bigger = (self.buf.len() * 2).min(COPY_BUFFER_MAX);
                self.buf = vec![0u8; bigger];
                self.cap = 0;
                self.pos = 0;
            }
            if self.eof {
                if !self.shut {
                    sockopt::shutdown_write(w).map_err(|e| (Side::Writer, e))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// The two directions of one proxied connection.
pub struct BiCopy {
    down_to_up: Pump,
    up_to_down: Pump,
}

impl Default for BiCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl BiCopy {
    pub fn new() -> BiCopy {
        BiCopy {
            down_to_up: Pump::new(),
            up_to_down: Pump::new(),
        }
    }

    /// After [`CopyEnd::Failed`] (`downstream_failed` = which side failed): writes what was
    /// read from the failed side but not yet written to the other one, lets the other side
    /// take it (see [`pass_reset`]), then resets the other side, so it sees everything the
    /// failed side sent and then the abort, as it would on a direct connection, never a
    /// clean FIN that passes a truncated stream off as complete.
    pub async fn flush_and_reset(
        &mut self,
        downstream_failed: bool,
        other: &mut TcpStream,
        patience: Option<Duration>,
    ) {
        use tokio::io::AsyncWriteExt;
        let pump = if downstream_failed {
            &mut self.down_to_up
        } else {
            &mut self.up_to_down
        };
        if pump.pos < pump.cap && other.write_all(&pump.buf[pump.pos..pump.cap]).await.is_ok() {
            pump.stats.bytes += (pump.cap - pump.pos) as u64;
            pump.pos = pump.cap;
        }
        pass_reset(other, patience).await;
    }

    pub fn stats(&self) -> (DirectionStats, DirectionStats) {
        (self.down_to_up.stats, self.up_to_down.stats)
    }

    /// Copies until both directions are done, the connection idles for `idle`, or
    /// `hand_off(down_to_up, up_to_down)` returns true at a moment when no byte is buffered
    /// and neither side has seen EOF. A side whose direction has finished (its FIN was passed
    /// on) is still watched: an error on it later (a reset after a half-close) ends the copy
    /// as [`CopyEnd::Failed`].
    pub async fn run(
        &mut self,
        down: &mut TcpStream,
        up: &mut TcpStream,
        idle: Option<Duration>,
        d2u: ByteCounters<'_>,
        u2d: ByteCounters<'_>,
        hand_off: &mut (dyn FnMut(&DirectionStats, &DirectionStats) -> bool + Send),
    ) -> CopyEnd {
        let (down, up) = (&*down, &*up);
        let mut last_activity = Instant::now();
        let far = Duration::from_secs(86400 * 365);
        let idle_for = idle.unwrap_or(far);
        let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(idle_for));
        // Polled only once the side's own direction is done.
        let mut down_error = std::pin::pin!(down.ready(Interest::ERROR));
        let mut up_error = std::pin::pin!(up.ready(Interest::ERROR));
        poll_fn(|cx| {
            let mut moved = false;
            let a = if self.down_to_up.shut {
                Poll::Ready(Ok(()))
            } else {
                self.down_to_up.poll_copy(cx, down, up, &d2u, &mut moved)
            };
            if let Poll::Ready(Err((side, error))) = a {
                let downstream = matches!(side, Side::Reader);
                return Poll::Ready(CopyEnd::Failed { downstream, error });
            }
            let b = if self.up_to_down.shut {
                Poll::Ready(Ok(()))
            } else {
                self.up_to_down.poll_copy(cx, up, down, &u2d, &mut moved)
            };
            if let Poll::Ready(Err((side, error))) = b {
                let downstream = matches!(side, Side::Writer);
                return Poll::Ready(CopyEnd::Failed { downstream, error });
            }
            if a.is_ready() && b.is_ready() {
                return Poll::Ready(CopyEnd::Done);
            }
            for (done, watch, sock, downstream) in [
                (self.down_to_up.shut, down_error.as_mut(), down, true),
                (self.up_to_down.shut, up_error.as_mut(), up, false),
            ] {
                if done && watch.poll(cx).is_ready() {
                    let error = sockopt::take_error(sock)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| io::ErrorKind::ConnectionReset.into());
                    return Poll::Ready(CopyEnd::Failed { downstream, error });
                }
            }
            if moved {
                last_activity = Instant::now();
            }
            if self.down_to_up.idle()
                && self.up_to_down.idle()
                && !self.down_to_up.eof
                && !self.up_to_down.eof
                && hand_off(&self.down_to_up.stats, &self.up_to_down.stats)
            {
                return Poll::Ready(CopyEnd::HandOff);
            }
            if idle.is_some() {
                // Lazy idle timer: re-armed only when it fires early, not on every read.
                while timer.as_mut().poll(cx).is_ready() {
                    let deadline = last_activity + idle_for;
                    if Instant::now() >= deadline {
                        return Poll::Ready(CopyEnd::IdleTimeout);
                    }
                    timer.as_mut().reset(deadline);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Passes a reset on to `to`: waits until `to`'s peer has acknowledged everything already
/// written to it (so what the failed side sent before failing still arrives), giving up once
/// nothing moved for `patience` (the connection's idle timeout; `None`: as long as it moves),
/// then sets `to` to reset when it is closed (`SO_LINGER` 0). The caller closes it.
pub async fn pass_reset(to: &TcpStream, patience: Option<Duration>) {
    let mut left = sockopt::unacked_bytes(to).unwrap_or(0);
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_micros(100);
    while left > 0 && patience.is_none_or(|p| last_progress.elapsed() < p) {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(20));
        let now = match sockopt::unacked_bytes(to) {
            Ok(n) => n,
            Err(_) => break,
        };
        if now < left {
            last_progress = Instant::now();
        }
        left = now;
        if sockopt::tcp_info(to).is_ok_and(|i| i.state == sockopt::TCP_CLOSE) {
            break;
        }
    }
    let _ = sockopt::reset_on_close(to);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both sides of a direction counted on one counter.
    fn same(c: &Counter) -> ByteCounters<'_> {
        ByteCounters {
            read_side: c,
            write_side: c,
        }
    }

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        // client <-> [down | proxy | up] <-> server
        let (mut client, mut down) = crate::network::test_util::tcp_pair().await;
        let (mut up, mut server) = crate::network::test_util::tcp_pair().await;
        let c = [
            Counter::default(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        ];
        let proxy = tokio::spawn(async move {
            let mut bi = BiCopy::new();
            let end = bi
                .run(
                    &mut down,
                    &mut up,
                    None,
                    ByteCounters {
                        read_side: &c[0],
                        write_side: &c[1],
                    },
                    ByteCounters {
                        read_side: &c[2],
                        write_side: &c[3],
                    },
                    &mut |_, _| false,
                )
                .await;
            (end, bi.stats(), c[1].get(), c[3].get())
        });
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // Half-closed: the server can still answer.
        server.write_all(b"world!").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!");
        let (end, (d2u, u2d), w1, w2) = proxy.await.unwrap();
        assert_eq!(end, CopyEnd::Done);
        assert_eq!((d2u.bytes, u2d.bytes), (5, 6));
        assert_eq!((w1, w2), (5, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_only_without_traffic() {
        let (mut client, mut down) = crate::network::test_util::tcp_pair().await;
        let (mut up, mut server) = crate::network::test_util::tcp_pair().await;
        let c = Counter::default();
        let proxy = tokio::spawn(async move {
            let mut bi = BiCopy::new();
            bi.run(
                &mut down,
                &mut up,
                Some(Duration::from_secs(10)),
                same(&c),
                same(&c),
                &mut |_, _| false,
            )
            .await
        });
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            server.read_exact(&mut b).await.unwrap();
        }
        assert!(
            !proxy.is_finished(),
            "traffic every 6 s keeps a 10 s idle timer from firing"
        );
        let end = proxy.await.unwrap();
        assert_eq!(end, CopyEnd::IdleTimeout);
    }

    #[tokio::test]
    async fn hands_off_only_when_nothing_is_buffered() {
        let (mut client, mut down) = crate::network::test_util::tcp_pair().await;
        let (mut up, mut server) = crate::network::test_util::tcp_pair().await;
        let c = Counter::default();
        let proxy = tokio::spawn(async move {
            let mut bi = BiCopy::new();
            let end = bi
                .run(&mut down, &mut up, None, same(&c), same(&c), &mut |a, b| {
                    a.reads >= 1 && b.reads >= 1
                })
                .await;
            (end, bi.stats())
        });
        client.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        server.read_exact(&mut b).await.unwrap();
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
        let (end, (d2u, u2d)) = proxy.await.unwrap();
        assert_eq!(end, CopyEnd::HandOff);
        assert_eq!((d2u.bytes, u2d.bytes), (4, 4));
    }
}
