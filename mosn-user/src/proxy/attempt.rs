//! One request's way upstream, the same for every codec: HTTP/1 ([`super::phase`]) and every
//! X-Protocol ([`super::rpc`]) go through it, and so will HTTP/2.
//!
//! ```text
//!  route result ─► cluster ─► request breaker ─► load balancer ─► (codec's pool) ─► try
//!                                                    ▲                               │
//!                                                    └── retry: policy, budget,  ◄───┤ failure
//!                                                        deadline, retry breaker     │
//!                                   outlier feedback + cluster metrics  ◄────────────┘ outcome
//! ```
//!
//! A codec supplies only what differs: how it reaches the chosen host (a ping-pong or a
//! multiplexed pool), how it answers an [`Error`] in its own format (an HTTP status, an RPC
//! hijack, a gRPC status), the status class of its responses, and whether its request can be
//! sent again after a given failure.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::metrics::ErrorKind;
use crate::router::{RetryPolicy, RouteMatch};
use crate::stream::PoolError;
use crate::upstream::circuit_breaker::BreakerGuard;
use crate::upstream::host::RequestGuard;
use crate::upstream::{Cluster, ClusterManager, Host, LbContext, RequestOutcome};

/// Why the proxy answers a request itself; each codec turns it into its own reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No route matched.
    NoRoute,
    /// The route's cluster does not exist.
    NoCluster,
    /// A circuit breaker (requests, pending requests, connections) refused.
    Overflow,
    /// The load balancer found no healthy host.
    NoHealthyHost,
    /// No connection could be made (the last try's reason).
    Connect(String),
    /// No response within the timeout.
    Timeout,
    /// The upstream broke before a response (the reason).
    Reset(String),
}

impl Error {
    /// How the error is counted (`mosn_listener_errors_total{kind}`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoRoute | Error::NoCluster => ErrorKind::NoRoute,
            Error::Overflow => ErrorKind::CircuitOpen,
            Error::NoHealthyHost => ErrorKind::NoHealthyHost,
            Error::Connect(_) => ErrorKind::UpstreamConnect,
            Error::Timeout => ErrorKind::UpstreamTimeout,
            Error::Reset(_) => ErrorKind::UpstreamReset,
        }
    }
}

/// How one try failed: the input of the retry decision. `R` is the codec's response, kept
/// when its status is retriable so that it can still be forwarded if no retry happens.
#[derive(Debug)]
pub enum Failure<R = std::convert::Infallible> {
    /// No connection could be made.
    Connect(String),
    /// The connection broke before a response.
    Reset(String),
    /// No response within the (per-try) timeout.
    Timeout,
    /// A response whose status (`.0`) the retry policy retries.
    Status(u16, R),
    /// A gRPC response whose `grpc-status` (`.0`, in its headers) the policy retries.
    Grpc(u32, R),
}

impl<R> Failure<R> {
    /// What to answer when no retry follows: the error, or the response to forward.
    pub fn into_result(self) -> Result<R, Error> {
        match self {
            Failure::Connect(why) => Err(Error::Connect(why)),
            Failure::Reset(why) => Err(Error::Reset(why)),
            Failure::Timeout => Err(Error::Timeout),
            Failure::Status(_, r) | Failure::Grpc(_, r) => Ok(r),
        }
    }
}

/// A routed request's upstream state across its tries.
pub struct Attempt {
    pub route: RouteMatch,
    pub cluster: Arc<Cluster>,
    /// The request's hash for hashing balancers (the route's hash policy).
    hash: Option<u64>,
    /// The route's deadline for the whole request, once armed (codecs arm it when the
    /// request is complete: HTTP counts the timeout from the end of the request body).
    pub deadline: Option<Instant>,
    /// The host of the current (or last) try.
    host: Option<Arc<Host>>,
    /// Hosts to avoid: those of tries that failed and were retried (recorded only then, so
    /// a request that is not retried allocates nothing).
    tried: Vec<SocketAddr>,
    retries: u32,
    _request: BreakerGuard,
    /// The retry in progress holds one slot of the retry breaker (Envoy's active retries).
    retry: Option<BreakerGuard>,
    /// The current try: its host's active-request count; `upstream_rq_active` while set.
    current: Option<RequestGuard>,
}

impl Attempt {
    /// The cluster a route result names (`route.cluster(..)`), if it exists.
    pub fn cluster(
        clusters: &ClusterManager,
        name: Option<std::borrow::Cow<'_, str>>,
    ) -> Result<Arc<Cluster>, Error> {
        name.and_then(|n| clusters.get(&n).cloned())
            .ok_or(Error::NoCluster)
    }

