//! HTTP/2 clients for the h2c tests: the `h2` crate's client (one connection, many streams,
//! bodies, trailers, resets), gRPC framing on top of it, curl with `--http2-prior-knowledge`
//! and `h2load`. The h2c origin is in `h2_origin.rs`, hand-written frames in `h2_raw.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Method, Request};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::data::hex;
use crate::h2_origin::send_flow;
use crate::http::{HttpSetup, Reply, parse_reply};

pub use crate::h2_origin::{Behavior, H2Origin, H2Seen};

/// `proxy_extra` for an HTTP/2 listener: `downstream` and `upstream` protocol names
/// (`"Http1"`, `"Http2"`, `"Auto"`).
pub fn protocols(setup: HttpSetup, downstream: &str, upstream: &str) -> HttpSetup {
    let mut s = setup;
    crate::http::merge(
        &mut s.proxy_extra,
        &json!({ "downstream_protocol": downstream, "upstream_protocol": upstream }),
    );
    s
}

/// One HTTP/2 connection (prior knowledge) driven by a background task.
pub struct H2Client {
    pub send: SendRequest<Bytes>,
    /// The connection task: ends with the connection (`Err` carries a GOAWAY's reason).
    pub conn: JoinHandle<Result<(), h2::Error>>,
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct H2Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// The HEADERS frame ended the stream: no body, no trailers frame.
    pub trailers_only: bool,
    /// The stream failed after the response headers (a reset's reason, if it was one).
    pub error: Option<h2::Error>,
}

impl H2Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `grpc-status` from the trailers, else from the headers (trailers-only).
    pub fn grpc_status(&self) -> Option<&str> {
        self.trailer("grpc-status")
            .or_else(|| self.header("grpc-status"))
    }

    /// The reason of a stream reset after the headers, if that is how the stream ended.
    pub fn reset_reason(&self) -> Option<Reason> {
        self.error
            .as_ref()
            .filter(|e| e.is_reset())
            .and_then(h2::Error::reason)
    }
}

impl H2Client {
    /// Connects to `addr` and completes the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr) -> H2Client {
        let tcp = TcpStream::connect(addr).await.expect("connect (h2)");
        tcp.set_nodelay(true).unwrap();
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        H2Client { send, conn }
    }

    /// Opens a stream: `method path` with `headers`; `end` = no body follows. Returns the
    /// response future and the request body stream.
    pub async fn open(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        end: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), h2::Error> {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(format!("http://127.0.0.1{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut send = self.send.clone().ready().await?;
        send.send_request(b.body(()).unwrap(), end)
    }

    /// A whole exchange: the request with `body` (and `trailers`), then the whole response.
    /// `Err` if the stream failed before the response headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        trailers: Option<HeaderMap>,
    ) -> Result<H2Reply, h2::Error> {
        let end = body.is_empty() && trailers.is_none();
        let (resp, mut out) = self.open(method, path, headers, end).await?;
        let sender = async move {
            if end {
                return;
            }
            if send_flow(&mut out, body, trailers.is_none()).await.is_err() {
                return;
            }
            if let Some(t) = trailers {
                let _ = out.send_trailers(t);
            }
        };
        let (_, reply) = tokio::join!(sender, async { collect(resp.await?).await });
        reply
    }

    pub async fn get(&self, path: &str) -> Result<H2Reply, h2::Error> {
        self.request("GET", path, &[], Bytes::new(), None).await
    }
}

/// Reads a whole response: body (releasing capacity as it goes) and trailers.
pub async fn collect(resp: http::Response<RecvStream>) -> Result<H2Reply, h2::Error> {
    let (parts, mut body) = resp.into_parts();
    let trailers_only = body.is_end_stream();
    let mut reply = H2Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: Vec::new(),
        trailers: None,
        trailers_only,
        error: None,
    };
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                reply.body.extend_from_slice(&c);
            }
            Err(e) => {
                reply.error = Some(e);
                return Ok(reply);
            }
        }
    }
    match body.trailers().await {
        Ok(t) => reply.trailers = t,
        Err(e) => reply.error = Some(e),
    }
    Ok(reply)
}

/// Reads a response body without keeping it: (length, SHA-256 hex, trailers).
pub async fn hash_body(
    resp: http::Response<RecvStream>,
) -> Result<(u16, u64, String, Option<HeaderMap>), h2::Error> {
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = body.data().await {
        let c = chunk?;
        let _ = body.flow_control().release_capacity(c.len());
        len += c.len() as u64;
        hash.update(&c);
    }
    let trailers = body.trailers().await?;
    Ok((status, len, hex(&hash.finalize().into()), trailers))
}

