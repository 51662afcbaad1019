//! Socket options and ioctls the proxy needs beyond what std/tokio/socket2 expose.
//!
//! This and `ebpf` are the only modules with `unsafe`; each block says why it is sound.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

/// `SO_COOKIE` (include/uapi/asm-generic/socket.h): the socket's 64-bit cookie, the key the
/// kernel program sees from `bpf_get_socket_cookie`.
const SO_COOKIE: libc::c_int = 57;
/// `SIOCOUTQ` (= TIOCOUTQ): bytes in the send queue not yet acknowledged by the peer.
const SIOCOUTQ: libc::Ioctl = 0x5411;

/// `SO_ORIGINAL_DST` (include/uapi/linux/netfilter_ipv4.h) at `SOL_IP`, and
/// `IP6T_SO_ORIGINAL_DST` (include/uapi/linux/netfilter_ipv6/ip6_tables.h) at `SOL_IPV6`: the
/// same number.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// `TCP_ESTABLISHED` in `tcpi_state`.
pub const TCP_ESTABLISHED: u8 = 1;
/// `TCP_CLOSE` in `tcpi_state`: the connection is gone (reset, or fully closed).
pub const TCP_CLOSE: u8 = 7;

/// The prefix of Linux's `struct tcp_info` (include/uapi/linux/tcp.h) up to
/// `tcpi_bytes_retrans`; the kernel copies min(its size, ours).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpInfo {
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    pub options: u8,
    pub wscale: u8,
    pub flags: u8,
    pub rto: u32,
    pub ato: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub unacked: u32,
    pub sacked: u32,
    pub lost: u32,
    pub retrans: u32,
    pub fackets: u32,
    pub last_data_sent: u32,
    pub last_ack_sent: u32,
    /// Milliseconds since data was last received.
    pub last_data_recv: u32,
    pub last_ack_recv: u32,
    pub pmtu: u32,
    pub rcv_ssthresh: u32,
    pub rtt: u32,
    pub rttvar: u32,
    pub snd_ssthresh: u32,
    pub snd_cwnd: u32,
    pub advmss: u32,
    pub reordering: u32,
    pub rcv_rtt: u32,
    pub rcv_space: u32,
    pub total_retrans: u32,
    pub pacing_rate: u64,
    pub max_pacing_rate: u64,
    /// Payload bytes the peer has acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order (whoever consumed them: the daemon or the verdict).
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub notsent_bytes: u32,
    pub min_rtt: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub delivery_rate: u64,
    pub busy_time: u64,
    pub rwnd_limited: u64,
    pub sndbuf_limited: u64,
    pub delivered: u32,
    pub delivered_ce: u32,
    pub bytes_sent: u64,
    pub bytes_retrans: u64,
}
const _: () = assert!(size_of::<TcpInfo>() == 216);

fn getsockopt<T: Copy>(fd: &impl AsFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable buffer of `len` bytes, zero-initialised, and T is a plain
    // old data type for every caller (u64, c_int, TcpInfo, sockaddr_in, sockaddr_in6), so any
    // prefix the kernel fills is valid.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised POD, partially overwritten by the kernel.
    Ok(unsafe { value.assume_init() })
}

fn setsockopt<T>(fd: &impl AsFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live `T` and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt_int(
    fd: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

/// The socket cookie (`SO_COOKIE`).
pub fn socket_cookie(fd: &impl AsFd) -> io::Result<u64> {
    getsockopt::<u64>(fd, libc::SOL_SOCKET, SO_COOKIE)
}

/// `TCP_INFO`.
pub fn tcp_info(fd: &impl AsFd) -> io::Result<TcpInfo> {
    getsockopt::<TcpInfo>(fd, libc::IPPROTO_TCP, libc::TCP_INFO)
}

/// Bytes written to the socket that the peer has not acknowledged yet (`SIOCOUTQ`).
pub fn unacked_bytes(fd: &impl AsFd) -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), SIOCOUTQ, &mut v) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.max(0) as u64)
}

