//! OPEN message and capabilities (RFC 4271 4.2, RFC 5492, RFC 9072 and the
//! capability RFCs: 4760, 6793, 2918, 7313, 4724, 7911, 8950, 8654).

use super::error::{subcode, DecodeError, ErrorKind, TRUNCATED};
use super::types::{Family, AS_TRANS};
use bytes::BufMut;
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::IResult;
use std::net::Ipv4Addr;

/// Capability codes.
pub mod cap_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
}

/// Add-path direction bits (RFC 7911).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathMode {
    pub receive: bool,
    pub send: bool,
}

/// One family in the graceful-restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    pub family: Family,
    /// Forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// The graceful-restart capability (RFC 4724, RFC 8538 N bit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restarting: bool,
    /// N bit: notification support (RFC 8538).
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    pub families: Vec<GracefulRestartFamily>,
}

/// One BGP capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    Multiprotocol(Family),
    RouteRefresh,
    EnhancedRouteRefresh,
    FourOctetAs(u32),
    GracefulRestart(GracefulRestart),
    AddPath(Vec<(Family, AddPathMode)>),
    /// RFC 8950 entries: (NLRI family, next-hop AFI).
    ExtendedNextHop(Vec<(Family, u16)>),
    ExtendedMessage,
    Unknown {
        code: u8,
        value: Vec<u8>,
    },
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The sender's AS; for 4-octet speakers the value of the 4-octet-AS
    /// capability (the 2-octet field then holds AS_TRANS).
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The 4-octet AS capability value, when present.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    pub fn multiprotocol(&self) -> impl Iterator<Item = Family> + '_ {
        self.capabilities.iter().filter_map(|c| match c {
            Capability::Multiprotocol(f) => Some(*f),
            _ => None,
        })
    }

    pub fn has(&self, probe: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(probe)
    }

    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }

    pub fn add_path(&self) -> &[(Family, AddPathMode)] {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::AddPath(v) => Some(v.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    pub fn extended_next_hop(&self) -> &[(Family, u16)] {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::ExtendedNextHop(v) => Some(v.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

type R<'a, T> = IResult<&'a [u8], T>;

fn family(i: &[u8]) -> R<'_, Family> {
    let (i, afi) = be_u16(i)?;
    let (i, _reserved) = be_u8(i)?;
    let (i, safi) = be_u8(i)?;
    Ok((i, Family::new(afi, safi)))
}

fn parse_capability(code: u8, v: &[u8]) -> Result<Capability, DecodeError> {
    use cap_code::*;
    let bad = DecodeError::open(ErrorKind::MalformedCapability, 0);
    let all = |r: R<'_, Capability>| match r {
        Ok(([], c)) => Ok(c),
        _ => Err(bad),
    };
    match code {
        MULTIPROTOCOL => all(family(v).map(|(i, f)| (i, Capability::Multiprotocol(f)))),
        ROUTE_REFRESH if v.is_empty() => Ok(Capability::RouteRefresh),
        ENHANCED_ROUTE_REFRESH if v.is_empty() => Ok(Capability::EnhancedRouteRefresh),
        EXTENDED_MESSAGE if v.is_empty() => Ok(Capability::ExtendedMessage),
        ROUTE_REFRESH | ENHANCED_ROUTE_REFRESH | EXTENDED_MESSAGE => Err(bad),
        FOUR_OCTET_AS => all(be_u32(v).map(|(i, a)| (i, Capability::FourOctetAs(a)))),
        GRACEFUL_RESTART => {
            if v.len() < 2 || !(v.len() - 2).is_multiple_of(4) {
                return Err(bad);
            }
            let head = u16::from_be_bytes([v[0], v[1]]);
            let families = v[2..]
                .chunks_exact(4)
                .map(|c| GracefulRestartFamily {
                    family: Family::new(u16::from_be_bytes([c[0], c[1]]), c[2]),
                    forwarding_preserved: c[3] & 0x80 != 0,
                })
                .collect();
            Ok(Capability::GracefulRestart(GracefulRestart {
                restarting: head & 0x8000 != 0,
                notification: head & 0x4000 != 0,
                restart_time: head & 0x0fff,
                families,
            }))
        }
        ADD_PATH => {
            if !v.len().is_multiple_of(4) {
                return Err(bad);
            }
            Ok(Capability::AddPath(
                v.chunks_exact(4)
                    .map(|c| {
                        (
                            Family::new(u16::from_be_bytes([c[0], c[1]]), c[2]),
                            AddPathMode {
                                receive: c[3] & 1 != 0,
                                send: c[3] & 2 != 0,
                            },
                        )
                    })
                    .collect(),
            ))
        }
        EXTENDED_NEXT_HOP => {
            if !v.len().is_multiple_of(6) {
                return Err(bad);
            }
            Ok(Capability::ExtendedNextHop(
                v.chunks_exact(6)
                    .map(|c| {
                        (
                            Family::new(u16::from_be_bytes([c[0], c[1]]), u16::from_be_bytes([c[2], c[3]]) as u8),
                            u16::from_be_bytes([c[4], c[5]]),
                        )
                    })
                    .collect(),
            ))
        }
        _ => Ok(Capability::Unknown {
            code,
            value: v.to_vec(),
        }),
    }
}

fn parse_capabilities(mut i: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    while !i.is_empty() {
        let (rest, code) = be_u8::<_, nom::error::Error<&[u8]>>(i).map_err(|_| TRUNCATED)?;
        let (rest, len) = be_u8::<_, nom::error::Error<&[u8]>>(rest).map_err(|_| TRUNCATED)?;
        let (rest, value) = take::<_, _, nom::error::Error<&[u8]>>(len)(rest).map_err(|_| TRUNCATED)?;
        out.push(parse_capability(code, value)?);
        i = rest;
    }
    Ok(())
}

/// Decodes the body of an OPEN (after the 19-byte header).
pub fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let t = |_| DecodeError::header(ErrorKind::BadLength, subcode::BAD_MESSAGE_LENGTH);
    let (i, version) = be_u8::<_, nom::error::Error<&[u8]>>(body).map_err(t)?;
    if version != 4 {
        // Data: the largest version we support (RFC 4271 6.2).
        return Err(
            DecodeError::open(ErrorKind::UnsupportedVersion, subcode::UNSUPPORTED_VERSION)
                .with_data(super::error::ErrorData::Word(4)),
        );
    }
    let (i, asn) = be_u16::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
    let (i, hold_time) = be_u16::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
    let (i, id) = be_u32::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
    let (i, opt_len) = be_u8::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
    // RFC 9072: a non-extended length of 255 followed by type 255 announces
    // 2-octet parameter lengths.
    let (extended, i, params_len) = if opt_len == 255 && i.first() == Some(&255) {
        let (i, _) = be_u8::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
        let (i, l) = be_u16::<_, nom::error::Error<&[u8]>>(i).map_err(t)?;
        (true, i, l as usize)
    } else {
        (false, i, opt_len as usize)
    };
    if i.len() != params_len {
        return Err(DecodeError::header(ErrorKind::BadLength, subcode::BAD_MESSAGE_LENGTH));
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::open(
            ErrorKind::UnacceptableHoldTime,
            subcode::UNACCEPTABLE_HOLD_TIME,
        ));
    }
    let router_id = Ipv4Addr::from(id);
    if id == 0 {
        return Err(DecodeError::open(
            ErrorKind::BadBgpIdentifier,
            subcode::BAD_BGP_IDENTIFIER,
        ));
    }
    let mut capabilities = Vec::new();
    let mut p = i;
    while !p.is_empty() {
        let (rest, ptype) = be_u8::<_, nom::error::Error<&[u8]>>(p).map_err(t)?;
        let (rest, plen) = if extended {
            be_u16::<_, nom::error::Error<&[u8]>>(rest)
                .map(|(r, l)| (r, l as usize))
                .map_err(t)?
        } else {
            be_u8::<_, nom::error::Error<&[u8]>>(rest)
                .map(|(r, l)| (r, l as usize))
                .map_err(t)?
        };
        let (rest, value) = take::<_, _, nom::error::Error<&[u8]>>(plen)(rest).map_err(t)?;
        if ptype != 2 {
            return Err(DecodeError::open(
                ErrorKind::UnsupportedOptionalParameter,
                subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
            ));
        }
        parse_capabilities(value, &mut capabilities)?;
        p = rest;
    }
    let mut open = Open {
        version,
        asn: asn as u32,
        hold_time,
        router_id,
        capabilities,
    };
    if let Some(a4) = open.four_octet_as() {
        open.asn = a4;
    }
    Ok(open)
}

