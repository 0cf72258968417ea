//! The BFD control packet (RFC 5880 section 4), decoded with nom from
//! `&[u8]` and encoded into `bytes`, with simple-password and keyed SHA1
//! authentication (sections 4.2, 4.4, 6.7).

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_u32, be_u8};
use nom::IResult;
use sha1::{Digest, Sha1};

/// Session states (RFC 5880 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(v: u8) -> State {
        match v & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Diagnostic codes (RFC 5880 section 4.1).
pub mod diag {
    pub const NONE: u8 = 0;
    pub const CONTROL_DETECTION_TIME_EXPIRED: u8 = 1;
    pub const ECHO_FAILED: u8 = 2;
    pub const NEIGHBOR_SIGNALED_DOWN: u8 = 3;
    pub const FORWARDING_PLANE_RESET: u8 = 4;
    pub const PATH_DOWN: u8 = 5;
    pub const CONCATENATED_PATH_DOWN: u8 = 6;
    pub const ADMINISTRATIVELY_DOWN: u8 = 7;
    pub const REVERSE_CONCATENATED_PATH_DOWN: u8 = 8;

    pub fn name(d: u8) -> &'static str {
        match d {
            NONE => "no diagnostic",
            CONTROL_DETECTION_TIME_EXPIRED => "control detection time expired",
            ECHO_FAILED => "echo function failed",
            NEIGHBOR_SIGNALED_DOWN => "neighbor signaled session down",
            FORWARDING_PLANE_RESET => "forwarding plane reset",
            PATH_DOWN => "path down",
            CONCATENATED_PATH_DOWN => "concatenated path down",
            ADMINISTRATIVELY_DOWN => "administratively down",
            REVERSE_CONCATENATED_PATH_DOWN => "reverse concatenated path down",
            _ => "unknown diagnostic",
        }
    }
}

/// The authentication section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Type 1: the password in clear (1 to 16 octets).
    SimplePassword { key_id: u8, password: Vec<u8> },
    /// Types 4 (keyed) and 5 (meticulous keyed) SHA1.
    KeyedSha1 {
        key_id: u8,
        sequence: u32,
        digest: [u8; 20],
        meticulous: bool,
    },
}

/// A control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: u8,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub multipoint: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    /// Microseconds.
    pub required_min_rx: u32,
    /// Microseconds.
    pub required_min_echo_rx: u32,
    pub auth: Option<Auth>,
}

/// Why a received packet is discarded (RFC 5880 section 6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet shorter than its header")]
    TooShort,
    #[error("version is not 1")]
    BadVersion,
    #[error("length field does not fit the packet")]
    BadLength,
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("malformed authentication section")]
    BadAuth,
}

const HEADER_LEN: usize = 24;

/// The mandatory section, as on the wire.
struct Header {
    version_diag: u8,
    flags: u8,
    mult: u8,
    len: u8,
    my: u32,
    your: u32,
    tx: u32,
    rx: u32,
    echo: u32,
}

fn header(i: &[u8]) -> IResult<&[u8], Header> {
    let (i, version_diag) = be_u8(i)?;
    let (i, flags) = be_u8(i)?;
    let (i, mult) = be_u8(i)?;
    let (i, len) = be_u8(i)?;
    let (i, my) = be_u32(i)?;
    let (i, your) = be_u32(i)?;
    let (i, tx) = be_u32(i)?;
    let (i, rx) = be_u32(i)?;
    let (i, echo) = be_u32(i)?;
    Ok((
        i,
        Header {
            version_diag,
            flags,
            mult,
            len,
            my,
            your,
            tx,
            rx,
            echo,
        },
    ))
}

/// Decodes and checks a control packet.
pub fn decode(buf: &[u8]) -> Result<ControlPacket, PacketError> {
    let (_, h) = header(buf).map_err(|_| PacketError::TooShort)?;
    let Header {
        version_diag: vd,
        flags,
        mult,
        len,
        my,
        your,
        tx,
        rx,
        echo,
    } = h;
    if vd >> 5 != 1 {
        return Err(PacketError::BadVersion);
    }
    let auth_bit = flags & 0x04 != 0;
    let len = len as usize;
    if len > buf.len() || len < HEADER_LEN || (auth_bit && len < HEADER_LEN + 2) {
        return Err(PacketError::BadLength);
    }
    if mult == 0 {
        return Err(PacketError::ZeroDetectMult);
    }
    if flags & 0x01 != 0 {
        return Err(PacketError::Multipoint);
    }
    if my == 0 {
        return Err(PacketError::ZeroMyDiscriminator);
    }
    let auth = if auth_bit {
        Some(decode_auth(&buf[HEADER_LEN..len])?)
    } else {
        None
    };
    Ok(ControlPacket {
        diag: vd & 0x1f,
        state: State::from_bits(flags >> 6),
        poll: flags & 0x20 != 0,
        final_: flags & 0x10 != 0,
        control_plane_independent: flags & 0x08 != 0,
        demand: flags & 0x02 != 0,
        multipoint: false,
        detect_mult: mult,
        my_discriminator: my,
        your_discriminator: your,
        desired_min_tx: tx,
        required_min_rx: rx,
        required_min_echo_rx: echo,
        auth,
    })
}

