//! The core task: owns the RIB, applies what peer tasks deliver, runs the
//! decision process, exports changes into each established peer's pending
//! map, and answers the [`Speaker`](super::Speaker) handle.

use super::messages::{AttrRuns, Command, PeerCommand, PeerEvent, RouteEvent};
use super::peer::{self, PeerCtx};
use super::prefix_limit::{self, FamilyCounts};
use super::supervise::{self, Supervised};
use super::{
    PathView, PeerConfig, PeerRole, PeerShared, PeerStatus, RouteView, SpeakerConfig, SpeakerError, SpeakerEvent,
};
use crate::fsm::Negotiated;
use crate::policy::PeerPolicy;
use crate::rib::export::ExportTarget;
use crate::rib::{BestChange, PathSelector, PeerId, PeerInfo, Rib, LOCAL_PEER};
use crate::wire::error::subcode;
use crate::wire::{Family, Nlri, Notification};
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

/// Prefixes whose paths are removed (and changes exported) at a time when
/// a peer goes away.
const REMOVAL_SLICE: usize = 4096;

/// Route batches queued between the peer tasks and the core.
const ROUTE_QUEUE_BATCHES: usize = 128;

/// How long shutdown waits for withdrawals to be written.
const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How long shutdown waits on a peer whose writer takes nothing more.
const SHUTDOWN_STALL_LIMIT: Duration = Duration::from_millis(500);

/// A change of how many prefixes a peer is sent, in total and IPv6.
#[derive(Default)]
struct SentDelta {
    all: i64,
    v6: i64,
}

impl SentDelta {
    fn add(&mut self, prefix: &IpNet, by: i64) {
        self.all += by;
        if matches!(prefix, IpNet::V6(_)) {
            self.v6 += by;
        }
    }

    fn apply(&self, st: &mut PeerStatus) {
        st.prefixes_sent = (st.prefixes_sent as i64 + self.all).max(0) as u64;
        st.prefixes_sent_v6 = (st.prefixes_sent_v6 as i64 + self.v6).max(0) as u64;
    }
}

struct Slot {
    config: PeerConfig,
    shared: Arc<PeerShared>,
    commands: mpsc::Sender<PeerCommand>,
    /// Commands the peer task's queue had no room for, in order: they go
    /// before any newer one, as room is made ([`Core::on_room`]).
    waiting: VecDeque<PeerCommand>,
    task: Supervised,
    export: Option<ExportTarget>,
    /// Generation of the stale-route timer; a newer Down or an Up bumps it.
    stale_generation: u64,
    /// Routes of the peer were kept as stale and may still be.
    has_stale: bool,
    max_prefix_warned: bool,
    /// Resets for exceeding the prefix limit in a row (an End-of-RIB
    /// within the limit ends the row).
    max_prefix_resets: u32,
    /// The established session, as numbered by the peer task.
    session: Option<u64>,
    /// The next hops of the routes the peer announced in this session.
    next_hops: smallvec::SmallVec<[IpAddr; 2]>,
}

struct Core {
    config: SpeakerConfig,
    rib: Rib,
    slots: HashMap<PeerId, Slot>,
    by_address: HashMap<IpAddr, PeerId>,
    next_id: PeerId,
    registry: Arc<Mutex<HashMap<IpAddr, Arc<PeerShared>>>>,
    events: broadcast::Sender<SpeakerEvent>,
    peer_tx: mpsc::Sender<PeerEvent>,
    route_tx: mpsc::Sender<RouteEvent>,
    listener_fd: Option<(i32, bool)>,
    shutting_down: bool,
    /// What this node originates goes out as draining (RFC 8326).
    draining: bool,
    /// One waiter per peer whose command queue is full: it ends with room
    /// for one command on that queue (or the queue closed).
    room: tokio::task::JoinSet<(
        PeerId,
        mpsc::Sender<PeerCommand>,
        Option<mpsc::OwnedPermit<PeerCommand>>,
    )>,
}

