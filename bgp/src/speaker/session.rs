//! One peer's session, sans-IO: connections by number, the FSM of each,
//! connection collisions (RFC 4271 6.8), graceful-restart helper
//! reconnects (RFC 4724 4.2), decoding, import policy and counters.
//!
//! Inputs and the current time go in ([`PeerSession::handle`]); effects come
//! out (connect, send bytes on a connection, close it, start its UPDATE
//! writer, tell the core, change the published status, publish an event).
//! The session holds no shared state: the peer task ([`super::peer`])
//! carries the effects out on real sockets, the status and the event
//! channel; tests drive two sessions against each other on a simulated
//! clock and read the same effects. (The speaker's `restarting` flag is
//! read when the OPEN's capabilities are built, at start and restart.)
//!
//! A peer has at most two connections at once: the primary one and a
//! second one the peer opened while the primary was opening (a collision,
//! resolved by BGP identifier as soon as one side knows it) or while the
//! primary was established with graceful restart (the peer restarted: the
//! old session ends, its routes kept as stale, once the new connection's
//! OPEN arrives, never before).

use super::messages::{AttrRuns, PeerEvent, RouteEvent};
use super::transport::Inbound;
use super::{PeerConfig, SpeakerConfig, SpeakerEvent};
use crate::fsm::{
    collision_notification, resolve_collision, Action, CollisionWinner, DownReason, Event, Fsm, FsmConfig, Negotiated,
    State,
};
use crate::policy::{evaluate_import, PeerPolicy, Verdict};
use crate::rib::PeerId;
use crate::wire::{
    decode_message, message_bytes, AddPathMode, Capability, Family, GracefulRestart, GracefulRestartFamily, Message,
    Nlri, Notification, PathAttributes, RefreshSubtype, RouteRefresh, SessionCodec, Update,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection, as the session knows it: a number the peer task gave it.
pub(crate) type ConnId = u64;

/// What happens to a session.
#[derive(Debug)]
pub(crate) enum Input {
    /// Start the session (connect, or wait when passive).
    Start,
    /// The outgoing connection asked for by [`Effect::Connect`] is up.
    Connected {
        conn: ConnId,
        local: SocketAddr,
    },
    /// The outgoing connection failed.
    ConnectFailed(String),
    /// The peer opened a connection to us.
    Incoming {
        conn: ConnId,
        local: SocketAddr,
    },
    /// Something arrived on a connection.
    Inbound(ConnId, Inbound),
    /// Timers due by now. `inbound_paused`: the peer task has stopped
    /// reading the established connection because the core is not taking
    /// routes as fast as they come; the peer's messages wait in our socket,
    /// so its hold timer must not expire meanwhile.
    Tick {
        inbound_paused: bool,
    },
    /// Close the session for good with this NOTIFICATION.
    Stop(Notification),
    /// Close the connections for good without a NOTIFICATION (this node
    /// restarts; a graceful-restart helper keeps its routes).
    Leave,
    /// Close the session and start over, after `idle_hold` if set.
    Reset {
        notification: Notification,
        idle_hold: Option<Duration>,
    },
    SendRefresh(Family),
    /// Start now if held at the first start.
    Release,
    SetImport(PeerPolicy),
    /// New speaker settings (AS, router id): the connections close without
    /// a NOTIFICATION and the session opens again with them, announcing
    /// forwarding state kept.
    Restart(Box<SpeakerConfig>),
}

/// What the session asks of its surroundings, in order.
pub(crate) enum Effect {
    /// Open an outgoing connection; answer with [`Input::Connected`] or
    /// [`Input::ConnectFailed`].
    Connect,
    /// Give up the outgoing connection attempt.
    AbortConnect,
    /// Write these bytes (whole messages) on a connection.
    Send(ConnId, Bytes),
    /// Close a connection once what was queued on it is written.
    Close(ConnId),
    /// The session on this connection is established: its writer drains
    /// the peer's outbox from now on.
    StartUpdates {
        conn: ConnId,
        codec: SessionCodec,
        hold_time: u16,
    },
    /// Tell the core.
    Core(PeerEvent),
    /// Routes for the core, in order.
    Routes(RouteEvent),
    /// A change of the peer's published status.
    Status(StatusChange),
    /// An event for the speaker's subscribers.
    Event(SpeakerEvent),
}

/// A change of what [`super::PeerStatus`] shows of the session; the peer
/// task writes it (the session itself touches no shared state).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StatusChange {
    State(State),
    LastError(String),
    NotificationSent(String),
    NotificationReceived(String),
    Established {
        remote_as: u32,
        remote_router_id: std::net::Ipv4Addr,
        families: Vec<String>,
    },
    /// One UPDATE received, with this many announcements (IPv6 of them).
    UpdateReceived {
        prefixes: u64,
        prefixes_v6: u64,
    },
}

