"""`--suite http` of bench/run.py: HTTP/1.1 through mosn (L7 `proxy` filter), HAProxy (http mode)
and nginx (reverse proxy) vs wrk straight to the origin, in the same run, interleaved.

The origin is nginx on ORIGIN_HOST (127.0.0.2) with one worker, serving a fixed 100-byte body with
keep-alive (`keepalive_requests` 10^7) and no access log, pinned with the load generator (wrk, one
thread, 50 connections) to CPU0; each proxy runs with one worker on CPU1 (split layout). Workloads:
`keepalive` (wrk -c50 -t1 --latency) and `close` (the same with `Connection: close`: one
connection per request). Every run is checked to have been carried by the path it claims: the
origin's request counter (stub_status) and, through a proxy, the proxy's own request counter
(mosn `/metrics` `mosn_listener_downstream_rq_total{listener="http"}`, HAProxy's stats CSV
`req_tot` of its frontend, nginx's stub_status) must each have grown by at least the requests wrk
completed; a run that fails this gets status `not_proxied` and no ratio.

Everything not HTTP-specific (namespace, pinning, quiet-wait, CPU accounting, rows.csv, the
ratio tables and ratios.png) is run.py's; this module is imported by run.py, which registers
itself as module `run`.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import run as base

ORIGIN_HOST = "127.0.0.2"
BODY = ("mosn-rs bench origin " + "x" * 78 + "\n")  # the fixed response body
assert len(BODY.encode()) == 100
ORIGIN_HEADER = "X-Bench-Origin"  # the origin adds it to every response; proxies add nothing
CONNS = 50
# A run is carried by the path it claims if each counter grew by >= this share of wrk's requests
# (wrk counts completed requests only; the counters also see the ones in flight at the end).
COUNTER_MIN_SHARE = 0.99
MAX_ERROR_SHARE = 0.01  # more errors than this share of the requests: the run failed (no ratio)

# Goals of the issue (mosn vs direct in the same run; p99 vs the peers).
GOAL_KEEPALIVE_RATIO = 0.80
GOAL_P99_SHARE = 0.5
GOAL_CLOSE_RATIO = 0.90

HTTP_FIELDS = base.FIELDS + [
    "requests_wrk", "requests_proxy", "requests_origin", "origin_conns", "non2xx", "socket_errors",
    "origin_cpu_pct", "p90_us", "max_us", "response_check", "proxy_check",
]
MOSN_HTTP_METRIC_RE = re.compile(r"downstream_rq|upstream_rq|upstream_cx|listener_connections|error|retry|timeout",
                                 re.I)

WRK_LUA = r"""
-- mosn-bench: print wrk's summary as one JSON line (latencies in microseconds)
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,' ..
    '"status":%.0f,"timeout":%.0f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"p999_us":%.1f,' ..
    '"mean_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""


# =============================================================================================
# outer: packages


def ensure_packages(targets: list[str]) -> None:
    """wrk (load generator), nginx (the origin, always; also a target), haproxy if a target."""
    need = []
    for binary, pkg in [("wrk", "wrk"), ("taskset", "util-linux"), ("ip", "iproute2"), ("nginx", "nginx-light")]:
        if not base.have(binary):
            need.append(pkg)
    if "haproxy" in targets and not base.have("haproxy"):
        need.append("haproxy")
    if need:
        base.apt_install(need)


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


# =============================================================================================
# inner: the runner


