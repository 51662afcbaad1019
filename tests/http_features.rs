//! L7 features end to end, each through a real daemon: route matching and actions, the load
//! balancers, active health checks, outlier detection, circuit breakers, retries and the
//! stream filters. Clients are curl or a small keep-alive client (for many requests in a
//! row); upstreams are hyper origins or raw sockets where an origin cannot misbehave
//! per host (always 503, slow).
//!
//! Statistical checks use chi-square at p = 0.001 (df 1: 10.828, df 2: 13.816).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mosn_tests::http::{HttpSetup, Reply, cluster, curl, parse_reply};
use mosn_tests::origin::Origin;
use mosn_tests::upstream::dead_addr;
use mosn_tests::{Mosn, Upstream, timing, within};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);
/// Chi-square critical values at p = 0.001.
const CHI2_DF1: f64 = 10.828;
const CHI2_DF2: f64 = 13.816;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A keep-alive HTTP/1.1 client on one connection (reconnects after `Connection: close`), for
/// many requests without a process per request.
struct Client {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            buf: Vec::new(),
        }
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, b"").await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let what = format!("{method} {path} {headers:?}");
        within(LIMIT, &what, self.exchange(method, path, headers, body)).await
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        if self.conn.is_none() {
            self.conn = Some(
                TcpStream::connect(self.addr)
                    .await
                    .expect("connect to mosn"),
            );
            self.buf.clear();
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req.push_str("Host: test.local\r\n");
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let s = self.conn.as_mut().unwrap();
        s.write_all(&bytes).await.expect("write request");
        let mut chunk = vec![0u8; 16 * 1024];
        // The head.
        let end = loop {
            if let Some(e) = find(&self.buf, b"\r\n\r\n") {
                break e;
            }
            let n = s.read(&mut chunk).await.expect("read response");
            assert!(
                n > 0,
                "{method} {path}: connection closed before a response head ({:?})",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = parse_reply(&self.buf[..end + 4]).expect("a response head");
        let len: Option<usize> = head
            .header("content-length")
            .map(|v| v.parse().expect("numeric content-length"));
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        self.buf.drain(..end + 4);
        let body = if method == "HEAD" || head.status == 204 || head.status == 304 {
            Vec::new()
        } else if let Some(len) = len {
            while self.buf.len() < len {
                let n = s.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "{method} {path}: closed mid-body");
                self.buf.extend_from_slice(&chunk[..n]);
            }
            self.buf.drain(..len).collect()
        } else if chunked {
            let mut out = Vec::new();
            loop {
                let Some(le) = find(&self.buf, b"\r\n") else {
                    let n = s.read(&mut chunk).await.expect("read chunk size");
                    assert!(n > 0, "closed mid-chunked body");
                    self.buf.extend_from_slice(&chunk[..n]);
                    continue;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..le]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                while self.buf.len() < le + 2 + size + 2 {
                    let n = s.read(&mut chunk).await.expect("read chunk");
                    assert!(n > 0, "closed mid-chunk");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                out.extend_from_slice(&self.buf[le + 2..le + 2 + size]);
                self.buf.drain(..le + 2 + size + 2);
                if size == 0 {
                    break out;
                }
            }
        } else {
            // Close-delimited.
            let mut out = std::mem::take(&mut self.buf);
            s.read_to_end(&mut out).await.expect("read to end");
            self.conn = None;
            out
        };
        if head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        Reply {
            status: head.status,
            headers: head.headers,
            body,
        }
    }
}

/// One GET on a connection of its own (for answers the proxy gives itself, after which it
/// closes the connection: see `local_replies_keep_the_connection_alive`).
async fn fresh(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    Client::new(addr).get(path, headers).await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `x-origin` of a reply (panics without one, with the reply).
fn origin_of(r: &Reply) -> String {
    r.header("x-origin")
        .unwrap_or_else(|| panic!("no x-origin: {} {:?} {}", r.status, r.headers, r.text()))
        .to_owned()
}

/// `n` GETs of `path` on one keep-alive connection; the `x-origin` of each (all must be 200).
async fn picks(addr: SocketAddr, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut c = Client::new(addr);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = c.get(path, headers).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        out.push(origin_of(&r));
    }
    out
}

/// How many of `picks` name each of `names` (in that order); panics on any other name.
fn tally(picks: &[String], names: &[&str]) -> Vec<usize> {
    let mut counts = vec![0; names.len()];
    for p in picks {
        let i = names
            .iter()
            .position(|n| n == p)
            .unwrap_or_else(|| panic!("unexpected origin {p:?} (expected one of {names:?})"));
        counts[i] += 1;
    }
    counts
}

/// Pearson's chi-square of `observed` against shares proportional to `weights`.
fn chi_square(observed: &[usize], weights: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    let total: f64 = weights.iter().sum();
    observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = n as f64 * w / total;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// `name{cluster=cluster}`.
async fn cluster_metric(m: &Mosn, name: &str, cluster: &str) -> u64 {
    m.metrics().await.value(name, &[("cluster", cluster)])
}

/// A host entry with extra keys (weight, metadata).
fn host(addr: SocketAddr, extra: Value) -> Value {
    let mut h = json!({ "address": addr.to_string() });
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

/// A cluster of `hosts` (host objects) with `lb_type` and extra keys.
fn cluster_with(name: &str, lb_type: &str, hosts: Vec<Value>, extra: Value) -> Value {
    let mut c = json!({ "name": name, "type": "SIMPLE", "lb_type": lb_type, "connect_timeout": "1s", "hosts": hosts });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn plain_hosts(addrs: &[SocketAddr]) -> Vec<Value> {
    addrs.iter().map(|a| host(*a, json!({}))).collect()
}

/// A raw HTTP/1.1 upstream (keep-alive) that answers every request with `status`, after
/// `delay`, with `x-origin: name` and the body `name`. Counts the requests it answers.
struct RawHttp {
    up: Upstream,
    hits: Arc<AtomicUsize>,
}

impl RawHttp {
    async fn start(name: &'static str, status: u16, delay: Duration) -> RawHttp {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&hits);
        let up = Upstream::spawn(move |mut s, _| {
            let h = Arc::clone(&h);
            async move {
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Answer every complete request in the buffer.
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        buf.drain(..end + 4 + len);
                        h.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let resp = format!(
                            "HTTP/1.1 {status} Raw\r\nx-origin: {name}\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        })
        .await;
        RawHttp { up, hits }
    }

    fn addr(&self) -> SocketAddr {
        self.up.addr
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header_values(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Router matches

#[tokio::test]
async fn route_matches_path_header_and_query_to_distinct_clusters() {
    let names = ["exact", "prefix", "regex", "hdr", "hdrre", "query"];
    let mut origins = Vec::new();
    for n in names {
        origins.push(Origin::start(n).await);
    }
    let clusters: Vec<Value> = names
        .iter()
        .zip(&origins)
        .map(|(n, o)| cluster(n, &[o.addr]))
        .collect();
    let setup = HttpSetup::new(
        json!([
            { "match": { "path": "/exact" }, "route": { "cluster_name": "exact" } },
            { "match": { "prefix": "/pre/" }, "route": { "cluster_name": "prefix" } },
            { "match": { "regex": "/re/[0-9]+" }, "route": { "cluster_name": "regex" } },
            { "match": { "prefix": "/h", "headers": [{ "name": "x-env", "value": "canary" }] },
              "route": { "cluster_name": "hdr" } },
            { "match": { "prefix": "/h", "headers": [{ "name": "x-env", "value": "beta-[0-9]+", "regex": true }] },
              "route": { "cluster_name": "hdrre" } },
            { "match": { "prefix": "/q", "query_parameters": [{ "name": "v", "value": "2" }] },
              "route": { "cluster_name": "query" } }
        ]),
        Value::Array(clusters),
    );
    let m = setup.start().await;
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("/exact", &[], Some("exact")),
        ("/exact?x=1", &[], Some("exact")),
        ("/exact/more", &[], None),
        ("/exactly", &[], None),
        ("/pre/a/b", &[], Some("prefix")),
        ("/pre", &[], None),
        ("/re/123", &[], Some("regex")),
        ("/re/12a", &[], None),
        ("/re/123/x", &[], None),
        ("/h", &["-H", "x-env: canary"], Some("hdr")),
        ("/hello", &["-H", "x-env: beta-42"], Some("hdrre")),
        ("/h", &["-H", "x-env: beta-x"], None),
        ("/h", &["-H", "x-env: canary2"], None),
        ("/h", &[], None),
        ("/q?v=2", &[], Some("query")),
        ("/q?a=1&v=2", &[], Some("query")),
        ("/q?v=3", &[], None),
        ("/q", &[], None),
        ("/nothing", &[], None),
    ];
    let mut misses = 0;
    for (path, args, want) in cases {
        let r = curl(m.listen, path, args).await;
        match want {
            Some(o) => {
                assert_eq!(r.status, 200, "{path} {args:?}: {}", r.text());
                assert_eq!(r.header("x-origin"), Some(*o), "{path} {args:?}");
            }
            None => {
                misses += 1;
                assert_eq!(r.status, 404, "{path} {args:?}: {}", r.text());
                assert_eq!(r.header("x-origin"), None, "{path} {args:?}");
            }
        }
    }
    // Each origin saw exactly its own requests.
    let want_counts = [2, 1, 1, 1, 1, 2];
    for ((o, n), want) in origins.iter().zip(names).zip(want_counts) {
        assert_eq!(o.count(), want, "origin {n}");
    }
    assert_eq!(m.errors("no_route").await, misses);
}

#[tokio::test]
async fn virtual_hosts_by_exact_suffix_and_prefix_domain() {
    let names = ["exact", "suffix", "prefix"];
    let mut origins = Vec::new();
    for n in names {
        origins.push(Origin::start(n).await);
    }
    let mut setup = HttpSetup::new(
        json!([]),
        Value::Array(
            names
                .iter()
                .zip(&origins)
                .map(|(n, o)| cluster(n, &[o.addr]))
                .collect(),
        ),
    );
    let vh = |name: &str, domain: &str| {
        json!({ "name": name, "domains": [domain],
                "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": name } }] })
    };
    setup.virtual_hosts = json!([
        vh("exact", "www.foo.com"),
        vh("suffix", "*.foo.com"),
        vh("prefix", "foo.*"),
    ]);
    let m = setup.start().await;
    for (host, want) in [
        ("www.foo.com", Some("exact")),
        ("WWW.Foo.com:8080", Some("exact")),
        ("api.foo.com", Some("suffix")),
        ("a.b.foo.com:81", Some("suffix")),
        ("foo.org", Some("prefix")),
        // "*.foo.com" needs something before ".foo.com"; "foo.*" takes it.
        ("foo.com", Some("prefix")),
        ("bar.org", None),
        ("xfoo.com", None),
    ] {
        let h = format!("Host: {host}");
        let r = curl(m.listen, "/", &["-H", &h]).await;
        match want {
            Some(o) => {
                assert_eq!(r.status, 200, "{host}: {}", r.text());
                assert_eq!(r.header("x-origin"), Some(o), "{host}");
            }
            None => assert_eq!(r.status, 404, "{host}: {}", r.text()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Route actions

#[tokio::test]
async fn rewrites_and_header_mutations_at_three_levels() {
    let o = Origin::start("o1").await;
    let add = |k: &str, v: &str| json!({ "header": { "key": k, "value": v } });
    let mut setup = HttpSetup::new(json!([]), json!([cluster("c1", &[o.addr])]));
    setup.virtual_hosts = json!([{
        "name": "all",
        "domains": ["*"],
        "request_headers_to_add": [add("x-level", "vhost"), add("x-vhost", "v")],
        "request_headers_to_remove": ["x-drop-vhost"],
        "response_headers_to_add": [add("x-resp-vhost", "v"), add("x-resp-level", "vhost")],
        "routers": [
            { "match": { "prefix": "/old/" }, "route": { "cluster_name": "c1", "prefix_rewrite": "/new/" } },
            { "match": { "prefix": "/rx/" }, "route": { "cluster_name": "c1", "regex_rewrite": {
                "pattern": { "regex": "^/rx/([a-z]+)/([0-9]+)$" }, "substitution": "/items/\\2/\\1" } } },
            { "match": { "prefix": "/host" }, "route": { "cluster_name": "c1", "host_rewrite": "backend.internal" } },
            { "match": { "prefix": "/hdr" }, "route": { "cluster_name": "c1" },
              "request_headers_to_add": [add("x-level", "route"), add("x-route", "r"),
                  { "header": { "key": "x-multi", "value": "added" }, "append": true }],
              "request_headers_to_remove": ["x-drop-route"],
              "response_headers_to_add": [add("x-resp-level", "route")],
              "response_headers_to_remove": ["x-origin"] },
            { "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }
        ]
    }]);
    setup.router_extra = json!({
        "request_headers_to_add": [add("x-level", "router"), add("x-router", "rt")],
        "request_headers_to_remove": ["x-drop-router"],
        "response_headers_to_add": [add("x-resp-router", "rt"), add("x-resp-level", "router")],
    });
    let m = setup.start().await;

    // Path rewrites keep the query.
    let r = curl(m.listen, "/old/x/y?q=1", &[]).await;
    assert_eq!((r.status, r.text()), (200, "o1 GET /new/x/y".to_owned()));
    assert_eq!(o.last().uri, "/new/x/y?q=1");
    curl(m.listen, "/old/", &[]).await;
    assert_eq!(o.last().uri, "/new/");
    let r = curl(m.listen, "/rx/abc/42?k=v", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(o.last().uri, "/items/42/abc?k=v");
    curl(m.listen, "/rx/abc/x", &[]).await;
    assert_eq!(o.last().uri, "/rx/abc/x", "no match: unchanged");
    // Host rewrite.
    curl(m.listen, "/host/a", &["-H", "Host: front.example"]).await;
    let seen = o.last();
    assert_eq!(seen.uri, "/host/a");
    assert_eq!(header_values(&seen.headers, "host"), ["backend.internal"]);

    // Header mutations: the route's level wins over the virtual host's and the router's.
    let drops = [
        "-H",
        "x-drop-route: 1",
        "-H",
        "x-drop-vhost: 1",
        "-H",
        "x-drop-router: 1",
        "-H",
        "x-multi: client",
        "-H",
        "x-level: client",
    ];
    let r = curl(m.listen, "/hdr", &drops).await;
    assert_eq!(r.status, 200);
    let h = o.last().headers;
    assert_eq!(header_values(&h, "x-level"), ["route"]);
    assert_eq!(header_values(&h, "x-route"), ["r"]);
    assert_eq!(header_values(&h, "x-vhost"), ["v"]);
    assert_eq!(header_values(&h, "x-router"), ["rt"]);
    assert_eq!(header_values(&h, "x-multi"), ["client", "added"]);
    for gone in ["x-drop-route", "x-drop-vhost", "x-drop-router"] {
        assert!(h.get(gone).is_none(), "{gone} removed");
    }
    assert_eq!(r.header("x-resp-level"), Some("route"));
    assert_eq!(r.header("x-resp-vhost"), Some("v"));
    assert_eq!(r.header("x-resp-router"), Some("rt"));
    assert_eq!(r.header("x-origin"), None, "removed by the route");
    assert_eq!(
        r.headers
            .iter()
            .filter(|(n, _)| n == "x-resp-level")
            .count(),
        1
    );

    // Another route: the virtual host's level wins over the router's; the route's removals do
    // not apply.
    let r = curl(m.listen, "/other", &drops).await;
    assert_eq!(r.status, 200);
    let h = o.last().headers;
    assert_eq!(header_values(&h, "x-level"), ["vhost"]);
    assert!(h.get("x-route").is_none());
    assert_eq!(header_values(&h, "x-router"), ["rt"]);
    assert_eq!(header_values(&h, "x-drop-route"), ["1"]);
    assert!(h.get("x-drop-vhost").is_none() && h.get("x-drop-router").is_none());
    assert_eq!(header_values(&h, "x-multi"), ["client"]);
    assert_eq!(r.header("x-resp-level"), Some("vhost"));
    assert_eq!(r.header("x-resp-router"), Some("rt"));
    assert_eq!(r.header("x-origin"), Some("o1"));
}

#[tokio::test]
async fn direct_response_redirects_and_cluster_header() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let setup = HttpSetup::new(
        json!([
            { "match": { "path": "/dr" }, "direct_response": { "status": 418, "body": "short and stout" } },
            { "match": { "prefix": "/go/" }, "redirect": {
                "host_redirect": "new.example", "prefix_rewrite": "/landing/", "response_code": 302 } },
            { "match": { "path": "/secure" }, "redirect": { "https_redirect": true } },
            { "match": { "prefix": "/ch" }, "route": { "cluster_header": "x-cluster" } }
        ]),
        json!([cluster("ca", &[a.addr]), cluster("cb", &[b.addr])]),
    );
    let m = setup.start().await;
    let r = curl(m.listen, "/dr", &[]).await;
    assert_eq!((r.status, r.text()), (418, "short and stout".to_owned()));
    let r = curl(m.listen, "/go/a/b?x=1", &["-H", "Host: old.example"]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://new.example/landing/a/b?x=1")
    );
    let r = curl(m.listen, "/secure?y=2", &["-H", "Host: site.example"]).await;
    assert_eq!(r.status, 301, "the default redirect code");
    assert_eq!(
        r.header("location"),
        Some("https://site.example/secure?y=2")
    );
    for (value, want) in [("ca", "a"), ("cb", "b"), ("ca", "a")] {
        let h = format!("x-cluster: {value}");
        let r = curl(m.listen, "/ch", &["-H", &h]).await;
        assert_eq!((r.status, r.header("x-origin")), (200, Some(want)));
    }
    let r = curl(m.listen, "/ch", &["-H", "x-cluster: nope"]).await;
    assert_eq!(r.status, 503, "unknown cluster: {}", r.text());
    let r = curl(m.listen, "/ch", &[]).await;
    assert_eq!(r.status, 503, "no cluster header: {}", r.text());
    assert_eq!((a.count(), b.count()), (2, 1));
}

#[tokio::test]
async fn weighted_clusters_split_one_to_two() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "weighted_clusters": [
            { "cluster": { "name": "ca", "weight": 10 } },
            { "cluster": { "name": "cb", "weight": 20 } }
        ] } }]),
        json!([cluster("ca", &[a.addr]), cluster("cb", &[b.addr])]),
    );
    let m = setup.start().await;
    let p = picks(m.listen, "/w", &[], 300).await;
    let counts = tally(&p, &["a", "b"]);
    let chi2 = chi_square(&counts, &[1.0, 2.0]);
    assert!(
        chi2 < CHI2_DF1,
        "300 requests at 1:2 gave {counts:?} (chi-square {chi2:.2} >= {CHI2_DF1})"
    );
    assert_eq!((a.count(), b.count()), (counts[0], counts[1]));
}

#[tokio::test]
async fn request_mirror_policy_copies_to_the_shadow() {
    let main = Origin::start("main").await;
    let shadow = Origin::start("shadow").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": {
            "cluster_name": "c1",
            "request_mirror_policies": { "cluster": "mirror", "percent": 100 }
        } }]),
        json!([
            cluster("c1", &[main.addr]),
            cluster("mirror", &[shadow.addr])
        ]),
    );
    let m = setup.start().await;
    for i in 0..4 {
        let r = curl(m.listen, &format!("/m/{i}"), &["-H", "Host: svc.local"]).await;
        assert_eq!((r.status, r.text()), (200, format!("main GET /m/{i}")));
    }
    let r = curl(
        m.listen,
        "/echo",
        &[
            "-H",
            "Host: svc.local:8080",
            "--data-binary",
            "mirrored body",
        ],
    )
    .await;
    assert_eq!((r.status, r.text()), (200, "mirrored body".to_owned()));
    eventually(LIMIT, "5 mirrored copies", async || shadow.count() == 5).await;
    let seen = shadow.seen();
    let mut uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    uris.sort();
    assert_eq!(uris, ["/echo", "/m/0", "/m/1", "/m/2", "/m/3"]);
    for s in &seen {
        let want = if s.uri == "/echo" {
            "svc.local-shadow:8080"
        } else {
            "svc.local-shadow"
        };
        assert_eq!(header_values(&s.headers, "host"), [want], "{}", s.uri);
    }
    assert_eq!(
        seen.iter().find(|s| s.uri == "/echo").unwrap().method,
        "POST"
    );
    assert_eq!(main.count(), 5);
    assert!(
        main.seen()
            .iter()
            .all(|s| !s.headers["host"].to_str().unwrap().contains("shadow"))
    );
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_mirrored_total", "mirror").await,
        5
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Load balancers

async fn three_origins() -> [Origin; 3] {
    [
        Origin::start("o1").await,
        Origin::start("o2").await,
        Origin::start("o3").await,
    ]
}

const NAMES: [&str; 3] = ["o1", "o2", "o3"];

#[tokio::test]
async fn lb_round_robin_is_exact() {
    let os = three_origins().await;
    let addrs: Vec<SocketAddr> = os.iter().map(|o| o.addr).collect();
    let m = HttpSetup::simple(&addrs).start().await;
    let p = picks(m.listen, "/rr", &[], 90).await;
    assert_eq!(tally(&p, &NAMES), [30, 30, 30]);
    let first: BTreeSet<&String> = p[..3].iter().collect();
    assert_eq!(first.len(), 3, "{p:?}");
    for (i, x) in p.iter().enumerate() {
        assert_eq!(x, &p[i % 3], "pick {i} breaks the rotation: {p:?}");
    }
}

#[tokio::test]
async fn lb_random_is_uniform_and_not_a_rotation() {
    let os = three_origins().await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_RANDOM",
            plain_hosts(&os.iter().map(|o| o.addr).collect::<Vec<_>>()),
            json!({})
        )]),
    );
    let m = setup.start().await;
    let p = picks(m.listen, "/rand", &[], 300).await;
    let counts = tally(&p, &NAMES);
    let chi2 = chi_square(&counts, &[1.0, 1.0, 1.0]);
    assert!(chi2 < CHI2_DF2, "{counts:?}: chi-square {chi2:.2}");
    // A rotation never picks the same host twice in a row; 300 random picks do (all but
    // certainly: (2/3)^299).
    let repeats = p.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(repeats > 0, "no host picked twice in a row: {p:?}");
}

