//! The BGP session state machine of RFC 4271 section 8, sans-IO.
//!
//! One [`Fsm`] drives one TCP connection's worth of session: events and the
//! current time go in ([`Fsm::handle`], [`Fsm::on_tick`]), actions come out
//! (connect, send, close, session up/down, deliver an UPDATE). Timers are
//! deadlines kept inside; the caller wakes it at [`Fsm::next_deadline`].
//! Connection collisions (RFC 4271 6.8) involve two connections and are
//! decided by [`resolve_collision`].

use crate::wire::error::{code, subcode};
use crate::wire::{
    AddPathMode, Capability, Family, GracefulRestart, Message, Notification, Open, RouteRefresh, SessionCodec, Update,
};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// RFC 4271 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Session parameters.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Expected peer AS; 0 accepts any.
    pub remote_as: u32,
    /// Hold time we offer (0 or >= 3 seconds).
    pub hold_time: u16,
    /// Keepalive interval; `None` means a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    pub connect_retry: Duration,
    /// Wait for the peer to connect; never connect out.
    pub passive: bool,
    /// Capabilities we announce.
    pub capabilities: Vec<Capability>,
}

/// Hold time while waiting for the peer's OPEN (RFC 4271 suggests 4 min).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// What both sides agreed on in their OPENs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub remote_as: u32,
    pub remote_id: Ipv4Addr,
    pub hold_time: u16,
    pub keepalive: u16,
    pub families: Vec<Family>,
    pub codec: SessionCodec,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// Add-path: we may send multiple paths per family.
    pub add_path_send: Vec<Family>,
    /// The peer's graceful-restart capability, when both sides sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// IPv4 NLRI may carry IPv6 next hops (RFC 8950).
    pub extended_next_hop_v4: bool,
}

/// Why an established or opening session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The transport failed or closed.
    ConnectionLost,
    /// Stopped by configuration, without a NOTIFICATION (session not open).
    Stopped,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Sent(n) => write!(f, "sent notification: {n}"),
            DownReason::Received(n) => write!(f, "received notification: {n}"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// Inputs to the state machine. (A message moves through once; boxing it
/// would cost an allocation per message for nothing.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// Start the session (RFC events 1/4/5: manual or automatic start,
    /// passive per the config).
    Start,
    /// Stop the session; the NOTIFICATION (a Cease) is sent when a
    /// connection is open.
    Stop(Notification),
    /// A TCP connection is up (ours or the peer's).
    TcpConnected,
    /// The TCP connection failed or was closed by the peer.
    TcpFailed,
    /// A decoded message arrived.
    Message(Message),
    /// A message failed to decode with a session-reset action, or broke
    /// a rule of the session: this NOTIFICATION goes to the peer.
    Malformed(Notification),
}

/// Outputs of the state machine, to be carried out in order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Open an outgoing TCP connection to the peer.
    Connect,
    /// Close the TCP connection (after writing anything queued).
    Disconnect,
    Send(Message),
    /// The session reached Established.
    Established(Box<Negotiated>),
    /// The session left OpenConfirm/Established (routes must be dropped or,
    /// with graceful restart, kept as stale).
    Down(DownReason),
    /// An UPDATE for the RIB.
    Deliver(Box<Update>),
    /// The peer asked us to resend our routes.
    RefreshRequested(RouteRefresh),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
}

/// A BGP session state machine.
#[derive(Debug)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    started: bool,
    connect_retry_at: Option<Instant>,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    hold_time: Duration,
    keepalive: Duration,
    remote_open: Option<Open>,
    negotiated: Option<Negotiated>,
}

