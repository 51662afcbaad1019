//! The daemon's metrics: typed handles over one `prometheus-client` registry.
//!
//! The data path never looks anything up: [`Metrics::listener`] and [`Metrics::cluster`] hand out
//! [`ListenerMetrics`] / [`ClusterMetrics`], bundles of cloned `Counter`/`Gauge` handles (each an
//! `Arc` around an atomic), built once per listener or cluster. Errors are counted through
//! [`ErrorCounters::inc`] with a typed [`ErrorKind`], so no label string is built per event.
//!
//! Values that live elsewhere (the kernel's per-CPU counters, BPF map sizes) are read at scrape
//! time through [`SampleSource`]s registered with [`Metrics::add_collector`].
//!
//! Two views of the same values are served by the admin server:
//! - [`Metrics::encode_text`]: OpenMetrics text (served as [`CONTENT_TYPE`]); every name starts
//!   with `mosn_`, labels are `listener="..."`, `cluster="..."`, `kind="..."`.
//! - [`Metrics::stats_json`]: MOSN's `/api/v1/stats` shape (see there).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

/// Prefix of every metric name (`mosn_...`).
pub const PREFIX: &str = "mosn";

/// Content type of [`Metrics::encode_text`]'s output. The text is OpenMetrics 1.0 (it ends in
/// `# EOF`, counters are typed by their name without the `_total` suffix), so it must not be
/// served as Prometheus' `text/plain; version=0.0.4`: Prometheus 2 and 3 both parse
/// OpenMetrics when the response says so.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a proxied connection failed; the `kind` label of `mosn_listener_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No upstream host accepted a connection (after every attempt).
    UpstreamConnect,
    /// The cluster had no healthy host to try.
    NoHealthyHost,
    /// The downstream peer reset the connection.
    DownstreamReset,
    /// The upstream peer reset the connection.
    UpstreamReset,
    /// The connection was idle longer than the listener's idle timeout.
    IdleTimeout,
    /// Handing the connection to the kernel splice failed (it fell back to userspace).
    SpliceSetup,
    /// A malformed request (answered 400).
    BadRequest,
    /// A request header block over the limit (answered 431).
    HeaderTooLarge,
    /// No route matched the request (answered 404).
    NoRoute,
    /// A circuit breaker was open (answered 503).
    CircuitOpen,
    /// No upstream response in time (answered 504).
    UpstreamTimeout,
    /// No filter chain of the listener matches the connection (SNI, ALPN, transport), or
    /// its ClientHello never completed: closed.
    NoFilterChain,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::UpstreamConnect,
        ErrorKind::NoHealthyHost,
        ErrorKind::DownstreamReset,
        ErrorKind::UpstreamReset,
        ErrorKind::IdleTimeout,
        ErrorKind::SpliceSetup,
        ErrorKind::BadRequest,
        ErrorKind::HeaderTooLarge,
        ErrorKind::NoRoute,
        ErrorKind::CircuitOpen,
        ErrorKind::UpstreamTimeout,
        ErrorKind::NoFilterChain,
        ErrorKind::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::NoHealthyHost => "no_healthy_host",
            ErrorKind::DownstreamReset => "downstream_reset",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::SpliceSetup => "splice_setup",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::HeaderTooLarge => "header_too_large",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::NoFilterChain => "no_filter_chain",
            ErrorKind::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// A label value written with the exposition format's escapes (`\\`, `\"`, `\n`):
/// prometheus-client writes label values verbatim, and listener/cluster names come from config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Escaped<T>(T);

