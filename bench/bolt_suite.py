"""`--suite bolt` of bench/run.py: SOFARPC Bolt v1 request/response through mosn as an L4
forwarder (`tcp_proxy`), mosn as a Bolt L7 proxy (`proxy` filter, bolt -> bolt, routed on the
`service` header) and optionally HAProxy in TCP mode, vs the load generator straight to the
origin, in the same run, interleaved.

The origin is `mosn-bench bolt-server` on ORIGIN_HOST (127.0.0.2): every request gets a
`SofaResponse` with status 0 and 1 KiB of content whose first 8 bytes repeat the request's tag;
heartbeats are answered. The load generator is `mosn-bench bolt-load`: 1 or 64 connections, each
with K (default 1) requests of 1 KiB content in flight. Origin and load generator share CPU0;
each proxy runs with one worker on CPU1 (split layout). Every response is checked (its id must
match a request in flight on its connection, status 0, the request's tag) and every run is
checked against counters: the origin's request count (bolt-server `--stats-listen`) and, through
a proxy, the proxy's own count (mosn L7: `mosn_listener_downstream_rq_total`; mosn L4:
connections accepted and, while no connection went to the kernel splice, bytes received;
HAProxy: sessions and bytes in from its stats CSV). A run that fails a check gets status
`not_proxied` and no ratio.

Everything not Bolt-specific (namespace, pinning, quiet-wait, CPU accounting, rows.csv, the
ratio tables and ratios.png) is run.py's; this module is imported by run.py, which registers
itself as module `run`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time

import run as base

ORIGIN_HOST = "127.0.0.2"
SIZE = 1024  # content bytes of every request and every response
SERVICE = "com.alipay.test.EchoService:1.0"
METHOD = "echo"
REQUEST_CLASS = "com.alipay.sofa.rpc.core.request.SofaRequest"
LISTENER = "bolt"  # mosn's listener name (its counters are labelled with it)
# A run is carried by the path it claims if each counter lies within this share of the client's
# count: >= (1 - x) x responses received, <= (1 + x) x requests sent.
COUNTER_TOLERANCE = 0.01
MAX_ERROR_SHARE = 0.01  # more errors than this share of the requests: the run failed (no ratio)
GOAL_L7_OVER_L4 = 0.8  # the goal: L7 >= 0.8 x L4 at equal concurrency

BOLT_FIELDS = base.FIELDS + [
    "in_flight", "p90_us", "max_us", "sent_total", "responses_total", "requests_proxy", "proxy_counter",
    "requests_origin",
    "origin_conns", "proxy_conns", "l4_path", "kernel_spliced", "userspace_copied", "bytes_client",
    "bytes_proxy", "origin_cpu_pct", "errors_by_kind", "response_check", "heartbeat_check", "proxy_check",
]
MOSN_BOLT_METRIC_RE = re.compile(r"downstream_rq|upstream_rq|upstream_cx|listener_connections|error|retry|timeout|"
                                 r"spliced|copied", re.I)


# =============================================================================================
# outer: packages


def ensure_packages(targets: list[str]) -> None:
    need = []
    for binary, pkg in [("taskset", "util-linux"), ("ip", "iproute2")]:
        if not base.have(binary):
            need.append(pkg)
    if "haproxy" in targets and not base.have("haproxy"):
        need.append("haproxy")
    if need:
        base.apt_install(need)


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


# =============================================================================================
# the wire format (for the one-request check before each run; the load is mosn-bench's)


def header_block(kv) -> bytes:
    out = b""
    for k, v in kv:
        k, v = k.encode(), v.encode()
        out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def request(rid: int, content: bytes, cmd: int = 1, timeout_ms: int = 3000) -> bytes:
    cls = REQUEST_CLASS.encode() if cmd == 1 else b""
    hdr = header_block([("service", SERVICE), ("sofa_head_method_name", METHOD)]) if cmd == 1 else b""
    return struct.pack(">BBHBIBiHHI", 1, 1, cmd, 1, rid, 1, timeout_ms, len(cls), len(hdr), len(content)) \
        + cls + hdr + content


def read_frame(sock: socket.socket, buf: bytearray) -> dict:
    """Reads one response frame (20-byte head) from sock (buffered in buf)."""
    def need(n):
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} byte(s) of a frame")
            buf.extend(chunk)

    need(20)
    proto, typ, cmd, _ver2, rid, _codec, status, cl, hl, dl = struct.unpack(">BBHBIBHHHI", bytes(buf[:20]))
    if proto != 1 or typ != 0:
        raise ValueError(f"not a Bolt v1 response: proto {proto}, type {typ}")
    n = 20 + cl + hl + dl
    need(n)
    f = {"cmd": cmd, "id": rid, "status": status, "class": bytes(buf[20:20 + cl]).decode(errors="replace"),
         "content": bytes(buf[20 + cl + hl:n])}
    del buf[:n]
    return f


def check_exchange(host: str, port: int) -> tuple[bool, str, str]:
    """One request (must be answered with status 0, the request's id and tag and SIZE content
    bytes) and one heartbeat (reported, not required: a proxy may answer heartbeats itself).
    Returns (request ok, why not, heartbeat outcome)."""
    tag = b"chk-0001"
    content = tag + b"x" * (SIZE - len(tag))
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            buf = bytearray()
            s.sendall(request(77, content))
            f = read_frame(s, buf)
            if f["cmd"] != 2 or f["id"] != 77:
                return False, f"answered with cmdcode {f['cmd']} id {f['id']} (expected 2, 77)", ""
            if f["status"] != 0:
                return False, f"response status {f['status']}", ""
            if len(f["content"]) != SIZE or f["content"][:8] != tag:
                return False, (f"response content is {len(f['content'])} bytes starting {f['content'][:8]!r}, "
                               f"not the origin's {SIZE} starting {tag!r}"), ""
            try:
                s.settimeout(2)
                s.sendall(request(78, b"", cmd=0, timeout_ms=-1))
                h = read_frame(s, buf)
                hb = "ok" if (h["cmd"], h["id"], h["status"]) == (0, 78, 0) else \
                    f"answered with cmdcode {h['cmd']} id {h['id']} status {h['status']}"
            except (OSError, ValueError, struct.error) as e:
                hb = f"no heartbeat response: {type(e).__name__}: {e}"
            return True, "", hb
    except (OSError, ValueError, struct.error) as e:
        return False, f"{type(e).__name__}: {e}", ""


# =============================================================================================
# inner: the runner


class BoltRunner(base.Runner):
    skip_on_start_failure = False  # a target that fails to start gets a FAILED row in every measurement

    def __init__(self, args):
        super().__init__(args)
        self.rows_fields = BOLT_FIELDS
        self.origin_host = ORIGIN_HOST
        self.origin: subprocess.Popen | None = None
        self.origin_port = self.stats_port = 0
        self.l7_refused = ""  # why `mosn validate` refused the L7 config ("" = accepted / not checked)
        os.environ.setdefault("RUST_LOG", "warn")

    def extra_meta(self) -> dict:
        return {"suite": "bolt", "origin_host": ORIGIN_HOST, "size": SIZE, "in_flight": self.a.bolt_in_flight,
                "l7_refused": self.l7_refused, "rust_log": os.environ.get("RUST_LOG", "")}

    # ---------------------------------------------------------------- set-up
    def preflight(self) -> None:
        for t in self.a.targets:
            if t.startswith("mosn"):
                m = self.a.mosn
                if not m or not os.path.isfile(m) or not os.access(m, os.X_OK):
                    self.skipped[t] = f"mosn binary not found at {m}"
            elif t == "haproxy" and not base.have("haproxy"):
                self.skipped[t] = "haproxy not installed"
        for t, why in self.skipped.items():
            base.warn(f"skipping {t}: {why}")
        if "mosn-l7" in self.a.targets and "mosn-l7" not in self.skipped:
            d = self.tmp / "validate"
            d.mkdir(parents=True, exist_ok=True)
            cf = d / "mosn-l7.json"
            cf.write_text(json.dumps(self.mosn_config("mosn-l7", 1, 2, f"{ORIGIN_HOST}:3"), indent=2))
            r = base.run_cmd([self.a.mosn, "validate", "-c", str(cf)], timeout=30)
            if r.returncode != 0:
                self.l7_refused = ((r.stderr or "") + (r.stdout or "")).strip().replace("\n", " | ")[-600:] \
                    or f"exit {r.returncode}"
                base.warn(f"mosn refuses the Bolt L7 config (mosn-l7 will be FAILED in every round): "
                          f"{self.l7_refused}")
        self.ensure_origin()

    def ensure_origin(self) -> None:
        if self.origin is not None and self.origin.poll() is None:
            return
        if self.origin is not None:
            base.warn(f"origin bolt-server died ({self.origin.returncode}); restarting")
        self.origin_port, self.stats_port = self.port(), self.port()
        lp = self.raw / "logs" / "origin-bolt-server.log"
        bound = int(getattr(self, "time_budget", 3600) * 3 + 900)
        self.origin = self.spawn([self.a.bench_bin, "bolt-server", "--listen", f"{ORIGIN_HOST}:{self.origin_port}",
                                  "--stats-listen", f"{ORIGIN_HOST}:{self.stats_port}", "--size", str(SIZE),
                                  "--max-seconds", str(bound)], self.client_cpu, lp)
        try:
            self.wait_listen(self.origin_port, self.origin, lp, "origin bolt-server")
        except base.StartFailed as e:
            raise SystemExit(f"the origin did not start: {e}")
        ok, why, hb = check_exchange(ORIGIN_HOST, self.origin_port)
        if not ok or hb != "ok":
            raise SystemExit(f"the origin does not answer as expected: {why or hb}")

    def mosn_config(self, target: str, port: int, admin: int, origin: str) -> dict:
        if target.startswith("mosn-l4"):
            # mosn-l4: no fast_path key, the daemon's default (auto), as a user would run it;
            # mosn-l4-userspace (a reference): never the kernel splice
            listener = {"name": LISTENER, "address": f"127.0.0.1:{port}", "bind_port": True,
                        "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "origin"}}]}]}
            if target == "mosn-l4-userspace":
                listener["fast_path"] = "userspace"
            server = {"default_log_level": "ERROR", "listeners": [listener]}
        else:
            listener = {"name": LISTENER, "address": f"127.0.0.1:{port}", "bind_port": True,
                        "filter_chains": [{"filters": [{"type": "proxy", "config": {
                            "downstream_protocol": "bolt", "upstream_protocol": "bolt",
                            "router_config_name": "bolt_router"}}]}]}
            router = {"router_config_name": "bolt_router", "virtual_hosts": [{
                "name": "echo", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": SERVICE}]},
                             "route": {"cluster_name": "origin"}}]}]}
            server = {"default_log_level": "ERROR", "routers": [router], "listeners": [listener]}
        return {
            "servers": [server],
            "cluster_manager": {"clusters": [{
                "name": "origin", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": origin}]}]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        }

    def start_bolt_proxy(self, target: str, tag: str) -> base.Proxy:
        port, admin = self.port(), self.port()
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        origin = f"{ORIGIN_HOST}:{self.origin_port}"
        if target.startswith("mosn"):
            cf = d / "mosn.json"
            cf.write_text(json.dumps(self.mosn_config(target, port, admin, origin), indent=2))
            cmd = [self.a.mosn, "start", "-c", str(cf), "--workers", "1"]
            ready_admin = admin
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
    server origin {origin}
listen stats
    mode http
    bind 127.0.0.1:{admin}
    stats enable
    stats uri /stats
""")
            cmd = [_bin("haproxy"), "-db", "-f", str(cf)]
            ready_admin = 0
        else:
            raise ValueError(target)
        return self.launch_proxy(target, cf, cmd, port, admin, ready_admin, lp)

    # ---------------------------------------------------------------- counters
    def origin_counters(self) -> dict:
        try:
            with socket.create_connection((ORIGIN_HOST, self.stats_port), timeout=2) as s:
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            return json.loads(data.decode())
        except (OSError, ValueError):
            return {}

    def proxy_counters(self, target: str, proxy: base.Proxy) -> tuple[dict, str]:
        """(named counters of the proxy so far, raw text of its counters)."""
        if target.startswith("mosn"):
            code, text = base.http_get(proxy.admin, "/metrics")
            if code != 200:
                return {}, text
            vals = base.parse_prom(text)

            def get(name):
                hits = [v for k, v in vals.items()
                        if k.split("{", 1)[0] == name and f'listener="{LISTENER}"' in k]
                return int(sum(hits)) if hits else None

            return {"requests": get("mosn_listener_downstream_rq_total"),
                    "rpc_requests": get("mosn_rpc_requests_total"),
                    "conns": get("mosn_listener_connections_total"),
                    "bytes": get("mosn_listener_bytes_received_total"),
                    "kernel_spliced": get("mosn_listener_kernel_spliced_total"),
                    "userspace_copied": get("mosn_listener_userspace_copied_total")}, text
        if target == "haproxy":
            code, text = base.http_get(proxy.admin, "/stats;csv")
            if code != 200:
                return {}, text
            for r in csv.DictReader(io.StringIO(text.lstrip("# "))):
                if r.get("pxname") == "bench" and r.get("svname") == "FRONTEND":
                    try:
                        return {"conns": int(r.get("stot") or 0), "bytes": int(r.get("bin") or 0)}, text
                    except ValueError:
                        return {}, text
            return {}, text
        return {}, ""

    # ---------------------------------------------------------------- the load generator
    def run_load(self, wl: str, host: str, port: int, tag: str) -> tuple[dict, str]:
        w = base.WORKLOADS[wl]
        d = self.a.duration
        warm = max(0.0, self.a.rr_warmup)
        cmd = [self.a.bench_bin, "bolt-load", "--target", f"{host}:{port}", "--connections", str(w["conns"]),
               "--in-flight", str(self.a.bolt_in_flight), "--size", str(SIZE), "--duration", f"{d:g}",
               "--warmup", f"{warm:g}", "--json"]
        limit = d + warm + 30
        rc, j, note, se = self.client_output(["taskset", "-c", self.client_cpu, *cmd], limit, tag)
        res: dict = {"_rc": rc}
        res.update(value=j.get("rate", 0.0), rate=j.get("rate", ""), requests=j.get("requests", ""),
                   errors=j.get("errors", ""), p50_us=j.get("p50_us", ""), p90_us=j.get("p90_us", ""),
                   p99_us=j.get("p99_us", ""), p999_us=j.get("p999_us", ""), mean_us=j.get("mean_us", ""),
                   max_us=j.get("max_us", ""), sent_total=j.get("sent_total", ""),
                   responses_total=j.get("responses_total", ""), bytes_client=j.get("bytes_sent", ""),
                   in_flight=j.get("in_flight", self.a.bolt_in_flight))
        if j.get("errors_by_kind"):
            res["errors_by_kind"] = json.dumps(j["errors_by_kind"], separators=(",", ":"))
        if j.get("first_error"):
            note = f"first error: {j['first_error']}"
        if rc != 0 and not note:
            note = f"client exit {rc}: {se.strip()[-300:]}"
        return res, note

    # ---------------------------------------------------------------- one measurement
    def measure(self, rnd: int, wl: str, target: str) -> dict:
        w = base.WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "duration_s": self.a.duration, "in_flight": self.a.bolt_in_flight,
               "started_at": base.dt.datetime.now().isoformat(timespec="seconds")}
        proxy = None
        notes: list[str] = []
        try:
            self.ensure_origin()
            if target == "mosn-l7" and self.l7_refused:
                row.update(status="start_failed",
                           note=f"mosn refuses the Bolt L7 config (mosn validate): {self.l7_refused}"[:900])
                return row
            if target == "direct":
                host, port = ORIGIN_HOST, self.origin_port
            else:
                try:
                    proxy = self.start_bolt_proxy(target, tag)
                except base.StartFailed as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
                host, port = "127.0.0.1", proxy.port
            # one request first: status 0 with the origin's content and the request's id and tag
            ok, why, hb = check_exchange(host, port)
            row["response_check"] = "ok" if ok else why[:300]
            row["heartbeat_check"] = hb[:200]
            if not ok:
                if proxy and proxy.popen.poll() is not None:
                    why += f"; proxy exited ({proxy.popen.returncode}): {base.tail(proxy.log_path, 600)}"
                row.update(status="failed", note=f"no valid Bolt response through {target}: {why}"[:900])
                return row
            if hb != "ok":
                notes.append(f"heartbeat: {hb}")
            proxy_pids = base.proc_tree(proxy.popen.pid) if proxy else []
            other = [os.getpid(), self.origin.pid]
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            o0 = self.origin_counters()
            p0, t0 = self.proxy_counters(target, proxy) if proxy else ({}, "")
            s0 = self.snapshot(proxy_pids, other)
            ot0 = base.ticks_sum([self.origin.pid])
            res, note = self.run_load(wl, host, port, tag)
            s1 = self.snapshot(proxy_pids, other)
            ot1 = base.ticks_sum([self.origin.pid])
            if note:
                notes.append(note)
            row.update(self.cpu_figures(s0, s1))
            row["origin_cpu_pct"] = round((sum(ot1) - sum(ot0)) / base.HZ / max(row["wall_s"], 1e-3) * 100, 1)
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            time.sleep(0.3)  # let the proxy finish the connections' bookkeeping
            o1 = self.origin_counters()
            p1, t1 = self.proxy_counters(target, proxy) if proxy else ({}, "")
            if target.startswith("mosn"):
                mdir = self.raw / "mosn-metrics"
                (mdir / f"{tag}-before.prom").write_text(t0)
                (mdir / f"{tag}-after.prom").write_text(t1)
                b, a = base.parse_prom(t0), base.parse_prom(t1)
                delta = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0}
                (mdir / f"{tag}-delta.json").write_text(json.dumps(delta, indent=1, sort_keys=True))
                row["mosn_metrics_delta"] = json.dumps(
                    {k: delta[k] for k in sorted(delta) if MOSN_BOLT_METRIC_RE.search(k)}, separators=(",", ":"))
            elif target == "haproxy" and t1:
                (self.raw / "clients" / f"{tag}-haproxy-stats.csv").write_text(t1)
            if proxy and proxy.popen.poll() is not None:
                notes.append(f"proxy exited ({proxy.popen.returncode}) during run")

            def delta(a, b, k):
                return "" if a.get(k) is None or b.get(k) is None else b[k] - a[k]

            row["requests_origin"] = delta(o0, o1, "requests")
            row["origin_conns"] = delta(o0, o1, "connections")
            if target == "mosn-l7":
                # the listener's request counter; the per-service RPC counter if that one does not move
                rq, rpc = delta(p0, p1, "requests"), delta(p0, p1, "rpc_requests")
                if isinstance(rq, int) and rq > 0 or rpc == "":
                    row["requests_proxy"] = rq
                    row["proxy_counter"] = "mosn_listener_downstream_rq_total" if rq != "" else ""
                else:
                    row["requests_proxy"], row["proxy_counter"] = rpc, "mosn_rpc_requests_total"
            if proxy:
                row["proxy_conns"] = delta(p0, p1, "conns")
                row["bytes_proxy"] = delta(p0, p1, "bytes")
            if target.startswith("mosn-l4"):
                ks, uc = delta(p0, p1, "kernel_spliced"), delta(p0, p1, "userspace_copied")
                row["kernel_spliced"], row["userspace_copied"] = ks, uc
                row["l4_path"] = ("kernel" if ks == uc else "mixed") if isinstance(ks, int) and ks > 0 else \
                    ("userspace" if isinstance(uc, int) and uc > 0 else "?")
            rc = res.pop("_rc")
            row.update(res)
            row["value"] = round(row.get("value") or 0.0, 1)
            reqs = int(row.get("requests") or 0)
            errs = int(row.get("errors") or 0)
            if rc == 0 and row["value"] > 0 and errs == 0:
                row["status"] = "ok"
            elif row["value"] > 0 and errs <= MAX_ERROR_SHARE * max(reqs, 1):
                row["status"] = "errors"
            else:
                row["status"] = "failed"
                if row["value"] > 0:
                    notes.append(f"{errs} errors in {reqs} requests (> {MAX_ERROR_SHARE:.0%})")
            bad = check_proxied(target, row, w["conns"])
            row["proxy_check"] = "ok" if not bad else "FAILED: " + "; ".join(bad)
            if bad and row["status"] != "failed":
                row["status"] = "not_proxied"  # not a measurement of this path: no ratio
            return self.finish_row(row, proxy, "; ".join(notes))
        finally:
            self.stop(proxy.popen if proxy else None)

    def report(self, k, n, row) -> None:
        super().report(k, n, row)
        if row.get("status") in ("ok", "errors", "not_proxied"):
            extra = f", path {row['l4_path']}" if row.get("l4_path") else ""
            base.log(f"      counted: client sent {row.get('sent_total', '?')} / answered "
                     f"{row.get('responses_total', '?')}, proxy {row.get('requests_proxy') or '-'} requests "
                     f"{row.get('proxy_conns', '-')} conns, origin {row.get('requests_origin', '?')}{extra}; "
                     f"check {row.get('proxy_check', '?')}")


