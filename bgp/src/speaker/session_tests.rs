//! Two [`PeerSession`]s wired to each other on a simulated clock: every
//! byte one sends is the other's input, connections are opened and closed
//! by the harness, and time moves only when nothing is in flight. Connection
//! collisions, graceful-restart reconnects and timers are tested here
//! without sockets and without waiting.

use super::messages::{PeerEvent, RouteEvent};
use super::session::{ConnId, Effect, Input, PeerSession};
use super::transport::Inbound;
use super::{PeerConfig, PeerStatus, SpeakerConfig, SpeakerEvent};
use crate::fsm::State;
use crate::wire::error::{code, subcode};
use crate::wire::{decode_message, Message, SessionCodec};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One side: its session and what it told the core.
struct End {
    session: PeerSession,
    address: IpAddr,
    core: Vec<PeerEvent>,
    routes: Vec<RouteEvent>,
    /// The status as the session's effects wrote it.
    status: PeerStatus,
    /// State changes published, in order.
    history: Vec<State>,
    /// Why each session that was up went down, as the state events said.
    down_reasons: Vec<crate::fsm::DownReason>,
    /// A Connect effect not yet answered.
    connect_pending: bool,
    /// Messages this side wrote, by connection.
    sent: Vec<(ConnId, Message)>,
}

struct Harness {
    now: Instant,
    ends: [End; 2],
    /// (side, connection) -> (other side, its end of the connection).
    wires: HashMap<(usize, ConnId), (usize, ConnId)>,
    inputs: VecDeque<(usize, Input)>,
    next_conn: ConnId,
    /// Hold outgoing connects until both sides asked (a collision).
    cross_connects: bool,
    /// Which side opened each connection (both ends' numbers).
    opened_by: HashMap<ConnId, usize>,
}

const AS_A: u32 = 65001;
const AS_B: u32 = 65002;

fn end(local: (&str, u32, &str), remote: (&str, u32), graceful_restart: bool, restarting: bool) -> End {
    end_adjusted(local, remote, graceful_restart, restarting, |_| {})
}

/// [`end`] with its peer settings adjusted.
fn end_adjusted(
    local: (&str, u32, &str),
    remote: (&str, u32),
    graceful_restart: bool,
    restarting: bool,
    adjust: impl FnOnce(&mut PeerConfig),
) -> End {
    let speaker = SpeakerConfig {
        local_as: local.1,
        router_id: local.2.parse().unwrap(),
        listen_port: Some(179),
        peer_port: 179,
        local_prefixes: Default::default(),
        graceful_restart_time: if graceful_restart { 120 } else { 0 },
        restarting: Arc::new(AtomicBool::new(restarting)),
        route_sink: None,
    };
    let mut config = PeerConfig::new(remote.0.parse().unwrap(), remote.1);
    config.hold_time = 9;
    adjust(&mut config);
    let status = PeerStatus::new(&config, local.1);
    End {
        session: PeerSession::new(1, config, speaker),
        address: local.0.parse().unwrap(),
        core: Vec::new(),
        routes: Vec::new(),
        status,
        history: Vec::new(),
        down_reasons: Vec::new(),
        connect_pending: false,
        sent: Vec::new(),
    }
}

/// Side 0 is 10.0.0.1 (router id 1.1.1.1), side 1 is 10.0.0.2 (2.2.2.2).
fn harness(graceful_restart: bool) -> Harness {
    Harness {
        now: Instant::now(),
        ends: [
            end(
                ("10.0.0.1", AS_A, "1.1.1.1"),
                ("10.0.0.2", AS_B),
                graceful_restart,
                false,
            ),
            end(
                ("10.0.0.2", AS_B, "2.2.2.2"),
                ("10.0.0.1", AS_A),
                graceful_restart,
                false,
            ),
        ],
        wires: HashMap::new(),
        inputs: VecDeque::new(),
        next_conn: 1,
        cross_connects: false,
        opened_by: HashMap::new(),
    }
}

impl Harness {
    fn addr(&self, side: usize) -> SocketAddr {
        SocketAddr::new(self.ends[side].address, 179)
    }

