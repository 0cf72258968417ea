//! The tokio BGP speaker: the RIB task ([`core`]), one task per peer
//! ([`peer`]), and TCP ([`transport`]).
//!
//! ```text
//! socket -> transport reader -> peer task (decode, FSM, import policy)
//!        -> core (RIB, decision, export) -> per-peer pending map
//!        -> peer task (pack UPDATEs) -> transport writer -> socket
//! ```
//! [`Speaker`] is the handle the agent holds. Peer status is read from
//! state each peer task publishes, so a status query never waits behind
//! route processing.

pub mod core;
mod drain;
mod messages;
pub mod peer;
mod prefix_limit;
pub(crate) mod session;
#[cfg(test)]
mod session_tests;
#[cfg(any(test, feature = "simulation"))]
pub mod simulation;
#[cfg(test)]
mod speaker_tests;
mod supervise;
pub mod transport;

use messages::Command;

use crate::fsm::State;
use crate::policy::{LocalPrefixes, PeerPolicy};
use crate::rib::BestChange;
use crate::wire::{Family, Notification, PathAttributes};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Speaker-wide settings.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// TCP port to accept sessions on; `None` accepts none (active only).
    pub listen_port: Option<u16>,
    /// Port peers are connected to.
    pub peer_port: u16,
    pub local_prefixes: LocalPrefixes,
    /// Restart time announced in the graceful-restart capability; 0 turns
    /// the capability off.
    pub graceful_restart_time: u16,
    /// This speaker has restarted with its forwarding state kept (the
    /// kernel still holds its routes): OPENs carry the restart (R) and
    /// forwarding-preserved (F) bits while it is set.
    pub restarting: Arc<std::sync::atomic::AtomicBool>,
    /// Where every change of selected routes goes (the kernel FIB).
    pub route_sink: Option<RouteSink>,
}

/// What the core tells the route sink.
#[derive(Debug, Clone)]
pub enum SinkEvent {
    /// Changes of selected routes.
    Changes(Arc<Vec<BestChange>>),
    /// BGP next hops no established peer announces any more (a peer went
    /// down without graceful restart), told before the RIB's changes for
    /// its prefixes: the kernel can move off them at once.
    NextHopsLost(Vec<IpAddr>),
}

/// A consumer of selected-route changes, called from the core task; it
/// must not block.
#[derive(Clone)]
pub struct RouteSink(pub Arc<dyn Fn(SinkEvent) + Send + Sync>);

impl std::fmt::Debug for RouteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteSink")
    }
}

/// Where a peer comes from: what operators see as the session's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// A top-of-rack router from `routing.peers`.
    Tor,
    /// Another cluster node (node mesh).
    Mesh,
    /// Added through the API.
    Api,
    /// A route server (RFC 7947) this node is a client of: its routes
    /// carry the AS path and next hop of the node that originated them, so
    /// the first AS of their path is not the route server's.
    RouteServer,
    /// A client of this node as a route server (RFC 7947): what it is
    /// sent of other peers' routes goes transparently (no AS prepended,
    /// next hop and MED unchanged); the node's own routes as to any peer.
    RouteServerClient,
}

/// One configured neighbor.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub address: IpAddr,
    /// The peer's AS; 0 takes whatever AS its OPEN names (external or
    /// internal as that AS is).
    pub remote_as: u32,
    pub description: String,
    pub role: PeerRole,
    pub hold_time: u16,
    pub keepalive: Option<u16>,
    pub connect_retry: Duration,
    pub passive: bool,
    /// TCP port the peer is dialled on; 0 means the speaker's
    /// `peer_port` (179).
    pub port: u16,
    pub source_address: Option<IpAddr>,
    /// The interface a link-local `address` is reached through (BGP
    /// unnumbered): the scope of the connection, and the only interface a
    /// connection from that address is accepted on.
    pub interface: Option<String>,
    /// eBGP multihop TTL; 0 means directly connected (TTL 1).
    pub ebgp_multihop: u8,
    /// GTSM (RFC 5082): accept only packets within this many hops.
    pub ttl_security_hops: Option<u8>,
    pub password: Option<String>,
    pub families: Vec<Family>,
    /// Prefix limit; 0 means none.
    pub max_prefix: u32,
    /// Over the limit: only warn (true) or close the session (false).
    pub max_prefix_warning_only: bool,
    /// After a reset for exceeding the limit, how long the session stays
    /// down (doubled for each reset in a row).
    pub max_prefix_idle_hold: Duration,
    pub import: PeerPolicy,
    pub export: PeerPolicy,
    /// The session's first start waits until [`Speaker::release_peer`], or
    /// this long at most. A session run with BFD waits for its BFD session
    /// to come Up: a neighbor still holding the BFD session of this node's
    /// previous run (a restart quicker than its detection time) sees that
    /// one go Down before the new BGP session is up, not after.
    pub start_held_for: Option<Duration>,
    /// The graceful-restart time announced to this peer; None: the
    /// speaker's. 0: no graceful restart with this peer.
    pub graceful_restart_time: Option<u16>,
}

