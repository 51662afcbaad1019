//! mosn kernel programs.
//!
//! `mosn_splice_verdict` is an sk_skb stream verdict program attached to the SOCKHASH
//! `MOSN_SOCKS`. The daemon puts both sockets of a proxied TCP connection (the accepted
//! downstream socket and the upstream socket it connected) into the SOCKHASH keyed by their
//! socket cookies, and writes `cookie -> peer cookie` into `MOSN_PAIRS` for each direction.
//! Every segment that arrives on one socket is then redirected to the egress of the other
//! without waking the daemon. FIN is not forwarded by the kernel: the daemon watches for
//! `POLLRDHUP` and shuts the peer down once every received byte has been delivered.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::sk_action,
    helpers::bpf_get_socket_cookie,
    macros::{map, stream_verdict},
    maps::{HashMap, PerCpuArray, SockHash},
    programs::SkBuffContext,
};
use mosn_ebpf_common::{
    COUNTER_SLOTS, Counter, DIR_DOWNSTREAM_TO_UPSTREAM, MAX_SPLICED_SOCKETS, PEER_ACTIVE,
    PEER_DIVERTED, SplicePeer,
};

#[map(name = "MOSN_SOCKS")]
static MOSN_SOCKS: SockHash<u64> = SockHash::with_max_entries(MAX_SPLICED_SOCKETS, 0);

#[map(name = "MOSN_PAIRS")]
static MOSN_PAIRS: HashMap<u64, SplicePeer> = HashMap::with_max_entries(MAX_SPLICED_SOCKETS, 0);

#[map(name = "MOSN_COUNTERS")]
static MOSN_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[inline(always)]
fn count(counter: Counter, n: u64) {
    if let Some(slot) = MOSN_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs (preemption
        // is disabled in BPF program context).
        unsafe { *slot += n };
    }
}

#[stream_verdict]
pub fn mosn_splice_verdict(ctx: SkBuffContext) -> u32 {
    match try_splice(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_splice(ctx: &SkBuffContext) -> Result<u32, u32> {
    let len = u64::from(ctx.len());
    if len == 0 {
        // tcp_read_skb hands the FIN segment to the verdict too. Redirected, its empty skb
        // makes the peer's psock backlog "send" 0 bytes, which it reports as EPIPE on the peer
        // and then stops transmitting. TCP has already recorded the FIN (RCV_SHUTDOWN), so
        // there is nothing in the skb to keep; the daemon forwards the FIN itself.
        count(Counter::EmptySegments, 1);
        return Ok(sk_action::SK_DROP);
    }
    // SAFETY: the helper only reads the socket behind the skb the kernel handed us.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(peer) = MOSN_PAIRS.get_ptr_mut(&cookie) else {
        // Not (or no longer) paired: leave the bytes on this socket for the daemon to read.
        count(Counter::NoPeer, 1);
        return Err(sk_action::SK_PASS);
    };
    // SAFETY: the map value stays valid for the duration of the program (RCU).
    let peer = unsafe { &mut *peer };
    if peer.flags & PEER_DIVERTED != 0 {
        // Sticky: once one segment went to the daemon, all later ones must too, or the
        // daemon's copy and the kernel's redirect would reorder the stream.
        count(Counter::Diverted, 1);
        return Ok(sk_action::SK_PASS);
    }
    let mut peer_cookie = peer.peer_cookie;
    let verdict = MOSN_SOCKS.redirect_skb(ctx, &mut peer_cookie, 0) as u32;
    if verdict != sk_action::SK_PASS {
        // The peer is not in the SOCKHASH: the pair is still being set up and the daemon's
        // hold (SO_RCVLOWAT) leaked (FIN or memory pressure). TCP has already acknowledged
        // these bytes, so dropping them would lose them: pass them to this socket instead and
        // divert the direction to the daemon.
        peer.flags |= PEER_DIVERTED;
        count(Counter::DivertedDirections, 1);
        count(Counter::Diverted, 1);
        return Err(sk_action::SK_PASS);
    }
    if peer.flags & PEER_ACTIVE == 0 {
        peer.flags |= PEER_ACTIVE;
        count(Counter::SplicedStreams, 1);
    }
    count(Counter::Segments, 1);
    if peer.direction == DIR_DOWNSTREAM_TO_UPSTREAM {
        count(Counter::BytesDownToUp, len);
    } else {
        count(Counter::BytesUpToDown, len);
    }
    Ok(verdict)
}

mod rt;
