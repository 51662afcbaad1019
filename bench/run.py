#!/usr/bin/env python3
"""L4 TCP proxy benchmark for mosn-rs: direct vs mosn (userspace/kernel/auto) vs HAProxy vs nginx.

One invocation measures every target in the same run, interleaved (A B C ... A B C ...), in a
private network namespace, pinned to a CPU layout, waiting for a quiet machine before every
measurement, and reports per-round ratios to the direct connection (see bench/README.md and
shared/design/MEASURING.md).

    python3 bench/run.py --mosn target/release/mosn [--rounds 5] [--duration 5] \
        [--out bench/results] [--quick] [--layout split|shared] [--targets direct,haproxy,nginx]

    python3 bench/run.py --suite capture [--quick] ...   # the transparent-capture benchmark
    python3 bench/run.py --suite http [--quick] ...      # HTTP/1.1 through mosn/HAProxy/nginx (bench/http_suite.py)
    python3 bench/run.py --suite bolt [--quick] ...      # SOFARPC Bolt through mosn L4/L7 (bench/bolt_suite.py)
    python3 bench/run.py --suite h2 [--quick] ...        # h2c and gRPC through mosn/HAProxy/nginx (bench/h2_suite.py)
    python3 bench/run.py --suite tls [--quick] ...       # TLS termination through mosn/HAProxy/nginx (bench/tls_suite.py)

The script re-executes itself inside the namespace (`ip netns exec NS python3 run.py --_inner`;
`nsenter --net=...` for --suite capture, which needs the host's cgroup v2 and bpffs mounts) for
the measurements; the outer process installs/builds, owns the namespace and analyses the
results (rows.csv -> summary.csv, summary.md, ratios.png).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent  # .../bench
# bench/http_suite.py does `import run`: make that this module even when it runs as __main__
sys.modules.setdefault("run", sys.modules[__name__])
ROOT = HERE.parent  # workspace root
HZ = os.sysconf("SC_CLK_TCK")

ALL_TARGETS = ["direct", "mosn-userspace", "mosn-kernel", "mosn-auto", "haproxy", "nginx"]
MOSN_MODES = {"mosn-userspace": "userspace", "mosn-kernel": "kernel", "mosn-auto": "auto"}
WORKLOADS = {
    "bulk1": {"kind": "iperf", "streams": 1, "unit": "Gbit/s", "label": "bulk, 1 stream"},
    "bulk8": {"kind": "iperf", "streams": 8, "unit": "Gbit/s", "label": "bulk, 8 streams"},
    "rr1": {"kind": "rr", "conns": 1, "unit": "req/s", "label": "1 B req/resp, 1 conn"},
    "rr64": {"kind": "rr", "conns": 64, "unit": "req/s", "label": "1 B req/resp, 64 conns"},
    "connrate": {"kind": "connrate", "unit": "conn/s", "label": "new conn per request"},
}
ALL_WORKLOADS = list(WORKLOADS)
# --suite http (bench/http_suite.py): wrk against an nginx origin, directly and through L7 proxies.
HTTP_TARGETS = ["direct", "mosn", "haproxy", "nginx"]
HTTP_WORKLOADS = ["keepalive", "close"]
WORKLOADS.update({
    "keepalive": {"kind": "wrk", "conns": 50, "close": False, "unit": "req/s", "label": "HTTP/1.1 keep-alive, 50 conns"},
    "close": {"kind": "wrk", "conns": 50, "close": True, "unit": "req/s", "label": "HTTP/1.1 conn per request, 50 conns"},
})

# --suite capture: the app -> proxy -> server hop on one host, reached transparently (the app
# connects to the server's address), vs the app connecting to the server directly.
CAPTURE_TARGETS = ["direct", "iptables+mosn", "ebpf+mosn", "ebpf+sk_msg+mosn", "ebpf+sk_msg-direct"]
CAPTURE_WORKLOADS = ["bulk1", "rr1", "rr64", "connrate"]
# --suite bolt (bench/bolt_suite.py): mosn-bench bolt-load against its Bolt echo origin, directly,
# through mosn's tcp_proxy (L4), through mosn's Bolt proxy (L7) and through HAProxy (TCP mode).
BOLT_TARGETS = ["direct", "mosn-l4", "mosn-l7", "haproxy", "mosn-l4-userspace"]
# not run unless named in --targets (a reference: mosn's tcp_proxy with the kernel splice off)
OPTIONAL_TARGETS = {"mosn-l4-userspace"}
BOLT_WORKLOADS = ["bolt1", "bolt64"]
WORKLOADS.update({
    "bolt1": {"kind": "bolt", "conns": 1, "unit": "req/s", "label": "Bolt 1 KiB, 1 conn"},
    "bolt64": {"kind": "bolt", "conns": 64, "unit": "req/s", "label": "Bolt 1 KiB, 64 conns"},
})
# --suite h2 (bench/h2_suite.py): h2load (h2c GET, gRPC unary) against an h2c origin, directly and
# through mosn (Http2 downstream; Http2 or, for mosn-h1up, Http1 upstream), HAProxy and nginx, plus
# the http suite's keep-alive measurement re-run in the same invocation.
H2_TARGETS = ["direct", "mosn", "mosn-h1up", "haproxy", "nginx"]
H2_WORKLOADS = ["h2c", "grpc-unary", "http1-keepalive"]
WORKLOADS.update({
    "h2c": {"kind": "h2load", "conns": 8, "unit": "req/s", "label": "h2c GET 100 B, 8 conns x 8 streams"},
    "grpc-unary": {"kind": "h2load", "conns": 8, "unit": "req/s", "label": "gRPC unary 1 KiB, 8 conns x 8 streams"},
    "http1-keepalive": dict(WORKLOADS["keepalive"], label="HTTP/1.1 keep-alive, 50 conns (wrk)"),
})
# --suite tls (bench/tls_suite.py): TLS 1.3 termination (full and resumed handshakes, HTTPS
# keep-alive with wrk, h2 over TLS with h2load, memory per idle TLS connection) through mosn,
# HAProxy and nginx vs the same clients straight to a TLS origin.
TLS_TARGETS = ["direct", "mosn", "haproxy", "nginx"]
TLS_WORKLOADS = ["handshakes-full", "handshakes-resumed", "https-keepalive", "h2-tls", "idle-memory"]
WORKLOADS.update({
    "handshakes-full": {"kind": "tls-hs", "conns": 32, "unit": "hs/s", "label": "TLS 1.3 full handshakes, 32 loops"},
    "handshakes-resumed": {"kind": "tls-hs", "conns": 32, "unit": "hs/s",
                           "label": "TLS 1.3 resumed handshakes, 32 loops"},
    "https-keepalive": dict(WORKLOADS["keepalive"], label="HTTPS keep-alive, 50 conns (wrk)"),
    "h2-tls": {"kind": "h2load", "conns": 8, "unit": "req/s", "label": "h2 over TLS GET 100 B, 8 conns x 8 streams"},
    "idle-memory": {"kind": "tls-idle", "conns": 2000, "unit": "KB/conn", "label": "memory per idle TLS conn"},
})
SUITES = {"l4": (ALL_TARGETS, ALL_WORKLOADS), "capture": (CAPTURE_TARGETS, CAPTURE_WORKLOADS),
          "http": (HTTP_TARGETS, HTTP_WORKLOADS), "bolt": (BOLT_TARGETS, BOLT_WORKLOADS),
          "h2": (H2_TARGETS, H2_WORKLOADS), "tls": (TLS_TARGETS, TLS_WORKLOADS)}
CAPTURE_HOST = "127.0.0.2"  # the servers' address; the app always connects here
CAPTURE_UID = 65534  # the load generator runs as this uid/gid (iptables matches it)
CAPTURE_CHAIN = "MOSN_BENCH"
# Kernel-side capture counters (mosn-ebpf/common Stat::name), summed over workloads.
CAPTURE_STATS = ["outbound_captured", "outbound_excluded", "fail_open_bypasses", "original_dst_getsockopt",
                 "sk_msg_redirects", "sk_msg_redirected_bytes", "sk_msg_backpressure_fallbacks",
                 "sk_msg_order_fallbacks"]

FIELDS = [
    "round", "workload", "target", "layout", "status", "attempts", "value", "unit",
    "rate", "requests", "errors", "p50_us", "p99_us", "p999_us", "mean_us", "retransmits",
    "duration_s", "wall_s", "proxy_cpu_pct", "proxy_user_pct", "proxy_sys_pct", "proxy_pids",
    "value_per_proxy_core", "value_per_cpu1", "client_cpu_pct", "cpu0_busy_pct", "cpu1_busy_pct",
    "cpu0_softirq_pct", "cpu1_softirq_pct", "steal_pct", "noise_before_pct", "quiet_wait_s",
    "quiet_reached", "outside_user_pct", "disturbed", "mosn_metrics_delta", "note", "started_at",
]
# --suite capture: FIELDS plus what shows the capture carried the traffic.
CAPTURE_FIELDS = FIELDS + [
    "mosn_connections", "mosn_bytes", "payload_bytes_est", "iptables_redirected", *CAPTURE_STATS,
    "sk_msg_share", "conntrack_before", "conntrack_after", "cgroup_bpf_progs", "capture_check",
]

# Names of mosn metrics whose deltas are copied into rows.csv (all deltas go to raw/).
MOSN_METRIC_RE = re.compile(r"splice|kernel|sockmap|sk_?skb|sk_?msg|bpf|fast_?path|redirect|offload", re.I)
CAPTURE_METRIC_RE = re.compile(r"captur|sk_?msg|original_dst|fail_open|excluded|listener_connections_total|"
                               r"listener_bytes|upstream_bytes|upstream_cx_total|errors", re.I)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def warn(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] WARNING: {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


_TERM_SIGNAL = [0]


def _on_term(signum, frame):  # SIGTERM/SIGHUP -> the same cleanup path as Ctrl-C
    _TERM_SIGNAL[0] = signum
    raise KeyboardInterrupt(f"signal {signum}")


def run_cmd(cmd, timeout, check=False, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with a mandatory timeout and captured text output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, timeout=timeout, check=check, **kw)


# =============================================================================================
# arguments


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mosn", default=str(ROOT / "target/release/mosn"), help="path to the mosn binary")
    p.add_argument("--suite", choices=list(SUITES), default="l4",
                   help="l4: direct vs mosn/HAProxy/nginx as plain forwarders (default); capture: the "
                        "transparently captured hop app -> mosn -> server (iptables REDIRECT vs eBPF capture "
                        "vs eBPF + sk_msg) vs the app connecting to the server directly; http: wrk keep-alive "
                        "and connection-per-request through mosn/HAProxy/nginx (L7) vs direct to an nginx origin; "
                        "bolt: SOFARPC Bolt request/response through mosn L4 (tcp_proxy), mosn L7 (Bolt proxy) "
                        "and HAProxy (TCP) vs direct to a Bolt echo origin (bench/bolt_suite.py); h2: h2load h2c "
                        "and gRPC unary through mosn/HAProxy/nginx vs direct to an h2c origin, plus the http "
                        "suite's keep-alive (bench/h2_suite.py); tls: TLS 1.3 termination (full and resumed "
                        "handshakes per proxy core, HTTPS keep-alive, h2 over TLS, memory per idle TLS connection) "
                        "through mosn/HAProxy/nginx vs direct to a TLS origin (bench/tls_suite.py)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per measurement (default 5; --suite capture: 4)")
    p.add_argument("--out", default=None, help="default bench/results (--suite capture: bench/results/capture)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, 2 s each")
    p.add_argument("--layout", choices=["split", "shared"], default="split",
                   help="split: client+origin on CPU0, proxy on CPU1; shared: everything on CPU0")
    p.add_argument("--targets", default=None,
                   help=f"comma list of {ALL_TARGETS} (--suite capture: of {CAPTURE_TARGETS}; --suite http: "
                        f"of {HTTP_TARGETS}; --suite bolt: of {BOLT_TARGETS}; --suite h2: of {H2_TARGETS}; --suite tls: of {TLS_TARGETS}); "
                        f"default all")
    p.add_argument("--workloads", default=None,
                   help=f"comma list of {ALL_WORKLOADS}; default all (--suite capture: {CAPTURE_WORKLOADS}; "
                        f"--suite http: {HTTP_WORKLOADS}; --suite bolt: {BOLT_WORKLOADS}; --suite h2: {H2_WORKLOADS}; "
                        f"--suite tls: {TLS_WORKLOADS})")
    p.add_argument("--connrate-concurrency", type=int, default=16)
    p.add_argument("--bolt-in-flight", type=int, default=1,
                   help="--suite bolt: requests in flight per connection (default 1)")
    p.add_argument("--rr-warmup", type=float, default=0.3,
                   help="unmeasured seconds before rr/connrate (--suite http: a 1 s wrk warm-up if > 0)")
    p.add_argument("--quiet-threshold", type=float, default=10.0,
                   help="max CPU%% (of one CPU) used outside the benchmark before/while measuring")
    p.add_argument("--quiet-max-wait", type=float, default=60.0, help="give up waiting for quiet after s")
    p.add_argument("--retries", type=int, default=None,
                   help="re-runs of a measurement that was disturbed (default 1, 0 with --quick)")
    p.add_argument("--time-limit", type=float, default=0, help="stop measuring after s (0 = automatic)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get/pip install anything")
    p.add_argument("--no-build", action="store_true", help="do not cargo build mosn-bench (needs --bench-bin)")
    p.add_argument("--bench-bin", default="", help="path of a built mosn-bench binary")
    p.add_argument("--analyze-only", action="store_true", help="only re-analyse OUT/rows.csv")
    p.add_argument("--capture-port", type=int, default=15001,
                   help="--suite capture: port of mosn's outbound (use_original_dst) listener on 127.0.0.1")
    p.add_argument("--_inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_tag", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    suite_targets, suite_workloads = SUITES[a.suite]
    if a.duration is None:
        a.duration = 4.0 if a.suite == "capture" else 5.0
    if a.targets is None:
        a.targets = ",".join(t for t in suite_targets if t not in OPTIONAL_TARGETS)
    if a.workloads is None:
        a.workloads = ",".join(suite_workloads)
    if a.quick:
        a.rounds, a.duration = 1, 2.0
        a.quiet_max_wait = min(a.quiet_max_wait, 10.0)
    if a.retries is None:
        a.retries = 0 if a.quick else 1
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for t in a.targets:
        if t not in suite_targets:
            p.error(f"unknown target {t!r} for --suite {a.suite}; known: {suite_targets}")
    for w in a.workloads:
        known = {"http": HTTP_WORKLOADS, "bolt": BOLT_WORKLOADS, "h2": H2_WORKLOADS,
                 "tls": TLS_WORKLOADS}.get(a.suite, ALL_WORKLOADS)
        if w not in known:
            p.error(f"unknown workload {w!r} for --suite {a.suite}; known: {known}")
    if "direct" not in a.targets:
        a.targets.insert(0, "direct")  # ratios need it
    else:  # direct first in every round
        a.targets.remove("direct")
        a.targets.insert(0, "direct")
    if not (1 <= a.rounds <= 100) or not (0.5 <= a.duration <= 600):
        p.error("--rounds must be 1..100 and --duration 0.5..600")
    if not (1 <= a.connrate_concurrency <= 1024):
        p.error("--connrate-concurrency must be 1..1024")
    if not (1 <= a.bolt_in_flight <= 4096):
        p.error("--bolt-in-flight must be 1..4096")
    if not (1 <= a.capture_port <= 65535):
        p.error("--capture-port must be 1..65535")
    if a.out is None:
        a.out = str(HERE / "results" / (a.suite if a.suite in ("capture", "http", "bolt", "h2", "tls") else ""))
    a.out = str(Path(a.out).resolve())
    a.mosn = str(Path(a.mosn).resolve()) if a.mosn else ""
    return a


# =============================================================================================
# outer: install, build, namespace, analysis


def nginx_stream_directive() -> str | None:
    """'' if stream is built in, 'load_module ...;' if it is a dynamic module present, else None."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None
    try:
        v = run_cmd([nginx, "-V"], timeout=10).stderr
    except Exception:
        return None
    if re.search(r"--with-stream(\s|$)", v):
        return ""
    if "--with-stream=dynamic" in v:
        m = re.search(r"--modules-path=(\S+)", v)
        dirs = [m.group(1)] if m else []
        dirs += ["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"]
        for d in dirs:
            f = Path(d) / "ngx_stream_module.so"
            if f.exists():
                return f"load_module {f};"
    return None


