//! A connection as the proxies see it: plain TCP, or TLS over TCP (terminated on a listener
//! or originated towards a cluster). One enum rather than a generic parameter, so the
//! proxies stay non-generic and plain TCP pays one branch, not a box or a lock.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
    },
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Conn::Tls { stream, .. } => f.debug_tuple("Tls").field(stream.get_ref().0).finish(),
        }
    }
}

impl From<TcpStream> for Conn {
    fn from(s: TcpStream) -> Conn {
        Conn::Tcp(s)
    }
}

impl Conn {
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
