//! Address, prefix and port-range parsing with reasons an operator can act on (std's
//! `SocketAddr::from_str` only says "invalid socket address syntax").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parses "ip:port" or "[ipv6]:port". Returns the reason on error (the caller names the input).
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let (ip, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing \"]\" after the IPv6 address")?;
        let port = after
            .strip_prefix(':')
            .ok_or("missing port (expected [ip]:port)")?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("invalid IPv6 address \"{host}\""))?;
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or("missing port (expected ip:port)")?;
        if host.contains(':') {
            return Err("IPv6 addresses need brackets, e.g. \"[::1]:2045\"".into());
        }
        (parse_ipv4_host(host)?, port)
    };
    if port.is_empty() {
        return Err("missing port".into());
    }
    let port: u16 = port.parse().map_err(|_| "invalid port".to_string())?;
    Ok(SocketAddr::new(ip, port))
}

fn parse_ipv4_host(host: &str) -> Result<IpAddr, String> {
    if host.is_empty() {
        return Err("missing IP address (use 0.0.0.0 for every address)".into());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(ip));
    }
    Err(dns_or_invalid(host))
}

fn dns_or_invalid(host: &str) -> String {
    let hostname_like = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && host.chars().any(|c| c.is_ascii_alphabetic());
    if hostname_like {
        "DNS names are not supported yet, use an IP".into()
    } else {
        format!("invalid IP address \"{host}\"")
    }
}

/// Parses a bare IP (v4 or v6, no brackets, no port).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| dns_or_invalid(s))
}

/// Parses a prefix "10.0.0.0/8" or "fd00::/16"; a bare address is a host prefix (/32, /128).
/// Returns the address as written and the prefix length.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip = parse_ip(ip.trim())?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "prefix length \"{l}\" is out of range for {ip} (0..={max})"
                ));
            }
        },
    };
    Ok((ip, len))
}

/// Parses MOSN's port list: "8080", "8000-9000" or "80,443,8000-9000" (spaces allowed).
/// An empty string is an empty list (matches every port).
pub fn parse_port_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err("empty element in port list".into());
        }
        let port = |p: &str| -> Result<u16, String> {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("invalid port \"{}\"", p.trim()))
        };
        let range = match part.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(part)?;
                (p, p)
            }
        };
        if range.0 > range.1 {
            return Err(format!("range \"{part}\" ends before it starts"));
        }
        out.push(range);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr("127.0.0.1:2045"),
            Ok("127.0.0.1:2045".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:80"),
            Ok("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("1.2.3.4:99999").unwrap_err(),
            "invalid port"
        );
        assert_eq!(
            parse_socket_addr("1.2.3.4").unwrap_err(),
            "missing port (expected ip:port)"
        );
        assert!(
            parse_socket_addr("::1:80")
                .unwrap_err()
                .contains("brackets")
        );
        assert!(
            parse_socket_addr("localhost:80")
                .unwrap_err()
                .contains("DNS names")
        );
        assert!(
            parse_socket_addr("1.2.3:80")
                .unwrap_err()
                .contains("invalid IP")
        );
        assert!(
            parse_socket_addr("300.1.1.1:80")
                .unwrap_err()
                .contains("invalid IP")
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Ok(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(parse_cidr("::/0"), Ok(("::".parse().unwrap(), 0)));
        assert_eq!(
            parse_cidr("10.1.2.3"),
            Ok(("10.1.2.3".parse().unwrap(), 32))
        );
        assert_eq!(parse_cidr("fd00::1"), Ok(("fd00::1".parse().unwrap(), 128)));
        assert!(
            parse_cidr("10.0.0.0/33")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_cidr("::/129").unwrap_err().contains("(0..=128)"));
        assert!(parse_cidr("10.0.0.0/x").is_err());
        assert!(parse_cidr("10.0.0/8").unwrap_err().contains("invalid IP"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_ranges(""), Ok(vec![]));
        assert_eq!(parse_port_ranges("8080"), Ok(vec![(8080, 8080)]));
        assert_eq!(parse_port_ranges("8000-9000"), Ok(vec![(8000, 9000)]));
        assert_eq!(
            parse_port_ranges("80, 443,1-2"),
            Ok(vec![(80, 80), (443, 443), (1, 2)])
        );
        assert!(parse_port_ranges("9000-8000").is_err());
        assert!(parse_port_ranges("70000").is_err());
        assert!(parse_port_ranges("80,,81").is_err());
    }
}
