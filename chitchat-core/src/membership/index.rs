//! An index of the tracked nodes by a key of theirs (their name, or their
//! gossip address): their slots, in the order of their keys' hashes.
//!
//! A hash table of slots (hashbrown's, 4 bytes and a control byte a
//! bucket, a power of two of buckets) held 8 to 11 bytes a node; the
//! sorted slots hold 4 and an eighth at most. Neither keys nor hashes are
//! stored: a probe hashes the key of the node in the slot probed, and the
//! search starts where the hash falls in its range (the hashes are
//! seeded, so spread evenly whatever the names and addresses): a handful
//! of probes a lookup. A node's join or removal shifts the slots after it,
//! as it shifts the table's rows (six times as many bytes).

use super::search;
use super::table::SlotId;

/// Slots sorted by their keys' hashes (ties in any order), each key at most
/// once: bounded as the table is (one slot for each tracked node at most).
#[derive(Debug, Default)]
pub(super) struct HashIndex {
    slots: Vec<SlotId>,
}

impl HashIndex {
    /// The position of the first slot whose key hashes to `hash` or more.
    fn lower_bound(&self, hash: u64, hash_of: &impl Fn(SlotId) -> u64) -> usize {
        search::lower_bound(self.slots.len(), hash, |index| hash_of(self.slots[index]))
    }

    /// The positions of the slots whose key hashes to `hash`.
    fn hashed(&self, hash: u64, hash_of: &impl Fn(SlotId) -> u64) -> impl Iterator<Item = usize> {
        let start = self.lower_bound(hash, hash_of);
        (start..self.slots.len()).take_while(move |index| hash_of(self.slots[*index]) == hash)
    }

    /// The slot whose key hashes to `hash` and is the one sought (`is`).
    /// `hash_of` gives the hash of a slot's key.
    pub(super) fn find(
        &self,
        hash: u64,
        hash_of: impl Fn(SlotId) -> u64,
        is: impl Fn(SlotId) -> bool,
    ) -> Option<SlotId> {
        self.hashed(hash, &hash_of).map(|index| self.slots[index]).find(|slot| is(*slot))
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
        let held = self.hashed(hash, &hash_of).find(|index| same(self.slots[*index]));
        match held {
            Some(index) => self.slots[index] = slot,
            None => {
                let index = self.lower_bound(hash, &hash_of);
                search::insert_at(&mut self.slots, index, slot);
            }
        }
    }

    /// Removes `slot`, held under `hash`, if it is held. Call while the
    /// node is still in `slot`: the search hashes the keys it passes.
    pub(super) fn remove(&mut self, hash: u64, slot: SlotId, hash_of: impl Fn(SlotId) -> u64) {
        let held = self.hashed(hash, &hash_of).find(|index| self.slots[*index] == slot);
        if let Some(index) = held {
            self.slots.remove(index);
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
        /// does, on keys whose hashes collide often (a hash of 3 bits here,
        /// so that runs of equal hashes are searched).
        #[test]
        fn the_index_holds_what_a_map_holds(ops in proptest::collection::vec((0u8..3, 0u32..40, 0u32..60), 0..300)) {
            // Slot `s` holds the node whose key is `keys[s]`.
            let mut keys: HashMap<u32, u32> = HashMap::new();
            let mut model: HashMap<u32, u32> = HashMap::new();
            let mut index = HashIndex::default();
            let hash = |key: u32| u64::from(key.wrapping_mul(0x9e37_79b9) >> 29) << 61;
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
                prop_assert_eq!(index.slots.len(), model.len());
                prop_assert!(index.slots.windows(2).all(|pair| hash(keys[&pair[0].0]) <= hash(keys[&pair[1].0])));
            }
        }
    }
}
