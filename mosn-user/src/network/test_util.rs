//! Helpers shared by the unit tests of this module and of the modules above it.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};

/// A connected loopback TCP pair: (client side, accepted side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

/// For tests that need root (SO_MARK needs CAP_NET_ADMIN): true when root. Otherwise the test
/// is skipped with the reason on stderr, except in CI (`CI` set), where it fails instead.
pub fn require_root(test: &str) -> bool {
    // The effective uid is the second field of /proc/self/status's "Uid:" line.
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        });
    if euid.as_deref() == Some("0") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("privileged test must run in CI: not root ({test})");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: needs root (SO_MARK needs CAP_NET_ADMIN); run the tests as root to cover it"
    );
    false
}

/// A loopback origin server: greets every connection with `tag`, then echoes.
pub async fn origin(tag: &'static str) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(tag.as_bytes()).await.is_ok() {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}

/// A capture record that answers every client with one settable destination and remembers
/// whom it was asked about.
#[derive(Default)]
pub struct FakeLookup {
    pub dst: Mutex<Option<SocketAddr>>,
    pub asked: Mutex<Vec<SocketAddr>>,
}

impl FakeLookup {
    pub fn set(&self, dst: Option<SocketAddr>) {
        *self.dst.lock().unwrap() = dst;
    }
}

impl super::OriginalDstLookup for FakeLookup {
    fn original_dst(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.asked.lock().unwrap().push(client);
        *self.dst.lock().unwrap()
    }
}
