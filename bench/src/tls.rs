//! TLS 1.3 load generation for `bench/tls_suite.py` (rustls 0.23, ring provider).
//!
//! Every client and server here speaks only what the suite compares everywhere: TLS 1.3,
//! TLS_AES_128_GCM_SHA256, key exchange on P-256 (so no HelloRetryRequest against servers that
//! allow only P-256), ECDSA P-256 signatures.
//!
//! * `tls-handshakes --target ADDR --duration S --concurrency C [--resume] [--ca FILE] [--sni NAME]`:
//!   C loops of: TCP connect, TLS handshake, one HTTP/1.1 `GET /` (keep-alive; the response must
//!   be a 200 with a `Content-Length` body and the origin's `x-bench-origin` header), close_notify,
//!   close. Without `--resume` no session is ever resumed (every handshake is a full one); with
//!   it each loop keeps its own in-memory session store, so every connection after a loop's first
//!   offers the ticket its previous connection received (reading the response makes rustls take
//!   the NewSessionTicket messages that precede it). Prints JSON {handshakes, rate, resumed, full,
//!   errors, p50_us, p99_us, ...}; latency is connect to response read, per connection.
//! * `tls-idle --target ADDR --conns N`: opens N TLS connections, one request on each, prints one
//!   JSON line once they are all open (or failed), then keeps them open and idle for `--hold`
//!   seconds (the suite reads the proxy's RSS meanwhile and kills it).
//!
//! Without `--ca` the server's certificate and its handshake signature are not checked (the load
//! generator then spends its CPU on the handshake itself; the suite checks every path once with
//! `--ca` first). With `--ca` the chain is verified against that CA for `--sni`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, ServerConfig,
    SignatureScheme,
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::{Stats, connect, join_all, latency_json, merge};

/// One connection's whole exchange may take this long before it counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// ring with only TLS_AES_128_GCM_SHA256 and P-256 (secp256r1).
#[expect(
    deprecated,
    reason = "rustls 0.23.48 deprecates the ring provider for lacking post-quantum key exchange; the workspace builds rustls with ring only, and the suite pins P-256 anyway"
)]
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    p.kx_groups = vec![rustls::crypto::ring::kx_group::SECP256R1];
    Arc::new(p)
}

/// Accepts any certificate and any handshake signature (load generation only).
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}

/// A TLS 1.3 client config offering `alpn`; verifying against `ca` if given; no resumption.
pub fn client_config(ca: Option<&Path>, alpn: &[&str]) -> Result<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut c = match ca {
        Some(p) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(p)
                .with_context(|| format!("reading CA {}", p.display()))?
            {
                roots.add(cert.with_context(|| format!("parsing CA {}", p.display()))?)?;
            }
            if roots.is_empty() {
                bail!("no certificate in {}", p.display());
            }
            b.with_root_certificates(roots).with_no_client_auth()
        }
        None => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    c.resumption = Resumption::disabled();
    Ok(c)
}

/// A TLS 1.3 server config (h2-origin's TLS listener) with `alpn`, from PEM files.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&str]) -> Result<ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading key {}", key.display()))?;
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(c)
}

pub fn server_name(sni: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(sni.to_string()).map_err(|e| anyhow!("bad --sni {sni:?}: {e}"))
}

/// Reads one HTTP/1.1 response (head + Content-Length body); error unless it is a 200 with the
/// origin's header. Returns the body length.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Result<usize, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap_or("");
    if !head.starts_with("http/1.") || status != "200" {
        let line = head.lines().next().unwrap_or("").to_string();
        return Err(format!("status line {line:?}"));
    }
    if !head.contains("\r\nx-bench-origin:") {
        return Err("no x-bench-origin header (did it reach the origin?)".into());
    }
    let clen: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    let mut have = buf.len() - head_end;
    while have < clen {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("closed in the body".into());
        }
        have += n;
    }
    Ok(clen)
}

fn request(sni: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: mosn-bench\r\n\r\n").into_bytes()
}

/// Connect, handshake, one request/response. Ok(the stream, resumed?).
async fn open(
    connector: &TlsConnector,
    target: SocketAddr,
    sni: &ServerName<'static>,
    req: &[u8],
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, bool), (&'static str, String)> {
    let tcp = connect(target)
        .await
        .map_err(|e| ("connect", e.to_string()))?;
    let mut tls = connector
        .connect(sni.clone(), tcp)
        .await
        .map_err(|e| ("handshake", e.to_string()))?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(req)
        .await
        .map_err(|e| ("write", e.to_string()))?;
    tls.flush().await.map_err(|e| ("write", e.to_string()))?;
    read_response(&mut tls).await.map_err(|e| ("response", e))?;
    Ok((tls, resumed))
}

#[derive(Default)]
struct HsStats {
    st: Stats,
    resumed: u64,
    all_ok: u64, // warm-up included (what the proxy's and origin's counters saw)
}

pub struct HsCfg {
    pub target: SocketAddr,
    pub sni: String,
    pub ca: Option<std::path::PathBuf>,
    pub duration: f64,
    pub concurrency: usize,
    pub resume: bool,
    pub warmup: f64,
    pub grace: f64,
}

