//! Path attributes (RFC 4271 section 5, RFC 4760, RFC 6793, RFC 1997,
//! RFC 4360, RFC 8092, RFC 4456) with RFC 7606 error handling.

use super::error::{subcode, DecodeError, ErrorAction, ErrorKind};
use super::nlri::{parse_nlri_field, AddressKind};
use super::types::*;
use bytes::BufMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Attribute type codes.
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Attribute flag bits.
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// AGGREGATOR value, held with a 4-octet AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// An attribute this speaker does not interpret but passes on
/// (optional transitive; sent on with the partial bit set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Box<[u8]>,
}

/// The path attributes of a route. Values of this type are interned by the
/// RIB and shared by every route that carries the same set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: AsPath,
    /// NEXT_HOP attribute (IPv4) or, for routes from MP_REACH_NLRI, the
    /// global next hop of that attribute.
    pub next_hop: Option<IpAddr>,
    /// IPv6 link-local next hop from MP_REACH_NLRI (RFC 2545).
    pub link_local_next_hop: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub ext_communities: Vec<[u8; 8]>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<u32>,
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    pub fn has_community(&self, c: u32) -> bool {
        self.communities.contains(&c)
    }
}

/// MP_REACH_NLRI contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: MpNextHop,
    pub nlri: Vec<Nlri>,
}

/// MP_UNREACH_NLRI contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub nlri: Vec<Nlri>,
}

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCodec {
    /// Both sides announced the 4-octet AS capability.
    pub four_octet_as: bool,
    /// Add-path receive negotiated, IPv4 unicast.
    pub add_path_v4: bool,
    /// Add-path receive negotiated, IPv6 unicast.
    pub add_path_v6: bool,
    /// Extended messages (RFC 8654) negotiated: 65535-byte limit.
    pub extended_message: bool,
}

impl Default for SessionCodec {
    fn default() -> Self {
        SessionCodec {
            four_octet_as: true,
            add_path_v4: false,
            add_path_v6: false,
            extended_message: false,
        }
    }
}

impl SessionCodec {
    pub fn add_path(&self, family: Family) -> bool {
        match family {
            Family::IPV4_UNICAST => self.add_path_v4,
            Family::IPV6_UNICAST => self.add_path_v6,
            _ => false,
        }
    }

    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            super::MAX_EXTENDED_MESSAGE_LEN
        } else {
            super::MAX_MESSAGE_LEN
        }
    }
}

/// Everything the attribute section of an UPDATE yields.
#[derive(Debug, Default)]
pub struct ParsedAttributes {
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Set when the UPDATE must be treated as a withdraw (RFC 7606).
    pub treat_as_withdraw: Option<DecodeError>,
    /// Attributes dropped under "attribute discard".
    pub discarded: Vec<DecodeError>,
    /// Which attribute types were present (bit per type code).
    pub present: [u64; 4],
}

impl ParsedAttributes {
    fn mark(&mut self, t: u8) -> bool {
        let (w, b) = ((t / 64) as usize, t % 64);
        let seen = self.present[w] & (1 << b) != 0;
        self.present[w] |= 1 << b;
        seen
    }

    pub fn has(&self, t: u8) -> bool {
        self.present[(t / 64) as usize] & (1 << (t % 64)) != 0
    }

    fn fault(&mut self, e: DecodeError) -> Result<(), DecodeError> {
        match e.action {
            ErrorAction::SessionReset => return Err(e),
            ErrorAction::TreatAsWithdraw => {
                if self.treat_as_withdraw.is_none() {
                    self.treat_as_withdraw = Some(e);
                }
            }
            ErrorAction::AttributeDiscard => self.discarded.push(e),
        }
        Ok(())
    }
}

fn taw(kind: ErrorKind, sub: u8, t: u8) -> DecodeError {
    DecodeError::update(kind, sub, ErrorAction::TreatAsWithdraw).about(t)
}

fn discard(kind: ErrorKind, sub: u8, t: u8) -> DecodeError {
    DecodeError::update(kind, sub, ErrorAction::AttributeDiscard).about(t)
}

fn reset(kind: ErrorKind, sub: u8, t: u8) -> DecodeError {
    DecodeError::update(kind, sub, ErrorAction::SessionReset).about(t)
}