#[tokio::test]
async fn lb_weighted_round_robin_is_exact_per_cycle() {
    let os = three_origins().await;
    let hosts: Vec<Value> = os
        .iter()
        .zip([1, 2, 3])
        .map(|(o, w)| host(o.addr, json!({ "weight": w })))
        .collect();
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_WEIGHTED_ROUNDROBIN",
            hosts,
            json!({})
        )]),
    );
    let m = setup.start().await;
    let p = picks(m.listen, "/wrr", &[], 60).await;
    for (i, cycle) in p.chunks(6).enumerate() {
        assert_eq!(tally(cycle, &NAMES), [1, 2, 3], "cycle {i}: {cycle:?}");
    }
}

#[tokio::test]
async fn lb_least_request_avoids_the_slow_host() {
    let _t = timing().await;
    let slow = RawHttp::start("slow", 200, Duration::from_millis(400)).await;
    let b = Origin::start("b").await;
    let c = Origin::start("c").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_LEAST_REQUEST",
            plain_hosts(&[slow.addr(), b.addr, c.addr]),
            json!({})
        )]),
    );
    let m = setup.start().await;
    // 8 clients, 10 requests each, concurrently.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = m.listen;
        tasks.push(tokio::spawn(
            async move { picks(addr, "/lr", &[], 10).await },
        ));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            within(Duration::from_secs(30), "least-request clients", t)
                .await
                .unwrap(),
        );
    }
    let counts = tally(&all, &["slow", "b", "c"]);
    assert_eq!(counts.iter().sum::<usize>(), 80);
    // Round robin would give the slow host 26 or 27; the least-loaded choice gives it a
    // request only while it has none in flight.
    assert!(
        counts[0] <= 12,
        "the slow host got {} of 80 requests ({counts:?})",
        counts[0]
    );
    assert!(counts[1] >= 20 && counts[2] >= 20, "{counts:?}");
    assert_eq!(slow.hits(), counts[0]);
}