def check_proxied(target: str, row: dict, conns: int) -> list[str]:
    """Why this run is not a measurement of `target` carrying the client's requests (empty: it is)."""
    bad = []
    sent, got = row.get("sent_total"), row.get("responses_total")
    if not isinstance(got, int) or got <= 0 or not isinstance(sent, int):
        return bad  # nothing measured: the run is failed anyway
    lo, hi = int(got * (1 - COUNTER_TOLERANCE)), sent * (1 + COUNTER_TOLERANCE) + 1

    def within(what, v):
        if not isinstance(v, int):
            bad.append(f"no {what}")
        elif not lo <= v <= hi:
            bad.append(f"{what} is {v} for the client's {got} answered / {sent} sent")

    within("origin request count", row.get("requests_origin"))
    if target == "direct":
        return bad
    pc = row.get("proxy_conns")
    if not isinstance(pc, int):
        bad.append(f"no connection counter from {target}")
    elif pc < conns:
        bad.append(f"{target} accepted {pc} connections, the client opened >= {conns}")
    if target == "mosn-l7":
        within("mosn's downstream request count", row.get("requests_proxy"))
    bytes_client, bytes_proxy = row.get("bytes_client"), row.get("bytes_proxy")
    # mosn L4: bytes are counted in userspace only; a spliced connection's bytes are not
    check_bytes = target == "haproxy" or (target.startswith("mosn-l4") and row.get("l4_path") == "userspace")
    if check_bytes and isinstance(bytes_client, int) and bytes_client > 0:
        if not isinstance(bytes_proxy, int):
            bad.append(f"no byte counter from {target}")
        elif abs(bytes_proxy - bytes_client) > COUNTER_TOLERANCE * bytes_client:
            bad.append(f"{target} received {bytes_proxy} bytes, the client sent {bytes_client}")
    return bad