def have(binary: str) -> bool:
    return bool(shutil.which(binary)) or os.path.exists(f"/usr/sbin/{binary}")


def apt_install(pkgs: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    log(f"apt-get install {' '.join(pkgs)}")
    try:
        r = run_cmd(cmd, timeout=900, env=env)
        if r.returncode != 0:
            log("apt-get install failed; running apt-get update and retrying")
            run_cmd(["apt-get", "update"], timeout=600, env=env)
            r = run_cmd(cmd, timeout=900, env=env)
        if r.returncode != 0:
            warn(f"apt-get install {pkgs} failed:\n{r.stderr[-2000:]}")
            return False
        return True
    except subprocess.TimeoutExpired:
        warn(f"apt-get install {pkgs} timed out")
        return False


def ensure_packages(targets: list[str], suite: str = "l4") -> None:
    if suite == "http":
        import http_suite

        return http_suite.ensure_packages(targets)
    if suite == "bolt":
        import bolt_suite

        return bolt_suite.ensure_packages(targets)
    if suite == "h2":
        import h2_suite

        return h2_suite.ensure_packages(targets)
    if suite == "tls":
        import tls_suite

        return tls_suite.ensure_packages(targets)
    need = []
    for binary, pkg in [("iperf3", "iperf3"), ("taskset", "util-linux"), ("ip", "iproute2")]:
        if not have(binary):
            need.append(pkg)
    if "iptables+mosn" in targets and not have("iptables"):
        need.append("iptables")
    if any(t in CAPTURE_TARGETS for t in targets) and not have("setpriv") and "util-linux" not in need:
        need.append("util-linux")
    if "haproxy" in targets and not have("haproxy"):
        need.append("haproxy")
    if "nginx" in targets and not have("nginx"):
        need.append("nginx-light")
    if need:
        apt_install(need)
    if "nginx" in targets and have("nginx") and nginx_stream_directive() is None:
        # nginx-light builds stream as a dynamic module shipped separately.
        if not apt_install(["libnginx-mod-stream"]) or nginx_stream_directive() is None:
            for alt in ("nginx-core", "nginx-full"):
                if apt_install([alt]) and nginx_stream_directive() is not None:
                    break
        if nginx_stream_directive() is None:
            warn("nginx has no stream module; the nginx target will be skipped")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def build_bench() -> str:
    """cargo build --release -p mosn-bench; returns the executable path.

    If the workspace does not (yet) list `bench` as a member, build it through a throw-away
    workspace that symlinks bench/ and copies the root's [workspace.package]/[dependencies]."""
    env = dict(os.environ)
    meta = run_cmd(["cargo", "metadata", "--no-deps", "--format-version", "1"], timeout=300, cwd=ROOT)
    members = []
    if meta.returncode == 0:
        members = [p["name"] for p in json.loads(meta.stdout)["packages"]]
    else:
        warn(f"cargo metadata failed: {meta.stderr.strip()[-500:]}")
    cwd, shim = ROOT, None
    if "mosn-bench" not in members:
        import tomllib

        warn("mosn-bench is not a member of the workspace; building it in a temporary shim workspace")
        root = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
        shim = Path(tempfile.mkdtemp(prefix="mosn-bench-build-"))
        lines = ['[workspace]', 'resolver = "3"', 'members = ["bench"]', "", "[workspace.package]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in root.get("package", {}).items()]
        lines += ["", "[workspace.dependencies]"]
        for k, v in root.get("dependencies", {}).items():
            if isinstance(v, dict) and "path" in v:
                continue
            lines.append(f"{k} = {toml_value(v)}")
        prof = tomllib.loads((ROOT / "Cargo.toml").read_text()).get("profile", {}).get("release")
        if prof:
            lines += ["", "[profile.release]"] + [f"{k} = {toml_value(v)}" for k, v in prof.items()]
        (shim / "Cargo.toml").write_text("\n".join(lines) + "\n")
        (shim / "bench").symlink_to(HERE)
        if (ROOT / "Cargo.lock").exists():
            shutil.copy(ROOT / "Cargo.lock", shim / "Cargo.lock")
        env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
        cwd = shim
    log("cargo build --release -p mosn-bench")
    try:
        r = run_cmd(["cargo", "build", "--release", "-p", "mosn-bench", "--message-format=json-render-diagnostics"],
                    timeout=1800, cwd=cwd, env=env, capture_output=False, stdout=subprocess.PIPE)
    finally:
        if shim:
            shutil.rmtree(shim, ignore_errors=True)
    exe = None
    for line in r.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "mosn-bench" \
                and m.get("executable"):
            exe = m["executable"]
    if r.returncode != 0 or not exe:
        raise SystemExit("building mosn-bench failed")
    return exe


def ensure_matplotlib(install: bool) -> bool:
    pydeps = HERE / ".pydeps"
    if pydeps.is_dir() and str(pydeps) not in sys.path:
        sys.path.append(str(pydeps))
    try:
        import matplotlib  # noqa: F401

        return True
    except ImportError:
        pass
    if not install:
        return False
    log(f"pip install matplotlib (into {pydeps})")
    try:
        r = run_cmd([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                     "--target", str(pydeps), "matplotlib"], timeout=900)
        if r.returncode != 0:
            warn(f"pip install matplotlib failed: {r.stderr.strip()[-800:]}")
    except (subprocess.TimeoutExpired, FileNotFoundError) as e:
        warn(f"pip install matplotlib failed: {e}")
    if str(pydeps) not in sys.path:
        sys.path.append(str(pydeps))
    try:
        import importlib

        importlib.invalidate_caches()
        import matplotlib  # noqa: F401,F811

        return True
    except ImportError:
        warn("matplotlib unavailable: the PNG plot will be skipped")
        return False


def netns_pids(ns: str) -> list[int]:
    try:
        r = run_cmd(["ip", "netns", "pids", ns], timeout=10)
        return [int(x) for x in r.stdout.split()]
    except Exception:
        return []


def outer_main(args) -> int:
    if os.geteuid() != 0:
        raise SystemExit("run.py must run as root (network namespaces, taskset of proxies)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rc = 0
    if not args.analyze_only:
        if not args.no_install:
            ensure_packages(args.targets, args.suite)
        if args.suite == "http":  # wrk is the load generator: mosn-bench is not needed
            bench_bin = args.bench_bin or "-"
        else:
            bench_bin = args.bench_bin or (None if args.no_build else build_bench())
        if args.suite != "http" and (not bench_bin or not os.access(bench_bin, os.X_OK)):
            raise SystemExit(f"no mosn-bench binary ({bench_bin!r})")
        ensure_matplotlib(install=not args.no_install)
        ns = f"mosnbench-{os.getpid()}"
        tag = str(os.getpid())
        inner = None
        try:
            log(f"creating network namespace {ns}")
            run_cmd(["ip", "netns", "add", ns], timeout=30, check=True)
            nsx = ["ip", "netns", "exec", ns]
            run_cmd(nsx + ["ip", "link", "set", "lo", "up"], timeout=30, check=True)
            for kv in ("net.ipv4.ip_local_port_range=10000 65535", "net.core.somaxconn=8192",
                       "net.ipv4.tcp_max_syn_backlog=8192", "net.ipv4.tcp_tw_reuse=1"):
                r = run_cmd(nsx + ["sysctl", "-q", "-w", kv], timeout=30)
                if r.returncode != 0:
                    warn(f"sysctl {kv}: {r.stderr.strip()}")
            # `ip netns exec` also gives the process a fresh /sys, without the cgroup v2 and bpffs
            # mounts the capture suite needs; nsenter enters only the network namespace.
            enter = ["nsenter", f"--net=/run/netns/{ns}"] if args.suite == "capture" else nsx
            cmd = enter + [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:],
                           "--_inner", "--_tag", tag, "--bench-bin", bench_bin, "--out", str(out)]
            inner = subprocess.Popen(cmd)
            rc = inner.wait()
            if rc != 0:
                warn(f"measurement process exited with {rc}")
        except KeyboardInterrupt:
            warn("interrupted; cleaning up")
            rc = 130
            if inner and inner.poll() is None:
                try:
                    if _TERM_SIGNAL[0]:  # Ctrl-C reached it already (same process group); TERM did not
                        inner.send_signal(signal.SIGTERM)
                    inner.wait(timeout=60)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    inner.kill()
                    inner.wait(timeout=10)
        finally:
            for pid in netns_pids(ns):  # anything we started that is still in the namespace
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if args.suite == "capture":  # the inner process cleans up; this catches what a kill left
                CaptureEnv(tag, args).cleanup(quiet=True)
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                warn(f"ip netns del {ns}: {r.stderr.strip()}")
            else:
                log(f"removed network namespace {ns}")
    analyze(out, plot=ensure_matplotlib(install=False))
    return rc


# =============================================================================================
# inner: measurements inside the namespace


def read_stat() -> dict[str, list[int]]:
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                cpus[parts[0]] = [int(x) for x in parts[1:9]]
            else:
                break
    return cpus


def stat_busy(v: list[int]) -> int:
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal


def proc_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process (all its threads), 0,0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]), int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


