//! The kernel programs: the sk_skb splice fast path ([`Splicer`]) and transparent capture
//! ([`Capture`]: connect4/6, sock_ops, getsockopt, sk_lookup, sk_msg).
//!
//! Both BPF objects are embedded at build time (see `build.rs`). [`Splicer::load`] loads the
//! splice object, attaches the stream verdict program to its SOCKHASH and hands out
//! [`SpliceGuard`]s that keep a connection's two sockets paired until dropped.
//! [`Capture::install`] loads or adopts the pinned capture object; `netns` keeps its
//! redirects inside the network namespace of the proxy's listeners. `probe` decides at
//! startup which of these features the running kernel supports.

mod btf;
pub mod capture;
mod netns;
pub mod probe;
mod splicer;

pub use capture::{Capture, CaptureError, WorkloadStats};
pub use probe::{Feature, KernelFeatures};
#[cfg(test)]
pub(crate) use splicer::splicer_or_skip;
pub use splicer::{KernelCounters, SpliceError, SpliceGuard, SpliceRefused, Splicer};

/// The embedded splice object; empty when it was not built (no BPF toolchain).
pub static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mosn-ebpf.o"));

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it where we may.
pub(crate) fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is harmless (newer kernels use
    // memcg accounting).
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
