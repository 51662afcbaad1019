//! `use_original_dst` listeners with their tcp_proxy on real loopback sockets, wired as the
//! daemon wires them, with a fake capture record.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{DataPath, TcpProxy};
use crate::config::{self, Format};
use crate::metrics::{ErrorKind, Metrics};
use crate::network::test_util::{FakeLookup, origin};
use crate::network::{BoundListener, ConnTracker, ListenerIndex, OriginalDstLookup};
use crate::upstream::ClusterManager;

/// The daemon's listener wiring (as `server::run` does it) on a config, userspace copy.
struct Proxy {
    /// Bound address of each listener, by name.
    addrs: HashMap<String, SocketAddr>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    fn start(config: serde_json::Value, lookup: Option<Arc<dyn OriginalDstLookup>>) -> Proxy {
        let config = config::parse(&config.to_string(), Format::Json)
            .unwrap()
            .config;
        let metrics = Metrics::new();
        let clusters = ClusterManager::new(&config, &metrics);
        let mut bound: Vec<BoundListener> = config
            .listeners
            .iter()
            .map(|l| {
                let proxy = TcpProxy::new(
                    &l.name,
                    l.filter().tcp_proxy().unwrap(),
                    &clusters,
                    DataPath::Userspace,
                    metrics.listener(&l.name),
                );
                BoundListener::bind(&l.name, l.address, Arc::new(proxy), l.original_dst).unwrap()
            })
            .collect();
        let index = Arc::new(ListenerIndex::new(
            bound.iter().map(|b| (b.local_addr, Arc::clone(b.proxy()))),
        ));
        let stop = CancellationToken::new();
        let tracker = ConnTracker::new();
        let mut addrs = HashMap::new();
        for mut b in bound.drain(..) {
            b.enable_original_dst(lookup.clone(), Arc::clone(&index));
            addrs.insert(b.name.clone(), b.local_addr);
            tokio::spawn(b.serve(stop.clone(), tracker.clone()));
        }
        Proxy {
            addrs,
            metrics,
            stop,
        }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }

    fn connections(&self, listener: &str) -> u64 {
        self.metrics.listener(listener).connections_total.get()
    }
}

fn listener(
    name: &str,
    address: &str,
    mode: Option<&str>,
    tcp_proxy: serde_json::Value,
) -> serde_json::Value {
    let mut l = json!({
        "name": name, "address": address, "bind_port": true, "fast_path": "userspace",
        "filter_chains": [{ "filters": [{ "type": "tcp_proxy", "config": tcp_proxy }] }]
    });
    if let Some(mode) = mode {
        l["use_original_dst"] = mode.into();
    }
    l
}

fn static_cluster(name: &str, host: SocketAddr) -> serde_json::Value {
    json!({ "name": name, "hosts": [{ "address": host.to_string() }] })
}

fn original_dst_cluster(name: &str) -> serde_json::Value {
    json!({ "name": name, "type": "ORIGINAL_DST", "connect_timeout": "1s" })
}

/// Connects to `addr`, reads the origin's greeting and checks an echo round trip.
async fn greeting_via(addr: SocketAddr) -> (String, SocketAddr) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let client = c.local_addr().unwrap();
    let mut tag = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut tag))
        .await
        .expect("no greeting from the origin")
        .unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    c.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    (String::from_utf8_lossy(&tag).into_owned(), client)
}

/// Connects to `addr` and expects the proxy to close the connection without data.
async fn closed_via(addr: SocketAddr) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the proxy did not close the connection");
    assert!(matches!(r, Ok(0) | Err(_)), "expected a close, got {r:?}");
}

#[tokio::test]
async fn original_dst_cluster_connects_to_the_looked_up_destination() {
    let origin = origin("o").await;
    let lookup = Arc::new(FakeLookup::default());
    lookup.set(Some(origin));
    let p = Proxy::start(
        json!({
            "servers": [{ "listeners": [
                listener("out", "127.0.0.1:0", Some("redirect"), json!({ "cluster": "pass" })),
            ]}],
            "cluster_manager": { "clusters": [original_dst_cluster("pass")] }
        }),
        Some(lookup.clone()),
    );
    let (tag, client) = greeting_via(p.addr("out")).await;
    assert_eq!(tag, "o");
    assert_eq!(
        *lookup.asked.lock().unwrap(),
        vec![client],
        "asked about the client's own socket address"
    );
    assert_eq!(p.connections("out"), 1);
    assert_eq!(p.metrics.cluster("pass").upstream_cx_total.get(), 1);
}