/// Makes TCP re-evaluate its receive queue and call `sk_data_ready` if data is queued
/// (`tcp_set_rcvlowat` -> `tcp_data_ready`). Used right after a socket enters the SOCKHASH so
/// the verdict program sees bytes that arrived before it was attached.
pub fn kick_data_ready(fd: &impl AsFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1)
}

/// How much data may arrive while a socket's data-ready callback is held: TCP wakes the
/// callback only once this much is queued (or on FIN / memory pressure). Setting it also
/// raises the socket's receive buffer to fit (tcp_set_rcvlowat), so it is kept moderate.
pub const HOLD_RCVLOWAT: libc::c_int = 1 << 20;

/// Holds the socket's `sk_data_ready` callback until [`kick_data_ready`] (see
/// [`HOLD_RCVLOWAT`]).
pub fn hold_data_ready(fd: &impl AsFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, HOLD_RCVLOWAT)
}

/// Bytes readable from the socket (`SIOCINQ`); for a socket in a SOCKHASH this is what the
/// verdict passed to it.
pub fn readable_bytes(fd: &impl AsFd) -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCINQ (FIONREAD) writes one c_int through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::FIONREAD, &mut v) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.max(0) as u64)
}

/// `shutdown(fd, SHUT_WR)` without needing `&mut` on a tokio stream.
pub fn shutdown_write(fd: &impl AsFd) -> io::Result<()> {
    // SAFETY: shutdown on a valid fd.
    let rc = unsafe { libc::shutdown(fd.as_fd().as_raw_fd(), libc::SHUT_WR) };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SO_LINGER` {on, 0}: closing the socket sends a reset and discards what is still queued,
/// which is how a proxy passes an abort on from one side to the other.
pub fn reset_on_close(fd: &impl AsFd) -> io::Result<()> {
    let v = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &v)
}

/// Pending socket error (`SO_ERROR`), cleared by reading it.
pub fn take_error(fd: &impl AsFd) -> io::Result<Option<io::Error>> {
    let e = getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
}

/// Where a connection redirected to this socket's listener was going:
/// `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (a `sockaddr_in`) for IPv4, or
/// `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` (a `sockaddr_in6`) for IPv6. Answered by
/// netfilter's conntrack (iptables REDIRECT/DNAT) or by a cgroup getsockopt program.
/// `ENOENT`: no such connection is known; `ENOPROTOOPT`: nothing answers the option.
pub fn original_dst(fd: &impl AsFd, ipv6: bool) -> io::Result<SocketAddr> {
    if ipv6 {
        let sa = getsockopt::<libc::sockaddr_in6>(fd, libc::SOL_IPV6, SO_ORIGINAL_DST)?;
        if libc::c_int::from(sa.sin6_family) != libc::AF_INET6 {
            return Err(unexpected_family(sa.sin6_family));
        }
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(sa.sin6_addr.s6_addr),
            u16::from_be(sa.sin6_port),
            sa.sin6_flowinfo,
            sa.sin6_scope_id,
        )))
    } else {
        let sa = getsockopt::<libc::sockaddr_in>(fd, libc::SOL_IP, SO_ORIGINAL_DST)?;
        if libc::c_int::from(sa.sin_family) != libc::AF_INET {
            return Err(unexpected_family(sa.sin_family));
        }
        Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
            u16::from_be(sa.sin_port),
        )))
    }
}

fn unexpected_family(family: libc::sa_family_t) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("SO_ORIGINAL_DST returned address family {family}"),
    )
}

