//! The table of tracked nodes: a vector of rows sorted by fingerprint.
//!
//! Handshakes walk ranges of the ring (to hash them, list them, or sweep them
//! for maintenance) while nodes join and leave rarely: a sorted vector walks
//! several times faster than a B-tree and costs an O(n) shift only on a join
//! or a removal. Each row keeps, beside the fingerprint, a [`Summary`] of
//! what those walks read (the hash of the node's digest entry and whether it
//! is relayed), so that a walk reads contiguous memory and does not visit
//! each node's entry, a cache miss apiece in a large cluster. The summary is
//! refreshed whenever an entry is lent out mutably ([`EntryMut`],
//! [`RowsMut`]), so it never disagrees with the entry once the loan ends.

use std::ops::{Bound, Deref, DerefMut};

use crate::identity::Fingerprint;
use crate::membership::{NodeEntry, NodeStatus};
use crate::wire::RangeHash;

/// What walks of the ring read of a tracked node, kept in its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// [`RangeHash::of_entry`] of the node's digest entry.
    pub hash: RangeHash,
    /// The entry's `status` (when it last changed is read from the entry,
    /// for the few nodes not `Live`: 16 bytes a row, not 24).
    pub status: NodeStatus,
    /// The entry's `vouched`.
    pub vouched: bool,
    /// The node's state has tombstones or expiring keys to collect.
    pub gc_pending: bool,
}

impl Summary {
    fn of(fingerprint: Fingerprint, entry: &NodeEntry) -> Self {
        Summary {
            hash: RangeHash::of_entry(&entry.digest_entry(fingerprint)),
            status: entry.status,
            vouched: entry.vouched,
            gc_pending: entry.state.has_pending_gc(),
        }
    }
}

/// One tracked node: its fingerprint, the summary of its entry, and the
/// entry (boxed, so that a join or removal shifts 32-byte rows, not whole
/// entries).
#[derive(Debug)]
pub(crate) struct Row {
    fingerprint: Fingerprint,
    summary: Summary,
    entry: Box<NodeEntry>,
}

impl Row {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn summary(&self) -> &Summary {
        &self.summary
    }

    pub(crate) fn entry(&self) -> &NodeEntry {
        &self.entry
    }

    fn refresh(&mut self) {
        self.summary = Summary::of(self.fingerprint, &self.entry);
    }
}

/// A tracked node's entry, lent out mutably: its row's summary is refreshed
/// when the loan ends.
pub(crate) struct EntryMut<'a> {
    row: &'a mut Row,
}

impl Deref for EntryMut<'_> {
    type Target = NodeEntry;

    fn deref(&self) -> &NodeEntry {
        &self.row.entry
    }
}

impl DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut NodeEntry {
        &mut self.row.entry
    }
}

impl Drop for EntryMut<'_> {
    fn drop(&mut self) {
        self.row.refresh();
    }
}

/// Consecutive rows lent out mutably: their summaries are refreshed when the
/// loan ends.
pub(crate) struct RowsMut<'a> {
    rows: &'a mut [Row],
}

impl RowsMut<'_> {
    /// The rows' fingerprints and entries, in ring order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (Fingerprint, &mut NodeEntry)> {
        self.rows.iter_mut().map(|row| (row.fingerprint, &mut *row.entry))
    }
}

impl Drop for RowsMut<'_> {
    fn drop(&mut self) {
        self.rows.iter_mut().for_each(Row::refresh);
    }
}

/// Tracked nodes by fingerprint, in ring order. Bounded by
/// [`crate::Config::max_nodes`] (enforced by the caller).
#[derive(Debug, Default)]
pub(super) struct NodeTable {
    rows: Vec<Row>,
}

