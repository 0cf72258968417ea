//! Kernel nexthop object messages (RTM_NEWNEXTHOP, RTM_DELNEXTHOP,
//! RTM_GETNEXTHOP; `linux/nexthop.h`), on netlink-packet-core's framing:
//! netlink-packet-route has the route attribute that points at one
//! (`RTA_NH_ID`) but not the messages. A nexthop is a gateway through a
//! device; a group lists nexthops by id; a route names either by id.

use netlink_packet_core::{
    emit_u16, emit_u32, parse_u32, DecodeError, DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader,
    NetlinkSerializable, Nla, NlaBuffer, NlasIterator, Parseable,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_GROUP_TYPE: u16 = 3;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// The `nhmsg` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NexthopHeader {
    /// AF_INET/AF_INET6 for a nexthop (its gateway's family), AF_UNSPEC for
    /// a group.
    pub family: u8,
    pub scope: u8,
    pub protocol: u8,
    pub flags: u32,
}

const HEADER_LEN: usize = 8;

/// One attribute of a nexthop message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexthopAttribute {
    Id(u32),
    /// Members by id, each with its weight (1-256, sent as weight - 1).
    Group(Vec<(u32, u16)>),
    /// The group type (0: multipath).
    GroupType(u16),
    Blackhole,
    Oif(u32),
    Gateway(IpAddr),
    Other(DefaultNla),
}

impl Nla for NexthopAttribute {
    fn value_len(&self) -> usize {
        match self {
            NexthopAttribute::Id(_) | NexthopAttribute::Oif(_) => 4,
            NexthopAttribute::Group(g) => 8 * g.len(),
            NexthopAttribute::GroupType(_) => 2,
            NexthopAttribute::Blackhole => 0,
            NexthopAttribute::Gateway(IpAddr::V4(_)) => 4,
            NexthopAttribute::Gateway(IpAddr::V6(_)) => 16,
            NexthopAttribute::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            NexthopAttribute::Id(_) => NHA_ID,
            NexthopAttribute::Group(_) => NHA_GROUP,
            NexthopAttribute::GroupType(_) => NHA_GROUP_TYPE,
            NexthopAttribute::Blackhole => NHA_BLACKHOLE,
            NexthopAttribute::Oif(_) => NHA_OIF,
            NexthopAttribute::Gateway(_) => NHA_GATEWAY,
            NexthopAttribute::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            NexthopAttribute::Id(v) | NexthopAttribute::Oif(v) => emit_u32(buf, *v).expect("4 bytes"),
            NexthopAttribute::Group(members) => {
                for (i, (id, weight)) in members.iter().enumerate() {
                    let at = &mut buf[8 * i..8 * i + 8];
                    emit_u32(&mut at[..4], *id).expect("4 bytes");
                    let w = weight.clamp(&1, &256) - 1;
                    at[4] = (w & 0xff) as u8;
                    at[5] = (w >> 8) as u8;
                    at[6] = 0;
                    at[7] = 0;
                }
            }
            NexthopAttribute::GroupType(t) => emit_u16(buf, *t).expect("2 bytes"),
            NexthopAttribute::Blackhole => {}
            NexthopAttribute::Gateway(IpAddr::V4(a)) => buf[..4].copy_from_slice(&a.octets()),
            NexthopAttribute::Gateway(IpAddr::V6(a)) => buf[..16].copy_from_slice(&a.octets()),
            NexthopAttribute::Other(n) => n.emit_value(buf),
        }
    }
}