async fn consistent_hash(lb_type: &str) {
    let os = three_origins().await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": {
            "cluster_name": "c1", "hash_policy": [{ "header": { "key": "x-user" } }] } }]),
        json!([cluster_with(
            "c1",
            lb_type,
            plain_hosts(&os.iter().map(|o| o.addr).collect::<Vec<_>>()),
            json!({})
        )]),
    );
    let m = setup.start().await;
    let mut c = Client::new(m.listen);
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..3 {
        for k in 0..20 {
            let key = format!("user-{k}");
            let r = c.get("/h", &[("x-user", &key)]).await;
            assert_eq!(r.status, 200);
            let o = origin_of(&r);
            match by_key.get(&key) {
                None => {
                    by_key.insert(key, o);
                }
                Some(prev) => assert_eq!(
                    prev, &o,
                    "{lb_type}: key {key} moved from {prev} to {o} in round {round}"
                ),
            }
        }
    }
    let used: BTreeSet<&String> = by_key.values().collect();
    assert!(
        used.len() >= 2,
        "{lb_type}: 20 keys all on one host: {by_key:?}"
    );
}

#[tokio::test]
async fn lb_maglev_keeps_a_key_on_one_host() {
    consistent_hash("LB_MAGLEV").await;
}

#[tokio::test]
async fn lb_ring_hash_keeps_a_key_on_one_host() {
    consistent_hash("LB_RING_HASH").await;
}

