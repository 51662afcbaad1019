//! A connection as the proxies see it: plain TCP, or TLS over TCP (terminated on a listener
//! or originated towards a cluster). One enum rather than a generic parameter, so the
//! proxies stay non-generic and plain TCP pays one branch, not a box or a lock.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

/// TLS over TCP, either side.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// What a verified peer certificate says about the peer: its subject alt names (`DNS:`,
/// `URI:` such as `spiffe://...`, `IP:` prefixes dropped), read once at the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub sans: Vec<String>,
}

/// One connection.
pub enum Conn {
    Tcp(TcpStream),
    Tls {
        stream: Box<TlsStream>,
        /// The peer's verified certificate, if it presented one.
        identity: Option<Arc<PeerIdentity>>,
        /// [`Conn::try_read_buf`] stopped with plaintext possibly left in the TLS session:
        /// [`Conn::readable`] must not wait for the socket.
        more: AtomicBool,
    },
}

/// What [`Conn::try_read_buf`] reads at most in one call under TLS.
const TLS_READ_BUDGET: usize = 256 * 1024;

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Conn::Tls { stream, .. } => f.debug_tuple("Tls").field(stream.get_ref().0).finish(),
        }
    }
}

impl std::os::fd::AsFd for Conn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

impl From<TcpStream> for Conn {
    fn from(s: TcpStream) -> Conn {
        Conn::Tcp(s)
    }
}

impl Conn {
    /// A TLS connection after its handshake.
    pub fn tls(stream: TlsStream, identity: Option<Arc<PeerIdentity>>) -> Conn {
        Conn::Tls {
            stream: Box::new(stream),
            identity,
            more: AtomicBool::new(false),
        }
    }

    /// The TCP socket (under TLS: the socket the records travel on; never read it directly).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls { stream, .. } => stream.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls { .. })
    }

    /// The plain socket, if this is one (the kernel splice and the readiness-based pumps).
    pub fn as_tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Conn::Tcp(s) => Some(s),
            Conn::Tls { .. } => None,
        }
    }

    /// The ALPN protocol the TLS handshake agreed on.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Conn::Tcp(_) => None,
            Conn::Tls { stream, .. } => match stream.as_ref() {
                tokio_rustls::TlsStream::Server(s) => s.get_ref().1.alpn_protocol(),
                tokio_rustls::TlsStream::Client(s) => s.get_ref().1.alpn_protocol(),
            },
        }
    }

    /// The verified peer certificate's identity (mTLS).
    pub fn identity(&self) -> Option<&Arc<PeerIdentity>> {
        match self {
            Conn::Tcp(_) => None,
            Conn::Tls { identity, .. } => identity.as_ref(),
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }

    /// Waits until [`Conn::try_read_buf`] may have something (readiness, as
    /// `TcpStream::readable`; spurious wake-ups happen).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.readable().await,
            Conn::Tls { stream, more, .. } => {
                if more.load(Ordering::Relaxed) {
                    return Ok(());
                }
                stream.get_ref().0.readable().await
            }
        }
    }

    /// Waits until [`Conn::try_write`] may make progress.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// Reads what is there without waiting: `Ok(0)` is EOF, `WouldBlock` nothing yet.
    /// Under TLS it decrypts until the socket would block (or a budget is spent), so that
    /// waiting on [`Conn::readable`] afterwards never sleeps on buffered plaintext.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_read_buf(buf),
            Conn::Tls { stream, more, .. } => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut total = 0;
                more.store(false, Ordering::Relaxed);
                loop {
                    if total >= TLS_READ_BUDGET {
                        more.store(true, Ordering::Relaxed);
                        return Ok(total);
                    }
                    buf.reserve(16 * 1024);
                    match tokio_util::io::poll_read_buf(Pin::new(stream.as_mut()), &mut cx, buf) {
                        Poll::Ready(Ok(0)) if total == 0 => return Ok(0),
                        // EOF after data: reported by the next call.
                        Poll::Ready(Ok(0)) => {
                            more.store(true, Ordering::Relaxed);
                            return Ok(total);
                        }
                        Poll::Ready(Ok(n)) => total += n,
                        Poll::Ready(Err(e)) if total == 0 => return Err(e),
                        Poll::Ready(Err(_)) => {
                            more.store(true, Ordering::Relaxed);
                            return Ok(total);
                        }
                        Poll::Pending if total == 0 => return Err(io::ErrorKind::WouldBlock.into()),
                        Poll::Pending => return Ok(total),
                    }
                }
            }
        }
    }

    /// Writes what the socket takes without waiting (`WouldBlock`: nothing). Under TLS the
    /// records may stay queued in the session: see [`Conn::try_flush`].
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_write(buf),
            Conn::Tls { stream, .. } => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match Pin::new(stream.as_mut()).poll_write(&mut cx, buf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Pushes queued TLS records to the socket without waiting; `Ok(true)`: nothing left
    /// queued (always, for plain TCP).
    pub fn try_flush(&mut self) -> io::Result<bool> {
        match self {
            Conn::Tcp(_) => Ok(true),
            Conn::Tls { stream, .. } => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match Pin::new(stream.as_mut()).poll_flush(&mut cx) {
                    Poll::Ready(r) => r.map(|()| true),
                    Poll::Pending => Ok(false),
                }
            }
        }
    }

    /// Borrowed read and write halves, usable at once from one task.
    pub fn split(&mut self) -> (ConnRead<'_>, ConnWrite<'_>) {
        match self {
            Conn::Tcp(s) => {
                let (r, w) = s.split();
                (ConnRead::Tcp(r), ConnWrite::Tcp(w))
            }
            Conn::Tls { stream, .. } => {
                let (r, w) = tokio::io::split(stream.as_mut());
                (ConnRead::Tls(r), ConnWrite::Tls(w))
            }
        }
    }

    /// Whether nothing is waiting to be read (a pooled idle connection that is still
    /// usable): peeks at the socket without consuming, so under TLS any record (data or a
    /// close_notify) counts as "not quiet".
    pub fn quiet(&self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(self.tcp().poll_peek(&mut cx, &mut buf), Poll::Pending)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp(s) => s.is_write_vectored(),
            Conn::Tls { stream, .. } => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The read half of [`Conn::split`].
pub enum ConnRead<'a> {
    Tcp(ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut TlsStream>),
}

/// The write half of [`Conn::split`].
pub enum ConnWrite<'a> {
    Tcp(WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut TlsStream>),
}

impl ConnRead<'_> {
    /// Waits until the peer sends something or goes away, without consuming: `Ok(0)` is EOF.
    /// Under TLS there is no peeking through the records: this never returns (a TLS client
    /// that leaves is noticed when its response is written).
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ConnRead::Tcp(r) => r.peek(buf).await,
            ConnRead::Tls(_) => std::future::pending().await,
        }
    }
}

impl AsyncRead for ConnRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnRead::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ConnRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ConnWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnWrite::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            ConnWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnWrite::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            ConnWrite::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ConnWrite::Tcp(w) => w.is_write_vectored(),
            ConnWrite::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnWrite::Tcp(w) => Pin::new(w).poll_flush(cx),
            ConnWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnWrite::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            ConnWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
