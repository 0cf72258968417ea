//! UPDATE message (RFC 4271 4.3, RFC 4760) and UPDATE packing.

use super::attributes::{
    encode_attributes, encode_mp_reach, encode_mp_unreach, parse_attributes, MpReach, MpUnreach, PathAttributes,
    SessionCodec,
};
use super::error::{subcode, DecodeError, ErrorAction, ErrorKind};
use super::nlri::{encode_nlri, encoded_len, parse_nlri_field, AddressKind};
use super::types::{Family, MpNextHop, Nlri};
use super::{MessageType, HEADER_LEN, MARKER};
use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use std::net::IpAddr;

/// A decoded UPDATE.
///
/// When RFC 7606 "treat-as-withdraw" applies, decoding moves every announced
/// prefix (classic and MP) into `withdrawn` and sets `treat_as_withdraw`, so
/// a consumer never installs a route from a malformed UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn routes: the classic IPv4 field (plus, after
    /// treat-as-withdraw, every announced prefix).
    pub withdrawn: Vec<Nlri>,
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Classic IPv4 NLRI.
    pub nlri: Vec<Nlri>,
    pub treat_as_withdraw: Option<DecodeError>,
    pub discarded: Vec<DecodeError>,
    /// Set when this UPDATE is an End-of-RIB marker (RFC 4724 section 2).
    pub end_of_rib: Option<Family>,
}

impl Update {
    /// The End-of-RIB marker for a family.
    pub fn end_of_rib(family: Family) -> Update {
        let mut u = Update {
            end_of_rib: Some(family),
            ..Default::default()
        };
        if family != Family::IPV4_UNICAST {
            u.mp_unreach = Some(MpUnreach {
                family,
                nlri: Vec::new(),
            });
        }
        u
    }

    /// Every prefix this UPDATE withdraws, whatever field carried it.
    pub fn withdrawals(&self) -> impl Iterator<Item = &Nlri> {
        self.withdrawn
            .iter()
            .chain(self.mp_unreach.iter().flat_map(|m| m.nlri.iter()))
    }

    /// Every announced prefix with the next hop that goes with it.
    pub fn announcements(&self) -> impl Iterator<Item = (&Nlri, Option<IpAddr>, Option<std::net::Ipv6Addr>)> {
        let classic = self.nlri.iter().map(|n| (n, self.attrs.next_hop, None));
        let mp = self.mp_reach.iter().flat_map(|m| {
            m.nlri
                .iter()
                .map(|n| (n, Some(m.next_hop.global), m.next_hop.link_local))
        });
        classic.chain(mp)
    }

    pub fn prefix_count(&self) -> usize {
        self.withdrawals().count() + self.announcements().count()
    }
}

fn malformed_list() -> DecodeError {
    DecodeError::update(
        ErrorKind::MalformedAttributeList,
        subcode::MALFORMED_ATTRIBUTE_LIST,
        ErrorAction::SessionReset,
    )
}

