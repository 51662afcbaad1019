//! A real HTTP/1.1 origin server (hyper) for the L7 tests. It answers by path:
//!
//! - `/echo...`: the request body streamed back, with `x-body-len` trailer-free accounting in
//!   the log; headers of the request come back as `x-seen-<name>` response headers.
//! - `/status/<code>`: that status, body "status <code>".
//! - `/delay/<ms>`: waits, then 200.
//! - `/bytes/<n>`: n bytes of a repeating pattern, streamed in 64 KiB frames (no length:
//!   chunked).
//! - `/sink`: reads the whole request body and answers its length and SHA-256.
//! - anything else: 200 with body "<name> <method> <path>".
//!
//! Every response has `x-origin: <name>`. Each request is counted (per origin and per path
//! prefix) and its head recorded for the tests to inspect.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
}

/// A running origin; stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    pub name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

type Resp = Response<UnsyncBoxBody<Bytes, hyper::Error>>;

impl Origin {
    /// Serves on 127.0.0.1:0.
    pub async fn start(name: &str) -> Origin {
        Origin::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    /// Serves on `addr` (to restart an origin on the port it had).
    pub async fn start_on(addr: SocketAddr, name: &str) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (n, s) = (name.to_owned(), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, s) = (n.clone(), Arc::clone(&s));
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(n.clone(), Arc::clone(&s), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin {
            addr,
            name: name.to_owned(),
            seen,
            task,
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The last request seen.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the origin saw a request")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|n: Infallible| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

async fn handle(
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    let mut resp = if path.starts_with("/echo") {
        Response::new(req.into_body().boxed_unsync())
    } else if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        full(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("status {code}"),
        )
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        full(StatusCode::OK, "delayed")
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        Response::new(
            Pattern {
                left: n.parse().unwrap_or(0),
            }
            .boxed_unsync(),
        )
    } else if path == "/sink" {
        let mut body = req.into_body();
        let mut hash = Sha256::new();
        let mut len = 0u64;
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                len += d.len() as u64;
                hash.update(&d);
            }
        }
        full(
            StatusCode::OK,
            format!("{len} {}", crate::data::hex(&hash.finalize().into())),
        )
    } else {
        full(StatusCode::OK, format!("{name} {} {path}", req.method()))
    };
    resp.headers_mut().insert("x-origin", name.parse().unwrap());
    Ok(resp)
}

/// A streamed body of `left` pattern bytes, 64 KiB per frame.
struct Pattern {
    left: u64,
}

const PATTERN_FRAME: usize = 64 * 1024;

impl Body for Pattern {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        static BLOCK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let block = BLOCK.get_or_init(|| {
            Bytes::from(
                (0..PATTERN_FRAME)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<u8>>(),
            )
        });
        let n = self.left.min(PATTERN_FRAME as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(block.slice(..n)))))
    }
}

/// The pattern `/bytes/<n>` sends, for checking what arrived.
pub fn pattern_byte(i: u64) -> u8 {
    ((i % PATTERN_FRAME as u64) % 251) as u8
}
