//! The kernel FIB writer: selected BGP routes into the kernel with
//! protocol `bgp` (186), one owner, per-prefix desired state, many
//! requests per netlink `send`, and a periodic reconcile against a kernel
//! dump. It never touches a route or nexthop object of another owner.
//!
//! Where the kernel has nexthop objects (Linux 5.3+), routes point at
//! nexthop groups ([`objects`]): when a BGP peer goes down, every group
//! holding its gateway is replaced without it before anything else is
//! written, so a full table fails over in a handful of kernel operations.
//!
//! It runs on a thread of its own with a blocking netlink socket, fed by
//! the speaker's route sink. [`state`] and [`objects`] are the bookkeeping
//! (no I/O); [`netlink`] the socket, [`nexthop_wire`] the nexthop messages.

pub mod compat;
pub mod netlink;
pub mod nexthop_wire;
pub mod objects;
pub mod state;

/// The gateways of one route (one for a single path, more for ECMP), as
/// the route state and the nexthop groups both hold them, sorted.
pub type NextHops = smallvec::SmallVec<[std::net::IpAddr; 2]>;

use hashbrown::HashMap;
use ipnet::IpNet;
pub use netlink::LinkLocalScopes;
use netlink::{Reach, RouteSocket};
use novanet_bgp::rib::{BestChange, LOCAL_PEER};
use novanet_bgp::speaker::{RouteSink, SinkEvent};
use objects::ObjectOp;
use serde::Serialize;
use state::{protocol_name, Blocked, FibState};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Metric of our routes: other protocols' routes with a lower metric win,
/// and a route of another protocol with this metric is never replaced.
pub const BGP_METRIC: u32 = 20;

/// Operations per batch between looks at new input.
const BATCH: usize = 2048;

/// What the writer is told, in the order the RIB made it.
pub enum FibInput {
    /// Selection changes: taken into the desired state on arrival (the
    /// state coalesces per prefix and puts changes of installed routes,
    /// such as a failover, ahead of new ones).
    Changes(Arc<Vec<BestChange>>),
    /// Look at the lost next hops ([`LostNextHops`]) now.
    Wake,
    /// The restart is over: remove stale routes that were not re-learned.
    Sweep,
}

/// Where the speaker puts BGP next hops no established peer announces any
/// more (a peer went down): the writer takes them before any other input
/// waiting for it and before its next batch, so their gateways leave
/// every nexthop group ahead of the RIB's changes for each prefix and of
/// a table load queued before them.
#[derive(Clone)]
pub struct LostNextHops {
    lost: Arc<Mutex<Vec<IpAddr>>>,
    wake: mpsc::Sender<FibInput>,
}

impl LostNextHops {
    pub fn send(&self, next_hops: Vec<IpAddr>) {
        self.lost.lock().expect("lost next hops").extend(next_hops);
        let _ = self.wake.send(FibInput::Wake);
    }
}

/// A learned prefix that does not forward through our route, and why.
#[derive(Debug, Clone, Serialize)]
pub struct BlockedRoute {
    pub prefix: IpNet,
    pub reason: String,
}

/// What the writer publishes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FibStatus {
    pub enabled: bool,
    /// Routes point at kernel nexthop objects (else each route carries its
    /// gateways: a kernel without them, or `routing.fib.nexthop_objects`
    /// off).
    pub nexthop_objects: bool,
    /// The kernel's `net.ipv4.nexthop_compat_mode` at start (`None`: the
    /// kernel has no such setting); on, a group change is announced once
    /// per route using it ([`compat`]).
    pub nexthop_compat_mode: Option<bool>,
    /// Nexthop groups and nexthop objects of ours.
    pub nexthop_groups: usize,
    pub nexthops: usize,
    /// Routes of ours in the kernel.
    pub installed: usize,
    /// Routes the RIB wants in the kernel.
    pub desired: usize,
    /// Routes left by a previous run, not yet re-learned or swept.
    pub stale: usize,
    pub failed_operations: u64,
    pub last_error: Option<String>,
    pub blocked: Vec<BlockedRoute>,
    /// BGP next hops the kernel cannot reach (their paths are left out).
    pub unreachable_next_hops: Vec<IpAddr>,
    /// Seconds since the epoch of the last reconcile with the kernel.
    pub last_reconcile: Option<u64>,
    /// The writer thread runs (false once it has stopped, even by a panic).
    pub writer_running: bool,
    /// Milliseconds since the epoch when the kernel work in progress (a
    /// batch or a reconcile) began; None while the writer waits for input.
    pub busy_since_ms: Option<u64>,
}

