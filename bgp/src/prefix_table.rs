//! Compact prefix-keyed tables, for the RIB and the FIB writer: a full
//! table is a million entries, so bytes per entry are what matter.
//!
//! Entries live in one dense vector per address family, found through a
//! hash index of `u32` positions. Compared with a map of `IpNet` to entry
//! this keeps a full table small: keys are packed bytes (5 for IPv4, 17 for
//! IPv6) stored inside the entry (no padding of a separate key), the index
//! holds 4 bytes a slot instead of whole entries (so its growth copies
//! little), and walking the table is a linear scan. Removal moves the last
//! entry into the hole and repoints its index slot.

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A prefix packed into bytes (address, then length).
pub trait PrefixKey: Copy + Eq {
    fn net(&self) -> IpNet;
    fn hash_with(&self, state: &DefaultHashBuilder) -> u64;
}

/// An IPv4 prefix: 4 address bytes and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Key([u8; 5]);

/// An IPv6 prefix: 16 address bytes and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Key([u8; 17]);

/// An entry that carries its own key.
pub trait Keyed {
    type Key: PrefixKey;
    fn key(&self) -> &Self::Key;
}

/// A key with a value, for entries without a layout of their own.
#[derive(Debug, Clone)]
pub struct Slot<K, V> {
    pub key: K,
    pub value: V,
}

impl<K: PrefixKey, V> Keyed for Slot<K, V> {
    type Key = K;
    fn key(&self) -> &K {
        &self.key
    }
}

impl From<&Ipv4Net> for V4Key {
    fn from(n: &Ipv4Net) -> Self {
        let a = n.addr().octets();
        V4Key([a[0], a[1], a[2], a[3], n.prefix_len()])
    }
}

impl From<&Ipv6Net> for V6Key {
    fn from(n: &Ipv6Net) -> Self {
        let mut k = [0u8; 17];
        k[..16].copy_from_slice(&n.addr().octets());
        k[16] = n.prefix_len();
        V6Key(k)
    }
}

impl PrefixKey for V4Key {
    fn net(&self) -> IpNet {
        let [a, b, c, d, len] = self.0;
        IpNet::V4(Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len).expect("stored prefixes are valid"))
    }

    fn hash_with(&self, state: &DefaultHashBuilder) -> u64 {
        let [a, b, c, d, len] = self.0;
        state.hash_one(u64::from_le_bytes([a, b, c, d, len, 0, 0, 0]))
    }
}

impl PrefixKey for V6Key {
    fn net(&self) -> IpNet {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.0[..16]);
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), self.0[16]).expect("stored prefixes are valid"))
    }

    fn hash_with(&self, state: &DefaultHashBuilder) -> u64 {
        state.hash_one(self.0)
    }
}

/// The entries of one address family.
#[derive(Debug)]
pub struct Table<E> {
    entries: Vec<E>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl<E> Default for Table<E> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<E: Keyed> Table<E> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, E> {
        self.entries.iter_mut()
    }

    fn position(&self, key: &E::Key) -> Option<usize> {
        let hash = key.hash_with(&self.hasher);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| entries[i as usize].key() == key)
            .map(|&i| i as usize)
    }

    pub fn get(&self, key: &E::Key) -> Option<&E> {
        self.position(key).map(|i| &self.entries[i])
    }

    pub fn get_mut(&mut self, key: &E::Key) -> Option<&mut E> {
        self.position(key).map(|i| &mut self.entries[i])
    }

    /// The entry of `key`, made by `make` when missing.
    pub fn get_or_insert_with(&mut self, key: E::Key, make: impl FnOnce(E::Key) -> E) -> &mut E {
        let hash = key.hash_with(&self.hasher);
        let (entries, hasher) = (&mut self.entries, &self.hasher);
        let found = self.index.find(hash, |&i| *entries[i as usize].key() == key).copied();
        let i = match found {
            Some(i) => i as usize,
            None => {
                let i = entries.len();
                let position = u32::try_from(i).expect("fewer than 2^32 prefixes per family");
                entries.push(make(key));
                self.index
                    .insert_unique(hash, position, |&j| entries[j as usize].key().hash_with(hasher));
                i
            }
        };
        &mut self.entries[i]
    }

    /// Removes `key`'s entry.
    pub fn remove(&mut self, key: &E::Key) -> Option<E> {
        let hash = key.hash_with(&self.hasher);
        let entries = &self.entries;
        let (i, _) = self
            .index
            .find_entry(hash, |&i| entries[i as usize].key() == key)
            .ok()?
            .remove();
        let i = i as usize;
        let last = self.entries.len() - 1;
        if i != last {
            // The last entry moves into the hole: repoint its index slot.
            let moved = self.entries[last].key().hash_with(&self.hasher);
            let slot = self
                .index
                .find_mut(moved, |&j| j as usize == last)
                .expect("every entry is indexed");
            *slot = i as u32;
        }
        let removed = self.entries.swap_remove(i);
        self.shrink_when_sparse();
        Some(removed)
    }

    /// Gives memory back after a large table has mostly emptied (a peer
    /// with a full table went away).
    fn shrink_when_sparse(&mut self) {
        let cap = self.entries.capacity();
        if cap > 4096 && self.entries.len() < cap / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index
                .shrink_to(entries.len() * 2, |&j| entries[j as usize].key().hash_with(hasher));
        }
    }
}