/// A TCP socket for an upstream connection to `peer`, not yet connected.
///
/// - `mark`: `SO_MARK` (needs CAP_NET_ADMIN), so the capture programs never capture the
///   proxy's own connections.
/// - `bind`: the local address to bind first. With port 0 the socket also gets
///   `IP_BIND_ADDRESS_NO_PORT`, so the port is chosen at connect time per 4-tuple and many
///   connections can share the source address (a plain bind would reserve a port each).
///   It must be of `peer`'s address family.
pub fn upstream_socket(
    peer: SocketAddr,
    mark: Option<u32>,
    bind: Option<SocketAddr>,
) -> io::Result<tokio::net::TcpSocket> {
    let socket = if peer.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(mark) = mark {
        socket2::SockRef::from(&socket)
            .set_mark(mark)
            .map_err(|e| context(e, format!("set SO_MARK {mark:#x} (needs CAP_NET_ADMIN)")))?;
    }
    if let Some(addr) = bind {
        if addr.port() == 0 {
            setsockopt_int(&socket, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
                .map_err(|e| context(e, "set IP_BIND_ADDRESS_NO_PORT".into()))?;
        }
        socket
            .bind(addr)
            .map_err(|e| context(e, format!("bind source address {addr}")))?;
    }
    Ok(socket)
}

/// `SO_MARK` of a socket.
pub fn mark(fd: &impl AsFd) -> io::Result<u32> {
    socket2::SockRef::from(fd).mark()
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A proxy holds two sockets per connection: lift the open-files soft limit to the hard limit
/// (the usual soft default of 1024 caps it near 500 connections).
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(
                    from = lim.rlim_cur,
                    to = lim.rlim_max,
                    "raised the open-files limit"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::test_util::require_root;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn upstream_socket_without_mark_or_bind() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream_socket(l.local_addr().unwrap(), None, None)
            .unwrap()
            .connect(l.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(
            mark(&up).unwrap(),
            0,
            "no capture: no mark (needs no privilege)"
        );
        assert_eq!(up.local_addr().unwrap().ip(), l.local_addr().unwrap().ip());
    }

    #[tokio::test]
    async fn upstream_socket_sets_mark_and_binds_source() {
        if !require_root("upstream_socket_sets_mark_and_binds_source") {
            return;
        }
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = l.local_addr().unwrap();
        let source: std::net::SocketAddr = "127.0.0.6:0".parse().unwrap();
        let mut conns = Vec::new();
        // Many connections share the source address (IP_BIND_ADDRESS_NO_PORT).
        for _ in 0..3 {
            let socket = upstream_socket(origin, Some(0x4d4f_534e), Some(source)).unwrap();
            assert_eq!(mark(&socket).unwrap(), 0x4d4f_534e, "marked before connect");
            let up = socket.connect(origin).await.unwrap();
            let (_, peer) = l.accept().await.unwrap();
            assert_eq!(mark(&up).unwrap(), 0x4d4f_534e);
            assert_eq!(peer.ip(), source.ip(), "the origin sees the bound source");
            assert_eq!(up.local_addr().unwrap(), peer);
            conns.push(up);
        }
    }

    #[test]
    fn cookie_info_and_outq_on_real_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let c1 = socket_cookie(&c).unwrap();
        let c2 = socket_cookie(&s).unwrap();
        assert_ne!(c1, 0);
        assert_ne!(c1, c2);
        c.write_all(&[7u8; 1000]).unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        let ci = tcp_info(&c).unwrap();
        let si = tcp_info(&s).unwrap();
        assert_eq!(si.bytes_received, 1000);
        // The splice close path relies on these two kernel accounting facts:
        // an actively opened socket's bytes_acked counts its SYN ...
        assert_eq!(ci.bytes_acked + unacked_bytes(&c).unwrap(), 1001);
        // ... and a passively opened one's does not.
        s.write_all(&[1u8; 10]).unwrap();
        let mut b10 = [0u8; 10];
        c.read_exact(&mut b10).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            tcp_info(&s).unwrap().bytes_acked + unacked_bytes(&s).unwrap(),
            10
        );
        assert_eq!(ci.state, TCP_ESTABLISHED);
        // bytes_received counts the FIN as one byte.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0);
        assert_eq!(tcp_info(&s).unwrap().bytes_received, 1001);
        kick_data_ready(&s).unwrap();
        assert!(take_error(&s).unwrap().is_none());
    }
}
