//! A reader for MRT routing dumps (RFC 6396): TABLE_DUMP, TABLE_DUMP_V2
//! and BGP4MP records, as published by route collectors. Used to test the
//! codec on real traffic and to replay real tables in benchmarks.

use crate::wire::attributes::{parse_attributes, ParsedAttributes, SessionCodec};
use crate::wire::nlri::{parse_nlri_field, AddressKind};
use crate::wire::{DecodeError, Nlri};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The deprecated BGP record type of early collectors (RFC 6396 B.2.1):
/// the message body without the BGP header.
pub const BGP: u16 = 5;
pub const TABLE_DUMP: u16 = 12;
pub const TABLE_DUMP_V2: u16 = 13;
pub const BGP4MP: u16 = 16;
pub const BGP4MP_ET: u16 = 17;

/// One MRT record, undecoded.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub timestamp: u32,
    pub kind: u16,
    pub subtype: u16,
    pub body: &'a [u8],
}

/// Errors reading the MRT container itself (not BGP decode errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrtError {
    #[error("MRT record truncated at byte {0}")]
    Truncated(usize),
    #[error("MRT record type {kind}/{subtype} is malformed")]
    Malformed { kind: u16, subtype: u16 },
}

/// Iterates over the records of an uncompressed MRT file.
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
}

pub fn records(data: &[u8]) -> Records<'_> {
    Records { data, pos: 0 }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, MrtError>;

    fn next(&mut self) -> Option<Self::Item> {
        let d = &self.data[self.pos..];
        if d.is_empty() {
            return None;
        }
        if d.len() < 12 {
            self.pos = self.data.len();
            return Some(Err(MrtError::Truncated(self.pos)));
        }
        let mut len = u32::from_be_bytes([d[8], d[9], d[10], d[11]]) as usize;
        let kind = u16::from_be_bytes([d[4], d[5]]);
        if kind == TABLE_DUMP {
            len = table_dump_len(&d[12..], len, u16::from_be_bytes([d[6], d[7]]));
        }
        if d.len() < 12 + len {
            let at = self.pos;
            self.pos = self.data.len();
            return Some(Err(MrtError::Truncated(at)));
        }
        let rec = Record {
            timestamp: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            kind: u16::from_be_bytes([d[4], d[5]]),
            subtype: u16::from_be_bytes([d[6], d[7]]),
            body: &d[12..12 + len],
        };
        self.pos += 12 + len;
        Some(Ok(rec))
    }
}

/// The body length of a TABLE_DUMP record. Early RIPE RIS dumps count
/// the length without the 4-octet view and sequence fields; walking the
/// entries tells which convention a record follows.
fn table_dump_len(body: &[u8], len: usize, subtype: u16) -> usize {
    let n = if subtype == 1 { 4 } else { 16 };
    let mut j = 4;
    while j < len + 4 {
        let at = j + 2 * n + 8;
        let Some(a) = body.get(at..at + 2) else {
            return len;
        };
        j = at + 2 + u16::from_be_bytes([a[0], a[1]]) as usize;
        if j == len {
            return len;
        }
    }
    if j == len + 4 {
        len + 4
    } else {
        len
    }
}

/// A BGP message carried in a BGP4MP (or deprecated BGP) record.
#[derive(Debug, Clone, Copy)]
pub struct MrtMessage<'a> {
    pub peer_as: u32,
    pub peer_ip: IpAddr,
    /// Whether the session used 4-octet AS numbers (the `_AS4` subtypes).
    pub four_octet_as: bool,
    /// BGP message type (1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE).
    pub message_type: u8,
    /// The message body, after the 19-byte header.
    pub body: &'a [u8],
}

fn ip_of(afi: u16, b: &[u8]) -> Option<(IpAddr, usize)> {
    match afi {
        1 if b.len() >= 4 => Some((IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), 4)),
        2 if b.len() >= 16 => Some((IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).ok()?)), 16)),
        _ => None,
    }
}

