//! Running transparent capture in the daemon: installing (or adopting) the capture programs,
//! pointing them at the bound listeners, attaching the configured workloads, and in node mode
//! following a directory of per-workload files as workloads come and go.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mosn_ebpf_common::capture::Stat;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{
    CaptureConfig, CaptureMode, Config, WorkloadConfig, parse_workload_with_warnings,
};
use crate::ebpf::{Capture, CaptureError, KernelFeatures};
use crate::metrics::{Sample, SampleKind, SampleSource};

/// How often node mode rescans `workloads_dir`.
pub const WORKLOADS_DIR_POLL: Duration = Duration::from_secs(1);

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureStartError {
    #[error("capture: {0}")]
    Install(#[from] CaptureError),
    #[error("capture: listener {0} is not bound")]
    NoListener(String),
    #[error("capture: workload {0}")]
    Workload(String),
}

/// The capture programs plus the node-mode watcher.
pub struct CaptureControl {
    pub capture: Arc<Capture>,
    stop: CancellationToken,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl CaptureControl {
    /// Installs or adopts the programs (before the listeners are bound, so a failure leaves
    /// nothing behind).
    pub fn install(
        cfg: &CaptureConfig,
        features: &KernelFeatures,
    ) -> Result<Arc<Capture>, CaptureStartError> {
        Ok(Arc::new(Capture::install(cfg, features)?))
    }

    /// Points the programs at the bound listeners and attaches the workloads. `listeners`
    /// are the daemon's bound listeners by name: (local address, socket).
    pub fn start(
        capture: Arc<Capture>,
        config: &Config,
        listeners: &[(String, std::net::SocketAddr, std::os::fd::BorrowedFd<'_>)],
    ) -> Result<CaptureControl, CaptureStartError> {
        let cfg = config.capture.as_ref().expect("capture configured");
        let find = |name: &str| {
            listeners
                .iter()
                .find(|(n, _, _)| n == name)
                .ok_or_else(|| CaptureStartError::NoListener(name.to_string()))
        };
        let mut own: Vec<u16> = listeners.iter().map(|(_, a, _)| a.port()).collect();
        if let Some(a) = config.admin {
            own.push(a.port());
        }
        capture.add_own_ports(own)?;
        let (_, addr, fd) = find(&cfg.outbound_listener)?;
        capture.set_outbound_listener(&fd.as_fd(), *addr)?;
        if let Some(name) = &cfg.inbound_listener {
            let (_, addr, fd) = find(name)?;
            capture.set_inbound_listener(&fd.as_fd(), *addr)?;
        }
        for cg in &cfg.original_dst_cgroups {
            capture.attach_original_dst_cgroup(cg)?;
        }
        // Only when sk_msg is wanted: a socket in the sk_msg SOCKHASH sends through the
        // tcp_bpf path, which costs a copy per sendmsg when there is no peer to redirect to
        // (eBPF capture without sk_msg, bulk through the proxy: 0.54 of direct with it
        // attached, 0.81 without; iptables REDIRECT in the same run 0.67).
        let sk_msg_wanted = cfg.sk_msg.enabled || cfg.workloads.iter().any(|w| w.sk_msg);
        if sk_msg_wanted && let Err(e) = capture.attach_proxy_cgroup() {
            warn!(error = %e, "sk_msg: the proxy's own sockets are not accelerated");
        }
        let stop = CancellationToken::new();
        let watcher = match cfg.mode {
            CaptureMode::Sidecar => {
                let errors = capture.apply_workloads(&cfg.workloads);
                // Sidecar: the one workload is the point of running; refuse to start without it.
                if let Some(e) = errors.into_iter().next() {
                    return Err(CaptureStartError::Workload(e.to_string()));
                }
                None
            }
            CaptureMode::Node => {
                let mut dir = WorkloadsDir::new(cfg.clone());
                let desired = dir.scan();
                for e in capture.apply_workloads(&desired) {
                    warn!(error = %e, "workload not captured");
                }
                let capture = Arc::clone(&capture);
                let stop = stop.clone();
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(WORKLOADS_DIR_POLL);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        if dir.changed() {
                            let desired = dir.scan();
                            for e in capture.apply_workloads(&desired) {
                                warn!(error = %e, "workload not captured");
                            }
                        }
                    }
                }))
            }
        };
        info!(
            mode = ?cfg.mode,
            adopted = capture.adopted(),
            inbound = capture.inbound_available(),
            sk_msg = capture.sk_msg_available(),
            workloads = ?capture.workloads(),
            "transparent capture active"
        );
        Ok(CaptureControl {
            capture,
            stop,
            watcher,
        })
    }

    /// Stops following the workloads directory. The programs stay pinned (fail open while
    /// no daemon runs; the next daemon adopts them); `mosn stop` removes them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(w) = self.watcher.take() {
            let _ = w.await;
        }
    }
}

/// Node mode: the inline workloads plus one per file in `workloads_dir`. A file that does
/// not parse keeps its last good version (and is reported once per change).
struct WorkloadsDir {
    cfg: CaptureConfig,
    /// File -> (mtime, size) at the last scan.
    seen: BTreeMap<PathBuf, (SystemTime, u64)>,
    /// File -> last good workload.
    good: BTreeMap<PathBuf, WorkloadConfig>,
}

impl WorkloadsDir {
    fn new(cfg: CaptureConfig) -> WorkloadsDir {
        WorkloadsDir {
            cfg,
            seen: BTreeMap::new(),
            good: BTreeMap::new(),
        }
    }

