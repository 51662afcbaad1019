//! mosn-bench: the load generator and origin server used by `bench/run.py`.
//!
//! * `echo-server --listen ADDR`: echoes every byte back (the origin behind every proxy).
//! * `rr --target ADDR --conns N --duration S --size B`: each connection sends B bytes, waits for
//!   B bytes back, repeats; prints JSON {requests, rate, p50_us, p99_us, errors, ...}.
//! * `connrate --target ADDR --duration S --concurrency C`: C loops of connect, send 1 byte,
//!   read 1 byte, close; prints JSON {connections, rate, errors, ...}.
//! * `bolt-server --listen ADDR` and `bolt-load --target ADDR --connections N --duration S
//!   [--in-flight K] [--size B] [--json]`: SOFARPC Bolt v1 echo origin and load generator
//!   (`bolt.rs`, used by `bench/bolt_suite.py`).
//! * `h2-origin --listen ADDR --body-size N [--tls-listen ADDR --tls-cert F --tls-key F]` and
//!   `h2-check --target ADDR [--grpc] [--tls]`: h2c (and HTTP/1.1 on the same port; optionally
//!   TLS 1.3 on another) origin with gRPC echo, and a one-request checker (`h2origin.rs`, used by
//!   `bench/h2_suite.py` and `bench/tls_suite.py`; the load generator there is h2load).
//! * `tls-handshakes --target ADDR --duration S --concurrency C [--resume]` and `tls-idle
//!   --target ADDR --conns N`: TLS 1.3 connections per second (full or resumed handshakes, one
//!   HTTP/1.1 request each) and N idle TLS connections (`tls.rs`, used by `bench/tls_suite.py`).
//!
//! Everything runs on one thread (a current-thread tokio runtime, one task per connection), so
//! pinning the process with `taskset` pins all of its work. Every load loop is bounded in time
//! (duration + grace) and a watchdog thread ends the process if anything hangs beyond that.