# =============================================================================================
# analysis (called from run.analyze)


def _per_round(rows, wl, t):
    return {r["round"]: base.fnum(r["value"]) for r in rows
            if r["workload"] == wl and r["target"] == t and r["status"] in ("ok", "errors")
            and (base.fnum(r["value"]) or 0) > 0}


def summary_extra(rows, rs, wl, t) -> dict:
    mine = _per_round(rows, wl, t)
    l4 = _per_round(rows, wl, "mosn-l4")
    over_l4 = [v / l4[k] for k, v in mine.items() if l4.get(k)]
    l4u = _per_round(rows, wl, "mosn-l4-userspace")
    over_l4u = [v / l4u[k] for k, v in mine.items() if l4u.get(k)]
    paths = sorted({r.get("l4_path") for r in rs if r.get("l4_path")})
    return {
        "p90_us_median": base.med(base.fnum(r.get("p90_us")) for r in rs),
        "p999_us_median": base.med(base.fnum(r.get("p999_us")) for r in rs),
        "p99_us_max": max((base.fnum(r.get("p99_us")) or 0) for r in rs),
        "origin_cpu_pct_median": base.med(base.fnum(r.get("origin_cpu_pct")) for r in rs),
        "over_l4_median": base.med(over_l4), "over_l4_min": min(over_l4) if over_l4 else None,
        "over_l4_max": max(over_l4) if over_l4 else None,
        "over_l4u_median": base.med(over_l4u), "over_l4u_min": min(over_l4u) if over_l4u else None,
        "over_l4u_max": max(over_l4u) if over_l4u else None,
        "responses_median": base.med(base.fnum(r.get("responses_total")) for r in rs),
        "requests_proxy_median": base.med(base.fnum(r.get("requests_proxy")) for r in rs),
        "requests_origin_median": base.med(base.fnum(r.get("requests_origin")) for r in rs),
        "proxy_conns_median": base.med(base.fnum(r.get("proxy_conns")) for r in rs),
        "l4_path": "/".join(paths),
        "invalid_rounds": sum(1 for r in rows if r["workload"] == wl and r["target"] == t
                              and r["status"] not in ("ok", "errors", "skipped")),
    }


