//! Which interface a single-hop neighbor may be heard on. RFC 5881 puts
//! the neighbor on a directly connected link, so its packets arrive on an
//! interface holding an address of a subnet that contains it; TTL 255
//! alone does not say so (a packet from a local process or a pod to this
//! host is delivered with the TTL it was sent with). The interfaces'
//! subnets are read from the kernel (getifaddrs) and read again, at most
//! once per [`REREAD`], when a packet does not fit them. A neighbor no
//! subnet holds (host routes, /32 addressing) is not checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Shortest time between two reads of the interfaces' addresses.
pub const REREAD: Duration = Duration::from_secs(1);

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    addr: IpAddr,
    len: u8,
}

impl Subnet {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let len = u32::from(self.len.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let len = u32::from(self.len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// The subnets of each interface, by index.
#[derive(Debug, Default)]
pub struct Links {
    by_ifindex: HashMap<u32, Vec<Subnet>>,
    read_at: Option<Instant>,
}

impl Links {
    /// Whether a packet from `peer` may arrive on interface `ifindex`: the
    /// interface has a subnet holding `peer`, or no interface has one (a
    /// neighbor reached through a host route, e.g. on /32 addressing: the
    /// link cannot be told from the addresses, and nothing is refused). A
    /// link-local IPv6 peer is on the interface its scope names, which the
    /// kernel already matched to the arrival interface.
    pub fn connects(&mut self, ifindex: u32, peer: IpAddr, now: Instant) -> bool {
        if let IpAddr::V6(v6) = peer {
            if v6.is_unicast_link_local() {
                return true;
            }
        }
        if self.holds(ifindex, peer) {
            return true;
        }
        if self.read_at.is_none_or(|t| now.saturating_duration_since(t) >= REREAD) {
            self.read(now);
        }
        self.holds(ifindex, peer) || !self.any_holds(peer)
    }

    fn holds(&self, ifindex: u32, peer: IpAddr) -> bool {
        self.by_ifindex
            .get(&ifindex)
            .is_some_and(|subnets| subnets.iter().any(|s| s.contains(peer)))
    }

    fn any_holds(&self, peer: IpAddr) -> bool {
        self.by_ifindex.values().flatten().any(|s| s.contains(peer))
    }

    fn read(&mut self, now: Instant) {
        self.read_at = Some(now);
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return;
        };
        let mut by_ifindex: HashMap<u32, Vec<Subnet>> = HashMap::new();
        for ifa in addrs {
            let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
                continue;
            };
            let (ip, len) = if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (IpAddr::V4(a.ip()), u32::from(m.ip()).count_ones() as u8)
            } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones() as u8)
            } else {
                continue;
            };
            let Ok(index) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else {
                continue;
            };
            by_ifindex.entry(index).or_default().push(Subnet { addr: ip, len });
        }
        self.by_ifindex = by_ifindex;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str, len: u8) -> Subnet {
        Subnet {
            addr: s.parse().unwrap(),
            len,
        }
    }

    #[test]
    fn a_subnet_holds_its_own_addresses_only() {
        let s = subnet("10.0.0.10", 24);
        assert!(s.contains("10.0.0.1".parse().unwrap()));
        assert!(!s.contains("10.0.1.1".parse().unwrap()));
        assert!(!s.contains("fd00::1".parse().unwrap()));
        let host = subnet("10.0.0.10", 32);
        assert!(host.contains("10.0.0.10".parse().unwrap()));
        assert!(!host.contains("10.0.0.1".parse().unwrap()));
        let v6 = subnet("fd00::10", 64);
        assert!(v6.contains("fd00::1".parse().unwrap()));
        assert!(!v6.contains("fd01::1".parse().unwrap()));
        assert!(subnet("0.0.0.0", 0).contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn a_peer_some_other_interface_is_on_is_refused_one_none_is_on_is_not() {
        let mut links = Links {
            by_ifindex: HashMap::from([(2, vec![subnet("10.0.0.10", 24)]), (7, vec![subnet("169.254.1.1", 32)])]),
            read_at: Some(Instant::now()),
        };
        let now = Instant::now();
        assert!(links.connects(2, "10.0.0.1".parse().unwrap(), now));
        assert!(
            !links.connects(7, "10.0.0.1".parse().unwrap(), now),
            "a pod's interface"
        );
        assert!(
            links.connects(7, "198.51.100.1".parse().unwrap(), now),
            "no link holds it"
        );
        assert!(links.connects(7, "fe80::1".parse().unwrap(), now));
    }
}
