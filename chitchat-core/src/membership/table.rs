//! The table of tracked nodes: rows sorted by fingerprint, and the entries
//! they point at.
//!
//! Handshakes walk ranges of the ring (to hash them, list them, or sweep them
//! for maintenance) while nodes join and leave rarely: a sorted vector walks
//! several times faster than a B-tree and costs an O(n) shift only on a join
//! or a removal. Each row keeps, beside the fingerprint, a [`Summary`] of
//! what those walks read (the hash of the node's digest entry and whether it
//! is relayed), so that a walk reads contiguous memory and does not visit
//! each node's entry, a cache miss apiece in a large cluster. The summary is
//! refreshed whenever an entry is lent out mutably ([`EntryMut`]), so it
//! never disagrees with the entry once the loan ends.
//!
//! The entries themselves stay put in [`Slots`], chunks of [`CHUNK`] entries
//! with no allocation of their own; a row names its entry's [`SlotId`], 4
//! bytes, so that a row is 24 bytes, and a join shifts rows, not entries. A
//! slot does not change while its node is tracked: the indexes by name and
//! by address (in [`super::Membership`]) hold slots too.

use std::ops::{Bound, Deref, DerefMut};

use super::search;
use crate::identity::Fingerprint;
use crate::membership::{NodeEntry, NodeStatus};
use crate::wire::RangeHash;

/// Entries a chunk of [`Slots`] holds: a chunk is allocated whole, once the
/// one before is full (the first grows by doubling up to it, for small
/// clusters).
const CHUNK: usize = 128;

/// What walks of the ring read of a tracked node, kept in its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// [`RangeHash::of_entry`] of the node's digest entry.
    pub hash: RangeHash,
    /// The entry's `status` (when it last changed is read from the entry,
    /// for the few nodes not `Live`).
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
            vouched: entry.vouched(),
            gc_pending: entry.state.has_pending_gc(),
        }
    }
}

/// Where a tracked node's entry is in [`Slots`], for as long as it is
/// tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotId(pub(super) u32);

/// The tracked nodes' entries, in slots that do not move. At most as many
/// slots as the table held nodes at its fullest (so at most `max_nodes`,
/// which [`crate::Config::validate`] keeps within 32 bits); a slot freed by a
/// removal is reused by the next join.
#[derive(Debug, Default)]
struct Slots {
    /// Every chunk but the last holds [`CHUNK`] slots; `None` is a free one.
    chunks: Vec<Vec<Option<NodeEntry>>>,
    /// The free slots.
    free: Vec<SlotId>,
}

impl Slots {
    fn place(slot: SlotId) -> (usize, usize) {
        let index = slot.0 as usize;
        (index / CHUNK, index % CHUNK)
    }

    fn get(&self, slot: SlotId) -> Option<&NodeEntry> {
        let (chunk, offset) = Self::place(slot);
        self.chunks.get(chunk)?.get(offset)?.as_ref()
    }

    fn get_mut(&mut self, slot: SlotId) -> Option<&mut NodeEntry> {
        let (chunk, offset) = Self::place(slot);
        self.chunks.get_mut(chunk)?.get_mut(offset)?.as_mut()
    }

    /// The entry a row names (always there: a row and its slot come and go
    /// together).
    fn entry(&self, slot: SlotId) -> &NodeEntry {
        self.get(slot).expect("a row's slot holds its entry")
    }

    fn entry_mut(&mut self, slot: SlotId) -> &mut NodeEntry {
        self.get_mut(slot).expect("a row's slot holds its entry")
    }

    fn insert(&mut self, entry: NodeEntry) -> SlotId {
        if let Some(free) = self.free.pop() {
            let (chunk, offset) = Self::place(free);
            self.chunks[chunk][offset] = Some(entry);
            return free;
        }
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::new());
        }
        let full = (self.chunks.len() - 1) * CHUNK;
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.push(Some(entry));
        // `max_nodes` is at most `MAX_NODES_LIMIT`, 2^24 (`Config::validate`):
        // the indexes keep slots in 24 bits.
        SlotId(u32::try_from(full + chunk.len() - 1).unwrap_or(u32::MAX))
    }

    fn remove(&mut self, slot: SlotId) -> Option<NodeEntry> {
        let (chunk, offset) = Self::place(slot);
        let taken = self.chunks.get_mut(chunk)?.get_mut(offset)?.take()?;
        self.free.push(slot);
        Some(taken)
    }
}

