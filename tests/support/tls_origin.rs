//! TLS servers (tokio-rustls) for origination and passthrough tests, on 127.0.0.1:0.
//!
//! - [`tls_origin`]: HTTP over TLS. HTTP/2 (the `h2` crate) when ALPN picks `h2`, HTTP/1.1
//!   (hyper) otherwise. Every request gets 200 with body `"<name> <method> <path>"` and the
//!   headers `x-origin: <name>`, `x-tls-version` (`TLSv1.3`), `x-tls-sni` (the SNI received,
//!   if any), `x-tls-alpn` (if negotiated) and `x-client-san` (the client certificate's SANs
//!   joined by `,`, if one was presented; URI first for the test PKI's clients).
//! - [`tls_echo`]: echoes bytes back until EOF, then closes its side.
//! - [`tls_echo_sni`]: presents the certificate for a name (`Pki::leaf_for`), writes
//!   `hello from <name>\n` after the handshake, then echoes; a test tells which backend
//!   answered by the greeting or by the certificate's serial.
//!
//! Each handshake is recorded ([`TlsConn`]), failed ones counted; requests too. Stops when
//! dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::{Pki, cert_sans, server_config};

/// What a TLS origin does with a connection once the handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// HTTP/2 if ALPN chose `h2`, else HTTP/1.1 (module doc).
    Http,
    /// Echo until EOF.
    Echo,
    /// Write this line (a `\n` is added), then echo.
    Greet(String),
}

/// One completed handshake, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConn {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The client certificate's SANs (empty without one).
    pub client_sans: Vec<String>,
}

/// One HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub conn: TlsConn,
}

#[derive(Default)]
struct State {
    conns: Mutex<Vec<TlsConn>>,
    requests: Mutex<Vec<TlsRequest>>,
    failed: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

/// A running TLS server; stops when dropped.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub name: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// HTTP over TLS presenting `pki.server`, with these ALPN protocols; with
/// `require_client_cert`, only clients with a certificate from `pki.ca` get through.
pub async fn tls_origin(pki: &Pki, alpn: &[&str], require_client_cert: bool) -> TlsOrigin {
    let ca = require_client_cert.then_some(pki.ca.as_path());
    let config = server_config(&pki.server, alpn, ca);
    TlsOrigin::start("tls-origin", config, Serve::Http).await
}

/// A TLS echo server presenting `pki.server` (no ALPN).
pub async fn tls_echo(pki: &Pki, require_client_cert: bool) -> TlsOrigin {
    let ca = require_client_cert.then_some(pki.ca.as_path());
    let config = server_config(&pki.server, &[], ca);
    TlsOrigin::start("tls-echo", config, Serve::Echo).await
}

/// A TLS server presenting the certificate for `name` that greets with
/// `hello from <name>` and then echoes.
pub async fn tls_echo_sni(pki: &Pki, name: &str) -> TlsOrigin {
    let config = server_config(pki.leaf_for(name), &[], None);
    TlsOrigin::start(name, config, Serve::Greet(format!("hello from {name}"))).await
}

impl TlsOrigin {
    /// Serves `config` on 127.0.0.1:0 (for a leaf or options the helpers do not cover; see
    /// `tls::server_config`).
    pub async fn start(name: &str, config: Arc<ServerConfig>, serve: Serve) -> TlsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a TLS origin");
        let addr = listener.local_addr().unwrap();
        let state: Arc<State> = Arc::default();
        let acceptor = TlsAcceptor::from(config);
        let (n, st) = (name.to_owned(), Arc::clone(&state));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (n, st, acceptor, serve) =
                    (n.clone(), Arc::clone(&st), acceptor.clone(), serve.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            st.failed.fetch_add(1, Ordering::Relaxed);
                            *st.last_error.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    };
                    let conn = describe(&tls);
                    st.conns.lock().unwrap().push(conn.clone());
                    match serve {
                        Serve::Http if conn.alpn.as_deref() == Some("h2") => {
                            serve_h2(tls, n, st, conn).await
                        }
                        Serve::Http => serve_http1(tls, n, st, conn).await,
                        Serve::Echo => echo(tls, None).await,
                        Serve::Greet(line) => echo(tls, Some(line)).await,
                    }
                });
            }
        });
        TlsOrigin {
            addr,
            name: name.to_owned(),
            state,
            task,
        }
    }

    /// Handshakes completed so far.
    pub fn conns(&self) -> Vec<TlsConn> {
        self.state.conns.lock().unwrap().clone()
    }

    /// HTTP requests seen so far.
    pub fn requests(&self) -> Vec<TlsRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Handshakes that failed (no client certificate, an untrusted one, not TLS...).
    pub fn failed_handshakes(&self) -> usize {
        self.state.failed.load(Ordering::Relaxed)
    }

    /// The last handshake error, as rustls put it.
    pub fn last_error(&self) -> Option<String> {
        self.state.last_error.lock().unwrap().clone()
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn describe(tls: &TlsStream<tokio::net::TcpStream>) -> TlsConn {
    let (_, c) = tls.get_ref();
    TlsConn {
        sni: c.server_name().map(str::to_owned),
        alpn: c
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        },
        client_sans: c
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(cert_sans)
            .unwrap_or_default(),
    }
}