fn parse_attribute(kind: u16, value: &[u8], family: u8) -> Result<NexthopAttribute, DecodeError> {
    Ok(match kind {
        NHA_ID => NexthopAttribute::Id(parse_u32(value)?),
        NHA_OIF => NexthopAttribute::Oif(parse_u32(value)?),
        NHA_GROUP => {
            if !value.len().is_multiple_of(8) {
                return Err(DecodeError::from(format!("NHA_GROUP of {} bytes", value.len())));
            }
            NexthopAttribute::Group(
                value
                    .chunks(8)
                    .map(|c| {
                        let id = u32::from_ne_bytes(c[..4].try_into().expect("4 bytes"));
                        (id, (c[4] as u16 | (c[5] as u16) << 8) + 1)
                    })
                    .collect(),
            )
        }
        NHA_GROUP_TYPE if value.len() >= 2 => {
            NexthopAttribute::GroupType(u16::from_ne_bytes(value[..2].try_into().expect("2 bytes")))
        }
        NHA_BLACKHOLE => NexthopAttribute::Blackhole,
        NHA_GATEWAY => match (family, value.len()) {
            (AF_INET, 4) | (_, 4) => {
                NexthopAttribute::Gateway(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).expect("4"))))
            }
            (_, 16) => NexthopAttribute::Gateway(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(value).expect("16")))),
            _ => return Err(DecodeError::from(format!("NHA_GATEWAY of {} bytes", value.len()))),
        },
        _ => NexthopAttribute::Other(DefaultNla::new(kind, value.to_vec())),
    })
}

/// Which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexthopKind {
    New,
    Del,
    Get,
}

/// A nexthop message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexthopMessage {
    pub kind: NexthopKind,
    pub header: NexthopHeader,
    pub attributes: Vec<NexthopAttribute>,
}

impl NexthopMessage {
    fn new(kind: NexthopKind, family: u8, protocol: u8, attributes: Vec<NexthopAttribute>) -> Self {
        NexthopMessage {
            kind,
            header: NexthopHeader {
                family,
                protocol,
                ..Default::default()
            },
            attributes,
        }
    }

    /// A nexthop object: `gateway` through device `oif`.
    pub fn nexthop(id: u32, gateway: IpAddr, oif: u32, protocol: u8) -> Self {
        let family = if gateway.is_ipv4() { AF_INET } else { AF_INET6 };
        Self::new(
            NexthopKind::New,
            family,
            protocol,
            vec![
                NexthopAttribute::Id(id),
                NexthopAttribute::Gateway(gateway),
                NexthopAttribute::Oif(oif),
            ],
        )
    }

    /// A multipath group of nexthop ids, all of weight 1.
    pub fn group(id: u32, members: &[u32], protocol: u8) -> Self {
        Self::new(
            NexthopKind::New,
            AF_UNSPEC,
            protocol,
            vec![
                NexthopAttribute::Id(id),
                NexthopAttribute::Group(members.iter().map(|m| (*m, 1)).collect()),
            ],
        )
    }

    /// Deletes the object `id`.
    pub fn delete(id: u32) -> Self {
        Self::new(NexthopKind::Del, AF_UNSPEC, 0, vec![NexthopAttribute::Id(id)])
    }

    /// A dump request for every nexthop object.
    pub fn dump() -> Self {
        Self::new(NexthopKind::Get, AF_UNSPEC, 0, Vec::new())
    }

    pub fn id(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            NexthopAttribute::Id(i) => Some(*i),
            _ => None,
        })
    }
}

impl NetlinkSerializable for NexthopMessage {
    fn message_type(&self) -> u16 {
        match self.kind {
            NexthopKind::New => RTM_NEWNEXTHOP,
            NexthopKind::Del => RTM_DELNEXTHOP,
            NexthopKind::Get => RTM_GETNEXTHOP,
        }
    }

    fn buffer_len(&self) -> usize {
        HEADER_LEN + self.attributes.as_slice().buffer_len()
    }

    fn serialize(&self, buf: &mut [u8]) {
        let h = &self.header;
        buf[0] = h.family;
        buf[1] = h.scope;
        buf[2] = h.protocol;
        buf[3] = 0;
        emit_u32(&mut buf[4..8], h.flags).expect("4 bytes");
        self.attributes.as_slice().emit(&mut buf[HEADER_LEN..]);
    }
}

impl NetlinkDeserializable for NexthopMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        let kind = match header.message_type {
            RTM_NEWNEXTHOP => NexthopKind::New,
            RTM_DELNEXTHOP => NexthopKind::Del,
            RTM_GETNEXTHOP => NexthopKind::Get,
            other => {
                return Err(DecodeError::from(format!(
                    "message type {other} is not a nexthop message"
                )))
            }
        };
        if payload.len() < HEADER_LEN {
            return Err(DecodeError::from("nexthop message shorter than its header"));
        }
        let h = NexthopHeader {
            family: payload[0],
            scope: payload[1],
            protocol: payload[2],
            flags: u32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")),
        };
        let mut attributes = Vec::new();
        for nla in NlasIterator::new(&payload[HEADER_LEN..]) {
            let nla: NlaBuffer<&[u8]> = nla?;
            let parsed = DefaultNla::parse(&nla)?;
            attributes.push(parse_attribute(parsed.kind(), nla.value(), h.family)?);
        }
        Ok(NexthopMessage {
            kind,
            header: h,
            attributes,
        })
    }
}