pub async fn handshakes(c: HsCfg) -> Result<serde_json::Value> {
    let base = client_config(c.ca.as_deref(), &["http/1.1"])?;
    let sni = server_name(&c.sni)?;
    let req = Rc::new(request(&c.sni));
    let stats = Rc::new(RefCell::new(HsStats::default()));
    let start = Instant::now();
    let rec_from = start + Duration::from_secs_f64(c.warmup);
    let deadline = rec_from + Duration::from_secs_f64(c.duration);
    let handles = (0..c.concurrency)
        .map(|_| {
            let mut cfg = base.clone();
            if c.resume {
                // this loop's own store: its next connection resumes its previous one's ticket
                cfg.resumption = Resumption::in_memory_sessions(4);
            }
            let connector = TlsConnector::from(Arc::new(cfg));
            let (sni, req, stats) = (sni.clone(), req.clone(), stats.clone());
            let target = c.target;
            tokio::task::spawn_local(async move {
                hs_loop(connector, target, sni, req, rec_from, deadline, stats).await
            })
        })
        .collect();
    let stuck = join_all(handles, deadline + Duration::from_secs_f64(c.grace)).await;
    let s = stats.borrow();
    let mut out = json!({
        "mode": "tls-handshakes",
        "target": c.target.to_string(),
        "sni": c.sni,
        "verified": c.ca.is_some(),
        "concurrency": c.concurrency,
        "resume": c.resume,
        "duration_s": c.duration,
        "handshakes": s.st.ops,
        "requests": s.st.ops,
        "rate": s.st.ops as f64 / c.duration,
        "resumed": s.resumed,
        "full": s.st.ops - s.resumed,
        "ok_total": s.all_ok,
        "errors": s.st.errors + stuck,
        "stuck": stuck,
        "first_error": s.st.first_error,
    });
    merge(&mut out, latency_json(&s.st.hist));
    Ok(out)
}

async fn hs_loop(
    connector: TlsConnector,
    target: SocketAddr,
    sni: ServerName<'static>,
    req: Rc<Vec<u8>>,
    rec_from: Instant,
    deadline: Instant,
    stats: Rc<RefCell<HsStats>>,
) {
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            return;
        }
        let r = match tokio::time::timeout(OP_TIMEOUT, open(&connector, target, &sni, &req)).await {
            Ok(r) => r,
            Err(_) => Err(("timeout", format!("no response in {OP_TIMEOUT:?}"))),
        };
        match r {
            Ok((mut tls, resumed)) => {
                let ns = t0.elapsed().as_nanos() as u64;
                // close_notify, then close (not timed: the exchange is complete)
                let _ = tokio::time::timeout(Duration::from_millis(200), tls.shutdown()).await;
                drop(tls);
                let mut s = stats.borrow_mut();
                s.all_ok += 1;
                if t0 >= rec_from {
                    s.st.hist.record(ns);
                    s.st.ops += 1;
                    s.resumed += resumed as u64;
                }
            }
            Err((what, e)) => {
                stats.borrow_mut().st.error(what, e);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

pub struct IdleCfg {
    pub target: SocketAddr,
    pub sni: String,
    pub ca: Option<std::path::PathBuf>,
    pub conns: usize,
    pub concurrency: usize,
    pub hold: f64,
}

/// Opens `conns` connections (one request each), prints a JSON line, holds them `hold` s.
pub async fn idle(c: IdleCfg) -> Result<()> {
    let connector = TlsConnector::from(Arc::new(client_config(c.ca.as_deref(), &["http/1.1"])?));
    let sni = server_name(&c.sni)?;
    let req = Rc::new(request(&c.sni));
    let t0 = Instant::now();
    let kept = Rc::new(RefCell::new(Vec::with_capacity(c.conns)));
    let stats = Rc::new(RefCell::new(Stats::default()));
    let todo = Rc::new(std::cell::Cell::new(c.conns));
    let handles = (0..c.concurrency.min(c.conns))
        .map(|_| {
            let (connector, sni, req) = (connector.clone(), sni.clone(), req.clone());
            let (kept, stats, todo, target) = (kept.clone(), stats.clone(), todo.clone(), c.target);
            tokio::task::spawn_local(async move {
                while todo.get() > 0 {
                    todo.set(todo.get() - 1);
                    match tokio::time::timeout(OP_TIMEOUT, open(&connector, target, &sni, &req))
                        .await
                    {
                        Ok(Ok((tls, _))) => kept.borrow_mut().push(tls),
                        Ok(Err((what, e))) => stats.borrow_mut().error(what, e),
                        Err(_) => stats.borrow_mut().error("timeout", "no response in 5 s"),
                    }
                }
            })
        })
        .collect();
    let stuck = join_all(handles, t0 + Duration::from_secs(120)).await;
    let (errors, first_error) = {
        let st = stats.borrow();
        (st.errors + stuck, st.first_error.clone())
    };
    let out = json!({
        "mode": "tls-idle",
        "target": c.target.to_string(),
        "established": kept.borrow().len(),
        "wanted": c.conns,
        "errors": errors,
        "first_error": first_error,
        "open_s": (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "hold_s": c.hold,
    });
    println!("{out}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs_f64(c.hold)).await;
    drop(kept);
    Ok(())
}

/// Whether the stream type is one we can serve HTTP on (TCP or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {}
