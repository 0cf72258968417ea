//! Sessions and the RIB without sockets or a clock: several peers'
//! [`PeerSession`]s, fed steps from a script (connections, the peer's
//! messages as bytes, closes, time), their route batches and up/down
//! events applied to a [`Rib`] as the core applies them, and the table's
//! invariants checked after every step. Built for the stateful fuzz target
//! (feature `simulation`); each step is what a peer could do on the wire.

use super::messages::{PeerEvent, RouteEvent};
use super::session::{ConnId, Effect, Input, PeerSession};
use super::transport::Inbound;
use super::{PeerConfig, SpeakerConfig};
use crate::rib::{Best, BestChange, PathSelector, PeerId, PeerInfo, Rib};
use crate::wire::{
    message_bytes, AddPathMode, Capability, Family, GracefulRestart, GracefulRestartFamily, Message, Notification,
    Open, SessionCodec,
};
use bytes::Bytes;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The simulated node's AS.
pub const LOCAL_AS: u32 = 65100;

/// (address, AS) of the simulated peers: two external, one internal.
pub const PEERS: [(&str, u32); 3] = [("10.0.0.1", 65001), ("10.0.0.2", 65002), ("10.0.0.3", LOCAL_AS)];

/// What a peer does, one step at a time.
#[derive(Debug, Clone)]
pub enum Step {
    /// The peer opens a TCP connection to us.
    Connect(usize),
    /// The peer sends an OPEN with these options.
    Open {
        peer: usize,
        options: OpenOptions,
    },
    Keepalive(usize),
    /// The peer sends a message of this type with this body (header added).
    Message {
        peer: usize,
        kind: u8,
        body: Vec<u8>,
    },
    /// The peer sends these bytes as one frame, header and all.
    Frame {
        peer: usize,
        bytes: Vec<u8>,
    },
    /// The peer's connection closes.
    Close(usize),
    /// The operator resets the session.
    Reset(usize),
    /// Time passes.
    Advance(Duration),
}

/// What a simulated peer's OPEN announces.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    pub four_octet_as: bool,
    pub add_path: bool,
    pub graceful_restart: bool,
    pub extended_message: bool,
    pub ipv6: bool,
    pub hold_time: u16,
}

impl OpenOptions {
    /// Options from one byte's bits (the fuzz target's encoding).
    pub fn from_bits(b: u8) -> Self {
        OpenOptions {
            four_octet_as: b & 1 != 0,
            add_path: b & 2 != 0,
            graceful_restart: b & 4 != 0,
            extended_message: b & 8 != 0,
            ipv6: b & 16 != 0,
            hold_time: if b & 32 != 0 { 0 } else { 9 },
        }
    }

    /// The OPEN message a peer with these options sends.
    pub fn open(&self, asn: u32, router_id: Ipv4Addr) -> Message {
        let mut families = vec![Family::IPV4_UNICAST];
        if self.ipv6 {
            families.push(Family::IPV6_UNICAST);
        }
        let mut capabilities: Vec<Capability> = families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
        capabilities.push(Capability::RouteRefresh);
        if self.four_octet_as {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        if self.add_path {
            let both = AddPathMode {
                receive: true,
                send: true,
            };
            capabilities.push(Capability::AddPath(families.iter().map(|f| (*f, both)).collect()));
        }
        if self.graceful_restart {
            capabilities.push(Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: families
                    .iter()
                    .map(|f| GracefulRestartFamily {
                        family: *f,
                        forwarding_preserved: true,
                    })
                    .collect(),
            }));
        }
        if self.extended_message {
            capabilities.push(Capability::ExtendedMessage);
        }
        Message::Open(Open {
            version: 4,
            asn: if self.four_octet_as && asn > 65535 { 23456 } else { asn },
            hold_time: self.hold_time,
            router_id,
            capabilities,
        })
    }
}

struct SimPeer {
    session: PeerSession,
    address: IpAddr,
    asn: u32,
    conn: Option<ConnId>,
    /// The core's view: the session number it took as up.
    up: Option<u64>,
    /// Routes kept as stale after a graceful down.
    stale: bool,
}