impl From<NexthopMessage> for netlink_packet_core::NetlinkPayload<NexthopMessage> {
    fn from(m: NexthopMessage) -> Self {
        netlink_packet_core::NetlinkPayload::InnerMessage(m)
    }
}

/// A nexthop object as a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNexthop {
    pub id: u32,
    pub protocol: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Member ids, for a group.
    pub group: Vec<u32>,
    pub blackhole: bool,
}

impl KernelNexthop {
    pub fn from_message(m: &NexthopMessage) -> Option<KernelNexthop> {
        let mut k = KernelNexthop {
            id: m.id()?,
            protocol: m.header.protocol,
            gateway: None,
            oif: None,
            group: Vec::new(),
            blackhole: false,
        };
        for a in &m.attributes {
            match a {
                NexthopAttribute::Gateway(g) => k.gateway = Some(*g),
                NexthopAttribute::Oif(o) => k.oif = Some(*o),
                NexthopAttribute::Group(g) => k.group = g.iter().map(|(id, _)| *id).collect(),
                NexthopAttribute::Blackhole => k.blackhole = true,
                _ => {}
            }
        }
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkMessage;

    fn bytes(m: NexthopMessage) -> Vec<u8> {
        let mut nl = NetlinkMessage::new(NetlinkHeader::default(), netlink_packet_core::NetlinkPayload::from(m));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        buf
    }

    #[test]
    fn a_nexthop_is_nhmsg_then_id_gateway_and_device() {
        let b = bytes(NexthopMessage::nexthop(7, "10.0.1.1".parse().unwrap(), 3, 186));
        // netlink header (16), nhmsg (8), three 8-byte attributes.
        assert_eq!(b.len(), 16 + 8 + 24);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_NEWNEXTHOP);
        assert_eq!(&b[16..24], &[AF_INET, 0, 186, 0, 0, 0, 0, 0]);
        assert_eq!(&b[24..28], &[8, 0, 1, 0], "NHA_ID, 8 bytes");
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 7);
        assert_eq!(&b[32..36], &[8, 0, 6, 0], "NHA_GATEWAY");
        assert_eq!(&b[36..40], &[10, 0, 1, 1]);
        assert_eq!(&b[40..44], &[8, 0, 5, 0], "NHA_OIF");
    }

    #[test]
    fn a_group_lists_its_members_with_weight_minus_one() {
        let b = bytes(NexthopMessage::group(100, &[7, 8], 186));
        assert_eq!(b[16], AF_UNSPEC);
        // NHA_GROUP: 4 header + 2 * 8.
        assert_eq!(&b[32..36], &[20, 0, 2, 0]);
        assert_eq!(u32::from_ne_bytes(b[36..40].try_into().unwrap()), 7);
        assert_eq!(&b[40..44], &[0, 0, 0, 0], "weight 1 is sent as 0");
        assert_eq!(u32::from_ne_bytes(b[44..48].try_into().unwrap()), 8);
    }

    #[test]
    fn messages_decode_back() {
        for m in [
            NexthopMessage::nexthop(7, "fd00::1".parse().unwrap(), 3, 186),
            NexthopMessage::group(100, &[7, 8, 9], 186),
            NexthopMessage::delete(9),
        ] {
            let b = bytes(m.clone());
            let nl = NetlinkMessage::<NexthopMessage>::deserialize(&b).unwrap();
            match nl.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(back) => assert_eq!(back, m),
                other => panic!("{other:?}"),
            }
        }
        let g = KernelNexthop::from_message(&NexthopMessage::group(100, &[7, 8], 186)).unwrap();
        assert_eq!((g.id, g.group, g.gateway), (100, vec![7, 8], None));
    }
}
