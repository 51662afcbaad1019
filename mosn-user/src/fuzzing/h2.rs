//! The HTTP/2 frame-sequence target: arbitrary bytes after the connection preface go to the
//! proxy's HTTP/2 server (`Proxy::serve_h2_io`, the code every h2c connection runs) over an
//! in-memory pipe, with a listener whose routes answer by themselves (a direct response, a
//! redirect, no route), so no socket is opened. What must hold for any input:
//! - the proxy never panics and finishes the connection (on paused time, so timeouts pass at
//!   once and a run is deterministic);
//! - what it writes is a sequence of whole HTTP/2 frames that starts with its SETTINGS;
//! - connection frames (SETTINGS, PING, GOAWAY, WINDOW_UPDATE) are on stream 0, stream frames
//!   on odd (client-opened) streams, and it never pushes.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::config::{Format, NetworkFilter, parse};
use crate::filter::{FilterChain, FilterDeps, Registry};
use crate::metrics::Metrics;
use crate::protocol::http2::PREFACE;
use crate::proxy::{GrpcStats, Proxy, RpcStats};
use crate::router::Routers;
use crate::stream::mux::MuxPools;
use crate::stream::{H2Pools, Pools};
use crate::upstream::ClusterManager;

const CONFIG: &str = r#"{
  "servers": [{
    "routers": [{ "router_config_name": "r", "virtual_hosts": [{ "name": "all", "domains": ["*"],
      "routers": [
        { "match": { "prefix": "/redirect" }, "redirect": { "path_redirect": "/there" } },
        { "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": "hello" } }
      ] }] }],
    "listeners": [{ "name": "fuzz", "address": "127.0.0.1:1", "bind_port": true,
      "stream_filters": [{ "type": "payload_limit", "config": { "max_entity_size": 4096, "http_status": 413 } }],
      "filter_chains": [{ "filters": [{ "type": "proxy", "config": {
        "downstream_protocol": "Http2", "router_config_name": "r",
        "max_request_header_bytes": 4096,
        "http2_protocol_options": { "max_concurrent_streams": 16, "max_resets_per_second": 20 } } }] }] }]
  }],
  "cluster_manager": { "clusters": [] }
}"#;

/// HTTP/2 frame types (RFC 9113 §6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let config = parse(CONFIG, Format::Json)
            .expect("the fuzz config is valid")
            .config;
        let metrics = Metrics::new();
        let clusters = Arc::new(ClusterManager::new(&config, &metrics));
        let routers = Routers::new(&config.routers);
        let l = &config.listeners[0];
        let NetworkFilter::Proxy(p) = l.filter() else {
            unreachable!("a proxy listener")
        };
        let filters = Registry::builtin().build(
            &l.stream_filters,
            &FilterDeps {
                clusters: &clusters,
            },
        );
        Proxy {
            listener: l.name.as_str().into(),
            config: p.clone(),
            routes: Arc::clone(routers.get(&p.router_config_name).expect("router r")),
            filters: FilterChain::new(filters),
            clusters,
            pools: Pools::new(),
            mux: MuxPools::new(),
            h2pools: H2Pools::new(),
            metrics: metrics.listener(&l.name),
            rpc_stats: RpcStats::new(l.name.as_str().into(), Arc::clone(&metrics)),
            grpc_stats: GrpcStats::new(l.name.as_str().into(), Arc::clone(&metrics)),
            shutdown: CancellationToken::new(),
        }
    })
}

/// Feeds `data` after the preface to the proxy's HTTP/2 server and checks its output.
pub fn h2_frames(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let out = rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        let serve = proxy().serve_h2_io(server, peer, BytesMut::new());
        let talk = async move {
            let mut input = PREFACE.to_vec();
            input.extend_from_slice(data);
            // The proxy may stop reading (GOAWAY) before all is written.
            let _ = client.write_all(&input).await;
            // Time for every answer (paused time: no real wait), then the client leaves.
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let (out, ()) = tokio::time::timeout(std::time::Duration::from_secs(3600), async {
            tokio::join!(talk, serve)
        })
        .await
        .expect("the proxy finishes the connection");
        out
    });
    check_frames(&out);
}

/// The invariants of what the proxy wrote (module docs).
fn check_frames(out: &[u8]) {
    let mut rest = out;
    let mut first = true;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 9,
            "a partial frame header at the end: {rest:?}"
        );
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let kind = rest[3];
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        assert!(rest.len() >= 9 + len, "a partial frame at the end");
        if first {
            assert_eq!(
                (kind, stream),
                (SETTINGS, 0),
                "the server's SETTINGS come first"
            );
            first = false;
        }
        match kind {
            SETTINGS | PING | GOAWAY => assert_eq!(stream, 0, "frame type {kind} on a stream"),
            DATA | HEADERS | RST_STREAM | CONTINUATION => {
                assert!(stream % 2 == 1, "frame type {kind} on stream {stream}");
            }
            WINDOW_UPDATE => assert!(stream == 0 || stream % 2 == 1),
            PUSH_PROMISE => panic!("the proxy never pushes"),
            other => panic!("unknown frame type {other} sent"),
        }
        rest = &rest[9 + len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client SETTINGS, then a GET on stream 1 with an HPACK-literal header block.
    fn get(path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
        block.push(0x04); // :path, literal without indexing, name index 4
        block.push(path.len() as u8);
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 0x01, b'a']); // :authority "a"
        let mut f = vec![0, 0, 0, SETTINGS, 0, 0, 0, 0, 0];
        let len = block.len();
        f.extend_from_slice(&[0, 0, len as u8, HEADERS, 0x5, 0, 0, 0, 1]);
        f.extend_from_slice(&block);
        f
    }

    fn frames_of(out: &[u8]) -> Vec<(u8, u32)> {
        let mut v = Vec::new();
        let mut rest = out;
        while rest.len() >= 9 {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            v.push((rest[3], stream));
            rest = &rest[9 + len..];
        }
        v
    }

    fn run(data: &[u8]) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let serve =
                proxy().serve_h2_io(server, "127.0.0.1:1".parse().unwrap(), BytesMut::new());
            let talk = async move {
                let mut input = PREFACE.to_vec();
                input.extend_from_slice(data);
                client.write_all(&input).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                client.shutdown().await.unwrap();
                let mut out = Vec::new();
                let _ = client.read_to_end(&mut out).await;
                out
            };
            tokio::join!(talk, serve).0
        })
    }

    #[test]
    fn a_request_is_answered_on_its_stream() {
        let out = run(&get("/x"));
        check_frames(&out);
        let frames = frames_of(&out);
        assert!(frames.contains(&(HEADERS, 1)), "{frames:?}");
        assert!(
            frames.contains(&(DATA, 1)),
            "the direct response's body: {frames:?}"
        );
        h2_frames(&get("/redirect"));
    }

    #[test]
    fn garbage_gets_goaway() {
        let out = run(&[0xff; 64]);
        check_frames(&out);
        assert!(frames_of(&out).iter().any(|&(k, _)| k == GOAWAY), "{out:?}");
    }
}
