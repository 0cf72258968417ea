//! Interned path attributes: one shared `Arc` per distinct attribute set.
//!
//! Routes hold `Arc<PathAttributes>`; a full table with few distinct
//! attribute sets therefore holds few attribute allocations. A set leaves
//! the table when its last route lets go of it ([`AttrTable::release`]).

use crate::wire::PathAttributes;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct AttrTable {
    set: HashSet<Arc<PathAttributes>>,
    released: usize,
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
    pub fn intern_arc(&mut self, attrs: Arc<PathAttributes>) -> Arc<PathAttributes> {
        if let Some(existing) = self.set.get(&*attrs) {
            return existing.clone();
        }
        self.set.insert(attrs.clone());
        attrs
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
