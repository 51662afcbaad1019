//! Resets through the L4 proxy, for every data path: a reset on one side reaches the other
//! side as a reset (never a FIN that passes a truncated stream off as complete), after every
//! byte the failed side sent before it, and a side whose direction has already finished is
//! still watched.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::data::{Ending, read_to_end_within};
use crate::scenarios::{
    assert_kernel_maps_empty, close_cleanly, connect, echo_round, wait_spliced,
};
use crate::upstream::echo;
use crate::{FastPath, LISTENER, Mosn, ProxyConfig, Upstream, within};

/// How long any single small step may take.
const STEP: Duration = Duration::from_secs(5);

/// Closes `s` with a reset (`SO_LINGER` 0) instead of a FIN.
fn abort(s: TcpStream) {
    s.set_zero_linger().expect("SO_LINGER 0");
    drop(s);
}

/// Waits until `s` reports an error (the peer reset it), without reading or writing.
async fn wait_error(s: &TcpStream, what: &str) {
    within(STEP, what, s.ready(Interest::ERROR))
        .await
        .expect("readiness");
}

/// Waits until the listener has counted exactly one error of `kind`.
async fn one_error(m: &Mosn, kind: &str) {
    m.metric_until(
        "mosn_listener_errors_total",
        &[("listener", LISTENER), ("kind", kind)],
        STEP,
        &format!("1 {kind}"),
        |v| v == 1,
    )
    .await;
}

/// The spliced data path leaves nothing in the kernel maps; every connection took it.
async fn check_kernel(m: &Mosn, fp: FastPath, conns: u64) {
    if fp == FastPath::Kernel {
        assert_eq!(
            m.listener_metric("mosn_listener_kernel_spliced_total")
                .await,
            conns
        );
        assert_kernel_maps_empty(m).await;
    }
}

/// The upstream resets the connection mid-stream: the client gets what the upstream sent,
/// then the reset; `upstream_reset` counts it, and the next connection works.
pub async fn upstream_reset_midstream(fp: FastPath) -> Mosn {
    let up = Upstream::spawn(|mut s, i| async move {
        if i > 0 {
            return echo(s).await;
        }
        let mut b = [0u8; 5];
        if s.read_exact(&mut b).await.is_err() || s.write_all(b"partial").await.is_err() {
            return;
        }
        let mut b = [0u8; 4];
        if s.read_exact(&mut b).await.is_ok() {
            abort(s);
        }
    })
    .await;
    let mut m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    s.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 7];
    within(STEP, "partial reply", s.read_exact(&mut b))
        .await
        .expect("partial reply");
    assert_eq!(&b, b"partial");
    s.write_all(b"more").await.unwrap();
    let end = read_to_end_within(&mut s, STEP, "connection after the upstream's reset").await;
    assert!(
        end.data.is_empty(),
        "unexpected bytes after the upstream reset"
    );
    assert!(
        end.is_reset(),
        "the upstream's reset reaches the client as a reset, got {:?}",
        end.result
    );
    drop(s);
    one_error(&m, "upstream_reset").await;
    m.wait_idle().await;
    assert_eq!(
        m.errors("downstream_reset").await,
        0,
        "the reset came from upstream"
    );
    m.assert_up().await;

    let mut s = connect(&m).await;
    echo_round(&mut s, b"after the reset").await;
    close_cleanly(s).await;
    m.wait_idle().await;
    assert_eq!(up.accepted(), 2);
    assert_eq!(m.errors("upstream_reset").await, 1);
    check_kernel(&m, fp, 2).await;
    m
}

/// The client sends bytes and resets: the upstream gets those bytes, then the reset (not a
/// FIN); `downstream_reset` counts it.
pub async fn downstream_reset_midstream(fp: FastPath) -> Mosn {
    let (tx, rx) = oneshot::channel::<Ending>();
    let tx = std::sync::Mutex::new(Some(tx));
    let up = Upstream::spawn(move |mut s, _| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut b = [0u8; 5];
            if s.read_exact(&mut b).await.is_err() || s.write_all(&b).await.is_err() {
                return;
            }
            let end = read_to_end_within(&mut s, STEP, "upstream after the client's reset").await;
            if let Some(tx) = tx {
                let _ = tx.send(end);
            }
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    echo_round(&mut s, b"hello").await;
    s.write_all(b"last words").await.unwrap();
    // Let them reach the proxy before the reset overtakes nothing but the close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    abort(s);
    let end = within(STEP, "upstream's view", rx).await.expect("reported");
    assert_eq!(
        end.data, b"last words",
        "what the client sent before its reset arrives"
    );
    assert!(
        end.is_reset(),
        "the client's reset reaches the upstream as a reset, got {:?}",
        end.result
    );
    one_error(&m, "downstream_reset").await;
    m.wait_idle().await;
    assert_eq!(m.errors("upstream_reset").await, 0);
    check_kernel(&m, fp, 1).await;
    m
}

/// The client half-closes, the upstream reads to EOF and then waits without writing; the
/// client then resets. The finished direction is still watched: the upstream is reset within
/// a step, not left open until an idle timeout.
pub async fn reset_after_half_close(fp: FastPath) -> Mosn {
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let up = Upstream::spawn(move |mut s, _| {
        let tx = tx.lock().unwrap().take();
        let done = done_tx.lock().unwrap().take();
        async move {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            if let Some(tx) = tx {
                let _ = tx.send(got);
            }
            wait_error(&s, "upstream: the client's reset after its FIN").await;
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    })
    .await;
    let m = Mosn::start(&ProxyConfig::new(fp, &[up.addr])).await;
    let mut s = connect(&m).await;
    // The FIN must find the connection spliced on the kernel path.
    wait_spliced(&m, fp, 1).await;
    s.write_all(b"request").await.unwrap();
    s.shutdown().await.unwrap();
    let got = within(STEP, "upstream read to EOF", rx)
        .await
        .expect("read");
    assert_eq!(got, b"request");
    abort(s);
    within(STEP, "upstream reset", done_rx)
        .await
        .expect("the upstream saw the reset");
    one_error(&m, "downstream_reset").await;
    m.wait_idle().await;
    check_kernel(&m, fp, 1).await;
    m
}
