//! The privileged kernel and capture tests on a second kernel: Debian's 6.1 LTS, booted under
//! QEMU software emulation (TCG; nested KVM is not assumed), with the test binaries in a small
//! initramfs and their result read from the serial console.
//!
//! - The kernel is the newest `linux-image-6.1.0-*-amd64` apt knows (`apt-get download`, no
//!   install); its vmlinuz and the few modules the tests need (veth, nf_tables) are kept under
//!   `<cache>/vm/<version>/`, so a second run downloads nothing.
//! - The initramfs is two cpio archives, concatenated: a base (busybox, the host's tools the
//!   tests spawn with their shared libraries, python3's stdlib, the modules), cached per kernel
//!   and tool set, and a per-run archive with the freshly built test binaries, the daemon and
//!   `/init`.
//! - `/init` mounts proc, sys, devtmpfs, cgroup2, bpffs, brings up lo, runs each test binary
//!   with `CI=true` (so a skip fails) and prints `MOSN-VM-EXIT <binary> <status>` per binary
//!   and `MOSN-VM-DONE` at the end. The libtest `test result:` lines are counted like the
//!   host's. A missing marker (panic, hang: the run is bounded by [`VM_TIMEOUT`]) is a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Outcome, Totals, cache_dir, is_root, on_path, output, root, run};

/// The kernel series, as Debian names its packages (`linux-image-6.1.0-<abi>-amd64`).
const KERNEL_SERIES: &str = "6.1.0";
/// Host packages the VM run needs: (a binary it provides, the package).
const PACKAGES: [(&str, &str); 3] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
];
/// The integration test binaries (of `mosn-tests`) run in the VM: every privileged test of the
/// kernel splice and of transparent capture.
const TEST_BINARIES: [&str; 2] = ["kernel", "capture"];
/// Programs the tests and the daemon spawn, copied from the host with their libraries.
const GUEST_TOOLS: [&str; 15] = [
    "sh",
    "bash",
    "ip",
    "nsenter",
    "bpftool",
    "iptables-save",
    "nft",
    "curl",
    "python3",
    "timeout",
    "head",
    "seq",
    "date",
    "sleep",
    "cat",
];
/// Kernel modules loaded at boot, in this order (with their dependencies): the capture tests'
/// veth pairs, and nf_tables for `nft list ruleset` / `iptables-save` (the tests check that no
/// rule was added). crc32c_generic first: nf_tables needs libcrc32c, whose init allocates the
/// crc32c hash, a soft dependency busybox modprobe does not follow.
const GUEST_MODULES: [&str; 3] = ["veth", "crc32c_generic", "nf_tables"];
/// Environment of the tests in the VM. `CI`: a privileged test that cannot run fails instead of
/// skipping. The rest shrink the heaviest tests for software emulation (about 10x slower than
/// the host): the bulk transfer is 32 MiB each way instead of 256, the early-data test does 100
/// rounds each way instead of 500; every assertion is unchanged.
const GUEST_ENV: [(&str, &str); 4] = [
    ("CI", "true"),
    ("MOSN_TEST_BULK_MIB", "32"),
    ("MOSN_TEST_EARLY_ROUNDS", "100"),
    ("RUST_BACKTRACE", "1"),
];
/// Guest memory: the tests' transfers plus the initramfs, which lives in RAM.
const MEMORY: &str = "3G";
/// The whole VM run, boot to power-off; a run that has not printed its exit marker by then
/// is killed and fails.
const VM_TIMEOUT: Duration = Duration::from_secs(600);
/// Bumped when the base archive's layout changes, so a cached one is rebuilt.
const BASE_LAYOUT: u32 = 1;
/// Where host programs are looked for (not `$PATH`: a pyenv shim is no program to copy).
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

const EXIT_MARKER: &str = "MOSN-VM-EXIT ";
const DONE_MARKER: &str = "MOSN-VM-DONE";

fn vm_dir() -> PathBuf {
    cache_dir().join("vm")
}

/// QEMU, busybox and cpio: installed from apt when missing (root only). `Ok(false)` when they
/// are missing and cannot be installed; in CI that is an error.
pub fn ensure_packages() -> Result<bool> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    if !is_root() || !on_path("apt-get") {
        let why = format!("missing {missing:?} (not root or no apt-get)");
        if std::env::var_os("CI").is_some() {
            bail!("the second-kernel run must run in CI: {why}");
        }
        eprintln!("xtask: SKIP the second-kernel VM run: {why}");
        return Ok(false);
    }
    crate::apt_install(&missing)?;
    Ok(true)
}

