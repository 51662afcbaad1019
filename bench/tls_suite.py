"""`--suite tls` of bench/run.py: TLS termination through mosn, HAProxy and nginx vs the same
clients straight to a TLS origin, in the same run, interleaved (split layout: load generator and
origins on CPU0, the proxy with one worker on CPU1).

Everywhere the same TLS: 1.3 only, TLS_AES_128_GCM_SHA256, key exchange on P-256, an ECDSA P-256
server certificate issued by a CA made with `openssl` for every run (OUT/certs; no shipped keys).

Workloads:
* `handshakes-full`: `mosn-bench tls-handshakes` (tls.rs): 32 loops of connect, full TLS 1.3
  handshake, one HTTP/1.1 GET (keep-alive), close_notify, close. Figure: handshakes/s and
  handshakes per TLS-terminator core (= handshakes / its CPU seconds, /proc/PID/stat).
* `handshakes-resumed`: the same with `--resume` (each loop resumes its previous connection's
  TLS 1.3 ticket); a run where under half of the handshakes resumed is `not_resumed` (no figure).
* `https-keepalive`: `wrk -t1 -c50` over TLS, 100-byte body. Proxies forward plain HTTP/1.1 to an
  nginx origin; direct is wrk to the same nginx's TLS server (same body, same TLS settings).
* `h2-tls`: `h2load -c 8 -m 8` over TLS (ALPN h2), GET /, 100-byte body. Proxies forward to
  `mosn-bench h2-origin` (h2c; nginx: HTTP/1.1 to the same port, it cannot proxy h2 except
  grpc_pass); direct is h2load to that origin's own TLS listener (rustls).
* `idle-memory`: `mosn-bench tls-idle` opens 2,000 TLS connections through the proxy, one request
  on each, then leaves them idle; figure: the proxy's RSS growth / connections (KB per connection),
  from a proxy started fresh for the measurement and warmed with 64 connections first.

Every run is checked before (one request through the path: TLS 1.3, the cipher, certificate
verified against the run's CA for `localhost`, 200 with the origin's body and header) and after
(the origin's and the proxy's request counters grew by >= 99 % of what the client completed, else
`not_proxied`). Everything not TLS-specific is run.py's, http_suite's and h2_suite's.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path

import h2_suite as h2s
import http_suite as hs
import run as base

ORIGIN_HOST = "127.0.0.2"
SNI = "localhost"
CIPHER = "TLS_AES_128_GCM_SHA256"
HS_CONCURRENCY = 32
IDLE_CONNS, IDLE_CONCURRENCY, IDLE_WARM = 2000, 50, 64
H2_CONNS, H2_STREAMS = h2s.CONNS, h2s.STREAMS
LISTENER = "http"  # mosn's listener name (http_suite.proxy_counter reads its counter by it)
RESUMED_MIN_SHARE = 0.5

# Goals
GOAL_HS_PER_CORE = 3000.0  # full handshakes per mosn core
GOAL_KEEPALIVE = 0.90  # https-keepalive, mosn / direct
GOAL_H2 = 0.95  # h2-tls, mosn / direct

HS_WORKLOADS = ("handshakes-full", "handshakes-resumed")
H1_UP = {"direct": "-", "mosn": "HTTP/1.1", "haproxy": "HTTP/1.1", "nginx": "HTTP/1.1"}
UPSTREAM = {"handshakes-full": H1_UP, "handshakes-resumed": H1_UP, "https-keepalive": H1_UP,
            "h2-tls": {"direct": "-", "mosn": "h2c", "haproxy": "h2c", "nginx": "HTTP/1.1"},
            "idle-memory": {k: v for k, v in H1_UP.items() if k != "direct"}}
DOWNSTREAM = {"h2-tls": "h2 (TLS)"}

TLS_FIELDS = hs.HTTP_FIELDS + [
    "requests_client", "ops_total", "upstream_proto", "tls_cpu_pct", "cpu_us_per_op", "per_tls_core",
    "resumed", "resumed_share", "proxy_tls_handshakes", "proxy_tls_resumed", "proxy_rss_start_kb", "proxy_rss_kb",
    "idle_conns", "kb_per_conn", "conns",
]


def ensure_packages(targets: list[str]) -> None:
    """h2_suite's (wrk, nginx-light, haproxy, h2load); openssl for the certificates."""
    h2s.ensure_packages(targets)
    if not base.have("openssl"):
        base.apt_install(["openssl"])