    /// Opens a connection from `from` to `to`: returns what `from` hears
    /// (Connected) and what `to` hears (Incoming).
    fn open(&mut self, from: usize, to: usize) -> ((usize, Input), (usize, Input)) {
        let (a, b) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        self.wires.insert((from, a), (to, b));
        self.wires.insert((to, b), (from, a));
        self.opened_by.insert(a, from);
        self.opened_by.insert(b, from);
        self.ends[from].connect_pending = false;
        let (la, lb) = (self.addr(from), self.addr(to));
        (
            (from, Input::Connected { conn: a, local: la }),
            (to, Input::Incoming { conn: b, local: lb }),
        )
    }

    /// A connection to `to` that only the harness holds (a peer that
    /// connects and says nothing yet).
    fn silent_connection(&mut self, to: usize) -> ConnId {
        let c = self.next_conn;
        self.next_conn += 1;
        let local = self.addr(to);
        self.inputs.push_back((to, Input::Incoming { conn: c, local }));
        c
    }

    fn input(&mut self, side: usize, input: Input) {
        self.inputs.push_back((side, input));
    }

    fn apply(&mut self, side: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Connect => self.ends[side].connect_pending = true,
                Effect::AbortConnect => self.ends[side].connect_pending = false,
                Effect::Send(conn, bytes) => {
                    if let Ok(m) = decode_message(&bytes, &SessionCodec::default()) {
                        self.ends[side].sent.push((conn, m));
                    }
                    if let Some(&(other, oc)) = self.wires.get(&(side, conn)) {
                        self.inputs
                            .push_back((other, Input::Inbound(oc, Inbound::Frame(bytes))));
                    }
                }
                Effect::Close(conn) => {
                    if let Some((other, oc)) = self.wires.remove(&(side, conn)) {
                        self.wires.remove(&(other, oc));
                        self.inputs.push_back((other, Input::Inbound(oc, Inbound::Closed)));
                    }
                }
                Effect::StartUpdates { .. } => {}
                Effect::Core(ev) => self.ends[side].core.push(ev),
                Effect::Routes(ev) => self.ends[side].routes.push(ev),
                Effect::Status(change) => change.apply(&mut self.ends[side].status),
                Effect::Event(SpeakerEvent::PeerState { to, reason, .. }) => {
                    self.ends[side].history.push(to);
                    self.ends[side].down_reasons.extend(reason);
                }
                Effect::Event(_) => {}
            }
        }
    }

    /// Delivers everything in flight, answering connects, until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if let Some((side, input)) = self.inputs.pop_front() {
                let fx = self.ends[side].session.handle(input, self.now);
                self.apply(side, fx);
                continue;
            }
            let pending: Vec<usize> = (0..2).filter(|&s| self.ends[s].connect_pending).collect();
            match pending.as_slice() {
                [] => return,
                [0, 1] if self.cross_connects => {
                    // Both connects complete before either side hears of
                    // the other's: a true collision.
                    self.cross_connects = false;
                    let (c0, i1) = self.open(0, 1);
                    let (c1, i0) = self.open(1, 0);
                    self.inputs.extend([c0, c1, i1, i0]);
                }
                [s, ..] if !self.cross_connects => {
                    let (c, i) = self.open(*s, 1 - *s);
                    self.inputs.extend([c, i]);
                }
                _ => return,
            }
        }
        panic!("the sessions never settle");
    }

    /// Moves the clock to the next deadline of either side (at most
    /// `limit` ahead) and ticks both.
    fn advance(&mut self, limit: Duration, inbound_paused: bool) {
        let until = self.now + limit;
        let next = (0..2)
            .filter_map(|s| self.ends[s].session.deadline())
            .min()
            .unwrap_or(until)
            .min(until);
        self.now = next.max(self.now);
        for side in 0..2 {
            self.input(side, Input::Tick { inbound_paused });
        }
        self.settle();
    }

    fn state(&self, side: usize) -> State {
        self.ends[side].history.last().copied().unwrap_or(State::Idle)
    }

    fn ups(&self, side: usize) -> usize {
        self.ends[side]
            .core
            .iter()
            .filter(|e| matches!(e, PeerEvent::Up { .. }))
            .count()
    }

    fn downs(&self, side: usize) -> Vec<(Option<Duration>, usize)> {
        self.ends[side]
            .core
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Down {
                    keep_stale_for,
                    stale_families,
                    ..
                } => Some((*keep_stale_for, stale_families.len())),
                _ => None,
            })
            .collect()
    }

    fn establish(&mut self) {
        for side in 0..2 {
            self.input(side, Input::Start);
        }
        self.settle();
        assert_eq!((self.state(0), self.state(1)), (State::Established, State::Established));
    }

    fn live_connections(&self) -> usize {
        self.wires.len() / 2
    }
}