/// The cached kernel: vmlinuz and a modules tree with only [`GUEST_MODULES`] and their
/// dependencies.
struct Kernel {
    version: String,
    dir: PathBuf,
}

impl Kernel {
    fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.version)
    }
}

/// The newest `linux-image-6.1.0-<abi>-amd64` in the apt lists (by ABI number), so no point
/// release is hard-coded.
fn newest_kernel_package() -> Result<Option<String>> {
    let search = || {
        output(Command::new("apt-cache").args([
            "search",
            "--names-only",
            &format!(
                "^linux-image-{}-[0-9]+-amd64$",
                KERNEL_SERIES.replace('.', "\\.")
            ),
        ]))
    };
    let mut list = search()?;
    if list.is_empty() && is_root() {
        run(Command::new("apt-get").arg("update"))?;
        list = search()?;
    }
    let prefix = format!("linux-image-{KERNEL_SERIES}-");
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let abi: u32 = name
                .strip_prefix(&prefix)?
                .strip_suffix("-amd64")?
                .parse()
                .ok()?;
            Some((abi, name.to_string()))
        })
        .max()
        .map(|(_, name)| name))
}

/// Downloads (once: the .deb stays in the cache) and unpacks the kernel package; see
/// [`Kernel`].
fn ensure_kernel() -> Result<Kernel> {
    let vm = vm_dir();
    std::fs::create_dir_all(&vm)?;
    let package = match newest_kernel_package() {
        Ok(Some(p)) => p,
        // No apt lists (or no apt): fall back to a kernel package cached by an earlier run.
        other => {
            let cached = std::fs::read_dir(&vm)?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".deb").map(str::to_string))
                .filter(|n| n.starts_with(&format!("linux-image-{KERNEL_SERIES}-")))
                .max();
            match (cached, other) {
                (Some(c), _) => c,
                (None, Err(e)) => return Err(e.context("finding the 6.1 kernel package")),
                (None, Ok(_)) => bail!(
                    "apt knows no linux-image-{KERNEL_SERIES}-*-amd64 (a Debian 12 \"bookworm\" source is needed)"
                ),
            }
        }
    };
    let version = package
        .strip_prefix("linux-image-")
        .expect("package name")
        .to_string();
    let kernel = Kernel {
        version,
        dir: vm.join(&package),
    };
    let stamp = format!("{GUEST_MODULES:?}");
    let done = kernel.dir.join("done");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(kernel);
    }
    let deb = vm.join(format!("{package}.deb"));
    let work = vm.join("unpack");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    if !deb.exists() {
        run(Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&work))?;
        let got = std::fs::read_dir(&work)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        std::fs::rename(got, &deb)?;
    }
    let _ = std::fs::remove_dir_all(&kernel.dir);
    let tree = work.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    // depmod over the whole tree gives the dependency list; only the closure of the modules
    // the tests need is kept (the whole tree is ~400 MB).
    let tree_modules = tree.join("lib/modules").join(&kernel.version);
    run(Command::new("busybox")
        .args(["depmod", "-b"])
        .arg(&tree)
        .arg(&kernel.version))?;
    let deps = std::fs::read_to_string(tree_modules.join("modules.dep"))?;
    let mut want: Vec<String> = Vec::new();
    let mut queue: Vec<String> = GUEST_MODULES
        .iter()
        .map(|m| {
            deps.lines()
                .filter_map(|l| l.split(':').next())
                .find(|p| p.ends_with(&format!("/{m}.ko")))
                .map(str::to_string)
                .with_context(|| format!("module {m} not in {package}"))
        })
        .collect::<Result<_>>()?;
    while let Some(m) = queue.pop() {
        if want.contains(&m) {
            continue;
        }
        let line = deps
            .lines()
            .find(|l| l.split(':').next() == Some(m.as_str()))
            .with_context(|| format!("{m} not in modules.dep"))?;
        queue.extend(
            line.split(':')
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .map(String::from),
        );
        want.push(m);
    }
    std::fs::create_dir_all(kernel.modules())?;
    for m in &want {
        let to = kernel.modules().join(m);
        std::fs::create_dir_all(to.parent().expect("module dir"))?;
        std::fs::copy(tree_modules.join(m), &to)?;
    }
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        std::fs::copy(tree_modules.join(f), kernel.modules().join(f))?;
    }
    run(Command::new("busybox")
        .args(["depmod", "-b"])
        .arg(&kernel.dir)
        .arg(&kernel.version))?;
    std::fs::copy(
        tree.join("boot")
            .join(format!("vmlinuz-{}", kernel.version)),
        kernel.vmlinuz(),
    )?;
    std::fs::remove_dir_all(&work)?;
    std::fs::write(&done, stamp)?;
    Ok(kernel)
}

