//! Decode errors with their RFC 7606 action and the NOTIFICATION to send.
//!
//! Every error the codec reports is a small value: what went wrong
//! ([`ErrorKind`]), what the receiver must do about it ([`ErrorAction`]), and
//! the NOTIFICATION code/subcode that goes to the peer when the action is a
//! session reset.

use std::fmt;

/// What the receiver of a malformed message must do (RFC 7606 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorAction {
    /// Send the NOTIFICATION and close the session.
    SessionReset,
    /// Treat every prefix of the UPDATE as withdrawn; keep the session.
    TreatAsWithdraw,
    /// Drop the offending attribute, keep the rest of the UPDATE.
    AttributeDiscard,
}

/// NOTIFICATION error codes (RFC 4271 section 4.5, RFC 7313).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// NOTIFICATION subcodes, grouped by error code.
pub mod subcode {
    // Message header errors.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN message errors.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    // UPDATE message errors.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
    // FSM errors (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    // Cease (RFC 4486, RFC 8538).
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
    /// RFC 9384: the session was closed because BFD went down.
    pub const BFD_DOWN: u8 = 10;
    // Route refresh errors (RFC 7313).
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// What was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    BadMarker,
    BadLength,
    BadType,
    Truncated,
    UnsupportedVersion,
    BadPeerAs,
    BadBgpIdentifier,
    UnacceptableHoldTime,
    UnsupportedOptionalParameter,
    MalformedCapability,
    MalformedAttributeList,
    DuplicateMpAttribute,
    UnrecognizedWellKnown,
    MissingWellKnown,
    AttributeFlags,
    AttributeLength,
    InvalidOrigin,
    InvalidNextHop,
    MalformedAsPath,
    MalformedCommunities,
    MalformedMpReach,
    MalformedMpUnreach,
    InvalidNetworkField,
    MalformedNotification,
    MalformedRouteRefresh,
}

/// The Data field a NOTIFICATION for an error carries (RFC 4271 6.1-6.3):
/// a value, or the octets of the message it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorData {
    #[default]
    None,
    /// One octet (a bad message type).
    Octet(u8),
    /// Two octets (a bad message length, the version we support).
    Word(u16),
    /// Octets of the message: where they start (from the start of the
    /// part being decoded, see [`DecodeError::shifted`]) and how many.
    Span { start: u32, len: u32 },
}

/// A decode failure: kind, action, NOTIFICATION code/subcode and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub action: ErrorAction,
    pub code: u8,
    pub subcode: u8,
    /// Attribute type code the error is about, when it is about one.
    pub attribute: Option<u8>,
    pub data: ErrorData,
}

impl DecodeError {
    pub const fn reset(kind: ErrorKind, code: u8, subcode: u8) -> Self {
        DecodeError {
            kind,
            action: ErrorAction::SessionReset,
            code,
            subcode,
            attribute: None,
            data: ErrorData::None,
        }
    }

    pub const fn header(kind: ErrorKind, subcode: u8) -> Self {
        Self::reset(kind, code::MESSAGE_HEADER, subcode)
    }

    pub const fn open(kind: ErrorKind, subcode: u8) -> Self {
        Self::reset(kind, code::OPEN, subcode)
    }

    pub const fn update(kind: ErrorKind, subcode: u8, action: ErrorAction) -> Self {
        DecodeError {
            kind,
            action,
            code: code::UPDATE,
            subcode,
            attribute: None,
            data: ErrorData::None,
        }
    }

    pub const fn about(mut self, attribute: u8) -> Self {
        self.attribute = Some(attribute);
        self
    }

    pub const fn with_data(mut self, data: ErrorData) -> Self {
        self.data = data;
        self
    }

    /// The error's data is these octets of the part being decoded.
    pub const fn with_span(self, start: usize, len: usize) -> Self {
        self.with_data(ErrorData::Span {
            start: start as u32,
            len: len as u32,
        })
    }

    /// The part decoded starts `by` octets into the enclosing one: spans
    /// move with it.
    pub const fn shifted(mut self, by: usize) -> Self {
        if let ErrorData::Span { start, len } = self.data {
            self.data = ErrorData::Span {
                start: start + by as u32,
                len,
            };
        }
        self
    }

    pub const fn with_action(mut self, action: ErrorAction) -> Self {
        self.action = action;
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} ({:?}, notification {}/{})",
            self.kind, self.action, self.code, self.subcode
        )?;
        if let Some(a) = self.attribute {
            write!(f, " in attribute type {a}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// Shorthand for the common "message ended early" header error.
pub(crate) const TRUNCATED: DecodeError = DecodeError::header(ErrorKind::Truncated, subcode::BAD_MESSAGE_LENGTH);
