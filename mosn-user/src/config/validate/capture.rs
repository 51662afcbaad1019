//! Validation of the `capture` block and its workloads (model: [`crate::config::capture`]).
//!
//! The list limits are the kernel policy value's fixed array sizes; exceeding one is an error
//! naming the field and the limit, never a silent truncation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use crate::config::addr::{parse_cidr, parse_ip, parse_port_ranges};
use crate::config::capture::*;
use crate::config::diag::{Diag, index, join};
use crate::config::model::{Cidr, OriginalDst};
use crate::config::raw::*;
use crate::config::size::{parse_size, show_size};

use super::ListenerRef;

/// What a workload takes from the `capture` block around it.
pub(in crate::config) struct WorkloadDefaults {
    /// `capture.sk_msg.enabled`.
    pub sk_msg: bool,
    /// Whether `capture.inbound_listener` is set (inbound capture needs it).
    pub inbound_listener: bool,
}

impl From<&CaptureConfig> for WorkloadDefaults {
    fn from(c: &CaptureConfig) -> Self {
        WorkloadDefaults {
            sk_msg: c.sk_msg.enabled,
            inbound_listener: c.inbound_listener.is_some(),
        }
    }
}

pub(in crate::config) fn capture(
    raw: &RawCapture,
    listeners: &HashMap<String, ListenerRef>,
    d: &mut Diag,
) -> Option<CaptureConfig> {
    let path = "capture";
    let errors_before = d.errors.len();
    d.extra(path, &raw.extra, RawCapture::KEYS);

    let mode = match raw.mode.as_deref() {
        None | Some("sidecar") => CaptureMode::Sidecar,
        Some("node") => CaptureMode::Node,
        Some(other) => {
            d.error(
                &join(path, "mode"),
                format!("invalid mode {other:?} (allowed: \"sidecar\", \"node\")"),
            );
            CaptureMode::Sidecar
        }
    };
    let outbound_listener = match &raw.outbound_listener {
        None => {
            d.error(
                &join(path, "outbound_listener"),
                "missing outbound_listener (the name of a listener with \"use_original_dst\": \
                 \"redirect\")",
            );
            None
        }
        Some(name) => {
            let p = join(path, "outbound_listener");
            check_listener(&p, name, OriginalDst::Redirect, listeners, d);
            Some(name.clone())
        }
    };
    let inbound_listener = raw.inbound_listener.as_ref().map(|name| {
        let p = join(path, "inbound_listener");
        check_listener(&p, name, OriginalDst::Tproxy, listeners, d);
        name.clone()
    });
    let pin_path = match &raw.pin_path {
        None => PathBuf::from(DEFAULT_PIN_PATH),
        Some(p) => absolute_path(&join(path, "pin_path"), p, d).unwrap_or_default(),
    };
    let proxy_mark = match raw.proxy_mark {
        None => DEFAULT_PROXY_MARK,
        Some(0) => {
            d.error(
                &join(path, "proxy_mark"),
                "proxy_mark must not be 0 (every unmarked socket has mark 0, so none would be \
                 captured)",
            );
            DEFAULT_PROXY_MARK
        }
        Some(m) => u32::try_from(m).unwrap_or_else(|_| {
            d.error(
                &join(path, "proxy_mark"),
                format!("proxy_mark {m} does not fit in 32 bits (SO_MARK is a u32)"),
            );
            DEFAULT_PROXY_MARK
        }),
    };
    let inbound_passthrough_source = match raw.inbound_passthrough_source.as_deref() {
        None => DEFAULT_INBOUND_PASSTHROUGH_SOURCE,
        Some(a) => {
            let p = join(path, "inbound_passthrough_source");
            match parse_ip(a) {
                Ok(ip) if ip.is_unspecified() => {
                    d.error(
                        &p,
                        format!("{a:?} is not a source address (give one, e.g. \"127.0.0.6\")"),
                    );
                    DEFAULT_INBOUND_PASSTHROUGH_SOURCE
                }
                Ok(ip) => ip,
                Err(reason) => {
                    d.error(&p, format!("invalid address {a:?}: {reason}"));
                    DEFAULT_INBOUND_PASSTHROUGH_SOURCE
                }
            }
        }
    };
    let sk_msg = sk_msg(raw.sk_msg.as_ref(), &join(path, "sk_msg"), d);
    let mut original_dst_cgroups: Vec<PathBuf> = Vec::new();
    for (i, c) in raw.original_dst_cgroups.iter().flatten().enumerate() {
        let p = index(path, "original_dst_cgroups", i);
        if let Some(cg) = absolute_path(&p, c, d) {
            if original_dst_cgroups.contains(&cg) {
                d.warn(format!("{p}: cgroup {} is listed twice", cg.display()));
            } else {
                original_dst_cgroups.push(cg);
            }
        }
    }

    let defaults = WorkloadDefaults {
        sk_msg: sk_msg.enabled,
        inbound_listener: inbound_listener.is_some(),
    };
    let raw_workloads = raw.workloads.as_deref().unwrap_or_default();
    let wp = join(path, "workloads");
    match mode {
        CaptureMode::Sidecar if raw_workloads.len() != 1 => d.error(
            &wp,
            format!(
                "sidecar mode needs exactly one workload, found {} (\"mode\": \"node\" captures \
                 several)",
                raw_workloads.len()
            ),
        ),
        _ if raw_workloads.len() > MAX_WORKLOADS => d.error(
            &wp,
            format!(
                "at most {MAX_WORKLOADS} workloads (the kernel policy map's size), found {}",
                raw_workloads.len()
            ),
        ),
        _ => {}
    }
    let mut workloads: Vec<WorkloadConfig> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut cgroups: HashMap<PathBuf, String> = HashMap::new();
    for (i, w) in raw_workloads.iter().enumerate() {
        let p = index(path, "workloads", i);
        let Some(w) = workload(w, &p, None, &defaults, d) else {
            continue;
        };
        if let Some(first) = names.get(&w.name) {
            d.error(
                &join(&p, "name"),
                format!("duplicate workload name {:?} (also at {first})", w.name),
            );
            continue;
        }
        if let Some(first) = cgroups.get(&w.cgroup) {
            d.error(
                &join(&p, "cgroup"),
                format!(
                    "cgroup {} is already captured by {first} (one workload per cgroup)",
                    w.cgroup.display()
                ),
            );
            continue;
        }
        names.insert(w.name.clone(), p.clone());
        cgroups.insert(w.cgroup.clone(), p);
        workloads.push(w);
    }

    let workloads_dir = match (&raw.workloads_dir, mode) {
        (None, CaptureMode::Node) if raw_workloads.is_empty() => {
            d.error(
                path,
                "node mode needs \"workloads\" or \"workloads_dir\" (or both)",
            );
            None
        }
        (None, _) => None,
        (Some(_), CaptureMode::Sidecar) => {
            d.error(
                &join(path, "workloads_dir"),
                "workloads_dir is only read in node mode (\"mode\": \"node\"); a sidecar's one \
                 workload goes in \"workloads\"",
            );
            None
        }
        (Some(dir), CaptureMode::Node) => absolute_path(&join(path, "workloads_dir"), dir, d),
    };

    if d.errors.len() != errors_before {
        return None;
    }
    Some(CaptureConfig {
        mode,
        outbound_listener: outbound_listener?,
        inbound_listener,
        pin_path,
        proxy_mark,
        inbound_passthrough_source,
        sk_msg,
        original_dst_cgroups,
        workloads,
        workloads_dir,
    })
}