impl StatusChange {
    /// Writes the change into the published status.
    pub(crate) fn apply(&self, st: &mut super::PeerStatus) {
        match self {
            StatusChange::State(s) => st.set_state(*s),
            StatusChange::LastError(e) => st.last_error = Some(e.clone()),
            StatusChange::NotificationSent(n) => st.last_notification_sent = Some(n.clone()),
            StatusChange::NotificationReceived(n) => st.last_notification_received = Some(n.clone()),
            StatusChange::Established {
                remote_as,
                remote_router_id,
                families,
            } => {
                // A peer configured with AS 0 shows the AS it opened with.
                st.remote_as = *remote_as;
                st.remote_router_id = Some(*remote_router_id);
                st.families = families.clone();
                st.last_error = None;
            }
            StatusChange::UpdateReceived { prefixes, prefixes_v6 } => {
                st.updates_received += 1;
                st.prefixes_announced += *prefixes;
                st.prefixes_announced_v6 += *prefixes_v6;
            }
        }
    }
}

/// One connection's worth of session.
struct Link {
    fsm: Fsm,
    conn: Option<ConnId>,
    outbound: bool,
    local: Option<SocketAddr>,
    /// How the peer's messages are decoded (add-path: what we receive).
    codec: SessionCodec,
    /// How our messages are encoded (add-path: what we send).
    tx_codec: SessionCodec,
}

