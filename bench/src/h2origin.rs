//! HTTP/2 (h2c) + HTTP/1.1 origin and a one-request h2c checker for `bench/h2_suite.py`.
//!
//! * `h2-origin --listen ADDR --body-size N`: one current-thread process. Each accepted
//!   connection is sniffed: if it starts with the HTTP/2 client preface it is served as h2c (the
//!   `h2` crate), otherwise as HTTP/1.1 keep-alive (a small hand-written responder: request line,
//!   headers, `Content-Length` bodies; no chunked requests). Every request gets `200` with
//!   `x-bench-origin: h2-origin` and an N-byte body, except:
//!   - `content-type: application/grpc` (h2 only): the request body is read whole and echoed
//!     back (a unary gRPC message is its 5-byte prefix plus the message, so the echo is a valid
//!     reply), then trailers `grpc-status: 0`;
//!   - `GET /origin-status`: one JSON object with the counters (not counted itself).
//!
//!   With `--tls-listen ADDR --tls-cert FILE --tls-key FILE` it also serves TLS 1.3 there (the
//!   same counters; ALPN `h2` is served as HTTP/2, anything else as HTTP/1.1): the direct target
//!   of `bench/tls_suite.py`'s h2-tls workload.
//! * `h2-check --target ADDR [--grpc --size N] [--body-size N] [--tls --ca FILE --sni NAME]`: one
//!   h2c request (prior knowledge; with `--tls`: HTTP/2 over TLS, ALPN h2 required) and a check
//!   of status, origin header, body and (gRPC) trailers; prints JSON and exits 0 only if
//!   everything matched.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::Io;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const ORIGIN_HEADER: &str = "x-bench-origin";
const ORIGIN_VALUE: &str = "h2-origin";
const STATUS_PATH: &str = "/origin-status";
/// The largest HTTP/1 request head or body the responder accepts.
const H1_MAX: usize = 1 << 20;

#[derive(Default)]
struct Counters {
    h1_conns: Cell<u64>,
    h2_conns: Cell<u64>,
    h1_requests: Cell<u64>,
    h2_requests: Cell<u64>,
    grpc_requests: Cell<u64>,
    tls_conns: Cell<u64>,
    bad: Cell<u64>,
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl Counters {
    fn json(&self) -> String {
        json!({
            "requests": self.h1_requests.get() + self.h2_requests.get(),
            "h1_requests": self.h1_requests.get(),
            "h2_requests": self.h2_requests.get(),
            "grpc_requests": self.grpc_requests.get(),
            "connections": self.h1_conns.get() + self.h2_conns.get(),
            "h1_connections": self.h1_conns.get(),
            "h2_connections": self.h2_conns.get(),
            "tls_connections": self.tls_conns.get(),
            "bad": self.bad.get(),
        })
        .to_string()
    }
}

/// The fixed response body: recognisable text padded to `n` bytes, ending in a newline.
pub fn body(n: usize) -> Bytes {
    let mut b = b"mosn-rs h2 origin ".to_vec();
    b.resize(n.max(1) - 1, b'x');
    b.truncate(n.saturating_sub(1));
    if n > 0 {
        b.push(b'\n');
    }
    Bytes::from(b)
}

/// TLS side of the origin: where, certificate chain, key.
pub struct TlsListen {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn bind(listen: SocketAddr) -> Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&listen.into())
        .with_context(|| format!("bind {listen}"))?;
    sock.listen(8192)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into())?)
}