/// The response headers every HTTP answer carries.
fn tls_headers(name: &str, conn: &TlsConn) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put("x-origin", name);
    put("x-tls-version", &conn.version);
    if let Some(sni) = &conn.sni {
        put("x-tls-sni", sni);
    }
    if let Some(alpn) = &conn.alpn {
        put("x-tls-alpn", alpn);
    }
    if !conn.client_sans.is_empty() {
        put("x-client-san", &conn.client_sans.join(","));
    }
    h
}

fn record<B>(st: &State, req: &http::Request<B>, conn: &TlsConn) -> String {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string());
    st.requests.lock().unwrap().push(TlsRequest {
        version: format!("{:?}", req.version()),
        method: req.method().to_string(),
        path: path.clone(),
        headers: req.headers().clone(),
        conn: conn.clone(),
    });
    path
}

async fn serve_http1(
    tls: TlsStream<tokio::net::TcpStream>,
    name: String,
    st: Arc<State>,
    conn: TlsConn,
) {
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let (name, st, conn) = (name.clone(), Arc::clone(&st), conn.clone());
        async move {
            let path = record(&st, &req, &conn);
            let method = req.method().to_string();
            // Read the body before answering, so a client that sends one is not reset.
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(Full::new(Bytes::from(format!("{name} {method} {path}"))));
            *resp.headers_mut() = tls_headers(&name, &conn);
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

async fn serve_h2(
    tls: TlsStream<tokio::net::TcpStream>,
    name: String,
    st: Arc<State>,
    conn: TlsConn,
) {
    let Ok(mut h2) = h2::server::handshake(tls).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = h2.accept().await {
        let path = record(&st, &req, &conn);
        let method = req.method().to_string();
        let (name, conn) = (name.clone(), conn.clone());
        tokio::spawn(async move {
            let mut body = req.into_body();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let mut head = Response::new(());
            *head.headers_mut() = tls_headers(&name, &conn);
            if let Ok(mut out) = respond.send_response(head, false) {
                let body = Bytes::from(format!("{name} {method} {path}"));
                let _ = crate::h2_origin::send_flow(&mut out, body, true).await;
            }
        });
    }
}

/// Writes `greeting` (if any) then echoes until EOF, then shuts down its side.
async fn echo(mut tls: TlsStream<tokio::net::TcpStream>, greeting: Option<String>) {
    if let Some(line) = greeting {
        if tls.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            return;
        }
        let _ = tls.flush().await;
    }
    let mut buf = vec![0; 16 * 1024];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tls.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tls.shutdown().await;
}
