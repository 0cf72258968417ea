//! The session FSM with a scripted clock: two sessions talking to each
//! other come Up, negotiate timers, detect silence, run poll sequences.

use novanet_bfd::packet::{diag, ControlPacket, State};
use novanet_bfd::session::*;
use std::time::{Duration, Instant};

fn cfg(tx: u64, rx: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(tx),
        required_min_rx: Duration::from_millis(rx),
        detect_mult: mult,
        passive: false,
        auth: None,
    }
}

/// Two sessions wired back to back, with a virtual clock.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    /// Drop packets from a to b (a silenced link).
    drop_a_to_b: bool,
    changes: Vec<(char, State, State, u8)>,
    /// Sessions whose change came from a restarted neighbor.
    neighbor_restarts: Vec<char>,
    /// Sessions whose change came from the neighbor's AdminDown.
    neighbor_admin_downs: Vec<char>,
}

impl Pair {
    fn new(ca: SessionConfig, cb: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(ca, 11, now),
            b: Session::new(cb, 22, now),
            now,
            drop_a_to_b: false,
            changes: Vec::new(),
            neighbor_restarts: Vec::new(),
            neighbor_admin_downs: Vec::new(),
        }
    }

    fn deliver(&mut self, from: char, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send(p) => {
                    if from == 'a' && self.drop_a_to_b {
                        continue;
                    }
                    let (to, name) = if from == 'a' {
                        (&mut self.b, 'b')
                    } else {
                        (&mut self.a, 'a')
                    };
                    let raw = encode(&p, to);
                    if let Ok(more) = to.handle_packet(&p, &raw, self.now) {
                        self.deliver(name, more);
                    }
                }
                Output::StateChanged {
                    from: f,
                    to: t,
                    diag: d,
                    neighbor_restarted,
                    neighbor_admin_down,
                } => {
                    self.changes.push((from, f, t, d));
                    if neighbor_restarted {
                        self.neighbor_restarts.push(from);
                    }
                    if neighbor_admin_down {
                        self.neighbor_admin_downs.push(from);
                    }
                }
            }
        }
    }

    /// Runs the clock forward in 1 ms steps.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let oa = self.a.on_timer(self.now);
            self.deliver('a', oa);
            let ob = self.b.on_timer(self.now);
            self.deliver('b', ob);
        }
    }
}

fn encode(p: &ControlPacket, _to: &Session) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    p.encode(&[], &mut b);
    b.to_vec()
}

#[test]
fn two_sessions_come_up_and_negotiate_asymmetric_timers() {
    let mut p = Pair::new(cfg(100, 300, 3), cfg(200, 50, 5));
    p.run(Duration::from_secs(3));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
    // a sends at max(its 100, b's required 50) = 100 ms; b at max(200, 300).
    assert_eq!(p.a.tx_interval(), Duration::from_millis(100));
    assert_eq!(p.b.tx_interval(), Duration::from_millis(300));
    // a detects b after 5 x max(a's rx 300, b's tx 200) = ... b's mult is 5.
    assert_eq!(p.a.detection_time(), Duration::from_millis(5 * 300));
    assert_eq!(p.b.detection_time(), Duration::from_millis(3 * 100));
    // Down -> Init -> Up on one side, Down -> Up on the other.
    assert!(p.changes.iter().any(|c| c.2 == State::Up));
}

#[test]
fn slow_rate_until_up() {
    let now = Instant::now();
    let mut s = Session::new(cfg(50, 50, 3), 1, now);
    let out = s.on_timer(now);
    let Some(Output::Send(pkt)) = out.first() else {
        panic!("first packet at once")
    };
    assert_eq!(pkt.desired_min_tx, 1_000_000, "at least one second while not Up");
    assert_eq!(pkt.your_discriminator, 0);
    assert_eq!(pkt.state, State::Down);
}

#[test]
fn silence_is_detected_within_the_detection_time() {
    let mut p = Pair::new(cfg(100, 100, 3), cfg(100, 100, 3));
    p.run(Duration::from_secs(3));
    assert_eq!(p.b.state(), State::Up);
    p.changes.clear();
    p.drop_a_to_b = true;
    let silenced_at = p.now;
    p.run(Duration::from_millis(400));
    assert_eq!(p.b.state(), State::Down);
    let (who, _, to, d) = p.changes.iter().find(|c| c.0 == 'b').copied().unwrap();
    assert_eq!((who, to, d), ('b', State::Down, diag::CONTROL_DETECTION_TIME_EXPIRED));
    // b then tells a, which goes down too (neighbor signaled down).
    assert!(p
        .changes
        .iter()
        .any(|c| c.0 == 'a' && c.2 == State::Down && c.3 == diag::NEIGHBOR_SIGNALED_DOWN));
    let _ = silenced_at;
    // Recovery when the drop is lifted.
    p.drop_a_to_b = false;
    p.run(Duration::from_secs(4));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
}