/// Peers, their sessions and the node's RIB.
pub struct Simulation {
    now: Instant,
    peers: Vec<SimPeer>,
    rib: Rib,
    /// Every prefix's selection as the reported changes left it.
    selected: HashMap<IpNet, Best>,
    next_conn: ConnId,
}

impl Default for Simulation {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulation {
    pub fn new() -> Self {
        let speaker = SpeakerConfig {
            local_as: LOCAL_AS,
            router_id: Ipv4Addr::new(10, 255, 0, 1),
            listen_port: None,
            peer_port: 179,
            local_prefixes: Default::default(),
            graceful_restart_time: 120,
            restarting: Arc::new(AtomicBool::new(false)),
            route_sink: None,
        };
        let now = Instant::now();
        let peers = PEERS
            .iter()
            .enumerate()
            .map(|(i, (address, asn))| {
                let address: IpAddr = address.parse().expect("peer address");
                let mut config = PeerConfig::new(address, *asn);
                config.passive = true;
                config.hold_time = 9;
                config.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
                let mut session = PeerSession::new(i as PeerId + 1, config, speaker.clone());
                let _ = session.handle(Input::Start, now);
                SimPeer {
                    session,
                    address,
                    asn: *asn,
                    conn: None,
                    up: None,
                    stale: false,
                }
            })
            .collect();
        Simulation {
            now,
            peers,
            rib: Rib::new(speaker.router_id),
            selected: HashMap::new(),
            next_conn: 1,
        }
    }

    /// The router id a simulated peer uses.
    pub fn router_id(peer: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, peer as u8 + 1)
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// Whether the core holds the peer's session as established.
    pub fn is_up(&self, peer: usize) -> bool {
        self.peers[peer % self.peers.len()].up.is_some()
    }

