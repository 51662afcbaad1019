//! mosn transparent capture: the iptables REDIRECT/TPROXY replacement.
//!
//! - `mosn_connect4` / `mosn_connect6` (cgroup/connect4, connect6) on each workload cgroup:
//!   an outbound TCP `connect()` that the workload's policy selects is rewritten to the
//!   proxy's outbound listener, and the original destination is stored by socket cookie.
//!   When the listener is not in `MOSN_CAP_LSN` (the daemon is gone) the connect goes
//!   direct: fail open. So does a connect from another network namespace than the
//!   listener's (a pod while the proxy runs in the host's): there the listener's address is
//!   the pod's own loopback, where nothing listens.
//! - `mosn_sockops` / `mosn_sockops_msg` (sock_ops): when the connection is established, the
//!   original destination is re-keyed by the client's address, which is what the proxy sees
//!   as the accepted socket's peer. The `_msg` variant also puts same-host sockets into
//!   `MOSN_CAP_LOCAL` for sk_msg.
//! - `mosn_getsockopt` (cgroup/getsockopt): answers `getsockopt(SOL_IP/SOL_IPV6,
//!   SO_ORIGINAL_DST)` from that map, so tools written for iptables REDIRECT keep working.
//! - `mosn_sk_lookup` (sk_lookup, per network namespace): connections to a workload's inbound
//!   ports are handed to the proxy's inbound listener, only when that listener is in the
//!   namespace this instance is attached to (`MOSN_SK_LOOKUP_NETNS`, set at load).
//! - `mosn_sk_msg` (sk_msg on `MOSN_CAP_LOCAL`): a sendmsg between two same-host sockets is
//!   moved straight into the peer's receive queue, with backpressure: only while the peer
//!   has fewer than `sk_msg_queue_limit` unread redirected bytes and nothing of this
//!   direction is still inside TCP (order); otherwise through TCP, whose window bounds memory.
#![no_std]
#![no_main]

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    Global,
    bindings::{
        BPF_F_INGRESS, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, bpf_sock, sk_action,
    },
    helpers::{
        bpf_probe_read_kernel,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_uid_gid,
            bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_map_lookup_elem,
            bpf_msg_redirect_hash, bpf_sk_assign, bpf_sk_release, bpf_sock_hash_update,
        },
    },
    macros::{cgroup_sock_addr, cgroup_sockopt, map, sk_lookup, sk_msg, sock_ops},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, SockHash, SockMap},
    programs::{SkLookupContext, SkMsgContext, SockAddrContext, SockOpsContext, SockoptContext},
};
use mosn_ebpf_common::capture::*;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const SOL_IP: i32 = 0;
const SOL_IPV6: i32 = 41;
const SO_ORIGINAL_DST: i32 = 80;
const TCP_CLOSE: u32 = 7;
/// `sk_user_data` carries flag bits in its low bits (SK_USER_DATA_NOCOPY|BPF|PSOCK).
const SK_USER_DATA_PTRMASK: u64 = !7;

#[map(name = "MOSN_CAP_POLICY")]
static POLICY: HashMap<u64, WorkloadPolicy> = HashMap::pinned(MAX_WORKLOADS, 0);
#[map(name = "MOSN_CAP_CGROUP")]
static CGROUP_CACHE: LruHashMap<u64, CgroupSlot> = LruHashMap::pinned(CGROUP_CACHE_ENTRIES, 0);
#[map(name = "MOSN_CAP_ORIGCK")]
static ORIG_BY_COOKIE: LruHashMap<u64, OrigDst> = LruHashMap::pinned(ORIG_ENTRIES, 0);
#[map(name = "MOSN_CAP_ORIG")]
static ORIG: LruHashMap<AddrKey, OrigDst> = LruHashMap::pinned(ORIG_ENTRIES, 0);
#[map(name = "MOSN_CAP_LSN")]
static LISTENERS: SockMap = SockMap::pinned(LISTENER_SLOTS, 0);
#[map(name = "MOSN_CAP_INB")]
static INBOUND: HashMap<u32, InboundRule> = HashMap::pinned(INBOUND_ENTRIES, 0);
#[map(name = "MOSN_CAP_LOCAL")]
static LOCAL: SockHash<SockKey> = SockHash::pinned(LOCAL_SOCKETS, 0);
#[map(name = "MOSN_CAP_SKADDR")]
static SOCK_ADDR: LruHashMap<SockKey, u64> = LruHashMap::pinned(LOCAL_SOCKETS, 0);
#[map(name = "MOSN_CAP_CONF")]
static GLOBALS: Array<CaptureGlobals> = Array::pinned(1, 0);
#[map(name = "MOSN_CAP_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(MAX_WORKLOADS * STAT_SLOTS, 0);

