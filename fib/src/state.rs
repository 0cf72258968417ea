//! The FIB's bookkeeping, free of I/O: what the RIB wants in the kernel
//! (desired), what this agent put there (installed), what other protocols
//! own (foreign), and the operations that close the gap.
//!
//! Desired state is per prefix, not a queue: a prefix that changes ten times
//! before the writer gets to it is written once, with its latest next hops.
//! What an installed route points at is a group of [`super::objects`]: with
//! kernel nexthop objects, a group whose members changed under its routes
//! (a lost gateway) satisfies every route that now wants exactly those
//! members, without a route write.

use super::nexthop_wire::KernelNexthop;
use super::objects::{GroupId, ObjectOp, Objects, NO_GROUP};
use hashbrown::HashMap;
use ipnet::IpNet;
use novanet_bgp::prefix_table::{PrefixKey, PrefixMap, V4Key, V6Key};
use std::collections::VecDeque;
use std::net::IpAddr;

pub use crate::NextHops;

/// One kernel operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Install our route for the prefix, or replace it, through `group`:
    /// the kernel group `nh_id` (nexthop objects), or the gateways
    /// `next_hops` when `nh_id` is 0. `exclusive`: the kernel holds no
    /// route of ours for it, so it is created exclusively and a route
    /// someone else added meanwhile is never replaced.
    Replace {
        prefix: IpNet,
        next_hops: NextHops,
        group: GroupId,
        nh_id: u32,
        exclusive: bool,
    },
    /// Remove our route for the prefix.
    Delete { prefix: IpNet },
    /// A nexthop object or group.
    Object(ObjectOp),
}

impl Op {
    /// The route's prefix (none for an object).
    pub fn prefix(&self) -> Option<IpNet> {
        match self {
            Op::Replace { prefix, .. } | Op::Delete { prefix } => Some(*prefix),
            Op::Object(_) => None,
        }
    }
}

/// A route as read back from a kernel dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub protocol: u8,
    pub metric: u32,
    /// The gateways (for a route through a nexthop object, as the kernel
    /// expands it).
    pub next_hops: NextHops,
    /// The nexthop object the route points at, if any.
    pub nh_id: Option<u32>,
}

/// Routing protocol number of our routes (RTPROT_BGP).
pub const PROTO_BGP: u8 = 186;
/// The protocol of a route found by a refused exclusive create, until a
/// dump tells which it is (RTPROT_UNSPEC).
pub const PROTO_UNKNOWN: u8 = 0;

/// Why a learned prefix is not forwarding through our route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Another protocol's route with a lower metric wins in the kernel.
    Shadowed { protocol: u8 },
    /// Another protocol's route holds the same metric: ours is not
    /// installed, theirs is never replaced.
    Conflict { protocol: u8 },
}

/// Identifier of an interned next-hop set; [`NO_HOPS`] is none.
type HopsId = u32;
const NO_HOPS: HopsId = 0;

/// Interned next-hop sets: a full table reaches the kernel through a
/// handful of next hops, so routes refer to their set by a 4-byte id.
#[derive(Debug)]
struct HopSets {
    /// Set and reference count by id; id 0 is unused.
    sets: Vec<(NextHops, u32)>,
    ids: HashMap<NextHops, HopsId>,
    free: Vec<HopsId>,
}

impl Default for HopSets {
    fn default() -> Self {
        HopSets {
            sets: vec![(NextHops::new(), 0)],
            ids: HashMap::new(),
            free: Vec::new(),
        }
    }
}

impl HopSets {
    /// A reference to `hops` (none for an empty set).
    fn acquire(&mut self, hops: &NextHops) -> HopsId {
        if hops.is_empty() {
            return NO_HOPS;
        }
        let id = match self.ids.get(hops) {
            Some(id) => *id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => {
                        self.sets[id as usize] = (hops.clone(), 0);
                        id
                    }
                    None => {
                        self.sets.push((hops.clone(), 0));
                        (self.sets.len() - 1) as HopsId
                    }
                };
                self.ids.insert(hops.clone(), id);
                id
            }
        };
        self.sets[id as usize].1 += 1;
        id
    }

    fn release(&mut self, id: HopsId) {
        if id == NO_HOPS {
            return;
        }
        let entry = &mut self.sets[id as usize];
        entry.1 -= 1;
        if entry.1 == 0 {
            let hops = std::mem::take(&mut entry.0);
            self.ids.remove(&hops);
            self.free.push(id);
        }
    }

    /// Replaces the reference in `slot` by one to `hops`; whether it changed.
    fn assign(&mut self, slot: &mut HopsId, hops: &NextHops) -> bool {
        let id = self.acquire(hops);
        self.release(*slot);
        let changed = id != *slot;
        *slot = id;
        changed
    }

    fn get(&self, id: HopsId) -> &NextHops {
        &self.sets[id as usize].0
    }
}

