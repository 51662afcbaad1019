//! A real h2c origin (the `h2` crate's server, prior knowledge) for the HTTP/2 and gRPC tests.
//! It answers by path:
//!
//! - `/echo...`: the request body streamed back as it arrives (flow control honoured), then
//!   the trailer `x-trailer: done`.
//! - `/sink`: reads the whole body, answers `"<len> <sha256 hex>"`.
//! - `/slow`: like `/sink`, but releases flow-control capacity only after a 20 ms pause per
//!   DATA frame, so a fast sender meets back-pressure.
//! - `/trailers-only`: one HEADERS frame with END_STREAM: 200, `content-type:
//!   application/grpc`, `grpc-status: 5`, `grpc-message: not found here`.
//! - `/reset-early...`: RST_STREAM(INTERNAL_ERROR) before any response headers.
//! - `/reset...`: 200 headers and 7 bytes (`partial`), then RST_STREAM(INTERNAL_ERROR).
//! - `/hold...`: never answers; when the peer resets the stream the reason is recorded
//!   ([`H2Origin::resets`]), so a test can tell that a cancellation arrived.
//! - `/delay/<ms>`: waits, then 200 `"delayed"`.
//! - `/status/<code>`: that status, body `"status <code>"`.
//! - anything else: 200 `"<name> <method> <path>"`.
//!
//! [`Behavior::GrpcStatus`] replaces all of that with one trailers-only gRPC status for every
//! request (a gRPC host that always fails, for retry tests).
//!
//! Every response has `x-origin: <name>`. Each request is recorded on arrival; its body length,
//! SHA-256 and trailers are filled in once the body has been read (paths that never read it
//! keep `None`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::data::hex;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct H2Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `:authority`, if the request had one.
    pub authority: Option<String>,
    pub headers: HeaderMap,
    /// Set once the whole body was read.
    pub body_len: Option<u64>,
    pub body_sha: Option<String>,
    /// Request trailers, if the body was read and ended with some.
    pub trailers: Option<HeaderMap>,
}

/// How the origin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// By path, as the module doc says.
    ByPath,
    /// Every request: a trailers-only 200 with this `grpc-status`.
    GrpcStatus(u32),
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<H2Seen>>,
    resets: Mutex<Vec<(String, Reason)>>,
    connections: AtomicUsize,
}