    /// Carries out one step and everything it causes.
    pub fn step(&mut self, step: Step) {
        let n = self.peers.len();
        match step {
            Step::Connect(p) => {
                let p = p % n;
                let conn = self.next_conn;
                self.next_conn += 1;
                if self.peers[p].conn.is_none() {
                    self.peers[p].conn = Some(conn);
                }
                let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), 179);
                self.input(p, Input::Incoming { conn, local });
            }
            Step::Open { peer, options } => {
                let p = peer % n;
                let msg = options.open(self.peers[p].asn, Self::router_id(p));
                self.frame(p, message_bytes(&msg, &SessionCodec::default()));
            }
            Step::Keepalive(p) => self.frame(p % n, message_bytes(&Message::Keepalive, &SessionCodec::default())),
            Step::Message { peer, kind, body } => {
                let mut bytes = vec![0xff; 16];
                let len = (19 + body.len()).min(u16::MAX as usize) as u16;
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.push(kind);
                bytes.extend_from_slice(&body);
                self.frame(peer % n, Bytes::from(bytes));
            }
            Step::Frame { peer, bytes } => self.frame(peer % n, Bytes::from(bytes)),
            Step::Close(p) => {
                let p = p % n;
                if let Some(conn) = self.peers[p].conn.take() {
                    self.input(p, Input::Inbound(conn, Inbound::Closed));
                }
            }
            Step::Reset(p) => self.input(
                p % n,
                Input::Reset {
                    notification: Notification::new(crate::wire::error::code::CEASE, 4),
                    idle_hold: None,
                },
            ),
            Step::Advance(d) => {
                self.now += d.min(Duration::from_secs(600));
                for p in 0..n {
                    if self.peers[p].session.deadline().is_some_and(|t| t <= self.now) {
                        self.input(p, Input::Tick { inbound_paused: false });
                    }
                }
            }
        }
    }

    fn frame(&mut self, p: usize, bytes: Bytes) {
        if let Some(conn) = self.peers[p].conn {
            self.input(p, Input::Inbound(conn, Inbound::Frame(bytes)));
        }
    }

    fn input(&mut self, p: usize, input: Input) {
        let effects = self.peers[p].session.handle(input, self.now);
        for e in effects {
            match e {
                Effect::Close(conn) if self.peers[p].conn == Some(conn) => self.peers[p].conn = None,
                Effect::Core(ev) => self.core_event(p, ev),
                Effect::Routes(ev) => self.routes(p, ev),
                _ => {}
            }
        }
    }

    /// What the core does with a session's up and down.
    fn core_event(&mut self, p: usize, ev: PeerEvent) {
        let id = p as PeerId + 1;
        match ev {
            PeerEvent::Up {
                session, negotiated, ..
            } => {
                self.peers[p].up = Some(session);
                self.rib.set_peer(
                    id,
                    PeerInfo {
                        address: self.peers[p].address,
                        router_id: negotiated.remote_id,
                        ibgp: negotiated.remote_as == LOCAL_AS,
                        local: false,
                    },
                );
            }
            PeerEvent::Down {
                keep_stale_for,
                stale_families,
                ..
            } => {
                self.peers[p].up = None;
                match keep_stale_for {
                    Some(_) => {
                        self.peers[p].stale = self.rib.mark_stale(id) > 0;
                        for f in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
                            if !stale_families.contains(&f) {
                                self.remove(id, PathSelector::StaleOf(f));
                            }
                        }
                    }
                    None => {
                        self.peers[p].stale = false;
                        self.remove(id, PathSelector::All);
                    }
                }
            }
            _ => {}
        }
    }

    /// What the core does with a session's routes.
    fn routes(&mut self, p: usize, ev: RouteEvent) {
        let id = p as PeerId + 1;
        match ev {
            RouteEvent::Routes {
                session,
                announce,
                withdraw,
                ..
            } if self.peers[p].up == Some(session) => {
                let mut changes = Vec::new();
                for n in withdraw {
                    changes.extend(self.rib.withdraw(id, n));
                }
                for (attrs, prefixes) in &announce {
                    self.rib.announce_all(id, attrs, prefixes, &mut changes);
                }
                self.record(changes);
            }
            RouteEvent::EndOfRib { session, family, .. } if self.peers[p].up == Some(session) => {
                self.remove(id, PathSelector::StaleOf(family));
            }
            _ => {}
        }
    }

    fn remove(&mut self, id: PeerId, which: PathSelector) {
        let prefixes = self.rib.prefixes_with(id, which);
        let changes = self.rib.remove_paths(id, which, &prefixes);
        self.record(changes);
    }

    fn record(&mut self, changes: Vec<BestChange>) {
        for c in changes {
            let before = match c.best {
                Some(b) => self.selected.insert(c.prefix, b),
                None => self.selected.remove(&c.prefix),
            };
            assert_eq!(
                before, c.old,
                "{}: a change's old selection is what the last change left",
                c.prefix
            );
        }
    }

    /// The table's invariants: every selection is one of the prefix's
    /// paths and what the reported changes left; no path of a peer that is
    /// down remains unless kept as stale; the counters match the table.
    pub fn check(&self) -> Result<(), String> {
        let mut per_peer: HashMap<PeerId, usize> = HashMap::new();
        let mut total = 0;
        let mut prefixes = 0;
        for (prefix, entry) in self.rib.iter() {
            prefixes += 1;
            let paths = entry.paths();
            if paths.is_empty() {
                return Err(format!("{prefix}: an entry without paths"));
            }
            total += paths.len();
            for path in paths {
                *per_peer.entry(path.peer()).or_default() += 1;
                let peer = &self.peers[path.peer() as usize - 1];
                if peer.up.is_none() && !path.stale() {
                    return Err(format!("{prefix}: a path of {} which is down", peer.address));
                }
            }
            let selection = entry.selection();
            if let Some(best) = &selection {
                if !paths
                    .iter()
                    .any(|p| p.peer() == best.peer && Arc::ptr_eq(&p.attrs, &best.attrs))
                {
                    return Err(format!("{prefix}: the best path is none of the candidates"));
                }
            }
            if selection.as_ref() != self.selected.get(&prefix) {
                return Err(format!(
                    "{prefix}: the selection differs from what the changes reported"
                ));
            }
        }
        if prefixes != self.rib.len() || prefixes != self.selected.len() {
            return Err(format!(
                "{prefixes} prefixes in the table, {} counted, {} selections reported",
                self.rib.len(),
                self.selected.len()
            ));
        }
        if total != self.rib.path_count() {
            return Err(format!("{total} paths in the table, {} counted", self.rib.path_count()));
        }
        for p in 0..self.peers.len() {
            let id = p as PeerId + 1;
            let counted = self.rib.paths_from(id);
            let held = per_peer.get(&id).copied().unwrap_or(0);
            if counted != held {
                return Err(format!(
                    "{}: {held} paths held, {counted} counted",
                    self.peers[p].address
                ));
            }
        }
        Ok(())
    }
}