/// A capture listener must exist, listen (`bind_port: true`) on a fixed port and recover
/// original destinations the way the capture delivers its connections.
fn check_listener(
    path: &str,
    name: &str,
    want: OriginalDst,
    listeners: &HashMap<String, ListenerRef>,
    d: &mut Diag,
) {
    let want_str = match want {
        OriginalDst::Redirect => "redirect",
        OriginalDst::Tproxy => "tproxy",
    };
    let Some(l) = listeners.get(name) else {
        let mut defined: Vec<&str> = listeners.keys().map(String::as_str).collect();
        defined.sort_unstable();
        let defined = if defined.is_empty() {
            "no listeners are defined".to_owned()
        } else {
            format!("defined listeners: {}", defined.join(", "))
        };
        d.error(path, format!("unknown listener {name:?} ({defined})"));
        return;
    };
    // A listener with errors of its own has them reported already.
    let Some(v) = &l.valid else { return };
    let at = &l.path;
    if v.original_dst != Some(want) {
        let has = match v.original_dst {
            None => "has none",
            Some(OriginalDst::Redirect) => "has \"redirect\"",
            Some(OriginalDst::Tproxy) => "has \"tproxy\"",
        };
        d.error(
            path,
            format!(
                "listener {name:?} (at {at}) needs \"use_original_dst\": \"{want_str}\" ({has})"
            ),
        );
    } else if !v.started {
        d.error(
            path,
            format!("listener {name:?} (at {at}) is not started (it needs \"bind_port\": true)"),
        );
    } else if v.address.port() == 0 {
        d.error(
            path,
            format!(
                "listener {name:?} (at {at}) listens on port 0; the capture programs need its \
                 port in advance"
            ),
        );
    }
}

