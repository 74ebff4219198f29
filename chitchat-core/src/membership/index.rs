//! An index of the tracked nodes by a key of theirs (their name, or their
//! gossip address): their slots, in the order of their keys' hashes.
//!
//! A hash table of slots (hashbrown's, 4 bytes and a control byte a
//! bucket, a power of two of buckets) held 8 to 11 bytes a node; the
//! sorted slots hold 4 and an eighth at most. Keys are not stored, and of
//! the hashes only the top 8 bits, beside each 24-bit slot number
//! ([`crate::MAX_NODES_LIMIT`]): a lookup finds the run of its hash's top
//! bits in the index alone, then searches the run (about `n / 256`
//! nodes) by hashing the keys of the nodes it probes there. Hashes are
//! seeded, so spread evenly whatever the names and addresses. A node's join
//! or removal shifts the slots after it, as it shifts the table's rows (six
//! times as many bytes).

use super::search;
use super::table::SlotId;

/// Bits of an entry that number its slot.
const SLOT_BITS: u32 = 24;

/// An index entry: the top 8 bits of the key's hash, then the slot.
#[derive(Clone, Copy, Debug)]
struct Tagged(u32);

impl Tagged {
    fn new(hash: u64, slot: SlotId) -> Self {
        debug_assert!(slot.0 < 1 << SLOT_BITS, "max_nodes is within MAX_NODES_LIMIT");
        Tagged((tag(hash) << SLOT_BITS) | (slot.0 & ((1 << SLOT_BITS) - 1)))
    }

    fn slot(self) -> SlotId {
        SlotId(self.0 & ((1 << SLOT_BITS) - 1))
    }

    /// The entry's top hash bits, as the top bits of a hash.
    fn tag_key(self) -> u64 {
        u64::from(self.0 >> SLOT_BITS) << 56
    }
}

/// The top 8 bits of `hash`.
fn tag(hash: u64) -> u32 {
    (hash >> 56) as u32
}

/// Slots sorted by their keys' hashes (ties in any order), each key at most
/// once: bounded as the table is (one slot for each tracked node at most).
#[derive(Debug, Default)]
pub(super) struct HashIndex {
    entries: Vec<Tagged>,
}

impl HashIndex {
    /// The positions of the entries whose top hash bits are `hash`'s.
    fn run(&self, hash: u64) -> (usize, usize) {
        let entries = &self.entries;
        let key = u64::from(tag(hash)) << 56;
        let start = search::lower_bound(entries.len(), key, |index| entries[index].tag_key());
        let end = match key.checked_add(1 << 56) {
            Some(next) => {
                start + search::lower_bound(entries.len() - start, next, |i| entries[start + i].tag_key())
            }
            None => entries.len(),
        };
        (start, end)
    }

    /// The position of the first entry whose key hashes to `hash` or more
    /// (where such a key goes), and the end of the run of its top bits.
    fn position(&self, hash: u64, hash_of: &impl Fn(SlotId) -> u64) -> (usize, usize) {
        let (start, end) = self.run(hash);
        let run = &self.entries[start..end];
        (start + search::lower_bound(run.len(), hash, |index| hash_of(run[index].slot())), end)
    }

    /// The positions of the entries whose key hashes to `hash`, from
    /// `position`'s answer.
    fn hashed(
        &self,
        (first, end): (usize, usize),
        hash: u64,
        hash_of: &impl Fn(SlotId) -> u64,
    ) -> impl Iterator<Item = usize> {
        (first..end).take_while(move |index| hash_of(self.entries[*index].slot()) == hash)
    }

    /// The slot whose key hashes to `hash` and is the one sought (`is`).
    /// `hash_of` gives the hash of a slot's key.
    pub(super) fn find(
        &self,
        hash: u64,
        hash_of: impl Fn(SlotId) -> u64,
        is: impl Fn(SlotId) -> bool,
    ) -> Option<SlotId> {
        let position = self.position(hash, &hash_of);
        self.hashed(position, hash, &hash_of).map(|index| self.entries[index].slot()).find(|slot| is(*slot))
    }

