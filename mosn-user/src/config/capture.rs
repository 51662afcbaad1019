//! Transparent capture (our extension: the top-level `capture` object): which workloads'
//! connections the kernel programs steer into the proxy, and how the proxy keeps its own
//! sockets out of that.
//!
//! ```text
//! "capture": {
//!   "mode": "sidecar" | "node",                  default sidecar
//!   "outbound_listener": "<listener>",           required; a `use_original_dst: "redirect"` listener
//!   "inbound_listener": "<listener>",            optional; a `use_original_dst: "tproxy"` listener
//!   "pin_path": "/sys/fs/bpf/mosn",
//!   "proxy_mark": 1297044302,                    SO_MARK of the proxy's upstream sockets, != 0
//!   "inbound_passthrough_source": "127.0.0.6",
//!   "sk_msg": { "enabled": false, "queue_limit": "1MiB" },
//!   "original_dst_cgroups": ["/sys/fs/cgroup/..."],
//!   "workloads": [ <workload>... ],              sidecar: exactly one; node: any number
//!   "workloads_dir": "/etc/mosn/workloads"       node only: one <workload> per .json/.yaml/.yml file
//! }
//! ```
//!
//! The limits below are those of the kernel's per-workload policy value (fixed-size arrays);
//! they must match `mosn-ebpf/common`. Validation refuses more, naming the field and the limit.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::Serialize;

use super::model::Cidr;

/// At most this many entries in each outbound port list (include, exclude).
pub const MAX_PORT_RANGES: usize = 16;
/// At most this many IPv4 and, separately, this many IPv6 prefixes in each CIDR list.
pub const MAX_CIDRS_PER_FAMILY: usize = 16;
/// At most this many excluded uids, and this many excluded gids.
pub const MAX_IDS: usize = 8;
/// At most this many ports in `include_inbound_ports` and `exclude_inbound_ports` together.
pub const MAX_INBOUND_PORTS: usize = 64;
/// At most this many workloads configured inline (the policy map's capacity; the node-mode
/// watcher enforces it for `workloads_dir` too).
pub const MAX_WORKLOADS: usize = 254;

/// Default `pin_path`: where the maps and links are pinned so a restart reuses them.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/mosn";
/// Default `proxy_mark`: "MOSN" in ASCII, unlikely to collide with marks other software
/// (kube-proxy 0x4000/0x8000, Istio 1337, Cilium 0x0X00) sets.
pub const DEFAULT_PROXY_MARK: u32 = 0x4d4f_534e;
/// Default `inbound_passthrough_source`: Istio's choice; a loopback address the workload
/// never uses itself, so the proxy's forwarded inbound connections are recognisable.
pub const DEFAULT_INBOUND_PASSTHROUGH_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
/// Default `sk_msg.queue_limit`: 1 MiB.
pub const DEFAULT_SK_MSG_QUEUE_LIMIT: u32 = 1 << 20;
/// Allowed `sk_msg.queue_limit`: below 64 KiB a busy connection stalls on every burst; above
/// 64 MiB one connection could pin that much kernel memory.
pub const SK_MSG_QUEUE_LIMITS: RangeInclusive<u64> = (64 << 10)..=(64 << 20);

/// The validated `capture` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureConfig {
    pub mode: CaptureMode,
    /// Name of the listener captured outbound connections are redirected to (a
    /// `use_original_dst: "redirect"` listener with a fixed port).
    pub outbound_listener: String,
    /// Name of the listener captured inbound connections are handed to (a
    /// `use_original_dst: "tproxy"` listener with a fixed port), if inbound capture is used.
    pub inbound_listener: Option<String>,
    /// bpffs directory for the pinned maps and links.
    pub pin_path: PathBuf,
    /// `SO_MARK` the proxy puts on its own upstream sockets, so they are never captured.
    /// Never 0.
    pub proxy_mark: u32,
    /// Source address the proxy binds when it forwards captured inbound traffic to the
    /// workload (never recaptured).
    pub inbound_passthrough_source: IpAddr,
    pub sk_msg: SkMsgConfig,
    /// Extra cgroups (besides the proxy's own) where `getsockopt(SO_ORIGINAL_DST)` is
    /// answered by the capture programs.
    pub original_dst_cgroups: Vec<PathBuf>,
    /// Workloads configured inline (sidecar: exactly one).
    pub workloads: Vec<WorkloadConfig>,
    /// Node mode: a directory of per-workload files, watched by the daemon.
    pub workloads_dir: Option<PathBuf>,
}

/// `capture.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// One proxy per workload (exactly one inline workload).
    Sidecar,
    /// One proxy per node for many workloads (inline and/or from `workloads_dir`).
    Node,
}

/// `capture.sk_msg`: local-to-local acceleration of captured connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SkMsgConfig {
    /// Default for workloads that do not say (`sk_msg` of a workload).
    pub enabled: bool,
    /// Bytes a redirected socket may have queued, in
    /// [`SK_MSG_QUEUE_LIMITS`] (default [`DEFAULT_SK_MSG_QUEUE_LIMIT`]).
    pub queue_limit: u32,
}

/// One captured workload (a cgroup).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadConfig {
    /// Unique, `[A-Za-z0-9_.-]{1,64}`; from a `workloads_dir` file, the file stem by default.
    pub name: String,
    /// Absolute cgroup v2 directory (existence is checked when attaching, not here).
    pub cgroup: PathBuf,
    /// Inclusive destination port ranges to capture; empty = every port.
    pub include_outbound_ports: Vec<(u16, u16)>,
    pub exclude_outbound_ports: Vec<(u16, u16)>,
    /// Destination prefixes to capture; empty = every address.
    pub include_outbound_cidrs: Vec<Cidr>,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// `include_inbound_ports`.
    pub inbound_ports: InboundPorts,
    pub exclude_inbound_ports: Vec<u16>,
    /// Sockets of these users/groups are never captured.
    pub exclude_uids: Vec<u32>,
    pub exclude_gids: Vec<u32>,
    /// Resolved: the workload's own `sk_msg`, else `capture.sk_msg.enabled`.
    pub sk_msg: bool,
}

/// Which inbound ports of a workload are captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InboundPorts {
    /// None (`include_inbound_ports` absent or empty): no inbound capture.
    None,
    /// `"*"`: every port (minus `exclude_inbound_ports`).
    All,
    /// These ports.
    Only(Vec<u16>),
}
