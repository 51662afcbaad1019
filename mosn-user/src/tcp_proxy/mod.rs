//! The `tcp_proxy` network filter (MOSN's L4 proxy): route a downstream connection to a
//! cluster, connect upstream and move the bytes, either in userspace ([`BiCopy`]) or in the
//! kernel (the `ebpf` splicer, supervised by `spliced`).

mod copy;
mod copy_tls;
mod data_path;
mod proxy;
mod spliced;

#[cfg(test)]
mod original_dst_tests;

pub use copy::{BiCopy, COPY_BUFFER_INITIAL, COPY_BUFFER_MAX, CopyEnd, DirectionStats};
pub use data_path::{
    AUTO_MAX_ACTIVE, AUTO_MAX_SPLICED, AUTO_MIN_READS_EACH_WAY, AutoRule, DataPath,
};
pub use proxy::TcpProxy;
pub use spliced::SplicedEnd;
