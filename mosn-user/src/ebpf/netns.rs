//! Network namespaces and capture: the programs hand a connection to a proxy listener only
//! when that listener is in the connection's own network namespace.
//!
//! A workload in its own namespace (a Kubernetes pod) whose cgroup is captured while the
//! proxy runs in another one (the host's, as a DaemonSet) must not be redirected: the
//! listener's address (127.0.0.1:15001) is, inside the pod, the pod's own loopback, and
//! every connect would be refused. Both directions compare network namespace cookies (64-bit
//! ids the kernel never reuses); the daemon reads its listeners' cookies with
//! `getsockopt(SO_NETNS_COOKIE)` (Linux >= 5.14) into `CaptureGlobals`.
//!
//! - **Outbound** (`cgroup/connect4/6`): the program compares `bpf_get_netns_cookie(ctx)`
//!   (the connecting socket's namespace; Linux >= 5.7 for this program type, probed at
//!   startup by the feature table in `probe.rs`) with `outbound_netns`. Another namespace:
//!   the connect goes direct and counts as `Stat::OtherNetns`.
//! - **Inbound** (`sk_lookup`): sk_lookup programs have no `bpf_get_netns_cookie`, and
//!   `bpf_sk_assign` happily selects a listener of another namespace. So each attachment
//!   gets its own instance of `mosn_sk_lookup`, loaded with the cookie of the namespace it is
//!   attached to as a read-only global ([`SK_LOOKUP_NETNS_GLOBAL`], frozen `.rodata`); the
//!   program assigns the inbound listener only when `inbound_netns` equals it. The instance
//!   shares the pinned maps and lives as long as its link, pinned as
//!   `links/lookup@<netns cookie>`. The pinned `progs/mosn_sk_lookup` (cookie 0) is only the
//!   template: loaded at install so a program the verifier rejects fails there, never
//!   attached.
//!
//! Adoption: a restarted daemon in the same namespace finds `lookup@<its cookie>` and keeps
//! it (the instance already carries the right cookie: no new program). Restarted in another
//! namespace it attaches a new instance there; the link left in the old namespace keeps
//! running but never assigns (its cookie is not the listener's) and counts its connections as
//! `OtherNetns` bypasses; `mosn stop` removes it with every other pin. Keying pins by cookie
//! instead of namespace inode also means a new namespace that reuses a dead one's inode number
//! is never mistaken for it.
//!
//! Node mode later: one instance per pod namespace, each knowing its namespace's cookie, and
//! the pods' listener sockets in a SOCKHASH keyed by netns cookie, which each instance looks
//! up with its own constant: the same per-attachment constant, no other change of shape.
//!
//! On a kernel without `SO_NETNS_COOKIE` the cookies stay 0 and the checks are off (one
//! warning): capture then works as before for a workload sharing the proxy's namespace.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Once;

use aya::EbpfLoader;
use aya::programs::SkLookup;
use aya::programs::links::FdLink;
use mosn_ebpf_common::capture::{SK_LOOKUP_NETNS_GLOBAL, SK_LOOKUP_PROG};
use tracing::{info, warn};

use super::capture::{CAPTURE_OBJECT, CaptureError, io_err, pin_link, prog};

/// `SO_NETNS_COOKIE` (`include/uapi/asm-generic/socket.h`), Linux >= 5.14.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The network namespace cookie of a socket.
pub fn socket_netns_cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a live u64.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cookie of the daemon's own network namespace (read from a fresh unbound socket).
pub fn own_netns_cookie() -> io::Result<u64> {
    let s = std::os::unix::net::UnixDatagram::unbound()?;
    socket_netns_cookie(s.as_fd())
}

/// The namespace cookie of a proxy listener for `CaptureGlobals`, or 0 (checks off) when the
/// kernel cannot say, with one warning per daemon.
pub fn listener_netns(listener: BorrowedFd<'_>) -> u64 {
    static WARN: Once = Once::new();
    match socket_netns_cookie(listener) {
        Ok(c) => c,
        Err(e) => {
            WARN.call_once(|| {
                warn!(
                    error = %e,
                    "getsockopt(SO_NETNS_COOKIE) failed (Linux >= 5.14 needed): capture cannot tell network namespaces apart; a captured workload in another namespace than mosn's will have its connections redirected to nothing"
                );
            });
            0
        }
    }
}

