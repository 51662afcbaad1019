//! The kernel form of what the daemon knows: address keys, original destinations and a
//! workload's selection (`WorkloadPolicy`), in the byte order the programs read.

use super::*;

/// Network-order words of an IPv6 address.
pub(super) fn words(a: &Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    std::array::from_fn(|i| u32::from_ne_bytes(o[i * 4..i * 4 + 4].try_into().expect("4 bytes")))
}

pub(super) fn addr_key(a: SocketAddr) -> AddrKey {
    let addr = match a.ip() {
        IpAddr::V4(v4) => v4_mapped(u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_mapped(u32::from_ne_bytes(v4.octets())),
            None => words(&v6),
        },
    };
    AddrKey {
        addr,
        port: u32::from(a.port()),
        _pad: 0,
    }
}

pub(super) fn orig_to_addr(o: &OrigDst) -> SocketAddr {
    let port = o.port as u16;
    if is_v4_mapped(&o.addr) {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o.addr[3].to_ne_bytes())), port)
    } else {
        let mut b = [0u8; 16];
        for (i, w) in o.addr.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), port)
    }
}

pub(super) fn ports(ranges: &[(u16, u16)]) -> ([PortRange; MAX_PORT_RANGES], u32) {
    let mut out = [PortRange::default(); MAX_PORT_RANGES];
    for (slot, &(lo, hi)) in out.iter_mut().zip(ranges) {
        *slot = PortRange { lo, hi };
    }
    (out, ranges.len().min(MAX_PORT_RANGES) as u32)
}

pub(super) fn cidrs(list: &[Cidr]) -> ([Cidr4; MAX_CIDRS], u32, [Cidr6; MAX_CIDRS], u32) {
    let mut v4 = [Cidr4::default(); MAX_CIDRS];
    let mut v6 = [Cidr6::default(); MAX_CIDRS];
    let (mut n4, mut n6) = (0usize, 0usize);
    for c in list {
        match c.addr {
            IpAddr::V4(a) if n4 < MAX_CIDRS => {
                let bits = u32::from(c.prefix_len.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                v4[n4] = Cidr4 {
                    addr: (u32::from(a) & mask).to_be(),
                    mask: mask.to_be(),
                };
                n4 += 1;
            }
            IpAddr::V6(a) if n6 < MAX_CIDRS => {
                let bits = u32::from(c.prefix_len.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                let m = Ipv6Addr::from(mask);
                let masked = Ipv6Addr::from(u128::from(a) & mask);
                v6[n6] = Cidr6 {
                    addr: words(&masked),
                    mask: words(&m),
                };
                n6 += 1;
            }
            _ => {}
        }
    }
    (v4, n4 as u32, v6, n6 as u32)
}

pub(super) fn ids(list: &[u32]) -> ([u32; MAX_IDS], u32) {
    let mut out = [0u32; MAX_IDS];
    for (slot, &id) in out.iter_mut().zip(list) {
        *slot = id;
    }
    (out, list.len().min(MAX_IDS) as u32)
}

/// The kernel form of a workload's selection. Validation already bounded every list.
pub fn build_policy(w: &WorkloadConfig, slot: u32) -> WorkloadPolicy {
    let mut p = WorkloadPolicy::EMPTY;
    p.slot = slot;
    p.flags = POLICY_OUTBOUND;
    (p.include_ports, p.n_include_ports) = ports(&w.include_outbound_ports);
    (p.exclude_ports, p.n_exclude_ports) = ports(&w.exclude_outbound_ports);
    if p.n_include_ports > 0 {
        p.flags |= POLICY_INCLUDE_PORTS;
    }
    (p.include_v4, p.n_include_v4, p.include_v6, p.n_include_v6) = cidrs(&w.include_outbound_cidrs);
    (p.exclude_v4, p.n_exclude_v4, p.exclude_v6, p.n_exclude_v6) = cidrs(&w.exclude_outbound_cidrs);
    // An include list that names only one family leaves the other family uncaptured, as
    // Istio's includeOutboundIPRanges does.
    if !w.include_outbound_cidrs.is_empty() {
        p.flags |= POLICY_INCLUDE_V4 | POLICY_INCLUDE_V6;
    }
    (p.uids, p.n_uids) = ids(&w.exclude_uids);
    (p.gids, p.n_gids) = ids(&w.exclude_gids);
    p
}
