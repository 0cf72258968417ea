//! The keys and values of the programs' maps and the events they send, as
//! `bpf/policy.bpf.c` lays them out (`#[repr(C)]`, same order and sizes).

use std::net::{IpAddr, Ipv6Addr};

/// The identity no address has: in a policy key, "any".
pub const IDENTITY_ANY: u32 = 0;
/// The host itself (the node).
pub const IDENTITY_HOST: u32 = 1;
/// An address that is neither a known pod nor in an ipBlock.
pub const IDENTITY_WORLD: u32 = 2;
/// Port ranges a policy entry holds.
pub const MAX_RANGES: usize = 16;

/// An address; IPv4 as `::ffff:a.b.c.d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Addr(pub [u8; 16]);

// SAFETY: plain bytes, no padding.
unsafe impl aya::Pod for Addr {}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Addr(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => Addr(v6.octets()),
        }
    }
}

impl Addr {
    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

/// A source address a pod's host end lets out: (interface index,
/// address), as `pod_sources` keys it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SourceKey {
    pub ifindex: u32,
    pub addr: Addr,
}

// SAFETY: plain bytes; packed as the C struct (4 + 16 bytes, no padding).
unsafe impl aya::Pod for SourceKey {}

/// (peer identity or [`IDENTITY_ANY`], local pod identity, protocol or 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PolicyKey {
    pub peer: u32,
    pub local: u32,
    pub protocol: u8,
    pub pad: [u8; 3],
}

// SAFETY: all fields are plain integers; the padding is explicit.
unsafe impl aya::Pod for PolicyKey {}

impl PolicyKey {
    pub fn new(peer: u32, local: u32, protocol: u8) -> Self {
        PolicyKey {
            peer,
            local,
            protocol,
            pad: [0; 3],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// The ports an entry allows: all of them, or up to [`MAX_RANGES`] ranges.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyValue {
    pub all_ports: u8,
    pub count: u8,
    /// [`MORE_PORTS`]: more allowed ports in `more_ports`.
    pub flags: u8,
    pub pad: u8,
    pub ranges: [PortRange; MAX_RANGES],
}

/// [`PolicyValue::flags`]: ports beyond the ranges are in `more_ports`.
pub const MORE_PORTS: u8 = 1;

/// One more allowed port of a policy entry whose ranges did not fit in
/// [`MAX_RANGES`]: (peer, local, protocol) as the entry's key, the
/// direction whose map holds the entry, the port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PortKey {
    pub peer: u32,
    pub local: u32,
    pub protocol: u8,
    pub direction: u8,
    pub port: u16,
}

// SAFETY: all fields are plain integers, 12 bytes without padding.
unsafe impl aya::Pod for PortKey {}

/// The `direction` of a [`PortKey`].
pub const DIRECTION_INGRESS: u8 = 0;
pub const DIRECTION_EGRESS: u8 = 1;

// SAFETY: all fields are plain integers; the padding is explicit.
unsafe impl aya::Pod for PolicyValue {}

impl PolicyValue {
    pub fn all_ports() -> Self {
        PolicyValue {
            all_ports: 1,
            ..Default::default()
        }
    }

    /// An entry for these ranges (at most [`MAX_RANGES`]; the caller merges).
    pub fn ranges(ranges: &[(u16, u16)]) -> Self {
        let mut v = PolicyValue::default();
        for (i, (a, b)) in ranges.iter().take(MAX_RANGES).enumerate() {
            v.ranges[i] = PortRange { first: *a, last: *b };
        }
        v.count = ranges.len().min(MAX_RANGES) as u8;
        v
    }
}

/// A flow as conntrack keeps it, with the direction whose check allowed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub direction: u8,
    pub pad: [u8; 2],
}

// SAFETY: all fields are plain bytes and integers; padding explicit.
unsafe impl aya::Pod for FlowKey {}

/// Whose policy a verdict applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The destination pod's ingress policy.
    Ingress,
    /// The source pod's egress policy.
    Egress,
}

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new flow was allowed.
    Flow,
    /// A packet was dropped by policy.
    Drop,
}

/// An event from the `events` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub timestamp_ns: u64,
    pub src: Addr,
    pub dst: Addr,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub kind: u8,
    pub direction: u8,
    pub pad: u8,
    pub ifindex: u32,
}

/// An event as user space reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub timestamp_ns: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub kind: EventKind,
    pub direction: Direction,
    pub ifindex: u32,
}

impl FlowEvent {
    /// Reads one ring buffer record.
    pub fn parse(bytes: &[u8]) -> Option<FlowEvent> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the record is at least a RawEvent long; read unaligned.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const RawEvent) };
        Some(FlowEvent {
            timestamp_ns: raw.timestamp_ns,
            src: raw.src.ip(),
            dst: raw.dst.ip(),
            src_identity: raw.src_identity,
            dst_identity: raw.dst_identity,
            sport: raw.sport,
            dport: raw.dport,
            protocol: raw.protocol,
            kind: if raw.kind == 1 {
                EventKind::Drop
            } else {
                EventKind::Flow
            },
            direction: if raw.direction == 1 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            ifindex: raw.ifindex,
        })
    }
}

/// Indexes of the `counters` array.
pub mod counter {
    pub const INGRESS_ALLOW: u32 = 0;
    pub const INGRESS_DENY: u32 = 1;
    pub const EGRESS_ALLOW: u32 = 2;
    pub const EGRESS_DENY: u32 = 3;
    pub const EVENTS_LOST: u32 = 4;
    pub const COUNT: u32 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<Addr>(), 16);
        assert_eq!(std::mem::size_of::<PolicyKey>(), 12);
        assert_eq!(std::mem::size_of::<PolicyValue>(), 4 + 4 * MAX_RANGES);
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
        assert_eq!(std::mem::size_of::<SourceKey>(), 20);
        assert_eq!(std::mem::size_of::<PortKey>(), 12);
        assert_eq!(std::mem::size_of::<RawEvent>(), 64);
        let v4: IpAddr = "10.244.1.7".parse().unwrap();
        assert_eq!(Addr::from(v4).ip(), v4);
        assert_eq!(&Addr::from(v4).0[10..12], &[0xff, 0xff]);
    }
}