mod bolt;
mod h2origin;
mod hist;
mod tls;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hist::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Parser)]
#[command(
    name = "mosn-bench",
    about = "Proxy benchmark load generators and origins (L4 echo, Bolt, h2c/gRPC)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo every received byte back (origin server for rr and connrate).
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
        /// Exit after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        max_seconds: u64,
    },
    /// Request/response: each connection sends SIZE bytes and waits for SIZE bytes back.
    Rr {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Measured seconds (after warmup).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 1)]
        size: usize,
        /// Seconds run before measuring starts (connections are opened during it).
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Seconds allowed after the deadline for requests in flight; then they count as errors.
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
    },
    /// New connections per second: connect, send SIZE bytes, read SIZE bytes, close.
    Connrate {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        size: usize,
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
    },
    /// Bolt v1 echo server: a SofaResponse (status 0, SIZE content bytes) for every request,
    /// a heartbeat response for every heartbeat.
    BoltServer {
        #[arg(long)]
        listen: SocketAddr,
        /// Content bytes of every response (its first 8 repeat the request content's first 8).
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Serve the server's counters as one JSON line to every connection on this address.
        #[arg(long)]
        stats_listen: Option<SocketAddr>,
        /// Exit after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        max_seconds: u64,
    },
    /// Bolt v1 load: N connections with K requests in flight each, for DURATION seconds.
    BoltLoad {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Requests in flight per connection (the next one is sent when a response arrives).
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        /// Content bytes of every request.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Measured seconds (after warmup).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds run before measuring starts (connections are opened during it).
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Seconds allowed after the deadline for requests in flight; then they count as errors.
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
        /// The timeout field of every request, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: i32,
        /// Send a heartbeat on every new connection first and require its response.
        #[arg(long)]
        heartbeat: bool,
        /// Print the result as JSON (else one human-readable line).
        #[arg(long)]
        json: bool,
    },
    /// h2c origin (HTTP/1.1 too, same port): 200 + BODY_SIZE bytes for every request, the echo
    /// of the message + `grpc-status: 0` trailers for gRPC, counters at GET /origin-status.
    H2Origin {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 100)]
        body_size: usize,
        /// Exit after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        max_seconds: u64,
        /// Also serve TLS 1.3 here (ALPN h2 and http/1.1; needs --tls-cert and --tls-key).
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_listen: Option<SocketAddr>,
        /// PEM certificate chain of the TLS listener.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key of the TLS listener.
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
    /// One h2c request (prior knowledge) to an h2-origin, directly or through a proxy; prints
    /// JSON and exits 1 unless status, origin header, body and (gRPC) trailers are right.
    H2Check {
        #[arg(long)]
        target: SocketAddr,
        /// A unary gRPC call (POST, SIZE-byte message) instead of GET.
        #[arg(long)]
        grpc: bool,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// The body size the origin was started with (checked for GET).
        #[arg(long, default_value_t = 100)]
        body_size: usize,
        /// HTTP/2 over TLS 1.3 (ALPN h2) instead of h2c.
        #[arg(long)]
        tls: bool,
        /// With --tls: verify the server against this CA (PEM); else it is not verified.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// With --tls: the server name sent and verified.
        #[arg(long, default_value = "localhost")]
        sni: String,
    },
    /// TLS 1.3 connections per second: connect, handshake (full, or resumed with --resume), one
    /// HTTP/1.1 GET, close; prints JSON {handshakes, rate, resumed, errors, p50_us, p99_us, ...}.
    TlsHandshakes {
        #[arg(long)]
        target: SocketAddr,
        /// Measured seconds (after warmup).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Each loop resumes its previous connection's session (TLS 1.3 ticket).
        #[arg(long)]
        resume: bool,
        /// Verify the server against this CA (PEM); without it nothing is verified.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = "localhost")]
        sni: String,
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
    },
    /// Open N TLS connections (one HTTP/1.1 GET each), print one JSON line, keep them idle.
    TlsIdle {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        conns: usize,
        /// Connections being opened at a time.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to keep them open after the JSON line.
        #[arg(long, default_value_t = 30.0)]
        hold: f64,
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = "localhost")]
        sni: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building tokio runtime")?;
    match cli.cmd {
        Cmd::EchoServer {
            listen,
            max_seconds,
        } => {
            if max_seconds > 0 {
                watchdog(max_seconds as f64, 0);
            }
            rt.block_on(echo_server(listen))
        }
        Cmd::Rr {
            target,
            conns,
            duration,
            size,
            warmup,
            grace,
        } => {
            check_load_args(duration, warmup, grace, conns, size)?;
            watchdog(warmup + duration + grace + 10.0, 3);
            let local = tokio::task::LocalSet::new();
            let out = local.block_on(&rt, rr(target, conns, duration, size, warmup, grace));
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Cmd::Connrate {
            target,
            duration,
            concurrency,
            size,
            warmup,
            grace,
        } => {
            check_load_args(duration, warmup, grace, concurrency, size)?;
            watchdog(warmup + duration + grace + 10.0, 3);
            let local = tokio::task::LocalSet::new();
            let out = local.block_on(
                &rt,
                connrate(target, concurrency, duration, size, warmup, grace),
            );
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Cmd::BoltServer {
            listen,
            size,
            stats_listen,
            max_seconds,
        } => {
            if size > (16 << 20) - 1024 {
                bail!("--size must be below 16 MiB");
            }
            if max_seconds > 0 {
                watchdog(max_seconds as f64, 0);
            }
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, bolt::server(listen, size, stats_listen))
        }
        Cmd::BoltLoad {
            target,
            connections,
            in_flight,
            size,
            duration,
            warmup,
            grace,
            timeout_ms,
            heartbeat,
            json,
        } => {
            check_load_args(duration, warmup, grace, connections, size)?;
            if in_flight == 0 || in_flight > 4096 {
                bail!("--in-flight must be in [1, 4096]");
            }
            watchdog(warmup + duration + grace + 10.0, 3);
            let local = tokio::task::LocalSet::new();
            let out = local.block_on(
                &rt,
                bolt::load(bolt::LoadCfg {
                    target,
                    connections,
                    in_flight,
                    size,
                    duration,
                    warmup,
                    grace,
                    timeout_ms,
                    heartbeat,
                }),
            );
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("{}", bolt::describe(&out));
            }
            Ok(())
        }
        Cmd::H2Origin {
            listen,
            body_size,
            max_seconds,
            tls_listen,
            tls_cert,
            tls_key,
        } => {
            if body_size > (1 << 20) {
                bail!("--body-size must be at most 1 MiB");
            }
            if max_seconds > 0 {
                watchdog(max_seconds as f64, 0);
            }
            let local = tokio::task::LocalSet::new();
            let tls = match (tls_listen, tls_cert, tls_key) {
                (Some(listen), Some(cert), Some(key)) => {
                    Some(h2origin::TlsListen { listen, cert, key })
                }
                _ => None,
            };
            local.block_on(&rt, h2origin::server(listen, body_size, tls))
        }
        Cmd::H2Check {
            target,
            grpc,
            size,
            body_size,
            tls,
            ca,
            sni,
        } => {
            if size > (1 << 20) || body_size > (1 << 20) {
                bail!("--size and --body-size must be at most 1 MiB");
            }
            watchdog(15.0, 3);
            let tls = tls.then_some(h2origin::CheckTls { ca, sni });
            let local = tokio::task::LocalSet::new();
            let out = local.block_on(&rt, h2origin::check(target, grpc, size, body_size, tls));
            println!("{}", serde_json::to_string(&out)?);
            if out["ok"] != json!(true) {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::TlsHandshakes {
            target,
            duration,
            concurrency,
            resume,
            ca,
            sni,
            warmup,
            grace,
        } => {
            check_load_args(duration, warmup, grace, concurrency, 1)?;
            watchdog(warmup + duration + grace + 10.0, 3);
            let local = tokio::task::LocalSet::new();
            let out = local.block_on(
                &rt,
                tls::handshakes(tls::HsCfg {
                    target,
                    sni,
                    ca,
                    duration,
                    concurrency,
                    resume,
                    warmup,
                    grace,
                }),
            )?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Cmd::TlsIdle {
            target,
            conns,
            concurrency,
            hold,
            ca,
            sni,
        } => {
            check_load_args(hold.max(0.1), 0.0, 0.0, conns, 1)?;
            if concurrency == 0 || concurrency > 1024 {
                bail!("--concurrency must be in [1, 1024]");
            }
            watchdog(hold + 150.0, 3);
            let local = tokio::task::LocalSet::new();
            local.block_on(
                &rt,
                tls::idle(tls::IdleCfg {
                    target,
                    sni,
                    ca,
                    conns,
                    concurrency,
                    hold,
                }),
            )
        }
    }
}

fn check_load_args(
    duration: f64,
    warmup: f64,
    grace: f64,
    conns: usize,
    size: usize,
) -> Result<()> {
    if !(duration > 0.0 && duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if !(0.0..=60.0).contains(&warmup) || !(0.0..=60.0).contains(&grace) {
        bail!("--warmup and --grace must be in [0, 60] seconds");
    }
    if conns == 0 || conns > 10_000 {
        bail!("connection count must be in [1, 10000]");
    }
    if size == 0 || size > (1 << 20) {
        bail!("--size must be in [1, 1 MiB]");
    }
    Ok(())
}

/// Ends the process if it is still running after `secs` (a bound on every run).
fn watchdog(secs: f64, code: i32) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(secs));
        if code != 0 {
            eprintln!("mosn-bench: watchdog: still running after {secs:.1}s, exiting");
        }
        std::process::exit(code);
    });
}