/// A running h2c origin; stops when dropped.
pub struct H2Origin {
    pub addr: SocketAddr,
    pub name: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl H2Origin {
    /// Serves on 127.0.0.1:0, answering by path.
    pub async fn start(name: &str) -> H2Origin {
        H2Origin::start_with(name, Behavior::ByPath).await
    }

    pub async fn start_with(name: &str, behavior: Behavior) -> H2Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind h2 origin");
        let addr = listener.local_addr().unwrap();
        let state: Arc<State> = Arc::default();
        let (n, st) = (name.to_owned(), Arc::clone(&state));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (n, st) = (n.clone(), Arc::clone(&st));
                tokio::spawn(async move {
                    let mut conn = match h2::server::Builder::new()
                        .max_concurrent_streams(4096)
                        .handshake::<_, Bytes>(tcp)
                        .await
                    {
                        Ok(c) => c,
                        Err(_) => return,
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        let (n, st) = (n.clone(), Arc::clone(&st));
                        tokio::spawn(handle(n, st, behavior, req, respond));
                    }
                });
            }
        });
        H2Origin {
            addr,
            name: name.to_owned(),
            state,
            task,
        }
    }

    /// Requests seen so far, in arrival order.
    pub fn seen(&self) -> Vec<H2Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The last request seen.
    pub fn last(&self) -> H2Seen {
        self.seen().pop().expect("the h2 origin saw a request")
    }

    /// Streams the peer reset while `/hold` held them: (path, reason).
    pub fn resets(&self) -> Vec<(String, Reason)> {
        self.state.resets.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Polls until `pred(self)` holds; panics after `limit` with `what`.
    pub async fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&H2Origin) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !pred(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "h2 origin {}: {what} not within {limit:?} (seen {:?}, resets {:?})",
                self.name,
                self.seen().iter().map(|s| &s.path).collect::<Vec<_>>(),
                self.resets()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for H2Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response head with `x-origin`.
fn head(name: &str, status: u16) -> Response<()> {
    Response::builder()
        .status(status)
        .header("x-origin", name)
        .body(())
        .unwrap()
}

async fn handle(
    name: String,
    st: Arc<State>,
    behavior: Behavior,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string());
    let index = {
        let mut seen = st.seen.lock().unwrap();
        seen.push(H2Seen {
            method: req.method().to_string(),
            path: path.clone(),
            authority: req.uri().authority().map(|a| a.to_string()),
            headers: req.headers().clone(),
            body_len: None,
            body_sha: None,
            trailers: None,
        });
        seen.len() - 1
    };
    let method = req.method().to_string();
    let mut body = req.into_body();
    let record = |len: u64, sha: String, trailers: Option<HeaderMap>| {
        let mut seen = st.seen.lock().unwrap();
        seen[index].body_len = Some(len);
        seen[index].body_sha = Some(sha);
        seen[index].trailers = trailers;
    };

    if let Behavior::GrpcStatus(code) = behavior {
        let _ = drain(&mut body, Duration::ZERO).await;
        let mut r = head(&name, 200);
        let h = r.headers_mut();
        h.insert("content-type", "application/grpc".parse().unwrap());
        h.insert("grpc-status", code.to_string().parse().unwrap());
        h.insert("grpc-message", format!("from {name}").parse().unwrap());
        let _ = respond.send_response(r, true);
        return;
    }

    let p = path.split('?').next().unwrap_or("/").to_owned();
    if p.starts_with("/echo") {
        let Ok(mut out) = respond.send_response(head(&name, 200), false) else {
            return;
        };
        let mut hash = Sha256::new();
        let mut len = 0u64;
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { return };
            len += chunk.len() as u64;
            hash.update(&chunk);
            let n = chunk.len();
            if send_flow(&mut out, chunk, false).await.is_err() {
                return;
            }
            let _ = body.flow_control().release_capacity(n);
        }
        let trailers = body.trailers().await.ok().flatten();
        record(len, hex(&hash.finalize().into()), trailers);
        let mut t = HeaderMap::new();
        t.insert("x-trailer", "done".parse().unwrap());
        let _ = out.send_trailers(t);
    } else if p == "/sink" || p == "/slow" {
        let pause = if p == "/slow" {
            Duration::from_millis(20)
        } else {
            Duration::ZERO
        };
        let Some((len, sha, trailers)) = drain(&mut body, pause).await else {
            return;
        };
        record(len, sha.clone(), trailers);
        send_full(respond, &name, 200, format!("{len} {sha}")).await;
    } else if p == "/trailers-only" {
        let mut r = head(&name, 200);
        let h = r.headers_mut();
        h.insert("content-type", "application/grpc".parse().unwrap());
        h.insert("grpc-status", "5".parse().unwrap());
        h.insert("grpc-message", "not found here".parse().unwrap());
        let _ = respond.send_response(r, true);
    } else if p.starts_with("/reset-early") {
        respond.send_reset(Reason::INTERNAL_ERROR);
    } else if p.starts_with("/reset") {
        if let Ok(mut out) = respond.send_response(head(&name, 200), false) {
            let _ = out.send_data(Bytes::from_static(b"partial"), false);
            // Let the headers and data leave before the reset.
            tokio::time::sleep(Duration::from_millis(50)).await;
            out.send_reset(Reason::INTERNAL_ERROR);
        }
    } else if p.starts_with("/hold") {
        let reason = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
        if let Ok(reason) = reason {
            st.resets.lock().unwrap().push((path.clone(), reason));
        }
    } else if let Some(ms) = p.strip_prefix("/delay/") {
        let Some((len, sha, trailers)) = drain(&mut body, Duration::ZERO).await else {
            return;
        };
        record(len, sha, trailers);
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        send_full(respond, &name, 200, "delayed".to_owned()).await;
    } else if let Some(code) = p.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        let code = StatusCode::from_u16(code).map_or(500, |c| c.as_u16());
        let _ = drain(&mut body, Duration::ZERO).await;
        send_full(respond, &name, code, format!("status {code}")).await;
    } else {
        let Some((len, sha, trailers)) = drain(&mut body, Duration::ZERO).await else {
            return;
        };
        record(len, sha, trailers);
        send_full(respond, &name, 200, format!("{name} {method} {p}")).await;
    }
}

/// Reads the whole body (pausing `pause` before releasing each frame's capacity): its length,
/// SHA-256 hex and trailers; `None` if the stream failed.
async fn drain(body: &mut RecvStream, pause: Duration) -> Option<(u64, String, Option<HeaderMap>)> {
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        len += chunk.len() as u64;
        hash.update(&chunk);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.ok()?;
    Some((len, hex(&hash.finalize().into()), trailers))
}

async fn send_full(mut respond: SendResponse<Bytes>, name: &str, status: u16, body: String) {
    if let Ok(mut out) = respond.send_response(head(name, status), body.is_empty()) {
        let _ = send_flow(&mut out, Bytes::from(body), true).await;
    }
}

/// Sends `data` within the peer's flow-control window: reserves capacity and writes what is
/// granted, so a large body never piles up in h2's send buffer. Shared with the client helpers.
pub async fn send_flow(
    out: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end {
            out.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        out.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| out.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        out.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}
