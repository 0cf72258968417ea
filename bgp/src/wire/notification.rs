//! NOTIFICATION (RFC 4271 4.5) with RFC 9003 shutdown communication, and
//! ROUTE-REFRESH (RFC 2918, RFC 7313).

use super::error::{code, subcode, DecodeError, ErrorData, ErrorKind};
use super::types::Family;
use bytes::BufMut;
use std::fmt;

/// A NOTIFICATION message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// Longest shutdown communication in octets (RFC 9003).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// The NOTIFICATION that answers a decode error in `message` (the
    /// whole message, header included, or empty when the error's data does
    /// not point into it).
    pub fn from_error(e: &DecodeError, message: &[u8]) -> Self {
        let mut n = Notification::new(e.code, e.subcode);
        match e.data {
            ErrorData::None => {}
            ErrorData::Octet(b) => n.data.push(b),
            ErrorData::Word(w) => n.data.extend_from_slice(&w.to_be_bytes()),
            ErrorData::Span { start, len } => {
                let (start, end) = (start as usize, start as usize + len as usize);
                if let Some(octets) = message.get(start..end) {
                    n.data.extend_from_slice(octets);
                }
            }
        }
        n
    }

    /// Cease with a shutdown communication (RFC 9003), for the
    /// Administrative Shutdown and Administrative Reset subcodes. The text is
    /// cut at a character boundary to 255 octets.
    pub fn cease_with_message(cease_subcode: u8, message: &str) -> Self {
        let mut end = message.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = &message.as_bytes()[..end];
        let mut data = Vec::with_capacity(1 + text.len());
        data.push(text.len() as u8);
        data.extend_from_slice(text);
        Notification {
            code: code::CEASE,
            subcode: cease_subcode,
            data,
        }
    }

    /// A Hard Reset (RFC 8538 3) carrying `inner`: the peer ends the
    /// session in full, without graceful restart.
    pub fn hard_reset(inner: &Notification) -> Self {
        let mut data = Vec::with_capacity(2 + inner.data.len());
        data.push(inner.code);
        data.push(inner.subcode);
        data.extend_from_slice(&inner.data);
        Notification {
            code: code::CEASE,
            subcode: subcode::HARD_RESET,
            data,
        }
    }

    /// Whether this is a Cease/Hard Reset.
    pub fn is_hard_reset(&self) -> bool {
        self.code == code::CEASE && self.subcode == subcode::HARD_RESET
    }

    /// The NOTIFICATION a Hard Reset carries, if this is one that does.
    pub fn hard_reset_inner(&self) -> Option<Notification> {
        if !self.is_hard_reset() {
            return None;
        }
        match &self.data[..] {
            [c, s, data @ ..] => Some(Notification {
                code: *c,
                subcode: *s,
                data: data.to_vec(),
            }),
            _ => None,
        }
    }

    /// Whether this NOTIFICATION ends the session in full when both sides
    /// announced the N bit (RFC 8538 5): a prefix limit, an administrative
    /// shutdown, a peer removed, an administrative reset, and (ours to
    /// decide, RFC 9384 came later) BFD down, because the forwarding path
    /// the kept routes would use has failed. Every other NOTIFICATION then
    /// leaves the routes kept as stale, as a graceful restart does.
    pub fn calls_for_hard_reset(&self) -> bool {
        self.code == code::CEASE
            && matches!(
                self.subcode,
                subcode::MAX_PREFIXES
                    | subcode::ADMIN_SHUTDOWN
                    | subcode::PEER_DECONFIGURED
                    | subcode::ADMIN_RESET
                    | subcode::HARD_RESET
                    | subcode::BFD_DOWN
            )
    }

    /// The shutdown communication carried by a Cease, if any.
    pub fn shutdown_communication(&self) -> Option<String> {
        if let Some(inner) = self.hard_reset_inner() {
            return inner.shutdown_communication();
        }
        if self.code != code::CEASE
            || !(self.subcode == subcode::ADMIN_SHUTDOWN || self.subcode == subcode::ADMIN_RESET)
        {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..len as usize)?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// A short human name for the code and subcode.
    pub fn describe(&self) -> &'static str {
        match (self.code, self.subcode) {
            (code::MESSAGE_HEADER, _) => "message header error",
            (code::OPEN, subcode::BAD_PEER_AS) => "OPEN error: bad peer AS",
            (code::OPEN, subcode::BAD_BGP_IDENTIFIER) => "OPEN error: bad BGP identifier",
            (code::OPEN, subcode::UNACCEPTABLE_HOLD_TIME) => "OPEN error: unacceptable hold time",
            (code::OPEN, subcode::UNSUPPORTED_CAPABILITY) => "OPEN error: unsupported capability",
            (code::OPEN, _) => "OPEN message error",
            (code::UPDATE, _) => "UPDATE message error",
            (code::HOLD_TIMER_EXPIRED, _) => "hold timer expired",
            (code::FSM, _) => "finite state machine error",
            (code::CEASE, subcode::MAX_PREFIXES) => "cease: maximum prefixes reached",
            (code::CEASE, subcode::ADMIN_SHUTDOWN) => "cease: administrative shutdown",
            (code::CEASE, subcode::PEER_DECONFIGURED) => "cease: peer de-configured",
            (code::CEASE, subcode::ADMIN_RESET) => "cease: administrative reset",
            (code::CEASE, subcode::CONNECTION_REJECTED) => "cease: connection rejected",
            (code::CEASE, subcode::OTHER_CONFIG_CHANGE) => "cease: other configuration change",
            (code::CEASE, subcode::CONNECTION_COLLISION) => "cease: connection collision resolution",
            (code::CEASE, subcode::OUT_OF_RESOURCES) => "cease: out of resources",
            (code::CEASE, subcode::HARD_RESET) => "cease: hard reset",
            (code::CEASE, subcode::BFD_DOWN) => "cease: BFD down",
            (code::CEASE, _) => "cease",
            (code::ROUTE_REFRESH, _) => "ROUTE-REFRESH message error",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.describe(), self.code, self.subcode)?;
        if let Some(inner) = self.hard_reset_inner() {
            return write!(f, ": {inner}");
        }
        if let (code::CEASE, subcode::MAX_PREFIXES, [a0, a1, safi, l @ ..]) = (self.code, self.subcode, &self.data[..])
        {
            if let Ok(limit) = <[u8; 4]>::try_from(l) {
                let family = crate::wire::Family {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                };
                write!(f, ": {family}, limit {}", u32::from_be_bytes(limit))?;
            }
        }
        if let Some(msg) = self.shutdown_communication() {
            write!(f, ": \"{msg}\"")?;
        }
        Ok(())
    }
}

