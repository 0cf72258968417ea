//! The session FSM driven by scripted events and a scripted clock.

use novanet_bgp::fsm::*;
use novanet_bgp::wire::error::{code, subcode};
use novanet_bgp::wire::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn config(passive: bool) -> FsmConfig {
    FsmConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(10, 0, 0, 10),
        remote_as: 65000,
        hold_time: 9,
        keepalive: None,
        connect_retry: Duration::from_secs(5),
        passive,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65010),
        ],
    }
}

fn peer_open(asn: u32, hold: u16) -> Open {
    Open {
        version: 4,
        asn,
        hold_time: hold,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(asn),
        ],
    }
}

fn sends_open(a: &[Action]) -> bool {
    a.iter().any(|x| matches!(x, Action::Send(Message::Open(_))))
}

fn sent_notification(a: &[Action]) -> Option<(u8, u8)> {
    a.iter().find_map(|x| match x {
        Action::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

/// Drives a session to Established; returns the FSM and the clock.
fn established() -> (Fsm, Instant) {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    assert_eq!(f.handle(Event::Start, t0), vec![Action::Connect]);
    assert_eq!(f.state(), State::Connect);
    assert!(sends_open(&f.handle(Event::TcpConnected, t0)));
    assert_eq!(f.state(), State::OpenSent);
    let a = f.handle(Event::Message(Message::Open(peer_open(65000, 30))), t0);
    assert_eq!(a, vec![Action::Send(Message::Keepalive)]);
    assert_eq!(f.state(), State::OpenConfirm);
    let a = f.handle(Event::Message(Message::Keepalive), t0);
    assert!(matches!(a.as_slice(), [Action::Established(_)]));
    assert_eq!(f.state(), State::Established);
    (f, t0)
}

#[test]
fn active_open_to_established_negotiates() {
    let (f, _) = established();
    let n = f.negotiated().unwrap();
    assert_eq!(n.hold_time, 9, "the lower hold time wins");
    assert_eq!(n.keepalive, 3);
    assert!(n.codec.four_octet_as && n.route_refresh);
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
}

#[test]
fn passive_peer_waits_for_the_connection() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(true));
    assert!(f.handle(Event::Start, t0).is_empty());
    assert_eq!(f.state(), State::Active);
    // Connect-retry expiry keeps a passive peer waiting, never connecting.
    let a = f.on_tick(t0 + Duration::from_secs(6));
    assert!(a.is_empty());
    assert_eq!(f.state(), State::Active);
    assert!(sends_open(&f.handle(Event::TcpConnected, t0)));
}

#[test]
fn connect_failure_retries_after_the_connect_retry_timer() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    f.handle(Event::Start, t0);
    assert!(f.handle(Event::TcpFailed, t0).is_empty());
    assert_eq!(f.state(), State::Active);
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert!(f.on_tick(t0 + Duration::from_secs(4)).is_empty());
    assert_eq!(f.on_tick(t0 + Duration::from_secs(5)), vec![Action::Connect]);
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn keepalive_timer_sends_keepalives() {
    let (mut f, t0) = established();
    assert!(f.on_tick(t0 + Duration::from_secs(2)).is_empty());
    assert_eq!(
        f.on_tick(t0 + Duration::from_secs(3)),
        vec![Action::Send(Message::Keepalive)]
    );
    assert_eq!(
        f.on_tick(t0 + Duration::from_secs(6)),
        vec![Action::Send(Message::Keepalive)]
    );
}

#[test]
fn hold_timer_expiry_closes_with_notification() {
    let (mut f, t0) = established();
    // Traffic before the deadline restarts the hold timer.
    f.handle(Event::Message(Message::Keepalive), t0 + Duration::from_secs(8));
    let a = f.on_tick(t0 + Duration::from_secs(10));
    assert_eq!(sent_notification(&a), None, "hold timer was restarted at 8 s");
    let a = f.on_tick(t0 + Duration::from_secs(17));
    assert_eq!(sent_notification(&a), Some((code::HOLD_TIMER_EXPIRED, 0)));
    assert!(a.contains(&Action::Disconnect));
    assert!(a.iter().any(|x| matches!(x, Action::Down(DownReason::Sent(_)))));
    assert_eq!(f.state(), State::Idle);
    // Automatic restart after connect-retry.
    assert_eq!(f.on_tick(t0 + Duration::from_secs(30)), vec![Action::Connect]);
}

#[test]
fn hold_timer_in_opensent_is_four_minutes() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    f.handle(Event::Start, t0);
    f.handle(Event::TcpConnected, t0);
    assert_eq!(f.next_deadline(), Some(t0 + OPEN_HOLD_TIME));
    let a = f.on_tick(t0 + OPEN_HOLD_TIME);
    assert_eq!(sent_notification(&a), Some((code::HOLD_TIMER_EXPIRED, 0)));
}