/// A map from prefixes of either family to values: two [`Table`]s of
/// [`Slot`]s, addressed by `IpNet`.
#[derive(Debug)]
pub struct PrefixMap<V> {
    v4: Table<Slot<V4Key, V>>,
    v6: Table<Slot<V6Key, V>>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: Table::default(),
            v6: Table::default(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&V> {
        match prefix {
            IpNet::V4(n) => self.v4.get(&n.into()).map(|s| &s.value),
            IpNet::V6(n) => self.v6.get(&n.into()).map(|s| &s.value),
        }
    }

    pub fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut V> {
        match prefix {
            IpNet::V4(n) => self.v4.get_mut(&n.into()).map(|s| &mut s.value),
            IpNet::V6(n) => self.v6.get_mut(&n.into()).map(|s| &mut s.value),
        }
    }

    /// The value of `prefix`, made by `make` when missing.
    pub fn get_or_insert_with(&mut self, prefix: &IpNet, make: impl FnOnce() -> V) -> &mut V {
        match prefix {
            IpNet::V4(n) => {
                &mut self
                    .v4
                    .get_or_insert_with(n.into(), |key| Slot { key, value: make() })
                    .value
            }
            IpNet::V6(n) => {
                &mut self
                    .v6
                    .get_or_insert_with(n.into(), |key| Slot { key, value: make() })
                    .value
            }
        }
    }

    pub fn remove(&mut self, prefix: &IpNet) -> Option<V> {
        match prefix {
            IpNet::V4(n) => self.v4.remove(&n.into()).map(|s| s.value),
            IpNet::V6(n) => self.v6.remove(&n.into()).map(|s| s.value),
        }
    }

    /// Every prefix with its value (IPv4, then IPv6).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> {
        let v4 = self.v4.iter().map(|s| (s.key.net(), &s.value));
        v4.chain(self.v6.iter().map(|s| (s.key.net(), &s.value)))
    }

    /// Every prefix with its value, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (IpNet, &mut V)> {
        let v4 = self.v4.iter_mut().map(|s| (s.key.net(), &mut s.value));
        v4.chain(self.v6.iter_mut().map(|s| (s.key.net(), &mut s.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> V4Key {
        match s.parse::<IpNet>().unwrap() {
            IpNet::V4(n) => V4Key::from(&n),
            IpNet::V6(_) => unreachable!(),
        }
    }

    fn empty(key: V4Key) -> Slot<V4Key, u8> {
        Slot { key, value: 0 }
    }

    #[test]
    fn insert_find_remove_keep_the_index_consistent() {
        let mut t: Table<Slot<V4Key, u8>> = Table::default();
        let keys: Vec<V4Key> = (0..10_000u32)
            .map(|i| key(&format!("10.{}.{}.0/24", i >> 8, i & 255)))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            t.get_or_insert_with(*k, empty).value = (i % 200) as u8;
        }
        assert_eq!(t.len(), keys.len());
        // The same key again finds the existing entry.
        assert_eq!(t.get_or_insert_with(keys[7], empty).value, 7);
        assert_eq!(t.len(), keys.len());
        // Remove every other key, from the front, so entries keep moving.
        for k in keys.iter().step_by(2) {
            assert_eq!(t.remove(k).unwrap().key, *k);
            assert!(t.get(k).is_none());
        }
        assert_eq!(t.len(), keys.len() / 2);
        for (i, k) in keys.iter().enumerate().skip(1).step_by(2) {
            assert_eq!(t.get(k).unwrap().value, (i % 200) as u8, "{:?}", k.net());
        }
        for k in keys.iter().skip(1).step_by(2) {
            assert!(t.remove(k).is_some());
        }
        assert_eq!(t.len(), 0);
        assert!(t.remove(&keys[1]).is_none());
    }

    #[test]
    fn prefix_map_serves_both_families() {
        let mut m: PrefixMap<u32> = PrefixMap::default();
        let a: IpNet = "192.0.2.0/24".parse().unwrap();
        let b: IpNet = "2001:db8::/48".parse().unwrap();
        *m.get_or_insert_with(&a, || 1) += 10;
        *m.get_or_insert_with(&b, || 2) += 20;
        assert_eq!((m.get(&a), m.get(&b), m.len()), (Some(&11), Some(&22), 2));
        assert_eq!(m.remove(&a), Some(11));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(b, &22)]);
        assert_eq!(m.remove(&b), Some(22));
        assert!(m.is_empty());
    }

    #[test]
    fn keys_round_trip_to_prefixes() {
        for s in ["0.0.0.0/0", "192.0.2.0/24", "10.1.2.3/32"] {
            assert_eq!(key(s).net().to_string(), s);
        }
        let v6: Ipv6Net = "2001:db8::/32".parse().unwrap();
        assert_eq!(V6Key::from(&v6).net().to_string(), "2001:db8::/32");
    }
}
