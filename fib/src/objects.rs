//! What routes point at in the kernel: groups of gateways. Every installed
//! route refers to one group by a 4-byte id. Without kernel nexthop objects
//! a group is only the interned gateway set the route was written with.
//! With them (Linux 5.3+) each group is a kernel nexthop group whose
//! members are nexthop objects, one per (gateway, device); routes carry
//! the group's id (RTA_NH_ID). A group's membership can then change under
//! its routes in one RTM_NEWNEXTHOP: when a gateway is lost, every group
//! holding it is replaced without it, and routes whose new selection is
//! exactly what their group now holds are never rewritten.
//!
//! Free of I/O: the writer carries the [`ObjectOp`]s out. Objects carry
//! our protocol and ids in [`OBJECT_IDS`]; others' are never touched.

use super::nexthop_wire::KernelNexthop;
use crate::NextHops;
use hashbrown::{HashMap, HashSet};
use std::collections::VecDeque;
use std::net::IpAddr;

/// A group's index; [`NO_GROUP`] is none.
pub type GroupId = u32;
pub const NO_GROUP: GroupId = 0;

/// The kernel object ids this agent uses (nexthops and groups share them).
pub const OBJECT_IDS: std::ops::Range<u32> = 0x6e00_0000..0x6f00_0000;

/// One kernel operation on a nexthop object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    /// Create or replace a nexthop: `gateway` through device `oif`.
    Nexthop { id: u32, gateway: IpAddr, oif: u32 },
    /// Create or replace a group with these member nexthop ids.
    Group { id: u32, members: Vec<u32> },
    /// Remove an object of ours.
    Delete { id: u32 },
}

#[derive(Debug, Clone, Default)]
struct Group {
    members: NextHops,
    /// Routes installed on it, and route writes under way that use it.
    refs: u32,
    /// The kernel group's id (0 without nexthop objects).
    kernel_id: u32,
    /// The kernel holds it with `members`.
    in_kernel: bool,
}

#[derive(Debug, Clone)]
struct Nexthop {
    id: u32,
    oif: u32,
    /// Groups it is a member of.
    groups: u32,
    in_kernel: bool,
}

/// Groups and nexthop objects.
#[derive(Debug)]
pub struct Objects {
    /// Kernel nexthop objects are used.
    kernel: bool,
    groups: Vec<Group>,
    by_members: HashMap<NextHops, GroupId>,
    by_kernel_id: HashMap<u32, GroupId>,
    /// With nexthop objects: groups of routes the kernel holds with
    /// gateways (written before nexthop objects were used).
    gateway_groups: HashMap<NextHops, GroupId>,
    free: Vec<GroupId>,
    nexthops: HashMap<IpAddr, Nexthop>,
    /// The device each gateway is reached through.
    devices: HashMap<IpAddr, u32>,
    /// Object ids in the kernel that are not ours.
    foreign: HashSet<u32>,
    next_id: u32,
    /// Operations that go before any route write (a lost gateway).
    first: VecDeque<ObjectOp>,
    /// Groups whose last reference went.
    unused: Vec<GroupId>,
    /// Removals that wait for the next batch (a lost gateway's nexthop:
    /// the kernel takes its time to delete one).
    later: Vec<ObjectOp>,
}

impl Objects {
    pub fn new(kernel: bool) -> Objects {
        Objects {
            kernel,
            groups: vec![Group::default()],
            by_members: HashMap::new(),
            by_kernel_id: HashMap::new(),
            gateway_groups: HashMap::new(),
            free: Vec::new(),
            nexthops: HashMap::new(),
            devices: HashMap::new(),
            foreign: HashSet::new(),
            next_id: OBJECT_IDS.start,
            first: VecDeque::new(),
            unused: Vec::new(),
            later: Vec::new(),
        }
    }

    /// Whether routes point at kernel nexthop objects.
    pub fn kernel(&self) -> bool {
        self.kernel
    }

    pub fn members(&self, g: GroupId) -> &NextHops {
        &self.groups[g as usize].members
    }

    /// The kernel id routes on `g` carry (0 without nexthop objects).
    pub fn kernel_id(&self, g: GroupId) -> u32 {
        self.groups[g as usize].kernel_id
    }

    /// Groups in use.
    pub fn group_count(&self) -> usize {
        self.groups.len() - 1 - self.free.len()
    }

    /// Nexthop objects of ours.
    pub fn nexthop_count(&self) -> usize {
        self.nexthops.len()
    }

