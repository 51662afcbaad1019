//! Transparent capture: map names, keys and values shared by the capture programs
//! (`mosn-capture`) and the daemon.
//!
//! Addresses are kept the way the kernel hands them to the programs: IPv4 and IPv6 words in
//! network byte order. IPv4 addresses in keys are stored IPv4-mapped (`::ffff:a.b.c.d`) so one
//! key type serves both families and a dual-stack socket's mapped address finds the entry its
//! IPv4 peer wrote. Ports in keys and values are in host byte order.

use core::mem::size_of;

/// HASH: workload cgroup id (`u64`) -> [`WorkloadPolicy`].
pub const POLICY_MAP: &str = "MOSN_CAP_POLICY";
/// LRU_HASH: leaf cgroup id of a connecting process -> [`CgroupSlot`] (its workload), filled by
/// `connect4/6` after walking the cgroup ancestors once.
pub const CGROUP_CACHE_MAP: &str = "MOSN_CAP_CGROUP";
/// LRU_HASH: socket cookie -> [`OrigDst`], written at `connect()` time.
pub const ORIG_BY_COOKIE_MAP: &str = "MOSN_CAP_ORIGCK";
/// LRU_HASH: client socket address ([`AddrKey`]) -> [`OrigDst`], re-keyed by `sock_ops` when the
/// connection is established. The proxy (and `getsockopt(SO_ORIGINAL_DST)`) look it up by the
/// accepted socket's peer address.
pub const ORIG_MAP: &str = "MOSN_CAP_ORIG";
/// SOCKMAP of the proxy's capture listeners, indexed by `LISTENER_*`. A listener that is not
/// in the map (the daemon is gone: closing a socket removes it) means fail open.
pub const LISTENERS_MAP: &str = "MOSN_CAP_LSN";
/// HASH: local port (`u32`, host order; 0 = every port) -> [`InboundRule`], for `sk_lookup`.
pub const INBOUND_MAP: &str = "MOSN_CAP_INB";
/// SOCKHASH of same-host TCP sockets keyed by [`SockKey`], for `sk_msg` redirection.
pub const LOCAL_MAP: &str = "MOSN_CAP_LOCAL";
/// LRU_HASH: [`SockKey`] -> kernel address of that socket (`u64`), written by sock_ops next
/// to the SOCKHASH entry. sk_msg may not take a reference on a SOCKHASH socket (it cannot
/// release it), so it finds the peer's queue state through this address instead.
pub const SOCK_ADDR_MAP: &str = "MOSN_CAP_SKADDR";
/// Read-only global (`u64`) of `mosn_sk_lookup`: the cookie of the network namespace this
/// instance of the program is attached to, set per instance when the daemon loads it
/// (sk_lookup programs have no `bpf_get_netns_cookie`). 0 in the pinned template.
pub const SK_LOOKUP_NETNS_GLOBAL: &str = "MOSN_SK_LOOKUP_NETNS";
/// ARRAY with one [`CaptureGlobals`].
pub const GLOBALS_MAP: &str = "MOSN_CAP_CONF";
/// PERCPU_ARRAY of u64 counters: `slot * STAT_SLOTS + Stat`.
pub const STATS_MAP: &str = "MOSN_CAP_STATS";

pub const CONNECT4_PROG: &str = "mosn_connect4";
pub const CONNECT6_PROG: &str = "mosn_connect6";
/// sock_ops that only re-keys original destinations.
pub const SOCKOPS_PROG: &str = "mosn_sockops";
/// sock_ops that also adds same-host sockets to [`LOCAL_MAP`] (workloads with sk_msg on).
pub const SOCKOPS_MSG_PROG: &str = "mosn_sockops_msg";
pub const GETSOCKOPT_PROG: &str = "mosn_getsockopt";
pub const SK_LOOKUP_PROG: &str = "mosn_sk_lookup";
pub const SK_MSG_PROG: &str = "mosn_sk_msg";