/// The cookie of the network namespace this sk_lookup instance is attached to
/// ([`SK_LOOKUP_NETNS_GLOBAL`]): read-only data the daemon sets per instance at load time.
#[unsafe(no_mangle)]
static MOSN_SK_LOOKUP_NETNS: Global<u64> = Global::new(0);

#[inline(always)]
fn count(slot: u32, stat: Stat, n: u64) {
    let slot = if slot < MAX_WORKLOADS { slot } else { 0 };
    if let Some(p) = STATS.get_ptr_mut(slot * STAT_SLOTS + stat as u32) {
        // SAFETY: per-CPU slot; BPF programs run with preemption disabled.
        unsafe { *p += n };
    }
}

#[inline(always)]
fn globals() -> Option<&'static CaptureGlobals> {
    GLOBALS.get(0)
}

/// Reads a context field with exactly one load of its own width (the verifier checks ctx
/// access sizes; the compiler must not merge or split them).
#[inline(always)]
fn rd<T: Copy>(p: *const T) -> T {
    // SAFETY: `p` points into the program context the kernel passed in.
    unsafe { read_volatile(p) }
}

#[inline(always)]
fn rd6(p: *const [u32; 4]) -> [u32; 4] {
    let p = p as *const u32;
    // SAFETY: as `rd`; four 4-byte loads.
    unsafe { [rd(p), rd(p.add(1)), rd(p.add(2)), rd(p.add(3))] }
}

// ---------------------------------------------------------------------------------------
// Outbound: connect4 / connect6
// ---------------------------------------------------------------------------------------

/// The workload policy of the current process: its own cgroup, else the nearest ancestor
/// that has one (programs attached to a pod cgroup run for its container cgroups too).
#[inline(always)]
fn current_workload() -> Option<(CgroupSlot, &'static WorkloadPolicy)> {
    // SAFETY: helpers without memory arguments.
    let leaf = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: map values stay valid while the program runs (RCU).
    if let Some(c) = unsafe { CGROUP_CACHE.get(&leaf) } {
        let c = *c;
        if let Some(p) = unsafe { POLICY.get(&c.workload_cgroup) } {
            return Some((c, p));
        }
    }
    let mut found: Option<CgroupSlot> = None;
    let mut level = 1;
    while level <= MAX_CGROUP_DEPTH as i32 {
        // SAFETY: as above.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            break;
        }
        if let Some(p) = unsafe { POLICY.get(&id) } {
            // Keep walking: the deepest workload wins.
            found = Some(CgroupSlot {
                workload_cgroup: id,
                slot: p.slot,
                _pad: 0,
            });
        }
        level += 1;
    }
    let c = found?;
    let _ = CGROUP_CACHE.insert(&leaf, &c, 0);
    // SAFETY: as above.
    let p = unsafe { POLICY.get(&c.workload_cgroup) }?;
    Some((c, p))
}