def bolt_tables(summary, workloads, targets, by) -> list[str]:
    f = base.fmt
    out = ["Requests/s, L7/L4 (median of per-round mosn-l7 / mosn-l4 ... at the same concurrency), latency, "
           "CPU and what carried the requests (medians over rounds; p99 max = worst round):\n",
           "| workload | target | req/s | vs direct | vs mosn-l4 | p50 µs | p99 µs (max) | p99.9 µs | proxy CPU % "
           "| req/s per proxy core | answered / proxy / origin requests | proxy conns | L4 path | invalid runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        vd = "1" if s["target"] == "direct" else (
            "-" if s["ratio_median"] is None else f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})")
        vl4 = "-" if s["target"] in ("direct", "mosn-l4") or s.get("over_l4_median") is None else \
            f"{s['over_l4_median']:.2f} ({s['over_l4_min']:.2f}..{s['over_l4_max']:.2f})"
        out.append(
            f"| {s['workload']} | {s['target']} | {f(s['value_median'])} | {vd} | {vl4} | {f(s['p50_us_median'])} "
            f"| {f(s['p99_us_median'])} ({f(s['p99_us_max'])}) | {f(s['p999_us_median'])} "
            f"| {f(s['proxy_cpu_pct_median'])} | {f(s['value_per_proxy_core_median'])} "
            f"| {f(s['responses_median'])} / {f(s['requests_proxy_median'])} / {f(s['requests_origin_median'])} "
            f"| {f(s['proxy_conns_median'])} | {s.get('l4_path') or '-'} | {s['invalid_rounds']} |")
    out.append("")
    return out