/// Decodes the body of an UPDATE (after the 19-byte header).
pub fn decode_update(body: &[u8], codec: &SessionCodec) -> Result<Update, DecodeError> {
    if body.len() < 4 {
        return Err(malformed_list());
    }
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    if body.len() < 2 + wlen + 2 {
        return Err(malformed_list());
    }
    let wfield = &body[2..2 + wlen];
    let alen = u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]) as usize;
    let rest = &body[4 + wlen..];
    if rest.len() < alen {
        return Err(malformed_list());
    }
    let (afield, nfield) = rest.split_at(alen);

    let mut u = Update::default();
    parse_nlri_field(wfield, AddressKind::V4, codec.add_path_v4, &mut u.withdrawn)?;
    let parsed = parse_attributes(afield, codec).map_err(|e| e.shifted(4 + wlen))?;
    parse_nlri_field(nfield, AddressKind::V4, codec.add_path_v4, &mut u.nlri)?;

    let attr_count = parsed.present.iter().map(|w| w.count_ones()).sum::<u32>();
    u.attrs = parsed.attrs;
    u.mp_reach = parsed.mp_reach;
    u.mp_unreach = parsed.mp_unreach;
    u.discarded = parsed.discarded;
    u.treat_as_withdraw = parsed.treat_as_withdraw;

    // Mandatory attributes (RFC 4271 6.3, RFC 7606 3.d).
    if u.treat_as_withdraw.is_none() {
        use super::attributes::attr_type::*;
        let reach_mp = u.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        let missing = if !u.nlri.is_empty() || reach_mp {
            [ORIGIN, AS_PATH].into_iter().find(|t| !present(&parsed.present, *t))
        } else {
            None
        }
        .or_else(|| (!u.nlri.is_empty() && !present(&parsed.present, NEXT_HOP)).then_some(NEXT_HOP));
        if let Some(t) = missing {
            u.treat_as_withdraw = Some(
                DecodeError::update(
                    ErrorKind::MissingWellKnown,
                    subcode::MISSING_WELL_KNOWN,
                    ErrorAction::TreatAsWithdraw,
                )
                .about(t),
            );
        }
    }
    if u.treat_as_withdraw.is_some() {
        let reach = std::mem::take(&mut u.nlri);
        u.withdrawn.extend(reach);
        if let Some(m) = u.mp_reach.take() {
            u.withdrawn.extend(m.nlri);
        }
    }

    // End-of-RIB (RFC 4724 2): an UPDATE with nothing at all (IPv4), or
    // only an empty MP_UNREACH_NLRI; never one whose attributes were
    // malformed.
    if u.withdrawn.is_empty() && u.nlri.is_empty() && u.mp_reach.is_none() && u.treat_as_withdraw.is_none() {
        if alen == 0 {
            u.end_of_rib = Some(Family::IPV4_UNICAST);
        } else if attr_count == 1 {
            if let Some(m) = &u.mp_unreach {
                if m.nlri.is_empty() {
                    u.end_of_rib = Some(m.family);
                }
            }
        }
    }
    Ok(u)
}

fn present(bits: &[u64; 4], t: u8) -> bool {
    bits[(t / 64) as usize] & (1 << (t % 64)) != 0
}

/// Encodes the body of an UPDATE.
pub fn encode_update(u: &Update, codec: &SessionCodec, buf: &mut BytesMut) {
    let wpos = buf.len();
    buf.put_u16(0);
    for n in u.withdrawn.iter().filter(|n| n.prefix.addr().is_ipv4()) {
        encode_nlri(n, codec.add_path_v4, buf);
    }
    let wlen = buf.len() - wpos - 2;
    buf[wpos..wpos + 2].copy_from_slice(&(wlen as u16).to_be_bytes());

    let apos = buf.len();
    buf.put_u16(0);
    if let Some(m) = &u.mp_unreach {
        encode_mp_unreach(m, codec, buf);
    }
    if let Some(m) = &u.mp_reach {
        encode_mp_reach(m, codec, buf);
    }
    if !u.nlri.is_empty() || u.mp_reach.is_some() {
        encode_attributes(&u.attrs, codec, !u.nlri.is_empty(), buf);
    }
    let alen = buf.len() - apos - 2;
    buf[apos..apos + 2].copy_from_slice(&(alen as u16).to_be_bytes());

    for n in &u.nlri {
        encode_nlri(n, codec.add_path_v4, buf);
    }
}

fn start_message(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_slice(&MARKER);
    buf.put_u16(0);
    buf.put_u8(MessageType::Update as u8);
    start
}

fn finish_message(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start) as u16;
    buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Packs announcements of one attribute set into as few UPDATE messages as