fn sk_msg(raw: Option<&RawSkMsg>, path: &str, d: &mut Diag) -> SkMsgConfig {
    let mut out = SkMsgConfig {
        enabled: false,
        queue_limit: DEFAULT_SK_MSG_QUEUE_LIMIT,
    };
    let Some(raw) = raw else { return out };
    d.extra(path, &raw.extra, RawSkMsg::KEYS);
    out.enabled = raw.enabled.unwrap_or(false);
    let p = join(path, "queue_limit");
    let bytes = match &raw.queue_limit {
        None => return out,
        Some(RawSize::Bytes(n)) => *n,
        Some(RawSize::Text(s)) => match parse_size(s) {
            Ok(n) => n,
            Err(reason) => {
                d.error(&p, format!("invalid size {s:?}: {reason}"));
                return out;
            }
        },
        Some(RawSize::Invalid(reason)) => {
            d.error(&p, format!("invalid size: {reason}"));
            return out;
        }
    };
    if SK_MSG_QUEUE_LIMITS.contains(&bytes) {
        out.queue_limit = bytes as u32;
    } else {
        d.error(
            &p,
            format!(
                "queue_limit {} is out of range ({}..={})",
                show_size(bytes),
                show_size(*SK_MSG_QUEUE_LIMITS.start()),
                show_size(*SK_MSG_QUEUE_LIMITS.end())
            ),
        );
    }
    out
}

/// An absolute path without `..` (a path the daemon compares and opens as given).
fn absolute_path(path: &str, p: &str, d: &mut Diag) -> Option<PathBuf> {
    let pb = PathBuf::from(p);
    if !pb.is_absolute() {
        d.error(path, format!("{p:?} is not an absolute path"));
        return None;
    }
    if pb.components().any(|c| c == Component::ParentDir) {
        d.error(path, format!("{p:?} must not contain \"..\""));
        return None;
    }
    Some(pb)
}

/// Is `name` a valid workload name (`[A-Za-z0-9_.-]{1,64}`)? The reason if not.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "workload name {name:?} must be 1 to 64 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "workload name {name:?} contains {c:?} (allowed: letters, digits, '_', '.', '-')"
        ));
    }
    Ok(())
}