fn is_collision_cease(m: &Message) -> bool {
    matches!(m, Message::Notification(n) if n.code == code::CEASE && n.subcode == subcode::CONNECTION_COLLISION)
}

#[test]
fn simultaneous_connections_settle_on_the_one_the_higher_identifier_opened() {
    let mut h = harness(false);
    h.cross_connects = true;
    for side in 0..2 {
        h.input(side, Input::Start);
    }
    h.settle();
    assert_eq!((h.state(0), h.state(1)), (State::Established, State::Established));
    assert_eq!(h.live_connections(), 1, "one connection survives");
    assert_eq!((h.ups(0), h.ups(1)), (1, 1), "each core hears of one session");
    // 2.2.2.2 (side 1) is the higher identifier: the connection it opened
    // is the one that stays.
    let survivor = h.wires.keys().next().expect("a connection").1;
    assert_eq!(h.opened_by[&survivor], 1, "the connection side 1 opened survives");
    // Each side closes the losing connection itself (it cannot know the
    // other did): one Cease / Connection Collision from each, on it.
    for side in 0..2 {
        let ceases: Vec<ConnId> = h.ends[side]
            .sent
            .iter()
            .filter(|(_, m)| is_collision_cease(m))
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(ceases.len(), 1, "side {side}: {ceases:?}");
        assert_eq!(
            h.opened_by[&ceases[0]], 0,
            "the losing connection is the one side 0 opened"
        );
    }
    for s in 0..2 {
        let hist = &h.ends[s].history;
        let opened = hist.iter().position(|st| *st == State::OpenSent).expect("opened");
        assert!(
            !hist[opened..].contains(&State::Idle),
            "side {s} passed through Idle after opening: {hist:?}"
        );
    }
}

#[test]
fn a_late_connection_while_established_without_graceful_restart_is_refused() {
    let mut h = harness(false);
    h.establish();
    let c = h.silent_connection(0);
    h.settle();
    assert_eq!(h.state(0), State::Established);
    assert!(h.ends[0]
        .sent
        .iter()
        .any(|(conn, m)| *conn == c && is_collision_cease(m)));
    assert!(h.downs(0).is_empty());
}

#[test]
fn a_connection_that_sends_no_open_does_not_end_a_graceful_restart_session() {
    let mut h = harness(true);
    h.establish();
    let c = h.silent_connection(0);
    h.settle();
    assert_eq!(h.state(0), State::Established);
    assert!(h.downs(0).is_empty(), "the session stays until an OPEN arrives");
    // The connection goes away without an OPEN: nothing changes.
    h.input(0, Input::Inbound(c, Inbound::Closed));
    h.settle();
    assert_eq!(h.state(0), State::Established);
    assert!(h.downs(0).is_empty());
    assert_eq!(h.ups(0), 1);
}

#[test]
fn a_restarted_peer_s_open_ends_the_old_session_with_its_routes_kept() {
    let mut h = harness(true);
    h.establish();
    // Side 1 restarts: a new process, forwarding state kept; the old
    // connection looks alive to side 0.
    h.ends[1] = end(("10.0.0.2", AS_B, "2.2.2.2"), ("10.0.0.1", AS_A), true, true);
    h.wires.retain(|(side, _), _| *side == 0);
    h.input(1, Input::Start);
    h.settle();
    assert_eq!(h.downs(0), vec![(Some(Duration::from_secs(120)), 1)], "kept as stale");
    assert_eq!(h.ups(0), 2, "the new session is up");
    assert_eq!((h.state(0), h.state(1)), (State::Established, State::Established));
}

#[test]
fn a_late_connection_whose_open_says_no_restart_leaves_the_session() {
    let mut h = harness(true);
    h.establish();
    // The peer opens another connection and sends an OPEN without the
    // Restart State bit: a late collision, not a restart.
    let late = end(("10.0.0.2", AS_B, "2.2.2.2"), ("10.0.0.1", AS_A), true, false);
    h.ends[1] = late;
    h.wires.retain(|(side, _), _| *side == 0);
    h.input(1, Input::Start);
    h.settle();
    assert_eq!(h.downs(0), vec![], "the established session stays");
    assert_eq!(h.ups(0), 1);
    assert!(h.ends[0].sent.iter().any(|(_, m)| is_collision_cease(m)));
}

