"""`--suite h2` of bench/run.py: HTTP/2 cleartext (h2c) and gRPC unary through mosn (L7 `proxy`
filter, Http2 downstream), HAProxy (`proto h2`) and nginx (`listen ... http2`) vs h2load straight to
the origin, plus the HTTP/1.1 keep-alive workload of the http suite re-measured in the same run.

Workloads:
* `h2c`: `h2load -c 8 -m 8` (64 streams over 8 connections), GET /, 100-byte response body.
* `grpc-unary`: the same h2load shape, POST of a 1 KiB gRPC message (5-byte prefix + 1024 bytes,
  `content-type: application/grpc`, `te: trailers`); the origin echoes it with `grpc-status: 0`.
* `http1-keepalive`: bench/http_suite.py's `keepalive` measurement (wrk -c50 to its nginx origin),
  imported, not copied.

The h2 origin is `mosn-bench h2-origin` on ORIGIN_HOST (127.0.0.2), one current-thread process on
CPU0 with h2load; it serves h2c and HTTP/1.1 on the same port (nginx's and `mosn-h1up`'s upstream
is HTTP/1.1). Every proxy runs with one worker on CPU1 (split layout). Before each run one request
through the path must come back right (`mosn-bench h2-check`: status, origin header, body, gRPC
trailer); after it the origin's and the proxy's request counters must each have grown by >= 99 %
of the requests h2load completed, else the run is `not_proxied` and gives no ratio.

Everything not h2-specific is run.py's (and http_suite's); run.py imports this module.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time

import http_suite as hs
import run as base

ORIGIN_HOST = "127.0.0.2"
BODY_SIZE = 100  # response body of h2c
GRPC_SIZE = 1024  # gRPC message bytes each way
CONNS, STREAMS = 8, 8  # h2load -c 8 -m 8: 64 concurrent streams
LISTENER = "http"  # mosn's listener name; http_suite.proxy_counter reads its counter by it

# Goals (mosn's median ratio to direct in the same run).
GOAL_H2C = 1.0
GOAL_GRPC = 0.9
GOAL_H1_KEEPALIVE = hs.GOAL_KEEPALIVE_RATIO  # "not regressing": the http suite's goal still met

# upstream protocol per (workload, target); a pair not listed is not measured
UPSTREAM = {
    "h2c": {"direct": "-", "mosn": "h2c", "mosn-h1up": "HTTP/1.1", "haproxy": "h2c", "nginx": "HTTP/1.1"},
    "grpc-unary": {"direct": "-", "mosn": "h2c", "haproxy": "h2c", "nginx": "h2c (grpc_pass)"},
    "http1-keepalive": {"direct": "-", "mosn": "HTTP/1.1", "haproxy": "HTTP/1.1", "nginx": "HTTP/1.1"},
}
DOWNSTREAM = {"h2c": "h2c", "grpc-unary": "h2c", "http1-keepalive": "HTTP/1.1"}

H2_FIELDS = hs.HTTP_FIELDS + [
    "requests_client", "upstream_proto", "cpu_us_per_req", "proxy_rss_start_kb", "proxy_rss_kb",
    "rss_per_conn_kb", "conns", "streams",
]


def ensure_packages(targets: list[str]) -> None:
    """http_suite's (wrk, nginx-light, haproxy) and h2load (nghttp2-client)."""
    hs.ensure_packages(targets)
    if not base.have("h2load"):
        base.apt_install(["nghttp2-client"])


def rss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return total


# =============================================================================================
# inner: the runner