/// One workload. `default_name`: the file stem of a `workloads_dir` file.
pub(in crate::config) fn workload(
    raw: &RawWorkload,
    path: &str,
    default_name: Option<&str>,
    defaults: &WorkloadDefaults,
    d: &mut Diag,
) -> Option<WorkloadConfig> {
    let errors_before = d.errors.len();
    d.extra(path, &raw.extra, RawWorkload::KEYS);
    let np = join(path, "name");
    let name = match (&raw.name, default_name) {
        (Some(n), _) => check_name(n).map(|()| n.clone()),
        (None, Some(stem)) => check_name(stem)
            .map(|()| stem.to_owned())
            .map_err(|reason| format!("{reason} (taken from the file name; set \"name\")")),
        (None, None) => Err("missing workload name".to_owned()),
    }
    .map_err(|reason| d.error(&np, reason))
    .ok();
    let cp = join(path, "cgroup");
    let cgroup = match &raw.cgroup {
        None => {
            d.error(
                &cp,
                "missing cgroup (the workload's cgroup v2 directory, e.g. \
                 \"/sys/fs/cgroup/kubepods/pod123\")",
            );
            None
        }
        Some(c) => absolute_path(&cp, c, d),
    };

    let include_outbound_ports = port_ranges(
        path,
        "include_outbound_ports",
        &raw.include_outbound_ports,
        d,
    );
    let exclude_outbound_ports = port_ranges(
        path,
        "exclude_outbound_ports",
        &raw.exclude_outbound_ports,
        d,
    );
    let include_outbound_cidrs = cidrs(
        path,
        "include_outbound_cidrs",
        &raw.include_outbound_cidrs,
        d,
    );
    let exclude_outbound_cidrs = cidrs(
        path,
        "exclude_outbound_cidrs",
        &raw.exclude_outbound_cidrs,
        d,
    );

    let ip = join(path, "include_inbound_ports");
    let inbound_ports = match &raw.include_inbound_ports {
        None => InboundPorts::None,
        Some(RawInboundPorts::Text(s)) if s.trim() == "*" => InboundPorts::All,
        Some(RawInboundPorts::Text(s)) => {
            let items = [RawPorts(s.clone())];
            only(single_ports(&ip, &items, false, d))
        }
        Some(RawInboundPorts::List(items)) => only(single_ports(&ip, items, true, d)),
    };
    let ep = join(path, "exclude_inbound_ports");
    let exclude_inbound_ports = single_ports(
        &ep,
        raw.exclude_inbound_ports.as_deref().unwrap_or_default(),
        true,
        d,
    );
    let inbound_count = match &inbound_ports {
        InboundPorts::Only(v) => v.len(),
        _ => 0,
    } + exclude_inbound_ports.len();
    if inbound_count > MAX_INBOUND_PORTS {
        d.error(
            &ip,
            format!(
                "include_inbound_ports and exclude_inbound_ports together list {inbound_count} \
                 ports; at most {MAX_INBOUND_PORTS} (the kernel's inbound port table per workload)"
            ),
        );
    }
    if inbound_ports != InboundPorts::None && !defaults.inbound_listener {
        d.error(
            &ip,
            "inbound capture needs capture.inbound_listener (a listener with \
             \"use_original_dst\": \"tproxy\")",
        );
    }
    if inbound_ports == InboundPorts::None && !exclude_inbound_ports.is_empty() {
        d.warn(format!(
            "{ep}: has no effect: no inbound port is captured (include_inbound_ports is absent \
             or empty)"
        ));
    }

    let exclude_uids = ids(path, "exclude_uids", &raw.exclude_uids, d);
    let exclude_gids = ids(path, "exclude_gids", &raw.exclude_gids, d);

    if d.errors.len() != errors_before {
        return None;
    }
    Some(WorkloadConfig {
        name: name?,
        cgroup: cgroup?,
        include_outbound_ports,
        exclude_outbound_ports,
        include_outbound_cidrs,
        exclude_outbound_cidrs,
        inbound_ports,
        exclude_inbound_ports,
        exclude_uids,
        exclude_gids,
        sk_msg: raw.sk_msg.unwrap_or(defaults.sk_msg),
    })
}

fn only(ports: Vec<u16>) -> InboundPorts {
    if ports.is_empty() {
        InboundPorts::None
    } else {
        InboundPorts::Only(ports)
    }
}

/// An outbound port list: ports and inclusive ranges, at most [`MAX_PORT_RANGES`] entries.
fn port_ranges(
    base: &str,
    key: &str,
    raw: &Option<Vec<RawPorts>>,
    d: &mut Diag,
) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for (i, RawPorts(s)) in raw.iter().flatten().enumerate() {
        let p = index(base, key, i);
        match parse_nonzero_ports(s) {
            Ok(ranges) => out.extend(ranges),
            Err(reason) => d.error(&p, reason),
        }
    }
    if out.len() > MAX_PORT_RANGES {
        d.error(
            &join(base, key),
            format!(
                "{} port entries; at most {MAX_PORT_RANGES} (the kernel policy's fixed size)",
                out.len()
            ),
        );
    }
    out
}