/// The state events of a session closed at its prefix limit say so on
/// both sides (the Kubernetes Event `MaxPrefixExceeded` is chosen by it).
#[test]
fn a_session_down_event_carries_its_reason() {
    let mut h = harness(false);
    h.establish();
    assert!(h.ends[0].down_reasons.is_empty() && h.ends[1].down_reasons.is_empty());
    let n = super::prefix_limit::notification(crate::wire::Family::IPV4_UNICAST, 10);
    h.input(
        0,
        Input::Reset {
            notification: n.clone(),
            idle_hold: Some(Duration::from_secs(30)),
        },
    );
    h.settle();
    assert_eq!(h.ends[0].down_reasons, [crate::fsm::DownReason::Sent(n.clone())]);
    assert!(h.ends[0].down_reasons[0].to_string().contains("maximum prefixes"));
    assert!(h.ends[0]
        .status
        .last_notification_sent
        .as_deref()
        .is_some_and(|t| t.contains("maximum prefixes")));
    assert_eq!(h.ends[1].down_reasons.len(), 1);
    assert!(
        matches!(&h.ends[1].down_reasons[0], crate::fsm::DownReason::Received(r) if r.code == n.code && r.subcode == n.subcode),
        "{:?}",
        h.ends[1].down_reasons
    );
}

/// Side 0's first start held for 3 s (a session run with BFD).
fn held_harness() -> Harness {
    let mut h = harness(false);
    h.ends[0] = end_adjusted(("10.0.0.1", AS_A, "1.1.1.1"), ("10.0.0.2", AS_B), false, false, |c| {
        c.start_held_for = Some(Duration::from_secs(3))
    });
    h
}

/// A session held at its first start neither dials nor accepts until
/// released; released, it listens first (the peer may be starting at the
/// same moment) and dials half a second later.
#[test]
fn a_session_held_at_its_first_start_waits_for_its_release() {
    let mut h = held_harness();
    for side in 0..2 {
        h.input(side, Input::Start);
    }
    h.settle();
    h.advance(Duration::from_secs(1), false);
    assert_eq!(h.ups(0), 0, "held: side 1's connections are refused");
    h.input(0, Input::Release);
    h.settle();
    assert_eq!(h.state(0), State::Active, "listening first");
    let released = h.now;
    while h.now < released + Duration::from_secs(10) && h.ups(0) == 0 {
        h.advance(Duration::from_millis(100), false);
    }
    assert_eq!((h.state(0), h.state(1)), (State::Established, State::Established));
    assert!(
        h.now <= released + Duration::from_millis(600),
        "dialled after half a second at most"
    );
    h.input(0, Input::Release);
    h.settle();
    assert_eq!(h.ups(0), 1, "a second release changes nothing");
}

/// Unreleased, the hold ends by itself.
#[test]
fn a_held_first_start_ends_by_itself() {
    let mut h = held_harness();
    for side in 0..2 {
        h.input(side, Input::Start);
    }
    let start = h.now;
    while h.now < start + Duration::from_secs(60) && h.ups(0) == 0 {
        h.advance(Duration::from_secs(1), false);
    }
    assert_eq!(h.ups(0), 1);
    assert!(h.now >= start + Duration::from_secs(3), "not before the hold ended");
}

/// RFC 8538 with graceful restart on both sides: a Cease that ends the
/// session in full goes out as a Hard Reset and neither side keeps the
/// other's routes.
#[test]
fn with_the_n_bit_a_shutdown_is_a_hard_reset_and_keeps_nothing() {
    let mut h = harness(true);
    h.establish();
    let n = crate::wire::Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, "node leaving");
    h.input(
        0,
        Input::Reset {
            notification: n.clone(),
            idle_hold: Some(Duration::from_secs(30)),
        },
    );
    h.settle();
    let wire = h.ends[0]
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            Message::Notification(n) => Some(n.clone()),
            _ => None,
        })
        .expect("a NOTIFICATION was sent");
    assert_eq!(wire, crate::wire::Notification::hard_reset(&n));
    assert_eq!(h.downs(0), vec![(None, 0)], "the sender keeps nothing");
    assert_eq!(h.downs(1), vec![(None, 0)], "the receiver keeps nothing");
    assert!(h.ends[1]
        .status
        .last_notification_received
        .as_deref()
        .is_some_and(|t| t.contains("hard reset") && t.contains("node leaving")));
}

