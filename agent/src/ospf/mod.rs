//! The OSPF mode (`routing.protocol: ospf`): a task of its own keeps the
//! ospfd sidecar at the state worked out by [`desired`] (the
//! configuration's interfaces, the owners' interface requests, the
//! injection interface of [`injection`] with the PodCIDRs and the owners'
//! OSPF prefixes), reports ([`requests`]) an outcome per request and what
//! the sidecar tells (FRR_CONNECTED / FRR_DISCONNECTED, OSPF_NEIGHBOR_UP /
//! DOWN: up means Full), and keeps a snapshot for GetStatus, `novanetctl
//! routing ospf`, `/status/ospf`, the metrics and `/readyz`. It knows
//! nothing of the control plane: the requests come in through
//! [`Ospf::request`], the reports go out on a channel.
//!
//! vtysh is a program, so the task is a thread; it polls the sidecar
//! every [`POLL`] (connection and neighbors; interface states when they
//! may have changed), applies at once when woken
//! (an intent changed), and checks the whole running configuration every
//! [`RESYNC`]. Routes ospfd learns are installed by the sidecar's zebra
//! (protocol `ospf`); the agent's FIB writer never touches them.

pub mod desired;
pub mod injection;
pub mod requests;

use desired::{Plan, Settings, CONFIG_OWNER};
use novanet_ospf_bridge::bridge::{Bridge, Change, Key, Report as SyncReport};
use novanet_ospf_bridge::command::Version;
use novanet_ospf_bridge::readback::Neighbor;
use novanet_ospf_bridge::vtysh::Vtysh;
use novanet_proto::api::EventType;
use requests::{Item, Outcome, Report, Reports, Requests};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the sidecar's connection and neighbors are read (each read
/// is a vtysh run per daemon).
pub const POLL: Duration = Duration::from_secs(2);
/// How often the whole running configuration is compared.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon an apply that FRR partly refused is tried again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How many polls at most go by between two reads of ospfd's interface
/// states (they are read at once after an apply or a neighbor change).
pub const INTERFACE_READ_EVERY: u32 = 5;
/// How long a withdrawal on shutdown waits for ospfd to drop the injected
/// networks from its router LSAs (it may wait out its minimum LSA
/// interval, 5 s, first).
pub const WITHDRAW_WAIT: Duration = Duration::from_secs(10);

/// An interface as the sidecar runs it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub interface_name: String,
    /// `ospfv2` or `ospfv3`.
    pub version: &'static str,
    pub area_id: String,
    /// ospfd's interface state (`DR`, `Backup`, `DROther`, `Waiting`,
    /// `Point-To-Point`...), `pending` or `failed: ...` until it runs.
    pub state: String,
    pub passive: bool,
    pub cost: u32,
    /// Neighbors on the interface in any state.
    pub neighbors: u32,
    pub owner: String,
}

/// An adjacency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NeighborStatus {
    pub router_id: String,
    pub address: String,
    pub interface_name: String,
    pub version: &'static str,
    pub state: String,
    pub role: String,
    pub owner: String,
}

/// The OSPF side of the node, as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OspfStatus {
    pub socket_dir: String,
    pub connected: bool,
    /// FRR's version line.
    pub version: String,
    /// Unix seconds of the last connection.
    pub connected_since: Option<u64>,
    pub interfaces: Vec<InterfaceStatus>,
    pub neighbors: Vec<NeighborStatus>,
    /// The prefixes on the injection interface.
    pub injected: Vec<String>,
    /// What failed last, if anything.
    pub last_error: Option<String>,
}