impl<T: AsRef<str>> EncodeLabelValue for Escaped<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        let s = self.0.as_ref();
        if !s.contains(['\\', '"', '\n']) {
            return encoder.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: Escaped<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerErrorLabels {
    listener: Escaped<String>,
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterLabels {
    cluster: Escaped<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    listener: Escaped<String>,
    protocol: Escaped<String>,
    service: Escaped<String>,
    method: Escaped<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcErrorLabels {
    listener: Escaped<String>,
    protocol: Escaped<String>,
    service: Escaped<String>,
    method: Escaped<String>,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    listener: Escaped<String>,
    service: Escaped<String>,
    method: Escaped<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcStatusLabels {
    listener: Escaped<String>,
    service: Escaped<String>,
    method: Escaped<String>,
    grpc_status: u32,
}

/// Metric handles of one (listener, service, method) of gRPC traffic.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    /// `mosn_grpc_request_duration_seconds`: from the request head to the response's end.
    pub duration: Histogram,
    requests: Family<GrpcStatusLabels, Counter>,
    labels: GrpcLabels,
}

impl GrpcMetrics {
    /// Counts a finished call with its `grpc-status` in `mosn_grpc_requests_total`.
    pub fn done(&self, grpc_status: u32) {
        let l = &self.labels;
        self.requests
            .get_or_create(&GrpcStatusLabels {
                listener: l.listener.clone(),
                service: l.service.clone(),
                method: l.method.clone(),
                grpc_status,
            })
            .inc();
    }
}

/// Buckets of `mosn_rpc_request_duration_seconds`: 50 µs doubling up to ~52 s.
fn rpc_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Metric handles of one (listener, protocol, service, method) of RPC traffic.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    /// `mosn_rpc_requests_total`.
    pub requests: Counter,
    /// `mosn_rpc_request_duration_seconds`: from the request decoded to its response written.
    pub duration: Histogram,
    errors: Family<RpcErrorLabels, Counter>,
    labels: RpcLabels,
}

impl RpcMetrics {
    /// Counts a response with a non-success `status` (the protocol's own code) in
    /// `mosn_rpc_errors_total`.
    pub fn error(&self, status: u16) {
        let l = &self.labels;
        self.errors
            .get_or_create(&RpcErrorLabels {
                listener: l.listener.clone(),
                protocol: l.protocol.clone(),
                service: l.service.clone(),
                method: l.method.clone(),
                status,
            })
            .inc();
    }
}

/// Per-kind error counters of one listener (`mosn_listener_errors_total{listener, kind}`).
/// Every kind's series exists from the start (at 0), so rates work from the first error.
#[derive(Debug, Clone)]
pub struct ErrorCounters {
    by_kind: [Counter; ErrorKind::ALL.len()],
}

impl ErrorCounters {
    /// Counts one error of `kind`.
    pub fn inc(&self, kind: ErrorKind) {
        self.by_kind[kind.index()].inc();
    }

    /// The current count of `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.by_kind[kind.index()].get()
    }
}

/// Metric handles of one listener. Cloning is cheap (one `Arc` per handle); all clones count
/// into the same series.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    /// Accepted downstream connections (`mosn_listener_connections_total`).
    pub connections_total: Counter,
    /// Downstream connections open now (`mosn_listener_connections_active`).
    pub connections_active: Gauge,
    /// Bytes downstream -> proxy copied in userspace (`mosn_listener_bytes_received_total`).
    pub bytes_received: Counter,
    /// Bytes proxy -> downstream copied in userspace (`mosn_listener_bytes_sent_total`).
    pub bytes_sent: Counter,
    /// Connections handed to the kernel splice (`mosn_listener_kernel_spliced_total`).
    pub kernel_spliced_total: Counter,
    /// Connections copied in userspace (`mosn_listener_userspace_copied_total`).
    pub userspace_copied_total: Counter,
    /// Requests received from downstream (L7) (`mosn_listener_downstream_rq_total`).
    pub downstream_rq_total: Counter,
    /// Downstream requests in flight (L7) (`mosn_listener_downstream_rq_active`).
    pub downstream_rq_active: Gauge,
    /// Responses 1xx sent downstream (`mosn_listener_downstream_rq_1xx_total`).
    pub downstream_rq_1xx: Counter,
    /// Responses 2xx sent downstream (`mosn_listener_downstream_rq_2xx_total`).
    pub downstream_rq_2xx: Counter,
    /// Responses 3xx sent downstream (`mosn_listener_downstream_rq_3xx_total`).
    pub downstream_rq_3xx: Counter,
    /// Responses 4xx sent downstream (`mosn_listener_downstream_rq_4xx_total`).
    pub downstream_rq_4xx: Counter,
    /// Responses 5xx sent downstream (`mosn_listener_downstream_rq_5xx_total`).
    pub downstream_rq_5xx: Counter,
    /// Failures by kind (`mosn_listener_errors_total`).
    pub errors: ErrorCounters,
}

impl ListenerMetrics {
    /// Counts a response sent downstream with (HTTP) status `code` in its class counter
    /// (`downstream_rq_1xx` .. `_5xx`; RPC statuses count as the HTTP status they map to).
    pub fn count_status(&self, code: u16) {
        match code {
            100..=199 => &self.downstream_rq_1xx,
            200..=299 => &self.downstream_rq_2xx,
            300..=399 => &self.downstream_rq_3xx,
            400..=499 => &self.downstream_rq_4xx,
            _ => &self.downstream_rq_5xx,
        }
        .inc();
    }

    fn stats(&self) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "connections_total", self.connections_total.get());
        put(&mut m, "connections_active", self.connections_active.get());
        put(&mut m, "bytes_received", self.bytes_received.get());
        put(&mut m, "bytes_sent", self.bytes_sent.get());
        put(
            &mut m,
            "kernel_spliced_total",
            self.kernel_spliced_total.get(),
        );
        put(
            &mut m,
            "userspace_copied_total",
            self.userspace_copied_total.get(),
        );
        put(
            &mut m,
            "downstream_rq_total",
            self.downstream_rq_total.get(),
        );
        put(
            &mut m,
            "downstream_rq_active",
            self.downstream_rq_active.get(),
        );
        put(&mut m, "downstream_rq_1xx", self.downstream_rq_1xx.get());
        put(&mut m, "downstream_rq_2xx", self.downstream_rq_2xx.get());
        put(&mut m, "downstream_rq_3xx", self.downstream_rq_3xx.get());
        put(&mut m, "downstream_rq_4xx", self.downstream_rq_4xx.get());
        put(&mut m, "downstream_rq_5xx", self.downstream_rq_5xx.get());
        for kind in ErrorKind::ALL {
            put(&mut m, &format!("errors_{kind}"), self.errors.get(kind));
        }
        m
    }
}