impl Fsm {
    pub fn new(config: FsmConfig) -> Self {
        Fsm {
            config,
            state: State::Idle,
            started: false,
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            hold_time: Duration::ZERO,
            keepalive: Duration::ZERO,
            remote_open: None,
            negotiated: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// Replaces the capabilities announced in the next OPEN.
    pub fn set_capabilities(&mut self, capabilities: Vec<Capability>) {
        self.config.capabilities = capabilities;
    }

    /// The peer's OPEN, once received.
    pub fn remote_open(&self) -> Option<&Open> {
        self.remote_open.as_ref()
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The earliest timer deadline, if any timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.connect_retry_at, self.hold_at, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn set(&mut self, t: Timer, at: Option<Instant>) {
        match t {
            Timer::ConnectRetry => self.connect_retry_at = at,
            Timer::Hold => self.hold_at = at,
            Timer::Keepalive => self.keepalive_at = at,
        }
    }

    fn clear_timers(&mut self) {
        self.connect_retry_at = None;
        self.hold_at = None;
        self.keepalive_at = None;
    }

    fn our_open(&self) -> Open {
        Open {
            version: 4,
            asn: self.config.local_as,
            hold_time: self.config.hold_time,
            router_id: self.config.router_id,
            capabilities: self.config.capabilities.clone(),
        }
    }

    /// Starts the session on a connection the peer opened (no outgoing
    /// connect is made first).
    pub fn start_with_connection(&mut self, now: Instant) -> Vec<Action> {
        self.started = true;
        self.handle(Event::TcpConnected, now)
    }

    /// Restarts the hold timer of an established session whose messages
    /// the caller is not reading yet (they wait in its socket while routes
    /// back up): the peer is alive, it is this side that is behind.
    pub fn defer_hold(&mut self, now: Instant) {
        if self.state == State::Established {
            self.restart_hold(now);
        }
    }

    /// Fires the timers that have expired by `now`.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.hold_at.is_some_and(|t| t <= now) {
            self.hold_at = None;
            self.hold_expired(now, &mut out);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = None;
            if matches!(self.state, State::OpenConfirm | State::Established) {
                out.push(Action::Send(Message::Keepalive));
                self.keepalive_at = Some(now + self.keepalive);
            }
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            self.connect_retry_expired(now, &mut out);
        }
        out
    }

    fn hold_expired(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
            let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0);
            self.fail(now, DownReason::Sent(n.clone()), Some(n), out);
        }
    }

    fn connect_retry_expired(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Idle | State::Connect | State::Active if self.started => {
                if self.config.passive {
                    self.state = State::Active;
                } else {
                    self.state = State::Connect;
                    out.push(Action::Connect);
                }
                self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
            }
            _ => {}
        }
    }

    /// Starts the session listening first: a connection from the peer is
    /// taken as in Active (RFC 4271 8.1.1, passive TCP establishment), and
    /// this side dials only when the ConnectRetry timer, set to
    /// `dial_after`, expires. For a start both sides make at the same
    /// moment (their BFD session coming Up), so that two connections do
    /// not cross.
    pub fn start_listening(&mut self, now: Instant, dial_after: Duration) {
        if self.state == State::Idle && !self.started {
            self.started = true;
            self.state = State::Active;
            self.set(Timer::ConnectRetry, Some(now + dial_after));
        }
    }

    /// Feeds one event.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if self.state == State::Idle && !self.started {
                    self.started = true;
                    if self.config.passive {
                        self.state = State::Active;
                    } else {
                        self.state = State::Connect;
                        out.push(Action::Connect);
                    }
                    self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
                }
            }
            Event::Stop(n) => {
                self.started = false;
                match self.state {
                    State::OpenSent | State::OpenConfirm | State::Established => {
                        out.push(Action::Send(Message::Notification(n.clone())));
                        out.push(Action::Disconnect);
                        out.push(Action::Down(DownReason::Sent(n)));
                    }
                    State::Connect | State::Active => out.push(Action::Disconnect),
                    State::Idle => {}
                }
                self.reset_to_idle();
            }
            Event::TcpConnected => match self.state {
                State::Idle if !self.started => {
                    // A connection for a session that is not started.
                    out.push(Action::Disconnect);
                }
                State::Idle | State::Connect | State::Active => {
                    self.connect_retry_at = None;
                    out.push(Action::Send(Message::Open(self.our_open())));
                    self.set(Timer::Hold, Some(now + OPEN_HOLD_TIME));
                    self.state = State::OpenSent;
                }
                _ => {
                    // A second connection is the caller's collision case.
                }
            },
            Event::TcpFailed => match self.state {
                State::Connect | State::Active => {
                    self.state = State::Active;
                    self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
                }
                State::OpenSent | State::OpenConfirm | State::Established => {
                    self.fail(now, DownReason::ConnectionLost, None, &mut out);
                }
                State::Idle => {}
            },
            Event::Malformed(n) => {
                if matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
                    self.fail(now, DownReason::Sent(n.clone()), Some(n), &mut out);
                }
            }
            Event::Message(m) => self.on_message(m, now, &mut out),
        }
        out
    }

    fn on_message(&mut self, m: Message, now: Instant, out: &mut Vec<Action>) {
        match (self.state, m) {
            (State::OpenSent, Message::Open(open)) => self.on_open(open, now, out),
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.state = State::Established;
                let n = self.negotiated.clone().expect("negotiated in OpenSent");
                out.push(Action::Established(Box::new(n)));
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                out.push(Action::Deliver(Box::new(u)));
            }
            (State::Established, Message::RouteRefresh(r)) => {
                self.restart_hold(now);
                out.push(Action::RefreshRequested(r));
            }
            (State::OpenSent | State::OpenConfirm | State::Established, Message::Notification(n)) => {
                self.fail(now, DownReason::Received(n), None, out);
            }
            (State::OpenSent | State::OpenConfirm | State::Established, _) => {
                let sub = match self.state {
                    State::OpenSent => subcode::FSM_UNEXPECTED_IN_OPENSENT,
                    State::OpenConfirm => subcode::FSM_UNEXPECTED_IN_OPENCONFIRM,
                    _ => subcode::FSM_UNEXPECTED_IN_ESTABLISHED,
                };
                let n = Notification::new(code::FSM, sub);
                self.fail(now, DownReason::Sent(n.clone()), Some(n), out);
            }
            // Messages without a connection in an open state are ignored.
            _ => {}
        }
    }

    fn on_open(&mut self, open: Open, now: Instant, out: &mut Vec<Action>) {
        if let Err(n) = self.check_open(&open) {
            self.fail(now, DownReason::Sent(n.clone()), Some(n), out);
            return;
        }
        let negotiated = negotiate(&self.config, &open);
        self.hold_time = Duration::from_secs(negotiated.hold_time as u64);
        self.keepalive = Duration::from_secs(negotiated.keepalive as u64);
        self.remote_open = Some(open);
        self.negotiated = Some(negotiated);
        out.push(Action::Send(Message::Keepalive));
        self.state = State::OpenConfirm;
        self.restart_hold(now);
        self.set(
            Timer::Keepalive,
            (!self.keepalive.is_zero()).then(|| now + self.keepalive),
        );
    }

    fn check_open(&self, open: &Open) -> Result<(), Notification> {
        if self.config.remote_as != 0 && open.asn != self.config.remote_as {
            return Err(Notification::new(code::OPEN, subcode::BAD_PEER_AS));
        }
        if open.asn == self.config.local_as && open.router_id == self.config.router_id {
            // RFC 6286: iBGP peers must have distinct identifiers.
            return Err(Notification::new(code::OPEN, subcode::BAD_BGP_IDENTIFIER));
        }
        Ok(())
    }

    fn restart_hold(&mut self, now: Instant) {
        self.hold_at = (!self.hold_time.is_zero()).then(|| now + self.hold_time);
    }

    /// Ends the session: optional NOTIFICATION, close, Down, back to Idle
    /// with the connect-retry timer armed for an automatic restart.
    fn fail(&mut self, now: Instant, reason: DownReason, send: Option<Notification>, out: &mut Vec<Action>) {
        if let Some(n) = send {
            out.push(Action::Send(Message::Notification(n)));
        }
        out.push(Action::Disconnect);
        out.push(Action::Down(reason));
        let started = self.started;
        self.reset_to_idle();
        self.started = started;
        if started {
            self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
        }
    }

    fn reset_to_idle(&mut self) {
        self.state = State::Idle;
        self.clear_timers();
        self.remote_open = None;
        self.negotiated = None;
    }
}

