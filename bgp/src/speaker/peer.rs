//! One peer's session task: connections, the FSM, decoding, import policy,
//! and writing the UPDATEs the core queued for this peer.
//!
//! A peer has at most two connections at once: the primary one and, while
//! the primary is opening, a second one the peer opened; the collision is
//! resolved by BGP identifier (RFC 4271 6.8) as soon as one of them knows
//! the peer's identifier.

use super::core::{AttrRuns, PeerEvent, RouteEvent};
use super::drain::OutboxDrain;
use super::transport::{self, Connection, Inbound, SocketOptions};
use super::{PeerConfig, PeerShared, SpeakerConfig, SpeakerEvent};
use crate::fsm::{
    collision_notification, resolve_collision, Action, CollisionWinner, DownReason, Event, Fsm, FsmConfig, Negotiated,
    State,
};
use crate::policy::{evaluate_import, Verdict};
use crate::rib::PeerId;
use crate::wire::{
    decode_message, encode_message, AddPathMode, Capability, Family, GracefulRestart, GracefulRestartFamily, Message,
    Nlri, Notification, PathAttributes, RefreshSubtype, RouteRefresh, SessionCodec, Update,
};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Requests to a peer task.
pub(crate) enum PeerCommand {
    /// A connection the peer opened to us.
    Connection(TcpStream),
    /// Close the session for good with this NOTIFICATION.
    Stop(Notification),
    /// Close the session with this NOTIFICATION and start over.
    Reset(Notification),
    SendRefresh(Family),
    /// Use this import policy from now on.
    SetImport(crate::policy::PeerPolicy),
}

pub(crate) struct PeerCtx {
    pub id: PeerId,
    pub config: PeerConfig,
    pub speaker: SpeakerConfig,
    pub shared: Arc<PeerShared>,
    pub core: mpsc::Sender<PeerEvent>,
    pub routes: mpsc::Sender<RouteEvent>,
    pub commands: mpsc::Receiver<PeerCommand>,
    pub events: broadcast::Sender<SpeakerEvent>,
}

struct Session {
    fsm: Fsm,
    conn: Option<Connection>,
    /// How the peer's messages are decoded (add-path: what we receive).
    codec: SessionCodec,
    /// How our messages are encoded (add-path: what we send).
    tx_codec: SessionCodec,
}

