use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};

use aya::Ebpf;
use aya::maps::{HashMap, MapData, PerCpuArray, SockHash};
use aya::programs::SkSkb;
use mosn_ebpf_common::{
    COUNTER_SLOTS, COUNTERS_NAME, Counter, DIR_DOWNSTREAM_TO_UPSTREAM, DIR_UPSTREAM_TO_DOWNSTREAM,
    PAIRS_NAME, SOCKHASH_NAME, SplicePeer, VERDICT_PROG_NAME,
};

use super::BPF_OBJECT;
use crate::network::sockopt;

/// Why the kernel path is unavailable, or why one connection could not be spliced.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    #[error(
        "the BPF object was not built into this binary (run `cargo xtask build`, which installs the BPF toolchain)"
    )]
    NotBuilt,
    #[error(
        "loading the BPF programs needs root or CAP_BPF+CAP_NET_ADMIN (running as uid {uid}): {source}"
    )]
    NotPermitted {
        uid: u32,
        #[source]
        source: aya::EbpfError,
    },
    #[error("this kernel lacks {0}")]
    KernelLacks(String),
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF object is missing {0}")]
    Missing(&'static str),
    #[error("attaching {VERDICT_PROG_NAME}: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("BPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("socket option: {0}")]
    Socket(#[from] std::io::Error),
    /// Expected for short connections, not an operator problem.
    #[error("a socket has already seen a FIN or is closing")]
    Closing,
}

/// A splice that could not be completed; the connection is to be copied in userspace.
pub struct SpliceRefused {
    /// Boxed: the refusal is the cold path, the guard the hot one.
    pub error: Box<SpliceError>,
    /// Set when the upstream socket had already entered the SOCKHASH: it stays there (its
    /// direction diverted to its own socket) until this guard drops, because removing it
    /// destroys its psock and any bytes the verdict queued on it. Drop it only after the
    /// userspace copy has read both sockets to the end.
    pub kept: Option<SpliceGuard>,
}

/// A socket that has seen a FIN (CLOSE_WAIT) or is closing cannot enter a SOCKHASH.
fn established(fd: &impl AsFd) -> bool {
    sockopt::tcp_info(fd).is_ok_and(|i| i.state == sockopt::TCP_ESTABLISHED)
}

/// The loaded programs and their maps. One per daemon; shared by every listener.
pub struct Splicer {
    maps: Mutex<Maps>,
    counters: PerCpuArray<MapData, u64>,
    /// Keeps the program (and its attachment to the SOCKHASH) alive.
    _ebpf: Ebpf,
}

struct Maps {
    socks: SockHash<MapData, u64>,
    pairs: HashMap<MapData, u64, SplicePeer>,
}

/// Summed per-CPU fast path counters, indexed by [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; COUNTER_SLOTS as usize]);

impl KernelCounters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

impl Splicer {
    /// Loads the embedded object and attaches the stream verdict program.
    pub fn load() -> Result<Splicer, SpliceError> {
        if BPF_OBJECT.is_empty() {
            return Err(SpliceError::NotBuilt);
        }
        super::bump_memlock_rlimit();
        let mut ebpf = Ebpf::load(BPF_OBJECT).map_err(|e| {
            if is_permission_error(&e) {
                // SAFETY: getuid has no preconditions.
                let uid = unsafe { libc::getuid() };
                SpliceError::NotPermitted { uid, source: e }
            } else {
                SpliceError::Load(e)
            }
        })?;
        let socks: SockHash<MapData, u64> = ebpf
            .take_map(SOCKHASH_NAME)
            .ok_or(SpliceError::Missing(SOCKHASH_NAME))?
            .try_into()?;
        let pairs: HashMap<MapData, u64, SplicePeer> = ebpf
            .take_map(PAIRS_NAME)
            .ok_or(SpliceError::Missing(PAIRS_NAME))?
            .try_into()?;
        let counters: PerCpuArray<MapData, u64> = ebpf
            .take_map(COUNTERS_NAME)
            .ok_or(SpliceError::Missing(COUNTERS_NAME))?
            .try_into()?;
        let prog: &mut SkSkb = ebpf
            .program_mut(VERDICT_PROG_NAME)
            .ok_or(SpliceError::Missing(VERDICT_PROG_NAME))?
            .try_into()?;
        prog.load()?;
        prog.attach(socks.fd())?;
        Ok(Splicer {
            maps: Mutex::new(Maps { socks, pairs }),
            counters,
            _ebpf: ebpf,
        })
    }

    /// Pairs `downstream` and `upstream` in the kernel: from now on bytes arriving on either
    /// socket are sent out of the other by the verdict program. Bytes already queued on
    /// either socket are pushed through as well. Returns a guard that unpairs on drop.
    ///
    /// No interleaving of arrivals, FINs and this set-up loses a byte:
    /// - a socket that has already seen a FIN (or is otherwise past ESTABLISHED) is refused
    ///   before anything enters the maps; such a socket could not enter a SOCKHASH anyway;
    /// - while only the first socket is in the SOCKHASH, the verdict cannot redirect to the
    ///   second: it passes the segment to the first socket itself and marks the direction
    ///   diverted (sticky, so nothing overtakes it). The pair becomes one from the program's
    ///   point of view only when both sockets are in;
    /// - if the second insert fails (its peer closed meanwhile), the first socket stays in
    ///   the SOCKHASH, diverted, inside [`SpliceRefused::kept`]: removing it would destroy its psock
    ///   together with any bytes the verdict already queued on it. The caller copies the
    ///   connection in userspace (reads drain the psock queue first) and drops the guard once
    ///   the copy is over.
    pub fn splice(
        self: &Arc<Self>,
        downstream: &impl AsFd,
        upstream: &impl AsFd,
    ) -> Result<SpliceGuard, SpliceRefused> {
        self.splice_with(downstream, upstream, || {})
    }

    /// [`Splicer::splice`] with a hook run between the two SOCKHASH inserts (tests widen the
    /// set-up window with it).
    fn splice_with(
        self: &Arc<Self>,
        downstream: &impl AsFd,
        upstream: &impl AsFd,
        between_inserts: impl FnOnce(),
    ) -> Result<SpliceGuard, SpliceRefused> {
        let refused = |error: SpliceError| SpliceRefused {
            error: Box::new(error),
            kept: None,
        };
        let down_cookie = sockopt::socket_cookie(downstream).map_err(|e| refused(e.into()))?;
        let up_cookie = sockopt::socket_cookie(upstream).map_err(|e| refused(e.into()))?;
        let guard = SpliceGuard {
            splicer: Arc::clone(self),
            down_cookie,
            up_cookie,
        };
        let release = || {
            let _ = sockopt::kick_data_ready(downstream);
            let _ = sockopt::kick_data_ready(upstream);
        };
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        // Hold both sockets' data-ready callbacks (SO_RCVLOWAT) so the verdict does not run
        // while only one of them is in the SOCKHASH: a segment redirected to a peer that is not
        // there yet cannot be delivered. Arrivals wait in the TCP receive queue and are
        // redirected, in order, when the hold is released below. If the hold leaks (a FIN, or
        // memory pressure, still wake the callback), the verdict diverts that direction to the
        // daemon instead of dropping (PEER_DIVERTED).
        let held =
            sockopt::hold_data_ready(downstream).and_then(|()| sockopt::hold_data_ready(upstream));
        if let Err(e) = held {
            release();
            return Err(refused(e.into()));
        }
        if !established(downstream) || !established(upstream) {
            release();
            return Err(refused(SpliceError::Closing));
        }
        // Pairs first, then sockets, so every socket in the SOCKHASH has its pair entry.
        let first = maps
            .insert_pair_entries(down_cookie, up_cookie)
            .and_then(|()| {
                maps.socks
                    .insert(up_cookie, upstream.as_fd().as_raw_fd(), 0)
            });
        // An insert that failed because a socket closed meanwhile (it passed the check above
        // and saw a FIN since) is the expected end of a short connection, not a fault.
        let why = |e: aya::maps::MapError| {
            if established(downstream) && established(upstream) {
                SpliceError::from(e)
            } else {
                SpliceError::Closing
            }
        };
        if let Err(e) = first {
            // Nothing is in the SOCKHASH, so no psock holds any byte: safe to undo.
            maps.remove_pair(down_cookie, up_cookie);
            drop(maps);
            release();
            return Err(refused(why(e)));
        }
        between_inserts();
        let second = maps
            .socks
            .insert(down_cookie, downstream.as_fd().as_raw_fd(), 0);
        drop(maps);
        release();
        match second {
            Ok(()) => Ok(guard),
            Err(e) => Err(SpliceRefused {
                error: Box::new(why(e)),
                kept: Some(guard),
            }),
        }
    }

    /// Fast-path counters summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        let mut out = KernelCounters::default();
        for c in Counter::ALL {
            if let Ok(values) = self.counters.get(&(c as u32), 0) {
                out.0[c as usize] = values.iter().copied().fold(0u64, u64::wrapping_add);
            }
        }
        out
    }

    /// Entries in (SOCKHASH, pair map); both 0 when no connection is spliced.
    pub fn entries(&self) -> (usize, usize) {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        (maps.socks.keys().count(), maps.pairs.keys().count())
    }
}