/// Kernel work taking longer than this makes the agent not ready.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FibStatus {
    /// Why the writer is not healthy, if it is not: stopped, or stuck in
    /// one piece of kernel work for longer than [`STUCK_AFTER`].
    pub fn writer_problem(&self, now_ms: u64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        if !self.writer_running {
            return Some("the FIB writer has stopped".into());
        }
        let busy = now_ms.saturating_sub(self.busy_since_ms?);
        (busy > STUCK_AFTER.as_millis() as u64)
            .then(|| format!("the FIB writer has been in one kernel write for {} s", busy / 1000))
    }

    /// [`FibStatus::writer_problem`] now.
    pub fn writer_problem_now(&self) -> Option<String> {
        self.writer_problem(now_ms())
    }
}

/// Marks the writer stopped when its thread ends, by return or by panic.
struct RunningMark(Arc<Mutex<FibStatus>>);

impl Drop for RunningMark {
    fn drop(&mut self) {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.writer_running = false;
        st.busy_since_ms = None;
    }
}

/// The running writer.
pub struct Fib {
    input: mpsc::Sender<FibInput>,
    lost: Arc<Mutex<Vec<IpAddr>>>,
    status: Arc<Mutex<FibStatus>>,
    /// Routes of ours found in the kernel at start (a restart).
    pub adopted: usize,
}

impl Fib {
    /// Opens the netlink socket, adopts routes (and nexthop objects) left
    /// by a previous run, and starts the writer thread. With
    /// `nexthop_objects`, routes point at kernel nexthop groups where the
    /// kernel has them.
    /// `scopes` holds the interfaces of link-local next hops; with
    /// `compat_off` the kernel's nexthop compat mode is turned off when
    /// routes use nexthop objects ([`compat`]).
    pub fn start(
        reconcile_every: Duration,
        nexthop_objects: bool,
        compat_off: bool,
        scopes: LinkLocalScopes,
    ) -> std::io::Result<Fib> {
        let mut socket = RouteSocket::open(BGP_METRIC, scopes)?;
        let objects = if nexthop_objects {
            let dump = socket.dump_nexthops()?;
            if dump.is_none() {
                tracing::warn!("the kernel has no nexthop objects: each route carries its gateways");
            }
            dump
        } else {
            None
        };
        if objects.is_some() && compat_off {
            match compat::turn_off() {
                Ok(true) => tracing::info!("net.ipv4.nexthop_compat_mode turned off: a nexthop group change is one kernel notification, not one per route"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e,
                    "cannot turn off net.ipv4.nexthop_compat_mode: each nexthop group change makes the kernel notify every route using it (about 260 ms per million routes under the routing lock); set it to 0 on the node"),
            }
        }
        let mut state = FibState::new(BGP_METRIC, objects.is_some());
        if let Some(dump) = &objects {
            state.take_kernel_objects(dump);
        }
        let dump = socket.dump()?;
        let adopted = state.adopt(&dump);
        if adopted > 0 {
            tracing::info!(routes = adopted, "routes of a previous run kept in the kernel as stale");
        }
        let (groups, nexthops) = state.object_counts();
        let status = Arc::new(Mutex::new(FibStatus {
            enabled: true,
            nexthop_objects: state.nexthop_objects(),
            nexthop_compat_mode: compat::current(),
            nexthop_groups: groups,
            nexthops,
            installed: adopted,
            stale: adopted,
            ..Default::default()
        }));
        let (tx, rx) = mpsc::channel();
        let lost = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer {
            lost: lost.clone(),
            socket,
            state,
            status: status.clone(),
            resolved: HashMap::new(),
            reconcile_every,
            blocked: BTreeMap::new(),
        };
        std::thread::Builder::new()
            .name("fib-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Fib {
            input: tx,
            lost,
            status,
            adopted,
        })
    }

    /// A handle that feeds the writer.
    pub fn input(&self) -> mpsc::Sender<FibInput> {
        self.input.clone()
    }

    /// The speaker's way into the writer: selection changes in order, lost
    /// next hops ahead of them ([`LostNextHops`]).
    pub fn route_sink(&self) -> RouteSink {
        let input = self.input.clone();
        let lost = self.lost_next_hops();
        RouteSink(Arc::new(move |event| match event {
            SinkEvent::Changes(changes) => {
                let _ = input.send(FibInput::Changes(changes));
            }
            SinkEvent::NextHopsLost(next_hops) => lost.send(next_hops),
        }))
    }

    /// The writer's way in for lost next hops, ahead of everything else.
    pub fn lost_next_hops(&self) -> LostNextHops {
        LostNextHops {
            lost: self.lost.clone(),
            wake: self.input.clone(),
        }
    }

    pub fn status(&self) -> FibStatus {
        self.status.lock().expect("fib status").clone()
    }

    /// A shared view of the status, for the status endpoint.
    pub fn status_handle(&self) -> Arc<Mutex<FibStatus>> {
        self.status.clone()
    }
}