/// Metric handles of one cluster, named like Envoy's/MOSN's cluster stats.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// Upstream connections established (`mosn_cluster_upstream_cx_total`).
    pub upstream_cx_total: Counter,
    /// Upstream connections open now (`mosn_cluster_upstream_cx_active`).
    pub upstream_cx_active: Gauge,
    /// Connect attempts that failed (`mosn_cluster_upstream_cx_connect_fail_total`).
    pub upstream_cx_connect_fail: Counter,
    /// Connect attempts that timed out (`mosn_cluster_upstream_cx_connect_timeout_total`).
    pub upstream_cx_connect_timeout: Counter,
    /// Bytes proxy -> upstream copied in userspace (`mosn_cluster_upstream_bytes_sent_total`).
    pub upstream_bytes_sent: Counter,
    /// Bytes upstream -> proxy copied in userspace
    /// (`mosn_cluster_upstream_bytes_received_total`).
    pub upstream_bytes_received: Counter,
    /// Connections refused because no host was healthy (`mosn_cluster_no_healthy_host_total`).
    pub no_healthy_host: Counter,
    /// Requests sent upstream (each try) (`mosn_cluster_upstream_rq_total`).
    pub upstream_rq_total: Counter,
    /// Upstream requests in flight (`mosn_cluster_upstream_rq_active`).
    pub upstream_rq_active: Gauge,
    /// Upstream responses 2xx (`mosn_cluster_upstream_rq_2xx_total`).
    pub upstream_rq_2xx: Counter,
    /// Upstream responses 3xx (`mosn_cluster_upstream_rq_3xx_total`).
    pub upstream_rq_3xx: Counter,
    /// Upstream responses 4xx (`mosn_cluster_upstream_rq_4xx_total`).
    pub upstream_rq_4xx: Counter,
    /// Upstream responses 5xx (`mosn_cluster_upstream_rq_5xx_total`).
    pub upstream_rq_5xx: Counter,
    /// Upstream requests that timed out (`mosn_cluster_upstream_rq_timeout_total`).
    pub upstream_rq_timeout: Counter,
    /// Upstream connections that broke before a full response (`mosn_cluster_upstream_rq_reset_total`).
    pub upstream_rq_reset: Counter,
    /// Upstream requests retried (`mosn_cluster_upstream_rq_retry_total`).
    pub upstream_rq_retry: Counter,
    /// Copies of requests sent to this cluster by mirroring (`mosn_cluster_upstream_rq_mirrored_total`).
    pub upstream_rq_mirrored: Counter,
    /// Connections refused by the max_connections circuit breaker (`mosn_cluster_upstream_cx_overflow_total`).
    pub upstream_cx_overflow: Counter,
    /// Requests refused by the max_pending_requests circuit breaker (`mosn_cluster_upstream_rq_pending_overflow_total`).
    pub upstream_rq_pending_overflow: Counter,
    /// Requests refused by the max_requests circuit breaker (`mosn_cluster_upstream_rq_overflow_total`).
    pub upstream_rq_overflow: Counter,
    /// Retries refused by the max_retries circuit breaker (`mosn_cluster_upstream_rq_retry_overflow_total`).
    pub upstream_rq_retry_overflow: Counter,
    /// Active health checks that passed (`mosn_cluster_health_check_success_total`).
    pub health_check_success: Counter,
    /// Active health checks that failed (`mosn_cluster_health_check_failure_total`).
    pub health_check_failure: Counter,
    /// Hosts healthy now (`mosn_cluster_membership_healthy`).
    pub membership_healthy: Gauge,
    /// Hosts ejected by outlier detection (`mosn_cluster_outlier_detection_ejections_total`).
    pub outlier_ejections_total: Counter,
    /// Hosts ejected now (`mosn_cluster_outlier_detection_ejections_active`).
    pub outlier_ejections_active: Gauge,
}

impl ClusterMetrics {
    /// Counts an upstream response with (HTTP) status `code` in its class counter
    /// (`upstream_rq_2xx` .. `_5xx`; others are not counted).
    pub fn count_status(&self, code: u16) {
        let c = match code {
            200..=299 => &self.upstream_rq_2xx,
            300..=399 => &self.upstream_rq_3xx,
            400..=499 => &self.upstream_rq_4xx,
            500..=599 => &self.upstream_rq_5xx,
            _ => return,
        };
        c.inc();
    }

    fn stats(&self) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "upstream_cx_total", self.upstream_cx_total.get());
        put(&mut m, "upstream_cx_active", self.upstream_cx_active.get());
        put(
            &mut m,
            "upstream_cx_connect_fail",
            self.upstream_cx_connect_fail.get(),
        );
        put(
            &mut m,
            "upstream_cx_connect_timeout",
            self.upstream_cx_connect_timeout.get(),
        );
        put(
            &mut m,
            "upstream_bytes_sent",
            self.upstream_bytes_sent.get(),
        );
        put(
            &mut m,
            "upstream_bytes_received",
            self.upstream_bytes_received.get(),
        );
        put(&mut m, "no_healthy_host", self.no_healthy_host.get());
        put(&mut m, "upstream_rq_total", self.upstream_rq_total.get());
        put(&mut m, "upstream_rq_active", self.upstream_rq_active.get());
        put(&mut m, "upstream_rq_2xx", self.upstream_rq_2xx.get());
        put(&mut m, "upstream_rq_3xx", self.upstream_rq_3xx.get());
        put(&mut m, "upstream_rq_4xx", self.upstream_rq_4xx.get());
        put(&mut m, "upstream_rq_5xx", self.upstream_rq_5xx.get());
        put(
            &mut m,
            "upstream_rq_timeout",
            self.upstream_rq_timeout.get(),
        );
        put(&mut m, "upstream_rq_reset", self.upstream_rq_reset.get());
        put(&mut m, "upstream_rq_retry", self.upstream_rq_retry.get());
        put(
            &mut m,
            "upstream_rq_mirrored",
            self.upstream_rq_mirrored.get(),
        );
        put(
            &mut m,
            "upstream_cx_overflow",
            self.upstream_cx_overflow.get(),
        );
        put(
            &mut m,
            "upstream_rq_pending_overflow",
            self.upstream_rq_pending_overflow.get(),
        );
        put(
            &mut m,
            "upstream_rq_overflow",
            self.upstream_rq_overflow.get(),
        );
        put(
            &mut m,
            "upstream_rq_retry_overflow",
            self.upstream_rq_retry_overflow.get(),
        );
        put(
            &mut m,
            "health_check_success",
            self.health_check_success.get(),
        );
        put(
            &mut m,
            "health_check_failure",
            self.health_check_failure.get(),
        );
        put(&mut m, "membership_healthy", self.membership_healthy.get());
        put(
            &mut m,
            "outlier_ejections_total",
            self.outlier_ejections_total.get(),
        );
        put(
            &mut m,
            "outlier_ejections_active",
            self.outlier_ejections_active.get(),
        );
        m
    }
}

/// MOSN's console sink writes every value as a decimal string; so do we.
fn put(m: &mut Map<String, Value>, key: &str, v: impl fmt::Display) {
    m.insert(key.to_owned(), Value::String(v.to_string()));
}