pub(crate) fn spawn(
    config: SpeakerConfig,
    commands: mpsc::Receiver<Command>,
    registry: Arc<Mutex<HashMap<IpAddr, Arc<PeerShared>>>>,
    events: broadcast::Sender<SpeakerEvent>,
    listener: Option<TcpListener>,
) {
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    // Route batches are one UPDATE's worth each (up to ~32 KiB decoded):
    // a short queue lets TCP push back on a peer sending faster than the
    // table takes routes in, instead of holding its table twice.
    let (route_tx, route_rx) = mpsc::channel(ROUTE_QUEUE_BATCHES);
    let listener_fd = listener
        .as_ref()
        .map(|l| (l.as_raw_fd(), l.local_addr().map(|a| a.is_ipv6()).unwrap_or(false)));
    if let Some(l) = listener {
        let tx = peer_tx.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, _)) => {
                        if tx.send(PeerEvent::Incoming(stream)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a BGP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let core = Core {
        rib: Rib::new(config.router_id),
        config,
        slots: HashMap::new(),
        by_address: HashMap::new(),
        next_id: 1,
        registry,
        events,
        peer_tx,
        route_tx,
        listener_fd,
        shutting_down: false,
        draining: false,
        room: tokio::task::JoinSet::new(),
    };
    tokio::spawn(core.run(commands, peer_rx, route_rx));
}

impl Core {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut peer_rx: mpsc::Receiver<PeerEvent>,
        mut route_rx: mpsc::Receiver<RouteEvent>,
    ) {
        loop {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown(message, grace, done)) => {
                        self.shutdown(&message, grace).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.shutdown("speaker stopped", Duration::ZERO).await;
                        return;
                    }
                },
                Some(Ok((id, queue, permit))) = self.room.join_next(), if !self.room.is_empty() => {
                    self.on_room(id, &queue, permit)
                }
                Some(ev) = peer_rx.recv() => self.on_peer_event(ev),
                Some(ev) = route_rx.recv() => self.on_route_event(ev),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::AddPeer(cfg, reply) => {
                let _ = reply.send(self.add_peer(*cfg));
            }
            Command::RemovePeer(addr, reply) => {
                let _ = reply.send(self.remove_peer(addr));
            }
            Command::Originate(prefix, attrs) => {
                let attrs = self.rib.intern(*attrs);
                let changes: Vec<BestChange> = self
                    .rib
                    .announce(LOCAL_PEER, Nlri::new(prefix), attrs)
                    .into_iter()
                    .collect();
                self.propagate(changes);
            }
            Command::WithdrawLocal(prefix) => {
                let changes: Vec<BestChange> = self.rib.withdraw(LOCAL_PEER, Nlri::new(prefix)).into_iter().collect();
                self.propagate(changes);
            }
            Command::Routes(prefix, limit, reply) => {
                let _ = reply.send(self.route_views(prefix, limit));
            }
            Command::RequestRefresh(addr) => {
                if let Some((id, slot)) = self
                    .by_address
                    .get(&addr)
                    .and_then(|id| Some((*id, self.slots.get(id)?)))
                {
                    for f in slot.config.families.clone() {
                        self.command(id, PeerCommand::SendRefresh(f));
                    }
                }
            }
            Command::Explain(prefix, peer, reply) => {
                let _ = reply.send(self.explain(prefix, peer));
            }
            Command::SetDraining(on, reply) => {
                self.set_draining(on);
                let _ = reply.send(());
            }
            Command::ResetPeer(addr, notification, idle_hold) => {
                if let Some(id) = self.by_address.get(&addr).copied() {
                    self.command(
                        id,
                        PeerCommand::Reset {
                            notification,
                            idle_hold,
                        },
                    );
                }
            }
            Command::ReleasePeer(addr) => {
                if let Some(id) = self.by_address.get(&addr).copied() {
                    self.command(id, PeerCommand::Release);
                }
            }
            Command::SetPolicies(addr, import, export, reply) => {
                let _ = reply.send(self.set_policies(addr, import, export));
            }
            Command::Reconfigure(local_as, router_id, done) => {
                self.reconfigure(local_as, router_id);
                let _ = done.send(());
            }
            Command::Shutdown(..) | Command::Leave(..) => unreachable!("handled in run"),
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        if self.by_address.contains_key(&cfg.address) {
            return Err(SpeakerError::PeerExists(cfg.address));
        }
        let id = self.next_id;
        self.next_id += 1;
        if let (Some((fd, v6)), Some(pw)) = (self.listener_fd, cfg.password.as_deref()) {
            if let Err(e) = super::transport::set_md5(fd, v6, cfg.address, Some(pw)) {
                tracing::error!(peer = %cfg.address, error = %e, "cannot install the TCP MD5 key on the listener");
            }
        }
        let shared = Arc::new(PeerShared {
            status: Mutex::new(PeerStatus::new(&cfg, self.config.local_as)),
            outbox: Mutex::new(Default::default()),
            wake: tokio::sync::Notify::new(),
        });
        let (tx, task) = self.spawn_peer_task(id, &cfg, &shared);
        self.registry
            .lock()
            .expect("peer registry")
            .insert(cfg.address, shared.clone());
        self.by_address.insert(cfg.address, id);
        tracing::info!(peer = %cfg.address, remote_as = cfg.remote_as, role = ?cfg.role, "peer configured");
        self.slots.insert(
            id,
            Slot {
                config: cfg,
                shared,
                commands: tx,
                waiting: VecDeque::new(),
                task,
                export: None,
                stale_generation: 0,
                has_stale: false,
                max_prefix_warned: false,
                max_prefix_resets: 0,
                session: None,
                next_hops: smallvec::SmallVec::new(),
            },
        );
        Ok(())
    }

    /// Starts a peer's session task under supervision: if it panics, the
    /// core hears of it and starts it again.
    fn spawn_peer_task(
        &self,
        id: PeerId,
        cfg: &PeerConfig,
        shared: &Arc<PeerShared>,
    ) -> (mpsc::Sender<PeerCommand>, Supervised) {
        let (tx, rx) = mpsc::channel(16);
        let ctx = PeerCtx {
            id,
            config: cfg.clone(),
            speaker: self.config.clone(),
            shared: shared.clone(),
            core: self.peer_tx.clone(),
            routes: self.route_tx.clone(),
            commands: rx,
            events: self.events.clone(),
        };
        let Supervised { abort, done } = supervise::spawn(peer::run(ctx));
        let report = self.peer_tx.clone();
        let done = tokio::spawn(async move {
            let panicked = done.await.ok().flatten();
            if let Some(message) = &panicked {
                let _ = report
                    .send(PeerEvent::TaskFailed {
                        id,
                        message: message.clone(),
                    })
                    .await;
            }
            panicked
        });
        (tx, Supervised { abort, done })
    }

    fn task_failed(&mut self, id: PeerId, message: String) {
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        let (cfg, shared) = (slot.config.clone(), slot.shared.clone());
        tracing::error!(peer = %cfg.address, panic = %message, "session task failed; the session is restarted");
        {
            let mut st = shared.status.lock().expect("peer status");
            st.set_state(crate::fsm::State::Idle);
            st.last_error = Some(format!("internal error, session restarted: {message}"));
        }
        self.peer_down(id, None, &[]);
        let (tx, task) = self.spawn_peer_task(id, &cfg, &shared);
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.commands = tx;
            slot.task = task;
            if !slot.waiting.is_empty() {
                self.wait_for_room(id);
            }
        }
    }

    fn remove_peer(&mut self, addr: IpAddr) -> Result<(), SpeakerError> {
        let id = self.by_address.remove(&addr).ok_or(SpeakerError::NoSuchPeer(addr))?;
        let slot = self.slots.remove(&id).expect("slot of a known address");
        self.registry.lock().expect("peer registry").remove(&addr);
        let stop = Notification::new(crate::wire::error::code::CEASE, subcode::PEER_DECONFIGURED);
        if slot.commands.try_send(PeerCommand::Stop(stop)).is_err() {
            slot.task.abort.abort();
        }
        if let (Some((fd, v6)), Some(_)) = (self.listener_fd, slot.config.password.as_deref()) {
            let _ = super::transport::set_md5(fd, v6, addr, None);
        }
        self.remove_paths(id, PathSelector::All);
        tracing::info!(peer = %addr, "peer removed");
        Ok(())
    }

    fn reconfigure(&mut self, local_as: u32, router_id: std::net::Ipv4Addr) {
        tracing::info!(
            from_as = self.config.local_as, to_as = local_as,
            from_router_id = %self.config.router_id, to_router_id = %router_id,
            "local AS / router id changed: every session starts over"
        );
        self.config.local_as = local_as;
        self.config.router_id = router_id;
        self.rib.set_peer(
            LOCAL_PEER,
            PeerInfo {
                address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                router_id,
                ibgp: false,
                local: true,
            },
        );
        let ids: Vec<PeerId> = self.slots.keys().copied().collect();
        for id in ids {
            self.slots[&id].shared.status.lock().expect("peer status").local_as = local_as;
            self.command(id, PeerCommand::Restart(Box::new(self.config.clone())));
        }
    }

    fn set_policies(&mut self, addr: IpAddr, import: PeerPolicy, export: PeerPolicy) -> Result<(), SpeakerError> {
        let id = *self.by_address.get(&addr).ok_or(SpeakerError::NoSuchPeer(addr))?;
        let slot = self.slots.get_mut(&id).expect("slot of a known address");
        slot.config.import = import.clone();
        slot.config.export = export.clone();
        let families = slot.config.families.clone();
        self.command(id, PeerCommand::SetImport(import));
        for f in families {
            self.command(id, PeerCommand::SendRefresh(f));
        }
        let slot = self.slots.get_mut(&id).expect("slot of a known address");
        let Some(target) = slot.export.as_mut() else {
            return Ok(());
        };
        // Export the table under the old and the new policy; send the
        // difference.
        let old_policy = std::mem::replace(&mut target.policy, export);
        let mut before = target.with_policy(old_policy);
        target.clear_cache();
        let mut delta = SentDelta::default();
        let mut out = slot.shared.outbox.lock().expect("outbox");
        for (prefix, entry) in self.rib.iter() {
            let Some(best) = entry.selection() else { continue };
            let src_ibgp = self.rib.peer(best.peer).is_some_and(|p| p.ibgp);
            let old = before.export(&prefix, &best, src_ibgp).ok();
            let new = target.export(&prefix, &best, src_ibgp).ok();
            queue_export(&mut out, &mut delta, prefix, old, new, best.peer == LOCAL_PEER);
        }
        drop(out);
        delta.apply(&mut slot.shared.status.lock().expect("peer status"));
        slot.shared.wake.notify_one();
        tracing::info!(peer = %addr, "policies replaced");
        Ok(())
    }

    /// Starts or ends the drain: every established peer is sent what this
    /// node originates again, with or without the drain's marks.
    fn set_draining(&mut self, on: bool) {
        if self.draining == on {
            return;
        }
        self.draining = on;
        tracing::info!(draining = on, "originated prefixes re-advertised");
        let local: Vec<IpNet> = self
            .rib
            .iter()
            .filter(|(_, e)| e.selection().is_some_and(|b| b.peer == LOCAL_PEER))
            .map(|(p, _)| p)
            .collect();
        for slot in self.slots.values_mut() {
            let Some(target) = slot.export.as_mut() else { continue };
            let mut before = target.with_policy(target.policy.clone());
            target.draining = on;
            target.clear_cache();
            let mut delta = SentDelta::default();
            let mut out = slot.shared.outbox.lock().expect("outbox");
            for prefix in &local {
                let Some(best) = self.rib.entry(prefix).and_then(|e| e.selection()) else {
                    continue;
                };
                let old = before.export(prefix, &best, false).ok();
                let new = target.export(prefix, &best, false).ok();
                queue_export(&mut out, &mut delta, *prefix, old, new, true);
            }
            drop(out);
            delta.apply(&mut slot.shared.status.lock().expect("peer status"));
            slot.shared.wake.notify_one();
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Incoming(stream) => {
                let from = stream.peer_addr().ok();
                let remote = from.map(|a| a.ip().to_canonical());
                match remote.and_then(|ip| self.by_address.get(&ip).map(|id| (ip, *id))) {
                    Some((ip, id)) => {
                        let slot = &self.slots[&id];
                        if !arrived_on_its_interface(from, slot.config.interface.as_deref()) {
                            tracing::warn!(remote = ?from, interface = ?slot.config.interface, "connection from a link-local peer's address on another interface refused");
                            return;
                        }
                        tracing::trace!(peer = %ip, "incoming connection");
                        self.command(id, PeerCommand::Connection(stream));
                    }
                    None => {
                        tracing::debug!(remote = ?remote, "connection from an unconfigured address refused");
                    }
                }
            }
            PeerEvent::Up {
                id,
                session,
                negotiated,
                local,
            } => self.peer_up(id, session, *negotiated, local),
            PeerEvent::Down {
                id,
                keep_stale_for,
                stale_families,
            } => self.peer_down(id, keep_stale_for, &stale_families),
            PeerEvent::RefreshRequested { id, family } => {
                tracing::info!(peer = id, %family, "route refresh requested by peer");
                self.dump_to(id, Some(family));
            }
            PeerEvent::TaskFailed { id, message } => self.task_failed(id, message),
            PeerEvent::SweepStale { id, generation } => {
                if self.slots.get(&id).is_some_and(|s| s.stale_generation == generation) {
                    let swept = self.remove_paths(id, PathSelector::Stale);
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.has_stale = false;
                    }
                    tracing::info!(peer = id, swept, "graceful restart time over: stale routes swept");
                }
            }
        }
    }

    /// Route batches and End-of-RIB of the session the core knows as up.
    fn on_route_event(&mut self, ev: RouteEvent) {
        let (id, session) = match &ev {
            RouteEvent::Routes { id, session, .. } | RouteEvent::EndOfRib { id, session, .. } => (*id, *session),
        };
        if self.slots.get(&id).and_then(|s| s.session) != Some(session) {
            return;
        }
        match ev {
            RouteEvent::Routes { announce, withdraw, .. } => self.routes_in(id, announce, withdraw),
            RouteEvent::EndOfRib { family, .. } => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.max_prefix_resets = 0;
                    let _ = self.events.send(SpeakerEvent::EndOfRib {
                        address: slot.config.address,
                        family,
                    });
                }
                let swept = self.remove_paths(id, PathSelector::StaleOf(family));
                if swept > 0 {
                    tracing::info!(peer = id, %family, swept, "stale routes swept after End-of-RIB");
                }
            }
        }
    }

    fn peer_up(&mut self, id: PeerId, session: u64, n: Negotiated, local: SocketAddr) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.session = Some(session);
        let families: Vec<Family> = n
            .families
            .iter()
            .copied()
            .filter(|f| slot.config.families.contains(f))
            .collect();
        let local_ip = local.ip().to_canonical();
        let (mut v4, mut v6) = (None, None);
        match local_ip {
            IpAddr::V4(a) => v4 = Some(a),
            IpAddr::V6(a) => v6 = Some(a),
        }
        // The family the session does not run over takes its next hop
        // from the interface of the session's own address.
        // (IPv4 over an IPv6 session with extended next hops takes the
        // session's own IPv6 address, RFC 8950.)
        let wants = |f: Family| families.contains(&f);
        let need_v4 = v4.is_none() && wants(Family::IPV4_UNICAST) && !n.extended_next_hop_v4;
        let need_v6 = v6.is_none() && wants(Family::IPV6_UNICAST);
        if need_v4 || need_v6 {
            match super::transport::interface_of(local_ip) {
                Some(beside) => {
                    if need_v4 {
                        v4 = beside.v4;
                    }
                    if need_v6 {
                        v6 = beside.v6;
                    }
                    for (family, missing) in [
                        (Family::IPV4_UNICAST, need_v4 && v4.is_none()),
                        (Family::IPV6_UNICAST, need_v6 && v6.is_none()),
                    ] {
                        if missing {
                            tracing::warn!(peer = %slot.config.address, %family, interface = %beside.name, local = %local_ip,
                                "family negotiated, but the session's interface has no address of it for the next hop: its routes are not sent to this peer");
                        }
                    }
                }
                None => tracing::warn!(peer = %slot.config.address, local = %local_ip,
                    "no interface holds the session's local address: routes of the other family are not sent to this peer"),
            }
        }
        let mut target = ExportTarget::new(
            id,
            self.config.local_as,
            n.remote_as,
            slot.config.export.clone(),
            families,
            v4,
            v6,
            n.extended_next_hop_v4,
        );
        target.draining = self.draining;
        target.transparent = slot.config.role == PeerRole::RouteServerClient;
        slot.export = Some(target);
        self.rib.set_peer(
            id,
            PeerInfo {
                address: slot.config.address,
                router_id: n.remote_id,
                ibgp: n.remote_as == self.config.local_as,
                local: false,
            },
        );
        // The stale timer keeps running until End-of-RIB; it is not reset.
        // Stale routes of a family the restarted peer did not keep its
        // forwarding state for (no graceful-restart capability, or the F
        // bit clear) go now (RFC 4724 4.2).
        let families = if slot.has_stale {
            slot.config.families.clone()
        } else {
            Vec::new()
        };
        for f in families {
            let kept = n
                .peer_graceful_restart
                .as_ref()
                .is_some_and(|gr| gr.families.iter().any(|g| g.family == f && g.forwarding_preserved));
            if !kept {
                let swept = self.remove_paths(id, PathSelector::StaleOf(f));
                if swept > 0 {
                    tracing::info!(peer = id, family = %f, swept, "peer restarted without forwarding state: stale routes removed");
                }
            }
        }
        self.dump_to(id, None);
    }

    fn peer_down(&mut self, id: PeerId, keep_stale_for: Option<Duration>, stale_families: &[Family]) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.session = None;
        slot.export = None;
        slot.max_prefix_warned = false;
        {
            let mut out = slot.shared.outbox.lock().expect("outbox");
            out.pending.clear();
            out.end_of_rib.clear();
            out.local.clear();
        }
        {
            let mut st = slot.shared.status.lock().expect("peer status");
            st.prefixes_sent = 0;
            st.prefixes_sent_v6 = 0;
        }
        slot.stale_generation += 1;
        match keep_stale_for {
            Some(d) if !self.shutting_down => {
                let n = self.rib.mark_stale(id);
                slot.has_stale = n > 0;
                tracing::info!(peer = %slot.config.address, stale = n, seconds = d.as_secs(), "peer restarting: routes kept as stale");
                let generation = slot.stale_generation;
                let families = slot.config.families.clone();
                let tx = self.peer_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = tx.send(PeerEvent::SweepStale { id, generation }).await;
                });
                // Only the families the peer's capability listed are kept.
                for f in families.into_iter().filter(|f| !stale_families.contains(f)) {
                    self.remove_paths(id, PathSelector::StaleOf(f));
                }
            }
            _ => {
                slot.has_stale = false;
                let lost = std::mem::take(&mut slot.next_hops);
                self.tell_next_hops_lost(id, lost);
                self.remove_paths(id, PathSelector::All);
            }
        }
        self.publish_received(id);
    }

    /// Tells the route sink which of a downed peer's next hops no other
    /// established peer announces, before its routes are removed.
    fn tell_next_hops_lost(&self, id: PeerId, mut lost: smallvec::SmallVec<[IpAddr; 2]>) {
        let Some(sink) = &self.config.route_sink else { return };
        lost.retain(|nh| {
            !self
                .slots
                .iter()
                .any(|(other, s)| *other != id && s.session.is_some() && s.next_hops.contains(nh))
        });
        if !lost.is_empty() {
            tracing::info!(peer = id, next_hops = ?lost, "peer down: its next hops are told to the FIB first");
            (sink.0)(super::SinkEvent::NextHopsLost(lost.to_vec()));
        }
    }

    fn routes_in(&mut self, id: PeerId, announce: AttrRuns, withdraw: Vec<Nlri>) {
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        if slot.config.max_prefix > 0 && !slot.config.max_prefix_warning_only {
            let after = FamilyCounts::after(&self.rib, id, &announce, &withdraw);
            if let Some(family) = after.exceeded(slot.config.max_prefix as usize) {
                self.prefix_limit_reset(id, family, after);
                return;
            }
        }
        let mut changes = Vec::new();
        for n in withdraw {
            changes.extend(self.rib.withdraw(id, n));
        }
        if let Some(slot) = self.slots.get_mut(&id) {
            for (attrs, _) in &announce {
                if let Some(nh) = attrs.next_hop {
                    if !slot.next_hops.contains(&nh) {
                        slot.next_hops.push(nh);
                    }
                }
            }
        }
        for (attrs, prefixes) in &announce {
            self.rib.announce_all(id, attrs, prefixes, &mut changes);
        }
        self.propagate(changes);
        self.publish_received(id);
        self.warn_prefix_limit(id);
    }

    /// Removes a peer's paths that `which` selects, a slice of prefixes
    /// at a time, each slice exported before the next: losing a full-table
    /// peer never holds a full table of changes at once. Returns the number
    /// of prefixes whose selection changed.
    fn remove_paths(&mut self, id: PeerId, which: PathSelector) -> usize {
        let prefixes = self.rib.prefixes_with(id, which);
        let mut changed = 0;
        for slice in prefixes.chunks(REMOVAL_SLICE) {
            let changes = self.rib.remove_paths(id, which, slice);
            changed += changes.len();
            self.propagate(changes);
        }
        changed
    }

    /// A warning-only limit: logged once per session when a family
    /// passes it.
    fn warn_prefix_limit(&mut self, id: PeerId) {
        let counts = FamilyCounts::of(&self.rib, id);
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let limit = slot.config.max_prefix;
        if let Some(family) = counts.exceeded(limit as usize) {
            if !slot.max_prefix_warned {
                slot.max_prefix_warned = true;
                tracing::warn!(peer = %slot.config.address, %family, v4 = counts.v4, v6 = counts.v6, limit, "peer exceeds its prefix limit");
            }
        }
    }

    /// A batch would take a family past the peer's limit: the batch is
    /// dropped, later batches of the session too, and the session is reset
    /// and held down.
    fn prefix_limit_reset(&mut self, id: PeerId, family: Family, counts: FamilyCounts) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let limit = slot.config.max_prefix;
        slot.max_prefix_resets += 1;
        let hold = prefix_limit::idle_hold(slot.config.max_prefix_idle_hold, slot.max_prefix_resets);
        tracing::warn!(
            peer = %slot.config.address, %family, v4 = counts.v4, v6 = counts.v6, limit,
            idle_hold_seconds = hold.as_secs(),
            "peer exceeds its prefix limit: closing the session"
        );
        slot.shared.status.lock().expect("peer status").last_error = Some(format!(
            "{family} prefixes over the limit of {limit}: session closed, restarting in {} s",
            hold.as_secs()
        ));
        slot.session = None;
        self.command(
            id,
            PeerCommand::Reset {
                notification: prefix_limit::notification(family, limit),
                idle_hold: Some(hold),
            },
        );
    }

    /// Hands a command to a peer's task, never dropping it: with the task's
    /// queue full, it waits (with those after it, in order) until the task
    /// makes room. A task that has ended takes nothing; its restart starts
    /// from the slot's configuration.
    fn command(&mut self, id: PeerId, cmd: PeerCommand) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if !slot.waiting.is_empty() {
            slot.waiting.push_back(cmd);
            return;
        }
        match slot.commands.try_send(cmd) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                tracing::debug!(peer = %slot.config.address, "peer task's command queue full: commands wait in order");
                slot.waiting.push_back(cmd);
                self.wait_for_room(id);
            }
        }
    }

    fn wait_for_room(&mut self, id: PeerId) {
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        let queue = slot.commands.clone();
        self.room
            .spawn(async move { (id, queue.clone(), queue.reserve_owned().await.ok()) });
    }

    /// Room in a peer's queue: the waiting commands go, in order, as far as
    /// it goes; the rest wait again.
    fn on_room(
        &mut self,
        id: PeerId,
        queue: &mpsc::Sender<PeerCommand>,
        permit: Option<mpsc::OwnedPermit<PeerCommand>>,
    ) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if !queue.same_channel(&slot.commands) {
            // A restarted task's new queue has its own waiter.
            return;
        }
        let Some(permit) = permit else {
            // The task ended; its restart begins from the configuration.
            slot.waiting.clear();
            return;
        };
        let Some(first) = slot.waiting.pop_front() else {
            return;
        };
        permit.send(first);
        while let Some(cmd) = slot.waiting.pop_front() {
            match slot.commands.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    slot.waiting.clear();
                    return;
                }
                Err(mpsc::error::TrySendError::Full(cmd)) => {
                    slot.waiting.push_front(cmd);
                    self.wait_for_room(id);
                    return;
                }
            }
        }
    }

    fn publish_received(&self, id: PeerId) {
        if let Some(slot) = self.slots.get(&id) {
            let mut st = slot.shared.status.lock().expect("peer status");
            st.prefixes_received = self.rib.paths_from(id) as u64;
            st.prefixes_received_v6 = self.rib.paths_from_v6(id) as u64;
        }
    }

    /// Sends a peer everything it should have (session up, route refresh).
    fn dump_to(&mut self, id: PeerId, only: Option<Family>) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(target) = slot.export.as_mut() else {
            return;
        };
        let mut delta = SentDelta::default();
        {
            let mut out = slot.shared.outbox.lock().expect("outbox");
            for (prefix, entry) in self.rib.iter() {
                if only.is_some_and(|f| f != Family::of(&prefix)) {
                    continue;
                }
                let Some(best) = entry.selection() else { continue };
                let source_ibgp = self.rib.peer(best.peer).is_some_and(|p| p.ibgp);
                let new = target.export(&prefix, &best, source_ibgp).ok();
                queue_export(&mut out, &mut delta, prefix, None, new, best.peer == LOCAL_PEER);
            }
            let families = match only {
                Some(f) => vec![f],
                None => target.families.clone(),
            };
            out.end_of_rib.extend(families);
        }
        if only.is_none() {
            // A refresh of one family re-sends what the peer has already.
            let mut st = slot.shared.status.lock().expect("peer status");
            st.prefixes_sent = delta.all.max(0) as u64;
            st.prefixes_sent_v6 = delta.v6.max(0) as u64;
        }
        slot.shared.wake.notify_one();
    }

    /// Exports selection changes to every established peer.
    fn propagate(&mut self, changes: Vec<BestChange>) {
        if changes.is_empty() {
            return;
        }
        for slot in self.slots.values_mut() {
            let Some(target) = slot.export.as_mut() else {
                continue;
            };
            let mut delta = SentDelta::default();
            let mut touched = false;
            let mut out = slot.shared.outbox.lock().expect("outbox");
            for c in &changes {
                let export = |t: &mut ExportTarget, b: &Option<crate::rib::Best>| {
                    b.as_ref().and_then(|b| {
                        let src_ibgp = self.rib.peer(b.peer).is_some_and(|p| p.ibgp);
                        t.export(&c.prefix, b, src_ibgp).ok()
                    })
                };
                let old = export(target, &c.old);
                let new = export(target, &c.best);
                let local = c.best.as_ref().or(c.old.as_ref()).is_some_and(|b| b.peer == LOCAL_PEER);
                touched |= queue_export(&mut out, &mut delta, c.prefix, old, new, local);
            }
            drop(out);
            if touched {
                delta.apply(&mut slot.shared.status.lock().expect("peer status"));
                slot.shared.wake.notify_one();
            }
        }
        if let Some(sink) = &self.config.route_sink {
            (sink.0)(super::SinkEvent::Changes(Arc::new(changes)));
        }
    }

    fn explain(&mut self, prefix: IpNet, peer: IpAddr) -> super::Explanation {
        let mut out = super::Explanation {
            prefix,
            peer,
            advertised: false,
            reason: String::new(),
            as_path: None,
            next_hop: None,
            best_from: None,
        };
        let Some(id) = self.by_address.get(&peer).copied() else {
            out.reason = format!("{peer} is not a configured peer");
            return out;
        };
        let best = self.rib.entry(&prefix).and_then(|e| e.selection());
        out.best_from = best.as_ref().map(|b| {
            if b.peer == LOCAL_PEER {
                "local".to_string()
            } else {
                self.slots
                    .get(&b.peer)
                    .map(|s| s.config.address.to_string())
                    .unwrap_or_else(|| format!("peer#{}", b.peer))
            }
        });
        let Some(best) = best else {
            out.reason = format!("no route for {prefix} in the table");
            return out;
        };
        let src_ibgp = self.rib.peer(best.peer).is_some_and(|p| p.ibgp);
        let slot = self.slots.get_mut(&id).expect("slot of a known address");
        let Some(target) = slot.export.as_mut() else {
            out.reason = format!("the session with {peer} is not established");
            return out;
        };
        match target.export(&prefix, &best, src_ibgp) {
            Ok(attrs) => {
                out.advertised = true;
                out.reason = format!("advertised (export policy {})", target.policy.name());
                out.as_path = Some(attrs.as_path.to_string());
                out.next_hop = attrs.next_hop;
            }
            Err(d) => out.reason = d.reason.to_string(),
        }
        out
    }

    fn route_views(&mut self, only: Option<IpNet>, limit: usize) -> Vec<RouteView> {
        let mut views = self.path_views(only, limit);
        let mut peers: Vec<(IpAddr, Vec<Family>)> = self
            .by_address
            .iter()
            .filter_map(|(a, id)| Some((*a, self.slots.get(id)?.config.families.clone())))
            .collect();
        peers.sort_by_key(|(a, _)| *a);
        for v in &mut views {
            if v.paths.first().is_some_and(|p| p.best && p.from == "local") {
                // Peers configured for the prefix's family.
                let family = Family::of(&v.prefix);
                v.exports = peers
                    .iter()
                    .filter(|(_, families)| families.contains(&family))
                    .map(|(peer, _)| {
                        let e = self.explain(v.prefix, *peer);
                        super::ExportView {
                            peer: *peer,
                            advertised: e.advertised,
                            reason: if e.advertised { String::new() } else { e.reason },
                        }
                    })
                    .collect();
            }
        }
        views
    }

    fn path_views(&self, only: Option<IpNet>, limit: usize) -> Vec<RouteView> {
        let describe_peer = |id: PeerId| -> String {
            if id == LOCAL_PEER {
                "local".into()
            } else {
                self.slots
                    .get(&id)
                    .map(|s| s.config.address.to_string())
                    .unwrap_or_else(|| format!("peer#{id}"))
            }
        };
        let view = |prefix: &IpNet| -> Option<RouteView> {
            let entry = self.rib.entry(prefix)?;
            let multipath = entry.forwarding().len();
            let paths = self
                .rib
                .explain(prefix)
                .into_iter()
                .enumerate()
                .map(|(i, (p, step))| PathView {
                    from: describe_peer(p.peer()),
                    best: i == 0,
                    multipath: i > 0 && i < multipath,
                    path_id: p.path_id,
                    stale: p.stale(),
                    next_hop: p.attrs.next_hop,
                    as_path: p.attrs.as_path.to_string(),
                    local_pref: p.attrs.local_pref,
                    med: p.attrs.med,
                    origin: format!("{:?}", p.attrs.origin).to_lowercase(),
                    communities: p
                        .attrs
                        .communities
                        .iter()
                        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                        .collect(),
                    lost_at: step.map(|s| s.describe().to_string()),
                })
                .collect();
            Some(RouteView {
                prefix: *prefix,
                paths,
                exports: Vec::new(),
            })
        };
        match only {
            Some(p) => view(&p).into_iter().collect(),
            None => first_in_order(self.rib.iter().map(|(p, _)| p), limit)
                .iter()
                .filter_map(view)
                .collect(),
        }
    }

    /// Closes every session without a NOTIFICATION and withdraws nothing:
    /// the peers, graceful-restart helpers, keep this node's routes as
    /// stale and the kernel keeps theirs, until the next agent takes over.
    async fn leave(&mut self) {
        self.shutting_down = true;
        self.stop_peer_tasks(|| PeerCommand::Leave).await;
    }

    /// Tells every peer task to end (`command`) and waits for them, bounded.
    async fn stop_peer_tasks(&mut self, command: impl Fn() -> PeerCommand) {
        let mut tasks = Vec::new();
        for (_, slot) in self.slots.drain() {
            let _ = slot.commands.send(command()).await;
            tasks.push(slot.task);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH_LIMIT;
        for t in tasks {
            if tokio::time::timeout_at(deadline, t.done).await.is_err() {
                t.abort.abort();
            }
        }
    }

    async fn shutdown(&mut self, message: &str, grace: Duration) {
        self.shutting_down = true;
        let local: Vec<IpNet> = self
            .rib
            .iter()
            .filter(|(_, e)| e.paths().iter().any(|p| p.peer() == LOCAL_PEER))
            .map(|(p, _)| p)
            .collect();
        let mut changes = Vec::new();
        for p in local {
            changes.extend(self.rib.withdraw(LOCAL_PEER, Nlri::new(p)));
        }
        self.propagate(changes);
        // Wait until every outbox is drained into the writers. A session
        // that went down meanwhile (its peer gone) has no writer to wait
        // on, and one whose writer took nothing for a while (a peer that
        // stopped reading) is not waited on either.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH_LIMIT;
        let mut progress: HashMap<PeerId, (usize, tokio::time::Instant)> = HashMap::new();
        loop {
            let now = tokio::time::Instant::now();
            let mut waiting = false;
            for (id, s) in &self.slots {
                let left = s.shared.outbox.lock().expect("outbox").pending.len();
                if s.export.is_none() || !established(s) || left == 0 {
                    continue;
                }
                let seen = progress.entry(*id).or_insert((left, now));
                if seen.0 != left {
                    *seen = (left, now);
                }
                waiting |= now.duration_since(seen.1) < SHUTDOWN_STALL_LIMIT;
            }
            if !waiting || now >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The grace period keeps this node forwarding while the fabric
        // moves away; once no session is up there is no one to wait for.
        if !grace.is_zero() && self.slots.values().any(established) {
            tracing::info!(
                seconds = grace.as_secs_f64(),
                "withdrawals sent; waiting the disconnect grace period"
            );
            let end = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < end && self.slots.values().any(established) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let cease = Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, message);
        self.stop_peer_tasks(|| PeerCommand::Stop(cease.clone())).await;
    }
}

/// Whether a peer's session is Established now (as its task last said).
fn established(s: &Slot) -> bool {
    s.shared.status.lock().expect("peer status").fsm_state == crate::fsm::State::Established
}

/// Queues what a peer must be told about one prefix, given what it was
/// exported before (`old`) and what it is exported now (`new`): an
/// announcement, a withdrawal or nothing; the sent count moves with it and
/// a prefix this node originates (`local`) is reported once written. The
/// one place every export (a selection change, a session's first dump, a
/// refresh, a policy change) goes through. Returns whether anything was
/// queued.
fn queue_export(
    out: &mut super::Outbox,
    delta: &mut SentDelta,
    prefix: IpNet,
    old: Option<Arc<crate::wire::PathAttributes>>,
    new: Option<Arc<crate::wire::PathAttributes>>,
    local: bool,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) if Arc::ptr_eq(&o, &n) || o == n => false,
        (old, Some(n)) => {
            if old.is_none() {
                delta.add(&prefix, 1);
            }
            out.pending.announce(prefix, n);
            if local {
                out.local.push((prefix, false));
            }
            true
        }
        (Some(_), None) => {
            delta.add(&prefix, -1);
            out.pending.withdraw(prefix);
            if local {
                out.local.push((prefix, true));
            }
            true
        }
        (None, None) => false,
    }
}

