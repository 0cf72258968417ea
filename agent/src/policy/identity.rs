//! Identities: a pod's namespace and labels, numbered the same on every
//! node from a hash of them (so `novanetctl identity` agrees across the
//! cluster), with the reserved numbers kept out and collisions settled in
//! the order of the keys (every node sees the same pods, so the same
//! order).

use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};

/// Numbers below this are reserved (0 any, 1 host, 2 world).
pub const FIRST_POD_IDENTITY: u32 = 256;
/// ipBlock identities have the top bit set (node-local, never hashed).
pub const CIDR_IDENTITY_BIT: u32 = 0x8000_0000;

/// What a pod's identity is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct IdentityKey {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.namespace)?;
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !labels.is_empty() {
            write!(f, " {}", labels.join(","))?;
        }
        Ok(())
    }
}

/// Service identities: both top bits set (ipBlocks have the top bit
/// only); the programs never try an ipBlock for them.
pub const SERVICE_IDENTITY_BITS: u32 = 0xC000_0000;

/// Where a kind of identity is numbered: a key's hash, masked, in `block`,
/// at least `first`, below `end`.
pub struct Space {
    block: u32,
    mask: u32,
    first: u32,
    end: u32,
}

/// Pods: between the reserved numbers and the ipBlocks' bit.
pub const PODS: Space = Space {
    block: 0,
    mask: !CIDR_IDENTITY_BIT,
    first: FIRST_POD_IDENTITY,
    end: CIDR_IDENTITY_BIT,
};

/// Services: the top two bits set.
pub const SERVICES: Space = Space {
    block: SERVICE_IDENTITY_BITS,
    mask: !SERVICE_IDENTITY_BITS,
    first: SERVICE_IDENTITY_BITS,
    end: u32::MAX,
};

fn hashed(key: &IdentityKey) -> u32 {
    let mut h = Sha1::new();
    h.update(key.namespace.as_bytes());
    for (k, v) in &key.labels {
        h.update(b"\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Numbers every pod key; the same keys give the same numbers everywhere.
pub fn number(keys: &BTreeSet<IdentityKey>) -> BTreeMap<IdentityKey, u32> {
    number_in(keys, &PODS)
}

/// Numbers every key in `space`: from its hash, a collision moving to the
/// next free number in the order of the keys (every node has the same
/// keys, so the same numbers), and a key's number never depends on keys
/// that do not collide with it.
pub fn number_in(keys: &BTreeSet<IdentityKey>, space: &Space) -> BTreeMap<IdentityKey, u32> {
    let mut taken: BTreeMap<u32, &IdentityKey> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for key in keys {
        let mut n = (space.block | (hashed(key) & space.mask)).max(space.first);
        while taken.contains_key(&n) {
            n = if n + 1 >= space.end { space.first } else { n + 1 };
        }
        taken.insert(n, key);
        out.insert(key.clone(), n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, labels: &[(&str, &str)]) -> IdentityKey {
        IdentityKey {
            namespace: ns.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn identities_are_stable_distinct_and_out_of_the_reserved_ranges() {
        let a = key("web", &[("app", "front")]);
        let b = key("web", &[("app", "back")]);
        let c = key("db", &[("app", "front")]);
        let all: BTreeSet<_> = [a.clone(), b.clone(), c.clone()].into();
        let n = number(&all);
        let again = number(&[c.clone(), a.clone(), b.clone()].into());
        assert_eq!(n, again, "the same on every node");
        let ids: BTreeSet<u32> = n.values().copied().collect();
        assert_eq!(ids.len(), 3);
        assert!(ids
            .iter()
            .all(|i| *i >= FIRST_POD_IDENTITY && *i & CIDR_IDENTITY_BIT == 0));
        assert_eq!(
            n[&a],
            number(&[a.clone()].into())[&a],
            "a key's number does not depend on others"
        );
        assert_eq!(a.to_string(), "web app=front");
        let services = number_in(&all, &SERVICES);
        assert!(services
            .values()
            .all(|i| i & SERVICE_IDENTITY_BITS == SERVICE_IDENTITY_BITS));
        assert_eq!(
            services[&a],
            number_in(&[a.clone()].into(), &SERVICES)[&a],
            "a Service's number does not depend on the others"
        );
    }
}