class H2Runner(hs.HttpRunner):
    def __init__(self, args):
        super().__init__(args)
        self.rows_fields = H2_FIELDS
        self.h2 = None  # the h2 origin (http1-keepalive keeps http_suite's nginx origin)
        self.h2_port = 0
        self.refused: dict[str, str] = {}  # mosn target -> why `mosn validate` refused its config
        self.grpc_file = self.tmp / "grpc-1k.bin"
        msg = bytes((ord("a") + i % 26) for i in range(GRPC_SIZE))
        self.grpc_file.write_bytes(struct.pack(">BI", 0, GRPC_SIZE) + msg)
        self.grpc_nginx = False
        self.rss: dict[str, int] = {}

    def applies(self, wl: str, target: str) -> bool:
        return target in UPSTREAM.get(wl, {}) and not (wl == "grpc-unary" and target == "nginx"
                                                       and not self.grpc_nginx)

    def extra_meta(self) -> dict:
        m = super().extra_meta()
        m.update(suite="h2", h2_origin_host=ORIGIN_HOST, body_bytes=BODY_SIZE, grpc_bytes=GRPC_SIZE,
                 h2_conns=CONNS, h2_streams=STREAMS, h2load=hs._version(["h2load", "--version"]),
                 mosn_refused=self.refused, upstream=UPSTREAM, nginx_grpc=self.grpc_nginx)
        return m

    # ---------------------------------------------------------------- set-up
    def preflight(self) -> None:
        if not base.have("h2load"):
            raise SystemExit("--suite h2 needs h2load (apt-get install nghttp2-client)")
        if "http1-keepalive" in self.a.workloads and not base.have("wrk"):
            raise SystemExit("--suite h2 http1-keepalive needs wrk")
        for t in self.a.targets:
            if t.startswith("mosn"):
                m = self.a.mosn
                if not m or not os.path.isfile(m) or not os.access(m, os.X_OK):
                    self.skipped[t] = f"mosn binary not found at {m}"
            elif t == "haproxy" and not base.have("haproxy"):
                self.skipped[t] = "haproxy not installed"
            elif t == "nginx" and not base.have("nginx"):
                self.skipped[t] = "nginx not installed"
        for t, why in self.skipped.items():
            base.warn(f"skipping {t}: {why}")
        if "nginx" in self.a.targets and "nginx" not in self.skipped:
            self.grpc_nginx = self.nginx_has_grpc()
            if not self.grpc_nginx and "grpc-unary" in self.a.workloads:
                base.warn("this nginx has no grpc module: no nginx row for grpc-unary")
        for t in ("mosn", "mosn-h1up"):
            if t in self.a.targets and t not in self.skipped:
                d = self.tmp / "validate"
                d.mkdir(parents=True, exist_ok=True)
                cf = d / f"{t}.json"
                cf.write_text(json.dumps(self.mosn_config(t, 1, 2), indent=2))
                r = base.run_cmd([self.a.mosn, "validate", "-c", str(cf)], timeout=30)
                if r.returncode != 0:
                    self.refused[t] = ((r.stderr or "") + (r.stdout or "")).strip().replace("\n", " | ")[-600:] \
                        or f"exit {r.returncode}"
                    base.warn(f"mosn refuses the {t} config ({t} FAILED in every h2 run): {self.refused[t]}")
        if any(w in self.a.workloads for w in ("h2c", "grpc-unary")):
            self.ensure_h2_origin()

    def nginx_has_grpc(self) -> bool:
        d = self.tmp / "nginx-grpc-test"
        d.mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(f"pid {d}/nginx.pid; error_log {d}/error.log; events {{}} http {{ "
                                      f"server {{ listen 127.0.0.1:1; location / {{ grpc_pass grpc://127.0.0.1:2; }} }} }}")
        r = base.run_cmd([hs._bin("nginx"), "-t", "-p", str(d), "-c", str(d / "nginx.conf"), "-e",
                          str(d / "error.log")], timeout=30)
        return r.returncode == 0

    def ensure_h2_origin(self) -> None:
        if self.h2 is not None and self.h2.poll() is None:
            return
        if self.h2 is not None:
            base.warn(f"h2 origin died ({self.h2.returncode}); restarting")
        self.h2_port = self.port()
        lp = self.raw / "logs" / "origin-h2.log"
        bound = int(getattr(self, "time_budget", 3600) * 3 + 900)
        self.h2 = self.spawn([self.a.bench_bin, "h2-origin", "--listen", f"{ORIGIN_HOST}:{self.h2_port}",
                              "--body-size", str(BODY_SIZE), "--max-seconds", str(bound)], self.client_cpu, lp)
        try:
            self.wait_listen(self.h2_port, self.h2, lp, "h2 origin")
        except base.StartFailed as e:
            raise SystemExit(f"the h2 origin did not start: {e}")
        for grpc in (False, True):
            ok, why = self.h2_check(ORIGIN_HOST, self.h2_port, grpc)
            if not ok:
                raise SystemExit(f"the h2 origin does not answer as expected: {why}")

    def h2_check(self, host: str, port: int, grpc: bool) -> tuple[bool, str]:
        cmd = [self.a.bench_bin, "h2-check", "--target", f"{host}:{port}", "--body-size", str(BODY_SIZE)]
        if grpc:
            cmd += ["--grpc", "--size", str(GRPC_SIZE)]
        rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], 20)
        try:
            j = json.loads(so)
        except ValueError:
            return False, f"h2-check exit {rc}: {(so + se).strip()[-300:]}"
        return bool(j.get("ok")), str(j.get("error") or "")

    def origin_stats(self) -> dict:
        try:
            with base._NOPROXY.open(f"http://{ORIGIN_HOST}:{self.h2_port}/origin-status", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    # ---------------------------------------------------------------- proxies
    def mosn_config(self, target: str, port: int, admin: int) -> dict:
        up = "Http1" if target == "mosn-h1up" else "Http2"
        return {
            "servers": [{
                "default_log_level": "ERROR",
                "routers": [{"router_config_name": "r", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "origin"}}]}]}],
                "listeners": [{
                    "name": LISTENER, "address": f"127.0.0.1:{port}", "bind_port": True,
                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                        "downstream_protocol": "Http2", "upstream_protocol": up, "router_config_name": "r"}}]}]}],
            }],
            "cluster_manager": {"clusters": [{
                "name": "origin", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
                "hosts": [{"address": f"{ORIGIN_HOST}:{self.h2_port or 3}"}]}]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        }

    def start_h2_proxy(self, target: str, wl: str, tag: str) -> base.Proxy:
        port, admin = self.port(), self.port()
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        origin = f"{ORIGIN_HOST}:{self.h2_port}"
        error_log = None
        if target.startswith("mosn"):
            cf = d / "mosn.json"
            cf.write_text(json.dumps(self.mosn_config(target, port, admin), indent=2))
            cmd, ready = [self.a.mosn, "start", "-c", str(cf), "--workers", "1"], admin
        elif target == "haproxy":
            cf = d / "haproxy.cfg"
            cf.write_text(f"""global
    nbthread 1
    maxconn {self.maxconn}
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:{port} proto h2
    default_backend origin
backend origin
    http-reuse always
    server origin {origin} proto h2
listen stats
    bind 127.0.0.1:{admin}
    stats enable
    stats uri /stats
""")
            cmd, ready = [hs._bin("haproxy"), "-db", "-f", str(cf)], 0
        elif target == "nginx":
            if wl == "grpc-unary":
                loc = "grpc_pass grpc://origin;"
            else:
                loc = 'proxy_pass http://origin;\n            proxy_http_version 1.1;\n' \
                      '            proxy_set_header Connection "";'
            cf = d / "nginx.conf"
            error_log = d / "error.log"
            cf.write_text(f"""daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {self.fd_limit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {self.maxconn * 2};
}}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 256;
    upstream origin {{
        server {origin};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} http2 backlog=8192;
        location / {{
            {loc}
        }}
    }}
    server {{
        listen 127.0.0.1:{admin};
        location = /status {{
            stub_status;
        }}
    }}
}}
""")
            cmd, ready = [hs._bin("nginx"), "-p", str(d), "-c", str(cf), "-e", str(error_log)], 0
        else:
            raise ValueError(target)
        # one config copy per target and workload under raw/configs
        return self.launch_proxy(f"{target}-{wl}", cf, cmd, port, admin, ready, lp, error_log)

    # ---------------------------------------------------------------- h2load
    def run_h2load(self, wl: str, port: int, host: str, tag: str, duration: int, save=True) -> tuple[dict, str]:
        logf = self.tmp / f"{tag}.h2load.log"
        cmd = ["h2load", "-t", "1", "-c", str(CONNS), "-m", str(STREAMS), "-D", str(duration),
               "--log-file", str(logf)]
        if wl == "grpc-unary":
            cmd += ["-d", str(self.grpc_file), "-H", "content-type: application/grpc", "-H", "te: trailers",
                    f"http://{host}:{port}/bench.Echo/Unary"]
        else:
            cmd.append(f"http://{host}:{port}/")
        rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], duration + 30)
        if save:
            (self.raw / "clients" / f"{tag}.txt").write_text(f"$ {' '.join(cmd)}\n{so}{se}")
        res, note = parse_h2load(so, se, rc, logf)
        logf.unlink(missing_ok=True)
        return res, note

    # ---------------------------------------------------------------- one measurement
    def measure(self, rnd: int, wl: str, target: str) -> dict:
        if wl == "http1-keepalive":  # http_suite's measurement, unchanged; RSS through the hooks below
            self.rss = {}
            row = super().measure(rnd, wl, target)
            row["upstream_proto"] = UPSTREAM[wl].get(target, "")
            row["conns"] = base.WORKLOADS[wl]["conns"]
            if "start" in self.rss and "last" in self.rss:
                row["proxy_rss_start_kb"], row["proxy_rss_kb"] = self.rss["start"], self.rss["last"]
                row["rss_per_conn_kb"] = round((self.rss["last"] - self.rss["start"]) / row["conns"], 1)
            pc, reqs = base.fnum(row.get("proxy_cpu_pct")), base.fnum(row.get("requests_wrk"))
            if pc and reqs and row.get("wall_s"):
                row["cpu_us_per_req"] = round(pc / 100 * row["wall_s"] / reqs * 1e6, 2)
            return row
        w = base.WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "started_at": base.dt.datetime.now().isoformat(timespec="seconds"), "conns": CONNS,
               "streams": STREAMS, "upstream_proto": UPSTREAM[wl].get(target, "")}
        proxy = None
        notes: list[str] = []
        dur = max(1, int(math.ceil(self.a.duration)))
        row["duration_s"] = dur
        grpc = wl == "grpc-unary"
        try:
            self.ensure_h2_origin()
            if target in self.refused:
                row.update(status="start_failed", note=f"mosn refuses the config (mosn validate): "
                                                       f"{self.refused[target]}"[:900])
                return row
            if target == "direct":
                host, port = ORIGIN_HOST, self.h2_port
            else:
                try:
                    proxy = self.start_h2_proxy(target, wl, tag)
                except base.StartFailed as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
                host, port = "127.0.0.1", proxy.port
            ok, why = self.h2_check(host, port, grpc)
            row["response_check"] = "ok" if ok else why[:300]
            if not ok:
                if proxy and proxy.popen.poll() is not None:
                    why += f"; proxy exited ({proxy.popen.returncode}): {base.tail(proxy.log_path, 600)}"
                row.update(status="failed", note=f"no valid response through {target}: {why}"[:900])
                return row
            proxy_pids = base.proc_tree(proxy.popen.pid) if proxy else []
            row["proxy_rss_start_kb"] = rss_kb(proxy_pids) if proxy else ""
            if self.a.rr_warmup > 0:  # unmeasured: connections, pools, caches
                self.run_h2load(wl, port, host, tag + "-warmup", 1, save=False)
            origin_pids = [self.h2.pid]
            other = [os.getpid()] + origin_pids
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            o0 = self.origin_stats()
            p_req0, p_text0 = self.proxy_counter(target, proxy) if proxy else (None, "")
            s0 = self.snapshot(proxy_pids, other)
            o_ticks0 = base.ticks_sum(origin_pids)
            res, note = self.run_h2load(wl, port, host, tag, dur)
            s1 = self.snapshot(proxy_pids, other)
            o_ticks1 = base.ticks_sum(origin_pids)
            if proxy:
                row["proxy_rss_kb"] = rss_kb(proxy_pids)
                if row["proxy_rss_start_kb"]:
                    row["rss_per_conn_kb"] = round((row["proxy_rss_kb"] - row["proxy_rss_start_kb"]) / CONNS, 1)
            if note:
                notes.append(note)
            row.update(self.cpu_figures(s0, s1))
            row["origin_cpu_pct"] = round((sum(o_ticks1) - sum(o_ticks0)) / base.HZ / max(row["wall_s"], 1e-3) * 100, 1)
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            time.sleep(0.2)
            o1 = self.origin_stats()
            p_req1, p_text1 = self.proxy_counter(target, proxy) if proxy else (None, "")
            if target.startswith("mosn"):
                self.save_mosn_metrics(tag, p_text0, p_text1, row)
            elif target == "haproxy" and p_text1:
                (self.raw / "clients" / f"{tag}-haproxy-stats.csv").write_text(p_text1)
            if proxy and proxy.popen.poll() is not None:
                notes.append(f"proxy exited ({proxy.popen.returncode}) during run")
            if o0 and o1:
                row["requests_origin"] = o1["requests"] - o0["requests"]
                row["origin_conns"] = o1["connections"] - o0["connections"] - 1  # minus the status query
            if proxy:
                row["requests_proxy"] = hs._delta(p_req0, p_req1, 1 if target == "nginx" else 0)
            rc = res.pop("_rc")
            row.update(res)
            row["value"] = round(row.get("value") or 0.0, 1)
            reqs = int(row.get("requests_client") or 0)
            errs = int(row.get("errors") or 0)
            if rc == 0 and row["value"] > 0 and errs == 0:
                row["status"] = "ok"
            elif row["value"] > 0 and errs <= hs.MAX_ERROR_SHARE * max(reqs, 1):
                row["status"] = "errors"
            else:
                row["status"] = "failed"
                if row["value"] > 0:
                    notes.append(f"{errs} errors in {reqs} requests (> {hs.MAX_ERROR_SHARE:.0%})")
            pc = row.get("proxy_cpu_pct")
            if pc and reqs:
                row["cpu_us_per_req"] = round(pc / 100 * row["wall_s"] / reqs * 1e6, 2)
            bad = hs.check_proxied(target, {**row, "requests_wrk": reqs})
            row["proxy_check"] = "ok" if not bad else "FAILED: " + "; ".join(bad)
            if bad and row["status"] != "failed":
                row["status"] = "not_proxied"
            return self.finish_row(row, proxy, "; ".join(notes))
        finally:
            self.stop(proxy.popen if proxy else None)

    # http1-keepalive runs http_suite's measure(): read the proxy's RSS when it starts and whenever
    # its counter is read (the last read is right after the measured run)
    def launch_proxy(self, *args, **kw) -> base.Proxy:
        p = super().launch_proxy(*args, **kw)
        self.rss = {"start": rss_kb(base.proc_tree(p.popen.pid))}
        return p

    def proxy_counter(self, target: str, proxy: base.Proxy):
        if proxy:
            self.rss["last"] = rss_kb(base.proc_tree(proxy.popen.pid))
        # Every mosn variant counts its requests the same way.
        return super().proxy_counter("mosn" if target.startswith("mosn") else target, proxy)

    def save_mosn_metrics(self, tag: str, before: str, after: str, row: dict) -> None:
        mdir = self.raw / "mosn-metrics"
        (mdir / f"{tag}-before.prom").write_text(before)
        (mdir / f"{tag}-after.prom").write_text(after)
        b, a = base.parse_prom(before), base.parse_prom(after)
        delta = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0}
        (mdir / f"{tag}-delta.json").write_text(json.dumps(delta, indent=1, sort_keys=True))
        row["mosn_metrics_delta"] = json.dumps(
            {k: delta[k] for k in sorted(delta) if hs.MOSN_HTTP_METRIC_RE.search(k)}, separators=(",", ":"))

    def report(self, k, n, row) -> None:
        base.Runner.report(self, k, n, row)
        if row.get("status") in ("ok", "errors", "not_proxied"):
            client = row.get("requests_client") or row.get("requests_wrk", "?")
            base.log(f"      counted: client {client}, proxy {row.get('requests_proxy', '-')}, origin "
                     f"{row.get('requests_origin', '?')} requests over {row.get('origin_conns', '?')} origin "
                     f"connection(s); upstream {row.get('upstream_proto') or '-'}; check {row.get('proxy_check', '?')}")

    def cleanup(self) -> None:
        self.stop(self.h2)
        super().cleanup()


