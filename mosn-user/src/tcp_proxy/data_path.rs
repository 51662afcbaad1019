//! Which data path a tcp_proxy connection takes: the listener's `fast_path` resolved against
//! what loaded ([`DataPath`]), and for `auto` the per-connection rule that hands a connection
//! from the userspace copy to the kernel splice ([`AutoRule`]).

use std::sync::Arc;

use super::copy::DirectionStats;
use crate::config::FastPath;
use crate::ebpf::Splicer;

/// The per-connection choice between the userspace copy and the kernel splice for
/// `fast_path: auto`; the measurements behind it are in `docs/ARCHITECTURE.md` ("Choosing the
/// data path").
///
/// The kernel splice saves the daemon a wake-up per message, which is what bounds a
/// request/response connection when the daemon is otherwise idle (single-connection rates
/// triple); but its work runs in softirq and a kworker on the CPU that received the segment and
/// is not batched, so it loses to the userspace copy on bulk transfer and once the daemon is busy
/// enough that its wake-ups are amortised over many connections. So a connection starts in
/// userspace and is handed to the kernel when
/// 1. it behaves as request/response: at least `min_reads_each_way` reads in each direction,
///    none of which filled the copy buffer (a bulk connection stays in userspace for good), and
/// 2. the daemon is latency-bound: at most `max_active` connections are open on `auto`
///    listeners (each message then costs the daemon a wake-up of its own; with more
///    connections the wake-ups are shared and the copy wins), and
/// 3. fewer than `max_spliced` connections handed off by `auto` are spliced right now (their
///    work all lands on the CPU that receives the segments).
#[derive(Debug, Clone)]
pub struct AutoRule {
    pub min_reads_each_way: u64,
    pub max_active: usize,
    pub max_spliced: usize,
    spliced: Arc<std::sync::atomic::AtomicUsize>,
    active: Arc<std::sync::atomic::AtomicUsize>,
}

/// Default of [`AutoRule::min_reads_each_way`]: one exchange can be a greeting; two show the
/// request/response pattern.
pub const AUTO_MIN_READS_EACH_WAY: u64 = 2;
/// Default of [`AutoRule::max_spliced`] (`mosn start --auto-max-spliced`), from the crossover
/// measured in `docs/ARCHITECTURE.md`: every spliced connection's work lands on the CPU that
/// receives its segments, and a second one competes with the first there.
pub const AUTO_MAX_SPLICED: usize = 1;
/// Default of [`AutoRule::max_active`] (`mosn start --auto-max-active`): the kernel path won at
/// 1 and 2 concurrent connections and lost from 4 on (`docs/ARCHITECTURE.md`).
pub const AUTO_MAX_ACTIVE: usize = 2;

impl Default for AutoRule {
    fn default() -> Self {
        AutoRule {
            min_reads_each_way: AUTO_MIN_READS_EACH_WAY,
            max_active: AUTO_MAX_ACTIVE,
            max_spliced: AUTO_MAX_SPLICED,
            spliced: Default::default(),
            active: Default::default(),
        }
    }
}

/// A counted slot of the auto rule (an open or a spliced connection); frees it on drop.
pub struct AutoSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for AutoSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl AutoRule {
    /// The rule with its default read threshold and the given limits.
    pub fn with_limits(max_active: usize, max_spliced: usize) -> AutoRule {
        AutoRule {
            max_active,
            max_spliced,
            ..AutoRule::default()
        }
    }

    /// Counts a connection of an `auto` listener as open until the returned guard drops.
    pub fn open_connection(&self) -> AutoSlot {
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        AutoSlot(Arc::clone(&self.active))
    }

    /// Is the daemon in the regime where the splice wins (few open connections)?
    pub fn latency_bound(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed) <= self.max_active
    }

    /// Does this connection's traffic so far look like request/response?
    pub fn is_request_response(&self, d2u: &DirectionStats, u2d: &DirectionStats) -> bool {
        d2u.full_reads == 0
            && u2d.full_reads == 0
            && d2u.reads >= self.min_reads_each_way
            && u2d.reads >= self.min_reads_each_way
    }

    /// Takes a splice slot if the budget allows.
    pub fn try_take_slot(&self) -> Option<AutoSlot> {
        use std::sync::atomic::Ordering::Relaxed;
        self.spliced
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < self.max_spliced).then_some(n + 1)
            })
            .ok()
            .map(|_| AutoSlot(Arc::clone(&self.spliced)))
    }

    /// Connections currently spliced by this rule.
    pub fn spliced_now(&self) -> usize {
        self.spliced.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Which data path a connection of this listener starts on.
#[derive(Clone)]
pub enum DataPath {
    Userspace,
    Kernel(Arc<Splicer>),
    Auto(Arc<Splicer>, AutoRule),
}

impl DataPath {
    pub fn name(&self) -> &'static str {
        match self {
            DataPath::Userspace => "userspace",
            DataPath::Kernel(_) => "kernel",
            DataPath::Auto(..) => "auto",
        }
    }

    /// Resolves a listener's `fast_path` against what loaded.
    /// `auto` is shared by every `auto` listener of the daemon (one splice budget).
    pub fn resolve(
        fast_path: FastPath,
        splicer: Option<&Arc<Splicer>>,
        auto: &AutoRule,
    ) -> Option<DataPath> {
        match (fast_path, splicer) {
            (FastPath::Userspace, _) => Some(DataPath::Userspace),
            (FastPath::Kernel, Some(s)) => Some(DataPath::Kernel(Arc::clone(s))),
            (FastPath::Auto, Some(s)) => Some(DataPath::Auto(Arc::clone(s), auto.clone())),
            (FastPath::Auto, None) => Some(DataPath::Userspace),
            (FastPath::Kernel, None) => None,
        }
    }
}
