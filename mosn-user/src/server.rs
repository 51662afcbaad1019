//! Starting and stopping the daemon: fast path, clusters, listeners, admin, graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::capture_control::{CaptureControl, CaptureSamples};
use arc_swap::ArcSwap;
use mosn_ebpf_common::Counter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::chains::{Chain, FilterChains};
use crate::config::{Config, FastPath, ListenerConfig, NetworkFilter};
use crate::ebpf::{Feature, KernelFeatures, SpliceError, Splicer};
use crate::filter::{FilterChain, FilterDeps, Registry};
use crate::metrics::{Metrics, Sample, SampleKind, SampleSource};
use crate::network::{
    BoundListener, ConnTracker, ConnectionHandler, ListenerIndex, OriginalDstLookup,
};
use crate::proxy::Proxy;
use crate::router::Routers;
use crate::stream::Pools;
use crate::stream::mux::MuxPools;
use crate::tcp_proxy::{AutoRule, DataPath, TcpProxy};
use crate::upstream::ClusterManager;

/// Why the daemon could not start. Nothing is left listening when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "listener {listener}: fast_path \"kernel\" needs the kernel programs, which could not be loaded: {source}"
    )]
    KernelRequired {
        listener: String,
        #[source]
        source: Box<SpliceError>,
    },
    #[error("listener {listener}: cannot listen on {address}: {source}")]
    Bind {
        listener: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listener {listener}: TLS: {source}")]
    ListenerTls {
        listener: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("TLS: {0}")]
    Tls(#[source] crate::tls::TlsError),
    #[error(transparent)]
    Capture(#[from] crate::capture_control::CaptureStartError),
    #[error("admin: cannot listen on {address}: {source}")]
    Admin {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What building a listener's network filters shares.
struct Wiring<'a> {
    clusters: &'a Arc<ClusterManager>,
    routers: &'a Routers,
    filter_registry: &'a Registry,
    pools: &'a Arc<Pools>,
    h2pools: &'a Arc<crate::stream::H2Pools>,
    mux: &'a Arc<MuxPools>,
    metrics: &'a Arc<Metrics>,
    shutdown: &'a CancellationToken,
}

/// One network filter of a listener's chain.
fn network_filter(
    l: &ListenerConfig,
    filter: &NetworkFilter,
    w: &Wiring<'_>,
    data_path: DataPath,
) -> Arc<dyn ConnectionHandler> {
    match filter {
        NetworkFilter::TcpProxy(t) => Arc::new(TcpProxy::new(
            &l.name,
            t,
            w.clusters,
            data_path,
            w.metrics.listener(&l.name),
        )),
        NetworkFilter::Proxy(p) => Arc::new(Proxy {
            listener: l.name.as_str().into(),
            config: p.clone(),
            routes: Arc::clone(
                w.routers
                    .get(&p.router_config_name)
                    .expect("validated config references known routers"),
            ),
            filters: FilterChain::new(w.filter_registry.build(
                &l.stream_filters,
                &FilterDeps {
                    clusters: w.clusters,
                },
            )),
            clusters: Arc::clone(w.clusters),
            pools: Arc::clone(w.pools),
            mux: Arc::clone(w.mux),
            metrics: w.metrics.listener(&l.name),
            h2pools: Arc::clone(w.h2pools),
            rpc_stats: crate::proxy::RpcStats::new(l.name.as_str().into(), Arc::clone(w.metrics)),
            grpc_stats: crate::proxy::GrpcStats::new(
                l.name.as_str().into(),
                Arc::clone(w.metrics),
            ),
            shutdown: w.shutdown.clone(),
        }),
    }
}

/// A listener's handler: its one plain filter, or its filter chains behind the dispatcher
/// that matches ClientHellos and terminates TLS. TLS certificate files are watched until
/// `stop`.
fn listener_handler(
    l: &ListenerConfig,
    w: &Wiring<'_>,
    data_path: DataPath,
    tls_stats: &Arc<crate::tls::TlsStats>,
    stop: &CancellationToken,
) -> Result<Arc<dyn ConnectionHandler>, StartError> {
    let mut chains = Vec::with_capacity(l.filter_chains.len());
    for c in &l.filter_chains {
        let tls = if c.tls.is_empty() {
            None
        } else {
            let tls = crate::tls::ServerTls::new(&l.name, &c.tls, Arc::clone(tls_stats))
                .map_err(|source| StartError::ListenerTls {
                    listener: l.name.clone(),
                    source,
                })?;
            tls.spawn_watcher(stop.clone());
            Some(tls)
        };
        chains.push(Chain {
            matcher: c.chain_match.clone(),
            tls,
            handler: network_filter(l, &c.filter, w, data_path.clone()),
        });
    }
    let chains = FilterChains::new(&l.name, chains, l.inspector, w.metrics.listener(&l.name));
    Ok(match chains.single_plain() {
        Some(h) => Arc::clone(h),
        None => Arc::new(chains),
    })
}

/// Loads the kernel fast path if any listener may use it.
///
/// `kernel` listeners make a failure fatal; `auto` listeners fall back to userspace with a
/// single warning (the probe's, when the kernel lacks what the splice needs).
fn load_fast_path(
    config: &Config,
    features: &KernelFeatures,
) -> Result<Option<Arc<Splicer>>, StartError> {
    let wanted: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.fast_path != FastPath::Userspace)
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    if let Some(missing) = features.missing(Feature::Splice) {
        if let Some(l) = wanted.iter().find(|l| l.fast_path == FastPath::Kernel) {
            return Err(StartError::KernelRequired {
                listener: l.name.clone(),
                source: Box::new(SpliceError::KernelLacks(missing.to_string())),
            });
        }
        // `auto`: the probe has said it once.
        return Ok(None);
    }
    match Splicer::load() {
        Ok(s) => {
            info!("kernel fast path loaded (sk_skb splice)");
            Ok(Some(Arc::new(s)))
        }
        Err(source) => {
            if let Some(l) = wanted.iter().find(|l| l.fast_path == FastPath::Kernel) {
                return Err(StartError::KernelRequired {
                    listener: l.name.clone(),
                    source: Box::new(source),
                });
            }
            warn!(error = %source, "kernel fast path unavailable; fast_path \"auto\" listeners copy in userspace");
            Ok(None)
        }
    }
}

/// The kernel features the config asks for; none means no probing (a userspace-only
/// daemon touches no BPF at all).
fn wanted_features(config: &Config) -> Vec<Feature> {
    let mut wanted = Vec::new();
    if config
        .listeners
        .iter()
        .any(|l| l.fast_path != FastPath::Userspace)
    {
        wanted.push(Feature::Splice);
    }
    if let Some(c) = &config.capture {
        wanted.extend([Feature::OutboundCapture, Feature::OriginalDstGetsockopt]);
        if c.inbound_listener.is_some() {
            wanted.push(Feature::InboundCapture);
        }
        if c.sk_msg.enabled || c.workloads.iter().any(|w| w.sk_msg) {
            wanted.push(Feature::SkMsg);
        }
    }
    wanted
}

/// `mosn_kernel_feature{feature}`: 1 when the kernel supports it (or could not be asked),
/// 0 when probing found it missing.
struct FeatureSamples(KernelFeatures);

impl SampleSource for FeatureSamples {
    fn samples(&self) -> Vec<Sample> {
        self.0
            .states()
            .map(|(f, _)| Sample {
                name: "kernel_feature",
                help: "Kernel features the running kernel supports (1) or lacks (0), probed at startup",
                kind: SampleKind::Gauge,
                labels: vec![("feature", f.name().to_string())],
                value: u64::from(self.0.usable(f)),
            })
            .collect()
    }
}

/// Exposes the kernel's per-CPU counters and map sizes on /metrics and /stats.
struct KernelSamples(Arc<Splicer>);

impl SampleSource for KernelSamples {
    fn samples(&self) -> Vec<Sample> {
        let c = self.0.counters();
        let help = |k: Counter| match k {
            Counter::SplicedStreams => {
                "Connection directions whose first segment the kernel spliced"
            }
            Counter::BytesDownToUp => "Bytes the kernel spliced from downstream to upstream",
            Counter::BytesUpToDown => "Bytes the kernel spliced from upstream to downstream",
            Counter::Segments => "Segments the kernel spliced",
            Counter::NoPeer => "Segments on a socket without a splice peer (left to the socket)",
            Counter::DivertedDirections => {
                "Directions diverted to the daemon because a redirect was refused during pair set-up (copied in userspace, nothing dropped)"
            }
            Counter::EmptySegments => {
                "Payload-less segments (FIN) the verdict consumed; the daemon forwards FIN"
            }
            Counter::Diverted => "Segments of diverted directions passed to the daemon to copy",
        };
        let name = |k: Counter| match k {
            Counter::SplicedStreams => "kernel_spliced_streams",
            Counter::BytesDownToUp => "kernel_bytes_downstream_to_upstream",
            Counter::BytesUpToDown => "kernel_bytes_upstream_to_downstream",
            Counter::Segments => "kernel_segments",
            Counter::NoPeer => "kernel_no_peer",
            Counter::DivertedDirections => "kernel_diverted",
            Counter::EmptySegments => "kernel_empty_segments",
            Counter::Diverted => "kernel_diverted_segments",
        };
        let mut out: Vec<Sample> = Counter::ALL
            .iter()
            .map(|&k| Sample {
                name: name(k),
                help: help(k),
                kind: SampleKind::Counter,
                labels: Vec::new(),
                value: c.get(k),
            })
            .collect();
        let (socks, pairs) = self.0.entries();
        out.push(Sample {
            name: "kernel_sockhash_entries",
            help: "Sockets currently in the splice SOCKHASH",
            kind: SampleKind::Gauge,
            labels: Vec::new(),
            value: socks as u64,
        });
        out.push(Sample {
            name: "kernel_pair_entries",
            help: "Entries currently in the splice pair map",
            kind: SampleKind::Gauge,
            labels: Vec::new(),
            value: pairs as u64,
        });
        out
    }
}

/// Process-wide settings that are not part of the (MOSN-shaped) config file.
#[derive(Clone)]
pub struct Options {
    /// `fast_path: auto`: hand off only while at most this many connections are open on
    /// `auto` listeners (see `AutoRule`).
    pub auto_max_active: usize,
    /// `fast_path: auto`: at most this many connections spliced at once (see `AutoRule`).
    pub auto_max_spliced: usize,
    /// The capture programs' record of original destinations, asked first by
    /// `use_original_dst: "redirect"` listeners (then `SO_ORIGINAL_DST`). `None`: not loaded.
    pub original_dst: Option<Arc<dyn OriginalDstLookup>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_max_active: crate::tcp_proxy::AUTO_MAX_ACTIVE,
            auto_max_spliced: crate::tcp_proxy::AUTO_MAX_SPLICED,
            original_dst: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("auto_max_active", &self.auto_max_active)
            .field("auto_max_spliced", &self.auto_max_spliced)
            .field(
                "original_dst",
                &self.original_dst.as_ref().map(|_| "<lookup>"),
            )
            .finish()
    }
}

/// Runs the daemon on `config` until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics = Metrics::new();
    let wanted = wanted_features(&config);
    let features = if wanted.is_empty() {
        KernelFeatures::assume_all()
    } else {
        let f = KernelFeatures::probe(&wanted);
        metrics.add_collector(Box::new(FeatureSamples(f.clone())));
        f
    };
    let splicer = load_fast_path(&config, &features)?;
    if let Some(s) = &splicer {
        metrics.add_collector(Box::new(KernelSamples(Arc::clone(s))));
    }
    crate::tls::install_provider();
    let tls_stats = crate::tls::TlsStats::new();
    {
        let s = Arc::clone(&tls_stats);
        metrics.add_collector(Box::new(move || s.samples()));
    }
    let clusters = Arc::new(
        ClusterManager::with_tls(&config, &metrics, &tls_stats).map_err(StartError::Tls)?,
    );
    let stop_health = CancellationToken::new();
    clusters.start_health_checks(&stop_health);
    let routers = Routers::new(&config.routers);
    let filter_registry = Registry::builtin();
    let pools = Pools::new();
    let h2pools = crate::stream::H2Pools::new();
    // Multiplexed (RPC) upstream connections live until the daemon stops.
    let mux = MuxPools::with_shutdown(&stop_health);
    let stop_accepting = CancellationToken::new();
    // Capture is installed before anything listens: a failure leaves nothing bound.
    let capture = match &config.capture {
        Some(c) => Some(CaptureControl::install(c, &features)?),
        None => None,
    };
    let mut options = options;
    if let (Some(c), None) = (&capture, &options.original_dst) {
        options.original_dst = Some(Arc::clone(c) as Arc<dyn OriginalDstLookup>);
    }

    let auto = AutoRule::with_limits(options.auto_max_active, options.auto_max_spliced);
    let mut bound = Vec::new();
    for l in &config.listeners {
        let data_path = DataPath::resolve(l.fast_path, splicer.as_ref(), &auto)
            .expect("kernel listeners without a splicer were rejected by load_fast_path");
        let w = Wiring {
            clusters: &clusters,
            routers: &routers,
            filter_registry: &filter_registry,
            pools: &pools,
            h2pools: &h2pools,
            mux: &mux,
            metrics: &metrics,
            shutdown: &stop_accepting,
        };
        let proxy = listener_handler(l, &w, data_path.clone(), &tls_stats, &stop_health)?;
        let b =
            BoundListener::bind(&l.name, l.address, proxy, l.original_dst).map_err(|source| {
                StartError::Bind {
                    listener: l.name.clone(),
                    address: l.address,
                    source,
                }
            })?;
        info!(listener = %l.name, address = %b.local_addr, fast_path = data_path.name(), original_dst = ?l.original_dst, "bound");
        bound.push(b);
    }
    // `use_original_dst` listeners hand connections to the listener of their original
    // destination: every listener's bound address.
    let index = Arc::new(ListenerIndex::new(
        bound.iter().map(|b| (b.local_addr, Arc::clone(b.proxy()))),
    ));
    for b in &mut bound {
        b.enable_original_dst(options.original_dst.clone(), Arc::clone(&index));
    }

    let capture = match capture {
        Some(c) => {
            let socks: Vec<_> = bound
                .iter()
                .map(|b| (b.name.clone(), b.local_addr, b.socket()))
                .collect();
            let control = CaptureControl::start(Arc::clone(&c), &config, &socks)?;
            metrics.add_collector(Box::new(CaptureSamples(c)));
            Some(control)
        }
        None => None,
    };

    let drain_timeout = config.drain_timeout;
    let state = Arc::new(AdminState {
        config: Arc::new(ArcSwap::from_pointee(config.clone())),
        metrics: Arc::clone(&metrics),
        ready: Default::default(),
    });
    let stop_admin = CancellationToken::new();
    let admin_task = match config.admin {
        Some(address) => {
            let (addr, task) = admin::serve(
                address,
                Arc::clone(&state),
                stop_admin.clone().cancelled_owned(),
            )
            .await
            .map_err(|source| StartError::Admin { address, source })?;
            info!(address = %addr, "admin listening");
            Some(task)
        }
        None => None,
    };

    let tracker = ConnTracker::new();
    let mut accept_tasks = Vec::new();
    for b in bound {
        accept_tasks.push(tokio::spawn(
            b.serve(stop_accepting.clone(), tracker.clone()),
        ));
    }
    state.ready.store(true, Ordering::SeqCst);
    info!("mosn started");

    shutdown.await;
    state.ready.store(false, Ordering::SeqCst);
    info!(connections = tracker.len(), timeout = ?drain_timeout, "shutting down: no new connections, draining");
    // Stop accepting first (the listening sockets close), keep admin up while draining.
    stop_accepting.cancel();
    for t in accept_tasks {
        let _ = t.await;
    }
    tracker.close();
    if tokio::time::timeout(drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            connections = tracker.len(),
            "drain timeout: closing remaining connections"
        );
    } else {
        info!("all connections drained");
    }
    if let Some(c) = capture {
        c.shutdown().await;
    }
    stop_health.cancel();
    stop_admin.cancel();
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    Ok(())
}