impl NodeTable {
    /// Where `fingerprint`'s row is (`Ok`) or would go (`Err`).
    ///
    /// Fingerprints are hashes, spread evenly over the ring, so a row sits
    /// close to `fingerprint / 2^64` of the way through the table: the search
    /// starts there and gallops outwards until it brackets the row, then
    /// bisects the bracket. A few probes, in neighbouring rows (one or two
    /// cache lines), where a bisection of the whole table costs `log2(n)`
    /// probes far apart; and never more than twice a bisection, however the
    /// fingerprints bunch (an attacker can grind identities into one corner).
    fn position(&self, fingerprint: &Fingerprint) -> Result<usize, usize> {
        let rows = &self.rows;
        let key = *fingerprint;
        let len = rows.len();
        if len < 16 {
            return rows.binary_search_by_key(&key, |row| row.fingerprint);
        }
        let guess = ((u128::from(key.0) * len as u128) >> 64) as usize;
        // Every row before `low` is below the key; the key, if held, is
        // before `high`.
        let (mut low, mut high) = (0, len);
        let mut step = 1;
        if rows[guess].fingerprint < key {
            low = guess + 1;
            while let Some(probe) = guess.checked_add(step).filter(|probe| *probe < len) {
                if rows[probe].fingerprint >= key {
                    high = probe + 1;
                    break;
                }
                low = probe + 1;
                step *= 2;
            }
        } else {
            high = guess + 1;
            while let Some(probe) = guess.checked_sub(step) {
                if rows[probe].fingerprint < key {
                    low = probe + 1;
                    break;
                }
                high = probe + 1;
                step *= 2;
            }
        }
        match rows[low..high].binary_search_by_key(&key, |row| row.fingerprint) {
            Ok(index) => Ok(low + index),
            Err(index) => Err(low + index),
        }
    }

    pub(super) fn get(&self, fingerprint: &Fingerprint) -> Option<&NodeEntry> {
        self.position(fingerprint).ok().map(|index| &*self.rows[index].entry)
    }

    pub(super) fn get_mut(&mut self, fingerprint: &Fingerprint) -> Option<EntryMut<'_>> {
        let index = self.position(fingerprint).ok()?;
        Some(EntryMut { row: &mut self.rows[index] })
    }

    pub(super) fn contains_key(&self, fingerprint: &Fingerprint) -> bool {
        self.position(fingerprint).is_ok()
    }

    /// Inserts or replaces.
    pub(super) fn insert(&mut self, fingerprint: Fingerprint, entry: NodeEntry) -> EntryMut<'_> {
        let index = match self.position(&fingerprint) {
            Ok(index) => {
                *self.rows[index].entry = entry;
                index
            }
            Err(index) => {
                let summary = Summary::of(fingerprint, &entry);
                self.rows.insert(index, Row { fingerprint, summary, entry: Box::new(entry) });
                index
            }
        };
        EntryMut { row: &mut self.rows[index] }
    }

    pub(super) fn remove(&mut self, fingerprint: &Fingerprint) -> Option<NodeEntry> {
        self.position(fingerprint).ok().map(|index| *self.rows.remove(index).entry)
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        self.rows.iter().map(|row| (&row.fingerprint, &*row.entry))
    }

    pub(super) fn rows(&self) -> &[Row] {
        &self.rows
    }

    fn slice_bounds(&self, (start, end): (Bound<Fingerprint>, Bound<Fingerprint>)) -> (usize, usize) {
        // The first row at or above the key, and the first above it.
        let below = |key: Fingerprint| self.position(&key).unwrap_or_else(|index| index);
        let up_to = |key: Fingerprint| self.position(&key).map_or_else(|index| index, |index| index + 1);
        let from = match start {
            Bound::Included(key) => below(key),
            Bound::Excluded(key) => up_to(key),
            Bound::Unbounded => 0,
        };
        let to = match end {
            Bound::Included(key) => up_to(key),
            Bound::Excluded(key) => below(key),
            Bound::Unbounded => self.rows.len(),
        };
        (from, to.max(from))
    }

    /// The rows within `bounds`, in order.
    pub(super) fn range(&self, bounds: (Bound<Fingerprint>, Bound<Fingerprint>)) -> &[Row] {
        let (from, to) = self.slice_bounds(bounds);
        &self.rows[from..to]
    }

    /// The rows within `bounds`, in order, mutably.
    pub(super) fn range_mut(&mut self, bounds: (Bound<Fingerprint>, Bound<Fingerprint>)) -> RowsMut<'_> {
        let (from, to) = self.slice_bounds(bounds);
        RowsMut { rows: &mut self.rows[from..to] }
    }

    /// Checks that every row's summary says what its entry holds.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(super) fn check_summaries(&self) -> Result<(), String> {
        match self.rows.iter().find(|row| row.summary != Summary::of(row.fingerprint, &row.entry)) {
            Some(row) => Err(format!("the summary of {} is stale", row.entry.state.id())),
            None => Ok(()),
        }
    }
}