/// One tracked node as the table stores it: its fingerprint, the summary of
/// its entry (flattened: 24 bytes a row, not 32), and its entry's slot.
#[derive(Debug)]
struct StoredRow {
    fingerprint: Fingerprint,
    hash: RangeHash,
    slot: SlotId,
    status: NodeStatus,
    vouched: bool,
    gc_pending: bool,
}

impl StoredRow {
    fn new(fingerprint: Fingerprint, slot: SlotId, summary: Summary) -> Self {
        let Summary { hash, status, vouched, gc_pending } = summary;
        StoredRow { fingerprint, hash, slot, status, vouched, gc_pending }
    }

    fn summary(&self) -> Summary {
        Summary { hash: self.hash, status: self.status, vouched: self.vouched, gc_pending: self.gc_pending }
    }

    fn refresh(&mut self, entry: &NodeEntry) {
        *self = StoredRow::new(self.fingerprint, self.slot, Summary::of(self.fingerprint, entry));
    }
}

/// One tracked node, as walks of the ring see it: its fingerprint and
/// summary from its row, its entry on demand.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    row: &'a StoredRow,
    slots: &'a Slots,
}

impl<'a> Row<'a> {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.row.fingerprint
    }

    pub(crate) fn summary(&self) -> Summary {
        self.row.summary()
    }

    pub(crate) fn entry(&self) -> &'a NodeEntry {
        self.slots.entry(self.row.slot)
    }
}

/// Consecutive rows, in ring order.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    rows: &'a [StoredRow],
    slots: &'a Slots,
}

impl<'a> Rows<'a> {
    pub(crate) fn iter(&self) -> RowIter<'a> {
        RowIter { rows: self.rows.iter(), slots: self.slots }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The row `index` rows after the first.
    pub(crate) fn get(&self, index: usize) -> Option<Row<'a>> {
        self.rows.get(index).map(|row| Row { row, slots: self.slots })
    }
}

impl<'a> IntoIterator for Rows<'a> {
    type Item = Row<'a>;
    type IntoIter = RowIter<'a>;

    fn into_iter(self) -> RowIter<'a> {
        self.iter()
    }
}

/// The iterator of [`Rows`].
#[derive(Clone)]
pub(crate) struct RowIter<'a> {
    rows: std::slice::Iter<'a, StoredRow>,
    slots: &'a Slots,
}

impl<'a> Iterator for RowIter<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        let slots = self.slots;
        self.rows.next().map(|row| Row { row, slots })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl DoubleEndedIterator for RowIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let slots = self.slots;
        self.rows.next_back().map(|row| Row { row, slots })
    }
}

impl ExactSizeIterator for RowIter<'_> {}

/// A tracked node's entry, lent out mutably: its row's summary is refreshed
/// when the loan ends.
pub(crate) struct EntryMut<'a> {
    row: &'a mut StoredRow,
    entry: &'a mut NodeEntry,
}

impl Deref for EntryMut<'_> {
    type Target = NodeEntry;

    fn deref(&self) -> &NodeEntry {
        self.entry
    }
}

impl DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut NodeEntry {
        self.entry
    }
}

impl Drop for EntryMut<'_> {
    fn drop(&mut self) {
        self.row.refresh(self.entry);
    }
}

/// Tracked nodes by fingerprint, in ring order. Bounded by
/// [`crate::Config::max_nodes`] (enforced by the caller).
#[derive(Debug, Default)]
pub(super) struct NodeTable {
    rows: Vec<StoredRow>,
    slots: Slots,
}

impl NodeTable {
    /// Where `fingerprint`'s row is (`Ok`) or would go (`Err`): a search
    /// from where the fingerprint falls on the ring (see
    /// [`search::lower_bound`]).
    fn position(&self, fingerprint: &Fingerprint) -> Result<usize, usize> {
        let rows = &self.rows;
        let index = search::lower_bound(rows.len(), fingerprint.0, |index| rows[index].fingerprint.0);
        match rows.get(index) {
            Some(row) if row.fingerprint == *fingerprint => Ok(index),
            _ => Err(index),
        }
    }