/// The BGP message of a message record; `None` for other records (state
/// changes, table dumps).
pub fn bgp_message<'a>(rec: &Record<'a>) -> Result<Option<MrtMessage<'a>>, MrtError> {
    let bad = MrtError::Malformed {
        kind: rec.kind,
        subtype: rec.subtype,
    };
    if rec.kind == BGP {
        // Subtypes: 1 UPDATE, 5 OPEN, 6 NOTIFY, 7 KEEPALIVE.
        let message_type = match rec.subtype {
            1 => 2,
            5 => 1,
            6 => 3,
            7 => 4,
            _ => return Ok(None),
        };
        let b = rec.body;
        if b.len() < 12 {
            return Err(bad);
        }
        return Ok(Some(MrtMessage {
            peer_as: u16::from_be_bytes([b[0], b[1]]) as u32,
            peer_ip: IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5])),
            four_octet_as: false,
            message_type,
            body: &b[12..],
        }));
    }
    if rec.kind != BGP4MP && rec.kind != BGP4MP_ET {
        return Ok(None);
    }
    let mut b = rec.body;
    if rec.kind == BGP4MP_ET {
        b = b.get(4..).ok_or(bad.clone())?;
    }
    let four = match rec.subtype {
        1 | 6 => false,
        4 | 7 => true,
        _ => return Ok(None),
    };
    let asl = if four { 4 } else { 2 };
    if b.len() < 2 * asl + 4 {
        return Err(bad);
    }
    let peer_as = if four {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    } else {
        u16::from_be_bytes([b[0], b[1]]) as u32
    };
    let b = &b[2 * asl..];
    let afi = u16::from_be_bytes([b[2], b[3]]);
    let (peer_ip, n) = ip_of(afi, &b[4..]).ok_or(bad.clone())?;
    let msg = b.get(4 + 2 * n..).ok_or(bad.clone())?;
    if msg.len() < crate::wire::HEADER_LEN {
        return Err(bad);
    }
    Ok(Some(MrtMessage {
        peer_as,
        peer_ip,
        four_octet_as: four,
        message_type: msg[18],
        body: &msg[crate::wire::HEADER_LEN..],
    }))
}

/// One RIB entry of a TABLE_DUMP (v1) or TABLE_DUMP_V2 record.
#[derive(Debug)]
pub struct RibEntry {
    pub prefix: IpNet,
    pub peer_ip: IpAddr,
    pub peer_as: u32,
    pub attributes: ParsedAttributes,
}

