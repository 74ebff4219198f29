//! The table of tracked nodes: a vector sorted by fingerprint.
//!
//! Every handshake walks the whole table (digests cover the ring), while nodes
//! join and leave rarely; a sorted vector walks several times faster than a
//! B-tree and costs an O(n) shift only on a join or a removal.

use std::ops::Bound;

use crate::identity::Fingerprint;
use crate::membership::NodeEntry;

/// Tracked nodes by fingerprint, in ring order. Bounded by
/// [`crate::Config::max_nodes`] (enforced by the caller).
#[derive(Debug, Default)]
pub(super) struct NodeTable {
    /// Boxed, so that a join or removal shifts 16-byte elements, not whole entries.
    entries: Vec<(Fingerprint, Box<NodeEntry>)>,
}

impl NodeTable {
    fn position(&self, fingerprint: &Fingerprint) -> Result<usize, usize> {
        self.entries.binary_search_by_key(fingerprint, |(key, _)| *key)
    }

    pub(super) fn get(&self, fingerprint: &Fingerprint) -> Option<&NodeEntry> {
        self.position(fingerprint).ok().map(|index| &*self.entries[index].1)
    }

    pub(super) fn get_mut(&mut self, fingerprint: &Fingerprint) -> Option<&mut NodeEntry> {
        self.position(fingerprint).ok().map(|index| &mut *self.entries[index].1)
    }

    pub(super) fn contains_key(&self, fingerprint: &Fingerprint) -> bool {
        self.position(fingerprint).is_ok()
    }

    /// Inserts or replaces.
    pub(super) fn insert(&mut self, fingerprint: Fingerprint, entry: NodeEntry) {
        match self.position(&fingerprint) {
            Ok(index) => *self.entries[index].1 = entry,
            Err(index) => self.entries.insert(index, (fingerprint, Box::new(entry))),
        }
    }

    pub(super) fn remove(&mut self, fingerprint: &Fingerprint) -> Option<NodeEntry> {
        self.position(fingerprint).ok().map(|index| *self.entries.remove(index).1)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        self.entries.iter().map(|(fingerprint, entry)| (fingerprint, &**entry))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &NodeEntry> {
        self.entries.iter().map(|(_, entry)| &**entry)
    }

    fn slice_bounds(&self, (start, end): (Bound<Fingerprint>, Bound<Fingerprint>)) -> (usize, usize) {
        let point = |bound: Bound<Fingerprint>, unbounded: usize| match bound {
            Bound::Included(key) => self.entries.partition_point(|(fingerprint, _)| *fingerprint < key),
            Bound::Excluded(key) => self.entries.partition_point(|(fingerprint, _)| *fingerprint <= key),
            Bound::Unbounded => unbounded,
        };
        let from = point(start, 0);
        let to = match end {
            Bound::Included(key) => self.entries.partition_point(|(fingerprint, _)| *fingerprint <= key),
            Bound::Excluded(key) => self.entries.partition_point(|(fingerprint, _)| *fingerprint < key),
            Bound::Unbounded => self.entries.len(),
        };
        (from, to.max(from))
    }

    /// The entries within `bounds`, in order.
    pub(super) fn range(
        &self,
        bounds: (Bound<Fingerprint>, Bound<Fingerprint>),
    ) -> &[(Fingerprint, Box<NodeEntry>)] {
        let (from, to) = self.slice_bounds(bounds);
        &self.entries[from..to]
    }

    /// The entries within `bounds`, in order, mutably.
    pub(super) fn range_mut(
        &mut self,
        bounds: (Bound<Fingerprint>, Bound<Fingerprint>),
    ) -> &mut [(Fingerprint, Box<NodeEntry>)] {
        let (from, to) = self.slice_bounds(bounds);
        &mut self.entries[from..to]
    }
}

impl std::ops::Index<&Fingerprint> for NodeTable {
    type Output = NodeEntry;

    /// Panics if the node is not tracked: for callers that know it is.
    fn index(&self, fingerprint: &Fingerprint) -> &NodeEntry {
        self.get(fingerprint).expect("the node is tracked")
    }
}