def parse_h2load(so: str, se: str, rc: int, logf) -> tuple[dict, str]:
    """h2load's summary (requests, status codes, duration) plus percentiles from its --log-file."""
    res: dict = {"_rc": rc}
    m = re.search(r"finished in ([\d.]+)(m?s)", so)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", so)
    sc = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", so)
    if not m or not r:
        res.update(value=0.0, errors=1)
        return res, f"no summary from h2load (exit {rc}): {(so + se).strip()[-300:]}"
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    total, started, done, ok, failed, errored, timeout = map(int, r.groups())
    non2xx = sum(map(int, sc.groups()[1:])) if sc else 0
    res.update(value=ok / max(secs, 1e-6), rate=round(ok / max(secs, 1e-6), 1), requests=ok, requests_client=ok,
               errors=failed + errored + timeout, non2xx=non2xx,
               socket_errors=f"failed {failed}, errored {errored}, timeout {timeout}")
    lat = []
    try:
        with open(logf) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    except (OSError, ValueError):
        pass
    if lat:
        lat.sort()

        def q(p):
            return float(lat[min(len(lat) - 1, int(p * len(lat)))])
        res.update(p50_us=q(0.5), p90_us=q(0.9), p99_us=q(0.99), p999_us=q(0.999), max_us=float(lat[-1]),
                   mean_us=round(sum(lat) / len(lat), 1))
    note = ""
    if failed or errored or timeout:
        note = f"h2load: {res['socket_errors']}, non-2xx {non2xx}"
    if rc != 0:
        note = (note + "; " if note else "") + f"h2load exit {rc}: {se.strip()[-300:]}"
    return res, note


