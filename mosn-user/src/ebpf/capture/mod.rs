//! Transparent capture: loading (or adopting) the capture programs, pinning them under the
//! pin path, attaching them to workload cgroups and the network namespace, and the maps the
//! proxy reads (original destinations) and writes (policies, listeners, same-host sockets).
//!
//! Pin layout (`capture.pin_path`, default `/sys/fs/bpf/mosn`):
//! ```text
//! maps/<MAP>                      every capture map (created pinned by the loader)
//! progs/<program>                 every capture program
//! links/wl@<cgroup id>@<name>/    connect4, connect6, sockops, getsockopt links of a workload
//! links/odst@<cgroup id>/         getsockopt link of an `original_dst_cgroups` entry
//! links/proxy@<cgroup id>/        sock_ops (sk_msg variant) on the daemon's own cgroup
//! links/lookup@<netns cookie>     the sk_lookup link (and its own program instance) of the
//!                                 daemon's network namespace (see `netns.rs`)
//! ```
//! (bpffs reserves '.' in names, so a '.' in a workload name is written '^'.)
//! Links, programs and maps outlive the daemon: when it dies its listening sockets close,
//! which removes them from `MOSN_CAP_LSN`, and the programs then let every connection go
//! direct (fail open). A restarted daemon carrying the same object adopts the pins (no new
//! programs are loaded); `mosn stop` removes them all.
//!
//! Files: this one is the `Capture` handle and its state; `programs` loads or adopts the
//! programs, `pins` is the pin directory (links, removal, uninstall, the raw link calls),
//! `kernel_form` encodes addresses and policies as the programs read them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, SockHash, SockMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    CgroupAttachMode, CgroupSockAddr, CgroupSockopt, SkLookup, SkMsg, SockOps,
    cgroup_sock_addr::CgroupSockAddrAttachType, cgroup_sockopt::CgroupSockoptAttachType,
};
use aya::{Ebpf, EbpfLoader};
use mosn_ebpf_common::capture::*;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::btf::{Btf, SkMsgOffsets};
use super::netns;
use super::probe::{Feature, KernelFeatures};
use crate::config::{CaptureConfig, Cidr, InboundPorts, WorkloadConfig};

mod kernel_form;
mod pins;
mod programs;

pub use kernel_form::build_policy;
use kernel_form::*;
pub use pins::uninstall;
use pins::*;
pub(super) use pins::{bpf, pin_link, prog};

/// Names of the capture programs (as `bpftool prog` shows them, cut at 15 bytes).
pub const PROGRAM_NAMES: [&str; 7] = PROGRAMS;

