//! The userspace copy when either side is TLS (terminated downstream or originated upstream):
//! the bytes have to pass through the TLS state machines, so the socket-readiness pumps of
//! [`super::copy`] (and the kernel splice) cannot be used. Same contract: half-close both
//! ways (a finished direction sends close_notify and FIN), the idle timeout, byte counters,
//! and which side failed.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::copy::{ByteCounters, COPY_BUFFER_INITIAL, CopyEnd};
use crate::network::Conn;

/// One direction; its buffer is allocated at the first read, like the plain pumps'.
#[derive(Default)]
struct Pump {
    buf: Vec<u8>,
    pos: usize,
    cap: usize,
    eof: bool,
    shut: bool,
}

enum Failed {
    Reader(io::Error),
    Writer(io::Error),
}

impl Pump {
    /// Moves bytes until `r` would block or this direction is done (EOF passed on).
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut Conn>,
        mut w: Pin<&mut Conn>,
        counters: &ByteCounters<'_>,
        moved: &mut bool,
    ) -> Poll<Result<(), Failed>> {
        loop {
            if self.pos == self.cap && !self.eof {
                if self.buf.is_empty() {
                    self.buf = vec![0u8; COPY_BUFFER_INITIAL];
                }
                let mut rb = ReadBuf::new(&mut self.buf);
                ready!(r.as_mut().poll_read(cx, &mut rb)).map_err(Failed::Reader)?;
                let n = rb.filled().len();
                if n == 0 {
                    self.eof = true;
                } else {
                    *moved = true;
                    self.pos = 0;
                    self.cap = n;
                    counters.read_side.inc_by(n as u64);
                }
            }
            while self.pos < self.cap {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.cap]))
                    .map_err(Failed::Writer)?;
                if n == 0 {
                    return Poll::Ready(Err(Failed::Writer(io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                counters.write_side.inc_by(n as u64);
            }
            // TLS buffers records: push them out before waiting for more input.
            ready!(w.as_mut().poll_flush(cx)).map_err(Failed::Writer)?;
            if self.eof {
                if !self.shut {
                    ready!(w.as_mut().poll_shutdown(cx)).map_err(Failed::Writer)?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies between `down` and `up` until both directions are done, the connection idles for
/// `idle`, or a side fails.
pub async fn run(
    down: &mut Conn,
    up: &mut Conn,
    idle: Option<Duration>,
    d2u: ByteCounters<'_>,
    u2d: ByteCounters<'_>,
) -> CopyEnd {
    let mut a = Pump::default();
    let mut b = Pump::default();
    let mut last_activity = Instant::now();
    let idle_for = idle.unwrap_or(Duration::from_secs(86400 * 365));
    let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(idle_for));
    poll_fn(|cx| {
        let mut moved = false;
        let ra = if a.shut {
            Poll::Ready(Ok(()))
        } else {
            a.poll_copy(cx, Pin::new(down), Pin::new(up), &d2u, &mut moved)
        };
        match ra {
            Poll::Ready(Err(Failed::Reader(error))) => {
                return Poll::Ready(CopyEnd::Failed {
                    downstream: true,
                    error,
                });
            }
            Poll::Ready(Err(Failed::Writer(error))) => {
                return Poll::Ready(CopyEnd::Failed {
                    downstream: false,
                    error,
                });
            }
            _ => {}
        }
        let rb = if b.shut {
            Poll::Ready(Ok(()))
        } else {
            b.poll_copy(cx, Pin::new(up), Pin::new(down), &u2d, &mut moved)
        };
        match rb {
            Poll::Ready(Err(Failed::Reader(error))) => {
                return Poll::Ready(CopyEnd::Failed {
                    downstream: false,
                    error,
                });
            }
            Poll::Ready(Err(Failed::Writer(error))) => {
                return Poll::Ready(CopyEnd::Failed {
                    downstream: true,
                    error,
                });
            }
            _ => {}
        }
        if ra.is_ready() && rb.is_ready() {
            return Poll::Ready(CopyEnd::Done);
        }
        if moved {
            last_activity = Instant::now();
        }
        if idle.is_some() {
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