#[tokio::test]
async fn hand_off_to_the_listener_of_the_original_destination() {
    let (a, b) = (origin("a").await, origin("b").await);
    let lookup = Arc::new(FakeLookup::default());
    let p = Proxy::start(
        json!({
            "servers": [{ "listeners": [
                listener("out", "127.0.0.1:0", Some("redirect"), json!({
                    "cluster": "pass",
                    "routes": [{ "cluster": "to_b", "DestinationAddrs": [{ "address": "127.0.0.2", "length": 32 }] }]
                })),
                listener("exact", "127.0.0.1:0", None, json!({ "cluster": "to_b" })),
                listener("any", "0.0.0.0:0", None, json!({ "cluster": "to_a" })),
            ]}],
            "cluster_manager": { "clusters": [
                original_dst_cluster("pass"), static_cluster("to_a", a), static_cluster("to_b", b),
            ]}
        }),
        Some(lookup.clone()),
    );
    let out = p.addr("out");

    // Bound to exactly the original destination: that listener's filter chain, counted there.
    lookup.set(Some(p.addr("exact")));
    assert_eq!(greeting_via(out).await.0, "b");
    assert_eq!((p.connections("exact"), p.connections("out")), (1, 0));

    // Bound to the unspecified address with the original destination's port.
    let any_port = p.addr("any").port();
    lookup.set(Some(SocketAddr::from(([127, 0, 0, 1], any_port))));
    assert_eq!(greeting_via(out).await.0, "a");
    assert_eq!((p.connections("any"), p.connections("out")), (1, 0));

    // No listener there: this listener's own tcp_proxy, to the original destination.
    lookup.set(Some(a));
    assert_eq!(greeting_via(out).await.0, "a");
    assert_eq!(p.connections("out"), 1);
    assert_eq!(p.metrics.cluster("pass").upstream_cx_total.get(), 1);

    // Routes match on the original destination, not the listener's address.
    lookup.set(Some("127.0.0.2:9".parse().unwrap()));
    assert_eq!(greeting_via(out).await.0, "b");
    assert_eq!(p.connections("out"), 2);
    assert_eq!(p.metrics.cluster("pass").upstream_cx_total.get(), 1);
}

#[tokio::test]
async fn missing_original_destination_closes_and_counts() {
    let lookup = Arc::new(FakeLookup::default());
    let p = Proxy::start(
        json!({
            "servers": [{ "listeners": [
                listener("out", "127.0.0.1:0", Some("redirect"), json!({ "cluster": "pass" })),
                listener("in", "127.0.0.1:0", Some("tproxy"), json!({ "cluster": "inpass" })),
                listener("plain", "127.0.0.1:0", None, json!({ "cluster": "pass" })),
            ]}],
            "cluster_manager": { "clusters": [
                original_dst_cluster("pass"), original_dst_cluster("inpass"),
            ]}
        }),
        Some(lookup.clone()),
    );
    let no_host = |listener: &str| {
        p.metrics
            .listener(listener)
            .errors
            .get(ErrorKind::NoHealthyHost)
    };

    // Nothing recorded, and no conntrack entry: the listener's own address, never connected.
    closed_via(p.addr("out")).await;
    assert_eq!(no_host("out"), 1);
    // Recorded as this listener itself (a connection straight to the redirect port).
    lookup.set(Some(p.addr("out")));
    closed_via(p.addr("out")).await;
    assert_eq!(no_host("out"), 2);
    // A direct connection to a tproxy listener: its local address is the listener itself.
    closed_via(p.addr("in")).await;
    assert_eq!(no_host("in"), 1);
    // A listener without use_original_dst has no original destination.
    closed_via(p.addr("plain")).await;
    assert_eq!(no_host("plain"), 1);

    let pass = p.metrics.cluster("pass");
    assert_eq!(pass.no_healthy_host.get(), 3);
    assert_eq!(pass.upstream_cx_total.get(), 0, "never connected to itself");
    assert_eq!(p.metrics.cluster("inpass").upstream_cx_total.get(), 0);
}