/// A gRPC length-prefixed message: uncompressed flag, 32-bit big-endian length, bytes.
pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    Bytes::from(v)
}

/// The messages of a gRPC body.
pub fn grpc_messages(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let Some(msg) = body.get(5..5 + len) else {
            break;
        };
        out.push(msg.to_vec());
        body = &body[5 + len..];
    }
    out
}

/// The headers of a gRPC request, plus `extra`.
pub fn grpc_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("content-type", "application/grpc"), ("te", "trailers")];
    h.extend_from_slice(extra);
    h
}

/// A unary gRPC call by hand: POST `path` with one message, `extra` headers.
pub async fn grpc_unary(
    c: &H2Client,
    path: &str,
    msg: &[u8],
    extra: &[(&str, &str)],
) -> Result<H2Reply, h2::Error> {
    c.request("POST", path, &grpc_headers(extra), grpc_frame(msg), None)
        .await
}

/// `curl -s -i --http2-prior-knowledge <args> http://addr<path>`: the status line's HTTP
/// version (`"HTTP/2"` for an h2c exchange) and the response.
pub async fn curl_h2(addr: SocketAddr, path: &str, args: &[&str]) -> (String, Reply) {
    curl_version(addr, path, "--http2-prior-knowledge", args).await
}

/// Like [`curl_h2`] with the HTTP version flag given (`--http1.1`, `--http2-prior-knowledge`).
pub async fn curl_version(
    addr: SocketAddr,
    path: &str,
    version: &str,
    args: &[&str],
) -> (String, Reply) {
    let url = format!("http://{addr}{path}");
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", version])
        .args(args)
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl");
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let reply = parse_reply(&out.stdout).unwrap_or_else(|| {
        panic!(
            "curl {version} {args:?} {url}: no response (exit {:?}, stderr {})",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (first, reply)
}

/// What `h2load` reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct H2loadResult {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    pub status_2xx: u64,
    pub status_5xx: u64,
    pub output: String,
}

/// Runs `h2load -n n -c c -m m url` (h2c, prior knowledge) with a time limit.
pub async fn h2load(url: &str, n: u32, c: u32, m: u32, limit: Duration) -> H2loadResult {
    let run = Command::new("h2load")
        .args([
            "-n",
            &n.to_string(),
            "-c",
            &c.to_string(),
            "-m",
            &m.to_string(),
        ])
        .args(["-T", "10", "-N", "10"])
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("h2load did not finish within {limit:?}"))
        .expect("run h2load (cargo xtask setup installs nghttp2-client)");
    parse_h2load(&String::from_utf8_lossy(&out.stdout))
}

/// Parses h2load's summary lines:
/// `requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout`
/// and `status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx`.
pub fn parse_h2load(text: &str) -> H2loadResult {
    let mut r = H2loadResult {
        output: text.to_owned(),
        ..Default::default()
    };
    let field = |line: &str, what: &str| -> u64 {
        line.split(',')
            .map(str::trim)
            .find_map(|p| {
                let (n, w) = p.split_once(' ')?;
                (w == what).then(|| n.parse().ok()).flatten()
            })
            .unwrap_or(0)
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("requests: ") {
            r.total = field(rest, "total");
            r.succeeded = field(rest, "succeeded");
            r.failed = field(rest, "failed");
            r.errored = field(rest, "errored");
            r.timeout = field(rest, "timeout");
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            r.status_2xx = field(rest, "2xx");
            r.status_5xx = field(rest, "5xx");
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h2load_summary() {
        let r = parse_h2load(
            "finished in 1.2s, 1000 req/s\n\
             requests: 2000 total, 2000 started, 2000 done, 1998 succeeded, 2 failed, 1 errored, 0 timeout\n\
             status codes: 1998 2xx, 0 3xx, 0 4xx, 2 5xx\n",
        );
        assert_eq!(
            (
                r.total,
                r.succeeded,
                r.failed,
                r.errored,
                r.status_2xx,
                r.status_5xx
            ),
            (2000, 1998, 2, 1, 1998, 2)
        );
    }

    #[test]
    fn grpc_framing_round_trips() {
        let f = grpc_frame(b"hello");
        assert_eq!(&f[..5], &[0, 0, 0, 0, 5]);
        let mut two = f.to_vec();
        two.extend_from_slice(&grpc_frame(b""));
        assert_eq!(grpc_messages(&two), vec![b"hello".to_vec(), Vec::new()]);
    }
}