#[test]
fn detection_takes_no_longer_than_multiplier_times_interval() {
    let mut p = Pair::new(cfg(50, 50, 3), cfg(50, 50, 3));
    p.run(Duration::from_secs(3));
    p.drop_a_to_b = true;
    p.run(Duration::from_millis(149));
    // Up to 150 ms after the last packet; a packet may have left just before.
    p.run(Duration::from_millis(60));
    assert_eq!(p.b.state(), State::Down);
}

#[test]
fn poll_sequence_changes_timers() {
    let mut p = Pair::new(cfg(300, 300, 3), cfg(300, 300, 3));
    p.run(Duration::from_secs(3));
    p.a.set_timers(Duration::from_millis(50), Duration::from_millis(50), 3);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.tx_interval(), Duration::from_millis(300), "b still requires 300 ms");
    p.b.set_timers(Duration::from_millis(50), Duration::from_millis(50), 3);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.tx_interval(), Duration::from_millis(50));
    assert_eq!(p.b.tx_interval(), Duration::from_millis(50));
    assert_eq!(p.b.detection_time(), Duration::from_millis(150));
    assert_eq!(
        (p.a.state(), p.b.state()),
        (State::Up, State::Up),
        "no flap during the change"
    );
}

#[test]
fn passive_session_waits_for_the_peer() {
    let now = Instant::now();
    let mut passive = cfg(100, 100, 3);
    passive.passive = true;
    let mut s = Session::new(passive, 5, now);
    assert!(s.on_timer(now + Duration::from_secs(5)).is_empty());
    let mut p = Pair::new(
        cfg(100, 100, 3),
        SessionConfig {
            passive: true,
            ..cfg(100, 100, 3)
        },
    );
    p.run(Duration::from_secs(4));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
}

#[test]
fn admin_down_is_signalled_and_not_taken_as_failure() {
    let mut p = Pair::new(cfg(100, 100, 3), cfg(100, 100, 3));
    p.run(Duration::from_secs(3));
    let out = p.a.set_admin_down(true, p.now);
    p.deliver('a', out);
    assert_eq!(p.a.state(), State::AdminDown);
    assert_eq!(p.b.state(), State::Down);
    assert!(p
        .changes
        .iter()
        .any(|c| c.0 == 'b' && c.3 == diag::NEIGHBOR_SIGNALED_DOWN));
    // The change says so, for the client not to take it as a failure
    // (RFC 5882 section 3.2).
    assert_eq!(p.neighbor_admin_downs, ['b']);
    assert!(p.neighbor_restarts.is_empty());
}

#[test]
fn authentication_must_match() {
    let key = AuthConfig::KeyedSha1 {
        key_id: 1,
        key: b"k1".to_vec(),
        meticulous: true,
    };
    let now = Instant::now();
    let mut a = Session::new(
        SessionConfig {
            auth: Some(key.clone()),
            ..cfg(100, 100, 3)
        },
        1,
        now,
    );
    let mut b = Session::new(
        SessionConfig {
            auth: Some(key),
            ..cfg(100, 100, 3)
        },
        2,
        now,
    );
    let mut plain = Session::new(cfg(100, 100, 3), 3, now);
    let Some(Output::Send(pkt)) = a.on_timer(now).into_iter().next() else {
        panic!()
    };
    let mut raw = bytes::BytesMut::new();
    pkt.encode(a.signing_key(), &mut raw);
    assert!(b.handle_packet(&pkt, &raw, now).is_ok());
    // Replayed: the same sequence number is refused (meticulous).
    assert_eq!(b.handle_packet(&pkt, &raw, now), Err(Discard::AuthMismatch));
    assert_eq!(plain.handle_packet(&pkt, &raw, now), Err(Discard::AuthMismatch));
    let mut wrong = Session::new(
        SessionConfig {
            auth: Some(AuthConfig::KeyedSha1 {
                key_id: 1,
                key: b"k2".to_vec(),
                meticulous: true,
            }),
            ..cfg(100, 100, 3)
        },
        4,
        now,
    );
    assert_eq!(wrong.handle_packet(&pkt, &raw, now), Err(Discard::AuthMismatch));
}