impl PeerConfig {
    /// A peer with the usual defaults: 90 s hold, 5 s connect retry,
    /// the families of its address, the safe default policies.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerConfig {
            address,
            remote_as,
            description: String::new(),
            role: PeerRole::Tor,
            hold_time: 90,
            keepalive: None,
            connect_retry: Duration::from_secs(5),
            passive: false,
            port: 0,
            source_address: None,
            interface: None,
            ebgp_multihop: 0,
            ttl_security_hops: None,
            password: None,
            families: vec![if address.is_ipv4() {
                Family::IPV4_UNICAST
            } else {
                Family::IPV6_UNICAST
            }],
            max_prefix: 0,
            max_prefix_warning_only: false,
            max_prefix_idle_hold: Duration::from_secs(30),
            import: PeerPolicy::Default,
            export: PeerPolicy::Default,
            start_held_for: None,
            graceful_restart_time: None,
        }
    }

    /// The graceful-restart time announced to this peer (0: none).
    pub fn restart_time(&self, speaker: &SpeakerConfig) -> u16 {
        self.graceful_restart_time.unwrap_or(speaker.graceful_restart_time)
    }
}

/// What operators and the API see of a session.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub neighbor_address: IpAddr,
    /// The interface of a link-local (unnumbered) peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub remote_as: u32,
    pub local_as: u32,
    pub description: String,
    pub role: PeerRole,
    pub state: String,
    #[serde(skip)]
    pub fsm_state: State,
    /// Seconds since the epoch when the session last reached Established.
    pub established_at: Option<u64>,
    pub remote_router_id: Option<Ipv4Addr>,
    pub families: Vec<String>,
    /// Paths from this peer in the table now (accepted by import policy).
    pub prefixes_received: u64,
    /// Prefixes the peer announced, cumulative (before import policy).
    pub prefixes_announced: u64,
    pub prefixes_sent: u64,
    /// The IPv6 share of the three counts above (the rest is IPv4).
    pub prefixes_received_v6: u64,
    pub prefixes_announced_v6: u64,
    pub prefixes_sent_v6: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub established_transitions: u64,
    pub last_error: Option<String>,
    pub last_notification_sent: Option<String>,
    pub last_notification_received: Option<String>,
}

impl PeerStatus {
    pub fn new(cfg: &PeerConfig, local_as: u32) -> Self {
        PeerStatus {
            neighbor_address: cfg.address,
            interface: cfg.interface.clone(),
            remote_as: cfg.remote_as,
            local_as,
            description: cfg.description.clone(),
            role: cfg.role,
            state: State::Idle.name().into(),
            fsm_state: State::Idle,
            established_at: None,
            remote_router_id: None,
            families: Vec::new(),
            prefixes_received: 0,
            prefixes_announced: 0,
            prefixes_sent: 0,
            prefixes_received_v6: 0,
            prefixes_announced_v6: 0,
            prefixes_sent_v6: 0,
            updates_received: 0,
            updates_sent: 0,
            established_transitions: 0,
            last_error: None,
            last_notification_sent: None,
            last_notification_received: None,
        }
    }

    pub(crate) fn set_state(&mut self, s: State) {
        self.fsm_state = s;
        self.state = s.name().into();
        if s == State::Established {
            self.established_at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
            self.established_transitions += 1;
        } else {
            self.established_at = None;
        }
    }
}

/// Session events, for logs, metrics and the API. (Selected-route changes
/// go to the [`RouteSink`] only: a broadcast would keep thousands of
/// change batches alive in its ring.)
#[derive(Debug, Clone)]
pub enum SpeakerEvent {
    PeerState {
        address: IpAddr,
        from: State,
        to: State,
        /// Why a session that was up went down (None otherwise).
        reason: Option<crate::fsm::DownReason>,
    },
    /// A peer finished sending its routes of a family (End-of-RIB).
    EndOfRib { address: IpAddr, family: Family },
    /// The announcement (or withdrawal) of a prefix this node originates
    /// was written to a peer.
    LocalPrefixSent {
        prefix: IpNet,
        peer: IpAddr,
        withdrawn: bool,
    },
}

