//! The admin HTTP server (HTTP/1.1, hyper): metrics, readiness, config and stats dumps.
//!
//! | path                                   | body                                        |
//! |----------------------------------------|---------------------------------------------|
//! | `GET /`                                | this list, as text                          |
//! | `GET /metrics`                         | OpenMetrics text ([`metrics::CONTENT_TYPE`]) |
//! | `GET /ready`                           | 200 `ready` / 503 `not ready`               |
//! | `GET /config_dump`, `/api/v1/config_dump` | the effective config, pretty JSON        |
//! | `GET /stats`, `/api/v1/stats`          | MOSN-style stats JSON                       |
//!
//! Unknown paths get 404, known paths with a method other than GET/HEAD get 405. Each
//! connection runs in its own task with a header-read timeout, so a slow or malformed client
//! only ever affects its own connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Config;
use crate::metrics::{self, Metrics};

/// How long a client may take to send a request's headers. Admin requests are tiny; 10 s is
/// generous for a human with `nc` and still frees a slow-loris connection quickly.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight before closing their connections. Every
/// response is built in memory, so a second is plenty.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// The running configuration snapshot (swapped on reload/xDS).
    pub config: Arc<ArcSwap<Config>>,
    pub metrics: Arc<Metrics>,
    /// True once every listener is bound; false again while draining.
    pub ready: AtomicBool,
}

impl AdminState {
    /// A state that is not ready yet.
    pub fn new(config: Arc<ArcSwap<Config>>, metrics: Arc<Metrics>) -> AdminState {
        AdminState {
            config,
            metrics,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Index,
    Metrics,
    Ready,
    ConfigDump,
    Stats,
}

/// Every path served, with what it returns (the index page lists these).
const ROUTES: &[(&str, Endpoint, &str)] = &[
    ("/", Endpoint::Index, "this list"),
    ("/metrics", Endpoint::Metrics, "Prometheus/OpenMetrics text"),
    (
        "/ready",
        Endpoint::Ready,
        "200 when serving, 503 when starting or draining",
    ),
    (
        "/config_dump",
        Endpoint::ConfigDump,
        "the effective configuration as JSON",
    ),
    (
        "/api/v1/config_dump",
        Endpoint::ConfigDump,
        "MOSN alias of /config_dump",
    ),
    ("/stats", Endpoint::Stats, "MOSN-style stats JSON"),
    ("/api/v1/stats", Endpoint::Stats, "MOSN alias of /stats"),
];

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Binds `addr` (port 0 picks one) and serves until `shutdown` resolves. Returns the bound
/// address and the server task, which ends once the listener is closed and the connections
/// are finished (in-flight requests get [`SHUTDOWN_GRACE`]).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "admin server listening");
    Ok((local, tokio::spawn(accept_loop(listener, state, shutdown))))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(serve_connection(stream, peer, state.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // Typically EMFILE/ENFILE: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "admin connection task failed");
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            left = conns.len(),
            "admin connections closed after the grace period"
        );
    }
    conns.shutdown().await;
    tracing::info!("admin server stopped");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AdminState>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = handle(&state, req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // Dropping the watch guard here keeps the future `Send`; a closed channel also means stop.
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

/// Routes one request. Pure apart from reading `state`, so it is tested without sockets too.
fn handle(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let Some(&(_, endpoint, _)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        return respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no such endpoint: {path}\n"),
        );
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            format!("{method} not allowed\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match endpoint {
        Endpoint::Index => respond(StatusCode::OK, TEXT, index()),
        Endpoint::Metrics => respond(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            state.metrics.encode_text(),
        ),
        Endpoint::Ready if state.is_ready() => respond(StatusCode::OK, TEXT, "ready\n"),
        Endpoint::Ready => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        Endpoint::ConfigDump => json(&**state.config.load()),
        Endpoint::Stats => json(&state.metrics.stats_json()),
    }
}

fn index() -> String {
    let mut out = String::from("mosn admin endpoints:\n");
    for (path, _, what) in ROUTES {
        out.push_str(&format!("  {path:<22} {what}\n"));
    }
    out
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(StatusCode::OK, JSON, body)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin: serializing JSON");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("serializing: {e}\n"),
            )
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