impl Link {
    fn new(cfg: FsmConfig) -> Self {
        Link {
            fsm: Fsm::new(cfg),
            conn: None,
            outbound: false,
            local: None,
            codec: SessionCodec::default(),
            tx_codec: SessionCodec::default(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Primary,
    Secondary,
}

/// One peer's session logic.
pub(crate) struct PeerSession {
    id: PeerId,
    config: PeerConfig,
    speaker: SpeakerConfig,
    fsm_config: FsmConfig,
    primary: Link,
    secondary: Option<Link>,
    /// An outgoing connection attempt is under way.
    connecting: bool,
    finished: bool,
    /// The core was told the session is up (and must be told it is down).
    primary_was_up: bool,
    /// The peer's graceful-restart capability of the current session.
    peer_gr: Option<GracefulRestart>,
    /// The primary session's state as last published.
    reported: State,
    /// Why the primary session last went down, for the next state report.
    down_reason: Option<DownReason>,
    /// Number of the current (or last) established session.
    session: u64,
    /// Reset with an idle hold: the session starts again at this time.
    idle_hold_until: Option<Instant>,
    /// The session has been started once.
    started: bool,
    /// The idle hold is the first start's, ended early by a release.
    held_at_start: bool,
    /// The next OPEN announces forwarding state kept (F bits), after a
    /// restart for new speaker settings while the kernel kept its routes.
    forwarding_kept: bool,
    out: Vec<Effect>,
}

/// How long a session released at its first start waits for the peer's
/// connection before it dials.
const LISTEN_FIRST: Duration = Duration::from_millis(500);

/// Capabilities this speaker announces to a peer.
pub(crate) fn capabilities(cfg: &PeerConfig, speaker: &SpeakerConfig, forwarding_kept: bool) -> Vec<Capability> {
    let mut caps: Vec<Capability> = cfg.families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
    // Route refresh (RFC 2918) only: enhanced route refresh (RFC 7313)
    // needs BoRR/EoRR demarcation this speaker does not implement, and a
    // peer that negotiated it would wait for them.
    caps.push(Capability::RouteRefresh);
    caps.push(Capability::FourOctetAs(speaker.local_as));
    let restart_time = cfg.restart_time(speaker);
    if restart_time > 0 {
        let restarting = speaker.restarting.load(std::sync::atomic::Ordering::Relaxed);
        caps.push(Capability::GracefulRestart(GracefulRestart {
            restarting,
            // RFC 8538: a NOTIFICATION other than a Hard Reset keeps the
            // routes as a graceful restart does.
            notification: true,
            restart_time: restart_time.min(4095),
            families: cfg
                .families
                .iter()
                .map(|f| GracefulRestartFamily {
                    family: *f,
                    forwarding_preserved: restarting || forwarding_kept,
                })
                .collect(),
        }));
    }
    let receive_only = AddPathMode {
        receive: true,
        send: false,
    };
    caps.push(Capability::AddPath(
        cfg.families.iter().map(|f| (*f, receive_only)).collect(),
    ));
    if cfg.families.contains(&Family::IPV4_UNICAST) && cfg.address.is_ipv6() {
        caps.push(Capability::ExtendedNextHop(vec![(
            Family::IPV4_UNICAST,
            crate::wire::AFI_IPV6,
        )]));
    }
    caps.push(Capability::ExtendedMessage);
    caps
}

/// The session parameters of a peer.
pub(crate) fn fsm_config(cfg: &PeerConfig, speaker: &SpeakerConfig) -> FsmConfig {
    FsmConfig {
        local_as: speaker.local_as,
        router_id: speaker.router_id,
        remote_as: cfg.remote_as,
        hold_time: cfg.hold_time,
        keepalive: cfg.keepalive,
        connect_retry: cfg.connect_retry,
        passive: cfg.passive,
        capabilities: capabilities(cfg, speaker, false),
    }
}

impl PeerSession {
    pub(crate) fn new(id: PeerId, config: PeerConfig, speaker: SpeakerConfig) -> Self {
        let fsm_config = fsm_config(&config, &speaker);
        PeerSession {
            id,
            primary: Link::new(fsm_config.clone()),
            secondary: None,
            fsm_config,
            config,
            speaker,
            connecting: false,
            finished: false,
            primary_was_up: false,
            peer_gr: None,
            reported: State::Idle,
            down_reason: None,
            session: 0,
            idle_hold_until: None,
            started: false,
            held_at_start: false,
            forwarding_kept: false,
            out: Vec::new(),
        }
    }

    /// The session was stopped for good.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// The primary connection, when it is established (the one whose
    /// reading pauses when routes back up).
    pub(crate) fn established_conn(&self) -> Option<ConnId> {
        (self.primary.fsm.state() == State::Established)
            .then_some(self.primary.conn)
            .flatten()
    }

    /// Every connection the session holds.
    pub(crate) fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.primary
            .conn
            .into_iter()
            .chain(self.secondary.as_ref().and_then(|s| s.conn))
    }

    /// When the session next needs a [`Input::Tick`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [
            self.primary.fsm.next_deadline(),
            self.secondary.as_ref().and_then(|s| s.fsm.next_deadline()),
            self.idle_hold_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds one input; returns what to do, in order.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        match input {
            Input::Start => match self.config.start_held_for {
                Some(d) if !self.started => {
                    tracing::info!(peer = %self.config.address, seconds = d.as_secs_f32(), "session start held until released");
                    self.idle_hold_until = Some(now + d);
                    self.held_at_start = true;
                }
                _ => {
                    self.started = true;
                    let a = self.primary.fsm.handle(Event::Start, now);
                    self.execute(Which::Primary, a, now);
                }
            },
            Input::Release => {
                if std::mem::take(&mut self.held_at_start) {
                    self.idle_hold_until = None;
                    self.started = true;
                    if !self.finished {
                        // The peer may start at this moment too (FRR starts
                        // BGP when BFD comes Up): listen first, dial after.
                        tracing::info!(peer = %self.config.address, "session start released");
                        self.primary.fsm.start_listening(now, LISTEN_FIRST);
                    }
                }
            }
            Input::Connected { conn, local } => self.on_connected(conn, local, now),
            Input::ConnectFailed(e) => {
                self.connecting = false;
                tracing::debug!(peer = %self.config.address, error = %e, "connect failed");
                self.status(StatusChange::LastError(format!("connect: {e}")));
                if self.primary.conn.is_none() {
                    let a = self.primary.fsm.handle(Event::TcpFailed, now);
                    self.execute(Which::Primary, a, now);
                }
            }
            Input::Incoming { conn, local } => self.on_incoming(conn, local, now),
            Input::Inbound(conn, m) => self.on_inbound(conn, m, now),
            Input::Tick { inbound_paused } => self.on_tick(inbound_paused, now),
            Input::Stop(n) => self.stop(n, now),
            Input::Leave => self.leave(now),
            Input::Reset {
                notification,
                idle_hold,
            } => {
                let notification = self.on_the_wire(notification);
                let a = self.primary.fsm.handle(Event::Stop(notification), now);
                self.execute(Which::Primary, a, now);
                match idle_hold {
                    Some(d) => self.idle_hold_until = Some(now + d),
                    None => {
                        let a = self.primary.fsm.handle(Event::Start, now);
                        self.execute(Which::Primary, a, now);
                    }
                }
            }
            Input::SetImport(policy) => self.config.import = policy,
            Input::Restart(speaker) => self.restart(*speaker, now),
            Input::SendRefresh(family) => {
                let refresh = self.primary.fsm.negotiated().is_some_and(|n| n.route_refresh);
                if refresh && self.primary.fsm.state() == State::Established {
                    let msg = Message::RouteRefresh(RouteRefresh {
                        family,
                        subtype: RefreshSubtype::Request,
                    });
                    self.send(Which::Primary, &msg);
                }
            }
        }
        self.resolve_collision(now);
        self.report_state();
        std::mem::take(&mut self.out)
    }

    /// A change of the published status, as an effect.
    fn status(&mut self, change: StatusChange) {
        self.out.push(Effect::Status(change));
    }

    fn link(&mut self, which: Which) -> Option<&mut Link> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Secondary => self.secondary.as_mut(),
        }
    }

    fn on_tick(&mut self, inbound_paused: bool, now: Instant) {
        if inbound_paused && self.primary.fsm.state() == State::Established {
            self.primary.fsm.defer_hold(now);
        }
        if self.idle_hold_until.is_some_and(|t| t <= now) {
            self.idle_hold_until = None;
            self.held_at_start = false;
            self.started = true;
            if !self.finished {
                let a = self.primary.fsm.handle(Event::Start, now);
                self.execute(Which::Primary, a, now);
            }
        }
        let a = self.primary.fsm.on_tick(now);
        self.execute(Which::Primary, a, now);
        if let Some(s) = self.secondary.as_mut() {
            let a = s.fsm.on_tick(now);
            self.execute(Which::Secondary, a, now);
        }
    }

    fn on_connected(&mut self, conn: ConnId, local: SocketAddr, now: Instant) {
        if !self.connecting || self.primary.conn.is_some() {
            self.out.push(Effect::Close(conn));
            return;
        }
        self.connecting = false;
        self.primary.conn = Some(conn);
        self.primary.outbound = true;
        self.primary.local = Some(local);
        self.refresh_capabilities();
        let a = self.primary.fsm.handle(Event::TcpConnected, now);
        self.execute(Which::Primary, a, now);
    }

    fn stop(&mut self, n: Notification, now: Instant) {
        let n = self.on_the_wire(n);
        if let Some(s) = self.secondary.take() {
            self.close_link(s, n.clone(), now);
        }
        let a = self.primary.fsm.handle(Event::Stop(n), now);
        self.execute(Which::Primary, a, now);
        self.abort_connect();
        self.idle_hold_until = None;
        self.finished = true;
    }

    /// Both sides announced the N bit (RFC 8538) on the current session.
    fn notification_negotiated(&self) -> bool {
        self.config.restart_time(&self.speaker) > 0 && self.peer_gr.as_ref().is_some_and(|g| g.notification)
    }

    /// The NOTIFICATION as sent: wrapped in a Hard Reset when it means the
    /// end of the session and the peer would otherwise keep our routes.
    fn on_the_wire(&self, n: Notification) -> Notification {
        if self.notification_negotiated() && n.calls_for_hard_reset() && !n.is_hard_reset() {
            Notification::hard_reset(&n)
        } else {
            n
        }
    }

    fn leave(&mut self, now: Instant) {
        self.drop_connections(now);
        self.idle_hold_until = None;
        self.finished = true;
    }

    /// Closes every connection as if it were lost: no NOTIFICATION, and
    /// the peer, a graceful-restart helper, keeps our routes.
    fn drop_connections(&mut self, now: Instant) {
        if let Some(mut s) = self.secondary.take() {
            if let Some(conn) = s.conn.take() {
                self.out.push(Effect::Close(conn));
            }
        }
        let a = self.primary.fsm.handle(Event::TcpFailed, now);
        self.execute(Which::Primary, a, now);
        if let Some(conn) = self.primary.conn.take() {
            self.out.push(Effect::Close(conn));
        }
        self.abort_connect();
    }

    fn restart(&mut self, speaker: SpeakerConfig, now: Instant) {
        self.speaker = speaker;
        self.fsm_config = fsm_config(&self.config, &self.speaker);
        self.forwarding_kept = true;
        // As if the connection were lost: the core keeps the peer's routes
        // as stale when it restarts gracefully itself.
        self.drop_connections(now);
        self.status(StatusChange::LastError(format!(
            "restarted for local AS {} / router id {}",
            self.speaker.local_as, self.speaker.router_id
        )));
        let finished = self.finished;
        self.primary = Link::new(self.fsm_config.clone());
        if !finished && self.idle_hold_until.is_none() {
            let a = self.primary.fsm.handle(Event::Start, now);
            self.execute(Which::Primary, a, now);
        }
    }

    /// The peer as configured.
    pub(crate) fn config(&self) -> &PeerConfig {
        &self.config
    }

    fn abort_connect(&mut self) {
        if std::mem::take(&mut self.connecting) {
            self.out.push(Effect::AbortConnect);
        }
    }

    /// Capabilities are computed per connection: the graceful-restart
    /// bits follow the speaker's restart state.
    fn refresh_capabilities(&mut self) {
        let caps = capabilities(&self.config, &self.speaker, self.forwarding_kept);
        self.fsm_config.capabilities = caps.clone();
        self.primary.fsm.set_capabilities(caps);
    }

    /// Ends a connection that never reached the core (a collision's loser,
    /// a second connection): NOTIFICATION, close; nothing is reported.
    fn close_link(&mut self, mut link: Link, n: Notification, now: Instant) {
        let _ = link.fsm.handle(Event::Stop(n.clone()), now);
        if let Some(conn) = link.conn.take() {
            self.out.push(Effect::Send(
                conn,
                message_bytes(&Message::Notification(n), &link.codec),
            ));
            self.out.push(Effect::Close(conn));
        }
    }

    fn on_incoming(&mut self, conn: ConnId, local: SocketAddr, now: Instant) {
        self.refresh_capabilities();
        let mut link = Link::new(self.fsm_config.clone());
        link.conn = Some(conn);
        link.local = Some(local);
        if self.idle_hold_until.is_some() || self.finished {
            // Held down (RFC 4271 IdleHoldTimer) or stopped: refused.
            let n = Notification::new(
                crate::wire::error::code::CEASE,
                crate::wire::error::subcode::CONNECTION_REJECTED,
            );
            self.out.push(Effect::Send(
                conn,
                message_bytes(&Message::Notification(n), &SessionCodec::default()),
            ));
            self.out.push(Effect::Close(conn));
            return;
        }
        match self.primary.fsm.state() {
            State::Idle | State::Connect | State::Active if self.primary.conn.is_none() => {
                self.abort_connect();
                self.primary = link;
                let a = self.primary.fsm.start_with_connection(now);
                self.execute(Which::Primary, a, now);
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                let a = link.fsm.start_with_connection(now);
                self.secondary = Some(link);
                self.execute(Which::Secondary, a, now);
            }
            // The peer may have restarted (RFC 4724 4.2); the old session
            // ends when the new connection's OPEN arrives with the Restart
            // State bit, not before: a connection that sends nothing, or a
            // late one of a collision, must not cost the session.
            State::Established if self.peer_gr.is_some() && self.secondary.is_none() => {
                let a = link.fsm.start_with_connection(now);
                self.secondary = Some(link);
                self.execute(Which::Secondary, a, now);
            }
            _ => {
                let codec = SessionCodec::default();
                self.out.push(Effect::Send(
                    conn,
                    message_bytes(&Message::Notification(collision_notification()), &codec),
                ));
                self.out.push(Effect::Close(conn));
            }
        }
    }

    fn on_inbound(&mut self, conn: ConnId, m: Inbound, now: Instant) {
        let which = if self.primary.conn == Some(conn) {
            Which::Primary
        } else if self.secondary.as_ref().and_then(|s| s.conn) == Some(conn) {
            Which::Secondary
        } else {
            return;
        };
        let Some(link) = self.link(which) else { return };
        let ev = match m {
            Inbound::Closed => Event::TcpFailed,
            Inbound::Malformed(e) => Event::Malformed(Notification::from_error(&e, &[])),
            Inbound::Frame(bytes) => match decode_message(&bytes, &link.codec) {
                Ok(msg) => Event::Message(msg),
                Err(e) => {
                    tracing::warn!(peer = %self.config.address, error = %e, "malformed message");
                    self.status(StatusChange::LastError(format!("malformed message: {e}")));
                    Event::Malformed(Notification::from_error(&e, &bytes))
                }
            },
        };
        let Some(link) = self.link(which) else { return };
        let a = link.fsm.handle(ev, now);
        self.execute(which, a, now);
    }

    /// Queues a message on a link's connection.
    fn send(&mut self, which: Which, msg: &Message) {
        let Some(link) = self.link(which) else { return };
        let Some(conn) = link.conn else { return };
        let bytes = message_bytes(msg, &link.tx_codec);
        self.out.push(Effect::Send(conn, bytes));
        if let Message::Notification(n) = msg {
            self.status(StatusChange::NotificationSent(n.to_string()));
        }
    }

    /// Carries out FSM actions for one link, in order.
    fn execute(&mut self, which: Which, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Connect => {
                    if which == Which::Primary && !self.connecting && self.primary.conn.is_none() {
                        self.connecting = true;
                        self.out.push(Effect::Connect);
                    }
                }
                Action::Disconnect => {
                    if let Some(conn) = self.link(which).and_then(|l| l.conn.take()) {
                        self.out.push(Effect::Close(conn));
                    }
                    if which == Which::Primary {
                        self.abort_connect();
                    }
                }
                Action::Send(msg) => self.send(which, &msg),
                Action::Established(n) => self.on_established(which, *n, now),
                Action::Down(reason) => self.on_down(which, reason),
                Action::Deliver(u) => match self.session_rules(&u) {
                    Ok(()) => self.on_update(*u),
                    Err(n) => {
                        tracing::warn!(peer = %self.config.address, notification = %n, "UPDATE breaks what the session negotiated");
                        let a = self.primary.fsm.handle(Event::Malformed(n), now);
                        self.execute(Which::Primary, a, now);
                    }
                },
                Action::RefreshRequested(r) => {
                    if r.subtype == RefreshSubtype::Request {
                        self.out.push(Effect::Core(PeerEvent::RefreshRequested {
                            id: self.id,
                            family: r.family,
                        }));
                    }
                }
            }
        }
    }

    /// Publishes a change of the primary session's state (once per input:
    /// the steps in between, such as a collision's loser going Idle, are
    /// not states of the session).
    fn report_state(&mut self) {
        let after = self.primary.fsm.state();
        let before = self.reported;
        if before == after {
            return;
        }
        self.reported = after;
        self.status(StatusChange::State(after));
        tracing::info!(peer = %self.config.address, from = %before, to = %after, "session state");
        let reason = self.down_reason.take().filter(|_| before == State::Established);
        self.out.push(Effect::Event(SpeakerEvent::PeerState {
            address: self.config.address,
            from: before,
            to: after,
            reason,
        }));
    }

    fn on_established(&mut self, which: Which, n: Negotiated, now: Instant) {
        if which == Which::Secondary {
            // The peer's connection won: it becomes the primary.
            let sec = self.secondary.take().expect("secondary exists");
            let old = std::mem::replace(&mut self.primary, sec);
            if let Some(conn) = old.conn {
                self.out.push(Effect::Close(conn));
            }
            self.abort_connect();
        } else if let Some(s) = self.secondary.take() {
            self.close_link(s, collision_notification(), now);
        }
        self.primary.codec = n.codec;
        self.primary.tx_codec = SessionCodec {
            add_path_v4: n.add_path_send.contains(&Family::IPV4_UNICAST),
            add_path_v6: n.add_path_send.contains(&Family::IPV6_UNICAST),
            ..n.codec
        };
        if let Some(conn) = self.primary.conn {
            self.out.push(Effect::StartUpdates {
                conn,
                codec: self.primary.tx_codec,
                hold_time: n.hold_time,
            });
        }
        self.peer_gr = n.peer_graceful_restart.clone();
        self.forwarding_kept = false;
        self.primary_was_up = true;
        self.session += 1;
        let local = self
            .primary
            .local
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
        self.status(StatusChange::Established {
            remote_as: n.remote_as,
            remote_router_id: n.remote_id,
            families: n.families.iter().map(|f| f.to_string()).collect(),
        });
        tracing::info!(
            peer = %self.config.address,
            remote_as = n.remote_as,
            remote_id = %n.remote_id,
            hold_time = n.hold_time,
            families = ?n.families.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "session established"
        );
        self.out.push(Effect::Core(PeerEvent::Up {
            id: self.id,
            session: self.session,
            negotiated: Box::new(n),
            local,
        }));
    }

    fn on_down(&mut self, which: Which, reason: DownReason) {
        match &reason {
            DownReason::Received(n) => self.status(StatusChange::NotificationReceived(n.to_string())),
            DownReason::Sent(n) => self.status(StatusChange::NotificationSent(n.to_string())),
            _ => {}
        }
        if which == Which::Primary {
            self.status(StatusChange::LastError(reason.to_string()));
        }
        if which == Which::Primary {
            self.down_reason = Some(reason.clone());
        }
        tracing::info!(peer = %self.config.address, reason = %reason, "session down");
        // Only a session the core knew as up is reported down. Graceful
        // restart (helper): a lost connection keeps the peer's routes of
        // the families its capability listed; with the N bit negotiated
        // (RFC 8538 4) so does a NOTIFICATION either way, unless it is a
        // Hard Reset.
        if which == Which::Primary && self.primary_was_up {
            self.primary_was_up = false;
            let n_bit = self.notification_negotiated();
            let gr = self.peer_gr.take();
            let graceful = match &reason {
                DownReason::ConnectionLost => true,
                // Our hold timer ran out: the peer went silent without
                // closing its connection (a restarting agent's connection
                // closes), a dead host whose routes must not be kept for
                // the restart time.
                DownReason::Sent(n) => {
                    n_bit && !n.is_hard_reset() && n.code != crate::wire::error::code::HOLD_TIMER_EXPIRED
                }
                // A peer's BFD Down says the path the stale routes would
                // use has failed, wrapped or not.
                DownReason::Received(n) => {
                    n_bit
                        && !n.is_hard_reset()
                        && !(n.code == crate::wire::error::code::CEASE
                            && n.subcode == crate::wire::error::subcode::BFD_DOWN)
                }
                DownReason::Stopped => false,
            };
            let (keep_stale_for, stale_families) = match gr {
                Some(gr) if graceful => (
                    Some(Duration::from_secs(gr.restart_time.max(1) as u64)),
                    gr.families.iter().map(|f| f.family).collect(),
                ),
                _ => (None, Vec::new()),
            };
            if graceful && n_bit && !matches!(reason, DownReason::ConnectionLost) {
                tracing::info!(peer = %self.config.address, "NOTIFICATION without Hard Reset: the peer's routes are kept as stale (RFC 8538)");
            }
            self.out.push(Effect::Core(PeerEvent::Down {
                id: self.id,
                keep_stale_for,
                stale_families,
            }));
        }
    }

    /// What an UPDATE must respect of the session (a session reset when
    /// it does not): only negotiated families (RFC 4760 7), and IPv4 routes
    /// with an IPv6 next hop only with extended next hop negotiated
    /// (RFC 8950: the next hop's length is then inconsistent, RFC 7606 7.11).
    fn session_rules(&self, u: &Update) -> Result<(), Notification> {
        let Some(n) = self.primary.fsm.negotiated() else {
            return Ok(());
        };
        let optional_attribute = || {
            Notification::new(
                crate::wire::error::code::UPDATE,
                crate::wire::error::subcode::OPTIONAL_ATTRIBUTE,
            )
        };
        let classic = !u.nlri.is_empty() || !u.withdrawn.is_empty();
        if classic && !n.families.contains(&Family::IPV4_UNICAST) {
            return Err(Notification::new(
                crate::wire::error::code::UPDATE,
                crate::wire::error::subcode::INVALID_NETWORK_FIELD,
            ));
        }
        let mp_families = u
            .mp_reach
            .iter()
            .map(|m| m.family)
            .chain(u.mp_unreach.iter().map(|m| m.family));
        for family in mp_families {
            if !n.families.contains(&family) {
                return Err(optional_attribute());
            }
        }
        if let Some(m) = &u.mp_reach {
            if m.family == Family::IPV4_UNICAST && m.next_hop.global.is_ipv6() && !n.extended_next_hop_v4 {
                return Err(optional_attribute());
            }
        }
        Ok(())
    }

    fn on_update(&mut self, u: Update) {
        let (mut prefixes, mut prefixes_v6) = (0, 0);
        for (n, _, _) in u.announcements() {
            prefixes += 1;
            prefixes_v6 += matches!(n.prefix, ipnet::IpNet::V6(_)) as u64;
        }
        self.status(StatusChange::UpdateReceived { prefixes, prefixes_v6 });
        if let Some(family) = u.end_of_rib {
            self.out.push(Effect::Routes(RouteEvent::EndOfRib {
                id: self.id,
                session: self.session,
                family,
            }));
            return;
        }
        if let Some(e) = &u.treat_as_withdraw {
            tracing::warn!(peer = %self.config.address, error = %e, prefixes = u.withdrawn.len(), "malformed UPDATE treated as withdraw (RFC 7606)");
        }
        for e in &u.discarded {
            tracing::warn!(peer = %self.config.address, error = %e, "malformed attribute discarded (RFC 7606)");
        }
        let (announce, withdraw) = self.import(u);
        if announce.is_empty() && withdraw.is_empty() {
            return;
        }
        self.out.push(Effect::Routes(RouteEvent::Routes {
            id: self.id,
            session: self.session,
            announce,
            withdraw,
        }));
    }

    /// Import: loop and first-AS checks, then the peer's import policy.
    /// Rejected prefixes become withdrawals (they may have been accepted
    /// before).
    fn import(&self, u: Update) -> (AttrRuns, Vec<Nlri>) {
        let local_as = self.speaker.local_as;
        // The AS the peer opened with (the configured one, or any when the
        // configuration says 0).
        let remote_as = self
            .primary
            .fsm
            .negotiated()
            .map_or(self.config.remote_as, |n| n.remote_as);
        let ebgp = remote_as != local_as;
        let mut withdraw: Vec<Nlri> = u.withdrawals().copied().collect();
        let mut announce = AttrRuns::new();
        let mut base = u.attrs.clone();
        if ebgp {
            base.local_pref = None;
        }
        let confed = base.as_path.segments.iter().any(|seg| {
            matches!(
                seg.kind,
                crate::wire::SegmentKind::ConfedSequence | crate::wire::SegmentKind::ConfedSet
            )
        });
        let path_error = if ebgp && confed {
            // This speaker is in no confederation: confederation segments
            // from an external peer make the path malformed, and the
            // UPDATE is treated as withdraw (RFC 7606 7.2, RFC 5065 5).
            tracing::warn!(peer = %self.config.address, "AS_CONFED segments from an external peer: UPDATE treated as withdraw (RFC 7606)");
            Some("AS path holds confederation segments from an external peer")
        } else if base.as_path.contains(local_as) {
            Some("AS path contains our AS")
        } else if ebgp && self.config.role != super::PeerRole::RouteServer && base.as_path.first_as() != Some(remote_as)
        {
            Some("first AS is not the peer's AS")
        } else {
            None
        };
        let mut variants: HashMap<(Option<IpAddr>, Option<Ipv6Addr>), Arc<PathAttributes>> = HashMap::new();
        for (nlri, nh, ll) in u.announcements() {
            if path_error.is_some() || nh.is_none() {
                withdraw.push(*nlri);
                continue;
            }
            // A node of the mesh originates its routes itself: their next
            // hop is the node (one of the other family cannot be checked
            // against the session's address).
            let from_the_node = matches!(
                self.config.role,
                super::PeerRole::Mesh | super::PeerRole::RouteServerClient
            );
            if let (true, Some(hop)) = (from_the_node, nh) {
                if hop.is_ipv4() == self.config.address.is_ipv4() && hop != self.config.address {
                    tracing::debug!(peer = %self.config.address, prefix = %nlri.prefix, next_hop = %hop, "import rejected: a mesh route's next hop is not the node");
                    withdraw.push(*nlri);
                    continue;
                }
            }
            let applied = evaluate_import(&self.config.import, &self.speaker.local_prefixes, &nlri.prefix, &base);
            if applied.decision.verdict == Verdict::Reject {
                tracing::debug!(peer = %self.config.address, prefix = %nlri.prefix, reason = %applied.decision.reason, "import rejected");
                withdraw.push(*nlri);
                continue;
            }
            let attrs = match applied.attrs {
                Some(mut changed) => {
                    changed.next_hop = nh;
                    changed.link_local_next_hop = ll;
                    Arc::new(changed)
                }
                None => variants
                    .entry((nh, ll))
                    .or_insert_with(|| {
                        let mut a = base.clone();
                        a.next_hop = nh;
                        a.link_local_next_hop = ll;
                        Arc::new(a)
                    })
                    .clone(),
            };
            match announce.last_mut() {
                Some((shared, run)) if Arc::ptr_eq(shared, &attrs) => run.push(*nlri),
                _ => announce.push((attrs, vec![*nlri])),
            }
        }
        if let Some(reason) = path_error {
            if !announce.is_empty() || !withdraw.is_empty() {
                tracing::debug!(peer = %self.config.address, reason, "routes not imported");
            }
        }
        (announce, withdraw)
    }

    /// Settles the second connection: dropped when it failed, promoted when
    /// the primary has none, the peer's restart taken over when the primary
    /// is established with graceful restart and the new OPEN arrived, or a
    /// collision resolved by BGP identifier once one side knows it.
    fn resolve_collision(&mut self, now: Instant) {
        let Some(sec) = &self.secondary else { return };
        if sec.conn.is_none() || sec.fsm.state() == State::Idle {
            self.secondary = None;
            return;
        }
        if self.primary.conn.is_none()
            && matches!(self.primary.fsm.state(), State::Idle | State::Connect | State::Active)
        {
            self.abort_connect();
            self.primary = self.secondary.take().expect("checked");
            return;
        }
        if self.primary.fsm.state() == State::Established {
            let Some(open) = sec.fsm.remote_open() else {
                return;
            };
            // Only an OPEN with the Restart State bit says the peer
            // restarted; without it this is a late connection of a
            // collision, and the established session stays (RFC 4271 6.8).
            let restarted = open
                .capabilities
                .iter()
                .any(|c| matches!(c, Capability::GracefulRestart(gr) if gr.restarting));
            if !restarted {
                let sec = self.secondary.take().expect("checked");
                self.close_link(sec, collision_notification(), now);
                return;
            }
            // The peer restarted: its old session is gone. Its routes stay
            // as stale (the session's Down says so) until the new session's
            // End-of-RIB or the restart time.
            tracing::info!(peer = %self.config.address, "peer restarted while established: graceful restart");
            let a = self.primary.fsm.handle(Event::TcpFailed, now);
            self.execute(Which::Primary, a, now);
            self.primary = self.secondary.take().expect("checked");
            return;
        }
        let remote_id = self
            .primary
            .fsm
            .remote_open()
            .or(sec.fsm.remote_open())
            .map(|o| o.router_id);
        let Some(remote_id) = remote_id else { return };
        let loser = match resolve_collision(self.speaker.router_id, remote_id, self.primary.outbound) {
            CollisionWinner::Existing => Which::Secondary,
            CollisionWinner::New => Which::Primary,
        };
        tracing::info!(peer = %self.config.address, closing = ?loser, "connection collision resolved");
        let sec = self.secondary.take().expect("checked");
        match loser {
            Which::Secondary => self.close_link(sec, collision_notification(), now),
            Which::Primary => {
                let old = std::mem::replace(&mut self.primary, sec);
                self.close_link(old, collision_notification(), now);
                self.abort_connect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_implemented_is_announced() {
        let speaker = SpeakerConfig {
            local_as: 65010,
            router_id: "10.0.0.10".parse().unwrap(),
            listen_port: None,
            peer_port: 179,
            local_prefixes: Default::default(),
            graceful_restart_time: 120,
            restarting: Default::default(),
            route_sink: None,
        };
        let caps = capabilities(&PeerConfig::new("10.0.0.1".parse().unwrap(), 65000), &speaker, false);
        assert!(caps.contains(&Capability::RouteRefresh));
        assert!(
            !caps.contains(&Capability::EnhancedRouteRefresh),
            "enhanced route refresh needs BoRR/EoRR, which are not sent"
        );
    }
}