/// A path of a prefix as shown to operators.
#[derive(Debug, Clone, Serialize)]
pub struct PathView {
    /// `local` or the peer address.
    pub from: String,
    pub best: bool,
    pub multipath: bool,
    /// Add-path identifier (0 without add-path).
    pub path_id: u32,
    pub stale: bool,
    pub next_hop: Option<IpAddr>,
    pub as_path: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub origin: String,
    pub communities: Vec<String>,
    /// For a non-best path: the decision step at which it lost.
    pub lost_at: Option<String>,
}

/// A prefix and its paths.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub prefix: IpNet,
    pub paths: Vec<PathView>,
    /// For a prefix this node originates (its best path is local): each
    /// configured peer, whether it is sent the prefix, and why not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportView>,
}

/// Whether one peer is sent a prefix this node originates.
#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub peer: IpAddr,
    pub advertised: bool,
    /// Why not, when not advertised.
    pub reason: String,
}

/// Whether a prefix is sent to a peer, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub prefix: IpNet,
    pub peer: IpAddr,
    pub advertised: bool,
    pub reason: String,
    /// What the peer is sent, when advertised.
    pub as_path: Option<String>,
    pub next_hop: Option<IpAddr>,
    /// Where the selected path comes from.
    pub best_from: Option<String>,
}

/// Errors the speaker API reports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpeakerError {
    #[error("peer {0} is already configured")]
    PeerExists(IpAddr),
    #[error("peer {0} is not configured")]
    NoSuchPeer(IpAddr),
    #[error("the speaker has stopped")]
    Stopped,
}

/// State a peer task publishes for readers outside the core.
pub(crate) struct PeerShared {
    pub status: Mutex<PeerStatus>,
    pub outbox: Mutex<Outbox>,
    pub wake: tokio::sync::Notify,
}

/// Changes waiting for a peer, and End-of-RIB markers due after them.
#[derive(Default)]
pub(crate) struct Outbox {
    pub pending: crate::rib::export::Pending,
    pub end_of_rib: Vec<Family>,
    /// Locally originated prefixes queued for this peer: (prefix,
    /// withdrawn). Reported as [`SpeakerEvent::LocalPrefixSent`] once
    /// written.
    pub local: Vec<(IpNet, bool)>,
}

/// The handle to a running speaker.
#[derive(Clone)]
pub struct Speaker {
    commands: mpsc::Sender<Command>,
    peers: Arc<Mutex<HashMap<IpAddr, Arc<PeerShared>>>>,
    events: broadcast::Sender<SpeakerEvent>,
    config: Arc<Mutex<Arc<SpeakerConfig>>>,
}

impl Speaker {
    /// Starts the core task and, if configured, the listener.
    pub async fn start(config: SpeakerConfig) -> std::io::Result<Speaker> {
        let (commands, rx) = mpsc::channel(256);
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let (events, _) = broadcast::channel(4096);
        let listener = match config.listen_port {
            Some(port) => Some(transport::listen(port)?),
            None => None,
        };
        core::spawn(config.clone(), rx, peers.clone(), events.clone(), listener);
        Ok(Speaker {
            commands,
            peers,
            events,
            config: Arc::new(Mutex::new(Arc::new(config))),
        })
    }

    /// The settings the speaker runs with now.
    pub fn config(&self) -> Arc<SpeakerConfig> {
        self.config.lock().expect("speaker config").clone()
    }

