//! BFD for NovaNet: the control packet codec ([`packet`]), the session
//! state machine ([`session`], sans-IO), and the UDP transport that runs
//! sessions on a thread of their own ([`transport`]), RFC 5880, 5881
//! (single hop) and 5883 (multihop).

pub mod links;
pub mod packet;
pub mod session;
pub mod transport;
