//! The node's default gateways, as the kernel's main table has them
//! (`/proc/net/route` and `/proc/net/ipv6_route` of the agent's network
//! namespace): the ToR a `NovaBGPClusterConfig` peer with
//! `autoDiscovery: {mode: DefaultGateway}` is dialled at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default gateways, IPv4 first, each family by metric (IPv6
/// link-local gateways left out).
pub fn read() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut out = ipv4(&v4);
    out.extend(ipv6(&v6));
    out
}

/// RTF_GATEWAY: the route goes through a gateway.
const GATEWAY: u32 = 0x2;

/// Default routes through a gateway in `/proc/net/route` text (addresses
/// are the native-endian value of the network-order bytes).
fn ipv4(text: &str) -> Vec<IpAddr> {
    let mut found: Vec<(u32, IpAddr)> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| u32::from_str_radix(f.get(i)?, 16).ok();
            let (dest, gw, flags, metric, mask) = (hex(1)?, hex(2)?, hex(3)?, f.get(6)?.parse().ok()?, hex(7)?);
            (dest == 0 && mask == 0 && flags & GATEWAY != 0 && gw != 0)
                .then(|| (metric, IpAddr::V4(Ipv4Addr::from(gw.to_ne_bytes()))))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, a)| a).collect()
}

/// Default routes through a gateway in `/proc/net/ipv6_route` text.
fn ipv6(text: &str) -> Vec<IpAddr> {
    let mut found: Vec<(u32, IpAddr)> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, len, hop) = (f.first()?, f.get(1)?, f.get(4)?);
            let metric = u32::from_str_radix(f.get(5)?, 16).ok()?;
            let hop = Ipv6Addr::from(u128::from_str_radix(hop, 16).ok()?);
            // A link-local gateway means nothing without its link.
            (dest.bytes().all(|b| b == b'0') && *len == "00" && !hop.is_unspecified() && !hop.is_unicast_link_local())
                .then_some((metric, IpAddr::V6(hop)))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, a)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_through_a_gateway_are_found_by_metric() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth1\t00000000\t0100000A\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            let want: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "192.0.2.1".parse().unwrap()];
            assert_eq!(ipv4(v4), want);
        }
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000100 00000001 00000000 00000003     eth0\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";
        assert_eq!(
            ipv6(v6),
            vec!["fd00::1".parse::<IpAddr>().unwrap()],
            "a link-local gateway names no link here"
        );
        assert!(ipv4("Iface\tDestination\n").is_empty());
    }
}