#[test]
fn packets_for_other_sessions_are_discarded() {
    let now = Instant::now();
    let mut s = Session::new(cfg(100, 100, 3), 1, now);
    let mut p = ControlPacket {
        diag: 0,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        multipoint: false,
        detect_mult: 3,
        my_discriminator: 9,
        your_discriminator: 0,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
        auth: None,
    };
    assert_eq!(s.handle_packet(&p, &[], now), Err(Discard::ZeroYourDiscriminator));
    p.your_discriminator = 77;
    assert_eq!(s.handle_packet(&p, &[], now), Err(Discard::WrongDiscriminator));
}

#[test]
fn a_restarted_neighbor_is_told_apart_from_a_failed_path() {
    let mut p = Pair::new(cfg(50, 50, 3), cfg(50, 50, 3));
    p.run(Duration::from_secs(3));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
    // b's process restarts: a new session with a new discriminator that
    // signals Down before a's detection time runs out.
    p.b = Session::new(cfg(50, 50, 3), 33, p.now);
    p.changes.clear();
    p.run(Duration::from_millis(100));
    let a_down = p.changes.iter().find(|c| c.0 == 'a' && c.2 == State::Down).copied();
    assert_eq!(
        a_down,
        Some(('a', State::Up, State::Down, diag::NEIGHBOR_SIGNALED_DOWN))
    );
    assert_eq!(p.neighbor_restarts, vec!['a'], "only a's Down came from a restart");
    p.run(Duration::from_secs(3));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up), "up again");

    // A silenced path is a failure, not a restart.
    p.neighbor_restarts.clear();
    p.drop_a_to_b = true;
    p.run(Duration::from_secs(1));
    assert_eq!(p.b.state(), State::Down);
    assert!(p.neighbor_restarts.is_empty(), "{:?}", p.neighbor_restarts);
}

#[test]
fn a_session_back_up_sends_at_the_fast_rate_at_once() {
    let mut p = Pair::new(cfg(50, 50, 3), cfg(50, 50, 3));
    p.run(Duration::from_secs(3));
    assert_eq!(p.b.tx_interval(), Duration::from_millis(50));
    // The path fails: both go Down and fall back to the slow rate.
    p.drop_a_to_b = true;
    p.run(Duration::from_secs(2));
    assert_eq!(p.b.state(), State::Down);
    assert!(p.b.tx_interval() >= Duration::from_secs(1), "slow while Down");
    // The path is back: the moment each side is Up again it sends at the
    // negotiated 50 ms, without waiting for a poll sequence.
    p.drop_a_to_b = false;
    p.changes.clear();
    let end = p.now + Duration::from_secs(5);
    while p.now < end && !(p.a.state() == State::Up && p.b.state() == State::Up) {
        p.run(Duration::from_millis(1));
    }
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
    assert_eq!(
        p.a.tx_interval(),
        Duration::from_millis(50),
        "a at the fast rate once Up"
    );
    assert_eq!(
        p.b.tx_interval(),
        Duration::from_millis(50),
        "b at the fast rate once Up"
    );
}

/// A neighbor's packet as FRR sends it: (state, its required min rx in ms).
fn from_neighbor(state: State, your: u32, rx_ms: u32) -> ControlPacket {
    ControlPacket {
        diag: diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        multipoint: false,
        detect_mult: 3,
        my_discriminator: 77,
        your_discriminator: your,
        desired_min_tx: rx_ms * 1000,
        required_min_rx: rx_ms * 1000,
        required_min_echo_rx: 0,
        auth: None,
    }
}

#[test]
fn a_neighbor_asking_for_packets_sooner_gets_the_next_one_sooner() {
    // FRR's Init asks for packets every second; once Up, every 100 ms. The
    // packet planned at the Init rate must not be waited for: FRR's
    // detection time is then 300 ms.
    let mut now = Instant::now();
    let mut a = Session::new(cfg(100, 100, 3), 11, now);
    let init = from_neighbor(State::Init, 11, 1000);
    let raw = encode(&init, &a);
    a.handle_packet(&init, &raw, now).unwrap();
    assert_eq!(a.state(), State::Up);
    now += Duration::from_millis(1);
    let up = from_neighbor(State::Up, 11, 100);
    let raw = encode(&up, &a);
    a.handle_packet(&up, &raw, now).unwrap();
    let start = now;
    let mut sent_at = None;
    while now < start + Duration::from_secs(1) && sent_at.is_none() {
        now += Duration::from_millis(1);
        if a.on_timer(now).iter().any(|o| matches!(o, Output::Send(_))) {
            sent_at = Some(now - start);
        }
    }
    let sent_at = sent_at.expect("a packet within a second");
    assert!(sent_at <= Duration::from_millis(100), "next packet after {sent_at:?}");
}