impl Maps {
    /// Both directions' pair entries: `down -> up` and `up -> down`.
    fn insert_pair_entries(
        &mut self,
        down_cookie: u64,
        up_cookie: u64,
    ) -> Result<(), aya::maps::MapError> {
        let to_up = SplicePeer {
            peer_cookie: up_cookie,
            direction: DIR_DOWNSTREAM_TO_UPSTREAM,
            flags: 0,
        };
        let to_down = SplicePeer {
            peer_cookie: down_cookie,
            direction: DIR_UPSTREAM_TO_DOWNSTREAM,
            flags: 0,
        };
        self.pairs.insert(down_cookie, to_up, 0)?;
        self.pairs.insert(up_cookie, to_down, 0)
    }

    fn remove_pair(&mut self, down_cookie: u64, up_cookie: u64) {
        // Errors here mean "not present" (the kernel drops a closed socket from the SOCKHASH
        // by itself); nothing to do about them.
        let _ = self.socks.remove(&down_cookie);
        let _ = self.socks.remove(&up_cookie);
        let _ = self.pairs.remove(&down_cookie);
        let _ = self.pairs.remove(&up_cookie);
    }
}

/// A spliced connection; removes its map entries when dropped.
pub struct SpliceGuard {
    splicer: Arc<Splicer>,
    down_cookie: u64,
    up_cookie: u64,
}