/// An inbound port list, ranges expanded to single ports (duplicates dropped).
/// `indexed`: errors name the element (`key[i]`), else the field.
fn single_ports(path: &str, items: &[RawPorts], indexed: bool, d: &mut Diag) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for (i, RawPorts(s)) in items.iter().enumerate() {
        let p = if indexed {
            format!("{path}[{i}]")
        } else {
            path.to_owned()
        };
        match parse_nonzero_ports(s) {
            Ok(ranges) => {
                for (lo, hi) in ranges {
                    // Bounded: past the limit the count is reported, not the ports.
                    if usize::from(hi - lo) > MAX_INBOUND_PORTS * 2 {
                        d.error(
                            &p,
                            format!(
                                "range \"{lo}-{hi}\" has {} ports; at most {MAX_INBOUND_PORTS} \
                                 inbound ports per workload (use \"*\" for every port)",
                                u32::from(hi - lo) + 1
                            ),
                        );
                        continue;
                    }
                    for port in lo..=hi {
                        if !out.contains(&port) {
                            out.push(port);
                        }
                    }
                }
            }
            Err(reason) => d.error(&p, reason),
        }
    }
    out
}

/// One element of a port list: "80", "9000-9100" (or MOSN's "80,443"), never port 0.
fn parse_nonzero_ports(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let ranges = parse_port_ranges(s).map_err(|reason| format!("invalid port {s:?}: {reason}"))?;
    if ranges.is_empty() {
        return Err("empty port (expected e.g. \"80\" or \"9000-9100\")".into());
    }
    if ranges.iter().any(|&(lo, _)| lo == 0) {
        return Err(format!("invalid port {s:?}: port 0 cannot be connected to"));
    }
    Ok(ranges)
}

/// A CIDR list: at most [`MAX_CIDRS_PER_FAMILY`] IPv4 and as many IPv6 prefixes. Host bits
/// are cleared (with a warning), as the kernel's match does.
fn cidrs(base: &str, key: &str, raw: &Option<Vec<String>>, d: &mut Diag) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (i, s) in raw.iter().flatten().enumerate() {
        let p = index(base, key, i);
        match parse_cidr(s) {
            Ok((addr, prefix_len)) => {
                let masked = mask(addr, prefix_len);
                if masked != addr {
                    d.warn(format!(
                        "{p}: {s:?} has host bits set; it means {masked}/{prefix_len}"
                    ));
                }
                out.push(Cidr {
                    addr: masked,
                    prefix_len,
                });
            }
            Err(reason) => d.error(&p, format!("invalid prefix {s:?}: {reason}")),
        }
    }
    let v4 = out.iter().filter(|c| c.addr.is_ipv4()).count();
    let v6 = out.len() - v4;
    for (family, n) in [("IPv4", v4), ("IPv6", v6)] {
        if n > MAX_CIDRS_PER_FAMILY {
            d.error(
                &join(base, key),
                format!(
                    "{n} {family} prefixes; at most {MAX_CIDRS_PER_FAMILY} per address family \
                     (the kernel policy's fixed size)"
                ),
            );
        }
    }
    out
}

fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// uids or gids: each fits in 32 bits, at most [`MAX_IDS`].
fn ids(base: &str, key: &str, raw: &Option<Vec<u64>>, d: &mut Diag) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, &id) in raw.iter().flatten().enumerate() {
        match u32::try_from(id) {
            Ok(v) if v != u32::MAX => out.push(v),
            _ => d.error(
                &index(base, key, i),
                format!("{id} is not a valid id (0..={})", u32::MAX - 1),
            ),
        }
    }
    if out.len() > MAX_IDS {
        d.error(
            &join(base, key),
            format!(
                "{} ids; at most {MAX_IDS} (the kernel policy's fixed size)",
                out.len()
            ),
        );
    }
    out
}

/// The file-relative field path of a workload file's error, prefixed with the file.
pub(in crate::config) fn in_file(file: &Path, field: &str) -> String {
    // serde_path_to_error says "." for the root, "?" where decoding stopped before a field.
    if matches!(field, "" | "." | "?") {
        file.display().to_string()
    } else {
        format!("{}: {field}", file.display())
    }
}