impl std::ops::Index<&Fingerprint> for NodeTable {
    type Output = NodeEntry;

    /// Panics if the node is not tracked: for callers that know it is.
    fn index(&self, fingerprint: &Fingerprint) -> &NodeEntry {
        self.get(fingerprint).expect("the node is tracked")
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::identity::NodeId;
    use crate::node_state::NodeState;
    use crate::time::Timestamp;

    fn entry(port: u16) -> (Fingerprint, NodeEntry) {
        let id = NodeId::new(format!("n{port}"), 1, SocketAddr::from(([127, 0, 0, 1], port)));
        (id.fingerprint(), NodeEntry::new(NodeState::new(id), Timestamp::ZERO))
    }

    /// The interpolated search finds what a bisection finds, for every
    /// fingerprint held and for keys between them, however the fingerprints
    /// are spread (evenly, or bunched in one corner of the ring).
    #[test]
    fn the_search_agrees_with_a_bisection() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (count, bunched) in
            [(0, false), (5, false), (16, false), (300, false), (300, true), (1_000, false)]
        {
            let mut table = NodeTable::default();
            for i in 0..count {
                let (_, entry) = entry(i as u16 + 1);
                let raw = next();
                let fingerprint = Fingerprint(if bunched { u64::MAX - (raw >> 40) } else { raw });
                drop(table.insert(fingerprint, entry));
            }
            let mut keys: Vec<Fingerprint> = table.rows().iter().map(Row::fingerprint).collect();
            keys.extend((0..500).map(|_| Fingerprint(next())));
            keys.extend([Fingerprint(0), Fingerprint(u64::MAX), Fingerprint(u64::MAX - 1)]);
            keys.extend(table.rows().iter().map(|row| Fingerprint(row.fingerprint().0.wrapping_add(1))));
            for key in keys {
                let expected = table.rows.binary_search_by_key(&key, |row| row.fingerprint);
                assert_eq!(table.position(&key), expected, "{count} rows, bunched {bunched}, key {key:?}");
            }
        }
    }

    /// Whatever a loan changes in an entry, its row's summary says so once
    /// the loan ends, for one entry and for a range of them.
    #[test]
    fn summaries_follow_their_entries() {
        let mut table = NodeTable::default();
        let entries: Vec<(Fingerprint, NodeEntry)> = (1..6).map(entry).collect();
        let fingerprints: Vec<Fingerprint> = entries.iter().map(|(fingerprint, _)| *fingerprint).collect();
        for (fingerprint, entry) in entries {
            drop(table.insert(fingerprint, entry));
        }
        let before = *table.range((Bound::Unbounded, Bound::Unbounded))[0].summary();
        {
            let mut entry = table.get_mut(&table.rows()[0].fingerprint()).expect("tracked");
            entry.state.set_heartbeat(7);
            entry.vouched = true;
            entry.status = NodeStatus::Dead;
        }
        let after = *table.rows()[0].summary();
        assert_ne!(before.hash, after.hash);
        assert!(after.vouched && after.status == NodeStatus::Dead);
        {
            let mut rows = table.range_mut((Bound::Unbounded, Bound::Unbounded));
            for (_, entry) in rows.iter_mut() {
                entry.status_since = Timestamp::ZERO + std::time::Duration::from_secs(3);
            }
        }
        assert!(table.rows().iter().all(|row| row.entry().status_since.as_nanos() == 3_000_000_000));
        table.check_summaries().expect("every summary is fresh");
        assert!(fingerprints.iter().all(|fingerprint| table.contains_key(fingerprint)));
    }
}