/// The `limit` smallest prefixes, in order, holding at most `limit` at a
/// time.
fn first_in_order(prefixes: impl Iterator<Item = IpNet>, limit: usize) -> Vec<IpNet> {
    if limit == usize::MAX {
        let mut all: Vec<IpNet> = prefixes.collect();
        all.sort();
        return all;
    }
    let mut heap = std::collections::BinaryHeap::with_capacity(limit.min(1 << 16) + 1);
    for p in prefixes {
        if heap.len() < limit {
            heap.push(p);
        } else if heap.peek().is_some_and(|top| p < *top) {
            heap.pop();
            heap.push(p);
        }
    }
    heap.into_sorted_vec()
}

/// Whether a connection from a link-local (unnumbered) peer's address came
/// in on that peer's interface: the same link-local address may exist on
/// every link. Other peers' connections always qualify.
fn arrived_on_its_interface(from: Option<std::net::SocketAddr>, interface: Option<&str>) -> bool {
    match (from, interface) {
        (Some(std::net::SocketAddr::V6(v6)), Some(name)) if v6.ip().is_unicast_link_local() => {
            super::transport::interface_index(name).is_ok_and(|i| i == v6.scope_id())
        }
        _ => true,
    }
}

#[cfg(test)]
mod first_tests {
    use super::*;

    #[test]
    fn the_first_prefixes_come_in_order_and_no_more() {
        let all: Vec<IpNet> = (0..200u32)
            .rev()
            .map(|i| IpNet::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24).unwrap())
            .collect();
        let first = first_in_order(all.iter().copied(), 3);
        assert_eq!(
            first,
            ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"].map(|s| s.parse::<IpNet>().unwrap())
        );
        assert!(first_in_order(all.iter().copied(), 0).is_empty());
        assert_eq!(first_in_order(all.iter().copied(), usize::MAX).len(), 200);
    }
}