def make_certs(d: Path) -> dict[str, Path]:
    """A P-256 CA and a P-256 server certificate for localhost, 127.0.0.1 and 127.0.0.2."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args):
        r = base.run_cmd(["openssl", *args], timeout=60, cwd=d)
        if r.returncode != 0:
            raise SystemExit(f"openssl {' '.join(args)} failed: {r.stderr.strip()[-500:]}")

    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    ossl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "7", "-subj", "/CN=mosn-bench tls suite CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-out", "ca.pem")
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server-sec1.key")
    ossl("pkcs8", "-topk8", "-nocrypt", "-in", "server-sec1.key", "-out", "server.key")
    ossl("req", "-new", "-key", "server.key", "-subj", f"/CN={SNI}", "-out", "server.csr")
    (d / "server.ext").write_text(f"subjectAltName=DNS:{SNI},IP:127.0.0.1,IP:{ORIGIN_HOST}\n"
                                  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "7",
         "-sha256", "-extfile", "server.ext", "-out", "server.pem")
    (d / "haproxy.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    for k in ("ca.key", "server-sec1.key", "server.key", "haproxy.pem"):
        os.chmod(d / k, 0o600)
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key", "bundle": d / "haproxy.pem"}


def tls_get(host: str, port: int, ca: Path) -> tuple[bool, str]:
    """One GET / over TLS 1.3 (certificate verified for SNI against `ca`): a 200 with the
    origin's body and header, TLS 1.3 with CIPHER; else (False, why)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    data = b""
    try:
        with socket.create_connection((host, port), timeout=3) as raw, \
                ctx.wrap_socket(raw, server_hostname=SNI) as s:
            version, cipher = s.version(), s.cipher()[0]
            s.sendall(f"GET / HTTP/1.1\r\nHost: {SNI}\r\nConnection: close\r\n\r\n".encode())
            while len(data) < 1 << 20:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not chunk:
                    break
                data += chunk
    except (OSError, ssl.SSLError) as e:
        return False, f"TLS GET / failed: {type(e).__name__}: {e}"
    if version != "TLSv1.3" or cipher != CIPHER:
        return False, f"negotiated {version} {cipher}, not TLSv1.3 {CIPHER}"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if len(lines[0].split()) < 2 or lines[0].split()[1] != "200":
        return False, f"TLS GET / answered {lines[0][:80]!r}"
    if "chunked" in hdrs.get("transfer-encoding", ""):
        body = dechunk(body)
    if body != hs.BODY.encode():
        return False, f"TLS GET / body is {len(body)} bytes, not the origin's {len(hs.BODY)}: {body[:60]!r}"
    if hs.ORIGIN_HEADER.lower() not in hdrs:
        return False, f"TLS GET / has no {hs.ORIGIN_HEADER} header (did it reach the origin?)"
    return True, ""


def dechunk(b: bytes) -> bytes:
    out = b""
    while b:
        size, _, rest = b.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out, b = out + rest[:n], rest[n + 2:]
    return out