enum Wake {
    Requests(Box<Requests>),
    Settings(Box<Settings>),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// The OSPF task's handle.
#[derive(Clone)]
pub struct Ospf {
    status: Arc<Mutex<OspfStatus>>,
    wake: mpsc::Sender<Wake>,
}

impl Ospf {
    /// Starts the task for the node's settings, driving the sidecar whose
    /// vty sockets are in `socket_dir`.
    pub fn start(settings: Settings, socket_dir: PathBuf, reports: Reports) -> anyhow::Result<Ospf> {
        let (wake, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(OspfStatus {
            socket_dir: socket_dir.display().to_string(),
            ..Default::default()
        }));
        let runtime = tokio::runtime::Handle::current();
        let injection = {
            let _entered = runtime.enter();
            injection::Injection::new(&settings.injection_interface)?
        };
        let task = Task {
            settings,
            bridge: Bridge::new(Vtysh::new(&socket_dir)),
            injection,
            runtime,
            requests: Requests::default(),
            reports,
            outcomes: BTreeMap::new(),
            status: status.clone(),
            full: BTreeMap::new(),
            plan: Plan::default(),
            injected_ok: false,
            logged_probe_error: None,
            live: Vec::new(),
            live_neighbors: Vec::new(),
            polls_since_live: INTERFACE_READ_EVERY,
        };
        std::thread::Builder::new()
            .name("ospf-bridge".into())
            .spawn(move || task.run(rx))?;
        Ok(Ospf { status, wake })
    }

    /// The owners' requests as they stand now, applied at once.
    pub fn request(&self, requests: Requests) {
        let _ = self.wake.send(Wake::Requests(Box::new(requests)));
    }

    /// Follows the running configuration: each new one's OSPF settings
    /// are applied at once.
    pub fn follow_config(&self, mut config: crate::config::ConfigRx) {
        let wake = self.wake.clone();
        config.mark_unchanged();
        tokio::spawn(async move {
            while config.changed().await.is_ok() {
                let settings = desired::Settings::from_config(&config.borrow_and_update());
                match settings {
                    Ok(s) => {
                        let _ = wake.send(Wake::Settings(Box::new(s)));
                    }
                    Err(e) => tracing::error!(error = %e, "routing.ospf not reloaded"),
                }
            }
        });
    }

    /// The state as last seen.
    pub fn status(&self) -> OspfStatus {
        self.status.lock().expect("ospf status").clone()
    }

