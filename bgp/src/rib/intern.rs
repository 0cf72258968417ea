//! Interned path attributes: one shared `Arc` per distinct attribute set.
//!
//! Routes hold `Arc<PathAttributes>`; a full table with few distinct
//! attribute sets therefore holds few attribute allocations. A set leaves
//! the table when its last route lets go of it ([`AttrTable::release`]).
//!
//! The prefixes of one UPDATE arrive with one shared `Arc`; the table
//! remembers the last `Arc` it was given, so only the first prefix of an
//! UPDATE pays for hashing and comparing the attributes.

use crate::wire::PathAttributes;
use hashbrown::HashSet;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct AttrTable {
    set: HashSet<Arc<PathAttributes>>,
    released: usize,
    /// The last `Arc` passed to [`AttrTable::intern_arc`] and its shared
    /// copy (holding the first keeps its address from being reused).
    last: Option<(Arc<PathAttributes>, Arc<PathAttributes>)>,
}

/// Releases before a collection is considered.
const COLLECT_AFTER: usize = 1024;

impl AttrTable {
    /// Returns the shared copy of `attrs`, adding it when new.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        if let Some(existing) = self.set.get(&attrs) {
            return existing.clone();
        }
        let arc = Arc::new(attrs);
        self.set.insert(arc.clone());
        arc
    }

    /// Returns the shared copy of an already built `Arc`.
    pub fn intern_arc(&mut self, attrs: &Arc<PathAttributes>) -> Arc<PathAttributes> {
        if let Some((given, shared)) = &self.last {
            if Arc::ptr_eq(given, attrs) {
                return shared.clone();
            }
        }
        let shared = match self.set.get(&**attrs) {
            Some(existing) => existing.clone(),
            None => {
                // A copy of our own: the table's reference count is never
                // touched by the thread that decoded the set.
                let own = Arc::new((**attrs).clone());
                self.set.insert(own.clone());
                own
            }
        };
        self.last = Some((attrs.clone(), shared.clone()));
        shared
    }

    /// Drops a route's reference. Unused sets are collected once releases
    /// reach half the table (amortised O(1) per release).
    pub fn release(&mut self, attrs: Arc<PathAttributes>) {
        drop(attrs);
        self.released += 1;
        if self.released >= COLLECT_AFTER && self.released >= self.set.len() / 2 {
            self.collect();
        }
    }

    /// Drops every set only the table still holds.
    pub fn collect(&mut self) {
        self.last = None;
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.released = 0;
    }

    /// Number of distinct attribute sets held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