/// Whether a [`Sample`] is a monotonic counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// Exposed as `mosn_<name>_total`.
    Counter,
    /// Exposed as `mosn_<name>`.
    Gauge,
}

/// One value read at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Metric name without the `mosn_` prefix (and, for counters, without `_total`), e.g.
    /// `kernel_spliced_streams`. Samples of one name form one metric family; they must share
    /// `help` and `kind` (later samples of another kind are dropped).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: SampleKind,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// A source of samples read at each scrape (kernel per-CPU counters, BPF map sizes, ...).
/// `samples` runs on the admin server's task: it should be quick and must not block for long.
pub trait SampleSource: Send + Sync + 'static {
    fn samples(&self) -> Vec<Sample>;
}

/// A plain function or closure is a source.
impl<F> SampleSource for F
where
    F: Fn() -> Vec<Sample> + Send + Sync + 'static,
{
    fn samples(&self) -> Vec<Sample> {
        self()
    }
}

type SourceList = Arc<RwLock<Vec<Box<dyn SampleSource>>>>;

/// The one prometheus-client `Collector` behind every [`SampleSource`]: registered once at
/// construction, so sources can be added later through `&Metrics`.
#[derive(Clone, Default)]
struct Sources(SourceList);

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Sources").field("count", &n).finish()
    }
}

