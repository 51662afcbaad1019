//! `cargo xtask`: the project's own installer and task runner.
//!
//! - `setup`: what the kernel programs need and a fresh machine lacks (rust-src for nightly,
//!   bpf-linker built against the nightly toolchain's own libLLVM, bpffs). Idempotent: a second
//!   run only checks.
//! - `build`: setup, the BPF object, then the daemon (release) with the object embedded.
//! - `run`: build, then `mosn start` on an example config.
//! - `test`: build, then every test of the workspace (CI runs this through `.ci/run`), then
//!   the privileged kernel and capture tests again on a second kernel in a VM (`vm.rs`).
//! - `vm`: build, then only the second-kernel VM run.
//! - `bench`: build, then the benchmark harness in `bench/`.
//! - `certs`: example test certificates (CA, server, client) in `examples/certs/` (`certs.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod certs;
mod vm;

/// bpf-linker release known to build against LLVM 22 (the nightly toolchain's).
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the BPF toolchain pieces (idempotent).
    Setup,
    /// Build the kernel programs and the daemon (release).
    Build,
    /// Build, then run the daemon on a config (default: examples/tcpproxy.json).
    Run {
        #[arg(short = 'c', long, default_value = "examples/tcpproxy.json")]
        config: PathBuf,
        /// Extra arguments for `mosn start`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then run the whole test suite, then the privileged tests on Linux 6.1 in a VM.
    Test {
        /// Skip the second-kernel VM run.
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments for `cargo test` (after `--`: test filters, --nocapture ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then only the privileged kernel and capture tests on Linux 6.1 in a VM.
    Vm {
        /// Extra arguments for the test binaries (test filters, --nocapture ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then run the benchmark (`bench/run.py`); arguments are passed through.
    Bench {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Write example test certificates (CA, server for localhost/127.0.0.1, client with a
    /// SPIFFE ID); existing files are kept unless --force.
    Certs {
        /// Output directory (relative paths are under the workspace root).
        #[arg(long, default_value = certs::DEFAULT_OUT)]
        out: PathBuf,
        /// Replace existing files with a new set.
        #[arg(long)]
        force: bool,
    },
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("MOSN_TOOLCHAIN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into());
            home.join(".cache/mosn")
        })
}

fn bpf_linker_root() -> PathBuf {
    cache_dir().join("bpf-linker")
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Test counts, summed from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of `line` if it is a `test result:` line.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    fn plus(self, o: Totals) -> Totals {
        Totals {
            passed: self.passed + o.passed,
            failed: self.failed + o.failed,
            ignored: self.ignored + o.ignored,
        }
    }
}

/// One test run: its counts and whether it succeeded as a whole.
struct Outcome {
    totals: Totals,
    success: bool,
}

/// Runs `cargo test`, passing its output through and counting its `test result:` lines.
fn test(cmd: &mut Command) -> Result<Outcome> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut totals = Totals::default();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        writeln!(out, "{line}")?;
        totals.add(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!("xtask: {cmd:?} failed: {status}");
    }
    Ok(Outcome {
        totals,
        success: status.success(),
    })
}

/// Ends a test command: one line with the totals of every run, an error if any run failed
/// or no test ran at all.
fn report(runs: &[(&str, &Outcome)]) -> Result<()> {
    let total = runs
        .iter()
        .fold(Totals::default(), |t, (_, o)| t.plus(o.totals));
    let parts: Vec<String> = runs
        .iter()
        .map(|(what, o)| {
            format!(
                "{what}: {} passed, {} failed, {} skipped",
                o.totals.passed, o.totals.failed, o.totals.ignored
            )
        })
        .collect();
    println!(
        "tests: {} passed, {} failed, {} skipped ({})",
        total.passed,
        total.failed,
        total.ignored,
        parts.join("; ")
    );
    let failed: Vec<&str> = runs
        .iter()
        .filter(|(_, o)| !o.success)
        .map(|(what, _)| *what)
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    if total.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|u| u == "0")
        .unwrap_or(false)
}

/// rust-src for nightly (build-std needs it).
fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The nightly toolchain's own libLLVM shared object.
fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(&sysroot).join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!(
            "no libLLVM.so.* in {} (is the nightly toolchain installed?)",
            lib.display()
        )
    })
}

/// bpf-linker, linked against the nightly toolchain's libLLVM. Rebuilt when that library
/// changes (a nightly update), recorded in a stamp file.
fn ensure_bpf_linker() -> Result<()> {
    let llvm = nightly_libllvm()?;
    let stamp_path = bpf_linker_root().join("llvm.stamp");
    let bin = bpf_linker_root().join("bin/bpf-linker");
    let want = format!("{BPF_LINKER_VERSION} {}", llvm.display());
    if bin.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    // bpf-linker's build script only checks that `$LLVM_PREFIX/bin/llvm-config` exists and
    // links `$LLVM_PREFIX/lib/libLLVM.so`; the second symlink, under the library's own name, is
    // what the binary's RUNPATH finds at run time.
    let prefix = cache_dir().join("llvm-prefix");
    std::fs::create_dir_all(prefix.join("bin"))?;
    std::fs::create_dir_all(prefix.join("lib"))?;
    let llvm_config = prefix.join("bin/llvm-config");
    std::fs::write(&llvm_config, "#!/bin/sh\nexit 0\n")?;
    run(Command::new("chmod").arg("+x").arg(&llvm_config))?;
    for name in [
        std::ffi::OsStr::new("libLLVM.so"),
        llvm.file_name().expect("file"),
    ] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)?;
    }
    run(Command::new("cargo")
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            BPF_LINKER_LLVM_FEATURE,
        ])
        .arg("--root")
        .arg(bpf_linker_root())
        .env("LLVM_PREFIX", &prefix))?;
    std::fs::write(&stamp_path, want)?;
    Ok(())
}

