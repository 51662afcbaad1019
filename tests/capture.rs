//! Transparent capture, tested for real: the daemon in a network namespace it shares with a
//! workload (a child cgroup the test creates), a server in a second namespace behind a veth
//! pair, a third "pod" namespace with a veth to the daemon's (a workload in its own network
//! namespace, as in Kubernetes), real clients (bash's /dev/tcp, python3), the kernel's own program list (bpftool)
//! and firewall state (iptables-save, nft).
//!
//! Needs root and the kernel programs; without root it says SKIP, and in CI that fails.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mosn_tests::{Metrics, TempDir, mosn_bin, require_kernel};

const ADMIN_PORT: u16 = 34901;
/// Threaded line server: answers each line with "from <peer ip> <line>".
const ECHO_SERVER: &str = r#"
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
const CLIENT: &str = r#"exec 3<>/dev/tcp/$0/$1 && echo hello >&3 && timeout 5 head -n1 <&3"#;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-c", script]))
}

fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("cgroup v2 mounted")
}

/// The tests of this file watch the kernel's program list: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Ids of the loaded programs named like a capture program (`bpftool prog show`; names are
/// cut at 15 bytes).
fn capture_program_ids() -> BTreeSet<u32> {
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
fn pinned_ids(pin: &Path) -> BTreeSet<u32> {
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
fn firewall_rules(netns: Option<&str>) -> String {
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
struct Env {
    /// Workload (and daemon) namespace, address 10.77.N.1 (and 10.78.N.1 towards the pod).
    w: String,
    /// Server namespace, 10.77.N.2.
    s: String,
    /// Pod namespace, 10.78.N.2, its veth peer in `w`.
    p: String,
    net: u8,
    cg: PathBuf,
    pin: PathBuf,
    dir: TempDir,
    children: Vec<Child>,
}

impl Env {
    fn new(tag: &str) -> Env {
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

    fn cgroup(&self, name: &str) -> PathBuf {
        self.cg.join(name)
    }

    /// `script` under sh in namespace `ns`, as a process of `cgroup`.
    fn cmd(&self, ns: &str, cgroup: Option<&str>, program: &[&str]) -> Command {
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
    fn connect(&self, cgroup: &str, ip: &str, port: u16) -> Result<String, String> {
        self.connect_in(&self.w, Some(cgroup), ip, port)
    }

    /// The bash client in namespace `ns`, as a process of `cgroup`.
    fn connect_in(
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

    fn echo_server(&mut self, ns: &str, cgroup: Option<&str>, host: &str, ports: &[u16]) {
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

    fn config(&self, extra_workload: serde_json::Value) -> PathBuf {
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

    fn start(&self, config: &Path) -> Daemon {
        self.start_in(&self.w, config)
    }

    /// The daemon in namespace `ns`, in the `proxy` cgroup.
    fn start_in(&self, ns: &str, config: &Path) -> Daemon {
        self.start_with(ns, config, &[])
    }

    /// [`Env::start_in`] with extra environment variables for the daemon.
    fn start_with(&self, ns: &str, config: &Path, vars: &[(&str, &str)]) -> Daemon {
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

struct Daemon {
    child: Child,
    log: PathBuf,
    ns: String,
    pid_file: PathBuf,
}

impl Daemon {
    fn get(&self, path: &str) -> Option<String> {
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

    fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get("/metrics").expect("scrape /metrics"))
    }

    fn log(&self) -> String {
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
const CGROUPS: [&str; 5] = ["", "proxy", "app", "late", "pod"];

fn captured(m: &Metrics, stat: &str) -> u64 {
    captured_for(m, "app", stat)
}

fn captured_for(m: &Metrics, workload: &str, stat: &str) -> u64 {
    m.get(
        &format!("mosn_capture_{stat}_total"),
        &[("workload", workload)],
    )
    .unwrap_or(0.0) as u64
}

/// How many capture programs the daemon pinned: all but those of the optional features the
/// startup probe found off (`mosn_kernel_feature` 0; sk_msg on Linux 6.1, whose BTF lacks
/// `sk_psock.msg_tot_len`).
fn expected_programs(m: &Metrics) -> usize {
    let off = ["inbound_capture", "original_dst_getsockopt", "sk_msg"]
        .iter()
        .filter(|f| m.get("mosn_kernel_feature", &[("feature", f)]) == Some(0.0))
        .count();
    mosn::ebpf::capture::PROGRAM_NAMES.len() - off
}

fn listener_connections(m: &Metrics, listener: &str) -> u64 {
    m.value("mosn_listener_connections_total", &[("listener", listener)])
}

#[test]
fn sidecar_capture_outbound_inbound_fail_open_and_adoption() {
    if !require_kernel("sidecar_capture_outbound_inbound_fail_open_and_adoption") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rules_before = firewall_rules(None);
    let mut env = Env::new("sc");
    let server = format!("10.77.{}.2", env.net);
    let workload_ip = format!("10.77.{}.1", env.net);
    let s = env.s.clone();
    env.echo_server(&s, None, &server, &[7000, 7001]);
    let w = env.w.clone();
    env.echo_server(&w, Some("app"), "0.0.0.0", &[8080]);
    let config = env.config(serde_json::json!({}));
    let mut d = env.start(&config);

    // Outbound: the workload's connect is captured, goes through the proxy (listener
    // counter), and reaches the original destination.
    assert_eq!(
        env.connect("app", &server, 7000).unwrap(),
        format!("from {workload_ip} hello")
    );
    let m = d.metrics();
    assert_eq!(captured(&m, "outbound_captured"), 1, "{}", m.text);
    assert_eq!(listener_connections(&m, "outbound"), 1);
    // An excluded port goes direct.
    assert_eq!(
        env.connect("app", &server, 7001).unwrap(),
        format!("from {workload_ip} hello")
    );
    let m = d.metrics();
    assert_eq!(captured(&m, "outbound_excluded"), 1);
    assert_eq!(
        listener_connections(&m, "outbound"),
        1,
        "excluded: not proxied"
    );
    // A process outside the workload cgroup is not captured at all.
    assert!(env.connect("late", &server, 7000).is_ok());
    assert_eq!(listener_connections(&d.metrics(), "outbound"), 1);

    // Inbound: a remote client's connection to the workload's port lands in the proxy, which
    // forwards it from the passthrough source.
    let out = run(Command::new("nsenter").args([
        &format!("--net=/run/netns/{}", env.s),
        "bash",
        "-c",
        CLIENT,
        &workload_ip,
        "8080",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from 127.0.0.6 hello",
        "the workload saw the proxy's passthrough source"
    );
    let m = d.metrics();
    assert_eq!(captured(&m, "inbound_captured"), 1);
    assert_eq!(listener_connections(&m, "inbound"), 1);

    // No firewall rules anywhere.
    assert_eq!(
        firewall_rules(Some(&env.w)),
        "",
        "no rules in the workload namespace"
    );
    assert_eq!(
        firewall_rules(None),
        rules_before,
        "no rules added on the host"
    );

    // kill -9 while a client loops connecting: every connect that starts after the kill
    // succeeds, directly.
    let pinned = pinned_ids(&env.pin);
    assert_eq!(pinned.len(), expected_programs(&d.metrics()));
    let looper = env
        .cmd(
            &env.w,
            Some("app"),
            &[
                "bash",
                "-c",
                &format!(
                    "for i in $(seq 60); do t=$(date +%s%N); \
                     if r=$(bash -c '{CLIENT}' {server} 7000 2>/dev/null); then echo \"$t ok $r\"; \
                     else echo \"$t fail\"; fi; sleep 0.05; done"
                ),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out = looper.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    let after: Vec<&str> = lines
        .lines()
        .filter(|l| l.split(' ').next().unwrap().parse::<u128>().unwrap() > killed_at)
        .collect();
    assert!(
        after.len() >= 10,
        "the loop kept connecting after the kill:\n{lines}"
    );
    for l in &after {
        assert!(
            l.ends_with(&format!("ok from {workload_ip} hello")),
            "connect after the kill failed: {l}\n{lines}"
        );
    }
    assert!(
        pinned.is_subset(&capture_program_ids()),
        "the programs stay loaded and pinned without a daemon"
    );
    let newest_before_restart = capture_program_ids().into_iter().max().unwrap_or(0);

    // Restart: the pinned programs are adopted (no duplicates) and capture resumes; the
    // counters kept counting while the daemon was away.
    let d2 = env.start(&config);
    assert!(d2.log().contains("adopted"), "{}", d2.log());
    assert_eq!(pinned_ids(&env.pin), pinned, "the same programs, adopted");
    let new: Vec<u32> = capture_program_ids()
        .into_iter()
        .filter(|id| *id > newest_before_restart)
        .collect();
    assert!(
        new.is_empty(),
        "adoption loads no duplicates: new programs {new:?}"
    );
    let m = d2.metrics();
    assert!(
        captured(&m, "fail_open_bypasses") >= after.len() as u64,
        "fail-open bypasses counted: {}",
        m.text
    );
    let before = captured(&m, "outbound_captured");
    assert_eq!(
        env.connect("app", &server, 7000).unwrap(),
        format!("from {workload_ip} hello")
    );
    let m = d2.metrics();
    assert_eq!(captured(&m, "outbound_captured"), before + 1);
    assert_eq!(listener_connections(&m, "outbound"), 1);

    // `mosn stop` stops the daemon and uninstalls everything; workloads connect directly.
    run(Command::new(mosn_bin()).args([
        "stop",
        "-c",
        config.to_str().unwrap(),
        "--pid-file",
        d2.pid_file.to_str().unwrap(),
    ]));
    assert!(!env.pin.exists(), "pins removed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pinned.is_disjoint(&capture_program_ids()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        pinned.is_disjoint(&capture_program_ids()),
        "every capture program unloaded"
    );
    assert_eq!(
        env.connect("app", &server, 7000).unwrap(),
        format!("from {workload_ip} hello")
    );
    drop(d2);
    drop(d);
}

#[test]
fn node_mode_follows_the_workloads_directory() {
    if !require_kernel("node_mode_follows_the_workloads_directory") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::new("nd");
    let server = format!("10.77.{}.2", env.net);
    let s = env.s.clone();
    env.echo_server(&s, None, &server, &[7000]);
    let wl_dir = env.dir.path().join("workloads");
    std::fs::create_dir_all(&wl_dir).unwrap();
    let config = env.config(serde_json::json!({}));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["capture"]["mode"] = "node".into();
    v["capture"]["workloads_dir"] = wl_dir.display().to_string().into();
    let config = env
        .dir
        .write("node.json", &serde_json::to_string_pretty(&v).unwrap());
    let d = env.start(&config);
    let proxied = |d: &Daemon| listener_connections(&d.metrics(), "outbound");

    env.connect("late", &server, 7000).unwrap();
    assert_eq!(proxied(&d), 0, "not a workload yet");
    // A new workload file: its cgroup is captured within the poll interval.
    std::fs::write(
        wl_dir.join("late.json"),
        serde_json::json!({ "cgroup": env.cgroup("late") }).to_string(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        env.connect("late", &server, 7000).unwrap();
        if proxied(&d) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workload file not picked up:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = d.metrics();
    assert!(
        m.get(
            "mosn_capture_outbound_captured_total",
            &[("workload", "late")]
        )
        .unwrap()
            >= 1.0
    );
    // The file goes: the workload is released.
    std::fs::remove_file(wl_dir.join("late.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = proxied(&d);
        env.connect("late", &server, 7000).unwrap();
        if proxied(&d) == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workload not released:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A broken file is reported and changes nothing.
    std::fs::write(wl_dir.join("bad.json"), "{\"cgroup\": 5").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.log().contains("bad.json"), "{}", d.log());
    assert!(d.get("/ready").is_some(), "still running");
}

/// A workload in its own network namespace (a pod) with mosn in another one (the host's, as
/// a DaemonSet): the outbound listener the programs would redirect to is not in the pod's
/// namespace, so its connects go direct and are counted as bypasses of their own kind, while
/// a workload in the daemon's namespace is still captured.
#[test]
fn workload_in_another_netns_goes_direct() {
    if !require_kernel("workload_in_another_netns_goes_direct") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::new("on");
    let (server, host, pod) = (
        format!("10.77.{}.2", env.net),
        format!("10.78.{}.1", env.net),
        format!("10.78.{}.2", env.net),
    );
    let (s, w, p) = (env.s.clone(), env.w.clone(), env.p.clone());
    env.echo_server(&s, None, &server, &[7000]);
    env.echo_server(&w, None, &host, &[7000]);
    let config = env.config(serde_json::json!({}));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let pod_workload = serde_json::json!({ "name": "pod", "cgroup": env.cgroup("pod") });
    v["capture"]["mode"] = "node".into();
    v["capture"]["workloads"]
        .as_array_mut()
        .unwrap()
        .push(pod_workload);
    let config = env
        .dir
        .write("pods.json", &serde_json::to_string_pretty(&v).unwrap());
    let d = env.start(&config);

    // The pod's connect reaches the server itself (bytes arrive, from the pod's address).
    assert_eq!(
        env.connect_in(&p, Some("pod"), &host, 7000),
        Ok(format!("from {pod} hello")),
        "the pod's connect must go direct:\n{}",
        d.log()
    );
    let m = d.metrics();
    assert_eq!(
        captured_for(&m, "pod", "other_netns_bypasses"),
        1,
        "{}",
        m.text
    );
    assert_eq!(captured_for(&m, "pod", "outbound_captured"), 0);
    assert_eq!(listener_connections(&m, "outbound"), 0);
    // A workload in the daemon's own namespace is still captured.
    assert_eq!(
        env.connect("app", &server, 7000).unwrap(),
        format!("from 10.77.{}.1 hello", env.net)
    );
    let m = d.metrics();
    assert_eq!(captured(&m, "outbound_captured"), 1, "{}", m.text);
    assert_eq!(captured(&m, "other_netns_bypasses"), 0);
    assert_eq!(listener_connections(&m, "outbound"), 1);
}

/// sk_lookup left attached in a namespace the inbound listener is no longer in (the daemon
/// ran in the pod namespace, then was restarted in another one and adopted the pins): the
/// pod's inbound connections go to the pod's own server, not to a listener of another
/// namespace, and are counted as bypasses.
#[test]
fn sk_lookup_never_hands_over_a_listener_of_another_netns() {
    if !require_kernel("sk_lookup_never_hands_over_a_listener_of_another_netns") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::new("il");
    let (host, pod) = (
        format!("10.78.{}.1", env.net),
        format!("10.78.{}.2", env.net),
    );
    let (w, p) = (env.w.clone(), env.p.clone());
    env.echo_server(&p, None, "0.0.0.0", &[8080]);
    let config = env.config(serde_json::json!({}));

    // mosn in the pod namespace: inbound capture there works.
    let mut d1 = env.start_in(&p, &config);
    assert_eq!(
        env.connect_in(&w, None, &pod, 8080),
        Ok("from 127.0.0.6 hello".to_string())
    );
    d1.child.kill().unwrap();
    d1.child.wait().unwrap();

    // Restarted in the host namespace: it adopts the pins; its inbound listener is there.
    let d2 = env.start(&config);
    assert!(d2.log().contains("adopted"), "{}", d2.log());
    let before = d2.metrics();
    assert_eq!(
        env.connect_in(&w, None, &pod, 8080),
        Ok(format!("from {host} hello")),
        "the pod's inbound connection must reach the pod's server directly:\n{}",
        d2.log()
    );
    let m = d2.metrics();
    assert_eq!(
        captured(&m, "other_netns_bypasses"),
        captured(&before, "other_netns_bypasses") + 1,
        "{}",
        m.text
    );
    assert_eq!(
        captured(&m, "inbound_captured"),
        captured(&before, "inbound_captured")
    );
    assert_eq!(listener_connections(&m, "inbound"), 0);
    drop(d1);
}

/// A kernel without sk_lookup (forced with the probe table's test hook): one warning names
/// it, `mosn_kernel_feature{feature="inbound_capture"}` is 0, no sk_lookup program is loaded
/// or attached, inbound connections reach the workload directly, and everything else
/// (outbound capture, the getsockopt answer, the splice) stays on.
#[test]
fn a_kernel_without_sk_lookup_loses_only_inbound_capture() {
    if !require_kernel("a_kernel_without_sk_lookup_loses_only_inbound_capture") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::new("fp");
    let server = format!("10.77.{}.2", env.net);
    let workload_ip = format!("10.77.{}.1", env.net);
    let (s, w) = (env.s.clone(), env.w.clone());
    env.echo_server(&s, None, &server, &[7000]);
    env.echo_server(&w, Some("app"), "0.0.0.0", &[8080]);
    let config = env.config(serde_json::json!({}));
    let d = env.start_with(
        &w,
        &config,
        &[(
            mosn::ebpf::probe::DISABLE_ENV,
            mosn::ebpf::Feature::InboundCapture.name(),
        )],
    );
    let log = d.log();

    // One warning, naming what is missing and what stays on.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("kernel lacks"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("sk_lookup (BPF_PROG_TYPE_SK_LOOKUP)")
            && warnings[0].contains("inbound capture off")
            && warnings[0].contains("outbound capture and the splice stay on"),
        "{}",
        warnings[0]
    );
    assert!(
        log.contains("inbound_capture=off") && log.contains("outbound_capture=on"),
        "{log}"
    );
    assert!(
        log.contains("kernel fast path loaded"),
        "the splice stays on: {log}"
    );

    // The metric.
    let m = d.metrics();
    let feature = |f: &str| m.get("mosn_kernel_feature", &[("feature", f)]);
    assert_eq!(feature("inbound_capture"), Some(0.0), "{}", m.text);
    for f in ["splice", "outbound_capture", "original_dst_getsockopt"] {
        assert_eq!(feature(f), Some(1.0), "{f}: {}", m.text);
    }

    // Really off: no sk_lookup program pinned, no sk_lookup link.
    assert_eq!(
        pinned_ids(&env.pin).len(),
        expected_programs(&m),
        "every capture program but sk_lookup (and sk_msg where the kernel lacks it)"
    );
    assert!(!env.pin.join("progs").join("mosn_sk_lookup").exists());
    let links: Vec<String> = std::fs::read_dir(env.pin.join("links"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !links.iter().any(|l| l.starts_with("lookup@")),
        "no sk_lookup link: {links:?}"
    );

    // Inbound: the remote client reaches the workload directly (it sees the client's own
    // address, not the proxy's passthrough source); nothing counted.
    let out = run(Command::new("nsenter").args([
        &format!("--net=/run/netns/{}", env.s),
        "bash",
        "-c",
        CLIENT,
        &workload_ip,
        "8080",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("from {server} hello"),
        "inbound went direct"
    );
    // Outbound: still captured and proxied.
    assert_eq!(
        env.connect("app", &server, 7000).unwrap(),
        format!("from {workload_ip} hello")
    );
    let m = d.metrics();
    assert_eq!(captured(&m, "inbound_captured"), 0, "{}", m.text);
    assert_eq!(listener_connections(&m, "inbound"), 0);
    assert_eq!(captured(&m, "outbound_captured"), 1, "{}", m.text);
    assert_eq!(listener_connections(&m, "outbound"), 1);
}