/// Every program of the capture object, for pinning and adoption.
pub const PROGRAMS: [&str; 7] = [
    CONNECT4_PROG,
    CONNECT6_PROG,
    SOCKOPS_PROG,
    SOCKOPS_MSG_PROG,
    GETSOCKOPT_PROG,
    SK_LOOKUP_PROG,
    SK_MSG_PROG,
];
/// Every map of the capture object.
pub const MAPS: [&str; 10] = [
    POLICY_MAP,
    CGROUP_CACHE_MAP,
    ORIG_BY_COOKIE_MAP,
    ORIG_MAP,
    LISTENERS_MAP,
    INBOUND_MAP,
    LOCAL_MAP,
    SOCK_ADDR_MAP,
    GLOBALS_MAP,
    STATS_MAP,
];

/// [`LISTENERS_MAP`] index of the outbound (redirect) listener.
pub const LISTENER_OUTBOUND: u32 = 0;
/// [`LISTENERS_MAP`] index of the inbound (sk_lookup) listener.
pub const LISTENER_INBOUND: u32 = 1;
pub const LISTENER_SLOTS: u32 = 2;

/// Workload slots (counter rows). Slot 0 counts what no workload owns (the proxy's own
/// sockets); workloads get 1..MAX_WORKLOADS.
pub const MAX_WORKLOADS: u32 = 256;
pub const MAX_PORT_RANGES: usize = 16;
pub const MAX_CIDRS: usize = 16;
pub const MAX_IDS: usize = 8;
/// Cgroup levels searched above a connecting process for a workload cgroup.
pub const MAX_CGROUP_DEPTH: u32 = 16;
pub const ORIG_ENTRIES: u32 = 65_536;
pub const LOCAL_SOCKETS: u32 = 65_536;
pub const INBOUND_ENTRIES: u32 = 1024;
pub const CGROUP_CACHE_ENTRIES: u32 = 16_384;

/// An inclusive port range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

/// An IPv4 prefix, both words in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cidr4 {
    pub addr: u32,
    pub mask: u32,
}

/// An IPv6 prefix, words in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cidr6 {
    pub addr: [u32; 4],
    pub mask: [u32; 4],
}

/// [`WorkloadPolicy::flags`]: the include-ports list applies (else every port is included).
pub const POLICY_INCLUDE_PORTS: u32 = 1;
/// [`WorkloadPolicy::flags`]: the IPv4 include list applies (else every IPv4 address).
pub const POLICY_INCLUDE_V4: u32 = 2;
/// [`WorkloadPolicy::flags`]: the IPv6 include list applies (else every IPv6 address).
pub const POLICY_INCLUDE_V6: u32 = 4;
/// [`WorkloadPolicy::flags`]: outbound connects are captured (off for a workload that only
/// wants inbound capture or sk_msg).
pub const POLICY_OUTBOUND: u32 = 8;

/// What one workload's outbound capture takes (value of [`POLICY_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadPolicy {
    pub slot: u32,
    pub flags: u32,
    pub n_include_ports: u32,
    pub n_exclude_ports: u32,
    pub n_include_v4: u32,
    pub n_exclude_v4: u32,
    pub n_include_v6: u32,
    pub n_exclude_v6: u32,
    pub n_uids: u32,
    pub n_gids: u32,
    pub include_ports: [PortRange; MAX_PORT_RANGES],
    pub exclude_ports: [PortRange; MAX_PORT_RANGES],
    pub include_v4: [Cidr4; MAX_CIDRS],
    pub exclude_v4: [Cidr4; MAX_CIDRS],
    pub include_v6: [Cidr6; MAX_CIDRS],
    pub exclude_v6: [Cidr6; MAX_CIDRS],
    pub uids: [u32; MAX_IDS],
    pub gids: [u32; MAX_IDS],
}
const _: () = assert!(size_of::<WorkloadPolicy>() == 1512);

