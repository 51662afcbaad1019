//! `mosn`: the daemon's command line (MOSN's shape: `mosn start -c <file>`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mosn",
    about = "mosn-rs: an eBPF-accelerated service-mesh data plane",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the proxy on a config file (MOSN JSON, or YAML with the same schema).
    Start {
        /// The config file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Worker threads (default: one per CPU). 1 runs a single-threaded runtime.
        #[arg(long)]
        workers: Option<usize>,
        /// `fast_path: auto` hands connections to the kernel only while at most this many
        /// are open on auto listeners. See docs/ARCHITECTURE.md, "Choosing the data path".
        #[arg(long, default_value_t = mosn::tcp_proxy::AUTO_MAX_ACTIVE)]
        auto_max_active: usize,
        /// `fast_path: auto` listeners splice at most this many connections at once
        /// (0: never splice).
        #[arg(long, default_value_t = mosn::tcp_proxy::AUTO_MAX_SPLICED)]
        auto_max_spliced: usize,
        /// Write the daemon's pid here (for `mosn stop`); removed on a clean exit.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Stop a running daemon (SIGTERM to the pid in --pid-file, then wait for it to drain)
    /// and uninstall transparent capture: every program, link and map pinned under the
    /// config's `capture.pin_path` (or --pin-path) is removed, so workloads connect directly.
    Stop {
        /// The config the daemon runs (for `capture.pin_path` and `graceful_timeout`).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Pin path to uninstall when there is no config (default /sys/fs/bpf/mosn).
        #[arg(long)]
        pin_path: Option<PathBuf>,
    },
    /// Check a config file and exit: non-zero, with the field path and reason, if it is bad.
    Validate {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load(path: &std::path::Path) -> anyhow::Result<mosn::config::Config> {
    let loaded = mosn::config::load(path).with_context(|| format!("config {}", path.display()))?;
    for w in &loaded.warnings {
        tracing::warn!("config {}: {w}", path.display());
    }
    Ok(loaded.config)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

fn start(
    config: PathBuf,
    workers: Option<usize>,
    options: mosn::server::Options,
    pid_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load(&config)?;
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("pid file {}", p.display()))?;
    }
    let _pid_file = scopeguard::guard(pid_file, |p| {
        if let Some(p) = p {
            let _ = std::fs::remove_file(p);
        }
    });
    mosn::network::sockopt::raise_nofile_limit();
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    rt.block_on(mosn::server::run(config, options, shutdown_signal()))?;
    Ok(())
}

/// `mosn stop`: SIGTERM the daemon, wait for it, then uninstall the pinned capture programs.
fn stop(
    config: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    pin_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = config.map(|c| load(&c)).transpose()?;
    if let Some(p) = &pid_file {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                let pid: i32 = text
                    .trim()
                    .parse()
                    .with_context(|| format!("pid file {}", p.display()))?;
                let grace = config
                    .as_ref()
                    .map_or(mosn::config::DEFAULT_DRAIN_TIMEOUT, |c| c.drain_timeout)
                    + std::time::Duration::from_secs(5);
                terminate(pid, grace)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(pid_file = %p.display(), "no pid file: no daemon to stop");
            }
            Err(e) => return Err(e).with_context(|| format!("pid file {}", p.display())),
        }
    }
    let pin = pin_path
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.capture.as_ref())
                .map(|c| c.pin_path.clone())
        })
        .unwrap_or_else(|| PathBuf::from(mosn::config::capture::DEFAULT_PIN_PATH));
    mosn::ebpf::capture::uninstall(&pin)
        .with_context(|| format!("uninstalling capture at {}", pin.display()))?;
    tracing::info!(pin = %pin.display(), "capture uninstalled");
    Ok(())
}

/// Sends SIGTERM and waits up to `grace` for the process to exit.
fn terminate(pid: i32, grace: std::time::Duration) -> anyhow::Result<()> {
    // SAFETY: kill(2) with a pid read from our own pid file; signal 0 only probes.
    let alive = |sig| unsafe { libc::kill(pid, sig) } == 0;
    if !alive(libc::SIGTERM) {
        tracing::info!(pid, "daemon not running");
        return Ok(());
    }
    // A zombie (exited, not yet reaped by its parent) counts as stopped.
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + grace;
    while alive(0) && !zombie() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "daemon {pid} still running after {grace:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    tracing::info!(pid, "daemon stopped");
    Ok(())
}

/// The error and its causes, each cause once: our error messages already quote their source
/// where it helps the operator, so causes a message already contains are not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Start {
            config,
            workers,
            auto_max_active,
            auto_max_spliced,
            pid_file,
        } => start(
            config,
            workers,
            mosn::server::Options {
                auto_max_active,
                auto_max_spliced,
                ..Default::default()
            },
            pid_file,
        ),
        Command::Stop {
            config,
            pid_file,
            pin_path,
        } => stop(config, pid_file, pin_path),
        Command::Validate { config } => load(&config).map(|c| {
            println!(
                "config OK: {} listener(s), {} cluster(s)",
                c.listeners.len(),
                c.clusters.len()
            );
        }),
        Command::Version => {
            println!("mosn {}", env!("CARGO_PKG_VERSION"));
            let kernel = match (
                mosn::ebpf::BPF_OBJECT.is_empty(),
                mosn::ebpf::capture::CAPTURE_OBJECT.is_empty(),
            ) {
                (false, false) => "built in (sk_skb splice, transparent capture)",
                (false, true) => "built in (sk_skb splice only; no transparent capture)",
                _ => "not built in (userspace only; `cargo xtask build` builds them)",
            };
            println!("kernel programs: {kernel}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
