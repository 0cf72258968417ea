//! One BFD session's state machine (RFC 5880 section 6), sans-IO: received
//! packets and the current time go in, packets to send and state changes
//! come out; timers are deadlines read with [`Session::next_deadline`].

use crate::packet::{diag, verify_sha1, Auth, ControlPacket, State};
use std::time::{Duration, Instant};

/// Transmit interval while the session is not Up (RFC 5880 6.8.3: at least
/// one second).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Authentication of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    SimplePassword { key_id: u8, password: Vec<u8> },
    KeyedSha1 { key_id: u8, key: Vec<u8>, meticulous: bool },
}

/// A session's timers and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
    /// Send nothing until the peer has spoken (RFC 5880 6.1).
    pub passive: bool,
    pub auth: Option<AuthConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
            auth: None,
        }
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(ControlPacket),
    /// `neighbor_restarted`: the change came from a packet of a new
    /// incarnation of the neighbor (its discriminator changed), that is its
    /// BFD restarted rather than the path failing. `neighbor_admin_down`:
    /// the neighbor took its session down administratively, which RFC 5882
    /// section 3.2 says is no failure of the path.
    StateChanged {
        from: State,
        to: State,
        diag: u8,
        neighbor_restarted: bool,
        neighbor_admin_down: bool,
    },
}

/// What the neighbor's packet said about a change of state.
#[derive(Debug, Clone, Copy, Default)]
struct Why {
    neighbor_restarted: bool,
    neighbor_admin_down: bool,
}

/// Why a packet was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    WrongDiscriminator,
    ZeroYourDiscriminator,
    AuthMismatch,
    AdminDown,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn from_us(v: u32) -> Duration {
    Duration::from_micros(v as u64)
}

/// One session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    local_diag: u8,
    local_discr: u32,
    remote_discr: u32,
    remote_state: State,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// DesiredMinTx, RequiredMinRx and DetectMult currently in effect.
    tx_in_effect: Duration,
    rx_in_effect: Duration,
    mult_in_effect: u8,
    poll_active: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    tx_seq: u32,
    rx_seq: Option<u32>,
    rng: u64,
}

