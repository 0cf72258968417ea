//! The BGP decision process (RFC 4271 section 9.1.2.2), one step at a time,
//! and the multipath rule.
//!
//! [`compare`] returns which of two paths is better *and the step that
//! decided*, so operators can be told why a path won.

use super::{Path, PeerInfo};
use std::cmp::Ordering;

/// LOCAL_PREF assumed when a path carries none.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The steps of the decision process, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Higher LOCAL_PREF wins.
    LocalPref,
    /// A route this node originates wins over a learned one.
    LocallyOriginated,
    /// Shorter AS_PATH wins.
    AsPathLength,
    /// Lower ORIGIN wins (IGP < EGP < INCOMPLETE).
    Origin,
    /// Lower MED wins, between paths from the same neighbouring AS.
    Med,
    /// eBGP-learned wins over iBGP-learned.
    EbgpOverIbgp,
    /// Lower BGP identifier (or ORIGINATOR_ID) wins.
    RouterId,
    /// Shorter CLUSTER_LIST wins.
    ClusterListLength,
    /// Lower peer address wins.
    PeerAddress,
    /// Lower add-path identifier wins (same peer, several paths).
    PathId,
}

impl Step {
    pub fn describe(&self) -> &'static str {
        match self {
            Step::LocalPref => "higher local preference",
            Step::LocallyOriginated => "locally originated",
            Step::AsPathLength => "shorter AS path",
            Step::Origin => "lower origin",
            Step::Med => "lower MED",
            Step::EbgpOverIbgp => "eBGP over iBGP",
            Step::RouterId => "lower router ID",
            Step::ClusterListLength => "shorter cluster list",
            Step::PeerAddress => "lower peer address",
            Step::PathId => "lower path ID",
        }
    }
}

/// A path together with what the decision needs to know of its peer.
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    pub peer: &'a PeerInfo,
}

fn local_pref(c: &Candidate) -> u32 {
    c.path.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

/// Compares two paths: `Less` means `a` is better. The step is the one that
/// decided, or `PathId` when the two are equal all the way down.
pub fn compare(a: &Candidate, b: &Candidate) -> (Ordering, Step) {
    let (pa, pb) = (&a.path.attrs, &b.path.attrs);
    let steps: [(Step, &dyn Fn() -> Ordering); 9] = [
        (Step::LocalPref, &|| local_pref(b).cmp(&local_pref(a))),
        (Step::LocallyOriginated, &|| b.peer.local.cmp(&a.peer.local)),
        (Step::AsPathLength, &|| {
            pa.as_path.path_len().cmp(&pb.as_path.path_len())
        }),
        (Step::Origin, &|| pa.origin.cmp(&pb.origin)),
        (Step::Med, &|| {
            if pa.as_path.first_as() == pb.as_path.first_as() {
                pa.med.unwrap_or(0).cmp(&pb.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        }),
        (Step::EbgpOverIbgp, &|| a.peer.ibgp.cmp(&b.peer.ibgp)),
        (Step::RouterId, &|| {
            let id = |c: &Candidate| u32::from(c.path.attrs.originator_id.unwrap_or(c.peer.router_id));
            id(a).cmp(&id(b))
        }),
        (Step::ClusterListLength, &|| {
            pa.cluster_list.len().cmp(&pb.cluster_list.len())
        }),
        (Step::PeerAddress, &|| a.peer.address.cmp(&b.peer.address)),
    ];
    for (step, cmp) in steps {
        let o = cmp();
        if o != Ordering::Equal {
            return (o, step);
        }
    }
    (a.path.path_id.cmp(&b.path.path_id), Step::PathId)
}

/// Whether `other` may share forwarding with the best path `best`: equal
/// through the eBGP/iBGP step, both eBGP, and another next hop. AS paths
/// of equal length from different neighbour ASes qualify (two ToRs in
/// different ASes are the common case).
pub fn multipath_eligible(best: &Candidate, other: &Candidate) -> bool {
    if best.peer.ibgp || other.peer.ibgp || best.peer.local || other.peer.local {
        return false;
    }
    let (o, step) = compare(best, other);
    let equal_enough = o == Ordering::Equal || step > Step::EbgpOverIbgp;
    equal_enough && best.path.attrs.next_hop != other.path.attrs.next_hop
}