    /// Points the key hashing to `hash` at `slot`: in place of the slot
    /// held for the same key (`same`), if any, else added.
    pub(super) fn set(
        &mut self,
        hash: u64,
        slot: SlotId,
        hash_of: impl Fn(SlotId) -> u64,
        same: impl Fn(SlotId) -> bool,
    ) {
        let position = self.position(hash, &hash_of);
        let held = self.hashed(position, hash, &hash_of).find(|index| same(self.entries[*index].slot()));
        match held {
            Some(index) => self.entries[index] = Tagged::new(hash, slot),
            None => search::insert_at(&mut self.entries, position.0, Tagged::new(hash, slot)),
        }
    }

    /// Removes `slot`, held under `hash`, if it is held. Call while the
    /// node is still in `slot`: the search hashes the keys it passes.
    pub(super) fn remove(&mut self, hash: u64, slot: SlotId, hash_of: impl Fn(SlotId) -> u64) {
        let position = self.position(hash, &hash_of);
        let held = self.hashed(position, hash, &hash_of).find(|index| self.entries[*index].slot() == slot);
        if let Some(index) = held {
            self.entries.remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The index finds, replaces and removes what a map of key to slot
        /// does, on keys whose hashes collide often (3 bits of hash here,
        /// top bits included, so that runs of equal hashes and of equal top
        /// bits are searched).
        #[test]
        fn the_index_holds_what_a_map_holds(ops in proptest::collection::vec((0u8..3, 0u32..40, 0u32..60), 0..300)) {
            // Slot `s` holds the node whose key is `keys[s]`.
            let mut keys: HashMap<u32, u32> = HashMap::new();
            let mut model: HashMap<u32, u32> = HashMap::new();
            let mut index = HashIndex::default();
            let hash = |key: u32| {
                let bits = u64::from(key.wrapping_mul(0x9e37_79b9) >> 29);
                (bits & 1) << 63 | (bits >> 1) << 40
            };
            for (op, key, slot) in ops {
                match op {
                    0 if !keys.contains_key(&slot) => {
                        keys.insert(slot, key);
                        let hash_of = |s: SlotId| hash(keys[&s.0]);
                        index.set(hash(key), SlotId(slot), hash_of, |s| keys[&s.0] == key);
                        model.insert(key, slot);
                    }
                    1 => {
                        if let Some(slot) = model.remove(&key) {
                            let hash_of = |s: SlotId| hash(keys[&s.0]);
                            index.remove(hash(key), SlotId(slot), hash_of);
                        }
                    }
                    _ => {}
                }
                for key in 0..40 {
                    let hash_of = |s: SlotId| hash(keys[&s.0]);
                    let found = index.find(hash(key), hash_of, |s| keys[&s.0] == key);
                    prop_assert_eq!(found.map(|s| s.0), model.get(&key).copied(), "key {}", key);
                }
                prop_assert_eq!(index.entries.len(), model.len());
                let hashes: Vec<u64> = index.entries.iter().map(|entry| hash(keys[&entry.slot().0])).collect();
                prop_assert!(hashes.windows(2).all(|pair| pair[0] <= pair[1]));
                prop_assert!(index.entries.iter().zip(&hashes).all(|(entry, hash)| entry.tag_key() == hash & (0xff << 56)));
            }
        }
    }

    /// A slot keeps its 24 bits whatever the tag beside it.
    #[test]
    fn a_tagged_entry_keeps_its_slot() {
        for (hash, slot) in [(0, 0), (u64::MAX, (1 << 24) - 1), (0xab << 56, 12_345), (1 << 55, 1)] {
            let entry = Tagged::new(hash, SlotId(slot));
            assert_eq!(entry.slot(), SlotId(slot));
            assert_eq!(entry.tag_key(), hash & (0xff << 56));
        }
    }
}