class TlsRunner(h2s.H2Runner):
    def __init__(self, args):
        super().__init__(args)
        self.rows_fields = TLS_FIELDS
        self.certs = make_certs(Path(args.out) / "certs")
        self.origin_tls_port = 0
        self.h2_tls_port = 0

    def applies(self, wl: str, target: str) -> bool:
        return target in UPSTREAM.get(wl, {})

    def extra_meta(self) -> dict:
        m = hs.HttpRunner.extra_meta(self)
        commit = base.run_cmd(["git", "-C", str(base.ROOT), "rev-parse", "--short", "HEAD"], timeout=10).stdout.strip()
        dirty = base.run_cmd(["git", "-C", str(base.ROOT), "status", "--porcelain", "--untracked-files=no"],
                             timeout=10).stdout.strip()
        m.update(suite="tls", commit=commit + ("-dirty" if dirty else ""), run_id=Path(self.a.out).name,
                 h2_origin_host=ORIGIN_HOST, tls="TLSv1.3 " + CIPHER + " P-256, ECDSA P-256 certificate",
                 hs_concurrency=HS_CONCURRENCY, idle_conns=IDLE_CONNS, h2_conns=H2_CONNS, h2_streams=H2_STREAMS,
                 h2load=hs._version(["h2load", "--version"]), openssl=hs._version(["openssl", "version"]),
                 mosn_refused=self.refused, upstream=UPSTREAM, certs=str(self.certs["cert"].parent))
        return m

    # ---------------------------------------------------------------- set-up
    def preflight(self) -> None:
        for tool in ("wrk", "h2load", "nginx"):
            if not base.have(tool):
                raise SystemExit(f"--suite tls needs {tool}")
        for t in self.a.targets:
            if t == "mosn":
                m = self.a.mosn
                if not m or not os.path.isfile(m) or not os.access(m, os.X_OK):
                    self.skipped[t] = f"mosn binary not found at {m}"
            elif t == "haproxy" and not base.have("haproxy"):
                self.skipped[t] = "haproxy not installed"
        for t, why in self.skipped.items():
            base.warn(f"skipping {t}: {why}")
        if "mosn" in self.a.targets and "mosn" not in self.skipped:
            d = self.tmp / "validate"
            d.mkdir(parents=True, exist_ok=True)
            for wl in ("https-keepalive", "h2-tls"):
                cf = d / f"mosn-{wl}.json"
                cf.write_text(json.dumps(self.mosn_config(wl, 1, 2), indent=2))
                r = base.run_cmd([self.a.mosn, "validate", "-c", str(cf)], timeout=30)
                if r.returncode != 0:
                    self.refused["mosn"] = f"{wl} config: " + (((r.stderr or "") + (r.stdout or "")).strip()
                                                                .replace("\n", " | ")[-600:] or f"exit {r.returncode}")
                    base.warn(f"mosn refuses its TLS config (FAILED in every run): {self.refused['mosn']}")
                    break
        self.ensure_origin()
        if "h2-tls" in self.a.workloads:
            self.ensure_h2_origin()

    def ensure_origin(self) -> None:
        """nginx (one worker, CPU0): the plain HTTP/1.1 origin behind the proxies and, with the same
        body, header and counters, the TLS server of the direct runs."""
        if self.origin is not None and self.origin.poll() is None:
            return
        if self.origin is not None:
            base.warn(f"origin nginx died ({self.origin.returncode}); restarting")
        self.origin_port, self.origin_tls_port = self.port(), self.port()
        d = self.tmp / "origin"
        d.mkdir(parents=True, exist_ok=True)
        loc = (f"location = /origin-status {{ stub_status; }}\n        location / {{ add_header {hs.ORIGIN_HEADER} "
               f"nginx-origin; return 200 {json.dumps(hs.BODY)}; }}")
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
        {loc}
    }}
    server {{
        listen {ORIGIN_HOST}:{self.origin_tls_port} ssl backlog=8192;
{self.nginx_tls()}
        {loc}
    }}
}}
""")
        import shutil

        shutil.copy(cf, self.raw / "configs" / "origin-nginx.conf")
        lp = self.raw / "logs" / "origin-nginx.log"
        self.origin = self.spawn([hs._bin("nginx"), "-p", str(d), "-c", str(cf), "-e", str(d / "error.log")],
                                 self.client_cpu, lp)
        try:
            self.wait_listen(self.origin_port, self.origin, lp, "origin nginx")
            self.wait_listen(self.origin_tls_port, self.origin, lp, "origin nginx (TLS)")
        except base.StartFailed as e:
            raise SystemExit(f"the origin did not start: {e} {base.tail(d / 'error.log')}")
        ok, why, _ = hs.check_response(ORIGIN_HOST, self.origin_port)
        ok2, why2 = tls_get(ORIGIN_HOST, self.origin_tls_port, self.certs["ca"])
        if not (ok and ok2):
            raise SystemExit(f"the origin does not answer as expected: {why} {why2}")

    def nginx_tls(self) -> str:
        return (f"        ssl_certificate {self.certs['cert']};\n        ssl_certificate_key {self.certs['key']};\n"
                f"        ssl_protocols TLSv1.3;\n        ssl_ecdh_curve prime256v1;\n"
                f"        ssl_conf_command Ciphersuites {CIPHER};\n        ssl_session_tickets on;")

    def ensure_h2_origin(self) -> None:
        if self.h2 is not None and self.h2.poll() is None:
            return
        if self.h2 is not None:
            base.warn(f"h2 origin died ({self.h2.returncode}); restarting")
        self.h2_port, self.h2_tls_port = self.port(), self.port()
        lp = self.raw / "logs" / "origin-h2.log"
        bound = int(getattr(self, "time_budget", 3600) * 3 + 900)
        self.h2 = self.spawn([self.a.bench_bin, "h2-origin", "--listen", f"{ORIGIN_HOST}:{self.h2_port}",
                              "--body-size", str(h2s.BODY_SIZE), "--max-seconds", str(bound),
                              "--tls-listen", f"{ORIGIN_HOST}:{self.h2_tls_port}", "--tls-cert",
                              str(self.certs["cert"]), "--tls-key", str(self.certs["key"])], self.client_cpu, lp)
        try:
            self.wait_listen(self.h2_port, self.h2, lp, "h2 origin")
            self.wait_listen(self.h2_tls_port, self.h2, lp, "h2 origin (TLS)")
        except base.StartFailed as e:
            raise SystemExit(f"the h2 origin did not start: {e}")
        for tls in (False, True):
            ok, why = self.h2_check(ORIGIN_HOST, self.h2_tls_port if tls else self.h2_port, False, tls)
            if not ok:
                raise SystemExit(f"the h2 origin does not answer as expected (tls={tls}): {why}")

    def h2_check(self, host: str, port: int, grpc: bool, tls: bool = True) -> tuple[bool, str]:
        cmd = [self.a.bench_bin, "h2-check", "--target", f"{host}:{port}", "--body-size", str(h2s.BODY_SIZE)]
        if tls:
            cmd += ["--tls", "--ca", str(self.certs["ca"]), "--sni", SNI]
        rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], 20)
        try:
            j = json.loads(so)
        except ValueError:
            return False, f"h2-check exit {rc}: {(so + se).strip()[-300:]}"
        return bool(j.get("ok")), str(j.get("error") or "")

    # ---------------------------------------------------------------- proxies
    def mosn_config(self, wl: str, port: int, admin: int) -> dict:
        h2 = wl == "h2-tls"
        origin = f"{ORIGIN_HOST}:{(self.h2_port if h2 else self.origin_port) or 3}"
        return {
            "servers": [{
                "default_log_level": "ERROR",
                "routers": [{"router_config_name": "r", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "origin"}}]}]}],
                "listeners": [{
                    "name": LISTENER, "address": f"127.0.0.1:{port}", "bind_port": True,
                    "filter_chains": [{
                        "tls_context": {"status": True, "cert_chain": str(self.certs["cert"]),
                                        "private_key": str(self.certs["key"]), "min_version": "TLS1.3",
                                        "cipher_suites": CIPHER, "ecdh_curves": "P-256", "alpn": ["h2", "http/1.1"]},
                        "filters": [{"type": "proxy", "config": {
                            "downstream_protocol": "Auto", "upstream_protocol": "Http2" if h2 else "Http1",
                            "router_config_name": "r"}}]}]}],
            }],
            "cluster_manager": {"clusters": [{
                "name": "origin", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": origin}]}]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        }

    def start_tls_proxy(self, target: str, wl: str, tag: str) -> base.Proxy:
        port, admin = self.port(), self.port()
        lp = self.raw / "logs" / f"{tag}.log"
        d = self.tmp / tag
        d.mkdir(parents=True, exist_ok=True)
        h2 = wl == "h2-tls"
        origin = f"{ORIGIN_HOST}:{self.h2_port if h2 else self.origin_port}"
        error_log = None
        if target == "mosn":
            cf = d / "mosn.json"
            cf.write_text(json.dumps(self.mosn_config(wl, port, admin), indent=2))
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
    bind 127.0.0.1:{port} ssl crt {self.certs['bundle']} ssl-min-ver TLSv1.3 ciphersuites {CIPHER} curves P-256 alpn h2,http/1.1
    default_backend origin
backend origin
    http-reuse always
    server origin {origin}{' proto h2' if h2 else ''}
listen stats
    bind 127.0.0.1:{admin}
    stats enable
    stats uri /stats
""")
            cmd, ready = [hs._bin("haproxy"), "-db", "-f", str(cf)], 0
        elif target == "nginx":
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
        listen 127.0.0.1:{port} ssl{' http2' if h2 else ''} backlog=8192;
{self.nginx_tls()}
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
            cmd, ready = [hs._bin("nginx"), "-p", str(d), "-c", str(cf), "-e", str(error_log)], 0
        else:
            raise ValueError(target)
        return self.launch_proxy(f"{target}-{wl}", cf, cmd, port, admin, ready, lp, error_log)

    # ---------------------------------------------------------------- load generators
    def run_load(self, wl: str, host: str, port: int, tag: str, duration: int, save=True) -> tuple[dict, str]:
        if wl in HS_WORKLOADS:
            cmd = [self.a.bench_bin, "tls-handshakes", "--target", f"{host}:{port}", "--duration", str(duration),
                   "--concurrency", str(HS_CONCURRENCY), "--sni", SNI, "--warmup", f"{self.a.rr_warmup:g}"]
            if wl == "handshakes-resumed":
                cmd.append("--resume")
            rc, j, note, se = self.client_output(["taskset", "-c", self.client_cpu, *cmd],
                                                 duration + self.a.rr_warmup + 20, tag)
            hsn = int(j.get("handshakes") or 0)
            res = {"_rc": rc, "value": j.get("rate", 0.0), "rate": j.get("rate", ""), "requests": hsn,
                   "requests_client": hsn, "ops_total": j.get("ok_total", ""), "errors": j.get("errors", 1),
                   "resumed": j.get("resumed", ""), "resumed_share": round(j["resumed"] / hsn, 3) if hsn else "",
                   **{k: j.get(k, "") for k in ("p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "max_us")}}
            if j.get("first_error"):
                note = (note + "; " if note else "") + f"first error: {j['first_error']}"
            if rc != 0 and not note:
                note = f"client exit {rc}: {se.strip()[-300:]}"
            return res, note
        if wl == "h2-tls":
            logf = self.tmp / f"{tag}.h2load.log"
            cmd = ["h2load", "-t", "1", "-c", str(H2_CONNS), "-m", str(H2_STREAMS), "-D", str(duration),
                   f"--tls13-ciphers={CIPHER}", "--groups=P-256", "--npn-list=h2", "--log-file", str(logf),
                   f"https://{host}:{port}/"]
            rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], duration + 30)
            if save:
                (self.raw / "clients" / f"{tag}.txt").write_text(f"$ {' '.join(cmd)}\n{so}{se}")
            res, note = h2s.parse_h2load(so, se, rc, logf)
            logf.unlink(missing_ok=True)
            res["ops_total"] = res.get("requests_client", "")
            return res, note
        # https-keepalive: wrk over TLS (OpenSSL defaults; the servers allow only TLS 1.3/CIPHER/P-256)
        cmd = ["wrk", "-t1", f"-c{hs.CONNS}", f"-d{duration}s", "--latency", "--timeout", "5s", "-s", str(self.lua),
               f"https://{host}:{port}/"]
        rc, so, se = base.run_bounded(["taskset", "-c", self.client_cpu, *cmd], duration + 30)
        if save:
            (self.raw / "clients" / f"{tag}.txt").write_text(f"$ {' '.join(cmd)}\n{so}{se}")
        res, note = hs.parse_wrk(so, se, rc)
        res["requests_client"] = res["ops_total"] = res.get("requests_wrk", 0)
        return res, note

    def origin_counters(self, h2: bool) -> tuple[int | None, int | None]:
        """(requests, connections) of the origin so far, minus nothing (deltas subtract the query)."""
        if h2:
            o = self.origin_stats()
            return (o.get("requests"), o.get("connections")) if o else (None, None)
        return hs.stub_status(ORIGIN_HOST, self.origin_port, "/origin-status")

    # ---------------------------------------------------------------- one measurement
    def measure(self, rnd: int, wl: str, target: str) -> dict:
        w = base.WORKLOADS[wl]
        tag = f"r{rnd}-{wl}-{target}"
        dur = max(1, int(math.ceil(self.a.duration)))
        row = {"round": rnd, "workload": wl, "target": target, "layout": self.a.layout, "unit": w["unit"],
               "started_at": base.dt.datetime.now().isoformat(timespec="seconds"), "duration_s": dur,
               "conns": w["conns"], "upstream_proto": UPSTREAM[wl].get(target, "")}
        proxy = None
        notes: list[str] = []
        h2 = wl == "h2-tls"
        try:
            self.ensure_origin()
            if h2:
                self.ensure_h2_origin()
            if target in self.refused:
                row.update(status="start_failed", note=f"mosn refuses the config (mosn validate): "
                                                       f"{self.refused[target]}"[:900])
                return row
            if target == "direct":
                host, port = ORIGIN_HOST, (self.h2_tls_port if h2 else self.origin_tls_port)
            else:
                try:
                    proxy = self.start_tls_proxy(target, wl, tag)
                except base.StartFailed as e:
                    row.update(status="start_failed", note=str(e)[-600:].replace("\n", " | "))
                    return row
                host, port = "127.0.0.1", proxy.port
            ok, why = self.h2_check(host, port, False) if h2 else tls_get(host, port, self.certs["ca"])
            row["response_check"] = "ok" if ok else why[:300]
            if not ok:
                if proxy and proxy.popen.poll() is not None:
                    why += f"; proxy exited ({proxy.popen.returncode}): {base.tail(proxy.log_path, 600)}"
                row.update(status="failed", note=f"no valid response through {target}: {why}"[:900])
                return row
            proxy_pids = base.proc_tree(proxy.popen.pid) if proxy else []
            if wl == "idle-memory":
                return self.measure_idle(row, tag, port, proxy, proxy_pids)
            if self.a.rr_warmup > 0 and wl not in HS_WORKLOADS:  # handshakes: warm-up inside the client
                self.run_load(wl, host, port, tag + "-warmup", 1, save=False)
            origin_pids = [self.h2.pid] if h2 else base.proc_tree(self.origin.pid)
            other = [os.getpid()] + origin_pids
            noise, waited, quiet = self.wait_quiet(proxy_pids + other)
            row.update(noise_before_pct=round(noise, 1), quiet_wait_s=round(waited, 1), quiet_reached=int(quiet))
            o_req0, o_conn0 = self.origin_counters(h2)
            p_req0, p_text0 = self.proxy_counter(target, proxy) if proxy else (None, "")
            row["proxy_rss_start_kb"] = h2s.rss_kb(proxy_pids) if proxy else ""
            s0 = self.snapshot(proxy_pids, other)
            o_ticks0 = base.ticks_sum(origin_pids)
            res, note = self.run_load(wl, host, port, tag, dur)
            s1 = self.snapshot(proxy_pids, other)
            o_ticks1 = base.ticks_sum(origin_pids)
            if note:
                notes.append(note)
            row.update(self.cpu_figures(s0, s1))
            row["origin_cpu_pct"] = round((sum(o_ticks1) - sum(o_ticks0)) / base.HZ / max(row["wall_s"], 1e-3) * 100, 1)
            row["proxy_pids"] = " ".join(map(str, proxy_pids))
            if proxy:
                row["proxy_rss_kb"] = h2s.rss_kb(proxy_pids)
            time.sleep(0.2)
            o_req1, o_conn1 = self.origin_counters(h2)
            p_req1, p_text1 = self.proxy_counter(target, proxy) if proxy else (None, "")
            self.keep_counters(target, tag, p_text0, p_text1, row)
            if proxy and proxy.popen.poll() is not None:
                notes.append(f"proxy exited ({proxy.popen.returncode}) during run")
            row["requests_origin"] = hs._delta(o_req0, o_req1, 0 if h2 else 1)
            row["origin_conns"] = hs._delta(o_conn0, o_conn1, 1)
            if proxy:
                row["requests_proxy"] = hs._delta(p_req0, p_req1, 1 if target == "nginx" else 0)
            rc = res.pop("_rc")
            row.update(res)
            row["value"] = round(row.get("value") or 0.0, 1)
            self.judge(row, rc, target, wl, notes)
            # CPU of whoever terminated TLS (the proxy; direct: the origin) per operation in the window
            tls_pct = row.get("proxy_cpu_pct") if proxy else row.get("origin_cpu_pct")
            ops = base.fnum(row.get("ops_total"))
            if tls_pct and ops:
                row["tls_cpu_pct"] = tls_pct
                row["cpu_us_per_op"] = round(tls_pct / 100 * row["wall_s"] / ops * 1e6, 2)
                row["per_tls_core"] = round(1e6 / row["cpu_us_per_op"]) if row["cpu_us_per_op"] else ""
            return self.finish_row(row, proxy, "; ".join(notes))
        finally:
            self.stop(proxy.popen if proxy else None)

    def judge(self, row: dict, rc: int, target: str, wl: str, notes: list[str]) -> None:
        reqs = int(row.get("requests_client") or 0)
        errs = int(base.fnum(row.get("errors")) or 0)
        if rc == 0 and row["value"] > 0 and errs == 0:
            row["status"] = "ok"
        elif row["value"] > 0 and errs <= hs.MAX_ERROR_SHARE * max(reqs, 1):
            row["status"] = "errors"
        else:
            row["status"] = "failed"
            if row["value"] > 0:
                notes.append(f"{errs} errors in {reqs} (> {hs.MAX_ERROR_SHARE:.0%})")
        bad = hs.check_proxied(target, {**row, "requests_wrk": reqs})
        tls_n = row.get("proxy_tls_handshakes")
        if wl in HS_WORKLOADS and target == "mosn" and isinstance(tls_n, int) and tls_n < reqs * hs.COUNTER_MIN_SHARE:
            bad.append(f"mosn counted {tls_n} TLS handshakes for the client's {reqs}")
        row["proxy_check"] = "ok" if not bad else "FAILED: " + "; ".join(bad)
        if bad and row["status"] != "failed":
            row["status"] = "not_proxied"
        share = base.fnum(row.get("resumed_share"))
        if wl == "handshakes-resumed" and row["status"] in ("ok", "errors") and (share or 0) < RESUMED_MIN_SHARE:
            row["status"] = "not_resumed"
            notes.append(f"only {share} of the handshakes resumed (no usable TLS 1.3 tickets?)")

    def keep_counters(self, target: str, tag: str, before: str, after: str, row: dict) -> None:
        if target == "mosn":
            self.save_mosn_metrics(tag, before, after, row)
            b, a = base.parse_prom(before), base.parse_prom(after)
            tls = {k: v - b.get(k, 0.0) for k, v in a.items() if k.startswith("mosn_tls_") and "expiry" not in k}
            hs_all = [v for k, v in tls.items() if k.startswith("mosn_tls_handshakes_total")]
            if hs_all:  # mosn's own count of the handshakes it did (and resumed)
                row["proxy_tls_handshakes"] = int(sum(hs_all))
                row["proxy_tls_resumed"] = int(sum(v for k, v in tls.items()
                                                   if k.startswith("mosn_tls_handshakes_total") and 'resumed="true"' in k))
            delta = json.loads(row.get("mosn_metrics_delta") or "{}")
            delta.update({k: v for k, v in tls.items() if v})
            row["mosn_metrics_delta"] = json.dumps(delta, separators=(",", ":"), sort_keys=True)
        elif target == "haproxy" and after:
            (self.raw / "clients" / f"{tag}-haproxy-stats.csv").write_text(after)

    def finish_row(self, row: dict, proxy, note: str, digits: int | None = None) -> dict:
        """run.py's, and a run during which the host took the vCPUs (steal above the quiet
        threshold) counts as disturbed too: seen here at 75-80 % of a CPU for whole runs, with
        nothing running inside the VM, halving the rate."""
        row = super().finish_row(row, proxy, note, digits)
        st = base.fnum(row.get("steal_pct")) or 0.0
        if st > self.a.quiet_threshold:
            row["disturbed"] = 1
            row["note"] = (row["note"] + " | " if row["note"] else "") + f"steal {st:g}% of a CPU"
        return row

    def report(self, k, n, row) -> None:
        super().report(k, n, row)
        if row.get("proxy_tls_handshakes") not in (None, ""):
            base.log(f"      mosn's TLS handshakes: {row['proxy_tls_handshakes']} ({row.get('proxy_tls_resumed')} "
                     f"resumed); client: {row.get('resumed', '-')} resumed")

    def measure_idle(self, row: dict, tag: str, port: int, proxy: base.Proxy, pids: list[int]) -> dict:
        """RSS growth of a fresh, warmed proxy per idle TLS connection (IDLE_CONNS of them)."""
        notes = []
        target = row["target"]
        base_cmd = [self.a.bench_bin, "tls-idle", "--target", f"127.0.0.1:{port}", "--sni", SNI,
                    "--concurrency", str(IDLE_CONCURRENCY)]
        # warm-up: IDLE_WARM connections opened, used and closed (first-use allocations, pools)
        base.run_bounded(["taskset", "-c", self.client_cpu, *base_cmd, "--conns", str(IDLE_WARM), "--hold", "0"], 60)
        time.sleep(0.5)
        rss0 = h2s.rss_kb(pids)
        o_req0, _ = self.origin_counters(False)
        p_req0, p_text0 = self.proxy_counter(target, proxy)
        argv = ["taskset", "-c", self.client_cpu, *base_cmd, "--conns", str(IDLE_CONNS), "--hold", "120"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = ""
        try:
            if select.select([p.stdout], [], [], 150)[0]:
                line = p.stdout.readline()
            time.sleep(1.0)  # let the proxy settle after the last request
            rss1 = h2s.rss_kb(pids)
            o_req1, _ = self.origin_counters(False)
            p_req1, p_text1 = self.proxy_counter(target, proxy)
        finally:
            p.kill()
            _, se = p.communicate(timeout=10)
        (self.raw / "clients" / f"{tag}.json").write_text(line + se)
        try:
            j = json.loads(line)
        except ValueError:
            j = {}
            notes.append(f"no output from tls-idle: {se.strip()[-300:]}")
        self.keep_counters(target, tag, p_text0, p_text1, row)
        n = int(j.get("established") or 0)
        row.update(proxy_rss_start_kb=rss0, proxy_rss_kb=rss1, idle_conns=n, requests_client=n,
                   errors=j.get("errors", 1), requests_origin=hs._delta(o_req0, o_req1, 1),
                   requests_proxy=hs._delta(p_req0, p_req1, 1 if target == "nginx" else 0),
                   proxy_pids=" ".join(map(str, pids)))
        if j.get("first_error"):
            notes.append(f"first error: {j['first_error']}")
        if proxy.popen.poll() is not None:
            notes.append(f"proxy exited ({proxy.popen.returncode})")
        row["kb_per_conn"] = round((rss1 - rss0) / n, 2) if n else ""
        row["value"] = row["kb_per_conn"] if n and rss1 > rss0 else 0.0
        if n and rss1 <= rss0:
            notes.append(f"RSS did not grow ({rss0} -> {rss1} KiB)")
        self.judge(row, 0 if n >= IDLE_CONNS * 0.99 else 1, target, "idle-memory", notes)
        return self.finish_row(row, proxy, "; ".join(notes), 2)


# =============================================================================================
# analysis (called from run.analyze)


def summary_extra(rows, rs, wl, t) -> dict:
    s = hs.summary_extra(rows, rs, wl, t)
    for k in ("tls_cpu_pct", "cpu_us_per_op", "per_tls_core", "resumed_share", "client_cpu_pct", "proxy_rss_kb",
              "proxy_rss_start_kb", "kb_per_conn", "idle_conns", "requests_client"):
        s[f"{k}_median"] = base.med(base.fnum(r.get(k)) for r in rs)
    kb = [base.fnum(r.get("kb_per_conn")) for r in rs if base.fnum(r.get("kb_per_conn")) is not None]
    s["kb_per_conn_min"], s["kb_per_conn_max"] = (min(kb), max(kb)) if kb else (None, None)
    s["upstream_proto"] = next((r.get("upstream_proto") for r in rs if r.get("upstream_proto")), "")
    return s


def tls_tables(summary, workloads, targets, by, meta) -> list[str]:
    f = base.fmt
    v = meta.get("versions") or {}
    out = [f"Run {meta.get('run_id', '?')} started {meta.get('started', '?')}, bench commit {meta.get('commit', '?')}; "
           f"mosn: {v.get('mosn') or '-'}; {v.get('haproxy') or '-'}; {v.get('nginx') or '-'}; "
           f"{meta.get('openssl') or ''}. TLS everywhere: {meta.get('tls', '?')}.\n",
           "Per workload and target (medians over rounds). TLS CPU = CPU of the process that terminated TLS (the "
           "proxy; for direct the origin: nginx, or h2-origin for h2-tls) over the run; CPU µs/op = its CPU time per "
           "handshake or request (warm-up included on both sides); per TLS core = operations per second of its CPU "
           "(for the handshake workloads: handshakes per proxy core); client CPU = the load generator (CPU0, shared "
           "with the origin); * = a round was disturbed (other load, or the host's steal above the quiet threshold).\n",
           "| workload | target | up | rate | ratio (min..max) | p50 / p99 µs | TLS CPU % | CPU µs/op | per TLS core "
           "| client CPU % | resumed | requests client / proxy / origin | invalid |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if s["workload"] == "idle-memory":
            continue
        ratio = "-" if s["ratio_median"] is None else \
            f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})" \
            + (" *" if s["disturbed_rounds"] else "")
        res = s.get("resumed_share_median")
        out.append(
            f"| {s['workload']} | {s['target']} | {s.get('upstream_proto') or '-'} | {f(s['value_median'])} {s['unit']} "
            f"| {ratio} | {f(s['p50_us_median'])} / {f(s['p99_us_median'])} | {f(s.get('tls_cpu_pct_median'))} "
            f"| {f(s.get('cpu_us_per_op_median'))} | {f(s.get('per_tls_core_median'))} "
            f"| {f(s.get('client_cpu_pct_median'))} | {'-' if res is None else f'{res:.0%}'} "
            f"| {f(s.get('requests_client_median'))} / {f(s['requests_proxy_median'])} / "
            f"{f(s['requests_origin_median'])} | {s['invalid_rounds']} |")
    idle = [s for s in summary if s["workload"] == "idle-memory"]
    if idle:
        out += ["", f"Memory per idle TLS connection ({IDLE_CONNS} connections, one request each, then idle; RSS of "
                    f"the proxy's processes, fresh per measurement, warmed with {IDLE_WARM} connections):\n",
                "| target | connections | RSS before MiB | RSS with them MiB | KB per connection (min..max) | invalid |",
                "|---|---|---|---|---|---|"]
        for s in idle:
            r0, r1 = s.get("proxy_rss_start_kb_median"), s.get("proxy_rss_kb_median")
            out.append(f"| {s['target']} | {f(s.get('idle_conns_median'))} | {'-' if r0 is None else f'{r0 / 1024:.1f}'} "
                       f"| {'-' if r1 is None else f'{r1 / 1024:.1f}'} | {f(s.get('kb_per_conn_median'))} "
                       f"({f(s.get('kb_per_conn_min'))}..{f(s.get('kb_per_conn_max'))}) | {s['invalid_rounds']} |")
    out.append("")
    return out


def goal_lines(by, targets) -> list[str]:
    def x(wl, t):
        return by.get((wl, t)) or {}

    def ratio(wl, t):
        s = x(wl, t)
        return "-" if s.get("ratio_median") is None else \
            f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}..{s['ratio_max']:.2f})"

    def core(wl, t):
        v = x(wl, t).get("per_tls_core_median")
        return "-" if v is None else f"{v:.0f}/core"

    hs_m = x("handshakes-full", "mosn").get("per_tls_core_median")
    ka = x("https-keepalive", "mosn").get("ratio_median")
    h2 = x("h2-tls", "mosn").get("ratio_median")
    rows = [(f"full handshakes: mosn >= {GOAL_HS_PER_CORE:.0f} per proxy core", core, "handshakes-full",
             hs_m is not None and hs_m >= GOAL_HS_PER_CORE),
            (f"HTTPS keep-alive: mosn >= {GOAL_KEEPALIVE:.2f} of direct", ratio, "https-keepalive",
             ka is not None and ka >= GOAL_KEEPALIVE),
            (f"h2 over TLS: mosn >= {GOAL_H2:.2f} of direct", ratio, "h2-tls", h2 is not None and h2 >= GOAL_H2)]
    out = ["Goals (mosn; HAProxy and nginx for reference; ratios = median of per-round ratios to direct):\n",
           "| goal | mosn | haproxy | nginx | mosn |", "|---|---|---|---|---|"]
    for name, fn, wl, ok in rows:
        out.append(f"| {name} | {fn(wl, 'mosn')} | {fn(wl, 'haproxy')} | {fn(wl, 'nginx')} "
                   f"| **{'met' if ok else 'not met'}** |")
    return out


def no_summary(rows, meta) -> None:
    print("\n" + "\n".join(goal_lines({}, [])) + "\n")