def goal_lines(by, targets, workloads) -> list[str]:
    ref = "mosn-l4-userspace" in targets
    out = [f"Goal: mosn L7 (Bolt proxy) >= {GOAL_L7_OVER_L4} x mosn L4 (tcp_proxy, default fast path) at equal "
           "concurrency (median of per-round ratios):\n",
           "| workload | L4 path | L7 / L4 | result |" + (" L7 / L4 userspace (reference) |" if ref else ""),
           "|---|---|---|---|" + ("---|" if ref else "")]
    for wl in workloads:
        s = by.get((wl, "mosn-l7"))
        path = (by.get((wl, "mosn-l4")) or {}).get("l4_path") or "-"
        extra = ""
        if ref:
            u = s.get("over_l4u_median") if s else None
            extra = " - |" if u is None else f" {u:.2f} ({s['over_l4u_min']:.2f}..{s['over_l4u_max']:.2f}) |"
        if s and s.get("over_l4_median") is not None:
            ok = s["over_l4_median"] >= GOAL_L7_OVER_L4
            out.append(f"| {base.WORKLOADS[wl]['label']} | {path} | {s['over_l4_median']:.2f} "
                       f"({s['over_l4_min']:.2f}..{s['over_l4_max']:.2f}) | **{'met' if ok else 'not met'}** |"
                       + extra)
        else:
            why = "no valid mosn-l7 run" if not (s and s.get("value_median")) else "no valid mosn-l4 run"
            out.append(f"| {base.WORKLOADS[wl]['label']} | {path} | - ({why}) | **not met** |" + extra)
    return out


def no_summary(rows, meta) -> None:
    wls = [w for w in base.BOLT_WORKLOADS if any(r["workload"] == w for r in rows)] or base.BOLT_WORKLOADS
    print("\n" + "\n".join(goal_lines({}, [], wls)) + "\n")
