//! The `mosn` command line: `version`, `validate` on good and bad configs, and `start`
//! refusing to run (without listening) on a bad config or without the privileges that
//! `fast_path: kernel` needs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mosn_tests::{FastPath, ProxyConfig, TempDir, free_port, mosn_bin, require_kernel};
use serde_json::Value;

/// `validate`, `version` and a failing `start` finish at once; this only catches a hang.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// Runs `cmd` to completion (killing it after [`EXIT_LIMIT`]) and returns its output.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > EXIT_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{cmd:?} still running after {EXIT_LIMIT:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// True if nothing listens on 127.0.0.1:`port` (we can bind it ourselves).
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn version_prints_the_version() {
    let out = run(Command::new(mosn_bin()).arg("version"));
    assert!(out.status.success(), "mosn version: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("mosn {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let kernel = lines.next().unwrap_or_default();
    assert!(
        kernel.starts_with("kernel programs: built in")
            || kernel.starts_with("kernel programs: not built in"),
        "second line says whether the kernel programs are embedded: {kernel:?}"
    );
}

#[test]
fn validate_accepts_the_examples() {
    for name in ["tcpproxy.json", "tcpproxy.yaml"] {
        let path = examples().join(name);
        let out = run(Command::new(mosn_bin())
            .arg("validate")
            .arg("-c")
            .arg(&path));
        assert!(
            out.status.success(),
            "validate {name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("config OK"),
            "validate {name}: {}",
            text(&out.stdout)
        );
        assert!(
            !text(&out.stderr).contains("error"),
            "validate {name}: {}",
            text(&out.stderr)
        );
    }
}

/// Every example validates; the TLS ones with certificates where `cargo xtask certs` puts
/// them (made here by the test PKI under the same file names, in a temp dir).
#[test]
fn validate_accepts_every_example() {
    let dir = mosn_tests::daemon::TempDir::new("examples");
    let pki = mosn_tests::tls::Pki::new(dir.path());
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (from, to) in [
        (&pki.ca, "ca.pem"),
        (&pki.server.cert, "server.pem"),
        (&pki.server.key, "server-key.pem"),
        (&pki.client.cert, "client.pem"),
        (&pki.client.key, "client-key.pem"),
    ] {
        std::fs::copy(from, certs.join(to)).unwrap();
    }
    let mut names: Vec<_> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "examples found: {names:?}");
    for path in names {
        let config = std::fs::read_to_string(&path).unwrap();
        let config = config.replace("examples/certs/", &format!("{}/", certs.display()));
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, config).unwrap();
        let out = run(Command::new(mosn_bin()).arg("validate").arg("-c").arg(&copy));
        assert!(
            out.status.success() && text(&out.stdout).contains("config OK"),
            "validate {}: {}{}",
            path.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// A bad config: how to break a good one, and what the error must say.
struct Bad {
    name: &'static str,
    /// Breaks the config (JSON value), or replaces the whole text.
    breaks: Breakage,
    /// Field path that must appear in the message.
    path: &'static str,
    /// Words of the reason that must appear in the message.
    reason: &'static [&'static str],
}

enum Breakage {
    Value(fn(&mut Value)),
    Text(fn(String) -> String),
}

fn listener(v: &mut Value) -> &mut Value {
    &mut v["servers"][0]["listeners"][0]
}

fn bad_configs() -> Vec<Bad> {
    vec![
        Bad {
            name: "bad address",
            breaks: Breakage::Value(|v| listener(v)["address"] = "127.0.0.1:notaport".into()),
            path: "servers[0].listeners[0].address",
            reason: &["invalid socket address", "notaport"],
        },
        Bad {
            name: "unknown cluster",
            breaks: Breakage::Value(|v| {
                listener(v)["filter_chains"][0]["filters"][0]["config"]["cluster"] = "nope".into()
            }),
            path: "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster",
            reason: &["unknown cluster", "nope"],
        },
        Bad {
            name: "bad fast_path",
            breaks: Breakage::Value(|v| listener(v)["fast_path"] = "turbo".into()),
            path: "servers[0].listeners[0].fast_path",
            reason: &["invalid fast_path", "turbo", "userspace"],
        },
        Bad {
            name: "bad lb_type",
            breaks: Breakage::Value(|v| {
                v["cluster_manager"]["clusters"][0]["lb_type"] = "LB_NOPE".into()
            }),
            path: "cluster_manager.clusters[0].lb_type",
            reason: &["unsupported lb_type", "LB_NOPE"],
        },
        Bad {
            name: "JSON syntax error",
            // A doubled comma after "bind_port": true; the message gives line and column.
            breaks: Breakage::Text(|t| {
                t.replacen("\"bind_port\": true,", "\"bind_port\": true,,", 1)
            }),
            path: "servers[0].listeners[0]",
            reason: &["key must be a string", "line ", "column "],
        },
        Bad {
            name: "wrong type",
            breaks: Breakage::Value(|v| listener(v)["bind_port"] = "yes".into()),
            path: "servers[0].listeners[0].bind_port",
            reason: &["invalid type", "expected a boolean"],
        },
        Bad {
            name: "wrong type (number as string)",
            breaks: Breakage::Value(|v| {
                v["cluster_manager"]["clusters"][0]["hosts"][0]["weight"] = "heavy".into()
            }),
            path: "cluster_manager.clusters[0].hosts[0].weight",
            reason: &["invalid type", "heavy"],
        },
    ]
}

/// Writes `bad` (built from a good config listening on `listen_port`) into `dir`.
fn write_bad(dir: &TempDir, bad: &Bad, listen_port: u16) -> PathBuf {
    let mut v = ProxyConfig::new(FastPath::Userspace, &["127.0.0.1:9".parse().unwrap()])
        .to_json(listen_port, free_port());
    let text = match bad.breaks {
        Breakage::Value(f) => {
            f(&mut v);
            serde_json::to_string_pretty(&v).unwrap()
        }
        Breakage::Text(f) => f(serde_json::to_string_pretty(&v).unwrap()),
    };
    dir.write(&format!("{}.json", bad.name.replace(' ', "_")), &text)
}

/// The `error: ...` lines of stderr.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error:")).collect()
}

fn check_message(what: &str, bad: &Bad, out: &Output) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} {}: exited 0; stderr: {stderr}",
        bad.name
    );
    let errors = error_lines(&stderr);
    assert!(
        !errors.is_empty(),
        "{what} {}: no `error:` line on stderr: {stderr}",
        bad.name
    );
    let line = errors
        .iter()
        .find(|l| l.contains(bad.path))
        .unwrap_or_else(|| {
            panic!(
                "{what} {}: no error names the field {}: {stderr}",
                bad.name, bad.path
            )
        });
    for word in bad.reason {
        assert!(
            line.contains(word),
            "{what} {}: the error lacks {word:?}: {line}",
            bad.name
        );
    }
}