impl WorkloadPolicy {
    pub const EMPTY: WorkloadPolicy = WorkloadPolicy {
        slot: 0,
        flags: 0,
        n_include_ports: 0,
        n_exclude_ports: 0,
        n_include_v4: 0,
        n_exclude_v4: 0,
        n_include_v6: 0,
        n_exclude_v6: 0,
        n_uids: 0,
        n_gids: 0,
        include_ports: [PortRange { lo: 0, hi: 0 }; MAX_PORT_RANGES],
        exclude_ports: [PortRange { lo: 0, hi: 0 }; MAX_PORT_RANGES],
        include_v4: [Cidr4 { addr: 0, mask: 0 }; MAX_CIDRS],
        exclude_v4: [Cidr4 { addr: 0, mask: 0 }; MAX_CIDRS],
        include_v6: [Cidr6 {
            addr: [0; 4],
            mask: [0; 4],
        }; MAX_CIDRS],
        exclude_v6: [Cidr6 {
            addr: [0; 4],
            mask: [0; 4],
        }; MAX_CIDRS],
        uids: [0; MAX_IDS],
        gids: [0; MAX_IDS],
    };
}

/// Value of [`CGROUP_CACHE_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupSlot {
    /// The workload cgroup (key of [`POLICY_MAP`]).
    pub workload_cgroup: u64,
    pub slot: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<CgroupSlot>() == 16);

/// A socket address: IPv6 or IPv4-mapped words in network order, port in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr: [u32; 4],
    pub port: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<AddrKey>() == 24);

/// Where a captured connection was going.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDst {
    /// IPv6 or IPv4-mapped, network order.
    pub addr: [u32; 4],
    /// Host order.
    pub port: u32,
    /// `AF_INET` (2) when the application connected to an IPv4 address (also through a
    /// mapped address on a dual-stack socket), else `AF_INET6` (10).
    pub family: u32,
    /// Workload slot that made the connection.
    pub slot: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<OrigDst>() == 32);

/// Key of [`LOCAL_MAP`]: a socket's own address and its peer's, as that socket sees them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    pub local: [u32; 4],
    pub remote: [u32; 4],
    pub local_port: u32,
    pub remote_port: u32,
}
const _: () = assert!(size_of::<SockKey>() == 40);

/// [`InboundRule::flags`]: connections to this port go to the inbound listener.
pub const INBOUND_CAPTURE: u32 = 1;
/// [`InboundRule::flags`]: never capture this port (beats the wildcard entry).
pub const INBOUND_EXCLUDE: u32 = 2;

/// Value of [`INBOUND_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundRule {
    pub slot: u32,
    pub flags: u32,
}

/// [`CaptureGlobals::flags`]: the kernel field offsets below were found in the running
/// kernel's BTF, so sk_msg may read queue state (without them sk_msg never redirects).
pub const GLOBAL_OFFSETS_OK: u32 = 1;
/// [`CaptureGlobals::flags`]: the outbound listener has an IPv6 redirect address.
pub const GLOBAL_OUTBOUND_V6: u32 = 2;

/// The single value of [`GLOBALS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureGlobals {
    /// Identifies the object the pinned programs came from (first 8 bytes of its SHA-256):
    /// a daemon adopts pinned programs only when it carries the same object.
    pub object_id: u64,
    pub flags: u32,
    /// Outbound listener, IPv4, network order.
    pub outbound_ip4: u32,
    /// Outbound listener, for IPv6 sockets (IPv6, or IPv4-mapped for an IPv4 listener).
    pub outbound_ip6: [u32; 4],
    /// Host order.
    pub outbound_port: u32,
    /// SO_MARK of the proxy's own sockets: never captured.
    pub proxy_mark: u32,
    /// Source the proxy binds when it forwards captured inbound traffic (never recaptured).
    pub passthrough_ip4: u32,
    pub passthrough_ip6: [u32; 4],
    /// sk_msg redirects into a peer only while its unread redirected bytes stay under this.
    pub sk_msg_queue_limit: u32,
    /// Offsets in the running kernel (from BTF) of `sock.sk_user_data`,
    /// `sk_psock.msg_tot_len`, and `tcp_sock.{write_seq,snd_una,rcv_nxt,copied_seq}`.
    pub off_sk_user_data: u32,
    pub off_psock_msg_tot_len: u32,
    pub off_write_seq: u32,
    pub off_snd_una: u32,
    pub off_rcv_nxt: u32,
    pub off_copied_seq: u32,
    /// Network namespace cookie of the outbound listener (`SO_NETNS_COOKIE`): connect4/6
    /// redirect only sockets of that namespace (`bpf_get_netns_cookie`); 0 = unknown (the
    /// kernel lacks `SO_NETNS_COOKIE`), no check.
    pub outbound_netns: u64,
    /// Network namespace cookie of the inbound listener: an sk_lookup instance hands
    /// connections to it only when attached to that namespace ([`SK_LOOKUP_NETNS_GLOBAL`]).
    pub inbound_netns: u64,
}
// 104 bytes, no implicit padding (the 96-byte layout before the netns cookies had 4 bytes of
// tail padding). A different size also keeps a daemon from adopting pins of the old layout:
// the globals map no longer matches this type.
const _: () = assert!(size_of::<CaptureGlobals>() == 104);