def proc_tree(pid: int) -> list[int]:
    """pid and all of its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def ticks_sum(pids: list[int]) -> tuple[int, int]:
    u = s = 0
    for p in pids:
        a, b = proc_ticks(p)
        u, s = u + a, s + b
    return u, s


def listening(port: int) -> bool:
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


_NOPROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, path: str, timeout=2.0) -> tuple[int, str]:
    try:
        with _NOPROXY.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read(4 << 20).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception as e:  # connection refused, timeout, ...
        return 0, str(e)


def parse_prom(text: str) -> dict[str, float]:
    vals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            k, v = line.rsplit(None, 1)
            vals[k] = float(v)
        except ValueError:
            continue
    return vals


def tail(path: Path, n=1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_bounded(argv: list[str], limit: float) -> tuple[int, str, str]:
    """Runs a load generator to its end, killed after `limit` s: (exit code, stdout, stderr)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        so, se = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate(timeout=10)
        se += f"\n[client killed after {limit:.0f}s]"
    return p.returncode, so, se


class StartFailed(Exception):
    pass


class Proxy:
    def __init__(self, popen, port, admin, log_path):
        self.popen, self.port, self.admin, self.log_path = popen, port, admin, log_path


def cgroup2_mount() -> Path | None:
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


def conntrack_count() -> int | None:
    """Entries in this network namespace's conntrack table (None without conntrack)."""
    try:
        return int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())
    except (OSError, ValueError):
        return None


class CaptureEnv:
    """What --suite capture sets up besides processes: cgroups for the app (load generator), the
    server and mosn; the iptables REDIRECT rule of the status-quo variant (a dedicated chain in the
    benchmark's own network namespace); the bpffs pin directory of the capture programs. Every
    part is removed again, also after failures (cleanup() is idempotent)."""

    def __init__(self, tag: str, args):
        self.args = args
        self.mount = cgroup2_mount()
        self.base = self.mount / f"mosn-bench-{tag}" if self.mount else None
        self.cg = {k: self.base / k for k in ("app", "server", "proxy")} if self.base else {}
        self.pin = Path(f"/sys/fs/bpf/mosn-bench-{tag}")
        self.iptables_on_port = 0
        self.stop_cmd = None  # ["mosn", "stop", "-c"] once we know the subcommand exists

    # ------------------------------------------------------------------ cgroups
    def setup_cgroups(self) -> None:
        if not self.base:
            raise RuntimeError("no cgroup v2 mount in /proc/self/mounts")
        for d in self.cg.values():
            d.mkdir(parents=True, exist_ok=True)
        log(f"cgroups under {self.base}: {', '.join(self.cg)}")

    def wrap(self, group: str, cpu: str, cmd: list[str], unprivileged=False) -> list[str]:
        """argv that enters cgroup `group`, pins to `cpu`, optionally drops to CAPTURE_UID, and
        execs cmd (the pid stays the same all the way: rusage and kill work as without it)."""
        pre = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cg[group]), "taskset", "-c", cpu]
        if unprivileged:
            pre += ["setpriv", f"--reuid={CAPTURE_UID}", f"--regid={CAPTURE_UID}", "--clear-groups"]
        return pre + cmd

    def _remove_cgroups(self, quiet: bool) -> None:
        if not self.base or not self.base.exists():
            return
        for attempt in range(20):
            left = False
            for d in list(self.cg.values()) + [self.base]:
                if not d.exists():
                    continue
                try:
                    d.rmdir()
                except OSError:
                    left = True
                    try:  # something of ours still inside (exiting): move it out, then retry
                        pids = (d / "cgroup.procs").read_text().split()
                        for pid in pids:
                            try:
                                (self.mount / "cgroup.procs").write_text(pid)
                            except OSError:
                                pass
                    except OSError:
                        pass
            if not left:
                if not quiet:
                    log(f"removed cgroups {self.base}")
                return
            time.sleep(0.25)
        warn(f"could not remove cgroup {self.base}")

    # ------------------------------------------------------------------ iptables (status quo)
    def _ipt(self, *rule, check=False) -> subprocess.CompletedProcess:
        r = run_cmd(["iptables", "-w", "10", "-t", "nat", *rule], timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"iptables -t nat {' '.join(rule)}: {r.stderr.strip()}")
        return r

    def iptables_on(self, port: int) -> None:
        """The status quo: the app's (uid CAPTURE_UID) connections to the server are REDIRECTed to
        mosn's outbound listener; mosn's own upstream connection (root) is not."""
        self.iptables_off()
        self.iptables_on_port = port  # from here on cleanup() removes whatever got added
        self._ipt("-N", CAPTURE_CHAIN, check=True)
        self._ipt("-A", CAPTURE_CHAIN, "-p", "tcp", "-d", CAPTURE_HOST, "--dport", str(port), "-m", "owner",
                  "--uid-owner", str(CAPTURE_UID), "-j", "REDIRECT", "--to-ports", str(self.args.capture_port),
                  check=True)
        self._ipt("-A", "OUTPUT", "-j", CAPTURE_CHAIN, check=True)

    def iptables_rules(self) -> str:
        return self._ipt("-S").stdout

    def iptables_hits(self) -> int | None:
        """Packets that hit the REDIRECT rule: in the nat table only a connection's first packet
        traverses the rules, so this is the number of connections redirected to mosn."""
        r = self._ipt("-L", CAPTURE_CHAIN, "-v", "-x", "-n")
        for line in r.stdout.splitlines():
            parts = line.split()
            if "REDIRECT" in parts and parts[0].isdigit():
                return int(parts[0])
        return None

    def iptables_off(self) -> None:
        """Deletes exactly what iptables_on added (the jump, the chain and its rule). Afterwards no
        REDIRECT rule is left, so the other variants run without conntrack (checked per run)."""
        if not have("iptables"):
            return
        for _ in range(10):
            if self._ipt("-C", "OUTPUT", "-j", CAPTURE_CHAIN).returncode != 0:
                break
            self._ipt("-D", "OUTPUT", "-j", CAPTURE_CHAIN)
        if self._ipt("-F", CAPTURE_CHAIN).returncode == 0:
            self._ipt("-X", CAPTURE_CHAIN)
        self.iptables_on_port = 0

    def effective_progs(self) -> int | None:
        """BPF programs in effect for the app's and the server's cgroups (attached there or on an
        ancestor, e.g. the root), by `bpftool cgroup show CG effective`; None without bpftool."""
        if not have("bpftool"):
            return None
        n = 0
        for g in ("app", "server"):
            try:
                r = run_cmd(["bpftool", "-j", "cgroup", "show", str(self.cg[g]), "effective"], timeout=10)
                n += len(json.loads(r.stdout)) if r.stdout.strip() else 0
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return None
        return n

    # ------------------------------------------------------------------ bpffs pins
    def detect_stop(self, mosn: str) -> None:
        try:
            r = run_cmd([mosn, "stop", "--help"], timeout=10)
            self.stop_cmd = [mosn, "stop", "-c"] if r.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            self.stop_cmd = None

    def uninstall(self, cfg: Path | None, log_path: Path | None = None) -> str:
        """Removes the capture programs (after the daemon stopped): `mosn stop -c CFG` if this mosn
        has it, else (or if anything is left) rm -rf of the pin path. Returns how."""
        how = ""
        if self.stop_cmd and cfg is not None and self.pin.exists():
            try:
                r = run_cmd([*self.stop_cmd, str(cfg)], timeout=30)
                how = f"mosn stop (exit {r.returncode})"
                if log_path:
                    with open(log_path, "a") as f:
                        f.write(f"$ {' '.join(self.stop_cmd)} {cfg}\n{r.stdout}{r.stderr}")
            except (OSError, subprocess.TimeoutExpired) as e:
                how = f"mosn stop failed: {e}"
        if self.pin.exists():
            shutil.rmtree(self.pin, ignore_errors=True)
            how = (how + "; " if how else "") + "rm -rf pin path"
        if self.pin.exists():
            warn(f"could not remove {self.pin}")
        return how

    def cleanup(self, quiet=False) -> None:
        try:
            if self.iptables_on_port:
                self.iptables_off()
        except Exception as e:
            warn(f"iptables cleanup: {e}")
        if self.pin.exists():
            shutil.rmtree(self.pin, ignore_errors=True)
            if not quiet:
                log(f"removed {self.pin}")
        self._remove_cgroups(quiet)


