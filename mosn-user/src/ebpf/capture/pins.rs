//! The pin directory: where links live per workload, removing pins, the `mosn stop`
//! uninstall, adopting pinned maps, and the raw `bpf(2)` link calls aya 0.14 lacks.

use super::*;

pub(super) fn link_dir(pin: &Path, name: &str, cg_id: u64) -> PathBuf {
    pin.join("links")
        .join(format!("wl@{cg_id}@{}", name.replace('.', "^")))
}

/// Unpins every workload link dir of cgroup `cg_id` that is not `name`'s, and every dir of
/// `name` on another cgroup.
pub(super) fn remove_other_links(pin: &Path, name: &str, cg_id: u64) {
    let Ok(rd) = std::fs::read_dir(pin.join("links")) else {
        return;
    };
    let keep = link_dir(pin, name, cg_id);
    let enc = name.replace('.', "^");
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let mut parts = f.splitn(3, '@');
        if parts.next() != Some("wl") {
            continue;
        }
        let (cg, n) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if e.path() != keep && (cg == cg_id.to_string() || n == enc) {
            remove_pins(&e.path());
        }
    }
}

/// Removes a pin directory (or single pin): unpinned links with no open fd detach.
pub(super) fn remove_pins(path: &Path) {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = r
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "could not remove pin");
    }
}

/// Removes everything pinned under `pin`: links (detaching the programs from every cgroup
/// and the network namespace), programs and maps. The `mosn stop` uninstall path.
pub fn uninstall(pin: &Path) -> Result<(), CaptureError> {
    if !pin.exists() {
        return Ok(());
    }
    // Links first, so no program runs against half-removed maps.
    remove_pins(&pin.join("links"));
    remove_pins(&pin.join("progs"));
    remove_pins(&pin.join("maps"));
    std::fs::remove_dir_all(pin).or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(CaptureError::Io {
                path: pin.to_path_buf(),
                source: e,
            })
        }
    })
}

pub(super) fn pinned_object_id(pin: &Path) -> Option<u64> {
    let md = MapData::from_pin(pin.join("maps").join(GLOBALS_MAP)).ok()?;
    let a: Array<MapData, CaptureGlobals> = Map::from_map_data(md).ok()?.try_into().ok()?;
    a.get(&0, 0).ok().map(|g| g.object_id)
}

/// Whether every program this kernel runs is pinned (a previous daemon on a kernel that
/// lacked one, or with a feature forced off, left it out: then everything is reloaded).
pub(super) fn all_programs_pinned(pin: &Path, enabled: &Enabled) -> bool {
    PROGRAMS
        .iter()
        .filter(|p| enabled.has(p))
        .all(|p| pin.join("progs").join(p).exists())
}

pub(super) fn open_map<T>(pin: &Path, name: &'static str) -> Result<T, CaptureError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let md = MapData::from_pin(pin.join("maps").join(name))?;
    Ok(Map::from_map_data(md)?.try_into()?)
}

impl Maps {
    pub(super) fn open(pin: &Path) -> Result<Maps, CaptureError> {
        Ok(Maps {
            policy: open_map(pin, POLICY_MAP)?,
            cgroup_cache: open_map(pin, CGROUP_CACHE_MAP)?,
            orig: open_map(pin, ORIG_MAP)?,
            listeners: open_map(pin, LISTENERS_MAP)?,
            inbound: open_map(pin, INBOUND_MAP)?,
            globals: open_map(pin, GLOBALS_MAP)?,
        })
    }
}

pub(in crate::ebpf) fn prog(
    name: &'static str,
) -> impl FnOnce(aya::programs::ProgramError) -> CaptureError {
    move |source| CaptureError::Program { name, source }
}

/// `BPF_CGROUP_GETSOCKOPT` from the kernel UAPI (`enum bpf_attach_type`).
pub(super) const BPF_CGROUP_GETSOCKOPT: u32 = 21;
/// `BPF_SK_MSG_VERDICT` (`enum bpf_attach_type`).
pub(super) const BPF_SK_MSG_VERDICT: u32 = 7;
pub(super) const BPF_OBJ_PIN: libc::c_long = 6;
pub(super) const BPF_PROG_ATTACH: libc::c_long = 8;
pub(super) const BPF_LINK_CREATE: libc::c_long = 28;

pub(in crate::ebpf) fn bpf(
    cmd: libc::c_long,
    attr: &mut [u64; 16],
) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a zeroed, 128-byte `union bpf_attr` with the fields of `cmd` set; the
    // kernel reads at most its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Links the getsockopt program to a cgroup and pins the link. aya 0.14 can attach
/// `CgroupSockopt` but cannot turn its link into a pinnable `FdLink`, so this makes the
/// `BPF_LINK_CREATE` and `BPF_OBJ_PIN` calls itself.
pub(super) fn link_getsockopt(
    program: &CgroupSockopt,
    cgroup: &impl AsFd,
    path: &Path,
) -> Result<(), CaptureError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let pfd = program.fd().map_err(prog(GETSOCKOPT_PROG))?;
    let mut attr = [0u64; 16];
    // link_create: prog_fd u32, target_fd u32, attach_type u32, flags u32.
    attr[0] = u64::from(pfd.as_fd().as_raw_fd() as u32)
        | (u64::from(cgroup.as_fd().as_raw_fd() as u32) << 32);
    attr[1] = u64::from(BPF_CGROUP_GETSOCKOPT);
    let link = bpf(BPF_LINK_CREATE, &mut attr).map_err(io_err(path))?;
    // SAFETY: the kernel returned a new link fd that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(link as i32) };
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io_err(path)(std::io::Error::other(e)))?;
    let mut attr = [0u64; 16];
    // obj_pin: pathname u64, bpf_fd u32, file_flags u32.
    attr[0] = cpath.as_ptr() as u64;
    attr[1] = u64::from(link.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut attr).map_err(io_err(path))?;
    Ok(())
}

pub(super) fn fd_link<L>(l: L) -> Result<FdLink, CaptureError>
where
    FdLink: TryFrom<L, Error = aya::programs::links::LinkError>,
{
    FdLink::try_from(l).map_err(CaptureError::Link)
}

pub(in crate::ebpf) fn pin_link(link: FdLink, path: &Path) -> Result<PinnedLink, CaptureError> {
    link.pin(path).map_err(|source| CaptureError::Pin {
        path: path.to_path_buf(),
        source,
    })
}
