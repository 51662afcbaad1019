//! The L4 scenarios, each parameterised by the listener's `fast_path`. `l4.rs` runs them for
//! `userspace` and `auto`, `kernel.rs` for `kernel` (as root). Each starts its own daemon and
//! upstreams, drives real client connections, checks the bytes and the admin metrics, and
//! returns the still-running daemon so a caller can check more.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::data::{Transfer, hex, random_bytes, read_to_end_within, transfer};
use crate::upstream::{dead_addr, echo};
use crate::{
    CLUSTER, FastPath, LISTENER, Mosn, ProxyConfig, Upstream, heavy, raise_nofile, timing, within,
};

/// Size of the bulk transfer each way: 256 MiB, or `MOSN_TEST_BULK_MIB`.
pub fn bulk_size() -> u64 {
    let mib = std::env::var("MOSN_TEST_BULK_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(256);
    mib << 20
}

/// How long any single small step (connect, one echo) may take.
const STEP: Duration = Duration::from_secs(5);

/// Connects to the daemon's listener.
pub async fn connect(m: &Mosn) -> TcpStream {
    within(STEP, "connect to mosn", TcpStream::connect(m.listen))
        .await
        .expect("connect to mosn")
}

/// Writes `msg` and expects it back.
pub async fn echo_round(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write to mosn");
    let mut back = vec![0u8; msg.len()];
    within(STEP, "echo reply", s.read_exact(&mut back))
        .await
        .expect("read the echo");
    assert!(
        back == msg,
        "echo mismatch: sent {} bytes, got different bytes back",
        msg.len()
    );
}

/// A small message of varying length.
pub fn message(i: usize) -> Vec<u8> {
    format!("message {i}|").repeat(1 + i % 9).into_bytes()
}

/// Closes our side and expects the proxy to pass the peer's FIN back: a clean EOF, no data.
pub async fn close_cleanly(mut s: TcpStream) {
    s.shutdown().await.expect("shutdown(Write)");
    let end = read_to_end_within(&mut s, STEP, "close").await;
    assert!(
        end.data.is_empty(),
        "unexpected {} bytes before EOF",
        end.data.len()
    );
    end.result.expect("a clean EOF after both sides closed");
}

/// Per-listener error counters that must all be 0 in a test without failures.
pub async fn assert_no_errors(m: &Mosn) {
    let metrics = m.metrics().await;
    for kind in [
        "upstream_connect",
        "no_healthy_host",
        "downstream_reset",
        "upstream_reset",
        "idle_timeout",
        "splice_setup",
        "other",
    ] {
        let v = metrics.value(
            "mosn_listener_errors_total",
            &[("listener", LISTENER), ("kind", kind)],
        );
        assert_eq!(v, 0, "mosn_listener_errors_total{{kind=\"{kind}\"}}");
    }
}

/// Polls until the kernel splice maps are empty (every spliced pair removed).
pub async fn assert_kernel_maps_empty(m: &Mosn) {
    for name in ["mosn_kernel_sockhash_entries", "mosn_kernel_pair_entries"] {
        m.metric_until(
            name,
            &[],
            Duration::from_secs(5),
            "0 after every connection closed",
            |v| v == 0,
        )
        .await;
    }
}

/// Checks which data path moved the bytes of `conns` finished connections that carried
/// `d2u` bytes downstream -> upstream and `u2d` back, in total.
pub async fn check_data_path(m: &Mosn, fp: FastPath, conns: u64, d2u: u64, u2d: u64) {
    m.wait_idle().await;
    let metrics = m.metrics().await;
    let l = [("listener", LISTENER)];
    let c = [("cluster", CLUSTER)];
    let received = metrics.value("mosn_listener_bytes_received_total", &l);
    let sent = metrics.value("mosn_listener_bytes_sent_total", &l);
    let spliced = metrics.value("mosn_listener_kernel_spliced_total", &l);
    let copied = metrics.value("mosn_listener_userspace_copied_total", &l);
    let kernel = metrics
        .get("mosn_kernel_bytes_downstream_to_upstream_total", &[])
        .map(|_| {
            (
                metrics.value("mosn_kernel_bytes_downstream_to_upstream_total", &[]),
                metrics.value("mosn_kernel_bytes_upstream_to_downstream_total", &[]),
            )
        });
    match fp {
        FastPath::Userspace => {
            assert_eq!(
                (received, sent),
                (d2u, u2d),
                "userspace bytes (received, sent) by the listener"
            );
            assert_eq!(
                metrics.value("mosn_cluster_upstream_bytes_sent_total", &c),
                d2u,
                "cluster bytes sent"
            );
            assert_eq!(
                metrics.value("mosn_cluster_upstream_bytes_received_total", &c),
                u2d,
                "cluster bytes received"
            );
            assert_eq!(
                (copied, spliced),
                (conns, 0),
                "(userspace_copied_total, kernel_spliced_total)"
            );
        }
        FastPath::Kernel => {
            // A direction the kernel diverted during set-up (counted) is copied in userspace;
            // otherwise not a byte is. Lost bytes show in the callers' hash checks.
            let diverted = metrics.value("mosn_kernel_diverted_total", &[]);
            if diverted == 0 {
                assert_eq!(
                    (received, sent),
                    (0, 0),
                    "a kernel listener copies no byte in userspace"
                );
            } else {
                eprintln!("{diverted} direction(s) diverted to userspace during set-up");
            }
            assert_eq!(
                (copied, spliced),
                (0, conns),
                "(userspace_copied_total, kernel_spliced_total)"
            );
            let (kd2u, ku2d) =
                kernel.expect("kernel metrics are exported when the BPF object loaded");
            assert!(
                kd2u + received >= d2u,
                "mosn_kernel_bytes_downstream_to_upstream_total {kd2u} + {received} copied < {d2u} sent"
            );
            assert!(
                ku2d + sent >= u2d,
                "mosn_kernel_bytes_upstream_to_downstream_total {ku2d} + {sent} copied < {u2d} sent"
            );
            assert_kernel_maps_empty(m).await;
        }
        FastPath::Auto => {
            // Every auto connection starts in userspace; some may move to the kernel.
            assert_eq!(copied, conns, "auto connections all start in userspace");
            assert!(spliced <= conns);
            let (kd2u, ku2d) = kernel.unwrap_or((0, 0));
            assert!(
                received <= d2u && sent <= u2d,
                "userspace counted more than was sent"
            );
            assert!(
                received + kd2u >= d2u,
                "bytes downstream->upstream unaccounted for"
            );
            assert!(
                sent + ku2d >= u2d,
                "bytes upstream->downstream unaccounted for"
            );
            if spliced == 0 {
                assert_eq!(
                    (received, sent),
                    (d2u, u2d),
                    "no splice: userspace moved every byte"
                );
            }
            if kernel.is_some() {
                assert_kernel_maps_empty(m).await;
            }
        }
    }
}

/// With `fast_path: kernel`, waits until the daemon has spliced `n` connections in total, so
/// what the test does next (a FIN, say) happens on a spliced connection. (A connection whose
/// FIN arrives before the splice is set up is copied in userspace instead, by design.)
pub async fn wait_spliced(m: &Mosn, fp: FastPath, n: u64) {
    if fp == FastPath::Kernel {
        let l = [("listener", LISTENER)];
        m.metric_until(
            "mosn_listener_kernel_spliced_total",
            &l,
            STEP,
            "the connection spliced",
            |v| v >= n,
        )
        .await;
    }
}

/// Ten echo exchanges on one connection, then a clean close.
pub async fn echo_exchanges(fp: FastPath) -> Mosn {
    let up = Upstream::echo().await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    let mut total = 0u64;
    for i in 0..10 {
        let msg = message(i);
        echo_round(&mut s, &msg).await;
        total += msg.len() as u64;
    }
    close_cleanly(s).await;
    check_data_path(&m, fp, 1, total, total).await;
    let metrics = m.metrics().await;
    assert_eq!(
        metrics.value("mosn_listener_connections_total", &[("listener", LISTENER)]),
        1
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_total", &[("cluster", CLUSTER)]),
        1
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_active", &[("cluster", CLUSTER)]),
        0
    );
    assert_eq!(up.accepted(), 1);
    assert_no_errors(&m).await;
    m
}

/// `bulk_size()` random bytes each way at once on one connection; both SHA-256 checked.
pub async fn bulk_each_way(fp: FastPath) -> Mosn {
    let _load = heavy().await;
    let size = bulk_size();
    let (tx, mut rx) = mpsc::unbounded_channel::<io::Result<Transfer>>();
    let up = Upstream::spawn(move |s, i| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(transfer(s, size, 0x5eed_0000 + i as u64).await);
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let s = connect(&m).await;
    let started = Instant::now();
    let client = within(
        Duration::from_secs(300),
        "bulk transfer",
        transfer(s, size, 0xc11e_0001),
    )
    .await
    .expect("client side of the bulk transfer");
    let elapsed = started.elapsed();
    let server = within(STEP, "upstream result", rx.recv())
        .await
        .expect("upstream reported")
        .expect("upstream side");
    eprintln!(
        "bulk {}: {} MiB each way in {:.2?} ({:.0} MiB/s each way)",
        fp.as_str(),
        size >> 20,
        elapsed,
        (size >> 20) as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(server.received, size, "bytes the upstream received");
    assert_eq!(
        hex(&server.received_hash),
        hex(&client.sent_hash),
        "downstream -> upstream SHA-256"
    );
    assert_eq!(client.received, size, "bytes the client received");
    assert_eq!(
        hex(&client.received_hash),
        hex(&server.sent_hash),
        "upstream -> downstream SHA-256"
    );
    check_data_path(&m, fp, 1, size, size).await;
    assert_no_errors(&m).await;
    m
}

/// The client shuts its write side first and still receives the upstream's reply.
pub async fn half_close_client_first(fp: FastPath) -> Mosn {
    let up = Upstream::spawn(|mut s, _| async move {
        let mut req = Vec::new();
        if s.read_to_end(&mut req).await.is_ok() {
            let mut reply = b"reply to: ".to_vec();
            reply.extend_from_slice(&req);
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    wait_spliced(&m, fp, 1).await;
    let req = random_bytes(10_000, 7);
    s.write_all(&req).await.unwrap();
    s.shutdown().await.expect("shutdown(Write)");
    let end = read_to_end_within(&mut s, STEP, "reply after the client's half-close").await;
    end.result.expect("clean EOF after the reply");
    let mut want = b"reply to: ".to_vec();
    want.extend_from_slice(&req);
    assert!(
        end.data == want,
        "reply after half-close: got {} bytes, want {}",
        end.data.len(),
        want.len()
    );
    check_data_path(&m, fp, 1, req.len() as u64, want.len() as u64).await;
    assert_no_errors(&m).await;
    m
}

const GREETING: &[u8] = b"greeting, then FIN";

/// The upstream shuts its write side first (the client reads EOF) and the client can still
/// send; the upstream receives every byte.
pub async fn half_close_upstream_first(fp: FastPath) -> Mosn {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let go = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&go);
    let up = Upstream::spawn(move |mut s, _| {
        let tx = tx.clone();
        let gate = Arc::clone(&gate);
        async move {
            gate.notified().await;
            let _ = s.write_all(GREETING).await;
            let _ = s.shutdown().await;
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            let _ = tx.send(got);
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    wait_spliced(&m, fp, 1).await;
    go.notify_one();
    let end = read_to_end_within(&mut s, STEP, "upstream's greeting and FIN").await;
    end.result
        .expect("clean EOF from the upstream's half-close");
    assert_eq!(end.data, GREETING);
    // Half-closed: our direction is still open.
    let late = random_bytes(100_000, 9);
    for chunk in late.chunks(10_000) {
        s.write_all(chunk)
            .await
            .expect("write after the upstream's FIN");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.shutdown().await.expect("shutdown(Write)");
    let got = within(STEP, "upstream receives the late bytes", rx.recv())
        .await
        .expect("upstream reported");
    assert!(
        got == late,
        "upstream got {} bytes after its half-close, want {}",
        got.len(),
        late.len()
    );
    drop(s);
    check_data_path(&m, fp, 1, late.len() as u64, GREETING.len() as u64).await;
    assert_no_errors(&m).await;
    m
}

/// `n` connections open at once, each doing an echo exchange while all are open.
pub async fn concurrent(fp: FastPath, n: usize) -> Mosn {
    let _load = heavy().await;
    let limit = raise_nofile(4 * n as u64 + 1024);
    assert!(
        limit >= 2 * n as u64 + 100,
        "RLIMIT_NOFILE {limit} is too low for {n} connections"
    );
    let up = Upstream::echo().await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let started = Instant::now();

    // Phase 1: open all n.
    let mut set = JoinSet::new();
    for i in 0..n {
        let addr = m.listen;
        set.spawn(async move { (i, TcpStream::connect(addr).await) });
    }
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut failures = Vec::new();
    within(Duration::from_secs(60), "open connections", async {
        while let Some(r) = set.join_next().await {
            let (i, s) = r.unwrap();
            match s {
                Ok(s) => streams[i] = Some(s),
                Err(e) => failures.push(format!("connect {i}: {e}")),
            }
        }
    })
    .await;
    assert!(
        failures.is_empty(),
        "{} of {n} connects failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Phase 2: an echo exchange on every connection, all at once.
    let mut set = JoinSet::new();
    for (i, s) in streams.into_iter().enumerate() {
        let mut s = s.unwrap();
        set.spawn(async move {
            let msg = message(i);
            let r = async {
                s.write_all(&msg).await?;
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).await?;
                if back != msg {
                    return Err(io::Error::other("echo mismatch"));
                }
                Ok(())
            }
            .await;
            (i, s, r)
        });
    }
    let mut open = Vec::with_capacity(n);
    within(Duration::from_secs(60), "echo on every connection", async {
        while let Some(r) = set.join_next().await {
            let (i, s, r) = r.unwrap();
            match r {
                Ok(()) => open.push(s),
                Err(e) => failures.push(format!("connection {i}: {e}")),
            }
        }
    })
    .await;
    assert!(
        failures.is_empty(),
        "{} of {n} exchanges failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let l = [("listener", LISTENER)];
    let metrics = m.metrics().await;
    assert_eq!(
        metrics.value("mosn_listener_connections_active", &l),
        n as u64,
        "connections open at once"
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_active", &[("cluster", CLUSTER)]),
        n as u64
    );
    assert_eq!(up.accepted(), n, "upstream connections");

    // Phase 3: close all.
    let mut set = JoinSet::new();
    for s in open {
        set.spawn(close_cleanly(s));
    }
    within(Duration::from_secs(60), "close every connection", async {
        while let Some(r) = set.join_next().await {
            r.expect("clean close");
        }
    })
    .await;
    eprintln!(
        "{} concurrent connections ({}): {:.2?}",
        n,
        fp.as_str(),
        started.elapsed()
    );
    let total: u64 = (0..n).map(|i| message(i).len() as u64).sum();
    check_data_path(&m, fp, n as u64, total, total).await;
    assert_eq!(
        m.listener_metric("mosn_listener_connections_total").await,
        n as u64
    );
    assert_no_errors(&m).await;
    m
}

/// Connects and expects the daemon to close without sending anything (no upstream).
async fn expect_clean_close_without_data(m: &Mosn) {
    let mut s = connect(m).await;
    let end = read_to_end_within(&mut s, STEP, "close of a connection without upstream").await;
    assert!(
        end.data.is_empty(),
        "got {} bytes from a connection with no upstream",
        end.data.len()
    );
    end.result.expect("a clean close (FIN), not a reset");
}

/// Checks the counters of `conns` connections that each failed to connect to any of
/// `attempts` hosts.
async fn check_connect_failures(m: &Mosn, conns: u64, attempts: u64) {
    m.wait_idle().await;
    let metrics = m.metrics().await;
    let l = [("listener", LISTENER)];
    let c = [("cluster", CLUSTER)];
    let err = |kind| {
        metrics.value(
            "mosn_listener_errors_total",
            &[("listener", LISTENER), ("kind", kind)],
        )
    };
    assert_eq!(
        err("upstream_connect"),
        conns,
        "errors_total{{kind=upstream_connect}}"
    );
    assert_eq!(
        metrics.value("mosn_cluster_no_healthy_host_total", &c),
        conns,
        "no_healthy_host_total"
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_connect_fail_total", &c),
        conns * attempts,
        "connect_fail_total"
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_total", &c),
        conns * attempts,
        "upstream_cx_total"
    );
    assert_eq!(metrics.value("mosn_cluster_upstream_cx_active", &c), 0);
    assert_eq!(metrics.value("mosn_listener_connections_total", &l), conns);
    assert_eq!(metrics.value("mosn_listener_bytes_sent_total", &l), 0);
}

/// The only host refuses: the client sees a clean close with no data, counted; the daemon
/// stays up.
pub async fn upstream_refused(fp: FastPath) -> Mosn {
    let mut m = Mosn::start(&ProxyConfig::new(fp, &[dead_addr()])).await;
    for round in 1..=3 {
        expect_clean_close_without_data(&m).await;
        check_connect_failures(&m, round, 1).await;
        m.assert_up().await;
    }
    m
}

/// Three hosts, all refusing, three attempts: each connection tries each host once.
pub async fn all_hosts_down(fp: FastPath) -> Mosn {
    let hosts = [dead_addr(), dead_addr(), dead_addr()];
    let mut m = Mosn::start(&ProxyConfig::new(fp, &hosts).max_connect_attempts(3)).await;
    for round in 1..=3 {
        expect_clean_close_without_data(&m).await;
        check_connect_failures(&m, round, 3).await;
        m.assert_up().await;
    }
    m
}

/// A dead and a live host, two attempts: every connection succeeds (on the live host).
pub async fn retry_next_host(fp: FastPath) -> Mosn {
    let up = Upstream::echo().await;
    let cfg = ProxyConfig::new(fp, &[dead_addr(), up.addr]).max_connect_attempts(2);
    let m = Mosn::start(&cfg).await;
    let n = 10u64;
    for i in 0..n as usize {
        let mut s = connect(&m).await;
        echo_round(&mut s, &message(i)).await;
        close_cleanly(s).await;
    }
    m.wait_idle().await;
    assert_eq!(
        up.accepted() as u64,
        n,
        "every connection reached the live host"
    );
    let metrics = m.metrics().await;
    let c = [("cluster", CLUSTER)];
    // Round robin starts every other connection at the dead host, which is then skipped.
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_connect_fail_total", &c),
        n / 2,
        "failed attempts"
    );
    assert_eq!(
        metrics.value("mosn_cluster_upstream_cx_total", &c),
        n + n / 2,
        "attempts"
    );
    assert_eq!(metrics.value("mosn_cluster_no_healthy_host_total", &c), 0);
    assert_no_errors(&m).await;
    m
}

/// Two live hosts, round robin: sequential connections alternate between them.
pub async fn round_robin(fp: FastPath) -> Mosn {
    let log: Arc<Mutex<Vec<usize>>> = Arc::default();
    let host = |id: usize| {
        let log = Arc::clone(&log);
        Upstream::spawn(move |s, _| {
            log.lock().unwrap().push(id);
            echo(s)
        })
    };
    let (a, b) = (host(0).await, host(1).await);
    let m = Mosn::start(&ProxyConfig::new(fp, &[a.addr, b.addr])).await;
    let n = 10;
    for i in 0..n {
        let mut s = connect(&m).await;
        echo_round(&mut s, &message(i)).await;
        close_cleanly(s).await;
    }
    let order = log.lock().unwrap().clone();
    assert_eq!(
        (a.accepted(), b.accepted()),
        (n / 2, n / 2),
        "connections per host; order {order:?}"
    );
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "round robin must alternate hosts: {order:?}"
    );
    assert_no_errors(&m).await;
    m
}

/// idle_timeout 1s: traffic every 300 ms keeps the connection open; once idle it is closed
/// on both sides within ~1-3 s and counted.
pub async fn idle_timeout(fp: FastPath) -> Mosn {
    let _timing = timing().await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let up = Upstream::spawn(move |s, _| {
        let tx = tx.clone();
        async move {
            echo(s).await;
            let _ = tx.send(Instant::now());
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr]).idle_timeout("1s")).await;
    let mut s = connect(&m).await;
    for i in 0..8 {
        echo_round(&mut s, &message(i)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    echo_round(&mut s, b"last").await;
    let last = Instant::now();
    let end = read_to_end_within(&mut s, Duration::from_secs(6), "idle connection").await;
    let after = last.elapsed();
    assert!(end.data.is_empty(), "unexpected data on an idle connection");
    assert!(
        (Duration::from_millis(900)..=Duration::from_millis(3500)).contains(&after),
        "idle connection closed {after:?} after the last byte; idle_timeout is 1s ({:?})",
        end.result
    );
    let up_closed = within(STEP, "upstream side closed", rx.recv())
        .await
        .expect("upstream closed");
    let up_after = up_closed.saturating_duration_since(last);
    assert!(
        up_after <= Duration::from_millis(3500),
        "upstream side closed {up_after:?} after the last byte"
    );
    let l = [("listener", LISTENER), ("kind", "idle_timeout")];
    m.metric_until(
        "mosn_listener_errors_total",
        &l,
        STEP,
        "1 idle timeout",
        |v| v == 1,
    )
    .await;
    m.wait_idle().await;
    if fp == FastPath::Kernel {
        assert_kernel_maps_empty(&m).await;
    }
    m
}

/// SIGTERM with a live connection: new connects are refused, /ready says 503, the live
/// connection keeps working until it finishes, then the process exits 0 (well within
/// graceful_timeout).
pub async fn graceful_drain(fp: FastPath) {
    let _timing = timing().await;
    let up = Upstream::echo().await;
    let mut m = Mosn::start(&ProxyConfig::new(fp, &[up.addr]).graceful_timeout("5s")).await;
    let mut s = connect(&m).await;
    echo_round(&mut s, b"before SIGTERM").await;
    m.signal(libc::SIGTERM);
    let term = Instant::now();

    let deadline = term + Duration::from_secs(3);
    loop {
        match TcpStream::connect(m.listen).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            // Handshaken in the backlog of the listener being closed, then reset: not
            // accepted; the next probe tells.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect during drain: unexpected error {e}"),
            Ok(probe) => drop(probe),
        }
        assert!(
            Instant::now() < deadline,
            "the listener still accepts 3 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = crate::http_get(m.admin, "/ready")
        .await
        .expect("admin stays up while draining");
    assert_eq!(status, 503, "/ready while draining");

    for i in 0..5 {
        echo_round(&mut s, &message(i)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            m.try_wait().is_none(),
            "mosn exited while a connection was still live"
        );
    }
    close_cleanly(s).await;
    let closed = Instant::now();
    let status = m
        .wait_exit(Duration::from_secs(6))
        .await
        .expect("mosn exits after the last connection ends");
    assert!(status.success(), "exit status after a drain: {status}");
    let after_close = closed.elapsed();
    assert!(
        after_close < Duration::from_millis(1500),
        "exit took {after_close:?} after the last connection closed"
    );
    assert!(
        term.elapsed() < Duration::from_secs(5),
        "exit after {:?}, past graceful_timeout",
        term.elapsed()
    );
}

/// SIGTERM with a connection that never finishes: the process exits 0 once graceful_timeout
/// (2s) has passed, and the connection is closed.
pub async fn graceful_timeout(fp: FastPath) {
    let _timing = timing().await;
    let up = Upstream::echo().await;
    let mut m = Mosn::start(&ProxyConfig::new(fp, &[up.addr]).graceful_timeout("2s")).await;
    let mut s = connect(&m).await;
    echo_round(&mut s, b"stay open").await;
    m.signal(libc::SIGTERM);
    let term = Instant::now();
    let status = m
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("mosn exits after graceful_timeout");
    let took = term.elapsed();
    assert!(
        status.success(),
        "exit status after the drain timeout: {status}"
    );
    assert!(
        (Duration::from_millis(1800)..=Duration::from_millis(4000)).contains(&took),
        "exit {took:?} after SIGTERM; graceful_timeout is 2s"
    );
    let end = read_to_end_within(&mut s, STEP, "connection after the daemon exited").await;
    assert!(end.data.is_empty());
}
