//! Upstream servers the tests control: a listener on 127.0.0.1:0 whose connections run a
//! handler the test supplies (echo, sink/source, reset mid-stream, ...).

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Backlog of test upstreams: 1,000 connections may arrive at once.
const BACKLOG: u32 = 4096;

/// A running upstream server; stops (and drops its connections) when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Serves each accepted connection with `handler(stream, index)`, `index` counting
    /// accepted connections from 0.
    pub async fn spawn<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind upstream");
        let listener = socket.listen(BACKLOG).expect("listen upstream");
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, _)) => {
                            let i = count.fetch_add(1, Ordering::SeqCst);
                            conns.spawn(handler(stream, i));
                        }
                        Err(e) => {
                            eprintln!("upstream {addr}: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Upstream {
            addr,
            accepted,
            task,
        }
    }

    /// An echo server: writes back what it reads; on EOF shuts its write side down.
    pub async fn echo() -> Upstream {
        Upstream::spawn(|s, _| echo(s)).await
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Echoes until EOF (then shuts down the write side) or an error.
pub async fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => {
                let _ = s.shutdown().await;
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// An address on 127.0.0.1 where nothing listens. The port is below the kernel's ephemeral
/// range, so no outgoing connection can take it (nor self-connect to it) meanwhile.
pub fn dead_addr() -> SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (from, to) = if low > 11000 {
        (10000u16, low - 1)
    } else {
        (1024, low.max(1100) - 1)
    };
    for _ in 0..200 {
        let port = rand::random_range(from..=to);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Free now (bindable) and nobody listening there.
        if StdListener::bind(addr).is_ok() && std::net::TcpStream::connect(addr).is_err() {
            return addr;
        }
    }
    panic!("no free port found in {from}..={to}");
}
