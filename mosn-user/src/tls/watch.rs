//! Polling a filter chain's certificate, key, CA and ticket-key files, and reloading when they
//! change.
//!
//! Each file's (mtime, length, inode) is compared every [`WATCH_INTERVAL`]; following
//! symlinks, so Kubernetes' secret volumes (a symlink swapped to a new directory) count as a
//! change. A change is reloaded once the files have stayed the same for one more interval, so
//! a certificate and key written one after the other are read as a pair, not half-way.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::server::ServerTls;

/// How often the files are polled.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a file's version; `None`: missing or unreadable.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        })
        .collect()
}

impl ServerTls {
    /// Polls the files every [`WATCH_INTERVAL`] and reloads on change, until `stop` (or until
    /// this `ServerTls` is dropped). A chain whose PEM is all inline has nothing to watch.
    pub fn spawn_watcher(self: &Arc<Self>, stop: CancellationToken) {
        self.spawn_watcher_every(stop, WATCH_INTERVAL);
    }

    pub(crate) fn spawn_watcher_every(
        self: &Arc<Self>,
        stop: CancellationToken,
        every: Duration,
    ) -> Option<JoinHandle<()>> {
        let files = self.watched_files();
        if files.is_empty() {
            return None;
        }
        let this = Arc::downgrade(self);
        // Taken now, not when the task first runs, so a change right after this call counts.
        let mut seen = stamps(&files);
        Some(tokio::spawn(async move {
            let mut pending = false;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if this.strong_count() == 0 {
                    return;
                }
                let now = stamps(&files);
                if now != seen {
                    // Changed: wait until the writer is done.
                    seen = now;
                    pending = true;
                    continue;
                }
                if !pending {
                    continue;
                }
                pending = false;
                let Some(tls) = this.upgrade() else { return };
                // Refusals are logged and counted by reload itself.
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        }))
    }
}