/// Samples of one name, in first-seen order.
struct SampleFamily {
    name: &'static str,
    help: &'static str,
    kind: SampleKind,
    series: Vec<(Vec<(&'static str, String)>, u64)>,
}

impl Sources {
    fn collect(&self) -> Vec<SampleFamily> {
        let sources = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut families: Vec<SampleFamily> = Vec::new();
        let mut index: HashMap<&'static str, usize> = HashMap::new();
        for sample in sources.iter().flat_map(|s| s.samples()) {
            let i = *index.entry(sample.name).or_insert_with(|| {
                families.push(SampleFamily {
                    name: sample.name,
                    help: sample.help,
                    kind: sample.kind,
                    series: Vec::new(),
                });
                families.len() - 1
            });
            let family = &mut families[i];
            if family.kind != sample.kind {
                tracing::debug!(
                    name = sample.name,
                    "sample kind differs from its family; dropped"
                );
                continue;
            }
            family.series.push((sample.labels, sample.value));
        }
        families
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for family in self.collect() {
            let metric_type = match family.kind {
                SampleKind::Counter => ConstCounter::new(0u64).metric_type(),
                SampleKind::Gauge => ConstGauge::new(0u64).metric_type(),
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            // A lone unlabelled series is written as `name 1`; through `encode_family` an
            // empty label set would come out as `name{} 1`.
            if let [(labels, value)] = family.series.as_slice()
                && labels.is_empty()
            {
                match family.kind {
                    SampleKind::Counter => ConstCounter::new(*value).encode(metric)?,
                    SampleKind::Gauge => ConstGauge::new(*value).encode(metric)?,
                }
                continue;
            }
            for (labels, value) in &family.series {
                let labels: Vec<(&str, Escaped<&str>)> = labels
                    .iter()
                    .map(|(k, v)| (*k, Escaped(v.as_str())))
                    .collect();
                let series = metric.encode_family(&labels)?;
                match family.kind {
                    SampleKind::Counter => ConstCounter::new(*value).encode(series)?,
                    SampleKind::Gauge => ConstGauge::new(*value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

struct Families {
    listener_connections: Family<ListenerLabels, Counter>,
    listener_connections_active: Family<ListenerLabels, Gauge>,
    listener_bytes_received: Family<ListenerLabels, Counter>,
    listener_bytes_sent: Family<ListenerLabels, Counter>,
    listener_kernel_spliced: Family<ListenerLabels, Counter>,
    listener_userspace_copied: Family<ListenerLabels, Counter>,
    listener_errors: Family<ListenerErrorLabels, Counter>,
    cluster_cx: Family<ClusterLabels, Counter>,
    cluster_cx_active: Family<ClusterLabels, Gauge>,
    cluster_cx_connect_fail: Family<ClusterLabels, Counter>,
    cluster_cx_connect_timeout: Family<ClusterLabels, Counter>,
    cluster_bytes_sent: Family<ClusterLabels, Counter>,
    cluster_bytes_received: Family<ClusterLabels, Counter>,
    cluster_no_healthy_host: Family<ClusterLabels, Counter>,
    cluster_rq: Family<ClusterLabels, Counter>,
    cluster_rq_active: Family<ClusterLabels, Gauge>,
    cluster_rq_2xx: Family<ClusterLabels, Counter>,
    cluster_rq_3xx: Family<ClusterLabels, Counter>,
    cluster_rq_4xx: Family<ClusterLabels, Counter>,
    cluster_rq_5xx: Family<ClusterLabels, Counter>,
    cluster_rq_timeout: Family<ClusterLabels, Counter>,
    cluster_rq_reset: Family<ClusterLabels, Counter>,
    cluster_rq_retry: Family<ClusterLabels, Counter>,
    cluster_rq_mirrored: Family<ClusterLabels, Counter>,
    cluster_cx_overflow: Family<ClusterLabels, Counter>,
    cluster_rq_pending_overflow: Family<ClusterLabels, Counter>,
    cluster_rq_overflow: Family<ClusterLabels, Counter>,
    cluster_rq_retry_overflow: Family<ClusterLabels, Counter>,
    cluster_hc_success: Family<ClusterLabels, Counter>,
    cluster_hc_failure: Family<ClusterLabels, Counter>,
    cluster_membership_healthy: Family<ClusterLabels, Gauge>,
    cluster_outlier_ejections: Family<ClusterLabels, Counter>,
    cluster_outlier_ejections_active: Family<ClusterLabels, Gauge>,
    listener_rq: Family<ListenerLabels, Counter>,
    listener_rq_active: Family<ListenerLabels, Gauge>,
    listener_rq_1xx: Family<ListenerLabels, Counter>,
    listener_rq_2xx: Family<ListenerLabels, Counter>,
    listener_rq_3xx: Family<ListenerLabels, Counter>,
    listener_rq_4xx: Family<ListenerLabels, Counter>,
    listener_rq_5xx: Family<ListenerLabels, Counter>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_errors: Family<RpcErrorLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    grpc_requests: Family<GrpcStatusLabels, Counter>,
    grpc_duration: HistogramFamily<GrpcLabels>,
}

impl Families {
    /// Registers every family; counters get `_total` appended by the encoder.
    fn register(registry: &mut Registry) -> Families {
        fn reg<M: prometheus_client::registry::Metric + Clone + Default>(
            registry: &mut Registry,
            name: &str,
            help: &str,
        ) -> M {
            let m = M::default();
            registry.register(name, help, m.clone());
            m
        }
        let r = registry;
        // name (after `mosn_`, before `_total`), help
        #[rustfmt::skip]
        let families = Families {
            listener_connections: reg(r, "listener_connections", "Accepted downstream connections"),
            listener_connections_active:
                reg(r, "listener_connections_active", "Downstream connections open now"),
            listener_bytes_received:
                reg(r, "listener_bytes_received", "Bytes from downstream copied in userspace"),
            listener_bytes_sent:
                reg(r, "listener_bytes_sent", "Bytes to downstream copied in userspace"),
            listener_kernel_spliced:
                reg(r, "listener_kernel_spliced", "Connections handed to the kernel splice"),
            listener_userspace_copied:
                reg(r, "listener_userspace_copied", "Connections copied in userspace"),
            listener_errors: reg(r, "listener_errors", "Failed proxied connections by kind"),
            cluster_cx: reg(r, "cluster_upstream_cx", "Upstream connections established"),
            cluster_cx_active: reg(r, "cluster_upstream_cx_active", "Upstream connections open now"),
            cluster_cx_connect_fail:
                reg(r, "cluster_upstream_cx_connect_fail", "Upstream connect attempts that failed"),
            cluster_cx_connect_timeout:
                reg(r, "cluster_upstream_cx_connect_timeout", "Upstream connect attempts that timed out"),
            cluster_bytes_sent:
                reg(r, "cluster_upstream_bytes_sent", "Bytes to upstream copied in userspace"),
            cluster_bytes_received:
                reg(r, "cluster_upstream_bytes_received", "Bytes from upstream copied in userspace"),
            cluster_no_healthy_host:
                reg(r, "cluster_no_healthy_host", "Connections refused: no healthy upstream host"),
            cluster_rq: reg(r, "cluster_upstream_rq", "Requests sent upstream (each try)"),
            cluster_rq_active: reg(r, "cluster_upstream_rq_active", "Upstream requests in flight"),
            cluster_rq_2xx: reg(r, "cluster_upstream_rq_2xx", "Upstream responses 2xx"),
            cluster_rq_3xx: reg(r, "cluster_upstream_rq_3xx", "Upstream responses 3xx"),
            cluster_rq_4xx: reg(r, "cluster_upstream_rq_4xx", "Upstream responses 4xx"),
            cluster_rq_5xx: reg(r, "cluster_upstream_rq_5xx", "Upstream responses 5xx"),
            cluster_rq_timeout: reg(r, "cluster_upstream_rq_timeout", "Upstream requests that timed out"),
            cluster_rq_reset: reg(r, "cluster_upstream_rq_reset", "Upstream connections that broke before a full response"),
            cluster_rq_retry: reg(r, "cluster_upstream_rq_retry", "Upstream requests retried"),
            cluster_rq_mirrored: reg(r, "cluster_upstream_rq_mirrored", "Copies of requests sent to this cluster by mirroring"),
            cluster_cx_overflow: reg(r, "cluster_upstream_cx_overflow", "Connections refused by the max_connections circuit breaker"),
            cluster_rq_pending_overflow: reg(r, "cluster_upstream_rq_pending_overflow", "Requests refused by the max_pending_requests circuit breaker"),
            cluster_rq_overflow: reg(r, "cluster_upstream_rq_overflow", "Requests refused by the max_requests circuit breaker"),
            cluster_rq_retry_overflow: reg(r, "cluster_upstream_rq_retry_overflow", "Retries refused by the max_retries circuit breaker"),
            cluster_hc_success: reg(r, "cluster_health_check_success", "Active health checks that passed"),
            cluster_hc_failure: reg(r, "cluster_health_check_failure", "Active health checks that failed"),
            cluster_membership_healthy: reg(r, "cluster_membership_healthy", "Hosts healthy now"),
            cluster_outlier_ejections: reg(r, "cluster_outlier_detection_ejections", "Hosts ejected by outlier detection"),
            cluster_outlier_ejections_active: reg(r, "cluster_outlier_detection_ejections_active", "Hosts ejected now"),
            listener_rq: reg(r, "listener_downstream_rq", "Requests received from downstream (L7)"),
            listener_rq_active: reg(r, "listener_downstream_rq_active", "Downstream requests in flight (L7)"),
            listener_rq_1xx: reg(r, "listener_downstream_rq_1xx", "Responses 1xx sent downstream"),
            listener_rq_2xx: reg(r, "listener_downstream_rq_2xx", "Responses 2xx sent downstream"),
            listener_rq_3xx: reg(r, "listener_downstream_rq_3xx", "Responses 3xx sent downstream"),
            listener_rq_4xx: reg(r, "listener_downstream_rq_4xx", "Responses 4xx sent downstream"),
            listener_rq_5xx: reg(r, "listener_downstream_rq_5xx", "Responses 5xx sent downstream"),
            rpc_requests: reg(r, "rpc_requests", "RPC requests received, by service and method"),
            grpc_requests: reg(r, "grpc_requests", "gRPC calls finished, by service, method and grpc-status"),
            grpc_duration: {
                let h: HistogramFamily<GrpcLabels> = Family::new_with_constructor(rpc_duration_histogram);
                r.register_with_unit("grpc_request_duration", "gRPC call latency, by service and method", prometheus_client::registry::Unit::Seconds, h.clone());
                h
            },
            rpc_errors: reg(r, "rpc_errors", "RPC responses with an error status, by service, method and the protocol's status code"),
            rpc_duration: {
                let h: HistogramFamily<RpcLabels> = Family::new_with_constructor(rpc_duration_histogram);
                r.register_with_unit(
                    "rpc_request_duration",
                    "RPC request latency, by service and method",
                    prometheus_client::registry::Unit::Seconds,
                    h.clone(),
                );
                h
            },
        };
        families
    }
}

/// The daemon's metrics. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    families: Families,
    sources: Sources,
    /// Handles already given out, by name: the index behind [`Metrics::stats_json`]
    /// (prometheus-client families cannot be iterated) and the cache behind `listener()`.
    listeners: Mutex<BTreeMap<String, ListenerMetrics>>,
    clusters: Mutex<BTreeMap<String, ClusterMetrics>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "listeners",
                &lock(&self.listeners).keys().collect::<Vec<_>>(),
            )
            .field("clusters", &lock(&self.clusters).keys().collect::<Vec<_>>())
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families::register(&mut registry);
        let sources = Sources::default();
        registry.register_collector(Box::new(sources.clone()));
        Arc::new(Metrics {
            registry,
            families,
            sources,
            listeners: Mutex::new(BTreeMap::new()),
            clusters: Mutex::new(BTreeMap::new()),
        })
    }

    /// Handles for one listener; the same series for the same name on every call.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let mut listeners = lock(&self.listeners);
        if let Some(m) = listeners.get(listener) {
            return m.clone();
        }
        let f = &self.families;
        let l = ListenerLabels {
            listener: Escaped(listener.to_owned()),
        };
        let by_kind = ErrorKind::ALL.map(|kind| {
            let labels = ListenerErrorLabels {
                listener: l.listener.clone(),
                kind,
            };
            f.listener_errors.get_or_create(&labels).clone()
        });
        let m = ListenerMetrics {
            connections_total: f.listener_connections.get_or_create(&l).clone(),
            connections_active: f.listener_connections_active.get_or_create(&l).clone(),
            bytes_received: f.listener_bytes_received.get_or_create(&l).clone(),
            bytes_sent: f.listener_bytes_sent.get_or_create(&l).clone(),
            kernel_spliced_total: f.listener_kernel_spliced.get_or_create(&l).clone(),
            userspace_copied_total: f.listener_userspace_copied.get_or_create(&l).clone(),
            downstream_rq_total: f.listener_rq.get_or_create(&l).clone(),
            downstream_rq_active: f.listener_rq_active.get_or_create(&l).clone(),
            downstream_rq_1xx: f.listener_rq_1xx.get_or_create(&l).clone(),
            downstream_rq_2xx: f.listener_rq_2xx.get_or_create(&l).clone(),
            downstream_rq_3xx: f.listener_rq_3xx.get_or_create(&l).clone(),
            downstream_rq_4xx: f.listener_rq_4xx.get_or_create(&l).clone(),
            downstream_rq_5xx: f.listener_rq_5xx.get_or_create(&l).clone(),
            errors: ErrorCounters { by_kind },
        };
        listeners.insert(listener.to_owned(), m.clone());
        m
    }

    /// Handles for RPC traffic of one service and method on a listener. Callers cache them
    /// (the proxy keeps one per service and method) and bound the number of label sets.
    pub fn rpc(&self, listener: &str, protocol: &str, service: &str, method: &str) -> RpcMetrics {
        let f = &self.families;
        let labels = RpcLabels {
            listener: Escaped(listener.to_owned()),
            protocol: Escaped(protocol.to_owned()),
            service: Escaped(service.to_owned()),
            method: Escaped(method.to_owned()),
        };
        RpcMetrics {
            requests: f.rpc_requests.get_or_create(&labels).clone(),
            duration: f.rpc_duration.get_or_create(&labels).clone(),
            errors: f.rpc_errors.clone(),
            labels,
        }
    }

    /// Handles for gRPC calls of one service and method on a listener (callers cache them).
    pub fn grpc(&self, listener: &str, service: &str, method: &str) -> GrpcMetrics {
        let f = &self.families;
        let labels = GrpcLabels {
            listener: Escaped(listener.to_owned()),
            service: Escaped(service.to_owned()),
            method: Escaped(method.to_owned()),
        };
        GrpcMetrics {
            duration: f.grpc_duration.get_or_create(&labels).clone(),
            requests: f.grpc_requests.clone(),
            labels,
        }
    }

    /// Handles for one cluster; the same series for the same name on every call.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let mut clusters = lock(&self.clusters);
        if let Some(m) = clusters.get(cluster) {
            return m.clone();
        }
        let f = &self.families;
        let c = ClusterLabels {
            cluster: Escaped(cluster.to_owned()),
        };
        let m = ClusterMetrics {
            upstream_cx_total: f.cluster_cx.get_or_create(&c).clone(),
            upstream_cx_active: f.cluster_cx_active.get_or_create(&c).clone(),
            upstream_cx_connect_fail: f.cluster_cx_connect_fail.get_or_create(&c).clone(),
            upstream_cx_connect_timeout: f.cluster_cx_connect_timeout.get_or_create(&c).clone(),
            upstream_bytes_sent: f.cluster_bytes_sent.get_or_create(&c).clone(),
            upstream_bytes_received: f.cluster_bytes_received.get_or_create(&c).clone(),
            no_healthy_host: f.cluster_no_healthy_host.get_or_create(&c).clone(),
            upstream_rq_total: f.cluster_rq.get_or_create(&c).clone(),
            upstream_rq_active: f.cluster_rq_active.get_or_create(&c).clone(),
            upstream_rq_2xx: f.cluster_rq_2xx.get_or_create(&c).clone(),
            upstream_rq_3xx: f.cluster_rq_3xx.get_or_create(&c).clone(),
            upstream_rq_4xx: f.cluster_rq_4xx.get_or_create(&c).clone(),
            upstream_rq_5xx: f.cluster_rq_5xx.get_or_create(&c).clone(),
            upstream_rq_timeout: f.cluster_rq_timeout.get_or_create(&c).clone(),
            upstream_rq_reset: f.cluster_rq_reset.get_or_create(&c).clone(),
            upstream_rq_retry: f.cluster_rq_retry.get_or_create(&c).clone(),
            upstream_rq_mirrored: f.cluster_rq_mirrored.get_or_create(&c).clone(),
            upstream_cx_overflow: f.cluster_cx_overflow.get_or_create(&c).clone(),
            upstream_rq_pending_overflow: f.cluster_rq_pending_overflow.get_or_create(&c).clone(),
            upstream_rq_overflow: f.cluster_rq_overflow.get_or_create(&c).clone(),
            upstream_rq_retry_overflow: f.cluster_rq_retry_overflow.get_or_create(&c).clone(),
            health_check_success: f.cluster_hc_success.get_or_create(&c).clone(),
            health_check_failure: f.cluster_hc_failure.get_or_create(&c).clone(),
            membership_healthy: f.cluster_membership_healthy.get_or_create(&c).clone(),
            outlier_ejections_total: f.cluster_outlier_ejections.get_or_create(&c).clone(),
            outlier_ejections_active: f.cluster_outlier_ejections_active.get_or_create(&c).clone(),
        };
        clusters.insert(cluster.to_owned(), m.clone());
        m
    }

    /// Adds a source read at every scrape (text and JSON). Its names must not collide with
    /// the `listener_*`/`cluster_*` families above.
    pub fn add_collector(&self, c: Box<dyn SampleSource>) {
        self.sources
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
    }

    /// OpenMetrics text exposition, ending in `# EOF`; serve it as [`CONTENT_TYPE`].
    pub fn encode_text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; only a collector could report an error.
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }

    /// MOSN's `/api/v1/stats` JSON (its console sink): metric type -> namespace -> key -> value,
    /// values as decimal strings. Namespaces are the labels as `key.value` pairs joined by `.`.
    ///
    /// ```json
    /// { "downstream": { "listener.ingress": { "connections_total": "3", ... } },
    ///   "upstream":   { "cluster.backend":  { "upstream_cx_total": "3", ... } },
    ///   "global":     { "global": { "kernel_spliced_streams": "2" } } }
    /// ```
    /// `downstream`/`upstream` are MOSN's listener and cluster types; [`SampleSource`] samples
    /// go under `global` (namespace `global` when a sample has no labels).
    pub fn stats_json(&self) -> Value {
        let mut all = Map::new();
        let downstream: Map<String, Value> = lock(&self.listeners)
            .iter()
            .map(|(name, m)| (format!("listener.{name}"), Value::Object(m.stats())))
            .collect();
        let upstream: Map<String, Value> = lock(&self.clusters)
            .iter()
            .map(|(name, m)| (format!("cluster.{name}"), Value::Object(m.stats())))
            .collect();
        all.insert("downstream".into(), Value::Object(downstream));
        all.insert("upstream".into(), Value::Object(upstream));

        let mut global = Map::new();
        for family in self.sources.collect() {
            for (labels, value) in family.series {
                let namespace = if labels.is_empty() {
                    "global".to_owned()
                } else {
                    let pairs: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}.{v}")).collect();
                    pairs.join(".")
                };
                let ns = global
                    .entry(namespace)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(ns) = ns {
                    put(ns, family.name, value);
                }
            }
        }
        all.insert("global".into(), Value::Object(global));
        Value::Object(all)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn line_value(text: &str, series: &str) -> Option<String> {
        let value = |l: &str| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned);
        text.lines().find_map(value)
    }

    /// Asserts that each `prefix + series` line of `text` has the value.
    fn assert_lines(text: &str, prefix: &str, expected: &[(&str, &str)]) {
        for (series, value) in expected {
            let series = format!("{prefix}{series}");
            assert_eq!(
                line_value(text, &series).as_deref(),
                Some(*value),
                "{series}:\n{text}"
            );
        }
    }

    fn sample(
        name: &'static str,
        kind: SampleKind,
        labels: &[(&'static str, &str)],
        value: u64,
    ) -> Sample {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Sample {
            name,
            help: "test",
            kind,
            labels,
            value,
        }
    }

    /// What the eBPF module will register: per-CPU counters summed, plus map sizes.
    fn kernel_source() -> Vec<Sample> {
        let counters = mosn_ebpf_common::Counter::ALL.iter().enumerate();
        let mut out: Vec<Sample> = counters
            .map(|(i, c)| sample(c.name(), SampleKind::Counter, &[], i as u64 * 10))
            .collect();
        out.push(sample(
            "bpf_map_entries",
            SampleKind::Gauge,
            &[("map", "SOCKS")],
            4,
        ));
        out.push(sample(
            "bpf_map_entries",
            SampleKind::Gauge,
            &[("map", "PEERS")],
            2,
        ));
        out
    }

    #[test]
    fn listener_counts_show_up_with_labels() {
        let m = Metrics::new();
        let l = m.listener("ingress");
        l.connections_total.inc_by(2);
        l.connections_active.inc();
        l.bytes_received.inc_by(100);
        l.bytes_sent.inc_by(42);
        l.kernel_spliced_total.inc();
        l.userspace_copied_total.inc();
        l.errors.inc(ErrorKind::UpstreamConnect);
        l.errors.inc(ErrorKind::UpstreamConnect);
        l.errors.inc(ErrorKind::IdleTimeout);
        // A second handle for the same listener counts into the same series.
        m.listener("ingress").connections_total.inc();

        let text = m.encode_text();
        #[rustfmt::skip]
        assert_lines(&text, "mosn_listener_", &[
            (r#"connections_total{listener="ingress"}"#, "3"),
            (r#"connections_active{listener="ingress"}"#, "1"),
            (r#"bytes_received_total{listener="ingress"}"#, "100"),
            (r#"bytes_sent_total{listener="ingress"}"#, "42"),
            (r#"kernel_spliced_total{listener="ingress"}"#, "1"),
            (r#"userspace_copied_total{listener="ingress"}"#, "1"),
            (r#"errors_total{listener="ingress",kind="upstream_connect"}"#, "2"),
            (r#"errors_total{listener="ingress",kind="idle_timeout"}"#, "1"),
            // Every kind exists from the start.
            (r#"errors_total{listener="ingress",kind="other"}"#, "0"),
        ]);
        assert!(
            text.contains("# TYPE mosn_listener_connections counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mosn_listener_connections_active gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn cluster_counts_show_up_with_labels() {
        let m = Metrics::new();
        let c = m.cluster("backend");
        c.upstream_cx_total.inc_by(5);
        c.upstream_cx_active.set(2);
        c.upstream_cx_connect_fail.inc();
        c.upstream_cx_connect_timeout.inc();
        c.upstream_bytes_sent.inc_by(7);
        c.upstream_bytes_received.inc_by(9);
        c.no_healthy_host.inc();
        m.cluster("other").upstream_cx_total.inc();

        #[rustfmt::skip]
        assert_lines(&m.encode_text(), "mosn_cluster_", &[
            (r#"upstream_cx_total{cluster="backend"}"#, "5"),
            (r#"upstream_cx_total{cluster="other"}"#, "1"),
            (r#"upstream_cx_active{cluster="backend"}"#, "2"),
            (r#"upstream_cx_connect_fail_total{cluster="backend"}"#, "1"),
            (r#"upstream_cx_connect_timeout_total{cluster="backend"}"#, "1"),
            (r#"upstream_bytes_sent_total{cluster="backend"}"#, "7"),
            (r#"upstream_bytes_received_total{cluster="backend"}"#, "9"),
            (r#"no_healthy_host_total{cluster="backend"}"#, "1"),
        ]);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.listener("a\"b\\c\nd").connections_total.inc();
        let series = r#"connections_total{listener="a\"b\\c\nd"}"#;
        assert_lines(&m.encode_text(), "mosn_listener_", &[(series, "1")]);
    }

    #[test]
    fn sample_source_shows_up_at_scrape_time() {
        let m = Metrics::new();
        m.add_collector(Box::new(kernel_source));
        let live = Arc::new(AtomicU64::new(1));
        let live2 = live.clone();
        m.add_collector(Box::new(move || {
            vec![sample(
                "live_value",
                SampleKind::Gauge,
                &[],
                live2.load(Ordering::Relaxed),
            )]
        }));

        let text = m.encode_text();
        let second = mosn_ebpf_common::Counter::ALL[1].name();
        let counter = format!("{second}_total");
        #[rustfmt::skip]
        assert_lines(&text, "mosn_", &[
            (&counter, "10"),
            (r#"bpf_map_entries{map="SOCKS"}"#, "4"),
            (r#"bpf_map_entries{map="PEERS"}"#, "2"),
            ("live_value", "1"),
        ]);
        assert!(
            text.contains(&format!("# TYPE mosn_{second} counter")),
            "{text}"
        );
        // One descriptor per family, however many series.
        assert_eq!(text.matches("# TYPE mosn_bpf_map_entries gauge").count(), 1);
        assert!(text.ends_with("# EOF\n"));

        live.store(7, Ordering::Relaxed);
        assert_lines(&m.encode_text(), "mosn_", &[("live_value", "7")]);
    }

    #[test]
    fn stats_json_has_the_values() {
        let m = Metrics::new();
        let l = m.listener("ingress");
        l.connections_total.inc_by(3);
        l.connections_active.set(1);
        l.errors.inc(ErrorKind::NoHealthyHost);
        m.cluster("backend").upstream_cx_total.inc_by(2);
        m.add_collector(Box::new(kernel_source));

        let j = m.stats_json();
        let listener = &j["downstream"]["listener.ingress"];
        assert_eq!(listener["connections_total"], "3");
        assert_eq!(listener["connections_active"], "1");
        assert_eq!(listener["bytes_received"], "0");
        assert_eq!(listener["errors_no_healthy_host"], "1");
        assert_eq!(listener["errors_upstream_connect"], "0");
        assert_eq!(j["upstream"]["cluster.backend"]["upstream_cx_total"], "2");
        assert_eq!(j["upstream"]["cluster.backend"]["no_healthy_host"], "0");
        let second = mosn_ebpf_common::Counter::ALL[1].name();
        assert_eq!(j["global"]["global"][second], "10");
        assert_eq!(j["global"]["map.SOCKS"]["bpf_map_entries"], "4");
        assert_eq!(j["global"]["map.PEERS"]["bpf_map_entries"], "2");
    }

    #[test]
    fn mismatched_sample_kind_is_dropped() {
        let m = Metrics::new();
        m.add_collector(Box::new(|| {
            vec![
                sample("mixed", SampleKind::Gauge, &[("k", "1")], 1),
                sample("mixed", SampleKind::Counter, &[("k", "2")], 2),
            ]
        }));
        let text = m.encode_text();
        assert_lines(&text, "mosn_", &[(r#"mixed{k="1"}"#, "1")]);
        assert!(!text.contains("mosn_mixed_total"), "{text}");
    }
}