# =============================================================================================
# analysis (called from run.analyze)


def summary_extra(rows, rs, wl, t) -> dict:
    s = hs.summary_extra(rows, rs, wl, t)
    s.update({
        "upstream_proto": next((r.get("upstream_proto") for r in rs if r.get("upstream_proto")), ""),
        "cpu_us_per_req_median": base.med(base.fnum(r.get("cpu_us_per_req")) for r in rs),
        "proxy_rss_kb_median": base.med(base.fnum(r.get("proxy_rss_kb")) for r in rs),
        "rss_per_conn_kb_median": base.med(base.fnum(r.get("rss_per_conn_kb")) for r in rs),
        "requests_client_median": base.med(base.fnum(r.get("requests_client") or r.get("requests_wrk")) for r in rs),
    })
    return s


def h2_tables(summary, workloads, targets, by) -> list[str]:
    f = base.fmt
    out = ["Per workload and target (medians over rounds; upstream = what the proxy spoke to the origin; CPU µs/req = "
           "proxy CPU time per completed request; RSS = the proxy's resident memory after the run, "
           "per conn = its growth from start to after the run / client connections):\n",
           "| workload | target | down / upstream | req/s | ratio (min..max) | p50 / p99 µs | proxy CPU % "
           "| CPU µs/req | RSS MiB | RSS KiB/conn | origin CPU % | requests client / proxy / origin | origin conns "
           "| invalid runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        ratio = "-" if s["ratio_median"] is None else \
            f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})"
        rss = s.get("proxy_rss_kb_median")
        out.append(
            f"| {s['workload']} | {s['target']} | {DOWNSTREAM.get(s['workload'], '?')} / {s.get('upstream_proto') or '-'} "
            f"| {f(s['value_median'])} | {ratio} | {f(s['p50_us_median'])} / {f(s['p99_us_median'])} "
            f"| {f(s['proxy_cpu_pct_median'])} | {f(s.get('cpu_us_per_req_median'))} "
            f"| {'-' if rss is None else f'{rss / 1024:.1f}'} | {f(s.get('rss_per_conn_kb_median'))} "
            f"| {f(s['origin_cpu_pct_median'])} | {f(s['requests_client_median'])} / "
            f"{f(s['requests_proxy_median'])} / {f(s['requests_origin_median'])} | {f(s['origin_conns_median'])} "
            f"| {s['invalid_rounds']} |")
    out.append("")
    return out


def goal_lines(by, targets) -> list[str]:
    def cell(wl, t):
        x = by.get((wl, t))
        if not x or x.get("ratio_median") is None:
            return "-", None
        return f"{x['ratio_median']:.2f} ({x['ratio_min']:.2f}..{x['ratio_max']:.2f})", x["ratio_median"]

    out = ["Goals (mosn's median of per-round ratios to direct; the peers for reference):\n",
           "| check | mosn | mosn-h1up | haproxy | nginx | mosn |", "|---|---|---|---|---|---|"]
    for wl, goal, name in (("h2c", GOAL_H2C, "h2c"), ("grpc-unary", GOAL_GRPC, "gRPC unary"),
                           ("http1-keepalive", GOAL_H1_KEEPALIVE, "HTTP/1.1 keep-alive (not regressing)")):
        m, mv = cell(wl, "mosn")
        out.append(f"| {name}: mosn >= {goal:.2f} of direct | {m} | {cell(wl, 'mosn-h1up')[0]} "
                   f"| {cell(wl, 'haproxy')[0]} | {cell(wl, 'nginx')[0]} "
                   f"| **{'PASS' if mv is not None and mv >= goal else 'FAIL'}** |")
    return out


def no_summary(rows, meta) -> None:
    print("\n" + "\n".join(goal_lines({}, [])) + "\n")