// ---------------------------------------------------------------------------------------------
// echo server

async fn echo_server(listen: SocketAddr) -> Result<()> {
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
    let listener = TcpListener::from_std(sock.into())?;
    eprintln!("mosn-bench echo-server listening on {listen}");
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::task::spawn(echo_conn(s));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// shared client bits

#[derive(Default)]
struct Stats {
    hist: Histogram,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, what: &str, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{what}: {e}"));
        }
    }
}

async fn connect(target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Waits for every task until `hard`; tasks still running then are aborted and counted.
async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>, hard: Instant) -> u64 {
    let mut stuck = 0;
    for mut h in handles {
        if tokio::time::timeout_at(hard, &mut h).await.is_err() {
            h.abort();
            stuck += 1;
        }
    }
    stuck
}

fn latency_json(h: &Histogram) -> serde_json::Value {
    json!({
        "samples": h.count(),
        "p50_us": us(h.quantile(0.50)),
        "p90_us": us(h.quantile(0.90)),
        "p99_us": us(h.quantile(0.99)),
        "p999_us": us(h.quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 10.0).round() / 100.0,
    })
}

// ---------------------------------------------------------------------------------------------
// request/response

async fn rr(
    target: SocketAddr,
    conns: usize,
    duration: f64,
    size: usize,
    warmup: f64,
    grace: f64,
) -> serde_json::Value {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let start = Instant::now();
    let rec_from = start + Duration::from_secs_f64(warmup);
    let deadline = rec_from + Duration::from_secs_f64(duration);
    let handles = (0..conns)
        .map(|_| tokio::task::spawn_local(rr_conn(target, size, rec_from, deadline, stats.clone())))
        .collect();
    let stuck = join_all(handles, deadline + Duration::from_secs_f64(grace)).await;
    let st = stats.borrow();
    let mut out = json!({
        "mode": "rr",
        "target": target.to_string(),
        "conns": conns,
        "size": size,
        "duration_s": duration,
        "requests": st.ops,
        "rate": st.ops as f64 / duration,
        "errors": st.errors + stuck,
        "stuck": stuck,
        "first_error": st.first_error,
    });
    merge(&mut out, latency_json(&st.hist));
    out
}

