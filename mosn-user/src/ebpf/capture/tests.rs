use super::*;

/// A child cgroup and a private pin directory, removed on drop.
struct Scratch {
    cgroup: PathBuf,
    pin: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let id = format!("mosn-ut-{tag}-{}", std::process::id());
        let cgroup = cgroup2_root().join(&id);
        std::fs::create_dir_all(&cgroup).unwrap();
        let _ = std::fs::create_dir_all("/sys/fs/bpf");
        Scratch {
            cgroup,
            pin: Path::new("/sys/fs/bpf").join(id),
        }
    }

    fn config(&self) -> CaptureConfig {
        let mut c = test_config_for(&self.pin);
        let mut w = wl();
        w.cgroup = self.cgroup.clone();
        w.sk_msg = true;
        c.workloads = vec![w];
        c
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = uninstall(&self.pin);
        let _ = std::fs::remove_dir(self.cgroup.with_extension("tool"));
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// Kernel ids of the pinned capture programs.
fn pinned_ids(pin: &Path) -> Vec<u32> {
    PROGRAMS
        .iter()
        .map(|p| {
            aya::programs::ProgramInfo::from_pin(pin.join("progs").join(p))
                .expect("pinned program")
                .id()
        })
        .collect()
}

fn loaded(ids: &[u32]) -> usize {
    let all: BTreeSet<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    ids.iter().filter(|i| all.contains(i)).count()
}

/// Spawns `cmd` as a process of `cgroup` (it joins before exec), optionally with `fd`
/// as its fd 3.
fn spawn_in(
    cgroup: &Path,
    cmd: &str,
    args: &[&str],
    fd: Option<std::os::fd::RawFd>,
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(
        cgroup
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut c = std::process::Command::new(cmd);
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls (open, write, close, dup2) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let f = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if f < 0 || libc::write(f, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(f);
            if let Some(fd) = fd
                && libc::dup2(fd, 3) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().expect("spawn")
}

fn output(c: std::process::Child) -> String {
    let o = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// Accepts one `BASH_CONNECT` client: reads its line (so closing sends FIN, not RST),
/// answers "world".
fn answer(l: &std::net::TcpListener) {
    let (mut conn, _) = l.accept().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
    assert_eq!(&buf, b"hello\n");
    std::io::Write::write_all(&mut conn, b"world").unwrap();
}

/// Another process's fd, duplicated into this one (pidfd_getfd, root).
fn steal_fd(pid: i32, fd: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscalls; each returned fd is new and owned here.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd);
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) as i32;
        assert!(got >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        std::os::fd::OwnedFd::from_raw_fd(got)
    }
}

fn stat(c: &Capture, workload: &str, s: Stat) -> u64 {
    c.stats()
        .into_iter()
        .find(|w| w.workload == workload)
        .map(|w| w.values[s as usize])
        .unwrap_or(0)
}

/// bash's /dev/tcp: connect, send a line, print what comes back (or the error).
const BASH_CONNECT: &str = "exec 3<>/dev/tcp/$0/$1 && echo hello >&3 && timeout 5 head -c 5 <&3";

#[test]
fn redirects_selected_connects_and_records_where_they_were_going() {
    if !capture_or_skip() {
        return;
    }
    let s = Scratch::new("redir");
    let mut cfg = s.config();
    cfg.workloads[0].sk_msg = false;
    cfg.workloads[0].exclude_outbound_ports = vec![(9999, 9999)];
    cfg.workloads[0].exclude_outbound_cidrs = vec![Cidr {
        addr: "10.250.0.0".parse().unwrap(),
        prefix_len: 16,
    }];
    // A sibling cgroup: programs of the workload's cgroup would run in a child too.
    let odst = s.cgroup.with_extension("tool");
    std::fs::create_dir_all(&odst).unwrap();
    let c = Capture::install(&cfg, &KernelFeatures::probe(&[])).unwrap();
    assert!(c.apply_workloads(&cfg.workloads).is_empty());
    c.attach_original_dst_cgroup(&odst).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    c.set_outbound_listener(&l, l.local_addr().unwrap())
        .unwrap();

    // A captured connect lands on the listener; the map knows where it was going.
    let client = spawn_in(
        &s.cgroup,
        "bash",
        &["-c", BASH_CONNECT, "10.249.0.1", "4321"],
        None,
    );
    let (mut a, peer) = l.accept().unwrap();
    assert_eq!(
        c.take_original_dst(peer),
        Some("10.249.0.1:4321".parse().unwrap())
    );
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut a, &mut buf).unwrap();
    assert_eq!(&buf, b"hello\n");
    std::io::Write::write_all(&mut a, b"world").unwrap();
    assert_eq!(output(client), "world");
    assert_eq!(stat(&c, "w", Stat::Captured), 1);

    // Excluded port and CIDR: not redirected, they reach their own listeners directly.
    let by_port = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let by_cidr = std::net::TcpListener::bind("127.0.3.4:0").unwrap();
    let p = by_port.local_addr().unwrap().port();
    cfg.workloads[0].exclude_outbound_ports.push((p, p));
    cfg.workloads[0].exclude_outbound_cidrs.push(Cidr {
        addr: "127.0.3.0".parse().unwrap(),
        prefix_len: 24,
    });
    assert!(c.apply_workloads(&cfg.workloads).is_empty());
    for l in [&by_port, &by_cidr] {
        let a = l.local_addr().unwrap();
        let (ip, port) = (a.ip().to_string(), a.port().to_string());
        let client = spawn_in(&s.cgroup, "bash", &["-c", BASH_CONNECT, &ip, &port], None);
        answer(l);
        assert_eq!(output(client), "world");
    }
    assert_eq!(stat(&c, "w", Stat::Excluded), 2);
    l.set_nonblocking(true).unwrap();
    assert!(
        l.accept().is_err(),
        "excluded connects never reach the listener"
    );
    l.set_nonblocking(false).unwrap();

    // An unmodified REDIRECT-style tool in another cgroup, with its own listener (the
    // cgroup of a socket is where it was created), asks getsockopt(SOL_IP,
    // SO_ORIGINAL_DST) and gets the original address. Its listener becomes the redirect
    // target (taken from it with pidfd_getfd, as a daemon would be handed it).
    let mut tool = spawn_in(
        &odst,
        "python3",
        &[
            "-c",
            "import socket,struct\n\
             l=socket.create_server(('127.0.0.1',0))\n\
             print(l.fileno(),l.getsockname()[1],flush=True)\n\
             a,_=l.accept()\n\
             d=a.getsockopt(socket.SOL_IP,80,16)\n\
             port,=struct.unpack('!H',d[2:4])\n\
             print(socket.inet_ntoa(d[4:8])+':'+str(port),flush=True)\n\
             a.recv(6)\n\
             a.sendall(b'world')",
        ],
        None,
    );
    let mut out = std::io::BufReader::new(tool.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let mut f = line.split_whitespace();
    let (fd, port): (i32, u16) = (
        f.next().unwrap().parse().unwrap(),
        f.next().unwrap().parse().unwrap(),
    );
    let tool_listener = steal_fd(tool.id() as i32, fd);
    drop(l);
    c.set_outbound_listener(&tool_listener, SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let client = spawn_in(
        &s.cgroup,
        "bash",
        &["-c", BASH_CONNECT, "10.249.0.2", "5555"],
        None,
    );
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "10.249.0.2:5555");
    assert_eq!(output(client), "world");
    assert!(tool.wait().unwrap().success());
    drop(tool_listener);
    assert_eq!(stat(&c, "w", Stat::OrigDstAnswered), 1);

    // Fail open: with the listener closed, connects go direct.
    let direct = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = direct.local_addr().unwrap().port().to_string();
    let client = spawn_in(
        &s.cgroup,
        "bash",
        &["-c", BASH_CONNECT, "127.0.0.2", &port],
        None,
    );
    answer(&direct);
    assert_eq!(output(client), "world");
    assert_eq!(stat(&c, "w", Stat::FailOpen), 1);
    drop(c);
    let _ = std::fs::remove_dir(&odst);
}

/// The issue the design doc recorded: sk_msg ingress redirect has no backpressure, so a
/// fast sender into a slow reader grew kernel TCP memory until ENOMEM. With the queue
/// limit, memory stays bounded and the sender sees no error.
#[test]
fn sk_msg_keeps_a_fast_sender_into_a_slow_reader_bounded() {
    if !capture_or_skip() {
        return;
    }
    let s = Scratch::new("skmsg");
    let cfg = s.config();
    let c = Capture::install(&cfg, &KernelFeatures::probe(&[])).unwrap();
    assert!(c.apply_workloads(&cfg.workloads).is_empty());
    assert!(
        c.sk_msg_available(),
        "this kernel's BTF has the fields sk_msg reads"
    );
    let tcp_mem_pages = || -> u64 {
        let t = std::fs::read_to_string("/proc/net/sockstat").unwrap();
        let line = t.lines().find(|l| l.starts_with("TCP:")).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        let i = f.iter().position(|w| *w == "mem").unwrap();
        f[i + 1].parse().unwrap()
    };
    let base = tcp_mem_pages();
    // Reader: 4 KiB every 10 ms (400 KiB/s). Sender: 64 KiB writes as fast as it can for
    // 10 s; prints bytes sent and errors.
    let mut reader = spawn_in(
        &s.cgroup,
        "python3",
        &[
            "-c",
            "import socket,time,sys\n\
             l=socket.create_server(('127.0.0.1',0))\n\
             print(l.getsockname()[1],flush=True)\n\
             a,_=l.accept()\n\
             n=0;end=time.time()+11\n\
             while time.time()<end:\n  d=a.recv(4096)\n  n+=len(d)\n  time.sleep(0.01)\n\
             print(n,flush=True)",
        ],
        None,
    );
    let mut rout = std::io::BufReader::new(reader.stdout.take().unwrap());
    let mut port = String::new();
    std::io::BufRead::read_line(&mut rout, &mut port).unwrap();
    let sender = spawn_in(
        &s.cgroup,
        "python3",
        &[
            "-c",
            "import socket,time,sys\n\
             c=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n\
             c.settimeout(0.2)\n\
             b=b'x'*65536;sent=0;err=0;end=time.time()+10\n\
             while time.time()<end:\n  try:\n    sent+=c.send(b)\n  except socket.timeout:\n    pass\n  except OSError as e:\n    err+=1;print('error',e,flush=True);time.sleep(0.01)\n\
             print(sent,err)",
            port.trim(),
        ],
        None,
    );
    let mut peak = base;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        peak = peak.max(tcp_mem_pages());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = output(sender);
    let mut f = out.split_whitespace();
    let (sent, errors): (u64, u64) = (
        f.next().unwrap().parse().unwrap(),
        f.next().unwrap().parse().unwrap(),
    );
    let _ = reader.wait();
    let grown_mib = (peak.saturating_sub(base)) * 4096 / (1 << 20);
    eprintln!(
        "sk_msg backpressure: sent {sent} B, {errors} errors, TCP memory +{grown_mib} MiB at peak"
    );
    assert_eq!(errors, 0, "no ENOMEM (or any error) for the sender");
    // 1 MiB queue limit + the TCP path's own buffers (a few MiB with autotuning).
    assert!(
        grown_mib < 32,
        "kernel TCP memory bounded, grew {grown_mib} MiB"
    );
    eprintln!("{:?}", c.stats());
    assert!(stat(&c, "w", Stat::SkMsgRedirects) > 0, "sk_msg was used");
    assert!(
        stat(&c, "w", Stat::SkMsgThrottled) > 0,
        "the queue limit engaged"
    );
    // Without backpressure 10 s at full speed would have queued gigabytes.
    assert!(sent < 64 << 20, "the sender was held back: {sent} B");
}

#[test]
fn installs_pins_adopts_and_uninstalls() {
    if !capture_or_skip() {
        return;
    }
    let s = Scratch::new("adopt");
    let cfg = s.config();
    let c = Capture::install(&cfg, &KernelFeatures::probe(&[])).expect("install");
    assert!(!c.adopted());
    let errors = c.apply_workloads(&cfg.workloads);
    assert!(errors.is_empty(), "{errors:?}");
    let ids = pinned_ids(&s.pin);
    assert_eq!(
        loaded(&ids),
        PROGRAMS.len(),
        "every program loaded and pinned"
    );
    let links = link_dir(&s.pin, "w", open_cgroup("w", &s.cgroup).unwrap().1);
    for l in ["connect4", "connect6", "sockops", "getsockopt"] {
        assert!(links.join(l).exists(), "{l} link pinned");
    }
    drop(c);
    // The daemon is gone; its programs stay, pinned.
    assert_eq!(loaded(&ids), PROGRAMS.len());
    let c = Capture::install(&cfg, &KernelFeatures::probe(&[])).expect("adopt");
    assert!(c.adopted());
    let errors = c.apply_workloads(&cfg.workloads);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(pinned_ids(&s.pin), ids, "adoption keeps the same programs");
    assert_eq!(c.workloads(), vec!["w".to_string()]);
    // The slot survived adoption.
    assert_eq!(c.lock().workloads["w"].slot, 1);
    drop(c);
    uninstall(&s.pin).unwrap();
    assert!(!s.pin.exists());
    // Links are released by a kernel work item: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while loaded(&ids) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(loaded(&ids), 0, "uninstall unloads everything");
}

fn wl() -> WorkloadConfig {
    let mut w = placeholder(1);
    w.name = "w".into();
    w
}

#[test]
fn policy_encodes_ports_cidrs_and_ids_in_kernel_byte_order() {
    let mut w = wl();
    w.include_outbound_ports = vec![(80, 80), (9000, 9100)];
    w.exclude_outbound_ports = vec![(22, 22)];
    w.include_outbound_cidrs = vec![Cidr {
        addr: "10.1.2.3".parse().unwrap(),
        prefix_len: 8,
    }];
    w.exclude_outbound_cidrs = vec![Cidr {
        addr: "fd00::1".parse().unwrap(),
        prefix_len: 16,
    }];
    w.exclude_uids = vec![1337];
    let p = build_policy(&w, 7);
    assert_eq!(p.slot, 7);
    assert_eq!(
        p.flags,
        POLICY_OUTBOUND | POLICY_INCLUDE_PORTS | POLICY_INCLUDE_V4 | POLICY_INCLUDE_V6
    );
    assert_eq!(p.n_include_ports, 2);
    assert_eq!(p.include_ports[1], PortRange { lo: 9000, hi: 9100 });
    assert_eq!(p.n_include_v4, 1);
    // 10.0.0.0/8 in network order: first byte 10.
    assert_eq!(p.include_v4[0].addr.to_ne_bytes(), [10, 0, 0, 0]);
    assert_eq!(p.include_v4[0].mask.to_ne_bytes(), [255, 0, 0, 0]);
    assert_eq!(p.n_exclude_v6, 1);
    assert_eq!(p.exclude_v6[0].addr[0].to_ne_bytes(), [0xfd, 0, 0, 0]);
    assert_eq!(p.exclude_v6[0].mask[0].to_ne_bytes(), [0xff, 0xff, 0, 0]);
    assert_eq!((p.n_uids, p.uids[0]), (1, 1337));
    // No include list: every port and address.
    let p = build_policy(&wl(), 1);
    assert_eq!(p.flags, POLICY_OUTBOUND);
}

#[test]
fn addresses_round_trip_through_the_kernel_key_form() {
    for a in ["10.0.0.1:80", "[fd00::5]:443", "127.0.0.1:15001"] {
        let a: SocketAddr = a.parse().unwrap();
        let k = addr_key(a);
        let o = OrigDst {
            addr: k.addr,
            port: k.port,
            ..Default::default()
        };
        assert_eq!(orig_to_addr(&o), a);
    }
    // A dual-stack socket's mapped peer finds the IPv4 entry.
    let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
    assert_eq!(addr_key(mapped), addr_key("10.0.0.1:80".parse().unwrap()));
}
