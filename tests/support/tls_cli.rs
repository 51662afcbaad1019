//! Real TLS clients for the tests: `openssl s_client` and `curl`, each bounded by a time
//! limit (killed past it), and parsers for what `s_client` prints. Async (tokio::process):
//! the servers they talk to usually run on the test's own runtime.
//!
//! What the parsers read, as OpenSSL 3.0 prints it (checked against 3.0.19 by the
//! self-tests in `tls_selftest.rs`):
//!
//! ```text
//! Server certificate                          <- peer_cert_pem(): the first PEM block
//! -----BEGIN CERTIFICATE-----                    (the leaf; with -showcerts the chain
//! ...                                             follows, leaf first)
//! -----END CERTIFICATE-----
//! New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384   <- protocol(), reused(), cipher()
//! ALPN protocol: h2                           <- alpn() ("No ALPN negotiated": None)
//! Verify return code: 0 (ok)                  <- verify_code()
//! ```
//!
//! The `New,`/`Reused,` line is printed as soon as the handshake is done. `SSL-Session:` with
//! `Protocol  : TLSv1.3` comes only once a TLS 1.3 session ticket has arrived (not at all if
//! stdin ends first), so it is only a fallback; with `-brief`, `Protocol version: TLSv1.3`
//! goes to stderr and is read too. A failed handshake prints `New, (NONE), Cipher is (NONE)`.
//!
//! `s_client` quits when its stdin ends: the input is written, then stdin closed. To read a
//! reply, pass `-ign_eof` (wait for the server to close) or `-quiet` (the same, and stdout
//! then holds only the server's bytes).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

pub const OPENSSL: &str = "/usr/bin/openssl";
pub const CURL: &str = "/usr/bin/curl";
/// How long a client may run before it is killed.
pub const CLI_LIMIT: Duration = Duration::from_secs(10);

/// Whether `/usr/bin/openssl` is there. Missing: in CI (env `CI`) that is a failure;
/// elsewhere the test prints why it is skipped and returns early.
pub fn require_openssl(test: &str) -> bool {
    if Path::new(OPENSSL).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {OPENSSL} is missing in CI");
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: {OPENSSL} is missing (apt-get install openssl)"
    );
    false
}

/// What a command printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `None` if killed.
    pub code: Option<i32>,
    /// Killed for running past its limit.
    pub timed_out: bool,
}

impl Output {
    /// The `New, <protocol>, Cipher is <cipher>` (or `Reused, ...`) line's fields.
    fn session_line(&self) -> Option<(bool, &str, &str)> {
        self.stdout.lines().find_map(|l| {
            let (reused, rest) = if let Some(r) = l.strip_prefix("New, ") {
                (false, r)
            } else {
                (true, l.strip_prefix("Reused, ")?)
            };
            let (proto, cipher) = rest.split_once(", Cipher is ")?;
            Some((reused, proto, cipher))
        })
    }

    /// The negotiated protocol (`TLSv1.3`); `None` if the handshake failed.
    pub fn protocol(&self) -> Option<&str> {
        if let Some((_, proto, _)) = self.session_line() {
            return (proto != "(NONE)").then_some(proto);
        }
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("Protocol version: "))
            .or_else(|| {
                self.stdout
                    .lines()
                    .find_map(|l| l.trim_start().strip_prefix("Protocol  : "))
            })
            .map(str::trim)
    }

    /// `Some(true)` for a resumed session (`Reused`), `Some(false)` for a full handshake
    /// (`New`), `None` if there was no handshake line.
    pub fn reused(&self) -> Option<bool> {
        self.session_line().map(|(r, _, _)| r)
    }

    /// The cipher suite (`TLS_AES_256_GCM_SHA384`).
    pub fn cipher(&self) -> Option<&str> {
        self.session_line()
            .map(|(_, _, c)| c)
            .filter(|c| *c != "(NONE)")
    }

    /// The protocol ALPN chose (`h2`); `None` if none was (`No ALPN negotiated`).
    pub fn alpn(&self) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("ALPN protocol: "))
            .map(str::trim)
    }

    /// `Verify return code: <n> (...)`: 0 when the peer's chain verified.
    pub fn verify_code(&self) -> Option<i32> {
        self.stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("Verify return code: "))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// The first PEM certificate printed (the peer's leaf), BEGIN and END lines included.
    pub fn peer_cert_pem(&self) -> Option<&str> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let start = self.stdout.find(BEGIN)?;
        let end = start + self.stdout[start..].find(END)? + END.len();
        Some(&self.stdout[start..end])
    }
}

/// Runs `program args`, writes `input` to its stdin and closes it, and collects its output;
/// killed after `limit`.
pub async fn run_limited(program: &str, args: &[String], input: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        // Dropped: the program sees EOF.
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = tokio::spawn(async move {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
        (o, e)
    });
    let (code, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status.ok().and_then(|s| s.code()), false),
        Err(_) => {
            let _ = child.kill().await;
            (None, true)
        }
    };
    writer.abort();
    let (o, e) = reader.await.unwrap_or_default();
    Output {
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        code,
        timed_out,
    }
}

/// `openssl s_client -connect <addr> <args>` with `input` on stdin, killed after
/// [`CLI_LIMIT`].
pub async fn openssl_s_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> Output {
    openssl_s_client_for(addr, args, input, CLI_LIMIT).await
}

/// [`openssl_s_client`] with another time limit.
pub async fn openssl_s_client_for(
    addr: SocketAddr,
    args: &[&str],
    input: &[u8],
    limit: Duration,
) -> Output {
    let mut all = vec![
        "s_client".to_owned(),
        "-connect".to_owned(),
        addr.to_string(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_limited(OPENSSL, &all, input, limit).await
}

/// The peer certificate's serial from an `s_client` run, as `openssl x509 -noout -serial`
/// prints it (`4D4F534E00000001`, upper-case hex).
pub async fn peer_serial(out: &Output) -> Option<String> {
    let pem = out.peer_cert_pem()?;
    let args = ["x509", "-noout", "-serial"].map(str::to_owned);
    let x = run_limited(OPENSSL, &args, pem.as_bytes(), CLI_LIMIT).await;
    x.stdout
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .map(|s| s.trim().to_owned())
}

/// `curl -sS --max-time 10 --cacert <cacert> <args> <url>`: the status and the body. A
/// transfer that failed (TLS error, refused, timed out) is status 0 with curl's error
/// message as the body. For a host name other than localhost, pass
/// `--resolve` [`resolve`]`(name, addr)`.
pub async fn curl_https(url: &str, cacert: &Path, args: &[&str]) -> (u16, String) {
    let mut all: Vec<String> = ["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
        .map(str::to_owned)
        .to_vec();
    all.extend(["--cacert".to_owned(), cacert.display().to_string()]);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.push(url.to_owned());
    let out = run_limited(CURL, &all, b"", CLI_LIMIT + Duration::from_secs(2)).await;
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    match code.trim().parse::<u16>() {
        Ok(status) if status != 0 && out.code == Some(0) => (status, body.to_owned()),
        _ => (0, out.stderr.trim().to_owned()),
    }
}

/// The `--resolve` value sending `name` (at `addr`'s port) to `addr`'s IP.
pub fn resolve(name: &str, addr: SocketAddr) -> String {
    format!("{name}:{}:{}", addr.port(), addr.ip())
}