class Runner:
    def __init__(self, args):
        self.a = args
        self.out = Path(args.out)
        self.raw = self.out / "raw"
        for d in ("logs", "clients", "mosn-metrics", "configs"):
            (self.raw / d).mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="mosnbench-"))
        self.procs: list[subprocess.Popen] = []
        self.client_cpu = "0"
        self.proxy_cpu = "1" if args.layout == "split" else "0"
        self.next_port = 2000 + (os.getpid() % 1000) * 5
        self.skipped: dict[str, str] = {}
        self.echo = None
        self.echo_port = 0
        self.rows_path = self.out / "rows.csv"
        self.nginx_directive = nginx_stream_directive()
        # Each proxied connection needs two descriptors; size the peers' limits to what we have.
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.maxconn = max(1000, min(100000, (self.fd_limit - 1000) // 2))
        # --suite capture: servers on CAPTURE_HOST, processes in cgroups, the load generator as
        # CAPTURE_UID; `self.cap` owns cgroups, iptables rule and pins.
        self.capture = args.suite == "capture"
        self.origin_host = CAPTURE_HOST if self.capture else "127.0.0.1"
        self.cap = CaptureEnv(args._tag or str(os.getpid()), args) if self.capture else None
        self.rows_fields = CAPTURE_FIELDS if self.capture else FIELDS

    # ---------------------------------------------------------------- processes
    def port(self) -> int:
        """A port outside the ephemeral range (10000-65535 in the namespace), bindable right now."""
        for _ in range(8000):
            p = self.next_port
            self.next_port = 2000 if self.next_port >= 9999 else self.next_port + 1
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
            finally:
                s.close()
        raise RuntimeError("no free port")

    def spawn(self, cmd: list[str], cpu: str, log_path: Path, cgroup: str | None = None) -> subprocess.Popen:
        argv = self.cap.wrap(cgroup, cpu, cmd) if cgroup else ["taskset", "-c", cpu, *cmd]
        f = open(log_path, "ab")
        f.write(f"$ {' '.join(argv)}\n".encode())
        f.flush()
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen | None, timeout=5.0) -> None:
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        else:  # leader gone: make sure nothing of its group survives (nginx workers)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self) -> None:
        for p in list(self.procs):
            try:
                self.stop(p, timeout=3)
            except Exception as e:
                warn(f"stopping pid {p.pid}: {e}")
        if self.cap:
            self.cap.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_listen(self, port: int, p: subprocess.Popen, log_path: Path, what: str, admin=0, limit=15.0):
        t0 = time.monotonic()
        listen_since = None
        while time.monotonic() - t0 < limit:
            if p.poll() is not None:
                raise StartFailed(f"{what} exited with {p.returncode}: {tail(log_path)}")
            if listening(port):
                listen_since = listen_since or time.monotonic()
                if not admin:
                    time.sleep(0.1)
                    return
                code, _ = http_get(admin, "/ready", timeout=1.0)
                if code == 200:
                    return
                if time.monotonic() - listen_since > 3.0:
                    warn(f"{what}: listening but /ready answers {code}; proceeding")
                    return
            time.sleep(0.05)
        raise StartFailed(f"{what} not listening on {port} after {limit:.0f}s: {tail(log_path)}")

    def ensure_echo(self) -> None:
        if self.echo is not None and self.echo.poll() is None:
            return
        if self.echo is not None:
            warn(f"echo server died ({self.echo.returncode}); restarting")
        self.echo_port = self.port()
        lp = self.raw / "logs" / "echo-server.log"
        bound = int(self.time_budget * 3 + 600)
        self.echo = self.spawn([self.a.bench_bin, "echo-server", "--listen", f"{self.origin_host}:{self.echo_port}",
                                "--max-seconds", str(bound)], self.client_cpu, lp,
                               cgroup="server" if self.capture else None)
        self.wait_listen(self.echo_port, self.echo, lp, "echo-server")

    def start_proxy(self, target: str, origin: int, tag: str) -> Proxy:
        port = self.port()
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        admin = 0
        if target in MOSN_MODES:
            admin = self.port()
            cfg = {
                "servers": [{"listeners": [{
                    "name": "bench", "address": f"127.0.0.1:{port}", "bind_port": True,
                    "fast_path": MOSN_MODES[target],
                    "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "origin"}}]}],
                }]}],
                "cluster_manager": {"clusters": [{
                    "name": "origin", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
                    "hosts": [{"address": f"127.0.0.1:{origin}"}]}]},
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            }
            cf = d / "mosn.json"
            cf.write_text(json.dumps(cfg, indent=2))
            cmd = [self.a.mosn, "start", "-c", str(cf), "--workers", "1"]
        elif target == "haproxy":
            cf = d / "haproxy.cfg"
            cf.write_text(f"""global
    nbthread 1
    maxconn {self.maxconn}
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen bench
    bind 127.0.0.1:{port}
    server origin 127.0.0.1:{origin}
""")
            cmd = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(cf)]
        elif target == "nginx":
            cf = d / "nginx.conf"
            cf.write_text(f"""{self.nginx_directive}
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {self.fd_limit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {self.maxconn * 2};
}}
stream {{
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        proxy_pass 127.0.0.1:{origin};
        proxy_connect_timeout 5s;
    }}
}}
""")
            cmd = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(d), "-c", str(cf),
                   "-e", str(d / "error.log")]
        else:
            raise ValueError(target)
        cfg_copy = self.raw / "configs" / f"{target}{cf.suffix or '.conf'}"
        if not cfg_copy.exists():
            shutil.copy(cf, cfg_copy)
        p = self.spawn(cmd, self.proxy_cpu, lp)
        try:
            self.wait_listen(port, p, lp, target, admin=admin)
        except StartFailed:
            if target == "nginx":  # its error log is a separate file
                with open(lp, "a") as f:
                    f.write(tail(d / "error.log", 3000))
            self.stop(p)
            raise
        return Proxy(p, port, admin, lp)

    # ---------------------------------------------------------------- --suite capture
    def capture_config(self, target: str, origin: int, admin: int) -> dict:
        """mosn as a transparent outbound proxy: a use_original_dst listener on capture_port and an
        ORIGINAL_DST cluster; for the ebpf variants also the `capture` block (node mode, workloads
        `app` and `server`)."""
        cfg = {
            "servers": [{"listeners": [{
                "name": "outbound", "address": f"127.0.0.1:{self.a.capture_port}", "bind_port": True,
                "use_original_dst": "redirect", "fast_path": "userspace",
                "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "PassthroughCluster"}}]}],
            }]}],
            "cluster_manager": {"clusters": [{
                "name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
                "connect_timeout": "3s"}]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        }
        if target.startswith("ebpf"):
            sk = "sk_msg" in target
            app = {"name": "app", "cgroup": str(self.cap.cg["app"]), "sk_msg": sk}
            if target == "ebpf+sk_msg-direct":  # not through the proxy: only sk_msg between app and server
                app["exclude_outbound_ports"] = [origin]
            cfg["capture"] = {
                "mode": "node", "outbound_listener": "outbound", "pin_path": str(self.cap.pin),
                "sk_msg": {"enabled": sk},
                "workloads": [app, {"name": "server", "cgroup": str(self.cap.cg["server"]), "sk_msg": sk}],
            }
        return cfg

    def start_capture_proxy(self, target: str, origin: int, tag: str) -> tuple[Proxy, Path]:
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        admin = self.port()
        cf = d / "mosn.json"
        cf.write_text(json.dumps(self.capture_config(target, origin, admin), indent=2))
        cfg_copy = self.raw / "configs" / f"{target}.json"
        if not cfg_copy.exists():
            shutil.copy(cf, cfg_copy)
        # mosn in a cgroup of its own: sk_msg attaches the proxy's sock_ops there (never the root)
        p = self.spawn([self.a.mosn, "start", "-c", str(cf), "--workers", "1"], self.proxy_cpu, lp, cgroup="proxy")
        try:
            self.wait_listen(self.a.capture_port, p, lp, target, admin=admin)
        except StartFailed:
            self.stop(p)
            raise
        return Proxy(p, self.a.capture_port, admin, lp), cf

    @staticmethod
    def metric_sum(vals: dict[str, float], name: str) -> float | None:
        """Sum of every series whose metric name ends in `name` (or `name`_total), any labels;
        None if there is none."""
        rx = re.compile(rf"(^|_){re.escape(name)}(_total)?$")
        hits = [v for k, v in vals.items() if rx.search(k.split("{", 1)[0])]
        return sum(hits) if hits else None

    def capture_figures(self, before: dict, after: dict) -> dict:
        def delta(name):
            a = self.metric_sum(after, name)
            return None if a is None else a - (self.metric_sum(before, name) or 0.0)

        r = {}
        for st in CAPTURE_STATS:
            v = delta(st)
            r[st] = "" if v is None else int(v)
        conns = delta("listener_connections")
        r["mosn_connections"] = "" if conns is None else int(conns)
        parts = [delta(n) for n in ("listener_bytes_received", "listener_bytes_sent",
                                    "upstream_bytes_sent", "upstream_bytes_received")]
        if any(x is not None for x in parts):
            r["mosn_bytes"] = int(sum(x or 0 for x in parts))
        return r

    def check_capture(self, target: str, wl: str, row: dict, metrics_ok: bool) -> list[str]:
        """What is wrong with this measurement as a measurement of `target` (empty: nothing)."""
        w = WORKLOADS[wl]
        bad = []
        # One-sided: the count can also stay flat while conntrack is active (a table full of
        # TIME_WAIT entries for the same tuples is recycled), but it never grows while inactive.
        ct0, ct1 = row.get("conntrack_before"), row.get("conntrack_after")
        ct_grew = isinstance(ct0, int) and isinstance(ct1, int) and ct1 > ct0
        if target != "iptables+mosn" and ct_grew:
            bad.append(f"conntrack entries appeared ({ct0} -> {ct1}): netfilter NAT was active")
        progs = row.get("cgroup_bpf_progs")
        if not target.startswith("ebpf") and isinstance(progs, int) and progs > 0:
            bad.append(f"{progs} BPF program(s) in effect on the app/server cgroups (left from an earlier run?)")
        if target == "direct":
            return bad
        if not metrics_ok:
            return bad + ["no /metrics from mosn after the run"]

        def num(k):
            v = row.get(k)
            return v if isinstance(v, (int, float)) else None

        conns, cap, skr = num("mosn_connections"), num("outbound_captured"), num("sk_msg_redirects")
        need = w["conns"] if w["kind"] == "rr" else (w["streams"] + 1 if w["kind"] == "iperf" else 1)
        proxied = target != "ebpf+sk_msg-direct"
        if proxied:
            if conns is None:
                bad.append("no mosn_listener_connections in /metrics")
            elif conns < need:
                bad.append(f"only {conns} connection(s) reached mosn (>= {need} expected)")
        elif conns:
            bad.append(f"{conns} connection(s) went through mosn; this variant must bypass it")
        if target == "iptables+mosn":
            hits = row.get("iptables_redirected")
            if not isinstance(hits, int) or hits < need:
                bad.append(f"the REDIRECT rule matched {hits} connection(s) (>= {need} expected)")
            return bad
        if cap is None:
            bad.append("no outbound_captured counter in /metrics (capture not wired into this mosn?)")
        elif proxied and cap < 1:
            bad.append("outbound_captured did not move: the eBPF capture did not carry the traffic")
        elif not proxied and cap:
            bad.append(f"outbound_captured = {cap}: the app's connections were captured")
        if "sk_msg" in target:
            if skr is None:
                bad.append("no sk_msg_redirects counter in /metrics")
            elif skr < 1:
                bad.append("sk_msg_redirects did not move: sk_msg did not carry the traffic")
        elif skr:
            bad.append(f"sk_msg_redirects = {skr} without sk_msg configured")
        return bad

    def measure_capture(self, rnd: int, wl: str, target: str) -> dict:
        """One measurement of --suite capture: the app (load generator, cgroup `app`, uid 65534)
        always connects to the server's own address CAPTURE_HOST:port; what differs is what lies in
        between (nothing, iptables REDIRECT + mosn, eBPF capture + mosn, with/without sk_msg)."""
        w = WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "duration_s": self.a.duration, "started_at": dt.datetime.now().isoformat(timespec="seconds")}
        iperf = proxy = cfg = None
        ebpf = target.startswith("ebpf")
        notes = []
        try:
            if w["kind"] == "iperf":
                origin = self.port()
                lp = self.raw / "logs" / f"{tag}-iperf3-server.log"
                iperf = self.spawn(["iperf3", "-s", "-B", self.origin_host, "-p", str(origin)], self.client_cpu, lp,
                                   cgroup="server")
                self.wait_listen(origin, iperf, lp, "iperf3 server")
            else:
                self.ensure_echo()
                origin = self.echo_port
            if target != "direct":
                if ebpf and self.cap.pin.exists():
                    notes.append("left-over pins removed: " + self.cap.uninstall(None))
                try:
                    proxy, cfg = self.start_capture_proxy(target, origin, tag)
                    if target == "iptables+mosn":
                        self.cap.iptables_on(origin)
                        rules = self.raw / "configs" / "iptables-nat.rules"
                        if not rules.exists():
                            rules.write_text(self.cap.iptables_rules())
                except (StartFailed, RuntimeError) as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
            m_before = ""
            if proxy:
                _, m_before = http_get(proxy.admin, "/metrics")
            proxy_pids = proc_tree(proxy.popen.pid) if proxy else []
            other = [os.getpid()] + ([self.echo.pid] if self.echo else []) + ([iperf.pid] if iperf else [])
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            row["conntrack_before"] = conntrack_count()
            row["cgroup_bpf_progs"] = self.cap.effective_progs()
            s0 = self.snapshot(proxy_pids, other)
            res, note = self.run_client(wl, origin, tag, host=self.origin_host)
            s1 = self.snapshot(proxy_pids, other)
            row["conntrack_after"] = conntrack_count()
            if self.cap.iptables_on_port:
                row["iptables_redirected"] = self.cap.iptables_hits()
            if note:
                notes.append(note)
            row.update(self.cpu_figures(s0, s1))
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            metrics_ok = False
            if proxy:
                time.sleep(0.3)  # let mosn finish the connections' bookkeeping
                _, m_after = http_get(proxy.admin, "/metrics")
                mdir = self.raw / "mosn-metrics"
                (mdir / f"{tag}-before.prom").write_text(m_before)
                (mdir / f"{tag}-after.prom").write_text(m_after)
                b, a = parse_prom(m_before), parse_prom(m_after)
                metrics_ok = bool(a)
                delta = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0}
                (mdir / f"{tag}-delta.json").write_text(json.dumps(delta, indent=1, sort_keys=True))
                row["mosn_metrics_delta"] = json.dumps(
                    {k: delta[k] for k in sorted(delta) if CAPTURE_METRIC_RE.search(k)}, separators=(",", ":"))
                row.update(self.capture_figures(b, a))
                if proxy.popen.poll() is not None:
                    notes.append(f"proxy exited ({proxy.popen.returncode}) during run")
            rc = res.pop("_rc")
            row.update(res)
            sk_bytes = row.get("sk_msg_redirected_bytes")
            base = row.get("mosn_bytes") if target.endswith("+mosn") else row.get("payload_bytes_est")
            if isinstance(sk_bytes, int) and base:
                row["sk_msg_share"] = round(sk_bytes / base, 3)
            row["value"] = round(row.get("value") or 0.0, 4 if w["unit"] == "Gbit/s" else 1)
            errs = int(row.get("errors") or 0)
            row["status"] = "ok" if (rc == 0 and row["value"] > 0 and errs == 0) else (
                "errors" if row["value"] > 0 else "failed")
            bad = self.check_capture(target, wl, row, metrics_ok)
            row["capture_check"] = "ok" if not bad else "FAILED: " + "; ".join(bad)
            if bad and row["status"] != "failed":
                row["status"] = "not_captured"  # not a measurement of this variant: no ratio
            return self.finish_row(row, proxy, "; ".join(notes), 3 if w["unit"] == "Gbit/s" else 0)
        finally:
            try:
                if self.cap.iptables_on_port:
                    self.cap.iptables_off()
            finally:
                self.stop(proxy.popen if proxy else None)
                if ebpf:
                    self.cap.uninstall(cfg, self.raw / "logs" / f"{tag}.log")
                self.stop(iperf)

    # ---------------------------------------------------------------- quiet / cpu accounting
    def wait_quiet(self, our_pids: list[int]) -> tuple[float, float, bool]:
        """Samples /proc/stat for 1 s until CPU use outside our processes is below the threshold."""
        t_start = time.monotonic()
        noise = 0.0
        while True:
            s0, o0, t0 = read_stat(), sum(ticks_sum(our_pids)), time.monotonic()
            time.sleep(1.0)
            s1, o1, t1 = read_stat(), sum(ticks_sum(our_pids)), time.monotonic()
            busy = stat_busy(s1["cpu"]) - stat_busy(s0["cpu"]) - (o1 - o0)
            noise = max(0.0, busy / HZ / (t1 - t0) * 100)
            waited = time.monotonic() - t_start
            if noise <= self.a.quiet_threshold:
                return noise, waited, True
            if waited >= self.a.quiet_max_wait:
                warn(f"machine not quiet after {waited:.0f}s ({noise:.0f}% of a CPU busy); measuring anyway")
                return noise, waited, False

    def snapshot(self, proxy_pids, other_pids):
        return {
            "t": time.monotonic(),
            "stat": read_stat(),
            "proxy": ticks_sum(proxy_pids),
            "other_u": ticks_sum(other_pids)[0],
            "children": resource.getrusage(resource.RUSAGE_CHILDREN),
        }

    def cpu_figures(self, a, b) -> dict:
        wall = b["t"] - a["t"]
        r = {"wall_s": round(wall, 3)}
        if a["proxy"] != (0, 0) or b["proxy"] != (0, 0):
            du = (b["proxy"][0] - a["proxy"][0]) / HZ
            ds = (b["proxy"][1] - a["proxy"][1]) / HZ
            r["proxy_user_pct"] = round(du / wall * 100, 1)
            r["proxy_sys_pct"] = round(ds / wall * 100, 1)
            r["proxy_cpu_pct"] = round((du + ds) / wall * 100, 1)
        for cpu in ("cpu0", "cpu1"):
            if cpu in a["stat"] and cpu in b["stat"]:
                d = [y - x for x, y in zip(a["stat"][cpu], b["stat"][cpu])]
                tot = sum(d) or 1
                r[f"{cpu}_busy_pct"] = round(stat_busy(d) / tot * 100, 1)
                r[f"{cpu}_softirq_pct"] = round(d[6] / tot * 100, 1)
        dall = [y - x for x, y in zip(a["stat"]["cpu"], b["stat"]["cpu"])]
        r["steal_pct"] = round(dall[7] / HZ / wall * 100, 1)
        ca, cb = a["children"], b["children"]
        client_s = (cb.ru_utime - ca.ru_utime) + (cb.ru_stime - ca.ru_stime)
        client_u = cb.ru_utime - ca.ru_utime
        r["client_cpu_pct"] = round(client_s / wall * 100, 1)
        ours_u = client_u * HZ + (b["proxy"][0] - a["proxy"][0]) + (b["other_u"] - a["other_u"])
        outside = (dall[0] + dall[1] - ours_u) / HZ / wall * 100
        r["outside_user_pct"] = round(max(0.0, outside), 1)
        return r

    # ---------------------------------------------------------------- one measurement
    def launch_proxy(self, target: str, cf: Path, cmd: list[str], port: int, admin: int,
                     ready_admin: int, lp: Path, error_log: Path | None = None) -> Proxy:
        """Starts a proxy on the proxy CPU with its config `cf` (copied under raw/configs once)
        and waits for its port and its admin or stats port (`ready_admin`: a mosn admin to ask
        /ready; 0: just listening). On failure, `error_log`'s tail goes into the log."""
        cfg_copy = self.raw / "configs" / f"{target}{cf.suffix or '.conf'}"
        if not cfg_copy.exists():
            shutil.copy(cf, cfg_copy)
        p = self.spawn(cmd, self.proxy_cpu, lp)
        try:
            self.wait_listen(port, p, lp, target, admin=ready_admin)
            if not ready_admin:
                deadline = time.monotonic() + 10
                while not listening(admin) and time.monotonic() < deadline:
                    time.sleep(0.05)
        except StartFailed:
            if error_log is not None:
                with open(lp, "a") as f:
                    f.write(tail(error_log, 3000))
            self.stop(p)
            raise
        return Proxy(p, port, admin, lp)

    def client_output(self, argv: list[str], limit: float, tag: str) -> tuple[int, dict, str, str]:
        """Runs a load generator for at most `limit` s and keeps its output under raw/clients:
        (exit code, its JSON (empty if none), a note if the output did not parse, stderr)."""
        rc, so, se = run_bounded(argv, limit)
        (self.raw / "clients" / f"{tag}.json").write_text(so or "")
        note = ""
        try:
            j = json.loads(so) if so.strip() else {}
        except ValueError:
            j = {}
            note = f"unparsable client output; stderr: {se.strip()[-300:]}"
        return rc, j, note, se

    def finish_row(self, row: dict, proxy, note: str, digits: int | None = None) -> dict:
        """The per-core figures (rounded to `digits`, or to an int), the disturbed flag and
        the note of a measured row."""
        v = row["value"]

        def per(busy: float):
            return round(v / (busy / 100), digits) if digits is not None else round(v / (busy / 100))

        pc = row.get("proxy_cpu_pct")
        if pc and pc > 1 and v > 0:
            row["value_per_proxy_core"] = per(pc)
        c1 = row.get("cpu1_busy_pct")
        if self.a.layout == "split" and proxy and c1 and c1 > 1 and v > 0:
            row["value_per_cpu1"] = per(c1)
        row["disturbed"] = int(row.get("outside_user_pct", 0) > self.a.quiet_threshold)
        row["note"] = note.replace("\n", " | ")
        return row

    def run_client(self, wl: str, port: int, tag: str, host: str = "127.0.0.1") -> tuple[dict, str]:
        w = WORKLOADS[wl]
        d = self.a.duration
        if w["kind"] == "iperf":
            cmd = ["iperf3", "-c", host, "-p", str(port), "-t", f"{d:g}", "-P", str(w["streams"]),
                   "-J", "--connect-timeout", "3000"]
            limit = d + 30
        elif w["kind"] == "rr":
            cmd = [self.a.bench_bin, "rr", "--target", f"{host}:{port}", "--conns", str(w["conns"]),
                   "--duration", f"{d:g}", "--size", "1", "--warmup", f"{self.a.rr_warmup:g}"]
            limit = d + self.a.rr_warmup + 20
        else:
            cmd = [self.a.bench_bin, "connrate", "--target", f"{host}:{port}", "--duration", f"{d:g}",
                   "--concurrency", str(self.a.connrate_concurrency), "--warmup", f"{self.a.rr_warmup:g}"]
            limit = d + self.a.rr_warmup + 20
        if self.capture:  # the app: in its cgroup, as CAPTURE_UID (what iptables matches)
            argv = self.cap.wrap("app", self.client_cpu, cmd, unprivileged=True)
        else:
            argv = ["taskset", "-c", self.client_cpu, *cmd]
        rc, j, note, se = self.client_output(argv, limit, tag)
        res: dict = {"_rc": rc}
        if w["kind"] == "iperf":
            if j.get("error"):
                note = f"iperf3: {j['error']}"
            end = j.get("end", {})
            bps = end.get("sum_received", {}).get("bits_per_second", 0.0)
            res.update(value=bps / 1e9, retransmits=end.get("sum_sent", {}).get("retransmits", ""),
                       errors=0 if (rc == 0 and bps > 0) else 1)
            # payload bytes on the app -> server path (one direction; control traffic not counted)
            res["payload_bytes_est"] = int(end.get("sum_sent", {}).get("bytes", 0) or 0)
        else:
            res.update(value=j.get("rate", 0.0), rate=j.get("rate", ""), requests=j.get("requests", ""),
                       errors=j.get("errors", ""), p50_us=j.get("p50_us", ""), p99_us=j.get("p99_us", ""),
                       p999_us=j.get("p999_us", ""), mean_us=j.get("mean_us", ""))
            # both directions, 1 byte each, warm-up included (the rate is over the measured part)
            res["payload_bytes_est"] = int(2 * (j.get("rate") or 0) * (d + self.a.rr_warmup))
            if j.get("first_error"):
                note = f"first error: {j['first_error']}"
        if rc != 0 and not note:
            note = f"client exit {rc}: {se.strip()[-300:]}"
        return res, note

    def measure(self, rnd: int, wl: str, target: str) -> dict:
        w = WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "duration_s": self.a.duration, "started_at": dt.datetime.now().isoformat(timespec="seconds")}
        iperf = proxy = None
        try:
            if w["kind"] == "iperf":
                origin = self.port()
                lp = self.raw / "logs" / f"{tag}-iperf3-server.log"
                iperf = self.spawn(["iperf3", "-s", "-p", str(origin)], self.client_cpu, lp)
                self.wait_listen(origin, iperf, lp, "iperf3 server")
            else:
                self.ensure_echo()
                origin = self.echo_port
            if target == "direct":
                port = origin
            else:
                try:
                    proxy = self.start_proxy(target, origin, tag)
                except StartFailed as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
                port = proxy.port
            m_before = ""
            if proxy and proxy.admin:
                _, m_before = http_get(proxy.admin, "/metrics")
            proxy_pids = proc_tree(proxy.popen.pid) if proxy else []
            other = [os.getpid()] + ([self.echo.pid] if self.echo else []) + ([iperf.pid] if iperf else [])
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            s0 = self.snapshot(proxy_pids, other)
            res, note = self.run_client(wl, port, tag)
            s1 = self.snapshot(proxy_pids, other)
            row.update(self.cpu_figures(s0, s1))
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            if proxy and proxy.admin:
                _, m_after = http_get(proxy.admin, "/metrics")
                mdir = self.raw / "mosn-metrics"
                (mdir / f"{tag}-before.prom").write_text(m_before)
                (mdir / f"{tag}-after.prom").write_text(m_after)
                b, a = parse_prom(m_before), parse_prom(m_after)
                delta = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0}
                (mdir / f"{tag}-delta.json").write_text(json.dumps(delta, indent=1, sort_keys=True))
                row["mosn_metrics_delta"] = json.dumps(
                    {k: delta[k] for k in sorted(delta) if MOSN_METRIC_RE.search(k)}, separators=(",", ":"))
                if not a:
                    note = (note + "; " if note else "") + "no /metrics after run"
            if proxy and proxy.popen.poll() is not None:
                note = (note + "; " if note else "") + f"proxy exited ({proxy.popen.returncode}) during run"
            rc = res.pop("_rc")
            row.update(res)
            row["value"] = round(row.get("value") or 0.0, 4 if w["unit"] == "Gbit/s" else 1)
            errs = int(row.get("errors") or 0)
            row["status"] = "ok" if (rc == 0 and row["value"] > 0 and errs == 0) else (
                "errors" if row["value"] > 0 else "failed")
            return self.finish_row(row, proxy, note, 3 if w["unit"] == "Gbit/s" else 0)
        finally:
            self.stop(proxy.popen if proxy else None)
            self.stop(iperf)

    # ---------------------------------------------------------------- main loop
    def preflight_capture(self) -> None:
        if not have("setpriv") or not have("nsenter"):
            raise SystemExit("--suite capture needs setpriv and nsenter (util-linux)")
        if not self.cap.mount:
            raise SystemExit("--suite capture needs a cgroup v2 mount (none in /proc/self/mounts)")
        self.cap.setup_cgroups()
        self.cap.iptables_off()  # nothing of ours may be left from an earlier, killed run
        # the load generator runs as uid 65534: give it a copy it can execute (and that a
        # concurrent cargo build cannot replace mid-run)
        os.chmod(self.tmp, 0o755)
        b = self.tmp / "mosn-bench"
        shutil.copy(self.a.bench_bin, b)
        os.chmod(b, 0o755)
        self.a.bench_bin = str(b)
        mosn_ok = bool(self.a.mosn) and os.path.isfile(self.a.mosn) and os.access(self.a.mosn, os.X_OK)
        if mosn_ok:
            self.cap.detect_stop(self.a.mosn)
            log("pins are removed with " + ("`mosn stop -c CFG`" if self.cap.stop_cmd else
                                            "rm -rf (this mosn has no `stop` subcommand)"))
        bpffs = any(l.split()[1:3] == ["/sys/fs/bpf", "bpf"] for l in open("/proc/self/mounts"))
        for t in self.a.targets:
            if t == "direct":
                continue
            if not mosn_ok:
                self.skipped[t] = f"mosn binary not found at {self.a.mosn}"
            elif t == "iptables+mosn" and not have("iptables"):
                self.skipped[t] = "iptables not installed"
            elif t.startswith("ebpf") and not bpffs:
                self.skipped[t] = "no bpffs at /sys/fs/bpf"
        for t, why in self.skipped.items():
            warn(f"skipping {t}: {why}")

    def preflight(self) -> None:
        if self.capture:
            return self.preflight_capture()
        for t in self.a.targets:
            if t in MOSN_MODES:
                if not self.a.mosn or not os.path.isfile(self.a.mosn) or not os.access(self.a.mosn, os.X_OK):
                    self.skipped[t] = f"mosn binary not found at {self.a.mosn}"
            elif t == "haproxy" and not have("haproxy"):
                self.skipped[t] = "haproxy not installed"
            elif t == "nginx" and self.nginx_directive is None:
                self.skipped[t] = "nginx or its stream module not installed"
        for t, why in self.skipped.items():
            warn(f"skipping {t}: {why}")

    def run(self) -> None:
        a = self.a
        self.preflight()
        active = [t for t in a.targets if t not in self.skipped]
        n = a.rounds * sum(1 for wl in a.workloads for t in active if self.applies(wl, t))
        self.time_budget = n * (a.duration + 4)
        limit = a.time_limit or (self.time_budget * 3 + 900)
        log(f"{n} measurements ({a.rounds} rounds x {len(a.workloads)} workloads x {len(active)} targets), "
            f"layout {a.layout}, ~{self.time_budget / 60:.1f} min if quiet; hard limit {limit / 60:.0f} min")
        meta = {
            "started": dt.datetime.now().isoformat(timespec="seconds"), "layout": a.layout,
            "client_cpu": self.client_cpu, "proxy_cpu": self.proxy_cpu,
            "rounds": a.rounds, "duration_s": a.duration, "targets": a.targets, "workloads": a.workloads,
            "skipped": self.skipped, "connrate_concurrency": a.connrate_concurrency,
            "quiet_threshold_pct": a.quiet_threshold, "kernel": os.uname().release,
            "cpus": os.cpu_count(), "mosn": a.mosn, "bench_bin": a.bench_bin, "versions": versions(a.mosn),
        }
        if self.capture:
            meta.update(suite="capture", origin_host=self.origin_host, capture_port=a.capture_port,
                        app_uid=CAPTURE_UID, cgroups={k: str(v) for k, v in self.cap.cg.items()},
                        pin_path=str(self.cap.pin), iptables=versions_iptables())
        meta.update(self.extra_meta())
        (self.out / "run.json").write_text(json.dumps(meta, indent=2))
        with open(self.rows_path, "w", newline="") as f:
            csv.DictWriter(f, self.rows_fields).writeheader()
        for t, why in self.skipped.items():
            self.write_row({"round": 0, "workload": "", "target": t, "layout": a.layout, "status": "skipped",
                            "note": why})
        t_begin = time.monotonic()
        k = 0
        for rnd in range(1, a.rounds + 1):
            for wl in a.workloads:
                for target in a.targets:
                    if target in self.skipped or not self.applies(wl, target):
                        continue
                    if time.monotonic() - t_begin > limit:
                        warn("time limit reached; stopping")
                        return
                    k += 1
                    row = None
                    for attempt in range(1, a.retries + 2):
                        row = (self.measure_capture if self.capture else self.measure)(rnd, wl, target)
                        row["attempts"] = attempt
                        if row.get("status") in ("start_failed", "failed", "not_captured", "not_proxied",
                                                  "not_resumed") \
                                or not row.get("disturbed") \
                                or attempt > a.retries:
                            break
                        warn(f"{target}/{wl}: disturbed ({row.get('outside_user_pct')}% CPU outside the "
                             f"benchmark); retrying")
                    self.write_row(row)
                    self.report(k, n, row)
                    if row.get("status") == "start_failed" and self.skip_on_start_failure:
                        self.skipped[target] = "failed to start: " + row.get("note", "")[:300]
                        warn(f"{target} failed to start, skipping it from now on: {row.get('note', '')[:600]}")

    # overridden by the http suite's runner, which retries a target that failed to start in every
    # measurement (each gets its own FAILED row)
    skip_on_start_failure = True

    def extra_meta(self) -> dict:
        return {}

    def applies(self, wl: str, target: str) -> bool:
        """Whether `target` is measured in workload `wl` (--suite h2: not every pair is)."""
        return True

    def write_row(self, row: dict) -> None:
        with open(self.rows_path, "a", newline="") as f:
            csv.DictWriter(f, self.rows_fields, extrasaction="ignore").writerow(row)

    def report(self, k, n, row) -> None:
        v = row.get("value", "")
        unit = row.get("unit", "")
        extra = ""
        if row.get("p50_us") not in (None, ""):
            extra += f" p50 {row['p50_us']}us p99 {row['p99_us']}us"
        if row.get("proxy_cpu_pct") not in (None, ""):
            extra += f" proxy {row['proxy_cpu_pct']}% CPU"
        extra += f" noise {row.get('noise_before_pct', '?')}%/{row.get('outside_user_pct', '?')}%"
        log(f"[{k}/{n}] r{row['round']} {row['workload']:8} {row['target']:15} {row.get('status', ''):12} "
            f"{v} {unit}{extra}" + (f"  ({row['note'][:200]})" if row.get("note") else ""))


