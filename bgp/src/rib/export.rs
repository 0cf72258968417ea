//! Export to one peer: policy, the attribute rewrite for the session
//! (AS prepend, next hop self, MED and LOCAL_PREF rules), and the pending
//! map that coalesces changes until the session can take them.
//!
//! There is no per-peer copy of advertised routes: whether the peer holds a
//! prefix is known by exporting the previous selection again (the export
//! is deterministic), so a change that affects nothing the peer sees sends
//! nothing.

use super::{Best, PeerId, LOCAL_PEER};
use crate::policy::{evaluate_export, Decision, PeerPolicy, Verdict};
use crate::wire::update::{pack_announcements, pack_withdrawals};
use crate::wire::{community, Family, Nlri, PathAttributes, SessionCodec};
use bytes::BytesMut;
use hashbrown::HashMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Cached rewrites kept per peer before the cache is cleared.
const REWRITE_CACHE_LIMIT: usize = 1 << 12;

/// How many more times a draining node prepends its AS for eBGP peers.
pub const DRAIN_PREPEND: usize = 3;

/// How routes are filtered and rewritten for one peer.
#[derive(Debug)]
pub struct ExportTarget {
    pub peer: PeerId,
    pub local_as: u32,
    pub remote_as: u32,
    pub policy: PeerPolicy,
    pub families: Vec<Family>,
    /// Our address on the session, used as next hop self.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
    /// IPv4 prefixes may carry an IPv6 next hop (RFC 8950).
    pub extended_next_hop_v4: bool,
    /// The node is draining: what it originates goes out with the
    /// GRACEFUL_SHUTDOWN community (RFC 8326) and less preferred (the AS
    /// path prepended [`DRAIN_PREPEND`] more times to eBGP peers,
    /// LOCAL_PREF 0 to iBGP peers).
    pub draining: bool,
    /// The peer is a client of this node as a route server (RFC 7947):
    /// routes of other peers go to it with their AS path, next hop and MED
    /// unchanged.
    pub transparent: bool,
    /// Rewritten attributes by source set and next hop (keyed by the
    /// source `Arc`'s address; the source is kept so the address stays
    /// valid): IPv4 and IPv6 routes of one source set get different next
    /// hops.
    rewrites: HashMap<(usize, IpAddr), (Arc<PathAttributes>, Arc<PathAttributes>)>,
}

/// Why a route is not sent to a peer, or that it is.
pub type ExportDecision = Result<Arc<PathAttributes>, Decision>;

fn reject(reason: impl Into<crate::policy::Reason>) -> ExportDecision {
    Err(Decision::new(Verdict::Reject, reason))
}

