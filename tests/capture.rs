//! Transparent capture, tested for real: the daemon in a network namespace it shares with a
//! workload (a child cgroup the test creates), a server in a second namespace behind a veth
//! pair, a third "pod" namespace with a veth to the daemon's (a workload in its own network
//! namespace, as in Kubernetes), real clients (bash's /dev/tcp, python3), the kernel's own program list (bpftool)
//! and firewall state (iptables-save, nft).
//!
//! Needs root and the kernel programs; without root it says SKIP, and in CI that fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mosn_tests::capture_env::*;
use mosn_tests::mosn_bin;

#[test]
fn sidecar_capture_outbound_inbound_fail_open_and_adoption() {
    let Some(_serial) = begin("sidecar_capture_outbound_inbound_fail_open_and_adoption") else {
        return;
    };
    let rules_before = firewall_rules(None);
    let mut env = Env::new("sc");
    let server = env.server_ip();
    let workload_ip = env.workload_ip();
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
    let Some(_serial) = begin("node_mode_follows_the_workloads_directory") else {
        return;
    };
    let mut env = Env::new("nd");
    let server = env.server_ip();
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
    let Some(_serial) = begin("workload_in_another_netns_goes_direct") else {
        return;
    };
    let mut env = Env::new("on");
    let (server, host, pod) = (env.server_ip(), env.host_ip_to_pod(), env.pod_ip());
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
        format!("from {} hello", env.workload_ip())
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
    let Some(_serial) = begin("sk_lookup_never_hands_over_a_listener_of_another_netns") else {
        return;
    };
    let mut env = Env::new("il");
    let (host, pod) = (env.host_ip_to_pod(), env.pod_ip());
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
    let Some(_serial) = begin("a_kernel_without_sk_lookup_loses_only_inbound_capture") else {
        return;
    };
    let mut env = Env::new("fp");
    let server = env.server_ip();
    let workload_ip = env.workload_ip();
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