impl SpliceGuard {
    /// Has the kernel diverted this direction to the daemon (`PEER_DIVERTED`)? `downstream`:
    /// the direction whose segments arrive on the downstream socket.
    pub fn diverted(&self, downstream: bool) -> bool {
        let cookie = if downstream {
            self.down_cookie
        } else {
            self.up_cookie
        };
        let maps = self.splicer.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.pairs
            .get(&cookie, 0)
            .is_ok_and(|p| p.flags & mosn_ebpf_common::PEER_DIVERTED != 0)
    }
}

impl Drop for SpliceGuard {
    fn drop(&mut self) {
        let mut maps = self.splicer.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.remove_pair(self.down_cookie, self.up_cookie);
    }
}

fn is_permission_error(e: &aya::EbpfError) -> bool {
    let text = format!("{e:?}");
    text.contains("EPERM") || text.contains("Operation not permitted") || text.contains("EACCES")
}

#[cfg(test)]
impl Splicer {
    /// The set-up window the hold protects, forced: both pair entries and only `first` in the
    /// SOCKHASH, no hold. Segments arriving on `first` now find no peer. `complete` adds the
    /// second socket.
    pub(crate) fn splice_half_for_test(
        self: &Arc<Self>,
        downstream: &tokio::net::TcpStream,
        upstream: &tokio::net::TcpStream,
    ) -> (SpliceGuard, impl FnOnce() + use<'_>) {
        let down_cookie = sockopt::socket_cookie(downstream).unwrap();
        let up_cookie = sockopt::socket_cookie(upstream).unwrap();
        let mut maps = self.maps.lock().unwrap();
        maps.insert_pair_entries(down_cookie, up_cookie).unwrap();
        maps.socks
            .insert(down_cookie, downstream.as_fd().as_raw_fd(), 0)
            .unwrap();
        drop(maps);
        let up_fd = upstream.as_fd().as_raw_fd();
        let complete = move || {
            self.maps
                .lock()
                .unwrap()
                .socks
                .insert(up_cookie, up_fd, 0)
                .unwrap();
        };
        (
            SpliceGuard {
                splicer: Arc::clone(self),
                down_cookie,
                up_cookie,
            },
            complete,
        )
    }
}

