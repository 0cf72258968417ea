//! The routing table: every peer's accepted paths per prefix (the
//! post-policy Adj-RIB-In, held in place rather than copied), the best path
//! and its multipath siblings (the Loc-RIB), and the changes that export and
//! the FIB consume.
//!
//! Paths share interned attributes ([`intern::AttrTable`]); the decision
//! process lives in [`decision`]; per-peer export state in [`export`].

pub mod decision;
pub mod export;
pub mod intern;

use crate::prefix_table::{Keyed, PrefixKey, Table, V4Key, V6Key};
use crate::wire::{Nlri, PathAttributes};
use decision::{compare, multipath_eligible, Candidate, Step};
use intern::AttrTable;
use ipnet::IpNet;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Index of a peer in the RIB. [`LOCAL_PEER`] stands for routes this node
/// originates. Identifiers stay below 2^31.
pub type PeerId = u32;

/// The pseudo-peer of locally originated routes.
pub const LOCAL_PEER: PeerId = 0;

/// What the decision process needs to know about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    pub ibgp: bool,
    /// The local pseudo-peer.
    pub local: bool,
}

/// One candidate path for a prefix (16 bytes: the stale mark shares a word
/// with the peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub attrs: Arc<PathAttributes>,
    /// The peer, and in the top bit whether the path is stale.
    peer_and_stale: u32,
    pub path_id: u32,
}

const STALE_BIT: u32 = 1 << 31;

impl Path {
    pub fn new(peer: PeerId, path_id: u32, attrs: Arc<PathAttributes>) -> Path {
        assert!(peer < STALE_BIT, "peer identifiers stay below 2^31");
        Path {
            attrs,
            peer_and_stale: peer,
            path_id,
        }
    }

    pub fn peer(&self) -> PeerId {
        self.peer_and_stale & !STALE_BIT
    }

    /// Kept from a restarting peer (graceful restart) until refreshed or
    /// swept.
    pub fn stale(&self) -> bool {
        self.peer_and_stale & STALE_BIT != 0
    }

    fn mark_stale(&mut self) {
        self.peer_and_stale |= STALE_BIT;
    }
}

/// All paths of one prefix: the best first, then its multipath siblings
/// (`multipath` of them), then the rest.
#[derive(Debug, Clone, Copy)]
pub struct RibEntry<'a> {
    paths: &'a [Path],
    multipath: u8,
}

impl<'a> RibEntry<'a> {
    fn of<K>(slot: &'a Slot<K>) -> Self {
        RibEntry {
            paths: &slot.paths,
            multipath: slot.multipath,
        }
    }

    pub fn paths(&self) -> &'a [Path] {
        self.paths
    }

    pub fn best(&self) -> Option<&'a Path> {
        self.paths.first()
    }

    /// The best path and the paths that share forwarding with it.
    pub fn forwarding(&self) -> &'a [Path] {
        let n = if self.paths.is_empty() {
            0
        } else {
            1 + self.multipath as usize
        };
        &self.paths[..n]
    }

    /// The selection as export and the FIB see it.
    pub fn selection(&self) -> Option<Best> {
        let best = self.best()?;
        let mut next_hops = SmallVec::new();
        for p in self.forwarding() {
            if let Some(nh) = p.attrs.next_hop {
                next_hops.push(nh);
            }
        }
        Some(Best {
            peer: best.peer(),
            attrs: best.attrs.clone(),
            next_hops,
        })
    }
}

/// The selected route of a prefix, as export and the FIB see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Best {
    pub peer: PeerId,
    pub attrs: Arc<PathAttributes>,
    /// Next hops of the best path and its multipath siblings.
    pub next_hops: SmallVec<[IpAddr; 2]>,
}

/// A change of a prefix's selected route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    /// The selection before the change (what peers were sent).
    pub old: Option<Best>,
    /// The new selection; `None` when the prefix has no path left.
    pub best: Option<Best>,
}

/// The paths of one prefix, as stored: best first, then `multipath`
/// siblings, then the rest.
type Paths = SmallVec<[Path; 1]>;

/// One prefix's stored entry (32 bytes for IPv4: key, count and one path
/// inline).
#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    /// How many paths after the best share forwarding with it.
    multipath: u8,
    paths: Paths,
}

impl<K: PrefixKey> Keyed for Slot<K> {
    type Key = K;
    fn key(&self) -> &K {
        &self.key
    }
}

impl<K> Slot<K> {
    fn empty(key: K) -> Self {
        Slot {
            key,
            multipath: 0,
            paths: Paths::new(),
        }
    }
}