    /// Records the device a gateway is reached through. A nexthop object
    /// of the gateway on another device is replaced.
    pub fn set_device(&mut self, gateway: IpAddr, oif: u32) {
        if self.devices.insert(gateway, oif) == Some(oif) {
            return;
        }
        if let Some(nh) = self.nexthops.get_mut(&gateway) {
            if nh.oif != oif {
                nh.oif = oif;
                if nh.in_kernel {
                    self.first.push_back(ObjectOp::Nexthop {
                        id: nh.id,
                        gateway,
                        oif,
                    });
                }
            }
        }
    }

    fn allocate_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id + 1 >= OBJECT_IDS.end {
                OBJECT_IDS.start
            } else {
                self.next_id + 1
            };
            let taken = self.foreign.contains(&id)
                || self.by_kernel_id.contains_key(&id)
                || self.nexthops.values().any(|n| n.id == id);
            if !taken {
                return id;
            }
        }
    }

    fn new_slot(&mut self, g: Group) -> GroupId {
        match self.free.pop() {
            Some(id) => {
                self.groups[id as usize] = g;
                id
            }
            None => {
                self.groups.push(g);
                (self.groups.len() - 1) as GroupId
            }
        }
    }

    /// A group holding exactly `members`, made when there is none; with
    /// nexthop objects, the operations that create what the kernel lacks
    /// are added to `ops` (members first). Takes a reference.
    pub fn acquire(&mut self, members: &NextHops, ops: &mut Vec<ObjectOp>) -> GroupId {
        let g = match self.by_members.get(members) {
            Some(g) => *g,
            None => {
                let kernel_id = if self.kernel { self.allocate_id() } else { 0 };
                let g = self.new_slot(Group {
                    members: members.clone(),
                    refs: 0,
                    kernel_id,
                    in_kernel: false,
                });
                self.by_members.insert(members.clone(), g);
                if self.kernel {
                    self.by_kernel_id.insert(kernel_id, g);
                    for gw in members {
                        self.join(*gw);
                    }
                }
                g
            }
        };
        self.groups[g as usize].refs += 1;
        if self.kernel {
            self.ensure_in_kernel(g, ops);
        }
        g
    }

    /// A gateway becomes a member of one more group.
    fn join(&mut self, gateway: IpAddr) {
        if !self.nexthops.contains_key(&gateway) {
            let id = self.allocate_id();
            let oif = self.devices.get(&gateway).copied().unwrap_or(0);
            self.nexthops.insert(
                gateway,
                Nexthop {
                    id,
                    oif,
                    groups: 0,
                    in_kernel: false,
                },
            );
        }
        self.nexthops.get_mut(&gateway).expect("inserted").groups += 1;
    }

    fn leave(&mut self, gateway: IpAddr, ops: &mut Vec<ObjectOp>) {
        let Some(nh) = self.nexthops.get_mut(&gateway) else {
            return;
        };
        nh.groups -= 1;
        if nh.groups == 0 {
            let nh = self.nexthops.remove(&gateway).expect("present");
            if nh.in_kernel {
                ops.push(ObjectOp::Delete { id: nh.id });
            }
        }
    }

    fn ensure_in_kernel(&mut self, g: GroupId, ops: &mut Vec<ObjectOp>) {
        if self.groups[g as usize].in_kernel {
            return;
        }
        let members = self.groups[g as usize].members.clone();
        let mut ids = Vec::with_capacity(members.len());
        for gw in &members {
            let nh = self.nexthops.get_mut(gw).expect("members have nexthops");
            if !nh.in_kernel {
                ops.push(ObjectOp::Nexthop {
                    id: nh.id,
                    gateway: *gw,
                    oif: nh.oif,
                });
                nh.in_kernel = true;
            }
            ids.push(nh.id);
        }
        let group = &mut self.groups[g as usize];
        ops.push(ObjectOp::Group {
            id: group.kernel_id,
            members: ids,
        });
        group.in_kernel = true;
    }

    /// Drops a reference; a group nobody uses any more is removed at the
    /// next [`Objects::take_unused`].
    pub fn release(&mut self, g: GroupId) {
        if g == NO_GROUP {
            return;
        }
        let group = &mut self.groups[g as usize];
        group.refs -= 1;
        if group.refs == 0 {
            self.unused.push(g);
        }
    }

    /// Removes groups left without routes, and nexthops left without
    /// groups; the kernel operations that remove them go into `ops`.
    pub fn take_unused(&mut self, ops: &mut Vec<ObjectOp>) {
        ops.append(&mut self.later);
        for g in std::mem::take(&mut self.unused) {
            let group = &self.groups[g as usize];
            if group.refs > 0 {
                continue;
            }
            let group = std::mem::take(&mut self.groups[g as usize]);
            if self.by_members.get(&group.members) == Some(&g) {
                self.by_members.remove(&group.members);
            }
            if self.gateway_groups.get(&group.members) == Some(&g) {
                self.gateway_groups.remove(&group.members);
            }
            if self.kernel && group.kernel_id != 0 {
                self.by_kernel_id.remove(&group.kernel_id);
                if group.in_kernel {
                    ops.push(ObjectOp::Delete { id: group.kernel_id });
                }
                for gw in &group.members {
                    self.leave(*gw, ops);
                }
            }
            self.free.push(g);
        }
    }

    /// Gateways lost (their BGP peer went down): with nexthop objects,
    /// every group holding one is replaced without it, ahead of any route
    /// write; a group that would be left empty stays (its routes go with
    /// the RIB's withdrawals). Returns the groups changed.
    pub fn lose(&mut self, lost: &[IpAddr]) -> usize {
        if !self.kernel || lost.is_empty() {
            return 0;
        }
        let mut changed = 0;
        for g in 1..self.groups.len() as GroupId {
            let group = &self.groups[g as usize];
            if group.refs == 0 || !group.members.iter().any(|m| lost.contains(m)) {
                continue;
            }
            let left: NextHops = group.members.iter().copied().filter(|m| !lost.contains(m)).collect();
            if left.is_empty() {
                continue;
            }
            let ids: Vec<u32> = left.iter().map(|gw| self.nexthops[gw].id).collect();
            let old = std::mem::replace(&mut self.groups[g as usize].members, left.clone());
            if self.by_members.get(&old) == Some(&g) {
                self.by_members.remove(&old);
            }
            // The first group with these members is the one new routes use.
            self.by_members.entry(left).or_insert(g);
            let mut ops = Vec::new();
            for gw in old.iter().filter(|m| lost.contains(m)) {
                self.leave(*gw, &mut ops);
            }
            let kernel_id = self.groups[g as usize].kernel_id;
            if self.groups[g as usize].in_kernel {
                self.first.push_back(ObjectOp::Group {
                    id: kernel_id,
                    members: ids,
                });
            }
            // A member removed from its last group goes with the next batch.
            self.later.extend(ops);
            changed += 1;
        }
        changed
    }

    /// Operations that must precede route writes.
    pub fn take_first(&mut self) -> Vec<ObjectOp> {
        self.first.drain(..).collect()
    }

    pub fn has_first(&self) -> bool {
        !self.first.is_empty() || !self.unused.is_empty() || !self.later.is_empty()
    }

    /// Records a failed object operation: the object is taken as absent
    /// so it is created again before it is used.
    pub fn failed(&mut self, op: &ObjectOp) {
        match op {
            ObjectOp::Nexthop { gateway, .. } => {
                if let Some(nh) = self.nexthops.get_mut(gateway) {
                    nh.in_kernel = false;
                }
            }
            ObjectOp::Group { id, .. } => {
                if let Some(g) = self.by_kernel_id.get(id) {
                    self.groups[*g as usize].in_kernel = false;
                }
            }
            ObjectOp::Delete { .. } => {}
        }
    }

    /// Takes in the kernel's nexthop objects: ours (our protocol, an id in
    /// [`OBJECT_IDS`]) become known groups and nexthops as the kernel holds
    /// them, with no references yet; others' ids are never used. Objects of
    /// ours the kernel does not hold are marked absent (created again when
    /// used); ours it holds that we do not know are removed ahead of any
    /// route write. Returns how many removals that queued.
    pub fn take_kernel(&mut self, dump: &[KernelNexthop], protocol: u8) -> usize {
        let mut ops = Vec::new();
        self.foreign.clear();
        let ours = |n: &KernelNexthop| n.protocol == protocol && OBJECT_IDS.contains(&n.id);
        let mut gateway_of: HashMap<u32, IpAddr> = HashMap::new();
        for n in dump.iter().filter(|n| n.group.is_empty()) {
            if !ours(n) {
                self.foreign.insert(n.id);
                continue;
            }
            let (Some(gw), Some(oif)) = (n.gateway, n.oif) else {
                ops.push(ObjectOp::Delete { id: n.id });
                continue;
            };
            gateway_of.insert(n.id, gw);
            match self.nexthops.get_mut(&gw) {
                Some(nh) if nh.id == n.id => {
                    nh.in_kernel = nh.oif == oif;
                }
                Some(_) => ops.push(ObjectOp::Delete { id: n.id }),
                None => {
                    self.devices.entry(gw).or_insert(oif);
                    self.nexthops.insert(
                        gw,
                        Nexthop {
                            id: n.id,
                            oif,
                            groups: 0,
                            in_kernel: true,
                        },
                    );
                }
            }
        }
        let present: HashSet<u32> = dump.iter().map(|n| n.id).collect();
        for nh in self.nexthops.values_mut() {
            if !present.contains(&nh.id) {
                nh.in_kernel = false;
            }
        }
        for n in dump.iter().filter(|n| !n.group.is_empty()) {
            if !ours(n) {
                self.foreign.insert(n.id);
                continue;
            }
            let mut members: NextHops = n.group.iter().filter_map(|m| gateway_of.get(m).copied()).collect();
            members.sort();
            members.dedup();
            match self.by_kernel_id.get(&n.id).copied() {
                Some(g) => {
                    let group = &mut self.groups[g as usize];
                    group.in_kernel = group.members == members;
                }
                None if members.len() == n.group.len() && !self.by_members.contains_key(&members) => {
                    let g = self.new_slot(Group {
                        members: members.clone(),
                        refs: 0,
                        kernel_id: n.id,
                        in_kernel: true,
                    });
                    self.by_members.insert(members.clone(), g);
                    self.by_kernel_id.insert(n.id, g);
                    for gw in &members {
                        self.join(*gw);
                    }
                    // Unused unless a route of ours takes it.
                    self.unused.push(g);
                }
                None => ops.push(ObjectOp::Delete { id: n.id }),
            }
        }
        for g in 1..self.groups.len() {
            let group = &self.groups[g];
            if group.kernel_id != 0 && !present.contains(&group.kernel_id) {
                self.groups[g].in_kernel = false;
            }
        }
        let queued = ops.len();
        self.first.extend(ops);
        queued
    }

    /// Takes a reference to the group of ours with kernel id `id` (a
    /// route adopted from the kernel).
    pub fn adopt_reference(&mut self, id: u32) -> Option<GroupId> {
        let g = self.by_kernel_id.get(&id).copied()?;
        self.groups[g as usize].refs += 1;
        Some(g)
    }

    /// Takes a reference to the group of a route written with gateways
    /// (no nexthop object), as the kernel holds it. With nexthop objects
    /// such groups are kept apart: a new write always gets a real group.
    pub fn gateways_reference(&mut self, members: &NextHops) -> GroupId {
        let existing = if self.kernel {
            self.gateway_groups.get(members).copied()
        } else {
            self.by_members.get(members).copied()
        };
        let g = match existing {
            Some(g) => g,
            None => {
                let g = self.new_slot(Group {
                    members: members.clone(),
                    refs: 0,
                    kernel_id: 0,
                    in_kernel: true,
                });
                if self.kernel {
                    self.gateway_groups.insert(members.clone(), g);
                } else {
                    self.by_members.insert(members.clone(), g);
                }
                g
            }
        };
        self.groups[g as usize].refs += 1;
        g
    }

    /// Whether the group is written in the kernel as nexthop objects.
    pub fn in_kernel(&self, g: GroupId) -> bool {
        g != NO_GROUP && self.groups[g as usize].in_kernel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(v: &[&str]) -> NextHops {
        let mut h: NextHops = v.iter().map(|s| ip(s)).collect();
        h.sort();
        h
    }

    fn objects() -> Objects {
        let mut o = Objects::new(true);
        o.set_device(ip("10.0.1.1"), 2);
        o.set_device(ip("10.0.2.1"), 3);
        o
    }

    #[test]
    fn a_group_is_made_once_with_its_members_first() {
        let mut o = objects();
        let mut ops = Vec::new();
        let g = o.acquire(&set(&["10.0.1.1", "10.0.2.1"]), &mut ops);
        assert_eq!(ops.len(), 3);
        assert!(matches!(ops[0], ObjectOp::Nexthop { oif: 2, .. }));
        assert!(matches!(ops[1], ObjectOp::Nexthop { oif: 3, .. }));
        let ObjectOp::Group { id, members } = &ops[2] else {
            panic!("{ops:?}")
        };
        assert_eq!(*id, o.kernel_id(g));
        assert_eq!(members.len(), 2);
        assert!(OBJECT_IDS.contains(id));
        // The same set again: the same group, nothing to write.
        let mut again = Vec::new();
        assert_eq!(o.acquire(&set(&["10.0.2.1", "10.0.1.1"]), &mut again), g);
        assert!(again.is_empty());
        // A set sharing a member reuses its nexthop.
        let mut one = Vec::new();
        o.acquire(&set(&["10.0.2.1"]), &mut one);
        assert_eq!(one.len(), 1, "only the group: {one:?}");
        assert_eq!(o.nexthop_count(), 2);
    }

    #[test]
    fn a_lost_gateway_leaves_every_group_in_one_operation_each() {
        let mut o = objects();
        let mut ops = Vec::new();
        let both = o.acquire(&set(&["10.0.1.1", "10.0.2.1"]), &mut ops);
        let only_b = o.acquire(&set(&["10.0.2.1"]), &mut ops);
        let only_a = o.acquire(&set(&["10.0.1.1"]), &mut ops);
        assert_eq!(o.lose(&[ip("10.0.1.1")]), 1, "the group that only has A stays");
        let first = o.take_first();
        assert_eq!(first.len(), 1, "only the group goes first: {first:?}");
        let mut later = Vec::new();
        o.take_unused(&mut later);
        assert!(later.is_empty(), "10.0.1.1 is still in the group of its own: {later:?}");
        assert_eq!(o.members(both), &set(&["10.0.2.1"]));
        assert_eq!(o.members(only_a), &set(&["10.0.1.1"]));
        // New routes wanting B alone keep using the group made for it.
        let mut none = Vec::new();
        assert_eq!(o.acquire(&set(&["10.0.2.1"]), &mut none), only_b);
        assert!(none.is_empty());
    }

    #[test]
    fn unused_groups_and_their_nexthops_are_removed() {
        let mut o = objects();
        let mut ops = Vec::new();
        let g = o.acquire(&set(&["10.0.1.1", "10.0.2.1"]), &mut ops);
        let h = o.acquire(&set(&["10.0.2.1"]), &mut ops);
        let g_id = o.kernel_id(g);
        o.release(g);
        let mut gone = Vec::new();
        o.take_unused(&mut gone);
        // The group, then 10.0.1.1's nexthop; 10.0.2.1's is still used.
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert_eq!(gone[0], ObjectOp::Delete { id: g_id });
        assert_eq!(o.nexthop_count(), 1);
        o.release(h);
        let mut rest = Vec::new();
        o.take_unused(&mut rest);
        assert_eq!(rest.len(), 2);
        assert_eq!((o.nexthop_count(), o.by_members.len()), (0, 0));
    }

    #[test]
    fn kernel_objects_of_ours_are_taken_in_and_others_never_used() {
        let mut o = Objects::new(true);
        let ours = |id, gw: &str| KernelNexthop {
            id,
            protocol: 186,
            gateway: Some(ip(gw)),
            oif: Some(2),
            group: vec![],
            blackhole: false,
        };
        let base = OBJECT_IDS.start;
        let dump = vec![
            ours(base, "10.0.1.1"),
            ours(base + 1, "10.0.2.1"),
            KernelNexthop {
                id: base + 2,
                protocol: 186,
                gateway: None,
                oif: None,
                group: vec![base, base + 1],
                blackhole: false,
            },
            // zebra's, with an id in our range.
            KernelNexthop {
                protocol: 11,
                ..ours(base + 3, "10.0.3.1")
            },
        ];
        assert_eq!(o.take_kernel(&dump, 186), 0, "nothing of ours to remove");
        let g = o.adopt_reference(base + 2).expect("the group is ours");
        assert_eq!(o.members(g), &set(&["10.0.1.1", "10.0.2.1"]));
        assert!(o.in_kernel(g));
        let mut ops = Vec::new();
        o.acquire(&set(&["10.0.3.1"]), &mut ops);
        let ids: Vec<u32> = ops
            .iter()
            .map(|op| match op {
                ObjectOp::Nexthop { id, .. } | ObjectOp::Group { id, .. } | ObjectOp::Delete { id } => *id,
            })
            .collect();
        assert!(!ids.contains(&(base + 3)), "zebra's id is never reused: {ids:?}");
    }
}