#[test]
fn zero_hold_time_runs_no_timers() {
    let t0 = Instant::now();
    let mut cfg = config(false);
    cfg.hold_time = 0;
    let mut f = Fsm::new(cfg);
    f.handle(Event::Start, t0);
    f.handle(Event::TcpConnected, t0);
    f.handle(Event::Message(Message::Open(peer_open(65000, 0))), t0);
    f.handle(Event::Message(Message::Keepalive), t0);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn wrong_peer_as_is_refused() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    f.handle(Event::Start, t0);
    f.handle(Event::TcpConnected, t0);
    let a = f.handle(Event::Message(Message::Open(peer_open(65099, 90))), t0);
    assert_eq!(sent_notification(&a), Some((code::OPEN, subcode::BAD_PEER_AS)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    f.handle(Event::Start, t0);
    f.handle(Event::TcpConnected, t0);
    let a = f.handle(Event::Message(Message::Update(Update::default())), t0);
    assert_eq!(
        sent_notification(&a),
        Some((code::FSM, subcode::FSM_UNEXPECTED_IN_OPENSENT))
    );

    let (mut f, t0) = established();
    let a = f.handle(Event::Message(Message::Open(peer_open(65000, 90))), t0);
    assert_eq!(
        sent_notification(&a),
        Some((code::FSM, subcode::FSM_UNEXPECTED_IN_ESTABLISHED))
    );
}

#[test]
fn updates_and_refresh_are_delivered_when_established() {
    let (mut f, t0) = established();
    let a = f.handle(Event::Message(Message::Update(Update::default())), t0);
    assert!(matches!(a.as_slice(), [Action::Deliver(_)]));
    let rr = RouteRefresh {
        family: Family::IPV4_UNICAST,
        subtype: RefreshSubtype::Request,
    };
    assert_eq!(
        f.handle(Event::Message(Message::RouteRefresh(rr)), t0),
        vec![Action::RefreshRequested(rr)]
    );
}

#[test]
fn notification_from_peer_ends_the_session() {
    let (mut f, t0) = established();
    let n = Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, "bye");
    let a = f.handle(Event::Message(Message::Notification(n.clone())), t0);
    assert_eq!(a, vec![Action::Disconnect, Action::Down(DownReason::Received(n))]);
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn decode_error_sends_its_notification() {
    let (mut f, t0) = established();
    let e = DecodeError::update(
        ErrorKind::MalformedMpReach,
        subcode::OPTIONAL_ATTRIBUTE,
        ErrorAction::SessionReset,
    );
    let a = f.handle(Event::Malformed(Notification::from_error(&e, &[])), t0);
    assert_eq!(sent_notification(&a), Some((code::UPDATE, subcode::OPTIONAL_ATTRIBUTE)));
}

#[test]
fn stop_sends_cease_and_stays_down() {
    let (mut f, t0) = established();
    let n = Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, "maintenance");
    let a = f.handle(Event::Stop(n.clone()), t0);
    assert_eq!(
        a,
        vec![
            Action::Send(Message::Notification(n.clone())),
            Action::Disconnect,
            Action::Down(DownReason::Sent(n))
        ]
    );
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.next_deadline(), None, "no automatic restart after a stop");
    assert_eq!(f.handle(Event::TcpConnected, t0), vec![Action::Disconnect]);
}