impl Session {
    pub fn new(config: SessionConfig, local_discr: u32, now: Instant) -> Session {
        let mut s = Session {
            tx_in_effect: config.desired_min_tx.max(SLOW_TX),
            rx_in_effect: config.required_min_rx,
            mult_in_effect: config.detect_mult.max(1),
            config,
            state: State::Down,
            local_diag: diag::NONE,
            local_discr,
            remote_discr: 0,
            remote_state: State::Down,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_mult: 0,
            poll_active: false,
            next_tx: None,
            detect_at: None,
            tx_seq: local_discr,
            rx_seq: None,
            rng: (local_discr as u64) << 32 | 0x9e37_79b9,
        };
        if !s.config.passive {
            s.next_tx = Some(now);
        }
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn local_diag(&self) -> u8 {
        self.local_diag
    }

    /// The interval packets are sent at (before jitter).
    pub fn tx_interval(&self) -> Duration {
        self.tx_in_effect.max(self.remote_min_rx)
    }

    /// How long without a packet before the session goes down.
    pub fn detection_time(&self) -> Duration {
        self.rx_in_effect.max(self.remote_desired_tx) * self.remote_mult.max(1) as u32
    }

    /// The peer's advertised timers: (desired min tx, required min rx,
    /// detect multiplier).
    pub fn remote_timers(&self) -> (Duration, Duration, u8) {
        (self.remote_desired_tx, self.remote_min_rx, self.remote_mult)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.next_tx, self.detect_at].into_iter().flatten().min()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: jitter only, not security.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next transmission time: 75-100% of the interval (75-90% with a
    /// detect multiplier of 1), RFC 5880 6.8.7.
    fn schedule_tx(&mut self, now: Instant) {
        if self.config.passive && self.remote_discr == 0 {
            self.next_tx = None;
            return;
        }
        let interval = self.tx_interval();
        let top = if self.mult_in_effect == 1 { 90 } else { 100 };
        let pct = 75 + self.next_random() % (top - 75 + 1);
        self.next_tx = Some(now + interval * pct as u32 / 100);
    }

    fn packet(&mut self, poll: bool, final_: bool) -> ControlPacket {
        let auth = self.config.auth.clone().map(|a| match a {
            AuthConfig::SimplePassword { key_id, password } => Auth::SimplePassword { key_id, password },
            AuthConfig::KeyedSha1 { key_id, meticulous, .. } => {
                self.tx_seq = self.tx_seq.wrapping_add(1);
                Auth::KeyedSha1 {
                    key_id,
                    sequence: self.tx_seq,
                    digest: [0; 20],
                    meticulous,
                }
            }
        });
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            multipoint: false,
            detect_mult: self.mult_in_effect,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: us(self.advertised_tx()),
            required_min_rx: us(self.rx_in_effect),
            required_min_echo_rx: 0,
            auth,
        }
    }

    /// DesiredMinTx as advertised: the configured one when Up, at least a
    /// second otherwise.
    fn advertised_tx(&self) -> Duration {
        self.tx_in_effect
    }

    /// The key used to sign packets (keyed SHA1), empty otherwise.
    pub fn signing_key(&self) -> &[u8] {
        match &self.config.auth {
            Some(AuthConfig::KeyedSha1 { key, .. }) => key,
            _ => &[],
        }
    }

    fn set_state(&mut self, to: State, diag_code: u8, out: &mut Vec<Output>) {
        self.set_state_by(to, diag_code, Why::default(), out);
    }

    fn set_state_by(&mut self, to: State, diag_code: u8, why: Why, out: &mut Vec<Output>) {
        if self.state == to {
            return;
        }
        let from = self.state;
        self.state = to;
        self.local_diag = diag_code;
        out.push(Output::StateChanged {
            from,
            to,
            diag: diag_code,
            neighbor_restarted: why.neighbor_restarted,
            neighbor_admin_down: why.neighbor_admin_down,
        });
        if to == State::Up {
            // Now at the configured rate: a decrease takes effect at once;
            // the peer learns it through a poll sequence.
            if self.tx_in_effect != self.config.desired_min_tx {
                self.tx_in_effect = self.config.desired_min_tx.min(self.tx_in_effect);
                self.poll_active = true;
            }
        } else if self.tx_in_effect < SLOW_TX {
            self.tx_in_effect = SLOW_TX;
        }
    }

    fn check_auth(&mut self, pkt: &ControlPacket, raw: &[u8]) -> bool {
        match (&self.config.auth, &pkt.auth) {
            (None, None) => true,
            (
                Some(AuthConfig::SimplePassword { key_id, password }),
                Some(Auth::SimplePassword { key_id: k, password: p }),
            ) => key_id == k && password == p,
            (
                Some(AuthConfig::KeyedSha1 {
                    key_id,
                    key,
                    meticulous,
                }),
                Some(Auth::KeyedSha1 {
                    key_id: k,
                    sequence,
                    meticulous: m,
                    ..
                }),
            ) => {
                if key_id != k || meticulous != m || !verify_sha1(raw, key) {
                    return false;
                }
                // Replay protection (RFC 5880 6.7.4): within 3 x multiplier.
                let window = 3 * self.remote_mult.max(pkt.detect_mult) as u32;
                let ok = match self.rx_seq {
                    None => true,
                    Some(last) => {
                        let ahead = sequence.wrapping_sub(last);
                        if *meticulous {
                            ahead >= 1 && ahead <= window
                        } else {
                            ahead <= window
                        }
                    }
                };
                if ok {
                    self.rx_seq = Some(*sequence);
                }
                ok
            }
            _ => false,
        }
    }

    /// Takes a received control packet (RFC 5880 6.8.6). `raw` is the
    /// packet as received (needed to check a keyed SHA1 digest).
    pub fn handle_packet(&mut self, pkt: &ControlPacket, raw: &[u8], now: Instant) -> Result<Vec<Output>, Discard> {
        if pkt.your_discriminator == 0 && !matches!(pkt.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroYourDiscriminator);
        }
        if pkt.your_discriminator != 0 && pkt.your_discriminator != self.local_discr {
            return Err(Discard::WrongDiscriminator);
        }
        if !self.check_auth(pkt, raw) {
            return Err(Discard::AuthMismatch);
        }
        let mut out = Vec::new();
        let was_silent = self.remote_discr == 0;
        let neighbor_restarted = !was_silent && pkt.my_discriminator != self.remote_discr;
        self.remote_discr = pkt.my_discriminator;
        self.remote_state = pkt.state;
        self.remote_min_rx = from_us(pkt.required_min_rx);
        self.remote_desired_tx = from_us(pkt.desired_min_tx);
        self.remote_mult = pkt.detect_mult;
        if pkt.final_ && self.poll_active {
            self.poll_active = false;
            self.tx_in_effect = if self.state == State::Up {
                self.config.desired_min_tx
            } else {
                self.config.desired_min_tx.max(SLOW_TX)
            };
            self.rx_in_effect = self.config.required_min_rx;
            self.mult_in_effect = self.config.detect_mult.max(1);
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        if pkt.state == State::AdminDown {
            if self.state != State::Down {
                let why = Why {
                    neighbor_admin_down: true,
                    ..Why::default()
                };
                self.set_state_by(State::Down, diag::NEIGHBOR_SIGNALED_DOWN, why, &mut out);
            }
        } else {
            match (self.state, pkt.state) {
                (State::Down, State::Down) => self.set_state(State::Init, diag::NONE, &mut out),
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.set_state(State::Up, diag::NONE, &mut out)
                }
                (State::Up, State::Down) => {
                    let why = Why {
                        neighbor_restarted,
                        ..Why::default()
                    };
                    self.set_state_by(State::Down, diag::NEIGHBOR_SIGNALED_DOWN, why, &mut out)
                }
                _ => {}
            }
        }
        if pkt.poll {
            out.push(Output::Send(self.packet(false, true)));
        }
        // The neighbor may now want packets sooner than the one scheduled
        // (its Init asks for 1 s, its Up for the configured interval):
        // a packet planned at the old rate would outlast its detection
        // time.
        if self.next_tx.is_some_and(|t| t > now + self.tx_interval()) {
            self.schedule_tx(now);
        }
        if pkt.detect_mult > 0 {
            self.detect_at = Some(now + self.detection_time());
        }
        // A passive session starts sending once the peer has spoken; a
        // state change is told at once rather than at the next interval.
        let changed = out.iter().any(|o| matches!(o, Output::StateChanged { .. }));
        if (was_silent && self.config.passive) || changed {
            let poll = self.poll_active;
            out.push(Output::Send(self.packet(poll, false)));
            self.schedule_tx(now);
        } else if self.next_tx.is_none() {
            self.schedule_tx(now);
        }
        Ok(out)
    }

