//! What the running kernel can do, probed once at startup: one table of the daemon's kernel
//! features and what each needs (program types with their attach types, helpers per
//! program type, map types, kernel BTF fields).
//!
//! A feature whose requirement is missing is off; only the features that need it are, and
//! [`KernelFeatures::probe`] says so in one warning per feature the config wants, naming the
//! first missing requirement and what stays on. A probe that cannot run at all (typically
//! EPERM: not root) decides nothing: the feature stays "unknown" and the real load reports
//! the real error, as before probing existed.
//!
//! Program types, helpers and map types are probed with aya's `sys::is_*_supported` (which
//! load a trivial program or create a one-entry map, as libbpf does); an attach type aya's
//! probe does not choose (connect6) with the same two-instruction program and that expected
//! attach type; BTF fields with the daemon's own reader (`btf.rs`).
//!
//! Test hook: `MOSN_TEST_DISABLE_KERNEL_FEATURE=<feature>[,<feature>...]` makes the named
//! features' first requirement report missing, as if the kernel lacked it. For tests only
//! (the privileged integration tests force a feature off with it); read here and nowhere else.

use std::fmt;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported};
use tracing::{debug, info, warn};

use super::btf::Btf;

/// The test hook's environment variable.
pub const DISABLE_ENV: &str = "MOSN_TEST_DISABLE_KERNEL_FEATURE";

/// A daemon feature that needs kernel support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// The sk_skb splice fast path (`fast_path: kernel` / `auto`).
    Splice,
    /// Transparent capture's core: connect4/6 redirect, sock_ops, the netns check.
    OutboundCapture,
    /// Inbound capture through sk_lookup.
    InboundCapture,
    /// The getsockopt(SO_ORIGINAL_DST) answer for tools written for iptables REDIRECT.
    OriginalDstGetsockopt,
    /// sk_msg same-host acceleration with backpressure.
    SkMsg,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Feature::Splice,
        Feature::OutboundCapture,
        Feature::InboundCapture,
        Feature::OriginalDstGetsockopt,
        Feature::SkMsg,
    ];

    /// The name in logs, in `/metrics` (`mosn_kernel_feature{feature}`) and in the test hook.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Splice => "splice",
            Feature::OutboundCapture => "outbound_capture",
            Feature::InboundCapture => "inbound_capture",
            Feature::OriginalDstGetsockopt => "original_dst_getsockopt",
            Feature::SkMsg => "sk_msg",
        }
    }

    /// What turning it off means, for the one warning.
    fn off_means(self) -> &'static str {
        match self {
            Feature::Splice => {
                "kernel splice off: fast_path \"auto\" listeners copy in userspace and fast_path \"kernel\" listeners cannot start; capture stays on"
            }
            Feature::OutboundCapture => {
                "transparent capture unavailable (outbound capture is its core); the splice stays on"
            }
            Feature::InboundCapture => {
                "inbound capture off (connections to the workload go to it directly); outbound capture and the splice stay on"
            }
            Feature::OriginalDstGetsockopt => {
                "getsockopt(SO_ORIGINAL_DST) is not answered by mosn (mosn's own listeners are unaffected); capture and the splice stay on"
            }
            Feature::SkMsg => {
                "sk_msg acceleration off (same-host sockets go through TCP); capture and the splice stay on"
            }
        }
    }
}

/// One thing a feature needs from the kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Requirement {
    /// A program type, loaded with the expected attach type the daemon uses.
    Program(ProgramType, &'static str),
    /// A program type with another expected attach type than aya's probe picks
    /// (raw `BPF_PROG_TYPE_*`, `BPF_*` attach type numbers).
    AttachType {
        prog_type: u32,
        attach_type: u32,
        name: &'static str,
    },
    /// A helper callable from a program type.
    Helper(ProgramType, BpfHelper, &'static str),
    /// A map type.
    Map(MapType, &'static str),
    /// A member of a kernel struct in `/sys/kernel/btf/vmlinux` (read at an offset found
    /// there, since aya-ebpf has no CO-RE).
    BtfField(&'static str, &'static str),
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Program(_, n)
            | Requirement::AttachType { name: n, .. }
            | Requirement::Helper(_, _, n)
            | Requirement::Map(_, n) => f.write_str(n),
            Requirement::BtfField(s, m) => write!(f, "{s}.{m} in its BTF"),
        }
    }
}