/// RFC 8538 4: any other NOTIFICATION, sent or received, keeps the
/// routes as stale, as a lost connection does.
#[test]
fn with_the_n_bit_other_notifications_keep_the_routes_on_both_sides() {
    let mut h = harness(true);
    h.establish();
    let n = crate::wire::Notification::new(code::CEASE, subcode::OTHER_CONFIG_CHANGE);
    h.input(
        0,
        Input::Reset {
            notification: n.clone(),
            idle_hold: Some(Duration::from_secs(30)),
        },
    );
    h.settle();
    assert!(h.ends[0]
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::Notification(x) if *x == n)));
    let kept = Some(Duration::from_secs(120));
    assert_eq!(h.downs(0)[0], (kept, 1), "the sender keeps the peer's routes");
    assert_eq!(h.downs(1)[0], (kept, 1), "the receiver keeps the peer's routes");
}

/// Without graceful restart there is no N bit: a Cease goes out as it is
/// and ends everything.
#[test]
fn without_graceful_restart_a_cease_is_not_wrapped() {
    let mut h = harness(false);
    h.establish();
    let n = crate::wire::Notification::new(code::CEASE, subcode::PEER_DECONFIGURED);
    h.input(0, Input::Stop(n.clone()));
    h.settle();
    assert!(h.ends[0]
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::Notification(x) if *x == n)));
    assert_eq!(h.downs(1), vec![(None, 0)]);
}

#[test]
fn a_reset_with_an_idle_hold_connects_again_only_after_it() {
    let mut h = harness(false);
    h.establish();
    let n = super::prefix_limit::notification(crate::wire::Family::IPV4_UNICAST, 10);
    h.input(
        0,
        Input::Reset {
            notification: n,
            idle_hold: Some(Duration::from_secs(30)),
        },
    );
    // Side 1 reconnects on its own retry timer meanwhile: refused.
    let start = h.now;
    h.settle();
    assert_eq!(h.state(0), State::Idle);
    let mut left_idle_at = None;
    while h.now < start + Duration::from_secs(120) && h.ups(0) < 2 {
        h.advance(Duration::from_secs(1), false);
        if left_idle_at.is_none() && h.state(0) != State::Idle {
            left_idle_at = Some(h.now);
        }
    }
    let at = left_idle_at.expect("the session starts again");
    assert!(
        at >= start + Duration::from_secs(30),
        "started again {:?} after the reset",
        at - start
    );
    let refused = h.ends[0].sent.iter().filter(|(_, m)| {
        matches!(m, Message::Notification(n) if n.code == code::CEASE && n.subcode == subcode::CONNECTION_REJECTED)
    });
    assert!(
        refused.count() >= 1,
        "side 1's attempts during the idle hold were rejected"
    );
    assert_eq!(h.ups(0), 2);
}

#[test]
fn the_hold_timer_waits_while_this_side_is_not_reading() {
    let mut h = harness(false);
    h.establish();
    // Side 1 goes quiet (its messages would wait unread in our socket).
    h.wires.clear();
    let start = h.now;
    while h.now < start + Duration::from_secs(30) {
        h.advance(Duration::from_secs(1), true);
    }
    assert_eq!(h.state(0), State::Established, "no hold expiry while paused");
    while h.now < start + Duration::from_secs(60) && h.state(0) == State::Established {
        h.advance(Duration::from_secs(1), false);
    }
    assert_ne!(h.state(0), State::Established, "the hold timer runs again once reading");
    assert_eq!(h.downs(0).len(), 1);
}

/// A peer gone silent with its connection open is a dead host, not a
/// restart: with the N bit negotiated, our hold timer's NOTIFICATION still
/// keeps none of its routes.
#[test]
fn with_the_n_bit_a_silent_peer_s_routes_go_at_hold_expiry() {
    let mut h = harness(true);
    h.establish();
    h.wires.clear();
    let start = h.now;
    while h.now < start + Duration::from_secs(60) && h.state(0) == State::Established {
        h.advance(Duration::from_secs(1), false);
    }
    assert_eq!(h.downs(0), vec![(None, 0)]);
    assert!(
        matches!(&h.ends[0].down_reasons[..], [crate::fsm::DownReason::Sent(n)] if n.code == code::HOLD_TIMER_EXPIRED)
    );
}

