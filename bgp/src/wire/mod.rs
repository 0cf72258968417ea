//! The BGP wire codec: message framing, decoding from `&[u8]` (nom) and
//! encoding into `bytes` buffers. Free of I/O.
//!
//! One module per message part: [`open`] (OPEN and capabilities),
//! [`update`] (UPDATE and packing), [`attributes`] (path attributes and
//! RFC 7606 handling), [`nlri`] (prefixes), [`notification`]
//! (NOTIFICATION, ROUTE-REFRESH), [`error`] (decode errors with their
//! action).

pub mod attributes;
pub mod error;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod types;
pub mod update;

pub use attributes::{Aggregator, MpReach, MpUnreach, PathAttributes, RawAttribute, SessionCodec};
pub use error::{DecodeError, ErrorAction, ErrorData, ErrorKind};
pub use notification::{Notification, RefreshSubtype, RouteRefresh};
pub use open::{AddPathMode, Capability, GracefulRestart, GracefulRestartFamily, Open};
pub use types::*;
pub use update::Update;

use bytes::{BufMut, Bytes, BytesMut};
use error::subcode;

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
pub const MAX_MESSAGE_LEN: usize = 4096;
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// Message type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

/// A decoded BGP message. UPDATEs dominate the traffic, so they are held
/// inline rather than boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }
}

/// Looks at the start of a receive buffer: `Ok(Some(len))` when a whole
/// message of `len` bytes is there, `Ok(None)` when more bytes are needed,
/// and an error when the header is invalid (RFC 4271 6.1).
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(DecodeError::header(
            ErrorKind::BadMarker,
            subcode::CONNECTION_NOT_SYNCHRONIZED,
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let (min, max) = match buf[18] {
        1 => (29, MAX_MESSAGE_LEN),
        2 => (23, max_len),
        3 => (21, max_len),
        4 => (19, 19),
        5 => (19, max_len),
        t => {
            return Err(
                DecodeError::header(ErrorKind::BadType, subcode::BAD_MESSAGE_TYPE).with_data(ErrorData::Octet(t))
            )
        }
    };
    if len < min || len > max {
        return Err(DecodeError::header(ErrorKind::BadLength, subcode::BAD_MESSAGE_LENGTH)
            .with_data(ErrorData::Word(len as u16)));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes one whole message (header included, as delimited by [`frame`]).
pub fn decode_message(msg: &[u8], codec: &SessionCodec) -> Result<Message, DecodeError> {
    let Some(len) = frame(msg, codec.max_message_len())? else {
        return Err(error::TRUNCATED);
    };
    let body = &msg[HEADER_LEN..len];
    Ok(match msg[18] {
        1 => Message::Open(open::decode_open(body).map_err(|e| e.shifted(HEADER_LEN))?),
        2 => Message::Update(update::decode_update(body, codec).map_err(|e| e.shifted(HEADER_LEN))?),
        3 => Message::Notification(notification::decode_notification(body)?),
        4 => Message::Keepalive,
        _ => Message::RouteRefresh(notification::decode_route_refresh(body)?),
    })
}

/// Appends one encoded message (header included) to `buf`.
pub fn encode_message(msg: &Message, codec: &SessionCodec, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_slice(&MARKER);
    buf.put_u16(0);
    buf.put_u8(msg.kind() as u8);
    match msg {
        Message::Open(o) => open::encode_open(o, buf),
        Message::Update(u) => update::encode_update(u, codec, buf),
        Message::Notification(n) => notification::encode_notification(n, buf),
        Message::Keepalive => {}
        Message::RouteRefresh(r) => notification::encode_route_refresh(r, buf),
    }
    let len = (buf.len() - start) as u16;
    buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// One encoded message as `Bytes`.
pub fn message_bytes(msg: &Message, codec: &SessionCodec) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    encode_message(msg, codec, &mut buf);
    buf.freeze()
}