    /// After routing: the route's `cluster` ([`Attempt::cluster`]) admits the request
    /// through its request breaker.
    pub fn new(
        route: RouteMatch,
        cluster: Arc<Cluster>,
        hash: Option<u64>,
    ) -> Result<Attempt, Error> {
        // The breaker counts an overflow itself.
        let request = cluster.breakers.try_request().ok_or(Error::Overflow)?;
        Ok(Attempt {
            route,
            cluster,
            hash,
            deadline: None,
            host: None,
            tried: Vec::new(),
            retries: 0,
            _request: request,
            retry: None,
            current: None,
        })
    }

    /// The route's retry policy.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.route.retry_policy()
    }

    /// The load balancer's host for the next try, avoiding hosts already tried.
    pub fn choose_host(&mut self) -> Result<Arc<Host>, Error> {
        let ctx = LbContext {
            hash: self.hash,
            metadata_match: self.route.metadata_match(),
            tried: &self.tried,
        };
        let host = self.cluster.choose_host(&ctx).ok_or(Error::NoHealthyHost)?;
        self.host = Some(Arc::clone(&host));
        Ok(host)
    }

    /// The chosen host.
    pub fn host(&self) -> &Arc<Host> {
        self.host.as_ref().expect("a host was chosen")
    }

    /// A connection to the chosen host is ready: the try starts (counted until
    /// [`Attempt::end_try`]).
    pub fn begin_try(&mut self) {
        self.end_try();
        let m = &self.cluster.metrics;
        m.upstream_rq_total.inc();
        m.upstream_rq_active.inc();
        self.current = Some(self.host().start_request());
    }

    /// Ends the current try's accounting (idempotent).
    pub fn end_try(&mut self) {
        if self.current.take().is_some() {
            self.cluster.metrics.upstream_rq_active.dec();
        }
    }

    /// The codec's pool could not give a connection to the chosen host.
    pub fn pool_failed<R>(&mut self, e: PoolError) -> Result<Failure<R>, Error> {
        match e {
            PoolError::Connect { addr, source } => {
                self.cluster
                    .report(self.host(), RequestOutcome::ConnectFailure);
                Ok(Failure::Connect(format!("connect to {addr}: {source}")))
            }
            PoolError::Overflow(_) => Err(Error::Overflow),
            PoolError::Timeout(_) => {
                self.cluster.metrics.upstream_rq_timeout.inc();
                Ok(Failure::Timeout)
            }
        }
    }

    /// The try got no response within its timeout.
    pub fn timed_out(&mut self) {
        self.cluster.metrics.upstream_rq_timeout.inc();
        self.cluster.report(self.host(), RequestOutcome::Timeout);
    }

    /// The try's connection broke before a response. `blame` = the host is at fault (told
    /// to outlier detection); a pooled connection the server had just closed is not.
    pub fn reset(&mut self, blame: bool) {
        self.cluster.metrics.upstream_rq_reset.inc();
        if blame {
            self.cluster.report(self.host(), RequestOutcome::Reset);
        }
    }

    /// A response whose status maps to `class` (the HTTP status, or an RPC status's class).
    pub fn responded(&mut self, class: u16) {
        self.cluster.metrics.count_status(class);
        self.cluster
            .report(self.host(), RequestOutcome::Status(class));
    }

    /// The response to the request broke after its head was forwarded.
    pub fn broke_midway(&self) {
        self.cluster.metrics.upstream_rq_reset.inc();
    }

    /// Whether another try may go after `failure`, and if so takes it: the route's policy
    /// covers the failure, tries are left, the request can be sent again (`replayable`,
    /// the codec's word), the deadline has not passed, and the retry breaker admits it.
    pub fn retry<R>(&mut self, failure: &Failure<R>, replayable: bool) -> bool {
        self.end_try();
        let Some(policy) = self.route.retry_policy() else {
            return false;
        };
        let covered = match failure {
            // Envoy: `5xx` and `gateway-error` include a failed connect and a reset (the
            // 503/502 the client would get).
            Failure::Connect(_) | Failure::Reset(_) => {
                policy.on_connect_failure || policy.on_5xx || policy.on_gateway_error
            }
            Failure::Timeout => policy.on_5xx || policy.on_gateway_error,
            Failure::Status(code, _) => policy.retries_status(*code),
            Failure::Grpc(code, _) => policy.retries_grpc(*code),
        };
        if !covered
            || !replayable
            || self.retries >= policy.num_retries
            || self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return false;
        }
        // The breaker counts an overflow itself.
        let Some(guard) = self.cluster.breakers.try_retry() else {
            return false;
        };
        self.retry = Some(guard);
        self.retries += 1;
        self.cluster.metrics.upstream_rq_retry.inc();
        if let Some(h) = &self.host {
            self.tried.push(h.address);
        }
        true
    }

    /// Tries taken after the first.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.end_try();
    }
}