def versions_iptables() -> str | None:
    try:
        r = run_cmd(["iptables", "-V"], timeout=10)
        return (r.stdout or r.stderr).strip() or None
    except Exception:
        return None


def versions(mosn: str) -> dict:
    out = {}
    for name, cmd in [("haproxy", ["haproxy", "-v"]), ("nginx", ["nginx", "-v"]),
                      ("iperf3", ["iperf3", "--version"]), ("mosn", [mosn, "--version"])]:
        try:
            r = run_cmd(cmd, timeout=10)
            out[name] = ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
        except Exception:
            out[name] = None
    return out


def inner_main(args) -> int:
    os.sched_setaffinity(0, {0})  # keep this coordinator off the proxy CPU
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.suite == "http":
        import http_suite

        r = http_suite.HttpRunner(args)
    elif args.suite == "bolt":
        import bolt_suite

        r = bolt_suite.BoltRunner(args)
    elif args.suite == "h2":
        import h2_suite

        r = h2_suite.H2Runner(args)
    elif args.suite == "tls":
        import tls_suite

        r = tls_suite.TlsRunner(args)
    else:
        r = Runner(args)
    try:
        r.run()
        return 0
    except KeyboardInterrupt:
        warn("interrupted")
        return 130
    finally:
        r.cleanup()