/// bpffs at /sys/fs/bpf (for pinning); needs root, skipped with a note otherwise.
fn ensure_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "xtask: not root: skipping the bpffs mount at /sys/fs/bpf (the kernel path needs root anyway)"
        );
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// Tools the tests drive as real clients or read kernel state with: installed from apt when
/// missing (root only; without root the privileged tests skip anyway).
const TEST_TOOLS: [(&str, &str); 7] = [
    ("bpftool", "bpftool"),
    ("nft", "nftables"),
    ("iptables-save", "iptables"),
    ("curl", "curl"),
    ("nsenter", "util-linux"),
    ("python3", "python3"),
    // HTTP/2 load generator for the h2c tests (tests/h2.rs).
    ("h2load", "nghttp2-client"),
];

/// The interpreter the gRPC test peer (tests/support/grpc_peer.py) runs on: Debian's own, the
/// one apt's python3-* modules install into (a python3 earlier on PATH may be another one).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Python modules the test peers import, with the apt package that brings each for
/// [`SYSTEM_PYTHON`]: checked by importing them, since they put no binary on PATH.
const TEST_PYTHON_MODULES: [(&str, &str); 1] = [("grpc", "python3-grpcio")];

fn python_has(module: &str) -> bool {
    Command::new(SYSTEM_PYTHON)
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(bin).is_file())
}

fn ensure_test_tools() -> Result<()> {
    let mut missing: Vec<&str> = TEST_TOOLS
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.extend(
        TEST_PYTHON_MODULES
            .iter()
            .filter(|(module, _)| !python_has(module))
            .map(|(_, pkg)| *pkg),
    );
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !on_path("apt-get") {
        eprintln!(
            "xtask: missing test tools {missing:?} (not root or no apt-get): their tests will skip or fail"
        );
        return Ok(());
    }
    apt_install(&missing)
}

/// `apt-get install` of `packages`, with an `apt-get update` first if that fails.
fn apt_install(packages: &[&str]) -> Result<()> {
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .or_else(|_| {
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    })
}

fn setup() -> Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    ensure_bpffs()?;
    ensure_test_tools()?;
    Ok(())
}

fn path_with_linker() -> std::ffi::OsString {
    let mut paths = vec![bpf_linker_root().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).expect("valid PATH")
}

/// Builds the kernel object (nightly, build-std) where build.rs finds it.
fn build_ebpf() -> Result<()> {
    run(Command::new("cargo")
        .args(["+nightly", "build", "--release"])
        .current_dir(root().join("mosn-ebpf/programs"))
        .env("PATH", path_with_linker())
        // The outer cargo (stable) sets these for xtask; they must not leak into nightly's.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC"))
}

fn build() -> Result<()> {
    setup()?;
    build_ebpf()?;
    run(Command::new("cargo")
        .args(["build", "--release", "-p", "mosn-user"])
        .current_dir(root()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build => build(),
        Cmd::Run { config, args } => {
            build()?;
            let config = if config.is_absolute() {
                config
            } else {
                root().join(config)
            };
            run(Command::new(root().join("target/release/mosn"))
                .arg("start")
                .arg("-c")
                .arg(config)
                .args(args))
        }
        Cmd::Test { no_vm, args } => {
            build()?;
            // Release: the suite moves GiBs through the proxy. `--all-targets`: every unit and
            // integration test, without the empty doc-test runs.
            let host = test(
                Command::new("cargo")
                    .args([
                        "test",
                        "--workspace",
                        "--release",
                        "--all-targets",
                        "--no-fail-fast",
                        "--",
                    ])
                    .args(&args)
                    .current_dir(root()),
            )?;
            let vm = (!no_vm && vm::ensure_packages()?).then(|| vm::run_tests(&args));
            let vm = vm.map(|r| {
                r.unwrap_or_else(|e| {
                    eprintln!("xtask: the VM run could not start: {e:#}");
                    Outcome {
                        totals: Totals::default(),
                        success: false,
                    }
                })
            });
            let mut runs = vec![("host kernel", &host)];
            if let Some(vm) = &vm {
                runs.push(("Linux 6.1 VM", vm));
            }
            report(&runs)
        }
        Cmd::Vm { args } => {
            build()?;
            if !vm::ensure_packages()? {
                bail!("cannot run the VM without its packages");
            }
            report(&[("Linux 6.1 VM", &vm::run_tests(&args)?)])
        }
        Cmd::Certs { out, force } => {
            let out = if out.is_absolute() {
                out
            } else {
                root().join(out)
            };
            certs::certs(&out, force)
        }
        Cmd::Bench { args } => {
            build()?;
            run(Command::new("python3")
                .arg(root().join("bench/run.py"))
                .arg("--mosn")
                .arg(root().join("target/release/mosn"))
                .args(args)
                .current_dir(root()))
        }
    }
}