impl Session {
    fn new(cfg: FsmConfig) -> Self {
        Session {
            fsm: Fsm::new(cfg),
            conn: None,
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

struct Runner {
    ctx: PeerCtx,
    fsm_config: FsmConfig,
    primary: Session,
    secondary: Option<Session>,
    connecting: Option<JoinHandle<std::io::Result<TcpStream>>>,
    socket: SocketOptions,
    finished: bool,
    /// The core was told the session is up (and must be told it is down).
    primary_was_up: bool,
    /// The peer's graceful-restart capability of the current session.
    peer_gr: Option<GracefulRestart>,
    /// The primary session's state as last published.
    reported: State,
    /// Number of the current (or last) established session.
    session: u64,
}

/// Capabilities this speaker announces to a peer.
fn capabilities(cfg: &PeerConfig, speaker: &SpeakerConfig) -> Vec<Capability> {
    let mut caps: Vec<Capability> = cfg.families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
    // Route refresh (RFC 2918) only: enhanced route refresh (RFC 7313)
    // needs BoRR/EoRR demarcation this speaker does not implement, and a
    // peer that negotiated it would wait for them.
    caps.push(Capability::RouteRefresh);
    caps.push(Capability::FourOctetAs(speaker.local_as));
    if speaker.graceful_restart_time > 0 {
        let restarting = speaker.restarting.load(std::sync::atomic::Ordering::Relaxed);
        caps.push(Capability::GracefulRestart(GracefulRestart {
            restarting,
            notification: false,
            restart_time: speaker.graceful_restart_time.min(4095),
            families: cfg
                .families
                .iter()
                .map(|f| GracefulRestartFamily {
                    family: *f,
                    forwarding_preserved: restarting,
                })
                .collect(),
        }));
    }
    caps.push(Capability::AddPath(
        cfg.families
            .iter()
            .map(|f| {
                (
                    *f,
                    AddPathMode {
                        receive: true,
                        send: false,
                    },
                )
            })
            .collect(),
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

pub(crate) async fn run(ctx: PeerCtx) {
    let cfg = &ctx.config;
    let ebgp = cfg.remote_as != ctx.speaker.local_as;
    let ttl = match (cfg.ttl_security_hops, cfg.ebgp_multihop) {
        (Some(_), _) => 255,
        (None, 0) if ebgp => 1,
        (None, 0) => 64,
        (None, h) => h,
    };
    let socket = SocketOptions {
        password: cfg.password.clone(),
        ttl,
        min_ttl: cfg.ttl_security_hops.map(|h| 255u8.saturating_sub(h.saturating_sub(1))),
        source: cfg.source_address,
    };
    let fsm_config = FsmConfig {
        local_as: ctx.speaker.local_as,
        router_id: ctx.speaker.router_id,
        remote_as: cfg.remote_as,
        hold_time: cfg.hold_time,
        keepalive: cfg.keepalive,
        connect_retry: cfg.connect_retry,
        passive: cfg.passive,
        capabilities: capabilities(cfg, &ctx.speaker),
    };
    let mut runner = Runner {
        primary: Session::new(fsm_config.clone()),
        fsm_config,
        secondary: None,
        connecting: None,
        socket,
        finished: false,
        primary_was_up: false,
        peer_gr: None,
        reported: State::Idle,
        session: 0,
        ctx,
    };
    let actions = runner.primary.fsm.handle(Event::Start, Instant::now());
    runner.execute(Which::Primary, actions).await;
    runner.run().await;
}

async fn next_inbound(conn: &mut Option<Connection>) -> Inbound {
    match conn {
        Some(c) => c.inbound.recv().await.unwrap_or(Inbound::Closed),
        None => std::future::pending().await,
    }
}

impl Runner {
    fn session(&mut self, which: Which) -> Option<&mut Session> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Secondary => self.secondary.as_mut(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.primary.fsm.next_deadline(),
            self.secondary.as_ref().and_then(|s| s.fsm.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn run(&mut self) {
        while !self.finished {
            let deadline = self.deadline();
            let sleep_to = deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                cmd = self.ctx.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        let n = Notification::new(crate::wire::error::code::CEASE, crate::wire::error::subcode::PEER_DECONFIGURED);
                        self.stop(n).await;
                    }
                },
                res = async { self.connecting.as_mut().expect("guarded").await }, if self.connecting.is_some() => {
                    self.connecting = None;
                    let now = Instant::now();
                    let ev = match res {
                        Ok(Ok(stream)) => match Connection::new(stream, true, self.ctx.config.hold_time) {
                            Ok(c) => {
                                self.primary.conn = Some(c);
                                Event::TcpConnected
                            }
                            Err(_) => Event::TcpFailed,
                        },
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %self.ctx.config.address, error = %e, "connect failed");
                            self.ctx.shared.status.lock().expect("peer status").last_error = Some(format!("connect: {e}"));
                            Event::TcpFailed
                        }
                        Err(_) => Event::TcpFailed,
                    };
                    if self.primary.conn.is_none() || matches!(ev, Event::TcpConnected) {
                        self.refresh_capabilities();
                        let actions = self.primary.fsm.handle(ev, now);
                        self.execute(Which::Primary, actions).await;
                    }
                },
                m = next_inbound(&mut self.primary.conn) => self.on_inbound(Which::Primary, m).await,
                m = async {
                    match self.secondary.as_mut() {
                        Some(s) => next_inbound(&mut s.conn).await,
                        None => std::future::pending().await,
                    }
                } => self.on_inbound(Which::Secondary, m).await,
                _ = tokio::time::sleep_until(sleep_to) => {
                    let now = Instant::now();
                    let a = self.primary.fsm.on_tick(now);
                    self.execute(Which::Primary, a).await;
                    if let Some(s) = self.secondary.as_mut() {
                        let a = s.fsm.on_tick(now);
                        self.execute(Which::Secondary, a).await;
                    }
                },
            }
            self.resolve_collision().await;
        }
    }

    async fn on_command(&mut self, cmd: PeerCommand) {
        match cmd {
            PeerCommand::Connection(stream) => self.on_incoming(stream).await,
            PeerCommand::Stop(n) => self.stop(n).await,
            PeerCommand::Reset(n) => {
                let now = Instant::now();
                let a = self.primary.fsm.handle(Event::Stop(n), now);
                self.execute(Which::Primary, a).await;
                let a = self.primary.fsm.handle(Event::Start, now);
                self.execute(Which::Primary, a).await;
            }
            PeerCommand::SetImport(policy) => self.ctx.config.import = policy,
            PeerCommand::SendRefresh(family) => {
                if let Some(n) = self.primary.fsm.negotiated() {
                    if n.route_refresh && self.primary.fsm.state() == State::Established {
                        let msg = Message::RouteRefresh(RouteRefresh {
                            family,
                            subtype: RefreshSubtype::Request,
                        });
                        self.send(Which::Primary, &msg);
                    }
                }
            }
        }
    }

    async fn stop(&mut self, n: Notification) {
        let now = Instant::now();
        self.close_secondary(n.clone());
        let a = self.primary.fsm.handle(Event::Stop(n), now);
        self.execute(Which::Primary, a).await;
        if let Some(c) = self.connecting.take() {
            c.abort();
        }
        self.finished = true;
    }

    /// Capabilities are computed per connection: the graceful-restart
    /// bits follow the speaker's restart state.
    fn refresh_capabilities(&mut self) {
        let caps = capabilities(&self.ctx.config, &self.ctx.speaker);
        self.fsm_config.capabilities = caps.clone();
        self.primary.fsm.set_capabilities(caps);
    }

    /// Closes the second connection with a NOTIFICATION, if there is one.
    /// It never reached Established, so the core knows nothing of it.
    fn close_secondary(&mut self, n: Notification) {
        let Some(mut s) = self.secondary.take() else {
            return;
        };
        let _ = s.fsm.handle(Event::Stop(n.clone()), Instant::now());
        if let Some(conn) = s.conn.take() {
            conn.send(crate::wire::message_bytes(&Message::Notification(n), &s.codec));
            conn.close();
        }
    }

    async fn on_incoming(&mut self, stream: TcpStream) {
        if let Err(e) = transport::prepare_accepted(&stream, &self.socket) {
            tracing::warn!(peer = %self.ctx.config.address, error = %e, "cannot set socket options on an accepted connection");
        }
        let now = Instant::now();
        let Ok(conn) = Connection::new(stream, false, self.ctx.config.hold_time) else {
            return;
        };
        self.refresh_capabilities();
        match self.primary.fsm.state() {
            State::Idle | State::Connect | State::Active if self.primary.conn.is_none() => {
                if let Some(c) = self.connecting.take() {
                    c.abort();
                }
                self.primary.conn = Some(conn);
                let a = self.primary.fsm.start_with_connection(now);
                self.execute(Which::Primary, a).await;
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                let mut s = Session::new(self.fsm_config.clone());
                s.conn = Some(conn);
                let a = s.fsm.start_with_connection(now);
                self.secondary = Some(s);
                self.execute(Which::Secondary, a).await;
            }
            State::Established if self.peer_gr.is_some() => {
                // The peer restarted (RFC 4724 section 4.2): the old session
                // is gone; keep its routes as stale and take the new one.
                tracing::info!(peer = %self.ctx.config.address, "peer reconnected while established: graceful restart");
                let a = self.primary.fsm.handle(Event::TcpFailed, now);
                self.execute(Which::Primary, a).await;
                if let Some(c) = self.connecting.take() {
                    c.abort();
                }
                self.primary.conn = Some(conn);
                let a = self.primary.fsm.start_with_connection(now);
                self.execute(Which::Primary, a).await;
            }
            _ => {
                let codec = SessionCodec::default();
                conn.send(crate::wire::message_bytes(
                    &Message::Notification(collision_notification()),
                    &codec,
                ));
                conn.close();
            }
        }
    }

    async fn on_inbound(&mut self, which: Which, m: Inbound) {
        let now = Instant::now();
        let Some(s) = self.session(which) else { return };
        let ev = match m {
            Inbound::Closed => Event::TcpFailed,
            Inbound::Malformed(e) => Event::DecodeFailed(e),
            Inbound::Frame(bytes) => match decode_message(&bytes, &s.codec) {
                Ok(msg) => Event::Message(msg),
                Err(e) => {
                    tracing::warn!(peer = %self.ctx.config.address, error = %e, "malformed message");
                    self.ctx.shared.status.lock().expect("peer status").last_error =
                        Some(format!("malformed message: {e}"));
                    Event::DecodeFailed(e)
                }
            },
        };
        let Some(s) = self.session(which) else { return };
        let a = s.fsm.handle(ev, now);
        self.execute(which, a).await;
    }

    /// Queues a message on a session's connection (never waits).
    fn send(&mut self, which: Which, msg: &Message) {
        let Some(s) = self.session(which) else { return };
        let Some(conn) = &s.conn else { return };
        let mut buf = BytesMut::with_capacity(64);
        encode_message(msg, &s.tx_codec, &mut buf);
        conn.send(buf.freeze());
        if let Message::Notification(n) = msg {
            self.ctx
                .shared
                .status
                .lock()
                .expect("peer status")
                .last_notification_sent = Some(n.to_string());
        }
    }

    /// Carries out FSM actions for one session, in order.
    async fn execute(&mut self, which: Which, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Connect => {
                    if which == Which::Primary && self.connecting.is_none() && self.primary.conn.is_none() {
                        let addr = SocketAddr::new(self.ctx.config.address, self.ctx.speaker.peer_port);
                        let opts = self.socket.clone();
                        self.connecting = Some(tokio::spawn(async move {
                            match tokio::time::timeout(Duration::from_secs(10), transport::connect(addr, &opts)).await {
                                Ok(r) => r,
                                Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
                            }
                        }));
                    }
                }
                Action::Disconnect => {
                    if let Some(s) = self.session(which) {
                        if let Some(c) = s.conn.take() {
                            c.close();
                        }
                    }
                    if which == Which::Primary {
                        if let Some(c) = self.connecting.take() {
                            c.abort();
                        }
                    }
                }
                Action::Send(msg) => self.send(which, &msg),
                Action::Established(n) => self.on_established(which, *n).await,
                Action::Down(reason) => self.on_down(which, reason).await,
                Action::Deliver(u) => self.on_update(*u).await,
                Action::RefreshRequested(r) => {
                    if r.subtype == RefreshSubtype::Request {
                        let _ = self
                            .ctx
                            .core
                            .send(PeerEvent::RefreshRequested {
                                id: self.ctx.id,
                                family: r.family,
                            })
                            .await;
                    }
                }
            }
        }
        self.report_state();
    }

    /// Publishes a change of the primary session's state.
    fn report_state(&mut self) {
        let after = self.primary.fsm.state();
        let before = self.reported;
        if before == after {
            return;
        }
        self.reported = after;
        self.ctx.shared.status.lock().expect("peer status").set_state(after);
        tracing::info!(peer = %self.ctx.config.address, from = %before, to = %after, "session state");
        let _ = self.ctx.events.send(SpeakerEvent::PeerState {
            address: self.ctx.config.address,
            from: before,
            to: after,
            reason: None,
        });
    }

    async fn on_established(&mut self, which: Which, n: Negotiated) {
        if which == Which::Secondary {
            // The peer's connection won: it becomes the primary.
            let sec = self.secondary.take().expect("secondary exists");
            let old = std::mem::replace(&mut self.primary, sec);
            if let Some(c) = old.conn {
                c.close();
            }
            drop(old.fsm);
            if let Some(c) = self.connecting.take() {
                c.abort();
            }
        } else {
            self.close_secondary(collision_notification());
        }
        self.primary.codec = n.codec;
        self.primary.tx_codec = SessionCodec {
            add_path_v4: n.add_path_send.contains(&Family::IPV4_UNICAST),
            add_path_v6: n.add_path_send.contains(&Family::IPV6_UNICAST),
            ..n.codec
        };
        if let Some(conn) = &self.primary.conn {
            conn.start_updates(
                OutboxDrain {
                    shared: self.ctx.shared.clone(),
                    codec: self.primary.tx_codec,
                    events: self.ctx.events.clone(),
                    peer: self.ctx.config.address,
                },
                n.hold_time,
            );
        }
        self.peer_gr = n.peer_graceful_restart.clone();
        self.primary_was_up = true;
        self.session += 1;
        let local = self
            .primary
            .conn
            .as_ref()
            .map(|c| c.local)
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
        {
            let mut st = self.ctx.shared.status.lock().expect("peer status");
            st.remote_router_id = Some(n.remote_id);
            st.families = n.families.iter().map(|f| f.to_string()).collect();
            st.last_error = None;
        }
        tracing::info!(
            peer = %self.ctx.config.address,
            remote_as = n.remote_as,
            remote_id = %n.remote_id,
            hold_time = n.hold_time,
            families = ?n.families.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "session established"
        );
        let _ = self
            .ctx
            .core
            .send(PeerEvent::Up {
                id: self.ctx.id,
                session: self.session,
                negotiated: Box::new(n),
                local,
            })
            .await;
    }

    async fn on_down(&mut self, which: Which, reason: DownReason) {
        {
            let mut st = self.ctx.shared.status.lock().expect("peer status");
            match &reason {
                DownReason::Received(n) => st.last_notification_received = Some(n.to_string()),
                DownReason::Sent(n) => st.last_notification_sent = Some(n.to_string()),
                _ => {}
            }
            if which == Which::Primary {
                st.last_error = Some(reason.to_string());
            }
        }
        tracing::info!(peer = %self.ctx.config.address, reason = %reason, "session down");
        // Only a session the core knew as up is reported down. Graceful
        // restart (helper): a lost connection keeps the peer's routes.
        if which == Which::Primary && self.primary_was_up {
            self.primary_was_up = false;
            let graceful = match (&reason, self.peer_gr.take()) {
                (DownReason::ConnectionLost, Some(gr)) => Some(Duration::from_secs(gr.restart_time.max(1) as u64)),
                _ => None,
            };
            let _ = self
                .ctx
                .core
                .send(PeerEvent::Down {
                    id: self.ctx.id,
                    keep_stale_for: graceful,
                })
                .await;
        }
    }

    async fn on_update(&mut self, u: Update) {
        {
            let mut st = self.ctx.shared.status.lock().expect("peer status");
            st.updates_received += 1;
            for (n, _, _) in u.announcements() {
                st.prefixes_announced += 1;
                st.prefixes_announced_v6 += matches!(n.prefix, ipnet::IpNet::V6(_)) as u64;
            }
        }
        if let Some(family) = u.end_of_rib {
            let _ = self
                .ctx
                .routes
                .send(RouteEvent::EndOfRib {
                    id: self.ctx.id,
                    session: self.session,
                    family,
                })
                .await;
            return;
        }
        if let Some(e) = &u.treat_as_withdraw {
            tracing::warn!(peer = %self.ctx.config.address, error = %e, prefixes = u.withdrawn.len(), "malformed UPDATE treated as withdraw (RFC 7606)");
        }
        for e in &u.discarded {
            tracing::warn!(peer = %self.ctx.config.address, error = %e, "malformed attribute discarded (RFC 7606)");
        }
        let (announce, withdraw) = self.import(u);
        if announce.is_empty() && withdraw.is_empty() {
            return;
        }
        let _ = self
            .ctx
            .routes
            .send(RouteEvent::Routes {
                id: self.ctx.id,
                session: self.session,
                announce,
                withdraw,
            })
            .await;
    }

    /// Import: loop and first-AS checks, then the peer's import policy.
    /// Rejected prefixes become withdrawals (they may have been accepted
    /// before).
    fn import(&self, u: Update) -> (AttrRuns, Vec<Nlri>) {
        let local_as = self.ctx.speaker.local_as;
        let ebgp = self.ctx.config.remote_as != local_as;
        let mut withdraw: Vec<Nlri> = u.withdrawals().copied().collect();
        let mut announce = AttrRuns::new();
        let mut base = u.attrs.clone();
        if ebgp {
            base.local_pref = None;
        }
        let path_error = if base.as_path.contains(local_as) {
            Some("AS path contains our AS")
        } else if ebgp && base.as_path.first_as() != Some(self.ctx.config.remote_as) {
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
            let applied = evaluate_import(
                &self.ctx.config.import,
                &self.ctx.speaker.local_prefixes,
                &nlri.prefix,
                &base,
            );
            if applied.decision.verdict == Verdict::Reject {
                tracing::debug!(peer = %self.ctx.config.address, prefix = %nlri.prefix, reason = %applied.decision.reason, "import rejected");
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
                tracing::debug!(peer = %self.ctx.config.address, reason, "routes not imported");
            }
        }
        (announce, withdraw)
    }

    /// Resolves a collision between the two connections once the peer's
    /// identifier is known on one of them.
    async fn resolve_collision(&mut self) {
        let Some(sec) = &self.secondary else { return };
        if sec.conn.is_none() || sec.fsm.state() == State::Idle {
            self.secondary = None;
            return;
        }
        let now = Instant::now();
        if self.primary.conn.is_none()
            && matches!(self.primary.fsm.state(), State::Idle | State::Connect | State::Active)
        {
            let sec = self.secondary.take().expect("checked");
            self.primary = sec;
            self.report_state();
            return;
        }
        let remote_id = self
            .primary
            .fsm
            .remote_open()
            .or(sec.fsm.remote_open())
            .map(|o| o.router_id);
        let Some(remote_id) = remote_id else { return };
        let existing_outbound = self.primary.conn.as_ref().is_some_and(|c| c.outbound);
        let loser = match resolve_collision(self.ctx.speaker.router_id, remote_id, existing_outbound) {
            CollisionWinner::Existing => Which::Secondary,
            CollisionWinner::New => Which::Primary,
        };
        tracing::info!(peer = %self.ctx.config.address, closing = ?loser, "connection collision resolved");
        match loser {
            Which::Secondary => self.close_secondary(collision_notification()),
            Which::Primary => {
                let a = self.primary.fsm.handle(Event::Stop(collision_notification()), now);
                self.execute(Which::Primary, a).await;
                self.primary = self.secondary.take().expect("checked");
                self.report_state();
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
        let caps = capabilities(&PeerConfig::new("10.0.0.1".parse().unwrap(), 65000), &speaker);
        assert!(caps.contains(&Capability::RouteRefresh));
        assert!(
            !caps.contains(&Capability::EnhancedRouteRefresh),
            "enhanced route refresh needs BoRR/EoRR, which are not sent"
        );
    }
}
