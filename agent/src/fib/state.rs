//! The FIB's bookkeeping, free of I/O: what the RIB wants in the kernel
//! (desired), what this agent put there (installed), what other protocols
//! own (foreign), and the operations that close the gap.
//!
//! Desired state is per prefix, not a queue: a prefix that changes ten times
//! before the writer gets to it is written once, with its latest next hops.

use ipnet::IpNet;
use smallvec::SmallVec;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

/// Next hops of one route, sorted.
pub type NextHops = SmallVec<[IpAddr; 2]>;

/// One kernel operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Install or replace our route for the prefix.
    Replace { prefix: IpNet, next_hops: NextHops },
    /// Remove our route for the prefix.
    Delete { prefix: IpNet },
}

impl Op {
    pub fn prefix(&self) -> IpNet {
        match self {
            Op::Replace { prefix, .. } | Op::Delete { prefix } => *prefix,
        }
    }
}

/// A route as read back from a kernel dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub protocol: u8,
    pub metric: u32,
    pub next_hops: NextHops,
}

/// Routing protocol number of our routes (RTPROT_BGP).
pub const PROTO_BGP: u8 = 186;

#[derive(Debug, Clone)]
struct Installed {
    next_hops: NextHops,
    /// Left by a previous run; removed by [`FibState::sweep_stale`] unless
    /// re-learned first.
    stale: bool,
}

/// Why a learned prefix is not forwarding through our route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Another protocol's route with a lower metric wins in the kernel.
    Shadowed { protocol: u8 },
    /// Another protocol's route holds the same metric: ours is not
    /// installed, theirs is never replaced.
    Conflict { protocol: u8 },
}

/// Desired versus installed routes.
#[derive(Debug)]
pub struct FibState {
    metric: u32,
    desired: HashMap<IpNet, NextHops>,
    installed: HashMap<IpNet, Installed>,
    /// Other protocols' routes per prefix: (protocol, metric).
    foreign: HashMap<IpNet, Vec<(u8, u32)>>,
    /// Prefixes to write: changes to routes already in the kernel
    /// (failover, withdrawals) go first, new routes after them, so a
    /// failover is never queued behind a full-table load.
    urgent: VecDeque<IpNet>,
    dirty: VecDeque<IpNet>,
    queued: HashSet<IpNet>,
    /// Installed routes still marked stale.
    stale: usize,
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
        other => other.to_string(),
    }
}

impl FibState {
    pub fn new(metric: u32) -> Self {
        FibState {
            metric,
            desired: HashMap::new(),
            installed: HashMap::new(),
            foreign: HashMap::new(),
            urgent: VecDeque::new(),
            dirty: VecDeque::new(),
            queued: HashSet::new(),
            stale: 0,
        }
    }

    fn mark(&mut self, prefix: IpNet) {
        if self.queued.insert(prefix) {
            if self.installed.contains_key(&prefix) {
                self.urgent.push_back(prefix);
            } else {
                self.dirty.push_back(prefix);
            }
        }
    }

    /// Sets what the kernel should hold for a prefix: these next hops, or
    /// (with `None` or no next hop) nothing of ours.
    pub fn set(&mut self, prefix: IpNet, next_hops: Option<NextHops>) {
        match next_hops.filter(|nh| !nh.is_empty()) {
            Some(mut nh) => {
                nh.sort();
                nh.dedup();
                self.desired.insert(prefix, nh);
            }
            None => {
                self.desired.remove(&prefix);
            }
        }
        self.mark(prefix);
    }

    /// Whether operations are waiting.
    pub fn has_work(&self) -> bool {
        !self.urgent.is_empty() || !self.dirty.is_empty()
    }

    /// Routes installed by us (stale ones included).
    pub fn installed_count(&self) -> usize {
        self.installed.len()
    }

    pub fn stale_count(&self) -> usize {
        self.stale
    }

    /// Records a route of ours in the kernel, keeping the stale count.
    fn install(&mut self, prefix: IpNet, next_hops: NextHops, stale: bool) {
        let old = self.installed.insert(prefix, Installed { next_hops, stale });
        self.stale = self.stale + stale as usize - old.is_some_and(|o| o.stale) as usize;
    }