#[test]
fn transport_loss_when_established_reports_connection_lost() {
    let (mut f, t0) = established();
    let a = f.handle(Event::TcpFailed, t0);
    assert_eq!(a, vec![Action::Disconnect, Action::Down(DownReason::ConnectionLost)]);
}

#[test]
fn accepted_connection_starts_the_session() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    assert!(sends_open(&f.start_with_connection(t0)));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn two_octet_peer_negotiates_two_octet_codec() {
    let t0 = Instant::now();
    let mut f = Fsm::new(config(false));
    f.handle(Event::Start, t0);
    f.handle(Event::TcpConnected, t0);
    let mut open = peer_open(65000, 90);
    open.capabilities.retain(|c| !matches!(c, Capability::FourOctetAs(_)));
    f.handle(Event::Message(Message::Open(open)), t0);
    assert!(!f.negotiated().unwrap().codec.four_octet_as);
}

#[test]
fn collision_keeps_the_higher_identifiers_connection() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 10);
    // We have the higher id: our outbound connection survives.
    assert_eq!(resolve_collision(high, low, true), CollisionWinner::Existing);
    assert_eq!(resolve_collision(high, low, false), CollisionWinner::New);
    // The peer has the higher id: its connection survives.
    assert_eq!(resolve_collision(low, high, true), CollisionWinner::New);
    assert_eq!(resolve_collision(low, high, false), CollisionWinner::Existing);
    let n = collision_notification();
    assert_eq!((n.code, n.subcode), (code::CEASE, subcode::CONNECTION_COLLISION));
}

#[test]
fn collision_script_two_connections() {
    // Our outbound session reached OpenConfirm; the peer (higher id)
    // connects too. The peer's connection must win.
    let t0 = Instant::now();
    let mut ours = Fsm::new(config(false));
    ours.handle(Event::Start, t0);
    ours.handle(Event::TcpConnected, t0);
    let mut open = peer_open(65000, 90);
    open.router_id = Ipv4Addr::new(10, 0, 0, 200);
    ours.handle(Event::Message(Message::Open(open.clone())), t0);
    assert_eq!(ours.state(), State::OpenConfirm);
    let mut theirs = Fsm::new(config(false));
    theirs.start_with_connection(t0);
    let remote_id = ours.remote_open().unwrap().router_id;
    let winner = resolve_collision(ours.config().router_id, remote_id, true);
    assert_eq!(winner, CollisionWinner::New);
    let a = ours.handle(Event::Stop(collision_notification()), t0);
    assert_eq!(
        sent_notification(&a),
        Some((code::CEASE, subcode::CONNECTION_COLLISION))
    );
    theirs.handle(Event::Message(Message::Open(open)), t0);
    theirs.handle(Event::Message(Message::Keepalive), t0);
    assert_eq!(theirs.state(), State::Established);
}

#[test]
fn scripted_sequences_never_panic() {
    use proptest::prelude::*;
    let events = prop::collection::vec(0u8..9, 0..60);
    proptest!(|(script in events)| {
        let t0 = Instant::now();
        let mut f = Fsm::new(config(false));
        for (i, e) in script.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64 * 2);
            let ev = match e {
                0 => Event::Start,
                1 => Event::TcpConnected,
                2 => Event::TcpFailed,
                3 => Event::Message(Message::Open(peer_open(65000, 9))),
                4 => Event::Message(Message::Keepalive),
                5 => Event::Message(Message::Update(Update::default())),
                6 => Event::Stop(Notification::new(6, 2)),
                7 => Event::Message(Message::Notification(Notification::new(6, 4))),
                _ => { f.on_tick(now); continue; }
            };
            let actions = f.handle(ev, now);
            // Established is only ever announced from OpenConfirm.
            if actions.iter().any(|a| matches!(a, Action::Established(_))) {
                prop_assert_eq!(f.state(), State::Established);
            }
        }
    });
}
