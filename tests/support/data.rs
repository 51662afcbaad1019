//! Payloads: seeded pseudo-random byte streams, their SHA-256, and a both-ways transfer over
//! one TCP connection.

use std::io;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A SHA-256 digest.
pub type Sha = [u8; 32];

/// Bytes per write of a generated stream.
const CHUNK: usize = 256 * 1024;

pub fn sha256(bytes: &[u8]) -> Sha {
    Sha256::digest(bytes).into()
}

pub fn hex(h: &Sha) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` pseudo-random bytes from `seed` (the same stream [`send_random`] writes).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes `len` pseudo-random bytes (from `seed`) to `w`; returns their SHA-256.
pub async fn send_random<W: AsyncWrite + Unpin>(w: &mut W, len: u64, seed: u64) -> io::Result<Sha> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Reads `r` to EOF: (bytes, SHA-256 of them).
pub async fn recv_hashed<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u64, Sha)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// What one end of a [`transfer`] sent and received.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub sent: u64,
    pub sent_hash: Sha,
    pub received: u64,
    pub received_hash: Sha,
}

/// One end of a both-ways stream: writes `send_len` bytes from `seed` and then shuts down its
/// write side, while reading (and hashing) everything the other end sends until EOF. The
/// writer runs on its own task, so both directions and their hashing proceed in parallel.
pub async fn transfer(stream: TcpStream, send_len: u64, seed: u64) -> io::Result<Transfer> {
    transfer_after(stream, Duration::ZERO, send_len, seed).await
}

/// [`transfer`], with the first byte written only after `delay`.
pub async fn transfer_after(
    stream: TcpStream,
    delay: Duration,
    send_len: u64,
    seed: u64,
) -> io::Result<Transfer> {
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let h = send_random(&mut w, send_len, seed).await?;
        w.shutdown().await?;
        Ok::<_, io::Error>((h, w))
    });
    let read = recv_hashed(&mut r).await;
    let written = writer.await.map_err(io::Error::other)?;
    let (received, received_hash) = read?;
    let (sent_hash, w) = written?;
    drop(w.reunite(r));
    Ok(Transfer {
        sent: send_len,
        sent_hash,
        received,
        received_hash,
    })
}

/// How a stream ended when read to the end.
#[derive(Debug)]
pub struct Ending {
    /// Bytes read before the end.
    pub data: Vec<u8>,
    /// `Ok` for a clean EOF; the error (reset, ...) otherwise.
    pub result: io::Result<()>,
}

impl Ending {
    pub fn is_reset(&self) -> bool {
        matches!(&self.result, Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted))
    }
}

/// Reads `s` until EOF or error; panics if neither happens within `limit`.
pub async fn read_to_end_within(s: &mut TcpStream, limit: Duration, what: &str) -> Ending {
    let mut data = Vec::new();
    let read = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(result) => Ending { data, result },
        Err(_) => panic!("{what}: the connection did not end within {limit:?}"),
    }
}