/// The per-family tables, addressed by `IpNet`.
#[derive(Debug, Default)]
struct Tables {
    v4: Table<Slot<V4Key>>,
    v6: Table<Slot<V6Key>>,
}

/// A stored entry, whichever its family.
struct SlotMut<'a> {
    multipath: &'a mut u8,
    paths: &'a mut Paths,
}

impl<'a> SlotMut<'a> {
    fn of<K>(slot: &'a mut Slot<K>) -> Self {
        SlotMut {
            multipath: &mut slot.multipath,
            paths: &mut slot.paths,
        }
    }

    fn view(&self) -> RibEntry<'_> {
        RibEntry {
            paths: self.paths,
            multipath: *self.multipath,
        }
    }
}

impl Tables {
    fn get(&self, prefix: &IpNet) -> Option<RibEntry<'_>> {
        match prefix {
            IpNet::V4(n) => self.v4.get(&n.into()).map(RibEntry::of),
            IpNet::V6(n) => self.v6.get(&n.into()).map(RibEntry::of),
        }
    }

    fn get_mut(&mut self, prefix: &IpNet) -> Option<SlotMut<'_>> {
        match prefix {
            IpNet::V4(n) => self.v4.get_mut(&n.into()).map(SlotMut::of),
            IpNet::V6(n) => self.v6.get_mut(&n.into()).map(SlotMut::of),
        }
    }

    fn get_or_insert(&mut self, prefix: &IpNet) -> SlotMut<'_> {
        match prefix {
            IpNet::V4(n) => SlotMut::of(self.v4.get_or_insert_with(n.into(), Slot::empty)),
            IpNet::V6(n) => SlotMut::of(self.v6.get_or_insert_with(n.into(), Slot::empty)),
        }
    }

    fn remove(&mut self, prefix: &IpNet) {
        match prefix {
            IpNet::V4(n) => drop(self.v4.remove(&n.into())),
            IpNet::V6(n) => drop(self.v6.remove(&n.into())),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn iter(&self) -> impl Iterator<Item = (IpNet, RibEntry<'_>)> {
        fn walk<K: PrefixKey>(t: &Table<Slot<K>>) -> impl Iterator<Item = (IpNet, RibEntry<'_>)> {
            t.iter().map(|s| (s.key.net(), RibEntry::of(s)))
        }
        walk(&self.v4).chain(walk(&self.v6))
    }

    /// Every path of every prefix, mutably.
    fn paths_mut(&mut self) -> impl Iterator<Item = &mut Path> {
        let v4 = self.v4.iter_mut().flat_map(|s| s.paths.iter_mut());
        let v6 = self.v6.iter_mut().flat_map(|s| s.paths.iter_mut());
        v4.chain(v6)
    }
}

/// Paths held, in total and per peer.
#[derive(Debug, Default)]
struct PathCounts {
    total: usize,
    /// Paths per peer, by peer index.
    per_peer: Vec<usize>,
    /// Of those, IPv6 paths.
    per_peer_v6: Vec<usize>,
}

impl PathCounts {
    fn grow_to(&mut self, peer: PeerId) {
        let i = peer as usize;
        if self.per_peer.len() <= i {
            self.per_peer.resize(i + 1, 0);
            self.per_peer_v6.resize(i + 1, 0);
        }
    }

    fn count(&mut self, peer: PeerId, prefix: &IpNet, added: bool) {
        self.grow_to(peer);
        let i = peer as usize;
        let v6 = matches!(prefix, IpNet::V6(_)) as usize;
        if added {
            self.total += 1;
            self.per_peer[i] += 1;
            self.per_peer_v6[i] += v6;
        } else {
            self.total -= 1;
            self.per_peer[i] -= 1;
            self.per_peer_v6[i] -= v6;
        }
    }
}

/// The table.
#[derive(Debug, Default)]
pub struct Rib {
    tables: Tables,
    attrs: AttrTable,
    peers: Vec<Option<PeerInfo>>,
    counts: PathCounts,
}

impl Rib {
    pub fn new(local_router_id: Ipv4Addr) -> Self {
        let mut rib = Rib::default();
        rib.set_peer(
            LOCAL_PEER,
            PeerInfo {
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                router_id: local_router_id,
                ibgp: false,
                local: true,
            },
        );
        rib
    }

    /// Registers or updates a peer's decision inputs.
    pub fn set_peer(&mut self, id: PeerId, info: PeerInfo) {
        let i = id as usize;
        if self.peers.len() <= i {
            self.peers.resize(i + 1, None);
        }
        self.counts.grow_to(id);
        self.peers[i] = Some(info);
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(id as usize).and_then(Option::as_ref)
    }

    /// Shares `attrs` with every other route carrying the same set.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        self.attrs.intern(attrs)
    }

    pub fn entry(&self, prefix: &IpNet) -> Option<RibEntry<'_>> {
        self.tables.get(prefix)
    }

    /// Every prefix with its entry (IPv4, then IPv6).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, RibEntry<'_>)> {
        self.tables.iter()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of paths over all prefixes.
    pub fn path_count(&self) -> usize {
        self.counts.total
    }

    /// Number of distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// Drops attribute sets no route uses any more.
    pub fn collect_unused_attributes(&mut self) {
        self.attrs.collect();
    }

    /// Paths a peer has in the table.
    pub fn paths_from(&self, peer: PeerId) -> usize {
        self.counts.per_peer.get(peer as usize).copied().unwrap_or(0)
    }

    /// Whether a peer has this path (prefix and path id) in the table.
    pub fn has_path(&self, peer: PeerId, nlri: &Nlri) -> bool {
        self.entry(&nlri.prefix)
            .is_some_and(|e| e.paths().iter().any(|p| p.peer() == peer && p.path_id == nlri.path_id))
    }

    /// IPv6 paths a peer has in the table.
    pub fn paths_from_v6(&self, peer: PeerId) -> usize {
        self.counts.per_peer_v6.get(peer as usize).copied().unwrap_or(0)
    }

    /// Adds or replaces a peer's path for a prefix.
    pub fn announce(&mut self, peer: PeerId, nlri: Nlri, attrs: Arc<PathAttributes>) -> Option<BestChange> {
        let attrs = self.attrs.intern_arc(&attrs);
        self.announce_interned(peer, nlri, attrs)
    }

    /// Adds or replaces a peer's paths for prefixes sharing one attribute
    /// set (one UPDATE); selection changes are appended to `changes`.
    pub fn announce_all(
        &mut self,
        peer: PeerId,
        attrs: &Arc<PathAttributes>,
        prefixes: &[Nlri],
        changes: &mut Vec<BestChange>,
    ) {
        let shared = self.attrs.intern_arc(attrs);
        for n in prefixes {
            changes.extend(self.announce_interned(peer, *n, shared.clone()));
        }
    }

    fn announce_interned(&mut self, peer: PeerId, nlri: Nlri, attrs: Arc<PathAttributes>) -> Option<BestChange> {
        let path = Path::new(peer, nlri.path_id, attrs);
        let slot = self.tables.get_or_insert(&nlri.prefix);
        let before = slot.view().selection();
        let replaced = match slot
            .paths
            .iter_mut()
            .find(|p| p.peer() == peer && p.path_id == nlri.path_id)
        {
            Some(existing) => Some(std::mem::replace(existing, path)),
            None => {
                slot.paths.push(path);
                self.counts.count(peer, &nlri.prefix, true);
                None
            }
        };
        order_paths(slot.paths, slot.multipath, &self.peers);
        let after = slot.view().selection();
        if let Some(old) = replaced {
            self.attrs.release(old.attrs);
        }
        changed(nlri.prefix, before, after)
    }

    /// Removes a peer's path for a prefix.
    pub fn withdraw(&mut self, peer: PeerId, nlri: Nlri) -> Option<BestChange> {
        let slot = self.tables.get_mut(&nlri.prefix)?;
        let i = slot
            .paths
            .iter()
            .position(|p| p.peer() == peer && p.path_id == nlri.path_id)?;
        let before = slot.view().selection();
        let old = slot.paths.remove(i);
        let after = self.settle(&nlri.prefix);
        self.counts.count(peer, &nlri.prefix, false);
        self.attrs.release(old.attrs);
        changed(nlri.prefix, before, after)
    }

    /// Re-runs the decision of a prefix whose paths changed, or drops the
    /// prefix when it has none left; returns the new selection.
    fn settle(&mut self, prefix: &IpNet) -> Option<Best> {
        let slot = self.tables.get_mut(prefix)?;
        if slot.paths.is_empty() {
            self.tables.remove(prefix);
            return None;
        }
        order_paths(slot.paths, slot.multipath, &self.peers);
        slot.view().selection()
    }

    /// Marks a peer's paths stale (graceful restart helper); returns how many.
    pub fn mark_stale(&mut self, peer: PeerId) -> usize {
        let mut n = 0;
        for p in self.tables.paths_mut().filter(|p| p.peer() == peer) {
            p.mark_stale();
            n += 1;
        }
        n
    }

    /// The prefixes where `peer` has a path `which` selects: what
    /// [`Rib::remove_paths`] then takes away, a slice at a time if the
    /// caller wants the changes in bounded batches (a full table's worth
    /// of changes at once would be ~150 bytes a prefix).
    pub fn prefixes_with(&self, peer: PeerId, which: PathSelector) -> Vec<IpNet> {
        self.tables
            .iter()
            .filter(|(k, e)| e.paths().iter().any(|p| p.peer() == peer && which.selects(k, p)))
            .map(|(k, _)| k)
            .collect()
    }

    /// Removes the paths of `peer` that `which` selects from `prefixes`.
    pub fn remove_paths(&mut self, peer: PeerId, which: PathSelector, prefixes: &[IpNet]) -> Vec<BestChange> {
        let mut changes = Vec::new();
        for prefix in prefixes {
            let Some(slot) = self.tables.get_mut(prefix) else {
                continue;
            };
            let before = slot.view().selection();
            let mut removed = Vec::new();
            slot.paths.retain(|p| {
                if p.peer() == peer && which.selects(prefix, p) {
                    removed.push(p.attrs.clone());
                    false
                } else {
                    true
                }
            });
            if removed.is_empty() {
                continue;
            }
            let after = self.settle(prefix);
            for a in removed {
                self.counts.count(peer, prefix, false);
                self.attrs.release(a);
            }
            changes.extend(changed(*prefix, before, after));
        }
        changes
    }

    /// Why the best path of `prefix` beat each other path: for each
    /// non-best path, the deciding step.
    pub fn explain(&self, prefix: &IpNet) -> Vec<(Path, Option<Step>)> {
        let Some(e) = self.tables.get(prefix) else {
            return Vec::new();
        };
        let Some(best) = e.paths.first() else {
            return Vec::new();
        };
        let bc = self.candidate(best);
        e.paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let step = (i > 0).then(|| compare(&bc, &self.candidate(p)).1);
                (p.clone(), step)
            })
            .collect()
    }

    fn candidate<'a>(&'a self, p: &'a Path) -> Candidate<'a> {
        Candidate {
            path: p,
            peer: self.peer(p.peer()).unwrap_or(&UNKNOWN_PEER),
        }
    }
}