#[tokio::test]
async fn lb_subset_by_metadata_with_fallbacks() {
    let os = three_origins().await;
    let version =
        |v: &str| json!({ "metadata": { "filter_metadata": { "mosn.lb": { "version": v } } } });
    let hosts = vec![
        host(os[0].addr, version("v1")),
        host(os[1].addr, version("v1")),
        host(os[2].addr, version("v2")),
    ];
    let mm = |v: &str| json!({ "filter_metadata": { "mosn.lb": { "version": v } } });
    let setup = HttpSetup::new(
        json!([
            { "match": { "prefix": "/v1" }, "route": { "cluster_name": "any", "metadata_match": mm("v1") } },
            { "match": { "prefix": "/v2" }, "route": { "cluster_name": "any", "metadata_match": mm("v2") } },
            { "match": { "prefix": "/v9" }, "route": { "cluster_name": "any", "metadata_match": mm("v9") } },
            { "match": { "prefix": "/strict/v2" }, "route": { "cluster_name": "strict", "metadata_match": mm("v2") } },
            { "match": { "prefix": "/strict/v9" }, "route": { "cluster_name": "strict", "metadata_match": mm("v9") } },
            { "match": { "prefix": "/" }, "route": { "cluster_name": "any" } }
        ]),
        json!([
            cluster_with(
                "any",
                "LB_ROUNDROBIN",
                hosts.clone(),
                json!({ "lb_subset_config": {
                "fall_back_policy": "ANY_ENDPOINT", "subset_selectors": [["version"]] } })
            ),
            cluster_with(
                "strict",
                "LB_ROUNDROBIN",
                hosts,
                json!({ "lb_subset_config": {
                "fall_back_policy": "NO_FALLBACK", "subset_selectors": [["version"]] } })
            )
        ]),
    );
    let m = setup.start().await;
    assert_eq!(
        tally(&picks(m.listen, "/v1", &[], 20).await, &NAMES),
        [10, 10, 0]
    );
    assert_eq!(
        tally(&picks(m.listen, "/v2", &[], 10).await, &NAMES),
        [0, 0, 10]
    );
    // No subset v9: ANY_ENDPOINT, over all three hosts.
    assert_eq!(
        tally(&picks(m.listen, "/v9", &[], 30).await, &NAMES),
        [10, 10, 10]
    );
    // No metadata_match: the fallback too.
    assert_eq!(
        tally(&picks(m.listen, "/none", &[], 30).await, &NAMES),
        [10, 10, 10]
    );
    assert_eq!(
        tally(&picks(m.listen, "/strict/v2", &[], 5).await, &NAMES),
        [0, 0, 5]
    );
    let r = curl(m.listen, "/strict/v9", &[]).await;
    assert_eq!(r.status, 503, "NO_FALLBACK: {}", r.text());
    assert_eq!(r.header("x-origin"), None);
}