struct Writer {
    /// Lost next hops, taken before anything else.
    lost: Arc<Mutex<Vec<IpAddr>>>,
    socket: RouteSocket,
    state: FibState,
    status: Arc<Mutex<FibStatus>>,
    /// Next hop -> how the kernel reaches it (`None`: unreachable).
    /// Cleared at each reconcile.
    resolved: HashMap<IpAddr, Option<Reach>>,
    reconcile_every: Duration,
    /// Learned prefixes kept from forwarding by other protocols' routes.
    blocked: BTreeMap<IpNet, Blocked>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<FibInput>) {
        self.status.lock().expect("fib status").writer_running = true;
        let _running = RunningMark(self.status.clone());
        let mut next_reconcile = Instant::now() + self.reconcile_every;
        loop {
            // Take in everything that arrived, then write one batch: input
            // never waits behind more than one batch of kernel work.
            let wait = if self.state.has_work() {
                Duration::ZERO
            } else {
                next_reconcile.saturating_duration_since(Instant::now())
            };
            match rx.recv_timeout(wait) {
                Ok(input) => {
                    self.take_lost();
                    self.receive(input);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(input) = rx.try_recv() {
                self.take_lost();
                self.receive(input);
            }
            self.take_lost();
            if self.state.has_work() {
                self.busy(true);
                self.write_batch();
            }
            if Instant::now() >= next_reconcile {
                self.busy(true);
                self.reconcile();
                next_reconcile = Instant::now() + self.reconcile_every;
            }
            self.busy(false);
            self.publish();
        }
    }

    fn receive(&mut self, input: FibInput) {
        match input {
            FibInput::Changes(c) => self.apply(&c),
            FibInput::Wake => {}
            FibInput::Sweep => {
                let n = self.state.sweep_stale();
                tracing::info!(routes = n, "restart finished: stale kernel routes removed");
            }
        }
    }

    /// Lost next hops: their gateways leave every group, written to the
    /// kernel now, before any other input is taken in (the RIB's changes
    /// for a full table follow right behind them).
    fn take_lost(&mut self) {
        let lost = std::mem::take(&mut *self.lost.lock().expect("lost next hops"));
        if lost.is_empty() {
            return;
        }
        let gateways = lost_gateways(&self.resolved, &lost);
        let groups = self.state.lose_gateways(&gateways);
        if groups > 0 {
            let ops = self.state.take_first_objects();
            self.write(ops);
            tracing::info!(next_hops = ?lost, groups, "next hops lost: their gateways left the nexthop groups");
        }
    }

    /// Takes selection changes into the desired state.
    fn apply(&mut self, changes: &[BestChange]) {
        for c in changes {
            let hops = c
                .best
                .as_ref()
                .filter(|b| b.peer != LOCAL_PEER)
                .map(|b| b.next_hops.iter().copied().collect::<NextHops>());
            match hops {
                Some(h) => {
                    let resolved = resolve_all(&mut self.socket, &mut self.resolved, &mut self.state, &h);
                    self.state.set(c.prefix, Some((h, resolved)));
                    self.note_blocked(c.prefix);
                }
                None => {
                    self.state.set(c.prefix, None);
                    self.blocked.remove(&c.prefix);
                }
            }
        }
    }

    fn write_batch(&mut self) {
        let ops = self.state.take_batch(BATCH);
        self.write(ops);
    }

    /// Carries operations out and records their outcomes.
    fn write(&mut self, ops: Vec<state::Op>) {
        if ops.is_empty() {
            return;
        }
        let results = self.socket.apply(&ops);
        let mut conflicts = Vec::new();
        let mut failed = 0;
        let mut last = None;
        for (op, r) in ops.iter().zip(results) {
            let ok = match (r, op.prefix()) {
                (Ok(()), _) => true,
                // Deleting what is already gone is done.
                (Err(e), _)
                    if matches!(
                        op,
                        state::Op::Delete { .. } | state::Op::Object(ObjectOp::Delete { .. })
                    ) && matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT)) =>
                {
                    true
                }
                // Another protocol's route appeared since the last dump:
                // it stays, and the prefix shows as blocked.
                (Err(e), Some(prefix))
                    if matches!(op, state::Op::Replace { exclusive: true, .. })
                        && e.raw_os_error() == Some(libc::EEXIST) =>
                {
                    self.state.found_foreign(prefix);
                    conflicts.push(prefix);
                    false
                }
                (Err(e), Some(prefix)) => {
                    failed += 1;
                    tracing::warn!(%prefix, error = %e, "kernel refused a route operation");
                    last = Some(format!("{prefix}: {e}"));
                    false
                }
                (Err(e), None) => {
                    failed += 1;
                    tracing::warn!(operation = ?op, error = %e, "kernel refused a nexthop object operation");
                    last = Some(format!("{op:?}: {e}"));
                    false
                }
            };
            self.state.confirm(op, ok);
        }
        for prefix in conflicts {
            self.note_blocked(prefix);
        }
        if failed > 0 {
            let mut st = self.status.lock().expect("fib status");
            st.failed_operations += failed;
            st.last_error = last;
        }
    }

    fn reconcile(&mut self) {
        // Next hops may be reached differently now.
        self.resolved.clear();
        let (socket, resolved) = (&mut self.socket, &mut self.resolved);
        let mut devices = Vec::new();
        self.state
            .resolve_again(|hops| resolve_gateways(socket, resolved, &mut devices, hops));
        for (gw, oif) in devices {
            self.state.set_device(gw, oif);
        }
        if self.state.nexthop_objects() {
            match self.socket.dump_nexthops() {
                Ok(Some(dump)) => self.state.take_kernel_objects(&dump),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "nexthop object dump failed"),
            }
        }
        self.state.begin_reconcile();
        let state = &mut self.state;
        match self.socket.dump_each(|route| state.reconcile_route(&route)) {
            Ok(()) => {
                let drift = self.state.finish_reconcile();
                if drift > 0 {
                    tracing::info!(
                        routes = drift,
                        "kernel routes differed from the desired state; repairing"
                    );
                }
                let mut st = self.status.lock().expect("fib status");
                st.last_reconcile = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs());
            }
            Err(e) => {
                tracing::warn!(error = %e, "kernel route dump failed");
                self.status.lock().expect("fib status").last_error = Some(format!("route dump: {e}"));
            }
        }
        let now_blocked: BTreeMap<IpNet, Blocked> = self.state.blocked_prefixes().into_iter().collect();
        self.blocked.retain(|p, _| now_blocked.contains_key(p));
        for prefix in now_blocked.keys() {
            self.note_blocked(*prefix);
        }
    }

    /// Tracks (and logs once) whether a learned prefix is kept from
    /// forwarding by another protocol's route.
    fn note_blocked(&mut self, prefix: IpNet) {
        match self.state.blocked(&prefix) {
            Some(why) => {
                if self.blocked.get(&prefix) != Some(&why) {
                    match &why {
                        Blocked::Shadowed { protocol } => tracing::warn!(
                            %prefix,
                            protocol = %protocol_name(*protocol),
                            "learned prefix is shadowed by a route of another protocol with a lower metric"
                        ),
                        Blocked::Conflict { protocol } => tracing::warn!(
                            %prefix,
                            protocol = %protocol_name(*protocol),
                            "learned prefix not installed: a route of another protocol holds it with the same metric"
                        ),
                    }
                    self.blocked.insert(prefix, why);
                }
            }
            None => {
                self.blocked.remove(&prefix);
            }
        }
    }

    /// Records that kernel work starts (or that the writer waits again).
    fn busy(&self, busy: bool) {
        let mut st = self.status.lock().expect("fib status");
        st.busy_since_ms = match (busy, st.busy_since_ms) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now_ms()),
            (false, _) => None,
        };
    }

    fn publish(&self) {
        let mut st = self.status.lock().expect("fib status");
        st.installed = self.state.installed_count();
        (st.nexthop_groups, st.nexthops) = self.state.object_counts();
        st.desired = self.state.desired_count();
        st.stale = self.state.stale_count();
        let mut unreachable: Vec<IpAddr> = self
            .resolved
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(nh, _)| *nh)
            .collect();
        unreachable.sort();
        st.unreachable_next_hops = unreachable;
        st.blocked = self
            .blocked
            .iter()
            .map(|(prefix, why)| BlockedRoute {
                prefix: *prefix,
                reason: match why {
                    Blocked::Shadowed { protocol } => format!("shadowed by a {} route", protocol_name(*protocol)),
                    Blocked::Conflict { protocol } => {
                        format!(
                            "not installed: a {} route holds the same metric",
                            protocol_name(*protocol)
                        )
                    }
                },
            })
            .collect();
    }
}