pub fn decode_notification(body: &[u8]) -> Result<Notification, DecodeError> {
    match body {
        [c, s, data @ ..] => Ok(Notification {
            code: *c,
            subcode: *s,
            data: data.to_vec(),
        }),
        _ => Err(DecodeError::header(
            ErrorKind::MalformedNotification,
            subcode::BAD_MESSAGE_LENGTH,
        )),
    }
}

pub fn encode_notification(n: &Notification, buf: &mut impl BufMut) {
    buf.put_u8(n.code);
    buf.put_u8(n.subcode);
    buf.put_slice(&n.data);
}

/// ROUTE-REFRESH subtypes (RFC 7313).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    Request = 0,
    BeginOfRib = 1,
    EndOfRib = 2,
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: RefreshSubtype,
}

pub fn decode_route_refresh(body: &[u8]) -> Result<RouteRefresh, DecodeError> {
    let [a, b, st, safi] = body else {
        return Err(DecodeError::reset(
            ErrorKind::MalformedRouteRefresh,
            code::ROUTE_REFRESH,
            subcode::INVALID_MESSAGE_LENGTH,
        ));
    };
    let subtype = match st {
        1 => RefreshSubtype::BeginOfRib,
        2 => RefreshSubtype::EndOfRib,
        // Unknown subtypes are to be ignored; treat as a plain request.
        _ => RefreshSubtype::Request,
    };
    Ok(RouteRefresh {
        family: Family::new(u16::from_be_bytes([*a, *b]), *safi),
        subtype,
    })
}

pub fn encode_route_refresh(r: &RouteRefresh, buf: &mut impl BufMut) {
    buf.put_u16(r.family.afi);
    buf.put_u8(r.subtype as u8);
    buf.put_u8(r.family.safi);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_reset_carries_the_cease_it_stands_for() {
        let inner = Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, "node leaving");
        let hard = Notification::hard_reset(&inner);
        assert!(hard.is_hard_reset());
        assert_eq!(hard.data[..2], [code::CEASE, subcode::ADMIN_SHUTDOWN]);
        assert_eq!(hard.hard_reset_inner(), Some(inner));
        assert_eq!(hard.shutdown_communication().as_deref(), Some("node leaving"));
        let text = hard.to_string();
        assert!(
            text.starts_with("cease: hard reset (6/9): cease: administrative shutdown (6/2)"),
            "{text}"
        );
        assert!(text.ends_with("\"node leaving\""), "{text}");
    }

    #[test]
    fn only_the_ceases_that_end_a_session_in_full_call_for_a_hard_reset() {
        for s in [
            subcode::MAX_PREFIXES,
            subcode::ADMIN_SHUTDOWN,
            subcode::PEER_DECONFIGURED,
            subcode::BFD_DOWN,
        ] {
            assert!(Notification::new(code::CEASE, s).calls_for_hard_reset(), "cease {s}");
        }
        for s in [
            subcode::CONNECTION_COLLISION,
            subcode::OTHER_CONFIG_CHANGE,
            subcode::OUT_OF_RESOURCES,
        ] {
            assert!(!Notification::new(code::CEASE, s).calls_for_hard_reset(), "cease {s}");
        }
        assert!(!Notification::new(code::HOLD_TIMER_EXPIRED, 0).calls_for_hard_reset());
        // A Hard Reset without the two octets of what it stands for is
        // still a Hard Reset.
        let bare = Notification::new(code::CEASE, subcode::HARD_RESET);
        assert!(bare.is_hard_reset() && bare.hard_reset_inner().is_none());
    }
}