use Requirement::{AttachType, BtfField, Helper, Map, Program};

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`, `BPF_CGROUP_INET6_CONNECT` (kernel UAPI).
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_INET6_CONNECT: u32 = 11;

/// The table: every kernel feature and everything it needs, in probe order (the first
/// missing one is the one the warning names).
pub const TABLE: &[(Feature, &[Requirement])] = &[
    (
        Feature::Splice,
        &[
            Program(ProgramType::SkSkb, "sk_skb (BPF_PROG_TYPE_SK_SKB)"),
            Map(MapType::SockHash, "SOCKHASH maps (BPF_MAP_TYPE_SOCKHASH)"),
            Map(
                MapType::PerCpuArray,
                "per-CPU arrays (BPF_MAP_TYPE_PERCPU_ARRAY)",
            ),
            Helper(
                ProgramType::SkSkb,
                BpfHelper::BPF_FUNC_sk_redirect_hash,
                "bpf_sk_redirect_hash for sk_skb",
            ),
        ],
    ),
    (
        Feature::OutboundCapture,
        &[
            Program(
                ProgramType::CgroupSockAddr,
                "cgroup/connect4 (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT)",
            ),
            AttachType {
                prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
                attach_type: BPF_CGROUP_INET6_CONNECT,
                name: "cgroup/connect6 (BPF_CGROUP_INET6_CONNECT)",
            },
            Program(ProgramType::SockOps, "sock_ops (BPF_PROG_TYPE_SOCK_OPS)"),
            Map(MapType::SockMap, "SOCKMAP maps (BPF_MAP_TYPE_SOCKMAP)"),
            Map(MapType::LruHash, "LRU hash maps (BPF_MAP_TYPE_LRU_HASH)"),
            Helper(
                ProgramType::CgroupSockAddr,
                BpfHelper::BPF_FUNC_get_netns_cookie,
                "bpf_get_netns_cookie for cgroup/connect (Linux >= 5.7)",
            ),
            Helper(
                ProgramType::CgroupSockAddr,
                BpfHelper::BPF_FUNC_get_current_ancestor_cgroup_id,
                "bpf_get_current_ancestor_cgroup_id for cgroup/connect",
            ),
            Helper(
                ProgramType::SockOps,
                BpfHelper::BPF_FUNC_get_socket_cookie,
                "bpf_get_socket_cookie for sock_ops",
            ),
        ],
    ),
    (
        Feature::InboundCapture,
        &[
            Program(ProgramType::SkLookup, "sk_lookup (BPF_PROG_TYPE_SK_LOOKUP)"),
            Helper(
                ProgramType::SkLookup,
                BpfHelper::BPF_FUNC_sk_assign,
                "bpf_sk_assign for sk_lookup",
            ),
        ],
    ),
    (
        Feature::OriginalDstGetsockopt,
        &[Program(
            ProgramType::CgroupSockopt,
            "cgroup/getsockopt (BPF_PROG_TYPE_CGROUP_SOCKOPT)",
        )],
    ),
    (
        Feature::SkMsg,
        &[
            Program(ProgramType::SkMsg, "sk_msg (BPF_PROG_TYPE_SK_MSG)"),
            Map(MapType::SockHash, "SOCKHASH maps (BPF_MAP_TYPE_SOCKHASH)"),
            Helper(
                ProgramType::SkMsg,
                BpfHelper::BPF_FUNC_msg_redirect_hash,
                "bpf_msg_redirect_hash for sk_msg",
            ),
            Helper(
                ProgramType::SkMsg,
                BpfHelper::BPF_FUNC_probe_read_kernel,
                "bpf_probe_read_kernel for sk_msg",
            ),
            Helper(
                ProgramType::SockOps,
                BpfHelper::BPF_FUNC_sock_hash_update,
                "bpf_sock_hash_update for sock_ops",
            ),
            BtfField("sock", "sk_user_data"),
            BtfField("sk_psock", "msg_tot_len"),
            BtfField("tcp_sock", "write_seq"),
            BtfField("tcp_sock", "snd_una"),
            BtfField("tcp_sock", "rcv_nxt"),
            BtfField("tcp_sock", "copied_seq"),
        ],
    ),
];

/// What probing found for one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    On,
    /// `missing` names the first requirement the kernel lacks.
    Off {
        missing: String,
    },
    /// A probe could not run (e.g. EPERM); the feature is tried and its load says why.
    Unknown {
        error: String,
    },
}

/// The probed state of every [`Feature`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFeatures {
    states: Vec<(Feature, State)>,
}

impl KernelFeatures {
    /// Every feature on, nothing probed (callers that load programs report errors
    /// themselves).
    pub fn assume_all() -> KernelFeatures {
        KernelFeatures {
            states: Feature::ALL.iter().map(|&f| (f, State::On)).collect(),
        }
    }

    /// Probes the running kernel and logs: one warning per feature in `wanted` that is off,
    /// a debug line for the others, one info line with the whole picture.
    pub fn probe(wanted: &[Feature]) -> KernelFeatures {
        super::bump_memlock_rlimit();
        let forced = forced_off(std::env::var(DISABLE_ENV).ok().as_deref());
        let btf = std::cell::OnceCell::new();
        let features = evaluate(TABLE, &forced, |r| check(r, &btf));
        features.log(wanted);
        features
    }

    pub fn state(&self, f: Feature) -> &State {
        self.states
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, s)| s)
            .expect("every feature has a state")
    }

    /// Whether the feature may be used: on, or not known to be off.
    pub fn usable(&self, f: Feature) -> bool {
        !matches!(self.state(f), State::Off { .. })
    }

    /// The requirement the kernel lacks, when the feature is off.
    pub fn missing(&self, f: Feature) -> Option<&str> {
        match self.state(f) {
            State::Off { missing } => Some(missing),
            _ => None,
        }
    }

    pub fn states(&self) -> impl Iterator<Item = (Feature, &State)> {
        self.states.iter().map(|(f, s)| (*f, s))
    }

    fn log(&self, wanted: &[Feature]) {
        for (f, s) in self.states() {
            match s {
                State::Off { missing } if wanted.contains(&f) => {
                    warn!("{}", warning(f, missing));
                }
                State::Off { missing } => {
                    debug!(
                        feature = f.name(),
                        %missing,
                        "kernel feature unsupported (not configured)"
                    );
                }
                State::Unknown { error } => {
                    debug!(feature = f.name(), %error, "kernel feature probe could not run");
                }
                State::On => {}
            }
        }
        let summary: Vec<String> = self
            .states()
            .map(|(f, s)| {
                let v = match s {
                    State::On => "on",
                    State::Off { .. } => "off",
                    State::Unknown { .. } => "unknown",
                };
                format!("{}={v}", f.name())
            })
            .collect();
        info!("kernel features: {}", summary.join(" "));
    }
}

/// The one warning for a wanted feature that is off.
pub fn warning(f: Feature, missing: &str) -> String {
    format!("kernel lacks {missing}: {}", f.off_means())
}

/// Features named in the test hook's value (unknown names are ignored with a warning).
fn forced_off(value: Option<&str>) -> Vec<Feature> {
    let Some(v) = value else {
        return Vec::new();
    };
    v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter_map(|n| {
            let f = Feature::ALL.iter().copied().find(|f| f.name() == n);
            if f.is_none() {
                warn!("{DISABLE_ENV}: unknown kernel feature {n:?} ignored");
            }
            f
        })
        .collect()
}

/// Runs the table: a feature is off at its first requirement `check` says is missing
/// (`Ok(false)`), unknown when a check could not run, else on. Forced features report their
/// first requirement missing without probing. Each requirement is checked at most once.
fn evaluate(
    table: &[(Feature, &[Requirement])],
    forced: &[Feature],
    mut check: impl FnMut(&Requirement) -> Result<bool, String>,
) -> KernelFeatures {
    let mut seen: Vec<(Requirement, Result<bool, String>)> = Vec::new();
    let states = table
        .iter()
        .map(|&(f, reqs)| {
            if forced.contains(&f)
                && let Some(first) = reqs.first()
            {
                return (
                    f,
                    State::Off {
                        missing: format!("{first} (forced off by {DISABLE_ENV})"),
                    },
                );
            }
            let mut unknown = None;
            for r in reqs {
                let result = match seen.iter().find(|(s, _)| s == r) {
                    Some((_, res)) => res.clone(),
                    None => {
                        let res = check(r);
                        seen.push((*r, res.clone()));
                        res
                    }
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => {
                        return (
                            f,
                            State::Off {
                                missing: r.to_string(),
                            },
                        );
                    }
                    Err(e) => {
                        unknown.get_or_insert(format!("{r}: {e}"));
                    }
                }
            }
            let state = match unknown {
                Some(error) => State::Unknown { error },
                None => State::On,
            };
            (f, state)
        })
        .collect();
    KernelFeatures { states }
}

/// Probes one requirement on the running kernel.
fn check(r: &Requirement, btf: &std::cell::OnceCell<Result<Btf, String>>) -> Result<bool, String> {
    match *r {
        Program(t, _) => is_program_supported(t).map_err(|e| e.to_string()),
        AttachType {
            prog_type,
            attach_type,
            ..
        } => load_trivial(prog_type, attach_type),
        Helper(t, h, _) => is_helper_supported(t, h).map_err(|e| e.to_string()),
        Map(t, _) => is_map_supported(t).map_err(|e| e.to_string()),
        BtfField(s, m) => match btf.get_or_init(|| Btf::from_sys_fs().map_err(|e| e.to_string())) {
            // No kernel BTF at all: the field cannot be found either.
            Err(_) => Ok(false),
            Ok(b) => Ok(b.member_offset(s, m).is_ok()),
        },
    }
}

/// Loads `r0 = 0; exit` as `prog_type` with `attach_type` expected: `Ok(false)` on EINVAL
/// (the kernel does not know the pair), like aya's own program probe.
fn load_trivial(prog_type: u32, attach_type: u32) -> Result<bool, String> {
    use std::os::fd::{FromRawFd, OwnedFd};
    const BPF_PROG_LOAD: libc::c_long = 5;
    // struct bpf_insn: code u8, dst_reg:4 src_reg:4, off i16, imm i32.
    let insns: [u64; 2] = [
        0xb7, // mov64 r0, 0
        0x95, // exit
    ];
    let license = c"GPL";
    let mut attr = [0u64; 16];
    // prog_load: prog_type u32, insn_cnt u32, insns u64, license u64, ...,
    // expected_attach_type u32 at byte 68.
    attr[0] = u64::from(prog_type) | ((insns.len() as u64) << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[8] = u64::from(attach_type) << 32;
    match super::capture::bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => {
            // SAFETY: the kernel returned a new program fd that nothing else owns; dropping
            // it unloads the probe.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Requirement = Program(ProgramType::SkLookup, "sk_lookup");
    const B: Requirement = Map(MapType::SockHash, "SOCKHASH");
    const C: Requirement = BtfField("sk_psock", "msg_tot_len");

    fn table() -> Vec<(Feature, &'static [Requirement])> {
        vec![
            (Feature::Splice, &[B]),
            (Feature::InboundCapture, &[A, B]),
            (Feature::SkMsg, &[B, C]),
        ]
    }

    #[test]
    fn a_missing_requirement_turns_off_only_the_features_that_need_it() {
        let mut calls = Vec::new();
        let f = evaluate(&table(), &[], |r| {
            calls.push(*r);
            Ok(*r != A)
        });
        assert!(f.usable(Feature::Splice));
        assert!(f.usable(Feature::SkMsg));
        assert!(!f.usable(Feature::InboundCapture));
        assert_eq!(f.missing(Feature::InboundCapture), Some("sk_lookup"));
        // B is shared by three features and probed once.
        assert_eq!(calls, vec![B, A, C]);
    }

    #[test]
    fn the_first_missing_requirement_is_named_and_btf_fields_read_as_such() {
        let f = evaluate(&table(), &[], |r| Ok(*r != C));
        assert_eq!(
            f.missing(Feature::SkMsg),
            Some("sk_psock.msg_tot_len in its BTF")
        );
        assert_eq!(
            warning(Feature::SkMsg, f.missing(Feature::SkMsg).unwrap()),
            "kernel lacks sk_psock.msg_tot_len in its BTF: sk_msg acceleration off (same-host sockets go through TCP); capture and the splice stay on"
        );
    }

    #[test]
    fn a_probe_that_cannot_run_leaves_the_feature_unknown_and_usable() {
        let f = evaluate(&table(), &[], |r| {
            if *r == B {
                Err("EPERM".into())
            } else {
                Ok(true)
            }
        });
        assert_eq!(
            f.state(Feature::Splice),
            &State::Unknown {
                error: "SOCKHASH: EPERM".into()
            }
        );
        assert!(f.usable(Feature::Splice));
        // A known-missing requirement still wins over an unknown one.
        let f = evaluate(&table(), &[], |r| match *r {
            r if r == B => Err("EPERM".into()),
            r if r == C => Ok(false),
            _ => Ok(true),
        });
        assert!(!f.usable(Feature::SkMsg));
    }

    #[test]
    fn the_test_hook_forces_a_feature_off_without_probing_it() {
        let forced = forced_off(Some("inbound_capture, nonsense"));
        assert_eq!(forced, vec![Feature::InboundCapture]);
        let f = evaluate(&table(), &forced, |r| {
            assert_ne!(*r, A, "a forced feature is not probed");
            Ok(true)
        });
        assert_eq!(
            f.missing(Feature::InboundCapture),
            Some("sk_lookup (forced off by MOSN_TEST_DISABLE_KERNEL_FEATURE)")
        );
        assert!(f.usable(Feature::Splice));
        assert!(f.usable(Feature::SkMsg));
        assert!(forced_off(None).is_empty());
    }

    #[test]
    fn every_feature_is_in_the_table_once() {
        for f in Feature::ALL {
            assert_eq!(TABLE.iter().filter(|(g, _)| *g == f).count(), 1, "{f:?}");
        }
    }

    /// The host kernel (6.18 in CI) has every feature; on 6.1 only sk_msg is off (its BTF
    /// has no `sk_psock.msg_tot_len`).
    #[test]
    fn probing_this_kernel() {
        if !crate::ebpf::capture::capture_or_skip() {
            return;
        }
        let f = KernelFeatures::probe(&Feature::ALL);
        for feature in Feature::ALL {
            let state = f.state(feature);
            if feature == Feature::SkMsg
                && let State::Off { missing } = state
            {
                assert!(missing.contains("msg_tot_len"), "{missing}");
                continue;
            }
            assert_eq!(state, &State::On, "{feature:?}");
        }
    }
}
