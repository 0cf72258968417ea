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

use crate::wire::{Nlri, PathAttributes};
use decision::{compare, multipath_eligible, Candidate, Step};
use intern::AttrTable;
use ipnet::IpNet;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Index of a peer in the RIB. [`LOCAL_PEER`] stands for routes this node
/// originates.
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

/// One candidate path for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub peer: PeerId,
    pub path_id: u32,
    pub attrs: Arc<PathAttributes>,
    /// Kept from a restarting peer (graceful restart) until refreshed or
    /// swept.
    pub stale: bool,
}

/// All paths of one prefix: the best first, then its multipath siblings
/// (`multipath` of them), then the rest.
#[derive(Debug, Clone, Default)]
pub struct RibEntry {
    paths: SmallVec<[Path; 1]>,
    multipath: u8,
}

impl RibEntry {
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }

    /// The best path and the paths that share forwarding with it.
    pub fn forwarding(&self) -> &[Path] {
        let n = if self.paths.is_empty() {
            0
        } else {
            1 + self.multipath as usize
        };
        &self.paths[..n]
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

/// The table.
#[derive(Debug, Default)]
pub struct Rib {
    routes: HashMap<IpNet, RibEntry>,
    attrs: AttrTable,
    peers: Vec<Option<PeerInfo>>,
    paths: usize,
    /// Paths per peer, by peer index.
    peer_paths: Vec<usize>,
    /// Of those, IPv6 paths.
    peer_paths_v6: Vec<usize>,
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
            self.peer_paths.resize(i + 1, 0);
            self.peer_paths_v6.resize(i + 1, 0);
        }
        self.peers[i] = Some(info);
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(id as usize).and_then(Option::as_ref)
    }

    /// Shares `attrs` with every other route carrying the same set.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        self.attrs.intern(attrs)
    }

    pub fn entry(&self, prefix: &IpNet) -> Option<&RibEntry> {
        self.routes.get(prefix)
    }

    /// Every prefix with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &RibEntry)> {
        self.routes.iter()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Number of paths over all prefixes.
    pub fn path_count(&self) -> usize {
        self.paths
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
        self.peer_paths.get(peer as usize).copied().unwrap_or(0)
    }

    /// IPv6 paths a peer has in the table.
    pub fn paths_from_v6(&self, peer: PeerId) -> usize {
        self.peer_paths_v6.get(peer as usize).copied().unwrap_or(0)
    }

    fn count_path(&mut self, peer: PeerId, prefix: &IpNet, added: bool) {
        let i = peer as usize;
        if self.peer_paths.len() <= i {
            self.peer_paths.resize(i + 1, 0);
            self.peer_paths_v6.resize(i + 1, 0);
        }
        let v6 = matches!(prefix, IpNet::V6(_)) as usize;
        if added {
            self.paths += 1;
            self.peer_paths[i] += 1;
            self.peer_paths_v6[i] += v6;
        } else {
            self.paths -= 1;
            self.peer_paths[i] -= 1;
            self.peer_paths_v6[i] -= v6;
        }
    }

    fn selection(&self, e: &RibEntry) -> Option<Best> {
        let best = e.paths.first()?;
        Some(Best {
            peer: best.peer,
            attrs: best.attrs.clone(),
            next_hops: e.forwarding().iter().filter_map(|p| p.attrs.next_hop).collect(),
        })
    }

    /// Adds or replaces a peer's path for a prefix.
    pub fn announce(&mut self, peer: PeerId, nlri: Nlri, attrs: Arc<PathAttributes>) -> Option<BestChange> {
        let attrs = self.attrs.intern_arc(attrs);
        let before = self.routes.get(&nlri.prefix).and_then(|e| self.selection(e));
        let entry = self.routes.entry(nlri.prefix).or_default();
        let path = Path {
            peer,
            path_id: nlri.path_id,
            attrs,
            stale: false,
        };
        let old = match entry
            .paths
            .iter_mut()
            .find(|p| p.peer == peer && p.path_id == nlri.path_id)
        {
            Some(slot) => Some(std::mem::replace(slot, path)),
            None => {
                entry.paths.push(path);
                self.count_path(peer, &nlri.prefix, true);
                None
            }
        };
        if let Some(old) = old {
            self.attrs.release(old.attrs);
        }
        self.reselect(nlri.prefix, before)
    }

    /// Removes a peer's path for a prefix.
    pub fn withdraw(&mut self, peer: PeerId, nlri: Nlri) -> Option<BestChange> {
        let before = self.routes.get(&nlri.prefix).and_then(|e| self.selection(e));
        let entry = self.routes.get_mut(&nlri.prefix)?;
        let i = entry
            .paths
            .iter()
            .position(|p| p.peer == peer && p.path_id == nlri.path_id)?;
        let old = entry.paths.remove(i);
        self.count_path(peer, &nlri.prefix, false);
        self.attrs.release(old.attrs);
        self.reselect(nlri.prefix, before)
    }

    /// Removes every path of a peer (session down without graceful restart).
    pub fn remove_peer(&mut self, peer: PeerId) -> Vec<BestChange> {
        self.remove_paths(peer, |_| true)
    }

    /// Marks a peer's paths stale (graceful restart helper); returns how many.
    pub fn mark_stale(&mut self, peer: PeerId) -> usize {
        let mut n = 0;
        for e in self.routes.values_mut() {
            for p in e.paths.iter_mut().filter(|p| p.peer == peer) {
                p.stale = true;
                n += 1;
            }
        }
        n
    }

    /// Removes a peer's paths still stale (End-of-RIB or restart timer).
    pub fn sweep_stale(&mut self, peer: PeerId) -> Vec<BestChange> {
        self.remove_paths(peer, |p| p.stale)
    }

    /// Removes a peer's stale paths of one family (End-of-RIB received).
    pub fn sweep_stale_family(&mut self, peer: PeerId, family: crate::wire::Family) -> Vec<BestChange> {
        let v4 = family == crate::wire::Family::IPV4_UNICAST;
        self.remove_paths_where(peer, |prefix, p| p.stale && matches!(prefix, IpNet::V4(_)) == v4)
    }

    fn remove_paths(&mut self, peer: PeerId, pick: impl Fn(&Path) -> bool) -> Vec<BestChange> {
        self.remove_paths_where(peer, |_, p| pick(p))
    }

    fn remove_paths_where(&mut self, peer: PeerId, pick: impl Fn(&IpNet, &Path) -> bool) -> Vec<BestChange> {
        let affected: Vec<IpNet> = self
            .routes
            .iter()
            .filter(|(k, e)| e.paths.iter().any(|p| p.peer == peer && pick(k, p)))
            .map(|(k, _)| *k)
            .collect();
        let mut changes = Vec::new();
        for prefix in affected {
            let before = self.routes.get(&prefix).and_then(|e| self.selection(e));
            let entry = self.routes.get_mut(&prefix).expect("collected above");
            let mut removed = Vec::new();
            entry.paths.retain(|p| {
                if p.peer == peer && pick(&prefix, p) {
                    removed.push(p.attrs.clone());
                    false
                } else {
                    true
                }
            });
            for a in removed {
                self.count_path(peer, &prefix, false);
                self.attrs.release(a);
            }
            changes.extend(self.reselect(prefix, before));
        }
        changes
    }

    /// Re-runs the decision for a prefix; reports a change from `before`.
    fn reselect(&mut self, prefix: IpNet, before: Option<Best>) -> Option<BestChange> {
        let entry = self.routes.get(&prefix)?;
        if entry.paths.is_empty() {
            self.routes.remove(&prefix);
            return before.map(|old| BestChange {
                prefix,
                old: Some(old),
                best: None,
            });
        }
        let peers = &self.peers;
        let entry = self.routes.get_mut(&prefix).expect("present");
        order_paths(entry, peers);
        let after = self.selection(self.routes.get(&prefix).expect("present"));
        if before == after {
            None
        } else {
            Some(BestChange {
                prefix,
                old: before,
                best: after,
            })
        }
    }

    /// Why the best path of `prefix` beat each other path: for each
    /// non-best path, the deciding step.
    pub fn explain(&self, prefix: &IpNet) -> Vec<(Path, Option<Step>)> {
        let Some(e) = self.routes.get(prefix) else {
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
            peer: self.peer(p.peer).unwrap_or(&UNKNOWN_PEER),
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

/// Puts the best path first and its multipath siblings right after it.
fn order_paths(entry: &mut RibEntry, peers: &[Option<PeerInfo>]) {
    let paths = &mut entry.paths;
    let mut best = 0;
    for i in 1..paths.len() {
        let a = Candidate {
            path: &paths[i],
            peer: peer_of(peers, paths[i].peer),
        };
        let b = Candidate {
            path: &paths[best],
            peer: peer_of(peers, paths[best].peer),
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
                peer: peer_of(peers, paths[0].peer),
            };
            let o = Candidate {
                path: &paths[i],
                peer: peer_of(peers, paths[i].peer),
            };
            multipath_eligible(&b, &o) && !paths[1..k].iter().any(|s| s.attrs.next_hop == paths[i].attrs.next_hop)
        };
        if eligible {
            paths.swap(k, i);
            k += 1;
        }
    }
    entry.multipath = (k - 1).min(u8::MAX as usize) as u8;
}