    /// Runs with a new local AS and router id: every session is closed
    /// (without a NOTIFICATION, so peers that are graceful-restart helpers
    /// keep forwarding to this node) and opened again with them, announcing
    /// the forwarding state kept. Routes learned stay until the new
    /// sessions refresh them.
    pub async fn reconfigure(&self, local_as: u32, router_id: Ipv4Addr) -> Result<(), SpeakerError> {
        self.ask(|tx| Command::Reconfigure(local_as, router_id, tx)).await?;
        let mut cfg = self.config.lock().expect("speaker config");
        let mut next = SpeakerConfig::clone(&cfg);
        next.local_as = local_as;
        next.router_id = router_id;
        *cfg = Arc::new(next);
        Ok(())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|tx| Command::AddPeer(Box::new(peer), tx)).await?
    }

    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|tx| Command::RemovePeer(address, tx)).await?
    }

    /// Originates a prefix from this node with the given attributes (next
    /// hop and AS path are filled in per peer on export).
    pub async fn originate(&self, prefix: IpNet, attrs: PathAttributes) -> Result<(), SpeakerError> {
        self.commands
            .send(Command::Originate(prefix, Box::new(attrs)))
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), SpeakerError> {
        self.commands
            .send(Command::WithdrawLocal(prefix))
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Asks a peer to send its routes again (RFC 2918).
    pub async fn request_refresh(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.commands
            .send(Command::RequestRefresh(address))
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Replaces a peer's import and export policies without resetting the
    /// session: the peer is asked to resend its routes (route refresh) and
    /// only the differences of the export are sent.
    pub async fn set_policies(
        &self,
        address: IpAddr,
        import: PeerPolicy,
        export: PeerPolicy,
    ) -> Result<(), SpeakerError> {
        self.ask(|tx| Command::SetPolicies(address, import, export, tx)).await?
    }

    /// Closes a peer's session with this NOTIFICATION (its routes leave at
    /// once, without graceful restart) and lets it start over, after
    /// `idle_hold` if given (a session that keeps flapping is held down);
    /// e.g. when BFD finds the path down.
    pub async fn reset_peer(
        &self,
        address: IpAddr,
        notification: Notification,
        idle_hold: Option<Duration>,
    ) -> Result<(), SpeakerError> {
        self.commands
            .send(Command::ResetPeer(address, notification, idle_hold))
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Lets a session held at its first start ([`PeerConfig::start_held_for`])
    /// start now; nothing for any other.
    pub async fn release_peer(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.commands
            .send(Command::ReleasePeer(address))
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Whether `prefix` is advertised to `peer` and, if not, which rule
    /// stops it.
    pub async fn explain(&self, prefix: IpNet, peer: IpAddr) -> Result<Explanation, SpeakerError> {
        self.ask(|tx| Command::Explain(prefix, peer, tx)).await
    }

    /// The status of every peer, without waiting for the core.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let peers = self.peers.lock().expect("peer registry");
        let mut v: Vec<PeerStatus> = peers
            .values()
            .map(|p| p.status.lock().expect("peer status").clone())
            .collect();
        v.sort_by_key(|p| p.neighbor_address);
        v
    }

    /// The table, or one prefix of it, with every path.
    pub async fn routes(&self, prefix: Option<IpNet>) -> Result<Vec<RouteView>, SpeakerError> {
        self.ask(|tx| Command::Routes(prefix, usize::MAX, tx)).await
    }

    /// The first `limit` prefixes of the table in order (the core keeps
    /// only `limit` of them at a time while it walks the table).
    pub async fn first_routes(&self, limit: usize) -> Result<Vec<RouteView>, SpeakerError> {
        self.ask(|tx| Command::Routes(None, limit, tx)).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SpeakerEvent> {
        self.events.subscribe()
    }

    /// Withdraws every originated prefix, waits (bounded) until the
    /// withdrawals are written, keeps the sessions up `grace` longer (so
    /// the fabric converges while this node still forwards), then closes
    /// every session with a Cease (Administrative Shutdown) carrying
    /// `message`.
    pub async fn shutdown(&self, message: &str, grace: Duration) -> Result<(), SpeakerError> {
        let message = message.to_owned();
        self.ask(|tx| Command::Shutdown(message, grace, tx)).await
    }

    /// Starts (or ends) the drain of RFC 8326: what this node originates
    /// goes out again with the GRACEFUL_SHUTDOWN community and less
    /// preferred, so the fabric moves traffic to other nodes before the
    /// prefixes are withdrawn.
    pub async fn set_draining(&self, on: bool) -> Result<(), SpeakerError> {
        self.ask(|tx| Command::SetDraining(on, tx)).await
    }

    /// Stops for a restart: every session closes without a NOTIFICATION
    /// and nothing is withdrawn, so graceful-restart helpers keep this
    /// node's routes and the kernel keeps the peers' (the next speaker
    /// adopts them); returns when the sessions are closed.
    pub async fn leave(&self) -> Result<(), SpeakerError> {
        self.ask(Command::Leave).await
    }
}