/// The flags each known attribute must carry (optional, transitive), and the
/// action when it is malformed (RFC 7606 section 7).
fn known(t: u8) -> Option<(bool, bool, ErrorAction)> {
    use attr_type::*;
    use ErrorAction::*;
    Some(match t {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF => (false, true, TreatAsWithdraw),
        ATOMIC_AGGREGATE => (false, true, AttributeDiscard),
        MED | ORIGINATOR_ID | CLUSTER_LIST => (true, false, TreatAsWithdraw),
        AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => (true, true, AttributeDiscard),
        COMMUNITIES | EXTENDED_COMMUNITIES | LARGE_COMMUNITIES => (true, true, TreatAsWithdraw),
        MP_REACH_NLRI | MP_UNREACH_NLRI => (true, false, SessionReset),
        _ => return None,
    })
}

/// Parses the path attribute section of an UPDATE.
///
/// Errors whose action is a session reset come back as `Err`; the others are
/// recorded in the result (`treat_as_withdraw`, `discarded`).
pub fn parse_attributes(mut input: &[u8], codec: &SessionCodec) -> Result<ParsedAttributes, DecodeError> {
    use attr_type::*;
    let mut out = ParsedAttributes::default();
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let section_len = input.len();
    while !input.is_empty() {
        let attr_start = section_len - input.len();
        // An attribute that overruns the section: the rest of the section
        // cannot be read. When MP_REACH_NLRI or MP_UNREACH_NLRI may be
        // hiding behind it, their NLRI cannot be located for a withdraw,
        // so the session is reset (RFC 7606 section 5.3); once both could
        // have been read, the UPDATE is treated as withdraw.
        let overrun = |out: &ParsedAttributes| {
            let action = if out.mp_reach.is_some() || out.mp_unreach.is_some() {
                ErrorAction::TreatAsWithdraw
            } else {
                ErrorAction::SessionReset
            };
            DecodeError::update(
                ErrorKind::MalformedAttributeList,
                subcode::MALFORMED_ATTRIBUTE_LIST,
                action,
            )
        };
        // Header: flags, type, length (1 or 2 octets).
        if input.len() < 3 {
            out.fault(overrun(&out))?;
            break;
        }
        let flags = input[0];
        let t = input[1];
        let (len, hdr) = if flags & flag::EXTENDED_LENGTH != 0 {
            if input.len() < 4 {
                out.fault(overrun(&out))?;
                break;
            }
            (u16::from_be_bytes([input[2], input[3]]) as usize, 4)
        } else {
            (input[2] as usize, 3)
        };
        if input.len() < hdr + len {
            out.fault(overrun(&out))?;
            break;
        }
        // The NOTIFICATION's data for an error about this attribute is the
        // attribute itself: flags, type, length and value (RFC 4271 6.3).
        let whole = hdr + len;
        let span = |e: DecodeError| e.with_span(attr_start, whole);
        let value = &input[hdr..hdr + len];
        input = &input[hdr + len..];

        if out.mark(t) {
            if t == MP_REACH_NLRI || t == MP_UNREACH_NLRI {
                return Err(reset(
                    ErrorKind::DuplicateMpAttribute,
                    subcode::MALFORMED_ATTRIBUTE_LIST,
                    t,
                ));
            }
            // Other repeats: keep the first, discard the rest (RFC 7606 3.g).
            continue;
        }

        let Some((optional, transitive, action)) = known(t) else {
            if flags & flag::OPTIONAL == 0 {
                return Err(span(reset(
                    ErrorKind::UnrecognizedWellKnown,
                    subcode::UNRECOGNIZED_WELL_KNOWN,
                    t,
                )));
            }
            if flags & flag::TRANSITIVE != 0 {
                out.attrs.unknown.push(RawAttribute {
                    flags: flags & !flag::EXTENDED_LENGTH,
                    type_code: t,
                    value: value.into(),
                });
            }
            continue;
        };
        if (flags & flag::OPTIONAL != 0) != optional || (flags & flag::TRANSITIVE != 0) != transitive {
            let e = DecodeError::update(ErrorKind::AttributeFlags, subcode::ATTRIBUTE_FLAGS, action).about(t);
            out.fault(span(e))?;
            continue;
        }
        let length_error = |kind| span(DecodeError::update(kind, subcode::ATTRIBUTE_LENGTH, action).about(t));

        match t {
            ORIGIN => match value {
                [v] => match Origin::from_u8(*v) {
                    Some(o) => out.attrs.origin = o,
                    None => out.fault(span(taw(ErrorKind::InvalidOrigin, subcode::INVALID_ORIGIN, t)))?,
                },
                _ => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            AS_PATH => match parse_as_path(value, codec.four_octet_as) {
                Some(p) => out.attrs.as_path = p,
                None => out.fault(span(taw(ErrorKind::MalformedAsPath, subcode::MALFORMED_AS_PATH, t)))?,
            },
            NEXT_HOP => match value {
                [a, b, c, d] => {
                    let nh = Ipv4Addr::new(*a, *b, *c, *d);
                    if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                        out.fault(span(taw(ErrorKind::InvalidNextHop, subcode::INVALID_NEXT_HOP, t)))?;
                    } else {
                        out.attrs.next_hop = Some(IpAddr::V4(nh));
                    }
                }
                _ => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            MED => match value {
                [a, b, c, d] => out.attrs.med = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            LOCAL_PREF => match value {
                [a, b, c, d] => out.attrs.local_pref = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            ATOMIC_AGGREGATE => {
                if value.is_empty() {
                    out.attrs.atomic_aggregate = true;
                } else {
                    out.fault(length_error(ErrorKind::AttributeLength))?;
                }
            }
            AGGREGATOR => {
                let asn_len = if codec.four_octet_as { 4 } else { 2 };
                match parse_aggregator(value, asn_len) {
                    Some(a) => out.attrs.aggregator = Some(a),
                    None => out.fault(length_error(ErrorKind::AttributeLength))?,
                }
            }
            AS4_AGGREGATOR => match parse_aggregator(value, 4) {
                Some(a) if !codec.four_octet_as => as4_aggregator = Some(a),
                Some(_) => {}
                None => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            AS4_PATH => match parse_as_path(value, true) {
                Some(mut p) if !codec.four_octet_as => {
                    // RFC 6793 3: confederation segments have no place in
                    // AS4_PATH; a receiver discards them and goes on.
                    p.segments
                        .retain(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set));
                    as4_path = Some(p)
                }
                Some(_) => {}
                None => out.fault(span(discard(ErrorKind::MalformedAsPath, subcode::MALFORMED_AS_PATH, t)))?,
            },
            COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    out.fault(span(taw(
                        ErrorKind::MalformedCommunities,
                        subcode::OPTIONAL_ATTRIBUTE,
                        t,
                    )))?;
                } else {
                    out.attrs.communities = value
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            EXTENDED_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(8) {
                    out.fault(span(taw(
                        ErrorKind::MalformedCommunities,
                        subcode::OPTIONAL_ATTRIBUTE,
                        t,
                    )))?;
                } else {
                    out.attrs.ext_communities = value.chunks_exact(8).map(|c| c.try_into().expect("8 bytes")).collect();
                }
            }
            LARGE_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(12) {
                    out.fault(span(taw(
                        ErrorKind::MalformedCommunities,
                        subcode::OPTIONAL_ATTRIBUTE,
                        t,
                    )))?;
                } else {
                    out.attrs.large_communities = value
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global_admin: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
            }
            ORIGINATOR_ID => match value {
                [a, b, c, d] => out.attrs.originator_id = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                _ => out.fault(length_error(ErrorKind::AttributeLength))?,
            },
            CLUSTER_LIST => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    out.fault(length_error(ErrorKind::AttributeLength))?;
                } else {
                    out.attrs.cluster_list = value
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            MP_REACH_NLRI => out.mp_reach = Some(parse_mp_reach(value, codec).map_err(span)?),
            MP_UNREACH_NLRI => out.mp_unreach = Some(parse_mp_unreach(value, codec).map_err(span)?),
            _ => unreachable!("known() covers every matched type"),
        }
    }

    if !codec.four_octet_as {
        merge_as4(&mut out.attrs, as4_path, as4_aggregator);
    }
    Ok(out)
}

/// RFC 6793 section 4.2.3: rebuild the real path from AS_PATH and AS4_PATH.
fn merge_as4(attrs: &mut PathAttributes, as4_path: Option<AsPath>, as4_aggregator: Option<Aggregator>) {
    if let Some(agg) = attrs.aggregator {
        if agg.asn != AS_TRANS as u32 {
            // AGGREGATOR carries a real AS: AS4_* come from an old speaker's
            // aggregation and must be ignored.
            return;
        }
        if let Some(a4) = as4_aggregator {
            attrs.aggregator = Some(a4);
        }
    }
    let Some(as4) = as4_path else { return };
    let len2 = attrs.as_path.path_len();
    let len4 = as4.path_len();
    if len4 > len2 {
        return;
    }
    // Keep the leading (len2 - len4) ASes of AS_PATH, then append AS4_PATH.
    // A confederation segment is kept when it leads or is next to a kept
    // segment (RFC 6793 4.2.3).
    let mut keep = len2 - len4;
    let mut merged = AsPath::default();
    for seg in &attrs.as_path.segments {
        if keep == 0 && matches!(seg.kind, SegmentKind::Sequence | SegmentKind::Set) {
            break;
        }
        match seg.kind {
            SegmentKind::Sequence => {
                let n = seg.asns.len().min(keep);
                merged.segments.push(AsSegment {
                    kind: seg.kind,
                    asns: seg.asns[..n].to_vec(),
                });
                keep -= n;
            }
            SegmentKind::Set => {
                merged.segments.push(seg.clone());
                keep -= 1;
            }
            _ => merged.segments.push(seg.clone()),
        }
    }
    merged.segments.extend(as4.segments);
    attrs.as_path = merged;
}

fn parse_aggregator(value: &[u8], asn_len: usize) -> Option<Aggregator> {
    if value.len() != asn_len + 4 {
        return None;
    }
    let asn = if asn_len == 4 {
        u32::from_be_bytes(value[..4].try_into().ok()?)
    } else {
        u16::from_be_bytes([value[0], value[1]]) as u32
    };
    let a = &value[asn_len..];
    Some(Aggregator {
        asn,
        address: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
    })
}

/// Parses AS_PATH / AS4_PATH segments; `None` when malformed.
pub fn parse_as_path(mut value: &[u8], four_octet: bool) -> Option<AsPath> {
    let width = if four_octet { 4 } else { 2 };
    let mut path = AsPath::default();
    while !value.is_empty() {
        if value.len() < 2 {
            return None;
        }
        let kind = SegmentKind::from_u8(value[0])?;
        let count = value[1] as usize;
        if count == 0 || value.len() < 2 + count * width {
            return None;
        }
        let body = &value[2..2 + count * width];
        let asns = if four_octet {
            body.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            body.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
                .collect()
        };
        path.segments.push(AsSegment { kind, asns });
        value = &value[2 + count * width..];
    }
    Some(path)
}

fn parse_mp_next_hop(family: Family, nh: &[u8]) -> Option<MpNextHop> {
    let v6 = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
    match (family.afi, nh.len()) {
        (AFI_IPV4, 4) => Some(MpNextHop {
            global: IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
            link_local: None,
        }),
        // RFC 2545 / RFC 8950: IPv6 next hop, optionally followed by a link-local.
        (AFI_IPV4 | AFI_IPV6, 16) => Some(MpNextHop {
            global: IpAddr::V6(v6(nh)),
            link_local: None,
        }),
        (AFI_IPV4 | AFI_IPV6, 32) => Some(MpNextHop {
            global: IpAddr::V6(v6(&nh[..16])),
            link_local: Some(v6(&nh[16..])),
        }),
        _ => None,
    }
}

fn address_kind(family: Family) -> AddressKind {
    if family.afi == AFI_IPV6 {
        AddressKind::V6
    } else {
        AddressKind::V4
    }
}

fn parse_mp_reach(value: &[u8], codec: &SessionCodec) -> Result<MpReach, DecodeError> {
    let bad = reset(
        ErrorKind::MalformedMpReach,
        subcode::OPTIONAL_ATTRIBUTE,
        attr_type::MP_REACH_NLRI,
    );
    if value.len() < 5 {
        return Err(bad);
    }
    let family = Family::new(u16::from_be_bytes([value[0], value[1]]), value[2]);
    let nh_len = value[3] as usize;
    if value.len() < 4 + nh_len + 1 {
        return Err(bad);
    }
    let nh = &value[4..4 + nh_len];
    let nlri_bytes = &value[4 + nh_len + 1..];
    if !family.is_supported() {
        // A family we never negotiated: nothing to install; keep the session.
        return Ok(MpReach {
            family,
            next_hop: MpNextHop {
                global: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                link_local: None,
            },
            nlri: Vec::new(),
        });
    }
    let next_hop = parse_mp_next_hop(family, nh).ok_or(bad)?;
    let mut nlri = Vec::new();
    parse_nlri_field(nlri_bytes, address_kind(family), codec.add_path(family), &mut nlri)?;
    Ok(MpReach { family, next_hop, nlri })
}

fn parse_mp_unreach(value: &[u8], codec: &SessionCodec) -> Result<MpUnreach, DecodeError> {
    if value.len() < 3 {
        return Err(reset(
            ErrorKind::MalformedMpUnreach,
            subcode::OPTIONAL_ATTRIBUTE,
            attr_type::MP_UNREACH_NLRI,
        ));
    }
    let family = Family::new(u16::from_be_bytes([value[0], value[1]]), value[2]);
    let mut nlri = Vec::new();
    if family.is_supported() {
        parse_nlri_field(&value[3..], address_kind(family), codec.add_path(family), &mut nlri)?;
    }
    Ok(MpUnreach { family, nlri })
}

// ---------------------------------------------------------------- encoding

/// Writes one attribute header and value, choosing the length width.
fn put_attr(buf: &mut impl BufMut, flags: u8, t: u8, value: &[u8]) {
    if value.len() > 255 {
        buf.put_u8(flags | flag::EXTENDED_LENGTH);
        buf.put_u8(t);
        buf.put_u16(value.len() as u16);
    } else {
        buf.put_u8(flags & !flag::EXTENDED_LENGTH);
        buf.put_u8(t);
        buf.put_u8(value.len() as u8);
    }
    buf.put_slice(value);
}

fn encode_as_path(path: &AsPath, four_octet: bool, out: &mut Vec<u8>) {
    for seg in &path.segments {
        for chunk in seg.asns.chunks(255) {
            out.push(seg.kind as u8);
            out.push(chunk.len() as u8);
            for &a in chunk {
                if four_octet {
                    out.extend_from_slice(&a.to_be_bytes());
                } else {
                    let a2 = if a > u16::MAX as u32 { AS_TRANS } else { a as u16 };
                    out.extend_from_slice(&a2.to_be_bytes());
                }
            }
        }
    }
}

fn encode_mp_next_hop(nh: &MpNextHop, out: &mut Vec<u8>) {
    match nh.global {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(if nh.link_local.is_some() { 32 } else { 16 });
            out.extend_from_slice(&a.octets());
            if let Some(ll) = nh.link_local {
                out.extend_from_slice(&ll.octets());
            }
        }
    }
}

/// Encodes MP_REACH_NLRI.
pub fn encode_mp_reach(mp: &MpReach, codec: &SessionCodec, buf: &mut impl BufMut) {
    let mut v = Vec::with_capacity(64 + mp.nlri.len() * 5);
    v.extend_from_slice(&mp.family.afi.to_be_bytes());
    v.push(mp.family.safi);
    encode_mp_next_hop(&mp.next_hop, &mut v);
    v.push(0);
    let ap = codec.add_path(mp.family);
    for n in &mp.nlri {
        super::nlri::encode_nlri(n, ap, &mut v);
    }
    put_attr(buf, flag::OPTIONAL, attr_type::MP_REACH_NLRI, &v);
}

/// Encodes MP_UNREACH_NLRI.
pub fn encode_mp_unreach(mp: &MpUnreach, codec: &SessionCodec, buf: &mut impl BufMut) {
    let mut v = Vec::with_capacity(8 + mp.nlri.len() * 5);
    v.extend_from_slice(&mp.family.afi.to_be_bytes());
    v.push(mp.family.safi);
    let ap = codec.add_path(mp.family);
    for n in &mp.nlri {
        super::nlri::encode_nlri(n, ap, &mut v);
    }
    put_attr(buf, flag::OPTIONAL, attr_type::MP_UNREACH_NLRI, &v);
}

/// Encodes the attributes of `attrs` (not MP_REACH/MP_UNREACH) in type
/// order. NEXT_HOP is written only when `attrs.next_hop` is IPv4 and
/// `with_next_hop` is set (an UPDATE that carries classic IPv4 NLRI).
pub fn encode_attributes(attrs: &PathAttributes, codec: &SessionCodec, with_next_hop: bool, buf: &mut impl BufMut) {
    use attr_type::*;
    const WK: u8 = flag::TRANSITIVE;
    const OPT: u8 = flag::OPTIONAL;
    const OPT_T: u8 = flag::OPTIONAL | flag::TRANSITIVE;

    put_attr(buf, WK, ORIGIN, &[attrs.origin as u8]);
    let mut v = Vec::with_capacity(
        2 + attrs
            .as_path
            .segments
            .iter()
            .map(|s| 2 + s.asns.len() * 4)
            .sum::<usize>(),
    );
    encode_as_path(&attrs.as_path, codec.four_octet_as, &mut v);
    put_attr(buf, WK, AS_PATH, &v);
    if with_next_hop {
        if let Some(IpAddr::V4(nh)) = attrs.next_hop {
            put_attr(buf, WK, NEXT_HOP, &nh.octets());
        }
    }
    if let Some(med) = attrs.med {
        put_attr(buf, OPT, MED, &med.to_be_bytes());
    }
    if let Some(lp) = attrs.local_pref {
        put_attr(buf, WK, LOCAL_PREF, &lp.to_be_bytes());
    }
    if attrs.atomic_aggregate {
        put_attr(buf, WK, ATOMIC_AGGREGATE, &[]);
    }
    let needs_as4_aggregator = match attrs.aggregator {
        Some(agg) => {
            let mut v = Vec::with_capacity(8);
            if codec.four_octet_as {
                v.extend_from_slice(&agg.asn.to_be_bytes());
            } else {
                let a2 = if agg.asn > u16::MAX as u32 {
                    AS_TRANS
                } else {
                    agg.asn as u16
                };
                v.extend_from_slice(&a2.to_be_bytes());
            }
            v.extend_from_slice(&agg.address.octets());
            put_attr(buf, OPT_T, AGGREGATOR, &v);
            !codec.four_octet_as && agg.asn > u16::MAX as u32
        }
        None => false,
    };
    if !attrs.communities.is_empty() {
        let v: Vec<u8> = attrs.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        put_attr(buf, OPT_T, COMMUNITIES, &v);
    }
    if let Some(id) = attrs.originator_id {
        put_attr(buf, OPT, ORIGINATOR_ID, &id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        let v: Vec<u8> = attrs.cluster_list.iter().flat_map(|c| c.to_be_bytes()).collect();
        put_attr(buf, OPT, CLUSTER_LIST, &v);
    }
    if !attrs.ext_communities.is_empty() {
        let v: Vec<u8> = attrs.ext_communities.iter().flatten().copied().collect();
        put_attr(buf, OPT_T, EXTENDED_COMMUNITIES, &v);
    }
    if !codec.four_octet_as && attrs.as_path.asns().any(|a| a > u16::MAX as u32) {
        // RFC 6793 4.2.2: the real path goes in AS4_PATH, without
        // confederation segments.
        let real = AsPath {
            segments: attrs
                .as_path
                .segments
                .iter()
                .filter(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set))
                .cloned()
                .collect(),
        };
        let mut v = Vec::new();
        encode_as_path(&real, true, &mut v);
        put_attr(buf, OPT_T, AS4_PATH, &v);
    }
    if needs_as4_aggregator {
        let agg = attrs.aggregator.expect("checked above");
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(&agg.asn.to_be_bytes());
        v.extend_from_slice(&agg.address.octets());
        put_attr(buf, OPT_T, AS4_AGGREGATOR, &v);
    }
    if !attrs.large_communities.is_empty() {
        let v: Vec<u8> = attrs
            .large_communities
            .iter()
            .flat_map(|c| {
                let mut b = [0u8; 12];
                b[..4].copy_from_slice(&c.global_admin.to_be_bytes());
                b[4..8].copy_from_slice(&c.local1.to_be_bytes());
                b[8..].copy_from_slice(&c.local2.to_be_bytes());
                b
            })
            .collect();
        put_attr(buf, OPT_T, LARGE_COMMUNITIES, &v);
    }
    for raw in &attrs.unknown {
        // Passed on by a speaker that does not understand it: partial.
        put_attr(buf, raw.flags | flag::PARTIAL, raw.type_code, &raw.value);
    }
}