#[inline(always)]
fn port_in(ranges: &[PortRange; MAX_PORT_RANGES], n: u32, port: u16) -> bool {
    let mut i = 0;
    while i < MAX_PORT_RANGES {
        if i as u32 >= n {
            break;
        }
        let r = ranges[i];
        if r.lo <= port && port <= r.hi {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn v4_in(cidrs: &[Cidr4; MAX_CIDRS], n: u32, ip: u32) -> bool {
    let mut i = 0;
    while i < MAX_CIDRS {
        if i as u32 >= n {
            break;
        }
        let c = cidrs[i];
        if ip & c.mask == c.addr {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn v6_in(cidrs: &[Cidr6; MAX_CIDRS], n: u32, ip: &[u32; 4]) -> bool {
    let mut i = 0;
    while i < MAX_CIDRS {
        if i as u32 >= n {
            break;
        }
        let c = &cidrs[i];
        if ip[0] & c.mask[0] == c.addr[0]
            && ip[1] & c.mask[1] == c.addr[1]
            && ip[2] & c.mask[2] == c.addr[2]
            && ip[3] & c.mask[3] == c.addr[3]
        {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn id_in(ids: &[u32; MAX_IDS], n: u32, id: u32) -> bool {
    let mut i = 0;
    while i < MAX_IDS {
        if i as u32 >= n {
            break;
        }
        if ids[i] == id {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether the policy selects this destination (`addr` IPv6 or IPv4-mapped).
#[inline(always)]
fn selected(p: &WorkloadPolicy, addr: &[u32; 4], port: u16) -> bool {
    if p.flags & POLICY_OUTBOUND == 0 {
        return false;
    }
    if port_in(&p.exclude_ports, p.n_exclude_ports, port) {
        return false;
    }
    if p.flags & POLICY_INCLUDE_PORTS != 0 && !port_in(&p.include_ports, p.n_include_ports, port) {
        return false;
    }
    if is_v4_mapped(addr) {
        let ip = addr[3];
        if v4_in(&p.exclude_v4, p.n_exclude_v4, ip) {
            return false;
        }
        if p.flags & POLICY_INCLUDE_V4 != 0 && !v4_in(&p.include_v4, p.n_include_v4, ip) {
            return false;
        }
    } else {
        if v6_in(&p.exclude_v6, p.n_exclude_v6, addr) {
            return false;
        }
        if p.flags & POLICY_INCLUDE_V6 != 0 && !v6_in(&p.include_v6, p.n_include_v6, addr) {
            return false;
        }
    }
    // SAFETY: helper without arguments.
    let uid_gid = unsafe { bpf_get_current_uid_gid() };
    let (uid, gid) = (uid_gid as u32, (uid_gid >> 32) as u32);
    !(id_in(&p.uids, p.n_uids, uid) || id_in(&p.gids, p.n_gids, gid))
}

/// Whether the proxy's outbound listener is alive (in the SOCKMAP). Closing a socket removes
/// it from every sockmap, so a dead daemon reads as "not alive" and connects go direct.
#[inline(always)]
fn outbound_alive() -> bool {
    let key = LISTENER_OUTBOUND;
    // SAFETY: lookups in a SOCKMAP return a referenced socket (or null) that must be
    // released, which we do at once: only its presence matters.
    unsafe {
        let sk = bpf_map_lookup_elem(addr_of!(LISTENERS) as *mut c_void, addr_of!(key).cast());
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk);
    }
    true
}

#[cgroup_sock_addr(connect4)]
pub fn mosn_connect4(ctx: SockAddrContext) -> i32 {
    connect(&ctx, false);
    1
}

#[cgroup_sock_addr(connect6)]
pub fn mosn_connect6(ctx: SockAddrContext) -> i32 {
    connect(&ctx, true);
    1
}

#[inline(always)]
fn connect(ctx: &SockAddrContext, v6: bool) {
    let sa = ctx.sock_addr;
    // SAFETY (all raw reads below): fields of the bpf_sock_addr context.
    unsafe {
        if rd(addr_of!((*sa).type_)) != SOCK_STREAM {
            return;
        }
    }
    let Some(g) = globals() else { return };
    if g.outbound_port == 0 {
        return;
    }
    // The proxy's own sockets (marked) are never captured.
    let sk: *mut bpf_sock = unsafe { rd(addr_of!((*sa).__bindgen_anon_1.sk)) };
    if sk.is_null() {
        return;
    }
    if unsafe { rd(addr_of!((*sk).mark)) } == g.proxy_mark {
        return;
    }
    let Some((cg, policy)) = current_workload() else {
        return;
    };
    let port = u16::from_be(unsafe { rd(addr_of!((*sa).user_port)) } as u16);
    let (addr, family) = if v6 {
        let a = rd6(unsafe { addr_of!((*sa).user_ip6) });
        (a, if is_v4_mapped(&a) { AF_INET } else { AF_INET6 })
    } else {
        (v4_mapped(unsafe { rd(addr_of!((*sa).user_ip4)) }), AF_INET)
    };
    // Never redirect a connect to the listener itself (the proxy, or a client that knows it).
    if u32::from(port) == g.outbound_port
        && ((family == AF_INET && addr[3] == g.outbound_ip4) || addr == g.outbound_ip6)
    {
        return;
    }
    if !selected(policy, &addr, port) {
        count(cg.slot, Stat::Excluded, 1);
        return;
    }
    if v6 && g.flags & GLOBAL_OUTBOUND_V6 == 0 {
        count(cg.slot, Stat::Excluded, 1);
        return;
    }
    if !outbound_alive() {
        count(cg.slot, Stat::FailOpen, 1);
        return;
    }
    // The listener's address means the listener only in its own network namespace; in a
    // workload's own namespace (a pod) it is that namespace's loopback: leave the connect
    // alone. (Kernel >= 5.7 for this helper here; the daemon probes it before loading.)
    // SAFETY: the helper reads the namespace of the socket behind the context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    if g.outbound_netns != 0 && netns != g.outbound_netns {
        count(cg.slot, Stat::OtherNetns, 1);
        return;
    }
    // SAFETY: the helper reads the socket behind the context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let orig = OrigDst {
        addr,
        port: u32::from(port),
        family,
        slot: cg.slot,
        _pad: 0,
    };
    if ORIG_BY_COOKIE.insert(&cookie, &orig, 0).is_err() {
        return;
    }
    let lport = u32::from((g.outbound_port as u16).to_be());
    // SAFETY: writable fields of bpf_sock_addr for connect4/6, one 4-byte store each.
    unsafe {
        if v6 {
            let p = addr_of!((*sa).user_ip6) as *mut u32;
            write_volatile(p, g.outbound_ip6[0]);
            write_volatile(p.add(1), g.outbound_ip6[1]);
            write_volatile(p.add(2), g.outbound_ip6[2]);
            write_volatile(p.add(3), g.outbound_ip6[3]);
        } else {
            write_volatile(addr_of!((*sa).user_ip4) as *mut u32, g.outbound_ip4);
        }
        write_volatile(addr_of!((*sa).user_port) as *mut u32, lport);
    }
    count(cg.slot, Stat::Captured, 1);
}

// ---------------------------------------------------------------------------------------
// sock_ops: re-key the original destination; same-host sockets into the sk_msg SOCKHASH
// ---------------------------------------------------------------------------------------

#[sock_ops]
pub fn mosn_sockops(ctx: SockOpsContext) -> u32 {
    sockops(&ctx, false);
    0
}

#[sock_ops]
pub fn mosn_sockops_msg(ctx: SockOpsContext) -> u32 {
    sockops(&ctx, true);
    0
}

#[inline(always)]
fn sockops(ctx: &SockOpsContext, msg: bool) {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_STATE_CB
    {
        return;
    }
    let ops = ctx.ops;
    // SAFETY (raw reads): fields of the bpf_sock_ops context.
    // Every field is read unconditionally: loads under a branch get merged into one load
    // from a computed context offset, which the verifier refuses.
    let family = unsafe { rd(addr_of!((*ops).family)) };
    let (l4, r4) = unsafe {
        (
            rd(addr_of!((*ops).local_ip4)),
            rd(addr_of!((*ops).remote_ip4)),
        )
    };
    let (l6, r6) = unsafe {
        (
            rd6(addr_of!((*ops).local_ip6)),
            rd6(addr_of!((*ops).remote_ip6)),
        )
    };
    let (local, remote) = if family == AF_INET {
        (v4_mapped(l4), v4_mapped(r4))
    } else if family == AF_INET6 {
        (l6, r6)
    } else {
        return;
    };
    let local_port = unsafe { rd(addr_of!((*ops).local_port)) };
    let remote_port = u32::from_be(unsafe { rd(addr_of!((*ops).remote_port)) });
    if op == BPF_SOCK_OPS_STATE_CB {
        // args[1] is the new state; the SOCKHASH drops closed sockets by itself.
        if ctx.arg(1) == TCP_CLOSE {
            let key = SockKey {
                local,
                remote,
                local_port,
                remote_port,
            };
            let _ = SOCK_ADDR.remove(&key);
        }
        return;
    }
    if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        // SAFETY: the helper reads the socket behind the context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
        // SAFETY: map value valid while the program runs.
        if let Some(orig) = unsafe { ORIG_BY_COOKIE.get(&cookie) } {
            let orig = *orig;
            let key = AddrKey {
                addr: local,
                port: local_port,
                _pad: 0,
            };
            let _ = ORIG.insert(&key, &orig, 0);
            let _ = ORIG_BY_COOKIE.remove(&cookie);
        }
    }
    if msg && same_host(&local, &remote) {
        let key = SockKey {
            local,
            remote,
            local_port,
            remote_port,
        };
        // SAFETY: field of the bpf_sock_ops context (a full socket in these callbacks).
        let sk = unsafe { rd(addr_of!((*ops).__bindgen_anon_2.sk)) } as *mut c_void;
        if sk.is_null() {
            return;
        }
        let Some(address) = address_of(sk) else {
            return;
        };
        // The address first: a socket sk_msg can redirect to always has one.
        if SOCK_ADDR.insert(&key, &address, 0).is_err() {
            return;
        }
        // SAFETY: sock_ops may add its own established socket to a SOCKHASH.
        let r = unsafe {
            bpf_sock_hash_update(
                ctx.ops,
                addr_of!(LOCAL) as *mut c_void,
                addr_of!(key) as *mut c_void,
                0,
            )
        };
        if r == 0 {
            // Ask for the close callback to forget the address.
            let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
        } else {
            let _ = SOCK_ADDR.remove(&key);
        }
    }
}

/// Both ends on this host: a loopback peer, or the same address on both sides.
#[inline(always)]
fn same_host(local: &[u32; 4], remote: &[u32; 4]) -> bool {
    if local == remote {
        return true;
    }
    if is_v4_mapped(remote) {
        // 127.0.0.0/8: first byte of the network-order word is 127.
        return remote[3] & 0xff == 127;
    }
    remote[0] == 0 && remote[1] == 0 && remote[2] == 0 && remote[3] == u32::from_be(1)
}

// ---------------------------------------------------------------------------------------
// getsockopt(SO_ORIGINAL_DST)
// ---------------------------------------------------------------------------------------

#[cgroup_sockopt(getsockopt)]
pub fn mosn_getsockopt(ctx: SockoptContext) -> i32 {
    getsockopt(&ctx);
    1
}

#[inline(always)]
fn getsockopt(ctx: &SockoptContext) {
    let so = ctx.sockopt;
    // SAFETY (raw reads/writes): fields of the bpf_sockopt context; optval is bounds-checked
    // against optval_end before every store, as the verifier requires.
    unsafe {
        let level = rd(addr_of!((*so).level));
        if rd(addr_of!((*so).optname)) != SO_ORIGINAL_DST || (level != SOL_IP && level != SOL_IPV6)
        {
            return;
        }
        let sk: *mut bpf_sock = rd(addr_of!((*so).__bindgen_anon_1.sk));
        if sk.is_null() {
            return;
        }
        // The accepted socket's peer is the client whose connect() was captured.
        let family = rd(addr_of!((*sk).family));
        let (d4, d6) = (rd(addr_of!((*sk).dst_ip4)), rd6(addr_of!((*sk).dst_ip6)));
        let addr = if family == AF_INET { v4_mapped(d4) } else { d6 };
        // A 2-byte load: `dst_port` is a __be16 (4-byte loads are a legacy form).
        let port = u16::from_be(rd(addr_of!((*sk).dst_port)));
        let key = AddrKey {
            addr,
            port: u32::from(port),
            _pad: 0,
        };
        let Some(orig) = ORIG.get(&key) else { return };
        let orig = *orig;
        let optval = rd(addr_of!((*so).__bindgen_anon_2.optval)) as *mut u8;
        let end = rd(addr_of!((*so).__bindgen_anon_3.optval_end)) as *mut u8;
        if level == SOL_IP {
            if orig.family != AF_INET || optval.add(16) > end {
                return;
            }
            // struct sockaddr_in
            write_volatile(optval as *mut u16, AF_INET as u16);
            write_volatile(optval.add(2) as *mut u16, (orig.port as u16).to_be());
            write_volatile(optval.add(4) as *mut u32, orig.addr[3]);
            write_volatile(optval.add(8) as *mut u64, 0);
            write_volatile(addr_of!((*so).optlen) as *mut i32, 16);
        } else {
            if optval.add(28) > end {
                return;
            }
            // struct sockaddr_in6
            write_volatile(optval as *mut u16, AF_INET6 as u16);
            write_volatile(optval.add(2) as *mut u16, (orig.port as u16).to_be());
            write_volatile(optval.add(4) as *mut u32, 0);
            write_volatile(optval.add(8) as *mut u32, orig.addr[0]);
            write_volatile(optval.add(12) as *mut u32, orig.addr[1]);
            write_volatile(optval.add(16) as *mut u32, orig.addr[2]);
            write_volatile(optval.add(20) as *mut u32, orig.addr[3]);
            write_volatile(optval.add(24) as *mut u32, 0);
            write_volatile(addr_of!((*so).optlen) as *mut i32, 28);
        }
        write_volatile(addr_of!((*so).retval) as *mut i32, 0);
        count(orig.slot, Stat::OrigDstAnswered, 1);
    }
}

// ---------------------------------------------------------------------------------------
// Inbound: sk_lookup
// ---------------------------------------------------------------------------------------

#[sk_lookup]
pub fn mosn_sk_lookup(ctx: SkLookupContext) -> u32 {
    lookup(&ctx);
    sk_action::SK_PASS
}

#[inline(always)]
fn lookup(ctx: &SkLookupContext) {
    let l = ctx.lookup;
    // SAFETY (raw reads): fields of the bpf_sk_lookup context.
    unsafe {
        if rd(addr_of!((*l).protocol)) != IPPROTO_TCP {
            return;
        }
    }
    let port = unsafe { rd(addr_of!((*l).local_port)) };
    // SAFETY: map values valid while the program runs.
    let rule = match unsafe { INBOUND.get(&port) } {
        Some(r) => *r,
        None => match unsafe { INBOUND.get(&0u32) } {
            Some(r) => *r,
            None => return,
        },
    };
    if rule.flags & INBOUND_EXCLUDE != 0 || rule.flags & INBOUND_CAPTURE == 0 {
        return;
    }
    let Some(g) = globals() else { return };
    // What the proxy forwards to the workload comes from the passthrough source.
    let family = unsafe { rd(addr_of!((*l).family)) };
    let r4 = unsafe { rd(addr_of!((*l).remote_ip4)) };
    let r6 = rd6(unsafe { addr_of!((*l).remote_ip6) });
    if (family == AF_INET && r4 == g.passthrough_ip4)
        || (family == AF_INET6 && r6 == g.passthrough_ip6)
    {
        return;
    }
    let key = LISTENER_INBOUND;
    // SAFETY: the looked-up socket is released on every path after use.
    unsafe {
        let sk = bpf_map_lookup_elem(addr_of!(LISTENERS) as *mut c_void, addr_of!(key).cast());
        if sk.is_null() {
            count(rule.slot, Stat::FailOpen, 1);
            return;
        }
        // bpf_sk_assign does not check that the listener is in this namespace: a listener
        // of another one (an instance left attached where the daemon no longer runs) would
        // take connections meant for this namespace's own servers.
        if MOSN_SK_LOOKUP_NETNS.load() != g.inbound_netns {
            bpf_sk_release(sk);
            count(rule.slot, Stat::OtherNetns, 1);
            return;
        }
        let r = bpf_sk_assign(ctx.lookup.cast(), sk, 0);
        bpf_sk_release(sk);
        if r == 0 {
            count(rule.slot, Stat::InboundCaptured, 1);
        } else {
            count(rule.slot, Stat::FailOpen, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// sk_msg: same-host acceleration with backpressure
// ---------------------------------------------------------------------------------------

#[sk_msg]
pub fn mosn_sk_msg(ctx: SkMsgContext) -> u32 {
    msg(&ctx);
    sk_action::SK_PASS
}

/// Reads a `T` at `base + off` in kernel memory (faults safely; offsets from the kernel's BTF).
#[inline(always)]
fn read_at<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-safe path.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) }.ok()
}

/// The kernel address of a socket the verifier hands us as a typed pointer, as a plain
/// number: the verifier forbids arithmetic on socket pointers, and the fields we need are
/// read with bpf_probe_read_kernel at BTF offsets anyway. Copying the pointer's bytes off
/// the stack is the one way to turn it into a scalar.
#[inline(always)]
fn address_of(p: *mut c_void) -> Option<u64> {
    let slot: *mut c_void = p;
    // SAFETY: reads 8 bytes of our own stack.
    let out: u64 = unsafe { bpf_probe_read_kernel(addr_of!(slot) as *const u64) }.ok()?;
    (out != 0).then_some(out)
}

#[inline(always)]
fn sender_slot() -> u32 {
    // SAFETY: helper without arguments; map value valid while the program runs.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    match unsafe { CGROUP_CACHE.get(&cg) } {
        Some(c) => c.slot,
        // First message from this cgroup: walk up once (cached); not a workload: the proxy.
        None => current_workload().map(|(c, _)| c.slot).unwrap_or(0),
    }
}

#[inline(always)]
fn msg(ctx: &SkMsgContext) {
    let m = ctx.msg;
    let Some(g) = globals() else { return };
    if g.flags & GLOBAL_OFFSETS_OK == 0 {
        return;
    }
    // SAFETY (raw reads): fields of the sk_msg_md context.
    let family = unsafe { rd(addr_of!((*m).family)) };
    let (l4, r4) = unsafe { (rd(addr_of!((*m).local_ip4)), rd(addr_of!((*m).remote_ip4))) };
    let (l6, r6) = unsafe {
        (
            rd6(addr_of!((*m).local_ip6)),
            rd6(addr_of!((*m).remote_ip6)),
        )
    };
    let (local, remote) = if family == AF_INET {
        (v4_mapped(l4), v4_mapped(r4))
    } else {
        (l6, r6)
    };
    // The peer socket sees this socket's addresses the other way round.
    let mut key = SockKey {
        local: remote,
        remote: local,
        local_port: u32::from_be(unsafe { rd(addr_of!((*m).remote_port)) }),
        remote_port: unsafe { rd(addr_of!((*m).local_port)) },
    };
    let size = unsafe { rd(addr_of!((*m).size)) };
    let me_sk = unsafe { rd(addr_of!((*m).__bindgen_anon_3.sk)) } as *mut c_void;
    if me_sk.is_null() {
        return;
    }
    let Some(me) = address_of(me_sk) else { return };
    // Not a same-host pair we know (or the peer is gone): plain TCP.
    // SAFETY: map value valid while the program runs.
    let Some(peer) = (unsafe { SOCK_ADDR.get(&key) }).copied() else {
        return;
    };
    let verdict = can_redirect(g, me, peer, size);
    let slot = sender_slot();
    match verdict {
        Some(Stat::SkMsgRedirects) => {}
        Some(other) => {
            count(slot, other, 1);
            return;
        }
        None => return,
    }
    // SAFETY: redirects this message into the peer's ingress queue.
    let r = unsafe {
        bpf_msg_redirect_hash(
            ctx.msg,
            addr_of!(LOCAL) as *mut c_void,
            addr_of_mut!(key) as *mut c_void,
            u64::from(BPF_F_INGRESS),
        )
    };
    if r == i64::from(sk_action::SK_PASS) {
        count(slot, Stat::SkMsgRedirects, 1);
        count(slot, Stat::SkMsgBytes, u64::from(size));
    }
}

/// `Some(SkMsgRedirects)` = redirect; `Some(reason)` = send through TCP and count why;
/// `None` = send through TCP (state unreadable).
#[inline(always)]
fn can_redirect(g: &CaptureGlobals, me: u64, peer: u64, size: u32) -> Option<Stat> {
    // Backpressure: the peer's unread redirected bytes (its psock's ingress_msg total).
    let psock = read_at::<u64>(peer, g.off_sk_user_data)? & SK_USER_DATA_PTRMASK;
    if psock == 0 {
        return None;
    }
    let queued = read_at::<u32>(psock, g.off_psock_msg_tot_len)?;
    if u64::from(queued) + u64::from(size) > u64::from(g.sk_msg_queue_limit) {
        return Some(Stat::SkMsgThrottled);
    }
    // Order: a redirected message is read before anything in the peer's TCP receive queue,
    // so redirect only when every byte this socket sent through TCP has been acked by the
    // peer (write_seq == snd_una) and read by its application (rcv_nxt == copied_seq).
    let write_seq = read_at::<u32>(me, g.off_write_seq)?;
    let snd_una = read_at::<u32>(me, g.off_snd_una)?;
    let rcv_nxt = read_at::<u32>(peer, g.off_rcv_nxt)?;
    let copied_seq = read_at::<u32>(peer, g.off_copied_seq)?;
    if write_seq != snd_una || rcv_nxt != copied_seq {
        return Some(Stat::SkMsgOrdered);
    }
    Some(Stat::SkMsgRedirects)
}

mod rt;