// ---------------------------------------------------------------------------------------------
// 4. Active health checks

async fn health_check_ejects_and_restores(check: Value) {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let a_addr = a.addr;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_ROUNDROBIN",
            plain_hosts(&[a.addr, b.addr]),
            json!({ "health_check": check })
        )]),
    );
    let m = setup.start().await;
    let healthy = [("cluster", "c1")];
    let gauge = "mosn_cluster_membership_healthy";
    m.metric_until(gauge, &healthy, LIMIT, "2 healthy", |v| v == 2)
        .await;
    assert_eq!(
        tally(&picks(m.listen, "/", &[], 10).await, &["a", "b"]),
        [5, 5]
    );

    // a goes away: after unhealthy_threshold failed checks, only b gets requests.
    drop(a);
    eventually(LIMIT, "a's port refuses", async || {
        TcpStream::connect(a_addr).await.is_err()
    })
    .await;
    m.metric_until(gauge, &healthy, LIMIT, "1 healthy", |v| v == 1)
        .await;
    assert!(cluster_metric(&m, "mosn_cluster_health_check_failure_total", "c1").await >= 2);
    assert_eq!(tally(&picks(m.listen, "/", &[], 10).await, &["b"]), [10]);

    // a comes back on its port: healthy again and in the rotation.
    let a2 = Origin::start_on(a_addr, "a").await;
    m.metric_until(gauge, &healthy, LIMIT, "2 healthy again", |v| v == 2)
        .await;
    assert_eq!(
        tally(&picks(m.listen, "/", &[], 10).await, &["a", "b"]),
        [5, 5]
    );
    drop(a2);
}

#[tokio::test]
async fn tcp_health_check_ejects_a_dead_host_and_restores_it() {
    health_check_ejects_and_restores(json!({
        "protocol": "tcp", "interval": "200ms", "timeout": "300ms", "initial_delay_seconds": "0s",
        "unhealthy_threshold": 2, "healthy_threshold": 1
    }))
    .await;
}

#[tokio::test]
async fn http_health_check_ejects_a_dead_host_and_restores_it() {
    health_check_ejects_and_restores(json!({
        "protocol": "http", "interval": "200ms", "timeout": "300ms", "initial_delay_seconds": "0s",
        "unhealthy_threshold": 2, "healthy_threshold": 1,
        "check_config": { "path": "/health" }
    }))
    .await;
}

