//! The test environment of the transparent-capture tests (`tests/capture.rs`): network
//! namespaces joined by veth pairs, the workloads' and the daemon's cgroups, a pin directory,
//! the daemon started inside a namespace, and what the tests read of the kernel (program ids,
//! firewall rules) and of the daemon's metrics.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{Metrics, TempDir, mosn_bin, require_kernel};
pub const ADMIN_PORT: u16 = 34901;
/// Threaded line server: answers each line with "from <peer ip> <line>".
pub const ECHO_SERVER: &str = r#"
import socket, sys, threading
def handle(a, p):
    with a:
        f = a.makefile('rwb')
        line = f.readline()
        f.write(b'from ' + p[0].encode() + b' ' + line)
        f.flush()
def serve(host, port):
    l = socket.create_server((host, port))
    while True:
        a, p = l.accept()
        threading.Thread(target=handle, args=(a, p), daemon=True).start()
for port in sys.argv[2:]:
    threading.Thread(target=serve, args=(sys.argv[1], int(port)), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
"#;
/// Connects with bash's /dev/tcp (an unmodified program), sends a line, prints the answer.
pub const CLIENT: &str = r#"exec 3<>/dev/tcp/$0/$1 && echo hello >&3 && timeout 5 head -n1 <&3"#;

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-c", script]))
}

pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("cgroup v2 mounted")
}

