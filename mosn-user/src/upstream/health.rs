//! Active health checks (`health_check`): TCP connect, HTTP GET or an X-Protocol heartbeat
//! per host at an interval, marking a host down after `unhealthy_threshold` failures and up
//! after `healthy_threshold` successes.
//!
//! As in MOSN, hosts start healthy; each host has its own task, which waits
//! `initial_delay`, then checks, waits `interval` (+ a random `0..interval_jitter`) after
//! each check ends, and so on until the stop token is cancelled or the cluster is dropped.
//! A check is one connect (with the cluster's mark and bind source, so a capturing proxy
//! does not capture its own checks) plus, for HTTP, one `GET` with `Connection: close`, or
//! for an X-Protocol (MOSN's Bolt heartbeat check) one heartbeat that must be answered by a
//! successful heartbeat reply with its id, all within `timeout`. Health-check connections
//! are not counted as upstream connections.
//!
//! [`spawn`] also starts the outlier detector's review timer (every `interval`) and attaches
//! the cluster's metrics to the outlier detector and the circuit breakers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::host::{HealthFlag, Host};
use crate::config::HealthCheckConfig;
use crate::config::health::{HealthCheckKind, HttpCheckConfig};
use crate::network::{Conn, sockopt};
use crate::protocol::xprotocol::{Kind, XProtocol};

/// The most response bytes read looking for the status line and headers.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// The largest frame accepted as a heartbeat reply (a reply has no body; this only bounds
/// what a wrong answer can make us buffer).
const MAX_HEARTBEAT_FRAME: usize = 1024 * 1024;

/// Heartbeat ids, unique per check in this process; 32 bits so that every protocol (Bolt's
/// ids are u32) sends the id it is given.
static HEARTBEAT_ID: AtomicU32 = AtomicU32::new(1);

/// Why one check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("health check exchange with {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected status {status} from {addr}")]
    Status { addr: SocketAddr, status: u16 },
    #[error("malformed HTTP response from {addr}: {reason}")]
    Malformed { addr: SocketAddr, reason: String },
    #[error("no heartbeat reply from {addr}: {reason}")]
    Heartbeat { addr: SocketAddr, reason: String },
    /// A config naming an X-Protocol this build does not have (validation refuses those).
    #[error("health check protocol {0:?} is not built in")]
    UnknownProtocol(&'static str),
}

/// Starts the health checks of `cluster` (if it has any), until `stop` is cancelled.
pub fn spawn(cluster: &Arc<Cluster>, stop: CancellationToken) {
    cluster.breakers.attach_metrics(cluster.metrics.clone());
    update_membership(cluster);
    if let Some(o) = &cluster.outlier {
        o.attach_metrics(cluster.metrics.clone());
        tokio::spawn(outlier_reviews(
            Arc::downgrade(cluster),
            o.interval(),
            stop.clone(),
        ));
    }
    let Some(cfg) = cluster.config.health_check.clone() else {
        return;
    };
    let cfg = Arc::new(cfg);
    for host in &cluster.hosts {
        let (weak, probe_cfg) = (Arc::downgrade(cluster), Arc::clone(&cfg));
        let probe = move |addr| -> ProbeFuture {
            let (weak, cfg) = (weak.clone(), Arc::clone(&probe_cfg));
            Box::pin(async move {
                match weak.upgrade() {
                    Some(c) => check(&c, addr, &cfg).await,
                    // The loop notices and ends.
                    None => Ok(()),
                }
            })
        };
        tokio::spawn(host_loop(
            Arc::downgrade(cluster),
            Arc::clone(host),
            Arc::clone(&cfg),
            stop.clone(),
            probe,
        ));
    }
}

/// One check in flight.
type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>;

/// Sets `membership_healthy` to the hosts healthy now.
fn update_membership(cluster: &Cluster) {
    let healthy = cluster.hosts.iter().filter(|h| h.healthy()).count();
    cluster.metrics.membership_healthy.set(healthy as i64);
}