#[test]
fn validate_rejects_bad_configs_with_field_path_and_reason() {
    let dir = TempDir::new("cli-validate");
    // A good base passes, so each failure is down to its one breakage.
    let good = dir.write(
        "good.json",
        &serde_json::to_string_pretty(
            &ProxyConfig::new(FastPath::Userspace, &["127.0.0.1:9".parse().unwrap()])
                .to_json(free_port(), free_port()),
        )
        .unwrap(),
    );
    let out = run(Command::new(mosn_bin())
        .arg("validate")
        .arg("-c")
        .arg(&good));
    assert!(
        out.status.success(),
        "the base config is valid: {}",
        text(&out.stderr)
    );
    for bad in bad_configs() {
        let path = write_bad(&dir, &bad, free_port());
        let out = run(Command::new(mosn_bin())
            .arg("validate")
            .arg("-c")
            .arg(&path));
        check_message("validate", &bad, &out);
    }
}

#[test]
fn start_refuses_bad_configs_and_listens_on_nothing() {
    let dir = TempDir::new("cli-start");
    for bad in bad_configs() {
        let port = free_port();
        let path = write_bad(&dir, &bad, port);
        let validate = run(Command::new(mosn_bin())
            .arg("validate")
            .arg("-c")
            .arg(&path));
        let out = run(Command::new(mosn_bin()).arg("start").arg("-c").arg(&path));
        check_message("start", &bad, &out);
        assert_eq!(
            error_lines(&text(&out.stderr)),
            error_lines(&text(&validate.stderr)),
            "start and validate report {} the same way",
            bad.name
        );
        assert!(
            port_is_free(port),
            "start {}: port {port} of the bad config is in use",
            bad.name
        );
    }
}

/// A config that validates but cannot start (the second listener's port is taken): exit
/// non-zero naming the listener, and the first listener is not left listening.
#[test]
fn start_fails_cleanly_when_a_port_is_taken() {
    let dir = TempDir::new("cli-bind");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let first_port = free_port();
    let mut v = ProxyConfig::new(FastPath::Userspace, &["127.0.0.1:9".parse().unwrap()])
        .to_json(first_port, free_port());
    let mut second = v["servers"][0]["listeners"][0].clone();
    second["name"] = "l2".into();
    second["address"] = format!("127.0.0.1:{taken_port}").into();
    v["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(second);
    let path = dir.write("two.json", &serde_json::to_string_pretty(&v).unwrap());
    let out = run(Command::new(mosn_bin()).arg("start").arg("-c").arg(&path));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "start with a taken port exited 0: {stderr}"
    );
    let errors = error_lines(&stderr);
    assert!(
        errors
            .iter()
            .any(|l| l.contains("l2") && l.contains(&taken_port.to_string())),
        "the error names the listener and its address: {stderr}"
    );
    assert!(
        port_is_free(first_port),
        "the first listener's port {first_port} is still in use"
    );
    drop(taken);
}

/// `fast_path: kernel` as an unprivileged user (nobody, no capabilities): start fails, naming
/// the listener and what is missing, and listens on nothing.
#[test]
fn start_kernel_fast_path_unprivileged_fails_with_reason() {
    if !require_kernel(
        "start_kernel_fast_path_unprivileged_fails_with_reason (needs root to setpriv)",
    ) {
        return;
    }
    // Everything nobody needs is in one 0755 dir: the binary and a 0644 config.
    let dir = TempDir::new("cli-unpriv");
    let bin = dir.path().join("mosn");
    std::fs::copy(mosn_bin(), &bin).expect("copy mosn into the temp dir");
    let port = free_port();
    let cfg = ProxyConfig::new(FastPath::Kernel, &["127.0.0.1:9".parse().unwrap()])
        .to_json(port, free_port());
    let path = dir.write("kernel.json", &serde_json::to_string_pretty(&cfg).unwrap());
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .arg("start")
        .arg("-c")
        .arg(&path));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "kernel fast path as nobody exited 0: {stderr}"
    );
    assert!(
        stderr.contains("needs root or CAP_BPF"),
        "stderr says what is missing: {stderr}"
    );
    let line = error_lines(&stderr)
        .into_iter()
        .find(|l| l.contains("needs root or CAP_BPF"))
        .unwrap_or_default();
    assert!(
        line.contains("l1"),
        "the error names the listener: {stderr}"
    );
    assert!(
        port_is_free(port),
        "port {port} in use after a failed start"
    );
}
