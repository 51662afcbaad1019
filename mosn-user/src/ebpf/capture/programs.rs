//! Loading the capture object (only the programs of features this kernel runs) and pinning
//! them, or adopting the programs a previous daemon pinned.

use super::*;

impl Programs {
    /// Loads the object (maps created pinned under `pin/maps`), loads and pins every program.
    pub(super) fn load(pin: &Path, enabled: &Enabled) -> Result<(Programs, Ebpf), CaptureError> {
        let maps_dir = pin.join("maps");
        std::fs::create_dir_all(&maps_dir).map_err(io_err(&maps_dir))?;
        let progs_dir = pin.join("progs");
        std::fs::create_dir_all(&progs_dir).map_err(io_err(&progs_dir))?;
        std::fs::create_dir_all(pin.join("links")).map_err(io_err(pin))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .load(CAPTURE_OBJECT)
            .map_err(|e| {
                let text = format!("{e:?}");
                if text.contains("EPERM") || text.contains("Operation not permitted") {
                    CaptureError::NotPermitted(e.to_string())
                } else {
                    CaptureError::Load(e)
                }
            })?;
        fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
        where
            &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
        {
            ebpf.program_mut(name)
                .ok_or(CaptureError::Missing(name))?
                .try_into()
                .map_err(prog(name))
        }
        typed::<CgroupSockAddr>(&mut ebpf, CONNECT4_PROG)?
            .load()
            .map_err(prog(CONNECT4_PROG))?;
        typed::<CgroupSockAddr>(&mut ebpf, CONNECT6_PROG)?
            .load()
            .map_err(prog(CONNECT6_PROG))?;
        typed::<SockOps>(&mut ebpf, SOCKOPS_PROG)?
            .load()
            .map_err(prog(SOCKOPS_PROG))?;
        typed::<SockOps>(&mut ebpf, SOCKOPS_MSG_PROG)?
            .load()
            .map_err(prog(SOCKOPS_MSG_PROG))?;
        if enabled.getsockopt {
            typed::<CgroupSockopt>(&mut ebpf, GETSOCKOPT_PROG)?
                .load()
                .map_err(prog(GETSOCKOPT_PROG))?;
        }
        if enabled.sk_lookup {
            typed::<SkLookup>(&mut ebpf, SK_LOOKUP_PROG)?
                .load()
                .map_err(prog(SK_LOOKUP_PROG))?;
        }
        if enabled.sk_msg {
            typed::<SkMsg>(&mut ebpf, SK_MSG_PROG)?
                .load()
                .map_err(prog(SK_MSG_PROG))?;
        }
        for name in PROGRAMS.into_iter().filter(|p| enabled.has(p)) {
            let p = ebpf.program_mut(name).ok_or(CaptureError::Missing(name))?;
            p.pin(progs_dir.join(name))
                .map_err(|source| CaptureError::Pin {
                    path: progs_dir.join(name),
                    source,
                })?;
        }
        // sk_msg is attached to the SOCKHASH itself: the attachment belongs to the (pinned)
        // map and goes with it. aya would detach it when its link handle drops, so attach
        // with the raw call.
        if enabled.sk_msg {
            let local: SockHash<MapData, SockKey> = open_map(pin, LOCAL_MAP)?;
            let p: &mut SkMsg = ebpf
                .program_mut(SK_MSG_PROG)
                .ok_or(CaptureError::Missing(SK_MSG_PROG))?
                .try_into()
                .map_err(prog(SK_MSG_PROG))?;
            let pfd = p.fd().map_err(prog(SK_MSG_PROG))?;
            let mut attr = [0u64; 16];
            // prog_attach: target_fd u32, attach_bpf_fd u32, attach_type u32, attach_flags u32.
            attr[0] = u64::from(local.fd().as_fd().as_raw_fd() as u32)
                | (u64::from(pfd.as_fd().as_raw_fd() as u32) << 32);
            attr[1] = u64::from(BPF_SK_MSG_VERDICT);
            bpf(BPF_PROG_ATTACH, &mut attr).map_err(io_err(&pin.join("maps").join(LOCAL_MAP)))?;
        }
        let progs = Programs::from_pins(pin, enabled)?;
        Ok((progs, ebpf))
    }

    pub(super) fn from_pins(pin: &Path, enabled: &Enabled) -> Result<Programs, CaptureError> {
        let p = |n: &'static str| pin.join("progs").join(n);
        Ok(Programs {
            connect4: CgroupSockAddr::from_pin(
                p(CONNECT4_PROG),
                CgroupSockAddrAttachType::Connect4,
            )
            .map_err(prog(CONNECT4_PROG))?,
            connect6: CgroupSockAddr::from_pin(
                p(CONNECT6_PROG),
                CgroupSockAddrAttachType::Connect6,
            )
            .map_err(prog(CONNECT6_PROG))?,
            sockops: SockOps::from_pin(p(SOCKOPS_PROG)).map_err(prog(SOCKOPS_PROG))?,
            sockops_msg: SockOps::from_pin(p(SOCKOPS_MSG_PROG)).map_err(prog(SOCKOPS_MSG_PROG))?,
            getsockopt: enabled
                .getsockopt
                .then(|| {
                    CgroupSockopt::from_pin(p(GETSOCKOPT_PROG), CgroupSockoptAttachType::Get)
                        .map_err(prog(GETSOCKOPT_PROG))
                })
                .transpose()?,
            _sk_msg: enabled
                .sk_msg
                .then(|| SkMsg::from_pin(p(SK_MSG_PROG)).map_err(prog(SK_MSG_PROG)))
                .transpose()?,
        })
    }
}
