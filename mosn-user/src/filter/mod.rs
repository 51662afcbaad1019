//! Stream filters: per-request hooks around the proxy's phases (MOSN's stream filters,
//! Envoy's HTTP filters).
//!
//! A [`StreamFilterFactory`] is built once per listener from typed config; it creates one
//! [`StreamFilter`] per request. Every hook has a default that does nothing and continues,
//! so a filter implements only what it needs. [`register_builtin`] lists every built-in
//! filter; there is no other registry.
//!
//! Built-in filters (config `type`, one module each): `fault`, `mirror`, `rbac`,
//! `local_ratelimit`, `payload_limit`, `ip_access`. Their configs are in
//! [`crate::config::filter`].

mod fault;
mod ip_access;
mod mirror;
mod payload_limit;
mod rate_limit;
mod rbac;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::StreamFilterConfig;
use crate::protocol::Request;
use crate::upstream::ClusterManager;

/// What a hook decides.
#[derive(Debug)]
pub enum FilterStatus {
    /// Go on with the next filter, then the proxy.
    Continue,
    /// Wait this long, then call the same filter's [`StreamFilter::on_resume`], whose status
    /// decides (fault delay, then maybe abort).
    Pause(Duration),
    /// Stop here and answer the downstream with this response; upstream is not contacted.
    Respond(LocalReply),
}

/// A response made by the proxy itself (filters, errors).
#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: StatusCode,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Why, for logs and the `x-mosn-local-reply` detail (e.g. "rbac_denied").
    pub detail: &'static str,
}

impl LocalReply {
    /// A plain-text reply: `body` followed by a newline.
    pub fn text(status: StatusCode, detail: &'static str, body: &str) -> LocalReply {
        LocalReply {
            status,
            body: Bytes::from(format!("{body}\n")),
            headers: Vec::new(),
            detail,
        }
    }
}

/// A copy of the request to send to another cluster (response discarded).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorRequest {
    pub cluster: String,
}

/// What filters see of the request beyond its head, and what they may ask of the proxy.
#[derive(Debug)]
pub struct FilterContext {
    /// The downstream peer.
    pub source: SocketAddr,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The client's verified TLS certificate (mTLS), for `rbac`'s `authenticated`.
    pub identity: Option<Arc<crate::network::PeerIdentity>>,
    /// Mirrors requested by filters; the proxy sends them once the request is complete.
    pub mirrors: Vec<MirrorRequest>,
}

/// One request's instance of a filter. Hooks run in the order filters are configured.
pub trait StreamFilter: Send {
    /// The request's head (an HTTP head, an RPC frame's header: one [`Request`] type for
    /// every protocol), before routing. May change it.
    fn on_request_headers(
        &mut self,
        _req: &mut dyn Request,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        FilterStatus::Continue
    }

    /// After a `Pause` returned by this filter has elapsed, before the next filter runs.
    /// `Continue` goes on; `Respond` answers instead (a fault that delays, then aborts).
    fn on_resume(&mut self, _ctx: &mut FilterContext) -> FilterStatus {
        FilterStatus::Continue
    }

    /// A piece of the request body (`end`: the last piece). `Respond` ends the request.
    fn on_request_data(
        &mut self,
        _data: &[u8],
        _end: bool,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        FilterStatus::Continue
    }

    /// The response head from upstream (or a local reply). May change it; `Pause` is
    /// ignored here.
    fn on_response_headers(
        &mut self,
        _head: &mut http::response::Parts,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        FilterStatus::Continue
    }

    /// Called once when the request is finished, with its final status (for filters that
    /// count).
    fn on_done(&mut self, _status: StatusCode, _ctx: &FilterContext) {}
}

/// Builds one filter instance per request.
pub trait StreamFilterFactory: Send + Sync + std::fmt::Debug {
    /// The `type` the config spells.
    fn name(&self) -> &'static str;
    /// The filter for one request; `None` when this filter has nothing to do for it.
    fn create(&self) -> Option<Box<dyn StreamFilter>>;
}

/// What factories may need beyond their config.
pub struct FilterDeps<'a> {
    pub clusters: &'a ClusterManager,
}

/// Builds a factory from its validated config.
pub type FactoryBuilder =
    fn(&StreamFilterConfig, &FilterDeps<'_>) -> Option<Arc<dyn StreamFilterFactory>>;

/// Every stream filter type by name.
#[derive(Default)]
pub struct Registry {
    builders: HashMap<&'static str, FactoryBuilder>,
}

impl Registry {
    pub fn register(&mut self, name: &'static str, builder: FactoryBuilder) {
        self.builders.insert(name, builder);
    }

    /// The registry with every built-in filter.
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        register_builtin(&mut r);
        r
    }

    /// Factories for a listener's `stream_filters`, in order.
    pub fn build(
        &self,
        cfgs: &[StreamFilterConfig],
        deps: &FilterDeps<'_>,
    ) -> Vec<Arc<dyn StreamFilterFactory>> {
        cfgs.iter()
            .filter_map(|c| {
                let builder = self.builders.get(filter_name(c))?;
                builder(c, deps)
            })
            .collect()
    }
}

/// The config `type` of a filter config.
pub fn filter_name(cfg: &StreamFilterConfig) -> &'static str {
    match cfg {
        StreamFilterConfig::Fault(_) => fault::NAME,
        StreamFilterConfig::Mirror(_) => mirror::NAME,
        StreamFilterConfig::Rbac(_) => rbac::NAME,
        StreamFilterConfig::LocalRateLimit(_) => rate_limit::NAME,
        StreamFilterConfig::PayloadLimit(_) => payload_limit::NAME,
        StreamFilterConfig::IpAccess(_) => ip_access::NAME,
    }
}

/// Lists every built-in stream filter.
pub fn register_builtin(r: &mut Registry) {
    r.register(fault::NAME, fault::build);
    r.register(mirror::NAME, mirror::build);
    r.register(rbac::NAME, rbac::build);
    r.register(rate_limit::NAME, rate_limit::build);
    r.register(payload_limit::NAME, payload_limit::build);
    r.register(ip_access::NAME, ip_access::build);
}

/// A listener's filter factories; [`FilterChain::create`] makes one request's filters.
#[derive(Debug, Default, Clone)]
pub struct FilterChain {
    factories: Arc<[Arc<dyn StreamFilterFactory>]>,
}

impl FilterChain {
    pub fn new(factories: Vec<Arc<dyn StreamFilterFactory>>) -> FilterChain {
        FilterChain {
            factories: factories.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.factories.is_empty()
    }

    /// One request's filter instances.
    pub fn create(&self) -> Vec<Box<dyn StreamFilter>> {
        self.factories.iter().filter_map(|f| f.create()).collect()
    }
}