/// Side 1 sends `update` on the established connection; what side 0 sent
/// back and handed the core.
fn deliver_update(update: crate::wire::Update) -> Harness {
    let mut h = harness(false);
    h.establish();
    let (&(_, conn0), _) = h.wires.iter().find(|((side, _), _)| *side == 0).expect("a connection");
    let bytes = crate::wire::message_bytes(&Message::Update(update), &SessionCodec::default());
    h.input(0, Input::Inbound(conn0, Inbound::Frame(bytes)));
    h.settle();
    h
}

fn route(prefix: &str, next_hop: &str, path: crate::wire::AsPath) -> crate::wire::Update {
    let nlri = vec![crate::wire::Nlri::new(prefix.parse().unwrap())];
    let attrs = crate::wire::PathAttributes {
        origin: crate::wire::Origin::Igp,
        as_path: path,
        next_hop: Some("10.0.0.2".parse().unwrap()),
        ..Default::default()
    };
    let nh: IpAddr = next_hop.parse().unwrap();
    if prefix.contains(':') || nh.is_ipv6() {
        let family = if prefix.contains(':') {
            crate::wire::Family::IPV6_UNICAST
        } else {
            crate::wire::Family::IPV4_UNICAST
        };
        crate::wire::Update {
            attrs,
            mp_reach: Some(crate::wire::MpReach {
                family,
                next_hop: crate::wire::MpNextHop {
                    global: nh,
                    link_local: None,
                },
                nlri,
            }),
            ..Default::default()
        }
    } else {
        crate::wire::Update {
            attrs,
            nlri,
            ..Default::default()
        }
    }
}

fn update_error_sent(h: &Harness) -> Option<u8> {
    h.ends[0].sent.iter().find_map(|(_, m)| match m {
        Message::Notification(n) if n.code == code::UPDATE => Some(n.subcode),
        _ => None,
    })
}

#[test]
fn routes_of_a_family_not_negotiated_reset_the_session() {
    let h = deliver_update(route(
        "2001:db8::/32",
        "2001:db8::1",
        crate::wire::AsPath::from_sequence(vec![AS_B]),
    ));
    assert_eq!(update_error_sent(&h), Some(subcode::OPTIONAL_ATTRIBUTE));
    assert_eq!(h.downs(0).len(), 1);
    assert!(h.ends[0].routes.is_empty(), "nothing reached the core");
}

#[test]
fn ipv4_routes_with_an_ipv6_next_hop_need_extended_next_hop() {
    let h = deliver_update(route(
        "192.0.2.0/24",
        "2001:db8::1",
        crate::wire::AsPath::from_sequence(vec![AS_B]),
    ));
    assert_eq!(update_error_sent(&h), Some(subcode::OPTIONAL_ATTRIBUTE));
    assert!(h.ends[0].routes.is_empty());
}

#[test]
fn confederation_segments_from_an_external_peer_are_treated_as_withdraw() {
    let path = crate::wire::AsPath {
        segments: vec![
            crate::wire::AsSegment {
                kind: crate::wire::SegmentKind::ConfedSequence,
                asns: vec![64512],
            },
            crate::wire::AsSegment {
                kind: crate::wire::SegmentKind::Sequence,
                asns: vec![AS_B],
            },
        ],
    };
    let h = deliver_update(route("192.0.2.0/24", "10.0.0.2", path));
    assert_eq!(update_error_sent(&h), None, "the session stays");
    assert_eq!(h.state(0), State::Established);
    match h.ends[0].routes.as_slice() {
        [RouteEvent::Routes { announce, withdraw, .. }] => {
            assert!(announce.is_empty());
            assert_eq!(withdraw.len(), 1);
        }
        other => panic!("expected one withdrawal batch, got {} events", other.len()),
    }
}

#[test]
fn a_well_formed_route_reaches_the_core() {
    let h = deliver_update(route(
        "192.0.2.0/24",
        "10.0.0.2",
        crate::wire::AsPath::from_sequence(vec![AS_B]),
    ));
    assert_eq!(update_error_sent(&h), None);
    assert!(matches!(h.ends[0].routes.as_slice(), [RouteEvent::Routes { announce, .. }] if announce.len() == 1));
}