/// A host program's path, looked up in [`SYSTEM_DIRS`].
fn system_program(name: &str) -> Result<PathBuf> {
    SYSTEM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{name} not found in {SYSTEM_DIRS:?} (cargo xtask setup installs the test tools)"
            )
        })
}

/// A staging tree for one cpio archive.
struct Stage(PathBuf);

impl Stage {
    fn new(dir: PathBuf) -> Result<Stage> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Stage(dir))
    }

    fn at(&self, guest: &Path) -> PathBuf {
        self.0.join(guest.strip_prefix("/").unwrap_or(guest))
    }

    fn symlink(&self, guest: &Path, target: &Path) -> Result<()> {
        let at = self.at(guest);
        std::fs::create_dir_all(at.parent().expect("parent"))?;
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, &at).with_context(|| format!("symlink {}", at.display()))
    }

    fn write(&self, guest: &str, contents: &str, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let at = self.at(Path::new(guest));
        std::fs::create_dir_all(at.parent().expect("parent"))?;
        std::fs::write(&at, contents)?;
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Copies the host file `host` to the same path in the guest: the file itself at its
    /// canonical path, a symlink at `host` if that differs (so `iptables-save` keeps its name
    /// for xtables-nft-multi), and, for ELF files, every shared library `ldd` lists.
    fn copy_host(&self, host: &Path) -> Result<()> {
        let real = host
            .canonicalize()
            .with_context(|| format!("{}", host.display()))?;
        let named = host
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .map_or_else(
                || host.to_path_buf(),
                |p| p.join(host.file_name().expect("file")),
            );
        let to = self.at(&real);
        if !to.exists() {
            std::fs::create_dir_all(to.parent().expect("parent"))?;
            std::fs::copy(&real, &to).with_context(|| format!("copy {}", real.display()))?;
            if is_elf(&real) {
                for lib in shared_libraries(&real)? {
                    self.copy_host(&lib)?;
                }
            }
        }
        if named != real {
            self.symlink(&named, &real)?;
        }
        Ok(())
    }

    /// Writes the tree as a newc cpio archive (the format the kernel unpacks).
    fn cpio(&self, to: &Path) -> Result<()> {
        let out = std::fs::File::create(to)?;
        let mut child = Command::new("sh")
            .args([
                "-c",
                "find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet",
            ])
            .current_dir(&self.0)
            .stdout(out)
            .spawn()
            .context("spawning cpio")?;
        let status = child.wait()?;
        if !status.success() {
            bail!("cpio of {} failed: {status}", self.0.display());
        }
        Ok(())
    }
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The libraries (and the dynamic loader) `ldd` lists for `bin`; none for a static binary.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output()?;
    // "not a dynamic executable" (static): exit status 1, nothing to copy.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// The base archive: everything but the test binaries. Cached per kernel, tool set and layout.
fn ensure_base(kernel: &Kernel) -> Result<PathBuf> {
    let key = format!(
        "{BASE_LAYOUT} {} {GUEST_TOOLS:?} {GUEST_MODULES:?}",
        kernel.version
    );
    let archive = kernel.dir.join("base.cpio");
    let stamp = kernel.dir.join("base.stamp");
    if archive.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        return Ok(archive);
    }
    eprintln!(
        "xtask: building the VM's base initramfs for {}",
        kernel.version
    );
    let stage = Stage::new(vm_dir().join("stage-base"))?;
    // Debian's merged /usr, so library paths from ldd resolve either way.
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::fs::create_dir_all(stage.0.join(target))?;
        std::os::unix::fs::symlink(target, stage.0.join(link))?;
    }
    for d in ["proc", "sys", "dev", "tmp", "run", "root", "etc", "var"] {
        std::fs::create_dir_all(stage.0.join(d))?;
    }
    // iproute2 keeps named namespaces in /var/run/netns; the tests use /run/netns.
    std::os::unix::fs::symlink("../run", stage.0.join("var/run"))?;
    stage.copy_host(&system_program("busybox")?)?;
    // The kernel's module autoloader (veth, nf_tables and friends on first use).
    stage.symlink(
        Path::new("/usr/sbin/modprobe"),
        Path::new("/usr/bin/busybox"),
    )?;
    for tool in GUEST_TOOLS {
        stage.copy_host(&system_program(tool)?)?;
    }
    // python3's standard library (the capture tests' echo servers), without what no test
    // imports.
    let python = system_program("python3")?.canonicalize()?;
    let stdlib = Path::new("/usr/lib").join(python.file_name().expect("python3.x"));
    run(Command::new("cp")
        .arg("-a")
        .arg(&stdlib)
        .arg(stage.at(Path::new("/usr/lib"))))?;
    let guest_stdlib = stage.at(&stdlib);
    for entry in std::fs::read_dir(&guest_stdlib)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if [
            "test",
            "idlelib",
            "tkinter",
            "turtledemo",
            "ensurepip",
            "lib2to3",
            "pydoc_data",
            "site-packages",
            "dist-packages",
        ]
        .contains(&name.as_str())
            || name.starts_with("config-")
        {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    for entry in std::fs::read_dir(stdlib.join("lib-dynload"))? {
        let path = entry?.path();
        for lib in shared_libraries(&path)? {
            stage.copy_host(&lib)?;
        }
    }
    for f in ["/etc/protocols", "/etc/services", "/etc/ethertypes"] {
        if Path::new(f).exists() {
            stage.copy_host(Path::new(f))?;
        }
    }
    stage.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    stage.write("/etc/group", "root:x:0:\n", 0o644)?;
    run(Command::new("cp")
        .arg("-a")
        .arg(kernel.dir.join("lib"))
        .arg(stage.at(Path::new("/usr"))))?;
    let tmp = archive.with_extension("cpio.tmp");
    stage.cpio(&tmp)?;
    std::fs::rename(&tmp, &archive)?;
    std::fs::write(&stamp, key)?;
    std::fs::remove_dir_all(&stage.0)?;
    Ok(archive)
}

