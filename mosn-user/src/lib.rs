//! mosn: the userspace daemon of mosn-rs.
//!
//! Modules follow MOSN's layer order; dependencies point one way:
//! `config` -> `upstream` -> `network` (listeners, tcp_proxy) with `ebpf` (kernel fast path)
//! beside them, and `admin`/`metrics` observing all of them. See `docs/ARCHITECTURE.md`.

pub mod admin;
pub mod capture_control;
pub mod config;
pub mod ebpf;
pub mod filter;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod metrics;
pub mod network;
pub mod protocol;
pub mod proxy;
pub mod router;
pub mod server;
pub mod stream;
pub mod tcp_proxy;
pub mod upstream;