/// Decodes the RIB entries of a TABLE_DUMP or TABLE_DUMP_V2 record.
/// `peer_index` is the TABLE_DUMP_V2 peer table, filled from its
/// PEER_INDEX_TABLE record.
pub fn rib_entries(
    rec: &Record<'_>,
    peer_index: &mut Vec<(IpAddr, u32)>,
    out: &mut Vec<RibEntry>,
) -> Result<(), RibError> {
    let bad = || {
        RibError::Mrt(MrtError::Malformed {
            kind: rec.kind,
            subtype: rec.subtype,
        })
    };
    let b = rec.body;
    match rec.kind {
        TABLE_DUMP => {
            // view, sequence; then entries. Early collectors packed several
            // entries of one prefix into a record, so read until the end.
            let n = if rec.subtype == 1 { 4 } else { 16 };
            let codec = SessionCodec {
                four_octet_as: false,
                ..Default::default()
            };
            let mut i = 4;
            while i < b.len() {
                let e = b.get(i..i + n + 2 + 4 + n + 4).ok_or_else(bad)?;
                let p = &e[..n];
                let plen = e[n];
                let prefix = if n == 4 {
                    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(p[0], p[1], p[2], p[3]), plen).map_err(|_| bad())?)
                } else {
                    IpNet::V6(
                        Ipv6Net::new(Ipv6Addr::from(<[u8; 16]>::try_from(p).map_err(|_| bad())?), plen)
                            .map_err(|_| bad())?,
                    )
                };
                let (peer_ip, _) = ip_of(rec.subtype, &e[n + 6..]).ok_or_else(bad)?;
                let peer_as = u16::from_be_bytes([e[2 * n + 6], e[2 * n + 7]]) as u32;
                let alen = u16::from_be_bytes([e[2 * n + 8], e[2 * n + 9]]) as usize;
                let start = i + e.len();
                let attrs = b.get(start..start + alen).ok_or_else(bad)?;
                i = start + alen;
                let attributes = parse_attributes(attrs, &codec).map_err(RibError::Bgp)?;
                out.push(RibEntry {
                    prefix,
                    peer_ip,
                    peer_as,
                    attributes,
                });
            }
            Ok(())
        }
        TABLE_DUMP_V2 => match rec.subtype {
            1 => {
                // PEER_INDEX_TABLE
                if b.len() < 6 {
                    return Err(bad());
                }
                let vlen = u16::from_be_bytes([b[4], b[5]]) as usize;
                let mut i = 6 + vlen;
                let count = u16::from_be_bytes([*b.get(i).ok_or_else(bad)?, *b.get(i + 1).ok_or_else(bad)?]);
                i += 2;
                peer_index.clear();
                for _ in 0..count {
                    let t = *b.get(i).ok_or_else(bad)?;
                    i += 5;
                    let (ip, n) = ip_of(if t & 1 != 0 { 2 } else { 1 }, b.get(i..).ok_or_else(bad)?).ok_or_else(bad)?;
                    i += n;
                    let asn = if t & 2 != 0 {
                        let v = b.get(i..i + 4).ok_or_else(bad)?;
                        i += 4;
                        u32::from_be_bytes([v[0], v[1], v[2], v[3]])
                    } else {
                        let v = b.get(i..i + 2).ok_or_else(bad)?;
                        i += 2;
                        u16::from_be_bytes([v[0], v[1]]) as u32
                    };
                    peer_index.push((ip, asn));
                }
                Ok(())
            }
            2 | 4 => {
                // RIB_IPV4_UNICAST / RIB_IPV6_UNICAST
                let kind = if rec.subtype == 2 {
                    AddressKind::V4
                } else {
                    AddressKind::V6
                };
                let plen = *b.get(4).ok_or_else(bad)?;
                let nbytes = (plen as usize).div_ceil(8);
                let mut prefixes: Vec<Nlri> = Vec::new();
                parse_nlri_field(b.get(4..5 + nbytes).ok_or_else(bad)?, kind, false, &mut prefixes)
                    .map_err(RibError::Bgp)?;
                let prefix = prefixes.first().ok_or_else(bad)?.prefix;
                let mut i = 5 + nbytes;
                let count = u16::from_be_bytes([*b.get(i).ok_or_else(bad)?, *b.get(i + 1).ok_or_else(bad)?]);
                i += 2;
                let codec = SessionCodec::default();
                for _ in 0..count {
                    let h = b.get(i..i + 8).ok_or_else(bad)?;
                    let idx = u16::from_be_bytes([h[0], h[1]]) as usize;
                    let alen = u16::from_be_bytes([h[6], h[7]]) as usize;
                    let attrs = b.get(i + 8..i + 8 + alen).ok_or_else(bad)?;
                    i += 8 + alen;
                    let (peer_ip, peer_as) = peer_index.get(idx).copied().ok_or_else(bad)?;
                    let attributes = parse_attributes(attrs, &codec).map_err(RibError::Bgp)?;
                    out.push(RibEntry {
                        prefix,
                        peer_ip,
                        peer_as,
                        attributes,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A RIB record that failed: the container or the attributes in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RibError {
    #[error(transparent)]
    Mrt(#[from] MrtError),
    #[error("attributes: {0}")]
    Bgp(DecodeError),
}