/// An UPDATE from a simulated peer announcing `prefixes` (IPv4) with its
/// AS as the path and `next_hop` (whole message, for [`Step::Frame`]).
pub fn announcement(asn: u32, next_hop: Ipv4Addr, prefixes: &[&str], codec: &SessionCodec) -> Vec<u8> {
    use crate::wire::{AsPath, Nlri, Origin, PathAttributes, Update};
    let u = Update {
        attrs: PathAttributes {
            origin: Origin::Igp,
            as_path: if asn == LOCAL_AS {
                AsPath::default()
            } else {
                AsPath::from_sequence(vec![asn])
            },
            next_hop: Some(IpAddr::V4(next_hop)),
            local_pref: (asn == LOCAL_AS).then_some(100),
            ..Default::default()
        },
        nlri: prefixes.iter().map(|p| Nlri::new(p.parse().expect("prefix"))).collect(),
        ..Default::default()
    };
    crate::wire::update::update_message(&u, codec).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn establish(sim: &mut Simulation, p: usize, options: OpenOptions) {
        sim.step(Step::Connect(p));
        sim.step(Step::Open { peer: p, options });
        sim.step(Step::Keepalive(p));
        assert!(sim.is_up(p), "peer {p} up");
    }

    fn codec(options: OpenOptions) -> SessionCodec {
        SessionCodec {
            four_octet_as: options.four_octet_as,
            ..Default::default()
        }
    }

    #[test]
    fn routes_follow_sessions_and_the_invariants_hold() {
        let mut sim = Simulation::new();
        let plain = OpenOptions::from_bits(1);
        let restarting = OpenOptions::from_bits(1 | 4);
        establish(&mut sim, 0, plain);
        establish(&mut sim, 1, restarting);
        let prefixes = ["192.0.2.0/24", "198.51.100.0/24"];
        for (p, (_, asn)) in PEERS.iter().enumerate().take(2) {
            let bytes = announcement(*asn, Simulation::router_id(p), &prefixes, &codec(plain));
            sim.step(Step::Frame { peer: p, bytes });
        }
        sim.check().unwrap();
        assert_eq!(sim.rib().len(), 2);
        assert_eq!(sim.rib().path_count(), 4);

        // A hard down takes the peer's paths; a graceful one keeps them
        // as stale until End-of-RIB.
        sim.step(Step::Close(0));
        sim.check().unwrap();
        assert_eq!(sim.rib().path_count(), 2);
        sim.step(Step::Close(1));
        sim.check().unwrap();
        assert_eq!(sim.rib().path_count(), 2, "kept as stale");
        establish(&mut sim, 1, restarting);
        let eor =
            crate::wire::update::update_message(&crate::wire::Update::end_of_rib(Family::IPV4_UNICAST), &codec(plain));
        sim.step(Step::Frame {
            peer: 1,
            bytes: eor.to_vec(),
        });
        sim.check().unwrap();
        assert_eq!(sim.rib().path_count(), 0, "stale paths swept at End-of-RIB");
    }

    #[test]
    fn hold_timer_expiry_takes_the_routes() {
        let mut sim = Simulation::new();
        let options = OpenOptions::from_bits(1);
        establish(&mut sim, 2, options);
        let bytes = announcement(LOCAL_AS, Simulation::router_id(2), &["203.0.113.0/24"], &codec(options));
        sim.step(Step::Frame { peer: 2, bytes });
        assert_eq!(sim.rib().len(), 1);
        sim.step(Step::Advance(Duration::from_secs(10)));
        assert!(!sim.is_up(2));
        sim.check().unwrap();
        assert!(sim.rib().is_empty());
    }
}