/// The embedded capture object; empty when it was not built.
pub static CAPTURE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mosn-capture.o"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "the capture programs were not built into this binary (run `cargo xtask build`, which installs the BPF toolchain)"
    )]
    NotBuilt,
    #[error("capture needs root or CAP_BPF+CAP_NET_ADMIN+CAP_SYS_ADMIN: {0}")]
    NotPermitted(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the capture object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("capture program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("capture link: {0}")]
    Link(#[source] aya::programs::links::LinkError),
    #[error("capture map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("workload {name}: cgroup {cgroup}: {source}")]
    Cgroup {
        name: String,
        cgroup: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("at most {max} workloads can be captured at once")]
    TooManyWorkloads { max: u32 },
    #[error("the capture object is missing {0}")]
    Missing(&'static str),
    #[error("this kernel lacks {0}, which transparent capture needs")]
    KernelLacks(String),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Identity of the embedded object: pins from another build are replaced, not adopted.
pub(super) fn object_id() -> u64 {
    let d = Sha256::digest(CAPTURE_OBJECT);
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

struct Programs {
    connect4: CgroupSockAddr,
    connect6: CgroupSockAddr,
    sockops: SockOps,
    sockops_msg: SockOps,
    /// `None` when the kernel lacks cgroup/getsockopt (`Feature::OriginalDstGetsockopt`).
    getsockopt: Option<CgroupSockopt>,
    /// Attached to the SOCKHASH (a program attachment owned by the pinned map). `None` when
    /// sk_msg is off.
    _sk_msg: Option<SkMsg>,
}

/// Which optional capture programs this kernel runs (from the probe table).
#[derive(Debug, Clone, Copy)]
struct Enabled {
    sk_lookup: bool,
    getsockopt: bool,
    sk_msg: bool,
}

impl Enabled {
    fn new(f: &KernelFeatures) -> Enabled {
        Enabled {
            sk_lookup: f.usable(Feature::InboundCapture),
            getsockopt: f.usable(Feature::OriginalDstGetsockopt),
            sk_msg: f.usable(Feature::SkMsg),
        }
    }

    /// Whether program `name` is loaded and pinned.
    fn has(&self, name: &str) -> bool {
        match name {
            SK_LOOKUP_PROG => self.sk_lookup,
            GETSOCKOPT_PROG => self.getsockopt,
            SK_MSG_PROG => self.sk_msg,
            _ => true,
        }
    }
}

struct Maps {
    policy: HashMap<MapData, u64, WorkloadPolicy>,
    cgroup_cache: HashMap<MapData, u64, CgroupSlot>,
    orig: HashMap<MapData, AddrKey, OrigDst>,
    listeners: SockMap<MapData>,
    inbound: HashMap<MapData, u32, InboundRule>,
    globals: Array<MapData, CaptureGlobals>,
}

/// One attached workload.
#[derive(Debug, Clone)]
struct Attached {
    cfg: WorkloadConfig,
    cgroup_id: u64,
    slot: u32,
}

struct State {
    maps: Maps,
    progs: Programs,
    globals: CaptureGlobals,
    workloads: BTreeMap<String, Attached>,
    /// Ports of the proxy's own listeners: never steered by a wildcard inbound rule.
    own_ports: BTreeSet<u16>,
    /// Whether sk_msg can run: workloads asking for it get the sock_ops variant that joins
    /// the sk_msg SOCKHASH only then (otherwise their sockets would take the slower tcp_bpf
    /// send path for nothing).
    sk_msg: bool,
}

/// The loaded (or adopted) capture programs. One per daemon.
pub struct Capture {
    pin: PathBuf,
    state: Mutex<State>,
    stats: PerCpuArray<MapData, u64>,
    adopted: bool,
    sk_msg_available: bool,
    enabled: Enabled,
    /// Keeps a freshly loaded object's fds until everything is pinned.
    _ebpf: Option<Ebpf>,
}

/// Per-workload counters read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadStats {
    pub workload: String,
    pub values: [u64; STAT_SLOTS as usize],
}

impl Capture {
    /// Loads the capture object, or adopts the one pinned under `cfg.pin_path` when it is
    /// the same build. Nothing is attached to workloads yet (see [`Capture::apply_workloads`]).
    ///
    /// `features` (the startup probe) decides which programs load: without outbound capture
    /// nothing does; without sk_lookup, cgroup/getsockopt or sk_msg only that program is left
    /// out (the probe has already said so in its one warning).
    pub fn install(
        cfg: &CaptureConfig,
        features: &KernelFeatures,
    ) -> Result<Capture, CaptureError> {
        if CAPTURE_OBJECT.is_empty() {
            return Err(CaptureError::NotBuilt);
        }
        if let Some(missing) = features.missing(Feature::OutboundCapture) {
            return Err(CaptureError::KernelLacks(missing.to_string()));
        }
        let enabled = Enabled::new(features);
        let pin = cfg.pin_path.clone();
        let id = object_id();
        let adopted = match pinned_object_id(&pin) {
            Some(pinned) if pinned == id && all_programs_pinned(&pin, &enabled) => true,
            Some(_) | None => {
                if pin.exists() {
                    info!(pin = %pin.display(), "replacing capture programs pinned by another build");
                    uninstall(&pin)?;
                }
                false
            }
        };
        super::bump_memlock_rlimit();
        let (progs, ebpf) = if adopted {
            (Programs::from_pins(&pin, &enabled)?, None)
        } else {
            let (p, e) = Programs::load(&pin, &enabled)?;
            (p, Some(e))
        };
        let maps = Maps::open(&pin)?;
        let stats: PerCpuArray<MapData, u64> = open_map(&pin, STATS_MAP)?;
        // The probe checked these fields (`Feature::SkMsg`) and warned when one is missing.
        let offsets = if enabled.sk_msg {
            match Btf::from_sys_fs().map(|b| SkMsgOffsets::find(&b)) {
                Ok(Ok(o)) => Some(o),
                Ok(Err(e)) => {
                    warn!(error = %e, "sk_msg acceleration off: kernel BTF lacks a field it reads");
                    None
                }
                Err(e) => {
                    warn!(error = %e, "sk_msg acceleration off: no kernel BTF");
                    None
                }
            }
        } else {
            None
        };
        let mut globals = CaptureGlobals {
            object_id: id,
            proxy_mark: cfg.proxy_mark,
            sk_msg_queue_limit: cfg.sk_msg.queue_limit,
            ..Default::default()
        };
        match cfg.inbound_passthrough_source {
            IpAddr::V4(a) => globals.passthrough_ip4 = u32::from_ne_bytes(a.octets()),
            IpAddr::V6(a) => globals.passthrough_ip6 = words(&a),
        }
        if let Some(o) = offsets {
            globals.flags |= GLOBAL_OFFSETS_OK;
            globals.off_sk_user_data = o.sk_user_data;
            globals.off_psock_msg_tot_len = o.psock_msg_tot_len;
            globals.off_write_seq = o.write_seq;
            globals.off_snd_una = o.snd_una;
            globals.off_rcv_nxt = o.rcv_nxt;
            globals.off_copied_seq = o.copied_seq;
        }
        let mut state = State {
            maps,
            progs,
            globals,
            workloads: BTreeMap::new(),
            own_ports: BTreeSet::new(),
            sk_msg: offsets.is_some(),
        };
        // Until the listener is set, connects are not redirected (outbound_port 0).
        state.write_globals()?;
        if adopted {
            state.recover_workloads()?;
        }
        info!(pin = %pin.display(), adopted, "capture programs ready");
        Ok(Capture {
            pin,
            state: Mutex::new(state),
            stats,
            adopted,
            sk_msg_available: offsets.is_some(),
            enabled,
            _ebpf: ebpf,
        })
    }

    /// Whether the pinned programs of a previous daemon were adopted.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    pub fn pin_path(&self) -> &Path {
        &self.pin
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the outbound listener: connects are redirected to `addr` (an unspecified address
    /// becomes loopback) while `listener` is open.
    pub fn set_outbound_listener(
        &self,
        listener: &impl AsRawFd,
        addr: SocketAddr,
    ) -> Result<(), CaptureError> {
        let mut s = self.lock();
        let g = &mut s.globals;
        g.outbound_port = u32::from(addr.port());
        g.flags |= GLOBAL_OUTBOUND_V6;
        match addr.ip() {
            IpAddr::V4(a) => {
                let a = if a.is_unspecified() {
                    Ipv4Addr::LOCALHOST
                } else {
                    a
                };
                g.outbound_ip4 = u32::from_ne_bytes(a.octets());
                // IPv6 sockets reach an IPv4 listener through the mapped address.
                g.outbound_ip6 = v4_mapped(g.outbound_ip4);
            }
            IpAddr::V6(a) => {
                let a = if a.is_unspecified() {
                    Ipv6Addr::LOCALHOST
                } else {
                    a
                };
                g.outbound_ip6 = words(&a);
                // An IPv6 listener on `::` also takes IPv4 (dual stack); on a specific
                // address only IPv6.
                g.outbound_ip4 = if addr.ip().is_unspecified() {
                    u32::from_ne_bytes(Ipv4Addr::LOCALHOST.octets())
                } else {
                    0
                };
            }
        }
        // SAFETY: the caller's listener fd stays open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(listener.as_raw_fd()) };
        s.globals.outbound_netns = netns::listener_netns(fd);
        s.own_ports.insert(addr.port());
        s.maps.listeners.set(LISTENER_OUTBOUND, listener, 0)?;
        s.write_globals()?;
        s.write_inbound()
    }

    /// Sets the inbound listener and attaches sk_lookup to the daemon's network namespace
    /// (an instance that hands connections only to a listener of that namespace).
    pub fn set_inbound_listener(
        &self,
        listener: &impl AsRawFd,
        addr: SocketAddr,
    ) -> Result<(), CaptureError> {
        let mut s = self.lock();
        // SAFETY: the caller's listener fd stays open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(listener.as_raw_fd()) };
        s.globals.inbound_netns = netns::listener_netns(fd);
        s.own_ports.insert(addr.port());
        if !self.enabled.sk_lookup {
            // The probe warned once: inbound connections reach the workload directly.
            return Ok(());
        }
        s.maps.listeners.set(LISTENER_INBOUND, listener, 0)?;
        s.write_globals()?;
        s.write_inbound()?;
        netns::attach_sk_lookup(&self.pin)
    }

    /// Whether inbound capture (sk_lookup) runs on this kernel.
    pub fn inbound_available(&self) -> bool {
        self.enabled.sk_lookup
    }

    /// Records the proxy's other listener ports (never steered by a `*` inbound rule).
    pub fn add_own_ports(&self, ports: impl IntoIterator<Item = u16>) -> Result<(), CaptureError> {
        let mut s = self.lock();
        s.own_ports.extend(ports);
        s.write_inbound()
    }

    /// Makes the attached workloads exactly `desired`: attaches new ones, updates changed
    /// policies in place, detaches the ones no longer wanted. Returns the errors of workloads
    /// that could not be attached (e.g. their cgroup does not exist); the others are applied.
    pub fn apply_workloads(&self, desired: &[WorkloadConfig]) -> Vec<CaptureError> {
        let mut s = self.lock();
        let mut errors = Vec::new();
        let wanted: BTreeSet<&str> = desired.iter().map(|w| w.name.as_str()).collect();
        let gone: Vec<String> = s
            .workloads
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Err(e) = s.detach(&self.pin, &name) {
                errors.push(e);
            }
        }
        for w in desired {
            if let Err(e) = s.attach(&self.pin, w) {
                errors.push(e);
            }
        }
        if let Err(e) = s.write_inbound() {
            errors.push(e);
        }
        errors
    }

    /// Names of the attached workloads.
    pub fn workloads(&self) -> Vec<String> {
        self.lock()
            .workloads
            .keys()
            .filter(|n| !n.starts_with('\0'))
            .cloned()
            .collect()
    }

    /// Attaches the getsockopt(SO_ORIGINAL_DST) program to another cgroup (where a tool
    /// written for iptables REDIRECT accepts captured connections).
    pub fn attach_original_dst_cgroup(&self, cgroup: &Path) -> Result<(), CaptureError> {
        let s = self.lock();
        let Some(getsockopt) = &s.progs.getsockopt else {
            return Ok(());
        };
        let (fd, id) = open_cgroup("original_dst_cgroups", cgroup)?;
        let dir = self.pin.join("links").join(format!("odst@{id}"));
        if dir.join("getsockopt").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        link_getsockopt(getsockopt, &fd, &dir.join("getsockopt"))
    }

    /// Where the connection whose client socket is `client` was going (and forgets it: each
    /// captured connection is accepted once).
    pub fn take_original_dst(&self, client: SocketAddr) -> Option<SocketAddr> {
        let key = addr_key(client);
        let mut s = self.lock();
        let orig = s.maps.orig.get(&key, 0).ok()?;
        let _ = s.maps.orig.remove(&key);
        Some(orig_to_addr(&orig))
    }

    /// Attaches the sk_msg variant of sock_ops to the daemon's own cgroup, so the proxy's
    /// same-host sockets (accepted from captured workloads, or connected to same-host
    /// servers) join the sk_msg SOCKHASH. Skipped, with a warning, when the daemon runs in
    /// the root cgroup: that would touch every socket of the machine.
    pub fn attach_proxy_cgroup(&self) -> Result<(), CaptureError> {
        if !self.sk_msg_available {
            return Ok(());
        }
        let own = Path::new("/proc/self/cgroup");
        let text = std::fs::read_to_string(own).map_err(io_err(own))?;
        let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            warn!("sk_msg: no cgroup v2 entry in /proc/self/cgroup; proxy sockets not accelerated");
            return Ok(());
        };
        if rel == "/" {
            warn!(
                "sk_msg: the daemon runs in the root cgroup; start it in its own cgroup to accelerate its sockets"
            );
            return Ok(());
        }
        let path = cgroup2_root().join(rel.trim_start_matches('/'));
        let (fd, id) = open_cgroup("mosn", &path)?;
        let dir = self.pin.join("links").join(format!("proxy@{id}"));
        if dir.join("sockops").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut s = self.lock();
        let ops = &mut s.progs.sockops_msg;
        let lid = ops
            .attach(&fd, CgroupAttachMode::Single)
            .map_err(prog(SOCKOPS_MSG_PROG))?;
        let l = ops.take_link(lid).map_err(prog(SOCKOPS_MSG_PROG))?;
        pin_link(fd_link(l)?, &dir.join("sockops"))?;
        info!(cgroup = %path.display(), "sk_msg: proxy sockets join same-host acceleration");
        Ok(())
    }

    /// Whether sk_msg acceleration can run (the kernel's BTF has the fields it reads).
    pub fn sk_msg_available(&self) -> bool {
        self.sk_msg_available
    }

    /// Per-workload counters summed over CPUs; slot 0 is reported as workload "mosn" (the
    /// proxy's own sockets).
    pub fn stats(&self) -> Vec<WorkloadStats> {
        let names: Vec<(u32, String)> = {
            let s = self.lock();
            let mut v: Vec<(u32, String)> = s
                .workloads
                .values()
                .map(|a| (a.slot, a.cfg.name.clone()))
                .collect();
            v.push((0, "mosn".to_string()));
            v
        };
        names
            .into_iter()
            .map(|(slot, workload)| {
                let mut values = [0u64; STAT_SLOTS as usize];
                for stat in Stat::ALL {
                    if let Ok(per_cpu) = self.stats.get(&(slot * STAT_SLOTS + stat as u32), 0) {
                        values[stat as usize] = per_cpu.iter().sum();
                    }
                }
                WorkloadStats { workload, values }
            })
            .collect()
    }
}

impl crate::network::OriginalDstLookup for Capture {
    fn original_dst(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.take_original_dst(client)
    }
}

impl State {
    fn write_globals(&mut self) -> Result<(), CaptureError> {
        self.maps.globals.set(0, self.globals, 0)?;
        Ok(())
    }

    /// Rebuilds the inbound port map from the attached workloads.
    fn write_inbound(&mut self) -> Result<(), CaptureError> {
        let mut want: BTreeMap<u32, InboundRule> = BTreeMap::new();
        let mut wildcard = false;
        for a in self.workloads.values() {
            match &a.cfg.inbound_ports {
                InboundPorts::None => {}
                InboundPorts::All => {
                    wildcard = true;
                    want.insert(
                        0,
                        InboundRule {
                            slot: a.slot,
                            flags: INBOUND_CAPTURE,
                        },
                    );
                }
                InboundPorts::Only(ports) => {
                    for &p in ports {
                        want.insert(
                            u32::from(p),
                            InboundRule {
                                slot: a.slot,
                                flags: INBOUND_CAPTURE,
                            },
                        );
                    }
                }
            }
            for &p in &a.cfg.exclude_inbound_ports {
                want.insert(
                    u32::from(p),
                    InboundRule {
                        slot: a.slot,
                        flags: INBOUND_EXCLUDE,
                    },
                );
            }
        }
        if wildcard {
            for &p in &self.own_ports {
                want.insert(
                    u32::from(p),
                    InboundRule {
                        slot: 0,
                        flags: INBOUND_EXCLUDE,
                    },
                );
            }
        }
        let have: Vec<u32> = self.maps.inbound.keys().filter_map(Result::ok).collect();
        for k in have {
            if !want.contains_key(&k) {
                let _ = self.maps.inbound.remove(&k);
            }
        }
        for (k, v) in want {
            self.maps.inbound.insert(k, v, 0)?;
        }
        Ok(())
    }

    /// After adoption: the workloads the previous daemon attached are known by their link
    /// directories and policies; keep their slots so counters continue.
    fn recover_workloads(&mut self) -> Result<(), CaptureError> {
        let slots: Vec<(u64, WorkloadPolicy)> =
            self.maps.policy.iter().filter_map(Result::ok).collect();
        // The configs are re-applied by the daemon; remember the slot per cgroup id so a
        // re-applied workload keeps it.
        for (cg, p) in slots {
            self.workloads.insert(
                format!("\0adopted.{cg}"),
                Attached {
                    cfg: placeholder(cg),
                    cgroup_id: cg,
                    slot: p.slot,
                },
            );
        }
        Ok(())
    }

    fn free_slot(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.workloads.values().map(|a| a.slot).collect();
        (1..MAX_WORKLOADS).find(|s| !used.contains(s))
    }

    fn attach(&mut self, pin: &Path, w: &WorkloadConfig) -> Result<(), CaptureError> {
        let (cg_fd, cg_id) = open_cgroup(&w.name, &w.cgroup)?;
        if let Some(a) = self.workloads.get(&w.name) {
            if a.cgroup_id == cg_id && a.cfg == *w {
                return Ok(());
            }
            if a.cgroup_id != cg_id || a.cfg.sk_msg != w.sk_msg {
                // Another cgroup (or another sock_ops variant): re-attach from scratch.
                self.detach(pin, &w.name)?;
            }
        }
        // A workload adopted from the previous daemon: take over its slot and links.
        let adopted_key = format!("\0adopted.{cg_id}");
        let adopted = self.workloads.remove(&adopted_key);
        let slot = match (self.workloads.get(&w.name), &adopted) {
            (Some(a), _) => a.slot,
            (None, Some(a)) => a.slot,
            (None, None) => self.free_slot().ok_or(CaptureError::TooManyWorkloads {
                max: MAX_WORKLOADS - 1,
            })?,
        };
        let policy = build_policy(w, slot);
        self.maps.policy.insert(cg_id, policy, 0)?;
        let dir = link_dir(pin, &w.name, cg_id);
        // Links pinned by an earlier daemon for this cgroup under another name go away.
        remove_other_links(pin, &w.name, cg_id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let link_path = |n: &str| dir.join(n);
        let p = &mut self.progs;
        if !link_path("connect4").exists() {
            let id = p
                .connect4
                .attach(&cg_fd, CgroupAttachMode::Single)
                .map_err(prog(CONNECT4_PROG))?;
            let l = p.connect4.take_link(id).map_err(prog(CONNECT4_PROG))?;
            pin_link(fd_link(l)?, &link_path("connect4"))?;
        }
        if !link_path("connect6").exists() {
            let id = p
                .connect6
                .attach(&cg_fd, CgroupAttachMode::Single)
                .map_err(prog(CONNECT6_PROG))?;
            let l = p.connect6.take_link(id).map_err(prog(CONNECT6_PROG))?;
            pin_link(fd_link(l)?, &link_path("connect6"))?;
        }
        if !link_path("sockops").exists() {
            let ops = if w.sk_msg && self.sk_msg {
                &mut p.sockops_msg
            } else {
                &mut p.sockops
            };
            let id = ops
                .attach(&cg_fd, CgroupAttachMode::Single)
                .map_err(prog(SOCKOPS_PROG))?;
            let l = ops.take_link(id).map_err(prog(SOCKOPS_PROG))?;
            pin_link(fd_link(l)?, &link_path("sockops"))?;
        }
        if let Some(g) = &p.getsockopt
            && !link_path("getsockopt").exists()
        {
            link_getsockopt(g, &cg_fd, &link_path("getsockopt"))?;
        }
        info!(workload = %w.name, cgroup = %w.cgroup.display(), cgroup_id = cg_id, slot, sk_msg = w.sk_msg, "capturing workload");
        self.workloads.insert(
            w.name.clone(),
            Attached {
                cfg: w.clone(),
                cgroup_id: cg_id,
                slot,
            },
        );
        Ok(())
    }

    fn detach(&mut self, pin: &Path, name: &str) -> Result<(), CaptureError> {
        let Some(a) = self.workloads.remove(name) else {
            return Ok(());
        };
        let _ = self.maps.policy.remove(&a.cgroup_id);
        // Cached leaf cgroups of this workload would otherwise still find it.
        let stale: Vec<u64> = self
            .maps
            .cgroup_cache
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, c)| c.workload_cgroup == a.cgroup_id)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.maps.cgroup_cache.remove(&k);
        }
        if name.starts_with('\0') {
            // Adopted and not re-applied: whatever name the previous daemon used.
            remove_other_links(pin, "\0", a.cgroup_id);
        } else {
            remove_pins(&link_dir(pin, name, a.cgroup_id));
        }
        info!(workload = %name, "workload no longer captured");
        Ok(())
    }
}

/// A stand-in config for a workload known only from the pinned policy map.
fn placeholder(cg: u64) -> WorkloadConfig {
    WorkloadConfig {
        name: format!("adopted.{cg}"),
        cgroup: PathBuf::new(),
        include_outbound_ports: Vec::new(),
        exclude_outbound_ports: Vec::new(),
        include_outbound_cidrs: Vec::new(),
        exclude_outbound_cidrs: Vec::new(),
        inbound_ports: InboundPorts::None,
        exclude_inbound_ports: Vec::new(),
        exclude_uids: Vec::new(),
        exclude_gids: Vec::new(),
        sk_msg: false,
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup/unified` on hybrid systems, else
/// `/sys/fs/cgroup`).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .next()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// Opens a cgroup v2 directory; its inode number is the id `bpf_get_current_cgroup_id`
/// returns.
fn open_cgroup(name: &str, path: &Path) -> Result<(std::fs::File, u64), CaptureError> {
    let err = |source| CaptureError::Cgroup {
        name: name.to_string(),
        cgroup: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let md = f.metadata().map_err(err)?;
    if !md.is_dir() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a cgroup directory",
        )));
    }
    Ok((f, md.ino()))
}

/// A capture config for tests: sidecar mode, sk_msg on, no workloads.
#[cfg(test)]
pub(crate) fn test_config_for(pin: &Path) -> CaptureConfig {
    use crate::config::{CaptureMode, SkMsgConfig};
    CaptureConfig {
        mode: CaptureMode::Sidecar,
        outbound_listener: "outbound".into(),
        inbound_listener: None,
        pin_path: pin.to_path_buf(),
        proxy_mark: 0x4d4f_534e,
        inbound_passthrough_source: "127.0.0.6".parse().unwrap(),
        sk_msg: SkMsgConfig {
            enabled: true,
            queue_limit: 1 << 20,
        },
        original_dst_cgroups: Vec::new(),
        workloads: Vec::new(),
        workloads_dir: None,
    }
}

/// For privileged tests: whether capture can be installed here (root and the object built
/// in); skips (returns false) otherwise, and fails instead when `CI` is set.
#[cfg(test)]
pub(crate) fn capture_or_skip() -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    if root && !CAPTURE_OBJECT.is_empty() {
        return true;
    }
    let why = if root {
        "the capture object is not built in"
    } else {
        "not root"
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "privileged test must run in CI, but {why}"
    );
    eprintln!("SKIP: {why} (run `cargo xtask test` as root)");
    false
}

#[cfg(test)]
mod tests;
