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
}

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

    /// Drops a route's reference; the set leaves the table with its last
    /// route.
    pub fn release(&mut self, attrs: Arc<PathAttributes>) {
        // One reference is ours, one is the table's.
        if Arc::strong_count(&attrs) == 2 {
            self.set.remove(&*attrs);
        }
    }

    /// Number of distinct attribute sets held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