/// Computes what the two OPENs agree on.
pub fn negotiate(config: &FsmConfig, remote: &Open) -> Negotiated {
    let ours = Open {
        version: 4,
        asn: config.local_as,
        hold_time: config.hold_time,
        router_id: config.router_id,
        capabilities: config.capabilities.clone(),
    };
    let hold_time = config.hold_time.min(remote.hold_time);
    let keepalive = match config.keepalive {
        Some(k) if hold_time > 0 => k.min(hold_time / 3).max(1),
        _ => hold_time / 3,
    };
    let four_octet_as = ours.four_octet_as().is_some() && remote.four_octet_as().is_some();
    let mp_of = |o: &Open| {
        let v: Vec<Family> = o.multiprotocol().collect();
        if v.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            v
        }
    };
    let their_families = mp_of(remote);
    let families: Vec<Family> = mp_of(&ours)
        .into_iter()
        .filter(|f| their_families.contains(f))
        .collect();
    let has = |o: &Open, probe: fn(&Capability) -> bool| o.has(probe);
    let route_refresh =
        has(&ours, |c| matches!(c, Capability::RouteRefresh)) && has(remote, |c| matches!(c, Capability::RouteRefresh));
    let enhanced_route_refresh = has(&ours, |c| matches!(c, Capability::EnhancedRouteRefresh))
        && has(remote, |c| matches!(c, Capability::EnhancedRouteRefresh));
    let extended_message = has(&ours, |c| matches!(c, Capability::ExtendedMessage))
        && has(remote, |c| matches!(c, Capability::ExtendedMessage));
    // Add-path: we receive when we asked to receive and they can send.
    let add_path_dir = |f: Family, ours_wants: fn(&AddPathMode) -> bool, theirs: fn(&AddPathMode) -> bool| {
        ours.add_path().iter().any(|(af, m)| *af == f && ours_wants(m))
            && remote.add_path().iter().any(|(af, m)| *af == f && theirs(m))
    };
    let codec = SessionCodec {
        four_octet_as,
        add_path_v4: add_path_dir(Family::IPV4_UNICAST, |m| m.receive, |m| m.send),
        add_path_v6: add_path_dir(Family::IPV6_UNICAST, |m| m.receive, |m| m.send),
        extended_message,
    };
    let add_path_send = [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        .into_iter()
        .filter(|f| add_path_dir(*f, |m| m.send, |m| m.receive))
        .collect();
    let peer_graceful_restart = ours.graceful_restart().and(remote.graceful_restart()).cloned();
    let enh = |o: &Open| {
        o.extended_next_hop()
            .iter()
            .any(|(f, nh)| *f == Family::IPV4_UNICAST && *nh == crate::wire::AFI_IPV6)
    };
    Negotiated {
        remote_as: remote.asn,
        remote_id: remote.router_id,
        hold_time,
        keepalive,
        families,
        codec,
        route_refresh,
        enhanced_route_refresh,
        add_path_send,
        peer_graceful_restart,
        extended_next_hop_v4: enh(&ours) && enh(remote),
    }
}

/// Which connection survives a collision (RFC 4271 section 6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollisionWinner {
    Existing,
    New,
}

/// Decides a connection collision: the connection initiated by the speaker
/// with the higher BGP identifier survives. `existing_is_outbound` tells
/// whether the connection already in OpenSent/OpenConfirm is the one we
/// opened (the new one is then the peer's, and vice versa).
pub fn resolve_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr, existing_is_outbound: bool) -> CollisionWinner {
    let we_win = u32::from(local_id) > u32::from(remote_id);
    // Keep the connection that the higher identifier initiated.
    if we_win == existing_is_outbound {
        CollisionWinner::Existing
    } else {
        CollisionWinner::New
    }
}

/// The NOTIFICATION that closes the losing connection of a collision.
pub fn collision_notification() -> Notification {
    Notification::new(code::CEASE, subcode::CONNECTION_COLLISION)
}