class HttpRunner(base.Runner):
    skip_on_start_failure = False  # a target that fails to start gets a FAILED row in every measurement

    def __init__(self, args):
        super().__init__(args)
        self.rows_fields = HTTP_FIELDS
        self.origin_host = ORIGIN_HOST
        self.origin: subprocess.Popen | None = None
        self.origin_port = 0
        self.lua = self.tmp / "wrk-json.lua"
        self.lua.write_text(WRK_LUA)
        # mosn logs through tracing (RUST_LOG, default info); keep per-request logging off the
        # measured path unless the caller asked for something else.
        os.environ.setdefault("RUST_LOG", "warn")

    def extra_meta(self) -> dict:
        return {"suite": "http", "origin_host": ORIGIN_HOST, "body_bytes": len(BODY.encode()), "conns": CONNS,
                "wrk": _version(["wrk", "-v"]), "rust_log": os.environ.get("RUST_LOG", "")}

    # ---------------------------------------------------------------- set-up
    def preflight(self) -> None:
        if not base.have("wrk"):
            raise SystemExit("--suite http needs wrk (apt-get install wrk)")
        if not base.have("nginx"):
            raise SystemExit("--suite http needs nginx (the origin)")
        for t in self.a.targets:
            if t == "mosn":
                m = self.a.mosn
                if not m or not os.path.isfile(m) or not os.access(m, os.X_OK):
                    self.skipped[t] = f"mosn binary not found at {m}"
            elif t == "haproxy" and not base.have("haproxy"):
                self.skipped[t] = "haproxy not installed"
        for t, why in self.skipped.items():
            base.warn(f"skipping {t}: {why}")
        self.ensure_origin()

    def ensure_origin(self) -> None:
        if self.origin is not None and self.origin.poll() is None:
            return
        if self.origin is not None:
            base.warn(f"origin nginx died ({self.origin.returncode}); restarting")
        self.origin_port = self.port()
        d = self.tmp / "origin"
        d.mkdir(parents=True, exist_ok=True)
        cf = d / "nginx.conf"
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
    default_type text/plain;
    server {{
        listen {ORIGIN_HOST}:{self.origin_port} backlog=8192 default_server;
        location = /origin-status {{
            stub_status;
        }}
        location / {{
            add_header {ORIGIN_HEADER} nginx-origin;
            return 200 {json.dumps(BODY)};
        }}
    }}
}}
""")
        shutil.copy(cf, self.raw / "configs" / "origin-nginx.conf")
        lp = self.raw / "logs" / "origin-nginx.log"
        self.origin = self.spawn([_bin("nginx"), "-p", str(d), "-c", str(cf), "-e", str(d / "error.log")],
                                 self.client_cpu, lp)
        try:
            self.wait_listen(self.origin_port, self.origin, lp, "origin nginx")
        except base.StartFailed as e:
            raise SystemExit(f"the origin did not start: {e} {base.tail(d / 'error.log')}")
        ok, note, _ = check_response(ORIGIN_HOST, self.origin_port)
        if not ok:
            raise SystemExit(f"the origin does not answer as expected: {note}")

    def start_http_proxy(self, target: str, tag: str) -> base.Proxy:
        port, admin = self.port(), self.port()
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        origin = f"{ORIGIN_HOST}:{self.origin_port}"
        if target == "mosn":
            cfg = {
                "servers": [{
                    "default_log_level": "ERROR",
                    "routers": [{"router_config_name": "r", "virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "origin"}}]}]}],
                    "listeners": [{
                        "name": "http", "address": f"127.0.0.1:{port}", "bind_port": True,
                        "filter_chains": [{"filters": [{"type": "proxy", "config": {
                            "downstream_protocol": "Http1", "upstream_protocol": "Http1",
                            "router_config_name": "r"}}]}]}],
                }],
                "cluster_manager": {"clusters": [{
                    "name": "origin", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": origin}]}]},
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            }
            cf = d / "mosn.json"
            cf.write_text(json.dumps(cfg, indent=2))
            cmd = [self.a.mosn, "start", "-c", str(cf), "--workers", "1"]
            ready_admin = admin
        elif target == "haproxy":
            cf = d / "haproxy.cfg"
            cf.write_text(f"""global
    nbthread 1
    maxconn {self.maxconn}
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:{port}
    default_backend origin
backend origin
    http-reuse always
    server origin {origin}
listen stats
    bind 127.0.0.1:{admin}
    stats enable
    stats uri /stats
