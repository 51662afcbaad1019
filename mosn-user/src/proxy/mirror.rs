//! Request mirroring (`request_mirror_policies`, the `mirror` filter), for every codec: a
//! copy of a complete request goes to another cluster in the background; its response is
//! read and dropped. HTTP: the copy's `Host` gets MOSN's/Envoy's `-shadow` suffix so the
//! mirror can tell copies apart. RPC: the frame as sent upstream (route header mutations
//! applied), over the mirror cluster's multiplexed connections.

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
use crate::protocol::xprotocol::{Kind, XFrame, XProtocol};
use crate::router::RouteMatch;
use crate::stream::mux::MuxSettings;
use crate::upstream::LbContext;

/// How long a mirrored request may take before it is abandoned.
const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Adds the mirrors the route's `request_mirror_policies` draw for this request.
pub fn draw(route: &RouteMatch, into: &mut Vec<MirrorRequest>) {
    for p in route.mirror_policies() {
        if p.fraction >= 1.0 || rand::random::<f64>() < p.fraction {
            into.push(MirrorRequest {
                cluster: p.cluster.clone(),
            });
        }
    }
}

/// Sends a copy of RPC request `frame` to each mirror's cluster (a oneway one as oneway);
/// the responses are dropped.
pub fn send_frame(
    proxy: &Proxy,
    proto: &'static dyn XProtocol,
    frame: &XFrame,
    mirrors: Vec<MirrorRequest>,
) {
    for m in mirrors {
        let Some(cluster) = proxy.clusters.get(&m.cluster).cloned() else {
            continue;
        };
        let mux = Arc::clone(&proxy.mux);
        let mut settings = MuxSettings::from_cluster(&cluster.config);
        settings.max_frame = proxy.config.max_frame_size;
        let frame = frame.clone();
        cluster.metrics.upstream_rq_mirrored.inc();
        tokio::spawn(async move {
            let Some(host) = cluster.choose_host(&LbContext::default()) else {
                return;
            };
            let work = async {
                let conn = mux.get(&cluster, &host, proto, &settings).await.ok()?;
                if frame.kind == Kind::Oneway {
                    conn.send_oneway(frame).await.ok()
                } else {
                    conn.call(frame).await.ok().map(drop)
                }
            };
            if tokio::time::timeout(MIRROR_TIMEOUT, work).await.is_err() {
                debug!(cluster = %cluster.name, "mirrored request timed out");
            }
        });
    }
}

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