async fn rr_conn(
    target: SocketAddr,
    size: usize,
    rec_from: Instant,
    deadline: Instant,
    stats: Rc<RefCell<Stats>>,
) {
    let wbuf = vec![b'x'; size];
    let mut rbuf = vec![0u8; size];
    'conn: while Instant::now() < deadline {
        let mut s = match connect(target).await {
            Ok(s) => s,
            Err(e) => {
                stats.borrow_mut().error("connect", e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let t0 = Instant::now();
            if t0 >= deadline {
                break 'conn;
            }
            if let Err(e) = s.write_all(&wbuf).await {
                stats.borrow_mut().error("write", e);
                continue 'conn;
            }
            if let Err(e) = s.read_exact(&mut rbuf).await {
                stats.borrow_mut().error("read", e);
                continue 'conn;
            }
            if t0 >= rec_from {
                let ns = t0.elapsed().as_nanos() as u64;
                let mut st = stats.borrow_mut();
                st.hist.record(ns);
                st.ops += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// new connections per second

async fn connrate(
    target: SocketAddr,
    concurrency: usize,
    duration: f64,
    size: usize,
    warmup: f64,
    grace: f64,
) -> serde_json::Value {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let start = Instant::now();
    let rec_from = start + Duration::from_secs_f64(warmup);
    let deadline = rec_from + Duration::from_secs_f64(duration);
    let handles = (0..concurrency)
        .map(|_| tokio::task::spawn_local(cr_loop(target, size, rec_from, deadline, stats.clone())))
        .collect();
    let stuck = join_all(handles, deadline + Duration::from_secs_f64(grace)).await;
    let st = stats.borrow();
    let mut out = json!({
        "mode": "connrate",
        "target": target.to_string(),
        "concurrency": concurrency,
        "size": size,
        "duration_s": duration,
        "connections": st.ops,
        "requests": st.ops,
        "rate": st.ops as f64 / duration,
        "errors": st.errors + stuck,
        "stuck": stuck,
        "first_error": st.first_error,
    });
    merge(&mut out, latency_json(&st.hist));
    out
}

async fn cr_loop(
    target: SocketAddr,
    size: usize,
    rec_from: Instant,
    deadline: Instant,
    stats: Rc<RefCell<Stats>>,
) {
    let wbuf = vec![b'x'; size];
    let mut rbuf = vec![0u8; size];
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            return;
        }
        let r: Result<(), (&str, std::io::Error)> = async {
            let mut s = connect(target).await.map_err(|e| ("connect", e))?;
            s.write_all(&wbuf).await.map_err(|e| ("write", e))?;
            s.read_exact(&mut rbuf).await.map_err(|e| ("read", e))?;
            Ok(())
            // `s` dropped here: close().
        }
        .await;
        match r {
            Ok(()) => {
                if t0 >= rec_from {
                    let ns = t0.elapsed().as_nanos() as u64;
                    let mut st = stats.borrow_mut();
                    st.hist.record(ns);
                    st.ops += 1;
                }
            }
            Err((what, e)) => {
                stats.borrow_mut().error(what, e);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
}
