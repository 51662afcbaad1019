//! The L7 proxy (MOSN's `proxy` network filter): per downstream connection, decode requests
//! with the listener's codec and run each through the request [`phase`]s.
//!
//! HTTP/1.1: requests on one connection are handled one after the other (pipelining is
//! tolerated: a request already received waits in the buffer until the previous response
//! is out). RPC ([`rpc`]): every request read is in flight at once, over multiplexed
//! upstream connections. An `"Auto"` listener reads a connection's first bytes to tell
//! which ([`crate::protocol::detect`]).

mod attempt;
mod body;
mod h2;
mod headers;
mod mirror;
pub mod phase;
mod routing;
mod rpc;
mod rpc_filters;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::config::{Protocol, ProxyConfig};
use crate::filter::FilterChain;
use crate::metrics::{ErrorKind, ListenerMetrics};
use crate::network::{Conn, ConnectionFuture, ConnectionHandler, Destination};
use crate::protocol::Decoder;
use crate::protocol::http1::{Frame, RequestDecoder};
use crate::router::RouteTable;
use crate::stream::mux::MuxPools;
use crate::stream::{H2Pools, Pools};
use crate::upstream::ClusterManager;

pub(crate) use h2::GrpcStats;
pub use phase::Phase;
pub(crate) use rpc::RpcStats;

/// One listener's L7 proxy, built once from config.
pub struct Proxy {
    pub listener: Arc<str>,
    pub config: ProxyConfig,
    pub routes: Arc<RouteTable>,
    pub filters: FilterChain,
    pub clusters: Arc<ClusterManager>,
    pub pools: Arc<Pools>,
    /// Multiplexed upstream connections (RPC).
    pub mux: Arc<MuxPools>,
    pub metrics: ListenerMetrics,
    /// Multiplexed HTTP/2 upstream connections.
    pub h2pools: Arc<H2Pools>,
    /// RPC metrics by service and method.
    pub(crate) rpc_stats: rpc::RpcStats,
    /// gRPC metrics by service and method.
    pub(crate) grpc_stats: h2::GrpcStats,
    /// Cancelled on shutdown: idle keep-alive connections close instead of holding the drain.
    pub shutdown: CancellationToken,
}

/// The downstream side of a connection.
pub(crate) struct Downstream {
    pub stream: Conn,
    pub peer: SocketAddr,
    /// `peer`'s address as an `X-Forwarded-For` element.
    pub peer_value: http::HeaderValue,
    /// Received bytes not decoded yet.
    pub rbuf: BytesMut,
    /// Encoded bytes for downstream not written yet.
    pub wbuf: BytesMut,
    pub decoder: RequestDecoder,
}

impl ConnectionHandler for Proxy {
    fn listener(&self) -> &str {
        &self.listener
    }

    fn handle(
        self: Arc<Self>,
        stream: Conn,
        peer: SocketAddr,
        _dst: Destination,
    ) -> ConnectionFuture {
        let span = info_span!("l7", listener = %self.listener, %peer);
        Box::pin(
            async move {
                let m = &self.metrics;
                m.connections_total.inc();
                m.connections_active.inc();
                let rbuf = BytesMut::with_capacity(body::READ_CHUNK);
                // TLS: the codec ALPN agreed on wins over detection ("Auto") and over the
                // listener's HTTP version (a client that negotiated h2 speaks h2).
                let protocol = match (stream.alpn(), self.config.downstream_protocol) {
                    (_, p @ Protocol::X(_)) => p,
                    (Some(b"h2"), _) => Protocol::Http2,
                    (Some(b"http/1.1"), _) => Protocol::Http1,
                    (_, p) => p,
                };
                match protocol {
                    Protocol::Http1 => self.serve(stream, peer, rbuf).await,
                    Protocol::Http2 => self.serve_h2(stream, peer, rbuf).await,
                    Protocol::X(p) => self.serve_rpc(stream, peer, p, rbuf).await,
                    Protocol::Auto => self.serve_detected(stream, peer, rbuf).await,
                }
                m.connections_active.dec();
            }
            .instrument(span),
        )
    }
}

impl Proxy {
    /// `"Auto"`: reads until the first bytes tell the protocol, then serves it.
    async fn serve_detected(&self, mut stream: Conn, peer: SocketAddr, mut rbuf: BytesMut) {
        let protocol = loop {
            match crate::protocol::detect(&rbuf) {
                Ok(p) => break p,
                Err(false) => {
                    debug!("no protocol starts with these bytes; closing");
                    self.metrics.errors.inc(ErrorKind::BadRequest);
                    return;
                }
                Err(true) => {}
            }
            let read = stream.read_buf(&mut rbuf);
            let n = tokio::select! {
                r = read => r,
                _ = self.shutdown.cancelled() => return,
                _ = sleep_opt(self.config.idle_timeout) => {
                    self.metrics.errors.inc(ErrorKind::IdleTimeout);
                    return;
                }
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        debug!(protocol = protocol.name(), "detected");
        match protocol {
            Protocol::X(p) => self.serve_rpc(stream, peer, p, rbuf).await,
            Protocol::Http2 => self.serve_h2(stream, peer, rbuf).await,
            _ => self.serve(stream, peer, rbuf).await,
        }
    }

    async fn serve(&self, stream: Conn, peer: SocketAddr, rbuf: BytesMut) {
        let _ = stream.set_nodelay(true);
        let mut down = Downstream {
            stream,
            peer,
            peer_value: headers::peer_value(peer.ip()),
            rbuf,
            wbuf: BytesMut::with_capacity(body::READ_CHUNK),
            decoder: RequestDecoder::new(self.config.max_request_header_bytes),
        };
        loop {
            let head = match self.next_head(&mut down).await {
                Some(h) => h,
                None => break,
            };
            if !phase::Exchange::new(self, &mut down, head).run().await {
                break;
            }
        }
        let _ = down.stream.shutdown().await;
    }

    /// Reads the next request head; `None` ends the connection (closed, idle, shut down,
    /// or a malformed request, which has been answered).
    async fn next_head(
        &self,
        down: &mut Downstream,
    ) -> Option<crate::protocol::http1::RequestHead> {
        loop {
            match down.decoder.decode(&mut down.rbuf) {
                Ok(Some(Frame::Head(h))) => return Some(h),
                Ok(Some(_)) => return None,
                Ok(None) => {}
                Err(e) => {
                    let reply = phase::decode_reply(&e);
                    let kind = match e {
                        crate::protocol::DecodeError::HeaderTooLarge { .. } => {
                            ErrorKind::HeaderTooLarge
                        }
                        _ => ErrorKind::BadRequest,
                    };
                    debug!(error = %e, "bad request");
                    self.metrics.errors.inc(kind);
                    self.metrics.downstream_rq_total.inc();
                    self.metrics.downstream_rq_4xx.inc();
                    down.wbuf.clear();
                    headers::local_reply(
                        &reply,
                        http::Version::HTTP_11,
                        false,
                        true,
                        &mut down.wbuf,
                    );
                    let _ = down.stream.write_all(&down.wbuf).await;
                    return None;
                }
            }
            down.rbuf.reserve(body::READ_CHUNK);
            let idle = down.rbuf.is_empty();
            let read = down.stream.read_buf(&mut down.rbuf);
            let n = tokio::select! {
                biased;
                r = read => r,
                _ = self.shutdown.cancelled(), if idle => return None,
                _ = sleep_opt(self.config.idle_timeout) => {
                    self.metrics.errors.inc(ErrorKind::IdleTimeout);
                    return None;
                }
            };
            match n {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

async fn sleep_opt(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
