//! The kernel fast path: loading the sk_skb splice program, the socket pair maps and the
//! per-CPU counters.
//!
//! The BPF object is embedded at build time (see `build.rs`). [`Splicer::load`] loads it,
//! attaches the stream verdict program to the SOCKHASH and hands out [`SpliceGuard`]s that
//! keep a connection's two sockets paired until dropped.

mod splicer;

#[cfg(test)]
pub(crate) use splicer::splicer_or_skip;
pub use splicer::{KernelCounters, SpliceError, SpliceGuard, Splicer};

/// The embedded kernel object; empty when it was not built (no BPF toolchain).
pub static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mosn-ebpf.o"));