    fn uninstall(&mut self, prefix: &IpNet) {
        if self.installed.remove(prefix).is_some_and(|o| o.stale) {
            self.stale -= 1;
        }
    }

    pub fn desired_count(&self) -> usize {
        self.desired.len()
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
            .desired
            .keys()
            .filter_map(|p| self.blocked(p).map(|b| (*p, b)))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// The next operations, at most `max`.
    pub fn take_batch(&mut self, max: usize) -> Vec<Op> {
        let mut ops = Vec::new();
        while ops.len() < max {
            let Some(prefix) = self.urgent.pop_front().or_else(|| self.dirty.pop_front()) else {
                break;
            };
            self.queued.remove(&prefix);
            let installed = self.installed.get(&prefix);
            let op = match (self.desired.get(&prefix), installed) {
                (Some(_), _) if matches!(self.blocked(&prefix), Some(Blocked::Conflict { .. })) => None,
                (Some(want), Some(have)) if have.next_hops == *want && !have.stale => None,
                (Some(want), _) => Some(Op::Replace {
                    prefix,
                    next_hops: want.clone(),
                }),
                (None, Some(have)) if !have.stale => Some(Op::Delete { prefix }),
                (None, _) => None,
            };
            ops.extend(op);
        }
        ops
    }

    /// Records the outcome of an operation.
    pub fn confirm(&mut self, op: &Op, ok: bool) {
        match (op, ok) {
            (Op::Replace { prefix, next_hops }, true) => self.install(*prefix, next_hops.clone(), false),
            (Op::Delete { prefix }, true) => self.uninstall(prefix),
            // A failed replace leaves what was there; a failed delete of a
            // route already gone is the same as a delete.
            (Op::Replace { .. }, false) => {}
            (Op::Delete { prefix }, false) => self.uninstall(prefix),
        }
    }

    /// At start: our routes left in the kernel by a previous run are kept
    /// as stale (forwarding goes on) until re-learned or swept. Returns how
    /// many there were.
    pub fn adopt(&mut self, dump: &[KernelRoute]) -> usize {
        let mut n = 0;
        let metric = self.metric;
        for r in dump.iter().filter(|r| r.protocol == PROTO_BGP && r.metric == metric) {
            self.install(r.prefix, r.next_hops.clone(), true);
            n += 1;
        }
        self.note_foreign(dump);
        n
    }

    fn note_foreign(&mut self, dump: &[KernelRoute]) {
        self.foreign.clear();
        for r in dump
            .iter()
            .filter(|r| !(r.protocol == PROTO_BGP && r.metric == self.metric))
        {
            self.foreign.entry(r.prefix).or_default().push((r.protocol, r.metric));
        }
    }

    /// Compares a kernel dump with what we believe: routes of ours that
    /// vanished or changed are written again, routes of ours we do not
    /// know are removed, and other protocols' routes are noted. Returns the
    /// number of prefixes queued.
    pub fn reconcile(&mut self, dump: &[KernelRoute]) -> usize {
        self.note_foreign(dump);
        let ours: HashMap<IpNet, &KernelRoute> = dump
            .iter()
            .filter(|r| r.protocol == PROTO_BGP && r.metric == self.metric)
            .map(|r| (r.prefix, r))
            .collect();
        let mut drift: BTreeSet<IpNet> = BTreeSet::new();
        for (prefix, inst) in &self.installed {
            match ours.get(prefix) {
                None => {
                    drift.insert(*prefix);
                }
                Some(k) if k.next_hops != inst.next_hops && !inst.stale => {
                    drift.insert(*prefix);
                }
                _ => {}
            }
        }
        for gone in drift.iter().filter(|p| !ours.contains_key(p)) {
            self.uninstall(gone);
        }
        for (prefix, k) in &ours {
            if !self.installed.contains_key(prefix) {
                // Ours by protocol and metric, but unknown: adopt it so the
                // desired state decides (delete unless wanted).
                self.install(*prefix, k.next_hops.clone(), false);
                drift.insert(*prefix);
            }
        }
        // Prefixes a foreign route now conflicts with: ours must go.
        let conflicts: Vec<IpNet> = self
            .installed
            .keys()
            .filter(|p| matches!(self.blocked(p), Some(Blocked::Conflict { .. })))
            .copied()
            .collect();
        for p in conflicts {
            self.uninstall(&p);
        }
        let n = drift.len();
        for p in drift {
            self.mark(p);
        }
        n
    }

    /// Ends the restart: stale routes not re-learned are removed.
    pub fn sweep_stale(&mut self) -> usize {
        let stale: Vec<IpNet> = self
            .installed
            .iter()
            .filter(|(p, i)| i.stale && !self.desired.contains_key(p))
            .map(|(p, _)| *p)
            .collect();
        for p in &stale {
            self.mark(*p);
        }
        if self.stale > 0 {
            for i in self.installed.values_mut() {
                i.stale = false;
            }
            self.stale = 0;
        }
        stale.len()
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

    fn hops(h: &[&str]) -> Option<NextHops> {
        Some(h.iter().map(|h| ip(h)).collect())
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
        let mut s = FibState::new(20);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        s.set(p("192.0.2.0/24"), hops(&["10.0.2.1", "10.0.1.1"]));
        let ops = run(&mut s);
        assert_eq!(
            ops,
            vec![Op::Replace {
                prefix: p("192.0.2.0/24"),
                next_hops: [ip("10.0.1.1"), ip("10.0.2.1")].into_iter().collect()
            }]
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
        let mut s = FibState::new(20);
        s.set(p("10.244.1.0/24"), hops(&[]));
        assert!(run(&mut s).is_empty());
    }

    #[test]
    fn foreign_routes_are_never_replaced() {
        let mut s = FibState::new(20);
        let static_route = KernelRoute {
            prefix: p("192.0.2.0/24"),
            protocol: 4,
            metric: 20,
            next_hops: SmallVec::new(),
        };
        s.reconcile(std::slice::from_ref(&static_route));
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        assert!(run(&mut s).is_empty(), "same metric: never replace");
        assert_eq!(s.blocked(&p("192.0.2.0/24")), Some(Blocked::Conflict { protocol: 4 }));
        // A foreign route with a lower metric shadows ours; ours is installed.
        let mut s = FibState::new(20);
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
        let mut s = FibState::new(20);
        let left = |prefix: &str| KernelRoute {
            prefix: p(prefix),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.1.1")].into_iter().collect(),
        };
        assert_eq!(s.adopt(&[left("192.0.2.0/24"), left("198.51.100.0/24")]), 2);
        assert!(run(&mut s).is_empty(), "nothing is deleted at start");
        // Re-learned with the same next hop: rewritten once (no longer stale).
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        assert_eq!(run(&mut s).len(), 1);
        assert_eq!(s.stale_count(), 1);
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
        let mut s = FibState::new(20);
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
            first,
            vec![Op::Replace {
                prefix: p("192.0.2.0/24"),
                next_hops: [ip("10.0.2.1")].into_iter().collect()
            }]
        );
    }

    #[test]
    fn reconcile_repairs_drift() {
        let mut s = FibState::new(20);
        s.set(p("192.0.2.0/24"), hops(&["10.0.1.1"]));
        run(&mut s);
        // Someone deleted our route; a route of ours we never installed
        // appeared.
        let stray = KernelRoute {
            prefix: p("203.0.113.0/24"),
            protocol: PROTO_BGP,
            metric: 20,
            next_hops: [ip("10.0.1.1")].into_iter().collect(),
        };
        assert_eq!(s.reconcile(&[stray]), 2);
        let mut ops = run(&mut s);
        ops.sort_by_key(|o| o.prefix());
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0], Op::Replace { .. }));
        assert_eq!(
            ops[1],
            Op::Delete {
                prefix: p("203.0.113.0/24")
            }
        );
    }
}
