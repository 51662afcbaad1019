//! Stream filter configuration: a listener's `stream_filters[]` (MOSN's spelling), each
//! `{"type": ..., "config": {...}}`.
//!
//! Raw shapes, validated model types and their validation live together in this file.

use serde::Serialize;

use super::diag::{Diag, index, join};
use super::raw::RawFilter;
use super::validate::Clusters;

/// One configured stream filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StreamFilterConfig {}

/// Validates a listener's `stream_filters` (path: the listener's path).
pub(super) fn stream_filters(
    raw: &[RawFilter],
    path: &str,
    clusters: &Clusters,
    d: &mut Diag,
) -> Vec<StreamFilterConfig> {
    let _ = clusters;
    for (i, f) in raw.iter().enumerate() {
        let fp = index(path, "stream_filters", i);
        d.error(
            &join(&fp, "type"),
            format!("stream filter {:?} is not supported yet", f.kind),
        );
    }
    Vec::new()
}
