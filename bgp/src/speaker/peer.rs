//! One peer's task: carries out a [`PeerSession`]'s effects on real
//! sockets and feeds it what happens on them.
//!
//! The task never waits on anything but its select loop: connections are
//! written by their own writer tasks, and what the session tells the core
//! is queued here when a channel is full and sent as it takes more. While
//! route batches wait, the established connection is not read (TCP pushes
//! back on the peer) but timers, commands and the other connection are
//! served as always: a busy core delays this peer's routes, never anyone's
//! keepalives or resets.

use super::drain::OutboxDrain;
use super::messages::{PeerCommand, PeerEvent, RouteEvent};
use super::session::{ConnId, Effect, Input, PeerSession};
use super::transport::{self, Connection, Inbound, SocketOptions};
use super::{PeerConfig, PeerShared, SpeakerConfig, SpeakerEvent};
use crate::rib::PeerId;
use crate::wire::Notification;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

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

/// Route batches held in the task before it stops reading the peer.
const ROUTE_BACKLOG: usize = 1;

/// How long an outgoing connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping task tries to tell the core what is still queued.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// Something for the core, in the order the session produced it.
enum Outgoing {
    Core(PeerEvent),
    Routes(RouteEvent),
}

/// What woke the task.
enum Woke {
    Command(Option<PeerCommand>),
    Connect(Result<std::io::Result<TcpStream>, tokio::task::JoinError>),
    Inbound(ConnId, Inbound),
    Sent,
    Timer,
}

/// Room reserved on one of the core's channels.
enum Permit<'a> {
    Core(mpsc::Permit<'a, PeerEvent>),
    Routes(mpsc::Permit<'a, RouteEvent>),
}

/// The sockets and channels of one peer task.
struct Io {
    remote: SocketAddr,
    socket: SocketOptions,
    hold_time: u16,
    conns: Vec<(ConnId, Connection)>,
    next_conn: ConnId,
    connecting: Option<JoinHandle<std::io::Result<TcpStream>>>,
    core: mpsc::Sender<PeerEvent>,
    routes: mpsc::Sender<RouteEvent>,
    /// What the core's channels had no room for yet, in order.
    outgoing: VecDeque<Outgoing>,
    /// Route batches in `outgoing`.
    routes_queued: usize,
    /// The core is gone: nothing more to do.
    core_gone: bool,
    drain: (Arc<PeerShared>, broadcast::Sender<SpeakerEvent>),
}

/// The socket options of a peer: TTL (GTSM or multihop), MD5, source.
fn socket_options(cfg: &PeerConfig, local_as: u32) -> SocketOptions {
    let ebgp = cfg.remote_as != local_as;
    let ttl = match (cfg.ttl_security_hops, cfg.ebgp_multihop) {
        (Some(_), _) => 255,
        (None, 0) if ebgp => 1,
        (None, 0) => 64,
        (None, h) => h,
    };
    SocketOptions {
        password: cfg.password.clone(),
        ttl,
        min_ttl: cfg.ttl_security_hops.map(|h| 255u8.saturating_sub(h.saturating_sub(1))),
        source: cfg.source_address,
        interface: cfg.interface.clone(),
    }
}

pub(crate) async fn run(ctx: PeerCtx) {
    let PeerCtx {
        id,
        config,
        speaker,
        shared,
        core,
        routes,
        mut commands,
        events,
    } = ctx;
    let mut io = Io {
        remote: SocketAddr::new(
            config.address,
            if config.port != 0 {
                config.port
            } else {
                speaker.peer_port
            },
        ),
        socket: socket_options(&config, speaker.local_as),
        hold_time: config.hold_time,
        conns: Vec::with_capacity(2),
        next_conn: 1,
        connecting: None,
        core,
        routes,
        outgoing: VecDeque::new(),
        routes_queued: 0,
        core_gone: false,
        drain: (shared, events),
    };
    let mut session = PeerSession::new(id, config, speaker);
    let effects = session.handle(Input::Start, Instant::now());
    io.apply(effects, &session);
    while !session.finished() && !io.core_gone {
        let sleep_to = session
            .deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let paused = (io.routes_queued >= ROUTE_BACKLOG)
            .then(|| session.established_conn())
            .flatten();
        let front_is_routes = io.outgoing.front().map(|o| matches!(o, Outgoing::Routes(_)));
        let woke = tokio::select! {
            cmd = commands.recv() => Woke::Command(cmd),
            res = async { io.connecting.as_mut().expect("guarded").await }, if io.connecting.is_some() => Woke::Connect(res),
            (conn, m) = next_inbound(&mut io.conns, paused) => Woke::Inbound(conn, m),
            permit = reserve(&io.core, &io.routes, front_is_routes), if front_is_routes.is_some() => {
                match (permit, io.outgoing.pop_front()) {
                    (Some(Permit::Core(p)), Some(Outgoing::Core(ev))) => p.send(ev),
                    (Some(Permit::Routes(p)), Some(Outgoing::Routes(ev))) => {
                        io.routes_queued -= 1;
                        p.send(ev);
                    }
                    _ => io.core_gone = true,
                }
                Woke::Sent
            },
            _ = tokio::time::sleep_until(sleep_to) => Woke::Timer,
        };
        let input = match woke {
            Woke::Command(Some(PeerCommand::Connection(stream))) => io.accept(stream),
            Woke::Command(Some(PeerCommand::Stop(n))) => Some(Input::Stop(n)),
            Woke::Command(Some(PeerCommand::Leave)) => Some(Input::Leave),
            Woke::Command(Some(PeerCommand::Reset {
                notification,
                idle_hold,
            })) => Some(Input::Reset {
                notification,
                idle_hold,
            }),
            Woke::Command(Some(PeerCommand::SendRefresh(f))) => Some(Input::SendRefresh(f)),
            Woke::Command(Some(PeerCommand::Release)) => Some(Input::Release),
            Woke::Command(Some(PeerCommand::SetImport(p))) => Some(Input::SetImport(p)),
            Woke::Command(Some(PeerCommand::Restart(speaker))) => {
                io.socket = socket_options(session.config(), speaker.local_as);
                Some(Input::Restart(speaker))
            }
            Woke::Command(None) => Some(Input::Stop(Notification::new(
                crate::wire::error::code::CEASE,
                crate::wire::error::subcode::PEER_DECONFIGURED,
            ))),
            Woke::Connect(res) => {
                io.connecting = None;
                Some(io.connected(res))
            }
            Woke::Inbound(conn, m) => Some(Input::Inbound(conn, m)),
            Woke::Sent => None,
            Woke::Timer => Some(Input::Tick {
                inbound_paused: paused.is_some(),
            }),
        };
        if let Some(input) = input {
            let effects = session.handle(input, Instant::now());
            io.apply(effects, &session);
        }
    }
    io.finish().await;
}

/// Room on the channel the next queued item goes to.
async fn reserve<'a>(
    core: &'a mpsc::Sender<PeerEvent>,
    routes: &'a mpsc::Sender<RouteEvent>,
    routes_next: Option<bool>,
) -> Option<Permit<'a>> {
    match routes_next {
        Some(true) => routes.reserve().await.ok().map(Permit::Routes),
        Some(false) => core.reserve().await.ok().map(Permit::Core),
        None => std::future::pending().await,
    }
}