impl ExportTarget {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer: PeerId,
        local_as: u32,
        remote_as: u32,
        policy: PeerPolicy,
        families: Vec<Family>,
        local_v4: Option<Ipv4Addr>,
        local_v6: Option<Ipv6Addr>,
        extended_next_hop_v4: bool,
    ) -> Self {
        ExportTarget {
            peer,
            local_as,
            remote_as,
            policy,
            families,
            local_v4,
            local_v6,
            extended_next_hop_v4,
            draining: false,
            transparent: false,
            rewrites: HashMap::new(),
        }
    }

    /// The same session with another policy (to compare two exports).
    pub fn with_policy(&self, policy: PeerPolicy) -> ExportTarget {
        let mut t = ExportTarget::new(
            self.peer,
            self.local_as,
            self.remote_as,
            policy,
            self.families.clone(),
            self.local_v4,
            self.local_v6,
            self.extended_next_hop_v4,
        );
        t.draining = self.draining;
        t.transparent = self.transparent;
        t
    }

    pub fn ibgp(&self) -> bool {
        self.local_as == self.remote_as
    }

    /// What this peer is sent for `prefix` when `best` is selected:
    /// the attributes, or the reason it is sent nothing.
    /// `source_ibgp` tells whether the best path was learned over iBGP.
    pub fn export(&mut self, prefix: &IpNet, best: &Best, source_ibgp: bool) -> ExportDecision {
        let family = Family::of(prefix);
        if !self.families.contains(&family) {
            return reject(format!("family {family} not negotiated with this peer"));
        }
        if best.peer == self.peer {
            return reject("learned from this peer");
        }
        let attrs = &best.attrs;
        if source_ibgp && self.ibgp() {
            return reject("iBGP-learned routes are not sent to iBGP peers");
        }
        if attrs.has_community(community::NO_ADVERTISE) {
            return reject("carries NO_ADVERTISE");
        }
        if !self.ibgp() && attrs.has_community(community::NO_EXPORT) {
            return reject("carries NO_EXPORT");
        }
        if !self.ibgp() && attrs.as_path.contains(self.remote_as) {
            return reject(format!("AS path already contains the peer's AS {}", self.remote_as));
        }
        let local = best.peer == LOCAL_PEER;
        let applied = evaluate_export(&self.policy, local, prefix, attrs);
        if applied.decision.verdict == Verdict::Reject {
            return Err(applied.decision);
        }
        let next_hop = self.next_hop_for(family)?;
        match applied.attrs {
            Some(changed) => {
                let mut out = self.rewrite(&changed, local, next_hop);
                if !self.ibgp() {
                    for _ in 0..applied.prepend {
                        out.as_path = out.as_path.prepended(self.local_as);
                    }
                }
                Ok(Arc::new(out))
            }
            None => {
                let key = (Arc::as_ptr(attrs) as usize, next_hop);
                if let Some((_, out)) = self.rewrites.get(&key) {
                    return Ok(out.clone());
                }
                if self.rewrites.len() >= REWRITE_CACHE_LIMIT {
                    self.rewrites.clear();
                }
                let out = Arc::new(self.rewrite(attrs, local, next_hop));
                self.rewrites.insert(key, (attrs.clone(), out.clone()));
                Ok(out)
            }
        }
    }

    fn next_hop_for(&self, family: Family) -> Result<IpAddr, Decision> {
        let nh = match family {
            Family::IPV4_UNICAST => self.local_v4.map(IpAddr::V4).or_else(|| {
                self.extended_next_hop_v4
                    .then_some(self.local_v6.map(IpAddr::V6))
                    .flatten()
            }),
            _ => self.local_v6.map(IpAddr::V6),
        };
        nh.ok_or_else(|| {
            Decision::new(
                Verdict::Reject,
                format!("no local address of family {family} on this session for the next hop"),
            )
        })
    }

    fn rewrite(&self, src: &PathAttributes, local: bool, next_hop: IpAddr) -> PathAttributes {
        let mut a = src.clone();
        if self.ibgp() {
            a.local_pref = Some(src.local_pref.unwrap_or(super::decision::DEFAULT_LOCAL_PREF));
            if local || a.next_hop.is_none() {
                a.next_hop = Some(next_hop);
            }
        } else if self.transparent && !local {
            // RFC 7947 2.2: the client's path, next hop and MED, as the
            // route server received them; a next hop of the other family
            // than the prefix's cannot be kept.
            if src.next_hop.is_none_or(|h| h.is_ipv4() != next_hop.is_ipv4()) {
                a.next_hop = Some(next_hop);
            }
            a.local_pref = None;
            a.originator_id = None;
            a.cluster_list.clear();
        } else {
            a.as_path = src.as_path.prepended(self.local_as);
            a.next_hop = Some(next_hop);
            a.local_pref = None;
            if !local {
                a.med = None;
            }
            a.originator_id = None;
            a.cluster_list.clear();
        }
        a.link_local_next_hop = None;
        if local && self.draining {
            if !a.has_community(community::GRACEFUL_SHUTDOWN) {
                a.communities.push(community::GRACEFUL_SHUTDOWN);
            }
            if self.ibgp() {
                a.local_pref = Some(0);
            } else {
                for _ in 0..DRAIN_PREPEND {
                    a.as_path = a.as_path.prepended(self.local_as);
                }
            }
        }
        a
    }

    /// Forgets cached rewrites (after a policy or address change).
    pub fn clear_cache(&mut self) {
        self.rewrites.clear();
    }
}

/// Changes waiting to be sent to one peer, coalesced per prefix: only the
/// latest state of a prefix is sent.
#[derive(Debug, Default)]
pub struct Pending {
    changes: HashMap<IpNet, Option<Arc<PathAttributes>>>,
}

impl Pending {
    pub fn announce(&mut self, prefix: IpNet, attrs: Arc<PathAttributes>) {
        self.changes.insert(prefix, Some(attrs));
    }

    pub fn withdraw(&mut self, prefix: IpNet) {
        self.changes.insert(prefix, None);
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn clear(&mut self) {
        self.changes.clear();
    }

    /// Moves every pending change into encoded UPDATE messages: withdrawals
    /// first, then announcements grouped by shared attributes. Returns
    /// (announced, withdrawn) prefix counts.
    pub fn encode_all(&mut self, codec: &SessionCodec, out: &mut BytesMut) -> (usize, usize) {
        let mut withdrawn = Vec::new();
        let mut groups: HashMap<(usize, bool), (Arc<PathAttributes>, Vec<Nlri>)> = HashMap::new();
        for (prefix, change) in self.changes.drain() {
            match change {
                None => withdrawn.push(Nlri::new(prefix)),
                Some(attrs) => {
                    let key = (Arc::as_ptr(&attrs) as usize, matches!(prefix, IpNet::V4(_)));
                    groups
                        .entry(key)
                        .or_insert_with(|| (attrs, Vec::new()))
                        .1
                        .push(Nlri::new(prefix));
                }
            }
        }
        pack_withdrawals(&withdrawn, codec, out);
        let mut announced = 0;
        for (attrs, prefixes) in groups.into_values() {
            announced += prefixes.len();
            pack_announcements(&attrs, &prefixes, codec, out);
        }
        (announced, withdrawn.len())
    }
}