#[tokio::test]
async fn http_health_check_fails_on_a_bad_status() {
    // One host answers every request, the check included, with 503.
    let bad = RawHttp::start("bad", 503, Duration::ZERO).await;
    let good = Origin::start("good").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_ROUNDROBIN",
            plain_hosts(&[bad.addr(), good.addr]),
            json!({ "health_check": {
                "protocol": "http", "interval": "200ms", "timeout": "300ms",
                "initial_delay_seconds": "0s", "unhealthy_threshold": 2, "healthy_threshold": 1,
                "check_config": { "path": "/health", "codes": ["200-299"] }
            } })
        )]),
    );
    let m = setup.start().await;
    m.metric_until(
        "mosn_cluster_membership_healthy",
        &[("cluster", "c1")],
        LIMIT,
        "the 503 host unhealthy",
        |v| v == 1,
    )
    .await;
    assert!(bad.hits() >= 2, "the checks reached the bad host");
    assert!(cluster_metric(&m, "mosn_cluster_health_check_failure_total", "c1").await >= 2);
    assert_eq!(tally(&picks(m.listen, "/", &[], 10).await, &["good"]), [10]);
    assert!(
        good.seen().iter().any(|s| s.uri == "/health"),
        "checks GET the configured path"
    );
    assert!(cluster_metric(&m, "mosn_cluster_health_check_success_total", "c1").await >= 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Outlier detection

#[tokio::test]
async fn outlier_detection_ejects_a_failing_host_then_lets_it_back() {
    let bad = RawHttp::start("bad", 503, Duration::ZERO).await;
    let good = Origin::start("good").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster_with(
            "c1",
            "LB_ROUNDROBIN",
            plain_hosts(&[bad.addr(), good.addr]),
            json!({ "outlier_detection": {
                "consecutive_5xx": 3, "interval": "200ms", "base_ejection_time": "1s"
            } })
        )]),
    );
    let m = setup.start().await;
    let mut c = Client::new(m.listen);
    let mut statuses = Vec::new();
    for _ in 0..16 {
        statuses.push(c.get("/", &[]).await.status);
    }
    // Round robin alternates until the third 503 ejects the bad host; then only 200s.
    let bad_n = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(bad_n, 3, "{statuses:?}");
    assert_eq!(bad.hits(), 3);
    let last_bad = statuses.iter().rposition(|&s| s == 503).unwrap();
    assert!(last_bad <= 5, "{statuses:?}");
    assert!(
        statuses[last_bad + 1..].iter().all(|&s| s == 200),
        "{statuses:?}"
    );
    let metrics = m.metrics().await;
    let c1 = [("cluster", "c1")];
    assert_eq!(
        metrics.value("mosn_cluster_outlier_detection_ejections_total", &c1),
        1
    );
    assert_eq!(
        metrics.value("mosn_cluster_outlier_detection_ejections_active", &c1),
        1
    );
    assert_eq!(metrics.value("mosn_cluster_membership_healthy", &c1), 1);

    // After base_ejection_time (rounded up to a review) the host is back in the rotation.
    m.metric_until(
        "mosn_cluster_outlier_detection_ejections_active",
        &c1,
        Duration::from_secs(5),
        "the ejection to end",
        |v| v == 0,
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.get("/", &[]).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "round robin over both hosts again: {statuses:?}"
    );
    assert_eq!(bad.hits(), 5);
}

// ---------------------------------------------------------------------------------------------
// 6. Circuit breakers

#[tokio::test]
async fn circuit_breakers_refuse_over_max_requests_and_max_pending() {
    let _t = timing().await;
    let o = Origin::start("o1").await;
    let setup = HttpSetup::new(
        json!([
            { "match": { "prefix": "/a/" }, "route": { "cluster_name": "rq", "prefix_rewrite": "/" } },
            { "match": { "prefix": "/b/" }, "route": { "cluster_name": "cx", "prefix_rewrite": "/" } }
        ]),
        json!([
            cluster_with(
                "rq",
                "LB_ROUNDROBIN",
                plain_hosts(&[o.addr]),
                json!({ "circuit_breakers": [{ "max_requests": 2 }] })
            ),
            cluster_with(
                "cx",
                "LB_ROUNDROBIN",
                plain_hosts(&[o.addr]),
                json!({ "circuit_breakers": [{ "max_connections": 1, "max_pending_requests": 1 }] })
            )
        ]),
    );
    let m = setup.start().await;

    async fn burst(addr: SocketAddr, path: &'static str, n: usize) -> Vec<Reply> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            tasks.push(tokio::spawn(async move {
                Client::new(addr).get(path, &[]).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(within(Duration::from_secs(20), "burst", t).await.unwrap());
        }
        out
    }

    // max_requests 2: of 20 requests at once (each held 1 s upstream), 2 pass.
    let replies = burst(m.listen, "/a/delay/1000", 20).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 503).count();
    assert_eq!(
        (ok, refused),
        (2, 18),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 503)
            .all(|r| r.header("x-origin").is_none())
    );
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_overflow_total", "rq").await,
        18
    );
    assert_eq!(o.count(), 2);

    // max_connections 1 + max_pending_requests 1: one request on the connection, one waits
    // for it, the other three are refused.
    let replies = burst(m.listen, "/b/delay/500", 5).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        2,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replies.iter().filter(|r| r.status == 503).count(), 3);
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_pending_overflow_total", "cx").await,
        3
    );
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_cx_total", "cx").await,
        1,
        "the waiting request reused the one connection"
    );
    assert_eq!(m.errors("circuit_open").await, 21);
    // Below the limits again: requests pass.
    assert_eq!(curl(m.listen, "/a/x", &[]).await.status, 200);
    assert_eq!(curl(m.listen, "/b/x", &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 7. Retries

#[tokio::test]
async fn retries_on_5xx_move_to_the_good_host() {
    let bad = RawHttp::start("bad", 503, Duration::ZERO).await;
    let only_bad = RawHttp::start("bad2", 503, Duration::ZERO).await;
    let good = Origin::start("good").await;
    let retry = json!({ "retry_on": "5xx", "num_retries": 2 });
    let setup = HttpSetup::new(
        json!([
            { "match": { "prefix": "/r" }, "route": { "cluster_name": "c1", "retry_policy": retry } },
            { "match": { "prefix": "/none" }, "route": { "cluster_name": "plain" } },
            { "match": { "prefix": "/exhaust" }, "route": { "cluster_name": "onlybad", "retry_policy": retry } }
        ]),
        json!([
            cluster("c1", &[bad.addr(), good.addr]),
            cluster("plain", &[bad.addr(), good.addr]),
            cluster("onlybad", &[only_bad.addr()])
        ]),
    );
    let m = setup.start().await;
    let p = picks(m.listen, "/r", &[], 10).await;
    assert_eq!(
        tally(&p, &["good"]),
        [10],
        "every request answered by the good host"
    );
    let retried = cluster_metric(&m, "mosn_cluster_upstream_rq_retry_total", "c1").await;
    assert!(
        retried > 0,
        "round robin sent some first tries to the bad host"
    );
    assert_eq!(retried as usize, bad.hits(), "each 503 retried once");
    assert_eq!(good.count(), 10);

    // Without a retry policy, round robin hands every other request to the bad host.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(fresh(m.listen, "/none", &[]).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_retry_total", "plain").await,
        0
    );

    // Retries exhausted: the last 503 is forwarded, after 1 + num_retries tries.
    let r = curl(m.listen, "/exhaust", &[]).await;
    assert_eq!((r.status, r.header("x-origin")), (503, Some("bad2")));
    assert_eq!(only_bad.hits(), 3);
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_retry_total", "onlybad").await,
        2
    );
}