/// One prefix's state (16 bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Route {
    /// The BGP next hops the RIB selected.
    learned: HopsId,
    /// The gateways that reach them: what the kernel should hold.
    desired: HopsId,
    /// The group this agent's kernel route points at.
    installed: GroupId,
    flags: u8,
}

/// Left by a previous run; removed by [`FibState::sweep_stale`] unless
/// re-learned first.
const STALE: u8 = 1;
/// In a write queue.
const QUEUED: u8 = 2;
/// Seen in the kernel dump being reconciled.
const SEEN: u8 = 4;
/// Installed but not in the kernel (ours, or adopted from a dump).
const INSTALLED: u8 = 8;

impl Route {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn is_empty(&self) -> bool {
        self.learned == NO_HOPS && self.desired == NO_HOPS && !self.has(INSTALLED) && !self.has(QUEUED)
    }
}

/// Desired versus installed routes.
#[derive(Debug)]
pub struct FibState {
    metric: u32,
    routes: PrefixMap<Route>,
    hops: HopSets,
    /// What installed routes point at.
    objects: Objects,
    /// Routes of a previous run were adopted and the restart is not over:
    /// they are rewritten only once every peer has sent its table (at
    /// [`FibState::sweep_stale`]), so a route is not moved to the one ToR
    /// that came back first and then back again.
    restarting: bool,
    /// Other protocols' routes per prefix: (protocol, metric).
    foreign: std::collections::HashMap<IpNet, Vec<(u8, u32)>>,
    /// Prefixes to write: changes to routes already in the kernel
    /// (failover, withdrawals) go first, new routes after them, so a
    /// failover is never queued behind a full-table load.
    urgent: PrefixQueue,
    dirty: PrefixQueue,
    /// Routes with a desired state, installed routes, and stale ones.
    desired: usize,
    installed: usize,
    stale: usize,
    /// Prefixes found out of step during the reconcile under way.
    drift: usize,
}

/// Names of kernel route protocols, for logs and status.
pub fn protocol_name(p: u8) -> String {
    match p {
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        11 => "zebra".into(),
        12 => "bird".into(),
        16 => "dhcp".into(),
        186 => "bgp".into(),
        188 => "ospf".into(),
        PROTO_UNKNOWN => "another protocol (seen when our route was created)".into(),
        other => other.to_string(),
    }
}

/// Prefixes waiting to be written, with packed keys (5 bytes for an IPv4
/// prefix instead of 18); each family in arrival order.
#[derive(Debug, Default)]
struct PrefixQueue {
    v4: VecDeque<V4Key>,
    v6: VecDeque<V6Key>,
}

impl PrefixQueue {
    fn push(&mut self, prefix: IpNet) {
        match &prefix {
            IpNet::V4(n) => self.v4.push_back(n.into()),
            IpNet::V6(n) => self.v6.push_back(n.into()),
        }
    }