    /// Withdraws the injected prefixes from OSPF (bounded by
    /// [`WITHDRAW_WAIT`]) and stops the task.
    pub async fn withdraw_and_stop(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.wake.send(Wake::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Task {
    settings: Settings,
    bridge: Bridge,
    injection: injection::Injection,
    runtime: tokio::runtime::Handle,
    /// The owners' requests as last told.
    requests: Requests,
    reports: Reports,
    /// Each request's outcome as last reported.
    outcomes: BTreeMap<Item, Outcome>,
    status: Arc<Mutex<OspfStatus>>,
    /// Full adjacencies by (version, router id, interface).
    full: BTreeMap<(Version, String, String), Neighbor>,
    plan: Plan,
    /// Whether the kernel side of the injection holds.
    injected_ok: bool,
    /// The probe error last logged.
    logged_probe_error: Option<String>,
    /// ospfd's interface states as last read, the neighbors they were read
    /// with, and the polls since.
    live: Vec<(Version, novanet_ospf_bridge::readback::InterfaceState)>,
    live_neighbors: Vec<(Version, Neighbor)>,
    polls_since_live: u32,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Task {
    fn run(mut self, rx: mpsc::Receiver<Wake>) {
        let mut next_resync = Instant::now();
        let mut apply = true;
        loop {
            let now = Instant::now();
            let mut due = apply || self.bridge.needs_sync() || now >= next_resync;
            if !due {
                let changes = self.bridge.check(self.plan.desired.has_v3());
                self.publish(&changes);
                // Back, or restarted: everything is written again now.
                due = self.bridge.needs_sync();
            }
            if due {
                let complete = self.apply(true);
                next_resync = Instant::now() + if complete { RESYNC } else { RETRY };
            }
            self.log_probe_error();
            self.neighbor_events();
            self.read_interfaces(due);
            self.refresh_status();
            apply = false;
            let first = match rx.recv_timeout(POLL) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // A burst of wakes is one apply.
            for w in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match w {
                    Wake::Requests(r) => self.requests = *r,
                    Wake::Settings(s) => {
                        if self.settings.injection_interface != s.injection_interface {
                            if let Err(e) = self.runtime.block_on(self.injection.remove()) {
                                tracing::warn!(error = %e, "the old OSPF injection interface stays");
                            }
                            self.injection.rename(&s.injection_interface);
                        }
                        self.settings = *s;
                    }
                    Wake::Stop(done) => return self.stop(done),
                }
            }
            apply = true;
        }
    }

    /// Says once why the sidecar does not answer (until it does).
    fn log_probe_error(&mut self) {
        let now = self.bridge.probe_error().map(str::to_string);
        if now != self.logged_probe_error {
            if let Some(e) = &now {
                tracing::warn!(error = %e, socket_dir = %self.status.lock().expect("ospf status").socket_dir, "the ospfd sidecar does not answer");
            }
            self.status.lock().expect("ospf status").last_error = now.clone();
            self.logged_probe_error = now;
        }
    }

    /// Works out the plan and brings kernel and sidecar to it; false when
    /// something was not applied.
    fn apply(&mut self, injecting: bool) -> bool {
        self.plan = desired::plan(&self.settings, &self.requests, injecting);
        let mut errors = Vec::new();
        // The kernel first: ospfd learns the addresses through zebra.
        let injected = self.plan.injected();
        self.injected_ok = match self.runtime.block_on(self.injection.sync(&injected)) {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        let report = match self.bridge.sync(&self.plan.desired) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.to_string());
                SyncReport::default()
            }
        };
        self.publish(&report.changes);
        if let Some(e) = &report.router_failed {
            errors.push(format!("router id: {e}"));
        }
        if let Some(e) = &report.filter_failed {
            errors.push(format!("import filter: {e}"));
        }
        for ((version, name), e) in &report.failed {
            errors.push(format!("{} {name}: {e}", version.name()));
        }
        if !errors.is_empty() {
            tracing::warn!(errors = %errors.join("; "), "OSPF sidecar not at the desired state");
        }
        let last = match errors.is_empty() {
            false => Some(errors.join("; ")),
            // Not answering is said by log_probe_error, and stays said.
            true => self.bridge.probe_error().map(str::to_string),
        };
        self.status.lock().expect("ospf status").last_error = last;
        self.record_states(&report);
        errors.is_empty()
    }

    /// The outcome of every request, reported.
    fn record_states(&mut self, report: &SyncReport) {
        let connected = self.bridge.connected();
        let mut states: BTreeMap<Item, Outcome> = BTreeMap::new();
        for (key, why) in &self.plan.refused {
            states.insert(key.clone(), Outcome::Failed(why.clone()));
        }
        for key in self.plan.desired.interfaces.keys() {
            let Some(intent) = self.plan.intent_of(key) else {
                continue;
            };
            let state = match report.failed.get(key) {
                Some(e) => Outcome::Failed(e.to_string()),
                None if !connected => Outcome::Pending,
                None => Outcome::Applied,
            };
            // Both versions of an interface: a failure of either counts.
            let entry = states.entry(intent.clone()).or_insert(Outcome::Applied);
            if *entry == Outcome::Applied {
                *entry = state;
            }
        }
        let injection_key: Key = (Version::V2, self.settings.injection_interface.clone());
        for (prefix, origin) in &self.plan.prefixes {
            let Some(key) = &origin.key else { continue };
            let state = if !self.injected_ok {
                Outcome::Failed(format!(
                    "{prefix} is not on the injection interface (see the agent log)"
                ))
            } else if let Some(e) = report.failed.get(&injection_key) {
                Outcome::Failed(e.to_string())
            } else if !connected {
                Outcome::Pending
            } else {
                Outcome::Applied
            };
            states.insert(key.clone(), state);
        }
        for (key, state) in &states {
            let _ = self.reports.send(Report::Outcome(key.clone(), state.clone()));
        }
        self.outcomes = states;
    }

    /// An event for the control plane's bus.
    fn event(&self, kind: EventType, owner: &str, detail: String, metadata: &[(&'static str, String)]) {
        let _ = self.reports.send(Report::Event {
            kind,
            owner: owner.to_string(),
            detail,
            metadata: metadata.to_vec(),
        });
    }

    fn owner_of_interface(&self, name: &str) -> String {
        self.plan
            .interfaces
            .get(name)
            .map(|o| o.owner.clone())
            .unwrap_or_else(|| CONFIG_OWNER.into())
    }

    /// Connection changes as events.
    fn publish(&mut self, changes: &[Change]) {
        let dir = self.status.lock().expect("ospf status").socket_dir.clone();
        for c in changes {
            match c {
                Change::Connected(version) => {
                    tracing::info!(version = %version, socket_dir = %dir, "ospfd sidecar connected");
                    {
                        let mut s = self.status.lock().expect("ospf status");
                        s.connected = true;
                        s.version = version.clone();
                        s.connected_since = Some(unix_now());
                    }
                    self.event(
                        EventType::FrrConnected,
                        CONFIG_OWNER,
                        format!("ospfd sidecar connected ({version})"),
                        &[("version", version.clone()), ("socket_dir", dir.clone())],
                    );
                }
                Change::Disconnected(why) => {
                    tracing::warn!(reason = %why, socket_dir = %dir, "ospfd sidecar disconnected");
                    self.status.lock().expect("ospf status").connected = false;
                    self.event(
                        EventType::FrrDisconnected,
                        CONFIG_OWNER,
                        format!("ospfd sidecar disconnected: {why}"),
                        &[("reason", why.clone()), ("socket_dir", dir.clone())],
                    );
                    // Its adjacencies went with it.
                    for ((version, ..), n) in std::mem::take(&mut self.full) {
                        self.neighbor_event(false, &(version, n), "the ospfd sidecar is gone");
                    }
                }
                Change::Applied(v, name) => {
                    tracing::info!(version = v.name(), interface = %name, "OSPF interface applied")
                }
                Change::Removed(v, name) => {
                    tracing::info!(version = v.name(), interface = %name, "OSPF interface removed")
                }
            }
        }
    }

    fn neighbor_event(&self, up: bool, n: &NeighborKeyed, why: &str) {
        let (version, nb) = (n.0, &n.1);
        let owner = self.owner_of_interface(&nb.interface);
        let (kind, verb) = if up {
            (EventType::OspfNeighborUp, "Full")
        } else {
            (EventType::OspfNeighborDown, "down")
        };
        tracing::info!(neighbor = %nb.router_id, interface = %nb.interface, version = version.name(), state = %nb.state, reason = why, "OSPF neighbor {verb}");
        let mut detail = format!(
            "{} neighbor {} on {} {verb}",
            version.name(),
            nb.router_id,
            nb.interface
        );
        if !why.is_empty() {
            detail.push_str(&format!(": {why}"));
        }
        self.event(
            kind,
            &owner,
            detail,
            &[
                ("neighbor_id", nb.router_id.clone()),
                ("address", nb.address.clone()),
                ("interface", nb.interface.clone()),
                ("state", nb.state.clone()),
                ("version", version.name().into()),
            ],
        );
    }

    /// OSPF_NEIGHBOR_UP when an adjacency reaches Full, DOWN when a Full
    /// one leaves Full or goes away.
    fn neighbor_events(&mut self) {
        if !self.bridge.connected() {
            return;
        }
        let now: BTreeMap<(Version, String, String), Neighbor> = self
            .bridge
            .neighbors()
            .iter()
            .filter(|(_, n)| n.is_full())
            .map(|(v, n)| ((*v, n.router_id.clone(), n.interface.clone()), n.clone()))
            .collect();
        let gone: Vec<_> = self.full.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
        for k in gone {
            let old = self.full.remove(&k).expect("known");
            let current = self
                .bridge
                .neighbors()
                .iter()
                .find(|(v, n)| *v == k.0 && n.router_id == k.1 && n.interface == k.2)
                .map(|(_, n)| n.state.clone());
            let why = match current {
                Some(state) => format!("now {state}"),
                None => "no longer a neighbor".into(),
            };
            self.neighbor_event(false, &(k.0, old), &why);
        }
        for (k, n) in now {
            if !self.full.contains_key(&k) {
                self.neighbor_event(true, &(k.0, n.clone()), "");
                self.full.insert(k, n);
            }
        }
    }

    /// The snapshot: interfaces with ospfd's states, neighbors, injected
    /// prefixes.
    /// Reads ospfd's interface states after an apply, when the neighbors
    /// changed, and at least every [`INTERFACE_READ_EVERY`] polls (each read
    /// is a vtysh run per daemon).
    fn read_interfaces(&mut self, applied: bool) {
        if !self.bridge.connected() {
            self.live.clear();
            self.polls_since_live = INTERFACE_READ_EVERY;
            return;
        }
        self.polls_since_live += 1;
        let changed = self.bridge.neighbors() != self.live_neighbors.as_slice();
        if applied || changed || self.polls_since_live >= INTERFACE_READ_EVERY {
            self.live = self.bridge.interfaces(self.plan.desired.has_v3()).unwrap_or_default();
            self.live_neighbors = self.bridge.neighbors().to_vec();
            self.polls_since_live = 0;
        }
    }

    fn refresh_status(&mut self) {
        let live = &self.live;
        let interfaces = self
            .plan
            .desired
            .interfaces
            .iter()
            .map(|(key, i)| {
                let running = live.iter().find(|(v, l)| *v == key.0 && l.name == key.1);
                let intent_state = self.plan.intent_of(key).and_then(|k| self.outcomes.get(k));
                let state = match (running, intent_state) {
                    (_, Some(Outcome::Failed(e))) => format!("failed: {e}"),
                    (Some((_, l)), _) if !l.state.is_empty() => l.state.clone(),
                    (Some(_), _) => "up".into(),
                    (None, _) if self.bridge.connected() => "not running".into(),
                    (None, _) => "pending".into(),
                };
                InterfaceStatus {
                    interface_name: key.1.clone(),
                    version: key.0.name(),
                    area_id: i.area.to_string(),
                    state,
                    passive: i.passive,
                    cost: i.cost.unwrap_or(0) as u32,
                    neighbors: self
                        .bridge
                        .neighbors()
                        .iter()
                        .filter(|(v, n)| *v == key.0 && n.interface == key.1)
                        .count() as u32,
                    owner: self.owner_of_interface(&key.1),
                }
            })
            .collect();
        let neighbors = self
            .bridge
            .neighbors()
            .iter()
            .map(|(v, n)| NeighborStatus {
                router_id: n.router_id.clone(),
                address: n.address.clone(),
                interface_name: n.interface.clone(),
                version: v.name(),
                state: n.state.clone(),
                role: n.role.clone(),
                owner: self.owner_of_interface(&n.interface),
            })
            .collect();
        let mut s = self.status.lock().expect("ospf status");
        s.connected = self.bridge.connected();
        s.interfaces = interfaces;
        s.neighbors = neighbors;
        s.injected = self.plan.injected().iter().map(|p| p.to_string()).collect();
    }

    /// Takes the injection interface out of OSPF, waits (bounded) until
    /// ospfd no longer originates its networks, removes it, and stops.
    fn stop(mut self, done: tokio::sync::oneshot::Sender<()>) {
        let injected = self.plan.injected();
        let _ = self.apply(false);
        if self.bridge.connected() && !injected.is_empty() {
            let deadline = Instant::now() + WITHDRAW_WAIT;
            let withdrawn = loop {
                match self.bridge.originates_any(&injected) {
                    Ok(false) => break true,
                    Ok(true) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                    _ => break false,
                }
            };
            if withdrawn {
                tracing::info!(prefixes = ?injected, "injected prefixes withdrawn from OSPF");
            } else {
                tracing::warn!(prefixes = ?injected, "ospfd still originates the injected prefixes");
            }
        }
        if let Err(e) = self.runtime.block_on(self.injection.remove()) {
            tracing::warn!(error = %e, "the OSPF injection interface stays");
        }
        let _ = done.send(());
    }
}

/// A neighbor with its OSPF version.
type NeighborKeyed = (Version, Neighbor);