    pub(super) fn get(&self, fingerprint: &Fingerprint) -> Option<&NodeEntry> {
        self.position(fingerprint).ok().map(|index| self.slots.entry(self.rows[index].slot))
    }

    pub(super) fn get_mut(&mut self, fingerprint: &Fingerprint) -> Option<EntryMut<'_>> {
        let index = self.position(fingerprint).ok()?;
        let row = &mut self.rows[index];
        Some(EntryMut { entry: self.slots.entry_mut(row.slot), row })
    }

    pub(super) fn contains_key(&self, fingerprint: &Fingerprint) -> bool {
        self.position(fingerprint).is_ok()
    }

    /// The slot of the node `fingerprint`, if tracked.
    pub(super) fn slot_of(&self, fingerprint: &Fingerprint) -> Option<SlotId> {
        self.position(fingerprint).ok().map(|index| self.rows[index].slot)
    }

    /// The node in `slot`, if it still holds one.
    pub(super) fn at_slot(&self, slot: SlotId) -> Option<&NodeEntry> {
        self.slots.get(slot)
    }

    /// Inserts or replaces; the node's slot.
    pub(super) fn insert(&mut self, fingerprint: Fingerprint, entry: NodeEntry) -> SlotId {
        match self.position(&fingerprint) {
            Ok(index) => {
                let row = &mut self.rows[index];
                row.refresh(&entry);
                *self.slots.entry_mut(row.slot) = entry;
                row.slot
            }
            Err(index) => {
                let summary = Summary::of(fingerprint, &entry);
                let slot = self.slots.insert(entry);
                search::insert_at(&mut self.rows, index, StoredRow::new(fingerprint, slot, summary));
                slot
            }
        }
    }

    /// Removes a node: the slot it had, and its entry.
    pub(super) fn remove(&mut self, fingerprint: &Fingerprint) -> Option<(SlotId, NodeEntry)> {
        let index = self.position(fingerprint).ok()?;
        let slot = self.rows.remove(index).slot;
        self.slots.remove(slot).map(|removed| (slot, removed))
    }

    /// Visits every entry, in the order of the slots, to change what no
    /// row's [`Summary`] reads (so no row is refreshed).
    pub(super) fn for_each_entry(&mut self, mut visit: impl FnMut(&mut NodeEntry)) {
        for chunk in &mut self.slots.chunks {
            for entry in chunk.iter_mut().flatten() {
                visit(entry);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        self.rows.iter().map(|row| (&row.fingerprint, self.slots.entry(row.slot)))
    }

    pub(super) fn rows(&self) -> Rows<'_> {
        Rows { rows: &self.rows, slots: &self.slots }
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
    pub(super) fn range(&self, bounds: (Bound<Fingerprint>, Bound<Fingerprint>)) -> Rows<'_> {
        let (from, to) = self.slice_bounds(bounds);
        Rows { rows: &self.rows[from..to], slots: &self.slots }
    }

    /// Checks that every row's summary says what its entry holds.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(super) fn check_summaries(&self) -> Result<(), String> {
        for row in &self.rows {
            let entry = self.slots.entry(row.slot);
            if row.summary() != Summary::of(row.fingerprint, entry) {
                return Err(format!("the summary of {} is stale", entry.state.id()));
            }
            if entry.state.id().fingerprint() != row.fingerprint {
                return Err(format!("the slot of {} names another node", entry.state.id()));
            }
        }
        Ok(())
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
                table.insert(fingerprint, entry);
            }
            let mut keys: Vec<Fingerprint> = table.rows().iter().map(|row| row.fingerprint()).collect();
            keys.extend((0..500).map(|_| Fingerprint(next())));
            keys.extend([Fingerprint(0), Fingerprint(u64::MAX), Fingerprint(u64::MAX - 1)]);
            keys.extend(
                table
                    .rows()
                    .iter()
                    .map(|row| Fingerprint(row.fingerprint().0.wrapping_add(1)))
                    .collect::<Vec<_>>(),
            );
            for key in keys {
                let expected = table.rows.binary_search_by_key(&key, |row| row.fingerprint);
                assert_eq!(table.position(&key), expected, "{count} rows, bunched {bunched}, key {key:?}");
            }
        }
    }

    /// A row is 24 bytes: a join shifts that much a node after it.
    #[test]
    fn a_row_is_24_bytes() {
        assert_eq!(std::mem::size_of::<StoredRow>(), 24);
    }

    /// A tracked node's entry is 56 bytes: a 40-byte identity, the pointer
    /// to its heartbeat, versions and records (none for a state at
    /// heartbeat and version 0), and the status, its time and the flags in
    /// 8 bytes.
    #[test]
    fn an_entry_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Option<NodeEntry>>(), 56);
    }

    /// The rows grow by an eighth, so that a large table wastes little of
    /// its vector (doubling would leave up to half of it empty).
    #[test]
    fn the_rows_grow_by_an_eighth() {
        let mut table = NodeTable::default();
        for port in 0..10_000 {
            let (fingerprint, entry) = entry(port);
            table.insert(fingerprint, entry);
            let (len, capacity) = (table.rows.len(), table.rows.capacity());
            assert!(capacity <= len + (len / 8).max(16), "{len} rows in {capacity}");
        }
    }

    /// Nodes joining and leaving in any order: every row names the slot of
    /// its own entry, a freed slot is taken by the next join rather than a
    /// new one, and no more slots exist than nodes were ever tracked at once.
    #[test]
    fn slots_are_reused_and_follow_their_rows() {
        let mut table = NodeTable::default();
        let mut held: Vec<Fingerprint> = Vec::new();
        let (mut peak, mut seed) = (0, 7_u64);
        for step in 0..3_000_u32 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            if held.is_empty() || seed >> 62 != 0 && held.len() < 700 {
                let (fingerprint, entry) = entry(step as u16 + 1);
                let slot = table.insert(fingerprint, entry);
                assert!(table.at_slot(slot).is_some());
                assert!(
                    table.get(&fingerprint).is_some_and(|entry| std::ptr::eq(entry, table.slots.entry(slot)))
                );
                held.push(fingerprint);
            } else {
                let gone = held.swap_remove((seed >> 20) as usize % held.len());
                let (slot, _) = table.remove(&gone).expect("tracked");
                assert!(table.at_slot(slot).is_none());
                assert!(!table.contains_key(&gone));
            }
            peak = peak.max(held.len());
            let slots: usize = table.slots.chunks.iter().map(Vec::len).sum();
            assert_eq!(slots, peak, "a slot is added only when none is free");
            assert_eq!(slots - table.slots.free.len(), table.len());
        }
        table.check_summaries().expect("every row names its own slot");
        assert!(held.iter().all(|fingerprint| table.contains_key(fingerprint)));
        assert!(table.slots.chunks.iter().all(|chunk| chunk.capacity() <= CHUNK));
    }

    /// Whatever a loan changes in an entry, its row's summary says so once
    /// the loan ends, for one entry and for a range of them.
    #[test]
    fn summaries_follow_their_entries() {
        let mut table = NodeTable::default();
        let entries: Vec<(Fingerprint, NodeEntry)> = (1..6).map(entry).collect();
        let fingerprints: Vec<Fingerprint> = entries.iter().map(|(fingerprint, _)| *fingerprint).collect();
        for (fingerprint, entry) in entries {
            table.insert(fingerprint, entry);
        }
        fn first(table: &NodeTable) -> Row<'_> {
            table.range((Bound::Unbounded, Bound::Unbounded)).iter().next().expect("a row")
        }
        let before = first(&table).summary();
        let first_fingerprint = first(&table).fingerprint();
        {
            let mut entry = table.get_mut(&first_fingerprint).expect("tracked");
            entry.state.set_heartbeat(7);
            entry.set_vouched(true);
            entry.status = NodeStatus::Dead;
        }
        let after = first(&table).summary();
        assert_ne!(before.hash, after.hash);
        assert!(after.vouched && after.status == NodeStatus::Dead);
        for fingerprint in &fingerprints {
            let mut entry = table.get_mut(fingerprint).expect("tracked");
            entry.set_status_since(Timestamp::ZERO + std::time::Duration::from_secs(3));
            entry.set_vouched(false);
        }
        assert!(table.rows().iter().all(|row| !row.summary().vouched));
        assert!(table.rows().iter().all(|row| row.entry().status_since().as_nanos() == 3_000_000_000));
        table.check_summaries().expect("every summary is fresh");
        assert!(fingerprints.iter().all(|fingerprint| table.contains_key(fingerprint)));
    }
}