/// The gateways for a route's BGP next hops, through a cache of kernel
/// lookups; unreachable ones are left out. The state learns each
/// gateway's device.
fn resolve_all(
    socket: &mut RouteSocket,
    cache: &mut HashMap<IpAddr, Option<Reach>>,
    state: &mut FibState,
    hops: &NextHops,
) -> NextHops {
    let mut devices = Vec::new();
    let out = resolve_gateways(socket, cache, &mut devices, hops);
    for (gw, oif) in devices {
        state.set_device(gw, oif);
    }
    out
}

/// [`resolve_all`] with the devices collected in `devices`.
fn resolve_gateways(
    socket: &mut RouteSocket,
    cache: &mut HashMap<IpAddr, Option<Reach>>,
    devices: &mut Vec<(IpAddr, u32)>,
    hops: &NextHops,
) -> NextHops {
    let mut out = NextHops::new();
    for nh in hops {
        let r = *cache.entry(*nh).or_insert_with(|| {
            let r = socket.resolve(*nh).unwrap_or(None);
            if r.is_none() {
                tracing::warn!(next_hop = %nh, "BGP next hop unreachable: its paths are not installed");
            }
            r
        });
        if let Some(reach) = r {
            out.push(reach.gateway);
            devices.push((reach.gateway, reach.oif));
        }
    }
    out
}