/// Root-only: skips with a reason outside CI, fails in CI.
#[cfg(test)]
pub(crate) fn splicer_or_skip() -> Option<Arc<Splicer>> {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let ci = std::env::var_os("CI").is_some();
    if !root || BPF_OBJECT.is_empty() {
        let why = if root {
            "the BPF object is not built in"
        } else {
            "not root"
        };
        assert!(!ci, "privileged test must run in CI, but {why}");
        eprintln!("SKIP: {why} (run `cargo xtask test` as root)");
        return None;
    }
    Some(Arc::new(
        Splicer::load().expect("load the kernel programs as root"),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (c, s)
    }

    /// How many times the set-up race reproducer runs (`MOSN_SPLICE_RACE_ROUNDS`).
    fn race_rounds() -> usize {
        std::env::var("MOSN_SPLICE_RACE_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000)
    }

    /// Closes with a reset, so 10,000 rounds leave no TIME_WAIT sockets behind.
    fn abort(s: TcpStream) {
        let _ = sockopt::reset_on_close(&s);
    }

    /// The set-up race, made to happen every time: the upstream enters the SOCKHASH, then (in
    /// the hook between the two inserts) the client half-closes and the server writes N bytes
    /// and closes. The FIN leaks the hold, the verdict diverts the N bytes onto the upstream
    /// socket itself, and the downstream insert fails (CLOSE_WAIT cannot enter a SOCKHASH).
    /// The N bytes must still be readable from the upstream socket, then EOF: the fallback
    /// copy depends on it. A prototype removed the upstream here and destroyed its psock
    /// together with the diverted bytes.
    #[test]
    fn a_splice_refused_after_a_divert_keeps_the_diverted_bytes() {
        let Some(splicer) = splicer_or_skip() else {
            return;
        };
        let rounds = race_rounds();
        let mut lost = Vec::new();
        for i in 0..rounds {
            let n = 1 + (i * 7919) % 8192;
            let payload: Vec<u8> = (0..n).map(|k| (k ^ i) as u8).collect();
            let (client, down) = pair();
            let (up, mut server) = pair();
            let before = splicer.counters().get(Counter::DivertedDirections);
            let result = splicer.splice_with(&down, &up, || {
                client.shutdown(std::net::Shutdown::Write).unwrap();
                server.write_all(&payload).unwrap();
                server.shutdown(std::net::Shutdown::Write).unwrap();
                // Deterministic: wait until the verdict has diverted the bytes and the
                // client's FIN has reached the downstream socket.
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                while splicer.counters().get(Counter::DivertedDirections) == before
                    || sockopt::tcp_info(&down).unwrap().state == sockopt::TCP_ESTABLISHED
                {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "round {i}: the verdict never diverted"
                    );
                    std::thread::yield_now();
                }
            });
            let Err(refused) = result else {
                panic!("round {i}: a CLOSE_WAIT socket entered the SOCKHASH");
            };
            assert!(
                matches!(*refused.error, SpliceError::Closing) && refused.kept.is_some(),
                "round {i}: the downstream insert failed (the client closed: not a fault) with \
                 the upstream kept in the SOCKHASH"
            );
            let mut got = Vec::new();
            let read = (&up).read_to_end(&mut got);
            if read.is_err() || got != payload {
                lost.push(format!(
                    "round {i}: {n} B sent, {} B readable ({read:?})",
                    got.len()
                ));
            }
            drop(refused);
            for s in [client, down, up, server] {
                abort(s);
            }
        }
        eprintln!("set-up race reproduced {rounds} times");
        assert!(
            lost.is_empty(),
            "{} of {rounds} rounds lost bytes:\n{}",
            lost.len(),
            lost[..lost.len().min(10)].join("\n")
        );
        assert_eq!(splicer.entries(), (0, 0), "nothing left in the maps");
    }

    /// The set-up window the hold protects, forced: a socket in the SOCKHASH whose peer is not.
    /// Its bytes must be diverted to itself, in order and stickily, never dropped.
    #[test]
    fn a_redirect_to_a_missing_peer_diverts_instead_of_dropping() {
        let Some(splicer) = splicer_or_skip() else {
            return;
        };
        let (mut client, x) = pair();
        let (y, mut server) = pair();
        let (xc, yc) = (
            sockopt::socket_cookie(&x).unwrap(),
            sockopt::socket_cookie(&y).unwrap(),
        );
        {
            let mut maps = splicer.maps.lock().unwrap();
            let peer = SplicePeer {
                peer_cookie: yc,
                direction: DIR_DOWNSTREAM_TO_UPSTREAM,
                flags: 0,
            };
            maps.pairs.insert(xc, peer, 0).unwrap();
            maps.socks.insert(xc, x.as_raw_fd(), 0).unwrap();
        }
        let before = splicer.counters();
        client.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            sockopt::readable_bytes(&x).unwrap(),
            5,
            "diverted bytes are queued on the socket itself"
        );
        let mut got = [0u8; 5];
        (&x).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // The peer arrives; the direction stays diverted so nothing can overtake "hello".
        splicer
            .maps
            .lock()
            .unwrap()
            .socks
            .insert(yc, y.as_raw_fd(), 0)
            .unwrap();
        client.write_all(b"world").unwrap();
        (&x).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world");
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut none = [0u8; 1];
        assert!(
            server.read(&mut none).is_err(),
            "nothing was redirected past the diverted bytes"
        );
        let after = splicer.counters();
        assert_eq!(
            after.get(Counter::DivertedDirections) - before.get(Counter::DivertedDirections),
            1
        );
        assert!(after.get(Counter::Diverted) - before.get(Counter::Diverted) >= 2);
        let flags = splicer
            .maps
            .lock()
            .unwrap()
            .pairs
            .get(&xc, 0)
            .unwrap()
            .flags;
        assert_eq!(
            flags & mosn_ebpf_common::PEER_DIVERTED,
            mosn_ebpf_common::PEER_DIVERTED
        );
        splicer.maps.lock().unwrap().remove_pair(xc, yc);
        assert_eq!(splicer.entries(), (0, 0));
    }
}
