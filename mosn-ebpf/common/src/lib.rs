//! Types shared by the kernel programs (`mosn-ebpf`) and the daemon (`mosn-user`).
//!
//! Every map key/value is `#[repr(C)]`, `Copy`, has no implicit padding (explicit `_pad`
//! fields) and carries a compile-time size assertion, so both sides agree byte for byte.
#![no_std]

use core::mem::size_of;

pub mod capture;

/// SOCKHASH holding every spliced socket, keyed by its socket cookie (`SO_COOKIE`).
pub const SOCKHASH_NAME: &str = "MOSN_SOCKS";
/// HASH: socket cookie -> [`SplicePeer`], the socket each segment is redirected to.
pub const PAIRS_NAME: &str = "MOSN_PAIRS";
/// PERCPU_ARRAY of u64 fast-path counters, indexed by [`Counter`].
pub const COUNTERS_NAME: &str = "MOSN_COUNTERS";
/// The sk_skb stream verdict program.
pub const VERDICT_PROG_NAME: &str = "mosn_splice_verdict";

/// Capacity of the SOCKHASH and of the pair map: two sockets per spliced connection, so
/// 32k concurrent spliced connections. When full, new connections fall back to userspace.
pub const MAX_SPLICED_SOCKETS: u32 = 65_536;

/// Direction of a spliced segment, stored in [`SplicePeer::direction`].
pub const DIR_DOWNSTREAM_TO_UPSTREAM: u32 = 0;
pub const DIR_UPSTREAM_TO_DOWNSTREAM: u32 = 1;

/// Value of the pair map: where a socket's incoming segments go.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplicePeer {
    /// Socket cookie of the peer socket (its key in the SOCKHASH).
    pub peer_cookie: u64,
    /// [`DIR_DOWNSTREAM_TO_UPSTREAM`] or [`DIR_UPSTREAM_TO_DOWNSTREAM`].
    pub direction: u32,
    /// `PEER_*` bits, set by the kernel.
    pub flags: u32,
}

/// [`SplicePeer::flags`]: the kernel has spliced a segment for this entry.
pub const PEER_ACTIVE: u32 = 1;
/// [`SplicePeer::flags`]: a redirect failed (the peer was not in the SOCKHASH yet, which can
/// only happen while a pair is being set up). From then on every segment of this direction is
/// passed to the socket itself, in order, and the daemon copies the direction in userspace.
pub const PEER_DIVERTED: u32 = 2;
const _: () = assert!(size_of::<SplicePeer>() == 16);

/// Indexes of the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Pair entries that carried their first spliced segment (two per connection with
    /// traffic both ways).
    SplicedStreams = 0,
    /// Bytes redirected from the downstream (client) socket to the upstream socket.
    BytesDownToUp = 1,
    /// Bytes redirected from the upstream socket to the downstream socket.
    BytesUpToDown = 2,
    /// Segments redirected (both directions).
    Segments = 3,
    /// A segment arrived on a socket with no pair entry: passed to the socket itself.
    NoPeer = 4,
    /// Directions diverted to the daemon: the redirect helper refused (the peer was not in the
    /// SOCKHASH, which happens only during pair set-up), so this and every later segment of
    /// the direction is passed to its own socket (see [`PEER_DIVERTED`]); nothing is dropped.
    /// The safety net, not an error: counted so that it can be seen.
    DivertedDirections = 5,
    /// Segments without payload (the FIN) seen by the verdict and dropped: TCP has already
    /// recorded the FIN; the daemon forwards it after the last byte.
    EmptySegments = 6,
    /// Segments of a diverted direction passed to their own socket for the daemon to copy.
    Diverted = 7,
}

/// Number of slots in the counter array.
pub const COUNTER_SLOTS: u32 = 8;

impl Counter {
    pub const ALL: [Counter; COUNTER_SLOTS as usize] = [
        Counter::SplicedStreams,
        Counter::BytesDownToUp,
        Counter::BytesUpToDown,
        Counter::Segments,
        Counter::NoPeer,
        Counter::DivertedDirections,
        Counter::EmptySegments,
        Counter::Diverted,
    ];

    /// Prometheus-style name suffix.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::SplicedStreams => "spliced_streams",
            Counter::BytesDownToUp => "bytes_downstream_to_upstream",
            Counter::BytesUpToDown => "bytes_upstream_to_downstream",
            Counter::Segments => "segments",
            Counter::NoPeer => "no_peer",
            Counter::DivertedDirections => "diverted",
            Counter::EmptySegments => "empty_segments",
            Counter::Diverted => "diverted_segments",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), Copy, no padding (size asserted above), every bit pattern valid.
    unsafe impl aya::Pod for super::SplicePeer {}
}