""")
            cmd = [_bin("haproxy"), "-db", "-f", str(cf)]
            ready_admin = 0
        elif target == "nginx":
            cf = d / "nginx.conf"
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
    upstream origin {{
        server {origin};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
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
            cmd = [_bin("nginx"), "-p", str(d), "-c", str(cf), "-e", str(d / "error.log")]
            ready_admin = 0
        else:
            raise ValueError(target)
        error_log = d / "error.log" if target == "nginx" else None
        return self.launch_proxy(target, cf, cmd, port, admin, ready_admin, lp, error_log)

    # ---------------------------------------------------------------- counters
    def origin_counters(self) -> tuple[int | None, int | None]:
        """(requests, accepted connections) of the origin so far (its stub_status)."""
        return stub_status(ORIGIN_HOST, self.origin_port, "/origin-status")

    def proxy_counter(self, target: str, proxy: base.Proxy) -> tuple[int | None, str]:
        """(requests the proxy has counted so far, raw text of its counters)."""
        if target == "mosn":
            code, text = base.http_get(proxy.admin, "/metrics")
            if code != 200:
                return None, text
            vals = base.parse_prom(text)
            hits = [v for k, v in vals.items()
                    if k.split("{", 1)[0] == "mosn_listener_downstream_rq_total" and 'listener="http"' in k]
            return (int(sum(hits)) if hits else None), text
        if target == "haproxy":
            code, text = base.http_get(proxy.admin, "/stats;csv")
            if code != 200:
                return None, text
            rd = csv.DictReader(io.StringIO(text.lstrip("# ")))
            for r in rd:
                if r.get("pxname") == "bench" and r.get("svname") == "FRONTEND":
                    try:
                        return int(r.get("req_tot") or 0), text
                    except ValueError:
                        return None, text
            return None, text
        if target == "nginx":
            req, _ = stub_status("127.0.0.1", proxy.admin, "/status")
            return req, ""
        return None, ""

    # ---------------------------------------------------------------- wrk
    def run_wrk(self, wl: str, port: int, tag: str, duration: int, save=True) -> tuple[dict, str]:
        w = base.WORKLOADS[wl]
        host = ORIGIN_HOST if port == self.origin_port else "127.0.0.1"
        cmd = ["wrk", "-t1", f"-c{w['conns']}", f"-d{duration}s", "--latency", "--timeout", "5s",
               "-s", str(self.lua)]
        if w["close"]:
            cmd += ["-H", "Connection: close"]
        cmd.append(f"http://{host}:{port}/")
        limit = duration + 30
        rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], limit)
        if save:
            (self.raw / "clients" / f"{tag}.txt").write_text(f"$ {' '.join(cmd)}\n{so}{se}")
        return parse_wrk(so, se, rc)

    # ---------------------------------------------------------------- one measurement
    def measure(self, rnd: int, wl: str, target: str) -> dict:
        w = base.WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "duration_s": self.a.duration, "started_at": base.dt.datetime.now().isoformat(timespec="seconds")}
        proxy = None
        notes: list[str] = []
        dur = max(1, int(math.ceil(self.a.duration)))
        row["duration_s"] = dur
        try:
            self.ensure_origin()
            if target == "direct":
                host, port = ORIGIN_HOST, self.origin_port
            else:
                try:
                    proxy = self.start_http_proxy(target, tag)
                except base.StartFailed as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
                host, port = "127.0.0.1", proxy.port
            # one request first: a 200 with the origin's body and header, or no load run at all
            ok, why, _ = check_response(host, port, close=w["close"])
            row["response_check"] = "ok" if ok else why[:300]
            if not ok:
                if proxy and proxy.popen.poll() is not None:
                    why += f"; proxy exited ({proxy.popen.returncode}): {base.tail(proxy.log_path, 600)}"
                row.update(status="failed", note=f"no valid response through {target}: {why}"[:900])
                return row
            if self.a.rr_warmup > 0:  # unmeasured: connections, pools, caches
                self.run_wrk(wl, port, tag, 1, save=False)
            proxy_pids = base.proc_tree(proxy.popen.pid) if proxy else []
            origin_pids = base.proc_tree(self.origin.pid)
            other = [os.getpid()] + origin_pids
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            o_req0, o_conn0 = self.origin_counters()
            p_req0, p_text0 = self.proxy_counter(target, proxy) if proxy else (None, "")
            s0 = self.snapshot(proxy_pids, other)
            o_ticks0 = base.ticks_sum(origin_pids)
            res, note = self.run_wrk(wl, port, tag, dur)
            s1 = self.snapshot(proxy_pids, other)
            o_ticks1 = base.ticks_sum(origin_pids)
            if note:
                notes.append(note)
            row.update(self.cpu_figures(s0, s1))
            row["origin_cpu_pct"] = round((sum(o_ticks1) - sum(o_ticks0)) / base.HZ / max(row["wall_s"], 1e-3) * 100, 1)
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            time.sleep(0.2)  # let the proxy finish the last requests' bookkeeping
            o_req1, o_conn1 = self.origin_counters()
            p_req1, p_text1 = self.proxy_counter(target, proxy) if proxy else (None, "")
            if target == "mosn":
                mdir = self.raw / "mosn-metrics"
                (mdir / f"{tag}-before.prom").write_text(p_text0)
                (mdir / f"{tag}-after.prom").write_text(p_text1)
                b, a = base.parse_prom(p_text0), base.parse_prom(p_text1)
                delta = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0}
                (mdir / f"{tag}-delta.json").write_text(json.dumps(delta, indent=1, sort_keys=True))
                row["mosn_metrics_delta"] = json.dumps(
                    {k: delta[k] for k in sorted(delta) if MOSN_HTTP_METRIC_RE.search(k)}, separators=(",", ":"))
            elif target == "haproxy" and p_text1:
                (self.raw / "clients" / f"{tag}-haproxy-stats.csv").write_text(p_text1)
            if proxy and proxy.popen.poll() is not None:
                notes.append(f"proxy exited ({proxy.popen.returncode}) during run")
            # minus the status query after the run (its connection and request are counted)
            row["requests_origin"] = _delta(o_req0, o_req1, 1)
            row["origin_conns"] = _delta(o_conn0, o_conn1, 1)
            if proxy:
                row["requests_proxy"] = _delta(p_req0, p_req1, 1 if target == "nginx" else 0)
            rc = res.pop("_rc")
            row.update(res)
            row["value"] = round(row.get("value") or 0.0, 1)
            reqs = int(row.get("requests_wrk") or 0)
            errs = int(row.get("errors") or 0)
            if rc == 0 and row["value"] > 0 and errs == 0:
                row["status"] = "ok"
            elif row["value"] > 0 and errs <= MAX_ERROR_SHARE * max(reqs, 1):
                row["status"] = "errors"
            else:
                row["status"] = "failed"
                if row["value"] > 0:
                    notes.append(f"{errs} errors in {reqs} requests (> {MAX_ERROR_SHARE:.0%})")
            bad = check_proxied(target, row)
            row["proxy_check"] = "ok" if not bad else "FAILED: " + "; ".join(bad)
            if bad and row["status"] != "failed":
                row["status"] = "not_proxied"  # not a measurement of this path: no ratio
            return self.finish_row(row, proxy, "; ".join(notes))
        finally:
            self.stop(proxy.popen if proxy else None)

    def report(self, k, n, row) -> None:
        super().report(k, n, row)
        if row.get("status") in ("ok", "errors", "not_proxied"):
            base.log(f"      counted: wrk {row.get('requests_wrk', '?')}, proxy {row.get('requests_proxy', '-')}, "
                     f"origin {row.get('requests_origin', '?')} requests over {row.get('origin_conns', '?')} "
                     f"origin connection(s); check {row.get('proxy_check', '?')}")


def _delta(a, b, minus=0):
    return "" if a is None or b is None else b - a - minus


def _version(cmd) -> str | None:
    try:
        r = base.run_cmd(cmd, timeout=10)
        lines = ((r.stdout or "") + (r.stderr or "")).strip().splitlines()
        return lines[0] if lines else None
    except Exception:
        return None


def stub_status(host: str, port: int, path: str) -> tuple[int | None, int | None]:
    """(requests, accepts) from nginx's stub_status page."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=2)
        c.request("GET", path)
        r = c.getresponse()
        text = r.read().decode(errors="replace")
        c.close()
    except (OSError, http.client.HTTPException):
        return None, None
    m = re.search(r"accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)", text)
    return (int(m.group(3)), int(m.group(1))) if m else (None, None)