    fn pop(&mut self) -> Option<IpNet> {
        self.v4
            .pop_front()
            .map(|k| k.net())
            .or_else(|| self.v6.pop_front().map(|k| k.net()))
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Gateways as the kernel is given them: sorted, each once.
fn gateway_set(mut hops: NextHops) -> NextHops {
    hops.sort();
    hops.dedup();
    hops
}

/// Queues a prefix for writing, once.
fn mark(route: &mut Route, prefix: IpNet, urgent: &mut PrefixQueue, dirty: &mut PrefixQueue) {
    if route.has(QUEUED) {
        return;
    }
    route.flags |= QUEUED;
    if route.has(INSTALLED) {
        urgent.push(prefix);
    } else {
        dirty.push(prefix);
    }
}

impl FibState {
    /// The state of a writer that installs routes through kernel nexthop
    /// objects when `nexthop_objects`, else with gateways in each route.
    pub fn new(metric: u32, nexthop_objects: bool) -> Self {
        FibState {
            metric,
            routes: PrefixMap::default(),
            hops: HopSets::default(),
            objects: Objects::new(nexthop_objects),
            restarting: false,
            foreign: Default::default(),
            urgent: PrefixQueue::default(),
            dirty: PrefixQueue::default(),
            desired: 0,
            installed: 0,
            stale: 0,
            drift: 0,
        }
    }

    /// Sets what the RIB selected for a prefix: its BGP next hops and the
    /// gateways that reach them (the kernel gets the gateways), or with
    /// `None` (or no gateway) nothing of ours.
    pub fn set(&mut self, prefix: IpNet, route: Option<(NextHops, NextHops)>) {
        let (learned, resolved) = route.unwrap_or_default();
        let resolved = gateway_set(resolved);
        let r = self.routes.get_or_insert_with(&prefix, Route::default);
        let had = r.desired != NO_HOPS;
        self.hops.assign(&mut r.learned, &learned);
        self.hops.assign(&mut r.desired, &resolved);
        self.desired = self.desired + (r.desired != NO_HOPS) as usize - had as usize;
        mark(r, prefix, &mut self.urgent, &mut self.dirty);
    }

    /// Resolves every learned route's next hops again (routes to the next
    /// hops may have changed); queues the routes whose gateways changed.
    /// Returns how many.
    pub fn resolve_again(&mut self, mut resolve: impl FnMut(&NextHops) -> NextHops) -> usize {
        let mut by_learned: HashMap<HopsId, NextHops> = HashMap::new();
        let mut changed = 0;
        for (prefix, r) in self.routes.iter_mut() {
            if r.learned == NO_HOPS {
                continue;
            }
            let resolved = by_learned
                .entry(r.learned)
                .or_insert_with(|| gateway_set(resolve(self.hops.get(r.learned))));
            let had = r.desired != NO_HOPS;
            if self.hops.assign(&mut r.desired, resolved) {
                self.desired = self.desired + (r.desired != NO_HOPS) as usize - had as usize;
                mark(r, prefix, &mut self.urgent, &mut self.dirty);
                changed += 1;
            }
        }
        changed
    }

    /// Whether operations are waiting.
    pub fn has_work(&self) -> bool {
        !self.urgent.is_empty() || !self.dirty.is_empty() || self.objects.has_first()
    }

    /// Whether routes point at kernel nexthop objects.
    pub fn nexthop_objects(&self) -> bool {
        self.objects.kernel()
    }

    /// Groups and nexthop objects of ours.
    pub fn object_counts(&self) -> (usize, usize) {
        (self.objects.group_count(), self.objects.nexthop_count())
    }

    /// The device a gateway is reached through (for its nexthop object).
    pub fn set_device(&mut self, gateway: IpAddr, oif: u32) {
        self.objects.set_device(gateway, oif);
    }

    /// Gateways lost: groups holding them are replaced without them before
    /// any other write (nexthop objects only). Returns the groups changed.
    pub fn lose_gateways(&mut self, lost: &[IpAddr]) -> usize {
        self.objects.lose(lost)
    }

    /// The object operations that must go first (a lost gateway's group
    /// replacements, removals of unknown objects of ours), to be written at
    /// once.
    pub fn take_first_objects(&mut self) -> Vec<Op> {
        self.objects.take_first().into_iter().map(Op::Object).collect()
    }

    /// Takes in the kernel's nexthop objects (at start, and at each
    /// reconcile before the routes).
    pub fn take_kernel_objects(&mut self, dump: &[KernelNexthop]) {
        self.objects.take_kernel(dump, PROTO_BGP);
    }

    /// Routes installed by us (stale ones included).
    pub fn installed_count(&self) -> usize {
        self.installed
    }

    pub fn stale_count(&self) -> usize {
        self.stale
    }

    pub fn desired_count(&self) -> usize {
        self.desired
    }

    /// Records a route of ours in the kernel on `group` (whose reference
    /// the route takes over), keeping the counts.
    fn install(&mut self, prefix: &IpNet, group: GroupId, stale: bool) {
        let r = self.routes.get_or_insert_with(prefix, Route::default);
        self.installed += !r.has(INSTALLED) as usize;
        self.stale = self.stale + stale as usize - r.has(STALE) as usize;
        let old = std::mem::replace(&mut r.installed, group);
        r.flags = (r.flags & !STALE) | INSTALLED | if stale { STALE } else { 0 };
        self.objects.release(old);
    }

    /// The group of a route as a kernel dump shows it.
    fn kernel_group(&mut self, k: &KernelRoute) -> GroupId {
        match k.nh_id.and_then(|id| self.objects.adopt_reference(id)) {
            Some(g) => g,
            None => self.objects.gateways_reference(&gateway_set(k.next_hops.clone())),
        }
    }

    fn uninstall(&mut self, prefix: &IpNet) {
        let Some(r) = self.routes.get_mut(prefix) else {
            return;
        };
        if r.has(INSTALLED) {
            self.installed -= 1;
            self.stale -= r.has(STALE) as usize;
        }
        let old = std::mem::replace(&mut r.installed, NO_GROUP);
        r.flags &= !(INSTALLED | STALE);
        if r.is_empty() {
            self.routes.remove(prefix);
        }
        self.objects.release(old);
    }

    /// What keeps a prefix from forwarding through our route, if anything.
    pub fn blocked(&self, prefix: &IpNet) -> Option<Blocked> {
        let foreign = self.foreign.get(prefix)?;
        if let Some((p, _)) = foreign.iter().find(|(_, m)| *m == self.metric) {
            return Some(Blocked::Conflict { protocol: *p });
        }
        foreign
            .iter()
            .filter(|(_, m)| *m < self.metric)
            .map(|(p, _)| Blocked::Shadowed { protocol: *p })
            .next()
    }

    /// Learned prefixes blocked by other protocols' routes.
    pub fn blocked_prefixes(&self) -> Vec<(IpNet, Blocked)> {
        let mut v: Vec<(IpNet, Blocked)> = self
            .foreign
            .keys()
            .filter(|p| self.routes.get(p).is_some_and(|r| r.desired != NO_HOPS))
            .filter_map(|p| self.blocked(p).map(|b| (*p, b)))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// The next operations, at most `max` route writes: object changes
    /// that must come first (a lost gateway), then routes (each after the
    /// objects it needs), then removals of objects no route uses.
    pub fn take_batch(&mut self, max: usize) -> Vec<Op> {
        let mut ops: Vec<Op> = self.objects.take_first().into_iter().map(Op::Object).collect();
        let mut routes = 0;
        let mut objects = Vec::new();
        while routes < max {
            let Some(prefix) = self.urgent.pop().or_else(|| self.dirty.pop()) else {
                break;
            };
            let conflict = matches!(self.blocked(&prefix), Some(Blocked::Conflict { .. }));
            let Some(r) = self.routes.get_mut(&prefix) else {
                continue;
            };
            r.flags &= !QUEUED;
            let r = *r;
            if r.desired != NO_HOPS {
                let desired = self.hops.get(r.desired);
                // With nexthop objects, a route the kernel holds with its
                // gateways (written before they were used) moves to a group.
                let same = r.has(INSTALLED)
                    && self.objects.members(r.installed) == desired
                    && (!self.objects.kernel()
                        || (self.objects.kernel_id(r.installed) != 0 && self.objects.in_kernel(r.installed)));
                if same {
                    if r.has(STALE) {
                        // Re-learned as it is in the kernel: kept, no longer stale.
                        self.routes.get_mut(&prefix).expect("present").flags &= !STALE;
                        self.stale -= 1;
                    }
                    continue;
                }
                if conflict || (self.restarting && r.has(STALE)) {
                    continue;
                }
                let next_hops = desired.clone();
                let group = self.objects.acquire(&next_hops, &mut objects);
                ops.extend(objects.drain(..).map(Op::Object));
                ops.push(Op::Replace {
                    prefix,
                    next_hops,
                    group,
                    nh_id: self.objects.kernel_id(group),
                    exclusive: !r.has(INSTALLED),
                });
                routes += 1;
            } else if r.has(INSTALLED) && !r.has(STALE) {
                ops.push(Op::Delete { prefix });
                routes += 1;
            } else if r.is_empty() {
                self.routes.remove(&prefix);
            }
        }
        self.objects.take_unused(&mut objects);
        ops.extend(objects.into_iter().map(Op::Object));
        ops
    }

    /// Records the outcome of an operation.
    pub fn confirm(&mut self, op: &Op, ok: bool) {
        match (op, ok) {
            (Op::Replace { prefix, group, .. }, true) => self.install(prefix, *group, false),
            (Op::Delete { prefix }, true) => self.uninstall(prefix),
            // A failed replace leaves what was there; a failed delete of a
            // route already gone is the same as a delete.
            (Op::Replace { group, .. }, false) => self.objects.release(*group),
            (Op::Delete { prefix }, false) => self.uninstall(prefix),
            (Op::Object(_), true) => {}
            (Op::Object(o), false) => self.objects.failed(o),
        }
    }

    /// An exclusive create found a route there (EEXIST): someone else's,
    /// added since the last dump. The prefix is blocked by a conflict
    /// until a dump says otherwise.
    pub fn found_foreign(&mut self, prefix: IpNet) {
        let entry = self.foreign.entry(prefix).or_default();
        if !entry.iter().any(|(_, m)| *m == self.metric) {
            entry.push((PROTO_UNKNOWN, self.metric));
        }
    }

    fn ours(&self, r: &KernelRoute) -> bool {
        r.protocol == PROTO_BGP && r.metric == self.metric
    }

    /// At start: our routes left in the kernel by a previous run are kept
    /// as stale (forwarding goes on) until re-learned or swept. Returns how
    /// many there were.
    pub fn adopt(&mut self, dump: &[KernelRoute]) -> usize {
        let mut n = 0;
        self.foreign.clear();
        for r in dump {
            if self.ours(r) {
                let g = self.kernel_group(r);
                self.install(&r.prefix, g, true);
                self.restarting = true;
                n += 1;
            } else {
                self.note_foreign(r);
            }
        }
        n
    }

    fn note_foreign(&mut self, r: &KernelRoute) {
        self.foreign.entry(r.prefix).or_default().push((r.protocol, r.metric));
    }

    /// Compares a kernel dump with what we believe: routes of ours that
    /// vanished or changed are written again, routes of ours we do not
    /// know are removed, and other protocols' routes are noted. Returns the
    /// number of prefixes queued.
    pub fn reconcile(&mut self, dump: &[KernelRoute]) -> usize {
        self.begin_reconcile();
        for r in dump {
            self.reconcile_route(r);
        }
        self.finish_reconcile()
    }

    /// A reconcile in steps, for a dump read one route at a time.
    pub fn begin_reconcile(&mut self) {
        self.foreign.clear();
        self.drift = 0;
        // A dump that failed half-way may have left marks.
        for (_, r) in self.routes.iter_mut() {
            r.flags &= !SEEN;
        }
    }

    /// One route of the kernel dump.
    pub fn reconcile_route(&mut self, k: &KernelRoute) {
        if !self.ours(k) {
            self.note_foreign(k);
            return;
        }
        let differs = match self.routes.get(&k.prefix) {
            Some(r) if r.has(INSTALLED) => {
                let id = self.objects.kernel_id(r.installed);
                !r.has(STALE)
                    && if id != 0 {
                        k.nh_id != Some(id)
                    } else {
                        k.nh_id.is_some() || self.objects.members(r.installed) != &k.next_hops
                    }
            }
            // Ours by protocol and metric, but unknown: adopted below so
            // the desired state decides (delete unless wanted).
            _ => true,
        };
        if differs {
            // Record what the kernel really holds; writing follows.
            let g = self.kernel_group(k);
            self.install(&k.prefix, g, false);
            self.drift += 1;
        }
        let r = self.routes.get_mut(&k.prefix).expect("installed above or before");
        r.flags |= SEEN;
        if differs {
            mark(r, k.prefix, &mut self.urgent, &mut self.dirty);
        }
    }

    /// Ends a reconcile: installed routes the dump did not hold are written
    /// again, and routes a foreign route now conflicts with are given up.
    /// Returns the number of prefixes queued.
    pub fn finish_reconcile(&mut self) -> usize {
        let mut gone = Vec::new();
        let mut retried = 0;
        for (prefix, r) in self.routes.iter_mut() {
            let seen = r.has(SEEN);
            r.flags &= !SEEN;
            if r.has(INSTALLED) && !seen {
                gone.push(prefix);
            } else if !r.has(INSTALLED) && r.desired != NO_HOPS && !r.has(QUEUED) {
                // Wanted but not in the kernel (a write the kernel refused):
                // tried again.
                mark(r, prefix, &mut self.urgent, &mut self.dirty);
                retried += 1;
            }
        }
        for p in &gone {
            self.uninstall(p);
            if let Some(r) = self.routes.get_mut(p) {
                mark(r, *p, &mut self.urgent, &mut self.dirty);
            }
        }
        let conflicts: Vec<IpNet> = self
            .foreign
            .iter()
            .filter(|(_, f)| f.iter().any(|(_, m)| *m == self.metric))
            .map(|(p, _)| *p)
            .filter(|p| self.routes.get(p).is_some_and(|r| r.has(INSTALLED)))
            .collect();
        for p in conflicts {
            self.uninstall(&p);
        }
        self.drift + gone.len() + retried
    }

    /// Ends the restart: stale routes not re-learned are removed, and
    /// re-learned ones that differ from what the kernel holds are written.
    /// Returns how many are removed.
    pub fn sweep_stale(&mut self) -> usize {
        let mut swept = 0;
        for (prefix, r) in self.routes.iter_mut() {
            if r.has(STALE) {
                r.flags &= !STALE;
                swept += (r.desired == NO_HOPS) as usize;
                mark(r, prefix, &mut self.urgent, &mut self.dirty);
            }
        }
        self.stale = 0;
        self.restarting = false;
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A route whose BGP next hops are their own gateways.
    fn hops(h: &[&str]) -> Option<(NextHops, NextHops)> {
        let h: NextHops = h.iter().map(|h| ip(h)).collect();
        Some((h.clone(), h))
    }

    /// A route write as (prefix, gateways, exclusive).
    fn write(op: &Op) -> Option<(IpNet, NextHops, bool)> {
        match op {
            Op::Replace {
                prefix,
                next_hops,
                exclusive,
                ..
            } => Some((*prefix, next_hops.clone(), *exclusive)),
            _ => None,
        }
    }

    fn writes(ops: &[Op]) -> Vec<(IpNet, NextHops, bool)> {
        ops.iter().filter_map(write).collect()
    }

    fn run(state: &mut FibState) -> Vec<Op> {
        let ops = state.take_batch(1000);
        for op in &ops {
            state.confirm(op, true);
        }
        ops
    }

    #[test]
    fn coalesces_changes_per_prefix() {
        let mut s = FibState::new(20, false);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        s.set(p("192.0.2.0/24"), hops(&["10.0.2.1", "10.0.1.1"]));
        let ops = run(&mut s);
        assert_eq!(
            writes(&ops),
            vec![(
                p("192.0.2.0/24"),
                [ip("10.0.1.1"), ip("10.0.2.1")].into_iter().collect(),
                true
            )]
        );
        // Same state again: nothing to do.
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1", "10.0.2.1"]));
        assert!(run(&mut s).is_empty());
        s.set(p("192.0.2.0/24"), None);
        assert_eq!(
            run(&mut s),
            vec![Op::Delete {
                prefix: p("192.0.2.0/24")
            }]
        );
        assert_eq!(s.installed_count(), 0);
    }

    #[test]
    fn routes_without_next_hops_are_not_installed() {
        let mut s = FibState::new(20, false);
        s.set(p("10.244.1.0/24"), hops(&[]));
        assert!(run(&mut s).is_empty());
    }

    #[test]
    fn foreign_routes_are_never_replaced() {
        let mut s = FibState::new(20, false);
        let static_route = KernelRoute {
            prefix: p("192.0.2.0/24"),
            protocol: 4,
            metric: 20,
            next_hops: NextHops::new(),
            nh_id: None,
        };
        s.reconcile(std::slice::from_ref(&static_route));
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        assert!(run(&mut s).is_empty(), "same metric: never replace");
        assert_eq!(s.blocked(&p("192.0.2.0/24")), Some(Blocked::Conflict { protocol: 4 }));
        // A foreign route with a lower metric shadows ours; ours is installed.
        let mut s = FibState::new(20, false);
        s.reconcile(&[KernelRoute {
            metric: 0,
            ..static_route
        }]);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        assert_eq!(run(&mut s).len(), 1);
        assert_eq!(
            s.blocked_prefixes(),
            vec![(p("192.0.2.0/24"), Blocked::Shadowed { protocol: 4 })]
        );
    }

    #[test]
    fn restart_keeps_stale_routes_until_swept() {
        let mut s = FibState::new(20, false);
        let left = |prefix: &str| KernelRoute {
            prefix: p(prefix),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.1.1")].into_iter().collect(),
            nh_id: None,
        };
        assert_eq!(s.adopt(&[left("192.0.2.0/24"), left("198.51.100.0/24")]), 2);
        assert!(run(&mut s).is_empty(), "nothing is deleted at start");
        // Re-learned with the same next hop: kept as it is, no longer stale.
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        assert!(run(&mut s).is_empty());
        assert_eq!(s.stale_count(), 1);
        // Re-learned through another gateway while the restart goes on:
        // held until every peer has sent its table.
        s.set(p("198.51.100.0/24"), hops(&["10.0.2.1"]));
        assert!(run(&mut s).is_empty(), "held during the restart");
        s.set(p("198.51.100.0/24"), None);
        assert_eq!(s.sweep_stale(), 1);
        assert_eq!(
            run(&mut s),
            vec![Op::Delete {
                prefix: p("198.51.100.0/24")
            }]
        );
        assert_eq!(s.installed_count(), 1);
    }

    #[test]
    fn changes_to_installed_routes_go_first() {
        let mut s = FibState::new(20, false);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1", "10.0.2.1"]));
        run(&mut s);
        for i in 0..1000u32 {
            let prefix = IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x6400_0000 + (i << 8)), 24).unwrap());
            s.set(prefix, hops(&["10.0.3.2"]));
        }
        // A ToR fails while a full table is still being written.
        s.set(p("192.0.2.0/24"), hops(&["10.0.2.1"]));
        let first = s.take_batch(1);
        assert_eq!(
            writes(&first),
            vec![(p("192.0.2.0/24"), [ip("10.0.2.1")].into_iter().collect(), false)]
        );
    }

    #[test]
    fn reconcile_repairs_drift() {
        let mut s = FibState::new(20, false);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        run(&mut s);
        // Someone deleted our route; a route of ours we never installed
        // appeared.
        let stray = KernelRoute {
            prefix: p("203.0.113.0/24"),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.1.1")].into_iter().collect(),
            nh_id: None,
        };
        assert_eq!(s.reconcile(&[stray]), 2);
        let mut ops = run(&mut s);
        ops.sort_by_key(|o| o.prefix());
        assert!(ops.iter().all(|o| o.prefix().is_some()));
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0], Op::Replace { .. }));
        assert_eq!(
            ops[1],
            Op::Delete {
                prefix: p("203.0.113.0/24")
            }
        );
    }

    #[test]
    fn reconcile_rewrites_routes_changed_behind_our_back() {
        let mut s = FibState::new(20, false);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        run(&mut s);
        let changed = KernelRoute {
            prefix: p("192.0.2.0/24"),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.9.9")].into_iter().collect(),
            nh_id: None,
        };
        assert_eq!(s.reconcile(std::slice::from_ref(&changed)), 1);
        assert_eq!(
            writes(&run(&mut s)),
            vec![(p("192.0.2.0/24"), [ip("10.0.1.1")].into_iter().collect(), false)]
        );
        assert_eq!(s.installed_count(), 1);
    }

    #[test]
    fn gateways_follow_the_route_to_the_next_hop() {
        let mut s = FibState::new(20, false);
        let learned: NextHops = [ip("10.9.9.9")].into_iter().collect();
        let via = |g: &str| -> NextHops { [ip(g)].into_iter().collect() };
        s.set(p("192.0.2.0/24"), Some((learned.clone(), via("10.0.1.1"))));
        s.set(p("198.51.100.0/24"), Some((learned, via("10.0.1.1"))));
        assert_eq!(run(&mut s).len(), 2);
        // The route to 10.9.9.9 now goes through another gateway.
        let mut lookups = 0;
        let moved = s.resolve_again(|_| {
            lookups += 1;
            via("10.0.2.1")
        });
        assert_eq!((moved, lookups), (2, 1), "one lookup per distinct next-hop set");
        let ops = run(&mut s);
        assert!(ops
            .iter()
            .all(|o| matches!(o, Op::Replace { next_hops, .. } if *next_hops == via("10.0.2.1"))));
        assert_eq!(s.resolve_again(|_| via("10.0.2.1")), 0);
    }

    #[test]
    fn next_hop_sets_are_shared_and_released() {
        let mut s = FibState::new(20, false);
        for i in 0..100u32 {
            let prefix = IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x6400_0000 + (i << 8)), 24).unwrap());
            s.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        run(&mut s);
        assert_eq!(s.hops.ids.len(), 1, "one set for a hundred routes");
        for i in 0..100u32 {
            let prefix = IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x6400_0000 + (i << 8)), 24).unwrap());
            s.set(prefix, None);
        }
        assert_eq!(run(&mut s).len(), 100);
        assert_eq!((s.hops.ids.len(), s.routes.len(), s.installed_count()), (0, 0, 0));
        assert!(s.has_work(), "the unused group goes in the next batch");
        assert!(run(&mut s).is_empty());
        assert_eq!(s.object_counts().0, 0, "no group left");
    }

    #[test]
    fn new_routes_are_created_exclusively_and_a_refusal_blocks_the_prefix() {
        let mut s = FibState::new(20, false);
        s.set(p("198.51.100.0/24"), hops(&["10.0.1.1"]));
        let ops = s.take_batch(10);
        assert!(matches!(ops[0], Op::Replace { exclusive: true, .. }), "{ops:?}");
        // The kernel said EEXIST: another protocol's route is there.
        s.confirm(&ops[0], false);
        s.found_foreign(p("198.51.100.0/24"));
        assert!(matches!(
            s.blocked(&p("198.51.100.0/24")),
            Some(Blocked::Conflict { .. })
        ));
        assert!(s.take_batch(10).is_empty(), "never replaced");
        // A route of ours is replaced, not created.
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        let ops = s.take_batch(10);
        s.confirm(&ops[0], true);
        s.set(p("192.0.2.0/24"), hops(&["10.0.2.1"]));
        assert!(matches!(s.take_batch(10)[0], Op::Replace { exclusive: false, .. }));
    }

    /// A state with nexthop objects whose two gateways are on devices 2, 3.
    fn with_objects() -> FibState {
        let mut s = FibState::new(20, true);
        s.set_device(ip("10.0.1.1"), 2);
        s.set_device(ip("10.0.2.1"), 3);
        s
    }

    fn prefixes(n: u32) -> Vec<IpNet> {
        (0..n)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x6400_0000 + (i << 8)), 24).unwrap()))
            .collect()
    }

    #[test]
    fn ecmp_routes_share_one_kernel_group_made_before_them() {
        let mut s = with_objects();
        for prefix in prefixes(100) {
            s.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        let ops = run(&mut s);
        assert!(matches!(ops[0], Op::Object(ObjectOp::Nexthop { oif: 2, .. })));
        assert!(matches!(ops[1], Op::Object(ObjectOp::Nexthop { oif: 3, .. })));
        let Op::Object(ObjectOp::Group { id, .. }) = &ops[2] else {
            panic!("{ops:?}")
        };
        assert_eq!(ops.len(), 103);
        assert!(ops[3..]
            .iter()
            .all(|o| matches!(o, Op::Replace { nh_id, .. } if nh_id == id)));
        assert_eq!(s.object_counts(), (1, 2));
    }

    #[test]
    fn a_lost_gateway_is_one_group_write_and_no_route_write() {
        let mut s = with_objects();
        for prefix in prefixes(1000) {
            s.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        run(&mut s);
        // The ToR behind 10.0.1.1 is gone: the kernel is fixed first...
        assert_eq!(s.lose_gateways(&[ip("10.0.1.1")]), 1);
        let first = s.take_first_objects();
        assert!(
            matches!(first.as_slice(), [Op::Object(ObjectOp::Group { members, .. })] if members.len() == 1),
            "the group without it, alone: {first:?}"
        );
        for op in &first {
            s.confirm(op, true);
        }
        let next = run(&mut s);
        assert!(
            matches!(next.as_slice(), [Op::Object(ObjectOp::Delete { .. })]),
            "then its nexthop: {next:?}"
        );
        // ...and the RIB's changes for every prefix then find it done.
        for prefix in prefixes(1000) {
            s.set(prefix, hops(&["10.0.2.1"]));
        }
        assert!(run(&mut s).is_empty(), "no route is rewritten");
        assert_eq!((s.installed_count(), s.object_counts()), (1000, (1, 1)));
        // Back: the routes move to a group with both, the old one goes.
        for prefix in prefixes(1000) {
            s.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        let back = run(&mut s);
        assert_eq!(writes(&back).len(), 1000);
        assert!(run(&mut s)
            .iter()
            .any(|o| matches!(o, Op::Object(ObjectOp::Delete { .. }))));
        assert_eq!(s.object_counts(), (1, 2));
    }

    #[test]
    fn a_restart_adopts_groups_and_rewrites_nothing_it_finds_in_place() {
        let mut s = with_objects();
        for prefix in prefixes(10) {
            s.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        let ops = run(&mut s);
        // What the kernel holds now, as a new agent dumps it.
        let mut objects = Vec::new();
        let mut routes = Vec::new();
        for op in &ops {
            match op {
                Op::Object(ObjectOp::Nexthop { id, gateway, oif }) => objects.push(KernelNexthop {
                    id: *id,
                    protocol: PROTO_BGP,
                    gateway: Some(*gateway),
                    oif: Some(*oif),
                    group: vec![],
                    blackhole: false,
                }),
                Op::Object(ObjectOp::Group { id, members }) => objects.push(KernelNexthop {
                    id: *id,
                    protocol: PROTO_BGP,
                    gateway: None,
                    oif: None,
                    group: members.clone(),
                    blackhole: false,
                }),
                Op::Replace {
                    prefix,
                    next_hops,
                    nh_id,
                    ..
                } => routes.push(KernelRoute {
                    prefix: *prefix,
                    protocol: PROTO_BGP,
                    metric: 20,
                    next_hops: next_hops.clone(),
                    nh_id: Some(*nh_id),
                }),
                _ => {}
            }
        }
        let mut again = with_objects();
        again.take_kernel_objects(&objects);
        assert_eq!(again.adopt(&routes), 10);
        assert!(run(&mut again).is_empty(), "nothing at start");
        for prefix in prefixes(10) {
            again.set(prefix, hops(&["10.0.1.1", "10.0.2.1"]));
        }
        assert!(run(&mut again).is_empty(), "re-learned as they are: kept");
        assert_eq!((again.stale_count(), again.object_counts()), (0, (1, 2)));
    }

    #[test]
    fn a_route_the_kernel_refused_is_tried_again_at_the_next_reconcile() {
        let mut s = FibState::new(20, false);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        let ops = s.take_batch(10);
        s.confirm(&ops[0], false);
        assert!(s.take_batch(10).is_empty());
        assert_eq!(s.reconcile(&[]), 1);
        assert_eq!(writes(&s.take_batch(10)).len(), 1);
    }

    #[test]
    fn routes_written_with_gateways_move_to_a_group_once_objects_are_used() {
        let mut s = with_objects();
        let old = KernelRoute {
            prefix: p("192.0.2.0/24"),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.1.1"), ip("10.0.2.1")].into_iter().collect(),
            nh_id: None,
        };
        assert_eq!(s.adopt(std::slice::from_ref(&old)), 1);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1", "10.0.2.1"]));
        assert!(run(&mut s).is_empty(), "held while the restart goes on");
        s.sweep_stale();
        let ops = run(&mut s);
        assert_eq!(writes(&ops).len(), 1, "{ops:?}");
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::Replace { nh_id, .. } if *nh_id != 0)));
        assert!(run(&mut s).is_empty(), "once");
    }
}
