//! A peer's prefix limit (RFC 4486), per address family: a batch of routes
//! is counted before it is applied, so routes past the limit are never
//! selected, installed or exported. The session is then reset with Cease /
//! Maximum Number of Prefixes Reached carrying the family and the limit,
//! and started again only after an idle hold (RFC 4271 IdleHoldTimer) that
//! doubles with each reset in a row.

use super::messages::AttrRuns;
use crate::rib::{PeerId, Rib};
use crate::wire::error::{code, subcode};
use crate::wire::{Family, Nlri, Notification};
use ipnet::IpNet;
use std::time::Duration;

/// The longest idle hold after repeated resets.
const MAX_IDLE_HOLD: Duration = Duration::from_secs(15 * 60);

/// Paths of one peer in the table, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FamilyCounts {
    pub v4: usize,
    pub v6: usize,
}

impl FamilyCounts {
    /// What the peer holds now.
    pub fn of(rib: &Rib, peer: PeerId) -> Self {
        let v6 = rib.paths_from_v6(peer);
        FamilyCounts {
            v4: rib.paths_from(peer) - v6,
            v6,
        }
    }

    fn add(&mut self, prefix: &IpNet, by: isize) {
        let n = match prefix {
            IpNet::V4(_) => &mut self.v4,
            IpNet::V6(_) => &mut self.v6,
        };
        *n = n.saturating_add_signed(by);
    }

    /// What the peer would hold once this batch is applied (withdrawals
    /// first, as the core applies them).
    pub fn after(rib: &Rib, peer: PeerId, announce: &AttrRuns, withdraw: &[Nlri]) -> Self {
        let mut c = Self::of(rib, peer);
        for n in withdraw {
            if rib.has_path(peer, n) {
                c.add(&n.prefix, -1);
            }
        }
        for n in announce.iter().flat_map(|(_, run)| run) {
            if !rib.has_path(peer, n) || withdraw.contains(n) {
                c.add(&n.prefix, 1);
            }
        }
        c
    }

    /// The first family over `limit` (0: no limit).
    pub fn exceeded(&self, limit: usize) -> Option<Family> {
        if limit == 0 {
            None
        } else if self.v4 > limit {
            Some(Family::IPV4_UNICAST)
        } else if self.v6 > limit {
            Some(Family::IPV6_UNICAST)
        } else {
            None
        }
    }
}

/// Cease / Maximum Number of Prefixes Reached: AFI, SAFI and the limit
/// (RFC 4486 section 4).
pub(crate) fn notification(family: Family, limit: u32) -> Notification {
    let mut n = Notification::new(code::CEASE, subcode::MAX_PREFIXES);
    n.data.extend_from_slice(&family.afi.to_be_bytes());
    n.data.push(family.safi);
    n.data.extend_from_slice(&limit.to_be_bytes());
    n
}

/// How long to wait before the session starts again after its `resets`-th
/// reset in a row (1 for the first).
pub(crate) fn idle_hold(base: Duration, resets: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << resets.saturating_sub(1).min(16));
    doubled.min(MAX_IDLE_HOLD.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_names_the_family_and_the_limit() {
        let n = notification(Family::IPV6_UNICAST, 10);
        assert_eq!((n.code, n.subcode), (code::CEASE, subcode::MAX_PREFIXES));
        assert_eq!(n.data, [0, 2, 1, 0, 0, 0, 10]);
    }

    #[test]
    fn the_idle_hold_doubles_up_to_a_bound() {
        let base = Duration::from_secs(30);
        assert_eq!(idle_hold(base, 1), base);
        assert_eq!(idle_hold(base, 2), base * 2);
        assert_eq!(idle_hold(base, 3), base * 4);
        assert_eq!(idle_hold(base, 40), MAX_IDLE_HOLD);
    }

    #[test]
    fn each_family_is_held_to_the_limit_alone() {
        let c = FamilyCounts { v4: 10, v6: 11 };
        assert_eq!(c.exceeded(10), Some(Family::IPV6_UNICAST));
        assert_eq!(c.exceeded(11), None);
        assert_eq!(c.exceeded(0), None);
    }
}