    /// Fires the timers due by `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            if matches!(self.state, State::Init | State::Up) {
                self.set_state(State::Down, diag::CONTROL_DETECTION_TIME_EXPIRED, &mut out);
            }
            self.remote_discr = 0;
            self.remote_min_rx = Duration::from_micros(1);
            self.rx_seq = None;
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            let silent_peer = self.remote_min_rx.is_zero();
            if !(silent_peer || self.config.passive && self.remote_discr == 0) {
                let poll = self.poll_active;
                out.push(Output::Send(self.packet(poll, false)));
            }
            self.schedule_tx(now);
        }
        out
    }

    /// Changes the timers of a running session; a poll sequence tells the
    /// peer (RFC 5880 6.8.3). A faster transmit rate and a slower receive
    /// requirement take effect at once, the others when the peer answers.
    pub fn set_timers(&mut self, desired_min_tx: Duration, required_min_rx: Duration, detect_mult: u8) {
        self.config.desired_min_tx = desired_min_tx;
        self.config.required_min_rx = required_min_rx;
        self.config.detect_mult = detect_mult.max(1);
        let want_tx = if self.state == State::Up {
            desired_min_tx
        } else {
            desired_min_tx.max(SLOW_TX)
        };
        if want_tx < self.tx_in_effect {
            self.tx_in_effect = want_tx;
        }
        if required_min_rx > self.rx_in_effect {
            self.rx_in_effect = required_min_rx;
        }
        self.poll_active = self.state == State::Up;
        if !self.poll_active {
            self.tx_in_effect = want_tx;
            self.rx_in_effect = required_min_rx;
            self.mult_in_effect = self.config.detect_mult;
        }
    }

    /// Takes the session administratively down (packets say AdminDown) or
    /// back up.
    pub fn set_admin_down(&mut self, down: bool, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if down {
            self.set_state(State::AdminDown, diag::ADMINISTRATIVELY_DOWN, &mut out);
            self.detect_at = None;
            out.push(Output::Send(self.packet(false, false)));
        } else if self.state == State::AdminDown {
            self.set_state(State::Down, diag::NONE, &mut out);
            self.remote_discr = 0;
            self.schedule_tx(now);
        }
        out
    }
}
