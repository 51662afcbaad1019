//! Admin server tests: real TCP on 127.0.0.1:0 with a minimal raw HTTP/1.1 client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::metrics::ErrorKind;

fn test_config() -> Config {
    Config {
        listeners: vec![],
        clusters: vec![],
        routers: vec![],
        admin: Some("127.0.0.1:34901".parse().unwrap()),
        drain_timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
        capture: None,
    }
}

fn state() -> Arc<AdminState> {
    let config = Arc::new(ArcSwap::from_pointee(test_config()));
    Arc::new(AdminState::new(config, Metrics::new()))
}

struct Server {
    addr: SocketAddr,
    handle: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start(state: Arc<AdminState>) -> Server {
        let (tx, rx) = oneshot::channel::<()>();
        let (addr, handle) = serve("127.0.0.1:0".parse().unwrap(), state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Server {
            addr,
            handle,
            stop: Some(tx),
        }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("server did not stop")
            .unwrap();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` and reads until the server closes (requests say `Connection: close`).
async fn exchange(addr: SocketAddr, raw: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("response timed out")
        .unwrap();
    parse(&buf)
}

fn parse(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics() {
    let state = state();
    let l = state.metrics.listener("ingress");
    l.connections_total.inc_by(3);
    l.errors.inc(ErrorKind::SpliceSetup);
    let server = Server::start(state).await;

    let reply = get(server.addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(metrics::CONTENT_TYPE));
    assert!(
        reply
            .body
            .contains("mosn_listener_connections_total{listener=\"ingress\"} 3\n")
    );
    assert!(
        reply
            .body
            .contains("mosn_listener_errors_total{listener=\"ingress\",kind=\"splice_setup\"} 1\n")
    );
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    server.stop().await;
}

#[tokio::test]
async fn ready_flips_to_503_and_back() {
    let state = state();
    let server = Server::start(state.clone()).await;

    let reply = get(server.addr, "/ready").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "not ready\n"));
    state.set_ready(true);
    let reply = get(server.addr, "/ready").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));
    state.set_ready(false); // draining
    assert_eq!(get(server.addr, "/ready").await.status, 503);
    server.stop().await;
}

#[tokio::test]
async fn config_dump_is_the_current_config_as_json() {
    let state = state();
    let server = Server::start(state.clone()).await;

    for path in ["/config_dump", "/api/v1/config_dump"] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(JSON));
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v, serde_json::to_value(test_config()).unwrap());
        assert!(
            reply.body.contains("\n  \""),
            "pretty-printed: {}",
            reply.body
        );
    }

    // A swapped snapshot is what the next dump shows.
    let mut next = test_config();
    next.admin = None;
    state.config.store(Arc::new(next));
    let v: serde_json::Value =
        serde_json::from_str(&get(server.addr, "/config_dump").await.body).unwrap();
    assert_eq!(v["admin"], serde_json::Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn stats_is_mosn_shaped_json() {
    let state = state();
    state
        .metrics
        .listener("ingress")
        .connections_total
        .inc_by(2);
    state
        .metrics
        .cluster("backend")
        .upstream_cx_connect_fail
        .inc();
    let server = Server::start(state).await;

    for path in ["/stats", "/api/v1/stats"] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(JSON));
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            v["downstream"]["listener.ingress"]["connections_total"],
            "2"
        );
        assert_eq!(
            v["upstream"]["cluster.backend"]["upstream_cx_connect_fail"],
            "1"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn index_lists_every_endpoint() {
    let server = Server::start(state()).await;
    let reply = get(server.addr, "/").await;
    assert_eq!(reply.status, 200);
    for (path, _, _) in ROUTES {
        assert!(
            reply.body.contains(path),
            "{path} missing from {}",
            reply.body
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let server = Server::start(state()).await;
    let reply = get(server.addr, "/nope").await;
    assert_eq!(reply.status, 404);
    // Unknown path wins over method.
    assert_eq!(request(server.addr, "POST", "/nope").await.status, 404);

    for method in ["POST", "PUT", "DELETE"] {
        let reply = request(server.addr, method, "/metrics").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    // The query string does not change the route.
    assert_eq!(get(server.addr, "/ready?verbose=1").await.status, 503);
    server.stop().await;
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    let server = Server::start(state()).await;
    let reply = request(server.addr, "HEAD", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(metrics::CONTENT_TYPE));
    assert_eq!(reply.body, "");
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(state()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ready HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    assert!(text.contains("HTTP/1.1 404"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_stalled_connections_do_not_affect_others() {
    let state = state();
    state.set_ready(true);
    let server = Server::start(state).await;

    // A client that sends half a request and stalls.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost")
        .await
        .unwrap();

    // A client that sends garbage gets a 400 (or a close), not a hang.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x00\x01 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // Meanwhile well-formed requests are served.
    let reply = get(server.addr, "/ready").await;
    assert_eq!(reply.status, 200);

    // Shutdown does not wait on the stalled client beyond the grace period.
    server.stop().await;
    drop(stalled);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let server = Server::start(state()).await;
    let addr = server.addr;
    // An idle keep-alive connection must not hold the server open.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 503");

    server.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    // The idle connection was closed by the server.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn routing_without_sockets() {
    let state = state();
    let status = |m: Method, p: &str| handle(&state, &m, p).status();
    assert_eq!(status(Method::GET, "/"), StatusCode::OK);
    assert_eq!(status(Method::GET, "/metrics"), StatusCode::OK);
    assert_eq!(status(Method::GET, "/stats"), StatusCode::OK);
    assert_eq!(status(Method::GET, "/api/v1/config_dump"), StatusCode::OK);
    assert_eq!(
        status(Method::GET, "/ready"),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(status(Method::GET, "/metrics/"), StatusCode::NOT_FOUND);
    assert_eq!(
        status(Method::PATCH, "/stats"),
        StatusCode::METHOD_NOT_ALLOWED
    );
}
