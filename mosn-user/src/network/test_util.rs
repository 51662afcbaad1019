//! Helpers shared by this module's unit tests.

use tokio::net::{TcpListener, TcpStream};

/// A connected loopback TCP pair: (client side, accepted side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}