/// Builds the VM's test binaries and the daemon (release, like the host suite) and returns
/// (test binaries by name, the daemon).
fn build_test_binaries() -> Result<(Vec<(String, PathBuf)>, PathBuf)> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "--no-run",
        "-p",
        "mosn-tests",
        "--message-format=json-render-diagnostics",
    ]);
    for t in TEST_BINARIES {
        cmd.args(["--test", t]);
    }
    eprintln!("xtask: {cmd:?}");
    let out = cmd
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("spawning cargo")?;
    if !out.status.success() {
        bail!("building the VM's test binaries failed: {}", out.status);
    }
    let (mut tests, mut daemon) = (Vec::new(), None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        if name == "mosn-under-test" {
            daemon = Some(PathBuf::from(exe));
        } else if TEST_BINARIES.contains(&name) && msg["profile"]["test"] == true {
            tests.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    // The daemon binary is built for integration tests but cargo reports it only when it was
    // (re)built in this invocation; it sits next to deps/ either way.
    let daemon = match daemon {
        Some(d) => d,
        None => {
            let (_, first) = tests.first().context("cargo reported no test binary")?;
            first
                .parent()
                .and_then(Path::parent)
                .map(|d| d.join("mosn-under-test"))
                .filter(|d| d.is_file())
                .context("mosn-under-test not found next to the test binaries")?
        }
    };
    tests.sort_by_key(|(name, _)| TEST_BINARIES.iter().position(|t| t == name));
    if tests.len() != TEST_BINARIES.len() {
        bail!("expected test binaries {TEST_BINARIES:?}, cargo reported {tests:?}");
    }
    Ok((tests, daemon))
}

/// Single-quotes `s` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `/init`: the VM's whole life. Its output is the serial console, which xtask reads.
fn init_script(tests: &[(String, PathBuf)], args: &[String]) -> String {
    let env: String = GUEST_ENV
        .iter()
        .map(|(k, v)| format!("export {k}={}\n", quote(v)))
        .collect();
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let args = args.join(" ");
    let runs: String = tests
        .iter()
        .map(|(name, _)| {
            format!(
                "echo \"MOSN-VM-RUN {name}\"\n/mosn/tests/{name} {args}\necho \"{EXIT_MARKER}{name} $?\"\n"
            )
        })
        .collect();
    format!(
        r#"#!/usr/bin/busybox sh
bb=/usr/bin/busybox
$bb mount -t devtmpfs dev /dev
exec </dev/null >/dev/console 2>&1
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup
$bb mount -t bpf bpf /sys/fs/bpf
$bb mkdir -p /tmp && $bb chmod 1777 /tmp
$bb mount -t tmpfs run /run
echo /usr/sbin/modprobe > /proc/sys/kernel/modprobe
for m in {modules}; do $bb modprobe $m || echo "MOSN-VM: modprobe $m failed"; done
export PATH=/usr/sbin:/usr/bin HOME=/root TMPDIR=/tmp MOSN_BIN=/mosn/mosn-under-test
{env}ip link set lo up
$bb hostname mosn-vm
echo "MOSN-VM-KERNEL $($bb uname -r)"
cd /tmp
{runs}echo "{DONE_MARKER}"
$bb poweroff -f
"#,
        modules = GUEST_MODULES.join(" "),
    )
}

/// The per-run archive: test binaries, the daemon, the examples (read by the capture tests
/// from their source path), `/init`. `/init` leaves `/tmp` as the initramfs's own: a tmpfs
/// mounted over it hid a checkout under `/tmp` (CI's clone), whose `tests/` and `examples/`
/// the archive carries at their source paths.
fn run_archive(tests: &[(String, PathBuf)], daemon: &Path, args: &[String]) -> Result<PathBuf> {
    let stage = Stage::new(vm_dir().join("stage-run"))?;
    let copy_bin = |from: &Path, guest: &str| -> Result<()> {
        let to = stage.at(Path::new(guest));
        std::fs::create_dir_all(to.parent().expect("parent"))?;
        // Without debug info: a fifth of the size, and the initramfs is unpacked in emulation.
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(from)
            .arg(&to))?;
        for lib in shared_libraries(from)? {
            stage.copy_host(&lib)?;
        }
        Ok(())
    };
    for (name, exe) in tests {
        copy_bin(exe, &format!("/mosn/tests/{name}"))?;
    }
    copy_bin(daemon, "/mosn/mosn-under-test")?;
    // The capture tests read `<tests>/../examples/...`: the path needs `tests/` to exist.
    std::fs::create_dir_all(stage.at(&root().join("tests")))?;
    let examples = root().join("examples");
    let guest_examples = stage.at(&examples);
    std::fs::create_dir_all(guest_examples.parent().expect("parent"))?;
    run(Command::new("cp")
        .arg("-a")
        .arg(&examples)
        .arg(&guest_examples))?;
    stage.write("/init", &init_script(tests, args), 0o755)?;
    let archive = vm_dir().join("run.cpio");
    stage.cpio(&archive)?;
    std::fs::remove_dir_all(&stage.0)?;
    Ok(archive)
}