fn encode_capability(c: &Capability, out: &mut Vec<u8>) {
    use cap_code::*;
    let mut v = Vec::new();
    let code = match c {
        Capability::Multiprotocol(f) => {
            v.extend_from_slice(&f.afi.to_be_bytes());
            v.push(0);
            v.push(f.safi);
            MULTIPROTOCOL
        }
        Capability::RouteRefresh => ROUTE_REFRESH,
        Capability::EnhancedRouteRefresh => ENHANCED_ROUTE_REFRESH,
        Capability::ExtendedMessage => EXTENDED_MESSAGE,
        Capability::FourOctetAs(a) => {
            v.extend_from_slice(&a.to_be_bytes());
            FOUR_OCTET_AS
        }
        Capability::GracefulRestart(g) => {
            let mut head = g.restart_time & 0x0fff;
            if g.restarting {
                head |= 0x8000;
            }
            if g.notification {
                head |= 0x4000;
            }
            v.extend_from_slice(&head.to_be_bytes());
            for f in &g.families {
                v.extend_from_slice(&f.family.afi.to_be_bytes());
                v.push(f.family.safi);
                v.push(if f.forwarding_preserved { 0x80 } else { 0 });
            }
            GRACEFUL_RESTART
        }
        Capability::AddPath(list) => {
            for (f, m) in list {
                v.extend_from_slice(&f.afi.to_be_bytes());
                v.push(f.safi);
                v.push(m.receive as u8 | (m.send as u8) << 1);
            }
            ADD_PATH
        }
        Capability::ExtendedNextHop(list) => {
            for (f, nh_afi) in list {
                v.extend_from_slice(&f.afi.to_be_bytes());
                v.extend_from_slice(&(f.safi as u16).to_be_bytes());
                v.extend_from_slice(&nh_afi.to_be_bytes());
            }
            EXTENDED_NEXT_HOP
        }
        Capability::Unknown { code, value } => {
            v.extend_from_slice(value);
            *code
        }
    };
    out.push(code);
    out.push(v.len() as u8);
    out.extend_from_slice(&v);
}