# =============================================================================================
# analysis


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit=""):
    if x is None:
        return "-"
    if unit == "Gbit/s":
        return f"{x:.2f}"
    if abs(x) >= 1000:
        return f"{x / 1000:.1f}k"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.0f}"


def analyze(out: Path, plot: bool) -> None:
    rows_path = out / "rows.csv"
    if not rows_path.exists():
        warn(f"no {rows_path}; nothing to analyse")
        return
    with open(rows_path, newline="") as f:
        rows = list(csv.DictReader(f))
    meta = {}
    if (out / "run.json").exists():
        meta = json.loads((out / "run.json").read_text())
    good = [r for r in rows if r["status"] in ("ok", "errors") and (fnum(r["value"]) or 0) > 0]
    direct = {(r["round"], r["workload"]): fnum(r["value"]) for r in good if r["target"] == "direct"}
    # a ratio is only as clean as both of its runs: the target's and direct's of the same round
    direct_disturbed = {(r["round"], r["workload"]) for r in good
                        if r["target"] == "direct" and int(fnum(r["disturbed"]) or 0)}
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    suite = meta.get("suite", "l4")
    capture = suite == "capture"
    httpsuite = suite == "http"
    boltsuite = suite == "bolt"
    tlssuite = suite == "tls"
    h2suite = suite == "h2"
    checked = capture or httpsuite or boltsuite or h2suite or tlssuite  # suites whose runs are checked against counters
    targets = [t for t in SUITES[suite][0] if any(r["target"] == t for r in good)]
    if checked:  # variants that never gave a valid measurement still get their line
        targets = [t for t in SUITES[suite][0] if any(r["target"] == t and r["status"] != "skipped" for r in rows)]
    summary = []
    for wl in workloads:
        for t in targets:
            rs = [r for r in good if r["workload"] == wl and r["target"] == t]
            if not rs:
                continue
            ratios = [fnum(r["value"]) / direct[(r["round"], wl)] for r in rs if direct.get((r["round"], wl))]
            s = {
                "workload": wl, "target": t, "layout": rs[0]["layout"], "unit": rs[0]["unit"],
                "rounds": len(rs),
                "ratio_median": med(ratios), "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "value_median": med(fnum(r["value"]) for r in rs),
                "p50_us_median": med(fnum(r["p50_us"]) for r in rs),
                "p99_us_median": med(fnum(r["p99_us"]) for r in rs),
                "proxy_cpu_pct_median": med(fnum(r["proxy_cpu_pct"]) for r in rs),
                "value_per_proxy_core_median": med(fnum(r["value_per_proxy_core"]) for r in rs),
                "value_per_cpu1_median": med(fnum(r.get("value_per_cpu1")) for r in rs),
                "cpu0_busy_pct_median": med(fnum(r["cpu0_busy_pct"]) for r in rs),
                "cpu1_busy_pct_median": med(fnum(r["cpu1_busy_pct"]) for r in rs),
                "noise_before_pct_max": max((fnum(r["noise_before_pct"]) or 0) for r in rs),
                "outside_user_pct_max": max((fnum(r["outside_user_pct"]) or 0) for r in rs),
                "errors_total": sum(int(fnum(r["errors"]) or 0) for r in rs),
                "disturbed_rounds": sum(1 for r in rs if int(fnum(r["disturbed"]) or 0)
                                        or (r["round"], wl) in direct_disturbed),
            }
            if capture:
                s["invalid_rounds"] = sum(1 for r in rows if r["workload"] == wl and r["target"] == t
                                          and r["status"] not in ("ok", "errors", "skipped"))
                for k in ["mosn_connections", "mosn_bytes", "iptables_redirected", *CAPTURE_STATS, "sk_msg_share"]:
                    s[f"{k}_median"] = med(fnum(r.get(k)) for r in rs)
            if httpsuite:
                import http_suite

                s.update(http_suite.summary_extra(rows, rs, wl, t))
            if h2suite:
                import h2_suite

                s.update(h2_suite.summary_extra(rows, rs, wl, t))
            if tlssuite:
                import tls_suite

                s.update(tls_suite.summary_extra(rows, rs, wl, t))
            if boltsuite:
                import bolt_suite

                s.update(bolt_suite.summary_extra(rows, rs, wl, t))
            summary.append(s)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(summary[0].keys()) if summary else ["workload"])
        w.writeheader()
        for s in summary:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()})

    failed = [r for r in rows if r["status"] not in ("ok",)]
    invalid = {}  # (workload, target) -> rounds without a valid measurement (capture suite)
    for r in rows:
        if checked and r["status"] not in ("ok", "errors", "skipped"):
            invalid[(r["workload"], r["target"])] = invalid.get((r["workload"], r["target"]), 0) + 1
    if httpsuite and not summary:
        import http_suite

        http_suite.no_summary(rows, meta)  # still print the goal checks (all FAIL)
    if boltsuite and not summary:
        import bolt_suite

        bolt_suite.no_summary(rows, meta)
    if h2suite and not summary:
        import h2_suite

        h2_suite.no_summary(rows, meta)
    if tlssuite and not summary:
        import tls_suite

        tls_suite.no_summary(rows, meta)
    if not summary:
        warn("no completed measurements to summarise")
        for r in failed:
            print(f"- r{r['round']} {r['workload'] or '*'} {r['target']}: {r['status']} {r['note'][:300]}")
        return
    lines = []
    title = (f"Layout {meta.get('layout', '?')} (client+origin CPU{meta.get('client_cpu', '?')}, "
             f"proxy CPU{meta.get('proxy_cpu', '?')}), {meta.get('rounds', '?')} round(s) x "
             f"{meta.get('duration_s', '?')} s, kernel {meta.get('kernel', '?')}, {meta.get('started', '')}")
    if capture:
        title = (f"Transparent capture, app -> mosn -> server on {meta.get('origin_host', '?')}; " + title)
    if httpsuite:
        title = (f"HTTP/1.1 (wrk) to an nginx origin on {meta.get('origin_host', '?')}, 100-byte body; " + title)
    if boltsuite:
        title = (f"SOFARPC Bolt v1 (mosn-bench bolt-load) to a Bolt echo origin on {meta.get('origin_host', '?')}, "
                 f"{meta.get('size', '?')} B content each way, {meta.get('in_flight', '?')} request(s) in flight "
                 f"per connection; " + title)
    if h2suite:
        title = (f"HTTP/2 (h2load) to an h2c origin on {meta.get('h2_origin_host', '?')} and HTTP/1.1 (wrk) to an "
                 f"nginx origin on {meta.get('origin_host', '?')}; " + title)
    if tlssuite:
        title = (f"TLS 1.3 termination (AES-128-GCM, P-256, ECDSA P-256 certificate), origins on "
                 f"{meta.get('origin_host', '?')}; " + title)
    lines.append(f"### {title}\n")
    lines.append("Median ratio to direct over rounds (min..max):\n")
    hdr = "| target | " + " | ".join(WORKLOADS[w]["label"] for w in workloads) + " |"
    lines += [hdr, "|---" * (len(workloads) + 1) + "|"]
    by = {(s["workload"], s["target"]): s for s in summary}
    for t in targets:
        cells = []
        for wl in workloads:
            s = by.get((wl, t))
            bad = invalid.get((wl, t), 0)
            if tlssuite and wl == "idle-memory" and s and s.get("kb_per_conn_median") is not None:
                cells.append(f"{fmt(s['kb_per_conn_median'])} KB/conn" + (f" [{bad} invalid]" if bad else ""))
            elif (not s or s["ratio_median"] is None) and bad:
                cells.append(f"FAILED ({bad} run(s) " + ("not captured)" if capture else "not valid)"))
            elif not s or s["ratio_median"] is None:
                cells.append("-")
            elif t == "direct":
                cells.append(f"1 ({fmt(s['value_median'], s['unit'])} {s['unit']})")
            else:
                share = s.get("sk_msg_share_median") if "sk_msg" in t else None
                low = share is not None and share < 0.5
                cells.append(f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})"
                             + (f" [{bad} invalid]" if bad else "") + (" †" if low else ""))
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("")
    if capture and "†" in "\n".join(lines):
        lines += ["† sk_msg carried less than half of the bytes (median sk_msg share below 0.5; see the counters "
                  "below): the figure is mostly plain TCP.", ""]
    if capture and invalid:
        lines += ["[n invalid] = n run(s) whose counters did not show the variant's path carrying the traffic "
                  "(no ratio from them; reasons under \"Not ok\").", ""]
    if (httpsuite or boltsuite or h2suite or tlssuite) and invalid:
        lines += ["FAILED / [n invalid] = n run(s) without a valid measurement: the target did not start, did not "
                  + ("answer GET / with the origin's response, wrk saw" if httpsuite else
                     "answer one request with the origin's response, the load generator saw" if h2suite or tlssuite
                     else
                     "answer one Bolt request with the origin's response, the load generator saw")
                  + " over 1 % errors, or the proxy's or origin's "
                  "request counter did not show the requests (no ratio from them; reasons under \"Not ok\").", ""]
    if capture:
        lines += capture_tables(summary, workloads, targets, by)
    if httpsuite:
        import http_suite

        lines += http_suite.http_tables(summary, workloads, targets, by)
    if boltsuite:
        import bolt_suite

        lines += bolt_suite.bolt_tables(summary, workloads, targets, by)
    if h2suite:
        import h2_suite

        lines += h2_suite.h2_tables(summary, workloads, targets, by)
    if tlssuite:
        import tls_suite

        lines += tls_suite.tls_tables(summary, workloads, targets, by, meta)
    lines.append("| workload | target | ratio (min..max) | median | unit | p50 µs | p99 µs | proxy CPU % "
                 "| per proxy core | CPU0/CPU1 busy % | per CPU1 | noise % | errors |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        ratio = "-" if s["ratio_median"] is None else f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})"
        mark = " *" if s["disturbed_rounds"] else ""
        lines.append(
            f"| {s['workload']} | {s['target']} | {ratio}{mark} | {fmt(s['value_median'], s['unit'])} | {s['unit']} "
            f"| {fmt(s['p50_us_median'])} | {fmt(s['p99_us_median'])} | {fmt(s['proxy_cpu_pct_median'])} "
            f"| {fmt(s['value_per_proxy_core_median'], s['unit'])} "
            f"| {fmt(s['cpu0_busy_pct_median'])}/{fmt(s['cpu1_busy_pct_median'])} "
            f"| {fmt(s['value_per_cpu1_median'], s['unit'])} "
            f"| {fmt(s['noise_before_pct_max'])}/{fmt(s['outside_user_pct_max'])} | {s['errors_total']} |")
    if failed:
        lines.append("\nNot ok:\n")
        for r in failed:
            why = r["note"][:300]
            if r.get("capture_check", "ok") not in ("ok", ""):
                why = (r["capture_check"] + ("; " + why if why else ""))[:500]
            if r.get("proxy_check", "ok") not in ("ok", ""):
                why = (r["proxy_check"] + ("; " + why if why else ""))[:500]
            lines.append(f"- r{r['round']} {r['workload'] or '*'} {r['target']}: {r['status']} {why}")
    lines.append("\nnoise % = max CPU% (of one CPU) used outside the benchmark before / during the runs; "
                 "* = in at least one round this run or direct's was disturbed (outside use above the threshold). "
                 "per proxy core = median / (proxy process CPU% / 100): kernel (softirq, kworker) work "
                 "on behalf of the proxy is not in it; per CPU1 = median / (CPU1 busy% / 100), the whole "
                 "proxy CPU in the split layout (only meaningful when the noise is low).")
    if httpsuite:  # the goal checks last, so they are what the console ends with
        import http_suite

        lines += [""] + http_suite.goal_lines(by, targets)
    if boltsuite:
        import bolt_suite

        lines += [""] + bolt_suite.goal_lines(by, targets, workloads)
    if h2suite:
        import h2_suite

        lines += [""] + h2_suite.goal_lines(by, targets)
    if tlssuite:
        import tls_suite

        lines += [""] + tls_suite.goal_lines(by, targets)
    table = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(table)
    print()
    print(table)
    if plot and summary:
        try:
            if httpsuite or boltsuite or h2suite or tlssuite:  # a longer title: wrap it
                import textwrap

                import http_suite

                title = textwrap.fill(title, 120)
                http_suite.latency_plot(out, summary, workloads, targets, title)
            make_plot(out, summary, workloads, [t for t in targets if t != "direct"], title)
        except Exception as e:  # a plot must never lose the numbers
            warn(f"plot failed: {e}")
    pngs = [p for p in ("ratios.png", "latency.png") if (out / p).exists()]
    log(f"results in {out}: rows.csv summary.csv summary.md" + "".join(" " + p for p in pngs))


def capture_tables(summary, workloads, targets, by) -> list[str]:
    """--suite capture: the goal line and what the counters say carried the traffic."""
    out = []
    goal = "ebpf+sk_msg+mosn"
    if goal in targets:
        cells = []
        for wl in workloads:
            s = by.get((wl, goal))
            if s and s["ratio_median"] is not None:
                cells.append(f"{WORKLOADS[wl]['label']}: {s['ratio_median']:.2f} "
                             f"({'meets' if s['ratio_median'] >= 0.8 else 'misses'} >= 0.8)")
        if cells:
            out += [f"Goal (the captured hop with sk_msg at >= 0.8 of direct): " + "; ".join(cells) + ".", ""]
    out.append("What carried the traffic (median per run of the counter deltas from mosn's /metrics; "
               "sk_msg share = sk_msg_redirected_bytes / bytes mosn moved on its four socket hops, or, "
               "without mosn in the path, / the payload bytes the app exchanged):\n")
    out.append("| workload | target | mosn conns | iptables REDIRECTs | outbound_captured | outbound_excluded "
               "| orig-dst getsockopt | sk_msg_redirects | sk_msg bytes | sk_msg share "
               "| backpressure / order fallbacks | invalid runs |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def f(s, k, share=False):
        v = s.get(f"{k}_median")
        if v is None:
            return "-"
        if share:
            return f"{v:.2f}"
        if k.endswith("bytes") and v >= 1e6:
            return f"{v / 1e9:.2f} GB" if v >= 1e9 else f"{v / 1e6:.1f} MB"
        return fmt(v)

    for s in summary:
        if s["target"] == "direct":
            continue
        out.append(
            f"| {s['workload']} | {s['target']} | {f(s, 'mosn_connections')} | {f(s, 'iptables_redirected')} "
            f"| {f(s, 'outbound_captured')} "
            f"| {f(s, 'outbound_excluded')} | {f(s, 'original_dst_getsockopt')} | {f(s, 'sk_msg_redirects')} "
            f"| {f(s, 'sk_msg_redirected_bytes')} | {f(s, 'sk_msg_share', True)} "
            f"| {f(s, 'sk_msg_backpressure_fallbacks')} / {f(s, 'sk_msg_order_fallbacks')} "
            f"| {s.get('invalid_rounds', 0)} |")
    out.append("")
    return out


def make_plot(out: Path, summary, workloads, targets, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(s["workload"], s["target"]): s for s in summary}
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(workloads)), 4.8))
    n = max(1, len(targets))
    width = 0.8 / n
    colors = {"mosn": "#4c72b0", "mosn-userspace": "#4c72b0", "mosn-kernel": "#dd8452", "mosn-auto": "#55a868",
              "haproxy": "#8172b3", "nginx": "#937860"}
    for i, t in enumerate(targets):
        xs, ys, lo, hi, marks = [], [], [], [], []
        for j, wl in enumerate(workloads):
            s = by.get((wl, t))
            if not s or s["ratio_median"] is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(s["ratio_median"])
            lo.append(s["ratio_median"] - s["ratio_min"])
            hi.append(s["ratio_max"] - s["ratio_median"])
            marks.append("*" if s["disturbed_rounds"] else "")
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=t, color=colors.get(t))
        for x, y, mk in zip(xs, ys, marks):
            ax.text(x, y + 0.02, f"{y:.2f}{mk}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="direct = 1")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([WORKLOADS[w]["label"] for w in workloads], fontsize=8)
    ax.set_ylabel("throughput / direct (median of rounds, min..max)")
    if any(s["disturbed_rounds"] for s in summary):
        title += "\n* = a round was disturbed by other load on the machine"
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8, ncol=3)
    ax.set_ylim(0, max(1.2, max((s["ratio_max"] or 0) for s in summary) * 1.15))
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=130)
    plt.close(fig)


# =============================================================================================


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    if args._inner:
        return inner_main(args)
    try:
        return outer_main(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