pub async fn server(listen: SocketAddr, body_size: usize, tls: Option<TlsListen>) -> Result<()> {
    let listener = bind(listen)?;
    eprintln!("mosn-bench h2-origin listening on {listen} (h2c and HTTP/1.1), body {body_size} B");
    let counters = Rc::new(Counters::default());
    let body = body(body_size);
    if let Some(t) = tls {
        let cfg = crate::tls::server_config(&t.cert, &t.key, &["h2", "http/1.1"])?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = bind(t.listen)?;
        eprintln!(
            "mosn-bench h2-origin: TLS 1.3 (ALPN h2, http/1.1) on {}",
            t.listen
        );
        let (body, counters) = (body.clone(), counters.clone());
        tokio::task::spawn_local(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        let (acceptor, body, c) =
                            (acceptor.clone(), body.clone(), counters.clone());
                        tokio::task::spawn_local(async move {
                            let hs =
                                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(s));
                            let Ok(Ok(tls)) = hs.await else { return };
                            inc(&c.tls_conns);
                            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                                inc(&c.h2_conns);
                                if let Err(e) = serve_h2(tls, body, c.clone()).await
                                    && !e.is_io()
                                    && !e.is_go_away()
                                {
                                    inc(&c.bad);
                                }
                            } else {
                                inc(&c.h1_conns);
                                serve_h1(tls, body, c).await;
                            }
                        });
                    }
                    Err(e) => {
                        eprintln!("accept (TLS): {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::task::spawn_local(serve_conn(s, body.clone(), counters.clone()));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Peeks until the first bytes tell the HTTP/2 preface from anything else.
async fn is_h2(s: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = s.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // a prefix of the preface so far: wait for more bytes
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn serve_conn(s: TcpStream, body: Bytes, c: Rc<Counters>) {
    match tokio::time::timeout(Duration::from_secs(10), is_h2(&s)).await {
        Ok(Ok(true)) => {
            inc(&c.h2_conns);
            if let Err(e) = serve_h2(s, body, c.clone()).await
                && !e.is_io()
                && !e.is_go_away()
            {
                inc(&c.bad);
            }
        }
        Ok(Ok(false)) => {
            inc(&c.h1_conns);
            serve_h1(s, body, c).await;
        }
        _ => {}
    }
}

async fn serve_h2<S: Io>(s: S, body: Bytes, c: Rc<Counters>) -> Result<(), h2::Error> {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(4096)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(s)
        .await?;
    while let Some(r) = conn.accept().await {
        let (req, respond) = r?;
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if req.uri().path() == STATUS_PATH && !grpc {
            let _ = reply(respond, Bytes::from(c.json()), "application/json");
            continue;
        }
        inc(&c.h2_requests);
        if grpc {
            inc(&c.grpc_requests);
            let c = c.clone();
            tokio::task::spawn_local(async move {
                if grpc_reply(req, respond).await.is_err() {
                    inc(&c.bad);
                }
            });
        } else if req.body().is_end_stream() {
            let _ = reply(respond, body.clone(), "text/plain");
        } else {
            let body = body.clone();
            tokio::task::spawn_local(async move {
                if drain(req.into_body()).await.is_ok() {
                    let _ = reply(respond, body, "text/plain");
                }
            });
        }
    }
    Ok(())
}

fn reply(
    mut respond: h2::server::SendResponse<Bytes>,
    body: Bytes,
    ctype: &'static str,
) -> Result<(), h2::Error> {
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, ctype)
        .header(ORIGIN_HEADER, ORIGIN_VALUE)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(())
        .expect("static response");
    let mut send = respond.send_response(resp, body.is_empty())?;
    if !body.is_empty() {
        send.send_data(body, true)?;
    }
    Ok(())
}

async fn drain(mut b: h2::RecvStream) -> Result<Bytes, h2::Error> {
    let mut all = BytesMut::new();
    while let Some(chunk) = b.data().await {
        let chunk = chunk?;
        let _ = b.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}

async fn grpc_reply(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Result<(), h2::Error> {
    let msg = drain(req.into_body()).await?;
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(ORIGIN_HEADER, ORIGIN_VALUE)
        .body(())
        .expect("static response");
    let mut send = respond.send_response(resp, false)?;
    send.send_data(msg, false)?;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    send.send_trailers(trailers)
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 responder

async fn serve_h1<S: Io>(mut s: S, body: Bytes, c: Rc<Counters>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{ORIGIN_HEADER}: {ORIGIN_VALUE}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    loop {
        // answer every complete request in the buffer with one write
        let mut close = false;
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let h = parse_head(&buf[..end]);
            let Some((path, clen, conn_close)) = h else {
                inc(&c.bad);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                return;
            };
            if clen > H1_MAX {
                inc(&c.bad);
                return;
            }
            if buf.len() < end + 4 + clen {
                break; // the body is not all here yet
            }
            let _ = buf.split_to(end + 4 + clen);
            if path == STATUS_PATH {
                let j = c.json();
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{j}", j.len())
                        .as_bytes(),
                );
            } else {
                inc(&c.h1_requests);
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(&body);
            }
            if conn_close {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || buf.len() > H1_MAX + 64 * 1024 {
            return;
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// (path, Content-Length, Connection: close) of a request head; None if it is not one we serve.
fn parse_head(head: &[u8]) -> Option<(String, usize, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut rl = lines.next()?.split(' ');
    let (_method, path, version) = (rl.next()?, rl.next()?, rl.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut clen = 0;
    let mut close = version == "HTTP/1.0";
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            clen = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return None; // chunked request bodies: not needed by any client of the suite
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Some((path.to_string(), clen, close))
}

// ---------------------------------------------------------------------------------------------
// h2-check

/// `h2-check --tls`: the CA to verify the server with (none: not verified) and the SNI.
pub struct CheckTls {
    pub ca: Option<PathBuf>,
    pub sni: String,
}

pub async fn check(
    target: SocketAddr,
    grpc: bool,
    size: usize,
    body_size: usize,
    tls: Option<CheckTls>,
) -> serde_json::Value {
    let mut out = json!({"target": target.to_string(), "grpc": grpc, "tls": tls.is_some()});
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        check_once(target, grpc, size, body_size, tls),
    )
    .await;
    let r = r.unwrap_or_else(|_| Err(anyhow!("timed out after 5 s")));
    match r {
        Ok(fields) => {
            for (k, v) in fields {
                out[k] = v;
            }
            let ok = out["error"].is_null();
            out["ok"] = json!(ok);
        }
        Err(e) => {
            out["ok"] = json!(false);
            out["error"] = json!(format!("{e:#}"));
        }
    }
    out
}

async fn check_once(
    target: SocketAddr,
    grpc: bool,
    size: usize,
    body_size: usize,
    tls: Option<CheckTls>,
) -> Result<Vec<(&'static str, serde_json::Value)>> {
    let s = TcpStream::connect(target).await.context("connect")?;
    s.set_nodelay(true)?;
    let Some(t) = tls else {
        return check_h2(s, target, grpc, size, body_size).await;
    };
    let cfg = crate::tls::client_config(t.ca.as_deref(), &["h2"])?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(crate::tls::server_name(&t.sni)?, s)
        .await
        .context("TLS handshake")?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    if alpn.as_deref() != Some("h2") {
        anyhow::bail!("ALPN negotiated {alpn:?}, not h2");
    }
    check_h2(tls, target, grpc, size, body_size).await
}

async fn check_h2<S: Io>(
    s: S,
    target: SocketAddr,
    grpc: bool,
    size: usize,
    body_size: usize,
) -> Result<Vec<(&'static str, serde_json::Value)>> {
    let (mut client, conn) = h2::client::handshake(s).await.context("h2 handshake")?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder().uri(format!("http://{target}/bench"));
    let payload = if grpc {
        let mut m = vec![0u8, 0, 0, 0, 0];
        m[1..5].copy_from_slice(&(size as u32).to_be_bytes());
        m.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        req = req
            .method("POST")
            .uri(format!("http://{target}/bench.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        Some(Bytes::from(m))
    } else {
        req = req.method("GET");
        None
    };
    let req = req.body(()).context("request")?;
    let (resp, mut send) = client
        .send_request(req, payload.is_none())
        .context("send request")?;
    if let Some(p) = &payload {
        send.send_data(p.clone(), true).context("send body")?;
    }
    let resp = resp.await.context("response")?;
    let status = resp.status().as_u16();
    let origin = resp
        .headers()
        .get(ORIGIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut rb = resp.into_body();
    let mut got = BytesMut::new();
    while let Some(chunk) = rb.data().await {
        let chunk = chunk.context("response body")?;
        let _ = rb.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let trailers = rb.trailers().await.context("trailers")?;
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut error = None;
    if status != 200 {
        error = Some(format!("status {status}"));
    } else if origin.as_deref() != Some(ORIGIN_VALUE) {
        error = Some(format!(
            "no {ORIGIN_HEADER}: {ORIGIN_VALUE} header (did it reach the origin?)"
        ));
    } else if let Some(p) = &payload {
        if got[..] != p[..] {
            error = Some(format!(
                "gRPC reply is {} bytes, not the echo of the {}-byte message",
                got.len(),
                p.len()
            ));
        } else if grpc_status.as_deref() != Some("0") {
            error = Some(format!("trailer grpc-status is {grpc_status:?}, not \"0\""));
        }
    } else if got[..] != body(body_size)[..] {
        error = Some(format!(
            "body is {} bytes, not the origin's {body_size}",
            got.len()
        ));
    }
    Ok(vec![
        ("status", json!(status)),
        ("body_bytes", json!(got.len())),
        ("origin_header", json!(origin)),
        ("grpc_status", json!(grpc_status)),
        ("error", json!(error)),
    ])
}