/// The capture tests watch the kernel's program list: one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts a privileged capture test: `None` (skip, or a failure in CI) without root and the
/// kernel programs; otherwise the guard that runs the capture tests one at a time.
pub fn begin(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !require_kernel(test) {
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Ids of the loaded programs named like a capture program (`bpftool prog show`; names are
/// cut at 15 bytes).
pub fn capture_program_ids() -> BTreeSet<u32> {
    let out = run(Command::new("bpftool").args(["prog", "show"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            mosn::ebpf::capture::PROGRAM_NAMES
                .iter()
                .any(|p| l.contains(&format!(" name {} ", &p[..p.len().min(15)])))
        })
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

/// Ids of the programs pinned under `pin`.
pub fn pinned_ids(pin: &Path) -> BTreeSet<u32> {
    mosn::ebpf::capture::PROGRAM_NAMES
        .iter()
        .filter_map(|p| {
            let out = Command::new("bpftool")
                .args(["prog", "show", "pinned"])
                .arg(pin.join("progs").join(p))
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .split(':')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Firewall rules anywhere in the current namespace (iptables-save `-A` lines, nft rules).
pub fn firewall_rules(netns: Option<&str>) -> String {
    let wrap = |c: &str| match netns {
        Some(ns) => format!("nsenter --net=/run/netns/{ns} {c}"),
        None => c.to_string(),
    };
    let ipt = sh(&wrap("iptables-save"));
    let nft = sh(&wrap("nft list ruleset"));
    let mut rules: Vec<String> = String::from_utf8_lossy(&ipt.stdout)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(String::from)
        .collect();
    rules.extend(
        String::from_utf8_lossy(&nft.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from),
    );
    rules.join("\n")
}

/// Three namespaces (workload, server, pod) joined by veth pairs, the workloads' and the
/// daemon's cgroups, a pin directory; all removed on drop (processes in the cgroups are
/// killed first).
pub struct Env {
    /// Workload (and daemon) namespace, address 10.77.N.1 (and 10.78.N.1 towards the pod).
    pub w: String,
    /// Server namespace, 10.77.N.2.
    pub s: String,
    /// Pod namespace, 10.78.N.2, its veth peer in `w`.
    pub p: String,
    pub net: u8,
    pub cg: PathBuf,
    pub pin: PathBuf,
    pub dir: TempDir,
    pub children: Vec<Child>,
}

impl Env {
    /// The server's address in its namespace.
    pub fn server_ip(&self) -> String {
        format!("10.77.{}.2", self.net)
    }

    /// The workload's (and daemon's) address towards the server.
    pub fn workload_ip(&self) -> String {
        format!("10.77.{}.1", self.net)
    }

    /// The daemon namespace's address towards the pod.
    pub fn host_ip_to_pod(&self) -> String {
        format!("10.78.{}.1", self.net)
    }

    /// The pod's address.
    pub fn pod_ip(&self) -> String {
        format!("10.78.{}.2", self.net)
    }

    pub fn new(tag: &str) -> Env {
        let pid = std::process::id();
        let net = (pid % 200) as u8 + 20;
        let (w, s, p) = (
            format!("mw{tag}{pid}"),
            format!("ms{tag}{pid}"),
            format!("mp{tag}{pid}"),
        );
        let cg = cgroup2_root().join(format!("mosn-it-{tag}-{pid}"));
        for c in CGROUPS {
            std::fs::create_dir_all(cg.join(c)).unwrap();
        }
        let env = Env {
            w: w.clone(),
            s: s.clone(),
            p: p.clone(),
            net,
            pin: PathBuf::from(format!("/sys/fs/bpf/mosn-it-{tag}-{pid}")),
            cg,
            dir: TempDir::new("capture"),
            children: Vec::new(),
        };
        sh(&format!(
            "ip netns add {w} && ip netns add {s} && \
             ip -n {w} link set lo up && ip -n {s} link set lo up && \
             ip link add vw{pid} netns {w} type veth peer name vs{pid} netns {s} && \
             ip -n {w} addr add 10.77.{net}.1/24 dev vw{pid} && ip -n {w} link set vw{pid} up && \
             ip -n {s} addr add 10.77.{net}.2/24 dev vs{pid} && ip -n {s} link set vs{pid} up && \
             ip netns add {p} && ip -n {p} link set lo up && \
             ip link add vh{pid} netns {w} type veth peer name vp{pid} netns {p} && \
             ip -n {w} addr add 10.78.{net}.1/24 dev vh{pid} && ip -n {w} link set vh{pid} up && \
             ip -n {p} addr add 10.78.{net}.2/24 dev vp{pid} && ip -n {p} link set vp{pid} up"
        ));
        env
    }

    pub fn cgroup(&self, name: &str) -> PathBuf {
        self.cg.join(name)
    }

    /// `script` under sh in namespace `ns`, as a process of `cgroup`.
    pub fn cmd(&self, ns: &str, cgroup: Option<&str>, program: &[&str]) -> Command {
        let join = match cgroup {
            Some(c) => format!("echo $$ > {}/cgroup.procs && ", self.cgroup(c).display()),
            None => String::new(),
        };
        // nsenter switches only the network namespace; `ip netns exec` would also remount
        // /sys, hiding the cgroup and bpffs mounts the daemon needs.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("{join}exec nsenter --net=/run/netns/{ns} \"$@\""))
            .arg("sh")
            .args(program);
        c
    }

    /// The bash client in `cgroup` of the workload namespace.
    pub fn connect(&self, cgroup: &str, ip: &str, port: u16) -> Result<String, String> {
        self.connect_in(&self.w, Some(cgroup), ip, port)
    }

    /// The bash client in namespace `ns`, as a process of `cgroup`.
    pub fn connect_in(
        &self,
        ns: &str,
        cgroup: Option<&str>,
        ip: &str,
        port: u16,
    ) -> Result<String, String> {
        let out = self
            .cmd(ns, cgroup, &["bash", "-c", CLIENT, ip, &port.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.is_empty() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn echo_server(&mut self, ns: &str, cgroup: Option<&str>, host: &str, ports: &[u16]) {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut args = vec!["python3", "-c", ECHO_SERVER, host];
        args.extend(ports.iter().map(String::as_str));
        let mut child = self
            .cmd(ns, cgroup, &args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        self.children.push(child);
    }

    pub fn config(&self, extra_workload: serde_json::Value) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/capture-sidecar.json"),
        )
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cap = &mut v["capture"];
        cap["pin_path"] = self.pin.display().to_string().into();
        let mut w = serde_json::json!({
            "name": "app",
            "cgroup": self.cgroup("app"),
            "include_inbound_ports": ["8080"],
            "exclude_outbound_ports": [7001],
        });
        for (k, val) in extra_workload.as_object().unwrap() {
            w[k] = val.clone();
        }
        cap["workloads"] = serde_json::json!([w]);
        v["graceful_timeout"] = "2s".into();
        self.dir
            .write("mosn.json", &serde_json::to_string_pretty(&v).unwrap())
    }

    pub fn start(&self, config: &Path) -> Daemon {
        self.start_in(&self.w, config)
    }

    /// The daemon in namespace `ns`, in the `proxy` cgroup.
    pub fn start_in(&self, ns: &str, config: &Path) -> Daemon {
        self.start_with(ns, config, &[])
    }

    /// [`Env::start_in`] with extra environment variables for the daemon.
    pub fn start_with(&self, ns: &str, config: &Path, vars: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join("mosn.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let pid_file = self.dir.path().join("mosn.pid");
        let bin = mosn_bin();
        let child = self
            .cmd(
                ns,
                Some("proxy"),
                &[
                    bin.to_str().unwrap(),
                    "start",
                    "-c",
                    config.to_str().unwrap(),
                    "--pid-file",
                    pid_file.to_str().unwrap(),
                ],
            )
            .env("RUST_LOG", "info,mosn=debug")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            log,
            ns: ns.to_string(),
            pid_file,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.get("/ready").as_deref() != Some("ready") {
            assert!(Instant::now() < deadline, "mosn not ready:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in CGROUPS.iter().rev() {
            let _ = std::fs::write(self.cgroup(c).join("cgroup.kill"), "1");
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(200));
        for c in CGROUPS.iter().rev() {
            let _ = std::fs::remove_dir(self.cgroup(c));
        }
        for ns in [&self.w, &self.s, &self.p] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub ns: String,
    pub pid_file: PathBuf,
}

impl Daemon {
    pub fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["curl", "-sf", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{ADMIN_PORT}{path}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get("/metrics").expect("scrape /metrics"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "mosn log:\n{}", self.log());
        }
    }
}

/// The test's cgroups, parents first.
pub const CGROUPS: [&str; 5] = ["", "proxy", "app", "late", "pod"];

pub fn captured(m: &Metrics, stat: &str) -> u64 {
    captured_for(m, "app", stat)
}

pub fn captured_for(m: &Metrics, workload: &str, stat: &str) -> u64 {
    m.get(
        &format!("mosn_capture_{stat}_total"),
        &[("workload", workload)],
    )
    .unwrap_or(0.0) as u64
}

/// How many capture programs the daemon pinned: all but those of the optional features the
/// startup probe found off (`mosn_kernel_feature` 0; sk_msg on Linux 6.1, whose BTF lacks
/// `sk_psock.msg_tot_len`).
pub fn expected_programs(m: &Metrics) -> usize {
    let off = ["inbound_capture", "original_dst_getsockopt", "sk_msg"]
        .iter()
        .filter(|f| m.get("mosn_kernel_feature", &[("feature", f)]) == Some(0.0))
        .count();
    mosn::ebpf::capture::PROGRAM_NAMES.len() - off
}

pub fn listener_connections(m: &Metrics, listener: &str) -> u64 {
    m.value("mosn_listener_connections_total", &[("listener", listener)])
}
