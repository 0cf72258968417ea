//! NLRI prefix encoding (RFC 4271 section 4.3, RFC 4760, RFC 7911 add-path).

use super::error::{subcode, DecodeError, ErrorAction, ErrorKind};
use super::types::Nlri;
use bytes::BufMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nom::number::complete::{be_u32, be_u8};
use std::net::{Ipv4Addr, Ipv6Addr};

const INVALID_NLRI: DecodeError = DecodeError::update(
    ErrorKind::InvalidNetworkField,
    subcode::INVALID_NETWORK_FIELD,
    ErrorAction::SessionReset,
);

/// Which address family an NLRI field carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    V4,
    V6,
}

/// Parses a whole NLRI field (withdrawn routes, NLRI, or the NLRI of an
/// MP_REACH/MP_UNREACH attribute). A malformed field cannot be located
/// reliably, so its error is a session reset (RFC 7606 section 5.3).
pub fn parse_nlri_field(
    mut input: &[u8],
    kind: AddressKind,
    add_path: bool,
    out: &mut Vec<Nlri>,
) -> Result<(), DecodeError> {
    let max_len: u8 = match kind {
        AddressKind::V4 => 32,
        AddressKind::V6 => 128,
    };
    while !input.is_empty() {
        let mut path_id = 0;
        if add_path {
            let (rest, id) = be_u32::<_, nom::error::Error<&[u8]>>(input).map_err(|_| INVALID_NLRI)?;
            path_id = id;
            input = rest;
        }
        let (rest, len) = be_u8::<_, nom::error::Error<&[u8]>>(input).map_err(|_| INVALID_NLRI)?;
        if len > max_len {
            return Err(INVALID_NLRI);
        }
        let nbytes = (len as usize).div_ceil(8);
        if rest.len() < nbytes {
            return Err(INVALID_NLRI);
        }
        let (bits, rest) = rest.split_at(nbytes);
        let prefix = match kind {
            AddressKind::V4 => {
                let mut a = [0u8; 4];
                a[..nbytes].copy_from_slice(bits);
                let masked = u32::from_be_bytes(a) & mask32(len);
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(masked), len).map_err(|_| INVALID_NLRI)?)
            }
            AddressKind::V6 => {
                let mut a = [0u8; 16];
                a[..nbytes].copy_from_slice(bits);
                let masked = u128::from_be_bytes(a) & mask128(len);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(masked), len).map_err(|_| INVALID_NLRI)?)
            }
        };
        out.push(Nlri { prefix, path_id });
        input = rest;
    }
    Ok(())
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// Bytes one NLRI takes on the wire.
pub fn encoded_len(nlri: &Nlri, add_path: bool) -> usize {
    let bits = nlri.prefix.prefix_len() as usize;
    1 + bits.div_ceil(8) + if add_path { 4 } else { 0 }
}

/// Appends one NLRI to `buf`.
pub fn encode_nlri(nlri: &Nlri, add_path: bool, buf: &mut impl BufMut) {
    if add_path {
        buf.put_u32(nlri.path_id);
    }
    let len = nlri.prefix.prefix_len();
    let nbytes = (len as usize).div_ceil(8);
    buf.put_u8(len);
    match nlri.prefix {
        IpNet::V4(p) => buf.put_slice(&p.network().octets()[..nbytes]),
        IpNet::V6(p) => buf.put_slice(&p.network().octets()[..nbytes]),
    }
}