#[tokio::test]
async fn retries_on_connect_failure_reach_the_live_host() {
    let good = Origin::start("good").await;
    let dead = dead_addr();
    let setup = HttpSetup::new(
        json!([
            { "match": { "prefix": "/r" }, "route": { "cluster_name": "c1",
              "retry_policy": { "retry_on": "connect-failure", "num_retries": 1 } } },
            { "match": { "prefix": "/none" }, "route": { "cluster_name": "plain" } }
        ]),
        json!([
            cluster("c1", &[dead, good.addr]),
            cluster("plain", &[dead, good.addr])
        ]),
    );
    let m = setup.start().await;
    assert_eq!(
        tally(&picks(m.listen, "/r", &[], 10).await, &["good"]),
        [10]
    );
    let retried = cluster_metric(&m, "mosn_cluster_upstream_rq_retry_total", "c1").await;
    let failed = cluster_metric(&m, "mosn_cluster_upstream_cx_connect_fail_total", "c1").await;
    assert!(retried > 0);
    assert_eq!(retried, failed, "each failed connect retried once");
    // Without a policy the connect failure is the answer.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(fresh(m.listen, "/none", &[]).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        5,
        "{statuses:?}"
    );
}

/// Envoy's `retry_on: 5xx` includes connect failures ("Includes connect-failure and
/// refused-stream") and resets; MOSN retries connection failures too.
#[tokio::test]
async fn retry_on_5xx_covers_connect_failure() {
    let good = Origin::start("good").await;
    let dead = dead_addr();
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1",
            "retry_policy": { "retry_on": "5xx", "num_retries": 1 } } }]),
        json!([cluster("c1", &[dead, good.addr])]),
    );
    let m = setup.start().await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(fresh(m.listen, "/x", &[]).await.status);
    }
    assert_eq!(statuses, [200; 6], "a refused connect is retried under 5xx");
}

// ---------------------------------------------------------------------------------------------
// 8. Stream filters

fn filtered(o: &Origin, filters: Value) -> HttpSetup {
    HttpSetup::simple(&[o.addr]).filters(filters)
}

#[tokio::test]
async fn fault_filter_aborts_matching_requests() {
    let o = Origin::start("o1").await;
    let m = filtered(
        &o,
        json!([{ "type": "fault", "config": {
            "abort_percent": 100, "abort_status": 418,
            "headers": [{ "name": "x-fault", "value": "yes" }]
        } }]),
    )
    .start()
    .await;
    for _ in 0..3 {
        let r = curl(m.listen, "/a", &["-H", "x-fault: yes"]).await;
        assert_eq!(r.status, 418);
        assert_eq!(r.header("x-origin"), None);
    }
    let r = curl(m.listen, "/b", &["-H", "x-fault: no"]).await;
    assert_eq!((r.status, r.text()), (200, "o1 GET /b".to_owned()));
    assert_eq!(o.count(), 1, "aborted requests never reach the origin");

    // Every request, 503.
    let o2 = Origin::start("o2").await;
    let m2 = filtered(
        &o2,
        json!([{ "type": "fault", "config": { "abort_percent": 100, "abort_status": 503 } }]),
    )
    .start()
    .await;
    assert_eq!(curl(m2.listen, "/", &[]).await.status, 503);
    assert_eq!(o2.count(), 0);
}

#[tokio::test]
async fn fault_filter_delays_requests() {
    let _t = timing().await;
    let o = Origin::start("o1").await;
    let m = filtered(
        &o,
        json!([{ "type": "fault", "config": { "delay_percent": 100, "delay_duration": "400ms" } }]),
    )
    .start()
    .await;
    let mut c = Client::new(m.listen);
    for _ in 0..2 {
        let t = Instant::now();
        let r = c.get("/slow", &[]).await;
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took >= Duration::from_millis(400),
            "answered after {took:?}"
        );
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn rbac_filter_denies_a_path_prefix() {
    let o = Origin::start("o1").await;
    let m = filtered(
        &o,
        json!([{ "type": "rbac", "config": { "action": "DENY", "policies": { "no-admin": {
            "principals": [{ "any": true }],
            "permissions": [{ "url_path": { "path": { "prefix": "/admin" } } }]
        } } } }]),
    )
    .start()
    .await;
    for path in ["/admin", "/admin/users?x=1"] {
        assert_eq!(curl(m.listen, path, &[]).await.status, 403, "{path}");
    }
    for path in ["/public", "/adm", "/x/admin"] {
        let r = curl(m.listen, path, &[]).await;
        assert_eq!(
            (r.status, r.header("x-origin")),
            (200, Some("o1")),
            "{path}"
        );
    }
    let uris: Vec<String> = o.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/public", "/adm", "/x/admin"]);
}

#[tokio::test]
async fn local_ratelimit_refuses_past_the_bucket() {
    let o = Origin::start("o1").await;
    let m = filtered(
        &o,
        json!([{ "type": "local_ratelimit", "config": {
            "max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "1h"
        } }]),
    )
    .start()
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(fresh(m.listen, "/rl", &[]).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(curl(m.listen, "/rl", &[]).await.status, 429);
    assert_eq!(o.count(), 3);
}

#[tokio::test]
async fn payload_limit_refuses_large_bodies() {
    let o = Origin::start("o1").await;
    let m = filtered(
        &o,
        json!([{ "type": "payload_limit", "config": { "max_entity_size": 1024 } }]),
    )
    .start()
    .await;
    let small = "s".repeat(100);
    let r = curl(m.listen, "/echo", &["--data-binary", &small]).await;
    assert_eq!((r.status, r.text()), (200, small.clone()));
    let exact = "e".repeat(1024);
    let r = curl(m.listen, "/echo", &["--data-binary", &exact]).await;
    assert_eq!((r.status, r.body.len()), (200, 1024));
    let big = "b".repeat(2000);
    let r = curl(m.listen, "/echo", &["--data-binary", &big]).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-origin"), None);
    // Chunked: no length up front, refused once the body passes the limit.
    let r = curl(
        m.listen,
        "/echo",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &big],
    )
    .await;
    assert_eq!(r.status, 413);
    let r = curl(
        m.listen,
        "/echo",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &small],
    )
    .await;
    assert_eq!((r.status, r.text()), (200, small));
}

