//! L7 test helpers: an HTTP listener config for the daemon, curl as the client, and a raw
//! TCP client for what curl will not send (malformed requests, pipelining).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::daemon::{LISTENER, Mosn};

/// Name of the router every generated L7 config has.
pub const ROUTER: &str = "r";

/// An L7 config: listener `l1` with the `proxy` filter (Http1) and router `r`.
#[derive(Debug, Clone)]
pub struct HttpSetup {
    /// `virtual_hosts` of router `r`.
    pub virtual_hosts: Value,
    /// `cluster_manager.clusters`.
    pub clusters: Value,
    /// The listener's `stream_filters`.
    pub stream_filters: Value,
    /// Extra keys of router `r` (e.g. `request_headers_to_add`).
    pub router_extra: Value,
    /// Extra keys of the proxy filter's config.
    pub proxy_extra: Value,
}

impl HttpSetup {
    /// One virtual host `*` whose `routes` are given, and `clusters`.
    pub fn new(routes: Value, clusters: Value) -> HttpSetup {
        HttpSetup {
            virtual_hosts: json!([{ "name": "all", "domains": ["*"], "routers": routes }]),
            clusters,
            stream_filters: json!([]),
            router_extra: json!({}),
            proxy_extra: json!({}),
        }
    }

    /// Every request to cluster `c1` on `hosts`.
    pub fn simple(hosts: &[SocketAddr]) -> HttpSetup {
        HttpSetup::new(
            json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
            json!([cluster("c1", hosts)]),
        )
    }

    pub fn filters(mut self, f: Value) -> HttpSetup {
        self.stream_filters = f;
        self
    }

    pub fn to_json(&self, listen_port: u16, admin_port: u16) -> Value {
        let mut router =
            json!({ "router_config_name": ROUTER, "virtual_hosts": self.virtual_hosts });
        merge(&mut router, &self.router_extra);
        let mut proxy = json!({
            "downstream_protocol": "Http1",
            "upstream_protocol": "Http1",
            "router_config_name": ROUTER,
        });
        merge(&mut proxy, &self.proxy_extra);
        l7_config(
            router,
            proxy,
            &self.stream_filters,
            &self.clusters,
            listen_port,
            admin_port,
        )
    }

    pub async fn start(&self) -> Mosn {
        Mosn::start_with(|l, a| self.to_json(l, a)).await
    }
}

/// A daemon config with one L7 listener ([`LISTENER`] on `listen_port`): a `proxy` filter
/// with config `proxy`, its `stream_filters`, one router, `clusters`, the admin on
/// `admin_port` and a 2 s graceful timeout. Shared by the HTTP and RPC setups.
pub fn l7_config(
    router: Value,
    proxy: Value,
    stream_filters: &Value,
    clusters: &Value,
    listen_port: u16,
    admin_port: u16,
) -> Value {
    json!({
        "servers": [{
            "routers": [router],
            "listeners": [{
                "name": LISTENER,
                "address": format!("127.0.0.1:{listen_port}"),
                "bind_port": true,
                "stream_filters": stream_filters,
                "filter_chains": [{ "filters": [{ "type": "proxy", "config": proxy }] }]
            }]
        }],
        "cluster_manager": { "clusters": clusters },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "graceful_timeout": "2s",
    })
}

/// Copies `extra`'s keys into `into` (both JSON objects).
pub fn merge(into: &mut Value, extra: &Value) {
    if let (Some(o), Some(e)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
}

/// A SIMPLE round-robin cluster with a 1 s connect timeout.
pub fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|h| json!({ "address": h.to_string() }))
        .collect();
    json!({ "name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "1s", "hosts": hosts })
}

/// A response as curl saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl -s -i <args> http://<addr><path>` (10 s limit) and parses the final response
/// (interim 1xx responses are skipped).
/// Async: the origin usually runs on the test's own runtime.
pub async fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> Reply {
    let url = format!("http://{addr}{path}");
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--http1.1"])
        .args(args)
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl (is it installed? cargo xtask setup installs it)");
    parse_reply(&out.stdout).unwrap_or_else(|| {
        panic!(
            "curl {args:?} {url}: no response (exit {:?}, stderr {})",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Parses a raw HTTP/1.1 response (skipping 1xx); `None` if there is none.
pub fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let mut rest = raw;
    loop {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let body = &rest[end + 4..];
        if (100..200).contains(&status) && status != 101 {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return Some(Reply {
            status,
            headers,
            body: body.to_vec(),
        });
    }
}

/// Writes `request` on a new connection and reads until the server closes or `limit`
/// passes; returns everything read.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect to mosn");
    s.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    out
}
