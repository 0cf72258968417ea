//! What a connection's writer takes from a peer's outbox once the session
//! is established: the pending changes (taken under the outbox lock,
//! encoded after it is released), End-of-RIB markers, and, once written,
//! the count of UPDATEs sent and the locally originated prefixes reported
//! as [`SpeakerEvent::LocalPrefixSent`].
//!
//! The writer task drains; the peer task never waits for the socket, so a
//! peer that stops reading cannot stop its timers, commands or resets.

use super::{PeerShared, SpeakerEvent};
use crate::wire::{encode_message, Message, SessionCodec, Update};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::broadcast;

/// A session's outbox, for its writer.
pub(crate) struct OutboxDrain {
    pub shared: Arc<PeerShared>,
    /// How our UPDATEs are encoded on this session.
    pub codec: SessionCodec,
    pub events: broadcast::Sender<SpeakerEvent>,
    pub peer: IpAddr,
}

/// Encoded changes, and what to report once they are written.
pub(crate) struct Drained {
    pub bytes: Bytes,
    messages: u64,
    local: Vec<(IpNet, bool)>,
}

impl OutboxDrain {
    /// Resolves when the core queued something for this peer.
    pub async fn ready(&self) {
        self.shared.wake.notified().await;
    }

    /// Takes everything queued, encoded; None when nothing is.
    pub fn take(&self) -> Option<Drained> {
        let (mut pending, eor, local) = {
            let mut out = self.shared.outbox.lock().expect("outbox");
            if out.pending.is_empty() && out.end_of_rib.is_empty() && out.local.is_empty() {
                return None;
            }
            (
                std::mem::take(&mut out.pending),
                std::mem::take(&mut out.end_of_rib),
                std::mem::take(&mut out.local),
            )
        };
        let mut buf = BytesMut::new();
        pending.encode_all(&self.codec, &mut buf);
        for f in eor {
            encode_message(&Message::Update(Update::end_of_rib(f)), &self.codec, &mut buf);
        }
        let messages = count_messages(&buf);
        Some(Drained {
            bytes: buf.freeze(),
            messages,
            local,
        })
    }

    /// Reports what was written.
    pub fn written(&self, d: Drained) {
        self.shared.status.lock().expect("peer status").updates_sent += d.messages;
        for (prefix, withdrawn) in d.local {
            let _ = self.events.send(SpeakerEvent::LocalPrefixSent {
                prefix,
                peer: self.peer,
                withdrawn,
            });
        }
    }
}

/// BGP messages in a buffer of whole messages.
fn count_messages(buf: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + 19 <= buf.len() {
        let len = u16::from_be_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if len < 19 {
            break;
        }
        at += len;
        n += 1;
    }
    n
}
