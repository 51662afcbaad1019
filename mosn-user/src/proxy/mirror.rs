//! Request mirroring (`request_mirror_policies`, the `mirror` filter): a copy of a complete
//! request goes to another cluster in the background; its response is read and dropped.
//! The copy's `Host` gets MOSN's/Envoy's `-shadow` suffix so the mirror can tell copies apart.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header::HOST;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::Proxy;
use crate::filter::MirrorRequest;
use crate::protocol::Decoder;
use crate::protocol::http1::{BodyKind, Frame};
use crate::upstream::LbContext;

/// How long a mirrored request may take before it is abandoned.
const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `body` (the whole encoded request body) with `head` to each mirror's cluster.
pub fn send(
    proxy: &Proxy,
    head: &http::request::Parts,
    kind: BodyKind,
    body: Bytes,
    mirrors: Vec<MirrorRequest>,
) {
    let mut head = head.clone();
    let host = head
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{name}-shadow:{port}")
            }
            _ => format!("{h}-shadow"),
        });
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        head.headers.insert(HOST, v);
    }
    let mut out = BytesMut::new();
    super::phase::encode_request_head(&head, kind, &mut out);
    out.extend_from_slice(&body);
    let request = out.freeze();
    for m in mirrors {
        let Some(cluster) = proxy.clusters.get(&m.cluster).cloned() else {
            continue;
        };
        let pools = Arc::clone(&proxy.pools);
        let request = request.clone();
        let method = head.method.clone();
        cluster.metrics.upstream_rq_mirrored.inc();
        tokio::spawn(async move {
            let Some(host) = cluster.choose_host(&LbContext::default()) else {
                return;
            };
            let work = async {
                let mut conn = pools.acquire(&cluster, &host, None, 64 * 1024).await.ok()?;
                conn.decoder.expect(&method);
                conn.stream.write_all(&request).await.ok()?;
                let mut keep = false;
                loop {
                    match conn.decoder.decode(&mut conn.buf) {
                        Ok(Some(Frame::Head(h))) => keep = h.keep_alive,
                        Ok(Some(Frame::Data(_))) => {}
                        Ok(Some(Frame::End { .. })) => break,
                        Ok(None) => {
                            conn.buf.reserve(16 * 1024);
                            if conn.stream.read_buf(&mut conn.buf).await.ok()? == 0 {
                                conn.decoder.eof().ok()?;
                                return Some(());
                            }
                        }
                        Err(_) => return None,
                    }
                }
                if keep {
                    pools.release(conn);
                }
                Some(())
            };
            if tokio::time::timeout(MIRROR_TIMEOUT, work).await.is_err() {
                debug!(cluster = %cluster.name, "mirrored request timed out");
            }
        });
    }
}