async fn outlier_reviews(cluster: Weak<Cluster>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = tokio::select! {
            _ = stop.cancelled() => return,
            now = ticks.tick() => now,
        };
        let Some(c) = cluster.upgrade() else { return };
        if let Some(o) = &c.outlier {
            o.on_interval(now);
        }
    }
}

/// Consecutive results of one host against the thresholds.
#[derive(Debug, Default)]
struct Tally {
    successes: u32,
    failures: u32,
}

impl Tally {
    /// Records one result (MOSN's `HandleSuccess` / `HandleFailure`); returns the host's
    /// new state when it changed (`true`: healthy again).
    fn record(&mut self, host: &Host, ok: bool, cfg: &HealthCheckConfig) -> Option<bool> {
        let down = host.has_flag(HealthFlag::FailedActiveCheck);
        if ok {
            self.failures = 0;
            if down {
                self.successes += 1;
                if self.successes >= cfg.healthy_threshold {
                    self.successes = 0;
                    host.set_flag(HealthFlag::FailedActiveCheck, false);
                    return Some(true);
                }
            }
        } else {
            self.successes = 0;
            if !down {
                self.failures += 1;
                if self.failures >= cfg.unhealthy_threshold {
                    self.failures = 0;
                    host.set_flag(HealthFlag::FailedActiveCheck, true);
                    return Some(false);
                }
            }
        }
        None
    }
}

/// The checks of one host; `probe` runs one check (tests give a scripted one).
async fn host_loop(
    cluster: Weak<Cluster>,
    host: Arc<Host>,
    cfg: Arc<HealthCheckConfig>,
    stop: CancellationToken,
    probe: impl Fn(SocketAddr) -> ProbeFuture,
) {
    let mut wait = cfg.initial_delay;
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = probe(host.address) => r,
        };
        let Some(c) = cluster.upgrade() else { return };
        match &result {
            Ok(()) => c.metrics.health_check_success.inc(),
            Err(e) => {
                tracing::debug!(cluster = %c.name, host = %host.address, error = %e, "health check failed");
                c.metrics.health_check_failure.inc()
            }
        };
        match tally.record(&host, result.is_ok(), &cfg) {
            Some(true) => tracing::info!(
                cluster = %c.name,
                host = %host.address,
                successes = cfg.healthy_threshold,
                "health check: host is healthy again"
            ),
            Some(false) => tracing::info!(
                cluster = %c.name,
                host = %host.address,
                failures = cfg.unhealthy_threshold,
                error = %result.as_ref().unwrap_err(),
                "health check: host is unhealthy"
            ),
            None => {}
        }
        update_membership(&c);
        drop(c);
        wait = cfg.interval + jitter(cfg.interval_jitter);
    }
}

fn jitter(max: Duration) -> Duration {
    let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rand::random_range(0..nanos))
    }
}

/// One check of `addr`, within the check's timeout.
pub async fn check(
    cluster: &Cluster,
    addr: SocketAddr,
    cfg: &HealthCheckConfig,
) -> Result<(), CheckError> {
    let run = async {
        match &cfg.kind {
            HealthCheckKind::Tcp => connect(cluster, addr).await.map(drop),
            HealthCheckKind::Http(http) => {
                let addr = http.port.map_or(addr, |p| SocketAddr::new(addr.ip(), p));
                let stream = connect(cluster, addr).await?;
                http_check(stream, addr, http).await
            }
            HealthCheckKind::XProtocol(name) => {
                let proto =
                    crate::protocol::x_protocol(name).ok_or(CheckError::UnknownProtocol(name))?;
                let stream = connect(cluster, addr).await?;
                heartbeat_check(stream, addr, proto).await
            }
        }
    };
    tokio::time::timeout(cfg.timeout, run)
        .await
        .unwrap_or(Err(CheckError::Timeout(cfg.timeout)))
}