/// The next thing that arrives on any connection but `paused`.
async fn next_inbound(conns: &mut [(ConnId, Connection)], paused: Option<ConnId>) -> (ConnId, Inbound) {
    std::future::poll_fn(|cx| {
        for (id, c) in conns.iter_mut() {
            if Some(*id) == paused {
                continue;
            }
            if let Poll::Ready(m) = c.inbound.poll_recv(cx) {
                return Poll::Ready((*id, m.unwrap_or(Inbound::Closed)));
            }
        }
        Poll::Pending
    })
    .await
}

impl Io {
    fn add_conn(&mut self, c: Connection) -> (ConnId, SocketAddr) {
        let id = self.next_conn;
        self.next_conn += 1;
        let local = c.local;
        self.conns.push((id, c));
        (id, local)
    }

    fn conn(&self, id: ConnId) -> Option<&Connection> {
        self.conns.iter().find(|(i, _)| *i == id).map(|(_, c)| c)
    }

    fn close(&mut self, id: ConnId) {
        if let Some(pos) = self.conns.iter().position(|(i, _)| *i == id) {
            self.conns.swap_remove(pos).1.close();
        }
    }

    /// A connection the peer opened.
    fn accept(&mut self, stream: TcpStream) -> Option<Input> {
        if let Err(e) = transport::prepare_accepted(&stream, &self.socket) {
            tracing::warn!(peer = %self.remote.ip(), error = %e, "cannot set socket options on an accepted connection");
        }
        let c = Connection::new(stream, false, self.hold_time).ok()?;
        let (conn, local) = self.add_conn(c);
        Some(Input::Incoming { conn, local })
    }