fn decode_auth(a: &[u8]) -> Result<Auth, PacketError> {
    let [kind, len, rest @ ..] = a else {
        return Err(PacketError::BadAuth);
    };
    let len = *len as usize;
    if len > a.len() || len < 3 {
        return Err(PacketError::BadAuth);
    }
    let body = &rest[..len - 2];
    match (kind, body) {
        (1, [key_id, password @ ..]) if (1..=16).contains(&password.len()) => Ok(Auth::SimplePassword {
            key_id: *key_id,
            password: password.to_vec(),
        }),
        (4 | 5, [key_id, _reserved, s0, s1, s2, s3, digest @ ..]) if len == 28 => Ok(Auth::KeyedSha1 {
            key_id: *key_id,
            sequence: u32::from_be_bytes([*s0, *s1, *s2, *s3]),
            digest: digest.try_into().map_err(|_| PacketError::BadAuth)?,
            meticulous: *kind == 5,
        }),
        _ => Err(PacketError::BadAuth),
    }
}

impl ControlPacket {
    /// Encodes the packet; with keyed SHA1 the digest is computed with
    /// `key` (the digest field of `self.auth` is ignored).
    pub fn encode(&self, key: &[u8], out: &mut BytesMut) {
        let start = out.len();
        let auth_len = match &self.auth {
            None => 0,
            Some(Auth::SimplePassword { password, .. }) => 3 + password.len(),
            Some(Auth::KeyedSha1 { .. }) => 28,
        };
        out.put_u8((1 << 5) | (self.diag & 0x1f));
        let flags = (self.state as u8) << 6
            | (self.poll as u8) << 5
            | (self.final_ as u8) << 4
            | (self.control_plane_independent as u8) << 3
            | (self.auth.is_some() as u8) << 2
            | (self.demand as u8) << 1;
        out.put_u8(flags);
        out.put_u8(self.detect_mult);
        out.put_u8((HEADER_LEN + auth_len) as u8);
        out.put_u32(self.my_discriminator);
        out.put_u32(self.your_discriminator);
        out.put_u32(self.desired_min_tx);
        out.put_u32(self.required_min_rx);
        out.put_u32(self.required_min_echo_rx);
        match &self.auth {
            None => {}
            Some(Auth::SimplePassword { key_id, password }) => {
                out.put_u8(1);
                out.put_u8(auth_len as u8);
                out.put_u8(*key_id);
                out.put_slice(password);
            }
            Some(Auth::KeyedSha1 {
                key_id,
                sequence,
                meticulous,
                ..
            }) => {
                out.put_u8(if *meticulous { 5 } else { 4 });
                out.put_u8(28);
                out.put_u8(*key_id);
                out.put_u8(0);
                out.put_u32(*sequence);
                let digest_at = out.len();
                out.put_slice(&padded_key(key));
                let digest = Sha1::digest(&out[start..]);
                out[digest_at..digest_at + 20].copy_from_slice(&digest);
            }
        }
    }
}

fn padded_key(key: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 20];
    let n = key.len().min(20);
    k[..n].copy_from_slice(&key[..n]);
    k
}

/// Checks the keyed SHA1 digest of a received packet (the whole packet as
/// received) against `key`.
pub fn verify_sha1(packet: &[u8], key: &[u8]) -> bool {
    if packet.len() < HEADER_LEN + 28 {
        return false;
    }
    let digest_at = HEADER_LEN + 8;
    let mut copy = packet[..HEADER_LEN + 28].to_vec();
    let received: [u8; 20] = copy[digest_at..digest_at + 20].try_into().expect("20 bytes");
    copy[digest_at..digest_at + 20].copy_from_slice(&padded_key(key));
    Sha1::digest(&copy)[..] == received[..]
}