/// Per-workload counters: the column of a row in [`STATS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Outbound connects redirected to the proxy.
    Captured = 0,
    /// Outbound connects left alone by the selection (port, CIDR, uid/gid).
    Excluded = 1,
    /// Connects (or inbound connections) that went direct because the proxy's listener is
    /// gone (the daemon is stopped or dead).
    FailOpen = 2,
    /// Inbound connections steered to the proxy by sk_lookup.
    InboundCaptured = 3,
    /// Bytes moved by sk_msg straight into the peer socket's receive queue.
    SkMsgBytes = 4,
    /// sendmsg calls redirected by sk_msg.
    SkMsgRedirects = 5,
    /// sendmsg calls sent through TCP because the peer already had `sk_msg_queue_limit`
    /// unread bytes (backpressure).
    SkMsgThrottled = 6,
    /// sendmsg calls sent through TCP because earlier bytes were still in TCP (order).
    SkMsgOrdered = 7,
    /// `getsockopt(SO_ORIGINAL_DST)` answered by the capture program.
    OrigDstAnswered = 8,
    /// Connects (or inbound connections) that went direct because the proxy's listener is
    /// in another network namespace than the socket (a workload in its own namespace, a
    /// pod, while the proxy runs in the host's): redirecting would reach nothing.
    OtherNetns = 9,
}

pub const STAT_SLOTS: u32 = 10;

impl Stat {
    pub const ALL: [Stat; STAT_SLOTS as usize] = [
        Stat::Captured,
        Stat::Excluded,
        Stat::FailOpen,
        Stat::InboundCaptured,
        Stat::SkMsgBytes,
        Stat::SkMsgRedirects,
        Stat::SkMsgThrottled,
        Stat::SkMsgOrdered,
        Stat::OrigDstAnswered,
        Stat::OtherNetns,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::Captured => "outbound_captured",
            Stat::Excluded => "outbound_excluded",
            Stat::FailOpen => "fail_open_bypasses",
            Stat::InboundCaptured => "inbound_captured",
            Stat::SkMsgBytes => "sk_msg_redirected_bytes",
            Stat::SkMsgRedirects => "sk_msg_redirects",
            Stat::SkMsgThrottled => "sk_msg_backpressure_fallbacks",
            Stat::SkMsgOrdered => "sk_msg_order_fallbacks",
            Stat::OrigDstAnswered => "original_dst_getsockopt",
            Stat::OtherNetns => "other_netns_bypasses",
        }
    }
}

/// Maps an IPv4 address (network-order word) into the IPv6 key space.
pub const fn v4_mapped(ip4: u32) -> [u32; 4] {
    [0, 0, u32::from_be(0x0000_ffff), ip4]
}

/// Whether an IPv6 address (network-order words) is IPv4-mapped.
pub const fn is_v4_mapped(a: &[u32; 4]) -> bool {
    a[0] == 0 && a[1] == 0 && a[2] == u32::from_be(0x0000_ffff)
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all): repr(C), Copy, no implicit padding (sizes asserted above), every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for WorkloadPolicy {}
    unsafe impl aya::Pod for CgroupSlot {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for OrigDst {}
    unsafe impl aya::Pod for SockKey {}
    unsafe impl aya::Pod for InboundRule {}
    unsafe impl aya::Pod for CaptureGlobals {}
}