def check_response(host: str, port: int, close=False) -> tuple[bool, str, dict]:
    """One GET /: must be a 200 with the origin's 100-byte body and its header."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=3)
        c.request("GET", "/", headers={"Connection": "close"} if close else {})
        r = c.getresponse()
        body = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return False, f"GET / failed: {type(e).__name__}: {e}", {}
    if r.status != 200:
        return False, f"GET / answered {r.status}", hdrs
    if body != BODY.encode():
        return False, f"GET / body is {len(body)} bytes, not the origin's {len(BODY)}: {body[:80]!r}", hdrs
    if ORIGIN_HEADER.lower() not in hdrs:
        return False, f"GET / has no {ORIGIN_HEADER} header (did it reach the origin?)", hdrs
    return True, "", hdrs


def parse_wrk(so: str, se: str, rc: int) -> tuple[dict, str]:
    res: dict = {"_rc": rc}
    note = ""
    j = None
    for line in so.splitlines():
        if line.startswith("WRKJSON "):
            try:
                j = json.loads(line[8:])
            except ValueError:
                pass
    if j is None:
        m = re.search(r"Requests/sec:\s+([\d.]+)", so)
        res.update(value=float(m.group(1)) if m else 0.0, errors=1)
        return res, f"no summary from wrk (exit {rc}): {(so + se).strip()[-300:]}"
    dur = (j["duration_us"] or 1) / 1e6
    sock = j["connect"] + j["read"] + j["write"] + j["timeout"]
    res.update(value=j["requests"] / dur, rate=round(j["requests"] / dur, 1), requests=int(j["requests"]),
               requests_wrk=int(j["requests"]), errors=int(sock + j["status"]), non2xx=int(j["status"]),
               socket_errors=f"connect {j['connect']:.0f}, read {j['read']:.0f}, write {j['write']:.0f}, "
                             f"timeout {j['timeout']:.0f}",
               p50_us=round(j["p50_us"], 1), p99_us=round(j["p99_us"], 1), p999_us=round(j["p999_us"], 1),
               p90_us=round(j["p90_us"], 1), mean_us=round(j["mean_us"], 1), max_us=round(j["max_us"], 1))
    if sock or j["status"]:
        note = f"wrk errors: {res['socket_errors']}, non-2xx/3xx {j['status']:.0f}"
    if rc != 0:
        note = (note + "; " if note else "") + f"wrk exit {rc}: {se.strip()[-300:]}"
    return res, note


def check_proxied(target: str, row: dict) -> list[str]:
    """Why this run is not a measurement of `target` carrying wrk's requests (empty: it is)."""
    bad = []
    reqs = row.get("requests_wrk")
    if not isinstance(reqs, int) or reqs <= 0:
        return bad  # nothing measured: the run is failed anyway
    need = int(reqs * COUNTER_MIN_SHARE)
    o = row.get("requests_origin")
    if not isinstance(o, int):
        bad.append("no request counter from the origin")
    elif o < need:
        bad.append(f"the origin counted {o} requests for wrk's {reqs}")
    if target != "direct":
        p = row.get("requests_proxy")
        if not isinstance(p, int):
            bad.append(f"no request counter from {target}")
        elif p < need:
            bad.append(f"{target} counted {p} requests for wrk's {reqs}")
    return bad