/// Builds what the VM needs, boots it, and counts its tests. `args` are passed to every test
/// binary, as on the host. An `Err` is a run that could not start; a run that started and
/// failed (a test, a missing marker, the time limit) is an `Outcome` with `success == false`.
pub fn run_tests(args: &[String]) -> Result<Outcome> {
    let kernel = ensure_kernel()?;
    let base = ensure_base(&kernel)?;
    let (tests, daemon) = build_test_binaries()?;
    let extra = run_archive(&tests, &daemon, args)?;
    // The kernel unpacks concatenated cpio archives in order.
    let initrd = vm_dir().join("initrd.cpio");
    {
        let mut out = std::fs::File::create(&initrd)?;
        for part in [&base, &extra] {
            std::io::copy(&mut std::fs::File::open(part)?, &mut out)?;
        }
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-smp",
        "1",
        "-m",
        MEMORY,
        "-nodefaults",
        "-no-reboot",
    ])
    .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
    .arg("-kernel")
    .arg(kernel.vmlinuz())
    .arg("-initrd")
    .arg(&initrd)
    .args([
        "-append",
        "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    eprintln!("xtask: {cmd:?}");
    let started = Instant::now();
    let mut child = cmd.spawn().context("spawning qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let tag = format!("[vm {}] ", kernel.version);
    let mut out = std::io::stdout();
    let (mut totals, mut exits, mut done) = (Totals::default(), Vec::new(), false);
    let deadline = started + VM_TIMEOUT;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                writeln!(out, "{tag}{line}")?;
                totals.add(&line);
                if let Some(rest) = line.strip_prefix(EXIT_MARKER) {
                    exits.push(rest.to_string());
                } else if line == DONE_MARKER {
                    done = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    let elapsed = started.elapsed();
    let mut problems = Vec::new();
    if timed_out {
        problems.push(format!("killed after {VM_TIMEOUT:?}"));
    }
    for (name, _) in &tests {
        match exits
            .iter()
            .find_map(|e| e.strip_prefix(&format!("{name} ")))
        {
            Some("0") => {}
            Some(code) => problems.push(format!("{name} exited with status {code}")),
            None => problems.push(format!("{name} did not finish")),
        }
    }
    if !done {
        problems.push(format!("no {DONE_MARKER} marker (qemu: {status})"));
    }
    println!(
        "xtask: VM run on {} took {:.0?}: {} passed, {} failed, {} skipped{}",
        kernel.version,
        elapsed,
        totals.passed,
        totals.failed,
        totals.ignored,
        if problems.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", problems.join("; "))
        }
    );
    Ok(Outcome {
        totals,
        success: problems.is_empty(),
    })
}
