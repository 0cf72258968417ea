//! Every message that crosses a channel inside the speaker: requests from
//! the [`Speaker`](super::Speaker) handle to the core ([`Command`]), from
//! the core to a peer task ([`PeerCommand`]), and what peer tasks tell the
//! core: session events ([`PeerEvent`]) and routes ([`RouteEvent`]) on a
//! channel of their own.

use super::{Explanation, PeerConfig, RouteView, SpeakerError};
use crate::fsm::Negotiated;
use crate::policy::PeerPolicy;
use crate::rib::PeerId;
use crate::wire::{Family, Nlri, Notification, PathAttributes};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Requests from the [`Speaker`] handle to the core task.
pub(crate) enum Command {
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    Originate(IpNet, Box<PathAttributes>),
    WithdrawLocal(IpNet),
    /// One prefix, or the first `usize` prefixes in order.
    Routes(Option<IpNet>, usize, oneshot::Sender<Vec<RouteView>>),
    RequestRefresh(IpAddr),
    ResetPeer(IpAddr, Notification, Option<std::time::Duration>),
    ReleasePeer(IpAddr),
    SetPolicies(
        IpAddr,
        PeerPolicy,
        PeerPolicy,
        oneshot::Sender<Result<(), SpeakerError>>,
    ),
    Shutdown(String, Duration, oneshot::Sender<()>),
    /// The agent restarts: every session closes without a NOTIFICATION,
    /// nothing is withdrawn, the table and the kernel's routes stay.
    Leave(oneshot::Sender<()>),
    /// A new local AS and router id: every session starts over with them.
    Reconfigure(u32, std::net::Ipv4Addr, oneshot::Sender<()>),
    Explain(IpNet, IpAddr, oneshot::Sender<Explanation>),
    /// Send what this node originates as draining (RFC 8326) or not.
    SetDraining(bool, oneshot::Sender<()>),
}

/// Requests to a peer task.
pub(crate) enum PeerCommand {
    /// A connection the peer opened to us.
    Connection(TcpStream),
    /// Close the session for good with this NOTIFICATION.
    Stop(Notification),
    /// The agent restarts: close the connections for good without a
    /// NOTIFICATION, so a graceful-restart helper keeps our routes.
    Leave,
    /// Close the session with this NOTIFICATION and start over, after
    /// `idle_hold` if set (RFC 4271 IdleHoldTimer: a peer reset for
    /// exceeding its prefix limit is not reconnected at once).
    Reset {
        notification: Notification,
        idle_hold: Option<Duration>,
    },
    SendRefresh(Family),
    /// Start a session held at its first start now.
    Release,
    /// The speaker's AS or router id changed: close the connections without
    /// a NOTIFICATION (a graceful-restart helper keeps our routes) and
    /// open the session again with these settings, forwarding state kept.
    Restart(Box<super::SpeakerConfig>),
    /// Use this import policy from now on.
    SetImport(crate::policy::PeerPolicy),
}

/// What peer tasks and the listener tell the core. Route batches and
/// End-of-RIB travel on a channel of their own ([`RouteEvent`]) so that
/// session events are never queued behind a full-table load.
pub(crate) enum PeerEvent {
    Up {
        id: PeerId,
        /// Counts the peer's sessions; route batches carry it too.
        session: u64,
        negotiated: Box<Negotiated>,
        local: SocketAddr,
    },
    Down {
        id: PeerId,
        /// Keep the peer's routes as stale for this long (graceful restart
        /// helper); `None` removes them now.
        keep_stale_for: Option<Duration>,
        /// The families the peer's graceful-restart capability listed:
        /// only their routes are kept; the others go now (RFC 4724 4.2).
        stale_families: Vec<Family>,
    },
    RefreshRequested {
        id: PeerId,
        family: Family,
    },
    Incoming(TcpStream),
    SweepStale {
        id: PeerId,
        generation: u64,
    },
    /// A session task panicked; the session is gone.
    TaskFailed {
        id: PeerId,
        message: String,
    },
}

/// Runs of prefixes that share one attribute set, in order.
pub(crate) type AttrRuns = Vec<(Arc<PathAttributes>, Vec<Nlri>)>;

/// Routes from a peer's session, in the order received. Batches of a
/// session the core no longer considers up are dropped.
pub(crate) enum RouteEvent {
    Routes {
        id: PeerId,
        session: u64,
        announce: AttrRuns,
        withdraw: Vec<Nlri>,
    },
    EndOfRib {
        id: PeerId,
        session: u64,
        family: Family,
    },
}