/// Attaches an instance of `mosn_sk_lookup` that knows the daemon's network namespace to
/// that namespace, unless a previous daemon in the same namespace did (its pinned link is
/// kept). The pin is `links/lookup@<netns cookie>` (`lookup@ino<inode>` when the kernel has
/// no namespace cookies, the instance then carrying 0 like the listener's unknown cookie).
pub fn attach_sk_lookup(pin: &Path) -> Result<(), CaptureError> {
    let netns = Path::new("/proc/self/ns/net");
    let (cookie, key) = match own_netns_cookie() {
        Ok(c) => (c, c.to_string()),
        Err(_) => {
            let ino = std::fs::metadata(netns).map_err(io_err(netns))?.ino();
            (0, format!("ino{ino}"))
        }
    };
    let link = pin.join("links").join(format!("lookup@{key}"));
    if link.exists() {
        return Ok(());
    }
    // The whole object again (its maps are the pinned ones, reused by name), with this
    // namespace's cookie in `.rodata`; only the sk_lookup program is loaded from it.
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin.join("maps"))
        .override_global(SK_LOOKUP_NETNS_GLOBAL, &cookie, true)
        .load(CAPTURE_OBJECT)?;
    let p: &mut SkLookup = ebpf
        .program_mut(SK_LOOKUP_PROG)
        .ok_or(CaptureError::Missing(SK_LOOKUP_PROG))?
        .try_into()
        .map_err(prog(SK_LOOKUP_PROG))?;
    p.load().map_err(prog(SK_LOOKUP_PROG))?;
    let f = std::fs::File::open(netns).map_err(io_err(netns))?;
    let id = p.attach(f).map_err(prog(SK_LOOKUP_PROG))?;
    let l = p.take_link(id).map_err(prog(SK_LOOKUP_PROG))?;
    pin_link(FdLink::from(l), &link)?;
    info!(
        netns_cookie = cookie,
        "sk_lookup attached to the daemon's network namespace"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_in_the_daemons_own_namespace() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = own_netns_cookie().unwrap();
        assert_ne!(own, 0);
        assert_eq!(socket_netns_cookie(l.as_fd()).unwrap(), own);
        assert_eq!(listener_netns(l.as_fd()), own);
    }

    /// A pin of the globals layout before the netns cookies (96 bytes), even with this
    /// build's object id, is replaced rather than adopted: its programs read other offsets.
    #[test]
    fn pins_of_the_old_globals_layout_are_not_adopted() {
        use crate::ebpf::capture::{
            Capture, capture_or_skip, object_id, test_config_for, uninstall,
        };
        use mosn_ebpf_common::capture::GLOBALS_MAP;
        if !capture_or_skip() {
            return;
        }
        let pin = Path::new("/sys/fs/bpf").join(format!("mosn-ut-layout-{}", std::process::id()));
        let cfg = test_config_for(&pin);
        drop(Capture::install(&cfg, &crate::ebpf::KernelFeatures::probe(&[])).expect("install"));
        let conf = pin.join("maps").join(GLOBALS_MAP);
        std::fs::remove_file(&conf).unwrap();
        let mut value: Vec<String> = object_id()
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        value.resize(96, "00".into());
        let bpftool = |args: &[&str]| {
            let out = std::process::Command::new("bpftool")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bpftool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let conf_s = conf.to_str().unwrap();
        bpftool(&[
            "map",
            "create",
            conf_s,
            "type",
            "array",
            "key",
            "4",
            "value",
            "96",
            "entries",
            "1",
            "name",
            GLOBALS_MAP,
        ]);
        let mut update = vec![
            "map", "update", "pinned", conf_s, "key", "0", "0", "0", "0", "value", "hex",
        ];
        update.extend(value.iter().map(String::as_str));
        bpftool(&update);
        let c = Capture::install(&cfg, &crate::ebpf::KernelFeatures::probe(&[]))
            .expect("install over the old layout");
        assert!(!c.adopted(), "an old-layout pin must not be adopted");
        drop(c);
        uninstall(&pin).unwrap();
    }
}