#[tokio::test]
async fn ip_access_denies_and_allows_by_address() {
    let o = Origin::start("o1").await;
    let deny = filtered(
        &o,
        json!([{ "type": "ip_access", "config": {
            "ips": [{ "action": "deny", "addrs": ["127.0.0.1/32"] }], "default_action": "allow"
        } }]),
    )
    .start()
    .await;
    assert_eq!(curl(deny.listen, "/", &[]).await.status, 403);
    let allow = filtered(
        &o,
        json!([{ "type": "ip_access", "config": {
            "ips": [{ "action": "allow", "addrs": ["127.0.0.0/8"] }], "default_action": "deny"
        } }]),
    )
    .start()
    .await;
    assert_eq!(curl(allow.listen, "/", &[]).await.status, 200);
    let other = filtered(
        &o,
        json!([{ "type": "ipaccess", "config": {
            "ips": [{ "action": "allow", "addrs": ["10.0.0.0/8"] }], "default_action": "deny"
        } }]),
    )
    .start()
    .await;
    assert_eq!(
        curl(other.listen, "/", &[]).await.status,
        403,
        "not in 10/8"
    );
    // The client address from a header.
    let by_header = filtered(
        &o,
        json!([{ "type": "ip_access", "config": { "header": "x-forwarded-for",
            "ips": [{ "action": "deny", "addrs": ["10.0.0.0/8"] }], "default_action": "allow"
        } }]),
    )
    .start()
    .await;
    let r = curl(
        by_header.listen,
        "/",
        &["-H", "X-Forwarded-For: 10.1.2.3, 192.0.2.1"],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = curl(by_header.listen, "/", &["-H", "X-Forwarded-For: 192.0.2.1"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(curl(by_header.listen, "/", &[]).await.status, 200);
    assert_eq!(o.count(), 3);
}

#[tokio::test]
async fn mirror_filter_copies_to_its_cluster() {
    let main = Origin::start("main").await;
    let shadow = Origin::start("shadow").await;
    let setup = HttpSetup::new(
        json!([{ "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }]),
        json!([cluster("c1", &[main.addr]), cluster("m", &[shadow.addr])]),
    )
    .filters(json!([{ "type": "mirror", "config": { "cluster": "m" } }]));
    let m = setup.start().await;
    for i in 0..3 {
        let r = curl(m.listen, &format!("/f/{i}"), &["-H", "Host: app.local"]).await;
        assert_eq!((r.status, r.header("x-origin")), (200, Some("main")));
    }
    eventually(LIMIT, "3 copies at the mirror", async || {
        shadow.count() == 3
    })
    .await;
    let mut uris: Vec<String> = shadow.seen().into_iter().map(|s| s.uri).collect();
    uris.sort();
    assert_eq!(uris, ["/f/0", "/f/1", "/f/2"]);
    assert!(
        shadow
            .seen()
            .iter()
            .all(|s| s.headers["host"] == "app.local-shadow")
    );
    assert_eq!(main.count(), 3);
    assert_eq!(
        cluster_metric(&m, "mosn_cluster_upstream_rq_mirrored_total", "m").await,
        3
    );
}

// ---------------------------------------------------------------------------------------------
// Connection handling around local replies

/// After a reply the proxy makes itself (no route, direct response, connect failure, a
/// filter's refusal) to a request without a body, the connection should stay usable (or the
/// reply should say `Connection: close`). Each case: one request, its whole response read,
/// then a second request on the same connection.
#[tokio::test]
async fn local_replies_keep_the_connection_alive() {
    let o = Origin::start("o1").await;
    let dead = dead_addr();
    let setup = HttpSetup::new(
        json!([
            { "match": { "path": "/dr" }, "direct_response": { "status": 200, "body": "hi" } },
            { "match": { "path": "/dead" }, "route": { "cluster_name": "dead" } },
            { "match": { "prefix": "/" }, "route": { "cluster_name": "c1" } }
        ]),
        json!([cluster("c1", &[o.addr]), cluster("dead", &[dead])]),
    );
    let mut vhosts = setup.virtual_hosts.clone();
    vhosts[0]["domains"] = json!(["known.local"]);
    let setup = HttpSetup {
        virtual_hosts: vhosts,
        ..setup
    };
    let setup = setup.filters(json!([{ "type": "fault", "config": {
        "abort_percent": 100, "abort_status": 429, "headers": [{ "name": "x-fault", "value": "yes" }]
    } }]));
    let m = setup.start().await;
    let mut failures = Vec::new();
    for (path, host, extra, status) in [
        ("/ok", "known.local", "", 200),
        ("/dr", "known.local", "", 200),
        ("/x", "unknown.local", "", 404),
        ("/dead", "known.local", "", 503),
        ("/f", "known.local", "x-fault: yes\r\n", 429),
    ] {
        let mut s = TcpStream::connect(m.listen).await.unwrap();
        let first = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
        s.write_all(first.as_bytes()).await.unwrap();
        let r1 = read_one(&mut s).await.expect("a first response");
        assert_eq!(r1.status, status, "{path}");
        let announced = r1
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: known.local\r\n\r\n")
            .await
            .unwrap();
        let r2 = read_one(&mut s).await;
        if r2.as_ref().is_none_or(|r| r.status != 200) && !announced {
            failures.push(format!(
                "GET {path} (Host {host}) -> {status} without Connection: close, then GET /ok on the \
                 same connection -> {:?}",
                r2.map(|r| r.status)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Reads one response with a Content-Length body; `None` if the connection closes first.
async fn read_one(s: &mut TcpStream) -> Option<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    within(LIMIT, "one response", async {
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = parse_reply(&buf[..end + 4])?;
                let len: usize = head.header("content-length")?.parse().ok()?;
                if buf.len() >= end + 4 + len {
                    return parse_reply(&buf[..end + 4 + len]);
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}