/// A connection as the cluster's traffic makes it (TLS with its `tls_context`), outside the
/// cluster's connection counters.
async fn connect(cluster: &Cluster, addr: SocketAddr) -> Result<Conn, CheckError> {
    let bind = cluster
        .bind_source
        .filter(|b| b.is_ipv4() == addr.is_ipv4());
    let socket = sockopt::upstream_socket(addr, cluster.mark, bind)
        .map_err(|source| CheckError::Connect { addr, source })?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|source| CheckError::Connect { addr, source })?;
    match &cluster.tls {
        None => Ok(Conn::Tcp(tcp)),
        Some(tls) => tls
            .connect(tcp, None, addr.ip())
            .await
            .map_err(|source| CheckError::Connect { addr, source }),
    }
}

/// Sends the request and reads the status line and headers.
async fn http_check(
    mut stream: Conn,
    addr: SocketAddr,
    cfg: &HttpCheckConfig,
) -> Result<(), CheckError> {
    let io = |source| CheckError::Io { addr, source };
    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mosn-health-check\r\nConnection: close\r\n\r\n",
        cfg.method, cfg.path
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or_default();
                return if cfg.accepts(status) {
                    Ok(())
                } else {
                    Err(CheckError::Status { addr, status })
                };
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => {
                return Err(CheckError::Malformed {
                    addr,
                    reason: e.to_string(),
                });
            }
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(CheckError::Malformed {
                addr,
                reason: format!("no complete response head in {MAX_RESPONSE_HEAD} bytes"),
            });
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(CheckError::Malformed {
                addr,
                reason: "connection closed before a complete response head".into(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one heartbeat and reads the first frame back: it must be a heartbeat reply with the
/// same id and a successful status.
async fn heartbeat_check(
    mut stream: Conn,
    addr: SocketAddr,
    proto: &dyn XProtocol,
) -> Result<(), CheckError> {
    let io = |source| CheckError::Io { addr, source };
    let bad = |reason: String| CheckError::Heartbeat { addr, reason };
    let id = u64::from(HEARTBEAT_ID.fetch_add(1, Ordering::Relaxed));
    stream.write_all(&proto.heartbeat(id)).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(256);
    let frame = loop {
        match proto.decode(&mut buf, MAX_HEARTBEAT_FRAME) {
            Ok(Some(frame)) => break frame,
            Ok(None) => {}
            Err(e) => return Err(bad(format!("undecodable {} bytes: {e}", proto.name()))),
        }
        if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(bad("connection closed before a complete frame".into()));
        }
    };
    if frame.kind != Kind::HeartbeatReply || frame.request_id != id {
        return Err(bad(format!(
            "expected a heartbeat reply to id {id}, got {:?} with id {}",
            frame.kind, frame.request_id
        )));
    }
    if !proto.status_class(frame.status).is_success() {
        return Err(CheckError::Status {
            addr,
            status: frame.status,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU16, Ordering};

    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;
    use crate::config::{self, Format};
    use crate::metrics::{ClusterMetrics, Metrics};
    use crate::upstream::RequestOutcome;

    fn cluster(addr: SocketAddr, extra: Value) -> (Arc<Cluster>, ClusterMetrics) {
        let mut c = json!({ "name": "c", "hosts": [{ "address": addr.to_string() }] });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let v = json!({ "cluster_manager": { "clusters": [c] } });
        let cfg = config::parse(&v.to_string(), Format::Json).unwrap().config;
        let metrics = Metrics::new();
        let c = Arc::new(Cluster::new(&cfg.clusters[0], &metrics, None));
        (c, metrics.cluster("c"))
    }

    /// Polls `cond` every 10 ms for at most 5 s.
    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Accepts and drops connections until aborted (the abort drops the listener).
    fn accept_all(l: TcpListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_and_interval_with_a_scripted_probe() {
        let (c, m) = cluster(
            "127.0.0.1:1".parse().unwrap(),
            json!({ "health_check": { "protocol": "tcp", "interval": "10s",
                "initial_delay": "3s", "unhealthy_threshold": 3, "healthy_threshold": 2 } }),
        );
        let host = Arc::clone(&c.hosts[0]);
        let cfg = Arc::new(c.config.health_check.clone().unwrap());
        //            0     1      2      3     4      5      6 down 7     8      9     10 up 11
        let script = [
            true, false, false, true, false, false, false, true, false, true, true, true,
        ];
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        // (seconds since start, host healthy when the check began)
        let seen = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let probe = {
            let (script, seen, host) = (script.clone(), seen.clone(), host.clone());
            move |_| -> ProbeFuture {
                let secs = (Instant::now() - t0).as_secs_f64();
                seen.lock().unwrap().push((secs, host.healthy()));
                let ok = script.lock().unwrap().pop_front().unwrap_or(true);
                Box::pin(async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(CheckError::Timeout(Duration::from_secs(1)))
                    }
                })
            }
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(host_loop(
            Arc::downgrade(&c),
            host.clone(),
            cfg,
            stop.clone(),
            probe,
        ));
        tokio::time::sleep(Duration::from_secs(3 + 10 * 11) + Duration::from_millis(500)).await;
        stop.cancel();
        task.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let times: Vec<f64> = seen.iter().map(|s| s.0).collect();
        let expected: Vec<f64> = (0..12).map(|i| 3.0 + 10.0 * f64::from(i)).collect();
        assert_eq!(
            times, expected,
            "initial delay, then one check per interval"
        );
        let healthy: Vec<bool> = seen.iter().map(|s| s.1).collect();
        let t = true;
        let f = false;
        assert_eq!(healthy, vec![t, t, t, t, t, t, t, f, f, f, f, t]);
        assert!(host.healthy());
        assert_eq!(
            (m.health_check_success.get(), m.health_check_failure.get()),
            (6, 6)
        );
        assert_eq!(m.membership_healthy.get(), 1);
    }

    #[tokio::test]
    async fn tcp_check_follows_a_listener_that_stops_and_starts() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = accept_all(l);
        let (c, m) = cluster(
            addr,
            json!({ "health_check": { "protocol": "tcp", "interval": "20ms", "timeout": "1s",
                "initial_delay": "0s", "unhealthy_threshold": 2, "healthy_threshold": 2 } }),
        );
        let host = Arc::clone(&c.hosts[0]);
        let stop = CancellationToken::new();
        spawn(&c, stop.clone());
        wait_until("two checks passed", || m.health_check_success.get() >= 2).await;
        assert!(host.healthy());
        assert_eq!(m.membership_healthy.get(), 1);
        assert_eq!(
            m.upstream_cx_total.get(),
            0,
            "checks are not upstream connections"
        );

        server.abort();
        let _ = server.await;
        wait_until("the host is down", || !host.healthy()).await;
        assert!(host.has_flag(HealthFlag::FailedActiveCheck));
        assert!(m.health_check_failure.get() >= 2);
        assert_eq!(m.membership_healthy.get(), 0);

        let server = accept_all(TcpListener::bind(addr).await.unwrap());
        let failures = m.health_check_failure.get();
        wait_until("the host is back", || host.healthy()).await;
        assert_eq!(m.membership_healthy.get(), 1);
        assert!(m.health_check_failure.get() <= failures + 1);
        stop.cancel();
        server.abort();
    }

    /// An HTTP server answering every request with the status in `status`, recording each
    /// request head.
    fn http_server(
        l: TcpListener,
        status: Arc<AtomicU16>,
        heads: Arc<Mutex<Vec<String>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (status, heads) = (status.clone(), heads.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let code = status.load(Ordering::Relaxed);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        })
    }

    #[tokio::test]
    async fn http_check_200_then_503_then_200() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let server = http_server(l, status.clone(), heads.clone());
        let (c, m) = cluster(
            addr,
            json!({ "health_check": { "protocol": "http", "interval": "20ms", "timeout": "1s",
                "initial_delay": "0s", "unhealthy_threshold": 2, "healthy_threshold": 1,
                "check_config": { "path": "/health", "host": "svc.local" } } }),
        );
        let host = Arc::clone(&c.hosts[0]);
        let stop = CancellationToken::new();
        spawn(&c, stop.clone());
        wait_until("a check passed", || m.health_check_success.get() >= 1).await;
        let head = heads.lock().unwrap()[0].clone();
        assert_eq!(
            head,
            "GET /health HTTP/1.1\r\nHost: svc.local\r\nUser-Agent: mosn-health-check\r\n\
             Connection: close\r\n\r\n"
        );
        assert!(host.healthy());

        status.store(503, Ordering::Relaxed);
        wait_until("the host is down", || !host.healthy()).await;
        assert!(m.health_check_failure.get() >= 2);
        status.store(204, Ordering::Relaxed);
        wait_until("the host is back", || host.healthy()).await;
        stop.cancel();
        server.abort();
    }

    #[tokio::test]
    async fn check_reports_why() {
        let cfg = |check_config: Value| {
            let v = json!({ "protocol": "http", "timeout": "200ms", "check_config": check_config });
            let (c, _) = cluster("127.0.0.1:1".parse().unwrap(), json!({ "health_check": v }));
            let hc = c.config.health_check.clone().unwrap();
            (c, hc)
        };
        // Refused.
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = free.local_addr().unwrap();
        drop(free);
        let (c, hc) = cfg(json!({}));
        let e = check(&c, refused, &hc).await.unwrap_err();
        assert!(
            matches!(e, CheckError::Connect { addr, .. } if addr == refused),
            "{e}"
        );

        // Garbage instead of HTTP.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let garbage = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
            }
        });
        let e = check(&c, garbage, &hc).await.unwrap_err();
        assert!(matches!(e, CheckError::Malformed { .. }), "{e}");
        server.abort();

        // No answer: the check's timeout.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let e = check(&c, silent, &hc).await.unwrap_err();
        assert!(
            matches!(e, CheckError::Timeout(t) if t == Duration::from_millis(200)),
            "{e}"
        );
        drop(l);

        // `port` sends the check elsewhere; `codes` decides what passes.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let real = l.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(302));
        let server = http_server(l, status.clone(), Arc::default());
        let (c, hc) = cfg(json!({ "port": real.port(), "codes": ["300-302"] }));
        check(&c, refused, &hc).await.unwrap();
        status.store(200, Ordering::Relaxed);
        let e = check(&c, refused, &hc).await.unwrap_err();
        assert!(
            matches!(e, CheckError::Status { status: 200, addr } if addr == real),
            "{e}"
        );
        server.abort();
    }

    /// How the Bolt test server answers a heartbeat.
    #[derive(Clone, Copy)]
    enum Answer {
        Reply,
        OtherId,
        Status(u16),
        /// An RPC response (cmdcode 2) instead of a heartbeat reply.
        NotHeartbeat,
        Close,
    }

    /// A Bolt server answering each heartbeat (a v1 heartbeat request, 22 bytes) as `answer`
    /// says, recording the requests' ids. The answers are written by hand, byte by byte.
    fn bolt_server(
        l: TcpListener,
        answer: Arc<Mutex<Answer>>,
        ids: Arc<Mutex<Vec<u32>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut req = [0u8; 22];
                if s.read_exact(&mut req).await.is_err() {
                    continue;
                }
                // proto 1 (v1), type 1 (request), cmdcode 0 (heartbeat).
                assert_eq!(req[..4], [1, 1, 0, 0], "{req:?}");
                let id = u32::from_be_bytes([req[5], req[6], req[7], req[8]]);
                ids.lock().unwrap().push(id);
                let answer = *answer.lock().unwrap();
                let (cmd, id, status) = match answer {
                    Answer::Reply => (0u16, id, 0u16),
                    Answer::OtherId => (0, id.wrapping_add(1), 0),
                    Answer::Status(st) => (0, id, st),
                    Answer::NotHeartbeat => (2, id, 0),
                    Answer::Close => continue,
                };
                // proto, type response, cmdcode, ver2, id, codec, status, classLen,
                // headerLen, contentLen.
                let mut resp = vec![1u8, 0];
                resp.extend_from_slice(&cmd.to_be_bytes());
                resp.push(1);
                resp.extend_from_slice(&id.to_be_bytes());
                resp.push(1);
                resp.extend_from_slice(&status.to_be_bytes());
                resp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
                assert_eq!(resp.len(), 20);
                let _ = s.write_all(&resp).await;
            }
        })
    }

    #[tokio::test]
    async fn bolt_heartbeat_check() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Answer::Reply));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let server = bolt_server(l, answer.clone(), ids.clone());
        let (c, m) = cluster(
            addr,
            json!({ "health_check": { "protocol": "bolt", "interval": "20ms",
                "timeout": "500ms", "initial_delay": "0s", "unhealthy_threshold": 2,
                "healthy_threshold": 1 } }),
        );
        let hc = c.config.health_check.clone().unwrap();
        check(&c, addr, &hc).await.unwrap();
        check(&c, addr, &hc).await.unwrap();
        let seen = ids.lock().unwrap().clone();
        assert!(seen.len() == 2 && seen[0] != seen[1], "fresh ids: {seen:?}");

        let fails = |a: Answer| {
            let (c, hc, answer) = (c.clone(), hc.clone(), answer.clone());
            async move {
                *answer.lock().unwrap() = a;
                check(&c, addr, &hc).await.unwrap_err()
            }
        };
        let e = fails(Answer::OtherId).await;
        assert!(
            matches!(&e, CheckError::Heartbeat { reason, .. } if reason.contains("id")),
            "{e}"
        );
        let e = fails(Answer::Status(1)).await;
        assert!(matches!(e, CheckError::Status { status: 1, .. }), "{e}");
        let e = fails(Answer::NotHeartbeat).await;
        assert!(matches!(e, CheckError::Heartbeat { .. }), "{e}");
        let e = fails(Answer::Close).await;
        assert!(
            matches!(&e, CheckError::Heartbeat { reason, .. } if reason.contains("closed")),
            "{e}"
        );

        // Driven by spawn: down on wrong answers, back on good ones.
        *answer.lock().unwrap() = Answer::Reply;
        let host = Arc::clone(&c.hosts[0]);
        let stop = CancellationToken::new();
        spawn(&c, stop.clone());
        wait_until("a check passed", || m.health_check_success.get() >= 1).await;
        assert!(host.healthy());
        *answer.lock().unwrap() = Answer::Status(1);
        wait_until("the host is down", || !host.healthy()).await;
        *answer.lock().unwrap() = Answer::Reply;
        wait_until("the host is back", || host.healthy()).await;
        stop.cancel();
        server.abort();

        // A silent server: the check's timeout.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let e = check(&c, silent, &hc).await.unwrap_err();
        assert!(
            matches!(e, CheckError::Timeout(t) if t == Duration::from_millis(500)),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spawn_drives_outlier_reviews_and_sets_membership() {
        let (c, m) = cluster(
            "127.0.0.1:1".parse().unwrap(),
            json!({ "outlier_detection": { "consecutive_5xx": 1, "interval": "10s",
                "base_ejection_time": "30s" } }),
        );
        let stop = CancellationToken::new();
        spawn(&c, stop.clone());
        assert_eq!(m.membership_healthy.get(), 1);
        let host = Arc::clone(&c.hosts[0]);
        c.report(&host, RequestOutcome::Status(500));
        assert!(!host.healthy());
        assert_eq!(
            (m.outlier_ejections_active.get(), m.membership_healthy.get()),
            (1, 0)
        );
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!host.healthy(), "ejected for 30s");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(host.healthy(), "un-ejected at the review at 30s");
        assert_eq!(
            (
                m.outlier_ejections_active.get(),
                m.membership_healthy.get(),
                m.outlier_ejections_total.get()
            ),
            (0, 1, 1)
        );
        stop.cancel();
    }
}