# =============================================================================================
# analysis (called from run.analyze)


def summary_extra(rows, rs, wl, t) -> dict:
    return {
        "p90_us_median": base.med(base.fnum(r.get("p90_us")) for r in rs),
        "p999_us_median": base.med(base.fnum(r.get("p999_us")) for r in rs),
        "p99_us_max": max((base.fnum(r.get("p99_us")) or 0) for r in rs),
        "origin_cpu_pct_median": base.med(base.fnum(r.get("origin_cpu_pct")) for r in rs),
        "origin_conns_median": base.med(base.fnum(r.get("origin_conns")) for r in rs),
        "requests_wrk_median": base.med(base.fnum(r.get("requests_wrk")) for r in rs),
        "requests_proxy_median": base.med(base.fnum(r.get("requests_proxy")) for r in rs),
        "requests_origin_median": base.med(base.fnum(r.get("requests_origin")) for r in rs),
        "invalid_rounds": sum(1 for r in rows if r["workload"] == wl and r["target"] == t
                              and r["status"] not in ("ok", "errors", "skipped")),
    }


def http_tables(summary, workloads, targets, by) -> list[str]:
    out = ["Latency, CPU and what carried the requests (medians over rounds; p99 max = worst round; "
           "origin conns = connections the origin accepted during the run, i.e. how well the proxy "
           "reuses upstream connections):\n",
           "| workload | target | req/s | p50 µs | p99 µs (max) | p99.9 µs | proxy CPU % | req/s per proxy core "
           "| origin CPU % | requests wrk / proxy / origin | origin conns | invalid runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = base.fmt
    for s in summary:
        out.append(
            f"| {s['workload']} | {s['target']} | {f(s['value_median'])} | {f(s['p50_us_median'])} "
            f"| {f(s['p99_us_median'])} ({f(s['p99_us_max'])}) | {f(s['p999_us_median'])} "
            f"| {f(s['proxy_cpu_pct_median'])} | {f(s['value_per_proxy_core_median'])} "
            f"| {f(s['origin_cpu_pct_median'])} "
            f"| {f(s['requests_wrk_median'])} / {f(s['requests_proxy_median'])} / {f(s['requests_origin_median'])} "
            f"| {f(s['origin_conns_median'])} | {s['invalid_rounds']} |")
    out.append("")
    return out


def goal_checks(by, targets) -> list[tuple[str, str, str, str, bool]]:
    """(check, mosn's figure, haproxy's, nginx's, mosn passes) per goal of the issue."""
    def s(wl, t):
        x = by.get((wl, t))
        return x if x and x.get("ratio_median") is not None else None

    def ratio(wl, t):
        x = s(wl, t)
        return f"{x['ratio_median']:.2f} ({x['ratio_min']:.2f}..{x['ratio_max']:.2f})" if x else "-"

    def p99(wl, t):
        x = s(wl, t)
        return x["p99_us_median"] if x else None

    checks = []
    m = s("keepalive", "mosn")
    checks.append((f"keep-alive: mosn >= {GOAL_KEEPALIVE_RATIO:.2f} of direct", ratio("keepalive", "mosn"),
                   ratio("keepalive", "haproxy"), ratio("keepalive", "nginx"),
                   bool(m and m["ratio_median"] >= GOAL_KEEPALIVE_RATIO)))
    peers = [p for p in (p99("keepalive", "haproxy"), p99("keepalive", "nginx")) if p]
    mp = p99("keepalive", "mosn")
    limit = GOAL_P99_SHARE * min(peers) if peers else None
    checks.append((f"keep-alive p99: mosn <= {GOAL_P99_SHARE} x min(haproxy, nginx)"
                   + (f" = {limit:.0f} µs" if limit else " (no peer p99)"),
                   f"{mp:.0f} µs" if mp else "-",
                   f"{p99('keepalive', 'haproxy'):.0f} µs" if p99("keepalive", "haproxy") else "-",
                   f"{p99('keepalive', 'nginx'):.0f} µs" if p99("keepalive", "nginx") else "-",
                   bool(mp and limit and mp <= limit)))
    c = s("close", "mosn")
    checks.append((f"conn per request: mosn >= {GOAL_CLOSE_RATIO:.2f} of direct", ratio("close", "mosn"),
                   ratio("close", "haproxy"), ratio("close", "nginx"),
                   bool(c and c["ratio_median"] >= GOAL_CLOSE_RATIO)))
    return checks


def goal_lines(by, targets) -> list[str]:
    out = ["Goals (mosn; HAProxy and nginx for reference; ratios = median of per-round ratios to direct, "
           "p99 = median over rounds):\n",
           "| check | mosn | haproxy | nginx | mosn |", "|---|---|---|---|---|"]
    for name, m, h, n, ok in goal_checks(by, targets):
        out.append(f"| {name} | {m} | {h} | {n} | **{'PASS' if ok else 'FAIL'}** |")
    if "mosn" not in targets:
        out.append("\n(mosn gave no valid measurement in this run: every goal FAILs.)")
    return out


def no_summary(rows, meta) -> None:
    print("\n" + "\n".join(goal_lines({}, [])) + "\n")


def latency_plot(out: Path, summary, workloads, targets, title) -> None:
    """p50 and p99 per workload and target (bars p99, dots p50), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(s["workload"], s["target"]): s for s in summary}
    fig, ax = plt.subplots(figsize=(max(7, 2.2 * len(workloads)), 4.8))
    n = max(1, len(targets))
    width = 0.8 / n
    colors = {"direct": "#999999", "mosn": "#4c72b0", "haproxy": "#8172b3", "nginx": "#937860"}
    for i, t in enumerate(targets):
        xs, p99s, p50s = [], [], []
        for j, wl in enumerate(workloads):
            s = by.get((wl, t))
            if not s or s.get("p99_us_median") is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            p99s.append(s["p99_us_median"])
            p50s.append(s["p50_us_median"] or 0)
        ax.bar(xs, p99s, width, label=f"{t} p99", color=colors.get(t))
        ax.plot(xs, p50s, "o", color="black", markersize=3)
        for x, y in zip(xs, p99s):
            ax.text(x, y * 1.03, f"{y / 1000:.2f}", ha="center", va="bottom", fontsize=7)
    ax.plot([], [], "o", color="black", markersize=3, label="p50")
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([base.WORKLOADS[w]["label"] for w in workloads], fontsize=8)
    ax.set_ylabel("latency, µs (bars: p99 in ms on top; dots: p50)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=130)
    plt.close(fig)