/// Encodes the body of an OPEN. Each capability goes in its own optional
/// parameter, as most implementations send them.
pub fn encode_open(open: &Open, buf: &mut impl BufMut) {
    buf.put_u8(open.version);
    buf.put_u16(if open.asn > u16::MAX as u32 {
        AS_TRANS
    } else {
        open.asn as u16
    });
    buf.put_u16(open.hold_time);
    buf.put_slice(&open.router_id.octets());
    let mut params = Vec::new();
    for c in &open.capabilities {
        let mut cap = Vec::new();
        encode_capability(c, &mut cap);
        params.push(2);
        params.push(cap.len() as u8);
        params.extend_from_slice(&cap);
    }
    if params.len() < 255 {
        buf.put_u8(params.len() as u8);
        buf.put_slice(&params);
    } else {
        // RFC 9072 extended optional parameters.
        let mut ext = Vec::new();
        for c in &open.capabilities {
            let mut cap = Vec::new();
            encode_capability(c, &mut cap);
            ext.push(2);
            ext.extend_from_slice(&(cap.len() as u16).to_be_bytes());
            ext.extend_from_slice(&cap);
        }
        buf.put_u8(255);
        buf.put_u8(255);
        buf.put_u16(ext.len() as u16);
        buf.put_slice(&ext);
    }
}