    fn listing(&self) -> BTreeMap<PathBuf, (SystemTime, u64)> {
        let Some(dir) = &self.cfg.workloads_dir else {
            return BTreeMap::new();
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return BTreeMap::new();
        };
        rd.flatten()
            .filter(|e| is_workload_file(&e.path()))
            .filter_map(|e| {
                let md = e.metadata().ok()?;
                Some((e.path(), (md.modified().ok()?, md.len())))
            })
            .collect()
    }

    fn changed(&self) -> bool {
        self.listing() != self.seen
    }

    /// Reads the directory; returns the workloads to capture (inline first; a file whose
    /// name or cgroup repeats an earlier one is skipped with a warning).
    fn scan(&mut self) -> Vec<WorkloadConfig> {
        let listing = self.listing();
        self.good.retain(|p, _| listing.contains_key(p));
        for (path, stamp) in &listing {
            if self.seen.get(path) == Some(stamp) {
                continue;
            }
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    parse_workload_with_warnings(&text, path, &self.cfg).map_err(|e| e.to_string())
                });
            match parsed {
                Ok((w, warnings)) => {
                    for warning in warnings {
                        warn!("{}: {warning}", path.display());
                    }
                    self.good.insert(path.clone(), w);
                }
                Err(e) => {
                    let kept = if self.good.contains_key(path) {
                        "keeping its last good version"
                    } else {
                        "not captured"
                    };
                    warn!(file = %path.display(), error = %e, "workload file rejected; {kept}");
                }
            }
        }
        self.seen = listing;
        let mut out: Vec<WorkloadConfig> = self.cfg.workloads.clone();
        for (path, w) in &self.good {
            if out.iter().any(|o| o.name == w.name || o.cgroup == w.cgroup) {
                warn!(file = %path.display(), workload = %w.name, "workload name or cgroup already captured; file skipped");
                continue;
            }
            out.push(w.clone());
        }
        out
    }
}

fn is_workload_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("json" | "yaml" | "yml")
    )
}

/// Per-workload capture counters on /metrics and /stats.
pub struct CaptureSamples(pub Arc<Capture>);

const STAT_METRICS: [(Stat, &str, &str); 10] = [
    (
        Stat::Captured,
        "capture_outbound_captured",
        "Outbound connects redirected to the proxy",
    ),
    (
        Stat::Excluded,
        "capture_outbound_excluded",
        "Outbound connects left direct by the workload's selection (ports, CIDRs, uid/gid)",
    ),
    (
        Stat::FailOpen,
        "capture_fail_open_bypasses",
        "Connections that went direct because the proxy's listener was gone",
    ),
    (
        Stat::InboundCaptured,
        "capture_inbound_captured",
        "Inbound connections steered to the proxy by sk_lookup",
    ),
    (
        Stat::SkMsgBytes,
        "capture_sk_msg_redirected_bytes",
        "Bytes sk_msg moved straight into a same-host peer socket",
    ),
    (
        Stat::SkMsgRedirects,
        "capture_sk_msg_redirects",
        "sendmsg calls sk_msg redirected to a same-host peer socket",
    ),
    (
        Stat::SkMsgThrottled,
        "capture_sk_msg_backpressure_fallbacks",
        "sendmsg calls sent through TCP because the peer had queue_limit unread bytes",
    ),
    (
        Stat::SkMsgOrdered,
        "capture_sk_msg_order_fallbacks",
        "sendmsg calls sent through TCP because earlier bytes were still in TCP",
    ),
    (
        Stat::OrigDstAnswered,
        "capture_original_dst_getsockopt",
        "getsockopt(SO_ORIGINAL_DST) calls answered by the capture program",
    ),
    (
        Stat::OtherNetns,
        "capture_other_netns_bypasses",
        "Connections that went direct because the proxy's listener is in another network namespace than the workload's socket",
    ),
];

impl SampleSource for CaptureSamples {
    fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for w in self.0.stats() {
            for (stat, name, help) in STAT_METRICS {
                out.push(Sample {
                    name,
                    help,
                    kind: SampleKind::Counter,
                    labels: vec![("workload", w.workload.clone())],
                    value: w.values[stat as usize],
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stat_has_a_metric() {
        for s in Stat::ALL {
            assert!(STAT_METRICS.iter().any(|(m, _, _)| *m == s), "{s:?}");
        }
    }

    #[test]
    fn workloads_dir_keeps_last_good_file_and_skips_duplicates() {
        let dir = std::env::temp_dir().join(format!("mosn-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = crate::ebpf::capture::test_config_for(&dir);
        cfg.mode = CaptureMode::Node;
        cfg.workloads_dir = Some(dir.clone());
        let mut d = WorkloadsDir::new(cfg);
        assert!(d.scan().is_empty());
        std::fs::write(dir.join("a.json"), r#"{"cgroup": "/sys/fs/cgroup/a"}"#).unwrap();
        std::fs::write(dir.join("b.yaml"), "cgroup: /sys/fs/cgroup/b\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        assert!(d.changed());
        let names: Vec<String> = d.scan().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(!d.changed());
        // A broken edit keeps the last good version.
        std::fs::write(dir.join("a.json"), r#"{"cgroup": 5, "x": "#).unwrap();
        let names: Vec<String> = d.scan().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["a", "b"]);
        // Same cgroup twice: the second file is skipped.
        std::fs::write(dir.join("c.json"), r#"{"cgroup": "/sys/fs/cgroup/b"}"#).unwrap();
        let names: Vec<String> = d.scan().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["a", "b"]);
        // Removing a file removes its workload.
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        let names: Vec<String> = d.scan().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["a", "c"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