static UNKNOWN_PEER: PeerInfo = PeerInfo {
    address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    router_id: Ipv4Addr::UNSPECIFIED,
    ibgp: false,
    local: false,
};

fn peer_of(peers: &[Option<PeerInfo>], id: PeerId) -> &PeerInfo {
    peers.get(id as usize).and_then(Option::as_ref).unwrap_or(&UNKNOWN_PEER)
}

/// Which of a peer's paths a removal takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSelector {
    All,
    /// Stale paths (graceful restart).
    Stale,
    /// Stale paths of one family.
    StaleOf(crate::wire::Family),
}

impl PathSelector {
    fn selects(&self, prefix: &IpNet, p: &Path) -> bool {
        match self {
            PathSelector::All => true,
            PathSelector::Stale => p.stale(),
            PathSelector::StaleOf(f) => p.stale() && crate::wire::Family::of(prefix) == *f,
        }
    }
}

/// A change report when the selection moved from `before` to `after`.
fn changed(prefix: IpNet, before: Option<Best>, after: Option<Best>) -> Option<BestChange> {
    (before != after).then_some(BestChange {
        prefix,
        old: before,
        best: after,
    })
}

/// Puts the best path first and its multipath siblings right after it.
fn order_paths(paths: &mut [Path], multipath: &mut u8, peers: &[Option<PeerInfo>]) {
    *multipath = 0;
    if paths.is_empty() {
        return;
    }
    let mut best = 0;
    for i in 1..paths.len() {
        let a = Candidate {
            path: &paths[i],
            peer: peer_of(peers, paths[i].peer()),
        };
        let b = Candidate {
            path: &paths[best],
            peer: peer_of(peers, paths[best].peer()),
        };
        if compare(&a, &b).0 == Ordering::Less {
            best = i;
        }
    }
    paths.swap(0, best);
    let mut k = 1;
    for i in 1..paths.len() {
        let eligible = {
            let b = Candidate {
                path: &paths[0],
                peer: peer_of(peers, paths[0].peer()),
            };
            let o = Candidate {
                path: &paths[i],
                peer: peer_of(peers, paths[i].peer()),
            };
            multipath_eligible(&b, &o) && !paths[1..k].iter().any(|s| s.attrs.next_hop == paths[i].attrs.next_hop)
        };
        if eligible {
            paths.swap(k, i);
            k += 1;
        }
    }
    *multipath = (k - 1).min(u8::MAX as usize) as u8;
}
