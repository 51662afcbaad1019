//! `splice(2)` through a pipe: the third data path, for bulk connections. The kernel moves
//! page references socket -> pipe -> socket; the daemon only issues the two system calls per
//! chunk and never touches the bytes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::task::{Context, Poll, ready};

use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity (F_SETPIPE_SZ): 1 MiB is the default `fs.pipe-max-size`, so an unprivileged
/// daemon can set it too; it lets one splice move several 64 KiB loopback segments.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// One direction: reader socket -> pipe -> writer socket.
pub struct PipePump {
    rd: OwnedFd,
    wr: OwnedFd,
    /// Bytes in the pipe, not yet spliced out.
    in_pipe: usize,
    eof: bool,
    shut: bool,
    pub bytes: u64,
}

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: plain system call on fds we own or borrow for its duration; null offsets (both
    // ends are a socket or a pipe).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

impl PipePump {
    pub fn new() -> io::Result<PipePump> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own pipe fd; failure only leaves the default size.
        unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(PipePump { rd, wr, in_pipe: 0, eof: false, shut: false, bytes: 0 })
    }

    pub fn is_done(&self) -> bool {
        self.shut
    }

    /// Moves bytes until `r` would block, `w` would block, or the direction is finished.
    /// Errors carry `true` when they came from the reading socket.
    pub fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        r: &TcpStream,
        w: &TcpStream,
        read_counter: &Counter,
        write_counter: &Counter,
    ) -> Poll<Result<(), (bool, io::Error)>> {
        loop {
            if self.in_pipe == 0 && !self.eof {
                ready!(r.poll_read_ready(cx)).map_err(|e| (true, e))?;
                let rfd = r.as_fd().as_raw_fd();
                let wr = self.wr.as_raw_fd();
                match r.try_io(Interest::READABLE, || splice(rfd, wr, PIPE_SIZE as usize)) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.in_pipe = n;
                        read_counter.inc_by(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err((true, e))),
                }
            }
            while self.in_pipe > 0 {
                ready!(w.poll_write_ready(cx)).map_err(|e| (false, e))?;
                let wfd = w.as_fd().as_raw_fd();
                let rd = self.rd.as_raw_fd();
                match w.try_io(Interest::WRITABLE, || splice(rd, wfd, self.in_pipe)) {
                    Ok(0) => return Poll::Ready(Err((false, io::ErrorKind::WriteZero.into()))),
                    Ok(n) => {
                        self.in_pipe -= n;
                        self.bytes += n as u64;
                        write_counter.inc_by(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err((false, e))),
                }
            }
            if self.eof {
                if !self.shut {
                    super::sockopt::shutdown_write(w).map_err(|e| (false, e))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}
