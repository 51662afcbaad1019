//! mosn: the userspace daemon of mosn-rs.
//!
//! Modules follow MOSN's layer order; dependencies point one way: `network`, `protocol` and
//! `metrics` at the bottom import nothing of ours; `config` builds on them; `upstream`,
//! `router`, `ebpf` and `admin` on `config`; `stream`, `filter`, the L4 `tcp_proxy` and
//! `capture_control` above; the L7 `proxy` on top, and `server` wires them all. See
//! `docs/ARCHITECTURE.md`.

pub mod admin;
pub mod capture_control;
pub mod chains;
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
pub mod tls;
pub mod upstream;