/// The gateways of lost BGP next hops that no other known next hop is
/// reached through.
fn lost_gateways(cache: &HashMap<IpAddr, Option<Reach>>, lost: &[IpAddr]) -> Vec<IpAddr> {
    let mut gateways: Vec<IpAddr> = lost
        .iter()
        .filter_map(|nh| cache.get(nh).copied().flatten())
        .map(|r| r.gateway)
        .collect();
    gateways.retain(|gw| {
        !cache
            .iter()
            .any(|(nh, r)| !lost.contains(nh) && r.is_some_and(|r| r.gateway == *gw))
    });
    gateways.sort();
    gateways.dedup();
    gateways
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn a_stopped_or_stuck_writer_is_a_problem() {
        let mut st = FibStatus {
            enabled: true,
            writer_running: true,
            ..Default::default()
        };
        assert_eq!(st.writer_problem(1_000_000), None);
        st.busy_since_ms = Some(1_000_000);
        assert_eq!(st.writer_problem(1_000_000 + 29_000), None);
        assert!(st.writer_problem(1_000_000 + 31_000).unwrap().contains("31 s"));
        st.writer_running = false;
        assert_eq!(st.writer_problem(0).as_deref(), Some("the FIB writer has stopped"));
        // A node without the FIB has no writer to check.
        st.enabled = false;
        assert_eq!(st.writer_problem(0), None);
    }
}