/// the message size allows, appending whole messages to `out`.
///
/// IPv4 prefixes with an IPv4 next hop go in the classic NLRI field; IPv6
/// prefixes, and IPv4 prefixes with an IPv6 next hop (RFC 8950), go in
/// MP_REACH_NLRI.
pub fn pack_announcements(attrs: &PathAttributes, prefixes: &[Nlri], codec: &SessionCodec, out: &mut BytesMut) {
    if prefixes.is_empty() {
        return;
    }
    let max = codec.max_message_len();
    let family = Family::of(&prefixes[0].prefix);
    let classic = family == Family::IPV4_UNICAST && matches!(attrs.next_hop, Some(IpAddr::V4(_)) | None);
    // Attribute bytes without NLRI, to know the room left per message.
    let mut probe = BytesMut::new();
    encode_attributes(attrs, codec, classic, &mut probe);
    let mp_overhead = if classic { 0 } else { 4 + 3 + 1 + 32 + 1 };
    let fixed = HEADER_LEN + 4 + probe.len() + mp_overhead;
    let room = max.saturating_sub(fixed).max(64);
    let ap = codec.add_path(family);

    let mut i = 0;
    while i < prefixes.len() {
        let mut used = 0;
        let mut j = i;
        while j < prefixes.len() {
            let l = encoded_len(&prefixes[j], ap);
            if used + l > room {
                break;
            }
            used += l;
            j += 1;
        }
        if j == i {
            j = i + 1;
        }
        let chunk = &prefixes[i..j];
        let start = start_message(out);
        out.put_u16(0); // no withdrawn routes
        let apos = out.len();
        out.put_u16(0);
        if !classic {
            let nh = attrs.next_hop.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
            encode_mp_reach(
                &MpReach {
                    family,
                    next_hop: MpNextHop {
                        global: nh,
                        link_local: attrs.link_local_next_hop,
                    },
                    nlri: chunk.to_vec(),
                },
                codec,
                out,
            );
        }
        out.put_slice(&probe);
        let alen = out.len() - apos - 2;
        out[apos..apos + 2].copy_from_slice(&(alen as u16).to_be_bytes());
        if classic {
            for n in chunk {
                encode_nlri(n, ap, out);
            }
        }
        finish_message(out, start);
        i = j;
    }
}

/// Packs withdrawals into as few UPDATE messages as the size allows.
pub fn pack_withdrawals(prefixes: &[Nlri], codec: &SessionCodec, out: &mut BytesMut) {
    let (v4, v6): (Vec<Nlri>, Vec<Nlri>) = prefixes.iter().partition(|n| matches!(n.prefix, IpNet::V4(_)));
    let max = codec.max_message_len();
    for n in v4.chunks(chunk_count(&v4, max - HEADER_LEN - 4, codec.add_path_v4)) {
        let start = start_message(out);
        let wpos = out.len();
        out.put_u16(0);
        for p in n {
            encode_nlri(p, codec.add_path_v4, out);
        }
        let wlen = out.len() - wpos - 2;
        out[wpos..wpos + 2].copy_from_slice(&(wlen as u16).to_be_bytes());
        out.put_u16(0);
        finish_message(out, start);
    }
    for n in v6.chunks(chunk_count(&v6, max - HEADER_LEN - 4 - 7, codec.add_path_v6)) {
        let start = start_message(out);
        out.put_u16(0);
        let apos = out.len();
        out.put_u16(0);
        encode_mp_unreach(
            &MpUnreach {
                family: Family::IPV6_UNICAST,
                nlri: n.to_vec(),
            },
            codec,
            out,
        );
        let alen = out.len() - apos - 2;
        out[apos..apos + 2].copy_from_slice(&(alen as u16).to_be_bytes());
        finish_message(out, start);
    }
}

/// How many prefixes of the worst-case size fit in `room` bytes.
fn chunk_count(prefixes: &[Nlri], room: usize, add_path: bool) -> usize {
    let worst = prefixes.iter().map(|n| encoded_len(n, add_path)).max().unwrap_or(1);
    (room / worst).max(1)
}

/// Encodes a whole UPDATE message (header included) into `Bytes`.
pub fn update_message(u: &Update, codec: &SessionCodec) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    let start = start_message(&mut buf);
    encode_update(u, codec, &mut buf);
    finish_message(&mut buf, start);
    buf.freeze()
}