    /// The outgoing connection attempt ended.
    fn connected(&mut self, res: Result<std::io::Result<TcpStream>, tokio::task::JoinError>) -> Input {
        match res {
            Ok(Ok(stream)) => match Connection::new(stream, true, self.hold_time) {
                Ok(c) => {
                    let (conn, local) = self.add_conn(c);
                    Input::Connected { conn, local }
                }
                Err(e) => Input::ConnectFailed(e.to_string()),
            },
            Ok(Err(e)) => Input::ConnectFailed(e.to_string()),
            Err(e) => Input::ConnectFailed(e.to_string()),
        }
    }

    /// Carries out a session's effects, then closes any connection the
    /// session no longer holds.
    fn apply(&mut self, effects: Vec<Effect>, session: &PeerSession) {
        // What the session publishes (its status, its events) is published
        // before anything else is carried out: a reader that hears of a
        // session change from the core finds the status already showing it.
        // (Taken by reference: an UPDATE's effects pass here, no copies.)
        let publishes = |e: &Effect| matches!(e, Effect::Status(_) | Effect::Event(_));
        if effects.iter().any(publishes) {
            let mut st = self.drain.0.status.lock().expect("peer status");
            for e in &effects {
                if let Effect::Status(change) = e {
                    change.apply(&mut st);
                }
            }
            drop(st);
            for e in &effects {
                if let Effect::Event(ev) = e {
                    let _ = self.drain.1.send(ev.clone());
                }
            }
        }
        for effect in effects {
            match effect {
                Effect::Status(_) | Effect::Event(_) => {}
                Effect::Connect => {
                    if self.connecting.is_none() {
                        let (addr, opts) = (self.remote, self.socket.clone());
                        self.connecting = Some(tokio::spawn(async move {
                            match tokio::time::timeout(CONNECT_TIMEOUT, transport::connect(addr, &opts)).await {
                                Ok(r) => r,
                                Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
                            }
                        }));
                    }
                }
                Effect::AbortConnect => {
                    if let Some(c) = self.connecting.take() {
                        c.abort();
                    }
                }
                Effect::Send(conn, bytes) => {
                    if let Some(c) = self.conn(conn) {
                        c.send(bytes);
                    }
                }
                Effect::Close(conn) => self.close(conn),
                Effect::StartUpdates { conn, codec, hold_time } => {
                    if let Some(c) = self.conn(conn) {
                        let drain = OutboxDrain {
                            shared: self.drain.0.clone(),
                            codec,
                            events: self.drain.1.clone(),
                            peer: self.remote.ip(),
                        };
                        c.start_updates(drain, hold_time);
                    }
                }
                Effect::Core(ev) => {
                    if matches!(ev, PeerEvent::Down { .. }) {
                        // Routes of the session that ended are moot: the
                        // core removes (or keeps as stale) what it holds.
                        self.outgoing.retain(|o| matches!(o, Outgoing::Core(_)));
                        self.routes_queued = 0;
                    }
                    self.queue(Outgoing::Core(ev));
                }
                Effect::Routes(ev) => self.queue(Outgoing::Routes(ev)),
            }
        }
        let held: Vec<ConnId> = session.conns().collect();
        let stray: Vec<ConnId> = self
            .conns
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !held.contains(i))
            .collect();
        for id in stray {
            self.close(id);
        }
    }

    /// Sends at once when nothing waits and the channel has room; queues
    /// otherwise.
    fn queue(&mut self, item: Outgoing) {
        if !self.outgoing.is_empty() {
            if matches!(item, Outgoing::Routes(_)) {
                self.routes_queued += 1;
            }
            self.outgoing.push_back(item);
            return;
        }
        let rest = match item {
            Outgoing::Core(ev) => match self.core.try_send(ev) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(ev)) => Some(Outgoing::Core(ev)),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.core_gone = true;
                    None
                }
            },
            Outgoing::Routes(ev) => match self.routes.try_send(ev) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    self.routes_queued += 1;
                    Some(Outgoing::Routes(ev))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.core_gone = true;
                    None
                }
            },
        };
        if let Some(item) = rest {
            self.outgoing.push_back(item);
        }
    }

    /// The session is over: tell the core what is still queued for it (a
    /// Down above all), bounded, and let the connections go.
    async fn finish(&mut self) {
        if let Some(c) = self.connecting.take() {
            c.abort();
        }
        let events: Vec<PeerEvent> = self
            .outgoing
            .drain(..)
            .filter_map(|o| match o {
                Outgoing::Core(ev) => Some(ev),
                Outgoing::Routes(_) => None,
            })
            .collect();
        for ev in events {
            if tokio::time::timeout(FINAL_FLUSH_LIMIT, self.core.send(ev))
                .await
                .is_err()
            {
                break;
            }
        }
        for (_, c) in self.conns.drain(..) {
            c.close();
        }
    }
}
